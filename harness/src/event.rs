//! What a run reports as it goes: the interface between the engine and
//! the reporters. The engine emits these events through a [`Sink`] and
//! never prints; every reporter (the text of a failed trial, the JSON
//! Lines evidence) is built from them alone, so a new event does not
//! compile until each reporter decides what to make of it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::matching::Mismatch;
use crate::message::{Entry, Message};
use crate::suite::{Location, Requirement};

/// One event of a run.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run begins.
    RunStarted {
        /// The tool and its version.
        tool: String,
        /// The systems under test, one per profile.
        suts: Vec<SutInfo>,
        /// The suite files loaded.
        suites: Vec<String>,
        /// How many cases are listed, ignored ones included.
        cases: usize,
        /// Every case listed, with the requirements it checks and, when
        /// it does not apply, why: the evidence alone gives the coverage.
        plan: Vec<CasePlan>,
        /// What exactly ran: the checkout's commit and the digest of every
        /// suite and schema file.
        identity: Identity,
    },
    /// A case begins.
    CaseStarted {
        /// `protocol::role::suite::case`.
        case: String,
        /// Its title.
        title: String,
        /// Where it is written.
        location: String,
    },
    /// A message went between the harness and the SUT.
    MessageSeen {
        /// The case it belongs to.
        case: String,
        /// The message, its direction and its time.
        entry: Entry,
    },
    /// A step ended.
    StepFinished {
        /// The case it belongs to.
        case: String,
        /// The step.
        step: StepRef,
        /// Whether it held.
        passed: bool,
        /// How long it took.
        #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
        duration: Duration,
    },
    /// A case has its verdict.
    CaseFinished {
        /// The verdict and its evidence.
        verdict: Box<Verdict>,
    },
    /// The run ends. An evidence file that does not end with this event
    /// was cut short.
    RunFinished {
        /// Cases that passed.
        passed: usize,
        /// Cases that failed on the SUT's side.
        failed: usize,
        /// Cases the harness could not judge.
        errors: usize,
        /// Cases listed as ignored.
        ignored: usize,
        /// Wall time of the run.
        #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
        duration: Duration,
        /// The brokers the run used, each with the time it took to accept
        /// a login; no case's duration includes it.
        brokers: Vec<BrokerStart>,
        /// When it ended, in seconds since the Unix epoch.
        #[serde(default)]
        ended_unix: f64,
    },
}

/// What a run ran, so that a report can be tied to it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Identity {
    /// The checkout's commit (`git rev-parse HEAD`), when it is one.
    pub commit: Option<String>,
    /// When the run began, in seconds since the Unix epoch.
    pub started_unix: f64,
    /// `path: SHA-256` of every suite and schema file, paths relative to
    /// the checkout.
    pub files: std::collections::BTreeMap<String, String>,
}

/// A case as the run lists it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CasePlan {
    /// `protocol::role::suite::case`.
    pub case: String,
    /// The requirements it checks.
    pub requirements: Vec<crate::suite::Requirement>,
    /// Why it does not apply, if it does not.
    pub ignored: Option<String>,
    /// The baseline's reason, when it is a known deviation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_deviation: Option<String>,
}

/// A broker of the run and how long it took to come up.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BrokerStart {
    /// RabbitMQ or Mosquitto.
    pub broker: String,
    /// From the start request to the first login.
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub ready_after: Duration,
    /// The image it was started from (`name:tag (sha256:…)`); none for a
    /// broker of the user's.
    pub image: Option<String>,
    /// The broker's version, when its image tells it.
    pub version: Option<String>,
    /// A warm broker that an earlier run started (`DMCONF_REUSE`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// What the harness could not see on it, and so did not judge (a
    /// user's RabbitMQ without its firehose: requeue loops).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unobserved: Vec<String>,
}

/// Receives a run's events.
pub trait Sink {
    /// Takes one event.
    fn event(&mut self, event: &RunEvent);
}

impl<F: FnMut(&RunEvent)> Sink for F {
    fn event(&mut self, event: &RunEvent) {
        self(event)
    }
}

/// A system under test, as the evidence names it: its profile with every
/// secret hidden.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SutInfo {
    /// The profile file, or the built-in reference's name.
    pub profile: String,
    /// Its protocol.
    pub protocol: String,
    /// Its role.
    pub role: String,
    /// How it runs: `reference`, `command` or `running`.
    pub kind: String,
    /// What it declares.
    pub capabilities: Vec<String>,
    /// The SHA-256 of the profile file, when there is one.
    pub profile_sha256: Option<String>,
    /// The profile file's text, its secrets (as `secrets` knows them)
    /// replaced by `***`.
    #[serde(default)]
    pub profile_redacted: Option<String>,
    /// What the SUT says its version is: its profile's `version` hook's
    /// output; a reference names itself.
    pub version: Option<String>,
}

/// The verdict of one case, with its evidence. The transcript is the
/// case's [`RunEvent::MessageSeen`] events.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Verdict {
    /// `protocol::role::suite::case`.
    pub case: String,
    /// Passed, failed, or not judged.
    pub outcome: Outcome,
    /// The tenant the case used.
    pub tenant: String,
    /// The thing (device) id the case used.
    pub thing_id: String,
    /// How many messages the SUT sent in the case.
    pub arrived: usize,
    /// Transcript entries judged the SUT's own traffic: sent of its own
    /// accord, validated, taken by no step.
    pub own: Vec<usize>,
    /// Transcript entries a step took, with the step's index.
    pub taken: Vec<(usize, usize)>,
    /// The SUT's output (command SUTs and hooks).
    pub sut_output: String,
    /// Wall time of the case.
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub duration: Duration,
    /// The waits the suite mandates (quiet windows and pauses).
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub mandated_wait: Duration,
}

/// Now, in seconds since the Unix epoch.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn from_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Duration::try_from_secs_f64(f64::deserialize(d)?).map_err(serde::de::Error::custom)
}

impl Verdict {
    /// The verdict of `case` before it has evidence: `outcome`, no ids,
    /// no messages, no time.
    pub fn new(case: String, outcome: Outcome) -> Self {
        Verdict {
            case,
            outcome,
            tenant: String::new(),
            thing_id: String::new(),
            arrived: 0,
            own: Vec::new(),
            taken: Vec::new(),
            sut_output: String::new(),
            duration: Duration::ZERO,
            mandated_wait: Duration::ZERO,
        }
    }

    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Passed)
    }

    /// The failure, when the SUT failed the case.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.outcome {
            Outcome::Failed(f) => Some(f),
            _ => None,
        }
    }
}

/// How a case ended.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The SUT did what the case asks.
    Passed,
    /// The SUT did not.
    Failed(Box<Failure>),
    /// The harness could not judge: a broker that failed or stopped
    /// answering, a SUT that could not be started. Never the SUT's
    /// failure.
    Error {
        /// What went wrong.
        error: String,
    },
}

/// Why a case failed, as data: what was required, where, what was
/// expected, and what arrived instead.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Failure {
    /// The requirements the case checks.
    pub requirements: Vec<Requirement>,
    /// The step that failed; none when the case failed after its last
    /// step (a message no step expected).
    pub step: Option<StepRef>,
    /// What the step expected, in one sentence.
    pub expected: String,
    /// What happened instead, in one sentence.
    pub actual: String,
    /// The pattern the step waited for, variables expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Value>,
    /// The messages that bear on it, each with why it did not match.
    pub observed: Vec<Observed>,
    /// Context: sizes the case set, how the SUT ended, strays.
    pub notes: Vec<String>,
}

/// A message that bears on a failure.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Observed {
    /// Its transcript entry.
    pub entry: usize,
    /// The message.
    pub message: Message,
    /// Why it does not match, part by part (empty when it matched and
    /// must not have).
    pub mismatches: Vec<Mismatch>,
}

/// A step, as reports name it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct StepRef {
    /// 1-based position among the steps run (setup first).
    pub index: usize,
    /// The step kind (`expect`, ...).
    pub kind: String,
    /// The step's name, if it has one.
    pub name: Option<String>,
    /// Where it is written.
    #[serde(serialize_with = "location", deserialize_with = "from_location")]
    pub location: Location,
}

fn location<S: serde::Serializer>(l: &Location, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&l.to_string())
}

/// `file:line:column`, as [`location`] writes it.
fn from_location<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Location, D::Error> {
    let text = String::deserialize(d)?;
    let parsed = text.rsplitn(3, ':').collect::<Vec<_>>();
    match parsed[..] {
        [column, line, file] => Ok(Location {
            file: file.to_owned(),
            line: line.parse().map_err(serde::de::Error::custom)?,
            column: column.parse().map_err(serde::de::Error::custom)?,
        }),
        _ => Err(serde::de::Error::custom(format!(
            "not file:line:column: {text}"
        ))),
    }
}
