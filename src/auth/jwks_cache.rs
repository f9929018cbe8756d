//! Registered clients' JWK Sets fetched from their JWKS URLs, kept for a while. The token
//! endpoint needs a client's keys before the caller is authenticated, so without a cache every
//! anonymous request naming the client would make the gateway download from the client's
//! vendor: an amplifier onto the vendor, which may then throttle the gateway and lock the
//! genuine client out.
//!
//! The rule, per client: a fetched set is used for `ttl`; before that it is fetched again only
//! when an assertion names a `kid` the set lacks (the client may have rotated its key), or when
//! the last fetch failed; and never more than once per `min_refetch`, whatever the assertions
//! say, so a failed fetch is remembered for that long too. Requests for one client wait for a
//! fetch already under way and use what it got.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

/// How long fetched sets are used, and how often a client's URL may be asked at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub min_refetch: Duration,
}

impl CachePolicy {
    /// The policy the `[outbound]` configuration sets.
    pub fn configured(outbound: &crate::config::OutboundConfig) -> Self {
        CachePolicy {
            ttl: Duration::from_secs(outbound.jwks_cache_secs),
            min_refetch: Duration::from_secs(outbound.jwks_min_refetch_secs),
        }
    }
}

/// A fetch's outcome: the set, or why it could not be had (the gateway's own words, for the log).
pub type Fetched = Result<Arc<JwkSet>, &'static str>;

/// The last fetch from one client's URL.
#[derive(Debug, Clone)]
struct Entry {
    url: String,
    at: Instant,
    outcome: Fetched,
}

/// Whether to use the last fetch's outcome or fetch again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    UseCached,
    Fetch,
}

/// What to do for an assertion naming `kid`, given the last fetch for the client (pure).
fn decide(
    last: Option<&Entry>,
    url: &str,
    kid: Option<&str>,
    now: Instant,
    policy: &CachePolicy,
) -> Decision {
    let Some(last) = last.filter(|e| e.url == url) else {
        return Decision::Fetch;
    };
    let age = now.saturating_duration_since(last.at);
    if age < policy.min_refetch {
        return Decision::UseCached;
    }
    if age >= policy.ttl {
        return Decision::Fetch;
    }
    match &last.outcome {
        Err(_) => Decision::Fetch,
        Ok(set) if kid.is_some_and(|kid| set.find(kid).is_none()) => Decision::Fetch,
        Ok(_) => Decision::UseCached,
    }
}

/// The cache: one slot per client that has a JWKS URL and was named in a token request (the
/// caller checks the client is registered first, so the registry bounds the slots).
pub struct JwksCache {
    policy: CachePolicy,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Entry>>>>>,
}

impl JwksCache {
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            slots: Mutex::default(),
        }
    }

    /// The keys of `client` for an assertion naming `kid`, from the cache or from `fetch`
    /// (called at most once, and only when the rule above allows it).
    pub async fn keys<F, Fut>(
        &self,
        client: &str,
        url: &str,
        kid: Option<&str>,
        fetch: F,
    ) -> Fetched
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<JwkSet, &'static str>>,
    {
        let slot = self.slot(client);
        // Held across the fetch: a second request for the client waits for it and then finds
        // a fresh entry, so a burst of requests makes one fetch.
        let mut last = slot.lock().await;
        if let Some(entry) = last.as_ref()
            && decide(Some(entry), url, kid, Instant::now(), &self.policy) == Decision::UseCached
        {
            return entry.outcome.clone();
        }
        let outcome = fetch().await.map(Arc::new);
        *last = Some(Entry {
            url: url.to_owned(),
            at: Instant::now(),
            outcome: outcome.clone(),
        });
        outcome
    }

    fn slot(&self, client: &str) -> Arc<tokio::sync::Mutex<Option<Entry>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(client.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const POLICY: CachePolicy = CachePolicy {
        ttl: Duration::from_secs(300),
        min_refetch: Duration::from_secs(30),
    };
    const URL: &str = "https://gp-supplier.example/jwks";

    fn set(kids: &[&str]) -> JwkSet {
        let keys: Vec<serde_json::Value> = kids
            .iter()
            .map(|kid| {
                serde_json::json!({
                    "kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384",
                    "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "keys": keys })).unwrap()
    }

    fn entry(at: Instant, outcome: Result<JwkSet, &'static str>) -> Entry {
        Entry {
            url: URL.into(),
            at,
            outcome: outcome.map(Arc::new),
        }
    }

    #[test]
    fn every_case_of_the_rule() {
        let t0 = Instant::now();
        let secs = |s| t0 + Duration::from_secs(s);
        let fetched = entry(t0, Ok(set(&["a"])));
        let failed = entry(t0, Err("the client's JWKS URL cannot be reached"));
        use Decision::*;
        for (what, last, url, kid, now, expected) in [
            ("nothing fetched yet", None, URL, None, t0, Fetch),
            (
                "the URL was changed",
                Some(&fetched),
                "https://other.example/jwks",
                Some("a"),
                secs(1),
                Fetch,
            ),
            (
                "a known kid",
                Some(&fetched),
                URL,
                Some("a"),
                secs(31),
                UseCached,
            ),
            ("no kid", Some(&fetched), URL, None, secs(31), UseCached),
            (
                "an unknown kid, past min_refetch",
                Some(&fetched),
                URL,
                Some("b"),
                secs(31),
                Fetch,
            ),
            (
                "an unknown kid, within min_refetch",
                Some(&fetched),
                URL,
                Some("b"),
                secs(29),
                UseCached,
            ),
            (
                "a failure, within min_refetch",
                Some(&failed),
                URL,
                Some("a"),
                secs(29),
                UseCached,
            ),
            (
                "a failure, past min_refetch",
                Some(&failed),
                URL,
                None,
                secs(30),
                Fetch,
            ),
            (
                "a known kid, past the ttl",
                Some(&fetched),
                URL,
                Some("a"),
                secs(300),
                Fetch,
            ),
        ] {
            assert_eq!(decide(last, url, kid, now, &POLICY), expected, "{what}");
        }
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_client_make_one_fetch() {
        let cache = Arc::new(JwksCache::new(POLICY));
        let fetches = Arc::new(AtomicUsize::new(0));
        let requests: Vec<_> = (0..20)
            .map(|_| {
                let (cache, fetches) = (cache.clone(), fetches.clone());
                tokio::spawn(async move {
                    cache
                        .keys("gp-1", URL, Some("a"), || async move {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(set(&["a"]))
                        })
                        .await
                })
            })
            .collect();
        for request in requests {
            assert!(request.await.unwrap().unwrap().find("a").is_some());
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Each client has its own entry.
        let other = cache
            .keys("gp-2", URL, None, || async {
                Err("the client's JWKS URL cannot be reached")
            })
            .await;
        assert!(other.is_err());
        let again = cache
            .keys("gp-2", URL, None, || async { Ok(set(&["a"])) })
            .await;
        assert!(again.is_err(), "the failure is remembered for min_refetch");
    }
}
