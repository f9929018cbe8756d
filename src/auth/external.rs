//! Access tokens from other authorization servers the deployment trusts. Each names a client
//! registered here; the registration, not the token, says which organisation and role it acts
//! for, and caps its scopes.

use std::collections::HashMap;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use super::assertion::ALGORITHMS;
use super::{Principal, TokenError, scope};
use crate::config::ExternalIssuerConfig;
use crate::store::ClientRecord;

#[derive(Debug, thiserror::Error)]
#[error("external issuer {issuer}: {reason}")]
pub struct ExternalIssuerError {
    issuer: String,
    reason: String,
}

struct Issuer {
    audience: String,
    keys: Vec<Jwk>,
}

/// The trusted issuers, by `iss`.
#[derive(Default)]
pub struct ExternalIssuers(HashMap<String, Issuer>);

#[derive(Deserialize)]
struct ExternalClaims {
    sub: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: String,
}

impl ExternalIssuers {
    pub fn load(configs: &[ExternalIssuerConfig]) -> Result<Self, ExternalIssuerError> {
        let mut out = HashMap::new();
        for c in configs {
            let err = |reason: String| ExternalIssuerError {
                issuer: c.issuer.clone(),
                reason,
            };
            let text = std::fs::read_to_string(&c.jwks)
                .map_err(|e| err(format!("cannot read {}: {e}", c.jwks.display())))?;
            let set: JwkSet = serde_json::from_str(&text)
                .map_err(|e| err(format!("{} is not a JWK Set: {e}", c.jwks.display())))?;
            out.insert(
                c.issuer.clone(),
                Issuer {
                    audience: c.audience.clone(),
                    keys: set.keys,
                },
            );
        }
        Ok(Self(out))
    }

    pub fn trusts(&self, issuer: &str) -> bool {
        self.0.contains_key(issuer)
    }

    /// The principal of a token from trusted issuer `issuer`, for the registered `clients`.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        clients: &HashMap<String, ClientRecord>,
    ) -> Result<(Principal, u64), TokenError> {
        let trusted = self
            .0
            .get(issuer)
            .ok_or_else(|| TokenError::Invalid("untrusted issuer".into()))?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} not accepted",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[&trusted.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let mut last = TokenError::Invalid("no key of the issuer fits".into());
        for jwk in trusted
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
                Ok(data) => {
                    let exp = data.claims["exp"].as_u64().unwrap_or_default();
                    let claims: ExternalClaims = serde_json::from_value(data.claims)
                        .map_err(|e| TokenError::Invalid(e.to_string()))?;
                    let id = claims.client_id.unwrap_or(claims.sub);
                    let client = clients.get(&id).ok_or_else(|| {
                        TokenError::Invalid(format!("'{id}' is not a client registered here"))
                    })?;
                    if client.revoked_at.is_some() {
                        return Err(TokenError::Revoked);
                    }
                    let mut principal = Principal::new(client.role, &client.organisation);
                    principal.client_id = client.id.clone();
                    principal.test_tenant = client.test_tenant;
                    principal.scopes = claims
                        .scope
                        .split_whitespace()
                        .filter(|s| client.scopes.iter().any(|r| scope::grants(r, s)))
                        .map(str::to_string)
                        .collect();
                    return Ok((principal, exp));
                }
                Err(e) => {
                    last = match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                        other => TokenError::Invalid(format!("{other:?}")),
                    }
                }
            }
        }
        Err(last)
    }
}
