//! Peer test suites: psycopg2's and PyMySQL's own test suites, run directly against the primary
//! and through switchyard (session and transaction pooling) in one run, compared test by test.
//!
//! Each test starts its cluster and two proxies, creates what the suite needs (a superuser-ish
//! account, databases, hstore, prepared transactions, the users the suite logs in as), then runs
//! tests/peer/run_suite.py, which fails on a test that passes directly but not through a proxy
//! unless tests/peer/expected-differences.txt explains why. The Python side (virtualenv, the sdists,
//! psycopg2 built from source) is prepared by `scripts/peer-suites.sh prepare`, called from here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::{MariaDbCluster, PgCluster, Proxy};

/// The account both suites run as, directly and through the proxies (same name on both sides).
const PEER_USER: &str = "peer";
const PEER_PASSWORD: &str = "peer-secret";
/// Bound on one run of a suite. Measured on the shared 2-core machine at load 13-20: psycopg2
/// direct 1.5-2.5 min, transaction pooling 4-7 min, session pooling over 10 (a login through
/// the proxy opens server connections: 0.25-0.4 s instead of 0.06); PyMySQL 15-55 s per run.
const RUN_TIMEOUT_S: u32 = 600;
/// The pooling modes a suite runs through, after the direct run.
const MODES: [&str; 2] = ["session", "transaction"];

/// The proxies' `routing.consistency`. `global` by default: the suites check one connection's
/// writes from another connection (prepared transactions, notifications, catalog changes), which
/// `read_your_writes` (the config default, per session) does not promise, while `global` does:
/// the same answers as the primary for everything committed. `PEER_SUITES_CONSISTENCY` overrides.
fn consistency() -> String {
    std::env::var("PEER_SUITES_CONSISTENCY").unwrap_or_else(|_| "global".to_string())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/peer-suites.sh prepare` (idempotent): the virtualenv and the sdists.
fn prepare() -> PathBuf {
    let status = Command::new(root().join("scripts/peer-suites.sh"))
        .arg("prepare")
        .status()
        .expect("run scripts/peer-suites.sh prepare");
    assert!(status.success(), "scripts/peer-suites.sh prepare failed");
    std::env::var_os("PEER_SUITES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/peer-suites"))
}

/// The standard proxy config plus the peer user (and `extra_users`), in `mode` pooling.
fn proxy_yaml(yaml: String, mode: &str, extra_users: &[String]) -> String {
    assert!(
        yaml.contains("    monitor: {") && yaml.ends_with('\n'),
        "{yaml}"
    );
    assert!(yaml.contains("fallback: primary }"), "{yaml}");
    let yaml = yaml.replacen(
        "fallback: primary }",
        &format!("fallback: primary, consistency: {} }}", consistency()),
        1,
    );
    let mut yaml = if mode == "transaction" {
        yaml.replacen(
            "    monitor: {",
            "    pool: { mode: transaction, size: 10 }\n    monitor: {",
            1,
        )
    } else {
        yaml
    };
    for user in extra_users {
        yaml.push_str(&format!("  - {user}\n"));
    }
    yaml
}

/// Run the comparison for `suite` against `targets` (the first is the reference); panics with
/// the summary when the runner reports an unexpected difference.
fn compare(
    suite: &str,
    dir: &Path,
    targets: &[(String, serde_json::Value)],
    proxies: &[(&str, &Proxy)],
    parallel: bool,
) {
    let out = tempfile::Builder::new()
        .prefix(&format!("switchyard-peer-{suite}-"))
        .tempdir()
        .expect("temp dir");
    // Kept for a look after a failure.
    let out = out.keep();
    // The virtualenv's Python: the runner itself uses psycopg2 (cleanup, diagnostics).
    let mut cmd = Command::new(dir.join("venv/bin/python"));
    cmd.arg(root().join("tests/peer/run_suite.py"))
        .args(["compare", "--suite", suite, "--dir"])
        .arg(dir)
        .arg("--out")
        .arg(&out)
        .arg("--expected")
        .arg(root().join("tests/peer/expected-differences.txt"))
        .args(["--timeout", &RUN_TIMEOUT_S.to_string()]);
    if parallel {
        cmd.arg("--parallel");
    }
    for (name, params) in targets {
        cmd.arg("--target").arg(format!("{name}={params}"));
    }
    let started = Instant::now();
    let output = cmd.output().expect("run tests/peer/run_suite.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = format!(
        "{stdout}{stderr}{suite}: all runs took {:.0?} (logs in {})",
        started.elapsed(),
        out.display()
    );
    println!("{report}");
    // Also kept in target/peer-suites/last-<suite>.txt, since cargo hides a passing test's output.
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.join(format!("last-{suite}.txt")))
    {
        let _ = f.write_all(report.as_bytes());
    }
    if !output.status.success() {
        for (mode, proxy) in proxies {
            let _ = std::fs::write(out.join(format!("switchyard-{mode}.log")), proxy.log());
        }
        panic!(
            "{suite}: the peer suite found differences ({}); see the summary above and {}",
            output.status,
            out.display()
        );
    }
}

/// A PostgreSQL cluster for one psycopg2 run, with what the suite needs: prepared transactions
/// on, the superuser `peer` (the suite's superuser-only tests run instead of skipping), database
/// `psycopg2_test` with hstore. One cluster per run, so the runs go side by side: prepared
/// transaction ids are cluster-wide and the suite uses fixed ones.
fn psycopg2_cluster() -> PgCluster {
    let cluster = PgCluster::start();
    // max_prepared_transactions needs a restart; hot standbys need at least the primary's value.
    for name in ["primary", "replica1", "replica2"] {
        let conf = cluster.data_dir(name).join("postgresql.conf");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&conf)
            .expect("open postgresql.conf");
        writeln!(f, "max_prepared_transactions = 20").expect("write postgresql.conf");
    }
    cluster.stop_replica(0);
    cluster.stop_replica(1);
    cluster.stop_primary();
    cluster.start_primary();
    cluster.start_replica(0);
    cluster.start_replica(1);
    let p = cluster.primary_port();
    cluster.psql(
        p,
        "postgres",
        &format!("CREATE ROLE {PEER_USER} SUPERUSER LOGIN PASSWORD '{PEER_PASSWORD}'"),
    );
    cluster.psql(
        p,
        "postgres",
        &format!("CREATE DATABASE psycopg2_test OWNER {PEER_USER}"),
    );
    cluster.psql(p, "psycopg2_test", "CREATE EXTENSION hstore");
    cluster.wait_replicas_caught_up();
    cluster
}

#[test]
fn psycopg2_suite_direct_and_through_both_pooling_modes() {
    let dir = prepare();
    let modes = ["direct", MODES[0], MODES[1]];
    let clusters: Vec<PgCluster> = std::thread::scope(|s| {
        let started: Vec<_> = modes.iter().map(|_| s.spawn(psycopg2_cluster)).collect();
        started
            .into_iter()
            .map(|h| h.join().expect("start a cluster"))
            .collect()
    });
    let mut targets = Vec::new();
    let mut proxies = Vec::new();
    for (mode, cluster) in modes.iter().zip(&clusters) {
        let primary = cluster.primary_port();
        let port = if *mode == "direct" {
            primary
        } else {
            let (yaml, ports) = Proxy::pg_config(cluster);
            let user = format!(
                "{{ name: {PEER_USER}, password: \"{PEER_PASSWORD}\", auth: scram-sha-256, backend_user: {PEER_USER}, backend_password: \"{PEER_PASSWORD}\" }}"
            );
            proxies.push(Proxy::start(&proxy_yaml(yaml, mode, &[user])));
            ports.listen
        };
        let login = |port: u16| {
            serde_json::json!({"host": "127.0.0.1", "port": port, "user": PEER_USER,
                               "password": PEER_PASSWORD, "dbname": "psycopg2_test"})
        };
        let mut target = login(port);
        // Where the runner cleans up between runs and looks when a run hangs.
        target["primary"] = login(primary);
        targets.push((mode.to_string(), target));
    }
    for proxy in &proxies {
        proxy.wait_topology(3);
    }
    let named: Vec<(&str, &Proxy)> = MODES.iter().copied().zip(proxies.iter()).collect();
    compare("psycopg2", &dir, &targets, &named, true);
}

#[test]
fn pymysql_suite_direct_and_through_both_pooling_modes() {
    let dir = prepare();
    let cluster = MariaDbCluster::start();
    let p = cluster.primary_port();
    // The suite creates and grants users itself (test_issue_17 grants `issue17user`), so the
    // account needs every privilege with GRANT OPTION; LOAD DATA LOCAL needs local_infile.
    cluster.sql(
        p,
        &format!(
            "CREATE USER '{PEER_USER}'@'%' IDENTIFIED BY '{PEER_PASSWORD}';
             GRANT ALL PRIVILEGES ON *.* TO '{PEER_USER}'@'%' WITH GRANT OPTION;
             SET GLOBAL local_infile = 1;"
        ),
    );
    let mut targets = Vec::new();
    let mut proxies = Vec::new();
    for mode in ["direct", MODES[0], MODES[1]] {
        let (db1, db2) = (format!("pymysql_{mode}_1"), format!("pymysql_{mode}_2"));
        cluster.sql(
            p,
            &format!(
                "CREATE DATABASE {db1} DEFAULT CHARACTER SET utf8mb4; CREATE DATABASE {db2} DEFAULT CHARACTER SET utf8mb4"
            ),
        );
        let port = if mode == "direct" {
            p
        } else {
            let (yaml, ports) = Proxy::mysql_config(&cluster);
            let user = |name: &str, password: &str| {
                format!(
                    "{{ name: {name}, password: \"{password}\", mysql_auth: mysql_native_password, backend_user: {name}, backend_password: \"{password}\" }}"
                )
            };
            // issue17user: created by test_issue_17 on the server; a proxy knows only the users
            // of its config, so it is configured here as an operator would.
            let users = [user(PEER_USER, PEER_PASSWORD), user("issue17user", "1234")];
            proxies.push(Proxy::start(&proxy_yaml(yaml, mode, &users)));
            ports.listen
        };
        targets.push((
            mode.to_string(),
            serde_json::json!({"host": "127.0.0.1", "port": port, "user": PEER_USER,
                               "password": PEER_PASSWORD, "db1": db1, "db2": db2}),
        ));
    }
    cluster.wait_replicas_caught_up();
    for proxy in &proxies {
        proxy.wait_topology(3);
    }
    let named: Vec<(&str, &Proxy)> = MODES.iter().copied().zip(proxies.iter()).collect();
    compare("pymysql", &dir, &targets, &named, false);
}
