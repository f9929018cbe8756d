//! Who is calling: access tokens the gateway signs (ES384 JWTs) and the [`Principal`] they carry.
//!
//! A principal belongs to one organisation and acts in one role; what it may see is decided by
//! its role and organisation (tenancy) and, for a person's data, by consent. Tokens are minted by
//! [`TokenIssuer`] (the `whg token` command today; the OAuth2 token endpoint builds on it).

mod key;
mod principal;

pub use key::{KeyError, SigningKey};
pub use principal::{Principal, Role, scope};

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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
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
        };
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(self.key.key_id().to_string());
        jsonwebtoken::encode(&header, &claims, self.key.encoding())
            .expect("signing with a loaded ES384 key cannot fail")
    }
}

/// Checks access tokens: signature (ES384 only), issuer, audience and expiry.
#[derive(Clone)]
pub struct TokenVerifier {
    key: SigningKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(key: SigningKey, config: &AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::ES384);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Self { key, validation }
    }

    /// The principal of a bearer token.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, self.key.decoding(), &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                other => TokenError::Invalid(format!("{other:?}")),
            })?;
        let c = data.claims;
        Ok(Principal {
            client_id: c.sub,
            role: c.role,
            organisation: c.org,
            scopes: c.scope.split_whitespace().map(str::to_string).collect(),
        })
    }
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
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
        assert!(verifier.verify("not.a.token").is_err());
    }
}
