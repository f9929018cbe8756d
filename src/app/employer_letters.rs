//! Employer letters (issue 17, part 4): the adviser drafts a return-to-work or adjustments letter,
//! the person approves that version (shown at a meeting, or on a one-time link), the adviser
//! sends it, and the outbox delivers it to the employer's contact by secure e-mail — asking the
//! one consent decision again as it leaves, so a withdrawal stops it. Each step is one
//! transaction with its AuditEvent.
//!
//! An employer letter is named by its document's id (`DocumentReference`, shared with its
//! Composition); its Communication is the letter as sent, in `preparation` until then.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::Caller;
use super::workflow::{
    WorkflowError, commit, new_delivery, referral, require_service, workflow_parties,
};
use crate::access::AccessError;
use crate::audit::{self, Event, Kind};
use crate::config::Config;
use crate::consent::{Basis, DataClass, Question};
use crate::fhir::{Issue, IssueType, Issues};
use crate::letters::approval_link::{LinkKey, LinkProblem};
use crate::letters::delivery_state::DeliveryState;
use crate::letters::employer::{
    self, ApprovalMethod, Conditions, EmployerLetterBody, draft_resources, employer_question,
    versioned,
};
use crate::letters::{Context, LetterIds};
use crate::store::{PatientId, RecordParties, Store, StoreError, Transaction};
use crate::workflow::{self, Stage};

/// Where an employer letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterStage {
    /// Written; the person has not answered about this version.
    Draft,
    /// The person approved this version: the adviser may send it.
    Approved,
    /// The person said no to this version: it cannot be sent.
    NotApproved,
    /// Sent to the outbox (its delivery says how far it got).
    Sent,
}

impl LetterStage {
    pub fn code(self) -> &'static str {
        match self {
            LetterStage::Draft => "draft",
            LetterStage::Approved => "approved",
            LetterStage::NotApproved => "not-approved",
            LetterStage::Sent => "sent",
        }
    }
}

/// An employer letter as its service sees it.
#[derive(Debug)]
pub struct EmployerLetter {
    pub id: String,
    pub referral: String,
    pub version: i64,
    pub sha256: String,
    pub stage: LetterStage,
    /// Whether the person's health conditions are in it, and why not when asked for and left out.
    pub conditions: Conditions,
    /// `Consent/{id}` of the person's answer about this version, if any.
    pub answer: Option<String>,
    pub recipient: String,
    pub recipient_name: String,
    /// The letter as sent (`Communication` id) and its delivery state, once sent.
    pub communication: String,
    pub delivery: Option<DeliveryState>,
    /// The document, with the PDF: the preview of exactly what would be sent.
    pub document: Value,
}

impl EmployerLetter {
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "resourceType": "EmployerLetter",
            "id": self.id,
            "referral": self.referral,
            "version": self.version,
            "sha256": self.sha256,
            "state": self.stage.code(),
            "healthConditions": self.conditions.code(),
            "employer": { "name": self.recipient_name, "email": employer::contact_address(&self.recipient) },
            "letter": self.communication,
            "document": self.document,
        });
        if let Conditions::LeftOut(why) = &self.conditions {
            out["healthConditionsLeftOut"] = json!(why);
        }
        if let Some(answer) = &self.answer {
            out["answer"] = json!(answer);
        }
        if let Some(state) = self.delivery {
            out["delivery"] = json!(state.code());
        }
        out
    }
}

/// The adviser's draft of a letter to the person's employer on the referral `id`.
pub async fn draft(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    id: &str,
    body: &EmployerLetterBody,
) -> Result<EmployerLetter, WorkflowError> {
    let (sr, record) = referral(store, caller, id).await?;
    require_service(caller, &record)?;
    check(body)?;
    let parties = workflow_parties(&sr, &record);
    let referral_id = sr["id"].as_str().unwrap_or_default().to_string();
    let task = crate::delivery::worker::workflow_task(store, &referral_id).await?;
    match workflow::stage_of(task.as_ref()) {
        Stage::Received => {
            return Err(refused(
                "triage the referral first: a letter to the person's employer follows the service's work with them",
            ));
        }
        Stage::Declined | Stage::Withdrawn => {
            return Err(refused(
                "the referral was declined or withdrawn: the service is not working with the person",
            ));
        }
        _ => {}
    }
    let now = Utc::now();
    let document_id = uuid::Uuid::now_v7().to_string();
    let ids = LetterIds {
        composition: document_id.clone(),
        document: document_id.clone(),
        communication: uuid::Uuid::now_v7().to_string(),
    };
    let (context, conditions, decided) =
        laid_out(store, config, &sr, &parties, &record.patient_id, body, now).await?;
    let letter = context.employer_letter(body, &conditions, now);
    let pdf = crate::letters::pdf::render(&letter);
    let mut tx = Transaction {
        referral: referral_id,
        ..Default::default()
    };
    tx.creates.extend(draft_resources(
        &letter,
        &context,
        &ids,
        &pdf,
        &conditions.classes(),
        now,
    ));
    tx.audit.extend(decided);
    tx.audit.push(audit::audit_event(&Event {
        kind: Kind::Intake,
        principal: Some(caller.principal),
        patient: Some(parties.patient.clone()),
        entities: vec![format!("DocumentReference/{document_id}")],
        decision: None,
        permitted: true,
        description: format!(
            "employer letter drafted ({}; health conditions {}); it goes nowhere until the person approves it",
            body.kind.code(),
            conditions.code()
        ),
        at: now,
        request_id: caller.request_id.clone(),
    }));
    commit(store, tx).await?;
    let mut shown = show(store, caller, &document_id).await?;
    shown.conditions = conditions;
    Ok(shown)
}

/// The adviser's edit of the draft `id`: a new version of the document, which no earlier
/// approval covers.
pub async fn revise(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    id: &str,
    body: &EmployerLetterBody,
) -> Result<EmployerLetter, WorkflowError> {
    // Read before the letter's state: a send committed after this read changes the Composition,
    // so this edit then conflicts with it rather than rewriting a letter already sent.
    let composition_before = store.read("Composition", id).await?;
    let (found, sr, record) = letter_and_referral(store, caller, id).await?;
    check(body)?;
    if found.stage == LetterStage::Sent {
        return Err(refused(
            "this letter has been sent: write a new letter rather than change what the employer was sent",
        ));
    }
    let parties = workflow_parties(&sr, &record);
    let now = Utc::now();
    let (context, conditions, decided) =
        laid_out(store, config, &sr, &parties, &record.patient_id, body, now).await?;
    let letter = context.employer_letter(body, &conditions, now);
    let pdf = crate::letters::pdf::render(&letter);
    let ids = LetterIds {
        composition: found.id.clone(),
        document: found.id.clone(),
        communication: found.communication.clone(),
    };
    let resources = draft_resources(&letter, &context, &ids, &pdf, &conditions.classes(), now);
    let mut tx = Transaction {
        referral: sr["id"].as_str().unwrap_or_default().to_string(),
        ..Default::default()
    };
    for mut resource in resources {
        // A new version claims its profiles as the first did.
        crate::fhir::resource::claim_uk_core(&mut resource);
        let kind = resource["resourceType"].as_str().unwrap_or_default();
        // Each at the version read before the state was checked (the document's as found).
        let based_on = match kind {
            "Composition" => composition_before.as_ref().and_then(super::stored_version),
            "DocumentReference" => Some(found.version),
            _ => store
                .read(kind, &found_id(&resource))
                .await?
                .as_ref()
                .and_then(super::stored_version),
        }
        .ok_or_else(|| StoreError::Corrupt(format!("employer letter {id}: {kind} missing")))?;
        tx.updates.push((resource, based_on));
    }
    tx.audit.extend(decided);
    tx.audit.push(audit::audit_event(&Event {
        kind: Kind::Updated,
        principal: Some(caller.principal),
        patient: Some(parties.patient.clone()),
        entities: vec![format!("DocumentReference/{}", found.id)],
        decision: None,
        permitted: true,
        description: format!(
            "employer letter changed (version {} follows {}); the person's answer about the earlier version does not cover it",
            found.version + 1,
            found.version
        ),
        at: now,
        request_id: caller.request_id.clone(),
    }));
    commit(store, tx).await?;
    let mut shown = show(store, caller, &found.id).await?;
    shown.conditions = conditions;
    Ok(shown)
}

/// Stores AuditEvents about a letter of the referral `referral` and nothing else: a step that
/// changes nothing (a refused send, a link made, wrong details) is on record all the same.
async fn audit_only(
    store: &dyn Store,
    referral: &str,
    audit: Vec<Value>,
) -> Result<(), StoreError> {
    store
        .transact(Transaction {
            referral: bare(referral).to_string(),
            audit,
            ..Default::default()
        })
        .await
        .map(drop)
}

/// A referral's id from its reference (`ServiceRequest/{id}`).
fn bare(referral: &str) -> &str {
    referral.trim_start_matches("ServiceRequest/")
}

fn found_id(resource: &Value) -> String {
    resource["id"].as_str().unwrap_or_default().to_string()
}

/// The employer letter `id`, as its service sees it (read audited by the guard).
pub async fn show(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
) -> Result<EmployerLetter, WorkflowError> {
    letter_of(store, caller, id).await
}

/// The person's answer about the version of the letter whose PDF has `sha256`, recorded by the
/// adviser who showed it to them (`method`): a Consent, and its AuditEvent.
pub async fn record_answer(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
    sha256: &str,
    approved: bool,
    method: ApprovalMethod,
) -> Result<EmployerLetter, WorkflowError> {
    let found = letter_of(store, caller, id).await?;
    answer(store, Some(caller), &found, sha256, approved, method).await?;
    show(store, caller, id).await
}

/// Records the person's answer about `letter` (found by its service, or through its link).
pub(super) async fn answer(
    store: &dyn Store,
    caller: Option<&Caller<'_>>,
    letter: &EmployerLetter,
    sha256: &str,
    approved: bool,
    method: ApprovalMethod,
) -> Result<String, WorkflowError> {
    if letter.stage == LetterStage::Sent {
        return Err(refused("this letter has already been sent"));
    }
    if !sha256.eq_ignore_ascii_case(&letter.sha256) {
        let mut issues = Issues::new();
        issues.error(
            IssueType::BusinessRule,
            "sha256",
            format!(
                "the person's answer is about another version of this letter: the current one (version {}) has SHA-256 {}. Show them this version",
                letter.version, letter.sha256
            ),
        );
        return Err(WorkflowError::Invalid(issues));
    }
    let now = Utc::now();
    let patient = letter.document["subject"]["reference"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let service = letter.document["custodian"].clone();
    let mut service_ref = service.clone();
    if let Some(o) = service_ref.as_object_mut() {
        o.remove("display");
    }
    let sha1 = letter.document["content"][0]["attachment"]["hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let classes = employer::document_classes(&letter.document);
    let mut consent = employer::approval_consent(&employer::Approval {
        approved,
        patient: &patient,
        service: service_ref,
        recipient: &letter.recipient,
        recipient_name: &letter.recipient_name,
        document_id: &letter.id,
        version: letter.version,
        sha1_base64: &sha1,
        classes: &classes,
        method,
        at: now,
    });
    let consent_id = uuid::Uuid::now_v7().to_string();
    consent["id"] = json!(consent_id);
    let document = versioned(&letter.id, letter.version);
    let mut tx = Transaction {
        referral: letter
            .referral
            .trim_start_matches("ServiceRequest/")
            .to_string(),
        ..Default::default()
    };
    tx.creates.push(consent);
    tx.audit.push(audit::audit_event(&Event {
        kind: Kind::ConsentRecorded,
        principal: caller.map(|c| c.principal),
        patient: Some(patient),
        entities: vec![format!("Consent/{consent_id}"), document.clone()],
        decision: None,
        permitted: true,
        description: format!(
            "the person {} version {} of the letter to their employer (SHA-256 {}), {}{}",
            if approved {
                "approved"
            } else {
                "did not approve"
            },
            letter.version,
            letter.sha256,
            method.words(),
            // A changed mind is kept as such: the earlier answer stays on record.
            letter
                .answer
                .as_deref()
                .map(|earlier| format!("; this replaces their earlier answer, {earlier}"))
                .unwrap_or_default()
        ),
        at: now,
        request_id: caller.and_then(|c| c.request_id.clone()),
    }));
    commit(store, tx).await?;
    Ok(format!("Consent/{consent_id}"))
}

/// Sends the approved letter `id`: its Communication becomes the letter as sent, and its
/// outbox row is written; the outbox asks the person's consent again as it leaves.
pub async fn send(
    store: &dyn Store,
    config: &Config,
    letters_queued: &Notify,
    caller: &Caller<'_>,
    id: &str,
) -> Result<EmployerLetter, WorkflowError> {
    // Read before the letter's state: an edit committed after this read changes the
    // Composition, so this send then conflicts with it rather than queueing a version the
    // person was not asked about.
    let composition = store
        .read("Composition", id)
        .await?
        .ok_or_else(|| WorkflowError::UnknownLetter(id.to_string()))?;
    let (found, sr, record) = letter_and_referral(store, caller, id).await?;
    if found.stage == LetterStage::Sent {
        return Err(refused("this letter has already been sent"));
    }
    if config.delivery.smtp.is_none() {
        return Err(refused(
            "this gateway has no mail server for letters ([delivery.smtp]): an employer letter cannot be sent until one is configured",
        ));
    }
    let now = Utc::now();
    let parties = workflow_parties(&sr, &record);
    let mut decided = Vec::new();
    for class in employer::document_classes(&found.document) {
        let question = employer_question(&found.recipient, class, &found.id, found.version, now);
        let (decision, event) = crate::access::disclosure_decision(
            store,
            Some(caller.principal),
            &record.patient_id,
            &question,
            caller.request_id.clone(),
        )
        .await?;
        decided.push(event);
        if !decision.permitted() {
            // The refusal is audited on its own: nothing else is stored.
            audit_only(store, &found.referral, decided).await?;
            let why = match decision.basis {
                Basis::DocumentNotApproved { .. } | Basis::NoConsent => format!(
                    "the person has not approved version {} of this letter: show it to them, or send them a link to approve it",
                    found.version
                ),
                _ => format!(
                    "consent does not allow this letter to go: {}",
                    decision.reason
                ),
            };
            return Err(refused(&why));
        }
    }
    let communication = store
        .read("Communication", &found.communication)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!("employer letter {id}: Communication missing"))
        })?;
    let mut sent = communication.clone();
    sent["status"] = json!(DeliveryState::Queued.communication_status());
    sent["statusReason"] = json!({ "coding": [crate::fhir::terminology::coding("letter-delivery-state", DeliveryState::Queued.code())] });
    sent["sent"] = json!(crate::fhir::search::format_instant(now));
    let mut final_composition = composition.clone();
    final_composition["status"] = json!("final");
    let context = Context {
        referral: found.referral.clone(),
        patient: parties.patient.clone(),
        referral_date: None,
        service_name: config.service_name(&parties.service).to_string(),
        service: parties.service.clone(),
        practice: found.recipient.clone(),
        practice_name: Some(found.recipient_name.clone()),
        patient_name: None,
        nhs_number: None,
        birth_date: None,
    };
    let mut tx = Transaction {
        referral: sr["id"].as_str().unwrap_or_default().to_string(),
        ..Default::default()
    };
    tx.updates
        .push((sent, super::stored_version(&communication).unwrap_or(1)));
    tx.updates.push((
        final_composition,
        super::stored_version(&composition).unwrap_or(1),
    ));
    tx.deliveries.push(new_delivery(
        config,
        &found.communication,
        &found.id,
        &tx.referral,
        &context,
        false,
        now,
    ));
    tx.audit.extend(decided);
    tx.audit.push(audit::audit_event(&Event {
        kind: Kind::Intake,
        principal: Some(caller.principal),
        patient: Some(parties.patient.clone()),
        entities: vec![
            format!("Communication/{}", found.communication),
            versioned(&found.id, found.version),
        ],
        decision: None,
        permitted: true,
        description: format!(
            "employer letter version {} queued for the employer's contact, as the person approved",
            found.version
        ),
        at: now,
        request_id: caller.request_id.clone(),
    }));
    commit(store, tx).await?;
    letters_queued.notify_one();
    show(store, caller, id).await
}

/// An employer letter, found for its service: not known (404) to anyone else, nor when it is
/// not an employer letter.
async fn letter_of(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
) -> Result<EmployerLetter, WorkflowError> {
    letter_and_referral(store, caller, id)
        .await
        .map(|(letter, _, _)| letter)
}

/// [`letter_of`], with its referral as the same read found it (so a use case that goes on to
/// change the letter neither reads nor audits the referral twice).
async fn letter_and_referral(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
) -> Result<(EmployerLetter, Value, RecordParties), WorkflowError> {
    let unknown = || WorkflowError::UnknownLetter(id.to_string());
    let Some(document) = store.read("DocumentReference", id).await? else {
        return Err(unknown());
    };
    if !employer::is_employer_letter(&document) {
        return Err(unknown());
    }
    let referral_ref = related(&document, "ServiceRequest/").ok_or_else(unknown)?;
    // The referral's tenancy decides who may know of the letter; only its service works on it.
    let (sr, record) = match referral(store, caller, bare(&referral_ref)).await {
        Err(WorkflowError::Access(AccessError::NotFound(_))) => return Err(unknown()),
        other => other?,
    };
    if require_service(caller, &record).is_err() {
        return Err(unknown());
    }
    let found = assemble(store, document, referral_ref).await?;
    // The read of the person's letter is audited as any read of their record.
    caller
        .guard(store)
        .fetch("DocumentReference", &found.id)
        .await?;
    Ok((found, sr, record))
}

/// The letter's state from what is stored: its document, Communication, delivery and answers.
pub(super) async fn assemble(
    store: &dyn Store,
    document: Value,
    referral_ref: String,
) -> Result<EmployerLetter, StoreError> {
    let id = found_id(&document);
    let version = super::stored_version(&document).unwrap_or(1);
    let communication = store
        .search(&crate::fhir::search::SearchRequest {
            resource_type: "Communication".into(),
            filters: vec![crate::fhir::search::Filter::Reference {
                param: "based-on",
                any_of: vec![referral_ref.clone()],
            }],
            count: 1000,
            offset: 0,
            sort: Default::default(),
            tenancy: None,
        })
        .await?
        .resources
        .into_iter()
        .find(|c| {
            c["payload"][0]["contentReference"]["reference"] == format!("DocumentReference/{id}")
        })
        .ok_or_else(|| {
            StoreError::Corrupt(format!("employer letter {id}: Communication missing"))
        })?;
    let recipient =
        crate::fhir::identifiers::system_value(&communication["recipient"][0]["identifier"]);
    let recipient_name = communication["recipient"][0]["display"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let communication_id = found_id(&communication);
    let sha256 = document["content"][0]["attachment"]["data"]
        .as_str()
        .and_then(|b64| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b64).ok()
        })
        .map(|pdf| employer::sha256_hex(&pdf))
        .unwrap_or_default();
    // Sent once it has an outbox row: only `send` writes one.
    let delivery = store
        .delivery(&crate::store::DeliveryId::new(communication_id.clone()))
        .await?
        .map(|(d, _)| d.state);
    let sent = delivery.is_some();
    let patient = PatientId::of_reference(
        document["subject"]["reference"]
            .as_str()
            .unwrap_or_default(),
    );
    let service = crate::fhir::identifiers::system_value(&document["custodian"]["identifier"]);
    let answer = latest_answer(
        store,
        &patient,
        &versioned(&id, version),
        &recipient,
        &service,
    )
    .await?;
    let stage = match (&answer, sent) {
        (_, true) => LetterStage::Sent,
        (Some((_, true)), false) => LetterStage::Approved,
        (Some((_, false)), false) => LetterStage::NotApproved,
        (None, false) => LetterStage::Draft,
    };
    let conditions = if employer::document_classes(&document).contains(&DataClass::Diagnosis) {
        Conditions::Included(Vec::new())
    } else {
        Conditions::NotAsked
    };
    Ok(EmployerLetter {
        id,
        referral: referral_ref,
        version,
        sha256,
        stage,
        conditions,
        answer: answer.map(|(c, _)| c),
        recipient,
        recipient_name,
        communication: communication_id,
        delivery,
        document,
    })
}

/// The person's latest answer about `document` (a version): its Consent and whether it approves.
async fn latest_answer(
    store: &dyn Store,
    patient: &PatientId,
    document: &str,
    recipient: &str,
    service: &str,
) -> Result<Option<(String, bool)>, StoreError> {
    let mut answers: Vec<Value> = crate::access::consents_of(store, patient)
        .await?
        .into_iter()
        .filter(|c| employer::answers(c, document, recipient, service))
        .collect();
    answers.sort_by(|a, b| {
        a["dateTime"]
            .as_str()
            .cmp(&b["dateTime"].as_str())
            .then(a["id"].as_str().cmp(&b["id"].as_str()))
    });
    Ok(answers.last().map(|c| {
        (
            format!("Consent/{}", c["id"].as_str().unwrap_or_default()),
            c["status"] == "active",
        )
    }))
}

/// The first reference of `document`'s context starting `prefix`.
fn related(document: &Value, prefix: &str) -> Option<String> {
    document["context"]["related"]
        .as_array()?
        .iter()
        .filter_map(|r| r["reference"].as_str())
        .find(|r| r.starts_with(prefix))
        .map(str::to_string)
}

/// Lays out the letter: whom it is to, and whether the person's conditions go in it (the one
/// consent decision, audited).
async fn laid_out(
    store: &dyn Store,
    config: &Config,
    sr: &Value,
    parties: &crate::workflow::Parties,
    patient_id: &PatientId,
    body: &EmployerLetterBody,
    now: DateTime<Utc>,
) -> Result<(Context, Conditions, Vec<Value>), StoreError> {
    let referral_id = parties.referral.trim_start_matches("ServiceRequest/");
    let patient = crate::access::patient_of_referral(store, referral_id)
        .await?
        .unwrap_or_default();
    let person = crate::fhir::patient::demographics(&patient);
    let recipient = body.recipient();
    let mut decided = Vec::new();
    let conditions = if body.include_health_conditions {
        // Whether the person's consent lets the service tell an employer about their health:
        // a permit for the diagnosis class to employers (the letter's own approval, rule 6,
        // is asked for when it is sent).
        let question = Question {
            document: None,
            ..employer_question(&recipient, DataClass::Diagnosis, "", 0, now)
        };
        let (decision, event) =
            crate::access::disclosure_decision(store, None, patient_id, &question, None).await?;
        decided.push(event);
        let covered = matches!(
            decision.basis,
            Basis::Permitted { .. } | Basis::DocumentNotApproved { .. }
        );
        if covered {
            Conditions::Included(conditions_of(store, sr).await?)
        } else {
            Conditions::LeftOut(format!(
                "the person's health conditions are left out: {}",
                decision.reason
            ))
        }
    } else {
        Conditions::NotAsked
    };
    let context = Context {
        referral: parties.referral.clone(),
        patient: parties.patient.clone(),
        referral_date: parties.referred_on,
        service_name: config.service_name(&parties.service).to_string(),
        service: parties.service.clone(),
        practice: recipient,
        practice_name: Some(body.employer.name.trim().to_string()),
        patient_name: person.full_name(),
        nhs_number: None,
        birth_date: None,
    };
    Ok((context, conditions, decided))
}

/// The referral's health conditions, in words.
async fn conditions_of(store: &dyn Store, sr: &Value) -> Result<Vec<String>, StoreError> {
    let ids: Vec<String> = sr["reasonReference"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reference"].as_str()?.strip_prefix("Condition/"))
        .map(str::to_string)
        .collect();
    Ok(store
        .read_many("Condition", &ids)
        .await?
        .iter()
        .filter_map(|c| {
            c["code"]["text"]
                .as_str()
                .or_else(|| c["code"]["coding"][0]["display"].as_str())
                .map(str::to_string)
        })
        .collect())
}

fn check(body: &EmployerLetterBody) -> Result<(), WorkflowError> {
    let issues = body.validate();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(WorkflowError::Invalid(issues))
    }
}

fn refused(why: &str) -> WorkflowError {
    WorkflowError::Invalid(Issue::general(IssueType::BusinessRule, why).into())
}

/// A one-time link made for the person.
#[derive(Debug)]
pub struct IssuedLink {
    pub url: String,
    /// The link's code, for the adviser to give the person by another way than the link.
    pub code: String,
    pub version: i64,
    pub expires: DateTime<Utc>,
}

/// A one-time link on which the person reads version of the letter `id` as it stands and
/// answers: for the adviser to send them (the gateway does not know how to reach them).
pub async fn issue_link(
    store: &dyn Store,
    config: &Config,
    key: &LinkKey,
    caller: &Caller<'_>,
    id: &str,
) -> Result<IssuedLink, WorkflowError> {
    let found = letter_of(store, caller, id).await?;
    match found.stage {
        LetterStage::Sent => return Err(refused("this letter has already been sent")),
        LetterStage::Approved | LetterStage::NotApproved => {
            return Err(refused(
                "the person has already answered about this version; change the letter to ask them about a new one",
            ));
        }
        LetterStage::Draft => {}
    }
    let now = Utc::now();
    let expires = now
        + chrono::Duration::hours(
            i64::try_from(config.employer_letters.link_valid_hours).unwrap_or(i64::MAX / 3600),
        );
    let token = key.seal(&found.id, found.version, expires.timestamp());
    let patient = found.document["subject"]["reference"]
        .as_str()
        .map(str::to_string);
    audit_only(
        store,
        &found.referral,
        vec![audit::audit_event(&Event {
                kind: Kind::Updated,
                principal: Some(caller.principal),
                patient,
                entities: vec![versioned(&found.id, found.version)],
                decision: None,
                permitted: true,
                description: format!(
                    "one-time link made for the person to answer about version {} of the letter to their employer, until {}",
                    found.version,
                    expires.to_rfc3339()
                ),
                at: now,
                request_id: caller.request_id.clone(),
            })],
    )
    .await?;
    Ok(IssuedLink {
        url: format!("{}/letters/approve/{token}", config.base_url()),
        code: key.code(&token),
        version: found.version,
        expires,
    })
}

/// Why a link cannot be used now: each is a page the person is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a link the gateway made, or its letter is gone.
    Unknown,
    Expired,
    /// The letter was changed after the link was made.
    Changed,
    Sent,
    /// The person has answered about this version.
    Answered,
    /// The date of birth given is not the person's.
    WrongBirthDate,
}

/// A genuine link's letter, and whether it can still be answered on: what the person is told
/// only once they have said who they are.
#[derive(Debug)]
pub struct Opened {
    pub letter: EmployerLetter,
    pub answerable: Result<(), LinkRefusal>,
}

/// The letter a link names: `Err` for a link that is no link (or whose letter is gone) or has
/// expired, which anyone holding it may be told; otherwise the letter, with its state kept for
/// after the person's date of birth and code.
pub async fn open_link(
    store: &dyn Store,
    key: &LinkKey,
    token: &str,
) -> Result<Result<Opened, LinkRefusal>, StoreError> {
    let claim = match key.open(token, Utc::now().timestamp()) {
        Ok(claim) => claim,
        Err(LinkProblem::Forged) => return Ok(Err(LinkRefusal::Unknown)),
        Err(LinkProblem::Expired) => return Ok(Err(LinkRefusal::Expired)),
    };
    let Some(document) = store.read("DocumentReference", &claim.letter).await? else {
        return Ok(Err(LinkRefusal::Unknown));
    };
    let Some(referral_ref) =
        related(&document, "ServiceRequest/").filter(|_| employer::is_employer_letter(&document))
    else {
        return Ok(Err(LinkRefusal::Unknown));
    };
    let letter = assemble(store, document, referral_ref).await?;
    let answerable = match letter.stage {
        LetterStage::Sent => Err(LinkRefusal::Sent),
        _ if letter.version != claim.version => Err(LinkRefusal::Changed),
        LetterStage::Approved | LetterStage::NotApproved => Err(LinkRefusal::Answered),
        LetterStage::Draft => Ok(()),
    };
    Ok(Ok(Opened { letter, answerable }))
}

/// Whether `birth_date` is the person's, as the referral states them, and the link's code was
/// right (`code`): both or nothing. Wrong details are audited.
pub async fn is_the_person(
    store: &dyn Store,
    letter: &EmployerLetter,
    birth_date: chrono::NaiveDate,
    code: bool,
) -> Result<bool, StoreError> {
    let patient = crate::access::patient_of_referral(store, bare(&letter.referral))
        .await?
        .unwrap_or_default();
    let theirs = code && patient["birthDate"].as_str() == Some(birth_date.to_string().as_str());
    if !theirs {
        audit_only(
            store,
            &letter.referral,
            vec![audit::audit_event(&Event {
                    kind: Kind::Read,
                    principal: None,
                    patient: letter.document["subject"]["reference"]
                        .as_str()
                        .map(str::to_string),
                    entities: vec![versioned(&letter.id, letter.version)],
                    decision: None,
                    permitted: false,
                    description: "wrong details (date of birth or code) were given on the one-time link to a letter to the person's employer; nothing was shown".into(),
                    at: Utc::now(),
                    request_id: None,
                })],
        )
        .await?;
    }
    Ok(theirs)
}

/// The person, having given their date of birth on the link, answers about the version they
/// were shown (`sha256`).
pub async fn answer_on_link(
    store: &dyn Store,
    letter: &EmployerLetter,
    sha256: &str,
    approved: bool,
) -> Result<Result<(), LinkRefusal>, StoreError> {
    match answer(
        store,
        None,
        letter,
        sha256,
        approved,
        ApprovalMethod::OneTimeLink,
    )
    .await
    {
        Ok(_) => Ok(Ok(())),
        // The letter changed between the page and the answer.
        Err(WorkflowError::Invalid(_)) => Ok(Err(LinkRefusal::Changed)),
        Err(WorkflowError::Store(e)) => Err(e),
        Err(other) => Err(StoreError::Corrupt(other.to_string())),
    }
}

/// The letter's sections as its Composition holds them (title, paragraphs), for the link's page:
/// the same text the PDF was rendered from.
pub async fn sections_of(
    store: &dyn Store,
    letter: &EmployerLetter,
) -> Result<Vec<(String, Vec<String>)>, StoreError> {
    let composition = store
        .read("Composition", &letter.id)
        .await?
        .unwrap_or_default();
    Ok(composition["section"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["title"].as_str().unwrap_or_default().to_string(),
                crate::letters::paragraphs_of(s["text"]["div"].as_str().unwrap_or_default()),
            )
        })
        .collect())
}
