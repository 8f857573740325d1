//! Transports: the code that puts [`crate::message::Message`]s on the wire.
//! One file per transport; each is the only importer of its client crate.

pub mod amqp;
pub mod mqtt;
