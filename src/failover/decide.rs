//! The failover controller's decisions, pure: topology snapshots and action outcomes in, steps out.
//!
//! No sockets and no clocks (the caller passes `now`), so every rule is unit-tested with scripted
//! histories (`decide/tests.rs`). Rules:
//! - The *known primary* is the one unfenced writer the controller follows. At start-up it is the
//!   first unique writer seen; afterwards it changes only when exactly one other unfenced writer
//!   is seen (a promotion by us or by an external tool) -> the former one is fenced, unless it is
//!   already back as a streaming replica.
//! - Two or more unfenced writers: split brain. Nobody gets writes (`Topology::primary()` is
//!   `None`) and an alert is raised until one of them stops claiming the role.
//! - The known primary has *failed* when health hysteresis declared it down (N failed probes)
//!   **and** every reachable replica confirms it lost its upstream (WAL receiver not streaming,
//!   IO thread not running). One replica still streaming = a blip between proxy and primary: no
//!   promotion. `auto` then fences the failed primary and asks to promote one of the promotable
//!   replicas; `follow` waits for an external tool; `off` only reports.
//! - A fenced server is unfenced when it streams again as a replica (rejoined) or by an operator.
//!   In `auto` mode a fenced server seen up and claiming the primary role is actively fenced
//!   (made read-only) once per comeback.
//! - While a promotion or switchover runs, rounds decide nothing; a failed promotion that
//!   promoted nobody unfences the old primary and waits `retry_after` before trying again.

use std::time::{Duration, Instant};

use crate::config::{ClusterConfig, FailoverMode};
use crate::topology::{Health, Role, ServerState, Topology};

/// Something the controller wants done or said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Mark `server` fenced (no reads, no writes through the proxy).
    Fence { server: usize, reason: &'static str },
    /// Lift the fence of `server`.
    Unfence { server: usize, reason: &'static str },
    /// Make fenced `server` read-only on the server itself (auto mode, it came back as a writer).
    ActiveFence { server: usize },
    /// Promote the best of `candidates` (ranked by fresh positions) in place of `failed`; repoint
    /// `others` to it.
    Promote {
        failed: usize,
        candidates: Vec<usize>,
        others: Vec<usize>,
    },
    /// The primary the proxy follows changed.
    Followed { from: Option<usize>, to: usize },
    /// A situation to log once (and show as the phase) until it changes.
    Note(Note),
}

/// Situations reported once per occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Several unfenced servers claim to be the primary: writes go nowhere.
    SplitBrain(Vec<usize>),
    /// Back to at most one writer.
    SplitBrainOver,
    /// The proxy cannot reach the primary, but replicas still stream from it: not promoting.
    UnreachableButReplicated(usize),
    /// The primary failed and the replicas confirm it.
    PrimaryFailed(usize),
    /// The primary failed but no replica can take over (none reachable or none promotable).
    NoCandidate(usize),
}

/// What a promotion attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoteOutcome {
    /// The server that is now primary, if the promotion itself succeeded.
    pub promoted: Option<usize>,
    /// What went wrong, if anything (a failed repoint leaves `promoted` set).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    Promoting { failed: usize },
    Switchover { old: usize, target: usize },
}

/// The pause after a failed promotion: five probe intervals, at least a second.
fn retry_after(cluster: &ClusterConfig) -> Duration {
    cluster
        .monitor
        .interval
        .saturating_mul(5)
        .max(Duration::from_secs(1))
}

/// The controller of one cluster.
#[derive(Debug, Clone)]
pub struct Controller {
    mode: FailoverMode,
    promotable: Vec<bool>,
    retry_after: Duration,
    known: Option<usize>,
    fenced: Vec<bool>,
    /// Fenced servers already actively fenced during their current comeback.
    actively_fenced: Vec<bool>,
    busy: Option<Busy>,
    retry_at: Option<Instant>,
    noted: Option<Note>,
}

impl Controller {
    pub fn new(cluster: &ClusterConfig) -> Self {
        let n = cluster.servers.len();
        Controller {
            mode: cluster.failover.mode,
            promotable: cluster.servers.iter().map(|s| s.promote).collect(),
            retry_after: retry_after(cluster),
            known: None,
            fenced: vec![false; n],
            actively_fenced: vec![false; n],
            busy: None,
            retry_at: None,
            noted: None,
        }
    }

    /// A reload: new mode, promotable flags and server slots (appended ones start unfenced;
    /// a removed server is never promotable and loses its fence with its state).
    pub fn reconfigure(&mut self, cluster: &ClusterConfig, removed: &[bool]) {
        let gone = |i: usize| removed.get(i).copied().unwrap_or(false);
        let n = cluster.servers.len();
        self.mode = cluster.failover.mode;
        self.promotable = cluster
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| s.promote && !gone(i))
            .collect();
        self.retry_after = retry_after(cluster);
        self.fenced.resize(n, false);
        self.actively_fenced.resize(n, false);
        for i in (0..n).filter(|&i| gone(i)) {
            self.fenced[i] = false;
            self.actively_fenced[i] = false;
        }
    }

    pub fn mode(&self) -> FailoverMode {
        self.mode
    }

    /// The primary the controller follows.
    pub fn known_primary(&self) -> Option<usize> {
        self.known
    }

    pub fn is_fenced(&self, server: usize) -> bool {
        self.fenced.get(server).copied().unwrap_or(false)
    }

    /// The phase shown in snapshots and `/api/clusters`.
    pub fn phase(&self) -> &'static str {
        match (self.busy, &self.noted) {
            (Some(Busy::Promoting { .. }), _) => "promoting",
            (Some(Busy::Switchover { .. }), _) => "switchover",
            (None, Some(Note::SplitBrain(_))) => "split_brain",
            (None, Some(Note::UnreachableButReplicated(_))) => "primary_unreachable",
            (None, Some(Note::PrimaryFailed(_))) => "primary_failed",
            (None, Some(Note::NoCandidate(_))) => "no_candidate",
            _ => "idle",
        }
    }

    /// Decide on one round's snapshot.
    pub fn on_round(&mut self, topo: &Topology, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        if self.busy.is_some() {
            return steps;
        }
        self.unfence_rejoined(topo, &mut steps);
        self.active_fences(topo, &mut steps);
        let writers: Vec<usize> = topo
            .servers
            .iter()
            .filter(|s| is_writer(s) && !self.is_fenced(s.index))
            .map(|s| s.index)
            .collect();
        match writers.as_slice() {
            [w] => {
                if matches!(self.noted, Some(Note::SplitBrain(_))) {
                    steps.push(Step::Note(Note::SplitBrainOver));
                }
                self.noted = None;
                self.retry_at = None;
                self.follow(*w, topo, &mut steps);
            }
            [] => self.no_writer(topo, now, &mut steps),
            many => self.note(Note::SplitBrain(many.to_vec()), &mut steps),
        }
        steps
    }

    /// A switchover may start: returns (old primary, target). `target` = `None` picks a
    /// promotable streaming replica (the caller ranks by position; this returns the first).
    pub fn begin_switchover(
        &mut self,
        topo: &Topology,
        target: Option<usize>,
    ) -> Result<(usize, Vec<usize>), String> {
        if self.mode == FailoverMode::Follow {
            return Err(
                "failover mode is `follow`: an external tool owns promotions in this cluster"
                    .into(),
            );
        }
        if let Some(b) = self.busy {
            return Err(format!("a {} is already running", busy_name(b)));
        }
        let old = topo
            .primary()
            .map(|p| p.index)
            .filter(|p| Some(*p) == self.known)
            .ok_or("no healthy primary to switch over from")?;
        let usable = |s: &ServerState| {
            s.index != old
                && s.health == Health::Up
                && s.role == Role::Replica
                && s.replicating
                && !self.is_fenced(s.index)
                && self.promotable.get(s.index).copied().unwrap_or(false)
        };
        let candidates: Vec<usize> = match target {
            Some(t) => {
                let s = topo
                    .servers
                    .get(t)
                    .ok_or_else(|| format!("no server #{t}"))?;
                if !usable(s) {
                    return Err(format!(
                        "{} cannot be promoted: it must be an unfenced, streaming replica with `promote: true`",
                        s.name
                    ));
                }
                vec![t]
            }
            None => topo
                .servers
                .iter()
                .filter(|s| usable(s))
                .map(|s| s.index)
                .collect(),
        };
        if candidates.is_empty() {
            return Err("no streaming, promotable replica to switch over to".into());
        }
        self.busy = Some(Busy::Switchover {
            old,
            target: candidates[0],
        });
        Ok((old, candidates))
    }

    /// The switchover ended. `promoted` = the new primary (the old one is then fenced unless it
    /// was rejoined as a replica); `None` = aborted, nothing changed roles.
    pub fn end_switchover(&mut self, promoted: Option<usize>, old_rejoined: bool) -> Vec<Step> {
        let mut steps = Vec::new();
        let Some(Busy::Switchover { old, .. }) = self.busy.take() else {
            return steps;
        };
        if let Some(new) = promoted {
            if !old_rejoined {
                self.fence(old, "former_primary", &mut steps);
            }
            steps.push(Step::Followed {
                from: self.known,
                to: new,
            });
            self.known = Some(new);
        }
        steps
    }

    /// The promotion asked for by [`Step::Promote`] ended.
    pub fn on_promoted(&mut self, outcome: &PromoteOutcome, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        let Some(Busy::Promoting { failed }) = self.busy.take() else {
            return steps;
        };
        match outcome.promoted {
            Some(new) => {
                steps.push(Step::Followed {
                    from: self.known,
                    to: new,
                });
                self.known = Some(new);
                self.noted = None;
            }
            None => {
                // Nobody was promoted: the old primary is still the only legitimate one.
                self.unfence(failed, "promotion_failed", &mut steps);
                self.retry_at = Some(now + self.retry_after);
            }
        }
        steps
    }

    /// An operator fences or unfences a server by hand.
    pub fn operator_fence(&mut self, server: usize, fenced: bool) -> Vec<Step> {
        let mut steps = Vec::new();
        if fenced {
            self.fence(server, "operator", &mut steps);
            if self.known == Some(server) {
                self.known = None;
            }
        } else {
            self.unfence(server, "operator", &mut steps);
        }
        steps
    }

    fn follow(&mut self, w: usize, topo: &Topology, steps: &mut Vec<Step>) {
        if self.known == Some(w) {
            return;
        }
        if let Some(k) = self.known {
            let back_as_replica = topo.servers.get(k).is_some_and(|s| {
                s.health == Health::Up && s.role == Role::Replica && s.replicating
            });
            if !back_as_replica {
                self.fence(k, "former_primary", steps);
            }
        }
        steps.push(Step::Followed {
            from: self.known,
            to: w,
        });
        self.known = Some(w);
    }

    fn no_writer(&mut self, topo: &Topology, now: Instant, steps: &mut Vec<Step>) {
        let Some(k) = self.known else {
            return;
        };
        let Some(ks) = topo.servers.get(k) else {
            return;
        };
        if ks.health != Health::Down {
            // Reachable but not (or not yet) claiming the primary role: nothing to decide.
            if matches!(self.noted, Some(Note::SplitBrain(_))) {
                steps.push(Step::Note(Note::SplitBrainOver));
                self.noted = None;
            }
            return;
        }
        let replicas: Vec<&ServerState> = topo
            .servers
            .iter()
            .filter(|s| {
                s.index != k
                    && s.health == Health::Up
                    && s.role == Role::Replica
                    && !self.is_fenced(s.index)
            })
            .collect();
        if replicas.iter().any(|s| s.replicating) {
            self.note(Note::UnreachableButReplicated(k), steps);
            return;
        }
        let candidates: Vec<usize> = replicas
            .iter()
            .filter(|s| self.promotable.get(s.index).copied().unwrap_or(false))
            .map(|s| s.index)
            .collect();
        if candidates.is_empty() {
            self.note(Note::NoCandidate(k), steps);
            return;
        }
        self.note(Note::PrimaryFailed(k), steps);
        if self.mode != FailoverMode::Auto || self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.retry_at = None;
        self.fence(k, "failed_primary", steps);
        let others = replicas.iter().map(|s| s.index).collect();
        steps.push(Step::Promote {
            failed: k,
            candidates,
            others,
        });
        self.busy = Some(Busy::Promoting { failed: k });
    }

    fn unfence_rejoined(&mut self, topo: &Topology, steps: &mut Vec<Step>) {
        for s in &topo.servers {
            if self.is_fenced(s.index)
                && s.health == Health::Up
                && s.role == Role::Replica
                && s.replicating
            {
                self.unfence(s.index, "replicating_again", steps);
            }
        }
    }

    fn active_fences(&mut self, topo: &Topology, steps: &mut Vec<Step>) {
        for s in &topo.servers {
            let Some(done) = self.actively_fenced.get_mut(s.index) else {
                continue;
            };
            if s.health == Health::Down {
                *done = false;
            } else if self.fenced[s.index]
                && is_writer(s)
                && !*done
                && self.mode == FailoverMode::Auto
            {
                *done = true;
                steps.push(Step::ActiveFence { server: s.index });
            }
        }
    }

    fn note(&mut self, note: Note, steps: &mut Vec<Step>) {
        if self.noted.as_ref() != Some(&note) {
            self.noted = Some(note.clone());
            steps.push(Step::Note(note));
        }
    }

    fn fence(&mut self, server: usize, reason: &'static str, steps: &mut Vec<Step>) {
        if let Some(f) = self.fenced.get_mut(server) {
            if !*f {
                *f = true;
                steps.push(Step::Fence { server, reason });
            }
        }
    }

    fn unfence(&mut self, server: usize, reason: &'static str, steps: &mut Vec<Step>) {
        if let Some(f) = self.fenced.get_mut(server) {
            if *f {
                *f = false;
                if let Some(a) = self.actively_fenced.get_mut(server) {
                    *a = false;
                }
                steps.push(Step::Unfence { server, reason });
            }
        }
    }
}

/// Up and probed as primary (fences are the caller's business).
fn is_writer(s: &ServerState) -> bool {
    s.health == Health::Up && s.role == Role::Primary
}

fn busy_name(b: Busy) -> &'static str {
    match b {
        Busy::Promoting { .. } => "promotion",
        Busy::Switchover { .. } => "switchover",
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
