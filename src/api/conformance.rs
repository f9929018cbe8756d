//! The gateway's conformance resources and `$validate`: `GET /fhir/StructureDefinition/{id}`,
//! `/ValueSet/{id}`, `/CodeSystem/{id}` (and each type searched by `url`), served as `profiles/`
//! publishes them, without a token (they hold no one's data, like the CapabilityStatement); and
//! `POST /fhir/{type}/$validate`, intake's checks with nothing stored.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::auth::require_scope;
use super::body::JsonBody;
use super::error::{ApiError, fhir_response, set_etag};
use crate::app::validation;
use crate::auth::{Principal, scope};
use crate::fhir::conformance;
use crate::fhir::{Issue, IssueType, NhsErrorCode, operation_outcome};

/// `(type, rest)` of a `/fhir/{type}/{rest}` path.
fn split(uri: &Uri) -> (&str, &str) {
    let path = uri.path().trim_start_matches("/fhir/");
    path.split_once('/').unwrap_or((path, ""))
}

/// `GET /fhir/{StructureDefinition,ValueSet,CodeSystem}/{id}`.
pub async fn read(uri: Uri) -> Result<Response, ApiError> {
    let (resource_type, id) = split(&uri);
    let resource = conformance::by_id(resource_type, id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "{resource_type}/{id} is not published by this gateway"
        ))
    })?;
    let mut response = fhir_response(StatusCode::OK, resource);
    if let Some(version) = resource["version"].as_str() {
        set_etag(&mut response, version);
    }
    Ok(response)
}

/// `GET /fhir/{StructureDefinition,ValueSet,CodeSystem}?url=…`: every published one of the
/// type, or those with that canonical URL (`url|version` for one version).
pub async fn search(
    State(app): State<AppState>,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (resource_type, _) = split(&uri);
    let mut url = None;
    for (name, value) in form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "url" => url = Some(value.into_owned()),
            "_count" | "_format" => {}
            other => {
                return Err(ApiError::BadRequest(
                    Issue::error(
                        IssueType::NotSupported,
                        format!("{resource_type}?{other}"),
                        format!("{resource_type} is searched by url (url=<canonical> or url=<canonical>|<version>) only"),
                    )
                    .into(),
                ));
            }
        }
    }
    let matches: Vec<&Value> = match &url {
        Some(u) => conformance::by_url(resource_type, u).collect(),
        None => conformance::all(resource_type).collect(),
    };
    let base = format!("{}{}", app.config.base_url(), uri.path());
    let entries: Vec<Value> = matches
        .iter()
        .map(|r| {
            json!({
                "fullUrl": format!("{base}/{}", r["id"].as_str().unwrap_or_default()),
                "resource": r,
                "search": { "mode": "match" },
            })
        })
        .collect();
    let mut bundle =
        json!({ "resourceType": "Bundle", "type": "searchset", "total": entries.len() });
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    Ok(fhir_response(StatusCode::OK, &bundle))
}

/// `POST /fhir/{type}/$validate` (R4 `Resource/$validate`): the resource as the body, or a
/// Parameters with `resource` (and optionally `profile`). Answers 200 with an OperationOutcome
/// that lists every problem, or says it is valid: R4, "the outcome is returned whether or not
/// the resource is valid".
pub async fn validate(
    State(app): State<AppState>,
    principal: Principal,
    uri: Uri,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let (resource_type, _) = split(&uri);
    // The checks are intake's, so a caller needs the scope intake would ask of it.
    if !principal.role.reads_records() {
        return Err(ApiError::Forbidden(format!(
            "{} clients send nothing; $validate is for senders",
            principal.role.as_str()
        )));
    }
    let needed = match resource_type {
        "Bundle" => scope::REFERRAL_CREATE.to_string(),
        "Observation" => scope::FIT_NOTE_CREATE.to_string(),
        "Consent" => scope::CONSENT_CREATE.to_string(),
        other => scope::read(other),
    };
    require_scope(&principal, &needed)?;
    let mut notes = Vec::new();
    let (resource, profile) = if body.value["resourceType"] == "Parameters"
        && resource_type != "Parameters"
    {
        let parameters = body.value["parameter"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let named = |name: &str| parameters.iter().find(|p| p["name"] == name).cloned();
        let resource = named("resource")
            .map(|p| p["resource"].clone())
            .ok_or_else(|| ApiError::Invalid(Issue::error(IssueType::Required, "Parameters.parameter", "send the resource to validate as the parameter 'resource' (or as the body itself)").into()))?;
        let profile = named("profile").and_then(|p| {
            p["valueUri"]
                .as_str()
                .or(p["valueCanonical"].as_str())
                .map(str::to_string)
        });
        // R4 $validate's mode: the gateway checks what a create would be checked against.
        if let Some(mode) = named("mode").and_then(|p| p["valueCode"].as_str().map(str::to_string))
            && mode != "create"
        {
            return Err(ApiError::Invalid(Issue::error(IssueType::NotSupported, "Parameters.parameter", format!("mode '{mode}' is not supported: the gateway validates a resource as a create (mode create, or no mode)")).into()));
        }
        notes.push(Issue::information("the resource was read from the Parameters: checks of its raw JSON text (a key given twice, say) apply when it is posted as the body itself"));
        (resource, profile)
    } else {
        (body.value.clone(), None)
    };
    let bytes = if resource == body.value {
        body.bytes.to_vec()
    } else {
        serde_json::to_vec(&resource).unwrap_or_default()
    };
    let issues = validation::validate(
        &app.config,
        &principal,
        resource_type,
        &resource,
        &bytes,
        profile.as_deref(),
    );
    let valid = format!(
        "valid: {resource_type} passes the gateway's checks{}",
        validation::profile_for(resource_type)
            .map(|p| format!(" for {p}"))
            .unwrap_or_else(
                || " (base FHIR R4: the gateway has no profile of its own for it)".into()
            )
    );
    Ok(validation_answer(issues, valid, notes))
}

/// A `$validate` answer: 200 with every issue found, or one information issue saying it is
/// valid (`valid`), then any `notes`.
pub(super) fn validation_answer(
    issues: crate::fhir::Issues,
    valid: String,
    notes: Vec<Issue>,
) -> Response {
    let mut listed: Vec<Issue> = if issues.is_empty() {
        vec![Issue::information(valid)]
    } else {
        issues.into_vec()
    };
    listed.extend(notes);
    fhir_response(
        StatusCode::OK,
        &operation_outcome(&listed, None::<NhsErrorCode>),
    )
}

/// The OpenAPI 3.1 document of the routes outside `/fhir` (`profiles/openapi.json`, generated
/// by tools/gen_openapi.py; the tests check every exchange they make against it).
const OPENAPI: &str = include_str!("../../profiles/openapi.json");

/// `GET /api/v1/openapi.json`: the API contract, without a token (it holds no one's data).
pub async fn openapi() -> Response {
    let mut response = Response::new(axum::body::Body::from(OPENAPI));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// `POST /api/v1/referrals/$validate` and `/api/v1/fit-notes/$validate`: a practice-format body
/// checked as intake would check it from this caller (the format's rules, and the sender's: its
/// own ODS code, a test client's synthetic people), storing nothing.
pub async fn validate_practice_referral(
    app: State<AppState>,
    principal: Principal,
    body: JsonBody,
) -> Result<Response, ApiError> {
    validate_practice(app, principal, validation::PracticeFormat::Referral, body)
}

/// `POST /api/v1/fit-notes/$validate`: as [`validate_practice_referral`], for a fit note.
pub async fn validate_practice_fit_note(
    app: State<AppState>,
    principal: Principal,
    body: JsonBody,
) -> Result<Response, ApiError> {
    validate_practice(app, principal, validation::PracticeFormat::FitNote, body)
}

fn validate_practice(
    State(app): State<AppState>,
    principal: Principal,
    format: validation::PracticeFormat,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let (needed, what) = match format {
        validation::PracticeFormat::Referral => (scope::REFERRAL_CREATE, "referral"),
        validation::PracticeFormat::FitNote => (scope::FIT_NOTE_CREATE, "fit note"),
    };
    require_scope(&principal, needed)?;
    let issues = validation::validate_practice(&app.config, &principal, format, &body.value);
    Ok(validation_answer(
        issues,
        format!(
            "valid: the {what} passes the gateway's checks for its sender and, as far as it says, its service's criteria (consent and the person's history are weighed when it is sent)"
        ),
        Vec::new(),
    ))
}
