//! Reporters: each builds its output from the run's events alone
//! ([`crate::event`]). [`text`] renders a failed case for the test
//! runner; [`json`] writes every event to the run's evidence file;
//! [`score`] counts the verdicts by level and basis; [`junit`] writes
//! them as CI systems read them; [`html`] draws them for a person.
//! [`Fanout`] hands each event to every reporter of a case.

pub(crate) mod html;
pub(crate) mod json;
pub(crate) mod junit;
pub(crate) mod score;
pub(crate) mod text;

use crate::event::{RunEvent, Sink};

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
