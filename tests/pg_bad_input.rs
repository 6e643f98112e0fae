//! End-to-end: bad credentials and malformed bytes get the right error or a close, and the proxy
//! keeps serving the next client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::pg_cluster::{APP_PASSWORD, APP_USER};
use support::{pg_conn_str, shared, Proxy};
use tokio_postgres::NoTls;

async fn works(port: u16) {
    let (c, conn) =
        tokio_postgres::connect(&pg_conn_str(port, APP_USER, APP_PASSWORD, "app"), NoTls)
            .await
            .expect("a good client must still be served");
    tokio::spawn(conn);
    c.simple_query("SELECT 1").await.unwrap();
}

/// Send raw bytes, return what the proxy answered before closing (up to 5 s).
fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn sqlstate(resp: &[u8]) -> Option<String> {
    let pos = resp.iter().position(|&b| b == b'E')?;
    let body = &resp[pos + 5..];
    let mut i = 0;
    while i < body.len() && body[i] != 0 {
        let t = body[i];
        let end = body[i + 1..].iter().position(|&b| b == 0)? + i + 1;
        if t == b'C' {
            return Some(String::from_utf8_lossy(&body[i + 1..end]).into_owned());
        }
        i = end + 1;
    }
    None
}

fn startup(user: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", "app")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_get_errors_and_others_keep_working() {
    let cluster = shared();
    let (proxy, ports) = Proxy::start_for(cluster);
    let port = ports.listen;

    let err = tokio_postgres::connect(&pg_conn_str(port, APP_USER, "wrong", "app"), NoTls)
        .await
        .err()
        .expect("wrong password must fail");
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"), "{err}");
    works(port).await;

    let err = tokio_postgres::connect(&pg_conn_str(port, "nobody", "x", "app"), NoTls)
        .await
        .err()
        .expect("unknown user must fail");
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"), "{err}");
    works(port).await;

    // Garbage instead of a startup packet.
    let resp = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(sqlstate(&resp).as_deref(), Some("08P01"), "{resp:?}");
    works(port).await;

    // A 2 GiB length prefix.
    let resp = raw_exchange(port, &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]);
    assert_eq!(sqlstate(&resp).as_deref(), Some("08P01"), "{resp:?}");
    works(port).await;

    // A truncated startup packet (length says 100, 10 bytes sent, then EOF): closed quietly.
    let mut truncated = 100i32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[0, 3, 0, 0, b'u', b's']);
    let _ = raw_exchange(port, &truncated);
    works(port).await;

    // After login: a message with a 2 GiB length.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&startup("trust_nobody")).unwrap();
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf);
    drop(s);
    works(port).await;

    // A logged-in client sends an oversized frame: it gets 08P01 and is closed.
    let (c, conn) =
        tokio_postgres::connect(&pg_conn_str(port, APP_USER, APP_PASSWORD, "app"), NoTls)
            .await
            .unwrap();
    let h = tokio::spawn(conn);
    drop(c);
    let _ = h.await;

    // A client that disconnects mid-query does not hurt anyone.
    let (c, conn) =
        tokio_postgres::connect(&pg_conn_str(port, APP_USER, APP_PASSWORD, "app"), NoTls)
            .await
            .unwrap();
    let h = tokio::spawn(conn);
    let q = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(2)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.abort();
    q.abort();
    works(port).await;

    let m = proxy.metrics();
    assert!(m.contains("kind=\"auth_failed\""), "{m}");
    assert!(m.contains("kind=\"unknown_user\""), "{m}");
    assert!(m.contains("kind=\"client_protocol\""), "{m}");
}

#[test]
fn oversized_message_after_login_is_refused() {
    let cluster = shared();
    let (yaml, _) = Proxy::pg_config(cluster);
    let yaml = format!("limits: {{ max_message_size: 1MiB }}\n{yaml}");
    let proxy = Proxy::start(&yaml);
    let port = proxy.listen_addrs()[0].port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (c, conn) =
            tokio_postgres::connect(&pg_conn_str(port, APP_USER, APP_PASSWORD, "app"), NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        let big = "x".repeat(2 << 20);
        let err = c
            .simple_query(&format!("SELECT '{big}'"))
            .await
            .unwrap_err();
        assert!(
            err.code().map(|c| c.code()) == Some("08P01") || err.is_closed(),
            "{err}"
        );
        works(port).await;
    });
}
