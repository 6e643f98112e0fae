//! Pure per-server replication state machine: one lag reading per round in, a `ReplicaState` with
//! readmission hysteresis (and the lag alert flag) out.
//!
//! Rules (the caller passes the time; no clocks here):
//! - Down servers are `down`, the primary is `primary`, a server whose role is undecided or whose
//!   lag has no fresh measurement is `unknown`. Unknown is never a read candidate.
//! - A replica whose replication is stopped or erroring is `broken`: PostgreSQL's WAL receiver is
//!   not streaming; MySQL/MariaDB's IO or SQL thread is not running, or `Seconds_Behind_Master` is
//!   NULL. (On PostgreSQL a NULL lag with a streaming receiver is `unknown`.)
//! - A replica leaves the read set (`lagging`) on the first round its lag exceeds
//!   `max_replica_lag` or `max_replica_lag_bytes`. When a byte limit is set but the bytes cannot be
//!   measured this round, the replica is `unknown`.
//! - A replica enters `healthy` only after its lag has stayed within the limits, with every round in
//!   between measured, for `lag_readmit_after`. Meanwhile it keeps its previous non-healthy state
//!   (`lagging` after `down` or `primary`) with reason `readmit_hold`. The one exception is the
//!   first measurement after the proxy starts: there is no history to distrust, so a replica within
//!   the limits is `healthy` at once (health hysteresis already applied).
//! - The lag alert is raised the first round the lag exceeds `lag_alert` and cleared once the lag
//!   has stayed at or under it for `lag_readmit_after`; rounds without a measurement change nothing
//!   but restart the clearing hold. A server that stops being a replica clears it.

use std::time::{Duration, Instant};

use crate::config::{ClusterConfig, Protocol};
use crate::topology::model::ReplicaState;

/// The limits of one cluster, taken from its `routing` config.
#[derive(Debug, Clone, PartialEq)]
pub struct LagPolicy {
    pub protocol: Protocol,
    pub max_lag: Option<Duration>,
    pub max_lag_bytes: Option<u64>,
    pub readmit_after: Duration,
    pub alert: Option<Duration>,
}

impl LagPolicy {
    pub fn from_cluster(cluster: &ClusterConfig) -> Self {
        let r = &cluster.routing;
        LagPolicy {
            protocol: cluster.protocol,
            max_lag: r.max_replica_lag,
            max_lag_bytes: r.max_replica_lag_bytes,
            readmit_after: r.lag_readmit_after,
            alert: r.lag_alert,
        }
    }
}

/// What the monitor knows about one server this round, after health hysteresis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// Health is Down; the reason token says why (`not_probed_yet`, `probe_failing`, ...).
    Down(&'static str),
    /// Up and probed as primary.
    Primary,
    /// Up, but the probe could not decide a role (e.g. MySQL `read_only` without replication).
    RoleUnknown,
    /// Up replica without a fresh successful probe.
    Stale,
    /// Up replica with a fresh successful probe.
    Replica {
        /// WAL receiver streaming / IO and SQL threads running.
        streaming: bool,
        /// Replay lag in seconds; `None` when the server reported NULL.
        seconds: Option<f64>,
        /// WAL bytes behind the primary, when measurable this round.
        bytes: Option<u64>,
    },
}

/// A state change, for logs and `switchyard_replica_state_changes_total`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    pub from: ReplicaState,
    pub to: ReplicaState,
    pub reason: &'static str,
}

/// A lag alert change, for the warning log and `switchyard_replica_lag_alert`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlertChange {
    Raised { seconds: f64 },
    Cleared,
}

/// What one update changed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Step {
    pub transition: Option<Transition>,
    pub alert: Option<AlertChange>,
}

/// Reason tokens (the `state_reason` of `/api/clusters`).
pub mod reason {
    pub const NOT_PROBED_YET: &str = "not_probed_yet";
    pub const PROBE_FAILING: &str = "probe_failing";
    pub const WAITING_HEALTHY_AFTER: &str = "waiting_healthy_after";
    pub const PRIMARY: &str = "primary";
    pub const ROLE_UNKNOWN: &str = "role_unknown";
    pub const NO_FRESH_MEASUREMENT: &str = "no_fresh_measurement";
    pub const LAG_NOT_REPORTED: &str = "lag_not_reported";
    pub const LAG_BYTES_UNKNOWN: &str = "lag_bytes_unknown";
    pub const WAL_RECEIVER_NOT_STREAMING: &str = "wal_receiver_not_streaming";
    pub const REPLICATION_THREADS_STOPPED: &str = "replication_threads_stopped";
    pub const SECONDS_BEHIND_MASTER_NULL: &str = "seconds_behind_master_null";
    pub const OVER_MAX_LAG: &str = "lag_over_max_replica_lag";
    pub const OVER_MAX_LAG_BYTES: &str = "lag_over_max_replica_lag_bytes";
    pub const READMIT_HOLD: &str = "readmit_hold";
    pub const WITHIN_LIMITS: &str = "lag_within_limits";
}

/// A reading judged against the limits, before hysteresis.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fit {
    /// A state that applies at once.
    Fixed(ReplicaState, &'static str),
    /// Over a limit: `lagging` at once.
    Over(&'static str),
    /// Within every limit: `healthy` once the hold allows.
    Within,
}

fn classify(reading: &Reading, policy: &LagPolicy) -> Fit {
    let mysql = policy.protocol == Protocol::Mysql;
    match *reading {
        Reading::Down(why) => Fit::Fixed(ReplicaState::Down, why),
        Reading::Primary => Fit::Fixed(ReplicaState::Primary, reason::PRIMARY),
        Reading::RoleUnknown => Fit::Fixed(ReplicaState::Unknown, reason::ROLE_UNKNOWN),
        Reading::Stale => Fit::Fixed(ReplicaState::Unknown, reason::NO_FRESH_MEASUREMENT),
        Reading::Replica {
            streaming: false, ..
        } => Fit::Fixed(
            ReplicaState::Broken,
            if mysql {
                reason::REPLICATION_THREADS_STOPPED
            } else {
                reason::WAL_RECEIVER_NOT_STREAMING
            },
        ),
        Reading::Replica { seconds: None, .. } => {
            if mysql {
                Fit::Fixed(ReplicaState::Broken, reason::SECONDS_BEHIND_MASTER_NULL)
            } else {
                Fit::Fixed(ReplicaState::Unknown, reason::LAG_NOT_REPORTED)
            }
        }
        Reading::Replica {
            seconds: Some(seconds),
            bytes,
            ..
        } => {
            if policy.max_lag.is_some_and(|m| seconds > m.as_secs_f64()) {
                return Fit::Over(reason::OVER_MAX_LAG);
            }
            match (policy.max_lag_bytes, bytes) {
                (Some(m), Some(b)) if b > m => Fit::Over(reason::OVER_MAX_LAG_BYTES),
                (Some(_), None) => Fit::Fixed(ReplicaState::Unknown, reason::LAG_BYTES_UNKNOWN),
                _ => Fit::Within,
            }
        }
    }
}

/// One server's replication state and the memory its hysteresis needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracker {
    state: ReplicaState,
    reason: &'static str,
    /// Start of the current unbroken run of rounds within the limits (while not healthy).
    within_since: Option<Instant>,
    /// Some round already saw the server up: later admissions need the hold.
    seen_up: bool,
    alert: bool,
    /// Start of the current unbroken run of rounds at or under the alert threshold.
    alert_ok_since: Option<Instant>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// A server nobody has probed yet: `down`, no alert.
    pub fn new() -> Self {
        Tracker {
            state: ReplicaState::Down,
            reason: reason::NOT_PROBED_YET,
            within_since: None,
            seen_up: false,
            alert: false,
            alert_ok_since: None,
        }
    }

    pub fn state(&self) -> ReplicaState {
        self.state
    }

    pub fn reason(&self) -> &'static str {
        self.reason
    }

    pub fn alert(&self) -> bool {
        self.alert
    }

    /// Applies one round's reading taken at `now`.
    pub fn update(&mut self, reading: &Reading, policy: &LagPolicy, now: Instant) -> Step {
        let first_up = !self.seen_up && !matches!(reading, Reading::Down(_));
        let (to, why) = match classify(reading, policy) {
            Fit::Fixed(state, why) => {
                self.within_since = None;
                (state, why)
            }
            Fit::Over(why) => {
                self.within_since = None;
                (ReplicaState::Lagging, why)
            }
            Fit::Within => {
                if self.state == ReplicaState::Healthy || first_up {
                    (ReplicaState::Healthy, reason::WITHIN_LIMITS)
                } else {
                    let since = *self.within_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= policy.readmit_after {
                        (ReplicaState::Healthy, reason::WITHIN_LIMITS)
                    } else {
                        let hold = match self.state {
                            s @ (ReplicaState::Lagging
                            | ReplicaState::Unknown
                            | ReplicaState::Broken) => s,
                            _ => ReplicaState::Lagging,
                        };
                        (hold, reason::READMIT_HOLD)
                    }
                }
            }
        };
        if to == ReplicaState::Healthy {
            self.within_since = None;
        }
        if !matches!(reading, Reading::Down(_)) {
            self.seen_up = true;
        }
        let transition = (to != self.state).then_some(Transition {
            from: self.state,
            to,
            reason: why,
        });
        self.state = to;
        self.reason = why;
        Step {
            transition,
            alert: self.update_alert(reading, policy, now),
        }
    }

    fn update_alert(
        &mut self,
        reading: &Reading,
        policy: &LagPolicy,
        now: Instant,
    ) -> Option<AlertChange> {
        let seconds = match *reading {
            Reading::Replica {
                seconds: Some(s), ..
            } => s,
            Reading::Replica { seconds: None, .. } | Reading::Stale => {
                self.alert_ok_since = None;
                return None;
            }
            Reading::Down(_) | Reading::Primary | Reading::RoleUnknown => {
                self.alert_ok_since = None;
                return self.clear_alert();
            }
        };
        let Some(limit) = policy.alert else {
            return self.clear_alert();
        };
        if seconds > limit.as_secs_f64() {
            self.alert_ok_since = None;
            if self.alert {
                return None;
            }
            self.alert = true;
            return Some(AlertChange::Raised { seconds });
        }
        if !self.alert {
            return None;
        }
        let since = *self.alert_ok_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= policy.readmit_after {
            self.alert_ok_since = None;
            return self.clear_alert();
        }
        None
    }

    fn clear_alert(&mut self) -> Option<AlertChange> {
        if self.alert {
            self.alert = false;
            Some(AlertChange::Cleared)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
