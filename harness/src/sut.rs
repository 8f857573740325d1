//! Starting, asking and stopping the system under test: the reference
//! device or server in process, or an external command. A device command
//! is started for each case; a server command once per run, as a real
//! server runs, and shared by the cases. `trigger` and `query` steps reach
//! the SUT through [`SutInstance::call`]: a command hook of the profile,
//! or the Management API plugin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::mgmt::{MgmtClient, MgmtSpec};
use crate::profile::{CommandSpec, Hook, Profile, SutSpec};
use crate::reference::ability_cloud::{self, CloudConfig, CloudHandle};
use crate::reference::ability_device::{self, AbilityDeviceConfig, AbilityDeviceHandle};
use crate::reference::dmf_device::{self, DeviceConfig, DeviceHandle};
use crate::reference::dmf_server::{self, ServerConfig, ServerHandle};
use crate::suite::Role;
use crate::transport::mqtt::Endpoint;
use crate::vars::Vars;

/// What a SUT instance is told about its case.
#[derive(Clone, Debug)]
pub struct CaseIds {
    /// Broker URL, `amqp://user:pass@host:port/vhost`.
    pub amqp_url: String,
    /// The case's tenant.
    pub tenant: String,
    /// The case's thing id.
    pub thing_id: String,
    /// The server's inbound exchange.
    pub dmf_exchange: String,
    /// The MQTT broker, for the Device API.
    pub mqtt: Option<MqttIds>,
}

/// Where the MQTT broker is, for a case.
#[derive(Clone, Debug)]
pub struct MqttIds {
    /// The service identity's URL (with its login).
    pub service_url: String,
    /// Where devices connect.
    pub device_url: String,
    /// The service identity's endpoint.
    pub service: Endpoint,
    /// The devices' endpoint.
    pub devices: Endpoint,
    /// The CA of the device listener, as a file.
    pub ca_file: Option<std::path::PathBuf>,
}

impl CaseIds {
    /// The environment a command SUT of `role` gets.
    pub fn env(&self, role: Role) -> Vec<(&'static str, String)> {
        let mut env = vec![("DMCONF_TENANT", self.tenant.clone())];
        match &self.mqtt {
            Some(m) => {
                let url = match role {
                    Role::Device => m.device_url.clone(),
                    Role::Server => m.service_url.clone(),
                };
                env.push(("DMCONF_MQTT_URL", url));
                if let Some(ca) = &m.ca_file {
                    env.push(("DMCONF_MQTT_CA", ca.display().to_string()));
                }
                env.push(("DMCONF_DEVICE_ID", self.thing_id.clone()));
            }
            None => {
                env.push(("DMCONF_AMQP_URL", self.amqp_url.clone()));
                env.push(("DMCONF_THING_ID", self.thing_id.clone()));
            }
        }
        env
    }
}

/// Most output kept from one SUT process.
const OUTPUT_KEPT: usize = 64 * 1024;
/// How long a command SUT may take to print its `ready` text.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Bound on one command hook.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// An external SUT program and its output.
pub struct Process {
    run: Run,
    output: Arc<Mutex<String>>,
    stop_timeout: Duration,
}

enum Run {
    /// A child of this process; its output is collected as it comes.
    Owned(Box<tokio::sync::Mutex<Child>>),
    /// A process several test processes share (a server command under
    /// nextest): its output goes to `log`, and the run's reaper stops it.
    Shared { pid: u32, log: PathBuf },
}

fn command(spec: &CommandSpec, env: &[(&str, String)]) -> Result<Command, String> {
    let (program, args) = spec.argv.split_first().ok_or("the SUT command is empty")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(cmd)
}

fn not_started(spec: &CommandSpec, e: std::io::Error) -> String {
    format!(
        "cannot start the SUT `{}` in {}: {e}",
        spec.argv.first().map(String::as_str).unwrap_or_default(),
        spec.cwd.display()
    )
}

impl Process {
    /// Starts `spec` with the extra environment `env`.
    pub fn spawn(spec: &CommandSpec, env: &[(&str, String)]) -> Result<Self, String> {
        let mut child = command(spec, env)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| not_started(spec, e))?;
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(read_lines(err, output.clone()));
        }
        Ok(Process {
            run: Run::Owned(Box::new(tokio::sync::Mutex::new(child))),
            output,
            stop_timeout: spec.stop_timeout,
        })
    }

    /// Starts `spec` in a process group of its own that outlives this
    /// process, its output going to the file `log`; with its process id.
    pub fn spawn_shared(
        spec: &CommandSpec,
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<(Self, u32), String> {
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = command(spec, env)?
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| not_started(spec, e))?;
        let pid = child.id().ok_or("the SUT exited at once")?;
        Ok((Self::adopt(pid, log, spec), pid))
    }

    /// A shared process another test process started.
    pub fn adopt(pid: u32, log: &Path, spec: &CommandSpec) -> Self {
        Process {
            run: Run::Shared {
                pid,
                log: log.to_owned(),
            },
            output: Default::default(),
            stop_timeout: spec.stop_timeout,
        }
    }

    /// Waits until the process prints `text`, at most `within`.
    pub async fn wait_for(&self, text: &str, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.output().contains(text) {
                return Ok(());
            }
            if let Some(how) = self.exited().await {
                return Err(format!(
                    "{how} before it printed `{text}`:\n{}",
                    self.output()
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the SUT did not print `{text}` within {within:?}:\n{}",
                    self.output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// If the process has ended, how.
    pub async fn exited(&self) -> Option<String> {
        match &self.run {
            Run::Owned(child) => match child.lock().await.try_wait() {
                Ok(Some(status)) => Some(format!("the SUT process exited: {status}")),
                _ => None,
            },
            Run::Shared { pid, .. } => (!crate::reaper::alive(*pid as i32))
                .then(|| format!("the SUT process (pid {pid}) has exited")),
        }
    }

    /// Its output so far (the last of it, for a shared process).
    pub fn output(&self) -> String {
        match &self.run {
            Run::Owned(_) => self.output.lock().map(|o| o.clone()).unwrap_or_default(),
            Run::Shared { log, .. } => {
                let bytes = std::fs::read(log).unwrap_or_default();
                let tail = &bytes[bytes.len().saturating_sub(OUTPUT_KEPT)..];
                String::from_utf8_lossy(tail).into_owned()
            }
        }
    }

    /// SIGTERM, then kill after the grace period; returns the output. A
    /// shared process is left to the reaper.
    pub async fn stop(&self) -> String {
        let Run::Owned(child) = &self.run else {
            return self.output();
        };
        if self.exited().await.is_none() {
            let mut child = child.lock().await;
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on a child we spawned and have not reaped.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
            if tokio::time::timeout(self.stop_timeout, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
                append(
                    &self.output,
                    "[dmconf] the SUT ignored SIGTERM and was killed\n",
                );
            }
        }
        // Give the output readers a moment to reach end of file.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.output()
    }
}

enum Kind {
    Running,
    AbilityDevice(AbilityDeviceHandle),
    AbilityCloud(CloudHandle),
    Device(DeviceHandle),
    Server(ServerHandle),
    Process(Process),
    Shared(Arc<Process>),
}

/// A running SUT, as one case sees it.
pub struct SutInstance {
    kind: Kind,
    hooks: BTreeMap<String, Hook>,
    hook_dir: std::path::PathBuf,
    mgmt: Option<MgmtClient>,
    log: Arc<Mutex<String>>,
}

/// What is left of a SUT after its case.
#[derive(Clone, Debug, Default)]
pub struct SutReport {
    /// Its output (command SUTs) and the hooks' output.
    pub output: String,
    /// How it ended, if it ended on its own during the case.
    pub exited: Option<String>,
}

impl SutInstance {
    /// Starts the SUT of `profile` for one case; a server command that
    /// runs for the whole run is passed in as `shared`.
    pub async fn start(
        profile: &Profile,
        ids: &CaseIds,
        shared: Option<Arc<Process>>,
    ) -> Result<Self, String> {
        let mut mgmt = profile.mgmt.clone().map(MgmtClient::new).transpose()?;
        let kind = match (&profile.sut, shared) {
            (SutSpec::ReferenceDevice { fault }, _) => {
                let cfg = DeviceConfig {
                    amqp_url: ids.amqp_url.clone(),
                    tenant: ids.tenant.clone(),
                    thing_id: ids.thing_id.clone(),
                    fault: *fault,
                };
                Kind::Device(dmf_device::start(cfg).await?)
            }
            (SutSpec::ReferenceServer { fault }, _) => {
                let suffix = ids.dmf_exchange.rsplit('.').next().unwrap_or_default();
                let cfg = ServerConfig {
                    amqp_url: ids.amqp_url.clone(),
                    tenant: ids.tenant.clone(),
                    exchange: ids.dmf_exchange.clone(),
                    receiver_queue: format!("dmconf.dmf_receiver.{suffix}"),
                    private: true,
                    mgmt_port: 0,
                    fault: *fault,
                };
                let handle = dmf_server::start(cfg).await?;
                mgmt = Some(MgmtClient::new(MgmtSpec {
                    url: handle.mgmt_url.clone(),
                    user: "admin".into(),
                    password: "admin".into(),
                })?);
                Kind::Server(handle)
            }
            (SutSpec::ReferenceAbilityDevice { fault }, _) => {
                let m = ids
                    .mqtt
                    .as_ref()
                    .ok_or("no MQTT broker for the Device API")?;
                Kind::AbilityDevice(
                    ability_device::start(AbilityDeviceConfig {
                        devices: m.devices.clone(),
                        device_id: ids.thing_id.clone(),
                        limits: profile.limits,
                        fault: *fault,
                    })
                    .await?,
                )
            }
            (SutSpec::ReferenceAbilityCloud { fault }, _) => {
                let m = ids
                    .mqtt
                    .as_ref()
                    .ok_or("no MQTT broker for the Device API")?;
                Kind::AbilityCloud(
                    ability_cloud::start(CloudConfig {
                        service: m.service.clone(),
                        serves: ability_cloud::Serves::Device(ids.thing_id.clone()),
                        limits: profile.limits,
                        fault: *fault,
                    })
                    .await?,
                )
            }
            (SutSpec::Running, _) => Kind::Running,
            (SutSpec::Command(_), Some(process)) => Kind::Shared(process),
            (SutSpec::Command(spec), None) => {
                let p = Process::spawn(spec, &ids.env(profile.role))?;
                if let Some(text) = &spec.ready {
                    p.wait_for(text, READY_WITHIN.mul_f64(profile.timeouts.scale))
                        .await?;
                }
                Kind::Process(p)
            }
        };
        Ok(SutInstance {
            kind,
            hooks: profile.hooks.clone(),
            hook_dir: profile.hook_dir.clone(),
            mgmt,
            log: Arc::default(),
        })
    }

    /// Asks the SUT to perform `name` with `args`, and returns its JSON
    /// answer (`null` when it gives none). A command hook of the profile
    /// comes first; then the reference device's own hooks; then the
    /// Management API.
    pub async fn call(
        &mut self,
        name: &str,
        args: &Map<String, Value>,
        vars: &Vars,
    ) -> Result<Value, String> {
        if let Some(hook) = self.hooks.get(name).filter(|h| !h.command.is_empty()) {
            let mut vars = vars.clone();
            for (k, v) in args {
                vars.set(k, v.clone());
            }
            let all = serde_json::to_string(args).unwrap_or_default();
            vars.set("args", Value::String(all));
            return run_hook(name, hook, &vars, &self.hook_dir, &self.log).await;
        }
        if let Kind::Device(device) = &self.kind
            && name == "reregister"
        {
            return device.reregister().await.map(|()| Value::Null);
        }
        if let Kind::AbilityDevice(device) = &self.kind {
            return device.call(name, args).await;
        }
        match &self.mgmt {
            Some(m) => m.call(name, args).await,
            None => Err(format!("the profile offers no hook `{name}`")),
        }
    }

    /// If the SUT has already ended on its own, how.
    pub async fn exited(&mut self) -> Option<String> {
        match &self.kind {
            Kind::Running => None,
            Kind::AbilityDevice(d) => d
                .is_finished()
                .then(|| "the reference device stopped".to_owned()),
            Kind::AbilityCloud(c) => c
                .is_finished()
                .then(|| "the reference platform stopped".to_owned()),
            Kind::Device(d) => d
                .is_finished()
                .then(|| "the reference device stopped".to_owned()),
            Kind::Server(s) => s
                .is_finished()
                .then(|| "the reference server stopped".to_owned()),
            Kind::Process(p) => p.exited().await,
            Kind::Shared(p) => p.exited().await,
        }
    }

    /// Stops the SUT (a shared server goes on); returns what it left.
    pub async fn stop(mut self) -> SutReport {
        let exited = self.exited().await;
        let mut output = match self.kind {
            Kind::Running => String::new(),
            Kind::AbilityDevice(d) => {
                d.stop().await;
                String::new()
            }
            Kind::AbilityCloud(c) => {
                c.stop().await;
                String::new()
            }
            Kind::Device(d) => {
                d.stop().await;
                String::new()
            }
            Kind::Server(s) => {
                s.stop().await;
                String::new()
            }
            Kind::Process(p) => p.stop().await,
            Kind::Shared(p) => {
                // The run's server: the end of its output so far.
                let out = p.output();
                out[out.floor_char_boundary(out.len().saturating_sub(8192))..].to_owned()
            }
        };
        output.push_str(&self.log.lock().map(|l| l.clone()).unwrap_or_default());
        SutReport { output, exited }
    }
}

async fn run_hook(
    name: &str,
    hook: &Hook,
    vars: &Vars,
    dir: &std::path::Path,
    log: &Mutex<String>,
) -> Result<Value, String> {
    let argv: Vec<String> = hook
        .command
        .iter()
        .map(|a| vars.expand_str(a))
        .collect::<Result<_, _>>()?;
    let (program, args) = argv.split_first().ok_or("the hook's command is empty")?;
    let run = Command::new(program)
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(HOOK_TIMEOUT, run)
        .await
        .map_err(|_| format!("hook `{name}` did not finish within {HOOK_TIMEOUT:?}"))?
        .map_err(|e| format!("hook `{name}`: cannot run `{program}`: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    append(log, &format!("[hook {name}] {stdout}"));
    append(
        log,
        &format!("[hook {name}] {}", String::from_utf8_lossy(&out.stderr)),
    );
    if !out.status.success() {
        return Err(format!("hook `{name}` failed: {}", out.status));
    }
    let text = stdout.trim();
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    })
}

fn append(output: &Mutex<String>, text: &str) {
    if let Ok(mut o) = output.lock()
        && o.len() < OUTPUT_KEPT
    {
        o.push_str(text);
    }
}

async fn read_lines(stream: impl tokio::io::AsyncRead + Unpin, output: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        append(&output, &format!("{line}\n"));
    }
}
