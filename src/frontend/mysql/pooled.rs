//! Transaction pooling for a MySQL session: server connections come from the cluster's pools when
//! a command needs them and go back whenever the session is idle outside a transaction and nothing
//! pins it; a connection whose protocol or transaction state is uncertain is closed, never pooled.
//!
//! A pool is keyed by (server, backend user, login database, charset, capabilities), so a pooled
//! connection always answers in the shape its next client negotiated. What a session changed since
//! login (its history) is replayed on the connection; when another session left different settings
//! the connection is first reset with COM_RESET_CONNECTION (see `exec::ensure_ready`). Prepared
//! statements stay on their connection, filed by text (see `stmt::ServerStmts`).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::*;
use smallvec::SmallVec;

use crate::backend::mysql::Consumed;
use crate::frontend::lines;
use crate::pool::{Checkout, Pool, Warmer};
use crate::wire::mysql::status::ErrInfo;

/// MySQL error code of a pool timeout (ER_CON_COUNT_ERROR, "Too many connections").
pub const POOL_TIMEOUT_CODE: u16 = 1040;
const POOL_TIMEOUT_PREFIX: &str = "switchyard: no server connection free";

/// Which pool a session's connections to one server come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MyPoolKey {
    pub server: usize,
    /// Backend user, login database, charset and capabilities, hashed.
    pub login: u64,
}

/// Hash chain over history commands: `chain(chain(0, a), b)` stands for `[a, b]`.
pub(super) fn chain(prev: u64, payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    prev.hash(&mut h);
    payload.hash(&mut h);
    h.finish()
}

/// The database a `USE db` statement (a COM_QUERY payload) switches to.
pub(super) fn use_database(payload: &[u8]) -> Option<String> {
    let rest = payload.strip_prefix(&[COM_QUERY])?;
    let text = String::from_utf8_lossy(rest);
    let text = text.trim().trim_end_matches(';').trim();
    let (word, name) = text.split_once(|c: char| c.is_ascii_whitespace() || c == '`')?;
    if !word.eq_ignore_ascii_case("use") {
        return None;
    }
    let name = if text.as_bytes().get(3) == Some(&b'`') {
        text[3..].trim()
    } else {
        name.trim()
    };
    let name = match name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) {
        Some(quoted) => quoted.replace("``", "`"),
        None => name.to_string(),
    };
    (!name.is_empty()).then_some(name)
}

/// Whether a history command changes what COM_RESET_CONNECTION leaves alone: the default
/// database (COM_INIT_DB, `USE`) or the multi-statement option (COM_SET_OPTION).
pub(super) fn reset_unsafe(payload: &[u8]) -> bool {
    matches!(payload.first(), Some(&COM_INIT_DB) | Some(&COM_SET_OPTION))
        || use_database(payload).is_some()
}

/// Whether a server error is our own pool timeout (reported as `ErrorKind::PoolTimeout`).
pub(super) fn is_pool_timeout(e: &ErrInfo) -> bool {
    e.code == POOL_TIMEOUT_CODE && e.message.starts_with(POOL_TIMEOUT_PREFIX)
}

/// Really close a server connection (not back to any pool).
pub(crate) fn close_conn(ctx: &ClusterCtx, server: usize, b: MyBackend) {
    if let Some(cfg) = ctx.config().servers.get(server) {
        ctx.metrics.backend_gauge(&ctx.name, &cfg.name).dec();
    }
    tokio::spawn(b.conn.quit());
}

/// Open and authenticate a new connection to `server` with `login` (a session's own, or a
/// pool's warm connection).
pub(crate) async fn open_backend(
    ctx: &ClusterCtx,
    server: usize,
    login: MysqlLogin<'_>,
) -> Result<MyBackend, MysqlBackendError> {
    let config = ctx.config();
    let Some(cfg) = config.servers.get(server) else {
        return Err(MysqlBackendError::Protocol(format!("no server #{server}")));
    };
    let limits = ctx.limits();
    let conn = MysqlConn::connect(
        cfg.endpoint(),
        crate::backend::ServerTlsTarget::new(&config.server_tls, &cfg.host),
        login,
        limits.max_message_size,
        limits.connect_timeout,
    )
    .await;
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            ctx.metrics.error(&ctx.name, ErrorKind::BackendConnect);
            return Err(e);
        }
    };
    let mut conn = Box::new(conn);
    // The login's OK predates `init_connect` (which may turn autocommit off): a ping's OK
    // reports the session state the server starts a client in.
    let pinged = tokio::time::timeout(
        limits.connect_timeout,
        conn.run_consumed(&[COM_PING], crate::wire::mysql::response::Expect::Simple),
    )
    .await
    .map_err(|_| MysqlBackendError::Timeout(limits.connect_timeout))?;
    let initial_status = match pinged {
        Ok(Consumed::Ok { status }) => status,
        Ok(Consumed::Err(e)) => {
            return Err(MysqlBackendError::Protocol(format!(
                "ping after login failed: {} {}",
                e.code, e.message
            )))
        }
        Err(e) => return Err(e),
    };
    ctx.mysql.note_server_version(&conn.server_version);
    ctx.metrics.backend_connected(&ctx.name, &cfg.name);
    ctx.metrics.backend_gauge(&ctx.name, &cfg.name).inc();
    Ok(MyBackend {
        carry_over: false,
        conn,
        initial_status,
        applied: 0,
        applied_hash: 0,
        reset_unsafe: false,
        stmts: ServerStmts::default(),
        replayed_gtid: None,
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

    /// What makes pooled connections interchangeable for a login: backend user, login database,
    /// charset and capabilities, hashed (once per login: the session keeps it as `login_key`).
    pub(super) fn login_hash(login: &MyLogin) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        login.user.config.backend_user.hash(&mut h);
        login.database.hash(&mut h);
        login.charset.hash(&mut h);
        login.capabilities.hash(&mut h);
        h.finish()
    }

    pub(super) fn pool_key(&self, server: usize) -> MyPoolKey {
        MyPoolKey {
            server,
            login: self.login_key,
        }
    }

    /// The pool of `server` this session used before, unless a reload retired it; else the
    /// cluster's (made on first use).
    fn pool(&mut self, server: usize) -> Arc<Pool<MyBackend>> {
        let cached = self.pools[server].take().filter(|p| !p.is_retired());
        let pool = cached.unwrap_or_else(|| {
            self.ctx.my_pools.get(&self.pool_key(server), || {
                let pool = self
                    .ctx
                    .new_pool(server, &self.login.user.config.backend_user);
                pool.set_opener(self.warmer(server));
                pool.warm();
                pool
            })
        });
        self.pools[server] = Some(pool.clone());
        pool
    }

    /// How the pool of `server` opens warm connections with this session's pool login.
    fn warmer(&self, server: usize) -> Warmer<MyBackend> {
        let user = self.login.user.clone();
        let database = self.login.database.clone();
        let (charset, capabilities) = (self.login.charset, self.login.capabilities);
        let open = move |ctx: Arc<ClusterCtx>| {
            let (user, database) = (user.clone(), database.clone());
            async move {
                let login = MysqlLogin {
                    user: &user.config.backend_user,
                    password: user.config.backend_password.as_deref(),
                    database: database.as_deref(),
                    charset,
                    capabilities,
                };
                open_backend(&ctx, server, login).await
            }
        };
        self.ctx.warmer(server, open, close_conn)
    }

    /// Transaction pooling: the server a new session starts on, when a connection of its pool has
    /// logged in with this session's login (user, database, charset, capabilities); the login is
    /// then answered without taking a connection (it never waits in line behind requests).
    pub(super) fn pooled_start(&mut self) -> Option<usize> {
        if !self.pooling() {
            return None;
        }
        let d = self
            .route(Want::Replica(RouteReason::Class(Reason::Session)))
            .ok()?;
        self.pool(d.server).login_report().map(|_| d.server)
    }

    /// Transaction pooling: take a connection to `server` from its pool (a live idle one, or a new
    /// one opened in a free slot), waiting in line up to `pool.checkout_timeout`. A timeout comes
    /// back as a server error that [`is_pool_timeout`] recognises.
    pub(super) async fn checkout(&mut self, server: usize) -> Result<(), MysqlBackendError> {
        self.checkout_any(server, &[]).await.map(|_| ())
    }

    /// Transaction pooling: [`Relay::checkout`] for a read that `others` may serve as well as
    /// `first`: when `first`'s pool has no connection free, it waits in all their lines at once
    /// and takes the first connection served (see `frontend::lines`). Returns its server.
    pub(super) async fn checkout_any(
        &mut self,
        first: usize,
        others: &[usize],
    ) -> Result<usize, MysqlBackendError> {
        let (servers, pools) = lines::gather(first, others, |s| self.pool(s));
        self.release_before_wait(&servers);
        loop {
            let (i, got) = lines::wait(&self.ctx.balancer, &servers, &pools).await;
            let server = servers[i];
            match got {
                Err(t) => {
                    tracing::warn!(cluster = %self.ctx.name, server, "{t}");
                    let info = ErrInfo {
                        code: POOL_TIMEOUT_CODE,
                        sqlstate: "08004".into(),
                        message: format!(
                            "{POOL_TIMEOUT_PREFIX} for server {}: {t}; retry",
                            self.ctx.config().servers[server].name
                        ),
                    };
                    return Err(MysqlBackendError::Server(info, bytes::Bytes::new()));
                }
                Ok(Checkout::Idle(mut b, lease)) => {
                    if b.conn.idle_ok().is_err() {
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
                    pools[i].note_login(true, || Arc::from([]));
                    self.attach(server, b, Some(lease));
                    return Ok(server);
                }
            }
        }
    }

    /// The other replicas a read routed to `d.server` may take a pooled connection from instead
    /// when `d.server`'s pool has none free: none unless the read is free to go to any replica
    /// (transaction pooling, no connection held, no transaction, pin or open cursor, and no
    /// read-your-writes position that only `d.server` was checked against).
    pub(super) fn line_mates(&self, d: &Decision) -> SmallVec<[usize; 4]> {
        // Field checks and the pool's ready flag first: on the common path (a connection free)
        // nothing else is looked at.
        let tied = !self.pooling()
            || d.route != Route::Replica
            || self.backends[d.server].is_some()
            || self.txn.is_some()
            || self.pinned.is_some()
            || !self.cursors.is_empty()
            || self.unsure;
        if tied
            || self.pool_ready(d.server)
            || !lines::any_replica_will_do(
                self.consistency(),
                self.wrote,
                self.causal_gtid.is_some(),
            )
        {
            return SmallVec::new();
        }
        let (topo, cfg) = (self.topology(), self.ctx.config());
        lines::mates(&topo, &cfg.routing, &self.excluded, d.server, |i| {
            self.backends[i].is_some()
        })
    }

    /// Servers the session must keep now: the pinned one, those with an open cursor, and one
    /// held for a diagnostics read (see `diag`).
    fn kept(&self, server: usize) -> bool {
        self.pinned.map(|p| p.0) == Some(server)
            || self.diag_held() == Some(server)
            || self.cursors.values().any(|c| c.0 == server)
    }

    /// Whether nothing is half done: no command mid-answer, no transaction (that we know of).
    fn settled(&self) -> bool {
        !self.busy && !self.unsure && self.txn.is_none()
    }

    /// Transaction pooling: give back every connection the session does not need now (it is idle
    /// outside a transaction; a pinned server and servers with an open cursor stay).
    pub(super) fn release_idle(&mut self) {
        if !self.pooling() || !self.settled() {
            return;
        }
        for server in 0..self.backends.len() {
            if !self.kept(server) {
                self.give_back(server);
            }
        }
    }

    /// Transaction pooling, before waiting in the lines of `servers`: give back the connections
    /// the session holds elsewhere and does not need (a diagnostics hold on another server ends:
    /// this command reads none there). A session never waits for one pool while holding a
    /// connection of another that it could give back: two sessions doing so, each holding what
    /// the other waits for, would stall both until the checkout timeout.
    fn release_before_wait(&mut self, servers: &[usize]) {
        if !self.pooling() || !self.settled() {
            return;
        }
        if self.diag_held().is_some_and(|s| !servers.contains(&s)) {
            self.diag.hold = None;
        }
        for server in 0..self.backends.len() {
            if !servers.contains(&server) && !self.kept(server) {
                self.give_back(server);
            }
        }
    }

    /// Transaction pooling: give back `server`'s connection now if the session does not need it
    /// and another session waits in its pool's line.
    pub(super) fn release_if_wanted(&mut self, server: usize) {
        if self.pooling() && self.backends[server].is_some() && self.pool(server).has_waiters() {
            self.release_one(server);
        }
    }

    /// Transaction pooling: give back one connection now if the session does not need it.
    pub(super) fn release_one(&mut self, server: usize) {
        if self.pooling() && self.settled() && !self.kept(server) {
            self.give_back(server);
        }
    }

    /// Detach `server`'s connection and pool it (or close it when it may not be pooled).
    fn give_back(&mut self, server: usize) {
        let Some(mut b) = self.backends.get_mut(server).and_then(Option::take) else {
            return;
        };
        if self.after_implicit_commit.take() == Some(server) {
            b.carry_over = true;
        }
        self.ctx.balancer.connection_closed(server);
        if self.last_used == Some(server) {
            self.last_used = None;
        }
        self.diag_detached(server);
        let lease = self.leases.get_mut(server).and_then(Option::take);
        let max = self.ctx.config().pool.max_prepared_statements;
        match lease {
            Some(lease) if b.stmts.len() <= max => {
                if let Err(b) = lease.give_back(b) {
                    close_conn(&self.ctx, server, b);
                }
            }
            _ => close_conn(&self.ctx, server, b),
        }
    }

    /// Session end (or COM_CHANGE_USER): pool what is clean (transaction pooling), close the rest
    /// (a command cut off mid-answer or an open transaction closes every connection).
    pub(super) fn release_all(&mut self) {
        if self.pooling() && self.settled() {
            for server in 0..self.backends.len() {
                if !self.kept(server) {
                    self.give_back(server);
                }
            }
        }
        for server in 0..self.backends.len() {
            self.drop_backend(server);
        }
        self.busy = false;
        self.unsure = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Vec<u8> {
        let mut p = vec![COM_QUERY];
        p.extend_from_slice(text.as_bytes());
        p
    }

    #[test]
    fn use_statements_are_recognised() {
        assert_eq!(use_database(&query("USE app")), Some("app".into()));
        assert_eq!(use_database(&query(" use `my db`; ")), Some("my db".into()));
        assert_eq!(use_database(&query("USE`x`")), Some("x".into()));
        assert_eq!(use_database(&query("SET @use = 1")), None);
        assert_eq!(use_database(&query("USER()")), None);
        assert!(reset_unsafe(&[COM_INIT_DB, b'a']));
        assert!(reset_unsafe(&[COM_SET_OPTION, 1, 0]));
        assert!(!reset_unsafe(&query("SET sql_mode = ''")));
    }

    #[test]
    fn chains_differ_by_order() {
        let ab = chain(chain(0, b"a"), b"b");
        let ba = chain(chain(0, b"b"), b"a");
        assert_ne!(ab, ba);
        assert_eq!(ab, chain(chain(0, b"a"), b"b"));
    }
}
