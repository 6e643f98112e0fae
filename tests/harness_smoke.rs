//! Smoke test of the e2e harness: a real primary + two streaming replicas, and the HTTP parser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::http::parse_response;
use support::pg_cluster::{
    APP_PASSWORD, CLEAR_PASSWORD, CLEAR_USER, MD5_PASSWORD, MD5_USER, TRUST_USER,
};
use support::PgCluster;

#[test]
fn cluster_replicates_and_replica_restarts() {
    let c = PgCluster::start();
    let p = c.primary_port();
    let [r1, r2] = c.replica_ports();
    assert_eq!(c.psql(p, "postgres", "SELECT pg_is_in_recovery()"), "f");
    for r in [r1, r2] {
        assert_eq!(c.psql(r, "postgres", "SELECT pg_is_in_recovery()"), "t");
    }

    c.psql(p, "app", "CREATE TABLE smoke (id int PRIMARY KEY, v text)");
    c.psql(p, "app", "INSERT INTO smoke VALUES (1, 'one'), (2, 'two')");
    c.wait_replicas_caught_up();
    for r in [r1, r2] {
        assert_eq!(
            c.psql(r, "app", "SELECT string_agg(v, ',' ORDER BY id) FROM smoke"),
            "one,two"
        );
    }

    // Replicas are read-only.
    let err = c
        .try_psql(r1, "app", "INSERT INTO smoke VALUES (3, 'three')")
        .unwrap_err();
    assert!(err.contains("read-only"), "{err}");

    // Each auth flavour the proxy tests rely on works directly against the servers.
    let as_user = |user: &str, pw: &str| c.try_psql_as(p, user, pw, "app", "SELECT current_user");
    assert_eq!(as_user("app", APP_PASSWORD).unwrap(), "app");
    assert_eq!(as_user(MD5_USER, MD5_PASSWORD).unwrap(), MD5_USER);
    assert_eq!(as_user(TRUST_USER, "").unwrap(), TRUST_USER);
    assert_eq!(as_user(CLEAR_USER, CLEAR_PASSWORD).unwrap(), CLEAR_USER);
    assert!(as_user("app", "wrong").is_err());
    let stored = c.psql(
        p,
        "postgres",
        &format!("SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = '{MD5_USER}'"),
    );
    assert_eq!(stored, "md5");
    assert_eq!(
        c.psql(r2, "postgres", "SELECT count(*) FROM pg_roles WHERE rolname IN ('app', 'md5user', 'trustuser', 'clearuser')"),
        "4"
    );

    // Stop replica 0: it leaves pg_stat_replication; writes continue; after restart it catches up.
    c.stop_replica(0);
    assert!(c.try_psql(r1, "postgres", "SELECT 1").is_err());
    assert_eq!(
        c.psql(
            p,
            "postgres",
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'replica1'"
        ),
        "0"
    );
    c.psql(p, "app", "INSERT INTO smoke VALUES (3, 'three')");
    c.start_replica(0);
    c.wait_replicas_caught_up();
    assert_eq!(c.psql(r1, "app", "SELECT count(*) FROM smoke"), "3");
    assert_eq!(c.psql(r2, "app", "SELECT count(*) FROM smoke"), "3");

    let dir = c.dir().to_path_buf();
    assert!(dir.join("primary").is_dir());
    drop(c);
    assert!(!dir.exists(), "cluster dir not removed");
}

#[test]
fn http_parser_handles_length_chunked_and_eof_bodies() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";
    assert_eq!(parse_response(raw).unwrap(), (200, "hello".to_string()));

    let raw = b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n4\r\nnot \r\n5;x=y\r\nready\r\n0\r\n\r\n";
    assert_eq!(parse_response(raw).unwrap(), (503, "not ready".to_string()));

    let raw = b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\nmissing";
    assert_eq!(parse_response(raw).unwrap(), (404, "missing".to_string()));

    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    assert!(
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
    );
}

#[test]
fn http_get_talks_to_a_real_socket() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).to_string();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        req
    });
    assert_eq!(support::http_get(addr, "/health"), (200, "ok".to_string()));
    let req = server.join().unwrap();
    assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
}

#[test]
fn shared_cluster_is_started_once_per_binary() {
    // Never dropped: the reaper stops it and removes its dir after this test binary exits.
    let a = support::shared();
    let b = support::shared();
    assert!(std::ptr::eq(a, b));
    assert_eq!(
        a.psql(a.primary_port(), "app", "SELECT current_database()"),
        "app"
    );
    assert_eq!(
        a.psql(
            a.replica_ports()[1],
            "postgres",
            "SELECT pg_is_in_recovery()"
        ),
        "t"
    );
}
