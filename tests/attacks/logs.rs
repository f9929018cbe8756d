//! Attack 11: personal data and attacker text in the logs. A practice system's error answer can
//! name the person (an NHS number and name in an OperationOutcome's diagnostics): the gateway
//! logs only its own classification (the status) and keeps the receiver's text, cleaned and
//! bounded, with the letter's delivery record for the service. A caller's `X-Request-ID` is
//! kept only when it is a bounded token, and replaced otherwise before it is logged or stored in
//! an AuditEvent. An NHS number anywhere inside a path segment is masked in the request log.

use std::time::Duration;

use serde_json::json;
use whg::auth::{Principal, Role};

use super::outbound::{Answer, Remote, WHS, attempts, letter_gateway, send_letter, wait_letter};
use crate::common::*;

/// An NHS number written as people write it: `999 000 0018`.
fn spaced(nhs: &str) -> String {
    format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..])
}

/// An OperationOutcome a practice system might answer, naming the person, with a line break
/// that would forge a log line, and far longer than anything worth keeping.
fn naming_outcome(nhs: &str) -> String {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": "processing",
            "diagnostics": format!(
                "Patient {} (Joanne Whitworth, NHS {nhs}) is not registered here\n2026-01-01T00:00:00Z ERROR whg: forged line {}",
                spaced(nhs),
                "x".repeat(2000)
            ),
        }],
    })
    .to_string()
}

fn assert_no_person_in(logs: &str, numbers: &[String]) {
    for n in numbers {
        assert!(
            !logs.contains(n.as_str()),
            "NHS number {n} in the log:\n{logs}"
        );
        assert!(
            !logs.contains(&spaced(n)),
            "NHS number {n} in the log:\n{logs}"
        );
    }
    assert!(!logs.contains("Whitworth"), "a name in the log:\n{logs}");
    assert!(
        !logs.contains("forged line"),
        "a forged line in the log:\n{logs}"
    );
}

#[tokio::test]
async fn a_receiving_systems_error_text_is_never_logged() {
    let (first, second) = (nhs_number(5), nhs_number(6));
    let practice = Remote::start(Answer::Json(422, naming_outcome(&first))).await;
    let server = letter_gateway(&practice.url, None, "retry_window_secs = 3\n");

    // Refused for good (422): the service sees what the practice's system said, on one line and
    // bounded; the log has the status only.
    let rejected = send_letter(&server, 5).await;
    let state = wait_letter(&server, &rejected, |s| s["delivery"]["state"] == "rejected").await;
    let detail = attempts(&state)[0]["detail"].as_str().unwrap().to_string();
    assert!(detail.starts_with("HTTP 422: Patient"), "{detail}");
    assert!(
        detail.contains("is not registered here"),
        "kept for the service: {detail}"
    );
    assert!(!detail.chars().any(char::is_control), "{detail:?}");
    assert!(
        detail.chars().count() < 400,
        "bounded: {} characters",
        detail.chars().count()
    );
    assert_eq!(state["delivery"]["lastError"], detail);

    // Retried until the window closes (500), then dead: the alert carries no remote text either.
    practice.set(Answer::Json(500, naming_outcome(&second)));
    let dead = send_letter(&server, 6).await;
    let state = wait_letter(&server, &dead, |s| s["delivery"]["state"] == "dead").await;
    assert!(
        state["delivery"]["lastError"]
            .as_str()
            .unwrap()
            .contains("HTTP 500: Patient"),
        "{state:#}"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    assert!(
        logs.contains("HTTP 422") && logs.contains("HTTP 500"),
        "the classification is logged:\n{logs}"
    );
    assert!(logs.contains("letter-rejected") && logs.contains("letter-dead"));
    assert_no_person_in(&logs, &[first, second]);
}

/// Every AuditEvent the information-governance team can read, as text.
async fn audit_trail(server: &Server) -> Vec<String> {
    let (status, bundle) = server
        .as_(Principal::new(Role::InformationGovernance, "ig"))
        .get("/fhir/AuditEvent?_count=1000")
        .await;
    assert_eq!(status, 200, "{bundle}");
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].to_string())
        .collect()
}

#[tokio::test]
async fn client_chosen_request_ids_are_replaced_unless_they_are_tokens() {
    let server = Server::start();
    let (referral, _) = refer(&server, &referral_for(7, WHS)).await;
    let token = server.token(&Principal::practice(DEFAULT_PRACTICE));
    let read = async |request_id: &str| {
        let r = http()
            .get(server.url(&format!("/fhir/ServiceRequest/{referral}")))
            .bearer_auth(&token)
            .header("x-request-id", request_id)
            .send()
            .await
            .unwrap();
        let answered_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let status = r.status().as_u16();
        (status, answered_id)
    };
    let nhs = nhs_number(7);
    let hostile = [
        format!("{nhs} Joanne Whitworth"),
        format!("req-{}", spaced(&nhs).replace(' ', "-")),
        "id\" forged=\"yes".to_string(),
        "r".repeat(5000),
    ];
    let before = audit_trail(&server).await.len();
    for id in &hostile {
        let (status, answered) = read(id).await;
        assert_eq!(status, 200);
        assert_ne!(&answered, id);
        assert!(
            uuid::Uuid::parse_str(&answered).is_ok(),
            "a generated id: {answered}"
        );
    }
    let (status, answered) = read("req-7.ok_A").await;
    assert_eq!(
        (status, answered.as_str()),
        (200, "req-7.ok_A"),
        "a token is kept"
    );

    let trail = audit_trail(&server).await;
    assert!(trail.len() > before, "the reads were audited");
    let text = trail.join("\n");
    assert!(text.contains("request req-7.ok_A"), "{text}");
    for fragment in [
        "Whitworth",
        "forged",
        "rrrrrrrrrr",
        nhs.as_str(),
        &spaced(&nhs).replace(' ', "-"),
    ] {
        assert!(
            !text.contains(fragment),
            "{fragment} stored in the audit trail"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    assert!(logs.contains("req-7.ok_A"));
    assert_no_person_in(&logs, std::slice::from_ref(&nhs));
    assert!(
        !logs.contains("forged=") && !logs.contains("rrrrrrrrrr"),
        "{logs}"
    );
}

#[tokio::test]
async fn an_nhs_number_inside_a_path_segment_is_masked() {
    let server = Server::start();
    let nhs = nhs_number(8);
    let (a, b, c) = (&nhs[..3], &nhs[3..6], &nhs[6..]);
    let paths = [
        format!("/fhir/Patient/patient-nhs-number-{nhs}-with-more-words"),
        format!("/fhir/Patient/00000000-0000-0000-0000-00{nhs}"),
        format!("/api/v1/patients/nhs{nhs}x/fit-notes/summary"),
        format!("/fhir/Patient/person-{a}%20{b}%20{c}-and-more-words"),
        format!("/api/v1/letters/letter-for-{a}-{b}-{c}-written-in-march"),
        format!("/fhir/Observation/note.{a}.{b}.{c}.for.review.in.the.practice"),
    ];
    for path in &paths {
        let (status, body) = server.get(path).await;
        assert!((400..500).contains(&status), "{path}: {status} {body}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    assert!(
        logs.matches("{number}").count() >= paths.len(),
        "the requests were logged, masked:\n{logs}"
    );
    assert_no_person_in(&logs, std::slice::from_ref(&nhs));
    for digits in [
        format!("{a}-{b}-{c}"),
        format!("{a}%20{b}%20{c}"),
        format!("{a}.{b}.{c}"),
    ] {
        assert!(!logs.contains(&digits), "{digits} in the log");
    }
}
