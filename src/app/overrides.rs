//! Overrides ("break glass"): a practice or service asks to act against a person's consent
//! decision for a stated reason, for a limited time; information governance grants or refuses
//! the request and reviews what was granted. The rules are [`crate::consent::overrides`]'s; every
//! step is stored with its AuditEvent in one transaction, as a typed [`Override`].

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Caller;
use super::consents::{code_in, patient_in, require_party};
use crate::access::AccessError;
use crate::audit::{self, Event, Kind};
use crate::caller::{Principal, Role};
use crate::config::Config;
use crate::consent::overrides::{self, Agent, ReviewOutcome, StepError, Verdict};
use crate::consent::{
    Code, DataClass, Override, OverrideReason, OverrideState, OverrideStatus, RecipientClass,
};
use crate::fhir::{Issue, IssueType, Issues};
use crate::store::{OverrideFilter, Store, StoreError};

/// Why an override step was not taken.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("only information governance lists, grants, refuses and reviews overrides")]
    NotInformationGovernance,
    /// The request, verdict or review breaks the rules for it.
    #[error("invalid")]
    Invalid(Issues),
    #[error("'{0}' is not an override state: use requested, granted, refused or ended")]
    UnknownState(String),
    /// Not known, or not the caller's to see: answered alike.
    #[error("override {0} is not known to this gateway")]
    UnknownOverride(String),
    /// The step is not the caller's, or not for the override as it stands.
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a practice or service asks to override.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideRequest {
    pub patient: String,
    pub recipient: String,
    #[serde(default)]
    pub recipient_organisation: Option<String>,
    pub data_classes: Vec<String>,
    pub reason: String,
    pub justification: String,
    pub hours: u32,
}

/// Shortest justification accepted: one sentence a reviewer can judge.
const MIN_JUSTIFICATION: usize = 20;

/// Records a request to act against a person's consent decision, for itself or for the one
/// third party it discloses to. The request permits nothing until information governance
/// grants it. Returns it as stored.
pub async fn request(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    req: OverrideRequest,
) -> Result<Override, OverrideError> {
    let principal = caller.principal;
    let mut issues = Issues::new();
    let patient = patient_in(&req.patient, &mut issues);
    let recipient = code_in::<RecipientClass>(&req.recipient, "recipient", &mut issues);
    let organisation = req.recipient_organisation.as_deref().map(str::trim);
    if let Err(more) = overrides::check_request(principal, recipient, organisation) {
        issues.extend(more);
    }
    if req.data_classes.is_empty() {
        issues.error(
            IssueType::Required,
            "dataClasses",
            "name at least one data class the override covers",
        );
    }
    let classes: Vec<Option<DataClass>> = req
        .data_classes
        .iter()
        .enumerate()
        .map(|(i, c)| code_in::<DataClass>(c, &format!("dataClasses[{i}]"), &mut issues))
        .collect();
    let reason = code_in::<OverrideReason>(&req.reason, "reason", &mut issues);
    if req.justification.trim().chars().count() < MIN_JUSTIFICATION {
        issues.error(
            IssueType::Required,
            "justification",
            format!(
                "explain why in at least {MIN_JUSTIFICATION} characters: information governance decides on it"
            ),
        );
    }
    let max = config.consent.override_max_hours;
    if req.hours == 0 || req.hours > max {
        issues.error(
            IssueType::Value,
            "hours",
            format!("an override lasts from 1 to {max} hours from its grant"),
        );
    }
    let classes: Option<Vec<DataClass>> = classes.into_iter().collect();
    let (Some(patient), Some(recipient), Some(classes), Some(reason), Some(organisation)) = issues
        .into_result((patient, recipient, classes, reason, organisation))
        .map_err(OverrideError::Invalid)?
    else {
        unreachable!("every missing part was reported")
    };
    require_party(store, principal, &patient).await?;
    let now = now_to_the_microsecond();
    let request = Override {
        id: uuid::Uuid::now_v7().to_string(),
        patient_id: patient,
        recipient,
        organisation: organisation.to_string(),
        classes,
        reason,
        justification: req.justification.trim().to_string(),
        hours: req.hours,
        requested_by: Agent::of(principal),
        requested_at: now,
        state: OverrideState::Requested,
        review: None,
    };
    let requested = override_event(
        caller,
        &request,
        format!(
            "override {} requested ({}) for {} {} of {} for {} hours; in force only once information governance grants it",
            request.id,
            request.reason.code(),
            request.recipient.code(),
            request.organisation,
            classes_of(&request),
            request.hours
        ),
        now,
    );
    store
        .create_override(request.clone(), vec![requested])
        .await?;
    Ok(request)
}

/// Now, as precisely as the store keeps times: what is answered is what is stored.
fn now_to_the_microsecond() -> chrono::DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
}

fn classes_of(o: &Override) -> String {
    o.classes
        .iter()
        .map(|c| c.code())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The AuditEvent of one step on an override, naming the override by its identifier.
fn override_event(
    caller: &Caller<'_>,
    o: &Override,
    description: String,
    at: chrono::DateTime<Utc>,
) -> Value {
    let mut event = audit::audit_event(&Event {
        kind: Kind::Override,
        principal: Some(caller.principal),
        patient: Some(o.patient_id.reference()),
        entities: Vec::new(),
        decision: None,
        permitted: true,
        description,
        at,
        request_id: caller.request_id.clone(),
    });
    if let Some(entities) = event["entity"].as_array_mut() {
        entities.push(json!({
            "what": { "identifier": { "system": audit::override_system(), "value": o.id } },
            "description": "the override",
        }));
    }
    event
}

/// Information governance: the only role that lists, grants, refuses and reviews overrides.
/// Checked before a request's details are read, and again by each step.
pub fn require_information_governance(principal: &Principal) -> Result<(), OverrideError> {
    if principal.role != Role::InformationGovernance {
        return Err(OverrideError::NotInformationGovernance);
    }
    Ok(())
}

/// Overrides for information governance, newest first: those in `state` (a state code) if one
/// is named, only the unreviewed if asked.
pub async fn list(
    store: &dyn Store,
    caller: &Caller<'_>,
    state: Option<&str>,
    unreviewed: bool,
) -> Result<Vec<Override>, OverrideError> {
    require_information_governance(caller.principal)?;
    let status = match state {
        None => None,
        Some(code) => Some(
            OverrideStatus::from_code(code)
                .ok_or_else(|| OverrideError::UnknownState(code.to_string()))?,
        ),
    };
    Ok(store
        .list_overrides(OverrideFilter { status, unreviewed })
        .await?)
}

/// One override, for information governance and for the organisation that asked for it (to see
/// whether it was granted). Anyone else is told it does not exist.
pub async fn show(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
) -> Result<Override, OverrideError> {
    let principal = caller.principal;
    // Its requester's organisation, acting as one that may ask for overrides: an organisation
    // code alone could be a commissioner's that happens to equal a practice's.
    let may_read = |o: &Override| {
        principal.role == Role::InformationGovernance
            || (principal.role.reads_records()
                && o.requested_by.organisation == principal.organisation)
    };
    match store.override_by_id(id).await? {
        Some((o, _)) if may_read(&o) => Ok(o),
        _ => Err(OverrideError::UnknownOverride(id.to_string())),
    }
}

/// Information governance grants (in force from now for the hours asked) or refuses the request
/// `id`, saying why in `note`. Returns the override as it now stands.
pub async fn decide(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
    verdict: Verdict,
    note: &str,
) -> Result<Override, OverrideError> {
    require_information_governance(caller.principal)?;
    require_note(note)?;
    let (stored, version) = stored_override(store, id).await?;
    let now = now_to_the_microsecond();
    let mut changed = stored.clone();
    changed.state =
        overrides::decide_request(&stored, caller.principal, verdict, note.trim(), now)?;
    let description = match changed.state.grant() {
        Some(g) => format!(
            "override {id} granted by information governance: in force until {}",
            g.until.to_rfc3339()
        ),
        None => format!("override {id} refused by information governance"),
    };
    let event = override_event(caller, &changed, description, now);
    store
        .update_override(changed.clone(), version, vec![event])
        .await?;
    Ok(changed)
}

/// Information governance reviews the granted override `id` (`outcome` `appropriate` or
/// `inappropriate`, saying why in `note`); `inappropriate` ends it at once. Returns the override
/// as it now stands.
pub async fn review(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
    outcome: &str,
    note: &str,
) -> Result<Override, OverrideError> {
    require_information_governance(caller.principal)?;
    let outcome = ReviewOutcome::from_code(outcome).ok_or_else(|| {
        OverrideError::Invalid(
            Issue::error(
                IssueType::CodeInvalid,
                "outcome",
                "outcome must be appropriate or inappropriate",
            )
            .into(),
        )
    })?;
    require_note(note)?;
    let (stored, version) = stored_override(store, id).await?;
    let now = now_to_the_microsecond();
    let (state, review) = overrides::review(&stored, caller.principal, outcome, note.trim(), now)?;
    let ends = matches!(
        (&stored.state, &state),
        (OverrideState::Granted(_), OverrideState::Ended { .. })
    );
    let mut changed = stored;
    changed.state = state;
    changed.review = Some(review);
    let description = if ends {
        format!("override {id} reviewed by information governance: inappropriate; ended at once")
    } else {
        format!(
            "override {id} reviewed by information governance: {}",
            outcome.code()
        )
    };
    let event = override_event(caller, &changed, description, now);
    store
        .update_override(changed.clone(), version, vec![event])
        .await?;
    Ok(changed)
}

async fn stored_override(store: &dyn Store, id: &str) -> Result<(Override, i64), OverrideError> {
    store
        .override_by_id(id)
        .await?
        .ok_or_else(|| OverrideError::UnknownOverride(id.to_string()))
}

/// Every grant, refusal and review says why: the requester and later reviewers read it.
fn require_note(note: &str) -> Result<(), OverrideError> {
    if note.trim().is_empty() {
        return Err(OverrideError::Invalid(
            Issue::error(
                IssueType::Required,
                "note",
                "say why, in a sentence the requester and later reviewers can read",
            )
            .into(),
        ));
    }
    Ok(())
}
