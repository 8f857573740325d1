//! What stops the harness itself, kept apart from what the SUT did
//! wrong. A SUT's failure is a verdict ([`crate::event::Failure`]), never
//! one of these. Each kind has its exit status: a broken suite is the
//! suite author's to fix (2); anything else that keeps the harness from
//! judging (a profile it cannot use, schemas, a broker that does not come
//! up or stops answering) is the environment's (3).

use crate::transport::TransportError;

/// Exit status of a run where every case passed.
pub const EXIT_PASSED: u8 = 0;
/// Exit status when a suite file is broken: nothing was run.
pub const EXIT_BROKEN_SUITE: u8 = 2;
/// Exit status when the harness could not judge: a profile, the schemas,
/// a broker; also when cases ended in `error` and none failed.
pub const EXIT_HARNESS_ERROR: u8 = 3;
/// Exit status when a case failed, as libtest uses.
pub const EXIT_FAILED: u8 = 101;
/// Exit status of a run stopped by SIGINT (128 + 2, as shells report).
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status of a run stopped by SIGTERM (128 + 15).
pub const EXIT_TERMINATED: u8 = 143;

/// Why the harness cannot run, or cannot go on with a case.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// One or more suite files are broken; the text names file, line and
    /// column of each problem.
    #[error("broken suite file(s); nothing was run:\n{0}")]
    Suite(String),
    /// The profile cannot be used.
    #[error("profile {origin}: {message}")]
    Profile {
        /// The profile file, or the built-in profile's name.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The schemas under `schemas/` do not load.
    #[error("schemas: {0}")]
    Schemas(String),
    /// A broker could not be started or reached.
    #[error("broker: {0}")]
    Broker(String),
    /// A broker operation of the harness's own failed.
    #[error("broker: {0}")]
    Transport(#[from] TransportError),
    /// The run cannot be set up: no checkout to read, no runtime, no
    /// evidence file.
    #[error("cannot run: {0}")]
    Setup(String),
    /// The SUT could not even be started (its program does not exist, a
    /// reference refused its configuration).
    #[error("cannot start the SUT: {0}")]
    Start(String),
}

impl Error {
    /// The process exit status this error ends a run with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Suite(_) => EXIT_BROKEN_SUITE,
            _ => EXIT_HARNESS_ERROR,
        }
    }
}
