//! RabbitMQ for DMF: a broker the user names (`DMCONF_AMQP_URL`, or
//! `[broker] amqp_url`), or one started from the offline or official
//! image. Ready once an AMQP login succeeds.

use std::time::{Duration, Instant};

use bollard::Docker;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::READY_WITHIN;
use crate::profile::BrokerSpec;
use crate::transport::TransportError;
use crate::transport::amqp::AmqpClient;

/// The image built offline by `scripts/build-images.sh`.
pub const OFFLINE_IMAGE: &str = "dmconf/rabbitmq:offline";
/// The official image, for machines that reach a registry.
pub const OFFICIAL_IMAGE: &str = "rabbitmq:4.1";

/// RabbitMQ's firehose on for the default vhost from boot: the broker
/// copies every delivery to `amq.rabbitmq.trace`, which is how a case
/// sees a server requeue a message instead of taking or refusing it,
/// without consuming the server's queue. (`rabbitmqctl trace_on` does the
/// same on a running broker, but costs seconds of the run's start.)
const FIREHOSE: &str = "[{rabbit, [{trace_vhosts, [<<\"/\">>]}]}].\n";

/// The user a started RabbitMQ makes for the run.
const USER: &str = "dmconf";

/// A RabbitMQ broker ready for AMQP.
pub struct RabbitMq {
    /// `amqp://dmconf:<password of this run>@host:port/%2f`.
    pub amqp_url: String,
    /// Time from the start request to the first AMQP login.
    pub start_time: Duration,
    /// The image it was started from; none for a broker of the user's.
    pub image: Option<super::Image>,
    container: Option<ContainerAsync<GenericImage>>,
}

impl RabbitMq {
    /// Uses `DMCONF_AMQP_URL` or the profile's broker if given; otherwise
    /// starts RabbitMQ.
    pub async fn start(spec: &BrokerSpec) -> Result<Self, String> {
        let began = Instant::now();
        let existing = std::env::var(crate::env::AMQP_URL)
            .ok()
            .or_else(|| spec.amqp_url.clone());
        if let Some(url) = existing {
            wait_ready(&url).await?;
            return Ok(RabbitMq {
                amqp_url: url,
                start_time: began.elapsed(),
                image: None,
                container: None,
            });
        }
        let docker = Docker::connect_with_local_defaults().map_err(|e| {
            format!("cannot reach Docker to start RabbitMQ ({e}); or set DMCONF_AMQP_URL")
        })?;
        let image = super::choose_image(
            &docker,
            crate::env::RABBITMQ_IMAGE,
            spec.rabbitmq_image.as_ref(),
            OFFLINE_IMAGE,
            OFFICIAL_IMAGE,
        )
        .await?;
        // A login of this run's own, not guest/guest: RabbitMQ (3.9 and
        // later) makes this user, and no other, on its first boot.
        let (password, secret_dir) = super::run_secret("rabbitmq")?;
        let request = super::generic(&image)
            .with_exposed_port(5672.tcp())
            .with_wait_for(WaitFor::Nothing)
            .with_label("dmconf.broker", "rabbitmq")
            .with_env_var("RABBITMQ_DEFAULT_USER", USER)
            .with_env_var("RABBITMQ_DEFAULT_PASS", password.clone())
            .with_copy_to(
                "/etc/rabbitmq/advanced.config",
                FIREHOSE.as_bytes().to_vec(),
            );
        let request = super::publish_on(request, spec.listen(), &[5672]);
        let (c, claim) =
            super::start_container(&docker, "rabbitmq", request, secret_dir.as_deref())
                .await
                .map_err(|e| super::no_start("RabbitMQ", &image, e))?;
        let port = c
            .get_host_port_ipv4(5672)
            .await
            .map_err(|e| e.to_string())?;
        let host = c.get_host().await.map_err(|e| e.to_string())?;
        let url = format!("amqp://{USER}:{password}@{host}:{port}/%2f");
        if !claim.ready {
            wait_ready(&url).await?;
        }
        claim.mark_ready();
        Ok(RabbitMq {
            amqp_url: url,
            start_time: began.elapsed(),
            image: Some(super::describe_image(&docker, &image).await),
            container: Some(c),
        })
    }

    /// Removes the container this process started (not a shared one).
    pub async fn stop(self) {
        super::stop_container(self.container).await;
    }
}

/// Waits until an AMQP login succeeds, at most [`READY_WITHIN`]; a
/// refusal that trying again will not change (the login, a host that
/// does not exist) ends the wait at once.
async fn wait_ready(url: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    let shown = super::redact(url);
    loop {
        match AmqpClient::connect(url).await {
            Ok(c) => {
                c.close().await;
                return Ok(());
            }
            Err(TransportError::Refused(e)) => {
                return Err(format!(
                    "the broker at {shown} refused, and trying again will not help: {e}"
                ));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "the broker at {shown} did not accept an AMQP login within {READY_WITHIN:?}: {e}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
