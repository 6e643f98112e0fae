//! End-to-end transaction pooling on MariaDB: 300 clients over 10 server connections per server,
//! reads that pass a busy replica for a free one, waiting reads served by whichever replica frees
//! first, settings that never leak between clients,
//! binary-protocol prepared statements across connections, sysbench with prepared statements,
//! and an abandoned transaction that must leave nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};
use support::mysql_cluster::{shared_mysql, MYSQL_ROOT_PASSWORD};
use support::{Proxy, ProxyPorts};

/// A backend account only the 300-client test uses, so its server connections can be counted
/// while other tests of this binary run.
const POOL_USER: &str = "poolapp";
const POOL_PASSWORD: &str = "poolapp-secret";

/// The shared cluster's standard config in transaction pooling mode with `size` per pool.
fn config(size: usize) -> (String, ProxyPorts) {
    let (yaml, ports) = Proxy::mysql_config(shared_mysql());
    let yaml = yaml.replace(
        "    monitor: {",
        &format!("    pool: {{ mode: transaction, size: {size}, checkout_timeout: 30s }}\n    monitor: {{"),
    );
    let yaml = format!(
        "{yaml}  - {{ name: {POOL_USER}, password: \"{POOL_PASSWORD}\", mysql_auth: mysql_native_password, backend_user: {POOL_USER}, backend_password: \"{POOL_PASSWORD}\" }}\n"
    );
    (yaml, ports)
}

fn start(size: usize) -> (Proxy, ProxyPorts) {
    let (yaml, ports) = config(size);
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    (proxy, ports)
}

fn opts(port: u16, user: &str, password: &str) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some("app"))
        .prefer_socket(false)
        .into()
}

async fn connect(port: u16) -> Conn {
    Conn::new(opts(port, "app", "app-secret"))
        .await
        .expect("connect through the proxy")
}

/// Run `sql` as root on the primary (replicated), then wait for the replicas.
fn setup(sql: &str) {
    let c = shared_mysql();
    c.sql(c.primary_port(), sql);
    c.wait_replicas_caught_up();
}

fn all_ports() -> Vec<u16> {
    let c = shared_mysql();
    let mut ports = vec![c.primary_port()];
    ports.extend(c.replica_ports());
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_clients_share_ten_connections_per_server() {
    setup(&format!(
        "CREATE USER IF NOT EXISTS '{POOL_USER}'@'%' IDENTIFIED BY '{POOL_PASSWORD}'; \
         GRANT ALL ON app.* TO '{POOL_USER}'@'%'; \
         DROP TABLE IF EXISTS app.pool_t; \
         CREATE TABLE app.pool_t (client INT, i INT, PRIMARY KEY (client, i)) ENGINE=InnoDB"
    ));
    let (proxy, ports) = start(10);
    // Sample the servers' process lists as root while the clients run.
    let done = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, max_seen) = (done.clone(), max_seen.clone());
        tokio::spawn(async move {
            let mut roots = Vec::new();
            for p in all_ports() {
                let o = OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(p)
                    .user(Some("root"))
                    .pass(Some(MYSQL_ROOT_PASSWORD))
                    .prefer_socket(false);
                roots.push(Conn::new(o).await.expect("root connection"));
            }
            let sql = format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{POOL_USER}'"
            );
            while !done.load(Ordering::SeqCst) {
                for r in &mut roots {
                    let n: Option<usize> = r.query_first(&sql).await.expect("processlist");
                    max_seen.fetch_max(n.unwrap_or(0), Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..300u32 {
        let port = ports.listen;
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(opts(port, POOL_USER, POOL_PASSWORD))
                .await
                .unwrap_or_else(|e| panic!("client {client} connect: {e}"));
            for i in 0..3u32 {
                c.query_drop(format!("INSERT INTO pool_t VALUES ({client}, {i})"))
                    .await
                    .unwrap_or_else(|e| panic!("client {client} write {i}: {e}"));
                // read_your_writes: the count read back (on a replica) includes this write.
                let n: Option<u32> = c
                    .query_first(format!(
                        "SELECT COUNT(*) FROM pool_t WHERE client = {client}"
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("client {client} read {i}: {e}"));
                assert_eq!(n, Some(i + 1), "client {client} read its writes");
                c.query_drop("BEGIN").await.unwrap();
                c.query_drop(format!(
                    "UPDATE pool_t SET i = i + 100 WHERE client = {client} AND i = {i}"
                ))
                .await
                .unwrap();
                let mine: Option<u32> = c
                    .query_first(format!(
                        "SELECT COUNT(*) FROM pool_t WHERE client = {client} AND i >= 100"
                    ))
                    .await
                    .unwrap();
                assert_eq!(mine, Some(i + 1), "client {client} sees its transaction");
                c.query_drop("COMMIT").await.unwrap();
            }
            c.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    done.store(true, Ordering::SeqCst);
    sampler.await.expect("sampler");
    let took = started.elapsed();
    let c = shared_mysql();
    assert_eq!(
        c.sql(
            c.primary_port(),
            "SELECT COUNT(*), MIN(i), MAX(i) FROM app.pool_t"
        ),
        "900\t100\t102"
    );
    let max = max_seen.load(Ordering::SeqCst);
    println!("300 clients x 3 write/read/transaction rounds in {took:?}; most server connections seen on one server: {max}");
    assert!(max <= 10, "a pool exceeded its size: {max}");
    assert!(max > 0, "the sampler never saw a pooled connection");
    let m = proxy.metrics();
    assert!(
        m.contains(&format!(
            "switchyard_pool_size{{cluster=\"main\",server=\"primary\",user=\"{POOL_USER}\"}} 10"
        )),
        "{m}"
    );
}

/// Pools of one connection per server: while a long read holds one replica's only connection,
/// a client's reads go to the other replica instead of waiting in line behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_a_replica_with_a_free_connection_instead_of_waiting() {
    let (proxy, ports) = start(1);
    let replicas = shared_mysql().replica_ports();
    let mut b = connect(ports.listen).await;
    // The client's first reads use both replicas' pools (round robin).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let p: Option<u16> = b.query_first("SELECT @@port").await.unwrap();
        seen.insert(p.unwrap());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let mut a = connect(ports.listen).await;
    let long = tokio::spawn(async move {
        let p: Option<u16> = a
            .query_first("SELECT @@port + 0 * SLEEP(3) AS free_replica_probe")
            .await
            .unwrap();
        p.unwrap()
    });
    let running = "SELECT COUNT(*) FROM information_schema.processlist \
                   WHERE info LIKE '%free_replica_probe%' AND info NOT LIKE '%processlist%'";
    let deadline = Instant::now() + Duration::from_secs(10);
    while replicas
        .iter()
        .all(|&p| shared_mysql().sql(p, running).trim() == "0")
    {
        assert!(Instant::now() < deadline, "the long read never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut quick = Vec::new();
    for _ in 0..6 {
        let p: Option<u16> = b.query_first("SELECT @@port").await.unwrap();
        quick.push(p.unwrap());
    }
    let busy = long.await.unwrap();
    assert!(replicas.contains(&busy), "{busy} {replicas:?}");
    assert!(
        quick.iter().all(|p| *p != busy && replicas.contains(p)),
        "reads while {busy} was busy: {quick:?}\n{}",
        proxy.log()
    );
}

/// One line for the replicas. Pools of one connection per server; one replica's connection is
/// held by a read of 6 s, the other's by a read of 1 s. Reads arriving meanwhile wait in both
/// replicas' lines at once and are all served by the replica that frees first: none waits for
/// the long read. (With a line per replica, least_connections put every other waiting read
/// behind the 6 s one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_reads_take_whichever_replica_frees_first() {
    let (yaml, ports) = config(1);
    let proxy = Proxy::start(&yaml.replace("balance: round_robin", "balance: least_connections"));
    proxy.wait_topology(3);
    // All five clients log in first (a login takes a connection for a moment).
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(connect(ports.listen).await);
    }
    let read = |mut c: Conn, sql: &'static str| {
        tokio::spawn(async move {
            let p: Option<u16> = c.query_first(sql).await.unwrap();
            (p.unwrap(), Instant::now())
        })
    };
    let long = read(clients.pop().unwrap(), "SELECT @@port + 0 * SLEEP(6)");
    proxy
        .wait_gauge("switchyard_pool_connections", "state=\"in_use\"", 1)
        .await;
    let short = read(clients.pop().unwrap(), "SELECT @@port + 0 * SLEEP(1)");
    proxy
        .wait_gauge("switchyard_pool_connections", "state=\"in_use\"", 2)
        .await;
    let started = Instant::now();
    let queued: Vec<_> = (0..3)
        .map(|_| read(clients.pop().unwrap(), "SELECT @@port"))
        .collect();
    let (freed_first, _) = short.await.unwrap();
    let mut served = Vec::new();
    for t in queued {
        let (port, done) = t.await.unwrap();
        served.push((port, done.duration_since(started)));
    }
    let (held_long, long_done) = long.await.unwrap();
    assert_ne!(held_long, freed_first, "the two reads held both replicas");
    for (port, after) in &served {
        assert!(
            *port == freed_first && *after < long_done.duration_since(started),
            "queued reads (port, time): {served:?}; {freed_first} freed first\n{}",
            proxy.log()
        );
    }
}

/// Once a connection of a pool has logged in, a client with the same login (user, database,
/// charset) is let in without taking a connection: a login never waits in line behind requests.
/// Pools of one connection per server, both replicas' held by long reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_does_not_wait_for_a_busy_pool() {
    let (proxy, ports) = start(1);
    let mut long = Vec::new();
    for held in 1..=2 {
        let mut c = connect(ports.listen).await;
        long.push(tokio::spawn(async move {
            let p: Option<u16> = c.query_first("SELECT @@port + 0 * SLEEP(4)").await.unwrap();
            p.unwrap()
        }));
        proxy
            .wait_gauge("switchyard_pool_connections", "state=\"in_use\"", held)
            .await;
    }
    // (Settings given, so that mysql_async does not read them with a query after the login.)
    let opts = OptsBuilder::from_opts(opts(ports.listen, "app", "app-secret"))
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28_800));
    let mut c = Conn::new(opts).await.unwrap();
    assert!(
        long.iter().all(|t| !t.is_finished()),
        "the login waited for the long reads"
    );
    let v: Option<i64> = c.query_first("SELECT 6 * 7").await.unwrap();
    assert_eq!(v, Some(42));
    for t in long {
        t.await.unwrap();
    }
}

/// `CURRENT_USER()` of a read, or (`in_txn`) inside a transaction (the primary).
async fn current_user(c: &mut Conn, in_txn: bool) -> String {
    let u: Option<String> = if in_txn {
        let mut t = c
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .unwrap();
        let u = t.query_first("SELECT CURRENT_USER()").await.unwrap();
        t.commit().await.unwrap();
        u
    } else {
        c.query_first("SELECT CURRENT_USER()").await.unwrap()
    };
    u.unwrap()
}

/// After COM_CHANGE_USER a session's requests run on the new user's pooled connections, on
/// every server, including those whose pools it used before the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_moves_the_session_to_the_new_users_pools() {
    setup(&format!(
        "CREATE USER IF NOT EXISTS '{POOL_USER}'@'%' IDENTIFIED BY '{POOL_PASSWORD}'; \
         GRANT ALL ON app.* TO '{POOL_USER}'@'%'"
    ));
    let (_proxy, ports) = start(2);
    let mut c = connect(ports.listen).await;
    // The session uses both replicas' pools and the primary's as `app`.
    for _ in 0..4 {
        assert!(current_user(&mut c, false).await.starts_with("app@"));
    }
    assert!(current_user(&mut c, true).await.starts_with("app@"));
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(POOL_USER.into()))
            .with_pass(Some(POOL_PASSWORD.into()))
            .with_db_name(Some("app".into())),
    )
    .await
    .expect("COM_CHANGE_USER to another configured user");
    for _ in 0..4 {
        let u = current_user(&mut c, false).await;
        assert!(u.starts_with(&format!("{POOL_USER}@")), "read as {u}");
    }
    let u = current_user(&mut c, true).await;
    assert!(
        u.starts_with(&format!("{POOL_USER}@")),
        "transaction as {u}"
    );
}

async fn session_vars(c: &mut Conn) -> (String, String) {
    c.query_first("SELECT @@session.sql_mode, @@session.time_zone")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_never_leak_between_clients() {
    let (proxy, ports) = start(1);
    let root = shared_mysql();
    let defaults = root.sql(
        root.primary_port(),
        "SELECT @@global.sql_mode, @@global.time_zone",
    );
    let (mode, zone) = defaults.split_once('\t').unwrap();
    let defaults = (mode.to_string(), zone.to_string());
    let mut a = connect(ports.listen).await;
    let mut b = connect(ports.listen).await;
    a.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    a.query_drop("SET @@session.time_zone = '+09:00'")
        .await
        .unwrap();
    let a_wants = ("ANSI_QUOTES".to_string(), "+09:00".to_string());
    for round in 0..30 {
        assert_eq!(session_vars(&mut b).await, defaults, "round {round}: B");
        assert_eq!(session_vars(&mut a).await, a_wants, "round {round}: A");
        // ANSI_QUOTES: "x" is an identifier for A and a string for B.
        let s: Option<String> = b.query_first("SELECT \"x\"").await.unwrap();
        assert_eq!(s.as_deref(), Some("x"), "round {round}: B quotes");
        let err = a.query_drop("SELECT \"no_such_column\"").await;
        assert!(err.is_err(), "round {round}: A has ANSI_QUOTES");
        // Interleave a fresh client now and then: it must see defaults too.
        if round % 10 == 9 {
            let mut c = connect(ports.listen).await;
            assert_eq!(session_vars(&mut c).await, defaults, "round {round}: C");
            c.disconnect().await.unwrap();
        }
    }
    // Character set and default database: what COM_RESET_CONNECTION restores (the login
    // character set) and what it does not (the database: that connection is replaced).
    let fresh: Option<(String, String)> = b
        .query_first("SELECT @@character_set_client, DATABASE()")
        .await
        .unwrap();
    let mut e = connect(ports.listen).await;
    e.query_drop("SET NAMES latin1").await.unwrap();
    for (step, db) in [(0, "app"), (1, "information_schema")] {
        if step == 1 {
            e.query_drop("USE information_schema").await.unwrap();
        }
        for round in 0..5 {
            let got: Option<(String, String)> = b
                .query_first("SELECT @@character_set_client, DATABASE()")
                .await
                .unwrap();
            assert_eq!(got, fresh, "step {step} round {round}: B after E");
            let got: Option<(String, String)> = e
                .query_first("SELECT @@character_set_client, DATABASE()")
                .await
                .unwrap();
            assert_eq!(
                got,
                Some(("latin1".into(), db.into())),
                "step {step} round {round}: E"
            );
        }
    }
    e.disconnect().await.unwrap();
    // Concurrently: A and B hammer a pool of one connection per server.
    let pa = ports.listen;
    let ta = tokio::spawn(async move {
        for _ in 0..40 {
            assert_eq!(session_vars(&mut a).await, a_wants);
        }
        a.disconnect().await.unwrap();
    });
    let tb = tokio::spawn(async move {
        for _ in 0..40 {
            assert_eq!(session_vars(&mut b).await, defaults);
        }
        b.disconnect().await.unwrap();
    });
    ta.await.unwrap();
    tb.await.unwrap();
    let mut d = connect(pa).await;
    let z: Option<String> = d.query_first("SELECT @@session.time_zone").await.unwrap();
    assert_ne!(z.as_deref(), Some("+09:00"), "{}", proxy.log());
    d.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_clients_across_connections() {
    setup(
        "DROP TABLE IF EXISTS app.ps_t; \
         CREATE TABLE app.ps_t (client INT, i INT, v VARCHAR(40), PRIMARY KEY (client, i)) ENGINE=InnoDB",
    );
    let (proxy, ports) = start(2);
    let mut tasks = Vec::new();
    for client in 0..6i64 {
        let port = ports.listen;
        tasks.push(tokio::spawn(async move {
            let mut c = connect(port).await;
            let ins = c.prep("INSERT INTO ps_t VALUES (?, ?, ?)").await.unwrap();
            for i in 0..25i64 {
                let sum: Option<i64> = c
                    .exec_first("SELECT ? + ?", (client, i))
                    .await
                    .unwrap_or_else(|e| panic!("client {client} sum {i}: {e}"));
                assert_eq!(sum, Some(client + i));
                c.exec_drop(&ins, (client, i, format!("c{client}-{i}")))
                    .await
                    .unwrap_or_else(|e| panic!("client {client} insert {i}: {e}"));
                let v: Option<String> = c
                    .exec_first("SELECT v FROM ps_t WHERE client = ? AND i = ?", (client, i))
                    .await
                    .unwrap_or_else(|e| panic!("client {client} select {i}: {e}"));
                assert_eq!(v, Some(format!("c{client}-{i}")));
                if i % 8 == 7 {
                    // Closing a statement must not break the same text for anyone else.
                    let tmp = c
                        .prep("SELECT COUNT(*) FROM ps_t WHERE client = ?")
                        .await
                        .unwrap();
                    let n: Option<i64> = c.exec_first(&tmp, (client,)).await.unwrap();
                    assert_eq!(n, Some(i + 1));
                    c.close(tmp).await.unwrap();
                }
            }
            c.close(ins).await.unwrap();
            c.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let c = shared_mysql();
    assert_eq!(
        c.sql(c.primary_port(), "SELECT COUNT(*) FROM app.ps_t"),
        "150"
    );
    // Statements prepared by clients stay cached on pooled connections, not one set per client.
    let open: usize = c
        .sql(
            c.primary_port(),
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT'",
        )
        .parse()
        .unwrap();
    // PREPARED_STMT_COUNT is server-wide: the other tests of this binary (sysbench prepares its
    // own statements) run at the same time on the same primary, so the bound leaves room for
    // them. Without per-connection caching by text this test alone would leave 6 clients x 3+
    // statements on every connection they ever used.
    assert!(
        open <= 150,
        "{open} statements open on the primary\n{}",
        proxy.log()
    );
}

fn sysbench(port: u16, test: &str, phase: &str) -> String {
    let out = std::process::Command::new("sysbench")
        .args([
            test,
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            "--mysql-user=app",
            "--mysql-password=app-secret",
            "--mysql-db=app",
            "--db-driver=mysql",
            "--tables=2",
            "--table-size=2000",
            "--threads=4",
            "--time=5",
            "--db-ps-mode=auto",
            phase,
        ])
        .output()
        .expect("sysbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sysbench {test} {phase} failed:\n{text}"
    );
    text
}

#[test]
fn sysbench_read_write_with_prepared_statements_in_transaction_mode() {
    let (proxy, ports) = start(3);
    sysbench(ports.listen, "oltp_read_write", "prepare");
    shared_mysql().wait_replicas_caught_up();
    let out = sysbench(ports.listen, "oltp_read_write", "run");
    let tx = out
        .lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
        .unwrap_or_else(|| panic!("{out}\n{}", proxy.log()));
    assert!(!tx.contains(" 0 "), "no transaction completed: {tx}");
    let ignored = out
        .lines()
        .find(|l| l.trim_start().starts_with("ignored errors:"))
        .unwrap_or_default();
    println!("sysbench through a transaction-mode proxy (pool 3, 4 threads): {tx} / {ignored}");
    sysbench(ports.listen, "oltp_read_write", "cleanup");
    let m = proxy.metrics();
    assert!(m.contains("route=\"replica\""), "{m}");
    assert!(!m.contains("kind=\"pool_timeout\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_transaction_leaves_nothing_behind() {
    setup(
        "DROP TABLE IF EXISTS app.abandon_t; \
         CREATE TABLE app.abandon_t (id INT PRIMARY KEY) ENGINE=InnoDB",
    );
    let (proxy, ports) = start(1);
    for round in 0..3 {
        let mut a = connect(ports.listen).await;
        a.query_drop("BEGIN").await.unwrap();
        a.query_drop(format!("INSERT INTO abandon_t VALUES ({round})"))
            .await
            .unwrap();
        if round % 2 == 0 {
            a.disconnect().await.unwrap();
        } else {
            // Gone without a word: the socket just closes.
            drop(a);
        }
        let mut b = connect(ports.listen).await;
        // The same key inserts at once (no lock left behind) and nothing else is there.
        b.query_drop("SET @switchyard_consistency = 'strong'")
            .await
            .unwrap();
        let n: Option<u32> = b
            .query_first("SELECT COUNT(*) FROM abandon_t")
            .await
            .unwrap();
        assert_eq!(n, Some(0), "round {round}: the abandoned row is visible");
        let in_txn: Option<u32> = b.query_first("SELECT @@in_transaction").await.unwrap();
        assert_eq!(
            in_txn,
            Some(0),
            "round {round}: a transaction was inherited"
        );
        b.query_drop(format!("INSERT INTO abandon_t VALUES ({round})"))
            .await
            .unwrap();
        b.query_drop(format!("DELETE FROM abandon_t WHERE id = {round}"))
            .await
            .unwrap();
        b.disconnect().await.unwrap();
    }
    let m = proxy.metrics();
    assert!(
        m.contains("switchyard_pool_size{cluster=\"main\",server=\"primary\",user=\"app\"} 1"),
        "{m}"
    );
}

/// `SELECT LAST_INSERT_ID()` after an autocommit INSERT gives the session's own id even when the
/// INSERT ran on another pooled connection (6 clients over a pool of 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_insert_id_is_the_sessions_own_across_pooled_connections() {
    setup("CREATE TABLE IF NOT EXISTS app.lid_t (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)");
    let (proxy, ports) = start(2);
    let mut tasks = Vec::new();
    for client in 0..6 {
        tasks.push(tokio::spawn(async move {
            let mut c = connect(ports.listen).await;
            for round in 0..30 {
                c.query_drop(format!("INSERT INTO lid_t (v) VALUES ({client})"))
                    .await
                    .unwrap();
                let from_ok = c.last_insert_id().expect("OK packet carries the id");
                let asked: u64 = c
                    .query_first("SELECT LAST_INSERT_ID()")
                    .await
                    .unwrap()
                    .expect("one row");
                assert_eq!(asked, from_ok, "client {client} round {round}");
                let aliased: Option<(u64,)> = c
                    .query_first("select last_insert_id() as id")
                    .await
                    .unwrap();
                assert_eq!(aliased, Some((from_ok,)));
            }
        }));
    }
    for t in tasks {
        t.await
            .expect("a client saw another session's LAST_INSERT_ID()");
    }
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_serves_clients_and_sleeps_when_idle() {
    setup(
        "DROP TABLE IF EXISTS app.busy_poll_t; \
         CREATE TABLE app.busy_poll_t (i INT PRIMARY KEY) ENGINE=InnoDB",
    );
    let (yaml, ports) = config(4);
    let proxy = Proxy::start_args(&yaml, &["--threads", "1", "--busy-poll", "300us"]);
    proxy.wait_topology(3);
    let mut c = connect(ports.listen).await;
    let ins = c.prep("INSERT INTO busy_poll_t VALUES (?)").await.unwrap();
    for i in 0..200i64 {
        c.exec_drop(&ins, (i,)).await.unwrap();
        // Binary and text protocol; a transaction reads its own writes on the primary.
        let sum: Option<i64> = c.exec_first("SELECT ? + 1", (i,)).await.unwrap();
        assert_eq!(sum, Some(i + 1));
        let mut t = c
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .unwrap();
        let n: Option<i64> = t
            .query_first("SELECT count(*) FROM busy_poll_t")
            .await
            .unwrap();
        assert_eq!(n, Some(i + 1));
        t.commit().await.unwrap();
    }
    // Idle: polling stops once the window after the last request has passed.
    tokio::task::block_in_place(|| proxy.assert_sleeps_when_idle());
    let n: Option<i64> = c
        .query_first("SELECT count(*) FROM busy_poll_t")
        .await
        .unwrap();
    assert!(n.is_some());
    c.disconnect().await.unwrap();
}
