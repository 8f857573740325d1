//! RabbitMQ for DMF: a broker the user names (`DMCONF_AMQP_URL`, or
//! `[broker] amqp_url`), or one started from the offline or official
//! image. Ready once an AMQP login succeeds. A warm broker (see
//! [`super::warm`]) runs the management plugin, through which each run
//! makes a vhost of its own, with tracing on, and a user of its own that
//! may use that vhost and no other.

use std::time::{Duration, Instant};

use bollard::Docker;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

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

/// The user a started RabbitMQ makes for the run (for a warm broker,
/// its administrator).
const USER: &str = "dmconf";
/// The management plugin, on in a warm broker.
const MANAGEMENT: &str = "[rabbitmq_management].\n";
/// The management plugin's port in the container.
const MANAGEMENT_PORT: u16 = 15672;

/// A RabbitMQ broker ready for AMQP.
pub struct RabbitMq {
    /// `amqp://dmconf:<password of this run>@host:port/%2f`.
    pub amqp_url: String,
    /// Time from the start request to the first AMQP login.
    pub start_time: Duration,
    /// The image it was started from; none for a broker of the user's.
    pub image: Option<super::Image>,
    /// A warm broker an earlier run started.
    pub reused: bool,
    container: Option<ContainerAsync<GenericImage>>,
    /// The run's scope on a warm broker: the container and the name of
    /// the vhost and user, removed when the run stops.
    scope: Option<(String, String)>,
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
                reused: false,
                container: None,
                scope: None,
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
        if spec.warm() {
            return Self::warm(&docker, &image, spec, began).await;
        }
        // A login of this run's own, not guest/guest: RabbitMQ (3.9 and
        // later) makes this user, and no other, on its first boot.
        let secret = super::run_secret("rabbitmq")?;
        let request = super::publish_on(
            request(&image, &secret.value, &[5672]),
            spec.listen(),
            &[5672],
        );
        let (c, claim) =
            super::start_container(&docker, "rabbitmq", request, secret.dir.as_deref())
                .await
                .map_err(|e| super::no_start("RabbitMQ", &image, e))?;
        let port = c
            .get_host_port_ipv4(5672)
            .await
            .map_err(|e| e.to_string())?;
        let host = c.get_host().await.map_err(|e| e.to_string())?;
        let url = format!("amqp://{USER}:{}@{host}:{port}/%2f", secret.value);
        if !claim.ready {
            wait_ready(&url).await?;
        }
        claim.mark_ready();
        Ok(RabbitMq {
            amqp_url: url,
            start_time: began.elapsed(),
            image: Some(super::describe_image(&docker, &image).await),
            reused: false,
            container: Some(c),
            scope: None,
        })
    }

    /// A vhost and a user of this run's own on the warm broker, started
    /// if there is none.
    async fn warm(
        docker: &Docker,
        image: &str,
        spec: &BrokerSpec,
        began: Instant,
    ) -> Result<Self, String> {
        let from = super::warm::made_from(docker, image, &["rabbitmq", spec.listen()]).await;
        let (warm, started, lock) = super::warm::find_or_start(docker, "rabbitmq", &from, || {
            let admin = uuid::Uuid::new_v4().simple().to_string();
            let request = request(image, &admin, &[5672, MANAGEMENT_PORT]).with_copy_to(
                "/etc/rabbitmq/enabled_plugins",
                MANAGEMENT.as_bytes().to_vec(),
            );
            Ok(super::publish_on(
                request,
                spec.listen(),
                &[5672, MANAGEMENT_PORT],
            ))
        })
        .await
        .map_err(|e| super::no_start("RabbitMQ", image, e))?;
        let secret = super::run_secret("rabbitmq")?;
        // Under nextest, the processes of a run share one scope.
        let nextest_run = std::env::var("NEXTEST_RUN_ID").ok();
        let name = match &nextest_run {
            Some(run) => format!("dmconf-{run}"),
            None => format!(
                "dmconf-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
        };
        if secret.made {
            super::warm::remove_when_over("rabbitmq", &warm.id, &name, secret.dir.as_deref());
        }
        Admin::of(&warm)?.add_scope(&name, &secret.value).await?;
        drop(lock);
        let url = format!(
            "amqp://{name}:{}@{}:{}/{name}",
            secret.value,
            warm.host(),
            warm.port(5672)?
        );
        wait_ready(&url).await?;
        Ok(RabbitMq {
            amqp_url: url,
            start_time: began.elapsed(),
            image: Some(super::describe_image(docker, image).await),
            reused: !started,
            container: None,
            scope: nextest_run.is_none().then(|| (warm.id.clone(), name)),
        })
    }

    /// The warm container this run uses.
    #[cfg(test)]
    pub(crate) fn warm_container(&self) -> Option<String> {
        self.scope.as_ref().map(|(c, _)| c.clone())
    }

    /// Removes the container this process started (not a shared one),
    /// or the run's scope on a warm broker.
    pub async fn stop(self) {
        super::stop_container(self.container).await;
        if let Some((container, name)) = self.scope {
            let _ = super::warm::remove_scope("rabbitmq", &container, &name).await;
        }
    }
}

/// What a started RabbitMQ is asked for: a login of the run's own, and
/// the firehose.
fn request(image: &str, password: &str, ports: &[u16]) -> ContainerRequest<GenericImage> {
    let mut image = super::generic(image);
    for p in ports {
        image = image.with_exposed_port(p.tcp());
    }
    image
        .with_wait_for(WaitFor::Nothing)
        .with_label("dmconf.broker", "rabbitmq")
        .with_env_var("RABBITMQ_DEFAULT_USER", USER)
        .with_env_var("RABBITMQ_DEFAULT_PASS", password)
        .with_copy_to(
            "/etc/rabbitmq/advanced.config",
            FIREHOSE.as_bytes().to_vec(),
        )
}

/// The management API of a warm broker, as its administrator.
struct Admin {
    base: String,
    password: String,
    http: reqwest::Client,
}

impl Admin {
    fn of(warm: &super::warm::Warm) -> Result<Self, String> {
        Ok(Admin {
            base: format!("http://{}:{}/api", warm.host(), warm.port(MANAGEMENT_PORT)?),
            password: warm.env("RABBITMQ_DEFAULT_PASS")?.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    /// Sends a request; the answer's status, or why there is none.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::StatusCode, String> {
        let mut request = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .basic_auth(USER, Some(&self.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        Ok(answer.status())
    }

    /// Sends a request that must succeed.
    async fn must(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), String> {
        match self.call(method, path, body).await? {
            s if s.is_success() => Ok(()),
            s => Err(format!("{path}: {s}")),
        }
    }

    /// Makes vhost `name`, with tracing on (the firehose, for requeue
    /// loops), and user `name`, who may use that vhost and no other;
    /// tries again while the broker boots.
    async fn add_scope(&self, name: &str, password: &str) -> Result<(), String> {
        use reqwest::Method;
        use serde_json::json;
        let deadline = Instant::now() + READY_WITHIN;
        let vhost = format!("vhosts/{name}");
        let made = loop {
            let tried = self
                .call(Method::PUT, &vhost, Some(json!({"tracing": true})))
                .await;
            match tried {
                Ok(s) if s.is_success() => break Ok(()),
                Ok(s @ (reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN)) => {
                    break Err(format!("{vhost}: {s}"));
                }
                Ok(s) if Instant::now() >= deadline => break Err(format!("{vhost}: {s}")),
                Err(e) if Instant::now() >= deadline => break Err(e),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        let user = json!({"password": password, "tags": ""});
        let rights = json!({"configure": ".*", "write": ".*", "read": ".*"});
        async {
            made?;
            self.must(Method::PUT, &format!("users/{name}"), Some(user))
                .await?;
            self.must(
                Method::PUT,
                &format!("permissions/{name}/{name}"),
                Some(rights),
            )
            .await
        }
        .await
        .map_err(|e| format!("the warm RabbitMQ did not take this run's vhost and user: {e}"))
    }
}

/// Removes vhost and user `name` from a warm broker.
pub(crate) async fn remove_scope(warm: &super::warm::Warm, name: &str) -> Result<(), String> {
    let admin = Admin::of(warm)?;
    for path in [format!("vhosts/{name}"), format!("users/{name}")] {
        admin.call(reqwest::Method::DELETE, &path, None).await?;
    }
    Ok(())
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
