//! Server side of the proxy: connect (plain or TLS) and authenticate to a server, read its frames.

pub mod mysql;
pub mod pg;
pub mod stream;

pub use pg::{BackendConn, BackendError};
pub use stream::{ServerStream, ServerTlsTarget};
