//! Destination choice: a wanted role x the topology snapshot x the balancing policy -> one server.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use smallvec::SmallVec;

use crate::classify::{Classification, Hint, Intent, Reason, RouteOverride};
use crate::config::{Balance, Fallback, RoutingConfig};
use crate::metrics::{Route, RouteReason};
use crate::topology::Topology;

/// What the session wants for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Must run on the primary.
    Primary(RouteReason),
    /// May run on a replica (falls back per the cluster's policy).
    Replica(RouteReason),
}

/// What a classified statement asks of the router, before the session's own ties (transaction,
/// pin) are applied by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Want(Want),
    /// Any server will do (SET, COMMIT outside a transaction...): reuse the session's last one.
    Anywhere(RouteReason),
}

/// Map a classification, its leading-comment hint and the session's route override to a choice.
/// A primary hint or override always wins for reads; a replica hint or override moves only
/// statements the classifier could not prove read-only (unknown SQL, write functions), never DML,
/// DDL, pins or transaction control.
pub fn choose(class: Classification, route_override: RouteOverride) -> Choice {
    let reason = RouteReason::Class(class.reason);
    let primary_forced =
        class.hint == Some(Hint::Primary) || route_override == RouteOverride::Primary;
    let replica_forced =
        class.hint == Some(Hint::Replica) || route_override == RouteOverride::Replica;
    let forced = if class.hint.is_some() {
        RouteReason::Class(Reason::Hint)
    } else {
        RouteReason::Override
    };
    Choice::Want(match class.intent {
        Intent::Read | Intent::Begin { read_only: true } => {
            if primary_forced {
                Want::Primary(forced)
            } else {
                Want::Replica(reason)
            }
        }
        Intent::Write
            if replica_forced
                && matches!(
                    class.reason,
                    Reason::WriteFunction
                        | Reason::Unknown
                        | Reason::ParseError
                        | Reason::PrimaryState
                ) =>
        {
            Want::Replica(forced)
        }
        Intent::Write | Intent::Pin | Intent::Begin { read_only: false } => Want::Primary(reason),
        Intent::TxnControl | Intent::SessionSet | Intent::ProxyRoute(_) => {
            return Choice::Anywhere(reason)
        }
    })
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index into the cluster's `servers`.
    pub server: usize,
    pub route: Route,
    pub reason: RouteReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no primary server is available")]
    NoPrimary,
    #[error("no replica is available and the cluster's fallback is `error`")]
    NoReplica,
}

/// Per-cluster balancing state shared by all sessions: a round-robin cursor, and per server the
/// connections in use and the sessions waiting in its pools' lines (for `least_connections`).
#[derive(Debug)]
pub struct Balancer {
    cursor: AtomicUsize,
    conns: Vec<AtomicI64>,
    waiting: Vec<AtomicI64>,
}

/// A session in line for one of a server's pooled connections: counted in the server's load
/// until dropped (served, timed out, or the client left).
#[derive(Debug)]
pub struct InLine<'a>(Option<&'a AtomicI64>);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.0 {
            w.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pub use crate::config::MAX_SERVER_SLOTS;

impl Balancer {
    /// Counters for `servers` slots, and room for slots a reload may add up to
    /// [`MAX_SERVER_SLOTS`].
    pub fn new(servers: usize) -> Self {
        let slots = || {
            (0..servers.max(MAX_SERVER_SLOTS))
                .map(|_| AtomicI64::new(0))
                .collect()
        };
        Balancer {
            cursor: AtomicUsize::new(0),
            conns: slots(),
            waiting: slots(),
        }
    }

    /// Count a session waiting in `server`'s pool line until the guard drops. Without it, every
    /// read arriving while all replicas are busy would see them equally loaded and join the
    /// first one's line, while the others' connections freed up with nobody waiting for them.
    pub fn in_line(&self, server: usize) -> InLine<'_> {
        let w = self.waiting.get(server);
        if let Some(w) = w {
            w.fetch_add(1, Ordering::Relaxed);
        }
        InLine(w)
    }

    pub fn connection_opened(&self, server: usize) {
        if let Some(c) = self.conns.get(server) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn connection_closed(&self, server: usize) {
        if let Some(c) = self.conns.get(server) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Connections in use on `server` plus sessions waiting for one of its pooled connections.
    fn load(&self, server: usize) -> i64 {
        let count = |v: &[AtomicI64]| v.get(server).map_or(0, |c| c.load(Ordering::Relaxed));
        count(&self.conns) + count(&self.waiting)
    }

    /// Choose one of `candidates` (server index, weight), by policy and weight. `None` when
    /// there is none. Servers of weight 0 are chosen only when no candidate has a weight.
    pub fn choose(&self, policy: Balance, candidates: &[(usize, u32)]) -> Option<usize> {
        let weighted = candidates.iter().any(|&(_, w)| w > 0);
        let pool = || candidates.iter().filter(move |&&(_, w)| !weighted || w > 0);
        let total: u64 = pool().map(|&(_, w)| u64::from(w.max(1))).sum();
        if total == 0 {
            return None;
        }
        let pick_by_ticket = |ticket: u64| {
            let mut t = ticket % total;
            let mut first = None;
            for &(index, weight) in pool() {
                first = first.or(Some(index));
                let w = u64::from(weight.max(1));
                if t < w {
                    return Some(index);
                }
                t -= w;
            }
            first
        };
        match policy {
            Balance::RoundRobin => {
                let n = self.cursor.fetch_add(1, Ordering::Relaxed) as u64;
                pick_by_ticket(n)
            }
            Balance::Random => pick_by_ticket(rand::random::<u64>()),
            Balance::LeastConnections => pool()
                .min_by(|&&(a, wa), &&(b, wb)| {
                    // Compare load per unit of weight: a/wa < b/wb  <=>  a*wb < b*wa.
                    let la = self.load(a) * i64::from(wb.max(1));
                    let lb = self.load(b) * i64::from(wa.max(1));
                    la.cmp(&lb)
                })
                .map(|&(index, _)| index),
        }
    }
}

/// The replicas a read may go to now (server index, weight): within the lag limits, not in
/// `exclude`, and (weight 0 keeping its meaning: no free alternative to a weighted replica) only
/// the weighted ones when any is.
pub fn read_candidates(
    topo: &Topology,
    routing: &RoutingConfig,
    exclude: &[usize],
) -> SmallVec<[(usize, u32); 8]> {
    let mut all: SmallVec<[(usize, u32); 8]> = topo
        .read_candidates(routing.max_replica_lag, routing.max_replica_lag_bytes)
        .filter(|s| !exclude.contains(&s.index))
        .map(|s| (s.index, s.weight))
        .collect();
    if all.iter().any(|&(_, w)| w > 0) {
        all.retain(|&mut (_, w)| w > 0);
    }
    all
}

/// Decide the destination. `exclude` lists servers this session just found broken. A read goes
/// by the balancing policy among the replicas for which `ready` says a connection is free now,
/// and among all of them only when none is: a read never waits for a busy replica while another
/// has a connection idle. (A read that must wait then waits in every candidate's line at once,
/// see the sessions' `checkout_any`: two lines of waiting clients serve fewer than one line in
/// front of the same servers.) Without pools, `ready` is always true.
pub fn decide_ready(
    want: Want,
    topo: &Topology,
    routing: &RoutingConfig,
    balancer: &Balancer,
    exclude: &[usize],
    ready: impl Fn(usize) -> bool,
) -> Result<Decision, RouteError> {
    let primary = || {
        topo.primary()
            .filter(|p| !exclude.contains(&p.index))
            .map(|p| p.index)
    };
    match want {
        Want::Primary(reason) => primary()
            .map(|server| Decision {
                server,
                route: Route::Primary,
                reason,
            })
            .ok_or(RouteError::NoPrimary),
        Want::Replica(reason) => {
            // Collected once (on the stack): each is asked `ready` once per read.
            let all = read_candidates(topo, routing, exclude);
            let free: SmallVec<[(usize, u32); 8]> =
                all.iter().copied().filter(|&(i, _)| ready(i)).collect();
            let chosen = balancer
                .choose(routing.balance, &free)
                .or_else(|| balancer.choose(routing.balance, &all));
            if let Some(server) = chosen {
                return Ok(Decision {
                    server,
                    route: Route::Replica,
                    reason,
                });
            }
            match routing.fallback {
                Fallback::Error => Err(RouteError::NoReplica),
                Fallback::Primary => primary()
                    .map(|server| Decision {
                        server,
                        route: Route::Primary,
                        reason: RouteReason::NoReplica,
                    })
                    .ok_or(RouteError::NoPrimary),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Reason;
    use crate::topology::{Health, Lag, ReplicaState, Role, ServerState};
    use std::time::Duration;

    /// [`decide_ready`] without pools: every replica can serve at once.
    fn decide(
        want: Want,
        topo: &Topology,
        routing: &RoutingConfig,
        balancer: &Balancer,
        exclude: &[usize],
    ) -> Result<Decision, RouteError> {
        decide_ready(want, topo, routing, balancer, exclude, |_| true)
    }

    fn server(index: usize, role: Role, lag: Lag, weight: u32) -> ServerState {
        ServerState {
            index,
            name: format!("s{index}"),
            address: String::new(),
            role,
            health: Health::Up,
            replicating: role == Role::Replica,
            lag,
            gtid_behind: None,
            weight,
            checked_at: None,
            last_error: None,
            state: if role == Role::Replica {
                ReplicaState::Healthy
            } else {
                ReplicaState::Primary
            },
            state_reason: "test",
            lag_alert: false,
            fenced: false,
            mode: crate::topology::ServerMode::Enabled,
        }
    }

    fn topo(servers: Vec<ServerState>) -> Topology {
        Topology {
            cluster: "c".into(),
            epoch: 1,
            servers,
            failover: "idle",
        }
    }

    fn routing(balance: Balance, fallback: Fallback) -> RoutingConfig {
        RoutingConfig {
            balance,
            max_replica_lag: Some(Duration::from_secs(10)),
            max_replica_lag_bytes: None,
            lag_readmit_after: Duration::from_secs(5),
            lag_alert: None,
            fallback,
            write_functions: vec![],
            classifier_cache_size: 0,
            consistency: crate::config::Consistency::ReadYourWrites,
            causal_timeout: std::time::Duration::from_millis(500),
            causal_wait: false,
        }
    }

    const FRESH: Lag = Lag::Known {
        seconds: 0.0,
        bytes: Some(0),
    };
    const READ: RouteReason = RouteReason::Class(Reason::Read);

    #[test]
    fn round_robin_spreads_reads_over_replicas() {
        let t = topo(vec![
            server(0, Role::Primary, Lag::Unknown, 1),
            server(1, Role::Replica, FRESH, 1),
            server(2, Role::Replica, FRESH, 1),
        ]);
        let b = Balancer::new(3);
        let r = routing(Balance::RoundRobin, Fallback::Primary);
        let picks: Vec<usize> = (0..4)
            .map(|_| decide(Want::Replica(READ), &t, &r, &b, &[]).unwrap().server)
            .collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
    }

    #[test]
    fn a_read_skips_a_replica_whose_pool_is_busy_while_another_is_free() {
        let t = topo(vec![
            server(0, Role::Primary, Lag::Unknown, 1),
            server(1, Role::Replica, FRESH, 1),
            server(2, Role::Replica, FRESH, 1),
            server(3, Role::Replica, FRESH, 0),
        ]);
        let b = Balancer::new(4);
        for policy in [
            Balance::RoundRobin,
            Balance::Random,
            Balance::LeastConnections,
        ] {
            let r = routing(policy, Fallback::Primary);
            let pick = |ready: &dyn Fn(usize) -> bool| {
                decide_ready(Want::Replica(READ), &t, &r, &b, &[], ready)
                    .unwrap()
                    .server
            };
            // Replica 1 busy: every read goes to 2.
            assert!((0..6).all(|_| pick(&|i| i != 1) == 2), "{policy:?}");
            // Both weighted replicas busy: the weight-0 one stays a last resort, and the
            // policy spreads reads over the busy ones (they wait in their lines).
            let busy: Vec<usize> = (0..6).map(|_| pick(&|i| i == 3)).collect();
            assert!(
                busy.iter().all(|&s| s == 1 || s == 2),
                "{policy:?} {busy:?}"
            );
            // All free: the policy as without pools.
            assert!(
                (0..6).all(|_| matches!(pick(&|_| true), 1 | 2)),
                "{policy:?}"
            );
        }
        let r = routing(Balance::RoundRobin, Fallback::Primary);
        let picks: Vec<usize> = (0..4)
            .map(|_| {
                decide_ready(Want::Replica(READ), &t, &r, &b, &[], |i| i != 3)
                    .unwrap()
                    .server
            })
            .collect();
        assert!(picks.contains(&1) && picks.contains(&2), "{picks:?}");
    }

    #[test]
    fn weights_are_respected() {
        let t = topo(vec![
            server(0, Role::Primary, Lag::Unknown, 1),
            server(1, Role::Replica, FRESH, 3),
            server(2, Role::Replica, FRESH, 1),
        ]);
        let b = Balancer::new(3);
        let r = routing(Balance::RoundRobin, Fallback::Primary);
        let ones = (0..8)
            .filter(|_| decide(Want::Replica(READ), &t, &r, &b, &[]).unwrap().server == 1)
            .count();
        assert_eq!(ones, 6);
    }

    #[test]
    fn zero_weight_replicas_take_reads_only_when_no_other_can() {
        let r = routing(Balance::RoundRobin, Fallback::Primary);
        let b = Balancer::new(3);
        let mixed = topo(vec![
            server(0, Role::Primary, Lag::Unknown, 1),
            server(1, Role::Replica, FRESH, 0),
            server(2, Role::Replica, FRESH, 2),
        ]);
        for _ in 0..6 {
            assert_eq!(
                decide(Want::Replica(READ), &mixed, &r, &b, &[])
                    .unwrap()
                    .server,
                2
            );
        }
        let zeros = topo(vec![
            server(0, Role::Primary, Lag::Unknown, 1),
            server(1, Role::Replica, FRESH, 0),
            server(2, Role::Replica, FRESH, 0),
        ]);
        let picks: Vec<usize> = (0..4)
            .map(|_| {
                decide(Want::Replica(READ), &zeros, &r, &b, &[])
                    .unwrap()
                    .server
            })
            .collect();
        assert!(picks.contains(&1) && picks.contains(&2), "{picks:?}");
        let lc = routing(Balance::LeastConnections, Fallback::Primary);
        assert_eq!(
            decide(Want::Replica(READ), &mixed, &lc, &b, &[])
                .unwrap()
                .server,
            2
        );
    }

    #[test]
    fn lagging_unknown_and_down_replicas_are_skipped() {
        let mut down = server(3, Role::Replica, FRESH, 1);
        down.health = Health::Down;
        let t = topo(vec![
            server(0, Role::Primary, Lag::Unknown, 1),
            server(
                1,
                Role::Replica,
                Lag::Known {
                    seconds: 99.0,
                    bytes: None,
                },
                1,
            ),
            server(2, Role::Replica, Lag::Unknown, 1),
            down,
        ]);
        let b = Balancer::new(4);
        let d = decide(
            Want::Replica(READ),
            &t,
            &routing(Balance::RoundRobin, Fallback::Primary),
            &b,
            &[],
        )
        .unwrap();
        assert_eq!(
            (d.server, d.route, d.reason),
            (0, Route::Primary, RouteReason::NoReplica)
        );
        assert_eq!(
            decide(
                Want::Replica(READ),
                &t,
                &routing(Balance::RoundRobin, Fallback::Error),
                &b,
                &[]
            ),
            Err(RouteError::NoReplica)
        );
    }

    #[test]
    fn only_replicas_in_state_healthy_take_reads() {
        // Fresh lag, up and streaming, but the monitor's hysteresis has not (re)admitted them.
        let mut servers = vec![server(0, Role::Primary, Lag::Unknown, 1)];
        for (i, st) in [
            ReplicaState::Lagging,
            ReplicaState::Unknown,
            ReplicaState::Broken,
            ReplicaState::Down,
        ]
        .into_iter()
        .enumerate()
        {
            let mut s = server(i + 1, Role::Replica, FRESH, 1);
            s.state = st;
            servers.push(s);
        }
        let r = routing(Balance::RoundRobin, Fallback::Primary);
        let b = Balancer::new(6);
        let d = decide(Want::Replica(READ), &topo(servers.clone()), &r, &b, &[]).unwrap();
        assert_eq!((d.server, d.route), (0, Route::Primary));
        servers.push(server(5, Role::Replica, FRESH, 1));
        for _ in 0..4 {
            let d = decide(Want::Replica(READ), &topo(servers.clone()), &r, &b, &[]).unwrap();
            assert_eq!((d.server, d.route), (5, Route::Replica));
        }
    }

    #[test]
    fn least_connections_and_exclusion() {
        let t = topo(vec![
            server(0, Role::Primary, Lag::Unknown, 1),
            server(1, Role::Replica, FRESH, 1),
            server(2, Role::Replica, FRESH, 1),
        ]);
        let b = Balancer::new(3);
        b.connection_opened(1);
        let r = routing(Balance::LeastConnections, Fallback::Primary);
        assert_eq!(
            decide(Want::Replica(READ), &t, &r, &b, &[]).unwrap().server,
            2
        );
        assert_eq!(
            decide(Want::Replica(READ), &t, &r, &b, &[2])
                .unwrap()
                .server,
            1
        );
        b.connection_closed(1);
        let rnd = routing(Balance::Random, Fallback::Primary);
        let s = decide(Want::Replica(READ), &t, &rnd, &b, &[])
            .unwrap()
            .server;
        assert!(s == 1 || s == 2);
    }

    #[test]
    fn least_connections_counts_sessions_waiting_in_line() {
        let t = topo(vec![
            server(0, Role::Primary, Lag::Unknown, 1),
            server(1, Role::Replica, FRESH, 1),
            server(2, Role::Replica, FRESH, 1),
        ]);
        let b = Balancer::new(3);
        let r = routing(Balance::LeastConnections, Fallback::Primary);
        b.connection_opened(1);
        b.connection_opened(2);
        let busy = |_: usize| false;
        let next = || {
            decide_ready(Want::Replica(READ), &t, &r, &b, &[], busy)
                .unwrap()
                .server
        };
        // Both replicas busy and nobody waiting: the first one.
        assert_eq!(next(), 1);
        // One session waits for replica 1: the next one joins replica 2's line, and so on.
        let first = b.in_line(1);
        assert_eq!(next(), 2);
        let second = b.in_line(2);
        assert_eq!(next(), 1);
        // Leaving the line (served, timed out or gone) takes the session off the load.
        drop(first);
        drop(second);
        assert_eq!(next(), 1);
        b.connection_closed(1);
        b.connection_closed(2);
        assert_eq!(b.load(1) + b.load(2), 0);
    }

    #[test]
    fn writes_need_a_single_primary() {
        let w = Want::Primary(RouteReason::Class(Reason::Write));
        let r = routing(Balance::RoundRobin, Fallback::Primary);
        let b = Balancer::new(3);
        let t = topo(vec![server(1, Role::Replica, FRESH, 1)]);
        assert_eq!(decide(w, &t, &r, &b, &[]), Err(RouteError::NoPrimary));
        let two = topo(vec![
            server(0, Role::Primary, Lag::Unknown, 1),
            server(1, Role::Primary, Lag::Unknown, 1),
        ]);
        assert_eq!(decide(w, &two, &r, &b, &[]), Err(RouteError::NoPrimary));
        let one = topo(vec![server(0, Role::Primary, Lag::Unknown, 1)]);
        assert_eq!(decide(w, &one, &r, &b, &[]).unwrap().server, 0);
    }

    fn class(intent: Intent, reason: Reason, hint: Option<Hint>) -> Classification {
        Classification {
            intent,
            reason,
            hint,
        }
    }

    #[test]
    fn choose_applies_hints_and_overrides_only_where_safe() {
        let auto = RouteOverride::Auto;
        assert_eq!(
            choose(class(Intent::Read, Reason::Read, None), auto),
            Choice::Want(Want::Replica(READ))
        );
        assert_eq!(
            choose(class(Intent::Read, Reason::Read, Some(Hint::Primary)), auto),
            Choice::Want(Want::Primary(RouteReason::Class(Reason::Hint)))
        );
        assert_eq!(
            choose(
                class(Intent::Read, Reason::Read, None),
                RouteOverride::Primary
            ),
            Choice::Want(Want::Primary(RouteReason::Override))
        );
        assert_eq!(
            choose(
                class(Intent::Write, Reason::WriteFunction, Some(Hint::Replica)),
                auto
            ),
            Choice::Want(Want::Replica(RouteReason::Class(Reason::Hint)))
        );
        // A replica hint never moves real writes, pins or transactions.
        for (intent, reason) in [
            (Intent::Write, Reason::Write),
            (Intent::Write, Reason::Ddl),
            (Intent::Pin, Reason::TempTable),
            (Intent::Begin { read_only: false }, Reason::Transaction),
        ] {
            assert!(matches!(
                choose(
                    class(intent, reason, Some(Hint::Replica)),
                    RouteOverride::Replica
                ),
                Choice::Want(Want::Primary(_))
            ));
        }
        assert_eq!(
            choose(class(Intent::SessionSet, Reason::Session, None), auto),
            Choice::Anywhere(RouteReason::Class(Reason::Session))
        );
        assert_eq!(
            choose(
                class(Intent::Begin { read_only: true }, Reason::Transaction, None),
                auto
            ),
            Choice::Want(Want::Replica(RouteReason::Class(Reason::Transaction)))
        );
    }
}
