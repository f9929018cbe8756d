//! Consent, enforced over HTTP at every point: intake, reads, searches, disclosures, overrides,
//! withdrawal, the audit trail and the evaluation export. Each test fails if its check is removed.

mod common;

use common::*;
use serde_json::{Value, json};
use whg::auth::{Principal, Role, scope};

const WHS: &str = "sheffield-whs";
const WORKWELL: &str = "workwell-south-tyneside";

fn practice(server: &Server) -> Actor<'_> {
    server.as_(Principal::practice(DEFAULT_PRACTICE))
}

fn service<'a>(server: &'a Server, id: &str) -> Actor<'a> {
    server.as_(Principal::service(id))
}

fn ig(server: &Server) -> Actor<'_> {
    server.as_(Principal::new(Role::InformationGovernance, "ig-team"))
}

fn fixture_consent(name: &str, patient: &str) -> Value {
    let text = std::fs::read_to_string(
        root()
            .join("fixtures/consent/valid")
            .join(format!("{name}.json")),
    )
    .unwrap();
    serde_json::from_str(&text.replace("Patient/example", &format!("Patient/{patient}"))).unwrap()
}

async fn decide(actor: &Actor<'_>, body: Value) -> Value {
    let (status, _, answer) = actor.post("/api/v1/disclosures/$decide", &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn db_count(server: &Server, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&mut server.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_referral_without_agreement_stores_nothing_about_the_person_and_is_audited() {
    let server = Server::start();
    let mut r = referral_for(1, WHS);
    r["consent"]["patientAgreed"] = json!(false);
    let (status, _, outcome) = server.post_json("/api/v1/referrals", &r).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            "consent.patientAgreed".to_string(),
            "business-rule".to_string()
        )]
    );
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("refuses disclose of referral to work-health-service"),
        "{outcome}"
    );
    assert_eq!(
        db_count(
            &server,
            "SELECT COUNT(*) FROM resources WHERE resource_type != 'AuditEvent'"
        )
        .await,
        0
    );
    // The refusal is audited, without the person.
    let (_, events) = ig(&server).get("/fhir/AuditEvent?outcome=4").await;
    assert_eq!(events["total"], 1, "{events}");
    let text = events.to_string();
    assert!(!text.contains(&nhs_number(1)) && !text.contains("Patient/"));
    assert!(text.contains("CONSENT-TEST-1"));
}

#[tokio::test]
async fn a_recorded_refusal_beats_a_new_referrals_agreement() {
    let server = Server::start();
    let (_, patient) = refer(&server, &referral_for(2, WHS)).await;
    // The person tells their GP they no longer want the service to have anything.
    let mut refusal = fixture_consent("05-nothing-to-dwp", &patient);
    refusal["provision"]["actor"][0]["role"]["coding"][1]["code"] = json!("work-health-service");
    let (status, _, stored) = practice(&server).post("/fhir/Consent", &refusal).await;
    assert_eq!(status, 201, "{stored}");
    let mut again = referral_for(2, WHS);
    again["referralId"] = json!("CONSENT-TEST-2-AGAIN");
    let (status, _, outcome) = server.post_json("/api/v1/referrals", &again).await;
    assert_eq!(status, 422, "{outcome}");
    let why = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        why.contains(&format!(
            "Consent/{} refuses",
            stored["id"].as_str().unwrap()
        )),
        "{why}"
    );
}

#[tokio::test]
async fn a_service_sees_only_referrals_addressed_to_it() {
    let server = Server::start();
    let (to_whs, whs_patient) = refer(&server, &referral_for(3, WHS)).await;
    let (to_workwell, workwell_patient) = refer(&server, &referral_for(4, WORKWELL)).await;

    let whs = service(&server, WHS);
    let (_, found) = whs.get("/fhir/ServiceRequest").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entry"][0]["resource"]["id"], json!(to_whs));
    assert_eq!(
        whs.get(&format!("/fhir/ServiceRequest/{to_whs}")).await.0,
        200
    );
    assert_eq!(
        whs.get(&format!("/fhir/Patient/{whs_patient}")).await.0,
        200
    );
    for other in [
        format!("ServiceRequest/{to_workwell}"),
        format!("Patient/{workwell_patient}"),
    ] {
        let (status, outcome) = whs.get(&format!("/fhir/{other}")).await;
        assert_eq!(status, 404, "{other}: {outcome}");
    }
    // Asking by the other person's NHS number finds nothing either.
    let (_, found) = whs
        .get(&format!(
            "/fhir/ServiceRequest?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{}",
            nhs_number(4)
        ))
        .await;
    assert_eq!(found["total"], 0);

    // Another practice sees neither; the sending practice sees both.
    let other_practice = server.as_(Principal::practice("C88999"));
    assert_eq!(
        other_practice
            .get(&format!("/fhir/ServiceRequest/{to_whs}"))
            .await
            .0,
        404
    );
    assert_eq!(
        other_practice.get("/fhir/ServiceRequest").await.1["total"],
        0
    );
    assert_eq!(
        practice(&server).get("/fhir/ServiceRequest").await.1["total"],
        2
    );
    // Information governance reads the audit trail, not records.
    assert_eq!(
        ig(&server)
            .get(&format!("/fhir/ServiceRequest/{to_whs}"))
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn withdrawal_stops_reads_at_once_and_searches_do_not_leak_it() {
    let server = Server::start();
    let (first, first_patient) = refer(&server, &referral_for(5, WHS)).await;
    let (second, _) = refer(&server, &referral_for(6, WHS)).await;
    let whs = service(&server, WHS);
    assert_eq!(whs.get("/fhir/ServiceRequest").await.1["total"], 2);
    assert_eq!(
        whs.get(&format!("/fhir/ServiceRequest/{first}")).await.0,
        200
    );

    // The person withdraws their agreement to the service having their referral.
    let mut consent = consent_for(&server, &first_patient, "work-health-service").await;
    consent["status"] = json!("inactive");
    let id = consent["id"].as_str().unwrap().to_string();
    let (status, headers, updated) = practice(&server)
        .put(&format!("/fhir/Consent/{id}"), &consent)
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["meta"]["versionId"], "2");
    // R4 update (http://hl7.org/fhir/R4/http.html#update): the answer carries the new version's
    // ETag and Last-Modified.
    assert_eq!(headers["etag"], "W/\"2\"");
    assert!(headers.contains_key("last-modified"));

    let (status, outcome) = whs.get(&format!("/fhir/ServiceRequest/{first}")).await;
    assert_eq!(status, 403, "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("consent does not allow"),
        "{outcome}"
    );
    assert_eq!(
        whs.get(&format!("/fhir/Patient/{first_patient}")).await.0,
        403
    );
    // The search neither returns it nor counts it, and paging does not step over a hole.
    let (_, page) = whs.get("/fhir/ServiceRequest?_count=1").await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["entry"][0]["resource"]["id"], json!(second));
    assert!(
        !page["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next"),
        "{page}"
    );
    // The service can still see that consent was withdrawn.
    let (status, seen) = whs.get(&format!("/fhir/Consent/{id}")).await;
    assert_eq!((status, seen["status"].as_str()), (200, Some("inactive")));
    // The sending practice still reads its own referral.
    assert_eq!(
        practice(&server)
            .get(&format!("/fhir/ServiceRequest/{first}"))
            .await
            .0,
        200
    );

    // A stale version cannot be written over the withdrawal.
    consent["status"] = json!("active");
    let r = server
        .client
        .put(server.url(&format!("/fhir/Consent/{id}")))
        .header(
            "authorization",
            format!("Bearer {}", practice(&server).token),
        )
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(serde_json::to_vec(&consent).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 412);
}

#[tokio::test]
async fn letters_waiting_for_the_practice_are_refused_at_the_next_attempt_after_withdrawal() {
    let server = Server::start();
    let (_, patient) = refer(&server, &referral_for(7, WHS)).await;
    let whs = service(&server, WHS);
    let letter = json!({
        "patient": format!("Patient/{patient}"),
        "recipient": "referring-practice",
        "recipientOrganisation": format!("https://fhir.nhs.uk/Id/ods-organization-code|{DEFAULT_PRACTICE}"),
        "dataClass": "adviser-letter",
        "document": "DocumentReference/letter-1",
    });
    let answer = decide(&whs, letter.clone()).await;
    assert_eq!(answer["decision"], "permit", "{answer}");
    // Another practice is not the referring practice.
    let mut elsewhere = letter.clone();
    elsewhere["recipientOrganisation"] =
        json!("https://fhir.nhs.uk/Id/ods-organization-code|C88999");
    assert_eq!(decide(&whs, elsewhere).await["decision"], "deny");

    let mut feedback = consent_for(&server, &patient, "referring-practice").await;
    feedback["status"] = json!("inactive");
    let id = feedback["id"].as_str().unwrap().to_string();
    let (status, _, _) = whs.put(&format!("/fhir/Consent/{id}"), &feedback).await;
    assert_eq!(status, 200, "an adviser records the withdrawal");
    let answer = decide(&whs, letter).await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains(&format!(
            "Consent/{id} was withdrawn or declined, and so refuses disclose of adviser-letter"
        )),
        "{answer}"
    );
}

#[tokio::test]
async fn consent_recorded_by_an_adviser_at_first_contact_hides_diagnoses() {
    let server = Server::start();
    let (sr_id, patient) = refer(&server, &referral_for(8, WHS)).await;
    let whs = service(&server, WHS);
    let (_, sr) = whs.get(&format!("/fhir/ServiceRequest/{sr_id}")).await;
    let condition = sr["reasonReference"][0]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(whs.get(&format!("/fhir/{condition}")).await.0, 200);
    // After the first conversation the person asks that the service not hold their diagnoses.
    let refusal = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient}") },
        "dateTime": "2026-06-01T10:00:00+01:00",
        "provision": {
            "type": "deny",
            "actor": [{
                "role": { "coding": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/consent-recipient", "code": "work-health-service" }] },
                "reference": { "identifier": { "system": "https://fhir.work-health-gateway.org/Id/service", "value": WHS } },
            }],
            "class": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/consent-data-class", "code": "diagnosis" }],
        },
    });
    let (status, _, stored) = whs.post("/fhir/Consent", &refusal).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(whs.get(&format!("/fhir/{condition}")).await.0, 403);
    assert_eq!(
        whs.get(&format!("/fhir/ServiceRequest/{sr_id}")).await.0,
        200
    );
    // A service cannot record consent for a person it has no referral for: the patient field is
    // wrong (422 there), and the answer is the same whether the gateway holds the person or not,
    // and whether they are named by id or by NHS number, so it tells the caller nothing.
    let other = service(&server, WORKWELL);
    let answer = |outcome: &Value| {
        assert_eq!(
            outcome["issue"][0]["expression"][0], "Consent.patient",
            "{outcome}"
        );
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (status, _, outcome) = other.post("/fhir/Consent", &refusal).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(answer(&outcome).contains(&format!(
        "Patient/{patient} is not a person you have referred"
    )));
    let mut nobody = refusal.clone();
    nobody["patient"] = json!({ "reference": "Patient/0190aaaa-0000-7000-8000-000000000000" });
    let (status, _, outcome) = other.post("/fhir/Consent", &nobody).await;
    assert_eq!(status, 422, "{outcome}");
    let by_number = |n: usize| {
        let mut c = refusal.clone();
        c["patient"] = json!({ "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number(n) } });
        c
    };
    let (s1, _, held) = other.post("/fhir/Consent", &by_number(8)).await;
    let (s2, _, not_held) = other.post("/fhir/Consent", &by_number(9_999)).await;
    assert_eq!((s1, s2), (422, 422), "{held} {not_held}");
    assert_eq!(
        answer(&held),
        answer(&not_held),
        "held and not held read alike"
    );
    assert!(
        !answer(&held).contains(&patient),
        "the id is not given away"
    );
    let mut bad = by_number(8);
    bad["patient"]["identifier"]["value"] = json!("9990000019");
    let (status, _, outcome) = other.post("/fhir/Consent", &bad).await;
    assert_eq!(status, 422);
    assert_eq!(
        outcome["issue"][0]["expression"][0], "Consent.patient.identifier.value",
        "{outcome}"
    );

    // The service the person was referred to names them by NHS number, as its own system knows
    // them: the gateway finds the id, and the Consent references it.
    let mut again = by_number(8);
    again["provision"]["class"][0]["code"] = json!("outcome");
    let (status, _, stored) = whs.post("/fhir/Consent", &again).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["patient"]["reference"], format!("Patient/{patient}"));
}

#[tokio::test]
async fn employer_disclosure_needs_the_persons_approval_of_that_document() {
    let server = Server::start();
    let (_, patient) = refer(&server, &referral_for(9, WHS)).await;
    let whs = service(&server, WHS);
    let ask = |document: &str, class: &str| {
        json!({
            "patient": format!("Patient/{patient}"),
            "recipient": "employer",
            "dataClass": class,
            "document": document,
        })
    };
    assert_eq!(
        decide(
            &whs,
            ask("DocumentReference/rtw-letter-1", "adviser-letter")
        )
        .await["decision"],
        "deny",
        "nothing approved yet"
    );
    let mut approval = fixture_consent("04-employer-letter-approved", &patient);
    approval["provision"]["period"] = json!({ "start": "2026-01-01" });
    assert_eq!(whs.post("/fhir/Consent", &approval).await.0, 201);
    let approved = decide(
        &whs,
        ask("DocumentReference/rtw-letter-1", "adviser-letter"),
    )
    .await;
    assert_eq!(approved["decision"], "permit", "{approved}");
    assert!(
        approved["consent"]
            .as_str()
            .unwrap()
            .starts_with("Consent/")
    );
    assert_eq!(
        decide(&whs, ask("DocumentReference/another", "adviser-letter")).await["decision"],
        "deny"
    );
    assert_eq!(
        decide(&whs, ask("DocumentReference/rtw-letter-1", "diagnosis")).await["decision"],
        "deny",
        "diagnoses are left out unless covered"
    );
}

#[tokio::test]
async fn an_override_acts_against_a_deny_for_a_stated_reason_and_is_reviewed() {
    let server = Server::start();
    let (_, patient) = refer(&server, &referral_for(10, WHS)).await;
    let mut refusal = fixture_consent("05-nothing-to-dwp", &patient);
    refusal["provision"]["actor"][0]["role"]["coding"][1]["code"] = json!("employer");
    let whs = service(&server, WHS);
    assert_eq!(whs.post("/fhir/Consent", &refusal).await.0, 201);
    let employer = "https://fhir.work-health-gateway.org/Id/employer|gatewise-security";
    let ask = json!({
        "patient": format!("Patient/{patient}"),
        "recipient": "employer",
        "recipientOrganisation": employer,
        "dataClass": "adviser-letter",
        "document": "DocumentReference/fitness-to-drive",
    });
    assert_eq!(decide(&whs, ask.clone()).await["decision"], "deny");

    let request = json!({
        "patient": format!("Patient/{patient}"),
        "recipient": "employer",
        "recipientOrganisation": employer,
        "dataClasses": ["adviser-letter"],
        "reason": "risk-to-others",
        "justification": "Security guard with untreated sleep apnoea; falls asleep on night shifts operating gates.",
        "hours": 24,
    });
    // Without the override permission: refused.
    let (status, headers, _) = whs.post("/api/v1/consent-overrides", &request).await;
    assert_eq!(status, 403);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let mut clinician = Principal::service(WHS);
    clinician.scopes.push(scope::CONSENT_OVERRIDE.into());
    let clinician = server.as_(clinician);
    // Every problem at once.
    let (status, _, outcome) = clinician
        .post(
            "/api/v1/consent-overrides",
            &json!({ "patient": "x", "recipient": "boss", "dataClasses": [], "reason": "curiosity", "justification": "because", "hours": 1000 }),
        )
        .await;
    assert_eq!(status, 422);
    // patient, recipient, recipientOrganisation, dataClasses, reason, justification, hours.
    assert_eq!(issue_keys(&outcome).len(), 7, "{outcome}");
    let (status, _, requested) = clinician.post("/api/v1/consent-overrides", &request).await;
    assert_eq!(status, 201, "{requested}");
    assert_eq!(requested["state"], "requested");
    let id = requested["id"].as_str().unwrap().to_string();
    // A request permits nothing until information governance grants it.
    assert_eq!(decide(&whs, ask.clone()).await["decision"], "deny");
    let ig = ig(&server);
    let (status, _, granted) = ig
        .post(
            &format!("/api/v1/consent-overrides/{id}/grant"),
            &json!({ "note": "Risk to others outweighs the refusal for night-shift gate duty." }),
        )
        .await;
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["state"], "granted");
    let answer = decide(&whs, ask.clone()).await;
    assert_eq!(answer["decision"], "permit", "{answer}");
    assert_eq!(answer["override"], granted["id"]);
    let mut diagnosis = ask.clone();
    diagnosis["dataClass"] = json!("diagnosis");
    assert_eq!(
        decide(&whs, diagnosis).await["decision"],
        "deny",
        "only what was overridden"
    );

    // Listed for review until reviewed.
    let (_, list) = ig.get("/api/v1/consent-overrides?unreviewed=true").await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["overrides"][0]["reason"], "risk-to-others");
    let (status, _, reviewed) = ig
        .post(
            &format!("/api/v1/consent-overrides/{id}/review"),
            &json!({ "outcome": "appropriate", "note": "Proportionate; employer told only of fitness for night shifts." }),
        )
        .await;
    assert_eq!(status, 200, "{reviewed}");
    assert_eq!(
        ig.get("/api/v1/consent-overrides?unreviewed=true").await.1["total"],
        0
    );
    assert_eq!(ig.get("/api/v1/consent-overrides").await.1["total"], 1);
    assert_eq!(whs.get("/api/v1/consent-overrides").await.0, 403);
    // The override is in the audit trail.
    let (_, events) = ig
        .get(&format!("/fhir/AuditEvent?patient=Patient/{patient}"))
        .await;
    let text = events.to_string();
    assert!(
        text.contains("consent-override") && text.contains("the override acted under"),
        "{events}"
    );
}

#[tokio::test]
async fn every_decision_and_read_is_in_the_audit_trail_for_information_governance() {
    let server = Server::start();
    let (sr_id, patient) = refer(&server, &referral_for(11, WHS)).await;
    let whs = service(&server, WHS);
    assert_eq!(
        whs.get(&format!("/fhir/ServiceRequest/{sr_id}")).await.0,
        200
    );
    let mut consent = consent_for(&server, &patient, "work-health-service").await;
    consent["status"] = json!("inactive");
    let id = consent["id"].as_str().unwrap().to_string();
    practice(&server)
        .put(&format!("/fhir/Consent/{id}"), &consent)
        .await;
    assert_eq!(
        whs.get(&format!("/fhir/ServiceRequest/{sr_id}")).await.0,
        403
    );

    let ig = ig(&server);
    let (status, events) = ig
        .get(&format!(
            "/fhir/AuditEvent?patient=Patient/{patient}&_count=100"
        ))
        .await;
    assert_eq!(status, 200, "{events}");
    let entries: Vec<&Value> = events["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let with = |subtype: &str, outcome: &str| {
        entries
            .iter()
            .filter(|e| e["subtype"][0]["code"] == subtype && e["outcome"] == outcome)
            .count()
    };
    assert_eq!(with("create", "0"), 1, "intake decision");
    assert!(with("read", "0") >= 2, "permitted reads");
    assert_eq!(with("read", "4"), 1, "the read refused after withdrawal");
    assert!(with("update", "0") >= 1, "the withdrawal");
    let refused = entries
        .iter()
        .find(|e| e["subtype"][0]["code"] == "read" && e["outcome"] == "4")
        .unwrap();
    assert!(
        refused["outcomeDesc"]
            .as_str()
            .unwrap()
            .contains("was withdrawn or declined, and so refuses access of referral"),
        "{refused}"
    );
    assert_eq!(
        refused["agent"][0]["who"]["identifier"]["value"],
        "service:sheffield-whs"
    );
    let (_, by_agent) = ig.get("/fhir/AuditEvent?agent=sheffield-whs").await;
    assert!(by_agent["total"].as_u64().unwrap() >= 2);
    for e in &entries {
        whg::fhir::resource::check_strict(e).unwrap();
    }
    check_with_independent_fhir(&entries.iter().map(|e| (*e).clone()).collect::<Vec<_>>());
    // Append-only: nobody can change or delete an event, and only IG reads them.
    let event_id = entries[0]["id"].as_str().unwrap();
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
        let (status, _, _) = ig
            .send(
                method,
                &format!("/fhir/AuditEvent/{event_id}"),
                Some(entries[0]),
            )
            .await;
        assert_eq!(status, 405);
    }
    assert_eq!(whs.get("/fhir/AuditEvent").await.0, 403);
    assert_eq!(
        practice(&server)
            .get(&format!("/fhir/AuditEvent/{event_id}"))
            .await
            .0,
        403
    );
    // No NHS number, name or date of birth in the logs.
    let logs = server.logs();
    assert!(!logs.contains(&nhs_number(11)));
}

#[tokio::test]
async fn the_evaluation_export_holds_only_people_who_agreed_pseudonymised() {
    let server = Server::start();
    let agreed = referral_for(12, WHS);
    let mut declined = referral_for(13, WHS);
    declined["consent"]["evaluation"] = json!(false);
    refer(&server, &agreed).await;
    refer(&server, &declined).await;
    let export = |name: &str| {
        let out = server.dir.path().join(name);
        let status = std::process::Command::new(WHG)
            .args(["export", "--out"])
            .arg(&out)
            .arg("--config")
            .arg(server.dir.path().join("test.toml"))
            .arg("--database-url")
            .arg(server.database_url())
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(out).unwrap()
    };
    let first = export("export-1.ndjson");
    let lines: Vec<Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{first}");
    let line = &lines[0];
    assert_eq!(line["referralMonth"], "2026-03");
    assert_eq!(line["ageBandAtReferral"], "45-54");
    assert_eq!(line["route"], "gp");
    assert_eq!(line["employmentStatusAtReferral"], "off-sick-work-related");
    // What the evaluations needed (docs/reports.md#the-evaluation-export), still naming no one.
    assert_eq!(line["place"], "S2");
    assert_eq!(line["stage"], "received");
    assert_eq!(line["returning"], false);
    assert_eq!(line["ethnicity"], "not-recorded");
    assert_eq!(line["employerSize"], "50-249");
    assert_eq!(
        line["conditionCategories"].as_array().map(Vec::is_empty),
        Some(false)
    );
    assert_eq!(line["followUps"], serde_json::json!([]));
    for secret in [
        nhs_number(12),
        nhs_number(13),
        "Whitworth".into(),
        "1979".into(),
    ] {
        assert!(!first.contains(&secret), "{secret} in the export");
    }
    let name = agreed["patient"]["name"]["family"].as_str().unwrap();
    assert!(!first.contains(name));
    // Stable pseudonyms: the same person, the same id, export after export.
    assert_eq!(export("export-2.ndjson"), first);
    let (_, events) = ig(&server).get("/fhir/AuditEvent?_count=100").await;
    assert!(events.to_string().contains("evaluation-export"));
}

#[tokio::test]
async fn the_published_consent_examples_are_accepted_and_the_invalid_ones_explained() {
    let server = Server::start();
    let (_, patient) = refer(&server, &referral_for(14, WHS)).await;
    let mut stored = Vec::new();
    for f in fixtures("consent/valid") {
        let name = f.file_stem().unwrap().to_str().unwrap();
        let consent = fixture_consent(name, &patient);
        // An employer's access is the adviser's to record with the person; the rest the GP's.
        let recorder = if name.contains("employer") {
            service(&server, WHS)
        } else {
            practice(&server)
        };
        let (status, headers, body) = recorder.post("/fhir/Consent", &consent).await;
        assert_eq!(status, 201, "{name}: {body}");
        // R4 create (http://hl7.org/fhir/R4/http.html#create): the Location "contains the new
        // Logical Id and Version Id of the created resource version", [base]/[type]/[id]/_history/[vid],
        // and the ETag carries the version.
        let id = body["id"].as_str().unwrap();
        assert!(
            headers["location"]
                .to_str()
                .unwrap()
                .ends_with(&format!("/fhir/Consent/{id}/_history/1")),
            "{:?}",
            headers["location"]
        );
        assert_eq!(headers["etag"], "W/\"1\"");
        assert!(headers.contains_key("last-modified"));
        whg::fhir::resource::check_strict(&body).unwrap();
        stored.push(body);
    }
    check_with_independent_fhir(&stored);
    for f in fixtures("consent/invalid") {
        let name = f.file_stem().unwrap().to_str().unwrap();
        let consent = fixture_consent(&format!("../invalid/{name}"), &patient);
        let expected = read_json(&expected_path(&f));
        let (status, _, outcome) = practice(&server).post("/fhir/Consent", &consent).await;
        assert_eq!(
            status,
            expected["status"].as_u64().unwrap() as u16,
            "{name}: {outcome}"
        );
        let want = expected_issue_keys(&expected);
        assert_eq!(issue_keys(&outcome), want, "{name}");
    }
    let (_, all) = practice(&server)
        .get(&format!(
            "/fhir/Consent?patient=Patient/{patient}&_count=100"
        ))
        .await;
    // Three from the referral, five examples.
    assert_eq!(all["total"], 3 + 5, "{all}");
}

#[tokio::test]
async fn every_route_but_health_and_metadata_needs_a_valid_token() {
    let server = Server::start();
    let anonymous = http();
    for (method, path) in [
        (reqwest::Method::GET, "/fhir/ServiceRequest"),
        (reqwest::Method::GET, "/fhir/Patient/x"),
        (reqwest::Method::POST, "/api/v1/referrals"),
        (reqwest::Method::POST, "/fhir/$process-message"),
        (reqwest::Method::POST, "/fhir/Consent"),
        (reqwest::Method::GET, "/fhir/AuditEvent"),
        (reqwest::Method::POST, "/api/v1/disclosures/$decide"),
        (reqwest::Method::GET, "/api/v1/consent-overrides"),
    ] {
        for token in [None, Some("not-a-token"), Some(&*forged_token())] {
            let mut req = anonymous
                .request(method.clone(), server.url(path))
                .header("content-type", "application/fhir+json")
                .body("{}");
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{method} {path}");
            assert!(
                r.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer")
            );
            let outcome: Value = r.json().await.unwrap();
            assert_eq!(outcome["issue"][0]["code"], "login");
        }
    }
    for path in ["/fhir/metadata", "/health/live", "/health/ready"] {
        assert_eq!(
            anonymous
                .get(server.url(path))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // A practice sends only as itself; a service does not send referrals.
    let mut other = referral_for(15, WHS);
    other["practice"]["odsCode"] = json!("C88999");
    let (status, headers, outcome) = practice(&server).post("/api/v1/referrals", &other).await;
    assert_eq!(status, 403, "{outcome}");
    // It says so: the wrong practice, not a missing scope (RFC 6750's insufficient_scope is for
    // scopes, and the token's are fine).
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("comes from C88999 but the access token is for C88901"),
        "{outcome}"
    );
    assert!(
        !headers
            .get("www-authenticate")
            .is_some_and(|h| h.to_str().unwrap().contains("insufficient_scope"))
    );
    let (status, _, _) = service(&server, WHS)
        .post("/api/v1/referrals", &referral_for(16, WHS))
        .await;
    assert_eq!(status, 403);
}

/// A well-formed token signed by a key the gateway does not trust.
fn forged_token() -> String {
    let key = whg::auth::SigningKey::generate();
    whg::auth::TokenIssuer::new(key, &whg::config::Config::defaults().auth).issue(
        &Principal::practice(DEFAULT_PRACTICE),
        std::time::Duration::from_secs(60),
    )
}

/// The decision cases in fixtures/consent/decisions, through the pure decision function.
#[test]
fn decision_fixtures_give_their_expected_answers() {
    use whg::consent::{Action, Code, DataClass, Purpose, Question, Recipient, RecipientClass};
    let dir = root().join("fixtures/consent/decisions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 9);
    for f in files {
        let case = read_json(&f);
        let consents: Vec<_> = case["consents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                whg::consent::read_consent(c).unwrap_or_else(|e| panic!("{}: {e:?}", f.display()))
            })
            .collect();
        let overrides: Vec<_> = case["overrides"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|o| whg::access::override_from_record(o).unwrap())
            .collect();
        for q in case["questions"].as_array().unwrap() {
            let question = Question {
                recipient: Recipient {
                    class: RecipientClass::from_code(q["recipient"].as_str().unwrap()).unwrap(),
                    organisation: q["organisation"].as_str().map(str::to_string),
                },
                action: Action::from_code(q["action"].as_str().unwrap()).unwrap(),
                purpose: Purpose::from_code(q["purpose"].as_str().unwrap()).unwrap(),
                class: DataClass::from_code(q["dataClass"].as_str().unwrap()).unwrap(),
                at: chrono::DateTime::parse_from_rfc3339(q["at"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&chrono::Utc),
                document: q["document"].as_str().map(str::to_string),
            };
            let d = whg::consent::decide(&consents, &overrides, &question);
            let basis = match &d.basis {
                whg::consent::Basis::NoConsent => "no-consent".to_string(),
                whg::consent::Basis::DocumentNotApproved { .. } => "document-not-approved".into(),
                whg::consent::Basis::Overridden { override_id, .. } => {
                    format!("override {override_id}")
                }
                whg::consent::Basis::Permitted { consent }
                | whg::consent::Basis::Refused { consent }
                | whg::consent::Basis::Withdrawn { consent } => consent.clone(),
            };
            let effect = if d.permitted() { "permit" } else { "deny" };
            assert_eq!(
                (effect, basis.as_str()),
                (q["expect"].as_str().unwrap(), q["basis"].as_str().unwrap()),
                "{}: {q}: {}",
                f.display(),
                d.reason
            );
        }
    }
}

/// The profile is valid FHIR, binds only published ValueSets, and everything the gateway emits or
/// publishes as a Consent claims it and reads as the model.
#[test]
fn the_consent_profile_describes_what_is_emitted_and_published() {
    let sd = read_json(&root().join("profiles/StructureDefinition-whg-consent.json"));
    whg::fhir::resource::check_strict(&sd).unwrap();
    let url = sd["url"].as_str().unwrap();
    for e in sd["differential"]["element"].as_array().unwrap() {
        if let Some(vs) = e["binding"]["valueSet"].as_str()
            && let Some(name) = vs.strip_prefix("https://fhir.work-health-gateway.org/ValueSet/")
        {
            assert!(
                root()
                    .join(format!("profiles/ValueSet-{name}.json"))
                    .exists(),
                "{vs} is not published"
            );
        }
    }
    let claims = |c: &Value| {
        c["meta"]["profile"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == url))
    };
    for f in fixtures("consent/valid") {
        let c = read_json(&f);
        assert!(claims(&c), "{}", f.display());
        whg::consent::read_consent(&c).unwrap();
    }
    let config = whg::config::Config::defaults();
    let ctx = config.intake_now();
    for f in fixtures("referrals/valid") {
        let submission = whg::intake::practice_referral(&read_json(&f), &ctx).unwrap();
        let consents: Vec<&Value> = submission
            .entries
            .iter()
            .filter(|e| e.resource_type == "Consent")
            .map(|e| &e.resource)
            .collect();
        assert!(!consents.is_empty());
        for c in consents {
            assert!(claims(c), "{}", f.display());
            whg::consent::read_consent(c).unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
        }
    }
}

/// Every field of a Consent deleted, nulled or retyped: always a 201 or a 4xx OperationOutcome
/// with issues, never a 500.
#[tokio::test]
async fn mangled_consents_get_a_4xx_never_a_500() {
    let server = Server::start();
    let (_, patient) = refer(&server, &referral_for(17, WHS)).await;
    let doc = fixture_consent("01-service-without-diagnoses", &patient);
    let mut paths = Vec::new();
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, c)| {
                out.push(format!("{at}/{k}"));
                walk(c, format!("{at}/{k}"), out)
            }),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
                out.push(format!("{at}/{i}"));
                walk(c, format!("{at}/{i}"), out)
            }),
            _ => {}
        }
    }
    walk(&doc, String::new(), &mut paths);
    let actor = practice(&server);
    let mut statuses = std::collections::BTreeMap::new();
    for p in &paths {
        for replacement in [
            None,
            Some(Value::Null),
            Some(json!(7)),
            Some(json!("")),
            Some(json!([])),
            Some(json!({"x": 1})),
        ] {
            let mut mangled = doc.clone();
            let (parent, last) = p.rsplit_once('/').unwrap();
            let target = if parent.is_empty() {
                Some(&mut mangled)
            } else {
                mangled.pointer_mut(parent)
            };
            match (target, &replacement) {
                (Some(Value::Object(m)), None) => drop(m.remove(last)),
                (Some(Value::Object(m)), Some(v)) => drop(m.insert(last.to_string(), v.clone())),
                (Some(Value::Array(a)), None) => drop(a.remove(last.parse().unwrap())),
                (Some(Value::Array(a)), Some(v)) => a[last.parse::<usize>().unwrap()] = v.clone(),
                _ => {}
            }
            let (status, _, body) = actor.post("/fhir/Consent", &mangled).await;
            assert!(
                status == 201 || (400..500).contains(&status),
                "{p} {replacement:?}: {status} {body}"
            );
            if status != 201 {
                assert!(!issue_keys(&body).is_empty(), "{p}");
            }
            *statuses.entry(status).or_insert(0) += 1;
        }
    }
    assert!(statuses.len() >= 3, "{statuses:?}");
}

/// R4 create (http://hl7.org/fhir/R4/http.html#create): "If an id is provided, the server SHALL
/// ignore it." A Consent posted with an id is stored under one the gateway assigns, and naming
/// another Consent's id changes nothing of it.
#[tokio::test]
async fn a_consent_created_with_an_id_gets_its_own() {
    let server = Server::start();
    let (_, patient) = refer(&server, &referral_for(9, WHS)).await;
    let mut first = fixture_consent("05-nothing-to-dwp", &patient);
    first["provision"]["actor"][0]["role"]["coding"][1]["code"] = json!("work-health-service");
    let (status, _, stored) = practice(&server).post("/fhir/Consent", &first).await;
    assert_eq!(status, 201, "{stored}");
    let existing = stored["id"].as_str().unwrap().to_string();

    let mut second = first.clone();
    second["id"] = json!(existing);
    second["meta"] = json!({ "versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z" });
    second["status"] = json!("inactive");
    let (status, _, created) = practice(&server).post("/fhir/Consent", &second).await;
    assert_eq!(status, 201, "{created}");
    assert_ne!(created["id"], json!(existing), "{created}");
    assert_eq!(created["meta"]["versionId"], "1", "{created}");
    let (_, unchanged) = practice(&server)
        .get(&format!("/fhir/Consent/{existing}"))
        .await;
    assert_eq!(unchanged["status"], first["status"], "{unchanged}");
    assert_eq!(unchanged["meta"]["versionId"], "1");
}

/// R4 Consent (http://hl7.org/fhir/R4/consent.html) names who may receive information as a
/// `provision.actor` with a `role` and a `reference`; other systems use v3 ParticipationType
/// `IRCP` ("information recipient") for it rather than the gateway's recipient classes. The
/// gateway places such an actor itself (src/consent/standard.rs), keeps the sender's coding, and
/// refuses only an organisation it cannot place, saying why. Before, both were refused.
#[tokio::test]
async fn a_consent_in_standard_r4_terms_is_read_as_the_person_meant_it() {
    let server = Server::start();
    let mut r = referral_for(21, WHS);
    r["consent"]["feedbackToPractice"] = json!(false);
    let (_, patient) = refer(&server, &r).await;
    let whs = service(&server, WHS);
    let letter = json!({
        "patient": format!("Patient/{patient}"),
        "recipient": "referring-practice",
        "recipientOrganisation": format!("https://fhir.nhs.uk/Id/ods-organization-code|{DEFAULT_PRACTICE}"),
        "dataClass": "adviser-letter",
        "document": "DocumentReference/letter-1",
    });
    assert_eq!(decide(&whs, letter.clone()).await["decision"], "deny");

    // Feedback to the practice, in R4's terms only: IRCP naming the practice by ODS code.
    let mut consent = fixture_consent("02-feedback-to-practice", &patient);
    let roles = consent["provision"]["actor"][0]["role"]["coding"]
        .as_array_mut()
        .unwrap();
    roles.retain(|c| c["code"] == "IRCP");
    assert_eq!(roles.len(), 1);
    let (status, _, stored) = practice(&server).post("/fhir/Consent", &consent).await;
    assert_eq!(status, 201, "{stored}");
    let stored_roles = &stored["provision"]["actor"][0]["role"]["coding"];
    assert_eq!(
        stored_roles[0]["code"], "IRCP",
        "the sender's coding is kept"
    );
    assert_eq!(stored_roles[1]["code"], "referring-practice", "{stored}");
    assert_eq!(decide(&whs, letter).await["decision"], "permit");

    // A service's adviser may name, in the same terms, a practice that referred the person.
    let (status, _, by_service) = whs.post("/fhir/Consent", &consent).await;
    assert_eq!(status, 201, "{by_service}");
    assert_eq!(
        by_service["provision"]["actor"][0]["role"]["coding"][1]["code"],
        "referring-practice"
    );

    // An organisation that is neither the service nor the practice cannot be placed.
    consent["provision"]["actor"][0]["reference"] = json!({ "identifier": { "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y01234" } });
    let (status, _, outcome) = practice(&server).post("/fhir/Consent", &consent).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            "Consent.provision.actor[0].reference".to_string(),
            "code-invalid".to_string()
        )]
    );
    let why = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        why.contains("Y01234") && why.contains("could be an employer"),
        "{why}"
    );

    // A permit narrowed by an element the gateway does not apply would be read wider.
    let mut narrowed = fixture_consent("02-feedback-to-practice", &patient);
    narrowed["provision"]["securityLabel"] = json!([{ "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R" }]);
    let (status, _, outcome) = practice(&server).post("/fhir/Consent", &narrowed).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [(
            "Consent.provision.securityLabel".to_string(),
            "not-supported".to_string()
        )]
    );
}

/// R4 create and update (http://hl7.org/fhir/R4/http.html#ins-return): `Prefer:
/// return=minimal` answers with no body, `return=OperationOutcome` with an outcome, and
/// otherwise the resource; each with its ETag and, for a create, its versioned Location.
#[tokio::test]
async fn creates_and_updates_answer_as_the_client_prefers() {
    let server = Server::start();
    let (_, patient) = refer(&server, &referral_for(22, WHS)).await;
    let consent = fixture_consent("02-feedback-to-practice", &patient);
    let gp = practice(&server);
    let send = |method: reqwest::Method, path: String, prefer: &'static str, body: Value| {
        gp.request(method, &path)
            .header("content-type", "application/fhir+json")
            .header("prefer", prefer)
            .body(serde_json::to_vec(&body).unwrap())
            .send()
    };
    let r = send(
        reqwest::Method::POST,
        "/fhir/Consent".into(),
        "return=minimal",
        consent.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.ends_with("/_history/1"), "{location}");
    assert!(r.bytes().await.unwrap().is_empty(), "no body");
    let id = location
        .split("/Consent/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (_, mut stored) = gp.get(&format!("/fhir/Consent/{id}")).await;
    stored["status"] = json!("inactive");
    let r = send(
        reqwest::Method::PUT,
        format!("/fhir/Consent/{id}"),
        "return=OperationOutcome",
        stored,
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    // Its history (R4 history interaction): both versions, newest first, each with the request
    // that made it; nobody outside the referral sees it.
    let (status, history) = gp.get(&format!("/fhir/Consent/{id}/_history")).await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["type"], "history");
    assert_eq!(history["total"], 2);
    assert_eq!(history["entry"][0]["resource"]["status"], "inactive");
    assert_eq!(history["entry"][0]["request"]["method"], "PUT");
    assert_eq!(history["entry"][1]["resource"]["status"], "active");
    assert_eq!(history["entry"][1]["request"]["method"], "POST");
    assert_eq!(history["entry"][1]["response"]["etag"], "W/\"1\"");
    let stranger = server.as_(Principal::practice("C88999"));
    assert_eq!(
        stranger
            .get(&format!("/fhir/Consent/{id}/_history"))
            .await
            .0,
        404
    );
    assert_eq!(
        stranger
            .get(&format!("/fhir/Patient/{patient}/_history"))
            .await
            .0,
        404
    );
    let (status, person) = gp.get(&format!("/fhir/Patient/{patient}/_history")).await;
    assert_eq!(status, 200, "{person}");
    assert_eq!(
        person["total"], 1,
        "the version the practice's referral came with: {person}"
    );
    let other = fixture_consent("01-service-without-diagnoses", &patient);
    let (status, _, created) = gp.post("/fhir/Consent", &other).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["resourceType"], "Consent",
        "the resource by default"
    );
}
