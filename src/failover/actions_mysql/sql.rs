//! SQL text of the MariaDB actions and the rows they read (literals, CHANGE MASTER, SLAVE STATUS).

use mysql_async::{Row, Value};

use crate::config::ServerConfig;
use crate::position::gtid::parse_gtid_list;
use crate::topology::probe_mysql::{ReplicaChannel, TextRow};

/// One result row as text (the text protocol sends every value as bytes).
pub(super) fn text_row(row: &Row) -> TextRow {
    let cols = row
        .columns_ref()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = row.as_ref(i).and_then(|v| match v {
                Value::NULL => None,
                Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                Value::Int(n) => Some(n.to_string()),
                Value::UInt(n) => Some(n.to_string()),
                other => Some(other.as_sql(true)),
            });
            (c.name_str().into_owned(), v)
        })
        .collect();
    TextRow::new(cols)
}

/// A string literal for a session whose `sql_mode` was cleared (backslash escapes on).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Checks a GTID list before it goes into SQL; `Err` explains why it is not one.
pub(super) fn checked_gtid(text: &str) -> Result<String, String> {
    let t = text.trim();
    parse_gtid_list(t)
        .map(|_| t.to_owned())
        .ok_or_else(|| format!("malformed GTID list {t:?}"))
}

/// The `CHANGE MASTER TO` statement pointing at `host`:`port` by GTID, with the login when given.
/// Returns the statement and a log/error label without the password.
pub fn change_master_sql(host: &str, port: u16, login: Option<(&str, &str)>) -> (String, String) {
    let head = format!(
        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={port}",
        quote(host)
    );
    let tail = ", MASTER_USE_GTID=slave_pos";
    match login {
        None => (format!("{head}{tail}"), format!("{head}{tail}")),
        Some((user, password)) => (
            format!(
                "{head}, MASTER_USER={}, MASTER_PASSWORD={}{tail}",
                quote(user),
                quote(password)
            ),
            format!(
                "{head}, MASTER_USER={}, MASTER_PASSWORD=<hidden>{tail}",
                quote(user)
            ),
        ),
    }
}

/// The default connection's row of `SHOW SLAVE STATUS`, with what the probe does not decode.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaveStatus {
    pub channel: ReplicaChannel,
    /// `Using_Gtid`: `No`, `Current_Pos` or `Slave_Pos`.
    pub using_gtid: String,
    /// `Last_SQL_Errno` (0 = no error).
    pub sql_errno: u32,
}

impl SlaveStatus {
    pub fn from_row(row: &TextRow) -> Result<SlaveStatus, String> {
        let channel = ReplicaChannel::from_row(row).map_err(|e| e.to_string())?;
        Ok(SlaveStatus {
            channel,
            using_gtid: row
                .get(&["Using_Gtid"])
                .unwrap_or_default()
                .trim()
                .to_owned(),
            sql_errno: row
                .get(&["Last_SQL_Errno"])
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        })
    }

    /// Replicates (or is set up to) from `server` by GTID `slave_pos`.
    pub fn points_at(&self, server: &ServerConfig) -> bool {
        self.channel
            .source_host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(&server.host))
            && self.channel.source_port == Some(server.port)
            && self.using_gtid.eq_ignore_ascii_case("slave_pos")
    }

    pub(super) fn sql_running(&self) -> bool {
        self.channel.sql_running.eq_ignore_ascii_case("yes")
    }

    pub(super) fn io_running(&self) -> bool {
        self.channel.io_running.eq_ignore_ascii_case("yes")
    }
}

/// The connections a fence kills, from `ID, USER, COMMAND` rows of PROCESSLIST: every client but
/// `own_id`, replication threads (`system user`, `Binlog Dump`) and daemons (event scheduler).
pub fn kill_targets(rows: &[TextRow], own_id: u64) -> Vec<(u64, String)> {
    rows.iter()
        .filter_map(|r| {
            let id: u64 = r.get(&["ID"])?.trim().parse().ok()?;
            let user = r.get(&["USER"]).unwrap_or_default();
            let command = r.get(&["COMMAND"]).unwrap_or_default();
            let skip = id == own_id
                || user == "system user"
                || matches!(command, "Binlog Dump" | "Daemon" | "Killed");
            (!skip).then(|| (id, user.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[(&str, Option<&str>)]) -> TextRow {
        TextRow::new(
            cols.iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect(),
        )
    }

    fn server(host: &str, port: u16) -> ServerConfig {
        ServerConfig {
            name: "s".into(),
            host: host.into(),
            port,
            role: crate::config::RoleHint::Auto,
            weight: 1,
            priority: 0,
            promote: true,
            pool_size: None,
            socket: None,
        }
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote("abc"), "'abc'");
        assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(quote("x\0\n"), "'x\\0\\n'");
    }

    #[test]
    fn change_master_hides_the_password_in_its_label() {
        let (sql, label) = change_master_sql("10.0.0.2", 3307, Some(("repl", "s'cret")));
        assert_eq!(
            sql,
            "CHANGE MASTER TO MASTER_HOST='10.0.0.2', MASTER_PORT=3307, MASTER_USER='repl', \
             MASTER_PASSWORD='s\\'cret', MASTER_USE_GTID=slave_pos"
        );
        assert!(!label.contains("cret"));
        assert!(label.contains("<hidden>"));
        let (sql, label) = change_master_sql("h", 1, None);
        assert_eq!(
            sql,
            "CHANGE MASTER TO MASTER_HOST='h', MASTER_PORT=1, MASTER_USE_GTID=slave_pos"
        );
        assert_eq!(sql, label);
    }

    #[test]
    fn gtid_lists_are_checked_before_use() {
        assert_eq!(checked_gtid(" 0-1-5,1-2-3 ").unwrap(), "0-1-5,1-2-3");
        assert_eq!(checked_gtid("").unwrap(), "");
        assert!(checked_gtid("0-1-5'; KILL 1").is_err());
    }

    #[test]
    fn slave_status_row_is_decoded() {
        let r = row(&[
            ("Slave_IO_Running", Some("Yes")),
            ("Slave_SQL_Running", Some("No")),
            ("Master_Host", Some("127.0.0.1")),
            ("Master_Port", Some("3307")),
            ("Using_Gtid", Some("Slave_Pos")),
            ("Gtid_IO_Pos", Some("0-1-42")),
            ("Last_SQL_Errno", Some("1062")),
            ("Last_SQL_Error", Some("Duplicate entry")),
        ]);
        let st = SlaveStatus::from_row(&r).unwrap();
        assert_eq!(st.channel.gtid_io_pos.as_deref(), Some("0-1-42"));
        assert_eq!(st.sql_errno, 1062);
        assert!(st.io_running() && !st.sql_running());
        assert!(st.points_at(&server("127.0.0.1", 3307)));
        assert!(!st.points_at(&server("127.0.0.1", 3308)));
        assert!(!st.points_at(&server("10.0.0.1", 3307)));
        let current_pos = row(&[
            ("Slave_IO_Running", Some("Yes")),
            ("Slave_SQL_Running", Some("Yes")),
            ("Master_Host", Some("127.0.0.1")),
            ("Master_Port", Some("3307")),
            ("Using_Gtid", Some("Current_Pos")),
            ("Gtid_IO_Pos", Some("")),
        ]);
        let st = SlaveStatus::from_row(&current_pos).unwrap();
        assert!(!st.points_at(&server("127.0.0.1", 3307)));
        assert_eq!(st.channel.gtid_io_pos, None);
        assert_eq!(st.sql_errno, 0);
        assert!(SlaveStatus::from_row(&row(&[("x", None)])).is_err());
    }

    #[test]
    fn fence_kills_clients_only() {
        let p = |id: &str, user: &str, cmd: &str| {
            row(&[
                ("ID", Some(id)),
                ("USER", Some(user)),
                ("COMMAND", Some(cmd)),
            ])
        };
        let rows = vec![
            p("1", "system user", "Slave_IO"),
            p("2", "repl", "Binlog Dump"),
            p("3", "app", "Sleep"),
            p("4", "root", "Query"),
            p("5", "event_scheduler", "Daemon"),
            p("6", "unauthenticated user", "Connect"),
            p("7", "app", "Killed"),
            p("x", "app", "Sleep"),
        ];
        assert_eq!(
            kill_targets(&rows, 4),
            vec![(3, "app".into()), (6, "unauthenticated user".into())]
        );
    }
}
