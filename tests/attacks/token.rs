//! Attack 9: the token endpoint (`POST /oauth2/token`) as an unauthenticated attacker uses it.
//! Forged assertions naming a registered client must not spend that client's rate limit (a
//! flood would lock the genuine client out); unauthenticated callers are limited per source
//! address before anything is parsed; client ids are bounded by the registry's own rule, bodies
//! by a small limit, and attacker text never reaches the log; assertions from the future are
//! refused; every failed client authentication gets one generic answer. A client's JWK Set
//! fetched from its JWKS URL is cached, so anonymous requests naming the client cannot make the
//! gateway fetch from its vendor on demand (review finding 10).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use whg::auth::SigningKey;

use super::outbound::{Answer, Remote};
use crate::common::*;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Registers a practice client for C88901 with `whg clients add ID … KEYS`, where `keys` is
/// `["--jwks", file]` or `["--jwks-url", url]`; panics unless the CLI took it.
pub fn register(server: &Server, id: &str, keys: &[&str]) {
    let out = try_register(server, id, keys);
    assert!(
        out.status.success(),
        "clients add {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn try_register(server: &Server, id: &str, keys: &[&str]) -> std::process::Output {
    let mut args = vec![
        "clients", "add", id, "--role", "practice", "--org", "C88901", "--tenant", "test",
    ];
    args.extend_from_slice(keys);
    server.whg(&args)
}

/// A new key pair, its public JWK Set written next to the server's config.
pub fn key_pair(server: &Server, name: &str) -> (SigningKey, PathBuf) {
    let key = SigningKey::generate();
    let file = server
        .config_path()
        .with_file_name(format!("{name}.jwks.json"));
    std::fs::write(&file, key.public_jwks().to_string()).unwrap();
    (key, file)
}

/// A registered client with its key in the registry; returns its signing key.
pub fn client_with_key(server: &Server, id: &str) -> SigningKey {
    let (key, file) = key_pair(server, id);
    register(server, id, &["--jwks", file.to_str().unwrap()]);
    key
}

/// Assertion claims for `client`, with `overrides` merged in.
pub fn claims(server: &Server, client: &str, overrides: Value) -> Value {
    let mut c = json!({
        "iss": client, "sub": client, "aud": server.url("/oauth2/token"),
        "iat": now(), "exp": now() + 240, "jti": uuid::Uuid::now_v7().to_string(),
    });
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// Posts a token request form (no access token: the caller is unauthenticated).
pub async fn token_request(
    server: &Server,
    body: String,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = http()
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request");
    read_response(r).await
}

/// Sends a token request's head (with the body's full length) and its first 4 KiB, then reads
/// the answer: status and JSON body.
async fn refused_before_the_body(server: &Server, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The gateway may already have answered and closed: a failed write is not the test's
    // concern, the answer is.
    let _ = stream.write_all(&body.as_bytes()[..4096]).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text}"));
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .and_then(|b| b.find('{').map(|i| &b[i..]))
        .and_then(|b| b.rfind('}').map(|j| &b[..=j]))
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// Exchanges an assertion for a token: status and answer.
pub async fn exchange(server: &Server, assertion: &str) -> (u16, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_assertion_type", ASSERTION_TYPE)
        .append_pair("client_assertion", assertion)
        .finish();
    let (status, _, answer) = token_request(server, body).await;
    (status, answer)
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// An ES384 assertion with claims as given and a signature that is not one.
fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64(&json!({ "alg": "ES384", "typ": "JWT" })),
        b64(claims),
        "A".repeat(128)
    )
}

/// How the one answer to every failed client authentication begins.
const GENERIC_REFUSAL: &str = "the client could not be authenticated";

/// The generic answer to a failed client authentication.
fn assert_generic_refusal(status: u16, answer: &Value, what: &str) {
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_client")),
        "{what}: {answer}"
    );
    assert!(
        answer["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with(GENERIC_REFUSAL)),
        "{what}: one answer for every failed authentication: {answer}"
    );
}

#[tokio::test]
async fn forged_assertions_naming_a_client_do_not_lock_it_out() {
    // The client may make 3 token requests in a burst; the source is not what is tested here.
    let server = Server::start_with(
        "[limits]\nrequests_per_second_per_client = 0.01\nburst_per_client = 3.0\n\
         unauthenticated_requests_per_second_per_source = 1000.0\nunauthenticated_burst_per_source = 1000.0\n",
    );
    let key = client_with_key(&server, "gp-flooded");
    let impostor = SigningKey::generate();
    // The attacker floods the endpoint with assertions naming the client: badly signed, and
    // signed with a key of its own.
    for i in 0..20 {
        let forged = if i % 2 == 0 {
            unsigned(&claims(&server, "gp-flooded", json!({})))
        } else {
            impostor.sign(&claims(&server, "gp-flooded", json!({})))
        };
        let (status, answer) = exchange(&server, &forged).await;
        assert_generic_refusal(status, &answer, &format!("forged assertion {i}"));
    }
    // The genuine client still gets its tokens, up to its own limit, which still holds.
    for i in 0..3 {
        let (status, answer) = exchange(
            &server,
            &key.sign(&claims(&server, "gp-flooded", json!({}))),
        )
        .await;
        assert_eq!(status, 200, "genuine request {i} after the flood: {answer}");
        assert!(answer["access_token"].is_string());
    }
    let (status, answer) = exchange(
        &server,
        &key.sign(&claims(&server, "gp-flooded", json!({}))),
    )
    .await;
    assert_eq!(status, 429, "the client's own limit: {answer}");
}

#[tokio::test]
async fn unauthenticated_callers_are_limited_per_source_before_parsing() {
    let server = Server::start_with(
        "[limits]\nrequests_per_second_per_client = 100000.0\nburst_per_client = 100000.0\n\
         unauthenticated_requests_per_second_per_source = 0.01\nunauthenticated_burst_per_source = 5.0\n",
    );
    for i in 0..5 {
        let (status, _, answer) = token_request(&server, "grant_type=password".into()).await;
        assert_eq!(
            status, 400,
            "request {i} within the source's burst: {answer}"
        );
    }
    // Over the limit: refused before the body is looked at, whatever it holds.
    let (status, headers, answer) = token_request(&server, "grant_type=password".into()).await;
    assert_eq!(status, 429, "{answer}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(answer["error"], "invalid_request");
    // A 2 MB body gets the same answer without being read.
    let (status, answer) = refused_before_the_body(&server, &"x".repeat(2_000_000)).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"], "invalid_request");
    let (status, _) = {
        let r = http_get(server.url("/.well-known/smart-configuration"))
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(
        status, 429,
        "every unauthenticated route shares the source's limit"
    );
    for _ in 0..20 {
        assert_eq!(
            token_request(&server, "grant_type=password".into()).await.0,
            429
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    assert_eq!(
        logs.matches("unauthenticated rate limit reached").count(),
        1,
        "a flood is logged once, not once a request:\n{logs}"
    );
    assert_eq!(logs.matches("token request refused").count(), 5, "{logs}");
    // A client with a valid access token, from the same address, is unaffected.
    let (status, body) = server
        .as_(whg::auth::Principal::practice(DEFAULT_PRACTICE))
        .get("/fhir/ServiceRequest")
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn client_ids_are_bounded_and_never_logged_as_sent() {
    let server = Server::start();
    let key = client_with_key(&server, "gp-1");
    // A 700 KB client id: refused by size before it is read, with a small answer. The
    // attacker sends the head and the first part of the body; the gateway answers (and may
    // close the connection) without waiting for the rest, so a client writing it all could see
    // a broken pipe instead of the answer.
    let huge = "a".repeat(700_000);
    for _ in 0..20 {
        let body = format!(
            "grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={}",
            unsigned(&claims(&server, &huge, json!({})))
        );
        let (status, answer) = refused_before_the_body(&server, &body).await;
        assert_eq!(status, 413, "{answer}");
        assert_eq!(answer["error"], "invalid_request");
        assert!(answer.to_string().len() < 300);
    }
    // Ids within the size limit that break the registry's rule: a forged log line, 65
    // characters, a space.
    let forged_line =
        "gp-1\n2026-01-01T00:00:00Z  INFO whg::api::oauth: access token issued client=gp-admin";
    let long_id = format!("gp-{}", "x".repeat(62));
    for id in [forged_line, long_id.as_str(), "gp 1", ""] {
        let (status, answer) = exchange(&server, &key.sign(&claims(&server, id, json!({})))).await;
        assert_generic_refusal(status, &answer, &format!("{id:?}"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    assert!(
        logs.contains("token request refused"),
        "the refusals are logged"
    );
    assert!(
        !logs.contains("gp-admin"),
        "no attacker text in the log:\n{logs}"
    );
    assert!(
        !logs.contains(&long_id),
        "no id the registry could not hold in the log"
    );
    assert!(
        !logs.contains("aaaaaaaaaa"),
        "nothing of the oversized id is logged"
    );
    assert!(
        logs.len() < 200_000,
        "the log stays small: {} bytes",
        logs.len()
    );
    // Nothing was spent: the genuine client gets its token.
    let (status, answer) = exchange(&server, &key.sign(&claims(&server, "gp-1", json!({})))).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn assertions_from_the_future_are_refused() {
    let server = Server::start();
    let key = client_with_key(&server, "gp-clock");
    for (what, overrides) in [
        ("nbf ten minutes ahead", json!({ "nbf": now() + 600 })),
        ("nbf two minutes ahead", json!({ "nbf": now() + 120 })),
        ("iat two minutes ahead", json!({ "iat": now() + 120 })),
        (
            "iat ten minutes ahead",
            json!({ "iat": now() + 600, "exp": now() + 290 }),
        ),
    ] {
        let (status, answer) =
            exchange(&server, &key.sign(&claims(&server, "gp-clock", overrides))).await;
        assert_generic_refusal(status, &answer, what);
    }
    // Within the clock-skew allowance, and in the past, they are taken.
    for (what, overrides) in [
        (
            "iat and nbf 10 s ahead",
            json!({ "iat": now() + 10, "nbf": now() + 10 }),
        ),
        (
            "iat and nbf a minute ago",
            json!({ "iat": now() - 60, "nbf": now() - 60 }),
        ),
    ] {
        let (status, answer) =
            exchange(&server, &key.sign(&claims(&server, "gp-clock", overrides))).await;
        assert_eq!(status, 200, "{what}: {answer}");
    }
}

#[tokio::test]
async fn failed_authentication_tells_the_caller_nothing() {
    let server = Server::start();
    let key = client_with_key(&server, "gp-known");
    let other = SigningKey::generate();
    let cases = [
        (
            "an unregistered client",
            key.sign(&claims(&server, "gp-unknown", json!({}))),
        ),
        (
            "a registered client, another key",
            other.sign(&claims(&server, "gp-known", json!({}))),
        ),
        (
            "expired",
            key.sign(&claims(&server, "gp-known", json!({ "exp": now() - 120 }))),
        ),
        (
            "the wrong audience",
            key.sign(&claims(
                &server,
                "gp-known",
                json!({ "aud": "https://elsewhere.example/<b>token</b>" }),
            )),
        ),
        ("a kid of attacker text", {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
            header.kid = Some("<zq-attacker>kid\nINFO forged".into());
            let pem =
                std::fs::read(server.config_path().with_file_name("signing-key.pem")).unwrap();
            jsonwebtoken::encode(
                &header,
                &claims(&server, "gp-known", json!({})),
                &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
            )
            .unwrap()
        }),
        ("not a JWT", "<zq-attacker>x".to_string()),
    ];
    let mut descriptions = std::collections::HashSet::new();
    for (what, assertion) in &cases {
        let (status, answer) = exchange(&server, assertion).await;
        assert_generic_refusal(status, &answer, what);
        assert!(
            !answer.to_string().contains("zq-attacker") && !answer.to_string().contains("gp-"),
            "{what}: {answer}"
        );
        descriptions.insert(answer["error_description"].to_string());
    }
    assert_eq!(
        descriptions.len(),
        1,
        "one answer whatever failed: {descriptions:#?}"
    );
    // Request errors name the parameter, never echo what was sent.
    let (status, _, answer) =
        token_request(&server, "grant_type=%3Czq-attacker%3Epassword".into()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    assert!(!answer.to_string().contains("zq-attacker"), "{answer}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    assert!(
        !logs.contains("zq-attacker") && !logs.contains("INFO forged"),
        "{logs}"
    );
    assert!(
        logs.contains("gp-known"),
        "a registered client's id is logged: {logs}"
    );
}

// A client's JWKS URL: the gateway fetches the client's keys from its vendor. Unauthenticated
// callers must not be able to make it fetch on demand (it would amplify their traffic onto
// the vendor, which may then throttle the gateway and lock the genuine client out).

/// A gateway that may fetch from this host (the JWKS servers here are on loopback); per-source
/// limits high enough that the flood reaches the token endpoint.
fn jwks_gateway(outbound: &str) -> Server {
    Server::start_with(&format!(
        "[limits]\nunauthenticated_requests_per_second_per_source = 1000.0\nunauthenticated_burst_per_source = 1000.0\n\
         [outbound]\nallow_non_public = [\"loopback\"]\n{outbound}"
    ))
}

/// A JWKS server publishing `keys`.
async fn publishing(keys: &[&SigningKey]) -> Remote {
    Remote::start(Answer::Json(200, key_set(keys))).await
}

fn key_set(keys: &[&SigningKey]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .flat_map(|k| k.public_jwks()["keys"].as_array().unwrap().clone())
        .collect();
    json!({ "keys": keys }).to_string()
}

/// The token request's answer for `client` signed with `key`: status only.
async fn as_signed_by(server: &Server, client: &str, key: &SigningKey) -> u16 {
    exchange(server, &key.sign(&claims(server, client, json!({}))))
        .await
        .0
}

#[tokio::test]
async fn anonymous_token_requests_do_not_make_the_gateway_fetch_a_clients_keys() {
    let server = jwks_gateway("");
    let key = SigningKey::generate();
    let vendor = publishing(&[&key]).await;
    register(
        &server,
        "gp-hosted",
        &["--jwks-url", &format!("{}/jwks", vendor.url)],
    );
    // The attacker names the client in assertions it cannot sign: unsigned ones (no kid), and
    // ones signed with keys of its own, each with a kid the client never published.
    for i in 0..40 {
        let forged = if i % 2 == 0 {
            unsigned(&claims(&server, "gp-hosted", json!({})))
        } else {
            SigningKey::generate().sign(&claims(&server, "gp-hosted", json!({})))
        };
        let (status, answer) = exchange(&server, &forged).await;
        assert_generic_refusal(status, &answer, &format!("forged assertion {i}"));
    }
    assert_eq!(
        vendor.hits(),
        1,
        "the client's keys were fetched once, not once a request"
    );
    // The genuine client is served from what was fetched.
    for i in 0..3 {
        assert_eq!(
            as_signed_by(&server, "gp-hosted", &key).await,
            200,
            "genuine request {i}"
        );
    }
    assert_eq!(vendor.hits(), 1);

    // A vendor that answers with an error is not asked again on every request either.
    let failing = Remote::start(Answer::Json(503, "{}".into())).await;
    register(
        &server,
        "gp-down",
        &["--jwks-url", &format!("{}/jwks", failing.url)],
    );
    for i in 0..20 {
        let (status, answer) =
            exchange(&server, &unsigned(&claims(&server, "gp-down", json!({})))).await;
        assert_generic_refusal(
            status,
            &answer,
            &format!("request {i} while the vendor fails"),
        );
    }
    assert_eq!(failing.hits(), 1, "a failed fetch is remembered too");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_its_kid_is_new_and_a_withdrawn_one_stops_working() {
    let server = jwks_gateway("jwks_cache_secs = 3\njwks_min_refetch_secs = 1\n");
    let (old, new) = (SigningKey::generate(), SigningKey::generate());
    let vendor = publishing(&[&old]).await;
    register(
        &server,
        "gp-rotating",
        &["--jwks-url", &format!("{}/jwks", vendor.url)],
    );
    assert_eq!(as_signed_by(&server, "gp-rotating", &old).await, 200);
    let first_fetch = std::time::Instant::now();
    // The vendor rotates: the new key replaces the old one.
    vendor.set(Answer::Json(200, key_set(&[&new])));
    assert_eq!(
        as_signed_by(&server, "gp-rotating", &new).await,
        401,
        "within jwks_min_refetch_secs of the last fetch a new kid is not fetched"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        as_signed_by(&server, "gp-rotating", &new).await,
        200,
        "the new kid made the gateway fetch again"
    );
    assert_eq!(vendor.hits(), 2);
    // Kids nobody published, at once: no fetch.
    for _ in 0..10 {
        assert_eq!(
            as_signed_by(&server, "gp-rotating", &SigningKey::generate()).await,
            401
        );
    }
    assert_eq!(
        vendor.hits(),
        2,
        "at most one fetch per jwks_min_refetch_secs"
    );
    assert_eq!(
        as_signed_by(&server, "gp-rotating", &old).await,
        401,
        "the withdrawn key no longer works"
    );
    // Once the fetched set is older than jwks_cache_secs it is fetched again, whatever the kid.
    let stale = first_fetch + Duration::from_millis(1100 + 3100);
    tokio::time::sleep(stale.saturating_duration_since(std::time::Instant::now())).await;
    assert_eq!(as_signed_by(&server, "gp-rotating", &new).await, 200);
    assert_eq!(vendor.hits(), 3);
}
