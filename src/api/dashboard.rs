//! `/dashboard`: the pages for commissioners and service managers, signed in by OpenID Connect
//! with a session cookie (never a bearer token: a client system's token opens nothing here).
//! Each handler reads the session, calls the reports or sign-in use case, and answers with a
//! page from [`crate::dashboard::pages`].
//!
//! Cookies: the session and a sign-in under way, both sealed by the gateway, `HttpOnly`,
//! `SameSite=Lax` (the provider sends the browser back by a top-level GET, which `Strict` would
//! strip them from); their names and path are in [`Names`]. The one form that changes anything
//! (sign-out) carries the session's CSRF token and must come from the gateway's own origin.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cookie::{Cookie, SameSite};
use maud::Markup;
use serde::Deserialize;

use super::AppState;
use super::auth::request_id;
use super::reports::ReportQuery;
use crate::app::Caller;
use crate::app::reports::{self, Filters, Made, ReportsError};
use crate::app::sign_in::{Answer, Live, SignIn, SignInFailure, SignOutRefused, organisation_name};
use crate::dashboard::{self, OVERVIEW, assets, chart_kind, pages};
use crate::signin::session::{Ended, SIGN_IN_SECS};

/// The cookies' names and path. Over https they carry the `__Host-` prefix (RFC 6265bis
/// §4.1.3.2: Secure, no Domain, Path=/), so no sibling subdomain or plain-http attacker can plant
/// one; over plain http on loopback (a developer's machine) they cannot, and are kept to
/// /dashboard.
struct Names {
    session: &'static str,
    sign_in: &'static str,
    path: &'static str,
}

const HTTPS_NAMES: Names = Names {
    session: "__Host-whg_session",
    sign_in: "__Host-whg_sign_in",
    path: "/",
};
const LOOPBACK_NAMES: Names = Names {
    session: "whg_session",
    sign_in: "whg_sign_in",
    path: "/dashboard",
};

fn names(app: &AppState) -> &'static Names {
    if secure(app) {
        &HTTPS_NAMES
    } else {
        &LOOPBACK_NAMES
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(overview))
        .route("/dashboard/reports/{name}", get(report))
        .route("/dashboard/reports/{name}/csv", get(report_csv))
        .route("/dashboard/sign-in", get(sign_in))
        .route(crate::app::sign_in::CALLBACK_PATH, get(callback))
        .route("/dashboard/sign-out", post(sign_out))
        .route("/dashboard/signed-out", get(signed_out))
        .route("/dashboard/assets/{*path}", get(asset))
        .route("/dashboard/ops", get(operations))
        .route("/dashboard/ops/alerts/{id}/acknowledge", post(acknowledge))
}

/// The dashboard's Content-Security-Policy: its own stylesheets and images, forms only to
/// itself, no script at all, never framed.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A page, with the dashboard's CSP, and these cookies set.
pub(super) fn page(status: StatusCode, markup: Markup, cookies: &[Cookie<'_>]) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let h = response.headers_mut();
    page_headers(h);
    set_cookies(h, cookies);
    response
}

/// The dashboard's CSP, and a referrer policy under which its forms carry their origin to the
/// gateway (the sign-out check) and nothing goes to another site.
fn page_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

fn set_cookies(h: &mut HeaderMap, cookies: &[Cookie<'_>]) {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c.encoded().to_string()) {
            h.append(header::SET_COOKIE, v);
        }
    }
}

pub(super) fn see_other(location: &str, cookies: &[Cookie<'_>]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    page_headers(h);
    set_cookies(h, cookies);
    response
}

/// Whether the gateway is reached over https (cookies are then `Secure`).
pub(super) fn secure(app: &AppState) -> bool {
    app.config
        .base_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

fn cookie<'c>(app: &AppState, name: &'c str, value: String, max_age_secs: u64) -> Cookie<'c> {
    Cookie::build((name, value))
        .path(names(app).path)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure(app))
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age_secs).unwrap_or(i64::MAX),
        ))
        .build()
}

fn removal<'c>(app: &AppState, name: &'c str) -> Cookie<'c> {
    cookie(app, name, String::new(), 0)
}

/// The value of the request's cookie `name`; none if it is sent more than once (a second one
/// was planted beside the gateway's, and which is which cannot be told).
pub(super) fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .filter(|c| c.name() == name);
    match (found.next(), found.next()) {
        (Some(one), None) => Some(one.value().to_string()),
        _ => None,
    }
}

/// The session cookie renewing a live session (its idle clock restarted).
fn renewal<'c>(app: &AppState, live: &Live) -> Cookie<'c> {
    let left = live.until.saturating_sub(live.session.seen);
    cookie(app, names(app).session, live.cookie.clone(), left)
}

/// Why a request has no signed-in person.
enum Away {
    /// The gateway has no `[sign_in]`.
    Disabled,
    Ended(Ended),
    /// Too many pages too fast: whole seconds to wait.
    Throttled(u64),
}

impl Away {
    /// The page to answer with (the landing page, saying why), clearing a dead session cookie.
    fn response(self, app: &AppState) -> Response {
        let ended = match self {
            Away::Disabled => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::landing(None, false),
                    &[],
                );
            }
            Away::Ended(ended) => ended,
            Away::Throttled(wait) => {
                let mut response = page(
                    StatusCode::TOO_MANY_REQUESTS,
                    pages::problem(
                        None,
                        "Too many pages at once",
                        &format!(
                            "You have asked for a lot of figures in a short time. Wait {wait} second{}, then try again.",
                            if wait == 1 { "" } else { "s" }
                        ),
                        false,
                    ),
                    &[],
                );
                if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return response;
            }
        };
        let notice = match ended {
            Ended::Absent => None,
            Ended::Forged => Some("You are not signed in. Sign in to see the figures."),
            Ended::Idle => Some(
                "Your session ended because it was not used for a while. Sign in again to carry on.",
            ),
            Ended::Expired => {
                Some("Your session reached its time limit. Sign in again to carry on.")
            }
            Ended::SignedOut => Some("You signed out of this session. Sign in again to carry on."),
            Ended::NoLongerAdmitted => Some(
                "Your organisation can no longer use this role here. Ask the gateway's administrators if you think that is wrong.",
            ),
            Ended::Unchecked => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::problem(
                        None,
                        "Sorry, there is a problem with the service",
                        "Your session cannot be checked just now. Try again in a few minutes.",
                        false,
                    ),
                    &[],
                );
            }
        };
        let clear = [removal(app, names(app).session)];
        page(
            StatusCode::UNAUTHORIZED,
            pages::landing(notice, true),
            if ended == Ended::Absent { &[] } else { &clear },
        )
    }
}

/// The signed-in person, or why there is none.
async fn signed_in<'a>(app: &'a AppState, headers: &HeaderMap) -> Result<(&'a SignIn, Live), Away> {
    let sign_in = app.sign_in.as_ref().ok_or(Away::Disabled)?;
    let live = sign_in
        .session(
            &*app.store,
            read_cookie(headers, names(app).session).as_deref(),
        )
        .await
        .map_err(Away::Ended)?;
    Ok((sign_in, live))
}

/// The signed-in person, admitted by their per-person page limit; or why not.
async fn admitted(app: &AppState, headers: &HeaderMap) -> Result<Live, Away> {
    let (_, live) = signed_in(app, headers).await?;
    app.limiter
        .admit_person(
            &*app.store,
            &live.session.person.subject,
            &app.config.limits,
        )
        .await
        .map_err(|t| Away::Throttled(t.wait))?;
    Ok(live)
}

/// What one page of reports needs, made or refused.
struct Viewing<'a> {
    app: &'a AppState,
    live: Live,
    services: Vec<(String, String)>,
    organisation: String,
    request_id: Option<String>,
}

impl Viewing<'_> {
    fn viewer(&self) -> pages::Viewer<'_> {
        pages::Viewer {
            role: self.live.session.person.role.label(),
            organisation: &self.organisation,
            csrf: &self.live.session.csrf,
        }
    }

    fn answer(&self, status: StatusCode, markup: Markup) -> Response {
        page(status, markup, &[renewal(self.app, &self.live)])
    }

    /// The reports `names` for this person under `filters`, or the page that says why not.
    async fn make(&self, names: &[&str], filters: &Filters) -> Result<Vec<Made>, ReportProblem> {
        let principal = self.live.session.person.principal();
        let caller = Caller::new(&principal, self.request_id.clone());
        match reports::make_several(&*self.app.store, &self.app.config, &caller, names, filters)
            .await
        {
            Ok(made) => Ok(made),
            Err(ReportsError::BadFilter(issues)) => Err(ReportProblem::Filters(
                issues
                    .iter()
                    .map(|i| {
                        (
                            i.expression.clone().unwrap_or_default(),
                            i.diagnostics.clone(),
                        )
                    })
                    .collect(),
            )),
            // Neither page repeats what was asked for: the address is anyone's to write, and
            // its text is not the gateway's to show.
            Err(ReportsError::UnknownReport(_)) => Err(ReportProblem::Page(self.answer(
                StatusCode::NOT_FOUND,
                pages::problem(
                    Some(&self.viewer()),
                    "Report not found",
                    "There is no report at this address. The dashboard lists every report.",
                    false,
                ),
            ))),
            Err(ReportsError::Forbidden(_)) => Err(ReportProblem::Page(self.answer(
                StatusCode::FORBIDDEN,
                pages::problem(
                    Some(&self.viewer()),
                    "You cannot see these figures",
                    "You can see the figures of the services you commission or manage, and of no other. Choose one of yours from the list.",
                    false,
                ),
            ))),
            Err(ReportsError::Store(e)) => {
                tracing::error!(error = %e, "dashboard: the store failed");
                Err(ReportProblem::Page(self.answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::problem(
                        Some(&self.viewer()),
                        "Sorry, there is a problem with the service",
                        "The figures cannot be read just now. Try again in a few minutes.",
                        false,
                    ),
                )))
            }
        }
    }
}

enum ReportProblem {
    /// The filters were wrong: (field, what to do) for the form.
    Filters(Vec<(String, String)>),
    /// Anything else: the page to answer with.
    Page(Response),
}

/// The session and what the pages need of it, or why there is none.
async fn viewing<'a>(app: &'a AppState, headers: &HeaderMap) -> Result<Viewing<'a>, Away> {
    let live = admitted(app, headers).await?;
    let principal = live.session.person.principal();
    let caller = Caller::new(&principal, None);
    // The services the person may filter by: the reports' one tenancy rule decides.
    let services = match reports::readable_services(&app.config, &caller) {
        Ok(s) => s.iter().map(|s| (s.id.clone(), s.name.clone())).collect(),
        Err(_) => Vec::new(),
    };
    let organisation = organisation_name(&live.session.person, &app.config.services).to_string();
    Ok(Viewing {
        app,
        live,
        services,
        organisation,
        request_id: request_id(headers),
    })
}

/// An address the dashboard's forms and links never make. It changes nothing (a sign-in under
/// way is left to finish: anyone can send a browser such an address) and repeats nothing of
/// what it said.
fn bad_query() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        pages::problem(
            None,
            "The address is not one the dashboard makes",
            "Its filters could not be read. Go back to the dashboard and use the form.",
            false,
        ),
        &[],
    )
}

/// Why no page of figures can be made for a request.
enum Refusal {
    Away(Away),
    /// An address the dashboard's own forms and links never make.
    Query,
}

impl Refusal {
    fn response(self, app: &AppState) -> Response {
        match self {
            Refusal::Away(away) => away.response(app),
            Refusal::Query => bad_query(),
        }
    }
}

/// The signed-in person and the filters they asked for, or why there is no page to make.
async fn asked<'a>(
    app: &'a AppState,
    headers: &HeaderMap,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<(Viewing<'a>, Filters), Refusal> {
    let v = viewing(app, headers).await.map_err(Refusal::Away)?;
    let Query(q) = query.map_err(|_| Refusal::Query)?;
    Ok((v, q.filters()))
}

/// A page's status: 400 when the filters were wrong (the form shows where).
fn status_for(problems: &[(String, String)]) -> StatusCode {
    if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// `GET /dashboard`: the landing page, or for a signed-in person the overview.
async fn overview(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Response {
    let (v, filters) = match asked(&app, &headers, query).await {
        Ok(asked) => asked,
        Err(Refusal::Away(away)) => {
            let mut response = away.response(&app);
            // Not signed in: the landing page is the dashboard's front door, not an error.
            if response.status() == StatusCode::UNAUTHORIZED {
                *response.status_mut() = StatusCode::OK;
            }
            return response;
        }
        Err(refusal) => return refusal.response(&app),
    };
    // Operations staff have no figures: their page is the alerts.
    if v.live.session.person.role == crate::signin::PersonRole::Operations {
        return see_other("/dashboard/ops", &[renewal(&app, &v.live)]);
    }
    let target_days = app.config.workflow.first_contact_target_days;
    let (made, problems) = match v.make(OVERVIEW, &filters).await {
        Ok(made) => (made, Vec::new()),
        Err(ReportProblem::Filters(problems)) => (Vec::new(), problems),
        Err(ReportProblem::Page(response)) => return response,
    };
    let q = dashboard::query(&filters);
    let sections: Vec<pages::Section<'_>> = made
        .iter()
        .map(|m| pages::Section {
            made: m,
            kind: chart_kind(m.report.name, m.published.columns.len(), target_days),
            query: &q,
        })
        .collect();
    let others: Vec<(&str, &str)> = crate::reports::CATALOGUE
        .iter()
        .filter(|r| !OVERVIEW.contains(&r.name))
        .map(|r| (r.name, r.title))
        .collect();
    let form = pages::FilterForm {
        action: "/dashboard",
        services: &v.services,
        filters: &filters,
        problems: &problems,
        local_authorities: &app.config.local_authorities,
    };
    let status = status_for(&problems);
    v.answer(
        status,
        pages::overview(&v.viewer(), &form, &sections, &others),
    )
}

/// `GET /dashboard/reports/{name}`: one report, with its filters.
async fn report(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Response {
    let (v, filters) = match asked(&app, &headers, query).await {
        Ok(asked) => asked,
        Err(refusal) => return refusal.response(&app),
    };
    let (made, problems) = match v.make(&[name.as_str()], &filters).await {
        Ok(mut made) => (made.pop(), Vec::new()),
        Err(ReportProblem::Filters(problems)) => (None, problems),
        Err(ReportProblem::Page(response)) => return response,
    };
    let title = crate::reports::report(&name).map_or("Report", |r| r.title);
    let action = format!("/dashboard/reports/{name}");
    let q = dashboard::query(&filters);
    let section = made.as_ref().map(|m| pages::Section {
        made: m,
        kind: chart_kind(
            m.report.name,
            m.published.columns.len(),
            app.config.workflow.first_contact_target_days,
        ),
        query: &q,
    });
    let form = pages::FilterForm {
        action: &action,
        services: &v.services,
        filters: &filters,
        problems: &problems,
        local_authorities: &app.config.local_authorities,
    };
    let status = status_for(&problems);
    v.answer(
        status,
        pages::report(&v.viewer(), &form, section.as_ref(), title),
    )
}

/// `GET /dashboard/reports/{name}/csv`: one report's figures as CSV, as the API serves them.
async fn report_csv(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Response {
    let (v, filters) = match asked(&app, &headers, query).await {
        Ok(asked) => asked,
        Err(refusal) => return refusal.response(&app),
    };
    let made = match v.make(&[name.as_str()], &filters).await {
        Ok(mut made) => made.remove(0),
        Err(ReportProblem::Filters(problems)) => {
            let text = problems
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("\n");
            return v.answer(
                StatusCode::BAD_REQUEST,
                pages::problem(Some(&v.viewer()), "The filters are not right", &text, false),
            );
        }
        Err(ReportProblem::Page(response)) => return response,
    };
    let mut response = super::reports::csv_response(&made);
    let h = response.headers_mut();
    set_cookies(h, &[renewal(&app, &v.live)]);
    response
}

/// `GET /dashboard/sign-in`: off to the provider, with a cookie remembering the sign-in.
async fn sign_in(State(app): State<AppState>) -> Response {
    let Some(sign_in) = app.sign_in.as_ref() else {
        return Away::Disabled.response(&app);
    };
    match sign_in.start().await {
        Ok((url, pending)) => see_other(
            &url,
            &[cookie(&app, names(&app).sign_in, pending, SIGN_IN_SECS)],
        ),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard sign-in could not start");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::problem(
                    None,
                    "Sorry, you cannot sign in just now",
                    &format!("{e}. Try again in a few minutes."),
                    false,
                ),
                &[],
            )
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /dashboard/callback`: the provider's answer; a session, or why not.
async fn callback(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    let Some(sign_in) = app.sign_in.as_ref() else {
        return Away::Disabled.response(&app);
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(_) => return bad_query(),
    };
    let answer = Answer {
        code: q.code,
        state: q.state,
        error: q.error,
    };
    let finished = sign_in
        .finish(
            &*app.store,
            &app.config.services,
            read_cookie(&headers, names(&app).sign_in).as_deref(),
            &answer,
            request_id(&headers),
        )
        .await;
    let clear = removal(&app, names(&app).sign_in);
    match finished {
        Ok(live) => see_other("/dashboard", &[clear, renewal(&app, &live)]),
        Err(failure) => {
            let status = match &failure {
                SignInFailure::NotStarted | SignInFailure::StateMismatch => StatusCode::BAD_REQUEST,
                SignInFailure::Denied(_) | SignInFailure::Refused(_) => StatusCode::FORBIDDEN,
                SignInFailure::Provider(crate::signin::oidc::SignInError::Rejected(_)) => {
                    StatusCode::FORBIDDEN
                }
                SignInFailure::Provider(_) | SignInFailure::Store(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            tracing::warn!(error = %failure.loggable(), "dashboard sign-in refused");
            page(
                status,
                pages::problem(
                    None,
                    "You could not be signed in",
                    &failure.to_string(),
                    true,
                ),
                // An answer for another sign-in (forged, or from another tab) leaves this
                // browser's own sign-in to finish: anyone can send a browser such an address.
                if matches!(failure, SignInFailure::StateMismatch) {
                    &[]
                } else {
                    std::slice::from_ref(&clear)
                },
            )
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

/// Whether a form post comes from the gateway's own pages: its `Origin` (or, without one, its
/// `Referer`) is the gateway's origin. Browsers send `Origin` on every cross-site POST.
pub(super) fn same_origin(app: &AppState, headers: &HeaderMap) -> bool {
    let Some(base) = app
        .config
        .base_url
        .as_deref()
        .and_then(|b| url::Url::parse(b).ok())
    else {
        return false;
    };
    match headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
    {
        Some(claimed) => {
            claimed
                .to_str()
                .ok()
                .and_then(|v| url::Url::parse(v).ok())
                .map(|u| u.origin())
                == Some(base.origin())
        }
        // A form post with neither (a browser told to send no referrer) is judged by the
        // CSRF token alone.
        None => true,
    }
}

/// `POST /dashboard/sign-out`: the session ends (its CSRF token and origin checked).
async fn sign_out(
    State(app): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (sign_in, live) = match signed_in(&app, &headers).await {
        Ok(s) => s,
        Err(away) => return away.response(&app),
    };
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let refused = |message: &str| {
        page(
            StatusCode::FORBIDDEN,
            pages::problem(None, "You have not been signed out", message, false),
            &[],
        )
    };
    if !same_origin(&app, &headers) {
        return refused(
            "The sign-out form was sent from another site. Use the Sign out button on the dashboard.",
        );
    }
    match sign_in
        .sign_out(&*app.store, &live.session, &csrf, request_id(&headers))
        .await
    {
        Ok(()) => see_other(
            "/dashboard/signed-out",
            &[removal(&app, names(&app).session)],
        ),
        Err(SignOutRefused::Csrf) => refused(
            "The sign-out form did not come from your dashboard page. Use the Sign out button on the dashboard.",
        ),
        Err(SignOutRefused::Store(e)) => {
            tracing::error!(error = %e, "dashboard sign-out could not be audited");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::problem(
                    None,
                    "Sorry, there is a problem with the service",
                    "You have not been signed out. Try again in a few minutes.",
                    false,
                ),
                &[],
            )
        }
    }
}

/// `GET /dashboard/signed-out`.
async fn signed_out(State(app): State<AppState>) -> Response {
    let end = app.sign_in.as_ref().and_then(SignIn::end_session_url);
    page(StatusCode::OK, pages::signed_out(end.as_deref()), &[])
}

/// `GET /dashboard/assets/{path}`: the stylesheets and icons, cacheable for a day.
async fn asset(Path(path): Path<String>) -> Response {
    match assets::asset(&path) {
        Some((bytes, media_type)) => {
            let mut response = bytes.into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            );
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// What `/dashboard/ops` says after an acknowledgement: a code the acknowledge handler puts in
/// its redirect, never text from the address shown back.
#[derive(Debug, Deserialize)]
pub struct OpsQuery {
    #[serde(default)]
    done: Option<String>,
}

/// `GET /dashboard/ops`: the alerts the signed-in person may see (operations staff every one, a
/// service manager their service's), open first.
async fn operations(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<OpsQuery>, QueryRejection>,
) -> Response {
    let live = match admitted(&app, &headers).await {
        Ok(live) => live,
        Err(away) => return away.response(&app),
    };
    let person = &live.session.person;
    let principal = person.principal();
    let organisation = organisation_name(person, &app.config.services).to_string();
    let viewer = pages::Viewer {
        role: person.role.label(),
        organisation: &organisation,
        csrf: &live.session.csrf,
    };
    let answer = |status: StatusCode, markup: Markup| page(status, markup, &[renewal(&app, &live)]);
    if !matches!(
        person.role,
        crate::signin::PersonRole::Operations | crate::signin::PersonRole::ServiceManager
    ) {
        return answer(
            StatusCode::FORBIDDEN,
            pages::problem(
                Some(&viewer),
                "You cannot see alerts",
                "Alerts are for the gateway's operations staff and for service managers (their own service's). Ask for one of those roles if you need them.",
                false,
            ),
        );
    }
    let listed = match crate::app::alerts::listed(&*app.store, &principal).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::error!(error = %e, "operations page: the store failed");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::problem(
                    Some(&viewer),
                    "Sorry, there is a problem with the service",
                    "The alerts cannot be read just now. Try again in a few minutes.",
                    false,
                ),
            );
        }
    };
    let open: Vec<_> = listed
        .open
        .iter()
        .map(|alert| alert_row(&app, alert, &person.subject))
        .collect();
    let done: Vec<_> = listed
        .acknowledged
        .iter()
        .map(|alert| alert_row(&app, alert, &person.subject))
        .collect();
    let notice = match query.ok().and_then(|Query(q)| q.done).as_deref() {
        Some("acknowledged") => Some("The alert is acknowledged."),
        Some("already") => Some("Someone else acknowledged that alert first."),
        _ => None,
    };
    let routes = !app.config.alerts.routes.is_empty();
    answer(
        StatusCode::OK,
        pages::operations(&viewer, &open, &done, notice, routes),
    )
}

/// `alert` as the page of the person signed in as `subject` shows it.
fn alert_row<'a>(
    app: &'a AppState,
    alert: &'a crate::alerts::Alert,
    subject: &str,
) -> pages::AlertRow<'a> {
    pages::AlertRow {
        service: alert
            .raised
            .service
            .as_deref()
            .and_then(|id| app.config.service(id))
            .map(|s| s.name.as_str()),
        acknowledged_by_viewer: alert.acknowledged.as_ref().is_some_and(|a| a.by == subject),
        alert,
    }
}

/// `POST /dashboard/ops/alerts/{id}/acknowledge`: the alert acknowledged by the signed-in person
/// (the session's CSRF token and the gateway's origin checked), audited.
async fn acknowledge(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<SignOutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let live = match admitted(&app, &headers).await {
        Ok(live) => live,
        Err(away) => return away.response(&app),
    };
    let refused = |message: &str| {
        page(
            StatusCode::FORBIDDEN,
            pages::problem(None, "The alert was not acknowledged", message, false),
            &[],
        )
    };
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !same_origin(&app, &headers)
        || !crate::signin::session::same_secret(&csrf, &live.session.csrf)
    {
        return refused(
            "The form did not come from your alerts page. Use the Acknowledge button on the alerts page.",
        );
    }
    let person = &live.session.person;
    let principal = person.principal();
    let renewed = [renewal(&app, &live)];
    match crate::app::alerts::acknowledge(
        &*app.store,
        &principal,
        &person.subject,
        &id,
        request_id(&headers),
    )
    .await
    {
        Ok(crate::app::alerts::Acknowledged::Done) => {
            see_other("/dashboard/ops?done=acknowledged", &renewed)
        }
        Ok(crate::app::alerts::Acknowledged::Already) => {
            see_other("/dashboard/ops?done=already", &renewed)
        }
        // Not there, or not this person's to see: the same page for both.
        Ok(crate::app::alerts::Acknowledged::NotFound) => page(
            StatusCode::NOT_FOUND,
            pages::problem(
                None,
                "Alert not found",
                "There is no alert of yours at this address. The alerts page lists them.",
                false,
            ),
            &renewed,
        ),
        Err(e) => {
            tracing::error!(error = %e, "an alert's acknowledgement could not be recorded");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::problem(
                    None,
                    "Sorry, there is a problem with the service",
                    "The alert was not acknowledged. Try again in a few minutes.",
                    false,
                ),
                &renewed,
            )
        }
    }
}
