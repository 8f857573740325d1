//! The run's evidence: a JSON Lines file with one line per event, from
//! `run_started` to `run_finished`; a file that does not end with
//! `run_finished` was cut short. Labs keep it as the record of a run.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::event::RunEvent;

/// Writes events to `<dir>/<prefix>-<time>-<random>.jsonl`.
pub(crate) struct JsonLines {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl JsonLines {
    /// Creates a file of its own in `dir` (never one another run wrote).
    pub(crate) fn create(dir: &Path, prefix: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        // Time and randomness, not a process id: two runs in separate pid
        // namespaces must not meet; created exclusively all the same.
        let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let path = dir.join(format!("{prefix}-{millis}-{random}.jsonl"));
        let file = File::create_new(&path)?;
        Ok(JsonLines {
            path,
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event. Lines are flushed at the end of each case and
    /// of the run, so that a cut-short file holds whole cases.
    pub(crate) fn event(&self, event: &RunEvent) {
        let Ok(line) = serde_json::to_string(event) else {
            return;
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{line}");
        if matches!(
            event,
            RunEvent::RunStarted { .. }
                | RunEvent::CaseFinished { .. }
                | RunEvent::RunFinished { .. }
        ) {
            let _ = out.flush();
        }
    }
}
