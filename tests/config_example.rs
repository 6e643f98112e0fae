//! Loads the shipped config.example.yaml and checks that bad files fail with their YAML path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard::config::{
    load_file, AuthMethod, Balance, ClientSecret, ConfigError, Fallback, Protocol, RoleHint,
};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml")
}

/// What `${NAME:-default}` yields in this process: the variable unless unset or empty.
fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => default.to_owned(),
    }
}

fn load_text(text: &str) -> Result<switchyard::config::Config, ConfigError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    load_file(file.path())
}

/// The example with one textual replacement applied (which must match).
fn example_with(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(example_path()).unwrap();
    assert!(text.contains(from), "example no longer contains {from:?}");
    text.replacen(from, to, 1)
}

fn assert_problem(err: &ConfigError, path: &str, needle: &str) {
    let shown = err.to_string();
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with(&format!("{path}: ")) && l.contains(needle)),
        "expected `{path}: ...{needle}...` in:\n{shown}"
    );
}

#[test]
fn example_config_loads_with_expected_values() {
    let c = load_file(&example_path()).unwrap_or_else(|e| panic!("example config:\n{e}"));
    assert_eq!(c.admin.listen, Some("127.0.0.1:9930".parse().unwrap()));
    assert_eq!(c.limits.max_message_size, 64 * 1024 * 1024);
    assert_eq!(c.limits.max_client_connections, 10_000);
    assert_eq!(c.limits.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.limits.client_login_timeout, Duration::from_secs(15));
    assert_eq!(c.limits.session_replay_timeout, Duration::from_secs(5));

    assert_eq!(c.clusters.len(), 2);
    let main = c.cluster("main").unwrap();
    assert_eq!(main.protocol, Protocol::Postgres);
    assert_eq!(main.listen, "127.0.0.1:6432".parse().unwrap());
    let servers: Vec<(&str, String, RoleHint, u32)> = main
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.address(), s.role, s.weight))
        .collect();
    assert_eq!(
        servers,
        vec![
            (
                "pg-primary",
                "127.0.0.1:5432".to_owned(),
                RoleHint::Primary,
                1
            ),
            (
                "pg-replica-1",
                "127.0.0.1:5433".to_owned(),
                RoleHint::Replica,
                1
            ),
            (
                "pg-replica-2",
                "127.0.0.1:5434".to_owned(),
                RoleHint::Replica,
                1
            ),
        ]
    );
    assert_eq!(main.routing.balance, Balance::RoundRobin);
    assert_eq!(main.routing.max_replica_lag, Some(Duration::from_secs(10)));
    assert_eq!(main.routing.max_replica_lag_bytes, None);
    assert_eq!(main.routing.fallback, Fallback::Primary);
    assert!(main.routing.write_functions.is_empty());
    assert_eq!(main.routing.classifier_cache_size, 10_000);
    assert_eq!(main.monitor.interval, Duration::from_secs(1));
    assert_eq!(main.monitor.timeout, Duration::from_secs(2));
    assert_eq!(main.monitor.healthy_after, 2);
    assert_eq!(main.monitor.unhealthy_after, 3);
    assert_eq!(
        main.monitor.user,
        env_or("SWITCHYARD_MONITOR_USER", "postgres")
    );
    assert_eq!(
        main.monitor.password,
        env_or("SWITCHYARD_MONITOR_PASSWORD", "")
    );
    assert_eq!(main.monitor.database, "postgres");

    assert_eq!(c.users.len(), 1);
    let app = c.user("app").unwrap();
    let password = env_or("APP_PASSWORD", "app");
    assert_eq!(app.secret, ClientSecret::Password(password.clone()));
    assert_eq!(app.auth, AuthMethod::ScramSha256);
    assert_eq!(app.backend_user, "app");
    assert_eq!(app.backend_password, Some(password));
    assert!(app.clusters.is_empty());
}

#[test]
fn unknown_key_names_its_path() {
    let err = load_text(&example_with(
        "      fallback: primary",
        "      fallback: primary\n      falback: error",
    ))
    .unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_problem(
        &err,
        "clusters[0].routing.falback",
        "unknown field `falback`",
    );
}

#[test]
fn bad_enum_value_names_its_path() {
    let err = load_text(&example_with("balance: round_robin", "balance: fastest")).unwrap_err();
    assert_problem(
        &err,
        "clusters[0].routing.balance",
        "unknown variant `fastest`",
    );
}

#[test]
fn bad_duration_names_its_path_and_value() {
    let err = load_text(&example_with("interval: 1s", "interval: 1 sec")).unwrap_err();
    assert_problem(&err, "clusters[0].monitor.interval", "\"1 sec\"");
    let err = load_text(&example_with("connect_timeout: 5s", "connect_timeout: 5")).unwrap_err();
    assert_problem(&err, "limits.connect_timeout", "no unit");
}

#[test]
fn duplicate_server_names_are_reported() {
    let err = load_text(&example_with("name: pg-replica-2", "name: pg-replica-1")).unwrap_err();
    assert_problem(
        &err,
        "clusters[0].servers[2].name",
        "duplicate server name \"pg-replica-1\"",
    );
}

#[test]
fn missing_env_var_names_its_path() {
    let var = "SWITCHYARD_TEST_SURELY_UNSET_VARIABLE";
    assert!(std::env::var_os(var).is_none());
    let err = load_text(&example_with(
        "password: ${APP_PASSWORD:-app}",
        &format!("password: ${{{var}}}"),
    ))
    .unwrap_err();
    assert_problem(
        &err,
        "users[0].password",
        &format!("environment variable {var} is not set"),
    );
}

#[test]
fn several_problems_are_reported_together() {
    let text = example_with("listen: 127.0.0.1:6432", "listen: 127.0.0.1:9930")
        .replacen("address: 127.0.0.1:5434", "address: 127.0.0.1", 1)
        .replacen("auth: scram-sha-256", "auth: md5\n    clusters: [nope]", 1)
        .replacen("    clusters: []\n", "", 1);
    let err = load_text(&text).unwrap_err();
    assert_problem(&err, "clusters[0].listen", "clashes with admin.listen");
    assert_problem(&err, "clusters[0].servers[2].address", "missing :port");
    assert_problem(&err, "users[0].clusters[0]", "unknown cluster \"nope\"");
    assert_eq!(err.problems.len(), 3, "{err}");
}

#[test]
fn unreadable_file_is_an_error() {
    let err = load_file(Path::new("/nonexistent/switchyard.yaml")).unwrap_err();
    assert_problem(&err, "/nonexistent/switchyard.yaml", "cannot read");
}

#[test]
fn example_has_a_mysql_cluster() {
    let c = switchyard::config::load_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config.example.yaml"
    )))
    .unwrap();
    let m = c.cluster("mysql").expect("mysql cluster");
    assert_eq!(m.protocol, switchyard::config::Protocol::Mysql);
    assert_eq!(m.servers.len(), 3);
    assert_eq!(m.listen.port(), 6033);
}
