//! Shared records (review finding 2): the records more than one referral points at never let one
//! sender read what another stated. A BaRS message is about exactly one person, the
//! ServiceRequest's subject, and the referral is pinned to what this sender stated of them.

use serde_json::{Value, json};
use whg::auth::Principal;

use crate::common::*;
use crate::tenancy::{WHS, db, practice_a};

/// The practice the BaRS message fixtures come from (the attacker here).
const SENDER: &str = "C88902";
const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Practice C88902's valid BaRS referral to WHS, made about the person with NHS number `nhs`
/// and given its own ids (`tag`), so it is a new referral.
fn message_about(nhs: &str, tag: &str) -> Value {
    let mut bundle =
        read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"));
    bundle["id"] = json!(format!("shared-records-{tag}"));
    for e in bundle["entry"].as_array_mut().unwrap() {
        let r = &mut e["resource"];
        match r["resourceType"].as_str().unwrap() {
            "Patient" => r["identifier"][0]["value"] = json!(nhs),
            "ServiceRequest" => r["identifier"][0]["value"] = json!(format!("REF-{tag}")),
            _ => {}
        }
    }
    bundle
}

fn entries(bundle: &mut Value) -> &mut Vec<Value> {
    bundle["entry"].as_array_mut().unwrap()
}

fn entry_of<'a>(bundle: &'a mut Value, resource_type: &str) -> &'a mut Value {
    entries(bundle)
        .iter_mut()
        .find(|e| e["resource"]["resourceType"] == resource_type)
        .unwrap_or_else(|| panic!("no {resource_type} entry"))
}

/// Everything stored that a refused message could have changed (an audit of the refusal aside).
async fn stored_state(server: &Server) -> Vec<(String, String, i64, String)> {
    sqlx::query_as(
        "SELECT resource_type, id, version_id, content FROM resources
         WHERE resource_type <> 'AuditEvent' ORDER BY resource_type, id",
    )
    .fetch_all(&mut db(server).await)
    .await
    .unwrap()
}

async fn referral_count(server: &Server) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM referrals")
        .fetch_one(&mut db(server).await)
        .await
        .unwrap()
}

async fn post_message(server: &Server, bundle: &Value) -> (u16, Value) {
    let (status, _, outcome) = server.post_json("/fhir/$process-message", bundle).await;
    (status, outcome)
}

/// What practice A stated of the person in `referral_for` (its version of the Patient).
const A_STATED: [&str; 3] = ["07700 900123", "S2 2RL", "joanne.whitworth@example.org"];

#[tokio::test]
async fn a_message_naming_a_second_person_reads_no_one_elses_details() {
    let server = Server::start();
    // Practice A refers the victim: version 1 of their Patient is what A stated.
    let victim_nhs = nhs_number(131);
    let (_, victim) = refer(&server, &referral_for(131, WHS)).await;

    // The attacker knows only the victim's NHS number. Its message is about the victim (the
    // ServiceRequest's subject) and carries a second, new person as the last entry, so the
    // Patient written last would be version 1 of someone.
    let mut bundle = message_about(&victim_nhs, "two-people");
    let mut dummy = entry_of(&mut bundle, "Patient").clone();
    dummy["fullUrl"] = json!("urn:uuid:7f3e2d1c-0b9a-4877-8665-544332211000");
    dummy["resource"]["identifier"][0]["value"] = json!(nhs_number(132));
    entries(&mut bundle).push(dummy);
    let second = entries(&mut bundle).len() - 1;

    let before = stored_state(&server).await;
    let referrals = referral_count(&server).await;
    let (status, outcome) = post_message(&server, &bundle).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            format!("Bundle.entry[{second}].resource"),
            "business-rule".to_string()
        )],
        "{outcome}"
    );
    assert_eq!(stored_state(&server).await, before, "nothing stored");
    assert_eq!(referral_count(&server).await, referrals);
    let attacker = server.as_(Principal::practice(SENDER));
    assert_eq!(
        attacker.get(&format!("/fhir/Patient/{victim}")).await.0,
        404
    );
    assert_eq!(
        attacker
            .get(&format!("/fhir/Patient/{victim}/_history/1"))
            .await
            .0,
        404
    );

    // A message about the victim alone goes in; the attacker is pinned to what it stated itself
    // and never reads A's statement, by id or by version.
    let genuine = message_about(&victim_nhs, "one-person");
    let (status, answer) = post_message(&server, &genuine).await;
    assert_eq!(status, 200, "{answer}");
    let (status, seen) = attacker.get(&format!("/fhir/Patient/{victim}")).await;
    assert_eq!(status, 200, "{seen}");
    let text = seen.to_string();
    assert!(text.contains("07700 900765"), "{seen}");
    for a_stated in A_STATED {
        assert!(
            !text.contains(a_stated),
            "the sender reads A's {a_stated}: {seen}"
        );
    }
    assert_ne!(seen["meta"]["versionId"], "1", "{seen}");
    assert_eq!(
        attacker
            .get(&format!("/fhir/Patient/{victim}/_history/1"))
            .await
            .0,
        404
    );
    // A still reads what it stated.
    let (_, for_a) = practice_a(&server)
        .get(&format!("/fhir/Patient/{victim}"))
        .await;
    assert!(for_a.to_string().contains(A_STATED[0]), "{for_a}");
}

#[tokio::test]
async fn a_record_in_a_message_about_someone_else_is_refused() {
    let server = Server::start();
    let victim_nhs = nhs_number(133);
    refer(&server, &referral_for(133, WHS)).await;

    // One Patient entry (the attacker's own person), but the Condition is about the victim, a
    // Patient contained in it.
    let mut bundle = message_about(&nhs_number(134), "contained-person");
    let at = entries(&mut bundle)
        .iter()
        .position(|e| e["resource"]["resourceType"] == "Condition")
        .unwrap();
    let condition = &mut entries(&mut bundle)[at]["resource"];
    condition["contained"] = json!([{
        "resourceType": "Patient",
        "id": "other",
        "identifier": [{ "system": NHS_SYSTEM, "value": victim_nhs }]
    }]);
    condition["subject"] = json!({ "reference": "#other" });

    let before = stored_state(&server).await;
    let (status, outcome) = post_message(&server, &bundle).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            format!("Bundle.entry[{at}].resource.subject"),
            "invalid".to_string()
        )],
        "{outcome}"
    );
    assert_eq!(stored_state(&server).await, before, "nothing stored");
}
