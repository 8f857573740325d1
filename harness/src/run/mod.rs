//! The engine: runs one case's steps against the SUT and yields its
//! verdict. It never prints; reporters consume its events.

pub mod case;
pub mod check;
pub mod link;

pub use case::{RunEnv, run_case};
