//! SMART Backend Services client authentication: a registered client proves who it is with a JWT
//! it signs with its private key (`private_key_jwt`, RFC 7523), checked against the public keys
//! it registered. Pure: keys, the token URL and the time come in; replay protection (each `jti`
//! once) is the caller's, through the store.

use std::collections::HashSet;

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Deserialize;

use super::scope;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The furthest ahead an assertion may expire (SMART Backend Services: five minutes).
pub const MAX_LIFETIME_SECS: u64 = 300;
/// Clock difference tolerated between a client and the gateway.
const LEEWAY_SECS: u64 = 30;
/// The signing algorithms accepted (SMART Backend Services requires RS384 and ES384).
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS384, Algorithm::ES384];

/// An OAuth 2.0 token-endpoint error (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
        }
    }
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: u64,
    jti: String,
}

/// A client assertion whose signature and claims checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub client_id: String,
    pub jti: String,
    pub exp: u64,
}

/// Who an assertion claims to come from (`iss`, which must equal `sub`), read before its
/// signature is checked so the client's keys can be found. Refuses algorithms other than RS384
/// and ES384 (so `none` and HMAC never reach a key).
pub fn claimed_client(assertion: &str) -> Result<(Header, String), OAuthError> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| {
        OAuthError::InvalidClient(format!("the client assertion is not a JWT: {e}"))
    })?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(OAuthError::InvalidClient(format!(
            "client assertions must be signed with RS384 or ES384, not {:?}",
            header.alg
        )));
    }
    let payload = assertion
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<AssertionClaims>(&bytes).ok())
        .ok_or_else(|| {
            OAuthError::InvalidClient(
                "the client assertion needs iss, sub, aud, exp and jti claims".into(),
            )
        })?;
    if payload.iss != payload.sub {
        return Err(OAuthError::InvalidClient(
            "the client assertion's iss and sub must both be the client id".into(),
        ));
    }
    Ok((header, payload.iss))
}

fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS384) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        _ => false,
    }
}

/// Checks the assertion's signature against the client's keys (the one its `kid` names, or each
/// that fits the algorithm) and its claims: `iss` = `sub` = the client, `aud` the token URL,
/// `exp` in the future but at most five minutes ahead, a `jti`.
pub fn verify(
    assertion: &str,
    header: &Header,
    client_id: &str,
    keys: &JwkSet,
    token_url: &str,
    now: u64,
) -> Result<VerifiedAssertion, OAuthError> {
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[token_url]);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_string());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = LEEWAY_SECS;
    let last = match decode_with_any::<AssertionClaims>(assertion, header, &keys.keys, &validation)
    {
        Ok(None) => {
            return Err(OAuthError::InvalidClient(format!(
                "no registered key of the client fits this assertion (alg {:?}, kid {:?})",
                header.alg, header.kid
            )));
        }
        Ok(Some(c)) => {
            if c.exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
                return Err(OAuthError::InvalidClient(format!(
                    "the client assertion expires {} s from now; at most {MAX_LIFETIME_SECS} s is allowed",
                    c.exp.saturating_sub(now)
                )));
            }
            if c.jti.is_empty() || c.jti.len() > 256 {
                return Err(OAuthError::InvalidClient(
                    "the client assertion needs a jti of 1 to 256 characters".into(),
                ));
            }
            return Ok(VerifiedAssertion {
                client_id: client_id.to_string(),
                jti: c.jti,
                exp: c.exp,
            });
        }
        Err(e) => e,
    };
    let why = match last.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => "it has expired".to_string(),
        jsonwebtoken::errors::ErrorKind::InvalidAudience => {
            format!("its aud must be the token endpoint, {token_url}")
        }
        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
            "its signature does not match the client's registered keys".to_string()
        }
        other => format!("{other:?}"),
    };
    Err(OAuthError::InvalidClient(format!(
        "the client assertion is not valid: {why}"
    )))
}

/// Verifies `token` with each of `keys` that fits its algorithm (and its `kid`, when it names
/// one) until one succeeds. `Ok(None)` when no key fits (or none can be used); otherwise the
/// claims, or the last key's error.
pub fn decode_with_any<T: serde::de::DeserializeOwned>(
    token: &str,
    header: &Header,
    keys: &[Jwk],
    validation: &Validation,
) -> Result<Option<T>, jsonwebtoken::errors::Error> {
    let mut last = None;
    for jwk in keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .filter(|k| key_fits(k, header.alg))
    {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        match jsonwebtoken::decode::<T>(token, &key, validation) {
            Ok(data) => return Ok(Some(data.claims)),
            Err(e) => last = Some(e),
        }
    }
    last.map_or(Ok(None), Err)
}

/// The scopes to grant: those asked for (space-separated; all registered ones when none are
/// asked for), each of which the client's registration must cover.
pub fn grant_scopes(
    requested: Option<&str>,
    registered: &[String],
) -> Result<Vec<String>, OAuthError> {
    let asked: Vec<&str> = requested
        .map(|r| r.split_whitespace().collect())
        .unwrap_or_default();
    if asked.is_empty() {
        return Ok(registered.to_vec());
    }
    let refused: Vec<&str> = asked
        .iter()
        .copied()
        .filter(|a| !registered.iter().any(|r| scope::grants(r, a)))
        .collect();
    if !refused.is_empty() {
        return Err(OAuthError::InvalidScope(format!(
            "the client is not registered for: {}",
            refused.join(" ")
        )));
    }
    let mut seen = HashSet::new();
    Ok(asked
        .into_iter()
        .filter(|a| seen.insert(*a))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_narrowed_never_widened() {
        let registered = vec![
            "system/*.rs".to_string(),
            "system/Observation.c".to_string(),
        ];
        assert_eq!(grant_scopes(None, &registered).unwrap(), registered);
        assert_eq!(
            grant_scopes(
                Some("system/Task.s system/Task.s system/Observation.c"),
                &registered
            )
            .unwrap(),
            ["system/Task.s", "system/Observation.c"]
        );
        assert_eq!(
            grant_scopes(Some("system/Task.u system/Task.r"), &registered),
            Err(OAuthError::InvalidScope(
                "the client is not registered for: system/Task.u".into()
            ))
        );
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key_is_looked_up() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let claims = b64(r#"{"iss":"c","sub":"c","aud":"u","exp":9999999999,"jti":"j"}"#);
        for alg in ["none", "HS256", "HS384", "RS256", "ES256", "PS384"] {
            let token = format!(
                "{}.{claims}.",
                b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#))
            );
            assert!(
                matches!(claimed_client(&token), Err(OAuthError::InvalidClient(_))),
                "{alg}"
            );
        }
        let token = format!("{}.{claims}.sig", b64(r#"{"alg":"ES384"}"#));
        assert_eq!(claimed_client(&token).unwrap().1, "c");
        let mismatched = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"ES384"}"#),
            b64(r#"{"iss":"a","sub":"b","aud":"u","exp":1,"jti":"j"}"#)
        );
        assert!(claimed_client(&mismatched).is_err());
    }
}
