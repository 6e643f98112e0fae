//! MySQL/MariaDB client/server protocol, pure (no I/O): packet framing, handshake v10 and
//! HandshakeResponse41, auth switch and password scrambles, OK/ERR/EOF, COM_* commands, and a
//! tracker that tells when a server's answer to one command is complete.
//!
//! Assumes the proxy never negotiates CLIENT_QUERY_ATTRIBUTES, CLIENT_OPTIONAL_RESULTSET_METADATA,
//! CLIENT_COMPRESS or MariaDB's CACHE_METADATA (they change packet layouts handled here).

pub mod auth;
pub mod command;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod resultset;
pub mod status;

pub use packet::{caps, split_packet, Packet, PacketError};

/// Decoding or crypto failure in the MySQL codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unsupported {0}")]
    Unsupported(&'static str),
    #[error("RSA failure: {0}")]
    Rsa(String),
}
