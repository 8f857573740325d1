//! The side of the broker that the harness plays when a DMF server is
//! under test: virtual devices, one per case, each with its own thing id,
//! reply exchange and queue; a watch on the server's dead-letter exchange
//! that hands each refused message back to the case that sent it, known
//! by the `message_id` the harness gave it; and a watch on RabbitMQ's
//! firehose that counts how often the server's queue delivered each of
//! those messages, so that a requeue loop is seen without consuming the
//! server's queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::message::{Arrival, Deliveries, Message};
use crate::transport::TransportError;
use crate::transport::amqp::{AmqpClient, QueueSpec};

/// Where a message of the harness's went, and what became of it.
struct Route {
    /// The case that sent it.
    tx: mpsc::UnboundedSender<Arrival>,
    /// The exchange it was published to: a delivery of it from a queue
    /// bound there is a delivery to the server.
    exchange: String,
    deliveries: Deliveries,
}

impl Route {
    /// A message published to `exchange`, whose refusal goes to `tx`.
    fn new(tx: mpsc::UnboundedSender<Arrival>, exchange: &str) -> Self {
        Route {
            tx,
            exchange: exchange.to_owned(),
            deliveries: Deliveries::default(),
        }
    }
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;

fn lock(routes: &Routes) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
    routes.lock().unwrap_or_else(|e| e.into_inner())
}

/// RabbitMQ's firehose: with tracing on for a vhost, every delivery is
/// copied here under `deliver.<queue>`.
const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";

/// How long the firehose has to show a probe before it counts as off.
const PROBE_WITHIN: Duration = Duration::from_secs(3);

/// How the firehose probe's message ids start.
const PROBE: &str = "dmconf-probe-";

/// The most firehose copies waiting for the harness; past it the oldest
/// go, so that a SUT's flood cannot fill the broker's memory.
const TAP_LENGTH: i64 = 10_000;

fn exclusive() -> QueueSpec {
    QueueSpec {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    }
}

/// The devices' side of the broker, shared by the cases of a run.
pub(crate) struct DmfDeviceSide {
    url: String,
    client: AmqpClient,
    routes: Routes,
    watching: tokio::sync::Mutex<Vec<String>>,
    /// Whether deliveries can be counted; why not, if not.
    firehose: Firehose,
}

/// Whether the firehose shows deliveries: why not, if it was off from
/// the start; `alive` falls when the tap's connection or task ends.
#[derive(Clone)]
struct Firehose {
    on: Result<(), String>,
    alive: Arc<AtomicBool>,
    /// It has shown the SUT taking a message of the harness's: on a
    /// cluster, it may be on for the harness's node and off for the
    /// SUT's.
    seen: Arc<AtomicBool>,
}

impl Firehose {
    fn check(&self) -> Result<(), String> {
        self.on.clone()?;
        if !self.alive.load(Ordering::SeqCst) {
            return Err("the firehose watch ended".to_owned());
        }
        Ok(())
    }
}

impl DmfDeviceSide {
    /// Connects to the broker at `url` and watches its firehose.
    pub(crate) async fn start(url: &str) -> Result<Self, TransportError> {
        let client = AmqpClient::connect(url).await?;
        let routes = Routes::default();
        let (alive, seen) = (Arc::new(AtomicBool::new(true)), Arc::default());
        let on = watch_deliveries(&client, &routes, alive.clone(), Arc::clone(&seen)).await?;
        if let Err(why) = &on {
            eprintln!("dmconf: {why}");
        }
        let firehose = Firehose { on, alive, seen };
        Ok(DmfDeviceSide {
            url: url.to_owned(),
            client,
            routes,
            watching: tokio::sync::Mutex::new(Vec::new()),
            firehose,
        })
    }

    /// Watches the dead-letter exchange `dlx` (once per run) through a
    /// private queue bound to it, so that the server's own dead-letter
    /// queue is left as it is. `Ok(Err(why))` when the exchange does not
    /// exist: then refusals cannot be observed.
    pub(crate) async fn watch_refusals(
        &self,
        dlx: &str,
    ) -> Result<Result<(), String>, TransportError> {
        let mut watching = self.watching.lock().await;
        if watching.iter().any(|w| w == dlx) {
            return Ok(Ok(()));
        }
        if !self.client.exchange_exists(dlx).await? {
            return Ok(Err(format!(
                "the dead-letter exchange `{dlx}` does not exist on the broker, so a refusal by the server cannot be observed (declare it, or name the server's in `[dmf] dead_letter_exchange` of the profile)"
            )));
        }
        let tap = self.client.declare_queue("", &exclusive()).await?;
        self.client.bind(&tap, dlx).await?;
        let mut rx = self.client.consume(&tap).await?;
        let routes = self.routes.clone();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let id = msg.property("message_id").unwrap_or_default();
                let tx = lock(&routes).get(&id).map(|r| r.tx.clone());
                if let Some(tx) = tx {
                    let _ = tx.send(Arrival::Refused(msg));
                }
            }
        });
        watching.push(dlx.to_owned());
        Ok(Ok(()))
    }

    /// Why the firehose shows no deliveries, if it does not.
    pub(crate) fn firehose_off(&self) -> Option<String> {
        self.firehose.check().err()
    }

    /// Whether an exchange exists.
    pub(crate) async fn exchange_exists(&self, name: &str) -> Result<bool, TransportError> {
        self.client.exchange_exists(name).await
    }

    /// Opens one virtual device: its reply exchange (a fanout, as both
    /// reference clients of hawkBit declare) and queue, bound, consumed.
    pub(crate) async fn open_case(&self, thing_id: &str) -> Result<DmfDeviceLink, TransportError> {
        let client = AmqpClient::connect(&self.url).await?;
        let reply_to = format!("dmconf.device.{thing_id}");
        client.declare_fanout(&reply_to, false, true).await?;
        let queue = client.declare_queue("", &exclusive()).await?;
        client.bind(&queue, &reply_to).await?;
        let mut inbox = client.consume(&queue).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let forward = tx.clone();
        tokio::spawn(async move {
            while let Some(m) = inbox.recv().await {
                if forward.send(Arrival::Message(m)).is_err() {
                    break;
                }
            }
        });
        Ok(DmfDeviceLink {
            client,
            reply_to,
            tx,
            rx,
            sent_ids: Vec::new(),
            routes: self.routes.clone(),
            firehose: self.firehose.clone(),
        })
    }
}

/// One virtual device of one case.
pub(crate) struct DmfDeviceLink {
    client: AmqpClient,
    /// The device's reply exchange, for `reply_to`.
    pub(crate) reply_to: String,
    tx: mpsc::UnboundedSender<Arrival>,
    rx: mpsc::UnboundedReceiver<Arrival>,
    sent_ids: Vec<String>,
    routes: Routes,
    firehose: Firehose,
}

impl DmfDeviceLink {
    /// Publishes to the exchange `msg.channel`, under a `message_id` that
    /// brings the message back to this case if the server refuses it (the
    /// one the suite set, or a fresh one). Returns the message as sent.
    pub(crate) async fn publish(&mut self, msg: &Message) -> Result<Message, TransportError> {
        let mut msg = msg.clone();
        let id = match msg.property("message_id") {
            Some(id) => id,
            None => {
                let id = format!("dmconf-{}", uuid::Uuid::new_v4().simple());
                msg.properties
                    .insert("message_id".into(), Value::String(id.clone()));
                id
            }
        };
        lock(&self.routes)
            .entry(id.clone())
            .or_insert_with(|| Route::new(self.tx.clone(), &msg.channel));
        self.sent_ids.push(id);
        self.client.publish(&msg).await?;
        Ok(msg)
    }

    /// The next message from the server, or a refusal.
    pub(crate) async fn recv(&mut self) -> Option<Arrival> {
        self.rx.recv().await
    }

    /// What has already arrived, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Arrival> {
        self.rx.try_recv().ok()
    }

    /// How the server's queue has delivered the message `message_id` of
    /// this case so far; why that cannot be seen, if it cannot.
    pub(crate) fn deliveries(&self, message_id: &str) -> Result<Deliveries, String> {
        self.firehose.check()?;
        Ok(lock(&self.routes)
            .get(message_id)
            .map(|r| r.deliveries)
            .unwrap_or_default())
    }

    /// Whether the firehose has shown the SUT taking any message of the
    /// harness's in this run: only then does a message it shows no
    /// delivery of count as not taken (on a cluster, the firehose may be
    /// on for the harness's node and off for the SUT's).
    pub(crate) fn deliveries_seen(&self) -> bool {
        self.firehose.check().is_ok() && self.firehose.seen.load(Ordering::SeqCst)
    }

    /// The broker connection, for checks.
    pub(crate) fn client(&self) -> &AmqpClient {
        &self.client
    }

    /// Forgets this case's message ids and closes its connection; the
    /// reply exchange and queue go with it.
    pub(crate) async fn close(self) {
        {
            let mut routes = lock(&self.routes);
            for id in &self.sent_ids {
                routes.remove(id);
            }
        }
        self.client.close().await;
    }
}

/// Counts, from the firehose, each delivery of a message of the
/// harness's by a queue bound to the exchange it was published to, once
/// a probe has shown that the firehose is on. `Ok(Err(why))` when it is
/// off: then deliveries cannot be counted.
async fn watch_deliveries(
    client: &AmqpClient,
    routes: &Routes,
    alive: Arc<AtomicBool>,
    seen: Arc<AtomicBool>,
) -> Result<Result<(), String>, TransportError> {
    let off = |why: String| {
        Ok(Err(format!(
            "RabbitMQ's firehose shows no deliveries ({why}), so a server that puts a message back in its queue forever cannot be told from one that takes it; turn it on for the run's vhost on every node with `rabbitmqctl trace_on -p <vhost> -n <node>`"
        )))
    };
    let spec = QueueSpec {
        max_length: Some(TAP_LENGTH),
        ..exclusive()
    };
    let tap = client.declare_queue("", &spec).await?;
    if let Err(e) = client.bind_key(&tap, TRACE_EXCHANGE, "deliver.#").await {
        return off(e.to_string());
    }
    let mut rx = client.consume(&tap).await?;
    let counted = routes.clone();
    tokio::spawn(async move {
        while let Some(trace) = rx.recv().await {
            let header = |k: &str| trace.headers.get(k).cloned().unwrap_or_default();
            let Some(id) = header("properties")
                .get("message_id")
                .and_then(|v| v.as_str().map(str::to_owned))
            else {
                continue;
            };
            if let Some(r) = lock(&counted).get_mut(&id)
                && header("exchange_name").as_str() == Some(r.exchange.as_str())
            {
                if !id.starts_with(PROBE) {
                    seen.store(true, Ordering::SeqCst);
                }
                let d = &mut r.deliveries;
                d.times += 1;
                d.first.get_or_insert_with(std::time::Instant::now);
                if header("redelivered").as_i64().unwrap_or(0) != 0 {
                    d.again += 1;
                }
            }
        }
        alive.store(false, Ordering::SeqCst);
    });
    // A probe: a message of our own, through an exchange and queue of our
    // own, consumed by us.
    let id = format!("{PROBE}{}", uuid::Uuid::new_v4().simple());
    let exchange = format!("dmconf.probe.{id}");
    client.declare_fanout(&exchange, false, true).await?;
    let queue = client.declare_queue("", &exclusive()).await?;
    client.bind(&queue, &exchange).await?;
    let _consumed = client.consume(&queue).await?;
    let (tx, _) = mpsc::unbounded_channel();
    lock(routes).insert(id.clone(), Route::new(tx, &exchange));
    let mut probe = Message {
        channel: exchange.clone(),
        ..Default::default()
    };
    probe
        .properties
        .insert("message_id".into(), Value::String(id.clone()));
    client.publish(&probe).await?;
    let seen = async {
        while lock(routes)[&id].deliveries.times == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let on = tokio::time::timeout(PROBE_WITHIN, seen).await.is_ok();
    lock(routes).remove(&id);
    client.delete_queue(&queue).await;
    client.delete_exchange(&exchange).await;
    if on {
        Ok(Ok(()))
    } else {
        off(format!("a probe was not seen within {PROBE_WITHIN:?}"))
    }
}
