//! End-to-end: MySQL clients through the proxy against a real MariaDB primary + 2 GTID replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};
use support::mysql_cluster::{shared_mysql, MariaDbCluster};
use support::{Proxy, ProxyPorts};

fn proxy() -> &'static (Proxy, ProxyPorts) {
    static P: OnceLock<(Proxy, ProxyPorts)> = OnceLock::new();
    P.get_or_init(|| {
        let c = shared_mysql();
        c.sql(
            c.primary_port(),
            "CREATE TABLE IF NOT EXISTS app.items (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(100)) ENGINE=InnoDB",
        );
        c.wait_replicas_caught_up();
        // `admin` maps to the servers' root account: unknown databases then answer 1049
        // (the `app` account only sees `app`, so MariaDB answers 1044 for it).
        let (yaml, ports) = Proxy::mysql_config(c);
        // Reads right after a write are expected on replicas here: they wait for one to catch up.
        let yaml = yaml.replace("fallback: primary }", "fallback: primary, causal_wait: true }");
        let yaml = format!(
            "{yaml}  - {{ name: admin, password: admin-secret, backend_user: root, backend_password: \"{}\" }}\n",
            support::mysql_cluster::MYSQL_ROOT_PASSWORD
        );
        let p = (Proxy::start(&yaml), ports);
        p.0.wait_topology(3);
        p
    })
}

fn opts(port: u16, user: &str, password: &str, db: Option<&str>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(db)
        .prefer_socket(false)
        .into()
}

async fn connect(port: u16) -> Conn {
    Conn::new(opts(port, "app", "app-secret", Some("app")))
        .await
        .expect("connect through proxy")
}

async fn where_am_i(c: &mut Conn) -> (u16, bool) {
    let row: Option<(u16, u8)> = c.query_first("SELECT @@port, @@read_only").await.unwrap();
    let (p, ro) = row.unwrap();
    (p, ro == 1)
}

fn cluster() -> &'static MariaDbCluster {
    shared_mysql()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_and_writes_hit_the_primary() {
    let (_, ports) = proxy();
    let mut c = connect(ports.listen).await;
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        let (port, ro) = where_am_i(&mut c).await;
        assert!(ro, "read landed on the primary ({port})");
        seen.insert(port);
    }
    let replicas: BTreeSet<u16> = cluster().replica_ports().into_iter().collect();
    assert_eq!(seen, replicas);
    c.query_drop("INSERT INTO items (note) VALUES ('spread')")
        .await
        .unwrap();
    let id: Option<u64> = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert!(
        id.unwrap() > 0,
        "LAST_INSERT_ID must be read on the primary"
    );
    cluster().wait_replicas_caught_up();
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM items WHERE note = 'spread'")
        .await
        .unwrap();
    assert!(n.unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_autocommit_locking_and_temp_tables() {
    let (_, ports) = proxy();
    let primary = cluster().primary_port();
    let mut c = connect(ports.listen).await;
    c.query_drop("START TRANSACTION").await.unwrap();
    assert_eq!(where_am_i(&mut c).await.0, primary);
    c.query_drop("INSERT INTO items (note) VALUES ('txn')")
        .await
        .unwrap();
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM items WHERE note = 'txn'")
        .await
        .unwrap();
    assert!(n.unwrap() >= 1);
    assert_eq!(where_am_i(&mut c).await.0, primary);
    c.query_drop("COMMIT").await.unwrap();

    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let (p1, ro) = where_am_i(&mut c).await;
    let (p2, _) = where_am_i(&mut c).await;
    c.query_drop("COMMIT").await.unwrap();
    assert!(ro);
    assert_eq!(p1, p2);

    let p: Option<u16> = c
        .query_first("SELECT @@port FROM items LIMIT 1 FOR UPDATE")
        .await
        .unwrap();
    assert_eq!(p.unwrap(), primary);
    let p: Option<u16> = c
        .query_first("SELECT @@port FROM items LIMIT 1 LOCK IN SHARE MODE")
        .await
        .unwrap();
    assert_eq!(p.unwrap(), primary);

    // autocommit=0: everything on the primary, until autocommit=1 again.
    c.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(where_am_i(&mut c).await.0, primary);
    c.query_drop("INSERT INTO items (note) VALUES ('ac0')")
        .await
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(where_am_i(&mut c).await.0, primary);
    c.query_drop("SET autocommit = 1").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let mut replica_seen = false;
    for _ in 0..4 {
        replica_seen |= where_am_i(&mut c).await.1;
    }
    assert!(
        replica_seen,
        "reads should return to replicas after autocommit=1"
    );

    // Temporary tables pin the session to the primary.
    let mut t = connect(ports.listen).await;
    t.query_drop("CREATE TEMPORARY TABLE scratch (v INT)")
        .await
        .unwrap();
    t.query_drop("INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    for _ in 0..4 {
        let n: Option<u64> = t.query_first("SELECT COUNT(*) FROM scratch").await.unwrap();
        assert_eq!(n, Some(1));
        assert_eq!(where_am_i(&mut t).await.0, primary);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_binary_protocol_move_between_replicas() {
    let (_, ports) = proxy();
    let mut c = connect(ports.listen).await;
    let stmt = c.prep("SELECT @@port, @@read_only, ? + 1").await.unwrap();
    let mut seen = BTreeSet::new();
    for i in 0..10i64 {
        let row: Option<(u16, u8, i64)> = c.exec_first(&stmt, (i,)).await.unwrap();
        let (port, ro, v) = row.unwrap();
        assert_eq!(ro, 1);
        assert_eq!(v, i + 1);
        seen.insert(port);
    }
    assert_eq!(
        seen.len(),
        2,
        "the prepared statement should run on both replicas"
    );
    let ins = c.prep("INSERT INTO items (note) VALUES (?)").await.unwrap();
    c.exec_drop(&ins, ("prep",)).await.unwrap();
    assert!(c.last_insert_id().unwrap_or(0) > 0);
    c.close(stmt).await.unwrap();
    // Session settings travel with the session.
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    c.query_drop("SET @greeting = 'hi'").await.unwrap();
    for _ in 0..4 {
        let row: Option<(String, String)> =
            c.query_first("SELECT @@sql_mode, @greeting").await.unwrap();
        assert_eq!(row.unwrap(), ("ANSI_QUOTES".to_string(), "hi".to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_get_mysql_errors() {
    let (proxy, ports) = proxy();
    let e = Conn::new(opts(ports.listen, "app", "wrong", Some("app")))
        .await
        .err()
        .unwrap();
    assert!(format!("{e}").contains("1045"), "{e}");
    let e = Conn::new(opts(ports.listen, "nobody", "x", Some("app")))
        .await
        .err()
        .unwrap();
    assert!(format!("{e}").contains("1045"), "{e}");
    let e = Conn::new(opts(
        ports.listen,
        "admin",
        "admin-secret",
        Some("no_such_db"),
    ))
    .await
    .err()
    .unwrap();
    assert!(format!("{e}").contains("1049"), "{e}");
    let e = Conn::new(opts(ports.listen, "app", "app-secret", Some("no_such_db")))
        .await
        .err()
        .unwrap();
    assert!(format!("{e}").contains("1044"), "{e}");
    let mut c = connect(ports.listen).await;
    let e = c.query_drop("SELEKT 1").await.unwrap_err();
    assert!(format!("{e}").contains("1064"), "{e}");
    assert!(where_am_i(&mut c).await.1);
    let m = proxy.metrics();
    assert!(m.contains("kind=\"auth_failed\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_user_logs_in_full_then_fast() {
    let (_, ports) = proxy();
    for _ in 0..2 {
        let mut c = Conn::new(opts(ports.listen, "shaapp", "sha-secret", Some("app")))
            .await
            .expect("caching_sha2 login");
        let n: Option<u8> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(n, Some(1));
        c.disconnect().await.unwrap();
    }
    let e = Conn::new(opts(ports.listen, "shaapp", "nope", Some("app")))
        .await
        .err()
        .unwrap();
    assert!(format!("{e}").contains("1045"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_switches_identity_and_resets_the_session() {
    let (_, ports) = proxy();
    let mut c = connect(ports.listen).await;
    c.query_drop("SET @before = 1").await.unwrap();
    let who: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert!(who.unwrap().starts_with("app@"));
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some("admin".into()))
            .with_pass(Some("admin-secret".into()))
            .with_db_name(Some("app".into())),
    )
    .await
    .expect("COM_CHANGE_USER to another configured user");
    let who: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert!(
        who.unwrap().starts_with("root@"),
        "admin maps to the servers' root"
    );
    let before: Option<Option<i64>> = c.query_first("SELECT @before").await.unwrap();
    assert_eq!(
        before,
        Some(None),
        "session state must not survive a change of user"
    );
    assert!(where_am_i(&mut c).await.1, "reads still go to replicas");
    // A wrong password is refused with 1045.
    let mut d = connect(ports.listen).await;
    let e = d
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some("admin".into()))
                .with_pass(Some("nope".into())),
        )
        .await
        .unwrap_err();
    assert!(format!("{e}").contains("1045"), "{e}");
}
