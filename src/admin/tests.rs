//! Admin listener tests over a real loopback socket with plain HTTP/1.1 requests.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::topology::model::{Health, Lag, ReplicaState, Role, ServerState};

fn topo(primary_up: bool) -> Arc<Topology> {
    Arc::new(Topology {
        cluster: "main".into(),
        epoch: 1,
        servers: vec![ServerState {
            index: 0,
            name: "db0".into(),
            address: "127.0.0.1:5432".into(),
            role: if primary_up {
                Role::Primary
            } else {
                Role::Unknown
            },
            health: if primary_up { Health::Up } else { Health::Down },
            replicating: false,
            lag: Lag::Unknown,
            gtid_behind: None,
            weight: 1,
            checked_at: None,
            last_error: None,
            state: if primary_up {
                ReplicaState::Primary
            } else {
                ReplicaState::Down
            },
            state_reason: "test",
            lag_alert: false,
            fenced: false,
            mode: crate::topology::ServerMode::Enabled,
        }],
        failover: "idle",
    })
}

/// Sends one request and returns (status, headers, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn endpoints_answer_and_shutdown_is_graceful() {
    let (tx, rx) = watch::channel(topo(false));
    let metrics = Metrics::new();
    metrics.server_up.with_label_values(&["main", "db0"]).set(1);
    let state = AdminState {
        metrics,
        clusters: vec![("main".into(), rx)],
        failover: Vec::new(),
        token: Default::default(),
        reloader: None,
        pauses: Vec::new(),
        paused: Default::default(),
        contexts: Vec::new(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve(listener, state, cancel.clone()));

    let (st, head, body) = get(addr, "/health").await;
    assert_eq!((st, body.as_str()), (200, "ok"));
    assert!(head.contains("content-type: text/plain"));

    let (st, head, body) = get(addr, "/metrics").await;
    assert_eq!(st, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"));
    assert!(body.contains("switchyard_server_up{cluster=\"main\",server=\"db0\"} 1"));

    let (st, head, body) = get(addr, "/ready").await;
    assert_eq!(st, 503);
    assert!(head.contains("application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["clusters_without_primary"][0], "main");

    tx.send_replace(topo(true));
    let (st, _, body) = get(addr, "/ready").await;
    assert_eq!(st, 200);
    assert_eq!(body, r#"{"ready":true}"#);

    let (st, _, body) = get(addr, "/api/clusters").await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["clusters"][0]["servers"][0]["role"], "primary");
    assert_eq!(v["clusters"][0]["primary"], "db0");

    let (st, _, _) = get(addr, "/nope").await;
    assert_eq!(st, 404);

    cancel.cancel();
    let res = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after cancel")
        .unwrap();
    assert!(res.is_ok());
}
