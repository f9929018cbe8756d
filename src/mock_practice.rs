//! `whg mock-practice`: a GP practice system in a box, for integrators and for the quick start.
//!
//! It takes the gateway's letters as a BaRS receiver does (`POST {base}/$process-message`, a
//! `message` Bundle), answers as a practice system would, and keeps what it received so a person
//! can see a letter arrive (`GET /received`). Its mode says how it answers, and can be switched
//! while it runs (`PUT /mode` with `accept`, `reject`, `down` or `slow`), so the gateway's retries,
//! rejections and timeouts can be watched without a restart.
//!
//! It holds only what test-tenant letters carry (synthetic people), in memory, and prints
//! nothing about the person: only message ids, events and document types.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

/// How the mock practice answers a letter.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Takes each well-formed letter: 200 with a BaRS response message (`code` ok).
    Accept,
    /// Refuses each letter as a practice system that cannot file it: 422 with an OperationOutcome.
    Reject,
    /// Unavailable: 503 with `Retry-After`, as a system down for maintenance answers.
    Down,
    /// Takes each letter after `--delay-ms` (set it above the gateway's `[delivery]
    /// attempt_timeout_ms` to see an attempt time out and be retried).
    Slow,
}

/// The most letters kept for `GET /received` (the oldest are dropped first).
const KEPT: usize = 200;

struct Practice {
    mode: Mutex<Mode>,
    delay: Duration,
    received: Mutex<VecDeque<Value>>,
    base: String,
}

impl Practice {
    /// Records a letter taken, with the time, for `GET /received` (at most [`KEPT`], the oldest
    /// dropped first).
    fn keep(&self, mut record: Value) {
        record["receivedAt"] =
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let mut kept = self.received.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(record);
    }
}

type Shared = Arc<Practice>;

/// A practice system's MESH mailbox, read from a TOML file's `[mesh]` table (the keys the
/// gateway's own `[mesh]` takes: url, mailbox, password_file, shared_key_file, TLS files).
pub fn mesh_mailbox(path: &std::path::Path) -> Result<whg::delivery::mesh::MeshClient, String> {
    #[derive(serde::Deserialize)]
    struct File {
        mesh: whg::config::MeshConfig,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    whg::delivery::mesh::MeshClient::new(&file.mesh, Duration::from_secs(30))
}

pub fn run(
    listen: SocketAddr,
    mode: Mode,
    delay_ms: u64,
    mesh: Option<std::path::PathBuf>,
) -> std::process::ExitCode {
    let mesh = match mesh.as_deref().map(mesh_mailbox).transpose() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("whg: --mesh: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    crate::local_server::run("mock practice", listen, |address| async move {
        let practice = Arc::new(Practice {
            mode: Mutex::new(mode),
            delay: Duration::from_millis(delay_ms),
            received: Mutex::new(VecDeque::new()),
            base: format!("http://{address}/fhir"),
        });
        // The line a script waits for (the port may have been chosen by the system).
        println!(
            "mock practice listening on http://{address} (FHIR base http://{address}/fhir, mode {})",
            mode_name(mode)
        );
        if let Some(mailbox) = mesh {
            println!(
                "reading the MESH mailbox {} for letters (GP Connect Send Document)",
                mailbox.mailbox()
            );
            tokio::spawn(read_mailbox(practice.clone(), mailbox));
        }
        router(practice)
    })
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Accept => "accept",
        Mode::Reject => "reject",
        Mode::Down => "down",
        Mode::Slow => "slow",
    }
}

fn router(practice: Shared) -> Router {
    Router::new()
        .route("/fhir/$process-message", post(process_message))
        .route("/fhir/metadata", get(metadata))
        .route("/received", get(received))
        .route("/mode", put(set_mode).get(show_mode))
        .with_state(practice)
}

fn fhir(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json"),
    );
    response
}

fn outcome(code: &str, nhs_code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": code,
            "details": { "coding": [{
                "system": "https://fhir.nhs.uk/CodeSystem/http-error-codes",
                "code": nhs_code,
            }] },
            "diagnostics": diagnostics,
        }],
    })
}

/// What a letter message carries that a practice system files: its MessageHeader and the
/// document. `Err` says what is missing, as a practice system's refusal would.
fn read_letter(body: &[u8]) -> Result<(Value, Value), String> {
    let bundle: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if bundle["resourceType"] != "Bundle" || bundle["type"] != "message" {
        return Err("expected a FHIR message Bundle (resourceType Bundle, type message)".into());
    }
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let header = entries
        .first()
        .map(|e| e["resource"].clone())
        .filter(|r| r["resourceType"] == "MessageHeader")
        .ok_or("a message Bundle's first entry must be its MessageHeader")?;
    if header["id"].as_str().is_none_or(str::is_empty) {
        return Err("the MessageHeader has no id, so no response can name it".into());
    }
    // A BaRS message carries the document's resources itself; an ITK3 (STU3) one carries them
    // in a document Bundle inside the message.
    let resources: Vec<&Value> = entries
        .iter()
        .map(|e| &e["resource"])
        .flat_map(|r| {
            let inner: Vec<&Value> = r["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| &e["resource"])
                .collect();
            std::iter::once(r).chain(inner)
        })
        .collect();
    let summary = json!({
        "bundle": bundle["id"],
        "messageHeader": header["id"],
        // R4 names the event eventCoding; STU3 (ITK3) event.
        "event": header["eventCoding"]["code"].as_str().or(header["event"]["code"].as_str()),
        "resources": resources.iter().filter_map(|r| r["resourceType"].as_str()).collect::<Vec<_>>(),
        "documents": resources.iter()
            .filter(|r| r["resourceType"] == "DocumentReference" || r["resourceType"] == "Composition")
            .map(|r| json!({
                "resourceType": r["resourceType"],
                "type": r["type"]["coding"][0]["display"].as_str().or(r["type"]["coding"][0]["code"].as_str()),
            }))
            .collect::<Vec<_>>(),
    });
    Ok((header, summary))
}

/// The BaRS response message a receiver answers with: its MessageHeader names the request's
/// (`response.identifier`), with `code` ok, and goes back to the request's source.
fn response_message(practice: &Practice, request_header: &Value) -> Value {
    let id = uuid::Uuid::now_v7().to_string();
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::now_v7().to_string(),
        "meta": { "lastUpdated": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true) },
        "type": "message",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "entry": [{
            "fullUrl": format!("urn:uuid:{id}"),
            "resource": {
                "resourceType": "MessageHeader",
                "id": id,
                "eventCoding": request_header["eventCoding"],
                "destination": [{ "endpoint": request_header["source"]["endpoint"] }],
                "source": { "name": "whg mock-practice", "endpoint": practice.base },
                "response": { "identifier": request_header["id"], "code": "ok" },
            },
        }],
    })
}

async fn process_message(
    State(practice): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mode = *practice.mode.lock().unwrap_or_else(|p| p.into_inner());
    match mode {
        Mode::Down => {
            let mut response = fhir(
                StatusCode::SERVICE_UNAVAILABLE,
                outcome(
                    "transient",
                    "SERVICE_UNAVAILABLE",
                    "the practice system is down for maintenance (whg mock-practice --mode down)",
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        }
        Mode::Slow => tokio::time::sleep(practice.delay).await,
        Mode::Accept | Mode::Reject => {}
    }
    let fhir_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/fhir+json"));
    if !fhir_json {
        return fhir(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            outcome(
                "not-supported",
                "INVALID_VALUE",
                "send the message as application/fhir+json",
            ),
        );
    }
    let (header_resource, summary) = match read_letter(&body) {
        Ok(read) => read,
        Err(why) => {
            return fhir(
                StatusCode::BAD_REQUEST,
                outcome("structure", "REC_BAD_REQUEST", &why),
            );
        }
    };
    if mode == Mode::Reject {
        println!(
            "refused message {} ({})",
            summary["messageHeader"], summary["event"]
        );
        return fhir(
            StatusCode::UNPROCESSABLE_ENTITY,
            outcome(
                "business-rule",
                "REC_UNPROCESSABLE_ENTITY",
                "the practice system cannot file this letter (whg mock-practice --mode reject)",
            ),
        );
    }
    println!(
        "received message {} ({}): {} document(s)",
        summary["messageHeader"],
        summary["event"],
        summary["documents"].as_array().map_or(0, Vec::len)
    );
    let answer = response_message(&practice, &header_resource);
    let mut record = summary;
    record["response"] = answer["entry"][0]["resource"]["id"].clone();
    practice.keep(record);
    fhir(StatusCode::OK, answer)
}

/// `GET /received`: the letters taken, newest last (ids, events and document types only).
async fn received(State(practice): State<Shared>) -> Json<Value> {
    let kept = practice.received.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!({ "total": kept.len(), "received": kept.iter().collect::<Vec<_>>() }))
}

async fn show_mode(State(practice): State<Shared>) -> Json<Value> {
    let mode = *practice.mode.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!({ "mode": mode }))
}

/// `PUT /mode` with `{"mode": "reject"}` (or a bare `reject`): answers differently from now on.
async fn set_mode(State(practice): State<Shared>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    let wanted = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("mode").cloned().or(Some(v)))
        .and_then(|v| serde_json::from_value::<Mode>(v).ok())
        .or_else(|| serde_json::from_value::<Mode>(json!(text.trim())).ok());
    match wanted {
        Some(mode) => {
            *practice.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
            println!("mode {}", mode_name(mode));
            Json(json!({ "mode": mode })).into_response()
        }
        None => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "mode must be accept, reject, down or slow" })),
        )
            .into_response(),
    }
}

/// `GET /fhir/metadata`: what the mock takes, as a receiver's CapabilityStatement says it.
async fn metadata(State(practice): State<Shared>) -> Response {
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
            "kind": "instance",
            "software": { "name": "whg mock-practice" },
            "implementation": { "description": "A GP practice system in a box: takes the gateway's letters", "url": practice.base },
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json"],
            "messaging": [{
                "endpoint": [{ "protocol": { "system": "http://terminology.hl7.org/CodeSystem/message-transport", "code": "http" }, "address": format!("{}/$process-message", practice.base) }],
                "supportedMessage": [{ "mode": "receiver", "definition": "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-response" }],
            }],
        }),
    )
}

/// The practice system's side of GP Connect Send Document over MESH: it reads its inbox, takes
/// each letter off MESH, and answers with ITK3 acknowledgements as its mode says: 20013 (it has
/// the message) then 30001 (filed) when accepting; 20013 then 30002 ("patient not known here")
/// when rejecting; 20009 (payload validation failure) for what is not a letter; nothing while
/// down (letters wait in MESH); the acknowledgements after the delay when slow.
async fn read_mailbox(practice: Shared, mailbox: whg::delivery::mesh::MeshClient) {
    use whg::delivery::mesh::{ACK_WORKFLOW, WORKFLOW, itk_response};
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mode = *practice.mode.lock().unwrap_or_else(|p| p.into_inner());
        if mode == Mode::Down {
            continue;
        }
        let Ok(ids) = mailbox.inbox().await else {
            continue;
        };
        for id in ids {
            let Ok(inbound) = mailbox.download(&id, 16 << 20).await else {
                continue;
            };
            if mailbox.acknowledge(&id).await.is_err() || inbound.workflow != WORKFLOW {
                continue;
            }
            if mode == Mode::Slow {
                tokio::time::sleep(practice.delay).await;
            }
            let body = inbound.body.unwrap_or_default();
            let answers = |code: &'static str, display: &'static str, original: &str| {
                (
                    code,
                    itk_response(original, code, display, mailbox.mailbox()),
                )
            };
            let acks = match read_letter(&body) {
                Ok((header, summary)) => {
                    let original = header["id"].as_str().unwrap_or_default().to_string();
                    println!(
                        "received MESH message {} ({}): {} document(s)",
                        summary["messageHeader"],
                        summary["event"],
                        summary["documents"].as_array().map_or(0, Vec::len)
                    );
                    let filed = !summary["documents"].as_array().is_none_or(Vec::is_empty);
                    let mut record = summary;
                    record["channel"] = json!("mesh");
                    if !filed {
                        vec![answers("20009", "Payload validation failure", &original)]
                    } else if mode == Mode::Reject {
                        vec![
                            answers("20013", "Success", &original),
                            answers("30002", "Patient not known here", &original),
                        ]
                    } else {
                        practice.keep(record);
                        vec![
                            answers("20013", "Success", &original),
                            answers("30001", "Patient known here", &original),
                        ]
                    }
                }
                // Unreadable: answered to the sender's mailbox, as ITK3 says (10009), naming
                // what MESH says the sender's id for it was.
                Err(_) => vec![answers(
                    "10009",
                    "Unreadable message received",
                    &inbound.local_id,
                )],
            };
            for (code, ack) in acks {
                let local = format!("{}-{code}", inbound.local_id);
                let _ = mailbox
                    .send_on(ACK_WORKFLOW, &inbound.sender, "ITK3 response", &local, &ack)
                    .await;
            }
        }
    }
}
