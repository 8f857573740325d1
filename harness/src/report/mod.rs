//! Reporters: they consume run events and verdicts, and format them. The
//! text of a failure goes to the test runner; the JSON Lines file is the
//! run's evidence.

pub mod json;
pub mod text;
