//! The artifacts a DMF device under test downloads, served by the harness
//! as hawkBit serves them: one set per case, behind the action's security
//! token (`Authorization: TargetToken <token>`, 401 without it), over
//! HTTP, over HTTPS with a certificate of a CA made for the run (handed
//! to the device as a file, `DMCONF_ARTIFACT_CA`), and over HTTPS with a
//! certificate no CA signed, which a device that checks certificates
//! never reaches. Every request the device makes reaches its case as an
//! arrival (properties `http_scheme`, `http_method`, `http_path`,
//! `http_status`; its `authorization` header), so a suite judges a
//! download as it judges any message.
//!
//! Each case gets three files: `firmware.bin` with the hashes and size
//! its DOWNLOAD_AND_INSTALL announces, `tampered.bin` whose bytes differ
//! from the same announced hashes, and `missing.bin`, which answers 404.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::certs::{self, RunCa};
use crate::reaper::RunDir;

use crate::message::{Message, hex};

/// How large each served artifact is.
const SIZE: usize = 4096;

/// One case's files and where its requests go.
struct Route {
    token: String,
    good: Arc<Vec<u8>>,
    tampered: Arc<Vec<u8>>,
    tx: UnboundedSender<Message>,
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;

/// The run's artifact CA, in the server's folder.
const CA_FILE: &str = "ca.pem";

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// The harness's artifact server, shared by the cases of a run.
pub(crate) struct ArtifactServer {
    /// `http://host:port`, `https://…` (trusted) and `https://…` (not).
    bases: [String; 3],
    routes: Routes,
    /// The folder of the CA file (`ca.pem`), removed with the server.
    dir: RunDir,
}

/// A TCP listener whose connections are TLS, each handshake bounded; a
/// client that fails its handshake is dropped, and the next one served.
struct TlsListener {
    tcp: TcpListener,
    tls: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = axum::serve::Listener::accept(&mut self.tcp).await;
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_WITHIN, self.tls.accept(tcp)).await
            {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves the files over `scheme` on `listener`.
fn serve_on<L: axum::serve::Listener>(listener: L, routes: &Routes, scheme: &'static str)
where
    L::Addr: std::fmt::Debug,
{
    let app = Router::new()
        .route("/{case}/{file}", get(serve))
        .with_state((routes.clone(), scheme));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

impl ArtifactServer {
    /// Listens on `host` (the brokers' listen address), on three ports of
    /// its own: HTTP, HTTPS, and HTTPS with an unsigned certificate.
    pub(crate) async fn start(host: &str) -> Result<Self, String> {
        let bind = || async {
            TcpListener::bind((host, 0))
                .await
                .map_err(|e| format!("the artifact server cannot listen on {host}: {e}"))
        };
        // A device on another host reaches the brokers' address; on
        // loopback, the loopback one.
        let shown = if host == "0.0.0.0" { "127.0.0.1" } else { host };
        let hosts = vec![
            shown.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let ca = RunCa::new("dmconf artifact CA (one run)")?;
        let trusted = certs::server_config(&ca.issue(hosts.clone())?)?;
        let untrusted = certs::server_config(&certs::self_signed(hosts)?)?;
        let dir = RunDir::new("artifacts")?;
        crate::broker::private_file(&dir.join(CA_FILE), &ca.pem())?;

        let routes: Routes = Arc::default();
        let plain = bind().await?;
        let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
        let bases = [
            format!("http://{shown}:{}", port(&plain)?),
            String::new(),
            String::new(),
        ];
        serve_on(plain, &routes, "http");
        let mut server = ArtifactServer { bases, routes, dir };
        for (i, (config, scheme)) in [(trusted, "https"), (untrusted, "https-unsigned")]
            .into_iter()
            .enumerate()
        {
            let tcp = bind().await?;
            server.bases[i + 1] = format!("https://{shown}:{}", port(&tcp)?);
            let tls = TlsAcceptor::from(config);
            serve_on(TlsListener { tcp, tls }, &server.routes, scheme);
        }
        Ok(server)
    }

    /// The run's artifact CA, as a PEM file, for the device
    /// (`DMCONF_ARTIFACT_CA`).
    pub(crate) fn ca_file(&self) -> String {
        self.dir.join(CA_FILE).to_string_lossy().into_owned()
    }

    /// Serves `case`'s files, its requests going to `tx`; returns the
    /// variables its suites use: `targetToken`, `artifactUrl`,
    /// `artifactHttpsUrl`, `unsignedUrl` (HTTPS with a certificate no CA
    /// signed), `artifactPath`, `artifactSize`, `artifactMd5`,
    /// `artifactSha1`, `artifactSha256`, `tamperedUrl` and `missingUrl`.
    pub(crate) fn open_case(
        &self,
        case: &str,
        tx: UnboundedSender<Message>,
    ) -> Vec<(&'static str, Value)> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let good: Vec<u8> = (0..SIZE)
            .map(|i| (i as u8) ^ token.as_bytes()[i % token.len()])
            .collect();
        let mut tampered = good.clone();
        tampered[SIZE / 2] ^= 0xff;
        let path = |file: &str| format!("/{case}/{file}");
        let vars = vec![
            ("targetToken", json!(token)),
            (
                "artifactUrl",
                json!(format!("{}{}", self.bases[0], path("firmware.bin"))),
            ),
            (
                "artifactHttpsUrl",
                json!(format!("{}{}", self.bases[1], path("firmware.bin"))),
            ),
            (
                "unsignedUrl",
                json!(format!("{}{}", self.bases[2], path("firmware.bin"))),
            ),
            ("artifactPath", json!(path("firmware.bin"))),
            ("artifactSize", json!(SIZE)),
            ("artifactMd5", json!(md5_hex(&good))),
            ("artifactSha1", json!(sha1_hex(&good))),
            ("artifactSha256", json!(crate::message::sha256(&good))),
            (
                "tamperedUrl",
                json!(format!("{}{}", self.bases[0], path("tampered.bin"))),
            ),
            (
                "missingUrl",
                json!(format!("{}{}", self.bases[0], path("missing.bin"))),
            ),
        ];
        let route = Route {
            token,
            good: Arc::new(good),
            tampered: Arc::new(tampered),
            tx,
        };
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        // Cases that ended no longer take requests.
        routes.retain(|_, r| !r.tx.is_closed());
        routes.insert(case.to_owned(), route);
        vars
    }
}

/// Answers a download, and hands the request to its case.
async fn serve(
    State((routes, scheme)): State<(Routes, &'static str)>,
    Path((case, file)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body, tx) = {
        let routes = routes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(route) = routes.get(&case) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let status = if auth.as_deref() != Some(&format!("TargetToken {}", route.token)) {
            StatusCode::UNAUTHORIZED
        } else if file == "firmware.bin" || file == "tampered.bin" {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        let body = match (status, file.as_str()) {
            (StatusCode::OK, "firmware.bin") => Some(route.good.clone()),
            (StatusCode::OK, _) => Some(route.tampered.clone()),
            _ => None,
        };
        (status, body, route.tx.clone())
    };
    let _ = tx.send(request(scheme, method.as_str(), &case, &file, auth, status));
    match body {
        Some(bytes) => (status, Bytes::from((*bytes).clone())).into_response(),
        None => status.into_response(),
    }
}

/// A download request as the case's transcript shows it.
pub(crate) fn request(
    scheme: &str,
    method: &str,
    case: &str,
    file: &str,
    auth: Option<String>,
    status: StatusCode,
) -> Message {
    let mut headers = Map::new();
    if let Some(a) = auth {
        headers.insert("authorization".into(), json!(a));
    }
    let mut properties = Map::new();
    properties.insert("http_scheme".into(), json!(scheme));
    properties.insert("http_method".into(), json!(method));
    properties.insert("http_path".into(), json!(format!("/{case}/{file}")));
    properties.insert("http_status".into(), json!(status.as_u16()));
    Message {
        channel: format!("{method} /{case}/{file}"),
        headers,
        properties,
        body: Vec::new(),
        raw: false,
    }
}

/// Whether a message of the transcript is a download request.
pub(crate) fn is_download(view: &Value) -> bool {
    view["properties"]["http_method"].is_string()
}

/// The MD5 of `bytes`, in hex, as DMF announces an artifact's.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&md5::compute(bytes).0)
}

/// The SHA-1 of `bytes`, in hex, as DMF announces an artifact's.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes).as_ref())
}
