//! A case's link to the broker, whichever protocol and role: it publishes
//! what the harness sends and hands over what the SUT sends, for this
//! case only.

use super::ability::{AbilityDeviceLink, AbilityPlatformLink};
use super::dmf::{DmfCaseLink, DmfDeviceLink, admit};
use crate::message::{Arrival, Deliveries, Message};
use crate::transport::TransportError;
use crate::transport::amqp::AmqpClient;

/// One case's link.
pub(crate) enum Link {
    /// DMF: the harness is the server; a device is under test.
    DmfToDevice(Box<DmfCaseLink>),
    /// DMF: the harness is a device; a server is under test.
    DmfToServer(Box<DmfDeviceLink>),
    /// Device API: the harness is IoT Hub and the platform; a device is
    /// under test.
    AbilityToDevice(AbilityPlatformLink),
    /// Device API: the harness is a device; the platform is under test.
    AbilityToPlatform(AbilityDeviceLink),
    /// No broker: a scripted SUT answers each message the harness
    /// publishes, for the engine's tests.
    #[cfg(test)]
    Memory(memory::MemoryLink),
}

/// A DMF server's message admitted by size; a refusal of the harness's
/// own message as it is.
fn admit_arrival(a: Arrival) -> Arrival {
    match a {
        Arrival::Message(m) => admit(m),
        other => other,
    }
}

impl Link {
    /// Publishes `msg`; returns it as it went out.
    pub(crate) async fn publish(&mut self, msg: &Message) -> Result<Message, TransportError> {
        match self {
            Link::DmfToDevice(l) => l.publish(msg).await.map(|()| msg.clone()),
            Link::DmfToServer(l) => l.publish(msg).await,
            Link::AbilityToDevice(l) => l.publish(msg).await.map(|()| msg.clone()),
            Link::AbilityToPlatform(l) => l.publish(msg).await.map(|()| msg.clone()),
            #[cfg(test)]
            Link::Memory(l) => Ok(l.publish(msg)),
        }
    }

    /// The next arrival, or `None` once the link is closed.
    pub(crate) async fn recv(&mut self) -> Option<Arrival> {
        match self {
            Link::DmfToDevice(l) => l.recv().await.map(admit),
            Link::DmfToServer(l) => l.recv().await.map(admit_arrival),
            Link::AbilityToDevice(l) => l.recv().await,
            Link::AbilityToPlatform(l) => l.recv().await,
            #[cfg(test)]
            Link::Memory(l) => l.rx.recv().await,
        }
    }

    /// What has already arrived, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Arrival> {
        match self {
            Link::DmfToDevice(l) => l.try_recv().map(admit),
            Link::DmfToServer(l) => l.try_recv().map(admit_arrival),
            Link::AbilityToDevice(l) => l.try_recv(),
            Link::AbilityToPlatform(l) => l.try_recv(),
            #[cfg(test)]
            Link::Memory(l) => l.rx.try_recv().ok(),
        }
    }

    /// How the SUT's broker has delivered the harness's message
    /// `message_id` to the SUT; why that cannot be seen, if it cannot.
    pub(crate) fn deliveries(&self, message_id: &str) -> Result<Deliveries, String> {
        match self {
            Link::DmfToServer(l) => l.deliveries(message_id),
            #[cfg(test)]
            Link::Memory(l) => l.deliveries.ok_or_else(|| "no broker".to_owned()),
            _ => Err("only a server's deliveries are counted".to_owned()),
        }
    }

    /// Whether the SUT's broker has shown the SUT taking any message of
    /// this case.
    pub(crate) fn deliveries_seen(&self) -> bool {
        match self {
            Link::DmfToServer(l) => l.deliveries_seen(),
            #[cfg(test)]
            Link::Memory(l) => l.seen,
            _ => false,
        }
    }

    /// The AMQP connection, for checks that ask the broker.
    pub(crate) fn amqp(&self) -> Option<&AmqpClient> {
        match self {
            Link::DmfToDevice(l) => Some(l.client()),
            Link::DmfToServer(l) => Some(l.client()),
            _ => None,
        }
    }

    /// Messages no case owned that arrived while this one ran.
    pub(crate) fn unattributed(&self) -> Vec<Message> {
        match self {
            Link::DmfToDevice(l) => l.unattributed(),
            _ => Vec::new(),
        }
    }

    /// Closes the link.
    pub(crate) async fn close(self) {
        match self {
            Link::DmfToDevice(l) => (*l).close().await,
            Link::DmfToServer(l) => l.close().await,
            Link::AbilityToDevice(l) => l.close().await,
            Link::AbilityToPlatform(l) => l.close().await,
            #[cfg(test)]
            Link::Memory(_) => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod memory {
    //! A link without a broker, for the engine's tests: what the harness
    //! publishes goes to a script, which plays the SUT and says what
    //! arrives in answer.

    use tokio::sync::mpsc;

    use crate::message::{Arrival, Message};

    /// What the scripted SUT does with a message of the harness's.
    pub(crate) type Script = Box<dyn FnMut(&Message) -> Vec<Arrival> + Send>;

    /// A link whose other end is a script.
    pub(crate) struct MemoryLink {
        pub(crate) rx: mpsc::UnboundedReceiver<Arrival>,
        tx: mpsc::UnboundedSender<Arrival>,
        script: Script,
        /// Everything the harness published.
        pub(crate) published: Vec<Message>,
        /// How the scripted SUT's broker delivered each message of the
        /// harness's, when it is seen.
        pub(crate) deliveries: Option<crate::message::Deliveries>,
        /// Whether the broker has shown the SUT taking any message.
        pub(crate) seen: bool,
    }

    impl MemoryLink {
        /// A link to `script`; the sender puts arrivals in of the SUT's
        /// own accord.
        pub(crate) fn new(script: Script) -> (Self, mpsc::UnboundedSender<Arrival>) {
            let (tx, rx) = mpsc::unbounded_channel();
            let link = MemoryLink {
                rx,
                tx: tx.clone(),
                script,
                published: Vec::new(),
                deliveries: None,
                seen: false,
            };
            (link, tx)
        }

        pub(super) fn publish(&mut self, msg: &Message) -> Message {
            for a in (self.script)(msg) {
                let _ = self.tx.send(a);
            }
            self.published.push(msg.clone());
            msg.clone()
        }
    }
}
