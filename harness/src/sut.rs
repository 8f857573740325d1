//! Starting, triggering and stopping the system under test for one case:
//! the built-in reference device in process, or an external command.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::profile::{CommandSpec, Hook, Profile, SutSpec};
use crate::reference::dmf_device::{self, DeviceConfig, DeviceHandle};
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
}

/// Most output kept from one SUT process.
const OUTPUT_KEPT: usize = 64 * 1024;

/// A running SUT.
pub enum SutInstance {
    /// The reference device, in process.
    Reference(DeviceHandle),
    /// An external program.
    Command {
        /// The process.
        child: Child,
        /// Its stdout and stderr, interleaved by line.
        output: Arc<Mutex<String>>,
        /// SIGTERM-to-kill grace.
        stop_timeout: Duration,
    },
}

/// What is left of a SUT after its case.
#[derive(Clone, Debug, Default)]
pub struct SutReport {
    /// Its output (command SUTs).
    pub output: String,
    /// How it ended, if it ended on its own during the case.
    pub exited: Option<String>,
}

impl SutInstance {
    /// Starts the SUT of `profile` for one case.
    pub async fn start(profile: &Profile, ids: &CaseIds) -> Result<Self, String> {
        match &profile.sut {
            SutSpec::ReferenceDevice { fault } => {
                let cfg = DeviceConfig {
                    amqp_url: ids.amqp_url.clone(),
                    tenant: ids.tenant.clone(),
                    thing_id: ids.thing_id.clone(),
                    fault: *fault,
                };
                dmf_device::start(cfg).await.map(SutInstance::Reference)
            }
            SutSpec::Command(spec) => start_command(spec, ids),
        }
    }

    /// Runs a hook. The reference device implements its hooks in process.
    pub async fn trigger(&mut self, name: &str, hook: &Hook, vars: &Vars) -> Result<(), String> {
        match self {
            SutInstance::Reference(device) => match name {
                "reregister" => device.reregister().await,
                other => Err(format!("the reference device has no hook `{other}`")),
            },
            SutInstance::Command { output, .. } => {
                let argv: Vec<String> = hook
                    .command
                    .iter()
                    .map(|a| vars.expand_str(a))
                    .collect::<Result<_, _>>()?;
                let (program, args) = argv.split_first().ok_or("the hook's command is empty")?;
                let run = Command::new(program).args(args).kill_on_drop(true).output();
                let out = tokio::time::timeout(Duration::from_secs(30), run)
                    .await
                    .map_err(|_| format!("hook `{name}` did not finish within 30s"))?
                    .map_err(|e| format!("hook `{name}`: cannot run `{program}`: {e}"))?;
                append(
                    output,
                    &format!("[hook {name}] {}", String::from_utf8_lossy(&out.stdout)),
                );
                append(
                    output,
                    &format!("[hook {name}] {}", String::from_utf8_lossy(&out.stderr)),
                );
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!("hook `{name}` failed: {}", out.status))
                }
            }
        }
    }

    /// If the SUT has already ended on its own, how.
    pub fn exited(&mut self) -> Option<String> {
        match self {
            SutInstance::Reference(d) => d
                .is_finished()
                .then(|| "the reference device stopped".to_owned()),
            SutInstance::Command { child, .. } => match child.try_wait() {
                Ok(Some(status)) => Some(format!("the SUT process exited: {status}")),
                _ => None,
            },
        }
    }

    /// Stops the SUT: SIGTERM, then kill after the grace period.
    pub async fn stop(mut self) -> SutReport {
        let exited = self.exited();
        match self {
            SutInstance::Reference(d) => {
                d.stop().await;
                SutReport {
                    output: String::new(),
                    exited,
                }
            }
            SutInstance::Command {
                mut child,
                output,
                stop_timeout,
            } => {
                if exited.is_none() {
                    if let Some(pid) = child.id() {
                        // SAFETY: kill(2) on a child we spawned and have not reaped.
                        unsafe {
                            libc::kill(pid as libc::pid_t, libc::SIGTERM);
                        }
                    }
                    if tokio::time::timeout(stop_timeout, child.wait())
                        .await
                        .is_err()
                    {
                        let _ = child.kill().await;
                        append(&output, "[dmconf] the SUT ignored SIGTERM and was killed\n");
                    }
                }
                // Give the output readers a moment to reach end of file.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let output = output.lock().map(|o| o.clone()).unwrap_or_default();
                SutReport { output, exited }
            }
        }
    }
}

fn append(output: &Mutex<String>, text: &str) {
    if let Ok(mut o) = output.lock()
        && o.len() < OUTPUT_KEPT
    {
        o.push_str(text);
    }
}

fn start_command(spec: &CommandSpec, ids: &CaseIds) -> Result<SutInstance, String> {
    let (program, args) = spec.argv.split_first().ok_or("the SUT command is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .env("DMCONF_AMQP_URL", &ids.amqp_url)
        .env("DMCONF_TENANT", &ids.tenant)
        .env("DMCONF_THING_ID", &ids.thing_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start the SUT `{program}` in {}: {e}",
                spec.cwd.display()
            )
        })?;
    let output = Arc::new(Mutex::new(String::new()));
    if let Some(out) = child.stdout.take() {
        tokio::spawn(read_lines(out, output.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(read_lines(err, output.clone()));
    }
    Ok(SutInstance::Command {
        child,
        output,
        stop_timeout: spec.stop_timeout,
    })
}

async fn read_lines(stream: impl tokio::io::AsyncRead + Unpin, output: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        append(&output, &format!("{line}\n"));
    }
}
