//! `GET /api/v1/reports` and `GET /api/v1/reports/{name}`: the aggregate reports, for
//! commissioners and service managers, as JSON, CSV (`Accept: text/csv`) or a FHIR
//! MeasureReport (`Accept: application/fhir+json`).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::{caller, require_scope};
use super::error::ApiError;
use crate::app::reports::{self, Filters};
use crate::auth::{Principal, scope};
use crate::reports::render;

/// A report's filters as a query string: the API's, and the dashboard's form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    place: Option<String>,
}

impl ReportQuery {
    /// The filters asked for; a parameter left empty (a form's blank field) is no filter.
    pub(super) fn filters(self) -> Filters {
        let given = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Filters {
            service: given(self.service),
            from: given(self.from),
            to: given(self.to),
            place: given(self.place),
        }
    }
}

const TAKES: &str =
    "`service` (a service id), `from` and `to` (months, YYYY-MM) and `place` (a postcode district)";

/// `GET /api/v1/reports`: the reports the caller may read.
pub async fn list(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::REPORTS)?;
    let caller = caller(&principal, &headers);
    let services = reports::readable_services(&app.config, &caller)?
        .iter()
        .map(|s| json!({ "id": s.id, "name": s.name }))
        .collect::<Vec<_>>();
    let list = reports::catalogue(&app.config, &caller)?
        .into_iter()
        .map(|r| {
            json!({
                "name": r.name,
                "title": r.title,
                "description": r.description,
                "href": format!("/api/v1/reports/{}", r.name),
                "measure": r.measure_url(),
            })
        })
        .collect::<Vec<_>>();
    Ok(Json(json!({
        "services": services,
        "suppressionThreshold": app.config.reports.suppression_threshold,
        "reports": list,
    }))
    .into_response())
}

/// What the caller asked the report in: CSV, a MeasureReport, or (the default) JSON.
enum Form {
    Json,
    Csv,
    MeasureReport,
}

fn form(headers: &HeaderMap) -> Form {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    // The first media type named wins; a client naming none gets JSON.
    for part in accept.split(',') {
        let media = part.split(';').next().unwrap_or_default().trim();
        match media {
            "text/csv" => return Form::Csv,
            "application/fhir+json" => return Form::MeasureReport,
            "application/json" => return Form::Json,
            _ => {}
        }
    }
    Form::Json
}

/// `GET /api/v1/reports/{name}[?service=&from=&to=&place=]`: one report.
pub async fn show(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::REPORTS)?;
    let Path(name) = name.map_err(|e| ApiError::NotFound(format!("no such report: {e}")))?;
    let Query(q) = query.map_err(|e| super::body::query_error(e, TAKES))?;
    let filters = q.filters();
    let made = reports::make(
        &*app.store,
        &app.config,
        &caller(&principal, &headers),
        &name,
        &filters,
    )
    .await?;
    Ok(match form(&headers) {
        Form::Json => Json(render::json(
            made.report,
            &made.published,
            &made.scope,
            &made.generated,
        ))
        .into_response(),
        Form::Csv => csv_response(&made),
        Form::MeasureReport => {
            let body = render::measure_report(
                made.report,
                &made.published,
                &made.generated,
                (&made.period.0, &made.period.1),
            );
            super::error::fhir_response(axum::http::StatusCode::OK, &body)
        }
    })
}

/// A report's figures as a CSV download (`{name}.csv`): the API's and the dashboard's alike.
pub(super) fn csv_response(made: &reports::Made) -> Response {
    let mut response = render::csv(&made.published).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.csv\"",
        made.report.name
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
