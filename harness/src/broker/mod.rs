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
//! when a case of its protocol runs.

pub mod mosquitto;
pub mod rabbitmq;

pub use mosquitto::Mosquitto;
pub use rabbitmq::RabbitMq;

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt, ReuseDirective};

/// How long a broker may take to accept a login.
pub const READY_WITHIN: Duration = Duration::from_secs(120);
/// The environment variable that makes the test binary a reaper.
pub const REAPER_ENV: &str = "DMCONF_REAP_CONTAINER";

/// A `GenericImage` for `image` (`name:tag`).
fn generic(image: &str) -> GenericImage {
    let (name, tag) = image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .unwrap_or((image, "latest"));
    GenericImage::new(name, tag)
}

/// The image to run: the environment's choice, the profile's, the offline
/// image when it exists locally, else the official one.
async fn choose_image(
    docker: &Docker,
    env: &str,
    profile: Option<&String>,
    offline: &str,
    official: &str,
) -> String {
    if let Ok(i) = std::env::var(env) {
        return i;
    }
    if let Some(i) = profile {
        return i.clone();
    }
    if docker.inspect_image(offline).await.is_ok() {
        offline.to_owned()
    } else {
        official.to_owned()
    }
}

fn no_start(what: &str, image: &str, e: impl std::fmt::Display) -> String {
    format!(
        "cannot start {what} from image `{image}`: {e}\n\
         With no registry, build the offline images first: scripts/build-images.sh"
    )
}

/// Starts `request`, or, under nextest, the one container of this kind
/// for the run (found by label; the process that creates it also starts
/// the reaper, which removes `leftovers` too once the run is over).
async fn start_container(
    docker: &Docker,
    kind: &str,
    request: ContainerRequest<GenericImage>,
    leftovers: Option<&std::path::Path>,
) -> Result<(ContainerAsync<GenericImage>, bool), String> {
    let Ok(run) = std::env::var("NEXTEST_RUN_ID") else {
        let c = request.start().await.map_err(|e| e.to_string())?;
        return Ok((c, true));
    };
    let lock_path = std::env::temp_dir().join(format!("dmconf-{kind}-{run}.lock"));
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("dmconf.run={run}"), format!("dmconf.broker={kind}")],
    )]);
    let found = docker
        .list_containers(Some(ListContainersOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    let existed = !found.is_empty();
    let c = request
        .with_label("dmconf.run", run.as_str())
        .with_reuse(ReuseDirective::Always)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    if !existed {
        spawn_reaper(c.id(), leftovers);
    }
    drop(lock);
    Ok((c, !existed))
}

/// Removes a container this process started, unless nextest shares it.
async fn stop_container(c: Option<ContainerAsync<GenericImage>>) {
    if let Some(c) = c
        && std::env::var("NEXTEST_RUN_ID").is_err()
    {
        let _ = c.rm().await;
    }
}

/// Starts this test binary again, detached, as a reaper that removes the
/// container once the parent of this process (nextest) has exited.
fn spawn_reaper(container: &str, leftovers: Option<&std::path::Path>) {
    let ppid = std::os::unix::process::parent_id();
    if let Ok(exe) = std::env::current_exe() {
        let _ = std::process::Command::new(exe)
            .env(
                REAPER_ENV,
                match leftovers {
                    Some(dir) => format!("{container}:{ppid}:{}", dir.display()),
                    None => format!("{container}:{ppid}"),
                },
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn();
    }
}

/// The reaper's body: waits for the watched process to exit, then removes
/// the container (and the folder of leftovers, if any). Returns at once
/// when `spec` is malformed.
pub fn reap(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let (Some(container), Some(pid)) = (parts.next(), parts.next()) else {
        return;
    };
    let leftovers = parts.next();
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
    if let Some(dir) = leftovers {
        let _ = std::fs::remove_dir_all(dir);
    }
}
