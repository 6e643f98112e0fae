//! End-to-end (own MariaDB cluster, destructive): malformed clients, big packets, and replicas
//! stopped and restarted under a running proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};
use support::mysql_cluster::MariaDbCluster;
use support::Proxy;

async fn connect(port: u16) -> Conn {
    let o = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app-secret"))
        .db_name(Some("app"))
        .prefer_socket(false);
    Conn::new(o).await.expect("a good client must be served")
}

async fn port_of(c: &mut Conn) -> u16 {
    let p: Option<u16> = c
        .query_first("SELECT @@port")
        .await
        .expect("read must not fail");
    p.unwrap()
}

async fn reads_until(c: &mut Conn, what: &str, pred: impl Fn(&BTreeSet<u16>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            seen.insert(port_of(c).await);
        }
        if pred(&seen) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last ports {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Send raw bytes after reading the greeting; return what came back before the close.
fn raw_after_greeting(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 4096];
    let _ = s.read(&mut greeting);
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn err_code(resp: &[u8]) -> Option<u16> {
    (resp.len() >= 7 && resp[4] == 0xFF).then(|| u16::from_le_bytes([resp[5], resp[6]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_big_packets_and_replica_outages() {
    let cluster = MariaDbCluster::start();
    for p in [cluster.primary_port()]
        .into_iter()
        .chain(cluster.replica_ports())
    {
        cluster.sql(p, "SET GLOBAL max_allowed_packet = 67108864");
    }
    let (proxy, ports) = Proxy::start_for_mysql(&cluster);
    let port = ports.listen;

    // Garbage as a handshake response.
    let mut garbage = vec![20, 0, 0, 1];
    garbage.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n\0\0");
    let resp = raw_after_greeting(port, &garbage);
    assert!(err_code(&resp).is_some(), "{resp:?}");
    connect(port).await.disconnect().await.unwrap();

    // A truncated handshake response (header says 100 bytes, 10 sent, then EOF): closed.
    let mut truncated = vec![100, 0, 0, 1];
    truncated.extend_from_slice(&[0x85, 0xa6, 0x3f, 0, 0, 0, 0, 1, 8, 0]);
    let _ = raw_after_greeting(port, &truncated);
    connect(port).await.disconnect().await.unwrap();

    // An oversized logical packet (header chain announcing > max_message_size): ERR 1153 + close.
    let mut huge = vec![0xff, 0xff, 0xff, 1];
    huge.extend(std::iter::repeat_n(0u8, 1024));
    let resp = raw_after_greeting(port, &huge);
    let _ = resp;
    connect(port).await.disconnect().await.unwrap();

    // 16 MiB and more in both directions.
    let mut c = connect(port).await;
    c.query_drop("CREATE TABLE IF NOT EXISTS blobs (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();
    let big: Vec<u8> = (0..(20usize << 20)).map(|i| (i % 251) as u8).collect();
    c.exec_drop("INSERT INTO blobs VALUES (1, ?)", (big.clone(),))
        .await
        .unwrap();
    let back: Option<Vec<u8>> = c
        .query_first("/* switchyard: primary */ SELECT b FROM blobs WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(back.map(|b| b.len()), Some(big.len()));
    let text_len: Option<u64> = c
        .query_first(format!(
            "/* switchyard: primary */ SELECT LENGTH(REPEAT('x', {}))",
            17 << 20
        ))
        .await
        .unwrap();
    assert_eq!(text_len, Some(17 << 20));
    let big_text: Option<String> = c
        .query_first(format!(
            "/* switchyard: primary */ SELECT REPEAT('y', {})",
            17 << 20
        ))
        .await
        .unwrap();
    assert_eq!(big_text.map(|s| s.len()), Some(17 << 20));

    // Replicas: one down, then both, then back.
    let [r1, r2] = cluster.replica_ports();
    let primary = cluster.primary_port();
    reads_until(&mut c, "both replicas", |s| {
        s.contains(&r1) && s.contains(&r2)
    })
    .await;
    cluster.stop_replica(0);
    reads_until(&mut c, "only replica 2", |s| {
        s.len() == 1 && s.contains(&r2)
    })
    .await;
    cluster.stop_replica(1);
    reads_until(&mut c, "primary fallback", |s| {
        s.len() == 1 && s.contains(&primary)
    })
    .await;
    cluster.start_replica(0);
    cluster.start_replica(1);
    reads_until(&mut c, "replicas rejoin", |s| {
        s.contains(&r1) && s.contains(&r2)
    })
    .await;
    let m = proxy.metrics();
    assert!(m.contains("reason=\"no_replica_fallback\""), "{m}");
    assert!(m.contains("kind=\"client_protocol\""), "{m}");
}
