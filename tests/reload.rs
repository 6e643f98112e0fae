//! End-to-end hot reload on PostgreSQL while pgbench runs through the proxy: a replica removed
//! and added back, a pool resized, a user added (by SIGHUP), a broken file and a primary removal
//! refused; pgbench finishes with no errors. And on MariaDB: a replica removed and added back
//! under load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::pg_cluster::{APP_PASSWORD, APP_USER, PG_BIN};
use support::{http_post, pg_conn_str, shared, Proxy, ProxyPorts};
use tokio_postgres::NoTls;

const NEW_USER: &str = "newbie";
const NEW_PASSWORD: &str = "newbie-secret";

/// The standard config in transaction pooling with `size` per pool, without the servers named
/// in `drop`, with the extra user when `newbie`.
fn config(base: &str, size: usize, drop: &[&str], newbie: bool) -> String {
    let mut yaml: String = base
        .lines()
        .filter(|l| !drop.iter().any(|d| l.contains(&format!("name: {d},"))))
        .map(|l| format!("{l}\n"))
        .collect();
    yaml = yaml.replace(
        "    monitor: {",
        &format!("    pool: {{ mode: transaction, size: {size}, checkout_timeout: 30s }}\n    monitor: {{"),
    );
    if newbie {
        yaml.push_str(&format!(
            "  - {{ name: {NEW_USER}, password: \"{NEW_PASSWORD}\", auth: scram-sha-256, backend_user: {APP_USER}, backend_password: \"{APP_PASSWORD}\" }}\n"
        ));
    }
    yaml
}

fn reload(proxy: &Proxy) -> (u16, serde_json::Value) {
    let (status, body) = http_post(
        proxy.admin_addr().unwrap(),
        "/api/reload",
        "",
        Duration::from_secs(20),
    );
    let v = serde_json::from_str(&body).unwrap_or_else(|_| serde_json::json!({ "raw": body }));
    println!("POST /api/reload -> {status} {v}");
    (status, v)
}

fn server<'a>(clusters: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    clusters["clusters"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or(&serde_json::Value::Null)
}

fn clusters(proxy: &Proxy) -> serde_json::Value {
    let (status, body) = proxy.http_get("/api/clusters");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// pgbench's connections on the server at `port` (the proxy's backends carry its name).
fn pgbench_conns(port: u16) -> usize {
    let c = shared();
    c.psql(
        port,
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'",
    )
    .trim()
    .parse()
    .unwrap()
}

/// Poll `check` every 100 ms for up to `secs` seconds.
fn eventually(secs: u64, what: &str, proxy: &Proxy, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "not within {secs}s: {what}\n{}",
            proxy.log()
        );
        sleep(Duration::from_millis(100));
    }
}

fn write(proxy: &Proxy, yaml: &str) {
    std::fs::write(proxy.config_path(), yaml).unwrap();
}

fn can_login(port: u16, user: &str, password: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&pg_conn_str(port, user, password, "app"), NoTls)
                .await
                .map_err(|e| format!("{e:?}"))?;
        tokio::spawn(conn);
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    })
}

fn pgbench_init() {
    let c = shared();
    let out = Command::new(format!("{PG_BIN}/pgbench"))
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &c.primary_port().to_string(), "postgres"])
        .env("PGPASSWORD", c.superuser_password())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    c.wait_replicas_caught_up();
}

#[test]
fn reload_under_pgbench_applies_servers_pool_and_users_and_refuses_bad_files() {
    let c = shared();
    pgbench_init();
    let (base, ProxyPorts { listen, .. }) = Proxy::pg_config(c);
    let proxy = Proxy::start(&config(&base, 4, &[], false));
    proxy.wait_topology(3);
    let [_, r2] = c.replica_ports();

    // 8 clients, mostly reads (split over the replicas) plus tpcb-like write transactions.
    let bench = Command::new(format!("{PG_BIN}/pgbench"))
        .args(["-n", "-M", "prepared", "-c", "8", "-j", "2", "-T", "15"])
        .args(["-b", "select-only@4", "-b", "tpcb-like@1"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &listen.to_string(),
            "-U",
            "postgres",
        ])
        .arg("postgres")
        .env("PGPASSWORD", c.superuser_password())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    eventually(10, "pgbench reads reach replica2", &proxy, || {
        pgbench_conns(r2) > 0
    });

    // 1. replica2 removed: its pooled connections close, it is no longer probed or routed to.
    write(&proxy, &config(&base, 4, &["replica2"], false));
    let (status, v) = reload(&proxy);
    assert_eq!(status, 200, "{v}");
    assert!(v.to_string().contains("server replica2 removed"), "{v}");
    assert_eq!(server(&clusters(&proxy), "replica2")["mode"], "removed");
    eventually(15, "no pgbench connection left on replica2", &proxy, || {
        pgbench_conns(r2) == 0
    });
    sleep(Duration::from_secs(2));
    assert_eq!(pgbench_conns(r2), 0, "replica2 got work after removal");

    // 2. Pools shrink from 4 to 2 per server.
    write(&proxy, &config(&base, 2, &["replica2"], false));
    let (status, v) = reload(&proxy);
    assert_eq!(status, 200, "{v}");
    assert!(v.to_string().contains("pool settings"), "{v}");
    eventually(
        10,
        "at most 2 pgbench connections per server",
        &proxy,
        || pgbench_conns(c.primary_port()) <= 2 && pgbench_conns(c.replica_ports()[0]) <= 2,
    );
    let (_, pools) = proxy.http_get("/api/pools");
    assert!(pools.contains("\"size\":2"), "{pools}");

    // 3. replica2 added back: probed again, reads reach it again.
    write(&proxy, &config(&base, 2, &[], false));
    let (status, v) = reload(&proxy);
    assert_eq!(status, 200, "{v}");
    assert!(v.to_string().contains("server replica2 added back"), "{v}");
    eventually(15, "replica2 back in the read set", &proxy, || {
        let s = clusters(&proxy);
        let r = server(&s, "replica2");
        r["mode"] == "enabled" && r["health"] == "up" && r["state"] == "healthy"
    });
    eventually(10, "pgbench reads reach replica2 again", &proxy, || {
        pgbench_conns(r2) > 0
    });

    // 4. A user added, by SIGHUP this time.
    assert!(can_login(listen, NEW_USER, NEW_PASSWORD).is_err());
    write(&proxy, &config(&base, 2, &[], true));
    proxy.signal("HUP");
    eventually(10, "the new user can log in", &proxy, || {
        can_login(listen, NEW_USER, NEW_PASSWORD).is_ok()
    });
    assert!(proxy.log().contains("user newbie added"));

    // 5. Broken files are refused with the reason; the running config stays.
    write(&proxy, &config(&base, 0, &[], true));
    let (status, v) = reload(&proxy);
    assert_eq!(status, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("pool.size"), "{v}");
    write(&proxy, "clusters: [ this is not: valid");
    proxy.signal("HUP");
    eventually(5, "SIGHUP with a broken file logged", &proxy, || {
        proxy.log().contains("configuration reload failed")
    });
    // Removing the primary is refused too.
    write(&proxy, &config(&base, 2, &["primary"], true));
    let (status, v) = reload(&proxy);
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("is the primary"),
        "{v}"
    );
    assert!(can_login(listen, NEW_USER, NEW_PASSWORD).is_ok());
    assert!(can_login(listen, APP_USER, APP_PASSWORD).is_ok());
    let (_, pools) = proxy.http_get("/api/pools");
    assert!(pools.contains("\"size\":2"), "{pools}");
    println!(
        "all reload steps done {:?} into the pgbench run",
        started.elapsed()
    );

    // /api/pools shows connected clients and pinned sessions by reason (a temp table pins).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&pg_conn_str(listen, APP_USER, APP_PASSWORD, "app"), NoTls)
                .await
                .unwrap();
        let task = tokio::spawn(conn);
        client
            .simple_query("CREATE TEMP TABLE pin_me (i int)")
            .await
            .unwrap();
        let (_, pools) = proxy.http_get("/api/pools");
        let v: serde_json::Value = serde_json::from_str(&pools).unwrap();
        assert_eq!(v["clusters"][0]["pinned"]["temp_table"], 1, "{pools}");
        assert!(
            v["clusters"][0]["clients"].as_i64().unwrap() >= 9,
            "{pools}"
        );
        drop(client);
        let _ = task.await;
    });
    eventually(5, "the pin ends with its session", &proxy, || {
        let (_, pools) = proxy.http_get("/api/pools");
        !pools.contains("temp_table")
    });

    let out = bench.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "pgbench failed:\n{text}\n{}",
        proxy.log()
    );
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    assert!(!text.contains("error"), "pgbench saw errors:\n{text}");
    let metrics = proxy.metrics();
    let count = |result: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "switchyard_config_reloads_total{{result=\"{result}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("ok") >= 4.0 && count("error") >= 3.0, "{metrics}");
}

/// MariaDB: clients keep reading and writing while replica2 is removed, the pool shrinks, and
/// replica2 comes back; no client error, replica2 gets no reads while removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_reload_removes_and_adds_back_a_replica_under_load() {
    use mysql_async::prelude::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use support::mysql_cluster::shared_mysql;

    let c = shared_mysql();
    c.sql(
        c.primary_port(),
        "CREATE TABLE IF NOT EXISTS app.reload_t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    );
    c.wait_replicas_caught_up();
    let id_of = |port: u16| c.sql(port, "SELECT @@server_id").trim().to_owned();
    let r2_id = id_of(c.replica_ports()[1]);
    let (base, ports) = Proxy::mysql_config(c);
    let with_pool = |size: usize, drop: &[&str]| {
        let yaml: String = base
            .lines()
            .filter(|l| !drop.iter().any(|d| l.contains(&format!("name: {d},"))))
            .map(|l| format!("{l}\n"))
            .collect();
        yaml.replace(
            "    monitor: {",
            &format!("    pool: {{ mode: transaction, size: {size}, checkout_timeout: 30s }}\n    monitor: {{"),
        )
    };
    let proxy = Proxy::start(&with_pool(4, &[]));
    proxy.wait_topology(3);

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for i in 0..6 {
        let (stop, seen) = (stop.clone(), seen.clone());
        let url = format!(
            "mysql://app:app-secret@127.0.0.1:{}/app?prefer_socket=false",
            ports.listen
        );
        clients.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id: Option<String> = conn.query_first("SELECT @@server_id").await.unwrap();
                seen.lock().unwrap().push(id.unwrap_or_default());
                if n.is_multiple_of(5) {
                    conn.query_drop(format!("INSERT INTO reload_t (v) VALUES ({i})"))
                        .await
                        .unwrap();
                }
                n += 1;
            }
            n
        }));
    }
    let reads_on_r2 = |seen: &Mutex<Vec<String>>| {
        let mut s = seen.lock().unwrap();
        let n = s.iter().filter(|id| **id == r2_id).count();
        s.clear();
        n
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        reads_on_r2(&seen) > 0,
        "replica2 took no reads before the reload"
    );

    write(&proxy, &with_pool(2, &["replica2"]));
    let (status, v) = tokio::task::block_in_place(|| reload(&proxy));
    assert_eq!(status, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    reads_on_r2(&seen);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reads_on_r2(&seen),
        0,
        "replica2 took reads after its removal"
    );

    write(&proxy, &with_pool(2, &[]));
    let (status, v) = tokio::task::block_in_place(|| reload(&proxy));
    assert_eq!(status, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if reads_on_r2(&seen) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica2 never took reads again\n{}",
            proxy.log()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for h in clients {
        total += h.await.expect("a client failed during the reloads");
    }
    println!("mysql: {total} client round trips across the reloads, no errors");
}
