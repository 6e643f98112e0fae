//! Session diagnostics under pooling: a read of what the session's previous statement left
//! (`ROW_COUNT()`, `FOUND_ROWS()`, `SHOW WARNINGS | ERRORS`, `@@warning_count`, `GET
//! DIAGNOSTICS`...) or of its last insert id runs on the server connection that has them.
//!
//! - After an answer that leaves something to read (an ERR, affected rows, an insert id,
//!   warnings, a `SQL_CALC_FOUND_ROWS` result), transaction pooling keeps that connection
//!   attached until the client's next command, at most `pool.diagnostics_hold`. A next command
//!   that reads diagnostics runs there; any other command ends the hold (it may still use the
//!   connection when it goes to the same server: no pool round trip), and the connection goes
//!   back after it as usual.
//! - A read of the previous statement's diagnostics goes to the connection that ran that
//!   statement while it is attached (session pooling too: a replica's warnings are read on the
//!   replica). A read of the last insert id goes to the connection that generated it.
//! - When that connection is gone (the answer left nothing, or the hold ran out), the read runs
//!   on another connection after one statement that leaves the same trivial diagnostics (no
//!   warnings or errors; ROW_COUNT() -1 after rows, 0 after an OK; FOUND_ROWS() 0) and the
//!   session's last insert id, as the proxy saw it in OK packets (`LAST_INSERT_ID(n)`).

use std::time::Instant;

use super::answer::Answer;
use super::*;
use crate::backend::mysql::Consumed;
use crate::classify::mysql_diag::DiagUse;
use crate::wire::mysql::response::Expect;

/// A subquery on a table every account can read, with no rows.
const NO_ROWS: &str = "SELECT 1 FROM information_schema.ENGINES LIMIT 0";

/// Where the session's diagnostics live (fields of [`Relay`]).
#[derive(Debug, Default)]
pub(super) struct Diag {
    /// What the command being run does with diagnostics.
    pub(super) now: DiagUse,
    /// The server whose attached connection ran the session's previous statement.
    pub(super) prev_at: Option<usize>,
    /// That statement answered with rows (else with an OK or an ERR).
    pub(super) prev_rows: bool,
    /// The server whose attached connection ran the session's last statement answered with
    /// rows: what `FOUND_ROWS()` counts (a write in between does not change it).
    pub(super) rows_at: Option<usize>,
    /// The server whose attached connection holds the session's last insert id.
    pub(super) insert_id_at: Option<usize>,
    /// Transaction pooling: a connection kept for a diagnostics read, until this deadline.
    pub(super) hold: Option<(usize, Instant)>,
    /// `ROW_COUNT()` after the session's previous statement, as its answer said (`None`: not
    /// known, e.g. a prepare or a command that is no statement came last and left it alone).
    pub(super) row_count: Option<i64>,
}

impl Relay {
    /// A command arrived: note what it does with diagnostics (`now`, from its statement text);
    /// a command that does not read them ends the hold.
    pub(super) fn diag_next(&mut self, cmd: u8, now: DiagUse) {
        self.diag.now = now;
        let keeps = match cmd {
            COM_QUERY | COM_STMT_PREPARE | COM_STMT_EXECUTE => self.diag.now.reads(),
            // No statement runs: nothing changes on the server.
            COM_PING | COM_STMT_SEND_LONG_DATA | COM_STMT_CLOSE | COM_STMT_RESET => true,
            _ => false,
        };
        if !keeps {
            if let Some((server, _)) = self.diag.hold.take() {
                // The connection may serve this command too (no pool round trip), but not ahead
                // of sessions waiting for it: a session whose every statement leaves diagnostics
                // would otherwise keep it for as long as it sends.
                self.release_if_wanted(server);
            }
        }
    }

    /// The deadline of the current hold, if any.
    pub(super) fn diag_deadline(&self) -> Option<Instant> {
        self.diag.hold.map(|(_, d)| d)
    }

    /// The hold ran out: the connection goes back to its pool.
    pub(super) fn diag_expired(&mut self) {
        self.diag.hold = None;
        self.release_idle();
    }

    /// The connection `FOUND_ROWS()` reads: the one that ran the last statement answered with
    /// rows while it is attached, else (transaction pooling gave it back) the previous
    /// statement's, as for the other diagnostics.
    fn found_rows_at(&self) -> Option<usize> {
        self.diag
            .rows_at
            .filter(|&s| self.backends[s].is_some())
            .or(self.diag.prev_at)
    }

    /// The proxy answered a statement itself (rows, no warnings): the session's previous
    /// statement ran on no connection.
    pub(super) fn diag_answered_locally(&mut self) {
        self.diag.prev_at = None;
        self.diag.prev_rows = true;
        self.diag.row_count = Some(-1);
        self.diag.rows_at = None;
        self.diag.hold = None;
        self.release_idle();
    }

    /// `ROW_COUNT()` for a read that cannot run on the connection that ran the session's
    /// previous statement (it is no longer the session's), when the proxy knows it.
    pub(super) fn diag_row_count_here(&self) -> Option<i64> {
        if self.diag.prev_at.is_some() {
            return None;
        }
        self.diag.row_count
    }

    /// The server connection kept for a diagnostics read, if any.
    pub(super) fn diag_held(&self) -> Option<usize> {
        self.diag.hold.map(|(s, _)| s)
    }

    /// `server`'s connection left the session: what it held is no longer at hand.
    pub(super) fn diag_detached(&mut self, server: usize) {
        let d = &mut self.diag;
        if d.prev_at == Some(server) {
            d.prev_at = None;
        }
        if d.rows_at == Some(server) {
            d.rows_at = None;
        }
        if d.insert_id_at == Some(server) {
            d.insert_id_at = None;
        }
        if d.hold.is_some_and(|(s, _)| s == server) {
            d.hold = None;
        }
    }

    /// COM_RESET_CONNECTION or COM_CHANGE_USER: the server forgot the session's insert id.
    pub(super) fn diag_reset(&mut self) {
        self.last_insert_id = 0;
        self.diag.row_count = None;
        self.diag.insert_id_at = None;
        self.diag.hold = None;
    }

    /// Where a command that reads diagnostics must run, when a connection the session holds has
    /// them: the previous statement's connection, or the one with the last insert id. A replica
    /// takes it only when the class would let it read there (Read, or a write only by its
    /// diagnostic functions).
    pub(super) fn diag_target(&self, class: Classification) -> Option<Decision> {
        let now = self.diag.now;
        let server = if now.found_rows {
            self.found_rows_at()?
        } else if now.previous {
            self.diag.prev_at?
        } else if now.insert_id {
            self.diag.insert_id_at?
        } else {
            return None;
        };
        self.backends[server].as_ref()?;
        let topo = self.topology();
        let replica_ok = match class.intent {
            Intent::Read => true,
            Intent::Write => matches!(class.reason, Reason::WriteFunction | Reason::Session),
            _ => false,
        };
        let d = fixed(server, &topo, RouteReason::Class(class.reason));
        (d.route == Route::Primary || replica_ok).then_some(d)
    }

    /// Transaction pooling: `SELECT LAST_INSERT_ID()` answered by the proxy when no connection
    /// the session holds has its last insert id.
    pub(super) fn insert_id_local(&self) -> bool {
        self.pooling() && self.diag.insert_id_at.is_none()
    }

    /// Before a command that reads diagnostics runs on `server`: when that connection is not
    /// the one that has them, one statement first leaves it the session's trivial diagnostics
    /// and last insert id (see the module comment).
    pub(super) async fn diag_prepare(&mut self, server: usize) -> Result<(), MysqlBackendError> {
        let now = self.diag.now;
        let at = if now.found_rows {
            self.found_rows_at()
        } else {
            self.diag.prev_at
        };
        let clean = now.previous && at != Some(server);
        let restore_id = now.insert_id && self.diag.insert_id_at != Some(server);
        if !(clean || restore_id && !now.previous) {
            return Ok(());
        }
        let id = if self.diag.insert_id_at == Some(server) {
            "LAST_INSERT_ID()".to_string()
        } else {
            format!("LAST_INSERT_ID({})", self.last_insert_id)
        };
        // The server clears warnings only at a statement that names a table: an empty
        // subquery on one (optimized away) does.
        // FOUND_ROWS() counts the last SELECT: the clean statement must be one.
        let sql = if clean && (self.diag.prev_rows || now.found_rows) {
            format!("SELECT 1 FROM DUAL WHERE {id} IS NULL AND ({NO_ROWS}) IS NULL")
        } else if clean {
            format!("DO {id}, ({NO_ROWS})")
        } else {
            format!("DO {id}")
        };
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(COM_QUERY);
        payload.extend_from_slice(sql.as_bytes());
        let deadline = self.ctx.limits().session_replay_timeout;
        let Some(b) = self.backends[server].as_mut() else {
            return Err(MysqlBackendError::Closed);
        };
        let r = tokio::time::timeout(deadline, b.conn.run_consumed(&payload, Expect::ResultSet))
            .await
            .map_err(|_| MysqlBackendError::Timeout(deadline))??;
        if let Consumed::Err(e) = r {
            return Err(MysqlBackendError::Protocol(format!(
                "could not set up diagnostics: {} {}",
                e.code, e.message
            )));
        }
        // The connection has the session's insert id now (it had it, or was just given it).
        self.diag.insert_id_at = Some(server);
        Ok(())
    }

    /// After a complete answer on `server`: where the session's diagnostics now are, and whether
    /// transaction pooling keeps the connection for the next command.
    pub(super) fn diag_after(&mut self, server: usize, a: &Answer) {
        if !a.statement {
            // A prepare (or a command without answer) is no statement: what the previous one
            // left stays where it is.
            return;
        }
        let d = &mut self.diag;
        d.prev_at = Some(server);
        d.prev_rows = a.rows;
        d.row_count = match a.affected {
            Some(n) if !a.saw_err && !a.rows => i64::try_from(n).ok(),
            _ => Some(-1),
        };
        if a.rows {
            d.rows_at = Some(server);
        }
        let new_id = a.insert_id.is_some_and(|id| id != 0) && !a.saw_err;
        if new_id || d.now.insert_id {
            // `LAST_INSERT_ID(expr)` sets it too, in any statement.
            d.insert_id_at = Some(server);
        }
        let leaves = a.leaves_diag || a.saw_err || d.now.calc_found_rows;
        self.diag.hold = None;
        if leaves {
            self.diag_hold(server);
        }
    }

    /// Transaction pooling: keep `server`'s connection until the client's next command, at most
    /// `pool.diagnostics_hold` (`0s`: not at all).
    pub(super) fn diag_hold(&mut self, server: usize) {
        let hold = self.ctx.config().pool.diagnostics_hold;
        if self.pooled && !hold.is_zero() {
            self.diag.hold = Some((server, Instant::now() + hold));
        }
    }
}
