//! The relay loop of one MySQL client: one command at a time, routed by its SQL (or by its prepared
//! statement), session state replayed on every server used, answers forwarded packet by packet;
//! server connections owned by the session or, in transaction pooling, borrowed per transaction.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{MyClient, MyError};
use super::login::{login, MyLogin};
use super::stmt::{ServerStmts, StmtRegistry};
use crate::backend::mysql::{MysqlBackendError, MysqlConn, MysqlLogin};
use crate::classify::mysql_diag::diag_use;
use crate::classify::{Classification, Intent, Reason, RouteOverride};
use crate::config::Consistency;
use crate::failover::gate::Pass;
use crate::frontend::cluster::ClusterCtx;
use crate::listener::Peer;
use crate::metrics::{ErrorKind, Route, RouteReason, SessionMetrics};
use crate::pool::Lease;
use crate::router::{choose, decide_ready, Choice, Decision, RouteError, Want};
use crate::tls::ClientStream;
use crate::topology::{Role, Topology};
use crate::wire::mysql::command::*;
use crate::wire::mysql::packet::{status, Packet};
use crate::wire::mysql::status::ok_packet;

/// A server connection as a session uses it (and as a pool keeps it between sessions).
pub struct MyBackend {
    /// Boxed: moved in and out of its pool on every transaction (a pointer, not the stream).
    pub(super) conn: Box<MysqlConn>,
    /// How many history commands of the session the connection has applied...
    pub(super) applied: usize,
    /// ... and their hash chain ([`pooled::chain`]): tells whether they are a prefix of the
    /// history of the session that holds the connection now.
    pub(super) applied_hash: u64,
    /// COM_RESET_CONNECTION does not undo everything applied (a default database change,
    /// COM_SET_OPTION): a reset must replace the connection instead.
    pub(super) reset_unsafe: bool,
    pub(super) stmts: ServerStmts,
    /// A GTID position this server is known to have applied (from a causal wait).
    pub(super) replayed_gtid: Option<String>,
    /// The server status a ping answered right after login (`init_connect` included).
    pub(super) initial_status: Option<u16>,
    /// A session setting committed a transaction here implicitly and no statement ran since:
    /// the server still applies that transaction's READ ONLY / isolation to the next
    /// statement, so a session that takes the connection from the pool runs `ROLLBACK` first (a
    /// transaction end resets them; a statement without tables does not).
    pub(super) carry_over: bool,
}

/// A session-state command replayed on every server the session uses.
#[derive(Debug, Clone)]
pub(super) enum History {
    /// A command packet payload (COM_QUERY with SET/USE..., COM_INIT_DB, COM_SET_OPTION).
    Command(Vec<u8>),
}

pub(super) struct Relay {
    pub ctx: Arc<ClusterCtx>,
    pub client: MyClient,
    pub login: MyLogin,
    /// Hash of the login's pool-relevant parts ([`Relay::login_hash`]), kept with `login`.
    pub login_key: u64,
    pub backends: crate::frontend::slots::Slots<MyBackend>,
    pub history: Vec<History>,
    /// `history_hashes[i]` = [`pooled::chain`] over `history[..=i]`.
    pub history_hashes: Vec<u64>,
    /// Transaction pooling: the pool slot of each connection in `backends`.
    pub leases: crate::frontend::slots::Slots<Lease<MyBackend>>,
    /// Transaction pooling: the pool of each server this session used (looked up in the
    /// cluster's map once, again only when a reload retired it).
    pub pools: crate::frontend::slots::Slots<Arc<crate::pool::Pool<MyBackend>>>,
    /// Transaction pooling, as the cluster was configured when the session started.
    pub pooled: bool,
    /// Waits for the cluster's drain ([`ClusterCtx::drain_wait`]).
    pub drain: crate::drain::DrainWait,
    /// A command was written and its answer is not complete yet.
    pub busy: bool,
    /// A command failed with autocommit off: whether a transaction is open is unknown until the
    /// next answer with a status (the connections stay with the session until then).
    pub unsure: bool,
    pub txn: Option<usize>,
    /// The open transaction's `START TRANSACTION` and savepoint commands (see `ro_txn`).
    pub txn_log: Vec<Vec<u8>>,
    pub autocommit: bool,
    /// Whether a server starts a session with autocommit on (`init_connect`, the global
    /// setting), learned from the first server connection the session gets.
    pub default_autocommit: Option<bool>,
    pub status: u16,
    pub pinned: Option<(usize, Reason)>,
    /// Counts this session in `switchyard_pinned_sessions` while it is pinned.
    pub pin_gauge: Option<crate::metrics::PinGuard>,
    /// The id the session's last id-generating statement reported (its OK packet), for
    /// `SELECT LAST_INSERT_ID()` in transaction pooling.
    pub last_insert_id: u64,
    pub route_override: RouteOverride,
    pub last_used: Option<usize>,
    pub stmts: StmtRegistry,
    /// Open cursors: client statement id -> (server, server statement id).
    pub cursors: HashMap<u32, (usize, u32)>,
    pub excluded: Vec<usize>,
    pub database: Option<String>,
    /// The session's own consistency (`SET @switchyard_consistency`); `None` follows the
    /// cluster's setting, which a reload may change.
    pub consistency: Option<Consistency>,
    /// The session wrote on the primary since its last causal wait.
    pub wrote: bool,
    /// The primary GTID position the session's reads must see (read_your_writes).
    pub causal_gtid: Option<String>,
    /// Read_your_writes after a write whose position is not learned yet: when the session's
    /// first read after it arrived. See `causal.rs`.
    pub causal_since: Option<std::time::Instant>,
    pub stats: SessionMetrics,
    /// Held while the session has work on the primary (until it is outside a transaction
    /// again); a switchover waits for every pass to come back.
    pub gate_pass: Option<Pass>,
    /// Held while the session has any work in flight; `POST /api/pause` waits for every pass.
    pub pause_pass: Option<Pass>,
    /// `SET @switchyard_debug = 1`: each routing decision is logged.
    pub debug: bool,
    /// Where the session's diagnostics and last insert id are ([`diag`]).
    diag: diag::Diag,
    /// The session's `wait_timeout` as it `SET` it: idle that long, the session ends, as on the
    /// server (`None`: the server's default, not enforced by the proxy).
    pub wait_timeout: Option<Duration>,
    /// A session setting just committed the transaction on this server implicitly (`SET
    /// autocommit = 1`): the next statement runs there too (see `exec.rs` `after`).
    pub after_implicit_commit: Option<usize>,
}

/// Serve one accepted MySQL client connection to its end.
///
/// The session runs in a box of its own: the task that accepts a client is sized for the
/// session of either protocol, and a MySQL session's state machine is the larger one; inline,
/// every PostgreSQL client would carry its size too.
pub fn serve_mysql_client(
    ctx: Arc<ClusterCtx>,
    stream: ClientStream,
    peer: Peer,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(serve(ctx, stream, peer))
}

async fn serve(ctx: Arc<ClusterCtx>, stream: ClientStream, peer: Peer) {
    let local = stream.is_unix();
    let mut client = MyClient::new(stream, peer, ctx.limits().max_message_size);
    let logged = tokio::time::timeout(
        ctx.limits().client_login_timeout,
        login(
            &mut client,
            &ctx.name,
            &ctx.users(),
            &ctx.mysql,
            ctx.mysql.next_connection_id(),
            ctx.config().tls.for_client(local),
        ),
    )
    .await
    .unwrap_or_else(|_| {
        Err(MyError::new(1159, "08S01", "login timed out", ErrorKind::Timeout).fatal())
    });
    let login = match logged {
        Ok(l) => l,
        Err(e) => return report(&ctx, &mut client, e).await,
    };
    let gauge = ctx.metrics.client_gauge(&ctx.name);
    gauge.inc();
    let servers = ctx.config().servers.len();
    let database = login.database.clone();
    let mut relay = Relay {
        ctx: ctx.clone(),
        client,
        login_key: Relay::login_hash(&login),
        login,
        backends: crate::frontend::slots::Slots::new(servers),
        history: Vec::new(),
        history_hashes: Vec::new(),
        leases: crate::frontend::slots::Slots::new(servers),
        pools: crate::frontend::slots::Slots::new(servers),
        pooled: ctx.config().pool.mode == crate::config::PoolMode::Transaction,
        drain: ctx.drain_wait(),
        busy: false,
        unsure: false,
        txn: None,
        txn_log: Vec::new(),
        autocommit: true,
        default_autocommit: None,
        status: status::AUTOCOMMIT,
        pinned: None,
        pin_gauge: None,
        last_insert_id: 0,
        route_override: RouteOverride::Auto,
        last_used: None,
        stmts: StmtRegistry::default(),
        cursors: HashMap::new(),
        excluded: Vec::new(),
        database,
        consistency: None,
        wrote: false,
        causal_gtid: None,
        causal_since: None,
        stats: SessionMetrics::new(ctx.metrics.clone(), &ctx.name),
        gate_pass: None,
        pause_pass: None,
        debug: false,
        diag: diag::Diag::default(),
        wait_timeout: None,
        after_implicit_commit: None,
    };
    let r = match relay.start().await {
        Ok(()) => relay.run().await,
        Err(e) => Err(e),
    };
    relay.release_all();
    gauge.dec();
    if let Err(e) = r {
        report(&ctx, &mut relay.client, e).await;
    }
}

async fn report(ctx: &ClusterCtx, client: &mut MyClient, e: MyError) {
    if e.gone {
        tracing::debug!(cluster = %ctx.name, "mysql client disconnected");
        return;
    }
    ctx.metrics.error(&ctx.name, e.kind);
    tracing::info!(cluster = %ctx.name, code = e.code, kind = e.kind.as_str(), "closing mysql client: {}", e.message);
    client.queue(&e.payload());
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
}

impl Relay {
    pub(super) fn topology(&self) -> Arc<Topology> {
        self.ctx.topology.borrow().clone()
    }

    /// Connect a first server (a replica if one is usable) so that a bad database or a down
    /// cluster is reported at login, then tell the client it is in. With transaction pooling,
    /// once a connection of the session's pool has logged in, that proves the login.
    async fn start(&mut self) -> Result<(), MyError> {
        self.ctx.wait_for_topology().await;
        if let Some(server) = self.pooled_start() {
            self.last_used = Some(server);
            self.client.queue(&ok_packet(0, 0, self.status, 0, ""));
            return self.client.flush().await;
        }
        let want = Want::Replica(RouteReason::Class(Reason::Session));
        for _ in 0..self.backends.len().max(1) {
            let d = self.route(want).map_err(|e| {
                MyError::new(
                    1105,
                    "HY000",
                    format!("switchyard: {e}"),
                    ErrorKind::NoServer,
                )
                .fatal()
            })?;
            match self.connect(d.server).await {
                Ok(()) => {
                    // A pooled connection warmed before any session used the pool proves the
                    // login too (a connection opened for it has just said so).
                    if let Some(pool) = &self.pools[d.server] {
                        pool.note_login(false, || Arc::from([]));
                    }
                    self.last_used = Some(d.server);
                    self.excluded.clear();
                    self.release_idle();
                    self.client.queue(&ok_packet(0, 0, self.status, 0, ""));
                    return self.client.flush().await;
                }
                Err(MysqlBackendError::Server(e, _)) => {
                    let kind = if pooled::is_pool_timeout(&e) {
                        ErrorKind::PoolTimeout
                    } else {
                        ErrorKind::BackendConnect
                    };
                    return Err(MyError {
                        code: e.code,
                        state: e.sqlstate.into(),
                        message: e.message,
                        kind,
                        fatal: true,
                        gone: false,
                    });
                }
                Err(e) => {
                    tracing::warn!(cluster = %self.ctx.name, server = d.server, error = %e, "mysql server connect failed");
                    self.excluded.push(d.server);
                }
            }
        }
        Err(MyError::new(
            1105,
            "HY000",
            "switchyard: could not connect to any server",
            ErrorKind::BackendConnect,
        )
        .fatal())
    }

    /// With transaction pooling a read prefers a replica whose pool can serve it now.
    pub(super) fn route(&self, want: Want) -> Result<Decision, RouteError> {
        let pooling = self.pooling();
        decide_ready(
            want,
            &self.topology(),
            &self.ctx.config().routing,
            &self.ctx.balancer,
            &self.excluded,
            |i| !pooling || self.pool_ready(i),
        )
    }

    /// Whether the session's pool for server `i` would serve a checkout now (a hint).
    pub(super) fn pool_ready(&self, i: usize) -> bool {
        self.pools
            .ready(i, || self.ctx.my_pools.ready(&self.pool_key(i)))
    }

    /// Give the session a connection to `server`: from its pool (transaction pooling) or a new
    /// one of its own.
    pub(super) async fn connect(&mut self, server: usize) -> Result<(), MysqlBackendError> {
        if self.pooling() {
            return self.checkout(server).await;
        }
        let b = self.open(server).await?;
        self.attach(server, b, None);
        Ok(())
    }

    /// Open and authenticate a new connection to `server`. A pooled one logs in to the login
    /// database (its pool's); the session's later database change is replayed like any setting.
    pub(super) async fn open(&mut self, server: usize) -> Result<MyBackend, MysqlBackendError> {
        let user = &self.login.user.config;
        let database = if self.pooling() {
            self.login.database.as_deref()
        } else {
            self.database.as_deref()
        };
        let login = MysqlLogin {
            user: &user.backend_user,
            password: user.backend_password.as_deref(),
            database,
            charset: self.login.charset,
            capabilities: self.login.capabilities,
        };
        // Boxed: the connect-and-login state machine is large and rarely runs; inline, it would
        // be part of every session's task allocation (PostgreSQL sessions' too: they share it).
        Box::pin(pooled::open_backend(&self.ctx, server, login)).await
    }

    fn attach(&mut self, server: usize, b: MyBackend, lease: Option<Lease<MyBackend>>) {
        self.ctx.balancer.connection_opened(server);
        if self.default_autocommit.is_none() {
            if let Some(s) = b.initial_status {
                let on = s & status::AUTOCOMMIT != 0;
                self.default_autocommit = Some(on);
                if !on && self.history.is_empty() && self.txn.is_none() {
                    // Servers start sessions with autocommit off: every statement is in a
                    // transaction, which the primary holds (fail closed).
                    self.autocommit = false;
                    self.status &= !status::AUTOCOMMIT;
                }
            }
        }
        self.backends[server] = Some(b);
        self.leases[server] = lease;
    }

    pub(super) fn drop_backend(&mut self, server: usize) {
        if let Some(b) = self.backends.get_mut(server).and_then(Option::take) {
            let name = &self.ctx.config().servers[server].name;
            self.ctx.metrics.backend_gauge(&self.ctx.name, name).dec();
            self.ctx.balancer.connection_closed(server);
            tokio::spawn(b.conn.quit());
        }
        self.diag_detached(server);
        // The slot (transaction pooling) frees with the lease.
        if let Some(l) = self.leases.get_mut(server) {
            *l = None;
        }
        if self.last_used == Some(server) {
            self.last_used = None;
        }
        self.cursors.retain(|_, c| c.0 != server);
    }

    async fn run(&mut self) -> Result<(), MyError> {
        let mut active = Instant::now();
        loop {
            self.client.flush().await?;
            let idle = self.txn.is_none();
            let hold = self.diag_deadline();
            let held = until(hold);
            let timed_out = until(self.wait_timeout.map(|t| active + t));
            let p = tokio::select! {
                biased; // no RNG draw per wait: the client first, then the drain
                p = self.client.read_packet() => p?,
                () = held => {
                    self.diag_expired();
                    continue;
                }
                () = timed_out => {
                    // What the server does at its wait_timeout: close, without a word.
                    tracing::debug!(cluster = %self.ctx.name, "mysql session idle past its wait_timeout: closed");
                    return Ok(());
                }
                _ = &mut self.drain, if idle => {
                    tracing::debug!(cluster = %self.ctx.name, "draining: closing an idle session");
                    let e = MyError::new(1053, "08S01", "switchyard is shutting down", ErrorKind::ClientProtocol);
                    self.client.queue(&e.payload());
                    let _ = self.client.flush().await;
                    return Ok(());
                }
            };
            // `--busy-poll`: a request came, and the session is busy until it is answered.
            let _busy = self.ctx.busy_poll.as_ref().map(|bp| {
                bp.kick();
                bp.busy()
            });
            let Some(&cmd) = p.payload.first() else {
                return Err(MyError::protocol("empty command packet"));
            };
            let started = Instant::now();
            let sql = match cmd {
                COM_QUERY | COM_STMT_PREPARE => p.payload.get(1..),
                COM_STMT_EXECUTE => stmt_id(&p.payload)
                    .and_then(|id| self.stmts.get(id))
                    .map(|s| &s.sql[..]),
                _ => None,
            };
            let now = sql.map(diag_use).unwrap_or_default();
            self.diag_next(cmd, now);
            match cmd {
                COM_QUIT => return Ok(()),
                COM_PING => self.local_ok(),
                COM_QUERY => {
                    let text = crate::wire::text(&p.payload[1..]);
                    if self.answer_row_count(&text)
                        || self.insert_id_local() && self.answer_insert_id(&text)
                    {
                        self.diag_answered_locally();
                        continue;
                    }
                    let class = self.ctx.classifier().classify(&text);
                    if let Intent::ProxyRoute(o) = class.intent {
                        self.route_override = o;
                        self.local_ok();
                        continue;
                    }
                    // `@@socket` names the proxy's socket (the config is loaded only when the
                    // text has an `@@` at all).
                    let rewritten = if text.contains("@@") {
                        socket_var::rewrite(&text, self.ctx.config().listen_socket.as_deref())
                    } else {
                        None
                    };
                    let p = match rewritten {
                        Some(sql) => {
                            let mut payload = Vec::with_capacity(sql.len() + 1);
                            payload.push(COM_QUERY);
                            payload.extend_from_slice(sql.as_bytes());
                            Packet::new(0, payload.into())
                        }
                        None => p,
                    };
                    self.command(p, class, started).await?;
                }
                COM_INIT_DB | COM_SET_OPTION => {
                    let class = Classification {
                        intent: Intent::SessionSet,
                        reason: Reason::Session,
                        hint: None,
                    };
                    self.command(p, class, started).await?;
                }
                COM_FIELD_LIST | COM_STATISTICS => {
                    let class = Classification {
                        intent: Intent::TxnControl,
                        reason: Reason::Read,
                        hint: None,
                    };
                    self.command(p, class, started).await?;
                }
                COM_STMT_PREPARE => self.prepare(p, started).await?,
                COM_STMT_EXECUTE => self.execute(p, started).await?,
                COM_STMT_FETCH => self.fetch(p, started).await?,
                COM_STMT_SEND_LONG_DATA => self.long_data(p),
                COM_STMT_CLOSE => self.close_stmt(p).await,
                COM_STMT_RESET => self.reset_stmt(p).await?,
                COM_RESET_CONNECTION => self.reset_connection(p, started).await?,
                COM_CHANGE_USER => self.change_user(p).await?,
                other => {
                    let e = MyError::new(
                        1047,
                        "08S01",
                        format!(
                            "switchyard: command {} is not supported",
                            command_name(other)
                        ),
                        ErrorKind::ClientProtocol,
                    );
                    self.ctx.metrics.error(&self.ctx.name, e.kind);
                    self.client.queue(&e.payload());
                }
            }
            self.release_idle();
            active = Instant::now();
        }
    }

    pub(super) fn local_ok(&mut self) {
        self.client.queue(&ok_packet(0, 0, self.status, 0, ""));
    }

    /// Where a command of this class goes now.
    pub(super) fn target_for(&self, class: Classification) -> Result<Decision, RouteError> {
        let topo = self.topology();
        if let Some(t) = self.txn {
            return Ok(fixed(t, &topo, RouteReason::InTransaction));
        }
        if let Some((p, _)) = self.pinned {
            return Ok(fixed(p, &topo, RouteReason::Pinned));
        }
        if let Some(s) = self
            .after_implicit_commit
            .filter(|&s| self.backends[s].is_some())
        {
            return Ok(fixed(s, &topo, RouteReason::InTransaction));
        }
        if let Some(d) = self.diag_target(class) {
            // It reads what a connection the session holds has (the previous statement's
            // diagnostics, the last insert id).
            return Ok(d);
        }
        if !self.autocommit && class.intent != Intent::SessionSet {
            // autocommit=0: every statement opens or continues a transaction (a SAVEPOINT
            // too), which the primary holds; reads there too, so that none starts a snapshot
            // on a replica.
            return self.route(Want::Primary(RouteReason::InTransaction));
        }
        match choose(class, self.route_override) {
            Choice::Want(want) => self.route(want),
            Choice::Anywhere(reason) => {
                let usable = |l: usize| {
                    self.backends[l].is_some() && topo.servers.get(l).is_some_and(|s| !s.fenced)
                };
                if let Some(l) = self.last_used.filter(|&l| usable(l)) {
                    return Ok(fixed(l, &topo, reason));
                }
                self.route(Want::Replica(reason))
            }
        }
    }
}

/// Sleeps until `deadline`; never ends without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

pub(super) fn fixed(server: usize, topo: &Topology, reason: RouteReason) -> Decision {
    let route = match topo.servers.get(server).map(|s| s.role) {
        Some(Role::Replica) => Route::Replica,
        _ => Route::Primary,
    };
    Decision {
        server,
        route,
        reason,
    }
}

#[path = "answer.rs"]
mod answer;
#[path = "causal.rs"]
mod causal;
#[path = "change_user.rs"]
mod change_user;
#[path = "diag.rs"]
mod diag;
#[path = "exec.rs"]
mod exec;
#[path = "insert_id.rs"]
mod insert_id;
#[path = "pooled.rs"]
pub mod pooled;
#[path = "ro_txn.rs"]
mod ro_txn;
#[path = "socket_var.rs"]
mod socket_var;
#[path = "stmt_exec.rs"]
mod stmt_exec;
