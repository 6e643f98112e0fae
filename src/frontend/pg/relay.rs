//! The relay loop of one PostgreSQL client: batches client messages up to a sync point, routes each
//! batch, keeps session state on every backend it uses, and forwards server answers back.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::cancel::{CancelSlot, ServerKey};
use super::session::{ClientConn, ClientError};
use super::state::{self, analyse, BackendState, BatchInfo, Prepared};
use crate::backend::pg::{BackendConn, BackendError, Login};
use crate::classify::{Classification, Intent, Reason, RouteOverride};
use crate::config::Consistency;
use crate::failover::gate::Pass;
use crate::frontend::cluster::ClusterCtx;
use crate::frontend::users::UserAuth;
use crate::metrics::{ErrorKind, Route, RouteReason, SessionMetrics};
use crate::pool::{Lease, LoginReport};
use crate::router::{choose, decide_ready, Choice, Decision, RouteError, Want};
use crate::topology::Topology;
use crate::wire::pg::frame::Frame;
use crate::wire::pg::msg;
use crate::wire::pg::startup::StartupParams;

/// Batches bigger than this are dispatched before their Sync arrives.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Flush the client write buffer once it holds this much.
const CLIENT_FLUSH_BYTES: usize = 64 << 10;

/// A server connection as a session uses it (and as a pool keeps it between sessions).
pub struct Backend {
    /// Boxed: a backend moves in and out of its pool on every transaction, and the stream
    /// (with its TLS state) is large; moving a pointer is cheaper than copying it.
    conn: Box<BackendConn>,
    state: BackendState,
    /// A WAL position this server is known to have replayed (from a causal check).
    replayed: u64,
}

/// One dispatched batch awaiting its answers.
struct InFlight {
    syncs: usize,
    swallow: usize,
    /// Answers to a pipelined BEGIN still to come (and to be swallowed) before the batch's own.
    begin: u8,
    saw_error: bool,
    session_texts: Vec<String>,
    route: Route,
    started: Instant,
    /// Kept while no answer arrived, so a read can be retried on another replica.
    retry: Option<Vec<Frame>>,
    /// A replica refused the batch's serializable mode: its answers are dropped and the batch
    /// runs again (see `isolation.rs`).
    rerun: bool,
    /// Parses and Closes (injected and the client's) the server has not answered yet.
    pending: std::collections::VecDeque<state::Pending>,
}

enum Event {
    Client(Result<(), ClientError>),
    Backend(usize, Result<(), BackendError>),
    /// SIGTERM: the proxy is draining (only idle sessions wait for it).
    Drain,
    /// The session was idle past its `idle_session_timeout`.
    IdleTimeout,
}

pub struct Relay {
    ctx: Arc<ClusterCtx>,
    client: ClientConn,
    user: Arc<UserAuth>,
    params: Vec<(String, String)>,
    backends: crate::frontend::slots::Slots<Backend>,
    prepared: HashMap<Vec<u8>, Prepared>,
    history: Vec<String>,
    /// `history_hashes[i]` = [`state::chain`] over `history[..=i]`.
    history_hashes: Vec<u64>,
    /// Transaction pooling: the pool slot of each connection in `backends`.
    leases: crate::frontend::slots::Slots<Lease<Backend>>,
    /// Transaction pooling: the pool of each server this session used (looked up in the
    /// cluster's map once, again only when a reload retired it).
    pools: crate::frontend::slots::Slots<Arc<crate::pool::Pool<Backend>>>,
    /// Transaction pooling, as the cluster was configured when the session started.
    pooled: bool,
    /// Transaction pooling: the backend login (user + startup parameters) hashed, for pool keys.
    login_key: u64,
    txn: Option<usize>,
    /// The client's BEGIN was answered by the proxy and goes with the next request.
    deferred_begin: bool,
    status: u8,
    pinned: Option<(usize, Reason)>,
    /// Counts this session in `switchyard_pinned_sessions` while it is pinned.
    pin_gauge: Option<crate::metrics::PinGuard>,
    route_override: RouteOverride,
    bound: Option<usize>,
    last_used: Option<usize>,
    inflight: VecDeque<InFlight>,
    unsynced: bool,
    copy_in: bool,
    batch: Vec<Frame>,
    /// A multi-frame batch joined for one write; kept between batches (see `dispatch::send`).
    joined: BytesMut,
    batch_bytes: usize,
    batch_ready: bool,
    excluded: Vec<usize>,
    cancel_key: (i32, i32),
    cancel_slot: CancelSlot,
    /// Metric handles this session already looked up (the hot path then only increments).
    stats: SessionMetrics,
    /// Read consistency of this session (cluster default, startup option or SET).
    /// The session's own consistency (`SET switchyard.consistency`); `None` follows the
    /// cluster's setting, which a reload may change.
    consistency: Option<Consistency>,
    /// The session wrote on the primary since its last causal check.
    wrote: bool,
    /// The primary WAL position the session's reads must see (read_your_writes).
    causal_lsn: Option<u64>,
    /// Read_your_writes after a write whose position is not learned yet: when the session's
    /// first read after it arrived (every write was answered by then). See `causal.rs`.
    causal_since: Option<std::time::Instant>,
    /// Held from the first request on the primary until the session is idle again outside a
    /// transaction; a switchover waits for every pass to come back.
    gate_pass: Option<Pass>,
    /// Held while the session has any work in flight; `POST /api/pause` waits for every pass.
    pause_pass: Option<Pass>,
    /// `SET switchyard.debug = on`: each routing decision is logged and sent as a NOTICE.
    debug: bool,
    /// Waits for the cluster's drain ([`ClusterCtx::drain_wait`]).
    drain: crate::drain::DrainWait,
    /// `--busy-poll`: counts the session while it waits for a server's answer.
    busy: Option<crate::busy_poll::Busy>,
    /// Whether the session's transactions are serializable (then its reads need the primary).
    isolation: isolation::Isolation,
    /// The session's `idle_session_timeout` and idle clock.
    idle_limit: Option<Box<idle::IdleLimit>>,
    /// A server sent the client an unasked error (its FATAL before it closes).
    told_fatal: bool,
    /// A read-only transaction on a replica that may still move to the primary (`relocate.rs`).
    ro_txn: Option<Box<relocate::ReadOnlyTxn>>,
}

impl Relay {
    pub fn new(
        ctx: Arc<ClusterCtx>,
        client: ClientConn,
        user: Arc<UserAuth>,
        startup: StartupParams,
    ) -> Self {
        let (cancel_key, cancel_slot) = ctx.cancels.register();
        let drain = ctx.drain_wait();
        let servers = ctx.config().servers.len();
        let pooled = ctx.config().pool.mode == crate::config::PoolMode::Transaction;
        let consistency = startup.get("options").and_then(consistency_setting);
        let stats = SessionMetrics::new(ctx.metrics.clone(), &ctx.name);
        let debug = startup
            .get("options")
            .and_then(debug_setting)
            .unwrap_or(false);
        let mut params = startup.params;
        if !params.iter().any(|(k, _)| k == "database") {
            params.push(("database".into(), user.config.name.clone()));
        }
        let login_key = pooled::login_hash(&user.config.backend_user, &params);
        let isolation = isolation::Isolation::new(&params);
        let idle_limit = idle::IdleLimit::new(&params);
        let mut relay = Relay {
            ctx,
            client,
            user,
            params,
            backends: crate::frontend::slots::Slots::new(servers),
            prepared: HashMap::new(),
            history: Vec::new(),
            history_hashes: Vec::new(),
            leases: crate::frontend::slots::Slots::new(servers),
            pools: crate::frontend::slots::Slots::new(servers),
            pooled,
            login_key: 0,
            txn: None,
            deferred_begin: false,
            status: b'I',
            pinned: None,
            pin_gauge: None,
            route_override: RouteOverride::Auto,
            bound: None,
            last_used: None,
            // One batch in flight is the rule (a pipeline grows it): a first push would
            // otherwise reserve four entries that every idle session then keeps.
            inflight: VecDeque::with_capacity(1),
            unsynced: false,
            copy_in: false,
            batch: Vec::new(),
            joined: BytesMut::new(),
            batch_bytes: 0,
            batch_ready: false,
            excluded: Vec::new(),
            cancel_key,
            cancel_slot,
            stats,
            consistency,
            wrote: false,
            causal_lsn: None,
            causal_since: None,
            gate_pass: None,
            pause_pass: None,
            debug,
            drain,
            busy: None,
            isolation,
            idle_limit,
            told_fatal: false,
            ro_txn: None,
        };
        relay.login_key = login_key;
        relay
    }

    pub fn into_client(mut self) -> ClientConn {
        self.ctx.cancels.unregister(self.cancel_key);
        self.release_all();
        let dummy = std::mem::take(&mut self.backends);
        drop(dummy);
        // `Relay` implements no Drop, so moving the client out is fine.
        self.client
    }

    fn count(&mut self, route: Route, reason: RouteReason) {
        self.stats.routed(route, reason);
    }

    fn observe(&mut self, route: Route, seconds: f64) {
        self.stats.observe(route, seconds);
    }

    fn topology(&self) -> Arc<Topology> {
        self.ctx.topology.borrow().clone()
    }

    /// Connect the first backend (with transaction pooling, only until a connection of the pool
    /// has logged in), greet the client, then relay until the client leaves.
    pub async fn start_and_run(&mut self) -> Result<(), ClientError> {
        self.ctx.wait_for_topology().await;
        let (first, params) = match self.pooled_greeting() {
            Some(known) => known,
            None => {
                let first = self.connect_first().await?;
                let params: LoginReport = self.backends[first]
                    .as_ref()
                    .map_or_else(|| Arc::from([]), |b| b.conn.params.as_slice().into());
                // A pooled connection warmed before any session used the pool: its login report
                // (a connection opened for this login has just noted its own).
                if let Some(pool) = &self.pools[first] {
                    pool.note_login(false, || params.clone());
                }
                (first, params)
            }
        };
        let key = self.cancel_key;
        let mut greeting = BytesMut::new();
        for (k, v) in params.iter() {
            greeting.extend_from_slice(&msg::parameter_status(k, v));
        }
        greeting.extend_from_slice(&msg::backend_key_data(key.0, key.1));
        greeting.extend_from_slice(&msg::ready_for_query(b'I'));
        self.client.queue(&greeting);
        self.client.flush().await?;
        self.last_used = Some(first);
        self.release_idle();
        let gauge = self.ctx.metrics.client_gauge(&self.ctx.name);
        gauge.inc();
        let r = self.run().await;
        gauge.dec();
        r
    }

    async fn connect_first(&mut self) -> Result<usize, ClientError> {
        let want = Want::Replica(RouteReason::Class(Reason::Session));
        let mut last: Option<String> = None;
        for _ in 0..self.ctx.config().servers.len().max(1) {
            let d = self.route(want).map_err(|e| {
                // Say why the servers tried before were given up, not only that none is left.
                let why = last
                    .as_deref()
                    .map(|l| format!(" (last error: {l})"))
                    .unwrap_or_default();
                ClientError::fatal(
                    "08006",
                    format!("cannot serve the session: {e}{why}"),
                    ErrorKind::NoServer,
                )
            })?;
            match self.connect(d.server).await {
                Ok(()) => return Ok(d.server),
                Err(BackendError::Server(f, raw)) => {
                    // The server refused this login (unknown database, role...): tell the client as is.
                    tracing::info!(cluster = %self.ctx.name, code = %f.code, "server refused login: {}", f.message);
                    self.client.queue(&raw);
                    let _ = self.client.flush().await;
                    return Err(ClientError::gone());
                }
                Err(e) => {
                    tracing::warn!(cluster = %self.ctx.name, server = d.server, error = %e, "backend connect failed");
                    last = Some(e.to_string());
                    self.excluded.push(d.server);
                }
            }
        }
        Err(ClientError::fatal(
            "08006",
            "could not connect to any server",
            ErrorKind::BackendConnect,
        ))
    }

    /// Whether the session's pool for server `i` would serve a checkout now (a hint).
    fn pool_ready(&self, i: usize) -> bool {
        self.pools
            .ready(i, || self.ctx.pg_pools.ready(&self.pool_key(i)))
    }

    /// Give the session a connection to `server`: from its pool (transaction pooling) or a new
    /// one of its own.
    async fn connect(&mut self, server: usize) -> Result<(), BackendError> {
        if self.pooling() {
            return self.checkout(server).await;
        }
        let b = self.open(server).await?;
        self.attach(server, b, None);
        Ok(())
    }

    /// Open and authenticate a new connection to `server`.
    async fn open(&mut self, server: usize) -> Result<Backend, BackendError> {
        // Boxed: the connect-and-login state machine is large and rarely runs (pooled sessions
        // reuse connections); inline, it would be part of every session's task allocation.
        Box::pin(pooled::open_backend(
            &self.ctx,
            server,
            &self.user.config,
            &self.params,
        ))
        .await
    }

    fn attach(&mut self, server: usize, b: Backend, lease: Option<Lease<Backend>>) {
        self.ctx.balancer.connection_opened(server);
        self.backends[server] = Some(b);
        self.leases[server] = lease;
    }

    fn drop_backend(&mut self, server: usize) {
        if let Some(b) = self.backends.get_mut(server).and_then(Option::take) {
            let name = &self.ctx.config().servers[server].name;
            self.ctx.metrics.backend_gauge(&self.ctx.name, name).dec();
            self.ctx.balancer.connection_closed(server);
            tokio::spawn(b.conn.terminate());
        }
        // The slot (transaction pooling) frees with the lease.
        if let Some(l) = self.leases.get_mut(server) {
            *l = None;
        }
        if self.bound == Some(server) {
            self.bound = None;
        }
        if self.last_used == Some(server) {
            self.last_used = None;
        }
    }

    /// Nothing in flight, no transaction, nothing buffered: the session may end or be paused.
    fn idle(&self) -> bool {
        // A session whose BEGIN the proxy answered is in a transaction as its client sees it.
        self.txn.is_none()
            && !self.deferred_begin
            && self.inflight.is_empty()
            && !self.unsynced
            && !self.copy_in
            && self.batch.is_empty()
    }

    async fn run(&mut self) -> Result<(), ClientError> {
        loop {
            while !self.holding() {
                let Some(f) = self.client.buffered_frame()? else {
                    break;
                };
                if !self.on_client_frame(f).await? {
                    return Ok(());
                }
            }
            if !self.batch.is_empty() {
                // A request a cancel may now be for, even before it reaches a server.
                self.cancel_slot.lock().start();
            }
            self.maybe_dispatch().await?;
            if let Some(b) = self.bound {
                self.drain_backend(b).await?;
                if self.bound.is_none() {
                    continue;
                }
            }
            // A batch to run again (`isolation.rs`) is ready with nothing in flight, even while
            // the session holds its transaction's server.
            if self.batch_ready && (self.bound.is_none() || self.inflight.is_empty()) {
                continue;
            }
            self.client.flush().await?;
            if self.inflight.is_empty() && self.batch.is_empty() {
                self.cancel_slot.lock().idle();
            }
            self.count_busy();
            let idle = self.idle();
            let deadline = self.idle_limit.as_mut().and_then(|l| l.deadline(idle));
            let event = match deadline {
                None => self.wait().await,
                // Boxed, and only with a deadline: a timer is large, and most sessions never
                // set one (the session task stays small).
                Some(d) => Box::pin(tokio::time::timeout_at(d.into(), self.wait()))
                    .await
                    .unwrap_or(Event::IdleTimeout),
            };
            match event {
                Event::Client(r) => r?,
                Event::Backend(b, Ok(())) => {
                    if self.bound != Some(b) {
                        self.drain_idle(b).await?;
                    }
                }
                Event::Backend(b, Err(e)) => self.backend_failed(b, e).await?,
                Event::IdleTimeout => {
                    // Sent as the session closes, as the server sends it.
                    return Err(idle::timed_out());
                }
                Event::Drain => {
                    // Only an idle session waits for the drain (see `wait`), and one that
                    // becomes idle after it started gets it at once: close it.
                    tracing::debug!(cluster = %self.ctx.name, "draining: closing an idle session");
                    let e = ClientError::fatal(
                        "57P01",
                        "terminating connection: switchyard is shutting down",
                        ErrorKind::ClientProtocol,
                    );
                    self.client.queue(&e.to_message());
                    let _ = self.client.flush().await;
                    return Ok(());
                }
            }
        }
    }

    /// `--busy-poll`: the session counts as busy while it waits for a server's answer.
    fn count_busy(&mut self) {
        if let Some(bp) = &self.ctx.busy_poll {
            match (self.inflight.is_empty(), self.busy.is_some()) {
                (false, false) => self.busy = Some(bp.busy()),
                (true, true) => self.busy = None,
                _ => {}
            }
        }
    }

    /// A complete batch waits for a different server than the one busy with this session.
    fn holding(&self) -> bool {
        self.batch_ready
    }

    async fn wait(&mut self) -> Event {
        let watch = self.bound.or(self.pinned.map(|(s, _)| s));
        let read_client = !self.holding();
        // Draining closes idle sessions only: a busy one waits for the drain again once it is
        // idle (the token's future is ready at once when the drain began meanwhile).
        let watch_drain = self.idle();
        let Relay {
            client,
            backends,
            drain,
            ..
        } = self;
        let backend =
            watch.and_then(|i| backends.get_mut(i).and_then(Option::as_mut).map(|b| (i, b)));
        let backend_fut = async {
            match backend {
                Some((i, b)) => (i, b.conn.fill().await),
                None => std::future::pending().await,
            }
        };
        let client_fut = async {
            if read_client {
                client.fill().await
            } else {
                std::future::pending().await
            }
        };
        // `biased`: polled in this order, no random start (a thread-local RNG draw per wait);
        // the server's answer first, then the client, then the drain.
        tokio::select! {
            biased;
            (i, r) = backend_fut => Event::Backend(i, r),
            r = client_fut => Event::Client(r),
            _ = &mut *drain, if watch_drain => Event::Drain,
        }
    }

    /// Handle one client frame. Returns false when the client said Terminate.
    async fn on_client_frame(&mut self, f: Frame) -> Result<bool, ClientError> {
        if let Some(bp) = &self.ctx.busy_poll {
            bp.kick();
        }
        if let Some(l) = self.idle_limit.as_mut() {
            l.active();
        }
        if self.copy_in && matches!(f.tag, b'd' | b'c' | b'f' | b'S' | b'H') {
            if f.tag == b'S' {
                if let Some(fl) = self.inflight.back_mut() {
                    fl.syncs += 1;
                }
            }
            if let Some(b) = self.bound {
                if let Some(be) = self.backends[b].as_mut() {
                    if let Err(e) = be.conn.write_all(&f.raw).await {
                        self.backend_failed(b, e).await?;
                    }
                }
            }
            return Ok(true);
        }
        match f.tag {
            b'X' => return Ok(false),
            b'd' | b'c' | b'f' => return Ok(true), // stray copy messages are ignored, as the server does
            _ => {}
        }
        self.batch_bytes += f.raw.len();
        let complete = matches!(f.tag, b'Q' | b'S' | b'F' | b'H');
        self.batch.push(f);
        if complete || self.batch_bytes > MAX_BATCH_BYTES {
            self.batch_ready = true;
        }
        Ok(true)
    }

    async fn maybe_dispatch(&mut self) -> Result<(), ClientError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if !self.batch_ready {
            // The client paused without Sync (e.g. COPY via Bind/Execute): send what must go to the
            // primary or to the open transaction now, so the server can answer.
            if self.client.has_buffered_bytes() || !self.batch.iter().any(|f| f.tag == b'E') {
                return Ok(());
            }
            let info = analyse(&self.batch, &self.ctx.classifier.load(), &self.prepared);
            let strong = info.class.is_some_and(|c| {
                matches!(
                    c.intent,
                    Intent::Write | Intent::Pin | Intent::Begin { read_only: false }
                )
            });
            if !(strong || self.txn.is_some() || self.deferred_begin || self.bound.is_some()) {
                return Ok(());
            }
        }
        let frames = std::mem::take(&mut self.batch);
        // `load` (not `classifier()`): no reference count bump on the Arc every session shares.
        let info = analyse(&frames, &self.ctx.classifier.load(), &self.prepared);
        let target = self.target_for(&info);
        if let Some(b) = self.bound {
            let switching = target.as_ref().map(|t| t.server) != Ok(b);
            // A read that must first be checked against its replica (read-your-writes, global)
            // or moved to the primary (strong) waits too, even for the busy server itself:
            // `causal_route` does nothing while a request is in flight on the session, and
            // whatever is in flight (a Close, say) was never checked against the session's last
            // write.
            let unchecked = target
                .as_ref()
                .is_ok_and(|t| self.needs_causal_route(t, &info));
            if (switching || unchecked) && !self.unsynced && self.txn != Some(b) {
                // Wait for the busy server to finish before switching.
                self.batch = frames;
                self.batch_ready = true;
                return Ok(());
            }
        }
        self.batch_bytes = 0;
        self.batch_ready = false;
        self.dispatch(frames, info, target).await
    }
}

#[path = "answers.rs"]
mod answers;
#[path = "begin.rs"]
mod begin;
#[path = "causal.rs"]
mod causal;
#[path = "dispatch.rs"]
mod dispatch;
#[path = "idle.rs"]
mod idle;
#[path = "isolation.rs"]
mod isolation;
#[path = "pooled.rs"]
pub mod pooled;
#[path = "relocate.rs"]
mod relocate;
#[path = "route.rs"]
mod route;

pub use crate::frontend::settings::{consistency_setting, debug_setting};
use route::{fixed, local_answer};
