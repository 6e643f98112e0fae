//! A read-only transaction a replica holds, moved to the primary when a statement in it would
//! change state: nothing but reads, session settings and transaction control runs inside a
//! replica's transaction.
//!
//! `START TRANSACTION READ ONLY` runs on a replica. A read-only transaction may still create,
//! fill and drop temporary tables, take user locks and prepare SQL statements (the server allows
//! these on a `read_only` replica too), and a write in it must fail as the primary fails it
//! (1792, with the primary's `SHOW WARNINGS`). Run on the replica, such a statement would pin the
//! session to the replica (later writes refused there with 1290) and may even make the replica
//! binlog a transaction of its own (`DROP TEMPORARY TABLE IF EXISTS` marks the transaction
//! non-transactional, so its `SAVEPOINT`s and `ROLLBACK` are logged under the replica's server
//! id: with `gtid_strict_mode` its replication then stops with error 1950).
//!
//! So a statement the router would send to the primary ([`choose`] wants the primary) moves the
//! transaction first: the primary opens the same transaction (the session's `START TRANSACTION`
//! and its savepoints are replayed there), the replica's read-only transaction is rolled back
//! (nothing is lost), and the statement runs on the primary, which holds the transaction from
//! then on. A `BEGIN` that would go to the primary only ends the replica's transaction (as
//! its implicit commit would). The cost: the rest of the transaction reads from a newer snapshot
//! (the primary's), never an older one. Diagnostics reads and prepares do not move it.

use std::time::Duration;

use super::*;
use crate::backend::mysql::Consumed;
use crate::wire::mysql::response::Expect;

/// What starts a transaction when the session's own `START TRANSACTION` was not seen.
const FALLBACK_BEGIN: &[u8] = b"\x03START TRANSACTION READ ONLY";
pub(super) const ROLLBACK: &[u8] = b"\x03ROLLBACK";
/// Transaction-shaping commands kept per transaction (savepoints beyond this are not replayable).
const MAX_LOG: usize = 256;

impl Relay {
    /// Keep the statements that shape the open transaction (its `START TRANSACTION`, savepoints),
    /// for [`leave_replica_txn`](Self::leave_replica_txn); called after every complete answer.
    pub(super) fn note_txn_statement(&mut self, class: Classification, sent: &[u8], ok: bool) {
        if self.txn.is_none() {
            self.txn_log.clear();
            return;
        }
        if !ok {
            return;
        }
        let Some(payload) = exec::command_payload(sent) else {
            return;
        };
        if payload.first() != Some(&COM_QUERY) {
            return;
        }
        match class.intent {
            Intent::Begin { .. } => self.txn_log = vec![payload],
            Intent::TxnControl if self.txn_log.len() < MAX_LOG => self.txn_log.push(payload),
            // Too long to replay: an empty entry makes a move fail (fail closed).
            Intent::TxnControl if self.txn_log.len() == MAX_LOG => self.txn_log.push(Vec::new()),
            _ => {}
        }
    }

    /// If a replica holds the session's transaction and this statement must run on the primary,
    /// move the transaction there (see the module doc). `false`: it could not be moved; an
    /// error answers the statement and the transaction stays where it was.
    pub(super) async fn leave_replica_txn(
        &mut self,
        class: Classification,
        preparing: bool,
    ) -> bool {
        let Some(replica) = self.txn else {
            return true;
        };
        let on_replica = self
            .topology()
            .servers
            .get(replica)
            .is_some_and(|s| s.role == Role::Replica);
        let wants_primary = matches!(
            choose(class, self.route_override),
            Choice::Want(Want::Primary(_))
        );
        if !on_replica || !wants_primary || preparing || self.diag.now.reads() {
            return true;
        }
        let begins = matches!(class.intent, Intent::Begin { .. });
        if !begins {
            if let Err(message) = self.open_on_primary().await {
                let err = MyError::new(
                    1105,
                    "HY000",
                    format!("switchyard: could not move the read-only transaction to the primary: {message}"),
                    ErrorKind::NoServer,
                );
                self.ctx.metrics.error(&self.ctx.name, err.kind);
                self.client.queue(&err.payload());
                return false;
            }
        }
        // The replica's transaction only read: rolling it back loses nothing.
        let deadline = self.ctx.limits().session_replay_timeout;
        let rolled = match self.backends[replica].as_mut() {
            Some(b) => {
                tokio::time::timeout(deadline, b.conn.run_consumed(ROLLBACK, Expect::Simple))
                    .await
                    .unwrap_or(Err(MysqlBackendError::Timeout(deadline)))
            }
            None => Err(MysqlBackendError::Closed),
        };
        if !matches!(rolled, Ok(Consumed::Ok { .. })) {
            // Whatever it holds is not needed: the connection goes.
            self.drop_backend(replica);
        }
        if begins {
            self.txn = None;
            self.status &= !status::IN_TRANS;
            self.txn_log.clear();
        }
        tracing::debug!(cluster = %self.ctx.name, replica, "read-only transaction moved off a replica");
        self.release_one(replica);
        true
    }

    /// Open the session's transaction on the primary (its `START TRANSACTION` and savepoints);
    /// on success the primary holds it.
    async fn open_on_primary(&mut self) -> Result<(), String> {
        let d = self
            .route(Want::Primary(RouteReason::InTransaction))
            .map_err(|e| e.to_string())?;
        if self.gate_pass.is_none() {
            let (pass, _) =
                self.ctx.pass_gate().await.map_err(|hold: Duration| {
                    format!("writes held by a switchover for {hold:?}")
                })?;
            self.gate_pass = Some(pass);
        }
        let primary = d.server;
        self.ensure_ready(primary)
            .await
            .map_err(|e| e.to_string())?;
        let mut log = std::mem::take(&mut self.txn_log);
        // With autocommit off the transaction began implicitly and so does the primary's, at
        // the statement itself.
        if log.is_empty() && self.autocommit {
            log.push(FALLBACK_BEGIN.to_vec());
        }
        let deadline = self.ctx.limits().session_replay_timeout;
        let mut failed = None;
        if let Some(b) = self.backends[primary].as_mut() {
            for payload in &log {
                if payload.is_empty() {
                    failed = Some("too many savepoints to replay".into());
                    break;
                }
                let r =
                    tokio::time::timeout(deadline, b.conn.run_consumed(payload, Expect::Simple))
                        .await
                        .unwrap_or(Err(MysqlBackendError::Timeout(deadline)));
                match r {
                    Ok(Consumed::Ok { .. }) => {}
                    Ok(Consumed::Err(e)) => {
                        failed = Some(format!("{} {}", e.code, e.message));
                        break;
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
        } else {
            failed = Some("no primary connection".into());
        }
        if let Some(message) = failed {
            self.txn_log = log;
            // Nothing of the primary's half-open transaction may stay behind.
            let undone = match self.backends[primary].as_mut() {
                Some(b) => {
                    tokio::time::timeout(deadline, b.conn.run_consumed(ROLLBACK, Expect::Simple))
                        .await
                        .is_ok_and(|r| matches!(r, Ok(Consumed::Ok { .. })))
                }
                None => true,
            };
            if !undone {
                self.drop_backend(primary);
            }
            return Err(message);
        }
        self.txn_log = log;
        self.txn = Some(primary);
        self.last_used = Some(primary);
        Ok(())
    }
}
