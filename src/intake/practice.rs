//! The practice referral format (`profiles/practice-referral.schema.json`): its typed model and the
//! checks a clinician would expect beyond the schema. Pure: time and configuration come in.

use std::sync::LazyLock;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use jsonschema::Validator;
use serde::Deserialize;
use serde_json::Value;

use super::{IntakeContext, schema};
use crate::caller::{Principal, Role};
use crate::fhir::identifiers::{self, NhsNumberError};
use crate::fhir::{IssueType, Issues};

pub const SCHEMA: &str = include_str!("../../profiles/practice-referral.schema.json");
static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| schema::compile(SCHEMA));

/// Clock skew tolerated between a sender's clock and ours for "not in the future" checks.
const CLOCK_SKEW_MINUTES: i64 = 5;
pub const MIN_AGE_YEARS: i32 = 14;
pub const MAX_AGE_YEARS: i32 = 120;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PracticeReferral {
    pub referral_id: String,
    pub authored_on: DateTime<FixedOffset>,
    /// The sender when a GP practice sends it; else `referring_organisation` (exactly one is
    /// present once validated: see [`PracticeReferral::sender`]).
    #[serde(default)]
    pub practice: Option<Practice>,
    #[serde(default)]
    pub referring_organisation: Option<ReferringOrganisation>,
    pub referrer: Option<Referrer>,
    pub route: String,
    pub route_detail: Option<String>,
    pub target_service: String,
    pub priority: String,
    pub patient: PatientDetails,
    pub employment: Employment,
    pub health_conditions: RecordedList<ConditionItem>,
    pub workplace_exposures: RecordedList<ExposureItem>,
    pub support_wanted: SupportWanted,
    pub consent: ConsentBlock,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Practice {
    pub ods_code: String,
    pub name: Option<String>,
    pub phone: Option<String>,
}

/// A referring organisation that is not a GP practice.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferringOrganisation {
    /// Its kind: the role code of a referrer of another kind (`Role::other_referrer`).
    pub kind: String,
    pub code: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// The organisation that sent a referral, whichever block of the format names it.
#[derive(Debug, Clone, Copy)]
pub struct SendingOrganisation<'a> {
    /// The kind of referrer (`Role::Practice` for a GP practice).
    pub role: Role,
    /// Its code: a practice's ODS code, another kind's registered code.
    pub code: &'a str,
    pub name: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub email: Option<&'a str>,
}

impl<'a> SendingOrganisation<'a> {
    /// Its identifier (`system|value`): the organisation an access token for it is for
    /// (`Principal::new`).
    pub fn organisation(&self) -> String {
        Principal::new(self.role, self.code).organisation
    }

    /// `(system, value)` of its identifier.
    pub fn identifier(&self) -> (String, &'a str) {
        let organisation = self.organisation();
        let system = organisation
            .rsplit_once('|')
            .map_or(String::new(), |(s, _)| s.to_string());
        (system, self.code)
    }

    /// The namespace its referral ids live in: `practice:C88038`, `employer:E1234`.
    pub fn namespace(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.code)
    }

    pub fn is_practice(&self) -> bool {
        self.role == Role::Practice
    }
}

impl PracticeReferral {
    /// The organisation that sent it.
    pub fn sender(&self) -> SendingOrganisation<'_> {
        match (&self.practice, &self.referring_organisation) {
            (Some(p), _) => SendingOrganisation {
                role: Role::Practice,
                code: &p.ods_code,
                name: p.name.as_deref(),
                phone: p.phone.as_deref(),
                email: None,
            },
            (None, Some(o)) => SendingOrganisation {
                role: Role::other_referrer(&o.kind)
                    .expect("validation admits only the kinds of referrer the schema lists"),
                code: &o.code,
                name: Some(&o.name),
                phone: o.phone.as_deref(),
                email: o.email.as_deref(),
            },
            (None, None) => unreachable!("validation requires practice or referringOrganisation"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HumanName {
    pub prefix: Option<String>,
    pub given: Vec<String>,
    pub family: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub name: HumanName,
    pub profession: String,
    pub registration: Option<Registration>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    pub register: String,
    pub number: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientDetails {
    pub nhs_number: String,
    pub nhs_number_verification: String,
    pub name: HumanName,
    pub birth_date: NaiveDate,
    pub sex: String,
    pub postcode: String,
    #[serde(default)]
    pub address_lines: Vec<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub preferred_contact: String,
    pub language: String,
    pub interpreter_needed: bool,
    /// An `ethnic-group` code (ONS 2021); none is "not recorded".
    #[serde(default)]
    pub ethnicity: Option<String>,
    /// A `disability-status` code; none is "not recorded".
    #[serde(default)]
    pub disability: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Employment {
    pub status: String,
    pub job_title: Option<String>,
    pub employer_name: Option<String>,
    pub employer_size: Option<String>,
    pub sector: Option<String>,
    pub hours_per_week: Option<f64>,
    pub contract_type: Option<String>,
    pub sickness_absence_start: Option<NaiveDate>,
    pub employer_occupational_health: Option<String>,
    pub right_to_work: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordedList<T> {
    pub status: String,
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionItem {
    pub category: String,
    pub snomed_code: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExposureItem {
    pub code: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SupportWanted {
    pub needs: Vec<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentBlock {
    pub patient_agreed: bool,
    pub recorded_by: ConsentRecorder,
    pub recorded_at: DateTime<FixedOffset>,
    /// The service may also see the person's fit notes.
    #[serde(default)]
    pub share_fit_notes: Option<bool>,
    /// The service may send letters and outcomes back to the referring practice.
    #[serde(default)]
    pub feedback_to_practice: Option<bool>,
    /// The service may send letters and outcomes back to the referring organisation (not a
    /// practice, not an employer).
    #[serde(default)]
    pub feedback_to_referrer: Option<bool>,
    /// Pseudonymised data may be used to evaluate the service.
    #[serde(default)]
    pub evaluation: Option<bool>,
    /// The last day the agreements hold (inclusive); open-ended when absent.
    #[serde(default)]
    pub valid_until: Option<chrono::NaiveDate>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsentRecorder {
    pub name: HumanName,
    pub profession: String,
}

/// Employment statuses that mean the person is off sick and so has an absence start date.
pub fn is_off_sick(status: &str) -> bool {
    matches!(status, "off-sick" | "off-sick-work-related")
}

/// The register a profession's registration must come from, for professions that must give one.
pub fn required_register(profession: &str) -> Option<&'static str> {
    Some(match profession {
        "gp" => "gmc",
        "practice-nurse" => "nmc",
        "physiotherapist" | "occupational-therapist" => "hcpc",
        "pharmacist" => "gphc",
        _ => return None,
    })
}

/// Checks a practice referral and returns it typed, or every problem found.
pub fn validate(value: &Value, ctx: &IntakeContext) -> Result<PracticeReferral, Issues> {
    let mut issues = schema::check(&VALIDATOR, value);
    business_rules(value, ctx, &mut issues);
    if !issues.is_empty() {
        return Err(issues);
    }
    // The schema and rules above admit only input this type can hold; a failure here means the
    // two disagree, which is reported rather than trusted.
    serde_json::from_value(value.clone()).map_err(|e| {
        Issues::from(crate::fhir::Issue::general(
            IssueType::Structure,
            format!("referral could not be read: {e}"),
        ))
    })
}

/// The rules a schema cannot express. Reads the raw JSON so every rule runs even when other
/// fields are broken, and skips fields the schema already reported.
fn business_rules(v: &Value, ctx: &IntakeContext, issues: &mut Issues) {
    let str_at = |path: &str| -> Option<&str> { pointer(v, path).and_then(Value::as_str) };
    let mut rules = Issues::new();
    let latest_allowed = ctx.now + Duration::minutes(CLOCK_SKEW_MINUTES);

    if let Some(ods) = str_at("practice.odsCode")
        && !identifiers::is_gp_practice_ods(ods)
    {
        rules.error(IssueType::Value, "practice.odsCode", format!("'{ods}' is not a GP practice ODS code: expected one upper-case letter and five digits, e.g. C88038"));
    }
    sender_rules(v, ctx, &mut rules);

    if let Some(nhs) = str_at("patient.nhsNumber")
        && let Err(e) = identifiers::nhs_number(nhs)
    {
        let code = if e == NhsNumberError::Format {
            IssueType::Value
        } else {
            IssueType::Invariant
        };
        rules.error(
            code,
            "patient.nhsNumber",
            format!("patient.nhsNumber is not a valid NHS number: {e}"),
        );
    }

    if str_at("patient.nhsNumberVerification") == Some("07") {
        rules.error(
            IssueType::BusinessRule,
            "patient.nhsNumberVerification",
            "verification status 07 means no NHS number is present, but one was given: use 01 (verified) or 02 (not traced)",
        );
    }

    if let Some(pc) = str_at("patient.postcode")
        && !identifiers::is_uk_postcode(pc)
    {
        rules.error(IssueType::Value, "patient.postcode", format!("'{pc}' is not a UK postcode: use upper case with an optional space, e.g. S1 2HE (ZZ99 3VZ for no fixed abode)"));
    }

    let route = str_at("route");
    if route == Some("other") && pointer(v, "routeDetail").is_none() {
        rules.error(
            IssueType::Required,
            "routeDetail",
            "routeDetail is required when route is 'other': say who referred the person",
        );
    }
    let referrer = pointer(v, "referrer");
    if referrer.is_none() && route.is_some_and(|r| !matches!(r, "self-referral" | "employer")) {
        rules.error(
            IssueType::Required,
            "referrer",
            "referrer is required unless the route is self-referral or employer",
        );
    }
    if referrer.is_some() {
        check_registration(v, &mut rules);
    }

    if let Some(service) = str_at("targetService")
        && ctx.service(service).is_none()
    {
        let known: Vec<&str> = ctx.services.iter().map(|s| s.id.as_str()).collect();
        rules.error(
            IssueType::NotFound,
            "targetService",
            format!(
                "'{service}' is not a service this gateway refers to; configured services: {}",
                known.join(", ")
            ),
        );
    }

    let authored = date_time_at(v, "authoredOn");
    if let Some(t) = authored
        && t > latest_allowed
    {
        rules.error(
            IssueType::Value,
            "authoredOn",
            "authoredOn is in the future: a referral cannot be dated after it was sent",
        );
    }

    let mut birth = date_at(v, "patient.birthDate");
    if let Some(b) = birth {
        let on = authored
            .map(|t| t.date_naive())
            .unwrap_or(ctx.now.date_naive());
        if b > ctx.now.date_naive() {
            // A wrong birth date is reported once, not again through every rule that uses it.
            birth = None;
            rules.error(
                IssueType::Value,
                "patient.birthDate",
                "patient.birthDate is in the future",
            );
        } else {
            let age = age_on(b, on);
            if !(MIN_AGE_YEARS..=MAX_AGE_YEARS).contains(&age) {
                birth = None;
                rules.error(IssueType::Value, "patient.birthDate", format!("patient.birthDate gives an age of {age} at referral; a work-and-health referral needs an age from {MIN_AGE_YEARS} to {MAX_AGE_YEARS}: check the date"));
            }
        }
    }

    if let Some(status) = str_at("employment.status") {
        let start = date_at(v, "employment.sicknessAbsenceStart");
        if is_off_sick(status) && pointer(v, "employment.sicknessAbsenceStart").is_none() {
            rules.error(IssueType::Required, "employment.sicknessAbsenceStart", format!("employment.sicknessAbsenceStart is required when employment.status is '{status}'"));
        }
        if let Some(s) = start {
            if s > ctx.now.date_naive() {
                rules.error(
                    IssueType::Value,
                    "employment.sicknessAbsenceStart",
                    "employment.sicknessAbsenceStart is in the future",
                );
            } else if birth.is_some_and(|b| age_on(b, s) < MIN_AGE_YEARS) {
                rules.error(IssueType::Value, "employment.sicknessAbsenceStart", "employment.sicknessAbsenceStart is before the person was of working age: check the date");
            }
        }
    }

    recorded_list_rule(v, "healthConditions", "health conditions", &mut rules);
    recorded_list_rule(
        v,
        "workplaceExposures",
        "workplace exposure issues",
        &mut rules,
    );
    if let Some(items) = pointer(v, "healthConditions.items").and_then(Value::as_array) {
        for (i, item) in items.iter().enumerate() {
            if let Some(code) = item.get("snomedCode").and_then(Value::as_str)
                && !identifiers::is_snomed_concept_id(code)
            {
                rules.error(IssueType::CodeInvalid, format!("healthConditions.items[{i}].snomedCode"), format!("'{code}' is not a SNOMED CT concept id (its check digit or partition is wrong): check it was copied correctly"));
            }
        }
    }

    // patientAgreed = false is not refused here: it maps to a rejected Consent, and the consent
    // decision at intake (the one enforcement point) refuses the referral.
    if let (Some(recorded), Some(until)) = (
        date_time_at(v, "consent.recordedAt"),
        date_at(v, "consent.validUntil"),
    ) && until < recorded.date_naive()
    {
        rules.error(
            IssueType::Value,
            "consent.validUntil",
            "consent.validUntil is before the agreement was recorded",
        );
    }
    if let Some(recorded) = date_time_at(v, "consent.recordedAt") {
        if recorded > latest_allowed {
            rules.error(
                IssueType::Value,
                "consent.recordedAt",
                "consent.recordedAt is in the future",
            );
        } else if authored.is_some_and(|a| recorded > a + Duration::minutes(CLOCK_SKEW_MINUTES)) {
            rules.error(IssueType::BusinessRule, "consent.recordedAt", "consent.recordedAt is after authoredOn: agreement must be recorded before the referral is made");
        }
    }

    for issue in rules.into_vec() {
        let expr = issue.expression.as_deref().unwrap_or_default();
        if !issues.touches(expr) {
            issues.push(issue);
        }
    }
}

/// Who sent it, and what that kind of referrer may say: exactly one of `practice` and
/// `referringOrganisation`; a referrer of another kind only on its own routes, to a service
/// that takes referrals on that route, recording only the agreements it may (a practice's
/// fit notes are the practice's to share; an employer is never sent feedback).
fn sender_rules(v: &Value, ctx: &IntakeContext, rules: &mut Issues) {
    let organisation = pointer(v, "referringOrganisation");
    match (pointer(v, "practice").is_some(), organisation.is_some()) {
        (true, true) => rules.error(
            IssueType::Invariant,
            "referringOrganisation",
            "give practice or referringOrganisation, not both: the referral has one sender",
        ),
        (false, false) => rules.error(
            IssueType::Required,
            "practice",
            "practice is required (the referring GP practice), or referringOrganisation when the referrer is not a GP practice",
        ),
        (true, false) => {
            if pointer(v, "consent.feedbackToReferrer").is_some() {
                rules.error(
                    IssueType::BusinessRule,
                    "consent.feedbackToReferrer",
                    "a practice's referral states feedback to the practice as consent.feedbackToPractice",
                );
            }
            return;
        }
        (false, true) => {}
    }
    let Some(kind) = pointer(v, "referringOrganisation.kind")
        .and_then(Value::as_str)
        .and_then(Role::other_referrer)
    else {
        return; // the schema reports an unknown kind
    };
    let route = pointer(v, "route").and_then(Value::as_str);
    if let Some(route) = route {
        let allowed = kind.referral_routes();
        if !allowed.contains(&route) {
            rules.error(
                IssueType::BusinessRule,
                "route",
                format!(
                    "a {} referrer refers on the route{} {}, not '{route}'",
                    kind.as_str(),
                    if allowed.len() > 1 { "s" } else { "" },
                    allowed.join(" or ")
                ),
            );
        } else if let Some(service) = pointer(v, "targetService")
            .and_then(Value::as_str)
            .and_then(|id| ctx.service(id))
            && !service.referral_routes.iter().any(|r| r == route)
        {
            rules.error(
                IssueType::BusinessRule,
                "route",
                format!(
                    "{} does not take referrals on the '{route}' route (it takes: {}); see its HealthcareService at GET /fhir/HealthcareService",
                    service.name,
                    service.referral_routes.join(", ")
                ),
            );
        }
    }
    if pointer(v, "consent.feedbackToPractice").is_some() {
        rules.error(
            IssueType::BusinessRule,
            "consent.feedbackToPractice",
            "only a practice's referral states feedback to the practice; a referring organisation states consent.feedbackToReferrer",
        );
    }
    if pointer(v, "consent.shareFitNotes").and_then(Value::as_bool) == Some(true) {
        rules.error(
            IssueType::Forbidden,
            "consent.shareFitNotes",
            "only the person's GP practice, which sent their fit notes, records their agreement to share them: leave shareFitNotes out",
        );
    }
    if kind == Role::Employer {
        if pointer(v, "consent.feedbackToReferrer").and_then(Value::as_bool) == Some(true) {
            rules.error(
                IssueType::Forbidden,
                "consent.feedbackToReferrer",
                "an employer is never sent letters or outcomes about the person: what reaches an employer is a letter the person has approved. Leave feedbackToReferrer out",
            );
        }
        if pointer(v, "patient.nhsNumberVerification").and_then(Value::as_str) == Some("01") {
            rules.error(
                IssueType::BusinessRule,
                "patient.nhsNumberVerification",
                "an employer cannot have traced the NHS number against the national record (PDS): state 02 (not traced), and the service will trace it",
            );
        }
    }
}

fn check_registration(v: &Value, rules: &mut Issues) {
    let profession = pointer(v, "referrer.profession").and_then(Value::as_str);
    let register = pointer(v, "referrer.registration.register").and_then(Value::as_str);
    let number = pointer(v, "referrer.registration.number").and_then(Value::as_str);
    if let Some(required) = profession.and_then(required_register) {
        match register {
            None if pointer(v, "referrer.registration").is_none() => rules.error(
                IssueType::Required,
                "referrer.registration",
                format!(
                    "referrer.registration is required for a {}: give the {} number",
                    profession.unwrap_or_default(),
                    required.to_uppercase()
                ),
            ),
            Some(r) if r != required => rules.error(
                IssueType::BusinessRule,
                "referrer.registration.register",
                format!(
                    "a {} is registered with the {}, not the {}",
                    profession.unwrap_or_default(),
                    required.to_uppercase(),
                    r.to_uppercase()
                ),
            ),
            _ => {}
        }
    }
    if let (Some(r), Some(n)) = (register, number)
        && let Err(expected) = identifiers::registration_number(r, n)
    {
        rules.error(
            IssueType::Value,
            "referrer.registration.number",
            format!(
                "'{n}' is not a {} number: expected {expected}",
                r.to_uppercase()
            ),
        );
    }
}

fn recorded_list_rule(v: &Value, field: &str, what: &str, rules: &mut Issues) {
    let Some(status) = pointer(v, &format!("{field}.status")).and_then(Value::as_str) else {
        return;
    };
    let count = pointer(v, &format!("{field}.items"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if status == "recorded" && count == 0 {
        rules.error(IssueType::Required, format!("{field}.items"), format!("{field}.status is 'recorded' but no {what} are listed: list them, or use status none, prefer-not-to-say or not-recorded"));
    } else if status != "recorded" && count > 0 {
        rules.error(
            IssueType::Invariant,
            format!("{field}.items"),
            format!("{field}.status is '{status}' but {what} are listed: use status 'recorded'"),
        );
    }
}

/// Looks up a dotted path (no array indexes) in a JSON value.
fn pointer<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |node, key| node.get(key))
}

fn date_at(v: &Value, path: &str) -> Option<NaiveDate> {
    pointer(v, path)?
        .as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

fn date_time_at(v: &Value, path: &str) -> Option<DateTime<Utc>> {
    pointer(v, path)?
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Whole years from `birth` to `on`.
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> i32 {
    use chrono::Datelike;
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}
