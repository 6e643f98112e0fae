//! SIGTERM at random moments of a connect / query / close storm: every time, the proxy exits
//! within its drain deadline plus one second, whatever its sessions are doing (logging in, in a
//! transaction, waiting for a server's long answer, half-connected, closing), with session and
//! transaction pooling, on both protocols.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{my_app_opts, pg_conn_str, shared, shared_mysql, Proxy};
use tokio::io::AsyncWriteExt;

/// `limits.shutdown_timeout` of the proxies under test.
const DEADLINE: Duration = Duration::from_secs(1);
/// SIGTERMs sent in all (half to a PostgreSQL proxy, half to a MySQL one).
const ROUNDS: usize = 100;
/// Clients of the storm.
const CLIENTS: usize = 8;

#[derive(Clone, Copy, Debug)]
enum Proto {
    Pg,
    My,
}

fn config(proto: Proto, pooling: &str) -> String {
    let yaml = match proto {
        Proto::Pg => Proxy::pg_config(shared()).0,
        Proto::My => Proxy::mysql_config(shared_mysql()).0,
    };
    let yaml = yaml.replace(
        "clusters:",
        &format!(
            "limits: {{ shutdown_timeout: {}ms }}\nclusters:",
            DEADLINE.as_millis()
        ),
    );
    yaml.replace(
        "    monitor:",
        &format!("    pool: {{ mode: {pooling}, size: 4 }}\n    monitor:"),
    )
}

/// One PostgreSQL client's turn: a random mix of what clients do.
async fn pg_turn(port: u16, rng: &mut rand::rngs::StdRng) {
    let kind = rng.random_range(0..6u8);
    if kind == 0 {
        // Connect and close before the startup packet (or in the middle of it).
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s.write_all(&[0, 0, 0]).await;
        }
        return;
    }
    let url = pg_conn_str(port, APP_USER, APP_PASSWORD, "app");
    let conn = tokio_postgres::connect(&url, tokio_postgres::NoTls);
    let Ok(Ok((client, conn))) = tokio::time::timeout(Duration::from_secs(3), conn).await else {
        return;
    };
    let driver = tokio::spawn(conn);
    let work = async {
        match kind {
            1 => {
                let _ = client.simple_query("SELECT 1").await;
            }
            2 => {
                let _ = client.simple_query("BEGIN; SELECT 1").await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
                let _ = client.simple_query("COMMIT").await;
            }
            3 => {
                // A server answer that outlives the drain deadline.
                let _ = client.simple_query("SELECT pg_sleep(3)").await;
            }
            4 => {
                let _ = client.query("SELECT $1::int", &[&7i32]).await;
                let _ = client.simple_query("BEGIN").await;
                // Left open: the client goes away inside its transaction.
            }
            _ => {
                for _ in 0..5 {
                    let _ = client.query_one("SELECT 1", &[]).await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), work).await;
    drop(client);
    driver.abort();
}

/// One MySQL client's turn.
async fn my_turn(port: u16, rng: &mut rand::rngs::StdRng) {
    use mysql_async::prelude::Queryable;
    let kind = rng.random_range(0..6u8);
    if kind == 0 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s.write_all(&[5, 0, 0]).await;
        }
        return;
    }
    let Ok(Ok(mut c)) = tokio::time::timeout(
        Duration::from_secs(3),
        mysql_async::Conn::new(my_app_opts(port)),
    )
    .await
    else {
        return;
    };
    let pause = Duration::from_millis(rng.random_range(0..300));
    let work = async {
        match kind {
            1 => {
                let _ = c.query_drop("SELECT 1").await;
            }
            2 => {
                let _ = c.query_drop("BEGIN").await;
                let _ = c.query_drop("SELECT 1").await;
                tokio::time::sleep(pause).await;
                let _ = c.query_drop("COMMIT").await;
            }
            3 => {
                let _ = c.query_drop("SELECT SLEEP(3)").await;
            }
            4 => {
                let _ = c.exec_drop("SELECT ?", (7,)).await;
                let _ = c.query_drop("START TRANSACTION").await;
            }
            _ => {
                for _ in 0..5 {
                    let _ = c.query_drop("SELECT 1").await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), work).await;
    // Dropped without COM_QUIT half the time (mysql_async closes in the background).
    if kind % 2 == 0 {
        let _ = tokio::time::timeout(Duration::from_secs(1), c.disconnect()).await;
    }
}

/// Start a proxy, storm it, SIGTERM it at a random moment (with `idle_check`, once the storm
/// has stopped and the proxy was seen idle); how long it took to exit.
async fn round(proto: Proto, pooling: &str, seed: u64, idle_check: bool) -> Duration {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let yaml = config(proto, pooling);
    let mut proxy = tokio::task::block_in_place(|| Proxy::start(&yaml));
    let port = proxy.listen_addrs()[0].port();
    let stop = Arc::new(AtomicBool::new(false));
    let turns = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (stop, turns) = (stop.clone(), turns.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 100 + c as u64);
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match proto {
                    Proto::Pg => pg_turn(port, &mut rng).await,
                    Proto::My => my_turn(port, &mut rng).await,
                }
                turns.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..600))).await;
    if idle_check {
        // Before this SIGTERM the storm stops: once the servers' long answers are in, the
        // sessions it left (closed, half-open, in a transaction) must cost no CPU.
        stop.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        let before = proxy.cpu_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let used = proxy.cpu_ticks() - before;
        assert!(
            used < 20,
            "{proto:?}/{pooling} seed {seed}: after the storm the idle proxy used {used} ticks in 1 s"
        );
    }
    proxy.signal("TERM");
    let termed = Instant::now();
    let limit = DEADLINE + Duration::from_secs(1);
    let status = loop {
        if let Some(s) = proxy.try_wait() {
            break s;
        }
        if termed.elapsed() > limit + Duration::from_secs(10) {
            break proxy.terminate(Duration::from_millis(1));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = termed.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.abort();
    }
    assert!(
        took <= limit,
        "{proto:?}/{pooling} seed {seed}: exited {took:?} after SIGTERM (limit {limit:?}, {} turns)\n--- log ---\n{}",
        turns.load(Ordering::Relaxed),
        proxy.log()
    );
    assert!(
        status.success(),
        "{proto:?}/{pooling} seed {seed}: exit status {status}\n--- log ---\n{}",
        proxy.log()
    );
    took
}

/// One protocol's SIGTERMs, one proxy at a time, session and transaction pooling in turn;
/// (slowest, total) exit time.
async fn lane(proto: Proto, rounds: usize, seed: u64) -> (Duration, Duration) {
    let mut slowest = Duration::ZERO;
    let mut total = Duration::ZERO;
    for i in 0..rounds {
        let pooling = if i % 2 == 0 { "session" } else { "transaction" };
        let took = round(proto, pooling, seed + i as u64, i % 16 == 15).await;
        slowest = slowest.max(took);
        total += took;
    }
    (slowest, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_storm_always_exits_by_the_deadline() {
    // Both protocols' lanes at once (for the suite's time); each round is seeded by its number.
    let pg = tokio::spawn(lane(Proto::Pg, ROUNDS / 2, 1));
    let my = tokio::spawn(lane(Proto::My, ROUNDS / 2, 1_000));
    let (pg, my) = (pg.await.unwrap(), my.await.unwrap());
    for (name, (slowest, total)) in [("PostgreSQL", pg), ("MySQL", my)] {
        println!(
            "{name}: {} SIGTERMs, slowest exit {slowest:?}, mean {:?} (deadline {DEADLINE:?})",
            ROUNDS / 2,
            total / (ROUNDS / 2) as u32
        );
    }
}
