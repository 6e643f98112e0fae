//! PostgreSQL clients: login (startup + auth), the pure session state, and the relay loop.

pub mod cancel;
pub mod console;
pub mod login;
pub mod relay;
pub mod session;
pub mod state;

pub use session::serve_client;
