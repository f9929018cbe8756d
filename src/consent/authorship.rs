//! Who may record or change which Consent: the one rule every path that writes a Consent uses
//! (`POST`/`PUT /fhir/Consent`, the Consents a practice referral or a BaRS message brings).
//! Pure: the caller names the party acting and loads the person's stored consents.
//!
//! - Anyone who is party to the person's care may record a refusal, and withdraw an agreement.
//! - An agreement (a permit) must name its recipients, and only a party allowed to grant a
//!   recipient class may name it: a practice refers to a service and records agreement to
//!   feedback and to evaluation at referral; a service records the person's agreement to
//!   feedback and to onward sharing (employer, other services, union, DWP). Nobody grants a
//!   service access to a referral but the referrer. Agreements between parties follow the
//!   person's care: a practice grants only a service it referred them to, a service only
//!   feedback to a practice that referred them to it, each named by organisation.
//! - A recipient never undoes the person's refusal or withdrawal by agreeing for itself (see
//!   rule 5 of [`super::decide`]); recording such an agreement is refused outright.
//! - A stored Consent changes only by being withdrawn: an agreement may become `inactive`, or
//!   `entered-in-error` by the party that recorded it; a refusal stays until a new agreement is
//!   recorded; nothing else about a Consent changes, its date included (record a new one).

use chrono::{DateTime, Duration, Utc};

use super::decide::{Question, Recipient, decide};
use serde_json::Value;

use super::model::{
    Action, ActorRule, Code, ConsentRecord, ConsentStatus, DataClass, OrgId, Party, Provision,
    ProvisionType, Purpose, RecipientClass, read_consent,
};
use crate::fhir::outcome::{IssueType, Issues};

/// One of the person's referrals: the practice that sent it and the service it went to, each
/// `system|value`. The relationships agreements between parties follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareRelation {
    /// The organisation that referred the person (a practice, or a referrer of another kind,
    /// its identifier's system saying which: `Party::from_identifier`); none when the person
    /// referred themselves: no organisation is party to that referral.
    pub referrer: Option<OrgId>,
    pub service: OrgId,
}

/// How far ahead of the gateway's clock a decision may be dated (clock skew between systems).
const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// The recipient classes `recorder` may grant access to.
pub fn grantable(recorder: RecipientClass) -> &'static [RecipientClass] {
    use RecipientClass::*;
    match recorder {
        ReferringPractice => &[WorkHealthService, ReferringPractice, Evaluation],
        // A referrer of another kind records, as a practice does, the person's agreement to
        // the referral, to feedback to itself and to evaluation.
        Referrer => &[WorkHealthService, Referrer, Evaluation],
        // An employer records only the person's agreement to the referral it makes and to
        // evaluation: what reaches an employer is never its own to grant (rule 6 of `decide`).
        Employer => &[WorkHealthService, Evaluation],
        WorkHealthService => &[
            ReferringPractice,
            Referrer,
            Employer,
            OtherService,
            UnionRepresentative,
            Dwp,
        ],
        // Recipients outside the gateway's tenancy record nothing.
        OtherService | UnionRepresentative | Evaluation | Dwp => &[],
    }
}

/// What a Consent is recorded against: the person's stored consents and their referrals.
#[derive(Debug, Clone, Copy)]
pub struct Person<'a> {
    pub consents: &'a [ConsentRecord],
    pub referrals: &'a [CareRelation],
}

/// Whether `recorder` may record `consent` for `person`, at `now`. Every problem is reported at
/// its element. Any status may be recorded: only an active agreement widens anything (a
/// withdrawn or declined one refuses).
pub fn may_record(
    recorder: &Party,
    consent: &ConsentRecord,
    person: Person<'_>,
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
        person,
        now,
        issues,
    );
}

fn check_permits(
    recorder: &Party,
    p: &Provision,
    path: &str,
    person: Person<'_>,
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
            if let Err(why) = follows_care(recorder, actor, person.referrals) {
                issues.error(IssueType::Forbidden, format!("{at}.reference"), why);
                continue;
            }
            let recipient = Recipient {
                class: actor.class,
                organisation: actor.organisation.clone(),
            };
            let names_itself = recipient.is(recorder)
                || (actor.organisation.is_none() && actor.class == recorder.class);
            if names_itself && refused_for(recorder, p, person.consents, now) {
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
            person,
            now,
            issues,
        );
    }
}

/// An agreement between parties follows the person's care: a referrer (a practice, or another
/// kind) grants a service it referred them to, or feedback to itself; a service grants
/// feedback to a referrer that referred them to it. Each is named by organisation. Recipients
/// outside the gateway (employers, other services, DWP…) are the granting party's to name.
fn follows_care(
    recorder: &Party,
    actor: &ActorRule,
    referrals: &[CareRelation],
) -> Result<(), String> {
    use RecipientClass::{Employer, Referrer, ReferringPractice, WorkHealthService};
    let named = |what: &str| {
        format!(
            "name the {what} by its identifier: an agreement between parties to the person's care is with one organisation"
        )
    };
    let me = party_name(recorder.class);
    match (recorder.class, actor.class) {
        (ReferringPractice | Referrer | Employer, WorkHealthService) => {
            let Some(service) = &actor.organisation else {
                return Err(named("service"));
            };
            if referrals.iter().any(|r| {
                r.referrer.as_ref() == Some(&recorder.organisation) && r.service == *service
            }) {
                Ok(())
            } else {
                Err(format!(
                    "a {me} records agreement only for a service it referred the person to, and it has not referred them to {service}"
                ))
            }
        }
        (ReferringPractice, ReferringPractice) | (Referrer, Referrer) => {
            match &actor.organisation {
                Some(o) if *o == recorder.organisation => Ok(()),
                Some(_) => Err(format!(
                    "a {me} records agreement to feedback for itself, not for another {me}"
                )),
                None => Err(named(me)),
            }
        }
        (WorkHealthService, ReferringPractice | Referrer) => {
            let what = party_name(actor.class);
            let Some(referrer) = &actor.organisation else {
                return Err(named(what));
            };
            if referrals.iter().any(|r| {
                r.service == recorder.organisation && r.referrer.as_ref() == Some(referrer)
            }) {
                Ok(())
            } else {
                Err(format!(
                    "a service records agreement to feedback only for a {what} that referred the person to it, and {referrer} did not"
                ))
            }
        }
        _ => Ok(()),
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

/// What a change to a stored Consent does, once allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amendment {
    /// The same Consent again: nothing to store (a re-sent withdrawal must not re-date it).
    Unchanged,
    /// A new status: the agreement withdrawn, or marked entered in error by its recorder.
    Status(ConsentStatus),
}

/// Whether `by` (a party to the person's care: the caller checks that) may change the stored
/// Consent `stored` (as stored, with `id` and `meta`) to `changed`. Only the status changes,
/// and only by withdrawing an agreement; only its recorder marks one entered in error.
pub fn may_amend(
    by: &Party,
    stored: &Value,
    changed: &Value,
    issues: &mut Issues,
) -> Option<Amendment> {
    let Ok(before) = read_consent(stored) else {
        issues.error(
            IssueType::BusinessRule,
            "Consent",
            "this Consent does not read as the gateway's consent model and decides nothing: it cannot be changed",
        );
        return None;
    };
    let Ok(after) = read_consent(changed) else {
        return None; // the caller reports the body's own problems
    };
    // Everything but the status (and what the gateway stamps) stays as recorded: the
    // provisions, who recorded it, and when the person decided.
    let rest = |c: &Value| {
        let mut c = c.clone();
        if let Some(o) = c.as_object_mut() {
            for k in ["id", "meta", "status"] {
                o.remove(k);
            }
        }
        c
    };
    if rest(stored) != rest(changed) {
        for (field, differs) in [
            ("Consent.provision", before.provision != after.provision),
            (
                "Consent.organization",
                stored["organization"] != changed["organization"],
            ),
            (
                "Consent.dateTime",
                stored["dateTime"] != changed["dateTime"],
            ),
        ] {
            if differs {
                issues.error(
                    IssueType::BusinessRule,
                    field,
                    "only a Consent's status changes (to withdraw it): its provisions, who recorded it and when the person decided stay as recorded. Record a new Consent instead",
                );
            }
        }
        if issues.is_empty() {
            issues.error(
                IssueType::BusinessRule,
                "Consent",
                "only a Consent's status changes (to withdraw it): send the stored Consent with its new status",
            );
        }
        return None;
    }
    use ConsentStatus::*;
    let agreement = before.provision.kind == Some(ProvisionType::Permit);
    let recorder = before.recorded_by.as_ref() == Some(by);
    match (before.status, after.status) {
        (a, b) if a == b => return Some(Amendment::Unchanged),
        // An employer is not party to the person's care: it withdraws only what it recorded
        // (the person's agreement to its own referral), never what the person told anyone else.
        (Active, Inactive | EnteredInError)
            if by.class == RecipientClass::Employer && !recorder =>
        {
            issues.error(
                IssueType::Forbidden,
                "Consent.status",
                "an employer changes only the Consents it recorded: the person withdraws any other through their practice or the service",
            )
        }
        (Active, Inactive) if agreement => {}
        (Active, EnteredInError) if agreement && recorder => {}
        (Active, EnteredInError) if agreement => issues.error(
            IssueType::Forbidden,
            "Consent.status",
            "only the party that recorded a Consent marks it entered in error: to record that the person withdrew it, set status inactive",
        ),
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
            "an agreement can only be withdrawn (status inactive)",
        ),
    }
    issues.is_empty().then_some(Amendment::Status(after.status))
}

fn party_name(class: RecipientClass) -> &'static str {
    match class {
        RecipientClass::ReferringPractice => "practice",
        RecipientClass::Referrer => "referrer",
        RecipientClass::Employer => "employer",
        RecipientClass::WorkHealthService => "work-and-health service",
        _ => "recipient",
    }
}

#[cfg(test)]
mod tests;
