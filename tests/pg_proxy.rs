//! End-to-end: PostgreSQL clients through the proxy against a real primary + 2 streaming replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{pg_conn_str, shared, PgCluster, Proxy, ProxyPorts};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// One proxy for the whole binary, in front of the shared cluster.
fn proxy() -> &'static (Proxy, ProxyPorts) {
    static P: OnceLock<(Proxy, ProxyPorts)> = OnceLock::new();
    P.get_or_init(|| {
        let cluster = shared();
        cluster.psql(
            cluster.primary_port(),
            "app",
            "CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, note text); \
             CREATE SCHEMA IF NOT EXISTS other AUTHORIZATION app; \
             CREATE TABLE IF NOT EXISTS other.only_here (v int); \
             INSERT INTO other.only_here VALUES (42); \
             GRANT ALL ON items, items_id_seq TO app; GRANT ALL ON other.only_here TO app;",
        );
        cluster.wait_replicas_caught_up();
        // Reads right after a write are expected on replicas here: they wait for one to catch up.
        let (yaml, ports) = Proxy::pg_config(cluster);
        let yaml = yaml.replace(
            "fallback: primary }",
            "fallback: primary, causal_wait: true }",
        );
        let p = (Proxy::start(&yaml), ports);
        p.0.wait_topology(3);
        p
    })
}

async fn connect(port: u16) -> Client {
    let (client, conn) =
        tokio_postgres::connect(&pg_conn_str(port, APP_USER, APP_PASSWORD, "app"), NoTls)
            .await
            .expect("connect through proxy");
    tokio::spawn(conn);
    client
}

fn first_value(msgs: &[SimpleQueryMessage]) -> String {
    msgs.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .expect("a row")
}

async fn where_am_i(c: &Client) -> (u16, bool) {
    let rows = c
        .simple_query("SELECT inet_server_port(), pg_is_in_recovery()")
        .await
        .unwrap();
    for m in rows {
        if let SimpleQueryMessage::Row(r) = m {
            return (r.get(0).unwrap().parse().unwrap(), r.get(1) == Some("t"));
        }
    }
    panic!("no row")
}

fn cluster() -> &'static PgCluster {
    shared()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_over_both_replicas_and_writes_hit_the_primary() {
    let (_, ports) = proxy();
    let c = connect(ports.listen).await;
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        let (port, recovery) = where_am_i(&c).await;
        assert!(recovery, "read landed on the primary (port {port})");
        seen.insert(port);
    }
    let replicas: BTreeSet<u16> = cluster().replica_ports().into_iter().collect();
    assert_eq!(seen, replicas, "reads should use both replicas");

    let rows = c
        .simple_query("INSERT INTO items (note) VALUES ('spread') RETURNING inet_server_port()")
        .await
        .unwrap();
    assert_eq!(first_value(&rows), cluster().primary_port().to_string());
    cluster().wait_replicas_caught_up();
    let rows = c
        .simple_query("SELECT count(*) FROM items WHERE note = 'spread'")
        .await
        .unwrap();
    assert_ne!(first_value(&rows), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_transaction_stays_on_the_primary() {
    let (_, ports) = proxy();
    let c = connect(ports.listen).await;
    c.simple_query("BEGIN").await.unwrap();
    let (p1, r1) = where_am_i(&c).await;
    c.simple_query("INSERT INTO items (note) VALUES ('txn')")
        .await
        .unwrap();
    let (p2, _) = where_am_i(&c).await;
    let rows = c
        .simple_query("SELECT count(*) FROM items WHERE note = 'txn'")
        .await
        .unwrap();
    assert_ne!(
        first_value(&rows),
        "0",
        "the transaction must see its own insert"
    );
    c.simple_query("COMMIT").await.unwrap();
    assert!(!r1);
    assert_eq!(p1, cluster().primary_port());
    assert_eq!(p2, cluster().primary_port());

    // BEGIN READ ONLY may use a replica, and stays on one server.
    c.simple_query("BEGIN READ ONLY").await.unwrap();
    let (p3, r3) = where_am_i(&c).await;
    let (p4, _) = where_am_i(&c).await;
    c.simple_query("COMMIT").await.unwrap();
    assert!(r3, "read-only transaction should run on a replica");
    assert_eq!(p3, p4);

    // tokio-postgres' own transaction API (extended protocol inside).
    let mut c = c;
    let t = c.transaction().await.unwrap();
    let row = t.query_one("SELECT inet_server_port()", &[]).await.unwrap();
    let port: i32 = row.get(0);
    t.execute("INSERT INTO items (note) VALUES ($1)", &[&"txn2"])
        .await
        .unwrap();
    t.commit().await.unwrap();
    assert_eq!(port as u16, cluster().primary_port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_move_between_replicas() {
    let (_, ports) = proxy();
    let c = connect(ports.listen).await;
    let stmt = c
        .prepare("SELECT inet_server_port(), pg_is_in_recovery(), $1::int + 1")
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    for i in 0..10i32 {
        let row = c.query_one(&stmt, &[&i]).await.unwrap();
        let port: i32 = row.get(0);
        let recovery: bool = row.get(1);
        let v: i32 = row.get(2);
        assert!(recovery);
        assert_eq!(v, i + 1);
        seen.insert(port as u16);
    }
    assert_eq!(
        seen.len(),
        2,
        "the prepared statement should run on both replicas"
    );

    // A prepared write goes to the primary; unnamed statements via query() too.
    let ins = c
        .prepare("INSERT INTO items (note) VALUES ($1) RETURNING inet_server_port()")
        .await
        .unwrap();
    let row = c.query_one(&ins, &[&"prep"]).await.unwrap();
    let port: i32 = row.get(0);
    assert_eq!(port as u16, cluster().primary_port());
    let rows = c
        .query("SELECT note FROM items WHERE id > $1 LIMIT 3", &[&0i32])
        .await
        .unwrap();
    assert!(!rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_hold_on_every_backend() {
    let (_, ports) = proxy();
    let c = connect(ports.listen).await;
    c.simple_query("SET search_path TO other, public")
        .await
        .unwrap();
    c.simple_query("SET TimeZone = 'Asia/Tokyo'").await.unwrap();
    let mut ports_seen = BTreeSet::new();
    for _ in 0..6 {
        let rows = c
            .simple_query("SELECT current_setting('search_path'), current_setting('TimeZone'), inet_server_port(), (SELECT v FROM only_here)")
            .await
            .unwrap();
        let SimpleQueryMessage::Row(r) = rows
            .iter()
            .find(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .unwrap()
        else {
            unreachable!()
        };
        assert_eq!(r.get(0), Some("other, public"));
        assert_eq!(r.get(1), Some("Asia/Tokyo"));
        assert_eq!(r.get(3), Some("42"));
        ports_seen.insert(r.get(2).unwrap().to_string());
    }
    assert!(
        ports_seen.len() >= 2,
        "reads should have moved between replicas"
    );
    // A write after the SET sees the same settings on the primary.
    let rows = c
        .simple_query(
            "INSERT INTO items (note) VALUES (current_setting('TimeZone')) RETURNING note",
        )
        .await
        .unwrap();
    assert_eq!(first_value(&rows), "Asia/Tokyo");
    // RESET travels too.
    c.simple_query("RESET TimeZone").await.unwrap();
    for _ in 0..3 {
        let rows = c.simple_query("SHOW TimeZone").await.unwrap();
        assert_ne!(first_value(&rows), "Asia/Tokyo");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_rules_for_locking_functions_hints_and_overrides() {
    let (_, ports) = proxy();
    let primary = cluster().primary_port().to_string();
    let c = connect(ports.listen).await;
    for sql in [
        "SELECT inet_server_port() FROM items LIMIT 1 FOR UPDATE",
        "SELECT inet_server_port() FROM items LIMIT 1 FOR SHARE",
        "WITH x AS (INSERT INTO items (note) VALUES ('cte') RETURNING id) SELECT inet_server_port() FROM x",
        "SELECT inet_server_port(), nextval('items_id_seq')",
        "/* switchyard: primary */ SELECT inet_server_port()",
        "SELECT inet_server_port() WHERE pg_try_advisory_xact_lock(7)",
    ] {
        let rows = c.simple_query(sql).await.unwrap();
        assert_eq!(first_value(&rows), primary, "{sql}");
    }
    // Session override.
    c.simple_query("SET switchyard.route = primary")
        .await
        .unwrap();
    let (p, _) = where_am_i(&c).await;
    assert_eq!(p.to_string(), primary);
    c.simple_query("SET switchyard.route = auto").await.unwrap();
    let (_, rec) = where_am_i(&c).await;
    assert!(rec);
    // Unparsable SQL goes to the primary, and the server's error comes back with its SQLSTATE.
    let err = c.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42601"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_tables_and_listen_pin_the_session_to_the_primary() {
    let (_, ports) = proxy();
    let c = connect(ports.listen).await;
    c.simple_query("CREATE TEMP TABLE scratch (v int)")
        .await
        .unwrap();
    c.simple_query("INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    for _ in 0..4 {
        let rows = c
            .simple_query("SELECT count(*), inet_server_port() FROM scratch")
            .await
            .unwrap();
        assert_eq!(first_value(&rows), "1");
        let (p, _) = where_am_i(&c).await;
        assert_eq!(p, cluster().primary_port());
    }
    let metrics = proxy().0.metrics();
    assert!(metrics.contains("reason=\"temp_table\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query() {
    let (_, ports) = proxy();
    let c = connect(ports.listen).await;
    let token = c.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    });
    let err = c.simple_query("SELECT pg_sleep(20)").await.unwrap_err();
    canceller.await.unwrap().unwrap();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The session is still usable.
    let (_, rec) = where_am_i(&c).await;
    assert!(rec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_their_sqlstate_and_notices_pass() {
    let (_, ports) = proxy();
    let c = connect(ports.listen).await;
    let err = c
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
    let err = c.query("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("22012"));
    // Multi-statement simple query with a write goes to the primary as one unit.
    let rows = c
        .simple_query("INSERT INTO items (note) VALUES ('multi'); SELECT inet_server_port()")
        .await
        .unwrap();
    assert_eq!(first_value(&rows), cluster().primary_port().to_string());
    // Still healthy afterwards.
    assert!(where_am_i(&c).await.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_client_and_unknown_database() {
    let (_, ports) = proxy();
    let (c, conn) = tokio_postgres::connect(
        &pg_conn_str(ports.listen, "mdapp", support::proxy::MDAPP_PASSWORD, "app"),
        NoTls,
    )
    .await
    .expect("md5 login");
    tokio::spawn(conn);
    let rows = c.simple_query("SELECT current_user").await.unwrap();
    assert_eq!(first_value(&rows), "md5user");

    let err = tokio_postgres::connect(
        &pg_conn_str(ports.listen, APP_USER, APP_PASSWORD, "nope_db"),
        NoTls,
    )
    .await
    .err()
    .expect("unknown database must fail");
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_sent() {
    let (proxy, ports) = proxy();
    let before = count_metric(&proxy.metrics(), "reason=\"read\",route=\"replica\"");
    let c = connect(ports.listen).await;
    for _ in 0..7 {
        c.simple_query("SELECT 1 FROM items LIMIT 1").await.unwrap();
    }
    let after = count_metric(&proxy.metrics(), "reason=\"read\",route=\"replica\"");
    assert!(after - before >= 7.0, "before {before} after {after}");
    let text = proxy.metrics();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').expect("sample line");
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf" || value == "NaN",
            "{line}"
        );
        assert!(name.starts_with("switchyard_"), "{line}");
    }
    assert!(text.contains("switchyard_server_up{cluster=\"main\",server=\"replica1\"} 1"));
    assert!(text.contains("switchyard_replica_lag_seconds"));
    assert!(text.contains("switchyard_query_duration_seconds_bucket"));
}

fn count_metric(text: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("switchyard_queries_total{") && l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reaches_a_listening_client() {
    let (_, ports) = proxy();
    let (listener, mut conn) = tokio_postgres::connect(
        &pg_conn_str(ports.listen, APP_USER, APP_PASSWORD, "app"),
        NoTls,
    )
    .await
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    let _ = tx.send(format!("{}:{}", n.channel(), n.payload()));
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    });
    listener.simple_query("LISTEN chan").await.unwrap();
    let sender = connect(ports.listen).await;
    sender.simple_query("NOTIFY chan, 'hello'").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("notification within 10 s")
        .unwrap();
    assert_eq!(got, "chan:hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_arrive_whole_in_both_protocols() {
    // Rows are forwarded in runs straight from the server's read buffer: results far larger
    // than one read, with rows split across reads, must arrive byte for byte.
    let (_, ports) = proxy();
    let c = connect(ports.listen).await;
    let sql = "SELECT i, repeat(md5(i::text), 1 + i % 7) FROM generate_series(1, 60000) i";
    let expected = |i: i32| {
        let h = md5_hex(&i.to_string());
        h.repeat(1 + usize::try_from(i % 7).unwrap())
    };
    let rows = c.query(sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 60000);
    for (n, r) in rows.iter().enumerate() {
        let i: i32 = r.get(0);
        assert_eq!(i, i32::try_from(n + 1).unwrap());
        assert_eq!(
            r.get::<_, String>(1),
            expected(i),
            "row {i} (extended protocol)"
        );
    }
    let msgs = c.simple_query(sql).await.unwrap();
    let mut n = 0;
    for m in &msgs {
        if let SimpleQueryMessage::Row(r) = m {
            n += 1;
            let i: i32 = r.get(0).unwrap().parse().unwrap();
            assert_eq!(i, n);
            assert_eq!(r.get(1).unwrap(), expected(i), "row {i} (simple protocol)");
        }
    }
    assert_eq!(n, 60000);
}

fn md5_hex(s: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
