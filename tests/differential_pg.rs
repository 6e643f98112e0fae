//! Differential test, PostgreSQL: the generated workload of `tests/differential` run directly on the
//! primary and through the proxy (session and transaction pooling x every consistency level), under
//! `synchronous_commit`, `default_transaction_isolation` and `default_transaction_read_only` set per
//! database; every statement's answer must match. See `tests/differential/mod.rs` for the rules,
//! `SWITCHYARD_DIFF_STATEMENTS` / `SWITCHYARD_DIFF_SEED` / `SWITCHYARD_DIFF_COMBO` for the modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod differential;
mod support;

use std::time::Instant;

use differential::drive::{combos, drive, proxy_yaml, wait_clusters, Combo, Suite};
use differential::pg_gen::{self, PgDefaults, ISOLATION, SYNC_COMMIT};
use differential::pg_run::Target;
use differential::report::Report;
use differential::{Env, Rng, Step, SESSIONS};
use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{PgCluster, Proxy};

/// Short mode: each (pool, level) once, settings rotated so every value shows up under both
/// pooling modes. Long mode: every (pool, level, synchronous_commit, isolation, read_only).
fn all_combos(long: bool) -> Vec<Combo<PgDefaults>> {
    let mut all = Vec::new();
    for sc in SYNC_COMMIT {
        for iso in ISOLATION {
            for ro in [false, true] {
                all.push(PgDefaults { sc, iso, ro });
            }
        }
    }
    combos(long, &all, |li, pi| PgDefaults {
        // synchronous_commit per level (eventual, read_your_writes, global, strong): every value
        // once per pooling mode, and read_your_writes always with `off`.
        sc: SYNC_COMMIT[[[2, 0, 1, 3], [1, 0, 3, 2]][pi][li]],
        iso: ISOLATION[(li + pi) % 3],
        ro: (li + pi) % 4 == 3,
    })
}

fn setup_sql() -> String {
    let mut sql = String::from(
        "CREATE TABLE fixed (id int PRIMARY KEY, v text NOT NULL);\
         INSERT INTO fixed SELECT g, 'f' || g FROM generate_series(1, 20) g;\
         CREATE TABLE shared (id serial PRIMARY KEY, sid int NOT NULL, v int NOT NULL);\
         CREATE INDEX ON shared (sid);",
    );
    for s in 0..SESSIONS {
        sql.push_str(&format!(
            "CREATE TABLE own_{s} (id serial PRIMARY KEY, v int NOT NULL, t text);"
        ));
    }
    sql
}

/// Superuser connections to the primary and the replicas (database `postgres`).
struct Admin {
    primary: tokio_postgres::Client,
    replicas: Vec<tokio_postgres::Client>,
}

async fn superuser(cluster: &PgCluster, port: u16, db: &str) -> tokio_postgres::Client {
    let s = support::pg_conn_str(port, "postgres", cluster.superuser_password(), db);
    let (c, conn) = tokio_postgres::connect(&s, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

impl Admin {
    async fn new(cluster: &PgCluster) -> Admin {
        let mut replicas = Vec::new();
        for port in cluster.replica_ports() {
            replicas.push(superuser(cluster, port, "postgres").await);
        }
        Admin {
            primary: superuser(cluster, cluster.primary_port(), "postgres").await,
            replicas,
        }
    }

    /// A fresh database `db` with the tables of the workload and the combination's defaults.
    async fn create_db(&self, cluster: &PgCluster, db: &str, d: PgDefaults) {
        let p = &self.primary;
        p.batch_execute(&format!("CREATE DATABASE {db} OWNER {APP_USER}"))
            .await
            .unwrap();
        let s = support::pg_conn_str(cluster.primary_port(), APP_USER, APP_PASSWORD, db);
        let (app, conn) = tokio_postgres::connect(&s, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        app.batch_execute(&setup_sql())
            .await
            .unwrap_or_else(|e| panic!("setup of {db}: {e}"));
        drop(app);
        let _ = task.await;
        p.batch_execute(&format!(
            "ALTER DATABASE {db} SET synchronous_commit = {}; \
             ALTER DATABASE {db} SET default_transaction_isolation = '{}'; \
             ALTER DATABASE {db} SET default_transaction_read_only = {}",
            d.sc,
            d.iso,
            if d.ro { "on" } else { "off" }
        ))
        .await
        .unwrap();
    }

    /// Wait (30 s max) until both replicas replayed the primary's current WAL position.
    async fn caught_up(&self) {
        let row = self
            .primary
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap();
        let lsn: String = row.get(0);
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        for r in &self.replicas {
            let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
            while !r.query_one(&sql, &[]).await.unwrap().get::<_, bool>(0) {
                assert!(
                    Instant::now() < deadline,
                    "replica did not replay {lsn} in 30 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

fn target(port: u16, db: &str) -> Target {
    Target {
        port,
        db: db.to_string(),
        user: APP_USER.to_string(),
        password: APP_PASSWORD.to_string(),
    }
}

struct Pg<'a> {
    cluster: &'a PgCluster,
    admin: Admin,
}

impl Suite for Pg<'_> {
    const PROTOCOL: &'static str = "pg";
    const SHORT_STATEMENTS: usize = 612;
    type Settings = PgDefaults;
    type Runner = Target;

    fn scripts(&self, c: &Combo<PgDefaults>, rng: &mut Rng, per_session: usize) -> Vec<Vec<Step>> {
        pg_gen::scripts(rng, c.level, c.settings, SESSIONS, per_session)
    }

    async fn prepare(&self, c: &Combo<PgDefaults>, index: usize, port: u16) -> (Target, Target) {
        let (direct, proxied) = (format!("dx{index}_d"), format!("dx{index}_p"));
        self.admin
            .create_db(self.cluster, &direct, c.settings)
            .await;
        self.admin
            .create_db(self.cluster, &proxied, c.settings)
            .await;
        self.admin.caught_up().await;
        (
            target(self.cluster.primary_port(), &direct),
            target(port, &proxied),
        )
    }

    fn primary_port(&self) -> u16 {
        self.cluster.primary_port()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_pg() {
    let cluster = PgCluster::start();
    // Commits wait for one standby: `on`, `local`, `remote_apply` and `off` all mean something.
    cluster.set_synchronous();
    let monitor = format!(
        "user: postgres, password: \"{}\", database: postgres",
        cluster.superuser_password()
    );
    let users = format!(
        "  - {{ name: {APP_USER}, password: \"{APP_PASSWORD}\", auth: scram-sha-256, backend_user: {APP_USER}, backend_password: \"{APP_PASSWORD}\" }}\n"
    );
    let (yaml, ports) = proxy_yaml(
        "postgres",
        cluster.primary_port(),
        cluster.replica_ports(),
        &monitor,
        &users,
    );
    let proxy = Proxy::start(&yaml);
    wait_clusters(&proxy, ports.len());
    let suite = Pg {
        cluster: &cluster,
        admin: Admin::new(&cluster).await,
    };
    let mut report = Report {
        protocol: "PostgreSQL",
        test: "differential_pg",
        ..Report::default()
    };
    drive(
        &suite,
        &all_combos(Env::read().statements.is_some()),
        &ports,
        &mut report,
    )
    .await;
    drop(proxy);
}
