//! JSON Schemas from the `schemas/` folder, compiled once and looked up by
//! name (`suite`, `dmf/action-status-update`, ...). The only module that
//! imports the schema validator.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// One schema violation: where in the instance, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the validated value (`""` for the root).
    pub pointer: String,
    /// What was expected, in the validator's words.
    pub message: String,
}

impl Violation {
    /// The pointer, `/` for the root.
    pub fn pointer_or_root(&self) -> &str {
        if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}: {}", self.pointer_or_root(), self.message)
    }
}

/// How many violations of one value are reported.
const MAX_VIOLATIONS: usize = 10;
/// How much of a violation's text is kept: the validator quotes the
/// value, which may be a whole body.
const MAX_MESSAGE: usize = 300;

fn cut(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let n = text.len();
        text.truncate(text.floor_char_boundary(MAX_MESSAGE));
        text.push_str(&format!("... ({n} bytes)"));
    }
    text
}

/// Compiled schemas by name.
pub struct SchemaStore {
    validators: HashMap<String, jsonschema::Validator>,
}

impl SchemaStore {
    /// Compiles every `*.schema.json` below `dir`; the name of
    /// `dir/dmf/x.schema.json` is `dmf/x`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let mut store = SchemaStore {
            validators: HashMap::new(),
        };
        store.load_dir(dir, dir)?;
        Ok(store)
    }

    fn load_dir(&mut self, root: &Path, dir: &Path) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                self.load_dir(root, &path)?;
                continue;
            }
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = file.strip_suffix(".schema.json") else {
                continue;
            };
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let schema: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
            let validator = jsonschema::validator_for(&schema)
                .map_err(|e| format!("{}: not a valid JSON Schema: {e}", path.display()))?;
            let rel = path
                .parent()
                .unwrap_or(root)
                .strip_prefix(root)
                .unwrap_or(Path::new(""));
            let name = if rel.as_os_str().is_empty() {
                stem.to_owned()
            } else {
                format!("{}/{stem}", rel.to_string_lossy())
            };
            self.validators.insert(name, validator);
        }
        Ok(())
    }

    /// Whether a schema of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.validators.contains_key(name)
    }

    /// Validates `instance`; `Err` lists every violation.
    pub fn validate(&self, name: &str, instance: &Value) -> Result<(), Vec<Violation>> {
        let Some(validator) = self.validators.get(name) else {
            return Err(vec![Violation {
                pointer: String::new(),
                message: format!("no schema named `{name}` under schemas/"),
            }]);
        };
        if validator.is_valid(instance) {
            return Ok(());
        }
        let violations: Vec<Violation> = validator
            .iter_errors(instance)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                pointer: e.instance_path().as_str().to_owned(),
                message: cut(e.to_string()),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

#[cfg(test)]
impl SchemaStore {
    /// A store with no schemas, for tests.
    pub(crate) fn empty() -> Self {
        SchemaStore {
            validators: HashMap::new(),
        }
    }
}
