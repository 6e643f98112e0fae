//! MySQL/MariaDB clients: socket and errors, login (handshake + auth), prepared-statement
//! registry, and the relay loop.

pub mod conn;
pub mod login;
pub mod relay;
pub mod stmt;

pub use relay::serve_mysql_client;
