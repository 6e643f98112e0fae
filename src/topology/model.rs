//! Immutable snapshot of a cluster's servers as the monitor last saw them.

use std::time::{Duration, Instant};

/// Role the monitor discovered (never taken from config alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    Unknown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Unknown => "unknown",
        }
    }
}

/// What an operator lets a server take (admin API `drain` / `maintenance` / `enable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerMode {
    #[default]
    Enabled,
    /// No new reads; transactions and pinned sessions already on it finish (ProxySQL OFFLINE_SOFT).
    Drain,
    /// No reads at all: sessions tied to it lose that connection (ProxySQL OFFLINE_HARD).
    Maintenance,
    /// Gone from the configuration (a reload): no new work, not probed, never promoted;
    /// transactions and pinned sessions already on it finish, idle connections to it close.
    Removed,
}

impl ServerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerMode::Enabled => "enabled",
            ServerMode::Drain => "drain",
            ServerMode::Maintenance => "maintenance",
            ServerMode::Removed => "removed",
        }
    }
}

/// Health after hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    Down,
}

/// What a server is good for right now, as the monitor's lag hysteresis decided it (see
/// [`crate::topology::replica_state`]). Only `Healthy` replicas take reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaState {
    /// The server is up and is the primary.
    Primary,
    /// Replica that streams and whose lag is within the limits (after the readmission hold).
    Healthy,
    /// Replica over a lag limit, or back under it but not yet for `lag_readmit_after`.
    Lagging,
    /// No fresh lag measurement (stale or failed probe, NULL lag, role undecided).
    Unknown,
    /// Replication stopped or erroring (WAL receiver not streaming, IO/SQL thread stopped,
    /// NULL `Seconds_Behind_Master`).
    Broken,
    /// The server is down (health hysteresis), or not probed successfully yet.
    Down,
    /// A former primary (or a second writer) that failover fenced: no reads, no writes until it
    /// replicates from the current primary again or an operator rejoins it.
    Fenced,
}

impl ReplicaState {
    /// Every state, in the order metrics list them.
    pub const ALL: [ReplicaState; 7] = [
        ReplicaState::Primary,
        ReplicaState::Healthy,
        ReplicaState::Lagging,
        ReplicaState::Unknown,
        ReplicaState::Broken,
        ReplicaState::Down,
        ReplicaState::Fenced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Primary => "primary",
            ReplicaState::Healthy => "healthy",
            ReplicaState::Lagging => "lagging",
            ReplicaState::Unknown => "unknown",
            ReplicaState::Broken => "broken",
            ReplicaState::Down => "down",
            ReplicaState::Fenced => "fenced",
        }
    }
}

/// Replication lag of a replica. `Unknown` is neither zero nor infinite: it is not a read candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lag {
    Known { seconds: f64, bytes: Option<u64> },
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    /// Index of the server in the cluster's config `servers` list.
    pub index: usize,
    pub name: String,
    pub address: String,
    pub role: Role,
    pub health: Health,
    /// Replicas: is the WAL receiver streaming (or IO+SQL threads running)?
    pub replicating: bool,
    pub lag: Lag,
    /// MariaDB replicas: transactions behind the primary, from the GTID positions of the same
    /// monitor round (summed over replication domains). Measured and shown only; routing does
    /// not use it. `None` on PostgreSQL/MySQL or when not measured this round.
    pub gtid_behind: Option<u64>,
    pub weight: u32,
    /// When this state was last confirmed by a probe.
    pub checked_at: Option<Instant>,
    /// Last probe error, if any.
    pub last_error: Option<String>,
    /// Replication state after lag hysteresis; only `Healthy` replicas are read candidates.
    pub state: ReplicaState,
    /// Why the server is in `state` (a fixed token, e.g. `lag_over_max_replica_lag`).
    pub state_reason: &'static str,
    /// The replica's lag is over `routing.lag_alert` (with the same hold before it clears).
    pub lag_alert: bool,
    /// Fenced by failover: never routed to, whatever it claims to be.
    pub fenced: bool,
    /// Operator mode; only `Enabled` replicas take reads.
    pub mode: ServerMode,
}

/// One cluster's topology at one moment. Published whole, never mutated.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub cluster: String,
    /// Bumped whenever the set of roles or fences changes.
    pub epoch: u64,
    pub servers: Vec<ServerState>,
    /// What failover is doing (`idle`, `primary_down`, `promoting`, `switchover`, ...).
    pub failover: &'static str,
}

impl Topology {
    /// The unique healthy, unfenced primary, if exactly one is known. Two writers -> `None`:
    /// writes go nowhere until failover resolves it.
    pub fn primary(&self) -> Option<&ServerState> {
        let mut it = self.writers();
        let first = it.next()?;
        if it.next().is_some() {
            return None;
        }
        Some(first)
    }

    /// Servers that are up, claim to be primary and are not fenced.
    pub fn writers(&self) -> impl Iterator<Item = &ServerState> {
        self.servers
            .iter()
            .filter(|s| s.role == Role::Primary && s.health == Health::Up && !s.fenced)
    }

    /// More than one unfenced server claims to be the primary.
    pub fn split_brain(&self) -> bool {
        self.writers().nth(1).is_some()
    }

    /// Replicas that may take reads: up, role replica, in state `Healthy`, and within the given
    /// limits. The monitor sets `Healthy` only for a streaming replica whose known lag has stayed
    /// within the cluster's `max_replica_lag` / `max_replica_lag_bytes` for `lag_readmit_after`
    /// (hysteresis), so with the cluster's own limits the second check never removes anyone; a
    /// caller may pass tighter limits. Unknown lag is never a candidate.
    pub fn read_candidates(
        &self,
        max_lag: Option<Duration>,
        max_lag_bytes: Option<u64>,
    ) -> impl Iterator<Item = &ServerState> {
        self.servers.iter().filter(move |s| {
            if s.role != Role::Replica
                || s.fenced
                || s.mode != ServerMode::Enabled
                || s.health != Health::Up
                || !s.replicating
                || s.state != ReplicaState::Healthy
            {
                return false;
            }
            match s.lag {
                Lag::Unknown => false,
                Lag::Known { seconds, bytes } => {
                    let time_ok = max_lag.is_none_or(|m| seconds <= m.as_secs_f64());
                    let bytes_ok = match (max_lag_bytes, bytes) {
                        (None, _) => true,
                        (Some(m), Some(b)) => b <= m,
                        (Some(_), None) => false,
                    };
                    time_ok && bytes_ok
                }
            }
        })
    }
}
