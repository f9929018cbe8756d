//! The authorization server for registered systems (SMART Backend Services): discovery, the
//! gateway's public key, and the token endpoint that swaps a signed client assertion for a
//! short-lived access token.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::app::tokens::{self, AuthenticationError, KeySources};
use crate::auth::assertion::{self, ASSERTION_TYPE, OAuthError};
use crate::auth::{Principal, scope};
use crate::store::ClientId;

/// Where clients send assertions: also the `aud` their assertions must name.
pub fn token_url(app: &AppState) -> String {
    format!("{}/oauth2/token", app.config.base_url())
}

/// `GET /.well-known/smart-configuration`
pub async fn smart_configuration(State(app): State<AppState>) -> Response {
    let base = app.config.base_url();
    no_store(
        StatusCode::OK,
        json!({
            "issuer": app.config.auth.issuer,
            "token_endpoint": token_url(&app),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": crate::auth::assertion::ALGORITHMS.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>(),
            "scopes_supported": scope::ALL,
            "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
        }),
    )
}

/// `GET /.well-known/jwks.json`: the key the gateway's access tokens are signed with.
pub async fn jwks(State(app): State<AppState>) -> Response {
    (StatusCode::OK, axum::Json(app.tokens.jwks())).into_response()
}

/// A refused token request: the OAuth error, its HTTP status, and the client the request named
/// once that id passed the registry's rule (for the log: nothing else the caller sent is logged).
struct Refused {
    error: OAuthError,
    status: StatusCode,
    retry_after: Option<u64>,
    client: Option<String>,
}

impl From<OAuthError> for Refused {
    fn from(error: OAuthError) -> Self {
        let status = match error {
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        Refused {
            error,
            status,
            retry_after: None,
            client: None,
        }
    }
}

impl Refused {
    fn with_status(error: OAuthError, status: StatusCode) -> Self {
        Refused {
            status,
            ..error.into()
        }
    }

    fn for_client(mut self, client: &str) -> Self {
        self.client = Some(client.to_string());
        self
    }

    /// The answer, with a log line saying why.
    fn into_response(self) -> Response {
        tracing::info!(
            error = self.error.code(),
            reason = self.error.log_reason(),
            client = self.client.as_deref().unwrap_or("-"),
            "token request refused"
        );
        self.answer()
    }

    /// The answer alone.
    fn answer(self) -> Response {
        let mut response = no_store(
            self.status,
            json!({ "error": self.error.code(), "error_description": self.error.to_string() }),
        );
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        response
    }
}

/// The answer for a caller over the per-source limit for unauthenticated requests (not logged
/// each time: the limiter reports a flood once).
pub fn throttled(wait: u64) -> Response {
    Refused {
        retry_after: Some(wait),
        ..Refused::with_status(
            OAuthError::InvalidRequest(format!(
                "too many unauthenticated requests from this address: retry after {wait} s"
            )),
            StatusCode::TOO_MANY_REQUESTS,
        )
    }
    .answer()
}

/// `POST /oauth2/token` (`application/x-www-form-urlencoded`). The caller is not authenticated
/// yet, so everything here is bounded before it costs anything: the per-source limit for
/// unauthenticated requests has been taken ([`super::limits::rate_limit`]) before the body is
/// read; the body is read only up to `limits.max_token_request_bytes`; and the named client's
/// own rate is charged only once its assertion has verified, so forged assertions naming a
/// registered client never lock that client out.
pub async fn token(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let answer = match read_form(&app, &headers, body).await {
        Ok(form) => issue(&app, &form).await,
        Err(refused) => Err(refused),
    };
    match answer {
        Ok(answer) => no_store(StatusCode::OK, answer),
        Err(refused) => refused.into_response(),
    }
}

/// The request's form body, once its content type and size are acceptable.
async fn read_form(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, Refused> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().unwrap_or_default().trim() == "application/x-www-form-urlencoded"
        });
    if !form_type {
        return Err(OAuthError::InvalidRequest(
            "send the token request as application/x-www-form-urlencoded".into(),
        )
        .into());
    }
    let limit = app.config.limits.max_token_request_bytes;
    let too_large = || {
        Refused::with_status(
            OAuthError::InvalidRequest(format!("the token request is larger than {limit} bytes")),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

/// The form's fields, each at most once.
struct TokenForm {
    grant_type: Option<String>,
    assertion_type: Option<String>,
    client_assertion: Option<String>,
    scope: Option<String>,
}

fn parse_form(body: &[u8]) -> Result<TokenForm, OAuthError> {
    let mut form = TokenForm {
        grant_type: None,
        assertion_type: None,
        client_assertion: None,
        scope: None,
    };
    for (k, v) in form_urlencoded::parse(body) {
        let (name, slot) = match k.as_ref() {
            "grant_type" => ("grant_type", &mut form.grant_type),
            "client_assertion_type" => ("client_assertion_type", &mut form.assertion_type),
            "client_assertion" => ("client_assertion", &mut form.client_assertion),
            "scope" => ("scope", &mut form.scope),
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(OAuthError::InvalidRequest(format!(
                "{name} is given more than once"
            )));
        }
    }
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::UnsupportedGrantType(
                "the only grant_type supported is client_credentials".into(),
            ));
        }
        None => return Err(OAuthError::InvalidRequest("grant_type is required".into())),
    }
    if form.assertion_type.as_deref() != Some(ASSERTION_TYPE) {
        return Err(OAuthError::InvalidRequest(format!(
            "client_assertion_type must be {ASSERTION_TYPE}"
        )));
    }
    if form.client_assertion.is_none() {
        return Err(OAuthError::InvalidRequest(
            "client_assertion is required".into(),
        ));
    }
    Ok(form)
}

async fn issue(app: &AppState, body: &[u8]) -> Result<Value, Refused> {
    let form = parse_form(body)?;
    let client_assertion = form.client_assertion.as_deref().unwrap_or_default();
    let (jwt_header, client_id) = assertion::claimed_client(client_assertion)?;
    let refused = |e: OAuthError| Refused::from(e).for_client(&client_id);
    let sources = KeySources {
        jwks_cache: &app.jwks_cache,
        http: &app.http,
        outbound: &app.config.outbound,
    };
    let client = tokens::authenticate(
        &*app.store,
        &sources,
        client_assertion,
        &jwt_header,
        &ClientId::new(client_id.as_str()),
        &token_url(app),
    )
    .await
    .map_err(|e| match e {
        AuthenticationError::Unavailable => Refused::with_status(
            OAuthError::InvalidRequest(
                "the token endpoint cannot answer now: try again shortly".into(),
            ),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        AuthenticationError::Refused(e) => refused(e),
    })?;
    // Only now, with the client proven, does the request count against the client's own rate:
    // forged or replayed assertions spend the sender's per-source allowance, never the client's.
    if let Err(throttled) = app
        .limiter
        .admit(
            &*app.store,
            &format!("token:{}", client.id),
            &app.config.limits,
        )
        .await
    {
        let wait = throttled.wait;
        return Err(Refused {
            retry_after: Some(wait),
            ..Refused::with_status(
                OAuthError::InvalidRequest(format!(
                    "too many token requests for this client: retry after {wait} s"
                )),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .for_client(client.id.as_str())
        });
    }
    let scopes = assertion::grant_scopes(form.scope.as_deref(), &client.scopes).map_err(refused)?;
    let mut principal = Principal::new(client.role, &client.organisation);
    principal.client_id = client.id.to_string();
    principal.scopes = scopes;
    principal.test_tenant = client.test_tenant;
    let ttl = Duration::from_secs(app.config.auth.token_ttl_secs);
    tracing::info!(client = %client.id, "access token issued");
    Ok(json!({
        "access_token": app.issuer.issue(&principal, ttl),
        "token_type": "bearer",
        "expires_in": ttl.as_secs(),
        "scope": principal.scopes.join(" "),
    }))
}

fn no_store(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
