//! Admin HTTP listener: metrics, liveness, readiness and the topology API.
//!
//! Endpoints (all `GET`; anything else is 404, a wrong method 405):
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
//!   lag is over `routing.lag_alert`.

pub mod json;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/clusters", get(clusters))
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

#[cfg(test)]
mod tests;
