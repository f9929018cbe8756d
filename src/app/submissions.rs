//! What every submission (a referral, a fit note) goes through once it is validated: only from
//! the practice it names, only synthetic people from a test client, stored under its admission
//! (consent, eligibility, the fit-note rules, checked in the store's transaction), and audited —
//! a resend as such, a refusal without the person (nothing about them is stored).

use super::Caller;
use crate::audit::{Event, Kind};
use crate::caller::{Principal, Role};
use crate::fhir::Issues;
use crate::intake::admission::Admission;
use crate::intake::{Sender, Submission};
use crate::store::{AuditTrail, Store, StoreError, Stored};

/// Why a submission was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Not the format at all, or breaks basic FHIR rules.
    #[error("malformed submission")]
    Malformed(Issues),
    /// Well-formed, but breaks the format's rules or a rule over the person's history.
    #[error("invalid submission")]
    Invalid(Issues),
    #[error(
        "a referrer sends {what}s only as itself: this {what} comes from {from} but the access token is for {token_for}"
    )]
    NotTheSender {
        what: &'static str,
        from: String,
        token_for: String,
    },
    #[error(
        "this client is in the test tenant: it may send only synthetic people, with NHS numbers from the 999 test range; this {what} is not rejected for its content, but it cannot be sent from a test client"
    )]
    RealPersonFromTestTenant { what: &'static str },
    /// The person's consent does not let it go to the service; the issues say where to record it.
    #[error("refused by consent")]
    ConsentRefused(Issues),
    /// A message about a referral (a cancellation) names none the sender sent.
    #[error("no referral from this sender has the ServiceRequest identifier '{0}'")]
    UnknownReferral(String),
    /// Stored, but the stored resource (`Type/id`) could not be read back to answer with.
    #[error("stored {0} cannot be read back")]
    NotReadBack(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A referrer sends (and amends and cancels) only as itself: `sender` (`system|value`), the
/// organisation a `what` names, must be the caller's own, and the caller a referrer of the kind
/// `role` the `what` says it is (a GP practice, or a referrer of another kind). The one rule
/// for every intake path and for `$validate`.
pub fn sends_as(
    principal: &Principal,
    role: Role,
    sender: &str,
    what: &'static str,
) -> Result<(), SubmitError> {
    if !principal.role.refers() || principal.role != role || sender != principal.organisation {
        return Err(SubmitError::NotTheSender {
            what,
            from: crate::fhir::identifiers::value_part(sender).to_string(),
            token_for: crate::fhir::identifiers::value_part(&principal.organisation).to_string(),
        });
    }
    Ok(())
}

/// The sender rules a submission meets before anything about the person is weighed (also what
/// `$validate` applies for its caller): a referrer sends only as itself, and a test-tenant client
/// only synthetic people, with NHS numbers from the 999 test range.
pub fn may_send(principal: &Principal, submission: &Submission) -> Result<(), SubmitError> {
    let what = submission.kind.noun();
    match &submission.sender {
        Sender::Organisation { role, organisation } => {
            sends_as(principal, *role, organisation, what)?
        }
        // Only the self-referral form sends as the person (`app::self_referral`), never a
        // client system.
        Sender::Person => {
            return Err(SubmitError::NotTheSender {
                what,
                from: "the person".into(),
                token_for: principal.organisation_code().to_string(),
            });
        }
    }
    if principal.test_tenant {
        let real = submission
            .entries
            .iter()
            .filter(|e| e.resource_type == "Patient")
            .find_map(|e| {
                crate::fhir::resource::identifier_value(
                    &e.resource,
                    crate::fhir::systems::NHS_NUMBER,
                )
                .filter(|n| !n.starts_with("999"))
            });
        if real.is_some() {
            return Err(SubmitError::RealPersonFromTestTenant { what });
        }
    }
    Ok(())
}

pub async fn submit(
    store: &dyn Store,
    caller: &Caller<'_>,
    submission: Submission,
    admission: Admission,
    consent_expression: &str,
) -> Result<Stored, SubmitError> {
    may_send(caller.principal, &submission)?;
    store_submission(
        store,
        Some(caller.principal),
        caller.request_id.clone(),
        submission,
        admission,
        consent_expression,
    )
    .await
}

/// Stores a submission whose sender was checked ([`may_send`] for a client; the form's own
/// checks for a person, `principal` none), under `admission`: a resend audited as such, a
/// refusal audited without the person.
pub async fn store_submission(
    store: &dyn Store,
    principal: Option<&Principal>,
    request_id: Option<String>,
    submission: Submission,
    admission: Admission,
    consent_expression: &str,
) -> Result<Stored, SubmitError> {
    let what = submission.kind.noun();
    let key = submission.key.clone();
    let focus_type = submission.kind.focus_type();
    let mut event = Event {
        kind: Kind::Intake,
        principal,
        patient: None,
        entities: Vec::new(),
        decision: None,
        permitted: true,
        description: String::new(),
        at: chrono::Utc::now(),
        request_id,
    };
    match store.submit(submission, Some(admission)).await {
        Ok(stored) if stored.created => Ok(stored),
        Ok(stored) => {
            // A resend stores nothing; the decision that let it in was recorded with it.
            event.entities = vec![format!("{focus_type}/{}", stored.focus_id)];
            event.description = format!("{what} resent: already stored, nothing new stored");
            store.append_audit(&[event]).await?;
            Ok(stored)
        }
        Err(StoreError::Refused(decision)) => {
            event.decision = Some(&decision);
            event.permitted = false;
            event.description = format!(
                "{what} {} from {} refused: {}",
                key.value, key.namespace, decision.reason
            );
            store.append_audit(&[event]).await?;
            Err(SubmitError::ConsentRefused(
                crate::intake::admission::intake_refusal(
                    consent_expression,
                    &decision,
                    principal.is_some_and(|p| p.role == crate::caller::Role::Practice),
                ),
            ))
        }
        Err(StoreError::Rejected(issues)) => {
            event.permitted = false;
            event.description = format!(
                "{what} {} from {} refused: {}",
                key.value,
                key.namespace,
                issues
                    .iter()
                    .map(|i| i.diagnostics.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            store.append_audit(&[event]).await?;
            Err(SubmitError::Invalid(issues))
        }
        Err(e) => Err(e.into()),
    }
}
