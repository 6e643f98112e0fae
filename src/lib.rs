//! Switchyard: a read/write-splitting proxy for PostgreSQL and MySQL/MariaDB.
//!
//! Map of the modules:
//! - [`config`]: YAML -> validated typed [`config::Config`]; every error names its YAML path.
//! - [`wire`]: pure protocol codecs (PostgreSQL v3 and MySQL packets, handshakes, auth bodies).
//! - [`classify`]: SQL text -> [`classify::Classification`], failing closed, with a decision cache.
//! - [`router`]: classification x session state x topology snapshot -> target server.
//! - [`topology`]: snapshot model and probes.
//! - [`monitor`]: the per-cluster task that probes, publishes snapshots and drives failover.
//! - [`position`]: replication positions (LSNs, GTID lists) and what sessions know of them.
//! - [`backend`]: connect and authenticate to a server, relay responses to their end.
//! - [`frontend`]: one task per client connection (PostgreSQL, MySQL), the session state machines.
//! - [`pool`]: bounded, fair server connection pools for transaction pooling.
//! - [`failover`]: detect a dead primary, promote a replica, repoint the others, fence the old one.
//! - [`reload`]: re-read, validate and apply the config file while serving.
//! - [`listener`], [`maybe_tls`], [`tls`], [`tls_binding`]: client listeners (TCP, Unix socket),
//!   the streams before and after TLS, rustls setup and SCRAM channel binding.
//! - [`admin`]: HTTP `/metrics`, `/health`, `/ready`, `/api/clusters`.
//! - [`metrics`]: the typed Prometheus registry.
//! - [`drain`]: the SIGTERM drain as idle sessions wait for it.
//! - [`busy_poll`]: `--busy-poll`, polling instead of sleeping after a request at low load.
//! - [`app`]: builds the shared state, spawns listeners, monitor and admin, owns shutdown.

pub mod admin;
pub mod app;
pub mod backend;
pub mod busy_poll;
pub mod classify;
pub mod config;
pub mod drain;
pub mod failover;
pub mod frontend;
pub mod listener;
pub mod maybe_tls;
pub mod metrics;
pub mod monitor;
pub mod pool;
pub mod position;
pub mod reload;
pub mod router;
pub mod tls;
pub mod tls_binding;
pub mod topology;
pub mod wire;
