//! `whg dev-issuer`: an OpenID Connect provider in a box, on this host only, so the dashboard's
//! sign-in can be tried and tested without an NHS CIS2 or Entra ID tenant. It publishes its
//! discovery document and keys, shows a page to choose who to sign in as (a commissioner for
//! each ODS code the configured services name, a manager for each service, and an account with
//! no dashboard role, to see a refusal), and swaps a one-use code for an ID token — checking the
//! client id, the redirect URI and the PKCE verifier (S256) as a real provider does.
//!
//! It holds no passwords and signs anyone in: it listens only on loopback, and a gateway uses it
//! only when its `[sign_in] issuer` names it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use maud::{DOCTYPE, html};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;
use whg::config::Config;

/// Someone the issuer can sign in as.
#[derive(Debug, Clone)]
struct Account {
    subject: String,
    role: &'static str,
    organisation: String,
    label: String,
}

/// A code handed out and not yet swapped.
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    account: usize,
    issued: Instant,
}

/// How long a code may wait to be swapped (OAuth 2.0 Security BCP: short).
const CODE_LIFE: Duration = Duration::from_secs(60);

struct Issuer {
    url: String,
    client_id: String,
    key: whg::auth::SigningKey,
    accounts: Vec<Account>,
    grants: Mutex<HashMap<String, Grant>>,
}

/// The accounts for the gateway's configuration: a commissioner for each ODS code its services
/// name, a manager for each service, an operations account, and one account with no role.
fn accounts(config: &Config) -> Vec<Account> {
    let mut codes: Vec<&str> = config
        .services
        .iter()
        .flat_map(|s| s.commissioners.iter().map(String::as_str))
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let mut out: Vec<Account> = codes
        .into_iter()
        .map(|code| Account {
            subject: format!("dev-commissioner-{}", code.to_ascii_lowercase()),
            role: "commissioner",
            organisation: code.to_string(),
            label: format!("Commissioner at {code}"),
        })
        .collect();
    out.extend(config.services.iter().map(|s| Account {
        subject: format!("dev-manager-{}", s.id),
        role: "service-manager",
        organisation: s.id.clone(),
        label: format!("Service manager, {}", s.name),
    }));
    out.push(Account {
        subject: "dev-operations".into(),
        role: "operations",
        organisation: "X26".into(),
        label: "On call for the gateway (operations: the alerts page)".into(),
    });
    out.push(Account {
        subject: "dev-adviser".into(),
        role: "adviser",
        organisation: config
            .services
            .first()
            .map(|s| s.id.clone())
            .unwrap_or_default(),
        label: "An adviser (no dashboard role: sign-in is refused)".into(),
    });
    out
}

pub fn run(config: &Config, listen: SocketAddr, client_id: String) -> std::process::ExitCode {
    if !listen.ip().is_loopback() {
        eprintln!("whg: dev-issuer signs anyone in, so it listens on loopback only (not {listen})");
        return std::process::ExitCode::from(2);
    }
    let accounts = accounts(config);
    crate::local_server::run("dev-issuer", listen, |address| async move {
        let issuer = Arc::new(Issuer {
            url: format!("http://{address}"),
            client_id,
            key: whg::auth::SigningKey::generate(),
            accounts,
            grants: Mutex::new(HashMap::new()),
        });
        // The line a script waits for, and the configuration that points a gateway here.
        println!("dev issuer listening on {}", issuer.url);
        println!(
            "  for the gateway: [sign_in] issuer = \"{}\", client_id = \"{}\"",
            issuer.url, issuer.client_id
        );
        Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize).post(choose))
            .route("/token", axum::routing::post(token))
            .route("/signed-out", get(signed_out))
            .with_state(issuer)
    })
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Response {
    let base = &issuer.url;
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "end_session_endpoint": format!("{base}/signed-out"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES384"],
        "scopes_supported": ["openid"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        "claims_supported": ["sub", "whg_role", "whg_org"],
    }))
    .into_response()
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Response {
    Json(issuer.key.public_jwks()).into_response()
}

#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
}

fn page(status: StatusCode, title: &str, body: maud::Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en-GB" {
            head { meta charset="utf-8"; title { (title) " – development sign-in" } }
            body { main { h1 { (title) } (body) } }
        }
    };
    let mut response = (status, Html(markup.into_string())).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; form-action *; frame-ancestors 'none'",
        ),
    );
    response
}

/// Whether `uri` may be sent a code: an http(s) URL on this host (the gateway beside it).
fn loopback_redirect(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.fragment().is_none()
            && whg::outbound::on_this_host(&u)
    })
}

/// What is wrong with an authorization request, for the page (never sent to the redirect URI,
/// which is not trusted until it is checked).
fn refuse(issuer: &Issuer, q: &AuthorizeQuery) -> Option<&'static str> {
    if q.client_id != issuer.client_id {
        Some("the client_id is not the gateway's (see the line dev-issuer printed at start)")
    } else if !loopback_redirect(&q.redirect_uri) {
        Some("the redirect_uri must be an http(s) address on this host")
    } else if q.response_type != "code" {
        Some("only response_type=code is supported")
    } else if !q.scope.split(' ').any(|s| s == "openid") {
        Some("the scope must include openid")
    } else if q.code_challenge_method != "S256" || q.code_challenge.len() < 43 {
        Some("PKCE is required: code_challenge with code_challenge_method=S256")
    } else {
        None
    }
}

/// `GET /authorize`: who to sign in as.
async fn authorize(State(issuer): State<Arc<Issuer>>, Query(q): Query<AuthorizeQuery>) -> Response {
    if let Some(why) = refuse(&issuer, &q) {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in request is not valid",
            html! { p { (why) "." } },
        );
    }
    page(
        StatusCode::OK,
        "Choose who to sign in as",
        html! {
            p { "This is the gateway's development sign-in: it signs anyone in, and runs only on this computer." }
            form method="post" action="/authorize" {
                input type="hidden" name="client_id" value=(q.client_id);
                input type="hidden" name="redirect_uri" value=(q.redirect_uri);
                input type="hidden" name="state" value=[q.state.as_deref()];
                input type="hidden" name="nonce" value=[q.nonce.as_deref()];
                input type="hidden" name="code_challenge" value=(q.code_challenge);
                ul {
                    @for (i, a) in issuer.accounts.iter().enumerate() {
                        li {
                            button type="submit" name="account" value=(i) data-subject=(a.subject) { (a.label) }
                        }
                    }
                }
                p { button type="submit" name="cancel" value="1" { "Cancel" } }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
struct Choice {
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    code_challenge: String,
    #[serde(default)]
    account: Option<usize>,
    #[serde(default)]
    cancel: Option<String>,
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn redirect(to: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(to) {
        Ok(u) => u,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    for (k, v) in params {
        url.query_pairs_mut().append_pair(k, v);
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string())]).into_response()
}

/// `POST /authorize`: the person chose (or cancelled); back to the gateway with a code.
async fn choose(State(issuer): State<Arc<Issuer>>, Form(c): Form<Choice>) -> Response {
    let q = AuthorizeQuery {
        response_type: "code".into(),
        client_id: c.client_id.clone(),
        redirect_uri: c.redirect_uri.clone(),
        scope: "openid".into(),
        state: c.state.clone(),
        nonce: c.nonce.clone(),
        code_challenge: c.code_challenge.clone(),
        code_challenge_method: "S256".into(),
    };
    if let Some(why) = refuse(&issuer, &q) {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in request is not valid",
            html! { p { (why) "." } },
        );
    }
    // The state goes back only if the request sent one (RFC 6749 §4.1.2).
    let state = c.state.clone().unwrap_or_default();
    let mut params = Vec::new();
    if c.state.is_some() {
        params.push(("state", state.as_str()));
    }
    if c.cancel.is_some() {
        params.push(("error", "access_denied"));
        return redirect(&c.redirect_uri, &params);
    }
    let Some(account) = c.account.filter(|a| *a < issuer.accounts.len()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Choose an account",
            html! { p { "No account was chosen." } },
        );
    };
    let code = random();
    {
        let mut grants = issuer.grants.lock().unwrap_or_else(|p| p.into_inner());
        grants.retain(|_, g| g.issued.elapsed() < CODE_LIFE);
        grants.insert(
            code.clone(),
            Grant {
                client_id: c.client_id,
                redirect_uri: c.redirect_uri.clone(),
                challenge: c.code_challenge,
                nonce: c.nonce,
                account,
                issued: Instant::now(),
            },
        );
    }
    params.push(("code", code.as_str()));
    redirect(&c.redirect_uri, &params)
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    code_verifier: String,
}

/// An OAuth2 error answer (RFC 6749 §5.2).
fn token_error(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

/// The client id a token request authenticates as: its form field, or HTTP Basic (the oauth2
/// crate sends a confidential client's id and secret that way; the dev issuer takes any secret).
fn client_of(headers: &axum::http::HeaderMap, form: Option<&str>) -> Option<String> {
    if let Some(id) = form {
        return Some(id.to_string());
    }
    let basic = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let id = text.split(':').next()?;
    percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `POST /token`: a code (once) for an ID token, if the verifier, client and redirect match.
async fn token(
    State(issuer): State<Arc<Issuer>>,
    headers: axum::http::HeaderMap,
    Form(t): Form<TokenRequest>,
) -> Response {
    if t.grant_type != "authorization_code" {
        return token_error("unsupported_grant_type", "only authorization_code");
    }
    // One use: the code is gone whatever the outcome (RFC 6749 §4.1.2).
    let grant = issuer
        .grants
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&t.code);
    let Some(grant) = grant.filter(|g| g.issued.elapsed() < CODE_LIFE) else {
        return token_error("invalid_grant", "the code is unknown, used or expired");
    };
    if client_of(&headers, t.client_id.as_deref()).as_deref() != Some(grant.client_id.as_str()) {
        return token_error("invalid_client", "the code was issued to another client");
    }
    if t.redirect_uri != grant.redirect_uri {
        return token_error(
            "invalid_grant",
            "the redirect_uri differs from the authorization request's",
        );
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(t.code_verifier.as_bytes()));
    // RFC 7636 §4.1: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
    let well_formed = (43..=128).contains(&t.code_verifier.len())
        && t.code_verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed || computed != grant.challenge {
        return token_error(
            "invalid_grant",
            "the PKCE code_verifier does not match the challenge",
        );
    }
    let account = &issuer.accounts[grant.account];
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": issuer.url,
        "sub": account.subject,
        "aud": grant.client_id,
        "iat": now,
        "exp": now + 300,
        "auth_time": now,
        "whg_role": account.role,
        "whg_org": account.organisation,
    });
    if let Some(nonce) = grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    let id_token = issuer.key.sign(&claims);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": random(),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        })),
    )
        .into_response()
}

async fn signed_out() -> Response {
    page(
        StatusCode::OK,
        "Signed out of the development sign-in",
        html! { p { "The development sign-in keeps no sessions, so there is nothing more to end." } },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_go_only_to_this_host() {
        for (uri, ok) in [
            ("http://127.0.0.1:8080/dashboard/callback", true),
            ("https://localhost/dashboard/callback", true),
            ("http://[::1]:8080/cb", true),
            ("https://gateway.example.nhs.uk/dashboard/callback", false),
            ("http://127.0.0.1.evil.example/cb", false),
            ("javascript:alert(1)", false),
            ("http://127.0.0.1/cb#frag", false),
        ] {
            assert_eq!(super::loopback_redirect(uri), ok, "{uri}");
        }
    }
}
