//! Runs MySQL session scripts in a fixed global order over mysql_async (COM_QUERY and
//! COM_STMT_PREPARE/EXECUTE) and records rows, affected rows, last insert id and warning count.

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Params, Row, Value};

use super::drive::{Runner, STEP_TIMEOUT};
use super::{Kind, Outcome, Param, Step};

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

/// Rows, affected rows, last insert id and warning count of a query's (single) result.
async fn outcome<P: mysql_async::prelude::Protocol>(
    result: mysql_async::Result<mysql_async::QueryResult<'_, 'static, P>>,
) -> Outcome {
    let mut result = match result {
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

impl Runner for Target {
    type Conn = Conn;

    async fn connect(&self) -> Result<Conn, String> {
        connect(self).await
    }

    async fn execute(&self, conn: &mut Conn, st: &Step) -> Outcome {
        let mut out = self.execute_raw(conn, st).await;
        // The two runs use two databases (`dxN_d`, `dxN_p`); messages in rows (SHOW WARNINGS:
        // "Unknown table 'dxN_d.t'") name them. Not a difference.
        if let Outcome::Ok { rows, .. } = &mut out {
            for c in rows.iter_mut().flatten().flatten() {
                if c.contains(&self.db) {
                    *c = c.replace(&self.db, "<db>");
                }
            }
        }
        out
    }

    async fn close(&self, conn: Conn) {
        let _ = conn.disconnect().await;
    }
}

impl Target {
    async fn execute_raw(&self, conn: &mut Conn, st: &Step) -> Outcome {
        match &st.kind {
            Kind::Prepared(params) => {
                let values: Vec<Value> = params
                    .iter()
                    .map(|p| match p {
                        Param::Int(i) => Value::Int(*i),
                        Param::Text(t) => Value::Bytes(t.clone().into_bytes()),
                    })
                    .collect();
                outcome(
                    conn.exec_iter(st.sql.as_str(), Params::Positional(values))
                        .await,
                )
                .await
            }
            _ => outcome(conn.query_iter(st.sql.as_str()).await).await,
        }
    }
}
