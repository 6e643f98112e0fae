//! The promotion and switchover sequences: the controller's decisions carried out against the
//! servers through [`Actions`], step by step, each step logged.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::actions::{ActionError, Actions, Position};
use super::decide::PromoteOutcome;
use super::gate::{Closed, WriteGate};
use crate::config::ClusterConfig;

/// What a switchover did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverReport {
    pub old: usize,
    /// The new primary; `None` when the switchover was aborted (roles unchanged).
    pub new: Option<usize>,
    /// The old primary now replicates from the new one (MariaDB with `failover.replication`).
    pub old_rejoined: bool,
    /// Why it was aborted, or what did not work after the promotion (a replica not repointed).
    pub error: Option<String>,
    pub took: Duration,
}

/// The most advanced candidate: highest position, then highest `priority`, then config order.
/// Candidates whose position is unknown rank last (but still rank).
pub fn rank(positions: &[(usize, Option<Position>)], cluster: &ClusterConfig) -> Option<usize> {
    let priority = |i: usize| cluster.servers.get(i).map_or(0, |s| s.priority);
    positions
        .iter()
        .max_by(|(ia, pa), (ib, pb)| {
            let by_pos = match (pa, pb) {
                (Some(a), Some(b)) => a.progress_cmp(b).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => Ordering::Equal,
            };
            by_pos
                .then(priority(*ia).cmp(&priority(*ib)))
                .then(ib.cmp(ia))
        })
        .map(|(i, _)| *i)
}

/// Fresh received positions of `servers`, asked concurrently.
async fn positions<A: Actions>(
    actions: &Arc<A>,
    cluster: &ClusterConfig,
    servers: &[usize],
) -> Vec<(usize, Option<Position>)> {
    let mut set = JoinSet::new();
    for &i in servers {
        let a = actions.clone();
        set.spawn(async move { (i, a.received_position(i).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok((i, r)) = r {
            match r {
                Ok(p) => {
                    tracing::info!(cluster = %cluster.name, server = %cluster.servers[i].name, position = %p, "candidate position");
                    out.push((i, Some(p)));
                }
                Err(e) => {
                    tracing::warn!(cluster = %cluster.name, server = %cluster.servers[i].name, error = %e, "candidate did not report its position");
                }
            }
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out
}

/// Repoint every server of `replicas` to `primary`, concurrently; the failures, as text.
async fn repoint_all<A: Actions>(
    actions: &Arc<A>,
    cluster: &ClusterConfig,
    replicas: &[usize],
    primary: usize,
) -> Vec<String> {
    let mut set = JoinSet::new();
    for &i in replicas.iter().filter(|&&i| i != primary) {
        let a = actions.clone();
        set.spawn(async move { (i, a.repoint(i, primary).await) });
    }
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, Ok(()))) => {
                tracing::info!(cluster = %cluster.name, server = %cluster.servers[i].name, primary = %cluster.servers[primary].name, "replica repointed");
            }
            Ok((_, Err(e))) => {
                tracing::error!(cluster = %cluster.name, error = %e, "repoint failed");
                failures.push(e.to_string());
            }
            Err(e) => failures.push(format!("repoint task failed: {e}")),
        }
    }
    failures
}

/// Unplanned failover: promote the most advanced of `candidates` (the failed primary is already
/// fenced by the proxy), then repoint `others` to it.
pub async fn promote<A: Actions>(
    actions: Arc<A>,
    cluster: Arc<ClusterConfig>,
    failed: usize,
    candidates: Vec<usize>,
    others: Vec<usize>,
) -> PromoteOutcome {
    let started = Instant::now();
    let c = &*cluster;
    tracing::warn!(cluster = %c.name, failed = %c.servers[failed].name, "failover: promoting a replica");
    let ranked = positions(&actions, c, &candidates).await;
    let Some(best) = rank(&ranked, c) else {
        return PromoteOutcome {
            promoted: None,
            error: Some("no candidate replica reported its position".into()),
        };
    };
    tracing::warn!(cluster = %c.name, server = %c.servers[best].name, "failover: promoting the most advanced replica");
    if let Err(e) = actions.promote(best, c.failover.promote_timeout).await {
        tracing::error!(cluster = %c.name, error = %e, "failover: promotion failed");
        return PromoteOutcome {
            promoted: None,
            error: Some(e.to_string()),
        };
    }
    let failures = repoint_all(&actions, c, &others, best).await;
    tracing::warn!(cluster = %c.name, primary = %c.servers[best].name, took_ms = started.elapsed().as_millis() as u64, "failover: promotion done");
    PromoteOutcome {
        promoted: Some(best),
        error: (!failures.is_empty()).then(|| failures.join("; ")),
    }
}

/// Planned switchover from `old` to the best of `candidates`; `others` are repointed. Returns the
/// report and, on success, the closed gate: the caller reopens it once the new primary is published.
pub async fn switchover<A: Actions>(
    actions: Arc<A>,
    cluster: Arc<ClusterConfig>,
    gate: WriteGate,
    old: usize,
    candidates: Vec<usize>,
    others: Vec<usize>,
) -> (SwitchoverReport, Option<Closed>) {
    let started = Instant::now();
    let c = &*cluster;
    let mut report = SwitchoverReport {
        old,
        new: None,
        old_rejoined: false,
        error: None,
        took: Duration::ZERO,
    };
    let target = if candidates.len() == 1 {
        candidates[0]
    } else {
        match rank(&positions(&actions, c, &candidates).await, c) {
            Some(t) => t,
            None => {
                report.error = Some("no candidate replica reported its position".into());
                return (report, None);
            }
        }
    };
    let timeout = c.failover.switchover_timeout;
    tracing::warn!(cluster = %c.name, from = %c.servers[old].name, to = %c.servers[target].name, "switchover: holding writes, waiting for open transactions");
    let closed = match gate.close(timeout).await {
        Ok(g) => g,
        Err(after) => {
            report.error = Some(format!(
                "transactions were still open on the primary after {after:?}; nothing changed"
            ));
            report.took = started.elapsed();
            return (report, None);
        }
    };
    let steps = async {
        tracing::info!(cluster = %c.name, server = %c.servers[old].name, "switchover: fencing the old primary");
        actions.fence(old).await?;
        let pos = actions.primary_position(old).await?;
        tracing::info!(cluster = %c.name, server = %c.servers[target].name, position = %pos, "switchover: waiting for the target to catch up");
        actions.wait_applied(target, Some(pos), timeout).await?;
        tracing::info!(cluster = %c.name, server = %c.servers[target].name, "switchover: promoting the target");
        actions.promote(target, c.failover.promote_timeout).await?;
        Ok::<(), ActionError>(())
    };
    if let Err(e) = steps.await {
        tracing::error!(cluster = %c.name, error = %e, "switchover failed; making the old primary writable again");
        let undo = actions.promote(old, c.failover.promote_timeout).await;
        report.error = Some(match undo {
            Ok(()) => format!("{e}; the old primary is writable again"),
            Err(u) => format!("{e}; undoing the fence also failed: {u}"),
        });
        report.took = started.elapsed();
        return (report, None);
    }
    report.new = Some(target);
    let rest: Vec<usize> = others
        .into_iter()
        .filter(|&i| i != old && i != target)
        .collect();
    let mut failures = repoint_all(&actions, c, &rest, target).await;
    if c.failover.replication.is_some() {
        match actions.rejoin(old, target).await {
            Ok(()) => {
                tracing::info!(cluster = %c.name, server = %c.servers[old].name, "switchover: old primary rejoined as a replica");
                report.old_rejoined = true;
            }
            Err(ActionError::Refused { .. }) => {}
            Err(e) => failures.push(e.to_string()),
        }
    }
    report.error = (!failures.is_empty()).then(|| failures.join("; "));
    report.took = started.elapsed();
    tracing::warn!(cluster = %c.name, primary = %c.servers[target].name, took_ms = report.took.as_millis() as u64, "switchover: done");
    (report, Some(closed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(priorities: &[i32]) -> ClusterConfig {
        let mut c = crate::config::load_str(
            "clusters:\n  - name: c\n    listen: 127.0.0.1:1\n    servers:\n      - {name: s0, address: 127.0.0.1:10}\n      - {name: s1, address: 127.0.0.1:11}\n      - {name: s2, address: 127.0.0.1:12}\n    monitor: {user: m, password: p}\nusers:\n  - {name: u, password: p}\n",
        )
        .expect("config")
        .clusters
        .remove(0);
        for (s, p) in c.servers.iter_mut().zip(priorities) {
            s.priority = *p;
        }
        c
    }

    #[test]
    fn the_most_advanced_replica_wins_then_priority_then_order() {
        let c = cluster(&[0, 0, 0]);
        let lsn = |n| Some(Position::Lsn(n));
        assert_eq!(rank(&[(1, lsn(10)), (2, lsn(20))], &c), Some(2));
        assert_eq!(rank(&[(1, lsn(20)), (2, lsn(20))], &c), Some(1));
        assert_eq!(rank(&[(1, None), (2, lsn(1))], &c), Some(2));
        assert_eq!(rank(&[], &c), None);
        let c = cluster(&[0, 0, 5]);
        assert_eq!(rank(&[(1, lsn(20)), (2, lsn(20))], &c), Some(2));
        assert_eq!(rank(&[(1, lsn(21)), (2, lsn(20))], &c), Some(1));
        let g = |s: &str| Some(Position::Gtid(s.into()));
        assert_eq!(rank(&[(1, g("0-1-7")), (2, g("0-1-9"))], &c), Some(2));
    }
}
