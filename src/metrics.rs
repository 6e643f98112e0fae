//! Typed Prometheus registry: every metric Switchyard exports, created once; hot path is atomics.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::classify::Reason;

/// Where a statement was sent, for the `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Primary,
    Replica,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Replica => "replica",
        }
    }
}

/// Why a route was taken; the classifier's reason or a session/router reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteReason {
    Class(Reason),
    InTransaction,
    Pinned,
    Override,
    NoReplica,
    Replay,
    /// read_your_writes/global: no replica caught up in time.
    CausalFallback,
    /// The session's consistency is `strong`.
    Consistency,
    /// The session's transactions are serializable, which a hot standby refuses.
    Serializable,
}

impl RouteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteReason::Class(r) => r.as_str(),
            RouteReason::InTransaction => "in_transaction",
            RouteReason::Pinned => "pinned",
            RouteReason::Override => "override",
            RouteReason::NoReplica => "no_replica_fallback",
            RouteReason::Replay => "session_replay",
            RouteReason::CausalFallback => "causal_fallback",
            RouteReason::Consistency => "consistency",
            RouteReason::Serializable => "serializable",
        }
    }
}

/// Kinds of errors counted in `switchyard_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    ClientProtocol,
    AuthFailed,
    UnknownUser,
    BackendConnect,
    BackendLost,
    NoServer,
    Timeout,
    TooManyClients,
    /// No pooled server connection became free within pool.checkout_timeout.
    PoolTimeout,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ClientProtocol => "client_protocol",
            ErrorKind::AuthFailed => "auth_failed",
            ErrorKind::UnknownUser => "unknown_user",
            ErrorKind::BackendConnect => "backend_connect",
            ErrorKind::BackendLost => "backend_lost",
            ErrorKind::NoServer => "no_server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::TooManyClients => "too_many_clients",
            ErrorKind::PoolTimeout => "pool_timeout",
        }
    }
}

/// Keeps one session counted in `switchyard_pinned_sessions` until dropped.
#[derive(Debug)]
pub struct PinGuard(IntGauge);

impl Drop for PinGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The process's metrics. Built once in `app.rs` and shared by `Arc`.
pub struct Metrics {
    registry: Registry,
    queries: IntCounterVec,
    query_seconds: HistogramVec,
    clients: IntGaugeVec,
    clients_total: IntCounterVec,
    backends: IntGaugeVec,
    backend_connects: IntCounterVec,
    errors: IntCounterVec,
    pub server_up: IntGaugeVec,
    pub server_role: IntGaugeVec,
    pub replica_lag_seconds: GaugeVec,
    pub replica_lag_bytes: GaugeVec,
    pub replica_lag_known: IntGaugeVec,
    /// MariaDB replicas: transactions behind the primary by GTID (absent when not measured).
    pub replica_gtid_behind: IntGaugeVec,
    /// 1 for the server's current replication state, 0 for the others.
    pub replica_state: IntGaugeVec,
    pub replica_state_changes: IntCounterVec,
    pub replica_lag_alert: IntGaugeVec,
    pub probes: IntCounterVec,
    pub topology_epoch: IntGaugeVec,
    /// Failover events by kind (primary_failed, promoted, fenced, split_brain, switchover...).
    pub failover_events: IntCounterVec,
    failover_seconds: HistogramVec,
    /// 1 while more than one unfenced server claims to be the primary.
    pub split_brain: IntGaugeVec,
    write_holds: IntCounterVec,
    config_reloads: IntCounterVec,
    pool_connections: IntGaugeVec,
    pool_waiting: IntGaugeVec,
    pool_size: IntGaugeVec,
    pool_checkout_seconds: HistogramVec,
    pool_timeouts: IntCounterVec,
    /// Sessions pinned to one server connection, by reason (temp_table, listen, ...).
    pub pins: IntCounterVec,
    /// Sessions pinned right now, by reason.
    pub pinned_sessions: IntGaugeVec,
    causal_waits: IntCounterVec,
    causal_wait_seconds: HistogramVec,
    /// Cached per-(cluster, route, reason) counters so the hot path never formats labels.
    handles: Mutex<HashMap<(String, Route, RouteReason), IntCounter>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{e}"));
    reg.register(Box::new(v.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    v
}

fn gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{e}"));
    reg.register(Box::new(v.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    v
}

fn fgauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let v = GaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{e}"));
    reg.register(Box::new(v.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    v
}

impl Metrics {
    /// Builds the registry. Metric definitions are static, so a failure here is a programming
    /// error caught by the unit test below, never by input.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        let queries = counter_vec(
            &r,
            "switchyard_queries_total",
            "Statements routed, by destination role and reason.",
            &["cluster", "route", "reason"],
        );
        let hopts = HistogramOpts::new(
            "switchyard_query_duration_seconds",
            "Time from a request reaching the proxy to the end of the server's answer.",
        )
        .buckets(vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0,
        ]);
        let query_seconds =
            HistogramVec::new(hopts, &["cluster", "route"]).unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(query_seconds.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let causal_wait_seconds = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_causal_wait_seconds",
                "Time reads waited for a replica to replay the position they must see.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["cluster"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(causal_wait_seconds.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let causal_waits = counter_vec(
            &r,
            "switchyard_causal_waits_total",
            "Consistency checks of replicas before a read, by result (caught_up, timeout).",
            &["cluster", "result"],
        );
        let failover_seconds = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_failover_duration_seconds",
                "Duration of promotions (kind=failover, from the decision to promote) and \
                 switchovers (kind=switchover, writes held to released).",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0,
            ]),
            &["cluster", "kind"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(failover_seconds.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let pool_checkout_seconds = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_pool_checkout_wait_seconds",
                "Time requests waited in line for a pooled server connection (only those that waited).",
            )
            .buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
            ]),
            &["cluster", "server", "user"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(pool_checkout_seconds.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(Metrics {
            pool_connections: gauge_vec(
                &r,
                "switchyard_pool_connections",
                "Server connections of a pool (transaction pooling), by state (idle, in_use).",
                &["cluster", "server", "user", "state"],
            ),
            pool_waiting: gauge_vec(
                &r,
                "switchyard_pool_waiting_clients",
                "Requests waiting in line for a connection of the pool.",
                &["cluster", "server", "user"],
            ),
            pool_size: gauge_vec(
                &r,
                "switchyard_pool_size",
                "Most server connections the pool may hold.",
                &["cluster", "server", "user"],
            ),
            pool_checkout_seconds,
            pool_timeouts: counter_vec(
                &r,
                "switchyard_pool_checkout_timeouts_total",
                "Requests that found no free pooled connection within pool.checkout_timeout.",
                &["cluster", "server", "user"],
            ),
            pins: counter_vec(
                &r,
                "switchyard_session_pins_total",
                "Sessions pinned to one server connection (state that cannot move), by reason.",
                &["cluster", "reason"],
            ),
            pinned_sessions: gauge_vec(
                &r,
                "switchyard_pinned_sessions",
                "Sessions pinned to one server connection right now, by reason.",
                &["cluster", "reason"],
            ),
            failover_events: counter_vec(
                &r,
                "switchyard_failover_events_total",
                "Failover events: primary_failed, primary_unreachable, no_candidate, promoted, \
                 promotion_failed, followed, fenced, unfenced, active_fence, split_brain, \
                 switchover, switchover_failed.",
                &["cluster", "event"],
            ),
            failover_seconds,
            split_brain: gauge_vec(
                &r,
                "switchyard_split_brain",
                "1 while more than one unfenced server claims to be the primary (no writes go anywhere).",
                &["cluster"],
            ),
            write_holds: counter_vec(
                &r,
                "switchyard_write_holds_total",
                "Requests that waited for a primary (failover, switchover), by result \
                 (released, timed_out).",
                &["cluster", "result"],
            ),
            config_reloads: {
                let c = counter_vec(
                    &r,
                    "switchyard_config_reloads_total",
                    "Configuration reloads (SIGHUP, POST /api/reload), by result (ok, error).",
                    &["result"],
                );
                // Both series exist from the start, at 0, so rate() and alerts see them.
                let _ = c.with_label_values(&["ok"]);
                let _ = c.with_label_values(&["error"]);
                c
            },
            causal_waits,
            causal_wait_seconds,
            queries,
            query_seconds,
            clients: gauge_vec(
                &r,
                "switchyard_client_connections",
                "Client connections currently open.",
                &["cluster"],
            ),
            clients_total: counter_vec(
                &r,
                "switchyard_client_connections_total",
                "Client connections accepted.",
                &["cluster"],
            ),
            backends: gauge_vec(
                &r,
                "switchyard_backend_connections",
                "Server connections currently open by the proxy for clients.",
                &["cluster", "server"],
            ),
            backend_connects: counter_vec(
                &r,
                "switchyard_backend_connects_total",
                "Server connections opened for clients.",
                &["cluster", "server"],
            ),
            errors: counter_vec(
                &r,
                "switchyard_errors_total",
                "Errors by kind.",
                &["cluster", "kind"],
            ),
            server_up: gauge_vec(
                &r,
                "switchyard_server_up",
                "1 when the monitor considers the server up.",
                &["cluster", "server"],
            ),
            server_role: gauge_vec(
                &r,
                "switchyard_server_role",
                "1 for the role the monitor discovered for the server.",
                &["cluster", "server", "role"],
            ),
            replica_lag_seconds: fgauge_vec(
                &r,
                "switchyard_replica_lag_seconds",
                "Replica replay lag in seconds (absent or lag_known=0 when unknown).",
                &["cluster", "server"],
            ),
            replica_lag_bytes: fgauge_vec(
                &r,
                "switchyard_replica_lag_bytes",
                "Replica replay lag in bytes of WAL behind the primary.",
                &["cluster", "server"],
            ),
            replica_lag_known: gauge_vec(
                &r,
                "switchyard_replica_lag_known",
                "1 when the replica's lag was measured by the last probe.",
                &["cluster", "server"],
            ),
            replica_gtid_behind: gauge_vec(
                &r,
                "switchyard_replica_gtid_behind",
                "MariaDB replica: transactions behind the primary, summed over GTID domains \
                 (primary @@gtid_binlog_pos vs replica @@gtid_slave_pos in the same round).",
                &["cluster", "server"],
            ),
            replica_state: gauge_vec(
                &r,
                "switchyard_replica_state",
                "1 for the server's replication state (primary, healthy, lagging, unknown, broken, \
                 down), 0 for the others. Only healthy replicas take reads.",
                &["cluster", "server", "state"],
            ),
            replica_state_changes: counter_vec(
                &r,
                "switchyard_replica_state_changes_total",
                "Replication state changes of the server (after lag hysteresis).",
                &["cluster", "server"],
            ),
            replica_lag_alert: gauge_vec(
                &r,
                "switchyard_replica_lag_alert",
                "1 while the replica's lag is over routing.lag_alert.",
                &["cluster", "server"],
            ),
            probes: counter_vec(
                &r,
                "switchyard_monitor_probes_total",
                "Monitor probes by result.",
                &["cluster", "server", "result"],
            ),
            topology_epoch: gauge_vec(
                &r,
                "switchyard_topology_epoch",
                "Topology epoch of the cluster.",
                &["cluster"],
            ),
            registry: r,
            handles: Mutex::new(HashMap::new()),
        })
    }

    /// Counter handle for one (cluster, route, reason); cache it where possible.
    pub fn query_counter(&self, cluster: &str, route: Route, reason: RouteReason) -> IntCounter {
        let key = (cluster.to_string(), route, reason);
        let mut h = self.handles.lock();
        h.entry(key)
            .or_insert_with(|| {
                self.queries
                    .with_label_values(&[cluster, route.as_str(), reason.as_str()])
            })
            .clone()
    }

    pub fn query_histogram(&self, cluster: &str, route: Route) -> Histogram {
        self.query_seconds
            .with_label_values(&[cluster, route.as_str()])
    }

    pub fn client_gauge(&self, cluster: &str) -> IntGauge {
        self.clients.with_label_values(&[cluster])
    }

    pub fn client_accepted(&self, cluster: &str) {
        self.clients_total.with_label_values(&[cluster]).inc();
    }

    pub fn backend_gauge(&self, cluster: &str, server: &str) -> IntGauge {
        self.backends.with_label_values(&[cluster, server])
    }

    pub fn backend_connected(&self, cluster: &str, server: &str) {
        self.backend_connects
            .with_label_values(&[cluster, server])
            .inc();
    }

    pub fn error(&self, cluster: &str, kind: ErrorKind) {
        self.errors
            .with_label_values(&[cluster, kind.as_str()])
            .inc();
    }

    pub fn lag_gauges(&self, cluster: &str, server: &str) -> (Gauge, Gauge) {
        (
            self.replica_lag_seconds
                .with_label_values(&[cluster, server]),
            self.replica_lag_bytes.with_label_values(&[cluster, server]),
        )
    }

    /// A read-your-writes / global wait: whether a replica caught up in time, and how long it took.
    pub fn causal_wait(&self, cluster: &str, caught_up: bool, waited: std::time::Duration) {
        let result = if caught_up { "caught_up" } else { "timeout" };
        self.causal_waits
            .with_label_values(&[cluster, result])
            .inc();
        self.causal_wait_seconds
            .with_label_values(&[cluster])
            .observe(waited.as_secs_f64());
    }

    pub fn failover_event(&self, cluster: &str, event: &str) {
        self.failover_events
            .with_label_values(&[cluster, event])
            .inc();
    }

    pub fn failover_duration(&self, cluster: &str, kind: &str, took: std::time::Duration) {
        self.failover_seconds
            .with_label_values(&[cluster, kind])
            .observe(took.as_secs_f64());
    }

    /// A session got pinned to one server connection: counted, and shown in
    /// `switchyard_pinned_sessions` while the returned guard lives.
    pub fn pinned(&self, cluster: &str, reason: &str) -> PinGuard {
        self.pins.with_label_values(&[cluster, reason]).inc();
        let gauge = self.pinned_sessions.with_label_values(&[cluster, reason]);
        gauge.inc();
        PinGuard(gauge)
    }

    /// Sessions of `cluster` pinned now, by reason (reasons with none left out).
    pub fn pinned_now(&self, cluster: &str) -> Vec<(String, i64)> {
        use prometheus::core::Collector;
        let mut out = Vec::new();
        for family in self.pinned_sessions.collect() {
            for m in family.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_owned())
                };
                let n = m.get_gauge().get_value() as i64;
                if label("cluster").as_deref() == Some(cluster) && n > 0 {
                    out.push((label("reason").unwrap_or_default(), n));
                }
            }
        }
        out
    }

    /// A request waited for a primary: released (a primary came) or timed out.
    pub fn write_hold(&self, cluster: &str, released: bool) {
        let result = if released { "released" } else { "timed_out" };
        self.write_holds.with_label_values(&[cluster, result]).inc();
    }

    /// A configuration reload finished (`ok` or `error`).
    pub fn config_reload(&self, result: &str) {
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// Metric handles for the pool of (cluster, server, backend user).
    pub fn pool_gauges(&self, cluster: &str, server: &str, user: &str) -> crate::pool::PoolGauges {
        let l = [cluster, server, user];
        crate::pool::PoolGauges {
            idle: self
                .pool_connections
                .with_label_values(&[cluster, server, user, "idle"]),
            in_use: self
                .pool_connections
                .with_label_values(&[cluster, server, user, "in_use"]),
            waiting: self.pool_waiting.with_label_values(&l),
            size: self.pool_size.with_label_values(&l),
            checkout_seconds: self.pool_checkout_seconds.with_label_values(&l),
            timeouts: self.pool_timeouts.with_label_values(&l),
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// One session's metric handles, looked up once per (route, reason) and then only incremented,
/// so routing a statement costs an atomic add, not a label lookup under a lock.
pub struct SessionMetrics {
    metrics: Arc<Metrics>,
    cluster: String,
    /// The few (route, reason) pairs a session meets, found by a short scan (no hashing).
    counters: Vec<(Route, RouteReason, IntCounter)>,
    /// Indexed by route.
    histograms: [Option<Histogram>; 2],
}

impl SessionMetrics {
    pub fn new(metrics: Arc<Metrics>, cluster: &str) -> Self {
        SessionMetrics {
            metrics,
            cluster: cluster.to_string(),
            counters: Vec::new(),
            histograms: [None, None],
        }
    }

    /// Count one routed statement (or batch).
    pub fn routed(&mut self, route: Route, reason: RouteReason) {
        if let Some((_, _, c)) = self
            .counters
            .iter()
            .find(|(r, why, _)| *r == route && *why == reason)
        {
            c.inc();
            return;
        }
        let c = self.metrics.query_counter(&self.cluster, route, reason);
        c.inc();
        self.counters.push((route, reason, c));
    }

    /// Record how long a request took end to end.
    pub fn observe(&mut self, route: Route, seconds: f64) {
        let slot = &mut self.histograms[route as usize];
        slot.get_or_insert_with(|| self.metrics.query_histogram(&self.cluster, route))
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_and_renders() {
        let m = Metrics::new();
        m.query_counter("c", Route::Replica, RouteReason::Class(Reason::Read))
            .inc();
        m.error("c", ErrorKind::AuthFailed);
        let text = m.render();
        assert!(text.contains(
            "switchyard_queries_total{cluster=\"c\",reason=\"read\",route=\"replica\"} 1"
        ));
        assert!(text.contains("switchyard_errors_total{cluster=\"c\",kind=\"auth_failed\"} 1"));
    }
}
