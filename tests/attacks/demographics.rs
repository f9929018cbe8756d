//! Attack 5: a second practice's referral rewriting the person's details the service sees on
//! the first practice's referral (and that letters and MESH routing use).

use serde_json::{Value, json};
use whg::auth::Principal;

use crate::common::*;
use crate::tenancy::{OTHER_PRACTICE, WHS, practice_a, practice_b, service};

/// The same person as `referral_for(121, WHS)`, referred later by practice B, which states other
/// contact details and itself as the GP.
fn second_practices_referral() -> Value {
    let mut r = referral_for(121, WHS);
    r["referralId"] = json!("B-REF-121");
    r["authoredOn"] = json!("2026-05-20T10:00:00Z");
    r["practice"] = json!({ "odsCode": OTHER_PRACTICE, "name": "Leeds Road Surgery (synthetic)", "phone": "0113 496 0000" });
    r["patient"]["postcode"] = json!("LS1 4AP");
    r["patient"]["addressLines"] = json!(["1 Leeds Road", "Leeds"]);
    r["patient"]["phone"] = json!("07700 900999");
    r["patient"]["email"] = json!("someone.else@example.org");
    r
}

async fn as_stated_for(whs: &Actor<'_>, referral: &str) -> Value {
    let (status, view) = whs
        .get(&format!("/api/v1/referrals/{referral}/workflow"))
        .await;
    assert_eq!(status, 200, "{view}");
    let reference = view["patient"]
        .as_str()
        .unwrap_or_else(|| panic!("{view}"))
        .to_string();
    let (status, patient) = whs.get(&format!("/fhir/{reference}")).await;
    assert_eq!(status, 200, "{patient}");
    patient
}

#[tokio::test]
async fn another_practices_referral_never_replaces_what_the_first_practice_stated() {
    let server = Server::start();
    let (a_referral, person) = refer(&server, &referral_for(121, WHS)).await;
    let (status, headers, body) = server
        .post_json("/api/v1/referrals", &second_practices_referral())
        .await;
    assert_eq!(status, 201, "{body}");
    let b_referral = location_id(&headers);
    let whs = service(&server, WHS);

    // For A's referral the service sees what A stated; for B's, what B stated.
    let patient_for_a = as_stated_for(&whs, &a_referral).await;
    let for_a = patient_for_a.to_string();
    assert!(
        for_a.contains("07700 900123") && for_a.contains("S2 2RL"),
        "{for_a}"
    );
    assert!(
        !for_a.contains("07700 900999") && !for_a.contains("LS1 4AP"),
        "{for_a}"
    );
    let patient_for_b = as_stated_for(&whs, &b_referral).await;
    let for_b = patient_for_b.to_string();
    assert!(
        for_b.contains("07700 900999") && for_b.contains("LS1 4AP"),
        "{for_b}"
    );
    // Each names its own practice as the person's GP (where a letter about it goes).
    assert_ne!(
        patient_for_a["generalPractitioner"], patient_for_b["generalPractitioner"],
        "{for_a} {for_b}"
    );

    // Each practice reads the person as it stated them, and cannot read the other's version.
    let (_, seen_by_a) = practice_a(&server)
        .get(&format!("/fhir/Patient/{person}"))
        .await;
    assert!(
        seen_by_a.to_string().contains("07700 900123"),
        "{seen_by_a}"
    );
    assert!(
        !seen_by_a.to_string().contains("07700 900999"),
        "{seen_by_a}"
    );
    let (_, seen_by_b) = practice_b(&server)
        .get(&format!("/fhir/Patient/{person}"))
        .await;
    assert!(
        seen_by_b.to_string().contains("07700 900999"),
        "{seen_by_b}"
    );
    assert!(
        !seen_by_b.to_string().contains("07700 900123"),
        "{seen_by_b}"
    );
    let b_version = seen_by_b["meta"]["versionId"].as_str().unwrap();
    let a_version = seen_by_a["meta"]["versionId"].as_str().unwrap();
    assert_ne!(a_version, b_version);
    assert_eq!(
        practice_a(&server)
            .get(&format!("/fhir/Patient/{person}/_history/{b_version}"))
            .await
            .0,
        404
    );
    // A service that is party to neither reads neither.
    let other = server.as_(Principal::service("workwell-south-tyneside"));
    assert_eq!(
        other
            .get(&format!("/fhir/Patient/{person}/_history/{a_version}"))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn the_same_practices_later_details_are_its_own_to_update() {
    let server = Server::start();
    let (_, person) = refer(&server, &referral_for(122, WHS)).await;
    let mut moved = referral_for(122, WHS);
    moved["referralId"] = json!("A-REF-122-MOVED");
    moved["authoredOn"] = json!("2026-05-20T10:00:00Z");
    moved["patient"]["phone"] = json!("07700 900555");
    let (status, _, body) = server.post_json("/api/v1/referrals", &moved).await;
    assert_eq!(status, 201, "{body}");
    let (_, seen) = practice_a(&server)
        .get(&format!("/fhir/Patient/{person}"))
        .await;
    assert!(seen.to_string().contains("07700 900555"), "{seen}");
}
