//! End-to-end failover on MariaDB (own clusters: destructive): a killed primary under load
//! replaced and, once back, fenced and made read-only; a switchover under load without client
//! errors (the old primary rejoining as a replica); `follow` mode after a manual promotion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Row, Value};
use support::mysql_cluster::{MYSQL_APP_DB, MYSQL_REPL_PASSWORD, MYSQL_REPL_USER};
use support::{
    http_post, MariaDbCluster, Proxy, ProxyPorts, MYSQL_APP_PASSWORD, MYSQL_APP_USER,
    MYSQL_ROOT_PASSWORD,
};

/// Deadline of any single client call (a held write waits up to `write_hold`, 20 s at most here).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The standard MySQL test config with a `failover` section (root as the failover login, `repl`
/// as the replication login) and monitor timings of our own.
fn config(cluster: &MariaDbCluster, failover: &str, monitor: &str) -> (String, ProxyPorts) {
    let (yaml, ports) = Proxy::mysql_config(cluster);
    let yaml = yaml.replace(
        "    monitor: { interval: 200ms, timeout: 1s, healthy_after: 1, unhealthy_after: 2,",
        &format!(
            "    failover: {{ user: root, password: \"{MYSQL_ROOT_PASSWORD}\", \
             replication_user: {MYSQL_REPL_USER}, replication_password: \"{MYSQL_REPL_PASSWORD}\", \
             {failover} }}\n    monitor: {{ {monitor},"
        ),
    );
    assert!(yaml.contains("failover:"), "config template changed");
    (yaml, ports)
}

fn opts(port: u16, user: &str, password: &str, db: Option<&str>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(db)
        .prefer_socket(false)
        .into()
}

fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    }
}

/// `fut` under [`CALL_TIMEOUT`]; errors as text.
async fn within<T>(fut: impl Future<Output = Result<T, mysql_async::Error>>) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(|e| describe(&e)),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// A client session through the proxy as `app` in database `app`.
async fn connect(port: u16) -> Result<Conn, String> {
    within(Conn::new(opts(
        port,
        MYSQL_APP_USER,
        MYSQL_APP_PASSWORD,
        Some(MYSQL_APP_DB),
    )))
    .await
}

async fn exec(c: &mut Conn, sql: &str) -> Result<(), String> {
    within(c.query_drop(sql)).await
}

/// The server port that answered `SELECT @@port`.
async fn port_of(c: &mut Conn) -> Result<u16, String> {
    let p: Option<u16> = within(c.query_first("SELECT @@port")).await?;
    p.ok_or_else(|| "SELECT @@port returned no row".into())
}

/// The port of the server a transaction runs on (the primary).
async fn primary_port_of(c: &mut Conn) -> Result<u16, String> {
    exec(c, "BEGIN").await?;
    let p = port_of(c).await;
    exec(c, "COMMIT").await?;
    p
}

/// `SHOW SLAVE STATUS` of the server on `port` (as root) keyed by column; empty when it is no
/// replica.
async fn slave_status(port: u16) -> HashMap<String, String> {
    let mut c = within(Conn::new(opts(port, "root", MYSQL_ROOT_PASSWORD, None)))
        .await
        .unwrap();
    let row: Option<Row> = within(c.query_first("SHOW SLAVE STATUS")).await.unwrap();
    let _ = within(c.disconnect()).await;
    let Some(row) = row else {
        return HashMap::new();
    };
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, col)| {
            let v = match row.as_ref(i) {
                Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::NULL) | None => String::new(),
                Some(other) => other.as_sql(true),
            };
            (col.name_str().into_owned(), v)
        })
        .collect()
}

/// Replicates from `primary_port` with both threads running.
fn streams_from(st: &HashMap<String, String>, primary_port: u16) -> bool {
    let yes = |k: &str| st.get(k).map(String::as_str) == Some("Yes");
    st.get("Master_Port").map(String::as_str) == Some(primary_port.to_string().as_str())
        && yes("Slave_IO_Running")
        && yes("Slave_SQL_Running")
}

/// Client load through the proxy: writers insert unique ids (remembering the acknowledged
/// ones), every other write of a `txn` writer is a BEGIN/INSERT/UPDATE/COMMIT transaction;
/// readers count rows; every error is kept with its time.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    acked: Mutex<Vec<(i64, Instant)>>,
    errors: Mutex<Vec<(Instant, String)>>,
    reads: Mutex<u64>,
}

impl Load {
    fn start(port: u16, writers: i64, readers: usize, txn: bool) -> Arc<Load> {
        let load = Arc::new(Load::default());
        for w in 0..writers {
            let l = load.clone();
            tokio::spawn(async move { l.writer(port, w, txn).await });
        }
        for _ in 0..readers {
            let l = load.clone();
            tokio::spawn(async move { l.reader(port).await });
        }
        load
    }

    fn error(&self, e: String) {
        self.errors.lock().unwrap().push((Instant::now(), e));
    }

    /// A session, reconnecting when there is none; `None` (error noted) when connecting failed.
    async fn session<'a>(&self, port: u16, conn: &'a mut Option<Conn>) -> Option<&'a mut Conn> {
        if conn.is_none() {
            match connect(port).await {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    self.error(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return None;
                }
            }
        }
        conn.as_mut()
    }

    async fn writer(&self, port: u16, w: i64, txn: bool) {
        let mut conn: Option<Conn> = None;
        let mut seq = 0i64;
        while !self.stop.load(Ordering::SeqCst) {
            let Some(c) = self.session(port, &mut conn).await else {
                continue;
            };
            seq += 1;
            let id = w * 1_000_000 + seq;
            let r = if txn && seq % 2 == 0 {
                async {
                    exec(c, "BEGIN").await?;
                    exec(c, &format!("INSERT INTO ft(id) VALUES ({id})")).await?;
                    exec(c, &format!("UPDATE ft SET n = n + 1 WHERE id = {id}")).await?;
                    exec(c, "COMMIT").await
                }
                .await
            } else {
                exec(c, &format!("INSERT INTO ft(id) VALUES ({id})")).await
            };
            match r {
                Ok(()) => self.acked.lock().unwrap().push((id, Instant::now())),
                Err(e) => {
                    self.error(format!("write {id}: {e}"));
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    async fn reader(&self, port: u16) {
        let mut conn: Option<Conn> = None;
        while !self.stop.load(Ordering::SeqCst) {
            let Some(c) = self.session(port, &mut conn).await else {
                continue;
            };
            let r: Result<Option<i64>, String> =
                within(c.query_first("SELECT count(*) FROM ft")).await;
            match r {
                Ok(_) => *self.reads.lock().unwrap() += 1,
                Err(e) => {
                    self.error(format!("read: {e}"));
                    conn = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn acked_since(&self, t: Instant) -> usize {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > t)
            .count()
    }

    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| *at)
            .filter(|at| *at > t)
            .min()
    }

    fn acked_ids(&self) -> BTreeSet<i64> {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect()
    }

    fn errors(&self) -> Vec<(Instant, String)> {
        self.errors.lock().unwrap().clone()
    }

    /// Stop the clients and give in-flight calls a moment to finish.
    async fn finish(&self) {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn clusters_json(proxy: &Proxy) -> serde_json::Value {
    let (status, body) = proxy.http_get("/api/clusters");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Wait up to `secs` for `pred` on the first cluster of `/api/clusters`.
async fn wait_api(proxy: &Proxy, secs: u64, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = clusters_json(proxy);
        if pred(&v["clusters"][0]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {v:#}\n--- proxy log ---\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn server<'a>(cluster: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    cluster["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

fn create_table(cluster: &MariaDbCluster) {
    cluster.sql(
        cluster.primary_port(),
        "CREATE TABLE app.ft (id BIGINT PRIMARY KEY, n INT NOT NULL DEFAULT 0)",
    );
    cluster.wait_replicas_caught_up();
}

/// Every id in `app.ft` on the server on `port`.
fn ids_on(cluster: &MariaDbCluster, port: u16) -> BTreeSet<i64> {
    cluster
        .sql(port, "SELECT id FROM app.ft")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Ports the next `n` reads through `c` were answered from.
async fn read_ports(c: &mut Conn, n: usize) -> BTreeSet<u16> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        seen.insert(port_of(c).await.expect("read"));
    }
    seen
}

/// Wait up to `secs` until the server on `port` runs `sql` with answer `want`.
async fn wait_sql(
    cluster: &MariaDbCluster,
    proxy: &Proxy,
    port: u16,
    sql: &str,
    want: &str,
    secs: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = cluster.try_sql(port, sql);
        if got.as_deref() == Ok(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port}: {sql} answered {got:?}, not {want:?} within {secs} s\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait up to `secs` until the server on `port` replicates from `primary_port`.
async fn wait_streams(proxy: &Proxy, port: u16, primary_port: u16, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let st = slave_status(port).await;
        if streams_from(&st, primary_port) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} does not replicate from {primary_port}: {st:?}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_under_load_is_replaced_and_fenced_when_it_returns() {
    let cluster = MariaDbCluster::start();
    create_table(&cluster);
    let [r1, r2] = cluster.replica_ports();
    let old = cluster.primary_port();
    let (yaml, ports) = config(
        &cluster,
        "mode: auto, write_hold: 20s",
        "interval: 500ms, timeout: 1s, healthy_after: 1, unhealthy_after: 3",
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let load = Load::start(ports.listen, 4, 2, true);
    let warm = Instant::now();
    while load.acked_ids().len() < 50 {
        assert!(
            warm.elapsed() < Duration::from_secs(30),
            "load is not running: {:?}",
            load.errors()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.kill_primary();
    // Measured from the moment mariadbd is gone (kill_primary reaps it before returning).
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(30);
    let first = loop {
        if let Some(t) = load.first_ack_after(killed + Duration::from_millis(1)) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no write succeeded within 30 s of the kill; errors {:?}\n{}",
            load.errors().last(),
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = first.duration_since(killed);
    println!("failover (MariaDB, 3 x 500 ms probes): kill -> first successful write {took:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.finish().await;
    let after = load.acked_since(first);
    assert!(
        after > 20,
        "writes kept flowing after the failover: {after}"
    );
    let errors = load.errors();
    let late: Vec<_> = errors.iter().filter(|(t, _)| *t > first).collect();
    println!(
        "client errors: {} in all, {} after the first successful write: {:?}",
        errors.len(),
        late.len(),
        errors.iter().map(|(_, e)| e).collect::<Vec<_>>()
    );
    assert!(
        late.iter()
            .all(|(t, _)| t.duration_since(first) < Duration::from_millis(500)),
        "errors long after the failover: {late:?}"
    );
    let early: Vec<_> = errors
        .iter()
        .filter(|(t, _)| *t < killed - Duration::from_millis(200))
        .collect();
    assert!(early.is_empty(), "errors before the kill: {early:?}");

    // Roles: one replica promoted, the other replicates from it; the old primary is fenced.
    let v = clusters_json(&proxy);
    let c = &v["clusters"][0];
    let new_name = c["primary"].as_str().expect("a primary").to_owned();
    assert!(new_name == "replica1" || new_name == "replica2", "{v:#}");
    assert!(c["epoch"].as_u64().unwrap() >= 2, "{v:#}");
    assert_eq!(server(c, "primary")["fenced"], true, "{v:#}");
    let (new_idx, new_port, other_idx, other_port) = if new_name == "replica1" {
        (0, r1, 1, r2)
    } else {
        (1, r2, 0, r1)
    };
    assert_eq!(cluster.sql(new_port, "SELECT @@read_only"), "0");
    assert!(
        cluster.replica_status(new_idx).is_empty(),
        "the new primary still has replication configured: {:?}",
        cluster.replica_status(new_idx)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if streams_from(&cluster.replica_status(other_idx), new_port) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica{} does not replicate from the new primary: {:?}\n{}",
            other_idx + 1,
            cluster.replica_status(other_idx),
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Asynchronous replication: what the old primary acknowledged but never shipped is lost.
    let on_new = ids_on(&cluster, new_port);
    let acked = load.acked_ids();
    let lost: Vec<_> = acked.difference(&on_new).collect();
    println!(
        "acknowledged writes: {}, on the new primary: {}, lost (asynchronous replication): {}",
        acked.len(),
        on_new.len(),
        lost.len()
    );
    assert!(
        lost.len() < 50,
        "too many acknowledged writes lost: {lost:?}"
    );
    // A write through the proxy reaches the other replica through the new primary.
    let mut client = connect(ports.listen).await.unwrap();
    exec(&mut client, "INSERT INTO ft(id) VALUES (80000000)")
        .await
        .unwrap();
    wait_sql(
        &cluster,
        &proxy,
        other_port,
        "SELECT count(*) FROM app.ft WHERE id = 80000000",
        "1",
        10,
    )
    .await;

    // The old primary comes back writable, believing it is the primary: fenced, made read-only
    // (the active fence), unused.
    cluster.start_primary();
    wait_api(&proxy, 20, "old primary seen up and fenced", |c| {
        let s = server(c, "primary");
        s["health"] == "up" && s["fenced"] == true
    })
    .await;
    wait_sql(&cluster, &proxy, old, "SELECT @@read_only", "1", 10).await;
    let before = cluster.sql(old, "SELECT count(*) FROM app.ft");
    for i in 0..30 {
        exec(
            &mut client,
            &format!("INSERT INTO ft(id) VALUES ({})", 90_000_000 + i),
        )
        .await
        .expect("write after the old primary returned");
    }
    let ports_seen = read_ports(&mut client, 60).await;
    assert!(
        !ports_seen.contains(&old),
        "a read reached the fenced old primary: {ports_seen:?}"
    );
    assert_eq!(primary_port_of(&mut client).await.unwrap(), new_port);
    assert_eq!(cluster.sql(old, "SELECT count(*) FROM app.ft"), before);
    assert_eq!(
        cluster.sql(new_port, "SELECT count(*) FROM app.ft WHERE id >= 90000000"),
        "30"
    );
    let metrics = proxy.metrics();
    for line in [
        "switchyard_failover_events_total{cluster=\"main\",event=\"primary_failed\"}",
        "switchyard_failover_events_total{cluster=\"main\",event=\"promoted\"} 1",
        "switchyard_failover_events_total{cluster=\"main\",event=\"active_fence\"}",
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
    let _ = client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_load_has_no_client_errors() {
    let cluster = MariaDbCluster::start();
    create_table(&cluster);
    let [r1, r2] = cluster.replica_ports();
    let old = cluster.primary_port();
    let (yaml, ports) = config(
        &cluster,
        "mode: auto, write_hold: 20s, switchover_timeout: 10s",
        "interval: 200ms, timeout: 1s, healthy_after: 1, unhealthy_after: 2",
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let load = Load::start(ports.listen, 4, 2, true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let admin = proxy.admin_addr().unwrap();
    let started = Instant::now();
    let (status, body) = tokio::task::spawn_blocking(move || {
        http_post(
            admin,
            "/api/clusters/main/switchover",
            r#"{"target": "replica2"}"#,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}\n{}", proxy.log());
    println!("switchover answered in {took:?}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["old"], "primary");
    assert_eq!(v["new"], "replica2");
    assert_eq!(v["old_rejoined"], true, "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.finish().await;
    let errors = load.errors();
    assert!(
        errors.is_empty(),
        "client errors during the switchover: {errors:?}\n{}",
        proxy.log()
    );
    let after = load.acked_since(started + took);
    assert!(after > 20, "writes continue on the new primary: {after}");
    println!(
        "writes acknowledged: {} ({after} after the answer), reads: {}",
        load.acked_ids().len(),
        load.reads.lock().unwrap()
    );

    // replica2 is the primary; the old primary replicates from it (so it is a healthy replica,
    // not fenced any more) and so does replica1.
    let c = &clusters_json(&proxy)["clusters"][0];
    assert_eq!(c["primary"], "replica2", "{c:#}");
    assert_eq!(cluster.sql(r2, "SELECT @@read_only"), "0");
    assert!(
        cluster.replica_status(1).is_empty(),
        "{:?}",
        cluster.replica_status(1)
    );
    assert_eq!(cluster.sql(old, "SELECT @@read_only"), "1");
    wait_streams(&proxy, old, r2, 20).await;
    wait_streams(&proxy, r1, r2, 20).await;
    wait_api(&proxy, 20, "old primary a healthy, unfenced replica", |c| {
        let s = server(c, "primary");
        s["fenced"] == false && s["state"] == "healthy" && s["role"] == "replica"
    })
    .await;
    // Every acknowledged write is on the new primary.
    let on_new = ids_on(&cluster, r2);
    let acked = load.acked_ids();
    let missing: Vec<_> = acked.difference(&on_new).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing on replica2: {missing:?}"
    );
    let metrics = proxy.metrics();
    assert!(
        metrics
            .contains("switchyard_failover_events_total{cluster=\"main\",event=\"switchover\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_mode_follows_a_manual_promotion() {
    let cluster = MariaDbCluster::start();
    create_table(&cluster);
    let [r1, _] = cluster.replica_ports();
    let old = cluster.primary_port();
    let (yaml, ports) = config(
        &cluster,
        "mode: follow, write_hold: 2s",
        "interval: 200ms, timeout: 1s, healthy_after: 1, unhealthy_after: 2",
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let mut client = connect(ports.listen).await.unwrap();
    exec(&mut client, "INSERT INTO ft(id) VALUES (1)")
        .await
        .unwrap();
    assert_eq!(primary_port_of(&mut client).await.unwrap(), old);

    // The external tool stops the primary and promotes replica1 by hand.
    cluster.stop_primary();
    cluster.sql(r1, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0");
    let promoted = Instant::now();
    let deadline = promoted + Duration::from_secs(10);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = async {
            exec(&mut client, "INSERT INTO ft(id) VALUES (2)").await?;
            primary_port_of(&mut client).await
        }
        .await;
        match r {
            Ok(port) => {
                assert_eq!(port, r1, "writes go to the manually promoted replica1");
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "writes never reached replica1: {e}\n{}",
                    proxy.log()
                );
                // The session may have been closed with its server: start a new one.
                client = match connect(ports.listen).await {
                    Ok(c) => c,
                    Err(_) => client,
                };
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    println!(
        "follow mode: replica1 promoted by hand -> writes on it after {:?} ({attempts} attempts)",
        promoted.elapsed()
    );
    wait_api(&proxy, 5, "replica1 followed as the primary", |c| {
        c["primary"] == "replica1"
    })
    .await;
    assert_eq!(
        cluster.sql(r1, "SELECT count(*) FROM app.ft WHERE id = 2"),
        "1"
    );
    // Follow mode never touches servers: replica2 still points at the old primary.
    let st = cluster.replica_status(1);
    assert_eq!(
        st.get("Master_Port").map(String::as_str),
        Some(old.to_string().as_str()),
        "{st:?}"
    );
    assert!(proxy
        .metrics()
        .contains("switchyard_failover_events_total{cluster=\"main\",event=\"followed\"} 1"));
    let _ = client.disconnect().await;
}
