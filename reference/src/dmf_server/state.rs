//! The reference server's model of one tenant: targets, actions and the
//! rules by which hawkBit accepts, refuses or ignores what a device
//! sends. Pure: it takes a message or a management request and answers
//! with an outcome and the messages to send; the caller does the I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::ServerFault;
use dmconf_harness::kit::Message;
use dmconf_harness::kit::dmf::{self, ACTION_STATUSES};

/// Longest controller id (`JpaTarget.controllerId`).
pub const THING_ID_MAX: usize = 256;
/// Longest target name (`NamedEntity.NAME_MAX_SIZE`).
pub const NAME_MAX: usize = 128;
/// Longest attribute key and value.
pub const ATTRIBUTE_MAX: usize = 128;
/// Most attributes per target.
pub const ATTRIBUTES_PER_TARGET: usize = 100;
/// Most `message` entries in one action status.
pub const STATUS_MESSAGES: usize = 50;

/// What becomes of a message from a device.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Processed (or deliberately ignored): acknowledged.
    Accept,
    /// Refused: rejected without requeue, so that the broker
    /// dead-letters it. The text says why, for the server's log.
    Refuse(String),
    /// Failed, and put back in the queue to be tried again: what hawkBit
    /// does with an exception it does not list as fatal. Only a fault
    /// does this; it loops, as the message fails the same way each time.
    Requeue(String),
}

/// The state of an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionState {
    /// Sent to the device, not yet closed.
    Running,
    /// A cancel was requested; the device has not answered yet.
    Canceling,
    /// Closed by FINISHED.
    Finished,
    /// Closed by ERROR.
    Error,
    /// Closed by CANCELED.
    Canceled,
    /// A download-only action closed by DOWNLOADED.
    Downloaded,
    /// Sent as CONFIRM; waits for the device's CONFIRMED.
    WaitForConfirmation,
}

impl ActionState {
    fn active(self) -> bool {
        matches!(
            self,
            ActionState::Running | ActionState::Canceling | ActionState::WaitForConfirmation
        )
    }

    fn name(self) -> &'static str {
        match self {
            ActionState::Running => "running",
            ActionState::Canceling => "canceling",
            ActionState::Finished => "finished",
            ActionState::Error => "error",
            ActionState::Canceled => "canceled",
            ActionState::Downloaded => "downloaded",
            ActionState::WaitForConfirmation => "wait_for_confirmation",
        }
    }
}

/// How a distribution set is assigned.
#[derive(Clone, Copy, Debug, Default)]
pub struct Assignment {
    /// Download only: DOWNLOAD, and DOWNLOADED closes it.
    pub download_only: bool,
    /// The device confirms it first (CONFIRM).
    pub confirm: bool,
    /// Installed only while this window is open; DOWNLOAD before.
    pub window: Option<Window>,
}

/// A daily maintenance window, in UTC: it opens `start` seconds after
/// midnight and stays open for `duration` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Seconds after midnight, UTC.
    pub start: u64,
    /// Seconds.
    pub duration: u64,
}

const DAY: u64 = 86_400;

impl Window {
    /// Reads hawkBit's form of a window that opens daily at a fixed time:
    /// a Quartz schedule `S M H ? * *`, a duration `HH:MM:SS` and a
    /// timezone `+HH:MM`.
    pub fn parse(schedule: &str, duration: &str, timezone: &str) -> Result<Window, String> {
        let fields: Vec<&str> = schedule.split_whitespace().collect();
        let number = |t: &str, max: u64| t.parse::<u64>().ok().filter(|n| *n < max);
        let start = match fields[..] {
            [sec, min, hour, "?", "*", "*"] | [sec, min, hour, "*", "*", "?"] => {
                match (number(sec, 60), number(min, 60), number(hour, 24)) {
                    (Some(s), Some(m), Some(h)) => h * 3600 + m * 60 + s,
                    _ => return Err(format!("schedule `{schedule}`: not a time of day")),
                }
            }
            _ => {
                return Err(format!(
                    "schedule `{schedule}`: the reference takes a daily one, `S M H ? * *`"
                ));
            }
        };
        let hms = |t: &str| -> Option<u64> {
            let p: Vec<u64> = t
                .split(':')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            match p[..] {
                [h, m, s] if m < 60 && s < 60 => Some(h * 3600 + m * 60 + s),
                _ => None,
            }
        };
        let duration = hms(duration)
            .filter(|d| *d > 0 && *d < DAY)
            .ok_or_else(|| format!("duration `{duration}`: expected HH:MM:SS"))?;
        let (sign, offset) = match timezone.split_at_checked(1) {
            Some(("+", hm)) => (1i64, hm),
            Some(("-", hm)) => (-1i64, hm),
            _ => return Err(format!("timezone `{timezone}`: expected +HH:MM")),
        };
        let offset = hms(&format!("{offset}:00"))
            .ok_or_else(|| format!("timezone `{timezone}`: expected +HH:MM"))?;
        let start = (start as i64 - sign * offset as i64).rem_euclid(DAY as i64) as u64;
        Ok(Window { start, duration })
    }

    /// Whether the window is open at `now`, seconds since the epoch.
    pub fn open_at(&self, now: u64) -> bool {
        let since = (now % DAY + DAY - self.start) % DAY;
        since < self.duration
    }
}

/// One deployment to one target.
#[derive(Clone, Debug)]
pub struct Action {
    /// The action id.
    pub id: u64,
    /// The target's controller id.
    pub thing: String,
    /// Download only (DOWNLOAD instead of DOWNLOAD_AND_INSTALL).
    pub download_only: bool,
    /// The distribution set.
    pub ds: u64,
    /// Its state.
    pub state: ActionState,
    /// Whether it was ever canceled (the Management API's `type`).
    pub cancel: bool,
    /// Its maintenance window, if it has one.
    pub window: Option<Window>,
    /// The statuses the device reported and the server stored, oldest
    /// first: `{type, messages, code}`.
    pub history: Vec<Value>,
}

/// A registered target.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// The reply exchange from its last THING_CREATED.
    pub reply_to: String,
    /// Its name.
    pub name: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// The security token handed out with each action.
    pub token: String,
    /// The device confirms every action itself (UPDATE_AUTO_CONFIRM).
    pub auto_confirm: bool,
    /// The distribution set it reported FINISHED for last.
    pub installed: Option<u64>,
    /// The name of its target type, if it has one.
    pub kind: Option<String>,
    /// An address set over the Management API (a DDI one, `http://…`),
    /// until the thing registers again over DMF.
    pub address: Option<String>,
}

/// A software module created over the Management API.
#[derive(Clone, Debug)]
pub struct Module {
    /// Id.
    pub id: u64,
    /// Type key.
    pub kind: String,
    /// Version.
    pub version: String,
    /// Files uploaded into it.
    pub artifacts: Vec<Artifact>,
}

/// A file uploaded into a software module.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// Its file name, as uploaded.
    pub filename: String,
    /// Its bytes.
    pub bytes: Arc<Vec<u8>>,
}

/// A management request that could not be carried out, as an HTTP status
/// and a message.
#[derive(Debug)]
pub struct MgmtError(pub u16, pub String);

/// One tenant's state.
pub struct State {
    tenant: String,
    fault: Option<ServerFault>,
    targets: BTreeMap<String, Target>,
    actions: BTreeMap<u64, Action>,
    modules: BTreeMap<u64, Module>,
    sets: BTreeMap<u64, Vec<u64>>,
    next_id: u64,
    /// The base of the download URLs it announces.
    download_base: String,
    /// The target types created over the Management API, by name.
    target_types: Vec<String>,
    /// The message being handled fails with an error that is not
    /// fatal: it goes back to the queue (only under a fault).
    requeue: bool,
}

fn header(msg: &Message, name: &str) -> Option<String> {
    msg.header(name).filter(|v| !v.is_empty())
}

fn json_content(msg: &Message) -> bool {
    msg.property("content_type")
        .is_some_and(|c| c.contains("json"))
}

fn attribute_text_ok(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || c.is_whitespace() && c.is_ascii()
            || "_-!@#$%^&*()+=[]{}|;:'\",.<>/\\?".contains(c)
    })
}

impl State {
    /// An empty tenant.
    pub fn new(tenant: &str, fault: Option<ServerFault>) -> Self {
        State {
            tenant: tenant.to_uppercase(),
            fault,
            targets: BTreeMap::new(),
            actions: BTreeMap::new(),
            modules: BTreeMap::new(),
            sets: BTreeMap::new(),
            next_id: 1,
            download_base: String::new(),
            target_types: Vec::new(),
            requeue: false,
        }
    }

    fn has(&self, f: ServerFault) -> bool {
        self.fault == Some(f)
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Handles one message from a device; returns the verdict and the
    /// messages to publish (each to the exchange in its `channel`).
    pub fn handle(&mut self, msg: &Message, now_ms: u64) -> (Verdict, Vec<Message>) {
        let mut out = Vec::new();
        let verdict = match self.dispatch(msg, now_ms, &mut out) {
            Ok(()) => Verdict::Accept,
            Err(why) => {
                out.clear();
                if std::mem::take(&mut self.requeue) {
                    Verdict::Requeue(why)
                } else {
                    Verdict::Refuse(why)
                }
            }
        };
        (verdict, out)
    }

    fn dispatch(
        &mut self,
        msg: &Message,
        now_ms: u64,
        out: &mut Vec<Message>,
    ) -> Result<(), String> {
        let texted;
        let msg = if self.has(ServerFault::NullHeaderAsText) {
            // As Java's String.valueOf does.
            let mut m = msg.clone();
            for v in m.headers.values_mut().filter(|v| v.is_null()) {
                *v = Value::String("null".into());
            }
            texted = m;
            &texted
        } else {
            msg
        };
        let lenient = self.has(ServerFault::LenientType);
        let kind = header(msg, "type").map(|t| if lenient { t.trim().to_uppercase() } else { t });
        let tenant = header(msg, "tenant");
        let (kind, tenant) = match (kind, tenant) {
            (Some(k), Some(t)) => (k, t),
            (Some(k), None) if self.has(ServerFault::AcceptsNoTenant) => (k, self.tenant.clone()),
            _ => return Err("Invalid message! tenant and type header are mandatory!".into()),
        };
        if tenant.to_uppercase() != self.tenant {
            return Err(format!("tenant {tenant} does not exist"));
        }
        match kind.as_str() {
            "THING_CREATED" => self.thing_created(msg, out),
            "THING_REMOVED" => self.thing_removed(msg, out),
            "PING" => {
                self.ping(msg, now_ms, out);
                Ok(())
            }
            "EVENT" => self.event(msg, out),
            "THING_DELETED" | "PING_RESPONSE" if self.has(ServerFault::AcceptsServerMessages) => {
                Ok(())
            }
            other => Err(format!(
                "No handle method was found for the given message type {other}."
            )),
        }
    }

    fn thing_created(&mut self, msg: &Message, out: &mut Vec<Message>) -> Result<(), String> {
        let thing = match msg.header("thingId") {
            Some(t) if t.is_empty() && self.has(ServerFault::AcceptsEmptyThingId) => t,
            _ => header(msg, "thingId").ok_or("THING_CREATED without thingId")?,
        };
        let max = if self.has(ServerFault::ThingIdLimitOff) {
            THING_ID_MAX + 1
        } else {
            THING_ID_MAX
        };
        let spaced = thing.chars().any(char::is_whitespace)
            && !self.has(ServerFault::AcceptsWhitespaceThingId);
        if thing.chars().count() > max || spaced {
            return Err(format!("invalid controller id {thing}"));
        }
        let reply_to = msg.property("reply_to").unwrap_or_default();
        if reply_to.is_empty() && !self.has(ServerFault::AcceptsNoReplyTo) {
            if self.has(ServerFault::RegistersBeforeRefusing) {
                self.targets.entry(thing.clone()).or_insert_with(|| Target {
                    name: thing.clone(),
                    ..Default::default()
                });
            }
            return Err("THING_CREATED without reply_to".into());
        }
        let empty_body = msg.body.is_empty() || msg.body == b"\"\"";
        let mut name = None;
        let mut attrs = None;
        let mut kind = None;
        if !empty_body {
            if !json_content(msg) && !self.has(ServerFault::IgnoresContentType) {
                return Err("Content-Type is not JSON compatible".into());
            }
            let body: Value =
                serde_json::from_slice(&msg.body).map_err(|e| format!("body: {e}"))?;
            let body = body.as_object().ok_or("body is not an object")?;
            if let Some(n) = body.get("name").filter(|v| !v.is_null()) {
                let n = n.as_str().ok_or("name is not a string")?;
                let max = if self.has(ServerFault::NameLimitOff) {
                    NAME_MAX + 1
                } else {
                    NAME_MAX
                };
                if n.chars().count() > max {
                    return Err("name longer than 128".into());
                }
                if !n.trim().is_empty() {
                    name = Some(n.to_owned());
                }
            }
            if let Some(a) = body.get("attributeUpdate").filter(|v| !v.is_null()) {
                attrs = Some(a.clone());
            }
            if let Some(t) = body.get("type").filter(|v| !v.is_null()) {
                kind = Some(t.as_str().ok_or("type is not a string")?.to_owned());
            }
        }
        let known = self.targets.contains_key(&thing);
        if known && self.has(ServerFault::RefusesReregistration) {
            return Err(format!("target {thing} already exists"));
        }
        let drop_body = self.has(ServerFault::IgnoresThingCreatedBody);
        let kind = kind
            .filter(|_| !self.has(ServerFault::IgnoresTargetType))
            .filter(|k| k.is_empty() || self.target_types.contains(k));
        let moves = !(known && self.has(ServerFault::KeepsFirstAddress));
        let token = uuid::Uuid::new_v4().simple().to_string();
        let target = self.targets.entry(thing.clone()).or_insert_with(|| Target {
            name: thing.clone(),
            token,
            ..Default::default()
        });
        if moves {
            target.reply_to = reply_to;
            target.address = None;
        }
        if let Some(n) = name.filter(|_| !drop_body) {
            target.name = n;
        }
        // A type this server does not know is logged and changes nothing;
        // an empty one unassigns it.
        if let Some(k) = kind {
            target.kind = Some(k).filter(|k| !k.is_empty());
        }
        if let Some(a) = attrs.filter(|_| !drop_body) {
            self.update_attributes(&thing, &a)?;
        }
        if !(known && self.has(ServerFault::NoResendOnRegister)) {
            self.send_current(&thing, out);
        }
        Ok(())
    }

    fn thing_removed(&mut self, msg: &Message, out: &mut Vec<Message>) -> Result<(), String> {
        let Some(thing) = header(msg, "thingId") else {
            return if self.has(ServerFault::AcksAnonymousRemoval) {
                Ok(())
            } else {
                Err("THING_REMOVED without thingId".into())
            };
        };
        let target = self
            .targets
            .remove(&thing)
            .ok_or_else(|| format!("target {thing} does not exist"))?;
        self.actions.retain(|_, a| a.thing != thing);
        if !self.has(ServerFault::NoThingDeleted) {
            out.push(self.to_thing(&target.reply_to, &thing, "THING_DELETED", None, Vec::new()));
        }
        Ok(())
    }

    fn ping(&mut self, msg: &Message, now_ms: u64, out: &mut Vec<Message>) {
        let Some(mut reply) = dmconf_harness::kit::dmf::ping_response(msg, now_ms) else {
            return;
        };
        if reply.channel.is_empty() {
            reply.channel = "null".into();
        }
        if self.has(ServerFault::PingBodyNotTime) {
            reply.body = b"pong".to_vec();
        }
        if self.has(ServerFault::PingDropsCorrelationId) {
            reply.properties.remove("correlation_id");
        }
        out.push(reply);
    }

    fn event(&mut self, msg: &Message, out: &mut Vec<Message>) -> Result<(), String> {
        if !json_content(msg) && !self.has(ServerFault::IgnoresContentType) {
            return Err("Content-Type is not JSON compatible".into());
        }
        let topic = header(msg, "topic").ok_or("Got event without appropriate topic.")?;
        let topic = if self.has(ServerFault::LenientType) {
            topic.trim().to_uppercase()
        } else {
            topic
        };
        match topic.as_str() {
            "UPDATE_ACTION_STATUS" => self.action_status(msg, out),
            "UPDATE_ATTRIBUTES" => {
                let thing = match header(msg, "thingId") {
                    Some(t) => t,
                    None if self.has(ServerFault::AttributesWithoutThingId) => return Ok(()),
                    None => return Err("UPDATE_ATTRIBUTES without thingId".into()),
                };
                if !self.targets.contains_key(&thing) {
                    return Err(format!("target {thing} does not exist"));
                }
                let body: Value =
                    serde_json::from_slice(&msg.body).map_err(|e| format!("body: {e}"))?;
                if body.is_string() && self.has(ServerFault::AcksStringAttributeBody) {
                    return Ok(());
                }
                self.update_attributes(&thing, &body)
            }
            "UPDATE_AUTO_CONFIRM" => {
                let body: Value =
                    serde_json::from_slice(&msg.body).map_err(|e| format!("body: {e}"))?;
                let body = body.as_object().ok_or("body is not an object")?;
                let thing = header(msg, "thingId").ok_or("UPDATE_AUTO_CONFIRM without thingId")?;
                let enabled = body
                    .get("enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                self.auto_confirm(&thing, enabled)
            }
            "DOWNLOAD_AND_INSTALL"
            | "DOWNLOAD"
            | "CANCEL_DOWNLOAD"
            | "REQUEST_ATTRIBUTES_UPDATE"
            | "CONFIRM"
            | "BATCH_DOWNLOAD"
            | "BATCH_DOWNLOAD_AND_INSTALL"
            | "MULTI_ACTION"
                if self.has(ServerFault::AcceptsServerMessages) =>
            {
                Ok(())
            }
            other => Err(format!("Got event without appropriate topic: {other}")),
        }
    }

    /// Switches auto-confirmation for `thing`; switched on, it confirms
    /// the action waiting for confirmation. As hawkBit, it sends nothing
    /// then: the action goes out the next time it is sent (THING_CREATED).
    fn auto_confirm(&mut self, thing: &str, enabled: bool) -> Result<(), String> {
        if self.has(ServerFault::IgnoresAutoConfirm) {
            return Ok(());
        }
        let stays_on = self.has(ServerFault::AutoConfirmStaysOn);
        let target = self
            .targets
            .get_mut(thing)
            .ok_or_else(|| format!("target {thing} does not exist"))?;
        if enabled || !stays_on {
            target.auto_confirm = enabled;
        }
        if enabled {
            for a in self.actions.values_mut() {
                if a.thing == thing && a.state == ActionState::WaitForConfirmation {
                    a.state = ActionState::Running;
                }
            }
        }
        Ok(())
    }

    fn update_attributes(&mut self, thing: &str, body: &Value) -> Result<(), String> {
        let body = body
            .as_object()
            .ok_or("attribute update is not an object")?;
        let empty = Map::new();
        let attrs = match body.get("attributes") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err("attributes is not an object".into()),
        };
        let mode = match body.get("mode") {
            None | Some(Value::Null) => "MERGE",
            Some(Value::String(m)) if ["MERGE", "REPLACE", "REMOVE"].contains(&m.as_str()) => {
                m.as_str()
            }
            Some(m) => return Err(format!("unknown mode {m}")),
        };
        let max = if self.has(ServerFault::AttributeLimitOff) {
            ATTRIBUTE_MAX + 1
        } else {
            ATTRIBUTE_MAX
        };
        let mut parsed = Vec::new();
        for (k, v) in attrs {
            let v = match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => return Err(format!("attribute {k}: value {other} is not a string")),
            };
            let too_long = |s: &str| s.chars().count() > max;
            if too_long(k) || !attribute_text_ok(k) {
                return Err(format!("invalid attribute key {k}"));
            }
            if v.as_deref()
                .is_some_and(|v| too_long(v) || !attribute_text_ok(v))
            {
                return Err(format!("invalid value for attribute {k}"));
            }
            parsed.push((k.clone(), v));
        }
        let replace_merges = self.has(ServerFault::ReplaceMerges);
        let refuses_unchanged = self.has(ServerFault::RefusesUnchangedAttributes);
        let quota = !self.has(ServerFault::NoAttributeQuota);
        let target = self.targets.get_mut(thing).ok_or("unknown target")?;
        let mut next = target.attributes.clone();
        match mode {
            "REPLACE" if !replace_merges => {
                next.clear();
                next.extend(parsed.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
            }
            "REMOVE" => {
                for (k, _) in parsed {
                    next.remove(&k);
                }
            }
            _ => {
                for (k, v) in parsed {
                    match v {
                        Some(v) => next.insert(k, v),
                        None => next.remove(&k),
                    };
                }
            }
        }
        if next.len() > ATTRIBUTES_PER_TARGET && next.len() > target.attributes.len() && quota {
            return Err("too many attributes".into());
        }
        if refuses_unchanged && next == target.attributes {
            return Err("the update changes nothing".into());
        }
        target.attributes = next;
        Ok(())
    }

    fn action_status(&mut self, msg: &Message, out: &mut Vec<Message>) -> Result<(), String> {
        let body: Value = match serde_json::from_slice(&msg.body) {
            Ok(b) => b,
            Err(_) if self.has(ServerFault::AcksMalformedStatus) => return Ok(()),
            Err(e) => return Err(format!("body: {e}")),
        };
        let id = body
            .get("actionId")
            .and_then(Value::as_u64)
            .ok_or("actionId missing")?;
        let status = body
            .get("actionStatus")
            .and_then(Value::as_str)
            .ok_or("actionStatus missing")?;
        if !ACTION_STATUSES.contains(&status) {
            return Err(format!("unknown actionStatus {status}"));
        }
        if let Some(m) = body.get("message").filter(|m| !m.is_null())
            && !(m.is_string() || m.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        {
            return Err("message is not a list of strings".into());
        }
        if body.get("message").is_none()
            && msg.property("correlation_id").is_some()
            && self.has(ServerFault::RequeuesStatusWithoutMessage)
        {
            // hawkBit's own: it appends the correlation id to the absent
            // list's immutable stand-in, and the exception is not fatal.
            self.requeue = true;
            return Err("UnsupportedOperationException".into());
        }
        let lines = body
            .get("message")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if lines > STATUS_MESSAGES && !self.has(ServerFault::NoStatusMessageQuota) {
            return Err(format!(
                "quota: {lines} messages in one status, at most {STATUS_MESSAGES}"
            ));
        }
        let Some(action) = self.actions.get(&id).cloned() else {
            return if self.has(ServerFault::AcceptsUnknownAction) {
                Ok(())
            } else {
                Err(format!(
                    "Got intermediate notification about action {id} but action does not exist"
                ))
            };
        };
        let thing = action.thing.clone();
        let canceling = matches!(action.state, ActionState::Canceling | ActionState::Canceled);
        let set = |s: &mut Self, state| {
            if let Some(a) = s.actions.get_mut(&id) {
                a.state = state;
            }
        };
        // hawkBit stores every status it takes, but a final one for an
        // action already closed, which it ignores.
        let installs_download = status == "FINISHED"
            && action.download_only
            && action.state == ActionState::Downloaded
            && !self.has(ServerFault::DownloadOnlyFinishIgnored);
        let stored =
            !matches!(status, "FINISHED" | "ERROR") || action.state.active() || installs_download;
        let taken = match status {
            "CANCELED" | "CANCEL_REJECTED"
                if !canceling && !self.has(ServerFault::AcceptsUnrequestedCancel) =>
            {
                Err(format!(
                    "action {id} is not canceling; {status} is not allowed"
                ))
            }
            "CANCELED" => {
                if !self.has(ServerFault::KeepsCanceledAction) {
                    set(self, ActionState::Canceled);
                }
                if !self.has(ServerFault::NoNextAfterCancel) {
                    self.send_current(&thing, out);
                }
                Ok(())
            }
            "CANCEL_REJECTED" => {
                let state = if self.has(ServerFault::CancelRejectedCloses) {
                    ActionState::Canceled
                } else {
                    ActionState::Running
                };
                set(self, state);
                Ok(())
            }
            "CONFIRMED" | "DENIED" if action.state != ActionState::WaitForConfirmation => Err(
                format!("action {id} is not waiting for confirmation; {status} is not allowed"),
            ),
            "CONFIRMED" => {
                set(self, ActionState::Running);
                self.send_current(&thing, out);
                Ok(())
            }
            "DENIED" if self.has(ServerFault::DeniedInstalls) => {
                set(self, ActionState::Running);
                self.send_current(&thing, out);
                Ok(())
            }
            // Stays waiting; nothing is sent.
            "DENIED" => Ok(()),
            // hawkBit's one exception: a download-only action the device
            // then installs.
            "FINISHED" if installs_download => {
                set(self, ActionState::Finished);
                self.install(&thing, action.ds);
                Ok(())
            }
            "FINISHED" | "ERROR" if !action.state.active() => {
                if self.has(ServerFault::RequeuesDuplicateFinal) {
                    self.requeue = true;
                    Err(format!("action {id} is already closed"))
                } else if self.has(ServerFault::RefusesDuplicateFinal) {
                    Err(format!("action {id} is already closed"))
                } else {
                    Ok(())
                }
            }
            "ERROR" if self.has(ServerFault::ErrorKeepsAction) => Ok(()),
            "FINISHED" | "ERROR"
                if action.state == ActionState::Canceling
                    && self.has(ServerFault::RefusesFinalWhileCanceling) =>
            {
                Err(format!(
                    "action {id} is canceling; only CANCELED or CANCEL_REJECTED answer it"
                ))
            }
            "FINISHED" | "ERROR" => {
                let finished = status == "FINISHED";
                if finished {
                    self.install(&thing, action.ds);
                }
                if !self.has(ServerFault::FinishedKeepsAction) {
                    set(
                        self,
                        if finished {
                            ActionState::Finished
                        } else {
                            ActionState::Error
                        },
                    );
                }
                let ask = if finished {
                    !self.has(ServerFault::NoAttributesAfterFinished)
                } else {
                    self.has(ServerFault::AttributesAfterError)
                };
                if ask {
                    out.push(self.request_attributes(&thing));
                }
                if !self.has(ServerFault::NoNextAfterFinished) {
                    self.send_current(&thing, out);
                }
                Ok(())
            }
            "DOWNLOADED" if action.download_only && action.state.active() => {
                set(self, ActionState::Downloaded);
                out.push(self.request_attributes(&thing));
                self.send_current(&thing, out);
                Ok(())
            }
            // Stored, and without effect on a closed action.
            _ if !action.state.active() && self.has(ServerFault::LateStatusReopens) => {
                set(self, ActionState::Running);
                Ok(())
            }
            _ => Ok(()),
        };
        if taken.is_ok() && stored {
            let mut entry = json!({
                "type": match status {
                    "CONFIRMED" => "running".to_owned(),
                    "DENIED" => "wait_for_confirmation".to_owned(),
                    other => other.to_lowercase(),
                },
                "messages": match body.get("message") {
                    _ if self.has(ServerFault::DropsFinalStatusMessages)
                        && matches!(status, "FINISHED" | "ERROR" | "CANCELED" | "CANCEL_REJECTED") =>
                    {
                        Vec::new()
                    }
                    Some(Value::String(m)) => vec![json!(m)],
                    Some(Value::Array(m)) => m.clone(),
                    _ => Vec::new(),
                },
            });
            if let Some(code) = body
                .get("code")
                .filter(|_| !self.has(ServerFault::DropsStatusCode))
            {
                entry["code"] = code.clone();
            }
            if let Some(a) = self.actions.get_mut(&id) {
                a.history.push(entry);
            }
        }
        taken
    }

    fn request_attributes(&self, thing: &str) -> Message {
        let reply_to = self
            .targets
            .get(thing)
            .map(|t| t.reply_to.clone())
            .unwrap_or_default();
        self.to_thing(
            &reply_to,
            thing,
            "EVENT",
            Some("REQUEST_ATTRIBUTES_UPDATE"),
            Vec::new(),
        )
    }

    /// The current action of a target: the oldest active one.
    fn current(&self, thing: &str) -> Option<&Action> {
        self.actions
            .values()
            .find(|a| a.thing == thing && a.state.active())
    }

    /// Sends the target its current action (CANCEL_DOWNLOAD when it is
    /// being canceled), if it has one.
    fn send_current(&self, thing: &str, out: &mut Vec<Message>) {
        let (Some(action), Some(target)) = (self.current(thing), self.targets.get(thing)) else {
            return;
        };
        let msg = match action.state {
            ActionState::Canceling => self.cancel_message(target, action),
            ActionState::WaitForConfirmation => self.download_message(target, action, "CONFIRM"),
            _ => self.download_message(target, action, ""),
        };
        out.push(msg);
    }

    fn cancel_message(&self, target: &Target, action: &Action) -> Message {
        let id = if self.has(ServerFault::CancelWrongActionId) {
            action.id + 1000
        } else {
            action.id
        };
        let body = serde_json::to_vec(&json!({ "actionId": id })).unwrap_or_default();
        self.to_thing(
            &target.reply_to,
            &action.thing,
            "EVENT",
            Some("CANCEL_DOWNLOAD"),
            body,
        )
    }

    /// DOWNLOAD_AND_INSTALL, DOWNLOAD, or `topic` when it is given
    /// (CONFIRM, whose body is the same).
    fn download_message(&self, target: &Target, action: &Action, topic: &str) -> Message {
        let modules: Vec<Value> = self
            .sets
            .get(&action.ds)
            .into_iter()
            .flatten()
            .filter_map(|m| self.modules.get(m))
            .map(|m| {
                let artifacts: Vec<Value> = if self.has(ServerFault::AnnouncesNoArtifacts) {
                    Vec::new()
                } else {
                    m.artifacts
                        .iter()
                        .map(|a| self.announce(&action.thing, m.id, a))
                        .collect()
                };
                json!({"moduleId": m.id, "moduleType": m.kind, "moduleVersion": m.version, "artifacts": artifacts})
            })
            .collect();
        let body = json!({
            "actionId": action.id,
            "targetSecurityToken": target.token,
            "softwareModules": modules,
        });
        let closed_window = action.window.is_some_and(|w| {
            !w.open_at(dmconf_harness::kit::dmf::now_ms() / 1000)
                || self.has(ServerFault::WindowNeverOpen)
        }) && !self.has(ServerFault::IgnoresMaintenanceWindow);
        let download = (action.download_only && !self.has(ServerFault::DownloadOnlyAsInstall))
            || closed_window;
        let topic = if !topic.is_empty() {
            topic
        } else if download {
            "DOWNLOAD"
        } else {
            "DOWNLOAD_AND_INSTALL"
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        self.to_thing(&target.reply_to, &action.thing, "EVENT", Some(topic), body)
    }

    fn to_thing(
        &self,
        exchange: &str,
        thing: &str,
        kind: &str,
        topic: Option<&str>,
        body: Vec<u8>,
    ) -> Message {
        let mut m = Message {
            channel: exchange.to_owned(),
            body,
            ..Default::default()
        };
        m.headers.insert("type".into(), json!(kind));
        if let Some(t) = topic {
            m.headers.insert("topic".into(), json!(t));
        }
        m.headers.insert("thingId".into(), json!(thing));
        m.headers.insert("tenant".into(), json!(self.tenant));
        m.headers
            .insert("content-type".into(), json!("application/json"));
        m.properties
            .insert("content_type".into(), json!("application/json"));
        if !m.body.is_empty() {
            m.properties
                .insert("content_encoding".into(), json!("UTF-8"));
        }
        m.properties.insert(
            "correlation_id".into(),
            json!(uuid::Uuid::new_v4().to_string()),
        );
        m
    }

    // ---- the Management API ----

    /// The tenant, as stored.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Creates a software module.
    pub fn create_module(&mut self, kind: &str, version: &str) -> u64 {
        let id = self.id();
        self.modules.insert(
            id,
            Module {
                id,
                kind: kind.to_owned(),
                version: version.to_owned(),
                artifacts: Vec::new(),
            },
        );
        id
    }

    /// Records that `thing` installed the distribution set `ds`.
    fn install(&mut self, thing: &str, ds: u64) {
        if let Some(t) = self.targets.get_mut(thing) {
            t.installed = Some(ds);
        }
    }

    /// The distribution set `thing` installed last, if any.
    pub fn installed(&self, thing: &str) -> Result<Option<u64>, MgmtError> {
        self.targets
            .get(thing)
            .map(|t| t.installed)
            .ok_or_else(|| not_found("Target", thing))
    }

    /// Uploads a file into module `sm`; answers as hawkBit does, with its
    /// size and hashes.
    pub fn add_artifact(
        &mut self,
        sm: u64,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<Value, MgmtError> {
        let id = self.id();
        let module = self.modules.get_mut(&sm).ok_or_else(|| {
            MgmtError(
                404,
                format!("SoftwareModule with given identifier {{{sm}}} does not exist."),
            )
        })?;
        let answer = json!({
            "id": id,
            "providedFilename": filename,
            "size": bytes.len(),
            "hashes": {"md5": dmf::md5_hex(&bytes), "sha1": dmf::sha1_hex(&bytes), "sha256": dmf::sha256(&bytes)},
        });
        module.artifacts.push(Artifact {
            filename: filename.to_owned(),
            bytes: Arc::new(bytes),
        });
        Ok(answer)
    }

    /// Where the download URLs it announces point: the base of its
    /// Management API server, which serves them too.
    pub fn set_download_base(&mut self, base: &str) {
        self.download_base = base.to_owned();
    }

    /// A download, as the thing asks for it: the file's bytes, if the
    /// request carries the thing's token (`Authorization: TargetToken`).
    pub fn download(
        &self,
        thing: &str,
        sm: u64,
        filename: &str,
        authorization: Option<&str>,
    ) -> Result<Arc<Vec<u8>>, MgmtError> {
        let target = self
            .targets
            .get(thing)
            .ok_or_else(|| MgmtError(404, format!("target {thing} does not exist")))?;
        let token = format!("TargetToken {}", target.token);
        if authorization != Some(token.as_str()) && !self.has(ServerFault::ServesWithoutToken) {
            return Err(MgmtError(401, "Full authentication is required".into()));
        }
        self.modules
            .get(&sm)
            .and_then(|m| m.artifacts.iter().find(|a| a.filename == filename))
            .map(|a| match self.has(ServerFault::ServesTruncatedArtifact) {
                true => Arc::new(a.bytes[..a.bytes.len().min(8192)].to_vec()),
                false => a.bytes.clone(),
            })
            .ok_or_else(|| MgmtError(404, format!("artifact {filename} not found")))
    }

    /// An artifact as DOWNLOAD_AND_INSTALL announces it to `thing`.
    fn announce(&self, thing: &str, sm: u64, a: &Artifact) -> Value {
        let sha1 = if self.has(ServerFault::AnnouncesWrongSha1) {
            dmf::sha1_hex(a.filename.as_bytes())
        } else {
            dmf::sha1_hex(&a.bytes)
        };
        let url = format!(
            "{}/{}/controller/v1/{thing}/softwaremodules/{sm}/artifacts/{}",
            self.download_base, self.tenant, a.filename
        );
        json!({
            "filename": a.filename,
            "hashes": {"sha1": sha1, "md5": dmf::md5_hex(&a.bytes)},
            "size": a.bytes.len(),
            "urls": {"HTTP": url},
        })
    }

    /// Creates a distribution set of existing modules.
    pub fn create_set(&mut self, modules: Vec<u64>) -> Result<u64, MgmtError> {
        if let Some(m) = modules.iter().find(|m| !self.modules.contains_key(m)) {
            return Err(MgmtError(
                404,
                format!("SoftwareModule with given identifier {{{m}}} does not exist."),
            ));
        }
        let id = self.id();
        self.sets.insert(id, modules);
        Ok(id)
    }

    /// Assigns a distribution set to a target: earlier running actions are
    /// canceled, and the new one is sent unless a cancel is pending.
    pub fn assign(
        &mut self,
        thing: &str,
        ds: u64,
        how: Assignment,
    ) -> Result<(u64, Vec<Message>), MgmtError> {
        let target = self
            .targets
            .get(thing)
            .cloned()
            .ok_or_else(|| not_found("Target", thing))?;
        if !self.sets.contains_key(&ds) {
            return Err(not_found("DistributionSet", &ds.to_string()));
        }
        let mut out = Vec::new();
        let open: Vec<u64> = self
            .actions
            .values()
            .filter(|a| a.thing == thing && a.state == ActionState::Running)
            .map(|a| a.id)
            .collect();
        for id in open {
            if let Some(a) = self.actions.get_mut(&id) {
                a.state = ActionState::Canceling;
                a.cancel = true;
            }
            let a = self.actions[&id].clone();
            out.push(self.cancel_message(&target, &a));
        }
        let id = self.id();
        let action = Action {
            id,
            thing: thing.to_owned(),
            download_only: how.download_only,
            ds,
            window: how.window,
            history: Vec::new(),
            state: if how.confirm
                && !target.auto_confirm
                && !self.has(ServerFault::SendsBeforeConfirmation)
            {
                ActionState::WaitForConfirmation
            } else {
                ActionState::Running
            },
            cancel: false,
        };
        self.actions.insert(id, action.clone());
        let held_back = self
            .actions
            .values()
            .any(|a| a.thing == thing && a.state == ActionState::Canceling);
        if !held_back {
            let topic = if action.state == ActionState::WaitForConfirmation {
                "CONFIRM"
            } else {
                ""
            };
            out.push(self.download_message(&target, &action, topic));
        }
        Ok((id, out))
    }

    /// Requests the cancellation of an action.
    pub fn cancel(&mut self, thing: &str, id: u64) -> Result<Vec<Message>, MgmtError> {
        let target = self
            .targets
            .get(thing)
            .cloned()
            .ok_or_else(|| not_found("Target", thing))?;
        let action = self
            .actions
            .get_mut(&id)
            .filter(|a| a.thing == thing)
            .ok_or_else(|| not_found("Action", &id.to_string()))?;
        if action.state != ActionState::Running {
            return Err(MgmtError(
                405,
                "Actions in canceling or canceled state cannot be canceled".into(),
            ));
        }
        action.state = ActionState::Canceling;
        action.cancel = true;
        let a = action.clone();
        Ok(vec![self.cancel_message(&target, &a)])
    }

    /// A target as the Management API shows it.
    pub fn target(&self, thing: &str) -> Result<Value, MgmtError> {
        let t = self
            .targets
            .get(thing)
            .ok_or_else(|| not_found("Target", thing))?;
        let status = match self.current(thing) {
            Some(_) => "pending",
            None => "registered",
        };
        let mut answer = json!({
            "controllerId": thing,
            "name": t.name,
            "address": t.address.clone().unwrap_or_else(|| format!("amqp:/{}", t.reply_to)),
            "updateStatus": status,
            "securityToken": t.token,
        });
        if let Some(k) = &t.kind {
            answer["targetTypeName"] = json!(k);
        }
        Ok(answer)
    }

    /// Sets a target's address, as the Management API may (a device that
    /// moved to DDI).
    pub fn set_address(&mut self, thing: &str, address: &str) -> Result<Value, MgmtError> {
        let t = self
            .targets
            .get_mut(thing)
            .ok_or_else(|| not_found("Target", thing))?;
        t.address = Some(address.to_owned());
        self.target(thing)
    }

    /// Creates a target type named `name`; answers its id.
    pub fn create_target_type(&mut self, name: &str) -> Result<u64, MgmtError> {
        if self.target_types.iter().any(|t| t == name) {
            return Err(MgmtError(409, format!("target type {name} exists")));
        }
        self.target_types.push(name.to_owned());
        Ok(self.id())
    }

    /// A target's attributes.
    pub fn attributes(&self, thing: &str) -> Result<BTreeMap<String, String>, MgmtError> {
        self.targets
            .get(thing)
            .map(|t| t.attributes.clone())
            .ok_or_else(|| not_found("Target", thing))
    }

    /// One action as the Management API (0.10 and later) shows it.
    pub fn action(&self, thing: &str, id: u64) -> Result<Value, MgmtError> {
        let a = self
            .actions
            .get(&id)
            .filter(|a| a.thing == thing)
            .ok_or_else(|| not_found("Action", &id.to_string()))?;
        Ok(json!({
            "id": a.id,
            "type": if a.cancel && a.state != ActionState::Running { "cancel" } else { "update" },
            "active": a.state.active(),
            "status": a.state.name(),
        }))
    }

    /// An action's status history, newest first, as the Management API
    /// pages it.
    pub fn statuses(&self, thing: &str, id: u64) -> Result<Vec<Value>, MgmtError> {
        let a = self
            .actions
            .get(&id)
            .filter(|a| a.thing == thing)
            .ok_or_else(|| not_found("Action", &id.to_string()))?;
        Ok(a.history
            .iter()
            .enumerate()
            .rev()
            .map(|(n, e)| {
                let mut e = e.clone();
                e["id"] = json!(n + 1);
                e
            })
            .collect())
    }

    /// A target's actions, newest first.
    pub fn actions(&self, thing: &str) -> Result<Vec<Value>, MgmtError> {
        if !self.targets.contains_key(thing) {
            return Err(not_found("Target", thing));
        }
        Ok(self
            .actions
            .values()
            .rev()
            .filter(|a| a.thing == thing)
            .filter_map(|a| self.action(thing, a.id).ok())
            .collect())
    }

    /// Deletes a target; hawkBit then sends THING_DELETED.
    pub fn delete_target(&mut self, thing: &str) -> Result<Vec<Message>, MgmtError> {
        let t = self
            .targets
            .remove(thing)
            .ok_or_else(|| not_found("Target", thing))?;
        self.actions.retain(|_, a| a.thing != thing);
        // hawkBit tells only a thing it reaches over AMQP.
        let amqp = t.address.as_deref().is_none_or(|a| a.starts_with("amqp:"));
        if self.has(ServerFault::NoThingDeleted)
            || !(amqp || self.has(ServerFault::DeletedToAnyAddress))
        {
            return Ok(Vec::new());
        }
        Ok(vec![self.to_thing(
            &t.reply_to,
            thing,
            "THING_DELETED",
            None,
            Vec::new(),
        )])
    }
}

fn not_found(kind: &str, id: &str) -> MgmtError {
    MgmtError(
        404,
        format!("{kind} with given identifier {{{id}}} does not exist."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(headers: &[(&str, &str)], props: &[(&str, &str)], body: &str) -> Message {
        let mut m = Message {
            body: body.as_bytes().to_vec(),
            ..Default::default()
        };
        for (k, v) in headers {
            m.headers.insert((*k).into(), json!(v));
        }
        for (k, v) in props {
            m.properties.insert((*k).into(), json!(v));
        }
        m
    }

    #[test]
    fn a_daily_window_opens_at_its_time_for_its_duration() {
        let w = Window::parse("30 15 10 ? * *", "00:02:00", "+01:00").unwrap();
        // 10:15:30 at +01:00 is 09:15:30 UTC.
        assert_eq!(w.start, 9 * 3600 + 15 * 60 + 30);
        let day = 20_000 * DAY;
        assert!(!w.open_at(day + w.start - 1));
        assert!(w.open_at(day + w.start));
        assert!(w.open_at(day + w.start + 119));
        assert!(!w.open_at(day + w.start + 120));
        // A window that runs past midnight is open after it.
        let late = Window::parse("0 59 23 ? * *", "00:10:00", "+00:00").unwrap();
        assert!(late.open_at(day + 60));
        assert!(Window::parse("0 0/5 * * * ?", "00:10:00", "+00:00").is_err());
    }

    fn register(s: &mut State, thing: &str) -> (Verdict, Vec<Message>) {
        let h = [
            ("type", "THING_CREATED"),
            ("tenant", "t"),
            ("thingId", thing),
        ];
        s.handle(&msg(&h, &[("reply_to", "dev.x")], ""), 0)
    }

    fn status(s: &mut State, id: u64, st: &str) -> (Verdict, Vec<Message>) {
        let h = [
            ("type", "EVENT"),
            ("topic", "UPDATE_ACTION_STATUS"),
            ("tenant", "T"),
        ];
        let body = format!(r#"{{"actionId":{id},"actionStatus":"{st}","message":[]}}"#);
        s.handle(&msg(&h, &[("content_type", "application/json")], &body), 0)
    }

    fn topic(m: &Message) -> String {
        m.header("topic")
            .unwrap_or_else(|| m.header("type").unwrap_or_default())
    }

    #[test]
    fn registration_and_the_cancel_flow() {
        let mut s = State::new("t", None);
        let h = [
            ("type", "THING_CREATED"),
            ("tenant", "t"),
            ("thingId", "d1"),
        ];
        assert!(matches!(
            s.handle(&msg(&h, &[], ""), 0).0,
            Verdict::Refuse(_)
        ));
        assert_eq!(register(&mut s, "d1"), (Verdict::Accept, vec![]));
        let sm = s.create_module("os", "1");
        let ds = s.create_set(vec![sm]).unwrap();
        let (a1, out) = s.assign("d1", ds, Assignment::default()).unwrap();
        assert_eq!(topic(&out[0]), "DOWNLOAD_AND_INSTALL");
        assert_eq!(out[0].header("tenant").as_deref(), Some("T"));
        // A second assignment cancels the first and is held back.
        let (a2, out) = s.assign("d1", ds, Assignment::default()).unwrap();
        assert_eq!(
            out.iter().map(topic).collect::<Vec<_>>(),
            ["CANCEL_DOWNLOAD"]
        );
        let (_, out) = register(&mut s, "d1");
        assert_eq!(topic(&out[0]), "CANCEL_DOWNLOAD");
        assert!(matches!(
            status(&mut s, a2, "CANCELED").0,
            Verdict::Refuse(_)
        ));
        let (v, out) = status(&mut s, a1, "CANCELED");
        assert_eq!(v, Verdict::Accept);
        assert_eq!(out[0].body_json().unwrap()["actionId"], json!(a2));
        // FINISHED closes; the same again is ignored, not refused.
        assert_eq!(status(&mut s, a2, "FINISHED").0, Verdict::Accept);
        assert_eq!(status(&mut s, a2, "FINISHED"), (Verdict::Accept, vec![]));
        assert_eq!(s.action("d1", a2).unwrap()["status"], json!("finished"));
    }

    #[test]
    fn limits_and_attribute_modes() {
        let mut s = State::new("t", None);
        let long = "x".repeat(257);
        assert!(matches!(register(&mut s, &long).0, Verdict::Refuse(_)));
        assert_eq!(register(&mut s, &long[..256]).0, Verdict::Accept);
        register(&mut s, "d1");
        let update = |s: &mut State, body: &str| {
            let h = [
                ("type", "EVENT"),
                ("topic", "UPDATE_ATTRIBUTES"),
                ("tenant", "t"),
                ("thingId", "d1"),
            ];
            s.handle(&msg(&h, &[("content_type", "application/json")], body), 0)
                .0
        };
        let key = |n: usize| format!(r#"{{"attributes":{{"{}":"v"}}}}"#, "k".repeat(n));
        assert_eq!(update(&mut s, &key(128)), Verdict::Accept);
        assert!(matches!(update(&mut s, &key(129)), Verdict::Refuse(_)));
        assert_eq!(
            update(&mut s, r#"{"attributes":{"a":"1"},"mode":"REPLACE"}"#),
            Verdict::Accept
        );
        assert_eq!(s.attributes("d1").unwrap().len(), 1);
        assert_eq!(
            update(&mut s, r#"{"attributes":{"a":""},"mode":"REMOVE"}"#),
            Verdict::Accept
        );
        assert!(s.attributes("d1").unwrap().is_empty());
    }
}
