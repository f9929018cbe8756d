//! FHIR read, search and capability routes.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{request_id, require_scope};
use super::body::FormBody;
use super::error::{ApiError, fhir_response, set_etag};
use crate::app::{Caller, records};
use crate::auth::{Principal, scope};
use crate::fhir::search::{self, is_fhir_id, supported_params};
use crate::fhir::systems::{self, profile};
use crate::fhir::{Issue, IssueType, NhsErrorCode, operation_outcome};

/// Resource types the gateway writes; others carried in BaRS messages are readable too (a
/// HealthcareService by an id that is not a configured service's: `super::directory::read`).
const STORED_TYPES: &[&str] = &[
    "ServiceRequest",
    "Patient",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Condition",
    "Observation",
    "Consent",
    "Provenance",
    "Encounter",
    "CarePlan",
    "AuditEvent",
    "Task",
    "Communication",
    "Composition",
    "DocumentReference",
];

fn is_resource_type_name(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.bytes().all(|b| b.is_ascii_alphabetic())
}

/// `GET /fhir/{type}/{id}`
pub async fn read(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((resource_type, id)) =
        path.map_err(|e| ApiError::NotFound(format!("no such resource: {e}")))?;
    read_resource(&app, &principal, &headers, resource_type, id).await
}

/// `GET /fhir/{type}/{id}/_history/{vid}`: one version of a resource (FHIR vread). A person's
/// details are read only in the versions the caller's own records came with.
pub async fn vread(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((resource_type, id, vid)) =
        path.map_err(|e| ApiError::NotFound(format!("no such resource: {e}")))?;
    let version = vid.parse::<i64>().ok().filter(|v| *v > 0);
    let (true, true, Some(version)) = (
        is_resource_type_name(&resource_type),
        is_fhir_id(&id),
        version,
    ) else {
        return Err(ApiError::NotFound(format!(
            "there is no resource at {resource_type}/{id}/_history/{vid}"
        )));
    };
    require_scope(&principal, &scope::read(&resource_type))?;
    let caller = Caller::new(&principal, request_id(&headers));
    let resource =
        records::read_version(&*app.store, &caller, &resource_type, &id, version).await?;
    let mut response = fhir_response(StatusCode::OK, &resource);
    set_etag(&mut response, &version.to_string());
    Ok(response)
}

/// `GET /fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{number}`: the person by
/// NHS number, if the caller may see them (a searchset of one or none; a person the caller may
/// not see is not found, never refused, so the answer reveals nothing). Patients are searched by
/// NHS number only.
pub async fn search_patients(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    find_patient(&app, &principal, &headers, query_pairs(query.as_deref())).await
}

/// `POST /fhir/Patient/_search`: as [`search_patients`], the NHS number in a form body, out of
/// the URL.
pub async fn search_patients_by_post(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
    FormBody(form): FormBody,
) -> Result<Response, ApiError> {
    let mut pairs = query_pairs(query.as_deref());
    pairs.extend(form);
    find_patient(&app, &principal, &headers, pairs).await
}

async fn find_patient(
    app: &AppState,
    principal: &Principal,
    headers: &axum::http::HeaderMap,
    pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    require_scope(principal, &scope::search("Patient"))?;
    let refuse = |message: String| {
        ApiError::BadRequest(
            Issue::error(IssueType::NotSupported, "Patient?identifier", message).into(),
        )
    };
    let mut number = None;
    for (name, value) in &pairs {
        match name.as_str() {
            "identifier" if number.is_none() => {
                let Some(n) = value.strip_prefix(&format!("{}|", systems::NHS_NUMBER)) else {
                    return Err(refuse(format!(
                        "Patient is searched by NHS number: identifier={}|<number>",
                        systems::NHS_NUMBER
                    )));
                };
                let n = crate::fhir::identifiers::nhs_number(n).map_err(|e| {
                    ApiError::BadRequest(
                        Issue::error(IssueType::Value, "Patient?identifier", e.to_string()).into(),
                    )
                })?;
                number = Some(n);
            }
            "_count" | "_format" => {}
            other => {
                return Err(refuse(format!(
                    "'{other}' is not a Patient search parameter here: Patient is searched by identifier (NHS number) only"
                )));
            }
        }
    }
    let Some(number) = number else {
        return Err(refuse(format!(
            "Patient is searched by NHS number: identifier={}|<number>",
            systems::NHS_NUMBER
        )));
    };
    let caller = Caller::new(principal, request_id(headers));
    let found = records::patient_by_nhs_number(&*app.store, &caller, &number).await?;
    let base = app.config.base_url();
    // The self link names the search endpoint, not the NHS number.
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": u64::from(found.is_some()),
        "link": [{ "relation": "self", "url": format!("{base}/fhir/Patient") }],
    });
    if let Some(person) = found {
        let id = person["id"].as_str().unwrap_or_default().to_string();
        bundle["entry"] = json!([{ "fullUrl": format!("{base}/fhir/Patient/{id}"), "resource": person, "search": { "mode": "match" } }]);
    }
    Ok(fhir_response(StatusCode::OK, &bundle))
}

/// `GET /fhir/{type}/{id}/_history` (R4 history, http://hl7.org/fhir/R4/http.html#history):
/// a Bundle of type `history`, newest first, of the versions the caller may read, each entry
/// with the `request` that made it and its `response` (R4: "each entry SHALL contain request").
pub async fn history(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let path = uri.path().trim_start_matches("/fhir/");
    let (resource_type, id) = path
        .strip_suffix("/_history")
        .and_then(|p| p.split_once('/'))
        .unwrap_or(("", ""));
    if !(is_resource_type_name(resource_type) && is_fhir_id(id)) {
        return Err(ApiError::NotFound(format!(
            "there is no resource at {path}"
        )));
    }
    require_scope(&principal, &scope::read(resource_type))?;
    let caller = Caller::new(&principal, request_id(&headers));
    let versions = records::history(&*app.store, &caller, resource_type, id).await?;
    let base = app.config.base_url();
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| {
            let version = v["meta"]["versionId"].as_str().unwrap_or("1");
            let (method, url, status) = if version == "1" {
                ("POST", resource_type.to_string(), "201 Created")
            } else {
                ("PUT", format!("{resource_type}/{id}"), "200 OK")
            };
            let mut response = json!({ "status": status, "etag": format!("W/\"{version}\"") });
            if let Some(t) = v["meta"]["lastUpdated"].as_str() {
                response["lastModified"] = json!(t);
            }
            json!({
                "fullUrl": format!("{base}/fhir/{resource_type}/{id}"),
                "resource": v,
                "request": { "method": method, "url": url },
                "response": response,
            })
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": entries.len(),
        "link": [{ "relation": "self", "url": format!("{base}/fhir/{resource_type}/{id}/_history") }],
    });
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    Ok(fhir_response(StatusCode::OK, &bundle))
}

/// `GET /fhir/Consent/{id}` (the Consent routes also take PUT).
pub async fn read_consent(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such resource: {e}")))?;
    read_resource(&app, &principal, &headers, "Consent".into(), id).await
}

pub(super) async fn read_resource(
    app: &AppState,
    principal: &Principal,
    headers: &axum::http::HeaderMap,
    resource_type: String,
    id: String,
) -> Result<Response, ApiError> {
    if !is_resource_type_name(&resource_type) || !is_fhir_id(&id) {
        return Err(ApiError::NotFound(format!(
            "there is no resource at {resource_type}/{id}"
        )));
    }
    require_scope(principal, &scope::read(&resource_type))?;
    let caller = Caller::new(principal, request_id(headers));
    let resource = records::read(&*app.store, &caller, &resource_type, &id).await?;
    let mut response = fhir_response(StatusCode::OK, &resource);
    if let Some(v) = resource.pointer("/meta/versionId").and_then(Value::as_str) {
        set_etag(&mut response, v);
    }
    Ok(response)
}

/// `GET /fhir/Task/{id}` (the Task route also takes PUT).
pub async fn read_task(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such resource: {e}")))?;
    read_resource(&app, &principal, &headers, "Task".into(), id).await
}

/// `GET /fhir/Observation/{id}` (the Observation instance route also takes PUT).
pub async fn read_observation(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such resource: {e}")))?;
    read_resource(&app, &principal, &headers, "Observation".into(), id).await
}

/// `GET /fhir/Observation?…` (the Observation type route also takes POST).
pub async fn search_observations(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    search_type(
        &app,
        &principal,
        &headers,
        "Observation".into(),
        query_pairs(query.as_deref()),
        Via::Get,
    )
    .await
}

/// `GET /fhir/{type}?…`
pub async fn search(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let Path(resource_type) =
        path.map_err(|e| ApiError::NotFound(format!("no such resource type: {e}")))?;
    search_type(
        &app,
        &principal,
        &headers,
        resource_type,
        query_pairs(query.as_deref()),
        Via::Get,
    )
    .await
}

/// `GET /fhir/Consent?…` (the Consent type route also takes POST).
pub async fn search_consents(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    search_type(
        &app,
        &principal,
        &headers,
        "Consent".into(),
        query_pairs(query.as_deref()),
        Via::Get,
    )
    .await
}

/// `POST /fhir/{type}/_search`: the same search with its parameters in an
/// `application/x-www-form-urlencoded` body (and any in the URL), R4 search: "the server
/// SHALL also support POST based searches" with the parameters "in the body of the request",
/// so they stay out of URLs and their logs.
pub async fn search_by_post(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    FormBody(form): FormBody,
) -> Result<Response, ApiError> {
    let Path(resource_type) =
        path.map_err(|e| ApiError::NotFound(format!("no such resource type: {e}")))?;
    let mut pairs = query_pairs(query.as_deref());
    pairs.extend(form);
    search_type(&app, &principal, &headers, resource_type, pairs, Via::Post).await
}

/// `POST /fhir/{Consent,Task,Observation}/_search`: as [`search_by_post`], the type from the
/// path itself.
pub async fn search_by_post_typed(
    State(app): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    FormBody(form): FormBody,
) -> Result<Response, ApiError> {
    let resource_type = uri
        .path()
        .trim_start_matches("/fhir/")
        .trim_end_matches("/_search")
        .to_string();
    let mut pairs = query_pairs(uri.query());
    pairs.extend(form);
    search_type(&app, &principal, &headers, resource_type, pairs, Via::Post).await
}

/// How a search was asked: its links repeat a GET's parameters, but never a POST's, which were
/// sent in the body to keep them (NHS numbers among them) out of URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Get,
    Post,
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn search_type(
    app: &AppState,
    principal: &Principal,
    headers: &axum::http::HeaderMap,
    resource_type: String,
    pairs: Vec<(String, String)>,
    via: Via,
) -> Result<Response, ApiError> {
    if supported_params(&resource_type).is_empty() {
        return Err(ApiError::BadRequest(
            Issue::general(IssueType::NotSupported, format!("search is not supported for '{resource_type}': read it by id (GET /fhir/{resource_type}/{{id}}), or see /fhir/metadata")).into(),
        ));
    }
    let handling = search::Handling::preferred(
        headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let search::ParsedSearch {
        request,
        presentation,
        ignored,
    } = search::parse_with(&resource_type, &pairs, handling).map_err(ApiError::BadRequest)?;
    require_scope(principal, &scope::search(&resource_type))?;
    let caller = Caller::new(principal, request_id(headers));
    let page = records::search(&*app.store, &caller, request.clone()).await?;

    let base = app.config.base_url();
    let link = |offset: u32| -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        // The links carry the parameters the search used (R4: the self link says what was
        // applied), so an ignored one is not in them.
        for (k, v) in pairs
            .iter()
            .filter(|(k, _)| k != "_count" && k != "_offset" && !ignored.contains(k))
        {
            q.append_pair(k, v);
        }
        q.append_pair("_count", &request.count.to_string());
        q.append_pair("_offset", &offset.to_string());
        format!("{base}/fhir/{resource_type}?{}", q.finish())
    };
    // A POST search's parameters stay in bodies: its self link names the search endpoint only,
    // and the next page is another POST with `_offset` (a GET link without the filters would
    // be a different, wider search).
    let mut links = match via {
        Via::Get => vec![json!({ "relation": "self", "url": link(request.offset) })],
        Via::Post => vec![
            json!({ "relation": "self", "url": format!("{base}/fhir/{resource_type}/_search") }),
        ],
    };
    if via == Via::Get {
        if u64::from(request.offset) + u64::from(request.count) < page.total && request.count > 0 {
            links.push(json!({ "relation": "next", "url": link(request.offset + request.count) }));
        }
        if request.offset > 0 {
            links.push(json!({ "relation": "previous", "url": link(request.offset.saturating_sub(request.count)) }));
        }
    }
    let mut entries: Vec<Value> = page
        .resources
        .into_iter()
        .map(|r| {
            let id = r.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            json!({ "fullUrl": format!("{base}/fhir/{resource_type}/{id}"), "resource": presentation.show(r), "search": { "mode": "match" } })
        })
        .collect();
    // What was ignored is said in the answer (an entry of search mode `outcome`), so a misspelt
    // parameter is not mistaken for an empty filter.
    if !ignored.is_empty() {
        let issues: Vec<Issue> = ignored
            .iter()
            .map(|name| {
                Issue::warning(
                    IssueType::NotSupported,
                    format!("{resource_type}?{name}"),
                    format!("search parameter '{name}' is not supported and was ignored (see /fhir/metadata); send Prefer: handling=strict to have it refused instead"),
                )
            })
            .collect();
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": operation_outcome(&issues, None::<NhsErrorCode>),
            "search": { "mode": "outcome" },
        }));
    }
    let mut bundle = json!({ "resourceType": "Bundle", "type": "searchset", "link": links });
    if !presentation.no_total {
        bundle["total"] = json!(page.total);
    }
    // FHIR JSON forbids empty arrays: an empty page has no `entry` at all.
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    Ok(fhir_response(StatusCode::OK, &bundle))
}

/// `GET /fhir/metadata`: what this server really supports.
pub async fn metadata(State(app): State<AppState>) -> Response {
    let conformance_types = crate::fhir::conformance::TYPES.iter().map(|t| {
        json!({
            "type": t,
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "searchParam": [{ "name": "url", "definition": "http://hl7.org/fhir/SearchParameter/conformance-url", "type": "uri", "documentation": "The canonical URL; url|version for one version" }],
            "documentation": "The gateway's own, as its profiles/ directory publishes them; no token needed",
        })
    });
    let resources: Vec<Value> = STORED_TYPES
        .iter()
        .map(|t| {
            let mut r = json!({ "type": t, "interaction": [
                { "code": "read" },
                { "code": "vread", "documentation": if *t == "Patient" { "Only the versions the caller's own records came with: each sender's statement of the person is a version of its own" } else { "Any version of a resource the caller may read" } },
                { "code": "history-instance", "documentation": "The versions vread would give, newest first" },
            ], "versioning": "versioned" });
            if let Some(p) = profile::uk_core_for(t) {
                r["profile"] = json!(p);
            }
            if *t == "Consent" {
                r["profile"] = json!(profile::whg_consent());
                let interactions = r["interaction"].as_array_mut().unwrap();
                interactions.push(json!({ "code": "create" }));
                interactions.push(json!({ "code": "update", "documentation": "Withdrawal: status inactive. If-Match guards against lost updates." }));
                r["versioning"] = json!("versioned-update");
                r["documentation"] = json!("A person's data-sharing consent, enforced on every read, search and disclosure. Recorded by the referring practice or, at first contact, by the service.");
            }
            if *t == "Observation" {
                r["interaction"].as_array_mut().unwrap().push(json!({ "code": "create", "documentation": "Fit notes in the profile whg-fit-note, checked by the DWP's rules; the response names any referral prompts created" }));
                r["interaction"].as_array_mut().unwrap().push(json!({ "code": "update", "documentation": "The practice that sent a fit note marks it entered-in-error (only the status changes: it leaves the person's fit-note history and its waiting referral prompts are cancelled) or amends it (status amended, checked as a new fit note is). If-Match guards against lost updates." }));
                r["supportedProfile"] = json!([profile::whg_fit_note()]);
            }
            if *t == "Task" {
                r["interaction"].as_array_mut().unwrap().push(json!({ "code": "update", "documentation": "The practice accepts or rejects a referral prompt (status, statusReason, note)" }));
                r["supportedProfile"] = json!([profile::whg_referral_prompt()]);
            }
            if *t == "Patient" {
                r["interaction"].as_array_mut().unwrap().push(json!({ "code": "search-type", "documentation": "By NHS number only; a person the caller may not see is not found" }));
                r["searchParam"] = json!([{ "name": "identifier", "definition": "http://hl7.org/fhir/SearchParameter/Patient-identifier", "type": "token", "documentation": "https://fhir.nhs.uk/Id/nhs-number|<number>" }]);
            }
            if *t == "AuditEvent" {
                r["documentation"] = json!("Append-only: every consent decision, read of a person's data, disclosure and override. Information-governance clients only.");
            }
            let params = supported_params(t);
            if !params.is_empty() {
                r["interaction"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({ "code": "search-type" }));
                r["searchParam"] = params
                    .iter()
                    .map(|p| {
                        let kind = match p.kind {
                            search::ParamKind::Token => "token",
                            search::ParamKind::Reference { .. }
                            | search::ParamKind::IdentifierReference => "reference",
                            search::ParamKind::Date | search::ParamKind::Period => "date",
                        };
                        json!({ "name": p.name, "type": kind, "documentation": p.documentation })
                    })
                    .chain(std::iter::once(json!({
                        "name": "_id",
                        "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
                        "type": "token",
                        "documentation": "The resource's id; several separated by commas",
                    })))
                    .collect();
            }
            r
        })
        .chain(conformance_types)
        .chain(std::iter::once(json!({
            "type": "HealthcareService",
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "searchParam": crate::directory::SEARCH_PARAMETERS.iter().map(|(name, kind, doc)| json!({
                "name": name, "type": kind, "documentation": doc,
            })).collect::<Vec<_>>(),
            "documentation": "The service directory: each work-and-health service this gateway refers to, its area, criteria (in words and as the versioned rules), the routes it takes referrals by, its first-contact aim and where to send. No token needed.",
        })))
        .collect();
    let services: Vec<String> = app
        .config
        .services
        .iter()
        .map(|s| format!("{} ({})", s.id, s.name))
        .collect();
    let capability = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": app.started_at,
        "publisher": "Work and Health Gateway project",
        "kind": "instance",
        "software": { "name": "Work and Health Gateway", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": format!("Work and Health Gateway. Referrals are taken as BaRS messages at $process-message and in the practice JSON format at /api/v1/referrals. Services: {}", services.join(", ")),
            "url": format!("{}/fhir", app.config.base_url()),
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json", "application/fhir+xml", "xml"],
        "rest": [{
            "mode": "server",
            "documentation": "Other resource types carried in BaRS messages are stored and readable by id as well; a HealthcareService read by a configured service's id is the gateway's service directory entry (no token needed), by any other id the one a BaRS message carried. What a caller sees is limited to its organisation's referrals and, for a person's data, by that person's consent; records withheld by consent are neither returned nor counted.",
            "security": {
                // SMART Backend Services: the token endpoint is also in
                // /.well-known/smart-configuration.
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{ "url": "token", "valueUri": format!("{}/oauth2/token", app.config.base_url()) }],
                }],
                "cors": false,
                "service": [{
                    "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR", "display": "SMART-on-FHIR" }],
                    "text": "SMART Backend Services: a registered system signs a client assertion for a short-lived access token",
                }],
                "description": "Every interaction except metadata, the service directory (HealthcareService) and the gateway's own conformance resources (StructureDefinition, ValueSet, CodeSystem) needs an access token (Authorization: Bearer), an ES384 JWT issued by this gateway to a registered system: a GP practice, a work-and-health service or information-governance staff. 401 without a valid token, 403 without the role or scope.",
            },
            "resource": resources,
            "operation": [
                { "name": "process-message", "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message" },
                { "name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate", "documentation": "Intake's checks with nothing stored: a BaRS message Bundle, a fit-note Observation (whg-fit-note), a Consent (whg-consent); other types as base FHIR R4" },
            ],
        }],
        "messaging": [{
            "endpoint": [{
                "protocol": { "system": "http://terminology.hl7.org/CodeSystem/message-transport", "code": "http" },
                "address": format!("{}/fhir/$process-message", app.config.base_url()),
            }],
            "documentation": "BaRS: referrals are taken at $process-message (new, amended with reason update, or cancelled) and answered there with a response message; advisers' letters go back to the referring practice as BaRS servicerequest-response messages (or over MESH as GP Connect Send Document).",
            "supportedMessage": [
                { "mode": "receiver", "definition": systems::BARS_REFERRAL_REQUEST_DEFINITION },
                { "mode": "receiver", "definition": crate::intake::message_definition::CANCELLED.url },
                { "mode": "sender", "definition": systems::BARS_REFERRAL_RESPONSE_DEFINITION },
            ],
        }],
    });
    fhir_response(StatusCode::OK, &capability)
}
