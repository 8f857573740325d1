//! `expect`: waits for one message that matches, among the answers to
//! the last stimulus, takes it, and captures values from it.

use super::{bind, capture, mark_after, within};
use crate::matching::Bound;
use crate::run::cx::Cx;
use crate::run::failure::{Miss, StepError};
use crate::run::inbox::{Item, Offer, Watch};
use crate::run::wait::{Ended, wait};
use crate::schema::SchemaStore;
use crate::suite::{Expect, Step};
use crate::sut::SutInstance;

/// Takes the first message that matches.
struct First<'a> {
    pattern: &'a Bound,
    schemas: &'a SchemaStore,
    took: Option<Item>,
}

impl Watch for First<'_> {
    fn offer(&mut self, item: &Item) -> Offer {
        if self.pattern.matches(&item.view(), self.schemas) {
            Offer::TakeAndStop
        } else {
            Offer::Skip
        }
    }

    fn take(&mut self, item: Item) {
        self.took = Some(item);
    }
}

pub(super) async fn run(
    e: &Expect,
    step: &Step,
    cx: &mut Cx<'_>,
    sut: &mut SutInstance,
) -> Result<(), StepError> {
    let pattern = bind(&e.message, cx)?;
    let scope = cx.answer_scope(&e.after, e.own);
    let window = within(cx, e.within);
    let schemas = cx.env.schemas;
    let mut first = First {
        pattern: &pattern,
        schemas,
        took: None,
    };
    match wait(cx, sut, &scope, &mut first, window).await? {
        Ended::Stopped(at) => {
            cx.taken.push((at, cx.step));
            mark_after(cx, step, at);
            let Some(item) = first.took else {
                return Ok(());
            };
            capture(cx, &item, &e.capture)
        }
        Ended::Window => {
            let observed = cx.near_misses(&pattern, &scope);
            let actual = if observed.is_empty() {
                "no message from the SUT in scope was waiting to be matched".to_owned()
            } else {
                format!("{} message(s) from the SUT did not match", observed.len())
            };
            Err(StepError::Failed(Box::new(Miss {
                expected: format!("within {window:?}, a message with {}", pattern.describe()),
                actual,
                pattern: Some(pattern.to_json()),
                observed,
            })))
        }
    }
}
