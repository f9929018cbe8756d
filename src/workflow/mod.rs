//! The adviser workflow on a referral: triage (accept, or decline with a coded reason), first
//! contact, appointments, support given and discharge with outcomes. Pure: given the referral's
//! stored workflow Task (if any) and an adviser's action, says what the Task, the ServiceRequest's
//! status and any new Encounter become, or every problem with the action.
//!
//! State lives in FHIR so the referring practice reads it with FHIR: the ServiceRequest's
//! `status` (active → revoked on a decline, completed at discharge) and one Task per referral
//! (code `referral-workflow`, `focus` the ServiceRequest) whose `businessStatus` follows
//! `referral-workflow-status` and whose inputs and outputs hold the coded facts.

pub mod action;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

pub use action::{
    Action, Amendment, Discharge, Encounter as Contact, FollowUp, Triage, TriageDecision,
    Withdrawal,
};

use crate::fhir::identifiers::identifier_reference;
use crate::fhir::systems::local_code_system;
use crate::fhir::terminology::coding;
use crate::fhir::{IssueType, Issues};

/// Where a referral stands (`referral-workflow-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Received,
    Accepted,
    Declined,
    Contacted,
    InSupport,
    Discharged,
    /// The referrer cancelled the referral.
    Withdrawn,
}

impl Stage {
    pub fn code(self) -> &'static str {
        match self {
            Stage::Received => "received",
            Stage::Accepted => "accepted",
            Stage::Declined => "declined",
            Stage::Contacted => "contacted",
            Stage::InSupport => "in-support",
            Stage::Discharged => "discharged",
            Stage::Withdrawn => "withdrawn",
        }
    }

    pub fn from_code(code: &str) -> Option<Stage> {
        [
            Stage::Received,
            Stage::Accepted,
            Stage::Declined,
            Stage::Contacted,
            Stage::InSupport,
            Stage::Discharged,
            Stage::Withdrawn,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// The stage as the workflow Task's `businessStatus`.
    fn business_status(self) -> Value {
        let coding = coding("referral-workflow-status", self.code());
        json!({ "coding": [coding.clone()], "text": coding["display"] })
    }

    /// The FHIR `Task.status` for the stage.
    fn task_status(self) -> &'static str {
        match self {
            Stage::Received => "requested",
            Stage::Accepted => "accepted",
            Stage::Declined => "rejected",
            Stage::Contacted | Stage::InSupport => "in-progress",
            Stage::Discharged => "completed",
            Stage::Withdrawn => "cancelled",
        }
    }

    /// The ServiceRequest's `status` once the referral is at this stage.
    pub fn service_request_status(self) -> &'static str {
        match self {
            Stage::Declined | Stage::Withdrawn => "revoked",
            Stage::Discharged => "completed",
            _ => "active",
        }
    }
}

/// The stage a stored workflow Task records (`Received` when there is none yet).
pub fn stage_of(task: Option<&Value>) -> Stage {
    task.and_then(|t| {
        t["businessStatus"]["coding"]
            .as_array()?
            .iter()
            .find(|c| c["system"].as_str() == Some(&local_code_system("referral-workflow-status")))
            .and_then(|c| Stage::from_code(c["code"].as_str()?))
    })
    .unwrap_or(Stage::Received)
}

/// Who the workflow is between, and about whom: references and identifiers as stored.
#[derive(Debug, Clone)]
pub struct Parties {
    /// `ServiceRequest/{id}`.
    pub referral: String,
    /// `Patient/{id}`.
    pub patient: String,
    /// `system|value` of the referring practice (none when the person referred themselves) and
    /// of the service.
    pub practice: Option<String>,
    pub service: String,
    /// When the referral was made (ServiceRequest.authoredOn), for the two-week target.
    pub referred_on: Option<NaiveDate>,
}

/// Whom feedback on a referral goes to (`system|value`): the referring practice, or a referrer
/// of another kind that referred (a Talking Therapies service, a clinic, a voluntary
/// organisation; never an employer, which is sent only letters the person approved), or,
/// when the person referred themselves, the practice they said they are registered with (their
/// Patient's `generalPractitioner`, by ODS code) — but only once their NHS number has been traced
/// and verified (UK Core NHSNumberVerificationStatus `01`). Until then what the person typed is
/// not an identity: a letter naming it could be filed in the record of whoever that number is
/// (anyone can type anyone's number and practice). Whether anything reaches the practice is the
/// person's consent to feedback, asked at each disclosure; none when there is no practice to
/// write to.
pub fn feedback_recipient(referring: Option<&str>, patient: &Value) -> Option<String> {
    if let Some(referrer) = referring {
        // A referrer of another kind is written to as itself, never as the person's practice.
        return takes_feedback(referrer).then(|| referrer.to_string());
    }
    let traced = crate::fhir::patient::verified_nhs_number(patient).is_some();
    if !traced {
        return None;
    }
    let named = patient["generalPractitioner"]
        .as_array()?
        .iter()
        .find_map(|gp| {
            let id = &gp["identifier"];
            (id["system"] == crate::fhir::systems::ODS_ORGANIZATION)
                .then(|| id["value"].as_str())?
        })?;
    Some(format!(
        "{}|{named}",
        crate::fhir::systems::ODS_ORGANIZATION
    ))
}

/// Whether a referring organisation (`system|value`) is one the service writes to about the
/// referral: a practice, or a referrer of another kind other than an employer.
pub fn takes_feedback(referrer: &str) -> bool {
    use crate::consent::RecipientClass;
    crate::consent::Recipient::addressed(referrer).is_some_and(|r| {
        matches!(
            r.class,
            RecipientClass::ReferringPractice | RecipientClass::Referrer
        )
    })
}

/// Whether a referring organisation (`system|value`) is a GP practice: named by its ODS code,
/// where a referrer of another kind is named in the gateway's own systems (`Principal::new`).
pub fn is_practice(referrer: &str) -> bool {
    referrer
        .split_once('|')
        .is_some_and(|(system, _)| system == crate::fhir::systems::ODS_ORGANIZATION)
}

/// What one action changes.
#[derive(Debug, Clone)]
pub struct Change {
    pub stage: Stage,
    /// The workflow Task to store: new (no `id`) or the stored one amended.
    pub task: Value,
    /// A new record of the service's work, already given its `id`: a contact's Encounter or a
    /// follow-up's Observation.
    pub record: Option<Value>,
    /// For a decline: what the automatic letter to the practice says.
    pub decline: Option<DeclineNotice>,
}

/// Why a referral was declined, for the inappropriate-referral letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclineNotice {
    pub reason: String,
    pub reason_display: String,
    pub criterion: Option<String>,
    pub note: Option<String>,
}

/// Applies `action` to the referral whose stored workflow Task is `task` (none before triage).
/// `record_id` is the id a contact's Encounter or a follow-up's Observation gets.
pub fn apply(
    parties: &Parties,
    task: Option<&Value>,
    action: &Action,
    record_id: &str,
    now: DateTime<Utc>,
) -> Result<Change, Issues> {
    let current = stage_of(task);
    let mut issues = action.validate(now.date_naive());
    let next = match next_stage(current, action) {
        Ok(next) => Some(next),
        Err(why) => {
            issues.error(IssueType::BusinessRule, action.expression(), why);
            None
        }
    };
    if let Action::Contact(c) = action
        && let Some(referred) = parties.referred_on
        && c.date < referred
    {
        issues.error(
            IssueType::BusinessRule,
            "date",
            format!("a contact cannot be before the referral was made ({referred})"),
        );
    }
    if let Action::FollowUp(f) = action {
        if follow_up_intervals(task).contains(&f.interval) {
            issues.error(
                IssueType::Duplicate,
                "interval",
                format!(
                    "the follow-up {} is already recorded: each interval is recorded once",
                    coding("follow-up-interval", &f.interval)["display"]
                        .as_str()
                        .unwrap_or(&f.interval)
                ),
            );
        }
        if let Some(ended) = discharged_on(task)
            && let Ok(weeks) = f.interval.parse::<i64>()
        {
            // A week's grace either way of the interval: services follow people up when they
            // can reach them, not on the day.
            let earliest = ended + chrono::Duration::weeks(weeks - 1);
            if f.date < earliest {
                issues.error(
                    IssueType::BusinessRule,
                    "date",
                    format!(
                        "a follow-up {weeks} weeks after the discharge ({ended}) is recorded from {earliest}"
                    ),
                );
            }
        }
    }
    let Some(next) = issues.is_empty().then_some(next).flatten() else {
        return Err(issues);
    };
    let mut task = task.cloned().unwrap_or_else(|| new_task(parties, now));
    task["status"] = json!(next.task_status());
    task["businessStatus"] = next.business_status();
    task["lastModified"] = json!(crate::fhir::search::format_instant(now));
    let mut record = None;
    let mut decline = None;
    match action {
        Action::Triage(t) => match &t.decision {
            TriageDecision::Accept => {}
            TriageDecision::Decline { reason, criterion } => {
                let reason_coding = coding("referral-decline-reason", reason);
                task["statusReason"] = json!({
                    "coding": [reason_coding],
                    "text": t.note.clone().unwrap_or_else(|| reason_coding["display"].as_str().unwrap_or_default().to_string()),
                });
                push(
                    &mut task,
                    "input",
                    "decline-reason",
                    json!({ "valueCodeableConcept": { "coding": [reason_coding] } }),
                );
                if let Some(c) = criterion {
                    push(
                        &mut task,
                        "input",
                        "failed-criterion",
                        json!({ "valueCodeableConcept": { "coding": [coding("eligibility-criterion", c)] } }),
                    );
                }
                decline = Some(DeclineNotice {
                    reason: reason.clone(),
                    reason_display: reason_coding["display"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    criterion: criterion.clone(),
                    note: t.note.clone(),
                });
            }
        },
        Action::Contact(c) => {
            let kind = if current == Stage::Accepted {
                "first-contact"
            } else {
                "appointment"
            };
            let reference = format!("Encounter/{record_id}");
            push(
                &mut task,
                "input",
                kind,
                json!({ "valueReference": { "reference": reference } }),
            );
            record = Some(c.encounter(record_id, parties));
        }
        Action::Support(s) => {
            for code in &s.codes {
                push(
                    &mut task,
                    "output",
                    "support-given",
                    json!({ "valueCodeableConcept": { "coding": [coding("support-given", code)] } }),
                );
            }
        }
        Action::Withdraw(w) => {
            task["statusReason"] = json!({ "text": w.reason() });
        }
        Action::Amend(_) => {}
        Action::Discharge(d) => {
            if let Some(e) = &d.employment_outcome {
                push(
                    &mut task,
                    "output",
                    "employment-outcome",
                    json!({ "valueCodeableConcept": { "coding": [coding("employment-outcome", e)] } }),
                );
            }
            for h in &d.health_outcomes {
                push(
                    &mut task,
                    "output",
                    "health-outcome",
                    json!({ "valueCodeableConcept": { "coding": [coding("health-outcome", h)] } }),
                );
            }
            if let Some(r) = &d.ended_early_reason {
                push(
                    &mut task,
                    "output",
                    "ended-early-reason",
                    json!({ "valueCodeableConcept": { "coding": [coding("support-ended-reason", r)] } }),
                );
            }
            task["executionPeriod"]["end"] = json!(d.date.to_string());
        }
        Action::FollowUp(f) => {
            // The interval is an output of its own, so the Task alone says which follow-ups
            // are recorded (see `follow_up_intervals`).
            let interval = coding("follow-up-interval", &f.interval);
            push(
                &mut task,
                "output",
                "follow-up",
                json!({ "valueReference": {
                    "reference": format!("Observation/{record_id}"),
                    "display": interval["display"],
                } }),
            );
            push(
                &mut task,
                "output",
                "follow-up-interval",
                json!({ "valueCodeableConcept": { "coding": [interval] } }),
            );
            record = Some(f.observation(record_id, parties));
        }
    }
    if let Some(note) = action.note()
        && !matches!(action, Action::Triage(_))
    {
        let notes = task["note"].as_array().cloned().unwrap_or_default();
        let mut notes = notes;
        notes.push(json!({ "time": crate::fhir::search::format_instant(now), "text": note }));
        task["note"] = Value::Array(notes);
    }
    Ok(Change {
        stage: next,
        task,
        record,
        decline,
    })
}

/// Whether `action` may be taken on the referral whose stored workflow Task is `task`: the stage
/// it leads to, or why not (the rule [`apply`] keeps, for a caller that must know before it has
/// the action's details).
pub fn allowed(task: Option<&Value>, action: &Action) -> Result<Stage, String> {
    next_stage(stage_of(task), action)
}

/// The stage `action` moves a referral at `current` to, or why it cannot.
fn next_stage(current: Stage, action: &Action) -> Result<Stage, String> {
    use Stage::*;
    let allowed = |from: &[Stage], to: Stage, what: &str| {
        if from.contains(&current) {
            Ok(to)
        } else {
            Err(format!(
                "{what} is not possible for a referral that is {}: allowed when it is {}",
                current.code(),
                from.iter()
                    .map(|s| s.code())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        }
    };
    match action {
        Action::Triage(t) => match t.decision {
            TriageDecision::Accept => allowed(&[Received], Accepted, "accepting"),
            // A person may decline, or be unreachable, after the referral was accepted.
            TriageDecision::Decline { .. } => {
                allowed(&[Received, Accepted, Contacted], Declined, "declining")
            }
        },
        Action::Contact(_) => match current {
            Accepted => Ok(Contacted),
            _ => allowed(
                &[Accepted, Contacted, InSupport],
                InSupport,
                "recording a contact",
            ),
        },
        Action::Support(_) => allowed(&[Contacted, InSupport], InSupport, "recording support"),
        Action::Discharge(_) => allowed(&[Contacted, InSupport], Discharged, "discharging"),
        // What became of the person is asked after support has ended, and changes nothing.
        Action::FollowUp(_) => allowed(&[Discharged], Discharged, "recording a follow-up"),
        // BaRS: "The Receiver must not process a cancellation request for a booking or referral
        // which is not current".
        Action::Withdraw(_) => allowed(
            &[Received, Accepted, Contacted, InSupport],
            Withdrawn,
            "cancelling",
        ),
        // An amendment leaves the referral where it is: while the service is still working on
        // it, never after it is closed.
        Action::Amend(_) => allowed(
            &[Received, Accepted, Contacted, InSupport],
            current,
            "amending",
        ),
    }
}

/// The `follow-up-interval` codes of the follow-ups a workflow Task records.
pub fn follow_up_intervals(task: Option<&Value>) -> Vec<String> {
    let system = local_code_system("follow-up-interval");
    outputs(task, "follow-up-interval")
        .filter_map(|o| {
            o["valueCodeableConcept"]["coding"]
                .as_array()?
                .iter()
                .find(|c| c["system"] == system.as_str())?["code"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// The day support ended, as the workflow Task records it.
pub fn discharged_on(task: Option<&Value>) -> Option<NaiveDate> {
    let end = task?["executionPeriod"]["end"].as_str()?;
    NaiveDate::parse_from_str(end.get(..10)?, "%Y-%m-%d").ok()
}

/// A workflow Task's outputs of one `workflow-task-input` kind.
pub fn outputs<'a>(task: Option<&'a Value>, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    io_of(task, "output", kind)
}

/// A workflow Task's inputs of one `workflow-task-input` kind.
pub fn inputs<'a>(task: Option<&'a Value>, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    io_of(task, "input", kind)
}

fn io_of<'a>(
    task: Option<&'a Value>,
    list: &'static str,
    kind: &'a str,
) -> impl Iterator<Item = &'a Value> {
    let system = local_code_system("workflow-task-input");
    task.and_then(|t| t[list].as_array())
        .into_iter()
        .flatten()
        .filter(move |item| {
            item["type"]["coding"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["system"] == system.as_str() && c["code"] == kind)
            })
        })
}

fn push(task: &mut Value, list: &str, kind: &str, value: Value) {
    let mut item = json!({ "type": { "coding": [coding("workflow-task-input", kind)] } });
    if let (Some(item), Value::Object(value)) = (item.as_object_mut(), value) {
        item.extend(value);
    }
    match task[list].as_array_mut() {
        Some(items) => items.push(item),
        None => task[list] = json!([item]),
    }
}

/// The workflow Task a referral is stored with: requested, business status `received`, so the
/// practice sees from the start that the referral is waiting for triage and the service finds
/// the referrals it has not triaged (`Task?owner=…&status=requested`). `parties` may hold the
/// submission's `urn:uuid` references, which the store rewrites.
pub fn received(parties: &Parties, now: DateTime<Utc>) -> Value {
    let mut task = new_task(parties, now);
    task["businessStatus"] = Stage::Received.business_status();
    crate::fhir::resource::claim_uk_core(&mut task);
    task
}

/// Marks a received referral's Task for the service to trace the person's NHS number (a person
/// who referred themselves gave none, or one nobody has traced): `why` says which.
pub fn to_trace(task: &mut Value, why: &str) {
    push(
        task,
        "input",
        "nhs-number-to-trace",
        json!({ "valueString": why }),
    );
}

fn new_task(parties: &Parties, now: DateTime<Utc>) -> Value {
    json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": { "coding": [coding("task-code", "referral-workflow")] },
        "focus": { "reference": parties.referral },
        "for": { "reference": parties.patient },
        "authoredOn": crate::fhir::search::format_instant(now),
        // Who asked for the work: the referring practice, or the person referring themselves.
        "requester": match &parties.practice {
            Some(practice) => identifier_reference(practice),
            None => json!({ "reference": parties.patient }),
        },
        "owner": identifier_reference(&parties.service),
        "executionPeriod": { "start": crate::fhir::search::format_instant(now) },
    })
}

/// What the workflow says about timing: the days from referral to first contact, against the
/// service's target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeliness {
    pub referred_on: Option<NaiveDate>,
    pub first_contact_on: Option<NaiveDate>,
    pub days_to_first_contact: Option<i64>,
    pub target_days: u32,
    /// Met, missed, or (still waiting) `None` until it is decided.
    pub target_met: Option<bool>,
}

/// Measures the time to first contact against `target_days`, as of `today`.
pub fn timeliness(
    referred_on: Option<NaiveDate>,
    first_contact_on: Option<NaiveDate>,
    target_days: u32,
    today: NaiveDate,
) -> Timeliness {
    let days = match (referred_on, first_contact_on) {
        (Some(r), Some(c)) => Some((c - r).num_days()),
        _ => None,
    };
    let target_met = match (referred_on, days) {
        (_, Some(d)) => Some(d <= i64::from(target_days)),
        (Some(r), None) if (today - r).num_days() > i64::from(target_days) => Some(false),
        _ => None,
    };
    Timeliness {
        referred_on,
        first_contact_on,
        days_to_first_contact: days,
        target_days,
        target_met,
    }
}

#[cfg(test)]
mod tests;
