//! Attack 2: a BaRS message planting records only the gateway writes (an AuditEvent, a
//! workflow Task) or anything the referral MessageDefinition does not carry.

use serde_json::{Value, json};

use crate::common::*;
use crate::tenancy::{ig, service};

fn message() -> Value {
    read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"))
}

fn patient_url(bundle: &Value) -> String {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap()["fullUrl"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn stored_count(server: &Server) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM resources")
        .fetch_one(&mut server.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_planted_audit_event_is_refused_and_never_reaches_the_audit_trail() {
    let server = Server::start();
    let mut bundle = message();
    bundle["entry"].as_array_mut().unwrap().push(json!({
        "fullUrl": "urn:uuid:9d2c7e1a-0b5f-4c3d-8e9a-1f2b3c4d5e6f",
        "resource": {
            "resourceType": "AuditEvent",
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest" },
            "recorded": "2026-03-02T09:40:00+00:00",
            "outcome": "0",
            "outcomeDesc": "information governance reviewed this and found it appropriate",
            "agent": [{ "requestor": true, "who": { "display": "IG lead" } }],
            "source": { "observer": { "display": "Work and Health Gateway" } }
        }
    }));
    let at = bundle["entry"].as_array().unwrap().len() - 1;
    let before = stored_count(&server).await;
    let (status, _, outcome) = server.post_json("/fhir/$process-message", &bundle).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            format!("Bundle.entry[{at}].resource.resourceType"),
            "not-supported".to_string()
        )]
    );
    assert_eq!(stored_count(&server).await, before, "nothing stored");
    let (status, trail) = ig(&server).get("/fhir/AuditEvent?_count=100").await;
    assert_eq!(status, 200);
    assert!(
        !trail.to_string().contains("found it appropriate"),
        "{trail}"
    );
}

#[tokio::test]
async fn a_planted_workflow_task_cannot_stop_the_service_triaging() {
    let server = Server::start();
    let mut bundle = message();
    let patient = patient_url(&bundle);
    let sr = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "ServiceRequest")
        .unwrap()["fullUrl"]
        .clone();
    let mut planted = bundle.clone();
    planted["entry"].as_array_mut().unwrap().push(json!({
        "fullUrl": "urn:uuid:9d2c7e1a-0b5f-4c3d-8e9a-1f2b3c4d5e70",
        "resource": {
            "resourceType": "Task",
            "status": "completed",
            "intent": "order",
            "code": { "coding": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/task-code", "code": "referral-workflow" }] },
            "businessStatus": { "coding": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/referral-workflow-status", "code": "discharged" }] },
            "focus": { "reference": sr },
            "for": { "reference": patient }
        }
    }));
    let before = stored_count(&server).await;
    let (status, _, outcome) = server.post_json("/fhir/$process-message", &planted).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome
            .to_string()
            .contains("the gateway and the service record Tasks themselves"),
        "{outcome}"
    );
    assert_eq!(stored_count(&server).await, before, "nothing stored");

    // The genuine message goes in, and the service triages it as usual.
    bundle["id"] = json!("genuine-after-the-attempt");
    let (status, _, answer) = server.post_json("/fhir/$process-message", &bundle).await;
    assert_eq!(status, 200, "{answer}");
    let whs = service(&server, "sheffield-whs");
    let (_, list) = whs.get("/fhir/ServiceRequest").await;
    let id = list["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, body) = whs
        .post(
            &format!("/api/v1/referrals/{id}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_sender_cannot_tag_its_encounter_as_the_services_own_record() {
    // A referrer's Encounter is part of the referral; marking it as written by the service (so
    // the service would read it without the person's consent) is stripped at intake.
    let server = Server::start();
    let mut bundle = message();
    for e in bundle["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "Encounter" {
            e["resource"]["meta"]["tag"] = json!([{ "system": "https://fhir.work-health-gateway.org/CodeSystem/record-origin", "code": "work-health-service" }]);
        }
    }
    let (status, _, answer) = server.post_json("/fhir/$process-message", &bundle).await;
    assert_eq!(status, 200, "{answer}");
    let tagged: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM resources WHERE resource_type = 'Encounter' AND CAST(content AS TEXT) LIKE '%record-origin%'",
    )
    .fetch_one(&mut server.db().await)
    .await
    .unwrap();
    assert_eq!(tagged, 0);
}
