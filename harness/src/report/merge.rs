//! One bundle from several evidence files: the partitions of a run split
//! across machines (`cargo nextest run --partition`), or the processes
//! of one nextest run. Their events are read back and replayed, as one
//! run, through the reporters that made the bundle of a single run, so a
//! merged `summary.json`, `junit.xml` and `report.html` are what one run
//! would have written. Pure: lines in, events out; [`merge`] does the
//! files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RunReports;
use super::score::Status;
use crate::event::{CasePlan, RunEvent, Sink};

/// An evidence file's event, with its line as written.
pub(crate) struct Line {
    /// The event.
    pub(crate) event: RunEvent,
    /// The line, to copy as it is.
    pub(crate) text: String,
}

/// Reads an evidence file's lines; `Err` names the line that is not an
/// event.
pub(crate) fn read(name: &str, text: &str) -> Result<Vec<Line>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|event| Line {
                    event,
                    text: l.to_owned(),
                })
                .map_err(|e| format!("{name}:{}: not an event of dmconf's evidence: {e}", i + 1))
        })
        .collect()
}

/// The merged run: its start, every case's lines in the order read, and
/// its end when every part ended.
pub(crate) struct Merged {
    /// `run_started`, with the plans of the parts joined.
    pub(crate) started: RunEvent,
    /// Each case's events, as written.
    pub(crate) cases: Vec<Line>,
    /// `run_finished`, the parts' counts summed; none when a part was cut
    /// short.
    pub(crate) finished: Option<RunEvent>,
}

/// Joins the parts of one run. `Err` when they are not of one run: other
/// suites or schemas (their digests differ), or a case judged twice.
pub(crate) fn join(parts: Vec<(String, Vec<Line>)>) -> Result<Merged, String> {
    let mut started: Option<RunEvent> = None;
    let mut plan: BTreeMap<String, CasePlan> = BTreeMap::new();
    let mut judged: BTreeMap<String, String> = BTreeMap::new();
    let mut cases = Vec::new();
    let (mut starts, mut ends) = (0, 0);
    let mut total = [0usize; 4];
    let mut duration = Duration::ZERO;
    let mut brokers = Vec::new();
    let mut ended = 0f64;
    for (name, lines) in parts {
        for line in lines {
            match &line.event {
                RunEvent::RunStarted {
                    plan: p,
                    identity,
                    suts,
                    ..
                } => {
                    starts += 1;
                    match &mut started {
                        None => started = Some(line.event.clone()),
                        Some(RunEvent::RunStarted {
                            identity: first,
                            suts: known,
                            ..
                        }) => {
                            if first.files != identity.files {
                                return Err(format!(
                                    "{name} is of a run of other suites or schemas than the first file's: they cannot be one run"
                                ));
                            }
                            first.started_unix = first.started_unix.min(identity.started_unix);
                            for s in suts {
                                if !known
                                    .iter()
                                    .any(|k| k.profile == s.profile && k.role == s.role)
                                {
                                    known.push(s.clone());
                                }
                            }
                        }
                        Some(_) => {}
                    }
                    for c in p {
                        plan.entry(c.case.clone()).or_insert_with(|| c.clone());
                    }
                }
                RunEvent::RunFinished {
                    passed,
                    failed,
                    errors,
                    ignored,
                    duration: d,
                    brokers: b,
                    ended_unix,
                } => {
                    ends += 1;
                    ended = ended.max(*ended_unix);
                    for (sum, n) in total.iter_mut().zip([passed, failed, errors]) {
                        *sum += n;
                    }
                    total[3] = total[3].max(*ignored);
                    duration = duration.max(*d);
                    for broker in b {
                        if !brokers.iter().any(|k: &crate::event::BrokerStart| {
                            k.broker == broker.broker && k.image == broker.image
                        }) {
                            brokers.push(broker.clone());
                        }
                    }
                }
                RunEvent::CaseFinished { verdict } => {
                    if let Some(other) = judged.insert(verdict.case.clone(), name.clone()) {
                        return Err(format!(
                            "{} is judged in {other} and in {name}: the parts overlap",
                            verdict.case
                        ));
                    }
                    cases.push(line);
                }
                _ => cases.push(line),
            }
        }
    }
    let Some(RunEvent::RunStarted {
        tool,
        suts,
        suites,
        identity,
        ..
    }) = started
    else {
        return Err("no run_started in any file: nothing to merge".to_owned());
    };
    let plan: Vec<CasePlan> = plan.into_values().collect();
    let started = RunEvent::RunStarted {
        tool,
        suts,
        suites,
        cases: plan.len(),
        plan,
        identity,
    };
    let finished = (starts == ends).then_some(RunEvent::RunFinished {
        passed: total[0],
        failed: total[1],
        errors: total[2],
        ignored: total[3],
        duration,
        brokers,
        ended_unix: ended,
    });
    Ok(Merged {
        started,
        cases,
        finished,
    })
}

/// Merges the evidence files `inputs` into a new bundle under `dir`:
/// the evidence (each case's lines as they were), `summary.json`,
/// `junit.xml` and `report.html`. Returns the bundle folder, the score
/// line, and the run's counts (failed cases that are not known
/// deviations, cases not judged, whether it finished).
pub(crate) fn merge(inputs: &[PathBuf], dir: &Path) -> Result<Made, String> {
    let mut parts = Vec::new();
    for path in inputs {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
        parts.push((name.clone(), read(&name, &text)?));
    }
    let merged = join(parts)?;
    let out = super::json::JsonLines::create(dir)
        .map_err(|e| format!("no bundle in {}: {e}", dir.display()))?;
    let mut reports = RunReports::default();
    out.event(&merged.started);
    reports.event(&merged.started);
    for line in &merged.cases {
        out.line(&line.text, &line.event);
        reports.event(&line.event);
    }
    if let Some(end) = &merged.finished {
        out.event(end);
        reports.event(end);
    }
    let bundle = out.bundle().to_owned();
    let written = reports.write(&bundle);
    if written.is_empty() {
        return Err(format!("no report written in {}", bundle.display()));
    }
    let score = reports.score.score().map(|s| s.line()).unwrap_or_default();
    let (mut failed, mut errors) = (0, 0);
    for line in &merged.cases {
        if let RunEvent::CaseFinished { verdict } = &line.event {
            match verdict.outcome {
                crate::event::Outcome::Failed(_) => failed += 1,
                crate::event::Outcome::Error { .. } => errors += 1,
                crate::event::Outcome::Passed => {}
            }
        }
    }
    Ok(Made {
        bundle,
        score,
        failed: failed - reports.score.known_deviations(),
        errors,
        finished: reports.score.status() == Status::Finished,
    })
}

/// `dmconf merge [--out DIR] EVIDENCE...`: merges evidence files (or
/// bundle folders, for their `evidence.jsonl`) into a new bundle under
/// `DIR` (else `DMCONF_REPORT_DIR`, else `target/dmconf-reports`), and
/// exits as the run would have: 101 when the SUT failed a case the
/// baseline does not name, 3 when a case was not judged or a part was
/// cut short (or the files cannot be merged), else 0.
pub fn command(args: impl Iterator<Item = String>) -> std::process::ExitCode {
    use crate::error::{EXIT_FAILED, EXIT_HARNESS_ERROR, EXIT_PASSED};
    let mut out = std::env::var_os(crate::env::REPORT_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target").join("dmconf-reports"));
    let mut inputs = Vec::new();
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => match args.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => inputs.clear(),
            },
            _ => {
                let path = PathBuf::from(&a);
                inputs.push(if path.is_dir() {
                    path.join("evidence.jsonl")
                } else {
                    path
                });
            }
        }
    }
    if inputs.is_empty() {
        eprintln!("dmconf merge: usage: dmconf merge [--out DIR] EVIDENCE.jsonl|BUNDLE...");
        return std::process::ExitCode::from(EXIT_HARNESS_ERROR);
    }
    match merge(&inputs, &out) {
        Ok(made) => {
            eprintln!("dmconf: {}", made.score);
            eprintln!("dmconf: merged bundle: {}", made.bundle.display());
            let code = if made.failed > 0 {
                EXIT_FAILED
            } else if made.errors > 0 || !made.finished {
                if !made.finished {
                    eprintln!("dmconf: a part was cut short: the merged run is incomplete");
                }
                EXIT_HARNESS_ERROR
            } else {
                EXIT_PASSED
            };
            std::process::ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("dmconf merge: {e}");
            std::process::ExitCode::from(EXIT_HARNESS_ERROR)
        }
    }
}

/// What a merge made.
pub(crate) struct Made {
    /// The new bundle.
    pub(crate) bundle: PathBuf,
    /// Its score line.
    pub(crate) score: String,
    /// Cases the SUT failed that the baseline does not name.
    pub(crate) failed: usize,
    /// Cases not judged.
    pub(crate) errors: usize,
    /// Every part ran to its end.
    pub(crate) finished: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Identity, Outcome, Verdict};

    fn started(cases: &[&str], file_digest: &str) -> String {
        let mut identity = Identity::default();
        identity
            .files
            .insert("suites/a.yaml".into(), file_digest.into());
        let plan = cases
            .iter()
            .map(|c| CasePlan {
                case: (*c).into(),
                requirements: Vec::new(),
                ignored: None,
                known_deviation: None,
            })
            .collect();
        serde_json::to_string(&RunEvent::RunStarted {
            tool: "dmconf".into(),
            suts: Vec::new(),
            suites: Vec::new(),
            cases: cases.len(),
            plan,
            identity,
        })
        .unwrap()
    }

    fn finished(case: &str, outcome: Outcome) -> String {
        serde_json::to_string(&RunEvent::CaseFinished {
            verdict: Box::new(Verdict::new(case.into(), outcome)),
        })
        .unwrap()
    }

    fn end(passed: usize, failed: usize) -> String {
        serde_json::to_string(&RunEvent::RunFinished {
            passed,
            failed,
            errors: 0,
            ignored: 0,
            duration: Duration::from_secs(2),
            brokers: Vec::new(),
            ended_unix: 1.0,
        })
        .unwrap()
    }

    fn part(name: &str, lines: &[String]) -> (String, Vec<Line>) {
        (name.into(), read(name, &lines.join("\n")).unwrap())
    }

    #[test]
    fn two_partitions_are_one_run() {
        let plan = ["d::device::s::a", "d::device::s::b"];
        let one = part(
            "p1",
            &[
                started(&plan, "00"),
                finished("d::device::s::a", Outcome::Passed),
                end(1, 0),
            ],
        );
        let two = part(
            "p2",
            &[
                started(&plan, "00"),
                finished(
                    "d::device::s::b",
                    Outcome::Error {
                        error: "gone".into(),
                    },
                ),
                end(0, 0),
            ],
        );
        let m = join(vec![one, two]).unwrap();
        assert_eq!(m.cases.len(), 2);
        let Some(RunEvent::RunFinished { passed, .. }) = m.finished else {
            panic!("the merged run has no end")
        };
        assert_eq!(passed, 1);
        let RunEvent::RunStarted { plan, .. } = m.started else {
            panic!()
        };
        assert_eq!(plan.len(), 2);
    }

    #[test]
    fn a_part_cut_short_leaves_the_run_unfinished() {
        let plan = ["d::device::s::a", "d::device::s::b"];
        let one = part("p1", &[started(&plan, "00"), end(0, 0)]);
        let two = part("p2", &[started(&plan, "00")]);
        assert!(join(vec![one, two]).unwrap().finished.is_none());
    }

    #[test]
    fn parts_of_other_suites_or_judging_a_case_twice_are_refused() {
        let plan = ["d::device::s::a"];
        let a = || finished("d::device::s::a", Outcome::Passed);
        let other = join(vec![
            part("p1", &[started(&plan, "00")]),
            part("p2", &[started(&plan, "11")]),
        ]);
        assert!(other.err().unwrap().contains("other suites"));
        let twice = join(vec![
            part("p1", &[started(&plan, "00"), a()]),
            part("p2", &[started(&plan, "00"), a()]),
        ]);
        assert!(twice.err().unwrap().contains("judged in p1 and in p2"));
    }

    #[test]
    fn a_line_that_is_not_an_event_is_named() {
        let err = read("e.jsonl", "{\"event\":\"run_started\"}\n")
            .err()
            .unwrap();
        assert!(err.starts_with("e.jsonl:1: "), "{err}");
    }
}
