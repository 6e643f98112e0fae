//! MariaDB failover actions: promote, repoint, rejoin (GTID `CHANGE MASTER`), fence, positions.
//!
//! MariaDB 10.x syntax (`SHOW SLAVE STATUS`, `STOP SLAVE`, `RESET SLAVE ALL`, `CHANGE MASTER TO
//! ... MASTER_USE_GTID=slave_pos`, `MASTER_GTID_WAIT`) on the default replication connection.
//! Every action opens a fresh connection with the cluster's `failover` login (which needs
//! `SUPER`, or `READ_ONLY ADMIN`, `REPLICATION SLAVE ADMIN`, `CONNECTION ADMIN`, `PROCESS` and
//! `BINLOG MONITOR`), runs each statement under a per-statement deadline (the monitor timeout, at
//! least 5 s) and closes the connection; connections use TLS as the cluster's `server_tls` says.
//! The session's `sql_mode` is cleared first, so string
//! literals are always escaped the same way.

use crate::topology::probe_mysql::describe;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::actions::{ActionError, Actions, Position};
use crate::config::{ClusterConfig, MonitorConfig, ServerConfig, ServerTls};
use crate::topology::probe_mysql::{connect, connect_opts, TextRow};

pub mod sql;

use sql::{change_master_sql, checked_gtid, kill_targets, quote, text_row, SlaveStatus};

/// Shortest per-statement deadline, whatever the monitor timeout.
const MIN_STEP: Duration = Duration::from_secs(5);
/// Longest single `MASTER_GTID_WAIT` call; between calls the replica status is checked for errors.
const WAIT_CHUNK: Duration = Duration::from_secs(1);
/// MariaDB error codes this module reacts to.
const ER_NO_SUCH_THREAD: u16 = 1094;
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// The failover actions of one MariaDB cluster.
#[derive(Clone)]
pub struct MysqlActions {
    cluster: String,
    servers: Vec<ServerConfig>,
    /// The monitor settings with the failover login (for [`connect_opts`]).
    login: MonitorConfig,
    replication: Option<(String, String)>,
    /// TLS towards the servers (the cluster's `server_tls`).
    tls: ServerTls,
    /// Deadline of one statement (and of connecting).
    step: Duration,
}

impl std::fmt::Debug for MysqlActions {
    /// Without the passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlActions")
            .field("cluster", &self.cluster)
            .field("user", &self.login.user)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// Why a statement failed, before it is named in an [`ActionError`].
enum Failure {
    Timeout,
    Driver(mysql_async::Error),
}

impl Failure {
    fn code(&self) -> Option<u16> {
        match self {
            Failure::Driver(mysql_async::Error::Server(e)) => Some(e.code),
            _ => None,
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

/// One open connection to one server, for the duration of one action.
struct Session {
    conn: Option<Conn>,
    server: String,
    step: Duration,
}

impl Session {
    fn refused(&self, message: impl Into<String>) -> ActionError {
        refused(self.server.as_str(), message)
    }

    fn error(&self, label: &str, f: Failure, limit: Duration) -> ActionError {
        match f {
            Failure::Timeout => ActionError::Timeout {
                server: self.server.clone(),
                what: label.to_owned(),
                after: limit,
            },
            Failure::Driver(e) => ActionError::Sql {
                server: self.server.clone(),
                statement: label.to_owned(),
                message: describe(&e),
            },
        }
    }

    /// Runs `sql` within `limit`; after a timeout the connection is dropped (it is mid-statement).
    async fn raw(&mut self, sql: &str, limit: Duration) -> Result<Vec<TextRow>, Failure> {
        let conn = self.conn.as_mut().ok_or(Failure::Timeout)?;
        match tokio::time::timeout(limit, conn.query::<Row, _>(sql)).await {
            Ok(Ok(rows)) => Ok(rows.iter().map(text_row).collect()),
            Ok(Err(e)) => Err(Failure::Driver(e)),
            Err(_) => {
                self.conn = None;
                Err(Failure::Timeout)
            }
        }
    }

    /// Runs `sql` under the step deadline; `label` names it in errors (no password in it).
    async fn query_as(&mut self, sql: &str, label: &str) -> Result<Vec<TextRow>, ActionError> {
        let step = self.step;
        self.raw(sql, step)
            .await
            .map_err(|f| self.error(label, f, step))
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<TextRow>, ActionError> {
        self.query_as(sql, sql).await
    }

    /// The first column of the first row of `sql`.
    async fn value(&mut self, sql: &str) -> Result<Option<String>, ActionError> {
        let rows = self.query(sql).await?;
        Ok(rows
            .first()
            .and_then(|r| r.values().first().copied().flatten().map(str::to_owned)))
    }

    async fn slave_status(&mut self) -> Result<Option<SlaveStatus>, ActionError> {
        let sql = "SHOW SLAVE STATUS";
        let rows = self.query(sql).await?;
        match rows.first() {
            None => Ok(None),
            Some(r) => SlaveStatus::from_row(r)
                .map(Some)
                .map_err(|m| ActionError::Sql {
                    server: self.server.clone(),
                    statement: sql.into(),
                    message: m,
                }),
        }
    }

    async fn gtid_var(&mut self, var: &str) -> Result<String, ActionError> {
        let sql = format!("SELECT @@{var}");
        let v = self.value(&sql).await?.unwrap_or_default();
        checked_gtid(&v).map_err(|m| ActionError::Sql {
            server: self.server.clone(),
            statement: sql,
            message: m,
        })
    }

    async fn read_only(&mut self) -> Result<bool, ActionError> {
        let v = self.value("SELECT @@read_only").await?.unwrap_or_default();
        Ok(!matches!(v.trim(), "0" | "OFF"))
    }

    /// Sends `COM_QUIT`, bounded by the step deadline.
    async fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(self.step, conn.disconnect()).await;
        }
    }
}

impl MysqlActions {
    pub fn new(cluster: &ClusterConfig) -> Self {
        let mut login = cluster.monitor.clone();
        login.user = cluster.failover.user.clone();
        login.password = cluster.failover.password.clone();
        MysqlActions {
            cluster: cluster.name.clone(),
            servers: cluster.servers.clone(),
            login,
            replication: cluster.failover.replication.clone(),
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
        let opts = connect_opts(server, &self.login);
        let conn = match tokio::time::timeout(self.step, connect(opts, &self.tls)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(connect_err(e)),
            Err(_) => return Err(connect_err(format!("timed out after {:?}", self.step))),
        };
        let mut s = Session {
            conn: Some(conn),
            server: server.name.clone(),
            step: self.step,
        };
        s.query("SET SESSION sql_mode = ''").await?;
        Ok(s)
    }

    /// Runs `work` on a fresh session of server `i` and closes it whatever the outcome.
    async fn with_session<T>(
        &self,
        i: usize,
        work: impl AsyncFnOnce(&mut Session) -> Result<T, ActionError>,
    ) -> Result<T, ActionError> {
        let mut s = self.open(i).await?;
        let res = work(&mut s).await;
        s.close().await;
        res
    }

    /// Waits until the session's server has applied `target` (a checked GTID list), failing
    /// early when its SQL thread stopped with an error.
    async fn wait_gtid(
        &self,
        s: &mut Session,
        target: &str,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let deadline = Instant::now() + timeout;
        let timed_out = |s: &Session| ActionError::Timeout {
            server: s.server.clone(),
            what: format!("MASTER_GTID_WAIT({target:?})"),
            after: timeout,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = left.min(WAIT_CHUNK);
            let sql = format!(
                "SELECT MASTER_GTID_WAIT({}, {:.3})",
                quote(target),
                chunk.as_secs_f64()
            );
            let answer = match s.raw(&sql, chunk + s.step).await {
                Ok(rows) => rows
                    .first()
                    .and_then(|r| r.values().first().copied().flatten().map(str::to_owned)),
                Err(Failure::Timeout) => return Err(timed_out(s)),
                Err(f) => return Err(s.error(&sql, f, chunk + s.step)),
            };
            match answer.as_deref() {
                Some("0") => {
                    tracing::info!(cluster = %self.cluster, server = %s.server, gtid = target, "replica applied the position");
                    return Ok(());
                }
                Some("-1") => {}
                other => {
                    return Err(ActionError::Sql {
                        server: s.server.clone(),
                        statement: sql,
                        message: format!("answered {other:?}"),
                    })
                }
            }
            if let Some(st) = s.slave_status().await? {
                if !st.sql_running() && st.sql_errno != 0 {
                    return Err(s.refused(format!(
                        "SQL thread stopped with error {}: {}",
                        st.sql_errno,
                        st.channel.last_sql_error.unwrap_or_default()
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(timed_out(s));
            }
        }
    }

    /// `SET GLOBAL read_only = 1`, killing the other connections first when an open lock or
    /// transaction makes it wait longer than a second.
    async fn set_read_only(&self, s: &mut Session) -> Result<(), ActionError> {
        s.query("SET SESSION lock_wait_timeout = 1").await?;
        let sql = "SET GLOBAL read_only = 1";
        let step = s.step;
        match s.raw(sql, step).await {
            Ok(_) => return Ok(()),
            Err(f) if f.code() == Some(ER_LOCK_WAIT_TIMEOUT) => {
                tracing::info!(cluster = %self.cluster, server = %s.server, "read_only waits for locks: killing connections first");
            }
            Err(f) => return Err(s.error(sql, f, step)),
        }
        self.kill_others(s).await?;
        let secs = step.as_secs().max(1);
        s.query(&format!("SET SESSION lock_wait_timeout = {secs}"))
            .await?;
        s.query(sql).await.map(|_| ())
    }

    async fn kill_others(&self, s: &mut Session) -> Result<(), ActionError> {
        let own: u64 = s
            .value("SELECT CONNECTION_ID()")
            .await?
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let rows = s
            .query("SELECT ID, USER, COMMAND FROM information_schema.PROCESSLIST")
            .await?;
        let targets = kill_targets(&rows, own);
        for (id, user) in &targets {
            let sql = format!("KILL CONNECTION {id}");
            let step = s.step;
            match s.raw(&sql, step).await {
                Ok(_) => {}
                // Gone meanwhile.
                Err(f) if f.code() == Some(ER_NO_SUCH_THREAD) => {}
                Err(f) => return Err(s.error(&sql, f, step)),
            }
            tracing::info!(cluster = %self.cluster, server = %s.server, connection = id, user = %user, "killed connection");
        }
        tracing::info!(cluster = %self.cluster, server = %s.server, killed = targets.len(), "other client connections killed");
        Ok(())
    }

    /// `STOP SLAVE; CHANGE MASTER TO ...; START SLAVE` towards `primary`.
    async fn change_master(
        &self,
        s: &mut Session,
        primary: &ServerConfig,
        login: Option<(&str, &str)>,
        was_replica: bool,
    ) -> Result<(), ActionError> {
        if was_replica {
            s.query("STOP SLAVE").await?;
        }
        let (sql, label) = change_master_sql(&primary.host, primary.port, login);
        tracing::info!(cluster = %self.cluster, server = %s.server, primary = %primary.name, statement = %label, "changing master");
        s.query_as(&sql, &label).await?;
        s.query("START SLAVE").await?;
        Ok(())
    }
}

impl Actions for MysqlActions {
    /// A replica's `Gtid_IO_Pos` (else `@@gtid_slave_pos`); a server without replication
    /// configured has received everything it has: `@@gtid_current_pos`.
    async fn received_position(&self, server: usize) -> Result<Position, ActionError> {
        self.with_session(server, async |s| {
            let pos = match s.slave_status().await? {
                Some(st) => match st.channel.gtid_io_pos {
                    Some(io) => checked_gtid(&io).map_err(|m| ActionError::Sql {
                        server: s.server.clone(),
                        statement: "SHOW SLAVE STATUS".into(),
                        message: m,
                    })?,
                    None => s.gtid_var("gtid_slave_pos").await?,
                },
                None => s.gtid_var("gtid_current_pos").await?,
            };
            tracing::info!(cluster = %self.cluster, server = %s.server, gtid = %pos, "received position");
            Ok(Position::Gtid(pos))
        })
        .await
    }

    async fn primary_position(&self, server: usize) -> Result<Position, ActionError> {
        self.with_session(server, async |s| {
            let pos = s.gtid_var("gtid_binlog_pos").await?;
            tracing::info!(cluster = %self.cluster, server = %s.server, gtid = %pos, "primary position");
            Ok(Position::Gtid(pos))
        })
        .await
    }

    async fn wait_applied(
        &self,
        server: usize,
        pos: Option<Position>,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let started = Instant::now();
        self.with_session(server, async |s| {
            let target = match pos {
                Some(Position::Gtid(g)) => checked_gtid(&g).map_err(|m| s.refused(m))?,
                Some(other) => {
                    return Err(s.refused(format!("cannot wait for {other} on MariaDB")))
                }
                None => match s.slave_status().await? {
                    Some(st) => checked_gtid(&st.channel.gtid_io_pos.unwrap_or_default())
                        .map_err(|m| s.refused(m))?,
                    // Not a replica: everything it has is applied.
                    None => String::new(),
                },
            };
            if target.is_empty() {
                return Ok(());
            }
            tracing::info!(cluster = %self.cluster, server = %s.server, gtid = %target, "waiting until applied");
            let left = timeout.saturating_sub(started.elapsed());
            self.wait_gtid(s, &target, left).await
        })
        .await
    }

    async fn promote(&self, server: usize, timeout: Duration) -> Result<(), ActionError> {
        self.with_session(server, async |s| {
            if let Some(st) = s.slave_status().await? {
                tracing::info!(cluster = %self.cluster, server = %s.server, "promoting: STOP SLAVE IO_THREAD");
                s.query("STOP SLAVE IO_THREAD").await?;
                let st = s.slave_status().await?.unwrap_or(st);
                if !st.sql_running() {
                    if st.sql_errno != 0 {
                        return Err(s.refused(format!(
                                "SQL thread stopped with error {}: {}; not promoting with an \
                                 unapplied relay log",
                                st.sql_errno,
                                st.channel.last_sql_error.unwrap_or_default()
                            )));
                    }
                    s.query("START SLAVE SQL_THREAD").await?;
                }
                if let Some(io) = st.channel.gtid_io_pos.as_deref() {
                    let io = checked_gtid(io).map_err(|m| s.refused(m))?;
                    if !io.is_empty() {
                        self.wait_gtid(s, &io, timeout).await?;
                    }
                }
                tracing::info!(cluster = %self.cluster, server = %s.server, "relay log applied: STOP SLAVE; RESET SLAVE ALL");
                s.query("STOP SLAVE").await?;
                s.query("RESET SLAVE ALL").await?;
            }
            if s.read_only().await? {
                tracing::info!(cluster = %self.cluster, server = %s.server, "SET GLOBAL read_only = 0");
                s.query("SET GLOBAL read_only = 0").await?;
            }
            tracing::info!(cluster = %self.cluster, server = %s.server, "promoted");
            Ok(())
        })
        .await
    }

    async fn repoint(&self, server: usize, primary: usize) -> Result<(), ActionError> {
        let target = self.server(primary)?.clone();
        self.with_session(server, async |s| {
            if server == primary {
                return Err(s.refused("cannot replicate from itself"));
            }
            let Some(st) = s.slave_status().await? else {
                return Err(s.refused("is not a replica (no replication login to keep): use rejoin"));
            };
            if st.points_at(&target) {
                if !(st.io_running() && st.sql_running()) {
                    tracing::info!(cluster = %self.cluster, server = %s.server, primary = %target.name, "START SLAVE");
                    s.query("START SLAVE").await?;
                }
                tracing::info!(cluster = %self.cluster, server = %s.server, primary = %target.name, "already replicates from the primary");
                return Ok(());
            }
            self.change_master(s, &target, None, true).await
        })
        .await
    }

    async fn fence(&self, server: usize) -> Result<(), ActionError> {
        self.with_session(server, async |s| {
            tracing::info!(cluster = %self.cluster, server = %s.server, "fencing: SET GLOBAL read_only = 1");
            self.set_read_only(s).await?;
            self.kill_others(s).await?;
            tracing::info!(cluster = %self.cluster, server = %s.server, "fenced");
            Ok(())
        })
        .await
    }

    async fn rejoin(&self, server: usize, primary: usize) -> Result<(), ActionError> {
        let target = self.server(primary)?.clone();
        let Some((user, password)) = self.replication.clone() else {
            return Err(refused(
                self.server(server)?.name.clone(),
                "no failover.replication_user configured",
            ));
        };
        self.with_session(server, async |s| {
            if server == primary {
                return Err(s.refused("cannot replicate from itself"));
            }
            if !s.read_only().await? {
                tracing::info!(cluster = %self.cluster, server = %s.server, "SET GLOBAL read_only = 1");
                self.set_read_only(s).await?;
            }
            let status = s.slave_status().await?;
            if let Some(st) = status.as_ref().filter(|st| st.points_at(&target)) {
                if !(st.io_running() && st.sql_running()) {
                    s.query("START SLAVE").await?;
                }
                tracing::info!(cluster = %self.cluster, server = %s.server, primary = %target.name, "already rejoined");
                return Ok(());
            }
            if status.is_some() {
                s.query("STOP SLAVE").await?;
            }
            let pos = s.gtid_var("gtid_binlog_pos").await?;
            tracing::info!(cluster = %self.cluster, server = %s.server, gtid = %pos, "rejoining: gtid_slave_pos = gtid_binlog_pos");
            s.query(&format!("SET GLOBAL gtid_slave_pos = {}", quote(&pos)))
                .await?;
            self.change_master(s, &target, Some((&user, &password)), false)
                .await
        })
        .await
    }
}
