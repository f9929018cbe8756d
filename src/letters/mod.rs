//! Letters from a service to the referring practice (or a referrer of another kind): an adviser's structured feedback letter, or
//! the automatic letter a decline produces. Pure: checks the letter, lays it out ([`Letter`]),
//! renders the PDF ([`pdf`]) and builds the FHIR resources that hold it: a Composition (the
//! structured letter), a DocumentReference (the PDF, for filing) and a Communication (the letter
//! as sent, whose status the outbox keeps current).

pub mod approval_link;
pub mod delivery_state;
pub mod employer;
pub mod pdf;

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fhir::identifiers::value_part;
use crate::fhir::search::format_instant;
use crate::fhir::systems::{self, SNOMED};
use crate::fhir::terminology::{code_system, coding};
use crate::fhir::{IssueType, Issues};
use crate::letters::delivery_state::DeliveryState;
use crate::workflow::DeclineNotice;
use crate::workflow::action::{check_code, check_note};

/// SNOMED CT 371531000 |Report of clinical encounter (record artifact)|: GP Connect Send Document
/// v1's fixed document type, which GP systems file as correspondence (standards 4.1).
pub const DOCUMENT_TYPE: (&str, &str) = ("371531000", "Report of clinical encounter");

const MAX_SECTION: usize = 8000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Routine,
    Urgent,
}

impl Priority {
    /// The `letter-priority` code, which is also the FHIR `request-priority` code.
    pub fn code(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
        }
    }
}

/// `POST /api/v1/referrals/{id}/letters`: what an adviser writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LetterBody {
    pub priority: Priority,
    pub summary: String,
    #[serde(default)]
    pub support_given: Vec<String>,
    #[serde(default)]
    pub plan: Option<Plan>,
    #[serde(default)]
    pub recommendations: Option<String>,
    #[serde(default)]
    pub outcomes: Option<Outcomes>,
    pub author: Author,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// `action-plan` or `return-to-work-plan`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcomes {
    #[serde(default)]
    pub employment: Option<String>,
    #[serde(default)]
    pub health: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Author {
    pub name: String,
    #[serde(default)]
    pub role: Option<String>,
}

impl LetterBody {
    /// Every problem with the letter.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        let text = |issues: &mut Issues, expression: &str, value: &str, required: bool| {
            if required && value.trim().is_empty() {
                issues.error(IssueType::Required, expression, "must not be empty");
            }
            if value.chars().count() > MAX_SECTION {
                issues.error(
                    IssueType::TooLong,
                    expression,
                    format!("at most {MAX_SECTION} characters"),
                );
            }
        };
        text(&mut issues, "summary", &self.summary, true);
        text(&mut issues, "author.name", &self.author.name, true);
        if let Some(r) = &self.recommendations {
            text(&mut issues, "recommendations", r, true);
        }
        if let Some(p) = &self.plan {
            if !["action-plan", "return-to-work-plan"].contains(&p.kind.as_str()) {
                issues.error(
                    IssueType::CodeInvalid,
                    "plan.type",
                    format!("'{}' is not action-plan or return-to-work-plan", p.kind),
                );
            }
            text(&mut issues, "plan.text", &p.text, true);
        }
        for (i, c) in self.support_given.iter().enumerate() {
            check_code(
                &mut issues,
                &format!("supportGiven[{i}]"),
                "support-given",
                c,
            );
        }
        if let Some(o) = &self.outcomes {
            if let Some(e) = &o.employment {
                check_code(&mut issues, "outcomes.employment", "employment-outcome", e);
            }
            for (i, h) in o.health.iter().enumerate() {
                check_code(
                    &mut issues,
                    &format!("outcomes.health[{i}]"),
                    "health-outcome",
                    h,
                );
            }
        }
        check_note(&mut issues, "author.role", self.author.role.as_deref());
        issues
    }
}

/// Who and what a letter is about, read from the store by the caller.
#[derive(Debug, Clone)]
pub struct Context {
    /// `ServiceRequest/{id}`, `Patient/{id}`.
    pub referral: String,
    pub patient: String,
    pub referral_date: Option<NaiveDate>,
    pub service_name: String,
    /// `system|value` of the service and of the letter's recipient: the referring practice (or
    /// the one a person who referred themselves named), or a referrer of another kind.
    pub service: String,
    pub practice: String,
    pub practice_name: Option<String>,
    pub patient_name: Option<String>,
    pub nhs_number: Option<String>,
    pub birth_date: Option<String>,
}

/// One section of a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub paragraphs: Vec<String>,
}

/// A letter laid out: what the PDF shows and the Composition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub title: String,
    pub date: String,
    pub urgent: bool,
    pub priority: Priority,
    pub from_name: String,
    pub from_identifier: String,
    pub to_name: String,
    pub to_identifier: String,
    pub patient_line: String,
    pub referral_line: String,
    pub footer_identifier: String,
    pub sections: Vec<Section>,
    pub author_line: String,
    /// `feedback` or `decline`.
    pub kind: &'static str,
}

fn display(system: &str, code: &str) -> String {
    code_system(system)
        .display(code)
        .unwrap_or(code)
        .to_string()
}

fn spaced_nhs(n: &str) -> String {
    if n.len() == 10 {
        format!("{} {} {}", &n[..3], &n[3..6], &n[6..])
    } else {
        n.to_string()
    }
}

/// Whom a letter is addressed to, for its wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addressee {
    Practice,
    /// A referrer of another kind, by its kind (`talking-therapies`, …).
    Referrer(&'static str),
    /// The person's employer, by the contact the adviser addressed (a letter the person approved).
    Employer,
}

impl Addressee {
    fn of(recipient: &str) -> Addressee {
        let (system, _) = recipient.split_once('|').unwrap_or_default();
        if system == systems::employer_contact_system() {
            return Addressee::Employer;
        }
        match systems::referrer_kind_of_system(system).and_then(crate::caller::Role::other_referrer)
        {
            Some(role) => Addressee::Referrer(role.as_str()),
            None => Addressee::Practice,
        }
    }

    /// The recipient's identifier as the letter prints it.
    fn identifier(self, code: &str) -> String {
        match self {
            Addressee::Practice => format!("ODS {code}"),
            Addressee::Referrer(kind) => format!("{} {code}", kind_words(kind)),
            Addressee::Employer => code.to_string(),
        }
    }
}

/// A kind of referrer in words.
fn kind_words(kind: &str) -> &str {
    match kind {
        "talking-therapies" => "Talking Therapies",
        "physiotherapy" => "Physiotherapy",
        "secondary-care" => "Secondary care",
        "voluntary-sector" => "Voluntary sector",
        other => other,
    }
}

impl Context {
    fn addressee(&self) -> Addressee {
        Addressee::of(&self.practice)
    }

    fn frame(&self, title: String, priority: Priority, now: DateTime<Utc>) -> Letter {
        let nhs = self.nhs_number.as_deref().map(spaced_nhs);
        let patient_line = format!(
            "Re: {}{}{}",
            self.patient_name
                .as_deref()
                .unwrap_or("the person referred"),
            nhs.as_deref()
                .map(|n| format!(", NHS number {n}"))
                .unwrap_or_default(),
            self.birth_date
                .as_deref()
                .map(|d| format!(", born {d}"))
                .unwrap_or_default(),
        );
        let referral_line = match self.referral_date {
            Some(d) => format!("Your referral of {d} to {}", self.service_name),
            None => format!("Your referral to {}", self.service_name),
        };
        Letter {
            title,
            date: now.date_naive().to_string(),
            urgent: priority == Priority::Urgent,
            priority,
            from_name: self.service_name.clone(),
            from_identifier: format!("service {}", value_part(&self.service)),
            to_name: self.practice_name.clone().unwrap_or_else(|| {
                match self.addressee() {
                    Addressee::Practice => "The referring GP practice",
                    Addressee::Referrer(_) => "The referring organisation",
                    Addressee::Employer => "The person's employer",
                }
                .into()
            }),
            to_identifier: self.addressee().identifier(value_part(&self.practice)),
            patient_line,
            referral_line,
            footer_identifier: format!(
                "{}{}",
                self.service_name,
                nhs.map(|n| format!(" - NHS number {n}"))
                    .unwrap_or_default()
            ),
            sections: Vec::new(),
            author_line: String::new(),
            kind: "feedback",
        }
    }

    /// The adviser's feedback letter.
    pub fn feedback(&self, body: &LetterBody, now: DateTime<Utc>) -> Letter {
        let mut letter = self.frame(
            format!("Feedback from {}", self.service_name),
            body.priority,
            now,
        );
        letter.sections.push(Section {
            title: "Summary".into(),
            paragraphs: vec![body.summary.clone()],
        });
        if !body.support_given.is_empty() {
            letter.sections.push(Section {
                title: "Support given".into(),
                paragraphs: body
                    .support_given
                    .iter()
                    .map(|c| format!("• {}", display("support-given", c)))
                    .collect(),
            });
        }
        if let Some(p) = &body.plan {
            letter.sections.push(Section {
                title: if p.kind == "return-to-work-plan" {
                    "Return-to-work plan".into()
                } else {
                    "Action plan".into()
                },
                paragraphs: vec![p.text.clone()],
            });
        }
        if let Some(r) = &body.recommendations {
            letter.sections.push(Section {
                title: match self.addressee() {
                    Addressee::Practice => "Recommendations for the GP".into(),
                    Addressee::Referrer(_) | Addressee::Employer => "Recommendations".into(),
                },
                paragraphs: vec![r.clone()],
            });
        }
        if let Some(o) = &body.outcomes {
            let mut paragraphs = Vec::new();
            if let Some(e) = &o.employment {
                paragraphs.push(format!("Work: {}", display("employment-outcome", e)));
            }
            paragraphs.extend(
                o.health
                    .iter()
                    .map(|h| format!("Health: {}", display("health-outcome", h))),
            );
            if !paragraphs.is_empty() {
                letter.sections.push(Section {
                    title: "Outcomes".into(),
                    paragraphs,
                });
            }
        }
        letter.author_line = match &body.author.role {
            Some(role) => format!("{}, {role}", body.author.name),
            None => body.author.name.clone(),
        };
        letter
    }

    /// The letter a decline sends: the reason, so the practice can refer better next time.
    pub fn decline(&self, notice: &DeclineNotice, author: &str, now: DateTime<Utc>) -> Letter {
        let mut letter = self.frame(
            format!("Referral not accepted by {}", self.service_name),
            Priority::Routine,
            now,
        );
        letter.kind = "decline";
        let mut reason = vec![format!(
            "We have not accepted this referral. Reason: {}.",
            notice.reason_display
        )];
        if let Some(c) = &notice.criterion {
            reason.push(format!(
                "The eligibility criterion not met: {}.",
                display("eligibility-criterion", c)
            ));
        }
        if let Some(n) = &notice.note {
            reason.push(n.clone());
        }
        letter.sections.push(Section {
            title: "Outcome of triage".into(),
            paragraphs: reason,
        });
        letter.sections.push(Section {
            title: "What this means".into(),
            paragraphs: vec![format!(
                "No further action is needed from {} for this referral. We send this so that referrals to {} reach people it can help. The person has been told, or will be.",
                match self.addressee() {
                    Addressee::Practice => "the practice",
                    Addressee::Referrer(_) | Addressee::Employer => "you",
                },
                self.service_name
            )],
        });
        letter.author_line = author.to_string();
        letter
    }
}

/// Ids for the resources one letter is stored as.
#[derive(Debug, Clone)]
pub struct LetterIds {
    pub composition: String,
    pub document: String,
    pub communication: String,
}

/// The FHIR resources a letter is stored as, with the PDF.
pub fn resources(
    letter: &Letter,
    context: &Context,
    ids: &LetterIds,
    pdf: &[u8],
    now: DateTime<Utc>,
) -> [Value; 3] {
    let at = format_instant(now);
    let service = identifier_ref(&context.service, &context.service_name);
    let practice = identifier_ref(
        &context.practice,
        context
            .practice_name
            .as_deref()
            .unwrap_or(match context.addressee() {
                Addressee::Practice => "Referring practice",
                Addressee::Referrer(_) => "Referring organisation",
                Addressee::Employer => "The person's employer",
            }),
    );
    let doc_type = json!({ "coding": [{ "system": SNOMED, "code": DOCUMENT_TYPE.0, "display": DOCUMENT_TYPE.1 }] });
    let author = json!([{ "display": letter.author_line }]);
    let composition = json!({
        "resourceType": "Composition",
        "id": ids.composition,
        "status": "final",
        "type": doc_type,
        "subject": { "reference": context.patient },
        "date": at,
        "author": author,
        "title": letter.title,
        "confidentiality": "N",
        "custodian": service,
        "event": [{ "detail": [{ "reference": context.referral }] }],
        "section": letter.sections.iter().map(|s| json!({
            "title": s.title,
            "text": { "status": "generated", "div": xhtml(&s.paragraphs) },
        })).collect::<Vec<_>>(),
    });
    let sha1 = base64::engine::general_purpose::STANDARD.encode(sha1(pdf));
    let document = json!({
        "resourceType": "DocumentReference",
        "id": ids.document,
        "status": "current",
        "docStatus": "final",
        "type": doc_type,
        "subject": { "reference": context.patient },
        "date": at,
        "author": [service],
        "custodian": service,
        "description": letter.title,
        "content": [{
            "attachment": {
                "contentType": "application/pdf",
                "data": base64::engine::general_purpose::STANDARD.encode(pdf),
                "size": pdf.len(),
                "hash": sha1,
                "title": format!("{}.pdf", letter.title),
                "creation": at,
            }
        }],
        "context": { "related": [
            { "reference": context.referral },
            { "reference": format!("Composition/{}", ids.composition) },
        ] },
    });
    let communication = json!({
        "resourceType": "Communication",
        "id": ids.communication,
        "identifier": [{ "system": systems::local_code_system("letter-id"), "value": ids.communication }],
        "basedOn": [{ "reference": context.referral }],
        "status": DeliveryState::Queued.communication_status(),
        "statusReason": { "coding": [coding("letter-delivery-state", DeliveryState::Queued.code())] },
        "category": [{ "text": letter.kind }],
        "priority": letter.priority.code(),
        "subject": { "reference": context.patient },
        "topic": { "text": letter.title },
        "recipient": [practice],
        "sender": service,
        "payload": [{ "contentReference": { "reference": format!("DocumentReference/{}", ids.document) } }],
    });
    [composition, document, communication]
}

fn identifier_ref(system_value: &str, display: &str) -> Value {
    let mut reference = crate::fhir::identifiers::identifier_reference(system_value);
    reference["display"] = json!(display);
    reference
}

/// FHIR narrative: one paragraph per item, escaped.
fn xhtml(paragraphs: &[String]) -> String {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>", escape(p)))
        .collect();
    format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{body}</div>")
}

/// The paragraphs of narrative [`xhtml`] wrote, as text again.
pub fn paragraphs_of(div: &str) -> Vec<String> {
    div.split("<p>")
        .skip(1)
        .filter_map(|p| p.split_once("</p>").map(|(text, _)| text))
        .map(|text| {
            text.replace("<br/>", "\n")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', "<br/>")
}

/// SHA-1 of the attachment: FHIR's `Attachment.hash` is defined as SHA-1.
fn sha1(data: &[u8]) -> [u8; 20] {
    use aws_lc_rs::digest;
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    let mut out = [0u8; 20];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests;
