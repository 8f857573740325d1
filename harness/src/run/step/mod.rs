//! The steps, one file per kind, each the same shape: `run(spec, step,
//! cx, sut)` does what the step says to the case ([`Cx`]) and says
//! whether it held. [`run`] dispatches them by one `match` over
//! [`Action`], whose variants [`Action::KINDS`] names once.

mod check;
mod collect;
mod expect;
mod expect_none;
mod fetch;
mod query;
mod refusal;
mod resend;
mod send;
mod trigger;
mod wait;

use std::time::Duration;

use super::cx::Cx;
use super::failure::{StepError, miss};
use crate::matching::Bound;
use crate::suite::{Action, Dur, MAX_DURATION, Pattern, Step};
use crate::sut::SutInstance;

/// Runs one step.
pub(crate) async fn run(
    step: &Step,
    cx: &mut Cx<'_>,
    sut: &mut SutInstance,
) -> Result<(), StepError> {
    match &step.action {
        Action::Send(s) => send::run(s, step, cx, sut).await,
        Action::Resend(r) => resend::run(r, step, cx, sut).await,
        Action::Expect(e) => expect::run(e, step, cx, sut).await,
        Action::ExpectNone(e) => expect_none::run(e, step, cx, sut).await,
        Action::Collect(c) => collect::run(c, step, cx, sut).await,
        Action::Check(c) => check::run(c, step, cx, sut).await,
        Action::Trigger(t) => trigger::run(t, step, cx, sut).await,
        Action::Wait(w) => wait::run(w, step, cx, sut).await,
        Action::Query(q) => query::run(q, step, cx, sut).await,
        Action::Fetch(f) => fetch::run(f, step, cx, sut).await,
        Action::ExpectRefused(r) => refusal::refused(r, step, cx, sut).await,
        Action::ExpectAccepted(a) => refusal::accepted(a, step, cx, sut).await,
    }
}

/// Whether a step reads what the SUT sent: a malformed message is
/// reported by the first such step, so that the step a verdict names does
/// not depend on how fast the SUT answered.
pub(crate) fn reads(action: &Action) -> bool {
    matches!(
        action,
        Action::Expect(_)
            | Action::ExpectNone(_)
            | Action::Collect(_)
            | Action::Wait(_)
            | Action::ExpectRefused(_)
            | Action::ExpectAccepted(_)
    )
}

/// A suite's window, times the profile's `scale`, at most a day.
fn scaled(cx: &Cx<'_>, d: Duration) -> Duration {
    let secs = d.as_secs_f64() * cx.env.profile.timeouts.scale;
    Duration::try_from_secs_f64(secs)
        .unwrap_or(MAX_DURATION)
        .min(MAX_DURATION)
}

/// A `within`, or the profile's default, scaled.
fn within(cx: &Cx<'_>, d: Option<Dur>) -> Duration {
    scaled(cx, d.map(|d| d.0).unwrap_or(cx.env.profile.timeouts.expect))
}

/// A pattern bound to the case's variables.
fn bind(p: &Pattern, cx: &Cx<'_>) -> Result<Bound, StepError> {
    Bound::new(p, &cx.vars).map_err(|e| miss("a pattern whose variables are set", e))
}

/// Marks where a named step that took a message ended: `after:` it means
/// after that message.
fn mark_after(cx: &mut Cx<'_>, step: &Step, entry: usize) {
    if let Some(name) = &step.name {
        cx.marks.insert(name.clone(), entry + 1);
    }
}

/// Sets each variable of `capture` from the message `item`, at its path.
fn capture(
    cx: &mut Cx<'_>,
    item: &crate::run::inbox::Item,
    capture: &std::collections::BTreeMap<String, String>,
) -> Result<(), StepError> {
    for (var, path) in capture {
        let value = crate::matching::lookup(&item.view, path).ok_or_else(|| {
            crate::run::failure::miss(
                format!("the matched message has `{path}` (to capture into `{var}`)"),
                format!("it does not:\n{}", item.message().render("    ")),
            )
        })?;
        cx.vars.set(var, value);
    }
    Ok(())
}
