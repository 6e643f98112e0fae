//! Read consistency of a MySQL session: whether a read may run on the replica chosen for it
//! (MariaDB GTIDs: `@@gtid_binlog_pos` on the primary against the replica's `@@gtid_slave_pos`),
//! or goes to the primary.
//!
//! After a write, a read goes to a replica only when that replica is known (from the monitor's
//! probes or an earlier wait) to have the GTIDs of a primary position read after the write was
//! answered; otherwise to the primary at once, with no query of its own. With
//! `routing.causal_wait` it waits instead (`MASTER_GTID_WAIT`, up to `causal_timeout`).

use std::time::Instant;

use super::*;
use crate::frontend::causal::{first_step, replica_at, CausalSession, Next};
use crate::position::{gtid_text, Pos};

impl CausalSession for Relay {
    fn consistency(&self) -> Consistency {
        Relay::consistency(self)
    }
    fn causal_wait(&self) -> bool {
        self.ctx.config().routing.causal_wait
    }
    fn causal_fields(&mut self) -> (&mut bool, &mut Option<Instant>, bool) {
        let known = self.causal_gtid.is_some();
        (&mut self.wrote, &mut self.causal_since, known)
    }
    fn forget_position(&mut self) {
        self.causal_gtid = None;
    }
    fn known_replica(&mut self, d: Decision) -> Option<Decision> {
        if self.causal_gtid.is_none() {
            let since = self.causal_since?;
            let Some(Pos::Gtid(list)) = self.ctx.positions.primary_since(since) else {
                return None;
            };
            self.causal_gtid = Some(gtid_text(&list));
            self.causal_since = None;
        }
        let target = Pos::gtid(self.causal_gtid.as_deref()?)?;
        self.replica_at(d, &target)
    }
    fn to_primary(&self, d: Decision, reason: RouteReason) -> Decision {
        self.route(Want::Primary(reason)).unwrap_or(d)
    }
}

impl Relay {
    /// Apply the session's read consistency to a replica decision (one command at a time: the
    /// session's writes are answered when it runs).
    pub(super) async fn causal_route(
        &mut self,
        d: Decision,
        class: Classification,
    ) -> Result<Decision, MysqlBackendError> {
        let is_read = matches!(
            class.intent,
            Intent::Read | Intent::Begin { read_only: true }
        );
        if d.route != Route::Replica || !is_read || self.txn.is_some() {
            return Ok(d);
        }
        match first_step(self, d) {
            Next::Go(k) => Ok(k),
            Next::Query => match Box::pin(self.causal_query(d)).await? {
                Some(k) => Ok(k),
                None => Ok(self.to_primary(d, RouteReason::CausalFallback)),
            },
        }
    }

    /// Whether replica `server` is known to have `target` (this session's connection to it, or
    /// the cluster's known positions).
    fn has_replayed(&self, server: usize, target: &Pos) -> bool {
        self.backends[server]
            .as_ref()
            .and_then(|b| b.replayed_gtid.as_deref())
            .and_then(Pos::gtid)
            .is_some_and(|have| have.covers(target))
            || self.ctx.positions.replayed(server, target)
    }

    /// `d`, or another read candidate, if one is known to have `target`.
    fn replica_at(&self, d: Decision, target: &Pos) -> Option<Decision> {
        if matches!(target, Pos::Gtid(list) if list.is_empty()) {
            return Some(d);
        }
        let topo = self.topology();
        let routing = &self.ctx.config().routing;
        replica_at(d, &topo, routing, &self.excluded, |i| {
            self.has_replayed(i, target)
        })
    }

    /// The primary's GTID position now (shared with the cluster's other sessions).
    async fn primary_gtid(&mut self, d: Decision) -> Result<Option<String>, MysqlBackendError> {
        let deadline = self.ctx.limits().session_replay_timeout;
        let Some(p) = self.topology().primary().map(|p| p.index) else {
            return Ok(None);
        };
        self.ensure_ready(p).await?;
        let Some(b) = self.backends[p].as_mut() else {
            return Ok(None);
        };
        let sent = Instant::now();
        let g = match b
            .conn
            .query_value("SELECT @@gtid_binlog_pos", deadline)
            .await
        {
            Ok(g) => g.unwrap_or_default(),
            Err(e) => {
                self.drop_backend(p);
                return Err(e);
            }
        };
        if let Some(pos) = Pos::gtid(&g) {
            self.ctx.positions.primary_seen(sent, pos);
        }
        if p != d.server {
            // Transaction pooling: the primary is not needed for this read.
            self.release_one(p);
        }
        Ok(Some(g))
    }

    /// Read-your-writes with `causal_wait`, or global: learn the primary's position, then use a
    /// replica known to have it, or (`causal_wait`) wait up to `causal_timeout` for `d`'s
    /// replica to reach it. `None`: the read goes to the primary.
    async fn causal_query(&mut self, d: Decision) -> Result<Option<Decision>, MysqlBackendError> {
        let target = match (self.consistency(), &self.causal_gtid) {
            (Consistency::ReadYourWrites, Some(g)) => g.clone(),
            _ => {
                let Some(g) = self.primary_gtid(d).await? else {
                    return Ok(None);
                };
                if self.consistency() == Consistency::ReadYourWrites {
                    self.causal_gtid = Some(g.clone());
                    self.causal_since = None;
                }
                g
            }
        };
        let Some(pos) = Pos::gtid(&target) else {
            return Ok(None);
        };
        if let Some(k) = self.replica_at(d, &pos) {
            return Ok(Some(k));
        }
        if !CausalSession::causal_wait(self) {
            return Ok(None);
        }
        let ok = self.wait_gtid(d.server, &pos).await?;
        Ok(ok.then_some(d))
    }

    /// `MASTER_GTID_WAIT` on replica `server` for `target`, up to `causal_timeout`.
    async fn wait_gtid(&mut self, server: usize, target: &Pos) -> Result<bool, MysqlBackendError> {
        let Pos::Gtid(list) = target else {
            return Ok(false);
        };
        let text = gtid_text(list);
        let deadline = self.ctx.limits().session_replay_timeout;
        self.ensure_ready(server).await?;
        let limit = self.ctx.config().routing.causal_timeout;
        let started = Instant::now();
        // Digits, dashes and commas only: `gtid_text` writes numbers.
        let sql = format!(
            "SELECT MASTER_GTID_WAIT('{text}', {:.3})",
            limit.as_secs_f64()
        );
        let Some(b) = self.backends[server].as_mut() else {
            return Ok(false);
        };
        let v = match b.conn.query_value(&sql, deadline + limit).await {
            Ok(v) => v,
            Err(e) => {
                self.drop_backend(server);
                return Err(e);
            }
        };
        let ok = v.as_deref() == Some("0");
        tracing::debug!(cluster = %self.ctx.name, server, target = %text, answer = ?v, "causal wait");
        if ok {
            b.replayed_gtid = Some(text);
            self.ctx.positions.replica_seen(server, target.clone());
        }
        self.ctx
            .metrics
            .causal_wait(&self.ctx.name, ok, started.elapsed());
        Ok(ok)
    }
}
