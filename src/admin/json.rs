//! Pure builders for the admin API's JSON bodies from topology snapshots.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::topology::model::{Health, Lag, ServerState, Topology};

/// One cluster's name and its current snapshot.
pub type ClusterSnapshot = (String, Arc<Topology>);

fn health_str(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Down => "down",
    }
}

fn server_json(s: &ServerState) -> Value {
    let (lag_seconds, lag_bytes) = match s.lag {
        Lag::Known { seconds, bytes } => (json!(seconds), json!(bytes)),
        Lag::Unknown => (Value::Null, Value::Null),
    };
    json!({
        "name": s.name,
        "address": s.address,
        "role": s.role.as_str(),
        "health": health_str(s.health),
        "replicating": s.replicating,
        "lag_seconds": lag_seconds,
        "lag_bytes": lag_bytes,
        "gtid_behind": s.gtid_behind,
        "weight": s.weight,
        "last_error": s.last_error,
        "state": s.state.as_str(),
        "state_reason": s.state_reason,
        "lag_alert": s.lag_alert,
        "fenced": s.fenced,
        "mode": s.mode.as_str(),
    })
}

/// Body of `GET /api/clusters`.
pub fn clusters_json(snaps: &[ClusterSnapshot]) -> Value {
    let clusters: Vec<Value> = snaps
        .iter()
        .map(|(name, t)| {
            json!({
                "name": name,
                "epoch": t.epoch,
                "primary": t.primary().map(|p| p.name.as_str()),
                "failover": t.failover,
                "split_brain": t.split_brain(),
                "servers": t.servers.iter().map(server_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "clusters": clusters })
}

/// Body of `GET /ready`: `Ok` when every cluster has exactly one healthy primary, else `Err`
/// with the reason and the clusters that lack one.
pub fn readiness(snaps: &[ClusterSnapshot]) -> Result<Value, Value> {
    let missing: Vec<&str> = snaps
        .iter()
        .filter(|(_, t)| t.primary().is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    if missing.is_empty() {
        Ok(json!({ "ready": true }))
    } else {
        Err(json!({
            "ready": false,
            "reason": format!("no healthy primary in cluster(s): {}", missing.join(", ")),
            "clusters_without_primary": missing,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::model::{ReplicaState, Role};

    fn server(index: usize, role: Role, health: Health, lag: Lag) -> ServerState {
        ServerState {
            index,
            name: format!("db{index}"),
            address: format!("10.0.0.{index}:5432"),
            role,
            health,
            replicating: role == Role::Replica,
            lag,
            gtid_behind: None,
            weight: 1,
            checked_at: None,
            last_error: None,
            state: ReplicaState::Healthy,
            state_reason: "lag_within_limits",
            lag_alert: false,
            fenced: false,
            mode: crate::topology::ServerMode::Enabled,
        }
    }

    fn topo(name: &str, servers: Vec<ServerState>) -> ClusterSnapshot {
        (
            name.to_string(),
            Arc::new(Topology {
                cluster: name.to_string(),
                epoch: 3,
                servers,
                failover: "idle",
            }),
        )
    }

    #[test]
    fn clusters_json_shows_gtid_behind() {
        let mut r = server(1, Role::Replica, Health::Up, Lag::Unknown);
        r.gtid_behind = Some(12);
        let v = clusters_json(&[topo("m", vec![r])]);
        assert_eq!(v["clusters"][0]["servers"][0]["gtid_behind"], 12);
    }

    #[test]
    fn clusters_json_lists_servers_with_null_unknown_lag() {
        let mut down = server(2, Role::Unknown, Health::Down, Lag::Unknown);
        down.last_error = Some("connect failed: refused".into());
        let snaps = vec![topo(
            "main",
            vec![
                server(0, Role::Primary, Health::Up, Lag::Unknown),
                server(
                    1,
                    Role::Replica,
                    Health::Up,
                    Lag::Known {
                        seconds: 1.5,
                        bytes: Some(2048),
                    },
                ),
                down,
            ],
        )];
        let v = clusters_json(&snaps);
        let c = &v["clusters"][0];
        assert_eq!(c["name"], "main");
        assert_eq!(c["epoch"], 3);
        assert_eq!(c["primary"], "db0");
        let s = &c["servers"];
        assert_eq!(s[0]["role"], "primary");
        assert_eq!(s[0]["health"], "up");
        assert_eq!(s[0]["lag_seconds"], Value::Null);
        assert_eq!(s[0]["last_error"], Value::Null);
        assert_eq!(s[1]["role"], "replica");
        assert_eq!(s[1]["replicating"], true);
        assert_eq!(s[1]["lag_seconds"], 1.5);
        assert_eq!(s[1]["lag_bytes"], 2048);
        assert_eq!(s[1]["gtid_behind"], Value::Null);
        assert_eq!(s[1]["address"], "10.0.0.1:5432");
        assert_eq!(s[2]["health"], "down");
        assert_eq!(s[2]["role"], "unknown");
        assert_eq!(s[2]["lag_bytes"], Value::Null);
        assert_eq!(s[2]["last_error"], "connect failed: refused");
    }

    #[test]
    fn state_and_reason_per_server() {
        let mut lagging = server(
            1,
            Role::Replica,
            Health::Up,
            Lag::Known {
                seconds: 12.5,
                bytes: None,
            },
        );
        lagging.state = ReplicaState::Lagging;
        lagging.state_reason = "lag_over_max_replica_lag";
        lagging.lag_alert = true;
        let v = clusters_json(&[topo(
            "c",
            vec![server(0, Role::Replica, Health::Up, Lag::Unknown), lagging],
        )]);
        let s = &v["clusters"][0]["servers"];
        assert_eq!(s[0]["state"], "healthy");
        assert_eq!(s[0]["state_reason"], "lag_within_limits");
        assert_eq!(s[0]["lag_alert"], false);
        assert_eq!(s[1]["state"], "lagging");
        assert_eq!(s[1]["state_reason"], "lag_over_max_replica_lag");
        assert_eq!(s[1]["lag_alert"], true);
    }

    #[test]
    fn known_seconds_without_bytes() {
        let snaps = vec![topo(
            "c",
            vec![server(
                0,
                Role::Replica,
                Health::Up,
                Lag::Known {
                    seconds: 0.0,
                    bytes: None,
                },
            )],
        )];
        let v = clusters_json(&snaps);
        let s = &v["clusters"][0]["servers"][0];
        assert_eq!(s["lag_seconds"], 0.0);
        assert_eq!(s["lag_bytes"], Value::Null);
        assert_eq!(v["clusters"][0]["primary"], Value::Null);
    }

    #[test]
    fn ready_needs_a_primary_everywhere() {
        let good = topo(
            "a",
            vec![server(0, Role::Primary, Health::Up, Lag::Unknown)],
        );
        let down = topo(
            "b",
            vec![server(0, Role::Primary, Health::Down, Lag::Unknown)],
        );
        assert_eq!(readiness(&[]), Ok(json!({ "ready": true })));
        assert!(readiness(std::slice::from_ref(&good)).is_ok());
        let err = readiness(&[good, down]).unwrap_err();
        assert_eq!(err["ready"], false);
        assert_eq!(err["clusters_without_primary"], json!(["b"]));
        assert!(err["reason"].as_str().unwrap().contains('b'));
    }
}
