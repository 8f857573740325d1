//! How the reference DMF device fetches a deployment's artifacts: each
//! from its HTTP(S) URL with the action's security token
//! (`Authorization: TargetToken …`), checked against the size and the
//! hashes the request announces.

use std::time::Duration;

use dmconf_harness::kit::dmf;
use serde_json::Value;

/// One artifact of a DOWNLOAD_AND_INSTALL or DOWNLOAD.
#[derive(Clone, Debug, Default)]
pub(crate) struct Artifact {
    filename: String,
    url: String,
    size: Option<u64>,
    md5: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
}

/// Bound on one download.
const WITHIN: Duration = Duration::from_secs(20);

/// The artifacts of every software module of a request's body.
pub(crate) fn artifacts(body: &Value) -> Vec<Artifact> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    body["softwareModules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["artifacts"].as_array().into_iter().flatten())
        .filter_map(|a| {
            let urls = &a["urls"];
            let url = text(urls, "HTTPS").or_else(|| text(urls, "HTTP"))?;
            Some(Artifact {
                filename: text(a, "filename").unwrap_or_default(),
                url,
                size: a["size"].as_u64(),
                md5: text(&a["hashes"], "md5"),
                sha1: text(&a["hashes"], "sha1"),
                sha256: text(&a["hashes"], "sha256"),
            })
        })
        .collect()
}

/// How a download is made: whom it trusts for HTTPS, and what it checks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trust {
    /// The PEM of the CA that signs the artifact server's certificate.
    pub ca_pem: Option<String>,
    /// Takes any certificate (a fault).
    pub any_certificate: bool,
    /// Checks size and hashes (off: a fault).
    pub verify: bool,
}

/// Downloads `a`, with `token` when given, over HTTP or over HTTPS
/// trusting `trust`, and checks it unless told not to; `Err` says why it
/// cannot be installed.
pub(crate) async fn fetch(a: &Artifact, token: Option<&str>, trust: &Trust) -> Result<(), String> {
    let mut client = reqwest::Client::builder()
        .timeout(WITHIN)
        .danger_accept_invalid_certs(trust.any_certificate);
    if let Some(pem) = &trust.ca_pem {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        client = client.add_root_certificate(ca);
    }
    let client = client.build().map_err(|e| e.to_string())?;
    let mut req = client.get(&a.url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("TargetToken {t}"));
    }
    let res = req
        .send()
        .await
        .map_err(|e| format!("{}: {e}", a.filename))?;
    if !res.status().is_success() {
        return Err(format!(
            "{}: the server answered {}",
            a.filename,
            res.status()
        ));
    }
    let bytes = res
        .bytes()
        .await
        .map_err(|e| format!("{}: {e}", a.filename))?;
    if !trust.verify {
        return Ok(());
    }
    let checks = [
        (
            "size",
            a.size.map(|s| s.to_string()),
            bytes.len().to_string(),
        ),
        ("md5", a.md5.clone(), dmf::md5_hex(&bytes)),
        ("sha1", a.sha1.clone(), dmf::sha1_hex(&bytes)),
        ("sha256", a.sha256.clone(), dmf::sha256(&bytes)),
    ];
    for (what, announced, got) in checks {
        if let Some(want) = announced
            && !want.eq_ignore_ascii_case(&got)
        {
            return Err(format!(
                "{}: {what} is {got}, the request says {want}",
                a.filename
            ));
        }
    }
    Ok(())
}
