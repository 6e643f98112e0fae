//! Failover-time benchmark: kills the primary of a real PostgreSQL / MariaDB cluster under write
//! load through the proxy (`failover.mode: auto`) and measures kill -> first acknowledged write.
//!
//! Run it with `bench/failover.sh` (release build). Each run starts a fresh cluster from the test
//! harness (tests/support/) and the real `switchyard` binary, puts 4 writers behind the proxy,
//! kills the primary (PostgreSQL: `pg_ctl stop -m immediate`; MariaDB: SIGKILL) and records
//! - the time from the kill returning to the first acknowledged write (a write acknowledged in the
//!   first 100 ms that was sent before the kill is the old primary's late answer and not counted),
//! - writes and connection attempts that failed,
//! - acknowledged writes missing on the new primary afterwards (PostgreSQL runs synchronous
//!   replication, `ANY 1`, so 0 is expected there; MariaDB replicates asynchronously).
//!
//! Options: `--runs N` (default 3), `--only pg|mysql`. The proxy binary is `$SWITCHYARD_BIN`, else
//! `switchyard` next to this example's directory (target/release/switchyard).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use parking_lot::Mutex;
use tokio::time::{sleep, timeout};

// The harness's `Proxy::start` names the binary with `env!("CARGO_BIN_EXE_switchyard")`, which
// Cargo sets for integration tests only. This textual macro shadows `env!` inside the harness
// (declared below it) and resolves that one name at run time; anything else is std's `env!`.
macro_rules! env {
    ("CARGO_BIN_EXE_switchyard") => {
        $crate::proxy_bin()
    };
    ($($arg:tt)*) => {
        ::std::env!($($arg)*)
    };
}

#[path = "../tests/support/mod.rs"]
mod support;

use support::mysql_cluster::MYSQL_APP_DB;
use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{
    pg_conn_str, MariaDbCluster, PgCluster, Proxy, ProxyPorts, MYSQL_APP_PASSWORD, MYSQL_APP_USER,
    MYSQL_ROOT_PASSWORD,
};

const WRITERS: i64 = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than `write_hold` (30 s): a held write is answered or failed by the proxy first.
const WRITE_TIMEOUT: Duration = Duration::from_secs(40);
/// Give up on a run when no write is acknowledged this long after the kill.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);
/// An ack this soon after the kill for a write sent before it is the old primary's late answer.
const STALE_ACK: Duration = Duration::from_millis(100);
/// The harness's monitor line, replaced by the setting's monitor plus a `failover` section.
const MONITOR_TEMPLATE: &str =
    "    monitor: { interval: 200ms, timeout: 1s, healthy_after: 1, unhealthy_after: 2,";

/// The proxy binary: `$SWITCHYARD_BIN`, else `../switchyard` from this executable's directory.
fn proxy_bin() -> String {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SWITCHYARD_BIN") {
            return bin.to_string_lossy().into_owned();
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("switchyard")))
            .filter(|p| p.is_file());
        beside
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/switchyard")
            })
            .to_string_lossy()
            .into_owned()
    })
    .clone()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Pg,
    My,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::Pg => "PostgreSQL",
            Proto::My => "MariaDB",
        }
    }
}

/// Monitor timings and the failover-time target of one setting.
struct Setting {
    name: &'static str,
    interval: &'static str,
    timeout: &'static str,
    target: Duration,
}

const SETTINGS: [Setting; 2] = [
    Setting {
        name: "default",
        interval: "1s",
        timeout: "2s",
        target: Duration::from_secs(5),
    },
    Setting {
        name: "fast",
        interval: "200ms",
        timeout: "500ms",
        target: Duration::from_secs(2),
    },
];

/// What one run measured.
struct RunResult {
    took: Duration,
    write_errors: usize,
    connect_errors: usize,
    lost: usize,
    acked: usize,
}

/// A fresh cluster of either kind with the benchmark table `ft` created and replicated.
enum Cluster {
    Pg(PgCluster),
    My(MariaDbCluster),
}

impl Cluster {
    /// Blocking: start the servers, create `ft`, wait until the replicas have it.
    fn start(proto: Proto) -> Cluster {
        match proto {
            Proto::Pg => {
                let c = PgCluster::start();
                c.set_synchronous();
                c.psql(
                    c.primary_port(),
                    "app",
                    "CREATE TABLE ft (id bigint PRIMARY KEY); GRANT ALL ON ft TO app",
                );
                c.wait_replicas_caught_up();
                Cluster::Pg(c)
            }
            Proto::My => {
                let c = MariaDbCluster::start();
                c.sql(
                    c.primary_port(),
                    &format!("CREATE TABLE {MYSQL_APP_DB}.ft (id BIGINT PRIMARY KEY)"),
                );
                c.wait_replicas_caught_up();
                Cluster::My(c)
            }
        }
    }

    /// The harness's proxy config with the setting's monitor and `failover: {mode: auto}`.
    fn proxy_config(&self, s: &Setting) -> Result<(String, ProxyPorts), String> {
        let ((yaml, ports), user, password) = match self {
            Cluster::Pg(c) => (Proxy::pg_config(c), "postgres", c.superuser_password()),
            Cluster::My(c) => (Proxy::mysql_config(c), "root", MYSQL_ROOT_PASSWORD),
        };
        if !yaml.contains(MONITOR_TEMPLATE) {
            return Err("the harness's proxy config template changed (monitor line)".into());
        }
        let replacement = format!(
            "    failover: {{ mode: auto, write_hold: 30s, user: {user}, password: \"{password}\" }}\n    \
             monitor: {{ interval: {}, timeout: {}, healthy_after: 2, unhealthy_after: 3,",
            s.interval, s.timeout
        );
        Ok((yaml.replace(MONITOR_TEMPLATE, &replacement), ports))
    }

    fn kill_primary(&self) {
        match self {
            Cluster::Pg(c) => c.kill_primary(),
            Cluster::My(c) => c.kill_primary(),
        }
    }

    /// Port of the server the proxy config calls `name`.
    fn port_of(&self, name: &str) -> Option<u16> {
        let (primary, [r1, r2]) = match self {
            Cluster::Pg(c) => (c.primary_port(), c.replica_ports()),
            Cluster::My(c) => (c.primary_port(), c.replica_ports()),
        };
        match name {
            "primary" => Some(primary),
            "replica1" => Some(r1),
            "replica2" => Some(r2),
            _ => None,
        }
    }

    /// Blocking: the ids in `ft` on the server at `port`.
    fn ids_on(&self, port: u16) -> Result<BTreeSet<i64>, String> {
        let out = match self {
            Cluster::Pg(c) => c.try_psql(port, "app", "SELECT id FROM ft")?,
            Cluster::My(c) => c.try_sql(port, &format!("SELECT id FROM {MYSQL_APP_DB}.ft"))?,
        };
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().parse().map_err(|e| format!("id {l:?}: {e}")))
            .collect()
    }
}

/// One acknowledged write: its id, when it was sent and when the ack arrived.
struct Ack {
    id: i64,
    sent: Instant,
    at: Instant,
}

/// The writers' shared record.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    acked: Mutex<Vec<Ack>>,
    write_errors: Mutex<Vec<String>>,
    connect_errors: Mutex<Vec<String>>,
}

impl Load {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn ack(&self, id: i64, sent: Instant) {
        let at = Instant::now();
        self.acked.lock().push(Ack { id, sent, at });
    }

    fn acked_since(&self, t: Instant) -> usize {
        self.acked.lock().iter().filter(|a| a.at > t).count()
    }

    /// First ack after `killed`, not counting the old primary's late answers.
    fn first_ack_after(&self, killed: Instant) -> Option<Instant> {
        self.acked
            .lock()
            .iter()
            .filter(|a| a.at > killed && (a.sent >= killed || a.at >= killed + STALE_ACK))
            .map(|a| a.at)
            .min()
    }

    fn acked_ids(&self) -> BTreeSet<i64> {
        self.acked.lock().iter().map(|a| a.id).collect()
    }
}

/// A client connection through the proxy.
enum Conn {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Conn {
    async fn open(proto: Proto, port: u16) -> Result<Conn, String> {
        match proto {
            Proto::Pg => {
                let conn_str = pg_conn_str(port, APP_USER, APP_PASSWORD, "app");
                let (c, conn) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Ok(Conn::Pg(c))
            }
            Proto::My => {
                let opts = mysql_async::OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(port)
                    .user(Some(MYSQL_APP_USER))
                    .pass(Some(MYSQL_APP_PASSWORD))
                    .db_name(Some(MYSQL_APP_DB))
                    .prefer_socket(false);
                let c = mysql_async::Conn::new(opts)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Conn::My(c))
            }
        }
    }

    /// `INSERT` one row (autocommit); Err is the server's code and message.
    async fn insert(&mut self, id: i64) -> Result<(), String> {
        let sql = format!("INSERT INTO ft(id) VALUES ({id})");
        match self {
            Conn::Pg(c) => {
                c.simple_query(&sql)
                    .await
                    .map(drop)
                    .map_err(|e| match e.as_db_error() {
                        Some(db) => format!("{} {}", db.code().code(), db.message()),
                        None => e.to_string(),
                    })
            }
            Conn::My(c) => c.query_drop(sql).await.map_err(|e| match &e {
                mysql_async::Error::Server(s) => format!("{} {}", s.code, s.message),
                other => other.to_string(),
            }),
        }
    }

    fn is_closed(&self) -> bool {
        matches!(self, Conn::Pg(c) if c.is_closed())
    }
}

/// One writer: inserts unique ids (`w` * 10^9 + n) until the load stops, reconnecting after an
/// error; every statement and connect under a deadline.
async fn writer(load: Arc<Load>, proto: Proto, port: u16, w: i64) {
    let mut conn: Option<Conn> = None;
    let mut seq = 0i64;
    while !load.stopped() {
        let c = match &mut conn {
            Some(c) if !c.is_closed() => c,
            _ => match timeout(CONNECT_TIMEOUT, Conn::open(proto, port)).await {
                Ok(Ok(c)) => conn.insert(c),
                failed => {
                    let e = failed.unwrap_or_else(|_| Err("connect timed out".into()));
                    load.connect_errors.lock().push(e.err().unwrap_or_default());
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        seq += 1;
        let id = w * 1_000_000_000 + seq;
        let sent = Instant::now();
        match timeout(WRITE_TIMEOUT, c.insert(id)).await {
            Ok(Ok(())) => load.ack(id, sent),
            failed => {
                let e = failed.unwrap_or_else(|_| Err("write timed out".into()));
                load.write_errors.lock().push(e.err().unwrap_or_default());
                conn = None;
                sleep(Duration::from_millis(20)).await;
            }
        }
    }
    if let Some(Conn::My(c)) = conn {
        let _ = timeout(Duration::from_secs(2), c.disconnect()).await;
    }
}

/// Run blocking harness work off the async workers; a harness panic becomes an error.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("{what} failed: {}", panic_text(e)))
}

fn panic_text(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let p = e.into_panic();
    let text = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".into());
    text.lines().next().unwrap_or("panic").to_owned()
}

/// The last `n` lines of the proxy log.
fn log_tail(proxy: &Proxy, n: usize) -> String {
    let log = proxy.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Name of the primary `/api/clusters` reports for the first cluster.
fn api_primary(proxy: &Proxy) -> Option<String> {
    let (status, body) = proxy.http_get("/api/clusters");
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["clusters"][0]["primary"].as_str().map(str::to_owned)
}

/// One benchmark run: fresh cluster and proxy, load, kill, measure.
async fn run_once(proto: Proto, setting: &'static Setting) -> Result<RunResult, String> {
    let cluster = Arc::new(blocking("cluster start", move || Cluster::start(proto)).await?);
    let (yaml, ports) = cluster.proxy_config(setting)?;
    let proxy = Arc::new(blocking("proxy start", move || Proxy::start(&yaml)).await?);
    let p = proxy.clone();
    blocking("topology", move || p.wait_topology(3)).await?;

    let load = Arc::new(Load::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(load.clone(), proto, ports.listen, w)))
        .collect();
    let warm = Instant::now();
    sleep(Duration::from_secs(2)).await;
    while load.acked_since(Instant::now() - Duration::from_secs(2)) < 20 {
        if warm.elapsed() > Duration::from_secs(20) {
            load.stop.store(true, Ordering::SeqCst);
            return Err(format!(
                "no steady write load before the kill ({} acks, errors {:?})\n{}",
                load.acked_since(warm),
                load.write_errors.lock().last(),
                log_tail(&proxy, 30)
            ));
        }
        sleep(Duration::from_millis(200)).await;
    }

    let c = cluster.clone();
    blocking("kill primary", move || c.kill_primary()).await?;
    let killed = Instant::now();
    let first = loop {
        if let Some(t) = load.first_ack_after(killed) {
            break t;
        }
        if killed.elapsed() > FAILOVER_LIMIT {
            load.stop.store(true, Ordering::SeqCst);
            return Err(format!(
                "no write acknowledged within {FAILOVER_LIMIT:?} of the kill (last error {:?})\n{}",
                load.write_errors.lock().last(),
                log_tail(&proxy, 30)
            ));
        }
        sleep(Duration::from_millis(5)).await;
    };
    let took = first.duration_since(killed);
    // Keep writing a little on the new primary, then stop and let the writers finish.
    sleep(Duration::from_secs(2)).await;
    load.stop.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = timeout(WRITE_TIMEOUT + CONNECT_TIMEOUT, w).await;
    }

    let p = proxy.clone();
    let primary = blocking("API", move || api_primary(&p))
        .await?
        .ok_or("the proxy reports no primary after the failover")?;
    let port = cluster
        .port_of(&primary)
        .ok_or(format!("unknown primary {primary:?}"))?;
    let c = cluster.clone();
    let on_new = blocking("read ids", move || c.ids_on(port)).await??;
    let acked = load.acked_ids();
    let result = RunResult {
        took,
        write_errors: load.write_errors.lock().len(),
        connect_errors: load.connect_errors.lock().len(),
        lost: acked.difference(&on_new).count(),
        acked: acked.len(),
    };
    if let Some(e) = load.write_errors.lock().first() {
        println!("    first write error: {e}");
    }
    drop(proxy);
    // Stopping the servers blocks; keep it off the async workers.
    let _ = blocking("cluster stop", move || drop(cluster)).await;
    Ok(result)
}

struct Options {
    runs: usize,
    only: Option<Proto>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        runs: 3,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                let n = args.next().ok_or("--runs needs a number")?;
                opts.runs = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--runs: not a positive number: {n}"))?;
            }
            "--only" => {
                opts.only = match args.next().as_deref() {
                    Some("pg") => Some(Proto::Pg),
                    Some("mysql") => Some(Proto::My),
                    other => return Err(format!("--only pg|mysql, not {other:?}")),
                };
            }
            "-h" | "--help" => {
                return Err("usage: failover_bench [--runs N] [--only pg|mysql]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(opts)
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn median(sorted: &[Duration]) -> Option<Duration> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// One table row: every run of one protocol and setting.
struct Row {
    proto: Proto,
    setting: &'static Setting,
    runs: Vec<Result<RunResult, String>>,
}

impl Row {
    fn times(&self) -> Vec<Duration> {
        let mut t: Vec<Duration> = self.runs.iter().flatten().map(|r| r.took).collect();
        t.sort();
        t
    }

    fn failed(&self) -> usize {
        self.runs.iter().filter(|r| r.is_err()).count()
    }
}

/// One line of the result table (fixed-width columns, the last one unpadded).
fn table_line(c: [&str; 9]) -> String {
    format!(
        "{:<10}  {:<7}  {:<26}  {:<24}  {:>6}  {:>6}  {:<12}  {:<12}  {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    )
}

fn print_table(rows: &[Row]) {
    let join = |f: &dyn Fn(&Result<RunResult, String>) -> String, row: &Row| {
        row.runs.iter().map(f).collect::<Vec<_>>().join(" ")
    };
    println!();
    println!(
        "{}",
        table_line([
            "protocol",
            "setting",
            "monitor",
            "runs (s)",
            "median",
            "max",
            "errors w/c",
            "lost",
            "target",
        ])
    );
    for row in rows {
        let s = row.setting;
        let times = row.times();
        let max = times.last().copied();
        let met = row.failed() == 0 && max.is_some_and(|m| m < s.target);
        let runs = join(&|r| r.as_ref().map_or("FAIL".into(), |r| secs(r.took)), row);
        let errors = join(
            &|r| {
                r.as_ref().map_or("-".into(), |r| {
                    format!("{}/{}", r.write_errors, r.connect_errors)
                })
            },
            row,
        );
        let lost = join(
            &|r| r.as_ref().map_or("-".into(), |r| r.lost.to_string()),
            row,
        );
        let monitor = format!("3 x {} (timeout {})", s.interval, s.timeout);
        let median = median(&times).map_or("-".into(), secs);
        let max = max.map_or("-".into(), secs);
        let verdict = if met { "ok" } else { "MISSED" };
        let target = format!("< {} s {verdict}", s.target.as_secs());
        let cols = [
            row.proto.label(),
            s.name,
            &monitor,
            &runs,
            &median,
            &max,
            &errors,
            &lost,
            &target,
        ];
        println!("{}", table_line(cols));
    }
    println!();
    let verdicts: Vec<String> = SETTINGS
        .iter()
        .filter_map(|s| {
            let rows: Vec<&Row> = rows.iter().filter(|r| r.setting.name == s.name).collect();
            if rows.is_empty() {
                return None;
            }
            let failed: usize = rows.iter().map(|r| r.failed()).sum();
            let max = rows.iter().filter_map(|r| r.times().last().copied()).max();
            let met = failed == 0 && max.is_some_and(|m| m < s.target);
            let detail = match (max, failed) {
                (Some(m), 0) => format!("worst run {} s", secs(m)),
                (Some(m), f) => format!("worst run {} s, {f} run(s) failed", secs(m)),
                (None, f) => format!("{f} run(s) failed"),
            };
            Some(format!(
                "{} < {} s: {} ({detail})",
                s.name,
                s.target.as_secs(),
                if met { "MET" } else { "NOT MET" }
            ))
        })
        .collect();
    println!("targets (every run): {}", verdicts.join("; "));
    println!(
        "time = kill of the primary returned -> first acknowledged write through the proxy; \
         errors w/c = failed writes / failed connects; lost = acknowledged writes missing on the new primary"
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let bin = proxy_bin();
    if !PathBuf::from(&bin).is_file() {
        eprintln!(
            "proxy binary {bin} not found: build it (cargo build --release) or set SWITCHYARD_BIN"
        );
        return ExitCode::from(2);
    }
    println!(
        "failover benchmark: proxy {bin}, {} run(s) per protocol and setting, {WRITERS} writers",
        opts.runs
    );
    let mut rows = Vec::new();
    for proto in [Proto::Pg, Proto::My] {
        if opts.only.is_some_and(|o| o != proto) {
            continue;
        }
        for setting in &SETTINGS {
            let mut row = Row {
                proto,
                setting,
                runs: Vec::new(),
            };
            for i in 1..=opts.runs {
                println!(
                    "{} {} run {i}/{}...",
                    proto.label(),
                    setting.name,
                    opts.runs
                );
                // A panic in the harness fails this run only (its servers are stopped on drop).
                let result = match tokio::spawn(run_once(proto, setting)).await {
                    Ok(r) => r,
                    Err(e) => Err(panic_text(e)),
                };
                match &result {
                    Ok(r) => println!(
                        "    {} s to the first write; {} failed writes, {} failed connects; {} of {} acknowledged writes lost",
                        secs(r.took),
                        r.write_errors,
                        r.connect_errors,
                        r.lost,
                        r.acked
                    ),
                    Err(e) => println!("    FAILED: {e}"),
                }
                row.runs.push(result);
            }
            rows.push(row);
        }
    }
    print_table(&rows);
    if rows.iter().any(|r| r.failed() > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
