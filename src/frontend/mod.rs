//! Client side of the proxy: one task per client connection, per protocol.

pub mod causal;
pub mod lines;
pub mod mysql;
pub mod pg;
pub mod slots;
