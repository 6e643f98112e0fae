//! Pure decoding of a MySQL/MariaDB server's variables and replica status into role, lag and GTIDs.
//!
//! No sockets: rows come in as [`TextRow`]s (column name -> text or NULL), so every rule is
//! unit-tested with literal rows in both column spellings.

use mysql_async::{Row, Value};

use crate::topology::model::Role;
use crate::topology::probe_pg::{ProbeError, ProbeResult};

/// Server family, detected from `@@version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    Mysql,
}

/// What `@@version` says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub flavor: Flavor,
    /// `@@version` as the server sent it.
    pub version: String,
    /// Leading `major.minor.patch` of the version (missing parts are 0).
    pub version_num: (u32, u32, u32),
}

impl ServerInfo {
    /// Parses `@@version`, e.g. `10.11.6-MariaDB-0+deb12u1` or `8.0.36`.
    pub fn parse(version: &str) -> Self {
        let flavor = if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::Mysql
        };
        // MariaDB may prefix its real version with a fake 5.5.5 for old clients.
        let text = match flavor {
            Flavor::MariaDb => version.strip_prefix("5.5.5-").unwrap_or(version),
            Flavor::Mysql => version,
        };
        ServerInfo {
            flavor,
            version: version.to_owned(),
            version_num: parse_version(text),
        }
    }

    /// The replica status statement to try first and the one to fall back to.
    pub fn status_statements(&self) -> (&'static str, &'static str) {
        match self.flavor {
            Flavor::MariaDb => (MARIADB_STATUS, "SHOW SLAVE STATUS"),
            Flavor::Mysql if self.version_num >= (8, 0, 22) => {
                ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
            }
            Flavor::Mysql => ("SHOW SLAVE STATUS", "SHOW REPLICA STATUS"),
        }
    }

    /// The server variables query of this flavor (columns as [`parse_vars`] expects them).
    pub fn vars_query(&self) -> &'static str {
        match self.flavor {
            Flavor::MariaDb => MARIADB_VARS,
            Flavor::Mysql => MYSQL_VARS,
        }
    }
}

/// MariaDB's status of every replication connection (the plain form shows only the default one).
const MARIADB_STATUS: &str = "SHOW ALL SLAVES STATUS";
const MARIADB_VARS: &str =
    "SELECT @@read_only, @@server_id, @@gtid_current_pos, @@gtid_binlog_pos, @@gtid_slave_pos";
const MYSQL_VARS: &str = "SELECT @@read_only, @@server_id, @@gtid_executed";

/// Parses the leading `major.minor.patch` of a version string.
pub(super) fn parse_version(text: &str) -> (u32, u32, u32) {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// One result row as text, looked up by column name (case-insensitive).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextRow {
    cols: Vec<(String, Option<String>)>,
}

impl TextRow {
    /// A row from `(column name, value)` pairs; `None` is SQL NULL.
    pub fn new(cols: Vec<(String, Option<String>)>) -> Self {
        TextRow { cols }
    }

    pub(super) fn from_row(row: &Row) -> Self {
        let cols = row
            .columns_ref()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let v = row.as_ref(i).and_then(value_text);
                (c.name_str().into_owned(), v)
            })
            .collect();
        TextRow { cols }
    }

    /// Is any of `names` a column of this row?
    pub fn has(&self, names: &[&str]) -> bool {
        self.find(names).is_some()
    }

    /// The value of the first of `names` that is a column of this row; `None` when no such
    /// column exists or its value is NULL.
    pub fn get(&self, names: &[&str]) -> Option<&str> {
        self.find(names)?.as_deref()
    }

    /// Like [`TextRow::get`], but an empty string also reads as `None`.
    pub fn get_nonempty(&self, names: &[&str]) -> Option<&str> {
        self.get(names).filter(|v| !v.trim().is_empty())
    }

    /// The values in column order.
    pub fn values(&self) -> Vec<Option<&str>> {
        self.cols.iter().map(|(_, v)| v.as_deref()).collect()
    }

    fn find(&self, names: &[&str]) -> Option<&Option<String>> {
        names.iter().find_map(|n| {
            self.cols
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(n))
                .map(|(_, v)| v)
        })
    }
}

/// A driver value as text (`None` for NULL). The text protocol sends everything as bytes.
pub(super) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::Date(y, mo, d, h, mi, s, us) => Some(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        )),
        Value::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let sign = if *neg { "-" } else { "" };
            Some(format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}"))
        }
    }
}

/// The server variables read on every probe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerVars {
    pub read_only: bool,
    pub server_id: Option<u64>,
    /// Every transaction applied on this server: MariaDB `@@gtid_current_pos`, MySQL
    /// `@@gtid_executed`. `None` when NULL or empty (no GTIDs yet).
    pub gtid_executed: Option<String>,
    /// MariaDB `@@gtid_binlog_pos` (what this server wrote to its binlog); `None` on MySQL.
    pub gtid_binlog_pos: Option<String>,
    /// MariaDB `@@gtid_slave_pos` (the last GTID per domain applied by replication); `None` on
    /// MySQL.
    pub gtid_slave_pos: Option<String>,
}

/// Parses `@@read_only`: `0`/`OFF` is writable; `1`/`ON` and MariaDB 11's `NO_LOCK*` modes are not.
pub fn parse_read_only(text: &str) -> Option<bool> {
    match text.trim().to_ascii_uppercase().as_str() {
        "0" | "OFF" => Some(false),
        "1" | "ON" | "NO_LOCK" | "NO_LOCK_NO_ADMIN" => Some(true),
        _ => None,
    }
}

/// Builds [`ServerVars`] from the columns of [`MARIADB_VARS`] or [`MYSQL_VARS`].
pub fn parse_vars(flavor: Flavor, cols: &[Option<&str>]) -> Result<ServerVars, ProbeError> {
    let nonempty = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (read_only, server_id, executed, binlog, slave) = match (flavor, cols) {
        (Flavor::MariaDb, [ro, id, current, binlog, slave]) => {
            (*ro, *id, *current, nonempty(*binlog), nonempty(*slave))
        }
        (Flavor::Mysql, [ro, id, executed]) => (*ro, *id, *executed, None, None),
        _ => {
            return Err(ProbeError::Unexpected(format!(
                "server variables query returned {} columns",
                cols.len()
            )))
        }
    };
    let read_only = read_only
        .and_then(parse_read_only)
        .ok_or_else(|| ProbeError::Unexpected(format!("@@read_only = {read_only:?}")))?;
    Ok(ServerVars {
        read_only,
        server_id: server_id.and_then(|s| s.trim().parse().ok()),
        gtid_executed: nonempty(executed),
        gtid_binlog_pos: binlog,
        gtid_slave_pos: slave,
    })
}

/// Column names of the replica status, old spelling first.
pub(super) mod col {
    pub const IO_RUNNING: &[&str] = &["Slave_IO_Running", "Replica_IO_Running"];
    pub const SQL_RUNNING: &[&str] = &["Slave_SQL_Running", "Replica_SQL_Running"];
    pub const SECONDS_BEHIND: &[&str] = &["Seconds_Behind_Master", "Seconds_Behind_Source"];
    pub const SOURCE_HOST: &[&str] = &["Master_Host", "Source_Host"];
    pub const SOURCE_PORT: &[&str] = &["Master_Port", "Source_Port"];
    pub const LAST_IO_ERROR: &[&str] = &["Last_IO_Error"];
    pub const LAST_SQL_ERROR: &[&str] = &["Last_SQL_Error"];
    pub const GTID_IO_POS: &[&str] = &["Gtid_IO_Pos"];
    pub const RETRIEVED_GTID_SET: &[&str] = &["Retrieved_Gtid_Set"];
    pub const EXECUTED_GTID_SET: &[&str] = &["Executed_Gtid_Set"];
    pub const CHANNEL: &[&str] = &["Connection_name", "Channel_Name"];
}

/// One replication channel (one row of the replica status).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaChannel {
    /// MariaDB `Connection_name` / MySQL `Channel_Name`; empty for the default channel.
    pub name: String,
    pub source_host: Option<String>,
    pub source_port: Option<u16>,
    /// IO thread state as reported: `Yes`, `No`, `Connecting`, ...
    pub io_running: String,
    /// SQL thread state as reported: `Yes` or `No`.
    pub sql_running: String,
    /// `Seconds_Behind_Master`; `None` when NULL (replication broken or stopped).
    pub seconds_behind: Option<f64>,
    pub last_io_error: Option<String>,
    pub last_sql_error: Option<String>,
    /// MariaDB `Gtid_IO_Pos`: the last GTIDs received from the source.
    pub gtid_io_pos: Option<String>,
    /// MySQL `Retrieved_Gtid_Set`: GTIDs received from the source.
    pub retrieved_gtid_set: Option<String>,
    /// MySQL `Executed_Gtid_Set`: GTIDs applied on this replica.
    pub executed_gtid_set: Option<String>,
}

impl ReplicaChannel {
    /// Decodes one replica status row. The IO/SQL thread columns must exist in one spelling.
    pub fn from_row(row: &TextRow) -> Result<Self, ProbeError> {
        for names in [col::IO_RUNNING, col::SQL_RUNNING] {
            if !row.has(names) {
                return Err(ProbeError::Unexpected(format!(
                    "replica status has no {} column",
                    names.join("/")
                )));
            }
        }
        let text = |names: &[&str]| row.get_nonempty(names).map(|v| v.trim().to_owned());
        Ok(ReplicaChannel {
            name: text(col::CHANNEL).unwrap_or_default(),
            source_host: text(col::SOURCE_HOST),
            source_port: row
                .get(col::SOURCE_PORT)
                .and_then(|p| p.trim().parse().ok()),
            io_running: text(col::IO_RUNNING).unwrap_or_default(),
            sql_running: text(col::SQL_RUNNING).unwrap_or_default(),
            seconds_behind: row.get(col::SECONDS_BEHIND).and_then(parse_seconds),
            last_io_error: text(col::LAST_IO_ERROR),
            last_sql_error: text(col::LAST_SQL_ERROR),
            gtid_io_pos: text(col::GTID_IO_POS),
            retrieved_gtid_set: text(col::RETRIEVED_GTID_SET),
            executed_gtid_set: text(col::EXECUTED_GTID_SET),
        })
    }

    /// Both the IO and the SQL thread run.
    pub fn replicating(&self) -> bool {
        self.io_running.eq_ignore_ascii_case("yes") && self.sql_running.eq_ignore_ascii_case("yes")
    }

    /// Lag in seconds while replicating; `None` when stopped, broken or NULL.
    pub fn lag_seconds(&self) -> Option<f64> {
        if self.replicating() {
            self.seconds_behind
        } else {
            None
        }
    }

    /// The last IO and SQL errors, if any, as one line.
    pub fn error(&self) -> Option<String> {
        let parts: Vec<String> = [("IO", &self.last_io_error), ("SQL", &self.last_sql_error)]
            .into_iter()
            .filter_map(|(what, e)| e.as_ref().map(|e| format!("{what} thread: {e}")))
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("; "))
        }
    }
}

/// Parses `Seconds_Behind_Master`; negative values (clock skew) read as 0.
fn parse_seconds(text: &str) -> Option<f64> {
    let v: f64 = text.trim().parse().ok()?;
    if v.is_finite() {
        Some(v.max(0.0))
    } else {
        None
    }
}

/// Role from the replica status and `@@read_only` (see the module docs).
pub fn decide_role(replication_configured: bool, read_only: bool) -> Role {
    match (replication_configured, read_only) {
        (true, _) => Role::Replica,
        (false, false) => Role::Primary,
        (false, true) => Role::Unknown,
    }
}

/// Everything one successful probe read.
#[derive(Debug, Clone, PartialEq)]
pub struct MysqlStatus {
    pub info: ServerInfo,
    pub vars: ServerVars,
    /// One entry per configured replication channel; empty when not a replica.
    pub channels: Vec<ReplicaChannel>,
}

impl MysqlStatus {
    pub fn role(&self) -> Role {
        decide_role(!self.channels.is_empty(), self.vars.read_only)
    }

    /// A replica whose every channel runs both threads.
    pub fn replicating(&self) -> bool {
        !self.channels.is_empty() && self.channels.iter().all(ReplicaChannel::replicating)
    }

    /// The largest channel lag; `None` if any channel's lag is unknown or there is no channel.
    pub fn lag_seconds(&self) -> Option<f64> {
        let mut worst: Option<f64> = None;
        for c in &self.channels {
            let lag = c.lag_seconds()?;
            worst = Some(worst.map_or(lag, |w| w.max(lag)));
        }
        worst
    }

    /// Replication errors of all channels, prefixed by the channel name when it has one.
    pub fn replication_error(&self) -> Option<String> {
        let parts: Vec<String> = self
            .channels
            .iter()
            .filter_map(|c| {
                let e = c.error()?;
                Some(if c.name.is_empty() {
                    e
                } else {
                    format!("channel {}: {e}", c.name)
                })
            })
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("; "))
        }
    }

    /// The GTID position the monitor compares across servers (MariaDB only, `None` on MySQL):
    /// a primary's `@@gtid_binlog_pos`, a replica's `@@gtid_slave_pos` (its `@@gtid_current_pos`
    /// when the slave position is empty). An empty string means "no GTIDs yet", not unknown.
    pub fn comparable_gtid(&self) -> Option<String> {
        if self.info.flavor != Flavor::MariaDb {
            return None;
        }
        let v = &self.vars;
        let pos = match self.role() {
            Role::Primary => v.gtid_binlog_pos.clone(),
            Role::Replica => v.gtid_slave_pos.clone().or_else(|| v.gtid_executed.clone()),
            Role::Unknown => return None,
        };
        Some(pos.unwrap_or_default())
    }

    /// The shared probe result: no byte positions on MySQL, lag and streaming only for replicas.
    pub fn to_result(&self) -> ProbeResult {
        let role = self.role();
        let replica = role == Role::Replica;
        ProbeResult {
            role,
            lsn: None,
            receive_lsn: None,
            insert_lsn: None,
            lag_seconds: if replica { self.lag_seconds() } else { None },
            streaming: replica && self.replicating(),
            gtid: self.comparable_gtid(),
        }
    }
}
