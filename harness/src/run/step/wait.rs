//! `wait`: lets time pass, taking in (and answering) what arrives; with
//! `until`, only until a matching message arrives.

use super::scaled;
use crate::matching::Bound;
use crate::run::cx::Cx;
use crate::run::failure::StepError;
use crate::run::inbox::{Item, Offer, Scope, Watch};
use crate::run::wait::wait;
use crate::schema::SchemaStore;
use crate::suite::{Step, Wait};
use crate::sut::SutInstance;

/// Takes nothing; stops, when it has one, at the first message that
/// matches `until`.
struct Idle<'a> {
    until: Option<&'a Bound>,
    schemas: &'a SchemaStore,
}

impl Watch for Idle<'_> {
    fn offer(&mut self, item: &Item) -> Offer {
        match self.until {
            Some(p) if p.matches(&item.view(), self.schemas) => Offer::Stop,
            _ => Offer::Skip,
        }
    }

    fn take(&mut self, _: Item) {}

    fn awaits_answer(&self) -> bool {
        false
    }
}

pub(super) async fn run(
    w: &Wait,
    _step: &Step,
    cx: &mut Cx<'_>,
    sut: &mut SutInstance,
) -> Result<(), StepError> {
    let d = scaled(cx, w.duration.0);
    let until = w.until.as_ref().map(|p| super::bind(p, cx)).transpose()?;
    // What arrives from here on, the SUT's own traffic included.
    let scope = Scope {
        from: cx.entries(),
        ..cx.quiet_scope(&None, true)
    };
    let mut idle = Idle {
        until: until.as_ref(),
        schemas: cx.env.schemas,
    };
    let began = tokio::time::Instant::now();
    let ended = wait(cx, sut, &scope, &mut idle, d).await.map(|_| ());
    cx.mandated += began.elapsed().min(d);
    ended
}
