//! Pure protocol codecs (no I/O): framing, startup packets, message views and builders.

pub mod mysql;
pub mod pg;
