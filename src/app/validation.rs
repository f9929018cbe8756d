//! `$validate`: a resource checked as the gateway would check it on the way in, storing
//! nothing. The checks are intake's own (a BaRS message Bundle, a fit-note Observation, a
//! Consent), so what `$validate` accepts is what a submission would get past validation. A
//! referral is also checked against its service's eligibility criteria as far as it says
//! itself (a criterion it misses is an error where the service refuses such referrals, a
//! warning where it takes them marked); the person's stored records (consent, the fit notes
//! held) are weighed only by a real submission.

use serde_json::Value;

use super::consents;
use super::submissions::{SubmitError, may_send, sends_as};
use crate::caller::{Principal, Role};
use crate::config::Config;
use crate::fhir::resource::{json_rule_violations, parse_strict};
use crate::fhir::systems::profile;
use crate::fhir::{Issue, IssueType, Issues};
use crate::intake::{
    Submission, admission, bars, fhir_fit_note, practice_fit_note, practice_referral,
};

/// The profile the gateway checks a resource of `resource_type` against, if it has one.
pub fn profile_for(resource_type: &str) -> Option<String> {
    match resource_type {
        "Consent" => Some(profile::whg_consent()),
        "Observation" => Some(profile::whg_fit_note()),
        "Bundle" => Some("https://fhir.nhs.uk/StructureDefinition/BARSBundleMessage".to_string()),
        _ => None,
    }
}

/// What is wrong with `resource` (its JSON text `bytes`), posted to `[resource_type]/$validate`
/// by `principal`, checked against `wanted_profile` when one is named. Empty when valid.
pub fn validate(
    config: &Config,
    principal: &Principal,
    resource_type: &str,
    resource: &Value,
    bytes: &[u8],
    wanted_profile: Option<&str>,
) -> Issues {
    let mut issues = Issues::new();
    if resource["resourceType"] != resource_type {
        issues.error(
            IssueType::Invalid,
            "resourceType",
            format!("this is {resource_type}/$validate: send a {resource_type}"),
        );
        return issues;
    }
    let ours = profile_for(resource_type);
    if let Some(wanted) = wanted_profile
        && ours.as_deref() != Some(wanted.split('|').next().unwrap_or_default())
    {
        issues.error(
            IssueType::NotSupported,
            "profile",
            format!(
                "the gateway validates {resource_type} against {} only",
                ours.as_deref().unwrap_or("base FHIR R4")
            ),
        );
        return issues;
    }
    let mut breaches = Vec::new();
    json_rule_violations(resource, resource_type, &mut breaches);
    for (path, message) in breaches {
        issues.push(Issue::error(IssueType::Structure, path, message));
    }
    if let Err(message) = parse_strict(bytes) {
        issues.push(Issue::general(
            IssueType::Structure,
            format!("not a valid FHIR R4 {resource_type}: {message}"),
        ));
    }
    if !issues.is_empty() {
        return issues;
    }
    let ctx = config.intake_now();
    const SENDER: &str = "Bundle.entry.resource.where(resourceType='MessageHeader').sender";
    let found = match resource_type {
        "Bundle" => match bars::validate(bytes, resource, &ctx) {
            Ok(bars::BarsMessage::Referral(submission)) => {
                let mut found = sender_issues(principal, &submission, SENDER);
                found.extend(eligibility(
                    config,
                    &submission,
                    admission::bars_criterion_expression,
                ));
                found
            }
            Ok(bars::BarsMessage::Amendment(a)) => sender_issues(principal, &a.submission, SENDER),
            Ok(bars::BarsMessage::Cancellation(c)) => as_issues(
                sends_as(
                    principal,
                    Role::Practice,
                    &c.referral.practice,
                    "cancellation",
                ),
                SENDER,
            ),
            Err(bars::Rejection::Malformed(i) | bars::Rejection::Invalid(i)) => i,
        },
        "Observation" => match fhir_fit_note(resource, principal.organisation_code(), &ctx) {
            Ok((submission, _)) => sender_issues(principal, &submission, "Observation.subject"),
            Err(i) => i,
        },
        "Consent" => consents::validate(&config.services, principal, resource),
        _ => Issues::new(),
    };
    issues.extend(found);
    issues
}

/// The practice formats `POST /api/v1/…/$validate` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PracticeFormat {
    Referral,
    FitNote,
}

/// What is wrong with a practice-format body sent by `principal`, as intake would find it before
/// weighing the person's stored records (consent, eligibility and the DWP's duration rule are
/// weighed by a real submission only). Empty when valid.
pub fn validate_practice(
    config: &Config,
    principal: &Principal,
    format: PracticeFormat,
    body: &Value,
) -> Issues {
    let ctx = config.intake_now();
    let (submission, sender) = match format {
        PracticeFormat::Referral => (practice_referral(body, &ctx), "practice.odsCode"),
        PracticeFormat::FitNote => (
            practice_fit_note(body, &ctx).map(|(s, _)| s),
            "practice.odsCode",
        ),
    };
    match submission {
        Ok(submission) => {
            let mut found = sender_issues(principal, &submission, sender);
            if format == PracticeFormat::Referral {
                found.extend(eligibility(
                    config,
                    &submission,
                    admission::practice_criterion_expression,
                ));
            }
            found
        }
        Err(issues) => issues,
    }
}

/// The referral against its service's eligibility criteria, as it says them
/// ([`admission::eligibility_before_sending`]): a GP learns before sending which criterion the
/// person misses.
fn eligibility(
    config: &Config,
    submission: &Submission,
    expression: admission::CriterionExpression,
) -> Issues {
    submission
        .target_service(&config.services)
        .map(|service| {
            admission::eligibility_before_sending(
                submission,
                service,
                chrono::Utc::now().date_naive(),
                expression,
            )
        })
        .unwrap_or_default()
}

/// The sender rules ([`may_send`]) as issues of a `$validate` answer, at `expression`.
fn sender_issues(principal: &Principal, submission: &Submission, expression: &str) -> Issues {
    as_issues(may_send(principal, submission), expression)
}

/// A sender rule's refusal as a `$validate` issue: a real person from a test client at the
/// person's identifier, any other at `expression`.
fn as_issues(checked: Result<(), SubmitError>, expression: &str) -> Issues {
    let mut issues = Issues::new();
    match checked {
        Ok(()) => {}
        Err(e @ SubmitError::RealPersonFromTestTenant { .. }) => {
            issues.error(IssueType::Forbidden, "Patient.identifier", e.to_string());
        }
        Err(e) => issues.error(IssueType::Forbidden, expression, e.to_string()),
    }
    issues
}
