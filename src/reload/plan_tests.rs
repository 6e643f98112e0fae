//! Reload plans: server slots kept, removed, added back and appended; what needs a restart.

use std::collections::HashMap;

use super::*;
use crate::config::load_str;

fn config(servers: &[(&str, u16, u32)], pool: usize, listen: u16, users: &[&str]) -> Config {
    let servers: String = servers
        .iter()
        .map(|(name, port, weight)| {
            format!("      - {{name: {name}, address: 127.0.0.1:{port}, weight: {weight}}}\n")
        })
        .collect();
    let users: String = users
        .iter()
        .map(|u| format!("  - {{name: {u}, password: pw}}\n"))
        .collect();
    let yaml = format!(
        "clusters:
  - name: main
    listen: 127.0.0.1:{listen}
    servers:
{servers}    monitor:
      user: postgres
    pool:
      mode: transaction
      size: {pool}
users:
{users}"
    );
    match load_str(&yaml) {
        Ok(c) => c,
        Err(e) => panic!("test config invalid: {e}\n{yaml}"),
    }
}

fn names(c: &ClusterConfig) -> Vec<&str> {
    c.servers.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn unchanged_config_plans_nothing() {
    let a = config(&[("p", 1, 1), ("r1", 2, 1)], 5, 6432, &["app"]);
    let p = plan(&a, &HashMap::new(), &a).unwrap();
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn removed_server_keeps_its_slot_and_comes_back_to_it() {
    let a = config(
        &[("p", 1, 1), ("r1", 2, 1), ("r2", 3, 1)],
        5,
        6432,
        &["app"],
    );
    let b = config(&[("p", 1, 1), ("r2", 3, 2)], 5, 6432, &["app"]);
    let p = plan(&a, &HashMap::new(), &b).unwrap();
    let c = &p.clusters[0];
    assert_eq!(names(&c.merged), ["p", "r1", "r2"]);
    assert_eq!(c.removed, [false, true, false]);
    assert_eq!(c.newly_removed, [1]);
    assert_eq!(c.reset, [false, false, false]);
    assert!(!c.merged.servers[1].promote && c.merged.servers[1].weight == 0);
    assert_eq!(c.merged.servers[2].weight, 2);
    assert!(c.changes.contains(&"server r1 removed".to_owned()));
    assert!(c.changes.contains(&"server r2 settings".to_owned()));

    // Running now has the merged slots; adding r1 back (elsewhere) and a new r3.
    let mut running = b.clone();
    running.clusters[0] = c.merged.clone();
    let removed = HashMap::from([("main".to_owned(), c.removed.clone())]);
    let d = config(
        &[("r3", 4, 1), ("p", 1, 1), ("r1", 7, 1), ("r2", 3, 2)],
        5,
        6432,
        &["app"],
    );
    let p = plan(&running, &removed, &d).unwrap();
    let c = &p.clusters[0];
    assert_eq!(names(&c.merged), ["p", "r1", "r2", "r3"]);
    assert_eq!(c.removed, [false; 4]);
    assert_eq!(c.reset, [false, true, false, true]);
    assert!(c.newly_removed.is_empty());
    assert_eq!(c.merged.servers[1].port, 7);
    assert!(c.merged.servers[1].promote);
    assert!(c.changes.contains(&"server r1 added back".to_owned()));
    assert!(c.changes.contains(&"server r3 added".to_owned()));
}

#[test]
fn moved_server_starts_over() {
    let a = config(&[("p", 1, 1), ("r1", 2, 1)], 5, 6432, &["app"]);
    let b = config(&[("p", 1, 1), ("r1", 9, 1)], 5, 6432, &["app"]);
    let c = plan(&a, &HashMap::new(), &b).unwrap().clusters.remove(0);
    assert_eq!(c.reset, [false, true]);
    assert!(c.changes[0].contains("moved"), "{:?}", c.changes);
}

#[test]
fn a_server_socket_set_or_changed_starts_its_pools_over() {
    let a = config(&[("p", 1, 1), ("r1", 2, 1)], 5, 6432, &["app"]);
    let mut b = a.clone();
    b.clusters[0].servers[1].socket = Some(std::path::Path::new("/run/pg/.s.PGSQL.2").into());
    let c = plan(&a, &HashMap::new(), &b).unwrap().clusters.remove(0);
    assert_eq!(c.reset, [false, true]);
    assert_eq!(
        c.changes,
        ["server r1 socket changed from none to /run/pg/.s.PGSQL.2"]
    );
    let c = plan(&b, &HashMap::new(), &a).unwrap().clusters.remove(0);
    assert_eq!(c.reset, [false, true], "back to TCP");
}

#[test]
fn pool_users_and_listeners() {
    let a = config(&[("p", 1, 1)], 5, 6432, &["app"]);
    let b = config(&[("p", 1, 1)], 9, 7000, &["app", "newbie"]);
    let p = plan(&a, &HashMap::new(), &b).unwrap();
    assert!(p.clusters[0].pool_changed);
    assert!(!p.clusters[0].classifier_changed);
    assert_eq!(p.changes, ["user newbie added"]);
    assert_eq!(p.restart_needed, ["clusters.main.listen"]);
    let mut c = a.clone();
    c.clusters[0].listen_socket = Some("/run/sy/.s.PGSQL.6432".into());
    let p = plan(&a, &HashMap::new(), &c).unwrap();
    assert_eq!(p.restart_needed, ["clusters.main.listen_socket"]);
}

#[test]
fn a_server_pool_size_change_reshapes_the_pools() {
    let a = config(&[("p", 1, 1), ("r1", 2, 1)], 5, 6432, &["app"]);
    let mut b = a.clone();
    b.clusters[0].servers[1].pool_size = Some(2);
    let c = plan(&a, &HashMap::new(), &b).unwrap().clusters.remove(0);
    assert!(c.pool_changed);
    assert_eq!(c.reset, [false, false], "no server starts over");
    assert_eq!(c.changes, ["server r1 settings"]);
    assert_eq!(c.merged.pool_for(1).size, 2);
    assert_eq!(c.merged.pool_for(0).size, 5);
}
