//! Protections every route gets: a request rate limit (429 with `Retry-After`) per client, and
//! per source address for requests without a valid token; security headers on every answer; and
//! a bound on JSON nesting.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Authentication;
use super::error::ApiError;

/// Token buckets by client id (or other key): each may make `rate` requests a second on
/// average, in bursts of up to `burst`.
#[derive(Clone, Default)]
pub struct RateLimiter {
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Whether a refusal has been reported since the bucket last admitted a request.
    refusal_reported: bool,
}

/// A refused request: seconds until the bucket has one again, and whether this is the first
/// refusal since it last admitted one (a flood is logged once, not once per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub wait: u64,
    pub first: bool,
}

/// Most clients tracked at once; idle (full) buckets are dropped first.
const MAX_TRACKED_CLIENTS: usize = 100_000;

impl RateLimiter {
    /// Takes one request from `key`'s bucket at the configured per-client rate, or says how many
    /// seconds until one is free.
    pub fn admit(&self, key: &str, limits: &crate::config::Limits) -> Result<(), Throttled> {
        self.take(
            key,
            limits.requests_per_second_per_client,
            limits.burst_per_client,
            Instant::now(),
        )
    }

    /// The same for an unauthenticated request from `source`, at the per-source rate. Its
    /// buckets are apart from every client's (a source can never spend a client's allowance).
    pub fn admit_unauthenticated(
        &self,
        source: IpAddr,
        limits: &crate::config::Limits,
    ) -> Result<(), Throttled> {
        self.take(
            &source_key(source),
            limits.unauthenticated_requests_per_second_per_source,
            limits.unauthenticated_burst_per_source,
            Instant::now(),
        )
    }

    /// Takes one request from `key`'s bucket, or says how long until one is free.
    pub fn take(&self, key: &str, rate: f64, burst: f64, now: Instant) -> Result<(), Throttled> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(key) {
            buckets.retain(|_, b| {
                (b.tokens + now.duration_since(b.last).as_secs_f64() * rate) < burst
            });
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
            refusal_reported: false,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.refusal_reported = false;
            Ok(())
        } else {
            let first = !std::mem::replace(&mut bucket.refusal_reported, true);
            Err(Throttled {
                wait: ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64,
                first,
            })
        }
    }
}

/// The bucket of a source address: an IPv6 source by its /64, which one host can fill with
/// addresses of its own.
fn source_key(source: IpAddr) -> String {
    match source {
        IpAddr::V4(v4) => format!("source:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("source:{v4}"),
            None => {
                let s = v6.segments();
                format!("source:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Limits each authenticated client's request rate, and the rate of requests without a valid
/// token (the token endpoint, discovery, probes, refused tokens) from each source address, before
/// the route reads anything of them: a flood of forged token requests is stopped here, at its
/// sender's address. Runs after [`super::auth::authenticate`], which for a request without a
/// bearer token does nothing.
pub async fn rate_limit(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &app.config.limits;
    match req.extensions().get::<Authentication>() {
        Some(Authentication(Ok(principal))) => {
            if let Err(t) = app.limiter.admit(&principal.client_id, limits) {
                if t.first {
                    tracing::warn!(client = %principal.client_id, retry_after = t.wait, "rate limit reached");
                }
                return ApiError::TooManyRequests(t.wait).into_response();
            }
        }
        _ => {
            let source = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
            if let Err(t) = app.limiter.admit_unauthenticated(source, limits) {
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
        assert_eq!(
            l.take("a", 1.0, 3.0, t0),
            Err(Throttled {
                wait: 1,
                first: true
            })
        );
        assert_eq!(
            l.take("a", 1.0, 3.0, t0).map_err(|t| t.first),
            Err(false),
            "a refusal is reported once"
        );
        assert!(
            l.take("b", 1.0, 3.0, t0).is_ok(),
            "clients have their own buckets"
        );
        assert!(
            l.take("a", 1.0, 3.0, t0 + Duration::from_millis(1100))
                .is_ok()
        );
        assert_eq!(
            l.take("a", 0.1, 3.0, t0 + Duration::from_millis(1100))
                .map_err(|t| (t.wait, t.first)),
            Err((9, true)),
            "0.1 of a request left, refilling at 0.1 a second; reported again after an admission"
        );
    }

    #[test]
    fn ipv6_sources_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(other));
        assert_eq!(
            source_key("::ffff:192.0.2.1".parse().unwrap()),
            source_key("192.0.2.1".parse().unwrap())
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
