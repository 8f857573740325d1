//! The text of a case that did not pass, as the test runner shows it,
//! built from the case's events: the requirement, the step and its place
//! in the suite file, what was expected, what arrived and why it did not
//! match, and the transcript, each message labelled by what became of it.

use std::fmt::Write;

use super::{Shown, fate, shown};
use crate::event::{Failure, Outcome, RunEvent, Verdict};
use crate::message::{Direction, Entry};

/// Collects one case's events and renders its verdict.
#[derive(Default)]
pub(crate) struct CaseText {
    title: String,
    location: String,
    entries: Vec<Entry>,
    verdict: Option<Verdict>,
}

impl CaseText {
    /// Takes one event of the case.
    pub(crate) fn event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::CaseStarted {
                title, location, ..
            } => {
                self.title = title.clone();
                self.location = location.clone();
            }
            RunEvent::MessageSeen { entry, .. } => self.entries.push(entry.clone()),
            RunEvent::CaseFinished { verdict } => self.verdict = Some((**verdict).clone()),
            RunEvent::RunStarted { .. }
            | RunEvent::StepFinished { .. }
            | RunEvent::RunFinished { .. } => {}
        }
    }

    /// The text of a case that failed or could not be judged; `None`
    /// when it passed or has not finished.
    pub(crate) fn render(&self) -> Option<String> {
        let v = self.verdict.as_ref()?;
        let mut out = String::new();
        let _ = writeln!(out, "{} ({})", self.title, self.location);
        match &v.outcome {
            Outcome::Passed => return None,
            Outcome::Failed(f) => failure(&mut out, f),
            Outcome::Error { error } => {
                let _ = writeln!(
                    out,
                    "error: the harness could not judge this case (not a failure of the SUT): {error}"
                );
            }
        }
        let _ = writeln!(out, "case ids: tenant={} thingId={}", v.tenant, v.thing_id);
        let _ = writeln!(out, "transcript:");
        self.transcript(&mut out, v);
        if !v.sut_output.is_empty() {
            let _ = writeln!(out, "SUT output:");
            for line in v.sut_output.lines() {
                let _ = writeln!(out, "  | {line}");
            }
        }
        Some(out)
    }

    fn transcript(&self, out: &mut String, v: &Verdict) {
        if self.entries.is_empty() {
            let _ = writeln!(out, "  (no messages)");
            return;
        }
        let n = self.entries.len();
        for (i, e) in self.entries.iter().enumerate() {
            match shown(i, n) {
                Shown::Entry => {}
                Shown::LeftOut(k) => {
                    let _ = writeln!(
                        out,
                        "  ... {k} entries not shown; the evidence file has them all"
                    );
                    continue;
                }
                Shown::Hidden => continue,
            }
            let arrow = match e.direction {
                Direction::ToSut => "harness -> SUT",
                Direction::FromSut => "SUT -> harness",
                Direction::Refused => "refused by SUT",
            };
            let label: String = fate(v, e).iter().map(|f| format!("  ({f})")).collect();
            let _ = writeln!(
                out,
                "  #{:<3} +{:>8.3}s  {arrow}{label}",
                e.index,
                e.at.as_secs_f64()
            );
            out.push_str(&e.message.render("        "));
        }
    }
}

fn failure(out: &mut String, f: &Failure) {
    for r in &f.requirements {
        let _ = writeln!(
            out,
            "requirement {} [{}] ({}, {}): {}",
            r.id,
            r.grade(),
            r.source,
            r.section,
            r.text
        );
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
    for o in &f.observed {
        let _ = writeln!(out, "  #{}:", o.entry);
        out.push_str(&o.message.render("    "));
        for m in &o.mismatches {
            let _ = writeln!(out, "      ✗ {m}");
        }
    }
    for note in &f.notes {
        let _ = writeln!(out, "note: {}", note.trim_end());
    }
}
