//! Referral intake routes: the practice format and BaRS `$process-message`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::auth::{caller, require_scope};
use super::body::JsonBody;
use super::error::{ApiError, Return, fhir_response, return_preference, set_location};
use crate::app::referrals::{self, Processed, Referral};
use crate::auth::{Principal, scope};
use crate::fhir::{Issue, NhsErrorCode, operation_outcome};
use crate::intake::bars_response;

/// `POST /api/v1/referrals`: 201 when stored, 200 for an identical resend.
pub async fn create_practice_referral(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::REFERRAL_CREATE)?;
    let wanted = return_preference(&headers);
    let referral = referrals::submit_practice_referral(
        &*app.store,
        &app.config,
        &caller(&principal, &headers),
        &body.value,
        wanted,
    )
    .await?;
    let status = if referral.stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(&app, wanted, status, referral))
}

/// `POST /fhir/$process-message`: 200 for an accepted message, new or resent, with a response
/// message ([`crate::intake::bars_response`]) carrying the stored ServiceRequest when
/// `Prefer: return=representation` asks for it.
pub async fn process_message(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::REFERRAL_CREATE)?;
    let wanted = return_preference(&headers);
    let processed = referrals::process_message(
        &*app.store,
        &app.config,
        &caller(&principal, &headers),
        &body.bytes,
        &body.value,
        wanted,
    )
    .await?;
    let (id, outcome, resource) = match processed {
        Processed::Referral(Referral { stored, resource }) => {
            let outcome = if stored.created {
                bars_response::Outcome::Stored
            } else {
                bars_response::Outcome::Resent
            };
            (stored.focus_id, outcome, resource)
        }
        Processed::Cancelled(c) => {
            let status = c.withdrawal.status();
            let outcome = if c.newly {
                bars_response::Outcome::Cancelled(status)
            } else {
                bars_response::Outcome::CancellationResent(status)
            };
            (c.service_request_id, outcome, c.resource)
        }
        Processed::Amended(a) => {
            let outcome = if a.changed.is_empty() {
                bars_response::Outcome::AmendmentResent
            } else {
                bars_response::Outcome::Amended(a.changed.join(", "))
            };
            (a.service_request_id, outcome, a.resource)
        }
    };
    let location = format!("{}/fhir/ServiceRequest/{id}", app.config.base_url());
    // The response message is the operation's return, whatever `Prefer: return=` says (R4:
    // mandatory for synchronous messaging); `representation` adds the ServiceRequest to it.
    let accepted = bars_response::Accepted {
        service_request_id: &id,
        outcome: &outcome,
        service_request: resource.as_ref(),
        service: bars_response::addressed_service(
            &body.value["entry"][0]["resource"],
            &app.config.services,
        ),
    };
    let message = bars_response::response_message(
        &body.value,
        &accepted,
        &app.config.base_url(),
        chrono::Utc::now(),
    );
    let mut response = fhir_response(StatusCode::OK, &message);
    set_location(&mut response, &location);
    Ok(response)
}

/// The answer to a stored referral: an OperationOutcome by default, the ServiceRequest with
/// `Prefer: return=representation`, nothing with `return=minimal`; always a Location header.
fn answer(app: &AppState, wanted: Return, status: StatusCode, referral: Referral) -> Response {
    let Referral { stored, resource } = referral;
    let id = &stored.focus_id;
    let location = format!("{}/fhir/ServiceRequest/{id}", app.config.base_url());
    let mut response = match resource {
        Some(resource) => fhir_response(status, &resource),
        None if wanted == Return::Minimal => status.into_response(),
        None => {
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
    response
}
