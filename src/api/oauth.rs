//! The authorization server for registered systems (SMART Backend Services): discovery, the
//! gateway's public key, and the token endpoint that swaps a signed client assertion for a
//! short-lived access token.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::auth::assertion::{self, ASSERTION_TYPE, OAuthError};
use crate::auth::{Principal, scope};
use crate::store::ClientRecord;

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
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": scope::ALL,
            "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
        }),
    )
}

/// `GET /.well-known/jwks.json`: the key the gateway's access tokens are signed with.
pub async fn jwks(State(app): State<AppState>) -> Response {
    (StatusCode::OK, axum::Json(app.tokens.jwks())).into_response()
}

/// `POST /oauth2/token` (`application/x-www-form-urlencoded`).
pub async fn token(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match issue(&app, &headers, &body).await {
        Ok(answer) => no_store(StatusCode::OK, answer),
        Err(e) => {
            tracing::info!(error = e.code(), reason = %e, "token request refused");
            let status = match e {
                OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            };
            no_store(
                status,
                json!({ "error": e.code(), "error_description": e.to_string() }),
            )
        }
    }
}

async fn issue(app: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().unwrap_or_default().trim() == "application/x-www-form-urlencoded"
        });
    if !form_type {
        return Err(OAuthError::InvalidRequest(
            "send the token request as application/x-www-form-urlencoded".into(),
        ));
    }
    let mut grant_type = None;
    let mut assertion_type = None;
    let mut client_assertion = None;
    let mut requested_scope = None;
    for (k, v) in form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            "grant_type" => &mut grant_type,
            "client_assertion_type" => &mut assertion_type,
            "client_assertion" => &mut client_assertion,
            "scope" => &mut requested_scope,
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(OAuthError::InvalidRequest(format!(
                "{k} is given more than once"
            )));
        }
    }
    match grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type {other} is not supported: use client_credentials"
            )));
        }
        None => return Err(OAuthError::InvalidRequest("grant_type is required".into())),
    }
    if assertion_type.as_deref() != Some(ASSERTION_TYPE) {
        return Err(OAuthError::InvalidRequest(format!(
            "client_assertion_type must be {ASSERTION_TYPE}"
        )));
    }
    let client_assertion = client_assertion
        .ok_or_else(|| OAuthError::InvalidRequest("client_assertion is required".into()))?;
    let (jwt_header, client_id) = assertion::claimed_client(&client_assertion)?;
    // Checking a signature costs CPU: token requests count against the claimed client's rate.
    if let Err(wait) = app
        .limiter
        .admit(&format!("token:{client_id}"), &app.config.limits)
    {
        return Err(OAuthError::InvalidRequest(format!(
            "too many token requests for this client: retry after {wait} s"
        )));
    }
    let client = app
        .store
        .client(&client_id)
        .await
        .map_err(|e| {
            OAuthError::InvalidRequest(format!("the client registry cannot be read now: {e}"))
        })?
        .filter(|c| c.revoked_at.is_none())
        .ok_or_else(|| {
            OAuthError::InvalidClient(format!("'{client_id}' is not a registered, active client"))
        })?;
    let keys = client_keys(app, &client).await?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let verified = assertion::verify(
        &client_assertion,
        &jwt_header,
        &client.id,
        &keys,
        &token_url(app),
        now,
    )?;
    let first_use = app
        .store
        .consume_assertion(&client.id, &verified.jti, verified.exp as i64)
        .await
        .map_err(|e| {
            OAuthError::InvalidRequest(format!("the assertion cannot be recorded now: {e}"))
        })?;
    if !first_use {
        return Err(OAuthError::InvalidGrant(
            "this client assertion was used before: sign a new one, with a new jti, for each token request".into(),
        ));
    }
    let scopes = assertion::grant_scopes(requested_scope.as_deref(), &client.scopes)?;
    let mut principal = Principal::new(client.role, &client.organisation);
    principal.client_id = client.id.clone();
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

/// The client's registered keys, fetched when it registered a JWKS URL.
async fn client_keys(
    app: &AppState,
    client: &ClientRecord,
) -> Result<jsonwebtoken::jwk::JwkSet, OAuthError> {
    let set = match (&client.jwks, &client.jwks_url) {
        (Some(set), _) => set.clone(),
        (None, Some(url)) => app
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                OAuthError::InvalidClient(format!("the client's JWKS URL cannot be read: {e}"))
            })?
            .json::<Value>()
            .await
            .map_err(|e| {
                OAuthError::InvalidClient(format!("the client's JWKS URL does not give JSON: {e}"))
            })?,
        (None, None) => Value::Null,
    };
    serde_json::from_value(set).map_err(|e| {
        OAuthError::InvalidClient(format!(
            "the client's registered keys are not a JWK Set: {e}"
        ))
    })
}

fn no_store(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
