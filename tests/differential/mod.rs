//! Differential testing core: a seeded workload run twice, straight to the primary and through the
//! proxy, compared statement by statement; shared by `differential_pg.rs` and `differential_mysql.rs`.
//!
//! # Determinism
//! A tiny local PRNG ([`Rng`], SplitMix64: the same numbers on every platform and `rand` version)
//! seeded from `SWITCHYARD_DIFF_SEED` (default [`DEFAULT_SEED`]) and the combination's index builds
//! one script per session and one global schedule (which session runs its next statement). Both
//! runs follow that schedule one statement at a time, each awaited before the next starts, so the
//! direct run and the proxied run execute the same global order. They use two fresh databases with
//! identical setup, so sequences, auto-increment ids and row contents match. Sessions only ever
//! write rows they own (their own table `own_<s>`, rows `sid = s` of the shared table; MySQL only
//! inserts into the shared table), so no statement waits for another session's lock.
//!
//! # What a read may look at (the visibility rule)
//! Through the proxy a read may run on a replica. What the proxy promises depends on the level:
//! * `strong`, `global`: every read sees everything committed before it was sent, so any read is
//!   compared, including other sessions' rows (the shared table as a whole).
//! * `read_your_writes`: a session sees its own writes, not other sessions' recent ones. Reads
//!   look only at the static table (written at setup, replicas caught up before the run starts) and
//!   at the session's own rows, and at its own rows only once it has written on its *current*
//!   connection (the proxy tracks the write position per client connection; a reconnect starts a
//!   new session: the first write on it covers everything written before, since it waits for a
//!   later position).
//! * `eventual`: staleness is allowed, so reads outside a transaction look only at the static
//!   table; writes, errors, settings, temp tables, prepared statements and diagnostics are still
//!   compared. Inside a transaction that started read-write (`BEGIN` on PostgreSQL,
//!   `START TRANSACTION` on MySQL) the transaction runs on the primary, so the rule of
//!   `read_your_writes` applies there.
//!
//! Session-scoped things (temp tables, settings, `LAST_INSERT_ID()`, `ROW_COUNT()`, notices,
//! warnings, cursors, notifications to self) are compared at every level.
//!
//! # What is compared
//! Rows (as text; every query orders its rows), SQLSTATE (PostgreSQL) or `errno/SQLSTATE` (MySQL)
//! of errors (messages are shown, not compared), the command-complete count or affected rows, the
//! last insert id, the notices' SQLSTATEs or the warning count, and the notifications a session
//! receives from itself (channel, payload, and whether the sender pid equals the
//! pid of the session's BackendKeyData, as the fix of issue 21 item 4 promises). Not covered: MySQL server-side
//! cursors (mysql_async has no COM_STMT_FETCH), notifications between sessions (their arrival
//! time is not part of the answer). Temp tables run on MariaDB only under row-based binlogging
//! (see `mysql_gen`).
//!
//! # Modes
//! Short mode (default, in `cargo test`): every pooling mode x consistency level once, server
//! settings rotated so each value appears in both pooling modes. Long mode:
//! `SWITCHYARD_DIFF_STATEMENTS=100000` spreads that many compared statements over every
//! combination of settings. `SWITCHYARD_DIFF_COMBO=<name>` runs one combination only.
//! `SWITCHYARD_DIFF_SELFCHECK=1` sends the second run to the primary as well (expect 0
//! differences: the harness's own determinism).
#![allow(dead_code)]

pub mod drive;
pub mod known;
pub mod mysql_gen;
pub mod mysql_run;
pub mod pg_gen;
pub mod pg_run;
pub mod report;

use std::fmt;

/// Seed used when `SWITCHYARD_DIFF_SEED` is not set.
pub const DEFAULT_SEED: u64 = 21;
/// Sessions per combination.
pub const SESSIONS: usize = 6;

/// SplitMix64: small, fast, and stable across platforms and crate versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Index into `weights`, chosen with probability proportional to each weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = (self.next_u64() % u64::from(total.max(1))) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Consistency level of a proxy cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Eventual,
    ReadYourWrites,
    Global,
    Strong,
}

pub const LEVELS: [Level; 4] = [
    Level::Eventual,
    Level::ReadYourWrites,
    Level::Global,
    Level::Strong,
];

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Eventual => "eventual",
            Level::ReadYourWrites => "read_your_writes",
            Level::Global => "global",
            Level::Strong => "strong",
        }
    }

    /// Reads may look at other sessions' recent writes.
    pub fn cross_session(self) -> bool {
        matches!(self, Level::Global | Level::Strong)
    }
}

/// What a statement may read, given the level and the session's state (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Only the static table.
    Static,
    /// The static table and the session's own rows.
    Own,
    /// Anything.
    All,
}

/// The read scope of a session: `in_rw_tx` = inside a transaction that started read-write,
/// `wrote` = has written on its current connection.
pub fn scope(level: Level, in_rw_tx: bool, wrote: bool) -> Scope {
    if level.cross_session() {
        Scope::All
    } else if in_rw_tx || (level == Level::ReadYourWrites && wrote) {
        Scope::Own
    } else {
        Scope::Static
    }
}

/// Pooling mode of a proxy cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Session,
    Transaction,
}

impl Pool {
    pub fn name(self) -> &'static str {
        match self {
            Pool::Session => "session",
            Pool::Transaction => "transaction",
        }
    }
}

/// How a step is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Simple query protocol / COM_QUERY.
    Text,
    /// Extended protocol (Parse/Bind/Execute of a statement prepared once per connection) /
    /// COM_STMT_PREPARE + COM_STMT_EXECUTE.
    Prepared(Vec<Param>),
    /// Close the connection and open a new one (same database, same user).
    Reconnect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// One statement of a session's script.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: Kind,
    pub sql: String,
    /// Class of the statement (groups differences in the report), e.g. `read-own`.
    pub class: &'static str,
    /// The session's state as the generator believes it, e.g. `tx=rw sc=off`.
    pub state: String,
}

impl Step {
    pub fn text(class: &'static str, sql: impl Into<String>) -> Step {
        Step {
            kind: Kind::Text,
            sql: sql.into(),
            class,
            state: String::new(),
        }
    }

    pub fn prepared(class: &'static str, sql: impl Into<String>, params: Vec<Param>) -> Step {
        Step {
            kind: Kind::Prepared(params),
            sql: sql.into(),
            class,
            state: String::new(),
        }
    }
}

/// What one statement returned.
#[derive(Debug, Clone)]
pub enum Outcome {
    Ok {
        rows: Vec<Vec<Option<String>>>,
        /// Rows affected / command-complete count.
        affected: Option<u64>,
        last_insert_id: Option<u64>,
        /// Warning count (MySQL) or notice SQLSTATEs (PostgreSQL).
        warnings: Vec<String>,
        /// Notifications received with the statement (PostgreSQL).
        notifications: Vec<String>,
    },
    Err {
        /// SQLSTATE (PostgreSQL) or `errno/SQLSTATE` (MySQL), `TIMEOUT`, `IO`.
        code: String,
        message: String,
    },
}

impl Outcome {
    pub fn ok_rows(rows: Vec<Vec<Option<String>>>, affected: Option<u64>) -> Outcome {
        Outcome::Ok {
            rows,
            affected,
            last_insert_id: None,
            warnings: Vec::new(),
            notifications: Vec::new(),
        }
    }

    pub fn err(code: impl Into<String>, message: impl Into<String>) -> Outcome {
        Outcome::Err {
            code: code.into(),
            message: message.into(),
        }
    }

    /// Same answer for the comparison: error messages are not compared, codes are.
    pub fn same(&self, other: &Outcome) -> bool {
        match (self, other) {
            (Outcome::Err { code: a, .. }, Outcome::Err { code: b, .. }) => a == b,
            (
                Outcome::Ok {
                    rows: r1,
                    affected: a1,
                    last_insert_id: l1,
                    warnings: w1,
                    notifications: n1,
                },
                Outcome::Ok {
                    rows: r2,
                    affected: a2,
                    last_insert_id: l2,
                    warnings: w2,
                    notifications: n2,
                },
            ) => r1 == r2 && a1 == a2 && l1 == l2 && w1 == w2 && n1 == n2,
            _ => false,
        }
    }

    /// Which part differs: `rows`, `affected`, `last_insert_id`, `warnings`, `notifications`,
    /// `error code`, `error vs ok`.
    pub fn diff_kind(&self, other: &Outcome) -> &'static str {
        match (self, other) {
            (Outcome::Err { .. }, Outcome::Err { .. }) => "error code",
            (Outcome::Ok { .. }, Outcome::Err { .. }) => "ok vs error",
            (Outcome::Err { .. }, Outcome::Ok { .. }) => "error vs ok",
            (
                Outcome::Ok {
                    rows: r1,
                    affected: a1,
                    last_insert_id: l1,
                    warnings: w1,
                    ..
                },
                Outcome::Ok {
                    rows: r2,
                    affected: a2,
                    last_insert_id: l2,
                    warnings: w2,
                    ..
                },
            ) => {
                if r1 != r2 {
                    "rows"
                } else if a1 != a2 {
                    "affected rows"
                } else if l1 != l2 {
                    "last insert id"
                } else if w1 != w2 {
                    "warnings"
                } else {
                    "notifications"
                }
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Err { code, message } => write!(f, "ERROR {code}: {message}"),
            Outcome::Ok {
                rows,
                affected,
                last_insert_id,
                warnings,
                notifications,
            } => {
                let shown: Vec<String> = rows
                    .iter()
                    .take(6)
                    .map(|r| {
                        let cells: Vec<&str> =
                            r.iter().map(|c| c.as_deref().unwrap_or("NULL")).collect();
                        format!("({})", cells.join(","))
                    })
                    .collect();
                let more = if rows.len() > 6 { ",..." } else { "" };
                write!(f, "rows[{}]={}{more}", rows.len(), shown.join(","))?;
                if let Some(a) = affected {
                    write!(f, " affected={a}")?;
                }
                if let Some(id) = last_insert_id {
                    write!(f, " insert_id={id}")?;
                }
                if !warnings.is_empty() {
                    write!(f, " warnings={warnings:?}")?;
                }
                if !notifications.is_empty() {
                    write!(f, " notifications={notifications:?}")?;
                }
                Ok(())
            }
        }
    }
}

/// The order both runs follow: for each global position, the session that runs its next step.
pub fn schedule(rng: &mut Rng, scripts: &[Vec<Step>]) -> Vec<usize> {
    let mut left: Vec<usize> = scripts.iter().map(Vec::len).collect();
    let total: usize = left.iter().sum();
    let mut order = Vec::with_capacity(total);
    // Bursts: a session often runs a few statements in a row, as applications do.
    let mut current = 0;
    while order.len() < total {
        if left[current] == 0 || rng.chance(45) {
            let live: Vec<usize> = (0..left.len()).filter(|&s| left[s] > 0).collect();
            current = *rng.pick(&live);
        }
        left[current] -= 1;
        order.push(current);
    }
    order
}

/// Settings from the environment.
#[derive(Debug, Clone)]
pub struct Env {
    pub seed: u64,
    /// Long mode: total statements to compare per protocol.
    pub statements: Option<usize>,
    /// Only this combination.
    pub combo: Option<String>,
    /// `SWITCHYARD_DIFF_SELFCHECK=1`: the second run goes to the primary too (a third database),
    /// which must give 0 differences: proof that the harness itself is deterministic.
    pub selfcheck: bool,
}

impl Env {
    pub fn read() -> Env {
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Env {
            seed: num("SWITCHYARD_DIFF_SEED").unwrap_or(DEFAULT_SEED),
            statements: num("SWITCHYARD_DIFF_STATEMENTS").map(|n| n as usize),
            combo: std::env::var("SWITCHYARD_DIFF_COMBO")
                .ok()
                .filter(|s| !s.is_empty()),
            selfcheck: num("SWITCHYARD_DIFF_SELFCHECK").is_some_and(|n| n > 0),
        }
    }

    /// Seed of combination `index`.
    pub fn combo_seed(&self, index: usize) -> u64 {
        Rng::new(self.seed ^ ((index as u64 + 1) << 32)).next_u64()
    }
}

/// A read of other sessions' rows (scope `All`) or of the session's own rows (`Own`), or `None`
/// (the caller then reads static data). `ph` is the dialect's integer placeholder (`$1::int8`, `?`).
pub fn scoped_read(rng: &mut Rng, scope: Scope, id: usize, ph: &str) -> Option<Step> {
    let k = rng.below(20) as i64;
    let pick = rng.below(10);
    if scope == Scope::All && pick < 3 {
        return Some(match pick {
            0 => Step::text(
                "read-cross",
                "SELECT sid, COUNT(*), SUM(v) FROM shared GROUP BY sid ORDER BY sid",
            ),
            1 => Step::text(
                "read-cross",
                format!("SELECT COUNT(*), MAX(v) FROM own_{}", rng.below(SESSIONS)),
            ),
            _ => Step::prepared(
                "read-cross-prepared",
                format!("SELECT COUNT(*) FROM shared WHERE id > {ph}"),
                vec![Param::Int(k)],
            ),
        });
    }
    if scope >= Scope::Own && pick < 6 {
        return Some(match pick % 3 {
            0 => Step::text(
                "read-own",
                format!("SELECT id, v, t FROM own_{id} ORDER BY id"),
            ),
            1 => Step::text(
                "read-own",
                format!("SELECT id, v FROM shared WHERE sid = {id} ORDER BY id"),
            ),
            _ => Step::prepared(
                "read-own-prepared",
                format!("SELECT id, v, t FROM own_{id} WHERE id > {ph} ORDER BY id"),
                vec![Param::Int(k)],
            ),
        });
    }
    None
}

/// A read of the static table (or of no table); `ph_int`/`ph_text` are the dialect's placeholders.
pub fn static_read(rng: &mut Rng, ph_int: &str, ph_text: &str) -> Step {
    let k = rng.below(20) as i64;
    match rng.below(5) {
        0 => Step::text(
            "read-static",
            format!("SELECT id, v FROM fixed WHERE id <= {k} ORDER BY id"),
        ),
        1 => Step::prepared(
            "read-static-prepared",
            format!("SELECT id, v FROM fixed WHERE id > {ph_int} ORDER BY id LIMIT 3"),
            vec![Param::Int(k)],
        ),
        2 => Step::prepared(
            "read-static-prepared",
            format!("SELECT v, {ph_text} FROM fixed WHERE id = 3"),
            vec![Param::Text(format!("p{k}"))],
        ),
        3 => Step::text("read-static", format!("SELECT {k} + 1, 'x{k}'")),
        _ => Step::text("read-static", "SELECT COUNT(*), SUM(id) FROM fixed"),
    }
}
