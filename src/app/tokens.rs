//! A registered system proving who it is (SMART Backend Services): its client assertion checked
//! against the keys it registered, and each assertion used once. What the token then grants is
//! the authorization server's (`crate::api::oauth`) to answer.

use std::sync::Arc;

use jsonwebtoken::Header;
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use crate::auth::assertion::{self, OAuthError};
use crate::auth::jwks_cache::JwksCache;
use crate::auth::jwks_fetch::fetch_jwks;
use crate::config::OutboundConfig;
use crate::store::{ClientId, ClientRecord, Store};

/// Where a client's keys come from when it registered a URL rather than the keys themselves.
pub struct KeySources<'a> {
    pub jwks_cache: &'a JwksCache,
    pub http: &'a reqwest::Client,
    pub outbound: &'a OutboundConfig,
}

#[derive(Debug)]
pub enum AuthenticationError {
    /// The registry cannot be read or written now: nothing is wrong with the request.
    Unavailable,
    /// The client or its assertion is refused.
    Refused(OAuthError),
}

impl From<OAuthError> for AuthenticationError {
    fn from(e: OAuthError) -> Self {
        AuthenticationError::Refused(e)
    }
}

/// The registered, unrevoked client `client_id` whose `client_assertion` (with its parsed
/// `header`) verifies against its keys for `audience`, and was not used before: its `jti` is
/// recorded as used until the assertion expires. The assertion's times are checked against the
/// clock once its keys are in hand (a JWKS fetch may take a while).
pub async fn authenticate(
    store: &dyn Store,
    sources: &KeySources<'_>,
    client_assertion: &str,
    header: &Header,
    client_id: &ClientId,
    audience: &str,
) -> Result<ClientRecord, AuthenticationError> {
    let client = store
        .client(client_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the client registry cannot be read");
            AuthenticationError::Unavailable
        })?
        .filter(|c| c.revoked_at.is_none())
        .ok_or(OAuthError::InvalidClient(
            "the client is not registered, or revoked",
        ))?;
    let keys = client_keys(sources, &client, header.kid.as_deref()).await?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let verified = assertion::verify(
        client_assertion,
        header,
        client.id.as_str(),
        &keys,
        audience,
        now,
    )?;
    let first_use = store
        .consume_assertion(&client.id, &verified.jti, verified.exp as i64)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "an assertion's jti cannot be recorded");
            AuthenticationError::Unavailable
        })?;
    // A replay is a failed client authentication like any other (SMART App Launch 2.0,
    // client-confidential-asymmetric: "the server SHALL respond with an invalid_client error"),
    // and is told apart only in the log.
    if !first_use {
        return Err(OAuthError::InvalidClient(
            "the client assertion's jti was used before (a replay)",
        )
        .into());
    }
    Ok(client)
}

/// The client's registered keys: those in the registry, or, for a JWKS URL, the set fetched
/// from it, through the cache (see [`crate::auth::jwks_cache`]: an anonymous request naming
/// the client does not make the gateway fetch). `kid` is the assertion's.
async fn client_keys(
    sources: &KeySources<'_>,
    client: &ClientRecord,
    kid: Option<&str>,
) -> Result<Arc<JwkSet>, OAuthError> {
    match (&client.jwks, &client.jwks_url) {
        (Some(set), _) => key_set(set.clone()).map(Arc::new),
        (None, Some(url)) => sources
            .jwks_cache
            .keys(client.id.as_str(), url, kid, || {
                fetch_jwks(sources.http, sources.outbound, client.id.as_str(), url)
            })
            .await
            .map_err(OAuthError::InvalidClient),
        (None, None) => key_set(Value::Null).map(Arc::new),
    }
}

fn key_set(set: Value) -> Result<JwkSet, OAuthError> {
    serde_json::from_value(set)
        .map_err(|_| OAuthError::InvalidClient("the client's keys are not a JWK Set"))
}
