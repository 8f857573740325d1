//! `fetch`: downloads a URL the SUT announced (an artifact), with the
//! step's headers, and judges the answer as data, `{status, size, md5,
//! sha1, sha256}`, against `expect`. The body is hashed as it streams in,
//! never kept, and read up to [`MAX_BYTES`]: a hostile server cannot
//! fill the harness's memory or hold the step past its window.

use futures_lite::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::within;
use crate::matching::check_value;
use crate::message::hex;
use crate::run::cx::Cx;
use crate::run::failure::{StepError, miss};
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
    let url = cx
        .vars
        .expand_str(&f.url)
        .map_err(|e| miss("a URL whose variables are set", e))?;
    let mut headers = Vec::new();
    for (k, v) in &f.headers {
        let v = cx
            .vars
            .expand_str(v)
            .map_err(|e| miss("headers whose variables are set", e))?;
        headers.push((k.clone(), v));
    }
    let window = within(cx, f.within);
    let window_ends = Instant::now() + window;
    let until = window_ends.min(cx.deadline);
    let answer = match tokio::time::timeout_at(until, download(&url, &headers)).await {
        Ok(answer) => answer.map_err(|why| miss(format!("a download of {url}"), why))?,
        Err(_) if until < window_ends => return Err(case_deadline(cx)),
        Err(_) => {
            return Err(miss(
                format!("a download of {url}"),
                format!("it did not end within {window:?}"),
            ));
        }
    };
    let expected = cx
        .vars
        .expand(&f.expect)
        .unwrap_or_else(|_| f.expect.clone());
    check_value(&f.expect, &answer, &cx.vars).map_err(|why| {
        let why: Vec<String> = why.iter().map(ToString::to_string).collect();
        miss(
            format!("GET {url} answers with {expected}"),
            format!("it answered {answer}:\n  ✗ {}", why.join("\n  ✗ ")),
        )
    })
}

/// One GET: its status, and the size and hashes of its body.
async fn download(url: &str, headers: &[(String, String)]) -> Result<Value, String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
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
