//! End-to-end failover on PostgreSQL (own clusters: destructive): a killed primary under load,
//! the restarted old primary fenced, `follow` mode after a manual promotion, two writers, a
//! network blip that must not promote, and a switchover under load without client errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{http_post, pg_conn_str, Link, PgCluster, Proxy, ProxyPorts};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The standard test config with a `failover` section and monitor timings of our own.
fn config(cluster: &PgCluster, failover: &str, monitor: &str) -> (String, ProxyPorts) {
    let (yaml, ports) = Proxy::pg_config(cluster);
    let su = cluster.superuser_password();
    let yaml = yaml.replace(
        "    monitor: { interval: 200ms, timeout: 1s, healthy_after: 1, unhealthy_after: 2,",
        &format!(
            "    failover: {{ user: postgres, password: \"{su}\", {failover} }}\n    monitor: {{ {monitor},"
        ),
    );
    assert!(yaml.contains("failover:"), "config template changed");
    (yaml, ports)
}

async fn connect(port: u16) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) =
        tokio_postgres::connect(&pg_conn_str(port, APP_USER, APP_PASSWORD, "app"), NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn value(c: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let rows = c.simple_query(sql).await?;
    Ok(rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default())
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Client load through the proxy: writers insert unique ids (remembering the acknowledged
/// ones), readers count rows; every error is kept with its time.
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

    async fn writer(&self, port: u16, w: i64, txn: bool) {
        let mut client: Option<Client> = None;
        let mut seq = 0i64;
        while !self.stop.load(Ordering::SeqCst) {
            let c = match &client {
                Some(c) if !c.is_closed() => c,
                _ => match connect(port).await {
                    Ok(c) => client.insert(c),
                    Err(e) => {
                        self.error(format!("connect: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            seq += 1;
            let id = w * 1_000_000 + seq;
            let sql = if txn && seq % 2 == 0 {
                format!("BEGIN; INSERT INTO ft(id) VALUES ({id}); UPDATE ft SET n = n + 1 WHERE id = {id}; COMMIT")
            } else {
                format!("INSERT INTO ft(id) VALUES ({id})")
            };
            match c.simple_query(&sql).await {
                Ok(_) => self.acked.lock().unwrap().push((id, Instant::now())),
                Err(e) => {
                    self.error(format!("write {id}: {}", describe(&e)));
                    client = None;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    async fn reader(&self, port: u16) {
        let mut client: Option<Client> = None;
        while !self.stop.load(Ordering::SeqCst) {
            let c = match &client {
                Some(c) if !c.is_closed() => c,
                _ => match connect(port).await {
                    Ok(c) => client.insert(c),
                    Err(e) => {
                        self.error(format!("connect: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            match value(c, "SELECT count(*) FROM ft").await {
                Ok(_) => *self.reads.lock().unwrap() += 1,
                Err(e) => {
                    self.error(format!("read: {}", describe(&e)));
                    client = None;
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
}

fn clusters_json(proxy: &Proxy) -> serde_json::Value {
    let (status, body) = proxy.http_get("/api/clusters");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Wait up to `secs` for `pred` on the first cluster of `/api/clusters`.
fn wait_api(proxy: &Proxy, secs: u64, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
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
        std::thread::sleep(Duration::from_millis(100));
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

fn create_table(cluster: &PgCluster) {
    cluster.psql(
        cluster.primary_port(),
        "app",
        "CREATE TABLE ft (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0); GRANT ALL ON ft TO app",
    );
    cluster.wait_replicas_caught_up();
}

/// Ports the last `n` reads through `c` were answered from.
async fn read_ports(c: &Client, n: usize) -> BTreeSet<u16> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let p = value(c, "SELECT inet_server_port()").await.expect("read");
        seen.insert(p.parse().unwrap());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_under_load_is_replaced_and_fenced_when_it_returns() {
    let cluster = PgCluster::start();
    cluster.set_synchronous();
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
            "writes do not flow: {:?}",
            load.errors()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.kill_primary();
    // Measured from the moment the primary is gone (pg_ctl returns once the postmaster exited).
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
    println!("failover (PostgreSQL, 3 x 500 ms probes): kill -> first successful write {took:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
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

    // Roles: one replica promoted, the other streams from it; the old primary is fenced.
    let v = clusters_json(&proxy);
    let c = &v["clusters"][0];
    let new_name = c["primary"].as_str().expect("a primary").to_owned();
    assert!(new_name == "replica1" || new_name == "replica2", "{v:#}");
    assert!(c["epoch"].as_u64().unwrap() >= 2);
    assert_eq!(server(c, "primary")["fenced"], true, "{v:#}");
    let (new_port, other_port, other_name) = if new_name == "replica1" {
        (r1, r2, "replica2")
    } else {
        (r2, r1, "replica1")
    };
    assert_eq!(
        cluster.psql(new_port, "postgres", "SELECT pg_is_in_recovery()"),
        "f"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = cluster.psql(
            new_port,
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_replication WHERE application_name = '{other_name}' AND state = 'streaming'"),
        );
        if s == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{other_name} does not stream from the new primary\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Synchronous replication: nothing acknowledged was lost.
    let on_new: BTreeSet<i64> = cluster
        .psql(new_port, "app", "SELECT id FROM ft")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let acked = load.acked_ids();
    let lost: Vec<_> = acked.difference(&on_new).collect();
    println!(
        "acknowledged writes: {}, on the new primary: {}, lost: {}",
        acked.len(),
        on_new.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let _ = other_port;

    // The old primary comes back believing it is the primary: fenced, made read-only, unused.
    cluster.start_primary();
    wait_api(&proxy, 20, "old primary seen up and fenced", |c| {
        let s = server(c, "primary");
        s["health"] == "up" && s["fenced"] == true
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.psql(old, "postgres", "SHOW default_transaction_read_only") != "on" {
        assert!(
            Instant::now() < deadline,
            "old primary not made read-only\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = cluster.psql(old, "app", "SELECT count(*) FROM ft");
    let client = connect(ports.listen).await.unwrap();
    for i in 0..30 {
        client
            .simple_query(&format!("INSERT INTO ft(id) VALUES ({})", 90_000_000 + i))
            .await
            .expect("write after the old primary returned");
    }
    let ports_seen = read_ports(&client, 60).await;
    assert!(
        !ports_seen.contains(&old),
        "a read reached the fenced old primary: {ports_seen:?}"
    );
    let primary_port: u16 = value(&client, "BEGIN; SELECT inet_server_port(); COMMIT")
        .await
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    assert_ne!(primary_port, old);
    assert_eq!(cluster.psql(old, "app", "SELECT count(*) FROM ft"), before);
    let metrics = proxy.metrics();
    for line in [
        "switchyard_failover_events_total{cluster=\"main\",event=\"primary_failed\"}",
        "switchyard_failover_events_total{cluster=\"main\",event=\"promoted\"} 1",
        "switchyard_failover_events_total{cluster=\"main\",event=\"active_fence\"}",
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_mode_follows_a_manual_promotion_and_refuses_two_writers() {
    let cluster = PgCluster::start();
    create_table(&cluster);
    let [r1, _] = cluster.replica_ports();
    let old = cluster.primary_port();
    let (yaml, ports) = config(
        &cluster,
        "mode: follow, write_hold: 1s",
        "interval: 200ms, timeout: 1s, healthy_after: 1, unhealthy_after: 2",
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let client = connect(ports.listen).await.unwrap();
    client
        .simple_query("INSERT INTO ft(id) VALUES (1)")
        .await
        .unwrap();

    // Promoting replica1 while the primary still runs: two writers, writes go to neither.
    cluster.promote_replica(0);
    wait_api(&proxy, 10, "split brain seen", |c| c["split_brain"] == true);
    let err = client
        .simple_query("INSERT INTO ft(id) VALUES (2)")
        .await
        .expect_err("no writes with two writers");
    assert_eq!(err.code().map(|c| c.code()), Some("08006"), "{err}");
    assert!(proxy
        .metrics()
        .contains("switchyard_split_brain{cluster=\"main\"} 1"));

    // The external tool then stops the old primary: writes go to replica1 within a few probes.
    cluster.stop_primary();
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(10);
    loop {
        match client.simple_query("INSERT INTO ft(id) VALUES (3)").await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "writes never resumed: {e}\n{}",
                proxy.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "follow mode: old primary stopped -> writes on the new primary after {:?}",
        stopped.elapsed()
    );
    let port: u16 = value(&client, "BEGIN; SELECT inet_server_port(); COMMIT")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(port, r1);
    assert_eq!(clusters_json(&proxy)["clusters"][0]["primary"], "replica1");
    // Follow mode never touches servers: replica2 was not repointed by us, and the old primary,
    // back, is fenced by the proxy only.
    cluster.start_primary();
    wait_api(&proxy, 20, "old primary fenced", |c| {
        let s = server(c, "primary");
        s["health"] == "up" && s["fenced"] == true
    });
    assert_eq!(
        cluster.psql(old, "postgres", "SHOW default_transaction_read_only"),
        "off"
    );
    client
        .simple_query("INSERT INTO ft(id) VALUES (4)")
        .await
        .unwrap();
    assert!(!read_ports(&client, 30).await.contains(&old));
    assert_eq!(
        cluster.psql(old, "app", "SELECT count(*) FROM ft WHERE id = 4"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blip_between_proxy_and_primary_does_not_promote() {
    let cluster = PgCluster::start();
    create_table(&cluster);
    let link = Link::new(
        format!("127.0.0.1:{}", cluster.primary_port())
            .parse()
            .unwrap(),
    );
    let (yaml, ports) = config(
        &cluster,
        "mode: auto, write_hold: 10s",
        "interval: 200ms, timeout: 500ms, healthy_after: 1, unhealthy_after: 2",
    );
    let yaml = yaml.replace(
        &format!("127.0.0.1:{}\"", cluster.primary_port()),
        &format!("127.0.0.1:{}\"", link.port()),
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let client = connect(ports.listen).await.unwrap();
    client
        .simple_query("INSERT INTO ft(id) VALUES (1)")
        .await
        .unwrap();

    link.cut();
    wait_api(&proxy, 10, "primary unreachable", |c| {
        c["failover"] == "primary_unreachable"
    });
    // Many probe rounds without the primary: still no promotion.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for port in cluster.replica_ports() {
        assert_eq!(
            cluster.psql(port, "postgres", "SELECT pg_is_in_recovery()"),
            "t"
        );
    }
    // A write issued during the cut is held, then runs on the same primary once the link is back.
    let writer = tokio::spawn(async move {
        let r = client.simple_query("INSERT INTO ft(id) VALUES (2)").await;
        (client, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    link.restore();
    let (client, r) = writer.await.unwrap();
    r.expect("held write runs after the blip");
    wait_api(&proxy, 10, "back to idle", |c| {
        c["failover"] == "idle" && c["primary"] == "primary"
    });
    assert_eq!(
        cluster.psql(cluster.primary_port(), "app", "SELECT count(*) FROM ft"),
        "2"
    );
    client
        .simple_query("INSERT INTO ft(id) VALUES (3)")
        .await
        .unwrap();
    let metrics = proxy.metrics();
    assert!(
        metrics.contains("event=\"primary_unreachable\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("event=\"promoted\"}"), "{metrics}");
    assert!(metrics.contains("switchyard_write_holds_total{cluster=\"main\",result=\"released\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_load_has_no_client_errors() {
    let cluster = PgCluster::start();
    create_table(&cluster);
    let [r1, r2] = cluster.replica_ports();
    let old = cluster.primary_port();
    let (yaml, ports) = config(
        &cluster,
        "mode: auto, write_hold: 15s, switchover_timeout: 10s",
        "interval: 200ms, timeout: 1s, healthy_after: 1, unhealthy_after: 2",
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let load = Load::start(ports.listen, 4, 3, true);
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let errors = load.errors();
    assert!(
        errors.is_empty(),
        "client errors during the switchover: {errors:?}\n{}",
        proxy.log()
    );
    assert!(
        load.acked_since(started + took) > 20,
        "writes continue on the new primary"
    );
    println!(
        "writes acknowledged: {}, reads: {}",
        load.acked_ids().len(),
        load.reads.lock().unwrap()
    );

    let c = &clusters_json(&proxy)["clusters"][0];
    assert_eq!(c["primary"], "replica2");
    assert_eq!(server(c, "primary")["fenced"], true);
    assert_eq!(
        cluster.psql(r2, "postgres", "SELECT pg_is_in_recovery()"),
        "f"
    );
    assert_eq!(
        cluster.psql(old, "postgres", "SHOW default_transaction_read_only"),
        "on"
    );
    // replica1 now streams from replica2, and every acknowledged write is there.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.psql(r2, "postgres", "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'replica1' AND state = 'streaming'") != "1" {
        assert!(Instant::now() < deadline, "replica1 not repointed\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on_new: BTreeSet<i64> = cluster
        .psql(r2, "app", "SELECT id FROM ft")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(load.acked_ids().is_subset(&on_new));
    let _ = r1;
    assert!(proxy
        .metrics()
        .contains("switchyard_failover_events_total{cluster=\"main\",event=\"switchover\"} 1"));
}
