//! Every fixture gives its expected result, through the CLI and over HTTP.
//!
//! Valid fixtures have a `.expected.json` with the FHIR the gateway emits (the mapped transaction
//! for practice referrals, the normalised transaction for BaRS messages). `UPDATE_EXPECTED=1`
//! rewrites them; review the diff. Invalid fixtures list every issue expected, as
//! (expression, code) pairs, and the test requires exactly those.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn cli_validate(kind: &str, fixture: &Path) -> (i32, Value) {
    let out = Command::new(WHG)
        .args(["validate", kind, "--json"])
        .arg(fixture)
        .output()
        .expect("run whg validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{}: output is not JSON ({e}): {stdout}", fixture.display()));
    (out.status.code().unwrap_or(-1), json)
}

fn expected_issues(fixture: &Path) -> (u16, Vec<(String, String)>) {
    let exp = read_json(&expected_path(fixture));
    (
        exp["status"].as_u64().unwrap() as u16,
        expected_issue_keys(&exp),
    )
}

fn check_or_update_expected(fixture: &Path, actual: &Value) {
    let path = expected_path(fixture);
    if std::env::var("UPDATE_EXPECTED").is_ok() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let expected = read_json(&path);
    assert!(
        expected == *actual,
        "{} no longer maps to {}: run UPDATE_EXPECTED=1 cargo test --test fixtures and review the diff",
        fixture.display(),
        path.display()
    );
}

/// Each entry's resource parses in fhirbolt's strict mode and claims a UK Core profile.
fn check_entries_strict(bundle: &Value, what: &Path) {
    for entry in bundle["entry"].as_array().unwrap() {
        let r = &entry["resource"];
        whg::fhir::resource::check_strict(r).unwrap_or_else(|e| {
            panic!(
                "{}: {} fails strict parsing: {e}",
                what.display(),
                r["resourceType"]
            )
        });
        let profile = r["meta"]["profile"][0].as_str().unwrap_or_default();
        assert!(
            profile.starts_with("https://fhir.hl7.org.uk/StructureDefinition/UKCore-"),
            "{}: {} claims no UK Core profile",
            what.display(),
            r["resourceType"]
        );
    }
}

fn assert_outcome_is_actionable(outcome: &Value, what: &Path) {
    assert_eq!(
        outcome["resourceType"],
        "OperationOutcome",
        "{}",
        what.display()
    );
    for issue in outcome["issue"].as_array().unwrap() {
        assert_eq!(issue["severity"], "error");
        assert!(
            issue["diagnostics"].as_str().is_some_and(|d| d.len() > 10),
            "{}: issue without a usable diagnostic: {issue}",
            what.display()
        );
    }
}

/// `whg validate` exits 1 with exactly the fixture's expected issues, each actionable.
fn assert_cli_rejects_as_expected(kind: &str, fixture: &Path) {
    let (code, outcome) = cli_validate(kind, fixture);
    assert_eq!(code, 1, "{} should be invalid", fixture.display());
    assert_outcome_is_actionable(&outcome, fixture);
    assert_eq!(
        issue_keys(&outcome),
        expected_issues(fixture).1,
        "{}",
        fixture.display()
    );
}

#[test]
fn valid_referrals_map_to_their_expected_fhir() {
    let fixtures = fixtures("referrals/valid");
    assert!(
        fixtures.len() >= 25,
        "issue #2 asks for at least 25 valid referrals"
    );
    let mut bundles = Vec::new();
    for f in &fixtures {
        let (code, bundle) = cli_validate("referral", f);
        assert_eq!(code, 0, "{} should be valid: {bundle}", f.display());
        check_entries_strict(&bundle, f);
        check_or_update_expected(f, &bundle);
        bundles.push(bundle);
    }
    check_with_independent_fhir(&bundles);
}

#[test]
fn invalid_referrals_report_every_expected_issue_and_exit_1() {
    let fixtures = fixtures("referrals/invalid");
    assert!(
        fixtures.len() >= 15,
        "issue #2 asks for at least 15 invalid referrals"
    );
    for f in &fixtures {
        assert_cli_rejects_as_expected("referral", f);
    }
}

#[test]
fn bars_messages_validate_through_the_cli() {
    let valid = fixtures("messages/valid");
    assert!(valid.len() >= 3);
    for f in &valid {
        let (code, bundle) = cli_validate("message", f);
        assert_eq!(code, 0, "{} should be valid: {bundle}", f.display());
        check_entries_strict(&bundle, f);
        check_request_recorded(&read_json(f), &bundle, f);
        check_or_update_expected(f, &bundle);
    }
    for f in &fixtures("messages/invalid") {
        assert_cli_rejects_as_expected("message", f);
    }
}

/// The ServiceRequest records the request message it came in once, as the gateway read it:
/// a sender's own copy of the gateway's extensions (whg-bars-request, whg-eligibility-assessment)
/// never survives intake.
fn check_request_recorded(message: &Value, bundle: &Value, what: &Path) {
    let sr = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "ServiceRequest")
        .unwrap();
    let extensions = sr["extension"].as_array().cloned().unwrap_or_default();
    let recorded: Vec<&Value> = extensions
        .iter()
        .filter(|e| {
            e["url"] == "https://fhir.work-health-gateway.org/StructureDefinition/whg-bars-request"
        })
        .collect();
    assert_eq!(recorded.len(), 1, "{}: {sr}", what.display());
    let header = &message["entry"][0]["resource"];
    let part = |name: &str| {
        recorded[0]["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["url"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        part("sourceEndpoint")["valueString"],
        header["source"]["endpoint"],
        "{}",
        what.display()
    );
    assert_eq!(
        part("bundle")["valueId"],
        message["id"],
        "{}",
        what.display()
    );
    assert!(
        !extensions.iter().any(|e| e["url"]
            == "https://fhir.work-health-gateway.org/StructureDefinition/whg-eligibility-assessment"),
        "{}: the validator adds no eligibility result, and keeps none a sender wrote",
        what.display()
    );
}

async fn stored_rows(server: &Server) -> i64 {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM resources WHERE resource_type != 'AuditEvent')
              + (SELECT COUNT(*) FROM submissions) + (SELECT COUNT(*) FROM referrals)
              + (SELECT COUNT(*) FROM resources WHERE resource_type = 'AuditEvent' AND CAST(content AS TEXT) LIKE '%Patient/%')",
    )
    .fetch_one(&mut server.db().await)
    .await
    .unwrap();
    n
}

/// Reads back a stored referral and everything it references.
async fn read_back(server: &Server, service_request_id: &str) -> Vec<Value> {
    let sr = server
        .resolve(&format!("ServiceRequest/{service_request_id}"))
        .await;
    let mut out = vec![sr.clone()];
    for r in whg::fhir::resource::references(&sr) {
        out.push(server.resolve(r).await);
    }
    out
}

#[tokio::test]
async fn fixtures_over_http() {
    let server = Server::start();

    // Invalid first: each is refused with its expected issues and leaves nothing behind.
    let mut refusals = Vec::new();
    for f in fixtures("referrals/invalid") {
        let (status, _, outcome) = server.post_json("/api/v1/referrals", &read_json(&f)).await;
        let (expected_status, expected) = expected_issues(&f);
        assert_eq!(status, expected_status, "{}", f.display());
        assert_eq!(issue_keys(&outcome), expected, "{}", f.display());
        refusals.push(outcome);
    }
    for f in fixtures("messages/invalid") {
        let (status, _, outcome) = server
            .post_json("/fhir/$process-message", &read_json(&f))
            .await;
        let (expected_status, expected) = expected_issues(&f);
        assert_eq!(status, expected_status, "{}", f.display());
        assert_eq!(issue_keys(&outcome), expected, "{}", f.display());
        assert!(
            outcome["issue"][0]["details"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .starts_with("REC_"),
            "BaRS error codes"
        );
        refusals.push(outcome);
    }
    // The refusals are FHIR too: every OperationOutcome, to the independent validators.
    check_with_independent_fhir(&refusals);
    assert_eq!(
        stored_rows(&server).await,
        0,
        "rejected requests must store nothing"
    );

    // Valid: stored, readable, and what was read back is valid FHIR to an independent implementation.
    let mut emitted = Vec::new();
    for f in fixtures("referrals/valid") {
        let referral = read_json(&f);
        let (status, headers, outcome) = server.post_json("/api/v1/referrals", &referral).await;
        assert_eq!(status, 201, "{}: {outcome}", f.display());
        let id = location_id(&headers);
        let resources = read_back(&server, &id).await;
        let sr = &resources[0];
        assert_eq!(sr["identifier"][0]["value"], referral["referralId"]);
        assert!(sr["authoredOn"].as_str().unwrap().len() >= 20);
        emitted.extend(resources);
    }
    for f in fixtures("messages/valid") {
        let (status, headers, answer) = server
            .post_json("/fhir/$process-message", &read_json(&f))
            .await;
        assert_eq!(status, 200, "{}: {answer}", f.display());
        // The answer is a response message, checked with what was stored.
        assert_eq!(answer["type"], "message", "{}: {answer}", f.display());
        emitted.push(answer);
        let id = location_id(&headers);
        let resources = read_back(&server, &id).await;
        let patient = resources
            .iter()
            .find(|r| r["resourceType"] == "Patient")
            .unwrap();
        let coding = &patient["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0];
        assert_eq!(
            coding["system"],
            "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
            "normalised on the way in"
        );
        let text = serde_json::to_string(&resources).unwrap();
        assert!(
            !text.contains("https://fhir.nhs.uk/id/ods-organization-code"),
            "lower-case ODS system normalised"
        );
        emitted.extend(resources);
    }
    for r in &emitted {
        whg::fhir::resource::check_strict(r)
            .unwrap_or_else(|e| panic!("stored {} fails strict parsing: {e}", r["resourceType"]));
    }
    check_with_independent_fhir(&emitted);

    // The person re-referred years later is one Patient with two referrals.
    // (Searched as the practice that sent both.)
    let (status, found) = server
        .as_(whg::auth::Principal::practice(DEFAULT_PRACTICE))
        .get("/fhir/ServiceRequest?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9993403180")
        .await;
    assert_eq!(status, 200);
    assert_eq!(found["total"], 2, "{found}");
    let subjects: Vec<&str> = found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["subject"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(subjects[0], subjects[1]);
    let (_, patient) = server
        .as_(whg::auth::Principal::practice(DEFAULT_PRACTICE))
        .get(&format!("/fhir/{}", subjects[0]))
        .await;
    assert_eq!(
        patient["meta"]["versionId"], "2",
        "the later referral updated the person's details"
    );
    assert_eq!(patient["address"][0]["postalCode"], "S13 9AS");
}

/// A referrer cancels a BaRS referral (BaRS Core, Cancellation: reason 'update' or 'delete',
/// the ServiceRequest 'revoked' or 'entered-in-error', definition
/// bars-message-servicerequest-request-cancelled): the ServiceRequest takes the status, the
/// service sees the referral withdrawn and can do no more with it, the practice is answered
/// with a response message, and it is audited. Only the practice that sent the referral can
/// cancel it, only about that person, only while it is current ("The Receiver must not process
/// a cancellation request for a booking or referral which is not current").
#[tokio::test]
async fn a_referrer_cancels_a_bars_referral_and_the_service_sees_it_withdrawn() {
    use whg::auth::{Principal, Role};
    let server = Server::start();
    let whs = server.as_(Principal::service("sheffield-whs"));
    let valid =
        |name: &str| read_json(&root().join(format!("fixtures/messages/valid/{name}.json")));
    let cancellation = |name: &str| {
        read_json(&root().join(format!("fixtures/messages/cancellations/{name}.json")))
    };
    let (status, headers, _) = server
        .post_json(
            "/fhir/$process-message",
            &valid("01-bars-referral-current-forms"),
        )
        .await;
    assert_eq!(status, 200);
    let sr = location_id(&headers);
    let (status, _, body) = whs
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cancel = cancellation("01-revoked");

    // Another practice, naming itself as the sender, finds no referral of its own to cancel.
    let mut elsewhere = cancel.clone();
    for e in elsewhere["entry"].as_array_mut().unwrap() {
        if e["fullUrl"] == cancel["entry"][0]["resource"]["sender"]["reference"] {
            e["resource"]["identifier"][0]["value"] = json!("C88999");
        }
    }
    let (status, _, outcome) = server.post_json("/fhir/$process-message", &elsewhere).await;
    assert_eq!(status, 404, "{outcome}");
    // Nor does the sender cancel someone else's referral by naming another person.
    let mut other_person = cancel.clone();
    for e in other_person["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "Patient" {
            e["resource"]["identifier"][0]["value"] = json!(nhs_number(40));
        }
    }
    let (status, _, outcome) = server
        .post_json("/fhir/$process-message", &other_person)
        .await;
    assert_eq!(status, 422, "{outcome}");
    let ig = server.as_(Principal::new(Role::InformationGovernance, "ig-team"));
    let (_, refused) = ig.get("/fhir/AuditEvent?outcome=4&_count=100").await;
    assert!(
        refused
            .to_string()
            .contains("referral cancellation refused: its Patient is not the referral's"),
        "a refused cancellation is audited: {refused}"
    );
    // A service cannot send one.
    let (status, _, _) = whs.post("/fhir/$process-message", &cancel).await;
    assert_eq!(status, 403);
    let (_, workflow) = whs.get(&format!("/api/v1/referrals/{sr}/workflow")).await;
    assert_eq!(workflow["stage"], "accepted", "nothing changed: {workflow}");

    let (status, _, answer) = server.post_json("/fhir/$process-message", &cancel).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "message");
    let header = &answer["entry"][0]["resource"];
    assert_eq!(
        header["response"]["identifier"],
        cancel["entry"][0]["fullUrl"]
            .as_str()
            .unwrap()
            .trim_start_matches("urn:uuid:")
    );
    assert!(
        answer
            .to_string()
            .contains(&format!("ServiceRequest/{sr} cancelled (revoked)")),
        "{answer}"
    );
    let (_, stored) = whs.get(&format!("/fhir/ServiceRequest/{sr}")).await;
    assert_eq!(stored["status"], "revoked");
    let (_, workflow) = whs.get(&format!("/api/v1/referrals/{sr}/workflow")).await;
    assert_eq!(workflow["stage"], "withdrawn", "{workflow}");
    assert_eq!(workflow["task"]["status"], "cancelled", "{workflow}");
    // The service can do nothing more with it.
    let (status, _, outcome) = whs
        .post(
            &format!("/api/v1/referrals/{sr}/contacts"),
            &json!({ "date": "2026-05-07", "channel": "phone", "note": "Called." }),
        )
        .await;
    assert_eq!(status, 422, "{outcome}");
    // Sent again: nothing changes, and the answer says so.
    let (status, _, again) = server.post_json("/fhir/$process-message", &cancel).await;
    assert_eq!(status, 200, "{again}");
    assert!(
        again.to_string().contains("was already cancelled"),
        "{again}"
    );
    let (_, history) = whs.get(&format!("/fhir/ServiceRequest/{sr}")).await;
    assert_eq!(history["meta"]["versionId"], stored["meta"]["versionId"]);
    let (_, events) = ig.get("/fhir/AuditEvent?_count=100").await;
    assert_eq!(
        events
            .to_string()
            .matches("referral cancelled by the referrer (revoked)")
            .count(),
        1,
        "{events}"
    );

    // Cancelled as revoked, then said to have been sent in error: the status is corrected.
    let mut in_error = cancel.clone();
    for e in in_error["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "ServiceRequest" {
            e["resource"]["status"] = json!("entered-in-error");
        }
    }
    let (status, _, answer) = server.post_json("/fhir/$process-message", &in_error).await;
    assert_eq!(status, 200, "{answer}");
    let (_, corrected) = whs.get(&format!("/fhir/ServiceRequest/{sr}")).await;
    assert_eq!(corrected["status"], "entered-in-error");
    let (_, workflow) = whs.get(&format!("/api/v1/referrals/{sr}/workflow")).await;
    assert_eq!(workflow["stage"], "withdrawn");

    // A referral that is no longer current is not cancelled: declined, here.
    let (status, headers, _) = server
        .post_json(
            "/fhir/$process-message",
            &valid("02-bars-referral-retired-verification-and-lowercase-ods"),
        )
        .await;
    assert_eq!(status, 200);
    let declined = location_id(&headers);
    let (status, _, body) = whs
        .post(
            &format!("/api/v1/referrals/{declined}/triage"),
            &json!({ "decision": "decline", "reason": "person-declined" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, outcome) = server
        .post_json(
            "/fhir/$process-message",
            &cancellation("02-entered-in-error"),
        )
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(outcome.to_string().contains("declined"), "{outcome}");
}

/// BaRS update (issue 14): the referrer restates its referral with reason `update` and the
/// ServiceRequest active ("'update' for an update", BaRS Referral Payload); what the
/// ServiceRequest says changes in a new version, the service sees a note on its workflow Task,
/// the practice is answered with the response message. Nothing else changes by amendment.
#[tokio::test]
async fn a_referrer_amends_a_bars_referral_and_the_service_sees_what_changed() {
    use whg::auth::{Principal, Role};
    let server = Server::start();
    let whs = server.as_(Principal::service("sheffield-whs"));
    let ig = server.as_(Principal::new(Role::InformationGovernance, "ig-team"));
    let amendment =
        |name: &str| read_json(&root().join(format!("fixtures/messages/amendments/{name}.json")));
    let original =
        read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"));
    let more_urgent = amendment("01-more-urgent");

    // Nothing to amend before the referral is sent.
    let (status, _, outcome) = server
        .post_json("/fhir/$process-message", &more_urgent)
        .await;
    assert_eq!(status, 404, "{outcome}");
    let (status, headers, _) = server.post_json("/fhir/$process-message", &original).await;
    assert_eq!(status, 200);
    let sr = location_id(&headers);
    let (status, _, body) = whs
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, before) = whs.get(&format!("/fhir/ServiceRequest/{sr}")).await;

    // Only the sender amends: a service cannot, another practice finds nothing of its own.
    let (status, _, _) = whs.post("/fhir/$process-message", &more_urgent).await;
    assert_eq!(status, 403);
    let mut elsewhere = more_urgent.clone();
    for e in elsewhere["entry"].as_array_mut().unwrap() {
        if e["fullUrl"] == more_urgent["entry"][0]["resource"]["sender"]["reference"] {
            e["resource"]["identifier"][0]["value"] = json!("C88999");
        }
    }
    let (status, _, outcome) = server.post_json("/fhir/$process-message", &elsewhere).await;
    assert_eq!(status, 404, "{outcome}");

    // What the referral is, and what it names, are not amended: refused, saying how, audited.
    let (status, _, outcome) = server
        .post_json("/fhir/$process-message", &amendment("01-another-condition"))
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(outcome.to_string().contains("reasonReference"), "{outcome}");
    let mut recoded = more_urgent.clone();
    for e in recoded["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "ServiceRequest" {
            e["resource"]["code"]["coding"][0]["code"] = json!("183444007");
        }
    }
    let (status, _, outcome) = server.post_json("/fhir/$process-message", &recoded).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome.to_string().contains("never what the referral is"),
        "{outcome}"
    );
    // An amended element that names another resource is refused: references are the
    // referral's own (here, one to another person, under an entry named as if stored).
    let mut smuggled = more_urgent.clone();
    for e in smuggled["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "ServiceRequest" {
            e["resource"]["note"][0]["authorReference"] =
                json!({ "reference": "Patient/someone-else" });
        }
    }
    smuggled["entry"].as_array_mut().unwrap().push(json!({
        "fullUrl": "Patient/someone-else",
        "resource": { "resourceType": "Patient", "meta": { "lastUpdated": "2026-05-06T09:00:00+00:00" } },
    }));
    let (status, _, outcome) = server.post_json("/fhir/$process-message", &smuggled).await;
    assert!(status == 422, "{status} {outcome}");
    let (_, unchanged) = whs.get(&format!("/fhir/ServiceRequest/{sr}")).await;
    assert_eq!(unchanged["meta"]["versionId"], before["meta"]["versionId"]);
    assert!(
        !unchanged.to_string().contains("someone-else"),
        "{unchanged}"
    );
    let (_, refused) = ig.get("/fhir/AuditEvent?outcome=4&_count=100").await;
    assert!(
        refused.to_string().contains("referral amendment refused"),
        "{refused}"
    );

    // The amendment: the practice is told, the service sees the new version and a note.
    let (status, _, answer) = server
        .post_json("/fhir/$process-message", &more_urgent)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "message");
    let header = &answer["entry"][0]["resource"];
    assert_eq!(header["response"]["code"], "ok");
    assert_eq!(
        header["response"]["identifier"],
        more_urgent["entry"][0]["fullUrl"]
            .as_str()
            .unwrap()
            .trim_start_matches("urn:uuid:")
    );
    assert!(
        answer
            .to_string()
            .contains(&format!("ServiceRequest/{sr} amended (priority, note)")),
        "{answer}"
    );
    let (_, after) = whs.get(&format!("/fhir/ServiceRequest/{sr}")).await;
    assert_eq!(after["priority"], "urgent");
    assert!(
        after["note"][0]["text"]
            .as_str()
            .unwrap()
            .contains("formal absence review")
    );
    assert_eq!(after["status"], "active");
    assert_eq!(after["identifier"], before["identifier"]);
    assert_eq!(after["reasonReference"], before["reasonReference"]);
    assert_ne!(after["meta"]["versionId"], before["meta"]["versionId"]);
    let (status, history) = whs
        .get(&format!("/fhir/ServiceRequest/{sr}/_history"))
        .await;
    assert_eq!(status, 200);
    assert!(history["total"].as_u64().unwrap() >= 2, "{history}");
    let (_, workflow) = whs.get(&format!("/api/v1/referrals/{sr}/workflow")).await;
    assert_eq!(workflow["stage"], "accepted", "the stage stays: {workflow}");
    assert!(
        workflow
            .to_string()
            .contains("Amended by the referrer: priority, note"),
        "{workflow}"
    );
    check_with_independent_fhir(&[answer.clone(), after.clone()]);

    // Sent again: nothing changes, and the answer says so.
    let (status, _, again) = server
        .post_json("/fhir/$process-message", &more_urgent)
        .await;
    assert_eq!(status, 200, "{again}");
    assert!(again.to_string().contains("nothing changed"), "{again}");
    let (_, still) = whs.get(&format!("/fhir/ServiceRequest/{sr}")).await;
    assert_eq!(still["meta"]["versionId"], after["meta"]["versionId"]);
    let (_, events) = ig.get("/fhir/AuditEvent?_count=100").await;
    assert_eq!(
        events
            .to_string()
            .matches("referral amended by the referrer (priority, note)")
            .count(),
        1,
        "{events}"
    );

    // A closed referral is not amended: cancelled, here.
    let cancel = read_json(&root().join("fixtures/messages/cancellations/01-revoked.json"));
    let (status, _, _) = server.post_json("/fhir/$process-message", &cancel).await;
    assert_eq!(status, 200);
    let mut later = more_urgent.clone();
    for e in later["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "ServiceRequest" {
            e["resource"]["priority"] = json!("asap");
        }
    }
    let (status, _, outcome) = server.post_json("/fhir/$process-message", &later).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(outcome.to_string().contains("withdrawn"), "{outcome}");
}
