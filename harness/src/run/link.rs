//! A case's link to the broker, whichever protocol and role: for DMF the
//! server's side when a device is under test and a virtual device when a
//! server is; for the Device API, IoT Hub with the platform when a device
//! is under test and a device when the platform is. Brokers and sides
//! are set up on first use, so a run starts only the brokers its cases
//! need, and a run against a server never declares or drains the
//! server's own queues.

use tokio::sync::OnceCell;

use crate::broker::{Mosquitto, RabbitMq};
use crate::message::{Arrival, Message};
use crate::profile::BrokerSpec;
use crate::protocol::ability::{
    AbilityDeviceLink, AbilityDeviceSide, AbilityPlatformLink, AbilityPlatformSide,
};
use crate::protocol::dmf::{DmfCaseLink, DmfDeviceLink, DmfDeviceSide, DmfServerSide};

type Lazy<T> = OnceCell<Result<T, String>>;

/// The brokers of a run and every side the harness can play on them.
pub struct Sides {
    spec: BrokerSpec,
    rabbitmq: Lazy<RabbitMq>,
    mosquitto: Lazy<Mosquitto>,
    dmf_server: Lazy<DmfServerSide>,
    dmf_device: Lazy<DmfDeviceSide>,
    ability_platform: Lazy<AbilityPlatformSide>,
    ability_device: Lazy<AbilityDeviceSide>,
}

fn get<T>(cell: &Lazy<T>) -> Result<&T, String> {
    match cell.get() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.clone()),
        None => Err("not started".to_owned()),
    }
}

impl Sides {
    /// Nothing started yet.
    pub fn new(spec: BrokerSpec) -> Self {
        Sides {
            spec,
            rabbitmq: OnceCell::new(),
            mosquitto: OnceCell::new(),
            dmf_server: OnceCell::new(),
            dmf_device: OnceCell::new(),
            ability_platform: OnceCell::new(),
            ability_device: OnceCell::new(),
        }
    }

    /// RabbitMQ, started on first use.
    pub async fn rabbitmq(&self) -> Result<&RabbitMq, String> {
        self.rabbitmq
            .get_or_init(|| RabbitMq::start(&self.spec))
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Mosquitto, started on first use.
    pub async fn mosquitto(&self) -> Result<&Mosquitto, String> {
        self.mosquitto
            .get_or_init(|| Mosquitto::start(&self.spec))
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether a broker failed to start.
    pub fn broker_failed(&self) -> bool {
        matches!(self.rabbitmq.get(), Some(Err(_))) || matches!(self.mosquitto.get(), Some(Err(_)))
    }

    /// DMF: the server's side (hawkBit's topology).
    pub async fn server(&self) -> Result<&DmfServerSide, String> {
        let url = self.rabbitmq().await?.amqp_url.clone();
        self.dmf_server
            .get_or_init(|| async move { DmfServerSide::start(&url).await })
            .await;
        get(&self.dmf_server)
    }

    /// DMF: the devices' side.
    pub async fn device(&self) -> Result<&DmfDeviceSide, String> {
        let url = self.rabbitmq().await?.amqp_url.clone();
        self.dmf_device
            .get_or_init(|| async move { DmfDeviceSide::start(&url).await })
            .await;
        get(&self.dmf_device)
    }

    /// Device API: IoT Hub with the platform.
    pub async fn ability_platform(&self) -> Result<&AbilityPlatformSide, String> {
        let service = self.mosquitto().await?.service()?;
        self.ability_platform
            .get_or_init(|| AbilityPlatformSide::start(service))
            .await;
        get(&self.ability_platform)
    }

    /// Device API: the devices' side.
    pub async fn ability_device(&self) -> Result<&AbilityDeviceSide, String> {
        let devices = self.mosquitto().await?.devices()?;
        self.ability_device
            .get_or_init(|| async move { Ok(AbilityDeviceSide::new(devices)) })
            .await;
        get(&self.ability_device)
    }

    /// Removes the brokers this process started.
    pub async fn stop(self) {
        if let Some(Ok(b)) = self.rabbitmq.into_inner() {
            b.stop().await;
        }
        if let Some(Ok(b)) = self.mosquitto.into_inner() {
            b.stop().await;
        }
    }
}

/// One case's link.
pub enum CaseLink {
    /// DMF: the harness is the server; a device is under test.
    ToDevice(DmfCaseLink),
    /// DMF: the harness is a device; a server is under test.
    ToServer(Box<DmfDeviceLink>),
    /// Device API: the harness is IoT Hub and the platform; a device is
    /// under test.
    AbilityToDevice(AbilityPlatformLink),
    /// Device API: the harness is a device; the platform is under test.
    AbilityToPlatform(AbilityDeviceLink),
}

impl CaseLink {
    /// Publishes `msg`; returns it as it went out.
    pub async fn publish(&mut self, msg: &Message) -> Result<Message, String> {
        match self {
            CaseLink::ToDevice(l) => l.publish(msg).await.map(|()| msg.clone()),
            CaseLink::ToServer(l) => l.publish(msg).await,
            CaseLink::AbilityToDevice(l) => l.publish(msg).await.map(|()| msg.clone()),
            CaseLink::AbilityToPlatform(l) => l.publish(msg).await.map(|()| msg.clone()),
        }
    }

    /// The next arrival, or `None` once the link is closed.
    pub async fn recv(&mut self) -> Option<Arrival> {
        match self {
            CaseLink::ToDevice(l) => l.recv().await.map(Arrival::Message),
            CaseLink::ToServer(l) => l.recv().await,
            CaseLink::AbilityToDevice(l) => l.recv().await,
            CaseLink::AbilityToPlatform(l) => l.recv().await,
        }
    }

    /// What has already arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Arrival> {
        match self {
            CaseLink::ToDevice(l) => l.try_recv().map(Arrival::Message),
            CaseLink::ToServer(l) => l.try_recv(),
            CaseLink::AbilityToDevice(l) => l.try_recv(),
            CaseLink::AbilityToPlatform(l) => l.try_recv(),
        }
    }

    fn amqp(&self) -> Result<&crate::transport::amqp::AmqpClient, String> {
        match self {
            CaseLink::ToDevice(l) => Ok(l.client()),
            CaseLink::ToServer(l) => Ok(l.client()),
            _ => Err("this check needs an AMQP broker; the case runs on MQTT".to_owned()),
        }
    }

    /// Whether an exchange exists.
    pub async fn exchange_exists(&mut self, name: &str) -> Result<bool, String> {
        self.amqp()?.exchange_exists(name).await
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
        self.amqp()?.exchange_is(name, kind, durable).await
    }

    /// Messages no case owned that arrived while this one ran.
    pub fn unattributed(&self) -> Vec<Message> {
        match self {
            CaseLink::ToDevice(l) => l.unattributed(),
            _ => Vec::new(),
        }
    }

    /// Closes the link.
    pub async fn close(self) {
        match self {
            CaseLink::ToDevice(l) => l.close().await,
            CaseLink::ToServer(l) => l.close().await,
            CaseLink::AbilityToDevice(l) => l.close().await,
            CaseLink::AbilityToPlatform(l) => l.close().await,
        }
    }
}
