//! Probes one MySQL/MariaDB server for its role, GTID positions and replication state, under a deadline.
//!
//! A [`MysqlProber`] keeps one monitor connection per server open between probes (text protocol
//! only) and reconnects after any error or timeout; a kept connection that turns out broken is
//! replaced once within the same probe. Each probe runs two queries:
//!
//! - the server variables: `@@read_only`, `@@server_id` and the GTID positions (MariaDB
//!   `@@gtid_current_pos` + `@@gtid_binlog_pos`, MySQL `@@gtid_executed`; the family is detected
//!   once per connection from `@@version`);
//! - the replica status, read by column name in both spellings (`Slave_*`/`Master_*` and
//!   `Replica_*`/`Source_*`): MariaDB `SHOW ALL SLAVES STATUS` (every named connection, not only
//!   the default one), MySQL >= 8.0.22 `SHOW REPLICA STATUS`, older MySQL `SHOW SLAVE STATUS`;
//!   the other statement is tried when the server rejects the first.
//!
//! Role: replication configured (at least one status row) -> Replica; no rows and
//! `read_only = 0` -> Primary; no rows and read-only -> Unknown (a fenced or read-only standalone
//! server is never a write target). A replica replicates when the IO and SQL threads of every
//! channel run; its lag is `Seconds_Behind_Master` (the maximum over channels) and is unknown
//! (`None`, never 0) when any channel reports NULL or does not replicate. MySQL has no byte
//! positions: `lsn`/`receive_lsn` stay `None`, so lag bytes stay unknown. On MariaDB the result
//! carries a GTID position (`gtid`: a primary's `@@gtid_binlog_pos`, a replica's
//! `@@gtid_slave_pos`), which the monitor compares within a round into "transactions behind"
//! (see [`gtid`]).
//!
//! Connections go through the server's `socket` when it has one, else over TCP with TLS as the
//! cluster's `server_tls` says ([`connect`], shared with the failover actions). mysql_async builds
//! its own rustls config from the same CA and client certificate; `verify-ca` asks it to skip the
//! host name check, which mysql_async 0.37.1 does not honour under rustls 0.23 (upstream issue
//! #404): there the certificate must also name the host.
//!
//! The monitor user needs `REPLICATION CLIENT` (MySQL, MariaDB < 10.5) or `SLAVE MONITOR`
//! (MariaDB >= 10.5) to read the replica status.

mod status;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{ClientIdentity, Conn, Opts, OptsBuilder, Row, SslOpts};

use crate::config::{ClusterConfig, MonitorConfig, ServerConfig, ServerTls, ServerTlsMode};
use crate::tls::ServerVerify;
use crate::topology::probe_pg::{ProbeError, ProbeResult};

pub use status::{
    decide_role, parse_read_only, parse_vars, Flavor, MysqlStatus, ReplicaChannel, ServerInfo,
    ServerVars, TextRow,
};

/// Connection options for the monitor user: the server's `socket` when it has one, as the data
/// path does, else TCP (never the socket `@@socket` names); no default database unless one other
/// than the PostgreSQL default (`postgres`) is configured.
pub fn connect_opts(server: &ServerConfig, mon: &MonitorConfig) -> OptsBuilder {
    let db = mon.database.trim();
    let db = (!db.is_empty() && db != "postgres").then(|| db.to_owned());
    let pass = (!mon.password.is_empty()).then(|| mon.password.clone());
    let socket = server
        .socket
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    OptsBuilder::default()
        .ip_or_hostname(server.host.clone())
        .tcp_port(server.port)
        .socket(socket)
        .user(Some(mon.user.clone()))
        .pass(pass)
        .db_name(db)
        .prefer_socket(false)
        .stmt_cache_size(0)
}

/// mysql_async TLS options for the cluster's `server_tls` (`None` = plain TCP): the same CA bundle
/// and client certificate as the session backends, and the certificate check of the mode.
pub fn ssl_opts(tls: &ServerTls) -> Option<SslOpts> {
    let client = tls.connector()?;
    let mut o = SslOpts::default();
    if let Some(ca) = client.ca_pem() {
        // Only the configured CA: no built-in web roots.
        o = o
            .with_root_certs(vec![ca.to_vec().into()])
            .with_disable_built_in_roots(true);
    }
    if let Some((cert, key)) = client.identity_pem() {
        o = o.with_client_identity(Some(ClientIdentity::new(
            cert.to_vec().into(),
            key.to_vec().into(),
        )));
    }
    Some(match client.verify() {
        ServerVerify::None => o.with_danger_accept_invalid_certs(true),
        ServerVerify::Chain => o.with_danger_skip_domain_validation(true),
        ServerVerify::Full => o,
    })
}

/// Opens a driver connection with `opts`, over TLS as `tls` says; in mode `prefer` a server that
/// does not offer TLS is connected to again in plain TCP. A Unix-domain socket is never TLS, as on
/// the data path. Errors are described as text.
pub(crate) async fn connect(opts: OptsBuilder, tls: &ServerTls) -> Result<Conn, String> {
    let on_socket = Opts::from(opts.clone()).socket().is_some();
    if on_socket || tls.mode == ServerTlsMode::Disable {
        return Conn::new(opts).await.map_err(|e| describe(&e));
    }
    let ssl = ssl_opts(tls).ok_or_else(|| {
        format!(
            "server_tls mode {} has no TLS client configuration",
            tls.mode.as_str()
        )
    })?;
    match Conn::new(opts.clone().ssl_opts(ssl)).await {
        Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer))
            if tls.plain_allowed() =>
        {
            Conn::new(opts).await.map_err(|e| describe(&e))
        }
        Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)) => {
            Err(format!(
                "the server does not offer TLS (server_tls mode {})",
                tls.mode.as_str()
            ))
        }
        r => r.map_err(|e| describe(&e)),
    }
}

/// Text form of a driver error: the server's code and message, or the innermost cause (the
/// driver's own wrappers repeat themselves, e.g. "Input/output error: Input/output error: ...").
pub(crate) fn describe(e: &mysql_async::Error) -> String {
    if let mysql_async::Error::Server(s) = e {
        return format!("ERROR {} ({}): {}", s.code, s.state, s.message);
    }
    let mut innermost: &dyn std::error::Error = e;
    while let Some(inner) = innermost.source() {
        innermost = inner;
    }
    innermost.to_string()
}

/// A failed query: a broken connection is a connection error, a server error a query error.
fn query_error(e: &mysql_async::Error) -> ProbeError {
    if e.is_fatal() {
        ProbeError::Connect(format!("connection lost: {}", describe(e)))
    } else {
        ProbeError::Query(describe(e))
    }
}

async fn text_rows(conn: &mut Conn, sql: &str) -> Result<Vec<TextRow>, mysql_async::Error> {
    let rows: Vec<Row> = conn.query(sql).await?;
    Ok(rows.iter().map(TextRow::from_row).collect())
}

async fn first_row(conn: &mut Conn, sql: &str) -> Result<TextRow, ProbeError> {
    let rows = text_rows(conn, sql).await.map_err(|e| query_error(&e))?;
    rows.into_iter()
        .next()
        .ok_or_else(|| ProbeError::Unexpected(format!("no row from {sql:?}")))
}

/// An open monitor connection and what was learned about the server when it opened.
struct Session {
    conn: Conn,
    info: ServerInfo,
    /// The replica status statement this server accepts.
    status_sql: &'static str,
}

impl Session {
    async fn open(opts: OptsBuilder, tls: &ServerTls) -> Result<Session, ProbeError> {
        let mut conn = connect(opts, tls).await.map_err(ProbeError::Connect)?;
        let row = first_row(&mut conn, "SELECT @@version").await?;
        let version = row
            .values()
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| ProbeError::Unexpected("@@version is NULL".into()))?
            .to_owned();
        let info = ServerInfo::parse(&version);
        let status_sql = info.status_statements().0;
        Ok(Session {
            conn,
            info,
            status_sql,
        })
    }

    async fn status(&mut self) -> Result<MysqlStatus, ProbeError> {
        let row = first_row(&mut self.conn, self.info.vars_query()).await?;
        let vars = parse_vars(self.info.flavor, &row.values())?;
        let rows = self.replica_rows().await?;
        let channels = rows
            .iter()
            .map(ReplicaChannel::from_row)
            .collect::<Result<_, _>>()?;
        Ok(MysqlStatus {
            info: self.info.clone(),
            vars,
            channels,
        })
    }

    /// Runs the replica status statement, switching to the other spelling if the server rejects it.
    async fn replica_rows(&mut self) -> Result<Vec<TextRow>, ProbeError> {
        let first = match text_rows(&mut self.conn, self.status_sql).await {
            Ok(rows) => return Ok(rows),
            Err(e) if e.is_fatal() => return Err(query_error(&e)),
            Err(e) => e,
        };
        let (a, b) = self.info.status_statements();
        let other = if self.status_sql == a { b } else { a };
        match text_rows(&mut self.conn, other).await {
            Ok(rows) => {
                self.status_sql = other;
                Ok(rows)
            }
            Err(e) if e.is_fatal() => Err(query_error(&e)),
            // Report the preferred statement's error: it is the one that should have worked.
            Err(_) => Err(query_error(&first)),
        }
    }
}

/// One server's monitor connection, kept open between probes.
pub struct MysqlProber {
    server: ServerConfig,
    mon: MonitorConfig,
    tls: ServerTls,
    session: Option<Session>,
    last_status: Option<MysqlStatus>,
    /// Replication error of the previous probe, to log changes once.
    last_repl_error: Option<String>,
}

impl std::fmt::Debug for MysqlProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlProber")
            .field("server", &self.server.name)
            .field("connected", &self.session.is_some())
            .finish()
    }
}

impl MysqlProber {
    /// A prober of `server` logging in as `mon`, with the TLS settings of `cluster`.
    pub fn new(server: ServerConfig, mon: MonitorConfig, cluster: &ClusterConfig) -> Self {
        Self::with_tls(server, mon, cluster.server_tls.clone())
    }

    /// A prober of `server` logging in as `mon` with the given TLS settings.
    pub fn with_tls(server: ServerConfig, mon: MonitorConfig, tls: ServerTls) -> Self {
        MysqlProber {
            server,
            mon,
            tls,
            session: None,
            last_status: None,
            last_repl_error: None,
        }
    }

    pub fn server(&self) -> &ServerConfig {
        &self.server
    }

    /// Is a monitor connection currently open?
    pub fn is_connected(&self) -> bool {
        self.session.is_some()
    }

    /// What the latest probe read (GTID positions, channels, errors); `None` after a failure.
    pub fn last_status(&self) -> Option<&MysqlStatus> {
        self.last_status.as_ref()
    }

    /// Probes the server and reduces the status to the shared [`ProbeResult`].
    pub async fn probe(&mut self) -> Result<ProbeResult, ProbeError> {
        self.probe_status().await.map(|s| s.to_result())
    }

    /// Probes the server, (re)connecting if needed; the whole probe runs under `mon.timeout`.
    /// Any failure closes the connection so the next probe starts from a fresh one.
    pub async fn probe_status(&mut self) -> Result<MysqlStatus, ProbeError> {
        let deadline = self.mon.timeout;
        let res = match tokio::time::timeout(deadline, self.probe_inner()).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout(deadline)),
        };
        match &res {
            Ok(s) => {
                self.note_replication_error(s.replication_error());
                self.last_status = Some(s.clone());
            }
            Err(_) => {
                self.disconnect();
                self.last_status = None;
            }
        }
        res
    }

    async fn probe_inner(&mut self) -> Result<MysqlStatus, ProbeError> {
        let opts = connect_opts(&self.server, &self.mon);
        let reused = self.session.is_some();
        if !reused {
            self.session = Some(Session::open(opts.clone(), &self.tls).await?);
        }
        let res = self.session_mut()?.status().await;
        if reused && matches!(res, Err(ProbeError::Connect(_))) {
            // The kept connection broke (server restart, idle kill): retry once on a new one.
            self.disconnect();
            self.session = Some(Session::open(opts, &self.tls).await?);
            return self.session_mut()?.status().await;
        }
        res
    }

    fn session_mut(&mut self) -> Result<&mut Session, ProbeError> {
        self.session
            .as_mut()
            .ok_or_else(|| ProbeError::Connect("no connection".into()))
    }

    fn note_replication_error(&mut self, now: Option<String>) {
        if now == self.last_repl_error {
            return;
        }
        match &now {
            Some(e) => tracing::warn!(server = %self.server.name, error = %e, "replication error"),
            None => tracing::info!(server = %self.server.name, "replication error cleared"),
        }
        self.last_repl_error = now;
    }

    /// Closes the monitor connection, if any.
    pub fn disconnect(&mut self) {
        if let Some(s) = self.session.take() {
            close(s, self.mon.timeout);
        }
    }
}

impl Drop for MysqlProber {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// Closes a connection in the background, sending `COM_QUIT` for at most `limit`.
fn close(session: Session, limit: Duration) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        // `disconnect` marks the connection closed on its first poll, so dropping it on timeout
        // does not start the driver's own (unbounded) cleanup.
        rt.spawn(async move {
            let _ = tokio::time::timeout(limit, session.conn.disconnect()).await;
        });
    }
}

/// One-shot probe: connects (with `tls`), probes and closes, all under `mon.timeout`.
pub async fn probe(
    server: &ServerConfig,
    mon: &MonitorConfig,
    tls: &ServerTls,
) -> Result<ProbeResult, ProbeError> {
    MysqlProber::with_tls(server.clone(), mon.clone(), tls.clone())
        .probe()
        .await
}

#[cfg(test)]
mod tests;
