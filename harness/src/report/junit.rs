//! JUnit XML, as CI systems read it: a test suite per suite file, a test
//! case per case with its requirements as properties, the failure's text
//! and transcript in `system-out`, ignored cases as skipped with their
//! reason. Built from the run's events alone.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::score::Result;
use super::text::CaseText;
use crate::event::{CasePlan, RunEvent, Sink};

/// A case's end, kept for the report.
struct Ended {
    outcome: Result,
    duration: Duration,
    /// The failure's text with the transcript, for a case that did not pass.
    text: Option<String>,
}

/// Collects the run's verdicts for JUnit.
#[derive(Default)]
pub(crate) struct JunitReporter {
    plan: Vec<CasePlan>,
    running: HashMap<String, CaseText>,
    ended: HashMap<String, Ended>,
}

impl Sink for JunitReporter {
    fn event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { plan, .. } => self.plan = plan.clone(),
            RunEvent::CaseStarted { case, .. }
            | RunEvent::MessageSeen { case, .. }
            | RunEvent::StepFinished { case, .. } => {
                self.running.entry(case.clone()).or_default().event(event);
            }
            RunEvent::CaseFinished { verdict } => {
                let mut text = self.running.remove(&verdict.case).unwrap_or_default();
                text.event(event);
                self.ended.insert(
                    verdict.case.clone(),
                    Ended {
                        outcome: Result::of(&verdict.outcome),
                        duration: verdict.duration,
                        text: text.render(),
                    },
                );
            }
            RunEvent::RunFinished { .. } => {}
        }
    }
}

impl JunitReporter {
    /// The report, as XML; `None` before the run's plan is known.
    pub(crate) fn xml(&self) -> Option<String> {
        if self.plan.is_empty() {
            return None;
        }
        let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
        for p in &self.plan {
            let (suite, id) = p.case.rsplit_once("::").unwrap_or(("", &p.case));
            let known = p.known_deviation.as_deref();
            let status = match (&p.ignored, self.ended.get(&p.case)) {
                // Failed as the baseline says: the run is not failed for it.
                (None, Some(e)) if e.outcome == Result::Failed && known.is_some() => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("known deviation: {}", known.unwrap_or_default()));
                    s.set_description(e.text.clone().unwrap_or_default());
                    s
                }
                (Some(why), _) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(why.as_str());
                    s
                }
                (None, None) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message("not run by this invocation");
                    s
                }
                // A case that ran passed, failed or was not judged.
                (None, Some(e)) if e.outcome == Result::Passed => TestCaseStatus::success(),
                (None, Some(e)) => {
                    let kind = if e.outcome == Result::Failed {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    let text = e.text.as_deref().unwrap_or_default();
                    s.set_message(text.lines().nth(1).unwrap_or_default());
                    // What went wrong; the transcript goes to system-out.
                    let why = text.split_once("\ncase ids:").map_or(text, |(w, _)| w);
                    s.set_description(why);
                    s
                }
            };
            let mut case = TestCase::new(id, status);
            case.set_classname(suite);
            if let Some(e) = self.ended.get(&p.case) {
                case.set_time(e.duration);
                if let Some(text) = &e.text {
                    case.set_system_out(text.as_str());
                }
            }
            for r in &p.requirements {
                case.add_property(Property::new(
                    "requirement",
                    format!("{} [{}] {}", r.id, r.grade(), r.text),
                ));
            }
            suites
                .entry(suite)
                .or_insert_with(|| TestSuite::new(suite))
                .add_test_case(case);
        }
        let mut report = Report::new("dmconf");
        report.add_test_suites(suites.into_values());
        report.to_string().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Outcome, Verdict};
    use crate::suite::{Basis, Level, Requirement};

    fn plan(case: &str, ignored: Option<&str>) -> CasePlan {
        CasePlan {
            case: case.into(),
            requirements: vec![Requirement {
                id: "R-1".into(),
                level: Level::Must,
                basis: Basis::Seed,
                source: "s".into(),
                section: "x".into(),
                text: "a thing holds".into(),
                inferred: false,
            }],
            ignored: ignored.map(str::to_owned),
            known_deviation: None,
        }
    }

    #[test]
    fn cases_become_test_cases_with_their_requirements() {
        let mut r = JunitReporter::default();
        r.event(&RunEvent::RunStarted {
            tool: "t".into(),
            suts: Vec::new(),
            suites: Vec::new(),
            cases: 2,
            identity: crate::event::Identity::default(),
            plan: vec![
                plan("dmf::device::s::a", None),
                plan("dmf::device::s::b", Some("no hook")),
            ],
        });
        r.event(&RunEvent::CaseFinished {
            verdict: Box::new(Verdict {
                duration: Duration::from_millis(5),
                ..Verdict::new(
                    "dmf::device::s::a".into(),
                    Outcome::Error {
                        error: "broker gone".into(),
                    },
                )
            }),
        });
        let xml = r.xml().expect("a report");
        assert!(
            xml.contains(r#"<testsuite name="dmf::device::s" tests="2""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="a" classname="dmf::device::s""#),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<property name="requirement" value="R-1 [MUST, seed] a thing holds"/>"#
            ),
            "{xml}"
        );
        assert!(xml.contains("broker gone"), "{xml}");
        assert!(xml.contains(r#"<skipped message="no hook"/>"#), "{xml}");
    }
}
