//! The brokers of a run and every side the harness can play on them: for
//! DMF the server's side (a device under test) and the devices' side (a
//! server under test); for the Device API, IoT Hub with the platform (a
//! device under test) and the devices' side (a platform under test).
//! Brokers and sides are set up on first use, so a run starts only the
//! brokers its cases need, and a run against a server never declares or
//! drains the server's own queues.

use tokio::sync::OnceCell;

use super::ability::{AbilityDeviceSide, AbilityPlatformSide};
use super::dmf::{ArtifactServer, DmfDeviceSide, DmfServerSide, Upload};
use crate::broker::{Mosquitto, RabbitMq};
use crate::error::Error;
use crate::event::BrokerStart;
use crate::profile::BrokerSpec;

type Lazy<T> = OnceCell<Result<T, Error>>;

/// The brokers of a run and the sides the harness plays on them.
pub(crate) struct Sides {
    spec: BrokerSpec,
    rabbitmq: Lazy<RabbitMq>,
    mosquitto: Lazy<Mosquitto>,
    dmf_server: Lazy<DmfServerSide>,
    dmf_device: Lazy<DmfDeviceSide>,
    ability_platform: Lazy<AbilityPlatformSide>,
    ability_device: Lazy<AbilityDeviceSide>,
    artifacts: Lazy<ArtifactServer>,
    upload: Lazy<Upload>,
}

async fn once<T>(
    cell: &Lazy<T>,
    init: impl Future<Output = Result<T, Error>>,
) -> Result<&T, Error> {
    cell.get_or_init(|| init)
        .await
        .as_ref()
        .map_err(Clone::clone)
}

/// Says that a broker is being started or reached (not under nextest,
/// where every case is a process and the first one starts it).
fn announce(broker: &str) {
    if std::env::var_os("NEXTEST_RUN_ID").is_none() {
        eprintln!("dmconf: {broker}: starting (or reaching the one named)");
    }
}

fn ready(broker: &str, after: std::time::Duration, reused: bool) {
    if std::env::var_os("NEXTEST_RUN_ID").is_none() {
        eprintln!(
            "dmconf: {broker}: takes logins after {:.1} s{}",
            after.as_secs_f64(),
            if reused {
                " (warm, from an earlier run)"
            } else {
                ""
            }
        );
    }
}

impl Sides {
    /// Nothing started yet.
    pub(crate) fn new(spec: BrokerSpec) -> Self {
        Sides {
            spec,
            rabbitmq: OnceCell::new(),
            mosquitto: OnceCell::new(),
            dmf_server: OnceCell::new(),
            dmf_device: OnceCell::new(),
            ability_platform: OnceCell::new(),
            ability_device: OnceCell::new(),
            artifacts: OnceCell::new(),
            upload: OnceCell::new(),
        }
    }

    /// The artifact server for DMF devices, started on first use, on the
    /// brokers' listen address.
    pub(crate) async fn artifacts(&self) -> Result<&ArtifactServer, Error> {
        once(&self.artifacts, async {
            ArtifactServer::start(self.spec.listen())
                .await
                .map_err(Error::Setup)
        })
        .await
    }

    /// The artifact a DMF server under test is given to announce,
    /// written on first use.
    pub(crate) async fn upload(&self) -> Result<&Upload, Error> {
        once(&self.upload, async {
            Upload::write().map_err(Error::Setup)
        })
        .await
    }

    /// RabbitMQ, started on first use.
    pub(crate) async fn rabbitmq(&self) -> Result<&RabbitMq, Error> {
        once(&self.rabbitmq, async {
            announce("RabbitMQ");
            let b = RabbitMq::start(&self.spec).await.map_err(Error::Broker)?;
            ready("RabbitMQ", b.start_time, b.reused);
            Ok(b)
        })
        .await
    }

    /// Mosquitto, started on first use.
    pub(crate) async fn mosquitto(&self) -> Result<&Mosquitto, Error> {
        once(&self.mosquitto, async {
            announce("Mosquitto");
            let b = Mosquitto::start(&self.spec).await.map_err(Error::Broker)?;
            ready("Mosquitto", b.start_time, b.reused);
            Ok(b)
        })
        .await
    }

    /// Whether a broker failed to start.
    pub(crate) fn broker_failed(&self) -> bool {
        matches!(self.rabbitmq.get(), Some(Err(_))) || matches!(self.mosquitto.get(), Some(Err(_)))
    }

    /// The brokers this run has started or found, with the time each
    /// took to accept a login (kept apart from the cases' durations).
    pub(crate) fn started(&self) -> Vec<BrokerStart> {
        let start =
            |broker: &str, ready_after, image: &Option<crate::broker::Image>, reused| BrokerStart {
                broker: broker.to_owned(),
                ready_after,
                image: image.as_ref().map(|i| i.name.clone()),
                version: image.as_ref().and_then(|i| i.version.clone()),
                reused,
                unobserved: Vec::new(),
            };
        let mut out = Vec::new();
        if let Some(Ok(r)) = self.rabbitmq.get() {
            let mut b = start("RabbitMQ", r.start_time, &r.image, r.reused);
            if let Some(Ok(side)) = self.dmf_device.get() {
                b.unobserved.extend(side.firehose_off());
            }
            out.push(b);
        }
        if let Some(Ok(m)) = self.mosquitto.get() {
            out.push(start("Mosquitto", m.start_time, &m.image, m.reused));
        }
        out
    }

    /// DMF: the server's side (hawkBit's topology).
    pub(crate) async fn dmf_server(&self) -> Result<&DmfServerSide, Error> {
        let url = self.rabbitmq().await?.amqp_url.clone();
        once(&self.dmf_server, async move {
            Ok(DmfServerSide::start(&url).await?)
        })
        .await
    }

    /// DMF: the devices' side.
    pub(crate) async fn dmf_device(&self) -> Result<&DmfDeviceSide, Error> {
        let url = self.rabbitmq().await?.amqp_url.clone();
        once(&self.dmf_device, async move {
            Ok(DmfDeviceSide::start(&url).await?)
        })
        .await
    }

    /// Device API: IoT Hub with the platform.
    pub(crate) async fn ability_platform(&self) -> Result<&AbilityPlatformSide, Error> {
        let service = self.mosquitto().await?.service().map_err(Error::Broker)?;
        once(&self.ability_platform, async move {
            Ok(AbilityPlatformSide::start(service).await?)
        })
        .await
    }

    /// Device API: the devices' side.
    pub(crate) async fn ability_device(&self) -> Result<&AbilityDeviceSide, Error> {
        let devices = self.mosquitto().await?.devices().map_err(Error::Broker)?;
        once(&self.ability_device, async move {
            Ok(AbilityDeviceSide::new(devices))
        })
        .await
    }

    /// Removes the brokers this process started.
    pub(crate) async fn stop(self) {
        if let Some(Ok(b)) = self.rabbitmq.into_inner() {
            b.stop().await;
        }
        if let Some(Ok(b)) = self.mosquitto.into_inner() {
            b.stop().await;
        }
    }
}
