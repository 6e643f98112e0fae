//! Runs PostgreSQL session scripts in a fixed global order over tokio-postgres (simple and extended
//! protocol) and records each statement's outcome, with the notices and notifications it produced.

use std::collections::HashMap;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage, Statement};

use super::drive::{Runner, STEP_TIMEOUT};
use super::{Kind, Outcome, Param, Step};

enum Msg {
    /// SQLSTATE of a notice.
    Notice(String),
    Notify {
        channel: String,
        payload: String,
        pid: i32,
    },
}

pub struct Conn {
    client: Client,
    msgs: UnboundedReceiver<Msg>,
    prepared: HashMap<String, Statement>,
    /// The BackendKeyData pid ([`client_pid`]).
    pid: i32,
}

/// Where a run connects: port and database, as user `user`/`password`.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub db: String,
    pub user: String,
    pub password: String,
}

/// The pid of the client's BackendKeyData (libpq's `PQbackendPID`): the number the session's own
/// notifications carry, direct and through the proxy (whose `pg_backend_pid()` is the pid of
/// whichever server process ran the query). tokio-postgres keeps it private, so the cancel token
/// writes its CancelRequest (length, code, pid, key) into an in-memory pipe and the pid is read
/// back; 0 if that fails.
async fn client_pid(client: &tokio_postgres::Client) -> i32 {
    use tokio::io::AsyncReadExt;
    let (ours, mut theirs) = tokio::io::duplex(64);
    let token = client.cancel_token();
    let _ = tokio::time::timeout(STEP_TIMEOUT, token.cancel_query_raw(ours, NoTls)).await;
    let mut buf = [0u8; 16];
    match tokio::time::timeout(STEP_TIMEOUT, theirs.read_exact(&mut buf)).await {
        Ok(Ok(_)) => i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        _ => 0,
    }
}

async fn connect(t: &Target) -> Result<Conn, String> {
    let s = crate::support::pg_conn_str(t.port, &t.user, &t.password, &t.db);
    let (client, mut conn) = tokio::time::timeout(STEP_TIMEOUT, tokio_postgres::connect(&s, NoTls))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let (tx, msgs) = unbounded_channel();
    tokio::spawn(async move {
        loop {
            let msg = match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notice(n))) => Msg::Notice(n.code().code().to_string()),
                Some(Ok(AsyncMessage::Notification(n))) => Msg::Notify {
                    channel: n.channel().to_string(),
                    payload: n.payload().to_string(),
                    pid: n.process_id(),
                },
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    let pid = client_pid(&client).await;
    Ok(Conn {
        client,
        msgs,
        prepared: HashMap::new(),
        pid,
    })
}

fn error_outcome(e: &tokio_postgres::Error) -> Outcome {
    match e.as_db_error() {
        Some(db) => Outcome::err(db.code().code(), db.message()),
        None => Outcome::err("IO", e.to_string()),
    }
}

async fn text(conn: &Conn, sql: &str) -> Outcome {
    match conn.client.simple_query(sql).await {
        Err(e) => error_outcome(&e),
        Ok(msgs) => {
            let mut rows = Vec::new();
            let mut affected = None;
            for m in msgs {
                match m {
                    SimpleQueryMessage::Row(r) => {
                        rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    SimpleQueryMessage::CommandComplete(n) => affected = Some(n),
                    _ => {}
                }
            }
            Outcome::ok_rows(rows, affected)
        }
    }
}

fn cell(row: &tokio_postgres::Row, i: usize) -> Option<String> {
    let ty = row.columns()[i].type_();
    let got = if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|v| v.to_string()))
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| v.to_string()))
    } else if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)
            .map(|v| v.map(|v| v.to_string()))
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)
            .map(|v| v.map(|v| v.to_string()))
    } else {
        row.try_get::<_, Option<String>>(i)
    };
    got.unwrap_or_else(|e| Some(format!("<{ty}: {e}>")))
}

async fn prepared(conn: &mut Conn, sql: &str, params: &[Param]) -> Outcome {
    let stmt = match conn.prepared.get(sql) {
        Some(s) => s.clone(),
        None => match conn.client.prepare(sql).await {
            Ok(s) => {
                conn.prepared.insert(sql.to_string(), s.clone());
                s
            }
            Err(e) => return error_outcome(&e),
        },
    };
    let owned: Vec<Box<dyn ToSql + Sync + Send>> = params
        .iter()
        .map(|p| match p {
            Param::Int(i) => Box::new(*i) as Box<dyn ToSql + Sync + Send>,
            Param::Text(t) => Box::new(t.clone()),
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = owned
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    match conn.client.query(&stmt, &refs).await {
        Err(e) => error_outcome(&e),
        Ok(rows) => {
            let rows = rows
                .iter()
                .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
                .collect();
            Outcome::ok_rows(rows, None)
        }
    }
}

/// Attach the notices and notifications that arrived with the statement.
fn drain(conn: &mut Conn, mut out: Outcome) -> Outcome {
    if let Outcome::Ok {
        warnings,
        notifications,
        ..
    } = &mut out
    {
        while let Ok(m) = conn.msgs.try_recv() {
            match m {
                Msg::Notice(code) => warnings.push(code),
                Msg::Notify {
                    channel,
                    payload,
                    pid,
                } => {
                    let from = if pid == conn.pid { "self" } else { "other" };
                    notifications.push(format!("{channel}:{payload}:pid={from}"));
                }
            }
        }
    } else {
        while conn.msgs.try_recv().is_ok() {}
    }
    out
}

impl Runner for Target {
    type Conn = Conn;

    async fn connect(&self) -> Result<Conn, String> {
        connect(self).await
    }

    async fn execute(&self, conn: &mut Conn, st: &Step) -> Outcome {
        let out = match &st.kind {
            Kind::Prepared(params) => prepared(conn, &st.sql, params).await,
            _ => text(conn, &st.sql).await,
        };
        // Notifications to self arrive with the command's completion; let the reader task run.
        tokio::task::yield_now().await;
        drain(conn, out)
    }

    async fn close(&self, conn: Conn) {
        drop(conn);
    }
}
