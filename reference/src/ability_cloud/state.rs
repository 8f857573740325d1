//! The reference platform's model: identities, object models,
//! references, types and extensions of the devices it serves, and the
//! rules of the Device API v2 by which it answers a request with
//! acknowledgements and request-response notifications. Pure: a request
//! in, the cloud-to-device messages out.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::CloudFault;
use dmconf_harness::kit::Message;
use dmconf_harness::kit::ability::{
    self, ACK_LEVELS, ACTIONS, HEADER_LIMIT_DETAILS, Limits, devicebound_topic,
};

/// The outcome of one action.
struct Outcome {
    success: bool,
    code: &'static str,
    details: String,
    /// Request-response notifications (model.query).
    notifications: Vec<Message>,
}

fn ok() -> Outcome {
    Outcome {
        success: true,
        code: "ok",
        details: String::new(),
        notifications: Vec::new(),
    }
}

fn fail(code: &'static str, details: impl Into<String>) -> Outcome {
    Outcome {
        success: false,
        code,
        details: details.into(),
        notifications: Vec::new(),
    }
}

/// What one request carries beyond its body, as the platform reads it.
#[derive(Clone, Debug, Default)]
struct Request {
    action: String,
    correlation_id: String,
    ack: String,
    target: Option<String>,
    context: Option<String>,
    encoding: String,
    headers: Map<String, Value>,
}

/// One platform tenant, serving the devices of one IoT hub.
pub struct State {
    fault: Option<CloudFault>,
    limits: Limits,
    identities: BTreeMap<String, Vec<String>>,
    models: BTreeMap<(String, String), Value>,
    references: BTreeMap<(String, String, String), Value>,
    types: BTreeMap<(String, String), Value>,
    deleted_types: Vec<String>,
    extensions: BTreeMap<(String, String), Value>,
    /// Seconds each request takes (the `slow` hook).
    slow: u64,
    /// The correlationIds seen (only for the dedup fault).
    seen: Vec<String>,
}

fn text(v: &Value) -> Option<String> {
    dmconf_harness::kit::scalar_text(v)
}

impl State {
    /// An empty platform.
    pub fn new(fault: Option<CloudFault>, limits: Limits) -> Self {
        State {
            fault,
            limits,
            identities: BTreeMap::new(),
            models: BTreeMap::new(),
            references: BTreeMap::new(),
            types: BTreeMap::new(),
            deleted_types: Vec::new(),
            extensions: BTreeMap::new(),
            slow: 0,
            seen: Vec::new(),
        }
    }

    /// From now on each request takes `seconds` to process.
    pub fn set_slow(&mut self, seconds: u64) {
        self.slow = seconds;
    }

    fn has(&self, f: CloudFault) -> bool {
        self.fault == Some(f)
    }

    /// Answers one device-to-cloud message of `device`: the acks and
    /// notifications to send, in order. Telemetry gets no answer.
    pub fn handle(
        &mut self,
        device: &str,
        msg: &Message,
        decode_problem: Option<&str>,
    ) -> Vec<Message> {
        let h = |k: &str| msg.header(k);
        match h("msgType").as_deref() {
            Some("action") => {}
            // Telemetry is the platform's, not the Device API's.
            Some("variable" | "alarm" | "event") => return Vec::new(),
            Some(_) if self.has(CloudFault::DropsUnknownMsgType) => return Vec::new(),
            None if self.has(CloudFault::DropsIncompleteRequests) => return Vec::new(),
            _ => {}
        }
        if h("action").is_none() && self.has(CloudFault::DropsIncompleteRequests) {
            return Vec::new();
        }
        let absent = if self.has(CloudFault::MissingAckMeansAll) {
            "all"
        } else {
            "none"
        };
        let raw_ack = h("ack").unwrap_or_else(|| absent.into());
        let mut req = Request {
            action: h("action").unwrap_or_default(),
            correlation_id: h("correlationId")
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            ack: raw_ack.clone(),
            target: h("target"),
            context: h("context"),
            encoding: ability::content_encoding(msg).unwrap_or_else(|| "utf-8".into()),
            headers: msg.headers.clone().into_iter().collect(),
        };
        // A batch with no context of its own answers with the elevated one.
        if req.action == "batch.execute" && req.context.is_none() {
            req.context = h("e_context");
        }
        if self.has(CloudFault::NoGeneratedCorrelationId) && h("correlationId").is_none() {
            req.correlation_id = String::new();
        }
        if self.has(CloudFault::DedupsByCorrelationId) && h("correlationId").is_some() {
            if self.seen.contains(&req.correlation_id) {
                return Vec::new();
            }
            self.seen.push(req.correlation_id.clone());
        }
        let outcome = match self.validate(msg, &req, decode_problem) {
            Err(o) => {
                // A request whose `ack` is invalid still hears why.
                if !ACK_LEVELS.contains(&req.ack.as_str()) && !self.has(CloudFault::DropsInvalidAck)
                {
                    req.ack = "negative".into();
                }
                o
            }
            Ok(_) if self.over_time(msg) => fail(
                "timeout_exceeded",
                format!(
                    "processing takes {} s, over the request's timeout",
                    self.slow
                ),
            ),
            Ok(body) => self.perform(device, &req, body),
        };
        self.answer(device, &req, outcome)
    }

    fn validate(
        &self,
        msg: &Message,
        req: &Request,
        problem: Option<&str>,
    ) -> Result<Value, Outcome> {
        let v = "platform_event_validation_error";
        let limit = if self.has(CloudFault::AcceptsOversizedHeaders) {
            self.limits.headers + 1
        } else {
            self.limits.headers
        };
        if ability::header_size(msg) > limit {
            return Err(if self.has(CloudFault::WrongHeaderLimitError) {
                fail("internal_platform_error", "headers too large")
            } else {
                fail(v, HEADER_LIMIT_DETAILS)
            });
        }
        if msg.header("msgType").as_deref() != Some("action") {
            return Err(fail(v, "msgType must be action"));
        }
        if req.action.is_empty() {
            return Err(fail(v, "the action header is missing"));
        }
        if msg.header("version").as_deref() != Some("2") && !self.has(CloudFault::IgnoresVersion) {
            return Err(fail(v, "version must be 2"));
        }
        if !ACTIONS.contains(&req.action.as_str()) && !self.has(CloudFault::UnknownActionOk) {
            return Err(fail(
                "operation_not_supported",
                format!("unknown action `{}`", req.action),
            ));
        }
        if !ACK_LEVELS.contains(&req.ack.as_str()) {
            return Err(fail(v, format!("unknown ack level `{}`", req.ack)));
        }
        let timeout = msg.header("timeout");
        if timeout.is_some_and(|t| t.parse::<u64>().is_err())
            && !self.has(CloudFault::IgnoresTimeout)
        {
            return Err(fail(v, "timeout is an integer number of seconds"));
        }
        let ct = msg.property("$.ct").or_else(|| msg.header("content-type"));
        let ct = ct.filter(|_| !self.has(CloudFault::IgnoresContentType));
        if ct.is_some_and(|c| {
            !c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        }) {
            return Err(fail(v, "content-type must be application/json"));
        }
        let enc = req.encoding.to_ascii_lowercase();
        if !["utf-8", "utf8", "gzip", "deflate"].contains(&enc.as_str()) {
            return Err(fail(
                v,
                format!("content-encoding `{}` is not supported", req.encoding),
            ));
        }
        if let Some(p) = problem {
            if p.contains("content-encoding") {
                return Err(if self.has(CloudFault::WrongDecompressionError) {
                    fail(v, p)
                } else {
                    fail("decompression_error", p)
                });
            }
            return Err(fail(v, p));
        }
        if msg.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&msg.body).map_err(|e| {
            if self.has(CloudFault::NonJsonInternalError) {
                fail("internal_platform_error", format!("{e}"))
            } else {
                fail(v, format!("the body is not JSON: {e}"))
            }
        })
    }

    /// Whether processing takes longer than the request's timeout
    /// (default 300 s, as batch.execute's).
    fn over_time(&self, msg: &Message) -> bool {
        let timeout = msg
            .header("timeout")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(300);
        self.slow > timeout && !self.has(CloudFault::TimeoutNotEnforced)
    }

    fn header<'a>(&self, req: &'a Request, k: &str) -> Option<&'a Value> {
        req.headers.get(k)
    }

    fn perform(&mut self, device: &str, req: &Request, body: Value) -> Outcome {
        let h = |k: &str| self.header(req, k).and_then(text);
        let model = h("model").unwrap_or_else(|| "abb.ability.device".into());
        let core = [
            "identity.create",
            "identity.delete",
            "model.create",
            "model.query",
        ];
        if self.has(CloudFault::MissingActions)
            && !core.contains(&req.action.as_str())
            && req.action != "batch.execute"
        {
            return fail(
                "operation_not_supported",
                format!("`{}` is not implemented", req.action),
            );
        }
        match req.action.as_str() {
            "identity.create" => {
                let Some(id) = body.get("identity").and_then(Value::as_str) else {
                    return fail("platform_event_validation_error", "`identity` is required");
                };
                let parent = h("parent").unwrap_or_else(|| device.to_owned());
                let list = self.identities.entry(parent).or_default();
                if list.iter().any(|i| i == id) {
                    if self.has(CloudFault::DifferentResultOnRepeat) {
                        return fail("http_response_error", "identity exists");
                    }
                    return ok();
                }
                list.push(id.to_owned());
                ok()
            }
            "identity.delete" => {
                let Some(id) = body.get("identity").and_then(Value::as_str) else {
                    return fail("platform_event_validation_error", "`identity` is required");
                };
                let parent = h("parent").unwrap_or_else(|| device.to_owned());
                let list = self.identities.entry(parent).or_default();
                match list.iter().position(|i| i == id) {
                    Some(i) => {
                        list.remove(i);
                        ok()
                    }
                    None => fail(
                        "http_response_error",
                        format!("identity `{id}` does not exist"),
                    ),
                }
            }
            "model.create" => {
                // Only the fault needs the request again, for its notification.
                let created = self
                    .has(CloudFault::NotifiesModelCreate)
                    .then(|| body.clone());
                let mut o = self.model_create(device, body);
                if let Some(model) = created.filter(|_| o.success) {
                    let event = "Abb.Ability.ObjectModel.Created";
                    let n = self.notification(device, req, event, &model);
                    o.notifications.push(n);
                }
                o
            }
            "model.update" | "model.patch" => {
                let Some(object) = h("objectId") else {
                    return fail(
                        "platform_event_validation_error",
                        "`objectId` header is required",
                    );
                };
                let key = (object, model);
                let Some(stored) = self.models.get(&key).cloned() else {
                    return fail("http_response_error", "the object model does not exist");
                };
                let version = stored.get("version").and_then(Value::as_i64).unwrap_or(1);
                let sent = body.get("version").and_then(Value::as_i64);
                if req.action == "model.update" && sent != Some(version) {
                    return fail("http_response_error", "version mismatch");
                }
                if req.action == "model.patch" && sent.is_none_or(|s| s < version) {
                    return fail(
                        "http_response_error",
                        "version is required and must not be older",
                    );
                }
                if req.action == "model.update" && self.has(CloudFault::UpdateNotStored) {
                    return ok();
                }
                let owner = stored.get("owner").cloned().unwrap_or_default();
                let mut next =
                    if req.action == "model.update" || self.has(CloudFault::PatchReplaces) {
                        body.clone()
                    } else {
                        merge(stored, &body)
                    };
                next["owner"] = owner;
                next["version"] = json!(version + 1);
                next["objectId"] = json!(key.0);
                next["model"] = json!(key.1);
                self.models.insert(key, next);
                ok()
            }
            "model.delete" => {
                let Some(object) = h("objectId") else {
                    return fail(
                        "platform_event_validation_error",
                        "`objectId` header is required",
                    );
                };
                if self.has(CloudFault::DeleteNotApplied) {
                    return ok();
                }
                match self.models.remove(&(object, model)) {
                    Some(_) => ok(),
                    None => fail("http_response_error", "the object model does not exist"),
                }
            }
            "model.query" => self.model_query(device, req, body),
            "owner.remove" => match body.as_array() {
                Some(a) if a.len() == 1 => ok(),
                Some(a) if !a.is_empty() && self.has(CloudFault::OwnerRemoveTakesMany) => ok(),
                _ => fail("platform_event_validation_error", "exactly one model"),
            },
            "reference.create" => {
                let Some(object) = h("objectId") else {
                    return fail(
                        "platform_event_validation_error",
                        "`objectId` header is required",
                    );
                };
                let Some(list) = body.as_array() else {
                    return fail(
                        "platform_event_validation_error",
                        "the body is an array of references",
                    );
                };
                for r in list {
                    let name = r
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let key = (object.clone(), model.clone(), name);
                    if self.has(CloudFault::ReferenceRepeatFails)
                        && self.references.contains_key(&key)
                    {
                        return fail("http_response_error", "the reference exists");
                    }
                    self.references.insert(key, r.clone());
                }
                ok()
            }
            "reference.delete" => {
                let (Some(object), Some(name)) = (h("objectId"), h("name")) else {
                    return fail(
                        "platform_event_validation_error",
                        "`objectId` and `name` are required",
                    );
                };
                let gone = self.references.remove(&(object, model, name)).is_none();
                if gone && self.has(CloudFault::ReferenceRepeatFails) {
                    return fail("http_response_error", "no such reference");
                }
                ok()
            }
            "type.create" => {
                let id = body
                    .get("typeId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let version = body
                    .get("version")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if id.is_empty() {
                    return fail("platform_event_validation_error", "`typeId` is required");
                }
                if self.types.contains_key(&(id.clone(), version.clone())) {
                    return fail("http_response_error", "the type version exists");
                }
                self.types.insert((id, version), body);
                ok()
            }
            "type.delete" => {
                let Some(id) = h("typeId") else {
                    return fail(
                        "platform_event_validation_error",
                        "`typeId` header is required",
                    );
                };
                if self.deleted_types.contains(&id) || !self.types.keys().any(|(t, _)| *t == id) {
                    return fail("http_response_error", "no such type");
                }
                self.deleted_types.push(id);
                ok()
            }
            "type.query" => ok(),
            "extension.create" => {
                let Some(object) = h("objectId") else {
                    return fail(
                        "platform_event_validation_error",
                        "`objectId` header is required",
                    );
                };
                if !self.has(CloudFault::ExtensionNotStored) {
                    self.extensions.insert((object, model), body);
                }
                ok()
            }
            "extension.get" => {
                if !["all", "positive"].contains(&req.ack.as_str())
                    && !self.has(CloudFault::ExtensionGetAnyAck)
                {
                    return fail(
                        "platform_event_validation_error",
                        "extension.get needs ack all or positive",
                    );
                }
                let Some(object) = h("objectId") else {
                    return fail(
                        "platform_event_validation_error",
                        "`objectId` header is required",
                    );
                };
                match self.extensions.get(&(object, model)) {
                    Some(_) => ok(),
                    None => fail("http_response_error", "no extension"),
                }
            }
            "batch.execute" => self.batch(device, req, body),
            _ if self.has(CloudFault::UnknownActionOk) => ok(),
            other => fail(
                "operation_not_supported",
                format!("`{other}` is not supported"),
            ),
        }
    }

    fn model_create(&mut self, device: &str, body: Value) -> Outcome {
        let Some(obj) = body.as_object() else {
            return fail(
                "platform_event_validation_error",
                "the body is an object model",
            );
        };
        let model = obj
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("abb.ability.device")
            .to_owned();
        if obj.get("type").and_then(Value::as_str).is_none() {
            return fail("platform_event_validation_error", "`type` is required");
        }
        let given = obj
            .get("objectId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let object = match given {
            Some(id) => id,
            // Without objectId the documented exception: a new model each time.
            None => uuid::Uuid::new_v4().to_string(),
        };
        let mut key = (object.clone(), model.clone());
        if self.has(CloudFault::DuplicateModelOnRepeat) && self.models.contains_key(&key) {
            // The fault: an insert, not an upsert; a second record of the same object.
            key.0 = format!("{object}#{}", self.models.len());
        }
        let version = self
            .models
            .get(&key)
            .and_then(|m| m.get("version"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let mut stored = body.clone();
        stored["objectId"] = json!(object);
        stored["model"] = json!(model);
        stored["version"] = json!(version + 1);
        stored["owner"] = json!(device);
        self.models.insert(key, stored);
        ok()
    }

    fn model_query(&self, device: &str, req: &Request, body: Value) -> Outcome {
        let Some(query) = body.get("query").and_then(Value::as_str) else {
            return fail("platform_event_validation_error", "`query` is required");
        };
        let wanted = query
            .split("hasObjectId('")
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .map(str::to_owned);
        let matches: Vec<&Value> = self
            .models
            .iter()
            .filter(|(_, m)| {
                m.get("owner").and_then(Value::as_str) == Some(device)
                    && wanted
                        .as_deref()
                        .is_none_or(|w| m.get("objectId").and_then(Value::as_str) == Some(w))
            })
            .map(|(_, m)| m)
            .collect();
        let mut out = ok();
        for m in matches {
            let n = self.notification(device, req, "Abb.Ability.ObjectModel.Updated", m);
            let size = ability::iothub_size(&n);
            let oversized_faults = [
                CloudFault::SendsOversizedC2d,
                CloudFault::DropsOversizedAnswer,
            ];
            if size > self.limits.c2d && !oversized_faults.into_iter().any(|f| self.has(f)) {
                return fail(
                    "response_too_large",
                    format!(
                        "a queried model would be a {size}-byte message; the limit is {}",
                        self.limits.c2d
                    ),
                );
            }
            if size > self.limits.c2d && self.has(CloudFault::DropsOversizedAnswer) {
                continue;
            }
            out.notifications.push(n);
            if self.has(CloudFault::ReferencesNotQueried) {
                continue;
            }
            let source = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
            let (object, model) = (source("objectId"), source("model"));
            for ((o, md, _), r) in &self.references {
                if o == object && md == model {
                    let mut body = r.clone();
                    body["objectId"] = json!(o);
                    body["model"] = json!(md);
                    out.notifications.push(self.notification(
                        device,
                        req,
                        "Abb.Ability.ObjectModel.Reference.Updated",
                        &body,
                    ));
                }
            }
        }
        out
    }

    fn batch(&mut self, device: &str, req: &Request, body: Value) -> Outcome {
        let Some(entries) = body.as_array() else {
            return fail(
                "platform_event_validation_error",
                "the body is an array of entries",
            );
        };
        let elevated = |k: &str| req.headers.get(&format!("e_{k}")).and_then(text);
        let fail_on_error = req.headers.get("failOnError").and_then(text).as_deref()
            == Some("true")
            && !self.has(CloudFault::BatchIgnoresFailOnError)
            || self.has(CloudFault::BatchStopsOnError);
        let mut failed = Vec::new();
        let mut out = ok();
        for (i, e) in entries.iter().enumerate() {
            let id = e.get("id").and_then(Value::as_i64).unwrap_or(i as i64);
            let deps_failed = e
                .get("dependsOn")
                .and_then(Value::as_array)
                .is_some_and(|d| {
                    d.iter()
                        .filter_map(Value::as_i64)
                        .any(|d| failed.contains(&d))
                });
            if deps_failed && !self.has(CloudFault::BatchIgnoresDependsOn) {
                failed.push(id);
                continue;
            }
            let mut headers = Map::new();
            if let Some(obj) = e.as_object() {
                for (k, v) in obj {
                    if k != "body" && k != "dependsOn" && k != "id" {
                        headers.insert(k.clone(), Value::String(text(v).unwrap_or_default()));
                    }
                }
            }
            let action = headers
                .get("action")
                .and_then(text)
                .or_else(|| elevated("action"))
                .unwrap_or_default();
            let own = headers
                .get("context")
                .and_then(text)
                .filter(|_| !self.has(CloudFault::LosesEntryContext));
            let context = own.or_else(|| {
                elevated("context").filter(|_| !self.has(CloudFault::IgnoresElevatedContext))
            });
            let entry = Request {
                action,
                correlation_id: headers
                    .get("correlationId")
                    .and_then(text)
                    .or_else(|| elevated("correlationId"))
                    .unwrap_or_else(|| req.correlation_id.clone()),
                ack: "all".into(),
                target: req.target.clone(),
                context,
                encoding: req.encoding.clone(),
                headers,
            };
            let o = if entry.action == "batch.execute" || !ACTIONS.contains(&entry.action.as_str())
            {
                fail("operation_not_supported", "not in a batch")
            } else {
                self.perform(
                    device,
                    &entry,
                    e.get("body").cloned().unwrap_or(Value::Null),
                )
            };
            out.notifications.extend(o.notifications);
            if !o.success {
                failed.push(id);
                if fail_on_error {
                    break;
                }
            }
        }
        if !failed.is_empty() {
            let ids: Vec<String> = failed.iter().map(i64::to_string).collect();
            let mut f = fail(
                "batch_execute_operation_error",
                format!(
                    "One of the batch actions failed to process: entries {}",
                    ids.join(", ")
                ),
            );
            f.notifications = out.notifications;
            return f;
        }
        out
    }

    /// The C2D headers every answer to `req` carries.
    fn reply(&self, device: &str, req: &Request, msg_type: &str) -> Message {
        let mut m = Message {
            channel: devicebound_topic(device),
            ..Default::default()
        };
        let mut put = |k: &str, v: &str| {
            m.headers.insert(k.into(), Value::String(v.to_owned()));
        };
        put("msgType", msg_type);
        put("version", "2");
        put("action", &req.action);
        if !(self.has(CloudFault::DropsCorrelationId) || req.correlation_id.is_empty()) {
            put("correlationId", &req.correlation_id);
        }
        if let Some(t) = &req.target {
            put("target", t);
        }
        if let Some(c) = &req.context {
            let dropped = msg_type == "ack" && self.has(CloudFault::DropsContextFromAcks)
                || msg_type == "notification"
                    && self.has(CloudFault::DropsContextFromNotifications);
            if !dropped {
                let c = if self.has(CloudFault::ReencodesContext) {
                    c.replace(' ', "+")
                } else {
                    c.clone()
                };
                put("context", &c);
            }
        }
        m.properties
            .insert("$.mid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.properties.insert(
            "$.to".into(),
            json!(format!("/devices/{device}/messages/devicebound")),
        );
        m.properties
            .insert("$.ct".into(), json!("application/json"));
        let enc = if ["gzip", "deflate"].contains(&req.encoding.to_ascii_lowercase().as_str()) {
            req.encoding.clone()
        } else {
            "utf-8".to_owned()
        };
        m.properties.insert("$.ce".into(), json!(enc));
        m
    }

    fn notification(&self, device: &str, req: &Request, event: &str, model: &Value) -> Message {
        let mut n = self.reply(device, req, "notification");
        n.headers.insert("eventType".into(), json!(event));
        for k in ["objectId", "model"] {
            if let Some(v) = model.get(k).and_then(Value::as_str) {
                n.headers.insert(k.into(), json!(v));
            }
        }
        let mut body = model.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("owner");
        }
        n.body = serde_json::to_vec(&body).unwrap_or_default();
        n
    }

    fn answer(&self, device: &str, req: &Request, o: Outcome) -> Vec<Message> {
        let mut out = o.notifications;
        let wanted = match req.ack.as_str() {
            "all" => true,
            "positive" => o.success,
            "negative" => !o.success,
            _ => false,
        };
        let wanted = wanted || self.has(CloudFault::AcksRegardlessOfLevel);
        if wanted {
            let mut ack = self.reply(device, req, "ack");
            ack.body = serde_json::to_vec(&json!({
                "success": o.success, "code": o.code, "details": o.details,
            }))
            .unwrap_or_default();
            out.push(ack);
        }
        out
    }
}

fn merge(mut base: Value, patch: &Value) -> Value {
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            match (b.get_mut(k), v) {
                (Some(bv @ Value::Object(_)), Value::Object(_)) => {
                    *bv = merge(bv.clone(), v);
                }
                _ => {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
    }
    base
}
