//! hawkBit DMF: the names of hawkBit's broker objects, the server side of
//! the topology that the harness plays when a device is under test, the
//! schema of each device-to-server message, and the action-lifecycle
//! oracle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::message::Message;
use crate::transport::amqp::{AmqpClient, QueueSpec};

/// The exchange every device publishes to.
pub const DMF_EXCHANGE: &str = "dmf.exchange";
/// hawkBit's receiver queue, bound to [`DMF_EXCHANGE`].
pub const RECEIVER_QUEUE: &str = "dmf_receiver";
/// hawkBit's dead-letter exchange.
pub const DEAD_LETTER_EXCHANGE: &str = "dmf.connector.deadletter";
/// hawkBit's dead-letter queue.
pub const DEAD_LETTER_QUEUE: &str = "dmf_connector_deadletter_ttl";
/// Dead-letter retention: 21 days, as hawkBit declares it.
const DEAD_LETTER_TTL_MS: i64 = 1_814_400_000;

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

type Routes = HashMap<String, mpsc::UnboundedSender<Message>>;

#[derive(Default)]
struct Router {
    by_tenant: Routes,
    by_thing: Routes,
    strays: Vec<(Instant, Message)>,
}

/// hawkBit's side of the broker, as the harness plays it when a device is
/// under test: the topology hawkBit declares, and a dispatcher that hands
/// each device message to the case that owns its tenant (or thing).
pub struct DmfServerSide {
    url: String,
    router: Arc<Mutex<Router>>,
    _client: AmqpClient,
}

/// How many unattributed messages are kept for reports.
const STRAYS_KEPT: usize = 200;

impl DmfServerSide {
    /// Declares hawkBit's topology on the broker at `url` and starts
    /// dispatching. Declarations are idempotent, so several harness
    /// processes may share one broker; each reads its own copy of the
    /// traffic through a private queue bound to the fanout exchange.
    pub async fn start(url: &str) -> Result<Self, String> {
        let client = AmqpClient::connect(url).await?;
        client.declare_fanout(DMF_EXCHANGE, true, false).await?;
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
        let receiver = QueueSpec {
            durable: true,
            dead_letter_exchange: Some(DEAD_LETTER_EXCHANGE.to_owned()),
            ..Default::default()
        };
        client.declare_queue(RECEIVER_QUEUE, &receiver).await?;
        client.bind(RECEIVER_QUEUE, DMF_EXCHANGE).await?;
        let tap = QueueSpec {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let tap = client.declare_queue("", &tap).await?;
        client.bind(&tap, DMF_EXCHANGE).await?;

        // hawkBit consumes dmf_receiver; so do we, so that it drains.
        let mut drain = client.consume(RECEIVER_QUEUE).await?;
        tokio::spawn(async move { while drain.recv().await.is_some() {} });

        let router = Arc::new(Mutex::new(Router::default()));
        let mut rx = client.consume(&tap).await?;
        let r = router.clone();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                dispatch(&r, msg);
            }
        });
        Ok(DmfServerSide {
            url: url.to_owned(),
            router,
            _client: client,
        })
    }

    /// Opens the link for one case: every device message carrying its
    /// tenant (or, failing that, its thing id) goes to this link, from now
    /// on. The link publishes on its own connection, so a device that
    /// names a missing exchange breaks no other case.
    pub async fn open_case(&self, tenant: &str, thing_id: &str) -> Result<DmfCaseLink, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut r = self.router.lock().unwrap_or_else(|e| e.into_inner());
            r.by_tenant.insert(tenant.to_owned(), tx.clone());
            r.by_thing.insert(thing_id.to_owned(), tx);
        }
        let client = AmqpClient::connect(&self.url).await?;
        Ok(DmfCaseLink {
            rx,
            client,
            router: self.router.clone(),
            tenant: tenant.to_owned(),
            thing_id: thing_id.to_owned(),
            opened: Instant::now(),
        })
    }
}

fn dispatch(router: &Mutex<Router>, msg: Message) {
    let mut r = router.lock().unwrap_or_else(|e| e.into_inner());
    let by_tenant = msg
        .header("tenant")
        .and_then(|t| r.by_tenant.get(&t).cloned());
    let by_thing = msg
        .header("thingId")
        .and_then(|t| r.by_thing.get(&t).cloned());
    match by_tenant.or(by_thing) {
        Some(tx) => {
            let _ = tx.send(msg);
        }
        None => {
            if r.strays.len() >= STRAYS_KEPT {
                r.strays.remove(0);
            }
            r.strays.push((Instant::now(), msg));
        }
    }
}

/// One case's view of the broker, with a device under test.
pub struct DmfCaseLink {
    rx: mpsc::UnboundedReceiver<Message>,
    client: AmqpClient,
    router: Arc<Mutex<Router>>,
    tenant: String,
    thing_id: String,
    opened: Instant,
}

impl DmfCaseLink {
    /// Publishes to the exchange `msg.channel`.
    pub async fn publish(&mut self, msg: &Message) -> Result<(), String> {
        self.client.publish(msg).await
    }

    /// The next message from the device, or `None` once the link is closed.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// A message that has already arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }

    /// Whether an exchange exists on the broker.
    pub async fn exchange_exists(&mut self, name: &str) -> Result<bool, String> {
        self.client.exchange_exists(name).await
    }

    /// Messages on `dmf.exchange` that named neither a known tenant nor a
    /// known thing while this case ran.
    pub fn unattributed(&self) -> Vec<Message> {
        let r = self.router.lock().unwrap_or_else(|e| e.into_inner());
        r.strays
            .iter()
            .filter(|(t, _)| *t >= self.opened)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Stops routing to this case and closes its connection.
    pub async fn close(self) {
        {
            let mut r = self.router.lock().unwrap_or_else(|e| e.into_inner());
            r.by_tenant.remove(&self.tenant);
            r.by_thing.remove(&self.thing_id);
        }
        self.client.close().await;
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
