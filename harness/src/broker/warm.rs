//! Warm brokers, kept between runs when the user asks (`DMCONF_REUSE=1`
//! or `[broker] reuse = true`): a run leaves the broker container it
//! started running, labelled `dmconf.warm` and published where any
//! started broker is (loopback unless the profile says otherwise), and the
//! next run on the machine finds it instead of waiting for a broker to
//! boot. A container is reused only by a run that would have made the
//! same one (image, address, ports); other runs start their own.
//!
//! Each run still has a scope of its own on a warm broker, with fresh
//! credentials, that sees no other run's traffic: a vhost and a user on
//! RabbitMQ, a tag and a service login on Mosquitto. The run adds it when
//! it starts and removes it when it ends; if the run is killed, its reaper
//! removes it, and if the reaper dies too, the next warm run does.
//! `dmconf brokers stop` removes the warm containers.

use std::collections::HashMap;

use bollard::Docker;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerRequest, GenericImage, ImageExt, ReuseDirective};

/// The label of every warm container: which broker it is.
pub(crate) const LABEL: &str = "dmconf.warm";
/// The label that says what a warm container was made from.
const MADE_FROM: &str = "dmconf.warm.from";

/// A warm container, as Docker describes it.
pub(crate) struct Warm {
    /// The container's id.
    pub(crate) id: String,
    host: String,
    ports: HashMap<u16, u16>,
    env: HashMap<String, String>,
    labels: HashMap<String, String>,
}

impl Warm {
    async fn inspect(docker: &Docker, id: &str) -> Result<Self, String> {
        let c = docker
            .inspect_container(id, None)
            .await
            .map_err(|e| format!("cannot inspect the warm broker {id}: {e}"))?;
        let config = c.config.unwrap_or_default();
        let env = config
            .env
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect();
        let mut host = super::LOOPBACK.to_owned();
        let mut ports = HashMap::new();
        let published = c.network_settings.and_then(|n| n.ports).unwrap_or_default();
        for (inside, bindings) in published {
            let Some(inside) = inside.strip_suffix("/tcp").and_then(|p| p.parse().ok()) else {
                continue;
            };
            for b in bindings.into_iter().flatten() {
                if let Some(port) = b.host_port.and_then(|p| p.parse().ok()) {
                    ports.insert(inside, port);
                }
                match b.host_ip.as_deref() {
                    None | Some("" | "0.0.0.0" | "::") => {}
                    Some(ip) => ip.clone_into(&mut host),
                }
            }
        }
        Ok(Warm {
            id: id.to_owned(),
            host,
            ports,
            env,
            labels: config.labels.unwrap_or_default(),
        })
    }

    /// Where the broker is reached from this machine.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The host port the container's port `inside` is published on.
    pub(crate) fn port(&self, inside: u16) -> Result<u16, String> {
        self.ports
            .get(&inside)
            .copied()
            .ok_or_else(|| format!("the warm broker {} publishes no port {inside}", self.id))
    }

    /// A variable of the container's environment.
    pub(crate) fn env(&self, name: &str) -> Result<&str, String> {
        self.env
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("the warm broker {} has no {name}", self.id))
    }

    /// A label of the container.
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// What a warm container is made from, as a short digest: the image, by
/// id, and every setting that shapes the container.
pub(crate) async fn made_from(docker: &Docker, image: &str, settings: &[&str]) -> String {
    let id = docker
        .inspect_image(image)
        .await
        .ok()
        .and_then(|i| i.id)
        .unwrap_or_else(|| image.to_owned());
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for part in std::iter::once(id.as_str()).chain(settings.iter().copied()) {
        digest.update(part.as_bytes());
        digest.update(b"\0");
    }
    digest.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The warm `kind` broker made from `from`, or, when there is none, one
/// started from `request()`. The machine's lock for `kind` is held in
/// the returned file until it is dropped, so that a run that comes
/// second waits for the first one's broker instead of starting its own;
/// the flag says whether this run started it.
pub(crate) async fn find_or_start(
    docker: &Docker,
    kind: &str,
    from: &str,
    request: impl FnOnce() -> Result<ContainerRequest<GenericImage>, String>,
) -> Result<(Warm, bool, std::fs::File), String> {
    let lock = crate::reaper::lock(&std::env::temp_dir().join(format!("dmconf-warm-{kind}.lock")))?;
    let labels = vec![format!("{LABEL}={kind}"), format!("{MADE_FROM}={from}")];
    let running = super::labelled(docker, labels, false).await?;
    if let Some(id) = running.into_iter().find_map(|c| c.id) {
        sweep(kind).await;
        return Ok((Warm::inspect(docker, &id).await?, false, lock));
    }
    // A stopped one (after a restart of Docker) is started again.
    let c = request()?
        .with_label(LABEL, kind)
        .with_label(MADE_FROM, from)
        .with_reuse(ReuseDirective::Always)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "dmconf: the {kind} broker is kept warm for the next run; `dmconf brokers stop` removes it"
    );
    Ok((Warm::inspect(docker, c.id()).await?, true, lock))
}

/// A run's scope on a warm broker, removed when the run is over: by the
/// run, or by its reaper should the run die first. Under nextest, where
/// the processes of a run share one scope, by a reaper that waits for
/// nextest, which also deletes `leftover` (the folder that kept the
/// run's secret). Should the reaper die too, a marker on this machine
/// names the scope and its owner, and the next warm run removes it.
pub(crate) fn remove_when_over(
    kind: &str,
    container: &str,
    name: &str,
    leftover: Option<&std::path::Path>,
) {
    let nextest = std::env::var("NEXTEST_RUN_ID").is_ok();
    let owner = if nextest {
        std::os::unix::process::parent_id()
    } else {
        std::process::id()
    };
    if let (Some(started), Ok(())) = (
        crate::reaper::start_time(owner as i32),
        super::private_dir(&markers()),
    ) {
        let _ = std::fs::write(
            marker(kind, container, name),
            format!("{owner} {started}\n"),
        );
    }
    let target = crate::reaper::Target::Scope {
        kind,
        container,
        name,
    };
    if nextest {
        crate::reaper::spawn(target, &leftover.into_iter().collect::<Vec<_>>());
    } else if let Some(g) = crate::reaper::guard() {
        g.scope(kind, container, name);
    }
}

/// Where the markers of this machine's scopes on warm brokers are.
fn markers() -> std::path::PathBuf {
    std::env::temp_dir().join("dmconf-warm-scopes")
}

/// The marker of one scope: `<kind> <container> <name>`, which no part
/// holds a space of.
fn marker(kind: &str, container: &str, name: &str) -> std::path::PathBuf {
    markers().join(format!("{kind} {container} {name}"))
}

/// Removes the scopes on warm `kind` brokers whose runs are gone
/// without removing them (their reapers died with them).
async fn sweep(kind: &str) {
    let Ok(entries) = std::fs::read_dir(markers()) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let mut parts = file.splitn(3, ' ');
        let (Some(k), Some(container), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let owner = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let mut owner = owner.split_whitespace().map(str::parse::<u64>);
        let alive = match (owner.next(), owner.next()) {
            (Some(Ok(pid)), Some(Ok(started))) => {
                crate::reaper::start_time(pid as i32) == Some(started)
            }
            _ => false,
        };
        if k == kind && !alive {
            let _ = remove_scope(kind, container, name).await;
        }
    }
}

/// Removes a run's scope from a warm broker, once the run is over.
pub(crate) async fn remove_scope(kind: &str, container: &str, name: &str) -> Result<(), String> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
    let removed = match Warm::inspect(&docker, container).await {
        Ok(warm) => match kind {
            "rabbitmq" => super::rabbitmq::remove_scope(&warm, name).await,
            "mosquitto" => super::mosquitto::remove_scope(&docker, &warm, name).await,
            other => Err(format!("no broker kind {other}")),
        },
        // The container is gone, and the scope with it.
        Err(_) => Ok(()),
    };
    if removed.is_ok() {
        let _ = std::fs::remove_file(marker(kind, container, name));
    }
    removed
}

/// Runs `cmd` in the container as `user`, with `env`; fails unless the
/// command exits with 0.
pub(crate) async fn exec(
    docker: &Docker,
    container: &str,
    user: &str,
    env: Vec<String>,
    cmd: &[&str],
) -> Result<(), String> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures_lite::StreamExt;
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|c| (*c).to_owned()).collect()),
                env: Some(env),
                user: Some(user.to_owned()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut said = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| e.to_string())?
    {
        while let Some(Ok(chunk)) = output.next().await {
            if said.len() < 4096 {
                said.push_str(&chunk.to_string());
            }
        }
    }
    let done = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| e.to_string())?;
    match done.exit_code {
        Some(0) => Ok(()),
        code => Err(format!(
            "`{}` in the broker exited with {code:?}: {}",
            cmd.join(" "),
            said.trim()
        )),
    }
}

/// `dmconf brokers stop`: removes every warm broker of the machine.
pub fn command(mut args: impl Iterator<Item = String>) -> std::process::ExitCode {
    use std::process::ExitCode;
    if args.next().as_deref() != Some("stop") {
        eprintln!("usage: dmconf brokers stop   (removes the brokers kept warm by DMCONF_REUSE=1)");
        return ExitCode::from(2);
    }
    let stopped = crate::reaper::block_on(async {
        let docker = match Docker::connect_with_local_defaults() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("dmconf: cannot reach Docker: {e}");
                return ExitCode::from(3);
            }
        };
        let found = match super::labelled(&docker, vec![LABEL.to_owned()], true).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("dmconf: cannot list containers: {e}");
                return ExitCode::from(3);
            }
        };
        for c in found {
            let (Some(id), labels) = (c.id, c.labels.unwrap_or_default()) else {
                continue;
            };
            let kind = labels.get(LABEL).map_or("?", String::as_str);
            match super::remove(&docker, &id).await {
                Ok(()) => println!("removed the warm {kind} broker {}", &id[..12.min(id.len())]),
                Err(e) => eprintln!("dmconf: cannot remove {id}: {e}"),
            }
        }
        let _ = std::fs::remove_dir_all(markers());
        ExitCode::SUCCESS
    });
    stopped.unwrap_or(ExitCode::from(3))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::broker::{Mosquitto, RabbitMq};
    use crate::profile::BrokerSpec;
    use crate::transport::amqp::AmqpClient;
    use crate::transport::mqtt::{Login, MqttClient};

    /// Two runs on one warm broker: the second finds the first's
    /// container, each has its own vhost or service login, neither sees
    /// the other's traffic, and a run that ended cannot log in.
    #[tokio::test(flavor = "multi_thread")]
    async fn runs_on_a_warm_broker_are_kept_apart() {
        // Under nextest every process of the run shares one scope; this
        // test needs two, so it runs itself again as a plain test.
        if std::env::var_os("NEXTEST_RUN_ID").is_some() {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "broker::warm::tests::runs_on_a_warm_broker_are_kept_apart",
                ])
                .env_remove("NEXTEST_RUN_ID")
                .status()
                .unwrap();
            assert!(status.success());
            return;
        }
        let spec = BrokerSpec {
            reuse: true,
            ..Default::default()
        };
        let (mine, theirs) = (
            RabbitMq::start(&spec).await.unwrap(),
            RabbitMq::start(&spec).await.unwrap(),
        );
        assert!(theirs.reused, "the second run started a broker of its own");
        let (their_vhost, my_vhost) = (
            theirs.amqp_url.rsplit_once('/').unwrap().1,
            mine.amqp_url.rsplit_once('/').unwrap().1,
        );
        assert_ne!(their_vhost, my_vhost);
        let trespass = mine.amqp_url.replace(my_vhost, their_vhost);
        assert!(
            AmqpClient::connect(&trespass).await.is_err(),
            "a run's user opened another run's vhost"
        );
        // Their run and its reaper die: the next warm run's sweep removes
        // their scope.
        let ended = theirs.amqp_url.clone();
        let container = theirs.warm_container().unwrap();
        std::fs::write(super::marker("rabbitmq", &container, their_vhost), "0 0\n").unwrap();
        super::sweep("rabbitmq").await;
        assert!(
            AmqpClient::connect(&ended).await.is_err(),
            "a dead run's scope outlived the sweep"
        );
        assert!(
            AmqpClient::connect(&mine.amqp_url).await.is_ok(),
            "the sweep removed a live run's scope"
        );
        theirs.stop().await;

        let (me, them) = (
            Mosquitto::start(&spec).await.unwrap(),
            Mosquitto::start(&spec).await.unwrap(),
        );
        assert!(them.reused, "the second run started a broker of its own");
        let listen = |b: &Mosquitto| {
            let endpoint = b.service().unwrap();
            let id = format!("listener-{}", b.run_tag);
            async move {
                let login = Login {
                    client_id: id,
                    ..Default::default()
                };
                let (mut c, rx) = MqttClient::connect(&endpoint, &login).await.unwrap();
                c.subscribe("devices/+/messages/events/#").await.unwrap();
                (c, rx)
            }
        };
        let (_mine, mut my_inbox) = listen(&me).await;
        let (_theirs, mut their_inbox) = listen(&them).await;
        let device = |b: &Mosquitto| Login {
            client_id: format!("device-{}", b.run_tag),
            ..Default::default()
        };
        let (mut d, _) = MqttClient::connect(&them.devices().unwrap(), &device(&them))
            .await
            .unwrap();
        let topic = format!("devices/device-{}/messages/events/", them.run_tag);
        d.publish(&topic, b"theirs".to_vec()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), their_inbox.recv()).await;
        assert!(
            matches!(got, Ok(Some(ref m)) if m.payload == b"theirs"),
            "a run's platform did not get its own device's message: {got:?}"
        );
        let leak = tokio::time::timeout(Duration::from_secs(1), my_inbox.recv()).await;
        assert!(
            leak.is_err(),
            "a run's platform got another run's device's message"
        );
        let ended = (them.devices().unwrap(), device(&them));
        them.stop().await;
        assert!(
            MqttClient::connect(&ended.0, &ended.1).await.is_err(),
            "a device of an ended run can still log in"
        );

        // A container this test started goes; a user's warm one stays.
        let started: Vec<String> = [
            (!mine.reused).then(|| mine.warm_container()),
            (!me.reused).then(|| me.warm_container()),
        ]
        .into_iter()
        .flatten()
        .flatten()
        .collect();
        mine.stop().await;
        me.stop().await;
        let docker = bollard::Docker::connect_with_local_defaults().unwrap();
        for id in started {
            let _ = crate::broker::remove(&docker, &id).await;
        }
    }
}
