//! The artifact a case has a DMF server under test announce: a file of
//! bytes made for the run, which `assign` uploads (over the Management
//! API, or handed to a hook by its path), so that a suite can judge the
//! DOWNLOAD_AND_INSTALL that announces it (name, size, hashes) and the
//! download the server offers. Written once per run, on first use, into
//! a temporary folder that goes with the run.

use serde_json::{Value, json};

use super::artifacts::{md5_hex, sha1_hex};
use crate::message::sha256;
use crate::reaper::RunDir;

/// How large the uploaded artifact is: past one 8 KiB read, so a server
/// that stores or serves only the start of a file shows it.
const SIZE: usize = 20_000;

/// The run's artifact to upload.
pub(crate) struct Upload {
    _dir: RunDir,
    vars: Vec<(&'static str, Value)>,
}

impl Upload {
    /// Writes the file.
    pub(crate) fn write() -> Result<Self, String> {
        let dir = RunDir::new("upload")?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("dmconf-{}.bin", &id[..12]);
        let path = dir.join(&name);
        let key = id.as_bytes();
        let bytes: Vec<u8> = (0..SIZE)
            .map(|i| (i as u8).wrapping_mul(31) ^ key[i % key.len()])
            .collect();
        std::fs::write(&path, &bytes).map_err(|e| format!("cannot write {path:?}: {e}"))?;
        let vars = vec![
            ("uploadFile", json!(path.to_string_lossy())),
            ("uploadName", json!(name)),
            ("uploadSize", json!(SIZE)),
            ("uploadMd5", json!(md5_hex(&bytes))),
            ("uploadSha1", json!(sha1_hex(&bytes))),
            ("uploadSha256", json!(sha256(&bytes))),
        ];
        Ok(Upload { _dir: dir, vars })
    }

    /// The variables its suites use: `uploadFile` (its path),
    /// `uploadName`, `uploadSize`, `uploadMd5`, `uploadSha1` and
    /// `uploadSha256`.
    pub(crate) fn vars(&self) -> Vec<(&'static str, Value)> {
        self.vars.clone()
    }
}
