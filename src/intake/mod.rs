//! Referrals in: the practice JSON format and BaRS FHIR messages. Each path validates its input,
//! maps it into a FHIR transaction, and hands the store a [`Submission`].

pub mod admission;
pub mod bars;
pub mod bars_response;
pub mod fit_note;
pub mod fit_note_fhir;
pub mod mapping;
pub mod message_definition;
pub mod practice;
pub mod schema;
pub mod self_referral;
pub mod submission;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::fhir::{Issue, IssueType, Issues};
use crate::services::Service;
use submission::content_hash;

pub use submission::{Sender, Submission, SubmissionEntry, SubmissionKey, SubmissionKind};

/// What validation needs from outside the input: the time now, the services referrals may be
/// addressed to, and whether a BaRS message's implied direct-care Consent counts as the
/// person's agreement (`crate::config::Config::intake_now` gives the configured ones).
#[derive(Debug, Clone, Copy)]
pub struct IntakeContext<'a> {
    pub now: DateTime<Utc>,
    pub services: &'a [Service],
    pub bars_implied_direct_care: bool,
}

impl IntakeContext<'_> {
    /// The service with id `id`.
    pub fn service(&self, id: &str) -> Option<&Service> {
        crate::services::by_id(self.services, id)
    }
}

/// Validates a practice referral, maps it to a FHIR transaction and prepares its submission
/// (`transaction_bundle()` gives the transaction back). The same function
/// serves the HTTP API, the CLI and the benchmark.
pub fn practice_referral(value: &Value, ctx: &IntakeContext) -> Result<Submission, Issues> {
    let referral = practice::validate(value, ctx)?;
    let service = ctx.service(&referral.target_service).ok_or_else(|| {
        Issues::from(Issue::error(
            IssueType::NotFound,
            "targetService",
            "unknown service",
        ))
    })?;
    let bundle = crate::intake::mapping::referral_bundle(&referral, service);
    let sender = referral.sender();
    let key = SubmissionKey {
        namespace: sender.namespace(),
        value: referral.referral_id.clone(),
    };
    let practice = Sender::Organisation {
        role: sender.role,
        organisation: sender.organisation(),
    };
    let kind = SubmissionKind::Referral {
        service: format!(
            "{}|{}",
            crate::fhir::systems::service_identifier_system(),
            service.id
        ),
    };
    let submission = Submission::from_transaction(key, practice, kind, content_hash(value), bundle)
        .expect("the mapping emits a transaction with fullUrls and a ServiceRequest about its one Patient");
    Ok(submission)
}

/// Validates a practice fit note, maps it to a FHIR transaction and prepares its submission.
pub fn practice_fit_note(
    value: &Value,
    ctx: &IntakeContext,
) -> Result<(Submission, fit_note::FitNote), Issues> {
    let note = fit_note::validate(value, ctx)?;
    let system = crate::fhir::systems::practice_fit_note_id_system(&note.note.practice.ods_code);
    Ok((
        fit_note_submission(&note, &system, content_hash(value)),
        note,
    ))
}

/// Validates a fit-note Observation from a FHIR client (sent by practice `sender_ods`), checking
/// it by the same rules as the practice format, and prepares its submission. Problems point at the
/// Observation's elements.
pub fn fhir_fit_note(
    observation: &Value,
    sender_ods: &str,
    ctx: &IntakeContext,
) -> Result<(Submission, fit_note::FitNote), Issues> {
    let form = fit_note_fhir::practice_form(observation, sender_ods)?;
    let note = fit_note::validate(&form, ctx).map_err(fit_note_fhir::to_fhir_expressions)?;
    let (system, _) = fit_note_fhir::client_identifier(observation)
        .expect("practice_form requires an identifier");
    Ok((
        fit_note_submission(&note, &system, content_hash(observation)),
        note,
    ))
}

/// The submission of a checked fit note whose sender's id lives in identifier `system`.
fn fit_note_submission(note: &fit_note::FitNote, system: &str, hash: String) -> Submission {
    let ods = &note.note.practice.ods_code;
    let bundle = crate::intake::mapping::fit_note::fit_note_bundle(note, system);
    let key = SubmissionKey {
        namespace: format!("fit-note:{ods}|{system}"),
        value: note.note.fit_note_id.clone(),
    };
    let practice = Sender::practice(ods);
    let kind = SubmissionKind::FitNote(crate::fit_notes::FitNoteFacts {
        reference: String::new(), // the Observation's fullUrl, set below
        start: note.start,
        end: note.end,
        issued: note.note.issued_on,
        not_fit: note.not_fit(),
    });
    let mut submission = Submission::from_transaction(key, practice, kind, hash, bundle).expect(
        "the mapping emits a transaction with fullUrls and an Observation about its one Patient",
    );
    if let SubmissionKind::FitNote(facts) = &mut submission.kind {
        facts.reference = submission.focus.clone();
    }
    submission
}
