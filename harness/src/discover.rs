//! Finds and reads suite files under `suites/`: the only code that reads
//! them from disk. Every file is parsed, and every problem of every file
//! is returned together.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::suite::{self, Context, Location, Suite, SuiteError, SuiteErrors};

/// Every `*.yaml` / `*.yml` file below `dir`, sorted.
pub fn suite_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    walk(dir, &mut out).map_err(|e| format!("{}: {e}", dir.display()))?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses every suite file below `dir`; file names in errors are shown
/// relative to `base`. Suite ids must be unique across files.
pub fn load(dir: &Path, base: &Path, cx: &Context<'_>) -> Result<Vec<Arc<Suite>>, SuiteErrors> {
    let files = suite_files(dir).map_err(|e| {
        SuiteErrors(vec![SuiteError {
            location: Location {
                file: dir.display().to_string(),
                line: 1,
                column: 1,
            },
            path: String::new(),
            message: e,
        }])
    })?;
    let mut suites: Vec<Arc<Suite>> = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        let shown = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(SuiteError {
                    location: Location {
                        file: shown,
                        line: 1,
                        column: 1,
                    },
                    path: String::new(),
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match suite::parse(&text, &shown, cx) {
            Ok(s) => {
                if let Some(other) = suites
                    .iter()
                    .find(|o| o.id == s.id && o.role == s.role && o.protocol == s.protocol)
                {
                    errors.push(SuiteError {
                        location: Location {
                            file: shown,
                            line: 1,
                            column: 1,
                        },
                        path: "/id".to_owned(),
                        message: format!("suite id `{}` is also used by {}", s.id, other.origin),
                    });
                } else {
                    suites.push(Arc::new(s));
                }
            }
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() {
        Ok(suites)
    } else {
        Err(SuiteErrors(errors))
    }
}
