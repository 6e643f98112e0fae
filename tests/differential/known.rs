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
        why:
            "new class (1): a transaction begun READ ONLY runs on a standby, which refuses LISTEN \
              ('cannot execute LISTEN during recovery'); the classifier would have to send a \
              read-only transaction that LISTENs (or calls pg_notify) to the primary, which it \
              cannot know at BEGIN. Being fixed with the PG primary-only state work",
        issue: ISSUE,
    },
    Known {
        id: "pg-show-transaction-read-only-on-standby",
        protocol: "pg",
        combo: &[],
        classes: &["read-setting"],
        sent: Sent::Text,
        state: &["tx=None", "ro=false"],
        sql: &["SHOW transaction_read_only"],
        differs: "rows",
        direct: Out::Shown("rows[1]=(off) affected=0"),
        proxied: Out::Shown("rows[1]=(on) affected=0"),
        why: "new class (2): outside a transaction the SHOW is a read and a standby answers it \
              with its own `on`; reads of primary-only state are being routed to the primary \
              (work in progress, not merged yet)",
        issue: ISSUE,
    },
    Known {
        id: "pg-prepared-missing-after-refused-parse",
        protocol: "pg",
        combo: &["/transaction_"],
        classes: &[
            "read-static-prepared",
            "read-own-prepared",
            "read-cross-prepared",
        ],
        sent: Sent::Prepared,
        state: &["aborted=false"],
        sql: &[],
        differs: "ok vs error",
        direct: Out::Ok,
        proxied: Out::Err("26000"),
        why: "transaction pooling, a statement the client prepared while its transaction was \
              aborted (after a write refused in BEGIN ... READ ONLY): a later execution gets \
              'prepared statement sN does not exist'; class (8) (26000 instead of 25P02 when \
              that happens inside an aborted transaction, seen in an earlier long run) is the same. \
              Likely cause (read in src/, not proven by a test): the proxy records which \
              statements a pooled server connection holds when it sends the Parse \
              (state::plan -> remember, before the server answers) and does not undo it when the \
              server refuses the Parse (25P02 in an aborted transaction), so a later Bind on that \
              connection goes without a re-Parse (PostgreSQL looks the statement up before it \
              checks for an aborted transaction, hence 26000 there too). Not fixed yet",
        issue: ISSUE,
    },
    Known {
        id: "mysql-diag-transaction-pooling",
        protocol: "mysql",
        combo: &["/transaction_"],
        classes: &["diag"],
        sent: Sent::Text,
        state: &["tx=None"],
        sql: &["FOUND_ROWS()", "SHOW COUNT(*) WARNINGS", "@@warning_count"],
        differs: "rows",
        direct: Out::Ok,
        proxied: Out::Ok,
        why: "item 3, first version only: under transaction pooling an autocommit statement's \
          FOUND_ROWS() / warning count is asked on whichever pooled connection the next statement \
          gets (the proxied answer is another connection's: 5 rows for 1, 0 warnings for 2); the \
          fix that keeps these per client session is being finished",
        issue: ISSUE,
    },
];
