//! Recording what the tests send to the gateway's routes outside `/fhir`, so the API contract
//! (`profiles/openapi.json`) is checked against every exchange the tests make, not a sample
//! written for it: `tools/openapi/check_exchanges.py` validates each request and response and
//! requires every documented operation to have been exercised (scripts/test.sh runs it).
//!
//! When `WHG_RECORD_EXCHANGES` names a file, the tests' HTTP clients go through a forward proxy
//! in the test process: it passes each request on unchanged (the Host, so the gateway's own URLs
//! are as without it) and appends one NDJSON line per non-FHIR exchange. Unset, nothing changes.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::response::Response;
use serde_json::{Value, json};

/// The largest body kept in a record; larger ones are recorded as absent.
const MAX_RECORDED: usize = 1 << 20;

/// Bodies the proxy passes on, at most (the gateway's own limits are far lower).
const MAX_FORWARDED: usize = 64 << 20;

/// The proxy's URL, when exchanges are being recorded.
pub fn proxy() -> Option<&'static str> {
    static PROXY: OnceLock<Option<String>> = OnceLock::new();
    PROXY
        .get_or_init(|| {
            let file = std::env::var("WHG_RECORD_EXCHANGES").ok()?;
            Some(start(file))
        })
        .as_deref()
}

/// A client builder that goes through the recording proxy when there is one.
pub fn client_builder() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    match proxy() {
        Some(url) => builder.proxy(reqwest::Proxy::http(url).expect("the proxy's URL")),
        None => builder,
    }
}

fn start(file: String) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .unwrap_or_else(|e| panic!("WHG_RECORD_EXCHANGES={file}: {e}"));
            let state = std::sync::Arc::new(Recorder {
                out: Mutex::new(out),
                http: reqwest::Client::builder()
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap(),
            });
            let app = axum::Router::new().fallback(move |req: Request| {
                let state = state.clone();
                async move { state.forward(req).await }
            });
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().expect("the recording proxy started")
}

struct Recorder {
    out: Mutex<std::fs::File>,
    http: reqwest::Client,
}

/// Headers that belong to one hop, not to the exchange.
const HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-authorization",
];

/// The API's routes: not the FHIR API (its own contract is the CapabilityStatement), nor the
/// pages for people (HTML: the dashboard's, the self-referral form's and the employer-letter
/// link's, checked in a browser by tests/dashboard.rs, tests/self_referral.rs and
/// tests/employer_letters.rs).
fn recorded(path: &str) -> bool {
    !path.starts_with("/fhir")
        && !path.starts_with("/dashboard")
        && !path.starts_with("/refer")
        && !path.starts_with("/letters/approve")
}

fn text(bytes: &[u8]) -> Value {
    if bytes.is_empty() || bytes.len() > MAX_RECORDED {
        return Value::Null;
    }
    std::str::from_utf8(bytes).map_or(Value::Null, |t| json!(t))
}

impl Recorder {
    async fn forward(&self, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let url = parts.uri.to_string();
        let Ok(body) = to_bytes(body, MAX_FORWARDED).await else {
            return Response::builder().status(413).body(Body::empty()).unwrap();
        };
        let mut outgoing = self.http.request(parts.method.clone(), &url);
        for (name, value) in &parts.headers {
            if !HOP.contains(&name.as_str()) {
                outgoing = outgoing.header(name, value);
            }
        }
        let answer = match outgoing.body(body.clone()).send().await {
            Ok(a) => a,
            Err(e) => {
                return Response::builder()
                    .status(502)
                    .body(Body::from(format!("recording proxy: {e}")))
                    .unwrap();
            }
        };
        let status = answer.status();
        let headers = answer.headers().clone();
        let bytes = answer.bytes().await.unwrap_or_default();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        // The gateway's answers only (it sets a request id on every one): not the MESH sandbox's
        // or a mock practice's, which tests reach through the same clients.
        if recorded(parts.uri.path()) && headers.contains_key("x-request-id") {
            let header_map = |h: &axum::http::HeaderMap| {
                let mut m = serde_json::Map::new();
                for name in [
                    "content-type",
                    "location",
                    "retry-after",
                    "www-authenticate",
                    "cache-control",
                    "etag",
                ] {
                    if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
                        m.insert(name.into(), json!(v));
                    }
                }
                Value::Object(m)
            };
            // The security requirement is checked by the header's presence; the token is not kept.
            let mut request_headers = header_map(&parts.headers);
            if let Some(scheme) = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_whitespace().next())
            {
                request_headers["authorization"] = json!(format!("{scheme} redacted"));
            }
            let line = json!({
                "method": parts.method.as_str(),
                "url": path_and_query,
                "request": { "headers": request_headers, "body": text(&body) },
                "status": status.as_u16(),
                "response": { "headers": header_map(&headers), "body": text(&bytes) },
            });
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "{line}");
        }
        let mut response = Response::builder().status(status);
        for (name, value) in &headers {
            if !HOP.contains(&name.as_str()) && name != "content-length" {
                response = response.header(name, value);
            }
        }
        response.body(Body::from(bytes)).unwrap()
    }
}
