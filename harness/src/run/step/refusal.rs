//! `expect_refused` and `expect_accepted`: whether the SUT refuses a
//! message an earlier step sent, as the protocol lets the harness see it
//! (DMF: the broker dead-letters it, and hands it back by its
//! `message_id`), or takes it. Where the broker shows its deliveries, a
//! message the SUT puts back in its queue again and again (a requeue
//! loop) is neither, and one it never takes is not accepted.

use std::time::Duration;

use tokio::time::Instant;

use super::{scaled, within};
use crate::message::Deliveries;
use crate::run::cx::Cx;
use crate::run::failure::{StepError, miss, observed};
use crate::run::inbox::{Item, Offer, Scope, Watch};
use crate::run::wait::{Ended, wait};
use crate::suite::{ExpectAccepted, ExpectRefused, Step};
use crate::sut::SutInstance;

/// Stops at the refusal of one message.
struct Refusal {
    message_id: String,
    take: bool,
    seen: Option<Item>,
}

impl Watch for Refusal {
    fn offer(&mut self, item: &Item) -> Offer {
        if item.property("message_id").as_deref() != Some(self.message_id.as_str()) {
            return Offer::Skip;
        }
        self.seen = Some(item.clone());
        if self.take {
            Offer::TakeAndStop
        } else {
            Offer::Stop
        }
    }

    fn take(&mut self, _: Item) {}

    fn awaits_answer(&self) -> bool {
        self.take
    }
}

/// The message id of what step `of` sent, when refusals can be observed.
fn refusable(cx: &Cx<'_>, of: &str) -> Result<String, StepError> {
    if let Err(why) = &cx.refusals {
        return Err(miss(
            "refusals by the SUT can be observed",
            format!("they cannot: {why}; this case cannot judge what it asserts"),
        ));
    }
    cx.sent
        .get(of)
        .and_then(|m| m.property("message_id"))
        .ok_or_else(|| {
            miss(
                format!("a message sent by step `{of}`"),
                "that step did not run",
            )
        })
}

/// Deliveries again that make a requeue loop. A few can be a consumer
/// that lost its connection, or a server that retried a conflict and then
/// took the message; a loop goes on.
const LOOP: u32 = 5;

/// How long after its first delivery a message is watched for more: a
/// loop that puts it back at once shows within it. A loop that waits
/// longer between deliveries (hawkBit's before 0.9) is not seen.
const SETTLE: Duration = Duration::from_secs(1);

/// What the SUT's broker shows of the message `id`: why the step fails,
/// if it does.
fn handed(cx: &Cx<'_>, id: &str) -> Option<String> {
    let Deliveries { times, again, .. } = cx.link.deliveries(id).ok()?;
    if again >= LOOP {
        Some(format!(
            "the SUT put it back in its queue instead: the broker delivered it {times} times, {again} of them again (a requeue loop; a message the SUT cannot take must be refused, dead-lettered, not requeued)"
        ))
    } else if times == 0 && cx.link.deliveries_seen() {
        Some("the SUT never took it from its queue".to_owned())
    } else {
        None
    }
}

/// [`handed`], once the SUT's first delivery of the message `id` has
/// been seen (or the profile's `expect` timeout has passed: a window with
/// no refusal can be shorter than a busy server takes to reach it) and
/// [`SETTLE`] has passed since.
async fn taken(cx: &Cx<'_>, id: &str) -> Option<String> {
    let until = (Instant::now() + within(cx, None)).min(cx.deadline);
    let watched = || {
        cx.link
            .deliveries(id)
            .ok()
            .filter(|_| cx.link.deliveries_seen())
    };
    while watched().is_some_and(|d| d.times == 0) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(Deliveries {
        first: Some(first),
        again,
        ..
    }) = cx.link.deliveries(id).ok()
        && again < LOOP
    {
        let settled = scaled(cx, SETTLE).saturating_sub(first.elapsed());
        let left = cx.deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(settled.min(left)).await;
    }
    handed(cx, id)
}

fn refusals() -> Scope {
    Scope {
        refusals: true,
        ..Default::default()
    }
}

pub(super) async fn refused(
    r: &ExpectRefused,
    _step: &Step,
    cx: &mut Cx<'_>,
    sut: &mut SutInstance,
) -> Result<(), StepError> {
    let window = within(cx, r.within);
    let mut watch = Refusal {
        message_id: refusable(cx, &r.of)?,
        take: true,
        seen: None,
    };
    match wait(cx, sut, &refusals(), &mut watch, window).await? {
        Ended::Stopped(at) => {
            cx.taken.push((at, cx.step));
            Ok(())
        }
        Ended::Window => Err(miss(
            format!(
                "within {window:?}, the SUT refuses the message of step `{}` (a DMF server dead-letters it)",
                r.of
            ),
            match handed(cx, &watch.message_id) {
                Some(why) => format!("it was not refused: {why}"),
                None => "it was not refused".to_owned(),
            },
        )),
    }
}

pub(super) async fn accepted(
    a: &ExpectAccepted,
    _step: &Step,
    cx: &mut Cx<'_>,
    sut: &mut SutInstance,
) -> Result<(), StepError> {
    let during = scaled(cx, a.during.0);
    cx.mandated += during;
    let mut watch = Refusal {
        message_id: refusable(cx, &a.of)?,
        take: false,
        seen: None,
    };
    match wait(cx, sut, &refusals(), &mut watch, during).await? {
        Ended::Window => match taken(cx, &watch.message_id).await {
            None => Ok(()),
            Some(why) => Err(miss(
                format!(
                    "for {during:?}, the SUT takes the message of step `{}` and does not refuse it",
                    a.of
                ),
                why,
            )),
        },
        Ended::Stopped(_) => {
            let mut e = miss(
                format!(
                    "for {during:?}, the SUT does not refuse the message of step `{}`",
                    a.of
                ),
                "it was refused (dead-lettered)",
            );
            if let (StepError::Failed(m), Some(item)) = (&mut e, &watch.seen) {
                m.observed.push(observed(item, Vec::new()));
            }
            Err(e)
        }
    }
}
