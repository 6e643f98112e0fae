//! Runs MySQL session scripts in a fixed global order over mysql_async (COM_QUERY and
//! COM_STMT_PREPARE/EXECUTE) and records rows, affected rows, last insert id and warning count.

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Params, Row, Value};

use super::{Kind, Outcome, Param, Step};

/// Longest a statement (or a connect) may take before the run is declared stuck.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a run connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub db: String,
    pub user: String,
    pub password: String,
}

async fn connect(t: &Target) -> Result<Conn, String> {
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(t.port)
        .user(Some(t.user.clone()))
        .pass(Some(t.password.clone()))
        .db_name(Some(t.db.clone()))
        .prefer_socket(false);
    tokio::time::timeout(STEP_TIMEOUT, Conn::new(opts))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))
}

fn error_outcome(e: &mysql_async::Error) -> Outcome {
    match e {
        mysql_async::Error::Server(s) => {
            Outcome::err(format!("{}/{}", s.code, s.state), &s.message)
        }
        other => Outcome::err("IO", other.to_string()),
    }
}

fn cell(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn rows_of(rows: Vec<Row>) -> Vec<Vec<Option<String>>> {
    rows.into_iter()
        .map(|r| r.unwrap().iter().map(cell).collect())
        .collect()
}

fn ok(rows: Vec<Row>, affected: u64, id: Option<u64>, warnings: u16) -> Outcome {
    Outcome::Ok {
        rows: rows_of(rows),
        affected: Some(affected),
        last_insert_id: id,
        warnings: if warnings > 0 {
            vec![warnings.to_string()]
        } else {
            Vec::new()
        },
        notifications: Vec::new(),
    }
}

async fn text(conn: &mut Conn, sql: &str) -> Outcome {
    let mut result = match conn.query_iter(sql).await {
        Ok(r) => r,
        Err(e) => return error_outcome(&e),
    };
    let rows: Vec<Row> = match result.collect().await {
        Ok(rows) => rows,
        Err(e) => return error_outcome(&e),
    };
    let (affected, id, warnings) = (
        result.affected_rows(),
        result.last_insert_id(),
        result.warnings(),
    );
    if let Err(e) = result.drop_result().await {
        return error_outcome(&e);
    }
    ok(rows, affected, id, warnings)
}

async fn prepared(conn: &mut Conn, sql: &str, params: &[Param]) -> Outcome {
    let values: Vec<Value> = params
        .iter()
        .map(|p| match p {
            Param::Int(i) => Value::Int(*i),
            Param::Text(t) => Value::Bytes(t.clone().into_bytes()),
        })
        .collect();
    let mut result = match conn.exec_iter(sql, Params::Positional(values)).await {
        Ok(r) => r,
        Err(e) => return error_outcome(&e),
    };
    let rows: Vec<Row> = match result.collect().await {
        Ok(rows) => rows,
        Err(e) => return error_outcome(&e),
    };
    let (affected, id, warnings) = (
        result.affected_rows(),
        result.last_insert_id(),
        result.warnings(),
    );
    if let Err(e) = result.drop_result().await {
        return error_outcome(&e);
    }
    ok(rows, affected, id, warnings)
}

async fn close(conn: Conn) {
    let _ = tokio::time::timeout(STEP_TIMEOUT, conn.disconnect()).await;
}

async fn step(slot: &mut Option<Conn>, target: &Target, st: &Step) -> Outcome {
    if st.kind == Kind::Reconnect {
        if let Some(c) = slot.take() {
            close(c).await;
        }
        return match connect(target).await {
            Ok(c) => {
                *slot = Some(c);
                Outcome::ok_rows(Vec::new(), None)
            }
            Err(e) => Outcome::err("CONNECT", e),
        };
    }
    let Some(conn) = slot.as_mut() else {
        return Outcome::err("NO-CONNECTION", "the session has no connection");
    };
    match &st.kind {
        Kind::Prepared(params) => prepared(conn, &st.sql, params).await,
        _ => text(conn, &st.sql).await,
    }
}

/// Run `scripts` against `target` in `order`; one outcome per position. Stops early (fewer
/// outcomes) when a statement does not finish within [`STEP_TIMEOUT`].
pub async fn run(target: &Target, scripts: &[Vec<Step>], order: &[usize]) -> Vec<Outcome> {
    let mut conns: Vec<Option<Conn>> = Vec::new();
    for _ in scripts {
        conns.push(connect(target).await.ok());
    }
    let mut next = vec![0usize; scripts.len()];
    let mut out = Vec::with_capacity(order.len());
    for &s in order {
        let st = &scripts[s][next[s]];
        next[s] += 1;
        match tokio::time::timeout(STEP_TIMEOUT, step(&mut conns[s], target, st)).await {
            Ok(o) => out.push(o),
            Err(_) => {
                eprintln!(
                    "differential: statement stuck for {STEP_TIMEOUT:?}: session {s}: {}",
                    st.sql
                );
                break;
            }
        }
    }
    for c in conns.into_iter().flatten() {
        close(c).await;
    }
    out
}
