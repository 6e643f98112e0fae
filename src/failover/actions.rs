//! What failover asks of a database server (promote, repoint, fence, positions), independent of
//! the protocol; [`PgActions`](super::actions_pg::PgActions) and
//! [`MysqlActions`](super::actions_mysql::MysqlActions) implement it against real servers.

use std::cmp::Ordering;
use std::future::Future;
use std::time::Duration;

use crate::position::gtid::parse_gtid_list;

/// A replication position, comparable between servers of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// PostgreSQL WAL position in bytes.
    Lsn(u64),
    /// MariaDB GTID list (`domain-server-seq,...`), as `@@gtid_binlog_pos` / `Gtid_IO_Pos` print it.
    Gtid(String),
}

impl Position {
    /// Progress order: LSNs by value; GTID lists by their per-domain sequence numbers (a list that
    /// is ahead or equal in every domain is ahead; incomparable lists by the sum of sequence
    /// numbers). `None` when the kinds differ or a GTID list does not parse.
    pub fn progress_cmp(&self, other: &Position) -> Option<Ordering> {
        match (self, other) {
            (Position::Lsn(a), Position::Lsn(b)) => Some(a.cmp(b)),
            (Position::Gtid(a), Position::Gtid(b)) => {
                let a = parse_gtid_list(a)?;
                let b = parse_gtid_list(b)?;
                let seq = |list: &[crate::position::gtid::Gtid], d: u32| {
                    list.iter()
                        .filter(|g| g.domain == d)
                        .map(|g| g.seq)
                        .max()
                        .unwrap_or(0)
                };
                let mut domains: Vec<u32> = a.iter().chain(&b).map(|g| g.domain).collect();
                domains.sort_unstable();
                domains.dedup();
                let (mut ahead, mut behind) = (false, false);
                for d in &domains {
                    match seq(&a, *d).cmp(&seq(&b, *d)) {
                        Ordering::Greater => ahead = true,
                        Ordering::Less => behind = true,
                        Ordering::Equal => {}
                    }
                }
                Some(match (ahead, behind) {
                    (false, false) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    (true, true) => {
                        let sum = |l: &[_]| domains.iter().map(|d| seq(l, *d)).sum::<u64>();
                        sum(&a).cmp(&sum(&b))
                    }
                })
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Lsn(l) => write!(f, "{:X}/{:X}", l >> 32, l & 0xffff_ffff),
            Position::Gtid(g) => write!(f, "gtid {g:?}"),
        }
    }
}

/// Why an action failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    #[error("connect to {server} failed: {message}")]
    Connect { server: String, message: String },
    #[error("{server}: {statement} failed: {message}")]
    Sql {
        server: String,
        statement: String,
        message: String,
    },
    #[error("{server}: {what} did not finish within {after:?}")]
    Timeout {
        server: String,
        what: String,
        after: Duration,
    },
    #[error("{server}: {message}")]
    Refused { server: String, message: String },
}

/// The failover actions on one cluster's servers, addressed by their index in the cluster's
/// `servers` list. Every action connects with the cluster's `failover.user`, runs under a
/// deadline, logs what it does (`tracing::info!`, never a password) and is idempotent: running it
/// again after it succeeded (or half-succeeded) is safe and ends in the same state.
pub trait Actions: Send + Sync + 'static {
    /// The replica's most recent *received* position: PostgreSQL `pg_last_wal_receive_lsn()`
    /// (falling back to the replay LSN when NULL); MariaDB `Gtid_IO_Pos` from `SHOW SLAVE STATUS`
    /// (falling back to `@@gtid_slave_pos`). This ranks promotion candidates.
    fn received_position(
        &self,
        server: usize,
    ) -> impl Future<Output = Result<Position, ActionError>> + Send;

    /// A primary's current write position: `pg_current_wal_lsn()` / `@@gtid_binlog_pos`.
    fn primary_position(
        &self,
        server: usize,
    ) -> impl Future<Output = Result<Position, ActionError>> + Send;

    /// Wait until replica `server` has applied `pos` (PostgreSQL replay LSN >= pos; MariaDB
    /// `MASTER_GTID_WAIT(pos)`), or, with `None`, everything it has received so far. Fails with
    /// `Timeout` after `timeout`.
    fn wait_applied(
        &self,
        server: usize,
        pos: Option<Position>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Make replica `server` the primary. PostgreSQL: `SELECT pg_promote(true, <timeout s>)`, then
    /// clear `default_transaction_read_only` if a fence had set it (ALTER SYSTEM RESET + reload).
    /// MariaDB: `STOP SLAVE IO_THREAD`, wait (up to `timeout`) for the SQL thread to apply the
    /// relay log (`MASTER_GTID_WAIT` of `Gtid_IO_Pos`), `STOP SLAVE`, `RESET SLAVE ALL`,
    /// `SET GLOBAL read_only = 0`. Ok when the server already is a writable primary.
    fn promote(
        &self,
        server: usize,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Point replica `server` at `primary`. PostgreSQL: read `primary_conninfo`, replace its host and
    /// port with the new primary's (keep user, password, application_name...), `ALTER SYSTEM SET
    /// primary_conninfo`, `pg_reload_conf()`; when the replica uses `primary_slot_name`, create that
    /// physical slot on the new primary if missing. MariaDB: `STOP SLAVE; CHANGE MASTER TO
    /// MASTER_HOST=.., MASTER_PORT=.., MASTER_USE_GTID=slave_pos; START SLAVE` (credentials kept).
    /// Ok when it already replicates from `primary`.
    fn repoint(
        &self,
        server: usize,
        primary: usize,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Stop `server` taking writes from anyone but superusers. PostgreSQL: `ALTER SYSTEM SET
    /// default_transaction_read_only = on`, `pg_reload_conf()`, and terminate the other client
    /// backends (not replication, not our own connection) so no open session keeps writing.
    /// MariaDB: `SET GLOBAL read_only = 1` and `KILL CONNECTION` the other client connections
    /// (not replication threads, not system users, not ours).
    fn fence(&self, server: usize) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// MariaDB only (PostgreSQL answers `Refused`): turn fenced former primary `server` into a
    /// replica of `primary` with the cluster's `failover.replication` login:
    /// `SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos; CHANGE MASTER TO .. MASTER_USE_GTID=slave_pos;
    /// START SLAVE`, keeping `read_only = 1`.
    fn rejoin(
        &self,
        server: usize,
        primary: usize,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Position {
        Position::Gtid(s.into())
    }

    #[test]
    fn lsn_positions_order_by_value() {
        assert_eq!(
            Position::Lsn(5).progress_cmp(&Position::Lsn(7)),
            Some(Ordering::Less)
        );
        assert_eq!(Position::Lsn(5).progress_cmp(&g("0-1-5")), None);
    }

    #[test]
    fn gtid_positions_order_per_domain() {
        assert_eq!(
            g("0-1-10").progress_cmp(&g("0-1-9")),
            Some(Ordering::Greater)
        );
        assert_eq!(
            g("0-2-10").progress_cmp(&g("0-1-10")),
            Some(Ordering::Equal)
        );
        assert_eq!(g("").progress_cmp(&g("0-1-1")), Some(Ordering::Less));
        assert_eq!(
            g("0-1-10,1-1-3").progress_cmp(&g("0-1-10")),
            Some(Ordering::Greater)
        );
        // Incomparable: by the sum.
        assert_eq!(
            g("0-1-10,1-1-1").progress_cmp(&g("0-1-8,1-1-5")),
            Some(Ordering::Less)
        );
        assert_eq!(g("junk").progress_cmp(&g("0-1-1")), None);
    }
}
