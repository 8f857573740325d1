//! The side of the broker that the harness plays when a DMF device is
//! under test: the topology hawkBit declares, and a dispatcher that hands
//! each device message to the case that owns its tenant (or thing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use super::{DMF_EXCHANGE, RECEIVER_QUEUE};
use crate::message::Message;
use crate::transport::TransportError;
use crate::transport::amqp::{AmqpClient, QueueSpec};

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
pub(crate) struct DmfServerSide {
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
    pub(crate) async fn start(url: &str) -> Result<Self, TransportError> {
        let client = AmqpClient::connect(url).await?;
        super::declare_topology(&client, DMF_EXCHANGE, "fanout", RECEIVER_QUEUE).await?;
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
    pub(crate) async fn open_case(
        &self,
        tenant: &str,
        thing_id: &str,
    ) -> Result<DmfCaseLink, TransportError> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut r = self.router.lock().unwrap_or_else(|e| e.into_inner());
            // Tenants are case-insensitive in hawkBit.
            r.by_tenant.insert(tenant.to_uppercase(), tx.clone());
            r.by_thing.insert(thing_id.to_owned(), tx.clone());
        }
        let client = AmqpClient::connect(&self.url).await?;
        Ok(DmfCaseLink {
            tx,
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
        .and_then(|t| r.by_tenant.get(&t.to_uppercase()).cloned());
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
pub(crate) struct DmfCaseLink {
    tx: mpsc::UnboundedSender<Message>,
    rx: mpsc::UnboundedReceiver<Message>,
    client: AmqpClient,
    router: Arc<Mutex<Router>>,
    tenant: String,
    thing_id: String,
    opened: Instant,
}

impl DmfCaseLink {
    /// Publishes to the exchange `msg.channel`, on this case's own
    /// connection (a reply_to that names no exchange breaks no other
    /// case).
    pub(crate) async fn publish(&mut self, msg: &Message) -> Result<(), TransportError> {
        self.client.publish(msg).await
    }

    /// Where else this case's arrivals come in (the device's downloads).
    pub(crate) fn sender(&self) -> mpsc::UnboundedSender<Message> {
        self.tx.clone()
    }

    /// The next message from the device, or `None` once the link is closed.
    pub(crate) async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// A message that has already arrived, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }

    /// The broker connection, for checks.
    pub(crate) fn client(&self) -> &AmqpClient {
        &self.client
    }

    /// Messages on `dmf.exchange` that named neither a known tenant nor a
    /// known thing while this case ran.
    pub(crate) fn unattributed(&self) -> Vec<Message> {
        let r = self.router.lock().unwrap_or_else(|e| e.into_inner());
        r.strays
            .iter()
            .filter(|(t, _)| *t >= self.opened)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Stops routing to this case and closes its connection.
    pub(crate) async fn close(self) {
        {
            let mut r = self.router.lock().unwrap_or_else(|e| e.into_inner());
            r.by_tenant.remove(&self.tenant.to_uppercase());
            r.by_thing.remove(&self.thing_id);
        }
        self.client.close().await;
    }
}
