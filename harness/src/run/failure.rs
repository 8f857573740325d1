//! What a step's failure carries: on the SUT's side, what was expected
//! and what happened instead, with the messages that bear on it; on the
//! harness's side, the error that kept it from judging.

use serde_json::Value;

use super::inbox::Item;
use crate::error::Error;
use crate::event::Observed;
use crate::matching::Mismatch;
use crate::transport::TransportError;

/// Why a step did not hold.
pub(crate) enum StepError {
    /// The SUT did not do what the step asks.
    Failed(Box<Miss>),
    /// The harness could not judge.
    Harness(Error),
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        StepError::Harness(e)
    }
}

/// What a step expected and what happened instead.
#[derive(Default)]
pub(crate) struct Miss {
    pub expected: String,
    pub actual: String,
    pub pattern: Option<Value>,
    pub observed: Vec<Observed>,
}

/// A step's failure on the SUT's side.
pub(crate) fn miss(expected: impl Into<String>, actual: impl Into<String>) -> StepError {
    StepError::Failed(Box::new(Miss {
        expected: expected.into(),
        actual: actual.into(),
        ..Default::default()
    }))
}

/// A JSON answer and why it does not match, for a failure's `actual`:
/// one `✗` line per mismatch.
pub(crate) fn answered(lead: &str, answer: &Value, why: &[Mismatch]) -> String {
    let why: Vec<String> = why.iter().map(ToString::to_string).collect();
    format!("{lead} {answer}:\n  ✗ {}", why.join("\n  ✗ "))
}

/// A failed publish: the SUT's failure when the broker refused what the
/// SUT named, the harness's when the broker did not answer.
pub(crate) fn published(e: TransportError, to: &str) -> StepError {
    match e {
        TransportError::Refused(why) => {
            miss(format!("the broker accepts a message for `{to}`"), why)
        }
        e => StepError::Harness(e.into()),
    }
}

/// A message as a failure shows it.
pub(crate) fn observed(item: &Item, mismatches: Vec<Mismatch>) -> Observed {
    Observed {
        entry: item.entry,
        message: item.message(),
        mismatches,
    }
}
