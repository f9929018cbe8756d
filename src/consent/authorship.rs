//! Who may record or change which Consent: the one rule every path that writes a Consent uses
//! (`POST`/`PUT /fhir/Consent`, the Consents a practice referral or a BaRS message brings).
//! Pure: the caller names the party acting and loads the person's stored consents.
//!
//! - Anyone who is party to the person's care may record a refusal, and withdraw an agreement.
//! - An agreement (a permit) must name its recipients, and only a party allowed to grant a
//!   recipient class may name it: a practice refers to a service and records agreement to
//!   feedback and to evaluation at referral; a service records the person's agreement to
//!   feedback and to onward sharing (employer, other services, union, DWP). Nobody grants a
//!   service access to a referral but the referrer.
//! - A recipient never undoes the person's refusal or withdrawal by agreeing for itself (see
//!   rule 5 of [`super::decide`]); recording such an agreement is refused outright.
//! - A stored Consent changes only by being withdrawn: an agreement may become `inactive` (or
//!   `entered-in-error`); a refusal stays until a new agreement is recorded; nothing else about
//!   a Consent changes (record a new one instead).

use chrono::{DateTime, Duration, Utc};

use super::decide::{Question, Recipient, decide};
use super::model::{
    Action, Code, ConsentRecord, ConsentStatus, DataClass, Party, Provision, ProvisionType,
    Purpose, RecipientClass,
};
use crate::fhir::outcome::{IssueType, Issues};

/// How far ahead of the gateway's clock a decision may be dated (clock skew between systems).
const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// The recipient classes `recorder` may grant access to.
pub fn grantable(recorder: RecipientClass) -> &'static [RecipientClass] {
    use RecipientClass::*;
    match recorder {
        ReferringPractice => &[WorkHealthService, ReferringPractice, Evaluation],
        WorkHealthService => &[
            ReferringPractice,
            Employer,
            OtherService,
            UnionRepresentative,
            Dwp,
        ],
        // Recipients outside the gateway's tenancy record nothing.
        Employer | OtherService | UnionRepresentative | Evaluation | Dwp => &[],
    }
}

/// Whether `recorder` may record `consent` for the person whose stored consents are `stored`,
/// at `now`. Every problem is reported at its element. Any status may be recorded: only an
/// active agreement widens anything (a withdrawn or declined one refuses).
pub fn may_record(
    recorder: &Party,
    consent: &ConsentRecord,
    stored: &[ConsentRecord],
    now: DateTime<Utc>,
    issues: &mut Issues,
    at: &str,
) {
    if consent.decided_at.is_some_and(|t| t > now + MAX_CLOCK_SKEW) {
        issues.error(
            IssueType::Value,
            format!("{at}.dateTime"),
            "dateTime is in the future: it is when the person made the decision",
        );
    }
    if consent.status != ConsentStatus::Active {
        return; // a recorded "no" or a draft permits nothing
    }
    check_permits(
        recorder,
        &consent.provision,
        &format!("{at}.provision"),
        stored,
        now,
        issues,
    );
}

fn check_permits(
    recorder: &Party,
    p: &Provision,
    path: &str,
    stored: &[ConsentRecord],
    now: DateTime<Utc>,
    issues: &mut Issues,
) {
    if p.kind == Some(ProvisionType::Permit) {
        if p.actors.is_empty() {
            issues.error(
                IssueType::BusinessRule,
                format!("{path}.actor"),
                "an agreement must name who may receive the information (actor with a consent-recipient role): a permit for anyone is not a consent the person gave",
            );
        }
        for (i, actor) in p.actors.iter().enumerate() {
            let at = format!("{path}.actor[{i}]");
            if !grantable(recorder.class).contains(&actor.class) {
                issues.error(
                    IssueType::Forbidden,
                    format!("{at}.role"),
                    format!(
                        "a {} cannot record agreement for a {} to receive information (it may grant: {})",
                        party_name(recorder.class),
                        actor.class.code(),
                        grantable(recorder.class)
                            .iter()
                            .map(|c| c.code())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            }
            if actor.class == recorder.class
                && actor
                    .organisation
                    .as_ref()
                    .is_some_and(|o| *o != recorder.organisation)
            {
                issues.error(
                    IssueType::Forbidden,
                    format!("{at}.reference"),
                    format!(
                        "a {} records agreements for itself, not for another {}",
                        party_name(recorder.class),
                        party_name(recorder.class)
                    ),
                );
                continue;
            }
            let recipient = Recipient {
                class: actor.class,
                organisation: actor.organisation.clone(),
            };
            let names_itself = recipient.is(recorder)
                || (actor.organisation.is_none() && actor.class == recorder.class);
            if names_itself && refused_for(recorder, p, stored, now) {
                issues.error(
                    IssueType::Forbidden,
                    at.clone(),
                    "the person refused or withdrew this: a recipient cannot record a new agreement for itself. Another party to their care must record it with them",
                );
            }
        }
    }
    for (i, child) in p.children.iter().enumerate() {
        check_permits(
            recorder,
            child,
            &format!("{path}.provision[{i}]"),
            stored,
            now,
            issues,
        );
    }
}

/// Whether the person's stored consents refuse `recorder` anything `p` would grant it.
fn refused_for(
    recorder: &Party,
    p: &Provision,
    stored: &[ConsentRecord],
    now: DateTime<Utc>,
) -> bool {
    let classes = if p.classes.is_empty() {
        DataClass::ALL.to_vec()
    } else {
        p.classes.clone()
    };
    let actions = if p.actions.is_empty() {
        Action::ALL.to_vec()
    } else {
        p.actions.clone()
    };
    let purposes = if p.purposes.is_empty() {
        Purpose::ALL.to_vec()
    } else {
        p.purposes.clone()
    };
    classes.iter().any(|&class| {
        actions.iter().any(|&action| {
            purposes.iter().any(|&purpose| {
                decide(
                    stored,
                    &[],
                    &Question {
                        recipient: Recipient {
                            class: recorder.class,
                            organisation: Some(recorder.organisation.clone()),
                        },
                        action,
                        purpose,
                        class,
                        at: now,
                        document: None,
                    },
                )
                .refused()
            })
        })
    })
}

/// Whether a stored Consent may change from `stored` to `changed` (by any party to the person's
/// care: the caller checks that). Only the status changes, and only by withdrawing an agreement.
pub fn may_amend(stored: &ConsentRecord, changed: &ConsentRecord, issues: &mut Issues) {
    if changed.provision != stored.provision {
        issues.error(
            IssueType::BusinessRule,
            "Consent.provision",
            "a Consent's provisions cannot be changed: withdraw it (status inactive) and record a new Consent",
        );
    }
    if changed.recorded_by != stored.recorded_by {
        issues.error(
            IssueType::BusinessRule,
            "Consent.organization",
            "who recorded a Consent cannot be changed",
        );
    }
    use ConsentStatus::*;
    let agreement = stored.provision.kind == Some(ProvisionType::Permit);
    match (stored.status, changed.status) {
        (a, b) if a == b => {}
        (Active, Inactive | EnteredInError) if agreement => {}
        (Active, _) if !agreement => issues.error(
            IssueType::BusinessRule,
            "Consent.status",
            "a refusal stands until the person agrees again: record their new agreement as a new Consent",
        ),
        (Inactive | Rejected | EnteredInError, _) => issues.error(
            IssueType::BusinessRule,
            "Consent.status",
            "a withdrawn, declined or erroneous Consent cannot be made to permit again: record the person's new agreement as a new Consent",
        ),
        _ => issues.error(
            IssueType::BusinessRule,
            "Consent.status",
            "an agreement can only be withdrawn (status inactive) or marked entered-in-error",
        ),
    }
}

fn party_name(class: RecipientClass) -> &'static str {
    match class {
        RecipientClass::ReferringPractice => "practice",
        RecipientClass::WorkHealthService => "work-and-health service",
        _ => "recipient",
    }
}

#[cfg(test)]
mod tests;
