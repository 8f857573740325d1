//! Protocol plugins: what is specific to one protocol, on top of a
//! transport. [`Protocol`] is the seam the engine calls: how a case is
//! opened (its ids, its variables, what the SUT is told, its link to the
//! broker), the schema of a message by kind and direction, how an answer
//! is told from the SUT's own traffic, what the opposite role answers of
//! its own accord, sizes and `fill`, and the named checks. The engine
//! itself never names a protocol; a new protocol is a module here and an
//! arm in each `match` below.

pub(crate) mod ability;
pub(crate) mod dmf;
pub(crate) mod link;
mod sides;

use std::collections::HashMap;

use serde_json::{Map, Value};

pub(crate) use link::Link;
pub(crate) use sides::Sides;

use crate::env::SutEnv;
use crate::error::Error;
use crate::message::Message;
use crate::profile::Profile;
pub use crate::suite::Protocol;
use crate::suite::Role;

/// Who a case is, as its verdict names it.
#[derive(Clone, Debug, Default)]
pub(crate) struct CaseIds {
    /// The tenant.
    pub tenant: String,
    /// The thing (device) id.
    pub thing_id: String,
}

/// What opening a case gives the engine.
pub(crate) struct Opened {
    /// The case's link to the broker, armed: from now on nothing the SUT
    /// sends for this case is missed.
    pub link: Link,
    /// The case's ids.
    pub ids: CaseIds,
    /// Variables every step of the case can use (`${thingId}`, ...).
    pub vars: Vec<(&'static str, Value)>,
    /// What the SUT is told about the case.
    pub env: SutEnv,
    /// Whether the SUT's refusals can be observed, and if not, why.
    pub refusals: Result<(), String>,
}

/// What a protocol needs to open a case.
pub(crate) struct Open<'a> {
    /// The run's brokers and sides.
    pub sides: &'a Sides,
    /// The profile.
    pub profile: &'a Profile,
    /// The role of the SUT.
    pub role: Role,
    /// Twelve hex digits unique to the case.
    pub short: &'a str,
    /// The SUT runs for this case alone, on broker objects of its own (a
    /// reference server), rather than serving every case.
    pub isolated: bool,
}

/// What prompted the SUT: a message the harness sent, or a hook it
/// called, with its answer.
pub(crate) enum Stimulus<'a> {
    /// A message the harness sent.
    Sent(&'a Message),
    /// A hook, with its arguments and its answer.
    Hook {
        /// The arguments it was given.
        args: &'a Map<String, Value>,
        /// Its answer.
        answer: &'a Value,
    },
}

/// What a named check may read.
pub(crate) struct CheckCx<'a> {
    /// The case's link.
    pub link: &'a Link,
    /// What `collect` steps stored, by name.
    pub collected: &'a HashMap<String, Vec<Message>>,
}

impl Protocol {
    /// The named checks a suite of this protocol may call.
    pub(crate) fn checks(self) -> &'static [&'static str] {
        match self {
            Protocol::Dmf => &dmf::checks::NAMES,
            Protocol::Ability => &[],
        }
    }

    /// Whether `send` may `fill` a message to a size.
    pub(crate) fn fills(self) -> bool {
        matches!(self, Protocol::Ability)
    }

    /// Whether a server of this protocol refuses a message in a way the
    /// harness can observe (DMF: the broker dead-letters it).
    pub(crate) fn observes_refusals(self) -> bool {
        matches!(self, Protocol::Dmf)
    }

    /// The message format every message of the SUT must conform to, as a
    /// failure names it.
    pub(crate) fn format(self) -> &'static str {
        match self {
            Protocol::Dmf => "DMF",
            Protocol::Ability => "Device API v2 and IoT Hub",
        }
    }

    /// Opens a case: its ids, variables and environment, and its link,
    /// armed before the SUT starts.
    pub(crate) async fn open(self, o: Open<'_>) -> Result<Opened, Error> {
        match self {
            Protocol::Dmf => dmf::open(o).await,
            Protocol::Ability => ability::open(o).await,
        }
    }

    /// Refusals that could not be watched when the case opened (the
    /// server declares its dead-letter exchange when it starts), tried
    /// again once the SUT has started, before the first stimulus.
    pub(crate) async fn rewatch_refusals(
        self,
        sides: &Sides,
        profile: &Profile,
        earlier: Result<(), String>,
    ) -> Result<Result<(), String>, Error> {
        match (self, earlier) {
            (Protocol::Dmf, Err(why)) => dmf::rewatch_refusals(sides, profile, why).await,
            (_, earlier) => Ok(earlier),
        }
    }

    /// The schema a message from a SUT of `sut`'s role must satisfy, by
    /// its kind (read from its view); `Ok(None)` when the protocol does
    /// not judge it (telemetry), `Err` when the SUT may not send such a
    /// message at all.
    pub(crate) fn schema_of(self, sut: Role, view: &Value) -> Result<Option<String>, String> {
        let msg = &view["headers"];
        match (self, sut) {
            (Protocol::Dmf, Role::Device) if dmf::artifacts::is_download(view) => Ok(None),
            (Protocol::Dmf, Role::Device) => {
                dmf::device_message_schema(msg).map(|s| Some(s.to_owned()))
            }
            (Protocol::Dmf, Role::Server) => {
                dmf::server_message_schema(msg).map(|s| Some(s.to_owned()))
            }
            (Protocol::Ability, Role::Device) => ability::request_schema(msg),
            (Protocol::Ability, Role::Server) => ability::c2d_schema(msg),
        }
    }

    /// The correlation a message carries, read from its view
    /// (`{headers, properties, body}`): an answer carries its request's
    /// (DMF: the actionId; the Device API: the correlationId).
    pub(crate) fn correlation(self, view: &Value) -> Option<String> {
        match self {
            Protocol::Dmf => dmf::action_id(view),
            Protocol::Ability => ability::correlation_id(view),
        }
    }

    /// The correlation a stimulus carries.
    pub(crate) fn correlation_of(self, s: &Stimulus<'_>) -> Option<String> {
        let key = match self {
            Protocol::Dmf => "actionId",
            Protocol::Ability => "correlationId",
        };
        match s {
            Stimulus::Sent(m) => self.correlation(&m.view().0),
            Stimulus::Hook { args, answer } => answer
                .get(key)
                .or_else(|| args.get(key))
                .and_then(crate::message::scalar_text)
                .filter(|c| !c.is_empty()),
        }
    }

    /// Whether an expectation after this stimulus judges only the answers
    /// that carry its correlation. So it is when the SUT is a device,
    /// which also sends of its own accord: after a DMF action request,
    /// only that action's statuses; after a Device API `perform`, only
    /// that request. A server answers what it is sent, and its answers
    /// to earlier requests of the case stay fair game.
    pub(crate) fn narrows(self, sut: Role, s: &Stimulus<'_>) -> bool {
        match (self, s) {
            (_, _) if sut == Role::Server => false,
            (Protocol::Dmf, Stimulus::Sent(_)) => true,
            (Protocol::Ability, Stimulus::Hook { .. }) => true,
            _ => false,
        }
    }

    /// Whether the stimulus must name a correlation for its answers to be
    /// told from the SUT's own traffic: a Device API device that says it
    /// sent a request (`"sent": true`) must say which one, since it also
    /// sends requests of its own accord.
    pub(crate) fn needs_correlation(self, sut: Role, s: &Stimulus<'_>) -> bool {
        match s {
            Stimulus::Hook { answer, .. } => {
                self.narrows(sut, s) && answer.get("sent") == Some(&Value::Bool(true))
            }
            Stimulus::Sent(_) => false,
        }
    }

    /// Whether an answer that a stimulus narrows to always carries the
    /// correlation: a Device API request the device was asked to send
    /// has the correlationId it was given or answered, so one without any
    /// is a request of its own; a DMF device's messages other than
    /// statuses (a THING_CREATED, attributes) carry no actionId at all.
    pub(crate) fn answers_carry_correlation(self) -> bool {
        matches!(self, Protocol::Ability)
    }

    /// Whether a message, with its `correlation`, is the SUT's own
    /// traffic: something it sends of its own accord (a poll, a PING,
    /// telemetry, a request of its own), or an answer to a correlation
    /// that is none of the case's (`known`), or one that is
    /// [`Self::disputed`]. Own traffic is validated and
    /// answered, but no step takes it for an answer unless it asks to,
    /// and it is never a leftover.
    pub(crate) fn own(
        self,
        sut: Role,
        view: &Value,
        correlation: Option<&str>,
        known: &[String],
    ) -> bool {
        let foreign = correlation.is_none_or(|c| !known.iter().any(|k| k == c));
        let header = |k: &str| view["headers"][k].as_str();
        match self {
            Protocol::Dmf => {
                dmf::artifacts::is_download(view)
                    || dmf::unprompted(sut, header("type"), header("topic"))
                    || (header("type") == Some("EVENT")
                        && header("topic") == Some("UPDATE_ACTION_STATUS")
                        && foreign)
            }
            Protocol::Ability => match (sut, header("msgType")) {
                (Role::Device, Some("variable" | "alarm" | "event")) => true,
                (Role::Device, _) => foreign,
                (Role::Server, Some("notification")) => {
                    (correlation.is_some() && foreign) || self.disputed(sut, view)
                }
                (Role::Server, _) => false,
            },
        }
    }

    /// Whether the sources disagree on whether the SUT sends this at all:
    /// a notification answering a Device API model.create (the seed says
    /// it is no longer sent, ABB's Edge pages show one). Such a message
    /// is the SUT's own traffic, and no step takes it for another answer
    /// unless it asks for own traffic.
    pub(crate) fn disputed(self, sut: Role, view: &Value) -> bool {
        match (self, sut) {
            (Protocol::Ability, Role::Server) => ability::answers_model_create(view),
            _ => false,
        }
    }

    /// What the opposite role answers of its own accord to a message of
    /// the SUT's, if anything: hawkBit answers a device's PING; a platform
    /// acknowledges a device's request as its `ack` header asks.
    pub(crate) fn answer(self, sut: Role, msg: &Message) -> Option<Message> {
        match (self, sut) {
            (Protocol::Dmf, Role::Device) => dmf::ping_response(msg, dmf::now_ms()),
            (Protocol::Ability, Role::Device) => ability::platform_ack(msg),
            (_, Role::Server) => None,
        }
    }

    /// Pads `msg` to `bytes` of `what` (`headers` or `message`); returns
    /// what it did, with the limit the profile declares, for a failure to
    /// show.
    pub(crate) fn fill(
        self,
        msg: &mut Message,
        what: &str,
        bytes: usize,
        profile: &Profile,
    ) -> Result<String, String> {
        match self {
            Protocol::Ability => ability::fill_to_limit(msg, what, bytes, profile.limits),
            Protocol::Dmf => Err(format!("`fill` does not fit protocol {self}")),
        }
    }

    /// Runs the named check `name`: `Ok(Err(why))` when the SUT fails
    /// it, `Err` when the harness could not ask.
    pub(crate) async fn check(
        self,
        name: &str,
        args: &Map<String, Value>,
        cx: CheckCx<'_>,
    ) -> Result<Result<(), String>, Error> {
        match self {
            Protocol::Dmf => dmf::checks::run(name, args, cx).await,
            Protocol::Ability => Ok(Err(format!("protocol {self} has no check `{name}`"))),
        }
    }

    /// What a server started once for the run is told.
    pub(crate) async fn server_env(
        self,
        sides: &Sides,
        profile: &Profile,
    ) -> Result<SutEnv, Error> {
        match self {
            Protocol::Dmf => dmf::server_env(sides, profile).await,
            Protocol::Ability => ability::server_env(sides, profile).await,
        }
    }

    /// Whether a server started for the run is up, by a sign on the
    /// broker; `None` when the protocol shows none.
    pub(crate) async fn server_up(
        self,
        sides: &Sides,
        profile: &Profile,
    ) -> Result<Option<bool>, Error> {
        match self {
            Protocol::Dmf => dmf::server_up(sides, profile).await.map(Some),
            Protocol::Ability => Ok(None),
        }
    }
}

/// Twelve hex digits, unique to a case.
pub(crate) fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_device_that_says_it_sent_a_request_must_say_which() {
        let args = json!({"action": "model.query"});
        let args = args.as_object().expect("an object");
        let (sent, told, declined) = (
            json!({"sent": true}),
            json!({"sent": true, "correlationId": "c-9"}),
            json!({"sent": false, "reason": "over the limit"}),
        );
        let hook = |answer| Stimulus::Hook { args, answer };
        let p = Protocol::Ability;
        // Said it sent one, and not which: its answer cannot be told from
        // the device's own requests.
        assert!(p.needs_correlation(Role::Device, &hook(&sent)));
        assert_eq!(p.correlation_of(&hook(&sent)), None);
        assert_eq!(p.correlation_of(&hook(&told)).as_deref(), Some("c-9"));
        // Nothing sent, or a platform (which only answers): no request
        // to tell apart.
        assert!(!p.needs_correlation(Role::Device, &hook(&declined)));
        assert!(!p.needs_correlation(Role::Server, &hook(&sent)));
        assert!(!Protocol::Dmf.needs_correlation(Role::Device, &hook(&sent)));
    }

    #[test]
    fn a_notification_answering_model_create_is_tolerated_not_taken() {
        let known = vec!["create".to_owned()];
        let own = |headers: Value| {
            let view = json!({"headers": headers});
            let c = Protocol::Ability.correlation(&view);
            Protocol::Ability.own(Role::Server, &view, c.as_deref(), &known)
        };
        // The sources disagree on it: never a message no step expected.
        assert!(own(
            json!({"msgType": "notification", "action": "model.create", "correlationId": "create"})
        ));
        assert!(own(
            json!({"msgType": "notification", "correlationId": "create",
            "eventType": "Abb.Ability.ObjectModel.Created"})
        ));
        assert!(own(
            json!({"msgType": "notification", "correlationId": "create",
            "eventType": "Abb.Ability.InformationModel.ObjectModelCreated"})
        ));
        // Its ack, and a model.query's notification, are the case's to
        // judge.
        assert!(!Protocol::Ability.disputed(
            Role::Server,
            &json!({"headers": {"msgType": "ack", "action": "model.create"}})
        ));
        assert!(!own(
            json!({"msgType": "notification", "action": "model.query", "correlationId": "create",
            "eventType": "Abb.Ability.ObjectModel.Updated"})
        ));
    }
}
