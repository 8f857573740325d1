//! A JSON Lines evidence file: one line for the run, one per event, kept
//! by labs as the record of a run.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use crate::event::RunEvent;

/// Writes events to `<dir>/<prefix>-<pid>.jsonl`.
pub struct JsonLines {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl JsonLines {
    /// Creates the file and writes the run's header line.
    pub fn create(dir: &Path, prefix: &str, header: serde_json::Value) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{prefix}-{}.jsonl", std::process::id()));
        let mut out = BufWriter::new(File::create(&path)?);
        writeln!(out, "{}", json!({"event": "run_started", "run": header}))?;
        out.flush()?;
        Ok(JsonLines {
            path,
            out: Mutex::new(out),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event.
    pub fn on_event(&self, event: &RunEvent) {
        if let (Ok(mut out), Ok(line)) = (self.out.lock(), serde_json::to_string(event)) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
