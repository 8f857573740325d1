//! The text of a failed verdict, as the test runner shows it: the
//! requirement, the step and its place in the suite file, what was
//! expected, what arrived, and the case's transcript.

use std::fmt::Write;

use crate::event::Verdict;
use crate::suite::{Level, Suite};

/// Renders the failure of `verdict` for case `case_index` of `suite`.
pub fn failure(suite: &Suite, case_index: usize, verdict: &Verdict) -> String {
    let Some(f) = &verdict.failure else {
        return String::new();
    };
    let case = &suite.cases[case_index];
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", case.title, case.location);
    for id in &case.requirements {
        if let Some(r) = suite.requirements.iter().find(|r| &r.id == id) {
            let level = match r.level {
                Level::Must => "MUST",
                Level::Should => "SHOULD",
            };
            let _ = writeln!(
                out,
                "requirement {} [{level}] ({}, {}): {}",
                r.id, r.source, r.section, r.text
            );
        }
    }
    match &f.step {
        Some(s) => {
            let name = s
                .name
                .as_deref()
                .map(|n| format!(" `{n}`"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "failed at step {} ({}{name}) at {}",
                s.index, s.kind, s.location
            );
        }
        None => {
            let _ = writeln!(out, "failed after the last step");
        }
    }
    let _ = writeln!(out, "expected: {}", f.expected);
    let _ = writeln!(out, "actual:   {}", f.actual.trim_end());
    let _ = writeln!(
        out,
        "case ids: tenant={} thingId={}",
        verdict.tenant, verdict.thing_id
    );
    let _ = writeln!(out, "transcript:");
    let _ = write!(out, "{}", verdict.transcript);
    if !verdict.sut_output.is_empty() {
        let _ = writeln!(out, "SUT output:");
        for line in verdict.sut_output.lines() {
            let _ = writeln!(out, "  | {line}");
        }
    }
    out
}
