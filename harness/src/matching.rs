//! Matching a [`Message`] against a suite [`Pattern`], and reading values
//! out of a message by path. Pure functions.

use serde_json::Value;

use crate::message::{Message, scalar_text};
use crate::schema::SchemaStore;
use crate::suite::{MatchOp, Matcher, Pattern};
use crate::vars::Vars;

/// Checks `msg` against `pattern`; `Err` lists each part that differs.
pub fn check(
    pattern: &Pattern,
    msg: &Message,
    vars: &Vars,
    schemas: &SchemaStore,
) -> Result<(), Vec<String>> {
    let mut why = Vec::new();
    for (name, m) in &pattern.headers {
        leaf(
            m,
            msg.headers.get(name),
            vars,
            true,
            &format!("header `{name}`"),
            &mut why,
        );
    }
    for (name, m) in &pattern.properties {
        leaf(
            m,
            msg.properties.get(name),
            vars,
            true,
            &format!("property `{name}`"),
            &mut why,
        );
    }
    if let Some(expected) = &pattern.body {
        match msg.body_json() {
            Some(actual) => body(expected, &actual, vars, "body", &mut why),
            None => why.push("body is not JSON".to_owned()),
        }
    }
    if let Some(schema) = &pattern.schema
        && let Err(v) = schemas.validate(schema, &msg.view())
    {
        why.extend(v.iter().map(|v| format!("schema {schema}: {v}")));
    }
    if why.is_empty() { Ok(()) } else { Err(why) }
}

/// Whether `msg` matches `pattern`.
pub fn matches(pattern: &Pattern, msg: &Message, vars: &Vars, schemas: &SchemaStore) -> bool {
    check(pattern, msg, vars, schemas).is_ok()
}

/// Whether the variables match every `when` matcher.
pub fn when(conditions: &std::collections::BTreeMap<String, Matcher>, vars: &Vars) -> bool {
    conditions.iter().all(|(name, m)| {
        let mut why = Vec::new();
        leaf(m, vars.get(name), vars, true, name, &mut why);
        why.is_empty()
    })
}

/// A value for a report, or `absent`.
fn shown(actual: Option<&Value>) -> String {
    actual
        .map(|v| v.to_string())
        .unwrap_or_else(|| "absent".to_owned())
}

fn leaf(
    m: &Matcher,
    actual: Option<&Value>,
    vars: &Vars,
    loose: bool,
    what: &str,
    why: &mut Vec<String>,
) {
    match m {
        Matcher::Equals(expected) => match vars.expand(expected) {
            Ok(e) if actual.is_some_and(|a| same(&e, a, loose)) => {}
            Ok(e) => why.push(format!("{what}: expected {e}, got {}", shown(actual))),
            Err(err) => why.push(format!("{what}: {err}")),
        },
        Matcher::Op(op) => op_check(op, actual, vars, loose, what, why),
    }
}

fn op_check(
    op: &MatchOp,
    actual: Option<&Value>,
    vars: &Vars,
    loose: bool,
    what: &str,
    why: &mut Vec<String>,
) {
    match op {
        MatchOp::Present(want) => {
            if actual.is_some() != *want {
                let word = if *want { "present" } else { "absent" };
                why.push(format!("{what}: expected {word}, got {}", shown(actual)));
            }
        }
        MatchOp::Regex(r) => {
            let text = actual.and_then(scalar_text);
            let pattern = match vars.expand_str(r) {
                Ok(p) => p,
                Err(e) => return why.push(format!("{what}: {e}")),
            };
            let ok = match (regex::Regex::new(&pattern), &text) {
                (Ok(re), Some(t)) => re.is_match(t),
                _ => false,
            };
            if !ok {
                why.push(format!(
                    "{what}: expected text matching /{pattern}/, got {}",
                    shown(actual)
                ));
            }
        }
        MatchOp::OneOf(options) => {
            let mut expanded = Vec::new();
            for o in options {
                match vars.expand(o) {
                    Ok(v) => expanded.push(v),
                    Err(e) => return why.push(format!("{what}: {e}")),
                }
            }
            if !actual.is_some_and(|a| expanded.iter().any(|e| same(e, a, loose))) {
                let list: Vec<String> = expanded.iter().map(|v| v.to_string()).collect();
                why.push(format!(
                    "{what}: expected one of [{}], got {}",
                    list.join(", "),
                    shown(actual)
                ));
            }
        }
        MatchOp::Not(v) => match vars.expand(v) {
            Ok(e) if actual.is_some_and(|a| same(&e, a, loose)) => {
                why.push(format!("{what}: expected anything but {e}, got it"));
            }
            Ok(_) => {}
            Err(err) => why.push(format!("{what}: {err}")),
        },
    }
}

/// Equality; `loose` also accepts scalars whose text is the same (AMQP
/// headers may carry numbers where a suite writes strings).
fn same(expected: &Value, actual: &Value, loose: bool) -> bool {
    expected == actual
        || (loose
            && match (scalar_text(expected), scalar_text(actual)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            })
}

/// An object like `{"$regex": "..."}` written where a body value goes.
fn body_op(v: &Value) -> Option<MatchOp> {
    let map = v.as_object()?;
    if map.len() != 1 || !map.keys().all(|k| k.starts_with('$')) {
        return None;
    }
    serde_json::from_value(v.clone()).ok()
}

fn body(expected: &Value, actual: &Value, vars: &Vars, path: &str, why: &mut Vec<String>) {
    if let Some(op) = body_op(expected) {
        return op_check(&op, Some(actual), vars, false, path, why);
    }
    match expected {
        Value::Object(fields) => {
            let Some(obj) = actual.as_object() else {
                return why.push(format!("{path}: expected an object, got {actual}"));
            };
            for (k, e) in fields {
                let k = vars.expand_str(k).unwrap_or_else(|_| k.clone());
                let p = format!("{path}.{k}");
                match obj.get(&k) {
                    Some(a) => body(e, a, vars, &p, why),
                    None => match body_op(e) {
                        Some(op) => op_check(&op, None, vars, false, &p, why),
                        None => {
                            let e = vars.expand(e).unwrap_or_else(|_| e.clone());
                            why.push(format!("{p}: expected {e}, got absent"));
                        }
                    },
                }
            }
        }
        Value::Array(items) => {
            let Some(arr) = actual.as_array() else {
                return why.push(format!("{path}: expected an array, got {actual}"));
            };
            if arr.len() != items.len() {
                return why.push(format!(
                    "{path}: expected {} items, got {}",
                    items.len(),
                    arr.len()
                ));
            }
            for (i, (e, a)) in items.iter().zip(arr).enumerate() {
                body(e, a, vars, &format!("{path}[{i}]"), why);
            }
        }
        scalar => match vars.expand(scalar) {
            Ok(e) if e == *actual => {}
            Ok(e) => why.push(format!("{path}: expected {e}, got {actual}")),
            Err(err) => why.push(format!("{path}: {err}")),
        },
    }
}

/// Checks a JSON value (a hook's answer, say) against `expected` as a
/// body is checked: a subset match whose leaves may be matchers.
pub fn check_value(expected: &Value, actual: &Value, vars: &Vars) -> Result<(), Vec<String>> {
    let mut why = Vec::new();
    body(expected, actual, vars, "answer", &mut why);
    if why.is_empty() { Ok(()) } else { Err(why) }
}

/// Reads `headers.X`, `properties.X` or `body.a.b` (array items by index).
pub fn lookup(msg: &Message, path: &str) -> Option<Value> {
    lookup_value(&msg.view(), path)
}

/// Reads `a.b.0` out of a JSON value.
pub fn lookup_value(v: &Value, path: &str) -> Option<Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur.clone())
}

/// The pattern with variables expanded, for reports.
pub fn describe(pattern: &Pattern, vars: &Vars) -> String {
    let mut parts = Vec::new();
    let show = |m: &Matcher| match m {
        Matcher::Equals(v) => vars.expand(v).map(|v| v.to_string()).unwrap_or_else(|e| e),
        Matcher::Op(op) => {
            let op = op_json(op);
            serde_json::to_string(&vars.expand(&op).unwrap_or(op)).unwrap_or_default()
        }
    };
    for (k, m) in &pattern.headers {
        parts.push(format!("header {k} = {}", show(m)));
    }
    for (k, m) in &pattern.properties {
        parts.push(format!("property {k} = {}", show(m)));
    }
    if let Some(b) = &pattern.body {
        let b = vars.expand(b).unwrap_or_else(|_| b.clone());
        parts.push(format!("body ⊇ {b}"));
    }
    if let Some(s) = &pattern.schema {
        parts.push(format!("valid against schema {s}"));
    }
    if parts.is_empty() {
        "any message".to_owned()
    } else {
        parts.join(", ")
    }
}

fn op_json(op: &MatchOp) -> Value {
    match op {
        MatchOp::Regex(r) => serde_json::json!({"$regex": r}),
        MatchOp::OneOf(v) => serde_json::json!({"$one_of": v}),
        MatchOp::Present(b) => serde_json::json!({"$present": b}),
        MatchOp::Not(v) => serde_json::json!({"$not": v}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg() -> Message {
        let mut m = Message::default();
        m.headers.insert("type".into(), json!("EVENT"));
        m.headers.insert("tenant".into(), json!("t1"));
        m.properties
            .insert("content_type".into(), json!("application/json"));
        m.body = br#"{"actionId":7,"actionStatus":"CANCELED","message":["x"],"extra":1}"#.to_vec();
        m
    }

    fn pattern(v: Value) -> Pattern {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn subset_and_operators() {
        let schemas = SchemaStore::empty();
        let mut vars = Vars::default();
        vars.set("actionId", json!(7));
        let p = pattern(json!({
            "headers": {"type": "EVENT", "thingId": {"$present": false}},
            "properties": {"content_type": {"$regex": "json"}},
            "body": {"actionId": "${actionId}", "actionStatus": {"$one_of": ["CANCELED", "CANCEL_REJECTED"]}}
        }));
        assert!(matches(&p, &msg(), &vars, &schemas));
        vars.set("actionId", json!(8));
        let why = check(&p, &msg(), &vars, &schemas).unwrap_err();
        assert_eq!(why, vec!["body.actionId: expected 8, got 7".to_owned()]);
        vars.set("actionId", json!("7"));
        assert!(
            !matches(&p, &msg(), &vars, &schemas),
            "the body is compared strictly"
        );
    }

    #[test]
    fn lookup_reads_every_part() {
        assert_eq!(lookup(&msg(), "body.message.0"), Some(json!("x")));
        assert_eq!(lookup(&msg(), "headers.tenant"), Some(json!("t1")));
        assert_eq!(lookup(&msg(), "properties.reply_to"), None);
    }
}
