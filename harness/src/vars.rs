//! Case variables and `${name}` expansion.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::message::scalar_text;

/// The variables of one case.
#[derive(Clone, Debug, Default)]
pub struct Vars(pub BTreeMap<String, Value>);

impl Vars {
    /// Sets a variable.
    pub fn set(&mut self, name: &str, value: Value) {
        self.0.insert(name.to_owned(), value);
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Expands `${name}` in every string of `value`. A string that is
    /// exactly one `${name}` takes the variable's value and type, so
    /// `actionId: "${actionId}"` stays a number. Object keys are expanded
    /// as text.
    pub fn expand(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) => self.expand_str_value(s)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.expand(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((self.expand_str(k)?, self.expand(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    fn expand_str_value(&self, s: &str) -> Result<Value, String> {
        if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
            && !name.contains("${")
            && !name.contains('}')
        {
            return self
                .get(name)
                .cloned()
                .ok_or_else(|| format!("variable `{name}` is not set"));
        }
        self.expand_str(s).map(Value::String)
    }

    /// Expands `${name}` inside a string; values are inserted as text.
    pub fn expand_str(&self, s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{s}`"))?;
            let name = &after[..end];
            let value = self
                .get(name)
                .ok_or_else(|| format!("variable `{name}` is not set"))?;
            out.push_str(&scalar_text(value).unwrap_or_else(|| value.to_string()));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_lone_variable_keeps_its_type() {
        let mut v = Vars::default();
        v.set("id", json!(42));
        v.set("t", json!("DEFAULT"));
        assert_eq!(
            v.expand(&json!({"a": "${id}", "b": "x-${id}-${t}"}))
                .unwrap(),
            json!({"a": 42, "b": "x-42-DEFAULT"})
        );
        assert!(v.expand(&json!("${nope}")).is_err());
    }
}
