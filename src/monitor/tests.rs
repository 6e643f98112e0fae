//! Monitor task tests with scripted probers (no sockets).

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;

use super::*;
use crate::config::{Balance, Fallback, MonitorConfig, RoleHint, RoutingConfig, ServerConfig};
use crate::failover::actions::{ActionError, Position};

/// Failover actions that record what they were asked and answer from a script.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    /// Received positions by server index.
    positions: Mutex<Vec<u64>>,
}

impl Recorder {
    fn record(&self, what: String) -> Result<(), ActionError> {
        self.calls.lock().push(what);
        Ok(())
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().clone()
    }
}

impl Actions for Recorder {
    async fn received_position(&self, server: usize) -> Result<Position, ActionError> {
        let lsn = self.positions.lock().get(server).copied().unwrap_or(0);
        Ok(Position::Lsn(lsn))
    }
    async fn primary_position(&self, _server: usize) -> Result<Position, ActionError> {
        Ok(Position::Lsn(0))
    }
    async fn wait_applied(
        &self,
        server: usize,
        _pos: Option<Position>,
        _timeout: Duration,
    ) -> Result<(), ActionError> {
        self.record(format!("wait_applied {server}"))
    }
    async fn promote(&self, server: usize, _timeout: Duration) -> Result<(), ActionError> {
        self.record(format!("promote {server}"))
    }
    async fn repoint(&self, server: usize, primary: usize) -> Result<(), ActionError> {
        self.record(format!("repoint {server} -> {primary}"))
    }
    async fn fence(&self, server: usize) -> Result<(), ActionError> {
        self.record(format!("fence {server}"))
    }
    async fn rejoin(&self, server: usize, primary: usize) -> Result<(), ActionError> {
        self.record(format!("rejoin {server} -> {primary}"))
    }
}

/// A monitor whose failover actions only record.
fn spawn_plain<P: Prober>(
    c: &ClusterConfig,
    probers: Vec<P>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> watch::Receiver<Arc<Topology>> {
    let actions = Arc::new(Recorder::default());
    spawn_with(
        c,
        probers,
        actions,
        WriteGate::default(),
        metrics,
        cancel,
        tracker,
    )
    .topology
}

fn cluster(n: usize, protocol: Protocol) -> ClusterConfig {
    ClusterConfig {
        name: "c1".into(),
        protocol,
        listen: "127.0.0.1:6432".parse().unwrap(),
        listen_socket: None,
        servers: (0..n)
            .map(|i| ServerConfig {
                name: format!("db{i}"),
                host: "127.0.0.1".into(),
                port: 1,
                role: RoleHint::Auto,
                weight: 1,
                priority: 0,
                promote: true,
                pool_size: None,
                socket: None,
            })
            .collect(),
        routing: RoutingConfig {
            balance: Balance::RoundRobin,
            max_replica_lag: None,
            max_replica_lag_bytes: None,
            lag_readmit_after: Duration::from_secs(5),
            lag_alert: None,
            fallback: Fallback::Primary,
            write_functions: vec![],
            classifier_cache_size: 0,
            consistency: crate::config::Consistency::ReadYourWrites,
            causal_timeout: std::time::Duration::from_millis(500),
            causal_wait: false,
        },
        failover: crate::config::FailoverConfig::default(),
        pool: crate::config::PoolConfig::default(),
        tls: crate::config::TlsConfig::default(),
        server_tls: crate::config::ServerTls::default(),
        monitor: MonitorConfig {
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(200),
            healthy_after: 1,
            unhealthy_after: 2,
            user: "mon".into(),
            password: String::new(),
            database: "postgres".into(),
        },
    }
}

/// Replays a script of results; repeats the last one when the script runs out.
struct Scripted {
    script: Arc<Mutex<VecDeque<Result<ProbeResult, ProbeError>>>>,
    last: Option<Result<ProbeResult, ProbeError>>,
    calls: Arc<Mutex<u32>>,
}

impl Scripted {
    fn new(items: Vec<Result<ProbeResult, ProbeError>>) -> (Self, Arc<Mutex<u32>>) {
        let calls = Arc::new(Mutex::new(0));
        (
            Scripted {
                script: Arc::new(Mutex::new(items.into())),
                last: None,
                calls: calls.clone(),
            },
            calls,
        )
    }
}

impl Prober for Scripted {
    fn probe(&mut self) -> impl Future<Output = Result<ProbeResult, ProbeError>> + Send {
        *self.calls.lock() += 1;
        let next = self.script.lock().pop_front();
        let r = match next {
            Some(r) => {
                self.last = Some(r.clone());
                r
            }
            None => self
                .last
                .clone()
                .unwrap_or(Err(ProbeError::Connect("no script".into()))),
        };
        async move { r }
    }
}

fn primary(lsn: u64) -> ProbeResult {
    ProbeResult {
        role: Role::Primary,
        lsn: Some(lsn),
        receive_lsn: None,
        insert_lsn: None,
        lag_seconds: None,
        streaming: false,
        gtid: None,
    }
}

fn replica(lsn: u64, seconds: f64) -> ProbeResult {
    ProbeResult {
        role: Role::Replica,
        lsn: Some(lsn),
        receive_lsn: Some(lsn),
        insert_lsn: None,
        lag_seconds: Some(seconds),
        streaming: true,
        gtid: None,
    }
}

#[tokio::test]
async fn publishes_first_round_and_updates_metrics() {
    let c = cluster(2, Protocol::Postgres);
    let (p0, calls) = Scripted::new(vec![Ok(primary(5000))]);
    let (p1, _) = Scripted::new(vec![Ok(replica(1000, 0.25))]);
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let rx = spawn_plain(&c, vec![p0, p1], metrics.clone(), cancel.clone(), &tracker);

    let initial = rx.borrow().clone();
    assert_eq!(initial.epoch, 0);
    assert!(initial.servers.iter().all(|s| s.health == Health::Down));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let t = wait_ready(rx.clone(), deadline).await.expect("ready");
    assert_eq!(t.epoch, 1);
    assert_eq!(t.primary().map(|p| p.name.as_str()), Some("db0"));
    assert_eq!(
        t.servers[1].lag,
        Lag::Known {
            seconds: 0.25,
            bytes: Some(4000)
        }
    );

    // Let a few more rounds run: nothing changes, so the epoch stays.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(*calls.lock() >= 3);
    assert_eq!(rx.borrow().epoch, 1);

    let text = metrics.render();
    assert!(text.contains("switchyard_server_up{cluster=\"c1\",server=\"db0\"} 1"));
    assert!(
        text.contains("switchyard_server_role{cluster=\"c1\",role=\"primary\",server=\"db0\"} 1")
    );
    assert!(
        text.contains("switchyard_server_role{cluster=\"c1\",role=\"replica\",server=\"db0\"} 0")
    );
    assert!(text.contains("switchyard_replica_lag_seconds{cluster=\"c1\",server=\"db1\"} 0.25"));
    assert!(text.contains("switchyard_replica_lag_bytes{cluster=\"c1\",server=\"db1\"} 4000"));
    assert!(text.contains("switchyard_replica_lag_known{cluster=\"c1\",server=\"db1\"} 1"));
    assert!(!text.contains("switchyard_replica_lag_known{cluster=\"c1\",server=\"db0\"}"));
    assert!(text.contains("switchyard_topology_epoch{cluster=\"c1\"} 1"));
    assert!(text
        .contains("switchyard_monitor_probes_total{cluster=\"c1\",result=\"ok\",server=\"db0\"}"));

    tracker.close();
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), tracker.wait())
        .await
        .expect("monitor stops on cancel");
}

#[tokio::test]
async fn failures_flip_down_after_threshold_and_are_counted() {
    let c = cluster(2, Protocol::Postgres);
    let (p0, _) = Scripted::new(vec![
        Ok(primary(10)),
        Err(ProbeError::Timeout(Duration::from_millis(200))),
        Err(ProbeError::Timeout(Duration::from_millis(200))),
    ]);
    let (p1, _) = Scripted::new(vec![
        Ok(replica(10, 0.0)),
        Err(ProbeError::Connect("refused".into())),
    ]);
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut rx = spawn_plain(&c, vec![p0, p1], metrics.clone(), cancel.clone(), &tracker);

    let t = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|t| t.servers.iter().all(|s| s.health == Health::Down) && t.epoch >= 2),
    )
    .await
    .expect("goes down")
    .expect("monitor alive")
    .clone();
    assert!(t.primary().is_none());
    assert!(t.servers.iter().all(|s| s.role == Role::Unknown));
    assert!(t.servers[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("timed out"));

    let text = metrics.render();
    assert!(text.contains("switchyard_server_up{cluster=\"c1\",server=\"db0\"} 0"));
    assert!(text.contains(
        "switchyard_monitor_probes_total{cluster=\"c1\",result=\"timeout\",server=\"db0\"}"
    ));
    assert!(text.contains(
        "switchyard_monitor_probes_total{cluster=\"c1\",result=\"error\",server=\"db1\"}"
    ));
    assert!(!text.contains("switchyard_replica_lag_seconds{cluster=\"c1\",server=\"db1\"}"));

    cancel.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(2), tracker.wait())
        .await
        .expect("monitor stops on cancel");
}

#[tokio::test]
async fn wait_ready_times_out_without_primary() {
    let c = cluster(1, Protocol::Postgres);
    let (p0, _) = Scripted::new(vec![Ok(replica(1, 0.0))]);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let rx = spawn_plain(&c, vec![p0], Metrics::new(), cancel.clone(), &tracker);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
    assert!(wait_ready(rx, deadline).await.is_none());
    cancel.cancel();
}

#[tokio::test]
async fn mysql_cluster_is_probed_by_the_mysql_prober() {
    // Port 1 on loopback refuses connections: the MySQL prober reports the connect error.
    let c = cluster(1, Protocol::Mysql);
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let mut rx = spawn(
        &c,
        WriteGate::default(),
        Metrics::new(),
        cancel.clone(),
        &tracker,
    )
    .topology;
    assert_eq!(rx.borrow().servers[0].health, Health::Down);
    let t = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|t| t.servers[0].last_error.is_some()),
    )
    .await
    .expect("a probe round lands")
    .expect("monitor alive")
    .clone();
    let s = &t.servers[0];
    assert_eq!(s.health, Health::Down);
    assert_eq!(s.role, Role::Unknown);
    let err = s.last_error.clone().unwrap_or_default();
    assert!(
        err.starts_with("connect failed") || err.starts_with("probe timed out"),
        "{err}"
    );
    cancel.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(2), tracker.wait())
        .await
        .unwrap();
    assert!(rx.changed().await.is_err());
}

#[tokio::test]
async fn join_all_keeps_order_and_runs_concurrently() {
    let started = std::time::Instant::now();
    let futs: Vec<_> = [30u64, 10, 20]
        .into_iter()
        .map(|ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ms
        })
        .collect();
    assert_eq!(join_all(futs).await, vec![30, 10, 20]);
    assert!(started.elapsed() < Duration::from_millis(55));
    let empty: Vec<std::future::Ready<u8>> = vec![];
    assert!(join_all(empty).await.is_empty());
}

#[tokio::test]
async fn replica_state_metrics_and_change_counter() {
    let mut c = cluster(2, Protocol::Postgres);
    c.routing.max_replica_lag = Some(Duration::from_secs(1));
    c.routing.lag_alert = Some(Duration::from_secs(2));
    let (p0, _) = Scripted::new(vec![Ok(primary(10))]);
    let (p1, _) = Scripted::new(vec![
        Ok(replica(10, 0.0)),
        Ok(replica(10, 0.0)),
        Ok(replica(10, 3.0)),
    ]);
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut rx = spawn_plain(&c, vec![p0, p1], metrics.clone(), cancel.clone(), &tracker);
    let text = metrics.render();
    assert!(
        text.contains("switchyard_replica_state{cluster=\"c1\",server=\"db1\",state=\"down\"} 1")
    );
    assert!(
        text.contains("switchyard_replica_state_changes_total{cluster=\"c1\",server=\"db1\"} 0")
    );
    let t = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|t| t.servers[1].state == ReplicaState::Lagging),
    )
    .await
    .expect("replica goes lagging")
    .expect("monitor alive")
    .clone();
    assert_eq!(t.servers[1].state_reason, "lag_over_max_replica_lag");
    assert!(t.servers[1].lag_alert);
    // Let the last scripted result repeat: no further changes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = metrics.render();
    for (state, v) in [("lagging", 1), ("healthy", 0), ("down", 0), ("primary", 0)] {
        let line = format!(
            "switchyard_replica_state{{cluster=\"c1\",server=\"db1\",state=\"{state}\"}} {v}"
        );
        assert!(text.contains(&line), "{line}\n{text}");
    }
    assert!(text
        .contains("switchyard_replica_state{cluster=\"c1\",server=\"db0\",state=\"primary\"} 1"));
    // down -> healthy -> lagging.
    assert!(
        text.contains("switchyard_replica_state_changes_total{cluster=\"c1\",server=\"db1\"} 2")
    );
    assert!(
        text.contains("switchyard_replica_state_changes_total{cluster=\"c1\",server=\"db0\"} 1")
    );
    assert!(text.contains("switchyard_replica_lag_alert{cluster=\"c1\",server=\"db1\"} 1"));
    assert!(text.contains("switchyard_replica_lag_alert{cluster=\"c1\",server=\"db0\"} 0"));
    cancel.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(2), tracker.wait())
        .await
        .unwrap();
}

#[test]
fn gtid_behind_gauge_follows_the_snapshot() {
    use crate::topology::model::{ReplicaState, ServerState, Topology};
    let server = |name: &str, role: Role, behind: Option<u64>| ServerState {
        index: 0,
        name: name.into(),
        address: String::new(),
        role,
        health: Health::Up,
        replicating: role == Role::Replica,
        lag: Lag::Unknown,
        gtid_behind: behind,
        weight: 1,
        checked_at: None,
        last_error: None,
        state: ReplicaState::Unknown,
        state_reason: "test",
        lag_alert: false,
        fenced: false,
        mode: crate::topology::ServerMode::Enabled,
    };
    let metrics = Metrics::new();
    let topo = |behind| Topology {
        cluster: "m".into(),
        epoch: 1,
        servers: vec![
            server("p", Role::Primary, None),
            server("r", Role::Replica, behind),
        ],
        failover: "idle",
    };
    record_metrics(&metrics, &topo(Some(12)));
    let text = metrics.render();
    assert!(text.contains("switchyard_replica_gtid_behind{cluster=\"m\",server=\"r\"} 12"));
    assert!(!text.contains("switchyard_replica_gtid_behind{cluster=\"m\",server=\"p\"}"));
    record_metrics(&metrics, &topo(None));
    assert!(!metrics
        .render()
        .contains("switchyard_replica_gtid_behind{cluster=\"m\",server=\"r\"}"));
}

fn orphan(lsn: u64) -> ProbeResult {
    ProbeResult {
        streaming: false,
        ..replica(lsn, 0.0)
    }
}

/// A three-server cluster in `failover: auto` whose primary dies after three good rounds; the
/// replicas stream (`streaming_after = true`) or lose their upstream when it dies.
async fn run_failover(streaming_after: bool) -> (Arc<Recorder>, Arc<Topology>) {
    let mut c = cluster(3, Protocol::Postgres);
    c.failover.mode = crate::config::FailoverMode::Auto;
    let fail = || Err(ProbeError::Connect("refused".into()));
    let ok = |r: ProbeResult| Ok(r);
    let after = |lsn| {
        if streaming_after {
            ok(replica(lsn, 0.0))
        } else {
            ok(orphan(lsn))
        }
    };
    let (p0, _) = Scripted::new(vec![
        ok(primary(30)),
        ok(primary(30)),
        ok(primary(30)),
        fail(),
    ]);
    let (p1, _) = Scripted::new(vec![
        ok(replica(10, 0.0)),
        ok(replica(10, 0.0)),
        ok(replica(10, 0.0)),
        after(10),
    ]);
    let (p2, _) = Scripted::new(vec![
        ok(replica(20, 0.0)),
        ok(replica(20, 0.0)),
        ok(replica(20, 0.0)),
        after(20),
    ]);
    let actions = Arc::new(Recorder::default());
    *actions.positions.lock() = vec![0, 10, 20];
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let rx = spawn_with(
        &c,
        vec![p0, p1, p2],
        actions.clone(),
        WriteGate::default(),
        Metrics::new(),
        cancel.clone(),
        &tracker,
    )
    .topology;
    // 20 ms rounds: the primary is down after 2 failures; leave time for the decision and actions.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let topo = rx.borrow().clone();
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    (actions, topo)
}

#[tokio::test]
async fn a_confirmed_primary_failure_promotes_the_most_advanced_replica() {
    let (actions, topo) = run_failover(false).await;
    let calls = actions.calls();
    assert!(calls.contains(&"promote 2".to_string()), "{calls:?}");
    assert!(calls.contains(&"repoint 1 -> 2".to_string()), "{calls:?}");
    assert!(!calls.iter().any(|c| c == "promote 1"), "{calls:?}");
    assert!(topo.servers[0].fenced, "the failed primary is fenced");
    assert_eq!(topo.servers[0].state, ReplicaState::Fenced);
    assert!(topo.epoch >= 2);
}

#[tokio::test]
async fn an_unreachable_primary_with_streaming_replicas_is_not_replaced() {
    let (actions, topo) = run_failover(true).await;
    assert!(actions.calls().is_empty(), "{:?}", actions.calls());
    assert!(!topo.servers[0].fenced);
    assert_eq!(topo.failover, "primary_unreachable");
}
