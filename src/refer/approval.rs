//! The pages of the one-time link on which a person approves a letter to their employer: first
//! their date of birth (the link alone shows nothing), then the letter exactly as it would be
//! sent, with a yes and a no; then what happens next. Plain words, no script, every error at its
//! field and in the summary, as the self-referral form's pages.

use maud::{Markup, html};

use super::pages::{date_group, layout_for, summary};
use crate::intake::self_referral::Answers;

const HEADER: &str = "Check a letter to your employer";

/// The form fields.
pub mod field {
    pub const DAY: &str = "birth-day";
    pub const MONTH: &str = "birth-month";
    pub const YEAR: &str = "birth-year";
    pub const ANSWER: &str = "answer";
    pub const SHA256: &str = "version";
    pub const CODE: &str = "code";
}

fn layout(title: &str, main: Markup) -> Markup {
    layout_for(
        HEADER,
        "#maincontent",
        title,
        main,
        "This page is only for the person the letter is about. Nothing you type here is kept in this browser or sent to any other website.",
    )
}

/// The first page, and the one wrong details draw again: who is asking. It says nothing of the
/// letter, the service or the person: the link alone is not theirs.
pub fn ask(action: &str, problem: Option<&str>, answers: &Answers) -> Markup {
    let errors: Vec<(String, String)> = problem
        .map(|p| vec![(field::DAY.to_string(), p.to_string())])
        .unwrap_or_default();
    let code_hint = "The 6-digit code your adviser gave you, apart from this link";
    layout(
        "Check a letter to your employer",
        html! {
            @if !errors.is_empty() { (summary(&errors)) }
            h1 { "Check a letter to your employer" }
            p { "Your work and health adviser has written a letter to your employer. It will only be sent if you say yes." }
            p { "To see it, first tell us your date of birth and the code your adviser gave you, so we know it is you." }
            form method="post" action=(action) novalidate {
                (date_group(&errors, "What is your date of birth?", "For example, 15 3 1984",
                    [field::DAY, field::MONTH, field::YEAR], answers, Some("bday")))
                div class="nhsuk-form-group" {
                    label class="nhsuk-label" for=(field::CODE) { "Your code" }
                    div class="nhsuk-hint" id="code-hint" { (code_hint) }
                    input class="nhsuk-input nhsuk-input--width-10" id=(field::CODE) name=(field::CODE)
                        type="text" inputmode="numeric" autocomplete="one-time-code" spellcheck="false"
                        aria-describedby="code-hint" value=(answers.one(field::CODE).unwrap_or_default());
                }
                button class="nhsuk-button" type="submit" data-module="nhsuk-button" { "Continue" }
            }
        },
    )
}

/// What the person is shown of the letter.
pub struct Shown<'a> {
    pub service_name: &'a str,
    pub title: &'a str,
    pub to: &'a str,
    /// The letter's sections: title and paragraphs, as the PDF has them.
    pub sections: &'a [(String, Vec<String>)],
    pub sha256: &'a str,
    pub action: &'a str,
    /// The date of birth the person gave, carried to their answer.
    pub answers: &'a Answers,
    pub problem: Option<&'a str>,
}

/// The letter as it would be sent, with the two answers.
pub fn letter(p: &Shown<'_>) -> Markup {
    let errors: Vec<(String, String)> = p
        .problem
        .map(|m| vec![(format!("{}-yes", field::ANSWER), m.to_string())])
        .unwrap_or_default();
    let hidden = |name: &str| {
        html! { input type="hidden" name=(name) value=(p.answers.one(name).unwrap_or_default()); }
    };
    layout(
        "Your letter",
        html! {
            @if !errors.is_empty() { (summary(&errors)) }
            h1 { "Do you agree to this letter being sent to your employer?" }
            p { "Read it carefully. It will go to " strong { (p.to) } " only if you say yes. If anything in it is wrong, or you do not want your employer to know something, say no and tell your adviser." }
            div class="nhsuk-inset-text" {
                span class="nhsuk-u-visually-hidden" { "The letter: " }
                h2 { (p.title) }
                p { "From " (p.service_name) }
                @for (title, paragraphs) in p.sections {
                    h3 { (title) }
                    @for para in paragraphs { p { (para) } }
                }
            }
            form method="post" action=(p.action) novalidate {
                (hidden(field::DAY))
                (hidden(field::MONTH))
                (hidden(field::YEAR))
                (hidden(field::CODE))
                input type="hidden" name=(field::SHA256) value=(p.sha256);
                div class=(if errors.is_empty() { "nhsuk-form-group" } else { "nhsuk-form-group nhsuk-form-group--error" }) {
                    fieldset class="nhsuk-fieldset" {
                        legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--m" { "Can we send this letter to your employer?" }
                        @if let Some(m) = p.problem {
                            span class="nhsuk-error-message" id="answer-error" {
                                span class="nhsuk-u-visually-hidden" { "Error:" } " " (m)
                            }
                        }
                        div class="nhsuk-radios" {
                            div class="nhsuk-radios__item" {
                                input class="nhsuk-radios__input" id=(format!("{}-yes", field::ANSWER)) name=(field::ANSWER) type="radio" value="yes";
                                label class="nhsuk-label nhsuk-radios__label" for=(format!("{}-yes", field::ANSWER)) { "Yes, send this letter to my employer" }
                            }
                            div class="nhsuk-radios__item" {
                                input class="nhsuk-radios__input" id=(format!("{}-no", field::ANSWER)) name=(field::ANSWER) type="radio" value="no";
                                label class="nhsuk-label nhsuk-radios__label" for=(format!("{}-no", field::ANSWER)) { "No, do not send it" }
                            }
                        }
                    }
                }
                p class="nhsuk-body-s" { "This version of the letter has the fingerprint " code { (p.sha256) } ". Your answer is kept with it: if the letter is changed, you will be asked again." }
                button class="nhsuk-button" type="submit" data-module="nhsuk-button" { "Send my answer" }
            }
        },
    )
}

/// After the person answered.
pub fn answered(service_name: &str, approved: bool) -> Markup {
    layout(
        "Answer sent",
        html! {
            div class="nhsuk-panel nhsuk-panel--confirmation" {
                h1 class="nhsuk-panel__title" { "Thank you" }
                div class="nhsuk-panel__body" {
                    @if approved { "You agreed to the letter being sent" } @else { "You said no: the letter will not be sent" }
                }
            }
            h2 { "What happens next" }
            @if approved {
                p { "Your adviser at " (service_name) " will send the letter to your employer. Nothing else about you is sent." }
                p { "If you change your mind before it is sent, contact your adviser: it will then not be sent." }
            } @else {
                p { "Your adviser at " (service_name) " will talk to you about what to change." }
            }
            p { "This link cannot be used again." }
        },
    )
}

/// A page saying why the link cannot be used, and what to do.
pub fn problem(title: &str, message: &str) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            p { (message) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_page_asks_who_it_is_and_shows_nothing_of_the_letter() {
        let page = ask("/letters/approve/x", None, &Answers(Vec::new())).into_string();
        assert!(page.contains("What is your date of birth?") && page.contains("Your code"));
        assert!(!page.contains("<script"));
        // Nothing of the service either: the link alone is not the person's.
        assert!(!page.contains("Sheffield"));
        let wrong = ask("/x", Some("The details do not match"), &Answers(Vec::new())).into_string();
        assert!(
            wrong.contains("nhsuk-error-summary") && wrong.contains("href=\"#birth-day\""),
            "{wrong}"
        );
    }

    #[test]
    fn the_letter_page_carries_the_version_shown_and_escapes_what_the_adviser_wrote() {
        let sections = vec![(
            "Summary".to_string(),
            vec!["<b>Back</b> in January".to_string()],
        )];
        let answers = Answers(vec![(field::DAY.into(), "14".into())]);
        let page = letter(&Shown {
            service_name: "S",
            title: "Return-to-work plan from S",
            to: "HR (hr@example.com)",
            sections: &sections,
            sha256: "abc123",
            action: "/letters/approve/x",
            answers: &answers,
            problem: None,
        })
        .into_string();
        assert!(
            page.contains("&lt;b&gt;Back&lt;/b&gt; in January"),
            "{page}"
        );
        assert!(page.contains("name=\"version\" value=\"abc123\""), "{page}");
        assert!(page.contains("name=\"birth-day\" value=\"14\""), "{page}");
    }
}
