//! Read consistency of a PostgreSQL session: whether a read may run on the replica chosen for it
//! (the primary's WAL insert position against the replica's replay position), or goes to the
//! primary.
//!
//! After a write, a read goes to a replica only when that replica is known (from the monitor's
//! probes or an earlier check) to have replayed a primary position read after the write was
//! answered; otherwise to the primary at once, with no query of its own. With
//! `routing.causal_wait` it waits instead, up to `causal_timeout`, for the chosen replica to
//! replay the position. The position is `pg_current_wal_insert_lsn()`: under
//! `synchronous_commit = off` the write position (`pg_current_wal_lsn()`) may not cover a commit
//! still in WAL buffers.

use std::time::Instant;

use super::*;
use crate::config::Consistency;
use crate::frontend::causal::{first_step, replica_at, CausalSession, Next};
use crate::position::lsn::parse_lsn;
use crate::position::{lsn_covers, Pos};

/// The primary's position, covering commits not yet written out of WAL buffers.
const POSITION_SQL: &str = "SELECT pg_current_wal_insert_lsn()";

impl CausalSession for Relay {
    fn consistency(&self) -> Consistency {
        Relay::consistency(self)
    }
    fn causal_wait(&self) -> bool {
        self.ctx.config().routing.causal_wait
    }
    fn causal_fields(&mut self) -> (&mut bool, &mut Option<Instant>, bool) {
        let known = self.causal_lsn.is_some();
        (&mut self.wrote, &mut self.causal_since, known)
    }
    fn forget_position(&mut self) {
        self.causal_lsn = None;
    }
    fn known_replica(&mut self, d: Decision) -> Option<Decision> {
        if self.causal_lsn.is_none() {
            let since = self.causal_since?;
            let Some(Pos::Lsn(lsn)) = self.ctx.positions.primary_since(since) else {
                return None;
            };
            self.causal_lsn = Some(lsn);
            self.causal_since = None;
        }
        self.replica_at(d, self.causal_lsn?)
    }
    fn to_primary(&self, d: Decision, reason: RouteReason) -> Decision {
        self.route(Want::Primary(reason)).unwrap_or(d)
    }
}

impl Relay {
    /// Apply the session's read consistency to a replica decision.
    pub(super) async fn causal_route(
        &mut self,
        d: Decision,
        info: &BatchInfo,
    ) -> Result<Decision, BackendError> {
        if d.route != Route::Replica || !is_read(info) || self.txn.is_some() || self.bound.is_some()
        {
            return Ok(d);
        }
        if info.prepare_only && !self.primary_at_hand() {
            // A prepare never waits for the primary (for a position or a fallback): a client that
            // prepares synchronously while its other connections hold the primary's pool in
            // transactions (pgbench -j 1) would wait for itself.
            return Ok(d);
        }
        match first_step(self, d) {
            Next::Go(k) => Ok(k),
            // Boxed: the query path stays out of every session's task.
            Next::Query => match Box::pin(self.causal_query(d)).await? {
                Some(k) => Ok(k),
                None => Ok(self.to_primary(d, RouteReason::CausalFallback)),
            },
        }
    }

    /// Whether `causal_route` would have to check the replica of `d` before this read, or move
    /// the read to the primary (`strong`): the read must not go out while the session has a
    /// request in flight, for `causal_route` leaves such a read where it is.
    pub(super) fn needs_causal_route(&self, d: &Decision, info: &BatchInfo) -> bool {
        d.route == Route::Replica && is_read(info) && !self.known_ok(d.server)
    }

    /// A read may run on replica `server` with no causal query: eventual consistency, or
    /// read_your_writes with no write since the last position, which `server` has replayed.
    fn known_ok(&self, server: usize) -> bool {
        match (self.consistency(), self.causal_lsn) {
            (Consistency::Eventual, _) => true,
            (Consistency::ReadYourWrites, None) => !self.wrote && self.causal_since.is_none(),
            (Consistency::ReadYourWrites, Some(lsn)) => {
                !self.wrote && self.has_replayed(server, lsn)
            }
            _ => false,
        }
    }

    /// Whether replica `server` is known to have replayed `lsn` (this session's connection to it,
    /// or the cluster's known positions).
    fn has_replayed(&self, server: usize, lsn: u64) -> bool {
        self.backends[server]
            .as_ref()
            .is_some_and(|b| lsn_covers(b.replayed, lsn))
            || self.ctx.positions.replayed(server, &Pos::Lsn(lsn))
    }

    /// `d`, or another read candidate, if one is known to have replayed `lsn`.
    fn replica_at(&self, d: Decision, lsn: u64) -> Option<Decision> {
        let topo = self.topology();
        let routing = &self.ctx.config().routing;
        replica_at(d, &topo, routing, &self.excluded, |i| {
            self.has_replayed(i, lsn)
        })
    }

    /// The primary's position now (shared with the cluster's other sessions).
    async fn primary_position(&mut self) -> Result<Option<u64>, BackendError> {
        let deadline = self.ctx.limits().session_replay_timeout;
        let Some(p) = self.topology().primary().map(|p| p.index) else {
            return Ok(None);
        };
        self.ready(p).await?;
        let Some(be) = self.backends[p].as_mut() else {
            return Ok(None);
        };
        let sent = Instant::now();
        let v = be.conn.query_value(POSITION_SQL, deadline).await?;
        let lsn = v.as_deref().and_then(parse_lsn);
        if let Some(lsn) = lsn {
            self.ctx.positions.primary_seen(sent, Pos::Lsn(lsn));
        }
        Ok(lsn)
    }

    /// Read-your-writes with `causal_wait`, or global: learn the primary's position, then use a
    /// replica known to have replayed it, or (`causal_wait`) wait up to `causal_timeout` for
    /// `d`'s replica to replay it. `None`: the read goes to the primary.
    async fn causal_query(&mut self, d: Decision) -> Result<Option<Decision>, BackendError> {
        let target = match (self.consistency(), self.causal_lsn) {
            (Consistency::ReadYourWrites, Some(lsn)) => lsn,
            _ => {
                let Some(lsn) = self.primary_position().await? else {
                    return Ok(None);
                };
                if self.consistency() == Consistency::ReadYourWrites {
                    self.causal_lsn = Some(lsn);
                    self.causal_since = None;
                }
                lsn
            }
        };
        if let Some(k) = self.replica_at(d, target) {
            return Ok(Some(k));
        }
        if !CausalSession::causal_wait(self) {
            return Ok(None);
        }
        let ok = self.wait_replayed(d.server, target).await?;
        Ok(ok.then_some(d))
    }

    /// Wait up to `causal_timeout` for replica `server` to replay `target`.
    async fn wait_replayed(&mut self, server: usize, target: u64) -> Result<bool, BackendError> {
        let deadline = self.ctx.limits().session_replay_timeout;
        self.ready(server).await?;
        let started = Instant::now();
        let limit = self.ctx.config().routing.causal_timeout;
        let sql = "SELECT pg_last_wal_replay_lsn()";
        loop {
            let Some(be) = self.backends[server].as_mut() else {
                return Ok(false);
            };
            let v = be.conn.query_value(sql, deadline).await?;
            let replayed = v.as_deref().and_then(parse_lsn);
            if let Some(r) = replayed {
                be.replayed = be.replayed.max(r);
                self.ctx.positions.replica_seen(server, Pos::Lsn(r));
            }
            if replayed.is_some_and(|r| lsn_covers(r, target)) {
                self.ctx
                    .metrics
                    .causal_wait(&self.ctx.name, true, started.elapsed());
                return Ok(true);
            }
            if started.elapsed() >= limit {
                self.ctx
                    .metrics
                    .causal_wait(&self.ctx.name, false, started.elapsed());
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Whether the primary serves this session without a wait in line: no pooling, a primary
    /// connection in hand, or one free in the primary's pool (a hint, as for routing).
    fn primary_at_hand(&self) -> bool {
        let Some(p) = self.topology().primary().map(|p| p.index) else {
            return false;
        };
        !self.pooling() || self.backends[p].is_some() || self.pool_ready(p)
    }
}

/// A read (or a prepare) that a replica may serve under the session's read consistency.
fn is_read(info: &BatchInfo) -> bool {
    info.prepare_only
        || info
            .class
            .is_some_and(|c| matches!(c.intent, Intent::Read | Intent::Begin { read_only: true }))
}
