//! Transaction pooling for a PostgreSQL session: server connections come from the cluster's
//! pools when a request needs them and go back whenever the session is idle outside a transaction
//! and nothing pins it; a connection whose protocol state is uncertain is closed, never pooled.
//!
//! A pool is keyed by (server, backend user, startup parameters incl. database), so a pooled
//! connection always has the parameters its next client logged in with; what a session `SET`
//! since is replayed (or, when another session left different settings, reset with
//! `DISCARD ALL` first) before the session's next request. Prepared statements stay on their
//! connection and are re-prepared where a session needs them (see `state::plan`).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::*;
use crate::backend::pg::BackendError;
use smallvec::SmallVec;

use crate::frontend::lines;
use crate::pool::{Checkout, LoginReport, Pool, Warmer};

/// Which pool a session's connections to one server come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PgPoolKey {
    pub server: usize,
    /// Backend user and startup parameters (database included), hashed.
    pub login: u64,
}

/// The hash of a backend login: user and startup parameters, in order.
pub fn login_hash(user: &str, params: &[(String, String)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.hash(&mut h);
    params.hash(&mut h);
    h.finish()
}

/// Really close a server connection (not back to any pool).
pub(crate) fn close_conn(ctx: &ClusterCtx, server: usize, b: Backend) {
    if let Some(cfg) = ctx.config().servers.get(server) {
        ctx.metrics.backend_gauge(&ctx.name, &cfg.name).dec();
    }
    tokio::spawn(b.conn.terminate());
}

/// Open and authenticate a new connection to `server` as `user` with the client's startup
/// `params` (a session's own, or a pool's warm connection).
pub(crate) async fn open_backend(
    ctx: &ClusterCtx,
    server: usize,
    user: &crate::config::UserConfig,
    params: &[(String, String)],
) -> Result<Backend, BackendError> {
    let config = ctx.config();
    let Some(cfg) = config.servers.get(server) else {
        return Err(BackendError::Protocol(format!("no server #{server}")));
    };
    let login = Login {
        user: &user.backend_user,
        password: user.backend_password.as_deref(),
        params,
    };
    let conn = BackendConn::connect(
        cfg.endpoint(),
        crate::backend::ServerTlsTarget::new(&config.server_tls, &cfg.host),
        login,
        ctx.limits().max_message_size,
        ctx.limits().connect_timeout,
    )
    .await;
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            ctx.metrics.error(&ctx.name, ErrorKind::BackendConnect);
            return Err(e);
        }
    };
    ctx.metrics.backend_connected(&ctx.name, &cfg.name);
    ctx.metrics.backend_gauge(&ctx.name, &cfg.name).inc();
    Ok(Backend {
        conn: Box::new(conn),
        state: BackendState::default(),
        replayed: 0,
    })
}

impl Relay {
    pub(super) fn pooling(&self) -> bool {
        self.pooled
    }

    /// The session's consistency: its own setting, else the cluster's current one.
    pub(super) fn consistency(&self) -> crate::config::Consistency {
        self.consistency
            .unwrap_or_else(|| self.ctx.config().routing.consistency)
    }

    /// The key of this session's pool on `server`.
    pub(super) fn pool_key(&self, server: usize) -> PgPoolKey {
        PgPoolKey {
            server,
            login: self.login_key,
        }
    }

    /// The pool of `server` this session used before, unless a reload retired it; else the
    /// cluster's (made on first use).
    fn pool(&mut self, server: usize) -> Arc<Pool<Backend>> {
        let cached = self.pools[server].take().filter(|p| !p.is_retired());
        let pool = cached.unwrap_or_else(|| {
            self.ctx.pg_pools.get(&self.pool_key(server), || {
                let pool = self.ctx.new_pool(server, &self.user.config.backend_user);
                pool.set_opener(self.warmer(server));
                pool.warm();
                pool
            })
        });
        self.pools[server] = Some(pool.clone());
        pool
    }

    /// How the pool of `server` opens warm connections with this session's login.
    fn warmer(&self, server: usize) -> Warmer<Backend> {
        let (user, params) = (self.user.clone(), Arc::new(self.params.clone()));
        let open = move |ctx: Arc<ClusterCtx>| {
            let (user, params) = (user.clone(), params.clone());
            async move { open_backend(&ctx, server, &user.config, &params).await }
        };
        self.ctx.warmer(server, open, close_conn)
    }

    /// Transaction pooling: the server a new session starts on and what its pool's connections
    /// reported at login, when one has logged in with this session's login; the session is then
    /// greeted without taking a connection (a login never waits in line behind requests).
    pub(super) fn pooled_greeting(&mut self) -> Option<(usize, LoginReport)> {
        if !self.pooling() {
            return None;
        }
        let d = self
            .route(Want::Replica(RouteReason::Class(Reason::Session)))
            .ok()?;
        let report = self.pool(d.server).login_report()?;
        Some((d.server, report))
    }

    /// Transaction pooling: take a connection to `server` from its pool (a live idle one, or a new
    /// one opened in a free slot), waiting in line up to `pool.checkout_timeout`.
    pub(super) async fn checkout(&mut self, server: usize) -> Result<(), BackendError> {
        self.checkout_any(server, &[]).await.map(|_| ())
    }

    /// Transaction pooling: [`Relay::checkout`] for a read that `others` may serve as well as
    /// `first`. When `first`'s pool has no connection free, the read waits in all their lines
    /// at once and takes the first connection served (one line for the replicas: two lines of
    /// waiting reads leave one replica's connection idle while the other's line waits). Returns
    /// the server the connection is to.
    pub(super) async fn checkout_any(
        &mut self,
        first: usize,
        others: &[usize],
    ) -> Result<usize, BackendError> {
        let (servers, pools) = lines::gather(first, others, |s| self.pool(s));
        loop {
            let (i, got) = lines::wait(&self.ctx.balancer, &servers, &pools).await;
            let server = servers[i];
            match got {
                Err(t) => {
                    tracing::warn!(cluster = %self.ctx.name, server, "{t}");
                    return Err(BackendError::PoolExhausted(t.to_string()));
                }
                Ok(Checkout::Idle(mut b, lease)) => {
                    if b.conn.poll_idle().is_err() {
                        // Died while pooled: its slot frees with the lease; try again.
                        drop(lease);
                        close_conn(&self.ctx, server, b);
                        continue;
                    }
                    self.attach(server, b, Some(lease));
                    return Ok(server);
                }
                Ok(Checkout::Open(lease)) => {
                    let b = self.open(server).await?;
                    pools[i].note_login(true, || b.conn.params.as_slice().into());
                    self.attach(server, b, Some(lease));
                    return Ok(server);
                }
            }
        }
    }

    /// The other replicas a read routed to `d.server` may take a pooled connection from instead
    /// when `d.server`'s pool has none free: none unless the read is free to go to any replica
    /// (transaction pooling, no connection held, no transaction, pin or unsynced batch, and no
    /// read-your-writes position that only `d.server` was checked against).
    pub(super) fn line_mates(&self, d: &Decision) -> SmallVec<[usize; 4]> {
        // Field checks and the pool's ready flag first: on the common path (a connection free)
        // nothing else is looked at.
        let tied = !self.pooling()
            || d.route != Route::Replica
            || self.backends[d.server].is_some()
            || self.txn.is_some()
            || self.pinned.is_some()
            || self.bound.is_some()
            || self.unsynced;
        if tied
            || self.pool_ready(d.server)
            || !lines::any_replica_will_do(
                self.consistency(),
                self.wrote,
                self.causal_lsn.is_some() || self.causal_since.is_some(),
            )
        {
            return SmallVec::new();
        }
        let (topo, cfg) = (self.topology(), self.ctx.config());
        lines::mates(&topo, &cfg.routing, &self.excluded, d.server, |i| {
            self.backends[i].is_some()
        })
    }

    /// Transaction pooling: give back every connection the session does not need now (it is idle
    /// outside a transaction; a pinned server stays). Connections carrying too many prepared
    /// statements are closed instead.
    pub(super) fn release_idle(&mut self) {
        if !self.pooling() || !self.inflight.is_empty() || self.unsynced || self.txn.is_some() {
            return;
        }
        let pinned = self.pinned.map(|p| p.0);
        for server in 0..self.backends.len() {
            if Some(server) != pinned {
                self.give_back(server);
            }
        }
    }

    /// Detach `server`'s connection and pool it (or close it when it may not be pooled).
    fn give_back(&mut self, server: usize) {
        let Some(b) = self.backends.get_mut(server).and_then(Option::take) else {
            return;
        };
        self.ctx.balancer.connection_closed(server);
        if self.bound == Some(server) {
            self.bound = None;
        }
        let lease = self.leases.get_mut(server).and_then(Option::take);
        let max = self.ctx.config().pool.max_prepared_statements;
        match lease {
            Some(lease) if b.state.statements.len() <= max => {
                if let Err(b) = lease.give_back(b) {
                    close_conn(&self.ctx, server, b);
                }
            }
            _ => close_conn(&self.ctx, server, b),
        }
    }

    /// Session end: pool what is clean (transaction pooling), close the rest.
    pub(super) fn release_all(&mut self) {
        let clean =
            self.inflight.is_empty() && !self.unsynced && self.txn.is_none() && !self.copy_in;
        if self.pooling() && clean {
            let pinned = self.pinned.map(|p| p.0);
            for server in 0..self.backends.len() {
                if Some(server) != pinned {
                    self.give_back(server);
                }
            }
        }
        for server in 0..self.backends.len() {
            self.drop_backend(server);
        }
    }
}
