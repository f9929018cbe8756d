//! The JSON body extractor: content type (415), size limit (413) and well-formedness (400),
//! each answered with an OperationOutcome.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::header;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;

/// A request body that is JSON with an accepted content type, kept both raw and parsed.
pub struct JsonBody {
    pub bytes: Bytes,
    pub value: Value,
}

impl JsonBody {
    /// The body as `T` (`what` names it for the caller, e.g. "a triage"), or a 422 whose issue
    /// names the field that could not be read ([`crate::app::read_body`]).
    pub fn parse<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, ApiError> {
        crate::app::read_body(&self.value, what).map_err(|issue| ApiError::Invalid(issue.into()))
    }
}

/// A request's Content-Type, if it sent a readable one.
fn content_type(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// The media type of a Content-Type, without its parameters, in lower case.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The FHIR formats a body may come in (R4 http.html#mime).
enum BodyFormat {
    Json,
    Xml,
}

fn body_format(content_type: &str) -> Option<BodyFormat> {
    match essence(content_type).as_str() {
        "application/json" | "application/fhir+json" => Some(BodyFormat::Json),
        "application/fhir+xml" | "application/xml" => Some(BodyFormat::Xml),
        _ => None,
    }
}

/// The id a PUT body must carry: the one in the URL (R4 update: a mismatch is a 400).
pub fn require_id(body: &JsonBody, resource_type: &str, id: &str) -> Result<(), ApiError> {
    if body.value["id"].as_str() == Some(id) {
        return Ok(());
    }
    Err(ApiError::BadRequest(
        crate::fhir::Issue::error(
            crate::fhir::IssueType::Invalid,
            format!("{resource_type}.id"),
            format!("the {resource_type}'s id must be '{id}', the id in the URL"),
        )
        .into(),
    ))
}

impl<S> FromRequest<S> for JsonBody
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = AppState::from_ref(state).config.limits.max_body_bytes;
        let content_type = content_type(&req).unwrap_or("(none)").to_string();
        // XML is a FHIR syntax: the FHIR API takes it, the practice JSON formats (/api/v1) do not.
        let fhir = req.uri().path().starts_with("/fhir/");
        let format = match body_format(&content_type) {
            Some(BodyFormat::Xml) if !fhir => None,
            format => format,
        };
        let Some(format) = format else {
            return Err(ApiError::UnsupportedMediaType(
                content_type,
                if fhir {
                    "application/fhir+json, application/json or application/fhir+xml"
                } else {
                    "application/json or application/fhir+json"
                },
            ));
        };
        let mut bytes = read_limited(req, limit).await?;
        // FHIR XML is read into the JSON form every handler takes: one model, two syntaxes.
        if let BodyFormat::Xml = format {
            let depth = AppState::from_ref(state).config.limits.max_json_depth;
            crate::fhir::resource::xml_precheck(&bytes, depth).map_err(ApiError::MalformedXml)?;
            let value =
                crate::fhir::resource::xml_to_json(&bytes).map_err(ApiError::MalformedXml)?;
            bytes = Bytes::from(serde_json::to_vec(&value).expect("a JSON value serialises"));
        }
        // Deep nesting costs every recursive walk of the document (and serde_json stops at 128
        // levels anyway); no payload of the gateway's formats nests more than about 15.
        let depth = AppState::from_ref(state).config.limits.max_json_depth;
        if crate::fhir::resource::nesting_exceeds(&bytes, depth) {
            return Err(ApiError::MalformedJson(format!(
                "the JSON nests deeper than {depth} levels"
            )));
        }
        let value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        Ok(JsonBody { bytes, value })
    }
}

/// The body, at most `limit` bytes (413 beyond, said or found).
async fn read_limited(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::MalformedJson(format!("the body could not be read: {e}"))
            }
        })
}

/// A form-encoded body (`POST [type]/_search`), within the configured size limit: its
/// `name=value` pairs. An empty body needs no content type.
pub struct FormBody(pub Vec<(String, String)>);

impl<S> FromRequest<S> for FormBody
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = AppState::from_ref(state).config.limits.max_body_bytes;
        let content_type = content_type(&req).unwrap_or_default().to_string();
        let form = essence(&content_type) == "application/x-www-form-urlencoded";
        let bytes = read_limited(req, limit).await?;
        if !form && !bytes.is_empty() {
            return Err(ApiError::UnsupportedMediaType(
                content_type,
                "the search parameters as application/x-www-form-urlencoded",
            ));
        }
        Ok(FormBody(
            form_urlencoded::parse(&bytes).into_owned().collect(),
        ))
    }
}

/// Checks that `body` is a FHIR R4 resource of `resource_type` that fhirbolt reads strictly and
/// that keeps the FHIR JSON rules (no empty arrays, objects or strings): 400 with each breach
/// otherwise.
pub fn require_resource(body: &JsonBody, resource_type: &str) -> Result<(), ApiError> {
    use crate::fhir::resource::{json_rule_violations, parse_strict};
    use crate::fhir::{Issue, IssueType, Issues};
    if body.value["resourceType"] != resource_type {
        return Err(ApiError::BadRequest(
            Issue::error(
                IssueType::Invalid,
                "resourceType",
                format!("the body must be a FHIR {resource_type}"),
            )
            .into(),
        ));
    }
    let mut breaches = Vec::new();
    json_rule_violations(&body.value, resource_type, &mut breaches);
    if !breaches.is_empty() {
        let mut issues = Issues::new();
        for (at, why) in breaches {
            issues.error(IssueType::Structure, at, why);
        }
        return Err(ApiError::BadRequest(issues));
    }
    parse_strict(&body.bytes).map_err(|e| {
        ApiError::BadRequest(
            Issue::general(
                IssueType::Structure,
                format!("not a valid FHIR R4 {resource_type}: {e}"),
            )
            .into(),
        )
    })
}

/// A query string the route's parameters could not be read from, as a 400 naming the parameter
/// when serde says which (an unknown one, the usual mistake) and what the route takes.
pub fn query_error(e: axum::extract::rejection::QueryRejection, takes: &str) -> ApiError {
    use crate::fhir::{Issue, IssueType};
    let text = e.body_text();
    let why = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    // axum reads the query with serde_path_to_error: "name: unknown field `name`, expected …".
    let unknown = why
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split('`').next());
    let issue = match unknown {
        Some(name) => Issue::error(
            IssueType::NotSupported,
            name,
            format!("this route takes no parameter '{name}': it takes {takes}"),
        ),
        None => Issue::general(
            IssueType::Value,
            format!("the query cannot be read ({why}): this route takes {takes}"),
        ),
    };
    ApiError::BadRequest(issue.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let json = |t| matches!(body_format(t), Some(BodyFormat::Json));
        let xml = |t| matches!(body_format(t), Some(BodyFormat::Xml));
        assert!(json("application/fhir+json"));
        assert!(json("application/fhir+json; fhirVersion=4.0"));
        assert!(json("Application/JSON; charset=utf-8"));
        // R4 http.html#mime: application/fhir+xml is FHIR's XML type.
        assert!(xml("application/fhir+xml; charset=utf-8"));
        assert!(xml("application/xml"));
        assert!(body_format("text/plain").is_none());
        assert!(body_format("(none)").is_none());
    }
}
