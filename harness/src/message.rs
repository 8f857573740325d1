//! The protocol-neutral message the engine matches, validates and records,
//! and the transcript of a case.

use std::fmt::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How much of a body reports and evidence keep; a longer one is shown
/// by its start, its size and its SHA-256.
pub const BODY_KEPT: usize = 4096;

/// A message as the engine sees it, whatever the transport. In evidence
/// its body is text, cut at [`BODY_KEPT`] bytes (then `body_bytes` and
/// `body_sha256` say what it was).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// Where it was published: an AMQP exchange or an MQTT topic.
    pub channel: String,
    /// Application headers.
    pub headers: Map<String, Value>,
    /// Transport properties (`reply_to`, `content_type`, `correlation_id`, ...).
    pub properties: Map<String, Value>,
    /// The body: as sent, or, where the protocol compresses bodies, as
    /// decompressed.
    pub body: Vec<u8>,
    /// The body is already in its wire form: the protocol must not encode
    /// (compress) it again. Set by a suite's `raw: true`.
    pub raw: bool,
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let cut = self.body.len() > BODY_KEPT;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("channel", &self.channel)?;
        m.serialize_entry("headers", &self.headers)?;
        m.serialize_entry("properties", &self.properties)?;
        m.serialize_entry("body", &body_text(&self.body))?;
        if cut {
            m.serialize_entry("body_bytes", &self.body.len())?;
            m.serialize_entry("body_sha256", &sha256(&self.body))?;
        }
        m.end()
    }
}

/// A message read back from evidence: its body as the evidence kept it
/// (cut at [`BODY_KEPT`] bytes, where it was longer).
impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Kept {
            channel: String,
            #[serde(default)]
            headers: Map<String, Value>,
            #[serde(default)]
            properties: Map<String, Value>,
            #[serde(default)]
            body: String,
        }
        let k = Kept::deserialize(d)?;
        Ok(Message {
            channel: k.channel,
            headers: k.headers,
            properties: k.properties,
            body: k.body.into_bytes(),
            raw: false,
        })
    }
}

/// The start of a body as text, at most [`BODY_KEPT`] bytes of it.
fn body_text(body: &[u8]) -> String {
    let kept = &body[..body.len().min(BODY_KEPT)];
    String::from_utf8_lossy(kept).into_owned()
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// `bytes` in lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the SUT's broker handed one message of the harness's to the SUT:
/// how many times it was delivered, and how many of those were again,
/// after the SUT put it back. A requeue loop shows as `again` growing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deliveries {
    /// Deliveries to the SUT, the first included.
    pub times: u32,
    /// Of those, the ones after the SUT put the message back.
    pub again: u32,
    /// When the first was seen.
    pub first: Option<std::time::Instant>,
}

/// What reaches a case from the SUT's side of the broker.
#[derive(Clone, Debug)]
pub enum Arrival {
    /// A message the SUT sent.
    Message(Message),
    /// A message the harness sent that the SUT refused, as the broker
    /// handed it back (DMF: dead-lettered).
    Refused(Message),
    /// A message the SUT sent that its protocol could not even read (a
    /// property bag that does not decode, a body that does not
    /// decompress, a message over a size limit), with why.
    Malformed(Message, String),
}

impl Message {
    /// A header as text, if present and a scalar.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(scalar_text)
    }

    /// A property as text, if present.
    pub fn property(&self, name: &str) -> Option<String> {
        self.properties.get(name).and_then(scalar_text)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The message as one JSON value, `{headers, properties, body}`, the
    /// shape that schemas, captures and body matchers see, and whether
    /// the body is JSON. A body that is not JSON appears as a string; an
    /// empty body as `null`.
    pub fn view(&self) -> (Value, bool) {
        let (body, json) = if self.body.is_empty() {
            (Value::Null, false)
        } else {
            match self.body_json() {
                Some(v) => (v, true),
                None => (
                    Value::String(String::from_utf8_lossy(&self.body).into_owned()),
                    false,
                ),
            }
        };
        let mut view = Map::new();
        view.insert("headers".into(), Value::Object(self.headers.clone()));
        view.insert("properties".into(), Value::Object(self.properties.clone()));
        view.insert("body".into(), body);
        (Value::Object(view), json)
    }

    /// One line per part, for reports.
    pub fn render(&self, indent: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{indent}channel: {:?}", self.channel);
        let _ = writeln!(out, "{indent}headers: {}", compact(&self.headers));
        let _ = writeln!(out, "{indent}properties: {}", compact(&self.properties));
        let mut body = body_text(&self.body);
        if self.body.len() > BODY_KEPT {
            let _ = write!(
                body,
                "... ({} bytes, sha256 {})",
                self.body.len(),
                sha256(&self.body)
            );
        }
        let _ = writeln!(out, "{indent}body: {body}");
        out
    }
}

fn compact<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The text of a scalar JSON value (strings without quotes).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Which way a transcript entry went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the harness to the SUT.
    ToSut,
    /// From the SUT to the harness.
    FromSut,
    /// A message of the harness's that the SUT refused, handed back.
    Refused,
}

/// One message in a case's transcript.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Entry {
    /// Its place in the transcript, from 0.
    pub index: usize,
    /// Time since the case started.
    #[serde(serialize_with = "millis", deserialize_with = "from_millis")]
    pub at: Duration,
    /// Which way it went.
    pub direction: Direction,
    /// The entry this one answers, when the harness answered a message of
    /// the SUT's as the opposite role would (a PING, a request that asks
    /// for an acknowledgement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<usize>,
    /// The message.
    pub message: Message,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn from_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Duration::try_from_secs_f64(f64::deserialize(d)? / 1000.0).map_err(serde::de::Error::custom)
}
