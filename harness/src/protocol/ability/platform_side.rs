//! The side the harness plays when a Device API device is under test:
//! IoT Hub and the platform. One connection of the service identity reads
//! every device's device-to-cloud topic and hands each message to the
//! case that owns its device id (trusted, since the broker lets a client
//! publish only under its own id); each case writes its device's
//! cloud-to-device topic on a connection of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Limits, from_wire, header_size, split_topic, to_wire};
use crate::message::{Arrival, Message};
use crate::transport::TransportError;
use crate::transport::mqtt::{Endpoint, Login, MqttClient, Received};

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Received>>>>;

/// IoT Hub's side, shared by the cases of a run.
pub(crate) struct AbilityPlatformSide {
    service: Endpoint,
    routes: Routes,
    _reader: MqttClient,
}

fn client_id(role: &str) -> String {
    format!("dmconf-{role}-{}", uuid::Uuid::new_v4().simple())
}

/// Turns what arrived into an arrival for the engine: malformed when it
/// does not decode, is over the message limit `limit`, or is a request
/// whose header properties are over `header_limit` (a device's limit).
pub(crate) fn arrival(
    topic: &str,
    payload: &[u8],
    limit: usize,
    header_limit: Option<usize>,
    who: &str,
) -> Arrival {
    let d = from_wire(topic, payload);
    if let Some(p) = d.problem {
        return Arrival::Malformed(d.message, p);
    }
    if d.iothub_size > limit {
        let why = format!(
            "the {who} sent a message of {} bytes as IoT Hub counts it (body + system property values + application property names and values); the limit is {limit} bytes",
            d.iothub_size
        );
        return Arrival::Malformed(d.message, why);
    }
    let request = d.message.headers.get("msgType").and_then(|v| v.as_str()) == Some("action");
    if let Some(max) = header_limit.filter(|_| request) {
        let size = header_size(&d.message);
        if size > max {
            let why = format!(
                "the {who} sent a request with {size} bytes of header properties (application property names and values, decoded, in UTF-8); the limit is {max} bytes"
            );
            return Arrival::Malformed(d.message, why);
        }
    }
    Arrival::Message(d.message)
}

impl AbilityPlatformSide {
    /// Subscribes the service identity to every device's messages.
    pub(crate) async fn start(service: Endpoint) -> Result<Self, TransportError> {
        let login = Login {
            client_id: client_id("hub"),
            ..Default::default()
        };
        let (mut reader, mut rx) = MqttClient::connect(&service, &login).await?;
        reader.subscribe("devices/+/messages/events/#").await?;
        let routes: Routes = Arc::default();
        let r = routes.clone();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let Some((device, _, _)) = split_topic(&m.topic) else {
                    continue;
                };
                let tx = r
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(device)
                    .cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(m);
                }
            }
        });
        Ok(AbilityPlatformSide {
            service,
            routes,
            _reader: reader,
        })
    }

    /// Opens one case: from now on every message of `device` is kept for
    /// it, and judged against the device-to-cloud and header limits.
    pub(crate) async fn open_case(
        &self,
        device: &str,
        limits: &Limits,
    ) -> Result<AbilityPlatformLink, TransportError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device.to_owned(), tx);
        let login = Login {
            client_id: client_id("hub"),
            ..Default::default()
        };
        let (client, _) = MqttClient::connect(&self.service, &login).await?;
        Ok(AbilityPlatformLink {
            client,
            rx,
            device: device.to_owned(),
            routes: self.routes.clone(),
            limit: limits.d2c,
            header_limit: limits.headers,
        })
    }
}

/// One case's view of IoT Hub, with a device under test.
pub(crate) struct AbilityPlatformLink {
    client: MqttClient,
    rx: mpsc::UnboundedReceiver<Received>,
    device: String,
    routes: Routes,
    limit: usize,
    header_limit: usize,
}

impl AbilityPlatformLink {
    /// Publishes a cloud-to-device message.
    pub(crate) async fn publish(&mut self, msg: &Message) -> Result<(), TransportError> {
        let (topic, payload) = to_wire(msg);
        self.client.publish(&topic, payload).await
    }

    /// The next message from the device.
    pub(crate) async fn recv(&mut self) -> Option<Arrival> {
        let m = self.rx.recv().await?;
        Some(self.judge(&m))
    }

    /// What has already arrived.
    pub(crate) fn try_recv(&mut self) -> Option<Arrival> {
        let m = self.rx.try_recv().ok()?;
        Some(self.judge(&m))
    }

    /// A device's message against the device-to-cloud and header limits.
    fn judge(&self, m: &Received) -> Arrival {
        arrival(
            &m.topic,
            &m.payload,
            self.limit,
            Some(self.header_limit),
            "device",
        )
    }

    /// Stops routing to this case and disconnects.
    pub(crate) async fn close(self) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.device);
        self.client.close().await;
    }
}
