//! The typed model of a suite file. Data only: parsing lives in `parse`,
//! execution in `run`, and what each protocol means by its data in
//! `protocol`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

pub use super::value::{Dur, MAX_DURATION, Re, parse_duration};

/// Where something sits in a suite file (1-based line and column).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The suite file, as given to the parser.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The role the system under test plays.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The SUT is a device; the harness plays the server.
    Device,
    /// The SUT is a server; the harness plays the device.
    Server,
}

impl Role {
    /// The name used in test names and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Server => "server",
        }
    }
}

/// The protocol a suite tests. What each one means on the wire lives
/// behind the protocol seam (`crate::protocol`); here it is a name.
#[derive(
    Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Eclipse hawkBit's Device Management Federation API over AMQP.
    Dmf,
    /// The ABB Ability Device API v2 over Azure IoT Hub's MQTT conventions.
    Ability,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 2] = [Protocol::Dmf, Protocol::Ability];

    /// The name in suites, profiles and test names.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Dmf => "dmf",
            Protocol::Ability => "ability",
        }
    }

    /// Looks a protocol up by its name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A normative level, as in RFC 2119.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// An absolute requirement.
    #[serde(rename = "MUST")]
    Must,
    /// A recommendation; failing it still fails the case.
    #[serde(rename = "SHOULD")]
    Should,
}

/// What a requirement rests on, from the strongest to the weakest. A lab
/// selects by it: "the documents only" is `seed` and `vendor`.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// Stated by the seed documents.
    Seed,
    /// Stated by the vendor's public documentation (ABB's portal,
    /// Microsoft's IoT Hub pages, hawkBit's documentation).
    Vendor,
    /// hawkBit's implementation: what its code does.
    Implementation,
    /// A convention of the reference where the sources are silent.
    Convention,
}

impl Basis {
    /// Every basis, strongest first.
    pub const ALL: [Basis; 4] = [
        Basis::Seed,
        Basis::Vendor,
        Basis::Implementation,
        Basis::Convention,
    ];

    /// Its name in suites, profiles and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Seed => "seed",
            Basis::Vendor => "vendor",
            Basis::Implementation => "implementation",
            Basis::Convention => "convention",
        }
    }
}

impl Level {
    /// Its name in suites and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        }
    }
}

/// A requirement that cases check, traced to its source document.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Stable id, e.g. `DMF-CANCEL-1`.
    pub id: String,
    /// MUST or SHOULD.
    pub level: Level,
    /// What it rests on.
    pub basis: Basis,
    /// The source document.
    pub source: String,
    /// The section of the source document.
    pub section: String,
    /// The requirement in one sentence.
    pub text: String,
    /// The behaviour it checks is read from hawkBit's code and asserted by
    /// none of hawkBit's tests (the reference marks it [inferred]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inferred: bool,
}

impl Requirement {
    /// Its level and basis as reports show them: `MUST, seed`, or
    /// `SHOULD, implementation, inferred`.
    pub fn grade(&self) -> String {
        let mut g = format!("{}, {}", self.level.as_str(), self.basis.as_str());
        if self.inferred {
            g.push_str(", inferred");
        }
        g
    }
}

/// One suite file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Stable suite id, the third part of every test name.
    pub id: String,
    /// Human title.
    pub title: String,
    /// The protocol it tests.
    pub protocol: Protocol,
    /// The role of the SUT.
    pub role: Role,
    /// The requirements this suite checks.
    pub requirements: Vec<Requirement>,
    /// Capabilities the SUT must declare for this suite to run.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Variables for every case (generated or literal).
    #[serde(default)]
    pub vars: BTreeMap<String, VarSpec>,
    /// Messages from the SUT that no step needs to expect.
    #[serde(default)]
    pub allow: Vec<Pattern>,
    /// Steps run before every case.
    #[serde(default)]
    pub setup: Vec<Step>,
    /// The cases.
    pub cases: Vec<Case>,
    /// Where the suite came from (filled by the parser).
    #[serde(skip)]
    pub origin: String,
}

/// A variable's initial value.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum VarSpec {
    /// A generated value.
    Generated {
        /// What to generate.
        generate: Generator,
        /// The length of generated text.
        #[serde(default)]
        length: Option<usize>,
    },
    /// A literal value.
    Literal(Value),
}

/// Kinds of generated values.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    /// A random positive integer that fits in a JSON number exactly.
    Int,
    /// A random UUID v4 string.
    Uuid,
    /// Random lower-case letters and digits, `length` of them (16 by
    /// default), for ids and values at a size limit.
    Text,
}

/// One case.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Stable case id, the last part of the test name.
    pub id: String,
    /// Human title.
    pub title: String,
    /// Requirement ids this case checks.
    pub requirements: Vec<String>,
    /// Extra capabilities for this case only.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Variables for this case only.
    #[serde(default)]
    pub vars: BTreeMap<String, VarSpec>,
    /// The steps.
    pub steps: Vec<Step>,
    /// Where the case starts in the file (filled by the parser).
    #[serde(skip)]
    pub location: Location,
}

/// A step with its common fields.
#[derive(Clone, Debug, Deserialize)]
pub struct Step {
    /// Optional name, used by `resend`, `after` and reports.
    #[serde(default)]
    pub name: Option<String>,
    /// Run the step only when these variables match.
    #[serde(default)]
    pub when: Option<BTreeMap<String, Matcher>>,
    /// What the step does.
    #[serde(flatten)]
    pub action: Action,
    /// Where the step is in the file (filled by the parser).
    #[serde(skip)]
    pub location: Location,
}

/// The closed vocabulary of steps. [`Action::KINDS`] lists their names
/// once; the suite schema, the parser and the engine are checked against
/// it (a test in `parse` reads the schema's list of step keys).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send a message to the SUT.
    Send(Send),
    /// Send an earlier `send` step's message again, byte for byte.
    Resend(String),
    /// Wait for one message that matches.
    Expect(Expect),
    /// Fail if a matching message arrives during a window.
    ExpectNone(ExpectNone),
    /// Take matching messages until one matches `until`.
    Collect(Collect),
    /// Run a named check written in Rust.
    Check(Check),
    /// Ask the SUT to do something through a hook of the profile.
    Trigger(Trigger),
    /// Let time pass.
    Wait(Wait),
    /// Ask the SUT (through a hook) for a JSON answer until it matches.
    Query(Query),
    /// Download a URL the SUT announced, and judge the answer.
    Fetch(Fetch),
    /// The SUT refuses the message an earlier step sent (DMF: the server
    /// dead-letters it).
    ExpectRefused(ExpectRefused),
    /// The SUT does not refuse the message an earlier step sent, for a
    /// while.
    ExpectAccepted(ExpectAccepted),
}

impl Action {
    /// Every step kind, by its key in a suite file, in the order the
    /// docs list them.
    pub const KINDS: [&'static str; 12] = [
        "send",
        "resend",
        "expect",
        "expect_none",
        "collect",
        "check",
        "trigger",
        "wait",
        "query",
        "fetch",
        "expect_refused",
        "expect_accepted",
    ];

    /// This step's kind, as [`Action::KINDS`] names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Send(_) => "send",
            Action::Resend(_) => "resend",
            Action::Expect(_) => "expect",
            Action::ExpectNone(_) => "expect_none",
            Action::Collect(_) => "collect",
            Action::Check(_) => "check",
            Action::Trigger(_) => "trigger",
            Action::Wait(_) => "wait",
            Action::Query(_) => "query",
            Action::Fetch(_) => "fetch",
            Action::ExpectRefused(_) => "expect_refused",
            Action::ExpectAccepted(_) => "expect_accepted",
        }
    }

    /// Whether the step prompts the SUT: the messages that follow it are
    /// its answers.
    pub fn is_stimulus(&self) -> bool {
        matches!(
            self,
            Action::Send(_) | Action::Resend(_) | Action::Trigger(_)
        )
    }
}

/// A message to send.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    /// Destination (an AMQP exchange). Variables are expanded.
    pub to: String,
    /// Application headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    /// Transport properties (`content_type`, `correlation_id`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    /// The body: JSON, serialised compactly.
    #[serde(default)]
    pub body: Option<Value>,
    /// The body as raw text, sent as is.
    #[serde(default)]
    pub body_text: Option<String>,
    /// The body from a file under `fixtures/`, variables expanded.
    #[serde(default)]
    pub body_fixture: Option<String>,
    /// The text of `body_fixture`, read when the suite loads.
    #[serde(skip)]
    pub fixture_text: Option<String>,
    /// Pad the message to a size (Device API): `headers` to that many
    /// bytes of header properties, or `message` to that many bytes as IoT
    /// Hub counts a message.
    #[serde(default)]
    pub fill: Option<Fill>,
    /// Send the body bytes as written, not encoded as the message's
    /// content encoding says (to send a corrupt compressed body).
    #[serde(default)]
    pub raw: bool,
}

/// A size to pad a message to; give one of the two.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fill {
    /// Bytes of header properties (names and values).
    #[serde(default)]
    pub headers: Option<Value>,
    /// Bytes of the whole message, as IoT Hub counts it.
    #[serde(default)]
    pub message: Option<Value>,
}

/// Wait for one matching message.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// What to match.
    pub message: Pattern,
    /// How long to wait at most.
    #[serde(default)]
    pub within: Option<Dur>,
    /// Only messages that arrived after the named step: after the message
    /// it matched (`expect`, `collect`), after it ended (`wait`), or after
    /// it started (other steps).
    #[serde(default)]
    pub after: Option<String>,
    /// Variables to set from the matched message: name to path
    /// (`headers.X`, `properties.X`, `body.a.b`).
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// Also judge the SUT's own traffic: messages it sends of its own
    /// accord, and answers carrying another correlation than the last
    /// stimulus's.
    #[serde(default)]
    pub own: bool,
}

/// Fail if a matching message arrives during a window.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectNone {
    /// What must not arrive.
    pub message: Pattern,
    /// How long to watch.
    pub during: Dur,
    /// Only messages that arrived after the named step: after the message
    /// it matched (`expect`, `collect`), after it ended (`wait`), or after
    /// it started (other steps).
    #[serde(default)]
    pub after: Option<String>,
    /// Also judge the SUT's own traffic: messages it sends of its own
    /// accord, and answers carrying another correlation than the last
    /// stimulus's.
    #[serde(default)]
    pub own: bool,
    /// How many matching messages are let through before one fails the
    /// step: `more_than: 1` fails at the second (a file downloaded twice).
    #[serde(default)]
    pub more_than: usize,
}

/// Take messages matching `message`, in order, until one matches `until`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collect {
    /// The name under which checks find the messages.
    pub into: String,
    /// What to take.
    pub message: Pattern,
    /// The message that ends the collection (it is taken too).
    pub until: Pattern,
    /// Variables to set from the message that ends it: name to path.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// How long to wait at most for the end.
    #[serde(default)]
    pub within: Option<Dur>,
    /// Only messages that arrived after the named step: after the message
    /// it matched (`expect`, `collect`), after it ended (`wait`), or after
    /// it started (other steps).
    #[serde(default)]
    pub after: Option<String>,
    /// Also judge the SUT's own traffic: messages it sends of its own
    /// accord, and answers carrying another correlation than the last
    /// stimulus's.
    #[serde(default)]
    pub own: bool,
}

/// A named check implemented in Rust.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// The check's registered name, e.g. `dmf.action_lifecycle`.
    pub name: String,
    /// Arguments, variables expanded.
    #[serde(default)]
    pub args: BTreeMap<String, Value>,
}

/// Ask the SUT to act through a hook.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The hook's name in the profile.
    pub hook: String,
    /// Arguments, variables expanded, passed to the hook.
    #[serde(default)]
    pub args: BTreeMap<String, Value>,
    /// Variables to set from the hook's JSON answer: name to path
    /// (`actionId`, `a.b`).
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
}

/// Ask the SUT through a hook until its JSON answer matches.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The hook's name.
    pub hook: String,
    /// Arguments, variables expanded, passed to the hook.
    #[serde(default)]
    pub args: BTreeMap<String, Value>,
    /// Subset match on the answer; leaves may be matchers.
    pub expect: Value,
    /// How long to keep asking.
    #[serde(default)]
    pub within: Option<Dur>,
}

/// Download a URL the SUT announced (an artifact), and judge the answer
/// as `{status, size, md5, sha1, sha256}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetch {
    /// The URL; variables are expanded. One variable that holds an object
    /// of URLs (a DMF artifact's `urls`) fetches each.
    pub url: String,
    /// Request headers (`Authorization: TargetToken ...`); variables are
    /// expanded.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Subset match on the answer; leaves may be matchers.
    pub expect: Value,
    /// How long the download may take.
    #[serde(default)]
    pub within: Option<Dur>,
}

/// The SUT refuses a message.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectRefused {
    /// The `send` or `resend` step whose message it is.
    pub of: String,
    /// How long to wait at most.
    #[serde(default)]
    pub within: Option<Dur>,
}

/// The SUT keeps from refusing a message.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectAccepted {
    /// The `send` or `resend` step whose message it is.
    pub of: String,
    /// How long to watch.
    pub during: Dur,
}

/// Let time pass.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// How long.
    #[serde(rename = "for")]
    pub duration: Dur,
    /// Ends the wait early at the first message that matches, the SUT's
    /// own traffic included, among those arriving during it (taking
    /// nothing): to time a stimulus just after a device's poll, say.
    #[serde(default)]
    pub until: Option<Pattern>,
}

/// A message pattern: every given part must match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// Header name to matcher.
    #[serde(default)]
    pub headers: BTreeMap<String, Matcher>,
    /// Property name to matcher.
    #[serde(default)]
    pub properties: BTreeMap<String, Matcher>,
    /// Subset match on the JSON body; leaves may be matchers.
    #[serde(default)]
    pub body: Option<Value>,
    /// A JSON Schema under `schemas/` that the whole message must satisfy.
    #[serde(default)]
    pub schema: Option<String>,
}

/// A matcher for one value.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Matcher {
    /// An operator.
    Op(MatchOp),
    /// Equal to this value (variables expanded).
    Equals(Value),
}

/// Matcher operators, written with a leading `$`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum MatchOp {
    /// The value, as text, matches this regular expression.
    #[serde(rename = "$regex")]
    Regex(Re),
    /// Equal to one of these values.
    #[serde(rename = "$one_of")]
    OneOf(Vec<Value>),
    /// Present (true) or absent (false).
    #[serde(rename = "$present")]
    Present(bool),
    /// Not equal to this value.
    #[serde(rename = "$not")]
    Not(Value),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_once() {
        for kind in Action::KINDS {
            assert_eq!(Action::KINDS.iter().filter(|k| **k == kind).count(), 1);
        }
    }
}
