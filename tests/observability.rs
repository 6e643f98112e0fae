//! End-to-end observability: a real Prometheus scrapes a running proxy in front of the shared
//! PostgreSQL cluster, with docker/prometheus/alerts.yml loaded; every rule evaluates cleanly,
//! every Grafana dashboard query runs, and `promtool check metrics` accepts `/metrics`.
//!
//! Needs the Debian package `prometheus` (/usr/bin/prometheus and /usr/bin/promtool).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::pg_cluster::{spawn_detached, tail, APP_PASSWORD, APP_USER};
use support::{free_port, pg_conn_str, shared, try_http_get, Proxy};
use tokio_postgres::NoTls;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
const JOB: &str = "switchyard";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn need(binary: &str) {
    assert!(
        Path::new(binary).is_file(),
        "{binary} not found: install the Debian package `prometheus` \
         (apt-get install -y prometheus); scripts/install-deps.sh should install it"
    );
}

/// A Prometheus server in a temp dir, scraping one target every second. Killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr, rule_file: &Path) -> Prometheus {
        need(PROMETHEUS);
        let dir = tempfile::Builder::new()
            .prefix("switchyard-prometheus-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules = rule_file.display()
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn prometheus");
        // Kill it even if this test process dies without running Drop (pid reuse guarded by
        // checking its command line still names our config).
        spawn_detached(&format!(
            "cd /; while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             if tr '\\000' ' ' < /proc/{pid}/cmdline 2>/dev/null | grep -qF '{cfg}'; then kill -9 {pid}; fi",
            me = std::process::id(),
            pid = child.id(),
            cfg = config.display(),
        ));
        let mut p = Prometheus { child, addr, dir };
        p.wait_ready();
        p
    }

    fn log(&self) -> String {
        tail(&self.dir.path().join("prometheus.log"), 40)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            if matches!(try_http_get(self.addr, "/-/ready"), Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in 30 s:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// GET an API path; the parsed `data` of a `"status": "success"` answer.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = try_http_get(self.addr, path).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status} {e}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{path} -> {status}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// Instant query; the result vector (panics when Prometheus rejects the expression).
    fn query(&self, expr: &str) -> Vec<Value> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(expr)))
            .unwrap_or_else(|e| panic!("query {expr}: {e}"));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Poll `check` every 250 ms for up to 60 s; panics with `what` and the log on timeout.
    fn wait_for(&self, what: &str, mut check: impl FnMut(&Prometheus) -> Result<(), String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match check(self) {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "{what} not seen in 60 s: {e}\n--- prometheus log ---\n{}",
                        self.log()
                    )
                }
                Err(_) => sleep(Duration::from_millis(250)),
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding for a query-string value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Some traffic through the proxy: reads, a write in a transaction, and a failed login.
async fn send_queries(port: u16) {
    let conn = pg_conn_str(port, APP_USER, APP_PASSWORD, "app");
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_postgres::connect(&conn, NoTls),
    )
    .await
    .expect("connect deadline")
    .expect("connect through the proxy");
    let task = tokio::spawn(connection);
    let work = async {
        for _ in 0..10 {
            client.simple_query("SELECT 1").await.unwrap();
        }
        client
            .batch_execute(
                "CREATE TEMP TABLE IF NOT EXISTS obs_t (v int); INSERT INTO obs_t VALUES (1)",
            )
            .await
            .unwrap();
        client
            .batch_execute("BEGIN; SELECT count(*) FROM pg_class; COMMIT")
            .await
            .unwrap();
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("queries deadline");
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;

    let bad = pg_conn_str(port, APP_USER, "wrong-password", "app");
    let r = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_postgres::connect(&bad, NoTls),
    )
    .await
    .expect("bad login deadline");
    assert!(r.is_err(), "a wrong password was accepted");
}

/// Every `expr` of the Grafana dashboard, with its variables replaced for a direct query.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text =
        fs::read_to_string(root().join("docker/grafana/dashboards/switchyard.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    let mut add = |title: &str, e: &str| {
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$cluster", ".*");
        out.push((title.to_owned(), e));
    };
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            add(
                p["title"].as_str().unwrap_or(""),
                t["expr"].as_str().unwrap(),
            );
        }
    }
    for a in dash["annotations"]["list"].as_array().unwrap() {
        if let Some(e) = a["expr"].as_str() {
            add("annotation", e);
        }
    }
    out
}

/// The label `name` of each series in a result vector.
fn labels(result: &[Value], name: &str) -> Vec<String> {
    result
        .iter()
        .filter_map(|s| s["metric"][name].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn prometheus_scrapes_the_proxy_and_the_shipped_rules_and_dashboard_work() {
    need(PROMTOOL);
    let cluster = shared();
    // Transaction pooling, so the pool metrics (and their dashboard panels) exist too.
    let (yaml, ports) = Proxy::pg_config(cluster);
    let anchor = "    routing: {";
    assert!(yaml.contains(anchor), "standard config changed:\n{yaml}");
    let yaml = yaml.replacen(
        anchor,
        &format!("    pool: {{ mode: transaction, size: 5 }}\n{anchor}"),
        1,
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(send_queries(ports.listen));

    // promtool lints the exposition format and the metric names.
    let body = proxy.metrics();
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("promtool check metrics ({}):\n{report}", out.status);
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{report}",
        out.status
    );

    let admin = proxy.admin_addr().expect("admin listener");
    let prom = Prometheus::start(admin, &root().join("docker/prometheus/alerts.yml"));

    prom.wait_for("up{job=\"switchyard\"} == 1", |p| {
        let r = p.query(&format!("up{{job=\"{JOB}\"}}"));
        match r.first().and_then(|s| s["value"][1].as_str()) {
            Some("1") => Ok(()),
            other => Err(format!("up = {other:?}")),
        }
    });
    prom.wait_for("switchyard_queries_total{cluster=\"main\"}", |p| {
        let r = p.query("switchyard_queries_total");
        let clusters = labels(&r, "cluster");
        if clusters.iter().any(|c| c == "main") && labels(&r, "route").len() == r.len() {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    let routes = labels(
        &prom.query("switchyard_queries_total{cluster=\"main\"}"),
        "route",
    );
    assert!(routes.iter().any(|r| r == "primary"), "routes {routes:?}");
    let errors = prom.query("switchyard_errors_total{cluster=\"main\",kind=\"auth_failed\"}");
    assert_eq!(errors.len(), 1, "auth_failed counted: {errors:?}");

    // The shipped rules load and evaluate without errors against the real metrics.
    prom.wait_for("every alert rule evaluated", |p| {
        let data = p.api("/api/v1/rules")?;
        let rules: Vec<&Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if rules.len() < 10 {
            return Err(format!("only {} rules loaded: {data}", rules.len()));
        }
        for r in &rules {
            if r["health"] != "ok" {
                return Err(format!(
                    "rule {} health {} {}",
                    r["name"], r["health"], r["lastError"]
                ));
            }
        }
        Ok(())
    });
    // A healthy cluster: the no-primary and split-brain alerts stay silent.
    let healthy_primary = prom.query(
        "sum by (cluster) (switchyard_server_role{role=\"primary\"} * on (cluster, server) switchyard_server_up)",
    );
    assert_eq!(healthy_primary.len(), 1, "{healthy_primary:?}");
    assert_eq!(healthy_primary[0]["value"][1], "1", "{healthy_primary:?}");
    let alerts = prom.api("/api/v1/alerts").unwrap();
    for a in alerts["alerts"].as_array().into_iter().flatten() {
        let name = a["labels"]["alertname"].as_str().unwrap_or("");
        assert!(
            !matches!(
                name,
                "SwitchyardNoPrimary" | "SwitchyardSplitBrain" | "SwitchyardDown"
            ),
            "alert {name} is {} on a healthy cluster: {a}",
            a["state"]
        );
    }

    // Every dashboard query is valid PromQL for this Prometheus, and the core panels have data
    // (rates need two samples in their window).
    prom.wait_for("three scrapes", |p| {
        let r = p.query(&format!("count_over_time(up{{job=\"{JOB}\"}}[1m]) >= 3"));
        if r.is_empty() {
            Err("fewer than three scrapes".into())
        } else {
            Ok(())
        }
    });
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 25, "{} dashboard queries", exprs.len());
    let mut empty = Vec::new();
    for (title, e) in &exprs {
        if prom.query(e).is_empty() {
            empty.push(format!("{title}: {e}"));
        }
    }
    println!(
        "dashboard queries without data yet ({}):\n{}",
        empty.len(),
        empty.join("\n")
    );
    for must in [
        "Healthy primary",
        "Topology epoch",
        "Queries/s by route",
        "Replica lag (time)",
        "Server states",
        "Replica state history",
        "Pool connections",
        "Waiting requests",
        "Errors/s by kind",
    ] {
        assert!(
            !empty.iter().any(|e| e.starts_with(&format!("{must}: "))),
            "dashboard panel {must} has no data:\n{}",
            empty.join("\n")
        );
    }
}
