//! The adviser workflow and letters: `/api/v1/referrals/{id}/…` and `/api/v1/letters`. Each
//! route reads its request and calls one use case in [`crate::app::workflow`].

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::AppState;
use super::auth::{caller, require_scope};
use super::body::JsonBody;
use super::error::{ApiError, fhir_response, set_location};
use crate::app::workflow::{self as use_case, Letter};
use crate::auth::{Principal, scope};
use crate::letters::LetterBody;
use crate::workflow::action::IntoAction;

/// The referral id in the path.
fn referral_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::NotFound(format!("no such referral: {e}")))?;
    Ok(id)
}

/// `POST /api/v1/referrals/{id}/{triage|contacts|support|discharge}`: one workflow step, its
/// body read as `B`; answered with the workflow's new state.
pub async fn step<B: DeserializeOwned + IntoAction>(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let action = body
        .parse::<B>(B::NAME)?
        .into_action()
        .map_err(ApiError::Invalid)?;
    let id = referral_id(id)?;
    let state = use_case::act(
        &*app.store,
        &app.config,
        &app.outbox.wake,
        &caller(&principal, &headers),
        &id,
        action,
    )
    .await?;
    Ok((StatusCode::OK, Json(state)).into_response())
}

/// `POST /api/v1/referrals/{id}/letters`: an adviser's letter to the referring practice.
pub async fn create_letter(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let body: LetterBody = body.parse("a letter")?;
    let id = referral_id(id)?;
    let letter = use_case::write_letter(
        &*app.store,
        &app.config,
        &app.outbox.wake,
        &caller(&principal, &headers),
        &id,
        &body,
    )
    .await?;
    let mut response = fhir_response(StatusCode::CREATED, &letter.communication);
    set_location(
        &mut response,
        &format!("{}/fhir/Communication/{}", app.config.base_url(), letter.id),
    );
    Ok(response)
}

/// `GET /api/v1/referrals/{id}/workflow`: for the service and the referring practice.
pub async fn show(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, &scope::read("ServiceRequest"))?;
    let id = referral_id(id)?;
    let state =
        use_case::show(&*app.store, &app.config, &caller(&principal, &headers), &id).await?;
    Ok(Json(state).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterQuery {
    pub state: Option<String>,
    pub referral: Option<String>,
}

/// `GET /api/v1/letters?state=&referral=`: the caller's letters (a service's sent, a practice's
/// received), e.g. every dead or escalated one.
pub async fn list_letters(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    query: Result<Query<LetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, &scope::search("Communication"))?;
    let Query(q) = query.map_err(|e| {
        super::body::query_error(
            e,
            "`state` (a letter-delivery-state code) and `referral` (a ServiceRequest id)",
        )
    })?;
    let letters = use_case::list_letters(
        &*app.store,
        &caller(&principal, &headers),
        q.state,
        q.referral,
    )
    .await?;
    Ok(Json(json!({ "total": letters.len(), "letters": letters })).into_response())
}

/// The letter id in the path.
fn letter_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::NotFound(format!("no such letter: {e}")))?;
    Ok(id)
}

/// `GET /api/v1/letters/{id}`: one letter's delivery, with its attempts.
pub async fn show_letter(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, &scope::read("Communication"))?;
    let id = letter_id(id)?;
    let Letter {
        delivery,
        attempts,
        communication,
    } = use_case::show_letter(&*app.store, &caller(&principal, &headers), &id).await?;
    Ok(
        Json(json!({ "delivery": delivery, "attempts": attempts, "communication": communication }))
            .into_response(),
    )
}

/// `POST /api/v1/letters/{id}/$resend`: the service sends a rejected or dead letter again (the
/// practice fixed what refused it, or a route was configured): queued now, with a new retry
/// window and the same message id.
pub async fn resend_letter(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let id = letter_id(id)?;
    let (delivery, attempts) = use_case::resend_letter(
        &*app.store,
        &app.config,
        &app.outbox,
        &caller(&principal, &headers),
        &id,
    )
    .await?;
    Ok(Json(json!({ "delivery": delivery, "attempts": attempts })).into_response())
}

/// `GET /metrics`: delivery counters and the outbox's depth (no personal data), for Prometheus.
pub async fn metrics(
    State(app): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let peer = peer.ip();
    let forwarded = headers.contains_key("x-forwarded-for");
    if !super::client_address::may_scrape(
        peer,
        forwarded,
        &app.config.telemetry.metrics_scrapers,
        &app.config.limits.trusted_proxies,
    ) {
        return Err(ApiError::NotFound("There is no such page here.".into()));
    }
    let text = use_case::metrics(&*app.store, &app.outbox.metrics).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response())
}
