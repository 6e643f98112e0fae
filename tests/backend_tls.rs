//! End-to-end: TLS from the proxy to its servers (`server_tls`). The PostgreSQL servers refuse
//! plain TCP logins (`hostnossl ... reject`) and the MariaDB logins of the proxy are `REQUIRE SSL`,
//! so every session, probe and query that works proves the proxy used TLS; `pg_stat_ssl` and
//! `Ssl_cipher` confirm it from the server side. Also: cancel over TLS, a wrong CA, mode
//! `disable` against TLS-only servers, verify-ca vs verify-full, and `prefer`'s fallback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use support::mysql_cluster::MariaDbCluster;
use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{
    pg_conn_str, PgCluster, Proxy, ProxyPorts, MYSQL_APP_PASSWORD, MYSQL_APP_USER,
    MYSQL_MONITOR_PASSWORD, MYSQL_MONITOR_USER,
};
use switchyard::backend::mysql::{MysqlConn, MysqlLogin, PROXY_CAPS};
use switchyard::backend::pg::{BackendConn, BackendError, Login};
use switchyard::backend::stream::Endpoint;
use switchyard::backend::ServerTlsTarget;
use switchyard::config::{MonitorConfig, ServerConfig, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{NoTls, SimpleQueryMessage};

const DEADLINE: Duration = Duration::from_secs(10);

/// A CA with a server certificate for localhost/127.0.0.1, and an unrelated ("wrong") CA.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    wrong_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (p.self_signed(&key).unwrap(), key)
}

fn pki() -> &'static Pki {
    static P: OnceLock<Pki> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-backend-tls-")
            .tempdir()
            .unwrap();
        let (ca_cert, ca_key) = ca("switchyard backend test CA");
        let (wrong, _) = ca("some other CA");
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            ca: write("ca.pem", ca_cert.pem()),
            wrong_ca: write("wrong-ca.pem", wrong.pem()),
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            _dir: dir,
        }
    })
}

/// PostgreSQL primary + 2 replicas serving TLS and refusing plain TCP logins.
fn pg() -> &'static PgCluster {
    static C: OnceLock<PgCluster> = OnceLock::new();
    C.get_or_init(|| {
        let c = PgCluster::start();
        c.enable_tls(&pki().cert, &pki().key, true);
        c
    })
}

/// MariaDB primary + 2 replicas serving TLS; `app` and `monitor` may only log in over TLS.
fn maria() -> &'static MariaDbCluster {
    static C: OnceLock<MariaDbCluster> = OnceLock::new();
    C.get_or_init(|| {
        let c = MariaDbCluster::start_with_tls(Some((&pki().cert, &pki().key)));
        c.sql(
            c.primary_port(),
            &format!(
                "ALTER USER '{MYSQL_APP_USER}'@'%' REQUIRE SSL; \
                 ALTER USER '{MYSQL_MONITOR_USER}'@'%' REQUIRE SSL; \
                 CREATE TABLE app.tls_items (id INT PRIMARY KEY, note VARCHAR(20))"
            ),
        );
        c.wait_replicas_caught_up();
        c
    })
}

/// The `server_tls:` section for `mode`, with `ca` when given.
fn section(mode: &str, ca: Option<&PathBuf>) -> String {
    match ca {
        Some(ca) => format!("{{ mode: {mode}, ca: \"{}\" }}", ca.display()),
        None => format!("{{ mode: {mode} }}"),
    }
}

/// `yaml` (a standard proxy config) with `server_tls` (and transaction pooling) added.
fn with_server_tls(yaml: &str, server_tls: Option<&str>, transaction_pool: bool) -> String {
    let mut extra = String::new();
    if let Some(s) = server_tls {
        extra.push_str(&format!("    server_tls: {s}\n"));
    }
    if transaction_pool {
        extra.push_str("    pool: { mode: transaction, size: 4 }\n");
    }
    assert!(yaml.contains("\n    routing: "));
    yaml.replacen("    routing: ", &format!("{extra}    routing: "), 1)
}

/// The `server_tls` a config with `section` loads to (built exactly as the proxy builds it).
fn loaded_tls(section: &str) -> ServerTls {
    let yaml = format!(
        "clusters:\n  - name: c\n    listen: 127.0.0.1:1\n    servers: [{{ address: 127.0.0.1:2 }}]\n    \
         monitor: {{ user: u }}\n    server_tls: {section}\nusers:\n  - {{ name: u, password: p }}\n"
    );
    let cfg = switchyard::config::load_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    cfg.clusters.into_iter().next().unwrap().server_tls
}

/// `GET /api/clusters`: (role, health, last_error) of each server of the first cluster.
fn servers(proxy: &Proxy) -> Vec<(String, String, String)> {
    let (status, body) = proxy.http_get("/api/clusters");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.pointer("/clusters/0/servers")
        .and_then(|s| s.as_array())
        .unwrap()
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (text("role"), text("health"), text("last_error"))
        })
        .collect()
}

/// The proxy log without terminal colour codes.
fn plain_log(proxy: &Proxy) -> String {
    let log = proxy.log();
    let mut out = String::with_capacity(log.len());
    let mut rest = log.as_str();
    while let Some(i) = rest.find('\u{1b}') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        rest = rest.find('m').map_or("", |j| &rest[j + 1..]);
    }
    out.push_str(rest);
    out
}

fn assert_roles(proxy: &Proxy) {
    let roles: Vec<String> = servers(proxy).into_iter().map(|s| s.0).collect();
    assert_eq!(roles, ["primary", "replica", "replica"], "{}", proxy.log());
}

/// Wait until every server is down with a `last_error` containing `needle`.
fn wait_all_down_with(proxy: &Proxy, needle: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = servers(proxy);
        if s.iter().all(|(_, h, e)| h == "down" && e.contains(needle)) {
            return s[0].2.clone();
        }
        assert!(
            Instant::now() < deadline,
            "servers not down with {needle:?}: {s:?}\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- PostgreSQL

fn pg_proxy(server_tls: Option<&str>, transaction_pool: bool) -> (Proxy, ProxyPorts) {
    let (yaml, ports) = Proxy::pg_config(pg());
    (
        Proxy::start(&with_server_tls(&yaml, server_tls, transaction_pool)),
        ports,
    )
}

async fn pg_client(port: u16) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&pg_conn_str(port, APP_USER, APP_PASSWORD, "app"), NoTls)
            .await
            .expect("connect through proxy");
    tokio::spawn(conn);
    client
}

async fn row(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    for m in c.simple_query(sql).await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            return (0..r.len())
                .map(|i| r.get(i).unwrap_or("NULL").to_string())
                .collect();
        }
    }
    panic!("no row from {sql}")
}

const WHERE_SSL: &str = "SELECT pg_is_in_recovery(), inet_server_port(), s.ssl, s.version \
     FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()";

/// Sessions, reads on replicas, writes, probes and (optionally) a cancel through a proxy in
/// `mode`, against servers that refuse plain logins.
async fn pg_mode_works(mode: &str, transaction_pool: bool, cancel: bool) {
    let ca = (mode != "require").then(|| &pki().ca);
    let (proxy, ports) = pg_proxy(Some(&section(mode, ca)), transaction_pool);
    proxy.wait_topology(3);
    assert_roles(&proxy);

    let table = format!("tls_{}", mode.replace('-', "_"));
    let w = pg_client(ports.listen).await;
    w.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (id int); INSERT INTO {table} VALUES (1)"
    ))
    .await
    .unwrap();
    let p = row(&w, &format!("/* switchyard: primary */ {WHERE_SSL}")).await;
    assert_eq!((p[0].as_str(), p[2].as_str()), ("f", "t"), "primary: {p:?}");
    assert_eq!(p[1], pg().primary_port().to_string());

    // A client that never wrote reads from the replicas, over TLS.
    let r = pg_client(ports.listen).await;
    let mut replica_ports = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let v = row(&r, WHERE_SSL).await;
        assert_eq!((v[0].as_str(), v[2].as_str()), ("t", "t"), "replica: {v:?}");
        replica_ports.insert(v[1].parse::<u16>().unwrap());
    }
    let expected: std::collections::BTreeSet<u16> = pg().replica_ports().into_iter().collect();
    assert_eq!(replica_ports, expected, "round robin reaches both replicas");
    pg().wait_replicas_caught_up();
    let n = row(&r, &format!("SELECT count(*) FROM {table}")).await;
    assert_ne!(n[0], "0");

    // The monitor's connections are TLS too (plain ones could not log in at all).
    for port in [pg().primary_port(), pg().replica_ports()[0]] {
        let got = pg().psql(
            port,
            "postgres",
            "SELECT count(*) > 0 AND bool_and(s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'switchyard-monitor'",
        );
        assert_eq!(got, "t", "monitor connections on port {port}");
    }

    if cancel {
        let token = r.cancel_token();
        let started = Instant::now();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            token.cancel_query(NoTls).await
        });
        let err = r.simple_query("SELECT pg_sleep(20)").await.unwrap_err();
        canceller.await.unwrap().unwrap();
        assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
        assert!(started.elapsed() < DEADLINE);
        // The server may act on the cancel before the proxy sees it close the cancel
        // connection and logs it: wait for the line.
        let tls_cancel_logged = |log: &str| {
            log.lines()
                .any(|l| l.contains("cancel request sent") && l.contains("tls=true"))
        };
        let logged_by = Instant::now() + Duration::from_secs(10);
        let mut log = plain_log(&proxy);
        while !tls_cancel_logged(&log) && Instant::now() < logged_by {
            tokio::time::sleep(Duration::from_millis(50)).await;
            log = plain_log(&proxy);
        }
        assert!(tls_cancel_logged(&log), "no TLS cancel in the log:\n{log}");
        // The session goes on.
        assert_eq!(row(&r, WHERE_SSL).await[2], "t");
    }
    println!(
        "{mode}: primary {p:?}, replicas {replica_ports:?}, pool transaction = {transaction_pool}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_require_works_over_tls() {
    pg_mode_works("require", false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_verify_full_works_over_tls_with_pooling_and_cancel() {
    pg_mode_works("verify-full", true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_verify_full_with_a_wrong_ca_fails_clearly() {
    let (proxy, ports) = pg_proxy(Some(&section("verify-full", Some(&pki().wrong_ca))), false);
    let error = wait_all_down_with(&proxy, "invalid peer certificate");
    println!("probe error: {error}");
    let started = Instant::now();
    let res = tokio_postgres::connect(
        &pg_conn_str(ports.listen, APP_USER, APP_PASSWORD, "app"),
        NoTls,
    )
    .await;
    let err = res.err().expect("no session without a trusted server");
    let db = err.as_db_error().expect("an error from the proxy");
    println!("client error: {} {}", db.code().code(), db.message());
    assert_eq!(db.code().code(), "08006");
    assert!(started.elapsed() < DEADLINE);
    let log = plain_log(&proxy);
    assert!(
        log.lines()
            .any(|l| l.contains("probe failed") && l.contains("UnknownIssuer")),
        "{log}"
    );

    // A session backend connection reports the certificate problem itself.
    let tls = loaded_tls(&section("verify-full", Some(&pki().wrong_ca)));
    let err = pg_backend(&tls, "127.0.0.1").await.unwrap_err();
    println!("backend error: {err}");
    assert!(
        matches!(&err, BackendError::Tls(m) if m.contains("invalid peer certificate")),
        "{err:?}"
    );
    // And so does the probe.
    let err = switchyard::topology::probe_pg::probe(&pg_server(), &pg_monitor(), &tls)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_disable_against_a_tls_only_server_fails_cleanly() {
    let (proxy, ports) = pg_proxy(None, false);
    let error = wait_all_down_with(&proxy, "no encryption");
    println!("probe error: {error}");
    let started = Instant::now();
    let res = tokio_postgres::connect(
        &pg_conn_str(ports.listen, APP_USER, APP_PASSWORD, "app"),
        NoTls,
    )
    .await;
    assert!(res.is_err());
    assert!(started.elapsed() < DEADLINE);
    let err = pg_backend(&ServerTls::default(), "127.0.0.1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::Server(f, _) if f.message.contains("no encryption")),
        "{err:?}"
    );
}

fn pg_server() -> ServerConfig {
    server_at(pg().primary_port())
}

fn server_at(port: u16) -> ServerConfig {
    ServerConfig {
        name: "primary".into(),
        host: "127.0.0.1".into(),
        port,
        role: switchyard::config::RoleHint::Auto,
        weight: 1,
        priority: 0,
        promote: true,
        pool_size: None,
        socket: None,
    }
}

fn pg_monitor() -> MonitorConfig {
    monitor("postgres", pg().superuser_password(), "postgres")
}

fn monitor(user: &str, password: &str, database: &str) -> MonitorConfig {
    MonitorConfig {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        healthy_after: 1,
        unhealthy_after: 1,
        user: user.into(),
        password: password.into(),
        database: database.into(),
    }
}

/// A session backend connection to the primary as `app`, checking the certificate against `host`.
async fn pg_backend(tls: &ServerTls, host: &str) -> Result<BackendConn, BackendError> {
    let params = [("database".to_string(), "app".to_string())];
    let login = Login {
        user: APP_USER,
        password: Some(APP_PASSWORD),
        params: &params,
    };
    BackendConn::connect(
        Endpoint::Tcp("127.0.0.1", pg().primary_port()),
        ServerTlsTarget::new(tls, host),
        login,
        1 << 20,
        DEADLINE,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_verify_ca_checks_the_chain_and_verify_full_the_name() {
    let verify_ca = loaded_tls(&section("verify-ca", Some(&pki().ca)));
    let verify_full = loaded_tls(&section("verify-full", Some(&pki().ca)));
    let prefer = loaded_tls(&section("prefer", None));

    // The certificate names localhost and 127.0.0.1, not db.example.
    let mut c = pg_backend(&verify_ca, "db.example").await.unwrap();
    assert!(c.is_tls());
    let ssl = c
        .query_value(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            DEADLINE,
        )
        .await
        .unwrap();
    assert_eq!(ssl.as_deref(), Some("t"));
    // An idle TLS connection passes the pool's non-blocking liveness check, and still works.
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.poll_idle().unwrap();
    assert_eq!(
        c.query_value("SELECT 1", DEADLINE)
            .await
            .unwrap()
            .as_deref(),
        Some("1")
    );
    c.terminate().await;

    let err = pg_backend(&verify_full, "db.example").await.unwrap_err();
    println!("verify-full, wrong name: {err}");
    assert!(
        matches!(&err, BackendError::Tls(m) if m.contains("not valid for name")),
        "{err:?}"
    );
    for host in ["localhost", "127.0.0.1"] {
        let c = pg_backend(&verify_full, host).await.unwrap();
        assert!(c.is_tls());
        c.terminate().await;
    }
    // verify-ca against the wrong CA fails on the chain.
    let wrong = loaded_tls(&section("verify-ca", Some(&pki().wrong_ca)));
    let err = pg_backend(&wrong, "localhost").await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Tls(m) if m.contains("UnknownIssuer")),
        "{err:?}"
    );
    // prefer takes TLS when offered.
    let c = pg_backend(&prefer, "127.0.0.1").await.unwrap();
    assert!(c.is_tls());
    c.terminate().await;
    // Probes with verify-full see the primary.
    let r = switchyard::topology::probe_pg::probe(&pg_server(), &pg_monitor(), &verify_full)
        .await
        .unwrap();
    assert_eq!(r.role, switchyard::topology::model::Role::Primary);
}

/// A fake server that answers `SSLRequest` with `N`, then refuses whatever startup follows; the
/// refusal's message proves the startup arrived in plain TCP.
async fn fake_pg_without_tls() -> (u16, tokio::task::JoinHandle<Option<i32>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = [0u8; 8];
        s.read_exact(&mut req).await.unwrap();
        assert_eq!(&req[4..], &80_877_103i32.to_be_bytes());
        s.write_all(b"N").await.unwrap();
        let mut head = [0u8; 8];
        if s.read_exact(&mut head).await.is_err() {
            return None; // the client gave up (require)
        }
        let protocol = i32::from_be_bytes(head[4..].try_into().unwrap());
        let body = b"SFATAL\0C28000\0Mfake server refuses plain startups\0\0";
        let mut e = vec![b'E'];
        e.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        e.extend_from_slice(body);
        s.write_all(&e).await.unwrap();
        Some(protocol)
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_falls_back_to_plain_and_require_refuses() {
    let login = Login {
        user: "u",
        password: None,
        params: &[],
    };
    let prefer = loaded_tls(&section("prefer", None));
    let (port, server) = fake_pg_without_tls().await;
    let err = BackendConn::connect(
        Endpoint::Tcp("127.0.0.1", port),
        ServerTlsTarget::new(&prefer, "127.0.0.1"),
        login,
        1 << 20,
        DEADLINE,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, BackendError::Server(f, _) if f.message.contains("refuses plain")),
        "{err:?}"
    );
    assert_eq!(
        server.await.unwrap(),
        Some(196_608),
        "a 3.0 startup in plain TCP"
    );

    let require = loaded_tls(&section("require", None));
    let (port, server) = fake_pg_without_tls().await;
    let err = BackendConn::connect(
        Endpoint::Tcp("127.0.0.1", port),
        ServerTlsTarget::new(&require, "127.0.0.1"),
        login,
        1 << 20,
        DEADLINE,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, BackendError::Tls(m) if m.contains("does not accept TLS")),
        "{err:?}"
    );
    assert_eq!(
        server.await.unwrap(),
        None,
        "nothing sent after the refusal"
    );
}

// ---------------------------------------------------------------- MariaDB

fn mysql_proxy(server_tls: Option<&str>, transaction_pool: bool) -> (Proxy, ProxyPorts) {
    let (yaml, ports) = Proxy::mysql_config(maria());
    (
        Proxy::start(&with_server_tls(&yaml, server_tls, transaction_pool)),
        ports,
    )
}

async fn mysql_client(port: u16) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(MYSQL_APP_USER))
        .pass(Some(MYSQL_APP_PASSWORD))
        .db_name(Some("app"))
        .prefer_socket(false);
    mysql_async::Conn::new(opts)
        .await
        .expect("connect through proxy")
}

/// (server_id, Ssl_cipher) of the server answering on `c` (one statement, so one server), with
/// an optional routing hint.
async fn mysql_where(c: &mut mysql_async::Conn, hint: &str) -> (u32, String) {
    c.query_first(format!(
        "{hint}SELECT @@server_id, VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'SSL_CIPHER'"
    ))
    .await
    .unwrap()
    .unwrap()
}

async fn mysql_mode_works(mode: &str, transaction_pool: bool) {
    let ca = (mode != "require").then(|| &pki().ca);
    let (proxy, ports) = mysql_proxy(Some(&section(mode, ca)), transaction_pool);
    proxy.wait_topology(3);
    assert_roles(&proxy);

    let mut w = mysql_client(ports.listen).await;
    let id = if mode == "require" { 1 } else { 2 };
    w.query_drop(format!("REPLACE INTO tls_items VALUES ({id}, '{mode}')"))
        .await
        .unwrap();
    let (server, cipher) = mysql_where(&mut w, "/* switchyard: primary */ ").await;
    assert_eq!(server, 1, "primary");
    assert!(!cipher.is_empty(), "primary session without TLS");

    // A session that never wrote reads from the replicas.
    let mut r = mysql_client(ports.listen).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let (server, cipher) = mysql_where(&mut r, "").await;
        assert!(!cipher.is_empty(), "replica session without TLS");
        seen.insert(server);
        println!("{mode}: read on server_id {server}, Ssl_cipher {cipher}");
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [2, 3],
        "reads reach both replicas"
    );
    maria().wait_replicas_caught_up();
    let note: Option<String> = r
        .query_first(format!("SELECT note FROM tls_items WHERE id = {id}"))
        .await
        .unwrap();
    assert_eq!(note.as_deref(), Some(mode));
    r.disconnect().await.unwrap();
    w.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_require_works_over_tls() {
    mysql_mode_works("require", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_verify_full_works_over_tls_with_pooling() {
    mysql_mode_works("verify-full", true).await;
}

fn mysql_login() -> MysqlLogin<'static> {
    MysqlLogin {
        user: MYSQL_APP_USER,
        password: Some(MYSQL_APP_PASSWORD),
        database: Some("app"),
        charset: 45,
        capabilities: PROXY_CAPS,
    }
}

async fn mysql_backend(
    tls: &ServerTls,
) -> Result<MysqlConn, switchyard::backend::mysql::MysqlBackendError> {
    MysqlConn::connect(
        Endpoint::Tcp("127.0.0.1", maria().primary_port()),
        ServerTlsTarget::new(tls, "127.0.0.1"),
        mysql_login(),
        1 << 24,
        DEADLINE,
    )
    .await
}

fn mysql_server_and_monitor() -> (ServerConfig, MonitorConfig) {
    (
        server_at(maria().primary_port()),
        monitor(MYSQL_MONITOR_USER, MYSQL_MONITOR_PASSWORD, ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_backends_and_probes_check_the_certificate() {
    switchyard::tls::install_default_provider();
    let (server, mon) = mysql_server_and_monitor();
    let full = loaded_tls(&section("verify-full", Some(&pki().ca)));
    let mut c = mysql_backend(&full).await.unwrap();
    assert!(c.is_tls());
    let cipher = c
        .query_value("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER'", DEADLINE)
        .await
        .unwrap();
    assert!(cipher.is_some_and(|c| !c.is_empty()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.idle_ok().unwrap();
    c.quit().await;
    let r = switchyard::topology::probe_mysql::probe(&server, &mon, &full)
        .await
        .unwrap();
    assert_eq!(r.role, switchyard::topology::model::Role::Primary);

    let wrong = loaded_tls(&section("verify-full", Some(&pki().wrong_ca)));
    let err = mysql_backend(&wrong).await.unwrap_err();
    println!("wrong CA, backend: {err}");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    let err = switchyard::topology::probe_mysql::probe(&server, &mon, &wrong)
        .await
        .unwrap_err();
    println!("wrong CA, probe: {err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_disable_against_require_ssl_logins_fails_cleanly() {
    let (proxy, ports) = mysql_proxy(None, false);
    let error = wait_all_down_with(&proxy, "Access denied");
    println!("probe error: {error}");
    let started = Instant::now();
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(ports.listen)
        .user(Some(MYSQL_APP_USER))
        .pass(Some(MYSQL_APP_PASSWORD))
        .db_name(Some("app"))
        .prefer_socket(false);
    let res = async {
        let mut c = mysql_async::Conn::new(opts).await?;
        c.query_drop("SELECT 1").await
    }
    .await;
    let err = res.expect_err("no session without TLS");
    println!("client error: {err}");
    assert!(started.elapsed() < DEADLINE);
    let err = mysql_backend(&ServerTls::default()).await.unwrap_err();
    assert!(err.to_string().contains("Access denied"), "{err}");
}
