//! Configuration: raw YAML structs, validation into the typed model, and loading.

pub mod model;
pub mod raw;
pub mod validate;
pub mod values;

pub use model::*;
pub use validate::{load_file, load_str, ConfigError};

#[cfg(test)]
mod tests_server_tls;
