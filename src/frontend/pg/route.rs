//! Where a session's request goes: tied to its transaction's or pinned server, or routed by the
//! statement's class; the proxy's own settings (`switchyard.consistency`, `switchyard.debug`).

use super::*;

impl Relay {
    /// With transaction pooling a read prefers a replica whose pool can serve it now.
    pub(super) fn route(&self, want: Want) -> Result<Decision, RouteError> {
        let topo = self.topology();
        let pooling = self.pooling();
        decide_ready(
            want,
            &topo,
            &self.ctx.config().routing,
            &self.ctx.balancer,
            &self.excluded,
            |i| !pooling || self.pool_ready(i),
        )
    }

    /// Decide where a batch goes.
    pub(super) fn target_for(&self, info: &BatchInfo) -> Result<Decision, RouteError> {
        if let Some(b) = self.bound.filter(|&b| self.unsynced || self.txn == Some(b)) {
            return Ok(fixed(b, &self.topology(), RouteReason::InTransaction));
        }
        if let Some(t) = self.txn {
            return Ok(fixed(t, &self.topology(), RouteReason::InTransaction));
        }
        if let Some((p, _)) = self.pinned {
            return Ok(fixed(p, &self.topology(), RouteReason::Pinned));
        }
        if self.deferred_begin {
            // The transaction's first request: the primary, with the BEGIN before it.
            return self.route(Want::Primary(RouteReason::InTransaction));
        }
        if self.isolation.serializable() {
            // A hot standby refuses serializable transactions (even the Parse of a read).
            return match info.class.map(|c| choose(c, self.route_override)) {
                Some(Choice::Want(w @ Want::Primary(_))) => self.route(w),
                _ => self.route(Want::Primary(RouteReason::Serializable)),
            };
        }
        let class = match info.class {
            Some(c) => c,
            None => return self.any_backend(RouteReason::Class(Reason::Empty)),
        };
        match choose(class, self.route_override) {
            Choice::Want(want) => self.route(want),
            Choice::Anywhere(reason) => self.any_backend(reason),
        }
    }

    /// Statements that may run anywhere: reuse the last server if it is still connected.
    pub(super) fn any_backend(&self, reason: RouteReason) -> Result<Decision, RouteError> {
        let topo = self.topology();
        let usable =
            |l: usize| self.backends[l].is_some() && topo.servers.get(l).is_some_and(|s| !s.fenced);
        if let Some(l) = self.last_used.filter(|&l| usable(l)) {
            return Ok(fixed(l, &topo, reason));
        }
        self.route(Want::Replica(reason))
    }
}

/// A decision for a server the session is already tied to.
pub(super) fn fixed(server: usize, topo: &Topology, reason: RouteReason) -> Decision {
    let route = match topo.servers.get(server).map(|s| s.role) {
        Some(crate::topology::Role::Replica) => Route::Replica,
        _ => Route::Primary,
    };
    Decision {
        server,
        route,
        reason,
    }
}

pub(super) fn local_answer(
    class: &Option<Classification>,
    frames: &[Frame],
) -> Option<RouteOverride> {
    match (class, frames) {
        (
            Some(Classification {
                intent: Intent::ProxyRoute(o),
                ..
            }),
            [f],
        ) if f.tag == b'Q' => Some(*o),
        _ => None,
    }
}
