//! `parse(text, origin)`: suite text in, a typed [`Suite`] or every problem
//! out. No file system, no network: the caller reads the file and passes
//! the schema store and a way to read fixtures. A suite is checked whole
//! when it loads, so that a run never stops on a broken suite halfway:
//! references between its parts, regular expressions, schema and check
//! names, fixtures, sizes, and steps that do not fit its protocol.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use super::ast::{
    Action, ExpectAccepted, ExpectRefused, Location, Pattern, Role, Step, Suite, parse_duration,
};
use super::error::{SuiteError, SuiteErrors};
use crate::schema::SchemaStore;
use dmconf_yaml::{self as tree, Tree};

/// The most bytes a suite may ask `fill` to make: four times IoT Hub's
/// largest message, so that a limit can be probed from above.
pub(crate) const MAX_FILL: u64 = 1 << 20;

/// What the parser needs to know about the world.
pub struct Context<'a> {
    /// Compiled schemas; `suite` validates the file itself.
    pub schemas: &'a SchemaStore,
    /// Reads a fixture by its name under `fixtures/`.
    pub fixture: &'a dyn Fn(&str) -> Result<String, String>,
}

/// Parses one suite file.
pub fn parse(text: &str, origin: &str, cx: &Context<'_>) -> Result<Suite, SuiteErrors> {
    let tree = tree::read(text).map_err(|e| {
        SuiteErrors(vec![SuiteError {
            location: Location {
                file: origin.to_owned(),
                line: e.line,
                column: e.column,
            },
            path: String::new(),
            message: format!("invalid YAML: {}", e.message),
        }])
    })?;
    let at_node = |(line, column): (u32, u32), pointer: &str, message: String| SuiteError {
        location: Location {
            file: origin.to_owned(),
            line,
            column,
        },
        path: pointer.to_owned(),
        message,
    };
    let at = |pointer: &str, message: String| at_node(tree.position(pointer), pointer, message);

    if let Err(violations) = cx.schemas.validate("suite", &tree.value) {
        let errors = violations
            .into_iter()
            .map(|v| match unexpected_key(&v.message) {
                Some(k) => {
                    let pointer = format!("{}/{k}", v.pointer);
                    at_node(tree.key_position(&pointer), &pointer, v.message)
                }
                None => at(&v.pointer, v.message),
            })
            .collect();
        return Err(SuiteErrors(errors));
    }
    let mut errors = step_shapes(&tree, &at);
    if !errors.is_empty() {
        return Err(SuiteErrors(errors));
    }
    let mut suite = Suite::deserialize(&tree.value)
        .map_err(|e| SuiteErrors(vec![at("", format!("does not fit the suite format: {e}"))]))?;
    suite.origin = origin.to_owned();
    locate(&mut suite, &tree, origin);
    errors.extend(meaning(&suite, cx, &at));
    errors.extend(fixtures(&mut suite, cx, &at));
    if errors.is_empty() {
        Ok(suite)
    } else {
        Err(SuiteErrors(errors))
    }
}

fn unexpected_key(message: &str) -> Option<String> {
    let start = message.find("('")? + 2;
    let rest = &message[start..];
    let end = rest.find("' was unexpected")?;
    Some(rest[..end].to_owned())
}

/// Every step names exactly one action, and every window it gives is a
/// duration in range.
fn step_shapes(tree: &Tree, at: &impl Fn(&str, String) -> SuiteError) -> Vec<SuiteError> {
    let mut errors = Vec::new();
    let mut lists: Vec<(String, &Value)> = vec![("/setup".into(), &tree.value["setup"])];
    if let Some(cases) = tree.value["cases"].as_array() {
        for (i, case) in cases.iter().enumerate() {
            lists.push((format!("/cases/{i}/steps"), &case["steps"]));
        }
    }
    for (base, steps) in lists {
        for (j, step) in steps.as_array().into_iter().flatten().enumerate() {
            let kinds: Vec<&str> = Action::KINDS
                .iter()
                .copied()
                .filter(|k| step.get(*k).is_some())
                .collect();
            if kinds.len() != 1 {
                let found = if kinds.is_empty() {
                    "none".to_owned()
                } else {
                    kinds.join(", ")
                };
                errors.push(at(
                    &format!("{base}/{j}"),
                    format!(
                        "a step needs exactly one of {}; found {found}",
                        Action::KINDS.join(", ")
                    ),
                ));
            }
            for kind in kinds {
                for key in ["within", "during", "for"] {
                    if let Some(Value::String(d)) = step[kind].get(key)
                        && let Err(e) = parse_duration(d)
                    {
                        errors.push(at(&format!("{base}/{j}/{kind}/{key}"), e));
                    }
                }
            }
        }
    }
    errors
}

fn locate(suite: &mut Suite, tree: &Tree, origin: &str) {
    let loc = |pointer: &str| {
        let (line, column) = tree.position(pointer);
        Location {
            file: origin.to_owned(),
            line,
            column,
        }
    };
    for (j, step) in suite.setup.iter_mut().enumerate() {
        step.location = loc(&format!("/setup/{j}"));
    }
    for (i, case) in suite.cases.iter_mut().enumerate() {
        case.location = loc(&format!("/cases/{i}"));
        for (j, step) in case.steps.iter_mut().enumerate() {
            step.location = loc(&format!("/cases/{i}/steps/{j}"));
        }
    }
}

/// Checks that need more than the schema: references between parts of the
/// file, regular expressions, schema and check names.
fn meaning(
    suite: &Suite,
    cx: &Context<'_>,
    at: &impl Fn(&str, String) -> SuiteError,
) -> Vec<SuiteError> {
    let mut errors = Vec::new();
    let mut ids = HashSet::new();
    for (i, r) in suite.requirements.iter().enumerate() {
        if !ids.insert(r.id.as_str()) {
            errors.push(at(
                &format!("/requirements/{i}/id"),
                format!("requirement `{}` is defined twice", r.id),
            ));
        }
    }
    for (i, p) in suite.allow.iter().enumerate() {
        pattern(p, &format!("/allow/{i}"), cx, at, &mut errors);
    }
    let setup_names = steps(suite, &suite.setup, "/setup", &[], cx, at, &mut errors);
    let mut case_ids = HashSet::new();
    for (i, case) in suite.cases.iter().enumerate() {
        if !case_ids.insert(case.id.as_str()) {
            errors.push(at(
                &format!("/cases/{i}/id"),
                format!("case `{}` is defined twice in this suite", case.id),
            ));
        }
        for (k, r) in case.requirements.iter().enumerate() {
            if !ids.contains(r.as_str()) {
                errors.push(at(
                    &format!("/cases/{i}/requirements/{k}"),
                    format!("requirement `{r}` is not listed under `requirements` of this suite"),
                ));
            }
        }
        steps(
            suite,
            &case.steps,
            &format!("/cases/{i}/steps"),
            &setup_names,
            cx,
            at,
            &mut errors,
        );
    }
    errors
}

/// Checks a list of steps; returns the step names it defines, with whether
/// each is a `send`.
fn steps(
    suite: &Suite,
    list: &[Step],
    base: &str,
    inherited: &[(String, bool)],
    cx: &Context<'_>,
    at: &impl Fn(&str, String) -> SuiteError,
    errors: &mut Vec<SuiteError>,
) -> Vec<(String, bool)> {
    let mut names: Vec<(String, bool)> = inherited.to_vec();
    for (j, step) in list.iter().enumerate() {
        let here = format!("{base}/{j}");
        let known = |n: &str| names.iter().any(|(m, _)| m == n);
        let mut after = |a: &Option<String>, kind: &str| {
            if let Some(a) = a
                && !known(a)
            {
                errors.push(at(
                    &format!("{here}/{kind}/after"),
                    format!("`after: {a}` names no earlier step; give that step `name: {a}`"),
                ));
            }
        };
        match &step.action {
            Action::Resend(target) => {
                if !names.iter().any(|(m, is_send)| m == target && *is_send) {
                    errors.push(at(
                        &format!("{here}/resend"),
                        format!("`resend: {target}` names no earlier `send` step"),
                    ));
                }
            }
            Action::Expect(e) => {
                after(&e.after, "expect");
                pattern(
                    &e.message,
                    &format!("{here}/expect/message"),
                    cx,
                    at,
                    errors,
                );
            }
            Action::ExpectNone(e) => {
                after(&e.after, "expect_none");
                pattern(
                    &e.message,
                    &format!("{here}/expect_none/message"),
                    cx,
                    at,
                    errors,
                );
            }
            Action::Collect(c) => {
                after(&c.after, "collect");
                pattern(
                    &c.message,
                    &format!("{here}/collect/message"),
                    cx,
                    at,
                    errors,
                );
                pattern(&c.until, &format!("{here}/collect/until"), cx, at, errors);
            }
            Action::Check(c) => {
                let known = suite.protocol.checks();
                if !known.contains(&c.name.as_str()) {
                    let known = if known.is_empty() {
                        "it has none".to_owned()
                    } else {
                        format!("known checks: {}", known.join(", "))
                    };
                    errors.push(at(
                        &format!("{here}/check/name"),
                        format!(
                            "unknown check `{}` for protocol {}; {known}",
                            c.name, suite.protocol
                        ),
                    ));
                }
            }
            Action::Send(s) => {
                let bodies = [
                    s.body.is_some(),
                    s.body_text.is_some(),
                    s.body_fixture.is_some(),
                ];
                if bodies.iter().filter(|b| **b).count() > 1 {
                    errors.push(at(
                        &format!("{here}/send"),
                        "give at most one of body, body_text and body_fixture".to_owned(),
                    ));
                }
                if let Some(fill) = &s.fill {
                    if !suite.protocol.fills() {
                        errors.push(at(
                            &format!("{here}/send/fill"),
                            format!(
                                "`fill` does not fit protocol {}: it pads a message to a size limit of the Device API",
                                suite.protocol
                            ),
                        ));
                    }
                    for (key, n) in [("headers", &fill.headers), ("message", &fill.message)] {
                        if let Some(n) = n.as_ref().and_then(Value::as_u64)
                            && n > MAX_FILL
                        {
                            errors.push(at(
                                &format!("{here}/send/fill/{key}"),
                                format!("`fill` of {n} bytes is out of range: at most {MAX_FILL}"),
                            ));
                        }
                    }
                }
            }
            Action::ExpectRefused(ExpectRefused { of, .. })
            | Action::ExpectAccepted(ExpectAccepted { of, .. }) => {
                let kind = if matches!(step.action, Action::ExpectRefused(_)) {
                    "expect_refused"
                } else {
                    "expect_accepted"
                };
                if !names.iter().any(|(m, is_send)| m == of && *is_send) {
                    errors.push(at(
                        &format!("{here}/{kind}/of"),
                        format!("`of: {of}` names no earlier `send` or `resend` step"),
                    ));
                }
                if !suite.protocol.observes_refusals() || suite.role != Role::Server {
                    errors.push(at(
                        &format!("{here}/{kind}"),
                        format!(
                            "`{kind}` does not fit a {} {} suite: only a DMF server refuses a message by dead-lettering it",
                            suite.protocol,
                            suite.role.as_str()
                        ),
                    ));
                }
            }
            Action::Wait(w) => {
                if let Some(u) = &w.until {
                    pattern(u, &format!("{here}/wait/until"), cx, at, errors);
                }
            }
            Action::Trigger(_) | Action::Query(_) | Action::Fetch(_) => {}
        }
        if let Some(n) = &step.name {
            if names.iter().any(|(m, _)| m == n) {
                errors.push(at(
                    &format!("{here}/name"),
                    format!("step name `{n}` is used twice"),
                ));
            }
            let sends = matches!(step.action, Action::Send(_) | Action::Resend(_));
            names.push((n.clone(), sends));
        }
    }
    names
}

/// Reads every `body_fixture` into its step, so that a missing fixture is
/// a broken suite, found at load.
fn fixtures(
    suite: &mut Suite,
    cx: &Context<'_>,
    at: &impl Fn(&str, String) -> SuiteError,
) -> Vec<SuiteError> {
    let mut errors = Vec::new();
    let lists = std::iter::once(("/setup".to_owned(), &mut suite.setup)).chain(
        suite
            .cases
            .iter_mut()
            .enumerate()
            .map(|(i, c)| (format!("/cases/{i}/steps"), &mut c.steps)),
    );
    for (base, steps) in lists {
        for (j, step) in steps.iter_mut().enumerate() {
            if let Action::Send(s) = &mut step.action
                && let Some(name) = &s.body_fixture
            {
                match (cx.fixture)(name) {
                    Ok(text) => s.fixture_text = Some(text),
                    Err(e) => errors.push(at(
                        &format!("{base}/{j}/send/body_fixture"),
                        format!("fixture `{name}` cannot be read: {e}"),
                    )),
                }
            }
        }
    }
    errors
}

fn pattern(
    p: &Pattern,
    base: &str,
    cx: &Context<'_>,
    at: &impl Fn(&str, String) -> SuiteError,
    errors: &mut Vec<SuiteError>,
) {
    if let Some(name) = &p.schema
        && !cx.schemas.contains(name)
    {
        errors.push(at(
            &format!("{base}/schema"),
            format!("no schema named `{name}` under schemas/"),
        ));
    }
    let mut regexes = Vec::new();
    for (k, m) in p.headers.iter().chain(p.properties.iter()) {
        // One without variables compiled as it was read: only one that
        // did not is checked again, for the error.
        if let super::ast::Matcher::Op(super::ast::MatchOp::Regex(r)) = m
            && r.compiled.is_none()
        {
            regexes.push((k.clone(), r.source.clone()));
        }
    }
    if let Some(body) = &p.body {
        body_regexes(body, "body", &mut regexes);
    }
    // Variables are filled in when the case runs; check the expression
    // with a plain word in their place.
    static VAR: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\$\{[A-Za-z0-9_.-]+\}").expect("a valid expression")
    });
    for (key, r) in regexes {
        if let Err(e) = regex::Regex::new(&VAR.replace_all(&r, "x")) {
            errors.push(at(
                base,
                format!("`{key}`: invalid regular expression: {e}"),
            ));
        }
    }
}

fn body_regexes(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            if let (1, Some(Value::String(r))) = (m.len(), m.get("$regex")) {
                out.push((path.to_owned(), r.clone()));
                return;
            }
            for (k, v) in m {
                body_regexes(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                body_regexes(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schemas() -> &'static SchemaStore {
        static STORE: std::sync::LazyLock<SchemaStore> = std::sync::LazyLock::new(|| {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas");
            SchemaStore::load(std::path::Path::new(dir)).expect("the schemas")
        });
        &STORE
    }

    fn check(text: &str, schemas: &SchemaStore) {
        let fixture = |_: &str| Err("no fixtures".to_owned());
        let cx = Context {
            schemas,
            fixture: &fixture,
        };
        if let Err(errors) = parse(text, "fuzz.yaml", &cx) {
            for e in errors.0 {
                assert!(e.location.line >= 1 && e.location.column >= 1, "{e}");
            }
        }
    }

    /// A real suite, to cut and splice.
    const SUITE: &str = include_str!("../../../suites/dmf/device/cancel.yaml");

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any text is a suite or a list of located errors: never a panic.
        #[test]
        fn any_text_loads_or_is_located(text in "\\PC{0,300}") {
            check(&text, schemas());
        }

        /// A real suite with a piece cut out and other text put in.
        #[test]
        fn a_damaged_suite_loads_or_is_located(
            at in 0..SUITE.len(),
            cut in 0usize..80,
            put in "[ -~\n]{0,40}",
        ) {
            let at = SUITE.floor_char_boundary(at);
            let end = SUITE.floor_char_boundary((at + cut).min(SUITE.len()));
            let text = format!("{}{put}{}", &SUITE[..at], &SUITE[end..]);
            check(&text, schemas());
        }
    }

    /// The schema's step keys are the step kinds the engine knows.
    #[test]
    fn the_schema_lists_every_step_kind() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/suite.schema.json");
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("the suite schema"))
                .expect("JSON");
        let mut keys: Vec<&str> = schema["$defs"]["step"]["properties"]
            .as_object()
            .expect("step properties")
            .keys()
            .map(String::as_str)
            .filter(|k| !matches!(*k, "name" | "when"))
            .collect();
        let mut kinds = Action::KINDS.to_vec();
        keys.sort();
        kinds.sort();
        assert_eq!(keys, kinds);
    }
}
