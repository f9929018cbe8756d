//! `/refer`: the public self-referral form. Anyone may reach it, so each handler bounds what a
//! request may cost before anything else: the form is limited per source address and for all
//! sources together (429), its body in size (413); a form is taken only with a token the gateway
//! drew for this browser (its cookie) a person's while ago, from the gateway's own pages, and
//! with its trap field empty. Nothing personal goes in a URL or a log line: answers travel in
//! the body, the confirmation's address carries only the person's reference.
//!
//! The form's cookie holds a random value binding the browser's forms to it (`SameSite=Strict`,
//! so another site's form arrives without it); it is not a session and identifies nobody.

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use cookie::{Cookie, SameSite};
use http_body_util::BodyExt;

use super::AppState;
use super::auth::request_id;
use super::dashboard::{page, read_cookie, same_origin, secure, see_other};
use crate::app::self_referral::{
    self as app, Offer, SelfReferralError, TokenProblem, is_reference,
};
use crate::directory::outward_code;
use crate::fhir::Issues;
use crate::intake::self_referral::{Answers, field};
use crate::refer::pages::{self, FormPage, ServiceChoice};
use crate::services::Service;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/refer", get(start))
        .route("/refer/find", post(find))
        .route("/refer/{service}", get(draw).post(send))
        .route("/refer/{service}/sent/{reference}", get(sent))
}

/// The cookie binding a browser's forms, and how long it lives (as long as a form may).
fn binding_cookie(app: &AppState) -> &'static str {
    if secure(app) {
        "__Host-whg_refer"
    } else {
        "whg_refer"
    }
}

fn set_binding(app: &AppState, value: String) -> Cookie<'static> {
    Cookie::build((binding_cookie(app), value))
        .path(if secure(app) { "/" } else { "/refer" })
        .http_only(true)
        // Lax, not Strict: a person arriving from a service's website by a link keeps the
        // cookie (and so the forms open in their other tabs); a cross-site POST still arrives
        // without it.
        .same_site(SameSite::Lax)
        .secure(secure(app))
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(app.config.self_referral.form_lifetime_secs).unwrap_or(i64::MAX),
        ))
        .build()
}

fn choices<'a>(services: &[&'a Service]) -> Vec<ServiceChoice<'a>> {
    services
        .iter()
        .map(|s| ServiceChoice {
            id: &s.id,
            name: &s.name,
            area: s
                .eligibility
                .as_ref()
                .and_then(|e| e.postcode_districts.as_ref())
                .filter(|d| !d.is_empty())
                .map(|d| format!("For people living in {}", d.join(", "))),
        })
        .collect()
}

/// `GET /refer`: the services a person may refer themselves to.
async fn start(State(app): State<AppState>) -> Response {
    let offer = Offer::of(&app.config);
    page(
        StatusCode::OK,
        pages::start(&choices(&offer.services), None, None, ""),
        &[],
    )
}

/// `POST /refer/find`: the services for a postcode (sent in the body, never in the address).
async fn find(State(app): State<AppState>, body: Body) -> Response {
    let Some(bytes) = read_body(&app, body).await else {
        return too_large();
    };
    let answers = Answers::from_urlencoded(&bytes);
    let typed = answers.one(field::POSTCODE).unwrap_or_default();
    let offer = Offer::of(&app.config);
    let Some(district) = outward_code(typed) else {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::start(
                &choices(&offer.services),
                None,
                Some("Enter a postcode, like S1 2HE, or the first part of one, like S1"),
                typed,
            ),
            &[],
        );
    };
    // The directory's own rule: a service is offered for the districts it says it covers (one
    // that declares no area is found by name, in the full list).
    let query = crate::directory::Query {
        districts: vec![vec![district.clone()]],
        routes: vec![vec!["self-referral".to_string()]],
        ..Default::default()
    };
    let near = crate::directory::search(&app.config.services, &query);
    page(
        StatusCode::OK,
        pages::start(
            &choices(&offer.services),
            Some((&district, &choices(&near))),
            None,
            typed,
        ),
        &[],
    )
}

/// `GET /refer/{service}`: the form, with a new token for this browser.
async fn draw(
    State(app): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Response {
    let offer = Offer::of(&app.config);
    let Some(service) = offer.service(&service) else {
        return unknown_service();
    };
    fresh_form(
        &app,
        &headers,
        StatusCode::OK,
        service,
        &offer,
        &Answers::default(),
        None,
    )
}

/// `POST /refer/{service}`: the form sent. Stored and answered with the confirmation's address,
/// or drawn again with every problem at its question.
async fn send(
    State(app): State<AppState>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let offer = Offer::of(&app.config);
    let Some(service) = offer.service(&service) else {
        return unknown_service();
    };
    // Another site's page posting the form: refused before anything is spent or read.
    if !same_origin(&app, &headers) || cross_site(&headers) {
        crate::telemetry::instruments::self_referral("forged");
        return refused(&format!("/refer/{}", service.id));
    }
    let Some(bytes) = read_body(&app, body).await else {
        crate::telemetry::instruments::self_referral("too-large");
        return too_large();
    };
    let mut answers = Answers::from_urlencoded(&bytes);
    // The address names the service; what the body says of it is not believed.
    answers.0.retain(|(k, _)| k != field::SERVICE);
    answers.0.push((field::SERVICE.into(), service.id.clone()));
    // What is drawn back is never the trap's value.
    let trapped = answers.one(pages::TRAP).is_some();
    answers.0.retain(|(k, _)| k != pages::TRAP);
    let redraw = |status: StatusCode, outcome: &'static str, notice: &str| {
        crate::telemetry::instruments::self_referral(outcome);
        fresh_form(
            &app,
            &headers,
            status,
            service,
            &offer,
            &answers,
            Some(notice),
        )
    };

    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let source = super::client_address::client_address(
        peer.ip(),
        &forwarded,
        &app.config.limits.trusted_proxies,
    );
    if let Err(t) = app
        .limiter
        .admit_self_referral_from(&*app.store, source, &app.config.self_referral)
        .await
    {
        if t.first {
            tracing::warn!(
                retry_after = t.wait,
                "self-referral limit for one source reached; further refusals are not logged until it admits again"
            );
        }
        return with_retry_after(
            redraw(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                &format!(
                    "Too many forms have been sent from this address in a short time, so yours was not sent. Your answers are kept below: send it again in about {}, or ask your GP to refer you.",
                    minutes(t.wait)
                ),
            ),
            t.wait,
        );
    }

    let token = answers.one(pages::TOKEN).unwrap_or_default().to_string();
    let binding = read_cookie(&headers, binding_cookie(&app)).unwrap_or_default();
    let opened = app
        .form_key
        .open(&token, &binding, now_secs(), &app.config.self_referral);
    // Whatever stops a form here, a person's answers are kept and the form drawn again (with a
    // new token) to send: one filled in too quickly, left open too long, sent from a window
    // whose cookie was replaced, or with the trap filled (by a browser's autofill, say).
    // Nothing is stored, so something that is not a person gains nothing by being redrawn. A
    // token that is not this browser's is redrawn only for a post the browser says is the
    // gateway's own: drawing another site's answers into a fresh form would let it plant one.
    let form = match opened {
        Ok(form) if !trapped => form,
        _ if trapped => {
            return redraw(
                StatusCode::BAD_REQUEST,
                "trap",
                "Your form was not sent. Check your answers, then select 'Send my referral' again.",
            );
        }
        Err(TokenProblem::Forged) if !positively_same_origin(&app, &headers) => {
            crate::telemetry::instruments::self_referral("forged");
            return refused(&format!("/refer/{}", service.id));
        }
        Err(TokenProblem::Forged) => {
            return redraw(
                StatusCode::FORBIDDEN,
                "forged",
                "This form could not be sent from this window. Your answers are below: check them and send it again.",
            );
        }
        Err(TokenProblem::Expired) => {
            return redraw(
                StatusCode::UNPROCESSABLE_ENTITY,
                "redrawn",
                "This form was open for a long time, so it was not sent. Your answers are below: check them and send it again.",
            );
        }
        Err(TokenProblem::TooSoon) | Ok(_) => {
            return redraw(
                StatusCode::UNPROCESSABLE_ENTITY,
                "redrawn",
                "Check your answers, then select 'Send my referral' again.",
            );
        }
    };
    match app::refer_self(
        &*app.store,
        &app.config,
        &app.limiter,
        &answers,
        &form,
        request_id(&headers),
        chrono::Utc::now(),
    )
    .await
    {
        Ok(sent) => {
            crate::telemetry::instruments::self_referral(if sent.created {
                "stored"
            } else {
                "resent"
            });
            see_other(
                &format!("/refer/{}/sent/{}", sent.service_id, sent.reference),
                &[],
            )
        }
        Err(SelfReferralError::Invalid(problems)) => {
            crate::telemetry::instruments::self_referral("invalid");
            form_page(
                &app,
                StatusCode::UNPROCESSABLE_ENTITY,
                service,
                &offer,
                &answers,
                &problems,
                None,
                &token,
                None,
            )
        }
        Err(SelfReferralError::Throttled(wait)) => with_retry_after(
            redraw(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                &format!(
                    "Too many people are sending this form just now, so yours was not sent. Your answers are kept below: send it again in about {}, or ask your GP to refer you.",
                    minutes(wait)
                ),
            ),
            wait,
        ),
        Err(SelfReferralError::SentDifferently) => page(
            StatusCode::CONFLICT,
            pages::problem(
                "You have already sent this form",
                &format!(
                    "Your referral was sent to {} (reference {}). To change your answers, contact the service and quote your reference.",
                    service.name, form.reference
                ),
                None,
            ),
            &[],
        ),
        Err(SelfReferralError::Store(e)) => {
            tracing::error!(error = %e, "a self-referral could not be stored");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::problem(
                    "Sorry, there is a problem with the service",
                    "Your referral has not been sent. Try again later.",
                    Some(&format!("/refer/{}", service.id)),
                ),
                &[],
            )
        }
    }
}

/// `GET /refer/{service}/sent/{reference}`: what happens next. It looks nothing up: any
/// well-formed reference shows the same page, so it tells nobody whether a referral exists.
async fn sent(
    State(app): State<AppState>,
    Path((service, reference)): Path<(String, String)>,
) -> Response {
    let offer = Offer::of(&app.config);
    let (Some(service), true) = (offer.service(&service), is_reference(&reference)) else {
        return unknown_service();
    };
    let mut response = page(
        StatusCode::OK,
        pages::sent(
            &service.name,
            &reference,
            app.config.workflow.first_contact_target_days,
            service.public_contact.as_deref(),
        ),
        &[],
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The form with `answers` and a new token for this browser (setting its cookie if it has
/// none): drawn first, or drawn again after a refusal that stored nothing.
fn fresh_form(
    app: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    service: &Service,
    offer: &Offer<'_>,
    answers: &Answers,
    notice: Option<&str>,
) -> Response {
    let (binding, cookie) = binding_of(app, headers);
    let token = app
        .form_key
        .seal(now_secs(), &app::new_reference(), &binding);
    form_page(
        app,
        status,
        service,
        offer,
        answers,
        &Issues::new(),
        notice,
        &token,
        cookie,
    )
}

#[allow(clippy::too_many_arguments)]
fn form_page(
    app: &AppState,
    status: StatusCode,
    service: &Service,
    offer: &Offer<'_>,
    answers: &Answers,
    problems: &Issues,
    notice: Option<&str>,
    token: &str,
    cookie: Option<Cookie<'static>>,
) -> Response {
    let markup = pages::form(&FormPage {
        service_id: &service.id,
        service_name: &service.name,
        contact_days: app.config.workflow.first_contact_target_days,
        answers,
        problems,
        notice,
        token,
        practices: &offer.practices,
    });
    let cookies: Vec<Cookie<'_>> = cookie.into_iter().collect();
    let mut response = page(status, markup, &cookies);
    // A form a person is filling in is theirs alone: never kept by a cache.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The browser's binding: its cookie's value, or a new one with the cookie that sets it.
fn binding_of(app: &AppState, headers: &HeaderMap) -> (String, Option<Cookie<'static>>) {
    match read_cookie(headers, binding_cookie(app)).filter(|v| v.len() == 32) {
        Some(existing) => (existing, None),
        None => {
            let value = app::new_binding();
            (value.clone(), Some(set_binding(app, value)))
        }
    }
}

/// The body, if it is within `[self_referral] max_body_bytes`.
async fn read_body(app: &AppState, body: Body) -> Option<axum::body::Bytes> {
    let limit = app.config.self_referral.max_body_bytes;
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

/// Whether the browser says the form came from another site (Fetch Metadata).
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn unknown_service() -> Response {
    page(
        StatusCode::NOT_FOUND,
        pages::problem(
            "Page not found",
            "There is no self-referral form at this address. Choose a service from the list.",
            Some("/refer"),
        ),
        &[],
    )
}

fn refused(again: &str) -> Response {
    page(
        StatusCode::FORBIDDEN,
        pages::problem(
            "We could not send your form",
            "This form did not come from this website's own page, or its cookie was lost. Open the form again, fill it in and send it.",
            Some(again),
        ),
        &[],
    )
}

fn too_large() -> Response {
    page(
        StatusCode::PAYLOAD_TOO_LARGE,
        pages::problem(
            "Your answers are too long",
            "The form could not be sent because the answers are too long. Shorten the longest answers and send it again.",
            Some("/refer"),
        ),
        &[],
    )
}

/// `response` with `Retry-After: wait` (seconds).
fn with_retry_after(mut response: Response, wait: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// `secs` in words, rounded up to whole minutes.
fn minutes(secs: u64) -> String {
    match secs.div_ceil(60).max(1) {
        1 => "a minute".to_string(),
        n => format!("{n} minutes"),
    }
}

/// Whether the browser says this post came from the gateway's own page: its `Origin` is the
/// gateway's, or Fetch Metadata says `same-origin` (not merely the absence of either).
fn positively_same_origin(app: &AppState, headers: &HeaderMap) -> bool {
    let fetch_same = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "same-origin");
    let origin_same = headers.contains_key(header::ORIGIN) && same_origin(app, headers);
    fetch_same || origin_same
}
