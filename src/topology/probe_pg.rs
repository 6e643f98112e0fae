//! Probes one PostgreSQL server for its role, WAL positions and replication lag, under a deadline.
//!
//! A [`PgProber`] keeps one monitor connection per server open between probes and reconnects after
//! any error or timeout. Connections go through the server's `socket` when it has one, as the data
//! path does, else over TCP with TLS as the cluster's `server_tls` says ([`connect_driver`],
//! shared with the failover actions). The monitor user needs `pg_monitor` (or `pg_read_all_stats`) to read the
//! WAL receiver's status; without it the prober falls back to "a WAL receiver process exists".

use crate::position::lsn::parse_lsn;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::backend::stream::{dial, Endpoint};
use crate::config::{ClusterConfig, MonitorConfig, ServerConfig, ServerTls, ServerTlsMode};
use crate::topology::model::Role;
use crate::topology::replay_bound::ReplayBound;

/// What one successful probe measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// `Primary` or `Replica`; `Unknown` for a server that is neither (PostgreSQL: a primary with
    /// `default_transaction_read_only = on`; MariaDB: `read_only = 1` without replication).
    pub role: Role,
    /// Primary: `pg_current_wal_lsn()`. Replica: `pg_last_wal_replay_lsn()`. `None` if NULL.
    pub lsn: Option<u64>,
    /// Replica: `pg_last_wal_receive_lsn()` (`None` on a primary or when NULL).
    pub receive_lsn: Option<u64>,
    /// Primary: `pg_current_wal_insert_lsn()`, which (unlike `lsn`, the write position) covers
    /// commits still in WAL buffers under `synchronous_commit = off`; read-your-writes positions.
    /// `None` on replicas and MySQL.
    pub insert_lsn: Option<u64>,
    /// Replica: replay lag in seconds, 0 when everything received is replayed; `None` when
    /// PostgreSQL cannot tell (nothing replayed yet) and always `None` on a primary.
    pub lag_seconds: Option<f64>,
    /// Replica: the WAL receiver is streaming. Always `false` on a primary.
    pub streaming: bool,
    /// MariaDB only: the GTID position compared across servers (primary `@@gtid_binlog_pos`,
    /// replica `@@gtid_slave_pos`; empty = no GTIDs yet). `None` on PostgreSQL and MySQL.
    pub gtid: Option<String>,
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    #[error("probe timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("query failed: {0}")]
    Query(String),
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl ProbeError {
    /// The `result` label of `switchyard_monitor_probes_total` for this failure.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ProbeError::Timeout(_) => "timeout",
            _ => "error",
        }
    }
}

/// Parses a PostgreSQL boolean in text form (`t`/`f`, as `simple_query` returns it).
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "t" | "true" | "on" | "1" => Some(true),
        "f" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Parses a lag in seconds; negative values (clock skew between hosts) read as 0.
fn parse_seconds(text: &str) -> Option<f64> {
    let v: f64 = text.trim().parse().ok()?;
    if v.is_finite() {
        Some(v.max(0.0))
    } else {
        None
    }
}

/// The query run on a replica; one round trip.
const REPLICA_QUERY: &str = "SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
     CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
     ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END, \
     (SELECT status FROM pg_stat_wal_receiver LIMIT 1), \
     (SELECT pid FROM pg_stat_wal_receiver LIMIT 1)";

/// Decides whether the WAL receiver streams from its `status` and `pid` columns. A monitor user
/// without `pg_read_all_stats` sees only the pid: then a running receiver counts as streaming.
fn receiver_streaming(status: Option<&str>, pid: Option<&str>) -> bool {
    match status {
        Some(s) => s == "streaming",
        None => pid.is_some(),
    }
}

/// Builds the replica result from the text columns of [`REPLICA_QUERY`].
fn replica_result(cols: &[Option<&str>]) -> Result<ProbeResult, ProbeError> {
    let [receive, replay, lag, status, pid] = cols else {
        return Err(ProbeError::Unexpected(format!(
            "replica query returned {} columns",
            cols.len()
        )));
    };
    let lsn_of = |v: &Option<&str>| -> Result<Option<u64>, ProbeError> {
        match v {
            None => Ok(None),
            Some(t) => parse_lsn(t)
                .map(Some)
                .ok_or_else(|| ProbeError::Unexpected(format!("bad LSN {t:?}"))),
        }
    };
    let lag_seconds = match lag {
        None => None,
        Some(t) => {
            Some(parse_seconds(t).ok_or_else(|| ProbeError::Unexpected(format!("bad lag {t:?}")))?)
        }
    };
    Ok(ProbeResult {
        role: Role::Replica,
        lsn: lsn_of(replay)?,
        receive_lsn: lsn_of(receive)?,
        insert_lsn: None,
        lag_seconds,
        streaming: receiver_streaming(*status, *pid),
        gtid: None,
    })
}

/// Text form of a driver error, with the server's message when there is one.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A tokio-postgres connection task (plain or TLS): poll it to drive the client.
pub(crate) type DriverConnection =
    Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Connects with `cfg` to `server`: through its Unix-domain socket when it has one (never TLS,
/// as on the data path), else over TCP with TLS as `tls` (the cluster's `server_tls`) says, using
/// the same rustls config as the session backends; the certificate is checked against `cfg`'s
/// host. The caller puts it under a deadline. Errors are described as text.
pub(crate) async fn connect_driver(
    cfg: &mut tokio_postgres::Config,
    server: &ServerConfig,
    tls: &ServerTls,
) -> Result<(Client, DriverConnection), String> {
    if let Some(path) = &server.socket {
        // Opened as the data path opens it.
        let (stream, _) = dial(Endpoint::Unix(path))
            .await
            .map_err(|e| format!("socket {}: {e}", path.display()))?;
        let (client, conn) = cfg
            .connect_raw(stream, NoTls)
            .await
            .map_err(|e| describe(&e))?;
        return Ok((client, Box::pin(conn)));
    }
    if tls.mode == ServerTlsMode::Disable {
        cfg.ssl_mode(SslMode::Disable);
        let (client, conn) = cfg.connect(NoTls).await.map_err(|e| describe(&e))?;
        return Ok((client, Box::pin(conn)));
    }
    let connector = tls.connector().ok_or_else(|| {
        format!(
            "server_tls mode {} has no TLS client configuration",
            tls.mode.as_str()
        )
    })?;
    cfg.ssl_mode(if tls.plain_allowed() {
        SslMode::Prefer
    } else {
        SslMode::Require
    });
    let (client, conn) = cfg
        .connect(connector.postgres())
        .await
        .map_err(|e| describe(&e))?;
    Ok((client, Box::pin(conn)))
}

/// Runs a simple query and returns the text columns of its first row.
async fn first_row(client: &Client, sql: &str) -> Result<Vec<Option<String>>, ProbeError> {
    let msgs = client
        .simple_query(sql)
        .await
        .map_err(|e| ProbeError::Query(describe(&e)))?;
    for m in msgs {
        if let SimpleQueryMessage::Row(row) = m {
            return Ok((0..row.len())
                .map(|i| row.get(i).map(str::to_owned))
                .collect());
        }
    }
    Err(ProbeError::Unexpected(format!("no row from {sql:?}")))
}

/// Probes over an open client: role first, then the role's positions and lag.
async fn query_state(client: &Client) -> Result<ProbeResult, ProbeError> {
    let row = first_row(client, "SELECT pg_is_in_recovery()").await?;
    let in_recovery = row
        .first()
        .and_then(|v| v.as_deref())
        .and_then(parse_bool)
        .ok_or_else(|| ProbeError::Unexpected(format!("pg_is_in_recovery() = {row:?}")))?;
    if !in_recovery {
        let row = first_row(
            client,
            "SELECT pg_current_wal_lsn(), current_setting('default_transaction_read_only'), \
             pg_current_wal_insert_lsn()",
        )
        .await?;
        // A primary made read-only (fenced by a failover, possibly by another proxy) is not a
        // writer: its role is unknown, like a MariaDB server with read_only=1 and no replication.
        let read_only = row.get(1).and_then(|v| v.as_deref()).and_then(parse_bool);
        let lsn_at = |i: usize| match row.get(i).and_then(|v| v.as_deref()) {
            Some(t) => parse_lsn(t)
                .map(Some)
                .ok_or_else(|| ProbeError::Unexpected(format!("bad LSN {t:?}"))),
            None => Ok(None),
        };
        let (lsn, insert_lsn) = (lsn_at(0)?, lsn_at(2)?);
        return Ok(ProbeResult {
            role: if read_only == Some(true) {
                Role::Unknown
            } else {
                Role::Primary
            },
            lsn,
            receive_lsn: None,
            insert_lsn,
            lag_seconds: None,
            streaming: false,
            gtid: None,
        });
    }
    let row = first_row(client, REPLICA_QUERY).await?;
    let cols: Vec<Option<&str>> = row.iter().map(|v| v.as_deref()).collect();
    replica_result(&cols)
}

/// One server's monitor connection, kept open between probes.
pub struct PgProber {
    server: ServerConfig,
    mon: MonitorConfig,
    tls: ServerTls,
    client: Option<Client>,
    conn_task: Option<JoinHandle<()>>,
    /// Caps the replica's time lag by what earlier probes saw (kept across reconnects).
    replay: ReplayBound,
}

impl std::fmt::Debug for PgProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgProber")
            .field("server", &self.server.name)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

impl PgProber {
    /// A prober of `server` logging in as `mon`, with the TLS settings of `cluster`.
    pub fn new(server: ServerConfig, mon: MonitorConfig, cluster: &ClusterConfig) -> Self {
        Self::with_tls(server, mon, cluster.server_tls.clone())
    }

    /// A prober of `server` logging in as `mon` with the given TLS settings.
    pub fn with_tls(server: ServerConfig, mon: MonitorConfig, tls: ServerTls) -> Self {
        PgProber {
            server,
            mon,
            tls,
            client: None,
            conn_task: None,
            replay: ReplayBound::default(),
        }
    }

    pub fn server(&self) -> &ServerConfig {
        &self.server
    }

    /// Is a monitor connection currently open?
    pub fn is_connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// Probes the server, (re)connecting if needed; the whole probe runs under `mon.timeout`.
    /// Any failure closes the connection so the next probe starts from a fresh one.
    pub async fn probe(&mut self) -> Result<ProbeResult, ProbeError> {
        let deadline = self.mon.timeout;
        let res = match tokio::time::timeout(deadline, self.probe_inner()).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout(deadline)),
        };
        if res.is_err() {
            self.disconnect();
        }
        res
    }

    async fn probe_inner(&mut self) -> Result<ProbeResult, ProbeError> {
        if !self.is_connected() {
            self.disconnect();
            self.connect().await?;
        }
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| ProbeError::Connect("no connection".into()))?;
        let began = Instant::now();
        let mut r = query_state(client).await?;
        if r.role == Role::Replica {
            r.lag_seconds =
                self.replay
                    .lag(began, Instant::now(), r.receive_lsn, r.lsn, r.lag_seconds);
        } else {
            // A promoted server that later follows again starts a new history.
            self.replay = ReplayBound::default();
        }
        Ok(r)
    }

    async fn connect(&mut self) -> Result<(), ProbeError> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.server.host)
            .port(self.server.port)
            .user(&self.mon.user)
            .dbname(&self.mon.database)
            .application_name("switchyard-monitor")
            .connect_timeout(self.mon.timeout);
        if !self.mon.password.is_empty() {
            cfg.password(&self.mon.password);
        }
        let (client, conn) = connect_driver(&mut cfg, &self.server, &self.tls)
            .await
            .map_err(ProbeError::Connect)?;
        let server = self.server.name.clone();
        self.conn_task = Some(tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(server = %server, error = %describe(&e), "monitor connection closed");
            }
        }));
        self.client = Some(client);
        Ok(())
    }

    /// Closes the monitor connection (if any) and stops its task.
    pub fn disconnect(&mut self) {
        self.client = None;
        if let Some(t) = self.conn_task.take() {
            t.abort();
        }
    }
}

impl Drop for PgProber {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// One-shot probe: connects (with `tls`), probes and closes, all under `mon.timeout`.
pub async fn probe(
    server: &ServerConfig,
    mon: &MonitorConfig,
    tls: &ServerTls,
) -> Result<ProbeResult, ProbeError> {
    PgProber::with_tls(server.clone(), mon.clone(), tls.clone())
        .probe()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_clamp_negative_and_reject_garbage() {
        assert_eq!(parse_seconds("0"), Some(0.0));
        assert_eq!(parse_seconds("1.250000"), Some(1.25));
        assert_eq!(parse_seconds("-0.5"), Some(0.0));
        assert_eq!(parse_seconds("NaN"), None);
        assert_eq!(parse_seconds("x"), None);
    }

    #[test]
    fn bools_from_text() {
        assert_eq!(parse_bool("t"), Some(true));
        assert_eq!(parse_bool("f"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn replica_row_is_decoded() {
        let r = replica_result(&[
            Some("0/3000200"),
            Some("0/3000100"),
            Some("2.5"),
            Some("streaming"),
            Some("123"),
        ])
        .unwrap();
        assert_eq!(r.role, Role::Replica);
        assert_eq!(r.lsn, Some(0x300_0100));
        assert_eq!(r.receive_lsn, Some(0x300_0200));
        assert_eq!(r.lag_seconds, Some(2.5));
        assert!(r.streaming);
    }

    #[test]
    fn replica_row_with_nulls() {
        let r = replica_result(&[None, Some("0/10"), None, None, None]).unwrap();
        assert_eq!(r.receive_lsn, None);
        assert_eq!(r.lag_seconds, None);
        assert!(!r.streaming);
        assert!(replica_result(&[None, None]).is_err());
        assert!(replica_result(&[Some("zz"), None, None, None, None]).is_err());
    }

    #[test]
    fn streaming_from_status_or_pid() {
        assert!(receiver_streaming(Some("streaming"), Some("1")));
        assert!(!receiver_streaming(Some("waiting"), Some("1")));
        assert!(!receiver_streaming(Some("stopping"), None));
        // Unprivileged monitor user: status hidden, pid visible.
        assert!(receiver_streaming(None, Some("1")));
        assert!(!receiver_streaming(None, None));
    }

    #[test]
    fn timeout_is_labelled_timeout() {
        assert_eq!(
            ProbeError::Timeout(Duration::from_secs(1)).metric_label(),
            "timeout"
        );
        assert_eq!(ProbeError::Connect("x".into()).metric_label(), "error");
    }

    #[tokio::test]
    async fn unreachable_server_fails_within_the_deadline() {
        // Port 1 on loopback: connection refused (or a timeout), never a hang.
        let server = ServerConfig {
            name: "s".into(),
            host: "127.0.0.1".into(),
            port: 1,
            role: crate::config::RoleHint::Auto,
            weight: 1,
            priority: 0,
            promote: true,
            pool_size: None,
            socket: None,
        };
        let mon = MonitorConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_after: 1,
            unhealthy_after: 1,
            user: "u".into(),
            password: String::new(),
            database: "d".into(),
        };
        let started = std::time::Instant::now();
        let err = probe(&server, &mon, &ServerTls::default())
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(
            err,
            ProbeError::Connect(_) | ProbeError::Timeout(_)
        ));
    }
}
