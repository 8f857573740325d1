//! The reference Device API v2 device: correct by default, and able to
//! carry one realistic mistake at a time ([`AbilityDeviceFault`]).
//!
//! It connects to IoT Hub over TLS as Azure's device SDKs do, subscribes
//! to its cloud-to-device topic, keeps what arrives (property bags
//! decoded, bodies decompressed), and, when a suite asks through its
//! hooks, sends a request (`perform`) or tells what it last received
//! (`received`), or goes away for a while (`offline`), keeping its
//! session (CleanSession 0) so that what is sent meanwhile waits for it.
//! It never sends a message over IoT Hub's device-to-cloud limit: asked
//! to, it refuses and says why.

mod request;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use crate::Fault;
use dmconf_harness::kit::ability::{self, Limits};
use dmconf_harness::kit::{self, Endpoint, Login, Message, MqttClient, Received};
use dmconf_harness::suite::{Protocol, Role};
use dmconf_harness::{BoxFuture, Instance, Setup};
use tokio::sync::mpsc;

crate::fault_catalogue! {
    /// A realistic mistake the reference device can be started with.
    pub enum AbilityDeviceFault {
        /// Sends requests without the `version` header.
        OmitsVersion = "omits-version",
        /// Declares gzip and sends the body uncompressed.
        GzipDeclaredPlain = "gzip-declared-plain",
        /// Sends a message over the device-to-cloud limit when asked to.
        SendsOversizedD2c = "sends-oversized-d2c",
        /// Stops serving after a cloud-to-device message near 64 kB.
        HangsOnLargeC2d = "hangs-on-large-c2d",
        /// Keeps property values as they came, percent-encoded.
        NoPropertyDecoding = "no-property-decoding",
        /// Percent-encodes property values twice (once by hand, once as
        /// the property bag does).
        DoubleEncodesValues = "double-encodes-values",
        /// Declares deflate and sends a gzip body.
        DeflateSendsGzip = "deflate-sends-gzip",
        /// Publishes its requests at QoS 2.
        PublishesQos2 = "publishes-qos2",
        /// Pads a gzip body with 64 MiB of whitespace: a compression bomb
        /// of about 64 KiB on the wire.
        SendsGzipBomb = "sends-gzip-bomb",
        /// The same with deflate.
        SendsDeflateBomb = "sends-deflate-bomb",
        /// Writes a property bag with a broken percent-escape.
        MalformedPropertyBag = "malformed-property-bag",
        /// Sends a body that is not UTF-8.
        NonUtf8Body = "non-utf8-body",
        /// Logs in under an id of its own (a serial number), not the
        /// device id it was given: IoT Hub refuses a device it does not
        /// know.
        LogsInAsAnotherId = "logs-in-as-another-id",
        /// Sends model.update without the objectId header.
        UpdateWithoutObjectId = "update-without-object-id",
        /// Puts objectId, typeId and name in the body, not in headers.
        IdsInBody = "ids-in-body",
        /// Sends model.patch's version as text.
        PatchVersionAsText = "patch-version-as-text",
        /// Sends the one entry of owner.remove and reference.create as
        /// an object, not in an array.
        ArraysAsObjects = "arrays-as-objects",
        /// Wraps batch.execute's entries in an object.
        BatchBodyObject = "batch-body-object",
        /// Sends identity.create and identity.delete's identity as a
        /// header, not in the body.
        IdentityInHeader = "identity-in-header",
        /// Sends type.query's filter as `query`, as model.query has it.
        FilterAsQuery = "filter-as-query",
        /// Sends type.create's typeId as a header, not in the body.
        TypeIdInHeader = "type-id-in-header",
        /// Sends extension.get with the ack it was given, `none` when
        /// none.
        ExtensionGetWithoutAck = "extension-get-without-ack",
        /// Sends headers over the 32 kB limit when asked to.
        SendsOversizedHeaders = "sends-oversized-headers",
        /// Stops on a cloud-to-device property it does not know.
        CrashesOnUnknownProperty = "crashes-on-unknown-property",
        /// Stops on a property without a value or with an empty one.
        ChokesOnEmptyValues = "chokes-on-empty-values",
        /// Keeps compressed cloud-to-device bodies as they came.
        NoC2dDecompression = "no-c2d-decompression",
        /// Stops on a negative ack whose code is not one of the two it
        /// knows.
        StopsOnUnknownErrorCode = "stops-on-unknown-error-code",
        /// Stops on a message id it has seen.
        CrashesOnDuplicate = "crashes-on-duplicate",
        /// Subscribes to its cloud-to-device topic at QoS 0: what is sent
        /// while it is away is lost.
        SubscribesQos0 = "subscribes-qos0",
        /// Connects with CleanSession 1: each connection starts without
        /// the messages queued while it was away.
        CleanSession = "clean-session",
    }
}

/// How much whitespace a bomb inflates to.
const BOMB: usize = 64 << 20;

/// The families of actions beyond model.create and model.query that the
/// reference device sends: all of them.
pub const CAPABILITIES: [&str; 6] = [
    "ability.identity",
    "ability.model",
    "ability.reference",
    "ability.type",
    "ability.extension",
    "ability.batch",
];

/// The hooks the reference device offers.
pub const HOOKS: [&str; 3] = ["perform", "received", "offline"];

/// Legal behaviours of real devices that the reference device can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Sends a request of its own when it comes up (a model.create that
    /// asks for every ack, with a correlationId of its own), and another
    /// every 2 s (an identity.create, every other one without a
    /// correlationId).
    RequestsOfItsOwn,
}

impl Variant {
    /// Every variant's name.
    pub const NAMES: &'static [&'static str] = &["requests-of-its-own"];

    fn named(name: Option<&str>) -> Result<Option<Self>, String> {
        match name {
            None => Ok(None),
            Some("requests-of-its-own") => Ok(Some(Variant::RequestsOfItsOwn)),
            Some(other) => Err(format!("unknown variant `{other}`")),
        }
    }
}

/// The reference Device API device, as the harness starts it.
pub struct Reference;

impl dmconf_harness::Reference for Reference {
    fn protocol(&self) -> Protocol {
        Protocol::Ability
    }
    fn role(&self) -> Role {
        Role::Device
    }
    fn name(&self) -> &'static str {
        "reference Device API device"
    }
    fn faults(&self) -> &'static [&'static str] {
        AbilityDeviceFault::NAMES
    }
    fn variants(&self) -> &'static [&'static str] {
        Variant::NAMES
    }
    fn capabilities(&self) -> &'static [&'static str] {
        &CAPABILITIES
    }
    fn hooks(&self) -> &'static [&'static str] {
        &HOOKS
    }
    fn start(&self, setup: Setup) -> BoxFuture<'static, Result<Box<dyn Instance>, String>> {
        Box::pin(async move {
            let ca = std::fs::read_to_string(setup.var(kit::MQTT_CA)?)
                .map_err(|e| format!("the broker's CA: {e}"))?;
            let number = |name: &str, default: usize| {
                setup
                    .var(name)
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(default)
            };
            let defaults = Limits::default();
            let cfg = AbilityDeviceConfig {
                devices: Endpoint::parse(setup.var(kit::MQTT_URL)?, Some(ca))?,
                device_id: setup.var(kit::DEVICE_ID)?.to_owned(),
                limits: Limits {
                    d2c: number(kit::D2C_BYTES, defaults.d2c),
                    c2d: number(kit::C2D_BYTES, defaults.c2d),
                    headers: number(kit::HEADER_BYTES, defaults.headers),
                },
                fault: AbilityDeviceFault::named(setup.fault.as_deref())?,
                variant: Variant::named(setup.variant.as_deref())?,
            };
            Ok(Box::new(start(cfg).await?) as Box<dyn Instance>)
        })
    }
}

impl Instance for AbilityDeviceHandle {
    fn call<'a>(
        &'a self,
        hook: &'a str,
        args: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(AbilityDeviceHandle::call(self, hook, args))
    }
    fn exited(&self) -> Option<String> {
        if let Some(why) = &self.refused {
            return Some(format!("the reference device was refused at login: {why}"));
        }
        self.inner
            .stopped
            .load(Ordering::SeqCst)
            .then(|| "the reference device stopped".to_owned())
    }
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { (*self).stop().await })
    }
}

/// How the reference device is started.
#[derive(Clone, Debug)]
pub struct AbilityDeviceConfig {
    /// Where devices connect.
    pub devices: Endpoint,
    /// Its device id.
    pub device_id: String,
    /// The limits it keeps to.
    pub limits: Limits,
    /// The mistake to make, if any.
    pub fault: Option<AbilityDeviceFault>,
    /// The legal behaviour to show, if any.
    pub variant: Option<Variant>,
}

struct Inner {
    cfg: AbilityDeviceConfig,
    client: tokio::sync::Mutex<Option<MqttClient>>,
    received: Mutex<Vec<(Message, String)>>,
    /// The `$.mid`s taken, across connections.
    seen: Mutex<HashSet<String>>,
    /// The task reading the current connection.
    reader: Mutex<Option<JoinHandle<()>>>,
    hung: AtomicBool,
    /// Away on purpose (the `offline` hook): a closed connection is not a stop.
    offline: AtomicBool,
    /// Crashed, or lost its connection and stopped.
    stopped: AtomicBool,
}

/// A running reference device.
pub struct AbilityDeviceHandle {
    inner: Arc<Inner>,
    chatter: Option<JoinHandle<()>>,
    /// Why the broker refused its login, if it did.
    refused: Option<String>,
}

/// Connects as the device's SDK would and subscribes to its
/// cloud-to-device topic (its faults decide how).
async fn connect(
    cfg: &AbilityDeviceConfig,
    id: &str,
) -> Result<(MqttClient, mpsc::UnboundedReceiver<Received>), kit::TransportError> {
    let login = Login {
        keep_session: cfg.fault != Some(AbilityDeviceFault::CleanSession),
        ..ability::device_login(id)
    };
    let (mut client, inbox) = MqttClient::connect(&cfg.devices, &login).await?;
    let qos = if cfg.fault == Some(AbilityDeviceFault::SubscribesQos0) {
        0
    } else {
        1
    };
    client
        .subscribe_at(&format!("{}#", ability::devicebound_topic(id)), qos)
        .await?;
    Ok((client, inbox))
}

/// Reads one connection's cloud-to-device messages until it closes, or
/// the device crashes on one.
fn read(i: Arc<Inner>, mut inbox: mpsc::UnboundedReceiver<Received>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(m) = inbox.recv().await {
            if i.cfg.fault == Some(AbilityDeviceFault::HangsOnLargeC2d)
                && m.payload.len() + m.topic.len() > 60_000
            {
                i.hung.store(true, Ordering::SeqCst);
            }
            let mut d = ability::from_wire(&m.topic, &m.payload);
            let bag = m.topic.rsplit('/').next().unwrap_or_default().to_owned();
            let crashed = {
                let mut seen = i.seen.lock().unwrap_or_else(|e| e.into_inner());
                crashes(i.cfg.fault, &d.message, &bag, &mut seen)
            };
            if crashed {
                // A crash: it stops reading and its connection goes.
                i.stopped.store(true, Ordering::SeqCst);
                if let Some(c) = i.client.lock().await.take() {
                    c.close().await;
                }
                return;
            }
            if i.cfg.fault == Some(AbilityDeviceFault::NoC2dDecompression)
                && ability::content_encoding(&d.message)
                    .is_some_and(|e| e == "gzip" || e == "deflate")
            {
                d.message.body = m.payload.clone();
            }
            i.received
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((d.message, bag));
        }
        if !i.offline.load(Ordering::SeqCst) {
            i.stopped.store(true, Ordering::SeqCst);
        }
    })
}

/// Connects, subscribes to its cloud-to-device topic, and serves.
pub async fn start(cfg: AbilityDeviceConfig) -> Result<AbilityDeviceHandle, String> {
    let id = match cfg.fault {
        Some(AbilityDeviceFault::LogsInAsAnotherId) => {
            format!("serial-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        }
        _ => cfg.device_id.clone(),
    };
    let (mut client, inbox) = match connect(&cfg, &id).await {
        Ok(c) => c,
        // Refused at login, a real device stops; so does this one, and
        // says why. Trouble on the way to the broker is the harness's.
        Err(kit::TransportError::Refused(why)) => {
            return Ok(AbilityDeviceHandle::refused(cfg, why));
        }
        Err(e) => return Err(e.into()),
    };
    // Devices report telemetry beside their requests; a harness that
    // judges requests must let it pass, and this shows that it does.
    let (topic, payload) = ability::to_wire(&telemetry(&id));
    client.publish(&topic, payload).await?;
    if cfg.variant == Some(Variant::RequestsOfItsOwn) {
        let (topic, payload) = ability::to_wire(&boot_request(&id));
        client.publish(&topic, payload).await?;
    }
    let inner = Arc::new(Inner::new(cfg, Some(client)));
    let reader = read(inner.clone(), inbox);
    *inner.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader);
    let chatter = (inner.cfg.variant == Some(Variant::RequestsOfItsOwn)).then(|| {
        let i = inner.clone();
        tokio::spawn(async move { requests_of_its_own(&i).await })
    });
    Ok(AbilityDeviceHandle {
        inner,
        chatter,
        refused: None,
    })
}

impl Inner {
    fn new(cfg: AbilityDeviceConfig, client: Option<MqttClient>) -> Self {
        Inner {
            cfg,
            client: tokio::sync::Mutex::new(client),
            received: Mutex::new(Vec::new()),
            seen: Mutex::new(HashSet::new()),
            reader: Mutex::new(None),
            hung: AtomicBool::new(false),
            offline: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }
}

/// The application properties a strict device knows.
const KNOWN_HEADERS: [&str; 11] = [
    "msgType",
    "version",
    "action",
    "correlationId",
    "target",
    "context",
    "eventType",
    "objectId",
    "model",
    "type",
    "name",
];

/// Whether a device with `fault` crashes on `msg`, whose property bag
/// is `bag`; `seen` holds the message ids it has taken.
fn crashes(
    fault: Option<AbilityDeviceFault>,
    msg: &Message,
    bag: &str,
    seen: &mut std::collections::HashSet<String>,
) -> bool {
    use AbilityDeviceFault as F;
    match fault {
        Some(F::CrashesOnUnknownProperty) => msg
            .headers
            .keys()
            .any(|k| !KNOWN_HEADERS.contains(&k.as_str())),
        Some(F::ChokesOnEmptyValues) => bag
            .split('&')
            .any(|p| p.split_once('=').is_none_or(|(_, v)| v.is_empty())),
        Some(F::StopsOnUnknownErrorCode) => {
            let code = msg
                .body_json()
                .and_then(|b| b["code"].as_str().map(str::to_owned));
            msg.header("msgType").as_deref() == Some("ack")
                && code.is_some_and(|c| {
                    ![
                        "ok",
                        "platform_event_validation_error",
                        "http_response_error",
                    ]
                    .contains(&c.as_str())
                })
        }
        Some(F::CrashesOnDuplicate) => msg.property("$.mid").is_some_and(|mid| !seen.insert(mid)),
        _ => false,
    }
}

/// A request a device sends of its own accord, with a correlationId of
/// its own when `correlated`.
fn own_request(
    device: &str,
    action: &str,
    ack: Option<&str>,
    correlated: bool,
    body: Value,
) -> Message {
    let mut m = Message {
        channel: ability::events_topic(device),
        ..Default::default()
    };
    for (k, v) in [
        ("msgType", Some("action")),
        ("action", Some(action)),
        ("version", Some("2")),
        ("ack", ack),
    ] {
        if let Some(v) = v {
            m.headers.insert(k.into(), json!(v));
        }
    }
    if correlated {
        m.headers.insert(
            "correlationId".into(),
            json!(format!("own-{}", uuid::Uuid::new_v4())),
        );
    }
    m.properties
        .insert("$.ct".into(), json!("application/json"));
    m.properties.insert("$.ce".into(), json!("utf-8"));
    m.body = serde_json::to_vec(&body).unwrap_or_default();
    m
}

/// The model.create a device of the `requests-of-its-own` variant sends
/// when it comes up, asking for every ack.
fn boot_request(device: &str) -> Message {
    own_request(
        device,
        "model.create",
        Some("all"),
        true,
        json!({
            "objectId": uuid::Uuid::new_v4().to_string(),
            "model": "abb.ability.device",
            "type": "abb.ability.device.dmconf@1",
            "properties": {"serialNumber": {"value": "own"}}
        }),
    )
}

/// What a device of the `requests-of-its-own` variant sends once it is
/// up: an identity.create half a second after the boot request and every
/// 2 s from then, asking for no ack, every other one (the first among
/// them) without a correlationId.
async fn requests_of_its_own(inner: &Inner) {
    let every = Duration::from_secs(2);
    // The first soon after the boot request, so that short cases see one.
    let first = tokio::time::Instant::now() + Duration::from_millis(500);
    let mut tick = tokio::time::interval_at(first, every);
    for n in 0u64.. {
        tick.tick().await;
        let msg = own_request(
            &inner.cfg.device_id,
            "identity.create",
            None,
            n % 2 == 1,
            json!({"identity": "child-own"}),
        );
        let (topic, payload) = ability::to_wire(&msg);
        if let Some(client) = inner.client.lock().await.as_mut() {
            let _ = client.publish(&topic, payload).await;
        }
    }
}

fn arg<'a>(args: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    args.get(k).filter(|v| !v.is_null())
}

impl AbilityDeviceHandle {
    /// A device that stopped because the broker refused its login.
    fn refused(cfg: AbilityDeviceConfig, why: String) -> Self {
        AbilityDeviceHandle {
            inner: Arc::new(Inner::new(cfg, None)),
            chatter: None,
            refused: Some(why),
        }
    }

    /// Runs hook `name`.
    pub async fn call(&self, name: &str, args: &Map<String, Value>) -> Result<Value, String> {
        match name {
            "perform" => self.perform(args).await,
            "received" => Ok(self.received()),
            "offline" => self.offline(args).await,
            other => Err(format!("the reference device has no hook `{other}`")),
        }
    }

    /// Sends a request: `action`, optional `body` (JSON), `ack`,
    /// `context`, `correlationId`, `encoding` (`utf-8`, `gzip`,
    /// `deflate`), `headers` (more application properties), and `fill`
    /// (pad the body's `"$fill"` so that the message is that many bytes).
    /// Answers `{"sent": true, "correlationId": ...}`, or `{"sent":
    /// false, "reason": ...}` when it will not send it.
    async fn perform(&self, args: &Map<String, Value>) -> Result<Value, String> {
        let fault = self.inner.cfg.fault;
        let action = arg(args, "action")
            .and_then(Value::as_str)
            .ok_or("`action` is required")?;
        let mut msg = Message {
            channel: ability::events_topic(&self.inner.cfg.device_id),
            ..Default::default()
        };
        let mut put = |k: &str, v: String| {
            msg.headers.insert(k.to_owned(), Value::String(v));
        };
        put("msgType", "action".into());
        put("action", action.into());
        if fault != Some(AbilityDeviceFault::OmitsVersion) {
            put("version", "2".into());
        }
        let cid = arg(args, "correlationId")
            .and_then(dmconf_harness::kit::scalar_text)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        put("correlationId", cid.clone());
        for k in ["ack", "context", "target"] {
            if let Some(v) = arg(args, k).and_then(dmconf_harness::kit::scalar_text) {
                put(k, v);
            }
        }
        // extension.get is answered in its ack: it always asks for one.
        if action == "extension.get" && arg(args, "ack").is_none() {
            if fault == Some(AbilityDeviceFault::ExtensionGetWithoutAck) {
                put("ack", "none".into());
            } else {
                put("ack", "all".into());
            }
        }
        let parts = request::build(action, args, fault);
        for (k, v) in parts.headers {
            put(&k, v);
        }
        if let Some(Value::Object(h)) = arg(args, "headers") {
            for (k, v) in h {
                put(k, dmconf_harness::kit::scalar_text(v).unwrap_or_default());
            }
        }
        msg.properties
            .insert("$.ct".into(), json!("application/json"));
        let encoding = arg(args, "encoding")
            .and_then(Value::as_str)
            .unwrap_or("utf-8");
        msg.properties.insert("$.ce".into(), json!(encoding));
        if fault == Some(AbilityDeviceFault::GzipDeclaredPlain) && encoding == "gzip" {
            msg.raw = true;
        }
        let body = arg(args, "body").cloned().unwrap_or(parts.body);
        msg.body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        if let Some(n) = arg(args, "fill").and_then(Value::as_u64) {
            ability::fill(&mut msg, "message", n as usize)?;
        }
        if let Some(n) = arg(args, "fillHeaders").and_then(Value::as_u64) {
            ability::fill(&mut msg, "headers", n as usize)?;
            let (size, limit) = (ability::header_size(&msg), self.inner.cfg.limits.headers);
            if size > limit && fault != Some(AbilityDeviceFault::SendsOversizedHeaders) {
                return Ok(
                    json!({"sent": false, "reason": format!("{size} bytes of headers is over the Device API's {limit}-byte limit")}),
                );
            }
        }
        if fault == Some(AbilityDeviceFault::DeflateSendsGzip) && encoding == "deflate" {
            msg.body = ability::compress("gzip", &msg.body);
            msg.raw = true;
        }
        let bomb = match fault {
            Some(AbilityDeviceFault::SendsGzipBomb) => encoding == "gzip",
            Some(AbilityDeviceFault::SendsDeflateBomb) => encoding == "deflate",
            _ => false,
        };
        if bomb {
            let mut padded = std::mem::take(&mut msg.body);
            padded.resize(padded.len() + BOMB, b' ');
            msg.body = ability::compress(encoding, &padded);
            msg.raw = true;
        }
        if fault == Some(AbilityDeviceFault::NonUtf8Body) {
            msg.body.splice(1..1, [0xff, 0xfe]);
        }
        let size = ability::iothub_size(&msg);
        let limit = self.inner.cfg.limits.d2c;
        if size > limit && fault != Some(AbilityDeviceFault::SendsOversizedD2c) {
            return Ok(
                json!({"sent": false, "reason": format!("{size} bytes is over IoT Hub's {limit}-byte device-to-cloud limit")}),
            );
        }
        if self.inner.hung.load(Ordering::SeqCst) {
            return Ok(json!({"sent": true, "correlationId": cid}));
        }
        if fault == Some(AbilityDeviceFault::DoubleEncodesValues) {
            for v in msg.headers.values_mut() {
                if let Value::String(s) = v {
                    *s = ability::bag::encode_component(s);
                }
            }
        }
        let (mut topic, payload) = ability::to_wire(&msg);
        if fault == Some(AbilityDeviceFault::MalformedPropertyBag) {
            topic.push_str("&broken=%G1");
        }
        let mut client = self.inner.client.lock().await;
        let client = client.as_mut().ok_or("the device is stopped")?;
        if fault == Some(AbilityDeviceFault::PublishesQos2) {
            client.publish_exactly_once(&topic, payload).await?;
        } else {
            client.publish(&topic, payload).await?;
        }
        Ok(json!({"sent": true, "correlationId": cid}))
    }

    /// The last cloud-to-device message: its headers (decoded unless the
    /// fault says otherwise), system properties and body, and how many
    /// arrived.
    fn received(&self) -> Value {
        let got = self
            .inner
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some((m, bag)) = got.last() else {
            return json!({"count": 0});
        };
        let headers: Map<String, Value> =
            if self.inner.cfg.fault == Some(AbilityDeviceFault::NoPropertyDecoding) {
                bag.split('&')
                    .filter_map(|p| p.split_once('='))
                    .filter(|(k, _)| !k.starts_with("%24"))
                    .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                    .collect()
            } else {
                m.headers.clone().into_iter().collect()
            };
        json!({
            "count": got.len(),
            "headers": headers,
            "properties": m.properties,
            "body": m.body_json().unwrap_or(Value::Null),
        })
    }

    /// Goes away for `seconds`, as on a network loss, and comes back with
    /// its session; answers once the connection is closed.
    async fn offline(&self, args: &Map<String, Value>) -> Result<Value, String> {
        let seconds = arg(args, "seconds")
            .and_then(Value::as_u64)
            .ok_or("offline needs `seconds`, a whole number")?;
        self.inner.offline.store(true, Ordering::SeqCst);
        if let Some(c) = self.inner.client.lock().await.take() {
            c.close().await;
        }
        let i = self.inner.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let id = i.cfg.device_id.clone();
            match connect(&i.cfg, &id).await {
                Ok((client, inbox)) => {
                    *i.client.lock().await = Some(client);
                    i.offline.store(false, Ordering::SeqCst);
                    let reader = read(i.clone(), inbox);
                    *i.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader);
                }
                Err(_) => i.stopped.store(true, Ordering::SeqCst),
            }
        });
        Ok(json!({"offline": true}))
    }

    /// Disconnects.
    pub async fn stop(self) {
        if let Some(c) = self.chatter {
            c.abort();
        }
        if let Some(r) = self
            .inner
            .reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.abort();
        }
        if let Some(c) = self.inner.client.lock().await.take() {
            c.close().await;
        }
    }
}

/// One variable reading, as a device reports it when it comes up.
fn telemetry(device_id: &str) -> Message {
    let mut m = Message {
        channel: ability::events_topic(device_id),
        ..Default::default()
    };
    m.headers.insert("msgType".into(), json!("variable"));
    m.properties
        .insert("$.ct".into(), json!("application/json"));
    m.properties.insert("$.ce".into(), json!("utf-8"));
    m.body = serde_json::to_vec(&json!({
        "objectId": uuid::Uuid::new_v4().to_string(),
        "model": "abb.ability.device",
        "variable": "uptime",
        "value": 0,
        "timestamp": "2026-01-01T00:00:00Z",
    }))
    .unwrap_or_default();
    m
}
