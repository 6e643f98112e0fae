//! End-to-end transaction pooling on PostgreSQL: 500 clients over 10 server connections per
//! server, reads that pass a busy replica for a free one, waiting reads served by whichever
//! replica frees first, settings that never leak between
//! clients, prepared statements across connections, pgbench -M prepared, and an abandoned
//! pipeline that must leave nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::pg_cluster::{MD5_USER, PG_BIN};
use support::{pg_conn_str, shared, Proxy, ProxyPorts};
use switchyard::wire::pg::msg;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const MDAPP_PASSWORD: &str = support::proxy::MDAPP_PASSWORD;
/// A backend role only the 500-client test uses, so connections counted on the servers are its own
/// (the other tests of this binary log in as md5user at the same time).
const POOL_ROLE: &str = "pool500";
const POOL_PASSWORD: &str = "pool500-secret";

/// The shared cluster's standard config in transaction pooling mode with `size` per pool.
fn config(size: usize) -> (String, ProxyPorts) {
    let (yaml, ports) = Proxy::pg_config(shared());
    let yaml = yaml.replace(
        "    monitor: {",
        &format!("    pool: {{ mode: transaction, size: {size}, checkout_timeout: 60s }}\n    monitor: {{"),
    );
    (yaml, ports)
}

async fn connect(port: u16, user: &str, password: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(&pg_conn_str(port, user, password, "app"), NoTls)
        .await
        .expect("connect through the proxy");
    tokio::spawn(conn);
    client
}

use support::simple_value as value;

fn setup(table: &str) {
    let c = shared();
    c.psql(
        c.primary_port(),
        "app",
        &format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (client int, i int, PRIMARY KEY (client, i)); \
             GRANT ALL ON {table} TO {MD5_USER}"
        ),
    );
    c.wait_replicas_caught_up();
}

/// Client connections matching `filter` (SQL on pg_stat_activity) on each server right now
/// (primary, replica1, replica2).
fn connections_where(filter: &str) -> Vec<usize> {
    let c = shared();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE {filter} AND backend_type = 'client backend'"
    );
    let mut ports = vec![c.primary_port()];
    ports.extend(c.replica_ports());
    ports
        .iter()
        .map(|p| c.psql(*p, "postgres", &sql).parse().unwrap())
        .collect()
}

/// Server connections `user` holds on each server right now (primary, replica1, replica2).
fn server_connections(user: &str) -> Vec<usize> {
    connections_where(&format!("usename = '{user}'"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_share_ten_connections_per_server() {
    setup("pool_t");
    let sh = shared();
    sh.psql(
        sh.primary_port(),
        "app",
        &format!(
            "DO $$ BEGIN CREATE ROLE {POOL_ROLE} LOGIN PASSWORD '{POOL_PASSWORD}'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; GRANT ALL ON pool_t TO {POOL_ROLE}"
        ),
    );
    sh.wait_replicas_caught_up();
    let (yaml, ports) = config(10);
    // Clients log in as pooluser (md5 towards the proxy: cheap for 500 logins), the proxy as pool500.
    let yaml = yaml.replace(
        "users:\n",
        &format!(
            "users:\n  - {{ name: pooluser, password: \"{MDAPP_PASSWORD}\", auth: md5, backend_user: {POOL_ROLE}, backend_password: \"{POOL_PASSWORD}\" }}\n"
        ),
    );
    // One thread with the single-threaded scheduler (`--threads 1`, as in bench/pooling.sh):
    // 500 clients on one event loop.
    let proxy = Proxy::start_args(&yaml, &["--threads", "1"]);
    proxy.wait_topology(3);
    let done = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, max_seen) = (done.clone(), max_seen.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                for n in server_connections(POOL_ROLE) {
                    max_seen.fetch_max(n, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..500 {
        let port = ports.listen;
        tasks.push(tokio::spawn(async move {
            let mut c = connect(port, "pooluser", MDAPP_PASSWORD).await;
            for i in 0..4 {
                c.simple_query(&format!("INSERT INTO pool_t VALUES ({client}, {i})"))
                    .await
                    .unwrap_or_else(|e| panic!("client {client} write {i}: {e:?}"));
                // read_your_writes: the count read back (on a replica) includes this write.
                let n = value(
                    &c,
                    &format!("SELECT count(*) FROM pool_t WHERE client = {client}"),
                )
                .await;
                assert_eq!(n, (i + 1).to_string(), "client {client} read its writes");
                let t = c.transaction().await.unwrap();
                t.simple_query(&format!(
                    "UPDATE pool_t SET i = i + 100 WHERE client = {client} AND i = {i}"
                ))
                .await
                .unwrap();
                t.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let took = started.elapsed();
    let c = shared();
    assert_eq!(
        c.psql(
            c.primary_port(),
            "app",
            "SELECT count(*), min(i), max(i) FROM pool_t"
        ),
        "2000|100|103"
    );
    let max = max_seen.load(Ordering::SeqCst);
    println!("500 clients x 4 write/read/transaction rounds in {took:?}; most server connections seen on one server: {max}");
    assert!(max <= 10, "a pool exceeded its size: {max}");
    let m = proxy.metrics();
    assert!(
        m.contains("switchyard_pool_size{cluster=\"main\",server=\"primary\",user=\"pool500\"} 10"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_its_own_pool_size_never_exceeds_it() {
    const APP: &str = "own_pool_size";
    let (yaml, ports) = config(6);
    let yaml = yaml.replacen("role: replica }", "role: replica, pool_size: 2 }", 1);
    assert!(yaml.contains("pool_size: 2"), "{yaml}");
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let done = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(std::sync::Mutex::new(vec![0usize; 3]));
    let sampler = {
        let (done, max_seen) = (done.clone(), max_seen.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let now = connections_where(&format!("application_name = '{APP}'"));
                let mut m = max_seen.lock().unwrap();
                for (seen, n) in m.iter_mut().zip(now) {
                    *seen = (*seen).max(n);
                }
                drop(m);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let conn = format!(
        "{} application_name={APP}",
        pg_conn_str(ports.listen, "mdapp", MDAPP_PASSWORD, "app")
    );
    let mut tasks = Vec::new();
    for client in 0..24 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let (c, task) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
            tokio::spawn(task);
            for _ in 0..15 {
                // A read that holds its server connection a little while.
                let v = value(
                    &c,
                    &format!("SELECT {client} + 0 * length(pg_sleep(0.02)::text)"),
                )
                .await;
                assert_eq!(v, client.to_string());
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let max = max_seen.lock().unwrap().clone();
    println!("most connections seen (primary, replica1, replica2): {max:?}");
    assert!(
        max[1] >= 1 && max[1] <= 2,
        "replica1 (pool_size 2): {max:?}"
    );
    assert!(max[2] > 2 && max[2] <= 6, "replica2 (pool.size 6): {max:?}");
    let m = proxy.metrics();
    for (server, size) in [("replica1", 2), ("replica2", 6)] {
        let line = format!("switchyard_pool_size{{cluster=\"main\",server=\"{server}\",user=\"{MD5_USER}\"}} {size}");
        assert!(m.contains(&line), "{line}\n{m}");
    }
}

/// Pools of one connection per server: while a long read holds one replica's only connection,
/// a client's reads go to the other replica (whose connection is free) instead of waiting in
/// line behind it, whatever the round robin would have picked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_a_replica_with_a_free_connection_instead_of_waiting() {
    const APP: &str = "free_replica";
    let (yaml, ports) = config(1);
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let conn = format!(
        "{} application_name={APP}",
        pg_conn_str(ports.listen, "mdapp", MDAPP_PASSWORD, "app")
    );
    let (b, task) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
    tokio::spawn(task);
    let replicas: Vec<String> = shared()
        .replica_ports()
        .iter()
        .map(u16::to_string)
        .collect();
    // The client's first reads use both replicas' pools (round robin).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(value(&b, "SELECT inet_server_port()").await);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Another client holds one replica's only connection for a while.
    let (a, task) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
    tokio::spawn(task);
    let long = tokio::spawn(async move {
        value(
            &a,
            "SELECT inet_server_port() + 0 * length(pg_sleep(3)::text)",
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections_where(&format!(
        "application_name = '{APP}' AND query LIKE '%pg_sleep(3)%' AND state = 'active'"
    ))
    .iter()
    .sum::<usize>()
        == 0
    {
        assert!(Instant::now() < deadline, "the long read never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut quick = Vec::new();
    for _ in 0..6 {
        quick.push(value(&b, "SELECT inet_server_port()").await);
    }
    let busy = long.await.unwrap();
    assert!(replicas.contains(&busy), "{busy} {replicas:?}");
    assert!(
        quick.iter().all(|p| p != &busy && replicas.contains(p)),
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
    const APP: &str = "one_line";
    let (yaml, ports) = config(1);
    let yaml = yaml.replace("balance: round_robin", "balance: least_connections");
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let conn = format!(
        "{} application_name={APP}",
        pg_conn_str(ports.listen, "mdapp", MDAPP_PASSWORD, "app")
    );
    // All five clients log in first (a login takes a connection for a moment).
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (c, task) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
        tokio::spawn(task);
        clients.push(c);
    }
    let read = |c: Client, sql: &'static str| {
        tokio::spawn(async move { (value(&c, sql).await, Instant::now()) })
    };
    let long = read(
        clients.pop().unwrap(),
        "SELECT inet_server_port() + 0 * length(pg_sleep(6)::text)",
    );
    proxy
        .wait_gauge("switchyard_pool_connections", "state=\"in_use\"", 1)
        .await;
    let short = read(
        clients.pop().unwrap(),
        "SELECT inet_server_port() + 0 * length(pg_sleep(1)::text)",
    );
    proxy
        .wait_gauge("switchyard_pool_connections", "state=\"in_use\"", 2)
        .await;
    let started = Instant::now();
    let queued: Vec<_> = (0..3)
        .map(|_| read(clients.pop().unwrap(), "SELECT inet_server_port()"))
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

/// Once a pool's connection has logged in, a client with the same login is greeted with what
/// that server reported (ParameterStatus) without taking a connection: a login never waits in
/// line behind requests. Pools of one connection per server, both replicas' held by long reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_does_not_wait_for_a_busy_pool() {
    let (yaml, ports) = config(1);
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let conn = pg_conn_str(ports.listen, "mdapp", MDAPP_PASSWORD, "app");
    let mut long = Vec::new();
    for held in 1..=2 {
        let (c, task) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
        tokio::spawn(task);
        long.push(tokio::spawn(async move {
            value(
                &c,
                "SELECT inet_server_port() + 0 * length(pg_sleep(4)::text)",
            )
            .await
        }));
        proxy
            .wait_gauge("switchyard_pool_connections", "state=\"in_use\"", held)
            .await;
    }
    // Logins now, while both replicas' only connections are busy.
    let (c, task) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
    tokio::spawn(task);
    let port = ports.listen;
    let (raw, params) = tokio::task::spawn_blocking(move || raw_login_params(port))
        .await
        .unwrap();
    assert!(
        long.iter().all(|t| !t.is_finished()),
        "the logins waited for the long reads"
    );
    for p in ["server_version", "client_encoding", "integer_datetimes"] {
        assert!(params.iter().any(|n| n == p), "{p} missing: {params:?}");
    }
    // Their first requests wait their turn and run.
    assert_eq!(value(&c, "SELECT 6 * 7").await, "42");
    for t in long {
        t.await.unwrap();
    }
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_never_leak_between_clients() {
    let (yaml, ports) = config(1);
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let a = connect(ports.listen, "mdapp", MDAPP_PASSWORD).await;
    let mut b = connect(ports.listen, "mdapp", MDAPP_PASSWORD).await;
    a.simple_query("SET search_path = pg_catalog, public")
        .await
        .unwrap();
    a.simple_query("SET TimeZone = 'Asia/Tokyo'").await.unwrap();
    for _ in 0..20 {
        assert_eq!(value(&a, "SHOW search_path").await, "pg_catalog, public");
        assert_eq!(value(&b, "SHOW search_path").await, "\"$user\", public");
        assert_eq!(value(&a, "SHOW TimeZone").await, "Asia/Tokyo");
        assert_ne!(value(&b, "SHOW TimeZone").await, "Asia/Tokyo");
        // Inside a transaction too (the primary).
        let t = b.transaction().await.unwrap();
        assert_eq!(value_t(&t, "SHOW search_path").await, "\"$user\", public");
        t.commit().await.unwrap();
    }
    b.simple_query("SET search_path = information_schema")
        .await
        .unwrap();
    assert_eq!(value(&b, "SHOW search_path").await, "information_schema");
    assert_eq!(value(&a, "SHOW search_path").await, "pg_catalog, public");
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_idle_keeps_warm_connections_ready() {
    let (yaml, ports) = config(4);
    let yaml = yaml.replace("size: 4,", "size: 4, min_idle: 3,");
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let c = connect(ports.listen, "mdapp", MDAPP_PASSWORD).await;
    c.simple_query("BEGIN; SELECT 1; COMMIT").await.unwrap();
    drop(c);
    // The primary's pool (made by that transaction) fills up to at least 3 idle connections
    // by itself (the client's own one comes back too).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = proxy.http_get("/api/pools");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let primary = v["clusters"][0]["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["server"] == "primary")
            .cloned();
        if primary
            .as_ref()
            .is_some_and(|p| p["idle"].as_u64().unwrap() >= 3)
        {
            println!("warm pool: {}", primary.unwrap());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 3 warm connections: {body}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(proxy);
}

async fn value_t(t: &tokio_postgres::Transaction<'_>, sql: &str) -> String {
    let rows = t.simple_query(sql).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_clients_across_connections() {
    let (yaml, ports) = config(2);
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(connect(ports.listen, "mdapp", MDAPP_PASSWORD).await);
    }
    let mut stmts = Vec::new();
    for (k, c) in clients.iter().enumerate() {
        stmts.push(c.prepare(&format!("SELECT $1::int + {k}")).await.unwrap());
    }
    for round in 0..30i32 {
        for (k, (c, s)) in clients.iter().zip(&stmts).enumerate() {
            let row = c.query_one(s, &[&round]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), round + k as i32);
        }
    }
    drop(proxy);
}

#[test]
fn pgbench_prepared_and_simple_run_clean_in_transaction_mode() {
    let c = shared();
    let (yaml, ports) = config(4);
    let proxy = Proxy::start_args(&yaml, &["--threads", "1"]);
    proxy.wait_topology(3);
    let pgbench = |args: &[&str]| {
        let out = std::process::Command::new(format!("{PG_BIN}/pgbench"))
            .args(args)
            .env("PGPASSWORD", c.superuser_password())
            .output()
            .expect("run pgbench");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "pgbench {args:?} failed:\n{text}\n{}",
            proxy.log()
        );
        text
    };
    let p = c.primary_port().to_string();
    pgbench(&[
        "-i",
        "-q",
        "-s",
        "1",
        "-h",
        "127.0.0.1",
        "-p",
        &p,
        "-U",
        "postgres",
        "postgres",
    ]);
    c.wait_replicas_caught_up();
    let l = ports.listen.to_string();
    for args in [
        vec!["-M", "prepared", "-c", "8", "-t", "100"],
        vec!["-M", "prepared", "-S", "-c", "8", "-t", "200"],
        vec!["-M", "extended", "-c", "8", "-t", "100"],
    ] {
        let mut all: Vec<&str> = args.clone();
        all.extend([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &l,
            "-U",
            "postgres",
            "postgres",
        ]);
        let out = pgbench(&all);
        assert!(out.contains("number of failed transactions: 0"), "{out}");
        println!("pgbench {args:?} through transaction pooling (4 per pool): ok");
    }
}

/// A raw md5 login to the proxy as `mdapp`; returns the socket after ReadyForQuery.
fn raw_login(port: u16) -> TcpStream {
    raw_login_params(port).0
}

/// [`raw_login`], also returning the names of the ParameterStatus messages of the greeting.
fn raw_login_params(port: u16) -> (TcpStream, Vec<String>) {
    let (s, greeting) = support::pg_raw::mdapp_login(port);
    let params = greeting
        .iter()
        .filter(|(tag, _)| *tag == b'S')
        .map(|(_, body)| {
            let name = body.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(name).into_owned()
        })
        .collect();
    (s, params)
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_pipeline_leaves_nothing_for_the_next_client() {
    setup("pipe_t");
    let (yaml, ports) = config(1);
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let port = ports.listen;
    tokio::task::spawn_blocking(move || {
        // BEGIN; INSERT... sent as a pipeline (Parse/Bind/Execute, no Sync), then the client vanishes.
        let mut s = raw_login(port);
        let mut out = Vec::new();
        for sql in ["BEGIN", "INSERT INTO pipe_t VALUES (1, 1)"] {
            out.extend_from_slice(&msg::parse("", sql));
            out.extend_from_slice(&frame(b'B', b"\0\0\0\0\0\0\0"));
            out.extend_from_slice(&frame(b'E', b"\0\0\0\0\0"));
        }
        out.extend_from_slice(&frame(b'H', b""));
        s.write_all(&out).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
        // A client that started a transaction, wrote, and vanished before COMMIT.
        let mut s = raw_login(port);
        s.write_all(&msg::query("BEGIN; INSERT INTO pipe_t VALUES (2, 2)"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
    })
    .await
    .unwrap();
    // The next client (same one-connection pool) sees no open transaction and none of those rows.
    let mut c = connect(port, "mdapp", MDAPP_PASSWORD).await;
    for _ in 0..5 {
        let t = c.transaction().await.unwrap();
        assert_eq!(value_t(&t, "SELECT count(*) FROM pipe_t").await, "0");
        t.commit().await.unwrap();
    }
    c.simple_query("INSERT INTO pipe_t VALUES (3, 3)")
        .await
        .unwrap();
    let sh = shared();
    assert_eq!(
        sh.psql(
            sh.primary_port(),
            "app",
            "SELECT string_agg(client::text, ',') FROM pipe_t"
        ),
        "3"
    );
    drop(proxy);
}

/// A plain BEGIN (simple Query) takes no server connection: it is answered by the proxy and goes
/// to the primary in the same write as the transaction's next request, which then runs in a real
/// transaction there, through the simple or the extended protocol.
#[tokio::test]
async fn a_begin_takes_no_connection_until_the_next_request() {
    setup("deferred_begin_t");
    let (yaml, ports) = config(1);
    let proxy = Proxy::start(&yaml.replace("checkout_timeout: 60s", "checkout_timeout: 2s"));
    proxy.wait_topology(3);
    let a = connect(ports.listen, "mdapp", MDAPP_PASSWORD).await;
    let b = connect(ports.listen, "mdapp", MDAPP_PASSWORD).await;
    let count = |i: i32| {
        format!("/* switchyard: primary */ SELECT count(*) FROM deferred_begin_t WHERE i = {i}")
    };
    a.simple_query("BEGIN").await.unwrap();
    // The primary's pool of one is free: another client writes there at once.
    b.simple_query("INSERT INTO deferred_begin_t VALUES (0, 1)")
        .await
        .expect("the BEGIN held the only primary connection");
    // a's transaction is real from its next request on: one transaction id across requests, on
    // the primary, and a savepoint (only allowed in a transaction block) is accepted.
    let xid = value(&a, "SELECT txid_current()").await;
    a.simple_query("SAVEPOINT s").await.unwrap();
    assert_eq!(value(&a, "SELECT txid_current()").await, xid);
    let port = value(&a, "SELECT current_setting('port')").await;
    assert_eq!(port, shared().primary_port().to_string());
    a.simple_query("INSERT INTO deferred_begin_t VALUES (0, 2)")
        .await
        .unwrap();
    a.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(
        value(&b, &count(2)).await,
        "0",
        "the rolled back insert stayed"
    );
    // A transaction with nothing in it, then one whose first request is extended-protocol.
    a.simple_query("START TRANSACTION").await.unwrap();
    a.simple_query("END").await.unwrap();
    a.simple_query("begin work;").await.unwrap();
    a.execute("INSERT INTO deferred_begin_t VALUES ($1, 3)", &[&0i32])
        .await
        .unwrap();
    let xid = value(&a, "SELECT txid_current()").await;
    assert_eq!(value(&a, "SELECT txid_current()").await, xid);
    a.simple_query("COMMIT").await.unwrap();
    assert_eq!(value(&b, &count(3)).await, "1");
    // A failing first request fails the transaction as on the server itself.
    a.simple_query("BEGIN").await.unwrap();
    let err = a
        .simple_query("INSERT INTO deferred_begin_t VALUES ('x', 4)")
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("invalid input syntax"),
        "{err:?}"
    );
    let err = a.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        format!("{err:?}").contains("current transaction is aborted"),
        "{err:?}"
    );
    a.simple_query("ROLLBACK").await.unwrap();
    // Outside a transaction again: a's connection went back, b may take it.
    b.simple_query("INSERT INTO deferred_begin_t VALUES (0, 5)")
        .await
        .unwrap();
    assert_eq!(value(&a, "SELECT 1").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_serves_clients_and_sleeps_when_idle() {
    setup("busy_poll_t");
    let (yaml, ports) = config(4);
    let proxy = Proxy::start_args(&yaml, &["--threads", "1", "--busy-poll", "300us"]);
    proxy.wait_topology(3);
    assert!(proxy.log().contains("busy polling"), "{}", proxy.log());
    let mut c = connect(ports.listen, "mdapp", MDAPP_PASSWORD).await;
    let read = c
        .prepare("SELECT count(*), inet_server_port() FROM busy_poll_t WHERE client = $1")
        .await
        .unwrap();
    for i in 0..200 {
        c.execute("INSERT INTO busy_poll_t VALUES (1, $1)", &[&i])
            .await
            .unwrap();
        // Read back (read_your_writes) through the extended and the simple protocol.
        let row = c.query_one(&read, &[&1i32]).await.unwrap();
        let n: i64 = row.get(0);
        let port: i32 = row.get(1);
        assert_eq!(
            n,
            i64::from(i) + 1,
            "read {i} (from port {port}) missed its own write"
        );
        let t = c.transaction().await.unwrap();
        assert_eq!(
            value_t(&t, "SELECT count(*) FROM busy_poll_t").await,
            (i + 1).to_string()
        );
        t.commit().await.unwrap();
    }
    // Another client at the same time: two sessions waiting for servers at once.
    let d = connect(ports.listen, "mdapp", MDAPP_PASSWORD).await;
    // `d` reads `c`'s writes: read_your_writes covers only a session's own, so `d` asks for global.
    d.batch_execute("SET switchyard.consistency = global")
        .await
        .unwrap();
    let (x, y) = tokio::join!(
        value(&c, "SELECT count(*) FROM busy_poll_t"),
        value(&d, "SELECT sum(i) FROM busy_poll_t")
    );
    assert_eq!((x.as_str(), y.as_str()), ("200", "19900"));
    // Idle: the proxy polls only for the window after a request, then sleeps (its monitor's
    // probes are no client requests).
    tokio::task::block_in_place(|| proxy.assert_sleeps_when_idle());
    // And polls again (serves) once a request comes.
    assert_eq!(value(&d, "SELECT count(*) FROM busy_poll_t").await, "200");
}

#[test]
fn busy_polling_needs_one_thread_and_a_short_window() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["--config", "/nonexistent/switchyard.yaml"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Two worker threads (the default on hosts of more than 2 cores) refuse it.
    let (code, err) = run(&["--busy-poll", "200us", "--threads", "2"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--busy-poll needs --threads 1"), "{err}");
    let (code, err) = run(&["--busy-poll", "50ms", "--threads", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("longer than"), "{err}");
    let (code, err) = run(&["--busy-poll", "soon", "--threads", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--busy-poll"), "{err}");
    // Zero is off: the run goes on to the (missing) config file.
    let (code, err) = run(&["--busy-poll", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("--busy-poll"), "{err}");
}
