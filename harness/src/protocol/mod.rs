//! Protocol plugins: what is specific to one protocol (its broker
//! topology, message kinds and oracles), on top of a transport.

pub mod ability;
pub mod dmf;
