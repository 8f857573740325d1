//! `resend`: publishes an earlier `send` step's message again, byte for
//! byte, under a message id of its own. A stimulus, like `send`.

use crate::run::cx::Cx;
use crate::run::failure::{StepError, miss};
use crate::suite::Step;
use crate::sut::SutInstance;

pub(super) async fn run(
    of: &str,
    step: &Step,
    cx: &mut Cx<'_>,
    _sut: &mut SutInstance,
) -> Result<(), StepError> {
    let mut msg = cx.sent.get(of).cloned().ok_or_else(|| {
        miss(
            format!("a message sent by step `{of}`"),
            "that step did not run",
        )
    })?;
    // A message id of its own, so that a refusal of the copy is told
    // from one of the original.
    if msg
        .property("message_id")
        .is_some_and(|id| id.starts_with("dmconf-"))
    {
        msg.properties.remove("message_id");
    }
    cx.stimulate(&msg, step.name.as_ref()).await
}
