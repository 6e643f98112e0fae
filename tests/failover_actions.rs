//! End-to-end: the failover actions (positions, fence, promote, repoint, rejoin, wait) against real
//! PostgreSQL and MariaDB clusters (own clusters: destructive).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use support::mysql_cluster::{MYSQL_APP_DB, MYSQL_REPL_PASSWORD, MYSQL_REPL_USER};
use support::pg_cluster::{APP_PASSWORD, APP_USER, SUPERUSER_PASSWORD};
use support::{
    free_port, pg_conn_str, MariaDbCluster, PgCluster, MYSQL_APP_PASSWORD, MYSQL_APP_USER,
    MYSQL_MONITOR_PASSWORD, MYSQL_MONITOR_USER, MYSQL_ROOT_PASSWORD,
};
use switchyard::config::ClusterConfig;
use switchyard::failover::actions::{ActionError, Actions, Position};
use switchyard::failover::actions_mysql::MysqlActions;
use switchyard::failover::actions_pg::PgActions;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Budget of one test once its cluster runs.
const TEST_BUDGET: Duration = Duration::from_secs(60);
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `body` with logging on, failing the test when it takes longer than [`TEST_BUDGET`].
async fn bounded(body: impl Future<Output = ()>) {
    // The actions' log lines show with `--nocapture`.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("switchyard=info")
        .try_init();
    tokio::time::timeout(TEST_BUDGET, body)
        .await
        .expect("test did not finish within its budget");
}

/// Polls `check` every 50 ms until it returns true; panics with `what` after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not true within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cluster config for three servers with the given failover section.
fn cluster_config(protocol: &str, ports: [u16; 3], monitor: &str, failover: &str) -> ClusterConfig {
    let yaml = format!(
        r#"clusters:
  - name: main
    protocol: {protocol}
    listen: "127.0.0.1:{listen}"
    servers:
      - {{ name: primary, address: "127.0.0.1:{p0}", role: primary, priority: 1 }}
      - {{ name: replica1, address: "127.0.0.1:{p1}", role: replica, priority: 2 }}
      - {{ name: replica2, address: "127.0.0.1:{p2}", role: replica, promote: false }}
    monitor: {monitor}
    failover: {failover}
users:
  - {{ name: u, password: "p", backend_user: u, backend_password: "p" }}
"#,
        listen = free_port(),
        p0 = ports[0],
        p1 = ports[1],
        p2 = ports[2],
    );
    let cfg = switchyard::config::load_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    cfg.clusters.into_iter().next().unwrap()
}

// ---------------------------------------------------------------- PostgreSQL

async fn pg(port: u16, user: &str, password: &str, db: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(&pg_conn_str(port, user, password, db), NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {port} as {user}: {e}"));
    tokio::spawn(conn);
    client
}

async fn pg_su(port: u16, db: &str) -> Client {
    pg(port, "postgres", SUPERUSER_PASSWORD, db).await
}

/// The first column of the first row of `sql` (None = NULL or no row).
async fn pg_value(c: &Client, sql: &str) -> Option<String> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
        _ => None,
    })?
}

fn lsn(p: &Position) -> u64 {
    match p {
        Position::Lsn(l) => *l,
        other => panic!("not an LSN: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_fence_promote_repoint_and_positions() {
    let cluster = PgCluster::start();
    let [r1, r2] = cluster.replica_ports();
    let p0 = cluster.primary_port();
    let cfg = cluster_config(
        "postgres",
        [p0, r1, r2],
        &format!("{{ timeout: 1s, user: postgres, password: \"{SUPERUSER_PASSWORD}\", database: postgres }}"),
        &format!("{{ mode: auto, user: postgres, password: \"{SUPERUSER_PASSWORD}\" }}"),
    );
    let acts = PgActions::new(&cfg);
    bounded(async {
        let app = pg(p0, APP_USER, APP_PASSWORD, "app").await;
        app.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
            .await
            .unwrap();

        // Positions.
        let primary_pos = acts.primary_position(0).await.unwrap();
        assert!(lsn(&primary_pos) > 0);
        for r in [1, 2] {
            acts.wait_applied(r, Some(primary_pos.clone()), Duration::from_secs(10))
                .await
                .unwrap();
            let got = acts.received_position(r).await.unwrap();
            assert!(lsn(&got) >= lsn(&primary_pos), "{got} < {primary_pos}");
        }
        assert!(matches!(
            acts.primary_position(1).await,
            Err(ActionError::Refused { .. })
        ));
        assert!(matches!(
            acts.rejoin(0, 1).await,
            Err(ActionError::Refused { .. })
        ));

        // Fence: open sessions are terminated (an open transaction rolls back), new writes fail
        // read-only (25006); twice is fine.
        let in_tx = pg(p0, APP_USER, APP_PASSWORD, "app").await;
        in_tx
            .batch_execute("BEGIN; INSERT INTO t VALUES (9)")
            .await
            .unwrap();
        acts.fence(0).await.unwrap();
        assert!(
            in_tx.batch_execute("COMMIT").await.is_err(),
            "open transaction survived"
        );
        eventually(
            "the app session is terminated",
            Duration::from_secs(2),
            || async { app.simple_query("SELECT 1").await.is_err() },
        )
        .await;
        let app = pg(p0, APP_USER, APP_PASSWORD, "app").await;
        let err = app
            .simple_query("INSERT INTO t VALUES (2)")
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            "{err}"
        );
        acts.fence(0).await.unwrap();
        drop(app);
        let su0 = pg_su(p0, "app").await;
        assert_eq!(
            pg_value(&su0, "SELECT count(*) FROM t WHERE id = 9")
                .await
                .as_deref(),
            Some("0")
        );
        drop(su0);

        // The primary goes away (as in a failover); both replicas end at the same WAL.
        tokio::task::block_in_place(|| cluster.stop_primary());
        let pos1 = acts.received_position(1).await.unwrap();
        let pos2 = acts.received_position(2).await.unwrap();
        assert!(lsn(&pos1) >= lsn(&pos2), "{pos1} < {pos2}");
        acts.wait_applied(1, None, Duration::from_secs(10))
            .await
            .unwrap();

        // Promote replica1; again is a no-op.
        acts.promote(1, PROMOTE_TIMEOUT).await.unwrap();
        let su1 = pg_su(r1, "app").await;
        assert_eq!(
            pg_value(&su1, "SELECT pg_is_in_recovery()")
                .await
                .as_deref(),
            Some("f")
        );
        acts.promote(1, PROMOTE_TIMEOUT).await.unwrap();
        let app1 = pg(r1, APP_USER, APP_PASSWORD, "app").await;
        app1.simple_query("INSERT INTO t VALUES (3)").await.unwrap();

        // Repoint replica2 to replica1: it streams from it and sees its writes; again is a no-op.
        acts.repoint(2, 1).await.unwrap();
        eventually(
            "replica2 streams from replica1",
            Duration::from_secs(15),
            || async {
                pg_value(
                    &su1,
                    "SELECT count(*) FROM pg_stat_replication \
                 WHERE application_name = 'replica2' AND state = 'streaming'",
                )
                .await
                .as_deref()
                    == Some("1")
            },
        )
        .await;
        assert_eq!(
            pg_value(
                &su1,
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'replica2' AND active"
            )
            .await
            .as_deref(),
            Some("1")
        );
        acts.repoint(2, 1).await.unwrap();
        app1.simple_query("INSERT INTO t VALUES (4)").await.unwrap();
        let su2 = pg_su(r2, "app").await;
        eventually(
            "row 4 reaches replica2",
            Duration::from_secs(10),
            || async {
                pg_value(&su2, "SELECT count(*) FROM t WHERE id = 4")
                    .await
                    .as_deref()
                    == Some("1")
            },
        )
        .await;
        let conninfo = pg_value(&su2, "SHOW primary_conninfo").await.unwrap();
        assert!(conninfo.contains(&format!("port={r1}")), "{conninfo}");
        assert!(
            conninfo.contains("password="),
            "credentials dropped: {conninfo}"
        );
        assert!(matches!(
            acts.repoint(1, 2).await,
            Err(ActionError::Refused { .. })
        ));

        // wait_applied: a position the new primary has written, everything received, and a
        // position never reached.
        let p1 = acts.primary_position(1).await.unwrap();
        acts.wait_applied(2, Some(p1.clone()), Duration::from_secs(10))
            .await
            .unwrap();
        acts.wait_applied(2, None, Duration::from_secs(5))
            .await
            .unwrap();
        let far = Position::Lsn(lsn(&p1) + (1 << 40));
        let started = Instant::now();
        let err = acts
            .wait_applied(2, Some(far), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(matches!(err, ActionError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));

        // A fenced primary that is promoted again becomes writable.
        acts.fence(1).await.unwrap();
        let app1 = pg(r1, APP_USER, APP_PASSWORD, "app").await;
        let err = app1
            .simple_query("INSERT INTO t VALUES (5)")
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            "{err}"
        );
        acts.promote(1, PROMOTE_TIMEOUT).await.unwrap();
        let app1 = pg(r1, APP_USER, APP_PASSWORD, "app").await;
        app1.simple_query("INSERT INTO t VALUES (5)").await.unwrap();
        // The fence left replication alone.
        eventually(
            "row 5 reaches replica2",
            Duration::from_secs(10),
            || async {
                pg_value(&su2, "SELECT count(*) FROM t WHERE id = 5")
                    .await
                    .as_deref()
                    == Some("1")
            },
        )
        .await;
    })
    .await;
}

// ---------------------------------------------------------------- MariaDB

async fn my(port: u16, user: &str, password: &str) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(MYSQL_APP_DB))
        .prefer_socket(false);
    mysql_async::Conn::new(opts)
        .await
        .unwrap_or_else(|e| panic!("connect to {port} as {user}: {e}"))
}

async fn my_root(port: u16) -> mysql_async::Conn {
    my(port, "root", MYSQL_ROOT_PASSWORD).await
}

/// The first column of the first row of `sql` on a fresh root connection (None = NULL/no row).
async fn my_value(port: u16, sql: &str) -> Option<String> {
    let mut c = my_root(port).await;
    let v: Option<Option<String>> = c
        .query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = c.disconnect().await;
    v.flatten()
}

/// One column of `SHOW SLAVE STATUS` (None when not a replica).
async fn slave_col(port: u16, col: &str) -> Option<String> {
    let mut c = my_root(port).await;
    let row: Option<mysql_async::Row> = c.query_first("SHOW SLAVE STATUS").await.unwrap();
    let _ = c.disconnect().await;
    row.map(|r| {
        r.get::<Option<String>, _>(col)
            .flatten()
            .unwrap_or_default()
    })
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

async fn row_arrives(port: u16, id: u32, what: &str) {
    let sql = format!("SELECT COUNT(*) FROM t WHERE id = {id}");
    eventually(what, Duration::from_secs(10), || async {
        my_value(port, &sql).await.as_deref() == Some("1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_fence_promote_repoint_rejoin() {
    let cluster = MariaDbCluster::start();
    let [r1, r2] = cluster.replica_ports();
    let p0 = cluster.primary_port();
    let monitor = format!(
        "{{ timeout: 1s, user: {MYSQL_MONITOR_USER}, password: \"{MYSQL_MONITOR_PASSWORD}\", database: \"\" }}"
    );
    let cfg = cluster_config(
        "mysql",
        [p0, r1, r2],
        &monitor,
        &format!(
            "{{ mode: auto, user: root, password: \"{MYSQL_ROOT_PASSWORD}\", \
             replication_user: {MYSQL_REPL_USER}, replication_password: \"{MYSQL_REPL_PASSWORD}\" }}"
        ),
    );
    let acts = MysqlActions::new(&cfg);
    let no_repl = MysqlActions::new(&cluster_config(
        "mysql",
        [p0, r1, r2],
        &monitor,
        &format!("{{ user: root, password: \"{MYSQL_ROOT_PASSWORD}\" }}"),
    ));
    bounded(async {
        let mut app = my(p0, MYSQL_APP_USER, MYSQL_APP_PASSWORD).await;
        app.query_drop("CREATE TABLE t (id INT PRIMARY KEY); CREATE TABLE locked (id INT); INSERT INTO t VALUES (1)")
            .await
            .unwrap();

        // Positions.
        let primary_pos = acts.primary_position(0).await.unwrap();
        assert!(
            matches!(&primary_pos, Position::Gtid(g) if !g.is_empty()),
            "{primary_pos}"
        );
        for r in [1, 2] {
            acts.wait_applied(r, Some(primary_pos.clone()), Duration::from_secs(10))
                .await
                .unwrap();
            let got = acts.received_position(r).await.unwrap();
            assert_eq!(
                got.progress_cmp(&primary_pos),
                Some(std::cmp::Ordering::Equal),
                "{got}"
            );
        }

        // Fence: other client connections are killed (not replication), writes fail with 1290.
        let mut idle_root = my_root(p0).await;
        let mut in_tx = my(p0, MYSQL_APP_USER, MYSQL_APP_PASSWORD).await;
        in_tx.query_drop("BEGIN").await.unwrap();
        in_tx.query_drop("INSERT INTO t VALUES (9)").await.unwrap();
        let mut locker = my(p0, MYSQL_APP_USER, MYSQL_APP_PASSWORD).await;
        locker.query_drop("LOCK TABLES locked WRITE").await.unwrap();
        acts.fence(0).await.unwrap();
        assert!(
            in_tx.query_drop("COMMIT").await.is_err(),
            "open transaction survived"
        );
        assert!(
            locker.query_drop("UNLOCK TABLES").await.is_err(),
            "table lock survived"
        );
        for (what, conn) in [("app", &mut app), ("root", &mut idle_root)] {
            let deadline = Instant::now() + Duration::from_secs(2);
            while conn.query_drop("SELECT 1").await.is_ok() {
                assert!(
                    Instant::now() < deadline,
                    "{what} session survived the fence"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut app = my(p0, MYSQL_APP_USER, MYSQL_APP_PASSWORD).await;
        let err = app
            .query_drop("INSERT INTO t VALUES (2)")
            .await
            .unwrap_err();
        assert_eq!(server_code(&err), Some(1290), "{err}");
        acts.fence(0).await.unwrap();
        assert_eq!(
            my_value(p0, "SELECT @@read_only").await.as_deref(),
            Some("1")
        );
        assert_eq!(
            my_value(p0, "SELECT COUNT(*) FROM t WHERE id = 9")
                .await
                .as_deref(),
            Some("0")
        );
        for port in [r1, r2] {
            assert_eq!(
                slave_col(port, "Slave_IO_Running").await.as_deref(),
                Some("Yes")
            );
        }
        let fenced_pos = acts.primary_position(0).await.unwrap();
        acts.wait_applied(1, Some(fenced_pos.clone()), Duration::from_secs(10))
            .await
            .unwrap();
        acts.wait_applied(2, Some(fenced_pos), Duration::from_secs(10))
            .await
            .unwrap();

        // Promote replica1; again is a no-op.
        acts.promote(1, PROMOTE_TIMEOUT).await.unwrap();
        assert_eq!(
            my_value(r1, "SELECT @@read_only").await.as_deref(),
            Some("0")
        );
        assert_eq!(slave_col(r1, "Slave_IO_Running").await, None);
        acts.promote(1, PROMOTE_TIMEOUT).await.unwrap();
        let mut app1 = my(r1, MYSQL_APP_USER, MYSQL_APP_PASSWORD).await;
        app1.query_drop("INSERT INTO t VALUES (3)").await.unwrap();

        // Repoint replica2 to replica1; again is a no-op.
        assert!(matches!(
            acts.repoint(0, 1).await,
            Err(ActionError::Refused { .. })
        ));
        acts.repoint(2, 1).await.unwrap();
        assert_eq!(slave_col(r2, "Master_Port").await, Some(r1.to_string()));
        row_arrives(r2, 3, "row 3 reaches replica2").await;
        acts.repoint(2, 1).await.unwrap();
        assert_eq!(
            slave_col(r2, "Master_User").await.as_deref(),
            Some(MYSQL_REPL_USER)
        );

        // Rejoin the old primary under replica1; again is a no-op.
        assert!(matches!(
            no_repl.rejoin(0, 1).await,
            Err(ActionError::Refused { .. })
        ));
        acts.rejoin(0, 1).await.unwrap();
        app1.query_drop("INSERT INTO t VALUES (4)").await.unwrap();
        row_arrives(p0, 4, "row 4 reaches the old primary").await;
        row_arrives(r2, 4, "row 4 reaches replica2").await;
        acts.rejoin(0, 1).await.unwrap();
        assert_eq!(slave_col(p0, "Master_Port").await, Some(r1.to_string()));
        assert_eq!(
            my_value(p0, "SELECT @@read_only").await.as_deref(),
            Some("1")
        );
        acts.repoint(0, 1).await.unwrap();

        // wait_applied on the new topology, and a position never reached.
        let p1 = acts.primary_position(1).await.unwrap();
        for r in [0, 2] {
            acts.wait_applied(r, Some(p1.clone()), Duration::from_secs(10))
                .await
                .unwrap();
            acts.wait_applied(r, None, Duration::from_secs(5))
                .await
                .unwrap();
            let got = acts.received_position(r).await.unwrap();
            assert_eq!(
                got.progress_cmp(&p1),
                Some(std::cmp::Ordering::Equal),
                "{got}"
            );
        }
        let started = Instant::now();
        let err = acts
            .wait_applied(
                2,
                Some(Position::Gtid("0-2-999999".into())),
                Duration::from_millis(700),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ActionError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(matches!(
            acts.wait_applied(2, Some(Position::Lsn(1)), Duration::from_secs(1))
                .await,
            Err(ActionError::Refused { .. })
        ));
    })
    .await;
}
