//! SQL text -> routing classification; pure, per dialect, fails closed, with a decision cache.
//!
//! The session layer calls [`Classifier::classify`] with the full text of a simple Query or of a
//! Parse message. Anything not proven read-only is not [`Intent::Read`].

pub mod cache;
pub mod fast;
pub mod hint;
pub mod mysql;
pub mod mysql_diag;
mod mysql_functions;
mod mysql_query;
#[cfg(test)]
#[path = "mysql_tests.rs"]
mod mysql_tests;
pub mod mysql_wait_timeout;
pub mod pg;
mod pg_functions;
pub mod pg_isolation;
pub mod pg_primary_state;
mod pg_query;
pub mod pg_setting;
#[cfg(test)]
mod tests;

use std::sync::Arc;

/// What a statement (or multi-statement string) needs from the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Provably read-only: may go to a replica.
    Read,
    /// Must run on the primary (writes, DDL, unknown, unparsable, volatile functions...).
    Write,
    /// BEGIN / START TRANSACTION. `read_only` when `READ ONLY` was given (may use a replica).
    Begin { read_only: bool },
    /// COMMIT / ROLLBACK / END / ABORT / SAVEPOINT / RELEASE / PREPARE TRANSACTION...: goes wherever
    /// the transaction is (or anywhere when none is open).
    TxnControl,
    /// SET / RESET / DISCARD / SET ROLE ... outside LOCAL: session state that must hold on every
    /// backend the session uses. The session records the text and replays it.
    SessionSet,
    /// Runs on the primary and pins the session there until it ends (temp tables, LISTEN,
    /// session advisory locks, SQL-level PREPARE, set_config(..., false) ...).
    Pin,
    /// `SET switchyard.route = primary | replica | auto` (also `RESET switchyard.route`):
    /// answered by the proxy itself, never sent to a server.
    ProxyRoute(RouteOverride),
}

/// Session-level route override set with `SET switchyard.route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteOverride {
    Auto,
    Primary,
    Replica,
}

/// A leading comment hint: `/* switchyard: primary */` or `/* switchyard: replica */`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hint {
    Primary,
    Replica,
}

/// Why the classifier decided as it did; used as the `reason` metric label and in debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Read,
    Write,
    Ddl,
    LockingRead,
    WriteFunction,
    ModifyingCte,
    SelectInto,
    Transaction,
    Session,
    TempTable,
    Listen,
    AdvisoryLock,
    SqlPrepare,
    Unknown,
    ParseError,
    Hint,
    Empty,
    /// MySQL `LOCK TABLES`, `FLUSH TABLES WITH READ LOCK`, `LOCK INSTANCE FOR BACKUP`.
    LockTables,
    /// MySQL user variables (`@x`): assigned by SET, `SELECT ... INTO @x` or `@x := ...`.
    UserVariable,
    /// MySQL `CALL` (or a MariaDB `BEGIN NOT ATOMIC` block).
    StoredProcedure,
    /// MySQL `LOAD DATA LOCAL INFILE` / `LOAD XML LOCAL INFILE`.
    LocalInfile,
    /// A PostgreSQL read of per-instance state a standby answers differently (see
    /// [`pg_primary_state`]): runs on the primary.
    PrimaryState,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Read => "read",
            Reason::Write => "write",
            Reason::Ddl => "ddl",
            Reason::LockingRead => "locking_read",
            Reason::WriteFunction => "write_function",
            Reason::ModifyingCte => "modifying_cte",
            Reason::SelectInto => "select_into",
            Reason::Transaction => "transaction",
            Reason::Session => "session",
            Reason::TempTable => "temp_table",
            Reason::Listen => "listen",
            Reason::AdvisoryLock => "advisory_lock",
            Reason::SqlPrepare => "sql_prepare",
            Reason::Unknown => "unknown",
            Reason::ParseError => "parse_error",
            Reason::Hint => "hint",
            Reason::Empty => "empty",
            Reason::LockTables => "lock_tables",
            Reason::UserVariable => "user_variable",
            Reason::StoredProcedure => "stored_procedure",
            Reason::LocalInfile => "local_infile",
            Reason::PrimaryState => "primary_state",
        }
    }
}

/// The classifier's decision for one SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    pub intent: Intent,
    pub reason: Reason,
    /// Leading-comment hint, if present. The router applies it (a Primary hint always wins;
    /// a Replica hint is honoured only for statements that are not writes/pins/txn control).
    pub hint: Option<Hint>,
}

/// Which SQL dialect the classifier reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// PostgreSQL ([`pg::classify`]).
    #[default]
    Postgres,
    /// MySQL / MariaDB ([`mysql::classify`]).
    Mysql,
}

/// A classification without a hint (the dialect classifiers fill the hint in last).
pub(crate) fn cls(intent: Intent, reason: Reason) -> Classification {
    Classification {
        intent,
        reason,
        hint: None,
    }
}

/// Combine the classifications of the statements of one multi-statement string: a proxy-route SET
/// inside one is not supported (Write), any pin wins, all reads are a read, reads and session
/// settings are a session setting, anything else is a write with the first non-read's reason.
pub(crate) fn combine_statements(parts: &[Classification]) -> Classification {
    match parts {
        [] => return cls(Intent::Read, Reason::Empty),
        [one] => return *one,
        _ => {}
    }
    if parts
        .iter()
        .any(|c| matches!(c.intent, Intent::ProxyRoute(_)))
    {
        return cls(Intent::Write, Reason::Unknown);
    }
    if let Some(pin) = parts.iter().find(|c| c.intent == Intent::Pin) {
        return *pin;
    }
    if parts.iter().all(|c| c.intent == Intent::Read) {
        return cls(Intent::Read, Reason::Read);
    }
    if parts
        .iter()
        .all(|c| matches!(c.intent, Intent::Read | Intent::SessionSet))
    {
        return cls(Intent::SessionSet, Reason::Session);
    }
    let reason = parts
        .iter()
        .find(|c| c.intent != Intent::Read)
        .map_or(Reason::Unknown, |c| c.reason);
    cls(Intent::Write, reason)
}

/// Settings the classifier needs.
#[derive(Debug, Clone, Default)]
pub struct ClassifierSettings {
    /// Extra function names (lower case, without schema) treated as writers.
    pub write_functions: Vec<String>,
    /// Maximum cached decisions (0 disables the cache).
    pub cache_size: usize,
    /// SQL dialect of the clients' statements.
    pub dialect: Dialect,
}

/// Thread-safe classifier (PostgreSQL or MySQL dialect) with a decision cache. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Classifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ClassifierSettings,
    cache: cache::DecisionCache,
}

impl Classifier {
    pub fn new(settings: ClassifierSettings) -> Self {
        let cache = cache::DecisionCache::new(settings.cache_size);
        Classifier {
            inner: Arc::new(Inner { settings, cache }),
        }
    }

    /// Classify one simple-Query or Parse text (may hold several statements).
    /// A plain `SELECT` ([`fast::plain_select`]) is answered without tokenizer or cache.
    pub fn classify(&self, sql: &str) -> Classification {
        if fast::plain_select(sql, self.inner.settings.dialect) {
            return cls(Intent::Read, Reason::Read);
        }
        if let Some(c) = self.inner.cache.get(sql) {
            return c;
        }
        let extra = &self.inner.settings.write_functions;
        let c = match self.inner.settings.dialect {
            Dialect::Postgres => pg::classify(sql, extra),
            Dialect::Mysql => mysql::classify(sql, extra),
        };
        self.inner.cache.insert(sql, c);
        c
    }
}
