//! OpenID Connect at the provider the deployment configured (`[sign_in]`): its discovery
//! document, the authorization code flow with PKCE (S256), `state` and `nonce`, the code swapped
//! for tokens at its token endpoint, and the ID token checked — signature against the
//! provider's published keys, issuer, audience, lifetime, nonce — before anyone is signed in
//! (OpenID Connect Core 1.0 §3.1.3.7).
//!
//! The provider is the operator's choice, so the outbound address policy for URLs supplied
//! from outside does not apply; but its endpoints must be on its own origin's scheme (https,
//! or http on this host for `whg dev-issuer`), no redirect is followed, and every answer is
//! read bounded.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::session::{Pending, random_token};
use crate::config::SignInConfig;
use crate::outbound;

/// The largest answer read from the provider (a discovery document or JWK Set is a few KiB).
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// How long the discovery document and keys are used before they are read again.
const REFRESH: Duration = Duration::from_secs(300);
/// Clock difference allowed between the provider and the gateway.
const LEEWAY_SECS: u64 = 60;

/// The parts of the provider's discovery document the gateway uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// Why sign-in could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// The provider could not be reached or answered nothing usable: try again later.
    #[error("the sign-in service is not available: {0}")]
    Unavailable(&'static str),
    /// The answer was not a sign-in this gateway can accept: start again.
    #[error("the sign-in could not be completed: {0}")]
    Rejected(&'static str),
}

/// The ID token in the token endpoint's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenField {
    pub id_token: String,
}

impl oauth2::ExtraTokenFields for IdTokenField {}

/// An OAuth2 client whose token answer carries an ID token; `A` and `T` say whether its
/// authorization and token endpoints are set.
type OidcClient<A = oauth2::EndpointNotSet, T = oauth2::EndpointNotSet> = oauth2::Client<
    BasicErrorResponse,
    StandardTokenResponse<IdTokenField, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    A,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    T,
>;

/// The configured provider, its discovery document and keys cached for [`REFRESH`].
pub struct Provider {
    config: SignInConfig,
    http: reqwest::Client,
    timeout: Duration,
    known: Mutex<Option<(Discovery, JwkSet, Instant)>>,
    /// When the provider last could not be read: for [`RETRY_AFTER_FAILURE`] sign-ins are
    /// refused at once rather than each waiting on the same dead provider.
    failed: std::sync::Mutex<Option<Instant>>,
}

/// How long a provider that could not be read is not asked again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

impl Provider {
    pub fn new(config: SignInConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: outbound::client(timeout)?,
            config,
            timeout,
            known: Mutex::new(None),
            failed: std::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &SignInConfig {
        &self.config
    }

    async fn get_json(&self, url: &str) -> Result<Value, &'static str> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|_| "it cannot be reached")?;
        if !response.status().is_success() {
            return Err("it answered with an HTTP error");
        }
        let body = outbound::read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|_| "its answer could not be read")?;
        serde_json::from_slice(&body).map_err(|_| "its answer is not JSON")
    }

    /// The discovery document and keys, read again when stale or when `refresh` is asked for
    /// (an ID token signed with a key the cached set lacks: the provider rotated its keys).
    async fn known(&self, refresh: bool) -> Result<(Discovery, JwkSet), SignInError> {
        let recently_failed = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE);
        if recently_failed && !refresh {
            return Err(SignInError::Unavailable(
                "it could not be reached a moment ago",
            ));
        }
        let read = self.read_known(refresh).await;
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = read.is_err().then(Instant::now);
        read
    }

    async fn read_known(&self, refresh: bool) -> Result<(Discovery, JwkSet), SignInError> {
        let mut known = self.known.lock().await;
        if let Some((d, k, at)) = known.as_ref()
            && !refresh
            && at.elapsed() < REFRESH
        {
            return Ok((d.clone(), k.clone()));
        }
        let issuer = self.config.issuer.trim_end_matches('/');
        let document = self
            .get_json(&format!("{issuer}/.well-known/openid-configuration"))
            .await
            .map_err(SignInError::Unavailable)?;
        let discovery: Discovery = serde_json::from_value(document)
            .map_err(|_| SignInError::Unavailable("its discovery document lacks an endpoint"))?;
        // OpenID Connect Discovery 1.0 §4.3: the document's issuer is exactly the one asked.
        if discovery.issuer != self.config.issuer {
            return Err(SignInError::Unavailable(
                "its discovery document names another issuer",
            ));
        }
        for endpoint in [
            Some(&discovery.authorization_endpoint),
            Some(&discovery.token_endpoint),
            Some(&discovery.jwks_uri),
            // The signed-out page links to it: no other scheme (javascript:, data:) either.
            discovery.end_session_endpoint.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !same_scheme(endpoint, issuer) {
                return Err(SignInError::Unavailable(
                    "its discovery document names an endpoint on another scheme",
                ));
            }
        }
        let keys = self
            .get_json(&discovery.jwks_uri)
            .await
            .map_err(SignInError::Unavailable)?;
        let keys: JwkSet = serde_json::from_value(keys)
            .map_err(|_| SignInError::Unavailable("its keys are not a JWK Set"))?;
        *known = Some((discovery.clone(), keys.clone(), Instant::now()));
        Ok((discovery, keys))
    }

    fn client(
        &self,
        discovery: &Discovery,
        redirect_uri: &str,
    ) -> Result<OidcClient<oauth2::EndpointSet, oauth2::EndpointSet>, SignInError> {
        let bad = |_| SignInError::Unavailable("its discovery document names an unusable URL");
        let mut client = OidcClient::new(ClientId::new(self.config.client_id.clone()))
            .set_auth_uri(AuthUrl::new(discovery.authorization_endpoint.clone()).map_err(bad)?)
            .set_token_uri(TokenUrl::new(discovery.token_endpoint.clone()).map_err(bad)?)
            .set_redirect_uri(RedirectUrl::new(redirect_uri.to_string()).map_err(|_| {
                SignInError::Unavailable("the gateway's own callback URL is not a URL")
            })?);
        if let Some(file) = &self.config.client_secret_file {
            let secret = crate::secret_file::read(file).map_err(|_| {
                SignInError::Unavailable("the gateway cannot read its client secret")
            })?;
            client = client.set_client_secret(ClientSecret::new(secret.trim().to_string()));
        }
        Ok(client)
    }

    /// Starts a sign-in: where to send the browser, and what its answer must match.
    pub async fn begin(
        &self,
        redirect_uri: &str,
        now: u64,
    ) -> Result<(String, Pending), SignInError> {
        let (discovery, _) = self.known(false).await?;
        let client = self.client(&discovery, redirect_uri)?;
        let verifier = PkceCodeVerifier::new(random_token());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let nonce = random_token();
        let (url, state) = client
            .authorize_url(|| CsrfToken::new(random_token()))
            .add_scope(Scope::new("openid".into()))
            .add_extra_param("nonce", nonce.clone())
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url.to_string(),
            Pending {
                state: state.secret().clone(),
                nonce,
                verifier: verifier.secret().clone(),
                started: now,
            },
        ))
    }

    /// Finishes a sign-in: the code swapped for tokens (with the PKCE verifier), and the ID
    /// token's claims once every check has passed.
    pub async fn finish(
        &self,
        pending: &Pending,
        code: &str,
        redirect_uri: &str,
        now: u64,
    ) -> Result<Map<String, Value>, SignInError> {
        let (discovery, keys) = self.known(false).await?;
        let client = self.client(&discovery, redirect_uri)?;
        let call = outbound::oauth_http(self.http.clone(), self.timeout, MAX_ANSWER_BYTES);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&call)
            .await
            .map_err(|e| match e {
                oauth2::RequestTokenError::ServerResponse(_) => {
                    SignInError::Rejected("the sign-in service refused the code")
                }
                oauth2::RequestTokenError::Parse(..) => {
                    SignInError::Rejected("the sign-in service sent no ID token")
                }
                _ => SignInError::Unavailable("its token endpoint did not answer"),
            })?;
        let id_token = &tokens.extra_fields().id_token;
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| SignInError::Rejected("the ID token is not a JWT"))?;
        let keys = match header.kid.as_deref() {
            Some(kid) if keys.find(kid).is_none() => self.known(true).await?.1,
            _ => keys,
        };
        verify_id_token(
            id_token,
            &keys,
            &self.config,
            &discovery.issuer,
            &pending.nonce,
            now,
        )
    }

    /// Where the browser goes to end the person's session at the provider too, if it says
    /// and the discovery document is at hand (never fetched for this: the signed-out page is
    /// anyone's to ask for).
    pub fn end_session_url(&self) -> Option<String> {
        self.known
            .try_lock()
            .ok()?
            .as_ref()?
            .0
            .end_session_endpoint
            .clone()
    }
}

fn same_scheme(url: &str, issuer: &str) -> bool {
    let scheme = |u: &str| url::Url::parse(u).ok().map(|u| u.scheme().to_string());
    scheme(url).is_some() && scheme(url) == scheme(issuer)
}

/// The algorithms an ID token may be signed with: asymmetric only (a provider's shared-secret
/// HS256 would let anyone holding the client secret mint tokens).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// An ID token's claims, if it is signed by one of `keys` and is for this gateway, from
/// `issuer`, unexpired, and carries `nonce` (OpenID Connect Core 1.0 §3.1.3.7). Pure but for
/// the signature arithmetic.
pub fn verify_id_token(
    token: &str,
    keys: &JwkSet,
    config: &SignInConfig,
    issuer: &str,
    nonce: &str,
    now: u64,
) -> Result<Map<String, Value>, SignInError> {
    let rejected = SignInError::Rejected;
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| rejected("the ID token is not a JWT"))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(rejected(
            "the ID token is signed with an algorithm the gateway does not accept",
        ));
    }
    let candidates: Vec<_> = match header.kid.as_deref() {
        Some(kid) => keys.find(kid).into_iter().collect(),
        None => keys.keys.iter().collect(),
    };
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[&config.client_id]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub", "iat"]);
    // Time is judged below against the caller's clock.
    validation.validate_exp = false;
    let claims = candidates
        .into_iter()
        .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
        .find_map(|key| jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).ok())
        .ok_or(rejected(
            "the ID token's signature, issuer or audience is wrong",
        ))?
        .claims;
    let number = |name: &str| claims.get(name).and_then(Value::as_u64);
    if number("exp").is_none_or(|exp| exp + LEEWAY_SECS <= now) {
        return Err(rejected("the ID token has expired"));
    }
    if number("iat").is_none_or(|iat| iat > now + LEEWAY_SECS) {
        return Err(rejected("the ID token was issued in the future"));
    }
    // §3.1.3.7 items 3 to 5: no audience the gateway does not trust (it trusts only itself),
    // and an authorized party, when named, that is this gateway.
    if let Some(Value::Array(aud)) = claims.get("aud")
        && aud
            .iter()
            .any(|a| a.as_str() != Some(config.client_id.as_str()))
    {
        return Err(rejected("the ID token is also for another party"));
    }
    if claims
        .get("azp")
        .is_some_and(|azp| azp.as_str() != Some(config.client_id.as_str()))
    {
        return Err(rejected("the ID token was issued to another party"));
    }
    match claims.get("nonce").and_then(Value::as_str) {
        Some(given) if super::session::same_secret(given, nonce) => Ok(claims),
        _ => Err(rejected(
            "the ID token does not answer this sign-in (nonce)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SigningKey;
    use crate::signin::tests::config;
    use serde_json::json;

    fn keys(key: &SigningKey) -> JwkSet {
        serde_json::from_value(key.public_jwks()).unwrap()
    }

    fn claims(now: u64) -> Value {
        json!({
            "iss": "http://127.0.0.1:8091", "aud": "whg-dashboard", "sub": "555011",
            "iat": now, "exp": now + 300, "nonce": "n-1",
            "whg_role": "commissioner", "whg_org": "QF7",
        })
    }

    #[test]
    fn an_id_token_is_taken_only_when_every_check_passes() {
        let key = SigningKey::generate();
        let set = keys(&key);
        let now = 1_800_000_000;
        let verify = |token: &str| {
            verify_id_token(token, &set, &config(), "http://127.0.0.1:8091", "n-1", now)
        };
        assert!(verify(&key.sign(&claims(now))).is_ok());

        let changed = |field: &str, value: Value| {
            let mut c = claims(now);
            c[field] = value;
            key.sign(&c)
        };
        for (why, token) in [
            ("another audience", changed("aud", json!("someone-else"))),
            (
                "another issuer",
                changed("iss", json!("https://evil.example")),
            ),
            ("expired", changed("exp", json!(now - 61))),
            ("issued in the future", changed("iat", json!(now + 3600))),
            ("another sign-in's nonce", changed("nonce", json!("n-2"))),
            ("no nonce", changed("nonce", Value::Null)),
            ("no subject", changed("sub", Value::Null)),
            (
                "two audiences, no azp",
                changed("aud", json!(["whg-dashboard", "other"])),
            ),
            ("another authorized party", changed("azp", json!("other"))),
            ("another audience beside this one, with azp", {
                let mut c = claims(now);
                c["aud"] = json!(["whg-dashboard", "other"]);
                c["azp"] = json!("whg-dashboard");
                key.sign(&c)
            }),
            (
                "signed by another key",
                SigningKey::generate().sign(&claims(now)),
            ),
        ] {
            assert!(verify(&token).is_err(), "{why} was accepted");
        }
        // HS256 under a key anyone could guess is never accepted, whatever the JWK Set says.
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims(now),
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(verify(&hs).is_err());
    }
}
