//! PostgreSQL workload generator: per-session scripts of reads, writes, transactions, savepoints,
//! cursors, settings, temp tables, notices, notifications and errors, honouring the read scope.

use super::{scope, scoped_read, static_read, Level, Param, Rng, Scope, Step};

/// Database-level defaults of a combination (`ALTER DATABASE ... SET`).
#[derive(Debug, Clone, Copy)]
pub struct PgDefaults {
    pub sc: &'static str,
    pub iso: &'static str,
    pub ro: bool,
}

impl std::fmt::Display for PgDefaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ro = if self.ro { "on" } else { "off" };
        let iso = self.iso.replace(' ', "_");
        write!(f, "sc={},iso={iso},ro={ro}", self.sc)
    }
}

pub const SYNC_COMMIT: [&str; 4] = ["off", "local", "on", "remote_apply"];
pub const ISOLATION: [&str; 3] = ["read committed", "repeatable read", "serializable"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    None,
    Rw,
    Ro,
}

struct Session {
    id: usize,
    level: Level,
    defaults: PgDefaults,
    tx: Tx,
    aborted: bool,
    savepoints: usize,
    cursor: bool,
    hold: bool,
    temp: bool,
    wrote: bool,
    listening: bool,
    sc: &'static str,
    iso: &'static str,
    ro: bool,
    /// The previous statement was an autocommit write: reading it back now is what
    /// read-your-writes is for.
    after_write: bool,
}

impl Session {
    fn new(id: usize, level: Level, defaults: PgDefaults) -> Session {
        Session {
            id,
            level,
            defaults,
            tx: Tx::None,
            aborted: false,
            savepoints: 0,
            cursor: false,
            hold: false,
            temp: false,
            wrote: false,
            listening: false,
            sc: defaults.sc,
            iso: defaults.iso,
            ro: defaults.ro,
            after_write: false,
        }
    }

    fn state(&self) -> String {
        format!(
            "tx={:?} aborted={} sc={} iso={} ro={} wrote={} temp={} hold={} listen={}",
            self.tx,
            self.aborted,
            self.sc,
            self.iso,
            self.ro,
            self.wrote,
            self.temp,
            self.hold,
            self.listening
        )
    }

    fn scope(&self) -> Scope {
        scope(self.level, self.tx == Tx::Rw, self.wrote)
    }

    fn end_tx(&mut self) {
        self.tx = Tx::None;
        self.aborted = false;
        self.savepoints = 0;
        self.cursor = false;
    }

    fn reset_settings(&mut self) {
        self.sc = self.defaults.sc;
        self.iso = self.defaults.iso;
        self.ro = self.defaults.ro;
    }
}

/// One script per session, `per_session` statements each.
pub fn scripts(
    rng: &mut Rng,
    level: Level,
    defaults: PgDefaults,
    sessions: usize,
    per_session: usize,
) -> Vec<Vec<Step>> {
    (0..sessions)
        .map(|id| {
            let mut s = Session::new(id, level, defaults);
            let mut script = Vec::with_capacity(per_session);
            if defaults.ro && id % 2 == 0 {
                let mut st = Step::text("set", "SET default_transaction_read_only = off");
                st.state = s.state();
                s.ro = false;
                script.push(st);
            }
            while script.len() < per_session {
                let state = s.state();
                let after_write = std::mem::take(&mut s.after_write);
                let mut st = if after_write && rng.chance(50) {
                    read(rng, &mut s)
                } else {
                    next(rng, &mut s)
                };
                st.state = state;
                script.push(st);
            }
            script
        })
        .collect()
}

fn next(rng: &mut Rng, s: &mut Session) -> Step {
    if s.tx == Tx::None {
        outside(rng, s)
    } else {
        inside(rng, s)
    }
}

fn outside(rng: &mut Rng, s: &mut Session) -> Step {
    let id = s.id;
    match rng.weighted(&[18, 8, 24, 11, 8, 7, 4, 4, 3, 4, 2]) {
        0 => write_own(rng, s),
        1 => write_shared(rng, s),
        2 => read(rng, s),
        3 => begin(rng, s),
        4 => set(rng, s),
        5 => temp(rng, s),
        6 => error(rng),
        7 => notify(rng, s),
        8 => notice(rng),
        9 => {
            if s.hold {
                if rng.chance(70) {
                    Step::text("hold-cursor", format!("FETCH 2 FROM h{id}"))
                } else {
                    s.hold = false;
                    Step::text("hold-cursor", format!("CLOSE h{id}"))
                }
            } else {
                s.hold = true;
                Step::text(
                    "hold-cursor",
                    format!(
                        "DECLARE h{id} CURSOR WITH HOLD FOR SELECT id, v FROM fixed ORDER BY id"
                    ),
                )
            }
        }
        _ => {
            let defaults = s.defaults;
            *s = Session::new(id, s.level, defaults);
            Step {
                kind: super::Kind::Reconnect,
                sql: "<reconnect>".into(),
                class: "reconnect",
                state: String::new(),
            }
        }
    }
}

fn inside(rng: &mut Rng, s: &mut Session) -> Step {
    let id = s.id;
    if s.aborted {
        return match rng.weighted(&[50, 25, 15, 10]) {
            0 => {
                s.end_tx();
                Step::text("rollback", "ROLLBACK")
            }
            1 if s.savepoints > 0 => {
                s.aborted = false;
                Step::text(
                    "savepoint",
                    format!("ROLLBACK TO SAVEPOINT sp{}", s.savepoints),
                )
            }
            2 => {
                s.end_tx();
                Step::text("commit", "COMMIT")
            }
            _ => read(rng, s),
        };
    }
    match rng.weighted(&[20, 26, 8, 4, 3, 10, 4, 4, 10, 5, 3, 3]) {
        0 => {
            if s.tx == Tx::Rw {
                if rng.chance(70) {
                    write_own(rng, s)
                } else {
                    write_shared(rng, s)
                }
            } else {
                // A write in a read-only transaction: 25006 both ways.
                s.aborted = true;
                Step::text(
                    "write-in-ro",
                    format!("INSERT INTO own_{id} (v, t) VALUES (1, 'ro')"),
                )
            }
        }
        1 => read(rng, s),
        2 => {
            s.savepoints += 1;
            Step::text("savepoint", format!("SAVEPOINT sp{}", s.savepoints))
        }
        3 if s.savepoints > 0 => Step::text(
            "savepoint",
            format!("ROLLBACK TO SAVEPOINT sp{}", s.savepoints),
        ),
        4 if s.savepoints > 0 => {
            let sql = format!("RELEASE SAVEPOINT sp{}", s.savepoints);
            s.savepoints -= 1;
            Step::text("savepoint", sql)
        }
        5 => cursor(rng, s),
        6 => {
            let tz = rng.pick(&["Asia/Tokyo", "UTC", "America/New_York"]);
            if rng.chance(50) {
                Step::text("set-local", format!("SET LOCAL TimeZone = '{tz}'"))
            } else {
                Step::text("set-local", "SET LOCAL synchronous_commit = off")
            }
        }
        7 => {
            s.aborted = true;
            error(rng)
        }
        8 => {
            s.end_tx();
            Step::text("commit", *rng.pick(&["COMMIT", "END", "COMMIT"]))
        }
        9 => {
            s.end_tx();
            Step::text("rollback", "ROLLBACK")
        }
        10 => Step::text("tx-diag", "SELECT txid_current_if_assigned() IS NULL"),
        _ => notify(rng, s),
    }
}

fn begin(rng: &mut Rng, s: &mut Session) -> Step {
    let (sql, explicit_ro) = *rng.pick(&[
        ("BEGIN", None),
        ("BEGIN", None),
        ("START TRANSACTION", None),
        ("BEGIN READ ONLY", Some(true)),
        ("START TRANSACTION READ ONLY", Some(true)),
        ("BEGIN ISOLATION LEVEL REPEATABLE READ", None),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", None),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", Some(true)),
        (
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            Some(true),
        ),
        ("BEGIN READ WRITE", Some(false)),
    ]);
    let ro = explicit_ro.unwrap_or(s.ro);
    s.tx = if ro { Tx::Ro } else { Tx::Rw };
    Step::text(if ro { "begin-ro" } else { "begin" }, sql)
}

fn write_own(rng: &mut Rng, s: &mut Session) -> Step {
    let id = s.id;
    if !s.ro || s.tx == Tx::Rw {
        s.wrote = true;
    }
    s.after_write = s.tx == Tx::None;
    let v = rng.below(1000) as i64;
    let t = format!("t{}", rng.below(100));
    match rng.below(6) {
        0 | 1 => Step::text(
            "write-own",
            format!("INSERT INTO own_{id} (v, t) VALUES ({v}, '{t}') RETURNING id"),
        ),
        2 => Step::prepared(
            "write-own-prepared",
            format!("INSERT INTO own_{id} (v, t) VALUES ($1::int8, $2::text) RETURNING id"),
            vec![Param::Int(v), Param::Text(t)],
        ),
        3 => Step::text(
            "write-own",
            format!(
                "UPDATE own_{id} SET v = v + {} WHERE id % 4 = {}",
                rng.below(9) + 1,
                rng.below(4)
            ),
        ),
        4 => Step::text(
            "write-own",
            format!("DELETE FROM own_{id} WHERE id = (SELECT min(id) FROM own_{id})"),
        ),
        _ => Step::text(
            "write-own",
            format!(
                "INSERT INTO own_{id} (v, t) SELECT id, v FROM fixed WHERE id <= {}",
                rng.below(3) + 1
            ),
        ),
    }
}

fn write_shared(rng: &mut Rng, s: &mut Session) -> Step {
    let id = s.id;
    if !s.ro || s.tx == Tx::Rw {
        s.wrote = true;
    }
    s.after_write = s.tx == Tx::None;
    match rng.below(5) {
        0 | 1 => Step::text(
            "write-shared",
            format!("INSERT INTO shared (sid, v) VALUES ({id}, {}) RETURNING id", rng.below(100)),
        ),
        2 => Step::text("write-shared", format!("UPDATE shared SET v = v + 1 WHERE sid = {id}")),
        3 => Step::text(
            "write-cte",
            format!(
                "WITH d AS (DELETE FROM shared WHERE sid = {id} AND id % 5 = {} RETURNING id) SELECT count(*) FROM d",
                rng.below(5)
            ),
        ),
        _ => Step::text("write-function", "SELECT nextval('shared_id_seq') > 0"),
    }
}

/// A read within the session's scope.
fn read(rng: &mut Rng, s: &mut Session) -> Step {
    if s.temp && rng.chance(15) {
        return Step::text("read-temp", "SELECT id, v FROM tmp ORDER BY id");
    }
    if let Some(st) = scoped_read(rng, s.scope(), s.id, "$1::int8") {
        return st;
    }
    match rng.below(8) {
        0 => Step::text(
            "read-setting",
            "SELECT '2024-06-01 12:00:00+00'::timestamptz::text",
        ),
        1 => Step::text(
            "read-setting",
            *rng.pick(&[
                "SHOW TimeZone",
                "SHOW transaction_isolation",
                "SHOW synchronous_commit",
                "SHOW default_transaction_read_only",
                "SHOW transaction_read_only",
                "SELECT current_setting('application_name')",
                "SHOW default_transaction_isolation",
            ]),
        ),
        2 => Step::text("read-static", "VALUES (1, 'a'), (2, 'b')"),
        _ => static_read(rng, "$1::int8", "$1::text"),
    }
}

fn cursor(rng: &mut Rng, s: &mut Session) -> Step {
    let id = s.id;
    if !s.cursor {
        s.cursor = true;
        let query = if s.scope() >= Scope::Own && rng.chance(50) {
            format!("SELECT id, v FROM own_{id} ORDER BY id")
        } else {
            "SELECT id, v FROM fixed ORDER BY id".to_string()
        };
        return Step::text("cursor", format!("DECLARE c{id} CURSOR FOR {query}"));
    }
    match rng.below(4) {
        0 | 1 => Step::text("cursor", format!("FETCH 2 FROM c{id}")),
        2 => Step::text("cursor", format!("MOVE 1 IN c{id}")),
        _ => {
            s.cursor = false;
            Step::text("cursor", format!("CLOSE c{id}"))
        }
    }
}

fn set(rng: &mut Rng, s: &mut Session) -> Step {
    match rng.below(9) {
        0 => {
            s.sc = *rng.pick(&super::pg_gen::SYNC_COMMIT);
            Step::text("set", format!("SET synchronous_commit = {}", s.sc))
        }
        1 => {
            s.iso = *rng.pick(&ISOLATION);
            Step::text(
                "set",
                format!("SET default_transaction_isolation = '{}'", s.iso),
            )
        }
        2 => {
            s.iso = *rng.pick(&ISOLATION);
            Step::text(
                "set",
                format!(
                    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {}",
                    s.iso.to_uppercase()
                ),
            )
        }
        3 => {
            s.ro = rng.chance(30);
            Step::text(
                "set",
                format!(
                    "SET default_transaction_read_only = {}",
                    if s.ro { "on" } else { "off" }
                ),
            )
        }
        4 => Step::text(
            "set",
            format!(
                "SET TimeZone = '{}'",
                rng.pick(&["Asia/Tokyo", "UTC", "America/New_York"])
            ),
        ),
        5 => Step::text(
            "set",
            format!("SET application_name = 'diff{}_{}'", s.id, rng.below(50)),
        ),
        6 => Step::text("set", "RESET TimeZone"),
        7 => {
            s.reset_settings();
            Step::text("set", "RESET ALL")
        }
        _ => Step::text("set", "SET statement_timeout = '20s'"),
    }
}

fn temp(rng: &mut Rng, s: &mut Session) -> Step {
    if !s.temp {
        s.temp = true;
        return Step::text("temp", "CREATE TEMP TABLE tmp (id int PRIMARY KEY, v int)");
    }
    match rng.below(6) {
        0..=2 => Step::text(
            "temp",
            format!(
                "INSERT INTO tmp VALUES ({}, {}) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
                rng.below(8),
                rng.below(100)
            ),
        ),
        3 => Step::text("read-temp", "SELECT id, v FROM tmp ORDER BY id"),
        4 => Step::text(
            "temp",
            "CREATE TEMP TABLE IF NOT EXISTS tmp (id int PRIMARY KEY, v int)",
        ),
        _ => {
            s.temp = false;
            Step::text("temp", "DROP TABLE tmp")
        }
    }
}

fn error(rng: &mut Rng) -> Step {
    Step::text(
        "error",
        *rng.pick(&[
            "SELECT 1 / 0",
            "SELECT * FROM no_such_table",
            "SELEC 1",
            "INSERT INTO fixed (id, v) VALUES (1, 'dup')",
            "SELECT 'abc'::int",
        ]),
    )
}

fn notify(rng: &mut Rng, s: &mut Session) -> Step {
    let id = s.id;
    if !s.listening {
        s.listening = true;
        return Step::text("listen", format!("LISTEN ch{id}"));
    }
    match rng.below(5) {
        0 | 1 => Step::text("notify", format!("NOTIFY ch{id}, 'p{}'", rng.below(100))),
        2 => Step::text(
            "notify",
            format!("SELECT pg_notify('ch{id}', 'q{}')", rng.below(100)),
        ),
        3 => Step::text("notify", format!("NOTIFY ch{id}")),
        _ => {
            s.listening = false;
            Step::text("listen", "UNLISTEN *")
        }
    }
}

fn notice(rng: &mut Rng) -> Step {
    let k = rng.below(100);
    Step::text(
        "notice",
        match rng.below(3) {
            0 => format!("DO $$BEGIN RAISE NOTICE 'n{k}'; END$$"),
            1 => format!("DO $$BEGIN RAISE WARNING 'w{k}'; END$$"),
            _ => format!("DROP TABLE IF EXISTS no_such_{k}"),
        },
    )
}
