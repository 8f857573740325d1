//! The upper tester for a DMF server: hawkBit's Management REST API.
//! It makes the server act (assign a deployment, cancel it) and reads
//! back what the server recorded (a target, its attributes, an action),
//! as the `trigger` and `query` steps of a suite ask.
//!
//! Each operation takes the step's arguments as JSON and answers with
//! JSON, so that a command hook in a profile can stand in for any of
//! them. Answers are shaped the same whatever the server's version: an
//! action is `{id, active, status}` with hawkBit's lower-case status,
//! read from `detailStatus` on servers up to 0.9.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// The operations this plugin offers, by the names suites use.
pub const OPERATIONS: [&str; 10] = [
    "assign",
    "address",
    "target_type",
    "cancel",
    "target",
    "attributes",
    "action",
    "statuses",
    "installed",
    "delete",
];

/// The largest artifact `assign` uploads.
const MAX_UPLOAD: u64 = 256 << 20;

/// Bound on each HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the Management API is and how to log in.
#[derive(Clone, Debug)]
pub struct MgmtSpec {
    /// Base URL, e.g. `http://localhost:8080`.
    pub url: String,
    /// Login.
    pub user: String,
    /// Password.
    pub password: String,
}

/// A Management API client.
#[derive(Clone)]
pub struct MgmtClient {
    spec: MgmtSpec,
    http: reqwest::Client,
}

fn arg(args: &Map<String, Value>, name: &str) -> Result<String, String> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(format!("argument `{name}` is missing")),
    }
}

impl MgmtClient {
    /// A client for `spec`.
    pub fn new(spec: MgmtSpec) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| format!("management API client: {e}"))?;
        Ok(MgmtClient { spec, http })
    }

    /// Runs the operation `name` with `args`.
    pub async fn call(&self, name: &str, args: &Map<String, Value>) -> Result<Value, String> {
        match name {
            "assign" => {
                let kind = args.get("type").and_then(Value::as_str).unwrap_or("forced");
                let confirm = args.get("confirm").and_then(Value::as_bool) == Some(true);
                let window = match args.get("window") {
                    None | Some(Value::Null) => None,
                    Some(w) => Some(maintenance_window(w, crate::event::unix_now() as i64)?),
                };
                let how = json!({"type": kind, "confirmationRequired": confirm, "maintenanceWindow": window});
                let artifact = args.get("artifact").and_then(Value::as_str);
                self.assign(&arg(args, "thingId")?, how, artifact).await
            }
            "cancel" => {
                let path = format!(
                    "targets/{}/actions/{}",
                    arg(args, "thingId")?,
                    arg(args, "actionId")?
                );
                self.request(reqwest::Method::DELETE, &path, None)
                    .await
                    .map(|_| Value::Null)
            }
            "delete" => {
                let path = format!("targets/{}", arg(args, "thingId")?);
                self.request(reqwest::Method::DELETE, &path, None)
                    .await
                    .map(|_| Value::Null)
            }
            "target" => {
                let path = format!("targets/{}", arg(args, "thingId")?);
                match self.request(reqwest::Method::GET, &path, None).await {
                    Ok(t) => Ok(json!({
                        "exists": true,
                        "name": t.get("name"),
                        "address": t.get("address"),
                        "updateStatus": t.get("updateStatus"),
                        "type": t.get("targetTypeName"),
                    })),
                    Err(e) if e.starts_with("404") => Ok(json!({ "exists": false })),
                    Err(e) => Err(e),
                }
            }
            "attributes" => {
                let path = format!("targets/{}/attributes", arg(args, "thingId")?);
                let v = self.request(reqwest::Method::GET, &path, None).await?;
                Ok(if v.is_null() { json!({}) } else { v })
            }
            "action" => {
                let path = format!(
                    "targets/{}/actions/{}",
                    arg(args, "thingId")?,
                    arg(args, "actionId")?
                );
                let a = self.request(reqwest::Method::GET, &path, None).await?;
                Ok(normalise_action(&a))
            }
            "statuses" => {
                let path = format!(
                    "targets/{}/actions/{}/status?limit=500",
                    arg(args, "thingId")?,
                    arg(args, "actionId")?
                );
                let page = self.request(reqwest::Method::GET, &path, None).await?;
                Ok(by_type(&page))
            }
            "address" => {
                let path = format!("targets/{}", arg(args, "thingId")?);
                let body = json!({ "address": arg(args, "address")? });
                self.request(reqwest::Method::PUT, &path, Some(body))
                    .await
                    .map(|_| Value::Null)
            }
            "target_type" => {
                let name = arg(args, "name")?;
                let key = format!(
                    "dmconf-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                );
                let body = json!([{"name": name, "key": key, "description": "created by a conformance run"}]);
                let made = self
                    .request(reqwest::Method::POST, "targettypes", Some(body))
                    .await?;
                Ok(json!({ "id": first_id(&made) }))
            }
            "installed" => {
                let path = format!("targets/{}/installedDS", arg(args, "thingId")?);
                let ds = self.request(reqwest::Method::GET, &path, None).await?;
                Ok(json!({ "distributionSetId": ds.get("id") }))
            }
            other => Err(format!(
                "the management API plugin has no operation `{other}` (it has {})",
                OPERATIONS.join(", ")
            )),
        }
    }

    /// Creates a software module (with the file at `artifact` uploaded
    /// into it, if given) and a distribution set of its own, and assigns
    /// the set to the thing as `how` says (`type`, `confirmationRequired`,
    /// `maintenanceWindow`); answers `{actionId, distributionSetId}`.
    async fn assign(
        &self,
        thing: &str,
        mut how: Value,
        artifact: Option<&str>,
    ) -> Result<Value, String> {
        let version = format!("dmconf-{}", uuid::Uuid::new_v4().simple());
        let sm = self
            .request(
                reqwest::Method::POST,
                "softwaremodules",
                Some(
                    json!([{"name": "dmconf-fw", "version": version, "type": "os",
                              "description": "created by a conformance run"}]),
                ),
            )
            .await?;
        let sm = first_id(&sm).ok_or_else(|| format!("no module id in {sm}"))?;
        if let Some(path) = artifact {
            self.upload(sm, path).await?;
        }
        let ds = self
            .request(
                reqwest::Method::POST,
                "distributionsets",
                Some(
                    json!([{"name": "dmconf-ds", "version": version, "type": "os",
                              "modules": [{"id": sm}]}]),
                ),
            )
            .await?;
        let ds = first_id(&ds).ok_or_else(|| format!("no distribution set id in {ds}"))?;
        let path = format!("targets/{thing}/assignedDS");
        let res = self
            .request(
                reqwest::Method::POST,
                &path,
                // Not waiting for a confirmation unless asked, should the
                // tenant have that flow on.
                Some({
                    how["id"] = json!(ds);
                    if how["maintenanceWindow"].is_null() {
                        how.as_object_mut().map(|o| o.remove("maintenanceWindow"));
                    }
                    how
                }),
            )
            .await?;
        let id = res
            .get("assignedActions")
            .and_then(first_id)
            .ok_or_else(|| format!("the assignment created no action: {res}"))?;
        Ok(json!({ "actionId": id, "distributionSetId": ds }))
    }

    /// Uploads the file at `path` into software module `sm`, under its
    /// own name (hawkBit: a multipart form with the part `file`).
    async fn upload(&self, sm: u64, path: &str) -> Result<(), String> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("cannot read the artifact {path}: {e}"))?
            .len();
        if size > MAX_UPLOAD {
            return Err(format!(
                "the artifact {path} is {size} bytes; dmconf uploads at most {MAX_UPLOAD}"
            ));
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read the artifact {path}: {e}"))?;
        let name = std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name);
        let form = reqwest::multipart::Form::new().part("file", part);
        let path = format!("softwaremodules/{sm}/artifacts");
        self.send(reqwest::Method::POST, &path, |r| r.multipart(form))
            .await
            .map(drop)
    }

    /// The URL of `path` under the API's `/rest/v1`.
    fn url(&self, path: &str) -> String {
        format!("{}/rest/v1/{path}", self.spec.url.trim_end_matches('/'))
    }

    /// One request with a JSON body, if any; a JSON answer, `null` for an
    /// empty one, and `Err` starting with the status code otherwise.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let text = self
            .send(method.clone(), path, |r| match &body {
                Some(b) => r.json(b),
                None => r,
            })
            .await?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            let url = self.url(path);
            format!("{method} {url}: the answer is not JSON ({e}): {text}")
        })
    }

    /// One request, logged in, its body as `body` makes it; the answer's
    /// text, and `Err` starting with the status code if it is not a
    /// success.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<String, String> {
        let url = self.url(path);
        let req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.spec.user, Some(&self.spec.password))
            .header("Accept", "application/json");
        let res = body(req)
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{} from {method} {url}: {text}", status.as_u16()));
        }
        Ok(text)
    }
}

fn first_id(v: &Value) -> Option<u64> {
    v.as_array()?.first()?.get("id")?.as_u64()
}

/// An action as `{id, type, active, status}`, whatever the server's
/// version (`active` and `status` from 0.10; `status` pending/finished
/// and `detailStatus` before).
/// An action's status history as a suite asks about it: for each status
/// type, its latest entry's `messages` (one text, a line each, which
/// `$regex` reads) and `code`, and `count`, the number of entries.
fn by_type(page: &Value) -> Value {
    let entries = page["content"].as_array().cloned().unwrap_or_default();
    let mut out = serde_json::Map::new();
    out.insert("count".into(), json!(entries.len()));
    // The page is newest first; the latest entry of a type wins.
    for e in entries.iter().rev() {
        if let Some(t) = e["type"].as_str() {
            out.insert(
                t.to_owned(),
                json!({"messages": lines(&e["messages"]), "code": e.get("code")}),
            );
        }
    }
    Value::Object(out)
}

/// A list of messages as one text, a line each.
fn lines(messages: &Value) -> String {
    messages
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

/// hawkBit's `maintenanceWindow` for `{opensIn, lasts}` (seconds; a
/// window that opened in the past has a negative `opensIn`) at `now`: a
/// daily Quartz schedule at that time of day, UTC.
fn maintenance_window(w: &Value, now: i64) -> Result<Value, String> {
    let secs = |k: &str| {
        w.get(k)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("window: `{k}` must be a number of seconds"))
    };
    let (opens_in, lasts) = (secs("opensIn")?, secs("lasts")?);
    if !(1..86_400).contains(&lasts) {
        return Err("window: `lasts` must be between 1 and 86399 seconds".to_owned());
    }
    let at = (now + opens_in).rem_euclid(86_400);
    Ok(json!({
        "schedule": format!("{} {} {} ? * *", at % 60, at / 60 % 60, at / 3600),
        "duration": format!("{:02}:{:02}:{:02}", lasts / 3600, lasts / 60 % 60, lasts % 60),
        "timezone": "+00:00",
    }))
}

fn normalise_action(a: &Value) -> Value {
    let legacy = a.get("detailStatus").is_some();
    let status = if legacy {
        a.get("detailStatus")
    } else {
        a.get("status")
    };
    let active = match a.get("active").and_then(Value::as_bool) {
        Some(b) => b,
        None => a.get("status").and_then(Value::as_str) != Some("finished"),
    };
    json!({ "id": a.get("id"), "type": a.get("type"), "active": active, "status": status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_a_daily_schedule_at_its_time() {
        let w =
            maintenance_window(&json!({"opensIn": 10, "lasts": 3725}), 86_400 * 3 + 3_590).unwrap();
        assert_eq!(
            w,
            json!({"schedule": "0 0 1 ? * *", "duration": "01:02:05", "timezone": "+00:00"})
        );
        let before = maintenance_window(&json!({"opensIn": -60, "lasts": 600}), 30).unwrap();
        assert_eq!(before["schedule"], "30 59 23 ? * *");
        assert!(maintenance_window(&json!({"opensIn": 1}), 0).is_err());
    }

    #[test]
    fn action_shapes_of_both_generations() {
        let new = normalise_action(
            &json!({"id": 1, "type": "update", "active": true, "status": "running"}),
        );
        assert_eq!(new["active"], true);
        assert_eq!(new["status"], "running");
        let old = normalise_action(
            &json!({"id": 1, "type": "cancel", "status": "finished", "detailStatus": "canceled"}),
        );
        assert_eq!(old["active"], false);
        assert_eq!(old["status"], "canceled");
    }
}
