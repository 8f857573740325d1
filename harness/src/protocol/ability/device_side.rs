//! The side the harness plays when the platform is under test: one
//! device per case, connecting to the device listener over TLS as an
//! Azure IoT device SDK does (client id = device id, user name
//! `{hub}/{deviceId}/?api-version=...`, a SAS token for a password), and
//! subscribed to its cloud-to-device topic.

use tokio::sync::mpsc;

use super::{devicebound_topic, to_wire};
use crate::message::{Arrival, Message};
use crate::transport::TransportError;
use crate::transport::mqtt::{Endpoint, Login, MqttClient, Received};

/// The host name devices put in their user name.
pub const HUB_NAME: &str = "dmconf-hub.azure-devices.net";

/// How a device logs in to IoT Hub over MQTT, as the Azure SDKs do: its id
/// as client id, `{hub}/{id}/?api-version=...` as user name, a SAS token
/// as password (the broker checks the id, not the token), and a clean
/// session; set `keep_session` for CleanSession 0.
pub fn device_login(device: &str) -> Login {
    Login {
        client_id: device.to_owned(),
        user: Some(format!("{HUB_NAME}/{device}/?api-version=2021-04-12")),
        password: Some(format!(
            "SharedAccessSignature sr={HUB_NAME}%2Fdevices%2F{device}&sig=dmconf&se=4102444800"
        )),
        keep_session: false,
    }
}

/// The devices' side: where they connect.
pub(crate) struct AbilityDeviceSide {
    devices: Endpoint,
}

impl AbilityDeviceSide {
    /// Devices connect to `devices`.
    pub(crate) fn new(devices: Endpoint) -> Self {
        AbilityDeviceSide { devices }
    }

    /// Connects the case's device and subscribes it to its messages,
    /// which are judged against the cloud-to-device limit `c2d_limit`.
    pub(crate) async fn open_case(
        &self,
        device: &str,
        c2d_limit: usize,
    ) -> Result<AbilityDeviceLink, TransportError> {
        let (mut client, rx) = MqttClient::connect(&self.devices, &device_login(device)).await?;
        client
            .subscribe(&format!("{}#", devicebound_topic(device)))
            .await?;
        Ok(AbilityDeviceLink {
            client,
            rx,
            limit: c2d_limit,
        })
    }
}

/// One case's device, with the platform under test.
pub(crate) struct AbilityDeviceLink {
    client: MqttClient,
    rx: mpsc::UnboundedReceiver<Received>,
    limit: usize,
}

impl AbilityDeviceLink {
    /// Publishes a device-to-cloud message.
    pub(crate) async fn publish(&mut self, msg: &Message) -> Result<(), TransportError> {
        let (topic, payload) = to_wire(msg);
        self.client.publish(&topic, payload).await
    }

    /// The next message from the platform.
    pub(crate) async fn recv(&mut self) -> Option<Arrival> {
        let m = self.rx.recv().await?;
        Some(super::platform_side::arrival(
            &m.topic, &m.payload, self.limit, None, "platform",
        ))
    }

    /// What has already arrived.
    pub(crate) fn try_recv(&mut self) -> Option<Arrival> {
        let m = self.rx.try_recv().ok()?;
        Some(super::platform_side::arrival(
            &m.topic, &m.payload, self.limit, None, "platform",
        ))
    }

    /// Disconnects.
    pub(crate) async fn close(self) {
        self.client.close().await;
    }
}
