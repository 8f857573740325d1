//! MQTT 3.1.1 on rumqttc: connect (plain or TLS with a given CA),
//! subscribe, publish at QoS 1 and receive, every step bounded. The only
//! module that imports rumqttc. Packet-size limits are raised well above
//! IoT Hub's message limits, so that a message over a limit can be sent
//! and judged, not refused by the client.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::TransportError;

type Result<T> = std::result::Result<T, TransportError>;

fn unavailable(text: String) -> TransportError {
    TransportError::Unavailable(text)
}

/// A refusal that trying again will not change (credentials refused, a
/// certificate not trusted, a host that does not exist), or trouble that
/// may pass.
fn classify(e: &rumqttc::ConnectionError) -> TransportError {
    use rumqttc::ConnectionError as C;
    let text = e.to_string();
    // A TLS error that names no certificate may be a listener not up
    // yet (Docker's proxy takes the connection and drops it): transient.
    let permanent = matches!(e, C::ConnectionRefused(_))
        || ["certificate", "lookup address", "Name or service not known"]
            .iter()
            .any(|t| text.contains(t));
    if permanent {
        TransportError::Refused(text)
    } else {
        TransportError::Unavailable(text)
    }
}

/// Bound on every broker operation.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet either way: 1 MiB, four times IoT Hub's largest message.
pub const MAX_PACKET: usize = 1 << 20;

/// Where a broker is, and how to reach it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Use TLS, trusting this CA (PEM).
    pub ca_pem: Option<String>,
    /// Login from the URL, if any.
    pub user: Option<String>,
    /// Password from the URL, if any.
    pub password: Option<String>,
}

impl Endpoint {
    /// Parses `mqtt://[user[:password]@]host[:port]` or `mqtts://...`
    /// (TLS; the CA is given separately). User and password are
    /// percent-decoded.
    pub fn parse(url: &str, ca_pem: Option<String>) -> std::result::Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!("`{url}` is not an mqtt:// or mqtts:// URL"));
        };
        let rest = rest.trim_end_matches('/');
        let (login, hostport) = match rest.rsplit_once('@') {
            Some((l, h)) => (Some(l), h),
            None => (None, rest),
        };
        let (user, password) = match login.map(|l| l.split_once(':').unwrap_or((l, ""))) {
            Some((u, p)) => (Some(decode(u)), Some(decode(p))),
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse().map_err(|_| format!("`{url}`: bad port `{p}`"))?,
            ),
            None => (hostport.to_owned(), if tls { 8883 } else { 1883 }),
        };
        if tls && ca_pem.is_none() {
            return Err(format!(
                "`{url}` uses TLS, and no CA was given (DMCONF_MQTT_CA)"
            ));
        }
        Ok(Endpoint {
            host,
            port,
            ca_pem: if tls { ca_pem } else { None },
            user,
            password,
        })
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a client logs in.
#[derive(Clone, Debug, Default)]
pub struct Login {
    /// MQTT client id.
    pub client_id: String,
    /// User name; the endpoint's if `None`.
    pub user: Option<String>,
    /// Password; the endpoint's if `None`.
    pub password: Option<String>,
    /// Connect with CleanSession 0, as the Azure SDKs do: the broker keeps
    /// the subscriptions and queues QoS 1 messages while the client is away.
    pub keep_session: bool,
}

/// A message received on a subscription.
#[derive(Clone, Debug)]
pub struct Received {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Acks {
    connected: bool,
    subacks: u64,
    pubacks: u64,
}

/// One MQTT connection.
pub struct MqttClient {
    client: AsyncClient,
    acks: watch::Receiver<Acks>,
    closed: watch::Receiver<Option<TransportError>>,
    task: JoinHandle<()>,
    subscribed: std::sync::atomic::AtomicU64,
    published: std::sync::atomic::AtomicU64,
}

fn tls_config(ca_pem: &str) -> std::result::Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the CA is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the CA is not usable: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl MqttClient {
    /// Connects and waits for the broker's CONNACK. Publishes that arrive
    /// on the client's subscriptions come out of the returned receiver;
    /// it closes when the connection does.
    pub async fn connect(
        endpoint: &Endpoint,
        login: &Login,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Received>)> {
        let mut opts = MqttOptions::new(&login.client_id, &endpoint.host, endpoint.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_clean_session(!login.keep_session);
        let user = login.user.clone().or_else(|| endpoint.user.clone());
        let password = login.password.clone().or_else(|| endpoint.password.clone());
        if let Some(u) = user {
            opts.set_credentials(u, password.unwrap_or_default());
        }
        if let Some(ca) = &endpoint.ca_pem {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls_config(ca).map_err(unavailable)?,
            )));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        // Without it, a small publish can sit out the peer's delayed ACK
        // (40 ms on Linux), which each request and answer would pay.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (tx, rx) = mpsc::unbounded_channel();
        let (acks_tx, acks) = watch::channel(Acks::default());
        let (closed_tx, closed) = watch::channel(None);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = tx.send(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                        });
                    }
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        acks_tx.send_modify(|a| a.connected = true);
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        acks_tx.send_modify(|a| a.subacks += 1);
                    }
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        acks_tx.send_modify(|a| a.pubacks += 1);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = closed_tx.send(Some(classify(&e)));
                        break;
                    }
                }
            }
        });
        let mut c = MqttClient {
            client,
            acks,
            closed,
            task,
            subscribed: Default::default(),
            published: Default::default(),
        };
        let target = format!("{}:{}", endpoint.host, endpoint.port);
        c.wait(
            |a| a.connected,
            &format!("connect to {target} as `{}`", login.client_id),
        )
        .await?;
        Ok((c, rx))
    }

    async fn wait(&mut self, done: impl Fn(&Acks) -> bool, what: &str) -> Result<()> {
        let mut acks = self.acks.clone();
        let mut closed = self.closed.clone();
        let waited = tokio::time::timeout(OP_TIMEOUT, async {
            loop {
                if done(&acks.borrow()) {
                    return Ok(());
                }
                let why = closed.borrow().clone();
                if let Some(e) = why {
                    return Err(match e {
                        TransportError::Refused(e) => {
                            TransportError::Refused(format!("{what}: {e}"))
                        }
                        e => unavailable(format!("{what}: the connection closed: {e}")),
                    });
                }
                tokio::select! {
                    // The task ends after it has said why: look once more.
                    r = acks.changed() => if r.is_err() && closed.borrow().is_none() {
                        return Err(unavailable(format!("{what}: the connection closed")));
                    },
                    _ = closed.changed() => {}
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(unavailable(format!(
                "{what}: no answer from the broker within {OP_TIMEOUT:?}"
            )))
        })
    }

    /// Subscribes at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) -> Result<()> {
        self.subscribe_at(filter, 1).await
    }

    /// Subscribes at QoS `qos` (0, 1 or 2) and waits for the SUBACK.
    pub async fn subscribe_at(&mut self, filter: &str, qos: u8) -> Result<()> {
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let n = self
            .subscribed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.client
            .subscribe(filter, qos)
            .await
            .map_err(|e| unavailable(format!("subscribe to {filter}: {e}")))?;
        self.wait(|a| a.subacks >= n, &format!("subscribe to {filter}"))
            .await
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<()> {
        let n = self
            .published
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| unavailable(format!("publish to {topic}: {e}")))?;
        self.wait(|a| a.pubacks >= n, &format!("publish to {topic}"))
            .await
    }

    /// Publishes at QoS 2, without waiting for the handshake: IoT Hub,
    /// and the broker as the harness configures it, close the connection
    /// of a device that does this. Only a faulty reference uses it.
    pub async fn publish_exactly_once(&mut self, topic: &str, payload: Vec<u8>) -> Result<()> {
        self.client
            .publish(topic, QoS::ExactlyOnce, false, payload)
            .await
            .map_err(|e| unavailable(format!("publish to {topic}: {e}")))
    }

    /// Why the connection closed, if it has.
    pub fn closed(&self) -> Option<String> {
        self.closed.borrow().as_ref().map(ToString::to_string)
    }

    /// Disconnects.
    pub async fn close(self) {
        let _ = tokio::time::timeout(OP_TIMEOUT, self.client.disconnect()).await;
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("mqtt://svc:p%40ss@localhost:1883", None).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("localhost", 1883));
        assert_eq!(e.password.as_deref(), Some("p@ss"));
        assert!(Endpoint::parse("mqtts://h", None).is_err());
        let e = Endpoint::parse("mqtts://h", Some("pem".into())).unwrap();
        assert_eq!(e.port, 8883);
        assert!(Endpoint::parse("http://h", None).is_err());
    }
}
