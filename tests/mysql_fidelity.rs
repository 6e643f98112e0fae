//! Fidelity on MariaDB (issue 21): through the proxy a client gets the answer the primary gives
//! directly (error codes and SQLSTATEs of writes in read-only transactions, sessions whose
//! autocommit is off), in both pooling modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};
use support::mysql_cluster::shared_mysql;
use support::{Proxy, ProxyPorts};

fn start(mode: &str) -> (Proxy, ProxyPorts) {
    let (yaml, ports) = Proxy::mysql_config(shared_mysql());
    let yaml = yaml.replace(
        "    monitor: {",
        &format!("    pool: {{ mode: {mode}, size: 4, checkout_timeout: 30s }}\n    monitor: {{"),
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    (proxy, ports)
}

fn opts(port: u16) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app-secret"))
        .db_name(Some("app"))
        .prefer_socket(false)
        .into()
}

async fn connect(port: u16) -> Conn {
    Conn::new(opts(port)).await.expect("connect")
}

/// `(errno, SQLSTATE)` of a failed statement, or `None` when it succeeded.
fn code<T>(r: Result<T, mysql_async::Error>) -> Option<(u16, String)> {
    match r {
        Ok(_) => None,
        Err(mysql_async::Error::Server(e)) => Some((e.code, e.state)),
        Err(e) => panic!("not a server error: {e}"),
    }
}

/// A write in `START TRANSACTION READ ONLY`, as text and prepared (prepared before the
/// transaction, and a prepare inside it): the errors the session gets.
async fn read_only_writes(port: u16) -> Vec<Option<(u16, String)>> {
    let mut c = connect(port).await;
    // The session's writes do not keep its reads on the primary (a user variable directly).
    c.query_drop("SET @switchyard_consistency = 'eventual'")
        .await
        .unwrap();
    let insert = "INSERT INTO fid_ro (v) VALUES (?)";
    let before = c.prep(insert).await.expect("prepare");
    let mut got = Vec::new();
    for round in 0..4 {
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let _: Vec<i64> = c.query("SELECT v FROM fid_ro").await.unwrap();
        got.push(code(
            c.query_drop("INSERT INTO fid_ro (v) VALUES (1)").await,
        ));
        got.push(code(c.exec_drop(&before, (round,)).await));
        // Preparing a write is refused in a read-only transaction too.
        got.push(code(c.prep("UPDATE fid_ro SET v = v + 1").await));
        c.query_drop("COMMIT").await.unwrap();
    }
    c.disconnect().await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_read_only_transactions_fail_as_on_the_primary() {
    let cluster = shared_mysql();
    cluster.sql(
        cluster.primary_port(),
        "DROP TABLE IF EXISTS app.fid_ro; CREATE TABLE app.fid_ro (id INT AUTO_INCREMENT PRIMARY KEY, v INT); INSERT INTO app.fid_ro (v) VALUES (0)",
    );
    cluster.wait_replicas_caught_up();
    let direct = read_only_writes(cluster.primary_port()).await;
    let want = Some((1792u16, "25006".to_string()));
    assert!(direct.iter().all(|d| *d == want), "direct: {direct:?}");
    for mode in ["session", "transaction"] {
        let (_proxy, ports) = start(mode);
        let proxied = read_only_writes(ports.listen).await;
        assert_eq!(proxied, direct, "{mode} pooling");
    }
}
