//! Postern's shared library: configuration, internal protocols, the daemon skeleton and the
//! helpers every daemon uses the same way.

pub mod passwd;
pub mod users;
