//! The read-consistency decision both protocols share, for a read bound for a replica: what the
//! session's level asks first, read-your-writes' bookkeeping of the session's writes, and which
//! replica is known to have a position.
//!
//! Read-your-writes costs no query of its own: after a write, a read goes to a replica only once
//! a reading of the primary's position sent after the write was answered (the monitor's, or
//! another session's) is known to be replayed there; until then it goes to the primary at once.
//! `routing.causal_wait` makes it learn the position and wait for the replica instead.

use std::time::Instant;

use crate::config::{Consistency, RoutingConfig};
use crate::metrics::RouteReason;
use crate::router::{read_candidates, Decision};
use crate::topology::Topology;

/// A protocol session as read consistency sees it.
pub trait CausalSession {
    fn consistency(&self) -> Consistency;
    fn causal_wait(&self) -> bool;
    /// Read-your-writes fields: (wrote since the last read, pending since, position known).
    fn causal_fields(&mut self) -> (&mut bool, &mut Option<Instant>, bool);
    /// Drop the session's known position (a new write makes it too old).
    fn forget_position(&mut self);
    /// `d` or another replica known to have the session's position, learning that position
    /// from a primary reading sent at or after `since` when it is not known yet.
    fn known_replica(&mut self, d: Decision) -> Option<Decision>;
    /// The primary for this read, for `reason` (`d` itself when there is none).
    fn to_primary(&self, d: Decision, reason: RouteReason) -> Decision;
}

/// What happens next to a read bound for replica `d`.
pub enum Next {
    /// Decided: go there.
    Go(Decision),
    /// Learn the primary's position now (global, or read-your-writes with `causal_wait`).
    Query,
}

/// The first step for a read bound for replica `d`, when nothing of the session is in flight
/// (its writes are answered).
pub fn first_step<S: CausalSession>(s: &mut S, d: Decision) -> Next {
    match s.consistency() {
        Consistency::Eventual => Next::Go(d),
        Consistency::Strong => Next::Go(s.to_primary(d, RouteReason::Consistency)),
        Consistency::Global => Next::Query,
        Consistency::ReadYourWrites => {
            let (wrote, since, _) = s.causal_fields();
            if *wrote {
                *wrote = false;
                *since = Some(Instant::now());
                s.forget_position();
            }
            let (_, since, known) = s.causal_fields();
            if !known && since.is_none() {
                // No write yet: any replica.
                return Next::Go(d);
            }
            if let Some(k) = s.known_replica(d) {
                return Next::Go(k);
            }
            if s.causal_wait() {
                Next::Query
            } else {
                Next::Go(s.to_primary(d, RouteReason::CausalFallback))
            }
        }
    }
}

/// `d`, or another read candidate, when `has(server)` says it has the position.
pub fn replica_at(
    d: Decision,
    topo: &Topology,
    routing: &RoutingConfig,
    excluded: &[usize],
    has: impl Fn(usize) -> bool,
) -> Option<Decision> {
    if has(d.server) {
        return Some(d);
    }
    read_candidates(topo, routing, excluded)
        .into_iter()
        .find(|&(i, _)| has(i))
        .map(|(server, _)| Decision { server, ..d })
}
