//! Cluster topology: the snapshot model and the probes (the monitor that runs them is `crate::monitor`).

pub mod hysteresis;
pub mod model;
pub mod probe_mysql;
pub mod probe_pg;
pub mod replay_bound;
pub mod replica_state;

pub use model::{Health, Lag, ReplicaState, Role, ServerMode, ServerState, Topology};
