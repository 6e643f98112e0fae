//! End-to-end: the `mariadb` command-line client and sysbench through the proxy (MariaDB cluster).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::mysql_cluster::shared_mysql;
use support::proxy::{SHAAPP_PASSWORD, SHAAPP_USER};
use support::Proxy;

fn mariadb(port: u16, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    mariadb_as(port, "app", "app-secret", args, stdin)
}

/// Run the `mariadb` CLI (default options: TLS requested but not offered by the proxy) as `user`.
fn mariadb_as(
    port: u16,
    user: &str,
    password: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut child = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            &format!("-P{port}"),
            &format!("-u{user}"),
            &format!("-p{password}"),
            "--local-infile=1",
            "app",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mariadb client");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mariadb_cli_command_script_and_local_infile() {
    let cluster = shared_mysql();
    let (proxy, ports) = Proxy::start_for_mysql(cluster);
    let (ok, out, err) = mariadb(ports.listen, &["-N", "-B", "-e", "SELECT 40 + 2"], None);
    assert!(ok, "{err}\n{}", proxy.log());
    assert_eq!(out.trim(), "42");

    let data = std::env::temp_dir().join(format!("switchyard-infile-{}.tsv", std::process::id()));
    std::fs::write(&data, "1\tone\n2\ttwo\n3\tthree\n").unwrap();
    let script = format!(
        "DROP TABLE IF EXISTS cli_script;\n\
         CREATE TABLE cli_script (id INT PRIMARY KEY, v VARCHAR(20));\n\
         START TRANSACTION;\n\
         INSERT INTO cli_script VALUES (10, 'ten');\n\
         COMMIT;\n\
         LOAD DATA LOCAL INFILE '{}' INTO TABLE cli_script;\n\
         SET NAMES utf8mb4;\n\
         USE app;\n\
         /* switchyard: primary */ SELECT COUNT(*) FROM cli_script;\n\
         SELECT @@character_set_client;\n",
        data.display()
    );
    // --comments keeps the routing hint (the client strips comments by default).
    let (ok, out, err) = mariadb(ports.listen, &["-N", "-B", "--comments"], Some(&script));
    let _ = std::fs::remove_file(&data);
    assert!(ok, "script failed: {err}\n{}", proxy.log());
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"4"), "{out}");
    assert!(lines.contains(&"utf8mb4"), "{out}");
    assert_eq!(
        cluster.sql(
            cluster.primary_port(),
            "SELECT COUNT(*) FROM app.cli_script"
        ),
        "4"
    );
}

#[test]
fn mariadb_cli_caching_sha2_user_logs_in_twice_and_wrong_password_is_refused() {
    let cluster = shared_mysql();
    let (proxy, ports) = Proxy::start_for_mysql(cluster);
    // First login (nothing cached: the proxy must not ask libmariadb for the full password, which
    // it would send in cleartext), then a second one (cached: fast path).
    for round in 1..=2 {
        let (ok, out, err) = mariadb_as(
            ports.listen,
            SHAAPP_USER,
            SHAAPP_PASSWORD,
            &[
                "-N",
                "-B",
                "-e",
                "SELECT CURRENT_USER() LIKE 'app@%', 6 * 7",
            ],
            None,
        );
        assert!(ok, "login {round}: {err}\n{}", proxy.log());
        assert_eq!(out.trim(), "1\t42", "login {round}");
    }
    let (ok, _, err) = mariadb_as(
        ports.listen,
        SHAAPP_USER,
        "not-the-secret",
        &["-e", "SELECT 1"],
        None,
    );
    assert!(!ok);
    assert!(err.contains("ERROR 1045 (28000)"), "{err}");
    assert!(
        !proxy.log().contains("not RSA-encrypted"),
        "{}",
        proxy.log()
    );
}

fn sysbench(port: u16, test: &str, phase: &str) -> String {
    let out = Command::new("sysbench")
        .args([
            test,
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            "--mysql-user=app",
            "--mysql-password=app-secret",
            "--mysql-db=app",
            "--db-driver=mysql",
            "--tables=2",
            "--table-size=5000",
            "--threads=4",
            "--time=4",
            "--db-ps-mode=auto",
            phase,
        ])
        .output()
        .expect("sysbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sysbench {test} {phase} failed:\n{text}"
    );
    text
}

#[test]
fn sysbench_read_only_and_read_write_through_the_proxy() {
    let cluster = shared_mysql();
    let (proxy, ports) = Proxy::start_for_mysql(cluster);
    sysbench(ports.listen, "oltp_read_write", "prepare");
    cluster.wait_replicas_caught_up();
    for test in ["oltp_read_only", "oltp_read_write"] {
        let out = sysbench(ports.listen, test, "run");
        // sysbench's default ignore list covers deadlocks (1213), which InnoDB may report under
        // concurrent writes exactly as it would without the proxy; any other error fails the run.
        let tx = out
            .lines()
            .find(|l| l.trim_start().starts_with("transactions:"))
            .unwrap_or_else(|| panic!("{out}\n{}", proxy.log()));
        assert!(
            !tx.contains(" 0 "),
            "{test}: no transaction completed: {tx}"
        );
    }
    sysbench(ports.listen, "oltp_read_write", "cleanup");
    let m = proxy.metrics();
    assert!(m.contains("route=\"replica\""), "{m}");
}
