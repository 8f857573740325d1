//! The one wait loop. Every step that waits (expect, expect_none,
//! collect, wait, expect_refused, expect_accepted) runs it with a scope
//! and a watch: new arrivals are taken in, each message in scope is
//! offered to the watch once, and the loop ends when the watch stops,
//! when the step's window closes, or when the case's does, whichever is
//! first. The clock is read after every batch of arrivals, so a SUT that
//! floods the link cannot hold a step past its window.

use std::time::Duration;

use tokio::time::Instant;

use super::cx::{Cx, DRAIN_BATCH};
use super::failure::{StepError, miss};
use super::inbox::{Cursor, Scanned, Scope, Watch};
use crate::sut::SutInstance;

/// How often a step that waits for an answer looks whether the SUT is
/// still there.
const EXIT_POLL: Duration = Duration::from_millis(200);

/// How a wait ended, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The watch stopped, at this transcript entry.
    Stopped(usize),
    /// The step's window closed first.
    Window,
}

/// Runs `watch` over the messages in `scope` for at most `window`. A
/// watch that waits for an answer ends at once if the SUT has exited:
/// it can no longer come.
pub(crate) async fn wait(
    cx: &mut Cx<'_>,
    sut: &SutInstance,
    scope: &Scope,
    watch: &mut dyn Watch,
    window: Duration,
) -> Result<Ended, StepError> {
    let window_ends = Instant::now() + window;
    let until = window_ends.min(cx.deadline);
    let mut cursor = Cursor::at(scope);
    loop {
        let more = cx.drain(DRAIN_BATCH).await;
        if let Scanned::Stopped(at) = cx.inbox.scan(&mut cursor, scope, watch) {
            return Ok(Ended::Stopped(at));
        }
        cx.fail_on_malformed()?;
        if Instant::now() >= until {
            break;
        }
        if more {
            // Arrivals are still queued: take them in before waiting.
            tokio::task::yield_now().await;
            continue;
        }
        let look = until.min(Instant::now() + EXIT_POLL);
        match tokio::time::timeout_at(look, cx.link.recv()).await {
            Ok(Some(arrival)) => cx.ingest(arrival).await,
            // The link closed: nothing more will come.
            Ok(None) => tokio::time::sleep_until(look).await,
            Err(_) => {}
        }
        if watch.awaits_answer()
            && let Some(how) = sut.exited().await
        {
            cx.drain(DRAIN_BATCH).await;
            if let Scanned::Stopped(at) = cx.inbox.scan(&mut cursor, scope, watch) {
                return Ok(Ended::Stopped(at));
            }
            return Err(miss(
                "the SUT is there to answer",
                format!("{how}; it can no longer answer this step"),
            ));
        }
    }
    if until < window_ends {
        return Err(case_deadline(cx));
    }
    Ok(Ended::Window)
}

/// The failure of a case that reached `timeouts.case` while a step
/// waited.
pub(crate) fn case_deadline(cx: &Cx<'_>) -> StepError {
    let limit = cx.env.profile.timeouts.case_limit();
    miss(
        format!(
            "the case finishes within {limit:?} (timeouts.case of the profile, times its scale)"
        ),
        format!(
            "it reached that limit while this step waited; the SUT had sent {} message(s) by then",
            cx.inbox.arrived()
        ),
    )
}
