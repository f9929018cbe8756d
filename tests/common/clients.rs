//! Registered client systems for the tests: made with the `whg clients` CLI as an operator
//! would, and given tokens by the SMART Backend Services exchange, as a client would get them.

use serde_json::Value;

use super::{Server, http, read_response};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "whg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub async fn token_request(
    server: &Server,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = http()
        .post(server.url("/oauth2/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    read_response(r).await
}

pub async fn exchange(server: &Server, assertion: &str, scope: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let (status, headers, body) = token_request(server, &form).await;
    assert_eq!(headers["cache-control"], "no-store");
    (status, body)
}

/// A registered ES384 client made with the CLI: its id and private key file.
pub fn es384_client(
    server: &Server,
    id: &str,
    role: &str,
    org: &str,
    scopes: &[&str],
) -> std::path::PathBuf {
    let key = server.config_path().with_file_name(format!("{id}.pem"));
    let jwks = stdout(&server.whg(&["clients", "keygen", "--out", key.to_str().unwrap()]));
    let jwks_file = key.with_extension("jwks.json");
    std::fs::write(&jwks_file, jwks).unwrap();
    let mut args = vec![
        "clients",
        "add",
        id,
        "--role",
        role,
        "--org",
        org,
        "--jwks",
        jwks_file.to_str().unwrap(),
    ];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    // The fixtures' practices are the test tenant's organisations.
    let config = whg::config::Config::defaults();
    if config.auth.test_organisations.iter().any(|o| o == org) {
        args.extend(["--tenant", "test"]);
    }
    stdout(&server.whg(&args));
    key
}

pub fn cli_assertion(server: &Server, id: &str, key: &std::path::Path) -> String {
    stdout(&server.whg(&[
        "clients",
        "assertion",
        "--client",
        id,
        "--key",
        key.to_str().unwrap(),
        "--token-url",
        &server.url("/oauth2/token"),
    ]))
}

/// A bearer token for the registered client `id` (its private key `key`), by the SMART
/// Backend Services exchange.
pub async fn client_token(server: &Server, id: &str, key: &std::path::Path) -> String {
    let assertion = cli_assertion(server, id, key);
    let (status, body) = exchange(server, &assertion, None).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}
