//! Errors at the HTTP edge: every one becomes a FHIR OperationOutcome with the right status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::fhir::{Issue, IssueType, Issues, NhsErrorCode, operation_outcome};
use crate::store::StoreError;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unsupported content type")]
    /// The Content-Type sent, and what the route takes instead.
    UnsupportedMediaType(String, &'static str),
    #[error("body too large")]
    PayloadTooLarge(usize),
    /// The client is over its request rate; it may retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests(u64),
    #[error("malformed JSON")]
    MalformedJson(String),
    /// A body sent as FHIR XML that is not an R4 resource fhirbolt reads strictly.
    #[error("malformed FHIR XML")]
    MalformedXml(String),
    /// Not FHIR, or breaks basic FHIR rules (400).
    #[error("bad request")]
    BadRequest(Issues),
    /// Well-formed, but breaks the format's rules (422).
    #[error("invalid content")]
    Invalid(Issues),
    #[error("not found")]
    NotFound(String),
    #[error("unauthorized: {0}")]
    Unauthorized(crate::auth::TokenError),
    /// The caller's role or organisation does not allow this (a practice acting for another,
    /// a service reading what is not addressed to it).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The access token lacks the scope this needs (403 with RFC 6750's `insufficient_scope`,
    /// which is said of scopes only: a token for the wrong organisation is [`ApiError::Forbidden`]).
    #[error("insufficient scope: {0}")]
    MissingScope(String),
    /// The person's consent does not allow this (403); the diagnostic names the deciding Consent.
    #[error("consent: {0}")]
    ConsentDenied(String),
    /// A referral refused because the person's consent does not allow it to go to the service (422).
    #[error("consent refused")]
    ConsentRefused(Issues),
    #[error("method not allowed")]
    MethodNotAllowed(String),
    #[error("not acceptable")]
    NotAcceptable(String),
    #[error("timed out")]
    Timeout(u64),
    /// Unavailable for a reason the diagnostic gives (503, safe to resend).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn parts(self) -> (StatusCode, Vec<Issue>, NhsErrorCode) {
        use ApiError::*;
        match self {
            UnsupportedMediaType(got, want) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                vec![Issue::general(
                    IssueType::NotSupported,
                    format!("Content-Type {got} is not accepted: send {want}"),
                )],
                NhsErrorCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            TooManyRequests(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                vec![Issue::general(
                    IssueType::Throttled,
                    format!("this client is sending more requests than its limit allows; retry after {wait} s"),
                )],
                NhsErrorCode::TOO_MANY_REQUESTS,
            ),
            PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                vec![Issue::general(
                    IssueType::TooLong,
                    format!("the request body is larger than the {limit}-byte limit"),
                )],
                NhsErrorCode::PAYLOAD_TOO_LARGE,
            ),
            MalformedJson(message) => (
                StatusCode::BAD_REQUEST,
                vec![Issue::general(
                    IssueType::Structure,
                    format!("the body is not well-formed JSON: {message}"),
                )],
                NhsErrorCode::BAD_REQUEST,
            ),
            MalformedXml(message) => (
                StatusCode::BAD_REQUEST,
                vec![Issue::general(
                    IssueType::Structure,
                    format!("the body is not a FHIR R4 resource in XML: {message}"),
                )],
                NhsErrorCode::BAD_REQUEST,
            ),
            BadRequest(issues) => (
                StatusCode::BAD_REQUEST,
                issues.into_vec(),
                NhsErrorCode::BAD_REQUEST,
            ),
            Invalid(issues) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                issues.into_vec(),
                NhsErrorCode::UNPROCESSABLE_ENTITY,
            ),
            NotFound(what) => (
                StatusCode::NOT_FOUND,
                vec![Issue::general(IssueType::NotFound, what)],
                NhsErrorCode::NOT_FOUND,
            ),
            Unauthorized(e) => (
                StatusCode::UNAUTHORIZED,
                vec![Issue::general(
                    IssueType::Login,
                    match e {
                        crate::auth::TokenError::Missing => "this needs an access token: send Authorization: Bearer <token> (see the README for getting one)".to_string(),
                        crate::auth::TokenError::Expired => "the access token has expired: get a new one".to_string(),
                        crate::auth::TokenError::Invalid(_) => "the access token is not valid for this gateway".to_string(),
                        crate::auth::TokenError::Revoked => "the client this access token was issued to has been revoked".to_string(),
                    },
                )],
                NhsErrorCode::UNAUTHORIZED,
            ),
            Forbidden(why) | MissingScope(why) => (
                StatusCode::FORBIDDEN,
                vec![Issue::general(IssueType::Forbidden, why)],
                NhsErrorCode::FORBIDDEN,
            ),
            ConsentDenied(why) => (
                StatusCode::FORBIDDEN,
                vec![Issue::general(IssueType::Forbidden, format!("the person's consent does not allow this: {why}"))],
                NhsErrorCode::FORBIDDEN,
            ),
            ConsentRefused(issues) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                issues.into_vec(),
                NhsErrorCode::UNPROCESSABLE_ENTITY,
            ),
            MethodNotAllowed(what) => (
                StatusCode::METHOD_NOT_ALLOWED,
                vec![Issue::general(IssueType::NotSupported, what)],
                NhsErrorCode::BAD_REQUEST,
            ),
            NotAcceptable(accept) => (
                StatusCode::NOT_ACCEPTABLE,
                vec![Issue::general(
                    IssueType::NotSupported,
                    format!("cannot answer in {accept}: this server speaks application/fhir+json and application/fhir+xml"),
                )],
                NhsErrorCode::BAD_REQUEST,
            ),
            Unavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![Issue::general(IssueType::Transient, why)],
                NhsErrorCode::SERVICE_UNAVAILABLE,
            ),
            Timeout(secs) => (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![Issue::general(
                    IssueType::Transient,
                    format!(
                        "the request took longer than {secs} s; it is safe to resend with the same referral id"
                    ),
                )],
                NhsErrorCode::SERVICE_UNAVAILABLE,
            ),
            Store(StoreError::Conflict {
                namespace,
                key,
                existing_id,
            }) => (
                StatusCode::CONFLICT,
                vec![Issue {
                    severity: crate::fhir::Severity::Error,
                    code: IssueType::Duplicate,
                    expression: None,
                    diagnostics: {
                        let (what, stored_as) = if namespace.starts_with("fit-note:") {
                            ("fit note", "Observation")
                        } else {
                            ("referral", "ServiceRequest")
                        };
                        format!(
                            "{what} id '{key}' from {namespace} was already received with different content (stored as {stored_as}/{existing_id}); a {what} id is write-once: use a new id for a new {what}"
                        )
                    },
                }],
                NhsErrorCode::CONFLICT,
            ),
            Store(StoreError::VersionConflict { resource, current, expected }) => (
                StatusCode::PRECONDITION_FAILED,
                vec![Issue::general(IssueType::Conflict, format!("{resource} has changed: it is at version {current}, not {expected}; read it again and re-apply the change"))],
                NhsErrorCode::CONFLICT,
            ),
            Store(StoreError::Refused(decision)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                vec![Issue::general(IssueType::BusinessRule, format!("the person's consent does not allow this: {}", decision.reason))],
                NhsErrorCode::UNPROCESSABLE_ENTITY,
            ),
            Store(StoreError::Rejected(issues)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                issues.into_vec(),
                NhsErrorCode::UNPROCESSABLE_ENTITY,
            ),
            Store(StoreError::NotFound(what)) => (
                StatusCode::NOT_FOUND,
                vec![Issue::general(IssueType::NotFound, format!("{what} is not known to this gateway"))],
                NhsErrorCode::NOT_FOUND,
            ),
            Store(e @ StoreError::Unavailable(_)) => {
                tracing::error!(error = %e, "store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    vec![Issue::general(
                        IssueType::Transient,
                        "storage is unavailable; nothing was stored and it is safe to resend",
                    )],
                    NhsErrorCode::SERVICE_UNAVAILABLE,
                )
            }
            Store(e) => {
                tracing::error!(error = %e, "store error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    vec![Issue::general(
                        IssueType::Exception,
                        "internal storage error",
                    )],
                    NhsErrorCode::SERVER_ERROR,
                )
            }
            Internal(message) => {
                tracing::error!(error = %message, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    vec![Issue::general(IssueType::Exception, "internal error")],
                    NhsErrorCode::SERVER_ERROR,
                )
            }
        }
    }
}

impl From<crate::access::AccessError> for ApiError {
    fn from(e: crate::access::AccessError) -> Self {
        use crate::access::AccessError as A;
        match e {
            A::NotFound(what) => ApiError::NotFound(format!("{what} is not known to this gateway")),
            A::Forbidden(why) => ApiError::Forbidden(why),
            A::ConsentDenied(why) => ApiError::ConsentDenied(why),
            A::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<crate::app::reports::ReportsError> for ApiError {
    fn from(e: crate::app::reports::ReportsError) -> Self {
        use crate::app::reports::ReportsError;
        match e {
            ReportsError::Forbidden(why) => ApiError::Forbidden(why),
            ReportsError::UnknownReport(_) => ApiError::NotFound(e.to_string()),
            ReportsError::BadFilter(issues) => ApiError::BadRequest(issues),
            ReportsError::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<crate::app::quarantine::QuarantineError> for ApiError {
    fn from(e: crate::app::quarantine::QuarantineError) -> Self {
        use crate::app::quarantine::QuarantineError as E;
        match e {
            E::NotReviewer => ApiError::Forbidden(e.to_string()),
            E::UnknownMessage => ApiError::NotFound(e.to_string()),
            E::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<crate::app::submissions::SubmitError> for ApiError {
    fn from(e: crate::app::submissions::SubmitError) -> Self {
        use crate::app::submissions::SubmitError as E;
        match e {
            E::Malformed(issues) => ApiError::BadRequest(issues),
            E::Invalid(issues) => ApiError::Invalid(issues),
            E::NotTheSender { .. } | E::RealPersonFromTestTenant { .. } => {
                ApiError::Forbidden(e.to_string())
            }
            E::ConsentRefused(issues) => ApiError::ConsentRefused(issues),
            E::UnknownReferral(_) => ApiError::NotFound(e.to_string()),
            E::NotReadBack(_) => ApiError::Internal(e.to_string()),
            E::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<crate::app::BadVersionTag> for ApiError {
    fn from(e: crate::app::BadVersionTag) -> Self {
        ApiError::BadRequest(Issue::general(IssueType::Value, e.to_string()).into())
    }
}

impl From<crate::app::fit_notes::SummaryError> for ApiError {
    fn from(e: crate::app::fit_notes::SummaryError) -> Self {
        use crate::app::fit_notes::SummaryError as E;
        match e {
            E::NoneYouMaySee => ApiError::NotFound(e.to_string()),
            E::Access(a) => a.into(),
            E::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<crate::app::fit_notes::CorrectionError> for ApiError {
    fn from(e: crate::app::fit_notes::CorrectionError) -> Self {
        use crate::app::fit_notes::CorrectionError as E;
        match e {
            E::NotAFitNote(_) | E::NotThePractice => ApiError::Forbidden(e.to_string()),
            E::Invalid(issues) => ApiError::Invalid(issues),
            E::BadVersionTag(t) => t.into(),
            E::Unversioned | E::NotReturned => ApiError::Internal(e.to_string()),
            E::Access(a) => a.into(),
            E::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<crate::app::fit_notes::PromptAnswerError> for ApiError {
    fn from(e: crate::app::fit_notes::PromptAnswerError) -> Self {
        use crate::app::fit_notes::PromptAnswerError as E;
        match e {
            E::NotAPrompt | E::NotThePractice => ApiError::Forbidden(e.to_string()),
            E::Invalid(issues) => ApiError::Invalid(issues),
            E::BadVersionTag(t) => t.into(),
            E::Unversioned | E::NotReturned => ApiError::Internal(e.to_string()),
            E::Access(a) => a.into(),
            E::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<crate::app::consents::ConsentError> for ApiError {
    fn from(e: crate::app::consents::ConsentError) -> Self {
        use crate::app::consents::ConsentError as E;
        match e {
            E::Invalid(issues) => ApiError::Invalid(issues),
            E::IdMismatch(_) => ApiError::BadRequest(
                Issue::error(IssueType::Invalid, "Consent.id", e.to_string()).into(),
            ),
            E::UnknownConsent(_) => ApiError::NotFound(e.to_string()),
            E::BadVersionTag(t) => t.into(),
            E::Unversioned(_) | E::NotReturned(_) => ApiError::Internal(e.to_string()),
            E::NotAService => ApiError::Forbidden(e.to_string()),
            E::Access(a) => a.into(),
            E::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<crate::app::overrides::OverrideError> for ApiError {
    fn from(e: crate::app::overrides::OverrideError) -> Self {
        use crate::app::overrides::OverrideError as E;
        use crate::consent::overrides::StepError;
        match e {
            E::NotInformationGovernance => ApiError::Forbidden(e.to_string()),
            E::Invalid(issues) => ApiError::Invalid(issues),
            E::UnknownState(_) => ApiError::BadRequest(
                Issue::error(IssueType::CodeInvalid, "state", e.to_string()).into(),
            ),
            E::UnknownOverride(_) => ApiError::NotFound(e.to_string()),
            E::Step(step @ (StepError::NotInformationGovernance | StepError::OwnRequest)) => {
                ApiError::Forbidden(step.to_string())
            }
            E::Step(StepError::WrongState(why)) => {
                ApiError::Invalid(Issue::general(IssueType::BusinessRule, why).into())
            }
            E::Access(a) => a.into(),
            E::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<crate::app::workflow::WorkflowError> for ApiError {
    fn from(e: crate::app::workflow::WorkflowError) -> Self {
        use crate::app::workflow::WorkflowError as E;
        match e {
            E::Invalid(issues) => ApiError::Invalid(issues),
            E::NotAReferral(_) | E::UnknownLetter(_) => ApiError::NotFound(e.to_string()),
            E::NotTheService | E::NoLetters => ApiError::Forbidden(e.to_string()),
            E::UnknownLetterState(issues) => ApiError::BadRequest(issues),
            E::Access(a) => a.into(),
            E::Store(s) => ApiError::Store(s),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let challenge = match &self {
            ApiError::Unauthorized(crate::auth::TokenError::Missing) => {
                Some("Bearer realm=\"whg\"".to_string())
            }
            ApiError::Unauthorized(_) => {
                Some("Bearer realm=\"whg\", error=\"invalid_token\"".to_string())
            }
            ApiError::MissingScope(_) => {
                Some("Bearer realm=\"whg\", error=\"insufficient_scope\"".to_string())
            }
            _ => None,
        };
        let retry_after = match &self {
            ApiError::TooManyRequests(wait) => Some(*wait),
            _ => None,
        };
        let (status, issues, code) = self.parts();
        let mut response = fhir_response(status, &operation_outcome(&issues, Some(code)));
        if let Some(wait) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        response
    }
}

/// A FHIR JSON response.
pub fn fhir_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

pub use crate::app::Return;

/// What a client asked to get back from a create, from `Prefer: return=…` (RFC 7240).
pub fn return_preference(headers: &axum::http::HeaderMap) -> Return {
    let prefer = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if prefer.contains("return=representation") {
        Return::Representation
    } else if prefer.contains("return=minimal") {
        Return::Minimal
    } else {
        Return::OperationOutcome
    }
}

/// What a client asked to get back from a FHIR create or update (R4 http.html#ins-return:
/// `Prefer: return=minimal | representation | OperationOutcome`): the resource unless it asked
/// for less or for an OperationOutcome.
pub fn resource_preference(headers: &axum::http::HeaderMap) -> Return {
    let asked = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|p| p.trim().strip_prefix("return="))
        .map(|v| v.trim().trim_matches('"'))
        .next();
    match asked {
        Some("minimal") => Return::Minimal,
        Some("OperationOutcome") => Return::OperationOutcome,
        _ => Return::Representation,
    }
}

/// A created or updated resource's answer, with the headers R4 asks of it
/// (http://hl7.org/fhir/R4/http.html#create, #update): `ETag: W/"{versionId}"` and
/// `Last-Modified` from its `meta`, and for a create `Location: [base]/fhir/[type]/[id]/_history/[vid]`;
/// the body as `wanted` ([`resource_preference`]).
pub fn versioned_response(
    status: StatusCode,
    resource: &serde_json::Value,
    base: &str,
    wanted: Return,
) -> Response {
    let mut response = match wanted {
        Return::Representation => fhir_response(status, resource),
        Return::Minimal => status.into_response(),
        Return::OperationOutcome => {
            let what = format!(
                "{}/{} {} as version {}",
                resource["resourceType"].as_str().unwrap_or_default(),
                resource["id"].as_str().unwrap_or_default(),
                if status == StatusCode::CREATED {
                    "created"
                } else {
                    "stored"
                },
                resource
                    .pointer("/meta/versionId")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("1"),
            );
            fhir_response(
                status,
                &crate::fhir::operation_outcome(&[Issue::information(what)], None::<NhsErrorCode>),
            )
        }
    };
    let version = resource
        .pointer("/meta/versionId")
        .and_then(serde_json::Value::as_str);
    if let Some(v) = version {
        set_etag(&mut response, v);
    }
    if let Some(modified) = resource
        .pointer("/meta/lastUpdated")
        .and_then(serde_json::Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        && let Ok(value) = HeaderValue::from_str(
            &modified
                .with_timezone(&chrono::Utc)
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string(),
        )
    {
        response
            .headers_mut()
            .insert(axum::http::header::LAST_MODIFIED, value);
    }
    if status == StatusCode::CREATED
        && let (Some(kind), Some(id), Some(v)) = (
            resource["resourceType"].as_str(),
            resource["id"].as_str(),
            version,
        )
    {
        set_location(
            &mut response,
            &format!("{base}/fhir/{kind}/{id}/_history/{v}"),
        );
    }
    response
}

/// Sets the `ETag` header to the weak tag of `version` (`W/"n"`, what `If-Match` takes back).
pub fn set_etag(response: &mut Response, version: &str) {
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        response
            .headers_mut()
            .insert(axum::http::header::ETAG, etag);
    }
}

/// Sets the `Location` header to `url` (left out if `url` is not a valid header value).
pub fn set_location(response: &mut Response, url: &str) {
    if let Ok(v) = HeaderValue::from_str(url) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, v);
    }
}
