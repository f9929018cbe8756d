//! The caller, from the `Authorization: Bearer` access token.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::auth::{Principal, TokenError};

/// What a request's bearer token proved, checked once per request by [`authenticate`] and read
/// by the rate limiter and the [`Principal`] extractor.
#[derive(Clone)]
pub struct Authentication(pub Result<Principal, TokenError>);

fn check_bearer(headers: &HeaderMap, app: &AppState) -> Result<Principal, TokenError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(TokenError::Missing)?;
    app.tokens.verify(token)
}

/// Checks the bearer token, if any, and records the outcome on the request. A missing or bad
/// token is not refused here: routes that need one refuse it (public routes need none).
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let outcome = check_bearer(req.headers(), &app);
    req.extensions_mut().insert(Authentication(outcome));
    next.run(req).await
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let outcome = match parts.extensions.get::<Authentication>() {
            Some(Authentication(outcome)) => outcome.clone(),
            None => check_bearer(&parts.headers, app),
        };
        outcome.map_err(ApiError::Unauthorized)
    }
}

/// The request id the request-id layer set (or the client's own, when acceptable), for the
/// audit trail. The router already replaced an unacceptable one; checking again here keeps
/// anything else out of AuditEvents whatever layers a route is served behind.
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| super::acceptable_request_id(id))
        .map(str::to_string)
}

/// The caller of a use case: the request's principal and its request id (see [`request_id`]).
pub fn caller<'a>(principal: &'a Principal, headers: &HeaderMap) -> crate::app::Caller<'a> {
    crate::app::Caller::new(principal, request_id(headers))
}

/// Refuses a caller without `scope`.
pub fn require_scope(principal: &Principal, scope: &str) -> Result<(), ApiError> {
    if principal.has_scope(scope) {
        Ok(())
    } else {
        Err(ApiError::MissingScope(format!(
            "this needs the scope {scope}, which the access token does not carry"
        )))
    }
}
