//! Protections every route gets: a request rate limit (429 with `Retry-After`) per client, and
//! per source address for requests without a valid token; security headers on every answer; and
//! a bound on JSON nesting.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Authentication;
use super::error::ApiError;

/// Limits each authenticated client's request rate, and the rate of requests without a valid
/// token (the token endpoint, discovery, probes, refused tokens) from each source address, before
/// the route reads anything of them: a flood of forged token requests is stopped here, at its
/// sender's address. Runs after [`super::auth::authenticate`], which for a request without a
/// bearer token does nothing.
pub async fn rate_limit(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &app.config.limits;
    match req.extensions().get::<Authentication>() {
        Some(Authentication(Ok(principal))) => {
            if let Err(t) = app
                .limiter
                .admit(&*app.store, &principal.client_id, limits)
                .await
            {
                if t.first {
                    tracing::warn!(client = %principal.client_id, retry_after = t.wait, "rate limit reached");
                }
                return ApiError::TooManyRequests(t.wait).into_response();
            }
        }
        _ => {
            let source = source_address(&req, limits);
            if let Err(t) = app
                .limiter
                .admit_unauthenticated(&*app.store, source, limits)
                .await
            {
                if t.first {
                    tracing::warn!(source = %source, retry_after = t.wait, "unauthenticated rate limit reached; further refusals are not logged until it admits again");
                }
                return if req.uri().path() == "/oauth2/token" {
                    super::oauth::throttled(t.wait)
                } else {
                    ApiError::TooManyRequests(t.wait).into_response()
                };
            }
        }
    }
    next.run(req).await
}

/// The address `req` came from: its connection's, or behind a proxy listed in
/// `[limits] trusted_proxies` the one that proxy says it was sent from
/// ([`super::client_address::client_address`]).
pub fn source_address(req: &Request, limits: &crate::config::Limits) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    super::client_address::client_address(peer, &forwarded, &limits.trusted_proxies)
}

/// Headers every answer carries: it is health data, for machines, never to be cached, framed,
/// sniffed or scripted.
pub async fn security_headers(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A route that serves pages (the dashboard) sets its own, as strict as they allow.
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    // The dashboard's pages send their origin to the gateway itself (its sign-out form checks
    // it; under no-referrer a browser sends `Origin: null`), never to another site.
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if app.config.tls.is_some() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// The header a test-tenant client sets to see an error state on demand, as NHS England's BaRS
/// workbench has test values for each: what a live system answers only when something is wrong
/// (throttled, unavailable, timed out), so an integrator can prove its handling before it meets
/// one. A live client's header has no effect: triggers are for synthetic traffic only.
pub const TEST_TRIGGER: &str = "x-test-trigger";

/// The trigger values and the answer each gives, as docs/onboarding.md lists them.
pub const TEST_TRIGGERS: [&str; 3] = ["throttled", "unavailable", "timeout"];

pub async fn test_triggers(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(Authentication(Ok(principal))) = req.extensions().get::<Authentication>() else {
        return next.run(req).await;
    };
    let Some(trigger) = req.headers().get(TEST_TRIGGER) else {
        return next.run(req).await;
    };
    if !principal.test_tenant {
        return next.run(req).await;
    }
    match trigger.to_str().unwrap_or_default().trim() {
        "throttled" => ApiError::TooManyRequests(5).into_response(),
        "unavailable" => ApiError::Unavailable(
            "the gateway is unavailable (the test trigger 'unavailable'); nothing was stored and it is safe to resend".into(),
        )
        .into_response(),
        "timeout" => ApiError::Timeout(app.config.limits.request_timeout_secs).into_response(),
        other => ApiError::BadRequest(
            crate::fhir::Issue::error(
                crate::fhir::IssueType::Value,
                "X-Test-Trigger",
                format!(
                    "no test trigger '{}': use one of {}",
                    other.chars().take(40).collect::<String>(),
                    TEST_TRIGGERS.join(", ")
                ),
            )
            .into(),
        )
        .into_response(),
    }
}
