//! The FHIR channel: a BaRS `servicerequest-response` message, carrying the letter as a
//! DocumentReference with its PDF, posted to the practice's `$process-message` with an OAuth2
//! client-credentials token (cached until it expires), BaRS's `X-Request-ID` and
//! `X-Correlation-ID`, and the NHSD headers ([`bars_headers`]). The message id and request id are the letter's, on every attempt, so
//! the receiver can de-duplicate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use serde_json::{Value, json};

use super::{Failure, MAX_ANSWER_BYTES, Outcome};
use crate::config::FhirRoute;
use crate::fhir::identifiers::identifier_reference;
use crate::fhir::systems;
use crate::outbound::{OAuthFetchError, read_bounded};

const BARS_BUNDLE_PROFILE: &str = "https://fhir.nhs.uk/StructureDefinition/BARSBundleMessage";
const BARS_RESPONSE_HEADER_PROFILE: &str =
    "https://fhir.nhs.uk/StructureDefinition/BARSMessageHeader-servicerequest-response";

/// What one message carries, as stored.
pub struct Message<'a> {
    /// The letter's message id (the Bundle's id and the X-Request-ID).
    pub id: &'a str,
    /// When the letter was queued: the message's timestamp on every attempt.
    pub timestamp: &'a str,
    pub base_url: &'a str,
    /// `system|value` of the service and of the practice.
    pub service: &'a str,
    pub practice: &'a str,
    /// The service's and the practice's Organization resources, as stored (or as the gateway
    /// knows them).
    pub service_organization: &'a Value,
    pub practice_organization: &'a Value,
    /// The practice system's BaRS target identifier, from the practice directory.
    pub target_identifier: Option<&'a str>,
    pub referral: &'a Value,
    pub patient: &'a Value,
    pub workflow_task: Option<&'a Value>,
    pub document: &'a Value,
}

/// The request message a referral came in, as intake recorded it on the ServiceRequest
/// (`whg-bars-request`): none for a referral made another way.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestMessage {
    pub header_id: Option<String>,
    pub bundle_id: Option<String>,
    pub source_endpoint: Option<String>,
}

impl RequestMessage {
    pub fn of(referral: &Value) -> RequestMessage {
        let url = systems::profile::whg_bars_request_extension();
        let Some(ext) = referral["extension"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["url"] == url.as_str()))
        else {
            return RequestMessage::default();
        };
        let part = |name: &str, value: &str| {
            ext["extension"]
                .as_array()?
                .iter()
                .find(|p| p["url"] == name)?[value]
                .as_str()
                .map(str::to_string)
        };
        RequestMessage {
            header_id: part("messageHeader", "valueId"),
            bundle_id: part("bundle", "valueId"),
            source_endpoint: part("sourceEndpoint", "valueString"),
        }
    }
}

fn full_url(base_url: &str, resource: &Value) -> String {
    match resource["id"].as_str() {
        Some(id) => format!(
            "{base_url}/fhir/{}/{id}",
            resource["resourceType"].as_str().unwrap_or_default()
        ),
        // An Organization the gateway knows only by its identifier: named from it, so each
        // attempt names it the same.
        None => format!(
            "urn:uuid:{}",
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, resource.to_string().as_bytes())
        ),
    }
}

fn entry(base_url: &str, resource: &Value) -> Value {
    json!({ "fullUrl": full_url(base_url, resource), "resource": resource })
}

/// The `servicerequest-response` message Bundle, as the BaRS MessageHeader profile
/// (BARSMessageHeader-servicerequest-response) asks: `reason` from message-reason-bars,
/// `response` naming the referral's request message, sender and receiver as Organization entries
/// with their identifiers, and the destination endpoint the practice's target identifier (the
/// directory's; else the request's `source.endpoint`, BaRS: "to ensure the receiver knows where
/// any response messages SHOULD be addressed"; else its ODS code).
pub fn message(m: &Message) -> Value {
    let focus = format!(
        "{}/fhir/ServiceRequest/{}",
        m.base_url,
        m.referral["id"].as_str().unwrap_or_default()
    );
    let header_id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{}#header", m.id).as_bytes(),
    );
    let request = RequestMessage::of(m.referral);
    let service_url = full_url(m.base_url, m.service_organization);
    let practice_url = full_url(m.base_url, m.practice_organization);
    let with_identifier = |url: &str, id: &str| {
        let mut r = identifier_reference(id);
        r["reference"] = json!(url);
        r
    };
    let mut header = json!({
        "resourceType": "MessageHeader",
        "id": header_id.to_string(),
        "meta": { "lastUpdated": m.timestamp },
        "eventCoding": { "system": systems::BARS_MESSAGE_EVENTS, "code": "servicerequest-response" },
        "destination": [{
            "endpoint": m
                .target_identifier
                .or(request.source_endpoint.as_deref())
                .unwrap_or(m.practice),
            "receiver": with_identifier(&practice_url, m.practice),
        }],
        "sender": with_identifier(&service_url, m.service),
        "source": {
            "name": "Work and Health Gateway",
            "software": "whg",
            "version": env!("CARGO_PKG_VERSION"),
            "endpoint": format!("{}/fhir/$process-message", m.base_url),
        },
        // Every letter is a response message of its own, not a change to an earlier one.
        "reason": { "coding": [{ "system": systems::BARS_MESSAGE_REASON, "code": "new" }] },
        "focus": [{ "reference": focus }],
        "definition": systems::BARS_REFERRAL_RESPONSE_DEFINITION,
    });
    // BaRS Core (Message Headers): "MessageHeader.response.identifier with the Bundle.Id of the
    // original request payload" (R4 says the request's MessageHeader.id; a BaRS receiver looks
    // the Bundle id up, so it is named when the request had one). A referral that came in no
    // message (the practice JSON API) has none to name, and so does not claim BaRS's response
    // header profile, which requires `response`.
    if let Some(id) = request.bundle_id.as_ref().or(request.header_id.as_ref()) {
        header["response"] = json!({ "identifier": id, "code": "ok" });
        header["meta"]["profile"] = json!([BARS_RESPONSE_HEADER_PROFILE]);
    }
    let mut entries = vec![
        json!({ "fullUrl": format!("urn:uuid:{header_id}"), "resource": header }),
        entry(m.base_url, m.referral),
        entry(m.base_url, m.patient),
        entry(m.base_url, m.service_organization),
        entry(m.base_url, m.practice_organization),
    ];
    if let Some(task) = m.workflow_task {
        entries.push(entry(m.base_url, task));
    }
    entries.push(entry(m.base_url, m.document));
    json!({
        "resourceType": "Bundle",
        "id": m.id,
        "meta": { "profile": [BARS_BUNDLE_PROFILE], "lastUpdated": m.timestamp },
        "type": "message",
        "timestamp": m.timestamp,
        "entry": entries,
    })
}

/// The BaRS headers a message is sent with besides `X-Request-ID` and `X-Correlation-ID`, each
/// "Standard Base64 encoded JSON" (BaRS API 1.4.0, booking-and-referral-1.4.0.yaml):
/// `NHSD-Target-Identifier` the practice's target identifier from the directory (`target`) as
/// `{"system", "value"}` (a BaRS proxy routes by it, so it never comes from a message),
/// `NHSD-End-User-Organisation` the sending Organization, `NHSD-Requesting-Software` the
/// gateway as a Device.
pub fn bars_headers(bundle: &Value, target: Option<&str>) -> Vec<(&'static str, String)> {
    use base64::Engine;
    let encode = |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
    let entries = bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let header = entries
        .first()
        .map(|e| &e["resource"])
        .unwrap_or(&Value::Null);
    let mut out = Vec::new();
    if let Some((system, value)) = target.and_then(crate::fhir::identifiers::bars_endpoint) {
        out.push((
            "nhsd-target-identifier",
            encode(&json!({ "system": system, "value": value })),
        ));
    }
    if let Some(sender) = header["sender"]["reference"]
        .as_str()
        .and_then(|r| entries.iter().find(|e| e["fullUrl"] == r))
    {
        out.push(("nhsd-end-user-organisation", encode(&sender["resource"])));
    }
    out.push((
        "nhsd-requesting-software",
        encode(&json!({
            "resourceType": "Device",
            "deviceName": [{ "name": "Work and Health Gateway", "type": "manufacturer-name" }],
            "version": [{ "value": env!("CARGO_PKG_VERSION") }],
        })),
    ));
    out
}

/// Sends messages over HTTP, holding each practice's access token until it expires.
pub struct FhirChannel {
    http: reqwest::Client,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl FhirChannel {
    pub fn new(http: reqwest::Client) -> Self {
        FhirChannel {
            http,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Posts `bundle` to the practice's endpoint and says what the answer means. A redirect is
    /// a failed attempt: it is not followed, so the letter goes nowhere but the configured
    /// endpoint. The answer is read only up to [`MAX_ANSWER_BYTES`].
    pub async fn send(
        &self,
        ods: &str,
        route: &FhirRoute,
        bundle: &Value,
        request_id: &str,
        correlation_id: &str,
        timeout: Duration,
    ) -> Outcome {
        let endpoint = &route.endpoint;
        let token = match self.token(ods, route, timeout).await {
            Ok(t) => t,
            Err(error) => {
                return Outcome::Retry {
                    error,
                    retry_after: None,
                };
            }
        };
        let mut request = self
            .http
            .post(format!(
                "{}/$process-message",
                endpoint.trim_end_matches('/')
            ))
            .timeout(timeout)
            .header("content-type", "application/fhir+json")
            .header("accept", "application/fhir+json")
            .header("x-request-id", request_id)
            .header("x-correlation-id", correlation_id)
            .body(bundle.to_string());
        for (name, value) in bars_headers(bundle, route.target_identifier.as_deref()) {
            request = request.header(name, value);
        }
        if let Some(t) = &token {
            request = request.bearer_auth(t);
        }
        // The send is a client span of the attempt's trace, and the practice's system is given
        // its context (W3C traceparent) so that its own spans can join.
        let span = tracing::info_span!(
            "delivery.send",
            otel.name = "POST $process-message",
            otel.kind = "client",
            http.request.method = "POST",
            server.address = url::Url::parse(endpoint)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
        );
        request = request.headers(span.in_scope(crate::telemetry::propagation::trace_headers));
        let response = match tracing::Instrument::instrument(request.send(), span.clone()).await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    error: describe(&e),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.is_success() {
            return Outcome::Accepted;
        }
        if status.is_redirection() {
            return Outcome::Retry {
                error: Failure::new(format!(
                    "HTTP {}: the endpoint answered with a redirect, which is not followed (check the practice directory's endpoint)",
                    status.as_u16()
                )),
                retry_after: None,
            };
        }
        // An answer too large or cut short is judged by its status alone.
        let body = read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .unwrap_or_default();
        let mut error = Failure::new(format!("HTTP {}", status.as_u16()));
        if let Some(text) = diagnostics(&body) {
            error = error.with_remote(&text);
        }
        match status.as_u16() {
            401 => {
                // A token the receiver no longer takes: fetch a new one next time.
                self.forget(ods);
                Outcome::Retry {
                    error,
                    retry_after: None,
                }
            }
            408 | 425 | 429 => Outcome::Retry { error, retry_after },
            400..=499 => Outcome::Rejected { error },
            _ => Outcome::Retry { error, retry_after },
        }
    }

    fn forget(&self, ods: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ods);
    }

    /// A current access token for the practice's endpoint (none if it takes none). The token
    /// endpoint, like the FHIR endpoint, is never followed through a redirect and its answer is
    /// read only up to [`MAX_ANSWER_BYTES`].
    async fn token(
        &self,
        ods: &str,
        route: &FhirRoute,
        timeout: Duration,
    ) -> Result<Option<String>, Failure> {
        let FhirRoute {
            token_url: Some(token_url),
            client_id: Some(client_id),
            client_secret_file: Some(secret_file),
            scope,
            ..
        } = route
        else {
            return Ok(None);
        };
        if let Some((token, until)) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ods)
            && *until > Instant::now()
        {
            return Ok(Some(token.clone()));
        }
        let secret = std::fs::read_to_string(secret_file).map_err(|e| {
            Failure::new(format!("cannot read the client secret file for {ods}: {e}"))
        })?;
        let client = BasicClient::new(ClientId::new(client_id.clone()))
            .set_client_secret(ClientSecret::new(secret.trim().to_string()))
            .set_token_uri(
                TokenUrl::new(token_url.clone())
                    .map_err(|e| Failure::new(format!("token_url for {ods}: {e}")))?,
            );
        let call = crate::outbound::oauth_http(self.http.clone(), timeout, MAX_ANSWER_BYTES);
        let mut exchange = client.exchange_client_credentials();
        if let Some(s) = scope {
            exchange = exchange.add_scope(Scope::new(s.clone()));
        }
        let response = exchange
            .request_async(&call)
            .await
            .map_err(|e| token_error(&e))?;
        let token = response.access_token().secret().clone();
        // Renewed 30 s before it runs out; a token with no stated lifetime is kept 5 minutes.
        let lifetime = response
            .expires_in()
            .unwrap_or(Duration::from_secs(300))
            .saturating_sub(Duration::from_secs(30));
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ods.to_string(), (token.clone(), Instant::now() + lifetime));
        Ok(Some(token))
    }
}

/// A failed token request: what kind of failure in the gateway's words; anything the token
/// endpoint said (its error and description, a misread field) as the remote text.
fn token_error<T: oauth2::ErrorResponse>(
    e: &oauth2::RequestTokenError<OAuthFetchError, T>,
) -> Failure {
    let failure = |reason: &str| Failure::new(format!("token request failed: {reason}"));
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => {
            failure("the token endpoint refused the gateway's credentials")
                .with_remote(&r.to_string())
        }
        oauth2::RequestTokenError::Request(OAuthFetchError::Http(e)) => {
            failure(&describe(e).reason)
        }
        oauth2::RequestTokenError::Request(other) => failure(&other.to_string()),
        oauth2::RequestTokenError::Parse(p, _) => {
            failure("the token endpoint's answer is not a token response")
                .with_remote(&p.to_string())
        }
        oauth2::RequestTokenError::Other(o) => {
            failure("the token endpoint's answer is not usable").with_remote(o)
        }
    }
}

/// A request that got no answer, in the gateway's words.
pub(super) fn describe(e: &reqwest::Error) -> Failure {
    Failure::new(if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        // reqwest's text names the URL, which may hold a token or a secret path: what went
        // wrong is said by the error's source, never by the error itself.
        let why = std::error::Error::source(e).map_or_else(
            || "no further detail".to_string(),
            |source| source.to_string(),
        );
        let why = match e.url() {
            Some(url) => why.replace(url.as_str(), "the practice's endpoint"),
            None => why,
        };
        format!("request failed: {why}")
    })
}

/// The receiver's diagnostics, when it answered with an OperationOutcome (raw: the caller
/// cleans and bounds them as remote text).
fn diagnostics(body: &[u8]) -> Option<String> {
    let v = serde_json::from_slice::<Value>(body).ok()?;
    let texts: Vec<&str> = v["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["diagnostics"].as_str().or(i["details"]["text"].as_str()))
        .take(3)
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}
