//! The YAML schema as written: serde structs (unknown keys rejected), and readers for its scalars.
//!
//! Scalar readers: durations, sizes, `host:port`, SCRAM verifiers, function names, and `${ENV}`
//! substitution on the parsed value tree. Each returns a plain message on error; the caller adds the path.
//!
//! Nothing here checks the configuration as a whole; `validate.rs` turns these structs into the
//! typed model. Fields that need "missing vs null vs value" (durations, sizes, addresses that can be "off")
//! use [`Scalar`], which keeps the written scalar for validation and error messages.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub clusters: Vec<RawCluster>,
    #[serde(default)]
    pub users: Vec<RawUser>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Missing = default address; `null`/`"off"` = disabled.
    #[serde(default)]
    pub listen: Scalar,
    /// Bearer token required by `/api/*`; missing or empty = no token.
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub max_message_size: Scalar,
    pub max_client_connections: Option<usize>,
    #[serde(default)]
    pub connect_timeout: Scalar,
    #[serde(default)]
    pub client_login_timeout: Scalar,
    #[serde(default)]
    pub session_replay_timeout: Scalar,
    #[serde(default)]
    pub shutdown_timeout: Scalar,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawProtocol {
    #[default]
    Postgres,
    Mysql,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: RawProtocol,
    #[serde(default)]
    pub listen: Scalar,
    pub listen_socket: Option<String>,
    #[serde(default)]
    pub servers: Vec<RawServer>,
    #[serde(default)]
    pub routing: RawRouting,
    pub monitor: Option<RawMonitor>,
    #[serde(default)]
    pub failover: RawFailover,
    #[serde(default)]
    pub pool: RawPool,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub server_tls: RawServerTls,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawPoolMode {
    #[default]
    Session,
    Transaction,
}

/// A cluster's `pool` section (server connections shared between clients).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    #[serde(default)]
    pub mode: RawPoolMode,
    /// Connections per (server, user, database, startup parameters). Missing = 20.
    pub size: Option<usize>,
    /// Warm idle connections each pool keeps. Missing = 0.
    pub min_idle: Option<usize>,
    /// Missing = 5s.
    #[serde(default)]
    pub checkout_timeout: Scalar,
    /// Missing = 10m; "off" = never.
    #[serde(default)]
    pub idle_timeout: Scalar,
    /// Missing = 1h; "off" = never.
    #[serde(default)]
    pub max_lifetime: Scalar,
    /// Prepared statements a pooled connection may accumulate before it is closed. Missing = 1000.
    pub max_prepared_statements: Option<usize>,
    /// Missing = 100ms; 0 = off.
    #[serde(default)]
    pub diagnostics_hold: Scalar,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFailoverMode {
    Auto,
    #[default]
    Follow,
    Off,
}

/// A cluster's `failover` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailover {
    #[serde(default)]
    pub mode: RawFailoverMode,
    /// Missing = 10s; `0s` = fail at once.
    #[serde(default)]
    pub write_hold: Scalar,
    /// Missing = 30s.
    #[serde(default)]
    pub promote_timeout: Scalar,
    /// Missing = 10s.
    #[serde(default)]
    pub switchover_timeout: Scalar,
    /// Missing = the monitor's login.
    pub user: Option<String>,
    pub password: Option<String>,
    /// MariaDB: login replicas use towards the primary (to turn a switched-over primary into a
    /// replica). Missing = the old primary is fenced until an operator rejoins it.
    pub replication_user: Option<String>,
    pub replication_password: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawRole {
    #[default]
    Auto,
    Primary,
    Replica,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub name: Option<String>,
    pub address: Option<String>,
    #[serde(default)]
    pub role: RawRole,
    pub weight: Option<u32>,
    /// Failover tie-break: higher wins among equally advanced replicas (default 0).
    pub priority: Option<i32>,
    /// `false` = never promoted by failover or switchover (default true).
    pub promote: Option<bool>,
    /// This server's connections per pool, instead of the cluster's `pool.size`.
    pub pool_size: Option<usize>,
    /// The server's Unix-domain socket on this host: the data path, the monitor and failover's
    /// sessions connect there instead of `address` (which replicas are pointed at on failover).
    pub socket: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawBalance {
    #[default]
    RoundRobin,
    LeastConnections,
    Random,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFallback {
    #[default]
    Primary,
    Error,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    #[serde(default)]
    pub balance: RawBalance,
    /// Missing = 10s; `null`/`"off"` = no limit.
    #[serde(default)]
    pub max_replica_lag: Scalar,
    /// Missing, `null` or `"off"` = no limit.
    #[serde(default)]
    pub max_replica_lag_bytes: Scalar,
    /// Missing = 5s.
    #[serde(default)]
    pub lag_readmit_after: Scalar,
    /// Missing = 30s; `null`/`"off"` = no alert.
    #[serde(default)]
    pub lag_alert: Scalar,
    #[serde(default)]
    pub fallback: RawFallback,
    #[serde(default)]
    pub write_functions: Vec<String>,
    pub classifier_cache_size: Option<usize>,
    #[serde(default)]
    pub consistency: RawConsistency,
    /// Missing = 500ms.
    #[serde(default)]
    pub causal_timeout: Scalar,
    /// Missing = false.
    pub causal_wait: Option<bool>,
}

/// Read consistency level.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawConsistency {
    Eventual,
    #[default]
    ReadYourWrites,
    Global,
    Strong,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    #[serde(default)]
    pub interval: Scalar,
    #[serde(default)]
    pub timeout: Scalar,
    pub healthy_after: Option<u32>,
    pub unhealthy_after: Option<u32>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum RawAuth {
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "md5")]
    Md5,
}

/// MySQL client auth plugin the proxy announces first (a client may switch to the other one).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum RawMysqlAuth {
    #[default]
    #[serde(rename = "mysql_native_password")]
    Native,
    #[serde(rename = "caching_sha2_password")]
    CachingSha2,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Option<String>,
    pub password: Option<String>,
    pub scram_verifier: Option<String>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub mysql_auth: RawMysqlAuth,
    pub backend_user: Option<String>,
    pub backend_password: Option<String>,
    #[serde(default)]
    pub clusters: Vec<String>,
    /// May open the admin console (PostgreSQL clusters, database `switchyard`). Missing = false.
    #[serde(default)]
    pub console: bool,
}

/// A scalar kept as written, for fields whose meaning depends on its kind
/// (missing, `null`, a number, a string such as `"5s"`, `"64MiB"` or `"off"`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Scalar {
    /// The key was absent.
    #[default]
    Missing,
    /// The key was present with a `null` (or `~`, or empty) value.
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl Scalar {
    /// True for `null` and the string `"off"` (any case): the "disabled" spellings.
    pub fn is_off(&self) -> bool {
        match self {
            Scalar::Null => true,
            Scalar::Str(s) => s.trim().eq_ignore_ascii_case("off"),
            _ => false,
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Missing => f.write_str("nothing"),
            Scalar::Null => f.write_str("null"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar (number, string or null)")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(i128::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawTlsMode {
    Disable,
    Allow,
    Require,
}

/// A cluster's `tls` section (TLS towards clients).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Missing = `allow` when `cert` is given, else `disable`.
    pub mode: Option<RawTlsMode>,
    /// PEM certificate chain, leaf first.
    pub cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
    /// PEM CA bundle: when given, clients must present a certificate it signed.
    pub client_ca: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawServerTlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A cluster's `server_tls` section (TLS from the proxy to its servers).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    /// Missing = `disable`.
    pub mode: Option<RawServerTlsMode>,
    /// PEM CA bundle the servers' certificates must chain to (verify-ca, verify-full).
    pub ca: Option<String>,
    /// PEM client certificate chain the proxy presents, leaf first.
    pub cert: Option<String>,
    /// PEM private key of `cert`.
    pub key: Option<String>,
}

pub use super::values::*;
