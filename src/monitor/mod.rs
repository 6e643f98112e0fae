//! The per-cluster monitor task: probes every server each interval and publishes topology snapshots.
//!
//! Each round probes all servers concurrently (every probe under its own deadline), feeds the
//! outcomes to the pure [`ClusterState`], publishes a new snapshot on the `watch` channel when
//! something changed, and updates the topology metrics. The first round starts immediately; until
//! it lands, the snapshot has every server Down with an unknown role.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ClusterConfig, Protocol, ServerConfig};
use crate::failover::actions::Actions;
use crate::failover::actions_mysql::MysqlActions;
use crate::failover::actions_pg::PgActions;
use crate::failover::driver::{Command, Driver, FailoverHandle, Reconfigure, Wake};
use crate::failover::gate::WriteGate;
use crate::metrics::Metrics;
use crate::position::{Pos, Positions};
use crate::topology::hysteresis::{ClusterState, Event, Observation};
use crate::topology::model::{Health, Lag, ReplicaState, Role, ServerMode, Topology};
use crate::topology::probe_mysql::MysqlProber;
use crate::topology::probe_pg::{PgProber, ProbeError, ProbeResult};

/// Something that can probe one server; one instance per server, kept across rounds.
pub trait Prober: Send + 'static {
    fn probe(&mut self) -> impl Future<Output = Result<ProbeResult, ProbeError>> + Send;
}

impl Prober for PgProber {
    fn probe(&mut self) -> impl Future<Output = Result<ProbeResult, ProbeError>> + Send {
        PgProber::probe(self)
    }
}

impl Prober for MysqlProber {
    fn probe(&mut self) -> impl Future<Output = Result<ProbeResult, ProbeError>> + Send {
        MysqlProber::probe(self)
    }
}

/// What a running monitor hands out: its snapshot channel, its failover command handle, and the
/// replication positions its probes saw (shared with the cluster's sessions).
pub struct Spawned {
    pub topology: watch::Receiver<Arc<Topology>>,
    pub failover: FailoverHandle,
    pub positions: Arc<Positions>,
}

/// Starts the monitor of one cluster (with its failover driver) as a tracked task.
///
/// PostgreSQL clusters get a [`PgProber`] per server and [`PgActions`], MySQL/MariaDB clusters a
/// [`MysqlProber`] and [`MysqlActions`]. `gate` is the cluster's write gate, shared with sessions.
pub fn spawn(
    cluster: &ClusterConfig,
    gate: WriteGate,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Spawned {
    match cluster.protocol {
        Protocol::Postgres => {
            let parts = Parts::build(
                cluster,
                Rebuild {
                    prober: |s, c| PgProber::new(s.clone(), c.monitor.clone(), c),
                    actions: |c| Arc::new(PgActions::new(c)),
                },
            );
            launch(cluster, parts, gate, metrics, cancel, tracker)
        }
        Protocol::Mysql => {
            let parts = Parts::build(
                cluster,
                Rebuild {
                    prober: |s, c| MysqlProber::new(s.clone(), c.monitor.clone(), c),
                    actions: |c| Arc::new(MysqlActions::new(c)),
                },
            );
            launch(cluster, parts, gate, metrics, cancel, tracker)
        }
    }
}

/// How a monitor makes probers and failover actions from a (reloaded) config.
pub struct Rebuild<P, A> {
    pub prober: fn(&ServerConfig, &ClusterConfig) -> P,
    pub actions: fn(&ClusterConfig) -> Arc<A>,
}

/// A monitor's probers (`probers[i]` probes `cluster.servers[i]`), failover actions, and how to
/// remake them on a reload (`None`: the monitor refuses reloads).
struct Parts<P, A> {
    probers: Vec<P>,
    actions: Arc<A>,
    rebuild: Option<Rebuild<P, A>>,
}

impl<P, A> Parts<P, A> {
    fn build(cluster: &ClusterConfig, r: Rebuild<P, A>) -> Self {
        Parts {
            probers: cluster
                .servers
                .iter()
                .map(|s| (r.prober)(s, cluster))
                .collect(),
            actions: (r.actions)(cluster),
            rebuild: Some(r),
        }
    }
}

/// Starts a monitor with the given probers (`probers[i]` probes `cluster.servers[i]`) and
/// failover actions.
pub fn spawn_with<P: Prober, A: Actions>(
    cluster: &ClusterConfig,
    probers: Vec<P>,
    actions: Arc<A>,
    gate: WriteGate,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Spawned {
    let parts = Parts {
        probers,
        actions,
        rebuild: None,
    };
    launch(cluster, parts, gate, metrics, cancel, tracker)
}

fn launch<P: Prober, A: Actions>(
    cluster: &ClusterConfig,
    parts: Parts<P, A>,
    gate: WriteGate,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Spawned {
    let state = ClusterState::new(cluster);
    let (tx, rx) = watch::channel(state.snapshot());
    record_metrics(&metrics, &state.snapshot());
    let names = cluster.servers.iter().map(|s| s.name.clone()).collect();
    let (driver, handle) = Driver::new(
        cluster,
        parts.actions,
        gate,
        metrics.clone(),
        tracker.clone(),
    );
    let positions = Arc::new(Positions::default());
    let task = Monitor {
        positions: positions.clone(),
        cluster: cluster.name.clone(),
        config: Arc::new(cluster.clone()),
        names,
        interval: cluster.monitor.interval,
        probers: parts.probers.into_iter().map(Some).collect(),
        rebuild: parts.rebuild,
        state,
        tx,
        metrics,
        driver,
    };
    tracker.spawn(task.run(cancel));
    Spawned {
        topology: rx,
        failover: handle,
        positions,
    }
}

/// Waits until the snapshot has a unique healthy primary, or the deadline passes.
/// Returns the snapshot that has one, `None` on timeout or if the monitor is gone.
pub async fn wait_ready(
    mut rx: watch::Receiver<Arc<Topology>>,
    deadline: tokio::time::Instant,
) -> Option<Arc<Topology>> {
    let wait = rx.wait_for(|t| t.primary().is_some());
    match tokio::time::timeout_at(deadline, wait).await {
        Ok(Ok(t)) => Some(t.clone()),
        _ => None,
    }
}

struct Monitor<P, A: Actions> {
    cluster: String,
    /// The config the probers and actions were made from.
    config: Arc<ClusterConfig>,
    names: Vec<String>,
    interval: std::time::Duration,
    /// `None` for a server removed by a reload (not probed).
    probers: Vec<Option<P>>,
    rebuild: Option<Rebuild<P, A>>,
    state: ClusterState,
    tx: watch::Sender<Arc<Topology>>,
    metrics: Arc<Metrics>,
    driver: Driver<A>,
    positions: Arc<Positions>,
}

impl<P: Prober, A: Actions> Monitor<P, A> {
    async fn run(mut self, cancel: CancellationToken) {
        tracing::debug!(cluster = %self.cluster, servers = self.names.len(), "monitor started");
        let mut ticker = ticker_every(self.interval);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
                wake = self.driver.next() => {
                    if let Wake::Command(Command::Reconfigure { update, reply }) = wake {
                        let r = self.reconfigure(*update);
                        if r.is_ok() {
                            ticker = ticker_every(self.interval);
                        }
                        let _ = reply.send(r);
                        continue;
                    }
                    let probe_now = self.driver.on_wake(wake, &mut self.state, Instant::now());
                    self.publish(false);
                    if !probe_now {
                        continue;
                    }
                }
            }
            let probes = self.probers.iter_mut().map(|p| async move {
                match p {
                    Some(p) => Some((Instant::now(), p.probe().await)),
                    None => None,
                }
            });
            let results = tokio::select! {
                _ = cancel.cancelled() => break,
                r = join_all(probes.collect()) => r,
            };
            self.finish_round(results);
        }
        tracing::debug!(cluster = %self.cluster, "monitor stopped");
    }

    /// A reload: new server slots and settings; probers and actions remade where they changed.
    /// The new topology is published before this returns.
    fn reconfigure(&mut self, u: Reconfigure) -> Result<(), String> {
        let Some(rebuild) = &self.rebuild else {
            return Err(format!(
                "cluster {}: this monitor cannot be reconfigured",
                self.cluster
            ));
        };
        let old = self.config.clone();
        let new = u.cluster.clone();
        // Settings every probe and failover action uses: a change remakes them all.
        let all = old.monitor != new.monitor
            || old.failover != new.failover
            || old.server_tls != new.server_tls;
        let flag = |v: &[bool], i: usize| v.get(i).copied().unwrap_or(false);
        for (i, server) in new.servers.iter().enumerate() {
            let fresh = all
                || flag(&u.reset, i)
                || old.servers.get(i) != Some(server)
                || self.state.removed(i);
            if fresh || flag(&u.removed, i) {
                self.positions.forget(i);
            }
            if flag(&u.removed, i) {
                if let Some(p) = self.probers.get_mut(i) {
                    *p = None;
                }
            } else if i >= self.probers.len() {
                self.probers.push(Some((rebuild.prober)(server, &new)));
            } else if fresh {
                self.probers[i] = Some((rebuild.prober)(server, &new));
            }
        }
        let actions = (rebuild.actions)(&new);
        self.names = new.servers.iter().map(|s| s.name.clone()).collect();
        self.interval = new.monitor.interval;
        let snapshot = self.state.reconfigure(&new, &u.reset, &u.removed);
        self.driver.reconfigure(new.clone(), actions, &u.removed);
        self.config = new;
        tracing::info!(cluster = %self.cluster, epoch = snapshot.epoch, servers = self.names.len(), "monitor reconfigured");
        self.tx.send_replace(snapshot.clone());
        clear_removed_metrics(&self.metrics, &snapshot);
        record_metrics(&self.metrics, &snapshot);
        Ok(())
    }

    fn finish_round(&mut self, results: Vec<Option<(Instant, Result<ProbeResult, ProbeError>)>>) {
        let mut observations = Vec::with_capacity(results.len());
        for (i, (name, result)) in self.names.iter().zip(results).enumerate() {
            let Some((at, r)) = result else {
                observations.push(None);
                continue;
            };
            if let Ok(r) = &r {
                self.learn_position(i, at, r);
            }
            let label = match &r {
                Ok(_) => "ok",
                Err(e) => e.metric_label(),
            };
            self.metrics
                .probes
                .with_label_values(&[self.cluster.as_str(), name.as_str(), label])
                .inc();
            if let Err(e) = &r {
                tracing::debug!(cluster = %self.cluster, server = %name, error = %e, "probe failed");
            }
            observations.push(Some(Observation {
                at,
                result: r.map_err(|e| e.to_string()),
            }));
        }
        let update = self.state.apply_round(observations, Instant::now());
        let snapshot = self.state.snapshot();
        for ev in &update.events {
            log_event(&self.cluster, ev, &snapshot);
            if let Event::State { server, .. } = ev {
                self.metrics
                    .replica_state_changes
                    .with_label_values(&[self.cluster.as_str(), server.as_str()])
                    .inc();
            }
        }
        self.driver.after_round(&mut self.state, Instant::now());
        self.publish(update.published.is_some());
    }

    /// Tell sessions what a probe sent at `at` saw of server `i`'s replication position.
    fn learn_position(&self, i: usize, at: Instant, r: &ProbeResult) {
        // A primary's write position (`lsn`) may miss an asynchronous commit: only its insert
        // position (or GTID) bounds what sessions wrote.
        let lsn = match r.role {
            Role::Primary => r.insert_lsn,
            Role::Replica => r.lsn,
            Role::Unknown => return,
        };
        let pos = match (lsn, &r.gtid) {
            (Some(lsn), _) => Pos::Lsn(lsn),
            (None, Some(g)) => match Pos::gtid(g) {
                Some(p) => p,
                None => return,
            },
            (None, None) => return,
        };
        if r.role == Role::Primary {
            self.positions.primary_seen(at, pos);
        } else {
            self.positions.replica_seen(i, pos);
        }
    }

    /// Publish the snapshot when the round changed it or failover changed fences or phase; then
    /// let a finished switchover reopen its gate once its new primary shows.
    fn publish(&mut self, changed: bool) {
        let refenced = self.state.republish().is_some();
        let snapshot = self.state.snapshot();
        if changed || refenced {
            self.tx.send_replace(snapshot.clone());
        }
        record_metrics(&self.metrics, &snapshot);
        self.driver.maybe_release(&snapshot, Instant::now());
    }
}

fn log_event(cluster: &str, ev: &Event, snap: &Topology) {
    match ev {
        Event::Health { server, from, to } => {
            let error = snap
                .servers
                .iter()
                .find(|s| &s.name == server)
                .and_then(|s| s.last_error.clone())
                .unwrap_or_default();
            if *to == Health::Down {
                tracing::warn!(cluster, server = %server, from = ?from, to = ?to, error = %error, "server is down");
            } else {
                tracing::info!(cluster, server = %server, from = ?from, to = ?to, "server is up");
            }
        }
        Event::Role { server, from, to } => {
            let flip = *from != Role::Unknown && *to != Role::Unknown;
            if flip {
                tracing::warn!(cluster, server = %server, from = from.as_str(), to = to.as_str(), "server changed role");
            } else {
                tracing::info!(cluster, server = %server, from = from.as_str(), to = to.as_str(), "server role");
            }
        }
        Event::Epoch { epoch } => {
            let primary = snap.primary().map(|p| p.name.as_str()).unwrap_or("none");
            tracing::info!(cluster, epoch, primary, "topology changed");
        }
        Event::State {
            server,
            from,
            to,
            reason,
            lag,
        } => {
            let lag = lag_text(*lag);
            let left_read_set = *from == ReplicaState::Healthy
                && matches!(
                    to,
                    ReplicaState::Lagging | ReplicaState::Unknown | ReplicaState::Broken
                );
            let (from, to) = (from.as_str(), to.as_str());
            if left_read_set {
                tracing::warn!(cluster, server = %server, from, to, reason, lag = %lag, "replica left the read set");
            } else {
                tracing::info!(cluster, server = %server, from, to, reason, lag = %lag, "replica state");
            }
        }
        Event::LagAlert {
            server,
            raised,
            lag,
        } => {
            let lag = lag_text(*lag);
            if *raised {
                tracing::warn!(cluster, server = %server, lag = %lag, "replica lag over lag_alert");
            } else {
                tracing::info!(cluster, server = %server, lag = %lag, "replica lag back under lag_alert");
            }
        }
    }
}

/// A lag for log lines: `1.25s`, `1.25s/4096B` or `unknown`.
fn lag_text(lag: Lag) -> String {
    match lag {
        Lag::Known {
            seconds,
            bytes: Some(b),
        } => format!("{seconds:.3}s/{b}B"),
        Lag::Known {
            seconds,
            bytes: None,
        } => format!("{seconds:.3}s"),
        Lag::Unknown => "unknown".to_owned(),
    }
}

fn ticker_every(interval: std::time::Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(interval.max(std::time::Duration::from_millis(10)));
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Drop the per-server series of servers a reload removed (they are not monitored any more).
fn clear_removed_metrics(metrics: &Metrics, topo: &Topology) {
    let cluster = topo.cluster.as_str();
    for s in topo
        .servers
        .iter()
        .filter(|s| s.mode == ServerMode::Removed)
    {
        let labels = [cluster, s.name.as_str()];
        let _ = metrics.server_up.remove_label_values(&labels);
        for role in [Role::Primary, Role::Replica, Role::Unknown] {
            let _ =
                metrics
                    .server_role
                    .remove_label_values(&[cluster, s.name.as_str(), role.as_str()]);
        }
        for st in ReplicaState::ALL {
            let _ =
                metrics
                    .replica_state
                    .remove_label_values(&[cluster, s.name.as_str(), st.as_str()]);
        }
        for family in [
            &metrics.replica_lag_alert,
            &metrics.replica_gtid_behind,
            &metrics.replica_lag_known,
        ] {
            let _ = family.remove_label_values(&labels);
        }
        let _ = metrics.replica_lag_seconds.remove_label_values(&labels);
        let _ = metrics.replica_lag_bytes.remove_label_values(&labels);
    }
}

/// Sets the per-server gauges and the epoch from a snapshot (servers removed by a reload have
/// no series).
pub fn record_metrics(metrics: &Metrics, topo: &Topology) {
    let cluster = topo.cluster.as_str();
    metrics
        .topology_epoch
        .with_label_values(&[cluster])
        .set(i64::try_from(topo.epoch).unwrap_or(i64::MAX));
    for s in topo
        .servers
        .iter()
        .filter(|s| s.mode != ServerMode::Removed)
    {
        let server = s.name.as_str();
        metrics
            .server_up
            .with_label_values(&[cluster, server])
            .set(i64::from(s.health == Health::Up));
        for role in [Role::Primary, Role::Replica, Role::Unknown] {
            metrics
                .server_role
                .with_label_values(&[cluster, server, role.as_str()])
                .set(i64::from(s.role == role));
        }
        for st in ReplicaState::ALL {
            metrics
                .replica_state
                .with_label_values(&[cluster, server, st.as_str()])
                .set(i64::from(s.state == st));
        }
        let labels = [cluster, server];
        // Touch the counter so every server shows it from the start, at 0.
        let _ = metrics.replica_state_changes.with_label_values(&labels);
        metrics
            .replica_lag_alert
            .with_label_values(&labels)
            .set(i64::from(s.lag_alert));
        match (s.role, s.gtid_behind) {
            (Role::Replica, Some(n)) => metrics
                .replica_gtid_behind
                .with_label_values(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX)),
            _ => {
                let _ = metrics.replica_gtid_behind.remove_label_values(&labels);
            }
        }
        match (s.role, s.lag) {
            (Role::Replica, Lag::Known { seconds, bytes }) => {
                metrics
                    .replica_lag_seconds
                    .with_label_values(&labels)
                    .set(seconds);
                match bytes {
                    Some(b) => metrics
                        .replica_lag_bytes
                        .with_label_values(&labels)
                        .set(b as f64),
                    None => {
                        let _ = metrics.replica_lag_bytes.remove_label_values(&labels);
                    }
                }
                metrics.replica_lag_known.with_label_values(&labels).set(1);
            }
            (Role::Replica, Lag::Unknown) => {
                let _ = metrics.replica_lag_seconds.remove_label_values(&labels);
                let _ = metrics.replica_lag_bytes.remove_label_values(&labels);
                metrics.replica_lag_known.with_label_values(&labels).set(0);
            }
            _ => {
                let _ = metrics.replica_lag_seconds.remove_label_values(&labels);
                let _ = metrics.replica_lag_bytes.remove_label_values(&labels);
                let _ = metrics.replica_lag_known.remove_label_values(&labels);
            }
        }
    }
}

/// Polls all futures concurrently on the current task and returns their outputs in order.
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (f, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(outs.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

#[cfg(test)]
mod tests;
