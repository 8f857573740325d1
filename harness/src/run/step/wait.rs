//! `wait`: lets time pass, taking in (and answering) what arrives.

use super::scaled;
use crate::run::cx::Cx;
use crate::run::failure::StepError;
use crate::run::inbox::{Item, Offer, Watch};
use crate::run::wait::wait;
use crate::suite::{Step, Wait};
use crate::sut::SutInstance;

/// Takes nothing.
struct Idle;

impl Watch for Idle {
    fn offer(&mut self, _: &Item) -> Offer {
        Offer::Skip
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
    cx.mandated += d;
    let scope = cx.quiet_scope(&None, true);
    wait(cx, sut, &scope, &mut Idle, d).await.map(|_| ())
}
