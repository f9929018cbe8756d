//! Access tokens from other authorization servers the deployment trusts. Each names a client
//! registered here; the registration, not the token, says which organisation and role it acts
//! for, and caps its scopes.

use std::collections::HashMap;

use jsonwebtoken::Validation;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde::Deserialize;

use super::assertion::{ALGORITHMS, decode_with_any};
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
    exp: u64,
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
        let claims =
            match decode_with_any::<ExternalClaims>(token, &header, &trusted.keys, &validation) {
                Ok(Some(claims)) => claims,
                Ok(None) => return Err(TokenError::Invalid("no key of the issuer fits".into())),
                Err(e) => {
                    return Err(match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                        other => TokenError::Invalid(format!("{other:?}")),
                    });
                }
            };
        let id = claims.client_id.unwrap_or(claims.sub);
        // The registry's rule first: an id that could never be registered is not looked up,
        // and no id from the token is written into the error (it may be shown or logged).
        if !super::registry::valid_client_id(&id) {
            return Err(TokenError::Invalid(
                "the token's client id breaks the registry's rule for client ids".into(),
            ));
        }
        let client = clients.get(&id).ok_or_else(|| {
            TokenError::Invalid("the token's client is not registered here".into())
        })?;
        if client.revoked_at.is_some() {
            return Err(TokenError::Revoked);
        }
        let mut principal = Principal::new(client.role, &client.organisation);
        principal.client_id = client.id.to_string();
        principal.test_tenant = client.test_tenant;
        principal.scopes = claims
            .scope
            .split_whitespace()
            .filter(|s| client.scopes.iter().any(|r| scope::grants(r, s)))
            .map(str::to_string)
            .collect();
        Ok((principal, claims.exp))
    }
}
