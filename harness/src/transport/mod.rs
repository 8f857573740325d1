//! Transports: the code that puts [`crate::message::Message`]s on the wire.
//! One file per transport; each is the only importer of its client crate.

pub mod amqp;
pub mod mqtt;

/// Why a broker operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TransportError {
    /// The broker answered and refused: what was named does not exist,
    /// or may not be used that way. When the SUT named it, that is the
    /// SUT's failure.
    #[error("{0}")]
    Refused(String),
    /// The broker could not be reached, or did not answer in time: the
    /// harness's trouble, never the SUT's.
    #[error("{0}")]
    Unavailable(String),
}

impl From<TransportError> for String {
    fn from(e: TransportError) -> String {
        e.to_string()
    }
}
