//! Attack 14: the gateway's MESH inbox. Anyone with a MESH mailbox can send the gateway messages:
//! enough junk to fill the page MESH lists (500) and hide every real acknowledgement behind it, an
//! acknowledgement of someone else's letter, or a message too large to hold in memory. Each is
//! acknowledged to MESH and quarantined (kept, listed for information governance, audited), and
//! only the mailbox a letter went to can answer for it. Against NHS England's `mesh-sandbox`.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use whg::auth::{Principal, Role};

use crate::common::*;

const WHS: &str = "sheffield-whs";
const ACK_WORKFLOW: &str = "GPCONNECT_SEND_DOCUMENT_ACK";

/// More junk than MESH lists on one page (mesh-sandbox, like MESH, lists 500).
const JUNK: usize = 600;

/// The gateway on the sandbox, taking letters for the default practice over MESH. The
/// acknowledgement windows are long: no letter is sent twice during a test.
fn gateway(sandbox: &MeshSandbox, dir: &std::path::Path, max_message_bytes: u64) -> Server {
    Server::start_with(&format!(
        r#"
[delivery]
initial_backoff_ms = 100
max_backoff_ms = 400
poll_interval_ms = 100

{mesh}poll_interval_ms = 200
infrastructure_ack_secs = 600
business_ack_secs = 600
max_message_bytes = {max_message_bytes}

[directory.{DEFAULT_PRACTICE}]
channel = "mesh"
name = "Porter Brook Surgery"
mailbox = "{PRACTICE_MAILBOX}"
"#,
        mesh = sandbox.gateway_config(dir)
    ))
}

fn ig(server: &Server) -> Actor<'_> {
    server.as_(Principal::new(Role::InformationGovernance, "ig-team"))
}

/// A letter from the service on an accepted referral for person `n`, as the practice's system
/// receives it over MESH; returns the letter's id and the message.
async fn letter_at_the_practice(
    server: &Server,
    practice: &GpMailbox,
    n: usize,
) -> (String, Delivered) {
    let (sr, _) = refer(server, &referral_for(n, WHS)).await;
    let whs = server.as_(Principal::service(WHS));
    let (status, _, body) = whs
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = whs
        .post(
            &format!("/api/v1/referrals/{sr}/letters"),
            &json!({
                "priority": "routine",
                "summary": "Seen for advice.",
                "supportGiven": ["advice-session"],
                "author": { "name": "Sam Patel", "role": "Work and health adviser" }
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let letter = location_id(&headers);
    let delivered = practice.next().await;
    wait_for_state(server, &letter, "sent").await;
    (letter, delivered)
}

async fn letter_state(server: &Server, id: &str) -> Value {
    let (status, body) = server
        .as_(Principal::service(WHS))
        .get(&format!("/api/v1/letters/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_for_state(server: &Server, id: &str, state: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let letter = letter_state(server, id).await;
        if letter["delivery"]["state"] == state {
            return letter;
        }
        assert!(Instant::now() < until, "not {state}: {letter:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The quarantine as information governance lists it, once it holds `count` messages.
async fn wait_for_quarantine(server: &Server, count: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = ig(server).get("/api/v1/mesh/quarantine?_count=1000").await;
        assert_eq!(status, 200, "{body}");
        let messages = body["messages"].as_array().unwrap().clone();
        if messages.len() >= count {
            assert_eq!(body["total"], count, "{body}");
            return messages;
        }
        assert!(
            Instant::now() < until,
            "{} of {count} quarantined",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_empty_inbox(sandbox: &MeshSandbox) {
    let gateway = sandbox.mailbox(GATEWAY_MAILBOX);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = gateway.inbox().await;
        if waiting.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "{} left in the gateway's inbox",
            waiting.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The MESH message ids of the gateway's quarantine AuditEvents, as information governance
/// finds them in the audit trail.
async fn quarantine_audit(server: &Server) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for page in 0.. {
        let (status, bundle) = ig(server)
            .get(&format!(
                "/fhir/AuditEvent?outcome=4&_count=100&_offset={}",
                page * 100
            ))
            .await;
        assert_eq!(status, 200, "{bundle}");
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            break;
        }
        for event in entries.into_iter().map(|e| e["resource"].clone()) {
            if event["subtype"][0]["code"] != "mesh-quarantine" {
                continue;
            }
            let message =
                event["entity"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| {
                        e["what"]["identifier"]["system"]
                            .as_str()
                            .is_some_and(|s| s.ends_with("/Id/mesh-message"))
                    })
                    .unwrap_or_else(|| panic!("no MESH message in {event}"))["what"]["identifier"]
                    ["value"]
                    .as_str()
                    .unwrap()
                    .to_string();
            found.push((message, event));
        }
    }
    found
}

/// Peak resident memory of process `pid`, in KiB.
fn peak_memory_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// What the flood is made of: not FHIR at all, acknowledgements of letters the gateway never
/// sent, and messages on another workflow.
fn junk(i: usize) -> (&'static str, Vec<u8>, &'static str) {
    match i % 3 {
        0 => (
            ACK_WORKFLOW,
            format!("junk {i}").into_bytes(),
            "not-an-acknowledgement",
        ),
        1 => (
            ACK_WORKFLOW,
            itk_response(
                &uuid::Uuid::new_v4().to_string(),
                "30001",
                "Success",
                OTHER_MAILBOX,
            )
            .to_string()
            .into_bytes(),
            "answers-no-letter",
        ),
        _ => (
            "TEST_WORKFLOW2",
            b"{\"resourceType\":\"Bundle\"}".to_vec(),
            "unexpected-workflow",
        ),
    }
}

/// (a) More than a page of junk ahead of a letter's acknowledgements: the letter is still
/// accepted, the inbox ends empty, and every junk message is quarantined, listed and audited.
#[tokio::test(flavor = "multi_thread")]
async fn junk_in_the_inbox_cannot_hide_a_letters_acknowledgements() {
    let sandbox = MeshSandbox::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&sandbox, tmp.path(), 65536);
    let practice = sandbox.mailbox(PRACTICE_MAILBOX);
    let attacker = sandbox.mailbox(OTHER_MAILBOX);
    let (letter, delivered) = letter_at_the_practice(&server, &practice, 140).await;

    let started = Instant::now();
    let mut sent: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut first_junk = None;
    for batch in (0..JUNK).collect::<Vec<_>>().chunks(20) {
        let sends = batch.iter().map(|&i| {
            let (workflow, body, reason) = junk(i);
            let attacker = &attacker;
            async move {
                let id = attacker
                    .send(GATEWAY_MAILBOX, workflow, &format!("junk-{i}"), body)
                    .await;
                (i, id, reason)
            }
        });
        for (i, id, reason) in futures::future::join_all(sends).await {
            if i == 0 {
                first_junk = Some(id.clone());
            }
            sent.insert(id, reason);
        }
    }
    let flooded_in = started.elapsed();
    // Behind the flood, the practice's system files the letter: 20013, then 30001.
    practice.file(&delivered).await;

    let accepted = wait_for_state(&server, &letter, "accepted").await;
    let outcomes: Vec<&str> = accepted["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["sent", "acknowledged", "acknowledged"]);
    let quarantined = wait_for_quarantine(&server, JUNK).await;
    wait_for_empty_inbox(&sandbox).await;
    eprintln!(
        "{JUNK} junk messages sent in {flooded_in:?}; letter accepted and inbox empty after {:?}",
        started.elapsed()
    );

    let listed: BTreeMap<String, &str> = quarantined
        .iter()
        .map(|m| {
            assert_eq!(m["sender"], OTHER_MAILBOX, "{m}");
            assert_eq!(m["hasContent"], true, "{m}");
            assert!(m["letterId"].is_null(), "{m}");
            (
                m["id"].as_str().unwrap().to_string(),
                m["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed, sent,
        "every junk message, with why it was set aside"
    );

    // The content is kept, bounded, for review; reading it is audited.
    let first_junk = first_junk.unwrap();
    let (status, shown) = ig(&server)
        .get(&format!("/api/v1/mesh/quarantine/{first_junk}"))
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["content"], "junk 0");
    assert_eq!(shown["message"]["workflowId"], ACK_WORKFLOW);
    assert_eq!(shown["message"]["size"], 6);

    // One AuditEvent per quarantined message, by the gateway itself.
    let audited = quarantine_audit(&server).await;
    let audited_ids: HashSet<&str> = audited.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(audited.len(), JUNK, "one event each");
    assert_eq!(
        audited_ids,
        sent.keys().map(String::as_str).collect::<HashSet<_>>()
    );
    let (_, event) = &audited[0];
    assert_eq!(
        event["agent"][0]["who"]["display"],
        "Work and Health Gateway"
    );
    assert!(
        event["outcomeDesc"]
            .as_str()
            .unwrap()
            .contains(OTHER_MAILBOX),
        "{event}"
    );

    // Nobody else reads the quarantine.
    for who in [
        Principal::practice(DEFAULT_PRACTICE),
        Principal::service(WHS),
    ] {
        let (status, body) = server.as_(who).get("/api/v1/mesh/quarantine").await;
        assert_eq!(status, 403, "{body}");
        let (status, _) = server
            .as_(Principal::service(WHS))
            .get(&format!("/api/v1/mesh/quarantine/{first_junk}"))
            .await;
        assert_eq!(status, 403);
    }
}

/// (b) Another mailbox answers for a real letter, "filed" and then "refused": both quarantined,
/// the letter unchanged; the practice's own answer is taken as before.
#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledgement_from_another_mailbox_changes_nothing() {
    let sandbox = MeshSandbox::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&sandbox, tmp.path(), 65536);
    let practice = sandbox.mailbox(PRACTICE_MAILBOX);
    let attacker = sandbox.mailbox(OTHER_MAILBOX);
    let (letter, delivered) = letter_at_the_practice(&server, &practice, 141).await;
    let before = letter_state(&server, &letter).await;

    let original = message_header_id(&delivered);
    attacker.respond(&original, "30002", "Refused").await;
    attacker.respond(&original, "30001", "Success").await;
    let quarantined = wait_for_quarantine(&server, 2).await;
    wait_for_empty_inbox(&sandbox).await;
    for m in &quarantined {
        assert_eq!(
            (
                m["reason"].as_str(),
                m["sender"].as_str(),
                m["letterId"].as_str()
            ),
            (
                Some("wrong-sender"),
                Some(OTHER_MAILBOX),
                Some(letter.as_str())
            ),
            "{m}"
        );
    }
    let after = letter_state(&server, &letter).await;
    assert_eq!(
        after["delivery"], before["delivery"],
        "the letter is unchanged"
    );
    assert_eq!(after["attempts"], before["attempts"]);
    assert_eq!(
        after["communication"]["meta"]["versionId"],
        before["communication"]["meta"]["versionId"]
    );
    let audited = quarantine_audit(&server).await;
    assert_eq!(audited.len(), 2);
    for (_, event) in &audited {
        assert!(
            event["entity"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["what"]["reference"] == format!("Communication/{letter}")),
            "the event names the letter it claimed to answer: {event}"
        );
    }

    practice.file(&delivered).await;
    wait_for_state(&server, &letter, "accepted").await;
}

/// (c) A message far larger than any acknowledgement: acknowledged and quarantined with its size
/// and no content, without the gateway reading it into memory.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_message_is_quarantined_unread() {
    const LIMIT: u64 = 65536;
    const HUGE: usize = 48 * 1024 * 1024;
    let sandbox = MeshSandbox::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = gateway(&sandbox, tmp.path(), LIMIT);
    let attacker = sandbox.mailbox(OTHER_MAILBOX);
    // The gateway at work first, so its peak memory is that of a gateway doing its job.
    refer(&server, &referral_for(142, WHS)).await;
    let peak_before = peak_memory_kib(server.pid());

    let huge = attacker
        .send(GATEWAY_MAILBOX, ACK_WORKFLOW, "huge", vec![b'x'; HUGE])
        .await;
    let just_over = attacker
        .send(
            GATEWAY_MAILBOX,
            ACK_WORKFLOW,
            "just-over",
            vec![b'y'; LIMIT as usize + 1],
        )
        .await;
    let quarantined = wait_for_quarantine(&server, 2).await;
    wait_for_empty_inbox(&sandbox).await;
    let peak_after = peak_memory_kib(server.pid());

    for (id, size) in [(&huge, HUGE), (&just_over, LIMIT as usize + 1)] {
        let m = quarantined.iter().find(|m| m["id"] == *id).unwrap();
        assert_eq!(
            (m["reason"].as_str(), m["size"].as_u64(), &m["hasContent"]),
            (Some("too-large"), Some(size as u64), &json!(false)),
            "{m}"
        );
        let (status, shown) = ig(&server)
            .get(&format!("/api/v1/mesh/quarantine/{id}"))
            .await;
        assert_eq!(status, 200);
        assert!(
            shown.get("content").is_none() && shown.get("contentBase64").is_none(),
            "{shown}"
        );
    }
    assert_eq!(quarantine_audit(&server).await.len(), 2);
    let grew_kib = peak_after.saturating_sub(peak_before);
    eprintln!("peak memory {peak_before} KiB before, {peak_after} KiB after");
    assert!(
        grew_kib < (HUGE as u64 / 1024) / 4,
        "the gateway's peak memory grew by {grew_kib} KiB for a {HUGE}-byte message"
    );
}
