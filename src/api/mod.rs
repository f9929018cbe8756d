//! HTTP routes (axum) and the server around them. Handlers extract a request, call one use case in
//! [`crate::app`] and answer; the use cases' errors become OperationOutcomes in `error.rs`.

mod approve;
mod auth;
mod body;
mod client_address;
mod conformance;
mod consents;
mod dashboard;
mod directory;
mod employer_letters;
mod error;
mod fhir_read;
mod fit_notes;
mod health;
mod limits;
pub use limits::TEST_TRIGGER;
mod oauth;
mod quarantine;
mod refer;
mod referrals;
mod reports;
pub mod tls;
mod workflow;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, FHIR_JSON};

use crate::config::Config;
use crate::store::Store;

/// What every handler can reach. axum clones the state for every extractor and middleware of
/// every request, so it is one shared allocation: a clone is a reference count, not copies of the
/// token verifier's validation rules and the other parts.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub tokens: crate::auth::TokenVerifier,
    pub issuer: crate::auth::TokenIssuer,
    /// Outbound HTTP to URLs registered clients supplied (their JWKS URLs): the outbound policy's
    /// guarded client (`crate::outbound`).
    pub http: reqwest::Client,
    /// Registered clients' JWK Sets fetched from their JWKS URLs.
    pub jwks_cache: crate::auth::jwks_cache::JwksCache,
    pub limiter: crate::app::rate_limits::RateLimiter,
    /// Wakes the letter worker and holds its counters.
    pub outbox: crate::delivery::worker::Outbox,
    /// For the CapabilityStatement's `date`.
    pub started_at: String,
    /// Sign-in for people to the dashboard; `None` when `[sign_in]` is not configured.
    pub sign_in: Option<crate::app::sign_in::SignIn>,
    /// Signs the self-referral form's tokens.
    pub form_key: crate::app::self_referral::FormKey,
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.config.limits.request_timeout_secs);
    Router::new()
        .route(
            "/api/v1/referrals",
            post(referrals::create_practice_referral),
        )
        .route(
            "/api/v1/referrals/$validate",
            post(conformance::validate_practice_referral),
        )
        .route(
            "/api/v1/fit-notes/$validate",
            post(conformance::validate_practice_fit_note),
        )
        .route("/api/v1/openapi.json", get(conformance::openapi))
        .route("/fhir/$process-message", post(referrals::process_message))
        .route("/fhir/metadata", get(fhir_read::metadata))
        .route(
            "/.well-known/smart-configuration",
            get(oauth::smart_configuration),
        )
        // SMART App Launch 2.0 §Conformance: the document is found by appending
        // /.well-known/smart-configuration to the FHIR base URL, which here is {base}/fhir.
        .route(
            "/fhir/.well-known/smart-configuration",
            get(oauth::smart_configuration),
        )
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route("/oauth2/token", post(oauth::token))
        .route(
            "/api/v1/fit-notes",
            post(fit_notes::create_practice_fit_note),
        )
        .route(
            "/api/v1/patients/{nhs_number}/fit-notes/summary",
            get(fit_notes::summary),
        )
        .route(
            "/fhir/Observation",
            post(fit_notes::create_observation).get(fhir_read::search_observations),
        )
        .route(
            "/fhir/Observation/{id}",
            axum::routing::put(fit_notes::update_observation).get(fhir_read::read_observation),
        )
        .route(
            "/fhir/Task/{id}",
            axum::routing::put(fit_notes::update_task).get(fhir_read::read_task),
        )
        .route(
            "/fhir/Consent",
            post(consents::create).get(fhir_read::search_consents),
        )
        .route(
            "/fhir/Consent/{id}",
            axum::routing::put(consents::update).get(fhir_read::read_consent),
        )
        .route(
            "/api/v1/consent-overrides",
            post(consents::create_override).get(consents::list_overrides),
        )
        .route(
            "/api/v1/consent-overrides/{id}",
            get(consents::show_override),
        )
        .route(
            "/api/v1/consent-overrides/{id}/grant",
            post(consents::grant_override),
        )
        .route(
            "/api/v1/consent-overrides/{id}/refuse",
            post(consents::refuse_override),
        )
        .route(
            "/api/v1/consent-overrides/{id}/review",
            post(consents::review_override),
        )
        .route(
            "/api/v1/disclosures/$decide",
            post(consents::decide_disclosure),
        )
        .route("/fhir/Patient", get(fhir_read::search_patients))
        .route(
            "/fhir/Patient/_search",
            post(fhir_read::search_patients_by_post),
        )
        .route("/fhir/HealthcareService", get(directory::search))
        .route("/fhir/HealthcareService/{id}", get(directory::read))
        .route("/fhir/{type}", get(fhir_read::search))
        .route("/fhir/StructureDefinition", get(conformance::search))
        .route("/fhir/StructureDefinition/{id}", get(conformance::read))
        .route("/fhir/ValueSet", get(conformance::search))
        .route("/fhir/ValueSet/{id}", get(conformance::read))
        .route("/fhir/CodeSystem", get(conformance::search))
        .route("/fhir/CodeSystem/{id}", get(conformance::read))
        .route("/fhir/Measure", get(conformance::search))
        .route("/fhir/Measure/{id}", get(conformance::read))
        .route("/fhir/{type}/$validate", post(conformance::validate))
        .route("/fhir/Consent/$validate", post(conformance::validate))
        .route("/fhir/Task/$validate", post(conformance::validate))
        .route("/fhir/Observation/$validate", post(conformance::validate))
        .route("/fhir/{type}/_search", post(fhir_read::search_by_post))
        // The types with routes of their own match `{id}` before the route above would.
        .route(
            "/fhir/Consent/_search",
            post(fhir_read::search_by_post_typed),
        )
        .route("/fhir/Task/_search", post(fhir_read::search_by_post_typed))
        .route(
            "/fhir/Observation/_search",
            post(fhir_read::search_by_post_typed),
        )
        .route("/fhir/{type}/{id}", get(fhir_read::read))
        .route("/fhir/{type}/{id}/_history/{vid}", get(fhir_read::vread))
        .route("/fhir/{type}/{id}/_history", get(fhir_read::history))
        .route(
            "/api/v1/referrals/{id}/triage",
            post(workflow::step::<crate::workflow::action::TriageBody>),
        )
        .route(
            "/api/v1/referrals/{id}/contacts",
            post(workflow::step::<crate::workflow::Contact>),
        )
        .route(
            "/api/v1/referrals/{id}/support",
            post(workflow::step::<crate::workflow::action::Support>),
        )
        .route(
            "/api/v1/referrals/{id}/discharge",
            post(workflow::step::<crate::workflow::Discharge>),
        )
        .route(
            "/api/v1/referrals/{id}/follow-ups",
            post(workflow::step::<crate::workflow::FollowUp>),
        )
        .route(
            "/api/v1/referrals/{id}/letters",
            post(workflow::create_letter),
        )
        .route(
            "/api/v1/referrals/{id}/employer-letters",
            post(employer_letters::create),
        )
        .route(
            "/api/v1/employer-letters/{id}",
            get(employer_letters::show).put(employer_letters::revise),
        )
        .route(
            "/api/v1/employer-letters/{id}/answer",
            post(employer_letters::record_answer),
        )
        .route(
            "/api/v1/employer-letters/{id}/send",
            post(employer_letters::send),
        )
        .route(
            "/api/v1/employer-letters/{id}/link",
            post(employer_letters::issue_link),
        )
        .route("/api/v1/referrals/{id}/workflow", get(workflow::show))
        .route("/api/v1/letters", get(workflow::list_letters))
        .route("/api/v1/letters/{id}", get(workflow::show_letter))
        .route(
            "/api/v1/letters/{id}/$resend",
            post(workflow::resend_letter),
        )
        .route("/api/v1/reports", get(reports::list))
        .route("/api/v1/reports/{name}", get(reports::show))
        .route("/api/v1/mesh/quarantine", get(quarantine::list))
        .route("/api/v1/mesh/quarantine/{id}", get(quarantine::show))
        .route("/metrics", get(workflow::metrics))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .merge(dashboard::routes())
        .merge(refer::routes())
        .merge(approve::routes())
        // After every route, before the fallbacks: runs once a route has matched.
        .route_layer(middleware::from_fn(name_request_span))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::test_triggers,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::rate_limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::security_headers,
        ))
        .with_state(state)
        .layer(middleware::from_fn(move |req, next| {
            enforce_timeout(timeout, req, next)
        }))
        .layer(middleware::from_fn(echo_correlation_id))
        .layer(middleware::from_fn(negotiate_format))
        // Only method and path are logged, never the query string, and a path's numbers are
        // masked: both can carry NHS numbers (e.g. /api/v1/patients/{nhs-number}/…).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(request_finished),
        )
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".into()).into_response()
        }))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeAcceptableUuid))
        // Outermost: a caller's request id is kept only if it is one (see below); otherwise the
        // layer above gives the request a generated one, before anything logs or stores it.
        .layer(middleware::from_fn(drop_unacceptable_request_id))
}

/// The span of one request, the parent of everything done for it: a child of the caller's trace
/// when the request carries W3C trace context. Its fields are the log lines' too, so they hold
/// nothing a log may not (the path masked, no query).
fn request_span(req: &Request) -> tracing::Span {
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        otel.name = %req.method(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        request_id = %request_id,
        http.request.method = %req.method(),
        url.path = %loggable_path(req.uri().path()),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        fhir.interaction = tracing::field::Empty,
        fhir.resource_type = tracing::field::Empty,
    );
    crate::telemetry::propagation::continue_trace(&span, req.headers());
    span
}

/// The method and route template a request matched, passed from [`name_request_span`] to
/// [`request_finished`] on the response.
#[derive(Clone)]
struct MatchedRoute {
    method: axum::http::Method,
    route: Arc<str>,
}

/// Names the request span by its route template and FHIR interaction, once routing has matched.
async fn name_request_span(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| Arc::<str>::from(m.as_str()));
    if let Some(route) = &route {
        let span = tracing::Span::current();
        span.record("http.route", &**route);
        // The exported span's name, as the HTTP semantic conventions give it ("{method}
        // {route}"): set on the OpenTelemetry span itself, already started by now.
        {
            use opentelemetry::trace::TraceContextExt as _;
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            span.context()
                .span()
                .update_name(format!("{} {route}", req.method()));
        }
        if let Some((interaction, resource)) =
            crate::telemetry::interaction::of(req.method().as_str(), route, req.uri().path())
        {
            span.record("fhir.interaction", interaction);
            if let Some(resource) = resource {
                span.record("fhir.resource_type", resource);
            }
        }
    }
    let method = req.method().clone();
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response
            .extensions_mut()
            .insert(MatchedRoute { method, route });
    }
    response
}

/// Logs a finished request, records its status on its span and its duration in the
/// `http.server.request.duration` histogram (by route template; none for unmatched paths, so
/// a scan of made-up paths cannot grow the series).
fn request_finished(response: &Response, latency: Duration, span: &tracing::Span) {
    let status = response.status();
    // As i64: the OpenTelemetry layer writes a u64 as text.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let mut attributes = vec![opentelemetry::KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    )];
    if let Some(MatchedRoute { method, route }) = response.extensions().get::<MatchedRoute>() {
        attributes.push(opentelemetry::KeyValue::new(
            "http.request.method",
            method.to_string(),
        ));
        attributes.push(opentelemetry::KeyValue::new(
            "http.route",
            route.to_string(),
        ));
    }
    crate::telemetry::instruments::instruments()
        .request_duration
        .record(latency.as_secs_f64(), &attributes);
    tracing::info!(
        latency_ms = latency.as_millis() as u64,
        status = status.as_u16(),
        "finished processing request"
    );
}

/// The longest request id taken from a caller.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Whether a caller's `X-Request-ID` can be kept: 1 to 64 letters, digits, `.`, `-` or `_`
/// (a UUID, or any token of that kind). Anything else (a name, an NHS number with spaces, text
/// shaped to look like a log field, a megabyte) is replaced with a generated id before the
/// request is logged or audited.
pub fn acceptable_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !holds_nhs_number(id)
}

/// Request ids the gateway makes: random UUIDs, each one [`acceptable_request_id`] itself (one
/// in a hundred or so has hex digits that happen to read as an NHS number, and is drawn again),
/// so the audit trail's check never drops one.
#[derive(Clone, Copy)]
struct MakeAcceptableUuid;

impl MakeRequestId for MakeAcceptableUuid {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = std::iter::repeat_with(|| uuid::Uuid::new_v4().to_string())
            .find(|id| acceptable_request_id(id))?;
        id.parse().ok().map(RequestId::new)
    }
}

/// Removes a caller's `X-Request-ID` unless it is exactly one acceptable value.
async fn drop_unacceptable_request_id(mut req: Request, next: Next) -> Response {
    let mut given = req.headers().get_all(&X_REQUEST_ID).iter();
    let keep = match (given.next(), given.next()) {
        (None, _) => true,
        (Some(one), None) => one.to_str().is_ok_and(acceptable_request_id),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    next.run(req).await
}

/// `path` with every segment that could hold an NHS number masked, so none reaches the logs,
/// while the gateway's resource ids (UUIDs) and route words stay. A segment is read
/// percent-decoded, and digits separated by a space, `-`, `.` or `_` count as one number (NHS
/// numbers are written `999 000 0018` or `999-000-0018`). A segment other than a UUID is masked
/// when it holds a number of six digits or more, wherever in the segment; a UUID, whose hex
/// digits often run to six, when ten digits in a row make a valid NHS number.
fn loggable_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
            // A self-referral's reference (in its confirmation's address) is the person's.
            if crate::app::self_referral::is_reference(&decoded) {
                return "{reference}";
            }
            // An approval link's token is a secret for the person who holds it.
            if crate::letters::approval_link::is_link_token(&decoded) {
                return "{link}";
            }
            let masked = if is_uuid(&decoded) {
                holds_nhs_number(&decoded.replace('-', ""))
            } else {
                longest_number(&decoded) >= 6
            };
            if masked { "{number}" } else { segment }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The digits of each number in `text`, where single separators between digits are part of it.
fn numbers(text: &str) -> Vec<String> {
    let mut found = vec![String::new()];
    let mut pending_separator = false;
    for c in text.chars() {
        let current = found.last_mut().expect("never empty");
        if c.is_ascii_digit() {
            current.push(c);
            pending_separator = false;
        } else if matches!(c, ' ' | '-' | '.' | '_') && !current.is_empty() && !pending_separator {
            pending_separator = true;
        } else if !current.is_empty() {
            found.push(String::new());
            pending_separator = false;
        }
    }
    found.retain(|n| !n.is_empty());
    found
}

fn longest_number(text: &str) -> usize {
    numbers(text).iter().map(String::len).max().unwrap_or(0)
}

/// Whether ten digits in a row anywhere in `text` are a valid NHS number (Modulus 11).
fn holds_nhs_number(text: &str) -> bool {
    numbers(text).iter().any(|digits| {
        digits.len() >= 10
            && (0..=digits.len() - 10)
                .any(|i| crate::fhir::identifiers::nhs_number(&digits[i..i + 10]).is_ok())
    })
}

fn is_uuid(segment: &str) -> bool {
    segment.len() == 36 && uuid::Uuid::parse_str(segment).is_ok()
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not supported on {}",
        req.method(),
        req.uri().path()
    ))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Refuses (406) a request whose `Accept` header admits no JSON: every answer here is JSON.
/// Answers in the FHIR format the caller asks for (R4 http.html#mime): `_format` in the query
/// if given, else the `Accept` header; JSON, or XML for `application/fhir+xml`. Handlers always
/// answer JSON; an XML answer is made here, at the edge, from it. Naming neither format is
/// refused with 406.
async fn negotiate_format(req: Request, next: Next) -> Response {
    // Only the FHIR API has two formats; the other routes answer in their own (JSON, the OAuth
    // token endpoint's JSON, Prometheus text for /metrics), whatever Accept says, as RFC 9110
    // 12.5.1 allows: a scraper asking for text/plain must not get a 406.
    if !req.uri().path().starts_with("/fhir") {
        return next.run(req).await;
    }
    let asked = format_parameter(req.uri().query()).or_else(|| {
        req.headers()
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let format = match &asked {
        None => ResponseFormat::Json,
        Some(asked) => match response_format(asked) {
            Some(format) => format,
            None => return ApiError::NotAcceptable(asked.clone()).into_response(),
        },
    };
    let mut response = next.run(req).await;
    // Caches keep the two forms of one resource apart.
    response.headers_mut().append(
        axum::http::header::VARY,
        axum::http::HeaderValue::from_static("accept"),
    );
    match format {
        ResponseFormat::Json => response,
        ResponseFormat::Xml => as_xml(response).await,
    }
}

/// R4's `_format` parameter as a media range: `json` and `xml` stand for FHIR's types.
fn format_parameter(query: Option<&str>) -> Option<String> {
    let value = form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "_format")?
        .1
        .into_owned();
    Some(match value.as_str() {
        "json" => "application/fhir+json".to_string(),
        "xml" => "application/fhir+xml".to_string(),
        _ => value,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ResponseFormat {
    Json,
    Xml,
}

/// The format a media-range list (an Accept header, RFC 9110 12.5.1) prefers: each format takes
/// the quality of the most specific range matching it, the higher wins, JSON on a tie; none if
/// neither is acceptable. A range with an unreadable quality is left out.
fn response_format(accept: &str) -> Option<ResponseFormat> {
    // (specificity, quality in thousandths) of the range deciding each format so far.
    let mut json: Option<(u8, u16)> = None;
    let mut xml: Option<(u8, u16)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let mut quality = Some(1000);
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                quality = qvalue(value.trim());
            }
        }
        let Some(quality) = quality else { continue };
        let (json_specificity, xml_specificity) = match essence.as_str() {
            "*/*" => (1, 1),
            "application/*" => (2, 2),
            "application/fhir+json" | "application/json" => (3, 0),
            "application/fhir+xml" | "application/xml" => (0, 3),
            _ => (0, 0),
        };
        for (slot, specificity) in [(&mut json, json_specificity), (&mut xml, xml_specificity)] {
            if specificity > 0
                && slot.is_none_or(|(s, q)| specificity > s || (specificity == s && quality > q))
            {
                *slot = Some((specificity, quality));
            }
        }
    }
    let q = |slot: Option<(u8, u16)>| slot.map_or(0, |(_, q)| q);
    match (q(json), q(xml)) {
        (0, 0) => None,
        (j, x) if x > j => Some(ResponseFormat::Xml),
        _ => Some(ResponseFormat::Json),
    }
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`) in thousandths; none if it is not one.
fn qvalue(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The response in FHIR XML, when it is FHIR JSON (other answers, such as a PDF, are left alone).
async fn as_xml(response: Response) -> Response {
    let is_fhir_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/fhir+json"));
    if !is_fhir_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::Internal("an answer could not be read".into()).into_response(),
    };
    if bytes.is_empty() {
        // HEAD, or nothing to say: the headers stand, the type is the one asked for.
        parts.headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(error::FHIR_XML),
        );
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    match crate::fhir::resource::json_to_xml(&bytes) {
        Ok(xml) => {
            parts.headers.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static(error::FHIR_XML),
            );
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(xml))
        }
        // A bug (every resource the gateway emits is read strictly by fhirbolt in the tests),
        // but what was done stands: the answer goes in JSON rather than as a 500 after a write.
        // fhirbolt's message may quote values, so it is not logged.
        Err(_) => {
            tracing::error!(
                status = parts.status.as_u16(),
                "an answer could not be written as XML; sent as JSON"
            );
            Response::from_parts(parts, axum::body::Body::from(bytes))
        }
    }
}

/// Echoes a caller's `X-Correlation-ID` (BaRS keeps one per conversation).
async fn echo_correlation_id(req: Request, next: Next) -> Response {
    let correlation = req.headers().get(&X_CORRELATION_ID).cloned();
    let mut response = next.run(req).await;
    if let Some(v) = correlation {
        response.headers_mut().insert(X_CORRELATION_ID, v);
    }
    response
}

/// Answers 503 with an OperationOutcome when a request overruns its time. A referral still being
/// committed at that moment may be stored; a resend with the same id is then answered 200.
async fn enforce_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limit.as_secs()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_paths_mask_numbers_but_keep_ids() {
        use super::loggable_path;
        assert_eq!(
            loggable_path("/api/v1/patients/9990000018/fit-notes/summary"),
            "/api/v1/patients/{number}/fit-notes/summary"
        );
        assert_eq!(
            loggable_path("/api/v1/patients/999%20000%200018/fit-notes/summary"),
            "/api/v1/patients/{number}/fit-notes/summary"
        );
        assert_eq!(
            loggable_path("/fhir/ServiceRequest/01a20dc0-0ae8-7719-8d30-ffebaffc788f"),
            "/fhir/ServiceRequest/01a20dc0-0ae8-7719-8d30-ffebaffc788f"
        );
        assert_eq!(
            loggable_path("/api/v1/patients/999-000-0018"),
            "/api/v1/patients/{number}"
        );
        for inside in [
            "/fhir/Patient/nhs-9990000018",
            "/fhir/Patient/abc9990000018def",
            "/fhir/Patient/x-999%20000%200018-y",
            "/fhir/Patient/prefix-999.000.0018",
            "/api/v1/letters/letter-for-999-000-0018-smith",
            "/fhir/Patient/00000000-0000-0000-0000-009990000018",
            "/fhir/Patient/99900000-18ab-4cde-8f00-000000000000",
        ] {
            assert!(
                !loggable_path(inside).contains("0018"),
                "{inside} -> {}",
                loggable_path(inside)
            );
        }
        assert_eq!(loggable_path("/api/v1/referrals"), "/api/v1/referrals");
        // An approval link's token is a secret: never logged.
        let link = crate::letters::approval_link::LinkKey::new(b"k").seal(
            "01a24259-345a-775f-be12-a0c7f38764e0",
            1,
            2_000_000_000,
        );
        assert_eq!(
            loggable_path(&format!("/letters/approve/{link}")),
            "/letters/approve/{link}"
        );
        assert_eq!(
            loggable_path("/fhir/Task/019a20dc-0ae8-7719-8d30-a12345678abc"),
            "/fhir/Task/019a20dc-0ae8-7719-8d30-a12345678abc",
            "a UUID whose digits are no NHS number stays"
        );
    }

    #[test]
    fn generated_request_ids_are_acceptable() {
        use tower_http::request_id::MakeRequestId;
        let request = axum::http::Request::new(());
        for _ in 0..2000 {
            let id = super::MakeAcceptableUuid.make_request_id(&request).unwrap();
            let id = id.header_value().to_str().unwrap();
            assert!(super::acceptable_request_id(id) && id.len() == 36, "{id}");
        }
    }

    #[test]
    fn request_ids_from_callers_are_bounded_tokens() {
        use super::acceptable_request_id as ok;
        assert!(ok("req-123") && ok("01a20dc0-0ae8-7719-8d30-ffebaffc788f") && ok(&"a".repeat(64)));
        for bad in [
            "",
            &"a".repeat(65),
            "a b",
            "id\" forged=\"x",
            "Jane Smith",
            "9990000018",
            "req-999-000-0018",
            "ünïcode",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn accept_headers() {
        use super::{ResponseFormat::*, response_format};
        for (accept, format) in [
            ("*/*", Some(Json)),
            ("application/fhir+json", Some(Json)),
            ("application/json; charset=utf-8", Some(Json)),
            ("text/html, application/*;q=0.8", Some(Json)),
            ("application/fhir+json; fhirVersion=4.0", Some(Json)),
            // R4 http.html#mime: application/fhir+xml asks for XML.
            ("application/fhir+xml", Some(Xml)),
            ("application/fhir+xml;fhirVersion=4.0", Some(Xml)),
            ("APPLICATION/FHIR+XML", Some(Xml)),
            ("application/xml, text/plain", Some(Xml)),
            (
                "application/fhir+xml, application/fhir+json;q=0.5",
                Some(Xml),
            ),
            (
                "application/fhir+xml;Q=0.5, application/fhir+json",
                Some(Json),
            ),
            ("application/fhir+xml, application/fhir+json", Some(Json)),
            ("application/fhir+xml, */*;q=0.1", Some(Xml)),
            ("application/fhir+json;q=0, application/fhir+xml", Some(Xml)),
            // The most specific range decides: JSON refused outright is not taken back by */*.
            ("application/fhir+json;q=0, */*", Some(Xml)),
            (
                "application/fhir+json;q=0, application/fhir+xml;q=0, */*",
                None,
            ),
            // Unreadable qualities are left out, never read as 1 (or NaN).
            (
                "application/fhir+xml;q=nan, application/fhir+json;q=0.1",
                Some(Json),
            ),
            ("application/fhir+xml;q=abc", None),
            ("application/fhir+xml;q=1.5", None),
            ("text/html", None),
            ("application/fhir+xml;q=0", None),
        ] {
            assert_eq!(response_format(accept), format, "{accept}");
        }
    }

    #[test]
    fn format_parameter() {
        assert_eq!(
            super::format_parameter(Some("_format=xml")).as_deref(),
            Some("application/fhir+xml")
        );
        assert_eq!(
            super::format_parameter(Some("a=1&_format=application%2Ffhir%2Bjson")).as_deref(),
            Some("application/fhir+json")
        );
        assert_eq!(super::format_parameter(Some("a=1")), None);
        assert_eq!(super::format_parameter(None), None);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen in plaintext on non-loopback address {0}: set allow_plaintext_non_loopback = true to do so deliberately"
    )]
    PlaintextNonLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Key(#[from] crate::auth::KeyError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    ExternalIssuer(#[from] crate::auth::external::ExternalIssuerError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the gateway until SIGTERM or Ctrl-C, then finishes in-flight requests and queued writes.
/// Prints `whg listening on http://ADDR` on stdout once it accepts connections.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let plaintext = config.tls.is_none();
    if plaintext && !config.listen.ip().is_loopback() && !config.allow_plaintext_non_loopback {
        return Err(ServeError::PlaintextNonLoopback(config.listen));
    }
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let key = crate::auth::SigningKey::load_or_create(&config.auth.signing_key)?;
    let external = crate::auth::external::ExternalIssuers::load(&config.auth.external_issuers)?;
    let tokens = crate::auth::TokenVerifier::new(key.clone(), &config.auth).with_external(external);
    let issuer = crate::auth::TokenIssuer::new(key, &config.auth);
    let store = crate::store::open(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr()?;
    let scheme = if plaintext { "http" } else { "https" };
    let mut config = config;
    if config.base_url.is_none() {
        config.base_url = Some(format!("{scheme}://{local}"));
    }
    let jwks_http =
        crate::outbound::guarded_client(&config.outbound.policy(), config.outbound.timeout())
            .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
    let jwks_cache = crate::auth::jwks_cache::JwksCache::new(
        crate::auth::jwks_cache::CachePolicy::configured(&config.outbound),
    );
    let sign_in = match &config.sign_in {
        Some(sign_in) => Some(
            crate::app::sign_in::SignIn::new(
                sign_in,
                config.base_url.as_deref().unwrap_or_default(),
                config.outbound.timeout(),
            )
            .map_err(|e| ServeError::Io(std::io::Error::other(e)))?,
        ),
        None => None,
    };
    let form_key = crate::app::self_referral::FormKey::load(&config)
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
    let state = AppState::new(Shared {
        config: Arc::new(config),
        store: store.clone(),
        tokens: tokens.clone(),
        issuer,
        limiter: Default::default(),
        http: jwks_http,
        jwks_cache,
        outbox: Default::default(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        sign_in,
        form_key,
    });
    tokio::spawn(watch_client_registry(
        store.clone(),
        tokens,
        Duration::from_secs(state.config.auth.revocation_poll_secs),
    ));
    if let Some(smtp) = &state.config.delivery.smtp {
        // A mail server for letters that could never work stops the gateway with the reason
        // (its password file unreadable), rather than letters waiting without one.
        crate::delivery::email::EmailChannel::new(
            smtp,
            Duration::from_millis(state.config.delivery.attempt_timeout_ms),
        )
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
    }
    if state.config.delivery.enabled {
        // The practice directory's endpoints are the operator's: no address policy, but no
        // redirects either (see `crate::outbound`).
        let delivery_http = crate::outbound::client(Duration::from_millis(
            state.config.delivery.attempt_timeout_ms,
        ))
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
        tokio::spawn(crate::delivery::worker::run(
            store.clone(),
            state.config.clone(),
            delivery_http,
            state.outbox.clone(),
        ));
    }
    crate::app::alerts::check_routes(&state.config)
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
    if !state.config.alerts.routes.is_empty() {
        // The routes are the operator's (an incident tool, a chat hook): no address policy,
        // no redirects.
        let alert_http =
            crate::outbound::client(Duration::from_millis(state.config.alerts.notify_timeout_ms))
                .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
        tokio::spawn(crate::app::alerts::run_notifier(
            store.clone(),
            state.config.clone(),
            alert_http,
        ));
    }
    if state.config.telemetry.otlp_endpoint.is_some() {
        tokio::spawn(crate::delivery::worker::sample_depth(
            store.clone(),
            Duration::from_millis(state.config.telemetry.metrics_interval_ms.max(100)),
        ));
    }
    tracing::info!(address = %local, scheme, "listening");
    println!("whg listening on {scheme}://{local}");
    let app = router(state);
    let served = match tls {
        None => {
            // The peer's address is what unauthenticated requests are limited by.
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await
        }
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stopper.graceful_shutdown(Some(Duration::from_secs(30)));
            });
            axum_server::from_tcp_rustls(
                listener.into_std()?,
                axum_server::tls_rustls::RustlsConfig::from_config(tls),
            )
            .handle(handle)
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
        }
    };
    tracing::info!("stopped accepting requests; finishing queued writes");
    store.close().await;
    Ok(served?)
}

/// Keeps the token verifier's view of the client registry current: a client revoked with
/// `whg clients revoke` (another process) is refused within one poll.
async fn watch_client_registry(
    store: Arc<dyn Store>,
    tokens: crate::auth::TokenVerifier,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match store.clients().await {
            Ok(clients) => tokens.set_clients(clients),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the client registry; keeping the last view")
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
