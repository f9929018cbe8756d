//! The adviser workflow and letters to GPs over HTTP: triage, contacts, support and discharge;
//! letters rendered as PDF and delivered through the outbox to a real HTTP receiver (a GP
//! system's BaRS endpoint with an OAuth2 token endpoint) that fails on demand: 500s, 429 with
//! Retry-After, hangs past the timeout, slowness, permanent 4xx. Also a `kill -9` in the middle of
//! a batch, a withdrawal while a letter waits, an urgent letter overtaking a backlog, escalation
//! and letters going dead.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine;
use common::receiver::*;
use common::*;
use serde_json::{Value, json};
use whg::auth::Principal;

/// A gateway whose practice C88901 takes letters at the receiver.
fn gateway(receiver_url: &str, dir_for_secret: &std::path::Path, extra: &str) -> Server {
    Server::start_with(&letters_config(receiver_url, dir_for_secret, extra))
}

fn gp(server: &Server) -> Actor<'_> {
    server.as_(Principal::practice(DEFAULT_PRACTICE))
}

async fn send_letter(server: &Server, sr: &str, priority: &str, summary: &str) -> String {
    let (status, headers, body) = whs(server)
        .post(
            &format!("/api/v1/referrals/{sr}/letters"),
            &letter(priority, summary),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["resourceType"], "Communication");
    location_id(&headers)
}

async fn metrics(server: &Server) -> String {
    http_get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The outcome of each attempt and acknowledgement a letter's status document lists, in order.
fn outcomes_of(letter: &Value) -> Vec<&str> {
    letter["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adviser_workflow_is_recorded_and_the_practice_sees_it() {
    let (_receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&url, tmp.path(), "");
    let (sr, _) = refer(&server, &referral_for(1, WHS)).await;
    let path = |step: &str| format!("/api/v1/referrals/{sr}/{step}");

    // Before triage: received, in FHIR from the start, and nothing else may be recorded.
    let (status, state) = gp(&server).get(&path("workflow")).await;
    assert_eq!(
        (status, state["stage"].as_str()),
        (200, Some("received")),
        "{state}"
    );
    assert_eq!(state["task"]["status"], "requested");
    let (_, waiting) = whs(&server)
        .get("/fhir/Task?business-status=received&owner=sheffield-whs")
        .await;
    assert_eq!(
        waiting["total"], 1,
        "the service finds what it has not triaged: {waiting}"
    );
    let (status, _, outcome) = whs(&server)
        .post(
            &path("contacts"),
            &json!({ "date": "2026-11-20", "channel": "phone" }),
        )
        .await;
    assert_eq!(status, 422, "{outcome}");

    // Only the service the referral is addressed to triages it.
    let (status, _, _) = gp(&server)
        .post(&path("triage"), &json!({ "decision": "accept" }))
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = server
        .as_(Principal::service("workwell-south-tyneside"))
        .post(&path("triage"), &json!({ "decision": "accept" }))
        .await;
    assert_eq!(
        status, 404,
        "another service does not even learn the referral exists"
    );

    // Every problem at once, each at its field.
    let (status, _, outcome) = whs(&server)
        .post(
            &path("triage"),
            &json!({ "decision": "decline", "reason": "too-busy", "criterion": "age" }),
        )
        .await;
    assert_eq!(status, 422);
    let at: Vec<&str> = expressions(&outcome);
    assert_eq!(at, ["reason", "criterion"], "{outcome}");
    let (status, _, outcome) = whs(&server)
        .post(
            &path("triage"),
            &json!({ "decision": "accept", "surprise": 1 }),
        )
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome.to_string().contains("unknown field `surprise`"),
        "{outcome}"
    );

    let (status, _, state) = whs(&server)
        .post(&path("triage"), &json!({ "decision": "accept" }))
        .await;
    assert_eq!(
        (status, state["stage"].as_str()),
        (200, Some("accepted")),
        "{state}"
    );
    let today = chrono::Utc::now().date_naive();
    let (status, _, state) = whs(&server)
        .post(
            &path("contacts"),
            &json!({ "date": today.to_string(), "channel": "video" }),
        )
        .await;
    assert_eq!(
        (status, state["stage"].as_str()),
        (200, Some("contacted")),
        "{state}"
    );
    assert_eq!(state["timeliness"]["firstContactOn"], today.to_string());
    assert!(state["timeliness"]["daysToFirstContact"].is_number());
    whs(&server)
        .post(
            &path("contacts"),
            &json!({ "date": today.to_string(), "channel": "in-person", "attended": false }),
        )
        .await;
    let (status, _, state) = whs(&server)
        .post(&path("support"), &json!({ "date": today.to_string(), "codes": ["workplace-adjustments", "financial-advice"] }))
        .await;
    assert_eq!(
        (status, state["stage"].as_str()),
        (200, Some("in-support")),
        "{state}"
    );
    let (status, _, state) = whs(&server)
        .post(&path("discharge"), &json!({ "date": today.to_string(), "employmentOutcome": "kept-job", "healthOutcomes": ["fewer-gp-visits"] }))
        .await;
    assert_eq!(
        (status, state["stage"].as_str()),
        (200, Some("discharged")),
        "{state}"
    );

    // The referring practice reads the state as FHIR: the ServiceRequest's status and the Task.
    let (_, referral) = gp(&server).get(&format!("/fhir/ServiceRequest/{sr}")).await;
    assert_eq!(referral["status"], "completed");
    let (status, tasks) = gp(&server)
        .get(&format!("/fhir/Task?focus=ServiceRequest/{sr}"))
        .await;
    assert_eq!((status, tasks["total"].as_u64()), (200, Some(1)), "{tasks}");
    let task = &tasks["entry"][0]["resource"];
    assert_eq!(task["status"], "completed");
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "discharged");
    let first_contact = task["input"][0]["valueReference"]["reference"]
        .as_str()
        .unwrap();
    let (status, encounter) = gp(&server).get(&format!("/fhir/{first_contact}")).await;
    assert_eq!(
        (status, encounter["type"][0]["coding"][0]["code"].as_str()),
        (200, Some("video"))
    );
    let (_, whs_tasks) = whs(&server)
        .get(&format!("/fhir/Task?focus=ServiceRequest/{sr}"))
        .await;
    assert_eq!(whs_tasks["total"], 1, "the service reads its own workflow");
    let (_, other) = server
        .as_(Principal::practice("C88902"))
        .get(&format!("/fhir/Task?focus=ServiceRequest/{sr}"))
        .await;
    assert_eq!(other["total"], 0, "another practice sees nothing");
    // The workflow Task is not answered like a referral prompt.
    let task_id = task["id"].as_str().unwrap();
    let (status, _, _) = gp(&server)
        .put(&format!("/fhir/Task/{task_id}"), task)
        .await;
    assert_eq!(status, 403);
    check_with_independent_fhir(&[referral, task.clone(), encounter]);
}

#[tokio::test(flavor = "multi_thread")]
async fn letters_arrive_through_failures_and_a_kill_9_each_once_after_de_duplication() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut server = gateway(&url, tmp.path(), "");
    let (sr, _) = accepted_referral(&server, 2).await;

    // 500, 500, 429 (Retry-After 1 s), a hang past the 1 s timeout (the receiver gets it, the
    // gateway does not hear so), then success.
    receiver.script(
        &[
            Reply::Status(500),
            Reply::Status(503),
            Reply::TooMany { retry_after: 1 },
            Reply::Hang(Duration::from_millis(1500)),
        ],
        Reply::Ok,
    );
    let first = send_letter(
        &server,
        &sr,
        "routine",
        "First letter through a failing receiver.",
    )
    .await;
    let done = wait_one(&server, &first, "accepted", 30).await;
    let attempts = done["attempts"].as_array().unwrap();
    let outcomes = outcomes_of(&done);
    assert_eq!(
        outcomes,
        ["retry", "retry", "retry", "retry", "delivered"],
        "{attempts:#?}"
    );
    assert!(attempts[0]["detail"].as_str().unwrap().contains("HTTP 500"));
    assert!(
        attempts[3]["detail"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );
    assert_eq!(done["communication"]["status"], "completed");
    let received = receiver.received();
    assert_eq!(received.len(), 5);
    let ids: HashSet<&str> = received.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same X-Request-ID");
    assert!(
        received
            .iter()
            .all(|r| r.bundle["id"] == received[0].bundle["id"]),
        "and the same message id"
    );
    let taken = received.iter().filter(|r| r.answered == 200).count();
    assert_eq!(
        taken, 2,
        "the receiver took it twice (the hang, then the retry)"
    );
    assert_eq!(receiver.delivered().len(), 1, "once after de-duplication");
    let r429 = received.iter().position(|r| r.answered == 429).unwrap();
    assert!(
        received[r429 + 1].at - received[r429].at >= Duration::from_millis(950),
        "Retry-After was honoured"
    );
    assert_eq!(
        receiver.0.lock().unwrap().token_requests,
        1,
        "the token is cached"
    );

    // The message is a BaRS servicerequest-response with the letter's PDF.
    let bundle = &receiver.delivered()[0].bundle;
    assert_eq!(bundle["type"], "message");
    let header = &bundle["entry"][0]["resource"];
    assert_eq!(header["eventCoding"]["code"], "servicerequest-response");
    assert_eq!(
        header["destination"][0]["receiver"]["identifier"]["value"],
        "C88901"
    );
    assert_eq!(header["reason"]["coding"][0]["code"], "new");
    // A practice-JSON referral came in no message, so there is no MessageHeader to name.
    assert!(header.get("response").is_none(), "{header}");
    let text = pdf_text(&document_pdf(bundle));
    for needed in [
        "Sheffield Work and Health Service",
        "NHS number",
        "Porter Brook Surgery",
        "Return-to-work plan",
        "Recommendations for the GP",
        "Sam Patel",
        "First letter through a failing receiver.",
    ] {
        assert!(
            text.contains(needed),
            "{needed} not in the PDF text:\n{text}"
        );
    }
    check_with_independent_fhir(
        &bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|e| e["resource"].clone())
            .collect::<Vec<_>>(),
    );

    // A batch queued while the receiver is down; the gateway is killed mid-batch (some letters
    // attempted, none delivered), restarted, and the receiver recovers.
    receiver.script(&[], Reply::Status(503));
    let mut batch = Vec::new();
    for n in 0..20 {
        batch.push(send_letter(&server, &sr, "routine", &format!("Batch letter {n}.")).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill_and_restart();
    receiver.script(&[], Reply::Ok);
    wait_for(&server, &batch, &["accepted"], Duration::from_secs(60)).await;
    let delivered = receiver.delivered();
    assert_eq!(
        delivered.len(),
        21,
        "every letter, once after de-duplication"
    );
    let correlation: HashSet<&str> = delivered
        .iter()
        .map(|r| r.correlation_id.as_str())
        .collect();
    assert_eq!(correlation.len(), 1, "one conversation per referral");
    let (status, list) = gp(&server).get("/api/v1/letters?state=accepted").await;
    assert_eq!(
        (status, list["total"].as_u64()),
        (200, Some(21)),
        "the practice sees its letters"
    );
    let (_, comms) = gp(&server)
        .get(&format!(
            "/fhir/Communication?based-on=ServiceRequest/{sr}&status=completed&_count=50"
        ))
        .await;
    assert_eq!(comms["total"], 21, "{comms}");
    let logs = server.logs();
    assert!(!logs.contains(&nhs_number(2)), "no NHS number in the logs");
    assert!(!logs.contains("token-1"), "no access token in the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decline_reaches_the_gp_with_its_reason() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&url, tmp.path(), "");
    let (sr, _) = refer(&server, &referral_for(3, WHS)).await;
    let (status, _, state) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "decline", "reason": "not-eligible", "criterion": "area", "note": "The person lives outside Sheffield; Rotherham's service can help." }),
        )
        .await;
    assert_eq!(
        (status, state["stage"].as_str()),
        (200, Some("declined")),
        "{state}"
    );
    let id = state["letters"][0]["id"].as_str().unwrap().to_string();
    wait_one(&server, &id, "accepted", 20).await;
    let bundle = &receiver.delivered()[0].bundle;
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let referral = resources
        .iter()
        .find(|r| r["resourceType"] == "ServiceRequest")
        .unwrap();
    assert_eq!(referral["status"], "revoked");
    let task = resources
        .iter()
        .find(|r| r["resourceType"] == "Task")
        .unwrap();
    assert_eq!(task["statusReason"]["coding"][0]["code"], "not-eligible");
    let text = pdf_text(&document_pdf(bundle));
    for needed in [
        "Referral not accepted",
        "Not eligible",
        "Lives in the area",
        "Rotherham",
    ] {
        assert!(text.contains(needed), "{needed} not in:\n{text}");
    }
    // A declined referral takes no more workflow.
    let (status, _, _) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 422);
}

/// A workflow body serde cannot read is a 422 naming the field and what it takes, as intake's
/// errors do; nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn workflow_bodies_that_cannot_be_read_name_the_field_and_the_fix() {
    let (_receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&url, tmp.path(), "");
    let (sr, _) = accepted_referral(&server, 5).await;
    for (route, body, field, says) in [
        (
            "contacts",
            json!({ "date": "07/05/2026", "channel": "phone" }),
            Some("date"),
            "YYYY-MM-DD",
        ),
        (
            "support",
            json!({ "date": "2026-13-01" }),
            Some("date"),
            "YYYY-MM-DD",
        ),
        (
            "contacts",
            json!({ "channel": "phone" }),
            Some("date"),
            "a contact needs this field",
        ),
        (
            "contacts",
            json!({ "date": "2026-05-07", "channel": "phone", "colour": "blue" }),
            Some("colour"),
            "unknown field `colour`",
        ),
        (
            "discharge",
            json!({ "date": "2026-05-07", "outcomes": "all good" }),
            None,
            "a discharge",
        ),
    ] {
        let (status, _, outcome) = whs(&server)
            .post(&format!("/api/v1/referrals/{sr}/{route}"), &body)
            .await;
        assert_eq!(status, 422, "{route} {body}: {outcome}");
        let issue = &outcome["issue"][0];
        if let Some(field) = field {
            assert_eq!(issue["expression"][0], field, "{outcome}");
        }
        assert!(
            issue["diagnostics"].as_str().unwrap().contains(says),
            "{route} {body}: {outcome}"
        );
    }
    let (_, state) = whs(&server)
        .get(&format!("/api/v1/referrals/{sr}/workflow"))
        .await;
    assert_eq!(state["stage"], "accepted", "nothing changed: {state}");

    // A query parameter a route does not take is named, with what it does take.
    let (status, outcome) = whs(&server).get("/api/v1/letters?colour=blue").await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "colour", "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("it takes `state`"),
        "{outcome}"
    );

    // The routes take the sender's own referral id too, as `{ODS code}:{referralId}`, for the
    // parties to the referral only: another service finds nothing, as for a made-up id.
    let business = format!(
        "c88901:{}",
        referral_for(5, WHS)["referralId"].as_str().unwrap()
    );
    let (status, by_key) = whs(&server)
        .get(&format!("/api/v1/referrals/{business}/workflow"))
        .await;
    assert_eq!(status, 200, "{by_key}");
    assert_eq!(
        by_key["referral"],
        format!("ServiceRequest/{sr}"),
        "{by_key}"
    );
    let (status, _) = server
        .get(&format!("/api/v1/referrals/{business}/workflow"))
        .await;
    assert_eq!(status, 200, "the referring practice");
    let other = server.as_(Principal::service("workwell-south-tyneside"));
    // Held but not its own, and not held at all, read alike: nothing says the first exists.
    let (_, held) = other
        .get(&format!("/api/v1/referrals/{business}/workflow"))
        .await;
    let made_up = format!(
        "c88901:{}-X",
        referral_for(5, WHS)["referralId"].as_str().unwrap()
    );
    let (_, not_held) = other
        .get(&format!("/api/v1/referrals/{made_up}/workflow"))
        .await;
    let text = |o: &Value| {
        o["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .replace("-X", "")
    };
    assert_eq!(text(&held), text(&not_held), "{held} {not_held}");
    assert!(
        !held.to_string().contains(&sr),
        "the gateway id is not given away: {held}"
    );
    for named in [
        business.clone(),
        "C88901:no-such-referral".to_string(),
        sr.clone(),
    ] {
        let (status, outcome) = other
            .get(&format!("/api/v1/referrals/{named}/workflow"))
            .await;
        assert_eq!(status, 404, "{named}: {outcome}");
    }
    let (status, _, state) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{business}/contacts"),
            &json!({ "date": "2026-05-07", "channel": "phone" }),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    // Letters are listed by the sender's id too; one nobody may see, or nobody sent, has none.
    let letter = read_json(&root().join("fixtures/letters/02-letter-returned-to-work.json"));
    let (status, _, body) = whs(&server)
        .post(&format!("/api/v1/referrals/{business}/letters"), &letter)
        .await;
    assert_eq!(status, 201, "{body}");
    for (who, named, total) in [
        (whs(&server), business.clone(), 1),
        (other, business.clone(), 0),
        (whs(&server), "C88901:nobody-sent-this".to_string(), 0),
    ] {
        let (_, page) = who.get(&format!("/api/v1/letters?referral={named}")).await;
        assert_eq!(page["total"], total, "{named}: {page}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_withdrawn_consent_stops_a_waiting_letter() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&url, tmp.path(), "");
    let (sr, patient) = accepted_referral(&server, 4).await;
    receiver.script(&[], Reply::Status(503));
    let id = send_letter(&server, &sr, "routine", "Waits while the receiver is down.").await;
    let until = Instant::now() + Duration::from_secs(10);
    while letter_state(&server, &id).await["attempts"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The person withdraws their agreement to feedback reaching the practice.
    let mut consent = consent_for(&server, &patient, "referring-practice").await;
    consent["status"] = json!("inactive");
    let consent_id = consent["id"].as_str().unwrap().to_string();
    let (status, _, body) = gp(&server)
        .put(&format!("/fhir/Consent/{consent_id}"), &consent)
        .await;
    assert_eq!(status, 200, "{body}");
    receiver.script(&[], Reply::Ok);
    let done = wait_one(&server, &id, "cancelled", 20).await;
    assert!(
        done["delivery"]["lastError"]
            .as_str()
            .unwrap()
            .contains("consent"),
        "{:#}",
        done
    );
    assert_eq!(done["communication"]["status"], "stopped");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.delivered().is_empty(),
        "nothing reached the practice"
    );
    // The decision is in the audit trail as a disclosure.
    let (_, audit) = server
        .as_(Principal::new(whg::auth::Role::InformationGovernance, "ig"))
        .get(&format!(
            "/fhir/AuditEvent?patient=Patient/{patient}&_count=100"
        ))
        .await;
    assert!(audit.to_string().contains("disclosure"), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_urgent_letter_overtakes_a_backlog_and_is_escalated_if_unacknowledged() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&url, tmp.path(), "concurrency = 1\nurgent_ack_secs = 1");
    let (sr, _) = accepted_referral(&server, 5).await;
    receiver.set_delay(Duration::from_millis(150));
    let mut routine = Vec::new();
    for n in 0..15 {
        routine.push(send_letter(&server, &sr, "routine", &format!("Routine {n}.")).await);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let urgent = send_letter(
        &server,
        &sr,
        "urgent",
        "Safeguarding concern: please contact the patient today.",
    )
    .await;
    let mut all = routine.clone();
    all.push(urgent.clone());
    wait_for(&server, &all, &["accepted"], Duration::from_secs(30)).await;
    let order: Vec<String> = receiver
        .delivered()
        .iter()
        .map(|r| {
            r.bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["resource"]["resourceType"] == "DocumentReference")
                .unwrap()["resource"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let urgent_doc = letter_state(&server, &urgent).await["delivery"]["documentId"]
        .as_str()
        .unwrap()
        .to_string();
    let position = order.iter().position(|d| *d == urgent_doc).unwrap();
    assert!(
        position <= 6,
        "the urgent letter came {position}th of {}",
        order.len()
    );
    assert!(pdf_text(&document_pdf(&receiver.delivered()[position].bundle)).contains("URGENT"));

    // An urgent letter the practice's system does not take within urgent_ack_secs is escalated,
    // and still retried.
    receiver.set_delay(Duration::ZERO);
    receiver.script(&[], Reply::Status(503));
    let stuck = send_letter(&server, &sr, "urgent", "Another safeguarding concern.").await;
    let done = wait_one(&server, &stuck, "escalated", 10).await;
    assert!(done["delivery"]["escalatedAt"].is_string());
    assert_eq!(done["communication"]["status"], "in-progress");
    let (_, escalated) = whs(&server).get("/api/v1/letters?state=escalated").await;
    assert_eq!(escalated["total"], 1);
    assert!(server.logs().contains("letter-escalated"));
    let metrics = metrics(&server).await;
    assert!(
        metrics.contains("whg_letters_escalated_total 1"),
        "{metrics}"
    );
    // The outbox's depth: the one letter still in its hands, escalated, and how long it waits.
    assert!(
        metrics.contains("whg_outbox_letters{state=\"escalated\"} 1\n")
            && metrics.contains("whg_outbox_letters{state=\"queued\"} 0\n")
            && metrics.contains("whg_outbox_oldest_age_seconds{state=\"escalated\"} "),
        "{metrics}"
    );
    receiver.script(&[], Reply::Ok);
    wait_one(&server, &stuck, "accepted", 10).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn letters_die_after_the_window_and_permanent_refusals_stop_at_once() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&url, tmp.path(), "retry_window_secs = 2");
    let (sr, _) = accepted_referral(&server, 6).await;

    receiver.script(&[Reply::Status(422)], Reply::Ok);
    let refused = send_letter(&server, &sr, "routine", "Refused by the receiver.").await;
    let done = wait_one(&server, &refused, "rejected", 10).await;
    assert_eq!(
        done["attempts"].as_array().unwrap().len(),
        1,
        "a 4xx is not retried"
    );
    assert!(
        done["delivery"]["lastError"]
            .as_str()
            .unwrap()
            .contains("HTTP 422: test receiver answered 422")
    );
    assert_eq!(done["communication"]["status"], "not-done");
    // Once the practice has fixed what refused it, the service sends it again.
    let resend = format!("/api/v1/letters/{refused}/$resend");
    assert_eq!(gp(&server).post(&resend, &json!({})).await.0, 403);
    let (status, _, again) = whs(&server).post(&resend, &json!({})).await;
    assert_eq!(
        (status, again["delivery"]["state"].as_str()),
        (200, Some("queued")),
        "{again}"
    );
    let done = wait_one(&server, &refused, "accepted", 10).await;
    let outcomes = outcomes_of(&done);
    assert_eq!(outcomes, ["permanent", "requeued", "delivered"], "{done:#}");
    let (status, _, _) = whs(&server).post(&resend, &json!({})).await;
    assert_eq!(status, 422, "an accepted letter is not sent again");

    receiver.script(&[], Reply::Status(500));
    let dead = send_letter(&server, &sr, "routine", "Never gets through.").await;
    let done = wait_one(&server, &dead, "dead", 15).await;
    assert!(done["attempts"].as_array().unwrap().len() >= 3);
    let (_, list) = whs(&server).get("/api/v1/letters?state=dead").await;
    assert_eq!(list["total"], 1);
    assert!(server.logs().contains("letter-dead"));
    let metrics = metrics(&server).await;
    assert!(metrics.contains("whg_letters_dead_total 1"), "{metrics}");
    let (status, _) = whs(&server).get("/api/v1/letters?state=lost").await;
    assert_eq!(status, 400);
}

/// Every fixture in fixtures/letters: letters for each outcome and declines for each reason reach
/// the practice saying what they should; invalid ones get exactly their expected issues.
#[tokio::test(flavor = "multi_thread")]
async fn every_letter_fixture_gives_its_expected_result() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&url, tmp.path(), "");
    let mut pending = Vec::new();
    for (n, path) in fixtures("letters").into_iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let expected = read_json(&expected_path(&path));
        let route = expected["route"].as_str().unwrap();
        let (status, answer) = act_on_fixture(&server, 100 + n, &path, route).await;
        assert_eq!(status, expected["status"], "{name}: {answer}");
        if let Some(expressions) = expected["expressions"].as_array() {
            let got: Vec<&str> = common::expressions(&answer);
            let want: Vec<&str> = expressions.iter().map(|e| e.as_str().unwrap()).collect();
            assert_eq!(got, want, "{name}: {answer}");
            continue;
        }
        let letter = if route == "letters" {
            answer["id"].as_str().unwrap().to_string()
        } else {
            answer["letters"][0]["id"].as_str().unwrap().to_string()
        };
        pending.push((name, letter, expected));
    }
    let ids: Vec<String> = pending.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 15);
    wait_for(&server, &ids, &["accepted"], Duration::from_secs(60)).await;
    let delivered = receiver.delivered();
    for (name, id, expected) in pending {
        let document = letter_state(&server, &id).await["delivery"]["documentId"]
            .as_str()
            .unwrap()
            .to_string();
        let message = delivered
            .iter()
            .find(|r| {
                r.bundle
                    .to_string()
                    .contains(&format!("DocumentReference/{document}"))
            })
            .unwrap_or_else(|| panic!("{name}: not delivered"));
        let text = flat(&pdf_text(&document_pdf(&message.bundle)));
        for needed in expected["pdfContains"].as_array().unwrap() {
            let needed = flat(needed.as_str().unwrap());
            assert!(text.contains(&needed), "{name}: '{needed}' not in:\n{text}");
        }
        // The exact message, ids and times aside (fixtures/outbound/: what an integrator's
        // receiver is built against).
        let stem = name.trim_end_matches(".json");
        check_golden(
            &root().join(format!("fixtures/outbound/{stem}.bars-response.json")),
            &golden_form(&message.bundle, &server.base),
        );
    }
}

fn itk_pdf(d: &Delivered) -> Vec<u8> {
    let document = &d.body["entry"][2]["resource"];
    let binary = document["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Binary")
        .unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(binary["resource"]["content"].as_str().unwrap())
        .unwrap()
}

/// A gateway whose practice C88901 takes letters over MESH through `sandbox`, with short retry
/// times and `mesh_extra` (more of the `[mesh]` table).
fn mesh_gateway(sandbox: &MeshSandbox, dir: &std::path::Path, mesh_extra: &str) -> Server {
    Server::start_with(&format!(
        r#"
[delivery]
initial_backoff_ms = 100
max_backoff_ms = 400
poll_interval_ms = 100

{mesh}poll_interval_ms = 200
{mesh_extra}
[directory.C88901]
channel = "mesh"
name = "Porter Brook Surgery"
mailbox = "{PRACTICE_MAILBOX}"
"#,
        mesh = sandbox.gateway_config(dir)
    ))
}

/// The adviser action a letter fixture is (a letter, or a decline by triage), taken on a referral
/// of its own (person `n`): its status and answer.
async fn act_on_fixture(
    server: &Server,
    n: usize,
    path: &std::path::Path,
    route: &str,
) -> (u16, Value) {
    let (sr, _) = if route == "letters" {
        accepted_referral(server, n).await
    } else {
        refer(server, &referral_for(n, WHS)).await
    };
    let (status, _, answer) = whs(server)
        .post(&format!("/api/v1/referrals/{sr}/{route}"), &read_json(path))
        .await;
    (status, answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn letters_go_over_mesh_and_both_itk3_acknowledgements_are_recorded() {
    let sandbox = MeshSandbox::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = mesh_gateway(
        &sandbox,
        tmp.path(),
        "infrastructure_ack_secs = 3\nbusiness_ack_secs = 30\n",
    );
    let gp = sandbox.mailbox(PRACTICE_MAILBOX);
    let (sr, _) = accepted_referral(&server, 8).await;

    // A letter goes out as GP Connect Send Document; the practice acknowledges it twice.
    let first = send_letter(&server, &sr, "routine", "Sent over MESH to the practice.").await;
    let got = gp.next().await;
    assert_eq!(got.workflow, "GPCONNECT_SEND_DOCUMENT");
    assert!(
        got.subject
            .contains("seen at Sheffield Work and Health Service"),
        "{}",
        got.subject
    );
    let header = &got.body["entry"][0]["resource"];
    assert_eq!(header["event"]["code"], "ITK007C");
    assert_eq!(header["source"]["endpoint"], GATEWAY_MAILBOX);
    let composition = &got.body["entry"][2]["resource"]["entry"][0]["resource"];
    assert_eq!(composition["type"]["coding"][0]["code"], "371531000");
    let text = flat(&pdf_text(&itk_pdf(&got)));
    assert!(text.contains("Sent over MESH to the practice."), "{text}");
    check_with_independent_fhir_stu3(std::slice::from_ref(&got.body));
    let sent = wait_one(&server, &first, "sent", 10).await;
    assert_eq!(sent["delivery"]["channel"], "mesh");
    assert!(sent["delivery"]["transportId"].is_string());
    assert_eq!(sent["communication"]["status"], "in-progress");

    gp.respond(&message_header_id(&got), "20013", "Success")
        .await;
    wait_one(&server, &first, "received", 10).await;
    gp.respond(&message_header_id(&got), "30001", "Success")
        .await;
    let done = wait_one(&server, &first, "accepted", 10).await;
    let outcomes = outcomes_of(&done);
    assert_eq!(
        outcomes,
        ["sent", "acknowledged", "acknowledged"],
        "{done:#}"
    );
    assert_eq!(done["communication"]["status"], "completed");

    // A negative business acknowledgement: rejected, with the practice's code.
    let second = send_letter(
        &server,
        &sr,
        "routine",
        "The practice will refuse this one.",
    )
    .await;
    let got = gp.next().await;
    gp.respond(&message_header_id(&got), "20013", "Success")
        .await;
    gp.respond(
        &message_header_id(&got),
        "30002",
        "Patient not known at this practice",
    )
    .await;
    let done = wait_one(&server, &second, "rejected", 10).await;
    assert!(
        done["delivery"]["lastError"]
            .as_str()
            .unwrap()
            .contains("30002"),
        "{done:#}"
    );

    // No acknowledgement in time: sent again with the same ITK message id, then acknowledged;
    // the practice's system files it once.
    let third = send_letter(&server, &sr, "urgent", "Sent again when unacknowledged.").await;
    let once = gp.next().await;
    let again = gp.next().await;
    assert_ne!(once.id, again.id, "two MESH messages");
    assert_eq!(
        message_header_id(&once),
        message_header_id(&again),
        "one ITK message"
    );
    gp.file(&again).await;
    let done = wait_one(&server, &third, "accepted", 10).await;
    let sends = outcomes_of(&done).iter().filter(|o| **o == "sent").count();
    assert!(sends >= 2, "{done:#}");

    // MESH's own non-delivery report (e.g. EPL-151, no mailbox for the practice): the letter is
    // queued again, with the reason, and sent again.
    let fourth = send_letter(
        &server,
        &sr,
        "routine",
        "MESH reports this one undelivered.",
    )
    .await;
    let got = gp.next().await;
    let sent = wait_one(&server, &fourth, "sent", 10).await;
    let report = http()
        .post(format!("{}/messageexchange/admin/report", sandbox.url))
        .json(&json!({
            "mailbox_id": GATEWAY_MAILBOX,
            "code": "EPL-151",
            "description": "No mailbox matched",
            "workflow_id": "GPCONNECT_SEND_DOCUMENT",
            "local_id": sent["delivery"]["messageId"],
            "linked_message_id": sent["delivery"]["transportId"],
            "status": "error",
        }))
        .send()
        .await
        .unwrap();
    assert!(
        report.status().is_success(),
        "{}",
        report.text().await.unwrap()
    );
    let resent = gp.next().await;
    assert_eq!(message_header_id(&got), message_header_id(&resent));
    gp.file(&resent).await;
    let done = wait_one(&server, &fourth, "accepted", 10).await;
    assert!(
        done["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["outcome"] == "retry"
                && a["detail"]
                    .as_str()
                    .unwrap()
                    .contains("(EPL-151): No mailbox matched")),
        "{done:#}"
    );

    // The gateway's inbox is left empty: every acknowledgement was handled and acknowledged.
    let auth = whg::delivery::mesh::authorization(
        GATEWAY_MAILBOX,
        MESH_PASSWORD,
        MESH_KEY,
        &uuid::Uuid::new_v4().to_string(),
        chrono::Utc::now(),
    );
    let inbox: Value = http()
        .get(format!(
            "{}/messageexchange/{GATEWAY_MAILBOX}/inbox",
            sandbox.url
        ))
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inbox["messages"], json!([]), "{inbox}");
    assert!(
        !server.logs().contains(&nhs_number(8)),
        "no NHS number in the logs"
    );
}

/// Without the person's consent to feedback, nothing the service writes reaches the practice:
/// not the decline letter, not the workflow Task, not the letter's PDF. The practice still sees
/// its referral's own status.
#[tokio::test(flavor = "multi_thread")]
async fn without_consent_to_feedback_the_practice_sees_only_its_referrals_status() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&url, tmp.path(), "");
    let mut body = referral_for(9, WHS);
    body["consent"]["feedbackToPractice"] = json!(false);
    let (sr, _) = refer(&server, &body).await;
    let (status, _, state) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "decline", "reason": "supported-elsewhere" }),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    let letter = state["letters"][0]["id"].as_str().unwrap().to_string();
    let cancelled = wait_one(&server, &letter, "cancelled", 10).await;
    assert!(receiver.received().is_empty(), "nothing was sent");

    // The practice: its referral's status, yes; the service's record, no.
    let (_, referral) = gp(&server).get(&format!("/fhir/ServiceRequest/{sr}")).await;
    assert_eq!(referral["status"], "revoked");
    let (status, shown) = gp(&server)
        .get(&format!("/api/v1/referrals/{sr}/workflow"))
        .await;
    assert_eq!(status, 200);
    assert!(
        shown["withheld"].is_string() && shown.get("task").is_none(),
        "{shown}"
    );
    let (_, tasks) = gp(&server)
        .get(&format!("/fhir/Task?focus=ServiceRequest/{sr}"))
        .await;
    assert_eq!(tasks["total"], 0, "{tasks}");
    let task_id = state["task"]["id"].as_str().unwrap();
    let document = cancelled["delivery"]["documentId"].as_str().unwrap();
    // Who reads what: the practice nothing the service wrote, the service its own record.
    let reads = [
        (gp(&server), format!("/fhir/Task/{task_id}"), 403),
        (
            gp(&server),
            format!("/fhir/DocumentReference/{document}"),
            403,
        ),
        (gp(&server), format!("/api/v1/letters/{letter}"), 403),
        (whs(&server), format!("/api/v1/letters/{letter}"), 200),
        (whs(&server), format!("/fhir/Task/{task_id}"), 200),
    ];
    for (actor, path, expected) in &reads {
        assert_eq!(actor.get(path).await.0, *expected, "{path}");
    }
    let (_, listed) = gp(&server).get("/api/v1/letters").await;
    assert_eq!(
        listed["total"], 0,
        "a list never shows a withheld letter: {listed}"
    );
    let (_, listed) = whs(&server).get("/api/v1/letters").await;
    assert_eq!(listed["total"], 1, "{listed}");
}

/// The answer to a BaRS referral is a BaRS `servicerequest-response` to the sender, as the
/// BaRS MessageHeader profile (BARSMessageHeader-servicerequest-response 1.0.3) and API ask:
/// `reason` from message-reason-bars; `response` naming the request (BaRS Core, Message
/// Headers: "MessageHeader.response.identifier with the Bundle.Id of the original request
/// payload"); sender and receiver as Organization entries; `destination.endpoint` and
/// `NHSD-Target-Identifier` the practice's target identifier, from the practice directory and
/// never from what a sender's message says; and the NHSD headers, "Standard Base64 encoded
/// JSON" (booking-and-referral-1.4.0.yaml). Before, none of these.
#[tokio::test]
async fn a_letter_answers_a_bars_referral_as_a_bars_response_to_its_sender() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&url, tmp.path(), "");
    let mut message =
        read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"));
    let entries = message["entry"].as_array_mut().unwrap();
    let sender_url = entries[0]["resource"]["sender"]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    // The sender says to answer elsewhere: only the practice directory says where letters go.
    entries[0]["resource"]["source"]["endpoint"] =
        json!("https://fhir.nhs.uk/Id/dos-service-id|6666666666");
    let sender = entries
        .iter_mut()
        .find(|e| e["fullUrl"] == sender_url.as_str())
        .unwrap();
    sender["resource"]["identifier"][0]["value"] = json!(DEFAULT_PRACTICE);
    // Feedback to the practice, agreed in standard R4 terms: the sender as information recipient.
    let mut feedback = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Consent")
        .unwrap()
        .clone();
    feedback["fullUrl"] = json!("urn:uuid:00000000-0000-4000-8000-0000000000f1");
    let consent = &mut feedback["resource"];
    consent.as_object_mut().unwrap().remove("policyRule");
    consent["category"] =
        json!([{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }]);
    consent["provision"] = json!({
        "type": "permit",
        "actor": [{
            "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP" }] },
            "reference": { "reference": sender_url }
        }],
        "action": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "disclose" }] }],
        "purpose": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT" }]
    });
    entries.push(feedback);
    let (status, headers, answer) = gp(&server).post("/fhir/$process-message", &message).await;
    assert_eq!(status, 200, "{answer}");
    let sr = location_id(&headers);
    let (status, _, body) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = send_letter(&server, &sr, "routine", "Seen for advice.").await;
    wait_one(&server, &id, "accepted", 30).await;

    let delivered = &receiver.delivered()[0];
    let bundle = &delivered.bundle;
    let header = &bundle["entry"][0]["resource"];
    assert_eq!(header["eventCoding"]["code"], "servicerequest-response");
    assert_eq!(
        header["reason"]["coding"][0],
        json!({ "system": "https://fhir.nhs.uk/CodeSystem/message-reason-bars", "code": "new" })
    );
    assert_eq!(
        header["response"],
        json!({ "identifier": message["id"], "code": "ok" })
    );
    assert_eq!(header["destination"][0]["endpoint"], PRACTICE_TARGET);
    let entry = |reference: &Value| {
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["fullUrl"] == *reference)
            .map(|e| e["resource"].clone())
            .unwrap_or_else(|| panic!("{reference} is not an entry of {bundle:#}"))
    };
    let receiver_org = entry(&header["destination"][0]["receiver"]["reference"]);
    assert_eq!(receiver_org["resourceType"], "Organization");
    assert_eq!(receiver_org["identifier"][0]["value"], DEFAULT_PRACTICE);
    let sender_org = entry(&header["sender"]["reference"]);
    assert!(
        sender_org["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["value"] == WHS),
        "{sender_org}"
    );
    assert_eq!(
        header["definition"],
        "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-response-referral"
    );

    let decoded = |name: &str| -> Value {
        let text = delivered
            .nhsd
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", delivered.nhsd));
        serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap(),
        )
        .unwrap()
    };
    let (system, value) = PRACTICE_TARGET.split_once('|').unwrap();
    assert_eq!(
        decoded("nhsd-target-identifier"),
        json!({ "system": system, "value": value })
    );
    assert_eq!(decoded("nhsd-end-user-organisation"), sender_org);
    assert_eq!(
        decoded("nhsd-requesting-software")["resourceType"],
        "Device"
    );
    check_with_independent_fhir(
        &bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"].clone())
            .collect::<Vec<_>>(),
    );
}

/// Every letter fixture as the ITK3 message GP Connect Send Document carries it over MESH, exact
/// but for ids and times (fixtures/outbound/*.itk3.json): what an integrator's MESH receiver is
/// built against.
#[tokio::test(flavor = "multi_thread")]
async fn every_letter_fixture_goes_over_mesh_as_its_golden_itk3_message() {
    let sandbox = MeshSandbox::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = mesh_gateway(&sandbox, tmp.path(), "");
    let gp = sandbox.mailbox(PRACTICE_MAILBOX);
    let mut checked = 0;
    for (n, path) in fixtures("letters").into_iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let expected = read_json(&expected_path(&path));
        if expected.get("expressions").is_some() {
            continue; // an invalid letter: nothing is sent
        }
        let route = expected["route"].as_str().unwrap();
        let (status, answer) = act_on_fixture(&server, 200 + n, &path, route).await;
        assert_eq!(status, expected["status"], "{name}: {answer}");
        let got = gp.next().await;
        // The letter itself (the golden file names its bytes only).
        let text = flat(&pdf_text(&itk_pdf(&got)));
        for needed in expected["pdfContains"].as_array().unwrap() {
            let needed = flat(needed.as_str().unwrap());
            assert!(text.contains(&needed), "{name}: '{needed}' not in:\n{text}");
        }
        let stem = name.trim_end_matches(".json");
        check_golden(
            &root().join(format!("fixtures/outbound/{stem}.itk3.json")),
            &golden_form(&got.body, &server.base),
        );
        checked += 1;
    }
    assert_eq!(checked, 15);
}
