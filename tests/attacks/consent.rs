//! Attacks 1 and 4: a party undoing the person's decisions, and a person's later "no" ignored.

use serde_json::{Value, json};

use crate::common::*;
use crate::tenancy::{WHS, practice_a, service};

const RECIPIENT: &str = "https://fhir.work-health-gateway.org/CodeSystem/consent-recipient";

/// A Consent for `patient` whose one provision is `kind` for `recipient` (an organisation
/// identifier, or a display for the whole class).
fn consent(
    patient: &str,
    kind: &str,
    recipient: &str,
    organisation: Value,
    classes: &[&str],
) -> Value {
    let mut c = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient}") },
        "dateTime": "2026-06-01T10:00:00+01:00",
        "provision": {
            "type": kind,
            "actor": [{ "role": { "coding": [{ "system": RECIPIENT, "code": recipient }] }, "reference": organisation }],
        },
    });
    if !classes.is_empty() {
        c["provision"]["class"] = classes.iter().map(|c| json!({ "system": "https://fhir.work-health-gateway.org/CodeSystem/consent-data-class", "code": c })).collect();
    }
    c
}

fn whs_identifier() -> Value {
    json!({ "identifier": { "system": "https://fhir.work-health-gateway.org/Id/service", "value": WHS } })
}

/// Every stored version of every Consent about the person, as (id, version, status).
async fn consent_versions(server: &Server) -> Vec<(String, i64, String)> {
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT id, version_id, CAST(content AS TEXT) FROM resources WHERE resource_type = 'Consent'
         UNION ALL SELECT id, version_id, CAST(content AS TEXT) FROM resource_history WHERE resource_type = 'Consent'
         ORDER BY 1, 2",
    )
    .fetch_all(&mut server.db().await)
    .await
    .unwrap();
    // The status is read from the JSON here rather than with one backend's JSON operators.
    rows.into_iter()
        .map(|(id, version, content)| {
            let consent: Value = serde_json::from_str(&content).unwrap();
            let status = consent["status"].as_str().unwrap_or_default().to_string();
            (id, version, status)
        })
        .collect()
}

#[tokio::test]
async fn a_service_cannot_reactivate_the_consent_the_practice_withdrew() {
    let server = Server::start();
    let (sr, patient) = refer(&server, &referral_for(111, WHS)).await;
    let whs = service(&server, WHS);
    let mut theirs = consent_for(&server, &patient, "work-health-service").await;
    let id = theirs["id"].as_str().unwrap().to_string();
    theirs["status"] = json!("inactive");
    let (status, _, withdrawn) = practice_a(&server)
        .put(&format!("/fhir/Consent/{id}"), &theirs)
        .await;
    assert_eq!(status, 200, "{withdrawn}");
    assert_eq!(whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0, 403);
    let before = consent_versions(&server).await;

    // The service puts the withdrawn Consent back to active.
    let mut back = withdrawn.clone();
    back["status"] = json!("active");
    let (status, _, outcome) = whs.put(&format!("/fhir/Consent/{id}"), &back).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [("Consent.status".to_string(), "business-rule".to_string())]
    );
    // Or records a fresh agreement for itself.
    let fresh = consent(
        &patient,
        "permit",
        "work-health-service",
        whs_identifier(),
        &[],
    );
    let (status, _, outcome) = whs.post("/fhir/Consent", &fresh).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            "Consent.provision.actor[0].role".to_string(),
            "forbidden".to_string()
        )]
    );
    // Nothing changed: the same Consent versions, and the referral still refused.
    assert_eq!(consent_versions(&server).await, before);
    assert_eq!(whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0, 403);
}

#[tokio::test]
async fn a_service_cannot_lift_a_refusal_the_practice_recorded() {
    let server = Server::start();
    let (sr, patient) = refer(&server, &referral_for(112, WHS)).await;
    let whs = service(&server, WHS);
    let refusal = consent(
        &patient,
        "deny",
        "work-health-service",
        whs_identifier(),
        &[],
    );
    let (status, _, stored) = practice_a(&server).post("/fhir/Consent", &refusal).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0, 403);
    let before = consent_versions(&server).await;
    for status_now in ["inactive", "entered-in-error", "rejected"] {
        let mut lifted = stored.clone();
        lifted["status"] = json!(status_now);
        let (status, _, outcome) = whs
            .put(
                &format!("/fhir/Consent/{}", stored["id"].as_str().unwrap()),
                &lifted,
            )
            .await;
        assert_eq!(status, 422, "{status_now}: {outcome}");
    }
    // Nor can it rewrite the provision into a permit.
    let mut rewritten = stored.clone();
    rewritten["provision"]["type"] = json!("permit");
    let (status, _, outcome) = whs
        .put(
            &format!("/fhir/Consent/{}", stored["id"].as_str().unwrap()),
            &rewritten,
        )
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        issue_keys(&outcome)
            .contains(&("Consent.provision".to_string(), "business-rule".to_string()))
    );
    assert_eq!(consent_versions(&server).await, before);
    assert_eq!(whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0, 403);

    // The practice, which holds the relationship, records the person's new agreement: it counts.
    let agreed = consent(
        &patient,
        "permit",
        "work-health-service",
        whs_identifier(),
        &[],
    );
    let mut agreed = agreed;
    agreed["dateTime"] = json!(chrono::Utc::now().to_rfc3339());
    let (status, _, outcome) = practice_a(&server).post("/fhir/Consent", &agreed).await;
    assert_eq!(status, 201, "{outcome}");
    assert_eq!(whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0, 200);
}

#[tokio::test]
async fn a_service_cannot_put_a_person_who_refused_evaluation_into_the_export() {
    let server = Server::start();
    let mut r = referral_for(113, WHS);
    r["consent"]["evaluation"] = json!(false);
    let (_, patient) = refer(&server, &r).await;
    let whs = service(&server, WHS);
    let evaluation = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient}") },
        "dateTime": "2026-06-01T10:00:00+01:00",
        "provision": {
            "type": "permit",
            "actor": [{ "role": { "coding": [{ "system": RECIPIENT, "code": "evaluation" }] }, "reference": { "display": "evaluators" } }],
            "purpose": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH" }],
        },
    });
    let (status, _, outcome) = whs.post("/fhir/Consent", &evaluation).await;
    assert_eq!(status, 422, "{outcome}");
    // A permit for anyone at all is no consent either.
    let mut anyone = evaluation.clone();
    anyone["provision"].as_object_mut().unwrap().remove("actor");
    let (status, _, outcome) = whs.post("/fhir/Consent", &anyone).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(issue_keys(&outcome).contains(&(
        "Consent.provision.actor".to_string(),
        "business-rule".to_string()
    )));
    // The evaluation export (pseudonymised) holds nobody: the one person declined.
    let file = server.dir.path().join("export.ndjson");
    let out = server.whg(&["export", "--out", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_eq!(exported.lines().count(), 0, "{exported}");
    assert_eq!(
        consent_versions(&server).await.len(),
        2,
        "the referral's service and feedback consents only"
    );
}

#[tokio::test]
async fn a_later_no_for_the_same_service_governs() {
    let server = Server::start();
    let (first, _) = refer(&server, &referral_for(114, WHS)).await;
    let whs = service(&server, WHS);
    assert_eq!(
        whs.get(&format!("/fhir/ServiceRequest/{first}")).await.0,
        200
    );
    let referrals_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM referrals")
        .fetch_one(&mut server.db().await)
        .await
        .unwrap();
    // The person now says no: the practice sends a new referral recording it.
    let mut no = referral_for(114, WHS);
    no["referralId"] = json!("CONSENT-TEST-114-NO");
    no["consent"]["patientAgreed"] = json!(false);
    let (status, _, outcome) = server.post_json("/api/v1/referrals", &no).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            "consent.patientAgreed".to_string(),
            "business-rule".to_string()
        )]
    );
    let referrals_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM referrals")
        .fetch_one(&mut server.db().await)
        .await
        .unwrap();
    assert_eq!(referrals_before, referrals_after, "nothing stored");
    let (_, list) = whs.get("/fhir/ServiceRequest?_count=100").await;
    assert_eq!(list["total"], 1, "{list}");
}

#[tokio::test]
async fn re_dating_a_consent_by_put_changes_nothing() {
    let server = Server::start();
    let (sr, patient) = refer(&server, &referral_for(115, WHS)).await;
    let whs = service(&server, WHS);
    let agreement = consent_for(&server, &patient, "work-health-service").await;
    let refusal = consent(
        &patient,
        "deny",
        "work-health-service",
        whs_identifier(),
        &[],
    );
    let (status, _, refusal) = practice_a(&server).post("/fhir/Consent", &refusal).await;
    assert_eq!(status, 201, "{refusal}");
    assert_eq!(whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0, 403);
    let before = consent_versions(&server).await;
    // Date the refusal before the agreement, or take the agreement's date away (so it would
    // count as decided now).
    let mut earlier = refusal.clone();
    earlier["dateTime"] = json!("2000-01-01");
    let mut undated = agreement.clone();
    undated.as_object_mut().unwrap().remove("dateTime");
    for (id, body) in [(&refusal["id"], earlier), (&agreement["id"], undated)] {
        let (status, _, outcome) = whs
            .put(&format!("/fhir/Consent/{}", id.as_str().unwrap()), &body)
            .await;
        assert_eq!(status, 422, "{outcome}");
        assert_eq!(
            issue_keys(&outcome),
            [("Consent.dateTime".to_string(), "business-rule".to_string())]
        );
    }
    // The same Consent again changes nothing either (no new version re-dating it).
    let (status, _, _) = whs
        .put(
            &format!("/fhir/Consent/{}", refusal["id"].as_str().unwrap()),
            &refusal,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(consent_versions(&server).await, before);
    assert_eq!(whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0, 403);
}

#[tokio::test]
async fn only_the_recorder_marks_a_consent_entered_in_error() {
    let server = Server::start();
    let (_, patient) = refer(&server, &referral_for(116, WHS)).await;
    let whs = service(&server, WHS);
    // The practice's record of the person's agreement to feedback: the service cannot erase it.
    let mut feedback = consent_for(&server, &patient, "referring-practice").await;
    feedback["status"] = json!("entered-in-error");
    let before = consent_versions(&server).await;
    let (status, _, outcome) = whs
        .put(
            &format!("/fhir/Consent/{}", feedback["id"].as_str().unwrap()),
            &feedback,
        )
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [("Consent.status".to_string(), "forbidden".to_string())]
    );
    assert_eq!(consent_versions(&server).await, before);
    // The practice that recorded it may.
    let (status, _, outcome) = practice_a(&server)
        .put(
            &format!("/fhir/Consent/{}", feedback["id"].as_str().unwrap()),
            &feedback,
        )
        .await;
    assert_eq!(status, 200, "{outcome}");
}

#[tokio::test]
async fn a_party_grants_only_along_the_persons_care() {
    let server = Server::start();
    // Practice B referred the person to WorkWell only; A referred them to WHS.
    let (_, patient) = refer(&server, &referral_for(117, WHS)).await;
    let mut to_workwell = referral_for(117, crate::tenancy::WORKWELL);
    to_workwell["referralId"] = json!("B-117");
    to_workwell["practice"]["odsCode"] = json!(crate::tenancy::OTHER_PRACTICE);
    let (status, _, body) = server.post_json("/api/v1/referrals", &to_workwell).await;
    assert_eq!(status, 201, "{body}");
    let before = consent_versions(&server).await;
    let grant = consent(
        &patient,
        "permit",
        "work-health-service",
        whs_identifier(),
        &[],
    );
    let (status, _, outcome) = crate::tenancy::practice_b(&server)
        .post("/fhir/Consent", &grant)
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            "Consent.provision.actor[0].reference".to_string(),
            "forbidden".to_string()
        )]
    );
    // WorkWell cannot grant feedback to A, which did not refer the person to it.
    let feedback = consent(
        &patient,
        "permit",
        "referring-practice",
        json!({ "identifier": { "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": DEFAULT_PRACTICE } }),
        &["outcome"],
    );
    let (status, _, outcome) = service(&server, crate::tenancy::WORKWELL)
        .post("/fhir/Consent", &feedback)
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(consent_versions(&server).await, before);
}

#[tokio::test]
async fn filing_a_fit_note_gives_no_say_in_consent() {
    let server = Server::start();
    let s = crate::tenancy::scenario(&server).await;
    let b = crate::tenancy::practice_b(&server);
    let refusal = consent(
        &s.person,
        "deny",
        "work-health-service",
        whs_identifier(),
        &[],
    );
    // Not a person in its care: refused at the field, as for anyone it never referred.
    let (status, _, outcome) = b.post("/fhir/Consent", &refusal).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        outcome["issue"][0]["expression"][0], "Consent.patient",
        "{outcome}"
    );
    let ask = json!({
        "patient": format!("Patient/{}", s.person),
        "recipient": "employer",
        "dataClass": "adviser-letter",
    });
    assert_eq!(
        b.post("/api/v1/disclosures/$decide", &ask).await.0,
        403,
        "a practice never asks"
    );
    let mut b_with_scopes = whg::auth::Principal::practice(crate::tenancy::OTHER_PRACTICE);
    b_with_scopes
        .scopes
        .push(whg::auth::scope::CONSENT_OVERRIDE.into());
    let overrides = server.as_(b_with_scopes);
    let request = json!({
        "patient": format!("Patient/{}", s.person),
        "recipient": "referring-practice",
        "recipientOrganisation": format!("https://fhir.nhs.uk/Id/ods-organization-code|{}", crate::tenancy::OTHER_PRACTICE),
        "dataClasses": ["outcome"],
        "reason": "risk-to-person",
        "justification": "The person may come to harm without the practice knowing.",
        "hours": 4
    });
    let (status, _, outcome) = overrides.post("/api/v1/consent-overrides", &request).await;
    assert_eq!(status, 404, "{outcome}");
}
