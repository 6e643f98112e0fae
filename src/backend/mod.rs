//! Server side of the proxy: connect and authenticate to a server, read its frames.

pub mod mysql;
pub mod pg;

pub use pg::{BackendConn, BackendError};
