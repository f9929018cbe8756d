//! Attack 8, break glass: a service the person refused tries to override the refusal itself, for
//! another organisation or for every one, and to keep an override a review found inappropriate.
//! An override is requested by a practice or service, permits nothing until information
//! governance grants it, names exactly one organisation (the requester's own, or the one third
//! party it discloses to), is never decided by its requester, and ends at once when a review
//! finds it inappropriate. Every step is audited, and a refused step leaves nothing behind.

use serde_json::{Value, json};
use whg::auth::{Principal, Role, scope};

use super::audit::{audit_events, override_events};
use crate::common::*;

const WHS: &str = "sheffield-whs";
const WORKWELL: &str = "workwell-south-tyneside";
const OVERRIDES: &str = "/api/v1/consent-overrides";

fn whs_organisation() -> String {
    Principal::service(WHS).organisation
}

/// The service's system with the break-glass scope (a clinician's client).
fn clinician() -> Principal {
    let mut p = Principal::service(WHS);
    p.scopes.push(scope::CONSENT_OVERRIDE.into());
    p
}

fn ig() -> Principal {
    Principal::new(Role::InformationGovernance, "ig-team")
}

/// A person referred to the service, who then refused the service everything: the practice
/// records the refusal. Returns (ServiceRequest id, Patient id).
async fn refused_referral(server: &Server, n: usize) -> (String, String) {
    let (sr, patient) = refer(server, &referral_for(n, WHS)).await;
    let whs = server.as_(Principal::service(WHS));
    assert_eq!(whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0, 200);
    let mut refusal = read_json(&root().join("fixtures/consent/valid/05-nothing-to-dwp.json"));
    refusal["patient"]["reference"] = json!(format!("Patient/{patient}"));
    refusal["provision"]["actor"][0]["role"]["coding"][1]["code"] = json!("work-health-service");
    refusal["provision"]["actor"][0]["reference"] =
        json!({ "display": "Any work and health service" });
    let (status, _, body) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .post("/fhir/Consent", &refusal)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0,
        403,
        "the person refused the service"
    );
    (sr, patient)
}

fn request_for(patient: &str, organisation: Option<&str>) -> Value {
    let mut r = json!({
        "patient": format!("Patient/{patient}"),
        "recipient": "work-health-service",
        "dataClasses": ["referral"],
        "reason": "risk-to-person",
        "justification": "The practice reports disclosed suicidal intent; the service must assess today.",
        "hours": 4,
    });
    if let Some(org) = organisation {
        r["recipientOrganisation"] = json!(org);
    }
    r
}

/// The service asks for an override of its own refusal; returns its id.
async fn requested(server: &Server, patient: &str) -> String {
    let org = whs_organisation();
    let (status, headers, body) = server
        .as_(clinician())
        .post(OVERRIDES, &request_for(patient, Some(&org)))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "requested");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(location_id(&headers), id);
    id
}

async fn state_of(server: &Server, id: &str) -> Value {
    let (status, body) = server.as_(ig()).get(&format!("{OVERRIDES}/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn step(server: &Server, who: Principal, id: &str, what: &str, body: Value) -> (u16, Value) {
    let (status, _, answer) = server
        .as_(who)
        .post(&format!("{OVERRIDES}/{id}/{what}"), &body)
        .await;
    (status, answer)
}

fn note() -> Value {
    json!({ "note": "Proportionate: an assessment today is the least intrusive way to manage the risk." })
}

/// The descriptions of the Override AuditEvents naming override `id`, in no particular order.
async fn override_audit(server: &Server, patient: &str, id: &str) -> Vec<String> {
    let events = audit_events(server, &format!("patient=Patient/{patient}")).await;
    let mut descriptions: Vec<String> = override_events(&events, id)
        .iter()
        .map(|e| e["outcomeDesc"].as_str().unwrap_or_default().to_string())
        .collect();
    descriptions.sort();
    descriptions
}

#[tokio::test]
async fn a_refused_service_that_asks_for_an_override_stays_refused_until_information_governance_grants_it()
 {
    let server = Server::start();
    let (sr, patient) = refused_referral(&server, 801).await;
    let referral = format!("/fhir/ServiceRequest/{sr}");
    let whs = server.as_(clinician());

    let id = requested(&server, &patient).await;
    let (status, body) = whs.get(&referral).await;
    assert_eq!(status, 403, "a request permits nothing: {body}");
    let (status, own) = whs.get(&format!("{OVERRIDES}/{id}")).await;
    assert_eq!(
        (status, own["state"].as_str()),
        (200, Some("requested")),
        "{own}"
    );
    let (status, _) = server
        .as_(Principal::service(WORKWELL))
        .get(&format!("{OVERRIDES}/{id}"))
        .await;
    assert_eq!(status, 403, "another service without the scope");

    // The service cannot grant it, with or without the review scope; nor can a second client of
    // its own organisation, nor a practice.
    let (status, _) = step(&server, clinician(), &id, "grant", note()).await;
    assert_eq!(status, 403);
    let mut both_scopes = clinician();
    both_scopes.scopes.push(scope::OVERRIDE_REVIEW.into());
    let (status, body) = step(&server, both_scopes.clone(), &id, "grant", note()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("only information governance"),
        "{body}"
    );
    let mut colleague = both_scopes.clone();
    colleague.client_id = "whs-second-desk".into();
    let (status, _) = step(&server, colleague, &id, "grant", note()).await;
    assert_eq!(status, 403);
    let mut gp = Principal::practice(DEFAULT_PRACTICE);
    gp.scopes.push(scope::OVERRIDE_REVIEW.into());
    assert_eq!(step(&server, gp, &id, "grant", note()).await.0, 403);
    // Nor review it into force, nor refuse it out of the way.
    let review = json!({ "outcome": "appropriate", "note": "fine" });
    assert_eq!(
        step(&server, both_scopes.clone(), &id, "review", review)
            .await
            .0,
        403
    );
    assert_eq!(
        step(&server, both_scopes, &id, "refuse", note()).await.0,
        403
    );
    // Nothing changed: still requested, still refused, and only the request is audited.
    assert_eq!(state_of(&server, &id).await["state"], "requested");
    assert_eq!(whs.get(&referral).await.0, 403);
    let audit = override_audit(&server, &patient, &id).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains("requested"), "{audit:?}");

    // Information governance grants it: the service reads the referral, for the hours asked.
    let (status, granted) = step(&server, ig(), &id, "grant", note()).await;
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["state"], "granted");
    assert_eq!(granted["grantedBy"]["client"], ig().client_id);
    let (status, body) = whs.get(&referral).await;
    assert_eq!(status, 200, "{body}");
    // Only the data classes asked for: the referral, not the person's diagnoses.
    let condition = body["reasonReference"][0]["reference"].as_str().unwrap();
    assert!(condition.starts_with("Condition/"), "{body}");
    let (status, _) = whs.get(&format!("/fhir/{condition}")).await;
    assert_eq!(status, 403, "diagnoses were not overridden");
    // A request is decided once.
    let (status, _) = step(&server, ig(), &id, "refuse", note()).await;
    assert_eq!(status, 422);
    let (status, _) = step(&server, ig(), &id, "grant", note()).await;
    assert_eq!(status, 422);
    let audit = override_audit(&server, &patient, &id).await;
    assert_eq!(audit.len(), 2, "one request, one grant: {audit:?}");
    assert!(
        audit
            .iter()
            .any(|d| d.contains("granted by information governance"))
    );
}

#[tokio::test]
async fn an_override_names_the_requesters_own_organisation_never_another_or_none() {
    let server = Server::start();
    let (sr, patient) = refused_referral(&server, 802).await;
    let whs = server.as_(clinician());
    let other_service = Principal::service(WORKWELL).organisation;
    let practice = Principal::practice(DEFAULT_PRACTICE).organisation;
    for (body, expression) in [
        (request_for(&patient, None), "recipientOrganisation"),
        (request_for(&patient, Some("")), "recipientOrganisation"),
        (
            request_for(&patient, Some(&other_service)),
            "recipientOrganisation",
        ),
        (
            {
                let mut r = request_for(&patient, Some(&practice));
                r["recipient"] = json!("referring-practice");
                r
            },
            "recipient",
        ),
        (
            {
                let mut r = request_for(&patient, Some(&whs_organisation()));
                r["recipient"] = json!("evaluation");
                r
            },
            "recipient",
        ),
    ] {
        let (status, _, outcome) = whs.post(OVERRIDES, &body).await;
        assert_eq!(status, 422, "{body}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        let issues = issue_keys(&outcome);
        assert!(
            issues.iter().any(|(e, _)| e == expression),
            "{expression} in {outcome}"
        );
        assert_eq!(outcome["issue"][0]["severity"], "error");
    }
    // Another service, not a party to the person's referral, is told the person is not found.
    let mut workwell = Principal::service(WORKWELL);
    workwell.scopes.push(scope::CONSENT_OVERRIDE.into());
    let (status, _, _) = server
        .as_(workwell)
        .post(OVERRIDES, &request_for(&patient, Some(&other_service)))
        .await;
    assert_eq!(status, 404);
    // Nothing was stored or audited, and the service is still refused.
    let (_, list) = server.as_(ig()).get(OVERRIDES).await;
    assert_eq!(list["total"], 0, "{list}");
    let events = audit_events(&server, &format!("patient=Patient/{patient}")).await;
    assert!(
        !events
            .iter()
            .any(|e| e["subtype"][0]["code"] == "consent-override"),
        "no override was audited"
    );
    assert_eq!(whs.get(&format!("/fhir/ServiceRequest/{sr}")).await.0, 403);
}

#[tokio::test]
async fn an_inappropriate_review_ends_the_override_at_once() {
    let server = Server::start();
    let (sr, patient) = refused_referral(&server, 803).await;
    let referral = format!("/fhir/ServiceRequest/{sr}");
    let whs = server.as_(clinician());
    let id = requested(&server, &patient).await;
    assert_eq!(step(&server, ig(), &id, "grant", note()).await.0, 200);
    assert_eq!(whs.get(&referral).await.0, 200);

    // A review needs an outcome and a note; a bad one changes nothing.
    let (status, _) = step(
        &server,
        ig(),
        &id,
        "review",
        json!({ "outcome": "fine", "note": "x" }),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = step(
        &server,
        ig(),
        &id,
        "review",
        json!({ "outcome": "inappropriate", "note": " " }),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(whs.get(&referral).await.0, 200);

    let second_reviewer = Principal::new(Role::InformationGovernance, "ig-second");
    let (status, reviewed) = step(
        &server,
        second_reviewer.clone(),
        &id,
        "review",
        json!({ "outcome": "inappropriate", "note": "No risk was recorded at the practice; the refusal stands." }),
    )
    .await;
    assert_eq!(status, 200, "{reviewed}");
    assert_eq!(reviewed["state"], "ended");
    assert_eq!(reviewed["review"]["outcome"], "inappropriate");
    assert!(reviewed["endedAt"].is_string());
    let (status, body) = whs.get(&referral).await;
    assert_eq!(status, 403, "ended at once: {body}");
    // It stays ended: not reviewed again, not granted again.
    let review = json!({ "outcome": "appropriate", "note": "on reflection" });
    assert_eq!(step(&server, ig(), &id, "review", review).await.0, 422);
    assert_eq!(step(&server, ig(), &id, "grant", note()).await.0, 422);
    assert_eq!(whs.get(&referral).await.0, 403);
    let (_, ended) = server
        .as_(ig())
        .get(&format!("{OVERRIDES}?state=ended"))
        .await;
    assert_eq!(ended["total"], 1, "{ended}");
    let audit = override_audit(&server, &patient, &id).await;
    assert_eq!(audit.len(), 3, "request, grant, review: {audit:?}");
    assert!(
        audit
            .iter()
            .any(|d| d.contains("inappropriate; ended at once")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn every_step_is_audited_once_with_who_took_it() {
    let server = Server::start();
    let (_, patient) = refused_referral(&server, 804).await;
    let granted = requested(&server, &patient).await;
    let refused = requested(&server, &patient).await;
    assert_eq!(step(&server, ig(), &granted, "grant", note()).await.0, 200);
    let (status, body) = step(
        &server,
        ig(),
        &refused,
        "refuse",
        json!({ "note": "Not urgent: ask the person again at first contact." }),
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("refused")),
        "{body}"
    );
    let review = json!({ "outcome": "appropriate", "note": "Assessment was needed the same day." });
    assert_eq!(step(&server, ig(), &granted, "review", review).await.0, 200);
    // A refused request is not reviewed: it never acted.
    let review = json!({ "outcome": "appropriate", "note": "n/a" });
    assert_eq!(step(&server, ig(), &refused, "review", review).await.0, 422);

    let events = audit_events(&server, &format!("patient=Patient/{patient}")).await;
    let by = |e: &Value| {
        e["agent"][0]["who"]["identifier"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let steps = |id: &str| {
        let mut s: Vec<(String, String)> = override_events(&events, id)
            .iter()
            .map(|e| {
                let d = e["outcomeDesc"].as_str().unwrap_or_default();
                let what = ["requested", "granted", "refused", "reviewed"]
                    .into_iter()
                    .find(|w| d.contains(w))
                    .unwrap_or("?");
                assert_eq!(e["outcome"], "0", "{e}");
                (what.to_string(), by(e))
            })
            .collect();
        s.sort();
        s
    };
    let clinician = clinician().client_id;
    let ig = ig().client_id;
    assert_eq!(
        steps(&granted),
        [
            ("granted".to_string(), ig.clone()),
            ("requested".to_string(), clinician.clone()),
            ("reviewed".to_string(), ig.clone()),
        ]
    );
    assert_eq!(
        steps(&refused),
        [
            ("refused".to_string(), ig.clone()),
            ("requested".to_string(), clinician.clone()),
        ]
    );
    // Each event names its override by identifier, so information governance can find them all.
    let named = override_events(&events, &granted);
    assert!(
        named
            .iter()
            .all(|e| e["entity"].to_string().contains("consent-override"))
    );
}
