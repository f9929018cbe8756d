//! Employer letters (issue 17, part 4), over HTTP against the real binary and a real SMTP server
//! (aiosmtpd): the adviser drafts a return-to-work letter; without the person's approval it
//! never leaves; approval of version 1 does not send an edited version 2; after a withdrawal
//! nothing leaves; the PDF holds no diagnosis unless the person's consent covers it; nobody but
//! the service knows the letter exists. Thought of as an attacker with each token: what can a
//! practice, another service, the employer itself, or an adviser skipping the person, cause?

mod common;

use base64::Engine as _;
use common::receiver::{flat, pdf_text, wait_one, whs};
use common::*;
use serde_json::{Value, json};
use whg::auth::Principal;

const EMPLOYER: &str = "hr@care-home.example";

fn gateway(smtp: &RecordingServer, dir: &std::path::Path) -> Server {
    gateway_with(smtp, dir, "")
}

/// The same, with `extra` configuration after the rest.
fn gateway_with(smtp: &RecordingServer, dir: &std::path::Path, extra: &str) -> Server {
    let smtp_table = format!(
        "[delivery.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"whg-letters@example.nhs.uk\"\n",
        smtp.port
    );
    // A busy mailbox is retried within seconds.
    Server::start_with(&format!(
        "{}\n{extra}",
        common::receiver::letters_config("http://127.0.0.1:9", dir, &smtp_table)
    ))
}

fn body(to: &str, summary: &str, conditions: bool) -> Value {
    json!({
        "kind": "return-to-work-plan",
        "employer": { "name": "Sheffield care home (synthetic), HR", "email": to },
        "summary": summary,
        "plan": "Phased return over four weeks: 50%, 60%, 80%, 100% of her hours.",
        "adjustments": ["A quiet space for breaks", "No night shifts for the first month"],
        "includeHealthConditions": conditions,
        "author": { "name": "Sam Patel", "role": "Work and health adviser" }
    })
}

/// A referral to WHS for person `n`, accepted; its id and Patient id.
async fn accepted(server: &Server, n: usize) -> (String, String) {
    common::receiver::accepted_referral(server, n).await
}

async fn draft(server: &Server, sr: &str, body: &Value) -> Value {
    let (status, _, letter) = whs(server)
        .post(&format!("/api/v1/referrals/{sr}/employer-letters"), body)
        .await;
    assert_eq!(status, 201, "{letter}");
    letter
}

async fn act(server: &Server, id: &str, what: &str, body: &Value) -> (u16, Value) {
    let (status, _, out) = whs(server)
        .post(&format!("/api/v1/employer-letters/{id}/{what}"), body)
        .await;
    (status, out)
}

fn pdf_of(letter: &Value) -> String {
    let data = letter["document"]["content"][0]["attachment"]["data"]
        .as_str()
        .unwrap();
    flat(&pdf_text(
        &base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_letter_leaves_only_as_the_version_the_person_approved() {
    let smtp = RecordingServer::start("tools/smtp_receiver.py");
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(&smtp, dir.path());
    let (sr, patient) = accepted(&server, 1).await;

    // Every problem at once, each at its field; nothing stored.
    let (status, _, outcome) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{sr}/employer-letters"),
            &json!({ "kind": "return-to-work-plan", "employer": { "name": "", "email": "not mail" }, "summary": "", "author": { "name": "" } }),
        )
        .await;
    assert_eq!(status, 422, "{outcome}");
    let at: Vec<&str> = expressions(&outcome);
    assert_eq!(
        at,
        [
            "employer.name",
            "employer.email",
            "summary",
            "plan",
            "author.name"
        ],
        "{outcome}"
    );

    // The draft: version 1, with the hash the person is shown; the conditions left out (no
    // consent lets the service tell an employer about them), and said so.
    let v1 = draft(
        &server,
        &sr,
        &body(EMPLOYER, "Joanne would like to return in January.", true),
    )
    .await;
    let id = v1["id"].as_str().unwrap().to_string();
    assert_eq!(v1["state"], "draft");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["healthConditions"], "left-out", "{v1}");
    assert!(
        v1["healthConditionsLeftOut"]
            .as_str()
            .unwrap()
            .contains("no active consent permits"),
        "{v1}"
    );
    let text = pdf_of(&v1);
    for needed in [
        "Return-to-work plan from Sheffield Work and Health Service",
        "Re: Joanne Whitworth",
        "Joanne Whitworth has read this letter and agreed to it being sent to you.",
        "Phased return over four weeks",
        "A quiet space for breaks",
    ] {
        assert!(text.contains(needed), "{needed} not in:\n{text}");
    }
    for never in [
        "Work-related stress",
        "1979-06-14",
        "NHS number",
        &nhs_number(1),
    ] {
        assert!(
            !text.contains(never),
            "{never} in the employer's letter:\n{text}"
        );
    }

    // Without the person's approval it never leaves.
    let (status, outcome) = act(&server, &id, "send", &json!({})).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome.to_string().contains("has not approved version 1"),
        "{outcome}"
    );
    // An answer about another version than the one stored is refused at its field.
    let (status, outcome) = act(
        &server,
        &id,
        "answer",
        &json!({ "sha256": "00".repeat(32), "approved": true }),
    )
    .await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "sha256", "{outcome}");

    // The person approves version 1 at a meeting; the adviser then edits it: version 2 is not
    // covered, and does not leave.
    let sha1 = v1["sha256"].as_str().unwrap();
    let (status, approved) = act(
        &server,
        &id,
        "answer",
        &json!({ "sha256": sha1, "approved": true }),
    )
    .await;
    assert_eq!(
        (status, approved["state"].as_str()),
        (200, Some("approved")),
        "{approved}"
    );
    let (status, _, v2) = whs(&server)
        .put(
            &format!("/api/v1/employer-letters/{id}"),
            &body(EMPLOYER, "Joanne would like to return in February.", false),
        )
        .await;
    assert_eq!(status, 200, "{v2}");
    assert_eq!(
        (v2["version"].as_i64(), v2["state"].as_str()),
        (Some(2), Some("draft")),
        "{v2}"
    );
    assert_ne!(v2["sha256"], v1["sha256"]);
    let (status, outcome) = act(&server, &id, "send", &json!({})).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome.to_string().contains("has not approved version 2"),
        "{outcome}"
    );
    // The person says no to version 2: it still cannot go.
    let (status, declined) = act(
        &server,
        &id,
        "answer",
        &json!({ "sha256": v2["sha256"], "approved": false }),
    )
    .await;
    assert_eq!(
        (status, declined["state"].as_str()),
        (200, Some("not-approved")),
        "{declined}"
    );
    assert_eq!(act(&server, &id, "send", &json!({})).await.0, 422);
    assert!(
        smtp.mails_to(EMPLOYER, 1, 1).await.is_empty(),
        "nothing left"
    );

    // They change their mind and approve version 2: it goes, and is what arrives.
    let (status, _) = act(
        &server,
        &id,
        "answer",
        &json!({ "sha256": v2["sha256"], "approved": true }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, sent) = act(&server, &id, "send", &json!({})).await;
    assert_eq!(
        (status, sent["state"].as_str()),
        (200, Some("sent")),
        "{sent}"
    );
    let letter = sent["letter"].as_str().unwrap();
    let delivered = wait_one(&server, letter, "accepted", 15).await;
    assert_eq!(delivered["delivery"]["channel"], "email", "{delivered}");
    let mails = smtp.mails_to(EMPLOYER, 1, 10).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(mails[0]["attachments"][0]["base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        whg::letters::employer::sha256_hex(&pdf),
        v2["sha256"].as_str().unwrap(),
        "exactly the version approved arrives"
    );
    let text = flat(&pdf_text(&pdf));
    assert!(text.contains("return in February"), "{text}");
    let outside = format!("{} {}", mails[0]["headers"], mails[0]["body"]);
    assert!(
        !outside.contains("Whitworth") && !outside.contains(&nhs_number(1)),
        "{outside}"
    );
    // Sent is sent: no edit, no second send.
    let (status, _, _) = whs(&server)
        .put(
            &format!("/api/v1/employer-letters/{id}"),
            &body(EMPLOYER, "Changed.", false),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(act(&server, &id, "send", &json!({})).await.0, 422);

    // Every step is in the person's audit trail, for information governance.
    let (status, audit) = server
        .as_(Principal::new(
            whg::caller::Role::InformationGovernance,
            "ig-team",
        ))
        .get(&format!(
            "/fhir/AuditEvent?patient=Patient/{patient}&_count=200"
        ))
        .await;
    assert_eq!(status, 200, "{audit}");
    let trail = audit.to_string();
    for step in [
        "employer letter drafted",
        "employer letter changed (version 2 follows 1)",
        "the person approved version 1 of the letter to their employer",
        "the person did not approve version 2",
        "the person approved version 2",
        "employer letter version 2 queued for the employer's contact",
        // The refused send's decision: nothing the person said permitted it.
        "no active consent permits",
    ] {
        assert!(trail.contains(step), "{step} not in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_withdrawal_stops_a_letter_waiting_to_go_and_nobody_else_learns_of_it() {
    let smtp = RecordingServer::start("tools/smtp_receiver.py");
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(&smtp, dir.path());
    let (sr, patient) = accepted(&server, 2).await;
    // The employer's mailbox is busy: the letter waits, retried.
    let busy = "busy.hr@care-home.example";
    let letter = draft(
        &server,
        &sr,
        &body(busy, "Joanne would like to return in January.", false),
    )
    .await;
    let id = letter["id"].as_str().unwrap().to_string();

    // Nobody but the service knows of it: the referring practice, another service, the
    // commissioner, the anonymous caller.
    for (who, actor) in [
        (
            "the practice",
            server.as_(Principal::practice(DEFAULT_PRACTICE)),
        ),
        (
            "another service",
            server.as_(Principal::service("workwell-south-tyneside")),
        ),
    ] {
        let (status, body) = actor.get(&format!("/api/v1/employer-letters/{id}")).await;
        assert!(matches!(status, 403 | 404), "{who}: {status} {body}");
        let (status, _, _) = actor
            .post(
                &format!("/api/v1/employer-letters/{id}/answer"),
                &json!({ "sha256": letter["sha256"], "approved": true }),
            )
            .await;
        assert!(matches!(status, 403 | 404), "{who} cannot approve it");
        let (status, _, _) = actor
            .post(&format!("/api/v1/employer-letters/{id}/send"), &json!({}))
            .await;
        assert!(matches!(status, 403 | 404), "{who} cannot send it");
    }
    // Another service, the referring practice (whatever its consent to feedback) and an
    // employer's own registered system cannot read the document at all.
    for (who, actor) in [
        (
            "the practice",
            server.as_(Principal::practice(DEFAULT_PRACTICE)),
        ),
        (
            "another service",
            server.as_(Principal::service("workwell-south-tyneside")),
        ),
        (
            "an employer's system",
            server.as_(Principal::new(whg::caller::Role::Employer, "care-home")),
        ),
    ] {
        let (status, _) = actor.get(&format!("/fhir/DocumentReference/{id}")).await;
        assert!(
            matches!(status, 403 | 404),
            "{who} cannot read the document"
        );
        let (_, found) = actor
            .get(&format!(
                "/fhir/DocumentReference?patient=Patient/{patient}"
            ))
            .await;
        assert!(
            !found.to_string().contains(&id),
            "{who} cannot find it: {found}"
        );
    }
    let (status, _) = http_status(&server, &format!("/api/v1/employer-letters/{id}")).await;
    assert_eq!(status, 401);

    let (_, answered) = act(
        &server,
        &id,
        "answer",
        &json!({ "sha256": letter["sha256"], "approved": true }),
    )
    .await;
    let approval = answered["answer"].as_str().unwrap().to_string();
    let (status, sent) = act(&server, &id, "send", &json!({})).await;
    assert_eq!(status, 200, "{sent}");
    let communication = sent["letter"].as_str().unwrap().to_string();
    // Wait for at least one refused attempt, so the withdrawal lands on a letter in retry.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let state = common::receiver::letter_state(&server, &communication).await;
        if state["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            assert!(
                state["delivery"]["lastError"]
                    .as_str()
                    .unwrap()
                    .contains("e-mail refused for now"),
                "{state}"
            );
            break;
        }
        assert!(std::time::Instant::now() < until, "{state}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The person withdraws their approval (the service recorded it, and changes it).
    let (status, mut consent) = whs(&server).get(&format!("/fhir/{approval}")).await;
    assert_eq!(status, 200, "{consent}");
    assert_eq!(
        consent["patient"]["reference"],
        format!("Patient/{patient}")
    );
    consent["status"] = json!("inactive");
    let (status, _, updated) = whs(&server)
        .put(&format!("/fhir/{approval}"), &consent)
        .await;
    assert_eq!(status, 200, "{updated}");
    let stopped = wait_one(&server, &communication, "cancelled", 15).await;
    assert!(
        stopped["delivery"]["lastError"]
            .as_str()
            .unwrap()
            .contains("consent does not allow"),
        "{stopped}"
    );
    assert!(
        smtp.records().is_empty(),
        "nothing left: {:?}",
        smtp.records()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_conditions_go_only_where_the_persons_consent_covers_them() {
    let smtp = RecordingServer::start("tools/smtp_receiver.py");
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(&smtp, dir.path());
    let (sr, patient) = accepted(&server, 3).await;
    // The person agreed, at their first contact, that their employer may know about their
    // health condition: the service records it.
    let consent = employer_diagnosis_consent(&patient, "permit");
    let (status, _, recorded) = whs(&server).post("/fhir/Consent", &consent).await;
    assert_eq!(status, 201, "{recorded}");
    let letter = draft(
        &server,
        &sr,
        &body(EMPLOYER, "Joanne would like to return in January.", true),
    )
    .await;
    assert_eq!(letter["healthConditions"], "included", "{letter}");
    let text = pdf_of(&letter);
    assert!(
        text.contains("has agreed that you may know about: Work-related stress."),
        "{text}"
    );
    let id = letter["id"].as_str().unwrap();
    act(
        &server,
        id,
        "answer",
        &json!({ "sha256": letter["sha256"], "approved": true }),
    )
    .await;

    // Before it goes, they change their mind about their health: the letter holding it is
    // stopped (asked when sent), and a new draft leaves it out.
    let refusal = employer_diagnosis_consent(&patient, "deny");
    let (status, _, recorded) = whs(&server).post("/fhir/Consent", &refusal).await;
    assert_eq!(status, 201, "{recorded}");
    let (status, outcome) = act(&server, id, "send", &json!({})).await;
    assert_eq!(status, 422, "{outcome}");
    let again = draft(
        &server,
        &sr,
        &body(EMPLOYER, "Joanne would like to return in January.", true),
    )
    .await;
    assert_eq!(again["healthConditions"], "left-out", "{again}");
    assert!(!pdf_of(&again).contains("Work-related stress"));
    assert!(smtp.mails_to(EMPLOYER, 1, 1).await.is_empty());
}

/// A Consent the service records for the person: their employer may (or may not) be told about
/// their health conditions, in letters the person approves.
fn employer_diagnosis_consent(patient: &str, kind: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient}") },
        "dateTime": chrono::Utc::now().to_rfc3339(),
        "performer": [{ "reference": format!("Patient/{patient}") }],
        "provision": {
            "type": kind,
            "period": { "start": "2026-01-01" },
            "actor": [{
                "role": { "coding": [
                    { "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP" },
                    { "system": "https://fhir.work-health-gateway.org/CodeSystem/consent-recipient", "code": "employer" }
                ] },
                "reference": { "display": "The person's employer" }
            }],
            "action": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "disclose" }] }],
            "purpose": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT" }],
            "class": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/consent-data-class", "code": "diagnosis" }]
        }
    })
}

async fn http_status(server: &Server, path: &str) -> (u16, Value) {
    let r = http().get(server.url(path)).send().await.unwrap();
    let (status, _, body) = read_response(r).await;
    (status, body)
}

/// A one-time link for letter `id`, and its code.
async fn link_for(server: &Server, id: &str) -> (String, String) {
    let (status, _, link) = whs(server)
        .post(&format!("/api/v1/employer-letters/{id}/link"), &json!({}))
        .await;
    assert_eq!(status, 201, "{link}");
    (
        link["url"].as_str().unwrap().to_string(),
        link["code"].as_str().unwrap().to_string(),
    )
}

/// A browser's form post to the link (as its own page sends it).
async fn post_form(url: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let r = http()
        .post(url)
        .header("sec-fetch-site", "same-origin")
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

async fn get_page(url: &str) -> (u16, String) {
    let r = http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

const BIRTH: [(&str, &str); 3] = [
    ("birth-day", "14"),
    ("birth-month", "6"),
    ("birth-year", "1979"),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_person_answers_on_a_one_time_link_only_as_themselves() {
    let smtp = RecordingServer::start("tools/smtp_receiver.py");
    let dir = tempfile::tempdir().unwrap();
    // The person's own tries on one letter here are more than a person needs (wrong ones
    // among them), so this gateway takes seven a day.
    let server = gateway_with(
        &smtp,
        dir.path(),
        "[employer_letters]\nbirth_date_tries_per_day = 7.0\n",
    );
    let (sr, _) = accepted(&server, 4).await;
    let letter = draft(
        &server,
        &sr,
        &body(EMPLOYER, "Joanne would like to return in January.", false),
    )
    .await;
    let id = letter["id"].as_str().unwrap().to_string();
    // Only the service makes links.
    let (status, _, _) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .post(&format!("/api/v1/employer-letters/{id}/link"), &json!({}))
        .await;
    assert!(matches!(status, 403 | 404));
    let (url, code) = link_for(&server, &id).await;
    let token = url.rsplit('/').next().unwrap().to_string();
    let who = |day: &'static str| {
        vec![
            ("birth-day", day),
            ("birth-month", "6"),
            ("birth-year", "1979"),
            ("code", code.as_str()),
        ]
    };

    // The link alone shows nothing about the person or the letter.
    let (status, first) = get_page(&url).await;
    assert_eq!(status, 200, "{first}");
    assert!(first.contains("What is your date of birth?"), "{first}");
    for secret in ["Whitworth", "return in January", EMPLOYER] {
        assert!(
            !first.contains(secret),
            "{secret} shown before the person said who they are"
        );
    }
    // A wrong date of birth: asked again, still nothing shown.
    let (status, wrong) = post_form(&url, &who("15")).await;
    assert_eq!(status, 422);
    assert!(
        wrong.contains("does not match") && !wrong.contains("return in January"),
        "{wrong}"
    );
    // The right date of birth without the code (as an employer who saw the link and knows the
    // person's birthday would have it): nothing either.
    let (status, wrong) = post_form(&url, &BIRTH).await;
    assert_eq!(status, 422);
    assert!(!wrong.contains("return in January"), "{wrong}");
    let mut bad_code = who("14");
    bad_code[3] = ("code", "000000");
    if code != "000000" {
        assert_eq!(post_form(&url, &bad_code).await.0, 422);
    }
    // Another site's post is refused.
    let r = http()
        .post(&url)
        .header("sec-fetch-site", "cross-site")
        .form(&who("14"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // A link with one character changed is no link.
    let mut forged = url.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    assert_eq!(get_page(&forged).await.0, 404);

    // Their date of birth and code: the letter as it would be sent, with its fingerprint.
    let (status, shown) = post_form(&url, &who("14")).await;
    assert_eq!(status, 200, "{shown}");
    assert!(
        shown.contains("return in January") && shown.contains("Phased return"),
        "{shown}"
    );
    let sha = letter["sha256"].as_str().unwrap();
    assert!(shown.contains(sha), "the version shown is named: {shown}");
    // No answer chosen: asked at the field.
    let mut fields = who("14");
    fields.push(("version", sha));
    let (status, unanswered) = post_form(&url, &fields).await;
    assert_eq!(status, 422);
    assert!(unanswered.contains("href=\"#answer-yes\""), "{unanswered}");
    // Yes: recorded, and the link is spent.
    fields.push(("answer", "yes"));
    let (status, done) = post_form(&url, &fields).await;
    assert_eq!(status, 200, "{done}");
    assert!(
        done.contains("You agreed to the letter being sent"),
        "{done}"
    );
    // A one-time link: spent, as the person (and only the person) is told.
    let (status, again) = get_page(&url).await;
    assert_eq!(
        status, 200,
        "the link says nothing of the letter's state before the details"
    );
    assert!(!again.contains("already answered"), "{again}");
    let (status, again) = post_form(&url, &who("14")).await;
    assert_eq!(status, 409);
    assert!(again.contains("You have already answered"), "{again}");
    let (_, state) = whs(&server)
        .get(&format!("/api/v1/employer-letters/{id}"))
        .await;
    assert_eq!(state["state"], "approved", "{state}");
    let (status, sent) = act(&server, &id, "send", &json!({})).await;
    assert_eq!(status, 200, "{sent}");
    wait_one(&server, sent["letter"].as_str().unwrap(), "accepted", 15).await;
    assert_eq!(smtp.mails_to(EMPLOYER, 1, 10).await.len(), 1);

    // A link to version 1 of a letter changed since answers nothing: the person is told.
    let other = draft(&server, &sr, &body(EMPLOYER, "First draft.", false)).await;
    let other_id = other["id"].as_str().unwrap().to_string();
    let (stale, stale_code) = link_for(&server, &other_id).await;
    let (status, _, _) = whs(&server)
        .put(
            &format!("/api/v1/employer-letters/{other_id}"),
            &body(EMPLOYER, "Second draft.", false),
        )
        .await;
    assert_eq!(status, 200);
    let (status, changed) = post_form(
        &stale,
        &[
            ("birth-day", "14"),
            ("birth-month", "6"),
            ("birth-year", "1979"),
            ("code", stale_code.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert!(changed.contains("The letter has changed"), "{changed}");

    // Whoever holds a link can try only a few dates of birth a day.
    let guessed = draft(&server, &sr, &body(EMPLOYER, "Guess me.", false)).await;
    let (guessed_link, guessed_code) = link_for(&server, guessed["id"].as_str().unwrap()).await;
    let mut statuses = Vec::new();
    for day in 1..=8 {
        let day = day.to_string();
        let (status, _) = post_form(
            &guessed_link,
            &[
                ("birth-day", day.as_str()),
                ("birth-month", "1"),
                ("birth-year", "1980"),
            ],
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [422, 422, 422, 422, 422, 422, 422, 429],
        "{statuses:?}"
    );
    let mut right = BIRTH.to_vec();
    right.push(("code", guessed_code.as_str()));
    let (status, _) = post_form(&guessed_link, &right).await;
    assert_eq!(status, 429, "not even the right one, until tomorrow");

    // The link's token never reaches a log line.
    assert!(
        !server.logs().contains(&token),
        "the link's token was logged"
    );
}

/// Every fixture in fixtures/employer-letters: the valid ones drafted, approved, sent and
/// received saying what they should (and never what they must not), their approval Consent and
/// e-mail as the golden files in fixtures/outbound hold them; the invalid ones refused with
/// exactly their issues.
#[tokio::test(flavor = "multi_thread")]
async fn every_employer_letter_fixture_gives_its_expected_result() {
    let smtp = RecordingServer::start("tools/smtp_receiver.py");
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(&smtp, dir.path());
    let mut sent = 0;
    for (n, path) in fixtures("employer-letters").into_iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let stem = name.trim_end_matches(".json");
        let expected = read_json(&expected_path(&path));
        let (sr, _) = accepted(&server, 20 + n).await;
        let (status, _, answer) = whs(&server)
            .post(
                &format!("/api/v1/referrals/{sr}/employer-letters"),
                &read_json(&path),
            )
            .await;
        assert_eq!(status, expected["status"], "{name}: {answer}");
        if let Some(expressions) = expected["expressions"].as_array() {
            let got: Vec<&str> = common::expressions(&answer);
            let want: Vec<&str> = expressions.iter().map(|e| e.as_str().unwrap()).collect();
            assert_eq!(got, want, "{name}: {answer}");
            continue;
        }
        assert_eq!(
            answer["healthConditions"], expected["healthConditions"],
            "{name}"
        );
        let id = answer["id"].as_str().unwrap();
        let (status, answered) = act(
            &server,
            id,
            "answer",
            &json!({ "sha256": answer["sha256"], "approved": true }),
        )
        .await;
        assert_eq!(status, 200, "{name}: {answered}");
        let (status, queued) = act(&server, id, "send", &json!({})).await;
        assert_eq!(status, 200, "{name}: {queued}");
        wait_one(&server, queued["letter"].as_str().unwrap(), "accepted", 15).await;
        sent += 1;
        let mails = smtp.mails_to(EMPLOYER, sent, 10).await;
        let mail = mails.last().unwrap();
        let pdf = base64::engine::general_purpose::STANDARD
            .decode(mail["attachments"][0]["base64"].as_str().unwrap())
            .unwrap();
        let text = flat(&pdf_text(&pdf));
        for needed in expected["pdfContains"].as_array().unwrap() {
            let needed = flat(needed.as_str().unwrap());
            assert!(text.contains(&needed), "{name}: '{needed}' not in:\n{text}");
        }
        for never in expected["pdfLacks"].as_array().unwrap() {
            let never = never.as_str().unwrap();
            assert!(
                !text.contains(never),
                "{name}: '{never}' told to the employer:\n{text}"
            );
        }
        // What an integrator's mail system and an IG reviewer see, ids and times aside.
        let (_, consent) = whs(&server)
            .get(&format!("/fhir/{}", answered["answer"].as_str().unwrap()))
            .await;
        // Everything stored for it is FHIR R4 in its profiles, by independent implementations.
        let mut stored = vec![consent.clone()];
        for (kind, rid) in [
            ("Composition", id),
            ("DocumentReference", id),
            ("Communication", queued["letter"].as_str().unwrap()),
        ] {
            let (status, resource) = whs(&server).get(&format!("/fhir/{kind}/{rid}")).await;
            assert_eq!(status, 200, "{name}: {resource}");
            stored.push(resource);
        }
        check_with_independent_fhir(&stored);
        let base = server.url("");
        let base = base.trim_end_matches('/');
        check_golden(
            &root().join(format!("fixtures/outbound/employer-{stem}.approval.json")),
            &golden_form(&consent, base),
        );
        let email = json!({
            "from": mail["from"],
            "to": mail["to"],
            "subject": mail["headers"]["subject"],
            "body": mail["body"],
            "attachments": mail["attachments"].as_array().unwrap().iter().map(|a| json!({
                "filename": a["filename"],
                "contentType": a["contentType"],
            })).collect::<Vec<_>>(),
        });
        check_golden(
            &root().join(format!("fixtures/outbound/employer-{stem}.email.json")),
            &golden_form(&email, base),
        );
    }
    assert_eq!(sent, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_person_is_asked_stays_between_them_and_the_service() {
    let smtp = RecordingServer::start("tools/smtp_receiver.py");
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(&smtp, dir.path());
    // The employer referred the person (with their agreement): it is a party to the referral.
    let body =
        read_json(&root().join("fixtures/referrals/valid/33-employer-hr-driver-stay-in-work.json"));
    let employer = server.token(&sender_of(&body).unwrap());
    let r = http()
        .post(server.url("/api/v1/referrals"))
        .bearer_auth(&employer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, headers, outcome) = read_response(r).await;
    assert_eq!(status, 201, "{outcome}");
    let sr = location_id(&headers);
    let service = server.as_(Principal::service(body["targetService"].as_str().unwrap()));
    let (status, _, _) = service
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, letter) = service
        .post(
            &format!("/api/v1/referrals/{sr}/employer-letters"),
            &body_for_employer(),
        )
        .await;
    assert_eq!(status, 201, "{letter}");
    let id = letter["id"].as_str().unwrap().to_string();
    let (status, _, answered) = service
        .post(
            &format!("/api/v1/employer-letters/{id}/answer"),
            &json!({ "sha256": letter["sha256"], "approved": false }),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    let no = answered["answer"].as_str().unwrap().to_string();
    let patient = letter["document"]["subject"]["reference"]
        .as_str()
        .unwrap()
        .to_string();

    // The employer's own system reads its referral, but nothing of the letter or of the
    // person's "no" to it: not by id, not by search.
    let get = |path: String| {
        let (server, employer) = (&server, employer.clone());
        async move {
            let r = http()
                .get(server.url(&path))
                .bearer_auth(&employer)
                .send()
                .await
                .unwrap();
            let (status, _, body) = read_response(r).await;
            (status, body)
        }
    };
    assert_eq!(get(format!("/fhir/ServiceRequest/{sr}")).await.0, 200);
    for path in [
        format!("/fhir/DocumentReference/{id}"),
        format!("/fhir/Composition/{id}"),
        format!("/fhir/{no}"),
        format!("/fhir/{no}/_history/1"),
    ] {
        let (status, body) = get(path.clone()).await;
        assert!(matches!(status, 403 | 404), "{path}: {status} {body}");
    }
    for path in [
        format!("/fhir/Consent?patient={patient}"),
        format!("/fhir/DocumentReference?patient={patient}"),
        format!("/fhir/Communication?patient={patient}"),
    ] {
        let (_, found) = get(path.clone()).await;
        let text = found.to_string();
        assert!(
            !text.contains(&id) && !text.contains(no.trim_start_matches("Consent/")),
            "{path}: {found}"
        );
    }

    // Nobody else can answer for the person: a Consent another party records that names the
    // letter's version (as its id shows in the link) is not an answer.
    let forged = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": patient },
        "dateTime": chrono::Utc::now().to_rfc3339(),
        "performer": [{ "reference": patient }],
        "meta": { "tag": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/record-origin", "code": "work-health-service" }] },
        "sourceAttachment": { "contentType": "application/pdf", "url": format!("DocumentReference/{id}/_history/2") },
        "provision": {
            "type": "permit",
            "actor": [{ "role": { "coding": [{ "system": "https://fhir.work-health-gateway.org/CodeSystem/consent-recipient", "code": "work-health-service" }] },
                        "reference": { "identifier": { "system": "https://fhir.work-health-gateway.org/Id/service", "value": body["targetService"] } } }],
            "action": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access" }] }]
        }
    });
    // Even with the scope to record Consents (which an operator may grant it).
    let mut recorder = sender_of(&body).unwrap();
    recorder.scopes.push("system/Consent.c".into());
    let r = http()
        .post(server.url("/fhir/Consent"))
        .bearer_auth(server.token(&recorder))
        .json(&forged)
        .send()
        .await
        .unwrap();
    let (status, _, recorded) = read_response(r).await;
    assert_eq!(
        status, 201,
        "the employer may record the person's agreement to the service: {recorded}"
    );
    let (_, revised) = {
        let (status, _, v2) = service
            .put(
                &format!("/api/v1/employer-letters/{id}"),
                &body_for_employer(),
            )
            .await;
        (status, v2)
    };
    assert_eq!(revised["version"], 2, "{revised}");
    assert_eq!(
        revised["state"], "draft",
        "a Consent the employer recorded ({status}: {recorded}) answers nothing for the person"
    );
}

fn body_for_employer() -> Value {
    json!({
        "kind": "workplace-adjustments",
        "employer": { "name": "Northern Freight Ltd (synthetic), HR", "email": "hr@northern-freight.example" },
        "summary": "Mark is at work and managing; these changes would help him stay.",
        "adjustments": ["No driving shifts longer than four hours for the next month"],
        "author": { "name": "Sam Patel", "role": "Work and health adviser" }
    })
}

/// The link's pages as a person meets them, in headless Chromium with and without JavaScript:
/// every page passes axe-core (WCAG 2.2 A/AA), every problem is shown at its field and in the
/// summary, and the answer is recorded. Screenshots are kept in target/artefacts/approve.
#[tokio::test(flavor = "multi_thread")]
async fn a_person_approves_on_the_link_in_chromium_with_and_without_javascript() {
    let Some(chromium) = chromium() else { return };
    let smtp = RecordingServer::start("tools/smtp_receiver.py");
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(&smtp, dir.path());
    install_browser_tools();
    let (sr, _) = accepted(&server, 40).await;
    let mut links = Vec::new();
    let mut ids = Vec::new();
    for summary in ["Back in January.", "Back in February."] {
        let letter = draft(&server, &sr, &body(EMPLOYER, summary, false)).await;
        let id = letter["id"].as_str().unwrap().to_string();
        let (url, code) = link_for(&server, &id).await;
        links.push(json!({ "url": url, "code": code }));
        ids.push(id);
    }
    let shots = root().join("target/artefacts/approve");
    let (ok, out) = run(std::process::Command::new("node")
        .arg(root().join("tools/browser/approve.mjs"))
        .arg("--links")
        .arg(Value::Array(links).to_string())
        .args([
            "--birth",
            "14-6-1979",
            "--chromium",
            &chromium,
            "--screenshots",
        ])
        .arg(&shots));
    assert!(ok, "{out}");
    let seen: Value =
        serde_json::from_str(out.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["answered"], 2, "{seen}");
    assert!(seen["axeRulesChecked"].as_u64().unwrap() > 100, "{seen}");
    for id in ids {
        let (_, state) = whs(&server)
            .get(&format!("/api/v1/employer-letters/{id}"))
            .await;
        assert_eq!(state["state"], "approved", "{state}");
    }
}
