//! End-to-end: TLS towards clients on both protocols (psql, tokio-postgres + rustls, PostgreSQL 17
//! direct TLS, client certificates, the `mariadb` CLI, mysql_async + rustls, a MySQL SSL request
//! and ClientHello in one segment, caching_sha2 over TLS), `mode: require`, and TLS config
//! errors. Certificates are generated at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use support::mysql_cluster::shared_mysql;
use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::proxy::psql;
use support::proxy::{SHAAPP_PASSWORD, SHAAPP_USER};
use support::{shared, Proxy, ProxyPorts, MYSQL_APP_PASSWORD, MYSQL_APP_USER};

/// A test CA, a server certificate for localhost/127.0.0.1 and a client certificate for `app`.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki() -> &'static Pki {
    static P: OnceLock<Pki> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-tls-")
            .tempdir()
            .unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "switchyard test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).unwrap();

        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut cparams = CertificateParams::new(Vec::<String>::new()).unwrap();
        cparams
            .distinguished_name
            .push(DnType::CommonName, APP_USER);
        cparams.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = cparams.signed_by(&client_key, &ca, &ca_key).unwrap();

        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // libpq refuses private keys readable by others.
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            p
        };
        Pki {
            ca: write("ca.pem", ca.pem()),
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            _dir: dir,
        }
    })
}

/// `yaml` (a standard proxy config) with a `tls:` section added to its cluster.
fn with_tls(yaml: &str, mode: &str, client_ca: bool) -> String {
    let p = pki();
    let ca = if client_ca {
        format!(", client_ca: \"{}\"", p.ca.display())
    } else {
        String::new()
    };
    let section = format!(
        "    tls: {{ mode: {mode}, cert: \"{}\", key: \"{}\"{ca} }}\n    routing: ",
        p.cert.display(),
        p.key.display()
    );
    assert!(yaml.contains("\n    routing: "));
    yaml.replacen("    routing: ", &section, 1)
}

fn pg_proxy(mode: &str, client_ca: bool) -> (Proxy, ProxyPorts) {
    let (yaml, ports) = Proxy::pg_config(shared());
    let proxy = Proxy::start(&with_tls(&yaml, mode, client_ca));
    proxy.wait_topology(3);
    (proxy, ports)
}

fn mysql_proxy(mode: &str) -> (Proxy, ProxyPorts) {
    let (yaml, ports) = Proxy::mysql_config(shared_mysql());
    let proxy = Proxy::start(&with_tls(&yaml, mode, false));
    proxy.wait_topology(3);
    (proxy, ports)
}

fn pg_conninfo(host: &str, port: u16, extra: &str) -> String {
    format!("host={host} port={port} user={APP_USER} dbname=app {extra}")
}

#[test]
fn psql_sslmode_require_and_verify_full() {
    let (proxy, ports) = pg_proxy("allow", false);
    let (ok, out, err) = psql(
        &pg_conninfo("127.0.0.1", ports.listen, "sslmode=require"),
        "SELECT 40 + 2",
    );
    assert!(ok, "{err}\n{}", proxy.log());
    assert_eq!(out.trim(), "42");

    let ca = pki().ca.display().to_string();
    let conninfo = pg_conninfo(
        "localhost",
        ports.listen,
        &format!("sslmode=verify-full sslrootcert={ca}"),
    );
    let (ok, out, err) = psql(&conninfo, "\\conninfo");
    assert!(ok, "{err}\n{}", proxy.log());
    assert!(out.contains("SSL connection (protocol: TLSv1."), "{out}");
    let (ok, out, err) = psql(&conninfo, "SELECT current_user");
    assert!(ok, "{err}\n{}", proxy.log());
    assert_eq!(out.trim(), APP_USER);

    // `allow`: plain clients are still served.
    let (ok, out, err) = psql(
        &pg_conninfo("127.0.0.1", ports.listen, "sslmode=disable"),
        "\\conninfo",
    );
    assert!(ok, "{err}\n{}", proxy.log());
    assert!(!out.contains("SSL connection"), "{out}");
}

#[test]
fn pg_mode_require_refuses_plaintext() {
    let (proxy, ports) = pg_proxy("require", false);
    let (ok, _, err) = psql(
        &pg_conninfo("127.0.0.1", ports.listen, "sslmode=disable"),
        "SELECT 1",
    );
    assert!(!ok);
    assert!(err.contains("TLS required"), "{err}\n{}", proxy.log());
    let (ok, out, err) = psql(
        &pg_conninfo("127.0.0.1", ports.listen, "sslmode=prefer"),
        "SELECT 7",
    );
    assert!(ok, "{err}\n{}", proxy.log());
    assert_eq!(out.trim(), "7");
}

#[test]
fn pg_tls_disabled_answers_n() {
    let (proxy, ports) = Proxy::start_for(shared());
    proxy.wait_topology(3);
    let (ok, _, err) = psql(
        &pg_conninfo("127.0.0.1", ports.listen, "sslmode=require"),
        "SELECT 1",
    );
    assert!(!ok);
    assert!(err.contains("does not support SSL"), "{err}");
    let (ok, out, err) = psql(
        &pg_conninfo("127.0.0.1", ports.listen, "sslmode=prefer"),
        "SELECT 1",
    );
    assert!(ok, "{err}\n{}", proxy.log());
    assert_eq!(out.trim(), "1");
}

#[test]
fn pg_client_certificates_are_required_with_client_ca() {
    let (proxy, ports) = pg_proxy("require", true);
    let p = pki();
    let ca = p.ca.display();
    let with_cert = format!(
        "sslmode=verify-full sslrootcert={ca} sslcert={} sslkey={}",
        p.client_cert.display(),
        p.client_key.display()
    );
    let (ok, out, err) = psql(
        &pg_conninfo("localhost", ports.listen, &with_cert),
        "SELECT 5",
    );
    assert!(ok, "{err}\n{}", proxy.log());
    assert_eq!(out.trim(), "5");
    // Without a certificate the handshake fails.
    let (ok, _, err) = psql(
        &pg_conninfo(
            "localhost",
            ports.listen,
            &format!("sslmode=verify-full sslrootcert={ca} sslcert=/nonexistent"),
        ),
        "SELECT 5",
    );
    assert!(!ok, "a client without certificate got in: {err}");
}

fn rustls_client(ca: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in switchyard::tls::load_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(switchyard::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

#[tokio::test]
async fn tokio_postgres_rustls_connects_with_the_ca() {
    let (proxy, ports) = pg_proxy("require", false);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_client(&pki().ca, &[]));
    let conn_str = format!(
        "host=localhost port={} user={APP_USER} password={APP_PASSWORD} dbname=app sslmode=require",
        ports.listen
    );
    let (client, conn) = tokio_postgres::connect(&conn_str, tls)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    tokio::spawn(conn);
    let row = client.query_one("SELECT 6 * 7", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let rows = client
        .query("SELECT g FROM generate_series(1, 2000) g", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2000);
}

#[tokio::test]
async fn scram_sha_256_plus_binds_to_the_proxy_certificate() {
    let (proxy, ports) = pg_proxy("require", false);
    let ca = pki().ca.display().to_string();
    // libpq: channel_binding=require fails unless SCRAM-SHA-256-PLUS really ran.
    let (ok, out, err) = psql(
        &pg_conninfo(
            "localhost",
            ports.listen,
            &format!("sslmode=verify-full sslrootcert={ca} channel_binding=require"),
        ),
        "SELECT 7",
    );
    assert!(
        ok && out.trim() == "7",
        "psql channel_binding=require: {err}\n{}",
        proxy.log()
    );
    // libpq without binding still gets plain SCRAM-SHA-256 on the same TLS listener.
    let (ok, out, err) = psql(
        &pg_conninfo(
            "localhost",
            ports.listen,
            &format!("sslmode=verify-full sslrootcert={ca} channel_binding=disable"),
        ),
        "SELECT 8",
    );
    assert!(
        ok && out.trim() == "8",
        "psql channel_binding=disable: {err}"
    );
    // tokio-postgres-rustls 0.13 computes no binding data (it parses the certificate as a
    // TBSCertificate, jbg/tokio-postgres-rustls#32), so it answers `n` and must still get in.
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_client(&pki().ca, &[]));
    let conn_str = format!(
        "host=localhost port={} user={APP_USER} password={APP_PASSWORD} dbname=app sslmode=require",
        ports.listen
    );
    let (client, conn) = tokio_postgres::connect(&conn_str, tls)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    tokio::spawn(conn);
    let row = client.query_one("SELECT 6 * 7", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    // Without TLS there is nothing to bind to: libpq refuses to go on.
    let (ok, _, err) = psql(
        &pg_conninfo(
            "127.0.0.1",
            ports.listen,
            "sslmode=disable channel_binding=require",
        ),
        "SELECT 1",
    );
    assert!(!ok, "channel_binding=require without TLS got in: {err}");
}

/// Open a PostgreSQL 17 style direct TLS connection (no SSLRequest) with the given ALPN.
async fn direct_tls(
    port: u16,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(rustls_client(&pki().ca, alpn)));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

#[tokio::test]
async fn pg17_direct_tls_with_alpn() {
    let (proxy, ports) = pg_proxy("require", false);
    let stream = direct_tls(ports.listen, &[b"postgresql"])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(APP_USER)
        .password(APP_PASSWORD)
        .dbname("app")
        .ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, conn) = cfg
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT 'direct'::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "direct");

    // Direct TLS without ALPN is refused after the handshake.
    use tokio::io::AsyncReadExt;
    let mut stream = direct_tls(ports.listen, &[]).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut buf),
    )
    .await
    .expect("the proxy closes a direct TLS connection without ALPN");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.contains("ALPN"), "{text}");
}

/// Run the `mariadb` CLI over TCP; (success, stdout, stderr).
fn mariadb(port: u16, user: &str, password: &str, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{port}"),
            &format!("-u{user}"),
            &format!("-p{password}"),
            "--connect-timeout=10",
            "app",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mariadb client");
    let _ = child.stdin.take().map(|mut s| s.flush());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mariadb_cli_over_tls_with_verified_server_cert() {
    let (proxy, ports) = mysql_proxy("allow");
    let ca = format!("--ssl-ca={}", pki().ca.display());
    let (ok, out, err) = mariadb(
        ports.listen,
        MYSQL_APP_USER,
        MYSQL_APP_PASSWORD,
        &["--ssl", &ca, "--ssl-verify-server-cert", "-e", "status"],
    );
    assert!(ok, "{err}\n{}", proxy.log());
    assert!(out.contains("Cipher in use is"), "{out}");
    let (ok, out, err) = mariadb(
        ports.listen,
        MYSQL_APP_USER,
        MYSQL_APP_PASSWORD,
        &["--ssl", "-N", "-B", "-e", "SELECT 40 + 2"],
    );
    assert!(ok, "{err}\n{}", proxy.log());
    assert_eq!(out.trim(), "42");
    // `allow`: plain clients still get in.
    let (ok, out, err) = mariadb(
        ports.listen,
        MYSQL_APP_USER,
        MYSQL_APP_PASSWORD,
        &["--skip-ssl", "-e", "status"],
    );
    assert!(ok, "{err}\n{}", proxy.log());
    assert!(out.contains("Not in use"), "{out}");
}

/// Read one MySQL packet (sequence id, payload) from a blocking stream.
fn read_my_packet(s: &mut impl std::io::Read) -> (u8, Vec<u8>) {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (head[3], payload)
}

/// Connect to a MySQL listener and read its greeting.
fn mysql_greeting(port: u16) -> (std::net::TcpStream, Vec<u8>) {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let (_, greeting) = read_my_packet(&mut tcp);
    (tcp, greeting)
}

/// One MySQL packet with sequence id `seq`, framed by the proxy's own encoder.
fn my_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    switchyard::wire::mysql::packet::encode_into(&mut b, seq, payload);
    b.to_vec()
}

/// A MySQL client does not wait for an answer to its SSL request: the request and the TLS
/// ClientHello can reach the proxy in one segment (mysql_async over rustls sometimes does this).
/// The ClientHello must go to the handshake, and the login and a query must then work.
#[test]
fn mysql_ssl_request_and_client_hello_in_one_segment() {
    use switchyard::wire::mysql::auth::native_scramble;
    use switchyard::wire::mysql::handshake::{ssl_request, HandshakeResponse, HandshakeV10};
    use switchyard::wire::mysql::packet::caps;
    let (proxy, ports) = mysql_proxy("require");
    let (mut tcp, greeting) = mysql_greeting(ports.listen);
    let hs = HandshakeV10::parse(&greeting).unwrap();
    assert_ne!(hs.capabilities & caps::CLIENT_SSL, 0);
    let want = caps::CLIENT_PROTOCOL_41
        | caps::CLIENT_SECURE_CONNECTION
        | caps::CLIENT_PLUGIN_AUTH
        | caps::CLIENT_CONNECT_WITH_DB
        | caps::CLIENT_TRANSACTIONS;
    let mut tls = rustls::ClientConnection::new(
        Arc::new(rustls_client(&pki().ca, &[])),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    // One write: the SSL request, then the ClientHello rustls has ready.
    let mut segment = my_packet(1, &ssl_request(want, 1 << 24, 45));
    tls.write_tls(&mut segment).unwrap();
    tcp.write_all(&segment).unwrap();
    let mut s = rustls::StreamOwned::new(tls, tcp);
    let resp = HandshakeResponse {
        capabilities: want | caps::CLIENT_SSL,
        max_packet: 1 << 24,
        charset: 45,
        username: MYSQL_APP_USER.to_string(),
        auth_response: native_scramble(MYSQL_APP_PASSWORD.as_bytes(), &hs.scramble).to_vec(),
        database: Some("app".to_string()),
        auth_plugin: Some("mysql_native_password".to_string()),
        attributes: Vec::new(),
    };
    s.write_all(&my_packet(2, &resp.encode()))
        .unwrap_or_else(|e| panic!("TLS handshake failed: {e}\n{}", proxy.log()));
    let (_, ok) = read_my_packet(&mut s);
    assert_eq!(ok.first(), Some(&0x00), "login: {ok:?}\n{}", proxy.log());
    s.write_all(&my_packet(0, b"\x03SELECT 6 * 7")).unwrap();
    let mut rows = Vec::new();
    loop {
        let (_, p) = read_my_packet(&mut s);
        let end = p.first() == Some(&0xfe) && p.len() < 9 && !rows.is_empty();
        rows.push(p);
        if end && rows.len() > 3 {
            break;
        }
    }
    assert!(
        rows.iter().any(|r| r.as_slice() == b"\x0242"),
        "{rows:?}\n{}",
        proxy.log()
    );
}

/// Plaintext smuggled behind the SSL request (a query where the ClientHello belongs) goes to
/// the TLS handshake, fails it, and is never run; the proxy keeps serving.
#[test]
fn mysql_plaintext_behind_the_ssl_request_is_never_run() {
    use std::io::Read;
    use switchyard::wire::mysql::handshake::ssl_request;
    use switchyard::wire::mysql::packet::caps;
    let (proxy, ports) = mysql_proxy("require");
    let (mut tcp, _) = mysql_greeting(ports.listen);
    let want = caps::CLIENT_PROTOCOL_41 | caps::CLIENT_SECURE_CONNECTION;
    let mut segment = my_packet(1, &ssl_request(want, 1 << 24, 45));
    segment.extend(my_packet(0, b"\x03SELECT 6 * 7"));
    tcp.write_all(&segment).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    assert!(
        !rest.windows(3).any(|w| w == b"\x0242"),
        "the smuggled query ran: {rest:?}"
    );
    let (ok, out, err) = mariadb(
        ports.listen,
        MYSQL_APP_USER,
        MYSQL_APP_PASSWORD,
        &["--ssl", "-N", "-B", "-e", "SELECT 6 * 7"],
    );
    assert!(ok && out.contains("42"), "{out} {err}\n{}", proxy.log());
}

#[test]
fn mysql_mode_require_refuses_plaintext() {
    let (proxy, ports) = mysql_proxy("require");
    let (ok, _, err) = mariadb(
        ports.listen,
        MYSQL_APP_USER,
        MYSQL_APP_PASSWORD,
        &["--skip-ssl", "-e", "SELECT 1"],
    );
    assert!(!ok);
    assert!(err.contains("TLS required"), "{err}\n{}", proxy.log());
    let (ok, out, err) = mariadb(
        ports.listen,
        MYSQL_APP_USER,
        MYSQL_APP_PASSWORD,
        &["--ssl", "-N", "-B", "-e", "SELECT 3"],
    );
    assert!(ok, "{err}\n{}", proxy.log());
    assert_eq!(out.trim(), "3");
}

#[test]
fn caching_sha2_full_auth_over_tls_takes_the_cleartext_password() {
    // A fresh proxy: nothing cached, so the first login is a full authentication.
    let (proxy, ports) = mysql_proxy("require");
    for round in 1..=2 {
        let (ok, out, err) = mariadb(
            ports.listen,
            SHAAPP_USER,
            SHAAPP_PASSWORD,
            &[
                "--ssl",
                "-N",
                "-B",
                "-e",
                "SELECT CURRENT_USER() LIKE 'app@%', 6 * 7",
            ],
        );
        assert!(ok, "login {round}: {err}\n{}", proxy.log());
        assert_eq!(out.trim(), "1\t42", "login {round}");
    }
    let log = proxy.log();
    assert_eq!(
        log.matches("caching_sha2 full authentication in cleartext over TLS")
            .count(),
        1,
        "one full authentication, then the fast path:\n{log}"
    );
    let (ok, _, err) = mariadb(
        ports.listen,
        SHAAPP_USER,
        "not-the-secret",
        &["--ssl", "-e", "SELECT 1"],
    );
    assert!(!ok);
    assert!(err.contains("ERROR 1045 (28000)"), "{err}");
}

#[tokio::test]
async fn mysql_async_over_rustls() {
    use mysql_async::prelude::*;
    let (proxy, ports) = mysql_proxy("require");
    let ssl = mysql_async::SslOpts::default().with_root_certs(vec![pki().ca.clone().into()]);
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(ports.listen)
        .user(Some(MYSQL_APP_USER))
        .pass(Some(MYSQL_APP_PASSWORD))
        .db_name(Some("app"))
        .prefer_socket(false)
        .ssl_opts(Some(ssl));
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    let v: Option<i64> = conn
        .query_first("SELECT 6 * 7")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    assert_eq!(v, Some(42));
    let n: Vec<i64> = conn
        .exec("SELECT ? + seq FROM seq_1_to_500", (1,))
        .await
        .unwrap();
    assert_eq!(n.len(), 500);
    conn.disconnect().await.unwrap();
}

#[test]
fn tls_config_errors_name_their_yaml_path() {
    let base = |tls: &str| {
        format!(
            "clusters:\n  - name: c\n    listen: 127.0.0.1:1\n    servers:\n      - {{address: 127.0.0.1:10}}\n    monitor: {{user: m, password: p}}\n    tls: {tls}\nusers:\n  - {{name: u, password: p}}\n"
        )
    };
    let p = pki();
    let err = |tls: &str| {
        switchyard::config::load_str(&base(tls))
            .unwrap_err()
            .to_string()
    };

    let e = err("{ mode: require }");
    assert!(e.contains("clusters[0].tls.cert: required"), "{e}");
    assert!(e.contains("clusters[0].tls.key: required"), "{e}");
    let e = err(&format!(
        "{{ cert: /nonexistent/cert.pem, key: \"{}\" }}",
        p.key.display()
    ));
    assert!(e.contains("clusters[0].tls.cert: cannot read"), "{e}");
    let e = err(&format!(
        "{{ cert: \"{}\", key: \"{}\" }}",
        p.cert.display(),
        p.cert.display()
    ));
    assert!(e.contains("clusters[0].tls.key:"), "{e}");
    let e = err(&format!(
        "{{ cert: \"{}\", key: \"{}\" }}",
        p.cert.display(),
        p.client_key.display()
    ));
    assert!(e.contains("clusters[0].tls.key: does not fit"), "{e}");
    let e = err(&format!(
        "{{ cert: \"{}\", key: \"{}\", client_ca: \"{}\" }}",
        p.cert.display(),
        p.key.display(),
        p.key.display()
    ));
    assert!(e.contains("clusters[0].tls.client_ca:"), "{e}");
    let e = err("{ mode: sometimes }");
    assert!(e.contains("clusters[0].tls.mode"), "{e}");

    let ok = switchyard::config::load_str(&base(&format!(
        "{{ mode: require, cert: \"{}\", key: \"{}\", client_ca: \"{}\" }}",
        p.cert.display(),
        p.key.display(),
        p.ca.display()
    )))
    .unwrap();
    assert_eq!(
        ok.clusters[0].tls.mode,
        switchyard::config::TlsMode::Require
    );
    assert!(ok.clusters[0].tls.offered().is_some());
    let off = switchyard::config::load_str(&base("{ mode: disable }")).unwrap();
    assert!(off.clusters[0].tls.offered().is_none());
}
