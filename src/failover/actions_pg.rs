//! PostgreSQL failover actions: promote, repoint (`primary_conninfo`), fence and WAL positions.
//!
//! Every action opens a fresh connection with the cluster's `failover` login (actions are rare),
//! runs each statement under a per-statement deadline (the monitor timeout, at least 5 s) and
//! closes the connection, over TLS as the cluster's `server_tls` says. The login must be a superuser, or hold the grants the statements need
//! (`pg_promote`, `ALTER SYSTEM`, `pg_reload_conf`, `pg_signal_backend`, reading
//! `primary_conninfo`, creating replication slots).
//!
//! Limits: `default_transaction_read_only` only sets the default; a session can still `SET` it
//! off, so a fence relies on terminating the open sessions and on clients not overriding it.
//! A `primary_conninfo` in URI form (`postgresql://...`) is refused by `repoint`.

use crate::topology::probe_pg::describe;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use super::actions::{ActionError, Actions, Position};
use crate::config::{ClusterConfig, ServerConfig, ServerTls};
use crate::position::lsn::parse_lsn;
use crate::topology::probe_pg::connect_driver;

pub mod conninfo;

use conninfo::{conninfo_target, repoint_conninfo, sql_literal, valid_slot_name};

/// Shortest per-statement deadline, whatever the monitor timeout.
const MIN_STEP: Duration = Duration::from_secs(5);
/// How often `wait_applied` and the reload checks poll.
const POLL: Duration = Duration::from_millis(50);
/// `default_transaction_read_only`, the setting a fence turns on.
const READ_ONLY_GUC: &str = "default_transaction_read_only";

/// The failover actions of one PostgreSQL cluster.
#[derive(Clone)]
pub struct PgActions {
    cluster: String,
    servers: Vec<ServerConfig>,
    user: String,
    password: String,
    database: String,
    /// TLS towards the servers (the cluster's `server_tls`).
    tls: ServerTls,
    /// Deadline of one statement (and of connecting).
    step: Duration,
}

impl std::fmt::Debug for PgActions {
    /// Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgActions")
            .field("cluster", &self.cluster)
            .field("user", &self.user)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// One open connection to one server, for the duration of one action.
struct Session {
    client: Client,
    server: String,
    step: Duration,
    conn_task: tokio::task::AbortHandle,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropping the client makes the connection task send Terminate and end; should the
        // server hang, the task is aborted one step later.
        let task = self.conn_task.clone();
        let step = self.step;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(step).await;
                task.abort();
            });
        }
    }
}

/// A text row of a simple query (`None` = NULL).
type TextRow = Vec<Option<String>>;

impl Session {
    fn refused(&self, message: impl Into<String>) -> ActionError {
        refused(self.server.as_str(), message)
    }

    fn sql_error(&self, label: &str, message: String) -> ActionError {
        ActionError::Sql {
            server: self.server.clone(),
            statement: label.to_owned(),
            message,
        }
    }

    /// Runs `sql` under the step deadline, returning its rows as text. `label` names the
    /// statement in errors (it differs from `sql` when `sql` holds a password).
    async fn query_as(&self, sql: &str, label: &str) -> Result<Vec<TextRow>, ActionError> {
        self.query_within(sql, label, self.step).await
    }

    async fn query_within(
        &self,
        sql: &str,
        label: &str,
        limit: Duration,
    ) -> Result<Vec<TextRow>, ActionError> {
        let msgs = match tokio::time::timeout(limit, self.client.simple_query(sql)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(self.sql_error(label, describe(&e))),
            Err(_) => {
                return Err(ActionError::Timeout {
                    server: self.server.clone(),
                    what: label.to_owned(),
                    after: limit,
                })
            }
        };
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect())
    }

    async fn query(&self, sql: &str) -> Result<Vec<TextRow>, ActionError> {
        self.query_as(sql, sql).await
    }

    /// The first row of `sql`; an error when there is none.
    async fn row(&self, sql: &str) -> Result<TextRow, ActionError> {
        self.query(sql)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| self.sql_error(sql, "returned no row".into()))
    }

    /// The first column of the first row of `sql`.
    async fn value(&self, sql: &str) -> Result<Option<String>, ActionError> {
        Ok(self.row(sql).await?.into_iter().next().flatten())
    }

    async fn in_recovery(&self) -> Result<bool, ActionError> {
        let sql = "SELECT pg_is_in_recovery()";
        let v = self.value(sql).await?;
        parse_bool(v.as_deref()).ok_or_else(|| self.sql_error(sql, format!("answered {v:?}")))
    }

    /// Polls this session's view of setting `name` until `want(value)` holds: a reload is
    /// processed by every backend between statements, so this confirms the server reloaded.
    async fn wait_setting(
        &self,
        name: &str,
        want: impl Fn(&str) -> bool,
    ) -> Result<(), ActionError> {
        let sql = format!("SELECT current_setting({})", sql_literal(name));
        let started = Instant::now();
        loop {
            let v = self.value(&sql).await?.unwrap_or_default();
            if want(&v) {
                return Ok(());
            }
            if started.elapsed() >= self.step {
                return Err(self.refused(format!(
                    "{name} is still {v:?} after the configuration reload (set elsewhere?)"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A refusal by `server`.
fn refused(server: impl Into<String>, message: impl Into<String>) -> ActionError {
    ActionError::Refused {
        server: server.into(),
        message: message.into(),
    }
}

fn parse_bool(v: Option<&str>) -> Option<bool> {
    match v? {
        "t" | "true" | "on" => Some(true),
        "f" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Parses an optional LSN column; `Err` names a malformed one.
fn lsn_col(v: Option<&Option<String>>) -> Result<Option<u64>, String> {
    match v.and_then(|v| v.as_deref()) {
        None => Ok(None),
        Some(t) => parse_lsn(t)
            .map(Some)
            .ok_or_else(|| format!("bad LSN {t:?}")),
    }
}

/// The positions query: recovery flag, receive, replay and (primaries only) current LSN.
const POSITIONS_SQL: &str = "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn(), \
     pg_last_wal_replay_lsn(), \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END";

/// What [`POSITIONS_SQL`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Positions {
    in_recovery: bool,
    receive: Option<u64>,
    replay: Option<u64>,
    current: Option<u64>,
}

impl Positions {
    fn parse(row: &[Option<String>]) -> Result<Positions, String> {
        let in_recovery = parse_bool(row.first().and_then(|v| v.as_deref()))
            .ok_or_else(|| format!("pg_is_in_recovery() = {:?}", row.first()))?;
        Ok(Positions {
            in_recovery,
            receive: lsn_col(row.get(1))?,
            replay: lsn_col(row.get(2))?,
            current: lsn_col(row.get(3))?,
        })
    }

    /// Everything the server has: a replica's received WAL (its replayed WAL while nothing was
    /// received), a primary's current WAL position.
    fn received(&self) -> Option<u64> {
        if self.in_recovery {
            self.receive.or(self.replay)
        } else {
            self.current
        }
    }

    /// What the server has applied: a replica's replay LSN, a primary's current WAL position.
    fn applied(&self) -> Option<u64> {
        if self.in_recovery {
            self.replay
        } else {
            self.current
        }
    }
}

impl PgActions {
    pub fn new(cluster: &ClusterConfig) -> Self {
        PgActions {
            cluster: cluster.name.clone(),
            servers: cluster.servers.clone(),
            user: cluster.failover.user.clone(),
            password: cluster.failover.password.clone(),
            database: cluster.monitor.database.clone(),
            tls: cluster.server_tls.clone(),
            step: cluster.monitor.timeout.max(MIN_STEP),
        }
    }

    fn server(&self, i: usize) -> Result<&ServerConfig, ActionError> {
        self.servers.get(i).ok_or_else(|| {
            refused(
                format!("#{i}"),
                format!("no server #{i} in cluster {}", self.cluster),
            )
        })
    }

    async fn open(&self, i: usize) -> Result<Session, ActionError> {
        let server = self.server(i)?;
        let connect_err = |message: String| ActionError::Connect {
            server: server.name.clone(),
            message,
        };
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&server.host)
            .port(server.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name("switchyard-failover")
            .connect_timeout(self.step);
        if !self.password.is_empty() {
            cfg.password(&self.password);
        }
        let connecting = connect_driver(&mut cfg, server, &self.tls);
        let (client, conn) = match tokio::time::timeout(self.step, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(connect_err(e)),
            Err(_) => return Err(connect_err(format!("timed out after {:?}", self.step))),
        };
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Session {
            client,
            server: server.name.clone(),
            step: self.step,
            conn_task: task.abort_handle(),
        })
    }

    async fn positions(&self, s: &Session) -> Result<Positions, ActionError> {
        let row = s.row(POSITIONS_SQL).await?;
        Positions::parse(&row).map_err(|m| s.sql_error(POSITIONS_SQL, m))
    }

    async fn wait_applied_on(&self, s: &Session, pos: Option<Position>) -> Result<(), ActionError> {
        let target = match pos {
            Some(Position::Lsn(l)) => Some(l),
            Some(other) => return Err(s.refused(format!("cannot wait for {other} on PostgreSQL"))),
            None => None,
        };
        let first = self.positions(s).await?;
        let target = match target.or(first.received()) {
            Some(t) => t,
            None => return Ok(()),
        };
        let mut applied = first.applied();
        while applied.is_none_or(|a| a < target) {
            tokio::time::sleep(POLL).await;
            applied = self.positions(s).await?.applied();
        }
        tracing::info!(cluster = %self.cluster, server = %s.server, position = %Position::Lsn(target), "replica applied the position");
        Ok(())
    }

    /// Clears a fence's `default_transaction_read_only = on` (set in postgresql.auto.conf).
    async fn unfence(&self, s: &Session) -> Result<(), ActionError> {
        let sql = format!("SELECT setting, source FROM pg_settings WHERE name = '{READ_ONLY_GUC}'");
        let row = s.row(&sql).await?;
        let setting = row.first().cloned().flatten().unwrap_or_default();
        let source = row.get(1).cloned().flatten().unwrap_or_default();
        if setting != "on" {
            return Ok(());
        }
        if source != "configuration file" {
            return Err(s.refused(format!(
                "{READ_ONLY_GUC} is on from {source:?}, not from a fence"
            )));
        }
        tracing::info!(cluster = %self.cluster, server = %s.server, "clearing the fence ({READ_ONLY_GUC})");
        s.query(&format!("ALTER SYSTEM RESET {READ_ONLY_GUC}"))
            .await?;
        s.query("SELECT pg_reload_conf()").await?;
        s.wait_setting(READ_ONLY_GUC, |v| v == "off").await
    }

    /// Creates physical slot `slot` on `primary` unless it exists.
    async fn ensure_slot(&self, primary: usize, slot: &str) -> Result<(), ActionError> {
        let p = self.open(primary).await?;
        let lit = sql_literal(slot);
        let exists = p
            .value(&format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = {lit}"
            ))
            .await?;
        if exists.as_deref() != Some("0") {
            return Ok(());
        }
        tracing::info!(cluster = %self.cluster, server = %p.server, slot, "creating physical replication slot");
        let sql = format!("SELECT pg_create_physical_replication_slot({lit}, true)");
        match p.query(&sql).await {
            Ok(_) => Ok(()),
            // Created meanwhile by someone else (42710 duplicate_object): what we wanted.
            Err(ActionError::Sql { message, .. }) if message.contains(" 42710:") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Actions for PgActions {
    async fn received_position(&self, server: usize) -> Result<Position, ActionError> {
        let s = self.open(server).await?;
        let pos = self.positions(&s).await?;
        let lsn = pos
            .received()
            .ok_or_else(|| s.refused("has no WAL position (nothing received or replayed yet)"))?;
        tracing::info!(cluster = %self.cluster, server = %s.server, position = %Position::Lsn(lsn), "received position");
        Ok(Position::Lsn(lsn))
    }

    async fn primary_position(&self, server: usize) -> Result<Position, ActionError> {
        let s = self.open(server).await?;
        let pos = self.positions(&s).await?;
        match (pos.in_recovery, pos.current) {
            (false, Some(lsn)) => {
                tracing::info!(cluster = %self.cluster, server = %s.server, position = %Position::Lsn(lsn), "primary position");
                Ok(Position::Lsn(lsn))
            }
            _ => Err(s.refused("is in recovery (a replica), not a primary")),
        }
    }

    async fn wait_applied(
        &self,
        server: usize,
        pos: Option<Position>,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let name = self.server(server)?.name.clone();
        let what = match &pos {
            Some(p) => format!("applying {p}"),
            None => "applying the received WAL".into(),
        };
        tracing::info!(cluster = %self.cluster, server = %name, "waiting: {what}");
        let work = async {
            let s = self.open(server).await?;
            self.wait_applied_on(&s, pos).await
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ActionError::Timeout {
                server: name,
                what,
                after: timeout,
            }),
        }
    }

    async fn promote(&self, server: usize, timeout: Duration) -> Result<(), ActionError> {
        let s = self.open(server).await?;
        if s.in_recovery().await? {
            let secs = timeout.as_secs_f64().ceil().max(1.0) as u64;
            tracing::info!(cluster = %self.cluster, server = %s.server, wait_seconds = secs, "promoting");
            let sql = format!("SELECT pg_promote(true, {secs})");
            let res = s.query_within(&sql, &sql, timeout + s.step).await;
            let promoted = match res {
                Ok(rows) => rows.first().and_then(|r| r.first()).cloned().flatten(),
                Err(e) => {
                    // Promoted meanwhile (55000 "recovery is not in progress") is fine.
                    if s.in_recovery().await.unwrap_or(true) {
                        return Err(e);
                    }
                    tracing::info!(cluster = %self.cluster, server = %s.server, error = %e, "promoted meanwhile");
                    Some("t".into())
                }
            };
            if promoted.as_deref() != Some("t") {
                return Err(ActionError::Timeout {
                    server: s.server.clone(),
                    what: "promotion".into(),
                    after: timeout,
                });
            }
            tracing::info!(cluster = %self.cluster, server = %s.server, "promoted");
        } else {
            tracing::info!(cluster = %self.cluster, server = %s.server, "already a primary");
        }
        self.unfence(&s).await
    }

    async fn repoint(&self, server: usize, primary: usize) -> Result<(), ActionError> {
        let target = self.server(primary)?.clone();
        let s = self.open(server).await?;
        if server == primary {
            return Err(s.refused("cannot replicate from itself"));
        }
        if !s.in_recovery().await? {
            return Err(s.refused("is not in recovery: a primary cannot be repointed (rebuild it)"));
        }
        let old = s.value("SHOW primary_conninfo").await?.unwrap_or_default();
        if old.trim().is_empty() {
            return Err(s.refused("primary_conninfo is empty: no replication login to keep"));
        }
        let new = repoint_conninfo(&old, &target.host, target.port)
            .map_err(|m| s.refused(format!("cannot rewrite primary_conninfo: {m}")))?;
        let slot = s.value("SHOW primary_slot_name").await?.unwrap_or_default();
        if !slot.is_empty() {
            if !valid_slot_name(&slot) {
                return Err(s.refused(format!("unexpected primary_slot_name {slot:?}")));
            }
            self.ensure_slot(primary, &slot).await?;
        }
        if new == old {
            tracing::info!(cluster = %self.cluster, server = %s.server, primary = %target.name, "already points at the primary");
            return Ok(());
        }
        tracing::info!(
            cluster = %self.cluster, server = %s.server, primary = %target.name,
            from = %conninfo_target(&old), to = %target.address(), "repointing primary_conninfo"
        );
        let label = "ALTER SYSTEM SET primary_conninfo = <new conninfo>";
        s.query_as(
            &format!("ALTER SYSTEM SET primary_conninfo = {}", sql_literal(&new)),
            label,
        )
        .await?;
        s.query("SELECT pg_reload_conf()").await?;
        s.wait_setting("primary_conninfo", |v| v == new).await
    }

    async fn fence(&self, server: usize) -> Result<(), ActionError> {
        let s = self.open(server).await?;
        tracing::info!(cluster = %self.cluster, server = %s.server, "fencing: {READ_ONLY_GUC} = on");
        s.query(&format!("ALTER SYSTEM SET {READ_ONLY_GUC} = on"))
            .await?;
        s.query("SELECT pg_reload_conf()").await?;
        s.wait_setting(READ_ONLY_GUC, |v| v == "on").await?;
        let rows = s
            .query(
                "SELECT pid, usename, pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
            .await?;
        let users: Vec<String> = rows
            .iter()
            .map(|r| r.get(1).cloned().flatten().unwrap_or_default())
            .collect();
        tracing::info!(cluster = %self.cluster, server = %s.server, terminated = rows.len(), users = ?users, "fenced");
        Ok(())
    }

    async fn rejoin(&self, server: usize, _primary: usize) -> Result<(), ActionError> {
        Err(refused(
            self.server(server)?.name.clone(),
            "PostgreSQL cannot rejoin a former primary: rebuild it (pg_rewind, pg_basebackup)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[Option<&str>]) -> Vec<Option<String>> {
        cols.iter().map(|c| c.map(str::to_owned)).collect()
    }

    #[test]
    fn positions_of_replicas_and_primaries() {
        let r = Positions::parse(&row(&[Some("t"), Some("0/300"), Some("0/200"), None])).unwrap();
        assert_eq!((r.received(), r.applied()), (Some(0x300), Some(0x200)));
        // Nothing received by streaming yet: the replayed WAL is what the replica has.
        let r = Positions::parse(&row(&[Some("t"), None, Some("0/200"), None])).unwrap();
        assert_eq!(r.received(), Some(0x200));
        let p = Positions::parse(&row(&[Some("f"), None, None, Some("1/0")])).unwrap();
        assert_eq!((p.received(), p.applied()), (Some(1 << 32), Some(1 << 32)));
        assert!(Positions::parse(&row(&[Some("x"), None, None, None])).is_err());
        assert!(Positions::parse(&row(&[Some("t"), Some("zz"), None, None])).is_err());
    }
}
