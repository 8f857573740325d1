//! hawkBit DMF: the names of hawkBit's broker objects, the schema of each
//! message by direction, what a device sends of its own accord, how a
//! case is opened, and the action-lifecycle oracle ([`checks`]); the side
//! the harness plays when a device is under test ([`server_side`]) and
//! when a server is ([`device_side`]).

pub(crate) mod artifacts;
pub(crate) mod checks;
pub(crate) mod device_side;
pub(crate) mod server_side;
pub(crate) mod upload;

pub(crate) use artifacts::ArtifactServer;
pub(crate) use device_side::{DmfDeviceLink, DmfDeviceSide};
pub(crate) use server_side::{DmfCaseLink, DmfServerSide};
pub(crate) use upload::Upload;

use serde_json::Value;

use super::{CaseIds, Link, Open, Opened, Sides};
use crate::env::{self, SutEnv};
use crate::error::Error;
use crate::message::{Arrival, Message};
use crate::profile::Profile;
use crate::suite::Role;
use crate::transport::TransportError;
use crate::transport::amqp::{AmqpClient, QueueSpec};

/// Opens a case. A device under test gets a tenant of its own; a server
/// serves the profile's tenant (hawkBit's `DEFAULT` if none is named),
/// except a server that runs for this case alone, which gets a tenant,
/// an inbound exchange and a receiver queue of its own.
pub(crate) async fn open(o: Open<'_>) -> Result<Opened, Error> {
    let p = o.profile;
    // hawkBit keeps tenants in upper case and sends them so.
    let own_tenant = format!("DMCONF_{}", o.short.to_uppercase());
    let thing_id = format!("{}{}", p.id_prefix, o.short);
    let amqp_url = o.sides.rabbitmq().await?.amqp_url.clone();
    let mut env: SutEnv = vec![(env::AMQP_URL, amqp_url)];
    let served;
    let (tenant, exchange, link, refusals) = match o.role {
        Role::Device => {
            let side = o.sides.dmf_server().await?;
            let link = side.open_case(&own_tenant, &thing_id).await?;
            let artifacts = o.sides.artifacts().await?;
            served = artifacts.open_case(o.short, link.sender());
            env.push((env::THING_ID, thing_id.clone()));
            env.push((env::ARTIFACT_CA, artifacts.ca_file()));
            let refusals = Err("the SUT is a device; refusals are a server's".to_owned());
            (
                own_tenant,
                DMF_EXCHANGE.to_owned(),
                Link::DmfToDevice(Box::new(link)),
                refusals,
            )
        }
        Role::Server => {
            let (tenant, exchange) = if o.isolated {
                let exchange = format!("dmconf.dmf.exchange.{}", o.short);
                let receiver = format!("dmconf.dmf_receiver.{}", o.short);
                env.push((env::DMF_RECEIVER_QUEUE, receiver));
                (p.tenant.clone().unwrap_or(own_tenant), exchange)
            } else {
                let tenant = p.tenant.clone().unwrap_or_else(|| "DEFAULT".to_owned());
                (tenant, p.dmf.exchange.clone())
            };
            env.push((env::DMF_EXCHANGE, exchange.clone()));
            let side = o.sides.dmf_device().await?;
            let link = side.open_case(&thing_id).await?;
            served = o.sides.upload().await?.vars();
            let refusals = match &p.dmf.dead_letter_exchange {
                None => Err(
                    "the profile declares that this server's refusals cannot be observed (`[dmf] dead_letter_exchange = \"\"`)"
                        .to_owned(),
                ),
                Some(dlx) => side.watch_refusals(dlx).await?,
            };
            (
                tenant,
                exchange,
                Link::DmfToServer(Box::new(link)),
                refusals,
            )
        }
    };
    env.push((env::TENANT, tenant.clone()));
    let mut vars = vec![
        ("tenant", Value::String(tenant.clone())),
        ("thingId", Value::String(thing_id.clone())),
        ("dmfExchange", Value::String(exchange)),
    ];
    if let Link::DmfToServer(l) = &link {
        vars.push(("replyTo", Value::String(l.reply_to.clone())));
    }
    vars.extend(served);
    Ok(Opened {
        link,
        ids: CaseIds { tenant, thing_id },
        vars,
        env,
        refusals,
    })
}

/// The refusal watch, tried again after the SUT started: a server that
/// declares its dead-letter exchange at start (as hawkBit does) may be
/// the first to declare it on this broker. `why` stands when the profile
/// says refusals cannot be observed.
pub(crate) async fn rewatch_refusals(
    sides: &Sides,
    profile: &Profile,
    why: String,
) -> Result<Result<(), String>, Error> {
    match &profile.dmf.dead_letter_exchange {
        Some(dlx) if profile.role == Role::Server => {
            Ok(sides.dmf_device().await?.watch_refusals(dlx).await?)
        }
        _ => Ok(Err(why)),
    }
}

/// The largest DMF message dmconf takes in. No source sets a limit;
/// hawkBit's messages are a few KiB, and a larger one is judged, not
/// kept.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// A message from the SUT as the engine takes it: malformed when its
/// body is past [`MAX_BODY`], and then kept only by its start, size and
/// SHA-256.
pub(crate) fn admit(mut msg: Message) -> Arrival {
    if msg.body.len() <= MAX_BODY {
        return Arrival::Message(msg);
    }
    let why = format!(
        "its body is {} bytes (sha256 {}); dmconf takes DMF messages of at most {MAX_BODY} bytes, no source sets a larger one, and hawkBit's are a few KiB",
        msg.body.len(),
        crate::message::sha256(&msg.body)
    );
    msg.body.truncate(crate::message::BODY_KEPT);
    Arrival::Malformed(msg, why)
}

/// What a server started once for the run finds in its environment.
pub(crate) async fn server_env(sides: &Sides, p: &Profile) -> Result<SutEnv, Error> {
    Ok(vec![
        (env::AMQP_URL, sides.rabbitmq().await?.amqp_url.clone()),
        (
            env::TENANT,
            p.tenant.clone().unwrap_or_else(|| "DEFAULT".to_owned()),
        ),
        (env::DMF_EXCHANGE, p.dmf.exchange.clone()),
    ])
}

/// A server is up once its inbound exchange exists.
pub(crate) async fn server_up(sides: &Sides, p: &Profile) -> Result<bool, Error> {
    Ok(sides
        .dmf_device()
        .await?
        .exchange_exists(&p.dmf.exchange)
        .await?)
}

/// The actionId of an action request or status, as text, from a
/// message's view.
pub(crate) fn action_id(view: &Value) -> Option<String> {
    if view["headers"]["type"] != "EVENT" {
        return None;
    }
    crate::message::scalar_text(view["body"].get("actionId")?)
}

/// Whether a message of this `type` and `topic` is one a SUT of `sut`'s
/// role sends of its own accord: a device registers again to poll, PINGs, reports attributes,
/// switches auto-confirmation and removes itself when it likes; hawkBit
/// asks for attributes when it likes.
pub(crate) fn unprompted(sut: Role, kind: Option<&str>, topic: Option<&str>) -> bool {
    matches!(
        (sut, kind, topic),
        (
            Role::Device,
            Some("THING_CREATED" | "PING" | "THING_REMOVED"),
            _
        ) | (
            Role::Device,
            Some("EVENT"),
            Some("UPDATE_ATTRIBUTES" | "UPDATE_AUTO_CONFIRM")
        ) | (
            Role::Server,
            Some("EVENT"),
            Some("REQUEST_ATTRIBUTES_UPDATE")
        )
    )
}

/// hawkBit's answer to a PING that has a correlation id: PING_RESPONSE to
/// the PING's reply_to, with its correlation id and tenant, and the
/// server's time (epoch milliseconds) as text. `None` for a PING without
/// a correlation id, which hawkBit takes and does not answer.
pub fn ping_response(ping: &Message, now_ms: u64) -> Option<Message> {
    if ping.header("type").as_deref() != Some("PING") {
        return None;
    }
    let cid = ping.property("correlation_id").filter(|c| !c.is_empty())?;
    let mut reply = Message {
        channel: ping.property("reply_to").unwrap_or_default(),
        body: now_ms.to_string().into_bytes(),
        ..Default::default()
    };
    reply
        .headers
        .insert("type".into(), Value::from("PING_RESPONSE"));
    if let Some(t) = ping.headers.get("tenant") {
        reply.headers.insert("tenant".into(), t.clone());
    }
    reply
        .properties
        .insert("content_type".into(), Value::from("text/plain"));
    reply
        .properties
        .insert("correlation_id".into(), Value::from(cid));
    Some(reply)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The exchange every device publishes to.
pub const DMF_EXCHANGE: &str = "dmf.exchange";
/// hawkBit's receiver queue, bound to [`DMF_EXCHANGE`].
pub const RECEIVER_QUEUE: &str = "dmf_receiver";
/// hawkBit's dead-letter exchange.
pub const DEAD_LETTER_EXCHANGE: &str = "dmf.connector.deadletter";
/// hawkBit's dead-letter queue.
pub const DEAD_LETTER_QUEUE: &str = "dmf_connector_deadletter_ttl";
/// Dead-letter retention: 21 days, as hawkBit declares it.
pub const DEAD_LETTER_TTL_MS: i64 = 1_814_400_000;

/// Declares hawkBit's side of the broker: the inbound exchange (durable,
/// of `kind`: fanout, as hawkBit declares it), the dead-letter exchange
/// and its queue (21 days' retention), and the receiver queue, bound to
/// the inbound exchange, dead-lettering what it rejects. Declarations are
/// idempotent.
pub async fn declare_topology(
    client: &AmqpClient,
    exchange: &str,
    kind: &str,
    receiver: &str,
) -> Result<(), TransportError> {
    client.declare_exchange(exchange, kind, true, false).await?;
    client
        .declare_fanout(DEAD_LETTER_EXCHANGE, true, false)
        .await?;
    let dlq = QueueSpec {
        durable: true,
        message_ttl: Some(DEAD_LETTER_TTL_MS),
        ..Default::default()
    };
    client.declare_queue(DEAD_LETTER_QUEUE, &dlq).await?;
    client.bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE).await?;
    let queue = QueueSpec {
        durable: true,
        dead_letter_exchange: Some(DEAD_LETTER_EXCHANGE.to_owned()),
        ..Default::default()
    };
    client.declare_queue(receiver, &queue).await?;
    client.bind(receiver, exchange).await
}

/// The schema that a message from a DMF server to a device must satisfy,
/// by its `type` and `topic` headers; `Err` when the DMF API defines no
/// such server-to-device message.
pub(crate) fn server_message_schema(headers: &Value) -> Result<&'static str, String> {
    let kind = headers["type"].as_str();
    let topic = headers["topic"].as_str();
    match (kind, topic) {
        (Some("THING_DELETED"), _) => Ok("dmf/thing-deleted"),
        (Some("PING_RESPONSE"), _) => Ok("dmf/ping-response"),
        (Some("EVENT"), Some("DOWNLOAD_AND_INSTALL" | "DOWNLOAD" | "CONFIRM")) => {
            Ok("dmf/download-request")
        }
        (Some("EVENT"), Some("CANCEL_DOWNLOAD")) => Ok("dmf/cancel-request"),
        (Some("EVENT"), Some("REQUEST_ATTRIBUTES_UPDATE")) => Ok("dmf/request-attributes-update"),
        (Some("EVENT"), Some(t)) => Err(format!(
            "topic `{t}` is not a server-to-device event (DOWNLOAD_AND_INSTALL, DOWNLOAD, CONFIRM, CANCEL_DOWNLOAD, REQUEST_ATTRIBUTES_UPDATE)"
        )),
        (Some("EVENT"), None) => Err("an EVENT without a `topic` header".to_owned()),
        (Some(t), _) => Err(format!(
            "type `{t}` is not a server-to-device message (EVENT, THING_DELETED, PING_RESPONSE)"
        )),
        (None, _) => Err("no `type` header".to_owned()),
    }
}

/// The action statuses of DMF (eight in the seed, eleven in hawkBit).
pub const ACTION_STATUSES: [&str; 11] = [
    "DOWNLOAD",
    "RETRIEVED",
    "RUNNING",
    "FINISHED",
    "ERROR",
    "WARNING",
    "CANCELED",
    "CANCEL_REJECTED",
    "DOWNLOADED",
    "CONFIRMED",
    "DENIED",
];

/// The schema that a message from a DMF device must satisfy, by its
/// `type` and `topic` headers; `Err` when the DMF API defines no such
/// device-to-server message.
pub(crate) fn device_message_schema(headers: &Value) -> Result<&'static str, String> {
    let kind = headers["type"].as_str();
    let topic = headers["topic"].as_str();
    match (kind, topic) {
        (Some("THING_CREATED"), _) => Ok("dmf/thing-created"),
        (Some("THING_REMOVED"), _) => Ok("dmf/thing-removed"),
        (Some("PING"), _) => Ok("dmf/ping"),
        (Some("EVENT"), Some("UPDATE_ACTION_STATUS")) => Ok("dmf/action-status-update"),
        (Some("EVENT"), Some("UPDATE_ATTRIBUTES")) => Ok("dmf/attribute-update"),
        (Some("EVENT"), Some("UPDATE_AUTO_CONFIRM")) => Ok("dmf/auto-confirm-update"),
        (Some("EVENT"), Some(t)) => Err(format!(
            "topic `{t}` is not a device-to-server event (UPDATE_ACTION_STATUS, UPDATE_ATTRIBUTES, UPDATE_AUTO_CONFIRM)"
        )),
        (Some("EVENT"), None) => Err("an EVENT without a `topic` header".to_owned()),
        (Some(t), _) => Err(format!(
            "type `{t}` is not a device-to-server message (THING_CREATED, THING_REMOVED, EVENT, PING)"
        )),
        (None, _) => Err("no `type` header".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_past_the_limit_is_judged_by_its_size_not_kept() {
        let big = Message {
            body: vec![b'x'; MAX_BODY + 1],
            ..Default::default()
        };
        let Arrival::Malformed(kept, why) = admit(big) else {
            panic!("malformed")
        };
        assert_eq!(kept.body.len(), crate::message::BODY_KEPT);
        assert!(
            why.contains(&format!("{} bytes (sha256 ", MAX_BODY + 1)),
            "{why}"
        );
        let small = Message {
            body: b"{}".to_vec(),
            ..Default::default()
        };
        assert!(matches!(admit(small), Arrival::Message(_)));
    }
}
