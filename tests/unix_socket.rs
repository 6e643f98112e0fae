//! End-to-end: clients through a cluster's Unix-domain socket (`listen_socket`) on both protocols
//! (tokio-postgres, psql, mysql_async, the `mariadb` CLI) with reads still split; TLS neither
//! offered nor required on the socket while TCP clients must use it; caching_sha2 full
//! authentication in cleartext over the socket; a stale socket file replaced, a live one refused,
//! the file removed at shutdown; and `@@socket` naming the proxy's socket, so mysql_async (which
//! reconnects to the socket `@@socket` names) never goes around the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};
use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::proxy::{psql, SHAAPP_PASSWORD, SHAAPP_USER};
use support::{
    shared, shared_mysql, Proxy, MYSQL_APP_PASSWORD, MYSQL_APP_USER, MYSQL_MONITOR_USER,
};

/// The version a fresh proxy announces to MySQL clients before any of its server connections has
/// logged in ("5.5.5-10.11.99-MariaDB-switchyard"; later the servers' own, see mysql_fidelity).
const PROXY_VERSION: (u16, u16, u16) = (10, 11, 99);

/// A self-signed certificate for localhost, written to `dir`.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

/// The first cluster of `yaml` with a `listen_socket`, and `tls: require` when `tls` is given.
fn with_socket(yaml: &str, socket: &Path, tls: Option<&(PathBuf, PathBuf)>) -> String {
    let mut extra = format!("    listen_socket: \"{}\"\n", socket.display());
    if let Some((cert, key)) = tls {
        extra.push_str(&format!(
            "    tls: {{ mode: require, cert: \"{}\", key: \"{}\" }}\n",
            cert.display(),
            key.display()
        ));
    }
    assert!(yaml.contains("\n    servers:\n"));
    yaml.replacen("    servers:\n", &format!("{extra}    servers:\n"), 1)
}

fn socket_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("switchyard-sock-")
        .tempdir()
        .unwrap()
}

/// Run a command, waiting at most 30 s; (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn psql_over(dir: &Path, port: u16, sql: &str) -> (bool, String, String) {
    psql(
        &format!(
            "host={} port={port} user={APP_USER} dbname=app",
            dir.display()
        ),
        sql,
    )
}

#[tokio::test]
async fn postgres_clients_use_the_socket_without_tls_while_tcp_needs_it() {
    let cluster = shared();
    let dir = socket_dir();
    let (yaml, ports) = Proxy::pg_config(cluster);
    // The file libpq opens for host=<dir> port=<port>.
    let sock = dir.path().join(format!(".s.PGSQL.{}", ports.listen));
    let tls = tls_files(dir.path());
    let mut proxy = Proxy::start(&with_socket(&yaml, &sock, Some(&tls)));
    proxy.wait_topology(3);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o777, "socket mode {mode:o}");

    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(dir.path())
        .port(ports.listen)
        .user(APP_USER)
        .password(APP_PASSWORD)
        .dbname("app")
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("tokio-postgres over the proxy's socket, without TLS");
    let task = tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS unix_socket_t (i int)")
        .await
        .unwrap();
    let row = client
        .query_one(
            "INSERT INTO unix_socket_t VALUES (1) RETURNING inet_server_port()",
            &[],
        )
        .await
        .unwrap();
    let port: i32 = row.get(0);
    assert_eq!(port, i32::from(cluster.primary_port()), "the write");
    drop(client);
    let _ = task.await;

    // A fresh session's reads still go to the replicas.
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    let replicas = cluster.replica_ports().map(i32::from);
    for _ in 0..4 {
        let port: i32 = client
            .query_one("SELECT inet_server_port()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(replicas.contains(&port), "a read went to port {port}");
    }
    drop(client);
    let _ = task.await;

    let (ok, out, err) = psql_over(dir.path(), ports.listen, "SELECT 40 + 2");
    assert!(ok, "psql over the socket: {err}");
    assert_eq!(out.trim(), "42");

    // TCP without TLS is refused on the same cluster.
    let tcp = format!(
        "host=127.0.0.1 port={} user={APP_USER} password={APP_PASSWORD} dbname=app sslmode=disable",
        ports.listen
    );
    let e = tokio_postgres::connect(&tcp, tokio_postgres::NoTls)
        .await
        .err()
        .expect("plain TCP must be refused under tls: require");
    let db = e.as_db_error().expect("a server error");
    assert!(db.message().contains("TLS required"), "{db:?}");

    let status = proxy.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "the socket file outlived the proxy");
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_refused() {
    let cluster = shared();
    let dir = socket_dir();
    let sock = dir.path().join("pg.sock");
    let (yaml, _) = Proxy::pg_config(cluster);
    let first = Proxy::start(&with_socket(&yaml, &sock, None));

    // Another proxy on the same socket path (its own TCP ports) refuses to start.
    let (other, _) = Proxy::pg_config(cluster);
    let conf = dir.path().join("other.yaml");
    std::fs::write(&conf, with_socket(&other, &sock, None)).unwrap();
    let (ok, out, err) = run(Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("--config")
        .arg(&conf));
    assert!(!ok, "a second proxy started on a live socket:\n{out}{err}");
    let text = format!("{out}{err}");
    assert!(
        text.contains(&format!("cannot listen on {}", sock.display()))
            && text.contains("another process is listening"),
        "{text}"
    );

    // A proxy killed outright leaves its file; the next one replaces it.
    drop(first);
    assert!(sock.exists());
    let again = Proxy::start(&with_socket(&yaml, &sock, None));
    assert!(again.log().contains("replacing a stale socket file"));
    let port = again.listen_addrs()[0].port();
    // The file is not named .s.PGSQL.<port>: point libpq at it through a symlink that is.
    let link_dir = socket_dir();
    std::os::unix::fs::symlink(&sock, link_dir.path().join(format!(".s.PGSQL.{port}"))).unwrap();
    let (ok, out, err) = psql_over(link_dir.path(), port, "SELECT 1");
    assert!(ok && out.trim() == "1", "{out}{err}");
}

fn mariadb_over(sock: &Path, user: &str, password: &str, sql: &str) -> (bool, String, String) {
    run(Command::new("mariadb")
        .args(["--no-defaults", "--protocol=SOCKET"])
        .arg(format!("--socket={}", sock.display()))
        .args([
            &format!("-u{user}"),
            &format!("-p{password}"),
            "--connect-timeout=10",
            "-N",
            "-B",
            "app",
            "-e",
            sql,
        ]))
}

#[tokio::test]
async fn mysql_clients_use_the_socket_and_caching_sha2_full_auth_works_there() {
    let cluster = shared_mysql();
    let dir = socket_dir();
    let sock = dir.path().join("mysql.sock");
    let tls = tls_files(dir.path());
    let (yaml, ports) = Proxy::mysql_config(cluster);
    let proxy = Proxy::start(&with_socket(&yaml, &sock, Some(&tls)));
    proxy.wait_topology(3);

    // shaapp's first login on a fresh proxy takes caching_sha2's full authentication; over the
    // socket mysql_async sends the password in cleartext, as MySQL accepts there.
    let opts = OptsBuilder::default()
        .socket(Some(sock.display().to_string()))
        .user(Some(SHAAPP_USER))
        .pass(Some(SHAAPP_PASSWORD))
        .db_name(Some("app"));
    let mut c = Conn::new(opts).await.expect("mysql_async over the socket");
    assert_eq!(c.server_version(), PROXY_VERSION);
    let port: u16 = c.query_first("SELECT @@port").await.unwrap().unwrap();
    assert!(cluster.replica_ports().contains(&port), "read on {port}");
    let named: Option<String> = c.query_first("SELECT @@socket").await.unwrap().unwrap();
    assert_eq!(named.as_deref(), Some(sock.to_str().unwrap()));
    c.disconnect().await.unwrap();
    assert!(
        proxy
            .log()
            .contains("caching_sha2 full authentication in cleartext over the Unix socket"),
        "the first login did not take full authentication"
    );

    let (ok, out, err) = mariadb_over(&sock, MYSQL_APP_USER, MYSQL_APP_PASSWORD, "SELECT 40 + 2");
    assert!(ok, "mariadb over the socket: {err}");
    assert_eq!(out.trim(), "42");
    let (ok, _, err) = mariadb_over(&sock, MYSQL_APP_USER, "wrong", "SELECT 1");
    assert!(!ok);
    assert!(
        err.contains("1045") && err.contains("'app'@'localhost'"),
        "{err}"
    );

    // TCP without TLS is refused on the same cluster.
    let tcp = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(ports.listen)
        .user(Some(MYSQL_APP_USER))
        .pass(Some(MYSQL_APP_PASSWORD))
        .prefer_socket(false);
    let e = Conn::new(tcp).await.expect_err("plain TCP must be refused");
    assert!(e.to_string().contains("TLS required"), "{e}");
}

#[tokio::test]
async fn mysql_async_preferring_sockets_stays_on_the_proxy() {
    let cluster = shared_mysql();
    let (yaml, ports) = Proxy::mysql_config(cluster);
    let proxy = Proxy::start(&yaml);
    proxy.wait_topology(3);
    // `prefer_socket` is on by default: after logging in over TCP to 127.0.0.1, mysql_async
    // reads `@@socket` and reconnects there. A server's socket path (this host runs the
    // servers) would take it to that server directly.
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(ports.listen)
        .user(Some(MYSQL_APP_USER))
        .pass(Some(MYSQL_APP_PASSWORD))
        .db_name(Some("app"));
    let mut c = Conn::new(opts).await.unwrap();
    assert_eq!(
        c.server_version(),
        PROXY_VERSION,
        "the client reconnected around the proxy"
    );
    let named: Option<String> = c.query_first("SELECT @@socket").await.unwrap().unwrap();
    assert_eq!(named, None, "a proxy without listen_socket has no socket");
    // The other variables of the driver's query still come from a server.
    let (packet, socket): (u64, Option<String>) = c
        .query_first("SELECT @@max_allowed_packet, @@global.socket")
        .await
        .unwrap()
        .unwrap();
    assert!(packet >= 1024, "{packet}");
    assert_eq!(socket, None);
    c.disconnect().await.unwrap();
}

/// `yaml` with every server line given `socket: <path of that server>` and transaction pooling.
fn with_server_sockets(yaml: &str, sockets: [(u16, PathBuf); 3]) -> String {
    let mut out = yaml.to_owned();
    for (port, path) in sockets {
        let from = format!("address: \"127.0.0.1:{port}\",");
        assert!(out.contains(&from), "{from} not in {out}");
        let to = format!("{from} socket: \"{}\",", path.display());
        out = out.replacen(&from, &to, 1);
    }
    out.replacen(
        "    routing:",
        "    pool: { mode: transaction, size: 2 }\n    routing:",
        1,
    )
}

#[tokio::test]
async fn postgres_servers_are_reached_over_their_sockets_and_cancel_goes_there_too() {
    let cluster = shared();
    let (yaml, ports) = Proxy::pg_config(cluster);
    // The session's reads after its write wait for a replica (instead of going to the primary):
    // this test looks at the replicas' sockets.
    let yaml = yaml.replace(
        "fallback: primary }",
        "fallback: primary, causal_wait: true }",
    );
    let [r1, r2] = cluster.replica_ports();
    let sockets =
        [cluster.primary_port(), r1, r2].map(|p| (p, cluster.dir().join(format!(".s.PGSQL.{p}"))));
    let proxy = Proxy::start(&with_server_sockets(&yaml, sockets));
    proxy.wait_topology(3);
    // The monitor probes every server through its socket too (no client address there).
    for port in [cluster.primary_port(), r1, r2] {
        let monitors = cluster.psql(
            port,
            "postgres",
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'switchyard-monitor' AND client_addr IS NULL",
        );
        assert_ne!(monitors.trim(), "0", "no monitor over the socket of {port}");
    }

    let conninfo = support::proxy::pg_conn_str(ports.listen, APP_USER, APP_PASSWORD, "app");
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS server_socket_t (i int)")
        .await
        .unwrap();
    // Over a Unix-domain socket the server sees no client address.
    let row = client
        .query_one(
            "INSERT INTO server_socket_t VALUES (1) \
             RETURNING current_setting('port')::int, inet_client_addr() IS NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, bool>(1)),
        (i32::from(cluster.primary_port()), true),
        "the write, over the primary's socket"
    );
    for _ in 0..4 {
        let row = client
            .query_one(
                "SELECT current_setting('port')::int, inet_client_addr() IS NULL",
                &[],
            )
            .await
            .unwrap();
        let port = u16::try_from(row.get::<_, i32>(0)).unwrap();
        assert!([r1, r2].contains(&port), "a read went to port {port}");
        assert!(row.get::<_, bool>(1), "a read over TCP on {port}");
    }

    // A cancel request reaches the backend through its socket.
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let e = client
            .simple_query("SELECT pg_sleep(30)")
            .await
            .expect_err("the sleep was cancelled");
        (started.elapsed(), e)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (took, e) = sleeper.await.unwrap();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(10), "cancelled after {took:?}");
    let _ = task.await;
}

#[tokio::test]
async fn mysql_servers_are_reached_over_their_sockets() {
    let cluster = shared_mysql();
    let (yaml, ports) = Proxy::mysql_config(cluster);
    // As for PostgreSQL: the reads after the session's write wait for a replica's socket.
    let yaml = yaml.replace(
        "fallback: primary }",
        "fallback: primary, causal_wait: true }",
    );
    let [r1, r2] = cluster.replica_ports();
    let sockets = [
        (cluster.primary_port(), cluster.socket_path("primary")),
        (r1, cluster.socket_path("replica1")),
        (r2, cluster.socket_path("replica2")),
    ];
    let proxy = Proxy::start(&with_server_sockets(&yaml, sockets));
    proxy.wait_topology(3);
    // The monitor probes every server through its socket too (a socket login is 'localhost').
    for port in [cluster.primary_port(), r1, r2] {
        let monitors = cluster.sql(
            port,
            &format!(
                "SELECT count(*) FROM information_schema.processlist \
                 WHERE user = '{MYSQL_MONITOR_USER}' AND host = 'localhost'"
            ),
        );
        assert_ne!(monitors.trim(), "0", "no monitor over the socket of {port}");
    }

    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(ports.listen)
        .user(Some(MYSQL_APP_USER))
        .pass(Some(MYSQL_APP_PASSWORD))
        .db_name(Some("app"))
        .prefer_socket(false);
    let mut c = Conn::new(opts).await.unwrap();
    // A local socket login shows as 'localhost'; over TCP it would be '127.0.0.1:<port>'.
    let host = "SELECT @@port, host FROM information_schema.processlist WHERE id = CONNECTION_ID()";
    c.query_drop("CREATE TABLE IF NOT EXISTS server_socket_t (i int)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO server_socket_t VALUES (1)")
        .await
        .unwrap();
    for _ in 0..4 {
        let (port, from): (u16, String) = c.query_first(host).await.unwrap().unwrap();
        assert!([r1, r2].contains(&port), "a read went to port {port}");
        assert_eq!(from, "localhost", "a read over TCP on {port}");
    }
    // Prepared statements (binary protocol) too, and in a transaction on the primary.
    let stmt = c.prep(host).await.unwrap();
    let (port, from): (u16, String) = c.exec_first(&stmt, ()).await.unwrap().unwrap();
    assert!([r1, r2].contains(&port), "a read went to port {port}");
    assert_eq!(from, "localhost");
    c.query_drop("BEGIN").await.unwrap();
    let (port, from): (u16, String) = c.query_first(host).await.unwrap().unwrap();
    assert_eq!((port, from.as_str()), (cluster.primary_port(), "localhost"));
    c.query_drop("COMMIT").await.unwrap();
    c.disconnect().await.unwrap();
}
