use super::*;
use crate::consent::model::{ActorRule, Period};
use chrono::TimeZone;

const PRACTICE: &str = "https://fhir.nhs.uk/Id/ods-organization-code|C88901";
const OTHER_PRACTICE: &str = "https://fhir.nhs.uk/Id/ods-organization-code|B82005";
const WHS: &str = "https://fhir.work-health-gateway.org/Id/service|sheffield-whs";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn practice() -> Party {
    Party {
        class: RecipientClass::ReferringPractice,
        organisation: PRACTICE.into(),
    }
}

fn service() -> Party {
    Party {
        class: RecipientClass::WorkHealthService,
        organisation: WHS.into(),
    }
}

fn provision(kind: ProvisionType, class: RecipientClass, org: Option<&str>) -> Provision {
    Provision {
        kind: Some(kind),
        actors: vec![ActorRule {
            class,
            organisation: org.map(str::to_string),
        }],
        ..Provision::default()
    }
}

fn record(
    status: ConsentStatus,
    provision: Provision,
    day: Option<u32>,
    by: Option<Party>,
) -> ConsentRecord {
    ConsentRecord {
        reference: "Consent/x".into(),
        status,
        provision,
        decided_at: day.map(|d| Utc.with_ymd_and_hms(2026, 5, d, 9, 0, 0).unwrap()),
        recorded_by: by,
    }
}

fn problems(by: &Party, c: &ConsentRecord, stored: &[ConsentRecord]) -> Vec<String> {
    let mut issues = Issues::new();
    may_record(by, c, stored, now(), &mut issues, "Consent");
    issues
        .iter()
        .map(|i| i.expression.clone().unwrap_or_default())
        .collect()
}

#[test]
fn each_party_grants_exactly_its_table() {
    for by in [practice(), service()] {
        for &class in RecipientClass::ALL {
            let org = (class == by.class).then_some(by.organisation.as_str());
            let c = record(
                ConsentStatus::Active,
                provision(ProvisionType::Permit, class, org),
                Some(1),
                Some(by.clone()),
            );
            let allowed = problems(&by, &c, &[]).is_empty();
            assert_eq!(
                allowed,
                grantable(by.class).contains(&class),
                "{:?} granting {:?}",
                by.class,
                class
            );
        }
    }
    // Nobody but the referrer grants a service access, and a service never grants itself.
    assert!(
        !grantable(RecipientClass::WorkHealthService).contains(&RecipientClass::WorkHealthService)
    );
    assert!(!grantable(RecipientClass::WorkHealthService).contains(&RecipientClass::Evaluation));
}

#[test]
fn anyone_party_to_the_care_records_a_refusal_of_anything() {
    for by in [practice(), service()] {
        for &class in RecipientClass::ALL {
            let c = record(
                ConsentStatus::Active,
                provision(ProvisionType::Deny, class, None),
                Some(1),
                Some(by.clone()),
            );
            assert!(
                problems(&by, &c, &[]).is_empty(),
                "{:?} refusing {:?}",
                by.class,
                class
            );
        }
    }
}

#[test]
fn no_permit_without_an_actor_at_any_depth() {
    let mut p = provision(ProvisionType::Deny, RecipientClass::Employer, None);
    p.children.push(Provision {
        kind: Some(ProvisionType::Permit),
        ..Provision::default()
    });
    let c = record(ConsentStatus::Active, p, Some(1), Some(service()));
    assert_eq!(
        problems(&service(), &c, &[]),
        vec!["Consent.provision.provision[0].actor"]
    );
    let c = record(
        ConsentStatus::Active,
        Provision {
            kind: Some(ProvisionType::Permit),
            ..Provision::default()
        },
        Some(1),
        Some(practice()),
    );
    assert_eq!(
        problems(&practice(), &c, &[]),
        vec!["Consent.provision.actor"]
    );
}

#[test]
fn a_practice_grants_feedback_to_itself_only() {
    let c = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Permit,
            RecipientClass::ReferringPractice,
            Some(OTHER_PRACTICE),
        ),
        Some(1),
        Some(practice()),
    );
    assert_eq!(
        problems(&practice(), &c, &[]),
        vec!["Consent.provision.actor[0].reference"]
    );
}

#[test]
fn a_recipient_cannot_agree_for_itself_after_a_refusal() {
    // The person told the adviser they do not want feedback sent to the GP.
    let refusal = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Deny,
            RecipientClass::ReferringPractice,
            Some(PRACTICE),
        ),
        Some(2),
        Some(service()),
    );
    let self_grant = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Permit,
            RecipientClass::ReferringPractice,
            Some(PRACTICE),
        ),
        Some(3),
        Some(practice()),
    );
    assert_eq!(
        problems(&practice(), &self_grant, std::slice::from_ref(&refusal)),
        vec!["Consent.provision.actor[0]"]
    );
    // Before any refusal, the practice records the person's agreement to feedback.
    assert!(problems(&practice(), &self_grant, &[]).is_empty());
    // The service, which is not the recipient, records the person's new agreement.
    let by_service = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Permit,
            RecipientClass::ReferringPractice,
            Some(PRACTICE),
        ),
        Some(3),
        Some(service()),
    );
    assert!(problems(&service(), &by_service, &[refusal]).is_empty());
}

#[test]
fn decisions_are_not_dated_ahead() {
    let mut c = record(
        ConsentStatus::Active,
        provision(ProvisionType::Deny, RecipientClass::Employer, None),
        None,
        Some(service()),
    );
    c.decided_at = Some(now() + Duration::hours(1));
    assert_eq!(problems(&service(), &c, &[]), vec!["Consent.dateTime"]);
    c.decided_at = Some(now() + Duration::minutes(4));
    assert!(problems(&service(), &c, &[]).is_empty(), "clock skew");
    // Recording a withdrawal or a "no" directly only refuses: always allowed.
    for status in [
        ConsentStatus::Inactive,
        ConsentStatus::Rejected,
        ConsentStatus::EnteredInError,
    ] {
        let c = record(
            status,
            provision(ProvisionType::Permit, RecipientClass::Dwp, None),
            Some(1),
            Some(service()),
        );
        assert!(problems(&practice(), &c, &[]).is_empty(), "{status:?}");
    }
}

fn amend(stored: &ConsentRecord, changed: &ConsentRecord) -> Vec<String> {
    let mut issues = Issues::new();
    may_amend(stored, changed, &mut issues);
    issues
        .iter()
        .map(|i| i.expression.clone().unwrap_or_default())
        .collect()
}

#[test]
fn every_status_change_is_judged() {
    use ConsentStatus::*;
    let all = [Draft, Proposed, Active, Rejected, Inactive, EnteredInError];
    for kind in [ProvisionType::Permit, ProvisionType::Deny] {
        for from in all {
            for to in all {
                let stored = record(
                    from,
                    provision(kind, RecipientClass::WorkHealthService, Some(WHS)),
                    Some(1),
                    Some(practice()),
                );
                let changed = ConsentRecord {
                    status: to,
                    ..stored.clone()
                };
                let allowed = amend(&stored, &changed).is_empty();
                let expected = from == to
                    || (kind == ProvisionType::Permit
                        && from == Active
                        && matches!(to, Inactive | EnteredInError));
                assert_eq!(allowed, expected, "{kind:?} {from:?} -> {to:?}");
            }
        }
    }
}

#[test]
fn nothing_but_the_status_changes() {
    let stored = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Permit,
            RecipientClass::WorkHealthService,
            Some(WHS),
        ),
        Some(1),
        Some(practice()),
    );
    let mut wider = stored.clone();
    wider.provision.period = Period {
        start: None,
        end: None,
    };
    wider.provision.actors[0].organisation = None;
    assert_eq!(amend(&stored, &wider), vec!["Consent.provision"]);
    let moved = ConsentRecord {
        recorded_by: Some(service()),
        ..stored.clone()
    };
    assert_eq!(amend(&stored, &moved), vec!["Consent.organization"]);
}
