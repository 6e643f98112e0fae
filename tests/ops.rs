//! End-to-end operations: SIGTERM drains (open transactions finish, new connections are refused,
//! exit 0), pause / resume hold and release requests, the admin token guards `/api`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{http_request, pg_conn_str, shared, Proxy};
use tokio_postgres::{Client, NoTls};

async fn connect(port: u16) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) =
        tokio_postgres::connect(&pg_conn_str(port, APP_USER, APP_PASSWORD, "app"), NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

use support::simple_value as value;

fn setup(table: &str) {
    let c = shared();
    c.psql(
        c.primary_port(),
        "app",
        &format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int); GRANT ALL ON {table} TO app"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_transaction_finish_then_exits_zero() {
    setup("drain_t");
    let (yaml, ports) = Proxy::pg_config(shared());
    let yaml = yaml.replace("clusters:", "limits: { shutdown_timeout: 20s }\nclusters:");
    // Transaction pooling, so that a plain BEGIN is answered by the proxy (sent to the server
    // only with the transaction's first statement): that session is in a transaction too.
    let yaml = yaml.replace(
        "    monitor:",
        "    pool: { mode: transaction, size: 5 }\n    monitor:",
    );
    let mut proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let busy = connect(ports.listen).await.unwrap();
    let idle = connect(ports.listen).await.unwrap();
    let begun = connect(ports.listen).await.unwrap();
    assert_eq!(value(&idle, "SELECT 1").await, "1");
    busy.simple_query("BEGIN; INSERT INTO drain_t VALUES (1)")
        .await
        .unwrap();
    begun.simple_query("BEGIN").await.unwrap();

    proxy.signal("TERM");
    let termed = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // New connections are refused, the idle session was closed.
    assert!(
        connect(ports.listen).await.is_err(),
        "new connection accepted while draining"
    );
    assert!(
        idle.simple_query("SELECT 1").await.is_err(),
        "idle session still served"
    );
    // The open transaction goes on to its end.
    busy.simple_query("INSERT INTO drain_t VALUES (2)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    busy.simple_query("COMMIT")
        .await
        .expect("COMMIT while draining");
    begun
        .simple_query("INSERT INTO drain_t VALUES (3)")
        .await
        .expect("the transaction begun before the drain goes on");
    begun
        .simple_query("COMMIT")
        .await
        .expect("COMMIT while draining");
    let status = proxy.terminate(Duration::from_secs(20));
    println!(
        "drained and exited {status} {:?} after SIGTERM",
        termed.elapsed()
    );
    assert!(status.success(), "exit status {status}\n{}", proxy.log());
    let c = shared();
    assert_eq!(
        c.psql(c.primary_port(), "app", "SELECT count(*) FROM drain_t"),
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_requests_until_resume_and_the_token_guards_the_api() {
    setup("pause_t");
    let (yaml, ports) = Proxy::pg_config(shared());
    let yaml = yaml.replace(
        &format!("admin: {{ listen: \"127.0.0.1:{}\" }}", ports.admin),
        &format!(
            "admin: {{ listen: \"127.0.0.1:{}\", token: s3cret }}",
            ports.admin
        ),
    );
    assert!(yaml.contains("token: s3cret"));
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology_token(3, "s3cret");
    let admin = proxy.admin_addr().unwrap();
    let auth = "Authorization: Bearer s3cret";
    let req = move |method: &'static str, path: &'static str, headers: Vec<&'static str>| {
        tokio::task::spawn_blocking(move || {
            http_request(admin, method, path, &headers, "", Duration::from_secs(30))
        })
    };
    // The token: /api needs it, /metrics does not.
    assert_eq!(req("GET", "/api/clusters", vec![]).await.unwrap().0, 401);
    assert_eq!(
        req("GET", "/api/clusters", vec!["Authorization: Bearer nope"])
            .await
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        req("GET", "/api/clusters", vec![auth]).await.unwrap().0,
        200
    );
    assert_eq!(req("GET", "/metrics", vec![]).await.unwrap().0, 200);

    // A pause waits for open transactions: with one open and a short timeout, it is refused.
    let c = connect(ports.listen).await.unwrap();
    c.simple_query("BEGIN; INSERT INTO pause_t VALUES (1)")
        .await
        .unwrap();
    let (status, body) = req("POST", "/api/pause?timeout=300ms", vec![auth])
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    c.simple_query("COMMIT").await.unwrap();

    let (status, body) = req("POST", "/api/pause?timeout=5s", vec![auth])
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let held = tokio::spawn(async move {
        let started = Instant::now();
        c.simple_query("INSERT INTO pause_t VALUES (2)")
            .await
            .unwrap();
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!held.is_finished(), "a request ran while paused");
    let (status, _) = req("POST", "/api/resume", vec![auth]).await.unwrap();
    assert_eq!(status, 200);
    let waited = held.await.unwrap();
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    let sh = shared();
    assert_eq!(
        sh.psql(sh.primary_port(), "app", "SELECT count(*) FROM pause_t"),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_drain_and_enable_replicas_and_see_the_pools() {
    let sh = shared();
    let (yaml, ports) = Proxy::pg_config(sh);
    let yaml = yaml.replace(
        "    monitor: {",
        "    pool: { mode: transaction, size: 3 }\n    monitor: {",
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let admin = proxy.admin_addr().unwrap();
    let post = move |path: String| {
        tokio::task::spawn_blocking(move || {
            http_request(admin, "POST", &path, &[], "", Duration::from_secs(10))
        })
    };
    let [r1, r2] = sh.replica_ports();
    let c = connect(ports.listen).await.unwrap();
    let ports_seen = |c: Client| async move {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..12 {
            seen.insert(
                value(&c, "SELECT inet_server_port()")
                    .await
                    .parse::<u16>()
                    .unwrap(),
            );
        }
        (c, seen)
    };
    let (c, seen) = ports_seen(c).await;
    assert!(seen.contains(&r1) && seen.contains(&r2), "{seen:?}");

    let (status, body) = post("/api/clusters/main/servers/replica1/drain".into())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (c, seen) = ports_seen(c).await;
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![r2],
        "drained replica1 still read"
    );
    let (status, _) = post("/api/clusters/main/servers/replica2/maintenance".into())
        .await
        .unwrap();
    assert_eq!(status, 200);
    // No replica left: reads fall back to the primary.
    let (c, seen) = ports_seen(c).await;
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![sh.primary_port()]
    );
    let (status, body) = post("/api/clusters/main/servers/primary/maintenance".into())
        .await
        .unwrap();
    assert_eq!(status, 409, "the primary cannot be taken out: {body}");
    for s in ["replica1", "replica2"] {
        let (status, _) = post(format!("/api/clusters/main/servers/{s}/enable"))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    let (_, seen) = ports_seen(c).await;
    assert!(seen.contains(&r1) && seen.contains(&r2), "{seen:?}");
    let (status, body) = proxy.http_get("/api/clusters");
    assert_eq!(status, 200);
    assert!(body.contains("\"mode\":\"enabled\""), "{body}");

    let (status, body) = proxy.http_get("/api/pools");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let pools = v["clusters"][0]["pools"].as_array().unwrap();
    assert_eq!(v["clusters"][0]["mode"], "transaction");
    assert!(!pools.is_empty(), "{body}");
    for p in pools {
        assert_eq!(p["size"], 3);
        assert!(p["idle"].as_u64().unwrap() + p["in_use"].as_u64().unwrap() <= 3);
        assert_eq!(p["user"], "app");
    }
}

#[test]
fn session_debug_shows_routing_decisions_and_logs_hold_no_secrets() {
    let sh = shared();
    let (yaml, ports) = Proxy::pg_config(sh);
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &ports.listen.to_string(),
            "-U",
            APP_USER,
            "-d",
            "app",
        ])
        .args([
            "-c",
            "SET switchyard.debug = on",
            "-c",
            "SELECT 1",
            "-c",
            "BEGIN",
            "-c",
            "SELECT 2",
        ])
        .env("PGPASSWORD", APP_PASSWORD)
        .output()
        .expect("run psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("NOTICE:  switchyard: replica replica"),
        "{stderr}"
    );
    assert!(stderr.contains("switchyard: primary primary"), "{stderr}");
    // A failed login and the successful ones above: no password, proof or verifier in the log.
    let bad = std::process::Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &ports.listen.to_string(),
            "-U",
            APP_USER,
            "-d",
            "app",
            "-c",
            "SELECT 1",
        ])
        .env("PGPASSWORD", "not-the-password-xyz")
        .output()
        .expect("run psql");
    assert!(!bad.status.success());
    let log = proxy.log();
    assert!(
        log.contains("routing decision"),
        "debug decisions are logged"
    );
    for secret in [
        APP_PASSWORD,
        "not-the-password-xyz",
        sh.superuser_password(),
    ] {
        assert!(!log.contains(secret), "the log holds a secret ({secret})");
    }
}

/// psql against the admin console (`-d switchyard`) as `user`; (success, stdout, stderr).
fn console(port: u16, user: &str, password: &str, sql: &str) -> (bool, String, String) {
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-F", "|", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", user, "-d", "switchyard", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn admin_console_shows_servers_pools_stats_and_config() {
    let sh = shared();
    let (yaml, ports) = Proxy::pg_config(sh);
    // `postgres` may use the console; `app` may not.
    let yaml = yaml.replacen(
        "backend_user: postgres,",
        "console: true, backend_user: postgres,",
        1,
    );
    assert!(yaml.contains("console: true"));
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let su = sh.superuser_password();
    let port = ports.listen;

    let (ok, out, err) = console(port, "postgres", su, "SHOW SERVERS");
    assert!(ok, "{err}\n{}", proxy.log());
    println!("{out}");
    assert!(out.starts_with("name|address|role|health|state|"), "{out}");
    assert!(out.contains("primary|127.0.0.1:"), "{out}");
    assert!(
        out.lines()
            .filter(|l| l.contains("|replica|up|healthy|"))
            .count()
            == 2,
        "{out}"
    );

    let (ok, out, err) = console(port, "postgres", su, "show stats;");
    assert!(ok, "{err}");
    assert!(
        out.contains("main|") && out.contains("|primary|idle"),
        "{out}"
    );
    let (ok, out, _) = console(port, "postgres", su, "SHOW CONFIG");
    assert!(ok && out.contains("pool.mode|session"), "{out}");
    let (ok, out, _) = console(port, "postgres", su, "SHOW POOLS");
    assert!(
        ok && out.starts_with("server|user|size|idle|in_use|waiting"),
        "{out}"
    );
    let (ok, out, _) = console(port, "postgres", su, "SHOW HELP");
    assert!(ok && out.contains("SHOW SERVERS"), "{out}");
    let (ok, _, err) = console(port, "postgres", su, "DROP TABLE x");
    assert!(!ok && err.contains("try SHOW HELP"), "{err}");
    // A user without `console` reaches the servers, where no database `switchyard` exists.
    let (ok, _, err) = console(port, APP_USER, APP_PASSWORD, "SHOW SERVERS");
    assert!(!ok && err.contains("switchyard"), "{err}");
}
