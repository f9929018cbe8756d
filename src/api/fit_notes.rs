//! Fit-note routes: intake in the practice format and as FHIR, the history summary, and the
//! practice's answer to a referral prompt.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::{caller, require_scope};
use super::body::{JsonBody, require_id, require_resource};
use super::consents::version_tag;
use super::error::{
    ApiError, Return, fhir_response, resource_preference, return_preference, set_etag,
    set_location, versioned_response,
};
use crate::app::fit_notes::{self, FitNote};
use crate::auth::{Principal, scope};
use crate::fhir::identifiers;
use crate::fhir::{Issue, IssueType, NhsErrorCode, operation_outcome};

/// `POST /api/v1/fit-notes`: 201 when stored, 200 for an identical resend.
pub async fn create_practice_fit_note(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::FIT_NOTE_CREATE)?;
    let wanted = return_preference(&headers);
    let note = fit_notes::submit_practice_fit_note(
        &*app.store,
        &app.config,
        &caller(&principal, &headers),
        &body.value,
        wanted,
    )
    .await?;
    Ok(answer(&app, wanted, note))
}

/// `POST /fhir/Observation`: a fit note in the gateway's profile from a FHIR client.
pub async fn create_observation(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::FIT_NOTE_CREATE)?;
    require_resource(&body, "Observation")?;
    let wanted = return_preference(&headers);
    let note = fit_notes::submit_observation(
        &*app.store,
        &app.config,
        &caller(&principal, &headers),
        &body.value,
        wanted,
    )
    .await?;
    Ok(answer(&app, wanted, note))
}

/// The answer to a stored fit note: an OperationOutcome naming the Observation and every referral
/// prompt it created; with `Prefer: return=representation`, a collection Bundle of the Observation
/// and its prompt Tasks. Always a Location header.
fn answer(app: &AppState, wanted: Return, note: FitNote) -> Response {
    let FitNote {
        stored,
        observation,
        prompts: tasks,
    } = note;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let base = app.config.base_url();
    let id = &stored.focus_id;
    let mut response = match observation {
        Some(observation) => {
            let entries: Vec<Value> = std::iter::once(observation)
                .chain(tasks)
                .map(|r| {
                    let url = format!(
                        "{base}/fhir/{}/{}",
                        r["resourceType"].as_str().unwrap_or_default(),
                        r["id"].as_str().unwrap_or_default()
                    );
                    json!({ "fullUrl": url, "resource": r })
                })
                .collect();
            fhir_response(
                status,
                &json!({ "resourceType": "Bundle", "type": "collection", "entry": entries }),
            )
        }
        None if wanted == Return::Minimal => status.into_response(),
        None => {
            let mut issues = vec![Issue::information(if stored.created {
                format!("fit note stored as Observation/{id}")
            } else {
                format!(
                    "this fit note was already received and is stored as Observation/{id}; nothing new was stored"
                )
            })];
            for t in &tasks {
                issues.push(Issue {
                    expression: Some(format!("Task/{}", t["id"].as_str().unwrap_or_default())),
                    ..Issue::information(format!(
                        "referral prompt Task/{}: {}",
                        t["id"].as_str().unwrap_or_default(),
                        t["description"].as_str().unwrap_or_default()
                    ))
                });
            }
            let outcome: Value = operation_outcome(&issues, None::<NhsErrorCode>);
            fhir_response(status, &outcome)
        }
    };
    // A new fit note is version 1 of its Observation (R4 create: the Location names the
    // version); a resend answers where the stored one is.
    let location = if stored.created {
        format!("{base}/fhir/Observation/{id}/_history/1")
    } else {
        format!("{base}/fhir/Observation/{id}")
    };
    set_location(&mut response, &location);
    if stored.created {
        set_etag(&mut response, "1");
    }
    response
}

/// `GET /api/v1/patients/{nhs-number}/fit-notes/summary`
pub async fn summary(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, &scope::read("Observation"))?;
    let Path(nhs) = path.map_err(|e| ApiError::NotFound(format!("no such person: {e}")))?;
    let nhs = identifiers::nhs_number(&nhs).map_err(|e| {
        ApiError::BadRequest(
            Issue::error(
                IssueType::Value,
                "nhs-number",
                format!("not a valid NHS number: {e}"),
            )
            .into(),
        )
    })?;
    let summary = fit_notes::summary(
        &*app.store,
        &app.config,
        &caller(&principal, &headers),
        &nhs,
    )
    .await?;
    let body = json!({
        "patient": format!("Patient/{}", summary.patient_id),
        "asOf": summary.as_of,
        "consecutiveGapDays": summary.consecutive_gap_days,
        "summary": summary.summary,
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// `PUT /fhir/Task/{id}`: the practice accepts or rejects a referral prompt. Only `status`
/// (requested → accepted or rejected), `statusReason` and `note` may change.
pub async fn update_task(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::TASK_UPDATE)?;
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such Task: {e}")))?;
    require_resource(&body, "Task")?;
    require_id(&body, "Task", &id)?;
    let updated = fit_notes::answer_prompt(
        &*app.store,
        &caller(&principal, &headers),
        &id,
        &body.value,
        version_tag(&headers),
    )
    .await?;
    Ok(versioned_response(
        StatusCode::OK,
        &updated,
        &app.config.base_url(),
        resource_preference(&headers),
    ))
}

/// `PUT /fhir/Observation/{id}`: the practice that sent a fit note marks it entered in error or
/// amends it ([`fit_notes::correct_fit_note`]); `If-Match: W/"n"` makes a stale correction fail
/// with 412.
pub async fn update_observation(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::FIT_NOTE_UPDATE)?;
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such Observation: {e}")))?;
    require_resource(&body, "Observation")?;
    require_id(&body, "Observation", &id)?;
    let corrected = fit_notes::correct_fit_note(
        &*app.store,
        &app.config,
        &caller(&principal, &headers),
        &id,
        &body.value,
        version_tag(&headers),
    )
    .await?;
    Ok(versioned_response(
        StatusCode::OK,
        &corrected,
        &app.config.base_url(),
        resource_preference(&headers),
    ))
}
