//! The self-referral form (`/refer`): what a person referring themselves answers, checked the way
//! they would want to be told (every problem at its question, in plain words), and the
//! submission it becomes. Pure: the answers, the time and the configuration come in.
//!
//! What a person says of themselves is theirs alone until the service has traced them: their
//! Patient is always a new one, never matched to a stored person by the NHS number they typed
//! (anyone can type anyone's), so nothing they send changes, or records a consent on, anyone
//! else's record; their referral carries an `nhs-number-to-trace` input for the service. No
//! organisation is party to it ([`Sender::Person`]): the GP practice they name is not told of
//! it, and hears from the service only under the consent to feedback they give here.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use super::practice::HumanName;
use super::submission::{Sender, Submission, SubmissionKey, SubmissionKind};
use crate::fhir::identifiers;
use crate::fhir::terminology::code_system;
use crate::fhir::{IssueType, Issues};
use crate::services::Service;

/// The youngest a person may refer themselves: the services support people of working age, and
/// a younger person is referred with their family by a professional.
pub const MIN_AGE_YEARS: i32 = 16;
pub const MAX_AGE_YEARS: i32 = 120;
/// The longest answer to a one-line question (a name, a job title, an address line).
pub const MAX_LINE: usize = 100;
/// The longest answer to a free-text question.
pub const MAX_TEXT: usize = 1000;
/// Most answers a form may carry: the questions below, each checkbox once. More is not a
/// person filling in the form.
pub const MAX_ANSWERS: usize = 80;

/// The form's questions, by the name each field is sent under (and the id the error summary
/// links to).
pub mod field {
    pub const SERVICE: &str = "service";
    pub const GIVEN_NAME: &str = "given-name";
    pub const FAMILY_NAME: &str = "family-name";
    pub const DOB_DAY: &str = "dob-day";
    pub const DOB_MONTH: &str = "dob-month";
    pub const DOB_YEAR: &str = "dob-year";
    pub const SEX: &str = "sex";
    pub const NHS_NUMBER: &str = "nhs-number";
    pub const POSTCODE: &str = "postcode";
    pub const ADDRESS_LINE_1: &str = "address-line-1";
    pub const ADDRESS_LINE_2: &str = "address-line-2";
    pub const TOWN: &str = "town";
    pub const PHONE: &str = "phone";
    pub const EMAIL: &str = "email";
    pub const CONTACT: &str = "contact";
    pub const INTERPRETER: &str = "interpreter";
    pub const LANGUAGE: &str = "language";
    pub const LANGUAGE_OTHER: &str = "language-other";
    pub const GP: &str = "gp";
    pub const GP_NAME: &str = "gp-name";
    pub const EMPLOYMENT: &str = "employment";
    pub const JOB_TITLE: &str = "job-title";
    pub const EMPLOYER: &str = "employer";
    pub const EMPLOYER_SIZE: &str = "employer-size";
    pub const SECTOR: &str = "sector";
    pub const CONTRACT: &str = "contract";
    pub const OCCUPATIONAL_HEALTH: &str = "occupational-health";
    pub const OFF_SICK_DAY: &str = "off-sick-day";
    pub const OFF_SICK_MONTH: &str = "off-sick-month";
    pub const OFF_SICK_YEAR: &str = "off-sick-year";
    pub const CONDITION: &str = "condition";
    pub const CONDITION_TEXT: &str = "condition-text";
    pub const SUPPORT: &str = "support";
    pub const SUPPORT_TEXT: &str = "support-text";
    pub const ETHNICITY: &str = "ethnicity";
    pub const DISABILITY: &str = "disability";
    pub const CONSENT_SERVICE: &str = "consent-service";
    pub const CONSENT_FEEDBACK: &str = "consent-feedback";
    pub const CONSENT_EVALUATION: &str = "consent-evaluation";
}

/// The answers a form was sent with, as (field, value) pairs in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers(pub Vec<(String, String)>);

impl Answers {
    /// Reads an `application/x-www-form-urlencoded` body.
    pub fn from_urlencoded(body: &[u8]) -> Self {
        Answers(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The answer to `name`, trimmed; none when it was left empty.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every answer to `name` (a group of checkboxes), in the order sent.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Whether `value` is among the answers to `name` (for redrawing a checkbox or radio).
    pub fn has(&self, name: &str, value: &str) -> bool {
        self.all(name).contains(&value)
    }

    /// A hash of the answers to the questions (not the form's token or its trap), whatever
    /// their order: the same form sent twice is the same referral.
    pub fn content_hash(&self) -> String {
        let mut pairs: Vec<&(String, String)> = self
            .0
            .iter()
            .filter(|(k, _)| QUESTIONS.contains(&k.as_str()))
            .collect();
        pairs.sort();
        let mut hash = Sha256::new();
        for (k, v) in pairs {
            hash.update(k.as_bytes());
            hash.update([0]);
            hash.update(v.trim().as_bytes());
            hash.update([0]);
        }
        hex::encode(hash.finalize())
    }
}

/// Every question's field name.
pub const QUESTIONS: &[&str] = &[
    field::SERVICE,
    field::GIVEN_NAME,
    field::FAMILY_NAME,
    field::DOB_DAY,
    field::DOB_MONTH,
    field::DOB_YEAR,
    field::SEX,
    field::NHS_NUMBER,
    field::POSTCODE,
    field::ADDRESS_LINE_1,
    field::ADDRESS_LINE_2,
    field::TOWN,
    field::PHONE,
    field::EMAIL,
    field::CONTACT,
    field::INTERPRETER,
    field::LANGUAGE,
    field::LANGUAGE_OTHER,
    field::GP,
    field::GP_NAME,
    field::EMPLOYMENT,
    field::JOB_TITLE,
    field::EMPLOYER,
    field::EMPLOYER_SIZE,
    field::SECTOR,
    field::CONTRACT,
    field::OCCUPATIONAL_HEALTH,
    field::OFF_SICK_DAY,
    field::OFF_SICK_MONTH,
    field::OFF_SICK_YEAR,
    field::CONDITION,
    field::CONDITION_TEXT,
    field::SUPPORT,
    field::SUPPORT_TEXT,
    field::ETHNICITY,
    field::DISABILITY,
    field::CONSENT_SERVICE,
    field::CONSENT_FEEDBACK,
    field::CONSENT_EVALUATION,
];

/// The languages the form offers an interpreter in, as BCP 47 tags (the binding UK Core's
/// `Patient.communication.language` requires) with their names in English: the languages
/// most spoken in England after English (ONS Census 2021), and British Sign Language. Another
/// language is named in words (`Interpreter::Named`).
pub const LANGUAGES: &[(&str, &str)] = &[
    ("ar", "Arabic"),
    ("bn", "Bengali"),
    ("bfi", "British Sign Language"),
    ("yue", "Cantonese"),
    ("fa", "Farsi (Persian)"),
    ("fr", "French"),
    ("gu", "Gujarati"),
    ("it", "Italian"),
    ("ku", "Kurdish"),
    ("lt", "Lithuanian"),
    ("cmn", "Mandarin"),
    ("pl", "Polish"),
    ("pt", "Portuguese"),
    ("pa", "Punjabi"),
    ("ro", "Romanian"),
    ("ru", "Russian"),
    ("so", "Somali"),
    ("es", "Spanish"),
    ("ta", "Tamil"),
    ("ti", "Tigrinya"),
    ("tr", "Turkish"),
    ("uk", "Ukrainian"),
    ("ur", "Urdu"),
];

/// The interpreter a person needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreter {
    /// One of [`LANGUAGES`]: its tag.
    Listed(&'static str),
    /// Another language, in the person's words (no code a FHIR language binding takes).
    Named(String),
}

/// The GP practice the person named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gp {
    /// One the gateway can write to, chosen from its list: ODS code and name.
    Listed { ods: String, name: String },
    /// One not on the list, by the name the person gave: the service can find it, but no
    /// letter goes to it.
    Named(String),
    /// The person did not say (or is not registered).
    NotGiven,
}

/// A health condition the person says affects their work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionAnswer {
    /// A `health-condition-category` code.
    pub category: String,
    pub text: Option<String>,
}

/// What the person said about their health conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditions {
    One(ConditionAnswer),
    /// "I would rather not say" (`prefer-not-to-say`) or "None" (`none`), or not answered
    /// (`not-recorded`): a `recorded-list-status` code.
    Status(&'static str),
}

/// A checked self-referral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfReferral {
    /// The configured service's id.
    pub service: String,
    pub name: HumanName,
    pub birth_date: NaiveDate,
    /// A `sex` code (`prefer-not-to-say` among them).
    pub sex: String,
    /// Ten digits, when the person gave one: never traced.
    pub nhs_number: Option<String>,
    /// Upper case, one space before the inward code.
    pub postcode: String,
    pub address_lines: Vec<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// A `preferred-contact-method` code.
    pub preferred_contact: String,
    /// The interpreter the person needs, if they need one.
    pub interpreter: Option<Interpreter>,
    pub gp: Gp,
    /// An `employment-status` code (`prefer-not-to-say` among them).
    pub employment_status: String,
    pub job_title: Option<String>,
    pub employer_name: Option<String>,
    /// The work questions the practice format asks, each a code of its system
    /// (`employer-size-band`, `employment-sector`, `contract-type`,
    /// `occupational-health-access`); `not-recorded` when not answered.
    pub employer_size: String,
    pub sector: String,
    pub contract: String,
    pub occupational_health: String,
    pub off_sick_since: Option<NaiveDate>,
    pub conditions: Conditions,
    /// `support-need` codes: at least one.
    pub needs: Vec<String>,
    pub support_text: Option<String>,
    /// An `ethnic-group` code; `not-recorded` when not answered.
    pub ethnicity: String,
    /// A `disability-status` code; `not-recorded` when not answered.
    pub disability: String,
    pub feedback_to_gp: bool,
    pub evaluation: bool,
}

/// What a form is checked against.
pub struct FormContext<'a> {
    pub today: NaiveDate,
    /// The services a person may refer themselves to (those taking the `self-referral` route).
    pub services: &'a [&'a Service],
    /// The GP practices the gateway can write to: (ODS code, name).
    pub practices: &'a [(String, String)],
}

/// The services in `services` that take self-referrals.
pub fn self_referral_services(services: &[Service]) -> Vec<&Service> {
    services
        .iter()
        .filter(|s| s.referral_routes.iter().any(|r| r == "self-referral"))
        .collect()
}

/// Checks a form's answers: the self-referral, or every problem, each at its question.
pub fn read(a: &Answers, cx: &FormContext<'_>) -> Result<SelfReferral, Issues> {
    let mut p = Problems(Issues::new());
    if a.0.len() > MAX_ANSWERS {
        p.at(
            field::SERVICE,
            IssueType::TooLong,
            "This form has more answers than it asks for: start again from the first page",
        );
        return Err(p.0);
    }
    for (name, value) in &a.0 {
        if value
            .chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\r') || is_invisible(c))
        {
            p.at(
                name_of(name),
                IssueType::Value,
                "Remove the hidden characters from this answer",
            );
        }
    }

    let service = a
        .one(field::SERVICE)
        .and_then(|id| cx.services.iter().find(|s| s.id == id));
    if service.is_none() {
        p.at(
            field::SERVICE,
            IssueType::Required,
            "Choose the service you want to refer yourself to",
        );
    }

    let given = p.line(a, field::GIVEN_NAME, "Enter your first name");
    let family = p.line(a, field::FAMILY_NAME, "Enter your last name");
    let birth_date = p.date(
        a,
        [field::DOB_DAY, field::DOB_MONTH, field::DOB_YEAR],
        "date of birth",
    );
    if let Some(d) = birth_date {
        let age = age_on(d, cx.today);
        if d > cx.today {
            p.at(
                field::DOB_DAY,
                IssueType::Value,
                "Date of birth must be in the past",
            );
        } else if age < MIN_AGE_YEARS {
            p.at(
                field::DOB_DAY,
                IssueType::BusinessRule,
                format!(
                    "You must be {MIN_AGE_YEARS} or over to refer yourself: ask your GP or school nurse about support for younger people"
                ),
            );
        } else if age > MAX_AGE_YEARS {
            p.at(
                field::DOB_YEAR,
                IssueType::Value,
                "Check the year you were born: enter it as 4 digits, like 1984",
            );
        }
    }
    let sex = p.choice(
        a,
        field::SEX,
        &["female", "male", "other", "prefer-not-to-say"],
        "Select your sex, or 'Prefer not to say'",
    );

    let nhs_number = a.one(field::NHS_NUMBER).and_then(|n| {
        match identifiers::nhs_number(n) {
            Ok(digits) => Some(digits),
            Err(_) => {
                p.at(field::NHS_NUMBER, IssueType::Value, "Enter your NHS number as 10 digits, like 999 123 4567, or leave it blank if you do not know it");
                None
            }
        }
    });

    let postcode = match a.one(field::POSTCODE) {
        None => {
            p.at(field::POSTCODE, IssueType::Required, "Enter your postcode");
            None
        }
        Some(raw) => {
            let pc = normalise_postcode(raw);
            if identifiers::is_uk_postcode(&pc) {
                Some(pc)
            } else {
                p.at(
                    field::POSTCODE,
                    IssueType::Value,
                    "Enter a real postcode, like S1 2HE",
                );
                None
            }
        }
    };
    let address_lines: Vec<String> = [field::ADDRESS_LINE_1, field::ADDRESS_LINE_2, field::TOWN]
        .into_iter()
        .filter_map(|f| p.optional_line(a, f))
        .collect();

    let phone = a.one(field::PHONE).and_then(|raw| {
        let digits = raw.chars().filter(char::is_ascii_digit).count();
        let allowed = raw
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '(' | ')' | '-'));
        if allowed && (10..=13).contains(&digits) {
            Some(raw.to_string())
        } else {
            p.at(
                field::PHONE,
                IssueType::Value,
                "Enter a phone number, like 07700 900 982 or 0114 496 0000",
            );
            None
        }
    });
    let email = a.one(field::EMAIL).and_then(|raw| {
        if is_email(raw) {
            Some(raw.to_string())
        } else {
            p.at(
                field::EMAIL,
                IssueType::Value,
                "Enter an email address in the correct format, like name@example.com",
            );
            None
        }
    });
    let preferred_contact = p.choice(
        a,
        field::CONTACT,
        &["phone", "sms", "email", "letter"],
        "Select how you would like the service to contact you",
    );
    match preferred_contact.as_deref() {
        Some("phone" | "sms") if a.one(field::PHONE).is_none() => p.at(
            field::PHONE,
            IssueType::Required,
            "Enter your phone number, so the service can contact you the way you chose",
        ),
        Some("email") if a.one(field::EMAIL).is_none() => p.at(
            field::EMAIL,
            IssueType::Required,
            "Enter your email address, so the service can contact you the way you chose",
        ),
        Some("letter") if a.one(field::ADDRESS_LINE_1).is_none() => p.at(
            field::ADDRESS_LINE_1,
            IssueType::Required,
            "Enter the first line of your address, so the service can write to you",
        ),
        _ => {}
    }

    let interpreter = match p
        .choice(
            a,
            field::INTERPRETER,
            &["yes", "no"],
            "Select yes if you need an interpreter",
        )
        .as_deref()
    {
        Some("yes") => match a.one(field::LANGUAGE) {
            Some("other") => p
                .line(
                    a,
                    field::LANGUAGE_OTHER,
                    "Enter the language you need an interpreter for",
                )
                .map(Interpreter::Named),
            Some(tag) => match LANGUAGES.iter().find(|(t, _)| *t == tag) {
                Some((tag, _)) => Some(Interpreter::Listed(tag)),
                None => {
                    p.at(
                        field::LANGUAGE,
                        IssueType::CodeInvalid,
                        "Choose the language from the list, or 'Another language'",
                    );
                    None
                }
            },
            None => {
                p.at(
                    field::LANGUAGE,
                    IssueType::Required,
                    "Choose the language you need an interpreter for",
                );
                None
            }
        },
        _ => None,
    };

    let gp = match a.one(field::GP) {
        None | Some("not-registered") => Gp::NotGiven,
        Some("not-listed") => match p.optional_line(a, field::GP_NAME) {
            Some(name) => Gp::Named(name),
            None => Gp::NotGiven,
        },
        Some(ods) => match cx.practices.iter().find(|(code, _)| code == ods) {
            Some((ods, name)) => Gp::Listed {
                ods: ods.clone(),
                name: name.clone(),
            },
            None => {
                p.at(
                    field::GP,
                    IssueType::CodeInvalid,
                    "Choose your GP practice from the list, or 'My practice is not listed'",
                );
                Gp::NotGiven
            }
        },
    };

    let statuses = codes_except(
        "employment-status",
        &["not-recorded"],
        "Select what you do now, or 'Prefer not to say'",
    );
    let employment_status = p.choice(a, field::EMPLOYMENT, &statuses.codes, statuses.message);
    let job_title = p.optional_line(a, field::JOB_TITLE);
    let employer_name = p.optional_line(a, field::EMPLOYER);
    let choose = "Choose an answer from the list, or 'Prefer not to say'";
    let employer_size = p.optional_code(a, field::EMPLOYER_SIZE, "employer-size-band", choose);
    let sector = p.optional_code(a, field::SECTOR, "employment-sector", choose);
    let contract = p.optional_code(a, field::CONTRACT, "contract-type", choose);
    let occupational_health = p.optional_code(
        a,
        field::OCCUPATIONAL_HEALTH,
        "occupational-health-access",
        choose,
    );
    let off_sick_since = match employment_status.as_deref() {
        Some(s) if super::practice::is_off_sick(s) => {
            let d = p.date(
                a,
                [
                    field::OFF_SICK_DAY,
                    field::OFF_SICK_MONTH,
                    field::OFF_SICK_YEAR,
                ],
                "date you went off sick",
            );
            if d.is_some_and(|d| d > cx.today) {
                p.at(
                    field::OFF_SICK_DAY,
                    IssueType::Value,
                    "The date you went off sick must be today or in the past",
                );
            }
            d
        }
        _ => None,
    };

    let condition_text = p.optional_text(a, field::CONDITION_TEXT);
    let categories = code_system("health-condition-category");
    let conditions = match a.one(field::CONDITION) {
        None => Conditions::Status("not-recorded"),
        Some("none") => Conditions::Status("none"),
        Some("prefer-not-to-say") => Conditions::Status("prefer-not-to-say"),
        Some(c) if categories.display(c).is_some() => Conditions::One(ConditionAnswer {
            category: c.to_string(),
            text: condition_text,
        }),
        Some(_) => {
            p.at(
                field::CONDITION,
                IssueType::CodeInvalid,
                "Select the kind of health condition from the list",
            );
            Conditions::Status("not-recorded")
        }
    };

    let needs_system = code_system("support-need");
    let needs: Vec<String> = a
        .all(field::SUPPORT)
        .into_iter()
        .map(str::to_string)
        .collect();
    if needs.is_empty() {
        p.at(
            field::SUPPORT,
            IssueType::Required,
            "Select at least one thing you would like help with",
        );
    } else if needs.iter().any(|n| needs_system.display(n).is_none()) {
        p.at(
            field::SUPPORT,
            IssueType::CodeInvalid,
            "Select what you would like help with from the list",
        );
    }
    let support_text = p.optional_text(a, field::SUPPORT_TEXT);
    if needs.iter().any(|n| n == "other") && support_text.is_none() {
        p.at(
            field::SUPPORT_TEXT,
            IssueType::Required,
            "Tell us what else you would like help with",
        );
    }

    let ethnicity = p.optional_code(
        a,
        field::ETHNICITY,
        "ethnic-group",
        "Select your ethnic group from the list, or 'Prefer not to say'",
    );
    let disability = p.optional_code(
        a,
        field::DISABILITY,
        "disability-status",
        "Select an answer from the list, or 'Prefer not to say'",
    );

    if a.one(field::CONSENT_SERVICE) != Some("yes") {
        p.at(
            field::CONSENT_SERVICE,
            IssueType::Required,
            "Tick the box to agree to the service seeing your answers: without it they cannot contact you. You can ask your GP to refer you instead",
        );
    }
    let feedback = p.choice(
        a,
        field::CONSENT_FEEDBACK,
        &["yes", "no"],
        "Select yes if the service may write to your GP practice",
    );
    if feedback.as_deref() == Some("yes") && !matches!(gp, Gp::Listed { .. }) {
        p.at(
            field::CONSENT_FEEDBACK,
            IssueType::BusinessRule,
            "Choose your GP practice from the list above, or answer no: the service can only write to a practice it knows",
        );
    }
    let evaluation = p.choice(
        a,
        field::CONSENT_EVALUATION,
        &["yes", "no"],
        "Select yes if your answers may be used, without your name, to improve the service",
    );

    let problems = p.0;
    if !problems.is_empty() {
        return Err(problems);
    }
    // Every value below was checked present above: a missing one is a bug in this function.
    let (Some(service), Some(given), Some(family), Some(birth_date)) =
        (service, given, family, birth_date)
    else {
        unreachable!("checked above")
    };
    Ok(SelfReferral {
        service: service.id.clone(),
        name: HumanName {
            prefix: None,
            given: vec![given],
            family,
        },
        birth_date,
        sex: sex.unwrap_or_default(),
        nhs_number,
        postcode: postcode.unwrap_or_default(),
        address_lines,
        phone,
        email,
        preferred_contact: preferred_contact.unwrap_or_default(),
        interpreter,
        gp,
        employment_status: employment_status.unwrap_or_default(),
        job_title,
        employer_name,
        employer_size,
        sector,
        contract,
        occupational_health,
        off_sick_since,
        conditions,
        needs,
        support_text,
        ethnicity,
        disability,
        feedback_to_gp: feedback.as_deref() == Some("yes"),
        evaluation: evaluation.as_deref() == Some("yes"),
    })
}

/// The submission a checked self-referral becomes: `reference` is the person's reference for
/// it (the key a resend of the same form is known by), `content_hash` the answers' hash.
pub fn submission(
    r: &SelfReferral,
    service: &Service,
    reference: &str,
    content_hash: String,
    now: DateTime<Utc>,
) -> Submission {
    let bundle = super::mapping::self_referral::bundle(r, service, reference, now);
    let key = SubmissionKey {
        namespace: NAMESPACE.to_string(),
        value: reference.to_string(),
    };
    let kind = SubmissionKind::Referral {
        service: format!(
            "{}|{}",
            crate::fhir::systems::service_identifier_system(),
            service.id
        ),
    };
    let mut submission = Submission::from_transaction(
        key,
        Sender::Person,
        kind,
        content_hash,
        bundle,
    )
    .expect(
        "the mapping emits a transaction with fullUrls and a ServiceRequest about its one Patient",
    );
    // Always a new person: never matched to a stored one by what they typed (see the module).
    for e in &mut submission.entries {
        if e.resource_type == "Patient" {
            e.match_identifier = None;
        }
    }
    submission
}

/// The form's question behind each eligibility criterion.
pub fn criterion_expression(criterion: &str) -> &'static str {
    match criterion {
        "age" => field::DOB_DAY,
        "area" => field::POSTCODE,
        "registered-practice" => field::GP,
        "employment" => field::EMPLOYMENT,
        "long-term-condition" => field::CONDITION,
        _ => field::SERVICE,
    }
}

/// The namespace of self-referrals' write-once keys.
pub const NAMESPACE: &str = "self-referral";

/// Collects problems, each at its question.
struct Problems(Issues);

impl Problems {
    fn at(&mut self, name: &str, code: IssueType, message: impl Into<String>) {
        // One message per question: the first problem found is the one to fix first.
        if !self.0.touches(name) {
            self.0.error(code, name.to_string(), message);
        }
    }

    /// A required one-line answer.
    fn line(&mut self, a: &Answers, name: &str, missing: &str) -> Option<String> {
        match a.one(name) {
            None => {
                self.at(name, IssueType::Required, missing);
                None
            }
            Some(v) => self.fits(name, v, MAX_LINE),
        }
    }

    fn optional_line(&mut self, a: &Answers, name: &str) -> Option<String> {
        a.one(name).and_then(|v| self.fits(name, v, MAX_LINE))
    }

    fn optional_text(&mut self, a: &Answers, name: &str) -> Option<String> {
        a.one(name).and_then(|v| self.fits(name, v, MAX_TEXT))
    }

    fn fits(&mut self, name: &str, v: &str, max: usize) -> Option<String> {
        if v.chars().count() > max {
            self.at(
                name,
                IssueType::TooLong,
                format!("Shorten this answer to {max} characters or fewer"),
            );
            None
        } else {
            Some(v.to_string())
        }
    }

    /// A required choice among `codes`.
    fn choice<S: AsRef<str>>(
        &mut self,
        a: &Answers,
        name: &str,
        codes: &[S],
        missing: &str,
    ) -> Option<String> {
        match a.one(name) {
            Some(v) if codes.iter().any(|c| c.as_ref() == v) => Some(v.to_string()),
            Some(_) => {
                self.at(name, IssueType::CodeInvalid, missing);
                None
            }
            None => {
                self.at(name, IssueType::Required, missing);
                None
            }
        }
    }

    /// An optional code of `system`: `not-recorded` when not answered.
    fn optional_code(&mut self, a: &Answers, name: &str, system: &str, invalid: &str) -> String {
        match a.one(name) {
            None => "not-recorded".to_string(),
            Some(v) if v != "not-recorded" && code_system(system).display(v).is_some() => {
                v.to_string()
            }
            Some(_) => {
                self.at(name, IssueType::CodeInvalid, invalid);
                "not-recorded".to_string()
            }
        }
    }

    /// A date asked as day, month and year: the problem at the part to fix.
    fn date(&mut self, a: &Answers, [d, m, y]: [&str; 3], what: &str) -> Option<NaiveDate> {
        let part = |name: &str| a.one(name);
        match (part(d), part(m), part(y)) {
            (None, None, None) => {
                self.at(d, IssueType::Required, format!("Enter your {what}"));
                return None;
            }
            (None, _, _) => self.at(
                d,
                IssueType::Required,
                format!("Your {what} must include a day"),
            ),
            (_, None, _) => self.at(
                m,
                IssueType::Required,
                format!("Your {what} must include a month"),
            ),
            (_, _, None) => self.at(
                y,
                IssueType::Required,
                format!("Your {what} must include a year"),
            ),
            _ => {}
        }
        let number = |v: Option<&str>| v.and_then(|v| v.parse::<u32>().ok());
        let (day, month, year) = (number(part(d)), number(part(m)), number(part(y)));
        match (day, month, year) {
            (Some(day), Some(month), Some(year)) if part(y).is_some_and(|y| y.len() == 4) => {
                let date = NaiveDate::from_ymd_opt(year as i32, month, day);
                if date.is_none() {
                    self.at(
                        d,
                        IssueType::Value,
                        format!("Your {what} must be a real date"),
                    );
                }
                date
            }
            _ if part(d).is_some() && part(m).is_some() && part(y).is_some() => {
                self.at(
                    d,
                    IssueType::Value,
                    format!("Your {what} must be a real date, like 27 3 1984"),
                );
                None
            }
            _ => None,
        }
    }
}

/// A question's field name, as one of [`QUESTIONS`] (unknown fields are answered at the
/// service question, the form's first).
fn name_of(name: &str) -> &'static str {
    QUESTIONS
        .iter()
        .find(|q| **q == name)
        .copied()
        .unwrap_or(field::SERVICE)
}

/// The codes of `system` a person may choose, with the message for a missing answer.
struct Choices {
    codes: Vec<&'static str>,
    message: &'static str,
}

fn codes_except(system: &str, except: &[&str], message: &'static str) -> Choices {
    Choices {
        codes: code_system(system)
            .codes()
            .filter(|c| !except.contains(c))
            .collect(),
        message,
    }
}

/// Characters that change how text reads without being seen: zero-width ones, bidirectional
/// controls (which can make a name read differently in a letter), the soft hyphen, the BOM.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}')
}

/// Whole years from `birth` to `today`.
fn age_on(birth: NaiveDate, today: NaiveDate) -> i32 {
    let mut age = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// A postcode as a person may type it (`s12he`, ` S1  2he `), upper case with one space.
pub fn normalise_postcode(raw: &str) -> String {
    let compact: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if compact.len() > 3 && compact.is_ascii() {
        let (outward, inward) = compact.split_at(compact.len() - 3);
        format!("{outward} {inward}")
    } else {
        compact
    }
}

/// An email address's shape: something, `@`, a domain with a dot; no spaces; at most 254
/// characters (RFC 5321's path limit). Whether it reaches the person only sending can tell.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && !s.chars().any(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

#[cfg(test)]
mod tests;
