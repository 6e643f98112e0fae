//! End-to-end: lag-aware routing with hysteresis on a real PostgreSQL cluster (own clusters:
//! replay is paused and replicas are stopped). Run with `--nocapture` to see the timings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::pg_cluster::{APP_PASSWORD, APP_USER, SUPERUSER_PASSWORD};
use support::{pg_conn_str, PgCluster, Proxy};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The tests measure timings: run them one at a time on this 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MAX_LAG: Duration = Duration::from_secs(1);
const READMIT_AFTER: Duration = Duration::from_secs(2);
/// Slack for the moment we note versus the moment the server acted (psql exit, probe timing).
const SLACK: Duration = Duration::from_millis(150);

/// The standard test config with `max_replica_lag: 1s, lag_readmit_after: 2s`.
fn start_proxy(cluster: &PgCluster) -> (Proxy, u16) {
    start_proxy_with(cluster, "max_replica_lag: 1s, lag_readmit_after: 2s")
}

/// The standard test config with `limits` in place of its `max_replica_lag: 30s`.
fn start_proxy_with(cluster: &PgCluster, limits: &str) -> (Proxy, u16) {
    let (yaml, ports) = Proxy::pg_config(cluster);
    assert!(yaml.contains("max_replica_lag: 30s"), "{yaml}");
    let yaml = yaml.replace("max_replica_lag: 30s", limits);
    (Proxy::start(&yaml), ports.listen)
}

async fn connect(port: u16, user: &str, password: &str, db: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(&pg_conn_str(port, user, password, db), NoTls)
        .await
        .expect("connect");
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

/// `(state, state_reason)` of server `name` in `/api/clusters`.
fn state_of(proxy: &Proxy, name: &str) -> (String, String) {
    let (status, body) = proxy.http_get("/api/clusters");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let servers = v
        .pointer("/clusters/0/servers")
        .and_then(|s| s.as_array())
        .unwrap();
    let s = servers
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no server {name} in {body}"));
    let text = |k: &str| {
        s[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {s}"))
            .to_owned()
    };
    (text("state"), text("state_reason"))
}

/// `switchyard_replica_state_changes_total` of server `name`.
fn state_changes(proxy: &Proxy, name: &str) -> u64 {
    let labels = format!("server=\"{name}\"");
    proxy.metric("switchyard_replica_state_changes_total", &labels) as u64
}

/// Polls `/api/clusters` until `pred(state, reason)` holds for `name`; returns when it did.
async fn wait_state(
    proxy: &Proxy,
    name: &str,
    what: &str,
    pred: impl Fn(&str, &str) -> bool,
) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (state, reason) = state_of(proxy, name);
        if pred(&state, &reason) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {name} is {state} ({reason})\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// Inserts a row on the primary every 100 ms until `stop` is set; returns the rows written.
fn spawn_writer(primary: u16, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let c = connect(primary, "postgres", SUPERUSER_PASSWORD, "app").await;
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            c.simple_query("INSERT INTO ticks DEFAULT VALUES")
                .await
                .expect("insert on the primary");
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_takes_a_replica_out_and_it_returns_only_after_the_hold() {
    let _serial = SERIAL.lock().await;
    let cluster = PgCluster::start();
    let primary = cluster.primary_port();
    let [r1, r2] = cluster.replica_ports();
    cluster.psql(
        primary,
        "app",
        "CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
    );
    let (proxy, listen) = start_proxy(&cluster);
    for name in ["replica1", "replica2"] {
        wait_state(&proxy, name, "startup", |s, _| s == "healthy").await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(primary, stop.clone());
    let c = connect(listen, APP_USER, APP_PASSWORD, "app").await;
    reads_until(&c, "both replicas in use", |s| {
        s.contains(&r1) && s.contains(&r2)
    })
    .await;
    let changes_before = state_changes(&proxy, "replica1");

    // Pause replay on replica1: its lag grows with every write until it is over 1s.
    cluster.psql(r1, "postgres", "SELECT pg_wal_replay_pause()");
    let paused = Instant::now();
    let mut last_read_on_r1 = None;
    let deadline = paused + Duration::from_secs(20);
    let left = loop {
        if port_of(&c).await == r1 {
            last_read_on_r1 = Some(Instant::now());
        }
        let (state, reason) = state_of(&proxy, "replica1");
        if state == "lagging" {
            assert_eq!(reason, "lag_over_max_replica_lag");
            break Instant::now();
        }
        assert_eq!(state, "healthy", "replica1 went {state} ({reason})");
        assert!(Instant::now() < deadline, "replica1 never lagged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let left_after = left - paused;
    assert!(
        left_after >= MAX_LAG - SLACK,
        "left after {left_after:?}, before its lag could reach 1s"
    );

    // While paused: every read lands on replica2, and replica1 stays out (no flapping).
    let out_until = Instant::now() + Duration::from_secs(3);
    let mut reads = 0;
    while Instant::now() < out_until {
        assert_eq!(port_of(&c).await, r2, "read on a lagging replica");
        assert_eq!(state_of(&proxy, "replica1").0, "lagging");
        reads += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reads > 10);
    let m = proxy.metrics();
    assert!(
        m.contains(
            "switchyard_replica_state{cluster=\"main\",server=\"replica1\",state=\"lagging\"} 1"
        ),
        "{m}"
    );
    assert!(m.contains("switchyard_replica_lag_seconds{cluster=\"main\",server=\"replica1\"}"));

    // Resume: lag drops at once, but replica1 is readmitted only after 2s within the limit.
    cluster.psql(r1, "postgres", "SELECT pg_wal_replay_resume()");
    let resumed = Instant::now();
    let mut saw_hold = false;
    let mut first_read_on_r1 = None;
    let mut healthy_at = None;
    let deadline = resumed + Duration::from_secs(20);
    while first_read_on_r1.is_none() || healthy_at.is_none() {
        let (state, reason) = state_of(&proxy, "replica1");
        if state == "healthy" {
            healthy_at.get_or_insert_with(Instant::now);
        } else {
            assert_eq!(state, "lagging", "replica1 went {state} ({reason})");
            saw_hold |= reason == "readmit_hold";
        }
        if port_of(&c).await == r1 {
            first_read_on_r1.get_or_insert_with(Instant::now);
        }
        assert!(Instant::now() < deadline, "replica1 never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let returned_after = healthy_at.unwrap() - resumed;
    let first_read_after = first_read_on_r1.unwrap() - resumed;
    assert!(saw_hold, "no readmit_hold state seen");
    assert!(
        returned_after >= READMIT_AFTER - SLACK,
        "healthy again {returned_after:?} after resume"
    );
    assert!(
        first_read_after >= READMIT_AFTER - SLACK,
        "read on replica1 {first_read_after:?} after resume"
    );
    assert!(returned_after < Duration::from_secs(10));

    stop.store(true, Ordering::Relaxed);
    let rows = writer.await.unwrap();
    let changes = state_changes(&proxy, "replica1");
    let changes_r2 = state_changes(&proxy, "replica2");
    eprintln!(
        "lag_routing: {rows} rows written; replica1 left the read set {left_after:?} after \
         pg_wal_replay_pause (last read on it {:?} after), healthy again {returned_after:?} after \
         pg_wal_replay_resume (first read on it {first_read_after:?} after); state changes: \
         replica1 {changes} (before the pause {changes_before}), replica2 {changes_r2}",
        last_read_on_r1.map(|t| t.saturating_duration_since(paused))
    );
    // down -> healthy at startup, healthy -> lagging, lagging -> healthy.
    assert!(changes <= 4, "replica1 changed state {changes} times");
    assert!(changes - changes_before >= 2);
    assert!(changes_r2 <= 3, "replica2 changed state {changes_r2} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_monitor_cannot_query_gets_no_reads() {
    let _serial = SERIAL.lock().await;
    let cluster = PgCluster::start();
    let [r1, r2] = cluster.replica_ports();
    let (proxy, listen) = start_proxy(&cluster);
    for name in ["replica1", "replica2"] {
        wait_state(&proxy, name, "startup", |s, _| s == "healthy").await;
    }
    let c = connect(listen, APP_USER, APP_PASSWORD, "app").await;
    reads_until(&c, "both replicas in use", |s| {
        s.contains(&r1) && s.contains(&r2)
    })
    .await;

    cluster.stop_replica(0);
    let stopped = Instant::now();
    let mut seen = BTreeSet::new();
    let down = loop {
        assert_ne!(port_of(&c).await, r1, "read on a stopped replica");
        let (state, reason) = state_of(&proxy, "replica1");
        seen.insert(state.clone());
        if state == "down" {
            assert_eq!(reason, "probe_failing");
            break Instant::now();
        }
        assert!(
            state == "healthy" || state == "unknown",
            "replica1 went {state} ({reason})"
        );
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "never down: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for _ in 0..20 {
        assert_eq!(port_of(&c).await, r2);
    }
    let (status, body) = proxy.http_get("/api/clusters");
    assert_eq!(status, 200);
    assert!(body.contains("\"last_error\":\"connect failed"), "{body}");

    // Back: streaming again, readmitted only after the hold.
    cluster.start_replica(0);
    let started = Instant::now();
    let up = wait_state(&proxy, "replica1", "back up", |s, _| s != "down").await;
    let healthy = wait_state(&proxy, "replica1", "healthy again", |s, _| s == "healthy").await;
    reads_until(&c, "replica1 rejoins", |s| s.contains(&r1)).await;
    let changes = state_changes(&proxy, "replica1");
    eprintln!(
        "lag_routing: replica1 down {:?} after stop (states seen {seen:?}); up {:?} after \
         start, healthy {:?} after that; state changes {changes}",
        down - stopped,
        up - started,
        healthy - up
    );
    assert!(healthy - up >= READMIT_AFTER - Duration::from_millis(300));
    // down -> healthy -> (unknown ->) down -> lagging (hold) -> healthy.
    assert!(changes <= 5, "replica1 changed state {changes} times");
}

/// `switchyard_replica_lag_seconds` of server `name`.
fn lag_gauge(proxy: &Proxy, name: &str) -> f64 {
    proxy.metric(
        "switchyard_replica_lag_seconds",
        &format!("server=\"{name}\""),
    )
}

/// A replica that has received WAL without a commit in it (here a non-transactional message,
/// held back by paused replay) reads in PostgreSQL as "now() minus the last replayed commit",
/// the age of the last commit. After a quiet spell that is far over the limit although the
/// replica misses no data; the monitor caps it by when it last saw the replica caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_without_a_commit_after_a_quiet_spell_is_not_lag() {
    let _serial = SERIAL.lock().await;
    let cluster = PgCluster::start();
    let primary = cluster.primary_port();
    let [r1, _] = cluster.replica_ports();
    // Nothing but the test commits: autovacuum could otherwise refresh the last commit.
    cluster.psql(primary, "postgres", "ALTER SYSTEM SET autovacuum = off");
    cluster.psql(primary, "postgres", "SELECT pg_reload_conf()");
    cluster.psql(primary, "app", "CREATE TABLE quiet (id int)");
    let (proxy, listen) = start_proxy_with(&cluster, "max_replica_lag: 7s, lag_readmit_after: 2s");
    wait_state(&proxy, "replica1", "startup", |s, _| s == "healthy").await;
    let c = connect(listen, APP_USER, APP_PASSWORD, "app").await;

    // A quiet spell longer than the limit, then replay paused and a record without a commit.
    tokio::time::sleep(Duration::from_secs(9)).await;
    cluster.psql(r1, "postgres", "SELECT pg_wal_replay_pause()");
    cluster.psql(
        primary,
        "postgres",
        "SELECT pg_logical_emit_message(false, 'switchyard', 'no commit')",
    );
    let pending = "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()";
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.psql(r1, "postgres", pending) != "t" {
        assert!(
            Instant::now() < deadline,
            "the record never reached replica1"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server_says: f64 = cluster
        .psql(
            r1,
            "postgres",
            "SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())",
        )
        .parse()
        .unwrap();
    assert!(
        server_says > 7.0,
        "the last commit is only {server_says}s old"
    );

    // Two seconds of probes: replica1 stays in the read set.
    let until = Instant::now() + Duration::from_secs(2);
    let mut max_seen: f64 = 0.0;
    let mut reads_on_r1 = 0;
    while Instant::now() < until {
        let (state, reason) = state_of(&proxy, "replica1");
        assert_eq!(state, "healthy", "replica1 went {state} ({reason})");
        max_seen = max_seen.max(lag_gauge(&proxy, "replica1"));
        reads_on_r1 += usize::from(port_of(&c).await == r1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.psql(r1, "postgres", "SELECT pg_wal_replay_resume()");
    eprintln!(
        "lag_routing: PostgreSQL's figure {server_says:.1}s, the monitor's at most {max_seen:.2}s; \
         {reads_on_r1} reads on replica1"
    );
    // The cap is the time since the last probe before the record (probes every 200 ms), so about
    // the 2 s watched; the rest is slack for a loaded machine.
    assert!(max_seen < 5.0, "lag read {max_seen}s");
    assert!(reads_on_r1 > 0, "no read reached replica1");
}
