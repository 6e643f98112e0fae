//! Loads YAML into the typed [`Config`], reporting every problem with its YAML path.
//!
//! Pipeline: text -> `yaml_serde::Value` (syntax, anchors, `<<` merges; top-level `x-*` keys are
//! dropped so they can hold anchors) -> `${ENV}` substitution -> [`RawConfig`] via
//! serde_path_to_error (types, unknown keys) -> semantic validation, which collects every problem
//! before returning.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use yaml_serde::Value;

use super::model::*;
use super::raw::*;

/// One thing wrong with the configuration, located by its YAML path (e.g. `clusters[0].listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a configuration; displays one `path: message` per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

/// Reads and validates a configuration file; `${ENV}` references use the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one(path.display().to_string(), format!("cannot read: {e}")))?;
    load_str(&text)
}

/// Validates configuration text; `${ENV}` references use the process environment.
pub fn load_str(text: &str) -> Result<Config, ConfigError> {
    load_str_with_env(text, &|name| std::env::var(name))
}

/// Validates configuration text, resolving `${ENV}` references through `env` (same contract as
/// [`std::env::var`]); lets tests and reloads supply their own environment.
pub fn load_str_with_env(
    text: &str,
    env: &dyn Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Config, ConfigError> {
    let mut value: Value =
        yaml_serde::from_str(text).map_err(|e| ConfigError::one("<yaml>", e.to_string()))?;
    if value.is_null() {
        // An empty document: validation reports the required sections.
        value = Value::Mapping(yaml_serde::Mapping::new());
    }
    value
        .apply_merge()
        .map_err(|e| ConfigError::one("<yaml>", e.to_string()))?;
    if let Some(top) = value.as_mapping_mut() {
        // `x-...` top-level keys hold YAML anchors for reuse (as in Compose files); drop them.
        top.retain(|key, _| !key.as_str().is_some_and(|k| k.starts_with("x-")));
    }
    let mut env_errors = Vec::new();
    substitute_tree(&mut value, &mut String::new(), env, &mut env_errors);
    if !env_errors.is_empty() {
        return Err(ConfigError {
            problems: env_errors
                .into_iter()
                .map(|(path, message)| Problem { path, message })
                .collect(),
        });
    }
    let raw: RawConfig = serde_path_to_error::deserialize(value)
        .map_err(|e| ConfigError::one(e.path().to_string(), e.inner().to_string()))?;
    validate(raw)
}

/// Turns the raw structs into the typed model, or returns every semantic problem found.
pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut v = Validator::default();
    let config = v.config(raw);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError {
            problems: v.problems,
        })
    }
}

/// `sockaddr_un.sun_path` holds 108 bytes, one of them the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9930);
const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;
const MIN_MESSAGE_SIZE: u64 = 1 << 10;
const MAX_MESSAGE_SIZE: u64 = 1 << 30;
const MIN_MONITOR_INTERVAL: Duration = Duration::from_millis(50);
const DEFAULT_READMIT_AFTER: Duration = Duration::from_secs(5);
const DEFAULT_LAG_ALERT: Duration = Duration::from_secs(30);

/// Accumulates problems while building a (possibly invalid) model; the model is only returned when
/// no problem was recorded.
#[derive(Default)]
pub(super) struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let admin = AdminConfig {
            listen: match &raw.admin.listen {
                Scalar::Missing => Some(DEFAULT_ADMIN_LISTEN),
                s if s.is_off() => None,
                s => self.socket_addr("admin.listen", s),
            },
            token: raw.admin.token.filter(|t| !t.is_empty()),
        };
        let limits = self.limits(&raw.limits);

        if raw.clusters.is_empty() {
            self.problem("clusters", "at least one cluster is required");
        }
        let clusters: Vec<ClusterConfig> = raw
            .clusters
            .into_iter()
            .enumerate()
            .map(|(i, c)| self.cluster(&format!("clusters[{i}]"), i, c))
            .collect();
        self.check_unique(
            clusters
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("clusters[{i}].name"), c.name.clone())),
            "cluster name",
        );
        self.check_listeners(admin.listen, &clusters);
        self.check_unique(
            clusters.iter().enumerate().filter_map(|(i, c)| {
                let p = c.listen_socket.as_ref()?;
                Some((
                    format!("clusters[{i}].listen_socket"),
                    p.display().to_string(),
                ))
            }),
            "listen socket",
        );

        if raw.users.is_empty() {
            self.problem("users", "at least one user is required");
        }
        let cluster_names: HashSet<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        let users: Vec<UserConfig> = raw
            .users
            .into_iter()
            .enumerate()
            .map(|(i, u)| self.user(&format!("users[{i}]"), u, &cluster_names))
            .collect();
        self.check_unique(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("users[{i}].name"), u.name.clone())),
            "user name",
        );

        Config {
            admin,
            limits,
            clusters,
            users,
        }
    }

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        let size = self.size(
            "limits.max_message_size",
            &raw.max_message_size,
            DEFAULT_MAX_MESSAGE_SIZE,
        );
        if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&size) {
            self.problem(
                "limits.max_message_size",
                format!("{size} bytes is out of range (1KiB to 1GiB)"),
            );
        }
        let max_client_connections = raw.max_client_connections.unwrap_or(10_000);
        if max_client_connections == 0 {
            self.problem("limits.max_client_connections", "must be at least 1");
        }
        Limits {
            max_message_size: usize::try_from(size).unwrap_or(usize::MAX),
            max_client_connections,
            connect_timeout: self.positive_duration(
                "limits.connect_timeout",
                &raw.connect_timeout,
                Duration::from_secs(5),
            ),
            client_login_timeout: self.positive_duration(
                "limits.client_login_timeout",
                &raw.client_login_timeout,
                Duration::from_secs(15),
            ),
            session_replay_timeout: self.positive_duration(
                "limits.session_replay_timeout",
                &raw.session_replay_timeout,
                Duration::from_secs(5),
            ),
            shutdown_timeout: self.duration(
                "limits.shutdown_timeout",
                &raw.shutdown_timeout,
                Duration::from_secs(30),
            ),
        }
    }

    fn cluster(&mut self, path: &str, index: usize, raw: RawCluster) -> ClusterConfig {
        let name = match raw.name {
            Some(n) => {
                if !is_simple_name(&n, false) {
                    self.problem(
                        format!("{path}.name"),
                        format!("invalid cluster name {n:?}: use letters, digits, '_' and '-'"),
                    );
                }
                n
            }
            None => {
                self.problem(format!("{path}.name"), "required");
                format!("cluster{index}")
            }
        };
        let listen = match &raw.listen {
            Scalar::Missing => {
                self.problem(format!("{path}.listen"), "required (e.g. 127.0.0.1:6432)");
                None
            }
            s => self.socket_addr(&format!("{path}.listen"), s),
        }
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        let listen_socket = raw
            .listen_socket
            .and_then(|p| self.socket_path(&format!("{path}.listen_socket"), &p));

        if raw.servers.is_empty() {
            self.problem(format!("{path}.servers"), "at least one server is required");
        }
        let servers: Vec<ServerConfig> = raw
            .servers
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.server(&format!("{path}.servers[{i}]"), &name, i, s))
            .collect();
        self.check_unique(
            servers
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("{path}.servers[{i}].name"), s.name.clone())),
            "server name",
        );
        self.check_unique(
            servers.iter().enumerate().map(|(i, s)| {
                (
                    format!("{path}.servers[{i}].address"),
                    s.address().to_ascii_lowercase(),
                )
            }),
            "server address",
        );

        let routing = self.routing(&format!("{path}.routing"), raw.routing);
        let monitor = match raw.monitor {
            Some(m) => self.monitor(&format!("{path}.monitor"), m),
            None => {
                self.problem(
                    format!("{path}.monitor"),
                    "required (at least `user`, the login the health monitor uses)",
                );
                MonitorConfig {
                    interval: Duration::from_secs(1),
                    timeout: Duration::from_secs(2),
                    healthy_after: 2,
                    unhealthy_after: 3,
                    user: String::new(),
                    password: String::new(),
                    database: "postgres".to_owned(),
                }
            }
        };
        let failover = self.failover(&format!("{path}.failover"), raw.failover, &monitor);
        let pool = self.pool(&format!("{path}.pool"), raw.pool);
        for (i, s) in servers.iter().enumerate() {
            self.server_pool_size(&format!("{path}.servers[{i}].pool_size"), s, &pool);
        }
        let protocol = match raw.protocol {
            RawProtocol::Postgres => Protocol::Postgres,
            RawProtocol::Mysql => Protocol::Mysql,
        };
        let tls = self.tls(&format!("{path}.tls"), raw.tls, protocol);
        let server_tls = self.server_tls(&format!("{path}.server_tls"), raw.server_tls);
        ClusterConfig {
            name,
            failover,
            pool,
            tls,
            server_tls,
            protocol,
            listen,
            listen_socket,
            servers,
            routing,
            monitor,
        }
    }

    fn server(&mut self, path: &str, cluster: &str, index: usize, raw: RawServer) -> ServerConfig {
        let name = match raw.name {
            Some(n) => {
                if !is_simple_name(&n, true) {
                    self.problem(
                        format!("{path}.name"),
                        format!("invalid server name {n:?}: use letters, digits, '_', '-' and '.'"),
                    );
                }
                n
            }
            None => format!("{cluster}-{index}"),
        };
        let (host, port) = match raw.address {
            Some(a) => match parse_host_port(&a) {
                Ok(hp) => hp,
                Err(e) => {
                    self.problem(
                        format!("{path}.address"),
                        format!("invalid address {a:?}: {e}"),
                    );
                    (a, 0)
                }
            },
            None => {
                self.problem(format!("{path}.address"), "required (host:port)");
                (String::new(), 0)
            }
        };
        ServerConfig {
            name,
            host,
            port,
            role: match raw.role {
                RawRole::Auto => RoleHint::Auto,
                RawRole::Primary => RoleHint::Primary,
                RawRole::Replica => RoleHint::Replica,
            },
            weight: raw.weight.unwrap_or(1),
            priority: raw.priority.unwrap_or(0),
            promote: raw.promote.unwrap_or(true),
            pool_size: raw.pool_size,
            socket: raw
                .socket
                .and_then(|p| self.socket_path(&format!("{path}.socket"), &p))
                .map(std::sync::Arc::from),
        }
    }

    fn user(&mut self, path: &str, raw: RawUser, clusters: &HashSet<&str>) -> UserConfig {
        let name = match raw.name {
            Some(n) if !n.is_empty() => n,
            _ => {
                self.problem(format!("{path}.name"), "required (a non-empty user name)");
                String::new()
            }
        };
        let secret = match (&raw.password, raw.scram_verifier) {
            (Some(_), Some(_)) => {
                self.problem(path, "give either `password` or `scram_verifier`, not both");
                ClientSecret::Password(String::new())
            }
            (None, None) => {
                self.problem(path, "`password` or `scram_verifier` is required");
                ClientSecret::Password(String::new())
            }
            (Some(p), None) => {
                if p.is_empty() {
                    self.problem(format!("{path}.password"), "must not be empty");
                }
                ClientSecret::Password(p.clone())
            }
            (None, Some(v)) => {
                if let Err(e) = check_scram_verifier(&v) {
                    self.problem(format!("{path}.scram_verifier"), e);
                }
                ClientSecret::ScramVerifier(v)
            }
        };
        let auth = match raw.auth {
            RawAuth::ScramSha256 => AuthMethod::ScramSha256,
            RawAuth::Md5 => AuthMethod::Md5,
        };
        if auth == AuthMethod::Md5 && matches!(secret, ClientSecret::ScramVerifier(_)) {
            self.problem(
                format!("{path}.auth"),
                "md5 needs a plain `password`; a SCRAM verifier cannot check md5 logins",
            );
        }
        let mysql_auth = match raw.mysql_auth {
            RawMysqlAuth::Native => MysqlAuth::Native,
            RawMysqlAuth::CachingSha2 => MysqlAuth::CachingSha2,
        };
        let mut seen = HashSet::new();
        for (i, c) in raw.clusters.iter().enumerate() {
            if !clusters.contains(c.as_str()) {
                self.problem(
                    format!("{path}.clusters[{i}]"),
                    format!("unknown cluster {c:?}"),
                );
            } else if !seen.insert(c.as_str()) {
                self.problem(
                    format!("{path}.clusters[{i}]"),
                    format!("{c:?} is listed twice"),
                );
            }
        }
        UserConfig {
            backend_user: raw.backend_user.unwrap_or_else(|| name.clone()),
            backend_password: raw.backend_password.or(raw.password),
            name,
            secret,
            auth,
            mysql_auth,
            clusters: raw.clusters,
            console: raw.console,
        }
    }

    /// Records a problem for each name that repeats an earlier one.
    fn check_unique(&mut self, items: impl Iterator<Item = (String, String)>, what: &str) {
        let mut first: HashMap<String, String> = HashMap::new();
        for (path, value) in items {
            if value.is_empty() {
                continue;
            }
            if let Some(earlier) = first.get(&value) {
                let message = format!("duplicate {what} {value:?} (first used at {earlier})");
                self.problem(path, message);
            } else {
                first.insert(value, path);
            }
        }
    }

    /// Two listeners clash when their ports match and their IPs match or either is a wildcard.
    fn check_listeners(&mut self, admin: Option<SocketAddr>, clusters: &[ClusterConfig]) {
        let mut seen: Vec<(String, SocketAddr)> = Vec::new();
        if let Some(a) = admin {
            seen.push(("admin.listen".to_owned(), a));
        }
        for (i, c) in clusters.iter().enumerate() {
            let path = format!("clusters[{i}].listen");
            if c.listen.port() == 0 {
                continue;
            }
            let clash = seen.iter().find(|(_, other)| {
                other.port() == c.listen.port()
                    && (other.ip() == c.listen.ip()
                        || other.ip().is_unspecified()
                        || c.listen.ip().is_unspecified())
            });
            if let Some((other_path, other)) = clash {
                let message = format!("{} clashes with {other_path} ({other})", c.listen);
                self.problem(path.clone(), message);
            }
            seen.push((path, c.listen));
        }
    }

    /// A Unix-domain socket path: absolute, short enough for `sockaddr_un` (107 bytes), and
    /// plain enough to be a SQL string literal as it is.
    fn socket_path(&mut self, path: &str, value: &str) -> Option<std::path::PathBuf> {
        let p = std::path::Path::new(value);
        let problem = if !p.is_absolute() {
            "must be an absolute path (e.g. /run/switchyard/.s.PGSQL.6432)"
        } else if value.len() > MAX_SOCKET_PATH {
            "is longer than the 107 bytes a Unix-domain socket path may have"
        } else if p.file_name().is_none() {
            "must name the socket file, not a directory"
        } else if value.contains(['\'', '"', '`', '\\']) || value.contains(char::is_control) {
            // MySQL clients read it back as a string literal (`@@socket`).
            "must not contain quotes, backslashes or control characters"
        } else {
            return Some(p.to_path_buf());
        };
        self.problem(path, format!("{value:?} {problem}"));
        None
    }

    fn socket_addr(&mut self, path: &str, value: &Scalar) -> Option<SocketAddr> {
        match value {
            Scalar::Str(s) => match s.trim().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.problem(
                        path,
                        format!("invalid listen address {s:?}: expected IP:port such as 127.0.0.1:6432 or [::1]:6432"),
                    );
                    None
                }
            },
            other => {
                self.problem(
                    path,
                    format!("expected an IP:port listen address, got {other}"),
                );
                None
            }
        }
    }

    pub(super) fn duration(&mut self, path: &str, value: &Scalar, default: Duration) -> Duration {
        let result = match value {
            Scalar::Missing => return default,
            Scalar::Str(s) => parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}")),
            Scalar::Int(0) => Ok(Duration::ZERO),
            Scalar::Int(_) | Scalar::Float(_) => Err(format!(
                "{value} has no unit: write e.g. \"{value}s\" or \"{value}ms\""
            )),
            other => Err(format!(
                "expected a duration such as \"500ms\", \"5s\" or \"2m\", got {other}"
            )),
        };
        result.unwrap_or_else(|message| {
            self.problem(path, message);
            default
        })
    }

    pub(super) fn positive_duration(
        &mut self,
        path: &str,
        value: &Scalar,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, value, default);
        if d.is_zero() {
            self.problem(path, "must be greater than zero");
        }
        d
    }

    pub(super) fn size(&mut self, path: &str, value: &Scalar, default: u64) -> u64 {
        let result = match value {
            Scalar::Missing => return default,
            Scalar::Str(s) => parse_size(s).map_err(|e| format!("invalid size {s:?}: {e}")),
            Scalar::Int(n) => u64::try_from(*n)
                .map_err(|_| format!("invalid size {n}: must be between 0 and 2^64-1 bytes")),
            other => Err(format!(
                "expected a size such as 65536, \"16MiB\" or \"1GB\", got {other}"
            )),
        };
        result.unwrap_or_else(|message| {
            self.problem(path, message);
            default
        })
    }
}

/// Cluster names: `[A-Za-z0-9_-]+`; server names may also contain dots.
fn is_simple_name(name: &str, allow_dot: bool) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.'))
}

#[path = "validate_routing.rs"]
mod validate_routing;

#[path = "validate_failover.rs"]
mod validate_failover;

#[path = "validate_tls.rs"]
mod validate_tls;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
