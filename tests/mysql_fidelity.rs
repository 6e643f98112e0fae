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

/// Table `app.<name>` made anew with one row (id, v), on every replica too.
fn fresh_table(name: &str) -> &'static support::MariaDbCluster {
    let cluster = shared_mysql();
    cluster.sql(
        cluster.primary_port(),
        &format!("DROP TABLE IF EXISTS app.{name}; CREATE TABLE app.{name} (id INT AUTO_INCREMENT PRIMARY KEY, v INT); INSERT INTO app.{name} (v) VALUES (0)"),
    );
    cluster.wait_replicas_caught_up();
    cluster
}

/// Server settings changed by a test are global: one such test at a time.
static SERVER_SETTINGS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_read_only_transactions_fail_as_on_the_primary() {
    let _settings = SERVER_SETTINGS.lock().await;
    let cluster = fresh_table("fid_ro");
    let direct = read_only_writes(cluster.primary_port()).await;
    let want = Some((1792u16, "25006".to_string()));
    assert!(direct.iter().all(|d| *d == want), "direct: {direct:?}");
    for mode in ["session", "transaction"] {
        let (_proxy, ports) = start(mode);
        let proxied = read_only_writes(ports.listen).await;
        assert_eq!(proxied, direct, "{mode} pooling");
    }
}

/// What a statement answered: its rows as text, or its error code.
async fn answer(c: &mut Conn, sql: &str) -> String {
    match c.query::<mysql_async::Row, _>(sql).await {
        Ok(rows) => format!(
            "{sql} -> {:?}",
            rows.into_iter()
                .map(|r| r
                    .unwrap()
                    .into_iter()
                    .map(|v| v.as_sql(true))
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()
        ),
        Err(e) => format!("{sql} -> {:?}", code::<()>(Err(e))),
    }
}

/// A session whose statements form one implicit transaction (autocommit off by `setup`, or by
/// the server), run from an emptied table: what each statement answered.
async fn implicit_transaction(port: u16, setup: &str) -> Vec<String> {
    let cluster = shared_mysql();
    cluster.sql(cluster.primary_port(), "DELETE FROM app.fid_ac");
    cluster.wait_replicas_caught_up();
    // Given these, the driver sends no query of its own at connect: the script's first
    // statement is the session's first.
    let opts = OptsBuilder::from_opts(opts(port))
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28800));
    let mut c = Conn::new(opts).await.expect("connect");
    if !setup.is_empty() {
        c.query_drop(setup).await.unwrap();
    }
    let mut got = Vec::new();
    for sql in [
        "SELECT COUNT(*) FROM fid_ac",
        "SAVEPOINT sp0",
        "SELECT @@autocommit",
        "SELECT @@in_transaction",
        "SAVEPOINT sp",
        "INSERT INTO fid_ac (v) VALUES (1)",
        "RELEASE SAVEPOINT sp",
        "SELECT COUNT(*) FROM fid_ac",
        "SELECT @@in_transaction",
        "ROLLBACK",
        "SELECT @@in_transaction",
        "SELECT COUNT(*) FROM fid_ac",
        "SAVEPOINT sp2",
        "INSERT INTO fid_ac (v) VALUES (2)",
        "ROLLBACK TO SAVEPOINT sp2",
        "INSERT INTO fid_ac (v) VALUES (3)",
        "COMMIT",
        "SELECT v FROM fid_ac",
    ] {
        got.push(answer(&mut c, sql).await);
    }
    let ins = c.prep("INSERT INTO fid_ac (v) VALUES (?)").await.unwrap();
    got.push(format!("{:?}", code(c.exec_drop(&ins, (4,)).await)));
    got.push(answer(&mut c, "SELECT @@in_transaction").await);
    got.push(answer(&mut c, "ROLLBACK").await);
    got.push(answer(&mut c, "SELECT v FROM fid_ac").await);
    c.disconnect().await.unwrap();
    got
}

fn set_init_connect(value: &str) {
    let cluster = shared_mysql();
    let [r1, r2] = cluster.replica_ports();
    for port in [cluster.primary_port(), r1, r2] {
        cluster.sql(port, &format!("SET GLOBAL init_connect = '{value}'"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocommit_off_keeps_a_session_in_one_transaction() {
    let _settings = SERVER_SETTINGS.lock().await;
    let cluster = shared_mysql();
    cluster.sql(
        cluster.primary_port(),
        "DROP TABLE IF EXISTS app.fid_ac; CREATE TABLE app.fid_ac (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    );
    // Per session, then for every session by the servers' init_connect (set before the proxy
    // starts, as a server's configuration is).
    for (setup, init) in [("SET autocommit = 0", ""), ("", "SET autocommit=0")] {
        set_init_connect(init);
        let proxies = [start("session"), start("transaction")];
        let direct = implicit_transaction(cluster.primary_port(), setup).await;
        assert!(direct[2].ends_with("'0'\"]]"), "{direct:?}");
        for (mode, (_, ports)) in ["session", "transaction"].iter().zip(&proxies) {
            let proxied = implicit_transaction(ports.listen, setup).await;
            set_init_connect("");
            assert_eq!(
                proxied, direct,
                "{mode} pooling, setup {setup:?}, init_connect {init:?}"
            );
            set_init_connect(init);
        }
    }
    set_init_connect("");
}

/// The version string in a server greeting (HandshakeV10) read from `port`.
fn greeting_version(port: u16) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    assert_eq!(body[0], 10, "protocol version");
    let end = body[1..].iter().position(|&b| b == 0).unwrap() + 1;
    String::from_utf8(body[1..end].to_vec()).unwrap()
}

/// Clients are told the servers' version (with MariaDB's `5.5.5-` prefix, as the server itself
/// sends it) and that a proxy answers, once a server connection of the cluster has logged in;
/// before that, a MariaDB-form default.
#[tokio::test]
async fn greeting_carries_the_servers_version() {
    let cluster = shared_mysql();
    let direct = greeting_version(cluster.primary_port());
    assert!(direct.starts_with("5.5.5-10."), "{direct}");
    for mode in ["session", "transaction"] {
        let (_proxy, ports) = start(mode);
        let first = greeting_version(ports.listen);
        assert!(first.starts_with("5.5.5-"), "{mode}: {first}");
        let mut c = connect(ports.listen).await;
        let _: Option<u8> = c.query_first("SELECT 1").await.unwrap();
        c.disconnect().await.unwrap();
        assert_eq!(
            greeting_version(ports.listen),
            format!("{direct}-switchyard"),
            "{mode}"
        );
    }
}

/// Whether a session that sets `wait_timeout = 1` is still there after `pause` of idleness (and
/// one that stays busy meanwhile always is).
async fn survives_idle(port: u16, pause: std::time::Duration) -> bool {
    let mut c = connect(port).await;
    c.query_drop("SET SESSION sql_mode = '', wait_timeout = 1")
        .await
        .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let one: Option<u8> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1), "a busy session must stay");
    }
    tokio::time::sleep(pause).await;
    let r: Result<Option<u8>, _> = c.query_first("SELECT 1").await;
    match r {
        Ok(_) => true,
        Err(mysql_async::Error::Server(e)) => {
            panic!("a server error instead of a closed session: {e}")
        }
        Err(_) => false,
    }
}

/// `SET wait_timeout`: idle past it, the session ends as the server ends it (PyMySQL's
/// test_connection_gone_away); the proxy must not carry on with another server connection.
#[tokio::test]
async fn wait_timeout_ends_an_idle_session() {
    let cluster = shared_mysql();
    let long = std::time::Duration::from_millis(2500);
    assert!(
        !survives_idle(cluster.primary_port(), long).await,
        "directly"
    );
    for mode in ["session", "transaction"] {
        let (_proxy, ports) = start(mode);
        assert!(!survives_idle(ports.listen, long).await, "{mode}: survived");
        let short = std::time::Duration::from_millis(300);
        assert!(
            survives_idle(ports.listen, short).await,
            "{mode}: closed early"
        );
    }
}

/// Statements that change state inside `START TRANSACTION READ ONLY` (which runs on a replica):
/// temporary tables (MariaDB refuses them there), a prepared statement, a refused write, and
/// writes after the transaction. What each answered.
async fn state_in_read_only_transactions(port: u16) -> Vec<String> {
    eventual_answers(
        port,
        &[
            // The replica binlogged this transaction as its own (its SAVEPOINTs and ROLLBACK).
            "START TRANSACTION READ ONLY",
            "SELECT COUNT(*) > 0 FROM fid_ro_state",
            "SAVEPOINT sp",
            "DROP TEMPORARY TABLE IF EXISTS no_such_tmp",
            "SHOW WARNINGS",
            "SAVEPOINT sp",
            "ROLLBACK TO SAVEPOINT sp",
            "ROLLBACK",
            // A temporary table made in a read-only transaction would pin the session (MariaDB 10.11
            // refuses it: 1792).
            "START TRANSACTION READ ONLY",
            "SELECT COUNT(*) > 0 FROM fid_ro_state",
            "CREATE TEMPORARY TABLE ro_tmp (id INT)",
            "INSERT INTO ro_tmp VALUES (1), (2)",
            "COMMIT",
            "INSERT INTO fid_ro_state (v) VALUES (1)",
            "SELECT COUNT(*) FROM ro_tmp",
            // A statement prepared in one pinned the session to the replica (later writes: 1290).
            "START TRANSACTION READ ONLY",
            "SELECT COUNT(*) > 0 FROM fid_ro_state",
            "PREPARE ps FROM 'SELECT 1'",
            "COMMIT",
            "INSERT INTO fid_ro_state (v) VALUES (3)",
            "EXECUTE ps",
            // Pinned there, a transaction that dropped a temporary table was binlogged by the
            // replica as its own (its SAVEPOINT and ROLLBACK), and its replication stopped (1950).
            "CREATE TEMPORARY TABLE ro_tmp2 (id INT)",
            "START TRANSACTION",
            "SAVEPOINT sp",
            "INSERT INTO ro_tmp2 VALUES (1)",
            "DROP TEMPORARY TABLE IF EXISTS no_such_tmp",
            "ROLLBACK",
            "DROP TEMPORARY TABLE ro_tmp2",
            // A refused write: the primary's error and warnings.
            "START TRANSACTION READ ONLY",
            "SELECT COUNT(*) > 0 FROM fid_ro_state",
            "UPDATE fid_ro_state SET v = v + 1",
            "SHOW WARNINGS",
            "ROLLBACK",
            "DROP TEMPORARY TABLE ro_tmp",
            "INSERT INTO fid_ro_state (v) VALUES (2)",
        ],
    )
    .await
}

/// What each of `sqls` answered in one session whose reads may go to any replica
/// (`eventual`).
async fn eventual_answers(port: u16, sqls: &[&str]) -> Vec<String> {
    let mut c = connect(port).await;
    c.query_drop("SET @switchyard_consistency = 'eventual'")
        .await
        .unwrap();
    let mut got = Vec::new();
    for sql in sqls {
        got.push(answer(&mut c, sql).await);
    }
    c.disconnect().await.unwrap();
    got
}

/// Transactions in a replica's binlog that the replica made itself (server id not 1): a
/// replica must only ever apply the primary's.
fn own_gtids() -> Vec<String> {
    let cluster = shared_mysql();
    cluster
        .replica_ports()
        .iter()
        .flat_map(|&port| {
            let pos = cluster.sql(port, "SELECT @@gtid_binlog_pos");
            pos.split(',')
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty() && g.split('-').nth(1) != Some("1"))
                .map(|g| format!("port {port}: {g}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_change_no_state_on_a_replica() {
    let _settings = SERVER_SETTINGS.lock().await;
    let cluster = fresh_table("fid_ro_state");
    let direct = state_in_read_only_transactions(cluster.primary_port()).await;
    assert!(
        direct[30].contains("1792") && direct[31].contains("1792"),
        "{direct:?}"
    );
    for mode in ["session", "transaction"] {
        let (_proxy, ports) = start(mode);
        let proxied = state_in_read_only_transactions(ports.listen).await;
        let own = own_gtids();
        assert!(
            own.is_empty(),
            "{mode} pooling: replicas binlogged transactions of their own: {own:?}"
        );
        assert_eq!(proxied, direct, "{mode} pooling");
    }
    cluster.wait_replicas_caught_up();
}

/// Two sessions one after the other on a pool of one connection per server: the second one's
/// settings differ, so its pooled connection is reset first. What the second one sees.
async fn after_a_reset(port: u16) -> Vec<String> {
    let mut a = connect(port).await;
    for sql in ["SET time_zone = '+01:00'", "SELECT COUNT(*) FROM fid_reset"] {
        a.query_drop(sql).await.unwrap();
    }
    a.query_drop("COMMIT").await.unwrap();
    a.disconnect().await.unwrap();
    let mut b = connect(port).await;
    let mut got = Vec::new();
    for sql in [
        "SET sql_mode = 'ANSI'",
        "SELECT @@autocommit",
        "INSERT INTO fid_reset (v) VALUES (1)",
        "SELECT @@in_transaction",
        "ROLLBACK",
        "SELECT COUNT(*) FROM fid_reset",
    ] {
        got.push(answer(&mut b, sql).await);
    }
    b.disconnect().await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_reset_keeps_the_servers_autocommit_off() {
    let _settings = SERVER_SETTINGS.lock().await;
    let cluster = fresh_table("fid_reset");
    set_init_connect("SET autocommit=0");
    let (yaml, ports) = Proxy::mysql_config(cluster);
    let yaml = yaml.replace(
        "    monitor: {",
        "    pool: { mode: transaction, size: 1, checkout_timeout: 30s }\n    monitor: {",
    );
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    let direct = after_a_reset(cluster.primary_port()).await;
    let proxied = after_a_reset(ports.listen).await;
    set_init_connect("");
    assert!(direct[1].ends_with("'0'\"]]"), "{direct:?}");
    assert_eq!(proxied, direct);
}

/// `FOUND_ROWS()` after a write counts the session's last SELECT (which ran on a replica).
async fn found_rows_after_a_write(port: u16) -> Vec<String> {
    let got = eventual_answers(
        port,
        &[
            "SELECT v FROM fid_found ORDER BY id",
            "INSERT INTO fid_found (v) VALUES (7)",
            "SELECT FOUND_ROWS()",
            "SELECT SQL_CALC_FOUND_ROWS v FROM fid_found ORDER BY id LIMIT 1",
            "UPDATE fid_found SET v = v + 1 WHERE v = 7",
            "SELECT FOUND_ROWS()",
            "SELECT FOUND_ROWS()",
        ],
    )
    .await;
    let cluster = shared_mysql();
    cluster.sql(
        cluster.primary_port(),
        "DELETE FROM app.fid_found WHERE v > 1",
    );
    cluster.wait_replicas_caught_up();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_rows_counts_the_last_select_in_session_pooling() {
    let cluster = fresh_table("fid_found");
    cluster.sql(
        cluster.primary_port(),
        "INSERT INTO app.fid_found (v) VALUES (1), (1)",
    );
    cluster.wait_replicas_caught_up();
    let direct = found_rows_after_a_write(cluster.primary_port()).await;
    assert!(direct[2].ends_with("'3'\"]]"), "{direct:?}");
    let (_proxy, ports) = start("session");
    cluster.wait_replicas_caught_up();
    let proxied = found_rows_after_a_write(ports.listen).await;
    assert_eq!(proxied, direct);
}

/// The warnings of a SELECT (its result set ends with an OK packet under CLIENT_DEPRECATE_EOF,
/// which mysql_async asks for) are still there for the next statement in transaction pooling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_of_a_select_are_read_in_transaction_pooling() {
    let cluster = shared_mysql();
    let sqls = [
        "SELECT 'a' || 'b'",
        "SHOW WARNINGS",
        "SELECT 1/0",
        "SHOW WARNINGS",
        "SELECT CAST('abc' AS SIGNED)",
        "SELECT @@warning_count",
        "SELECT 1/0",
        "SHOW COUNT(*) WARNINGS",
    ];
    let direct = eventual_answers(cluster.primary_port(), &sqls).await;
    assert!(direct[3].contains("1365"), "{direct:?}");
    for mode in ["session", "transaction"] {
        let (_proxy, ports) = start(mode);
        let proxied = eventual_answers(ports.listen, &sqls).await;
        assert_eq!(proxied, direct, "{mode} pooling");
    }
}

/// `SET autocommit = 1` commits an open transaction, but MariaDB applies that transaction's
/// READ ONLY to the statement right after it on the connection. The session's own next
/// statement must see what it sees directly, and a pooled connection must not hand it to
/// another session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_implicit_commit_leaves_nothing_behind() {
    fresh_table("fid_implicit");
    let quirk = [
        "SET autocommit = 0",
        "START TRANSACTION READ ONLY",
        "SELECT v FROM fid_implicit WHERE id = 1",
        "SET autocommit = 1",
        "INSERT INTO fid_implicit (v) VALUES (1)",
    ];
    let consumed = [
        "SET autocommit = 0",
        "START TRANSACTION READ ONLY",
        "SELECT v FROM fid_implicit WHERE id = 1",
        "SET autocommit = 1",
        "SELECT v FROM fid_implicit WHERE id = 1",
        "INSERT INTO fid_implicit (v) VALUES (2)",
    ];
    let cluster = shared_mysql();
    let direct_quirk = eventual_answers(cluster.primary_port(), &quirk).await;
    let direct_consumed = eventual_answers(cluster.primary_port(), &consumed).await;
    eprintln!("directly: {direct_quirk:?} / {direct_consumed:?}");
    for mode in ["session", "transaction"] {
        let (_proxy, ports) = start(mode);
        assert_eq!(
            eventual_answers(ports.listen, &consumed).await,
            direct_consumed,
            "{mode} pooling: a read in between"
        );
        assert_eq!(
            eventual_answers(ports.listen, &quirk).await,
            direct_quirk,
            "{mode} pooling: the next statement"
        );
        // Other sessions on the pool: their first statement is a plain write.
        for _ in 0..4 {
            let got =
                eventual_answers(ports.listen, &["INSERT INTO fid_implicit (v) VALUES (3)"]).await;
            assert!(!got[0].contains("1792"), "{mode} pooling: {got:?}");
        }
    }
}
