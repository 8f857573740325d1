//! `fetch`: downloads a URL the SUT announced (an artifact), or each of
//! an object of them (a DMF artifact's `urls`, one per protocol), with
//! the step's headers, and judges each answer as data, `{status, size,
//! md5, sha1, sha256}`, against `expect`. The body is hashed as it streams in,
//! never kept, and read up to [`MAX_BYTES`]: a hostile server cannot
//! fill the harness's memory or hold the step past its window.

use futures_lite::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::within;
use crate::error::Error;
use crate::matching::check_value;
use crate::message::hex;
use crate::run::cx::Cx;
use crate::run::failure::{StepError, answered, miss};
use crate::run::wait::case_deadline;
use crate::suite::{Fetch, Step};
use crate::sut::SutInstance;

/// The most a download may bring; past it the answer is judged as it is,
/// with `size` counting what was read and `truncated` set.
const MAX_BYTES: u64 = 256 << 20;

pub(super) async fn run(
    f: &Fetch,
    _step: &Step,
    cx: &mut Cx<'_>,
    _sut: &mut SutInstance,
) -> Result<(), StepError> {
    let urls = match cx.vars.expand(&Value::String(f.url.clone())) {
        Ok(Value::String(u)) => vec![(None, u)],
        // A DMF artifact's `urls`: every protocol it announces.
        Ok(Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| Some((Some(k), v.as_str()?.to_owned())))
            .collect(),
        Ok(other) => {
            return Err(miss("a URL, or an object of URLs", other.to_string()));
        }
        Err(e) => return Err(miss("a URL whose variables are set", e)),
    };
    if urls.is_empty() {
        return Err(miss("at least one URL", "none was announced"));
    }
    let mut headers = Vec::new();
    for (k, v) in &f.headers {
        let v = cx
            .vars
            .expand_str(v)
            .map_err(|e| miss("headers whose variables are set", e))?;
        headers.push((k.clone(), v));
    }
    let client = client(cx)?;
    let window = within(cx, f.within);
    let window_ends = Instant::now() + window;
    let until = window_ends.min(cx.deadline);
    let expected = cx
        .vars
        .expand(&f.expect)
        .unwrap_or_else(|_| f.expect.clone());
    for (protocol, url) in urls {
        let what = match &protocol {
            Some(p) => format!("GET {url} ({p})"),
            None => format!("GET {url}"),
        };
        let answer = match tokio::time::timeout_at(until, download(&client, &url, &headers)).await {
            Ok(answer) => answer.map_err(|why| miss(format!("{what} answers"), why))?,
            Err(_) if until < window_ends => return Err(case_deadline(cx)),
            Err(_) => {
                return Err(miss(
                    format!("{what} answers"),
                    format!("it did not end within {window:?}"),
                ));
            }
        };
        check_value(&f.expect, &answer, &cx.vars).map_err(|why| {
            miss(
                format!("{what} answers with {expected}"),
                answered("it answered", &answer, &why),
            )
        })?;
    }
    Ok(())
}

/// An HTTP client that trusts the public CAs and the profile's
/// `[dmf] artifact_ca`, if any.
fn client(cx: &Cx<'_>) -> Result<reqwest::Client, StepError> {
    let setup = |what: String| StepError::Harness(Error::Setup(what));
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::limited(5));
    if let Some(path) = &cx.env.profile.dmf.artifact_ca {
        let unusable =
            |e: &dyn std::fmt::Display| setup(format!("[dmf] artifact_ca {}: {e}", path.display()));
        let pem = std::fs::read(path).map_err(|e| unusable(&e))?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| unusable(&e))?;
        builder = builder.add_root_certificate(ca);
    }
    builder
        .build()
        .map_err(|e| setup(format!("HTTP client: {e}")))
}

/// One GET: its status, and the size and hashes of its body.
async fn download(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
) -> Result<Value, String> {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let res = req.send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let mut md5 = md5::Context::new();
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    let mut sha256 = ring::digest::Context::new(&ring::digest::SHA256);
    let mut size = 0u64;
    let mut truncated = false;
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("the body broke off after {size} bytes: {e}"))?;
        if size + chunk.len() as u64 > MAX_BYTES {
            truncated = true;
            break;
        }
        size += chunk.len() as u64;
        md5.consume(&chunk);
        sha1.update(&chunk);
        sha256.update(&chunk);
    }
    let mut answer = json!({
        "status": status,
        "size": size,
        "md5": hex(&md5.compute().0),
        "sha1": hex(sha1.finish().as_ref()),
        "sha256": hex(sha256.finish().as_ref()),
    });
    if truncated {
        answer["truncated"] = json!(true);
    }
    Ok(answer)
}
