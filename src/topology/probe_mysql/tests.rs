//! Unit tests of the MySQL/MariaDB prober's pure parts (no sockets, except a refused connect).

use mysql_async::Value;

use super::status::{col, value_text};
use super::*;
use crate::config::RoleHint;
use crate::topology::model::Role;

fn row(cols: &[(&str, Option<&str>)]) -> TextRow {
    TextRow::new(
        cols.iter()
            .map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned)))
            .collect(),
    )
}

/// A MariaDB `SHOW ALL SLAVES STATUS` row (old spelling).
fn mariadb_row(io: &str, sql: &str, seconds: Option<&str>) -> TextRow {
    row(&[
        ("Connection_name", Some("")),
        ("Slave_IO_State", Some("Waiting for master to send event")),
        ("Master_Host", Some("10.0.0.1")),
        ("Master_Port", Some("3306")),
        ("Slave_IO_Running", Some(io)),
        ("Slave_SQL_Running", Some(sql)),
        ("Seconds_Behind_Master", seconds),
        ("Last_IO_Error", Some("")),
        ("Last_SQL_Error", Some("")),
        ("Gtid_IO_Pos", Some("0-1-42")),
    ])
}

/// A MySQL 8.0.22+ `SHOW REPLICA STATUS` row (new spelling).
fn mysql_row(channel: &str, io: &str, sql: &str, seconds: Option<&str>) -> TextRow {
    row(&[
        ("Replica_IO_State", Some("Waiting for source to send event")),
        ("Source_Host", Some("db1")),
        ("Source_Port", Some("3307")),
        ("Replica_IO_Running", Some(io)),
        ("Replica_SQL_Running", Some(sql)),
        ("Seconds_Behind_Source", seconds),
        ("Last_IO_Error", Some("")),
        ("Last_SQL_Error", Some("")),
        (
            "Retrieved_Gtid_Set",
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
        ),
        (
            "Executed_Gtid_Set",
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-4"),
        ),
        ("Channel_Name", Some(channel)),
    ])
}

fn channel(io: &str, sql: &str, seconds: Option<f64>) -> ReplicaChannel {
    ReplicaChannel {
        io_running: io.into(),
        sql_running: sql.into(),
        seconds_behind: seconds,
        ..ReplicaChannel::default()
    }
}

fn status(read_only: bool, channels: Vec<ReplicaChannel>) -> MysqlStatus {
    MysqlStatus {
        info: ServerInfo::parse("10.11.6-MariaDB"),
        vars: ServerVars {
            read_only,
            server_id: Some(1),
            gtid_executed: Some("0-1-7".into()),
            gtid_binlog_pos: Some("0-1-7".into()),
            gtid_slave_pos: None,
        },
        channels,
    }
}

#[test]
fn version_and_flavor() {
    let m = ServerInfo::parse("10.11.19-MariaDB-0+deb12u1");
    assert_eq!(m.flavor, Flavor::MariaDb);
    assert_eq!(m.version_num, (10, 11, 19));
    let m = ServerInfo::parse("5.5.5-10.6.12-MariaDB-log");
    assert_eq!((m.flavor, m.version_num), (Flavor::MariaDb, (10, 6, 12)));
    let m = ServerInfo::parse("8.0.36-0ubuntu0.22.04.1");
    assert_eq!((m.flavor, m.version_num), (Flavor::Mysql, (8, 0, 36)));
    let m = ServerInfo::parse("5.7.44-log");
    assert_eq!((m.flavor, m.version_num), (Flavor::Mysql, (5, 7, 44)));
    let m = ServerInfo::parse("9.1");
    assert_eq!(m.version_num, (9, 1, 0));
    assert_eq!(ServerInfo::parse("garbage").version_num, (0, 0, 0));
}

#[test]
fn status_statement_per_version() {
    let first = |v: &str| ServerInfo::parse(v).status_statements().0;
    assert_eq!(first("10.11.6-MariaDB"), "SHOW ALL SLAVES STATUS");
    assert_eq!(first("8.0.22"), "SHOW REPLICA STATUS");
    assert_eq!(first("8.4.0"), "SHOW REPLICA STATUS");
    assert_eq!(first("8.0.21"), "SHOW SLAVE STATUS");
    assert_eq!(first("5.7.44-log"), "SHOW SLAVE STATUS");
    assert_eq!(
        ServerInfo::parse("8.0.21").status_statements().1,
        "SHOW REPLICA STATUS"
    );
}

#[test]
fn columns_are_found_in_both_spellings_any_case() {
    let old = row(&[("Slave_IO_Running", Some("Yes"))]);
    let new = row(&[("Replica_IO_Running", Some("No"))]);
    let lower = row(&[("slave_io_running", Some("Connecting"))]);
    assert_eq!(old.get(col::IO_RUNNING), Some("Yes"));
    assert_eq!(new.get(col::IO_RUNNING), Some("No"));
    assert_eq!(lower.get(col::IO_RUNNING), Some("Connecting"));
    assert!(new.has(col::IO_RUNNING));
    assert!(!new.has(col::SQL_RUNNING));
}

#[test]
fn null_and_absent_columns_read_as_none() {
    let r = row(&[
        ("Seconds_Behind_Master", None),
        ("Last_IO_Error", Some("  ")),
    ]);
    assert!(r.has(col::SECONDS_BEHIND));
    assert_eq!(r.get(col::SECONDS_BEHIND), None);
    assert_eq!(r.get(col::SOURCE_HOST), None);
    assert_eq!(r.get(col::LAST_IO_ERROR), Some("  "));
    assert_eq!(r.get_nonempty(col::LAST_IO_ERROR), None);
    assert_eq!(r.values(), vec![None, Some("  ")]);
}

#[test]
fn driver_values_as_text() {
    assert_eq!(value_text(&Value::NULL), None);
    assert_eq!(
        value_text(&Value::Bytes(b"0-1-5".to_vec())).as_deref(),
        Some("0-1-5")
    );
    assert_eq!(value_text(&Value::Int(-3)).as_deref(), Some("-3"));
    assert_eq!(value_text(&Value::UInt(7)).as_deref(), Some("7"));
    assert_eq!(
        value_text(&Value::Time(true, 1, 2, 3, 4, 5)).as_deref(),
        Some("-26:03:04.000005")
    );
}

#[test]
fn read_only_values() {
    for (t, want) in [
        ("0", Some(false)),
        ("OFF", Some(false)),
        ("off", Some(false)),
        ("1", Some(true)),
        ("ON", Some(true)),
        ("NO_LOCK", Some(true)),
        ("NO_LOCK_NO_ADMIN", Some(true)),
        ("", None),
        ("2", None),
    ] {
        assert_eq!(parse_read_only(t), want, "{t:?}");
    }
}

#[test]
fn vars_of_both_flavors() {
    let v = parse_vars(
        Flavor::MariaDb,
        &[Some("0"), Some("1"), Some("0-1-9"), Some("0-1-9"), Some("")],
    )
    .unwrap();
    assert!(!v.read_only);
    assert_eq!(v.server_id, Some(1));
    assert_eq!(v.gtid_executed.as_deref(), Some("0-1-9"));
    assert_eq!(v.gtid_binlog_pos.as_deref(), Some("0-1-9"));
    assert_eq!(v.gtid_slave_pos, None);
    let v = parse_vars(
        Flavor::MariaDb,
        &[Some("1"), Some("2"), Some("0-2-3"), None, Some("0-1-9")],
    )
    .unwrap();
    assert_eq!(v.gtid_slave_pos.as_deref(), Some("0-1-9"));
    assert_eq!(v.gtid_binlog_pos, None);

    let v = parse_vars(Flavor::Mysql, &[Some("1"), Some("2"), Some("")]).unwrap();
    assert!(v.read_only);
    assert_eq!(v.gtid_executed, None);
    assert_eq!(v.gtid_binlog_pos, None);

    // Wrong shape or a NULL read_only is an unexpected answer, not a guess.
    assert!(parse_vars(Flavor::Mysql, &[Some("0"), Some("1")]).is_err());
    assert!(parse_vars(Flavor::MariaDb, &[Some("0"), Some("1"), Some("")]).is_err());
    assert!(parse_vars(Flavor::MariaDb, &[Some("0"), Some("1"), None, None]).is_err());
    assert!(parse_vars(Flavor::Mysql, &[None, Some("1"), None]).is_err());
}

#[test]
fn mariadb_channel_is_decoded() {
    let c = ReplicaChannel::from_row(&mariadb_row("Yes", "Yes", Some("3"))).unwrap();
    assert_eq!(c.name, "");
    assert_eq!(c.source_host.as_deref(), Some("10.0.0.1"));
    assert_eq!(c.source_port, Some(3306));
    assert!(c.replicating());
    assert_eq!(c.lag_seconds(), Some(3.0));
    assert_eq!(c.gtid_io_pos.as_deref(), Some("0-1-42"));
    assert_eq!(c.error(), None);
}

#[test]
fn mysql_channel_is_decoded() {
    let c = ReplicaChannel::from_row(&mysql_row("ch1", "Yes", "Yes", Some("0"))).unwrap();
    assert_eq!(c.name, "ch1");
    assert_eq!(c.source_host.as_deref(), Some("db1"));
    assert_eq!(c.source_port, Some(3307));
    assert!(c.replicating());
    assert_eq!(c.lag_seconds(), Some(0.0));
    assert!(c.retrieved_gtid_set.as_deref().unwrap().ends_with(":1-5"));
    assert!(c.executed_gtid_set.as_deref().unwrap().ends_with(":1-4"));
}

#[test]
fn null_lag_is_unknown_never_zero() {
    let c = ReplicaChannel::from_row(&mariadb_row("Yes", "Yes", None)).unwrap();
    assert!(c.replicating());
    assert_eq!(c.seconds_behind, None);
    assert_eq!(c.lag_seconds(), None);
    let s = status(true, vec![c]);
    let r = s.to_result();
    assert_eq!(r.role, Role::Replica);
    assert_eq!(r.lag_seconds, None);
}

#[test]
fn stopped_threads_are_not_replicating() {
    // SQL thread stopped: the server may still show a number, but the lag is not trustworthy.
    let c = ReplicaChannel::from_row(&mariadb_row("Yes", "No", Some("0"))).unwrap();
    assert!(!c.replicating());
    assert_eq!(c.lag_seconds(), None);
    let c = ReplicaChannel::from_row(&mysql_row("", "Connecting", "Yes", None)).unwrap();
    assert!(!c.replicating());
    let r = status(true, vec![c]).to_result();
    assert_eq!(r.role, Role::Replica);
    assert!(!r.streaming);
    assert_eq!(r.lag_seconds, None);
}

#[test]
fn negative_or_garbage_lag() {
    let c = ReplicaChannel::from_row(&mariadb_row("Yes", "Yes", Some("-2"))).unwrap();
    assert_eq!(c.lag_seconds(), Some(0.0));
    let c = ReplicaChannel::from_row(&mariadb_row("Yes", "Yes", Some("x"))).unwrap();
    assert_eq!(c.lag_seconds(), None);
}

#[test]
fn row_without_thread_columns_is_rejected() {
    let r = row(&[
        ("Master_Host", Some("h")),
        ("Slave_IO_Running", Some("Yes")),
    ]);
    let err = ReplicaChannel::from_row(&r).unwrap_err();
    assert!(matches!(err, ProbeError::Unexpected(ref m) if m.contains("SQL_Running")));
}

#[test]
fn role_decision() {
    assert_eq!(decide_role(true, true), Role::Replica);
    assert_eq!(decide_role(true, false), Role::Replica);
    assert_eq!(decide_role(false, false), Role::Primary);
    assert_eq!(decide_role(false, true), Role::Unknown);
}

#[test]
fn primary_result_has_no_positions_or_lag() {
    let r = status(false, vec![]).to_result();
    assert_eq!(
        r,
        ProbeResult {
            role: Role::Primary,
            lsn: None,
            receive_lsn: None,
            insert_lsn: None,
            lag_seconds: None,
            streaming: false,
            gtid: Some("0-1-7".into()),
        }
    );
    let r = status(true, vec![]).to_result();
    assert_eq!(r.role, Role::Unknown);
    assert!(!r.streaming);
}

#[test]
fn replica_result_takes_the_worst_channel() {
    let s = status(
        true,
        vec![
            channel("Yes", "Yes", Some(2.0)),
            channel("Yes", "Yes", Some(7.0)),
        ],
    );
    let r = s.to_result();
    assert_eq!(r.role, Role::Replica);
    assert!(r.streaming);
    assert_eq!(r.lag_seconds, Some(7.0));
    assert_eq!(r.lsn, None);
    assert_eq!(r.receive_lsn, None);

    let s = status(
        true,
        vec![channel("Yes", "Yes", Some(2.0)), channel("No", "Yes", None)],
    );
    let r = s.to_result();
    assert!(!r.streaming);
    assert_eq!(r.lag_seconds, None);
}

#[test]
fn replication_errors_are_collected() {
    let mut a = channel("No", "Yes", None);
    a.last_io_error = Some("error connecting to master 'repl@h:1'".into());
    let mut b = channel("Yes", "No", None);
    b.name = "east".into();
    b.last_sql_error = Some("Duplicate entry '1'".into());
    let s = status(true, vec![a, b]);
    assert_eq!(
        s.replication_error().as_deref(),
        Some(
            "IO thread: error connecting to master 'repl@h:1'; \
             channel east: SQL thread: Duplicate entry '1'"
        )
    );
    assert_eq!(
        status(true, vec![channel("Yes", "Yes", Some(0.0))]).replication_error(),
        None
    );
}

fn server(port: u16) -> ServerConfig {
    ServerConfig {
        name: "s".into(),
        host: "127.0.0.1".into(),
        port,
        role: RoleHint::Auto,
        weight: 1,
        priority: 0,
        promote: true,
        pool_size: None,
        socket: None,
    }
}

fn mon(database: &str) -> MonitorConfig {
    MonitorConfig {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        healthy_after: 1,
        unhealthy_after: 1,
        user: "mon".into(),
        password: "pw".into(),
        database: database.into(),
    }
}

#[test]
fn connect_options() {
    let o = mysql_async::Opts::from(connect_opts(&server(3306), &mon("postgres")));
    assert_eq!(o.ip_or_hostname(), "127.0.0.1");
    assert_eq!(o.tcp_port(), 3306);
    assert_eq!(o.user(), Some("mon"));
    assert_eq!(o.pass(), Some("pw"));
    assert_eq!(o.db_name(), None);
    assert!(!o.prefer_socket());
    let o = mysql_async::Opts::from(connect_opts(&server(3306), &mon("")));
    assert_eq!(o.db_name(), None);
    let o = mysql_async::Opts::from(connect_opts(&server(3306), &mon("app")));
    assert_eq!(o.db_name(), Some("app"));
    let mut m = mon("app");
    m.password.clear();
    let o = mysql_async::Opts::from(connect_opts(&server(3306), &m));
    assert_eq!(o.pass(), None);
    assert_eq!(o.socket(), None);
    // A server's socket is where the monitor goes too.
    let mut s = server(3306);
    s.socket = Some(std::path::Path::new("/run/mysqld/mysqld.sock").into());
    let o = mysql_async::Opts::from(connect_opts(&s, &m));
    assert_eq!(o.socket(), Some("/run/mysqld/mysqld.sock"));
    assert!(!o.prefer_socket());
}

#[tokio::test]
async fn unreachable_server_fails_within_the_deadline() {
    let started = std::time::Instant::now();
    let mut p = MysqlProber::with_tls(server(1), mon(""), Default::default());
    let err = p.probe().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(err, ProbeError::Connect(_) | ProbeError::Timeout(_)),
        "{err:?}"
    );
    assert!(!p.is_connected());
    assert!(p.last_status().is_none());
}

#[test]
fn driver_errors_are_described_without_repetition() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
    let e = mysql_async::Error::from(io);
    assert_eq!(describe(&e), "Connection refused");
    assert!(
        matches!(query_error(&e), ProbeError::Connect(m) if m == "connection lost: Connection refused")
    );
    let e = mysql_async::Error::Server(mysql_async::ServerError {
        code: 1227,
        message: "Access denied; you need (at least one of) the SLAVE MONITOR privilege(s)".into(),
        state: "42000".into(),
    });
    assert!(describe(&e).starts_with("ERROR 1227 (42000): Access denied"));
    assert!(matches!(query_error(&e), ProbeError::Query(_)));
}

#[test]
fn comparable_gtid_per_role_and_flavor() {
    // Primary: the binlog position.
    let mut s = status(false, vec![]);
    s.vars.gtid_binlog_pos = Some("0-1-9".into());
    assert_eq!(s.to_result().gtid.as_deref(), Some("0-1-9"));
    // A primary that wrote nothing yet: empty, not unknown.
    s.vars.gtid_binlog_pos = None;
    assert_eq!(s.to_result().gtid.as_deref(), Some(""));
    // Replica: the slave position, else the current position.
    let mut r = status(true, vec![channel("Yes", "Yes", Some(0.0))]);
    r.vars.gtid_slave_pos = Some("0-1-5".into());
    assert_eq!(r.to_result().gtid.as_deref(), Some("0-1-5"));
    r.vars.gtid_slave_pos = None;
    assert_eq!(r.to_result().gtid.as_deref(), Some("0-1-7"));
    // Role unknown and MySQL: nothing to compare.
    assert_eq!(status(true, vec![]).to_result().gtid, None);
    let mut m = status(false, vec![]);
    m.info = ServerInfo::parse("8.0.36");
    assert_eq!(m.to_result().gtid, None);
}
