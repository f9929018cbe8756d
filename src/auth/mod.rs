//! Who is calling: access tokens the gateway signs (ES384 JWTs) and the [`Principal`] they carry.
//!
//! A principal belongs to one organisation and acts in one role; what it may see is decided by
//! its role and organisation (tenancy) and, for a person's data, by consent. Tokens are minted by
//! [`TokenIssuer`] (the `whg token` command today; the OAuth2 token endpoint builds on it).

pub mod assertion;
pub mod external;
pub mod jwks_cache;
pub mod jwks_fetch;
mod key;
pub mod registry;

pub use crate::caller::{Principal, Role, scope};
pub use key::{KeyError, SigningKey};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;

/// Claims of a gateway access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The client the token was issued to.
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    /// Space-separated scopes.
    pub scope: String,
    pub role: Role,
    /// The client's organisation, as `system|value`.
    pub org: String,
    /// Present (true) only for an integrator's client in the test tenant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the client this token was issued to has been revoked")]
    Revoked,
}

/// Signs access tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    audience: String,
}

impl TokenIssuer {
    pub fn new(key: SigningKey, config: &AuthConfig) -> Self {
        Self {
            key,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }
    }

    /// A token for `principal`, valid for `ttl`.
    pub fn issue(&self, principal: &Principal, ttl: Duration) -> String {
        let now = unix_now();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: principal.client_id.clone(),
            exp: now + ttl.as_secs(),
            iat: now,
            jti: uuid::Uuid::now_v7().to_string(),
            scope: principal.scopes.join(" "),
            role: principal.role,
            org: principal.organisation.clone(),
            test: principal.test_tenant,
        };
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(self.key.key_id().to_string());
        jsonwebtoken::encode(&header, &claims, self.key.encoding())
            .expect("signing with a loaded ES384 key cannot fail")
    }
}

/// Checks access tokens: signature (ES384 only), issuer, audience and expiry.
///
/// A P-384 signature check costs about as much CPU as validating a referral, and a client sends
/// many requests with one token, so tokens that verified are remembered (by their exact text)
/// until they expire: a hit skips only the signature check, never the expiry.
#[derive(Clone)]
pub struct TokenVerifier {
    key: SigningKey,
    validation: Validation,
    verified: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (Principal, u64)>>>,
    /// Registered clients that have been revoked: their tokens stop working at once, however
    /// long they had left.
    revoked: std::sync::Arc<std::sync::RwLock<std::collections::HashSet<String>>>,
    /// Other issuers trusted for registered clients, and the registry they are checked against.
    external: std::sync::Arc<external::ExternalIssuers>,
    clients: std::sync::Arc<
        std::sync::RwLock<std::collections::HashMap<String, crate::store::ClientRecord>>,
    >,
}

/// Most tokens remembered at once; when full, expired ones go, and if none has, all do.
const VERIFIED_CACHE_LIMIT: usize = 10_000;

impl TokenVerifier {
    pub fn new(key: SigningKey, config: &AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::ES384);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Self {
            key,
            validation,
            verified: Default::default(),
            revoked: Default::default(),
            external: Default::default(),
            clients: Default::default(),
        }
    }

    /// Also accepts tokens from these issuers.
    pub fn with_external(mut self, issuers: external::ExternalIssuers) -> Self {
        self.external = std::sync::Arc::new(issuers);
        self
    }

    /// Takes in the current client registry: revoked clients' tokens stop working, and tokens
    /// from external issuers are checked against the registrations.
    pub fn set_clients(&self, clients: Vec<crate::store::ClientRecord>) {
        let revoked = clients
            .iter()
            .filter(|c| c.revoked_at.is_some())
            .map(|c| c.id.to_string())
            .collect();
        *self.revoked.write().unwrap_or_else(|e| e.into_inner()) = revoked;
        *self.clients.write().unwrap_or_else(|e| e.into_inner()) =
            clients.into_iter().map(|c| (c.id.to_string(), c)).collect();
    }

    fn check_revoked(&self, principal: Principal) -> Result<Principal, TokenError> {
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        if revoked.contains(&principal.client_id) {
            Err(TokenError::Revoked)
        } else {
            Ok(principal)
        }
    }

    /// The principal of a bearer token.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let now = unix_now();
        let leeway = self.validation.leeway;
        if let Some((principal, exp)) = self.cache().get(token) {
            return if now > exp + leeway {
                Err(TokenError::Expired)
            } else {
                self.check_revoked(principal.clone())
            };
        }
        let (principal, exp) = match unverified_issuer(token) {
            Some(iss) if self.external.trusts(&iss) => {
                let clients = self.clients.read().unwrap_or_else(|e| e.into_inner());
                self.external.verify(token, &iss, &clients)?
            }
            _ => {
                let data =
                    jsonwebtoken::decode::<Claims>(token, self.key.decoding(), &self.validation)
                        .map_err(|e| match e.kind() {
                            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                                TokenError::Expired
                            }
                            other => TokenError::Invalid(format!("{other:?}")),
                        })?;
                let c = data.claims;
                let principal = Principal {
                    client_id: c.sub,
                    role: c.role,
                    organisation: c.org,
                    scopes: c.scope.split_whitespace().map(str::to_string).collect(),
                    test_tenant: c.test,
                };
                (principal, c.exp)
            }
        };
        let mut cache = self.cache();
        if cache.len() >= VERIFIED_CACHE_LIMIT {
            cache.retain(|_, (_, exp)| now <= *exp + leeway);
            if cache.len() >= VERIFIED_CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), (principal.clone(), exp));
        drop(cache);
        self.check_revoked(principal)
    }

    /// The gateway's public key as a JWK Set, for others to verify its access tokens.
    pub fn jwks(&self) -> serde_json::Value {
        self.key.public_jwks()
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Principal, u64)>> {
        // A poisoned lock only means another request panicked mid-insert; the map is still sound.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `iss` a token claims, read before any signature check, to pick the keys to check it with.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["iss"].as_str().map(str::to_string)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn pair() -> (TokenIssuer, TokenVerifier) {
        let key = SigningKey::generate();
        let config = Config::defaults().auth;
        (
            TokenIssuer::new(key.clone(), &config),
            TokenVerifier::new(key, &config),
        )
    }

    #[test]
    fn round_trip() {
        let (issuer, verifier) = pair();
        let p = Principal::practice("C88038");
        let token = issuer.issue(&p, Duration::from_secs(60));
        assert_eq!(verifier.verify(&token).unwrap(), p);
    }

    #[test]
    fn refuses_other_keys_tampering_and_expiry() {
        let (issuer, verifier) = pair();
        let (other_issuer, _) = pair();
        let p = Principal::practice("C88038");
        let foreign = other_issuer.issue(&p, Duration::from_secs(60));
        assert!(matches!(
            verifier.verify(&foreign),
            Err(TokenError::Invalid(_))
        ));
        let token = issuer.issue(&p, Duration::from_secs(60));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        // Swap in claims for another organisation, keeping the signature.
        let other = issuer.issue(&Principal::practice("B82005"), Duration::from_secs(60));
        parts[1] = other.split('.').nth(1).unwrap().to_string();
        assert!(verifier.verify(&parts.join(".")).is_err());
        let expired = issuer.issue(&p, Duration::ZERO);
        let mut v = verifier.clone();
        v.validation.leeway = 0;
        let short = issuer.issue(&p, Duration::from_secs(1));
        assert!(v.verify(&short).is_ok(), "verified, and now remembered");
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
        assert_eq!(
            v.verify(&short),
            Err(TokenError::Expired),
            "a remembered token still expires"
        );
        assert!(verifier.verify("not.a.token").is_err());
    }
}
