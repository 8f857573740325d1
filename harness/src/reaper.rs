//! What must not outlive a test process, and what must outlive one only
//! as long as the run. A reaper is this test binary started again,
//! detached, in a process group of its own, with `DMCONF_REAP` saying
//! what to watch and what to remove once the watched process is gone:
//!
//! - the guard of every test process ([`guard`]) watches that process and
//!   removes what it registered and did not remove itself (broker
//!   containers, SUT process groups, secret folders), so that an
//!   interrupt, a panic or `kill -9` leaves nothing behind;
//! - under `cargo nextest run`, where every case is a process of its own,
//!   a broker container, a run's scope on a warm broker and a server
//!   command are shared by the run: the process that starts one starts a
//!   reaper that watches nextest instead.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bollard::Docker;

/// The environment variable that makes a test binary a reaper.
pub(crate) const ENV: &str = crate::env::REAP;

/// What a reaper removes.
pub enum Target<'a> {
    /// A Docker container, by id.
    Container(&'a str),
    /// A process group, by the id of its leader.
    Process(u32),
    /// A run's scope on a warm broker (see `broker::warm`).
    Scope {
        /// The broker: `rabbitmq` or `mosquitto`.
        kind: &'a str,
        /// The warm container.
        container: &'a str,
        /// The scope's name.
        name: &'a str,
    },
}

/// Set once this binary has shown that it can be a reaper (it calls
/// [`crate::reaped`] first); until then no reaper is started, for a
/// binary that cannot be one would run its tests again instead.
static CAN_REAP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that this binary can be a reaper.
pub(crate) fn can_reap() {
    CAN_REAP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Starts this test binary again, detached, as a reaper with `spec`.
fn start(spec: String) -> bool {
    if !CAN_REAP.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    if let Ok(exe) = std::env::current_exe() {
        let _ = std::process::Command::new(exe)
            .env(ENV, spec)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn();
    }
    true
}

/// Starts a reaper of `target` (and of the files and folders `leftovers`)
/// that acts once the parent of this process (nextest) has exited.
pub fn spawn(target: Target<'_>, leftovers: &[&Path]) {
    let ppid = std::os::unix::process::parent_id();
    let what = match target {
        Target::Container(id) => format!("container={id}"),
        Target::Process(pid) => format!("process={pid}"),
        Target::Scope {
            kind,
            container,
            name,
        } => format!("scope={kind}/{container}/{name}"),
    };
    let paths: Vec<String> = leftovers.iter().map(|p| p.display().to_string()).collect();
    start(format!("{what}:{ppid}:{}", paths.join("\n")));
}

/// The guard of this process: a ledger, in a folder of its own, of what
/// the process started, read by a reaper once the process is gone.
pub(crate) struct Guard {
    ledger: Mutex<std::fs::File>,
}

/// The guard of this process, started on first use; `None` when it could
/// not be (then nothing is guarded, and the run goes on).
pub(crate) fn guard() -> Option<&'static Guard> {
    static GUARD: OnceLock<Option<Guard>> = OnceLock::new();
    GUARD
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!(
                "dmconf-guard-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            crate::broker::private_dir(&dir).ok()?;
            let ledger = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("ledger"))
                .ok()?;
            if !start(format!("guard:{}:{}", std::process::id(), dir.display())) {
                let _ = std::fs::remove_dir_all(&dir);
                return None;
            }
            Some(Guard {
                ledger: Mutex::new(ledger),
            })
        })
        .as_ref()
}

impl Guard {
    fn note(&self, line: &str) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(ledger, "{line}");
    }

    /// A container to remove.
    pub(crate) fn container(&self, id: &str) {
        self.note(&format!("container {id}"));
    }

    /// A process group to end (its leader's id), known by its start time
    /// so that a reused id is left alone.
    pub(crate) fn process(&self, pid: u32) {
        if let Some(started) = start_time(pid as i32) {
            self.note(&format!("process {pid} {started}"));
        }
    }

    /// A run's scope on a warm broker, to remove.
    pub(crate) fn scope(&self, kind: &str, container: &str, name: &str) {
        self.note(&format!("scope {kind}/{container}/{name}"));
    }

    /// A file or folder to delete.
    pub(crate) fn path(&self, path: &Path) {
        self.note(&format!("path {}", path.display()));
    }
}

/// A private folder of this process's (`dmconf-<kind>-<random>` in the
/// temporary folder): removed when dropped, and by the guard if the
/// process dies first.
pub(crate) struct RunDir(PathBuf);

impl RunDir {
    /// Makes the folder.
    pub(crate) fn new(kind: &str) -> Result<Self, String> {
        let dir =
            std::env::temp_dir().join(format!("dmconf-{kind}-{}", uuid::Uuid::new_v4().simple()));
        if let Some(g) = guard() {
            g.path(&dir);
        }
        crate::broker::private_dir(&dir)?;
        Ok(RunDir(dir))
    }

    /// A path inside it.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// When process `pid` started, in clock ticks since boot (the 22nd field
/// of `/proc/<pid>/stat`).
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name, field 2, is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The reaper's body: waits for the watched process to exit, then
/// removes what `spec` names. Returns at once when `spec` is malformed.
pub fn reap(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let (Some(what), Some(pid), rest) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(watched) = pid.parse::<i32>() else {
        return;
    };
    while alive(watched) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let rest = rest.unwrap_or_default();
    if what == "guard" {
        return reap_ledger(Path::new(rest), watched);
    }
    if let Some(id) = what.strip_prefix("container=") {
        remove_containers(&[id.to_owned()], None);
    } else if let Some(Ok(pid)) = what.strip_prefix("process=").map(str::parse::<i32>) {
        stop_groups(&[pid]);
    } else if let Some(scope) = what.strip_prefix("scope=") {
        remove_scopes(&[scope.to_owned()]);
    }
    remove_paths(rest.lines().map(PathBuf::from));
}

/// Ends what a guard's ledger names, and every container labelled as
/// the guarded process's (one it created but did not live to register),
/// then deletes the guard's folder.
fn reap_ledger(dir: &Path, owner: i32) {
    let ledger = std::fs::read_to_string(dir.join("ledger")).unwrap_or_default();
    let (mut containers, mut groups, mut paths) = (Vec::new(), Vec::new(), Vec::new());
    let mut scopes = Vec::new();
    for line in ledger.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("container"), Some(id), _) => containers.push(id.to_owned()),
            (Some("scope"), Some(scope), _) => scopes.push(scope.to_owned()),
            (Some("process"), Some(pid), Some(started)) => {
                if let (Ok(pid), Ok(started)) = (pid.parse::<i32>(), started.parse::<u64>())
                    && start_time(pid) == Some(started)
                {
                    groups.push(pid);
                }
            }
            (Some("path"), Some(first), rest) => {
                let path = match rest {
                    Some(r) => format!("{first} {r}"),
                    None => first.to_owned(),
                };
                paths.push(PathBuf::from(path));
            }
            _ => {}
        }
    }
    stop_groups(&groups);
    remove_scopes(&scopes);
    remove_containers(&containers, Some(owner));
    paths.push(dir.to_owned());
    remove_paths(paths.into_iter());
}

fn remove_paths(paths: impl Iterator<Item = PathBuf>) {
    for path in paths {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Holds the lock file `path` (made if missing, with its folder) until
/// the returned file is dropped: how the processes of a nextest run take
/// turns at setting up what they share.
pub fn lock(path: &Path) -> Result<std::fs::File, String> {
    if let Some(dir) = path.parent() {
        crate::broker::private_dir(dir)?;
    }
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file)
}

/// Whether process `pid` exists.
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill(pid, 0) only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// SIGTERM to each group, then SIGKILL to those left after five seconds.
fn stop_groups(pids: &[i32]) {
    for pid in pids {
        // SAFETY: signals to a process group this run started.
        unsafe { libc::kill(-pid, libc::SIGTERM) };
    }
    for _ in 0..50 {
        if !pids.iter().any(|p| alive(*p)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in pids {
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

/// Runs `work` to its end on a runtime of its own; `None` when no
/// runtime could be made.
pub(crate) fn block_on<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    Some(rt.block_on(work))
}

/// Removes runs' scopes from warm brokers (`kind/container/name` each).
fn remove_scopes(scopes: &[String]) {
    block_on(async {
        for scope in scopes {
            let mut parts = scope.splitn(3, '/');
            if let (Some(kind), Some(container), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            {
                let _ = crate::broker::warm::remove_scope(kind, container, name).await;
            }
        }
    });
}

/// Removes the containers `ids`, and those labelled `dmconf.owner=<owner>`.
fn remove_containers(ids: &[String], owner: Option<i32>) {
    if ids.is_empty() && owner.is_none() {
        return;
    }
    block_on(async {
        if let Ok(docker) = Docker::connect_with_local_defaults() {
            let mut ids = ids.to_vec();
            if let Some(owner) = owner {
                let owned = vec![format!("dmconf.owner={owner}")];
                let found = crate::broker::labelled(&docker, owned, true)
                    .await
                    .unwrap_or_default();
                ids.extend(found.into_iter().filter_map(|c| c.id));
            }
            for id in &ids {
                let _ = crate::broker::remove(&docker, id).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_process_is_known_by_its_start_time() {
        let me = std::process::id() as i32;
        assert!(super::start_time(me).is_some());
        assert_eq!(super::start_time(me), super::start_time(me));
    }
}
