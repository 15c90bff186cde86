//! Postern's shared library: configuration, internal protocols, the daemon skeleton and the
//! helpers every daemon uses the same way.

pub mod config;
pub mod passwd;
pub mod users;

/// The version every process of one installation must share (checked at child start).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub mod daemon;
pub mod date;
pub mod fsio;
pub mod groupsync;
pub mod listen;
pub mod logging;
pub mod maildir;
pub mod mailstore;
pub mod proto;
pub mod slots;
pub mod smtp;
pub mod stream;
pub mod tls;
