//! Same answers as the primary under settings real applications use (issue 21): serializable
//! sessions (SET, SET SESSION CHARACTERISTICS, startup options, ALTER ROLE ... SET, serializable
//! transactions) read where they can run, and go back to the replicas when they stop being
//! serializable; a session's own notifications carry the pid its client was given. Each in session
//! and transaction pooling, against the real cluster, with tokio-postgres and a raw client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::pg_cluster::APP_PASSWORD;
use support::pg_raw::read_msg;
use support::{pg_conn_str, shared, Proxy, ProxyPorts};
use switchyard::wire::pg::msg;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A role whose default isolation is serializable by `ALTER ROLE ... SET` (only this test's).
const SERIAL_ROLE: &str = "fid_serial";
const SERIAL_PASSWORD: &str = "fid-serial-secret";

/// A proxy for the shared cluster, transaction pooling when `pooled`, with the serializable role.
fn proxy(pooled: bool) -> (Proxy, ProxyPorts) {
    let (yaml, ports) = Proxy::pg_config(shared());
    // Reads right after a write wait for a replica instead of going to the primary: these tests
    // tell a replica's answers from the primary's.
    let mut yaml = yaml.replace(
        "fallback: primary }",
        "fallback: primary, causal_wait: true }",
    );
    if pooled {
        yaml = yaml.replace(
            "    monitor: {",
            "    pool: { mode: transaction, size: 4, checkout_timeout: 30s }\n    monitor: {",
        );
    }
    let yaml = yaml.replace(
        "users:\n",
        &format!(
            "users:\n  - {{ name: {SERIAL_ROLE}, password: \"{SERIAL_PASSWORD}\", auth: scram-sha-256, backend_user: {SERIAL_ROLE}, backend_password: \"{SERIAL_PASSWORD}\" }}\n"
        ),
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    (proxy, ports)
}

fn mode(pooled: bool) -> &'static str {
    if pooled {
        "transaction pooling"
    } else {
        "session pooling"
    }
}

async fn connect_str(s: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(s, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect through the proxy: {e}"));
    tokio::spawn(conn);
    client
}

async fn connect(port: u16) -> Client {
    connect_str(&pg_conn_str(port, "app", APP_PASSWORD, "app")).await
}

use support::simple_value as value;

/// Six reads, simple and extended protocol in turn: whether each ran on a server in recovery (a
/// replica). Every read must succeed and see the table's row.
async fn where_reads(c: &Client, what: &str) -> Vec<bool> {
    let mut out = Vec::new();
    for i in 0..6i32 {
        let (recovery, v) = if i % 2 == 0 {
            let rows = c
                .simple_query("SELECT pg_is_in_recovery(), (SELECT v FROM fid_t)")
                .await
                .unwrap_or_else(|e| panic!("{what}: simple read {i}: {e:?}"));
            let row = rows
                .iter()
                .find_map(|m| match m {
                    SimpleQueryMessage::Row(r) => {
                        Some((r.get(0) == Some("t"), r.get(1).map(str::to_owned)))
                    }
                    _ => None,
                })
                .unwrap();
            (row.0, row.1.unwrap_or_default())
        } else {
            let row = c
                .query_one(
                    "SELECT pg_is_in_recovery(), (SELECT v FROM fid_t), $1::int",
                    &[&i],
                )
                .await
                .unwrap_or_else(|e| panic!("{what}: extended read {i}: {e:?}"));
            (row.get::<_, bool>(0), row.get::<_, String>(1))
        };
        assert_eq!(v, "primary data", "{what}: read {i}");
        out.push(recovery);
    }
    out
}

async fn assert_on_primary(c: &Client, what: &str) {
    let r = where_reads(c, what).await;
    assert!(
        r.iter().all(|x| !x),
        "{what}: reads not all on the primary: {r:?}"
    );
}

async fn assert_on_replicas(c: &Client, what: &str) {
    let r = where_reads(c, what).await;
    assert!(
        r.iter().all(|x| *x),
        "{what}: reads not all on replicas: {r:?}"
    );
}

/// Once per test binary (the tests run in parallel and share the table and role).
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(setup_once);
}

fn setup_once() {
    let c = shared();
    c.psql(
        c.primary_port(),
        "app",
        &format!(
            "DROP TABLE IF EXISTS fid_t; CREATE TABLE fid_t (v text); \
             INSERT INTO fid_t VALUES ('primary data'); GRANT SELECT ON fid_t TO PUBLIC; \
             DROP TABLE IF EXISTS fid_w; CREATE TABLE fid_w (i int); GRANT INSERT ON fid_w TO PUBLIC; \
             DO $$ BEGIN CREATE ROLE {SERIAL_ROLE} LOGIN PASSWORD '{SERIAL_PASSWORD}'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             ALTER ROLE {SERIAL_ROLE} SET default_transaction_isolation = 'serializable'"
        ),
    );
    c.wait_replicas_caught_up();
}

/// SET / SET SESSION / SET SESSION CHARACTERISTICS to serializable: reads (and a BEGIN READ ONLY)
/// run on the primary; back to a level a standby runs, reads go to the replicas again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_settings_read_on_the_primary_and_back() {
    setup();
    let forms = [
        (
            "SET default_transaction_isolation = 'serializable'",
            "SET default_transaction_isolation = 'read committed'",
        ),
        (
            "SET SESSION default_transaction_isolation TO serializable",
            "RESET default_transaction_isolation",
        ),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        ),
        (
            "SET default_transaction_isolation TO serializable",
            "RESET ALL",
        ),
    ];
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        for (set, back) in forms {
            let what = format!("{} / {set}", mode(pooled));
            let c = connect(ports.listen).await;
            assert_on_replicas(&c, &format!("{what} (before)")).await;
            c.simple_query(set).await.unwrap();
            assert_eq!(
                value(&c, "SHOW default_transaction_isolation").await,
                "serializable"
            );
            assert_on_primary(&c, &what).await;
            c.simple_query("BEGIN READ ONLY").await.unwrap();
            assert_eq!(
                value(&c, "SELECT pg_is_in_recovery()").await,
                "f",
                "{what}: BEGIN READ ONLY"
            );
            c.simple_query("COMMIT").await.unwrap();
            c.simple_query(back).await.unwrap();
            assert_ne!(
                value(&c, "SHOW default_transaction_isolation").await,
                "serializable"
            );
            assert_on_replicas(&c, &format!("{what} then {back}")).await;
        }
        println!("{}: SET forms ok", mode(pooled));
    }
}

/// A session serializable by default reads on the primary; set to read committed, on the replicas;
/// RESET, on the primary again.
async fn serializable_by_default(c: &Client, what: &str) {
    assert_on_primary(c, what).await;
    c.simple_query("SET default_transaction_isolation = 'read committed'")
        .await
        .unwrap();
    assert_on_replicas(c, &format!("{what}, then read committed")).await;
    c.simple_query("RESET default_transaction_isolation")
        .await
        .unwrap();
    assert_on_primary(c, &format!("{what}, then RESET")).await;
}

/// `options=-c default_transaction_isolation=serializable` in the startup packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_options_make_a_serializable_session() {
    setup();
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        let s = format!(
            "{} options='-c default_transaction_isolation=serializable'",
            pg_conn_str(ports.listen, "app", APP_PASSWORD, "app")
        );
        let c = connect_str(&s).await;
        serializable_by_default(&c, &format!("{}: startup options", mode(pooled))).await;
    }
}

/// `ALTER ROLE ... SET default_transaction_isolation = 'serializable'`: invisible in the SQL, learned
/// from the first replica's refusal (the read runs again on the primary, the client sees no error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_default_is_learned_from_the_replica() {
    setup();
    for pooled in [false, true] {
        let (proxy, ports) = proxy(pooled);
        for round in 0..3 {
            let what = format!("{}: ALTER ROLE, client {round}", mode(pooled));
            let c = connect_str(&pg_conn_str(
                ports.listen,
                SERIAL_ROLE,
                SERIAL_PASSWORD,
                "app",
            ))
            .await;
            if round == 1 {
                // A write first: the read's causal check on a replica is what gets refused. (Back
                // on the replicas, read-your-writes may still send a read to the primary.)
                c.simple_query("INSERT INTO fid_w VALUES (1)")
                    .await
                    .unwrap();
                assert_on_primary(&c, &format!("{what}, after a write")).await;
                continue;
            }
            serializable_by_default(&c, &what).await;
        }
        // The write's session learned from its first refused check, then read on the primary.
        let log = proxy.log();
        let failed = log.matches("causal check failed").count();
        assert_eq!(failed, 1, "{}: refused causal checks", mode(pooled));
    }
}

/// Serializable transactions, read-only ones included, in every spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_transactions_run_on_the_primary() {
    setup();
    let forms: [&[&str]; 6] = [
        &["BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"],
        &["BEGIN READ ONLY; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
        &["START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE"],
        &["BEGIN READ ONLY ISOLATION LEVEL SERIALIZABLE"],
        &["BEGIN", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
        &[
            "START TRANSACTION",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY",
        ],
    ];
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        let c = connect(ports.listen).await;
        for form in forms {
            let what = format!("{}: {form:?}", mode(pooled));
            for sql in form {
                c.simple_query(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {sql}: {e:?}"));
            }
            assert_eq!(
                value(&c, "SHOW transaction_isolation").await,
                "serializable",
                "{what}"
            );
            assert_eq!(value(&c, "SELECT pg_is_in_recovery()").await, "f", "{what}");
            assert_eq!(
                value(&c, "SELECT v FROM fid_t").await,
                "primary data",
                "{what}"
            );
            c.simple_query("COMMIT").await.unwrap();
        }
        // The driver's own spelling.
        let mut c = connect(ports.listen).await;
        let t = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::Serializable)
            .read_only(true)
            .start()
            .await
            .unwrap();
        let row = t
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert!(!row.get::<_, bool>(0));
        t.commit().await.unwrap();
        assert_on_replicas(&c, &format!("{}: after the transactions", mode(pooled))).await;
    }
}

/// `default_transaction_deferrable`, `default_transaction_read_only` and `transaction_read_only`
/// leave reads on the replicas; with serializable they read on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_and_deferrable_settings_do_not_break() {
    setup();
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        let what = mode(pooled);
        let c = connect(ports.listen).await;
        c.simple_query("SET default_transaction_deferrable = on")
            .await
            .unwrap();
        c.simple_query("SET default_transaction_read_only = on")
            .await
            .unwrap();
        assert_on_replicas(&c, &format!("{what}: deferrable, read only")).await;
        c.simple_query("SET default_transaction_isolation = serializable")
            .await
            .unwrap();
        assert_on_primary(&c, &format!("{what}: serializable, deferrable, read only")).await;
        c.simple_query("SET default_transaction_read_only = off")
            .await
            .unwrap();
        c.simple_query("SET default_transaction_deferrable = off")
            .await
            .unwrap();
        c.simple_query("SET default_transaction_isolation = 'repeatable read'")
            .await
            .unwrap();
        assert_on_replicas(&c, &format!("{what}: repeatable read")).await;
        // The transaction's own mode outside a transaction: a no-op (or a warning) on the
        // primary, refused by a standby ("cannot set transaction read-write mode during
        // recovery", serializable): never session state to replay.
        for sql in [
            "SET transaction_read_only = off",
            "SET TRANSACTION READ WRITE",
            "SET transaction_isolation = 'serializable'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        ] {
            c.simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{what}: {sql}: {e:?}"));
        }
        where_reads(&c, &format!("{what}: after SET transaction_*")).await;
        c.simple_query("BEGIN").await.unwrap();
        c.simple_query("SET TRANSACTION READ ONLY").await.unwrap();
        assert_eq!(value(&c, "SHOW transaction_read_only").await, "on");
        c.simple_query("COMMIT").await.unwrap();
    }
}

// ---- NOTIFY: the pid a client sees ----

/// A raw login as `mdapp`: the socket and the pid of its BackendKeyData.
fn raw_login(port: u16) -> (TcpStream, i32) {
    let (s, greeting) = support::pg_raw::mdapp_login(port);
    let pid = greeting
        .iter()
        .find(|(tag, _)| *tag == b'K')
        .and_then(|(_, body)| msg::key_data_view(body))
        .expect("BackendKeyData")
        .0;
    (s, pid)
}

/// What a simple Query brought back: the first column of its rows, and its notifications'
/// (pid, payload).
#[derive(Default)]
struct Answer {
    values: Vec<String>,
    notes: Vec<(i32, String)>,
}

fn query(s: &mut TcpStream, sql: &str) -> Answer {
    s.write_all(&msg::query(sql)).unwrap();
    let mut a = Answer::default();
    loop {
        let (tag, body) = read_msg(s);
        match tag {
            b'D' => {
                let len = i32::from_be_bytes(body[2..6].try_into().unwrap()) as usize;
                a.values
                    .push(String::from_utf8_lossy(&body[6..6 + len]).into_owned());
            }
            b'A' => a.notes.push(note(&body)),
            b'E' => panic!("{sql}: {:?}", msg::error_fields(&body)),
            b'Z' => return a,
            _ => {}
        }
    }
}

fn note(body: &[u8]) -> (i32, String) {
    let pid = msg::notification_pid(body).unwrap();
    let mut parts = body[4..].split(|b| *b == 0);
    let _channel = parts.next();
    let payload = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    (pid, payload)
}

/// Notifications that arrive within `wait` without a request.
fn idle_notes(s: &mut TcpStream, want: usize, wait: Duration) -> Vec<(i32, String)> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while out.len() < want && Instant::now() < deadline {
        let mut head = [0u8; 5];
        match s.read_exact(&mut head) {
            Ok(()) => {
                let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
                let mut body = vec![0u8; len - 4];
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.read_exact(&mut body).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                if head[0] == b'A' {
                    out.push(note(&body));
                }
            }
            Err(_) => continue,
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    out
}

/// A notification carries the pid of its sender's BackendKeyData, as direct: a session's own
/// (psycopg2 compares `Notify.pid` with `connection.info.backend_pid`), and another client's of
/// the proxy (psycopg2's notifier prints its `backend_pid`, then the listener compares); a
/// sender that is not the proxy's client keeps its server pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_notifications_carry_the_client_pid() {
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        let port = ports.listen;
        let what = mode(pooled);
        tokio::task::spawn_blocking(move || {
            let (mut a, a_pid) = raw_login(port);
            query(&mut a, "LISTEN fid_chan");
            // LISTEN pinned the session to the primary: this is its server pid there.
            let server_pid: i32 = query(&mut a, "SELECT pg_backend_pid()").values[0]
                .parse()
                .unwrap();
            assert_ne!(server_pid, a_pid, "{what}: the proxy gives its own pid");
            let got = query(&mut a, "NOTIFY fid_chan, 'self'").notes;
            assert_eq!(
                got,
                vec![(a_pid, "self".to_string())],
                "{what}: own notification"
            );
            let got = query(&mut a, "SELECT pg_notify('fid_chan', 'self2')").notes;
            assert_eq!(got, vec![(a_pid, "self2".to_string())], "{what}: pg_notify");
            // Another session's notification, received while idle.
            let (mut b, b_pid) = raw_login(port);
            let sent = query(&mut b, "NOTIFY fid_chan, 'other'; SELECT pg_backend_pid()");
            let b_server: i32 = sent.values[0].parse().unwrap();
            let got = idle_notes(&mut a, 1, Duration::from_secs(10));
            assert_eq!(
                got,
                vec![(b_pid, "other".to_string())],
                "{what}: other session (server pid {b_server})"
            );
            assert_ne!(b_server, b_pid);
            assert_ne!(b_server, a_pid);
            // A client of the server itself, not of the proxy: its server pid.
            let c = shared();
            let direct: i32 = c
                .psql(
                    c.primary_port(),
                    "app",
                    "SELECT pg_backend_pid(); NOTIFY fid_chan, 'direct'",
                )
                .trim()
                .parse()
                .unwrap();
            let got = idle_notes(&mut a, 1, Duration::from_secs(10));
            assert_eq!(
                got,
                vec![(direct, "direct".to_string())],
                "{what}: a direct client"
            );
            println!(
                "{what}: own notification pid {a_pid} (server {server_pid}), other's {b_pid} (server {b_server}), direct {direct}"
            );
        })
        .await
        .unwrap();
    }
}

/// Reads of per-instance state (locks, backends) answer as the primary does: a lock and a backend
/// that exist only on the primary are seen through the proxy, by the fast path (a plain SELECT),
/// the token path and the extended protocol, and counted with reason `primary_state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_primary_state_see_the_primary() {
    setup();
    let c = shared();
    let direct_str = format!(
        "{} application_name=fid_marker",
        pg_conn_str(c.primary_port(), "app", APP_PASSWORD, "app")
    );
    let holder = connect_str(&direct_str).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE fid_t IN ACCESS SHARE MODE")
        .await
        .unwrap();
    for pooled in [false, true] {
        let (proxy, ports) = proxy(pooled);
        let m = mode(pooled);
        let client = connect(ports.listen).await;
        for round in 0..3 {
            let plain = "SELECT pid FROM pg_stat_activity WHERE application_name = 'fid_marker'";
            let rows = client.simple_query(plain).await.unwrap();
            let n = rows
                .iter()
                .filter(|r| matches!(r, SimpleQueryMessage::Row(_)))
                .count();
            assert_eq!(n, 1, "{m} round {round}: {plain} saw {n} backends");
            let locks = "SELECT count(*) FROM pg_catalog.pg_locks \
                         WHERE relation = 'fid_t'::regclass AND pid <> pg_backend_pid()";
            let n: i64 = client.query_one(locks, &[]).await.unwrap().get(0);
            assert_eq!(n, 1, "{m} round {round}: {locks} saw {n} locks");
        }
        let routed = proxy.metric(
            "switchyard_queries_total",
            "reason=\"primary_state\",route=\"primary\"",
        );
        assert!(routed >= 6.0, "{m}: {routed} primary_state routes");
    }
    holder.batch_execute("ROLLBACK").await.unwrap();
}

/// A cancel sent a few ms after a query was sent cancels it, even while the proxy is still
/// routing it, waiting for a pool slot or logging a backend in; a cancel while idle cancels
/// nothing. The query goes out on a raw socket before the cancel is sent (so the order is the
/// client's, whatever the load), the cancel with tokio-postgres' cancel token for the idle case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_cancel_is_not_lost() {
    setup();
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        let m = mode(pooled);
        let port = ports.listen;
        for round in 0..10u64 {
            let r = tokio::task::spawn_blocking(move || early_cancel(port, round))
                .await
                .unwrap();
            let (code, took) = r.unwrap_or_else(|e| panic!("{m} round {round}: {e}"));
            assert_eq!(code, "57014", "{m} round {round}");
            eprintln!("{m} round {round}: cancelled after {took:?}");
        }
        // A cancel while idle does nothing: the next queries run to their end.
        let client = connect(port).await;
        client.simple_query("SELECT 1").await.unwrap();
        client.cancel_token().cancel_query(NoTls).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        client
            .simple_query("SELECT pg_sleep(0.3)")
            .await
            .unwrap_or_else(|e| panic!("{m}: a query after an idle cancel failed: {e:?}"));
        client.simple_query("SELECT 1").await.unwrap();
    }
}

/// A fresh raw session sends `SELECT pg_sleep(5)`, then 2-5 ms later a cancel: the SQLSTATE of the
/// error it got and when, or why there was none.
fn early_cancel(port: u16, round: u64) -> Result<(String, Duration), String> {
    let (mut s, greeting) = support::pg_raw::mdapp_login(port);
    let (pid, secret) = greeting
        .iter()
        .find(|(tag, _)| *tag == b'K')
        .and_then(|(_, body)| msg::key_data_view(body))
        .expect("BackendKeyData");
    let started = Instant::now();
    s.write_all(&msg::query("SELECT pg_sleep(5)")).unwrap();
    std::thread::sleep(Duration::from_millis(2 + round % 4));
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&switchyard::wire::pg::startup::encode_cancel(pid, secret))
        .unwrap();
    let mut code = None;
    loop {
        let (tag, body) = read_msg(&mut s);
        match tag {
            b'E' => code = Some(msg::error_fields(&body).code),
            b'Z' => break,
            _ => {}
        }
    }
    let took = started.elapsed();
    match code {
        Some(code) if took < Duration::from_secs(4) => Ok((code, took)),
        _ => Err(format!("not cancelled: {code:?} after {took:?}")),
    }
}

// ---- Prepared statements and aborted transactions ----

/// Bind (unnamed portal, no parameters) of statement `name`, Execute, Sync.
fn bind_execute(name: &str) -> Vec<u8> {
    let mut bind = vec![0u8];
    bind.extend_from_slice(name.as_bytes());
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
    let mut out = vec![b'B'];
    out.extend_from_slice(&((bind.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&bind);
    out.extend_from_slice(&[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&msg::sync());
    out
}

/// Send `bytes` (ending in one Sync or Query) and sum up the answer: the first error's SQLSTATE,
/// else `ok`, with the number of rows.
fn exchange(s: &mut TcpStream, bytes: &[u8]) -> String {
    s.write_all(bytes).unwrap();
    let (mut error, mut rows) = (None, 0);
    loop {
        let (tag, body) = read_msg(s);
        match tag {
            b'D' => rows += 1,
            b'E' if error.is_none() => error = Some(msg::error_fields(&body).code),
            b'Z' => return error.unwrap_or_else(|| format!("ok {rows} rows")),
            _ => {}
        }
    }
}

/// A transaction aborted by an error, then a statement prepared inside it (refused: 25P02) and one
/// prepared before it run inside it (refused too); after ROLLBACK the first does not exist (26000)
/// and the second runs, again and again. The answers of each step, as `exchange` sums them up.
fn refused_prepares(s: &mut TcpStream) -> Vec<String> {
    let write = "INSERT INTO fid_w VALUES (21)";
    let mut out = vec![exchange(
        s,
        &[msg::parse("fid_kept", write), msg::sync()].concat(),
    )];
    for sql in ["BEGIN", "SELECT 1/0"] {
        out.push(exchange(s, &msg::query(sql)));
    }
    let refused = [
        msg::parse("fid_refused", "SELECT v FROM fid_t"),
        msg::sync(),
    ]
    .concat();
    out.push(exchange(s, &refused));
    out.push(exchange(s, &bind_execute("fid_kept")));
    out.push(exchange(s, &msg::query("ROLLBACK")));
    for _ in 0..4 {
        out.push(exchange(s, &bind_execute("fid_kept")));
        out.push(exchange(s, &bind_execute("fid_refused")));
    }
    // The name is free: it can be prepared now.
    out.push(exchange(s, &refused));
    out.push(exchange(s, &bind_execute("fid_refused")));
    out
}

/// A Parse the server refused (inside an aborted transaction, an injected one included) leaves
/// nothing behind: through the proxy the statement does not exist, as direct, and a statement the
/// proxy re-prepared there for a Bind the server refused is prepared again when next used
/// (it was "prepared statement does not exist" on the pooled connection: issue 21, the
/// differential run's class pg-prepared-missing-after-refused-parse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_parse_leaves_no_statement() {
    use support::pg_cluster::{MD5_PASSWORD, MD5_USER};
    setup();
    let (mut direct, _) =
        support::pg_raw::md5_login(shared().primary_port(), MD5_USER, MD5_PASSWORD);
    let want = refused_prepares(&mut direct);
    assert_eq!(want[3], "25P02", "direct: {want:?}");
    assert_eq!(want[6], "ok 0 rows", "direct: {want:?}");
    assert_eq!(want[7], "26000", "direct: {want:?}");
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        let (mut s, _) = support::pg_raw::mdapp_login(ports.listen);
        let got = refused_prepares(&mut s);
        assert_eq!(got, want, "{}: proxied vs direct", mode(pooled));
    }
}

// ---- Read-only transactions and statements a standby refuses ----

/// The SQLSTATE of a simple query's error, `ok` if it succeeded.
async fn outcome(c: &Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => e
            .code()
            .map_or_else(|| e.to_string(), |s| s.code().to_string()),
    }
}

/// A transaction begun READ ONLY runs on a replica; a LISTEN in it (before or after a read, READ
/// COMMITTED) or a `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE` as its first statement works as
/// direct: the transaction moves to the primary. A serializable setting after a read is refused
/// by the replica as the primary refuses it (25001).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_move_for_what_a_standby_refuses() {
    setup();
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        let m = mode(pooled);
        for read_first in [false, true] {
            let c = connect(ports.listen).await;
            let what = format!("{m}, read first: {read_first}");
            c.simple_query("BEGIN READ ONLY").await.unwrap();
            if read_first {
                assert_eq!(value(&c, "SELECT pg_is_in_recovery()").await, "t", "{what}");
            }
            assert_eq!(outcome(&c, "LISTEN fid_ch").await, "ok", "{what}: LISTEN");
            assert_eq!(value(&c, "SELECT pg_is_in_recovery()").await, "f", "{what}");
            assert_eq!(
                value(&c, "SHOW transaction_read_only").await,
                "on",
                "{what}"
            );
            assert_eq!(
                outcome(&c, "INSERT INTO fid_w VALUES (1)").await,
                "25006",
                "{what}"
            );
            c.simple_query("ROLLBACK").await.unwrap();
            c.simple_query("BEGIN READ ONLY").await.unwrap();
            assert_eq!(outcome(&c, "LISTEN fid_ch").await, "ok", "{what}: LISTEN");
            c.simple_query("COMMIT").await.unwrap();
            assert_eq!(
                value(
                    &c,
                    "SELECT string_agg(c, ',') FROM pg_listening_channels() c"
                )
                .await,
                "fid_ch",
                "{what}"
            );
        }
        // SET LOCAL and a savepoint before the LISTEN go along.
        let c = connect(ports.listen).await;
        for sql in [
            "START TRANSACTION READ ONLY",
            "SET LOCAL TimeZone = 'Asia/Tokyo'",
            "SAVEPOINT s1",
        ] {
            c.simple_query(sql).await.unwrap();
        }
        assert_eq!(
            outcome(&c, "LISTEN fid_ch").await,
            "ok",
            "{m}: LISTEN after SET LOCAL"
        );
        assert_eq!(value(&c, "SHOW TimeZone").await, "Asia/Tokyo", "{m}");
        assert_eq!(outcome(&c, "ROLLBACK TO SAVEPOINT s1").await, "ok", "{m}");
        assert_eq!(value(&c, "SELECT pg_is_in_recovery()").await, "f", "{m}");
        c.simple_query("COMMIT").await.unwrap();
        let c = connect(ports.listen).await;
        c.simple_query("BEGIN READ ONLY").await.unwrap();
        let set = "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE";
        assert_eq!(outcome(&c, set).await, "ok", "{m}: {set}");
        assert_eq!(
            value(&c, "SHOW transaction_isolation").await,
            "serializable",
            "{m}"
        );
        assert_eq!(
            value(&c, "SELECT v FROM fid_t").await,
            "primary data",
            "{m}"
        );
        c.simple_query("COMMIT").await.unwrap();
        assert_on_replicas(&c, &format!("{m}: after the moved transaction")).await;
        c.simple_query("START TRANSACTION READ ONLY").await.unwrap();
        assert_eq!(value(&c, "SELECT pg_is_in_recovery()").await, "t", "{m}");
        assert_eq!(outcome(&c, set).await, "25001", "{m}: {set} after a read");
        c.simple_query("ROLLBACK").await.unwrap();
    }
}

/// A session serializable by its role's default (invisible to the proxy) begins READ ONLY: the
/// replica refuses the transaction's first read serializable mode; the transaction moves to the
/// primary with that read, the client sees no error, and the session reads on the primary from then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_read_only_transaction_moves_to_the_primary() {
    setup();
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        for prepared in [false, true] {
            let what = format!("{}, prepared first read: {prepared}", mode(pooled));
            let c = connect_str(&pg_conn_str(
                ports.listen,
                SERIAL_ROLE,
                SERIAL_PASSWORD,
                "app",
            ))
            .await;
            c.simple_query("BEGIN READ ONLY").await.unwrap();
            let first = if prepared {
                let row = c
                    .query_one("SELECT v FROM fid_t WHERE v = $1", &[&"primary data"])
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                row.get::<_, String>(0)
            } else {
                value(&c, "SELECT v FROM fid_t").await
            };
            assert_eq!(first, "primary data", "{what}");
            assert_eq!(value(&c, "SELECT pg_is_in_recovery()").await, "f", "{what}");
            assert_eq!(
                value(&c, "SHOW transaction_isolation").await,
                "serializable",
                "{what}"
            );
            assert_eq!(
                value(&c, "SHOW transaction_read_only").await,
                "on",
                "{what}"
            );
            assert_eq!(
                outcome(&c, "INSERT INTO fid_w VALUES (1)").await,
                "25006",
                "{what}"
            );
            c.simple_query("ROLLBACK").await.unwrap();
            assert_on_primary(&c, &format!("{what}: afterwards")).await;
        }
        // A write (after a savepoint) as the first statement: refused as on the primary.
        let c = connect_str(&pg_conn_str(
            ports.listen,
            SERIAL_ROLE,
            SERIAL_PASSWORD,
            "app",
        ))
        .await;
        for sql in ["BEGIN READ ONLY", "SAVEPOINT s1"] {
            c.simple_query(sql).await.unwrap();
        }
        let insert = "INSERT INTO fid_w VALUES (3)";
        assert_eq!(
            outcome(&c, insert).await,
            "25006",
            "{}: {insert}",
            mode(pooled)
        );
        c.simple_query("ROLLBACK").await.unwrap();
    }
}

/// A LISTEN in a READ ONLY transaction that cannot move (REPEATABLE READ after a read: its
/// snapshot is the replica's) is refused by the replica (a known difference, 25006); the session
/// is not pinned to that replica for it: after the transaction it writes (and LISTENs) as direct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_listen_does_not_pin_to_the_replica() {
    setup();
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        let m = mode(pooled);
        let c = connect(ports.listen).await;
        c.simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .unwrap();
        assert_eq!(value(&c, "SELECT pg_is_in_recovery()").await, "t", "{m}");
        assert_eq!(outcome(&c, "LISTEN fid_ch").await, "25006", "{m}: LISTEN");
        c.simple_query("ROLLBACK").await.unwrap();
        assert_eq!(
            outcome(&c, "INSERT INTO fid_w VALUES (2)").await,
            "ok",
            "{m}: INSERT"
        );
        assert_eq!(
            outcome(&c, "LISTEN fid_ch").await,
            "ok",
            "{m}: LISTEN outside"
        );
        assert_eq!(
            value(&c, "SELECT pg_is_in_recovery()").await,
            "f",
            "{m}: pinned"
        );
    }
}
