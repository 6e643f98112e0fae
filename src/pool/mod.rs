//! Server connection pools for transaction pooling: bounded, fair (first come, first served)
//! checkout under a deadline, last-in-first-out reuse of idle connections, idle and lifetime limits.
//!
//! A [`Pool`] counts every connection it allowed to exist (idle + leased + being opened) and never
//! lets that exceed its size. [`Pool::checkout`] hands out an idle connection, or a [`Lease`] to
//! open a new one, or queues the caller; a connection given back ([`Pool::checkin`]) or closed
//! (dropping its lease) goes straight to the longest waiter. [`Pools`] maps keys to pools.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{Histogram, IntCounter, IntGauge};

use crate::config::PoolConfig;

mod line;

pub use line::checkout_first;
use line::{Grant, Place};

/// Metric handles of one pool (looked up once when the pool is made).
#[derive(Debug, Clone)]
pub struct PoolGauges {
    pub idle: IntGauge,
    pub in_use: IntGauge,
    pub waiting: IntGauge,
    pub size: IntGauge,
    pub checkout_seconds: Histogram,
    pub timeouts: IntCounter,
}

/// A pool's use right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    pub user: String,
    pub size: usize,
    pub idle: usize,
    pub in_use: usize,
    pub waiting: usize,
}

/// What a checkout got.
pub enum Checkout<C: Send + 'static> {
    /// A pooled connection, ready to use (still the caller's to check for liveness).
    Idle(C, Lease<C>),
    /// Room for a new connection: open it and keep the lease with it.
    Open(Lease<C>),
}

/// The right to one connection slot of a pool. Dropping it (without [`Pool::checkin`]) frees the
/// slot: the connection counts as closed.
pub struct Lease<C: Send + 'static> {
    pool: Arc<Pool<C>>,
    born: Instant,
    done: bool,
}

impl<C: Send + 'static> std::fmt::Debug for Lease<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("born", &self.born).finish()
    }
}

impl<C: Send + 'static> Lease<C> {
    /// Give `conn` back to the pool this lease came from (which a reload may have retired or
    /// resized since); see [`Pool::checkin`].
    pub fn give_back(self, conn: C) -> Result<(), C> {
        let pool = self.pool.clone();
        pool.checkin(conn, self)
    }
}

impl<C: Send + 'static> Drop for Lease<C> {
    fn drop(&mut self) {
        if !self.done {
            self.pool.slot_freed();
        }
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
    born: Instant,
}

/// Opening one connection in the background; `None` when that failed (it logs why).
pub type Opening<C> = Pin<Box<dyn Future<Output = Option<C>> + Send>>;

/// How a pool opens warm connections (to keep `min_idle`) and closes one it cannot keep.
pub struct Warmer<C> {
    /// Open one connection.
    pub open: Arc<dyn Fn() -> Opening<C> + Send + Sync>,
    /// Close a connection politely.
    pub close: Arc<dyn Fn(C) + Send + Sync>,
}

impl<C> Clone for Warmer<C> {
    fn clone(&self) -> Self {
        Warmer {
            open: self.open.clone(),
            close: self.close.clone(),
        }
    }
}

struct State<C: Send + 'static> {
    /// Size and limits; a reload may change them ([`Pool::reconfigure`]).
    cfg: PoolConfig,
    idle: Vec<Idle<C>>,
    /// Idle + leased + being opened (may exceed `cfg.size` for a while after a shrink).
    total: usize,
    /// Places in line, first come first served; some may be dead (their checkout was served by
    /// another pool's line or gave up) until they are passed over or swept out.
    waiters: VecDeque<Place<C>>,
    /// Live places in `waiters`: checkouts waiting on this pool.
    waiting: usize,
    /// Connections being opened in the background to keep `min_idle`.
    warming: usize,
}

/// What a server reported when a connection logged in: (name, value) pairs (PostgreSQL's
/// ParameterStatus; empty for MySQL, whose greeting is the proxy's own).
pub type LoginReport = Arc<[(String, String)]>;

/// One pool of interchangeable connections.
pub struct Pool<C: Send + 'static> {
    /// The backend user the pool's connections log in as (for reports).
    user: String,
    state: Mutex<State<C>>,
    gauges: PoolGauges,
    /// How to open a warm connection (set by whoever made the pool; none = no warming).
    opener: Mutex<Option<Warmer<C>>>,
    /// Retired by a reload (its server was removed or moved): nothing is pooled again. Set
    /// under the state lock; read without it by sessions that keep the pools they used.
    retired: AtomicBool,
    /// A checkout would be served at once (an idle connection, or room and nobody in line), as
    /// of the last change; read without the lock by routing that prefers such a pool.
    ready: AtomicBool,
    /// What the server reported when one of the pool's connections last logged in (PostgreSQL:
    /// its ParameterStatus pairs; MySQL: nothing): a client logging in with the pool's login is
    /// greeted with it and needs no connection until its first request. None until a login.
    login_report: Mutex<Option<LoginReport>>,
}

/// A checkout that found neither a connection nor room within `checkout_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no server connection became free within {0:?} (pool size {1})")]
pub struct CheckoutTimeout(pub Duration, pub usize);

impl<C: Send + 'static> Pool<C> {
    pub fn new(cfg: PoolConfig, gauges: PoolGauges, user: &str) -> Arc<Self> {
        gauges.size.set(i64::try_from(cfg.size).unwrap_or(i64::MAX));
        Arc::new(Pool {
            user: user.to_owned(),
            state: Mutex::new(State {
                cfg,
                idle: Vec::new(),
                total: 0,
                waiters: VecDeque::new(),
                waiting: 0,
                warming: 0,
            }),
            gauges,
            opener: Mutex::new(None),
            retired: AtomicBool::new(false),
            ready: AtomicBool::new(true),
            login_report: Mutex::new(None),
        })
    }

    /// Connections that exist or are being opened (never more than the size).
    pub fn total(&self) -> usize {
        self.state.lock().total
    }

    /// Retired by a reload: look the pool up again (a new one serves the key).
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Whether a checkout would be served now, without waiting in line (a hint: another session
    /// may take the connection first, and then this one waits as usual).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// What a connection of this pool reported at its login, if one has logged in.
    pub fn login_report(&self) -> Option<LoginReport> {
        self.login_report.lock().clone()
    }

    /// Keep what a connection reported at login. `fresh`: it has just logged in (the report
    /// replaces an older one, e.g. from before a server upgrade); else it is kept only if the
    /// pool has none (a connection warmed before any session used the pool).
    pub fn note_login(&self, fresh: bool, report: impl FnOnce() -> LoginReport) {
        let mut have = self.login_report.lock();
        if fresh || have.is_none() {
            *have = Some(report());
        }
    }

    /// Whether a checkout waits in line now (a connection given back would go to it).
    pub fn has_waiters(&self) -> bool {
        self.state.lock().waiting > 0
    }

    pub fn idle(&self) -> usize {
        self.state.lock().idle.len()
    }

    pub fn stats(&self) -> PoolStats {
        let st = self.state.lock();
        PoolStats {
            user: self.user.clone(),
            size: st.cfg.size,
            idle: st.idle.len(),
            in_use: st.total.saturating_sub(st.idle.len()),
            waiting: st.waiting,
        }
    }

    /// An idle connection, room for a new one, or (after waiting in line) whichever comes first.
    pub async fn checkout(self: &Arc<Self>) -> Checked<C> {
        checkout_first(std::slice::from_ref(self)).await.1
    }

    /// An idle connection or room for one now; else `place` joins the line (and `None`).
    fn take_or_join(self: &Arc<Self>, place: impl FnOnce() -> Place<C>) -> Option<Checkout<C>> {
        let mut st = self.state.lock();
        let got = if let Some(i) = st.idle.pop() {
            Some(Checkout::Idle(i.conn, self.lease(i.born)))
        } else if st.total < st.cfg.size {
            st.total += 1;
            Some(Checkout::Open(self.lease(Instant::now())))
        } else {
            // Dead places are swept out once they outnumber the live ones (amortised).
            if st.waiters.len() >= 2 * st.waiting + 8 {
                st.waiters.retain(Place::is_waiting);
            }
            st.waiters.push_back(place());
            st.waiting += 1;
            None
        };
        self.update(&st);
        got
    }

    /// How long a checkout waits in line, and the pool size (for the timeout's message).
    fn wait_limits(&self) -> (Duration, usize) {
        let st = self.state.lock();
        (st.cfg.checkout_timeout, st.cfg.size)
    }

    fn waited(&self, took: Duration) {
        self.gauges.checkout_seconds.observe(took.as_secs_f64());
    }

    fn timed_out(&self) {
        self.gauges.timeouts.inc();
    }

    /// Serve the first live place in line with `grant`; the grant comes back when nobody waits.
    fn serve_line(st: &mut State<C>, mut grant: Grant<C>) -> Result<(), Grant<C>> {
        while let Some(place) = st.waiters.pop_front() {
            match place.serve(grant) {
                Ok(()) => {
                    st.waiting = st.waiting.saturating_sub(1);
                    return Ok(());
                }
                Err(g) => grant = g,
            }
        }
        Err(grant)
    }

    /// A grant its checkout did not take (it gave up meanwhile): the connection or room goes
    /// to the next in line, or back to the pool.
    fn hand_back(self: &Arc<Self>, grant: Grant<C>) {
        match grant {
            // Refused (too old, pool shrank or retired): its slot is freed, the connection
            // is just dropped.
            Grant::Conn(conn, born) => drop(self.checkin(conn, self.lease(born))),
            Grant::Open => drop(self.lease(Instant::now())),
        }
    }

    /// Give a healthy, idle connection back. One past `max_lifetime` is closed instead (returned
    /// as `Err` for the caller to close politely).
    pub fn checkin(&self, conn: C, mut lease: Lease<C>) -> Result<(), C> {
        lease.done = true;
        let born = lease.born;
        drop(lease);
        let now = Instant::now();
        let mut st = self.state.lock();
        let too_old = st
            .cfg
            .max_lifetime
            .is_some_and(|m| now.saturating_duration_since(born) >= m);
        if too_old || self.is_retired() || st.total > st.cfg.size {
            // Past its lifetime, or the pool shrank or was retired by a reload: close it.
            drop(st);
            self.slot_freed();
            return Err(conn);
        }
        if let Err(Grant::Conn(conn, born)) = Self::serve_line(&mut st, Grant::Conn(conn, born)) {
            st.idle.push(Idle {
                conn,
                since: now,
                born,
            });
        }
        self.update(&st);
        Ok(())
    }

    /// Apply new limits (a reload). A larger size lets waiters open connections at once; a
    /// smaller one closes idle connections over it now (returned for the caller to close) and
    /// leased ones as they come back.
    pub fn reconfigure(&self, cfg: PoolConfig) -> Vec<C> {
        let mut st = self.state.lock();
        self.gauges
            .size
            .set(i64::try_from(cfg.size).unwrap_or(i64::MAX));
        st.cfg = cfg;
        let mut closed = Vec::new();
        while st.total > st.cfg.size {
            let Some(i) = st.idle.pop() else { break };
            st.total -= 1;
            closed.push(i.conn);
        }
        while st.total < st.cfg.size && Self::serve_line(&mut st, Grant::Open).is_ok() {
            st.total += 1;
        }
        self.update(&st);
        closed
    }

    /// Stop pooling (a reload removed or moved the pool's server): idle connections are
    /// returned for the caller to close, leased ones are closed when given back, and waiters
    /// may open connections (the caller removes the pool from its map first, so they go on
    /// to a fresh pool the next time).
    pub fn retire(&self) -> Vec<C> {
        let mut st = self.state.lock();
        self.retired.store(true, Ordering::Release);
        let idle = std::mem::take(&mut st.idle);
        st.total -= idle.len();
        self.update(&st);
        idle.into_iter().map(|i| i.conn).collect()
    }

    /// Idle connections past `max_lifetime`, or past `idle_timeout` while the pool has more
    /// than `min_idle`, taken out of the pool (their slots freed) for the caller to close.
    pub fn reap(&self, now: Instant) -> Vec<C> {
        let mut st = self.state.lock();
        let idle_limit = st.cfg.idle_timeout;
        let life_limit = st.cfg.max_lifetime;
        let min_idle = st.cfg.min_idle;
        let mut spare = st.idle.len().saturating_sub(min_idle);
        let mut old = Vec::new();
        let mut keep = Vec::new();
        // Oldest-idle first (the vector is last-in-first-out), so warm ones stay.
        for i in std::mem::take(&mut st.idle) {
            let too_old = life_limit.is_some_and(|l| now.saturating_duration_since(i.born) >= l);
            let idle_long = idle_limit.is_some_and(|l| now.saturating_duration_since(i.since) >= l);
            if too_old || (idle_long && spare > 0) {
                spare = spare.saturating_sub(1);
                old.push(i.conn);
            } else {
                keep.push(i);
            }
        }
        st.idle = keep;
        st.total -= old.len();
        self.update(&st);
        old
    }

    /// Set how to open warm connections (the first caller wins).
    pub fn set_opener(&self, opener: Warmer<C>) {
        let mut o = self.opener.lock();
        if o.is_none() {
            *o = Some(opener);
        }
    }

    /// Open connections in the background until `min_idle` are idle (or being opened), within
    /// the size and only while nobody waits (waiters get slots first).
    pub fn warm(self: &Arc<Self>) {
        let Some(opener) = self.opener.lock().clone() else {
            return;
        };
        let mut st = self.state.lock();
        while !self.is_retired()
            && st.waiting == 0
            && st.idle.len() + st.warming < st.cfg.min_idle
            && st.total < st.cfg.size
        {
            st.total += 1;
            st.warming += 1;
            let lease = self.lease(Instant::now());
            let (pool, warmer) = (self.clone(), opener.clone());
            tokio::spawn(async move {
                let conn = (warmer.open)().await;
                pool.state.lock().warming -= 1;
                match conn {
                    Some(c) => {
                        // Refused when the pool shrank or was retired meanwhile.
                        if let Err(c) = lease.give_back(c) {
                            (warmer.close)(c);
                        }
                    }
                    None => drop(lease),
                }
            });
        }
        self.update(&st);
    }

    fn lease(self: &Arc<Self>, born: Instant) -> Lease<C> {
        Lease {
            pool: self.clone(),
            born,
            done: false,
        }
    }

    /// A slot was freed (connection closed or never opened): the longest waiter may open one.
    fn slot_freed(&self) {
        let mut st = self.state.lock();
        if st.total <= st.cfg.size && Self::serve_line(&mut st, Grant::Open).is_ok() {
            self.update(&st);
            return;
        }
        st.total = st.total.saturating_sub(1);
        self.update(&st);
    }

    fn update(&self, st: &State<C>) {
        let idle = st.idle.len();
        self.gauges.idle.set(idle as i64);
        self.gauges.in_use.set(st.total.saturating_sub(idle) as i64);
        self.gauges.waiting.set(st.waiting as i64);
        let ready = idle > 0 || (st.total < st.cfg.size && st.waiting == 0);
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// A checkout that joined this line left it without being served here (served by another
    /// line, timed out or dropped): its dead place is passed over or swept out later.
    fn leave_line(&self) {
        let mut st = self.state.lock();
        st.waiting = st.waiting.saturating_sub(1);
        self.update(&st);
    }
}

/// What a checkout comes to.
pub type Checked<C> = Result<Checkout<C>, CheckoutTimeout>;

/// Pools by key, made on first use. Routing looks a pool up for every read, so the map hashes
/// with foldhash (keys are server slots and login digests, not client input).
pub struct Pools<K, C: Send + 'static> {
    map: Mutex<HashMap<K, Arc<Pool<C>>, foldhash::fast::RandomState>>,
}

impl<K, C: Send + 'static> Default for Pools<K, C> {
    fn default() -> Self {
        Pools {
            map: Mutex::new(HashMap::default()),
        }
    }
}

impl<K, C: Send + 'static> std::fmt::Debug for Pools<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pools({})", self.map.lock().len())
    }
}

impl<K: Hash + Eq + Clone, C: Send + 'static> Pools<K, C> {
    /// The pool for `key`, made with `make` the first time.
    pub fn get(&self, key: &K, make: impl FnOnce() -> Arc<Pool<C>>) -> Arc<Pool<C>> {
        let mut m = self.map.lock();
        if let Some(p) = m.get(key) {
            return p.clone();
        }
        let p = make();
        m.insert(key.clone(), p.clone());
        p
    }

    /// Whether the pool for `key` would serve a checkout at once; with no such pool yet, yes (the
    /// first checkout makes it with room). Looks only, makes nothing.
    pub fn ready(&self, key: &K) -> bool {
        self.map.lock().get(key).is_none_or(|p| p.ready())
    }

    /// The connections of every pool that are idle or old past its limits, taken out of their
    /// pools (slots freed) for the caller to close.
    pub fn reap_all(&self, now: Instant) -> Vec<(K, C)> {
        self.all()
            .into_iter()
            .flat_map(|(k, p)| p.reap(now).into_iter().map(move |c| (k.clone(), c)))
            .collect()
    }

    /// Apply new limits (`cfg` of each pool's key) to every pool; returns the idle connections
    /// a shrink closed.
    pub fn reconfigure_all(&self, cfg: impl Fn(&K) -> PoolConfig) -> Vec<(K, C)> {
        self.all()
            .into_iter()
            .flat_map(|(k, p)| {
                p.reconfigure(cfg(&k))
                    .into_iter()
                    .map(move |c| (k.clone(), c))
            })
            .collect()
    }

    /// Take the pools whose key matches `pred` out of the map and retire them; returns their
    /// idle connections for the caller to close.
    pub fn retire_where(&self, pred: impl Fn(&K) -> bool) -> Vec<(K, C)> {
        let taken: Vec<(K, Arc<Pool<C>>)> = {
            let mut m = self.map.lock();
            let keys: Vec<K> = m.keys().filter(|k| pred(k)).cloned().collect();
            keys.into_iter()
                .filter_map(|k| m.remove(&k).map(|p| (k, p)))
                .collect()
        };
        taken
            .into_iter()
            .flat_map(|(k, p)| p.retire().into_iter().map(move |c| (k.clone(), c)))
            .collect()
    }

    /// Every pool (for reaping and reporting).
    pub fn all(&self) -> Vec<(K, Arc<Pool<C>>)> {
        self.map
            .lock()
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests;
