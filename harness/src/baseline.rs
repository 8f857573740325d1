//! Known deviations: a file that names the cases a SUT is known to fail,
//! each with a reason and optionally a ticket, so that a nightly run stays
//! green while they are being fixed and still fails on anything new. A
//! case in it that fails is a known deviation; one that passes fails the
//! run until it is taken out (a ratchet); a failure not in it fails the
//! run as always. A run can write the file from its own failures.
//!
//! ```toml
//! [[deviation]]
//! case = "dmf::server::limits::name-length"
//! reason = "names over 128 characters are truncated, not refused"
//! ticket = "FW-1234"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Names the baseline file in the environment.
pub const ENV: &str = "DMCONF_BASELINE";
/// Where a run writes a baseline of its failures.
pub const WRITE_ENV: &str = "DMCONF_WRITE_BASELINE";

/// One known deviation.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// The case, `protocol::role::suite::case`.
    pub case: String,
    /// Why it fails, in the lab's words.
    pub reason: String,
    /// Where the fix is tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

impl Deviation {
    /// The reason with its ticket, for reports.
    pub fn said(&self) -> String {
        match &self.ticket {
            Some(t) => format!("{} ({t})", self.reason),
            None => self.reason.clone(),
        }
    }
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    deviation: Vec<Deviation>,
}

/// The known deviations of a run, by case.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    by_case: BTreeMap<String, Deviation>,
}

impl Baseline {
    /// Reads the TOML text of a baseline; an error says where and what.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut by_case = BTreeMap::new();
        for d in file.deviation {
            if d.reason.trim().is_empty() {
                return Err(format!("case `{}`: give a reason", d.case));
            }
            if by_case.insert(d.case.clone(), d.clone()).is_some() {
                return Err(format!("case `{}` is named twice", d.case));
            }
        }
        Ok(Baseline { by_case })
    }

    /// Reads the baseline file at `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The known deviation of `case`, if it has one.
    pub fn get(&self, case: &str) -> Option<&Deviation> {
        self.by_case.get(case)
    }

    /// The cases it names that are not among `known` (renamed or gone).
    pub fn unknown<'a>(&'a self, known: &[&str]) -> Vec<&'a str> {
        self.by_case
            .keys()
            .map(String::as_str)
            .filter(|c| !known.contains(c))
            .collect()
    }

    /// A baseline text of `failed` cases, each with the first line of
    /// what went wrong as its reason, for the lab to edit.
    pub fn write(failed: &[(String, String)]) -> String {
        let file = File {
            deviation: failed
                .iter()
                .map(|(case, why)| Deviation {
                    case: case.clone(),
                    reason: why.clone(),
                    ticket: None,
                })
                .collect(),
        };
        toml::to_string(&file).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_names_cases_with_reasons() {
        let b = Baseline::parse(
            r#"
[[deviation]]
case = "dmf::server::limits::name-length"
reason = "truncates"
ticket = "FW-1"
"#,
        )
        .unwrap();
        let d = b.get("dmf::server::limits::name-length").unwrap();
        assert_eq!(d.said(), "truncates (FW-1)");
        assert_eq!(b.unknown(&["x"]), ["dmf::server::limits::name-length"]);
    }

    #[test]
    fn a_deviation_without_a_reason_or_named_twice_is_refused() {
        let e = Baseline::parse("[[deviation]]\ncase = \"a\"\nreason = \" \"\n").unwrap_err();
        assert!(e.contains("give a reason"), "{e}");
        let twice = "[[deviation]]\ncase = \"a\"\nreason = \"r\"\n".repeat(2);
        assert!(Baseline::parse(&twice).unwrap_err().contains("named twice"));
        let e = Baseline::parse("[[deviation]]\ncase = \"a\"\nwhy = \"r\"\n").unwrap_err();
        assert!(e.contains("unknown field `why`"), "{e}");
    }

    #[test]
    fn what_a_run_writes_reads_back() {
        let text = Baseline::write(&[("a::b::c::d".into(), "it failed".into())]);
        let b = Baseline::parse(&text).unwrap();
        assert_eq!(b.get("a::b::c::d").unwrap().reason, "it failed");
    }
}
