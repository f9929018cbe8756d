//! What an adviser sends: the JSON bodies of the workflow routes, and their checks. Codes are
//! checked against the project's CodeSystems, so a published list and the API cannot drift.

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Parties;
use crate::fhir::terminology::{code_system, coding};
use crate::fhir::{IssueType, Issues};

/// The longest free-text note kept (a letter's sections have their own limits).
const MAX_NOTE: usize = 4000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Triage(Triage),
    Contact(Encounter),
    Support(Support),
    Discharge(Discharge),
    /// The referrer cancels the referral (never an adviser's action).
    Withdraw(Withdrawal),
    /// The referrer amends the referral: the stage stays, the note says what changed.
    Amend(Amendment),
    /// What became of the person weeks after discharge.
    FollowUp(FollowUp),
}

/// The referrer's amendment of a referral, as the workflow records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amendment {
    /// What the service is told changed.
    pub note: String,
}

/// Why the referrer cancelled: BaRS's two cancellation statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// `revoked`: the referral is no longer wanted.
    Revoked,
    /// `entered-in-error`: it should never have been sent.
    EnteredInError,
}

impl Withdrawal {
    /// The ServiceRequest status a cancellation carries.
    pub fn from_status(status: &str) -> Option<Withdrawal> {
        match status {
            "revoked" => Some(Withdrawal::Revoked),
            "entered-in-error" => Some(Withdrawal::EnteredInError),
            _ => None,
        }
    }

    pub fn status(self) -> &'static str {
        match self {
            Withdrawal::Revoked => "revoked",
            Withdrawal::EnteredInError => "entered-in-error",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Withdrawal::Revoked => "Cancelled by the referrer",
            Withdrawal::EnteredInError => "Cancelled by the referrer: sent in error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriageDecision {
    Accept,
    Decline {
        /// A `referral-decline-reason` code.
        reason: String,
        /// For `not-eligible`: the `eligibility-criterion` code that failed.
        criterion: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triage {
    pub decision: TriageDecision,
    pub note: Option<String>,
}

/// `POST …/triage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageBody {
    pub decision: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub criterion: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A workflow route's body, as the action it asks for (or every problem with it).
pub trait IntoAction {
    /// What the body is, in a person's words ("a triage"), for errors about it.
    const NAME: &'static str;
    fn into_action(self) -> Result<Action, Issues>;
}

impl IntoAction for Encounter {
    const NAME: &'static str = "a contact";
    fn into_action(self) -> Result<Action, Issues> {
        Ok(Action::Contact(self))
    }
}

impl IntoAction for Support {
    const NAME: &'static str = "a record of support";
    fn into_action(self) -> Result<Action, Issues> {
        Ok(Action::Support(self))
    }
}

impl IntoAction for Discharge {
    const NAME: &'static str = "a discharge";
    fn into_action(self) -> Result<Action, Issues> {
        Ok(Action::Discharge(self))
    }
}

impl IntoAction for FollowUp {
    const NAME: &'static str = "a follow-up outcome";
    fn into_action(self) -> Result<Action, Issues> {
        Ok(Action::FollowUp(self))
    }
}

impl IntoAction for TriageBody {
    const NAME: &'static str = "a triage";
    /// The triage it asks for, or every problem with it.
    fn into_action(self) -> Result<Action, Issues> {
        let mut issues = Issues::new();
        let decision = match self.decision.as_str() {
            "accept" => {
                if self.reason.is_some() || self.criterion.is_some() {
                    issues.error(
                        IssueType::BusinessRule,
                        "reason",
                        "an accepted referral has no decline reason: leave reason and criterion out",
                    );
                }
                TriageDecision::Accept
            }
            "decline" => {
                let reason = self.reason.clone().unwrap_or_default();
                match &self.reason {
                    None => issues.error(
                        IssueType::Required,
                        "reason",
                        format!(
                            "a decline needs a reason: one of {}",
                            codes("referral-decline-reason")
                        ),
                    ),
                    Some(r) => check_code(&mut issues, "reason", "referral-decline-reason", r),
                }
                match (&self.criterion, reason.as_str()) {
                    (Some(c), "not-eligible") => {
                        check_code(&mut issues, "criterion", "eligibility-criterion", c)
                    }
                    (None, "not-eligible") => issues.error(
                        IssueType::Required,
                        "criterion",
                        format!(
                            "a not-eligible decline names the criterion the person does not meet: one of {}",
                            codes("eligibility-criterion")
                        ),
                    ),
                    (Some(_), _) => issues.error(
                        IssueType::BusinessRule,
                        "criterion",
                        "a criterion is named only for a not-eligible decline",
                    ),
                    (None, _) => {}
                }
                if reason == "other" && self.note.as_deref().is_none_or(|n| n.trim().is_empty()) {
                    issues.error(
                        IssueType::Required,
                        "note",
                        "a decline for another reason says what it is in the note",
                    );
                }
                TriageDecision::Decline {
                    reason,
                    criterion: self.criterion,
                }
            }
            other => {
                issues.error(
                    IssueType::Value,
                    "decision",
                    format!("decision '{other}' is not one of accept, decline"),
                );
                TriageDecision::Accept
            }
        };
        check_note(&mut issues, "note", self.note.as_deref());
        issues.into_result(Action::Triage(Triage {
            decision,
            note: self.note,
        }))
    }
}

/// A contact with the person: the first is the service's first contact, the later ones
/// appointments. Stored as a FHIR Encounter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Encounter {
    pub date: NaiveDate,
    /// A `contact-channel` code.
    pub channel: String,
    /// False: the person did not attend.
    #[serde(default = "yes")]
    pub attended: bool,
    #[serde(default)]
    pub note: Option<String>,
}

fn yes() -> bool {
    true
}

impl Encounter {
    /// The Encounter resource for this contact.
    pub fn encounter(&self, id: &str, parties: &Parties) -> Value {
        // v3 ActCode classes: AMB (ambulatory: in person) and VR (virtual) for the rest.
        let (class, class_display) = match self.channel.as_str() {
            "in-person" => ("AMB", "ambulatory"),
            _ => ("VR", "virtual"),
        };
        let service = crate::fhir::identifiers::identifier_reference(&parties.service);
        json!({
            "resourceType": "Encounter",
            "id": id,
            "meta": { "tag": [crate::consent::service_record_tag()] },
            "status": if self.attended { "finished" } else { "cancelled" },
            "class": { "system": crate::fhir::systems::V3_ACT_CODE, "code": class, "display": class_display },
            "type": [{ "coding": [coding("contact-channel", &self.channel)] }],
            "subject": { "reference": parties.patient },
            "basedOn": [{ "reference": parties.referral }],
            "period": { "start": self.date.to_string(), "end": self.date.to_string() },
            "serviceProvider": service,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Support {
    pub date: NaiveDate,
    /// `support-given` codes.
    pub codes: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Discharge {
    pub date: NaiveDate,
    /// An `employment-outcome` code.
    #[serde(default)]
    pub employment_outcome: Option<String>,
    /// `health-outcome` codes.
    #[serde(default)]
    pub health_outcomes: Vec<String>,
    /// A `support-ended-reason` code, when support ended before it was planned to.
    #[serde(default)]
    pub ended_early_reason: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// The lowest and highest total of the Short Warwick-Edinburgh Mental Wellbeing Scale (seven
/// items scored 1 to 5).
pub const SWEMWBS_RANGE: std::ops::RangeInclusive<u8> = 7..=35;

/// An outcome recorded after discharge (`POST …/follow-ups`), stored as an Observation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FollowUp {
    /// When the service followed the person up.
    pub date: NaiveDate,
    /// A `follow-up-interval` code: the weeks after discharge ("4", "12", "26").
    pub interval: String,
    /// A `follow-up-work-status` code.
    pub work_status: String,
    /// The person's SWEMWBS total, when they gave one.
    #[serde(default)]
    pub wellbeing_score: Option<u8>,
    #[serde(default)]
    pub note: Option<String>,
}

impl FollowUp {
    /// The follow-up as an Observation the service wrote (`id`), about the referral in `parties`.
    pub fn observation(&self, id: &str, parties: &Parties) -> Value {
        let local = |code: &str| json!({ "coding": [coding("observation-type", code)] });
        let mut components = vec![
            json!({ "code": local("follow-up-interval"),
                    "valueCodeableConcept": { "coding": [coding("follow-up-interval", &self.interval)] } }),
            json!({ "code": local("follow-up-work-status"),
                    "valueCodeableConcept": { "coding": [coding("follow-up-work-status", &self.work_status)] } }),
        ];
        if let Some(score) = self.wellbeing_score {
            components.push(json!({ "code": local("wellbeing-swemwbs"), "valueInteger": score }));
        }
        let mut obs = json!({
            "resourceType": "Observation",
            "id": id,
            "meta": { "tag": [crate::consent::service_record_tag()] },
            "status": "final",
            "category": [{ "coding": [{ "system": crate::fhir::systems::OBSERVATION_CATEGORY, "code": "social-history", "display": "Social History" }] }],
            "code": local("follow-up-outcome"),
            "subject": { "reference": parties.patient },
            "basedOn": [{ "reference": parties.referral }],
            "effectiveDateTime": self.date.to_string(),
            "performer": [crate::fhir::identifiers::identifier_reference(&parties.service)],
            "component": components,
        });
        if let Some(note) = &self.note {
            obs["note"] = json!([{ "text": note }]);
        }
        obs
    }
}

impl Action {
    /// Where a problem with the action as a whole is reported.
    pub fn expression(&self) -> &'static str {
        match self {
            Action::Triage(_) => "decision",
            Action::Contact(_) | Action::Support(_) | Action::Discharge(_) => "date",
            Action::FollowUp(_) => "interval",
            Action::Withdraw(_) => "ServiceRequest.status",
            Action::Amend(_) => "ServiceRequest.status",
        }
    }

    /// What the action is, for the audit trail (no free text of the adviser's).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Triage(t) => match t.decision {
                TriageDecision::Accept => "triage: accepted",
                TriageDecision::Decline { .. } => "triage: declined",
            },
            Action::Contact(_) => "contact",
            Action::Support(_) => "support",
            Action::Discharge(_) => "discharge",
            Action::Withdraw(_) => "cancelled by the referrer",
            Action::Amend(_) => "amended by the referrer",
            Action::FollowUp(_) => "follow-up",
        }
    }

    pub fn note(&self) -> Option<&str> {
        match self {
            Action::Triage(t) => t.note.as_deref(),
            Action::Contact(c) => c.note.as_deref(),
            Action::Support(s) => s.note.as_deref(),
            Action::Discharge(d) => d.note.as_deref(),
            Action::FollowUp(f) => f.note.as_deref(),
            Action::Withdraw(_) => None,
            Action::Amend(a) => Some(&a.note),
        }
    }

    /// Problems with the action's own fields (not with the referral's stage).
    pub fn validate(&self, today: NaiveDate) -> Issues {
        let mut issues = Issues::new();
        let not_future = |issues: &mut Issues, date: NaiveDate| {
            if date > today {
                issues.error(
                    IssueType::BusinessRule,
                    "date",
                    format!("{date} is in the future: record what has happened"),
                );
            }
        };
        match self {
            Action::Triage(_) | Action::Withdraw(_) | Action::Amend(_) => {}
            Action::Contact(c) => {
                not_future(&mut issues, c.date);
                check_code(&mut issues, "channel", "contact-channel", &c.channel);
            }
            Action::Support(s) => {
                not_future(&mut issues, s.date);
                if s.codes.is_empty() {
                    issues.error(
                        IssueType::Required,
                        "codes",
                        format!(
                            "name the support given: one or more of {}",
                            codes("support-given")
                        ),
                    );
                }
                for (i, c) in s.codes.iter().enumerate() {
                    check_code(&mut issues, &format!("codes[{i}]"), "support-given", c);
                }
            }
            Action::Discharge(d) => {
                not_future(&mut issues, d.date);
                match &d.employment_outcome {
                    Some(e) => {
                        check_code(&mut issues, "employmentOutcome", "employment-outcome", e)
                    }
                    None => issues.error(
                        IssueType::Required,
                        "employmentOutcome",
                        format!(
                            "a discharge records the person's work situation: one of {}",
                            codes("employment-outcome")
                        ),
                    ),
                }
                for (i, h) in d.health_outcomes.iter().enumerate() {
                    check_code(
                        &mut issues,
                        &format!("healthOutcomes[{i}]"),
                        "health-outcome",
                        h,
                    );
                }
                if let Some(r) = &d.ended_early_reason {
                    check_code(&mut issues, "endedEarlyReason", "support-ended-reason", r);
                    if r == "other" && d.note.as_deref().is_none_or(|n| n.trim().is_empty()) {
                        issues.error(
                            IssueType::Required,
                            "note",
                            "support that ended early for another reason says what it was in the note",
                        );
                    }
                }
            }
            Action::FollowUp(f) => {
                not_future(&mut issues, f.date);
                check_code(&mut issues, "interval", "follow-up-interval", &f.interval);
                check_code(
                    &mut issues,
                    "workStatus",
                    "follow-up-work-status",
                    &f.work_status,
                );
                if let Some(score) = f.wellbeing_score
                    && !SWEMWBS_RANGE.contains(&score)
                {
                    issues.error(
                        IssueType::Value,
                        "wellbeingScore",
                        format!(
                            "{score} is not a SWEMWBS total: the scale's seven items add up to {} to {}",
                            SWEMWBS_RANGE.start(),
                            SWEMWBS_RANGE.end()
                        ),
                    );
                }
            }
        }
        if !matches!(self, Action::Triage(_)) {
            check_note(&mut issues, "note", self.note());
        }
        issues
    }
}

/// The codes of one of the project's CodeSystems, for diagnostics.
pub fn codes(system: &str) -> String {
    code_system(system)
        .concepts
        .iter()
        .map(|(c, _)| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn check_code(issues: &mut Issues, expression: &str, system: &str, code: &str) {
    if code_system(system).display(code).is_none() {
        issues.error(
            IssueType::CodeInvalid,
            expression,
            format!(
                "'{code}' is not a {system} code: use one of {}",
                codes(system)
            ),
        );
    }
}

pub fn check_note(issues: &mut Issues, expression: &str, note: Option<&str>) {
    if let Some(n) = note
        && n.chars().count() > MAX_NOTE
    {
        issues.error(
            IssueType::TooLong,
            expression,
            format!("at most {MAX_NOTE} characters"),
        );
    }
}
