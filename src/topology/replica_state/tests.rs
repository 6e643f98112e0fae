//! Scripted lag histories for the replication state machine.

use std::time::{Duration, Instant};

use super::*;

const ROUND: Duration = Duration::from_millis(500);

fn policy(protocol: Protocol) -> LagPolicy {
    LagPolicy {
        protocol,
        max_lag: Some(Duration::from_secs(1)),
        max_lag_bytes: None,
        readmit_after: Duration::from_secs(2),
        alert: Some(Duration::from_secs(5)),
    }
}

fn lag(seconds: f64) -> Reading {
    Reading::Replica {
        streaming: true,
        seconds: Some(seconds),
        bytes: None,
    }
}

/// A tracker fed one reading per round, with a clock that advances `ROUND` per round.
struct Script {
    tr: Tracker,
    policy: LagPolicy,
    now: Instant,
    changes: Vec<Transition>,
    alerts: Vec<AlertChange>,
}

impl Script {
    fn new(policy: LagPolicy) -> Self {
        Script {
            tr: Tracker::new(),
            policy,
            now: Instant::now(),
            changes: Vec::new(),
            alerts: Vec::new(),
        }
    }

    fn feed(&mut self, r: Reading) -> ReplicaState {
        self.now += ROUND;
        let step = self.tr.update(&r, &self.policy, self.now);
        self.changes.extend(step.transition);
        self.alerts.extend(step.alert);
        self.tr.state()
    }

    fn feed_n(&mut self, n: usize, r: Reading) -> ReplicaState {
        for _ in 0..n {
            self.feed(r);
        }
        self.tr.state()
    }

    /// A replica measured healthy on its first round.
    fn healthy() -> Self {
        let mut s = Script::new(policy(Protocol::Postgres));
        assert_eq!(s.feed(lag(0.0)), ReplicaState::Healthy);
        s
    }
}

#[test]
fn starts_down_and_first_measurement_within_limits_is_healthy_at_once() {
    let mut s = Script::new(policy(Protocol::Postgres));
    assert_eq!(s.tr.state(), ReplicaState::Down);
    assert_eq!(s.tr.reason(), reason::NOT_PROBED_YET);
    assert_eq!(
        s.feed(Reading::Down(reason::WAITING_HEALTHY_AFTER)),
        ReplicaState::Down
    );
    assert_eq!(s.tr.reason(), reason::WAITING_HEALTHY_AFTER);
    assert_eq!(s.feed(lag(0.2)), ReplicaState::Healthy);
    assert_eq!(s.tr.reason(), reason::WITHIN_LIMITS);
    assert_eq!(
        s.changes,
        vec![Transition {
            from: ReplicaState::Down,
            to: ReplicaState::Healthy,
            reason: reason::WITHIN_LIMITS
        }]
    );
}

#[test]
fn primary_is_primary_without_hold() {
    let mut s = Script::new(policy(Protocol::Postgres));
    assert_eq!(s.feed(Reading::Primary), ReplicaState::Primary);
    assert_eq!(s.tr.reason(), reason::PRIMARY);
    assert_eq!(
        s.feed(Reading::Down(reason::PROBE_FAILING)),
        ReplicaState::Down
    );
    assert_eq!(s.feed(Reading::Primary), ReplicaState::Primary);
    assert_eq!(s.changes.len(), 3);
}

#[test]
fn crossing_the_limit_leaves_at_once() {
    let mut s = Script::healthy();
    assert_eq!(s.feed(lag(0.99)), ReplicaState::Healthy);
    assert_eq!(
        s.feed(lag(1.0)),
        ReplicaState::Healthy,
        "the limit itself is fine"
    );
    assert_eq!(s.feed(lag(1.01)), ReplicaState::Lagging);
    assert_eq!(s.tr.reason(), reason::OVER_MAX_LAG);
    assert_eq!(s.changes.len(), 2);
    assert_eq!(s.changes[1].from, ReplicaState::Healthy);
    assert_eq!(s.changes[1].to, ReplicaState::Lagging);
}

#[test]
fn readmission_only_after_the_hold() {
    let mut s = Script::healthy();
    s.feed_n(4, lag(3.0));
    assert_eq!(s.tr.state(), ReplicaState::Lagging);
    // Back under the limit: 2s hold at 0.5s per round = the 5th round under is the first at 2s.
    let back = s.now + ROUND;
    for i in 0..4 {
        assert_eq!(s.feed(lag(0.1)), ReplicaState::Lagging, "round {i}");
        assert_eq!(s.tr.reason(), reason::READMIT_HOLD);
        assert!(s.now - back < s.policy.readmit_after);
    }
    assert_eq!(s.feed(lag(0.1)), ReplicaState::Healthy);
    assert_eq!(s.now - back, s.policy.readmit_after);
    // Reason changes (over the limit -> readmit_hold) are not state changes.
    assert_eq!(s.changes.len(), 3);
    assert_eq!(s.changes[2].to, ReplicaState::Healthy);
}

#[test]
fn going_over_during_the_hold_restarts_it() {
    let mut s = Script::healthy();
    s.feed(lag(2.0));
    s.feed_n(3, lag(0.1));
    assert_eq!(s.feed(lag(1.5)), ReplicaState::Lagging);
    assert_eq!(s.tr.reason(), reason::OVER_MAX_LAG);
    assert_eq!(s.feed_n(4, lag(0.1)), ReplicaState::Lagging);
    assert_eq!(s.feed(lag(0.1)), ReplicaState::Healthy);
}

#[test]
fn oscillating_around_the_limit_does_not_flap() {
    // Over and under every other round for a minute: one change, out of the read set.
    let mut s = Script::healthy();
    for i in 0..120 {
        s.feed(lag(if i % 2 == 0 { 1.2 } else { 0.8 }));
        assert_ne!(s.tr.state(), ReplicaState::Healthy, "round {i}");
    }
    assert_eq!(s.changes.len(), 2, "{:?}", s.changes);

    // Over once every 1.5s (shorter than the hold): still no readmission, no more changes.
    for i in 0..60 {
        s.feed(lag(if i % 3 == 0 { 1.1 } else { 0.9 }));
    }
    assert_eq!(s.tr.state(), ReplicaState::Lagging);
    assert_eq!(s.changes.len(), 2);

    // Settles under: one change back.
    s.feed_n(10, lag(0.5));
    assert_eq!(s.tr.state(), ReplicaState::Healthy);
    assert_eq!(s.changes.len(), 3);
}

#[test]
fn slow_oscillation_changes_twice_per_period_at_most() {
    // Over for 1s, under for 3s (longer than the hold), ten times: 2 changes per period.
    let mut s = Script::healthy();
    for _ in 0..10 {
        s.feed_n(2, lag(1.5));
        s.feed_n(6, lag(0.5));
    }
    assert_eq!(s.changes.len(), 1 + 2 * 10);
    assert_eq!(s.tr.state(), ReplicaState::Healthy);
}

#[test]
fn zero_hold_readmits_at_once() {
    let mut p = policy(Protocol::Postgres);
    p.readmit_after = Duration::ZERO;
    let mut s = Script::new(p);
    s.feed(lag(0.0));
    assert_eq!(s.feed(lag(5.0)), ReplicaState::Lagging);
    assert_eq!(s.feed(lag(0.5)), ReplicaState::Healthy);
}

#[test]
fn byte_limit() {
    let mut p = policy(Protocol::Postgres);
    p.max_lag = None;
    p.max_lag_bytes = Some(1000);
    let mut s = Script::new(p);
    let bytes = |b: Option<u64>| Reading::Replica {
        streaming: true,
        seconds: Some(100.0),
        bytes: b,
    };
    assert_eq!(s.feed(bytes(Some(1000))), ReplicaState::Healthy);
    assert_eq!(s.feed(bytes(Some(1001))), ReplicaState::Lagging);
    assert_eq!(s.tr.reason(), reason::OVER_MAX_LAG_BYTES);
    assert_eq!(s.feed(bytes(None)), ReplicaState::Unknown);
    assert_eq!(s.tr.reason(), reason::LAG_BYTES_UNKNOWN);
    assert_eq!(s.feed_n(4, bytes(Some(10))), ReplicaState::Unknown);
    assert_eq!(s.tr.reason(), reason::READMIT_HOLD);
    assert_eq!(s.feed(bytes(Some(10))), ReplicaState::Healthy);
}

#[test]
fn unknown_lag_is_never_healthy_and_restarts_the_hold() {
    let mut s = Script::healthy();
    assert_eq!(s.feed(Reading::Stale), ReplicaState::Unknown);
    assert_eq!(s.tr.reason(), reason::NO_FRESH_MEASUREMENT);
    let null = Reading::Replica {
        streaming: true,
        seconds: None,
        bytes: None,
    };
    assert_eq!(s.feed_n(10, null), ReplicaState::Unknown);
    assert_eq!(s.tr.reason(), reason::LAG_NOT_REPORTED);
    // Measured again, but the hold is broken by every unknown round.
    for _ in 0..10 {
        s.feed_n(3, lag(0.0));
        assert_eq!(s.feed(Reading::Stale), ReplicaState::Unknown);
    }
    assert_eq!(s.feed_n(4, lag(0.0)), ReplicaState::Unknown);
    assert_eq!(s.feed(lag(0.0)), ReplicaState::Healthy);
    // healthy -> unknown -> healthy; reason changes alone are no state changes.
    assert_eq!(s.changes.len(), 3, "{:?}", s.changes);
}

#[test]
fn role_unknown_is_unknown() {
    let mut s = Script::new(policy(Protocol::Mysql));
    assert_eq!(s.feed(Reading::RoleUnknown), ReplicaState::Unknown);
    assert_eq!(s.tr.reason(), reason::ROLE_UNKNOWN);
}

#[test]
fn postgres_receiver_not_streaming_is_broken() {
    let mut s = Script::healthy();
    let stopped = Reading::Replica {
        streaming: false,
        seconds: Some(0.0),
        bytes: Some(0),
    };
    assert_eq!(s.feed_n(5, stopped), ReplicaState::Broken);
    assert_eq!(s.tr.reason(), reason::WAL_RECEIVER_NOT_STREAMING);
    assert_eq!(s.feed_n(4, lag(0.0)), ReplicaState::Broken);
    assert_eq!(s.tr.reason(), reason::READMIT_HOLD);
    assert_eq!(s.feed(lag(0.0)), ReplicaState::Healthy);
    assert_eq!(s.changes.len(), 3);
}

#[test]
fn mysql_stopped_threads_and_null_seconds_are_broken() {
    let mut s = Script::new(policy(Protocol::Mysql));
    s.feed(lag(0.0));
    let stopped = Reading::Replica {
        streaming: false,
        seconds: None,
        bytes: None,
    };
    assert_eq!(s.feed(stopped), ReplicaState::Broken);
    assert_eq!(s.tr.reason(), reason::REPLICATION_THREADS_STOPPED);
    let null = Reading::Replica {
        streaming: true,
        seconds: None,
        bytes: None,
    };
    assert_eq!(s.feed(null), ReplicaState::Broken);
    assert_eq!(s.tr.reason(), reason::SECONDS_BEHIND_MASTER_NULL);
    assert_eq!(s.changes.len(), 2);
}

#[test]
fn down_and_back_needs_the_hold_after_the_first_admission() {
    let mut s = Script::healthy();
    assert_eq!(
        s.feed(Reading::Down(reason::PROBE_FAILING)),
        ReplicaState::Down
    );
    assert_eq!(s.feed_n(4, lag(0.0)), ReplicaState::Lagging);
    assert_eq!(s.tr.reason(), reason::READMIT_HOLD);
    assert_eq!(s.feed(lag(0.0)), ReplicaState::Healthy);
}

#[test]
fn demoted_primary_waits_for_the_hold() {
    let mut s = Script::new(policy(Protocol::Postgres));
    s.feed(Reading::Primary);
    assert_eq!(s.feed(lag(0.0)), ReplicaState::Lagging);
    assert_eq!(s.tr.reason(), reason::READMIT_HOLD);
    assert_eq!(s.feed_n(4, lag(0.0)), ReplicaState::Healthy);
}

#[test]
fn alert_is_raised_once_and_cleared_after_the_hold() {
    let mut s = Script::healthy();
    s.feed(lag(4.0));
    assert!(s.alerts.is_empty());
    s.feed(lag(6.0));
    assert_eq!(s.alerts, vec![AlertChange::Raised { seconds: 6.0 }]);
    assert!(s.tr.alert());
    // Oscillating around the threshold, unknown rounds in between: no new alert, no clearing.
    for i in 0..40 {
        s.feed(match i % 3 {
            0 => lag(5.5),
            1 => lag(4.5),
            _ => Reading::Stale,
        });
    }
    assert_eq!(s.alerts.len(), 1);
    assert!(s.tr.alert());
    s.feed_n(4, lag(0.5));
    assert!(s.tr.alert(), "still within the hold");
    s.feed(lag(0.5));
    assert!(!s.tr.alert());
    assert_eq!(s.alerts[1], AlertChange::Cleared);
    assert_eq!(s.alerts.len(), 2);
}

#[test]
fn alert_off_and_non_replicas_never_alert() {
    let mut p = policy(Protocol::Postgres);
    p.alert = None;
    let mut s = Script::new(p);
    s.feed_n(5, lag(1000.0));
    assert!(s.alerts.is_empty());

    let mut s = Script::healthy();
    s.feed(lag(60.0));
    assert!(s.tr.alert());
    s.feed(Reading::Down(reason::PROBE_FAILING));
    assert!(!s.tr.alert(), "a down server has no lag to alert on");
    s.feed(Reading::Primary);
    assert_eq!(s.alerts.len(), 2);
}

#[test]
fn policy_from_cluster_config() {
    use crate::config::{
        Balance, ClusterConfig, Consistency, Fallback, MonitorConfig, RoutingConfig,
    };
    let c = ClusterConfig {
        name: "c".into(),
        protocol: Protocol::Mysql,
        listen: "127.0.0.1:1".parse().unwrap(),
        listen_socket: None,
        servers: vec![],
        routing: RoutingConfig {
            balance: Balance::RoundRobin,
            max_replica_lag: Some(Duration::from_secs(3)),
            max_replica_lag_bytes: Some(7),
            lag_readmit_after: Duration::from_secs(9),
            lag_alert: None,
            fallback: Fallback::Primary,
            write_functions: vec![],
            classifier_cache_size: 0,
            consistency: Consistency::ReadYourWrites,
            causal_timeout: Duration::from_millis(500),
            causal_wait: false,
        },
        failover: crate::config::FailoverConfig::default(),
        pool: crate::config::PoolConfig::default(),
        tls: crate::config::TlsConfig::default(),
        server_tls: crate::config::ServerTls::default(),
        monitor: MonitorConfig {
            interval: ROUND,
            timeout: ROUND,
            healthy_after: 1,
            unhealthy_after: 1,
            user: "m".into(),
            password: String::new(),
            database: String::new(),
        },
    };
    assert_eq!(
        LagPolicy::from_cluster(&c),
        LagPolicy {
            protocol: Protocol::Mysql,
            max_lag: Some(Duration::from_secs(3)),
            max_lag_bytes: Some(7),
            readmit_after: Duration::from_secs(9),
            alert: None,
        }
    );
}
