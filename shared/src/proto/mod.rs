//! Internal protocols between Postern's processes, one file each, used by both ends.

pub mod auth;
pub mod queue;
