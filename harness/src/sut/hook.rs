//! A command hook: a program of the profile that makes the SUT act or
//! tells what it recorded, its arguments expanded with the case's
//! variables, its standard output the JSON answer. Bounded in time.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use super::process::append;
use crate::profile::Hook;
use crate::vars::Vars;

/// Bound on one command hook.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn run_hook(
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
