//! Differential test, MariaDB: the generated workload of `tests/differential` run directly on the
//! primary and through the proxy (session and transaction pooling x every consistency level), under
//! `binlog_format`, `sql_mode` and `autocommit = 0` by default (`init_connect`) set globally on every
//! server; every statement's answer must match. See `tests/differential/mod.rs` for the rules,
//! `SWITCHYARD_DIFF_STATEMENTS` / `SWITCHYARD_DIFF_SEED` / `SWITCHYARD_DIFF_COMBO` for the modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod differential;
mod support;

use std::time::Instant;

use differential::mysql_gen::{self, BINLOG_FORMATS, SQL_MODES};
use differential::mysql_run::{self, Target};
use differential::report::Report;
use differential::{
    cluster_name, cluster_yaml, proxy_clusters, schedule, Env, Level, Outcome, Pool, Rng, Step,
    LEVELS, SESSIONS, SHORT_STATEMENTS,
};
use support::{free_ports, MariaDbCluster, Proxy};
use support::{MYSQL_APP_PASSWORD, MYSQL_APP_USER, MYSQL_MONITOR_PASSWORD, MYSQL_MONITOR_USER};

struct Combo {
    index: usize,
    pool: Pool,
    level: Level,
    binlog: &'static str,
    sql_mode: usize,
    autocommit: bool,
}

impl Combo {
    fn name(&self) -> String {
        format!(
            "mysql/{}/binlog={},sql_mode={},autocommit={}",
            cluster_name(self.pool, self.level),
            self.binlog,
            self.sql_mode,
            u8::from(self.autocommit)
        )
    }
}

/// Short mode: each (pool, level) once, settings rotated so every value shows up under both
/// pooling modes. Long mode: every (pool, level, binlog_format, sql_mode, autocommit).
fn combos(long: bool) -> Vec<Combo> {
    let mut v = Vec::new();
    for (pool, level) in proxy_clusters() {
        let li = LEVELS.iter().position(|l| *l == level).unwrap();
        let pi = usize::from(pool == Pool::Transaction);
        let settings: Vec<(usize, usize, bool)> = if long {
            let mut all = Vec::new();
            for b in 0..BINLOG_FORMATS.len() {
                for m in 0..SQL_MODES.len() {
                    for ac in [true, false] {
                        all.push((b, m, ac));
                    }
                }
            }
            all
        } else {
            vec![((li + pi) % 3, (li + 2 * pi) % 4, (li + pi) % 2 == 0)]
        };
        for (b, m, autocommit) in settings {
            v.push(Combo {
                index: v.len(),
                pool,
                level,
                binlog: BINLOG_FORMATS[b],
                sql_mode: m,
                autocommit,
            });
        }
    }
    v
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
fn apply_settings(cluster: &MariaDbCluster, c: &Combo) {
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

fn proxy_yaml(cluster: &MariaDbCluster) -> (String, Vec<u16>) {
    let [admin] = free_ports::<1>();
    let [r1, r2] = cluster.replica_ports();
    let servers = format!(
        "      - {{ name: primary, address: \"127.0.0.1:{}\", role: primary }}\n      - {{ name: replica1, address: \"127.0.0.1:{r1}\", role: replica }}\n      - {{ name: replica2, address: \"127.0.0.1:{r2}\", role: replica }}\n",
        cluster.primary_port()
    );
    let monitor = format!(
        "{{ interval: 1s, timeout: 5s, healthy_after: 1, unhealthy_after: 3, user: {MYSQL_MONITOR_USER}, password: \"{MYSQL_MONITOR_PASSWORD}\", database: \"\" }}"
    );
    let mut yaml = format!("admin: {{ listen: \"127.0.0.1:{admin}\" }}\nclusters:\n");
    let mut ports = Vec::new();
    for (pool, level) in proxy_clusters() {
        let [port] = free_ports::<1>();
        ports.push(port);
        yaml.push_str(
            &cluster_yaml(pool, level, port, &servers, &monitor).replace("{PROTOCOL}", "mysql"),
        );
    }
    yaml.push_str(&format!(
        "users:\n  - {{ name: {MYSQL_APP_USER}, password: \"{MYSQL_APP_PASSWORD}\", mysql_auth: mysql_native_password, backend_user: {MYSQL_APP_USER}, backend_password: \"{MYSQL_APP_PASSWORD}\" }}\n"
    ));
    (yaml, ports)
}

/// Which known bug a difference looks like (issue 21's numbering), or NEW.
fn hint(combo: &str, step: &Step, d: &Outcome, p: &Outcome) -> String {
    if let Outcome::Err { code, .. } = p {
        if code.starts_with("1290/") {
            return match d {
                Outcome::Err { code, .. } if code.starts_with("1792/") => {
                    "NEW: a write in START TRANSACTION READ ONLY answered by a replica: 1290 instead of 1792".into()
                }
                _ if step.state.contains("autocommit=false") => {
                    "NEW: autocommit=0 session: a write ran on a read-only replica (1290)".into()
                }
                _ => "NEW: a write ran on a read-only replica (1290)".into(),
            };
        }
    }
    let diagnostic = step.class == "diag"
        || step.sql.contains("ROW_COUNT")
        || step.sql.contains("FOUND_ROWS")
        || step.sql.contains("WARNINGS")
        || step.sql.contains("LAST_INSERT_ID");
    if combo.contains("/transaction_") && diagnostic {
        return "known bug 3: session diagnostics under transaction pooling".into();
    }
    if diagnostic {
        return "bug 3 under session pooling: diagnostics asked on another backend (primary vs replica) than the statement they describe".into();
    }
    "NEW".into()
}

fn target(port: u16, db: &str) -> Target {
    Target {
        port,
        db: db.to_string(),
        user: MYSQL_APP_USER.to_string(),
        password: MYSQL_APP_PASSWORD.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_mysql() {
    let env = Env::read();
    let started = Instant::now();
    let cluster = MariaDbCluster::start();
    cluster.sql(
        cluster.primary_port(),
        &format!("GRANT ALL ON `dx%`.* TO '{MYSQL_APP_USER}'@'%'"),
    );
    let (yaml, ports) = proxy_yaml(&cluster);
    let proxy = Proxy::start(&yaml);
    differential::wait_clusters(&proxy, ports.len());
    let all = combos(env.statements.is_some());
    let per_run = env
        .statements
        .map(|n| (n / all.len()).max(60))
        .unwrap_or(SHORT_STATEMENTS);
    let mut report = Report {
        protocol: "MariaDB",
        test: "differential_mysql",
        ..Report::default()
    };
    println!(
        "differential_mysql: seed {} ({} combinations, {per_run} statements per run; SWITCHYARD_DIFF_SEED / SWITCHYARD_DIFF_STATEMENTS / SWITCHYARD_DIFF_COMBO)",
        env.seed,
        all.len()
    );
    for combo in &all {
        let name = combo.name();
        if env.combo.as_ref().is_some_and(|c| *c != name) {
            continue;
        }
        let seed = env.combo_seed(combo.index);
        let mut rng = Rng::new(seed);
        let scripts = mysql_gen::scripts(
            &mut rng,
            combo.level,
            combo.autocommit,
            SESSIONS,
            per_run / SESSIONS,
        );
        let order = schedule(&mut rng, &scripts);
        let (direct_db, proxied_db) = (
            format!("dx{}_d", combo.index),
            format!("dx{}_p", combo.index),
        );
        let p = cluster.primary_port();
        cluster.sql(
            p,
            &format!("{} {}", setup_sql(&direct_db), setup_sql(&proxied_db)),
        );
        apply_settings(&cluster, combo);
        cluster.wait_replicas_caught_up();
        let i = proxy_clusters()
            .iter()
            .position(|(p, l)| *p == combo.pool && *l == combo.level)
            .unwrap();
        let direct = mysql_run::run(&target(p, &direct_db), &scripts, &order).await;
        let proxied = mysql_run::run(&target(ports[i], &proxied_db), &scripts, &order).await;
        let before = report.diffs.len();
        report.compare(&name, seed, &scripts, &order, &direct, &proxied, &hint);
        println!(
            "  {name}: seed {seed}, {} statements, {} differences ({:.0?} so far)",
            direct.len().min(proxied.len()),
            report.diffs.len() - before,
            started.elapsed()
        );
    }
    let text = report.render();
    println!("{text}");
    assert!(
        report.compared > 0,
        "no combination matched SWITCHYARD_DIFF_COMBO"
    );
    assert!(
        report.diffs.is_empty(),
        "the proxy answered differently from the primary:\n{text}"
    );
    drop(proxy);
}
