//! A case's link to the broker, whichever role the harness plays: the
//! server's side when a device is under test, a virtual device when a
//! server is. Each side is set up on first use, so that a run against a
//! server never declares or drains the server's own queues.

use tokio::sync::OnceCell;

use crate::message::{Arrival, Message};
use crate::protocol::dmf::{DmfCaseLink, DmfDeviceLink, DmfDeviceSide, DmfServerSide};

/// Both sides the harness can play on one broker.
pub struct Sides {
    amqp_url: String,
    server: OnceCell<Result<DmfServerSide, String>>,
    device: OnceCell<Result<DmfDeviceSide, String>>,
}

impl Sides {
    /// Nothing set up yet.
    pub fn new(amqp_url: &str) -> Self {
        Sides {
            amqp_url: amqp_url.to_owned(),
            server: OnceCell::new(),
            device: OnceCell::new(),
        }
    }

    /// The server's side (hawkBit's topology, declared on first use).
    pub async fn server(&self) -> Result<&DmfServerSide, String> {
        self.server
            .get_or_init(|| DmfServerSide::start(&self.amqp_url))
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The devices' side.
    pub async fn device(&self) -> Result<&DmfDeviceSide, String> {
        self.device
            .get_or_init(|| DmfDeviceSide::start(&self.amqp_url))
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// One case's link.
pub enum CaseLink {
    /// The harness is the server; a device is under test.
    ToDevice(DmfCaseLink),
    /// The harness is a device; a server is under test.
    ToServer(DmfDeviceLink),
}

impl CaseLink {
    /// Publishes `msg`; returns it as it went out.
    pub async fn publish(&mut self, msg: &Message) -> Result<Message, String> {
        match self {
            CaseLink::ToDevice(l) => l.publish(msg).await.map(|()| msg.clone()),
            CaseLink::ToServer(l) => l.publish(msg).await,
        }
    }

    /// The next arrival, or `None` once the link is closed.
    pub async fn recv(&mut self) -> Option<Arrival> {
        match self {
            CaseLink::ToDevice(l) => l.recv().await.map(Arrival::Message),
            CaseLink::ToServer(l) => l.recv().await,
        }
    }

    /// What has already arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Arrival> {
        match self {
            CaseLink::ToDevice(l) => l.try_recv().map(Arrival::Message),
            CaseLink::ToServer(l) => l.try_recv(),
        }
    }

    /// Whether an exchange exists.
    pub async fn exchange_exists(&mut self, name: &str) -> Result<bool, String> {
        match self {
            CaseLink::ToDevice(l) => l.exchange_exists(name).await,
            CaseLink::ToServer(l) => l.client().exchange_exists(name).await,
        }
    }

    /// Whether an existing exchange has this type and durability.
    pub async fn exchange_is(
        &mut self,
        name: &str,
        kind: &str,
        durable: bool,
    ) -> Result<(), String> {
        if !self.exchange_exists(name).await? {
            return Err(format!(
                "the exchange `{name}` does not exist on the broker"
            ));
        }
        match self {
            CaseLink::ToDevice(l) => l.client().exchange_is(name, kind, durable).await,
            CaseLink::ToServer(l) => l.client().exchange_is(name, kind, durable).await,
        }
    }

    /// Messages no case owned that arrived while this one ran.
    pub fn unattributed(&self) -> Vec<Message> {
        match self {
            CaseLink::ToDevice(l) => l.unattributed(),
            CaseLink::ToServer(_) => Vec::new(),
        }
    }

    /// Closes the link.
    pub async fn close(self) {
        match self {
            CaseLink::ToDevice(l) => l.close().await,
            CaseLink::ToServer(l) => l.close().await,
        }
    }
}
