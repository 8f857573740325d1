//! Mosquitto set up as Azure IoT Hub behaves, for the Device API: a TLS
//! listener for devices with a CA and server certificate made for the
//! broker, where a client may publish only under `devices/{its client
//! id}/messages/events/` and read only its own
//! `devices/{its client id}/messages/devicebound/` (so the device id in a
//! topic can be trusted like IoT Hub's `iothub-connection-device-id`), and
//! any user name and password are taken (IoT Hub's SAS tokens cannot be
//! checked here); and a listener for the platform's service identity,
//! with a password made for the run, which reads every device's
//! device-to-cloud topic and writes every device's cloud-to-device topic.
//!
//! On the offline image, the plugin `scripts/mosquitto-run-ids.c` keeps
//! runs apart: a device logs in only with a client id that carries the
//! tag of a run, and a run's service identity (`dmconf-service-<tag>`)
//! sees that run's devices only. A run adds itself to the broker when it
//! starts (a file named by its tag, holding its service password) and
//! is removed when it ends, so one warm broker serves run after run.
//! On the official image, without the plugin, the service identity is a
//! password file's one user, and the broker serves one run.
//!
//! A broker the user names instead: `DMCONF_MQTT_URL` (the service
//! identity's URL), `DMCONF_MQTT_DEVICE_URL` (where devices connect; the
//! same host and port by default) and `DMCONF_MQTT_CA` (a PEM file).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

use super::READY_WITHIN;
use crate::profile::BrokerSpec;
use crate::transport::mqtt::{Endpoint, Login, MqttClient};

/// The image built offline by `scripts/build-images.sh`.
pub const OFFLINE_IMAGE: &str = "dmconf/mosquitto:offline";
/// The official image, for machines that reach a registry.
pub const OFFICIAL_IMAGE: &str = "eclipse-mosquitto:2";
/// The platform's service identity (with the plugin, followed by the
/// run's tag).
pub const SERVICE_USER: &str = "dmconf-service";
/// The device listener's port in the container (IoT Hub's MQTT port).
const DEVICE_PORT: u16 = 8883;
/// The service listener's port in the container.
const SERVICE_PORT: u16 = 1883;
/// The offline image's label that names its folder of runs (and says
/// that it has the plugin).
const RUNS_LABEL: &str = "dmconf.runs";
/// Where the offline image keeps the plugin that keeps runs apart.
const RUN_IDS_PLUGIN: &str = "/usr/lib/dmconf/mosquitto-run-ids.so";
/// The label of a warm broker that holds its CA (a certificate, public).
const CA_LABEL: &str = "dmconf.ca";

/// The configuration, with the plugin's folder of runs, or with a
/// password file when the image has no plugin.
fn config(runs: Option<&str>) -> String {
    let plugin = |role: &str, runs: &str| {
        format!("plugin {RUN_IDS_PLUGIN}\nplugin_opt_role {role}\nplugin_opt_runs {runs}\n")
    };
    let (service, device) = match runs {
        Some(runs) => (plugin("service", runs), plugin("device", runs)),
        None => (
            "password_file /mosquitto/config/service.passwd\n\
             acl_file /mosquitto/config/service.acl\n"
                .to_owned(),
            String::new(),
        ),
    };
    format!(
        "\
per_listener_settings true
max_packet_size 1048576
# Each message on its way at once, not held for the peer's delayed ACK.
set_tcp_nodelay true
# Devices connect with CleanSession 0, as the Azure SDKs do; a session
# a run left behind goes after an hour.
persistent_client_expiration 1h

listener {SERVICE_PORT}
allow_anonymous false
{service}
listener {DEVICE_PORT}
cafile /mosquitto/config/ca.pem
certfile /mosquitto/config/server.pem
keyfile /mosquitto/config/server.key
allow_anonymous true
acl_file /mosquitto/config/devices.acl
# IoT Hub takes QoS 0 and 1 and closes the connection of a device that
# publishes at QoS 2; a subscription asking for 2 is granted 1.
max_qos 1
{device}"
    )
}

const DEVICE_ACL: &str = "\
pattern write devices/%c/messages/events/#
pattern read devices/%c/messages/devicebound/#
";

/// Without the plugin, writes the service password file at start; then
/// runs Mosquitto.
const START: &str = "\
if [ -n \"$DMCONF_SERVICE_PASSWORD\" ]; then
  mosquitto_passwd -b -c /mosquitto/config/service.passwd \"$DMCONF_SERVICE_USER\" \"$DMCONF_SERVICE_PASSWORD\" || exit 1
fi
exec mosquitto -c /mosquitto/config/mosquitto.conf";

/// Adds a run to a broker with the plugin: a file named by the run's
/// tag, holding its service password, that only Mosquitto may read.
const ADD_RUN: &str = "umask 077 && printf %s \"$DMCONF_SERVICE_PASSWORD\" >\"$0/$1\"";

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
    /// A warm broker an earlier run started.
    pub reused: bool,
    container: Option<ContainerAsync<GenericImage>>,
    /// The folder of this process's secrets, removed when it stops.
    secrets_dir: Option<PathBuf>,
    /// The run on a warm broker (container, tag), removed when it stops.
    scope: Option<(String, String)>,
}

/// What one run is keyed with.
struct Secrets {
    ca_pem: String,
    /// The server's certificate and key, when this process made the CA.
    server: Option<crate::certs::Issued>,
    password: String,
    run_tag: String,
    dir: PathBuf,
}

/// The run's secrets; under nextest, every process of the run shares
/// them (and so one broker), and the first one makes them, with the CA
/// `ca()` gives. True when this process made them.
fn secrets_for_run(
    ca: impl FnOnce() -> Result<(String, Option<crate::certs::Issued>), String>,
) -> Result<(Secrets, bool), String> {
    let dir = match std::env::var("NEXTEST_RUN_ID") {
        Ok(run) => std::env::temp_dir().join(format!("dmconf-mosquitto-{run}")),
        Err(_) => {
            let dir = std::env::temp_dir().join(format!(
                "dmconf-mosquitto-{}",
                uuid::Uuid::new_v4().simple()
            ));
            if let Some(g) = crate::reaper::guard() {
                g.path(&dir);
            }
            dir
        }
    };
    // The lock lives in the folder, which the run's reaper removes.
    let _held = crate::reaper::lock(&dir.join("lock"))?;
    let read = |n: &str| std::fs::read_to_string(dir.join(n));
    if let (Ok(ca_pem), Ok(password), Ok(run_tag)) = (read("ca.pem"), read("password"), read("tag"))
    {
        let secrets = Secrets {
            ca_pem,
            server: None,
            password,
            run_tag,
            dir: dir.clone(),
        };
        return Ok((secrets, false));
    }
    let (ca_pem, server) = ca()?;
    let secrets = Secrets {
        ca_pem,
        server,
        password: uuid::Uuid::new_v4().simple().to_string(),
        run_tag: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
        dir,
    };
    for (name, text) in [
        ("ca.pem", &secrets.ca_pem),
        ("password", &secrets.password),
        ("tag", &secrets.run_tag),
    ] {
        super::private_file(&secrets.dir.join(name), text)?;
    }
    Ok((secrets, true))
}

/// A CA for one broker, and the device listener's certificate for
/// `hosts`.
fn new_ca(hosts: Vec<String>) -> Result<(String, crate::certs::Issued), String> {
    let ca = crate::certs::RunCa::new("dmconf test CA (one broker)")?;
    let server = ca.issue(hosts)?;
    Ok((ca.pem(), server))
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
        let described = super::describe_image(&docker, &image).await;
        let runs = described.labels.get(RUNS_LABEL).cloned();
        let broker = if spec.warm() {
            let runs = runs.ok_or_else(|| {
                format!(
                    "a warm Mosquitto needs the offline image, whose plugin keeps runs apart; `{image}` has none (bash scripts/build-images.sh)"
                )
            })?;
            Self::warm(&docker, &image, &runs, spec).await?
        } else {
            Self::one_run(&docker, &image, runs.as_deref(), spec).await?
        };
        Ok(Mosquitto {
            start_time: began.elapsed(),
            image: Some(described),
            ..broker
        })
    }

    /// A broker of this run's own (shared by the processes of a nextest
    /// run).
    async fn one_run(
        docker: &Docker,
        image: &str,
        runs: Option<&str>,
        spec: &BrokerSpec,
    ) -> Result<Self, String> {
        let (secrets, fresh) =
            secrets_for_run(|| new_ca(hosts(spec)).map(|(ca, server)| (ca, Some(server))))?;
        let keys = secrets
            .server
            .as_ref()
            .map(|s| (secrets.ca_pem.as_str(), s));
        let mut request = request(image, runs, keys, spec)?;
        if runs.is_none() {
            request = request
                .with_env_var("DMCONF_SERVICE_USER", SERVICE_USER)
                .with_env_var("DMCONF_SERVICE_PASSWORD", secrets.password.clone());
        }
        let (c, claim) = super::start_container(docker, "mosquitto", request, Some(&secrets.dir))
            .await
            .map_err(|e| super::no_start("Mosquitto", image, e))?;
        if let (true, Some(runs)) = (fresh, runs) {
            add_run(docker, c.id(), runs, &secrets).await?;
        }
        let host = c.get_host().await.map_err(|e| e.to_string())?.to_string();
        let port = |p: u16| {
            let c = &c;
            async move { c.get_host_port_ipv4(p).await.map_err(|e| e.to_string()) }
        };
        let ports = (port(SERVICE_PORT).await?, port(DEVICE_PORT).await?);
        let broker = Mosquitto {
            container: Some(c),
            secrets_dir: fresh.then(|| secrets.dir.clone()),
            ..Self::at(&host, ports, runs.is_some(), secrets)
        };
        if !claim.ready {
            broker.wait_ready().await?;
        }
        claim.mark_ready();
        Ok(broker)
    }

    /// This run, added to the warm broker, started if there is none.
    async fn warm(
        docker: &Docker,
        image: &str,
        runs: &str,
        spec: &BrokerSpec,
    ) -> Result<Self, String> {
        let hosts = hosts(spec);
        let tls_port = spec
            .mqtt_tls_port
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut settings = vec!["mosquitto", spec.listen(), &tls_port];
        settings.extend(hosts.iter().map(String::as_str));
        let from = super::warm::made_from(docker, image, &settings).await;
        let (warm, started, lock) = super::warm::find_or_start(docker, "mosquitto", &from, || {
            let (ca_pem, server) = new_ca(hosts.clone())?;
            Ok(request(image, Some(runs), Some((&ca_pem, &server)), spec)?
                .with_label(CA_LABEL, ca_pem))
        })
        .await
        .map_err(|e| super::no_start("Mosquitto", image, e))?;
        let ca_pem = warm
            .label(CA_LABEL)
            .ok_or_else(|| format!("the warm Mosquitto {} has no {CA_LABEL} label", warm.id))?
            .to_owned();
        let (secrets, fresh) = secrets_for_run(|| Ok((ca_pem, None)))?;
        if fresh {
            add_run(docker, &warm.id, runs, &secrets).await?;
            super::warm::remove_when_over(
                "mosquitto",
                &warm.id,
                &secrets.run_tag,
                Some(&secrets.dir),
            );
        }
        let shared = std::env::var("NEXTEST_RUN_ID").is_ok();
        let ports = (warm.port(SERVICE_PORT)?, warm.port(DEVICE_PORT)?);
        let broker = Mosquitto {
            secrets_dir: (fresh && !shared).then(|| secrets.dir.clone()),
            scope: (!shared).then(|| (warm.id.clone(), secrets.run_tag.clone())),
            reused: !started,
            ..Self::at(warm.host(), ports, true, secrets)
        };
        broker.wait_ready().await?;
        drop(lock);
        Ok(broker)
    }

    /// The broker at `host`, with its (service, device) ports.
    fn at(host: &str, (service, device): (u16, u16), plugin: bool, secrets: Secrets) -> Self {
        let user = if plugin {
            format!("{SERVICE_USER}-{}", secrets.run_tag)
        } else {
            SERVICE_USER.to_owned()
        };
        Mosquitto {
            run_tag: secrets.run_tag,
            ..Self::reached_at(
                format!("mqtts://{host}:{device}"),
                format!("mqtt://{user}:{}@{host}:{service}", secrets.password),
                Some(secrets.ca_pem),
                Some(secrets.dir.join("ca.pem")),
            )
        }
    }

    /// A broker at these URLs, trusting `ca_pem`, of no run and no
    /// container yet.
    fn reached_at(
        device_url: String,
        service_url: String,
        ca_pem: Option<String>,
        ca_file: Option<PathBuf>,
    ) -> Self {
        Mosquitto {
            device_url,
            service_url,
            run_tag: String::new(),
            ca_pem,
            ca_file,
            start_time: Duration::ZERO,
            image: None,
            reused: false,
            container: None,
            secrets_dir: None,
            scope: None,
        }
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
        let broker = Self::reached_at(device_url, service_url, ca_pem, ca_file);
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

    /// The warm container this run uses.
    #[cfg(test)]
    pub(crate) fn warm_container(&self) -> Option<String> {
        self.scope.as_ref().map(|(c, _)| c.clone())
    }

    /// Removes the container this process started, or this run from the
    /// warm broker, and the run's secrets.
    pub async fn stop(self) {
        let shared = std::env::var("NEXTEST_RUN_ID").is_ok();
        super::stop_container(self.container).await;
        if let Some((container, tag)) = self.scope {
            let _ = super::warm::remove_scope("mosquitto", &container, &tag).await;
        }
        if let Some(dir) = self.secrets_dir.filter(|_| !shared) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The names the device listener's certificate holds.
fn hosts(spec: &BrokerSpec) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    hosts.extend(spec.mqtt_host.clone());
    hosts
}

/// What a started Mosquitto is asked for: its listeners, and, given
/// the CA and the server's certificate (by the process that made them),
/// the configuration and keys.
fn request(
    image: &str,
    runs: Option<&str>,
    keys: Option<(&str, &crate::certs::Issued)>,
    spec: &BrokerSpec,
) -> Result<ContainerRequest<GenericImage>, String> {
    let mut request = super::generic(image)
        .with_exposed_port(SERVICE_PORT.tcp())
        .with_exposed_port(DEVICE_PORT.tcp())
        .with_wait_for(WaitFor::Nothing)
        .with_label("dmconf.broker", "mosquitto")
        .with_cmd(["sh", "-c", START]);
    if let Some((ca_pem, server)) = keys {
        let service_acl = format!("user {SERVICE_USER}\ntopic readwrite devices/#\n");
        for (name, text) in [
            ("mosquitto.conf", config(runs)),
            ("devices.acl", DEVICE_ACL.to_owned()),
            ("service.acl", service_acl),
            ("ca.pem", ca_pem.to_owned()),
            ("server.pem", server.cert_pem.clone()),
            ("server.key", server.key_pem.clone()),
        ] {
            request = request.with_copy_to(format!("/mosquitto/config/{name}"), text.into_bytes());
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
    Ok(super::publish_on(
        request,
        spec.listen(),
        &[SERVICE_PORT, DEVICE_PORT],
    ))
}

/// Adds the run to a broker with the plugin.
async fn add_run(
    docker: &Docker,
    container: &str,
    runs: &str,
    secrets: &Secrets,
) -> Result<(), String> {
    super::warm::exec(
        docker,
        container,
        "mosquitto",
        vec![format!("DMCONF_SERVICE_PASSWORD={}", secrets.password)],
        &["sh", "-c", ADD_RUN, runs, &secrets.run_tag],
    )
    .await
    .map_err(|e| format!("cannot add this run to Mosquitto: {e}"))
}

/// Removes run `tag` from a warm broker.
pub(crate) async fn remove_scope(
    docker: &Docker,
    warm: &super::warm::Warm,
    tag: &str,
) -> Result<(), String> {
    let runs = warm
        .label(RUNS_LABEL)
        .ok_or_else(|| format!("the warm Mosquitto {} has no {RUNS_LABEL} label", warm.id))?;
    let file = format!("{runs}/{tag}");
    super::warm::exec(
        docker,
        &warm.id,
        "mosquitto",
        Vec::new(),
        &["rm", "-f", &file],
    )
    .await
}
