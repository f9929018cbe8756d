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
use crate::intake::{Submission, admission, bars, practice_referral};
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
    /// A referral amended by its referrer.
    Amended(Amended),
}

/// A referral its referrer amended.
#[derive(Debug)]
pub struct Amended {
    pub service_request_id: String,
    /// The ServiceRequest elements the amendment changed; none for a resend.
    pub changed: Vec<&'static str>,
    /// The ServiceRequest as it now stands, when [`Return::Representation`] was asked for.
    pub resource: Option<Value>,
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
        bars::BarsMessage::Amendment(a) => {
            Ok(Processed::Amended(amend(store, caller, a, wanted).await?))
        }
    }
}

/// The referral a message from its referrer names, found as [`own_referral`] finds it.
struct OwnReferral {
    id: String,
    sr: Value,
    record: crate::store::RecordParties,
}

/// The referral a referrer's message (a cancellation, an amendment) is about: only the practice
/// that sent it, naming it as it was sent (by its write-once key, so another practice's is never
/// found), addressed to the service it went to, about the same person. A refusal about the
/// sender's own referral is audited (information governance wants to see a message naming the
/// wrong person); nothing else is stored.
async fn own_referral(
    store: &dyn Store,
    caller: &Caller<'_>,
    named: &bars::NamedReferral,
    what: &'static str,
) -> Result<OwnReferral, SubmitError> {
    super::submissions::sends_as(caller.principal, Role::Practice, &named.practice, what)?;
    let unknown = || SubmitError::UnknownReferral(named.key.value.clone());
    let id = store.submitted(&named.key).await?.ok_or_else(unknown)?;
    let sr = store
        .read("ServiceRequest", &id)
        .await?
        .ok_or_else(unknown)?;
    let record = store
        .records_of("ServiceRequest", &id)
        .await?
        .into_iter()
        .find(|r| {
            r.record == format!("ServiceRequest/{id}")
                && r.practice.as_deref() == Some(caller.principal.organisation.as_str())
        })
        .ok_or_else(unknown)?;
    let found = OwnReferral { id, sr, record };
    if found.record.service.as_deref() != Some(named.service.as_str()) {
        return Err(refuse(store, caller, &found, what, "addressed to another service", Issue::error(IssueType::BusinessRule, "Bundle.entry[0].resource.destination", format!("the referral this {what} is about was sent to another service: address the {what} to the service the referral went to"))).await);
    }
    let patient = crate::access::patient_of_referral(store, &found.id).await?;
    let referral_person = patient
        .as_ref()
        .and_then(|p| crate::fhir::resource::identifier_value(p, systems::NHS_NUMBER));
    if referral_person.is_none() || referral_person != named.nhs_number.as_deref() {
        return Err(refuse(store, caller, &found, what, "its Patient is not the referral's", Issue::error(IssueType::BusinessRule, "Bundle.entry", format!("the {what}'s Patient is not the person the referral is about: a {what} carries the referral's Patient"))).await);
    }
    Ok(found)
}

/// The AuditEvent of a referrer's message about its referral.
fn referral_event<'p>(
    caller: &Caller<'p>,
    referral: &OwnReferral,
    permitted: bool,
    description: String,
    at: chrono::DateTime<Utc>,
) -> Event<'p> {
    Event {
        kind: Kind::Updated,
        principal: Some(caller.principal),
        patient: Some(format!("Patient/{}", referral.record.patient_id)),
        entities: vec![format!("ServiceRequest/{}", referral.id)],
        decision: None,
        permitted,
        description,
        at,
        request_id: caller.request_id.clone(),
    }
}

/// A refused message about the sender's own referral, audited; the error to answer with.
async fn refuse(
    store: &dyn Store,
    caller: &Caller<'_>,
    referral: &OwnReferral,
    what: &str,
    why: &str,
    issue: Issue,
) -> SubmitError {
    let event = referral_event(
        caller,
        referral,
        false,
        format!("referral {what} refused: {why}"),
        Utc::now(),
    );
    match store.append_audit(&[event]).await {
        Ok(()) => SubmitError::Invalid(issue.into()),
        Err(e) => e.into(),
    }
}

/// The referrer withdraws a referral it sent ([`own_referral`]), while it is current (BaRS: "The
/// Receiver must not process a cancellation request for a booking or referral which is not
/// current"). The ServiceRequest takes the cancellation's status and the workflow Task is
/// cancelled (business status `withdrawn`), with the AuditEvent, in one transaction: the service
/// sees it in its worklist, the practice in the response message. A resent cancellation changes
/// nothing.
async fn cancel(
    store: &dyn Store,
    caller: &Caller<'_>,
    c: bars::Cancellation,
    wanted: Return,
) -> Result<Cancelled, SubmitError> {
    let referral = own_referral(store, caller, &c.referral, "cancellation").await?;
    let now = Utc::now();
    let status = c.withdrawal.status();
    let event = |permitted: bool, description: String| {
        referral_event(caller, &referral, permitted, description, now)
    };
    let (id, sr, record) = (&referral.id, &referral.sr, &referral.record);
    let task = workflow_task(store, id).await?;
    let mut tx = Transaction {
        referral: id.clone(),
        ..Transaction::default()
    };
    let mut withdrawn = sr.clone();
    withdrawn["status"] = json!(status);
    let sr_version = super::stored_version(sr).unwrap_or(1);
    if workflow::stage_of(task.as_ref()) == Stage::Withdrawn {
        if sr["status"] == status {
            store
                .append_audit(&[event(
                    true,
                    format!("referral cancellation ({status}) resent: nothing changed"),
                )])
                .await?;
            let resource = (wanted == Return::Representation).then(|| sr.clone());
            return Ok(Cancelled {
                service_request_id: id.clone(),
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
        let parties = super::workflow::workflow_parties(sr, record);
        let change = match workflow::apply(
            &parties,
            task.as_ref(),
            &Action::Withdraw(c.withdrawal),
            "",
            now,
        ) {
            Ok(change) => change,
            Err(issues) => {
                let issue = first_issue(issues, "the referral cannot be cancelled");
                return Err(refuse(
                    store,
                    caller,
                    &referral,
                    "cancellation",
                    "the referral is not current",
                    issue,
                )
                .await);
            }
        };
        tx.updates.push((withdrawn, sr_version));
        push_task(&mut tx, task.as_ref(), change.task);
        tx.audit.push(audit::audit_event(&event(
            true,
            format!("referral cancelled by the referrer ({status})"),
        )));
    }
    let stored = store.transact(tx).await?;
    Ok(Cancelled {
        service_request_id: id.clone(),
        withdrawal: c.withdrawal,
        newly: true,
        resource: service_request_if(stored, wanted),
    })
}

/// What an amendment may change: what the ServiceRequest itself says of the referral. Who it is
/// about, who sent it, where it goes and what it is for are the referral itself (a change to them
/// is a cancellation and a new referral), and so are the resources it references.
const AMENDABLE: [&str; 11] = [
    "priority",
    "note",
    "reasonCode",
    "occurrenceDateTime",
    "occurrencePeriod",
    "occurrenceTiming",
    "patientInstruction",
    "orderDetail",
    "quantityQuantity",
    "asNeededBoolean",
    "asNeededCodeableConcept",
];

/// The ServiceRequest's references to other resources of the referral, compared by content.
/// (Who made it, `requester`, is a shared record another submission may restate since: the
/// sender is checked as the practice instead.)
const REFERENCED: [&str; 6] = [
    "basedOn",
    "encounter",
    "reasonReference",
    "supportingInfo",
    "specimen",
    "relevantHistory",
];

/// Records an amendment does not compare: shared ones that other submissions restate (the person,
/// organisations, practitioners, services), and the Consent, which changes by its own route
/// (`PUT /fhir/Consent/{id}`) and is read at every disclosure.
const NOT_COMPARED: [&str; 6] = [
    "Patient",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "HealthcareService",
    "Consent",
];

/// The referrer amends a referral it sent ([`own_referral`]): the referral restated whole with
/// reason `update` and its ServiceRequest active (BaRS: "'update' for an update"). What the
/// ServiceRequest says of the referral ([`AMENDABLE`]) takes the restated values, in a new
/// version; anything else restated differently is refused, saying to cancel and refer anew. The
/// workflow Task gets a note naming what changed, so the service sees it in its worklist, and the
/// practice is answered with the response message; one transaction with the AuditEvent. Only a
/// current referral (not declined, discharged or withdrawn) is amended; a resend changes nothing.
async fn amend(
    store: &dyn Store,
    caller: &Caller<'_>,
    a: bars::Amendment,
    wanted: Return,
) -> Result<Amended, SubmitError> {
    let referral = own_referral(store, caller, &a.referral, "amendment").await?;
    let now = Utc::now();
    // Only a current referral is amended, whatever the amendment says: the workflow's rule,
    // asked before what changed is known (apply keeps it again when the note is written).
    let task = workflow_task(store, &referral.id).await?;
    let gate = Action::Amend(workflow::Amendment {
        note: String::new(),
    });
    if let Err(why) = workflow::allowed(task.as_ref(), &gate) {
        let issue = Issue::error(
            IssueType::BusinessRule,
            "Bundle.entry[0].resource.focus",
            why,
        );
        return Err(refuse(
            store,
            caller,
            &referral,
            "amendment",
            "the referral is not current",
            issue,
        )
        .await);
    }
    let restated = a
        .submission
        .entries
        .iter()
        .find(|e| e.full_url == a.submission.focus)
        .map(|e| e.resource.clone())
        .ok_or_else(|| {
            SubmitError::Invalid(
                Issue::general(IssueType::Invalid, "the amendment has no ServiceRequest").into(),
            )
        })?;
    // The rest of the referral, restated: each resource the ServiceRequest references must be
    // as stored.
    let by_url: std::collections::HashMap<&str, &Value> = a
        .submission
        .entries
        .iter()
        .map(|e| (e.full_url.as_str(), &e.resource))
        .collect();
    let sent_kind = |r: &str| -> String {
        by_url
            .get(r)
            .and_then(|v| v["resourceType"].as_str())
            .map_or_else(|| stored_kind(r), str::to_string)
    };
    for field in REFERENCED {
        let sent: Vec<Option<Value>> = references(&restated[field])
            .into_iter()
            .filter(|r| !NOT_COMPARED.contains(&sent_kind(r).as_str()))
            .map(|r| by_url.get(r.as_str()).map(|v| fingerprint(v, &sent_kind)))
            .collect();
        let mut held = Vec::new();
        for r in references(&referral.sr[field])
            .into_iter()
            .filter(|r| !NOT_COMPARED.contains(&stored_kind(r).as_str()))
        {
            held.push(match r.split_once('/') {
                Some((t, id)) => store
                    .read(t, id)
                    .await?
                    .map(|v| fingerprint(&v, &stored_kind)),
                None => None,
            });
        }
        if sent != held {
            let issue = Issue::error(
                IssueType::BusinessRule,
                format!("Bundle.entry.resource.ofType(ServiceRequest).{field}"),
                format!(
                    "an amendment changes what the ServiceRequest says (priority, notes, reason codes, dates, instructions); what its {field} names differs from the referral as sent: cancel the referral (status 'revoked') and send it anew"
                ),
            );
            return Err(refuse(
                store,
                caller,
                &referral,
                "amendment",
                "it changes more than the ServiceRequest says",
                issue,
            )
            .await);
        }
    }
    let identity = |sr: &Value, kind_of: &dyn Fn(&str) -> String| {
        let mut sr = fingerprint(sr, kind_of);
        if let Some(o) = sr.as_object_mut() {
            for f in AMENDABLE.iter().chain(&REFERENCED).chain(&[
                "status",
                "authoredOn",
                "extension",
                "subject",
                "performer",
                "requester",
            ]) {
                o.remove(*f);
            }
        }
        sr
    };
    if identity(&restated, &sent_kind) != identity(&referral.sr, &stored_kind) {
        let issue = Issue::error(
            IssueType::BusinessRule,
            "Bundle.entry.resource.ofType(ServiceRequest)",
            "an amendment changes what the ServiceRequest says (priority, notes, reason codes, dates, instructions), never what the referral is (its identifier, code, category, intent): cancel the referral (status 'revoked') and send it anew",
        );
        return Err(refuse(
            store,
            caller,
            &referral,
            "amendment",
            "it changes what the referral is",
            issue,
        )
        .await);
    }
    // Compared as content (a note's author, say, is named by the message's entry and by the
    // store's id): what is unchanged keeps its stored form.
    let changed: Vec<&'static str> = AMENDABLE
        .into_iter()
        .filter(|f| {
            restated.get(*f).map(|v| fingerprint(v, &sent_kind))
                != referral.sr.get(*f).map(|v| fingerprint(v, &stored_kind))
        })
        .collect();
    // What changes is taken as sent, so it may name no other resource: references are the
    // referral's own, never the message's to set.
    if let Some(field) = changed
        .iter()
        .find(|f| restated[**f].to_string().contains("\"reference\""))
    {
        let issue = Issue::error(
            IssueType::BusinessRule,
            format!("Bundle.entry.resource.ofType(ServiceRequest).{field}"),
            format!(
                "an amended {field} names no other resource: leave its references out, or cancel the referral and send it anew"
            ),
        );
        return Err(refuse(
            store,
            caller,
            &referral,
            "amendment",
            "an amended element names another resource",
            issue,
        )
        .await);
    }
    let event = |description: String| referral_event(caller, &referral, true, description, now);
    if changed.is_empty() {
        store
            .append_audit(&[event("referral amendment resent: nothing changed".into())])
            .await?;
        return Ok(Amended {
            service_request_id: referral.id.clone(),
            changed,
            resource: (wanted == Return::Representation).then(|| referral.sr.clone()),
        });
    }
    let (id, sr, record) = (&referral.id, &referral.sr, &referral.record);
    let parties = super::workflow::workflow_parties(sr, record);
    let what = changed.join(", ");
    let change = match workflow::apply(
        &parties,
        task.as_ref(),
        &Action::Amend(workflow::Amendment {
            note: format!("Amended by the referrer: {what}"),
        }),
        "",
        now,
    ) {
        Ok(change) => change,
        Err(issues) => {
            let issue = first_issue(issues, "the referral cannot be amended");
            return Err(refuse(
                store,
                caller,
                &referral,
                "amendment",
                "the referral is not current",
                issue,
            )
            .await);
        }
    };
    let mut amended = sr.clone();
    if let (Some(o), Some(r)) = (amended.as_object_mut(), restated.as_object()) {
        for f in &changed {
            match r.get(*f) {
                Some(v) => o.insert(f.to_string(), v.clone()),
                None => o.remove(*f),
            };
        }
        // The narrative told what the ServiceRequest said before: it goes rather than mislead.
        o.remove("text");
    }
    let mut tx = Transaction {
        referral: id.clone(),
        ..Transaction::default()
    };
    tx.updates
        .push((amended, super::stored_version(sr).unwrap_or(1)));
    push_task(&mut tx, task.as_ref(), change.task);
    tx.audit.push(audit::audit_event(&event(format!(
        "referral amended by the referrer ({what})"
    ))));
    let stored = store.transact(tx).await?;
    Ok(Amended {
        service_request_id: id.clone(),
        changed,
        resource: service_request_if(stored, wanted),
    })
}

/// The `reference` strings of a Reference or a list of them.
fn references(value: &Value) -> Vec<String> {
    let one = |v: &Value| v["reference"].as_str().map(str::to_string);
    match value {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        Value::Object(_) => one(value).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A resource's content as a comparison sees it: without its id, meta and narrative, and with
/// each reference as the type it names (a message names by `urn:uuid`, the store by `Type/id`).
fn fingerprint(resource: &Value, kind_of: &dyn Fn(&str) -> String) -> Value {
    fn walk(v: &mut Value, kind_of: &dyn Fn(&str) -> String) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("reference") {
                    let kind = kind_of(r);
                    o.insert("reference".into(), Value::String(kind));
                }
                o.values_mut().for_each(|v| walk(v, kind_of));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, kind_of)),
            _ => {}
        }
    }
    let mut v = resource.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
        o.remove("meta");
        o.remove("text");
    }
    walk(&mut v, kind_of);
    v
}

/// The type a stored reference (`Type/id`) names.
fn stored_kind(reference: &str) -> String {
    reference.split('/').next().unwrap_or_default().to_string()
}

/// The workflow's first issue, placed on the message's ServiceRequest.
fn first_issue(issues: crate::fhir::Issues, otherwise: &str) -> Issue {
    issues
        .rebased("ServiceRequest.status", "Bundle.entry[0].resource.focus")
        .into_vec()
        .into_iter()
        .next()
        .unwrap_or_else(|| Issue::general(IssueType::BusinessRule, otherwise))
}

/// The workflow Task as a change leaves it: an update of the stored one, or the first one.
fn push_task(tx: &mut Transaction, stored: Option<&Value>, task: Value) {
    match stored {
        Some(stored) => tx
            .updates
            .push((task, super::stored_version(stored).unwrap_or(1))),
        None => {
            let mut task = task;
            task["id"] = json!(uuid::Uuid::now_v7().to_string());
            crate::fhir::resource::claim_uk_core(&mut task);
            tx.creates.push(task);
        }
    }
}

/// The ServiceRequest a transaction stored, when the sender asked for it back.
fn service_request_if(stored: Vec<Value>, wanted: Return) -> Option<Value> {
    (wanted == Return::Representation)
        .then(|| {
            stored
                .into_iter()
                .find(|r| r["resourceType"] == "ServiceRequest")
        })
        .flatten()
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
    let service = submission.target_service(&config.services);
    let admission = admission::referral(
        &submission,
        service,
        Some(caller.principal),
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
