//! Session diagnostics through the proxy on MariaDB: with 6 other clients hammering a pool of 2
//! connections per server (transaction pooling), a checked session's `ROW_COUNT()`,
//! `FOUND_ROWS()`, `SHOW WARNINGS | ERRORS`, `@@warning_count`, `@@error_count`,
//! `GET DIAGNOSTICS`, `LAST_INSERT_ID()`, `@@identity` and `@@last_insert_id` (text and binary
//! protocol) describe its own previous statement, as they do when talking to the primary
//! directly and in session pooling; and the pool stays shared (more clients than slots finish).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::Conn;
use support::mysql_cluster::shared_mysql;
use support::{my_app_opts, Proxy};

const ROUNDS: usize = 60;
const BUSY_CLIENTS: usize = 6;

/// The shared cluster's standard config with `pool` (a YAML flow mapping).
fn start(pool: &str) -> (Proxy, u16) {
    let (yaml, ports) = Proxy::mysql_config(shared_mysql());
    let yaml = yaml.replace(
        "    monitor: {",
        &format!("    pool: {pool}\n    monitor: {{"),
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    (proxy, ports.listen)
}

async fn connect(port: u16) -> Conn {
    let mut c = Conn::new(my_app_opts(port)).await.expect("connect");
    // Truncation is a warning, not an error.
    c.query_drop("SET SESSION sql_mode = ''").await.unwrap();
    c
}

/// Tables the rounds use (created once per test binary run).
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(create_tables);
}

fn create_tables() {
    let c = shared_mysql();
    c.sql(
        c.primary_port(),
        "CREATE TABLE IF NOT EXISTS app.diag_rows (id INT PRIMARY KEY AUTO_INCREMENT, g INT, v INT); \
         DELETE FROM app.diag_rows; \
         INSERT INTO app.diag_rows (g, v) VALUES (1,0),(1,0),(1,0),(2,0),(2,0),\
           (9,0),(9,0),(9,0),(9,0),(9,0),(9,0),(9,0); \
         CREATE TABLE IF NOT EXISTS app.diag_ai (id BIGINT PRIMARY KEY AUTO_INCREMENT, x INT); \
         CREATE TABLE IF NOT EXISTS app.diag_busy (id BIGINT PRIMARY KEY AUTO_INCREMENT, x INT); \
         CREATE TABLE IF NOT EXISTS app.diag_trunc (s VARCHAR(3)); \
         GRANT ALL ON app.* TO 'app'@'%';",
    );
    c.wait_replicas_caught_up();
}

/// Other clients: every statement leaves different diagnostics (7 rows updated, 2 ids, 2
/// warnings, an error, 7 rows found) on whichever pooled connection runs it.
fn busy(port: u16, stop: Arc<AtomicBool>, done: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = connect(port).await;
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let sql = match i % 5 {
                0 => "UPDATE diag_rows SET v = v + 1 WHERE g = 9",
                1 => "INSERT INTO diag_busy (x) VALUES (1), (2)",
                2 => "INSERT INTO diag_trunc VALUES ('busy-long'), ('busy-longer')",
                3 => "SELECT * FROM diag_missing_busy",
                _ => "SELECT SQL_CALC_FOUND_ROWS id FROM diag_rows WHERE g = 9 LIMIT 2",
            };
            match c.query_drop(sql).await {
                Ok(()) | Err(mysql_async::Error::Server(_)) => {}
                // The proxy is gone (the test failed): stop, or this loop never yields and the
                // test's runtime cannot shut down.
                Err(_) => break,
            }
            i += 1;
            tokio::task::yield_now().await;
        }
        done.fetch_add(i, Ordering::Relaxed);
        let _ = c.disconnect().await;
    })
}

/// The first row of `sql` as integers (NULL, or no row at all: `None`s).
async fn ints(c: &mut Conn, sql: &str) -> Vec<Option<i64>> {
    let row: Option<mysql_async::Row> = c.query_first(sql).await.unwrap();
    as_ints(row)
}

/// [`ints`] for a prepared statement with one parameter.
async fn exec_ints(c: &mut Conn, sql: &str, param: i64) -> Vec<Option<i64>> {
    let row: Option<mysql_async::Row> = c.exec_first(sql, (param,)).await.unwrap();
    as_ints(row)
}

fn as_i64(id: Option<u64>) -> Option<i64> {
    id.and_then(|i| i64::try_from(i).ok())
}

fn as_ints(row: Option<mysql_async::Row>) -> Vec<Option<i64>> {
    let values = row.map(mysql_async::Row::unwrap).unwrap_or_default();
    values
        .into_iter()
        .map(|v| mysql_async::from_value_opt::<Option<i64>>(v).ok().flatten())
        .collect()
}

const TRUNCATE: &str = "INSERT INTO diag_trunc VALUES ('toolong')";
const MISSING: &str = "SELECT * FROM diag_missing";

/// One round of every kind on `c` (and `fresh` connections for GET DIAGNOSTICS, which pins):
/// the kinds whose answer was not the database's.
async fn round(c: &mut Conn, port: u16) -> Vec<&'static str> {
    let mut wrong = Vec::new();
    let mut check = |kind: &'static str, ok: bool| {
        if !ok {
            wrong.push(kind);
        }
    };

    c.query_drop("UPDATE diag_rows SET v = v + 1 WHERE g = 1")
        .await
        .unwrap();
    let n = ints(c, "SELECT ROW_COUNT()").await;
    check("ROW_COUNT", n == [Some(3)]);

    let _: Vec<i64> = c
        .query("SELECT SQL_CALC_FOUND_ROWS id FROM diag_rows WHERE g IN (1, 2) LIMIT 1")
        .await
        .unwrap();
    let n = ints(c, "SELECT FOUND_ROWS()").await;
    check("FOUND_ROWS", n == [Some(5)]);

    c.query_drop(TRUNCATE).await.unwrap();
    let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
    check("SHOW WARNINGS", w.len() == 1 && w[0].1 == 1265);

    c.query_drop(TRUNCATE).await.unwrap();
    let n = ints(c, "SELECT @@warning_count").await;
    check("@@warning_count", n == [Some(1)]);

    c.query_drop(TRUNCATE).await.unwrap();
    let n = ints(c, "SHOW COUNT(*) WARNINGS").await;
    check("SHOW COUNT(*) WARNINGS", n == [Some(1)]);

    c.query_drop("INSERT INTO diag_ai (x) VALUES (1)")
        .await
        .unwrap();
    let id = c.last_insert_id();
    let n = ints(c, "SELECT LAST_INSERT_ID() + 0").await;
    check("LAST_INSERT_ID", id.is_some() && n == [as_i64(id)]);

    c.query_drop("INSERT INTO diag_ai (x) VALUES (2)")
        .await
        .unwrap();
    let id = c.last_insert_id();
    let n = ints(c, "SELECT @@identity, @@last_insert_id").await;
    check("@@identity", id.is_some() && n == [as_i64(id), as_i64(id)]);

    // The last insert id outlives the statement after it.
    let _: Vec<i64> = c
        .query("SELECT id FROM diag_rows WHERE g = 2")
        .await
        .unwrap();
    let n = ints(c, "SELECT LAST_INSERT_ID() * 1").await;
    check("LAST_INSERT_ID later", id.is_some() && n == [as_i64(id)]);

    assert!(c.query_drop(MISSING).await.is_err());
    let n = ints(c, "SELECT @@error_count").await;
    check("@@error_count", n == [Some(1)]);

    assert!(c.query_drop(MISSING).await.is_err());
    let e: Vec<(String, u32, String)> = c.query("SHOW ERRORS").await.unwrap();
    check("SHOW ERRORS", e.len() == 1 && e[0].1 == 1146);

    // What a statement that left nothing leaves: no warnings, ROW_COUNT() 0 after an OK
    // without rows and -1 after rows.
    c.query_drop("UPDATE diag_rows SET v = v WHERE g = 0")
        .await
        .unwrap();
    let n = ints(c, "SELECT ROW_COUNT()").await;
    check("ROW_COUNT after 0 rows", n == [Some(0)]);

    let _: Vec<i64> = c
        .query("SELECT id FROM diag_rows WHERE g = 1")
        .await
        .unwrap();
    let n = ints(c, "SELECT ROW_COUNT()").await;
    check("ROW_COUNT after rows", n == [Some(-1)]);
    let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
    check("SHOW WARNINGS after a clean statement", w.is_empty());

    // Binary protocol.
    c.exec_drop("UPDATE diag_rows SET v = v + 1 WHERE g = ?", (1,))
        .await
        .unwrap();
    let n = exec_ints(c, "SELECT ROW_COUNT() + ?", 0).await;
    check("ROW_COUNT prepared", n == [Some(3)]);

    c.exec_drop("INSERT INTO diag_ai (x) VALUES (?)", (3,))
        .await
        .unwrap();
    let id = c.last_insert_id();
    let n = exec_ints(c, "SELECT LAST_INSERT_ID() + ?", 0).await;
    check("LAST_INSERT_ID prepared", id.is_some() && n == [as_i64(id)]);

    // GET DIAGNOSTICS into a user variable pins the session: a connection of its own.
    let mut g = connect(port).await;
    g.query_drop(TRUNCATE).await.unwrap();
    g.query_drop("GET DIAGNOSTICS @n = NUMBER").await.unwrap();
    let n = ints(&mut g, "SELECT @n").await;
    check("GET DIAGNOSTICS", n == [Some(1)]);
    g.disconnect().await.unwrap();

    wrong
}

/// `rounds` rounds on one session while `BUSY_CLIENTS` others hammer the proxy: wrong answers
/// per kind.
async fn run(port: u16, rounds: usize) -> BTreeMap<&'static str, usize> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let busy: Vec<_> = (0..BUSY_CLIENTS)
        .map(|_| busy(port, stop.clone(), done.clone()))
        .collect();
    let mut c = connect(port).await;
    let mut wrong = BTreeMap::new();
    for _ in 0..rounds {
        for kind in round(&mut c, port).await {
            *wrong.entry(kind).or_insert(0) += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.await.unwrap();
    }
    c.disconnect().await.unwrap();
    let busy_statements = done.load(Ordering::Relaxed);
    eprintln!("{rounds} rounds beside {busy_statements} busy statements: wrong {wrong:?}");
    assert!(busy_statements > rounds, "the other clients were not busy");
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_answers_are_what_the_rounds_expect() {
    setup();
    let port = shared_mysql().primary_port();
    let wrong = run(port, 3).await;
    assert!(wrong.is_empty(), "directly on the primary: {wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_keeps_each_sessions_diagnostics() {
    setup();
    let (_proxy, port) = start("{ mode: transaction, size: 2, checkout_timeout: 30s }");
    let wrong = run(port, ROUNDS).await;
    assert!(wrong.is_empty(), "transaction pooling: {wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_keeps_each_sessions_diagnostics() {
    setup();
    let (_proxy, port) = start("{ mode: session }");
    let wrong = run(port, ROUNDS).await;
    assert!(wrong.is_empty(), "session pooling: {wrong:?}");
}

/// Holding a connection for a diagnostics read must not keep it from other clients: with 2
/// connections per server, 8 clients whose last statement left diagnostics and who then stay
/// idle, and 8 clients running autocommit statements at once, all finish well within the 5 s
/// checkout timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pool_is_still_shared() {
    setup();
    let (_proxy, port) = start("{ mode: transaction, size: 2, checkout_timeout: 5s }");
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut c = connect(port).await;
        c.query_drop("UPDATE diag_rows SET v = v + 1 WHERE g = 2")
            .await
            .unwrap();
        idle.push(c);
    }
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = connect(port).await;
                for j in 0..30 {
                    if (i + j) % 2 == 0 {
                        c.query_drop("UPDATE diag_rows SET v = v + 1 WHERE g = 2")
                            .await
                            .unwrap();
                    } else {
                        let n = ints(&mut c, "SELECT COUNT(*) FROM diag_rows").await;
                        assert_eq!(n, [Some(12)]);
                    }
                }
                c.disconnect().await.unwrap();
            })
        })
        .collect();
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("clients sharing the pool finish");
    // The idle clients still work, and their connections came back meanwhile.
    for mut c in idle {
        let n = ints(&mut c, "SELECT 1").await;
        assert_eq!(n, [Some(1)]);
        c.disconnect().await.unwrap();
    }
}

/// `ROW_COUNT()` after each kind of statement, read when the connection that ran it is no longer
/// the session's: (statement, what `SELECT ROW_COUNT()` answered).
async fn row_counts_after(port: u16) -> Vec<(&'static str, Vec<Option<i64>>)> {
    let mut c = connect(port).await;
    let mut out = Vec::new();
    for sql in [
        "UPDATE diag_rows SET v = v + 1 WHERE g = 1",
        "SELECT id FROM diag_rows WHERE g = 2",
        "UPDATE diag_rows SET v = v WHERE g = 1",
        "INSERT INTO diag_ai (x) VALUES (7), (8)",
        "DELETE FROM diag_ai WHERE x IN (7, 8)",
        MISSING,
        "DO 1",
    ] {
        let _ = c.query_drop(sql).await;
        // Longer than any hold: the connection goes back to the pool.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        out.push((sql, ints(&mut c, "SELECT ROW_COUNT()").await));
    }
    c.disconnect().await.unwrap();
    out
}

/// Once the diagnostics hold ran out (or with `diagnostics_hold: 0s`), `SELECT ROW_COUNT()` still
/// gives the session's own previous statement's count, as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_count_after_the_hold_ran_out() {
    setup();
    let want = row_counts_after(shared_mysql().primary_port()).await;
    assert_eq!(want[0].1, [Some(3)], "directly: {want:?}");
    for pool in [
        "{ mode: transaction, size: 2, diagnostics_hold: 0s }",
        "{ mode: transaction, size: 2, diagnostics_hold: 50ms }",
    ] {
        let (_proxy, port) = start(pool);
        let got = row_counts_after(port).await;
        assert_eq!(got, want, "{pool}");
    }
}
