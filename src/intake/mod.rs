//! Referrals in: the practice JSON format and BaRS FHIR messages. Each path validates its input,
//! maps it into a FHIR transaction, and hands the store a [`ReferralSubmission`].

pub mod bars;
pub mod practice;
pub mod schema;
pub mod submission;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::Config;
use crate::fhir::{Issue, IssueType, Issues};
use submission::content_hash;

pub use submission::{Parties, ReferralSubmission, SubmissionEntry, SubmissionKey};

/// What validation needs from outside the input: the time now and the configured services.
#[derive(Debug, Clone, Copy)]
pub struct IntakeContext<'a> {
    pub now: DateTime<Utc>,
    pub config: &'a Config,
}

impl<'a> IntakeContext<'a> {
    /// Context for validating input received now.
    pub fn now(config: &'a Config) -> Self {
        IntakeContext {
            now: Utc::now(),
            config,
        }
    }
}

/// Validates a practice referral, maps it to a FHIR transaction and prepares its submission
/// (`transaction_bundle()` gives the transaction back). The same function
/// serves the HTTP API, the CLI and the benchmark.
pub fn practice_referral(value: &Value, ctx: &IntakeContext) -> Result<ReferralSubmission, Issues> {
    let referral = practice::validate(value, ctx)?;
    let service = ctx
        .config
        .service(&referral.target_service)
        .ok_or_else(|| {
            Issues::from(Issue::error(
                IssueType::NotFound,
                "targetService",
                "unknown service",
            ))
        })?;
    let bundle = crate::mapping::referral_bundle(&referral, service);
    let key = SubmissionKey {
        namespace: format!("practice:{}", referral.practice.ods_code),
        value: referral.referral_id.clone(),
    };
    let parties = Parties {
        practice: format!(
            "{}|{}",
            crate::fhir::systems::ODS_ORGANIZATION,
            referral.practice.ods_code
        ),
        service: format!(
            "{}|{}",
            crate::fhir::systems::service_identifier_system(),
            service.id
        ),
    };
    let submission =
        ReferralSubmission::from_transaction(key, parties, content_hash(value), bundle)
            .expect("the mapping emits a transaction with fullUrls and a ServiceRequest");
    Ok(submission)
}
