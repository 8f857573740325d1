//! Expands suites into the flat, sorted list of named cases, and decides,
//! while listing, which ones the profile's SUT cannot run. No I/O.

use std::sync::Arc;

use crate::profile::Profile;
use crate::suite::{Action, Suite};

/// One case as the test runner lists it.
#[derive(Clone, Debug)]
pub struct Planned {
    /// `protocol::role::suite::case`.
    pub name: String,
    /// Its suite.
    pub suite: Arc<Suite>,
    /// Index of the case in the suite.
    pub case: usize,
    /// Why it is not run, if it is not.
    pub ignored: Option<String>,
}

/// The test name of a case.
pub fn case_name(suite: &Suite, case_id: &str) -> String {
    format!(
        "{}::{}::{}::{}",
        suite.protocol,
        suite.role.as_str(),
        suite.id,
        case_id
    )
}

/// Lists every case of `suites`, sorted by name, each ignored with a
/// reason when the profile does not allow it to run.
pub fn plan(suites: &[Arc<Suite>], profile: &Profile) -> Vec<Planned> {
    let mut out = Vec::new();
    for suite in suites {
        for (i, case) in suite.cases.iter().enumerate() {
            // A suite of another protocol or role says only that: what
            // else it would need is beside the point.
            if suite.protocol != profile.protocol || suite.role != profile.role {
                out.push(Planned {
                    name: case_name(suite, &case.id),
                    suite: suite.clone(),
                    case: i,
                    ignored: Some(format!(
                        "it tests the {} side of {}; the SUT plays the {} side of {}",
                        suite.role.as_str(),
                        suite.protocol,
                        profile.role.as_str(),
                        profile.protocol
                    )),
                });
                continue;
            }
            let mut reasons = Vec::new();
            let missing: Vec<&str> = suite
                .capabilities
                .iter()
                .chain(case.capabilities.iter())
                .filter(|c| !profile.capabilities.contains(c))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                reasons.push(format!(
                    "the profile does not declare {}",
                    missing.join(", ")
                ));
            }
            let steps = || suite.setup.iter().chain(case.steps.iter());
            let mut hooks: Vec<&str> = steps()
                .filter_map(|s| match &s.action {
                    Action::Trigger(t) => Some(t.hook.as_str()),
                    Action::Query(q) => Some(q.hook.as_str()),
                    _ => None,
                })
                .filter(|h| !profile.offers(h))
                .collect();
            hooks.dedup();
            if !hooks.is_empty() {
                reasons.push(format!(
                    "the profile offers no {} (a command hook, or `[sut.mgmt]` for hawkBit's Management API)",
                    hooks.join(", ")
                ));
            }
            let judges_refusals = steps().any(|s| {
                matches!(
                    s.action,
                    Action::ExpectRefused(_) | Action::ExpectAccepted(_)
                )
            });
            if judges_refusals && profile.dmf.dead_letter_exchange.is_none() {
                reasons.push(
                    "it judges refusals, and the profile declares that the server's cannot be observed"
                        .to_owned(),
                );
            }
            reasons.extend(profile.select.leaves_out(suite, case));
            out.push(Planned {
                name: case_name(suite, &case.id),
                suite: suite.clone(),
                case: i,
                ignored: (!reasons.is_empty()).then(|| reasons.join("; ")),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
