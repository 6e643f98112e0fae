//! PostgreSQL protocol v3: frames, startup packets, message views/builders and auth bodies.

pub mod auth;
pub mod frame;
pub mod msg;
pub mod startup;

pub use frame::{Frame, FrameError};
