//! Attack 10: the gateway's outbound requests. A client system's vendor chooses its JWKS URL and
//! controls that host's DNS, so the URL must be parsed (not prefix-matched), its addresses must
//! be public unless the deployment allows more, redirects are never followed, answers are read
//! only up to a bound within a time limit, and nothing fetched is echoed to the unauthenticated
//! caller. Letters to a practice's FHIR endpoint likewise never follow a redirect (the person's
//! details would go wherever it pointed) and the practice system's answers are read bounded.
//!
//! The remote ends are raw TCP servers in the test, so they can redirect, stream without end,
//! hang, and count what they were sent and what they managed to write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use whg::auth::Principal;

use super::token::{claims, exchange, key_pair, register, try_register};
use crate::common::*;

/// What a [`Remote`] answers every request with.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A status and a JSON body.
    Json(u16, String),
    /// A redirect to another URL.
    Redirect(u16, String),
    /// `total` bytes of body with this status, written 64 KiB at a time, its length declared
    /// or not (then the body ends when the connection closes).
    Endless {
        status: u16,
        total: usize,
        declare_length: bool,
    },
    /// Reads the request and never answers.
    Hang,
}

#[derive(Default)]
struct Counters {
    /// Connections accepted, whether or not a request followed (a TLS handshake never does).
    connections: AtomicUsize,
    hits: AtomicUsize,
    /// The most body bytes written on one connection before it closed.
    most_written: AtomicUsize,
}

/// A raw HTTP/1.1 server on loopback.
pub struct Remote {
    pub url: String,
    counters: Arc<Counters>,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Remote {
    pub async fn start(answer: Answer) -> Remote {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let remote = Remote {
            url,
            counters: Arc::default(),
            answer: Arc::new(Mutex::new(answer)),
            requests: Arc::default(),
        };
        let (counters, answer, requests) = (
            remote.counters.clone(),
            remote.answer.clone(),
            remote.requests.clone(),
        );
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counters.connections.fetch_add(1, Ordering::SeqCst);
                let (counters, answer, requests) =
                    (counters.clone(), answer.clone(), requests.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, &counters, &answer, &requests).await;
                });
            }
        });
        remote
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn hits(&self) -> usize {
        self.counters.hits.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    pub fn most_written(&self) -> usize {
        self.counters.most_written.load(Ordering::SeqCst)
    }

    /// Every request received, head and body, as text.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    counters: &Counters,
    answer: &Mutex<Answer>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        received.extend_from_slice(&buf[..n]);
        if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while received.len() < head_end + length {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    counters.hits.fetch_add(1, Ordering::SeqCst);
    requests
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&received).into_owned());
    let answer = answer.lock().unwrap().clone();
    match answer {
        Answer::Json(status, body) => {
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await?;
        }
        Answer::Redirect(status, location) => {
            let response = format!(
                "HTTP/1.1 {status} X\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            socket.write_all(response.as_bytes()).await?;
        }
        Answer::Endless {
            status,
            total,
            declare_length,
        } => {
            let length = if declare_length {
                format!("content-length: {total}\r\n")
            } else {
                String::new()
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{length}connection: close\r\n\r\n"
            );
            socket.write_all(head.as_bytes()).await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut written = 0;
            while written < total {
                if socket.write_all(&chunk).await.is_err() {
                    break;
                }
                written += chunk.len();
                counters.most_written.fetch_max(written, Ordering::SeqCst);
            }
        }
        Answer::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
    }
    socket.shutdown().await
}

/// A gateway that may fetch from this host (the JWKS servers here are all on loopback).
fn gateway_allowing_loopback(extra: &str) -> Server {
    Server::start_with(&format!(
        "[outbound]\nallow_non_public = [\"loopback\"]\n{extra}"
    ))
}

/// A client whose JWKS URL is `url`; returns its signing key.
fn client_at(server: &Server, id: &str, url: &str) -> whg::auth::SigningKey {
    let (key, _) = key_pair(server, id);
    register(server, id, &["--jwks-url", url]);
    key
}

/// A JWKS server for `key`.
async fn jwks_server(key: &whg::auth::SigningKey) -> Remote {
    Remote::start(Answer::Json(200, key.public_jwks().to_string())).await
}

/// Asks for a token as client `id`; asserts the generic refusal, within `secs`, and returns the
/// answer's text.
async fn refused_token(
    server: &Server,
    id: &str,
    key: &whg::auth::SigningKey,
    secs: u64,
) -> String {
    let started = Instant::now();
    let (status, answer) = exchange(server, &key.sign(&claims(server, id, json!({})))).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_client")),
        "{id}: {answer}"
    );
    assert!(
        answer["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("the client could not be authenticated")),
        "{id}: a generic answer: {answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(secs),
        "{id}: answered after {:?}",
        started.elapsed()
    );
    answer.to_string()
}

#[tokio::test]
async fn jwks_urls_are_parsed_not_prefix_matched() {
    let server = Server::start();
    let (_, _) = key_pair(&server, "x");
    for (id, url) in [
        ("prefix", "http://127.0.0.1.evil.example/jwks"),
        ("userinfo", "http://localhost@evil.example/jwks"),
        (
            "credentials",
            "https://user:secret@gp-supplier.example/jwks",
        ),
        ("plain-http", "http://gp-supplier.example/jwks"),
        ("file", "file:///etc/passwd"),
    ] {
        let out = try_register(&server, id, &["--jwks-url", url]);
        assert!(!out.status.success(), "{url} was registered");
    }
    let listed = server.whg(&["clients", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "",
        "nothing was registered"
    );
}

#[tokio::test]
async fn non_public_addresses_are_refused_unless_the_deployment_allows_them() {
    let server = Server::start();
    let (key, _) = key_pair(&server, "k");
    let remote = jwks_server(&key).await;
    let port = remote.url.rsplit(':').next().unwrap().to_string();
    let targets = [
        ("by-address", format!("http://127.0.0.1:{port}/jwks")),
        ("by-name", format!("http://localhost:{port}/jwks")),
        ("mapped", format!("http://[::ffff:127.0.0.1]:{port}/jwks")),
        (
            "metadata",
            "https://169.254.169.254/latest/meta-data".to_string(),
        ),
        ("private", "https://10.0.0.1/jwks".to_string()),
        ("unspecified", format!("https://0.0.0.0:{port}/jwks")),
    ];
    for (id, url) in &targets {
        register(&server, id, &["--jwks-url", url]);
        refused_token(&server, id, &key, 3).await;
    }
    assert_eq!(remote.hits(), 0, "nothing was fetched from this host");

    // A deployment that allows exactly loopback reaches its test JWKS server, and nothing else.
    let open = gateway_allowing_loopback("");
    for (id, url) in &targets {
        register(&open, id, &["--jwks-url", url]);
    }
    for id in ["by-address", "by-name"] {
        let (status, answer) = exchange(&open, &key.sign(&claims(&open, id, json!({})))).await;
        assert_eq!(status, 200, "{id} with loopback allowed: {answer}");
    }
    for id in ["metadata", "private", "unspecified"] {
        refused_token(&open, id, &key, 3).await;
    }
    assert_eq!(remote.hits(), 2);
}

/// An IPv6 address that carries an IPv4 address is judged as that IPv4 address, never-reachable
/// ranges included: `::ffff:0.0.0.0` connects to this host on Linux, like 0.0.0.0 itself. The
/// deprecated IPv4-compatible form is never reached; 6to4 is judged by its IPv4 address.
#[tokio::test]
async fn addresses_hidden_in_ipv6_are_judged_as_what_they_reach() {
    let (key, _) = key_pair(&Server::start(), "k");
    let remote = jwks_server(&key).await;
    let port = remote.url.rsplit(':').next().unwrap().to_string();
    let never = [
        (
            "mapped-unspecified",
            format!("https://[::ffff:0.0.0.0]:{port}/jwks"),
        ),
        (
            "mapped-zero-net",
            format!("https://[::ffff:0.0.0.1]:{port}/jwks"),
        ),
        (
            "compatible-loopback",
            format!("https://[::127.0.0.1]:{port}/jwks"),
        ),
    ];
    let six_to_four_loopback = (
        "6to4-loopback",
        format!("https://[2002:7f00:1::1]:{port}/jwks"),
    );
    let closed = Server::start();
    let open = gateway_allowing_loopback("");
    for (server, refused) in [
        (
            &closed,
            never
                .iter()
                .chain([&six_to_four_loopback])
                .collect::<Vec<_>>(),
        ),
        (&open, never.iter().collect()),
    ] {
        for (id, url) in &refused {
            let key = client_at(server, id, url);
            refused_token(server, id, &key, 3).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let logs = server.logs();
        let refusals = logs
            .lines()
            .filter(|l| l.contains("token request refused"))
            .filter(|l| l.contains("refused by the outbound policy"));
        assert_eq!(
            refusals.count(),
            refused.len(),
            "each refused before any connection:\n{logs}"
        );
    }
    assert_eq!(remote.connections(), 0, "nothing connected to this host");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = gateway_allowing_loopback("");
    let (key, _) = key_pair(&server, "k");
    let target = jwks_server(&key).await;
    for status in [301, 302, 307, 308] {
        let bouncer = Remote::start(Answer::Redirect(status, format!("{}/jwks", target.url))).await;
        let id = format!("bounced-{status}");
        register(
            &server,
            &id,
            &["--jwks-url", &format!("{}/jwks", bouncer.url)],
        );
        refused_token(&server, &id, &key, 3).await;
        assert_eq!(bouncer.hits(), 1);
    }
    assert_eq!(target.hits(), 0, "the redirect target was never asked");
}

#[tokio::test]
async fn jwks_answers_are_read_only_up_to_the_bound() {
    let server = gateway_allowing_loopback("");
    let (key, _) = key_pair(&server, "k");
    let total = 256 * 1024 * 1024;
    let undeclared = Remote::start(Answer::Endless {
        status: 200,
        total,
        declare_length: false,
    })
    .await;
    let declared = Remote::start(Answer::Endless {
        status: 200,
        total,
        declare_length: true,
    })
    .await;
    for (id, remote) in [("undeclared", &undeclared), ("declared", &declared)] {
        let id = format!("big-{id}");
        let key = client_at(&server, &id, &format!("{}/jwks", remote.url));
        refused_token(&server, &id, &key, 5).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(remote.hits(), 1);
        // What the server could write is the 64 KiB the gateway read plus what the kernel's
        // socket buffers hold before the gateway closes the connection.
        assert!(
            remote.most_written() < 40 * 1024 * 1024,
            "{id}: the gateway read on: {} bytes written",
            remote.most_written()
        );
    }
    let _ = key;
}

#[tokio::test]
async fn a_jwks_url_that_never_answers_times_out() {
    let server = gateway_allowing_loopback("timeout_ms = 1000\n");
    let hang = Remote::start(Answer::Hang).await;
    let key = client_at(&server, "slow", &format!("{}/jwks", hang.url));
    refused_token(&server, "slow", &key, 4).await;
    assert_eq!(hang.hits(), 1);
}

#[tokio::test]
async fn nothing_fetched_is_echoed_to_the_caller_or_logged() {
    let server = gateway_allowing_loopback("");
    let marker = "MARKER-from-the-jwks-host";
    for (id, answer) in [
        (
            "not-a-key-set",
            Answer::Json(200, json!({ "keys": [{ "kty": marker }] }).to_string()),
        ),
        (
            "not-json",
            Answer::Json(200, format!("<html>{marker}</html>")),
        ),
        (
            "an-error",
            Answer::Json(500, json!({ "error": marker }).to_string()),
        ),
    ] {
        let remote = Remote::start(answer).await;
        let key = client_at(&server, id, &format!("{}/jwks", remote.url));
        let answer = refused_token(&server, id, &key, 3).await;
        assert!(!answer.contains("MARKER"), "{id}: {answer}");
        assert_eq!(remote.hits(), 1);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    assert!(!logs.contains("MARKER"), "{logs}");
}

// Letters to a practice's FHIR endpoint.

pub const WHS: &str = "sheffield-whs";

/// A gateway whose practice C88901 takes letters at `endpoint` (its token endpoint and client
/// secret too, when given), retrying quickly.
pub fn letter_gateway(endpoint: &str, token_url: Option<&str>, extra: &str) -> Server {
    let token = match token_url {
        Some(url) => {
            let secret =
                std::env::temp_dir().join(format!("whg-test-secret-{}", uuid::Uuid::now_v7()));
            std::fs::write(&secret, "a-client-secret-for-tests").unwrap();
            format!(
                "token_url = \"{url}\"\nclient_id = \"whg-test\"\nclient_secret_file = {:?}\n",
                secret.display().to_string()
            )
        }
        None => String::new(),
    };
    Server::start_with(&format!(
        r#"
[delivery]
initial_backoff_ms = 200
max_backoff_ms = 400
attempt_timeout_ms = 2000
poll_interval_ms = 100
{extra}

[directory.C88901]
channel = "fhir"
name = "Test Surgery"
endpoint = "{endpoint}/fhir"
{token}
"#
    ))
}

/// A letter from WHS to the practice about person `n`, once the referral is accepted; its id.
pub async fn send_letter(server: &Server, n: usize) -> String {
    let (sr, _) = refer(server, &referral_for(n, WHS)).await;
    let whs = server.as_(Principal::service(WHS));
    let (status, _, body) = whs
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = whs
        .post(
            &format!("/api/v1/referrals/{sr}/letters"),
            &json!({
                "priority": "routine",
                "summary": "Seen for advice on a phased return.",
                "supportGiven": ["advice-session"],
                "plan": { "type": "return-to-work-plan", "text": "Phased return over four weeks." },
                "recommendations": "Consider amended duties.",
                "outcomes": { "employment": "returned-to-work", "health": ["managing-health-better"] },
                "author": { "name": "Sam Patel", "role": "Work and health adviser" }
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    location_id(&headers)
}

/// The letter's status document as the sending service reads it.
pub async fn letter_state(server: &Server, id: &str) -> Value {
    let (status, body) = server
        .as_(Principal::service(WHS))
        .get(&format!("/api/v1/letters/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `done` holds for the letter's status document; returns it.
pub async fn wait_letter(server: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let state = letter_state(server, id).await;
        if done(&state) {
            return state;
        }
        assert!(Instant::now() < until, "{state:#}\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn attempts(state: &Value) -> Vec<Value> {
    state["attempts"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn letters_never_follow_a_redirect() {
    let thief = Remote::start(Answer::Json(200, "{}".into())).await;
    let endpoint = Remote::start(Answer::Redirect(307, format!("{}/steal", thief.url))).await;
    let server = letter_gateway(&endpoint.url, None, "");
    let letter = send_letter(&server, 1).await;
    let state = wait_letter(&server, &letter, |s| attempts(s).len() >= 2).await;
    for attempt in attempts(&state) {
        assert_eq!(attempt["outcome"], "retry", "{state:#}");
        assert!(
            attempt["detail"].as_str().unwrap().contains("redirect"),
            "{state:#}"
        );
    }
    assert_ne!(state["delivery"]["state"], "accepted");
    assert!(endpoint.hits() >= 2);
    assert_eq!(
        thief.hits(),
        0,
        "the letter never went where the redirect pointed"
    );
}

#[tokio::test]
async fn the_practices_token_endpoint_cannot_redirect_the_client_secret() {
    let thief = Remote::start(Answer::Json(
        200,
        json!({ "access_token": "t", "token_type": "bearer" }).to_string(),
    ))
    .await;
    let token = Remote::start(Answer::Redirect(307, format!("{}/token", thief.url))).await;
    let endpoint = Remote::start(Answer::Json(200, "{}".into())).await;
    let server = letter_gateway(&endpoint.url, Some(&format!("{}/token", token.url)), "");
    let letter = send_letter(&server, 2).await;
    let state = wait_letter(&server, &letter, |s| !attempts(s).is_empty()).await;
    let detail = attempts(&state)[0]["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("token") && detail.contains("redirect"),
        "{detail}"
    );
    assert!(
        token.requests()[0]
            .to_ascii_lowercase()
            .contains("authorization: basic"),
        "the credentials went to the configured token endpoint only"
    );
    assert_eq!(
        thief.hits(),
        0,
        "the client secret never went where the redirect pointed"
    );
    assert_eq!(endpoint.hits(), 0, "no letter without a token");
}

#[tokio::test]
async fn a_practice_systems_answers_are_read_only_up_to_the_bound() {
    let endpoint = Remote::start(Answer::Endless {
        status: 500,
        total: 256 * 1024 * 1024,
        declare_length: false,
    })
    .await;
    let server = letter_gateway(&endpoint.url, None, "");
    let letter = send_letter(&server, 3).await;
    let state = wait_letter(&server, &letter, |s| !attempts(s).is_empty()).await;
    let first = &attempts(&state)[0];
    assert_eq!(first["outcome"], "retry");
    assert_eq!(first["detail"], "HTTP 500", "judged by its status alone");
    assert!(
        endpoint.most_written() < 40 * 1024 * 1024,
        "the gateway read on: {} bytes written",
        endpoint.most_written()
    );
    // The same for a token endpoint's answer.
    let token = Remote::start(Answer::Endless {
        status: 200,
        total: 256 * 1024 * 1024,
        declare_length: false,
    })
    .await;
    let quiet = Remote::start(Answer::Json(200, "{}".into())).await;
    let server = letter_gateway(&quiet.url, Some(&format!("{}/token", token.url)), "");
    let letter = send_letter(&server, 4).await;
    let state = wait_letter(&server, &letter, |s| !attempts(s).is_empty()).await;
    assert_eq!(attempts(&state)[0]["outcome"], "retry", "{state:#}");
    assert!(
        token.most_written() < 40 * 1024 * 1024,
        "{}",
        token.most_written()
    );
    assert_eq!(quiet.hits(), 0);
}
