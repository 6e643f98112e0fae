//! Read consistency of a PostgreSQL session: whether a read may run on the replica chosen for it
//! (the primary's WAL position against the replica's replay position), or falls back to the primary.

use std::time::Instant;

use super::*;
use crate::config::Consistency;
use crate::topology::probe_pg::parse_lsn;

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
        let consistency = self.consistency();
        if consistency == Consistency::Strong {
            return self
                .route(Want::Primary(RouteReason::Consistency))
                .or(Ok(d));
        }
        // Most reads need no causal query (eventual, or read_your_writes before any write):
        // settled here, so the query path is boxed and stays out of every session's task.
        if self.known_ok(d.server) || Box::pin(self.causal_ok(d.server)).await? {
            return Ok(d);
        }
        Ok(self
            .route(Want::Primary(RouteReason::CausalFallback))
            .unwrap_or(d))
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
            (Consistency::ReadYourWrites, None) => !self.wrote,
            (Consistency::ReadYourWrites, Some(lsn)) => {
                !self.wrote
                    && self.backends[server]
                        .as_ref()
                        .is_some_and(|b| b.replayed >= lsn)
            }
            _ => false,
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

    /// Read-your-writes / global consistency: may this read run on replica `server`?
    /// Learns the primary's current WAL position (once per write for read_your_writes, per read for
    /// global) and waits up to `causal_timeout` for the replica to replay it.
    pub(super) async fn causal_ok(&mut self, server: usize) -> Result<bool, BackendError> {
        let deadline = self.ctx.limits().session_replay_timeout;
        let target = match (self.consistency(), self.causal_lsn) {
            (Consistency::ReadYourWrites, Some(lsn)) if !self.wrote => lsn,
            (Consistency::ReadYourWrites, _) if !self.wrote => return Ok(true),
            (Consistency::Eventual, _) => return Ok(true),
            (Consistency::Strong, _) => return Ok(false),
            _ => {
                let Some(p) = self.topology().primary().map(|p| p.index) else {
                    return Ok(false);
                };
                self.ready(p).await?;
                let Some(be) = self.backends[p].as_mut() else {
                    return Ok(false);
                };
                let v = be
                    .conn
                    .query_value("SELECT pg_current_wal_lsn()", deadline)
                    .await?;
                let lsn = v.as_deref().and_then(parse_lsn).unwrap_or(u64::MAX);
                self.wrote = false;
                self.causal_lsn = Some(lsn);
                lsn
            }
        };
        if self.backends[server]
            .as_ref()
            .is_some_and(|b| b.replayed >= target)
        {
            return Ok(true);
        }
        self.ready(server).await?;
        let started = Instant::now();
        let limit = self.ctx.config().routing.causal_timeout;
        let hex = format!("{:X}/{:X}", target >> 32, target & 0xffff_ffff);
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{hex}'::pg_lsn");
        loop {
            let Some(be) = self.backends[server].as_mut() else {
                return Ok(false);
            };
            let v = be.conn.query_value(&sql, deadline).await?;
            if v.as_deref() == Some("t") {
                be.replayed = be.replayed.max(target);
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
}

/// A read (or a prepare) that a replica may serve under the session's read consistency.
fn is_read(info: &BatchInfo) -> bool {
    info.prepare_only
        || info
            .class
            .is_some_and(|c| matches!(c.intent, Intent::Read | Intent::Begin { read_only: true }))
}
