//! Reporters: each builds its output from the run's events alone
//! ([`crate::event`]). [`text`] renders a failed case for the test
//! runner; [`json`] writes every event to the run's evidence file;
//! [`score`] counts the verdicts by level and basis; [`junit`] writes
//! them as CI systems read them; [`html`] draws them for a person;
//! [`merge`] reads evidence files back and replays them as one run.
//! [`Fanout`] hands each event to every reporter of a case.

pub(crate) mod html;
pub(crate) mod json;
pub(crate) mod junit;
pub(crate) mod merge;
pub(crate) mod score;
pub(crate) mod text;

use crate::event::{RunEvent, Sink, Verdict};
use crate::message::Entry;

/// Transcript entries a report shows at each end of a long transcript;
/// the evidence file has them all.
pub(crate) const SHOWN_AT_EACH_END: usize = 100;

/// What a report shows at entry `i` of a transcript of `n`.
pub(crate) enum Shown {
    /// The entry.
    Entry,
    /// In its place, that this many entries are left out.
    LeftOut(usize),
    /// Nothing: it is among those left out.
    Hidden,
}

/// What a report shows at entry `i` of a transcript of `n`.
pub(crate) fn shown(i: usize, n: usize) -> Shown {
    if n <= 2 * SHOWN_AT_EACH_END || !(SHOWN_AT_EACH_END..n - SHOWN_AT_EACH_END).contains(&i) {
        Shown::Entry
    } else if i == SHOWN_AT_EACH_END {
        Shown::LeftOut(n - 2 * SHOWN_AT_EACH_END)
    } else {
        Shown::Hidden
    }
}

/// What became of transcript entry `e` of the case `v`: the message it
/// answers, the step that took it, or that it is the SUT's own.
pub(crate) fn fate(v: &Verdict, e: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(a) = e.answers {
        out.push(format!("answers #{a}"));
    }
    if let Some((_, step)) = v.taken.iter().find(|(entry, _)| *entry == e.index) {
        out.push(format!("taken by step {step}"));
    }
    if v.own.contains(&e.index) {
        out.push("the SUT's own".to_owned());
    }
    out
}

/// Passes each event to the run's evidence file and to the case's text.
pub(crate) struct Fanout<'a> {
    /// The evidence file, if one is written.
    pub json: Option<&'a json::JsonLines>,
    /// The case's text.
    pub text: &'a mut text::CaseText,
    /// The run's reports.
    pub run: &'a std::sync::Mutex<RunReports>,
}

/// The reports of the whole run, built as its cases end.
#[derive(Default)]
pub(crate) struct RunReports {
    /// The score and `summary.json`.
    pub(crate) score: score::ScoreReporter,
    /// JUnit XML.
    pub(crate) junit: junit::JunitReporter,
    /// The HTML report.
    pub(crate) html: html::HtmlReporter,
}

impl RunReports {
    /// Writes `summary.json`, `junit.xml` and `report.html` to the bundle
    /// folder `dir`, as far as the run has gone; returns the files
    /// written.
    pub(crate) fn write(&self, dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let Some(score) = self.score.score() else {
            return Vec::new();
        };
        let status = self.score.status();
        let summary = serde_json::to_vec_pretty(&self.score.summary(&score)).ok();
        let junit = self.junit.xml().map(String::into_bytes);
        let html = self.html.page(&score, status).map(String::into_bytes);
        // summary.json last: once it is there, the bundle is whole.
        [
            ("junit.xml", junit),
            ("report.html", html),
            ("summary.json", summary),
        ]
        .into_iter()
        .filter_map(|(name, bytes)| {
            // Written aside and renamed: a reader never sees half a file.
            let path = dir.join(name);
            let part = dir.join(format!(".{name}.part"));
            std::fs::write(&part, bytes?).ok()?;
            std::fs::rename(&part, &path).ok().map(|_| path)
        })
        .collect()
    }
}

impl Sink for RunReports {
    fn event(&mut self, event: &RunEvent) {
        self.score.event(event);
        self.junit.event(event);
        self.html.event(event);
    }
}

impl Sink for Fanout<'_> {
    fn event(&mut self, event: &RunEvent) {
        if let Some(j) = self.json {
            j.event(event);
        }
        self.text.event(event);
        self.run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .event(event);
    }
}
