//! `collect`: takes the matching answers to the last stimulus, in order,
//! until one matches `until`, stores them for checks, and captures values
//! from the one that ended it.

use super::{bind, capture, mark_after, within};
use crate::event::Observed;
use crate::matching::Bound;
use crate::message::Message;
use crate::run::cx::Cx;
use crate::run::failure::{Miss, StepError, observed};
use crate::run::inbox::{Item, Offer, Watch};
use crate::run::wait::{Ended, wait};
use crate::schema::SchemaStore;
use crate::suite::{Collect, Step};
use crate::sut::SutInstance;

/// Takes what matches `message` until something matches `until`.
struct Sequence<'a> {
    message: &'a Bound,
    until: &'a Bound,
    schemas: &'a SchemaStore,
    took: Vec<Item>,
}

impl Watch for Sequence<'_> {
    fn offer(&mut self, item: &Item) -> Offer {
        if self.until.matches(&item.view(), self.schemas) {
            Offer::TakeAndStop
        } else if self.message.matches(&item.view(), self.schemas) {
            Offer::Take
        } else {
            Offer::Skip
        }
    }

    fn take(&mut self, item: Item) {
        self.took.push(item);
    }
}

pub(super) async fn run(
    c: &Collect,
    step: &Step,
    cx: &mut Cx<'_>,
    sut: &mut SutInstance,
) -> Result<(), StepError> {
    let message = bind(&c.message, cx)?;
    let until = bind(&c.until, cx)?;
    let scope = cx.answer_scope(&c.after, c.own);
    let window = within(cx, c.within);
    let mut seq = Sequence {
        message: &message,
        until: &until,
        schemas: cx.env.schemas,
        took: Vec::new(),
    };
    let ended = wait(cx, sut, &scope, &mut seq, window).await?;
    let step_index = cx.step;
    cx.taken
        .extend(seq.took.iter().map(|i| (i.entry, step_index)));
    match ended {
        Ended::Stopped(at) => {
            mark_after(cx, step, at);
            if let Some(last) = seq.took.last() {
                capture(cx, last, &c.capture)?;
            }
            let got: Vec<Message> = seq.took.iter().map(Item::message).collect();
            cx.collected.insert(c.into.clone(), got);
            Ok(())
        }
        Ended::Window => {
            let mut shown: Vec<Observed> =
                seq.took.iter().map(|i| observed(i, Vec::new())).collect();
            shown.extend(cx.near_misses(&until, &scope));
            Err(StepError::Failed(Box::new(Miss {
                expected: format!(
                    "within {window:?}, messages with {} ending with one with {}",
                    message.describe(),
                    until.describe()
                ),
                actual: format!(
                    "{} matching message(s) arrived, none that ends the sequence",
                    seq.took.len()
                ),
                pattern: Some(until.to_json()),
                observed: shown,
            })))
        }
    }
}
