//! `expect_refused` and `expect_accepted`: whether the SUT refuses a
//! message an earlier step sent, as the protocol lets the harness see it
//! (DMF: the broker dead-letters it, and hands it back by its
//! `message_id`).

use super::{scaled, within};
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
            "it was not refused",
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
        Ended::Window => Ok(()),
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
