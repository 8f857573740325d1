//! ABB Ability Device API v2 over Azure IoT Hub's MQTT conventions: the
//! topics, the mapping between a [`Message`] and what is on the wire
//! (property bag, compression), the sizes IoT Hub and the Device API
//! count, the schema of each message, and the sides the harness plays:
//! IoT Hub with the platform when a device is under test
//! ([`platform_side`]), a device when the platform is ([`device_side`]).
//!
//! In a [`Message`], `channel` is the topic up to the property bag
//! (`devices/{id}/messages/events/`), `properties` are IoT Hub's system
//! properties under their wire names (`$.ct`, `$.ce`, `$.cid`, `$.mid`,
//! ...) plus the hub-added `iothub-connection-device-id`, `headers` are the
//! application properties (the Device API's headers, decoded), and `body`
//! is the body after decompression.

pub mod bag;
pub(crate) mod device_side;
pub(crate) mod platform_side;

use std::io::{Read, Write};

use serde_json::{Value, json};

use super::{CaseIds, Link, Open, Opened, Sides};
use crate::env::{self, SutEnv};
use crate::error::Error;
use crate::message::Message;
use crate::profile::Profile;
use crate::suite::Role;

pub(crate) use device_side::{AbilityDeviceLink, AbilityDeviceSide};
pub use device_side::{HUB_NAME, device_login};
pub(crate) use platform_side::{AbilityPlatformLink, AbilityPlatformSide};

/// Opens a case: each case is a device of its own. A device under test
/// gets a tenant of its own; a platform serves the profile's tenant
/// (`DEFAULT` if none is named), except a platform that runs for this
/// case alone, which is told the one device it serves.
pub(crate) async fn open(o: Open<'_>) -> Result<Opened, Error> {
    let p = o.profile;
    let limits = p.limits;
    let broker = o.sides.mosquitto().await?;
    let device = format!("{}{}{}", p.id_prefix, broker.run_tag, o.short);
    let own_tenant = format!("DMCONF_{}", o.short.to_uppercase());
    let mut env: SutEnv = limits_env(limits);
    if let Some(ca) = &broker.ca_file {
        env.push((env::MQTT_CA, ca.display().to_string()));
    }
    let (tenant, link) = match o.role {
        Role::Device => {
            env.push((env::MQTT_URL, broker.device_url.clone()));
            env.push((env::DEVICE_ID, device.clone()));
            let side = o.sides.ability_platform().await?;
            let link = side.open_case(&device, &limits).await?;
            (own_tenant, Link::AbilityToDevice(link))
        }
        Role::Server => {
            env.push((env::MQTT_URL, broker.service_url.clone()));
            let tenant = if o.isolated {
                env.push((env::DEVICE_ID, device.clone()));
                p.tenant.clone().unwrap_or(own_tenant)
            } else {
                p.tenant.clone().unwrap_or_else(|| "DEFAULT".to_owned())
            };
            let side = o.sides.ability_device().await?;
            let link = side.open_case(&device, limits.c2d).await?;
            (tenant, Link::AbilityToPlatform(link))
        }
    };
    env.push((env::TENANT, tenant.clone()));
    let mut vars = vec![
        ("tenant", Value::String(tenant.clone())),
        ("thingId", Value::String(device.clone())),
        ("deviceId", Value::String(device.clone())),
        ("d2c", Value::String(events_topic(&device))),
        ("c2d", Value::String(devicebound_topic(&device))),
    ];
    for (name, n) in [
        ("headerLimit", limits.headers),
        ("d2cLimit", limits.d2c),
        ("c2dLimit", limits.c2d),
    ] {
        vars.push((name, Value::from(n)));
        let (below, above) = match name {
            "headerLimit" => ("headerLimitBelow", "headerLimitAbove"),
            "d2cLimit" => ("d2cLimitBelow", "d2cLimitAbove"),
            _ => ("c2dLimitBelow", "c2dLimitAbove"),
        };
        vars.push((below, Value::from(n.saturating_sub(1))));
        vars.push((above, Value::from(n + 1)));
    }
    Ok(Opened {
        link,
        ids: CaseIds {
            tenant,
            thing_id: device,
        },
        vars,
        env,
        refusals: Err(
            "a Device API platform refuses with a negative acknowledgement, which a step expects"
                .to_owned(),
        ),
    })
}

fn limits_env(limits: Limits) -> SutEnv {
    vec![
        (env::D2C_BYTES, limits.d2c.to_string()),
        (env::C2D_BYTES, limits.c2d.to_string()),
        (env::HEADER_BYTES, limits.headers.to_string()),
    ]
}

/// What a platform started once for the run finds in its environment.
pub(crate) async fn server_env(sides: &Sides, p: &Profile) -> Result<SutEnv, Error> {
    let broker = sides.mosquitto().await?;
    let mut env = limits_env(p.limits);
    env.push((env::MQTT_URL, broker.service_url.clone()));
    if let Some(ca) = &broker.ca_file {
        env.push((env::MQTT_CA, ca.display().to_string()));
    }
    env.push((
        env::TENANT,
        p.tenant.clone().unwrap_or_else(|| "DEFAULT".to_owned()),
    ));
    Ok(env)
}

/// A message's `correlationId` header, when it has a non-empty one,
/// from its view.
pub(crate) fn correlation_id(view: &Value) -> Option<String> {
    crate::message::scalar_text(view["headers"].get("correlationId")?).filter(|c| !c.is_empty())
}

/// Whether a platform's notification answers a model.create: its
/// `action` header says so (the reference's layout), or its `eventType`
/// names a model created, in v2's naming or v1's.
pub(crate) fn answers_model_create(view: &Value) -> bool {
    let header = |k: &str| view["headers"][k].as_str();
    header("msgType") == Some("notification")
        && (header("action") == Some("model.create")
            || header("eventType").is_some_and(|e| {
                e.ends_with("ObjectModel.Created") || e.ends_with("ObjectModelCreated")
            }))
}

/// The acknowledgement a platform sends a device's request whose `ack`
/// header asks for positive ones (`positive`, `all`): success, with the
/// request's action, correlationId (one generated when it has none),
/// target and context. `None` for anything else.
pub(crate) fn platform_ack(request: &Message) -> Option<Message> {
    if request.header("msgType").as_deref() != Some("action") {
        return None;
    }
    if !matches!(request.header("ack").as_deref(), Some("positive" | "all")) {
        return None;
    }
    let device = request.property(DEVICE_ID_PROPERTY)?;
    let mut ack = Message {
        channel: devicebound_topic(&device),
        ..Default::default()
    };
    let correlation = request
        .header("correlationId")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut put = |k: &str, v: String| {
        ack.headers.insert(k.to_owned(), Value::String(v));
    };
    put("msgType", "ack".into());
    put("version", "2".into());
    put("action", request.header("action").unwrap_or_default());
    put("correlationId", correlation);
    for k in ["target", "context"] {
        if let Some(v) = request.header(k) {
            put(k, v);
        }
    }
    ack.properties
        .insert("$.ct".into(), json!("application/json"));
    ack.properties.insert("$.ce".into(), json!("utf-8"));
    ack.body = serde_json::to_vec(&json!({"success": true, "code": "ok", "details": ""}))
        .unwrap_or_default();
    Some(ack)
}

/// Pads `msg` as [`fill`] does, and says what it made against the limit
/// the profile declares, so that a failure at a boundary shows both.
pub(crate) fn fill_to_limit(
    msg: &mut Message,
    what: &str,
    bytes: usize,
    limits: Limits,
) -> Result<String, String> {
    fill(msg, what, bytes)?;
    let (declared, key, counted) = match what {
        "headers" => (
            limits.headers,
            "header_bytes",
            "application property names and values, in UTF-8 bytes after decoding",
        ),
        _ if msg.channel.contains("/devicebound/") => (limits.c2d, "c2d_bytes", IOTHUB_COUNT),
        _ => (limits.d2c, "d2c_bytes", IOTHUB_COUNT),
    };
    let relation = match bytes.cmp(&declared) {
        std::cmp::Ordering::Less => "under",
        std::cmp::Ordering::Equal => "at",
        std::cmp::Ordering::Greater => "over",
    };
    Ok(format!(
        "a message to {} with {what} filled to {bytes} bytes ({counted}): {relation} the limit the profile declares, {declared} bytes ([ability] {key})",
        msg.channel
    ))
}

/// How IoT Hub counts a message's size, as a note says it.
const IOTHUB_COUNT: &str =
    "as IoT Hub counts: body, system property values, application property names and values";

/// Every v2 action the seeds and ABB's pages describe.
pub const ACTIONS: [&str; 16] = [
    "identity.create",
    "identity.delete",
    "model.create",
    "model.update",
    "model.patch",
    "model.delete",
    "model.query",
    "owner.remove",
    "reference.create",
    "reference.delete",
    "type.create",
    "type.delete",
    "type.query",
    "extension.create",
    "extension.get",
    "batch.execute",
];

/// The ack levels of the `ack` header.
pub const ACK_LEVELS: [&str; 4] = ["none", "positive", "negative", "all"];

/// The error codes an acknowledgement carries.
pub const ERROR_CODES: [&str; 10] = [
    "ok",
    "platform_event_validation_error",
    "http_response_error",
    "not_authorized",
    "timeout_exceeded",
    "operation_not_supported",
    "internal_platform_error",
    "response_too_large",
    "decompression_error",
    "batch_execute_operation_error",
];

/// The details text of the negative ack for headers over the limit.
pub const HEADER_LIMIT_DETAILS: &str =
    "Request message header properties size limit of 32 kB exceed";

/// The hub-added property that names the sending device.
pub const DEVICE_ID_PROPERTY: &str = "iothub-connection-device-id";

/// The limits a platform applies, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Device-to-cloud message, headers included (IoT Hub: 256 KB).
    pub d2c: usize,
    /// Cloud-to-device message, headers included (IoT Hub: 64 KB).
    pub c2d: usize,
    /// A request's header properties (Device API: 32 kB).
    pub headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            d2c: 256 * 1024,
            c2d: 64 * 1024,
            headers: 32 * 1024,
        }
    }
}

/// The device-to-cloud topic of a device, up to the property bag.
pub fn events_topic(device: &str) -> String {
    format!("devices/{device}/messages/events/")
}

/// The cloud-to-device topic of a device, up to the property bag.
pub fn devicebound_topic(device: &str) -> String {
    format!("devices/{device}/messages/devicebound/")
}

/// Splits a topic into its device id, its channel (up to the bag) and
/// the bag.
pub fn split_topic(topic: &str) -> Option<(&str, &str, &str)> {
    let rest = topic.strip_prefix("devices/")?;
    let (device, tail) = rest.split_once('/')?;
    for kind in ["messages/events/", "messages/devicebound/"] {
        if let Some(bag) = tail.strip_prefix(kind) {
            let channel_len = topic.len() - bag.len();
            return Some((device, &topic[..channel_len], bag));
        }
    }
    None
}

/// The content encoding a message declares: `$.ce`, else the
/// `content-encoding` application property.
pub fn content_encoding(msg: &Message) -> Option<String> {
    msg.property("$.ce")
        .or_else(|| msg.header("content-encoding"))
}

fn is_identity(encoding: &str) -> bool {
    matches!(encoding.to_ascii_lowercase().as_str(), "utf-8" | "utf8")
}

/// Compresses a body as `encoding` says (`gzip`, or `deflate` as zlib);
/// other encodings leave it as it is.
pub fn compress(encoding: &str, body: &[u8]) -> Vec<u8> {
    let level = flate2::Compression::default();
    let out = match encoding.to_ascii_lowercase().as_str() {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(body).and_then(|_| e.finish())
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(body).and_then(|_| e.finish())
        }
        _ => return body.to_vec(),
    };
    out.unwrap_or_else(|_| body.to_vec())
}

/// The most a compressed body may inflate to: sixteen times IoT Hub's
/// largest message. A body that inflates further is a compression bomb,
/// or past every limit; decompression stops there.
pub const MAX_INFLATED: usize = 4 << 20;

/// Decompresses a body as `encoding` says, to at most `max` bytes;
/// `deflate` is taken both zlib-wrapped and raw.
pub fn decompress(encoding: &str, body: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let bounded = |r: &mut dyn Read| {
        let mut out = Vec::new();
        r.take(max as u64 + 1).read_to_end(&mut out).map(|_| out)
    };
    let read = match encoding.to_ascii_lowercase().as_str() {
        "gzip" => bounded(&mut flate2::read::MultiGzDecoder::new(body)),
        "deflate" => bounded(&mut flate2::read::ZlibDecoder::new(body))
            .or_else(|_| bounded(&mut flate2::read::DeflateDecoder::new(body))),
        e if is_identity(e) => return Ok(body.to_vec()),
        other => return Err(format!("unknown content encoding `{other}`")),
    };
    match read {
        Ok(out) if out.len() > max => Err(format!(
            "its {} bytes inflate past {max} bytes, where decompression stops (a compression bomb, or a body past every limit)",
            body.len()
        )),
        Ok(out) => Ok(out),
        Err(e) => Err(format!("the body is not {encoding} data: {e}")),
    }
}

/// A message as it goes on the wire: topic with property bag, payload.
pub fn to_wire(msg: &Message) -> (String, Vec<u8>) {
    let text = |v: &Value| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    let system: Vec<bag::Property> = msg
        .properties
        .iter()
        .filter(|(k, _)| k.starts_with("$."))
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    let app: Vec<bag::Property> = msg
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    let topic = format!("{}{}", msg.channel, bag::encode(&system, &app));
    let body = match content_encoding(msg) {
        Some(e) if !msg.raw => compress(&e, &msg.body),
        _ => msg.body.clone(),
    };
    (topic, body)
}

/// What arrived, as a [`Message`], with what is wrong with its encoding
/// (a bag that does not decode, a body that does not decompress).
pub struct Decoded {
    /// The message; the body decompressed where that worked.
    pub message: Message,
    /// Its size as IoT Hub counts it, from the wire form.
    pub iothub_size: usize,
    /// What is wrong, if anything.
    pub problem: Option<String>,
}

/// Reads a message off the wire. A device-to-cloud message gets the
/// hub-added `iothub-connection-device-id`.
pub fn from_wire(topic: &str, payload: &[u8]) -> Decoded {
    let mut message = Message::default();
    let mut problem = None;
    let (device, channel, raw_bag) = split_topic(topic).unwrap_or(("", topic, ""));
    message.channel = channel.to_owned();
    let props = match bag::decode(raw_bag) {
        Ok(p) => p,
        Err(e) => {
            problem = Some(format!("its property bag does not decode: {e}"));
            Vec::new()
        }
    };
    let mut size = payload.len();
    for (k, v) in props {
        let value = v.clone().map(Value::String).unwrap_or(Value::Null);
        let vlen = v.as_deref().map(str::len).unwrap_or(0);
        if k.starts_with("$.") {
            size += vlen;
            message.properties.insert(k, value);
        } else {
            size += k.len() + vlen;
            message.headers.insert(k, value);
        }
    }
    if channel.ends_with("/events/") && !device.is_empty() {
        message
            .properties
            .insert(DEVICE_ID_PROPERTY.into(), Value::String(device.to_owned()));
    }
    message.body = payload.to_vec();
    if let Some(e) = content_encoding(&message) {
        match decompress(&e, payload, MAX_INFLATED) {
            Ok(b) => message.body = b,
            Err(why) => {
                problem.get_or_insert(format!("it declares content-encoding `{e}`, and {why}"));
            }
        }
    }
    Decoded {
        message,
        iothub_size: size,
        problem,
    }
}

/// The size of a message's header properties as the Device API's 32 kB
/// limit counts them: names and values of the application properties,
/// in UTF-8 bytes, after percent-decoding.
pub fn header_size(msg: &Message) -> usize {
    msg.headers
        .iter()
        .filter(|(k, _)| !k.starts_with("iothub-"))
        .map(|(k, v)| k.len() + crate::message::scalar_text(v).map(|t| t.len()).unwrap_or(0))
        .sum()
}

/// The size of a message as IoT Hub counts it: body (as on the wire) +
/// system property values + application property names and values.
pub fn iothub_size(msg: &Message) -> usize {
    let (_, body) = to_wire(msg);
    let sys: usize = msg
        .properties
        .iter()
        .filter(|(k, _)| k.starts_with("$."))
        .map(|(_, v)| crate::message::scalar_text(v).map(|t| t.len()).unwrap_or(0))
        .sum();
    body.len() + sys + header_size(msg)
}

/// The padding property `fill` adds.
pub const PAD_HEADER: &str = "pad";
/// The body placeholder `fill` replaces.
pub const PAD_BODY: &str = "$fill";

/// Pads a message so that its header properties (`headers`) or its
/// whole size as IoT Hub counts it (`message`) come to exactly `bytes`:
/// with an application property `pad` for headers, or by replacing the
/// JSON string `"$fill"` in the body for a message.
pub fn fill(msg: &mut Message, what: &str, bytes: usize) -> Result<(), String> {
    match what {
        "headers" => {
            msg.headers.remove(PAD_HEADER);
            let base = header_size(msg) + PAD_HEADER.len();
            let pad = bytes.checked_sub(base).ok_or_else(|| {
                format!("the headers are {base} bytes already, more than the {bytes} to fill to")
            })?;
            msg.headers
                .insert(PAD_HEADER.into(), Value::String("x".repeat(pad)));
            Ok(())
        }
        "message" => {
            let marker = format!("\"{PAD_BODY}\"");
            let text = String::from_utf8_lossy(&msg.body).into_owned();
            if !text.contains(&marker) {
                return Err(format!(
                    "`fill: message` needs the string \"{PAD_BODY}\" in the body"
                ));
            }
            let mut probe = msg.clone();
            probe.body = text.replacen(&marker, "\"\"", 1).into_bytes();
            if content_encoding(msg).is_some_and(|e| !is_identity(&e)) {
                return Err("`fill: message` needs an uncompressed body".to_owned());
            }
            let base = iothub_size(&probe);
            let pad = bytes.checked_sub(base).ok_or_else(|| {
                format!("the message is {base} bytes already, more than the {bytes} to fill to")
            })?;
            msg.body = text
                .replacen(&marker, &format!("\"{}\"", "x".repeat(pad)), 1)
                .into_bytes();
            Ok(())
        }
        other => Err(format!("`fill` is `headers` or `message`, not `{other}`")),
    }
}

/// The schema a request from a device must satisfy, by its `msgType` and
/// `action`; `Ok(None)` for telemetry, which the Device API does not
/// judge.
pub(crate) fn request_schema(headers: &Value) -> Result<Option<String>, String> {
    match headers["msgType"].as_str() {
        Some("action") => match headers["action"].as_str() {
            Some(a) if ACTIONS.contains(&a) => Ok(Some(format!("ability/request-{a}"))),
            Some(a) => Err(format!("`{a}` is not a Device API v2 action")),
            None => Err("a request without an `action` header".to_owned()),
        },
        Some("variable" | "alarm" | "event") => Ok(None),
        Some(t) => Err(format!(
            "msgType `{t}` is not one a device sends (action, variable, alarm, event)"
        )),
        None => Err("no `msgType` header".to_owned()),
    }
}

/// The schema a cloud-to-device message must satisfy.
pub(crate) fn c2d_schema(headers: &Value) -> Result<Option<String>, String> {
    match headers["msgType"].as_str() {
        Some("ack") => Ok(Some("ability/ack".to_owned())),
        Some("notification") => Ok(Some("ability/notification".to_owned())),
        // Publish-subscribe notifications keep the v1 layout.
        None if headers.get("ability-messagetype").is_some() => Ok(None),
        Some(t) => Err(format!(
            "msgType `{t}` is not one the platform sends (ack, notification)"
        )),
        None => Err("no `msgType` header".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_round_trip_with_compression() {
        let mut m = Message {
            channel: events_topic("dev1"),
            body: br#"{"objectId":"a"}"#.to_vec(),
            ..Default::default()
        };
        m.headers.insert("msgType".into(), json!("action"));
        m.headers.insert("context".into(), json!("a b/c%d+e"));
        m.properties.insert("$.ce".into(), json!("gzip"));
        let (topic, payload) = to_wire(&m);
        assert!(topic.starts_with(
            "devices/dev1/messages/events/%24.ce=gzip&context=a%20b%2Fc%25d%2Be&msgType=action"
        ));
        assert_ne!(payload, m.body);
        let d = from_wire(&topic, &payload);
        assert!(d.problem.is_none());
        assert_eq!(d.message.body, m.body);
        assert_eq!(d.message.headers["context"], json!("a b/c%d+e"));
        assert_eq!(d.message.properties[DEVICE_ID_PROPERTY], json!("dev1"));
        let bad = from_wire("devices/dev1/messages/events/%24.ce=gzip", b"{\"plain\":1}");
        assert!(bad.problem.unwrap().contains("not gzip"));
    }

    #[test]
    fn a_compression_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; MAX_INFLATED * 4];
        for encoding in ["gzip", "deflate"] {
            let bomb = compress(encoding, &zeros);
            assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
            let why = decompress(encoding, &bomb, MAX_INFLATED).unwrap_err();
            assert!(why.contains("inflate past"), "{why}");
            let d = from_wire(
                &format!("devices/d/messages/events/%24.ce={encoding}"),
                &bomb,
            );
            assert!(d.problem.unwrap().contains("compression bomb"));
            assert!(d.message.body.len() <= bomb.len());
        }
        assert_eq!(
            decompress("gzip", &compress("gzip", b"{}"), 2),
            Ok(b"{}".to_vec())
        );
    }

    #[test]
    fn sizes_and_fill() {
        let mut m = Message {
            channel: events_topic("d"),
            body: br#"{"p":"$fill"}"#.to_vec(),
            ..Default::default()
        };
        m.headers.insert("msgType".into(), json!("action"));
        fill(&mut m, "headers", 32768).unwrap();
        assert_eq!(header_size(&m), 32768);
        fill(&mut m, "message", 262144).unwrap();
        assert_eq!(iothub_size(&m), 262144);
        let (topic, payload) = to_wire(&m);
        assert_eq!(from_wire(&topic, &payload).iothub_size, 262144);
    }
}
