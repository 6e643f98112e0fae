//! Failover: detecting a dead primary, promoting the most advanced replica, repointing the others,
//! fencing former primaries, planned switchover, and holding writes while there is no primary.
//!
//! - [`decide`]: the pure controller (snapshots in, steps out), unit-tested with scripted histories.
//! - [`run`]: the promotion and switchover sequences over [`actions::Actions`].
//! - [`actions_pg`] / [`actions_mysql`]: the actions against real PostgreSQL / MariaDB servers.
//! - [`driver`]: the controller inside each cluster's monitor task; [`driver::FailoverHandle`]
//!   takes operator commands from the admin API.
//! - [`gate`]: the per-cluster write gate a switchover closes to drain and hold writes.

pub mod actions;
pub mod actions_mysql;
pub mod actions_pg;
pub mod decide;
pub mod driver;
pub mod gate;
pub mod run;

pub use driver::FailoverHandle;
pub use gate::WriteGate;
