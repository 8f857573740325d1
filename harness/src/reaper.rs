//! What outlives one test process under `cargo nextest run`, where every
//! case is a process of its own: a broker container and a server command
//! are started once for the nextest run and shared. The process that
//! starts one also starts a reaper, this test binary again, detached,
//! which waits for nextest to exit and then removes the container or
//! stops the server, and deletes the files left beside it.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptions;

/// The environment variable that makes a test binary a reaper.
pub(crate) const ENV: &str = crate::env::REAP;

/// What a reaper removes.
pub enum Target<'a> {
    /// A Docker container, by id.
    Container(&'a str),
    /// A process group, by the id of its leader.
    Process(u32),
}

/// Starts this test binary again, detached, as a reaper of `target`
/// (and of the files and folders `leftovers`) once the parent of this
/// process (nextest) has exited.
pub fn spawn(target: Target<'_>, leftovers: &[&Path]) {
    let ppid = std::os::unix::process::parent_id();
    let what = match target {
        Target::Container(id) => format!("container={id}"),
        Target::Process(pid) => format!("process={pid}"),
    };
    let paths: Vec<String> = leftovers.iter().map(|p| p.display().to_string()).collect();
    let spec = format!("{what}:{ppid}:{}", paths.join("\n"));
    if let Ok(exe) = std::env::current_exe() {
        let _ = std::process::Command::new(exe)
            .env(ENV, spec)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn();
    }
}

/// The reaper's body: waits for the watched process to exit, then
/// removes what `spec` names. Returns at once when `spec` is malformed.
pub fn reap(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let (Some(what), Some(pid)) = (parts.next(), parts.next()) else {
        return;
    };
    let leftovers = parts.next();
    let Ok(watched) = pid.parse::<i32>() else {
        return;
    };
    while alive(watched) {
        std::thread::sleep(Duration::from_millis(500));
    }
    if let Some(id) = what.strip_prefix("container=") {
        remove_container(id);
    } else if let Some(Ok(pid)) = what.strip_prefix("process=").map(str::parse::<i32>) {
        stop_group(pid);
    }
    for path in leftovers.unwrap_or_default().lines().map(Path::new) {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(path);
        } else {
            let _ = std::fs::remove_file(path);
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

/// SIGTERM to the group, then SIGKILL after five seconds.
fn stop_group(pid: i32) {
    // SAFETY: signals to a process group this run started.
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    for _ in 0..50 {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

fn remove_container(id: &str) {
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
                    id,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
    });
}
