//! Read consistency of a MySQL session: whether a read may run on the replica chosen for it
//! (MariaDB GTIDs: `@@gtid_binlog_pos` on the primary, `MASTER_GTID_WAIT` on the replica), or
//! falls back to the primary.

use std::time::Instant;

use super::*;

impl Relay {
    /// Apply the session's read consistency to a replica decision (MariaDB GTIDs:
    /// `@@gtid_binlog_pos` on the primary, `MASTER_GTID_WAIT` on the replica).
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
        let fallback = |me: &Self, reason| me.route(Want::Primary(reason)).unwrap_or(d);
        let deadline = self.ctx.limits().session_replay_timeout;
        let target = match self.consistency() {
            Consistency::Eventual => return Ok(d),
            Consistency::Strong => return Ok(fallback(self, RouteReason::Consistency)),
            Consistency::ReadYourWrites if !self.wrote => match &self.causal_gtid {
                Some(g) => g.clone(),
                None => return Ok(d),
            },
            _ => {
                let Some(p) = self.topology().primary().map(|p| p.index) else {
                    return Ok(fallback(self, RouteReason::CausalFallback));
                };
                self.ensure_ready(p).await?;
                let Some(b) = self.backends[p].as_mut() else {
                    return Ok(fallback(self, RouteReason::CausalFallback));
                };
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
                self.wrote = false;
                self.causal_gtid = Some(g.clone());
                if p != d.server {
                    // Transaction pooling: the primary is not needed for this read.
                    self.release_one(p);
                }
                g
            }
        };
        if target.is_empty() {
            return Ok(d);
        }
        if self.backends[d.server]
            .as_ref()
            .and_then(|b| b.replayed_gtid.as_deref())
            == Some(target.as_str())
        {
            return Ok(d);
        }
        self.ensure_ready(d.server).await?;
        let limit = self.ctx.config().routing.causal_timeout;
        let started = Instant::now();
        let safe: String = target
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '-' || *c == ',')
            .collect();
        let sql = format!(
            "SELECT MASTER_GTID_WAIT('{safe}', {:.3})",
            limit.as_secs_f64()
        );
        let Some(b) = self.backends[d.server].as_mut() else {
            return Ok(fallback(self, RouteReason::CausalFallback));
        };
        let v = match b.conn.query_value(&sql, deadline + limit).await {
            Ok(v) => v,
            Err(e) => {
                self.drop_backend(d.server);
                return Err(e);
            }
        };
        let ok = v.as_deref() == Some("0");
        tracing::debug!(cluster = %self.ctx.name, server = d.server, %target, answer = ?v, "causal wait");
        if ok {
            b.replayed_gtid = Some(target);
        }
        self.ctx
            .metrics
            .causal_wait(&self.ctx.name, ok, started.elapsed());
        if ok {
            Ok(d)
        } else {
            Ok(fallback(self, RouteReason::CausalFallback))
        }
    }
}
