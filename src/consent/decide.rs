//! The one consent decision. Pure: the caller loads the person's consents and overrides, and
//! records the answer as an AuditEvent.
//!
//! Rules, in order:
//! 1. Only `active` consents count, and a provision only within its period.
//! 2. A nested provision applies only inside its parent's scope (its criteria narrow the parent's).
//! 3. Any matching deny, at any depth of any consent, beats every permit.
//! 4. Disclosure to an employer is permitted only by a provision naming the specific document.
//! 5. With no matching permit the answer is deny (default deny).
//! 6. A deny (never a missing document approval) can be overridden by an override granted by
//!    information governance and in force, for the same recipient organisation and data class
//!    (see [`super::overrides`]).

use chrono::{DateTime, Utc};

use super::model::{
    Action, ActorRule, Code, ConsentRecord, ConsentStatus, DataClass, OrgId, Provision,
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
    /// No active consent covers the question.
    NoConsent,
    /// A consent permits the recipient, but not this document: an employer needs the person's
    /// approval of the specific document.
    DocumentNotApproved { consent: String },
    /// A deny, acted against under an override.
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
}

/// Decides `question` against the person's `consents` and any `overrides`.
pub fn decide(consents: &[ConsentRecord], overrides: &[Override], question: &Question) -> Decision {
    let mut deny: Option<&ConsentRecord> = None;
    let mut permit: Option<&ConsentRecord> = None;
    let mut permit_without_document: Option<&ConsentRecord> = None;
    for consent in consents
        .iter()
        .filter(|c| c.status == ConsentStatus::Active)
    {
        let mut found = Found::default();
        walk(&consent.provision, question, &mut found);
        if found.deny {
            deny = deny.or(Some(consent));
        }
        if found.permit {
            permit = permit.or(Some(consent));
        }
        if found.permit_without_document {
            permit_without_document = permit_without_document.or(Some(consent));
        }
    }
    let what = describe(question);
    if let Some(refusing) = deny {
        let consent = refusing.reference.clone();
        if let Some((o, grant)) = overrides
            .iter()
            .find_map(|o| covering_grant(o, question).map(|g| (o, g)))
        {
            return Decision {
                purpose: question.purpose,
                effect: Effect::Permit,
                reason: format!(
                    "{consent} refuses {what}; permitted under override {} ({}) until {}",
                    o.id,
                    o.reason.code(),
                    grant.until.to_rfc3339()
                ),
                basis: Basis::Overridden {
                    consent,
                    override_id: o.id.clone(),
                },
            };
        }
        return Decision {
            purpose: question.purpose,
            effect: Effect::Deny,
            reason: format!("{consent} refuses {what}"),
            basis: Basis::Refused { consent },
        };
    }
    if let Some(permitting) = permit {
        return Decision {
            purpose: question.purpose,
            effect: Effect::Permit,
            reason: format!("{} permits {what}", permitting.reference),
            basis: Basis::Permitted {
                consent: permitting.reference.clone(),
            },
        };
    }
    if let Some(c) = permit_without_document {
        return Decision {
            purpose: question.purpose,
            effect: Effect::Deny,
            reason: format!(
                "{} permits sharing with this recipient, but the person has not approved {} for them: an employer receives only documents the person has approved",
                c.reference,
                question.document.as_deref().unwrap_or("this document")
            ),
            basis: Basis::DocumentNotApproved {
                consent: c.reference.clone(),
            },
        };
    }
    Decision {
        purpose: question.purpose,
        effect: Effect::Deny,
        reason: format!("no active consent permits {what}"),
        basis: Basis::NoConsent,
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
    use crate::consent::overrides::{Grant, OverrideState, Party};
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
        }
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
        let ig = Party {
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
            requested_by: Party {
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
        fn an_inactive_consent_never_decides(p in any_provision(), q in any_question()) {
            let d = decide(&[consent("x", ConsentStatus::Inactive, p)], &[], &q);
            prop_assert_eq!(d.basis, Basis::NoConsent);
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
