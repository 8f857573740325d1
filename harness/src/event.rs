//! What a run reports as it goes: the contract between the runner and the
//! reporters. The runner never prints.

use std::time::Duration;

use serde::Serialize;

use crate::message::Transcript;
use crate::suite::Location;

/// One event of a run.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// A case is about to start.
    CaseStarted {
        /// `protocol::role::suite::case`.
        name: String,
    },
    /// A case has a verdict.
    CaseFinished {
        /// `protocol::role::suite::case`.
        name: String,
        /// The verdict and its evidence.
        verdict: Box<Verdict>,
    },
}

/// The verdict of one case, with its evidence.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// `None` when the case passed.
    pub failure: Option<Failure>,
    /// The ids the case used.
    pub tenant: String,
    /// The thing id the case used.
    pub thing_id: String,
    /// Every message of the case.
    pub transcript: Transcript,
    /// The SUT's output (command SUTs).
    pub sut_output: String,
    /// Wall time of the case.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// The waits the suite mandates (quiet windows and pauses).
    #[serde(serialize_with = "secs")]
    pub mandated_wait: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Verdict {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Why a case failed.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The step that failed, if one did.
    pub step: Option<StepRef>,
    /// What the case expected.
    pub expected: String,
    /// What happened instead.
    pub actual: String,
}

/// A step, as reports name it.
#[derive(Clone, Debug, Serialize)]
pub struct StepRef {
    /// 1-based position among the steps run (setup first).
    pub index: usize,
    /// The step kind (`expect`, ...).
    pub kind: &'static str,
    /// The step's name, if it has one.
    pub name: Option<String>,
    /// Where it is written.
    #[serde(serialize_with = "location")]
    pub location: Location,
}

fn location<S: serde::Serializer>(l: &Location, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&l.to_string())
}
