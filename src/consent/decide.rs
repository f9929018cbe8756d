//! The one consent decision. Pure: the caller loads the person's consents and overrides, and
//! records the answer as an AuditEvent.
//!
//! Rules, in order:
//! 1. A consent takes part when it is `active` (an agreement or a refusal), `inactive` (an
//!    agreement the person withdrew) or `rejected` (a "no" recorded as such); a provision only
//!    within its period.
//! 2. A nested provision applies only inside its parent's scope (its criteria narrow the parent's).
//! 3. Within one consent, a matching deny beats a matching permit.
//! 4. Across consents, the person's most recent decision about the question governs (see
//!    `ConsentRecord::decided_at`); at the same time, a refusal beats an agreement. A withdrawal
//!    or a "no" refuses whatever it decided (withdrawing an agreement never lifts a refusal
//!    nested in it).
//! 5. An agreement recorded by its own recipient (a service for itself, a practice for itself)
//!    never undoes the person's refusal or withdrawal: only a new agreement recorded by another
//!    party to the person's care does.
//! 6. Disclosure to an employer is permitted only by a provision naming the specific document.
//! 7. With no matching permit the answer is deny (default deny).
//! 8. A refusal (never a missing document approval) can be overridden by an override granted by
//!    information governance and in force, for the same recipient organisation and data class
//!    (see [`super::overrides`]).

use crate::caller::{Principal, Role};
use chrono::{DateTime, Utc};

use super::model::{
    Action, ActorRule, Code, ConsentRecord, ConsentStatus, DataClass, OrgId, Party, Provision,
    ProvisionType, Purpose, RecipientClass,
};
use super::overrides::{Override, covering_grant};

/// Who would receive the information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub class: RecipientClass,
    /// `system|value` of the receiving organisation, when known.
    pub organisation: Option<OrgId>,
}

impl Recipient {
    /// The caller as a recipient of a person's information, for consent decisions
    /// (practices and services; information governance receives no one's records).
    pub fn of(caller: &Principal) -> Option<Recipient> {
        Some(Recipient {
            class: Self::class_of(caller.role)?,
            organisation: Some(caller.organisation.clone()),
        })
    }

    /// The recipient class a client of `role` is: a practice the referring practice, another
    /// referrer the referrer (an employer the employer, whom rule 6 holds to documents the
    /// person approved), a service the work-and-health service; none for the roles that
    /// receive no one's records.
    pub fn class_of(role: Role) -> Option<RecipientClass> {
        Some(match role {
            Role::Practice => RecipientClass::ReferringPractice,
            Role::TalkingTherapies
            | Role::Physiotherapy
            | Role::SecondaryCare
            | Role::VoluntarySector => RecipientClass::Referrer,
            Role::Employer => RecipientClass::Employer,
            Role::Service => RecipientClass::WorkHealthService,
            Role::InformationGovernance | Role::Commissioner | Role::Operations => return None,
        })
    }

    /// The recipient a letter addressed to `organisation` (`system|value`) reaches: the
    /// referring practice by its ODS code, a referrer of another kind (or an employer) in its
    /// own identifier system; none for an identifier no rule can attribute.
    pub fn addressed(organisation: &str) -> Option<Recipient> {
        let (system, value) = organisation.split_once('|')?;
        let party = Party::from_identifier(system, value)?;
        Some(Recipient {
            class: party.class,
            organisation: Some(party.organisation),
        })
    }

    /// Whether `party` is this recipient: the same class, and the same organisation (a
    /// recipient named by class alone is every organisation of the class).
    pub fn is(&self, party: &Party) -> bool {
        self.class == party.class
            && self
                .organisation
                .as_ref()
                .is_none_or(|org| *org == party.organisation)
    }
}

/// The question put to the decision function.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub recipient: Recipient,
    pub action: Action,
    pub purpose: Purpose,
    pub class: DataClass,
    pub at: DateTime<Utc>,
    /// The document to be disclosed (`Type/id`), for disclosures of one document.
    pub document: Option<String>,
}

impl Question {
    /// May the service disclose its outcomes for the person to the organisation that referred
    /// them, `referrer` (`system|value`: a practice, or a referrer of another kind)? What the
    /// outbox asks before a letter's outcomes go with it, and what the consent-coverage report
    /// counts as "feedback". An organisation no rule can attribute is asked about as a practice
    /// by that identifier, which no consent names: it is refused.
    pub fn outcomes_to(referrer: &str, at: DateTime<Utc>) -> Question {
        Question {
            recipient: Recipient::addressed(referrer).unwrap_or(Recipient {
                class: RecipientClass::ReferringPractice,
                organisation: Some(referrer.to_string()),
            }),
            action: Action::Disclose,
            purpose: Purpose::Treatment,
            class: DataClass::Outcome,
            at,
            document: None,
        }
    }

    /// May the person's referral data be disclosed, pseudonymised, for evaluation (research)?
    /// The question the evaluation export asks, and the consent-coverage report counts.
    pub fn evaluation(at: DateTime<Utc>) -> Question {
        Question {
            recipient: Recipient {
                class: RecipientClass::Evaluation,
                organisation: None,
            },
            action: Action::Disclose,
            purpose: Purpose::Research,
            class: DataClass::Referral,
            at,
            document: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Permit,
    Deny,
}

/// What decided the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// An active consent's permit provision.
    Permitted { consent: String },
    /// An active consent's deny provision.
    Refused { consent: String },
    /// An agreement the person withdrew, or a "no" they gave, covering the question.
    Withdrawn { consent: String },
    /// No active consent covers the question.
    NoConsent,
    /// A consent permits the recipient, but not this document: an employer needs the person's
    /// approval of the specific document.
    DocumentNotApproved { consent: String },
    /// A refusal, acted against under an override.
    Overridden {
        consent: String,
        override_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    pub basis: Basis,
    /// Plain-language reasons, suitable for an OperationOutcome or an audit record.
    pub reason: String,
    /// The purpose the question was asked for, so the decision's record can say it.
    pub purpose: Purpose,
}

impl Decision {
    pub fn permitted(&self) -> bool {
        self.effect == Effect::Permit
    }

    /// The Consent (`Consent/id`) that decided, if one did.
    pub fn consent(&self) -> Option<&str> {
        match &self.basis {
            Basis::Permitted { consent }
            | Basis::Refused { consent }
            | Basis::Withdrawn { consent }
            | Basis::DocumentNotApproved { consent }
            | Basis::Overridden { consent, .. } => Some(consent),
            Basis::NoConsent => None,
        }
    }

    pub fn override_id(&self) -> Option<&str> {
        match &self.basis {
            Basis::Overridden { override_id, .. } => Some(override_id),
            _ => None,
        }
    }

    /// Whether the person refused or withdrew what was asked (not merely never agreed).
    pub fn refused(&self) -> bool {
        matches!(
            self.basis,
            Basis::Refused { .. } | Basis::Withdrawn { .. } | Basis::Overridden { .. }
        )
    }
}

/// What one consent says about a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stance {
    // Ordered so that, at the same time, a refusal outranks an agreement.
    PermitWithoutDocument,
    Permit,
    Withdrawn,
    Deny,
}

impl Stance {
    fn refuses(self) -> bool {
        matches!(self, Stance::Withdrawn | Stance::Deny)
    }
}

/// What `consent` says about `question`, if anything.
fn stance(consent: &ConsentRecord, question: &Question) -> Option<Stance> {
    let mut found = Found::default();
    walk(&consent.provision, question, &mut found);
    match consent.status {
        ConsentStatus::Active if found.deny => Some(Stance::Deny),
        ConsentStatus::Active if found.permit => Some(Stance::Permit),
        ConsentStatus::Active if found.permit_without_document => {
            Some(Stance::PermitWithoutDocument)
        }
        // A withdrawn agreement, or a recorded "no", refuses what it would have decided:
        // withdrawing an agreement never lifts a refusal nested in it.
        ConsentStatus::Inactive | ConsentStatus::Rejected
            if found.permit || found.permit_without_document || found.deny =>
        {
            Some(Stance::Withdrawn)
        }
        _ => None,
    }
}

/// Decides `question` against the person's `consents` and any `overrides`.
pub fn decide(consents: &[ConsentRecord], overrides: &[Override], question: &Question) -> Decision {
    let mut said: Vec<(&ConsentRecord, Stance)> = consents
        .iter()
        .filter_map(|c| Some((c, stance(c, question)?)))
        .collect();
    // Rule 5: once the person has refused, an agreement its recipient recorded for itself counts
    // for nothing; nor does one an employer recorded, whoever it names: an employer says the
    // person agreed to be referred, and that never undoes a refusal the person gave someone
    // else (however the employer dates it).
    if said.iter().any(|(_, s)| s.refuses()) {
        said.retain(|(c, s)| {
            s.refuses()
                || !c.recorded_by.as_ref().is_some_and(|by| {
                    question.recipient.is(by) || by.class == RecipientClass::Employer
                })
        });
    }
    // Rule 4: the most recent decision governs; at the same time a refusal, then the first listed.
    let governing = said
        .iter()
        .enumerate()
        .max_by(|(i, (a, sa)), (j, (b, sb))| {
            a.decided_at
                .cmp(&b.decided_at)
                .then(sa.cmp(sb))
                .then(j.cmp(i))
        })
        .map(|(_, g)| *g);
    let what = describe(question);
    let Some((consent, stance)) = governing else {
        return Decision {
            purpose: question.purpose,
            effect: Effect::Deny,
            reason: format!("no active consent permits {what}"),
            basis: Basis::NoConsent,
        };
    };
    let reference = consent.reference.clone();
    match stance {
        Stance::Deny | Stance::Withdrawn => {
            let verb = if stance == Stance::Deny {
                "refuses"
            } else {
                "was withdrawn or declined, and so refuses"
            };
            if let Some((o, grant)) = overrides
                .iter()
                .find_map(|o| covering_grant(o, question).map(|g| (o, g)))
            {
                return Decision {
                    purpose: question.purpose,
                    effect: Effect::Permit,
                    reason: format!(
                        "{reference} {verb} {what}; permitted under override {} ({}) until {}",
                        o.id,
                        o.reason.code(),
                        grant.until.to_rfc3339()
                    ),
                    basis: Basis::Overridden {
                        consent: reference,
                        override_id: o.id.clone(),
                    },
                };
            }
            Decision {
                purpose: question.purpose,
                effect: Effect::Deny,
                reason: format!("{reference} {verb} {what}"),
                basis: if stance == Stance::Deny {
                    Basis::Refused { consent: reference }
                } else {
                    Basis::Withdrawn { consent: reference }
                },
            }
        }
        Stance::Permit => Decision {
            purpose: question.purpose,
            effect: Effect::Permit,
            reason: format!("{reference} permits {what}"),
            basis: Basis::Permitted { consent: reference },
        },
        Stance::PermitWithoutDocument => Decision {
            purpose: question.purpose,
            effect: Effect::Deny,
            reason: format!(
                "{reference} permits sharing with this recipient, but the person has not approved {} for them: an employer receives only documents the person has approved",
                question.document.as_deref().unwrap_or("this document")
            ),
            basis: Basis::DocumentNotApproved { consent: reference },
        },
    }
}

#[derive(Default)]
struct Found {
    permit: bool,
    deny: bool,
    /// A permit that would match but for the document an employer disclosure requires.
    permit_without_document: bool,
}

fn walk(p: &Provision, q: &Question, found: &mut Found) {
    if !matches_criteria(p, q) {
        return;
    }
    let needs_document =
        q.recipient.class == RecipientClass::Employer && q.action == Action::Disclose;
    let document_ok = match &q.document {
        Some(doc) => p.documents.is_empty() || p.documents.iter().any(|d| d == doc),
        None => p.documents.is_empty(),
    };
    if document_ok {
        match p.kind {
            Some(ProvisionType::Deny) => found.deny = true,
            Some(ProvisionType::Permit) if needs_document && p.documents.is_empty() => {
                found.permit_without_document = true
            }
            Some(ProvisionType::Permit) => found.permit = true,
            None => {}
        }
        for child in &p.children {
            walk(child, q, found);
        }
    }
}

fn matches_criteria(p: &Provision, q: &Question) -> bool {
    p.period.contains(q.at)
        && any_or_empty(&p.actors, |a| actor_matches(a, &q.recipient))
        && any_or_empty(&p.actions, |a| *a == q.action)
        && any_or_empty(&p.purposes, |x| *x == q.purpose)
        && any_or_empty(&p.classes, |c| *c == q.class)
}

fn any_or_empty<T>(list: &[T], pred: impl Fn(&T) -> bool) -> bool {
    list.is_empty() || list.iter().any(pred)
}

fn actor_matches(rule: &ActorRule, recipient: &Recipient) -> bool {
    rule.class == recipient.class
        && match (&rule.organisation, &recipient.organisation) {
            (None, _) => true,
            (Some(wanted), Some(actual)) => wanted == actual,
            (Some(_), None) => false,
        }
}

fn describe(q: &Question) -> String {
    let to = match &q.recipient.organisation {
        Some(org) => format!("{} {}", q.recipient.class.code(), org),
        None => q.recipient.class.code().to_string(),
    };
    format!(
        "{} of {} to {} for {}",
        q.action.code(),
        q.class.code(),
        to,
        q.purpose.code()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::model::{OverrideReason, Period};
    use crate::consent::overrides::{Agent, Grant, OverrideState};
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    const WHS: &str = "https://fhir.work-health-gateway.org/Id/service|sheffield-whs";
    const WORKWELL: &str =
        "https://fhir.work-health-gateway.org/Id/service|workwell-south-tyneside";

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
    }

    fn question(class: RecipientClass, org: Option<&str>, data: DataClass) -> Question {
        Question {
            recipient: Recipient {
                class,
                organisation: org.map(str::to_string),
            },
            action: Action::Access,
            purpose: Purpose::Treatment,
            class: data,
            at: t(10),
            document: None,
        }
    }

    fn consent(id: &str, status: ConsentStatus, provision: Provision) -> ConsentRecord {
        ConsentRecord {
            reference: format!("Consent/{id}"),
            status,
            provision,
            decided_at: None,
            recorded_by: None,
        }
    }

    /// A consent decided on day `day`, recorded by `by`.
    fn decided(
        id: &str,
        status: ConsentStatus,
        provision: Provision,
        day: u32,
        by: Option<Party>,
    ) -> ConsentRecord {
        ConsentRecord {
            decided_at: Some(t(day)),
            recorded_by: by,
            ..consent(id, status, provision)
        }
    }

    fn deny_service(org: &str) -> Provision {
        Provision {
            kind: Some(ProvisionType::Deny),
            actors: vec![ActorRule {
                class: RecipientClass::WorkHealthService,
                organisation: Some(org.into()),
            }],
            ..Provision::default()
        }
    }

    fn service_party(org: &str) -> Party {
        Party {
            class: RecipientClass::WorkHealthService,
            organisation: org.into(),
        }
    }

    fn practice_party() -> Party {
        Party {
            class: RecipientClass::ReferringPractice,
            organisation: "https://fhir.nhs.uk/Id/ods-organization-code|C88901".into(),
        }
    }

    fn whs_referral() -> Question {
        Question {
            at: t(20),
            ..question(
                RecipientClass::WorkHealthService,
                Some(WHS),
                DataClass::Referral,
            )
        }
    }

    #[test]
    fn the_most_recent_decision_governs() {
        let agreed = decided(
            "a",
            ConsentStatus::Active,
            permit_service(WHS, &[]),
            1,
            Some(practice_party()),
        );
        let refused = decided(
            "r",
            ConsentStatus::Active,
            deny_service(WHS),
            2,
            Some(practice_party()),
        );
        let agreed_again = decided(
            "b",
            ConsentStatus::Active,
            permit_service(WHS, &[]),
            3,
            Some(practice_party()),
        );
        let q = whs_referral();
        let d = decide(&[agreed.clone(), refused.clone()], &[], &q);
        assert_eq!(
            d.basis,
            Basis::Refused {
                consent: "Consent/r".into()
            }
        );
        let d = decide(&[agreed, refused, agreed_again], &[], &q);
        assert_eq!(
            d.basis,
            Basis::Permitted {
                consent: "Consent/b".into()
            },
            "a new agreement recorded by the practice undoes the refusal"
        );
    }

    #[test]
    fn a_later_no_outranks_an_earlier_yes() {
        // A referral whose consent says "no" (a rejected Consent) after an earlier agreement.
        let agreed = decided(
            "a",
            ConsentStatus::Active,
            permit_service(WHS, &[]),
            1,
            Some(practice_party()),
        );
        let no = decided(
            "n",
            ConsentStatus::Rejected,
            permit_service(WHS, &[]),
            2,
            Some(practice_party()),
        );
        let d = decide(&[agreed, no], &[], &whs_referral());
        assert_eq!(
            d.basis,
            Basis::Withdrawn {
                consent: "Consent/n".into()
            }
        );
        assert!(!d.permitted());
    }

    #[test]
    fn a_withdrawal_outranks_every_earlier_agreement_it_covers() {
        let first = decided(
            "a",
            ConsentStatus::Active,
            permit_service(WHS, &[]),
            1,
            Some(practice_party()),
        );
        let withdrawn = decided(
            "w",
            ConsentStatus::Inactive,
            permit_service(WHS, &[]),
            5,
            Some(practice_party()),
        );
        let d = decide(&[first.clone(), withdrawn.clone()], &[], &whs_referral());
        assert_eq!(
            d.basis,
            Basis::Withdrawn {
                consent: "Consent/w".into()
            }
        );
        // A withdrawal covers only what it would have permitted.
        let diagnosis_only = decided(
            "w",
            ConsentStatus::Inactive,
            permit_service(WHS, &[DataClass::Diagnosis]),
            5,
            None,
        );
        assert!(decide(&[first, diagnosis_only], &[], &whs_referral()).permitted());
    }

    #[test]
    fn a_recipient_never_undoes_a_refusal_by_agreeing_for_itself() {
        let refused = decided(
            "r",
            ConsentStatus::Active,
            deny_service(WHS),
            2,
            Some(practice_party()),
        );
        let self_granted = decided(
            "s",
            ConsentStatus::Active,
            permit_service(WHS, &[]),
            3,
            Some(service_party(WHS)),
        );
        let d = decide(
            &[refused.clone(), self_granted.clone()],
            &[],
            &whs_referral(),
        );
        assert_eq!(
            d.basis,
            Basis::Refused {
                consent: "Consent/r".into()
            }
        );
        // Without a refusal on record, the same agreement counts (e.g. one the adviser recorded
        // at first contact for an onward recipient is judged the same way).
        assert!(decide(std::slice::from_ref(&self_granted), &[], &whs_referral()).permitted());
        // Another service's own agreement is not this service's.
        let other = decided(
            "o",
            ConsentStatus::Active,
            permit_service(WHS, &[]),
            3,
            Some(service_party(WORKWELL)),
        );
        assert!(decide(&[refused, other], &[], &whs_referral()).permitted());
    }

    #[test]
    fn an_employer_saying_the_person_agreed_never_undoes_their_refusal() {
        let employer = Party {
            class: RecipientClass::Employer,
            organisation: "https://fhir.work-health-gateway.org/Id/employer|E1234".into(),
        };
        let refused = decided(
            "r",
            ConsentStatus::Active,
            deny_service(WHS),
            2,
            Some(practice_party()),
        );
        // Dated after the refusal (as an employer may date it): still counts for nothing.
        let employer_says = decided(
            "e",
            ConsentStatus::Active,
            permit_service(WHS, &[]),
            5,
            Some(employer),
        );
        let d = decide(
            &[refused.clone(), employer_says.clone()],
            &[],
            &whs_referral(),
        );
        assert_eq!(
            d.basis,
            Basis::Refused {
                consent: "Consent/r".into()
            }
        );
        // With no refusal on record it is the person's agreement to the employer's referral.
        assert!(decide(std::slice::from_ref(&employer_says), &[], &whs_referral()).permitted());
        // The person agreeing later through their practice does lift it.
        let agreed_again = decided(
            "p",
            ConsentStatus::Active,
            permit_service(WHS, &[]),
            6,
            Some(practice_party()),
        );
        assert!(
            decide(
                &[refused, employer_says, agreed_again],
                &[],
                &whs_referral()
            )
            .permitted()
        );
    }

    #[test]
    fn at_the_same_time_a_refusal_wins_and_an_undated_decision_is_oldest() {
        let agreed = decided(
            "a",
            ConsentStatus::Active,
            permit_service(WHS, &[]),
            4,
            None,
        );
        let refused = decided("r", ConsentStatus::Active, deny_service(WHS), 4, None);
        assert!(!decide(&[agreed.clone(), refused], &[], &whs_referral()).permitted());
        let undated_refusal = consent("u", ConsentStatus::Active, deny_service(WHS));
        assert!(decide(&[undated_refusal, agreed], &[], &whs_referral()).permitted());
    }

    fn permit_service(org: &str, classes: &[DataClass]) -> Provision {
        Provision {
            kind: Some(ProvisionType::Permit),
            actors: vec![ActorRule {
                class: RecipientClass::WorkHealthService,
                organisation: Some(org.into()),
            }],
            classes: classes.to_vec(),
            ..Provision::default()
        }
    }

    #[test]
    fn default_is_deny() {
        let d = decide(
            &[],
            &[],
            &question(
                RecipientClass::WorkHealthService,
                Some(WHS),
                DataClass::Referral,
            ),
        );
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(d.basis, Basis::NoConsent);
        assert!(
            d.reason
                .contains("no active consent permits access of referral")
        );
    }

    #[test]
    fn permit_names_the_deciding_consent() {
        let c = consent(
            "a",
            ConsentStatus::Active,
            permit_service(WHS, &[DataClass::Referral]),
        );
        let d = decide(
            &[c],
            &[],
            &question(
                RecipientClass::WorkHealthService,
                Some(WHS),
                DataClass::Referral,
            ),
        );
        assert!(d.permitted());
        assert_eq!(d.consent(), Some("Consent/a"));
    }

    #[test]
    fn each_criterion_narrows() {
        let c = [consent(
            "a",
            ConsentStatus::Active,
            permit_service(WHS, &[DataClass::Referral]),
        )];
        let q = question(
            RecipientClass::WorkHealthService,
            Some(WHS),
            DataClass::Referral,
        );
        assert!(decide(&c, &[], &q).permitted());
        let other_service = Question {
            recipient: Recipient {
                class: RecipientClass::WorkHealthService,
                organisation: Some(WORKWELL.into()),
            },
            ..q.clone()
        };
        assert!(!decide(&c, &[], &other_service).permitted());
        let fit_notes = Question {
            class: DataClass::FitNote,
            ..q.clone()
        };
        assert!(
            !decide(&c, &[], &fit_notes).permitted(),
            "fit notes hidden unless covered"
        );
        let employer = question(RecipientClass::Employer, None, DataClass::Referral);
        assert!(!decide(&c, &[], &employer).permitted());
        let unknown_org = Question {
            recipient: Recipient {
                class: RecipientClass::WorkHealthService,
                organisation: None,
            },
            ..q.clone()
        };
        assert!(!decide(&c, &[], &unknown_org).permitted());
    }

    #[test]
    fn only_active_consents_count() {
        for status in [
            ConsentStatus::Inactive,
            ConsentStatus::Rejected,
            ConsentStatus::Draft,
            ConsentStatus::Proposed,
            ConsentStatus::EnteredInError,
        ] {
            let c = [consent("a", status, permit_service(WHS, &[]))];
            let q = question(
                RecipientClass::WorkHealthService,
                Some(WHS),
                DataClass::Referral,
            );
            assert!(!decide(&c, &[], &q).permitted(), "{status:?}");
        }
    }

    #[test]
    fn period_bounds() {
        let mut p = permit_service(WHS, &[]);
        p.period = Period {
            start: Some(t(5)),
            end: Some(t(10)),
        };
        let c = [consent("a", ConsentStatus::Active, p)];
        let mut q = question(
            RecipientClass::WorkHealthService,
            Some(WHS),
            DataClass::Referral,
        );
        q.at = t(5);
        assert!(decide(&c, &[], &q).permitted(), "start is inclusive");
        q.at = t(10);
        assert!(!decide(&c, &[], &q).permitted(), "end is exclusive");
        q.at = t(4);
        assert!(!decide(&c, &[], &q).permitted(), "not yet");
    }

    #[test]
    fn nested_deny_overrides_within_its_parent() {
        let mut p = permit_service(WHS, &[]);
        p.children.push(Provision {
            kind: Some(ProvisionType::Deny),
            classes: vec![DataClass::Diagnosis],
            ..Provision::default()
        });
        let c = [consent("a", ConsentStatus::Active, p)];
        let referral = question(
            RecipientClass::WorkHealthService,
            Some(WHS),
            DataClass::Referral,
        );
        assert!(decide(&c, &[], &referral).permitted());
        let diagnosis = question(
            RecipientClass::WorkHealthService,
            Some(WHS),
            DataClass::Diagnosis,
        );
        let d = decide(&c, &[], &diagnosis);
        assert_eq!(
            d.basis,
            Basis::Refused {
                consent: "Consent/a".into()
            }
        );
        // The nested deny is scoped to its parent: another service is not refused by it, only
        // not permitted.
        let other = question(
            RecipientClass::WorkHealthService,
            Some(WORKWELL),
            DataClass::Diagnosis,
        );
        assert_eq!(decide(&c, &[], &other).basis, Basis::NoConsent);
    }

    #[test]
    fn a_separate_deny_consent_withdraws_a_permit() {
        let permit = consent("a", ConsentStatus::Active, permit_service(WHS, &[]));
        let deny = consent(
            "b",
            ConsentStatus::Active,
            Provision {
                kind: Some(ProvisionType::Deny),
                actors: vec![ActorRule {
                    class: RecipientClass::WorkHealthService,
                    organisation: None,
                }],
                ..Provision::default()
            },
        );
        let q = question(
            RecipientClass::WorkHealthService,
            Some(WHS),
            DataClass::Referral,
        );
        let d = decide(&[permit, deny], &[], &q);
        assert_eq!(
            d.basis,
            Basis::Refused {
                consent: "Consent/b".into()
            }
        );
        assert!(d.reason.contains("Consent/b refuses access of referral"));
    }

    #[test]
    fn employer_disclosure_needs_the_specific_document() {
        let mut p = Provision {
            kind: Some(ProvisionType::Permit),
            actors: vec![ActorRule {
                class: RecipientClass::Employer,
                organisation: None,
            }],
            classes: vec![DataClass::AdviserLetter],
            ..Provision::default()
        };
        let general = [consent("a", ConsentStatus::Active, p.clone())];
        let mut q = question(RecipientClass::Employer, None, DataClass::AdviserLetter);
        q.action = Action::Disclose;
        q.document = Some("DocumentReference/1".into());
        let d = decide(&general, &[], &q);
        assert!(
            matches!(d.basis, Basis::DocumentNotApproved { .. }),
            "{d:?}"
        );
        p.documents = vec!["DocumentReference/1".into()];
        let approved = [consent("b", ConsentStatus::Active, p)];
        assert!(decide(&approved, &[], &q).permitted());
        q.document = Some("DocumentReference/2".into());
        assert!(
            !decide(&approved, &[], &q).permitted(),
            "approval is per document"
        );
        q.document = None;
        assert!(!decide(&approved, &[], &q).permitted());
    }

    #[test]
    fn override_permits_against_a_deny_until_it_expires() {
        let deny = [consent(
            "a",
            ConsentStatus::Active,
            Provision {
                kind: Some(ProvisionType::Deny),
                actors: vec![ActorRule {
                    class: RecipientClass::Employer,
                    organisation: None,
                }],
                ..Provision::default()
            },
        )];
        const EMPLOYER: &str = "https://fhir.nhs.uk/Id/ods-organization-code|X12345";
        let ig = Agent {
            client: "information-governance:IG1".into(),
            organisation: "https://fhir.work-health-gateway.org/Id/organisation|IG1".into(),
        };
        let grant = Grant {
            by: ig,
            at: t(9),
            until: t(11),
            note: "risk to others outweighs the refusal".into(),
        };
        let mut o = Override {
            id: "o1".into(),
            patient_id: "p1".into(),
            recipient: RecipientClass::Employer,
            organisation: EMPLOYER.into(),
            classes: vec![DataClass::AdviserLetter],
            reason: OverrideReason::RiskToOthers,
            justification: "Falls asleep operating site gates on night shifts.".into(),
            hours: 48,
            requested_by: Agent {
                client: "service:sheffield-whs".into(),
                organisation: WHS.into(),
            },
            requested_at: t(8),
            state: OverrideState::Granted(grant.clone()),
            review: None,
        };
        let mut q = question(
            RecipientClass::Employer,
            Some(EMPLOYER),
            DataClass::AdviserLetter,
        );
        q.action = Action::Disclose;
        let d = decide(&deny, std::slice::from_ref(&o), &q);
        assert!(d.permitted());
        assert_eq!(d.override_id(), Some("o1"));
        assert_eq!(d.consent(), Some("Consent/a"));
        assert!(
            d.reason.contains("until 2026-03-11T12:00:00+00:00"),
            "{}",
            d.reason
        );
        q.at = t(11);
        assert!(
            !decide(&deny, std::slice::from_ref(&o), &q).permitted(),
            "expired"
        );
        q.at = t(10);
        let mut other_employer = q.clone();
        other_employer.recipient.organisation = None;
        assert!(
            !decide(&deny, std::slice::from_ref(&o), &other_employer).permitted(),
            "only the organisation named"
        );
        q.class = DataClass::Diagnosis;
        assert!(
            !decide(&deny, std::slice::from_ref(&o), &q).permitted(),
            "other data class"
        );
        q.class = DataClass::AdviserLetter;
        for state in [
            OverrideState::Requested,
            OverrideState::Ended { grant, at: t(10) },
        ] {
            o.state = state;
            let d = decide(&deny, std::slice::from_ref(&o), &q);
            assert_eq!(
                d.basis,
                Basis::Refused {
                    consent: "Consent/a".into()
                },
                "{:?}",
                o.state
            );
        }
    }

    // Property tests over arbitrary consents and questions.

    fn any_recipient_class() -> impl Strategy<Value = RecipientClass> {
        prop::sample::select(RecipientClass::ALL)
    }
    fn any_data_class() -> impl Strategy<Value = DataClass> {
        prop::sample::select(DataClass::ALL)
    }
    fn any_action() -> impl Strategy<Value = Action> {
        prop::sample::select(Action::ALL)
    }
    fn any_org() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop::sample::select(vec![
            WHS.to_string(),
            WORKWELL.to_string(),
        ]))
    }
    fn any_period() -> impl Strategy<Value = Period> {
        (prop::option::of(1u32..28), prop::option::of(1u32..28)).prop_map(|(s, e)| Period {
            start: s.map(t),
            end: e.map(t),
        })
    }
    fn any_leaf() -> impl Strategy<Value = Provision> {
        (
            prop::bool::ANY,
            any_period(),
            prop::collection::vec((any_recipient_class(), any_org()), 0..3),
            prop::collection::vec(any_action(), 0..3),
            prop::collection::vec(any_data_class(), 0..3),
        )
            .prop_map(|(permit, period, actors, actions, classes)| Provision {
                kind: Some(if permit {
                    ProvisionType::Permit
                } else {
                    ProvisionType::Deny
                }),
                period,
                actors: actors
                    .into_iter()
                    .map(|(class, organisation)| ActorRule {
                        class,
                        organisation,
                    })
                    .collect(),
                actions,
                classes,
                ..Provision::default()
            })
    }
    fn any_provision() -> impl Strategy<Value = Provision> {
        any_leaf().prop_recursive(3, 12, 3, |inner| {
            (any_leaf(), prop::collection::vec(inner, 0..3)).prop_map(|(mut p, children)| {
                p.children = children;
                p
            })
        })
    }
    fn any_question() -> impl Strategy<Value = Question> {
        (
            any_recipient_class(),
            any_org(),
            any_action(),
            any_data_class(),
            1u32..28,
        )
            .prop_map(|(class, organisation, action, data, day)| Question {
                recipient: Recipient {
                    class,
                    organisation,
                },
                action,
                purpose: Purpose::Treatment,
                class: data,
                at: t(day),
                document: None,
            })
    }

    /// Provisions as active consents, numbered in order.
    fn active(provisions: Vec<Provision>) -> Vec<ConsentRecord> {
        provisions
            .into_iter()
            .enumerate()
            .map(|(i, p)| consent(&i.to_string(), ConsentStatus::Active, p))
            .collect()
    }

    proptest! {
        #[test]
        fn a_deny_always_beats_a_permit(
            consents in prop::collection::vec(any_provision(), 0..4),
            q in any_question(),
        ) {
            let records = active(consents);
            // Add a deny that matches the question exactly: the answer must be deny.
            let mut with_deny = records.clone();
            with_deny.push(consent("deny", ConsentStatus::Active, Provision {
                kind: Some(ProvisionType::Deny),
                actors: vec![ActorRule { class: q.recipient.class, organisation: q.recipient.organisation.clone() }],
                classes: vec![q.class],
                ..Provision::default()
            }));
            let d = decide(&with_deny, &[], &q);
            prop_assert_eq!(d.effect, Effect::Deny);
            let refused = matches!(d.basis, Basis::Refused { .. });
            prop_assert!(refused);
        }

        #[test]
        fn an_expired_consent_never_permits(
            mut p in any_provision(),
            q in any_question(),
        ) {
            // The consent ended the day before the question.
            p.period = Period { start: None, end: Some(q.at - Duration::days(1)) };
            let d = decide(&[consent("old", ConsentStatus::Active, p)], &[], &q);
            prop_assert_eq!(d.effect, Effect::Deny);
        }

        #[test]
        fn a_withdrawn_or_declined_consent_never_permits(p in any_provision(), q in any_question()) {
            for status in [ConsentStatus::Inactive, ConsentStatus::Rejected] {
                let d = decide(&[consent("x", status, p.clone())], &[], &q);
                prop_assert!(!d.permitted());
                let refused_or_nothing = matches!(d.basis, Basis::Withdrawn { .. } | Basis::NoConsent);
                prop_assert!(refused_or_nothing);
            }
        }

        #[test]
        fn a_newer_matching_refusal_always_governs(
            consents in prop::collection::vec(any_provision(), 0..4),
            q in any_question(),
            by_recipient in any::<bool>(),
        ) {
            // Whatever was agreed before (by anyone), a refusal dated after it governs.
            let by = by_recipient.then(|| Party { class: q.recipient.class, organisation: q.recipient.organisation.clone().unwrap_or_default() });
            let mut records: Vec<ConsentRecord> = active(consents).into_iter().map(|mut c| { c.decided_at = Some(t(1)); c.recorded_by = by.clone(); c }).collect();
            records.push(ConsentRecord { decided_at: Some(t(2)), ..consent("deny", ConsentStatus::Active, Provision {
                kind: Some(ProvisionType::Deny),
                actors: vec![ActorRule { class: q.recipient.class, organisation: q.recipient.organisation.clone() }],
                classes: vec![q.class],
                ..Provision::default()
            }) });
            prop_assert!(!decide(&records, &[], &q).permitted());
        }

        #[test]
        fn order_of_consents_does_not_change_the_effect(
            consents in prop::collection::vec(any_provision(), 0..4),
            q in any_question(),
        ) {
            let records = active(consents);
            let mut reversed = records.clone();
            reversed.reverse();
            prop_assert_eq!(decide(&records, &[], &q).effect, decide(&reversed, &[], &q).effect);
        }

        #[test]
        fn a_permit_means_some_active_permit_provision_matched(
            consents in prop::collection::vec(any_provision(), 0..4),
            q in any_question(),
        ) {
            let records = active(consents);
            let d = decide(&records, &[], &q);
            if d.permitted() {
                let permitted = matches!(d.basis, Basis::Permitted { .. });
                prop_assert!(permitted);
                // Removing the deciding consent can only take the permit away or leave another.
                let decider = d.consent().unwrap().to_string();
                let rest: Vec<ConsentRecord> = records.iter().filter(|c| c.reference != decider).cloned().collect();
                let again = decide(&rest, &[], &q);
                prop_assert!(again.consent() != Some(decider.as_str()));
            }
        }
    }
}
