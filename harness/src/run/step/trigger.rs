//! `trigger`: asks the SUT to act through a hook (a command of the
//! profile, a reference's own, or the Management API), and captures
//! values from its JSON answer. A stimulus: the expectations after it
//! judge what the SUT did, and when the hook names a correlation (the
//! request a device was asked to send), only what carries it.

use serde_json::{Map, Value};

use crate::matching::lookup;
use crate::protocol::Stimulus;
use crate::run::cx::Cx;
use crate::run::failure::{StepError, miss};
use crate::suite::{Step, Trigger};
use crate::sut::SutInstance;

pub(super) async fn run(
    t: &Trigger,
    _step: &Step,
    cx: &mut Cx<'_>,
    sut: &mut SutInstance,
) -> Result<(), StepError> {
    let args = expand(&t.args, cx)?;
    cx.begin_stimulus().await;
    let answer = call(&t.hook, &args, cx, sut).await?;
    let stimulus = Stimulus::Hook {
        args: &args,
        answer: &answer,
    };
    let p = cx.protocol();
    if p.needs_correlation(cx.role(), &stimulus) && p.correlation_of(&stimulus).is_none() {
        return Err(miss(
            format!(
                "the answer of `{}` names the correlationId of the request it sent",
                t.hook
            ),
            format!(
                "it is: {answer}; without it, the request cannot be told from those the SUT sends of its own accord"
            ),
        ));
    }
    cx.end_stimulus(&stimulus);
    for (var, path) in &t.capture {
        let v = lookup(&answer, path).ok_or_else(|| {
            miss(
                format!(
                    "the answer of `{}` has `{path}` (to capture into `{var}`)",
                    t.hook
                ),
                format!("it is: {answer}"),
            )
        })?;
        cx.vars.set(var, v);
    }
    Ok(())
}

/// A hook's arguments, variables expanded.
pub(super) fn expand(
    args: &std::collections::BTreeMap<String, Value>,
    cx: &Cx<'_>,
) -> Result<Map<String, Value>, StepError> {
    args.iter()
        .map(|(k, v)| Ok((k.clone(), cx.vars.expand(v)?)))
        .collect::<Result<_, String>>()
        .map_err(|e| miss("hook arguments whose variables are set", e))
}

/// Calls a hook; a hook that fails is the SUT's failure.
pub(super) async fn call(
    hook: &str,
    args: &Map<String, Value>,
    cx: &Cx<'_>,
    sut: &mut SutInstance,
) -> Result<Value, StepError> {
    sut.call(hook, args, &cx.vars)
        .await
        .map_err(|e| miss(format!("the SUT performs `{hook}`"), e))
}
