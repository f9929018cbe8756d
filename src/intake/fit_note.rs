//! The practice fit-note format (`profiles/practice-fit-note.schema.json`): its typed model and the
//! DWP's rules for a Statement of Fitness for Work. Pure: time comes in.

use std::sync::LazyLock;

use chrono::{Days, Months, NaiveDate};
use jsonschema::Validator;
use serde::Deserialize;
use serde_json::Value;

use super::practice::{HumanName, Registration};
use super::{IntakeContext, schema};
use crate::fhir::identifiers::{self, NhsNumberError};
use crate::fhir::{Issue, IssueType, Issues};

pub const SCHEMA: &str = include_str!("../../profiles/practice-fit-note.schema.json");
static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| schema::compile(SCHEMA));

/// Absences shorter than this need explicit from and to dates (DWP).
const MIN_DAYS_FOR_A_LENGTH: i64 = 15;
/// In the first six months of sickness absence a statement covers at most three months.
const FIRST_PHASE_MONTHS: u32 = 6;
const FIRST_PHASE_MAX_MONTHS: u32 = 3;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PracticeFitNote {
    pub fit_note_id: String,
    pub practice: super::practice::Practice,
    pub patient: FitNotePatient,
    pub issuer: Issuer,
    pub assessment: Assessment,
    pub conditions: Vec<FitNoteCondition>,
    pub fitness: String,
    #[serde(default)]
    pub adjustments: Adjustments,
    pub comments: Option<String>,
    pub period: PeriodInput,
    pub absence_start: Option<NaiveDate>,
    pub assess_again: bool,
    pub issued_on: NaiveDate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FitNotePatient {
    pub nhs_number: String,
    pub name: Option<HumanName>,
    pub birth_date: Option<NaiveDate>,
    pub sex: Option<String>,
    pub postcode: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Issuer {
    pub name: HumanName,
    pub profession: String,
    pub registration: Registration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Assessment {
    pub date: NaiveDate,
    pub method: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FitNoteCondition {
    pub snomed_code: Option<String>,
    pub text: String,
}

/// The four "you may benefit from" boxes.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Adjustments {
    #[serde(default)]
    pub phased_return: bool,
    #[serde(default)]
    pub altered_hours: bool,
    #[serde(default)]
    pub amended_duties: bool,
    #[serde(default)]
    pub workplace_adaptations: bool,
}

impl Adjustments {
    /// `(field name, ticked)` in the form's order.
    pub fn boxes(&self) -> [(&'static str, bool); 4] {
        [
            ("phasedReturn", self.phased_return),
            ("alteredHours", self.altered_hours),
            ("amendedDuties", self.amended_duties),
            ("workplaceAdaptations", self.workplace_adaptations),
        ]
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeriodInput {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub length: Option<Length>,
    pub indefinite: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Length {
    pub value: u32,
    pub unit: LengthUnit,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    Days,
    Weeks,
    Months,
}

/// A checked fit note with its period resolved to dates.
#[derive(Debug, Clone)]
pub struct FitNote {
    pub note: PracticeFitNote,
    pub start: NaiveDate,
    /// Inclusive; `None` for an indefinite statement.
    pub end: Option<NaiveDate>,
}

impl FitNote {
    pub fn not_fit(&self) -> bool {
        self.note.fitness == "not-fit"
    }
}

/// The register each profession must give.
pub fn register_for(profession: &str) -> Option<&'static str> {
    Some(match profession {
        "doctor" => "gmc",
        "nurse" => "nmc",
        "occupational-therapist" | "physiotherapist" => "hcpc",
        "pharmacist" => "gphc",
        _ => return None,
    })
}

/// The last day a length covers, counted from `start` (the start is day one).
fn end_of_length(start: NaiveDate, length: Length) -> Option<NaiveDate> {
    let after = match length.unit {
        LengthUnit::Days => start.checked_add_days(Days::new(u64::from(length.value))),
        LengthUnit::Weeks => start.checked_add_days(Days::new(7 * u64::from(length.value))),
        LengthUnit::Months => start.checked_add_months(Months::new(length.value)),
    }?;
    after.pred_opt()
}

/// The DWP's duration rule: in the first six months of sickness absence (counted from
/// `absence_start`) a statement may cover at most three months, and may not be indefinite.
/// `expression` names the period in the sender's terms.
pub fn duration_rule(
    start: NaiveDate,
    end: Option<NaiveDate>,
    absence_start: NaiveDate,
    expression: &str,
) -> Option<Issue> {
    let six_months_on = absence_start.checked_add_months(Months::new(FIRST_PHASE_MONTHS))?;
    if start >= six_months_on {
        return None;
    }
    let latest_end = start
        .checked_add_months(Months::new(FIRST_PHASE_MAX_MONTHS))?
        .pred_opt()?;
    match end {
        None => Some(Issue::error(
            IssueType::BusinessRule,
            expression,
            format!(
                "an indefinite statement is allowed only after six months of sickness absence, but this absence started on {absence_start}: give an end date no later than {latest_end}"
            ),
        )),
        Some(end) if end > latest_end => Some(Issue::error(
            IssueType::BusinessRule,
            expression,
            format!(
                "in the first six months of sickness absence (this one started on {absence_start}) a statement may cover at most three months: it runs {start} to {end}, so it must end by {latest_end}"
            ),
        )),
        _ => None,
    }
}

/// Checks a practice fit note and returns it with its period resolved, or every problem found.
pub fn validate(value: &Value, ctx: &IntakeContext) -> Result<FitNote, Issues> {
    let mut issues = schema::check(&VALIDATOR, value);
    if !issues.is_empty() {
        // Typed rules need a well-formed note; report what else can be checked from the raw JSON.
        raw_rules(value, &mut issues);
        return Err(issues);
    }
    let note: PracticeFitNote = serde_json::from_value(value.clone()).map_err(|e| {
        Issues::from(Issue::general(
            IssueType::Structure,
            format!("fit note could not be read: {e}"),
        ))
    })?;
    raw_rules(value, &mut issues);
    let resolved = rules(note, ctx, &mut issues);
    match resolved {
        Some(fit_note) if issues.is_empty() => Ok(fit_note),
        _ => Err(issues),
    }
}

/// Rules over single fields, run even when the schema found other problems.
fn raw_rules(v: &Value, issues: &mut Issues) {
    let str_at = |path: &[&str]| -> Option<&str> {
        path.iter().try_fold(v, |node, key| node.get(key))?.as_str()
    };
    if let Some(ods) = str_at(&["practice", "odsCode"])
        && !identifiers::is_gp_practice_ods(ods)
    {
        issues.error(IssueType::Value, "practice.odsCode", format!("'{ods}' is not a GP practice ODS code: expected one upper-case letter and five digits, e.g. C88038"));
    }
    if let Some(nhs) = str_at(&["patient", "nhsNumber"])
        && let Err(e) = identifiers::nhs_number(nhs)
    {
        let code = if e == NhsNumberError::Format {
            IssueType::Value
        } else {
            IssueType::Invariant
        };
        issues.error(
            code,
            "patient.nhsNumber",
            format!("patient.nhsNumber is not a valid NHS number: {e}"),
        );
    }
    if let Some(pc) = str_at(&["patient", "postcode"])
        && !identifiers::is_uk_postcode(pc)
    {
        issues.error(
            IssueType::Value,
            "patient.postcode",
            format!(
                "'{pc}' is not a UK postcode: use upper case with an optional space, e.g. S1 2HE"
            ),
        );
    }
    for (i, c) in v["conditions"].as_array().into_iter().flatten().enumerate() {
        if let Some(code) = c["snomedCode"].as_str()
            && !identifiers::is_snomed_concept_id(code)
        {
            issues.error(IssueType::CodeInvalid, format!("conditions[{i}].snomedCode"), format!("'{code}' is not a SNOMED CT concept id (its check digit or partition is wrong): check it was copied correctly"));
        }
    }
    if let (Some(profession), Some(register)) = (
        str_at(&["issuer", "profession"]),
        str_at(&["issuer", "registration", "register"]),
    ) && let Some(expected) = register_for(profession)
        && expected != register
    {
        issues.error(
            IssueType::BusinessRule,
            "issuer.registration.register",
            format!(
                "a {profession} certifies under the {} register, not {}",
                expected.to_uppercase(),
                register.to_uppercase()
            ),
        );
    }
    if let (Some(register), Some(number)) = (
        str_at(&["issuer", "registration", "register"]),
        str_at(&["issuer", "registration", "number"]),
    ) && let Err(e) = identifiers::registration_number(register, number)
    {
        issues.error(
            IssueType::Value,
            "issuer.registration.number",
            format!("not a {} number: expected {e}", register.to_uppercase()),
        );
    }
}

/// The DWP's rules over the whole statement; resolves its period.
fn rules(note: PracticeFitNote, ctx: &IntakeContext, issues: &mut Issues) -> Option<FitNote> {
    // A statement dated up to a day ahead of UTC is a clock or time-zone difference.
    let today = ctx.now.date_naive();
    let latest_allowed = today + Days::new(1);
    if note.issued_on > latest_allowed {
        issues.error(
            IssueType::BusinessRule,
            "issuedOn",
            format!("the statement is dated {}, in the future", note.issued_on),
        );
    }
    if note.assessment.date > note.issued_on {
        issues.error(IssueType::BusinessRule, "assessment.date", format!("the assessment ({}) cannot be after the statement date ({}): a statement follows an assessment", note.assessment.date, note.issued_on));
    }
    if let Some(birth) = note.patient.birth_date
        && birth > today
    {
        issues.error(
            IssueType::Value,
            "patient.birthDate",
            format!("the date of birth {birth} is in the future"),
        );
    }
    if note.fitness == "not-fit" {
        for (field, ticked) in note.adjustments.boxes() {
            if ticked {
                issues.error(IssueType::BusinessRule, format!("adjustments.{field}"), "adjustments may be advised only when the person 'may be fit for work': untick it, or change fitness to may-be-fit");
            }
        }
    }

    let p = &note.period;
    let given = [
        p.to.is_some(),
        p.length.is_some(),
        p.indefinite == Some(true),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        issues.error(IssueType::Required, "period", "give exactly one of period.to (from … to …), period.length (this will be the case for …) or period.indefinite");
        return None;
    }
    let start = p.from.unwrap_or(note.issued_on);
    let end = match (p.to, p.length) {
        (Some(to), _) => {
            if to < start {
                issues.error(
                    IssueType::BusinessRule,
                    "period.to",
                    format!("the period ends ({to}) before it starts ({start})"),
                );
                return None;
            }
            Some(to)
        }
        (None, Some(length)) => {
            let Some(end) = end_of_length(start, length) else {
                issues.error(
                    IssueType::Value,
                    "period.length",
                    "the period's length runs past the calendar",
                );
                return None;
            };
            if (end - start).num_days() + 1 < MIN_DAYS_FOR_A_LENGTH {
                issues.error(IssueType::BusinessRule, "period.length", format!("a statement for under {MIN_DAYS_FOR_A_LENGTH} days must give its from and to dates, not a length"));
            }
            Some(end)
        }
        (None, None) => None,
    };
    if let Some(absence_start) = note.absence_start {
        if absence_start > start {
            issues.error(IssueType::BusinessRule, "absenceStart", format!("the sickness absence ({absence_start}) cannot start after the period the statement covers ({start})"));
        } else if let Some(issue) = duration_rule(start, end, absence_start, "period") {
            issues.push(issue);
        }
    }
    Some(FitNote { note, start, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn ctx(config: &Config) -> IntakeContext<'_> {
        IntakeContext {
            now: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
            ..config.intake_now()
        }
    }

    fn valid() -> Value {
        json!({
            "fitNoteId": "FN-1",
            "practice": { "odsCode": "C88901" },
            "patient": { "nhsNumber": "9990000018" },
            "issuer": { "name": { "given": ["Asha"], "family": "Patel" }, "profession": "doctor", "registration": { "register": "gmc", "number": "7654321" } },
            "assessment": { "date": "2026-11-20", "method": "face-to-face" },
            "conditions": [{ "text": "Low back pain" }],
            "fitness": "may-be-fit",
            "adjustments": { "phasedReturn": true },
            "period": { "from": "2026-11-20", "to": "2026-12-18" },
            "assessAgain": true,
            "issuedOn": "2026-11-20"
        })
    }

    fn expressions(v: &Value) -> Vec<String> {
        let config = Config::defaults();
        validate(v, &ctx(&config))
            .err()
            .map(|i| {
                i.iter()
                    .map(|i| i.expression.clone().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_valid_note_resolves_its_period() {
        let config = Config::defaults();
        let n = validate(&valid(), &ctx(&config)).unwrap();
        assert_eq!(n.start.to_string(), "2026-11-20");
        assert_eq!(n.end.unwrap().to_string(), "2026-12-18");
        let mut v = valid();
        v["period"] = json!({ "length": { "value": 4, "unit": "weeks" } });
        let n = validate(&v, &ctx(&config)).unwrap();
        assert_eq!(
            n.end.unwrap().to_string(),
            "2026-12-17",
            "four weeks from the 20th, the 20th being day one"
        );
    }

    #[test]
    fn adjustments_need_may_be_fit() {
        let mut v = valid();
        v["fitness"] = json!("not-fit");
        v["adjustments"] =
            json!({ "phasedReturn": true, "alteredHours": false, "workplaceAdaptations": true });
        assert_eq!(
            expressions(&v),
            [
                "adjustments.phasedReturn",
                "adjustments.workplaceAdaptations"
            ]
        );
    }

    #[test]
    fn the_register_must_fit_the_profession() {
        let mut v = valid();
        v["issuer"]["profession"] = json!("physiotherapist");
        assert_eq!(expressions(&v), ["issuer.registration.register"]);
        v["issuer"]["profession"] = json!("receptionist");
        assert_eq!(expressions(&v), ["issuer.profession"]);
    }

    #[test]
    fn period_rules() {
        let mut v = valid();
        v["period"] = json!({ "from": "2026-11-20", "to": "2026-11-19" });
        assert_eq!(expressions(&v), ["period.to"]);
        v["period"] = json!({ "length": { "value": 10, "unit": "days" } });
        assert_eq!(expressions(&v), ["period.length"]);
        v["period"] = json!({ "from": "2026-11-20" });
        assert_eq!(expressions(&v), ["period"]);
        v["period"] = json!({ "to": "2026-12-01", "indefinite": true });
        assert_eq!(expressions(&v), ["period"]);
        v["period"] = json!({ "from": "2026-02-30", "to": "2026-03-10" });
        assert_eq!(expressions(&v), ["period.from"], "an impossible date");
    }

    #[test]
    fn three_months_at_most_in_the_first_six_months() {
        let mut v = valid();
        v["absenceStart"] = json!("2026-10-01");
        v["period"] = json!({ "from": "2026-11-20", "to": "2027-02-19" });
        assert!(expressions(&v).is_empty(), "exactly three months");
        v["period"] = json!({ "from": "2026-11-20", "to": "2027-02-20" });
        assert_eq!(expressions(&v), ["period"]);
        v["period"] = json!({ "from": "2026-11-20", "indefinite": true });
        assert_eq!(expressions(&v), ["period"]);
        v["absenceStart"] = json!("2026-05-01");
        assert!(expressions(&v).is_empty(), "indefinite after six months");
    }

    #[test]
    fn dates_in_the_wrong_order_or_future() {
        let mut v = valid();
        v["assessment"]["date"] = json!("2026-11-21");
        v["issuedOn"] = json!("2026-11-28");
        v["period"] = json!({ "from": "2026-11-28", "to": "2026-12-20" });
        assert_eq!(expressions(&v), ["issuedOn"]);
        v["issuedOn"] = json!("2026-11-20");
        v["period"] = json!({ "from": "2026-11-20", "to": "2026-12-20" });
        assert_eq!(expressions(&v), ["assessment.date"]);
    }
}
