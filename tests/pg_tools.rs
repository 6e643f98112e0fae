//! End-to-end: psql and pgbench through the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{shared, Proxy};

fn psql(port: u16, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        APP_USER,
        "-d",
        "app",
    ])
    .args(args)
    .env("PGPASSWORD", APP_PASSWORD)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("psql");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pgbench(port: u16, args: &[&str]) -> String {
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", APP_USER])
        .args(args)
        .arg("app")
        .env("PGPASSWORD", APP_PASSWORD)
        .output()
        .expect("pgbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    text
}

#[test]
fn psql_command_script_and_copy() {
    let cluster = shared();
    let (proxy, ports) = Proxy::start_for(cluster);
    let (ok, out, err) = psql(ports.listen, &["-A", "-t", "-c", "SELECT 40 + 2"], None);
    assert!(ok, "{err}\n{}", proxy.log());
    assert_eq!(out.trim(), "42");

    let script = r"
CREATE TABLE IF NOT EXISTS psql_script (id int PRIMARY KEY, v text);
TRUNCATE psql_script;
BEGIN;
INSERT INTO psql_script VALUES (1, 'one'), (2, 'two');
COMMIT;
COPY psql_script FROM STDIN;
3	three
4	four
\.
SELECT count(*) FROM psql_script WHERE id <= 4 \gset
\echo rows :count
SET application_name = 'from_script';
SHOW application_name;
COPY (SELECT id, v FROM psql_script ORDER BY id) TO STDOUT;
\d psql_script
";
    let (ok, out, err) = psql(ports.listen, &["-A", "-t", "-f", "-"], Some(script));
    assert!(ok, "script failed: {err}\n{}", proxy.log());
    assert!(out.contains("from_script"), "{out}");
    assert!(out.contains("1\tone") && out.contains("4\tfour"), "{out}");
    assert!(out.contains("id|integer"), "{out}");
    // The COPY landed on the primary: the primary has 4 rows.
    assert_eq!(
        cluster.psql(
            cluster.primary_port(),
            "app",
            "SELECT count(*) FROM psql_script"
        ),
        "4"
    );
}

#[test]
fn pgbench_all_protocols_through_the_proxy() {
    let cluster = shared();
    let (proxy, ports) = Proxy::start_for(cluster);
    cluster.psql(
        cluster.primary_port(),
        "app",
        "GRANT CREATE ON SCHEMA public TO app",
    );
    pgbench(ports.listen, &["-i", "-s", "1", "-q"]);
    cluster.wait_replicas_caught_up();
    for mode in ["simple", "extended", "prepared"] {
        for script in [&["-S"][..], &[][..]] {
            let mut args = vec!["-M", mode, "-c", "4", "-j", "2", "-t", "200", "-n"];
            args.extend_from_slice(script);
            let out = pgbench(ports.listen, &args);
            assert!(out.contains("number of failed transactions: 0"), "{out}");
            assert!(
                out.contains("number of transactions actually processed: 800/800"),
                "{mode} {script:?}:\n{out}\n{}",
                proxy.log()
            );
        }
    }
}
