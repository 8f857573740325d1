//! `expect_none`: no matching message arrives during a window (or none
//! beyond the first `more_than`). The SUT's own traffic is left out
//! unless the step asks for it.

use super::scaled;
use crate::event::Observed;
use crate::matching::Bound;
use crate::run::cx::Cx;
use crate::run::failure::{Miss, StepError, observed};
use crate::run::inbox::{Item, Offer, Watch};
use crate::run::wait::{Ended, wait};
use crate::schema::SchemaStore;
use crate::suite::{ExpectNone, Step};
use crate::sut::SutInstance;

/// Stops at the first message that matches, past the `let_through`
/// first ones.
struct Any<'a> {
    pattern: &'a Bound,
    schemas: &'a SchemaStore,
    let_through: usize,
    matched: usize,
    seen: Option<Observed>,
}

impl Watch for Any<'_> {
    fn offer(&mut self, item: &Item) -> Offer {
        if !self.pattern.matches(&item.view(), self.schemas) {
            return Offer::Skip;
        }
        self.matched += 1;
        if self.matched <= self.let_through {
            return Offer::Skip;
        }
        self.seen = Some(observed(item, Vec::new()));
        Offer::Stop
    }

    fn take(&mut self, _: Item) {}

    fn awaits_answer(&self) -> bool {
        false
    }
}

pub(super) async fn run(
    e: &ExpectNone,
    _step: &Step,
    cx: &mut Cx<'_>,
    sut: &mut SutInstance,
) -> Result<(), StepError> {
    let pattern = super::bind(&e.message, cx)?;
    let during = scaled(cx, e.during.0);
    cx.mandated += during;
    let scope = cx.quiet_scope(&e.after, e.own);
    let mut any = Any {
        pattern: &pattern,
        schemas: cx.env.schemas,
        let_through: e.more_than,
        matched: 0,
        seen: None,
    };
    match wait(cx, sut, &scope, &mut any, during).await? {
        Ended::Window => Ok(()),
        Ended::Stopped(_) => Err(StepError::Failed(Box::new(Miss {
            expected: match e.more_than {
                0 => format!("for {during:?}, no message with {}", pattern.describe()),
                n => format!(
                    "for {during:?}, no more than {n} message(s) with {}",
                    pattern.describe()
                ),
            },
            actual: "this one arrived".to_owned(),
            pattern: Some(pattern.to_json()),
            observed: any.seen.into_iter().collect(),
        }))),
    }
}
