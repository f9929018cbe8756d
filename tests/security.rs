//! Security over HTTP: SMART Backend Services client authentication (discovery, the token
//! endpoint, refused and replayed assertions, revocation), scopes, tenant isolation, rate limits,
//! hostile bodies, security headers and TLS.

mod common;

use std::process::Command;
use std::time::Duration;

use common::clients::*;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn bearer_get(
    server: &Server,
    token: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = http()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    read_response(r).await
}

async fn bearer_post(server: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = http()
        .post(server.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let (s, _, b) = read_response(r).await;
    (s, b)
}

#[tokio::test]
async fn discovery_and_the_gateway_key_need_no_token() {
    let server = Server::start();
    let r = http_get(server.url("/.well-known/smart-configuration"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let config: Value = r.json().await.unwrap();
    assert_eq!(config["token_endpoint"], server.url("/oauth2/token"));
    assert_eq!(
        config["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        config["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS384", "ES384", "RS512"])
    );
    assert_eq!(
        config["grant_types_supported"],
        json!(["client_credentials"])
    );
    let jwks: Value = http_get(server.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(jwks["keys"][0].get("d").is_none(), "never the private part");

    // A token from the endpoint verifies with the published key.
    let key = es384_client(&server, "gp-discovery", "practice", "C88901", &[]);
    let (status, body) =
        exchange(&server, &cli_assertion(&server, "gp-discovery", &key), None).await;
    assert_eq!(status, 200, "{body}");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES384);
    v.validate_aud = false;
    let claims =
        jsonwebtoken::decode::<Value>(body["access_token"].as_str().unwrap(), &decoding, &v)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], "gp-discovery");
}

/// The README's flow: register a client with the CLI, sign an assertion, swap it for a token,
/// post a fixture with it. Then an RS384 client registered by its PEM public key.
#[tokio::test]
async fn the_token_flow_works_for_es384_and_rs384_clients() {
    let server = Server::start();
    let key = es384_client(&server, "gp-c88901", "practice", "C88901", &[]);
    let listed = stdout(&server.whg(&["clients", "list"]));
    assert!(
        listed.contains("\"gp-c88901\"") && listed.contains("system/ServiceRequest.c"),
        "{listed}"
    );
    let (status, body) = exchange(&server, &cli_assertion(&server, "gp-c88901", &key), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 300);
    let token = body["access_token"].as_str().unwrap().to_string();
    let referral =
        read_json(&root().join("fixtures/referrals/valid/01-gp-work-stress-off-sick.json"));
    let (status, outcome) = bearer_post(&server, &token, "/api/v1/referrals", &referral).await;
    assert_eq!(status, 201, "{outcome}");
    // `whg token --client` gives the same principal without the round trip.
    let local = stdout(&server.whg(&["token", "--client", "gp-c88901"]));
    assert_eq!(
        bearer_get(&server, &local, "/fhir/ServiceRequest").await.2["total"],
        1
    );

    // RS384, registered by its PEM public key.
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("rsa.pem");
    let public = dir.path().join("rsa.pub.pem");
    assert!(
        Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&private)
            .arg("2048")
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(
        Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .output()
            .unwrap()
            .status
            .success()
    );
    stdout(&server.whg(&[
        "clients",
        "add",
        "whs-system",
        "--role",
        "service",
        "--org",
        "sheffield-whs",
        "--public-key",
        public.to_str().unwrap(),
    ]));
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
    let claims = json!({ "iss": "whs-system", "sub": "whs-system", "aud": server.url("/oauth2/token"), "exp": now() + 240, "jti": "rsa-1" });
    let assertion = jsonwebtoken::encode(&Header::new(Algorithm::RS384), &claims, &rsa).unwrap();
    let (status, body) = exchange(&server, &assertion, Some("system/ServiceRequest.rs")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "system/ServiceRequest.rs");
    let token = body["access_token"].as_str().unwrap();
    let (status, _, page) = bearer_get(&server, token, "/fhir/ServiceRequest").await;
    assert_eq!(
        (status, page["total"].clone()),
        (200, json!(1)),
        "the referral addressed to the service"
    );
    // RS512 (NHS England's signed-JWT client credentials) with the same key: a PEM-registered
    // RSA key names no `alg`, so either RSA algorithm is its holder's choice.
    let claims = json!({ "iss": "whs-system", "sub": "whs-system", "aud": server.url("/oauth2/token"), "exp": now() + 240, "jti": "rsa-512" });
    let rs512 = jsonwebtoken::encode(&Header::new(Algorithm::RS512), &claims, &rsa).unwrap();
    let (status, body) = exchange(&server, &rs512, None).await;
    assert_eq!(status, 200, "RS512: {body}");
    // A JWK that says it is for RS384 checks no RS512 signature (RFC 7517 §4.4).
    let mut set: Value = serde_json::from_str(
        &stdout(&server.whg(&["clients", "list"]))
            .lines()
            .find(|l| l.contains("\"whs-system\""))
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["jwks"].to_string())
            .unwrap(),
    )
    .unwrap();
    set["keys"][0]["alg"] = json!("RS384");
    set["keys"][0]["kid"] = json!("rs384-only");
    let pinned = dir.path().join("pinned.jwks.json");
    std::fs::write(&pinned, set.to_string()).unwrap();
    stdout(&server.whg(&[
        "clients",
        "add",
        "whs-pinned",
        "--role",
        "service",
        "--org",
        "sheffield-whs",
        "--jwks",
        pinned.to_str().unwrap(),
    ]));
    let claims = json!({ "iss": "whs-pinned", "sub": "whs-pinned", "aud": server.url("/oauth2/token"), "exp": now() + 240, "jti": "pinned-1" });
    let refused = jsonwebtoken::encode(&Header::new(Algorithm::RS512), &claims, &rsa).unwrap();
    assert_eq!(
        exchange(&server, &refused, None).await.0,
        401,
        "alg the key does not name"
    );
    let claims = json!({ "iss": "whs-pinned", "sub": "whs-pinned", "aud": server.url("/oauth2/token"), "exp": now() + 240, "jti": "pinned-2" });
    let taken = jsonwebtoken::encode(&Header::new(Algorithm::RS384), &claims, &rsa).unwrap();
    assert_eq!(
        exchange(&server, &taken, None).await.0,
        200,
        "the alg it names"
    );

    let (status, headers, outcome) = bearer_get(&server, token, "/fhir/Consent?patient=x").await;
    assert_eq!(status, 403, "not granted: {outcome}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // No token or assertion ever reaches the logs.
    let logs = server.logs();
    assert!(!logs.contains(token) && !logs.contains(&assertion) && !logs.contains(&local));
}

/// A key rotation with the CLI: the new key is added beside the old, both sign while the client
/// switches (each assertion's `kid` names its key), the old one is retired and its assertions
/// refused; the last key is never retired, and a client whose keys are fetched rotates there.
#[tokio::test]
async fn a_client_rotates_its_keys_without_a_new_client_id() {
    let server = Server::start();
    let old = es384_client(&server, "gp-rotating", "practice", "C88901", &[]);
    let old_kid = whg::auth::SigningKey::load(&old)
        .unwrap()
        .key_id()
        .to_string();
    let listed = stdout(&server.whg(&["clients", "keys", "list", "gp-rotating"]));
    assert_eq!(listed, old_kid);

    let new = server.config_path().with_file_name("gp-rotating-2.pem");
    let jwks = stdout(&server.whg(&["clients", "keygen", "--out", new.to_str().unwrap()]));
    let new_jwks = new.with_extension("jwks.json");
    std::fs::write(&new_jwks, &jwks).unwrap();
    stdout(&server.whg(&[
        "clients",
        "keys",
        "add",
        "gp-rotating",
        "--jwks",
        new_jwks.to_str().unwrap(),
    ]));
    let new_kid = whg::auth::SigningKey::load(&new)
        .unwrap()
        .key_id()
        .to_string();
    assert_eq!(
        stdout(&server.whg(&["clients", "keys", "list", "gp-rotating"])),
        format!("{old_kid}\n{new_kid}")
    );
    // The same key twice is one key with one kid: refused.
    let again = server.whg(&[
        "clients",
        "keys",
        "add",
        "gp-rotating",
        "--jwks",
        new_jwks.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("kid"),
        "{again:?}"
    );

    for key in [&old, &new] {
        let (status, body) =
            exchange(&server, &cli_assertion(&server, "gp-rotating", key), None).await;
        assert_eq!(status, 200, "both keys sign during the switch: {body}");
    }
    stdout(&server.whg(&[
        "clients",
        "keys",
        "retire",
        "gp-rotating",
        "--kid",
        &old_kid,
    ]));
    assert_eq!(
        exchange(&server, &cli_assertion(&server, "gp-rotating", &old), None)
            .await
            .0,
        401,
        "retired"
    );
    assert_eq!(
        exchange(&server, &cli_assertion(&server, "gp-rotating", &new), None)
            .await
            .0,
        200
    );

    for (args, says) in [
        (
            vec!["retire", "gp-rotating", "--kid", new_kid.as_str()],
            "only key",
        ),
        (
            vec!["retire", "gp-rotating", "--kid", "no-such-kid"],
            "no key with kid",
        ),
        (vec!["list", "nobody"], "no active client"),
    ] {
        let mut all = vec!["clients", "keys"];
        all.extend(args);
        let out = server.whg(&all);
        assert!(!out.status.success(), "{all:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{all:?}: {out:?}"
        );
    }
    // A revoked client's keys are not rotated.
    stdout(&server.whg(&["clients", "revoke", "gp-rotating"]));
    let out = server.whg(&[
        "clients",
        "keys",
        "add",
        "gp-rotating",
        "--jwks",
        new_jwks.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
}

#[tokio::test]
async fn bad_forged_expired_and_replayed_assertions_are_refused() {
    let server = Server::start();
    let key_file = es384_client(
        &server,
        "gp-1",
        "practice",
        "C88901",
        &["system/ServiceRequest.c", "system/*.rs"],
    );
    let key = whg::auth::SigningKey::load(&key_file).unwrap();
    let token_url = server.url("/oauth2/token");
    let claims = |overrides: Value| {
        let mut c = json!({ "iss": "gp-1", "sub": "gp-1", "aud": token_url, "exp": now() + 240, "jti": uuid::Uuid::now_v7().to_string() });
        for (k, v) in overrides.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let other = whg::auth::SigningKey::generate();
    let jwks_text = std::fs::read_to_string(key_file.with_extension("jwks.json")).unwrap();
    let hs256_with_public_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(jwks_text.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "signed by another key",
            other.sign(&claims(json!({}))),
            401,
            "invalid_client",
        ),
        (
            "expired",
            key.sign(&claims(json!({ "exp": now() - 120 }))),
            401,
            "invalid_client",
        ),
        (
            "wrong audience",
            key.sign(&claims(json!({ "aud": "https://elsewhere.example/token" }))),
            401,
            "invalid_client",
        ),
        (
            "expiring too far ahead",
            key.sign(&claims(json!({ "exp": now() + 900 }))),
            401,
            "invalid_client",
        ),
        (
            "iss is not sub",
            key.sign(&claims(json!({ "sub": "gp-2" }))),
            401,
            "invalid_client",
        ),
        (
            "unknown client",
            key.sign(&claims(json!({ "iss": "nobody", "sub": "nobody" }))),
            401,
            "invalid_client",
        ),
        (
            "no jti",
            key.sign(&claims(json!({ "jti": "" }))),
            401,
            "invalid_client",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({ "alg": "none" })),
                b64(&claims(json!({})))
            ),
            401,
            "invalid_client",
        ),
        (
            "HS256 keyed with the public key",
            hs256_with_public_key,
            401,
            "invalid_client",
        ),
        ("not a JWT", "not-a-jwt".into(), 401, "invalid_client"),
    ];
    for (what, assertion, status, error) in cases {
        let (s, body) = exchange(&server, &assertion, None).await;
        assert_eq!(
            (s, body["error"].as_str().unwrap_or_default()),
            (status, error),
            "{what}: {body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.len() > 10),
            "{what}: {body}"
        );
    }
    // A good assertion works once.
    let good = key.sign(&claims(json!({})));
    assert_eq!(exchange(&server, &good, None).await.0, 200);
    let (s, body) = exchange(&server, &good, None).await;
    assert_eq!(
        (s, body["error"].as_str().unwrap()),
        (401, "invalid_client"),
        "a replay: {body}"
    );
    // Scopes beyond the registration.
    let (s, body) = exchange(
        &server,
        &key.sign(&claims(json!({}))),
        Some("system/Consent.c"),
    )
    .await;
    assert_eq!((s, body["error"].as_str().unwrap()), (400, "invalid_scope"));
    // The request itself.
    let fresh = key.sign(&claims(json!({})));
    for (form, error) in [
        (
            vec![
                ("grant_type", "password"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", fresh.as_str()),
            ],
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "basic"),
                ("client_assertion", fresh.as_str()),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
            "invalid_request",
        ),
    ] {
        let (s, _, body) = token_request(&server, &form).await;
        assert_eq!(
            (s, body["error"].as_str().unwrap()),
            (400, error),
            "{form:?}"
        );
    }
    let r = http()
        .post(server.url("/oauth2/token"))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "JSON is not a token request");

    // Access tokens: expired, for another audience, unsigned.
    let config = whg::config::Config::defaults();
    let server_key =
        whg::auth::SigningKey::load(&server.config_path().with_file_name("signing-key.pem"))
            .unwrap();
    let issuer = whg::auth::TokenIssuer::new(server_key.clone(), &config.auth);
    let expired = issuer.issue(&whg::auth::Principal::practice("C88901"), Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut other_aud = config.auth.clone();
    other_aud.audience = "https://another.example/fhir".into();
    let wrong_aud = whg::auth::TokenIssuer::new(server_key, &other_aud).issue(
        &whg::auth::Principal::practice("C88901"),
        Duration::from_secs(60),
    );
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none" })),
        b64(
            &json!({ "iss": config.auth.issuer, "aud": config.auth.audience, "sub": "x", "exp": now() + 60, "iat": now(), "jti": "j", "scope": "system/*.rs", "role": "practice", "org": "https://fhir.nhs.uk/Id/ods-organization-code|C88901" })
        )
    );
    // The verifier tolerates 30 s of clock skew, so the expired token is tested past it.
    let long_expired = {
        let claims = json!({ "iss": config.auth.issuer, "aud": config.auth.audience, "sub": "x", "exp": now() - 120, "iat": now() - 400, "jti": "j", "scope": "system/*.rs", "role": "practice", "org": "https://fhir.nhs.uk/Id/ods-organization-code|C88901" });
        whg::auth::SigningKey::load(&server.config_path().with_file_name("signing-key.pem"))
            .unwrap()
            .sign(&claims)
    };
    for (what, token) in [
        ("expired", long_expired),
        ("another audience", wrong_aud),
        ("unsigned", unsigned),
    ] {
        let (s, headers, body) = bearer_get(&server, &token, "/fhir/ServiceRequest").await;
        assert_eq!(s, 401, "{what}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    let _ = expired;
}

#[tokio::test]
async fn a_revoked_client_gets_no_token_and_its_tokens_stop_working() {
    let server = Server::start();
    let key = es384_client(&server, "gp-revoke", "practice", "C88901", &[]);
    let (_, body) = exchange(&server, &cli_assertion(&server, "gp-revoke", &key), None).await;
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        bearer_get(&server, &token, "/fhir/ServiceRequest").await.0,
        200
    );
    stdout(&server.whg(&["clients", "revoke", "gp-revoke"]));
    let (s, body) = exchange(&server, &cli_assertion(&server, "gp-revoke", &key), None).await;
    assert_eq!(
        (s, body["error"].as_str().unwrap()),
        (401, "invalid_client")
    );
    let mut refused = false;
    for _ in 0..50 {
        if bearer_get(&server, &token, "/fhir/ServiceRequest").await.0 == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused, "the revoked client's token still works after 10 s");
    let out = server.whg(&["token", "--client", "gp-revoke"]);
    assert!(
        !out.status.success(),
        "no local token for a revoked client either"
    );
    let out = server.whg(&["clients", "revoke", "gp-revoke"]);
    assert!(!out.status.success(), "already revoked");
    let out = server.whg(&[
        "clients",
        "add",
        "gp-revoke",
        "--role",
        "practice",
        "--org",
        "C88901",
        "--jwks",
        key.with_extension("jwks.json").to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "a revoked id is not reused");
}

#[tokio::test]
async fn each_client_has_a_rate_limit() {
    let server = Server::start_with(
        "[limits]\nrequests_per_second_per_client = 0.5\nburst_per_client = 3.0\n",
    );
    let a = server.token(&whg::auth::Principal::practice("C88901"));
    for _ in 0..3 {
        assert_eq!(bearer_get(&server, &a, "/fhir/ServiceRequest").await.0, 200);
    }
    let (status, headers, body) = bearer_get(&server, &a, "/fhir/ServiceRequest").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(body["issue"][0]["code"], "throttled");
    let b = server.token(&whg::auth::Principal::practice("C88902"));
    assert_eq!(
        bearer_get(&server, &b, "/fhir/ServiceRequest").await.0,
        200,
        "another client is unaffected"
    );
}

#[tokio::test]
async fn hostile_bodies_get_4xx_and_every_answer_carries_security_headers() {
    let server = Server::start();
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let (status, headers, body) = server
        .post_raw("/api/v1/referrals", "application/json", deep.into_bytes())
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("nests deeper")
    );
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(headers[name], value, "{name}");
    }
    assert!(headers.contains_key("content-security-policy"));
    let (status, _, _) = server
        .post_raw("/api/v1/referrals", "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(status, 415);
    let r = http_get(server.url("/health/live")).await.unwrap();
    assert_eq!(
        r.headers()["x-content-type-options"],
        "nosniff",
        "unauthenticated answers too"
    );
}

/// Every route that writes.
const WRITE_ROUTES: &[(reqwest::Method, &str)] = &[
    (reqwest::Method::POST, "/api/v1/referrals"),
    (reqwest::Method::POST, "/fhir/$process-message"),
    (reqwest::Method::POST, "/api/v1/fit-notes"),
    (reqwest::Method::POST, "/fhir/Observation"),
    (reqwest::Method::POST, "/fhir/Consent"),
    (reqwest::Method::PUT, "/fhir/Consent/x"),
    (reqwest::Method::PUT, "/fhir/Task/x"),
    (reqwest::Method::POST, "/api/v1/consent-overrides"),
    (reqwest::Method::POST, "/api/v1/consent-overrides/x/grant"),
    (reqwest::Method::POST, "/api/v1/consent-overrides/x/refuse"),
    (reqwest::Method::POST, "/api/v1/consent-overrides/x/review"),
    (reqwest::Method::POST, "/api/v1/disclosures/$decide"),
    (reqwest::Method::POST, "/api/v1/referrals/x/triage"),
    (reqwest::Method::POST, "/api/v1/referrals/x/contacts"),
    (reqwest::Method::POST, "/api/v1/referrals/x/support"),
    (reqwest::Method::POST, "/api/v1/referrals/x/discharge"),
    (reqwest::Method::POST, "/api/v1/referrals/x/letters"),
    (reqwest::Method::POST, "/api/v1/letters/x/$resend"),
];

/// Every route against every role: nobody reaches another organisation's data, and nobody
/// without the route's scope reaches the route.
#[tokio::test]
async fn the_isolation_matrix() {
    let server = Server::start();
    let practice = server.as_(whg::auth::Principal::practice("C88901"));
    let referral =
        read_json(&root().join("fixtures/referrals/valid/01-gp-work-stress-off-sick.json"));
    let service_id = referral["targetService"].as_str().unwrap().to_string();
    let (status, headers, _) = practice.post("/api/v1/referrals", &referral).await;
    assert_eq!(status, 201);
    let sr = location_id(&headers);
    let mut note =
        read_json(&root().join("fixtures/fit-notes/valid/01-doctor-not-fit-back-pain.json"));
    note["patient"] = json!({ "nhsNumber": referral["patient"]["nhsNumber"] });
    let (status, headers, _) = practice.post("/api/v1/fit-notes", &note).await;
    assert_eq!(status, 201);
    let obs = location_id(&headers);
    let sr_doc = practice.get(&format!("/fhir/ServiceRequest/{sr}")).await.1;
    let patient = sr_doc["subject"]["reference"].as_str().unwrap().to_string();
    let nhs = referral["patient"]["nhsNumber"]
        .as_str()
        .unwrap()
        .to_string();

    use whg::auth::{Principal, Role};
    let roles: Vec<(&str, Principal)> = vec![
        ("own practice", Principal::practice("C88901")),
        ("other practice", Principal::practice("C88902")),
        ("own service", Principal::service(&service_id)),
        ("other service", Principal::service("working-win")),
        (
            "information governance",
            Principal::new(Role::InformationGovernance, "IG1"),
        ),
        ("no scopes", {
            let mut p = Principal::practice("C88901");
            p.scopes = vec![];
            p
        }),
    ];
    // (route, [expected status per role, in the order above]).
    let reads: Vec<(String, [u16; 6])> = vec![
        (
            format!("/fhir/ServiceRequest/{sr}"),
            [200, 404, 200, 404, 403, 403],
        ),
        (format!("/fhir/{patient}"), [200, 404, 200, 404, 403, 403]),
        // The service has the referral, but the person did not agree to share fit notes.
        (
            format!("/fhir/Observation/{obs}"),
            [200, 404, 403, 404, 403, 403],
        ),
        (
            format!("/api/v1/patients/{nhs}/fit-notes/summary"),
            [200, 404, 403, 404, 403, 403],
        ),
        ("/fhir/AuditEvent".into(), [403, 403, 403, 403, 200, 403]),
        (
            "/api/v1/consent-overrides".into(),
            [403, 403, 403, 403, 200, 403],
        ),
    ];
    let searches: Vec<(String, [u64; 4])> = vec![
        // Totals seen by own practice, other practice, own service, other service.
        ("/fhir/ServiceRequest".into(), [1, 0, 1, 0]),
        (
            format!("/fhir/Observation?patient={patient}&code=751481000000104"),
            [1, 0, 0, 0],
        ),
        (format!("/fhir/Consent?patient={patient}"), [3, 0, 3, 0]),
        // The fit note prompted the practice (PAS's first-fit-note rule): its own to-do only;
        // the referral's workflow Task is seen by both parties to the referral.
        ("/fhir/Task".into(), [2, 0, 1, 0]),
    ];
    for (i, (who, principal)) in roles.iter().enumerate() {
        let actor = server.as_(principal.clone());
        for (route, expected) in &reads {
            let (status, body) = actor.get(route).await;
            assert_eq!(status, expected[i], "{who} GET {route}: {body}");
            if status >= 400 {
                assert_eq!(
                    body["resourceType"], "OperationOutcome",
                    "{who} GET {route}"
                );
            }
        }
        if i < 4 {
            for (route, totals) in &searches {
                let (status, body) = actor.get(route).await;
                assert_eq!(
                    (status, body["total"].as_u64()),
                    (200, Some(totals[i])),
                    "{who} GET {route}: {body}"
                );
            }
        }
    }
    // Writes, after the reads so they do not change what was counted: only the own practice
    // sends as itself.
    for (i, (who, principal)) in roles.iter().enumerate() {
        let actor = server.as_(principal.clone());
        let mut resend = referral.clone();
        resend["referralId"] = json!(format!("ISO-{i}"));
        let (status, _, body) = actor.post("/api/v1/referrals", &resend).await;
        assert_eq!(
            status,
            if i == 0 { 201 } else { 403 },
            "{who} POST referral: {body}"
        );
        let mut n = note.clone();
        n["fitNoteId"] = json!(format!("ISO-{i}"));
        let (status, _, _) = actor.post("/api/v1/fit-notes", &n).await;
        assert_eq!(
            status,
            if i == 0 { 201 } else { 403 },
            "{who} POST fit note"
        );
    }
    // A token without the scope a write needs is refused before anything is read.
    let unscoped = server.as_({
        let mut p = Principal::practice("C88901");
        p.scopes = vec!["system/*.rs".into()];
        p
    });
    for (method, route) in WRITE_ROUTES {
        let (status, headers, body) = unscoped.send(method.clone(), route, Some(&json!({}))).await;
        assert_eq!(status, 403, "{method} {route}: {body}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("insufficient_scope"),
            "{method} {route}"
        );
    }
    // Anonymous: every route but health, metadata and the well-known documents is refused.
    let anonymous = http();
    let reads = [
        (reqwest::Method::GET, "/fhir/Task/x".to_string()),
        (reqwest::Method::GET, format!("/fhir/ServiceRequest/{sr}")),
        (reqwest::Method::GET, "/fhir/AuditEvent".to_string()),
        (reqwest::Method::GET, "/api/v1/letters".to_string()),
        (
            reqwest::Method::GET,
            format!("/api/v1/referrals/{sr}/workflow"),
        ),
    ];
    let writes = WRITE_ROUTES.iter().map(|(m, r)| (m.clone(), r.to_string()));
    for (method, route) in writes.chain(reads) {
        let r = anonymous
            .request(method.clone(), server.url(&route))
            .header("content-type", "application/fhir+json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "anonymous {method} {route}");
        assert!(
            r.headers().contains_key("www-authenticate"),
            "{method} {route}"
        );
    }
    // Nothing about the people in this test reached the logs.
    let logs = server.logs();
    let family = referral["patient"]["name"]["family"].as_str().unwrap();
    let birth = referral["patient"]["birthDate"].as_str().unwrap();
    for secret in [nhs.as_str(), family, birth] {
        assert!(
            !logs.contains(secret),
            "the logs hold '{secret}': {}",
            logs.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for route in [
        "/fhir/ServiceRequest",
        "/fhir/Task",
        "/fhir/Observation",
        "/api/v1/consent-overrides",
        &format!("/api/v1/patients/{nhs}/fit-notes/summary"),
    ] {
        let r = http_get(server.url(route)).await.unwrap();
        assert_eq!(r.status(), 401, "{route}");
    }
    for route in [
        "/health/live",
        "/fhir/metadata",
        "/.well-known/smart-configuration",
        "/.well-known/jwks.json",
    ] {
        let r = http_get(server.url(route)).await.unwrap();
        assert_eq!(r.status(), 200, "{route}");
    }
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn certificates(dir: &std::path::Path) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=whg test CA",
        ],
        dir,
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
            dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
            dir,
        );
    }
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(p("ca.pem")).unwrap()).unwrap();

    let server = Server::start_with(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        p("server.pem"),
        p("server.key")
    ));
    assert!(server.url("").starts_with("https://"), "{}", server.url(""));
    let client = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .build()
        .unwrap();
    let r = client.get(server.url("/health/live")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("strict-transport-security"));
    let plain = server
        .url("/health/live")
        .replacen("https://", "http://", 1);
    assert!(
        http_get(&plain).await.is_err() || http_get(&plain).await.unwrap().status() != 200,
        "no plaintext on the TLS port"
    );

    let mtls = Server::start_with(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    ));
    assert!(
        client.get(mtls.url("/health/live")).send().await.is_err(),
        "no client certificate, no connection"
    );
    let mut identity = std::fs::read(p("client.pem")).unwrap();
    identity.extend(std::fs::read(p("client.key")).unwrap());
    let with_cert = reqwest::Client::builder()
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        with_cert
            .get(mtls.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn plaintext_is_refused_off_loopback_unless_asked_for() {
    let out = Command::new(WHG)
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--database-url",
            "sqlite::memory:",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("plaintext"));
}

/// Tokens from a trusted external issuer work for clients registered here, with the
/// registration's organisation and role and no more than its scopes.
#[tokio::test]
async fn tokens_from_a_configured_external_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let external = whg::auth::SigningKey::generate();
    let jwks = dir.path().join("issuer-jwks.json");
    std::fs::write(&jwks, external.public_jwks().to_string()).unwrap();
    let server = Server::start_with(&format!(
        "[[auth.external_issuers]]\nissuer = \"https://idp.example.nhs.uk\"\naudience = \"https://whg.example.nhs.uk/fhir\"\njwks = {:?}\n",
        jwks.display().to_string()
    ));
    es384_client(
        &server,
        "ext-gp",
        "practice",
        "C88901",
        &["system/ServiceRequest.rs"],
    );
    let token = |sub: &str, scope: &str, aud: &str| {
        external.sign(&json!({
            "iss": "https://idp.example.nhs.uk", "aud": aud, "sub": sub,
            "exp": now() + 300, "iat": now(), "scope": scope,
        }))
    };
    let good = token(
        "ext-gp",
        "system/ServiceRequest.rs system/Consent.c",
        "https://whg.example.nhs.uk/fhir",
    );
    // The registry reaches the verifier within one poll.
    let mut status = 0;
    for _ in 0..50 {
        status = bearer_get(&server, &good, "/fhir/ServiceRequest").await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200);
    let referral =
        read_json(&root().join("fixtures/referrals/valid/01-gp-work-stress-off-sick.json"));
    let (status, body) = bearer_post(&server, &good, "/api/v1/referrals", &referral).await;
    assert_eq!(
        status, 403,
        "Consent.c and ServiceRequest.c are beyond the registration: {body}"
    );
    for (what, bad) in [
        ("unregistered client", token("nobody", "system/*.rs", "https://whg.example.nhs.uk/fhir")),
        ("wrong audience", token("ext-gp", "system/*.rs", "https://other.example/fhir")),
        ("signed by another key", whg::auth::SigningKey::generate().sign(&json!({ "iss": "https://idp.example.nhs.uk", "aud": "https://whg.example.nhs.uk/fhir", "sub": "ext-gp", "exp": now() + 300 }))),
        ("untrusted issuer", whg::auth::SigningKey::generate().sign(&json!({ "iss": "https://evil.example", "aud": "https://whg.example.nhs.uk/fhir", "sub": "ext-gp", "exp": now() + 300 }))),
    ] {
        assert_eq!(bearer_get(&server, &bad, "/fhir/ServiceRequest").await.0, 401, "{what}");
    }
}

/// An integrator's client works only in the test tenant: test organisations, synthetic people.
#[tokio::test]
async fn integrators_work_only_in_the_test_tenant() {
    let server = Server::start();
    let key = es384_client(&server, "icb-integrator", "practice", "C88901", &[]);
    // Registration keeps the tenants apart.
    let jwks = key.with_extension("jwks.json");
    let out = server.whg(&[
        "clients",
        "add",
        "live-as-test",
        "--role",
        "practice",
        "--org",
        "C88901",
        "--jwks",
        jwks.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "a live client for a test organisation"
    );
    let out = server.whg(&[
        "clients",
        "add",
        "test-as-live",
        "--role",
        "practice",
        "--org",
        "B82005",
        "--tenant",
        "test",
        "--jwks",
        jwks.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "a test client for a live organisation"
    );

    let (_, body) = exchange(
        &server,
        &cli_assertion(&server, "icb-integrator", &key),
        None,
    )
    .await;
    let token = body["access_token"].as_str().unwrap().to_string();
    let referral =
        read_json(&root().join("fixtures/referrals/valid/01-gp-work-stress-off-sick.json"));
    let (status, outcome) = bearer_post(&server, &token, "/api/v1/referrals", &referral).await;
    assert_eq!(status, 201, "synthetic person: {outcome}");
    let mut real = referral.clone();
    real["referralId"] = json!("REAL-1");
    real["patient"]["nhsNumber"] = json!("9434765919");
    let (status, outcome) = bearer_post(&server, &token, "/api/v1/referrals", &real).await;
    assert_eq!(status, 403, "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("999")
    );
    let mut note =
        read_json(&root().join("fixtures/fit-notes/valid/01-doctor-not-fit-back-pain.json"));
    note["patient"] = json!({ "nhsNumber": "9434765919" });
    assert_eq!(
        bearer_post(&server, &token, "/api/v1/fit-notes", &note)
            .await
            .0,
        403
    );
}

/// Inputs fuzzing once crashed on (`fuzz/regressions/<target>-….json`) go to that target's routes
/// and get a 4xx OperationOutcome or a success, never a 500.
#[tokio::test]
async fn fuzzing_regressions_get_an_answer() {
    let server = Server::start();
    let mut n = 0;
    for f in std::fs::read_dir(root().join("fuzz/regressions")).unwrap() {
        let path = f.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let routes: &[&str] = match name.split('-').next().unwrap() {
            "fhir_intake" => &["/fhir/$process-message", "/fhir/Observation"],
            "practice_referral" => &["/api/v1/referrals"],
            "practice_fit_note" => &["/api/v1/fit-notes"],
            other => panic!("{name}: unknown target {other}"),
        };
        for route in routes {
            let (status, _, body) = server
                .post_raw(
                    route,
                    "application/fhir+json",
                    std::fs::read(&path).unwrap(),
                )
                .await;
            assert!(status < 500, "{name} → {route}: {status} {body}");
            if status >= 400 {
                assert_eq!(body["resourceType"], "OperationOutcome", "{name} → {route}");
            }
            n += 1;
        }
    }
    assert!(n > 0);
}

/// `GET /metrics` answers only a scraper on a listed range connecting directly: through a proxy
/// (which adds `X-Forwarded-For`) or from anywhere else it is not there.
#[tokio::test]
async fn metrics_are_only_for_the_scrapers_ranges() {
    let direct = reqwest::Client::new();
    let server = Server::start();
    let url = server.url("/metrics");
    let r = direct.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "loopback is a scraper by default");
    let r = direct
        .get(&url)
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "through a proxy it is not there");

    let elsewhere = Server::start_with("[telemetry]\nmetrics_scrapers = [\"10.0.0.0/8\"]\n");
    let r = direct.get(elsewhere.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404, "loopback is not listed");
    let (status, _, body) = read_response(r).await;
    assert_eq!(status, 404);
    assert_eq!(body["resourceType"], "OperationOutcome");
}

/// The anonymous limit is per caller behind a trusted proxy (from the address the proxy says it
/// was sent from), and an untrusted caller's `X-Forwarded-For` buys it nothing.
#[tokio::test]
async fn behind_a_trusted_proxy_each_caller_has_its_own_anonymous_limit() {
    let direct = reqwest::Client::new();
    let limits = "unauthenticated_requests_per_second_per_source = 0.01\nunauthenticated_burst_per_source = 2.0\n";
    let get = |server: &Server, forwarded: &'static str| {
        direct
            .get(server.url("/fhir/metadata"))
            .header("x-forwarded-for", forwarded)
            .send()
    };

    // Loopback is the proxy here (as the ingress controller's range is in a cluster).
    let proxied = Server::start_with(&format!(
        "[limits]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{limits}"
    ));
    for _ in 0..2 {
        assert_eq!(get(&proxied, "203.0.113.1").await.unwrap().status(), 200);
    }
    assert_eq!(get(&proxied, "203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(
        get(&proxied, "203.0.113.2").await.unwrap().status(),
        200,
        "another caller behind the same proxy is unaffected"
    );
    // Only the entry the proxy appended counts: a caller writing its own header to the left
    // of it is still itself.
    assert_eq!(
        get(&proxied, "198.51.100.9, 203.0.113.1")
            .await
            .unwrap()
            .status(),
        429
    );

    // Nobody trusted: the header is the caller's own word, and every caller here is one.
    let untrusted = Server::start_with(&format!("[limits]\n{limits}"));
    for forwarded in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(get(&untrusted, forwarded).await.unwrap().status(), 200);
    }
    assert_eq!(
        get(&untrusted, "203.0.113.3").await.unwrap().status(),
        429,
        "a new X-Forwarded-For is not a new caller"
    );
}

#[test]
fn a_proxy_range_that_would_trust_everyone_is_refused() {
    let stderr = refused_at_start("[limits]\ntrusted_proxies = [\"0.0.0.0/0\"]\n");
    assert!(stderr.contains("limits.trusted_proxies"), "{stderr}");
}
