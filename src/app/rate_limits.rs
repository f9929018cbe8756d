//! Request rate limits: a token bucket per authenticated client (and per client's token
//! requests), and per source address for requests without a valid token. With several instances
//! each client's allowance is shared through the store ([`Coordination`]), so the instances
//! together allow a client its rate; a store that cannot answer falls back to this instance's own
//! buckets. The HTTP edge (`crate::api::limits`) turns a refusal into a 429.

use std::collections::hash_map::RandomState;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hashlink::LruCache;

use crate::store::{Allowance, Coordination};

/// The request rate limits: token buckets for authenticated clients (and each client's token
/// requests) apart from those for unauthenticated source addresses, so a flood from new
/// sources never touches, or waits on the lock of, a client's bucket.
#[derive(Clone)]
pub struct RateLimiter {
    clients: Arc<Buckets>,
    sources: Arc<Buckets>,
    /// Caps over every source together: a bucket set of their own, so no flood of new
    /// sources can push one out of the least-recently-used set (it would come back full).
    shared_caps: Arc<Buckets>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            clients: Arc::new(Buckets::new(MAX_TRACKED_CLIENTS)),
            sources: Arc::new(Buckets::new(MAX_TRACKED_SOURCES)),
            shared_caps: Arc::new(Buckets::new(8)),
        }
    }
}

/// Most client buckets kept at once (the registry's clients, each also with a token-request
/// bucket).
const MAX_TRACKED_CLIENTS: usize = 100_000;
/// Most source buckets kept at once: about 16 MiB when full (measured with IPv6 /64 keys).
const MAX_TRACKED_SOURCES: usize = 100_000;

/// At most `capacity` token buckets, by key. A new key past the cap drops the least recently
/// used bucket, in constant time: memory is bounded whatever the traffic, and no request scans
/// the other buckets. Dropping a bucket can only ever admit more, never refuse anyone: its key
/// starts again with a full burst. So a sender with more keys than the cap (IPv6 /64s) gains at
/// most one fresh burst per key each time it cycles through them all.
struct Buckets {
    /// Keyed by SipHash with a per-process key: the keys are the senders' (source addresses).
    buckets: Mutex<LruCache<String, Bucket, RandomState>>,
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

impl RateLimiter {
    /// Takes one request from `client`'s bucket at the configured per-client rate, or says how
    /// many seconds until one is free.
    pub async fn admit(
        &self,
        shared: &dyn Coordination,
        client: &str,
        limits: &crate::config::Limits,
    ) -> Result<(), Throttled> {
        let key = format!("client:{client}");
        let (rate, burst) = (
            limits.requests_per_second_per_client,
            limits.burst_per_client,
        );
        take(&self.clients, shared, &key, rate, burst).await
    }

    /// The same for an unauthenticated request from `source`, at the per-source rate. Its
    /// buckets are apart from every client's (a source can never spend a client's allowance).
    pub async fn admit_unauthenticated(
        &self,
        shared: &dyn Coordination,
        source: IpAddr,
        limits: &crate::config::Limits,
    ) -> Result<(), Throttled> {
        let (rate, burst) = (
            limits.unauthenticated_requests_per_second_per_source,
            limits.unauthenticated_burst_per_source,
        );
        take(&self.sources, shared, &source_key(source), rate, burst).await
    }

    /// The same for a signed-in person's dashboard page, at the per-person rate: a page
    /// counts every referral of the person's services, far more work than an API request, and a
    /// person's pages are not a client system's traffic. Keyed by the person's subject, apart
    /// from every client and source.
    pub async fn admit_person(
        &self,
        shared: &dyn Coordination,
        subject: &str,
        limits: &crate::config::Limits,
    ) -> Result<(), Throttled> {
        let key = format!("person:{subject}");
        let (rate, burst) = (
            limits.dashboard_pages_per_second_per_person,
            limits.dashboard_page_burst_per_person,
        );
        take(&self.clients, shared, &key, rate, burst).await
    }
}

impl RateLimiter {
    /// Takes one self-referral form sent from `source` from its allowance (`[self_referral]`
    /// per source): every attempt counts, so a flood from one address is stopped at it. Apart
    /// from every client's bucket.
    pub async fn admit_self_referral_from(
        &self,
        shared: &dyn Coordination,
        source: IpAddr,
        limits: &crate::config::SelfReferralConfig,
    ) -> Result<(), Throttled> {
        let key = format!("refer:{}", source_key(source));
        take(
            &self.sources,
            shared,
            &key,
            limits.per_source_per_hour / 3600.0,
            limits.burst_per_source,
        )
        .await
    }

    /// Takes one self-referral about to be stored from every source's allowance together: a
    /// flood from many addresses fills neither the store nor the services' worklists. Only
    /// forms that passed every check count, so forged or broken ones cannot spend it.
    pub async fn admit_self_referral_stored(
        &self,
        shared: &dyn Coordination,
        limits: &crate::config::SelfReferralConfig,
    ) -> Result<(), Throttled> {
        take(
            &self.shared_caps,
            shared,
            "refer:all",
            limits.all_sources_per_minute / 60.0,
            limits.burst_all_sources,
        )
        .await
    }
}

impl RateLimiter {
    /// Takes one date of birth given on the one-time link to employer letter `letter` from its
    /// allowance (`[employer_letters] birth_date_tries_per_day`, right or wrong): whoever holds
    /// a link can try only a few dates a day, from however many addresses.
    pub async fn admit_link_try(
        &self,
        shared: &dyn Coordination,
        letter: &str,
        limits: &crate::config::EmployerLettersConfig,
    ) -> Result<(), Throttled> {
        let key = format!("letter-link:{letter}");
        let per_day = limits.birth_date_tries_per_day;
        take(&self.clients, shared, &key, per_day / 86_400.0, per_day).await
    }
}

/// Takes one request from `key`'s allowance: in the store, where instances share it (several
/// gateways behind one load balancer allow a client its rate in all, not per instance), else in
/// `local`. A shared store that cannot answer falls back to this instance's own buckets: the
/// limit then holds per instance until it answers again, and requests are never refused because
/// the limiter's store is down.
async fn take(
    local: &Buckets,
    shared: &dyn Coordination,
    key: &str,
    rate: f64,
    burst: f64,
) -> Result<(), Throttled> {
    match shared
        .take_shared_allowance(key, rate, burst, chrono::Utc::now())
        .await
    {
        Ok(None) => local.take(key, rate, burst, Instant::now()),
        Ok(Some(Allowance::Admitted)) => {
            local.admitted(key);
            Ok(())
        }
        Ok(Some(Allowance::Refused { wait_secs })) => Err(Throttled {
            wait: wait_secs,
            first: local.refused(key),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "the shared rate limits cannot be read; limiting per instance");
            local.take(key, rate, burst, Instant::now())
        }
    }
}

impl Buckets {
    fn new(capacity: usize) -> Self {
        Self {
            buckets: Mutex::new(LruCache::with_hasher(capacity.max(1), RandomState::new())),
        }
    }

    /// Takes one request from `key`'s bucket (a new key's starts full), or says how long until
    /// one is free.
    fn take(&self, key: &str, rate: f64, burst: f64, now: Instant) -> Result<(), Throttled> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(key) {
            return bucket.take(rate, burst, now);
        }
        let mut bucket = Bucket {
            tokens: burst,
            last: now,
            refusal_reported: false,
        };
        let taken = bucket.take(rate, burst, now);
        // Past the cap, this drops the least recently used bucket.
        buckets.insert(key.to_owned(), bucket);
        taken
    }

    /// Notes that the shared allowance admitted `key` (a later refusal is reported again).
    fn admitted(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.refusal_reported = false;
        }
    }

    /// Notes that the shared allowance refused `key`; true if this is the first refusal since it
    /// last admitted one.
    fn refused(&self, key: &str) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.get_mut(key) {
            Some(bucket) => !std::mem::replace(&mut bucket.refusal_reported, true),
            None => {
                let bucket = Bucket {
                    tokens: 0.0,
                    last: Instant::now(),
                    refusal_reported: true,
                };
                buckets.insert(key.to_owned(), bucket);
                true
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Bucket {
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Throttled> {
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refusal_reported = false;
            Ok(())
        } else {
            let first = !std::mem::replace(&mut self.refusal_reported, true);
            Err(Throttled {
                wait: ((1.0 - self.tokens) / rate).ceil().max(1.0) as u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_refill_at_the_rate_and_cap_at_the_burst() {
        let l = Buckets::new(MAX_TRACKED_CLIENTS);
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

    /// A store that shares nothing between instances (as SQLite): allowances stay in memory.
    struct Unshared;

    #[async_trait::async_trait]
    impl Coordination for Unshared {
        async fn take_shared_allowance(
            &self,
            _: &str,
            _: f64,
            _: f64,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<Option<Allowance>, crate::store::StoreError> {
            Ok(None)
        }
        async fn leads(
            &self,
            _: crate::store::Singleton,
        ) -> Result<bool, crate::store::StoreError> {
            Ok(true)
        }
    }

    #[tokio::test]
    async fn a_flood_of_sources_that_never_go_idle_stays_within_the_cap() {
        let l = RateLimiter::default();
        let s = &Unshared;
        // Rates slow enough that no bucket refills while the test runs.
        let mut limits = crate::config::Config::defaults().limits;
        limits.requests_per_second_per_client = 0.001;
        limits.burst_per_client = 5.0;
        limits.unauthenticated_requests_per_second_per_source = 0.001;
        limits.unauthenticated_burst_per_source = 5.0;
        let client = "gp-1";
        while l.admit(s, client, &limits).await.is_ok() {}
        // Each source, its own IPv6 /64, spends one request of its burst, so no bucket is ever
        // full (idle).
        let flood = MAX_TRACKED_SOURCES + 1_000;
        let source =
            |i: usize| IpAddr::from([0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 1]);
        for i in 0..flood {
            assert!(l.admit_unauthenticated(s, source(i), &limits).await.is_ok());
        }
        assert_eq!(l.sources.len(), MAX_TRACKED_SOURCES);
        assert_eq!(l.clients.len(), 1);
        assert!(
            l.admit(s, client, &limits).await.is_err(),
            "the flood did not reset the client's bucket"
        );
        let latest = source(flood - 1);
        let burst = limits.unauthenticated_burst_per_source as usize;
        for _ in 1..burst {
            assert!(l.admit_unauthenticated(s, latest, &limits).await.is_ok());
        }
        assert!(
            l.admit_unauthenticated(s, latest, &limits).await.is_err(),
            "a recent source keeps its bucket"
        );
    }

    #[test]
    fn past_the_cap_the_least_recently_used_bucket_is_dropped() {
        let b = Buckets::new(2);
        let t0 = Instant::now();
        for key in ["a", "b", "a", "a"] {
            assert!(b.take(key, 0.001, 3.0, t0).is_ok());
        }
        assert!(
            b.take("a", 0.001, 3.0, t0).is_err(),
            "a has spent its burst"
        );
        assert!(
            b.take("c", 0.001, 3.0, t0).is_ok(),
            "c drops b, used least recently"
        );
        assert_eq!(b.len(), 2);
        assert!(b.take("a", 0.001, 3.0, t0).is_err(), "a was kept");
        for _ in 0..3 {
            assert!(b.take("b", 0.001, 3.0, t0).is_ok(), "b starts again full");
        }
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
}
