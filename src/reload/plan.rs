//! What a reload changes: the running config against the new file, per cluster, as server slots
//! (pure; applied by `reload::Reloader`).
//!
//! Server slots keep their indices for the life of the process: a server that stays keeps its
//! slot (taking its new settings), a server gone from the file keeps its slot marked removed, a
//! server added back by name takes its old slot again, and new servers are appended.

use std::collections::HashMap;

use crate::config::{ClusterConfig, Config, ServerConfig, UserConfig};
use crate::router::MAX_SERVER_SLOTS;

/// One running cluster's part of a reload.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub name: String,
    /// The new settings with `servers` as slots (old ones in place, new ones appended).
    pub merged: ClusterConfig,
    /// Slots whose server is new, added back, or moved to another address: they start over.
    pub reset: Vec<bool>,
    /// Slots whose server is not in the new file.
    pub removed: Vec<bool>,
    /// Slots that this reload removes (were live before).
    pub newly_removed: Vec<usize>,
    /// What changed, for the log and the reload answer.
    pub changes: Vec<String>,
    /// Routing settings the classifier is built from changed.
    pub classifier_changed: bool,
    pub pool_changed: bool,
}

/// Everything a reload would do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub clusters: Vec<ClusterPlan>,
    /// Process-wide changes (users, limits, admin token), for the log and the answer.
    pub changes: Vec<String>,
    /// What the file changes but only a restart applies (and is therefore not applied).
    pub restart_needed: Vec<String>,
}

impl Plan {
    /// Nothing to apply and nothing needing a restart.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.restart_needed.is_empty()
            && self.clusters.iter().all(|c| c.changes.is_empty())
    }
}

/// Compare the running config (whose clusters' servers are slots, `removed` marking the ones a
/// reload removed, by cluster name) with a freshly loaded and validated `next`.
pub fn plan(
    running: &Config,
    removed: &HashMap<String, Vec<bool>>,
    next: &Config,
) -> Result<Plan, String> {
    let mut restart_needed = Vec::new();
    if running.admin.listen != next.admin.listen {
        restart_needed.push("admin.listen".to_owned());
    }
    let mut clusters = Vec::new();
    for old in &running.clusters {
        let Some(new) = next.cluster(&old.name) else {
            restart_needed.push(format!("cluster {} removed", old.name));
            continue;
        };
        if old.listen != new.listen {
            restart_needed.push(format!("clusters.{}.listen", old.name));
        }
        if old.listen_socket != new.listen_socket {
            restart_needed.push(format!("clusters.{}.listen_socket", old.name));
        }
        if old.protocol != new.protocol {
            restart_needed.push(format!("clusters.{}.protocol", old.name));
            continue;
        }
        let none = Vec::new();
        let gone = removed.get(&old.name).unwrap_or(&none);
        clusters.push(plan_cluster(old, gone, new)?);
    }
    for new in &next.clusters {
        if running.cluster(&new.name).is_none() {
            restart_needed.push(format!("cluster {} added", new.name));
        }
    }
    let mut changes = users_changes(&running.users, &next.users);
    if running.limits != next.limits {
        changes.push("limits".to_owned());
    }
    if running.admin.token != next.admin.token {
        changes.push("admin.token".to_owned());
    }
    Ok(Plan {
        clusters,
        changes,
        restart_needed,
    })
}

fn plan_cluster(
    old: &ClusterConfig,
    removed: &[bool],
    new: &ClusterConfig,
) -> Result<ClusterPlan, String> {
    let name = &old.name;
    let mut changes = Vec::new();
    let slots = merge_servers(&old.servers, removed, &new.servers, &mut changes);
    if slots.servers.len() > MAX_SERVER_SLOTS {
        return Err(format!(
            "cluster {name}: more than {MAX_SERVER_SLOTS} distinct servers since start; restart to add more"
        ));
    }
    let mut merged = new.clone();
    merged.servers = slots.servers;
    // Slots keep their order: a server's own pool size compared slot by slot.
    let pool_sizes_changed = (0..merged.servers.len()).any(|i| {
        old.servers.get(i).map(|s| s.pool_size) != merged.servers.get(i).map(|s| s.pool_size)
    });
    let classifier_changed = old.routing.write_functions != new.routing.write_functions
        || old.routing.classifier_cache_size != new.routing.classifier_cache_size;
    let sections = [
        ("routing", old.routing != new.routing),
        ("monitor", old.monitor != new.monitor),
        ("failover", old.failover != new.failover),
        ("pool", old.pool != new.pool),
        ("tls", old.tls != new.tls),
        ("server_tls", old.server_tls != new.server_tls),
    ];
    for (section, changed) in sections {
        if changed {
            changes.push(format!("{section} settings"));
        }
    }
    if old.pool.mode != new.pool.mode {
        changes.push("pool.mode (applies to sessions that start from now on)".to_owned());
    }
    Ok(ClusterPlan {
        name: name.clone(),
        merged,
        reset: slots.reset,
        removed: slots.removed,
        newly_removed: slots.newly_removed,
        changes,
        classifier_changed,
        pool_changed: old.pool != new.pool || pool_sizes_changed,
    })
}

struct Slots {
    servers: Vec<ServerConfig>,
    reset: Vec<bool>,
    removed: Vec<bool>,
    newly_removed: Vec<usize>,
}

fn merge_servers(
    slots: &[ServerConfig],
    removed: &[bool],
    next: &[ServerConfig],
    changes: &mut Vec<String>,
) -> Slots {
    let mut out = Slots {
        servers: Vec::with_capacity(slots.len()),
        reset: Vec::new(),
        removed: Vec::new(),
        newly_removed: Vec::new(),
    };
    for (i, slot) in slots.iter().enumerate() {
        let was_removed = removed.get(i).copied().unwrap_or(false);
        match next.iter().find(|s| s.name == slot.name) {
            Some(n) => {
                let moved = n.address() != slot.address();
                let resocketed = n.socket != slot.socket;
                if was_removed {
                    changes.push(format!("server {} added back", n.name));
                } else if moved {
                    changes.push(format!(
                        "server {} moved from {} to {}",
                        n.name,
                        slot.address(),
                        n.address()
                    ));
                } else if resocketed {
                    let show = |s: &ServerConfig| {
                        s.socket
                            .as_ref()
                            .map_or("none".to_string(), |p| p.display().to_string())
                    };
                    changes.push(format!(
                        "server {} socket changed from {} to {}",
                        n.name,
                        show(slot),
                        show(n)
                    ));
                } else if n != slot {
                    changes.push(format!("server {} settings", n.name));
                }
                out.servers.push(n.clone());
                out.reset.push(was_removed || moved || resocketed);
                out.removed.push(false);
            }
            None => {
                if !was_removed {
                    changes.push(format!("server {} removed", slot.name));
                    out.newly_removed.push(i);
                }
                // Kept only so indices stay valid: never promoted, never balanced to.
                let mut kept = slot.clone();
                kept.promote = false;
                kept.weight = 0;
                out.servers.push(kept);
                out.reset.push(false);
                out.removed.push(true);
            }
        }
    }
    for n in next {
        if !slots.iter().any(|s| s.name == n.name) {
            changes.push(format!("server {} added", n.name));
            out.servers.push(n.clone());
            out.reset.push(true);
            out.removed.push(false);
        }
    }
    out
}

fn users_changes(old: &[UserConfig], new: &[UserConfig]) -> Vec<String> {
    let mut changes = Vec::new();
    for u in new {
        match old.iter().find(|o| o.name == u.name) {
            None => changes.push(format!("user {} added", u.name)),
            Some(o) if o != u => changes.push(format!("user {} changed", u.name)),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|u| u.name == o.name) {
            changes.push(format!("user {} removed", o.name));
        }
    }
    changes
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
