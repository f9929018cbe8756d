use super::*;
use crate::consent::model::ActorRule;
use chrono::TimeZone;

const PRACTICE: &str = "https://fhir.nhs.uk/Id/ods-organization-code|C88901";
const OTHER_PRACTICE: &str = "https://fhir.nhs.uk/Id/ods-organization-code|B82005";
const WHS: &str = "https://fhir.work-health-gateway.org/Id/service|sheffield-whs";
const TALKING_THERAPIES: &str =
    "https://fhir.work-health-gateway.org/Id/referrer/talking-therapies|TAJ";
const OTHER_REFERRER: &str =
    "https://fhir.work-health-gateway.org/Id/referrer/talking-therapies|RHQ";
const EMPLOYER: &str = "https://fhir.work-health-gateway.org/Id/employer|EMP-4471";

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

fn referrer() -> Party {
    Party {
        class: RecipientClass::Referrer,
        organisation: TALKING_THERAPIES.into(),
    }
}

fn employer() -> Party {
    Party {
        class: RecipientClass::Employer,
        organisation: EMPLOYER.into(),
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

/// The person was referred to the service by the practice, by Talking Therapies and by their
/// employer.
fn referrals() -> Vec<CareRelation> {
    [PRACTICE, TALKING_THERAPIES, EMPLOYER]
        .into_iter()
        .map(|by| CareRelation {
            referrer: Some(by.into()),
            service: WHS.into(),
        })
        .collect()
}

fn problems(by: &Party, c: &ConsentRecord, stored: &[ConsentRecord]) -> Vec<String> {
    problems_in_care(by, c, stored, &referrals())
}

fn problems_in_care(
    by: &Party,
    c: &ConsentRecord,
    stored: &[ConsentRecord],
    referrals: &[CareRelation],
) -> Vec<String> {
    let mut issues = Issues::new();
    let person = Person {
        consents: stored,
        referrals,
    };
    may_record(by, c, person, now(), &mut issues, "Consent");
    issues
        .iter()
        .map(|i| i.expression.clone().unwrap_or_default())
        .collect()
}

#[test]
fn each_party_grants_exactly_its_table() {
    for by in [practice(), service(), referrer(), employer()] {
        for &class in RecipientClass::ALL {
            // The party it has the referral with, or itself for feedback to a referrer.
            let org = match class {
                RecipientClass::WorkHealthService => Some(WHS),
                RecipientClass::ReferringPractice => Some(PRACTICE),
                RecipientClass::Referrer => Some(TALKING_THERAPIES),
                _ => None,
            };
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
    // An employer grants nobody anything of the person's but the service its referral.
    assert_eq!(
        grantable(RecipientClass::Employer),
        &[
            RecipientClass::WorkHealthService,
            RecipientClass::Evaluation
        ]
    );
}

#[test]
fn a_referrer_of_another_kind_grants_as_a_practice_does_within_its_own_care() {
    let grant = |by: &Party, class, org: &str| {
        let c = record(
            ConsentStatus::Active,
            provision(ProvisionType::Permit, class, Some(org)),
            Some(1),
            Some(by.clone()),
        );
        problems(by, &c, &[])
    };
    // Feedback to itself, never to another referrer or to a practice.
    assert!(grant(&referrer(), RecipientClass::Referrer, TALKING_THERAPIES).is_empty());
    assert_eq!(
        grant(&referrer(), RecipientClass::Referrer, OTHER_REFERRER),
        ["Consent.provision.actor[0].reference"]
    );
    assert_eq!(
        grant(&referrer(), RecipientClass::ReferringPractice, PRACTICE),
        ["Consent.provision.actor[0].role"]
    );
    // A service only the service it referred the person to.
    let other_service = "https://fhir.work-health-gateway.org/Id/service|working-win";
    for by in [referrer(), employer()] {
        assert!(grant(&by, RecipientClass::WorkHealthService, WHS).is_empty());
        assert_eq!(
            grant(&by, RecipientClass::WorkHealthService, other_service),
            ["Consent.provision.actor[0].reference"],
            "{:?}",
            by.class
        );
    }
    // An employer grants itself nothing, named or not.
    assert_eq!(
        grant(&employer(), RecipientClass::Employer, EMPLOYER),
        ["Consent.provision.actor[0].role"]
    );
    // The service grants feedback to a referrer that referred the person to it, not another.
    assert!(grant(&service(), RecipientClass::Referrer, TALKING_THERAPIES).is_empty());
    assert_eq!(
        grant(&service(), RecipientClass::Referrer, OTHER_REFERRER),
        ["Consent.provision.actor[0].reference"]
    );
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

#[test]
fn agreements_between_parties_follow_the_persons_care() {
    const WORKWELL: &str =
        "https://fhir.work-health-gateway.org/Id/service|workwell-south-tyneside";
    // A practice grants only a service it referred the person to, named.
    let to_workwell = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Permit,
            RecipientClass::WorkHealthService,
            Some(WORKWELL),
        ),
        Some(1),
        Some(practice()),
    );
    assert_eq!(
        problems(&practice(), &to_workwell, &[]),
        vec!["Consent.provision.actor[0].reference"]
    );
    let any_service = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Permit,
            RecipientClass::WorkHealthService,
            None,
        ),
        Some(1),
        Some(practice()),
    );
    assert_eq!(
        problems(&practice(), &any_service, &[]),
        vec!["Consent.provision.actor[0].reference"]
    );
    let also = [CareRelation {
        referrer: Some(PRACTICE.into()),
        service: WORKWELL.into(),
    }];
    assert!(problems_in_care(&practice(), &to_workwell, &[], &also).is_empty());
    // Another practice that referred the person elsewhere does not grant this service.
    let other = Party {
        class: RecipientClass::ReferringPractice,
        organisation: OTHER_PRACTICE.into(),
    };
    let by_other = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Permit,
            RecipientClass::WorkHealthService,
            Some(WHS),
        ),
        Some(1),
        Some(other.clone()),
    );
    let elsewhere = [CareRelation {
        referrer: Some(OTHER_PRACTICE.into()),
        service: WORKWELL.into(),
    }];
    assert_eq!(
        problems_in_care(&other, &by_other, &[], &elsewhere),
        vec!["Consent.provision.actor[0].reference"]
    );
    // A service grants feedback only to a practice that referred the person to it, named.
    let feedback_other = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Permit,
            RecipientClass::ReferringPractice,
            Some(OTHER_PRACTICE),
        ),
        Some(1),
        Some(service()),
    );
    assert_eq!(
        problems(&service(), &feedback_other, &[]),
        vec!["Consent.provision.actor[0].reference"]
    );
    let feedback_any = record(
        ConsentStatus::Active,
        provision(
            ProvisionType::Permit,
            RecipientClass::ReferringPractice,
            None,
        ),
        Some(1),
        Some(service()),
    );
    assert_eq!(
        problems(&service(), &feedback_any, &[]),
        vec!["Consent.provision.actor[0].reference"]
    );
}

fn consent_json(status: &str, kind: &str, by: &str) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "Consent", "id": "c1", "status": status,
        "meta": { "versionId": "1", "lastUpdated": "2026-05-01T09:00:00.000000Z" },
        "dateTime": "2026-05-01T10:00:00+01:00",
        "organization": [{ "identifier": { "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": by } }],
        "provision": { "type": kind, "actor": [{ "role": { "coding": [{ "system": RecipientClass::system(), "code": "work-health-service" }] }, "reference": { "identifier": { "system": "https://fhir.work-health-gateway.org/Id/service", "value": "sheffield-whs" } } }] }
    })
}

fn amend(
    by: &Party,
    stored: &serde_json::Value,
    changed: &serde_json::Value,
) -> (Option<Amendment>, Vec<String>) {
    let mut issues = Issues::new();
    let a = may_amend(by, stored, changed, &mut issues);
    (
        a,
        issues
            .iter()
            .map(|i| i.expression.clone().unwrap_or_default())
            .collect(),
    )
}

#[test]
fn every_status_change_is_judged() {
    use ConsentStatus::*;
    let all = [
        (Draft, "draft"),
        (Proposed, "proposed"),
        (Active, "active"),
        (Rejected, "rejected"),
        (Inactive, "inactive"),
        (EnteredInError, "entered-in-error"),
    ];
    for kind in ["permit", "deny"] {
        for (by, is_recorder) in [(practice(), true), (service(), false)] {
            for (from, from_code) in all {
                for (to, to_code) in all {
                    let stored = consent_json(from_code, kind, "C88901");
                    let changed = consent_json(to_code, kind, "C88901");
                    let (amendment, problems) = amend(&by, &stored, &changed);
                    let expected = if from == to {
                        Some(Amendment::Unchanged)
                    } else if kind == "permit"
                        && from == Active
                        && (to == Inactive || (to == EnteredInError && is_recorder))
                    {
                        Some(Amendment::Status(to))
                    } else {
                        None
                    };
                    assert_eq!(
                        amendment, expected,
                        "{kind} {from:?} -> {to:?} by recorder {is_recorder}: {problems:?}"
                    );
                    assert_eq!(problems.is_empty(), expected.is_some());
                }
            }
        }
    }
}

#[test]
fn an_employer_withdraws_only_what_it_recorded() {
    let others = consent_json("active", "permit", "C88901");
    let mut withdrawn = others.clone();
    withdrawn["status"] = serde_json::json!("inactive");
    let (amendment, problems) = amend(&employer(), &others, &withdrawn);
    assert_eq!(amendment, None);
    assert_eq!(problems, ["Consent.status"]);

    let mut its_own = others.clone();
    its_own["organization"] = serde_json::json!([{ "identifier": {
        "system": "https://fhir.work-health-gateway.org/Id/employer", "value": "EMP-4471" } }]);
    let mut withdrawn = its_own.clone();
    withdrawn["status"] = serde_json::json!("inactive");
    let (amendment, problems) = amend(&employer(), &its_own, &withdrawn);
    assert_eq!(
        amendment,
        Some(Amendment::Status(ConsentStatus::Inactive)),
        "{problems:?}"
    );
}

#[test]
fn nothing_but_the_status_changes() {
    let stored = consent_json("active", "permit", "C88901");
    for (field, change) in [
        (
            "Consent.dateTime",
            serde_json::json!({ "dateTime": "2000-01-01" }),
        ),
        (
            "Consent.organization",
            serde_json::json!({ "organization": [{ "identifier": { "system": "https://fhir.work-health-gateway.org/Id/service", "value": "sheffield-whs" } }] }),
        ),
        (
            "Consent.provision",
            serde_json::json!({ "provision": { "type": "permit", "actor": [{ "role": { "coding": [{ "system": RecipientClass::system(), "code": "work-health-service" }] }, "reference": { "display": "any service" } }] } }),
        ),
        (
            "Consent",
            serde_json::json!({ "scope": { "text": "something else" } }),
        ),
    ] {
        let mut changed = stored.clone();
        changed["status"] = serde_json::json!("inactive");
        for (k, v) in change.as_object().unwrap() {
            changed[k] = v.clone();
        }
        let (amendment, problems) = amend(&practice(), &stored, &changed);
        assert_eq!(
            (amendment, problems),
            (None, vec![field.to_string()]),
            "{field}"
        );
    }
    // Leaving the date out re-dates it too.
    let mut undated = stored.clone();
    undated.as_object_mut().unwrap().remove("dateTime");
    assert_eq!(
        amend(&service(), &stored, &undated).1,
        vec!["Consent.dateTime"]
    );
}
