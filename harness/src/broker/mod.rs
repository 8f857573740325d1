//! Brokers for a run: an existing one named by the user, or one started
//! with testcontainers: RabbitMQ for DMF ([`rabbitmq`]), Mosquitto set up
//! as Azure IoT Hub behaves for the Device API ([`mosquitto`]). Readiness
//! is a real login. The only module that talks to Docker.
//!
//! Under `cargo test` one process runs every case: it starts the broker
//! once and removes it at the end. Under `cargo nextest run` every case is
//! its own process: the first one starts a container labelled with the
//! nextest run id, the others find it by that label, and a small reaper
//! process removes it once nextest has exited. A broker is started only
//! when a case of its protocol runs. On request, a started broker is
//! kept warm for the next run ([`warm`]).

pub mod mosquitto;
pub mod rabbitmq;
pub(crate) mod warm;

pub use mosquitto::Mosquitto;
pub use rabbitmq::RabbitMq;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt, ReuseDirective};

/// A broker URL with its password left out, for anything printed.
///
/// ```text
/// amqp://guest:secret@host:5672/%2f  ->  amqp://guest:***@host:5672/%2f
/// ```
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((login, host)) => {
            let user = login.split_once(':').map_or(login, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// Makes `dir`, and any parent it lacks, as folders only this user may
/// enter; folders that exist are left as they are.
pub(crate) fn private_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Writes `text` to a file only this user may read.
pub(crate) fn private_file(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A secret made for this run: a fresh one for this process, or, under
/// nextest, the one the run's first process made, kept in a private
/// folder (returned, for the reaper to remove) under a lock.
pub(crate) struct RunSecret {
    /// The secret.
    pub(crate) value: String,
    /// The folder that keeps it, under nextest.
    pub(crate) dir: Option<std::path::PathBuf>,
    /// This process made it: the first of its run.
    pub(crate) made: bool,
}

pub(crate) fn run_secret(kind: &str) -> Result<RunSecret, String> {
    let fresh = || uuid::Uuid::new_v4().simple().to_string();
    let Ok(run) = std::env::var("NEXTEST_RUN_ID") else {
        return Ok(RunSecret {
            value: fresh(),
            dir: None,
            made: true,
        });
    };
    let dir = std::env::temp_dir().join(format!("dmconf-{kind}-secret-{run}"));
    private_dir(&dir)?;
    let _held = crate::reaper::lock(&dir.join("lock"))?;
    let path = dir.join("secret");
    let (value, made) = match std::fs::read_to_string(&path) {
        Ok(s) => (s, false),
        Err(_) => {
            let s = fresh();
            private_file(&path, &s)?;
            (s, true)
        }
    };
    Ok(RunSecret {
        value,
        dir: Some(dir),
        made,
    })
}

/// The containers that carry every label of `labels` (`key=value`),
/// stopped ones too when `all`.
pub(crate) async fn labelled(
    docker: &Docker,
    labels: Vec<String>,
    all: bool,
) -> Result<Vec<bollard::models::ContainerSummary>, String> {
    let filters = HashMap::from([("label".to_owned(), labels)]);
    docker
        .list_containers(Some(ListContainersOptions {
            all,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())
}

/// Removes container `id`, running or not, with its volumes.
pub(crate) async fn remove(docker: &Docker, id: &str) -> Result<(), String> {
    let options = bollard::query_parameters::RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    docker
        .remove_container(id, Some(options))
        .await
        .map_err(|e| e.to_string())
}

/// Where a started broker's ports are published unless the profile says
/// otherwise: this machine only.
pub(crate) const LOOPBACK: &str = "127.0.0.1";

/// Publishes the container's `ports` on `address` only, each on a free
/// host port unless the request maps one, instead of on every interface.
fn publish_on(
    request: ContainerRequest<GenericImage>,
    address: &str,
    ports: &[u16],
) -> ContainerRequest<GenericImage> {
    use bollard::models::PortBinding;
    let address = address.to_owned();
    let ports = ports.to_vec();
    request.with_host_config_modifier(move |host| {
        let mut bindings = host.port_bindings.take().unwrap_or_default();
        for p in &ports {
            bindings.entry(format!("{p}/tcp")).or_insert_with(|| {
                Some(vec![PortBinding {
                    host_ip: None,
                    host_port: Some(String::new()),
                }])
            });
        }
        for list in bindings.values_mut().flatten() {
            for b in list {
                b.host_ip = Some(address.clone());
            }
        }
        host.port_bindings = Some(bindings);
        host.publish_all_ports = Some(false);
    })
}

/// How long a broker may take to accept a login.
pub const READY_WITHIN: Duration = Duration::from_secs(120);

/// A `GenericImage` for `image` (`name:tag`).
fn generic(image: &str) -> GenericImage {
    let (name, tag) = image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .unwrap_or((image, "latest"));
    GenericImage::new(name, tag)
}

/// The image to run: the environment's choice, the profile's, the offline
/// image when it exists locally, else the official one if it is here or
/// can be pulled; with neither, the offline images are built from
/// Debian's packages (scripts/build-images.sh), once for the machine.
async fn choose_image(
    docker: &Docker,
    env: &str,
    profile: Option<&String>,
    offline: &str,
    official: &str,
) -> Result<String, String> {
    if let Ok(i) = std::env::var(env) {
        return Ok(i);
    }
    if let Some(i) = profile {
        return Ok(i.clone());
    }
    for here in [offline, official] {
        if docker.inspect_image(here).await.is_ok() {
            return Ok(here.to_owned());
        }
    }
    if pull(docker, official).await {
        return Ok(official.to_owned());
    }
    build_offline_images(docker, offline).await?;
    Ok(offline.to_owned())
}

/// A broker's image as a report names it: `name:tag (sha256:…)`, and
/// the broker's version when the image tells it (the
/// `org.opencontainers.image.version` label the offline images carry,
/// or the `*_VERSION` variable of the official images).
pub(crate) async fn describe_image(docker: &Docker, image: &str) -> Image {
    let Ok(inspected) = docker.inspect_image(image).await else {
        return Image {
            name: image.to_owned(),
            version: None,
            labels: HashMap::new(),
        };
    };
    let named = match inspected.id.as_deref() {
        Some(id) => format!("{image} ({id})"),
        None => image.to_owned(),
    };
    let config = inspected.config.unwrap_or_default();
    let labels = config.labels.unwrap_or_default();
    let labelled = labels.get("org.opencontainers.image.version").cloned();
    let from_env = || {
        config.env.iter().flatten().find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.ends_with("_VERSION") && !k.starts_with("GPG") && !v.is_empty())
                .then(|| v.to_owned())
        })
    };
    Image {
        name: named,
        version: labelled.or_else(from_env),
        labels,
    }
}

/// The image a broker of the run was started from.
#[derive(Clone, Debug)]
pub struct Image {
    /// `name:tag (sha256:…)`.
    pub name: String,
    /// The broker's version, when the image tells it.
    pub version: Option<String>,
    /// The image's labels.
    pub(crate) labels: HashMap<String, String>,
}

/// How long a pull may take to show that a registry answers.
const PULL_WITHIN: Duration = Duration::from_secs(60);

/// Pulls `image`; false when no registry gives it in time.
async fn pull(docker: &Docker, image: &str) -> bool {
    use futures_lite::StreamExt;
    let (name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
        .from_image(name)
        .tag(tag)
        .build();
    let mut stream = docker.create_image(Some(options), None, None);
    let done = async {
        while let Some(step) = stream.next().await {
            step.map_err(|_| ())?;
        }
        Ok::<(), ()>(())
    };
    matches!(tokio::time::timeout(PULL_WITHIN, done).await, Ok(Ok(())))
        && docker.inspect_image(image).await.is_ok()
}

/// Builds the offline images with the project's script, once: other
/// processes of the machine wait for the first one's build (a file lock)
/// and then find the image.
async fn build_offline_images(docker: &Docker, offline: &str) -> Result<(), String> {
    let root = crate::trials::root().map_err(|e| e.to_string())?;
    let script = root.join("scripts").join("build-images.sh");
    let lock_path = std::env::temp_dir().join("dmconf-build-images.lock");
    let started = std::time::Instant::now();
    let done = tokio::task::spawn_blocking(move || {
        let _lock = crate::reaper::lock(&lock_path)?;
        eprintln!(
            "dmconf: no broker image here and no registry answers: building the offline images with {} (a minute or two)",
            script.display()
        );
        let out = std::process::Command::new("bash")
            .arg(&script)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            let tail: Vec<&str> = std::str::from_utf8(&out.stderr)
                .unwrap_or("")
                .lines()
                .rev()
                .take(5)
                .collect();
            Err(format!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    done.map_err(|e| {
        format!("{e}\nBuild the offline images by hand (needs root): bash scripts/build-images.sh")
    })?;
    if docker.inspect_image(offline).await.is_err() {
        return Err(format!("the image build ended, but {offline} is not there"));
    }
    eprintln!(
        "dmconf: offline images ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn no_start(what: &str, image: &str, e: impl std::fmt::Display) -> String {
    format!(
        "cannot start {what} from image `{image}`: {e}\n\
         With no registry, build the offline images first: scripts/build-images.sh"
    )
}

/// A container this process started or found, and whether it is known to
/// be ready: under nextest, the process that creates the run's container
/// holds the lock until the broker takes a login and marks it ready, so
/// that the other processes of the run find it ready and need not probe.
pub(crate) struct Claim {
    /// Another process has seen the broker take a login.
    pub(crate) ready: bool,
    /// The run's lock, held until [`Claim::mark_ready`], and the marker.
    hold: Option<(std::fs::File, std::path::PathBuf)>,
}

impl Claim {
    /// Says that the broker takes a login, for the run's other processes.
    pub(crate) fn mark_ready(self) {
        if let Some((_lock, mark)) = self.hold {
            let _ = std::fs::File::create(mark);
        }
    }
}

/// Starts `request`, or, under nextest, the one container of this kind
/// for the run (found by label; the process that creates it also starts
/// the reaper, which removes `leftovers` too once the run is over).
async fn start_container(
    docker: &Docker,
    kind: &str,
    request: ContainerRequest<GenericImage>,
    leftovers: Option<&std::path::Path>,
) -> Result<(ContainerAsync<GenericImage>, Claim), String> {
    let Ok(run) = std::env::var("NEXTEST_RUN_ID") else {
        // The guard first: should this process die while the container
        // is being created, the guard removes it by its owner label.
        let guard = crate::reaper::guard();
        let c = request
            .with_label("dmconf.owner", std::process::id().to_string())
            .start()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(g) = guard {
            g.container(c.id());
        }
        let claim = Claim {
            ready: false,
            hold: None,
        };
        return Ok((c, claim));
    };
    let lock_path = std::env::temp_dir().join(format!("dmconf-{kind}-{run}.lock"));
    let ready_path = std::env::temp_dir().join(format!("dmconf-{kind}-{run}.ready"));
    let lock = crate::reaper::lock(&lock_path)?;
    let labels = vec![format!("dmconf.run={run}"), format!("dmconf.broker={kind}")];
    let found = labelled(docker, labels, false).await?;
    let existed = !found.is_empty();
    let c = request
        .with_label("dmconf.run", run.as_str())
        .with_reuse(ReuseDirective::Always)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    if !existed {
        let mut paths = vec![lock_path.as_path(), ready_path.as_path()];
        paths.extend(leftovers);
        crate::reaper::spawn(crate::reaper::Target::Container(c.id()), &paths);
    }
    let claim = Claim {
        ready: existed && ready_path.exists(),
        hold: Some((lock, ready_path)),
    };
    Ok((c, claim))
}

/// Removes a container this process started, unless nextest shares it.
async fn stop_container(c: Option<ContainerAsync<GenericImage>>) {
    if let Some(c) = c
        && std::env::var("NEXTEST_RUN_ID").is_err()
    {
        let _ = c.rm().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_left_out() {
        assert_eq!(
            super::redact("amqp://u:secretpw@127.0.0.1:1/%2f"),
            "amqp://u:***@127.0.0.1:1/%2f"
        );
        assert_eq!(super::redact("mqtts://host:8883"), "mqtts://host:8883");
    }
}
