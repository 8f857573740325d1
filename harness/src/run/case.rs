//! Runs one case from start to verdict: opens the case (its link armed
//! before anything else), starts the SUT, runs the steps in order, judges
//! what no step took, and stops the SUT. Every wait has a deadline, and
//! the case as a whole has `timeouts.case`.

use std::time::Duration;

use tokio::time::Instant;

use super::RunEnv;
use super::cx::{Cx, DRAIN_BATCH};
use super::failure::{Miss, StepError};
use super::step;
use crate::event::{Failure, Observed, Outcome, RunEvent, Sink, StepRef, Verdict};
use crate::matching::{self, Bound};
use crate::plan::Planned;
use crate::protocol::{Open, short_id};
use crate::secrets::Secrets;
use crate::suite::{Generator, Step, VarSpec};
use crate::sut::{Started, SutInstance, Unready};

/// How long a case may overrun `timeouts.case` in a step that does not
/// wait on the broker (a hook), before it is cut off.
const OVERRUN: Duration = Duration::from_secs(5);

/// Runs a planned case against the profile's SUT, emitting its events.
pub(crate) async fn run_case(env: &RunEnv<'_>, planned: &Planned, sink: &mut dyn Sink) -> Verdict {
    // The case's clock starts once its link is open: a broker's start,
    // paid by the first case that needs it, is not the case's time.
    let mut started = Instant::now();
    let suite = &*planned.suite;
    let case = &suite.cases[planned.case];
    let mut verdict = begin(planned, sink);
    let isolated = env.references.isolates(env.profile);
    let open = Open {
        sides: env.sides,
        profile: env.profile,
        role: suite.role,
        short: &short_id(),
        isolated,
    };
    match suite.protocol.open(open).await {
        Err(e) => {
            verdict.outcome = Outcome::Error {
                error: e.to_string(),
            }
        }
        Ok(opened) => {
            started = Instant::now();
            let secrets = Secrets::of(env.profile, &opened.env);
            verdict.tenant = opened.ids.tenant.clone();
            verdict.thing_id = opened.ids.thing_id.clone();
            match SutInstance::start(env, &opened.env).await {
                Started::Harness(e) => {
                    verdict.outcome = Outcome::Error {
                        error: secrets.hide(&e.to_string()),
                    };
                    opened.link.close().await;
                }
                Started::Failed(why) => {
                    verdict.outcome = failed_early(planned, "the SUT starts", secrets.hide(&why));
                    opened.link.close().await;
                }
                Started::Running(mut sut) => {
                    let refusals = match suite
                        .protocol
                        .rewatch_refusals(env.sides, env.profile, opened.refusals)
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => Err(format!("refusals cannot be watched: {e}")),
                    };
                    let deadline = Instant::now() + env.profile.timeouts.case_limit();
                    let mut cx = Cx::new(
                        env,
                        suite,
                        planned.name.clone(),
                        opened.link,
                        refusals,
                        started,
                        deadline,
                        &mut *sink,
                    );
                    for (name, value) in opened.vars {
                        cx.vars.set(name, value);
                    }
                    for (name, spec) in suite.vars.iter().chain(case.vars.iter()) {
                        cx.vars.set(name, generate(spec));
                    }
                    let steps: Vec<&Step> = suite.setup.iter().chain(case.steps.iter()).collect();
                    let ran = tokio::time::timeout_at(
                        deadline + OVERRUN,
                        run_steps(&mut cx, &steps, &mut sut),
                    )
                    .await;
                    let ended = match ran {
                        Ok(r) => r,
                        Err(_) => Err((None, super::wait::case_deadline(&cx))),
                    };
                    verdict.outcome = match ended {
                        Ok(()) => Outcome::Passed,
                        Err((_, StepError::Harness(e))) => Outcome::Error {
                            error: secrets.hide(&e.to_string()),
                        },
                        Err((at, StepError::Failed(miss))) => {
                            let mut notes = std::mem::take(&mut cx.notes);
                            notes.extend(sut.exited().await.map(|how| format!("{how}.")));
                            notes.extend(strays(&cx));
                            Outcome::Failed(Box::new(Failure {
                                requirements: requirements(planned),
                                step: at,
                                expected: secrets.hide(&miss.expected),
                                actual: secrets.hide(&miss.actual),
                                pattern: miss.pattern,
                                observed: miss.observed,
                                notes: notes.iter().map(|n| secrets.hide(n)).collect(),
                            }))
                        }
                    };
                    verdict.arrived = cx.inbox.arrived();
                    verdict.own = own_traffic(&cx);
                    verdict.taken = std::mem::take(&mut cx.taken);
                    verdict.mandated_wait = cx.mandated;
                    let Cx { link, .. } = cx;
                    verdict.sut_output = secrets.hide(&sut.stop().await);
                    link.close().await;
                }
            }
        }
    }
    verdict.duration = started.elapsed();
    sink.event(&RunEvent::CaseFinished {
        verdict: Box::new(verdict.clone()),
    });
    verdict
}

/// The verdict of a case whose server command never got ready (it is
/// started once for the run, before any case can open).
pub(crate) fn unready(
    planned: &Planned,
    profile: &crate::profile::Profile,
    why: Unready,
    sink: &mut dyn Sink,
) -> Verdict {
    let secrets = Secrets::of(profile, &[]);
    let mut verdict = begin(planned, sink);
    verdict.outcome = match why {
        Unready::Harness(e) => Outcome::Error {
            error: secrets.hide(&e.to_string()),
        },
        Unready::Sut(why) => failed_early(
            planned,
            "the server under test starts and is ready",
            secrets.hide(&why),
        ),
    };
    sink.event(&RunEvent::CaseFinished {
        verdict: Box::new(verdict.clone()),
    });
    verdict
}

/// Emits the case's start; its verdict, passed so far.
fn begin(planned: &Planned, sink: &mut dyn Sink) -> Verdict {
    let case = &planned.suite.cases[planned.case];
    sink.event(&RunEvent::CaseStarted {
        case: planned.name.clone(),
        title: case.title.clone(),
        location: case.location.to_string(),
    });
    Verdict::new(planned.name.clone(), Outcome::Passed)
}

/// A failure of the SUT's before any step ran.
fn failed_early(planned: &Planned, expected: &str, actual: String) -> Outcome {
    Outcome::Failed(Box::new(Failure {
        requirements: requirements(planned),
        step: None,
        expected: expected.to_owned(),
        actual,
        pattern: None,
        observed: Vec::new(),
        notes: Vec::new(),
    }))
}

/// Runs the steps in order; then judges what no step took.
pub(super) async fn run_steps(
    cx: &mut Cx<'_>,
    steps: &[&Step],
    sut: &mut SutInstance,
) -> Result<(), (Option<StepRef>, StepError)> {
    for (i, step) in steps.iter().enumerate() {
        if let Some(cond) = &step.when
            && !matching::when(cond, &cx.vars)
        {
            continue;
        }
        let at = StepRef {
            index: i + 1,
            kind: step.action.kind().to_owned(),
            name: step.name.clone(),
            location: step.location.clone(),
        };
        cx.step = i + 1;
        if let Some(name) = &step.name {
            let here = cx.entries();
            cx.marks.insert(name.clone(), here);
        }
        let began = Instant::now();
        let mut result = step::run(step, cx, sut).await;
        if result.is_ok() && step::reads(&step.action) {
            cx.drain(DRAIN_BATCH).await;
            result = cx.fail_on_malformed();
        }
        if !step.action.is_stimulus() {
            cx.close_stimuli();
        }
        // `after:` a pause means after it ended.
        if let (Some(name), crate::suite::Action::Wait(_)) = (&step.name, &step.action) {
            let here = cx.entries();
            cx.marks.insert(name.clone(), here);
        }
        let case = cx.case().to_owned();
        cx.emit(RunEvent::StepFinished {
            case,
            step: at.clone(),
            passed: result.is_ok(),
            duration: began.elapsed(),
        });
        result.map_err(|e| (Some(at), e))?;
    }
    cx.drain_all().await;
    cx.fail_on_malformed().map_err(|e| (None, e))?;
    leftovers(cx).map_err(|e| (None, e))
}

/// Fails on a message no step took that the suite does not allow and
/// that is not the SUT's own traffic, and on a refusal no step expected.
fn leftovers(cx: &Cx<'_>) -> Result<(), StepError> {
    if let Some(r) = cx.inbox.left().iter().find(|i| i.refused) {
        return Err(StepError::Failed(Box::new(Miss {
            expected: "no refusal beyond those the steps expect".to_owned(),
            actual: "the SUT refused (dead-lettered) a message no step expected it to refuse"
                .to_owned(),
            pattern: None,
            observed: vec![super::failure::observed(r, Vec::new())],
        })));
    }
    let allow: Vec<Bound> = cx
        .suite
        .allow
        .iter()
        .filter_map(|p| Bound::new(p, &cx.vars).ok())
        .collect();
    let own = cx.own();
    let unexpected: Vec<Observed> = cx
        .inbox
        .left()
        .iter()
        .filter(|i| !own.is_own(i))
        .filter(|i| !allow.iter().any(|a| a.matches(&i.view(), cx.env.schemas)))
        .take(6)
        .map(|i| super::failure::observed(i, Vec::new()))
        .collect();
    if unexpected.is_empty() {
        return Ok(());
    }
    Err(StepError::Failed(Box::new(Miss {
        expected:
            "no message from the SUT beyond those the steps expect, its own traffic and the suite's `allow` list"
                .to_owned(),
        actual: format!("{} message(s) that no step expected", unexpected.len()),
        pattern: None,
        observed: unexpected,
    })))
}

/// The entries no step took that are the SUT's own traffic.
fn own_traffic(cx: &Cx<'_>) -> Vec<usize> {
    let own = cx.own();
    cx.inbox
        .left()
        .iter()
        .filter(|i| !i.refused && own.is_own(i))
        .map(|i| i.entry)
        .collect()
}

/// A note on messages the broker carried that named no case.
fn strays(cx: &Cx<'_>) -> Option<String> {
    let strays = cx.link.unattributed();
    if strays.is_empty() {
        return None;
    }
    let mut note = format!(
        "{} message(s) on the broker named neither this case's tenant nor its thing id while it ran:\n",
        strays.len()
    );
    for m in strays.iter().take(5) {
        note.push_str(&m.render("    "));
    }
    Some(note)
}

pub(crate) fn requirements(planned: &Planned) -> Vec<crate::suite::Requirement> {
    let case = &planned.suite.cases[planned.case];
    planned
        .suite
        .requirements
        .iter()
        .filter(|r| case.requirements.contains(&r.id))
        .cloned()
        .collect()
}

fn generate(spec: &VarSpec) -> serde_json::Value {
    use serde_json::Value;
    match spec {
        VarSpec::Literal(v) => v.clone(),
        VarSpec::Generated { generate, length } => match generate {
            // Below 2^53, so that every JSON parser reads it exactly.
            Generator::Int => {
                Value::from(1 + (uuid::Uuid::new_v4().as_u128() % 9_000_000_000_000) as u64)
            }
            Generator::Uuid => Value::String(uuid::Uuid::new_v4().to_string()),
            Generator::Text => {
                let n = length.unwrap_or(16);
                let mut text = String::with_capacity(n + 32);
                while text.len() < n {
                    text.push_str(&uuid::Uuid::new_v4().simple().to_string());
                }
                text.truncate(n);
                Value::String(text)
            }
        },
    }
}
