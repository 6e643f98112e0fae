//! End-to-end: read-your-writes and global when PostgreSQL commits asynchronously
//! (`synchronous_commit = off` in postgresql.conf or per session) and with `local`, `on` and
//! `remote_apply`: 200 INSERT-then-SELECT pairs per case through the proxy, session and
//! transaction pooling, simple and extended protocol, with the default (a read after a write goes
//! to the primary unless a replica is known to have the write) and with `causal_wait` (it waits
//! for a replica), 0 stale reads. Reads still reach replicas where they may: under `eventual`
//! (which then reads stale rows, so the count can fail), with no prior write, and once the monitor
//! saw a replica replay the session's position. A MariaDB twin runs the same pairs. Run with
//! `--nocapture` for the counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use mysql_async::prelude::*;
use support::mysql_cluster::MariaDbCluster;
use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{pg_conn_str, PgCluster, Proxy};
use tokio_postgres::{Client, NoTls};

const PAIRS: usize = 200;

/// The standard config with `extra` routing settings, in transaction pooling when `pooled`.
fn config(yaml: &str, extra: &str, pooled: bool) -> String {
    assert!(yaml.contains("fallback: primary }"), "{yaml}");
    let yaml = yaml.replace(
        "fallback: primary }",
        &format!("fallback: primary{extra} }}"),
    );
    if !pooled {
        return yaml;
    }
    yaml.replacen(
        "    monitor: {",
        "    pool: { mode: transaction, size: 4 }\n    monitor: {",
        1,
    )
}

fn mode(pooled: bool) -> &'static str {
    if pooled {
        "transaction pooling"
    } else {
        "session pooling"
    }
}

async fn pg(port: u16, options: Option<&str>) -> Client {
    let mut s = pg_conn_str(port, APP_USER, APP_PASSWORD, "app");
    if let Some(o) = options {
        s.push_str(&format!(" options='{o}'"));
    }
    let (c, conn) = tokio_postgres::connect(&s, NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

/// Stale reads and reads served by replicas in a run of pairs.
#[derive(Debug, Default)]
struct Tally {
    stale: usize,
    on_replica: usize,
}

/// (rows with this note, read on a replica?)
async fn pg_read(c: &Client, note: &str, extended: bool) -> (i64, bool) {
    let sql = "SELECT count(*), pg_is_in_recovery() FROM notes WHERE note = $1";
    if extended {
        let row = c.query_one(sql, &[&note]).await.unwrap();
        return (row.get(0), row.get(1));
    }
    let r = support::simple_first_row(c, &sql.replace("$1", &format!("'{note}'"))).await;
    (
        r[0].as_deref().unwrap().parse().unwrap(),
        r[1].as_deref() == Some("t"),
    )
}

async fn pg_insert(c: &Client, note: &str, extended: bool) {
    if extended {
        c.execute("INSERT INTO notes (note) VALUES ($1)", &[&note])
            .await
            .unwrap();
    } else {
        c.simple_query(&format!("INSERT INTO notes (note) VALUES ('{note}')"))
            .await
            .unwrap();
    }
}

/// `PAIRS` times: `writer` inserts a row, `reader` (the same session or another) reads it back.
async fn pg_pairs(writer: &Client, reader: &Client, tag: &str, extended: bool) -> Tally {
    let mut t = Tally::default();
    for i in 0..PAIRS {
        let note = format!("{tag}-{i}");
        pg_insert(writer, &note, extended).await;
        let (n, replica) = pg_read(reader, &note, extended).await;
        t.stale += usize::from(n == 0);
        t.on_replica += usize::from(replica);
    }
    eprintln!(
        "{tag}: {}/{PAIRS} stale, {}/{PAIRS} reads on replicas",
        t.stale, t.on_replica
    );
    t
}

/// Read-your-writes (`wait` = with `causal_wait`) and global through a proxy: 0 stale reads.
/// (Without `causal_wait` the reads mostly go to the primary; one may still go to a replica when
/// a monitor round lands between a write and its read-back and sees a replica with the write.)
async fn pg_no_stale_reads(port: u16, label: &str, wait: bool) {
    for extended in [false, true] {
        let tag = format!("{label} extended={extended}");
        let c = pg(port, None).await;
        let t = pg_pairs(&c, &c, &format!("ryw {tag}"), extended).await;
        assert_eq!(t.stale, 0, "read_your_writes, {tag}: {t:?}");
        if wait {
            assert!(t.on_replica > PAIRS / 2, "{tag}: waits reach replicas");
        }
        let reader = pg(port, Some("-c switchyard.consistency=global")).await;
        let t = pg_pairs(&c, &reader, &format!("global {tag}"), extended).await;
        assert_eq!(t.stale, 0, "global, {tag}: {t:?}");
    }
}

/// Reads that may use replicas do: under `eventual` (then stale), with no prior write, and after
/// a write once the monitor has seen a replica replay it.
async fn pg_replicas_still_serve(port: u16, label: &str) {
    let c = pg(port, Some("-c switchyard.consistency=eventual")).await;
    let t = pg_pairs(&c, &c, &format!("eventual {label}"), false).await;
    assert!(t.stale > 0, "eventual must read stale rows here: {t:?}");
    let c = pg(port, None).await;
    let mut on_replica = 0;
    for _ in 0..10 {
        on_replica += usize::from(pg_read(&c, "none", false).await.1);
    }
    assert_eq!(on_replica, 10, "reads with no prior write, {label}");
    let note = format!("later {label}");
    pg_insert(&c, &note, false).await;
    assert_eq!(pg_read(&c, &note, false).await, (1, false));
    // Monitor rounds every 200 ms: it reads the primary's position, then the replicas'.
    let mut back = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (n, replica) = pg_read(&c, &note, false).await;
        assert_eq!(n, 1, "{label}: a replica without the session's write");
        if replica {
            back = true;
            break;
        }
    }
    assert!(back, "{label}: reads did not return to the replicas");
}

fn set_system(cluster: &PgCluster, setting: &str) {
    let p = cluster.primary_port();
    cluster.psql(p, "postgres", &format!("ALTER SYSTEM SET {setting}"));
    cluster.psql(p, "postgres", "SELECT pg_reload_conf()");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_your_writes_under_asynchronous_commit() {
    let cluster = PgCluster::start();
    let primary = cluster.primary_port();
    // Asynchronous commit for every session, as in postgresql.conf; a short WAL writer delay
    // keeps the `causal_wait` cases (which wait for the flush) quick.
    set_system(&cluster, "synchronous_commit = off");
    set_system(&cluster, "wal_writer_delay = '20ms'");
    cluster.psql(
        primary,
        "app",
        "CREATE TABLE notes (id serial, note text); CREATE INDEX ON notes (note); \
         GRANT ALL ON notes, notes_id_seq TO app",
    );
    assert_eq!(
        cluster.psql(primary, "app", "SHOW synchronous_commit"),
        "off"
    );
    cluster.wait_replicas_caught_up();
    for pooled in [false, true] {
        let (yaml, ports) = Proxy::pg_config(&cluster);
        let proxy = Proxy::start(&config(&yaml, "", pooled));
        proxy.wait_topology(3);
        let label = format!("conf off, {}", mode(pooled));
        pg_no_stale_reads(ports.listen, &label, false).await;
        pg_replicas_still_serve(ports.listen, &label).await;
        let m = proxy.metrics();
        assert!(m.contains("reason=\"causal_fallback\""), "{m}");
        assert!(
            !m.contains("result=\"caught_up\""),
            "no waits by default: {m}"
        );
    }

    // Waiting for a replica instead (causal_wait): the position it waits for must cover the
    // asynchronous commit.
    for pooled in [false, true] {
        let (yaml, ports) = Proxy::pg_config(&cluster);
        let proxy = Proxy::start(&config(&yaml, ", causal_wait: true", pooled));
        proxy.wait_topology(3);
        let label = format!("conf off, causal_wait, {}", mode(pooled));
        pg_no_stale_reads(ports.listen, &label, true).await;
        let m = proxy.metrics();
        assert!(m.contains("result=\"caught_up\""), "{m}");
    }

    // Per session: the server commits synchronously, the session sets each level itself.
    set_system(&cluster, "synchronous_commit = on");
    for (level, sync_standby) in [
        ("off", false),
        ("local", false),
        ("on", false),
        ("remote_apply", true),
    ] {
        if sync_standby {
            cluster.set_synchronous();
        }
        for pooled in [false, true] {
            for wait in [false, true] {
                let (yaml, ports) = Proxy::pg_config(&cluster);
                let extra = if wait { ", causal_wait: true" } else { "" };
                let proxy = Proxy::start(&config(&yaml, extra, pooled));
                proxy.wait_topology(3);
                let set = format!("-c synchronous_commit={level}");
                let c = pg(ports.listen, Some(&set)).await;
                let tag = format!("session {level}, wait={wait}, {}", mode(pooled));
                let shown = support::simple_first_row(&c, "SHOW synchronous_commit").await;
                assert_eq!(shown[0].as_deref(), Some(level), "{tag}");
                for extended in [false, true] {
                    let t = pg_pairs(&c, &c, &format!("{tag} extended={extended}"), extended).await;
                    assert_eq!(t.stale, 0, "{tag} extended={extended}: {t:?}");
                }
            }
        }
    }
}

/// (rows with this note, read on a replica?)
async fn my_read(
    c: &mut mysql_async::Conn,
    note: &str,
    binary: bool,
    replicas: [u16; 2],
) -> (u64, bool) {
    let sql = "SELECT COUNT(*), @@port FROM notes WHERE note = ?";
    let r: Option<(u64, u16)> = if binary {
        c.exec_first(sql, (note,)).await.unwrap()
    } else {
        c.query_first(sql.replace('?', &format!("'{note}'")))
            .await
            .unwrap()
    };
    let (n, port) = r.unwrap();
    (n, replicas.contains(&port))
}

async fn my_pairs(c: &mut mysql_async::Conn, tag: &str, binary: bool, replicas: [u16; 2]) -> Tally {
    let mut t = Tally::default();
    for i in 0..PAIRS {
        let note = format!("{tag}-{i}");
        if binary {
            c.exec_drop("INSERT INTO notes (note) VALUES (?)", (&note,))
                .await
                .unwrap();
        } else {
            c.query_drop(format!("INSERT INTO notes (note) VALUES ('{note}')"))
                .await
                .unwrap();
        }
        let (n, replica) = my_read(c, &note, binary, replicas).await;
        t.stale += usize::from(n == 0);
        t.on_replica += usize::from(replica);
    }
    eprintln!(
        "{tag}: {}/{PAIRS} stale, {}/{PAIRS} reads on replicas",
        t.stale, t.on_replica
    );
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_read_your_writes_reads_the_primary_until_a_replica_has_the_write() {
    let cluster = MariaDbCluster::start();
    cluster.sql(
        cluster.primary_port(),
        "CREATE TABLE app.notes (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(80), KEY (note))",
    );
    cluster.wait_replicas_caught_up();
    let replicas = cluster.replica_ports();
    for pooled in [false, true] {
        for wait in [false, true] {
            let (yaml, ports) = Proxy::mysql_config(&cluster);
            let extra = if wait { ", causal_wait: true" } else { "" };
            let proxy = Proxy::start(&config(&yaml, extra, pooled));
            proxy.wait_topology(3);
            let label = format!("mariadb wait={wait}, {}", mode(pooled));
            let mut c = mysql_async::Conn::new(support::my_app_opts(ports.listen))
                .await
                .unwrap();
            for binary in [false, true] {
                let tag = format!("{label} binary={binary}");
                let t = my_pairs(&mut c, &tag, binary, replicas).await;
                assert_eq!(t.stale, 0, "{tag}: {t:?}");
            }
            // Back on the replicas once the monitor saw one with the session's GTID.
            let mut back = false;
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let note = format!("{label} binary=true-{}", PAIRS - 1);
                let (n, replica) = my_read(&mut c, &note, false, replicas).await;
                assert_eq!(n, 1, "{label}: a replica without the session's write");
                if replica {
                    back = true;
                    break;
                }
            }
            assert!(back, "{label}: reads did not return to the replicas");
            c.query_drop("SET @switchyard_consistency = 'eventual'")
                .await
                .unwrap();
            let t = my_pairs(&mut c, &format!("{label} eventual"), false, replicas).await;
            assert!(t.on_replica > 0, "{label}: eventual reads reach replicas");
            c.disconnect().await.unwrap();
            drop(proxy);
        }
    }
}
