//! `/letters/approve/{link}`: the one-time link on which a person reads a letter to their
//! employer and says yes or no. Public: the link is not proof of who holds it, so the page shows
//! nothing (not even the letter's state) until the person gives their date of birth and the
//! link's code, a few tries a day per letter (429 beyond); posts
//! from another site are refused; bodies are small. The link's token never reaches a log line
//! (`loggable_path`), and the pages send no referrer anywhere.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use http_body_util::BodyExt;

use super::AppState;
use super::dashboard::page;
use crate::app::employer_letters::{self as use_case, EmployerLetter, LinkRefusal};
use crate::intake::self_referral::Answers;
use crate::refer::approval::{self, field};

/// The most a post to the link may carry: a date of birth, an answer and a fingerprint.
const MAX_BODY_BYTES: usize = 4096;

pub fn routes() -> Router<AppState> {
    Router::new().route("/letters/approve/{link}", get(show).post(post))
}

fn action(link: &str) -> String {
    format!("/letters/approve/{link}")
}

/// A page of the link's: no referrer (its address is the link), kept by no cache.
fn link_page(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = page(status, markup, &[]);
    let h = response.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn refusal(why: LinkRefusal) -> Response {
    let (status, title, message) = match why {
        LinkRefusal::Unknown => (
            StatusCode::NOT_FOUND,
            "This link does not work",
            "Check you copied the whole link. If it still does not work, ask your adviser to send you a new one.",
        ),
        LinkRefusal::Expired => (
            StatusCode::GONE,
            "This link has expired",
            "Ask your adviser to send you a new link. The letter has not been sent.",
        ),
        LinkRefusal::Changed => (
            StatusCode::CONFLICT,
            "The letter has changed",
            "Your adviser has changed the letter since this link was made. Ask them for a link to the new version: the letter will not be sent until you have seen it.",
        ),
        LinkRefusal::Sent => (
            StatusCode::CONFLICT,
            "This letter has been sent",
            "You have already agreed to this letter and it has been sent. If you did not expect this, contact your adviser.",
        ),
        LinkRefusal::Answered => (
            StatusCode::CONFLICT,
            "You have already answered",
            "This link cannot be used again. If you have changed your mind, contact your adviser.",
        ),
        LinkRefusal::WrongBirthDate => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Check your date of birth",
            "The date of birth does not match.",
        ),
    };
    link_page(status, approval::problem(title, message))
}

fn service_name<'a>(app: &'a AppState, letter: &'a EmployerLetter) -> &'a str {
    let service = letter.document["custodian"]["identifier"]["value"]
        .as_str()
        .unwrap_or_default();
    app.config
        .service(service)
        .map_or(service, |s| s.name.as_str())
}

/// `GET /letters/approve/{link}`: who is asking.
async fn show(State(app): State<AppState>, Path(link): Path<String>) -> Response {
    let key = app.form_key.link_key();
    match use_case::open_link(&*app.store, &key, &link).await {
        // Whatever the letter's state, the page says nothing of it until the person has said
        // who they are.
        Ok(Ok(_)) => link_page(
            StatusCode::OK,
            approval::ask(&action(&link), None, &Answers(Vec::new())),
        ),
        Ok(Err(why)) => refusal(why),
        Err(e) => unavailable(e),
    }
}

/// `POST /letters/approve/{link}`: a date of birth (then the letter is shown), or a date of
/// birth and an answer about the version shown.
async fn post(
    State(app): State<AppState>,
    Path(link): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return link_page(
            StatusCode::FORBIDDEN,
            approval::problem(
                "We could not take your answer",
                "It did not come from this website's own page. Open the link your adviser sent you again.",
            ),
        );
    }
    let Ok(collected) = http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
    else {
        return link_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            approval::problem(
                "We could not take your answer",
                "Open the link your adviser sent you again.",
            ),
        );
    };
    let answers = Answers::from_urlencoded(&collected.to_bytes());
    let key = app.form_key.link_key();
    let opened = match use_case::open_link(&*app.store, &key, &link).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(why)) => return refusal(why),
        Err(e) => return unavailable(e),
    };
    let letter = &opened.letter;
    let service = service_name(&app, letter).to_string();
    let here = action(&link);
    let ask_again = |status: StatusCode, problem: &str| {
        link_page(status, approval::ask(&here, Some(problem), &answers))
    };
    if let Err(t) = app
        .limiter
        .admit_link_try(&*app.store, &letter.id, &app.config.employer_letters)
        .await
    {
        if t.first {
            tracing::warn!(letter = %letter.id, "too many dates of birth on one letter's link; further refusals are not logged until it admits again");
        }
        let mut response = link_page(
            StatusCode::TOO_MANY_REQUESTS,
            approval::problem(
                "Too many tries",
                "The details were tried too many times. Try again tomorrow, or ask your adviser to show you the letter.",
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&t.wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let Some(birth_date) = birth_date(&answers) else {
        return ask_again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your date of birth as numbers, for example 15 3 1984",
        );
    };
    let code = key.code_matches(&link, answers.one(field::CODE).unwrap_or_default());
    match use_case::is_the_person(&*app.store, letter, birth_date, code).await {
        Ok(true) => {}
        // Which of the two was wrong is not said.
        Ok(false) => {
            return ask_again(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The date of birth or the code does not match. Check them and try again",
            );
        }
        Err(e) => return unavailable(e),
    }
    // Only now may the holder learn the letter's state.
    if let Err(why) = opened.answerable {
        return refusal(why);
    }
    let shown = |status: StatusCode, problem: Option<&str>, sections: &[(String, Vec<String>)]| {
        let to = format!(
            "{} ({})",
            letter.recipient_name,
            crate::letters::employer::contact_address(&letter.recipient).unwrap_or_default()
        );
        link_page(
            status,
            approval::letter(&approval::Shown {
                service_name: &service,
                title: letter.document["description"].as_str().unwrap_or("Letter"),
                to: &to,
                sections,
                sha256: &letter.sha256,
                action: &here,
                answers: &answers,
                problem,
            }),
        )
    };
    let approved = match answers.one(field::ANSWER) {
        Some("yes") => true,
        Some("no") => false,
        given => {
            let sections = match use_case::sections_of(&*app.store, letter).await {
                Ok(s) => s,
                Err(e) => return unavailable(e),
            };
            // Just the date of birth: the letter; anything else is an answer not chosen.
            return if given.is_none() && answers.one(field::SHA256).is_none() {
                shown(StatusCode::OK, None, &sections)
            } else {
                shown(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(
                        "Select yes if we can send this letter to your employer, or no if we cannot",
                    ),
                    &sections,
                )
            };
        }
    };
    let sha256 = answers.one(field::SHA256).unwrap_or_default();
    match use_case::answer_on_link(&*app.store, letter, sha256, approved).await {
        Ok(Ok(())) => link_page(StatusCode::OK, approval::answered(&service, approved)),
        Ok(Err(why)) => refusal(why),
        Err(e) => unavailable(e),
    }
}

/// The date of birth the form gives, if it is a real date.
fn birth_date(answers: &Answers) -> Option<chrono::NaiveDate> {
    let number = |name: &str| answers.one(name)?.trim().parse::<u32>().ok();
    let year = answers.one(field::YEAR)?.trim();
    if year.len() != 4 {
        return None;
    }
    chrono::NaiveDate::from_ymd_opt(
        i32::try_from(number(field::YEAR)?).ok()?,
        number(field::MONTH)?,
        number(field::DAY)?,
    )
}

fn unavailable(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "the approval link's page could not be made");
    link_page(
        StatusCode::SERVICE_UNAVAILABLE,
        approval::problem(
            "Sorry, there is a problem with this page",
            "Try again later. Your letter has not been sent.",
        ),
    )
}
