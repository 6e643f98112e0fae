//! End-to-end: read-your-writes and global (cross-connection) consistency with replicas that apply
//! changes late (PostgreSQL `recovery_min_apply_delay`, MariaDB `MASTER_DELAY`), both protocols.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use support::mysql_cluster::MariaDbCluster;
use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{pg_conn_str, PgCluster, Proxy};
use tokio_postgres::{NoTls, SimpleQueryMessage};

async fn pg(port: u16, options: Option<&str>) -> tokio_postgres::Client {
    let mut s = pg_conn_str(port, APP_USER, APP_PASSWORD, "app");
    if let Some(o) = options {
        s.push_str(&format!(" options='{o}'"));
    }
    let (c, conn) = tokio_postgres::connect(&s, NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

async fn pg_count(c: &tokio_postgres::Client, note: &str) -> i64 {
    let rows = c
        .simple_query(&format!("SELECT count(*) FROM notes WHERE note = '{note}'"))
        .await
        .unwrap();
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_your_writes_and_global_with_delayed_replicas() {
    let cluster = PgCluster::start();
    cluster.psql(
        cluster.primary_port(),
        "app",
        "CREATE TABLE notes (id serial, note text); GRANT ALL ON notes, notes_id_seq TO app",
    );
    cluster.wait_replicas_caught_up();
    for (i, port) in cluster.replica_ports().into_iter().enumerate() {
        let conf = cluster
            .data_dir(&format!("replica{}", i + 1))
            .join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
        text.push_str("\nrecovery_min_apply_delay = '3s'\n");
        std::fs::write(&conf, text).unwrap();
        cluster.psql(port, "postgres", "SELECT pg_reload_conf()");
    }
    let (proxy, ports) = Proxy::start_for(&cluster);
    std::thread::sleep(Duration::from_millis(500));

    // Default consistency is read_your_writes: the writer sees its row at once.
    let writer = pg(ports.listen, None).await;
    for i in 0..5 {
        let note = format!("ryw{i}");
        writer
            .simple_query(&format!("INSERT INTO notes (note) VALUES ('{note}')"))
            .await
            .unwrap();
        assert_eq!(
            pg_count(&writer, &note).await,
            1,
            "read-your-writes missed {note}"
        );
    }
    // Another connection with eventual consistency does not wait: the delayed replicas miss it.
    let eventual = pg(ports.listen, Some("-c switchyard.consistency=eventual")).await;
    writer
        .simple_query("INSERT INTO notes (note) VALUES ('cross')")
        .await
        .unwrap();
    assert_eq!(
        pg_count(&eventual, "cross").await,
        0,
        "replicas are delayed: an eventual read is stale"
    );
    // global: a new connection sees what any connection committed before the read arrived.
    let global = pg(ports.listen, Some("-c switchyard.consistency=global")).await;
    assert_eq!(pg_count(&global, "cross").await, 1);
    // And SET switches a session.
    eventual
        .simple_query("SET switchyard.consistency = global")
        .await
        .unwrap();
    writer
        .simple_query("INSERT INTO notes (note) VALUES ('cross2')")
        .await
        .unwrap();
    assert_eq!(pg_count(&eventual, "cross2").await, 1);

    // Without delay the waits are short and reads stay on replicas.
    for (i, port) in cluster.replica_ports().into_iter().enumerate() {
        let conf = cluster
            .data_dir(&format!("replica{}", i + 1))
            .join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&conf)
            .unwrap()
            .replace("recovery_min_apply_delay = '3s'", "");
        std::fs::write(&conf, text).unwrap();
        cluster.psql(port, "postgres", "SELECT pg_reload_conf()");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let started = Instant::now();
    let mut on_replica = 0;
    for i in 0..20 {
        let note = format!("fast{i}");
        writer
            .simple_query(&format!("INSERT INTO notes (note) VALUES ('{note}')"))
            .await
            .unwrap();
        let rows = writer
            .simple_query(&format!(
                "SELECT count(*), pg_is_in_recovery() FROM notes WHERE note = '{note}'"
            ))
            .await
            .unwrap();
        let SimpleQueryMessage::Row(r) = rows
            .iter()
            .find(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .unwrap()
        else {
            unreachable!()
        };
        assert_eq!(r.get(0), Some("1"));
        if r.get(1) == Some("t") {
            on_replica += 1;
        }
    }
    eprintln!(
        "20 write+read pairs in {:?}, {on_replica} reads on replicas",
        started.elapsed()
    );
    assert!(
        on_replica > 0,
        "with replicas caught up, reads should use them"
    );
    let m = proxy.metrics();
    assert!(
        m.contains("switchyard_causal_waits_total{cluster=\"main\",result=\"caught_up\"}"),
        "{m}"
    );
    assert!(m.contains("reason=\"causal_fallback\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_read_your_writes_and_global_with_delayed_replicas() {
    let cluster = MariaDbCluster::start();
    cluster.sql(
        cluster.primary_port(),
        "CREATE TABLE app.notes (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(50))",
    );
    cluster.wait_replicas_caught_up();
    for port in cluster.replica_ports() {
        cluster.sql(
            port,
            "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE",
        );
    }
    let (proxy, ports) = Proxy::start_for_mysql(&cluster);
    std::thread::sleep(Duration::from_millis(500));
    let opts = |port: u16| -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some("app"))
            .pass(Some("app-secret"))
            .db_name(Some("app"))
            .prefer_socket(false)
            .into()
    };
    let mut writer = mysql_async::Conn::new(opts(ports.listen)).await.unwrap();
    for i in 0..5 {
        let note = format!("ryw{i}");
        writer
            .query_drop(format!("INSERT INTO notes (note) VALUES ('{note}')"))
            .await
            .unwrap();
        let n: Option<u64> = writer
            .query_first(format!("SELECT COUNT(*) FROM notes WHERE note = '{note}'"))
            .await
            .unwrap();
        assert_eq!(n, Some(1), "read-your-writes missed {note}");
    }
    let mut eventual = mysql_async::Conn::new(opts(ports.listen)).await.unwrap();
    eventual
        .query_drop("SET @switchyard_consistency = 'eventual'")
        .await
        .unwrap();
    writer
        .query_drop("INSERT INTO notes (note) VALUES ('cross')")
        .await
        .unwrap();
    let n: Option<u64> = eventual
        .query_first("SELECT COUNT(*) FROM notes WHERE note = 'cross'")
        .await
        .unwrap();
    assert_eq!(
        n,
        Some(0),
        "replicas are delayed: an eventual read is stale"
    );
    let mut global = mysql_async::Conn::new(opts(ports.listen)).await.unwrap();
    global
        .query_drop("SET @switchyard_consistency = 'global'")
        .await
        .unwrap();
    let n: Option<u64> = global
        .query_first("SELECT COUNT(*) FROM notes WHERE note = 'cross'")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    let m = proxy.metrics();
    assert!(m.contains("switchyard_causal_waits_total"), "{m}");
}
