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
}

#[derive(Default)]
struct Counters {
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
    }
    socket.shutdown().await
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
