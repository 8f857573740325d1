//! The reference server's Management API: the subset of hawkBit's
//! `/rest/v1` that drives a DMF scenario, with HTTP Basic login
//! `admin`/`admin` as hawkBit ships it.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::multipart::MultipartError;
use axum::extract::{Multipart, Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::Shared;
use super::state::{Assignment, MgmtError, Window};

/// `Basic` credentials `admin:admin`, hawkBit's default login.
const ADMIN_LOGIN: &str = "Basic YWRtaW46YWRtaW4=";

type S = Extract<Arc<Shared>>;

impl IntoResponse for MgmtError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(json!({ "message": self.1 }))).into_response()
    }
}

fn login(headers: &HeaderMap) -> Result<(), MgmtError> {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(ADMIN_LOGIN) => Ok(()),
        _ => Err(MgmtError(401, "Full authentication is required".into())),
    }
}

/// Serves the API on 127.0.0.1 at `port` (0: a free one); returns the
/// task and the base URL.
pub(super) async fn serve(
    shared: Arc<Shared>,
    port: u16,
) -> Result<(JoinHandle<()>, String), String> {
    let app = Router::new()
        .route("/rest/v1/userinfo", get(userinfo))
        .route("/rest/v1/softwaremodules", post(create_modules))
        .route(
            "/rest/v1/softwaremodules/{module}/artifacts",
            post(upload_artifact),
        )
        .route(
            "/{tenant}/controller/v1/{target}/softwaremodules/{module}/artifacts/{file}",
            get(download),
        )
        .route("/rest/v1/distributionsets", post(create_sets))
        .route("/rest/v1/targettypes", post(create_target_types))
        .route(
            "/rest/v1/targets/{target}",
            get(target).put(update_target).delete(delete_target),
        )
        .route("/rest/v1/targets/{target}/attributes", get(attributes))
        .route("/rest/v1/targets/{target}/installedDS", get(installed))
        .route("/rest/v1/targets/{target}/assignedDS", post(assign))
        .route("/rest/v1/targets/{target}/actions", get(actions))
        .route(
            "/rest/v1/targets/{target}/actions/{action}",
            get(action).delete(cancel),
        )
        .route(
            "/rest/v1/targets/{target}/actions/{action}/status",
            get(statuses),
        )
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("management API: cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("management API: {e}"))?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base = format!("http://{addr}");
    shared.state().set_download_base(&base);
    Ok((task, base))
}

async fn userinfo(Extract(s): S, h: HeaderMap) -> Result<Json<Value>, MgmtError> {
    login(&h)?;
    let tenant = s.state().tenant().to_owned();
    Ok(Json(json!({ "tenant": tenant, "username": "admin" })))
}

/// A body of one item or an array of them, as hawkBit takes it.
fn items(body: Value) -> Vec<Value> {
    match body {
        Value::Array(a) => a,
        other => vec![other],
    }
}

/// A POST that creates each of `items(body)` by `make`, answered 201 with
/// what was made, as an array.
fn create_each(
    body: Value,
    make: impl FnMut(Value) -> Result<Value, MgmtError>,
) -> Result<(StatusCode, Json<Value>), MgmtError> {
    let created = items(body)
        .into_iter()
        .map(make)
        .collect::<Result<_, _>>()?;
    Ok((StatusCode::CREATED, Json(Value::Array(created))))
}

fn text(v: &Value, key: &str) -> Result<String, MgmtError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| MgmtError(400, format!("`{key}` is required")))
}

async fn create_modules(
    Extract(s): S,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), MgmtError> {
    login(&h)?;
    create_each(body, |m| {
        let (name, version, kind) = (text(&m, "name")?, text(&m, "version")?, text(&m, "type")?);
        let id = s.state().create_module(&kind, &version);
        Ok(json!({"id": id, "name": name, "version": version, "type": kind}))
    })
}

/// `POST /rest/v1/softwaremodules/{id}/artifacts`: a multipart form
/// whose part `file` is the artifact (`filename` may rename it).
async fn upload_artifact(
    Extract(s): S,
    Path(module): Path<u64>,
    h: HeaderMap,
    mut form: Multipart,
) -> Result<(StatusCode, Json<Value>), MgmtError> {
    login(&h)?;
    let bad = |e: MultipartError| MgmtError(400, format!("multipart: {e}"));
    let (mut file, mut rename) = (None, None);
    while let Some(part) = form.next_field().await.map_err(bad)? {
        match part.name() {
            Some("file") => {
                let name = part.file_name().unwrap_or("file").to_owned();
                file = Some((name, part.bytes().await.map_err(bad)?.to_vec()));
            }
            Some("filename") => rename = Some(part.text().await.map_err(bad)?),
            _ => {}
        }
    }
    let (name, bytes) = file.ok_or_else(|| MgmtError(400, "no part `file`".into()))?;
    let name = rename.filter(|n| !n.is_empty()).unwrap_or(name);
    let answer = s.state().add_artifact(module, &name, bytes)?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// The target's installed distribution set; no content if none.
async fn installed(
    Extract(s): S,
    Path(target): Path<String>,
    h: HeaderMap,
) -> Result<Response, MgmtError> {
    login(&h)?;
    Ok(match s.state().installed(&target)? {
        Some(id) => Json(json!({ "id": id })).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// hawkBit's DDI download of an artifact, which DMF's URLs point to.
async fn download(
    Extract(s): S,
    Path((_tenant, target, module, file)): Path<(String, String, u64, String)>,
    h: HeaderMap,
) -> Result<Vec<u8>, MgmtError> {
    let auth = h.get("authorization").and_then(|v| v.to_str().ok());
    let bytes = s.state().download(&target, module, &file, auth)?;
    Ok((*bytes).clone())
}

async fn create_target_types(
    Extract(s): S,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), MgmtError> {
    login(&h)?;
    create_each(body, |t| {
        let name = text(&t, "name")?;
        let id = s.state().create_target_type(&name)?;
        Ok(json!({"id": id, "name": name}))
    })
}

async fn create_sets(
    Extract(s): S,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), MgmtError> {
    login(&h)?;
    create_each(body, |d| {
        let (name, version) = (text(&d, "name")?, text(&d, "version")?);
        let modules: Vec<u64> = d
            .get("modules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("id").and_then(Value::as_u64))
            .collect();
        if modules.is_empty() {
            return Err(MgmtError(400, "a distribution set needs a module".into()));
        }
        let id = s.state().create_set(modules)?;
        Ok(json!({"id": id, "name": name, "version": version}))
    })
}

async fn target(
    Extract(s): S,
    h: HeaderMap,
    Path(t): Path<String>,
) -> Result<Json<Value>, MgmtError> {
    login(&h)?;
    s.state().target(&t).map(Json)
}

/// `PUT /rest/v1/targets/{id}`: of its fields, the address.
async fn update_target(
    Extract(s): S,
    h: HeaderMap,
    Path(t): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, MgmtError> {
    login(&h)?;
    let mut state = s.state();
    match body.get("address").and_then(Value::as_str) {
        Some(a) => state.set_address(&t, a).map(Json),
        None => state.target(&t).map(Json),
    }
}

async fn delete_target(
    Extract(s): S,
    h: HeaderMap,
    Path(t): Path<String>,
) -> Result<StatusCode, MgmtError> {
    login(&h)?;
    let out = s.state().delete_target(&t)?;
    s.send(out).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn attributes(
    Extract(s): S,
    h: HeaderMap,
    Path(t): Path<String>,
) -> Result<Response, MgmtError> {
    login(&h)?;
    let attrs = s.state().attributes(&t)?;
    Ok(if attrs.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Json(attrs).into_response()
    })
}

async fn assign(
    Extract(s): S,
    h: HeaderMap,
    Path(t): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, MgmtError> {
    login(&h)?;
    let mut ids = Vec::new();
    for a in items(body) {
        let ds = a
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| MgmtError(400, "`id` is required".into()))?;
        let window = match a.get("maintenanceWindow") {
            None | Some(Value::Null) => None,
            Some(w) => {
                let field = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or_default();
                let parsed = Window::parse(field("schedule"), field("duration"), field("timezone"))
                    .map_err(|e| MgmtError(400, format!("maintenanceWindow: {e}")))?;
                Some(parsed)
            }
        };
        let how = Assignment {
            download_only: a.get("type").and_then(Value::as_str) == Some("downloadonly"),
            confirm: a.get("confirmationRequired").and_then(Value::as_bool) == Some(true),
            window,
        };
        let (id, out) = s.state().assign(&t, ds, how)?;
        s.send(out).await;
        ids.push(json!({ "id": id }));
    }
    let n = ids.len();
    Ok(Json(json!({
        "assigned": n, "alreadyAssigned": 0, "total": n, "assignedActions": ids,
    })))
}

async fn actions(
    Extract(s): S,
    h: HeaderMap,
    Path(t): Path<String>,
) -> Result<Json<Value>, MgmtError> {
    login(&h)?;
    let list = s.state().actions(&t)?;
    let n = list.len();
    Ok(Json(json!({ "content": list, "total": n, "size": n })))
}

async fn action(
    Extract(s): S,
    h: HeaderMap,
    Path((t, a)): Path<(String, u64)>,
) -> Result<Json<Value>, MgmtError> {
    login(&h)?;
    s.state().action(&t, a).map(Json)
}

async fn statuses(
    Extract(s): S,
    h: HeaderMap,
    Path((t, a)): Path<(String, u64)>,
) -> Result<Json<Value>, MgmtError> {
    login(&h)?;
    let list = s.state().statuses(&t, a)?;
    let n = list.len();
    Ok(Json(json!({ "content": list, "total": n, "size": n })))
}

async fn cancel(
    Extract(s): S,
    h: HeaderMap,
    Path((t, a)): Path<(String, u64)>,
) -> Result<StatusCode, MgmtError> {
    login(&h)?;
    let out = s.state().cancel(&t, a)?;
    s.send(out).await;
    Ok(StatusCode::NO_CONTENT)
}
