//! Errors in suite files, each with file, line and column, rendered in one
//! place.

use std::fmt;

use super::ast::Location;

/// One problem in a suite file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteError {
    /// Where the problem is.
    pub location: Location,
    /// The YAML path of the offending node (`/cases/0/steps/2`), if known.
    pub path: String,
    /// What was expected.
    pub message: String,
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: error: {}", self.location, self.message)?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        Ok(())
    }
}

/// Every problem found in one or more suite files.
#[derive(Clone, Debug, Default)]
pub struct SuiteErrors(pub Vec<SuiteError>);

impl SuiteErrors {
    /// Renders every error with a snippet of the line it points at.
    pub fn render(&self, source: impl Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for e in &self.0 {
            out.push_str(&e.to_string());
            out.push('\n');
            if let Some(text) = source(&e.location.file)
                && let Some(line) = text.lines().nth(e.location.line.saturating_sub(1) as usize)
            {
                let n = e.location.line.to_string();
                let pad = " ".repeat(n.len());
                out.push_str(&format!("{pad} |\n{n} | {line}\n{pad} | "));
                out.push_str(&" ".repeat(e.location.column.saturating_sub(1) as usize));
                out.push_str("^\n");
            }
        }
        out
    }
}

impl fmt::Display for SuiteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}
