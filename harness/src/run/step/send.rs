//! `send`: builds a message from the step (variables expanded, a fixture
//! read at load, padded by `fill`) and publishes it. A stimulus: the
//! expectations after it judge its answers.

use serde_json::Value;

use crate::message::Message;
use crate::run::cx::Cx;
use crate::run::failure::{StepError, miss};
use crate::suite::parse::MAX_FILL;
use crate::suite::{Send, Step};
use crate::sut::SutInstance;
use crate::vars::Vars;

pub(super) async fn run(
    s: &Send,
    step: &Step,
    cx: &mut Cx<'_>,
    _sut: &mut SutInstance,
) -> Result<(), StepError> {
    let mut msg = build(s, &cx.vars).map_err(|e| miss("a message the harness can build", e))?;
    if let Some(f) = &s.fill {
        let (what, n) = match (&f.headers, &f.message) {
            (Some(n), None) => ("headers", n),
            (None, Some(n)) => ("message", n),
            _ => {
                return Err(miss(
                    "a `fill` of `headers` or `message`",
                    "both or neither",
                ));
            }
        };
        let bytes = fill_bytes(&cx.vars, what, n).map_err(|e| miss("a size to fill to", e))?;
        let note = cx
            .protocol()
            .fill(&mut msg, what, bytes, cx.env.profile)
            .map_err(|e| miss("a message the harness can fill", e))?;
        cx.notes.push(note);
    }
    cx.stimulate(&msg, step.name.as_ref()).await
}

/// The message a `send` step describes, variables expanded.
fn build(s: &Send, v: &Vars) -> Result<Message, String> {
    let mut msg = Message {
        channel: v.expand_str(&s.to)?,
        raw: s.raw,
        ..Default::default()
    };
    for (k, val) in &s.headers {
        msg.headers.insert(k.clone(), v.expand(val)?);
    }
    for (k, val) in &s.properties {
        msg.properties.insert(k.clone(), v.expand(val)?);
    }
    msg.body = if let Some(b) = &s.body {
        serde_json::to_vec(&v.expand(b)?).map_err(|e| e.to_string())?
    } else if let Some(t) = &s.body_text {
        v.expand_str(t)?.into_bytes()
    } else if let Some(t) = &s.fixture_text {
        v.expand_str(t)?.into_bytes()
    } else {
        Vec::new()
    };
    Ok(msg)
}

/// The number of bytes `fill` asks for, variables expanded, bounded.
fn fill_bytes(v: &Vars, what: &str, n: &Value) -> Result<usize, String> {
    let n = v.expand(n)?;
    let bytes = n
        .as_u64()
        .or_else(|| n.as_str().and_then(|t| t.parse().ok()))
        .ok_or_else(|| format!("`fill: {what}` needs a number of bytes, not {n}"))?;
    if bytes > MAX_FILL {
        return Err(format!(
            "`fill: {what}` of {bytes} bytes is out of range: at most {MAX_FILL}"
        ));
    }
    Ok(bytes as usize)
}
