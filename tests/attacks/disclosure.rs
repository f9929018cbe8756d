//! Attacks 6 and 7: a disclosure carrying a class that was not decided (the outcome in a
//! letter's message), and the service's own records read by the practice as if they were the
//! referral's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;
use crate::tenancy::{WHS, letter, members, practice_a, service};

/// A practice system that takes letters: an OAuth2 token endpoint and `$process-message`,
/// keeping every message it receives.
async fn practice_system() -> (Arc<Mutex<Vec<Value>>>, String) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = received.clone();
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(|| async {
                axum::Json(
                    json!({ "access_token": "t0ken", "token_type": "bearer", "expires_in": 300 }),
                )
            }),
        )
        .route(
            "/fhir/$process-message",
            axum::routing::post(move |body: String| {
                let keep = keep.clone();
                async move {
                    keep.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                    axum::http::StatusCode::OK
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (received, url)
}

/// A gateway whose practice takes letters at `url`; the directory holds the client secret and
/// must outlive it.
fn gateway_delivering_to(url: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let server = Server::start_with(&format!(
        r#"
[delivery]
initial_backoff_ms = 100
max_backoff_ms = 400
attempt_timeout_ms = 2000
poll_interval_ms = 100

[directory.{DEFAULT_PRACTICE}]
channel = "fhir"
name = "Norfolk Park Medical Practice"
endpoint = "{url}/fhir"
token_url = "{url}/token"
client_id = "whg-test"
client_secret_file = {secret:?}
scope = "system/DocumentReference.c"
"#
    ));
    (server, dir)
}

/// The person agrees to letters reaching their GP, but not outcomes: recorded by the adviser.
fn letters_only(patient: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient}") },
        "dateTime": "2026-03-09T10:00:00Z",
        "provision": {
            "type": "permit",
            "actor": [{
                "role": { "coding": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/consent-recipient", "code": "referring-practice" }] },
                "reference": { "identifier": { "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": DEFAULT_PRACTICE } }
            }],
            "action": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "disclose" }] }],
            "class": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/consent-data-class", "code": "adviser-letter" }]
        }
    })
}

#[tokio::test]
async fn a_letter_carries_only_what_the_person_agreed_the_practice_may_have() {
    let (received, url) = practice_system().await;
    let (server, _secret) = gateway_delivering_to(&url);
    let mut r = referral_for(131, WHS);
    r["consent"]["feedbackToPractice"] = json!(false);
    let (sr, patient) = refer(&server, &r).await;
    let whs = service(&server, WHS);
    let (status, _, body) = whs.post("/fhir/Consent", &letters_only(&patient)).await;
    assert_eq!(status, 201, "{body}");
    for (step, body) in [
        ("triage", json!({ "decision": "accept" })),
        ("letters", letter("Met twice; agreed a phased return.")),
    ] {
        let (status, _, body) = whs
            .post(&format!("/api/v1/referrals/{sr}/{step}"), &body)
            .await;
        assert!(status == 200 || status == 201, "{step}: {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no letter arrived: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = received.lock().unwrap()[0].clone();
    let types: Vec<&str> = message["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["resourceType"].as_str())
        .collect();
    assert!(types.contains(&"DocumentReference"), "{types:?}");
    assert!(
        !types.contains(&"Task"),
        "the outcome went with the letter: {types:?}"
    );
    // The API withholds the same from the practice.
    for task in members(&server, &sr, "Task").await {
        assert_eq!(
            practice_a(&server)
                .get(&format!("/fhir/Task/{task}"))
                .await
                .0,
            403
        );
    }
}

#[tokio::test]
async fn the_services_contact_records_reach_the_practice_only_under_consent_to_feedback() {
    let server = Server::start();
    let mut r = referral_for(132, WHS);
    r["consent"]["feedbackToPractice"] = json!(false);
    let (sr, _) = refer(&server, &r).await;
    let whs = service(&server, WHS);
    for (step, body) in [
        ("triage", json!({ "decision": "accept" })),
        (
            "contacts",
            json!({ "date": "2026-03-09", "channel": "phone", "attended": false }),
        ),
    ] {
        let (status, _, body) = whs
            .post(&format!("/api/v1/referrals/{sr}/{step}"), &body)
            .await;
        assert_eq!(status, 200, "{step}: {body}");
    }
    let encounters = members(&server, &sr, "Encounter").await;
    assert_eq!(encounters.len(), 1);
    for e in &encounters {
        // "Did not attend" is the service's record: withheld without consent to feedback.
        let (status, body) = practice_a(&server)
            .get(&format!("/fhir/Encounter/{e}"))
            .await;
        assert_eq!(status, 403, "{body}");
        // The service reads its own.
        assert_eq!(whs.get(&format!("/fhir/Encounter/{e}")).await.0, 200);
    }
    // With consent to feedback (the fixture's default), the practice reads it.
    let (sr2, _) = refer(&server, &referral_for(133, WHS)).await;
    for (step, body) in [
        ("triage", json!({ "decision": "accept" })),
        (
            "contacts",
            json!({ "date": "2026-03-09", "channel": "video", "attended": true }),
        ),
    ] {
        let (status, _, body) = whs
            .post(&format!("/api/v1/referrals/{sr2}/{step}"), &body)
            .await;
        assert_eq!(status, 200, "{step}: {body}");
    }
    for e in members(&server, &sr2, "Encounter").await {
        assert_eq!(
            practice_a(&server)
                .get(&format!("/fhir/Encounter/{e}"))
                .await
                .0,
            200
        );
    }
}

#[tokio::test]
async fn a_refusal_of_one_letter_withholds_it_in_every_form() {
    let server = Server::start();
    let (sr, patient) = refer(&server, &referral_for(134, WHS)).await;
    let whs = service(&server, WHS);
    for (step, body) in [
        ("triage", json!({ "decision": "accept" })),
        (
            "letters",
            letter("Something the person does not want their GP to read."),
        ),
    ] {
        let (status, _, body) = whs
            .post(&format!("/api/v1/referrals/{sr}/{step}"), &body)
            .await;
        assert!(status == 200 || status == 201, "{step}: {body}");
    }
    let document = members(&server, &sr, "DocumentReference")
        .await
        .into_iter()
        .next()
        .unwrap();
    let communication = members(&server, &sr, "Communication")
        .await
        .into_iter()
        .next()
        .unwrap();
    let gp = practice_a(&server);
    assert_eq!(
        gp.get(&format!("/fhir/DocumentReference/{document}"))
            .await
            .0,
        200
    );
    // The person tells the adviser this one letter must not reach their GP.
    let refusal = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient}") },
        "dateTime": chrono::Utc::now().to_rfc3339(),
        "provision": {
            "type": "deny",
            "actor": [{
                "role": { "coding": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/consent-recipient", "code": "referring-practice" }] },
                "reference": { "identifier": { "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": DEFAULT_PRACTICE } }
            }],
            "data": [{ "meaning": "instance", "reference": { "reference": format!("DocumentReference/{document}") } }]
        }
    });
    let (status, _, body) = whs.post("/fhir/Consent", &refusal).await;
    assert_eq!(status, 201, "{body}");
    for path in [
        format!("/fhir/DocumentReference/{document}"),
        format!("/fhir/Composition/{document}"),
        format!("/fhir/Communication/{communication}"),
    ] {
        assert_eq!(gp.get(&path).await.0, 403, "{path}");
    }
    let (_, found) = gp
        .get(&format!("/fhir/Communication?based-on=ServiceRequest/{sr}"))
        .await;
    assert_eq!(found["total"], 0, "{found}");
    // The service's own view and the rest of the person's feedback are unaffected.
    assert_eq!(
        whs.get(&format!("/fhir/DocumentReference/{document}"))
            .await
            .0,
        200
    );
}
