//! Mosquitto set up as Azure IoT Hub behaves, for the Device API: a TLS
//! listener for devices with a CA and server certificate made for this
//! run, where a client may publish only under `devices/{its client
//! id}/messages/events/` and read only its own
//! `devices/{its client id}/messages/devicebound/` (so the device id in a
//! topic can be trusted like IoT Hub's `iothub-connection-device-id`), and
//! any user name and password are taken (IoT Hub's SAS tokens cannot be
//! checked here), but only from a client whose id carries the run's tag
//! (the offline image's plugin, `scripts/mosquitto-run-ids.c`); and a
//! listener for the platform's service identity, with a password made for
//! this run, which reads every device's device-to-cloud topic and writes
//! every device's cloud-to-device topic.
//!
//! A broker the user names instead: `DMCONF_MQTT_URL` (the service
//! identity's URL), `DMCONF_MQTT_DEVICE_URL` (where devices connect; the
//! same host and port by default) and `DMCONF_MQTT_CA` (a PEM file).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::READY_WITHIN;
use crate::profile::BrokerSpec;
use crate::transport::mqtt::{Endpoint, Login, MqttClient};

/// The image built offline by `scripts/build-images.sh`.
pub const OFFLINE_IMAGE: &str = "dmconf/mosquitto:offline";
/// The official image, for machines that reach a registry.
pub const OFFICIAL_IMAGE: &str = "eclipse-mosquitto:2";
/// The platform's service identity.
pub const SERVICE_USER: &str = "dmconf-service";
/// The device listener's port in the container (IoT Hub's MQTT port).
const DEVICE_PORT: u16 = 8883;
/// The service listener's port in the container.
const SERVICE_PORT: u16 = 1883;

const CONFIG: &str = "\
per_listener_settings true
max_packet_size 1048576
# Devices connect with CleanSession 0, as the Azure SDKs do; a session
# the run left behind goes after an hour.
persistent_client_expiration 1h

listener 1883
allow_anonymous false
password_file /mosquitto/config/service.passwd
acl_file /mosquitto/config/service.acl

listener 8883
cafile /mosquitto/config/ca.pem
certfile /mosquitto/config/server.pem
keyfile /mosquitto/config/server.key
allow_anonymous true
acl_file /mosquitto/config/devices.acl
# IoT Hub takes QoS 0 and 1 and closes the connection of a device that
# publishes at QoS 2; a subscription asking for 2 is granted 1.
max_qos 1
";

const DEVICE_ACL: &str = "\
pattern write devices/%c/messages/events/#
pattern read devices/%c/messages/devicebound/#
";

/// Where the offline image keeps the plugin that checks device ids.
const RUN_IDS_PLUGIN: &str = "/usr/lib/dmconf/mosquitto-run-ids.so";

/// Writes the service password file at start; when the image has the
/// plugin, lets only the run's device ids log in (the device listener's
/// section is the configuration's last); then runs Mosquitto.
const START: &str = "\
mosquitto_passwd -b -c /mosquitto/config/service.passwd \"$DMCONF_SERVICE_USER\" \"$DMCONF_SERVICE_PASSWORD\" || exit 1
if [ -f \"$DMCONF_RUN_IDS_PLUGIN\" ]; then
  printf 'plugin %s\\nplugin_opt_tag %s\\n' \"$DMCONF_RUN_IDS_PLUGIN\" \"$DMCONF_RUN_TAG\" >>/mosquitto/config/mosquitto.conf
fi
exec mosquitto -c /mosquitto/config/mosquitto.conf";

/// A Mosquitto broker ready for devices and the service identity.
pub struct Mosquitto {
    /// Where devices connect: `mqtts://host:port`.
    pub device_url: String,
    /// The service identity's URL, with its login.
    pub service_url: String,
    /// What every device id of the run carries, so that the broker lets
    /// it log in; empty on a broker of the user's.
    pub run_tag: String,
    /// The CA that signed the device listener's certificate (PEM).
    pub ca_pem: Option<String>,
    /// The same CA in a file, for programs (`DMCONF_MQTT_CA`).
    pub ca_file: Option<PathBuf>,
    /// Time from the start request to the first login.
    pub start_time: Duration,
    /// The image it was started from; none for a broker of the user's.
    pub image: Option<super::Image>,
    container: Option<ContainerAsync<GenericImage>>,
    secrets_dir: Option<PathBuf>,
}

/// What one run's broker is keyed with.
struct Secrets {
    ca_pem: String,
    server_pem: String,
    server_key: String,
    password: String,
    run_tag: String,
    dir: PathBuf,
}

fn make_secrets(dir: PathBuf, hosts: Vec<String>) -> Result<Secrets, String> {
    let ca = crate::certs::RunCa::new("dmconf test CA (one run)")?;
    let server = ca.issue(hosts)?;
    super::private_dir(&dir)?;
    let secrets = Secrets {
        ca_pem: ca.pem(),
        server_pem: server.cert_pem,
        server_key: server.key_pem,
        password: uuid::Uuid::new_v4().simple().to_string(),
        run_tag: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
        dir,
    };
    for (name, text) in [
        ("ca.pem", &secrets.ca_pem),
        ("password", &secrets.password),
        ("tag", &secrets.run_tag),
    ] {
        let path = secrets.dir.join(name);
        super::private_file(&path, text)?;
    }
    Ok(secrets)
}

/// Under nextest, every process of the run shares one broker and so one
/// set of secrets; the first process makes them.
fn secrets_for_run(hosts: Vec<String>) -> Result<(Secrets, bool), String> {
    let Ok(run) = std::env::var("NEXTEST_RUN_ID") else {
        let dir = std::env::temp_dir().join(format!(
            "dmconf-mosquitto-{}",
            uuid::Uuid::new_v4().simple()
        ));
        if let Some(g) = crate::reaper::guard() {
            g.path(&dir);
        }
        return make_secrets(dir, hosts).map(|s| (s, true));
    };
    let dir = std::env::temp_dir().join(format!("dmconf-mosquitto-{run}"));
    // The lock lives in the folder, which the run's reaper removes.
    let _held = crate::reaper::lock(&dir.join("lock"))?;
    let read = |n: &str| std::fs::read_to_string(dir.join(n));
    if let (Ok(ca_pem), Ok(password), Ok(run_tag)) = (read("ca.pem"), read("password"), read("tag"))
    {
        let secrets = Secrets {
            ca_pem,
            server_pem: String::new(),
            server_key: String::new(),
            password,
            run_tag,
            dir: dir.clone(),
        };
        return Ok((secrets, false));
    }
    make_secrets(dir, hosts).map(|s| (s, true))
}

impl Mosquitto {
    /// Uses the broker the environment names, or starts Mosquitto.
    pub async fn start(spec: &BrokerSpec) -> Result<Self, String> {
        let began = Instant::now();
        let existing = std::env::var(crate::env::MQTT_URL)
            .ok()
            .or_else(|| spec.mqtt_url.clone());
        if let Some(service_url) = existing {
            return Self::existing(service_url, began).await;
        }
        let docker = Docker::connect_with_local_defaults().map_err(|e| {
            format!("cannot reach Docker to start Mosquitto ({e}); or set DMCONF_MQTT_URL")
        })?;
        let image = super::choose_image(
            &docker,
            crate::env::MOSQUITTO_IMAGE,
            spec.mosquitto_image.as_ref(),
            OFFLINE_IMAGE,
            OFFICIAL_IMAGE,
        )
        .await?;
        let mut hosts = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        hosts.extend(spec.mqtt_host.clone());
        let (secrets, fresh) = secrets_for_run(hosts)?;
        let mut request = super::generic(&image)
            .with_exposed_port(SERVICE_PORT.tcp())
            .with_exposed_port(DEVICE_PORT.tcp())
            .with_wait_for(WaitFor::Nothing)
            .with_label("dmconf.broker", "mosquitto")
            .with_env_var("DMCONF_SERVICE_USER", SERVICE_USER)
            .with_env_var("DMCONF_SERVICE_PASSWORD", secrets.password.clone())
            .with_env_var("DMCONF_RUN_IDS_PLUGIN", RUN_IDS_PLUGIN)
            .with_env_var("DMCONF_RUN_TAG", secrets.run_tag.clone())
            .with_cmd(["sh", "-c", START]);
        if fresh {
            let service_acl = format!("user {SERVICE_USER}\ntopic readwrite devices/#\n");
            for (name, text) in [
                ("mosquitto.conf", CONFIG.to_owned()),
                ("devices.acl", DEVICE_ACL.to_owned()),
                ("service.acl", service_acl),
                ("ca.pem", secrets.ca_pem.clone()),
                ("server.pem", secrets.server_pem.clone()),
                ("server.key", secrets.server_key.clone()),
            ] {
                request =
                    request.with_copy_to(format!("/mosquitto/config/{name}"), text.into_bytes());
            }
        }
        if let Some(port) = spec.mqtt_tls_port {
            // Once one port is mapped by hand, Docker publishes only the
            // mapped ones: the service listener needs a host port too.
            let free = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free port for the service listener: {e}"))?
                .port();
            request = request
                .with_mapped_port(port, DEVICE_PORT.tcp())
                .with_mapped_port(free, SERVICE_PORT.tcp());
        }
        let request = super::publish_on(request, spec.listen(), &[SERVICE_PORT, DEVICE_PORT]);
        let (c, claim) = super::start_container(&docker, "mosquitto", request, Some(&secrets.dir))
            .await
            .map_err(|e| super::no_start("Mosquitto", &image, e))?;
        let host = c.get_host().await.map_err(|e| e.to_string())?;
        let port = |p: u16| {
            let c = &c;
            async move { c.get_host_port_ipv4(p).await.map_err(|e| e.to_string()) }
        };
        let (service, device) = (port(SERVICE_PORT).await?, port(DEVICE_PORT).await?);
        let broker = Mosquitto {
            device_url: format!("mqtts://{host}:{device}"),
            service_url: format!(
                "mqtt://{SERVICE_USER}:{}@{host}:{service}",
                secrets.password
            ),
            ca_file: Some(secrets.dir.join("ca.pem")),
            run_tag: secrets.run_tag,
            ca_pem: Some(secrets.ca_pem),
            start_time: Duration::ZERO,
            image: None,
            container: Some(c),
            secrets_dir: fresh.then_some(secrets.dir),
        };
        if !claim.ready {
            broker.wait_ready().await?;
        }
        claim.mark_ready();
        Ok(Mosquitto {
            start_time: began.elapsed(),
            image: Some(super::describe_image(&docker, &image).await),
            ..broker
        })
    }

    async fn existing(service_url: String, began: Instant) -> Result<Self, String> {
        let ca_file = std::env::var_os(crate::env::MQTT_CA).map(PathBuf::from);
        let ca_pem = match &ca_file {
            Some(f) => {
                Some(std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?)
            }
            None => None,
        };
        let device_url = match std::env::var(crate::env::MQTT_DEVICE_URL) {
            Ok(u) => u,
            Err(_) => match service_url.split_once("://") {
                Some((scheme, rest)) => {
                    format!(
                        "{scheme}://{}",
                        rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest)
                    )
                }
                None => service_url.clone(),
            },
        };
        let broker = Mosquitto {
            device_url,
            service_url,
            run_tag: String::new(),
            ca_pem,
            ca_file,
            start_time: Duration::ZERO,
            image: None,
            container: None,
            secrets_dir: None,
        };
        broker.wait_ready().await?;
        Ok(Mosquitto {
            start_time: began.elapsed(),
            ..broker
        })
    }

    /// The service identity's endpoint.
    pub fn service(&self) -> Result<Endpoint, String> {
        Endpoint::parse(&self.service_url, self.ca_pem.clone())
    }

    /// The devices' endpoint.
    pub fn devices(&self) -> Result<Endpoint, String> {
        Endpoint::parse(&self.device_url, self.ca_pem.clone())
    }

    /// Ready once the service identity and a device (over TLS, when the
    /// device listener uses it) can log in.
    async fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let attempts = [
            (
                self.service()?,
                format!("dmconf-ready-{}", uuid::Uuid::new_v4().simple()),
            ),
            (
                self.devices()?,
                format!(
                    "dmconf-ready-{}{}",
                    self.run_tag,
                    uuid::Uuid::new_v4().simple()
                ),
            ),
        ];
        for (endpoint, client_id) in attempts {
            let login = Login {
                client_id,
                ..Default::default()
            };
            loop {
                match MqttClient::connect(&endpoint, &login).await {
                    Ok((c, _)) => {
                        c.close().await;
                        break;
                    }
                    Err(crate::transport::TransportError::Refused(e)) => {
                        return Err(format!(
                            "the MQTT broker at {}:{} refused, and trying again will not help: {e}",
                            endpoint.host, endpoint.port
                        ));
                    }
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!(
                            "the MQTT broker at {}:{} did not accept a login within {READY_WITHIN:?}: {e}",
                            endpoint.host, endpoint.port
                        ));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
        Ok(())
    }

    /// Removes the container this process started, and its secrets.
    pub async fn stop(self) {
        let shared = std::env::var("NEXTEST_RUN_ID").is_ok();
        super::stop_container(self.container).await;
        if let Some(dir) = self.secrets_dir.filter(|_| !shared) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
