//! Cluster topology: the snapshot model, the probes and the monitor that publishes snapshots.

pub mod hysteresis;
pub mod model;
pub mod monitor;
pub mod positions;
pub mod probe_mysql;
pub mod probe_pg;
pub mod replay_bound;
pub mod replica_state;

pub use model::{Health, Lag, ReplicaState, Role, ServerMode, ServerState, Topology};
