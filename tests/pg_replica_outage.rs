//! End-to-end: replicas stopped and restarted under a running proxy (own cluster: destructive).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{pg_conn_str, PgCluster, Proxy};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn connect(port: u16) -> Client {
    let (client, conn) =
        tokio_postgres::connect(&pg_conn_str(port, APP_USER, APP_PASSWORD, "app"), NoTls)
            .await
            .expect("connect through proxy");
    tokio::spawn(conn);
    client
}

async fn port_of(c: &Client) -> u16 {
    let rows = c
        .simple_query("SELECT inet_server_port()")
        .await
        .expect("read must not fail");
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .unwrap()
}

/// Run reads until `pred(ports seen in the last 6 reads)` holds, failing on any client error.
async fn reads_until(c: &Client, what: &str, pred: impl Fn(&BTreeSet<u16>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            seen.insert(port_of(c).await);
        }
        if pred(&seen) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last ports {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_replicas_going_away_and_coming_back() {
    let cluster = PgCluster::start();
    let (proxy, ports) = Proxy::start_for(&cluster);
    let [r1, r2] = cluster.replica_ports();
    let primary = cluster.primary_port();
    let c = connect(ports.listen).await;
    reads_until(&c, "both replicas in use", |s| {
        s.contains(&r1) && s.contains(&r2)
    })
    .await;

    // One replica stopped: every read still succeeds, and soon only the other one serves.
    cluster.stop_replica(0);
    for _ in 0..20 {
        let p = port_of(&c).await;
        assert_ne!(p, r1, "a read was answered by a stopped server?");
    }
    reads_until(&c, "only replica 2", |s| s.len() == 1 && s.contains(&r2)).await;

    // Both stopped: reads go to the primary.
    cluster.stop_replica(1);
    reads_until(&c, "primary fallback", |s| {
        s.len() == 1 && s.contains(&primary)
    })
    .await;
    let m = proxy.metrics();
    assert!(m.contains("reason=\"no_replica_fallback\""), "{m}");

    // Restarted: they rejoin.
    cluster.start_replica(0);
    cluster.start_replica(1);
    reads_until(&c, "replicas rejoin", |s| {
        s.contains(&r1) && s.contains(&r2)
    })
    .await;
    // A fresh client works too.
    let c2 = connect(ports.listen).await;
    let p = port_of(&c2).await;
    assert!(p == r1 || p == r2);
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dying_mid_query_gives_an_error_and_the_session_goes_on() {
    let cluster = PgCluster::start();
    let (proxy, ports) = Proxy::start_for(&cluster);
    let c = connect(ports.listen).await;
    let killer = {
        let ports: Vec<u16> = cluster.replica_ports().to_vec();
        let dir = cluster.dir().to_path_buf();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            for p in ports {
                let _ = std::process::Command::new("psql")
                    .args(["-X", "-h", "127.0.0.1", "-p", &p.to_string(), "-U", "postgres", "-d", "postgres", "-c"])
                    .arg("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(10)%'")
                    .env("PGPASSWORD", support::pg_cluster::SUPERUSER_PASSWORD)
                    .current_dir(&dir)
                    .output();
            }
        })
    };
    let started = Instant::now();
    let err = c.simple_query("SELECT pg_sleep(10)").await.unwrap_err();
    killer.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "query was not interrupted"
    );
    let code = err.code().map(|c| c.code().to_string());
    assert!(
        code.as_deref() == Some("57P01") || code.as_deref() == Some("08006"),
        "{err:?}\n{}",
        proxy.log()
    );
    // Same client, next query: served by another connection.
    let p = port_of(&c).await;
    assert!(cluster.replica_ports().contains(&p));
}
