//! The service directory over HTTP: `GET /fhir/HealthcareService` (searched by postcode
//! district, referral route, name, identifier) and `GET /fhir/HealthcareService/{id}`. No token:
//! it holds no one's data, only what a service's leaflet says, and a GP system, or a person
//! choosing where to refer themselves, reads it before anyone is signed in. Requests without a
//! token are rate-limited per source like every other.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, fhir_response};
use crate::auth::Principal;
use crate::directory::{self, Context};
use crate::fhir::search::Handling;
use crate::fhir::{Issue, IssueType, Issues, NhsErrorCode, operation_outcome};

fn context(app: &AppState) -> (String, u32) {
    (
        app.config.base_url(),
        app.config.workflow.first_contact_target_days,
    )
}

/// `GET /fhir/HealthcareService?…`: a searchset of the services answering the query. A
/// parameter the directory does not support is refused (400), as the gateway's other searches
/// refuse unknown filters, unless the caller asks `Prefer: handling=lenient`, when it is
/// ignored and said so in the answer.
pub async fn search(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let q = directory::parse_query(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .map_err(|problems| ApiError::BadRequest(problems.into_iter().collect()))?;
    let lenient = Handling::preferred(
        headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    ) == Handling::Lenient;
    let unsupported = |name: &String| {
        let known: Vec<&str> = directory::SEARCH_PARAMETERS
            .iter()
            .map(|(n, _, _)| *n)
            .collect();
        format!(
            "HealthcareService is searched by {} only: '{name}' is not one of them",
            known.join(", ")
        )
    };
    if !lenient && !q.ignored.is_empty() {
        let issues: Issues = q
            .ignored
            .iter()
            .map(|name| {
                Issue::error(
                    IssueType::NotSupported,
                    format!("HealthcareService?{name}"),
                    format!(
                        "{}; send Prefer: handling=lenient to have it ignored instead",
                        unsupported(name)
                    ),
                )
            })
            .collect();
        return Err(ApiError::BadRequest(issues));
    }
    let (base, days) = context(&app);
    let cx = Context {
        base_url: &base,
        first_contact_days: days,
    };
    let found = directory::search(&app.config.services, &q);
    // Paging links keep the caller's other parameters and set their own.
    let link = |offset: u32| {
        let mut url = form_urlencoded::Serializer::new(String::new());
        for (name, value) in q
            .used(&pairs)
            .into_iter()
            .filter(|(n, _)| n != "_offset" && n != "_count")
        {
            url.append_pair(name, value);
        }
        url.append_pair("_count", &q.count.to_string());
        url.append_pair("_offset", &offset.to_string());
        format!("{base}/fhir/HealthcareService?{}", url.finish())
    };
    let total = found.len();
    let mut links = vec![json!({ "relation": "self", "url": link(q.offset) })];
    if (q.offset as usize).saturating_add(q.count as usize) < total && q.count > 0 {
        links.push(json!({ "relation": "next", "url": link(q.offset + q.count) }));
    }
    if q.offset > 0 {
        links
            .push(json!({ "relation": "previous", "url": link(q.offset.saturating_sub(q.count)) }));
    }
    let mut entries: Vec<Value> = found
        .iter()
        .skip(q.offset as usize)
        .take(q.count as usize)
        .map(|service| {
            json!({
                "fullUrl": format!("{base}/fhir/HealthcareService/{}", service.id),
                "resource": directory::healthcare_service(service, &cx),
                "search": { "mode": "match" },
            })
        })
        .collect();
    if !q.ignored.is_empty() {
        let issues: Vec<Issue> = q
            .ignored
            .iter()
            .map(|name| {
                Issue::warning(
                    IssueType::NotSupported,
                    format!("HealthcareService?{name}"),
                    format!("{}; it was ignored", unsupported(name)),
                )
            })
            .collect();
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": operation_outcome(&issues, None::<NhsErrorCode>),
            "search": { "mode": "outcome" },
        }));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    Ok(fhir_response(StatusCode::OK, &bundle))
}

/// `GET /fhir/HealthcareService/{id}`: a configured service's directory entry, to anyone. Any
/// other id is a HealthcareService a BaRS message carried (a referral's target as its sender
/// described it), stored with the referral: read as every stored resource is, with a token and
/// under the one tenancy and consent rule ([`super::fhir_read::read_resource`]).
pub async fn read(
    State(app): State<AppState>,
    caller: Result<Principal, ApiError>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(service) = crate::services::by_id(&app.config.services, &id) else {
        return match caller {
            Ok(principal) => {
                super::fhir_read::read_resource(
                    &app,
                    &principal,
                    &headers,
                    "HealthcareService".into(),
                    id,
                )
                .await
            }
            Err(_) => Err(ApiError::NotFound(
                "There is no such service in this gateway's directory: GET /fhir/HealthcareService lists them".into(),
            )),
        };
    };
    let (base, days) = context(&app);
    let cx = Context {
        base_url: &base,
        first_contact_days: days,
    };
    Ok(fhir_response(
        StatusCode::OK,
        &directory::healthcare_service(service, &cx),
    ))
}
