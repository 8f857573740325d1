//! `query`: asks the SUT through a hook, again and again, until its JSON
//! answer matches, within a window. It reads; it prompts nothing, and
//! while it asks, the harness holds back its own answers to the SUT
//! (which would change what the SUT last received).

use std::time::Duration;

use tokio::time::Instant;

use super::trigger::{call, expand};
use super::within;
use crate::matching::check_value;
use crate::run::cx::{Cx, DRAIN_BATCH};
use crate::run::failure::{StepError, answered, miss};
use crate::run::wait::case_deadline;
use crate::suite::{Query, Step};
use crate::sut::SutInstance;

/// How often a `query` step asks again.
const INTERVAL: Duration = Duration::from_millis(200);

pub(super) async fn run(
    q: &Query,
    _step: &Step,
    cx: &mut Cx<'_>,
    sut: &mut SutInstance,
) -> Result<(), StepError> {
    cx.hold_answers();
    let asked = ask(q, cx, sut).await;
    cx.release_answers().await;
    asked
}

/// Asks until the answer matches or the window closes.
async fn ask(q: &Query, cx: &mut Cx<'_>, sut: &mut SutInstance) -> Result<(), StepError> {
    let window = within(cx, q.within);
    let window_ends = Instant::now() + window;
    let until = window_ends.min(cx.deadline);
    let args = expand(&q.args, cx)?;
    let expected = cx
        .vars
        .expand(&q.expect)
        .unwrap_or_else(|_| q.expect.clone());
    loop {
        let answer = call(&q.hook, &args, cx, sut).await?;
        let why = match check_value(&q.expect, &answer, &cx.vars) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        // Take in what arrived meanwhile, so that it is answered and
        // validated in time.
        cx.drain(DRAIN_BATCH).await;
        if Instant::now() >= until {
            if until < window_ends {
                return Err(case_deadline(cx));
            }
            return Err(miss(
                format!("within {window:?}, `{}` answers with {expected}", q.hook),
                answered("its last answer was", &answer, &why),
            ));
        }
        tokio::time::sleep(INTERVAL.min(until - Instant::now())).await;
    }
}
