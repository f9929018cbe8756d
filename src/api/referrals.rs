//! Referral intake routes: the practice format and BaRS `$process-message`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::auth::{request_id, require_scope};
use super::body::JsonBody;
use super::error::{ApiError, Return, fhir_response, return_preference, set_location};
use crate::audit::{self, Event, Kind};
use crate::auth::{Principal, Role, scope};
use crate::fhir::{Issue, NhsErrorCode, operation_outcome};
use crate::intake::{
    IntakeContext, Submission, SubmissionKind, admission, bars, practice_referral,
};
use crate::store::{Admission, StoreError, Stored};

/// `POST /api/v1/referrals`: 201 when stored, 200 for an identical resend.
pub async fn create_practice_referral(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::REFERRAL_CREATE)?;
    let ctx = IntakeContext::now(&app.config);
    let submission = practice_referral(&body.value, &ctx).map_err(ApiError::Invalid)?;
    let stored = accept(
        &app,
        &principal,
        &headers,
        submission,
        crate::access::PRACTICE_CONSENT_EXPRESSION,
        admission::practice_criterion_expression,
    )
    .await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    answer(&app, &headers, status, &stored).await
}

/// `POST /fhir/$process-message`: BaRS answers 200 for an accepted message, new or resent.
pub async fn process_message(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::REFERRAL_CREATE)?;
    let ctx = IntakeContext::now(&app.config);
    let submission = bars::validate(&body.bytes, &body.value, &ctx).map_err(|r| match r {
        bars::Rejection::Malformed(issues) => ApiError::BadRequest(issues),
        bars::Rejection::Invalid(issues) => ApiError::Invalid(issues),
    })?;
    let stored = accept(
        &app,
        &principal,
        &headers,
        submission,
        crate::access::BARS_CONSENT_EXPRESSION,
        admission::bars_criterion_expression,
    )
    .await?;
    answer(&app, &headers, StatusCode::OK, &stored).await
}

/// Takes a validated referral in: only from the practice it names, only with the person's
/// consent to its going to the service, checked against the service's eligibility criteria, and
/// with the decision audited in the same transaction as the referral. A refused referral stores
/// nothing about the person.
async fn accept(
    app: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    submission: Submission,
    consent_expression: &'static str,
    criterion_expression: admission::CriterionExpression,
) -> Result<Stored, ApiError> {
    let service = match &submission.kind {
        SubmissionKind::Referral { service } => service
            .split_once('|')
            .and_then(|(_, id)| app.config.service(id)),
        SubmissionKind::FitNote(_) => None,
    };
    let admission = admission::referral(
        &submission,
        service,
        principal,
        request_id(headers),
        chrono::Utc::now(),
        criterion_expression,
        consent_expression,
    );
    submit(
        app,
        principal,
        headers,
        submission,
        admission,
        consent_expression,
    )
    .await
}

/// Stores a submission a practice sent as itself, under `admission`. A resend is audited as
/// such; a refusal is audited without the person (nothing about them is stored) and answered with
/// what to change.
pub async fn submit(
    app: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    submission: Submission,
    admission: Admission,
    consent_expression: &str,
) -> Result<Stored, ApiError> {
    let what = submission.kind.noun();
    if principal.role != Role::Practice || submission.practice != principal.organisation {
        return Err(ApiError::Forbidden(format!(
            "a practice sends {what}s only as itself: this {what} comes from {} but the access token is for {}",
            submission.practice, principal.organisation
        )));
    }
    if principal.test_tenant {
        let real = submission
            .entries
            .iter()
            .filter(|e| e.resource_type == "Patient")
            .find_map(|e| {
                crate::fhir::resource::identifier_value(
                    &e.resource,
                    crate::fhir::systems::NHS_NUMBER,
                )
                .filter(|n| !n.starts_with("999"))
            });
        if real.is_some() {
            return Err(ApiError::Forbidden(format!(
                "this client is in the test tenant: it may send only synthetic people, with NHS numbers from the 999 test range; this {what} is not rejected for its content, but it cannot be sent from a test client"
            )));
        }
    }
    let key = submission.key.clone();
    let focus_type = submission.kind.focus_type();
    let mut event = Event {
        kind: Kind::Intake,
        principal: Some(principal),
        patient: None,
        entities: Vec::new(),
        decision: None,
        permitted: true,
        description: String::new(),
        at: chrono::Utc::now(),
        request_id: request_id(headers),
    };
    match app.store.submit(submission, Some(admission)).await {
        Ok(stored) if stored.created => Ok(stored),
        Ok(stored) => {
            // A resend stores nothing; the decision that let it in was recorded with it.
            event.entities = vec![format!("{focus_type}/{}", stored.focus_id)];
            event.description = format!("{what} resent: already stored, nothing new stored");
            audit::append(&*app.store, &[event]).await?;
            Ok(stored)
        }
        Err(StoreError::Refused(decision)) => {
            event.decision = Some(&decision);
            event.permitted = false;
            event.description = format!(
                "{what} {} from {} refused: {}",
                key.value, key.namespace, decision.reason
            );
            audit::append(&*app.store, &[event]).await?;
            Err(ApiError::ConsentRefused(crate::access::intake_refusal(
                consent_expression,
                &decision,
            )))
        }
        Err(StoreError::Rejected(issues)) => {
            event.permitted = false;
            event.description = format!(
                "{what} {} from {} refused: {}",
                key.value,
                key.namespace,
                issues
                    .iter()
                    .map(|i| i.diagnostics.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            audit::append(&*app.store, &[event]).await?;
            Err(ApiError::Invalid(issues))
        }
        Err(e) => Err(e.into()),
    }
}

/// The answer to a stored referral: an OperationOutcome by default, the ServiceRequest with
/// `Prefer: return=representation`, nothing with `return=minimal`; always a Location header.
async fn answer(
    app: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    stored: &Stored,
) -> Result<Response, ApiError> {
    let id = &stored.focus_id;
    let location = format!("{}/fhir/ServiceRequest/{id}", app.config.base_url());
    let mut response = match return_preference(headers) {
        Return::Representation => {
            let resource = app.store.read("ServiceRequest", id).await?.ok_or_else(|| {
                ApiError::Internal(format!("stored ServiceRequest/{id} cannot be read back"))
            })?;
            fhir_response(status, &resource)
        }
        Return::Minimal => status.into_response(),
        Return::OperationOutcome => {
            let message = if stored.created {
                format!("referral stored as ServiceRequest/{id}")
            } else {
                format!(
                    "this referral was already received and is stored as ServiceRequest/{id}; nothing new was stored"
                )
            };
            let outcome: Value =
                operation_outcome(&[Issue::information(message)], None::<NhsErrorCode>);
            fhir_response(status, &outcome)
        }
    };
    set_location(&mut response, &location);
    Ok(response)
}
