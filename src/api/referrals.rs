//! Referral intake routes: the practice format and BaRS `$process-message`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, fhir_response};
use crate::fhir::{Issue, NhsErrorCode, operation_outcome};
use crate::intake::{IntakeContext, bars, practice_referral};
use crate::store::StoredReferral;

/// `POST /api/v1/referrals`: 201 when stored, 200 for an identical resend.
pub async fn create_practice_referral(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let ctx = IntakeContext::now(&app.config);
    let submission = practice_referral(&body.value, &ctx).map_err(ApiError::Invalid)?;
    let stored = app.store.submit_referral(submission).await?;
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
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let ctx = IntakeContext::now(&app.config);
    let submission = bars::validate(&body.bytes, &body.value, &ctx).map_err(|r| match r {
        bars::Rejection::Malformed(issues) => ApiError::BadRequest(issues),
        bars::Rejection::Invalid(issues) => ApiError::Invalid(issues),
    })?;
    let stored = app.store.submit_referral(submission).await?;
    answer(&app, &headers, StatusCode::OK, &stored).await
}

/// The answer to a stored referral: an OperationOutcome by default, the ServiceRequest with
/// `Prefer: return=representation`, nothing with `return=minimal`; always a Location header.
async fn answer(
    app: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    stored: &StoredReferral,
) -> Result<Response, ApiError> {
    let id = &stored.service_request_id;
    let location = format!("{}/fhir/ServiceRequest/{id}", app.config.base_url());
    let prefer = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut response = if prefer.contains("return=representation") {
        let resource = app.store.read("ServiceRequest", id).await?.ok_or_else(|| {
            ApiError::Internal(format!("stored ServiceRequest/{id} cannot be read back"))
        })?;
        fhir_response(status, &resource)
    } else if prefer.contains("return=minimal") {
        status.into_response()
    } else {
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
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}
