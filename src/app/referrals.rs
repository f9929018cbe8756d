//! Submitting a referral: in the practice format, or as a BaRS `$process-message` Bundle; and
//! its referrer cancelling it by BaRS message.

use chrono::Utc;
use serde_json::{Value, json};

use super::submissions::{SubmitError, submit};
use super::{Caller, Return};
use crate::audit::{self, Event, Kind};
use crate::caller::Role;
use crate::config::Config;
use crate::delivery::worker::workflow_task;
use crate::fhir::systems;
use crate::fhir::{Issue, IssueType};
use crate::intake::{Submission, SubmissionKind, admission, bars, practice_referral};
use crate::store::{AuditTrail, Store, Stored, Transaction};
use crate::workflow::{self, Action, Stage};

/// A referral taken in.
#[derive(Debug)]
pub struct Referral {
    pub stored: Stored,
    /// The stored ServiceRequest, when [`Return::Representation`] was asked for.
    pub resource: Option<Value>,
}

/// A referral in the practice format (`body`): stored, or its resend recognised.
pub async fn submit_practice_referral(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    body: &Value,
    wanted: Return,
) -> Result<Referral, SubmitError> {
    let ctx = config.intake_now();
    let submission = practice_referral(body, &ctx).map_err(SubmitError::Invalid)?;
    let stored = accept(
        store,
        config,
        caller,
        submission,
        crate::intake::admission::PRACTICE_CONSENT_EXPRESSION,
        admission::practice_criterion_expression,
    )
    .await?;
    read_back(store, stored, wanted).await
}

/// What a BaRS message did.
#[derive(Debug)]
pub enum Processed {
    /// A referral taken in.
    Referral(Referral),
    /// A referral cancelled by its referrer.
    Cancelled(Cancelled),
}

/// A referral its referrer cancelled.
#[derive(Debug)]
pub struct Cancelled {
    pub service_request_id: String,
    pub withdrawal: workflow::Withdrawal,
    /// False when it had already been cancelled so (a resent cancellation changes nothing).
    pub newly: bool,
    /// The ServiceRequest as it now stands, when [`Return::Representation`] was asked for.
    pub resource: Option<Value>,
}

/// A BaRS message (`bytes` as received, `bundle` parsed from them): a new referral, stored, or
/// the cancellation of one.
pub async fn process_message(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    bytes: &[u8],
    bundle: &Value,
    wanted: Return,
) -> Result<Processed, SubmitError> {
    let ctx = config.intake_now();
    let message = bars::validate(bytes, bundle, &ctx).map_err(|r| match r {
        bars::Rejection::Malformed(issues) => SubmitError::Malformed(issues),
        bars::Rejection::Invalid(issues) => SubmitError::Invalid(issues),
    })?;
    match message {
        bars::BarsMessage::Referral(submission) => {
            let stored = accept(
                store,
                config,
                caller,
                submission,
                crate::intake::admission::BARS_CONSENT_EXPRESSION,
                admission::bars_criterion_expression,
            )
            .await?;
            Ok(Processed::Referral(read_back(store, stored, wanted).await?))
        }
        bars::BarsMessage::Cancellation(c) => Ok(Processed::Cancelled(
            cancel(store, caller, c, wanted).await?,
        )),
    }
}

/// The referrer withdraws a referral it sent: only the practice that sent it, naming it as it
/// was sent, about the same person, while it is current (BaRS: "The Receiver must not process a
/// cancellation request for a booking or referral which is not current"). The ServiceRequest
/// takes the cancellation's status and the workflow Task is cancelled (business status
/// `withdrawn`), with the AuditEvent, in one transaction: the service sees it in its worklist,
/// the practice in the response message. A resent cancellation changes nothing.
async fn cancel(
    store: &dyn Store,
    caller: &Caller<'_>,
    c: bars::Cancellation,
    wanted: Return,
) -> Result<Cancelled, SubmitError> {
    let principal = caller.principal;
    if principal.role != Role::Practice || c.practice != principal.organisation {
        return Err(SubmitError::NotTheSender {
            what: "cancellation",
            from: c.practice.clone(),
            token_for: principal.organisation.clone(),
        });
    }
    // Keyed by the sender, so another practice's referral is never found.
    let id = store
        .submitted(&c.key)
        .await?
        .ok_or_else(|| SubmitError::UnknownReferral(c.key.value.clone()))?;
    let sr = store
        .read("ServiceRequest", &id)
        .await?
        .ok_or_else(|| SubmitError::UnknownReferral(c.key.value.clone()))?;
    let record = store
        .records_of("ServiceRequest", &id)
        .await?
        .into_iter()
        .find(|r| r.record == format!("ServiceRequest/{id}") && r.practice.is_some())
        .ok_or_else(|| SubmitError::UnknownReferral(c.key.value.clone()))?;
    let now = Utc::now();
    let status = c.withdrawal.status();
    let event = |permitted: bool, description: String| Event {
        kind: Kind::Updated,
        principal: Some(principal),
        patient: Some(format!("Patient/{}", record.patient_id)),
        entities: vec![format!("ServiceRequest/{id}")],
        decision: None,
        permitted,
        description,
        at: now,
        request_id: caller.request_id.clone(),
    };
    // A refusal about the sender's own referral is audited (information governance wants to
    // see a cancellation naming the wrong person); nothing else is stored.
    let refuse = async |why: &str, issue: Issue| -> Result<Cancelled, SubmitError> {
        store
            .append_audit(&[event(
                false,
                format!("referral cancellation refused: {why}"),
            )])
            .await?;
        Err(SubmitError::Invalid(issue.into()))
    };
    if record.service.as_deref() != Some(c.service.as_str()) {
        return refuse("addressed to another service", Issue::error(IssueType::BusinessRule, "Bundle.entry[0].resource.destination", "the referral this cancels was sent to another service: address the cancellation to the service the referral went to")).await;
    }
    let patient = crate::access::patient_of_referral(store, &id).await?;
    let referral_person = patient
        .as_ref()
        .and_then(|p| crate::fhir::resource::identifier_value(p, systems::NHS_NUMBER));
    if referral_person.is_none() || referral_person != c.nhs_number.as_deref() {
        return refuse("its Patient is not the referral's", Issue::error(IssueType::BusinessRule, "Bundle.entry", "the cancellation's Patient is not the person the referral is about: a cancellation carries the referral's Patient")).await;
    }
    let task = workflow_task(store, &id).await?;
    let mut tx = Transaction {
        referral: id.clone(),
        ..Transaction::default()
    };
    let mut withdrawn = sr.clone();
    withdrawn["status"] = json!(status);
    let sr_version = super::stored_version(&sr).unwrap_or(1);
    if workflow::stage_of(task.as_ref()) == Stage::Withdrawn {
        if sr["status"] == status {
            store
                .append_audit(&[event(
                    true,
                    format!("referral cancellation ({status}) resent: nothing changed"),
                )])
                .await?;
            let resource = (wanted == Return::Representation).then_some(sr);
            return Ok(Cancelled {
                service_request_id: id,
                withdrawal: c.withdrawal,
                newly: false,
                resource,
            });
        }
        // Already withdrawn, now said to have been sent in error (or the reverse): the status
        // is corrected; the workflow stays withdrawn.
        tx.updates.push((withdrawn, sr_version));
        tx.audit.push(audit::audit_event(&event(
            true,
            format!("referral cancellation corrected by the referrer to {status}"),
        )));
    } else {
        let parties = super::workflow::workflow_parties(&sr, &record);
        let change = match workflow::apply(
            &parties,
            task.as_ref(),
            &Action::Withdraw(c.withdrawal),
            "",
            now,
        ) {
            Ok(change) => change,
            Err(issues) => {
                let issue = issues
                    .rebased("ServiceRequest.status", "Bundle.entry[0].resource.focus")
                    .into_vec()
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| {
                        Issue::general(IssueType::BusinessRule, "the referral cannot be cancelled")
                    });
                return refuse("the referral is not current", issue).await;
            }
        };
        tx.updates.push((withdrawn, sr_version));
        match &task {
            Some(stored) => tx
                .updates
                .push((change.task, super::stored_version(stored).unwrap_or(1))),
            None => {
                let mut task = change.task;
                task["id"] = json!(uuid::Uuid::now_v7().to_string());
                crate::fhir::resource::claim_uk_core(&mut task);
                tx.creates.push(task);
            }
        }
        tx.audit.push(audit::audit_event(&event(
            true,
            format!("referral cancelled by the referrer ({status})"),
        )));
    }
    let stored = store.transact(tx).await?;
    let resource = if wanted == Return::Representation {
        stored
            .into_iter()
            .find(|r| r["resourceType"] == "ServiceRequest")
    } else {
        None
    };
    Ok(Cancelled {
        service_request_id: id,
        withdrawal: c.withdrawal,
        newly: true,
        resource,
    })
}

/// Takes a validated referral in: only from the practice it names, only with the person's
/// consent to its going to the service, checked against the service's eligibility criteria, and
/// with the decision audited in the same transaction as the referral. A refused referral stores
/// nothing about the person.
async fn accept(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    submission: Submission,
    consent_expression: &'static str,
    criterion_expression: admission::CriterionExpression,
) -> Result<Stored, SubmitError> {
    let service = match &submission.kind {
        SubmissionKind::Referral { service } => service
            .split_once('|')
            .and_then(|(_, id)| config.service(id)),
        SubmissionKind::FitNote(_) => None,
    };
    let admission = admission::referral(
        &submission,
        service,
        caller.principal,
        caller.request_id.clone(),
        chrono::Utc::now(),
        criterion_expression,
        consent_expression,
    );
    submit(store, caller, submission, admission, consent_expression).await
}

/// The stored ServiceRequest, when the submitter wants it back.
async fn read_back(
    store: &dyn Store,
    stored: Stored,
    wanted: Return,
) -> Result<Referral, SubmitError> {
    let resource = if wanted == Return::Representation {
        let id = &stored.focus_id;
        let resource = store
            .read("ServiceRequest", id)
            .await?
            .ok_or_else(|| SubmitError::NotReadBack(format!("ServiceRequest/{id}")))?;
        Some(resource)
    } else {
        None
    };
    Ok(Referral { stored, resource })
}
