//! Server-side session timeouts through the proxy (issue 21, fidelity): a client that sets
//! `idle_in_transaction_session_timeout` or `idle_session_timeout` gets what the server gives
//! directly (the FATAL error with its SQLSTATE, then a closed connection), in session and in
//! transaction pooling, and a pooled server connection that a timeout killed serves no one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::pg_cluster::APP_PASSWORD;
use support::{pg_conn_str, shared, Proxy, ProxyPorts};

fn proxy(pooled: bool) -> (Proxy, ProxyPorts) {
    let (yaml, ports) = Proxy::pg_config(shared());
    let yaml = if pooled {
        yaml.replace(
            "    monitor: {",
            "    pool: { mode: transaction, size: 4, checkout_timeout: 30s }\n    monitor: {",
        )
    } else {
        yaml
    };
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    (proxy, ports)
}

/// What psql reports when a session runs `setup` and `idle_step`, stays idle `pause`, then
/// queries: the severity and SQLSTATE of each error it prints (`FATAL 57P05`), and whether the
/// last query was answered.
fn outcome(port: u16, setup: &str, idle_step: &str, pause: Duration) -> (Vec<String>, bool) {
    let script = format!(
        "{setup};\n{idle_step};\n\\! sleep {}\nSELECT 'still here';\n",
        pause.as_secs_f64()
    );
    run_psql(port, &script)
}

/// Run a psql script (verbose errors); the errors it printed and whether `'still here'` was
/// answered.
fn run_psql(port: u16, script: &str) -> (Vec<String>, bool) {
    let script = format!("\\set VERBOSITY verbose\n{script}");
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            &pg_conn_str(port, "app", APP_PASSWORD, "app"),
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors = stderr
        .lines()
        .filter_map(|l| {
            let (sev, rest) = l.split_once(":  ")?;
            let code = rest.split(':').next()?;
            (matches!(sev, "ERROR" | "FATAL") && code.len() == 5).then(|| format!("{sev} {code}"))
        })
        .collect();
    let answered = String::from_utf8_lossy(&out.stdout).contains("still here");
    (errors, answered)
}

#[test]
fn session_timeouts_end_the_session_as_directly() {
    let cluster = shared();
    let cases = [
        (
            "SET idle_in_transaction_session_timeout = '1s'",
            "BEGIN; SELECT 1",
        ),
        ("SET idle_session_timeout = '1s'", "SELECT 1"),
    ];
    let pause = Duration::from_millis(2500);
    let mut want = Vec::new();
    for (setup, step) in cases {
        want.push(outcome(cluster.primary_port(), setup, step, pause));
    }
    eprintln!("directly: {want:?}");
    assert_eq!(
        want,
        [
            (vec!["FATAL 25P03".to_string()], false),
            (vec!["FATAL 57P05".to_string()], false)
        ],
        "directly"
    );
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        for ((setup, step), w) in cases.iter().zip(&want) {
            let got = outcome(ports.listen, setup, step, pause);
            eprintln!("pooled={pooled} {setup}: {got:?}");
            assert_eq!(&got, w, "pooled={pooled}: {setup}; {step}");
        }
    }
}

/// A session that keeps working never times out, even while one of its server connections idles
/// longer than the timeout (the client's clock counts, not a server connection's).
#[test]
fn working_sessions_stay() {
    let busy = "SET idle_session_timeout = '1s';\n\
        SELECT 1;\n\\! sleep 0.6\nINSERT INTO pg_timeouts_t VALUES (1);\n\\! sleep 0.6\n\
        SELECT 1;\n\\! sleep 0.6\nINSERT INTO pg_timeouts_t VALUES (2);\n\\! sleep 0.6\n\
        BEGIN;\n\\! sleep 1.5\nSELECT 1;\nCOMMIT;\nSELECT 'still here';\n";
    let cluster = shared();
    cluster.psql(
        cluster.primary_port(),
        "app",
        "CREATE TABLE IF NOT EXISTS pg_timeouts_t (v int); GRANT ALL ON pg_timeouts_t TO app",
    );
    assert_eq!(
        run_psql(cluster.primary_port(), busy),
        (vec![], true),
        "directly"
    );
    for pooled in [false, true] {
        let (_proxy, ports) = proxy(pooled);
        assert_eq!(
            run_psql(ports.listen, busy),
            (vec![], true),
            "pooled={pooled}"
        );
    }
}
