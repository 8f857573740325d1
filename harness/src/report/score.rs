//! The conformance score: of the cases that apply, how many passed, by
//! level and by basis; and for every requirement, its cases and whether
//! it holds. A case counts at the weakest level and basis among its
//! requirements (as the selection takes it). Pure: verdicts in, a score
//! out.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::event::{BrokerStart, CasePlan, Identity, Outcome, RunEvent, Sink, SutInfo};
use crate::suite::{Basis, Level, Requirement};

/// A case's result as the score counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Result {
    /// Passed.
    Passed,
    /// Failed on the SUT's side.
    Failed,
    /// Not judged: the harness's or the broker's trouble.
    Error,
    /// Did not apply (ignored, with a reason).
    Ignored,
    /// Listed, but not run by this invocation (a test filter).
    NotRun,
}

impl Result {
    /// The result of a case that ran.
    pub(crate) fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Passed => Result::Passed,
            Outcome::Failed(_) => Result::Failed,
            Outcome::Error { .. } => Result::Error,
        }
    }
}

/// One case, for the score.
pub(crate) struct Scored<'a> {
    /// `protocol::role::suite::case`.
    pub(crate) case: &'a str,
    /// The requirements it checks.
    pub(crate) requirements: Vec<&'a Requirement>,
    /// What came of it.
    pub(crate) result: Result,
}

/// Counts for one level or one basis.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Tally {
    /// Cases that passed.
    pub(crate) passed: usize,
    /// Cases the SUT failed.
    pub(crate) failed: usize,
    /// Cases not judged.
    pub(crate) errors: usize,
    /// Cases that did not apply.
    pub(crate) not_applicable: usize,
}

impl Tally {
    fn add(&mut self, r: Result) {
        match r {
            Result::Passed => self.passed += 1,
            Result::Failed => self.failed += 1,
            Result::Error => self.errors += 1,
            Result::Ignored => self.not_applicable += 1,
            Result::NotRun => {}
        }
    }

    /// Cases that applied and ran.
    fn applicable(&self) -> usize {
        self.passed + self.failed + self.errors
    }
}

/// One requirement and what its cases gave.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Coverage {
    /// Its id.
    pub(crate) id: String,
    /// MUST or SHOULD.
    pub(crate) level: Level,
    /// What it rests on.
    pub(crate) basis: Basis,
    /// Its cases and their results.
    pub(crate) cases: Vec<(String, Result)>,
    /// Whether every case that ran passed; `None` when none ran.
    pub(crate) holds: Option<bool>,
    /// Read from hawkBit's code, asserted by no hawkBit test.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) inferred: bool,
}

/// The score of a run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Score {
    /// By the weakest level of each case's requirements (MUST first).
    pub(crate) by_level: BTreeMap<Level, Tally>,
    /// By the weakest basis of each case's requirements (seed first).
    pub(crate) by_basis: BTreeMap<Basis, Tally>,
    /// Every requirement, in id order.
    pub(crate) requirements: Vec<Coverage>,
    /// Failed cases the baseline names: they do not fail the run.
    pub(crate) known_deviations: usize,
}

impl Score {
    /// Scores `cases`.
    pub(crate) fn of(cases: &[Scored<'_>]) -> Score {
        let mut by_level: BTreeMap<Level, Tally> = BTreeMap::new();
        let mut by_basis: BTreeMap<Basis, Tally> = BTreeMap::new();
        let mut reqs: BTreeMap<&str, Coverage> = BTreeMap::new();
        for c in cases {
            if let Some(level) = c.requirements.iter().map(|r| r.level).max() {
                by_level.entry(level).or_default().add(c.result);
            }
            if let Some(basis) = c.requirements.iter().map(|r| r.basis).max() {
                by_basis.entry(basis).or_default().add(c.result);
            }
            for r in &c.requirements {
                reqs.entry(&r.id)
                    .or_insert_with(|| Coverage {
                        id: r.id.clone(),
                        level: r.level,
                        basis: r.basis,
                        cases: Vec::new(),
                        holds: None,
                        inferred: r.inferred,
                    })
                    .cases
                    .push((c.case.to_owned(), c.result));
            }
        }
        let requirements = reqs
            .into_values()
            .map(|mut cov| {
                let ran: Vec<Result> = cov
                    .cases
                    .iter()
                    .map(|(_, r)| *r)
                    .filter(|r| matches!(r, Result::Passed | Result::Failed | Result::Error))
                    .collect();
                cov.holds = (!ran.is_empty()).then(|| ran.iter().all(|r| *r == Result::Passed));
                cov
            })
            .collect();
        Score {
            by_level,
            by_basis,
            requirements,
            known_deviations: 0,
        }
    }

    /// The tallies by level, by name, MUST first.
    pub(crate) fn levels(&self) -> impl Iterator<Item = (&'static str, &Tally)> {
        self.by_level.iter().map(|(l, t)| (l.as_str(), t))
    }

    /// The tallies by basis, by name, seed first.
    pub(crate) fn bases(&self) -> impl Iterator<Item = (&'static str, &Tally)> {
        self.by_basis.iter().map(|(b, t)| (b.as_str(), t))
    }

    /// One line: passed of applicable, by level and by basis, and the
    /// requirements that hold.
    pub(crate) fn line(&self) -> String {
        let part = |tallies: Vec<(&str, &Tally)>| {
            tallies
                .into_iter()
                .filter(|(_, t)| t.applicable() > 0)
                .map(|(k, t)| format!("{k} {}/{}", t.passed, t.applicable()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let levels = part(self.levels().collect());
        let bases = part(self.bases().collect());
        let judged: Vec<&Coverage> = self
            .requirements
            .iter()
            .filter(|c| c.holds.is_some())
            .collect();
        let held = judged.iter().filter(|c| c.holds == Some(true)).count();
        let mut line = format!("score: {levels}; by basis: {bases}");
        let _ = write!(line, "; requirements held {held}/{}", judged.len());
        let unjudged = self.requirements.len() - judged.len();
        if unjudged > 0 {
            let _ = write!(line, " ({unjudged} not applicable)");
        }
        if self.known_deviations > 0 {
            let _ = write!(line, "; {} known deviations", self.known_deviations);
        }
        line
    }
}

/// Whether the run has ended, as `summary.json` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Not ended when the summary was written: one that stays so was cut
    /// short.
    #[default]
    Running,
    /// Every case listed ran or was ignored.
    Finished,
    /// Stopped by a signal.
    Interrupted,
}

/// Builds the score from the run's events: the plan from `run_started`,
/// each result from `case_finished`.
#[derive(Default)]
pub(crate) struct ScoreReporter {
    status: Status,
    ended_unix: Option<f64>,
    suts: Vec<SutInfo>,
    identity: Identity,
    brokers: Vec<BrokerStart>,
    plan: Vec<CasePlan>,
    results: BTreeMap<String, (Result, f64)>,
    /// The cases the SUT failed, with what went wrong in one line.
    failed: Vec<(String, String)>,
}

impl Sink for ScoreReporter {
    fn event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted {
                plan,
                suts,
                identity,
                ..
            } => {
                self.plan = plan.clone();
                self.suts = suts.clone();
                self.identity = identity.clone();
            }
            RunEvent::RunFinished {
                brokers,
                ended_unix,
                ..
            } => {
                self.brokers = brokers.clone();
                self.status = Status::Finished;
                self.ended_unix = Some(*ended_unix);
            }
            RunEvent::CaseFinished { verdict } => {
                self.results.insert(
                    verdict.case.clone(),
                    (Result::of(&verdict.outcome), verdict.duration.as_secs_f64()),
                );
                if let Outcome::Failed(f) = &verdict.outcome {
                    let at = f
                        .step
                        .as_ref()
                        .map(|s| {
                            format!(
                                "step {} ({})",
                                s.index,
                                s.name.as_deref().unwrap_or(&s.kind)
                            )
                        })
                        .unwrap_or_else(|| "the end".to_owned());
                    let actual = f.actual.lines().next().unwrap_or_default();
                    self.failed
                        .push((verdict.case.clone(), format!("fails at {at}: {actual}")));
                }
            }
            _ => {}
        }
    }
}

/// `summary.json`: every case's result and duration, and the score.
#[derive(Serialize)]
pub(crate) struct Summary<'a> {
    /// The tool and its version.
    tool: &'static str,
    /// Whether the run ended, and how.
    status: Status,
    /// When it ended, in seconds since the Unix epoch.
    ended_unix: Option<f64>,
    /// The checkout's commit, when, and the digests of suites and schemas.
    identity: &'a Identity,
    /// The systems under test (never their command or environment).
    suts: &'a [SutInfo],
    /// The brokers and how long each took to take a login.
    brokers: &'a [BrokerStart],
    /// Every case listed.
    cases: Vec<CaseSummary<'a>>,
    /// The score.
    score: &'a Score,
}

#[derive(Serialize)]
struct CaseSummary<'a> {
    case: &'a str,
    result: Result,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    known_deviation: Option<&'a str>,
    requirements: Vec<&'a str>,
}

impl ScoreReporter {
    /// Records that the run ended, now, and how (an interrupt, which no
    /// event reports).
    pub(crate) fn end(&mut self, status: Status) {
        self.status = status;
        self.ended_unix = Some(crate::event::unix_now());
    }

    /// Whether the run has ended, and how.
    pub(crate) fn status(&self) -> Status {
        self.status
    }

    fn scored(&self) -> Vec<Scored<'_>> {
        self.plan
            .iter()
            .map(|p| Scored {
                case: &p.case,
                requirements: p.requirements.iter().collect(),
                result: match (&p.ignored, self.results.get(&p.case)) {
                    (Some(_), _) => Result::Ignored,
                    (None, Some((r, _))) => *r,
                    (None, None) => Result::NotRun,
                },
            })
            .collect()
    }

    /// The score, once the run's plan is known.
    pub(crate) fn score(&self) -> Option<Score> {
        (!self.plan.is_empty()).then(|| {
            let mut score = Score::of(&self.scored());
            score.known_deviations = self.known_deviations();
            score
        })
    }

    /// The failed cases the baseline names.
    pub(crate) fn known_deviations(&self) -> usize {
        self.plan
            .iter()
            .filter(|p| p.known_deviation.is_some())
            .filter(|p| matches!(self.results.get(&p.case), Some((Result::Failed, _))))
            .count()
    }

    /// The cases the SUT failed, with what went wrong.
    pub(crate) fn failed(&self) -> &[(String, String)] {
        &self.failed
    }

    /// The summary of the run, with `score`.
    pub(crate) fn summary<'a>(&'a self, score: &'a Score) -> Summary<'a> {
        Summary {
            tool: concat!("dmconf ", env!("CARGO_PKG_VERSION")),
            status: self.status,
            ended_unix: self.ended_unix,
            identity: &self.identity,
            suts: &self.suts,
            brokers: &self.brokers,
            cases: self
                .plan
                .iter()
                .zip(self.scored())
                .map(|(p, s)| CaseSummary {
                    case: &p.case,
                    result: s.result,
                    duration: self.results.get(&p.case).map(|(_, d)| *d),
                    ignored: p.ignored.as_deref(),
                    known_deviation: p.known_deviation.as_deref(),
                    requirements: p.requirements.iter().map(|r| r.id.as_str()).collect(),
                })
                .collect(),
            score,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, level: Level, basis: Basis) -> Requirement {
        Requirement {
            id: id.into(),
            level,
            basis,
            source: "s".into(),
            section: "x".into(),
            text: "t".into(),
            inferred: false,
        }
    }

    #[test]
    fn a_case_counts_at_its_weakest_level_and_basis() {
        let must_seed = req("A", Level::Must, Basis::Seed);
        let should_conv = req("B", Level::Should, Basis::Convention);
        let cases = [
            Scored {
                case: "c1",
                requirements: vec![&must_seed],
                result: Result::Passed,
            },
            Scored {
                case: "c2",
                requirements: vec![&must_seed, &should_conv],
                result: Result::Failed,
            },
            Scored {
                case: "c3",
                requirements: vec![&should_conv],
                result: Result::Ignored,
            },
        ];
        let s = Score::of(&cases);
        assert_eq!(s.by_level[&Level::Must].passed, 1);
        assert_eq!(s.by_level[&Level::Should].failed, 1);
        assert_eq!(s.by_level[&Level::Should].not_applicable, 1);
        assert_eq!(s.by_basis[&Basis::Seed].passed, 1);
        assert_eq!(s.by_basis[&Basis::Convention].failed, 1);
        // A fails in c2, which checks it too: it does not hold.
        assert_eq!(s.requirements[0].holds, Some(false));
        assert_eq!(
            s.line(),
            "score: MUST 1/1, SHOULD 0/1; by basis: seed 1/1, convention 0/1; requirements held 0/2"
        );
    }

    #[test]
    fn a_requirement_none_of_whose_cases_ran_is_not_applicable() {
        let r = req("A", Level::Must, Basis::Vendor);
        let cases = [Scored {
            case: "c",
            requirements: vec![&r],
            result: Result::Ignored,
        }];
        let s = Score::of(&cases);
        assert_eq!(s.requirements[0].holds, None);
        assert!(
            s.line()
                .ends_with("requirements held 0/0 (1 not applicable)")
        );
    }

    #[test]
    fn the_summary_is_what_its_schema_says() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/report/summary.schema.json"
        );
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let mut r = ScoreReporter::default();
        let mut identity = Identity::default();
        identity
            .files
            .insert("suites/a.yaml".into(), "0".repeat(64));
        r.event(&RunEvent::RunStarted {
            tool: "dmconf".into(),
            suts: Vec::new(),
            suites: Vec::new(),
            cases: 2,
            identity,
            plan: vec![
                CasePlan {
                    case: "dmf::device::s::a".into(),
                    requirements: vec![req("R-1", Level::Must, Basis::Seed)],
                    ignored: None,
                    known_deviation: Some("known (T-1)".into()),
                },
                CasePlan {
                    case: "dmf::device::s::b".into(),
                    requirements: vec![req("R-2", Level::Should, Basis::Convention)],
                    ignored: Some("no hook".into()),
                    known_deviation: None,
                },
            ],
        });
        r.event(&RunEvent::RunFinished {
            passed: 0,
            failed: 0,
            errors: 0,
            ignored: 1,
            duration: std::time::Duration::from_secs(1),
            brokers: vec![BrokerStart {
                broker: "RabbitMQ".into(),
                ready_after: std::time::Duration::from_secs(9),
                image: Some("dmconf/rabbitmq:offline (sha256:00)".into()),
                version: Some("3.10.8-1.1+deb12u2".into()),
                reused: false,
                unobserved: vec!["the firehose shows no deliveries".into()],
            }],
            ended_unix: 1.0,
        });
        let score = r.score().unwrap();
        let json = serde_json::to_value(r.summary(&score)).unwrap();
        assert!(json["brokers"][0]["unobserved"][0].is_string(), "{json:#}");
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{json:#}");
    }
}
