//! Operational admin endpoints: the `/api` bearer-token check and pause / resume.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AdminState;
use crate::config::values::parse_duration;
use crate::topology::ServerMode;

/// Rejects `/api/*` requests without the configured bearer token (constant-time compare).
pub(super) async fn require_token(
    State(st): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    let current = st.token.load_full();
    let Some(token) = current.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        next.run(req).await
    } else {
        tracing::warn!(path = %req.uri().path(), "admin API request without a valid token");
        let body = json!({ "error": "missing or wrong bearer token (admin.token)" });
        (StatusCode::UNAUTHORIZED, Json(body)).into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct PauseArgs {
    cluster: Option<String>,
    timeout: Option<String>,
}

/// `POST /api/pause`: wait for open transactions, then hold new requests.
pub(super) async fn pause(
    State(st): State<Arc<AdminState>>,
    Query(args): Query<PauseArgs>,
) -> Response {
    let timeout = match args.timeout.as_deref().map(parse_duration) {
        None => Duration::from_secs(30),
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            let body = json!({ "error": format!("bad timeout: {e}") });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let targets: Vec<_> = st
        .pauses
        .iter()
        .filter(|(n, _)| args.cluster.as_deref().is_none_or(|c| c == n))
        .filter(|(n, _)| !st.paused.lock().iter().any(|(p, _)| p == n))
        .cloned()
        .collect();
    if targets.is_empty()
        && args.cluster.is_some()
        && !st
            .pauses
            .iter()
            .any(|(n, _)| Some(n) == args.cluster.as_ref())
    {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such cluster" })),
        )
            .into_response();
    }
    let mut closed = Vec::new();
    for (name, gate) in targets {
        tracing::warn!(cluster = %name, "pause requested: waiting for open transactions");
        match gate.close(timeout).await {
            Ok(c) => closed.push((name, c)),
            Err(after) => {
                // Nothing paused: reopen what this request closed.
                drop(closed);
                let body = json!({ "error": format!("cluster {name}: transactions still open after {after:?}; nothing paused") });
                return (StatusCode::CONFLICT, Json(body)).into_response();
            }
        }
    }
    let names: Vec<String> = closed.iter().map(|(n, _)| n.clone()).collect();
    st.paused.lock().extend(closed);
    tracing::warn!(clusters = ?names, "paused: new requests are held until resume");
    let all: Vec<String> = st.paused.lock().iter().map(|(n, _)| n.clone()).collect();
    Json(json!({ "paused": all })).into_response()
}

/// `POST /api/resume`: release the held requests.
pub(super) async fn resume(
    State(st): State<Arc<AdminState>>,
    Query(args): Query<PauseArgs>,
) -> Response {
    let mut paused = st.paused.lock();
    let before = paused.len();
    paused.retain(|(n, _)| args.cluster.as_deref().is_some_and(|c| c != n));
    let resumed = before - paused.len();
    tracing::warn!(resumed, "resumed");
    let still: Vec<String> = paused.iter().map(|(n, _)| n.clone()).collect();
    Json(json!({ "resumed": resumed, "paused": still })).into_response()
}

async fn set_mode(st: &AdminState, name: &str, server: String, mode: ServerMode) -> Response {
    let Some(h) = super::handle(st, name) else {
        return super::no_cluster(name);
    };
    tracing::warn!(cluster = %name, server = %server, mode = mode.as_str(), "server mode requested through the admin API");
    match h.set_mode(server.clone(), mode).await {
        Ok(()) => Json(json!({ "server": server, "mode": mode.as_str() })).into_response(),
        Err(e) => (StatusCode::CONFLICT, Json(json!({ "error": e }))).into_response(),
    }
}

pub(super) async fn drain(
    State(st): State<Arc<AdminState>>,
    Path((name, server)): Path<(String, String)>,
) -> Response {
    set_mode(&st, &name, server, ServerMode::Drain).await
}

pub(super) async fn maintenance(
    State(st): State<Arc<AdminState>>,
    Path((name, server)): Path<(String, String)>,
) -> Response {
    set_mode(&st, &name, server, ServerMode::Maintenance).await
}

pub(super) async fn enable(
    State(st): State<Arc<AdminState>>,
    Path((name, server)): Path<(String, String)>,
) -> Response {
    set_mode(&st, &name, server, ServerMode::Enabled).await
}

/// `POST /api/reload`: re-read the configuration file and apply what changed. 200 with what
/// was applied and what needs a restart; 422 with the reasons when the file is invalid or the
/// change is refused (the running configuration stays); 500 when it applied only in part.
pub(super) async fn reload(State(st): State<Arc<AdminState>>) -> Response {
    use crate::reload::ReloadError;
    let Some(reloader) = &st.reloader else {
        let body = json!({ "error": ReloadError::NoFile.to_string() });
        return (StatusCode::CONFLICT, Json(body)).into_response();
    };
    match reloader.reload().await {
        Ok(report) => (StatusCode::OK, Json(json!(report))).into_response(),
        Err(e) => {
            let status = match e {
                ReloadError::Partial(_) => StatusCode::INTERNAL_SERVER_ERROR,
                ReloadError::NoFile => StatusCode::CONFLICT,
                ReloadError::Invalid(_) | ReloadError::Refused(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
            };
            (status, Json(json!({ "error": e.to_string() }))).into_response()
        }
    }
}

/// `GET /api/pools`: every transaction pool with its use.
pub(super) async fn pools(State(st): State<Arc<AdminState>>) -> Response {
    let clusters: Vec<serde_json::Value> = st
        .contexts
        .iter()
        .map(|ctx| {
            let config = ctx.config();
            let server = |i: usize| config.servers.get(i).map_or("", |s| s.name.as_str());
            let mut pools: Vec<serde_json::Value> = Vec::new();
            for (k, p) in ctx.pg_pools.all() {
                pools.push(pool_json(server(k.server), &p.stats()));
            }
            for (k, p) in ctx.my_pools.all() {
                pools.push(pool_json(server(k.server), &p.stats()));
            }
            let pinned: serde_json::Map<String, serde_json::Value> = ctx
                .metrics
                .pinned_now(&ctx.name)
                .into_iter()
                .map(|(reason, n)| (reason, json!(n)))
                .collect();
            json!({
                "name": ctx.name,
                "clients": ctx.metrics.client_gauge(&ctx.name).get(),
                "pinned": pinned,
                "mode": match config.pool.mode {
                    crate::config::PoolMode::Session => "session",
                    crate::config::PoolMode::Transaction => "transaction",
                },
                "pools": pools,
            })
        })
        .collect();
    Json(json!({ "clusters": clusters })).into_response()
}

fn pool_json(server: &str, s: &crate::pool::PoolStats) -> serde_json::Value {
    json!({
        "server": server,
        "user": s.user,
        "size": s.size,
        "idle": s.idle,
        "in_use": s.in_use,
        "waiting": s.waiting,
    })
}
