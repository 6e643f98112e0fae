//! Scripted probe histories for the failover controller.

use super::*;
use crate::config::FailoverConfig;
use crate::topology::{Lag, ReplicaState};

const P: (Role, Health, bool) = (Role::Primary, Health::Up, false);
const R: (Role, Health, bool) = (Role::Replica, Health::Up, true);
/// A replica that lost its upstream.
const ORPHAN: (Role, Health, bool) = (Role::Replica, Health::Up, false);
const DOWN: (Role, Health, bool) = (Role::Unknown, Health::Down, false);

fn cluster(mode: FailoverMode, promote: &[bool]) -> ClusterConfig {
    let mut c = crate::config::load_str(
        "clusters:\n  - name: c\n    listen: 127.0.0.1:1\n    servers:\n      - {name: s0, address: 127.0.0.1:10}\n      - {name: s1, address: 127.0.0.1:11}\n      - {name: s2, address: 127.0.0.1:12}\n    monitor: {user: m, password: p}\nusers:\n  - {name: u, password: p}\n",
    )
    .expect("config")
    .clusters
    .remove(0);
    c.failover = FailoverConfig {
        mode,
        ..FailoverConfig::default()
    };
    for (s, p) in c.servers.iter_mut().zip(promote) {
        s.promote = *p;
    }
    c
}

fn topo(states: &[(Role, Health, bool)]) -> Topology {
    Topology {
        cluster: "c".into(),
        epoch: 1,
        servers: states
            .iter()
            .enumerate()
            .map(|(index, &(role, health, replicating))| ServerState {
                index,
                name: format!("s{index}"),
                address: String::new(),
                role,
                health,
                replicating,
                lag: Lag::Unknown,
                gtid_behind: None,
                weight: 1,
                checked_at: None,
                last_error: None,
                state: ReplicaState::Unknown,
                state_reason: "test",
                lag_alert: false,
                fenced: false,
                mode: crate::topology::ServerMode::Enabled,
            })
            .collect(),
        failover: "idle",
    }
}

fn auto() -> Controller {
    Controller::new(&cluster(FailoverMode::Auto, &[true, true, true]))
}

fn started(mut c: Controller, now: Instant) -> Controller {
    let steps = c.on_round(&topo(&[P, R, R]), now);
    assert_eq!(steps, vec![Step::Followed { from: None, to: 0 }]);
    c
}

fn promotes(steps: &[Step]) -> bool {
    steps.iter().any(|s| matches!(s, Step::Promote { .. }))
}

#[test]
fn follows_the_unique_primary_at_start_and_stays_quiet() {
    let now = Instant::now();
    let mut c = started(auto(), now);
    for _ in 0..5 {
        assert!(c.on_round(&topo(&[P, R, R]), now).is_empty());
    }
    assert_eq!(c.known_primary(), Some(0));
    assert_eq!(c.phase(), "idle");
}

#[test]
fn a_blip_between_proxy_and_primary_does_not_promote() {
    let now = Instant::now();
    let mut c = started(auto(), now);
    // The proxy lost the primary, but both replicas still stream from it.
    let steps = c.on_round(&topo(&[DOWN, R, R]), now);
    assert_eq!(steps, vec![Step::Note(Note::UnreachableButReplicated(0))]);
    assert_eq!(c.phase(), "primary_unreachable");
    // One replica confirming is not enough while the other still streams.
    assert!(c.on_round(&topo(&[DOWN, ORPHAN, R]), now).is_empty());
    assert!(!promotes(&c.on_round(&topo(&[DOWN, ORPHAN, R]), now)));
    // Back: nothing to do, no fence.
    assert!(c.on_round(&topo(&[P, R, R]), now).is_empty());
    assert_eq!(c.phase(), "idle");
    assert!(!c.is_fenced(0));
}

#[test]
fn flapping_primary_with_streaming_replicas_never_promotes() {
    let now = Instant::now();
    let mut c = started(auto(), now);
    for i in 0..20 {
        let t = if i % 2 == 0 {
            topo(&[DOWN, R, R])
        } else {
            topo(&[P, R, R])
        };
        assert!(!promotes(&c.on_round(&t, now)));
    }
    assert_eq!(c.known_primary(), Some(0));
}

#[test]
fn confirmed_failure_fences_then_promotes_in_auto_mode() {
    let now = Instant::now();
    let mut c = Controller::new(&cluster(FailoverMode::Auto, &[true, false, true]));
    c = started(c, now);
    let steps = c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), now);
    assert_eq!(
        steps,
        vec![
            Step::Note(Note::PrimaryFailed(0)),
            Step::Fence {
                server: 0,
                reason: "failed_primary"
            },
            Step::Promote {
                failed: 0,
                candidates: vec![2],
                others: vec![1, 2],
            },
        ]
    );
    assert_eq!(c.phase(), "promoting");
    // Nothing is decided while the promotion runs.
    assert!(c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), now).is_empty());
    let steps = c.on_promoted(
        &PromoteOutcome {
            promoted: Some(2),
            error: None,
        },
        now,
    );
    assert_eq!(
        steps,
        vec![Step::Followed {
            from: Some(0),
            to: 2
        }]
    );
    // Before the probes see the promotion, and after.
    assert!(c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), now).is_empty());
    assert!(c.on_round(&topo(&[DOWN, R, P]), now).is_empty());
    assert_eq!(c.phase(), "idle");
}

#[test]
fn a_former_primary_coming_back_is_fenced_until_it_replicates() {
    let now = Instant::now();
    let mut c = started(auto(), now);
    c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), now);
    c.on_promoted(
        &PromoteOutcome {
            promoted: Some(1),
            error: None,
        },
        now,
    );
    // The old primary restarts, still believing it is the primary: fenced, made read-only once.
    let back = topo(&[P, P, R]);
    assert_eq!(
        c.on_round(&back, now),
        vec![Step::ActiveFence { server: 0 }]
    );
    assert!(
        c.on_round(&back, now).is_empty(),
        "one active fence per comeback"
    );
    assert!(c.is_fenced(0));
    // Down and back again: fenced actively again.
    assert!(c.on_round(&topo(&[DOWN, P, R]), now).is_empty());
    assert_eq!(
        c.on_round(&back, now),
        vec![Step::ActiveFence { server: 0 }]
    );
    // An operator rebuilt it as a replica of the new primary: the fence lifts.
    assert_eq!(
        c.on_round(&topo(&[R, P, R]), now),
        vec![Step::Unfence {
            server: 0,
            reason: "replicating_again"
        }]
    );
    assert!(!c.is_fenced(0));
}

#[test]
fn follow_mode_waits_for_an_external_promotion_and_fences_the_old_primary() {
    let now = Instant::now();
    let mut c = started(
        Controller::new(&cluster(FailoverMode::Follow, &[true, true, true])),
        now,
    );
    let steps = c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), now);
    assert_eq!(steps, vec![Step::Note(Note::PrimaryFailed(0))]);
    assert!(c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), now).is_empty());
    // Patroni (say) promoted s1.
    let steps = c.on_round(&topo(&[DOWN, P, ORPHAN]), now);
    assert_eq!(
        steps,
        vec![
            Step::Fence {
                server: 0,
                reason: "former_primary"
            },
            Step::Followed {
                from: Some(0),
                to: 1
            },
        ]
    );
    // The old primary back as a writer: fenced, but follow mode never touches servers.
    assert!(c.on_round(&topo(&[P, P, R]), now).is_empty());
    assert!(c.is_fenced(0));
}

#[test]
fn follow_mode_switchover_by_an_external_tool_does_not_fence_a_demoted_primary() {
    let now = Instant::now();
    let mut c = started(
        Controller::new(&cluster(FailoverMode::Follow, &[true, true, true])),
        now,
    );
    // The tool demoted s0 (now streaming from s1) and promoted s1.
    let steps = c.on_round(&topo(&[R, P, R]), now);
    assert_eq!(
        steps,
        vec![Step::Followed {
            from: Some(0),
            to: 1
        }]
    );
    assert!(!c.is_fenced(0));
}

#[test]
fn off_mode_reports_only() {
    let now = Instant::now();
    let mut c = started(
        Controller::new(&cluster(FailoverMode::Off, &[true, true, true])),
        now,
    );
    let steps = c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), now);
    assert_eq!(steps, vec![Step::Note(Note::PrimaryFailed(0))]);
    assert!(!c.is_fenced(0));
    assert_eq!(c.phase(), "primary_failed");
}

#[test]
fn two_writers_get_no_writes_until_one_goes() {
    let now = Instant::now();
    let mut c = started(auto(), now);
    let steps = c.on_round(&topo(&[P, P, R]), now);
    assert_eq!(steps, vec![Step::Note(Note::SplitBrain(vec![0, 1]))]);
    assert_eq!(c.phase(), "split_brain");
    assert!(c.on_round(&topo(&[P, P, R]), now).is_empty(), "noted once");
    assert!(
        topo(&[P, P, R]).primary().is_none(),
        "routing has no primary"
    );
    // s0 goes away: s1 is the one writer left, s0 is fenced as a former primary.
    let steps = c.on_round(&topo(&[DOWN, P, R]), now);
    assert_eq!(
        steps,
        vec![
            Step::Note(Note::SplitBrainOver),
            Step::Fence {
                server: 0,
                reason: "former_primary"
            },
            Step::Followed {
                from: Some(0),
                to: 1
            },
        ]
    );
    assert_eq!(c.phase(), "idle");
}

#[test]
fn two_writers_at_start_are_never_followed() {
    let now = Instant::now();
    let mut c = auto();
    let steps = c.on_round(&topo(&[P, P, R]), now);
    assert_eq!(steps, vec![Step::Note(Note::SplitBrain(vec![0, 1]))]);
    assert_eq!(c.known_primary(), None);
    // An operator fences s0: s1 is followed, s0 made read-only (auto mode).
    c.operator_fence(0, true);
    let steps = c.on_round(&topo(&[P, P, R]), now);
    assert_eq!(
        steps,
        vec![
            Step::ActiveFence { server: 0 },
            Step::Note(Note::SplitBrainOver),
            Step::Followed { from: None, to: 1 }
        ]
    );
}

#[test]
fn no_candidates_means_no_promotion() {
    let now = Instant::now();
    let mut c = started(
        Controller::new(&cluster(FailoverMode::Auto, &[true, false, false])),
        now,
    );
    let steps = c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), now);
    assert_eq!(steps, vec![Step::Note(Note::NoCandidate(0))]);
    assert_eq!(c.phase(), "no_candidate");
    // Every replica down as well.
    let mut c = started(auto(), now);
    let steps = c.on_round(&topo(&[DOWN, DOWN, DOWN]), now);
    assert_eq!(steps, vec![Step::Note(Note::NoCandidate(0))]);
    assert!(!c.is_fenced(0));
}

#[test]
fn a_failed_promotion_unfences_and_retries_after_a_pause() {
    let t0 = Instant::now();
    let mut c = started(auto(), t0);
    assert!(promotes(&c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), t0)));
    let steps = c.on_promoted(
        &PromoteOutcome {
            promoted: None,
            error: Some("boom".into()),
        },
        t0,
    );
    assert_eq!(
        steps,
        vec![Step::Unfence {
            server: 0,
            reason: "promotion_failed"
        }]
    );
    assert!(!promotes(&c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), t0)));
    let later = t0 + Duration::from_secs(6);
    assert!(promotes(&c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), later)));
}

#[test]
fn switchover_rules() {
    let now = Instant::now();
    let t = topo(&[P, R, ORPHAN]);
    let mut follow = started(
        Controller::new(&cluster(FailoverMode::Follow, &[true, true, true])),
        now,
    );
    assert!(follow.begin_switchover(&t, None).is_err());

    let mut c = started(
        Controller::new(&cluster(FailoverMode::Auto, &[true, true, true])),
        now,
    );
    // A replica that does not stream cannot be the target.
    assert!(c.begin_switchover(&t, Some(2)).is_err());
    assert!(c.begin_switchover(&t, Some(0)).is_err());
    assert_eq!(c.begin_switchover(&t, None), Ok((0, vec![1])));
    assert_eq!(c.phase(), "switchover");
    assert!(c.begin_switchover(&t, None).is_err(), "one at a time");
    assert!(c.on_round(&topo(&[DOWN, ORPHAN, ORPHAN]), now).is_empty());
    let steps = c.end_switchover(Some(1), false);
    assert_eq!(
        steps,
        vec![
            Step::Fence {
                server: 0,
                reason: "former_primary"
            },
            Step::Followed {
                from: Some(0),
                to: 1
            },
        ]
    );
    // Aborted switchover: nothing changes.
    let mut c = started(auto(), now);
    c.begin_switchover(&t, Some(1)).expect("begin");
    assert!(c.end_switchover(None, false).is_empty());
    assert_eq!(c.known_primary(), Some(0));
    assert!(!c.is_fenced(0));
}
