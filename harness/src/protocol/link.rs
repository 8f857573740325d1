//! A case's link to the broker, whichever protocol and role: it publishes
//! what the harness sends and hands over what the SUT sends, for this
//! case only.

use super::ability::{AbilityDeviceLink, AbilityPlatformLink};
use super::dmf::{DmfCaseLink, DmfDeviceLink};
use crate::message::{Arrival, Message};
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
}

impl Link {
    /// Publishes `msg`; returns it as it went out.
    pub(crate) async fn publish(&mut self, msg: &Message) -> Result<Message, TransportError> {
        match self {
            Link::DmfToDevice(l) => l.publish(msg).await.map(|()| msg.clone()),
            Link::DmfToServer(l) => l.publish(msg).await,
            Link::AbilityToDevice(l) => l.publish(msg).await.map(|()| msg.clone()),
            Link::AbilityToPlatform(l) => l.publish(msg).await.map(|()| msg.clone()),
        }
    }

    /// The next arrival, or `None` once the link is closed.
    pub(crate) async fn recv(&mut self) -> Option<Arrival> {
        match self {
            Link::DmfToDevice(l) => l.recv().await.map(Arrival::Message),
            Link::DmfToServer(l) => l.recv().await,
            Link::AbilityToDevice(l) => l.recv().await,
            Link::AbilityToPlatform(l) => l.recv().await,
        }
    }

    /// What has already arrived, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Arrival> {
        match self {
            Link::DmfToDevice(l) => l.try_recv().map(Arrival::Message),
            Link::DmfToServer(l) => l.try_recv(),
            Link::AbilityToDevice(l) => l.try_recv(),
            Link::AbilityToPlatform(l) => l.try_recv(),
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
        }
    }
}
