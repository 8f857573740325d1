//! A server command's life: started once for the run (once for a nextest
//! run, whose every case is a process of its own: the first starts it,
//! the others meet it through a pid file under a lock, and a reaper stops
//! it once nextest exits), told the run's broker, and ready once the
//! protocol's sign shows.

use std::collections::HashMap;
use std::sync::Arc;

use super::process::Process;
use super::ready::{self, Sign, Unready};
use crate::profile::{Profile, SutSpec};
use crate::protocol::Sides;
use crate::reaper;

/// How long a server command may take to be ready.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The server commands of a run, by profile, started on first use.
#[derive(Default)]
pub(crate) struct Servers(tokio::sync::Mutex<HashMap<String, Result<Arc<Process>, Unready>>>);

impl Servers {
    /// The server command of `profile`, started on first use and kept
    /// for the run.
    pub(crate) async fn get(
        &self,
        sides: &Sides,
        profile: &Profile,
    ) -> Result<Arc<Process>, Unready> {
        let mut servers = self.0.lock().await;
        if let Some(p) = servers.get(&profile.origin) {
            return p.clone();
        }
        let started = start(sides, profile).await;
        servers.insert(profile.origin.clone(), started.clone());
        started
    }

    /// Stops every server this process started.
    pub(crate) async fn stop(&self) {
        for p in self.0.lock().await.values().flatten() {
            p.stop().await;
        }
    }
}

async fn start(sides: &Sides, profile: &Profile) -> Result<Arc<Process>, Unready> {
    let SutSpec::Command(spec) = &profile.sut else {
        return Err(Unready::Sut("the SUT is not a command".to_owned()));
    };
    let env = profile
        .protocol
        .server_env(sides, profile)
        .await
        .map_err(Unready::Harness)?;
    let not_started = |e: String| Unready::Harness(crate::error::Error::Start(e));
    let Ok(run) = std::env::var("NEXTEST_RUN_ID") else {
        let process = Process::spawn(spec, &env).map_err(not_started)?;
        ready(sides, profile, &process).await?;
        return Ok(Arc::new(process));
    };
    // Under nextest every case is a process of its own, and all of them
    // must meet one server: the first starts it, the others find it.
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        profile.origin.hash(&mut h);
        h.finish()
    };
    let dir = std::env::temp_dir().join(format!("dmconf-server-{run}-{key:016x}"));
    let lock = reaper::lock(&dir.join("lock")).map_err(not_started)?;
    let (pid_file, log, failed) = (dir.join("pid"), dir.join("output.log"), dir.join("failed"));
    if let Ok(why) = std::fs::read_to_string(&failed) {
        return Err(Unready::Sut(why));
    }
    let known = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .filter(|p| reaper::alive(*p as i32));
    if let Some(pid) = known {
        return Ok(Arc::new(Process::adopt(pid, &log, spec)));
    }
    let (process, pid) = Process::spawn_shared(spec, &env, &log).map_err(not_started)?;
    reaper::spawn(reaper::Target::Process(pid), &[&dir]);
    if let Err(why) = ready(sides, profile, &process).await {
        if let Unready::Sut(text) = &why {
            let _ = std::fs::write(&failed, text);
        }
        return Err(why);
    }
    std::fs::write(&pid_file, pid.to_string())
        .map_err(|e| not_started(format!("{}: {e}", pid_file.display())))?;
    drop(lock);
    Ok(Arc::new(process))
}

/// Waits until a server command is ready: its `ready` text, else the
/// protocol's sign on the broker; stops it if it never gets there.
async fn ready(sides: &Sides, profile: &Profile, process: &Process) -> Result<(), Unready> {
    let SutSpec::Command(spec) = &profile.sut else {
        return Ok(());
    };
    let probe = || -> super::reference::BoxFuture<'_, _> {
        Box::pin(profile.protocol.server_up(sides, profile))
    };
    let sign = match &spec.ready {
        Some(text) => Sign::Text(text),
        None => Sign::Probe(&probe),
    };
    let within = profile.timeouts.scaled(READY_WITHIN);
    let waited = ready::wait(process, sign, within).await;
    if waited.is_err() {
        process.stop().await;
    }
    waited
}
