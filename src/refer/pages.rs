//! The self-referral form's pages, as HTML (maud escapes every value): the NHS.UK frontend's
//! components — header, skip link, error summary, form groups with their errors, radios,
//! checkboxes, date inputs — in plain words, working without any script (the pages carry none).

use maud::{DOCTYPE, Markup, html};

use crate::fhir::Issues;
use crate::fhir::terminology::code_system;
use crate::intake::self_referral::{Answers, field};

const SERVICE_NAME: &str = "Refer yourself for work and health support";

fn layout(title: &str, main: Markup) -> Markup {
    layout_for(
        SERVICE_NAME,
        "/refer",
        title,
        main,
        "Your answers go only to the service you choose. Nothing you type here is kept in this browser or sent to any other website.",
    )
}

/// A public page for a person: the NHS.UK header naming `header` (linking to `home`), `main`,
/// and the footer's reassurance `footer`. No script, nothing from another site.
pub(crate) fn layout_for(
    header: &str,
    home: &str,
    title: &str,
    main: Markup,
    footer: &str,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // Nothing a person types is sent to another site, and search engines keep no copy.
                meta name="robots" content="noindex, nofollow";
                title { (title) " – " (header) }
                link rel="icon" href="/dashboard/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/dashboard/assets/nhsuk-frontend.min.css";
                link rel="stylesheet" href="/dashboard/assets/dashboard.css";
            }
            body {
                a class="nhsuk-skip-link" href="#maincontent" { "Skip to main content" }
                header class="nhsuk-header" role="banner" {
                    div class="nhsuk-header__container nhsuk-width-container" {
                        div class="nhsuk-header__service" {
                            a class="nhsuk-header__service-logo" href=(home) {
                                span class="nhsuk-header__service-name" { (header) }
                            }
                        }
                    }
                }
                div class="nhsuk-width-container" {
                    main class="nhsuk-main-wrapper" id="maincontent" tabindex="-1" {
                        (main)
                    }
                }
                footer class="nhsuk-footer" {
                    div class="nhsuk-width-container" {
                        p class="nhsuk-body-s" { (footer) }
                    }
                }
            }
        }
    }
}

/// A service a person may choose.
pub struct ServiceChoice<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// Where it works, in words (its postcode districts), when it says.
    pub area: Option<String>,
}

/// The first page: the services a person may refer themselves to, by name, and a search by
/// postcode. `found`: the district searched for and the services that say they cover it;
/// `problem`: what was wrong with the search.
pub fn start(
    all: &[ServiceChoice<'_>],
    found: Option<(&str, &[ServiceChoice<'_>])>,
    problem: Option<&str>,
    postcode: &str,
) -> Markup {
    let title = if problem.is_some() {
        "Error: Find a service"
    } else {
        "Find a service"
    };
    layout(
        title,
        html! {
            @if let Some(problem) = problem {
                (summary(&[(field::POSTCODE.to_string(), problem.to_string())]))
            }
            h1 { "Refer yourself for work and health support" }
            p class="nhsuk-lede-text" {
                "If you are in work but struggling with a health condition, or off sick, these services can help you stay in work or return to it. You do not need to see your GP first."
            }
            form method="post" action="/refer/find" novalidate {
                (text_group(&errors_of(problem), field::POSTCODE, "Find services near you by postcode", "For example, S1 2HE. It is used only to find services and is not kept.", postcode, "postal-code", "nhsuk-input nhsuk-input--width-10"))
                button class="nhsuk-button nhsuk-button--secondary" type="submit" data-module="nhsuk-button" { "Find services" }
            }
            @if let Some((district, near)) = found {
                h2 { "Services covering " (district) }
                @if near.is_empty() {
                    p { "No service that takes self-referrals says it covers " (district) ". Some services do not say where they work: look for yours by name below, or ask your GP what support there is near you." }
                } @else {
                    (service_list(near))
                }
            }
            h2 { "All services you can refer yourself to" }
            (service_list(all))
        },
    )
}

fn service_list(services: &[ServiceChoice<'_>]) -> Markup {
    html! {
        ul class="nhsuk-list" {
            @for s in services {
                li {
                    a href=(format!("/refer/{}", s.id)) { "Refer yourself to " (s.name) }
                    @if let Some(area) = &s.area {
                        br;
                        span class="nhsuk-body-s" { (area) }
                    }
                }
            }
        }
    }
}

/// What the form is drawn with.
pub struct FormPage<'a> {
    pub service_id: &'a str,
    pub service_name: &'a str,
    /// Days within which the service aims to contact the person.
    pub contact_days: u32,
    pub answers: &'a Answers,
    /// Problems with what was sent, each at its question, in the order found.
    pub problems: &'a Issues,
    /// A note above the form (the form was sent too soon or too late).
    pub notice: Option<&'a str>,
    pub token: &'a str,
    /// The GP practices to choose from: (ODS code, name).
    pub practices: &'a [(String, String)],
}

/// The name of the field that catches automated senders: hidden from people (visually, from
/// screen readers and from the tab order); a form that fills it is not stored.
pub const TRAP: &str = "website-address";
/// The name of the form's token field.
pub const TOKEN: &str = "form-token";

/// The self-referral form.
pub fn form(p: &FormPage<'_>) -> Markup {
    let errors: Vec<(String, String)> = p
        .problems
        .iter()
        .map(|i| {
            (
                i.expression
                    .clone()
                    .unwrap_or_else(|| field::SERVICE.to_string()),
                i.diagnostics.clone(),
            )
        })
        .collect();
    let a = p.answers;
    let title = if errors.is_empty() {
        format!("Refer yourself to {}", p.service_name)
    } else {
        format!("Error: Refer yourself to {}", p.service_name)
    };
    let value = |name: &str| a.one(name).unwrap_or_default().to_string();
    let statuses = options("employment-status", &["not-recorded"]);
    let categories = options("health-condition-category", &[]);
    let needs = options("support-need", &[]);
    let ethnic = options("ethnic-group", &["not-recorded"]);
    let disability = options("disability-status", &["not-recorded"]);
    layout(
        &title,
        html! {
            @if !errors.is_empty() {
                (summary(&errors))
            }
            span class="nhsuk-caption-l" { (p.service_name) }
            h1 { "Refer yourself" }
            p { "This takes about 10 minutes. Questions marked (optional) can be left out." }
            @if let Some(notice) = p.notice {
                div class="nhsuk-inset-text" {
                    span class="nhsuk-u-visually-hidden" { "Information: " }
                    p { (notice) }
                }
            }
            form method="post" action=(format!("/refer/{}", p.service_id)) novalidate {
                input type="hidden" name=(TOKEN) value=(p.token);
                input type="hidden" name=(field::SERVICE) value=(p.service_id);
                div class="whg-trap" aria-hidden="true" {
                    label for=(TRAP) { "Leave this blank" }
                    input type="text" id=(TRAP) name=(TRAP) tabindex="-1" autocomplete="off";
                }

                h2 { "About you" }
                (text_group(&errors, field::GIVEN_NAME, "First name", "", &value(field::GIVEN_NAME), "given-name", "nhsuk-input nhsuk-u-width-two-thirds"))
                (text_group(&errors, field::FAMILY_NAME, "Last name", "", &value(field::FAMILY_NAME), "family-name", "nhsuk-input nhsuk-u-width-two-thirds"))
                (date_group(&errors, "Date of birth", "For example, 27 3 1984", [field::DOB_DAY, field::DOB_MONTH, field::DOB_YEAR], a, Some("bday")))
                (radios(&errors, field::SEX, "What is your sex?", "", &[("female", "Female"), ("male", "Male"), ("other", "Other"), ("prefer-not-to-say", "Prefer not to say")], a))
                (text_group(&errors, field::NHS_NUMBER, "NHS number (optional)", "This is a 10 digit number, like 999 123 4567. You can find it on a letter from the NHS or in the NHS App. Leave it blank if you do not know it: the service will find it.", &value(field::NHS_NUMBER), "off", "nhsuk-input nhsuk-input--width-10"))

                h2 { "How to contact you" }
                (text_group(&errors, field::POSTCODE, "Postcode", "For example, S1 2HE", &value(field::POSTCODE), "postal-code", "nhsuk-input nhsuk-input--width-10"))
                (text_group(&errors, field::ADDRESS_LINE_1, "Address line 1 (optional)", "Needed if you would like a letter", &value(field::ADDRESS_LINE_1), "address-line1", "nhsuk-input"))
                (text_group(&errors, field::ADDRESS_LINE_2, "Address line 2 (optional)", "", &value(field::ADDRESS_LINE_2), "address-line2", "nhsuk-input"))
                (text_group(&errors, field::TOWN, "Town or city (optional)", "", &value(field::TOWN), "address-level2", "nhsuk-input nhsuk-u-width-two-thirds"))
                (text_group(&errors, field::PHONE, "Phone number (optional)", "For example, 07700 900 982", &value(field::PHONE), "tel", "nhsuk-input nhsuk-input--width-20"))
                (text_group(&errors, field::EMAIL, "Email address (optional)", "", &value(field::EMAIL), "email", "nhsuk-input"))
                (radios(&errors, field::CONTACT, "How would you like the service to contact you?", "", &[("phone", "Phone call"), ("sms", "Text message"), ("email", "Email"), ("letter", "Letter")], a))
                (radios(&errors, field::INTERPRETER, "Do you need an interpreter?", "", &[("yes", "Yes"), ("no", "No")], a))
                (text_group(&errors, field::LANGUAGE, "If you need an interpreter, which language?", "", &value(field::LANGUAGE), "off", "nhsuk-input nhsuk-input--width-20"))

                h2 { "Your GP" }
                (group(&errors, field::GP, "Your GP practice (optional)", "The service will only write to your GP if you say they can, below.", |described, error| html! {
                    select class=(if error { "nhsuk-select nhsuk-select--error" } else { "nhsuk-select" }) id=(field::GP) name=(field::GP) aria-describedby=(described) {
                        option value="" selected[a.one(field::GP).is_none()] { "Choose your practice" }
                        @for (ods, name) in p.practices {
                            option value=(ods) selected[a.has(field::GP, ods)] { (name) }
                        }
                        option value="not-listed" selected[a.has(field::GP, "not-listed")] { "My practice is not listed" }
                        option value="not-registered" selected[a.has(field::GP, "not-registered")] { "I am not registered with a GP" }
                    }
                }))
                (text_group(&errors, field::GP_NAME, "If your practice is not listed, its name (optional)", "", &value(field::GP_NAME), "off", "nhsuk-input"))

                h2 { "Your work" }
                (radios(&errors, field::EMPLOYMENT, "Which of these describes you now?", "", &statuses, a))
                (text_group(&errors, field::JOB_TITLE, "Your job (optional)", "For example, care assistant", &value(field::JOB_TITLE), "organization-title", "nhsuk-input"))
                (text_group(&errors, field::EMPLOYER, "Your employer (optional)", "The service will not contact your employer unless you agree with your adviser first.", &value(field::EMPLOYER), "organization", "nhsuk-input"))
                (select_group(&errors, field::EMPLOYER_SIZE, "How many people work for your employer? (optional)", &options("employer-size-band", &["not-recorded"]), a))
                (select_group(&errors, field::SECTOR, "What kind of work does your employer do? (optional)", &options("employment-sector", &["not-recorded"]), a))
                (select_group(&errors, field::CONTRACT, "What kind of contract do you have? (optional)", &options("contract-type", &["not-recorded"]), a))
                (select_group(&errors, field::OCCUPATIONAL_HEALTH, "Does your employer have an occupational health service? (optional)", &options("occupational-health-access", &["not-recorded"]), a))
                (date_group(&errors, "If you are off sick, when did it start?", "For example, 2 11 2026. Needed only if you are off sick.", [field::OFF_SICK_DAY, field::OFF_SICK_MONTH, field::OFF_SICK_YEAR], a, None))

                h2 { "Your health" }
                (group(&errors, field::CONDITION, "What kind of health condition is affecting your work? (optional)", "", |described, error| html! {
                    select class=(if error { "nhsuk-select nhsuk-select--error" } else { "nhsuk-select" }) id=(field::CONDITION) name=(field::CONDITION) aria-describedby=(described) {
                        option value="" selected[a.one(field::CONDITION).is_none()] { "Choose one" }
                        @for (code, display) in &categories {
                            option value=(code) selected[a.has(field::CONDITION, code)] { (display) }
                        }
                        option value="none" selected[a.has(field::CONDITION, "none")] { "I do not have a health condition" }
                        option value="prefer-not-to-say" selected[a.has(field::CONDITION, "prefer-not-to-say")] { "Prefer not to say" }
                    }
                }))
                (textarea_group(&errors, field::CONDITION_TEXT, "Tell us about it in your own words (optional)", "Only the service will read this.", &value(field::CONDITION_TEXT)))

                h2 { "The help you would like" }
                (checkboxes(&errors, field::SUPPORT, "What would you like help with?", "Select all that apply.", &needs, a))
                (textarea_group(&errors, field::SUPPORT_TEXT, "Anything else you would like the service to know (optional)", "Needed if you chose 'Other'.", &value(field::SUPPORT_TEXT)))

                h2 { "Questions that help the service treat people fairly" }
                p { "These are optional. Your answers are counted with other people's to check the service is fair to everyone." }
                (select_group(&errors, field::ETHNICITY, "What is your ethnic group? (optional)", &ethnic, a))
                (radios(&errors, field::DISABILITY, "Do you have a condition or illness that limits your day-to-day activities? (optional)", "", &disability, a))

                h2 { "Who can see your answers" }
                (group(&errors, field::CONSENT_SERVICE, "", "", |described, error| html! {
                    div class="nhsuk-checkboxes" {
                        div class="nhsuk-checkboxes__item" {
                            input class="nhsuk-checkboxes__input" id=(field::CONSENT_SERVICE) name=(field::CONSENT_SERVICE) type="checkbox" value="yes" checked[a.has(field::CONSENT_SERVICE, "yes")] aria-describedby=(described) aria-invalid=[error.then_some("true")];
                            label class="nhsuk-label nhsuk-checkboxes__label" for=(field::CONSENT_SERVICE) {
                                "I agree that " (p.service_name) " can see my answers, to contact me within " (p.contact_days) " days and offer me support"
                            }
                        }
                    }
                }))
                (radios(&errors, field::CONSENT_FEEDBACK, "Can the service write to your GP practice about the support you get?", "Your GP will only get letters about your support and what happened. Your GP is not told you referred yourself unless you say yes.", &[("yes", "Yes"), ("no", "No")], a))
                (radios(&errors, field::CONSENT_EVALUATION, "Can your answers be used, without your name, to improve the service?", "Researchers see only answers with your name, address and NHS number removed.", &[("yes", "Yes"), ("no", "No")], a))
                p { "You can change your mind about any of these at any time by contacting the service." }

                button class="nhsuk-button" type="submit" data-module="nhsuk-button" { "Send my referral" }
            }
        },
    )
}

/// After sending: what happens next, and how to withdraw.
pub fn sent(
    service_name: &str,
    reference: &str,
    contact_days: u32,
    contact: Option<&str>,
) -> Markup {
    layout(
        "Referral sent",
        html! {
            div class="nhsuk-panel nhsuk-panel--confirmation" {
                h1 class="nhsuk-panel__title" { "Referral sent" }
                div class="nhsuk-panel__body" {
                    "Your reference is" br; strong { (reference) }
                }
            }
            h2 { "What happens next" }
            p { (service_name) " will contact you within " (contact_days) " days, the way you asked, to talk about the support you would like." }
            p { "Keep your reference. Quote it if you contact the service." }
            h2 { "If you change your mind" }
            p {
                "You can withdraw your referral, or change who can see your answers, at any time"
                @if let Some(contact) = contact {
                    ": contact " (service_name) " on " (contact) "."
                } @else {
                    ": tell " (service_name) " when they contact you."
                }
            }
            p { "If you feel unwell or need help now, call NHS 111, or 999 in an emergency." }
        },
    )
}

/// A page saying what went wrong and what to do next.
pub fn problem(title: &str, message: &str, again: Option<&str>) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            p { (message) }
            @if let Some(href) = again {
                a class="nhsuk-button" href=(href) draggable="false" { "Start again" }
            }
        },
    )
}

fn errors_of(problem: Option<&str>) -> Vec<(String, String)> {
    problem
        .map(|p| vec![(field::POSTCODE.to_string(), p.to_string())])
        .unwrap_or_default()
}

/// The codes of `system` as (code, display), without `except`.
fn options(system: &str, except: &[&str]) -> Vec<(&'static str, &'static str)> {
    let cs = code_system(system);
    cs.codes()
        .filter(|c| !except.contains(c))
        .map(|c| (c, cs.display(c).unwrap_or(c)))
        .collect()
}

fn error_for<'a>(errors: &'a [(String, String)], name: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|(f, _)| f == name)
        .map(|(_, m)| m.as_str())
}

/// The error summary: every problem, each a link to its question. Focused on load without
/// script (`autofocus`), as the frontend's own script would.
pub(crate) fn summary(errors: &[(String, String)]) -> Markup {
    html! {
        div class="nhsuk-error-summary" aria-labelledby="error-summary-title" tabindex="-1" autofocus {
            h2 class="nhsuk-error-summary__title" id="error-summary-title" { "There is a problem" }
            div class="nhsuk-error-summary__body" {
                ul class="nhsuk-list nhsuk-error-summary__list" role="list" {
                    @for (name, message) in errors {
                        // A problem with the form as a whole (the service question is the
                        // form's address, not a field) links to the page's content.
                        @let target = if name == field::SERVICE { "maincontent" } else { name.as_str() };
                        li { a href=(format!("#{target}")) { (message) } }
                    }
                }
            }
        }
    }
}

fn error_message(id: &str, message: &str) -> Markup {
    html! {
        span class="nhsuk-error-message" id=(id) {
            span class="nhsuk-u-visually-hidden" { "Error:" } " " (message)
        }
    }
}

/// One form group: label, hint, error and the control (`control(described-by ids, in error)`).
fn group(
    errors: &[(String, String)],
    name: &str,
    label: &str,
    hint: &str,
    control: impl FnOnce(&str, bool) -> Markup,
) -> Markup {
    let error = error_for(errors, name);
    let hint_id = format!("{name}-hint");
    let error_id = format!("{name}-error");
    let mut described = Vec::new();
    if !hint.is_empty() {
        described.push(hint_id.as_str());
    }
    if error.is_some() {
        described.push(error_id.as_str());
    }
    let described = described.join(" ");
    html! {
        div class=(if error.is_some() { "nhsuk-form-group nhsuk-form-group--error" } else { "nhsuk-form-group" }) {
            @if !label.is_empty() {
                label class="nhsuk-label" for=(name) { (label) }
            }
            @if !hint.is_empty() {
                div class="nhsuk-hint" id=(hint_id) { (hint) }
            }
            @if let Some(e) = error {
                (error_message(&error_id, e))
            }
            (control(&described, error.is_some()))
        }
    }
}

fn text_group(
    errors: &[(String, String)],
    name: &str,
    label: &str,
    hint: &str,
    value: &str,
    autocomplete: &str,
    class: &str,
) -> Markup {
    group(errors, name, label, hint, |described, error| {
        let class = if error {
            format!("{class} nhsuk-input--error")
        } else {
            class.to_string()
        };
        let kind = match autocomplete {
            "email" => "email",
            "tel" => "tel",
            _ => "text",
        };
        html! {
            input class=(class) id=(name) name=(name) type=(kind) value=(value)
                autocomplete=(autocomplete) spellcheck="false"
                aria-describedby=[(!described.is_empty()).then_some(described)]
                aria-invalid=[error.then_some("true")];
        }
    })
}

fn textarea_group(
    errors: &[(String, String)],
    name: &str,
    label: &str,
    hint: &str,
    value: &str,
) -> Markup {
    group(errors, name, label, hint, |described, error| {
        html! {
            textarea class=(if error { "nhsuk-textarea nhsuk-textarea--error" } else { "nhsuk-textarea" })
                id=(name) name=(name) rows="4"
                aria-describedby=[(!described.is_empty()).then_some(described)]
                aria-invalid=[error.then_some("true")] { (value) }
        }
    })
}

/// An optional question answered by one of `choices` (code, label), as a select whose first
/// option is no answer.
fn select_group(
    errors: &[(String, String)],
    name: &str,
    label: &str,
    choices: &[(&str, &str)],
    a: &Answers,
) -> Markup {
    group(errors, name, label, "", |described, error| {
        html! {
            select class=(if error { "nhsuk-select nhsuk-select--error" } else { "nhsuk-select" })
                id=(name) name=(name) aria-describedby=[(!described.is_empty()).then_some(described)] {
                option value="" selected[a.one(name).is_none()] { "Choose one" }
                @for (code, display) in choices {
                    option value=(code) selected[a.has(name, code)] { (display) }
                }
            }
        }
    })
}

/// A question answered by one of `choices` (value, label), as radios in a fieldset.
fn radios(
    errors: &[(String, String)],
    name: &str,
    legend: &str,
    hint: &str,
    choices: &[(&str, &str)],
    a: &Answers,
) -> Markup {
    choice_group(errors, name, legend, hint, choices, a, "radio")
}

/// A question answered by any of `choices`, as checkboxes in a fieldset.
fn checkboxes(
    errors: &[(String, String)],
    name: &str,
    legend: &str,
    hint: &str,
    choices: &[(&str, &str)],
    a: &Answers,
) -> Markup {
    choice_group(errors, name, legend, hint, choices, a, "checkbox")
}

fn choice_group(
    errors: &[(String, String)],
    name: &str,
    legend: &str,
    hint: &str,
    choices: &[(&str, &str)],
    a: &Answers,
    kind: &str,
) -> Markup {
    let error = error_for(errors, name);
    let hint_id = format!("{name}-hint");
    let error_id = format!("{name}-error");
    let mut described = Vec::new();
    if !hint.is_empty() {
        described.push(hint_id.clone());
    }
    if error.is_some() {
        described.push(error_id.clone());
    }
    let (list, item, input, label) = if kind == "radio" {
        (
            "nhsuk-radios",
            "nhsuk-radios__item",
            "nhsuk-radios__input",
            "nhsuk-label nhsuk-radios__label",
        )
    } else {
        (
            "nhsuk-checkboxes",
            "nhsuk-checkboxes__item",
            "nhsuk-checkboxes__input",
            "nhsuk-label nhsuk-checkboxes__label",
        )
    };
    html! {
        div class=(if error.is_some() { "nhsuk-form-group nhsuk-form-group--error" } else { "nhsuk-form-group" }) {
            fieldset class="nhsuk-fieldset" aria-describedby=[(!described.is_empty()).then(|| described.join(" "))] {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { (legend) }
                @if !hint.is_empty() {
                    div class="nhsuk-hint" id=(hint_id) { (hint) }
                }
                @if let Some(e) = error {
                    (error_message(&error_id, e))
                }
                div class=(list) {
                    @for (i, (value, text)) in choices.iter().enumerate() {
                        // The first choice carries the question's name as its id: the error
                        // summary's link lands on it.
                        @let id = if i == 0 { name.to_string() } else { format!("{name}-{}", i + 1) };
                        div class=(item) {
                            input class=(input) id=(id) name=(name) type=(kind) value=(value) checked[a.has(name, value)];
                            label class=(label) for=(id) { (text) }
                        }
                    }
                }
            }
        }
    }
}

/// A date asked as day, month and year, in a fieldset; `autocomplete` names a birthday's parts.
pub(crate) fn date_group(
    errors: &[(String, String)],
    legend: &str,
    hint: &str,
    [d, m, y]: [&str; 3],
    a: &Answers,
    autocomplete: Option<&str>,
) -> Markup {
    let error = error_for(errors, d)
        .or_else(|| error_for(errors, m))
        .or_else(|| error_for(errors, y));
    let hint_id = format!("{d}-hint");
    let error_id = format!("{d}-error");
    let described = if error.is_some() {
        format!("{hint_id} {error_id}")
    } else {
        hint_id.clone()
    };
    let part = |name: &str, label: &str, width: &str, suffix: &str| {
        let invalid = error_for(errors, name).is_some() || (error.is_some() && name == d);
        let class = if invalid {
            format!(
                "nhsuk-input nhsuk-date-input__input nhsuk-input--width-{width} nhsuk-input--error"
            )
        } else {
            format!("nhsuk-input nhsuk-date-input__input nhsuk-input--width-{width}")
        };
        html! {
            div class="nhsuk-date-input__item" {
                div class="nhsuk-form-group" {
                    label class="nhsuk-label nhsuk-date-input__label" for=(name) { (label) }
                    input class=(class) id=(name) name=(name) type="text" inputmode="numeric"
                        value=(a.one(name).unwrap_or_default())
                        autocomplete=(autocomplete.map_or("off".to_string(), |p| format!("{p}-{suffix}")));
                }
            }
        }
    };
    html! {
        div class=(if error.is_some() { "nhsuk-form-group nhsuk-form-group--error" } else { "nhsuk-form-group" }) {
            fieldset class="nhsuk-fieldset" role="group" aria-describedby=(described) {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { (legend) }
                div class="nhsuk-hint" id=(hint_id) { (hint) }
                @if let Some(e) = error {
                    (error_message(&error_id, e))
                }
                div class="nhsuk-date-input" {
                    (part(d, "Day", "2", "day"))
                    (part(m, "Month", "2", "month"))
                    (part(y, "Year", "4", "year"))
                }
            }
        }
    }
}
