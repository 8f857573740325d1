//! Brokers for a run: an existing one named by the user, or RabbitMQ
//! started with testcontainers. Readiness is a real AMQP login. The only
//! module that talks to Docker.
//!
//! Under `cargo test` one process runs every case: it starts the broker
//! once and removes it at the end. Under `cargo nextest run` every case is
//! its own process: the first one starts a container labelled with the
//! nextest run id, the others find it by that label, and a small reaper
//! process removes it once nextest has exited.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt, ReuseDirective};

use crate::profile::BrokerSpec;
use crate::transport::amqp::AmqpClient;

/// The image built offline by `scripts/build-images.sh`.
pub const OFFLINE_RABBITMQ_IMAGE: &str = "dmconf/rabbitmq:offline";
/// The official image, for machines that reach a registry.
pub const OFFICIAL_RABBITMQ_IMAGE: &str = "rabbitmq:4.1";
/// How long a broker may take to accept an AMQP login.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// The environment variable that makes the test binary a reaper.
pub const REAPER_ENV: &str = "DMCONF_REAP_CONTAINER";

/// A broker ready for AMQP.
pub struct Broker {
    /// `amqp://guest:guest@host:port/%2f`.
    pub amqp_url: String,
    /// Time from the start request to the first AMQP login.
    pub start_time: Duration,
    /// The image, when the harness started one.
    pub image: Option<String>,
    container: Option<ContainerAsync<GenericImage>>,
}

impl Broker {
    /// Uses `DMCONF_AMQP_URL` or the profile's broker if given; otherwise
    /// starts RabbitMQ.
    pub async fn start(spec: &BrokerSpec) -> Result<Self, String> {
        let began = Instant::now();
        let existing = std::env::var("DMCONF_AMQP_URL")
            .ok()
            .or_else(|| spec.amqp_url.clone());
        if let Some(url) = existing {
            wait_ready(&url).await?;
            return Ok(Broker {
                amqp_url: url,
                start_time: began.elapsed(),
                image: None,
                container: None,
            });
        }
        let docker = Docker::connect_with_local_defaults().map_err(|e| {
            format!("cannot reach Docker to start RabbitMQ ({e}); or set DMCONF_AMQP_URL")
        })?;
        let image = choose_image(&docker, spec).await;
        let nextest_run = std::env::var("NEXTEST_RUN_ID").ok();
        let (container, url) = match &nextest_run {
            Some(run) => shared_container(&docker, &image, run).await?,
            None => {
                let c = request(&image)
                    .start()
                    .await
                    .map_err(|e| no_start(&image, e))?;
                let url = url_of(&c).await?;
                (Some(c), url)
            }
        };
        wait_ready(&url).await?;
        Ok(Broker {
            amqp_url: url,
            start_time: began.elapsed(),
            image: Some(image),
            container,
        })
    }

    /// Removes the container this process started (not a shared one).
    pub async fn stop(self) {
        if let Some(c) = self.container
            && std::env::var("NEXTEST_RUN_ID").is_err()
        {
            let _ = c.rm().await;
        }
    }
}

fn no_start(image: &str, e: impl std::fmt::Display) -> String {
    format!(
        "cannot start RabbitMQ from image `{image}`: {e}\n\
         With no registry, build the offline images first: scripts/build-images.sh"
    )
}

async fn choose_image(docker: &Docker, spec: &BrokerSpec) -> String {
    if let Ok(i) = std::env::var("DMCONF_RABBITMQ_IMAGE") {
        return i;
    }
    if let Some(i) = &spec.rabbitmq_image {
        return i.clone();
    }
    if docker.inspect_image(OFFLINE_RABBITMQ_IMAGE).await.is_ok() {
        OFFLINE_RABBITMQ_IMAGE.to_owned()
    } else {
        OFFICIAL_RABBITMQ_IMAGE.to_owned()
    }
}

fn request(image: &str) -> testcontainers::ContainerRequest<GenericImage> {
    let (name, tag) = image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .unwrap_or((image, "latest"));
    GenericImage::new(name, tag)
        .with_exposed_port(5672.tcp())
        .with_wait_for(WaitFor::Nothing)
        .with_label("dmconf.broker", "rabbitmq")
}

async fn url_of(c: &ContainerAsync<GenericImage>) -> Result<String, String> {
    let port = c
        .get_host_port_ipv4(5672)
        .await
        .map_err(|e| e.to_string())?;
    let host = c.get_host().await.map_err(|e| e.to_string())?;
    Ok(format!("amqp://guest:guest@{host}:{port}/%2f"))
}

/// One container per nextest run, found by label; the process that
/// creates it also starts the reaper.
async fn shared_container(
    docker: &Docker,
    image: &str,
    run: &str,
) -> Result<(Option<ContainerAsync<GenericImage>>, String), String> {
    let lock_path = std::env::temp_dir().join(format!("dmconf-broker-{run}.lock"));
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let filters = HashMap::from([("label".to_owned(), vec![format!("dmconf.run={run}")])]);
    let found = docker
        .list_containers(Some(ListContainersOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    let existed = !found.is_empty();
    let c = request(image)
        .with_label("dmconf.run", run)
        .with_reuse(ReuseDirective::Always)
        .start()
        .await
        .map_err(|e| no_start(image, e))?;
    if !existed {
        spawn_reaper(c.id());
    }
    let url = url_of(&c).await?;
    drop(lock);
    Ok((Some(c), url))
}

/// Starts this test binary again, detached, as a reaper that removes the
/// container once the parent of this process (nextest) has exited.
fn spawn_reaper(container: &str) {
    let ppid = std::os::unix::process::parent_id();
    if let Ok(exe) = std::env::current_exe() {
        let _ = std::process::Command::new(exe)
            .env(REAPER_ENV, format!("{container}:{ppid}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn();
    }
}

/// The reaper's body: waits for the watched process to exit, then removes
/// the container. Returns at once when `spec` is malformed.
pub fn reap(spec: &str) {
    let Some((container, pid)) = spec.split_once(':') else {
        return;
    };
    let Ok(pid) = pid.parse::<i32>() else { return };
    // SAFETY: kill(pid, 0) only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        if let Ok(docker) = Docker::connect_with_local_defaults() {
            let _ = docker
                .remove_container(
                    container,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
    });
}

use std::os::unix::process::CommandExt;

/// Waits until an AMQP login succeeds, at most [`READY_WITHIN`].
async fn wait_ready(url: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        match AmqpClient::connect(url).await {
            Ok(c) => {
                c.close().await;
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "the broker at {url} did not accept an AMQP login within {READY_WITHIN:?}: {e}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
