//! Consent routes: recording and changing Consents, overrides (requested by a practice or
//! service, granted or refused and reviewed by information governance), and disclosure decisions.
//! Each reads its request and calls one use case in [`crate::app::consents`] or
//! [`crate::app::overrides`].

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{caller, require_scope};
use super::body::{JsonBody, require_resource};
use super::error::{ApiError, resource_preference, set_location, versioned_response};
use crate::app::consents::{self, DisclosureRequest};
use crate::app::overrides::{self, OverrideRequest};
use crate::auth::{Principal, Role, scope};
use crate::consent::Override;
use crate::consent::overrides::Verdict;

/// `POST /fhir/Consent`: a practice, or a service's adviser at first contact, records a Consent
/// for a person it has a referral for. What each may record is [`crate::consent::authorship`]'s
/// rule; the Consent and its AuditEvent are stored in one transaction.
pub async fn create(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::CONSENT_CREATE)?;
    require_resource(&body, "Consent")?;
    let stored = consents::record(
        &*app.store,
        &app.config.services,
        &caller(&principal, &headers),
        &body.value,
    )
    .await?;
    Ok(versioned_response(
        StatusCode::CREATED,
        &stored,
        &app.config.base_url(),
        resource_preference(&headers),
    ))
}

/// `PUT /fhir/Consent/{id}`: withdraws an agreement (`status` `inactive`, or `entered-in-error`)
/// — the only change a stored Consent takes ([`crate::consent::authorship::may_amend`]). The
/// change is made against the version read (or the one `If-Match: W/"n"` names), so a concurrent
/// change fails with 412 rather than being undone, and commits with its AuditEvent.
pub async fn update(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::CONSENT_UPDATE)?;
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such Consent: {e}")))?;
    require_resource(&body, "Consent")?;
    let amended = consents::amend(
        &*app.store,
        &app.config.services,
        &caller(&principal, &headers),
        &id,
        &body.value,
        version_tag(&headers),
    )
    .await?;
    Ok(versioned_response(
        StatusCode::OK,
        &amended,
        &app.config.base_url(),
        resource_preference(&headers),
    ))
}

/// The `If-Match` header's text, if one was sent (the use case reads the version it names).
pub(super) fn version_tag(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

/// `POST /api/v1/consent-overrides`: a practice or service asks to act against a person's
/// consent decision ("break glass") for a stated reason, for a limited time, for itself or for
/// the one third party it discloses to. The request permits nothing until information governance
/// grants it. Stored with its AuditEvent.
pub async fn create_override(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::CONSENT_OVERRIDE)?;
    let req: OverrideRequest = body.parse("an override request")?;
    let request =
        overrides::request(&*app.store, &app.config, &caller(&principal, &headers), req).await?;
    let mut response = (StatusCode::CREATED, Json(request.to_json())).into_response();
    set_location(
        &mut response,
        &format!(
            "{}/api/v1/consent-overrides/{}",
            app.config.base_url(),
            request.id
        ),
    );
    Ok(response)
}

/// Information governance: a client in that role, holding the review scope.
fn require_information_governance(principal: &Principal) -> Result<(), ApiError> {
    require_scope(principal, scope::OVERRIDE_REVIEW)?;
    Ok(overrides::require_information_governance(principal)?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    unreviewed: Option<bool>,
    #[serde(default)]
    state: Option<String>,
}

/// `GET /api/v1/consent-overrides[?state=requested][&unreviewed=true]`: overrides for
/// information governance: requests to decide, granted ones to review.
pub async fn list_overrides(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_information_governance(&principal)?;
    let Query(q) = query.map_err(|e| super::body::query_error(e, "`state` (requested, granted, refused, expired, withdrawn) and `unreviewed` (true or false)"))?;
    let list: Vec<Value> = overrides::list(
        &*app.store,
        &caller(&principal, &headers),
        q.state.as_deref(),
        q.unreviewed.unwrap_or(false),
    )
    .await?
    .iter()
    .map(Override::to_json)
    .collect();
    Ok(Json(json!({ "total": list.len(), "overrides": list })).into_response())
}

/// `GET /api/v1/consent-overrides/{id}`: one override, for information governance and for the
/// organisation that asked for it (to see whether it was granted). Anyone else is told it does
/// not exist.
pub async fn show_override(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such override: {e}")))?;
    require_scope(
        &principal,
        if principal.role == Role::InformationGovernance {
            scope::OVERRIDE_REVIEW
        } else {
            scope::CONSENT_OVERRIDE
        },
    )?;
    let o = overrides::show(&*app.store, &caller(&principal, &headers), &id).await?;
    Ok(Json(o.to_json()).into_response())
}

/// What information governance says when it grants or refuses a request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictRequest {
    note: String,
}

/// `POST /api/v1/consent-overrides/{id}/grant`: information governance grants a request; it is in
/// force from now for the hours asked.
pub async fn grant_override(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    decide_override(app, principal, headers, path, body, Verdict::Grant).await
}

/// `POST /api/v1/consent-overrides/{id}/refuse`: information governance turns a request down.
pub async fn refuse_override(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    decide_override(app, principal, headers, path, body, Verdict::Refuse).await
}

async fn decide_override(
    app: AppState,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
    verdict: Verdict,
) -> Result<Response, ApiError> {
    require_information_governance(&principal)?;
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such override: {e}")))?;
    let req: VerdictRequest = body.parse("a grant or refusal")?;
    let changed = overrides::decide(
        &*app.store,
        &caller(&principal, &headers),
        &id,
        verdict,
        &req.note,
    )
    .await?;
    Ok(Json(changed.to_json()).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewRequest {
    /// `appropriate` or `inappropriate`.
    outcome: String,
    note: String,
}

/// `POST /api/v1/consent-overrides/{id}/review`: information governance reviews a granted
/// override. `inappropriate` ends it at once.
pub async fn review_override(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_information_governance(&principal)?;
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such override: {e}")))?;
    let req: ReviewRequest = body.parse("a review")?;
    let changed = overrides::review(
        &*app.store,
        &caller(&principal, &headers),
        &id,
        &req.outcome,
        &req.note,
    )
    .await?;
    Ok(Json(changed.to_json()).into_response())
}

/// `POST /api/v1/disclosures/$decide`: may this be sent now? Decided at the moment of asking and
/// audited: the delivery outbox asks before every attempt.
pub async fn decide_disclosure(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::DISCLOSURE)?;
    // Refused before the request is read, as the use case would refuse it.
    consents::may_ask_disclosure(&principal)?;
    let req: DisclosureRequest = body.parse("a disclosure request")?;
    let disclosure =
        consents::decide_disclosure(&*app.store, &caller(&principal, &headers), &req).await?;
    let decision = &disclosure.decision;
    Ok(Json(json!({
        "decision": if decision.permitted() { "permit" } else { "deny" },
        "reason": decision.reason,
        "consent": decision.consent(),
        "override": decision.override_id(),
        "decidedAt": disclosure.decided_at.to_rfc3339(),
    }))
    .into_response())
}
