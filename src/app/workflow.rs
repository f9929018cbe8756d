//! The adviser workflow and letters. Each action reads the referral (tenancy and consent checked
//! and audited by the guard), asks the pure [`workflow`] or [`letters`] core what changes, and
//! stores it all in one transaction, letters with their outbox rows; a letter queued wakes the
//! outbox (`letters_queued`).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::delivery::state::{AttemptOutcome, DeliveryState, Event as DeliveryEvent};
use crate::delivery::worker::Outbox;

use super::Caller;
use crate::access::{AccessError, Guard};
use crate::audit::{self, Event, Kind};
use crate::caller::Role;
use crate::config::Config;
use crate::delivery::worker::workflow_task;
use crate::fhir::{Issue, IssueType, Issues};
use crate::letters::{self, Context, LetterBody, LetterIds};
use crate::store::{
    Delivery, DeliveryAttempt, DeliveryFilter, DeliveryId, PatientId, RecordParties, Store,
    StoreError, Transaction,
};
use crate::workflow::{self, Action, Parties, Stage};

/// Why a workflow step, a letter or a resend was not made, or a letter not shown.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The step or letter breaks the workflow's or the letter's rules.
    #[error("invalid")]
    Invalid(Issues),
    #[error("ServiceRequest/{0} is not a referral")]
    NotAReferral(String),
    #[error("only the service the referral is addressed to records its workflow")]
    NotTheService,
    /// Not known, or not the caller's to know of: answered alike.
    #[error("letter {0} is not known to this gateway")]
    UnknownLetter(String),
    /// A letter list asked for by a state that is not one.
    #[error("not a letter-delivery state")]
    UnknownLetterState(Issues),
    #[error("only the referring practice and the service read letters")]
    NoLetters,
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The referral `id`, checked readable by the caller, with its parties.
pub(super) async fn referral(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
) -> Result<(Value, RecordParties), WorkflowError> {
    let named = id;
    let id = &gateway_id(store, named).await?;
    let sr = match caller.guard(store).fetch("ServiceRequest", id).await {
        // Named by the sender's id: not found in the words it was named in, as a referral that
        // does not exist is, never by the gateway id it was found under (which would say that
        // it exists, and when it was made).
        Err(AccessError::NotFound(_)) if id != named => return Err(sender_id_not_found(named)),
        other => other?,
    };
    let parties = store
        .records_of("ServiceRequest", id)
        .await?
        .into_iter()
        .find(|r| r.record == format!("ServiceRequest/{id}"))
        .ok_or_else(|| WorkflowError::NotAReferral(id.to_string()))?;
    Ok((sr, parties))
}

/// The gateway's ServiceRequest id a route names: its own id, or the sender's referral id as
/// `{ODS code}:{referral id}` (a practice referral's `referralId`; a BaRS referral's
/// ServiceRequest identifier as `system|value`), so a practice or service system can use the
/// key it already holds. Only the id is found here: what the caller may see of it is the tenancy
/// rule's, applied by the read that follows, so a referral the caller may not see is not found
/// whether it exists or not.
pub(super) async fn gateway_id(store: &dyn Store, named: &str) -> Result<String, WorkflowError> {
    let Some((ods, referral_id)) = named.split_once(':') else {
        return Ok(named.to_string());
    };
    let ods = &ods.to_ascii_uppercase();
    let not_found = || sender_id_not_found(named);
    if !crate::fhir::identifiers::is_ods_code(ods) || referral_id.is_empty() {
        return Err(not_found());
    }
    for namespace in [format!("practice:{ods}"), format!("bars:{ods}")] {
        let key = crate::intake::SubmissionKey {
            namespace,
            value: referral_id.to_string(),
        };
        if let Some(id) = store.submitted(&key).await? {
            return Ok(id);
        }
    }
    Err(not_found())
}

/// The one answer for a referral named `{ODS}:{referral id}` that the caller may not see, whether
/// or not it exists.
fn sender_id_not_found(named: &str) -> WorkflowError {
    let (ods, referral_id) = named.split_once(':').unwrap_or(("", named));
    WorkflowError::Access(AccessError::NotFound(format!(
        "a referral {referral_id} from {}",
        ods.to_ascii_uppercase()
    )))
}

/// Only the service a referral is addressed to works on it.
pub(super) fn require_service(
    caller: &Caller<'_>,
    parties: &RecordParties,
) -> Result<(), WorkflowError> {
    let principal = caller.principal;
    if principal.role != Role::Service
        || parties.service.as_deref() != Some(&principal.organisation)
    {
        return Err(WorkflowError::NotTheService);
    }
    Ok(())
}

pub(super) fn workflow_parties(sr: &Value, p: &RecordParties) -> Parties {
    Parties {
        referral: p.record.clone(),
        patient: format!("Patient/{}", p.patient_id),
        // The referral's own row (see `referral`) names its service, and its practice unless the
        // person referred themselves.
        practice: p.practice.clone(),
        service: p.service.clone().unwrap_or_default(),
        referred_on: sr["authoredOn"]
            .as_str()
            .and_then(|d| d.get(..10))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
    }
}

fn version_of(resource: &Value) -> i64 {
    super::stored_version(resource).unwrap_or(1)
}

/// Applies one workflow action (triage, a contact, support, discharge) to the referral `id` and
/// answers with the workflow's new state (see [`show`]). A decline queues its letter.
pub async fn act(
    store: &dyn Store,
    config: &Config,
    letters_queued: &Notify,
    caller: &Caller<'_>,
    id: &str,
    action: Action,
) -> Result<Value, WorkflowError> {
    let (sr, record) = referral(store, caller, id).await?;
    require_service(caller, &record)?;
    let parties = workflow_parties(&sr, &record);
    let referral_id = sr["id"].as_str().unwrap_or_default().to_string();
    let task = workflow_task(store, &referral_id).await?;
    let now = Utc::now();
    let record_id = uuid::Uuid::now_v7().to_string();
    let change = workflow::apply(&parties, task.as_ref(), &action, &record_id, now)
        .map_err(WorkflowError::Invalid)?;

    let mut tx = Transaction {
        referral: referral_id.clone(),
        ..Default::default()
    };
    let new_sr_status = change.stage.service_request_status();
    if sr["status"].as_str() != Some(new_sr_status) {
        let mut updated = sr.clone();
        updated["status"] = json!(new_sr_status);
        tx.updates.push((updated, version_of(&sr)));
    }
    let mut task_value = change.task.clone();
    match &task {
        Some(stored) => tx.updates.push((task_value, version_of(stored))),
        None => {
            task_value["id"] = json!(uuid::Uuid::now_v7().to_string());
            tx.creates.push(task_value);
        }
    }
    let mut entities = vec![parties.referral.clone()];
    if let Some(e) = change.record {
        // The contact's Encounter or the follow-up's Observation: named in the audit event.
        entities.push(format!(
            "{}/{}",
            e["resourceType"].as_str().unwrap_or_default(),
            e["id"].as_str().unwrap_or_default()
        ));
        tx.creates.push(e);
    }
    let mut letter_id = None;
    // A decline tells the practice; a person who referred themselves and named no practice is
    // told by the service itself.
    if let Some(notice) = &change.decline
        && let Some(context) = letter_context(store, config, &sr, &parties).await?
    {
        let author = format!("{} triage team", context.service_name);
        let letter = context.decline(notice, &author, now);
        letter_id = Some(queue_letter(config, &context, &letter, &mut tx, now));
    }
    tx.creates.push(audit::audit_event(&Event {
        kind: Kind::Updated,
        principal: Some(caller.principal),
        patient: Some(parties.patient.clone()),
        entities,
        decision: None,
        permitted: true,
        description: format!(
            "referral workflow: {} ({})",
            change.stage.code(),
            action.kind()
        ),
        at: now,
        request_id: caller.request_id.clone(),
    }));
    let stored = commit(store, tx).await?;
    if letter_id.is_some() {
        letters_queued.notify_one();
    }
    let task = stored.into_iter().find(|r| r["resourceType"] == "Task");
    workflow_state(store, config, &referral_id, &parties, task, None).await
}

/// Stores a workflow change, new resources claiming their UK Core profiles.
pub(super) async fn commit(
    store: &dyn Store,
    mut tx: Transaction,
) -> Result<Vec<Value>, StoreError> {
    for r in &mut tx.creates {
        crate::fhir::resource::claim_uk_core(r);
    }
    store.transact(tx).await
}

/// Everything a letter needs to know about the referral's parties; none when there is nobody to
/// write to (a person who referred themselves and named no practice, an employer).
async fn letter_context(
    store: &dyn Store,
    config: &Config,
    sr: &Value,
    parties: &Parties,
) -> Result<Option<Context>, StoreError> {
    let referral_id = parties.referral.trim_start_matches("ServiceRequest/");
    let patient = crate::access::patient_of_referral(store, referral_id)
        .await?
        .unwrap_or_default();
    let Some(recipient) = workflow::feedback_recipient(parties.practice.as_deref(), &patient)
    else {
        return Ok(None);
    };
    // The name the directory gives the recipient, else the one the referrer gave itself.
    let name = match config.route_to(&recipient).and_then(|r| r.name()) {
        Some(name) => Some(name.to_string()),
        None => stated_name(store, sr, &recipient).await?,
    };
    let person = crate::fhir::patient::demographics(&patient);
    Ok(Some(Context {
        referral: parties.referral.clone(),
        patient: parties.patient.clone(),
        referral_date: parties.referred_on,
        service_name: config.service_name(&parties.service).to_string(),
        service: parties.service.clone(),
        practice: recipient,
        practice_name: name,
        patient_name: person.full_name(),
        nhs_number: person.nhs_number,
        birth_date: person.birth_date,
    }))
}

/// The name of the organisation `recipient` (`system|value`) as the referral stated it: the
/// Organization that assigned the referral's id, when it is that organisation.
async fn stated_name(
    store: &dyn Store,
    sr: &Value,
    recipient: &str,
) -> Result<Option<String>, StoreError> {
    for identifier in sr["identifier"].as_array().into_iter().flatten() {
        let Some(id) = identifier["assigner"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Organization/"))
        else {
            continue;
        };
        if let Some(org) = store.read("Organization", id).await?
            && crate::fhir::identifiers::has_identifier(&org, recipient)
        {
            return Ok(org["name"].as_str().map(str::to_string));
        }
    }
    Ok(None)
}

/// Renders the letter and adds its resources and outbox row to `tx`; returns the letter's id.
fn queue_letter(
    config: &Config,
    context: &Context,
    letter: &letters::Letter,
    tx: &mut Transaction,
    now: DateTime<Utc>,
) -> String {
    // The letter's Composition and DocumentReference are one document in two forms and share
    // its id, so a consent naming the document (`DocumentReference/{id}`) covers both.
    let document = uuid::Uuid::now_v7().to_string();
    let ids = LetterIds {
        composition: document.clone(),
        document,
        communication: uuid::Uuid::now_v7().to_string(),
    };
    let pdf = letters::pdf::render(letter);
    tx.creates
        .extend(letters::resources(letter, context, &ids, &pdf, now));
    tx.deliveries.push(new_delivery(
        config,
        &ids.communication,
        &ids.document,
        &tx.referral,
        context,
        letter.urgent,
        now,
    ));
    ids.communication
}

/// The outbox row of a letter (`communication`, holding `document`) on the referral
/// `referral_id`, addressed as `context` says, due at once.
pub(super) fn new_delivery(
    config: &Config,
    communication: &str,
    document: &str,
    referral_id: &str,
    context: &Context,
    urgent: bool,
    now: DateTime<Utc>,
) -> Delivery {
    let d = &config.delivery;
    let at = |secs: u64| now + chrono::Duration::seconds(secs as i64);
    Delivery {
        id: DeliveryId::new(communication.to_string()),
        document_id: document.to_string(),
        referral_id: referral_id.to_string(),
        patient_id: PatientId::of_reference(&context.patient),
        service: context.service.clone(),
        practice: context.practice.clone(),
        urgent,
        state: DeliveryState::Queued,
        attempts: 0,
        message_id: uuid::Uuid::now_v7().to_string(),
        // One conversation per referral, as BaRS keeps one correlation id per conversation.
        correlation_id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, context.referral.as_bytes())
            .to_string(),
        created_at: now,
        next_attempt_at: now,
        deadline_at: at(d.retry_window_secs),
        escalate_at: urgent.then(|| at(d.urgent_ack_secs)),
        escalated_at: None,
        channel: None,
        transport_id: None,
        last_error: None,
        updated_at: now,
    }
}

/// A letter queued: its id (its Communication's) and its Communication as stored.
#[derive(Debug)]
pub struct QueuedLetter {
    pub id: String,
    pub communication: Value,
}

/// An adviser's letter (`body`) to the practice or other referrer that made the referral `id`,
/// queued for delivery.
pub async fn write_letter(
    store: &dyn Store,
    config: &Config,
    letters_queued: &Notify,
    caller: &Caller<'_>,
    id: &str,
    body: &LetterBody,
) -> Result<QueuedLetter, WorkflowError> {
    let (sr, record) = referral(store, caller, id).await?;
    require_service(caller, &record)?;
    let issues = body.validate();
    if !issues.is_empty() {
        return Err(WorkflowError::Invalid(issues));
    }
    let parties = workflow_parties(&sr, &record);
    let referral_id = sr["id"].as_str().unwrap_or_default().to_string();
    let task = workflow_task(store, &referral_id).await?;
    if matches!(workflow::stage_of(task.as_ref()), Stage::Received) {
        return Err(WorkflowError::Invalid(
            Issue::general(
                IssueType::BusinessRule,
                "triage the referral first: a declined referral's letter is sent by the decline itself",
            )
            .into(),
        ));
    }
    let now = Utc::now();
    let context = letter_context(store, config, &sr, &parties)
        .await?
        .ok_or_else(|| {
            let why = if parties.practice.is_some() {
                "an employer referred the person: an employer is never sent letters or outcomes about them; what reaches an employer is a letter the person has approved"
            } else {
                "the person referred themselves: a letter goes to the GP practice they named only once their NHS number has been traced and verified, and never when they named none; until then, tell the person directly"
            };
            WorkflowError::Invalid(Issue::general(IssueType::BusinessRule, why).into())
        })?;
    let letter = context.feedback(body, now);
    let mut tx = Transaction {
        referral: referral_id,
        ..Default::default()
    };
    let letter_id = queue_letter(config, &context, &letter, &mut tx, now);
    tx.creates.push(audit::audit_event(&Event {
        kind: Kind::Intake,
        principal: Some(caller.principal),
        patient: Some(parties.patient.clone()),
        entities: vec![format!("Communication/{letter_id}")],
        decision: None,
        permitted: true,
        description: format!(
            "{} letter queued for the {}",
            body.priority.code(),
            if workflow::is_practice(&context.practice) {
                "referring practice"
            } else {
                "referrer"
            }
        ),
        at: now,
        request_id: caller.request_id.clone(),
    }));
    let stored = commit(store, tx).await?;
    letters_queued.notify_one();
    let communication = stored
        .into_iter()
        .find(|r| r["resourceType"] == "Communication")
        .unwrap_or_default();
    Ok(QueuedLetter {
        id: letter_id,
        communication,
    })
}

/// The workflow's state as JSON: stage, the referral's workflow `task` as stored, timeliness and
/// the letters (those the reader may know of, when a reader's guard is given; all of them for
/// the service that acted).
/// The Encounter a workflow Task names as the service's first contact with the person.
pub(super) async fn first_contact(
    store: &dyn Store,
    task: Option<&Value>,
) -> Result<Option<Value>, StoreError> {
    match workflow::inputs(task, "first-contact")
        .find_map(|i| i["valueReference"]["reference"].as_str())
        .and_then(|r| r.strip_prefix("Encounter/"))
    {
        Some(id) => store.read("Encounter", id).await,
        None => Ok(None),
    }
}

async fn workflow_state(
    store: &dyn Store,
    config: &Config,
    referral_id: &str,
    parties: &Parties,
    task: Option<Value>,
    reader: Option<&Guard<'_>>,
) -> Result<Value, WorkflowError> {
    let stage = workflow::stage_of(task.as_ref());
    let first_contact = first_contact(store, task.as_ref()).await?.and_then(|e| {
        e["period"]["start"]
            .as_str()
            .and_then(|d| NaiveDate::parse_from_str(d.get(..10)?, "%Y-%m-%d").ok())
    });
    let mut letters = store
        .deliveries(&DeliveryFilter {
            referral: Some(referral_id.to_string()),
            ..Default::default()
        })
        .await?;
    if let Some(guard) = reader {
        letters = guard.letters(letters).await?;
    }
    Ok(json!({
        "referral": parties.referral,
        "stage": stage.code(),
        "serviceRequestStatus": stage.service_request_status(),
        "timeliness": workflow::timeliness(
            parties.referred_on,
            first_contact,
            config.workflow.first_contact_target_days,
            Utc::now().date_naive(),
        ),
        "task": task,
        "letters": letters,
    }))
}

/// The workflow of the referral `id` as the caller may see it: for the service, all of it; for
/// the referring practice, what the person's consent to feedback lets it see — without that
/// consent, its referral's status and nothing more.
pub async fn show(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    id: &str,
) -> Result<Value, WorkflowError> {
    let (sr, record) = referral(store, caller, id).await?;
    let referral_id = sr["id"].as_str().unwrap_or_default();
    let reader = caller.guard(store);
    // What the service recorded reaches the practice only under the person's consent to
    // feedback; without it the practice sees its referral's status and nothing more.
    let task = workflow_task(store, referral_id).await?;
    if let Some(task) = &task {
        match reader.read(task).await {
            Ok(()) => {}
            Err(AccessError::ConsentDenied(reason)) => {
                return Ok(json!({
                    "referral": record.record,
                    "serviceRequestStatus": sr["status"],
                    "withheld": format!("the service's record of this referral is withheld: {reason}"),
                }));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let parties = workflow_parties(&sr, &record);
    let mut state =
        workflow_state(store, config, referral_id, &parties, task, Some(&reader)).await?;
    // The person as this referral's practice stated them (read with vread): what the service
    // contacts them by for this referral, whatever other senders stated since.
    if let Some(v) = record.patient_version {
        state["patient"] = json!(format!("Patient/{}/_history/{v}", record.patient_id));
    }
    Ok(state)
}

/// The caller's letters (a service's sent, a practice's received), in `state` and of `referral`
/// when given: those the caller may know of, audited.
pub async fn list_letters(
    store: &dyn Store,
    caller: &Caller<'_>,
    state: Option<String>,
    referral: Option<String>,
) -> Result<Vec<Delivery>, WorkflowError> {
    if let Some(s) = &state {
        let mut issues = Issues::new();
        crate::workflow::action::check_code(&mut issues, "state", "letter-delivery-state", s);
        if !issues.is_empty() {
            return Err(WorkflowError::UnknownLetterState(issues));
        }
    }
    // A referral named by the sender's id is found as the workflow routes find it; one that
    // does not exist has no letters, as one the caller may not see has none it may know of.
    let referral = match referral {
        Some(named) => match gateway_id(store, &named).await {
            Ok(id) => Some(id),
            Err(WorkflowError::Access(AccessError::NotFound(_))) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        },
        None => None,
    };
    let principal = caller.principal;
    let mut filter = DeliveryFilter {
        // Checked against the CodeSystem above.
        state: state.as_deref().and_then(DeliveryState::from_code),
        referral,
        ..Default::default()
    };
    match principal.role {
        Role::Service => filter.service = Some(principal.organisation.clone()),
        // Letters addressed to the referrer (the outbox's recipient column holds any kind's).
        Role::Practice
        | Role::TalkingTherapies
        | Role::Physiotherapy
        | Role::SecondaryCare
        | Role::VoluntarySector
        | Role::Employer => filter.practice = Some(principal.organisation.clone()),
        Role::InformationGovernance | Role::Commissioner | Role::Operations => {
            return Err(WorkflowError::NoLetters);
        }
    }
    Ok(caller
        .guard(store)
        .letters(store.deliveries(&filter).await?)
        .await?)
}

/// One letter: its delivery, attempts and Communication, if the caller may read it.
#[derive(Debug)]
pub struct Letter {
    pub delivery: Delivery,
    pub attempts: Vec<DeliveryAttempt>,
    pub communication: Value,
}

/// The letter `id` with its delivery and attempts.
pub async fn show_letter(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
) -> Result<Letter, WorkflowError> {
    let letter = DeliveryId::from(id);
    // The delivery first: the outbox commits it with the Communication's new version, so the
    // Communication read after it is never older than the state shown beside it.
    let (delivery, attempts) = store
        .delivery(&letter)
        .await?
        .ok_or_else(|| WorkflowError::UnknownLetter(id.to_string()))?;
    let communication = caller.guard(store).fetch("Communication", id).await?;
    Ok(Letter {
        delivery,
        attempts,
        communication,
    })
}

/// The service sends its rejected or dead letter `id` again (the practice fixed what refused it,
/// or a route was configured): queued now, with a new retry window and the same message id.
/// Returns the delivery and its attempts as they now stand.
pub async fn resend_letter(
    store: &dyn Store,
    config: &Config,
    outbox: &Outbox,
    caller: &Caller<'_>,
    id: &str,
) -> Result<(Delivery, Vec<DeliveryAttempt>), WorkflowError> {
    let letter = DeliveryId::from(id);
    let principal = caller.principal;
    let not_found = || WorkflowError::UnknownLetter(id.to_string());
    let (delivery, _) = store.delivery(&letter).await?.ok_or_else(not_found)?;
    if principal.role != Role::Service || delivery.service != principal.organisation {
        return Err(not_found());
    }
    let refused = |state: DeliveryState| {
        WorkflowError::Invalid(
            Issue::general(
                IssueType::BusinessRule,
                format!(
                    "only a rejected or dead letter is sent again by hand; this one is {state}"
                ),
            )
            .into(),
        )
    };
    crate::delivery::next(delivery.state, DeliveryEvent::ResentByHand)
        .map_err(|_| refused(delivery.state))?;
    // Held while it is changed, so that no worker of any instance acts on it meanwhile, and let
    // go if the change fails. As claimed, it may have changed since it was read (a resend at the
    // same time).
    let now = Utc::now();
    let lease = outbox.lease(&config.delivery, now);
    let delivery = store
        .claim_delivery(&lease, &letter, now)
        .await?
        .ok_or_else(|| {
            WorkflowError::Invalid(
                Issue::general(
                    IssueType::Conflict,
                    "the letter is being worked on right now: try again in a moment",
                )
                .into(),
            )
        })?;
    let Ok(queued) = crate::delivery::next(delivery.state, DeliveryEvent::ResentByHand) else {
        store.release_delivery(&lease, &letter).await?;
        return Err(refused(delivery.state));
    };
    let communication = match store.read("Communication", id).await {
        Ok(Some(communication)) => communication,
        failed => {
            store.release_delivery(&lease, &letter).await?;
            return Err(failed.map_or_else(WorkflowError::from, |_| not_found()));
        }
    };
    let detail = format!(
        "sent again by {} after it was {}",
        principal.client_id, delivery.state
    );
    let resent = audit::audit_event(&Event {
        kind: Kind::Updated,
        principal: Some(principal),
        patient: Some(format!("Patient/{}", delivery.patient_id)),
        entities: vec![format!("Communication/{id}")],
        decision: None,
        permitted: true,
        description: detail.clone(),
        at: now,
        request_id: caller.request_id.clone(),
    });
    let window = chrono::Duration::seconds(config.delivery.retry_window_secs as i64);
    let requeued = store
        .update_delivery(crate::store::DeliveryUpdate {
            id: letter.clone(),
            lease: lease.clone(),
            state: queued,
            attempt: Some(DeliveryAttempt {
                attempt: delivery.attempts,
                at: now,
                outcome: AttemptOutcome::Requeued,
                detail: Some(detail.clone()),
            }),
            next_attempt_at: now,
            last_error: None,
            channel: None,
            escalated_at: None,
            transport_id: None,
            deadline_at: Some(now + window),
            communication: crate::delivery::communication_with_state(
                communication,
                queued,
                Some(&detail),
                now,
            ),
            // The resend and its audit are one write: neither is stored without the other.
            audit: vec![resent],
            alert: None,
        })
        .await;
    if let Err(e) = requeued {
        // So that the resend can be tried again at once (if the store cannot take this either,
        // the lease runs out).
        let _ = store.release_delivery(&lease, &letter).await;
        return Err(e.into());
    }
    outbox.wake.notify_one();
    store.delivery(&letter).await?.ok_or_else(not_found)
}

/// What `GET /metrics` shows: the outbox's counters and its depth by state, as Prometheus text.
pub async fn metrics(
    store: &dyn Store,
    counters: &crate::delivery::worker::Metrics,
) -> Result<String, StoreError> {
    let depth = store.outbox_depth().await?;
    let mut text = counters.render();
    text.push_str(&crate::delivery::worker::render_depth(
        &depth,
        chrono::Utc::now(),
    ));
    Ok(text)
}
