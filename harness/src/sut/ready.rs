//! The one readiness wait: a SUT program is ready once it prints the
//! profile's `ready` text, or, without one, once the protocol's sign on
//! the broker shows (a DMF server's exchange exists), or, where the
//! protocol shows none, after a short settling pause. It is not ready if
//! it exits first, or if the sign does not come in time.

use std::time::Duration;

use tokio::time::Instant;

use super::process::Process;
use super::reference::BoxFuture;
use crate::error::Error;

/// What tells that a started program is ready.
pub(crate) enum Sign<'a> {
    /// It prints this text.
    Text(&'a str),
    /// The probe says so (`Ok(None)`: the protocol has no sign, so wait
    /// `settle` instead).
    Probe(&'a (dyn Fn() -> BoxFuture<'a, Result<Option<bool>, Error>> + Sync)),
    /// Nothing: it is ready as soon as it runs.
    Started,
}

/// Why a program never got ready.
#[derive(Clone, Debug)]
pub(crate) enum Unready {
    /// It exited, or did not show its sign in time: the SUT's failure.
    Sut(String),
    /// The probe failed: the harness's trouble.
    Harness(Error),
}

/// How long a program without a sign is given to settle.
const SETTLE: Duration = Duration::from_secs(2);

/// Waits until `process` is ready by `sign`, at most `within`.
pub(crate) async fn wait(
    process: &Process,
    sign: Sign<'_>,
    within: Duration,
) -> Result<(), Unready> {
    let began = Instant::now();
    let deadline = began + within;
    loop {
        let ready = match &sign {
            Sign::Started => true,
            Sign::Text(t) => process.output().contains(t),
            Sign::Probe(probe) => match probe().await.map_err(Unready::Harness)? {
                Some(up) => up,
                None => began.elapsed() >= SETTLE,
            },
        };
        if ready {
            return Ok(());
        }
        if let Some(how) = process.exited().await {
            return Err(Unready::Sut(format!(
                "{how} before it was ready:\n{}",
                process.output()
            )));
        }
        if Instant::now() >= deadline {
            let what = match &sign {
                Sign::Text(t) => format!("print `{t}`"),
                _ => "show on the broker that it serves".to_owned(),
            };
            return Err(Unready::Sut(format!(
                "the SUT did not {what} within {within:?}:\n{}",
                process.output()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
