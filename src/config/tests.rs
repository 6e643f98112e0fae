//! Unit tests for config parsing helpers, env substitution and validation.

use std::env::VarError;
use std::time::Duration;

use super::*;

const VERIFIER: &str = "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn no_env(_: &str) -> Result<String, VarError> {
    Err(VarError::NotPresent)
}

fn test_env(name: &str) -> Result<String, VarError> {
    match name {
        "PW" => Ok("s3cret".to_owned()),
        "EMPTY" => Ok(String::new()),
        "HOST" => Ok("db.internal".to_owned()),
        _ => Err(VarError::NotPresent),
    }
}

fn minimal(extra_cluster: &str, extra_user: &str) -> String {
    format!(
        "clusters:
  - name: main
    listen: 127.0.0.1:6432
    servers:
      - address: 127.0.0.1:5432
    monitor:
      user: postgres
{extra_cluster}
users:
  - name: app
    password: pw
{extra_user}
"
    )
}

fn errors(text: &str) -> Vec<Problem> {
    match load_str_with_env(text, &test_env) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.problems,
    }
}

fn has(problems: &[Problem], path: &str, needle: &str) -> bool {
    problems
        .iter()
        .any(|p| p.path == path && p.message.contains(needle))
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration(" 1m30s "), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("1 s"), Ok(Duration::from_secs(1)));
    assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
}

#[test]
fn bad_durations() {
    for bad in [
        "",
        "5",
        "s",
        "5x",
        "-5s",
        "5 seconds",
        "1.2.3s",
        "5s garbage",
        ".",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
    }
    assert!(parse_duration("5").unwrap_err().contains("no unit"));
    assert!(parse_duration("5x")
        .unwrap_err()
        .contains("unknown duration unit"));
    assert!(parse_duration("99999999999999999999999h").is_err());
}

#[test]
fn sizes() {
    assert_eq!(parse_size("1024"), Ok(1024));
    assert_eq!(parse_size("10B"), Ok(10));
    assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
    assert_eq!(parse_size("64MiB"), Ok(64 << 20));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("2TiB"), Ok(2 << 40));
    assert_eq!(parse_size("1KB"), Ok(1_000));
    assert_eq!(parse_size("5MB"), Ok(5_000_000));
    assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    assert_eq!(parse_size("16 mib"), Ok(16 << 20));
    assert_eq!(parse_size("1.5KiB"), Ok(1536));
}

#[test]
fn bad_sizes() {
    for bad in ["", "MiB", "12XB", "-1MiB", "1.5", "1e6", "99999999999TiB"] {
        assert!(parse_size(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn env_substitution() {
    let sub = |s: &str| substitute_env(s, &test_env);
    assert_eq!(sub("plain"), Ok("plain".to_owned()));
    assert_eq!(sub("${PW}"), Ok("s3cret".to_owned()));
    assert_eq!(sub("pre-${PW}-post"), Ok("pre-s3cret-post".to_owned()));
    assert_eq!(sub("${MISSING:-dflt}"), Ok("dflt".to_owned()));
    assert_eq!(sub("${MISSING:-}"), Ok(String::new()));
    assert_eq!(sub("${EMPTY:-dflt}"), Ok("dflt".to_owned()));
    assert_eq!(sub("${EMPTY}"), Ok(String::new()));
    assert_eq!(sub("${PW:-dflt}"), Ok("s3cret".to_owned()));
    assert_eq!(sub("${HOST}:5432"), Ok("db.internal:5432".to_owned()));
    assert_eq!(sub("a$$b"), Ok("a$b".to_owned()));
    assert_eq!(sub("$${PW}"), Ok("${PW}".to_owned()));
    assert_eq!(sub("cost $5"), Ok("cost $5".to_owned()));
    assert_eq!(sub("trailing$"), Ok("trailing$".to_owned()));
    assert_eq!(sub(VERIFIER), Ok(VERIFIER.to_owned()));
    // The substituted value is not substituted again.
    let env = |_: &str| Ok("${PW}".to_owned());
    assert_eq!(substitute_env("${X}", &env), Ok("${PW}".to_owned()));
}

#[test]
fn env_substitution_errors() {
    let sub = |s: &str| substitute_env(s, &test_env);
    assert_eq!(
        sub("${APP_PASSWORD}"),
        Err("environment variable APP_PASSWORD is not set".to_owned())
    );
    assert!(sub("${PW").unwrap_err().contains("unterminated"));
    assert!(sub("${}").unwrap_err().contains("invalid substitution"));
    assert!(sub("${1X}").unwrap_err().contains("invalid substitution"));
    assert!(sub("${A-b}").unwrap_err().contains("invalid substitution"));
    let not_unicode = |_: &str| Err(VarError::NotUnicode(std::ffi::OsString::from("x")));
    assert!(substitute_env("${X}", &not_unicode)
        .unwrap_err()
        .contains("not valid UTF-8"));
}

#[test]
fn env_errors_name_the_path() {
    let text = minimal("", "").replace("password: pw", "password: ${APP_PASSWORD}");
    let problems = errors(&text);
    assert_eq!(
        problems,
        vec![Problem {
            path: "users[0].password".to_owned(),
            message: "environment variable APP_PASSWORD is not set".to_owned(),
        }]
    );
    let text = minimal("", "").replace("address: 127.0.0.1:5432", "address: ${NOPE}:5432");
    assert!(has(
        &errors(&text),
        "clusters[0].servers[0].address",
        "NOPE"
    ));
}

#[test]
fn env_values_are_used() {
    let text = minimal("", "")
        .replace("password: pw", "password: ${PW}")
        .replace("address: 127.0.0.1:5432", "address: ${HOST}:5432");
    let config = load_str_with_env(&text, &test_env).unwrap();
    assert_eq!(
        config.users[0].secret,
        ClientSecret::Password("s3cret".to_owned())
    );
    assert_eq!(config.clusters[0].servers[0].host, "db.internal");
}

#[test]
fn verifier_shapes() {
    assert_eq!(check_scram_verifier(VERIFIER), Ok(()));
    let bad = [
        "md5abcdef",
        "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==",
        "SCRAM-SHA-256$0:AAECAwQFBgcICQoLDA0ODw==$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
        "SCRAM-SHA-256$x:AAECAwQFBgcICQoLDA0ODw==$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
        "SCRAM-SHA-256$4096:not*base64$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
        "SCRAM-SHA-256$4096:$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
        // 31-byte StoredKey
        "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
        "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ];
    for v in bad {
        assert!(check_scram_verifier(v).is_err(), "{v:?} should fail");
    }
    assert!(check_scram_verifier(bad[2])
        .unwrap_err()
        .contains("greater than zero"));
}

#[test]
fn host_ports() {
    assert_eq!(
        parse_host_port("127.0.0.1:5432"),
        Ok(("127.0.0.1".to_owned(), 5432))
    );
    assert_eq!(
        parse_host_port("db-1.example.com:5433"),
        Ok(("db-1.example.com".to_owned(), 5433))
    );
    assert_eq!(
        parse_host_port("localhost:1"),
        Ok(("localhost".to_owned(), 1))
    );
    assert_eq!(parse_host_port("[::1]:5432"), Ok(("::1".to_owned(), 5432)));
    for bad in [
        "127.0.0.1",
        "::1:5432",
        "[::1]",
        "[zz]:5432",
        "host:0",
        "host:70000",
        "bad host:1",
        ":5432",
        "-x:1",
        "[::1:5432",
    ] {
        assert!(parse_host_port(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn function_names() {
    assert_eq!(
        normalize_function_name("Audit.Log_Event"),
        Some("log_event".to_owned())
    );
    assert_eq!(normalize_function_name(" bump "), Some("bump".to_owned()));
    assert_eq!(normalize_function_name("1abc"), None);
    assert_eq!(normalize_function_name("a b"), None);
    assert_eq!(normalize_function_name("schema."), None);
}

#[test]
fn defaults_fill_a_minimal_config() {
    let c = load_str_with_env(&minimal("", ""), &no_env).unwrap();
    assert_eq!(c.admin.listen, Some("127.0.0.1:9930".parse().unwrap()));
    assert_eq!(c.limits.max_message_size, 64 << 20);
    assert_eq!(c.limits.max_client_connections, 10_000);
    assert_eq!(c.limits.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.limits.client_login_timeout, Duration::from_secs(15));
    assert_eq!(c.limits.session_replay_timeout, Duration::from_secs(5));
    let cl = &c.clusters[0];
    assert_eq!(cl.protocol, Protocol::Postgres);
    assert_eq!(cl.servers[0].name, "main-0");
    assert_eq!(cl.servers[0].role, RoleHint::Auto);
    assert_eq!(cl.servers[0].weight, 1);
    assert_eq!(cl.routing.balance, Balance::RoundRobin);
    assert_eq!(cl.routing.max_replica_lag, Some(Duration::from_secs(10)));
    assert_eq!(cl.routing.max_replica_lag_bytes, None);
    assert_eq!(cl.routing.fallback, Fallback::Primary);
    assert!(cl.routing.write_functions.is_empty());
    assert_eq!(cl.routing.classifier_cache_size, 10_000);
    assert_eq!(cl.monitor.interval, Duration::from_secs(1));
    assert_eq!(cl.monitor.timeout, Duration::from_secs(2));
    assert_eq!(
        (cl.monitor.healthy_after, cl.monitor.unhealthy_after),
        (2, 3)
    );
    assert_eq!(cl.monitor.password, "");
    assert_eq!(cl.monitor.database, "postgres");
    let u = &c.users[0];
    assert_eq!(u.auth, AuthMethod::ScramSha256);
    assert_eq!(u.backend_user, "app");
    assert_eq!(u.backend_password.as_deref(), Some("pw"));
    assert!(u.clusters.is_empty());
}

#[test]
fn off_and_null_spellings() {
    let text = format!(
        "admin:\n  listen: off\n{}",
        minimal(
            "    routing:\n      max_replica_lag: null\n      max_replica_lag_bytes: 16MiB\n      write_functions: [Public.Bump, bump]",
            "    scram_verifier: x"
        )
        .replace("    password: pw\n", "")
        .replace("scram_verifier: x", &format!("scram_verifier: \"{VERIFIER}\""))
    );
    let c = load_str_with_env(&text, &no_env).unwrap();
    assert_eq!(c.admin.listen, None);
    assert_eq!(c.clusters[0].routing.max_replica_lag, None);
    assert_eq!(c.clusters[0].routing.max_replica_lag_bytes, Some(16 << 20));
    assert_eq!(
        c.clusters[0].routing.write_functions,
        vec!["bump".to_owned()]
    );
    assert_eq!(
        c.users[0].secret,
        ClientSecret::ScramVerifier(VERIFIER.to_owned())
    );
    assert_eq!(c.users[0].backend_password, None);

    let c = load_str_with_env(
        &format!("admin:\n  listen: null\n{}", minimal("", "")),
        &no_env,
    )
    .unwrap();
    assert_eq!(c.admin.listen, None);
    let c = load_str_with_env(
        &minimal(
            "    routing:\n      max_replica_lag: \"off\"\n      max_replica_lag_bytes: 1048576",
            "",
        ),
        &no_env,
    )
    .unwrap();
    assert_eq!(c.clusters[0].routing.max_replica_lag, None);
    assert_eq!(c.clusters[0].routing.max_replica_lag_bytes, Some(1 << 20));
}

#[test]
fn mysql_protocol_is_accepted() {
    let c = load_str_with_env(&minimal("    protocol: mysql", ""), &no_env).unwrap();
    assert_eq!(c.clusters[0].protocol, Protocol::Mysql);
}

#[test]
fn serde_errors_carry_the_path() {
    let p = errors(&minimal("    routing:\n      balance: fastest", ""));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "clusters[0].routing.balance");
    assert!(p[0].message.contains("unknown variant"), "{}", p[0].message);

    let p = errors(&minimal("    colour: blue", ""));
    assert!(p[0].path.starts_with("clusters[0]"), "{p:?}");
    assert!(p[0].message.contains("unknown field `colour`"), "{p:?}");

    let p = errors(&minimal("", "    auth: plain"));
    assert_eq!(p[0].path, "users[0].auth");

    let p = errors("clusters: [");
    assert_eq!(p[0].path, "<yaml>");
}

#[test]
fn every_semantic_problem_is_collected() {
    let text = format!(
        "admin:
  listen: 127.0.0.1:6432
limits:
  max_message_size: 12XB
  connect_timeout: 5
  client_login_timeout: 0s
  max_client_connections: 0
clusters:
  - name: bad name!
    listen: 127.0.0.1:6432
    servers:
      - name: a
        address: db:5432
      - name: a
        address: nohost
    routing:
      max_replica_lag: soon
      write_functions: [\"1x\"]
    monitor:
      interval: 10ms
      timeout: 0ms
      healthy_after: 0
      user: ''
  - name: other
    listen: 0.0.0.0:6432
    servers: []
users:
  - name: app
    password: p
    scram_verifier: \"{VERIFIER}\"
  - name: app
    scram_verifier: \"{VERIFIER}\"
    auth: md5
    clusters: [nope]
  - name: third
"
    );
    let p = errors(&text);
    let expect = [
        ("limits.max_message_size", "unknown size unit"),
        ("limits.connect_timeout", "no unit"),
        ("limits.client_login_timeout", "greater than zero"),
        ("limits.max_client_connections", "at least 1"),
        ("clusters[0].name", "invalid cluster name"),
        ("clusters[0].listen", "clashes with admin.listen"),
        ("clusters[0].servers[1].name", "duplicate server name"),
        ("clusters[0].servers[1].address", "missing :port"),
        ("clusters[0].routing.max_replica_lag", "invalid duration"),
        (
            "clusters[0].routing.write_functions[0]",
            "not a function name",
        ),
        ("clusters[0].monitor.interval", "too small"),
        ("clusters[0].monitor.timeout", "greater than zero"),
        ("clusters[0].monitor.healthy_after", "at least 1"),
        ("clusters[0].monitor.user", "required"),
        ("clusters[1].listen", "clashes with admin.listen"),
        ("clusters[1].servers", "at least one server"),
        ("clusters[1].monitor", "required"),
        ("users[0]", "not both"),
        ("users[1].auth", "md5"),
        ("users[1].clusters[0]", "unknown cluster \"nope\""),
        ("users[1].name", "duplicate user name"),
        ("users[2]", "is required"),
    ];
    for (path, needle) in expect {
        assert!(
            has(&p, path, needle),
            "missing {path}: {needle} in\n{}",
            ConfigError {
                problems: p.clone()
            }
        );
    }
    assert_eq!(
        p.len(),
        expect.len(),
        "{}",
        ConfigError {
            problems: p.clone()
        }
    );
}

#[test]
fn empty_document_reports_required_sections() {
    let p = errors("");
    assert!(has(&p, "clusters", "at least one cluster"));
    assert!(has(&p, "users", "at least one user"));
}

#[test]
fn clusters_clash_with_each_other_and_duplicates_are_found() {
    let text = minimal(
        "  - name: main
    listen: 127.0.0.1:6432
    servers:
      - address: 127.0.0.1:5432
      - address: 127.0.0.1:5432
    monitor:
      user: postgres",
        "",
    );
    let p = errors(&text);
    assert!(
        has(&p, "clusters[1].name", "duplicate cluster name"),
        "{p:?}"
    );
    assert!(
        has(&p, "clusters[1].listen", "clashes with clusters[0].listen"),
        "{p:?}"
    );
    assert!(
        has(
            &p,
            "clusters[1].servers[1].address",
            "duplicate server address"
        ),
        "{p:?}"
    );
}

#[test]
fn error_display_is_one_problem_per_line() {
    let e = ConfigError {
        problems: vec![
            Problem {
                path: "a.b".to_owned(),
                message: "bad".to_owned(),
            },
            Problem {
                path: "c[0]".to_owned(),
                message: "worse".to_owned(),
            },
        ],
    };
    assert_eq!(e.to_string(), "a.b: bad\nc[0]: worse");
}

#[test]
fn merge_keys_and_anchors_work() {
    let text = "x-monitor: &mon
  user: postgres
clusters:
  - name: main
    listen: 127.0.0.1:6432
    servers:
      - address: 127.0.0.1:5432
    monitor:
      <<: *mon
      interval: 2s
users:
  - name: app
    password: pw
";
    // Top-level `x-` keys may hold anchors and are otherwise ignored.
    let c = load_str_with_env(text, &no_env).unwrap();
    assert_eq!(c.clusters[0].monitor.user, "postgres");
    assert_eq!(c.clusters[0].monitor.interval, Duration::from_secs(2));
    assert!(has(
        &errors(&text.replace("x-monitor", "y-monitor")),
        "y-monitor",
        "unknown field"
    ));
    let text = minimal("", "").replace(
        "    monitor:\n      user: postgres",
        "    monitor: &mon\n      user: postgres",
    );
    let text = text.replace("users:", "  - name: second\n    listen: 127.0.0.1:6433\n    servers:\n      - address: 127.0.0.1:5433\n    monitor:\n      <<: *mon\n      interval: 2s\nusers:");
    let c = load_str_with_env(&text, &no_env).unwrap();
    assert_eq!(c.clusters[1].monitor.user, "postgres");
    assert_eq!(c.clusters[1].monitor.interval, Duration::from_secs(2));
}

#[test]
fn lag_hysteresis_keys() {
    let c = load_str_with_env(&minimal("", ""), &no_env).unwrap();
    let r = &c.clusters[0].routing;
    assert_eq!(r.lag_readmit_after, Duration::from_secs(5));
    assert_eq!(r.lag_alert, Some(Duration::from_secs(30)));

    let c = load_str_with_env(
        &minimal(
            "    routing: { max_replica_lag: 1s, lag_readmit_after: 2500ms, lag_alert: 1m }",
            "",
        ),
        &no_env,
    )
    .unwrap();
    let r = &c.clusters[0].routing;
    assert_eq!(r.max_replica_lag, Some(Duration::from_secs(1)));
    assert_eq!(r.lag_readmit_after, Duration::from_millis(2500));
    assert_eq!(r.lag_alert, Some(Duration::from_secs(60)));

    for off in ["\"off\"", "null"] {
        let c = load_str_with_env(
            &minimal(
                &format!("    routing: {{ lag_readmit_after: 0s, lag_alert: {off} }}"),
                "",
            ),
            &no_env,
        )
        .unwrap();
        assert_eq!(c.clusters[0].routing.lag_readmit_after, Duration::ZERO);
        assert_eq!(c.clusters[0].routing.lag_alert, None);
    }
}

#[test]
fn bad_lag_hysteresis_keys() {
    for (value, needle) in [
        ("\"-1s\"", "invalid duration"),
        ("5", "no unit"),
        ("\"off\"", "cannot be off"),
        ("null", "cannot be off"),
    ] {
        let p = errors(&minimal(
            &format!("    routing: {{ lag_readmit_after: {value} }}"),
            "",
        ));
        assert!(
            has(&p, "clusters[0].routing.lag_readmit_after", needle),
            "{value}: {p:?}"
        );
    }
    let p = errors(&minimal("    routing: { lag_alert: soon }", ""));
    assert!(
        has(&p, "clusters[0].routing.lag_alert", "invalid duration"),
        "{p:?}"
    );
}

#[test]
fn failover_and_pool_defaults() {
    let c = load_str_with_env(&minimal("", ""), &test_env).unwrap();
    let cl = &c.clusters[0];
    assert_eq!(cl.failover.mode, FailoverMode::Follow);
    assert_eq!(cl.failover.write_hold, Duration::from_secs(10));
    assert_eq!(
        cl.failover.user, "postgres",
        "the monitor's login by default"
    );
    assert_eq!(cl.failover.replication, None);
    assert_eq!(cl.pool, PoolConfig::default());
    assert_eq!(cl.servers[0].priority, 0);
    assert!(cl.servers[0].promote);
}

#[test]
fn failover_and_pool_sections() {
    let text = minimal(
        "    failover: { mode: auto, write_hold: 0s, promote_timeout: 5s, user: admin, password: x,
                replication_user: repl, replication_password: r }
    pool: { mode: transaction, size: 7, checkout_timeout: 250ms, idle_timeout: off, max_lifetime: 30m,
            max_prepared_statements: 50 }",
        "",
    );
    let c = load_str_with_env(&text, &test_env).unwrap();
    let cl = &c.clusters[0];
    assert_eq!(cl.failover.mode, FailoverMode::Auto);
    assert_eq!(cl.failover.write_hold, Duration::ZERO);
    assert_eq!(cl.failover.promote_timeout, Duration::from_secs(5));
    assert_eq!(cl.failover.user, "admin");
    assert_eq!(cl.failover.replication, Some(("repl".into(), "r".into())));
    assert_eq!(cl.pool.mode, PoolMode::Transaction);
    assert_eq!(cl.pool.size, 7);
    assert_eq!(cl.pool.checkout_timeout, Duration::from_millis(250));
    assert_eq!(cl.pool.idle_timeout, None);
    assert_eq!(cl.pool.max_lifetime, Some(Duration::from_secs(1800)));
    assert_eq!(cl.pool.max_prepared_statements, 50);
}

#[test]
fn bad_failover_and_pool_sections() {
    let p = errors(&minimal(
        "    failover: { mode: sometimes, replication_user: repl }
    pool: { size: 0, checkout_timeout: 0s }",
        "",
    ));
    assert!(
        p.iter().any(|p| p.path.starts_with("clusters[0].failover")),
        "{p:?}"
    );
    let p = errors(&minimal(
        "    failover: { replication_user: repl }\n    pool: { size: 0, checkout_timeout: 0s }",
        "",
    ));
    assert!(
        has(&p, "clusters[0].failover", "replication_password"),
        "{p:?}"
    );
    assert!(has(&p, "clusters[0].pool.size", "at least 1"), "{p:?}");
    assert!(
        has(&p, "clusters[0].pool.checkout_timeout", "greater than zero"),
        "{p:?}"
    );
}

#[test]
fn a_server_may_have_its_own_pool_size() {
    let text = "clusters:
  - name: main
    listen: 127.0.0.1:6432
    servers:
      - { name: p, address: 127.0.0.1:5432, role: primary }
      - { name: r, address: 127.0.0.1:5433, pool_size: 3 }
    monitor: { user: postgres }
    pool: { mode: transaction, size: 8, min_idle: 2 }
users:
  - { name: app, password: pw }
";
    let c = load_str_with_env(text, &test_env).unwrap();
    let cl = &c.clusters[0];
    assert_eq!(cl.servers[0].pool_size, None);
    assert_eq!(cl.pool_for(0).size, 8);
    assert_eq!(cl.pool_for(1).size, 3);
    assert_eq!(cl.pool_for(1).min_idle, 2, "the rest of `pool` applies");
    let p = errors(&text.replace("pool_size: 3", "pool_size: 0"));
    assert!(
        has(&p, "clusters[0].servers[1].pool_size", "at least 1"),
        "{p:?}"
    );
    let p = errors(&text.replace("pool_size: 3", "pool_size: 1"));
    assert!(
        has(
            &p,
            "clusters[0].servers[1].pool_size",
            "less than pool.min_idle (2)"
        ),
        "{p:?}"
    );
}

#[test]
fn server_sockets_are_checked_like_listen_sockets() {
    let one = |path: &str| {
        format!(
            "  - name: other
    listen: 127.0.0.1:7005
    servers:
      - {{ address: 127.0.0.1:5432, socket: {path:?} }}
      - {{ address: 127.0.0.1:5433 }}
    monitor:
      user: postgres"
        )
    };
    let c = load_str_with_env(&minimal(&one("/run/pg/.s.PGSQL.5432"), ""), &test_env).unwrap();
    let servers = &c.clusters[1].servers;
    assert_eq!(
        servers[0].socket.as_deref(),
        Some(std::path::Path::new("/run/pg/.s.PGSQL.5432"))
    );
    assert_eq!(servers[1].socket, None);
    let p = errors(&minimal(&one("pg/.s.PGSQL.5432"), ""));
    assert!(
        has(&p, "clusters[1].servers[0].socket", "absolute path"),
        "{p:?}"
    );
    let long = format!("/{}", "d".repeat(107));
    let p = errors(&minimal(&one(&long), ""));
    assert!(
        has(&p, "clusters[1].servers[0].socket", "107 bytes"),
        "{p:?}"
    );
}

#[test]
fn listen_sockets_are_absolute_short_and_unique() {
    let one = |path: &str, name: &str| {
        format!(
            "  - name: {name}
    listen: 127.0.0.1:{port}
    listen_socket: {path:?}
    servers:
      - address: 127.0.0.1:5432
    monitor:
      user: postgres",
            port = 7000 + name.len()
        )
    };
    let text = minimal(&one("/run/sy/.s.PGSQL.6432", "other"), "");
    let c = load_str_with_env(&text, &test_env).unwrap();
    assert_eq!(c.clusters[0].listen_socket, None);
    assert_eq!(
        c.clusters[1].listen_socket.as_deref(),
        Some(std::path::Path::new("/run/sy/.s.PGSQL.6432"))
    );
    let p = errors(&minimal(&one("sock/.s.PGSQL.6432", "other"), ""));
    assert!(
        has(&p, "clusters[1].listen_socket", "absolute path"),
        "{p:?}"
    );
    let long = format!("/{}", "d".repeat(107));
    let p = errors(&minimal(&one(&long, "other"), ""));
    assert!(has(&p, "clusters[1].listen_socket", "107 bytes"), "{p:?}");
    let p = errors(&minimal(&one("/", "other"), ""));
    assert!(
        has(&p, "clusters[1].listen_socket", "not a directory"),
        "{p:?}"
    );
    let p = errors(&minimal(&one("/tmp/it's.sock", "other"), ""));
    assert!(has(&p, "clusters[1].listen_socket", "quotes"), "{p:?}");
    let two = format!("{}\n{}", one("/tmp/s", "other"), one("/tmp/s", "third"));
    let p = errors(&minimal(&two, ""));
    assert!(
        has(
            &p,
            "clusters[2].listen_socket",
            "duplicate listen socket \"/tmp/s\" (first used at clusters[1].listen_socket)"
        ),
        "{p:?}"
    );
}

#[test]
fn causal_wait_is_off_by_default_and_needs_a_timeout_to_wait_for() {
    let c = load_str_with_env(&minimal("", ""), &no_env).unwrap();
    assert!(!c.clusters[0].routing.causal_wait);
    let on = minimal("    routing: { causal_wait: true }", "");
    assert!(
        load_str_with_env(&on, &no_env).unwrap().clusters[0]
            .routing
            .causal_wait
    );
    let zero = minimal("    routing: { causal_wait: true, causal_timeout: 0s }", "");
    let p = errors(&zero);
    assert!(
        has(&p, "clusters[0].routing.causal_wait", "causal_timeout"),
        "{p:?}"
    );
    let typo = minimal("    routing: { causal_wait: sometimes }", "");
    assert!(!errors(&typo).is_empty());
}
