//! The validated, typed configuration model that the rest of the proxy reads.

use std::net::SocketAddr;
use std::time::Duration;

/// Server slots a cluster may ever have in one process (a reload appends slots for servers it
/// adds; removed servers keep theirs so indices stay valid).
pub const MAX_SERVER_SLOTS: usize = 256;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub admin: AdminConfig,
    pub limits: Limits,
    pub clusters: Vec<ClusterConfig>,
    pub users: Vec<UserConfig>,
}

/// Admin HTTP listener (metrics, health, API).
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// `None` disables the admin listener.
    pub listen: Option<SocketAddr>,
    /// Bearer token `/api/*` requires (`None` = open, for loopback-only listeners).
    pub token: Option<String>,
}

/// Process-wide limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest client or backend message accepted, in bytes (default 64 MiB).
    pub max_message_size: usize,
    /// Maximum concurrent client connections across all listeners (default 10000).
    pub max_client_connections: usize,
    /// Deadline for connecting + authenticating to a backend (default 5s).
    pub connect_timeout: Duration,
    /// Deadline for a client to finish startup + authentication (default 15s).
    pub client_login_timeout: Duration,
    /// Deadline for replaying session state on a backend (default 5s).
    pub session_replay_timeout: Duration,
    /// SIGTERM: how long open transactions may run to their end before sessions are closed (default 30s).
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    Mysql,
}

/// One cluster: one listener in front of a primary and its replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub protocol: Protocol,
    pub listen: SocketAddr,
    /// A Unix-domain socket to listen on as well (for PostgreSQL clients name it
    /// `<dir>/.s.PGSQL.<port>`, the file libpq opens for `host=<dir> port=<port>`).
    pub listen_socket: Option<std::path::PathBuf>,
    pub servers: Vec<ServerConfig>,
    pub routing: RoutingConfig,
    pub monitor: MonitorConfig,
    pub failover: FailoverConfig,
    pub pool: PoolConfig,
    /// TLS towards clients (default: disabled).
    pub tls: TlsConfig,
    /// TLS from the proxy to the servers (default: disabled).
    pub server_tls: ServerTls,
}

impl ClusterConfig {
    /// The pool settings for connections to server `server`: `pool`, with the server's own
    /// `pool_size` when it has one.
    pub fn pool_for(&self, server: usize) -> PoolConfig {
        let mut cfg = self.pool.clone();
        if let Some(size) = self.servers.get(server).and_then(|s| s.pool_size) {
            cfg.size = size;
        }
        cfg
    }
}

/// When a client gives its server connections back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A client keeps its server connections until it leaves.
    Session,
    /// A server connection returns to its pool whenever the server reports no open transaction
    /// (and nothing pins the client to it).
    Transaction,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub mode: PoolMode,
    /// Server connections per pool (server, backend user, database, startup parameters).
    pub size: usize,
    /// Connections each pool keeps open and idle, ready for the next request (opened in the
    /// background once the pool exists; idle_timeout never closes below it).
    pub min_idle: usize,
    /// How long a request waits for a free connection before it fails.
    pub checkout_timeout: Duration,
    /// Idle pooled connections older than this are closed (`None` = never).
    pub idle_timeout: Option<Duration>,
    /// Pooled connections are closed at their first return after this age (`None` = never).
    pub max_lifetime: Option<Duration>,
    /// A connection holding more prepared statements than this is closed instead of pooled.
    pub max_prepared_statements: usize,
    /// MySQL transaction pooling: how long a connection whose last answer left diagnostics
    /// (affected rows, an insert id, warnings, an error) stays with its session for a next
    /// command that reads them (zero: never).
    pub diagnostics_hold: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mode: PoolMode::Session,
            size: 20,
            min_idle: 0,
            checkout_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(3600)),
            max_prepared_statements: 1000,
            diagnostics_hold: Duration::from_millis(100),
        }
    }
}

/// Who promotes a replica when the primary fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    /// Switchyard detects, promotes the most advanced replica, repoints the others and fences.
    Auto,
    /// An external tool promotes; Switchyard follows the roles it probes (safe with many proxies).
    Follow,
    /// Detect and report only.
    Off,
}

impl FailoverMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverMode::Auto => "auto",
            FailoverMode::Follow => "follow",
            FailoverMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailoverConfig {
    pub mode: FailoverMode,
    /// How long a write waits for a primary (failover, switchover) before it fails (default 10s).
    pub write_hold: Duration,
    /// Deadline for promoting a replica (default 30s).
    pub promote_timeout: Duration,
    /// Switchover: deadline for open transactions to finish and the target to catch up (default 10s).
    pub switchover_timeout: Duration,
    /// Login for promote / repoint / fence (default: the monitor's).
    pub user: String,
    pub password: String,
    /// MariaDB: replication login to rejoin a switched-over primary as a replica.
    pub replication: Option<(String, String)>,
}

impl Default for FailoverConfig {
    /// The defaults of an absent `failover` section (mode `follow`, no credentials of its own).
    fn default() -> Self {
        FailoverConfig {
            mode: FailoverMode::Follow,
            write_hold: Duration::from_secs(10),
            promote_timeout: Duration::from_secs(30),
            switchover_timeout: Duration::from_secs(10),
            user: String::new(),
            password: String::new(),
            replication: None,
        }
    }
}

/// Role given in config; only a hint: the monitor discovers the real role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleHint {
    Auto,
    Primary,
    Replica,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Unique within the cluster; used in metric labels and logs.
    pub name: String,
    /// host:port as written (DNS names allowed); resolved at connect time.
    pub host: String,
    pub port: u16,
    pub role: RoleHint,
    /// Load-balancing weight (default 1; 0 = never chosen for reads unless nothing else).
    pub weight: u32,
    /// Failover tie-break among equally advanced replicas: higher wins (default 0).
    pub priority: i32,
    /// May failover or switchover promote this server? (default true)
    pub promote: bool,
    /// Connections per pool to this server, instead of the cluster's `pool.size` (`None`: that).
    pub pool_size: Option<usize>,
    /// The server's Unix-domain socket on this host, which pooled and session connections, cancel
    /// requests, the monitor and failover's sessions use instead of the TCP address; `None`: the
    /// address.
    pub socket: Option<std::sync::Arc<std::path::Path>>,
}

impl ServerConfig {
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConnections,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No usable replica: reads go to the primary.
    Primary,
    /// No usable replica: reads fail with an error.
    Error,
}

/// Read consistency (routing.md): which replicas a read may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Any healthy replica within the lag limits.
    Eventual,
    /// After this session wrote, only a replica known to have replayed the session's writes, else
    /// the primary (at once, or after waiting up to `causal_timeout` with `causal_wait`).
    #[default]
    ReadYourWrites,
    /// Every read goes to a replica that has replayed everything the primary had committed when
    /// the read arrived (covers writes made on other connections), else the primary.
    Global,
    /// Every read on the primary.
    Strong,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    pub balance: Balance,
    /// Replicas lagging more than this (seconds) get no reads. `None` = no time limit.
    pub max_replica_lag: Option<Duration>,
    /// Replicas lagging more than this many WAL bytes get no reads. `None` = no byte limit.
    pub max_replica_lag_bytes: Option<u64>,
    /// A replica that left the read set for lag (or unknown/broken replication) comes back only
    /// after its lag has stayed within the limits this long (default 5s; zero = at once).
    pub lag_readmit_after: Duration,
    /// Lag (seconds) over which a warning is logged once and `switchyard_replica_lag_alert` is 1.
    /// `None` = no alert. Default 30s.
    pub lag_alert: Option<Duration>,
    pub fallback: Fallback,
    /// Extra function names (lower case, schema-less) that write: calls route to the primary.
    pub write_functions: Vec<String>,
    /// Number of classification results cached by statement text (0 = no cache).
    pub classifier_cache_size: usize,
    /// Default read consistency of the cluster's sessions.
    pub consistency: Consistency,
    /// How long a read may wait for a replica to catch up before it goes to the primary
    /// (`causal_wait`).
    pub causal_timeout: Duration,
    /// A read that must see a position no replica is known to have replayed waits up to
    /// `causal_timeout` for one to replay it (offloads the primary, costs latency); `false`
    /// (default): it goes to the primary at once.
    pub causal_wait: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub interval: Duration,
    /// Deadline for one probe (connect + queries).
    pub timeout: Duration,
    /// Consecutive results needed before a server's health flips.
    pub healthy_after: u32,
    pub unhealthy_after: u32,
    /// Credentials the monitor logs in with.
    pub user: String,
    pub password: String,
    pub database: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ScramSha256,
    Md5,
}

/// MySQL auth plugin announced to MySQL clients (both are accepted after an auth switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlAuth {
    Native,
    CachingSha2,
}

/// How a client user proves itself to the proxy.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientSecret {
    /// Plain text password (from YAML or an environment variable).
    Password(String),
    /// A pg_authid-style verifier: `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
    ScramVerifier(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserConfig {
    pub name: String,
    pub secret: ClientSecret,
    /// Client auth method (default scram-sha-256; md5 needs a plain password).
    pub auth: AuthMethod,
    /// MySQL clients: plugin announced first (default mysql_native_password). Needs a plain password.
    pub mysql_auth: MysqlAuth,
    /// Credentials used towards the servers.
    pub backend_user: String,
    pub backend_password: Option<String>,
    /// Clusters this user may use; empty = all.
    pub clusters: Vec<String>,
    /// May open the admin console: database `switchyard` on a PostgreSQL listener.
    pub console: bool,
}

impl Config {
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// TLS towards the clients of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// No TLS: `SSLRequest` is answered `N`, MySQL clients are not offered CLIENT_SSL.
    #[default]
    Disable,
    /// TLS offered; plain clients are accepted too.
    Allow,
    /// TLS offered; clients that do not upgrade are refused.
    Require,
}

/// A cluster's `tls` section, with its files read and the server config built at load.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsConfig {
    pub mode: TlsMode,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// Clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<std::path::PathBuf>,
    /// Built from the files (`None` when the mode is `disable`).
    pub server: Option<crate::tls::TlsServer>,
}

/// The `tls` section that applies on a Unix-domain socket.
static NO_TLS: TlsConfig = TlsConfig {
    mode: TlsMode::Disable,
    cert: None,
    key: None,
    client_ca: None,
    server: None,
};

impl TlsConfig {
    /// What applies to one client: on a Unix-domain socket (`local`) no TLS is offered or
    /// required, as PostgreSQL never applies SSL to its own sockets and MySQL counts a socket as
    /// a secure transport.
    pub fn for_client(&self, local: bool) -> &TlsConfig {
        if local {
            &NO_TLS
        } else {
            self
        }
    }

    /// The server config to offer clients, if TLS is on.
    pub fn offered(&self) -> Option<&crate::tls::TlsServer> {
        match self.mode {
            TlsMode::Disable => None,
            TlsMode::Allow | TlsMode::Require => self.server.as_ref(),
        }
    }
    pub fn required(&self) -> bool {
        self.mode == TlsMode::Require
    }
}

/// How the proxy secures its connections to a cluster's servers (libpq `sslmode` levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerTlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS when the server offers it, plain TCP otherwise; the certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS; the server's certificate chain must lead to `ca`.
    VerifyCa,
    /// TLS; chain checked against `ca` and the certificate must name the server's `host`.
    VerifyFull,
}

impl ServerTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerTlsMode::Disable => "disable",
            ServerTlsMode::Prefer => "prefer",
            ServerTlsMode::Require => "require",
            ServerTlsMode::VerifyCa => "verify-ca",
            ServerTlsMode::VerifyFull => "verify-full",
        }
    }
}

/// A cluster's `server_tls` section, with its files read and the client config built at load.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerTls {
    pub mode: ServerTlsMode,
    /// CA bundle the servers' certificates must chain to (verify-ca, verify-full).
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate (chain) and key the proxy presents to the servers.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// Built from the files (`None` when the mode is `disable`).
    pub client: Option<crate::tls::TlsClient>,
}

impl ServerTls {
    /// The client config to connect with, unless TLS is disabled.
    pub fn connector(&self) -> Option<&crate::tls::TlsClient> {
        match self.mode {
            ServerTlsMode::Disable => None,
            _ => self.client.as_ref(),
        }
    }
    /// May a connection fall back to plain TCP when the server does not offer TLS?
    pub fn plain_allowed(&self) -> bool {
        matches!(self.mode, ServerTlsMode::Disable | ServerTlsMode::Prefer)
    }
}
