//! An external SUT program: started with the case's environment, its
//! output kept (the last of it) for the report, stopped with SIGTERM and
//! then a kill. A server command under nextest is shared by the run's
//! processes: its output goes to a file, and the run's reaper stops it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::profile::CommandSpec;

/// Most output kept from one SUT process.
const OUTPUT_KEPT: usize = 64 * 1024;

/// An external SUT program and its output.
pub(crate) struct Process {
    run: Run,
    output: Arc<Mutex<String>>,
    stop_timeout: Duration,
}

enum Run {
    /// A child of this process, leader of a process group of its own;
    /// its output is collected as it comes.
    Owned {
        child: Box<tokio::sync::Mutex<Child>>,
        group: u32,
    },
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
    ///
    /// It runs in a process group of its own, which the guard of this
    /// process ends if the process is gone before it stopped the SUT.
    pub(crate) fn spawn(spec: &CommandSpec, env: &[(&str, String)]) -> Result<Self, String> {
        let mut child = command(spec, env)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| not_started(spec, e))?;
        let group = child.id().ok_or("the SUT exited at once")?;
        if let Some(g) = crate::reaper::guard() {
            g.process(group);
        }
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(read_lines(err, output.clone()));
        }
        Ok(Process {
            run: Run::Owned {
                child: Box::new(tokio::sync::Mutex::new(child)),
                group,
            },
            output,
            stop_timeout: spec.stop_timeout,
        })
    }

    /// Starts `spec` in a process group of its own that outlives this
    /// process, its output going to the file `log`; with its process id.
    pub(crate) fn spawn_shared(
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
    pub(crate) fn adopt(pid: u32, log: &Path, spec: &CommandSpec) -> Self {
        Process {
            run: Run::Shared {
                pid,
                log: log.to_owned(),
            },
            output: Default::default(),
            stop_timeout: spec.stop_timeout,
        }
    }

    /// If the process has ended, how.
    pub(crate) async fn exited(&self) -> Option<String> {
        match &self.run {
            Run::Owned { child, .. } => match child.lock().await.try_wait() {
                Ok(Some(status)) => Some(format!("the SUT process exited: {status}")),
                _ => None,
            },
            Run::Shared { pid, .. } => (!crate::reaper::alive(*pid as i32))
                .then(|| format!("the SUT process (pid {pid}) has exited")),
        }
    }

    /// Its output so far (the last of it, for a shared process).
    pub(crate) fn output(&self) -> String {
        match &self.run {
            Run::Owned { .. } => self.output.lock().map(|o| o.clone()).unwrap_or_default(),
            Run::Shared { log, .. } => {
                let bytes = std::fs::read(log).unwrap_or_default();
                let tail = &bytes[bytes.len().saturating_sub(OUTPUT_KEPT)..];
                String::from_utf8_lossy(tail).into_owned()
            }
        }
    }

    /// SIGTERM, then kill after the grace period; returns the output. A
    /// shared process is left to the reaper.
    pub(crate) async fn stop(&self) -> String {
        let Run::Owned { child, group } = &self.run else {
            return self.output();
        };
        // The whole group: what the SUT started goes with it.
        signal(*group, libc::SIGTERM);
        let mut child = child.lock().await;
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
        // Whatever of its group outlived it.
        signal(*group, libc::SIGKILL);
        // Give the output readers a moment to reach end of file.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.output()
    }
}

/// Sends `sig` to the process group `group`.
fn signal(group: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process group this process started.
    unsafe {
        libc::kill(-(group as libc::pid_t), sig);
    }
}

pub(crate) fn append(output: &Mutex<String>, text: &str) {
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
