//! Employer letters: `/api/v1/referrals/{id}/employer-letters` and `/api/v1/employer-letters/…`.
//! Each route reads its request and calls one use case in [`crate::app::employer_letters`].

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{caller, require_scope};
use super::body::JsonBody;
use super::error::{ApiError, set_location};
use crate::app::employer_letters::{self as use_case, EmployerLetter};
use crate::auth::{Principal, scope};
use crate::letters::employer::{ApprovalMethod, EmployerLetterBody};

fn path_id(id: Result<Path<String>, PathRejection>, what: &str) -> Result<String, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::NotFound(format!("no such {what}: {e}")))?;
    Ok(id)
}

fn answered(app: &AppState, status: StatusCode, letter: &EmployerLetter) -> Response {
    let mut response = (status, Json(letter.to_json())).into_response();
    set_location(
        &mut response,
        &format!(
            "{}/api/v1/employer-letters/{}",
            app.config.base_url(),
            letter.id
        ),
    );
    response
}

/// `POST /api/v1/referrals/{id}/employer-letters`: the adviser's draft. Nothing is sent.
pub async fn create(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let body: EmployerLetterBody = body.parse("an employer letter")?;
    let id = path_id(id, "referral")?;
    let letter = use_case::draft(
        &*app.store,
        &app.config,
        &caller(&principal, &headers),
        &id,
        &body,
    )
    .await?;
    Ok(answered(&app, StatusCode::CREATED, &letter))
}

/// `PUT /api/v1/employer-letters/{id}`: a new version of the draft.
pub async fn revise(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let body: EmployerLetterBody = body.parse("an employer letter")?;
    let id = path_id(id, "employer letter")?;
    let letter = use_case::revise(
        &*app.store,
        &app.config,
        &caller(&principal, &headers),
        &id,
        &body,
    )
    .await?;
    Ok(answered(&app, StatusCode::OK, &letter))
}

/// `GET /api/v1/employer-letters/{id}`: where it stands, with the document (the PDF preview).
pub async fn show(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let id = path_id(id, "employer letter")?;
    let letter = use_case::show(&*app.store, &caller(&principal, &headers), &id).await?;
    Ok(answered(&app, StatusCode::OK, &letter))
}

/// The person's answer, recorded by the adviser who showed them the letter.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The SHA-256 of the version the person was shown (the letter's `sha256`).
    pub sha256: String,
    pub approved: bool,
}

/// `POST /api/v1/employer-letters/{id}/answer`: the person's answer at a meeting.
pub async fn record_answer(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let body: AnswerBody = body.parse("the person's answer")?;
    let id = path_id(id, "employer letter")?;
    let letter = use_case::record_answer(
        &*app.store,
        &caller(&principal, &headers),
        &id,
        &body.sha256,
        body.approved,
        ApprovalMethod::AtMeeting,
    )
    .await?;
    Ok(answered(&app, StatusCode::OK, &letter))
}

/// `POST /api/v1/employer-letters/{id}/send`: the approved version to the outbox.
pub async fn send(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let id = path_id(id, "employer letter")?;
    let letter = use_case::send(
        &*app.store,
        &app.config,
        &app.outbox.wake,
        &caller(&principal, &headers),
        &id,
    )
    .await?;
    Ok(answered(&app, StatusCode::OK, &letter))
}

/// `POST /api/v1/employer-letters/{id}/link`: a one-time link for the person to read this
/// version and answer, for the adviser to send them.
pub async fn issue_link(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let id = path_id(id, "employer letter")?;
    let link = use_case::issue_link(
        &*app.store,
        &app.config,
        &app.form_key.link_key(),
        &caller(&principal, &headers),
        &id,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "url": link.url,
            "code": link.code,
            "version": link.version,
            "expires": link.expires.to_rfc3339(),
        })),
    )
        .into_response())
}
