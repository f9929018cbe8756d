//! The adviser workflow and letters: `/api/v1/referrals/{id}/…` and `/api/v1/letters`.
//! Each action reads the referral (tenancy and consent checked and audited by the guard), asks
//! the pure [`workflow`] or [`letters`] core what changes, and stores it all in one transaction,
//! letters with their outbox rows.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AppState;
use super::auth::require_scope;
use super::body::JsonBody;
use super::error::{ApiError, fhir_response, set_location};
use super::fhir_read::guard;
use crate::audit::{self, Event, Kind};
use crate::auth::{Principal, Role, scope};
use crate::delivery::state::{AttemptOutcome, DeliveryState, Event as DeliveryEvent};
use crate::delivery::worker::workflow_task;
use crate::fhir::identifiers::value_part;
use crate::fhir::search::format_instant;
use crate::fhir::{Issue, IssueType};
use crate::letters::{self, Context, LetterBody, LetterIds};
use crate::store::{Delivery, DeliveryFilter, RecordParties, Transaction};
use crate::workflow::action::IntoAction;
use crate::workflow::{self, Action, Parties, Stage};

/// The body as the action's type, or a 400 naming what serde could not read.
fn parse<T: DeserializeOwned>(body: JsonBody) -> Result<T, ApiError> {
    serde_json::from_value(body.value).map_err(|e| {
        ApiError::BadRequest(
            Issue::general(
                IssueType::Structure,
                format!("the body does not have the expected shape: {e}"),
            )
            .into(),
        )
    })
}

/// The referral, checked readable by the caller, with its parties.
async fn referral(
    app: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<(Value, RecordParties), ApiError> {
    let Path(id) = id.map_err(|e| ApiError::NotFound(format!("no such referral: {e}")))?;
    let sr = guard(app, principal, headers)
        .fetch("ServiceRequest", &id)
        .await?;
    let parties = app
        .store
        .records_of("ServiceRequest", &id)
        .await?
        .into_iter()
        .find(|r| r.record == format!("ServiceRequest/{id}") && r.practice.is_some())
        .ok_or_else(|| ApiError::NotFound(format!("ServiceRequest/{id} is not a referral")))?;
    Ok((sr, parties))
}

/// Only the service a referral is addressed to works on it.
fn require_service(principal: &Principal, parties: &RecordParties) -> Result<(), ApiError> {
    if principal.role != Role::Service
        || parties.service.as_deref() != Some(&principal.organisation)
    {
        return Err(ApiError::Forbidden(
            "only the service the referral is addressed to records its workflow".into(),
        ));
    }
    Ok(())
}

fn workflow_parties(sr: &Value, p: &RecordParties) -> Parties {
    Parties {
        referral: p.record.clone(),
        patient: format!("Patient/{}", p.patient_id),
        // The referral's own row (see `referral`) always names its practice and service.
        practice: p.practice.clone().unwrap_or_default(),
        service: p.service.clone().unwrap_or_default(),
        referred_on: sr["authoredOn"]
            .as_str()
            .and_then(|d| d.get(..10))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
    }
}

fn version_of(resource: &Value) -> i64 {
    resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// `POST /api/v1/referrals/{id}/{triage|contacts|support|discharge}`: one workflow step, its
/// body read as `B`.
pub async fn step<B: DeserializeOwned + IntoAction>(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let action = parse::<B>(body)?.into_action().map_err(ApiError::Invalid)?;
    act(app, principal, headers, id, action).await
}

/// Applies one workflow action and answers with the workflow's new state.
async fn act(
    app: AppState,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    action: Action,
) -> Result<Response, ApiError> {
    let (sr, record) = referral(&app, &principal, &headers, id).await?;
    require_service(&principal, &record)?;
    let parties = workflow_parties(&sr, &record);
    let referral_id = sr["id"].as_str().unwrap_or_default().to_string();
    let task = workflow_task(&*app.store, &referral_id).await?;
    let now = Utc::now();
    let encounter_id = uuid::Uuid::now_v7().to_string();
    let change = workflow::apply(&parties, task.as_ref(), &action, &encounter_id, now)
        .map_err(ApiError::Invalid)?;

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
    if let Some(e) = change.encounter {
        tx.creates.push(e);
    }
    let mut letter_id = None;
    if let Some(notice) = &change.decline {
        let context = letter_context(&app, &parties).await?;
        let author = format!("{} triage team", context.service_name);
        let letter = context.decline(notice, &author, now);
        letter_id = Some(queue_letter(&app, &context, &letter, &mut tx, now));
    }
    tx.creates.push(audit::audit_event(&Event {
        kind: Kind::Updated,
        principal: Some(&principal),
        patient: Some(parties.patient.clone()),
        entities: vec![parties.referral.clone()],
        decision: None,
        permitted: true,
        description: format!("referral workflow: {}", change.stage.code()),
        at: now,
        request_id: super::auth::request_id(&headers),
    }));
    let stored = commit(&app, tx).await?;
    if letter_id.is_some() {
        app.outbox.wake.notify_one();
    }
    let task = stored.into_iter().find(|r| r["resourceType"] == "Task");
    let state = workflow_state(&app, &referral_id, &parties, task, None).await?;
    Ok((StatusCode::OK, Json(state)).into_response())
}

/// Stores a workflow change, new resources claiming their UK Core profiles.
async fn commit(app: &AppState, mut tx: Transaction) -> Result<Vec<Value>, ApiError> {
    for r in &mut tx.creates {
        crate::fhir::resource::claim_uk_core(r);
    }
    Ok(app.store.transact(tx).await?)
}

/// Everything a letter needs to know about the referral's parties.
async fn letter_context(app: &AppState, parties: &Parties) -> Result<Context, ApiError> {
    let referral_id = parties.referral.trim_start_matches("ServiceRequest/");
    let patient = crate::access::patient_of_referral(&*app.store, referral_id)
        .await?
        .unwrap_or_default();
    let ods = value_part(&parties.practice);
    let person = crate::fhir::patient::demographics(&patient);
    Ok(Context {
        referral: parties.referral.clone(),
        patient: parties.patient.clone(),
        referral_date: parties.referred_on,
        service_name: app.config.service_name(&parties.service).to_string(),
        service: parties.service.clone(),
        practice: parties.practice.clone(),
        practice_name: app
            .config
            .directory
            .get(ods)
            .and_then(|r| r.name())
            .map(str::to_string),
        patient_name: person.full_name(),
        nhs_number: person.nhs_number,
        birth_date: person.birth_date,
    })
}

/// Renders the letter and adds its resources and outbox row to `tx`; returns the letter's id.
fn queue_letter(
    app: &AppState,
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
    let d = &app.config.delivery;
    let at = |secs: u64| format_instant(now + chrono::Duration::seconds(secs as i64));
    tx.deliveries.push(Delivery {
        id: ids.communication.clone(),
        document_id: ids.document,
        referral_id: tx.referral.clone(),
        patient_id: context.patient.trim_start_matches("Patient/").to_string(),
        service: context.service.clone(),
        practice: context.practice.clone(),
        urgent: letter.urgent,
        state: DeliveryState::Queued,
        attempts: 0,
        message_id: uuid::Uuid::now_v7().to_string(),
        // One conversation per referral, as BaRS keeps one correlation id per conversation.
        correlation_id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, context.referral.as_bytes())
            .to_string(),
        created_at: format_instant(now),
        next_attempt_at: format_instant(now),
        deadline_at: at(d.retry_window_secs),
        escalate_at: letter.urgent.then(|| at(d.urgent_ack_secs)),
        escalated_at: None,
        channel: None,
        transport_id: None,
        last_error: None,
        updated_at: format_instant(now),
    });
    ids.communication
}

/// `POST /api/v1/referrals/{id}/letters`: an adviser's letter to the referring practice.
pub async fn create_letter(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let body: LetterBody = parse(body)?;
    let (sr, record) = referral(&app, &principal, &headers, id).await?;
    require_service(&principal, &record)?;
    let issues = body.validate();
    if !issues.is_empty() {
        return Err(ApiError::Invalid(issues));
    }
    let parties = workflow_parties(&sr, &record);
    let referral_id = sr["id"].as_str().unwrap_or_default().to_string();
    let task = workflow_task(&*app.store, &referral_id).await?;
    if matches!(workflow::stage_of(task.as_ref()), Stage::Received) {
        return Err(ApiError::Invalid(
            Issue::general(
                IssueType::BusinessRule,
                "triage the referral first: a declined referral's letter is sent by the decline itself",
            )
            .into(),
        ));
    }
    let now = Utc::now();
    let context = letter_context(&app, &parties).await?;
    let letter = context.feedback(&body, now);
    let mut tx = Transaction {
        referral: referral_id,
        ..Default::default()
    };
    let letter_id = queue_letter(&app, &context, &letter, &mut tx, now);
    tx.creates.push(audit::audit_event(&Event {
        kind: Kind::Intake,
        principal: Some(&principal),
        patient: Some(parties.patient.clone()),
        entities: vec![format!("Communication/{letter_id}")],
        decision: None,
        permitted: true,
        description: format!(
            "{} letter queued for the referring practice",
            body.priority.code()
        ),
        at: now,
        request_id: super::auth::request_id(&headers),
    }));
    let stored = commit(&app, tx).await?;
    app.outbox.wake.notify_one();
    let communication = stored
        .into_iter()
        .find(|r| r["resourceType"] == "Communication")
        .unwrap_or_default();
    let mut response = fhir_response(StatusCode::CREATED, &communication);
    set_location(
        &mut response,
        &format!("{}/fhir/Communication/{letter_id}", app.config.base_url()),
    );
    Ok(response)
}

/// The workflow's state as JSON: stage, the referral's workflow `task` as stored, timeliness and
/// the letters (those the reader may know of, when a reader's guard is given; all of them for
/// the service that acted).
async fn workflow_state(
    app: &AppState,
    referral_id: &str,
    parties: &Parties,
    task: Option<Value>,
    reader: Option<&crate::access::Guard<'_>>,
) -> Result<Value, ApiError> {
    let stage = workflow::stage_of(task.as_ref());
    let first_contact = match task.as_ref().and_then(|t| {
        t["input"].as_array()?.iter().find(|i| i["type"]["coding"][0]["code"] == "first-contact")?["valueReference"]["reference"]
            .as_str()
            .map(str::to_string)
    }) {
        Some(r) => app
            .store
            .read("Encounter", r.trim_start_matches("Encounter/"))
            .await?
            .and_then(|e| e["period"]["start"].as_str().and_then(|d| NaiveDate::parse_from_str(d.get(..10)?, "%Y-%m-%d").ok())),
        None => None,
    };
    let mut letters = app
        .store
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
            app.config.workflow.first_contact_target_days,
            Utc::now().date_naive(),
        ),
        "task": task,
        "letters": letters,
    }))
}

/// `GET /api/v1/referrals/{id}/workflow`: for the service and the referring practice.
pub async fn show(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, &scope::read("ServiceRequest"))?;
    let (sr, record) = referral(&app, &principal, &headers, id).await?;
    let referral_id = sr["id"].as_str().unwrap_or_default();
    let reader = guard(&app, &principal, &headers);
    // What the service recorded reaches the practice only under the person's consent to
    // feedback; without it the practice sees its referral's status and nothing more.
    let task = workflow_task(&*app.store, referral_id).await?;
    if let Some(task) = &task {
        match reader.read(task).await {
            Ok(()) => {}
            Err(crate::access::AccessError::ConsentDenied(reason)) => {
                return Ok(Json(json!({
                    "referral": record.record,
                    "serviceRequestStatus": sr["status"],
                    "withheld": format!("the service's record of this referral is withheld: {reason}"),
                }))
                .into_response());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let parties = workflow_parties(&sr, &record);
    let mut state = workflow_state(&app, referral_id, &parties, task, Some(&reader)).await?;
    // The person as this referral's practice stated them (read with vread): what the service
    // contacts them by for this referral, whatever other senders stated since.
    if let Some(v) = record.patient_version {
        state["patient"] = json!(format!("Patient/{}/_history/{v}", record.patient_id));
    }
    Ok(Json(state).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterQuery {
    pub state: Option<String>,
    pub referral: Option<String>,
}

/// `GET /api/v1/letters?state=&referral=`: the caller's letters (a service's sent, a practice's
/// received), e.g. every dead or escalated one.
pub async fn list_letters(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    query: Result<Query<LetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, &scope::search("Communication"))?;
    let Query(q) = query.map_err(|e| {
        ApiError::BadRequest(Issue::general(IssueType::Invalid, e.body_text()).into())
    })?;
    if let Some(s) = &q.state {
        let mut issues = crate::fhir::Issues::new();
        crate::workflow::action::check_code(&mut issues, "state", "letter-delivery-state", s);
        if !issues.is_empty() {
            return Err(ApiError::BadRequest(issues));
        }
    }
    let mut filter = DeliveryFilter {
        // Checked against the CodeSystem above.
        state: q.state.as_deref().and_then(DeliveryState::from_code),
        referral: q.referral,
        ..Default::default()
    };
    match principal.role {
        Role::Service => filter.service = Some(principal.organisation.clone()),
        Role::Practice => filter.practice = Some(principal.organisation.clone()),
        Role::InformationGovernance => {
            return Err(ApiError::Forbidden(
                "information-governance clients read the audit trail, not letters".into(),
            ));
        }
    }
    let letters = guard(&app, &principal, &headers)
        .letters(app.store.deliveries(&filter).await?)
        .await?;
    Ok(Json(json!({ "total": letters.len(), "letters": letters })).into_response())
}

/// `GET /api/v1/letters/{id}`: one letter's delivery, with its attempts.
pub async fn show_letter(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, &scope::read("Communication"))?;
    let Path(id) = id.map_err(|e| ApiError::NotFound(format!("no such letter: {e}")))?;
    // The delivery first: the outbox commits it with the Communication's new version, so the
    // Communication read after it is never older than the state shown beside it.
    let (delivery, attempts) = app
        .store
        .delivery(&id)
        .await?
        .ok_or_else(|| unknown_letter(&id))?;
    let communication = guard(&app, &principal, &headers)
        .fetch("Communication", &id)
        .await?;
    Ok(
        Json(json!({ "delivery": delivery, "attempts": attempts, "communication": communication }))
            .into_response(),
    )
}

fn unknown_letter(id: &str) -> ApiError {
    ApiError::NotFound(format!("letter {id} is not known to this gateway"))
}

/// `POST /api/v1/letters/{id}/$resend`: the service sends a rejected or dead letter again (the
/// practice fixed what refused it, or a route was configured): queued now, with a new retry
/// window and the same message id.
pub async fn resend_letter(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::WORKFLOW)?;
    let Path(id) = id.map_err(|e| ApiError::NotFound(format!("no such letter: {e}")))?;
    let not_found = || unknown_letter(&id);
    let (delivery, _) = app.store.delivery(&id).await?.ok_or_else(not_found)?;
    if principal.role != Role::Service || delivery.service != principal.organisation {
        return Err(not_found());
    }
    let refused = |state: DeliveryState| {
        ApiError::Invalid(
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
    let lease = app.outbox.lease(&app.config.delivery, now);
    let delivery = app
        .store
        .claim_delivery(&lease, &id, &format_instant(now))
        .await?
        .ok_or_else(|| {
            ApiError::Invalid(
                Issue::general(
                    IssueType::Conflict,
                    "the letter is being worked on right now: try again in a moment",
                )
                .into(),
            )
        })?;
    let Ok(queued) = crate::delivery::next(delivery.state, DeliveryEvent::ResentByHand) else {
        app.store.release_delivery(&lease, &id).await?;
        return Err(refused(delivery.state));
    };
    let communication = match app.store.read("Communication", &id).await {
        Ok(Some(communication)) => communication,
        failed => {
            app.store.release_delivery(&lease, &id).await?;
            return Err(failed.map_or_else(ApiError::from, |_| not_found()));
        }
    };
    let detail = format!(
        "sent again by {} after it was {}",
        principal.client_id, delivery.state
    );
    let resent = audit::audit_event(&Event {
        kind: Kind::Updated,
        principal: Some(&principal),
        patient: Some(format!("Patient/{}", delivery.patient_id)),
        entities: vec![format!("Communication/{id}")],
        decision: None,
        permitted: true,
        description: detail.clone(),
        at: now,
        request_id: super::auth::request_id(&headers),
    });
    let window = chrono::Duration::seconds(app.config.delivery.retry_window_secs as i64);
    let requeued = app
        .store
        .update_delivery(crate::store::DeliveryUpdate {
            id: id.clone(),
            lease: lease.clone(),
            state: queued,
            attempt: Some(crate::store::DeliveryAttempt {
                attempt: delivery.attempts,
                at: format_instant(now),
                outcome: AttemptOutcome::Requeued,
                detail: Some(detail.clone()),
            }),
            next_attempt_at: format_instant(now),
            last_error: None,
            channel: None,
            escalated_at: None,
            transport_id: None,
            deadline_at: Some(format_instant(now + window)),
            communication: crate::delivery::communication_with_state(
                communication,
                queued,
                Some(&detail),
                now,
            ),
            // The resend and its audit are one write: neither is stored without the other.
            audit: vec![resent],
        })
        .await;
    if let Err(e) = requeued {
        // So that the resend can be tried again at once (if the store cannot take this either,
        // the lease runs out).
        let _ = app.store.release_delivery(&lease, &id).await;
        return Err(e.into());
    }
    app.outbox.wake.notify_one();
    let (delivery, attempts) = app.store.delivery(&id).await?.ok_or_else(not_found)?;
    Ok(Json(json!({ "delivery": delivery, "attempts": attempts })).into_response())
}

/// `GET /metrics`: delivery counters (no personal data), for Prometheus.
pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.outbox.metrics.render(),
    )
        .into_response()
}
