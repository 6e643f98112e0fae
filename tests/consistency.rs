//! End-to-end: read consistency levels with replicas that apply changes late (PostgreSQL
//! `recovery_min_apply_delay`, MariaDB `MASTER_DELAY`), both protocols: 1,000 write/read-back
//! iterations per level, in one session and across connections, plus proof that reads still use
//! replicas once they are caught up. Run with `--nocapture` for the counts and timings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use support::mysql_cluster::MariaDbCluster;
use support::pg_cluster::{APP_PASSWORD, APP_USER, MD5_USER};
use support::{pg_conn_str, PgCluster, Proxy};
use tokio_postgres::NoTls;

const ITERATIONS: usize = 1000;

/// Reads wait for a replica to catch up (`causal_wait`), with a short causal timeout so 1,000
/// fallbacks to the primary take seconds, not minutes.
fn with_short_causal_timeout(yaml: &str) -> String {
    assert!(yaml.contains("fallback: primary }"), "{yaml}");
    yaml.replace(
        "fallback: primary }",
        "fallback: primary, causal_wait: true, causal_timeout: 20ms }",
    )
}

/// The cluster in transaction pooling mode, 2 server connections per pool.
fn with_transaction_pool(yaml: &str) -> String {
    assert!(yaml.contains("    monitor: {"), "{yaml}");
    yaml.replacen(
        "    monitor: {",
        "    pool: { mode: transaction, size: 2 }\n    monitor: {",
        1,
    )
}

async fn pg(
    port: u16,
    user: &str,
    password: &str,
    options: Option<&str>,
) -> tokio_postgres::Client {
    let mut s = pg_conn_str(port, user, password, "app");
    if let Some(o) = options {
        s.push_str(&format!(" options='{o}'"));
    }
    let (c, conn) = tokio_postgres::connect(&s, NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

/// (rows with this note, read on a replica?)
async fn pg_read(c: &tokio_postgres::Client, note: &str) -> (i64, bool) {
    let sql = format!("SELECT count(*), pg_is_in_recovery() FROM notes WHERE note = '{note}'");
    let r = support::simple_first_row(c, &sql).await;
    (
        r[0].as_deref().unwrap().parse().unwrap(),
        r[1].as_deref() == Some("t"),
    )
}

fn set_apply_delay(cluster: &PgCluster, delay: Option<&str>) {
    for (i, port) in cluster.replica_ports().into_iter().enumerate() {
        let conf = cluster
            .data_dir(&format!("replica{}", i + 1))
            .join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&conf).unwrap_or_default();
        let mut text: String = text
            .lines()
            .filter(|l| !l.starts_with("recovery_min_apply_delay"))
            .map(|l| format!("{l}\n"))
            .collect();
        if let Some(d) = delay {
            text.push_str(&format!("recovery_min_apply_delay = '{d}'\n"));
        }
        std::fs::write(&conf, text).unwrap();
        cluster.psql(port, "postgres", "SELECT pg_reload_conf()");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_consistency_levels_with_delayed_replicas() {
    let cluster = PgCluster::start();
    cluster.psql(
        cluster.primary_port(),
        "app",
        "CREATE TABLE notes (id serial, note text); GRANT ALL ON notes, notes_id_seq TO app, md5user",
    );
    cluster.wait_replicas_caught_up();
    set_apply_delay(&cluster, Some("5s"));
    let (yaml, ports) = Proxy::pg_config(&cluster);
    let proxy = Proxy::start(&with_short_causal_timeout(&yaml));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port = ports.listen;
    let md5pw = support::proxy::MDAPP_PASSWORD;

    // One session, write then read back.
    for (level, expect_stale) in [("read_your_writes", false), ("eventual", true)] {
        let c = pg(
            port,
            APP_USER,
            APP_PASSWORD,
            Some(&format!("-c switchyard.consistency={level}")),
        )
        .await;
        let started = Instant::now();
        let mut stale = 0;
        for i in 0..ITERATIONS {
            let note = format!("{level}-{i}");
            c.simple_query(&format!("INSERT INTO notes (note) VALUES ('{note}')"))
                .await
                .unwrap();
            if pg_read(&c, &note).await.0 == 0 {
                stale += 1;
            }
        }
        eprintln!(
            "pg same session {level}: {stale}/{ITERATIONS} stale reads in {:?}",
            started.elapsed()
        );
        if expect_stale {
            assert!(
                stale > 0,
                "eventual against 5 s-delayed replicas must observe stale reads"
            );
        } else {
            assert_eq!(stale, 0, "{level} gave stale reads");
        }
    }

    // Write on one connection, read on a new one (cross-connection form: global).
    let writer = pg(port, APP_USER, APP_PASSWORD, None).await;
    for (level, expect_stale, n) in [("global", false, ITERATIONS), ("eventual", true, 100)] {
        let started = Instant::now();
        let mut stale = 0;
        for i in 0..n {
            let note = format!("x-{level}-{i}");
            writer
                .simple_query(&format!("INSERT INTO notes (note) VALUES ('{note}')"))
                .await
                .unwrap();
            let reader = pg(
                port,
                "mdapp",
                md5pw,
                Some(&format!("-c switchyard.consistency={level}")),
            )
            .await;
            if pg_read(&reader, &note).await.0 == 0 {
                stale += 1;
            }
        }
        eprintln!(
            "pg new connection {level}: {stale}/{n} stale reads in {:?}",
            started.elapsed()
        );
        if expect_stale {
            assert!(
                stale > 0,
                "eventual on a new connection must observe stale reads"
            );
        } else {
            assert_eq!(stale, 0, "{level} gave stale reads");
        }
    }
    let _ = MD5_USER;

    // Transaction pooling and the extended protocol: the driver prepares each statement (Parse,
    // Describe, Sync) before it runs it. The prepare goes where the statement would run, so a
    // table the session just created, not yet on the delayed replicas, can be written at once
    // and read back (the read's prepare under read-your-writes too).
    let (pooled_yaml, pooled_ports) = Proxy::pg_config(&cluster);
    let pooled_yaml = with_transaction_pool(&with_short_causal_timeout(&pooled_yaml));
    let pooled = Proxy::start(&pooled_yaml);
    pooled.wait_topology(3);
    let c = pg(pooled_ports.listen, APP_USER, APP_PASSWORD, None).await;
    for i in 0..20 {
        let t = format!("fresh_{i}");
        c.batch_execute(&format!("CREATE TABLE {t} (i int)"))
            .await
            .unwrap();
        let sql = format!("INSERT INTO {t} VALUES ({i}) RETURNING i");
        let row = c.query_one(&sql, &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i);
        let sql = format!("SELECT count(*) FROM {t}");
        let row = c.query_one(&sql, &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 1, "{t}");
    }
    // The driver closes the statement of each execute() right after its answer (Close + Sync).
    // With the primary's connection already back in its pool, that Close may go to a replica,
    // and the read-back that follows to the same one: it must still be checked against the
    // write, not sent behind the Close unchecked.
    let read = c
        .prepare("SELECT count(*) FROM notes WHERE note = $1")
        .await
        .unwrap();
    for i in 0..40 {
        let note = format!("pooled-{i}");
        c.execute("INSERT INTO notes (note) VALUES ($1)", &[&note])
            .await
            .unwrap();
        let n: i64 = c.query_one(&read, &[&note]).await.unwrap().get(0);
        assert_eq!(n, 1, "{note}: the read-back missed the session's own write");
    }
    // strong under transaction pooling: the same Close may go to a replica, and a read sent
    // behind it must still be moved to the primary.
    let strong = pg(
        pooled_ports.listen,
        APP_USER,
        APP_PASSWORD,
        Some("-c switchyard.consistency=strong"),
    )
    .await;
    let read = strong
        .prepare("SELECT (SELECT count(*) FROM notes WHERE note = $1), pg_is_in_recovery()")
        .await
        .unwrap();
    for i in 0..40 {
        let note = format!("strong-pooled-{i}");
        strong
            .execute("INSERT INTO notes (note) VALUES ($1)", &[&note])
            .await
            .unwrap();
        let row = strong.query_one(&read, &[&note]).await.unwrap();
        let (n, on_replica): (i64, bool) = (row.get(0), row.get(1));
        assert!(!on_replica, "{note}: strong read on a replica ({n} rows)");
    }
    drop(pooled);

    // strong: always the primary.
    let strong = pg(
        port,
        APP_USER,
        APP_PASSWORD,
        Some("-c switchyard.consistency=strong"),
    )
    .await;
    for _ in 0..50 {
        assert!(
            !pg_read(&strong, "none").await.1,
            "strong read on a replica"
        );
    }

    // Caught-up replicas still serve reads under read_your_writes and global.
    set_apply_delay(&cluster, None);
    tokio::time::sleep(Duration::from_secs(6)).await;
    for level in ["read_your_writes", "global"] {
        let c = pg(
            port,
            APP_USER,
            APP_PASSWORD,
            Some(&format!("-c switchyard.consistency={level}")),
        )
        .await;
        let mut on_replica = 0;
        for i in 0..100 {
            let note = format!("fast-{level}-{i}");
            c.simple_query(&format!("INSERT INTO notes (note) VALUES ('{note}')"))
                .await
                .unwrap();
            let (n, replica) = pg_read(&c, &note).await;
            assert_eq!(n, 1);
            on_replica += usize::from(replica);
        }
        eprintln!("pg caught up {level}: {on_replica}/100 reads of fresh rows served by replicas");
        assert!(
            on_replica > 50,
            "{level}: reads should reach caught-up replicas"
        );
    }
    let m = proxy.metrics();
    assert!(m.contains("result=\"caught_up\""), "{m}");
    assert!(m.contains("reason=\"causal_fallback\""), "{m}");
}

async fn my_conn(port: u16, level: Option<&str>) -> mysql_async::Conn {
    let mut c = mysql_async::Conn::new(support::my_app_opts(port))
        .await
        .unwrap();
    if let Some(l) = level {
        c.query_drop(format!("SET @switchyard_consistency = '{l}'"))
            .await
            .unwrap();
    }
    c
}

/// (rows with this note, read on a replica?)
async fn my_read(c: &mut mysql_async::Conn, note: &str, replicas: [u16; 2]) -> (u64, bool) {
    let r: Option<(u64, u16)> = c
        .query_first(format!(
            "SELECT COUNT(*), @@port FROM notes WHERE note = '{note}'"
        ))
        .await
        .unwrap();
    let (n, port) = r.unwrap();
    (n, replicas.contains(&port))
}

fn set_master_delay(cluster: &MariaDbCluster, secs: u32) {
    for port in cluster.replica_ports() {
        cluster.sql(
            port,
            &format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = {secs}; START SLAVE"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_consistency_levels_with_delayed_replicas() {
    let cluster = MariaDbCluster::start();
    cluster.sql(
        cluster.primary_port(),
        "CREATE TABLE app.notes (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(50), KEY (note))",
    );
    cluster.wait_replicas_caught_up();
    set_master_delay(&cluster, 5);
    let (yaml, ports) = Proxy::mysql_config(&cluster);
    let proxy = Proxy::start(&with_short_causal_timeout(&yaml));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port = ports.listen;
    let replicas = cluster.replica_ports();

    for (level, expect_stale) in [("read_your_writes", false), ("eventual", true)] {
        let mut c = my_conn(port, Some(level)).await;
        let started = Instant::now();
        let mut stale = 0;
        for i in 0..ITERATIONS {
            let note = format!("{level}-{i}");
            c.query_drop(format!("INSERT INTO notes (note) VALUES ('{note}')"))
                .await
                .unwrap();
            if my_read(&mut c, &note, replicas).await.0 == 0 {
                stale += 1;
            }
        }
        eprintln!(
            "mariadb same session {level}: {stale}/{ITERATIONS} stale reads in {:?}",
            started.elapsed()
        );
        if expect_stale {
            assert!(
                stale > 0,
                "eventual against delayed replicas must observe stale reads"
            );
        } else {
            assert_eq!(stale, 0, "{level} gave stale reads");
        }
    }

    // Transaction pooling and the binary protocol: a table the session just created, not yet on
    // the delayed replicas, is written and read back through prepared statements at once; then
    // 40 prepared writes each read back by a prepared read. A statement cache of one makes the
    // driver close (COM_STMT_CLOSE) the other statement before every prepare, so each read
    // follows a close that, with the primary's connection back in its pool, may go anywhere.
    let (pooled_yaml, pooled_ports) = Proxy::mysql_config(&cluster);
    let pooled_yaml = with_transaction_pool(&with_short_causal_timeout(&pooled_yaml));
    let pooled = Proxy::start(&pooled_yaml);
    pooled.wait_topology(3);
    let opts = mysql_async::OptsBuilder::from_opts(support::my_app_opts(pooled_ports.listen))
        .stmt_cache_size(1);
    let mut c = mysql_async::Conn::new(opts).await.unwrap();
    for i in 0..10 {
        let t = format!("fresh_{i}");
        c.query_drop(format!("CREATE TABLE {t} (i INT)"))
            .await
            .unwrap();
        c.exec_drop(format!("INSERT INTO {t} VALUES (?)"), (i,))
            .await
            .unwrap();
        let n: Option<u64> = c
            .exec_first(format!("SELECT COUNT(*) FROM {t} WHERE i = ?"), (i,))
            .await
            .unwrap();
        assert_eq!(n, Some(1), "{t}");
    }
    for i in 0..40 {
        let note = format!("pooled-{i}");
        c.exec_drop("INSERT INTO notes (note) VALUES (?)", (&note,))
            .await
            .unwrap();
        let n: Option<u64> = c
            .exec_first("SELECT COUNT(*) FROM notes WHERE note = ?", (&note,))
            .await
            .unwrap();
        assert_eq!(
            n,
            Some(1),
            "{note}: the read-back missed the session's own write"
        );
    }
    c.disconnect().await.unwrap();
    drop(pooled);

    let mut writer = my_conn(port, None).await;
    for (level, expect_stale, n) in [("global", false, ITERATIONS), ("eventual", true, 100)] {
        let started = Instant::now();
        let mut stale = 0;
        for i in 0..n {
            let note = format!("x-{level}-{i}");
            writer
                .query_drop(format!("INSERT INTO notes (note) VALUES ('{note}')"))
                .await
                .unwrap();
            let mut reader = my_conn(port, Some(level)).await;
            if my_read(&mut reader, &note, replicas).await.0 == 0 {
                stale += 1;
            }
            reader.disconnect().await.unwrap();
        }
        eprintln!(
            "mariadb new connection {level}: {stale}/{n} stale reads in {:?}",
            started.elapsed()
        );
        if expect_stale {
            assert!(
                stale > 0,
                "eventual on a new connection must observe stale reads"
            );
        } else {
            assert_eq!(stale, 0, "{level} gave stale reads");
        }
    }

    let mut strong = my_conn(port, Some("strong")).await;
    for _ in 0..50 {
        assert!(
            !my_read(&mut strong, "none", replicas).await.1,
            "strong read on a replica"
        );
    }

    set_master_delay(&cluster, 0);
    cluster.wait_replicas_caught_up();
    // STOP/START SLAVE made the replicas `broken` for a moment: wait out the readmission hold (5 s).
    tokio::time::sleep(Duration::from_secs(7)).await;
    for level in ["read_your_writes", "global"] {
        let mut c = my_conn(port, Some(level)).await;
        let mut on_replica = 0;
        for i in 0..100 {
            let note = format!("fast-{level}-{i}");
            c.query_drop(format!("INSERT INTO notes (note) VALUES ('{note}')"))
                .await
                .unwrap();
            let (n, replica) = my_read(&mut c, &note, replicas).await;
            assert_eq!(n, 1);
            on_replica += usize::from(replica);
        }
        eprintln!(
            "mariadb caught up {level}: {on_replica}/100 reads of fresh rows served by replicas"
        );
        if on_replica <= 50 {
            let m = proxy.metrics();
            let lines: Vec<&str> = m
                .lines()
                .filter(|l| l.contains("causal") || l.contains("state{"))
                .collect();
            let log = proxy.log();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("causal wait") && !l.contains("probe"))
                .collect();
            let tail = &tail[tail.len().saturating_sub(25)..];
            panic!(
                "{level}: reads should reach caught-up replicas\n{}\n{}\n{}",
                lines.join("\n"),
                proxy.http_get("/api/clusters").1,
                tail.join("\n")
            );
        }
    }
    let m = proxy.metrics();
    assert!(m.contains("result=\"caught_up\""), "{m}");
    assert!(m.contains("reason=\"causal_fallback\""), "{m}");
}
