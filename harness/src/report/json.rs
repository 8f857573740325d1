//! The run's evidence: a JSON Lines file with one line per event, from
//! `run_started` to `run_finished`; a file that does not end with
//! `run_finished` was cut short. Labs keep it as the record of a run.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::event::RunEvent;

/// The evidence file's name in a bundle.
const EVIDENCE: &str = "evidence.jsonl";

/// Writes events to `evidence.jsonl` in a bundle folder of the run's own,
/// `<dir>/<time>-<random>/`, where the other reports go too; under
/// `cargo nextest run`, where each case is a process of its own, every
/// process of the run appends to `<dir>/nextest-<run id>/evidence.jsonl`,
/// a whole case at a time, so that the run leaves one file.
pub(crate) struct JsonLines {
    path: PathBuf,
    out: Mutex<Pending>,
}

/// The file, and the lines not yet written to it.
struct Pending {
    file: File,
    lines: Vec<u8>,
    /// Other processes append to the same file.
    shared: bool,
}

impl JsonLines {
    /// Creates a bundle folder of its own in `dir` (never one another run
    /// wrote) with the evidence file in it, or opens the nextest run's.
    pub(crate) fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let nextest = std::env::var("NEXTEST_RUN_ID")
            .ok()
            .filter(|r| r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let (path, file) = match &nextest {
            Some(run) => {
                let bundle = dir.join(format!("nextest-{run}"));
                std::fs::create_dir_all(&bundle)?;
                let path = bundle.join(EVIDENCE);
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                (path, file)
            }
            None => {
                let millis = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default();
                // Time and randomness, not a process id: two runs in
                // separate pid namespaces must not meet; created
                // exclusively all the same.
                let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
                let bundle = dir.join(format!("{millis}-{random}"));
                std::fs::create_dir(&bundle)?;
                let path = bundle.join(EVIDENCE);
                let file = File::create_new(&path)?;
                (path, file)
            }
        };
        Ok(JsonLines {
            path,
            out: Mutex::new(Pending {
                file,
                lines: Vec::new(),
                shared: nextest.is_some(),
            }),
        })
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The run's bundle folder, where the file is.
    pub(crate) fn bundle(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Appends one event. Lines are written at the end of each case and
    /// of the run, so that a cut-short file holds whole cases.
    pub(crate) fn event(&self, event: &RunEvent) {
        if let Ok(line) = serde_json::to_string(event) {
            self.line(&line, event);
        }
    }

    /// Appends `line`, the event `event` as another evidence file has it
    /// (a merge copies each case's lines as they were).
    pub(crate) fn line(&self, line: &str, event: &RunEvent) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.lines.extend_from_slice(line.as_bytes());
        out.lines.push(b'\n');
        if matches!(
            event,
            RunEvent::RunStarted { .. }
                | RunEvent::CaseFinished { .. }
                | RunEvent::RunFinished { .. }
        ) {
            out.write();
        }
    }
}

impl Pending {
    /// Writes the pending lines in one piece; a shared file is locked
    /// meanwhile, so that processes never interleave within a case.
    fn write(&mut self) {
        let lines = std::mem::take(&mut self.lines);
        if self.shared && self.file.lock().is_err() {
            return;
        }
        let _ = self.file.write_all(&lines);
        if self.shared {
            let _ = self.file.unlock();
        }
    }
}
