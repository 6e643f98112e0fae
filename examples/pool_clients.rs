//! Many-clients load generator for the pooling benchmark (bench/pooling.sh): holds N idle
//! PostgreSQL client connections (`idle`) or runs N concurrent short-lived clients (`burst`).
//!
//! ```text
//! pool_clients idle N  [--host H --port P --user U --password PW --db D --concurrency C]
//! pool_clients burst N [same options] [--extended]
//! ```
//! - `idle N`: opens N connections, at most `--concurrency` (default 200) logging in at a time,
//!   runs one `SELECT 1` on each, prints `ready <open> <failed>` on stdout and keeps every
//!   connection open until standard input is closed (the caller measures memory meanwhile).
//! - `burst N`: starts N clients at once; each connects, runs `SELECT 1` five times and
//!   `SELECT count(*) FROM pgbench_branches`, and disconnects. Prints
//!   `completed <n> failed <n> seconds <s>` and the most common errors. `--extended` runs the
//!   statements with the extended protocol (prepare + bind/execute) instead of simple queries.
//!
//! Exit status: 0 when every client succeeded, 1 otherwise (the counts are printed either way).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_postgres::{Client, Config, NoTls};

/// Deadline for one client to connect and log in (the proxy may be queueing thousands).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for one statement.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for one burst client from start to end.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);
/// How many distinct error messages a run prints.
const SHOWN_ERRORS: usize = 5;

#[derive(Parser, Debug)]
#[command(about = "Opens many PostgreSQL clients at once (bench/pooling.sh)")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, global = true, default_value_t = 6432)]
    port: u16,
    #[arg(long, global = true, default_value = "app")]
    user: String,
    #[arg(long, global = true, default_value = "")]
    password: String,
    #[arg(long, global = true, default_value = "app")]
    db: String,
    /// Logins in flight at once (`idle` only).
    #[arg(long, global = true, default_value_t = 200)]
    concurrency: usize,
    /// Extended protocol (prepare + execute) instead of simple queries (`burst` only).
    #[arg(long, global = true)]
    extended: bool,
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum Mode {
    /// Hold N idle connections until stdin closes.
    Idle { clients: usize },
    /// Run N concurrent short clients.
    Burst { clients: usize },
}

/// Tally of failures by message.
#[derive(Default)]
struct Errors {
    by_message: HashMap<String, usize>,
    total: usize,
}

impl Errors {
    fn add(&mut self, message: String) {
        self.total += 1;
        *self.by_message.entry(message).or_insert(0) += 1;
    }

    fn print(&self) {
        let mut list: Vec<_> = self.by_message.iter().collect();
        list.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        for (message, count) in list.into_iter().take(SHOWN_ERRORS) {
            eprintln!("  {count} x {message}");
        }
    }
}

fn pg_config(args: &Args) -> Config {
    let mut config = Config::new();
    config
        .host(&args.host)
        .port(args.port)
        .user(&args.user)
        .password(args.password.as_bytes())
        .dbname(&args.db)
        .application_name("pool_clients")
        .connect_timeout(CONNECT_TIMEOUT);
    config
}

/// Connects and logs in; the connection's I/O runs in its own task until the client is dropped.
async fn connect(config: &Config) -> Result<Client, String> {
    let (client, connection) = timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| "connect: timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(async move {
        // The error (if any) surfaces on the client's next request.
        let _ = connection.await;
    });
    Ok(client)
}

async fn simple(client: &Client, sql: &str) -> Result<(), String> {
    timeout(QUERY_TIMEOUT, client.simple_query(sql))
        .await
        .map_err(|_| format!("{sql}: timed out"))?
        .map(|_| ())
        .map_err(|e| format!("{sql}: {e}"))
}

async fn extended(client: &Client, sql: &str) -> Result<(), String> {
    timeout(QUERY_TIMEOUT, client.query(sql, &[]))
        .await
        .map_err(|_| format!("{sql}: timed out"))?
        .map(|_| ())
        .map_err(|e| format!("{sql}: {e}"))
}

/// Waits (on a plain thread: tokio's stdin needs a feature this crate does not enable) until
/// standard input reaches end of file.
async fn stdin_closed() {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
}

async fn run_idle(args: &Args, clients: usize) -> ExitCode {
    let config = Arc::new(pg_config(args));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (config, gate) = (config.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let client = connect(&config).await?;
            simple(&client, "SELECT 1").await?;
            Ok::<Client, String>(client)
        });
    }
    let mut open = Vec::with_capacity(clients);
    let mut errors = Errors::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(client)) => open.push(client),
            Ok(Err(e)) => errors.add(e),
            Err(e) => errors.add(format!("task: {e}")),
        }
    }
    eprintln!(
        "idle: {} open, {} failed, logins took {:.2} s",
        open.len(),
        errors.total,
        started.elapsed().as_secs_f64()
    );
    errors.print();
    println!("ready {} {}", open.len(), errors.total);
    let _ = std::io::stdout().flush();
    stdin_closed().await;
    let failed = errors.total;
    drop(open);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One burst client: connect, 5 x `SELECT 1`, one count, disconnect.
async fn burst_client(config: &Config, use_extended: bool) -> Result<(), String> {
    let client = connect(config).await?;
    let statements = ["SELECT 1"; 5]
        .into_iter()
        .chain(["SELECT count(*) FROM pgbench_branches"]);
    for sql in statements {
        if use_extended {
            extended(&client, sql).await?;
        } else {
            simple(&client, sql).await?;
        }
    }
    Ok(())
}

async fn run_burst(args: &Args, clients: usize) -> ExitCode {
    let config = Arc::new(pg_config(args));
    let use_extended = args.extended;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let config = config.clone();
        tasks.spawn(async move {
            let begun = Instant::now();
            match timeout(CLIENT_TIMEOUT, burst_client(&config, use_extended)).await {
                Ok(result) => result.map(|()| begun.elapsed()),
                Err(_) => Err("client: timed out".to_string()),
            }
        });
    }
    let mut took = Vec::with_capacity(clients);
    let mut errors = Errors::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(elapsed)) => took.push(elapsed),
            Ok(Err(e)) => errors.add(e),
            Err(e) => errors.add(format!("task: {e}")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    took.sort();
    let pick = |q: f64| -> f64 {
        if took.is_empty() {
            return 0.0;
        }
        let at = ((took.len() as f64 - 1.0) * q).round() as usize;
        took[at.min(took.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "completed {} failed {} seconds {:.2} client_ms_p50 {:.0} client_ms_p99 {:.0} client_ms_max {:.0}",
        took.len(),
        errors.total,
        seconds,
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    errors.print();
    if errors.total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match args.mode {
            Mode::Idle { clients } => run_idle(&args, clients).await,
            Mode::Burst { clients } => run_burst(&args, clients).await,
        }
    })
}
