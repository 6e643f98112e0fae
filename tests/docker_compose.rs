//! Checks the files under docker/ without a Docker engine: `docker-compose config`, the configs
//! with `switchyard check-config` and `promtool`, and that compose, switchyard.yaml, Prometheus
//! and Grafana agree with each other (service names, ports, files, datasource uid).
//!
//! Needs the Debian packages `docker-compose` (1.29, no engine needed for `config`) and
//! `prometheus` (for `promtool`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Compose services the stack must define.
const SERVICES: [&str; 9] = [
    "pg-primary",
    "pg-replica-1",
    "pg-replica-2",
    "mariadb-primary",
    "mariadb-replica-1",
    "mariadb-replica-2",
    "switchyard",
    "prometheus",
    "grafana",
];

/// Services every other one may wait for with `condition: service_healthy`.
const DATABASES: [&str; 6] = [
    "pg-primary",
    "pg-replica-1",
    "pg-replica-2",
    "mariadb-primary",
    "mariadb-replica-1",
    "mariadb-replica-2",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first of `candidates` found on PATH (or as an absolute path), else a panic saying which
/// Debian package provides it.
fn tool(candidates: &[&str], package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in candidates {
        let direct = Path::new(name);
        if direct.is_absolute() && direct.is_file() {
            return direct.to_path_buf();
        }
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "`{}` not found on PATH: install the Debian package `{package}` \
         (apt-get install -y {package}); scripts/install-deps.sh should install it",
        candidates[0]
    );
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    println!(
        "$ {shown}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `docker-compose -f docker/compose.yaml config`, run with none of the compose variables set so
/// the defaults are what is checked, parsed.
fn compose_config() -> yaml_serde::Value {
    let bin = tool(&["docker-compose"], "docker-compose");
    let mut cmd = Command::new(bin);
    cmd.args(["-f", "docker/compose.yaml", "config"]);
    for var in [
        "PG_SUPERUSER_PASSWORD",
        "REPLICATION_PASSWORD",
        "MONITOR_PASSWORD",
        "APP_PASSWORD",
        "MARIADB_ROOT_PASSWORD",
        "SWITCHYARD_FAILOVER_MODE",
        "SWITCHYARD_ADMIN_TOKEN",
        "SWITCHYARD_PG_PORT",
        "SWITCHYARD_MYSQL_PORT",
        "SWITCHYARD_ADMIN_PORT",
    ] {
        cmd.env_remove(var);
    }
    let out = run(&mut cmd);
    assert_ok(&out, "docker-compose config");
    yaml_serde::from_slice(&out.stdout).expect("docker-compose config prints YAML")
}

fn service<'a>(config: &'a yaml_serde::Value, name: &str) -> &'a yaml_serde::Value {
    config
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("compose has no service {name}"))
}

fn str_of(v: &yaml_serde::Value) -> String {
    match v {
        yaml_serde::Value::String(s) => s.clone(),
        yaml_serde::Value::Number(n) => n.to_string(),
        other => panic!("expected a string, got {other:?}"),
    }
}

#[test]
fn compose_config_is_valid_and_names_every_service() {
    let config = compose_config();
    let names: BTreeSet<String> = config
        .get("services")
        .and_then(|s| s.as_mapping())
        .expect("services mapping")
        .keys()
        .map(str_of)
        .collect();
    for s in SERVICES {
        assert!(names.contains(s), "service {s} missing from {names:?}");
    }

    // Official images, the versions the brief asks for.
    for (svc, image) in [
        ("pg-primary", "postgres:15"),
        ("pg-replica-1", "postgres:15"),
        ("pg-replica-2", "postgres:15"),
        ("mariadb-primary", "mariadb:10.11"),
        ("mariadb-replica-1", "mariadb:10.11"),
        ("mariadb-replica-2", "mariadb:10.11"),
    ] {
        assert_eq!(
            str_of(&service(&config, svc)["image"]),
            image,
            "{svc} image"
        );
    }

    // Every database and switchyard, Prometheus and Grafana have a healthcheck.
    for s in SERVICES {
        let hc = &service(&config, s)["healthcheck"];
        assert!(hc.get("test").is_some(), "{s} has no healthcheck: {hc:?}");
    }

    // Switchyard starts once all six databases are healthy; replicas wait for their primary.
    let deps = &service(&config, "switchyard")["depends_on"];
    for db in DATABASES {
        assert_eq!(
            str_of(&deps[db]["condition"]),
            "service_healthy",
            "switchyard depends_on {db}"
        );
    }
    for (replica, primary) in [
        ("pg-replica-1", "pg-primary"),
        ("pg-replica-2", "pg-primary"),
        ("mariadb-replica-1", "mariadb-primary"),
        ("mariadb-replica-2", "mariadb-primary"),
    ] {
        let dep = &service(&config, replica)["depends_on"][primary]["condition"];
        assert_eq!(
            str_of(dep),
            "service_healthy",
            "{replica} waits for {primary}"
        );
    }

    // Built from this repository with docker/Dockerfile.
    let build = &service(&config, "switchyard")["build"];
    assert_eq!(
        Path::new(&str_of(&build["context"]))
            .canonicalize()
            .unwrap(),
        root().canonicalize().unwrap()
    );
    assert_eq!(str_of(&build["dockerfile"]), "docker/Dockerfile");

    // Published ports match the listeners of docker/switchyard.yaml.
    let published: BTreeSet<(u16, u16)> = service(&config, "switchyard")["ports"]
        .as_sequence()
        .expect("switchyard ports")
        .iter()
        .map(|p| {
            (
                str_of(&p["published"]).parse().unwrap(),
                str_of(&p["target"]).parse().unwrap(),
            )
        })
        .collect();
    let sy = switchyard::config::load_file(&root().join("docker/switchyard.yaml"))
        .unwrap_or_else(|e| panic!("docker/switchyard.yaml:\n{e}"));
    let mut listen_ports: Vec<u16> = sy.clusters.iter().map(|c| c.listen.port()).collect();
    listen_ports.push(sy.admin.listen.expect("admin listener").port());
    for port in listen_ports {
        assert!(
            published.contains(&(port, port)),
            "port {port} of docker/switchyard.yaml not published: {published:?}"
        );
    }

    // Every server address in docker/switchyard.yaml is a compose service.
    for cluster in &sy.clusters {
        for server in &cluster.servers {
            let host = server.host.as_str();
            assert!(
                DATABASES.contains(&host),
                "{}/{}: address {} is not a compose service",
                cluster.name,
                server.name,
                server.address()
            );
            assert_eq!(
                server.port,
                if cluster.name == "main" { 5432 } else { 3306 }
            );
        }
    }

    // Bind-mounted files exist; entrypoint and init scripts are executable (the images only
    // execute /docker-entrypoint-initdb.d/*.sh that are; others would be sourced).
    let mut mounts = 0;
    for s in SERVICES {
        let Some(volumes) = service(&config, s)
            .get("volumes")
            .and_then(|v| v.as_sequence())
        else {
            continue;
        };
        for v in volumes {
            let spec = str_of(v);
            let source = spec.split(':').next().unwrap();
            if !source.starts_with('/') {
                continue; // a named volume
            }
            mounts += 1;
            let path = Path::new(source);
            assert!(path.exists(), "{s}: mounted {source} does not exist");
            if source.ends_with(".sh") {
                let mode = path.metadata().unwrap().permissions().mode();
                assert!(mode & 0o111 != 0, "{source} is not executable");
            }
        }
    }
    assert!(
        mounts >= 12,
        "expected the bind mounts of docker/, found {mounts}"
    );
}

#[test]
fn check_config_accepts_the_compose_and_example_configs() {
    for file in ["docker/switchyard.yaml", "config.example.yaml"] {
        let out = run(Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("check-config")
            .arg(file));
        assert_ok(&out, &format!("switchyard check-config {file}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(": ok ("), "unexpected output: {stdout}");
    }
}

#[test]
fn promtool_accepts_the_rules_and_the_prometheus_config() {
    let promtool = tool(&["promtool", "/usr/bin/promtool"], "prometheus");
    let out = run(Command::new(&promtool).args(["check", "rules", "docker/prometheus/alerts.yml"]));
    assert_ok(&out, "promtool check rules");
    // The config names its rule file relatively: this also checks alerts.yml is found from it.
    let out =
        run(Command::new(&promtool).args(["check", "config", "docker/prometheus/prometheus.yml"]));
    assert_ok(&out, "promtool check config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 rule files found"), "{text}");

    let prom: yaml_serde::Value = yaml_serde::from_str(
        &std::fs::read_to_string(root().join("docker/prometheus/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let targets: Vec<String> = prom["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|j| j["job_name"] == "switchyard")
        .flat_map(|j| j["static_configs"].as_sequence().unwrap().clone())
        .flat_map(|s| s["targets"].as_sequence().unwrap().clone())
        .map(|t| str_of(&t))
        .collect();
    assert_eq!(targets, ["switchyard:9930"]);
}

#[test]
fn grafana_dashboard_uses_the_provisioned_datasource_and_every_area() {
    let ds: yaml_serde::Value = yaml_serde::from_str(
        &std::fs::read_to_string(
            root().join("docker/grafana/provisioning/datasources/prometheus.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let uid = str_of(&ds["datasources"][0]["uid"]);
    assert_eq!(
        str_of(&ds["datasources"][0]["url"]),
        "http://prometheus:9090"
    );

    let provider: yaml_serde::Value = yaml_serde::from_str(
        &std::fs::read_to_string(
            root().join("docker/grafana/provisioning/dashboards/switchyard.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        str_of(&provider["providers"][0]["options"]["path"]),
        "/etc/grafana/dashboards"
    );

    let text =
        std::fs::read_to_string(root().join("docker/grafana/dashboards/switchyard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert_eq!(dash["uid"], "switchyard");
    let panels = dash["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], uid.as_str(), "panel {}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], uid.as_str(), "panel {}", p["title"]);
            exprs.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    let all = exprs.join("\n");
    for metric in [
        "rate(switchyard_queries_total",
        "switchyard_query_duration_seconds_bucket",
        "switchyard_replica_lag_seconds",
        "switchyard_replica_lag_bytes",
        "switchyard_replica_state",
        "switchyard_pool_connections",
        "switchyard_pool_waiting_clients",
        "switchyard_failover_events_total",
        "switchyard_split_brain",
        "switchyard_topology_epoch",
        "switchyard_errors_total",
    ] {
        assert!(all.contains(metric), "no dashboard query uses {metric}");
    }
}

#[test]
fn dockerfile_builds_from_files_the_context_keeps() {
    let text = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    assert!(text.contains("FROM rust:1-bookworm AS build"));
    assert!(text.contains("cargo build --release --locked"));
    assert!(text.contains("FROM debian:bookworm-slim"));
    assert!(text
        .contains(r#"ENTRYPOINT ["switchyard", "--config", "/etc/switchyard/switchyard.yaml"]"#));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let mut sources = 0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            sources += 1;
            assert!(root().join(src).exists(), "COPY source {src} missing");
            let top = src.split('/').next().unwrap();
            assert!(
                !ignored.contains(&top),
                "COPY source {src} is in .dockerignore"
            );
        }
    }
    assert!(
        sources >= 4,
        "expected COPY of Cargo.toml, Cargo.lock, src, config"
    );
}
