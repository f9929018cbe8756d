//! A practice's GP system as the letters tests meet it: a BaRS `$process-message` endpoint with
//! an OAuth2 token endpoint, that fails on demand (500s, 429 with Retry-After, hangs past the
//! gateway's timeout, slowness) and records every message it is sent, and how many of one letter
//! it was handling at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use whg::auth::Principal;

use super::{Actor, Server, refer, referral_for};

pub const SECRET: &str = "receiver-secret-for-tests";

/// What the receiver does with the next message.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Ok,
    Status(u16),
    TooMany {
        retry_after: u64,
    },
    /// Answers 200 only after this long: past the gateway's attempt timeout, the gateway gives up
    /// although the receiver has the message (the at-least-once case).
    Hang(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub request_id: String,
    pub correlation_id: String,
    /// W3C trace context (`traceparent`), empty when none came.
    pub traceparent: String,
    /// The `nhsd-*` headers, by lower-case name.
    pub nhsd: HashMap<String, String>,
    pub bundle: Value,
    pub answered: u16,
    pub at: Instant,
}

#[derive(Default)]
pub struct ReceiverState {
    pub script: VecDeque<Reply>,
    /// What happens when the script has run out.
    pub default: Option<Reply>,
    pub received: Vec<Received>,
    pub token_requests: usize,
    pub issued: HashSet<String>,
    /// Each message takes at least this long (a slow receiver).
    pub delay: Duration,
    /// How many requests carrying each X-Request-ID are being handled now,
    pub in_flight: HashMap<String, usize>,
    /// and how many arrived while another with the same X-Request-ID was being handled: one
    /// letter sent twice at the same time.
    pub overlaps: usize,
}

#[derive(Clone, Default)]
pub struct Receiver(pub Arc<Mutex<ReceiverState>>);

impl Receiver {
    pub async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .route(
                "/fhir/$process-message",
                axum::routing::post(process_message),
            )
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    pub fn script(&self, replies: &[Reply], then: Reply) {
        let mut s = self.0.lock().unwrap();
        s.script = replies.iter().copied().collect();
        s.default = Some(then);
    }

    /// Letters sent while the same letter was still being handled (should be none).
    pub fn overlaps(&self) -> usize {
        self.0.lock().unwrap().overlaps
    }

    pub fn set_delay(&self, d: Duration) {
        self.0.lock().unwrap().delay = d;
    }

    pub fn received(&self) -> Vec<Received> {
        self.0.lock().unwrap().received.clone()
    }

    /// Messages the receiver took (answered 2xx), de-duplicated by X-Request-ID as a real
    /// receiver would, in order of first arrival.
    pub fn delivered(&self) -> Vec<Received> {
        let mut seen = HashSet::new();
        self.received()
            .into_iter()
            .filter(|r| r.answered == 200 && seen.insert(r.request_id.clone()))
            .collect()
    }
}

/// OAuth2 client credentials, the client authenticating with HTTP Basic (RFC 6749 2.3.1).
async fn token(State(r): State<Receiver>, headers: HeaderMap, body: String) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("whg-test:{SECRET}"))
    );
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str())
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let mut s = r.0.lock().unwrap();
    s.token_requests += 1;
    let token = format!("token-{}", s.token_requests);
    s.issued.insert(token.clone());
    axum::Json(json!({ "access_token": token, "token_type": "bearer", "expires_in": 3600, "scope": form.get("scope") })).into_response()
}

async fn process_message(State(r): State<Receiver>, headers: HeaderMap, body: String) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let request_id = header("x-request-id");
    let nhsd_headers: HashMap<String, String> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("nhsd-"))
        .filter_map(|(name, v)| Some((name.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let (reply, delay, authorised) = {
        let mut s = r.0.lock().unwrap();
        let handling = s.in_flight.entry(request_id.clone()).or_default();
        *handling += 1;
        if *handling > 1 {
            s.overlaps += 1;
        }
        let bearer = header("authorization");
        let authorised = bearer
            .strip_prefix("Bearer ")
            .is_some_and(|t| s.issued.contains(t));
        let reply = s.script.pop_front().or(s.default).unwrap_or(Reply::Ok);
        (reply, s.delay, authorised)
    };
    // Handled until this is dropped: when the answer is sent, or when the sender goes away
    // mid-request (killed) and the server drops this handler, which then sends nothing more.
    let handling = Handling {
        receiver: r.clone(),
        request_id: request_id.clone(),
    };
    tokio::time::sleep(delay).await;
    let answered = if !authorised {
        401
    } else {
        match reply {
            Reply::Ok => 200,
            Reply::Status(code) => code,
            Reply::TooMany { .. } => 429,
            Reply::Hang(_) => 200,
        }
    };
    // Recorded as taken before any hang: the receiver has the message even if its answer never
    // reaches the gateway.
    r.0.lock().unwrap().received.push(Received {
        request_id: request_id.clone(),
        correlation_id: header("x-correlation-id"),
        traceparent: header("traceparent"),
        nhsd: nhsd_headers,
        bundle: serde_json::from_str(&body).unwrap_or(Value::Null),
        answered,
        at: Instant::now(),
    });
    if let Reply::Hang(d) = reply {
        tokio::time::sleep(d).await;
    }
    drop(handling);
    let outcome = json!({ "resourceType": "OperationOutcome", "issue": [{ "severity": "error", "code": "processing", "diagnostics": format!("test receiver answered {answered}") }] });
    let mut response =
        (StatusCode::from_u16(answered).unwrap(), axum::Json(outcome)).into_response();
    if let Reply::TooMany { retry_after } = reply {
        response
            .headers_mut()
            .insert("retry-after", retry_after.to_string().parse().unwrap());
    }
    response
}

/// The configuration of a gateway whose practice C88901 takes letters at the receiver at
/// `receiver_url`, with `extra` (more configuration) and short retry times.
pub fn letters_config(receiver_url: &str, dir_for_secret: &std::path::Path, extra: &str) -> String {
    let secret = dir_for_secret.join("c88901-secret");
    std::fs::write(&secret, SECRET).unwrap();
    format!(
        r#"
[delivery]
initial_backoff_ms = 100
max_backoff_ms = 400
attempt_timeout_ms = 1000
poll_interval_ms = 100
{extra}

[directory.C88901]
channel = "fhir"
name = "Porter Brook Surgery"
endpoint = "{receiver_url}/fhir"
token_url = "{receiver_url}/token"
client_id = "whg-test"
client_secret_file = {secret:?}
scope = "system/DocumentReference.c"
target_identifier = "{PRACTICE_TARGET}"
"#
    )
}

/// The practice system's BaRS target identifier in the letters tests' directory.
pub const PRACTICE_TARGET: &str = "https://fhir.nhs.uk/Id/dos-service-id|1000000042";

/// The service the letters tests' referrals go to, and its adviser.
pub const WHS: &str = "sheffield-whs";

pub fn whs(server: &Server) -> Actor<'_> {
    server.as_(Principal::service(WHS))
}

/// A referral for person `n` to WHS, triaged as accepted; returns its id and Patient id.
pub async fn accepted_referral(server: &Server, n: usize) -> (String, String) {
    let (sr, patient) = refer(server, &referral_for(n, WHS)).await;
    let (status, _, body) = whs(server)
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (sr, patient)
}

/// An adviser's letter to the GP.
pub fn letter(priority: &str, summary: &str) -> Value {
    json!({
        "priority": priority,
        "summary": summary,
        "supportGiven": ["advice-session", "return-to-work-plan"],
        "plan": { "type": "return-to-work-plan", "text": "Phased return over four weeks." },
        "recommendations": "Consider amended duties on the next fit note.",
        "outcomes": { "employment": "returned-to-work", "health": ["managing-health-better"] },
        "author": { "name": "Sam Patel", "role": "Work and health adviser" }
    })
}

/// A message being handled, counted in [`ReceiverState::in_flight`] until dropped.
struct Handling {
    receiver: Receiver,
    request_id: String,
}

impl Drop for Handling {
    fn drop(&mut self) {
        let mut s = self.receiver.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = s.in_flight.get_mut(&self.request_id) {
            *n -= 1;
        }
    }
}

/// The PDF of the letter a BaRS message carries.
pub fn document_pdf(bundle: &Value) -> Vec<u8> {
    let doc = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "DocumentReference")
        .expect("a DocumentReference in the message");
    base64::engine::general_purpose::STANDARD
        .decode(
            doc["resource"]["content"][0]["attachment"]["data"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
}

/// The text of a PDF, read by an independent implementation (pypdf).
pub fn pdf_text(pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("whg-letter-{}.pdf", uuid::Uuid::now_v7()));
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new(super::python())
        .args([
            "-c",
            "import sys, pypdf; r = pypdf.PdfReader(sys.argv[1]); print(len(r.pages)); print('\\n'.join(p.extract_text() for p in r.pages))",
        ])
        .arg(&path)
        .output()
        .expect("run python");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "pypdf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A letter's status document, as its service reads it.
pub async fn letter_state(server: &Server, id: &str) -> Value {
    let (status, body) = whs(server).get(&format!("/api/v1/letters/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until every letter in `ids` is in one of `states`; returns their status documents.
pub async fn wait_for(
    server: &Server,
    ids: &[String],
    states: &[&str],
    within: Duration,
) -> Vec<Value> {
    let until = Instant::now() + within;
    loop {
        let mut all = Vec::new();
        for id in ids {
            all.push(letter_state(server, id).await);
        }
        if all
            .iter()
            .all(|l| states.contains(&l["delivery"]["state"].as_str().unwrap_or_default()))
        {
            return all;
        }
        assert!(
            Instant::now() < until,
            "letters not {states:?} in time: {:#?}\n{}",
            all.iter()
                .map(|l| (&l["delivery"]["state"], &l["delivery"]["lastError"]))
                .collect::<Vec<_>>(),
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until one letter is in `state`; returns its status document.
pub async fn wait_one(server: &Server, id: &str, state: &str, secs: u64) -> Value {
    let ids = [id.to_string()];
    let mut done = wait_for(server, &ids, &[state], Duration::from_secs(secs)).await;
    done.remove(0)
}

/// Text with every run of whitespace made one space: PDF text extraction breaks lines where the
/// layout wrapped them.
pub fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
