//! hawkBit DMF: the names of hawkBit's broker objects, the schema of each
//! message by direction, and the action-lifecycle oracle; the side the
//! harness plays when a device is under test ([`server_side`]) and when a
//! server is ([`device_side`]).

pub mod device_side;
pub mod server_side;

pub use device_side::{DmfDeviceLink, DmfDeviceSide};
pub use server_side::{DmfCaseLink, DmfServerSide};

use serde_json::Value;

use crate::message::Message;
use crate::transport::amqp::{AmqpClient, QueueSpec};

/// hawkBit's answer to a PING that has a correlation id: PING_RESPONSE to
/// the PING's reply_to, with its correlation id and tenant, and the
/// server's time (epoch milliseconds) as text. `None` for a PING without
/// a correlation id, which hawkBit takes and does not answer.
pub fn ping_response(ping: &Message, now_ms: u64) -> Option<Message> {
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
) -> Result<(), String> {
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
pub fn server_message_schema(msg: &Message) -> Result<&'static str, String> {
    let kind = msg.header("type");
    let topic = msg.header("topic");
    match (kind.as_deref(), topic.as_deref()) {
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
pub fn device_message_schema(msg: &Message) -> Result<&'static str, String> {
    let kind = msg.header("type");
    let topic = msg.header("topic");
    match (kind.as_deref(), topic.as_deref()) {
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

/// Which action flow a lifecycle check judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// DOWNLOAD_AND_INSTALL: ends in FINISHED or ERROR.
    DownloadAndInstall,
    /// DOWNLOAD (download only): ends in DOWNLOADED or ERROR.
    Download,
}

impl Flow {
    /// Parses the suite's name for a flow.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "download_and_install" => Some(Flow::DownloadAndInstall),
            "download" => Some(Flow::Download),
            _ => None,
        }
    }

    fn intermediate(self) -> &'static [&'static str] {
        match self {
            Flow::DownloadAndInstall => {
                &["DOWNLOAD", "RETRIEVED", "RUNNING", "WARNING", "DOWNLOADED"]
            }
            Flow::Download => &["DOWNLOAD", "RETRIEVED", "RUNNING", "WARNING"],
        }
    }

    fn finals(self) -> &'static [&'static str] {
        match self {
            Flow::DownloadAndInstall => &["FINISHED", "ERROR"],
            Flow::Download => &["DOWNLOADED", "ERROR"],
        }
    }
}

/// Judges the statuses a device reported for one action: each is one the
/// flow allows, and exactly one final status closes the sequence.
pub fn check_lifecycle(flow: Flow, statuses: &[Message]) -> Result<(), String> {
    let names: Vec<String> = statuses
        .iter()
        .map(|m| {
            m.body_json()
                .and_then(|b| {
                    b.get("actionStatus")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "<no actionStatus>".to_owned())
        })
        .collect();
    let seq = names.join(" -> ");
    if names.is_empty() {
        return Err("no status was reported".to_owned());
    }
    for (i, s) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let is_final = flow.finals().contains(&s.as_str());
        if is_final && !last {
            return Err(format!(
                "final status {s} is followed by more statuses: {seq}"
            ));
        }
        if last && !is_final {
            return Err(format!(
                "the sequence must end in one of {:?}, got: {seq}",
                flow.finals()
            ));
        }
        if !is_final && !flow.intermediate().contains(&s.as_str()) {
            return Err(format!(
                "status {s} does not belong in this flow (allowed before the end: {:?}); sequence: {seq}",
                flow.intermediate()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: &str) -> Message {
        Message {
            body: format!(r#"{{"actionId":1,"actionStatus":"{s}"}}"#).into_bytes(),
            ..Default::default()
        }
    }

    #[test]
    fn lifecycle_oracle() {
        let seq = |v: &[&str]| v.iter().map(|s| status(s)).collect::<Vec<_>>();
        let dai = Flow::DownloadAndInstall;
        assert!(
            check_lifecycle(
                dai,
                &seq(&["RUNNING", "DOWNLOAD", "DOWNLOADED", "FINISHED"])
            )
            .is_ok()
        );
        assert!(check_lifecycle(dai, &seq(&["ERROR"])).is_ok());
        assert!(check_lifecycle(dai, &seq(&["RUNNING", "CANCELED"])).is_err());
        assert!(check_lifecycle(dai, &seq(&["FINISHED", "FINISHED"])).is_err());
        assert!(check_lifecycle(Flow::Download, &seq(&["DOWNLOAD", "DOWNLOADED"])).is_ok());
        assert!(check_lifecycle(Flow::Download, &seq(&["DOWNLOAD", "FINISHED"])).is_err());
    }
}
