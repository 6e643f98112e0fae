//! One line for the replicas: a read that finds no pooled connection free on its replica waits in
//! the lines of every replica it may use and takes the first connection served (both protocols).

use std::sync::Arc;

use smallvec::SmallVec;

use crate::config::{Consistency, RoutingConfig};
use crate::pool::{checkout_first, Checked, Pool};
use crate::router::{read_candidates, Balancer};
use crate::topology::Topology;

/// The replicas besides `first` a read may take a pooled connection from: within the lag
/// limits, not in `excluded`, and none the session holds a connection to (`held`).
pub fn mates(
    topo: &Topology,
    routing: &RoutingConfig,
    excluded: &[usize],
    first: usize,
    held: impl Fn(usize) -> bool,
) -> SmallVec<[usize; 4]> {
    read_candidates(topo, routing, excluded)
        .iter()
        .map(|&(i, _)| i)
        .filter(|&i| i != first && !held(i))
        .collect()
}

/// The servers whose lines a checkout waits in (`first`, then `others`) and their pools
/// (`pool` looks one up).
pub type Lines<C> = (SmallVec<[usize; 4]>, SmallVec<[Arc<Pool<C>>; 4]>);

pub fn gather<C: Send + 'static>(
    first: usize,
    others: &[usize],
    pool: impl FnMut(usize) -> Arc<Pool<C>>,
) -> Lines<C> {
    let servers: SmallVec<[usize; 4]> = std::iter::once(first)
        .chain(others.iter().copied())
        .collect();
    let pools = servers.iter().copied().map(pool).collect();
    (servers, pools)
}

/// Whether a session's read may go to another replica than the one its causal check vouched
/// for: always with eventual consistency, with read-your-writes only before any write.
pub fn any_replica_will_do(consistency: Consistency, wrote: bool, has_position: bool) -> bool {
    consistency == Consistency::Eventual || (!wrote && !has_position)
}

/// Wait in the lines of `pools` (those of `servers`, in order) and take the first checkout
/// served: its index and what it came to. Each server counts the wait in its load
/// (least_connections) meanwhile.
pub async fn wait<C: Send + 'static>(
    balancer: &Balancer,
    servers: &[usize],
    pools: &[Arc<Pool<C>>],
) -> (usize, Checked<C>) {
    let _in_line: SmallVec<[_; 4]> = servers.iter().map(|&s| balancer.in_line(s)).collect();
    match pools {
        [one] => (0, one.checkout().await),
        all => checkout_first(all).await,
    }
}
