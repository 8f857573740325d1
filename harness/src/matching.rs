//! Matching a message against a suite [`Pattern`]. A pattern is bound to
//! the case's variables once, when a step starts waiting ([`Bound`]):
//! variables expanded, regular expressions compiled. Each arrival is then
//! checked against it with plain comparisons, and every part that differs
//! is reported as data ([`Mismatch`]), as Hurl reports an assert. Pure
//! functions, tested on in-memory values.

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::message::scalar_text;
use crate::schema::SchemaStore;
use crate::suite::{MatchOp, Matcher, Pattern, Re};
use crate::vars::Vars;

/// One part of a message (or of a hook's answer) that differs from what
/// was expected.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct Mismatch {
    /// Where: `header type`, `body.actionId`, `schema dmf/ping`.
    pub path: String,
    /// What was expected there.
    pub expected: String,
    /// What is there (`absent` when nothing is).
    pub actual: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.path, self.expected, self.actual
        )
    }
}

fn mismatch(path: &str, expected: impl Into<String>, actual: impl Into<String>) -> Mismatch {
    Mismatch {
        path: path.to_owned(),
        expected: expected.into(),
        actual: actual.into(),
    }
}

/// A value for a report, or `absent`.
fn shown(actual: Option<&Value>) -> String {
    actual
        .map(|v| v.to_string())
        .unwrap_or_else(|| "absent".to_owned())
}

/// One matcher, variables expanded.
#[derive(Clone, Debug)]
enum Leaf {
    Equals(Value),
    Regex(Regex),
    OneOf(Vec<Value>),
    Present(bool),
    Not(Value),
}

impl Leaf {
    fn bind_op(op: &MatchOp, vars: &Vars) -> Result<Self, String> {
        Ok(match op {
            MatchOp::Regex(re) => Leaf::Regex(compile(re, vars)?),
            MatchOp::OneOf(options) => Leaf::OneOf(
                options
                    .iter()
                    .map(|o| vars.expand(o))
                    .collect::<Result<_, _>>()?,
            ),
            MatchOp::Present(b) => Leaf::Present(*b),
            MatchOp::Not(v) => Leaf::Not(vars.expand(v)?),
        })
    }

    fn bind(m: &Matcher, vars: &Vars) -> Result<Self, String> {
        match m {
            Matcher::Equals(v) => Ok(Leaf::Equals(vars.expand(v)?)),
            Matcher::Op(op) => Self::bind_op(op, vars),
        }
    }

    /// Whether `actual` matches; `loose` also accepts scalars whose text
    /// is the same (AMQP headers may carry numbers where a suite writes
    /// strings).
    fn holds(&self, actual: Option<&Value>, loose: bool) -> bool {
        match self {
            Leaf::Equals(e) => actual.is_some_and(|a| same(e, a, loose)),
            Leaf::Regex(re) => actual.is_some_and(|a| match a {
                Value::String(t) => re.is_match(t),
                other => scalar_text(other).is_some_and(|t| re.is_match(&t)),
            }),
            Leaf::OneOf(options) => {
                actual.is_some_and(|a| options.iter().any(|e| same(e, a, loose)))
            }
            Leaf::Present(want) => actual.is_some() == *want,
            Leaf::Not(e) => !actual.is_some_and(|a| same(e, a, loose)),
        }
    }

    /// Why `actual`, at `path`, does not match, if it does not.
    fn check(&self, actual: Option<&Value>, loose: bool, path: &str) -> Option<Mismatch> {
        (!self.holds(actual, loose)).then(|| mismatch(path, self.expectation(), shown(actual)))
    }

    fn expectation(&self) -> String {
        match self {
            Leaf::Equals(e) => e.to_string(),
            Leaf::Regex(re) => format!("text matching /{}/", re.as_str()),
            Leaf::OneOf(options) => {
                let list: Vec<String> = options.iter().map(Value::to_string).collect();
                format!("one of [{}]", list.join(", "))
            }
            Leaf::Present(true) => "present".to_owned(),
            Leaf::Present(false) => "absent".to_owned(),
            Leaf::Not(e) => format!("anything but {e}"),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Leaf::Equals(e) => e.clone(),
            Leaf::Regex(re) => json!({"$regex": re.as_str()}),
            Leaf::OneOf(v) => json!({"$one_of": v}),
            Leaf::Present(b) => json!({"$present": b}),
            Leaf::Not(v) => json!({"$not": v}),
        }
    }
}

fn compile(re: &Re, vars: &Vars) -> Result<Regex, String> {
    if let Some(r) = &re.compiled {
        return Ok(r.clone());
    }
    let source = vars.expand_str(&re.source)?;
    Regex::new(&source).map_err(|e| format!("`{source}` is not a regular expression: {e}"))
}

fn same(expected: &Value, actual: &Value, loose: bool) -> bool {
    if expected == actual {
        return true;
    }
    match (expected, actual) {
        _ if !loose => false,
        (Value::String(_), Value::String(_)) => false,
        _ => match (scalar_text(expected), scalar_text(actual)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
    }
}

/// A body (or answer) pattern: a subset match whose leaves may be
/// operators, variables expanded.
#[derive(Clone, Debug)]
enum Node {
    Op(Leaf),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar(Value),
}

/// An object like `{"$regex": "..."}` written where a body value goes.
fn body_op(v: &Value) -> Option<MatchOp> {
    let map = v.as_object()?;
    if map.len() != 1 || !map.keys().all(|k| k.starts_with('$')) {
        return None;
    }
    serde_json::from_value(v.clone()).ok()
}

impl Node {
    fn bind(v: &Value, vars: &Vars) -> Result<Self, String> {
        if let Some(op) = body_op(v) {
            return Leaf::bind_op(&op, vars).map(Node::Op);
        }
        Ok(match v {
            Value::Object(fields) => Node::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((vars.expand_str(k)?, Node::bind(v, vars)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Value::Array(items) => Node::Array(
                items
                    .iter()
                    .map(|v| Node::bind(v, vars))
                    .collect::<Result<_, _>>()?,
            ),
            scalar => Node::Scalar(vars.expand(scalar)?),
        })
    }

    /// Whether `actual` matches, without saying why not.
    fn holds(&self, actual: Option<&Value>) -> bool {
        match (self, actual) {
            (Node::Op(leaf), a) => leaf.holds(a, false),
            (_, None) => false,
            (Node::Object(fields), Some(a)) => a
                .as_object()
                .is_some_and(|obj| fields.iter().all(|(k, n)| n.holds(obj.get(k)))),
            (Node::Array(items), Some(a)) => a.as_array().is_some_and(|arr| {
                arr.len() == items.len() && items.iter().zip(arr).all(|(n, a)| n.holds(Some(a)))
            }),
            (Node::Scalar(e), Some(a)) => e == a,
        }
    }

    fn check(&self, actual: Option<&Value>, path: &str, out: &mut Vec<Mismatch>) {
        match (self, actual) {
            (Node::Op(leaf), a) => out.extend(leaf.check(a, false, path)),
            (node, None) => out.push(mismatch(path, node.to_json().to_string(), "absent")),
            (Node::Object(fields), Some(a)) => {
                let Some(obj) = a.as_object() else {
                    return out.push(mismatch(path, "an object", a.to_string()));
                };
                for (k, n) in fields {
                    n.check(obj.get(k), &format!("{path}.{k}"), out);
                }
            }
            (Node::Array(items), Some(a)) => {
                let Some(arr) = a.as_array() else {
                    return out.push(mismatch(path, "an array", a.to_string()));
                };
                if arr.len() != items.len() {
                    return out.push(mismatch(
                        path,
                        format!("{} items", items.len()),
                        format!("{} items", arr.len()),
                    ));
                }
                for (i, (n, a)) in items.iter().zip(arr).enumerate() {
                    n.check(Some(a), &format!("{path}[{i}]"), out);
                }
            }
            (Node::Scalar(e), Some(a)) => {
                if e != a {
                    out.push(mismatch(path, e.to_string(), a.to_string()));
                }
            }
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Node::Op(leaf) => leaf.to_json(),
            Node::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, n)| (k.clone(), n.to_json()))
                    .collect::<Map<_, _>>(),
            ),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Scalar(v) => v.clone(),
        }
    }
}

/// A message as matching sees it: `{headers, properties, body}`, the body
/// parsed once (a string when it is not JSON, `null` when empty), and
/// whether it was JSON.
pub(crate) struct View<'a> {
    /// The message as one JSON value.
    pub value: &'a Value,
    /// Whether the body parsed as JSON.
    pub json_body: bool,
}

/// A pattern bound to a case's variables: ready to check any number of
/// messages without expanding or compiling anything again.
#[derive(Clone, Debug)]
pub(crate) struct Bound {
    headers: Vec<(String, Leaf)>,
    properties: Vec<(String, Leaf)>,
    body: Option<Node>,
    schema: Option<String>,
}

impl Bound {
    /// Expands `pattern`'s variables and compiles its expressions; `Err`
    /// names a variable that is not set or an expression that does not
    /// compile once expanded.
    pub(crate) fn new(pattern: &Pattern, vars: &Vars) -> Result<Self, String> {
        let leaves = |m: &std::collections::BTreeMap<String, Matcher>| {
            m.iter()
                .map(|(k, m)| Ok((k.clone(), Leaf::bind(m, vars)?)))
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Bound {
            headers: leaves(&pattern.headers)?,
            properties: leaves(&pattern.properties)?,
            body: pattern
                .body
                .as_ref()
                .map(|b| Node::bind(b, vars))
                .transpose()?,
            schema: pattern.schema.clone(),
        })
    }

    /// Checks a message; `Err` lists every part that differs.
    pub(crate) fn check(
        &self,
        view: &View<'_>,
        schemas: &SchemaStore,
    ) -> Result<(), Vec<Mismatch>> {
        let mut out = Vec::new();
        let v = view.value;
        for (name, leaf) in &self.headers {
            out.extend(leaf.check(v["headers"].get(name), true, &format!("header {name}")));
        }
        for (name, leaf) in &self.properties {
            out.extend(leaf.check(v["properties"].get(name), true, &format!("property {name}")));
        }
        if let Some(body) = &self.body {
            if view.json_body {
                body.check(Some(&v["body"]), "body", &mut out);
            } else {
                out.push(mismatch("body", "JSON", shown(Some(&v["body"]))));
            }
        }
        if let Some(schema) = &self.schema
            && let Err(violations) = schemas.validate(schema, v)
        {
            out.extend(violations.iter().map(|x| {
                mismatch(
                    &format!("schema {schema} at {}", x.pointer_or_root()),
                    "valid",
                    x.message.clone(),
                )
            }));
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// Whether a message matches: what [`Bound::check`] says, without
    /// building the reasons.
    pub(crate) fn matches(&self, view: &View<'_>, schemas: &SchemaStore) -> bool {
        let v = view.value;
        self.headers
            .iter()
            .all(|(name, leaf)| leaf.holds(v["headers"].get(name), true))
            && self
                .properties
                .iter()
                .all(|(name, leaf)| leaf.holds(v["properties"].get(name), true))
            && self
                .body
                .as_ref()
                .is_none_or(|b| view.json_body && b.holds(Some(&v["body"])))
            && self
                .schema
                .as_ref()
                .is_none_or(|s| schemas.validate(s, v).is_ok())
    }

    /// The pattern in words, for reports.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (k, leaf) in &self.headers {
            parts.push(format!("header {k} = {}", leaf.to_json()));
        }
        for (k, leaf) in &self.properties {
            parts.push(format!("property {k} = {}", leaf.to_json()));
        }
        if let Some(b) = &self.body {
            parts.push(format!("body ⊇ {}", b.to_json()));
        }
        if let Some(s) = &self.schema {
            parts.push(format!("valid against schema {s}"));
        }
        if parts.is_empty() {
            "any message".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// The pattern as JSON, variables expanded, for evidence.
    pub(crate) fn to_json(&self) -> Value {
        let leaves = |l: &[(String, Leaf)]| {
            Value::Object(l.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
        };
        let mut out = Map::new();
        if !self.headers.is_empty() {
            out.insert("headers".into(), leaves(&self.headers));
        }
        if !self.properties.is_empty() {
            out.insert("properties".into(), leaves(&self.properties));
        }
        if let Some(b) = &self.body {
            out.insert("body".into(), b.to_json());
        }
        if let Some(s) = &self.schema {
            out.insert("schema".into(), Value::String(s.clone()));
        }
        Value::Object(out)
    }
}

/// Whether the variables match every `when` matcher.
pub(crate) fn when(conditions: &std::collections::BTreeMap<String, Matcher>, vars: &Vars) -> bool {
    conditions.iter().all(|(name, m)| {
        Leaf::bind(m, vars).is_ok_and(|leaf| leaf.check(vars.get(name), true, name).is_none())
    })
}

/// Checks a JSON value (a hook's answer) against `expected` as a body is
/// checked: a subset match whose leaves may be operators.
pub(crate) fn check_value(
    expected: &Value,
    actual: &Value,
    vars: &Vars,
) -> Result<(), Vec<Mismatch>> {
    let node = Node::bind(expected, vars)
        .map_err(|e| vec![mismatch("answer", "a pattern whose variables are set", e)])?;
    let mut out = Vec::new();
    node.check(Some(actual), "answer", &mut out);
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// Reads `a.b.0` out of a JSON value (`headers.X`, `properties.X`,
/// `body.a.b` of a message's view).
pub(crate) fn lookup(v: &Value, path: &str) -> Option<Value> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

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

    fn check(p: &Pattern, vars: &Vars) -> Result<(), Vec<Mismatch>> {
        let (value, json_body) = msg().view();
        let view = View {
            value: &value,
            json_body,
        };
        Bound::new(p, vars)
            .unwrap()
            .check(&view, &SchemaStore::empty())
    }

    #[test]
    fn subset_and_operators() {
        let mut vars = Vars::default();
        vars.set("actionId", json!(7));
        let p = pattern(json!({
            "headers": {"type": "EVENT", "thingId": {"$present": false}},
            "properties": {"content_type": {"$regex": "json"}},
            "body": {"actionId": "${actionId}", "actionStatus": {"$one_of": ["CANCELED", "CANCEL_REJECTED"]}}
        }));
        assert!(check(&p, &vars).is_ok());
        vars.set("actionId", json!(8));
        assert_eq!(
            check(&p, &vars).unwrap_err(),
            vec![mismatch("body.actionId", "8", "7")]
        );
        vars.set("actionId", json!("7"));
        assert!(check(&p, &vars).is_err(), "the body is compared strictly");
    }

    #[test]
    fn regexes_with_variables_are_compiled_when_bound() {
        let mut vars = Vars::default();
        vars.set("tenant", json!("T1"));
        let p = pattern(json!({"headers": {"tenant": {"$regex": "(?i)^${tenant}$"}}}));
        assert!(check(&p, &vars).is_ok());
        vars.set("tenant", json!("(unclosed"));
        assert!(Bound::new(&p, &vars).is_err());
        assert!(Bound::new(&p, &Vars::default()).is_err(), "unset variable");
    }

    #[test]
    fn answers_and_lookups() {
        let vars = Vars::default();
        let answer = json!({"exists": true, "name": "n", "extra": [1]});
        assert!(check_value(&json!({"exists": true}), &answer, &vars).is_ok());
        let why = check_value(&json!({"name": {"$regex": "^x"}}), &answer, &vars).unwrap_err();
        assert_eq!(why[0].path, "answer.name");
        let (view, _) = msg().view();
        assert_eq!(lookup(&view, "body.message.0"), Some(json!("x")));
        assert_eq!(lookup(&view, "headers.tenant"), Some(json!("t1")));
        assert_eq!(lookup(&view, "properties.reply_to"), None);
    }
}
