//! Fetching a registered client's JWK Set from its URL, under the deployment's outbound policy.

use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use crate::config::OutboundConfig;
use crate::outbound;

/// A client's JWK Set from its registered URL, under the outbound policy: the URL parsed and
/// its addresses checked, no redirect followed, the answer read up to `outbound.max_jwks_bytes`
/// within `outbound.timeout_ms`. The error is the log's reason, in the gateway's words: nothing
/// the remote end sent reaches the log or the caller.
pub async fn fetch_jwks(
    http: &reqwest::Client,
    outbound: &OutboundConfig,
    client: &str,
    url: &str,
) -> Result<JwkSet, &'static str> {
    let fetched = fetch_jwks_body(http, outbound, url).await.and_then(|body| {
        let json: Value = serde_json::from_slice(&body)
            .map_err(|_| "the client's JWKS URL did not answer JSON")?;
        serde_json::from_value(json).map_err(|_| "the client's keys are not a JWK Set")
    });
    tracing::info!(
        client,
        outcome = fetched
            .as_ref()
            .map_or_else(|reason| *reason, |_| "fetched"),
        "the client's JWKS URL was fetched"
    );
    fetched
}

async fn fetch_jwks_body(
    http: &reqwest::Client,
    outbound: &OutboundConfig,
    url: &str,
) -> Result<Vec<u8>, &'static str> {
    let url = outbound::checked_url(url, &outbound.policy())
        .map_err(|_| "the client's JWKS URL is refused by the outbound policy")?;
    let response = http.get(url).send().await.map_err(|e| {
        if outbound::refused_by_policy(&e) {
            "the client's JWKS URL resolves only to addresses the outbound policy refuses"
        } else if e.is_timeout() {
            "the client's JWKS URL did not answer in time"
        } else {
            "the client's JWKS URL cannot be reached"
        }
    })?;
    let status = response.status();
    if status.is_redirection() {
        return Err("the client's JWKS URL answered with a redirect, which is not followed");
    }
    if !status.is_success() {
        return Err("the client's JWKS URL answered with an HTTP error status");
    }
    outbound::read_bounded(response, outbound.max_jwks_bytes)
        .await
        .map_err(|e| match e {
            outbound::BodyError::TooLarge(_) => {
                "the client's JWK Set is larger than outbound.max_jwks_bytes"
            }
            outbound::BodyError::Read(e) if e.is_timeout() => {
                "the client's JWK Set did not arrive in time"
            }
            outbound::BodyError::Read(_) => "the client's JWK Set could not be read",
        })
}
