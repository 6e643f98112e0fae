//! Admin HTTP listener: metrics, liveness, readiness and the topology API.
//!
//! Endpoints (anything else is 404, a wrong method 405):
//! - `/metrics`: Prometheus text exposition (`text/plain; version=0.0.4`) of every metric.
//! - `/health`: `200 ok` while the process runs (liveness).
//! - `/ready`: `200 {"ready":true}` when every cluster has a healthy primary, else
//!   `503 {"ready":false,"reason":...,"clusters_without_primary":[...]}` (readiness).
//! - `/api/clusters`: JSON `{"clusters":[{name, epoch, primary, servers:[{name, address, role,
//!   health, replicating, lag_seconds, lag_bytes, weight, last_error, state, state_reason,
//!   lag_alert}]}]}`; `lag_seconds` and `lag_bytes` are `null` when unknown, `primary` is `null`
//!   when there is no unique healthy one. `state` is the replication state (`primary`, `healthy`,
//!   `lagging`, `unknown`, `broken`, `down`; only `healthy` replicas take reads), `state_reason` a
//!   token saying why (e.g. `lag_over_max_replica_lag`, `readmit_hold`), `lag_alert` whether the
//!   lag is over `routing.lag_alert`. Each cluster also says `failover` (the phase: `idle`,
//!   `primary_unreachable`, `primary_failed`, `no_candidate`, `promoting`, `switchover`,
//!   `split_brain`) and `split_brain`; each server whether it is `fenced`.
//! - `POST /api/clusters/{name}/switchover` (optional JSON body `{"target": "<server>"}`):
//!   planned switchover; answers when writes are released: `200 {"old","new","old_rejoined",
//!   "took_ms","warning"}`, `409 {"error"}` when refused or aborted (roles then unchanged).
//! - `POST /api/clusters/{name}/servers/{server}/fence` and `.../unfence`: an operator fences a
//!   server (no reads, no writes through the proxy) or lifts a fence (e.g. after rebuilding a
//!   former primary as a replica).
//! - `POST /api/clusters/{name}/servers/{server}/drain`: no new reads on that replica (sessions in a
//!   transaction or pinned there finish); `.../maintenance`: no reads at all (sessions tied to it
//!   lose that connection); `.../enable`: back. Refused (409) for the primary: switch over first.
//! - `GET /api/pools`: per cluster: `mode`, `clients` (connected now), `pinned` (sessions pinned
//!   now, by reason) and its transaction pools: server, user, size, idle, in_use, waiting.
//! - `POST /api/pause` (optional `?cluster=NAME&timeout=30s`): like PgBouncer `PAUSE`: waits for
//!   open transactions to end (up to `timeout`, default 30s, else 409 and nothing paused), then
//!   holds every new request until `POST /api/resume` (`?cluster=NAME` optional).
//! - `POST /api/reload`: re-read the config file and apply what changed (like `SIGHUP`; see
//!   `crate::reload`): `200 {"applied":[...],"restart_needed":[...]}`; `422 {"error"}` when the
//!   file is invalid or the change is refused (running config unchanged); `500` when only part
//!   of it applied; `409` when the proxy runs without a config file.
//!   A server removed by a reload shows `mode: removed` in `/api/clusters`.
//!
//! With `admin.token` set, every `/api/*` request needs `Authorization: Bearer <token>` (401
//! otherwise); `/metrics`, `/health` and `/ready` stay open for scrapers and probes.

pub mod json;
mod ops;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::failover::gate::{Closed, WriteGate};
use crate::failover::FailoverHandle;
use crate::metrics::Metrics;
use crate::topology::model::Topology;

pub use json::{clusters_json, readiness, ClusterSnapshot};

/// Content type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin handlers read.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// Each cluster's name and the receiving end of its monitor's snapshot channel.
    pub clusters: Vec<(String, watch::Receiver<Arc<Topology>>)>,
    /// Each cluster's failover command handle, by name.
    pub failover: Vec<(String, FailoverHandle)>,
    /// Bearer token `/api/*` requires (`None` = open); a reload may change it.
    pub token: Arc<arc_swap::ArcSwap<Option<String>>>,
    /// Applies `POST /api/reload` (`None`: refused).
    pub reloader: Option<Arc<crate::reload::Reloader>>,
    /// Each cluster's pause gate, by name.
    pub pauses: Vec<(String, WriteGate)>,
    /// The closed pause gates of paused clusters.
    pub paused: parking_lot::Mutex<Vec<(String, Closed)>>,
    /// Each cluster's shared session state (pools), by name.
    pub contexts: Vec<Arc<crate::frontend::cluster::ClusterCtx>>,
}

impl AdminState {
    /// The current snapshot of every cluster, in config order.
    pub fn snapshots(&self) -> Vec<ClusterSnapshot> {
        self.clusters
            .iter()
            .map(|(name, rx)| (name.clone(), rx.borrow().clone()))
            .collect()
    }
}

/// The admin routes over a shared state (exposed for tests and embedding).
pub fn router(state: Arc<AdminState>) -> Router {
    let api = Router::new()
        .route("/api/clusters", get(clusters))
        .route("/api/clusters/{name}/switchover", post(switchover))
        .route("/api/clusters/{name}/servers/{server}/fence", post(fence))
        .route(
            "/api/clusters/{name}/servers/{server}/unfence",
            post(unfence),
        )
        .route(
            "/api/clusters/{name}/servers/{server}/drain",
            post(ops::drain),
        )
        .route(
            "/api/clusters/{name}/servers/{server}/maintenance",
            post(ops::maintenance),
        )
        .route(
            "/api/clusters/{name}/servers/{server}/enable",
            post(ops::enable),
        )
        .route("/api/pools", get(ops::pools))
        .route("/api/pause", post(ops::pause))
        .route("/api/reload", post(ops::reload))
        .route("/api/resume", post(ops::resume))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::require_token,
        ));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(api)
        .with_state(state)
}

/// Serves the admin API on `listener` until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin listener started");
    }
    axum::serve(listener, router(Arc::new(state)))
        .with_graceful_shutdown(async move { cancel.cancelled_owned().await })
        .await
}

async fn metrics(State(st): State<Arc<AdminState>>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        st.metrics.render(),
    )
        .into_response()
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(st): State<Arc<AdminState>>) -> Response {
    match readiness(&st.snapshots()) {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(body) => (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response(),
    }
}

async fn clusters(State(st): State<Arc<AdminState>>) -> Response {
    Json(clusters_json(&st.snapshots())).into_response()
}

pub(super) fn handle<'a>(st: &'a AdminState, name: &str) -> Option<&'a FailoverHandle> {
    st.failover.iter().find(|(n, _)| n == name).map(|(_, h)| h)
}

pub(super) fn no_cluster(name: &str) -> Response {
    let body = json!({ "error": format!("no cluster named {name:?}") });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn switchover(
    State(st): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(h) = handle(&st, &name) else {
        return no_cluster(&name);
    };
    let target = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => match v.get("target") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(t)) => Some(t.clone()),
                Some(_) => {
                    let body = json!({ "error": "`target` must be a server name" });
                    return (StatusCode::BAD_REQUEST, Json(body)).into_response();
                }
            },
            Err(e) => {
                let body = json!({ "error": format!("body is not JSON: {e}") });
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
        }
    };
    tracing::warn!(cluster = %name, target = ?target, "switchover requested through the admin API");
    match h.switchover(target).await {
        Ok(r) => {
            let server = |i: usize| st_server_name(&st, &name, i);
            let body = json!({
                "old": server(r.old),
                "new": r.new.map(server),
                "old_rejoined": r.old_rejoined,
                "took_ms": r.took.as_millis() as u64,
                "warning": r.error,
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, Json(json!({ "error": e }))).into_response(),
    }
}

/// A server's name from the cluster's current snapshot.
fn st_server_name(st: &AdminState, cluster: &str, index: usize) -> String {
    st.clusters
        .iter()
        .find(|(n, _)| n == cluster)
        .and_then(|(_, rx)| rx.borrow().servers.get(index).map(|s| s.name.clone()))
        .unwrap_or_default()
}

async fn fence(
    State(st): State<Arc<AdminState>>,
    Path((name, server)): Path<(String, String)>,
) -> Response {
    set_fence(&st, &name, server, true).await
}

async fn unfence(
    State(st): State<Arc<AdminState>>,
    Path((name, server)): Path<(String, String)>,
) -> Response {
    set_fence(&st, &name, server, false).await
}

async fn set_fence(st: &AdminState, name: &str, server: String, fenced: bool) -> Response {
    let Some(h) = handle(st, name) else {
        return no_cluster(name);
    };
    tracing::warn!(cluster = %name, server = %server, fenced, "fence change requested through the admin API");
    match h.fence(server.clone(), fenced).await {
        Ok(()) => Json(json!({ "server": server, "fenced": fenced })).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, Json(json!({ "error": e }))).into_response(),
    }
}

#[cfg(test)]
mod tests;
