//! Protections every route gets: a per-client request rate limit (429 with `Retry-After`),
//! security headers on every answer, and a bound on JSON nesting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Authentication;
use super::error::ApiError;

/// Token buckets by client id: each client may make `rate` requests a second on average, in
/// bursts of up to `burst`.
#[derive(Clone, Default)]
pub struct RateLimiter {
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

/// Most clients tracked at once; idle (full) buckets are dropped first.
const MAX_TRACKED_CLIENTS: usize = 100_000;

impl RateLimiter {
    /// Takes one request from `key`'s bucket at the configured per-client rate, or says how many
    /// seconds until one is free.
    pub fn admit(&self, key: &str, limits: &crate::config::Limits) -> Result<(), u64> {
        self.take(
            key,
            limits.requests_per_second_per_client,
            limits.burst_per_client,
            Instant::now(),
        )
    }

    /// Takes one request from `client`'s bucket, or says how many seconds until one is free.
    pub fn take(&self, client: &str, rate: f64, burst: f64, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(client) {
            buckets.retain(|_, (tokens, last)| {
                (*tokens + now.duration_since(*last).as_secs_f64() * rate) < burst
            });
        }
        let (tokens, last) = buckets.entry(client.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Limits each authenticated client's request rate. Requests without a valid token are left to
/// the route, which refuses them (401). Runs after [`super::auth::authenticate`].
pub async fn rate_limit(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(Authentication(Ok(principal))) = req.extensions().get::<Authentication>()
        && let Err(wait) = app.limiter.admit(&principal.client_id, &app.config.limits)
    {
        tracing::warn!(client = %principal.client_id, retry_after = wait, "rate limit reached");
        return ApiError::TooManyRequests(wait).into_response();
    }
    next.run(req).await
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
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
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

/// The deepest nesting of arrays and objects in `json` (strings skipped), stopping once it
/// passes `limit`.
pub fn nesting_exceeds(json: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_refill_at_the_rate_and_cap_at_the_burst() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("a", 1.0, 3.0, t0).is_ok());
        }
        assert_eq!(l.take("a", 1.0, 3.0, t0), Err(1));
        assert!(
            l.take("b", 1.0, 3.0, t0).is_ok(),
            "clients have their own buckets"
        );
        assert!(
            l.take("a", 1.0, 3.0, t0 + Duration::from_millis(1100))
                .is_ok()
        );
        assert_eq!(
            l.take("a", 0.1, 3.0, t0 + Duration::from_millis(1100)),
            Err(9),
            "0.1 of a request left, refilling at 0.1 a second"
        );
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a":[{"b":"[[[[[[["}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!nesting_exceeds(br#"{"a":"\"[[[[[["}"#, 1));
        assert!(nesting_exceeds(&b"[".repeat(10_000), 64));
    }
}
