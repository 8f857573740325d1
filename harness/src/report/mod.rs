//! Reporters: each builds its output from the run's events alone
//! ([`crate::event`]). [`text`] renders a failed case for the test
//! runner; [`json`] writes every event to the run's evidence file.
//! [`Fanout`] hands each event to every reporter of a case.

pub(crate) mod json;
pub(crate) mod text;

use crate::event::{RunEvent, Sink};

/// Passes each event to the run's evidence file and to the case's text.
pub(crate) struct Fanout<'a> {
    /// The evidence file, if one is written.
    pub json: Option<&'a json::JsonLines>,
    /// The case's text.
    pub text: &'a mut text::CaseText,
}

impl Sink for Fanout<'_> {
    fn event(&mut self, event: &RunEvent) {
        if let Some(j) = self.json {
            j.event(event);
        }
        self.text.event(event);
    }
}
