//! Shared records (review findings 2 and 8): the records more than one referral points at — the
//! person, organisations, clinicians — never let one sender read or rewrite what another stated.
//! A BaRS message is about exactly one person, the ServiceRequest's subject, and the referral is
//! pinned to what this sender stated of them; a sender restates only its own Organization and
//! the directory records it stated itself, and never the gateway's service Organizations.

use serde_json::{Value, json};
use whg::auth::Principal;

use crate::common::*;
use crate::tenancy::{WHS, WORKWELL, practice_a, service};

/// The practice the BaRS message fixtures come from (the attacker here).
const SENDER: &str = "C88902";
const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const GMC_SYSTEM: &str = "https://fhir.hl7.org.uk/Id/gmc-number";
/// The gateway's own identifier system for its configured services.
const SERVICE_SYSTEM: &str = "https://fhir.work-health-gateway.org/Id/service";
/// The registration of the referrer in `referral_for` (practice A's GP).
const A_REFERRER_GMC: &str = "7012345";

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
        "SELECT resource_type, id, version_id, CAST(content AS TEXT) FROM resources
         WHERE resource_type <> 'AuditEvent' ORDER BY resource_type, id",
    )
    .fetch_all(&mut server.db().await)
    .await
    .unwrap()
}

async fn referral_count(server: &Server) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM referrals")
        .fetch_one(&mut server.db().await)
        .await
        .unwrap()
}

/// `(id, version, content)` of the shared record registered under `system|value`.
async fn shared_record(
    server: &Server,
    resource_type: &str,
    system: &str,
    value: &str,
) -> (String, i64, String) {
    sqlx::query_as(
        "SELECT r.id, r.version_id, CAST(r.content AS TEXT) FROM identities i
         JOIN resources r ON r.resource_type = i.resource_type AND r.id = i.resource_id
         WHERE i.resource_type = $1 AND i.system = $2 AND i.value = $3",
    )
    .bind(resource_type)
    .bind(system)
    .bind(value)
    .fetch_one(&mut server.db().await)
    .await
    .unwrap_or_else(|e| panic!("no {resource_type} {system}|{value}: {e}"))
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

#[tokio::test]
async fn a_message_never_rewrites_another_practices_organization_clinician_or_a_service() {
    let server = Server::start();
    // Practice A's referral states A's Organization, its GP (by GMC number) and, from the
    // gateway's configuration, the WHS service Organization.
    let (a_referral, _) = refer(&server, &referral_for(141, WHS)).await;
    let a_org = shared_record(&server, "Organization", ODS_SYSTEM, DEFAULT_PRACTICE).await;
    let gp = shared_record(&server, "Practitioner", GMC_SYSTEM, A_REFERRER_GMC).await;
    let whs_org = shared_record(&server, "Organization", SERVICE_SYSTEM, WHS).await;

    // A later message (authored after A's referral) from another practice restates all three
    // with details of its choosing.
    let mut bundle = message_about(&nhs_number(142), "directory");
    entry_of(&mut bundle, "Practitioner")["resource"]["identifier"][0]["value"] =
        json!(A_REFERRER_GMC);
    entry_of(&mut bundle, "Practitioner")["resource"]["name"] =
        json!([{ "family": "Impostor", "given": ["Ivan"] }]);
    let performer = entries(&mut bundle)
        .iter_mut()
        .find(|e| {
            e["resource"]["resourceType"] == "Organization"
                && e["resource"].get("identifier").is_none()
        })
        .unwrap();
    performer["resource"]["name"] = json!("Call 0113 000 0000 for your referral (attacker)");
    entries(&mut bundle).push(json!({
        "fullUrl": "urn:uuid:7f3e2d1c-0b9a-4877-8665-544332211001",
        "resource": {
            "resourceType": "Organization",
            "identifier": [{ "system": ODS_SYSTEM, "value": DEFAULT_PRACTICE }],
            "name": "Surgery closed: call 0113 000 0000 (attacker)",
            "telecom": [{ "system": "phone", "value": "0113 000 0000" }]
        }
    }));
    entry_of(&mut bundle, "PractitionerRole")["resource"]["organization"] =
        json!({ "reference": "urn:uuid:7f3e2d1c-0b9a-4877-8665-544332211001" });
    let (status, answer) = post_message(&server, &bundle).await;
    assert_eq!(status, 200, "{answer}");

    // The message's referral points at the shared records, which stay as stated.
    assert_eq!(
        shared_record(&server, "Organization", ODS_SYSTEM, DEFAULT_PRACTICE).await,
        a_org
    );
    assert_eq!(
        shared_record(&server, "Practitioner", GMC_SYSTEM, A_REFERRER_GMC).await,
        gp
    );
    assert_eq!(
        shared_record(&server, "Organization", SERVICE_SYSTEM, WHS).await,
        whs_org
    );
    // What the service reads of A's referral, and of the message's, names the service as
    // configured and A's practice as A stated it.
    let whs = service(&server, WHS);
    let (_, list) = whs.get("/fhir/ServiceRequest?_count=10").await;
    let referrals: Vec<&Value> = list["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(referrals.len(), 2, "{list}");
    for sr in referrals {
        let performer = sr["performer"][0]["reference"].as_str().unwrap();
        assert_eq!(performer, format!("Organization/{}", whs_org.0), "{sr}");
    }
    let (_, org) = whs.get(&format!("/fhir/Organization/{}", a_org.0)).await;
    assert_eq!(
        org["name"], "Norfolk Park Medical Practice (synthetic)",
        "{org}"
    );
    let (_, performer) = whs.get(&format!("/fhir/Organization/{}", whs_org.0)).await;
    assert_eq!(
        performer["name"], "Sheffield Work and Health Service",
        "{performer}"
    );
    let (status, _) = whs.get(&format!("/fhir/ServiceRequest/{a_referral}")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_message_cannot_claim_the_gateways_service_identifier() {
    let server = Server::start();
    let mut to_workwell = referral_for(143, WORKWELL);
    to_workwell["referralId"] = json!("SHARED-143-WORKWELL");
    refer(&server, &to_workwell).await;
    let workwell_org = shared_record(&server, "Organization", SERVICE_SYSTEM, WORKWELL).await;

    // The sender's message carries an Organization dressed as another configured service.
    let mut bundle = message_about(&nhs_number(144), "service-identifier");
    entries(&mut bundle).push(json!({
        "fullUrl": "urn:uuid:7f3e2d1c-0b9a-4877-8665-544332211002",
        "resource": {
            "resourceType": "Organization",
            "identifier": [{ "system": SERVICE_SYSTEM, "value": WORKWELL }],
            "name": "WorkWell has closed: call 0113 000 0000 (attacker)"
        }
    }));
    let at = entries(&mut bundle).len() - 1;
    let before = stored_state(&server).await;
    let (status, outcome) = post_message(&server, &bundle).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            format!("Bundle.entry[{at}].resource.identifier[0].system"),
            "business-rule".to_string()
        )],
        "{outcome}"
    );
    assert_eq!(stored_state(&server).await, before, "nothing stored");
    assert_eq!(
        shared_record(&server, "Organization", SERVICE_SYSTEM, WORKWELL).await,
        workwell_org
    );
}

#[tokio::test]
async fn a_practice_restates_its_own_organization_and_its_own_clinicians() {
    let server = Server::start();
    let (status, answer) = post_message(&server, &message_about(&nhs_number(145), "own-1")).await;
    assert_eq!(status, 200, "{answer}");
    let (org_id, org_version, _) = shared_record(&server, "Organization", ODS_SYSTEM, SENDER).await;
    let (gp_id, gp_version, _) =
        shared_record(&server, "Practitioner", GMC_SYSTEM, "6234567").await;

    let mut moved = message_about(&nhs_number(145), "own-2");
    entry_of(&mut moved, "ServiceRequest")["resource"]["authoredOn"] =
        json!("2026-05-06T09:00:00+00:00");
    let sender = entries(&mut moved)
        .iter_mut()
        .find(|e| e["resource"]["identifier"][0]["value"] == SENDER)
        .unwrap();
    sender["resource"]["name"] = json!("Valley Road Surgery, new premises (synthetic)");
    entry_of(&mut moved, "Practitioner")["resource"]["name"][0]["family"] = json!("Singh-Patel");
    let (status, answer) = post_message(&server, &moved).await;
    assert_eq!(status, 200, "{answer}");

    let (id, version, content) = shared_record(&server, "Organization", ODS_SYSTEM, SENDER).await;
    assert_eq!((id, version), (org_id, org_version + 1));
    assert!(content.contains("new premises"), "{content}");
    let (id, version, content) =
        shared_record(&server, "Practitioner", GMC_SYSTEM, "6234567").await;
    assert_eq!((id, version), (gp_id, gp_version + 1));
    assert!(content.contains("Singh-Patel"), "{content}");
}
