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
/// Clock difference tolerated between a client and the gateway, on `exp`, `nbf` and `iat`
/// (docs/security.md states it).
pub const LEEWAY_SECS: u64 = 30;
/// The signing algorithms accepted: SMART Backend Services requires RS384 and ES384; NHS
/// England's signed-JWT client credentials (the pattern its APIs' application-restricted access
/// uses) signs with RS512.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS384, Algorithm::ES384, Algorithm::RS512];

/// What the token endpoint answers a caller whose client authentication failed, whatever the
/// reason: an unauthenticated caller learns nothing about which registered clients exist, what
/// their keys are or what a fetched key set said. The reason goes to the log only.
pub const CLIENT_AUTHENTICATION_FAILED: &str = "the client could not be authenticated: the assertion must be signed (RS384, RS512 or ES384) with a key registered for the client, with iss = sub = the client id, aud = the token endpoint, exp at most five minutes ahead, no nbf or iat in the future, and a new jti";

/// An OAuth 2.0 token-endpoint error (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The request is malformed; the description is the gateway's own words, never the caller's
    /// text.
    #[error("{0}")]
    InvalidRequest(String),
    /// Client authentication failed (RFC 7523 §3.2). The reason, in the gateway's own words, is
    /// for the log; the caller is told only [`CLIENT_AUTHENTICATION_FAILED`].
    #[error("{CLIENT_AUTHENTICATION_FAILED}")]
    InvalidClient(&'static str),
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

    /// Why, for the log: the gateway's own words only (a scope request is the caller's text).
    pub fn log_reason(&self) -> &str {
        match self {
            OAuthError::InvalidClient(reason) => reason,
            OAuthError::InvalidScope(_) => "scopes beyond the client's registration",
            OAuthError::InvalidRequest(why)
            | OAuthError::InvalidGrant(why)
            | OAuthError::UnsupportedGrantType(why) => why,
        }
    }
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: u64,
    jti: String,
    #[serde(default)]
    iat: Option<u64>,
}

/// A client assertion whose signature and claims checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub client_id: String,
    pub jti: String,
    pub exp: u64,
}

/// Who an assertion claims to come from (`iss`, which must equal `sub`), read before its
/// signature is checked so the client's keys can be found. Refuses algorithms other than
/// [`ALGORITHMS`] (so `none` and HMAC never reach a key), and ids that break the registry's rule for
/// client ids (so an id that can never be registered is never looked up, kept or logged).
pub fn claimed_client(assertion: &str) -> Result<(Header, String), OAuthError> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| OAuthError::InvalidClient("the client assertion is not a JWT"))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(OAuthError::InvalidClient(
            "the client assertion is not signed with RS384, RS512 or ES384",
        ));
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
        .ok_or(OAuthError::InvalidClient(
            "the client assertion lacks iss, sub, exp or jti",
        ))?;
    if !super::registry::valid_client_id(&payload.iss) {
        return Err(OAuthError::InvalidClient(
            "the client assertion's iss breaks the registry's rule for client ids",
        ));
    }
    if payload.iss != payload.sub {
        return Err(OAuthError::InvalidClient(
            "the client assertion's iss and sub differ",
        ));
    }
    Ok((header, payload.iss))
}

/// Whether `jwk` can check a signature made with `alg`: its type and curve fit, and it names no
/// other algorithm (a JWK's `alg` says what its holder signs with, RFC 7517 §4.4).
pub fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if jwk
        .common
        .key_algorithm
        .is_some_and(|declared| declared.to_string() != format!("{alg:?}"))
    {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS384 | Algorithm::RS512) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        _ => false,
    }
}

/// Checks the assertion's signature against the client's keys (the one its `kid` names, or each
/// that fits the algorithm) and its claims: `iss` = `sub` = the client, `aud` the token URL,
/// `exp` in the future but at most five minutes ahead, `nbf` and `iat` (when present) not in the
/// future, a `jti`. Each allows [`LEEWAY_SECS`] of clock difference.
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
    // RFC 7523 §3: a JWT used before its nbf must be rejected.
    validation.validate_nbf = true;
    let claims =
        match decode_with_any::<AssertionClaims>(assertion, header, &keys.keys, &validation) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(OAuthError::InvalidClient(
                    "no registered key of the client fits the assertion's alg and kid",
                ));
            }
            Err(e) => return Err(OAuthError::InvalidClient(refusal(e.kind()))),
        };
    checked_claims(claims, client_id, now)
}

/// The checks on a verified assertion's claims that the JWT library does not make.
fn checked_claims(
    c: AssertionClaims,
    client_id: &str,
    now: u64,
) -> Result<VerifiedAssertion, OAuthError> {
    if c.exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
        return Err(OAuthError::InvalidClient(
            "the client assertion expires more than five minutes ahead",
        ));
    }
    // An assertion "issued" in the future was not made now (a clock set wrong, or one made in
    // advance to be used later): refused, as RFC 7523 allows and SMART Backend Services expects.
    if c.iat.is_some_and(|iat| iat > now + LEEWAY_SECS) {
        return Err(OAuthError::InvalidClient(
            "the client assertion's iat is in the future",
        ));
    }
    if c.jti.is_empty() || c.jti.len() > 256 {
        return Err(OAuthError::InvalidClient(
            "the client assertion's jti is empty or longer than 256 characters",
        ));
    }
    Ok(VerifiedAssertion {
        client_id: client_id.to_string(),
        jti: c.jti,
        exp: c.exp,
    })
}

/// The log's words for why the JWT library refused an assertion.
fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "the client assertion has expired",
        ErrorKind::ImmatureSignature => "the client assertion's nbf is in the future",
        ErrorKind::InvalidAudience => "the client assertion's aud is not the token endpoint",
        ErrorKind::InvalidSignature => "the client assertion's signature does not match",
        ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => {
            "the client assertion's iss or sub is not the client"
        }
        ErrorKind::MissingRequiredClaim(_) => "the client assertion lacks a required claim",
        _ => "the client assertion cannot be verified",
    }
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
        for id in ["a\nforged", "", "x y", &"x".repeat(65)] {
            let claims = b64(
                &serde_json::json!({"iss": id, "sub": id, "aud": "u", "exp": 1, "jti": "j"})
                    .to_string(),
            );
            let token = format!("{}.{claims}.sig", b64(r#"{"alg":"ES384"}"#));
            assert!(
                matches!(claimed_client(&token), Err(OAuthError::InvalidClient(_))),
                "{id:?}"
            );
        }
        let mismatched = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"ES384"}"#),
            b64(r#"{"iss":"a","sub":"b","aud":"u","exp":1,"jti":"j"}"#)
        );
        assert!(claimed_client(&mismatched).is_err());
    }

    #[test]
    fn claims_from_the_future_are_refused() {
        let claims = |iat: Option<u64>| AssertionClaims {
            iss: "c".into(),
            sub: "c".into(),
            exp: 1_000_200,
            jti: "j".into(),
            iat,
        };
        let now = 1_000_000;
        assert!(checked_claims(claims(None), "c", now).is_ok());
        assert!(checked_claims(claims(Some(now - 10)), "c", now).is_ok());
        assert!(
            checked_claims(claims(Some(now + LEEWAY_SECS)), "c", now).is_ok(),
            "within the clock-skew allowance"
        );
        assert!(matches!(
            checked_claims(claims(Some(now + LEEWAY_SECS + 1)), "c", now),
            Err(OAuthError::InvalidClient(_))
        ));
    }

    #[test]
    fn refusals_say_nothing_to_the_caller() {
        let e = OAuthError::InvalidClient("the client assertion's signature does not match");
        assert_eq!(e.to_string(), CLIENT_AUTHENTICATION_FAILED);
        assert_eq!(e.code(), "invalid_client");
    }
}
