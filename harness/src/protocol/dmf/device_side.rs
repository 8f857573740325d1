//! The side of the broker that the harness plays when a DMF server is
//! under test: virtual devices, one per case, each with its own thing id,
//! reply exchange and queue; and a watch on the server's dead-letter
//! exchange that hands each refused message back to the case that sent
//! it, known by the `message_id` the harness gave it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::message::{Arrival, Message};
use crate::transport::TransportError;
use crate::transport::amqp::{AmqpClient, QueueSpec};

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Arrival>>>>;

/// The devices' side of the broker, shared by the cases of a run.
pub(crate) struct DmfDeviceSide {
    url: String,
    client: AmqpClient,
    refusals: Routes,
    watching: tokio::sync::Mutex<Vec<String>>,
}

impl DmfDeviceSide {
    /// Connects to the broker at `url`.
    pub(crate) async fn start(url: &str) -> Result<Self, TransportError> {
        Ok(DmfDeviceSide {
            url: url.to_owned(),
            client: AmqpClient::connect(url).await?,
            refusals: Arc::default(),
            watching: tokio::sync::Mutex::new(Vec::new()),
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
        let tap = QueueSpec {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let tap = self.client.declare_queue("", &tap).await?;
        self.client.bind(&tap, dlx).await?;
        let mut rx = self.client.consume(&tap).await?;
        let routes = self.refusals.clone();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let id = msg.property("message_id").unwrap_or_default();
                let tx = routes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&id)
                    .cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(Arrival::Refused(msg));
                }
            }
        });
        watching.push(dlx.to_owned());
        Ok(Ok(()))
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
        let queue = QueueSpec {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let queue = client.declare_queue("", &queue).await?;
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
            routes: self.refusals.clone(),
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
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), self.tx.clone());
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

    /// The broker connection, for checks.
    pub(crate) fn client(&self) -> &AmqpClient {
        &self.client
    }

    /// Forgets this case's message ids and closes its connection; the
    /// reply exchange and queue go with it.
    pub(crate) async fn close(self) {
        {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            for id in &self.sent_ids {
                routes.remove(id);
            }
        }
        self.client.close().await;
    }
}
