//! Drives a differential test: the proxy's clusters (one per pooling mode x level), each
//! combination's two runs in the seeded global order, and the final report and verdict.

use std::future::Future;
use std::time::{Duration, Instant};

use super::report::Report;
use super::{schedule, Env, Kind, Level, Outcome, Pool, Rng, Step, LEVELS, SESSIONS};

/// Longest a statement (or a connect) may take before the run is declared stuck.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// A database one run talks to (the primary directly, or the proxy), over one driver.
pub trait Runner {
    type Conn;
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, String>>;
    /// Run a `Text` or `Prepared` step.
    fn execute(&self, conn: &mut Self::Conn, step: &Step) -> impl Future<Output = Outcome>;
    fn close(&self, conn: Self::Conn) -> impl Future<Output = ()>;
}

async fn step<R: Runner>(r: &R, slot: &mut Option<R::Conn>, st: &Step) -> Outcome {
    if st.kind == Kind::Reconnect {
        if let Some(c) = slot.take() {
            r.close(c).await;
        }
        return match r.connect().await {
            Ok(c) => {
                *slot = Some(c);
                Outcome::ok_rows(Vec::new(), None)
            }
            Err(e) => Outcome::err("CONNECT", e),
        };
    }
    match slot.as_mut() {
        Some(conn) => r.execute(conn, st).await,
        None => Outcome::err("NO-CONNECTION", "the session has no connection"),
    }
}

/// Run `scripts` in `order`, one session = one connection; one outcome per position. Stops early
/// (fewer outcomes) when a statement does not finish within [`STEP_TIMEOUT`].
pub async fn run<R: Runner>(r: &R, scripts: &[Vec<Step>], order: &[usize]) -> Vec<Outcome> {
    let mut conns: Vec<Option<R::Conn>> = Vec::new();
    for _ in scripts {
        let c = tokio::time::timeout(STEP_TIMEOUT, r.connect()).await;
        conns.push(c.ok().and_then(Result::ok));
    }
    let mut next = vec![0usize; scripts.len()];
    let mut out = Vec::with_capacity(order.len());
    for &s in order {
        let st = &scripts[s][next[s]];
        next[s] += 1;
        match tokio::time::timeout(STEP_TIMEOUT, step(r, &mut conns[s], st)).await {
            Ok(o) => out.push(o),
            Err(_) => {
                eprintln!(
                    "differential: stuck for {STEP_TIMEOUT:?}: session {s}: {}",
                    st.sql
                );
                break;
            }
        }
    }
    for c in conns.into_iter().flatten() {
        let _ = tokio::time::timeout(STEP_TIMEOUT, r.close(c)).await;
    }
    out
}

/// One combination: a proxy cluster (pooling mode, level) and the protocol's server settings.
pub struct Combo<S> {
    pub pool: Pool,
    pub level: Level,
    pub settings: S,
}

impl<S: std::fmt::Display> Combo<S> {
    /// E.g. `pg/transaction_global/sc=off,...`: what `SWITCHYARD_DIFF_COMBO` matches.
    pub fn name(&self, protocol: &str) -> String {
        format!(
            "{protocol}/{}/{}",
            cluster_name(self.pool, self.level),
            self.settings
        )
    }
}

/// Long mode: every (pool, level) with each of `all`. Short mode: every (pool, level) once, with
/// `short(level index, pool index)` (0 = session, 1 = transaction).
pub fn combos<S: Clone>(long: bool, all: &[S], short: impl Fn(usize, usize) -> S) -> Vec<Combo<S>> {
    let mut v = Vec::new();
    for (pool, level) in proxy_clusters() {
        let li = LEVELS.iter().position(|l| *l == level).unwrap_or(0);
        let pi = usize::from(pool == Pool::Transaction);
        let settings = if long {
            all.to_vec()
        } else {
            vec![short(li, pi)]
        };
        v.extend(settings.into_iter().map(|settings| Combo {
            pool,
            level,
            settings,
        }));
    }
    v
}

/// What differs between the PostgreSQL and the MariaDB test.
pub trait Suite {
    /// Short protocol name for combination names (`pg`, `mysql`).
    const PROTOCOL: &'static str;
    /// Statements per run of one combination in short mode (the whole test stays around a minute).
    const SHORT_STATEMENTS: usize;
    type Settings: std::fmt::Display;
    type Runner: Runner;
    fn scripts(
        &self,
        c: &Combo<Self::Settings>,
        rng: &mut Rng,
        per_session: usize,
    ) -> Vec<Vec<Step>>;
    /// Fresh direct and proxied databases for combination number `index`, replicas caught up;
    /// `port` is the proxy cluster's. Returns (direct, proxied).
    fn prepare(
        &self,
        c: &Combo<Self::Settings>,
        index: usize,
        port: u16,
    ) -> impl Future<Output = (Self::Runner, Self::Runner)>;
    /// The primary's port (where the direct run goes).
    fn primary_port(&self) -> u16;
}

/// Run every combination (or the one `SWITCHYARD_DIFF_COMBO` names) and compare; `ports` are the
/// proxy clusters' listen ports in [`proxy_clusters`] order. Panics with the report on a
/// difference the known list (`known.rs`) does not absorb.
pub async fn drive<S: Suite>(
    suite: &S,
    combos: &[Combo<S::Settings>],
    ports: &[u16],
    report: &mut Report,
) {
    let env = Env::read();
    let started = Instant::now();
    let per_run = env
        .statements
        // Rounded up to whole session scripts: at least `n` statements in all.
        .map(|n| (n.div_ceil(combos.len() * SESSIONS) * SESSIONS).max(60))
        .unwrap_or(S::SHORT_STATEMENTS);
    println!(
        "{}: seed {} ({} combinations, {per_run} statements per run{}; SWITCHYARD_DIFF_SEED / SWITCHYARD_DIFF_STATEMENTS / SWITCHYARD_DIFF_COMBO / SWITCHYARD_DIFF_SELFCHECK)",
        report.test,
        env.seed,
        combos.len(),
        if env.selfcheck { ", SELFCHECK: both runs on the primary" } else { "" }
    );
    for (index, combo) in combos.iter().enumerate() {
        let name = combo.name(S::PROTOCOL);
        if env.combo.as_ref().is_some_and(|c| *c != name) {
            continue;
        }
        let seed = env.combo_seed(index);
        let mut rng = Rng::new(seed);
        let scripts = suite.scripts(combo, &mut rng, per_run / SESSIONS);
        let order = schedule(&mut rng, &scripts);
        let at = proxy_clusters()
            .iter()
            .position(|(p, l)| *p == combo.pool && *l == combo.level)
            .expect("every (pool, level) has a proxy cluster");
        let port = if env.selfcheck {
            suite.primary_port()
        } else {
            ports[at]
        };
        let (direct, proxied) = suite.prepare(combo, index, port).await;
        let direct = run(&direct, &scripts, &order).await;
        let proxied = run(&proxied, &scripts, &order).await;
        let before = report.diffs.len();
        report.compare(&name, seed, &scripts, &order, &direct, &proxied);
        println!(
            "  {name}: seed {seed}, {} statements, {} differences ({:.0?} so far)",
            direct.len().min(proxied.len()),
            report.diffs.len() - before,
            started.elapsed()
        );
    }
    let text = report.render();
    println!("{text}");
    assert!(
        report.compared > 0,
        "no combination matched SWITCHYARD_DIFF_COMBO"
    );
    assert!(
        report.new_diffs() == 0,
        "the proxy answered differently from the primary in {} ways no entry of tests/differential/known.rs explains:\n{text}",
        report.new_diffs()
    );
}

/// The proxy's clusters: every (pool, level).
pub fn proxy_clusters() -> Vec<(Pool, Level)> {
    let mut v = Vec::new();
    for pool in [Pool::Session, Pool::Transaction] {
        for level in LEVELS {
            v.push((pool, level));
        }
    }
    v
}

/// Name of the proxy cluster for (pool, level), e.g. `transaction_read_your_writes`.
pub fn cluster_name(pool: Pool, level: Level) -> String {
    format!("{}_{}", pool.name(), level.name())
}

/// The proxy config: one cluster per (pool, level) on its own port, all over the same three
/// servers (`primary`, replica ports). `monitor` is the cluster's monitor block, `users` the
/// `users:` list. Returns the YAML and the cluster ports in [`proxy_clusters`] order.
pub fn proxy_yaml(
    protocol: &str,
    primary: u16,
    replicas: [u16; 2],
    monitor: &str,
    users: &str,
) -> (String, Vec<u16>) {
    let [admin] = crate::support::free_ports::<1>();
    let [r1, r2] = replicas;
    let mut yaml = format!("admin: {{ listen: \"127.0.0.1:{admin}\" }}\nclusters:\n");
    let mut ports = Vec::new();
    for (pool, level) in proxy_clusters() {
        let [port] = crate::support::free_ports::<1>();
        ports.push(port);
        yaml.push_str(&format!(
            "  - name: {name}\n    protocol: {protocol}\n    listen: \"127.0.0.1:{port}\"\n    servers:\n\
             \x20     - {{ name: primary, address: \"127.0.0.1:{primary}\", role: primary }}\n\
             \x20     - {{ name: replica1, address: \"127.0.0.1:{r1}\", role: replica }}\n\
             \x20     - {{ name: replica2, address: \"127.0.0.1:{r2}\", role: replica }}\n\
             \x20   routing: {{ balance: round_robin, max_replica_lag: 30s, fallback: primary, consistency: {level} }}\n\
             \x20   pool: {{ mode: {pool}, size: {size} }}\n\
             \x20   monitor: {{ interval: 1s, timeout: 5s, healthy_after: 1, unhealthy_after: 3, {monitor} }}\n",
            name = cluster_name(pool, level),
            level = level.name(),
            pool = pool.name(),
            size = SESSIONS + 4,
        ));
    }
    yaml.push_str("users:\n");
    yaml.push_str(users);
    (yaml, ports)
}

/// Wait (60 s max) until every one of the proxy's `clusters` clusters has 3 servers up with a
/// known role and lag, so the first reads have replicas to go to.
pub fn wait_clusters(proxy: &crate::support::Proxy, clusters: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = proxy.http_get("/api/clusters");
        let up = |s: &serde_json::Value| {
            s["health"] == "up" && (s["role"] == "primary" || s["lag_seconds"].is_number())
        };
        let ready = status == 200
            && serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| {
                (0..clusters).all(|i| {
                    v.pointer(&format!("/clusters/{i}/servers"))
                        .and_then(|s| s.as_array())
                        .is_some_and(|s| s.iter().filter(|s| up(s)).count() >= 3)
                })
            });
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "proxy clusters never all up: {body}\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
