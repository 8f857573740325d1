//! Which cases a run takes, by what they check: requirement ids, the
//! level (only MUST, as h2spec runs without `--strict`), and the basis
//! ("the documents only" leaves out what rests on hawkBit's code or on a
//! convention), and the capabilities they need. A case is judged by the weakest of its requirements: one
//! that checks a MUST and a SHOULD is a SHOULD case, one that rests on a
//! seed and on a convention is a convention case. Cases left out are
//! listed as ignored, with the reason.

use crate::suite::{Basis, Case, Level, Suite};

/// Names the selection's settings in the environment.
pub const REQUIREMENTS_ENV: &str = "DMCONF_REQUIREMENTS";
/// `must` or `should`.
pub const LEVEL_ENV: &str = "DMCONF_LEVEL";
/// A comma-separated list of bases, or `documents`.
pub const BASIS_ENV: &str = "DMCONF_BASIS";
/// A comma-separated list of capabilities.
pub const CAPABILITIES_ENV: &str = "DMCONF_CAPABILITIES";

/// What a run takes; the default takes every case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only cases that check one of these requirements (none: all).
    pub requirements: Vec<String>,
    /// Only cases whose requirements are all at least this level.
    pub level: Option<Level>,
    /// Only cases whose requirements all rest on one of these (none: all).
    pub bases: Vec<Basis>,
    /// Only cases that need one of these capabilities, by their suite or
    /// by themselves (none: all); the SUT must still declare them.
    pub capabilities: Vec<String>,
}

impl Selection {
    /// Reads the three settings as a profile's `[select]` or the
    /// environment gives them: `requirements` ids, `level` (`must` or
    /// `should`), `basis` names or `documents` (seed and vendor).
    pub fn parse(
        requirements: &[String],
        level: Option<&str>,
        basis: &[String],
    ) -> Result<Self, String> {
        let level = match level.map(str::to_ascii_lowercase).as_deref() {
            None | Some("should") => None,
            Some("must") => Some(Level::Must),
            Some(other) => {
                return Err(format!(
                    "level `{other}`: expected `must` (MUST cases only) or `should` (every case)"
                ));
            }
        };
        let mut bases = Vec::new();
        for b in basis {
            match b.trim() {
                "documents" => bases.extend([Basis::Seed, Basis::Vendor]),
                name => bases.push(
                    Basis::ALL
                        .into_iter()
                        .find(|x| x.as_str() == name)
                        .ok_or_else(|| {
                            format!(
                                "basis `{name}`: expected seed, vendor, implementation, convention or documents"
                            )
                        })?,
                ),
            }
        }
        bases.sort();
        bases.dedup();
        Ok(Selection {
            requirements: requirements.to_vec(),
            level,
            bases,
            capabilities: Vec::new(),
        })
    }

    /// This selection with what the environment sets in its place; an
    /// error names the variable.
    pub fn with_env(self) -> Result<Self, String> {
        let list = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
        };
        let mut out = self;
        if let Some(ids) = list(REQUIREMENTS_ENV) {
            out.requirements = ids;
        }
        if let Ok(level) = std::env::var(LEVEL_ENV) {
            out.level = Selection::parse(&[], Some(&level), &[])
                .map_err(|e| format!("{LEVEL_ENV}: {e}"))?
                .level;
        }
        if let Some(bases) = list(BASIS_ENV) {
            out.bases = Selection::parse(&[], None, &bases)
                .map_err(|e| format!("{BASIS_ENV}: {e}"))?
                .bases;
        }
        if let Some(capabilities) = list(CAPABILITIES_ENV) {
            out.capabilities = capabilities;
        }
        Ok(out)
    }

    /// Why `case` of `suite` is left out, if it is.
    pub fn leaves_out(&self, suite: &Suite, case: &Case) -> Option<String> {
        let reqs: Vec<_> = case
            .requirements
            .iter()
            .filter_map(|id| suite.requirements.iter().find(|r| &r.id == id))
            .collect();
        if !self.requirements.is_empty() && !reqs.iter().any(|r| self.requirements.contains(&r.id))
        {
            return Some(format!(
                "left out by the selection: it checks none of {}",
                self.requirements.join(", ")
            ));
        }
        if !self.capabilities.is_empty()
            && !suite
                .capabilities
                .iter()
                .chain(&case.capabilities)
                .any(|c| self.capabilities.contains(c))
        {
            return Some(format!(
                "left out by the selection: it needs none of {}",
                self.capabilities.join(", ")
            ));
        }
        if let Some(level) = self.level
            && let Some(r) = reqs.iter().find(|r| r.level > level)
        {
            return Some(format!(
                "left out by the selection (level {}): it checks {} [{}]",
                level.as_str(),
                r.id,
                r.level.as_str()
            ));
        }
        if !self.bases.is_empty()
            && let Some(r) = reqs.iter().find(|r| !self.bases.contains(&r.basis))
        {
            let names: Vec<&str> = self.bases.iter().map(|b| b.as_str()).collect();
            return Some(format!(
                "left out by the selection (basis {}): {} rests on {}",
                names.join(", "),
                r.id,
                r.basis.as_str()
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite() -> Suite {
        let text = r#"
id: s
title: S
protocol: dmf
role: device
requirements:
  - {id: R-SEED, level: MUST, basis: seed, source: x, section: y, text: z}
  - {id: R-CONV, level: MUST, basis: convention, source: x, section: y, text: z}
  - {id: R-SHOULD, level: SHOULD, basis: vendor, source: x, section: y, text: z}
cases:
  - {id: a, title: A, requirements: [R-SEED], steps: [{wait: {for: 1s}}]}
  - {id: b, title: B, requirements: [R-SEED, R-CONV], steps: [{wait: {for: 1s}}]}
  - {id: c, title: C, requirements: [R-SHOULD], steps: [{wait: {for: 1s}}]}
"#;
        serde_saphyr::from_str(text).expect("a suite")
    }

    fn kept(sel: &Selection) -> Vec<String> {
        let s = suite();
        s.cases
            .iter()
            .filter(|c| sel.leaves_out(&s, c).is_none())
            .map(|c| c.id.clone())
            .collect()
    }

    #[test]
    fn the_default_takes_every_case() {
        assert_eq!(kept(&Selection::default()), ["a", "b", "c"]);
    }

    #[test]
    fn must_leaves_out_a_case_with_a_should() {
        let sel = Selection::parse(&[], Some("must"), &[]).unwrap();
        assert_eq!(kept(&sel), ["a", "b"]);
    }

    #[test]
    fn documents_leave_out_a_case_that_rests_on_a_convention_anywhere() {
        let sel = Selection::parse(&[], None, &["documents".into()]).unwrap();
        assert_eq!(kept(&sel), ["a", "c"]);
    }

    #[test]
    fn requirement_ids_take_the_cases_that_check_them() {
        let sel = Selection::parse(&["R-CONV".into()], None, &[]).unwrap();
        assert_eq!(kept(&sel), ["b"]);
    }

    #[test]
    fn capabilities_take_the_cases_that_need_one_of_them() {
        let mut s = suite();
        s.cases[1].capabilities = vec!["dmf.download".into()];
        let sel = Selection {
            capabilities: vec!["dmf.download".into()],
            ..Selection::default()
        };
        let kept: Vec<&str> = s
            .cases
            .iter()
            .filter(|c| sel.leaves_out(&s, c).is_none())
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(kept, ["b"]);
    }

    #[test]
    fn unknown_names_are_refused_with_what_is_expected() {
        let e = Selection::parse(&[], Some("may"), &[]).unwrap_err();
        assert!(e.contains("expected `must`"), "{e}");
        let e = Selection::parse(&[], None, &["folklore".into()]).unwrap_err();
        assert!(e.contains("expected seed, vendor"), "{e}");
    }
}
