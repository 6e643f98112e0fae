//! Scripted probe histories for the pure monitor state.

use std::time::{Duration, Instant};

use super::*;
use crate::config::{
    Balance, ClusterConfig, Fallback, MonitorConfig, Protocol, RoleHint, RoutingConfig,
    ServerConfig,
};
use crate::topology::model::ReplicaState;

const INTERVAL: Duration = Duration::from_secs(1);

fn cluster(n: usize, healthy_after: u32, unhealthy_after: u32) -> ClusterConfig {
    ClusterConfig {
        name: "main".into(),
        protocol: Protocol::Postgres,
        listen: "127.0.0.1:6432".parse().unwrap(),
        listen_socket: None,
        servers: (0..n)
            .map(|i| ServerConfig {
                name: format!("s{i}"),
                host: "127.0.0.1".into(),
                port: 5432 + i as u16,
                role: RoleHint::Auto,
                weight: 1,
                priority: 0,
                promote: true,
                pool_size: None,
                socket: None,
            })
            .collect(),
        routing: RoutingConfig {
            balance: Balance::RoundRobin,
            max_replica_lag: None,
            max_replica_lag_bytes: None,
            lag_readmit_after: Duration::from_secs(5),
            lag_alert: None,
            fallback: Fallback::Primary,
            write_functions: vec![],
            classifier_cache_size: 0,
            consistency: crate::config::Consistency::ReadYourWrites,
            causal_timeout: std::time::Duration::from_millis(500),
            causal_wait: false,
        },
        failover: crate::config::FailoverConfig::default(),
        pool: crate::config::PoolConfig::default(),
        tls: crate::config::TlsConfig::default(),
        server_tls: crate::config::ServerTls::default(),
        monitor: MonitorConfig {
            interval: INTERVAL,
            timeout: Duration::from_millis(500),
            healthy_after,
            unhealthy_after,
            user: "mon".into(),
            password: String::new(),
            database: "postgres".into(),
        },
    }
}

fn primary(lsn: u64) -> ProbeResult {
    ProbeResult {
        role: Role::Primary,
        lsn: Some(lsn),
        receive_lsn: None,
        insert_lsn: None,
        lag_seconds: None,
        streaming: false,
        gtid: None,
    }
}

fn replica(replay: u64, seconds: Option<f64>) -> ProbeResult {
    ProbeResult {
        role: Role::Replica,
        lsn: Some(replay),
        receive_lsn: Some(replay),
        insert_lsn: None,
        lag_seconds: seconds,
        streaming: true,
        gtid: None,
    }
}

/// Drives a state with a clock that advances one interval per round.
struct Script {
    st: ClusterState,
    now: Instant,
}

impl Script {
    fn new(n: usize, healthy_after: u32, unhealthy_after: u32) -> Self {
        Script {
            st: ClusterState::new(&cluster(n, healthy_after, unhealthy_after)),
            now: Instant::now(),
        }
    }

    fn round(&mut self, results: Vec<Result<ProbeResult, &str>>) -> RoundUpdate {
        self.now += INTERVAL;
        let obs = results
            .into_iter()
            .map(|r| {
                Some(Observation {
                    at: self.now,
                    result: r.map_err(str::to_owned),
                })
            })
            .collect();
        self.st.apply_round(obs, self.now)
    }

    fn server(&self, i: usize) -> ServerState {
        self.st.snapshot().servers[i].clone()
    }
}

#[test]
fn initial_snapshot_is_all_down_and_unknown() {
    let s = Script::new(2, 2, 2);
    let t = s.st.snapshot();
    assert_eq!(t.epoch, 0);
    assert_eq!(t.cluster, "main");
    assert_eq!(t.servers.len(), 2);
    for (i, srv) in t.servers.iter().enumerate() {
        assert_eq!(srv.index, i);
        assert_eq!(srv.role, Role::Unknown);
        assert_eq!(srv.health, Health::Down);
        assert_eq!(srv.lag, Lag::Unknown);
        assert!(!srv.replicating);
        assert_eq!(srv.checked_at, None);
    }
    assert_eq!(t.servers[1].address, "127.0.0.1:5433");
    assert!(t.primary().is_none());
}

#[test]
fn healthy_after_one_makes_first_good_probe_up() {
    let mut s = Script::new(2, 1, 3);
    let u = s.round(vec![Ok(primary(100)), Ok(replica(100, Some(0.0)))]);
    let t = u.published.expect("published");
    assert_eq!(t.epoch, 1);
    assert_eq!(t.primary().map(|p| p.index), Some(0));
    assert_eq!(t.servers[1].role, Role::Replica);
    assert_eq!(
        t.servers[1].lag,
        Lag::Known {
            seconds: 0.0,
            bytes: Some(0)
        }
    );
    assert!(t.servers[1].replicating);
    assert!(u.events.contains(&Event::Health {
        server: "s0".into(),
        from: Health::Down,
        to: Health::Up
    }));
    assert!(u.events.contains(&Event::Role {
        server: "s0".into(),
        from: Role::Unknown,
        to: Role::Primary
    }));
    assert!(u.events.contains(&Event::Epoch { epoch: 1 }));
}

#[test]
fn startup_needs_healthy_after_successes() {
    let mut s = Script::new(1, 3, 1);
    s.round(vec![Ok(primary(1))]);
    assert_eq!(s.server(0).health, Health::Down);
    assert_eq!(s.server(0).role, Role::Unknown);
    s.round(vec![Ok(primary(2))]);
    assert_eq!(s.server(0).health, Health::Down);
    let u = s.round(vec![Ok(primary(3))]);
    assert_eq!(s.server(0).health, Health::Up);
    assert_eq!(s.server(0).role, Role::Primary);
    assert_eq!(u.published.map(|t| t.epoch), Some(1));
}

#[test]
fn failure_in_the_streak_restarts_the_count() {
    let mut s = Script::new(1, 2, 1);
    s.round(vec![Ok(primary(1))]);
    s.round(vec![Err("refused")]);
    s.round(vec![Ok(primary(1))]);
    assert_eq!(s.server(0).health, Health::Down);
    s.round(vec![Ok(primary(1))]);
    assert_eq!(s.server(0).health, Health::Up);
}

#[test]
fn up_to_down_after_unhealthy_after_failures_role_kept_meanwhile() {
    let mut s = Script::new(2, 1, 3);
    s.round(vec![Ok(primary(10)), Ok(replica(10, Some(0.0)))]);
    s.round(vec![Err("timeout"), Err("timeout")]);
    s.round(vec![Err("timeout"), Err("timeout")]);
    for i in 0..2 {
        assert_eq!(s.server(i).health, Health::Up);
    }
    assert_eq!(s.server(0).role, Role::Primary);
    assert_eq!(s.server(1).role, Role::Replica);
    // A failed probe hides the lag and the replication state, though the server is still up.
    assert_eq!(s.server(1).lag, Lag::Unknown);
    assert!(!s.server(1).replicating);
    assert_eq!(s.server(1).last_error.as_deref(), Some("timeout"));
    assert_eq!(s.st.epoch(), 1);

    let u = s.round(vec![Err("timeout"), Err("timeout")]);
    assert_eq!(s.server(0).health, Health::Down);
    assert_eq!(s.server(0).role, Role::Unknown);
    assert_eq!(s.st.epoch(), 2);
    assert!(u.events.contains(&Event::Health {
        server: "s0".into(),
        from: Health::Up,
        to: Health::Down
    }));
    assert!(s.st.snapshot().primary().is_none());
}

#[test]
fn alternating_results_never_flap() {
    let mut s = Script::new(1, 2, 2);
    s.round(vec![Ok(primary(1))]);
    s.round(vec![Ok(primary(1))]);
    assert_eq!(s.server(0).health, Health::Up);
    for _ in 0..10 {
        s.round(vec![Err("x")]);
        assert_eq!(s.server(0).health, Health::Up);
        s.round(vec![Ok(primary(1))]);
        assert_eq!(s.server(0).health, Health::Up);
    }
    assert_eq!(s.st.epoch(), 1);
}

#[test]
fn zero_thresholds_act_as_one() {
    let mut s = Script::new(1, 0, 0);
    s.round(vec![Ok(primary(1))]);
    assert_eq!(s.server(0).health, Health::Up);
    s.round(vec![Err("x")]);
    assert_eq!(s.server(0).health, Health::Down);
}

#[test]
fn lag_bytes_from_the_same_rounds_primary() {
    let mut s = Script::new(3, 1, 3);
    s.round(vec![
        Ok(primary(1000)),
        Ok(replica(400, Some(1.5))),
        Ok(replica(1200, Some(0.0))),
    ]);
    assert_eq!(
        s.server(1).lag,
        Lag::Known {
            seconds: 1.5,
            bytes: Some(600)
        }
    );
    // Replay ahead of the primary's reading (taken slightly earlier): saturates at zero.
    assert_eq!(
        s.server(2).lag,
        Lag::Known {
            seconds: 0.0,
            bytes: Some(0)
        }
    );
    // The primary's probe fails: seconds still known, bytes not.
    s.round(vec![
        Err("refused"),
        Ok(replica(500, Some(2.0))),
        Ok(replica(500, Some(0.0))),
    ]);
    assert_eq!(
        s.server(1).lag,
        Lag::Known {
            seconds: 2.0,
            bytes: None
        }
    );
}

#[test]
fn primary_without_lsn_gives_no_bytes() {
    let mut s = Script::new(2, 1, 1);
    let mut p = primary(0);
    p.lsn = None;
    s.round(vec![Ok(p), Ok(replica(10, Some(0.0)))]);
    assert_eq!(
        s.server(1).lag,
        Lag::Known {
            seconds: 0.0,
            bytes: None
        }
    );
}

#[test]
fn two_probed_primaries_give_no_bytes_and_no_primary() {
    let mut s = Script::new(3, 1, 1);
    s.round(vec![
        Ok(primary(10)),
        Ok(primary(20)),
        Ok(replica(5, Some(0.0))),
    ]);
    assert_eq!(
        s.server(2).lag,
        Lag::Known {
            seconds: 0.0,
            bytes: None
        }
    );
    assert!(s.st.snapshot().primary().is_none());
}

fn with_gtid(mut r: ProbeResult, gtid: &str) -> ProbeResult {
    r.gtid = Some(gtid.into());
    r
}

#[test]
fn gtid_behind_from_the_same_rounds_primary() {
    let mut s = Script::new(4, 1, 3);
    s.round(vec![
        Ok(with_gtid(primary(0), "0-1-100,1-1-20")),
        // Seconds_Behind_Master says 0 but 12 transactions are missing.
        Ok(with_gtid(replica(0, Some(0.0)), "0-1-90,1-1-18")),
        Ok(with_gtid(replica(0, Some(0.0)), "0-1-100,1-1-20")),
        // Malformed position: unknown, not zero.
        Ok(with_gtid(replica(0, Some(0.0)), "garbage")),
    ]);
    assert_eq!(s.server(0).gtid_behind, None);
    assert_eq!(s.server(1).gtid_behind, Some(12));
    assert_eq!(s.server(2).gtid_behind, Some(0));
    assert_eq!(s.server(3).gtid_behind, None);
    // Routing is unchanged: the replica behind by GTID stays healthy on its seconds.
    assert_eq!(s.server(1).state, ReplicaState::Healthy);

    // A change of gtid_behind alone publishes a new snapshot.
    let u = s.round(vec![
        Ok(with_gtid(primary(0), "0-1-100,1-1-20")),
        Ok(with_gtid(replica(0, Some(0.0)), "0-1-100,1-1-20")),
        Ok(with_gtid(replica(0, Some(0.0)), "0-1-100,1-1-20")),
        Ok(with_gtid(replica(0, Some(0.0)), "garbage")),
    ]);
    assert!(u.published.is_some());
    assert_eq!(s.server(1).gtid_behind, Some(0));

    // The primary's probe fails: no comparison this round.
    s.round(vec![
        Err("refused"),
        Ok(with_gtid(replica(0, Some(0.0)), "0-1-90")),
        Ok(with_gtid(replica(0, Some(0.0)), "0-1-90")),
        Ok(with_gtid(replica(0, Some(0.0)), "0-1-90")),
    ]);
    assert_eq!(s.server(1).gtid_behind, None);
}

#[test]
fn no_gtid_on_either_side_gives_no_gtid_behind() {
    let mut s = Script::new(3, 1, 1);
    s.round(vec![
        Ok(primary(10)),
        Ok(with_gtid(replica(5, Some(0.0)), "0-1-1")),
        Ok(replica(5, Some(0.0))),
    ]);
    assert_eq!(s.server(1).gtid_behind, None);
    assert_eq!(s.server(2).gtid_behind, None);
}

#[test]
fn null_seconds_is_unknown_never_zero() {
    let mut s = Script::new(2, 1, 1);
    s.round(vec![Ok(primary(10)), Ok(replica(10, None))]);
    assert_eq!(s.server(1).lag, Lag::Unknown);
    assert!(s.server(1).replicating);
}

#[test]
fn stale_observation_gives_unknown_lag() {
    let mut s = Script::new(2, 1, 3);
    let t0 = s.now;
    let old = t0.checked_sub(INTERVAL * 4).unwrap();
    s.now += INTERVAL;
    let u = s.st.apply_round(
        vec![
            Some(Observation::ok(s.now, primary(10))),
            Some(Observation::ok(old, replica(10, Some(0.0)))),
        ],
        s.now,
    );
    let t = u.published.unwrap();
    assert_eq!(t.servers[1].health, Health::Up);
    assert_eq!(t.servers[1].lag, Lag::Unknown);
    assert!(!t.servers[1].replicating);
}

#[test]
fn unprobed_server_ages_into_unknown_lag() {
    let mut s = Script::new(2, 1, 3);
    s.round(vec![Ok(primary(10)), Ok(replica(10, Some(0.0)))]);
    // Probed in this round? No: data still fresh, but bytes need this round's measurement.
    s.now += INTERVAL;
    s.st.apply_round(vec![Some(Observation::ok(s.now, primary(20))), None], s.now);
    assert_eq!(
        s.server(1).lag,
        Lag::Known {
            seconds: 0.0,
            bytes: None
        }
    );
    for _ in 0..3 {
        s.now += INTERVAL;
        s.st.apply_round(vec![Some(Observation::ok(s.now, primary(20))), None], s.now);
    }
    assert_eq!(s.server(1).lag, Lag::Unknown);
    assert_eq!(s.server(1).health, Health::Up);
}

#[test]
fn publishes_only_on_change() {
    let mut s = Script::new(2, 1, 1);
    assert!(s
        .round(vec![Ok(primary(10)), Ok(replica(10, Some(0.0)))])
        .published
        .is_some());
    // Same values, later timestamps: nothing to publish, no events.
    let u = s.round(vec![Ok(primary(10)), Ok(replica(10, Some(0.0)))]);
    assert!(u.published.is_none());
    assert!(u.events.is_empty());
    // Lag values changing count as a change, without an epoch bump.
    let u = s.round(vec![Ok(primary(30)), Ok(replica(10, Some(0.5)))]);
    let t = u.published.unwrap();
    assert_eq!(t.epoch, 1);
    assert_eq!(
        t.servers[1].lag,
        Lag::Known {
            seconds: 0.5,
            bytes: Some(20)
        }
    );
    // checked_at tracks the last good probe in the state even when not republished.
    assert!(t.servers[0].checked_at.is_some());
}

#[test]
fn failover_bumps_epoch_on_each_role_set_change() {
    let mut s = Script::new(2, 1, 1);
    s.round(vec![Ok(primary(10)), Ok(replica(10, Some(0.0)))]);
    assert_eq!(s.st.epoch(), 1);
    // Old primary dies: role set changes (s0 -> unknown).
    s.round(vec![Err("refused"), Ok(replica(10, Some(0.0)))]);
    assert_eq!(s.st.epoch(), 2);
    // Replica promoted.
    let u = s.round(vec![Err("refused"), Ok(primary(11))]);
    assert_eq!(s.st.epoch(), 3);
    assert!(u.events.contains(&Event::Role {
        server: "s1".into(),
        from: Role::Replica,
        to: Role::Primary
    }));
    assert_eq!(s.st.snapshot().primary().map(|p| p.index), Some(1));
    // Old primary comes back as a replica.
    s.round(vec![Ok(replica(11, Some(0.0))), Ok(primary(11))]);
    assert_eq!(s.st.epoch(), 4);
    assert_eq!(s.server(0).role, Role::Replica);
}

#[test]
fn last_error_cleared_by_success() {
    let mut s = Script::new(1, 1, 5);
    s.round(vec![Ok(primary(1))]);
    let u = s.round(vec![Err("connect failed: refused")]);
    assert_eq!(
        u.published.unwrap().servers[0].last_error.as_deref(),
        Some("connect failed: refused")
    );
    let u = s.round(vec![Ok(primary(1))]);
    assert_eq!(u.published.unwrap().servers[0].last_error, None);
}

#[test]
fn replica_not_streaming_is_not_replicating() {
    let mut s = Script::new(2, 1, 1);
    let mut r = replica(10, Some(0.0));
    r.streaming = false;
    s.round(vec![Ok(primary(10)), Ok(r)]);
    assert!(!s.server(1).replicating);
    assert_eq!(s.st.snapshot().read_candidates(None, None).count(), 0);
}

#[test]
fn extra_results_are_ignored() {
    let mut s = Script::new(1, 1, 1);
    s.round(vec![Ok(primary(1)), Ok(primary(2))]);
    assert_eq!(s.st.snapshot().servers.len(), 1);
}

#[test]
fn slow_round_does_not_make_early_probes_stale() {
    // Timeout longer than the interval: a round may last ~timeout.
    let mut c = cluster(2, 1, 3);
    c.monitor.timeout = INTERVAL * 5;
    let mut st = ClusterState::new(&c);
    let start = Instant::now();
    let landed = start + INTERVAL * 5;
    st.apply_round(
        vec![
            Some(Observation::ok(start, primary(10))),
            Some(Observation::ok(start, replica(10, Some(0.0)))),
        ],
        landed,
    );
    assert!(matches!(st.snapshot().servers[1].lag, Lag::Known { .. }));
}

/// A 3-server state with `max_replica_lag: 1s`, `lag_readmit_after: 3s` (3 rounds), alert at 5s.
fn lag_script() -> Script {
    let mut c = cluster(3, 1, 2);
    c.routing.max_replica_lag = Some(Duration::from_secs(1));
    c.routing.lag_readmit_after = INTERVAL * 3;
    c.routing.lag_alert = Some(Duration::from_secs(5));
    Script {
        st: ClusterState::new(&c),
        now: Instant::now(),
    }
}

fn state_changes(u: &RoundUpdate, server: &str) -> Vec<(ReplicaState, ReplicaState)> {
    u.events
        .iter()
        .filter_map(|e| match e {
            Event::State {
                server: s,
                from,
                to,
                ..
            } if s == server => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

fn candidates(s: &Script) -> Vec<usize> {
    let t = s.st.snapshot();
    t.read_candidates(Some(Duration::from_secs(1)), None)
        .map(|c| c.index)
        .collect()
}

#[test]
fn initial_states_are_down_then_primary_and_healthy() {
    let mut s = lag_script();
    assert!(s
        .st
        .snapshot()
        .servers
        .iter()
        .all(|x| x.state == ReplicaState::Down && x.state_reason == "not_probed_yet"));
    let u = s.round(vec![
        Ok(primary(100)),
        Ok(replica(100, Some(0.0))),
        Ok(replica(100, Some(0.2))),
    ]);
    assert_eq!(
        state_changes(&u, "s0"),
        vec![(ReplicaState::Down, ReplicaState::Primary)]
    );
    assert_eq!(s.server(1).state, ReplicaState::Healthy);
    assert_eq!(s.server(1).state_reason, "lag_within_limits");
    assert_eq!(candidates(&s), vec![1, 2]);
}

#[test]
fn lagging_replica_leaves_at_once_and_returns_after_the_hold() {
    let mut s = lag_script();
    let ok = |lag: f64| {
        vec![
            Ok(primary(100)),
            Ok(replica(100, Some(lag))),
            Ok(replica(100, Some(0.0))),
        ]
    };
    s.round(ok(0.0));
    let u = s.round(ok(2.5));
    assert_eq!(
        state_changes(&u, "s1"),
        vec![(ReplicaState::Healthy, ReplicaState::Lagging)]
    );
    let t = u.published.unwrap();
    assert_eq!(t.servers[1].state, ReplicaState::Lagging);
    assert_eq!(t.servers[1].state_reason, "lag_over_max_replica_lag");
    assert_eq!(candidates(&s), vec![2]);
    // Oscillating around the limit: stays out, no more changes, yet snapshots follow the lag.
    let mut changes = 0;
    for i in 0..12 {
        let u = s.round(ok(if i % 2 == 0 { 0.5 } else { 1.5 }));
        changes += state_changes(&u, "s1").len();
        assert_eq!(candidates(&s), vec![2], "round {i}");
    }
    assert_eq!(changes, 0);
    // Under the limit for good: readmit_hold for 3 rounds, then healthy.
    for i in 0..3 {
        s.round(ok(0.1));
        assert_eq!(s.server(1).state, ReplicaState::Lagging, "round {i}");
        assert_eq!(s.server(1).state_reason, "readmit_hold");
        assert_eq!(candidates(&s), vec![2]);
    }
    let u = s.round(ok(0.1));
    assert_eq!(
        state_changes(&u, "s1"),
        vec![(ReplicaState::Lagging, ReplicaState::Healthy)]
    );
    assert_eq!(candidates(&s), vec![1, 2]);
}

#[test]
fn failing_probes_make_unknown_then_down_and_no_candidate() {
    let mut s = lag_script();
    s.round(vec![
        Ok(primary(100)),
        Ok(replica(100, Some(0.0))),
        Ok(replica(100, Some(0.0))),
    ]);
    // One failed probe (unhealthy_after = 2): still up, but no fresh lag.
    s.round(vec![
        Ok(primary(100)),
        Err("connect failed: refused"),
        Ok(replica(100, Some(0.0))),
    ]);
    assert_eq!(s.server(1).health, Health::Up);
    assert_eq!(s.server(1).state, ReplicaState::Unknown);
    assert_eq!(s.server(1).state_reason, "no_fresh_measurement");
    assert_eq!(candidates(&s), vec![2]);
    s.round(vec![
        Ok(primary(100)),
        Err("connect failed: refused"),
        Ok(replica(100, Some(0.0))),
    ]);
    assert_eq!(s.server(1).state, ReplicaState::Down);
    assert_eq!(s.server(1).state_reason, "probe_failing");
    assert_eq!(candidates(&s), vec![2]);
}

#[test]
fn broken_replication_and_lag_alert_events() {
    let mut s = lag_script();
    let mut stopped = replica(100, Some(0.0));
    stopped.streaming = false;
    s.round(vec![
        Ok(primary(100)),
        Ok(stopped),
        Ok(replica(100, Some(0.0))),
    ]);
    assert_eq!(s.server(1).state, ReplicaState::Broken);
    assert_eq!(s.server(1).state_reason, "wal_receiver_not_streaming");
    let u = s.round(vec![
        Ok(primary(100)),
        Ok(replica(100, Some(0.0))),
        Ok(replica(100, Some(7.0))),
    ]);
    assert!(u.events.iter().any(|e| matches!(
        e,
        Event::LagAlert { server, raised: true, .. } if server == "s2"
    )));
    assert!(s.server(2).lag_alert);
    assert_eq!(s.server(2).state, ReplicaState::Lagging);
    // The broken replica streams again, but waits out the hold.
    assert_eq!(s.server(1).state, ReplicaState::Broken);
    assert_eq!(s.server(1).state_reason, "readmit_hold");
}
