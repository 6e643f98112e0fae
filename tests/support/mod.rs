//! Shared end-to-end test support: real PostgreSQL and MariaDB clusters, the proxy binary, a tiny
//! HTTP client.
//!
//! Use from an integration test with `mod support;`. Not every test binary uses every helper.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_imports)]

pub mod http;
pub mod link;
pub mod mysql_cluster;
pub mod pg_cluster;
pub mod pg_raw;
pub mod proxy;

pub use http::{http_get, http_post, http_request, try_http_get};
pub use link::Link;
pub use mysql_cluster::{
    shared_mysql, MariaDbCluster, MYSQL_APP_PASSWORD, MYSQL_APP_USER, MYSQL_MONITOR_PASSWORD,
    MYSQL_MONITOR_USER, MYSQL_ROOT_PASSWORD,
};
pub use pg_cluster::{free_port, free_ports, shared, PgCluster};
pub use proxy::{my_app_opts, pg_conn_str, simple_first_row, simple_value, Proxy, ProxyPorts};
