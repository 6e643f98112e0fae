//! Pure per-cluster monitor state: probe rounds in, hysteresis-filtered topology snapshots out.
//!
//! No sockets and no clocks: the caller passes each round's probe outcomes and the time, so the
//! rules are unit-tested with scripted histories.
//!
//! Rules:
//! - Health flips Up -> Down after `unhealthy_after` consecutive failed probes and Down -> Up after
//!   `healthy_after` consecutive good ones. Every server starts Down.
//! - The published role is the last probed role while the server is Up, `Unknown` while Down.
//! - A replica's lag is `Known` only when its latest probe succeeded, is at most three intervals
//!   old (three probe timeouts if the timeout is longer) and PostgreSQL reported the seconds; lag bytes additionally need the primary's current
//!   LSN from the same round. Otherwise `Lag::Unknown`, never zero.
//! - A MariaDB replica's `gtid_behind` (transactions behind) likewise needs both its own and the
//!   primary's GTID position from the same round; it is shown, not used for routing.
//! - Each server's replication state (`primary`, `healthy`, `lagging`, `unknown`, `broken`,
//!   `down`) comes from [`replica_state::Tracker`](crate::topology::replica_state::Tracker), fed
//!   one reading per round: lagging at once over a limit, healthy again only after
//!   `routing.lag_readmit_after` within the limits.
//! - The epoch bumps when the set of (server, role) changes; a snapshot is published only when
//!   something other than the probe timestamps changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ClusterConfig, ServerConfig};
use crate::position::gtid::gtid_behind;
use crate::topology::model::{Health, Lag, ReplicaState, Role, ServerMode, ServerState, Topology};
use crate::topology::probe_pg::ProbeResult;
use crate::topology::replica_state::{reason, AlertChange, LagPolicy, Reading, Tracker};

/// How many intervals a successful probe stays fresh enough to vouch for a replica's lag.
pub const STALE_INTERVALS: u32 = 3;

/// One probe's outcome and when it finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub at: Instant,
    /// The measurement, or the probe error as text.
    pub result: Result<ProbeResult, String>,
}

impl Observation {
    pub fn ok(at: Instant, r: ProbeResult) -> Self {
        Observation { at, result: Ok(r) }
    }
    pub fn failed(at: Instant, error: impl Into<String>) -> Self {
        Observation {
            at,
            result: Err(error.into()),
        }
    }
}

/// A change worth logging, produced by [`ClusterState::apply_round`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Health {
        server: String,
        from: Health,
        to: Health,
    },
    Role {
        server: String,
        from: Role,
        to: Role,
    },
    Epoch {
        epoch: u64,
    },
    /// The replication state changed (counted in `switchyard_replica_state_changes_total`).
    State {
        server: String,
        from: ReplicaState,
        to: ReplicaState,
        reason: &'static str,
        lag: Lag,
    },
    /// The lag crossed `routing.lag_alert` (`raised`) or stayed under it long enough (cleared).
    LagAlert {
        server: String,
        raised: bool,
        lag: Lag,
    },
}

/// What one round changed.
#[derive(Debug, Clone, Default)]
pub struct RoundUpdate {
    /// The new snapshot, when it differs from the previous one (besides probe timestamps).
    pub published: Option<Arc<Topology>>,
    pub events: Vec<Event>,
}

/// Static description of one server plus its hysteresis counters.
#[derive(Debug, Clone)]
struct Track {
    name: String,
    address: String,
    weight: u32,
    ok_streak: u32,
    fail_streak: u32,
    health: Health,
    /// Role of the last successful probe.
    probed_role: Role,
    /// Latest observation (successful or not).
    last: Option<Observation>,
    /// Finish time of the latest successful probe.
    last_ok_at: Option<Instant>,
    /// Replication state with its hysteresis.
    repl: Tracker,
    /// Fenced by failover.
    fenced: bool,
    /// Operator mode.
    mode: ServerMode,
}

/// The monitor's memory for one cluster.
#[derive(Debug, Clone)]
pub struct ClusterState {
    cluster: String,
    healthy_after: u32,
    unhealthy_after: u32,
    stale_after: Duration,
    policy: LagPolicy,
    tracks: Vec<Track>,
    epoch: u64,
    /// The failover phase shown in snapshots.
    phase: &'static str,
    current: Arc<Topology>,
}

impl Track {
    /// A server not probed yet: Down, unknown role and lag.
    fn fresh(s: &ServerConfig) -> Self {
        Track {
            name: s.name.clone(),
            address: s.address(),
            weight: s.weight,
            ok_streak: 0,
            fail_streak: 0,
            health: Health::Down,
            probed_role: Role::Unknown,
            last: None,
            last_ok_at: None,
            repl: Tracker::new(),
            fenced: false,
            mode: ServerMode::Enabled,
        }
    }
}

impl ClusterState {
    /// Every server starts Down with an unknown role and lag; epoch 0.
    pub fn new(cluster: &ClusterConfig) -> Self {
        let mon = &cluster.monitor;
        let tracks: Vec<Track> = cluster.servers.iter().map(Track::fresh).collect();
        let mut st = ClusterState {
            cluster: cluster.name.clone(),
            healthy_after: mon.healthy_after.max(1),
            unhealthy_after: mon.unhealthy_after.max(1),
            // A round lasts up to max(interval, timeout): a probe finished early in a slow round
            // must not count as stale when the round lands.
            stale_after: mon
                .interval
                .max(mon.timeout)
                .saturating_mul(STALE_INTERVALS),
            policy: LagPolicy::from_cluster(cluster),
            tracks,
            epoch: 0,
            phase: "idle",
            current: Arc::new(Topology {
                cluster: cluster.name.clone(),
                epoch: 0,
                servers: Vec::new(),
                failover: "idle",
            }),
        };
        let measured = st.measure(Instant::now(), None);
        let servers = st.build_servers(measured);
        st.current = Arc::new(Topology {
            cluster: st.cluster.clone(),
            epoch: 0,
            servers,
            failover: st.phase,
        });
        st
    }

    /// Apply a reloaded cluster config: thresholds, lag policy and the server slots
    /// (`cluster.servers`: the old slots in their order, new servers appended). A slot marked in
    /// `reset` (a server added back or moved to another address) or in `removed` (gone from the
    /// config) starts over, Down with an unknown role; a removed one stays in mode `Removed`
    /// (never routed to, never probed, never promoted). Others keep their state and take the new
    /// weight. Returns the new snapshot (epoch bumped) for the caller to publish.
    pub fn reconfigure(
        &mut self,
        cluster: &ClusterConfig,
        reset: &[bool],
        removed: &[bool],
    ) -> Arc<Topology> {
        let mon = &cluster.monitor;
        self.healthy_after = mon.healthy_after.max(1);
        self.unhealthy_after = mon.unhealthy_after.max(1);
        self.stale_after = mon
            .interval
            .max(mon.timeout)
            .saturating_mul(STALE_INTERVALS);
        self.policy = LagPolicy::from_cluster(cluster);
        let flag = |v: &[bool], i: usize| v.get(i).copied().unwrap_or(false);
        let mut kept = Vec::new();
        for (i, server) in cluster.servers.iter().enumerate() {
            let gone = flag(removed, i);
            match self.tracks.get_mut(i) {
                Some(t) if !flag(reset, i) && !gone && t.mode != ServerMode::Removed => {
                    t.name = server.name.clone();
                    t.weight = server.weight;
                    kept.push(i);
                }
                Some(t) => {
                    let fenced = t.fenced;
                    *t = Track::fresh(server);
                    // A fence outlives a reload: only an operator lifts it.
                    t.fenced = fenced && !gone;
                }
                None => self.tracks.push(Track::fresh(server)),
            }
            if let Some(t) = self.tracks.get_mut(i).filter(|_| gone) {
                t.mode = ServerMode::Removed;
            }
        }
        let measured = self.measure(Instant::now(), None);
        let mut servers = self.build_servers(measured);
        for i in kept {
            if let (Some(old), Some(new)) = (self.current.servers.get(i), servers.get_mut(i)) {
                // Keep this round's measurements (lag bytes are only known inside a round).
                *new = ServerState {
                    weight: new.weight,
                    name: new.name.clone(),
                    mode: new.mode,
                    ..old.clone()
                };
            }
        }
        self.epoch += 1;
        self.current = Arc::new(Topology {
            cluster: self.cluster.clone(),
            epoch: self.epoch,
            servers,
            failover: self.phase,
        });
        self.current.clone()
    }

    /// Whether slot `index` was removed by a reload (the monitor does not probe it).
    pub fn removed(&self, index: usize) -> bool {
        self.tracks
            .get(index)
            .is_some_and(|t| t.mode == ServerMode::Removed)
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> Arc<Topology> {
        self.current.clone()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Fence (or unfence) server `index`. Returns whether that changed anything; the change shows
    /// in the snapshot [`republish`](Self::republish) or the next round builds.
    pub fn set_fenced(&mut self, index: usize, fenced: bool) -> bool {
        match self.tracks.get_mut(index) {
            Some(t) if t.fenced != fenced => {
                t.fenced = fenced;
                true
            }
            _ => false,
        }
    }

    /// Set an operator mode; returns whether it changed. Shows in the next published snapshot.
    pub fn set_mode(&mut self, index: usize, mode: ServerMode) -> bool {
        match self.tracks.get_mut(index) {
            Some(t) if t.mode != mode && t.mode != ServerMode::Removed => {
                t.mode = mode;
                true
            }
            _ => false,
        }
    }

    /// Which servers are fenced, by index.
    pub fn fenced(&self) -> Vec<bool> {
        self.tracks.iter().map(|t| t.fenced).collect()
    }

    /// Set the failover phase shown in snapshots.
    pub fn set_phase(&mut self, phase: &'static str) {
        self.phase = phase;
    }

    /// Rebuild the current snapshot with the current fences and phase (measurements unchanged);
    /// bumps the epoch when the fences changed. Returns it when it differs from the published one.
    pub fn republish(&mut self) -> Option<Arc<Topology>> {
        let mut next = (*self.current).clone();
        for (s, t) in next.servers.iter_mut().zip(&self.tracks) {
            s.fenced = t.fenced;
            s.mode = t.mode;
            let (state, reason) = shown_state(t);
            s.state = state;
            s.state_reason = reason;
        }
        next.failover = self.phase;
        if fences_changed(&self.current, &next) {
            self.epoch += 1;
            next.epoch = self.epoch;
        }
        if *self.current == next {
            return None;
        }
        let arc = Arc::new(next);
        self.current = arc.clone();
        Some(arc)
    }

    /// Applies one round. `results[i]` belongs to the i-th configured server; `None` means the
    /// server was not probed this round (its counters stay, its data ages).
    pub fn apply_round(&mut self, results: Vec<Option<Observation>>, now: Instant) -> RoundUpdate {
        let mut events = Vec::new();
        let mut this_round = vec![false; self.tracks.len()];
        for (i, obs) in results.into_iter().enumerate() {
            let (Some(obs), Some(t)) = (obs, self.tracks.get_mut(i)) else {
                continue;
            };
            this_round[i] = true;
            let before = t.health;
            match &obs.result {
                Ok(r) => {
                    t.ok_streak = t.ok_streak.saturating_add(1);
                    t.fail_streak = 0;
                    t.probed_role = r.role;
                    t.last_ok_at = Some(obs.at);
                    if t.health == Health::Down && t.ok_streak >= self.healthy_after {
                        t.health = Health::Up;
                    }
                }
                Err(_) => {
                    t.fail_streak = t.fail_streak.saturating_add(1);
                    t.ok_streak = 0;
                    if t.health == Health::Up && t.fail_streak >= self.unhealthy_after {
                        t.health = Health::Down;
                    }
                }
            }
            t.last = Some(obs);
            if t.health != before {
                events.push(Event::Health {
                    server: t.name.clone(),
                    from: before,
                    to: t.health,
                });
            }
        }

        let primary = self.round_primary(&this_round);
        let measured = self.measure(now, Some((&this_round, primary)));
        for (t, m) in self.tracks.iter_mut().zip(&measured) {
            let step = t.repl.update(&m.reading, &self.policy, now);
            if let Some(tr) = step.transition {
                events.push(Event::State {
                    server: t.name.clone(),
                    from: tr.from,
                    to: tr.to,
                    reason: tr.reason,
                    lag: m.lag,
                });
            }
            if let Some(a) = step.alert {
                events.push(Event::LagAlert {
                    server: t.name.clone(),
                    raised: matches!(a, AlertChange::Raised { .. }),
                    lag: m.lag,
                });
            }
        }
        let servers = self.build_servers(measured);
        for (old, new) in self.current.servers.iter().zip(&servers) {
            if old.role != new.role {
                events.push(Event::Role {
                    server: new.name.clone(),
                    from: old.role,
                    to: new.role,
                });
            }
        }
        let roles_changed = self
            .current
            .servers
            .iter()
            .map(|s| s.role)
            .ne(servers.iter().map(|s| s.role));
        let mut next = Topology {
            cluster: self.cluster.clone(),
            epoch: self.epoch,
            servers,
            failover: self.phase,
        };
        if roles_changed || fences_changed(&self.current, &next) {
            self.epoch += 1;
            next.epoch = self.epoch;
            events.push(Event::Epoch { epoch: self.epoch });
        }
        let published = if same_ignoring_time(&self.current, &next) {
            None
        } else {
            let arc = Arc::new(next);
            self.current = arc.clone();
            Some(arc)
        };
        RoundUpdate { published, events }
    }

    /// The probe of the one server that probed as primary this round, if exactly one did.
    fn round_primary(&self, this_round: &[bool]) -> Option<&ProbeResult> {
        let mut found = None;
        for (t, fresh) in self.tracks.iter().zip(this_round) {
            if !fresh {
                continue;
            }
            if let Some(Observation { result: Ok(r), .. }) = &t.last {
                if r.role == Role::Primary {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(r);
                }
            }
        }
        found
    }

    /// This round's measurements per track. `round` is `None` for the initial snapshot.
    fn measure(
        &self,
        now: Instant,
        round: Option<(&[bool], Option<&ProbeResult>)>,
    ) -> Vec<Measured> {
        self.tracks
            .iter()
            .enumerate()
            .map(|(index, t)| {
                let up = t.health == Health::Up;
                let role = if up { t.probed_role } else { Role::Unknown };
                let last_ok = match &t.last {
                    Some(Observation { at, result: Ok(r) })
                        if now.saturating_duration_since(*at) <= self.stale_after =>
                    {
                        Some(r)
                    }
                    _ => None,
                };
                let in_round = round.is_some_and(|(fresh, _)| fresh.get(index) == Some(&true));
                let primary = round.and_then(|(_, p)| p);
                let primary_lsn = primary.and_then(|p| p.lsn);
                let primary_gtid = primary.and_then(|p| p.gtid.as_deref());
                let mut behind = None;
                let (replicating, lag, reading) = match (up, role, last_ok) {
                    (false, _, _) => (false, Lag::Unknown, Reading::Down(down_reason(t))),
                    (true, Role::Primary, _) => (false, Lag::Unknown, Reading::Primary),
                    (true, Role::Unknown, _) => (false, Lag::Unknown, Reading::RoleUnknown),
                    (true, Role::Replica, None) => (false, Lag::Unknown, Reading::Stale),
                    (true, Role::Replica, Some(r)) => {
                        let bytes = match (in_round, primary_lsn, r.lsn) {
                            (true, Some(p), Some(l)) => Some(p.saturating_sub(l)),
                            _ => None,
                        };
                        behind = match (in_round, primary_gtid, r.gtid.as_deref()) {
                            (true, Some(p), Some(g)) => gtid_behind(p, g),
                            _ => None,
                        };
                        let lag = match r.lag_seconds {
                            Some(seconds) => Lag::Known { seconds, bytes },
                            None => Lag::Unknown,
                        };
                        let reading = Reading::Replica {
                            streaming: r.streaming,
                            seconds: r.lag_seconds,
                            bytes,
                        };
                        (r.streaming, lag, reading)
                    }
                };
                Measured {
                    role,
                    replicating,
                    lag,
                    gtid_behind: behind,
                    reading,
                }
            })
            .collect()
    }

    /// Server states from the tracks and this round's measurements.
    fn build_servers(&self, measured: Vec<Measured>) -> Vec<ServerState> {
        self.tracks
            .iter()
            .zip(measured)
            .enumerate()
            .map(|(index, (t, m))| {
                let last_error = match &t.last {
                    Some(Observation { result: Err(e), .. }) => Some(e.clone()),
                    _ => None,
                };
                ServerState {
                    index,
                    name: t.name.clone(),
                    address: t.address.clone(),
                    role: m.role,
                    health: t.health,
                    replicating: m.replicating,
                    lag: m.lag,
                    gtid_behind: m.gtid_behind,
                    weight: t.weight,
                    checked_at: t.last_ok_at,
                    last_error,
                    state: shown_state(t).0,
                    state_reason: shown_state(t).1,
                    lag_alert: t.repl.alert(),
                    fenced: t.fenced,
                    mode: t.mode,
                }
            })
            .collect()
    }
}

/// One server's measurement in one round.
#[derive(Debug, Clone, Copy)]
struct Measured {
    role: Role,
    replicating: bool,
    lag: Lag,
    gtid_behind: Option<u64>,
    reading: Reading,
}

/// Why a Down server is down: never answered, answering again but not for `healthy_after` yet,
/// or failing.
fn down_reason(t: &Track) -> &'static str {
    match (&t.last, t.last_ok_at) {
        (_, None) => reason::NOT_PROBED_YET,
        (Some(Observation { result: Ok(_), .. }), Some(_)) => reason::WAITING_HEALTHY_AFTER,
        _ => reason::PROBE_FAILING,
    }
}

/// The state a server is published with: `fenced` overrides what replication says.
fn shown_state(t: &Track) -> (ReplicaState, &'static str) {
    if t.fenced {
        (ReplicaState::Fenced, "fenced_by_failover")
    } else {
        (t.repl.state(), t.repl.reason())
    }
}

/// Did the set of fenced servers change between two snapshots of the same cluster?
fn fences_changed(a: &Topology, b: &Topology) -> bool {
    a.servers
        .iter()
        .map(|s| s.fenced)
        .ne(b.servers.iter().map(|s| s.fenced))
}

/// Equal apart from `checked_at`, which moves every round and alone is no reason to publish.
fn same_ignoring_time(a: &Topology, b: &Topology) -> bool {
    a.cluster == b.cluster
        && a.epoch == b.epoch
        && a.failover == b.failover
        && a.servers.len() == b.servers.len()
        && a.servers.iter().zip(&b.servers).all(|(x, y)| {
            x.index == y.index
                && x.name == y.name
                && x.address == y.address
                && x.role == y.role
                && x.health == y.health
                && x.replicating == y.replicating
                && x.lag == y.lag
                && x.gtid_behind == y.gtid_behind
                && x.weight == y.weight
                && x.last_error == y.last_error
                && x.state == y.state
                && x.state_reason == y.state_reason
                && x.lag_alert == y.lag_alert
                && x.fenced == y.fenced
                && x.mode == y.mode
        })
}

#[cfg(test)]
mod tests;
