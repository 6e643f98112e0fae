//! MySQL/MariaDB workload generator: per-session scripts of reads, writes, diagnostics
//! (`ROW_COUNT()`, `FOUND_ROWS()`, `SHOW WARNINGS`, `LAST_INSERT_ID()`...), transactions,
//! savepoints, settings, user variables, temp tables, prepared statements and errors.

use super::{scope, scoped_read, static_read, Kind, Level, Param, Rng, Scope, Step};

/// `sql_mode` values a combination sets globally (and sessions per session).
pub const SQL_MODES: [&str; 4] = [
    "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION",
    "",
    "ANSI_QUOTES,STRICT_ALL_TABLES",
    "TRADITIONAL",
];
pub const BINLOG_FORMATS: [&str; 3] = ["ROW", "STATEMENT", "MIXED"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    None,
    Rw,
    Ro,
}

struct Session {
    id: usize,
    level: Level,
    default_autocommit: bool,
    autocommit: bool,
    tx: Tx,
    savepoint: bool,
    temp: bool,
    wrote: bool,
    sql_prepared: bool,
    /// The previous statement wrote: diagnostics are worth asking now.
    after_write: bool,
    /// Temp tables are used (only with row-based binlogging: under STATEMENT and MIXED, runs
    /// straight against the primary stopped the replicas' SQL thread with "Table 'tmp' doesn't
    /// exist" on an `INSERT INTO tmp`, proxy or not, which ends every later combination).
    temp_tables: bool,
}

impl Session {
    fn new(id: usize, level: Level, default_autocommit: bool, temp_tables: bool) -> Session {
        Session {
            id,
            level,
            default_autocommit,
            autocommit: default_autocommit,
            tx: Tx::None,
            savepoint: false,
            temp: false,
            wrote: false,
            sql_prepared: false,
            after_write: false,
            temp_tables,
        }
    }

    fn state(&self) -> String {
        format!(
            "autocommit={} tx={:?} wrote={} temp={}",
            self.autocommit, self.tx, self.wrote, self.temp
        )
    }

    fn scope(&self) -> Scope {
        let rw = self.tx == Tx::Rw || (self.tx == Tx::None && !self.autocommit);
        scope(self.level, rw, self.wrote)
    }

    fn end_tx(&mut self) {
        self.tx = Tx::None;
        self.savepoint = false;
    }
}

/// One script per session, `per_session` statements each; `temp_tables`: see [`Session`].
pub fn scripts(
    rng: &mut Rng,
    level: Level,
    autocommit: bool,
    temp_tables: bool,
    sessions: usize,
    per_session: usize,
) -> Vec<Vec<Step>> {
    (0..sessions)
        .map(|id| {
            let mut s = Session::new(id, level, autocommit, temp_tables);
            (0..per_session)
                .map(|_| {
                    let state = s.state();
                    let after_write = std::mem::take(&mut s.after_write);
                    let mut st = if after_write && rng.chance(55) {
                        diag(rng)
                    } else {
                        next(rng, &mut s)
                    };
                    st.state = state;
                    st
                })
                .collect()
        })
        .collect()
}

fn next(rng: &mut Rng, s: &mut Session) -> Step {
    let id = s.id;
    let in_tx = s.tx != Tx::None;
    match rng.weighted(&[20, 7, 24, 9, 8, 8, 6, 4, 4, 6, 2]) {
        0 => write_own(rng, s),
        1 => {
            s.after_write = true;
            if s.tx != Tx::Ro {
                s.wrote = true;
            }
            Step::text(
                "write-shared",
                format!(
                    "INSERT INTO shared (sid, v) VALUES ({id}, {})",
                    rng.below(100)
                ),
            )
        }
        2 => read(rng, s),
        3 if !in_tx => {
            let (sql, ro) = *rng.pick(&[
                ("BEGIN", false),
                ("START TRANSACTION", false),
                ("START TRANSACTION READ ONLY", true),
                ("START TRANSACTION READ WRITE", false),
                ("START TRANSACTION WITH CONSISTENT SNAPSHOT", false),
            ]);
            s.tx = if ro { Tx::Ro } else { Tx::Rw };
            Step::text(if ro { "begin-ro" } else { "begin" }, sql)
        }
        3 | 4 => tx_control(rng, s),
        5 => set(rng, s),
        6 if s.temp_tables => temp(rng, s),
        6 => read(rng, s),
        7 => Step::text(
            "error",
            *rng.pick(&[
                "SELECT * FROM no_such_table",
                "SELEC 1",
                "INSERT INTO fixed (id, v) VALUES (1, 'dup')",
                "SELECT no_col FROM fixed",
            ]),
        ),
        8 => {
            s.after_write = true;
            Step::text(
                "warning",
                *rng.pick(&[
                    "SELECT 1/0",
                    "SELECT CAST('abc' AS SIGNED)",
                    "SELECT 'a' || 'b'",
                    "DROP TEMPORARY TABLE IF EXISTS no_such_tmp",
                ]),
            )
        }
        9 => sql_prepare(rng, s),
        _ => {
            *s = Session::new(id, s.level, s.default_autocommit, s.temp_tables);
            Step {
                kind: Kind::Reconnect,
                sql: "<reconnect>".into(),
                class: "reconnect",
                state: String::new(),
            }
        }
    }
}

fn write_own(rng: &mut Rng, s: &mut Session) -> Step {
    let id = s.id;
    s.after_write = true;
    if s.tx != Tx::Ro {
        s.wrote = true;
    }
    let v = rng.below(1000) as i64;
    let t = format!("t{}", rng.below(100));
    match rng.below(10) {
        0 | 1 => Step::text(
            "write-own",
            format!("INSERT INTO own_{id} (v, t) VALUES ({v}, '{t}')"),
        ),
        2 => Step::prepared(
            "write-own-prepared",
            format!("INSERT INTO own_{id} (v, t) VALUES (?, ?)"),
            vec![Param::Int(v), Param::Text(t)],
        ),
        3 => Step::text(
            "write-own",
            format!("INSERT INTO own_{id} (v, t) VALUES ({v}, 'a'), ({}, 'b')", v + 1),
        ),
        4 => Step::text(
            "write-own",
            format!(
                "UPDATE own_{id} SET v = v + {} WHERE id % 4 = {}",
                rng.below(3),
                rng.below(4)
            ),
        ),
        5 => Step::text(
            "write-own",
            format!("DELETE FROM own_{id} ORDER BY id LIMIT 1"),
        ),
        6 => Step::text(
            "write-own",
            format!(
                "INSERT INTO own_{id} (id, v, t) VALUES ({}, 1, 'up') ON DUPLICATE KEY UPDATE v = v + 1",
                rng.below(4) + 1
            ),
        ),
        7 => Step::text(
            "write-own",
            format!("REPLACE INTO own_{id} (id, v, t) VALUES ({}, {v}, 'r')", rng.below(4) + 1),
        ),
        8 => Step::text(
            "write-truncating",
            format!("INSERT INTO own_{id} (v, t) VALUES ({v}, 'far-too-long-for-it')"),
        ),
        _ => Step::text(
            "write-truncating",
            format!("INSERT INTO own_{id} (v, t) VALUES (1/0, 'z')"),
        ),
    }
}

/// Session diagnostics about the previous statement.
fn diag(rng: &mut Rng) -> Step {
    Step::text(
        "diag",
        *rng.pick(&[
            "SELECT ROW_COUNT()",
            "SELECT LAST_INSERT_ID()",
            "SELECT LAST_INSERT_ID() + 0",
            "SHOW WARNINGS",
            "SHOW COUNT(*) WARNINGS",
            "SELECT @@warning_count",
            "SELECT @@identity",
            "SELECT @@last_insert_id",
            "SELECT @@error_count",
            "SHOW ERRORS",
            "SELECT FOUND_ROWS()",
        ]),
    )
}

fn read(rng: &mut Rng, s: &mut Session) -> Step {
    if s.temp && rng.chance(15) {
        return Step::text("read-temp", "SELECT id, v FROM tmp ORDER BY id");
    }
    if let Some(st) = scoped_read(rng, s.scope(), s.id, "?") {
        return st;
    }
    match rng.below(6) {
        0 => {
            s.after_write = true;
            Step::text(
                "read-found-rows",
                format!(
                    "SELECT SQL_CALC_FOUND_ROWS id FROM fixed WHERE id > {} ORDER BY id LIMIT 1",
                    rng.below(20)
                ),
            )
        }
        1 => Step::text("read-static", "SELECT \"v\" FROM fixed WHERE id = 2"),
        2 => Step::text(
            "read-setting",
            *rng.pick(&[
                "SELECT @@session.sql_mode",
                "SELECT @@autocommit",
                "SELECT @@session.time_zone",
                "SELECT @@session.tx_read_only",
                "SELECT @@in_transaction",
                "SELECT @@session.character_set_client",
            ]),
        ),
        _ => static_read(rng, "?", "?"),
    }
}

fn tx_control(rng: &mut Rng, s: &mut Session) -> Step {
    let implicit = s.tx == Tx::None && !s.autocommit;
    if s.tx == Tx::None && !implicit {
        return read(rng, s);
    }
    match rng.below(7) {
        0 | 1 => {
            s.end_tx();
            Step::text("commit", "COMMIT")
        }
        2 => {
            s.end_tx();
            Step::text("rollback", "ROLLBACK")
        }
        3 => {
            s.savepoint = true;
            Step::text("savepoint", "SAVEPOINT sp")
        }
        4 if s.savepoint => Step::text("savepoint", "ROLLBACK TO SAVEPOINT sp"),
        5 if s.savepoint => {
            s.savepoint = false;
            Step::text("savepoint", "RELEASE SAVEPOINT sp")
        }
        _ => {
            // A write in a read-only transaction fails (1792) and the transaction goes on.
            if s.tx == Tx::Ro {
                Step::text(
                    "write-in-ro",
                    format!("INSERT INTO own_{} (v, t) VALUES (1, 'ro')", s.id),
                )
            } else {
                Step::text("tx-diag", "SELECT @@in_transaction")
            }
        }
    }
}

fn set(rng: &mut Rng, s: &mut Session) -> Step {
    let id = s.id;
    match rng.below(8) {
        0 => {
            s.autocommit = rng.chance(50);
            if s.autocommit {
                s.end_tx();
            }
            Step::text(
                "set",
                format!("SET autocommit = {}", u8::from(s.autocommit)),
            )
        }
        1 => Step::text(
            "set",
            format!("SET SESSION sql_mode = '{}'", rng.pick(&SQL_MODES)),
        ),
        2 => Step::text(
            "set",
            format!(
                "SET time_zone = '{}'",
                rng.pick(&["+00:00", "+09:00", "-05:00"])
            ),
        ),
        3 => Step::text("set-uservar", format!("SET @u{id} = {}", rng.below(100))),
        4 => Step::text("read-uservar", format!("SELECT @u{id}")),
        5 => Step::text("set", "SET NAMES utf8mb4"),
        6 => Step::text("set", "SET SESSION sql_mode = 'ANSI'"),
        _ => Step::text(
            "set",
            format!(
                "SET SESSION TRANSACTION ISOLATION LEVEL {}",
                rng.pick(&["REPEATABLE READ", "READ COMMITTED"])
            ),
        ),
    }
}

fn temp(rng: &mut Rng, s: &mut Session) -> Step {
    if !s.temp {
        s.temp = true;
        return Step::text(
            "temp",
            "CREATE TEMPORARY TABLE tmp (id INT PRIMARY KEY, v INT)",
        );
    }
    match rng.below(5) {
        0..=2 => {
            s.after_write = true;
            Step::text(
                "temp",
                format!(
                    "INSERT INTO tmp VALUES ({}, {}) ON DUPLICATE KEY UPDATE v = VALUES(v)",
                    rng.below(8),
                    rng.below(100)
                ),
            )
        }
        3 => Step::text("read-temp", "SELECT id, v FROM tmp ORDER BY id"),
        _ => {
            s.temp = false;
            Step::text("temp", "DROP TEMPORARY TABLE tmp")
        }
    }
}

fn sql_prepare(rng: &mut Rng, s: &mut Session) -> Step {
    if !s.sql_prepared {
        s.sql_prepared = true;
        return Step::text(
            "sql-prepare",
            "PREPARE ps FROM 'SELECT v FROM fixed WHERE id = ?'",
        );
    }
    match rng.below(4) {
        0 => Step::text("sql-prepare", format!("SET @p = {}", rng.below(20) + 1)),
        1 | 2 => Step::text("sql-prepare", "EXECUTE ps USING @p"),
        _ => {
            s.sql_prepared = false;
            Step::text("sql-prepare", "DEALLOCATE PREPARE ps")
        }
    }
}
