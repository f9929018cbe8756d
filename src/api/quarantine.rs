//! The MESH quarantine, for information governance: messages from the gateway's MESH inbox that
//! answered none of its letters (junk, an acknowledgement from a mailbox the letter did not go to,
//! a message too large to read), acknowledged to MESH and kept here.
//!
//! Only information-governance clients holding `whg/mesh.quarantine` see it: the messages come
//! from any mailbox and may be about anyone, so no practice or service may read another's. Reading
//! a message's content is audited like any read of what may be personal data.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{request_id, require_scope};
use super::error::ApiError;
use crate::app::{Caller, quarantine};
use crate::auth::{Principal, scope};
use crate::fhir::{Issue, IssueType};

/// Messages listed when the caller does not say, and at most.
const DEFAULT_COUNT: u32 = 100;
const MAX_COUNT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default, rename = "_count")]
    count: Option<u32>,
    #[serde(default, rename = "_offset")]
    offset: Option<u32>,
}

/// `GET /api/v1/mesh/quarantine[?_count=&_offset=]`: quarantined messages, newest first, without
/// their content.
pub async fn list(
    State(app): State<AppState>,
    principal: Principal,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::MESH_QUARANTINE)?;
    let caller = Caller::new(&principal, None);
    quarantine::reviewer(&caller)?;
    let Query(q) = query.map_err(|e| {
        super::body::query_error(e, "`_count` (1 to 100) and `_offset` (0 or more)")
    })?;
    let count = q.count.unwrap_or(DEFAULT_COUNT);
    if count > MAX_COUNT {
        return Err(ApiError::BadRequest(
            Issue::error(
                IssueType::Invalid,
                "_count",
                format!("_count must be a whole number from 0 to {MAX_COUNT}"),
            )
            .into(),
        ));
    }
    let (total, messages) =
        quarantine::list(&*app.store, &caller, count, q.offset.unwrap_or(0)).await?;
    Ok(Json(json!({ "total": total, "messages": messages })).into_response())
}

/// `GET /api/v1/mesh/quarantine/{id}`: one quarantined message with its content (as text when it
/// is UTF-8, else base64; none when it was too large to read). The read is audited.
pub async fn show(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::MESH_QUARANTINE)?;
    let caller = Caller::new(&principal, request_id(&headers));
    quarantine::reviewer(&caller)?;
    let Path(id) = id.map_err(|e| ApiError::NotFound(format!("no such message: {e}")))?;
    let (message, content) = quarantine::show(&*app.store, &caller, &id).await?;
    let mut body = json!({ "message": message });
    match content.map(String::from_utf8) {
        Some(Ok(text)) => body["content"] = Value::String(text),
        Some(Err(bytes)) => {
            body["contentBase64"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes.into_bytes()))
        }
        None => {}
    }
    Ok(Json(body).into_response())
}
