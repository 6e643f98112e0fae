//! End-to-end: replica states with readmission hysteresis on a real MariaDB GTID cluster (own
//! clusters: SQL threads and replicas are stopped). Run with `--nocapture` to see the timings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};
use support::mysql_cluster::{MYSQL_APP_DB, MYSQL_APP_PASSWORD, MYSQL_APP_USER};
use support::{MariaDbCluster, Proxy};

/// The tests measure timings: run them one at a time on this 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const READMIT_AFTER: Duration = Duration::from_secs(2);
/// Slack for the moment we note versus the moment the server acted (client exit, probe timing).
const SLACK: Duration = Duration::from_millis(150);

/// The standard MySQL test config with `max_replica_lag: 1s, lag_readmit_after: 2s`.
fn start_proxy(cluster: &MariaDbCluster) -> (Proxy, u16) {
    let (yaml, ports) = Proxy::mysql_config(cluster);
    assert!(yaml.contains("max_replica_lag: 30s"), "{yaml}");
    let yaml = yaml.replace(
        "max_replica_lag: 30s",
        "max_replica_lag: 1s, lag_readmit_after: 2s",
    );
    (Proxy::start(&yaml), ports.listen)
}

async fn connect(port: u16) -> Conn {
    let o = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(MYSQL_APP_USER))
        .pass(Some(MYSQL_APP_PASSWORD))
        .db_name(Some(MYSQL_APP_DB))
        .prefer_socket(false);
    Conn::new(o).await.expect("connect")
}

async fn port_of(c: &mut Conn) -> u16 {
    let p: Option<u16> = c
        .query_first("SELECT @@port")
        .await
        .expect("read must not fail");
    p.unwrap()
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

/// `gtid_behind` of server `name` in `/api/clusters` (`None` when null).
fn gtid_behind_of(proxy: &Proxy, name: &str) -> Option<u64> {
    let (status, body) = proxy.http_get("/api/clusters");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let servers = v.pointer("/clusters/0/servers").and_then(|s| s.as_array());
    let s = servers
        .and_then(|l| l.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no server {name} in {body}"));
    s["gtid_behind"].as_u64()
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
async fn reads_until(c: &mut Conn, what: &str, pred: impl Fn(&BTreeSet<u16>) -> bool) {
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

/// Inserts a row directly on the primary every 100 ms until `stop` is set; returns the rows written.
fn spawn_writer(primary: u16, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut c = connect(primary).await;
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            c.query_drop("INSERT INTO ticks () VALUES ()")
                .await
                .expect("insert on the primary");
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.disconnect().await.unwrap();
        n
    })
}

/// Runs `f` (a blocking cluster operation) on the blocking pool while the caller keeps reading.
fn in_background(
    cluster: &Arc<MariaDbCluster>,
    f: impl FnOnce(&MariaDbCluster) + Send + 'static,
) -> tokio::task::JoinHandle<Instant> {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        f(&cluster);
        Instant::now()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_sql_thread_takes_a_replica_out_and_it_returns_only_after_the_hold() {
    let _serial = SERIAL.lock().await;
    let cluster = MariaDbCluster::start();
    let primary = cluster.primary_port();
    let [r1, r2] = cluster.replica_ports();
    cluster.sql(
        primary,
        "CREATE TABLE app.ticks (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    );
    cluster.wait_replicas_caught_up();
    let (proxy, listen) = start_proxy(&cluster);
    for name in ["replica1", "replica2"] {
        wait_state(&proxy, name, "startup", |s, _| s == "healthy").await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(primary, stop.clone());
    let mut c = connect(listen).await;
    reads_until(&mut c, "both replicas in use", |s| {
        s.contains(&r1) && s.contains(&r2)
    })
    .await;
    let changes_before = state_changes(&proxy, "replica1");

    // Stop applying on replica1: the monitor sees Slave_SQL_Running = No at the next probe.
    cluster.stop_replica_sql_thread(0);
    let stopped = Instant::now();
    let mut last_read_on_r1 = None;
    let deadline = stopped + Duration::from_secs(10);
    let (left, left_state) = loop {
        let (state, reason) = state_of(&proxy, "replica1");
        if state == "broken" || state == "lagging" {
            break (Instant::now(), format!("{state} ({reason})"));
        }
        assert_eq!(state, "healthy", "replica1 went {state} ({reason})");
        assert!(Instant::now() < deadline, "replica1 never left");
        if port_of(&mut c).await == r1 {
            last_read_on_r1 = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let left_after = left - stopped;
    assert!(
        left_after < Duration::from_secs(2),
        "left the read set only {left_after:?} after STOP SLAVE SQL_THREAD"
    );

    // While stopped: every read succeeds and lands on replica2; replica1 stays out (no flapping).
    let out_until = Instant::now() + Duration::from_secs(3);
    let mut reads = 0;
    while Instant::now() < out_until {
        for _ in 0..5 {
            assert_eq!(port_of(&mut c).await, r2, "read on a stopped replica");
            reads += 1;
        }
        let (state, reason) = state_of(&proxy, "replica1");
        assert!(
            state == "broken" || state == "lagging",
            "replica1 went {state} ({reason}) while its SQL thread is stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reads > 50, "only {reads} reads");
    // The writer keeps committing on the primary: replica1's GTID position falls behind.
    let gtid_deadline = Instant::now() + Duration::from_secs(5);
    let behind = loop {
        match gtid_behind_of(&proxy, "replica1") {
            Some(n) if n > 0 => break n,
            other => assert!(
                Instant::now() < gtid_deadline,
                "replica1 gtid_behind stayed {other:?} with its SQL thread stopped"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        proxy
            .metrics()
            .contains("switchyard_replica_gtid_behind{cluster=\"main\",server=\"replica1\"}"),
        "no gtid_behind gauge"
    );
    assert_eq!(gtid_behind_of(&proxy, "primary"), None);
    let (state_while_out, reason_while_out) = state_of(&proxy, "replica1");
    let m = proxy.metrics();
    assert!(
        m.contains(&format!(
            "switchyard_replica_state{{cluster=\"main\",server=\"replica1\",state=\"{state_while_out}\"}} 1"
        )),
        "{m}"
    );
    assert!(
        m.contains(
            "switchyard_replica_state{cluster=\"main\",server=\"replica1\",state=\"healthy\"} 0"
        ),
        "{m}"
    );

    // Restart applying: it catches up quickly, but is readmitted only after 2s within the limit.
    cluster.start_replica_sql_thread(0);
    let resumed = Instant::now();
    let mut hold_states = BTreeSet::new();
    let mut first_read_on_r1 = None;
    let mut healthy_at = None;
    let deadline = resumed + Duration::from_secs(20);
    while first_read_on_r1.is_none() || healthy_at.is_none() {
        let (state, reason) = state_of(&proxy, "replica1");
        if state == "healthy" {
            healthy_at.get_or_insert_with(Instant::now);
        } else {
            assert!(
                state == "broken" || state == "lagging",
                "replica1 went {state} ({reason})"
            );
            hold_states.insert(format!("{state} ({reason})"));
        }
        if port_of(&mut c).await == r1 {
            first_read_on_r1.get_or_insert_with(Instant::now);
        }
        assert!(Instant::now() < deadline, "replica1 never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let returned_after = healthy_at.unwrap() - resumed;
    let first_read_after = first_read_on_r1.unwrap() - resumed;
    assert!(
        hold_states.iter().any(|s| s.ends_with("(readmit_hold)")),
        "no readmit_hold state seen: {hold_states:?}"
    );
    assert!(
        returned_after >= READMIT_AFTER - SLACK,
        "healthy again {returned_after:?} after START SLAVE SQL_THREAD"
    );
    assert!(
        first_read_after >= READMIT_AFTER - SLACK,
        "read on replica1 {first_read_after:?} after START SLAVE SQL_THREAD"
    );
    assert!(returned_after < Duration::from_secs(10));
    reads_until(&mut c, "both replicas in use again", |s| {
        s.contains(&r1) && s.contains(&r2)
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let rows = writer.await.unwrap();
    let changes = state_changes(&proxy, "replica1");
    let changes_r2 = state_changes(&proxy, "replica2");
    eprintln!(
        "lag_routing_mysql: {rows} rows written; replica1 left the read set {left_after:?} after \
         STOP SLAVE SQL_THREAD as {left_state} (last read on it {:?} after; out: {state_while_out} \
         ({reason_while_out}), {reads} reads all on replica2, {behind} transactions behind by \
         GTID), healthy again {returned_after:?} \
         after START SLAVE SQL_THREAD (first read on it {first_read_after:?} after; states on the \
         way back {hold_states:?}); state changes: replica1 {changes} (before the stop \
         {changes_before}), replica2 {changes_r2}",
        last_read_on_r1.map(|t| t.saturating_duration_since(stopped))
    );
    // down -> healthy at startup, healthy -> broken, (broken -> lagging,) -> healthy.
    assert!(changes <= 4, "replica1 changed state {changes} times");
    assert!(changes - changes_before >= 2);
    assert!(changes_r2 <= 3, "replica2 changed state {changes_r2} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_monitor_cannot_query_gets_no_reads() {
    let _serial = SERIAL.lock().await;
    let cluster = Arc::new(MariaDbCluster::start());
    let [r1, r2] = cluster.replica_ports();
    let (proxy, listen) = start_proxy(&cluster);
    for name in ["replica1", "replica2"] {
        wait_state(&proxy, name, "startup", |s, _| s == "healthy").await;
    }
    let mut c = connect(listen).await;
    reads_until(&mut c, "both replicas in use", |s| {
        s.contains(&r1) && s.contains(&r2)
    })
    .await;

    // Shut replica2 down while reads keep coming: every read must still succeed.
    let started_stop = Instant::now();
    let mut stopping = Some(in_background(&cluster, |cl| cl.stop_replica(1)));
    let mut seen = BTreeSet::new();
    let mut reads = 0;
    let mut stopped = None;
    let mut last_read_on_r2 = None;
    let down = loop {
        if let Some(h) = stopping.take_if(|h| h.is_finished()) {
            stopped = Some(h.await.unwrap());
        }
        if port_of(&mut c).await == r2 {
            assert!(stopped.is_none(), "read on a stopped replica");
            last_read_on_r2 = Some(Instant::now());
        }
        reads += 1;
        let (state, reason) = state_of(&proxy, "replica2");
        seen.insert(format!("{state} ({reason})"));
        if state == "down" && stopped.is_some() {
            assert_eq!(reason, "probe_failing");
            break Instant::now();
        }
        assert!(
            state == "healthy" || state == "unknown" || state == "down",
            "replica2 went {state} ({reason})"
        );
        assert!(
            started_stop.elapsed() < Duration::from_secs(60),
            "never down: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stopped = stopped.unwrap();
    for _ in 0..30 {
        assert_eq!(port_of(&mut c).await, r1, "read on a down replica");
    }
    let (status, body) = proxy.http_get("/api/clusters");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let last_error = v
        .pointer("/clusters/0/servers")
        .and_then(|s| s.as_array())
        .and_then(|s| s.iter().find(|s| s["name"] == "replica2"))
        .map(|s| s["last_error"].clone())
        .unwrap();
    assert!(last_error.is_string(), "no last_error: {body}");

    // Back: replicating again, readmitted only after the hold; reads never fail meanwhile.
    let restart_began = Instant::now();
    let mut starting = Some(in_background(&cluster, |cl| cl.start_replica(1)));
    let mut restarted = None;
    let mut up = None;
    let mut healthy = None;
    let mut first_read_on_r2 = None;
    let mut back_states = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while first_read_on_r2.is_none() || healthy.is_none() {
        if let Some(h) = starting.take_if(|h| h.is_finished()) {
            restarted = Some(h.await.unwrap());
        }
        let (state, reason) = state_of(&proxy, "replica2");
        if state != "down" {
            up.get_or_insert_with(Instant::now);
        }
        if state == "healthy" {
            healthy.get_or_insert_with(Instant::now);
        } else {
            back_states.insert(format!("{state} ({reason})"));
        }
        if port_of(&mut c).await == r2 {
            assert!(up.is_some(), "read on replica2 while it is down");
            first_read_on_r2.get_or_insert_with(Instant::now);
        }
        reads += 1;
        assert!(
            Instant::now() < deadline,
            "replica2 never came back: {back_states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted = match (restarted, starting) {
        (Some(t), _) => t,
        (None, Some(h)) => h.await.unwrap(),
        (None, None) => unreachable!(),
    };
    let (up, healthy, first_read) = (up.unwrap(), healthy.unwrap(), first_read_on_r2.unwrap());
    let changes = state_changes(&proxy, "replica2");
    let changes_r1 = state_changes(&proxy, "replica1");
    let log = proxy.log();
    let retries = log.matches("retrying elsewhere").count()
        + log
            .matches("mysql server unusable for this command")
            .count();
    eprintln!(
        "lag_routing_mysql: replica2 shutdown took {:?} (last read on it {:?} after it began); \
         down {:?} after the shutdown finished (states seen {seen:?}); restart took {:?}, up {:?} \
         after the restart call began, healthy {:?} after up (states {back_states:?}), first read \
         on it {:?} after up; {reads} reads, none failed ({retries} retried elsewhere by the \
         proxy); state changes replica2 {changes}, replica1 {changes_r1}",
        stopped - started_stop,
        last_read_on_r2.map(|t| t.saturating_duration_since(started_stop)),
        down.saturating_duration_since(stopped),
        restarted - restart_began,
        up - restart_began,
        healthy - up,
        first_read.saturating_duration_since(up),
    );
    assert!(healthy - up >= READMIT_AFTER - Duration::from_millis(300));
    assert!(first_read.saturating_duration_since(up) >= READMIT_AFTER - Duration::from_millis(300));
    // down -> healthy -> (unknown ->) down -> lagging (hold) -> healthy.
    assert!(changes <= 5, "replica2 changed state {changes} times");
    assert!(changes_r1 <= 1, "replica1 changed state {changes_r1} times");
}
