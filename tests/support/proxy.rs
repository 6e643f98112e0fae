//! Runs the real `switchyard` binary as a child process with a given YAML config, for e2e tests.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::http::try_http_get;
use super::mysql_cluster::{
    MariaDbCluster, MYSQL_APP_PASSWORD, MYSQL_APP_USER, MYSQL_MONITOR_PASSWORD, MYSQL_MONITOR_USER,
};
use super::pg_cluster::{
    free_ports, spawn_detached, PgCluster, APP_PASSWORD, APP_USER, MD5_PASSWORD, MD5_USER,
};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Proxy-side password of the `mdapp` user (md5 auth towards the proxy).
pub const MDAPP_PASSWORD: &str = "md5-secret";
/// Proxy-side MySQL user announced `caching_sha2_password` first (backend login `app`).
pub const SHAAPP_USER: &str = "shaapp";
pub const SHAAPP_PASSWORD: &str = "sha-secret";

/// Ports picked for a proxy config by [`Proxy::pg_config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyPorts {
    /// The `main` cluster's client listener.
    pub listen: u16,
    /// The admin HTTP listener (`/health`, `/metrics`, ...).
    pub admin: u16,
}

/// A running `switchyard` child process. Dropping it kills the process.
pub struct Proxy {
    child: Child,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    admin: Option<SocketAddr>,
    listeners: Vec<SocketAddr>,
}

impl Proxy {
    /// Write `yaml` to a temp file, start the binary with `--config <file>` and wait (20 s max)
    /// until every cluster listener accepts TCP and `GET /health` on the admin listener answers.
    /// Panics with the proxy log when it exits early or does not get ready in time.
    pub fn start(yaml: &str) -> Proxy {
        Proxy::start_args(yaml, &[])
    }

    /// [`Proxy::start`] with extra command-line arguments (e.g. `--threads 1`).
    pub fn start_args(yaml: &str, args: &[&str]) -> Proxy {
        let (admin, listeners) = listen_addrs(yaml);
        let dir = tempfile::Builder::new()
            .prefix("switchyard-proxy-")
            .tempdir()
            .expect("create proxy temp dir");
        let config_path = dir.path().join("switchyard.yaml");
        fs::write(&config_path, yaml).expect("write proxy config");
        let log_path = dir.path().join("switchyard.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open proxy log");
        let log_err = log.try_clone().expect("clone proxy log handle");
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env("RUST_LOG", "switchyard=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .expect("spawn switchyard binary");
        let mut proxy = Proxy {
            child,
            dir,
            config_path,
            log_path,
            admin,
            listeners,
        };
        proxy.spawn_reaper();
        proxy.wait_ready();
        proxy
    }

    /// Start a proxy with the standard config for `cluster` (see [`Proxy::pg_config`]).
    pub fn start_for(cluster: &PgCluster) -> (Proxy, ProxyPorts) {
        let (yaml, ports) = Proxy::pg_config(cluster);
        (Proxy::start(&yaml), ports)
    }

    /// The standard config for `cluster` on fresh loopback ports: cluster `main` with servers
    /// `primary`, `replica1`, `replica2`; users `app`, `mdapp` (md5) and `postgres`.
    pub fn pg_config(cluster: &PgCluster) -> (String, ProxyPorts) {
        let [listen, admin] = free_ports::<2>();
        let ports = ProxyPorts { listen, admin };
        let [r1, r2] = cluster.replica_ports();
        let su = cluster.superuser_password();
        let yaml = format!(
            r#"admin: {{ listen: "127.0.0.1:{admin}" }}
clusters:
  - name: main
    protocol: postgres
    listen: "127.0.0.1:{listen}"
    servers:
      - {{ name: primary, address: "127.0.0.1:{primary}", role: primary }}
      - {{ name: replica1, address: "127.0.0.1:{r1}", role: replica }}
      - {{ name: replica2, address: "127.0.0.1:{r2}", role: replica }}
    routing: {{ balance: round_robin, max_replica_lag: 30s, fallback: primary }}
    monitor: {{ interval: 200ms, timeout: 1s, healthy_after: 1, unhealthy_after: 2, user: postgres, password: "{su}", database: postgres }}
users:
  - {{ name: {APP_USER}, password: "{APP_PASSWORD}", auth: scram-sha-256, backend_user: {APP_USER}, backend_password: "{APP_PASSWORD}" }}
  - {{ name: mdapp, password: "{MDAPP_PASSWORD}", auth: md5, backend_user: {MD5_USER}, backend_password: "{MD5_PASSWORD}" }}
  - {{ name: postgres, password: "{su}", auth: scram-sha-256, backend_user: postgres, backend_password: "{su}" }}
"#,
            primary = cluster.primary_port(),
        );
        (yaml, ports)
    }

    /// Start a proxy with the standard MySQL config for `cluster` (see [`Proxy::mysql_config`]).
    pub fn start_for_mysql(cluster: &MariaDbCluster) -> (Proxy, ProxyPorts) {
        let (yaml, ports) = Proxy::mysql_config(cluster);
        (Proxy::start(&yaml), ports)
    }

    /// The standard config for a MariaDB `cluster` on fresh loopback ports: `protocol: mysql`
    /// cluster `main` with servers `primary`, `replica1`, `replica2`, monitored as `monitor`;
    /// users `app` (mysql_native_password) and `shaapp` (caching_sha2_password), both logging in
    /// to the servers as `app`.
    pub fn mysql_config(cluster: &MariaDbCluster) -> (String, ProxyPorts) {
        let [listen, admin] = free_ports::<2>();
        let ports = ProxyPorts { listen, admin };
        let [r1, r2] = cluster.replica_ports();
        let yaml = format!(
            r#"admin: {{ listen: "127.0.0.1:{admin}" }}
clusters:
  - name: main
    protocol: mysql
    listen: "127.0.0.1:{listen}"
    servers:
      - {{ name: primary, address: "127.0.0.1:{primary}", role: primary }}
      - {{ name: replica1, address: "127.0.0.1:{r1}", role: replica }}
      - {{ name: replica2, address: "127.0.0.1:{r2}", role: replica }}
    routing: {{ balance: round_robin, max_replica_lag: 30s, fallback: primary }}
    monitor: {{ interval: 200ms, timeout: 1s, healthy_after: 1, unhealthy_after: 2, user: {MYSQL_MONITOR_USER}, password: "{MYSQL_MONITOR_PASSWORD}", database: "" }}
users:
  - {{ name: {MYSQL_APP_USER}, password: "{MYSQL_APP_PASSWORD}", mysql_auth: mysql_native_password, backend_user: {MYSQL_APP_USER}, backend_password: "{MYSQL_APP_PASSWORD}" }}
  - {{ name: {SHAAPP_USER}, password: "{SHAAPP_PASSWORD}", mysql_auth: caching_sha2_password, backend_user: {MYSQL_APP_USER}, backend_password: "{MYSQL_APP_PASSWORD}" }}
"#,
            primary = cluster.primary_port(),
        );
        (yaml, ports)
    }

    /// Wait (30 s max) until `/api/clusters` shows `up` servers of the first cluster up with a
    /// known role (the primary, or a replica with measured lag).
    pub fn wait_topology(&self, up: usize) {
        self.wait_topology_token(up, "");
    }

    /// [`wait_topology`](Self::wait_topology) for a proxy whose admin API needs a bearer token.
    pub fn wait_topology_token(&self, up: usize, token: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = self.admin.expect("config has no admin listener");
        let header = format!("Authorization: Bearer {token}");
        loop {
            let (status, body) = if token.is_empty() {
                self.http_get("/api/clusters")
            } else {
                super::http::http_request(
                    admin,
                    "GET",
                    "/api/clusters",
                    &[&header],
                    "",
                    Duration::from_secs(5),
                )
            };
            if status == 200 {
                let v: serde_json::Value = serde_json::from_str(&body).expect("clusters JSON");
                let n = v
                    .pointer("/clusters/0/servers")
                    .and_then(|s| s.as_array())
                    .map(|s| {
                        s.iter()
                            .filter(|s| {
                                s["health"] == "up"
                                    && (s["role"] == "primary" || s["lag_seconds"].is_number())
                            })
                            .count()
                    })
                    .unwrap_or(0);
                if n >= up {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "topology never had {up} servers up: {body}\n{}",
                self.log()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// Everything the proxy wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Body of `GET /metrics` on the admin listener (panics when it is not 200).
    pub fn metrics(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
        body
    }

    /// Sum of a gauge's values over its label sets that contain `labels` (e.g. `state="idle"`;
    /// empty: all of them).
    pub fn gauge(&self, name: &str, labels: &str) -> i64 {
        let m = self.metrics();
        let sum = series(&m, name, labels)
            .filter_map(|v| v.parse::<i64>().ok())
            .sum();
        sum
    }

    /// The value of the first series of `name` whose label set contains `labels` (e.g.
    /// `server="replica1"`); panics when there is none.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let m = self.metrics();
        let value = series(&m, name, labels).next().and_then(|v| v.parse().ok());
        value.unwrap_or_else(|| panic!("no {name}{{..{labels}..}} in\n{m}"))
    }

    /// Wait up to 10 s for [`gauge`](Self::gauge) to reach `at_least` (panics if it does not).
    pub async fn wait_gauge(&self, name: &str, labels: &str, at_least: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.gauge(name, labels) < at_least {
            assert!(
                Instant::now() < deadline,
                "{name}{{{labels}}} never reached {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET path` on the admin listener: (status, body). Panics when there is no admin listener.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let admin = self.admin.expect("config has no admin listener");
        super::http::http_get(admin, path)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Client listeners, in the order the clusters appear in the config.
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listeners
    }

    /// The proxy's CPU time so far (user + system), in clock ticks (Linux).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // After the command name (which may hold spaces): utime is the 12th field, stime the 13th.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// `--busy-poll`: once the window after the last request has passed, the idle proxy sleeps
    /// (a second of polling would cost about 100 clock ticks). Blocks for about 2 s.
    pub fn assert_sleeps_when_idle(&self) {
        std::thread::sleep(Duration::from_millis(200));
        let before = self.cpu_ticks();
        std::thread::sleep(Duration::from_secs(2));
        let idle = self.cpu_ticks() - before;
        assert!(
            idle < 40,
            "the idle proxy used {idle} ticks in 2 s: it polls while idle"
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Send a signal by name (`"HUP"`, `"TERM"`, ...) to the proxy process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.child.id());
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit; returns the exit status.
    /// Panics (with the log) when the process does not exit in time.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait proxy") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "proxy did not exit within {timeout:?} of SIGTERM\n--- log ---\n{}",
                    self.log()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait proxy")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait proxy") {
                panic!(
                    "switchyard exited during startup ({status})\n--- log ---\n{}",
                    self.log()
                );
            }
            if self.is_ready() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "switchyard not ready after {READY_TIMEOUT:?} (listeners {:?}, admin {:?})\n--- log ---\n{}",
                    self.listeners,
                    self.admin,
                    self.log()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn is_ready(&self) -> bool {
        let timeout = Duration::from_millis(500);
        let listening = self
            .listeners
            .iter()
            .all(|a| TcpStream::connect_timeout(a, timeout).is_ok());
        listening
            && self
                .admin
                .is_none_or(|a| try_http_get(a, "/health").is_ok())
    }

    /// Kill the proxy if this test process dies without running `Drop`. The pid is only
    /// signalled while its command line still names our config file (guards against pid reuse).
    fn spawn_reaper(&self) {
        let pid = self.child.id();
        let script = format!(
            "cd /; while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             if tr '\\000' ' ' < /proc/{pid}/cmdline 2>/dev/null | grep -qF '{cfg}'; then kill -9 {pid}; fi; \
             rm -rf '{dir}'",
            me = std::process::id(),
            cfg = self.config_path.display(),
            dir = self.dir.path().display(),
        );
        spawn_detached(&script);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `SWITCHYARD_TEST_KEEP_LOGS=<dir>`: keep every proxy's log there (debugging a test).
        if let Some(dir) = std::env::var_os("SWITCHYARD_TEST_KEEP_LOGS") {
            let name = format!("switchyard-{}-{}.log", std::process::id(), self.child.id());
            let _ = fs::copy(&self.log_path, std::path::Path::new(&dir).join(name));
        }
    }
}

/// Run psql as the `app` user with a libpq connection string (10 s connect timeout);
/// (success, stdout, stderr).
pub fn psql(conninfo: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", APP_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .expect("psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// tokio-postgres key/value connection string for 127.0.0.1:`port` (values quoted).
/// The first column of the first row of a simple query (empty when there is none); panics with
/// the error when it fails.
pub async fn simple_value(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}

pub fn pg_conn_str(port: u16, user: &str, password: &str, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} user={} password={} dbname={} connect_timeout=10",
        quote(user),
        quote(password),
        quote(db)
    )
}

/// The text columns of the first row `sql` returns (simple protocol); panics without a row.
pub async fn simple_first_row(c: &tokio_postgres::Client, sql: &str) -> Vec<Option<String>> {
    let msgs = c.simple_query(sql).await.unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no row from {sql}"));
    (0..row.len())
        .map(|i| row.get(i).map(str::to_owned))
        .collect()
}

/// mysql_async options for the `app` user and database at 127.0.0.1:`port` (TCP, no socket).
pub fn my_app_opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(super::MYSQL_APP_USER))
        .pass(Some(super::MYSQL_APP_PASSWORD))
        .db_name(Some("app"))
        .prefer_socket(false)
        .into()
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// (admin listen, cluster listens) named in a config; panics on YAML that does not parse.
fn listen_addrs(yaml: &str) -> (Option<SocketAddr>, Vec<SocketAddr>) {
    let doc: yaml_serde::Value = yaml_serde::from_str(yaml)
        .unwrap_or_else(|e| panic!("proxy config is not valid YAML: {e}\n{yaml}"));
    let parse = |v: &yaml_serde::Value| -> Option<SocketAddr> { v.as_str()?.parse().ok() };
    let admin = doc
        .get("admin")
        .and_then(|a| a.get("listen"))
        .and_then(parse);
    let listeners = doc
        .get("clusters")
        .and_then(|c| c.as_sequence())
        .map(|seq| {
            seq.iter()
                .filter_map(|c| c.get("listen").and_then(parse))
                .collect()
        })
        .unwrap_or_default();
    (admin, listeners)
}

/// The values (as text) of the series of `name` in `metrics` whose label set contains `labels`.
fn series<'a>(metrics: &'a str, name: &'a str, labels: &'a str) -> impl Iterator<Item = &'a str> {
    metrics
        .lines()
        .filter(move |l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .filter(move |l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next())
}
