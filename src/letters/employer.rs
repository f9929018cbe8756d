//! Letters to a person's employer (a return-to-work plan, recommended workplace adjustments):
//! what the adviser writes, how it is laid out, and the Consent that records the person's
//! approval of one version of it. Pure.
//!
//! An employer is sent nothing about the person but such a letter, and only once the person has
//! approved *that* document (consent rule 6): the approval names the DocumentReference at its
//! version (`DocumentReference/{id}/_history/{v}`) and carries the PDF's hash, so an edit makes
//! a new version no approval covers. The person's health conditions are in the letter only when
//! the person's consent lets the service tell their employer about them (the `diagnosis` class);
//! the document says which classes it holds (`DocumentReference.category`), and the outbox asks
//! for each as it sends. What an employer is never told: the person's NHS number, date of
//! birth, or anything the adviser did not write here.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Author, Context, Letter, Priority, Section};
use crate::consent::DataClass;
use crate::fhir::search::format_instant;
use crate::fhir::systems;
use crate::fhir::terminology::coding;
use crate::fhir::{IssueType, Issues};
use crate::workflow::action::check_note;

const MAX_TEXT: usize = 4000;
const MAX_ADJUSTMENTS: usize = 20;

/// What the letter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmployerLetterKind {
    ReturnToWorkPlan,
    WorkplaceAdjustments,
}

impl EmployerLetterKind {
    pub fn code(self) -> &'static str {
        match self {
            EmployerLetterKind::ReturnToWorkPlan => "return-to-work-plan",
            EmployerLetterKind::WorkplaceAdjustments => "workplace-adjustments",
        }
    }
}

/// `POST /api/v1/referrals/{id}/employer-letters` (and `PUT` of one): what the adviser writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmployerLetterBody {
    pub kind: EmployerLetterKind,
    pub employer: EmployerContact,
    pub summary: String,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub adjustments: Vec<String>,
    /// Whether the adviser would tell the employer about the person's health conditions: done
    /// only if the person's consent covers it.
    #[serde(default)]
    pub include_health_conditions: bool,
    pub author: Author,
}

/// Whom the letter goes to: the employer's contact the person named (their manager, HR).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmployerContact {
    /// The employer, as the letter addresses it ("Moor Market Traders Ltd, HR").
    pub name: String,
    pub email: String,
}

impl EmployerLetterBody {
    /// Every problem with the letter, each at its field.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        let text = |issues: &mut Issues, at: &str, value: &str| {
            if value.trim().is_empty() {
                issues.error(IssueType::Required, at, "must not be empty");
            } else if value.chars().count() > MAX_TEXT {
                issues.error(
                    IssueType::TooLong,
                    at,
                    format!("at most {MAX_TEXT} characters"),
                );
            }
        };
        text(&mut issues, "employer.name", &self.employer.name);
        if self.employer.email.parse::<lettre::Address>().is_err() {
            issues.error(
                IssueType::Value,
                "employer.email",
                "must be the employer contact's e-mail address (the letter is sent there once the person approves it)",
            );
        }
        text(&mut issues, "summary", &self.summary);
        match (&self.plan, self.kind) {
            (Some(plan), _) => text(&mut issues, "plan", plan),
            (None, EmployerLetterKind::ReturnToWorkPlan) => issues.error(
                IssueType::Required,
                "plan",
                "a return-to-work plan letter needs the plan (for example, phased hours over four weeks)",
            ),
            (None, EmployerLetterKind::WorkplaceAdjustments) => {}
        }
        if self.kind == EmployerLetterKind::WorkplaceAdjustments && self.adjustments.is_empty() {
            issues.error(
                IssueType::Required,
                "adjustments",
                "a workplace adjustments letter lists at least one adjustment",
            );
        }
        if self.adjustments.len() > MAX_ADJUSTMENTS {
            issues.error(
                IssueType::TooLong,
                "adjustments",
                format!("at most {MAX_ADJUSTMENTS} adjustments"),
            );
        }
        for (i, a) in self.adjustments.iter().enumerate() {
            text(&mut issues, &format!("adjustments[{i}]"), a);
        }
        text(&mut issues, "author.name", &self.author.name);
        check_note(&mut issues, "author.role", self.author.role.as_deref());
        issues
    }

    /// The employer's contact as a recipient (`system|value`): what the approval names and the
    /// outbox sends to.
    pub fn recipient(&self) -> String {
        contact_identifier(&self.employer.email)
    }
}

/// An employer contact's identifier (`system|value`), by its e-mail address.
pub fn contact_identifier(email: &str) -> String {
    format!(
        "{}|{}",
        systems::employer_contact_system(),
        email.trim().to_ascii_lowercase()
    )
}

/// The e-mail address an employer contact's identifier (`system|value`) names, if it is one.
pub fn contact_address(recipient: &str) -> Option<&str> {
    let (system, value) = recipient.split_once('|')?;
    (system == systems::employer_contact_system()).then_some(value)
}

/// Whether the person's health conditions go in the letter, and why not when they do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditions {
    /// Not asked for by the adviser.
    NotAsked,
    /// Asked for and covered by the person's consent: these, in words.
    Included(Vec<String>),
    /// Asked for, and left out: the consent decision's reason.
    LeftOut(String),
}

impl Conditions {
    pub fn code(&self) -> &'static str {
        match self {
            Conditions::NotAsked => "not-asked",
            Conditions::Included(_) => "included",
            Conditions::LeftOut(_) => "left-out",
        }
    }

    /// The data classes a letter with these conditions holds, as its document says.
    pub fn classes(&self) -> Vec<DataClass> {
        match self {
            Conditions::Included(_) => vec![DataClass::AdviserLetter, DataClass::Diagnosis],
            _ => vec![DataClass::AdviserLetter],
        }
    }
}

impl Context {
    /// The letter to the employer. `self.practice` is the employer contact's identifier and
    /// `self.practice_name` its name; the person is named, never identified further.
    pub fn employer_letter(
        &self,
        body: &EmployerLetterBody,
        conditions: &Conditions,
        now: DateTime<Utc>,
    ) -> Letter {
        let to_employer = Context {
            nhs_number: None,
            birth_date: None,
            ..self.clone()
        };
        let title = match body.kind {
            EmployerLetterKind::ReturnToWorkPlan => {
                format!("Return-to-work plan from {}", self.service_name)
            }
            EmployerLetterKind::WorkplaceAdjustments => {
                format!("Workplace adjustments recommended by {}", self.service_name)
            }
        };
        let mut letter = to_employer.frame(title, Priority::Routine, now);
        letter.kind = "employer";
        let person = self.patient_name.as_deref().unwrap_or("The person");
        letter.referral_line =
            format!("{person} has read this letter and agreed to it being sent to you.");
        letter.sections.push(Section {
            title: "Summary".into(),
            paragraphs: vec![body.summary.clone()],
        });
        if let Some(plan) = &body.plan {
            letter.sections.push(Section {
                title: "Return-to-work plan".into(),
                paragraphs: vec![plan.clone()],
            });
        }
        if !body.adjustments.is_empty() {
            letter.sections.push(Section {
                title: "Workplace adjustments we recommend".into(),
                paragraphs: body.adjustments.iter().map(|a| format!("• {a}")).collect(),
            });
        }
        if let Conditions::Included(named) = conditions
            && !named.is_empty()
        {
            letter.sections.push(Section {
                title: "Health".into(),
                paragraphs: vec![format!(
                    "{person} has agreed that you may know about: {}.",
                    named.join("; ")
                )],
            });
        }
        letter.sections.push(Section {
            title: "About this letter".into(),
            paragraphs: vec![format!(
                "{} is a free, confidential service that helps people with a health condition stay in or return to work. This letter tells you only what {person} has agreed you may know. Please talk to {person} before acting on it, and keep it confidential.",
                self.service_name
            )],
        });
        letter.author_line = match &body.author.role {
            Some(role) => format!("{}, {role}", body.author.name),
            None => body.author.name.clone(),
        };
        letter
    }
}

/// The draft's resources: [`super::resources`] as a draft — the Composition `preliminary` (final
/// once sent), the DocumentReference with the classes it holds as its categories (each of its
/// versions is a finished document the person is asked to approve, and is never changed after),
/// the Communication in `preparation` (it becomes the letter as sent once the person approves
/// and the adviser sends it).
pub fn draft_resources(
    letter: &Letter,
    context: &Context,
    ids: &super::LetterIds,
    pdf: &[u8],
    classes: &[DataClass],
    now: DateTime<Utc>,
) -> [Value; 3] {
    let [mut composition, mut document, mut communication] =
        super::resources(letter, context, ids, pdf, now);
    composition["status"] = json!("preliminary");
    let categories = json!(
        classes
            .iter()
            .map(|c| json!({ "coding": [coding("consent-data-class", crate::consent::Code::code(*c))] }))
            .collect::<Vec<_>>()
    );
    composition["category"] = categories.clone();
    document["category"] = categories;
    communication["status"] = json!("preparation");
    if let Some(c) = communication.as_object_mut() {
        c.remove("statusReason");
    }
    [composition, document, communication]
}

/// The data classes a stored employer letter's document holds (its categories); the adviser's
/// letter class when it names none.
pub fn document_classes(document: &Value) -> Vec<DataClass> {
    use crate::consent::Code as _;
    let mut classes: Vec<DataClass> = document["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .filter(|c| c["system"] == DataClass::system())
        .filter_map(|c| {
            let code = c["code"].as_str()?;
            DataClass::ALL.iter().copied().find(|d| d.code() == code)
        })
        .collect();
    if classes.is_empty() {
        classes.push(DataClass::AdviserLetter);
    }
    classes
}

/// Whether a stored DocumentReference is an employer letter's (a draft, or one sent).
pub fn is_employer_letter(document: &Value) -> bool {
    document["resourceType"] == "DocumentReference"
        && document["context"]["related"].as_array().is_some_and(|r| {
            r.iter().any(|r| {
                r["reference"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("ServiceRequest/"))
            })
        })
        && holds_classes(document)
}

/// Whether a letter's Composition or DocumentReference names the classes it holds (its
/// categories): only an employer letter's do.
fn holds_classes(resource: &Value) -> bool {
    resource["category"].as_array().is_some_and(|c| {
        c.iter()
            .flat_map(|c| c["coding"].as_array().into_iter().flatten())
            .any(|c| c["system"] == <DataClass as crate::consent::Code>::system())
    })
}

/// `DocumentReference/{id}/_history/{version}`: one version of a document, as an approval
/// names it.
pub fn versioned(document_id: &str, version: i64) -> String {
    format!("DocumentReference/{document_id}/_history/{version}")
}

/// The SHA-256 of a letter's PDF, in hex: what the person is shown they approve, and what the
/// approval records.
pub fn sha256_hex(pdf: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(pdf))
}

/// The question the outbox (and the adviser's send) asks for each class an employer letter
/// holds: may this version go to this employer contact?
pub fn employer_question(
    recipient: &str,
    class: DataClass,
    document_id: &str,
    version: i64,
    at: DateTime<Utc>,
) -> crate::consent::Question {
    use crate::consent::{Action, Purpose, Question, Recipient, RecipientClass};
    Question {
        recipient: Recipient::addressed(recipient).unwrap_or(Recipient {
            class: RecipientClass::Employer,
            organisation: Some(recipient.to_string()),
        }),
        action: Action::Disclose,
        purpose: Purpose::Treatment,
        class,
        at,
        document: Some(versioned(document_id, version)),
    }
}

/// How the person's approval was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalMethod {
    /// Shown to the person at a meeting with the adviser, who records their answer.
    AtMeeting,
    /// The person answered on the one-time link the adviser sent them.
    OneTimeLink,
}

impl ApprovalMethod {
    pub fn words(self) -> &'static str {
        match self {
            ApprovalMethod::AtMeeting => "shown to the person at a meeting with their adviser",
            ApprovalMethod::OneTimeLink => "answered by the person on a one-time link",
        }
    }
}

/// What the person decided about one version of the letter.
pub struct Approval<'a> {
    pub approved: bool,
    /// `Patient/{id}`.
    pub patient: &'a str,
    /// The service's Organization, as a reference by identifier (it records the answer).
    pub service: Value,
    /// The employer contact (`system|value`) and its name.
    pub recipient: &'a str,
    pub recipient_name: &'a str,
    pub document_id: &'a str,
    pub version: i64,
    /// `Attachment.hash` of the version's PDF (SHA-1, base64, as FHIR defines it).
    pub sha1_base64: &'a str,
    pub classes: &'a [DataClass],
    pub method: ApprovalMethod,
    pub at: DateTime<Utc>,
}

/// The Consent that records the person's answer about one version of the letter: `active`
/// permitting its disclosure to that employer contact, or, for a "no", `rejected` (which permits
/// nothing, and answers the link). Its source is the document itself, at that version, with its
/// hash.
pub fn approval_consent(a: &Approval<'_>) -> Value {
    use crate::consent::Code as _;
    let document = versioned(a.document_id, a.version);
    let classes: Vec<&str> = a.classes.iter().map(|c| c.code()).collect();
    let mut actor = crate::fhir::identifiers::identifier_reference(a.recipient);
    actor["display"] = json!(a.recipient_name);
    let mut provision = crate::intake::mapping::consent_provision(
        "employer",
        actor,
        Some(json!({ "start": format_instant(a.at) })),
        &["disclose"],
        "TREAT",
        &classes,
    );
    provision["data"] = json!([{ "meaning": "instance", "reference": { "reference": document } }]);
    let mut consent = crate::intake::mapping::consent_resource(
        if a.approved { "active" } else { "rejected" },
        "patient-privacy",
        json!({ "reference": a.patient }),
        &format_instant(a.at),
        Some(a.service.clone()),
        provision,
    );
    // The gateway's own record: no Consent received keeps this tag (`strip_origin_tags`).
    consent["meta"]["tag"] = json!([crate::consent::service_record_tag()]);
    consent["sourceAttachment"] = json!({
        "contentType": "application/pdf",
        "url": document,
        "hash": a.sha1_base64,
        "title": format!("The letter as the person saw it ({})", a.method.words()),
    });
    consent
}

/// Whether `consent` is the person's answer about the version `document`
/// (`DocumentReference/…/_history/…`) of the letter from `service` to `recipient` (both
/// `system|value`), as the gateway recorded it: its own record (a tag no Consent received keeps),
/// recorded by the letter's service, naming that version and that contact. A Consent anyone else
/// wrote, whatever it names, answers nothing.
pub fn answers(consent: &Value, document: &str, recipient: &str, service: &str) -> bool {
    let identifier = |v: &Value| crate::fhir::identifiers::system_value(&v["identifier"]);
    let provision = &consent["provision"];
    crate::consent::is_service_record(consent)
        && consent["sourceAttachment"]["url"] == document
        && provision["data"]
            .as_array()
            .is_some_and(|d| d.len() == 1 && d[0]["reference"]["reference"] == document)
        && consent["organization"]
            .as_array()
            .is_some_and(|o| o.len() == 1 && identifier(&o[0]) == service)
        && provision["actor"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && identifier(&a[0]["reference"]) == recipient)
}

/// Whether a stored resource is part of the service's dealings with the person's employer: an
/// employer letter's Composition, DocumentReference or Communication, or the person's answer
/// about one. Only the service reads these (`crate::access`): neither the referrer nor the
/// practice, whatever their consent to feedback, learns what the person was asked to let their
/// employer know, or what they said.
pub fn is_employer_record(resource: &Value) -> bool {
    let employer_contact = systems::employer_contact_system();
    match resource["resourceType"].as_str() {
        Some("Composition" | "DocumentReference") => holds_classes(resource),
        Some("Communication") => resource["recipient"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["identifier"]["system"] == employer_contact.as_str()),
        Some("Consent") => {
            crate::consent::is_service_record(resource)
                && resource["sourceAttachment"]["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("DocumentReference/"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn context() -> Context {
        Context {
            referral: "ServiceRequest/sr-1".into(),
            patient: "Patient/p-1".into(),
            referral_date: None,
            service_name: "Sheffield Work and Health Service".into(),
            service: "https://fhir.work-health-gateway.org/Id/service|sheffield-whs".into(),
            practice: contact_identifier("HR@MoorMarket.example"),
            practice_name: Some("Moor Market Traders Ltd, HR".into()),
            patient_name: Some("Joanne Pearce".into()),
            nhs_number: Some("9999980023".into()),
            birth_date: Some("1984-06-17".into()),
        }
    }

    fn body() -> EmployerLetterBody {
        serde_json::from_value(json!({
            "kind": "return-to-work-plan",
            "employer": { "name": "Moor Market Traders Ltd, HR", "email": "HR@MoorMarket.example" },
            "summary": "Joanne would like to return to work in January.",
            "plan": "Phased return over four weeks: 50%, 60%, 80%, 100%.",
            "adjustments": ["A quiet space for breaks", "No lone closing shifts for the first month"],
            "includeHealthConditions": true,
            "author": { "name": "Sam Patel", "role": "Work and health adviser" }
        }))
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap()
    }

    fn text(letter: &Letter) -> String {
        let mut all = format!(
            "{} {} {} {}",
            letter.title, letter.patient_line, letter.referral_line, letter.footer_identifier
        );
        for s in &letter.sections {
            all.push_str(&s.title);
            all.push_str(&s.paragraphs.join(" "));
        }
        all
    }

    #[test]
    fn an_employer_is_told_the_plan_and_never_the_nhs_number_or_date_of_birth() {
        let letter = context().employer_letter(&body(), &Conditions::NotAsked, now());
        let all = text(&letter);
        assert_eq!(
            letter.title,
            "Return-to-work plan from Sheffield Work and Health Service"
        );
        assert_eq!(letter.patient_line, "Re: Joanne Pearce");
        assert_eq!(letter.to_identifier, "hr@moormarket.example");
        assert!(all.contains("Phased return over four weeks"), "{all}");
        assert!(all.contains("• A quiet space for breaks"), "{all}");
        for never in ["9999980023", "999 998 0023", "1984-06-17", "may know about"] {
            assert!(!all.contains(never), "{never} in {all}");
        }
        assert!(!letter.sections.iter().any(|s| s.title == "Health"));
        assert_eq!(letter.kind, "employer");
    }

    #[test]
    fn health_conditions_are_in_the_letter_only_when_consent_covers_them() {
        let named = Conditions::Included(vec!["Moderate depression".into()]);
        let with = text(&context().employer_letter(&body(), &named, now()));
        assert!(
            with.contains("has agreed that you may know about: Moderate depression."),
            "{with}"
        );
        for not_covered in [
            Conditions::NotAsked,
            Conditions::LeftOut("Consent/x refuses".into()),
        ] {
            let without = text(&context().employer_letter(&body(), &not_covered, now()));
            assert!(!without.contains("Moderate depression"), "{without}");
            assert_eq!(not_covered.classes(), vec![DataClass::AdviserLetter]);
        }
        assert_eq!(
            named.classes(),
            vec![DataClass::AdviserLetter, DataClass::Diagnosis]
        );
    }

    #[test]
    fn every_problem_is_named_at_its_field() {
        let mut bad = body();
        bad.employer.email = "hr at moor market".into();
        bad.summary = " ".into();
        bad.plan = None;
        bad.adjustments = vec![String::new()];
        bad.author.name = String::new();
        let at: Vec<String> = bad
            .validate()
            .iter()
            .filter_map(|i| i.expression.clone())
            .collect();
        assert_eq!(
            at,
            [
                "employer.email",
                "summary",
                "plan",
                "adjustments[0]",
                "author.name"
            ]
        );
        let mut adjustments = body();
        adjustments.kind = EmployerLetterKind::WorkplaceAdjustments;
        adjustments.plan = None;
        adjustments.adjustments.clear();
        let at: Vec<String> = adjustments
            .validate()
            .iter()
            .filter_map(|i| i.expression.clone())
            .collect();
        assert_eq!(at, ["adjustments"]);
        assert!(body().validate().is_empty());
    }

    #[test]
    fn the_draft_says_what_it_holds_and_an_approval_names_one_version_with_its_hash() {
        let letter = context().employer_letter(&body(), &Conditions::NotAsked, now());
        let ids = crate::letters::LetterIds {
            composition: "doc-1".into(),
            document: "doc-1".into(),
            communication: "com-1".into(),
        };
        let pdf = crate::letters::pdf::render(&letter);
        let classes = [DataClass::AdviserLetter, DataClass::Diagnosis];
        let [composition, document, communication] =
            draft_resources(&letter, &context(), &ids, &pdf, &classes, now());
        assert_eq!(composition["status"], "preliminary");
        assert_eq!(document["docStatus"], "final");
        assert_eq!(communication["status"], "preparation");
        assert!(communication.get("statusReason").is_none());
        assert_eq!(document_classes(&document), classes);
        assert!(is_employer_letter(&document));
        assert_eq!(sha256_hex(&pdf).len(), 64);

        let consent = approval_consent(&Approval {
            approved: true,
            patient: "Patient/p-1",
            service: json!({ "identifier": { "system": "https://fhir.work-health-gateway.org/Id/service", "value": "sheffield-whs" } }),
            recipient: &contact_identifier("hr@moormarket.example"),
            recipient_name: "Moor Market Traders Ltd, HR",
            document_id: "doc-1",
            version: 2,
            sha1_base64: "c2hhMQ==",
            classes: &[DataClass::AdviserLetter],
            method: ApprovalMethod::AtMeeting,
            at: now(),
        });
        assert_eq!(consent["status"], "active");
        assert_eq!(
            consent["provision"]["data"][0]["reference"]["reference"],
            "DocumentReference/doc-1/_history/2"
        );
        let to = contact_identifier("hr@moormarket.example");
        let whs = "https://fhir.work-health-gateway.org/Id/service|sheffield-whs";
        assert!(answers(
            &consent,
            "DocumentReference/doc-1/_history/2",
            &to,
            whs
        ));
        assert!(!answers(
            &consent,
            "DocumentReference/doc-1/_history/1",
            &to,
            whs
        ));
        let elsewhere = contact_identifier("x@example.com");
        assert!(!answers(
            &consent,
            "DocumentReference/doc-1/_history/2",
            &elsewhere,
            whs
        ));
        let practice = "https://fhir.nhs.uk/Id/ods-organization-code|C88901";
        assert!(!answers(
            &consent,
            "DocumentReference/doc-1/_history/2",
            &to,
            practice
        ));
        assert!(is_employer_record(&consent));
        // The same Consent as anyone else sent it (its tag stripped on receipt) answers nothing.
        let mut received = consent.clone();
        crate::consent::strip_origin_tags(&mut received);
        assert!(!answers(
            &received,
            "DocumentReference/doc-1/_history/2",
            &to,
            whs
        ));
        assert!(!is_employer_record(&received));
        assert!(is_employer_record(&composition));
        assert!(is_employer_record(&document) && is_employer_record(&communication));
        // It is a Consent the one consent decision reads: it permits that version to that
        // contact, and nothing else.
        let record = crate::consent::model::read_consent(&consent).expect("readable");
        let ask = |document: &str, class: DataClass, to: &str| crate::consent::Question {
            recipient: crate::consent::Recipient::addressed(to).unwrap(),
            action: crate::consent::Action::Disclose,
            purpose: crate::consent::Purpose::Treatment,
            class,
            at: now() + chrono::Duration::minutes(1),
            document: Some(document.to_string()),
        };
        let decide = |q| crate::consent::decide(std::slice::from_ref(&record), &[], &q).permitted();
        assert!(decide(ask(
            "DocumentReference/doc-1/_history/2",
            DataClass::AdviserLetter,
            &to
        )));
        assert!(!decide(ask(
            "DocumentReference/doc-1/_history/3",
            DataClass::AdviserLetter,
            &to
        )));
        assert!(!decide(ask(
            "DocumentReference/doc-1/_history/2",
            DataClass::Diagnosis,
            &to
        )));
        assert!(!decide(ask(
            "DocumentReference/doc-1/_history/2",
            DataClass::AdviserLetter,
            &contact_identifier("someone.else@example.com")
        )));
    }
}
