//! The known differences between the proxy and the primary (issue 21): each entry names one class
//! precisely; a differential test fails on any difference no entry matches.
//!
//! An entry matches a session's FIRST difference only when every field matches: the protocol, all
//! of `combo`'s substrings of the combination name, the statement class, how it was sent, all of
//! `state`'s substrings of the session state the generator recorded, one of `sql` (if any), the
//! part that differs, and the direct and proxied answers ([`Out`]). A later difference in the same
//! session is absorbed as a consequence of the session's first difference only when that one was
//! known. The report prints how many differences each entry absorbed and which entries matched
//! nothing (stale: delete them once their bug is fixed).

use super::{Kind, Outcome, Step};

/// What one side answered.
#[derive(Debug, Clone, Copy)]
pub enum Out {
    /// Any successful answer.
    Ok,
    /// A successful answer shown exactly like this (`Outcome`'s `Display`), e.g. `rows[1]=(on)`.
    Shown(&'static str),
    /// An error with exactly this code (`SQLSTATE`, or `errno/SQLSTATE` on MySQL).
    Err(&'static str),
}

impl Out {
    fn matches(self, o: &Outcome) -> bool {
        match (self, o) {
            (Out::Ok, Outcome::Ok { .. }) => true,
            (Out::Shown(s), Outcome::Ok { .. }) => o.to_string() == s,
            (Out::Err(c), Outcome::Err { code, .. }) => code == c,
            _ => false,
        }
    }
}

/// How the statement was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Text,
    Prepared,
}

/// One known class of difference.
#[derive(Debug)]
pub struct Known {
    /// Short name shown in the report.
    pub id: &'static str,
    /// `pg` or `mysql` (the combination name's first part).
    pub protocol: &'static str,
    /// Substrings the combination name must all contain, e.g. `/transaction_`, `autocommit=0`.
    pub combo: &'static [&'static str],
    /// Statement classes (the generator's `Step::class`), one of which must match.
    pub classes: &'static [&'static str],
    pub sent: Sent,
    /// Substrings the session state must all contain, e.g. `tx=Ro`.
    pub state: &'static [&'static str],
    /// If not empty: the statement contains one of these.
    pub sql: &'static [&'static str],
    /// The part that differs ([`Outcome::diff_kind`]).
    pub differs: &'static str,
    pub direct: Out,
    pub proxied: Out,
    /// Why it is not fixed yet, or why it is inherent.
    pub why: &'static str,
    pub issue: &'static str,
}

impl Known {
    pub fn matches(&self, combo: &str, step: &Step, d: &Outcome, p: &Outcome) -> bool {
        let sent = match step.kind {
            Kind::Prepared(_) => Sent::Prepared,
            _ => Sent::Text,
        };
        combo.starts_with(&format!("{}/", self.protocol))
            && self.combo.iter().all(|c| combo.contains(c))
            && self.classes.contains(&step.class)
            && self.sent == sent
            && self.state.iter().all(|s| step.state.contains(s))
            && (self.sql.is_empty() || self.sql.iter().any(|s| step.sql.contains(s)))
            && d.diff_kind(p) == self.differs
            && self.direct.matches(d)
            && self.proxied.matches(p)
    }
}

/// The entry matching a session's first difference, if any.
pub fn find(combo: &str, step: &Step, d: &Outcome, p: &Outcome) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.matches(combo, step, d, p))
}

/// Issue 21 of the tracker.
const ISSUE: &str = "issue 21";

/// The list. Keep it short: delete an entry as soon as the report calls it stale.
pub static KNOWN: &[Known] = &[
    Known {
        id: "pg-listen-in-read-only-tx",
        protocol: "pg",
        combo: &[],
        classes: &["listen"],
        sent: Sent::Text,
        state: &["tx=Ro"],
        sql: &["LISTEN "],
        differs: "ok vs error",
        direct: Out::Ok,
        proxied: Out::Err("25006"),
        why: "a transaction begun READ ONLY runs on a replica, which refuses LISTEN ('cannot \
              execute LISTEN during recovery'). The proxy moves such a transaction to the primary \
              before the LISTEN when it can (src/frontend/pg/relocate.rs: no read yet, or READ \
              COMMITTED), not when a REPEATABLE READ or SERIALIZABLE transaction already read (its \
              snapshot is the replica's and cannot move: fail-closed, the replica's refusal \
              stands), or when something that is not run again on the primary ran in it before \
              (a cursor, an error, a SET LOCAL sent with other statements). Direct, the primary runs LISTEN in a read-only transaction. The \
              session is not pinned to the replica for it (pg_fidelity \
              a_refused_listen_does_not_pin_to_the_replica)",
        issue: ISSUE,
    },
    Known {
        id: "mysql-warnings-kept-over-tableless-statements",
        protocol: "mysql",
        combo: &[],
        classes: &["diag"],
        sent: Sent::Text,
        state: &[],
        sql: &[
            "SHOW COUNT(*) WARNINGS",
            "@@warning_count",
            "SHOW WARNINGS",
            "SHOW ERRORS",
        ],
        differs: "rows",
        direct: Out::Ok,
        proxied: Out::Ok,
        why: "MariaDB clears the warnings only at a statement that names a table (diag.rs says \
              so): after INSERT ... (an error) ; SELECT FOUND_ROWS() ; SELECT 1/0 the primary's \
              SHOW WARNINGS still lists the INSERT's errors. The proxy reads the diagnostics of \
              the previous statement, where it ran (a replica here), which has none; in \
              transaction pooling also when the statement with warnings ran on a connection \
              that went back. Not fixed: the proxy would have to keep, per session, where the \
              last statement that cleared the diagnostics ran (diag.rs, being reworked). The \
              result-set case (CLIENT_DEPRECATE_EOF) was a real bug, fixed in c7e07b4 (about 20 \
              of these per long run before). Open",
        issue: ISSUE,
    },
    Known {
        id: "mysql-found-rows-not-the-last-select",
        protocol: "mysql",
        combo: &[],
        classes: &["diag"],
        sent: Sent::Text,
        state: &[],
        sql: &["FOUND_ROWS()"],
        differs: "rows",
        direct: Out::Ok,
        proxied: Out::Ok,
        why: "FOUND_ROWS() counts the session's last SELECT, which often ran on another server \
              (a replica, or the driver's connect-time query the proxy answers itself) than the \
              writes after it. The proxy reads it where that SELECT ran while the connection is \
              attached (9184bf9, session pooling); in transaction pooling that connection went \
              back to its pool (or the statement is in a transaction held elsewhere) and the \
              answer is another connection's count or 0. Exact would need the proxy to count the \
              rows it relays and replay the count (SQL_CALC_FOUND_ROWS: keep the connection); \
              not done (diag.rs, being reworked)",
        issue: ISSUE,
    },
    Known {
        id: "mysql-insert-id-transaction-pooling",
        protocol: "mysql",
        combo: &["/transaction_"],
        classes: &["diag"],
        sent: Sent::Text,
        state: &[],
        sql: &["LAST_INSERT_ID()", "@@last_insert_id", "@@identity"],
        differs: "rows",
        direct: Out::Ok,
        proxied: Out::Ok,
        why: "transaction pooling: when the connection holding the session's last insert id went \
              back to its pool, the proxy restores it (DO LAST_INSERT_ID(n) before the read, or \
              answers itself) from the OK packets it saw. An OK's insert id is mysql_insert_id(), \
              not LAST_INSERT_ID(): after an explicit AUTO_INCREMENT value (REPLACE INTO t (id, \
              ...) VALUES (2, ...), INSERT ... ON DUPLICATE KEY UPDATE) it is that value or 0 \
              while the server keeps the last generated id (seen: direct 50, proxied 2). Exact \
              would need a SELECT LAST_INSERT_ID() on the connection before it goes back (a round \
              trip per insert); a cost decision for the lead (insert_id.rs / diag.rs)",
        issue: ISSUE,
    },
];
