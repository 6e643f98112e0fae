//! Command line: parse arguments, load and validate the config, run the proxy.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "switchyard",
    version,
    about = "Read/write-splitting proxy for PostgreSQL"
)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(short, long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines as `text` or `json` (one object per line). Levels: RUST_LOG (default info).
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Worker threads of the runtime (default: one thread on a host of 1 or 2 cores, else one
    /// per core). `1` runs everything on one thread with a single-threaded scheduler; on a small
    /// host shared with the databases that costs the least CPU per query.
    #[arg(long, env = "SWITCHYARD_THREADS")]
    threads: Option<usize>,
    /// Busy polling (`200us`; at most 10ms; needs `--threads 1`): after each client request keep
    /// polling the sockets this long instead of sleeping, while at most one session waits for
    /// a server. Cuts the latency added at low load for a busy core meanwhile.
    #[arg(long, env = "SWITCHYARD_BUSY_POLL", value_parser = switchyard::config::values::parse_duration)]
    busy_poll: Option<std::time::Duration>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and print every problem with its YAML path.
    CheckConfig { file: PathBuf },
}

fn main() -> ExitCode {
    // One rustls crypto provider (ring) for every crate in the process, before anything uses TLS.
    switchyard::tls::install_default_provider();
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = cli.command {
        return match switchyard::config::load_file(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} cluster(s), {} user(s))",
                    file.display(),
                    c.clusters.len(),
                    c.users.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: invalid configuration", file.display());
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = runtime_threads(cli.threads, cores);
    let busy_poll = match cli.busy_poll.map(switchyard::busy_poll::check_window) {
        Some(Err(e)) => {
            eprintln!("switchyard: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(Some(_))) if threads != 1 => {
            eprintln!(
                "switchyard: --busy-poll needs --threads 1 (it polls the one thread's sockets)"
            );
            return ExitCode::from(2);
        }
        Some(Ok(w)) => w,
        None => None,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if cli.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let Some(path) = cli.config else {
        eprintln!("switchyard: --config FILE is required (or `switchyard check-config FILE`)");
        return ExitCode::from(2);
    };
    let config = match switchyard::config::load_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: invalid configuration\n{e}", path.display());
            return ExitCode::from(2);
        }
    };
    // One thread: a single-threaded scheduler (no work stealing, no cross-thread wake-ups),
    // like PgBouncer's one event loop. More: tokio's multi-threaded scheduler.
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    tracing::info!(
        threads,
        cores,
        chosen = if cli.threads.is_some() {
            "--threads"
        } else {
            "default"
        },
        "runtime"
    );
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    // Signals are watched from a thread of their own, so a drain ends by its deadline even if
    // the proxy's runtime could not (see `watch_signals`).
    let grace = config.limits.shutdown_timeout + KILL_GRACE + EXIT_GRACE;
    if let Err(e) = spawn_signal_watch(shutdown.clone(), grace) {
        eprintln!("switchyard: cannot watch for signals: {e}");
        return ExitCode::FAILURE;
    }
    let result = runtime.block_on(switchyard::app::run(
        config,
        Some(path),
        shutdown,
        busy_poll,
        KILL_GRACE,
    ));
    // Tasks still running (a server's goodbye, a blocking config read) are not waited for.
    runtime.shutdown_timeout(EXIT_GRACE / 2);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Worker threads for the runtime: what `--threads` asked for (0 means the default), else one on
/// a host of at most `SINGLE_THREAD_CORES` cores and one per core above that. On 2 cores shared
/// with the databases, the single-threaded scheduler costs less CPU per query than two workers
/// and serves as many (docs/perf.md, "Thirteenth round"); a host with more cores gets them all.
fn runtime_threads(requested: Option<usize>, cores: usize) -> usize {
    match requested {
        Some(n) if n > 0 => n,
        _ if cores <= SINGLE_THREAD_CORES => 1,
        _ => cores,
    }
}

/// Up to this many cores the default runtime is one thread.
const SINGLE_THREAD_CORES: usize = 2;

/// After the drain deadline, how long the sessions closed by force get to end.
const KILL_GRACE: std::time::Duration = std::time::Duration::from_millis(200);
/// After that, how long the runtime gets to stop before the process exits regardless.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(700);

/// Start the thread that turns SIGTERM / SIGINT into `shutdown` and then, `grace` later, ends
/// the process if it is still running (a drain must end by its deadline whatever the sessions
/// are doing, even a task that never yields its worker thread).
fn spawn_signal_watch(
    shutdown: CancellationToken,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered before the thread starts: a signal from now on is ours, not the default exit.
    let (mut term, mut int) = {
        let _in_runtime = rt.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            tracing::info!("shutting down");
            shutdown.cancel();
            std::thread::sleep(grace);
            tracing::error!(
                ?grace,
                "the drain did not end in time after its deadline: exiting now"
            );
            std::process::exit(1);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::runtime_threads;

    #[test]
    fn runtime_threads_by_host_unless_asked() {
        assert_eq!(runtime_threads(None, 1), 1);
        assert_eq!(runtime_threads(None, 2), 1);
        assert_eq!(runtime_threads(None, 3), 3);
        assert_eq!(runtime_threads(None, 16), 16);
        assert_eq!(runtime_threads(Some(0), 2), 1);
        assert_eq!(runtime_threads(Some(0), 8), 8);
        assert_eq!(runtime_threads(Some(1), 16), 1);
        assert_eq!(runtime_threads(Some(2), 2), 2);
        assert_eq!(runtime_threads(Some(4), 2), 4);
    }
}
