//! Differential test, MariaDB: the generated workload of `tests/differential` run directly on the
//! primary and through the proxy (session and transaction pooling x every consistency level), under
//! `binlog_format`, `sql_mode` and `autocommit = 0` by default (`init_connect`) set globally on every
//! server; every statement's answer must match. See `tests/differential/mod.rs` for the rules,
//! `SWITCHYARD_DIFF_STATEMENTS` / `SWITCHYARD_DIFF_SEED` / `SWITCHYARD_DIFF_COMBO` for the modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod differential;
mod support;

use differential::drive::{combos, drive, proxy_yaml, wait_clusters, Combo, Suite};
use differential::mysql_gen::{self, BINLOG_FORMATS, SQL_MODES};
use differential::mysql_run::Target;
use differential::report::Report;
use differential::{Env, Rng, Step, SESSIONS};
use support::{MariaDbCluster, Proxy};
use support::{MYSQL_APP_PASSWORD, MYSQL_APP_USER, MYSQL_MONITOR_PASSWORD, MYSQL_MONITOR_USER};

/// Server settings of a combination, set globally on every server.
#[derive(Debug, Clone, Copy)]
struct Settings {
    binlog: &'static str,
    /// Index into [`SQL_MODES`].
    sql_mode: usize,
    /// `false`: `init_connect = 'SET autocommit=0'`.
    autocommit: bool,
}

impl std::fmt::Display for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "binlog={},sql_mode={},autocommit={}",
            self.binlog,
            self.sql_mode,
            u8::from(self.autocommit)
        )
    }
}

/// Short mode: each (pool, level) once, settings rotated so every value shows up under both
/// pooling modes. Long mode: every (pool, level, binlog_format, sql_mode, autocommit).
fn all_combos(long: bool) -> Vec<Combo<Settings>> {
    let mut all = Vec::new();
    for binlog in BINLOG_FORMATS {
        for sql_mode in 0..SQL_MODES.len() {
            for autocommit in [true, false] {
                all.push(Settings {
                    binlog,
                    sql_mode,
                    autocommit,
                });
            }
        }
    }
    combos(long, &all, |li, pi| Settings {
        binlog: BINLOG_FORMATS[(li + pi) % 3],
        sql_mode: (li + 2 * pi) % 4,
        autocommit: (li + pi) % 2 == 0,
    })
}

fn setup_sql(db: &str) -> String {
    let mut sql = format!(
        "CREATE DATABASE {db}; USE {db}; \
         CREATE TABLE fixed (id INT PRIMARY KEY, v VARCHAR(16) NOT NULL); \
         CREATE TABLE shared (id INT AUTO_INCREMENT PRIMARY KEY, sid INT NOT NULL, v INT NOT NULL, KEY (sid));"
    );
    let rows: Vec<String> = (1..=20).map(|i| format!("({i}, 'f{i}')")).collect();
    sql.push_str(&format!("INSERT INTO fixed VALUES {};", rows.join(",")));
    for s in 0..SESSIONS {
        sql.push_str(&format!(
            "CREATE TABLE own_{s} (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL, t VARCHAR(8));"
        ));
    }
    sql
}

/// The combination's server settings, as a user would put them in every server's config.
fn apply_settings(cluster: &MariaDbCluster, c: &Settings) {
    let init = if c.autocommit { "" } else { "SET autocommit=0" };
    let global = format!(
        "SET GLOBAL sql_mode = '{}'; SET GLOBAL init_connect = '{init}';",
        SQL_MODES[c.sql_mode]
    );
    cluster.sql(
        cluster.primary_port(),
        &format!("{global} SET GLOBAL binlog_format = '{}';", c.binlog),
    );
    for port in cluster.replica_ports() {
        cluster.sql(port, &global);
    }
}

fn target(port: u16, db: &str) -> Target {
    Target {
        port,
        db: db.to_string(),
        user: MYSQL_APP_USER.to_string(),
        password: MYSQL_APP_PASSWORD.to_string(),
    }
}

struct My<'a> {
    cluster: &'a MariaDbCluster,
}

impl Suite for My<'_> {
    const PROTOCOL: &'static str = "mysql";
    // Was 480 while a PREPARE in a READ ONLY transaction pinned sessions to a replica (which
    // then binlogged transactions of its own: every later combination failed in its setup).
    // 2400: about 45 s for the whole test on a quiet machine.
    const SHORT_STATEMENTS: usize = 2400;
    type Settings = Settings;
    type Runner = Target;

    fn scripts(&self, c: &Combo<Settings>, rng: &mut Rng, per_session: usize) -> Vec<Vec<Step>> {
        let temp_tables = c.settings.binlog == "ROW";
        mysql_gen::scripts(
            rng,
            c.level,
            c.settings.autocommit,
            temp_tables,
            SESSIONS,
            per_session,
        )
    }

    async fn prepare(&self, c: &Combo<Settings>, index: usize, port: u16) -> (Target, Target) {
        let (direct, proxied) = (format!("dx{index}_d"), format!("dx{index}_p"));
        let p = self.cluster.primary_port();
        // Nothing the proxy sent may have written on a replica (earlier combinations).
        for r in self.cluster.replica_ports() {
            let pos = self.cluster.sql(r, "SELECT @@gtid_binlog_pos");
            assert!(
                pos.split(',')
                    .all(|g| g.trim().is_empty() || g.split('-').nth(1) == Some("1")),
                "replica on port {r} binlogged a transaction of its own: gtid_binlog_pos {pos}"
            );
        }
        self.cluster.sql(
            p,
            &format!("{} {}", setup_sql(&direct), setup_sql(&proxied)),
        );
        apply_settings(self.cluster, &c.settings);
        self.cluster.wait_replicas_caught_up();
        (target(p, &direct), target(port, &proxied))
    }

    fn primary_port(&self) -> u16 {
        self.cluster.primary_port()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_mysql() {
    let cluster = MariaDbCluster::start();
    cluster.sql(
        cluster.primary_port(),
        &format!("GRANT ALL ON `dx%`.* TO '{MYSQL_APP_USER}'@'%'"),
    );
    let monitor = format!(
        "user: {MYSQL_MONITOR_USER}, password: \"{MYSQL_MONITOR_PASSWORD}\", database: \"\""
    );
    let users = format!(
        "  - {{ name: {MYSQL_APP_USER}, password: \"{MYSQL_APP_PASSWORD}\", mysql_auth: mysql_native_password, backend_user: {MYSQL_APP_USER}, backend_password: \"{MYSQL_APP_PASSWORD}\" }}\n"
    );
    let (yaml, ports) = proxy_yaml(
        "mysql",
        cluster.primary_port(),
        cluster.replica_ports(),
        &monitor,
        &users,
    );
    // Transaction pooling keeps the connection a diagnostics read needs for
    // `pool.diagnostics_hold` (100 ms by default); past it the read gets the trivial diagnostics
    // (documented). Here other sessions' statements, causal waits and a busy machine often take
    // longer between a session's two statements, so the hold is long enough to compare what the
    // proxy answers while it holds, not how fast the machine is.
    let yaml = yaml.replace(
        "pool: { mode: transaction,",
        "pool: { diagnostics_hold: 10s, mode: transaction,",
    );
    assert!(yaml.contains("diagnostics_hold"), "{yaml}");
    let proxy = Proxy::start(&yaml);
    wait_clusters(&proxy, ports.len());
    let mut report = Report {
        protocol: "MariaDB",
        test: "differential_mysql",
        ..Report::default()
    };
    let suite = My { cluster: &cluster };
    drive(
        &suite,
        &all_combos(Env::read().statements.is_some()),
        &ports,
        &mut report,
    )
    .await;
    drop(proxy);
}
