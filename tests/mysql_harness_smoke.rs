//! Smoke test of the MariaDB e2e harness: a real primary + two GTID replicas, and its proxy config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::time::Instant;

use switchyard::config::MysqlAuth;

use support::mysql_cluster::{parse_first_row, MYSQL_REPL_USER};
use support::proxy::{SHAAPP_PASSWORD, SHAAPP_USER};
use support::{
    MariaDbCluster, Proxy, MYSQL_APP_PASSWORD, MYSQL_APP_USER, MYSQL_MONITOR_PASSWORD,
    MYSQL_MONITOR_USER,
};

#[test]
fn mariadb_cluster_replicates_and_replicas_restart() {
    let started = Instant::now();
    let c = MariaDbCluster::start();
    eprintln!("MariaDB cluster started in {:?}", started.elapsed());
    let p = c.primary_port();
    let [r1, r2] = c.replica_ports();

    assert_eq!(c.sql(p, "SELECT @@server_id, @@read_only"), "1\t0");
    assert_eq!(c.sql(r1, "SELECT @@server_id, @@read_only"), "2\t1");
    assert_eq!(c.sql(r2, "SELECT @@server_id, @@read_only"), "3\t1");
    for port in [p, r1, r2] {
        assert_eq!(
            c.sql(
                port,
                "SELECT @@log_bin, @@log_slave_updates, @@gtid_strict_mode, @@binlog_format"
            ),
            "1\t1\t1\tROW"
        );
    }

    // The app user writes on the primary; both replicas apply it.
    let app = |port: u16, sql: &str| c.sql_as(port, MYSQL_APP_USER, MYSQL_APP_PASSWORD, "app", sql);
    app(p, "CREATE TABLE smoke (id INT PRIMARY KEY, v VARCHAR(20))");
    app(p, "INSERT INTO smoke VALUES (1, 'one'), (2, 'two')");
    c.wait_replicas_caught_up();
    for r in [r1, r2] {
        assert_eq!(
            app(r, "SELECT GROUP_CONCAT(v ORDER BY id) FROM smoke"),
            "one,two"
        );
        assert_eq!(
            c.sql(r, "SELECT @@gtid_slave_pos"),
            c.sql(p, "SELECT @@gtid_binlog_pos")
        );
    }

    // Replicas refuse writes from non-SUPER users.
    let err = c
        .try_sql_as(
            r1,
            MYSQL_APP_USER,
            MYSQL_APP_PASSWORD,
            "app",
            "INSERT INTO smoke VALUES (3, 'x')",
        )
        .unwrap_err();
    assert!(err.contains("read-only") || err.contains("1290"), "{err}");
    // Wrong passwords fail; the monitor login may read replica status but not the app data.
    assert!(c
        .try_sql_as(p, MYSQL_APP_USER, "wrong", "app", "SELECT 1")
        .is_err());
    let status = c.sql_as(
        r2,
        MYSQL_MONITOR_USER,
        MYSQL_MONITOR_PASSWORD,
        "",
        "SHOW SLAVE STATUS",
    );
    assert!(status.contains("Yes\tYes"), "{status}");
    assert!(c
        .try_sql_as(
            p,
            MYSQL_MONITOR_USER,
            MYSQL_MONITOR_PASSWORD,
            "",
            "SELECT * FROM app.smoke"
        )
        .is_err());
    assert_eq!(
        c.sql(r2, &format!("SELECT COUNT(*) FROM mysql.user WHERE user IN ('app', 'monitor', '{MYSQL_REPL_USER}')")),
        "3"
    );

    // Stop replica 0: writes continue; after restart it catches up from its GTID position.
    c.stop_replica(0);
    assert!(c.try_sql(r1, "SELECT 1").is_err());
    app(p, "INSERT INTO smoke VALUES (3, 'three')");
    c.wait_replicas_caught_up(); // only replica 1 is waited for
    assert_eq!(app(r2, "SELECT COUNT(*) FROM smoke"), "3");
    c.start_replica(0);
    assert_eq!(c.sql(r1, "SELECT @@server_id, @@read_only"), "2\t1");
    c.wait_replicas_caught_up();
    assert_eq!(app(r1, "SELECT COUNT(*) FROM smoke"), "3");

    // Stop replica 1's SQL thread: it receives but does not apply; after restart it applies.
    c.stop_replica_sql_thread(1);
    assert_eq!(c.replica_status(1)["Slave_SQL_Running"], "No");
    assert_eq!(c.replica_status(1)["Slave_IO_Running"], "Yes");
    app(p, "INSERT INTO smoke VALUES (4, 'four')");
    c.wait_replicas_caught_up(); // skips replica 1
    assert_eq!(app(r1, "SELECT COUNT(*) FROM smoke"), "4");
    assert_eq!(app(r2, "SELECT COUNT(*) FROM smoke"), "3");
    c.start_replica_sql_thread(1);
    c.wait_replicas_caught_up();
    assert_eq!(app(r2, "SELECT COUNT(*) FROM smoke"), "4");

    // Drop kills the servers and removes the dir.
    let dir = c.dir().to_path_buf();
    drop(c);
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn mysql_proxy_config_is_accepted_by_the_config_loader() {
    let c = support::shared_mysql();
    let (yaml, ports) = Proxy::mysql_config(c);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    let config =
        switchyard::config::load_file(file.path()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(config.clusters.len(), 1);
    let cluster = &config.clusters[0];
    assert_eq!(cluster.protocol, switchyard::config::Protocol::Mysql);
    assert_eq!(cluster.listen.port(), ports.listen);
    assert_eq!(cluster.servers.len(), 3);
    assert_eq!(cluster.monitor.user, MYSQL_MONITOR_USER);
    assert_eq!(cluster.monitor.database, "");
    let users: Vec<(&str, MysqlAuth, &str)> = config
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.mysql_auth, u.backend_user.as_str()))
        .collect();
    assert_eq!(
        users,
        [
            (MYSQL_APP_USER, MysqlAuth::Native, MYSQL_APP_USER),
            (SHAAPP_USER, MysqlAuth::CachingSha2, MYSQL_APP_USER)
        ]
    );
    assert!(yaml.contains(SHAAPP_PASSWORD));
}

#[test]
fn parse_first_row_keys_values_by_header() {
    let row = parse_first_row("A\tB\tC\nx\t\tz\nignored\trow\n");
    assert_eq!(row["A"], "x");
    assert_eq!(row["B"], "");
    assert_eq!(row["C"], "z");
    assert!(parse_first_row("").is_empty());
    assert!(parse_first_row("A\tB\n").is_empty());
}
