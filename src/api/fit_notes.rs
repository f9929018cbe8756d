//! Fit-note routes: intake in the practice format and as FHIR, the history summary, and the
//! practice's answer to a referral prompt.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::{request_id, require_scope};
use super::body::{JsonBody, require_resource};
use super::consents::if_match;
use super::error::{ApiError, Return, fhir_response, return_preference, set_location};
use super::fhir_read::guard;
use super::referrals::submit;
use crate::audit::{self, Event, Kind};
use crate::auth::{Principal, Role, scope};
use crate::fhir::identifiers;
use crate::fhir::{Issue, IssueType, NhsErrorCode, operation_outcome};
use crate::intake::{IntakeContext, Submission, admission, fhir_fit_note, practice_fit_note};
use crate::store::{Stored, Transaction};

/// `POST /api/v1/fit-notes`: 201 when stored, 200 for an identical resend.
pub async fn create_practice_fit_note(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::FIT_NOTE_CREATE)?;
    let ctx = IntakeContext::now(&app.config);
    let (submission, note) = practice_fit_note(&body.value, &ctx).map_err(ApiError::Invalid)?;
    let absence_given = note.note.absence_start.is_some();
    let stored = accept(
        &app,
        &principal,
        &headers,
        submission,
        absence_given,
        "period",
    )
    .await?;
    answer(&app, &headers, &stored).await
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
    let ctx = IntakeContext::now(&app.config);
    let sender_ods = principal.organisation_code();
    let (submission, note) =
        fhir_fit_note(&body.value, sender_ods, &ctx).map_err(ApiError::Invalid)?;
    let absence_given = note.note.absence_start.is_some();
    let stored = accept(
        &app,
        &principal,
        &headers,
        submission,
        absence_given,
        "Observation.effectivePeriod",
    )
    .await?;
    answer(&app, &headers, &stored).await
}

async fn accept(
    app: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    submission: Submission,
    absence_start_given: bool,
    period_expression: &'static str,
) -> Result<Stored, ApiError> {
    let admission = admission::fit_note(
        &submission,
        absence_start_given,
        &app.config,
        principal,
        request_id(headers),
        chrono::Utc::now(),
        period_expression,
    );
    submit(app, principal, headers, submission, admission, "").await
}

/// The answer to a stored fit note: an OperationOutcome naming the Observation and every referral
/// prompt it created; with `Prefer: return=representation`, a collection Bundle of the Observation
/// and its prompt Tasks. Always a Location header.
async fn answer(
    app: &AppState,
    headers: &HeaderMap,
    stored: &Stored,
) -> Result<Response, ApiError> {
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let base = app.config.base_url();
    let id = &stored.focus_id;
    let preference = return_preference(headers);
    let tasks = if stored.prompts.is_empty() || preference == Return::Minimal {
        Vec::new()
    } else {
        app.store.read_many("Task", &stored.prompts).await?
    };
    let mut response = match preference {
        Return::Representation => {
            let observation = app.store.read("Observation", id).await?.ok_or_else(|| {
                ApiError::Internal(format!("stored Observation/{id} cannot be read back"))
            })?;
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
        Return::Minimal => status.into_response(),
        Return::OperationOutcome => {
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
    set_location(&mut response, &format!("{base}/fhir/Observation/{id}"));
    Ok(response)
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
    // Unknown and not-yours answer alike, so the route cannot be used to probe who is known.
    let not_found =
        || ApiError::NotFound("no fit notes are held for this person that you may see".into());
    let patient_id = app
        .store
        .patient_by_nhs_number(&nhs)
        .await?
        .ok_or_else(not_found)?;
    let notes = match guard(&app, &principal, &headers)
        .fit_note_history(&patient_id)
        .await
    {
        Err(crate::access::AccessError::NotFound(_)) => return Err(not_found()),
        other => other?,
    };
    let f = &app.config.fit_notes;
    let today = chrono::Utc::now().date_naive();
    let summary = crate::fit_notes::summary(
        &notes,
        today,
        f.consecutive_gap_days,
        f.summary_window_months,
    );
    let body = json!({
        "patient": format!("Patient/{patient_id}"),
        "asOf": today,
        "consecutiveGapDays": f.consecutive_gap_days,
        "summary": summary,
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
    if body.value["id"].as_str() != Some(id.as_str()) {
        return Err(ApiError::BadRequest(
            Issue::error(
                IssueType::Invalid,
                "Task.id",
                format!("the Task's id must be '{id}', the id in the URL"),
            )
            .into(),
        ));
    }
    let stored = guard(&app, &principal, &headers).fetch("Task", &id).await?;
    if !crate::consent::is_referral_prompt(&stored) {
        return Err(ApiError::Forbidden(
            "only referral prompts are answered with PUT: a referral's workflow Task changes through the service's workflow routes (/api/v1/referrals/{id}/…)".into(),
        ));
    }
    if principal.role != Role::Practice {
        return Err(ApiError::Forbidden(
            "only the practice a referral prompt is for answers it".into(),
        ));
    }
    let mut issues = crate::fhir::Issues::new();
    let new_status = body.value["status"].as_str().unwrap_or_default();
    if !matches!(new_status, "accepted" | "rejected") {
        issues.error(IssueType::Value, "Task.status", "a referral prompt is answered with status accepted (the practice will consider a referral) or rejected");
    }
    if stored["status"] != "requested" {
        issues.error(
            IssueType::BusinessRule,
            "Task.status",
            format!(
                "this prompt was already answered ({})",
                stored["status"].as_str().unwrap_or_default()
            ),
        );
    }
    for field in [
        "intent",
        "code",
        "focus",
        "for",
        "owner",
        "input",
        "authoredOn",
        "description",
        "reasonCode",
    ] {
        if body.value.get(field) != stored.get(field) {
            issues.error(IssueType::BusinessRule, format!("Task.{field}"), format!("Task.{field} cannot be changed: only status, statusReason and note are the practice's to set"));
        }
    }
    if !issues.is_empty() {
        return Err(ApiError::Invalid(issues));
    }
    let mut updated = stored.clone();
    updated["status"] = json!(new_status);
    updated["lastModified"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    for field in ["statusReason", "note"] {
        match body.value.get(field) {
            Some(v) => updated[field] = v.clone(),
            None => {
                if let Some(o) = updated.as_object_mut() {
                    o.remove(field);
                }
            }
        }
    }
    // The answer is stored at the version it was checked against (the one the caller named with
    // If-Match, or the one read above), so a concurrent answer is refused, never overwritten;
    // and with its AuditEvent, in one transaction.
    let based_on = match if_match(&headers)? {
        Some(version) => version,
        None => stored_version(&stored)?,
    };
    let answered = audit::audit_event(&Event {
        kind: Kind::Updated,
        principal: Some(&principal),
        patient: updated["for"]["reference"].as_str().map(str::to_string),
        entities: vec![format!("Task/{id}")],
        decision: None,
        permitted: true,
        description: format!("referral prompt {new_status} by the practice"),
        at: chrono::Utc::now(),
        request_id: request_id(&headers),
    });
    let updated = app
        .store
        .transact(Transaction {
            updates: vec![(updated, based_on)],
            audit: vec![answered],
            ..Default::default()
        })
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("the answered prompt was not returned".into()))?;
    Ok(fhir_response(StatusCode::OK, &updated))
}

/// The version of a stored resource, from its `meta.versionId`.
fn stored_version(resource: &Value) -> Result<i64, ApiError> {
    resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::Internal("a stored resource without a version".into()))
}
