//! Everything the sessions of one cluster share, whatever their protocol: settings and limits,
//! the topology snapshot, the classifier, users, cancel keys, gates (switchover, pause), the
//! drain, both protocols' server connection pools, and the known replication positions.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::classify::Classifier;
use crate::config::{ClusterConfig, Limits};
use crate::failover::gate::{Pass, WriteGate};
use crate::frontend::mysql::relay::MyBackend;
use crate::frontend::pg::cancel::CancelRegistry;
use crate::frontend::pg::relay::pooled::PgPoolKey;
use crate::frontend::pg::relay::Backend;
use crate::frontend::users::UserDirectory;
use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::router::Balancer;
use crate::topology::Topology;

/// See [`ClusterCtx::drain_wait`].
pub type DrainWait = crate::drain::DrainWait;

/// Everything a session of one cluster shares with the others. Built by `app.rs`.
#[derive(Debug)]
pub struct ClusterCtx {
    pub name: String,
    /// The cluster's settings; replaced as a whole by a reload (read with `config()`).
    pub config: ArcSwap<ClusterConfig>,
    /// Process-wide limits; replaced by a reload (read with `limits()`).
    pub limits: ArcSwap<Limits>,
    pub topology: watch::Receiver<Arc<Topology>>,
    /// Rebuilt by a reload that changes the routing settings it depends on.
    pub classifier: ArcSwap<Classifier>,
    pub balancer: Balancer,
    pub metrics: Arc<Metrics>,
    /// Replaced by a reload (read with `users()`).
    pub users: ArcSwap<UserDirectory>,
    pub cancels: CancelRegistry,
    /// MySQL clusters only: RSA keys and the caching_sha2 fast-path cache.
    pub mysql: crate::frontend::mysql::login::MysqlShared,
    /// Passed while a session has work on the primary; closed by a switchover.
    pub gate: WriteGate,
    /// Passed while a session has any work (outside its idle time); closed by `POST /api/pause`.
    pub pause: WriteGate,
    /// Cancelled on SIGTERM: sessions close once they are idle outside a transaction.
    pub draining: crate::drain::Drain,
    /// Transaction pooling: PostgreSQL server connection pools.
    pub pg_pools: Pools<PgPoolKey, Backend>,
    /// Transaction pooling: MySQL server connection pools.
    pub my_pools: Pools<crate::frontend::mysql::relay::pooled::MyPoolKey, MyBackend>,
    /// `--busy-poll`: told of each client request.
    pub busy_poll: Option<Arc<crate::busy_poll::BusyPoll>>,
    /// Replication positions known without asking (read-your-writes; the monitor's probes).
    pub positions: Arc<crate::position::Positions>,
}

impl ClusterCtx {
    /// The cluster's settings now (a reload may replace them between two calls).
    pub fn config(&self) -> Arc<ClusterConfig> {
        self.config.load_full()
    }

    /// The process-wide limits now.
    pub fn limits(&self) -> Arc<Limits> {
        self.limits.load_full()
    }

    /// The statement classifier now.
    pub fn classifier(&self) -> Arc<Classifier> {
        self.classifier.load_full()
    }

    /// The users known now.
    pub fn users(&self) -> Arc<UserDirectory> {
        self.users.load_full()
    }

    /// Wait (up to the connect timeout) until the monitor has published a first probed snapshot,
    /// so a client arriving right after start-up is routed by real roles, not by an empty topology.
    pub async fn wait_for_topology(&self) {
        let mut rx = self.topology.clone();
        let _ = tokio::time::timeout(self.limits().connect_timeout, async {
            loop {
                if rx
                    .borrow_and_update()
                    .servers
                    .iter()
                    .any(|s| s.checked_at.is_some())
                {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

impl ClusterCtx {
    /// No primary for this request (failover under way, or the one known is unreachable): wait up
    /// to `failover.write_hold` for a primary outside `excluded` to be published. True when one is.
    pub async fn hold_for_primary(&self, excluded: &[usize]) -> bool {
        let hold = self.config().failover.write_hold;
        let usable = |t: &Topology| t.primary().is_some_and(|p| !excluded.contains(&p.index));
        if hold.is_zero() {
            return usable(&self.topology.borrow());
        }
        let mut rx = self.topology.clone();
        let waited = tokio::time::timeout(hold, rx.wait_for(|t| usable(t))).await;
        let released = matches!(waited, Ok(Ok(_)));
        self.metrics.write_hold(&self.name, released);
        if released {
            tracing::info!(cluster = %self.name, "a primary is available again: releasing the held request");
        } else {
            tracing::warn!(cluster = %self.name, ?hold, "no primary within failover.write_hold");
        }
        released
    }

    /// A new pool of connections to `server` for backend `user`, with its metric handles.
    pub fn new_pool<C: Send + 'static>(
        &self,
        server: usize,
        user: &str,
    ) -> Arc<crate::pool::Pool<C>> {
        let config = self.config();
        let name = config.servers.get(server).map_or("", |s| s.name.as_str());
        let gauges = self.metrics.pool_gauges(&self.name, name, user);
        crate::pool::Pool::new(config.pool_for(server), gauges, user)
    }

    /// A pool's warmer for `server` (either protocol): `open` makes one connection, `close`
    /// closes one politely. Holds the cluster weakly; opens nothing while the server is not
    /// [`warmable`](Self::warmable); logs failures.
    pub fn warmer<C, F, Fut, E>(
        self: &Arc<Self>,
        server: usize,
        open: F,
        close: fn(&ClusterCtx, usize, C),
    ) -> crate::pool::Warmer<C>
    where
        C: Send + 'static,
        F: Fn(Arc<ClusterCtx>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<C, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let ctx = Arc::downgrade(self);
        let closing = ctx.clone();
        let open = Arc::new(open);
        crate::pool::Warmer {
            open: Arc::new(move || {
                let (ctx, open) = (ctx.clone(), open.clone());
                Box::pin(async move {
                    let ctx = ctx.upgrade()?;
                    if !ctx.warmable(server) {
                        return None;
                    }
                    let name = ctx.name.clone();
                    match open(ctx).await {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!(cluster = %name, server, error = %e, "could not open a warm pooled connection");
                            None
                        }
                    }
                })
            }),
            close: Arc::new(move |c| {
                if let Some(ctx) = closing.upgrade() {
                    close(&ctx, server, c);
                }
            }),
        }
    }

    /// A session's wait for the drain (SIGTERM), made once per session and polled at every
    /// idle wait (an atomic load, no lock: see [`crate::drain`]).
    pub fn drain_wait(&self) -> DrainWait {
        self.draining.wait()
    }

    /// Whether to open warm pooled connections to `server` now: it is up and in use.
    pub fn warmable(&self, server: usize) -> bool {
        self.topology.borrow().servers.get(server).is_some_and(|s| {
            s.health == crate::topology::Health::Up
                && !s.fenced
                && s.mode == crate::topology::ServerMode::Enabled
        })
    }

    /// A reload: retire the pools of servers for which `gone` says true (removed or moved:
    /// their idle connections close now, leased ones when given back) and, when `pools` is
    /// given (the new cluster config), apply its sizes and limits to the others.
    pub fn reshape_pools(&self, gone: impl Fn(usize) -> bool, pools: Option<&ClusterConfig>) {
        for (key, b) in self.pg_pools.retire_where(|k| gone(k.server)) {
            crate::frontend::pg::relay::pooled::close_conn(self, key.server, b);
        }
        for (key, b) in self.my_pools.retire_where(|k| gone(k.server)) {
            crate::frontend::mysql::relay::pooled::close_conn(self, key.server, b);
        }
        if let Some(cfg) = pools {
            for (key, b) in self.pg_pools.reconfigure_all(|k| cfg.pool_for(k.server)) {
                crate::frontend::pg::relay::pooled::close_conn(self, key.server, b);
            }
            for (key, b) in self.my_pools.reconfigure_all(|k| cfg.pool_for(k.server)) {
                crate::frontend::mysql::relay::pooled::close_conn(self, key.server, b);
            }
        }
    }

    /// Transaction pooling: every few seconds, close pooled connections idle or old past the
    /// pool limits (both protocols); runs until the process stops.
    pub async fn reap_pools_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let now = std::time::Instant::now();
            for (key, b) in self.pg_pools.reap_all(now) {
                crate::frontend::pg::relay::pooled::close_conn(&self, key.server, b);
            }
            for (key, b) in self.my_pools.reap_all(now) {
                crate::frontend::mysql::relay::pooled::close_conn(&self, key.server, b);
            }
            // A session that chose a server just before a reload removed it may have made a
            // fresh pool for it: retire those too.
            let removed: Vec<usize> = self
                .topology
                .borrow()
                .servers
                .iter()
                .filter(|s| s.mode == crate::topology::ServerMode::Removed)
                .map(|s| s.index)
                .collect();
            if !removed.is_empty() {
                self.reshape_pools(|i| removed.contains(&i), None);
            }
            // Refill pools below `min_idle` (after reaping, so what closed is reopened).
            for (_, p) in self.pg_pools.all() {
                p.warm();
            }
            for (_, p) in self.my_pools.all() {
                p.warm();
            }
        }
    }

    /// Pass the pause gate: waits as long as `POST /api/pause` holds it (like PgBouncer PAUSE).
    pub async fn pass_pause(&self) -> Pass {
        loop {
            if let Ok((p, _)) = self.pause.enter(std::time::Duration::from_secs(3600)).await {
                return p;
            }
        }
    }

    /// Pass the write gate (held while a switchover runs, up to `failover.write_hold`).
    /// `Ok((pass, waited))`; `Err` after the hold.
    pub async fn pass_gate(&self) -> Result<(Pass, bool), std::time::Duration> {
        let r = self.gate.enter(self.config().failover.write_hold).await;
        match &r {
            Ok((_, true)) => self.metrics.write_hold(&self.name, true),
            Err(_) => self.metrics.write_hold(&self.name, false),
            Ok((_, false)) => {}
        }
        r
    }
}
