//! Fit notes: submitting one (practice format or FHIR Observation), a person's fit-note summary,
//! and a practice's answer to a referral prompt a fit note raised.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::submissions::{SubmitError, submit};
use super::{BadVersionTag, Caller, Return, stored_version, version_named};
use crate::access::AccessError;
use crate::audit::{self, Event, Kind};
use crate::caller::Role;
use crate::config::Config;
use crate::fhir::{IssueType, Issues};
use crate::intake::{Submission, SubmissionKind, admission, fhir_fit_note, practice_fit_note};
use crate::store::{AuditTrail, PatientId, Store, Stored, Transaction};

/// A fit note taken in.
#[derive(Debug)]
pub struct FitNote {
    pub stored: Stored,
    /// The stored Observation, when [`Return::Representation`] was asked for.
    pub observation: Option<Value>,
    /// The referral-prompt Tasks it raised (none read for [`Return::Minimal`]).
    pub prompts: Vec<Value>,
}

/// A fit note in the practice format.
pub async fn submit_practice_fit_note(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    body: &Value,
    wanted: Return,
) -> Result<FitNote, SubmitError> {
    let stored = store_practice_fit_note(store, config, caller, body, false).await?;
    read_back(store, stored, wanted).await
}

/// A fit note in the practice format from a file of history (`whg import`): checked and stored
/// exactly as [`submit_practice_fit_note`] does, except that it raises referral prompts only
/// while its absence is still current ([`admission::FitNoteRules::history_import`]).
pub async fn import_practice_fit_note(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    body: &Value,
) -> Result<Stored, SubmitError> {
    store_practice_fit_note(store, config, caller, body, true).await
}

async fn store_practice_fit_note(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    body: &Value,
    history_import: bool,
) -> Result<Stored, SubmitError> {
    let ctx = config.intake_now();
    let (submission, note) = practice_fit_note(body, &ctx).map_err(SubmitError::Invalid)?;
    let absence_given = note.note.absence_start.is_some();
    accept(
        store,
        config,
        caller,
        submission,
        absence_given,
        "period",
        history_import,
    )
    .await
}

/// A fit note in the gateway's Observation profile, from a FHIR client.
pub async fn submit_observation(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    observation: &Value,
    wanted: Return,
) -> Result<FitNote, SubmitError> {
    let ctx = config.intake_now();
    let sender_ods = caller.principal.organisation_code();
    let (submission, note) =
        fhir_fit_note(observation, sender_ods, &ctx).map_err(SubmitError::Invalid)?;
    let absence_given = note.note.absence_start.is_some();
    let stored = accept(
        store,
        config,
        caller,
        submission,
        absence_given,
        "Observation.effectivePeriod",
        false,
    )
    .await?;
    read_back(store, stored, wanted).await
}

async fn accept(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    submission: Submission,
    absence_start_given: bool,
    period_expression: &'static str,
    history_import: bool,
) -> Result<Stored, SubmitError> {
    let admission = admission::fit_note(
        &submission,
        absence_start_given,
        admission::FitNoteRules {
            services: &config.services,
            consecutive_gap_days: config.fit_notes.consecutive_gap_days,
            history_import,
        },
        caller.principal,
        caller.request_id.clone(),
        chrono::Utc::now(),
        period_expression,
    );
    submit(store, caller, submission, admission, "").await
}

/// The prompts the fit note raised (unless nothing is wanted back) and, when wanted, the
/// Observation as stored.
async fn read_back(
    store: &dyn Store,
    stored: Stored,
    wanted: Return,
) -> Result<FitNote, SubmitError> {
    let prompts = if stored.prompts.is_empty() || wanted == Return::Minimal {
        Vec::new()
    } else {
        store.read_many("Task", &stored.prompts).await?
    };
    let observation = if wanted == Return::Representation {
        let id = &stored.focus_id;
        let observation = store
            .read("Observation", id)
            .await?
            .ok_or_else(|| SubmitError::NotReadBack(format!("Observation/{id}")))?;
        Some(observation)
    } else {
        None
    };
    Ok(FitNote {
        stored,
        observation,
        prompts,
    })
}

/// Why a fit-note summary was not given.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// Unknown and not-yours alike, so the summary cannot be used to probe who is known.
    #[error("no fit notes are held for this person that you may see")]
    NoneYouMaySee,
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A person's fit-note history, summarised.
#[derive(Debug)]
pub struct Summary {
    pub patient_id: PatientId,
    pub as_of: NaiveDate,
    pub consecutive_gap_days: u32,
    pub summary: crate::fit_notes::Summary,
}

/// The fit-note summary of the person with NHS number `nhs_number` (already checked), as the
/// caller may see it (audited).
pub async fn summary(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    nhs_number: &str,
) -> Result<Summary, SummaryError> {
    let patient_id = store
        .patient_by_nhs_number(nhs_number)
        .await?
        .ok_or(SummaryError::NoneYouMaySee)?;
    let notes = match caller.guard(store).fit_note_history(&patient_id).await {
        Err(AccessError::NotFound(_)) => return Err(SummaryError::NoneYouMaySee),
        other => other?,
    };
    let f = &config.fit_notes;
    let today = chrono::Utc::now().date_naive();
    let summary = crate::fit_notes::summary(
        &notes,
        today,
        f.consecutive_gap_days,
        f.summary_window_months,
    );
    Ok(Summary {
        patient_id,
        as_of: today,
        consecutive_gap_days: f.consecutive_gap_days,
        summary,
    })
}

/// Why a practice's answer to a referral prompt was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PromptAnswerError {
    #[error(
        "only referral prompts are answered with PUT: a referral's workflow Task changes through the service's workflow routes (/api/v1/referrals/{{id}}/…)"
    )]
    NotAPrompt,
    #[error("only the practice a referral prompt is for answers it")]
    NotThePractice,
    #[error("the answer breaks the prompt's rules")]
    Invalid(Issues),
    #[error(transparent)]
    BadVersionTag(#[from] BadVersionTag),
    #[error("a stored resource without a version")]
    Unversioned,
    #[error("the answered prompt was not returned")]
    NotReturned,
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The practice accepts or rejects the referral prompt `Task/{id}` with `task` (its id already
/// checked to be `id`). Only `status` (requested → accepted or rejected), `statusReason` and
/// `note` may change. The answer is stored against the version `version_tag` names, or else the
/// one read, with its AuditEvent.
pub async fn answer_prompt(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
    task: &Value,
    version_tag: Option<&str>,
) -> Result<Value, PromptAnswerError> {
    let stored = caller.guard(store).fetch("Task", id).await?;
    if !crate::consent::is_referral_prompt(&stored) {
        return Err(PromptAnswerError::NotAPrompt);
    }
    if caller.principal.role != Role::Practice {
        return Err(PromptAnswerError::NotThePractice);
    }
    let mut issues = Issues::new();
    let new_status = task["status"].as_str().unwrap_or_default();
    if !matches!(new_status, "accepted" | "rejected") {
        issues.error(IssueType::Value, "Task.status", "a referral prompt is answered with status accepted (the practice will consider a referral) or rejected");
    }
    if stored["status"] != "requested" {
        issues.error(
            IssueType::BusinessRule,
            "Task.status",
            format!(
                "this prompt was already answered ({})",
                stored["status"].as_str().unwrap_or_default()
            ),
        );
    }
    for field in [
        "intent",
        "code",
        "focus",
        "for",
        "owner",
        "input",
        "authoredOn",
        "description",
        "reasonCode",
    ] {
        if task.get(field) != stored.get(field) {
            issues.error(IssueType::BusinessRule, format!("Task.{field}"), format!("Task.{field} cannot be changed: only status, statusReason and note are the practice's to set"));
        }
    }
    if !issues.is_empty() {
        return Err(PromptAnswerError::Invalid(issues));
    }
    let mut updated = stored.clone();
    updated["status"] = json!(new_status);
    updated["lastModified"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    for field in ["statusReason", "note"] {
        match task.get(field) {
            Some(v) => updated[field] = v.clone(),
            None => {
                if let Some(o) = updated.as_object_mut() {
                    o.remove(field);
                }
            }
        }
    }
    // The answer is stored at the version it was checked against (the one the caller named, or
    // the one read above), so a concurrent answer is refused, never overwritten; and with its
    // AuditEvent, in one transaction.
    let based_on = match version_named(version_tag)? {
        Some(version) => version,
        None => stored_version(&stored).ok_or(PromptAnswerError::Unversioned)?,
    };
    let answered = audit::audit_event(&practice_event(
        caller,
        updated["for"]["reference"].as_str().map(str::to_string),
        format!("Task/{id}"),
        format!("referral prompt {new_status} by the practice"),
        chrono::Utc::now(),
    ));
    store
        .transact(Transaction {
            updates: vec![(updated, based_on)],
            audit: vec![answered],
            ..Default::default()
        })
        .await?
        .pop()
        .ok_or(PromptAnswerError::NotReturned)
}

/// Why a fit note was not corrected.
#[derive(Debug, thiserror::Error)]
pub enum CorrectionError {
    #[error("Observation/{0} is not a fit note: only fit notes are corrected with PUT")]
    NotAFitNote(String),
    #[error("only the practice that sent a fit note corrects it")]
    NotThePractice,
    #[error("the correction breaks the fit note's rules")]
    Invalid(Issues),
    #[error(transparent)]
    BadVersionTag(#[from] BadVersionTag),
    #[error("a stored resource without a version")]
    Unversioned,
    #[error("the corrected fit note was not returned")]
    NotReturned,
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The elements a correction leaves as they are (everything but these).
const CORRECTION_CHANGES: [&str; 3] = ["status", "meta", "text"];

/// The practice that sent a fit note marks it entered in error (`Observation/{id}` with
/// `observation`, status `entered-in-error`, otherwise as stored). It is kept, as R4 keeps an
/// entered-in-error resource, but no longer counts in the person's fit-note history (the
/// referral prompts, the summary, eligibility), and the referral prompts it raised that are
/// still waiting are cancelled, so the practice sees them withdrawn; a service the person's
/// consent lets see fit notes reads the new status. One transaction, with the AuditEvent,
/// against the version read (or the one `version_tag` names). A resend changes nothing.
pub async fn correct_fit_note(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    id: &str,
    observation: &Value,
    version_tag: Option<&str>,
) -> Result<Value, CorrectionError> {
    let stored = caller.guard(store).fetch("Observation", id).await?;
    if crate::consent::data_class_of(&stored) != Some(crate::consent::DataClass::FitNote) {
        return Err(CorrectionError::NotAFitNote(id.to_string()));
    }
    let sent_it = store
        .records_of("Observation", id)
        .await?
        .into_iter()
        .any(|r| {
            r.record == format!("Observation/{id}")
                && r.practice.as_deref() == Some(caller.principal.organisation.as_str())
        });
    if caller.principal.role != Role::Practice || !sent_it {
        return Err(CorrectionError::NotThePractice);
    }
    let mut issues = Issues::new();
    match observation["status"].as_str() {
        Some("entered-in-error") => {}
        Some("amended") => {
            return amend_fit_note(store, config, caller, id, stored, observation, version_tag)
                .await;
        }
        Some("corrected") => issues.error(IssueType::CodeInvalid, "Observation.status", "a fit note whose content changes is 'amended' (R4 observation-status: 'corrected' is a kind of amended; the gateway records amended)"),
        Some("final") => issues.error(IssueType::BusinessRule, "Observation.status", "a fit note is corrected by marking it entered-in-error or amended; it is stored 'final' already"),
        other => issues.error(IssueType::CodeInvalid, "Observation.status", format!("'{}' is not a correction of a fit note: use entered-in-error or amended", other.unwrap_or("(missing)"))),
    }
    let unchanged = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for field in CORRECTION_CHANGES {
                o.remove(field);
            }
        }
        v
    };
    if unchanged(observation) != unchanged(&stored) {
        issues.error(IssueType::BusinessRule, "Observation", "only the status changes when a fit note is entered in error: send the Observation as read, with status entered-in-error");
    }
    if !issues.is_empty() {
        return Err(CorrectionError::Invalid(issues));
    }
    if stored["status"] == "entered-in-error" {
        return Ok(stored);
    }
    let based_on = match version_named(version_tag)? {
        Some(version) => version,
        None => stored_version(&stored).ok_or(CorrectionError::Unversioned)?,
    };
    let now = chrono::Utc::now();
    let mut withdrawn = stored.clone();
    withdrawn["status"] = json!("entered-in-error");
    let mut updates = vec![(withdrawn, based_on)];
    let withdrawn_prompts = prompts_resting_on(
        store,
        id,
        "A fit note this prompt rests on was entered in error",
        now,
        &mut updates,
    )
    .await?;
    let event = audit::audit_event(&practice_event(
        caller,
        stored["subject"]["reference"].as_str().map(str::to_string),
        format!("Observation/{id}"),
        "fit note entered in error by the practice".to_string(),
        now,
    ));
    store
        .transact(Transaction {
            updates,
            audit: vec![event],
            withdrawn_fit_notes: vec![id.to_string()],
            withdrawn_prompts,
            ..Default::default()
        })
        .await?
        .into_iter()
        .find(|r| r["resourceType"] == "Observation")
        .ok_or(CorrectionError::NotReturned)
}

/// Every referral prompt resting on the fit note `id` (the one it raised, and those it was part of
/// the evidence for: a prompt names each fit note of its run in its focus or inputs): their ids,
/// no longer counted by the rules, and for those still waiting a cancellation added to `updates`
/// (an answered prompt's answer stands).
async fn prompts_resting_on(
    store: &dyn Store,
    id: &str,
    why: &str,
    now: chrono::DateTime<chrono::Utc>,
    updates: &mut Vec<(Value, i64)>,
) -> Result<Vec<String>, CorrectionError> {
    let reference = format!("Observation/{id}");
    let prompts = store
        .read_many("Task", &store.prompts_of_person_of(id).await?)
        .await?;
    let mut withdrawn = Vec::new();
    for prompt in prompts
        .into_iter()
        .filter(|t| t.to_string().contains(&format!("\"{reference}\"")))
    {
        withdrawn.push(prompt["id"].as_str().unwrap_or_default().to_string());
        if prompt["status"] != "requested" {
            continue;
        }
        let version = stored_version(&prompt).ok_or(CorrectionError::Unversioned)?;
        let mut cancelled = prompt;
        cancelled["status"] = json!("cancelled");
        cancelled["statusReason"] = json!({ "text": why });
        cancelled["lastModified"] = json!(crate::fhir::search::format_instant(now));
        updates.push((cancelled, version));
    }
    Ok(withdrawn)
}

/// The practice that sent a fit note amends it (`Observation/{id}` restated with status
/// `amended`; R4 observation-status: "the observation has been modified subsequent to being
/// Final"): checked as a new fit note is (the DWP's rules, the duration rule over the person's
/// other fit notes), the same fit note (its identifier) about the same person. The Observation
/// takes the restated content in a new version, and the history the rules read takes its
/// period, advice and date; if those changed, the referral prompts resting on it that are still
/// waiting are cancelled (what fired them may no longer hold; the next fit note is judged on the
/// amended history). A service the person's consent lets see fit notes reads the new version.
/// One transaction with the AuditEvent, against the version read (or the one `version_tag`
/// names). A resend changes nothing.
async fn amend_fit_note(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    id: &str,
    stored: Value,
    observation: &Value,
    version_tag: Option<&str>,
) -> Result<Value, CorrectionError> {
    let invalid = |expression: &str, message: &str| {
        CorrectionError::Invalid(
            crate::fhir::Issue::error(IssueType::BusinessRule, expression, message).into(),
        )
    };
    if stored["status"] == "entered-in-error" {
        return Err(invalid(
            "Observation.status",
            "a fit note entered in error is not amended: send the corrected fit note as a new one",
        ));
    }
    let record = store
        .records_of("Observation", id)
        .await?
        .into_iter()
        .find(|r| r.record == format!("Observation/{id}"))
        .ok_or(CorrectionError::NotThePractice)?;
    // The content rules are a new fit note's (which is 'final'); only the status differs. The
    // Observation as read names its person by reference: the person it names is the one stored.
    let mut as_final = observation.clone();
    as_final["status"] = json!("final");
    if observation["subject"] == stored["subject"]
        && observation["subject"]["identifier"].is_null()
        && let Some(patient) = store.read("Patient", record.patient_id.as_str()).await?
        && let Some(nhs) =
            crate::fhir::resource::identifier_value(&patient, crate::fhir::systems::NHS_NUMBER)
    {
        as_final["subject"]["identifier"] =
            json!({ "system": crate::fhir::systems::NHS_NUMBER, "value": nhs });
    }
    let ctx = config.intake_now();
    let (submission, note) = fhir_fit_note(&as_final, caller.principal.organisation_code(), &ctx)
        .map_err(CorrectionError::Invalid)?;
    if store.submitted(&submission.key).await?.as_deref() != Some(id) {
        return Err(invalid(
            "Observation.identifier",
            "an amendment keeps the fit note's identifier: this one names another fit note, or none",
        ));
    }
    let person = submission
        .entries
        .iter()
        .find(|e| e.resource_type == "Patient")
        .and_then(|e| {
            crate::fhir::resource::identifier_value(&e.resource, crate::fhir::systems::NHS_NUMBER)
                .map(str::to_string)
        });
    let same_person = match person {
        Some(n) => store.patient_by_nhs_number(&n).await?.as_ref() == Some(&record.patient_id),
        None => false,
    };
    if !same_person {
        return Err(invalid(
            "Observation.subject",
            "an amendment is about the person the fit note is about: a fit note for someone else is a new one",
        ));
    }
    let Some(restated) = submission
        .entries
        .iter()
        .find(|e| e.full_url == submission.focus)
        .map(|e| e.resource.clone())
    else {
        return Err(CorrectionError::NotReturned);
    };
    let mut amended = restated;
    amended["id"] = json!(id);
    amended["status"] = json!("amended");
    // The mapped fit note names its person and practice by the message's entries (`urn:uuid:`,
    // in its contained issuer and conditions too): they are the stored ones.
    let targets: std::collections::HashMap<String, String> = submission
        .entries
        .iter()
        .filter(|e| e.full_url != submission.focus)
        .filter_map(|e| {
            first_reference(&stored, &e.resource_type).map(|stored| (e.full_url.clone(), stored))
        })
        .collect();
    crate::fhir::resource::rewrite_references(&mut amended, &targets);
    if amended.to_string().contains("\"urn:uuid:") {
        return Err(invalid(
            "Observation",
            "an amendment names the person and practice the fit note names, and nothing else outside it",
        ));
    }
    // The people and organisations it names are the stored ones.
    for field in ["subject", "performer"] {
        match stored.get(field) {
            Some(v) => amended[field] = v.clone(),
            None => {
                if let Some(o) = amended.as_object_mut() {
                    o.remove(field);
                }
            }
        }
    }
    if let Some(meta) = stored.get("meta") {
        amended["meta"] = meta.clone();
    }
    let content = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("meta");
            o.remove("text");
        }
        v
    };
    if content(&amended) == content(&stored) {
        store
            .append_audit(&[practice_event(
                caller,
                stored["subject"]["reference"].as_str().map(str::to_string),
                format!("Observation/{id}"),
                "fit note amendment resent: nothing changed".to_string(),
                chrono::Utc::now(),
            )])
            .await?;
        return Ok(stored);
    }
    let SubmissionKind::FitNote(mut facts) = submission.kind else {
        return Err(CorrectionError::NotReturned);
    };
    facts.reference = format!("Observation/{id}");
    let held = store
        .fit_notes_of_patient(&record.patient_id)
        .await?
        .into_iter()
        .find(|f| f.reference == facts.reference);
    let rules_read_changed = held.as_ref() != Some(&facts);
    let based_on = match version_named(version_tag)? {
        Some(version) => version,
        None => stored_version(&stored).ok_or(CorrectionError::Unversioned)?,
    };
    let now = chrono::Utc::now();
    let mut updates = vec![(amended, based_on)];
    let withdrawn_prompts = if rules_read_changed {
        let ids = prompts_resting_on(
            store,
            id,
            "A fit note this prompt rests on was amended",
            now,
            &mut updates,
        )
        .await?;
        // Only the waiting ones are withdrawn from the rules' history: an answered prompt stands.
        let cancelled: Vec<String> = updates[1..]
            .iter()
            .filter_map(|(t, _)| t["id"].as_str().map(str::to_string))
            .collect();
        ids.into_iter().filter(|i| cancelled.contains(i)).collect()
    } else {
        Vec::new()
    };
    let event = audit::audit_event(&practice_event(
        caller,
        stored["subject"]["reference"].as_str().map(str::to_string),
        format!("Observation/{id}"),
        if rules_read_changed {
            "fit note amended by the practice (period, advice or date)".to_string()
        } else {
            "fit note amended by the practice".to_string()
        },
        now,
    ));
    store
        .transact(Transaction {
            updates,
            audit: vec![event],
            withdrawn_prompts,
            amended_fit_notes: if rules_read_changed {
                vec![crate::store::AmendedFitNote {
                    facts,
                    patient_id: record.patient_id.clone(),
                    duration_rule: note.note.absence_start.is_none().then_some((
                        config.fit_notes.consecutive_gap_days,
                        "Observation.effectivePeriod",
                    )),
                }]
            } else {
                Vec::new()
            },

            ..Default::default()
        })
        .await
        // The duration rule, kept over the person's fit notes as committed (in the store).
        .map_err(|e| match e {
            crate::store::StoreError::Rejected(issues) => CorrectionError::Invalid(issues),
            e => e.into(),
        })?
        .into_iter()
        .find(|r| r["resourceType"] == "Observation")
        .ok_or(CorrectionError::NotReturned)
}

/// The AuditEvent of a practice's change to a fit note or a prompt it raised.
fn practice_event<'p>(
    caller: &Caller<'p>,
    patient: Option<String>,
    entity: String,
    description: String,
    at: chrono::DateTime<chrono::Utc>,
) -> Event<'p> {
    Event {
        kind: Kind::Updated,
        principal: Some(caller.principal),
        patient,
        entities: vec![entity],
        decision: None,
        permitted: true,
        description,
        at,
        request_id: caller.request_id.clone(),
    }
}

/// The first `reference` in `value` naming a resource of type `kind` (`Organization/…`).
fn first_reference(value: &Value, kind: &str) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| match v {
            Value::String(r) if k == "reference" && r.starts_with(&format!("{kind}/")) => {
                Some(r.clone())
            }
            other => first_reference(other, kind),
        }),
        Value::Array(items) => items.iter().find_map(|v| first_reference(v, kind)),
        _ => None,
    }
}
