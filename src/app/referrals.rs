//! Submitting a referral: in the practice format, or as a BaRS `$process-message` Bundle.

use serde_json::Value;

use super::submissions::{SubmitError, submit};
use super::{Caller, Return};
use crate::config::Config;
use crate::intake::{Submission, SubmissionKind, admission, bars, practice_referral};
use crate::store::{Store, Stored};

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

/// A BaRS referral message (`bytes` as received, `bundle` parsed from them).
pub async fn process_message(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    bytes: &[u8],
    bundle: &Value,
    wanted: Return,
) -> Result<Referral, SubmitError> {
    let ctx = config.intake_now();
    let submission = bars::validate(bytes, bundle, &ctx).map_err(|r| match r {
        bars::Rejection::Malformed(issues) => SubmitError::Malformed(issues),
        bars::Rejection::Invalid(issues) => SubmitError::Invalid(issues),
    })?;
    let stored = accept(
        store,
        config,
        caller,
        submission,
        crate::intake::admission::BARS_CONSENT_EXPRESSION,
        admission::bars_criterion_expression,
    )
    .await?;
    read_back(store, stored, wanted).await
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
