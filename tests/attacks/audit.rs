//! Attack 13, audit that is not atomic: a state change stored without its AuditEvent, or an
//! AuditEvent of a change that never happened. Overrides (request, grant, review), referral
//! prompt answers, `$resend` and the outbox's disclosure decisions each write the change and its
//! audit in one transaction. Each test does the operation over HTTP and finds exactly one
//! matching AuditEvent as information governance; a refused operation leaves neither the change
//! nor an audit of it; and with the audit made to fail on disk (a trigger in the real database,
//! standing in for a crash or a full disk between the two writes) the change is not stored
//! either.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use whg::auth::{Principal, Role, scope};

use crate::common::*;

const WHS: &str = "sheffield-whs";

fn ig() -> Principal {
    Principal::new(Role::InformationGovernance, "ig-team")
}

/// Every AuditEvent matching `query`, read page by page as information governance.
pub(crate) async fn audit_events(server: &Server, query: &str) -> Vec<Value> {
    let reader = server.as_(ig());
    let mut events = Vec::new();
    loop {
        let (status, page) = reader
            .get(&format!(
                "/fhir/AuditEvent?{query}&_count=100&_offset={}",
                events.len()
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entry"].as_array().cloned().unwrap_or_default();
        let done = entries.len() < 100;
        events.extend(entries.into_iter().map(|e| e["resource"].clone()));
        if done {
            return events;
        }
    }
}

/// The override AuditEvents that name override `id`.
pub(crate) fn override_events<'a>(events: &'a [Value], id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["subtype"][0]["code"] == "consent-override")
        .filter(|e| {
            e["entity"].as_array().into_iter().flatten().any(|x| {
                x["what"]["identifier"]["value"] == id
                    && x["what"]["identifier"]["system"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("/Id/consent-override"))
            })
        })
        .collect()
}

/// The events of `events` naming `reference` among their entities.
fn naming<'a>(events: &'a [Value], reference: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["entity"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["what"]["reference"] == reference)
        })
        .collect()
}

/// Runs each statement on the server's database, in order.
async fn execute_all(server: &Server, statements: &[String]) {
    let mut db = server.db().await;
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A trigger named `name` that fails a statement `timing` (e.g. `BEFORE INSERT ON resources`)
/// with `message` when `condition` holds of the row (`NEW`), in the server's backend's dialect.
fn refusing_trigger(
    server: &Server,
    name: &str,
    timing: &str,
    condition: &str,
    message: &str,
) -> Vec<String> {
    if server.on_postgres() {
        vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$
                 BEGIN
                     IF {condition} THEN RAISE EXCEPTION '{message}'; END IF;
                     RETURN NEW;
                 END $body$"
            ),
            format!("CREATE TRIGGER {name} {timing} FOR EACH ROW EXECUTE FUNCTION {name}()"),
        ]
    } else {
        vec![format!(
            "CREATE TRIGGER {name} {timing} WHEN {condition}
             BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )]
    }
}

/// Removes a trigger [`refusing_trigger`] made on `table`.
fn dropping_trigger(server: &Server, name: &str, table: &str) -> Vec<String> {
    if server.on_postgres() {
        vec![
            format!("DROP TRIGGER {name} ON {table}"),
            format!("DROP FUNCTION {name}()"),
        ]
    } else {
        vec![format!("DROP TRIGGER {name}")]
    }
}

/// From now on the database refuses to store an AuditEvent whose text contains `marker`: the
/// audit of one operation fails after its change was written, as a crash between the two would.
async fn refuse_audit_containing(server: &Server, marker: &str) {
    // The position of a substring: strpos in PostgreSQL, instr in SQLite.
    let position = if server.on_postgres() {
        "strpos"
    } else {
        "instr"
    };
    let condition = format!(
        "NEW.resource_type = 'AuditEvent' AND {position}(CAST(NEW.content AS TEXT), '{}') > 0",
        marker.replace('\'', "''")
    );
    let statements = refusing_trigger(
        server,
        "refuse_audit",
        "BEFORE INSERT ON resources",
        &condition,
        "the audit trail refused this event",
    );
    execute_all(server, &statements).await;
}

async fn allow_audit(server: &Server) {
    execute_all(
        server,
        &dropping_trigger(server, "refuse_audit", "resources"),
    )
    .await;
}

/// From now on the database refuses to change any letter's delivery state: the change an
/// operation audits fails, as a crash before it would.
async fn refuse_delivery_changes(server: &Server) {
    let statements = refusing_trigger(
        server,
        "refuse_delivery_change",
        "BEFORE UPDATE ON deliveries",
        "true",
        "the outbox refused this change",
    );
    execute_all(server, &statements).await;
}

async fn allow_delivery_changes(server: &Server) {
    execute_all(
        server,
        &dropping_trigger(server, "refuse_delivery_change", "deliveries"),
    )
    .await;
}

// ---- overrides ------------------------------------------------------------------------------

fn clinician() -> Principal {
    let mut p = Principal::service(WHS);
    p.scopes.push(scope::CONSENT_OVERRIDE.into());
    p
}

/// A person referred to the service who then refused it: (ServiceRequest id, Patient id).
async fn refused_referral(server: &Server, n: usize) -> (String, String) {
    let (sr, patient) = refer(server, &referral_for(n, WHS)).await;
    let mut refusal = read_json(&root().join("fixtures/consent/valid/05-nothing-to-dwp.json"));
    refusal["patient"]["reference"] = json!(format!("Patient/{patient}"));
    refusal["provision"]["actor"][0]["role"]["coding"][1]["code"] = json!("work-health-service");
    let (status, _, body) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .post("/fhir/Consent", &refusal)
        .await;
    assert_eq!(status, 201, "{body}");
    (sr, patient)
}

#[tokio::test]
async fn an_override_step_and_its_audit_are_one_write() {
    let server = Server::start();
    let (sr, patient) = refused_referral(&server, 1301).await;
    let referral = format!("/fhir/ServiceRequest/{sr}");
    let whs = server.as_(clinician());
    let request = json!({
        "patient": format!("Patient/{patient}"),
        "recipient": "work-health-service",
        "recipientOrganisation": Principal::service(WHS).organisation,
        "dataClasses": ["referral"],
        "reason": "risk-to-person",
        "justification": "The practice reports disclosed suicidal intent; assess today.",
        "hours": 2,
    });
    let overrides = || async {
        let (status, list) = server.as_(ig()).get("/api/v1/consent-overrides").await;
        assert_eq!(status, 200, "{list}");
        list["overrides"].as_array().cloned().unwrap_or_default()
    };
    let override_audit = || async {
        audit_events(&server, &format!("patient=Patient/{patient}"))
            .await
            .into_iter()
            .filter(|e| e["subtype"][0]["code"] == "consent-override")
            .collect::<Vec<_>>()
    };

    // The request: its audit fails, so it is not stored.
    refuse_audit_containing(&server, "requested (risk-to-person)").await;
    let (status, _, body) = whs.post("/api/v1/consent-overrides", &request).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(overrides().await.len(), 0, "no request without its audit");
    allow_audit(&server).await;
    let (status, _, requested) = whs.post("/api/v1/consent-overrides", &request).await;
    assert_eq!(status, 201, "{requested}");
    let id = requested["id"].as_str().unwrap().to_string();
    let events = override_audit().await;
    assert_eq!(override_events(&events, &id).len(), 1, "{events:#?}");
    assert_eq!(events.len(), 1, "and none of the failed attempt");

    // The grant: its audit fails, so the override stays requested and permits nothing.
    let grant = json!({ "note": "Proportionate for a same-day assessment." });
    refuse_audit_containing(&server, "granted by information governance").await;
    let (status, _, body) = server
        .as_(ig())
        .post(&format!("/api/v1/consent-overrides/{id}/grant"), &grant)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(overrides().await[0]["state"], "requested");
    assert_eq!(
        whs.get(&referral).await.0,
        403,
        "not granted without its audit"
    );
    allow_audit(&server).await;
    // A refused grant (by the requester) changes nothing and audits nothing.
    let mut both = clinician();
    both.scopes.push(scope::OVERRIDE_REVIEW.into());
    let (status, _, _) = server
        .as_(both)
        .post(&format!("/api/v1/consent-overrides/{id}/grant"), &grant)
        .await;
    assert_eq!(status, 403);
    assert_eq!(override_audit().await.len(), 1);
    let (status, _, body) = server
        .as_(ig())
        .post(&format!("/api/v1/consent-overrides/{id}/grant"), &grant)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(whs.get(&referral).await.0, 200);
    let events = override_audit().await;
    let grants: Vec<_> = events
        .iter()
        .filter(|e| e["outcomeDesc"].as_str().unwrap().contains("granted"))
        .collect();
    assert_eq!(grants.len(), 1, "{events:#?}");

    // The review: its audit fails, so the override stays in force and unreviewed.
    let review =
        json!({ "outcome": "inappropriate", "note": "No risk was recorded; the refusal stands." });
    refuse_audit_containing(&server, "reviewed by information governance").await;
    let (status, _, _) = server
        .as_(ig())
        .post(&format!("/api/v1/consent-overrides/{id}/review"), &review)
        .await;
    assert_eq!(status, 503);
    let stored = overrides().await.remove(0);
    assert_eq!(stored["state"], "granted");
    assert!(stored.get("review").is_none(), "{stored}");
    assert_eq!(whs.get(&referral).await.0, 200);
    allow_audit(&server).await;
    let (status, _, body) = server
        .as_(ig())
        .post(&format!("/api/v1/consent-overrides/{id}/review"), &review)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(whs.get(&referral).await.0, 403);
    let events = override_audit().await;
    assert_eq!(events.len(), 3, "request, grant, review: {events:#?}");
}

// ---- referral prompt answers ----------------------------------------------------------------

/// A practice fit note that fires a referral prompt: the prompt Task, as the practice reads it.
async fn prompt(server: &Server, n: usize) -> Value {
    let mut note =
        read_json(&root().join("fixtures/fit-notes/valid/01-doctor-not-fit-back-pain.json"));
    note["fitNoteId"] = json!(format!("AUDIT-{n}"));
    note["patient"]["nhsNumber"] = json!(nhs_number(n));
    // In County Durham, where the Patient Advisory Service suggests a referral from the first
    // fit note of a run.
    note["patient"]["postcode"] = json!("DH1 3HP");
    let practice = server.as_(Principal::practice(DEFAULT_PRACTICE));
    let (status, _, outcome) = practice.post("/api/v1/fit-notes", &note).await;
    assert_eq!(status, 201, "{outcome}");
    let task = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| {
            i["expression"][0]
                .as_str()
                .filter(|e| e.starts_with("Task/"))
        })
        .unwrap_or_else(|| panic!("the fit note fired no prompt: {outcome}"))
        .to_string();
    let (status, task) = practice.get(&format!("/fhir/{task}")).await;
    assert_eq!(status, 200, "{task}");
    task
}

#[tokio::test]
async fn a_prompt_answer_and_its_audit_are_one_write() {
    let server = Server::start();
    let task = prompt(&server, 1302).await;
    let id = task["id"].as_str().unwrap().to_string();
    let patient = task["for"]["reference"].as_str().unwrap().to_string();
    let practice = server.as_(Principal::practice(DEFAULT_PRACTICE));
    let mut answer = task.clone();
    answer["status"] = json!("accepted");
    let answers = || async {
        let events = audit_events(&server, &format!("patient={patient}")).await;
        naming(&events, &format!("Task/{id}"))
            .into_iter()
            .filter(|e| e["subtype"][0]["code"] == "update")
            .cloned()
            .collect::<Vec<_>>()
    };

    refuse_audit_containing(&server, "referral prompt accepted").await;
    let (status, _, body) = practice.put(&format!("/fhir/Task/{id}"), &answer).await;
    assert_eq!(status, 503, "{body}");
    let (_, stored) = practice.get(&format!("/fhir/Task/{id}")).await;
    assert_eq!(
        (
            stored["status"].as_str(),
            stored["meta"]["versionId"].as_str()
        ),
        (Some("requested"), Some("1")),
        "not answered without its audit"
    );
    allow_audit(&server).await;
    assert_eq!(answers().await.len(), 0);

    let (status, _, body) = practice.put(&format!("/fhir/Task/{id}"), &answer).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    let audited = answers().await;
    assert_eq!(audited.len(), 1, "{audited:#?}");
    assert!(
        audited[0]["outcomeDesc"]
            .as_str()
            .unwrap()
            .contains("referral prompt accepted by the practice")
    );
    // Answering again is refused, and leaves no audit of a change.
    let mut again = answer.clone();
    again["status"] = json!("rejected");
    assert_eq!(
        practice.put(&format!("/fhir/Task/{id}"), &again).await.0,
        422
    );
    let (_, stored) = practice.get(&format!("/fhir/Task/{id}")).await;
    assert_eq!(stored["status"], "accepted");
    assert_eq!(answers().await.len(), 1);
}

// ---- the outbox: resend and disclosure decisions --------------------------------------------

/// A gateway whose practices have no delivery route: letters are retried briefly, each attempt
/// deciding consent, and die at the end of a two-second window.
fn outbox_server() -> Server {
    Server::start_with(
        "[delivery]\ninitial_backoff_ms = 50\nmax_backoff_ms = 100\npoll_interval_ms = 50\nretry_window_secs = 2\n",
    )
}

/// A referral to WHS accepted at triage: (ServiceRequest id, Patient reference, the practice's
/// feedback Consent).
async fn accepted_referral(server: &Server, n: usize) -> (String, String, Value) {
    let (sr, patient) = refer(server, &referral_for(n, WHS)).await;
    let (status, _, body) = server
        .as_(Principal::service(WHS))
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let feedback = consent_for(server, &patient, "referring-practice").await;
    (sr, format!("Patient/{patient}"), feedback)
}

/// A letter to the practice on referral `sr`: (letter id, its DocumentReference).
async fn write_letter(server: &Server, sr: &str, summary: &str) -> (String, String) {
    let (status, headers, body) = server
        .as_(Principal::service(WHS))
        .post(
            &format!("/api/v1/referrals/{sr}/letters"),
            &json!({
                "priority": "routine",
                "summary": summary,
                "supportGiven": ["advice-session"],
                "plan": { "type": "return-to-work-plan", "text": "Phased return over four weeks." },
                "recommendations": "Consider amended duties on the next fit note.",
                "outcomes": { "employment": "returned-to-work", "health": ["managing-health-better"] },
                "author": { "name": "Sam Patel", "role": "Work and health adviser" }
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = location_id(&headers);
    let document = format!(
        "DocumentReference/{}",
        letter_state(server, &id).await["delivery"]["documentId"]
            .as_str()
            .unwrap()
    );
    (id, document)
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
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let letter = letter_state(server, id).await;
        if letter["delivery"]["state"] == state {
            return letter;
        }
        assert!(Instant::now() < until, "not {state} in time: {letter:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outcomes(letter: &Value) -> Vec<String> {
    letter["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_disclosure_decision_is_audited_with_the_attempt_it_led_to() {
    let server = outbox_server();
    let (sr, patient, feedback) = accepted_referral(&server, 1303).await;
    let decisions_of = |document: String| {
        let server = &server;
        let patient = patient.clone();
        async move {
            let events = audit_events(server, &format!("patient={patient}")).await;
            naming(&events, &document)
                .into_iter()
                .filter(|e| e["subtype"][0]["code"] == "disclosure")
                .cloned()
                .collect::<Vec<_>>()
        }
    };
    // While the outbox cannot record what a decision led to, the decision is not audited.
    refuse_delivery_changes(&server).await;
    let (id, document) = write_letter(&server, &sr, "Seen twice; phased return agreed.").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outcomes(&letter_state(&server, &id).await),
        Vec::<String>::new()
    );
    assert_eq!(
        decisions_of(document.clone()).await.len(),
        0,
        "no audit of an attempt that was never recorded"
    );
    // While the audit trail refuses disclosure decisions, the outbox records no attempt either.
    refuse_audit_containing(&server, "\"code\":\"disclosure\"").await;
    allow_delivery_changes(&server).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = letter_state(&server, &id).await;
    assert_eq!(outcomes(&waiting), Vec::<String>::new(), "{waiting:#}");
    assert_eq!(waiting["delivery"]["state"], "queued");
    allow_audit(&server).await;

    // Each attempt decided consent (no route, so each is a retry) and each decision is audited
    // once, with the attempt.
    let dead = wait_for_state(&server, &id, "dead").await;
    let decisions = decisions_of(document.clone()).await;
    let decided = outcomes(&dead).iter().filter(|o| *o == "retry").count();
    assert!(decided >= 1, "{dead:#}");
    assert_eq!(decisions.len(), decided, "one audit per decided attempt");
    assert!(decisions.iter().all(|e| e["outcome"] == "0"));

    // The person withdraws consent to feedback: the next letter is cancelled at its first
    // attempt, and the refusal is audited once, with the cancellation.
    let mut withdrawn = feedback.clone();
    withdrawn["status"] = json!("inactive");
    let (status, _, body) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .put(
            &format!("/fhir/Consent/{}", feedback["id"].as_str().unwrap()),
            &withdrawn,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (second, second_document) =
        write_letter(&server, &sr, "A second letter after the withdrawal.").await;
    let cancelled = wait_for_state(&server, &second, "cancelled").await;
    assert_eq!(outcomes(&cancelled), ["cancelled"]);
    let refusals = decisions_of(second_document).await;
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert_eq!(refusals[0]["outcome"], "4");
}

#[tokio::test]
async fn a_resend_and_its_audit_are_one_write() {
    let server = outbox_server();
    let (sr, patient, _) = accepted_referral(&server, 1304).await;
    let (id, _) = write_letter(&server, &sr, "Seen once; to be sent again.").await;
    let resend = format!("/api/v1/letters/{id}/$resend");
    let whs = server.as_(Principal::service(WHS));
    let resends = || async {
        let events = audit_events(&server, &format!("patient={patient}")).await;
        naming(&events, &format!("Communication/{id}"))
            .into_iter()
            .filter(|e| {
                e["outcomeDesc"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("sent again")
            })
            .count()
    };
    // A letter still being tried is not sent again by hand: refused, nothing changed or audited.
    let (status, _, body) = whs.post(&resend, &json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("this one is queued")
    );
    assert_eq!(resends().await, 0);
    wait_for_state(&server, &id, "dead").await;
    // Read again once dead: the letter view reads the Communication and the delivery one after
    // the other, so the read that first saw "dead" may hold the Communication from just before.
    let dead = letter_state(&server, &id).await;
    let attempts = outcomes(&dead).len();

    // The requeue fails: no audit of a resend that never happened.
    refuse_delivery_changes(&server).await;
    let (status, _, body) = whs.post(&resend, &json!({})).await;
    assert_eq!(status, 503, "{body}");
    allow_delivery_changes(&server).await;
    assert_eq!(resends().await, 0, "no audit without the change");
    assert_eq!(
        letter_state(&server, &id).await["delivery"]["state"],
        "dead"
    );

    // The audit fails: no resend without its audit.
    refuse_audit_containing(&server, "sent again by").await;
    let (status, _, body) = whs.post(&resend, &json!({})).await;
    assert_eq!(status, 503, "{body}");
    let still = letter_state(&server, &id).await;
    assert_eq!(
        still["delivery"]["state"], "dead",
        "not requeued without its audit"
    );
    assert_eq!(outcomes(&still).len(), attempts);
    assert_eq!(
        still["communication"]["meta"]["versionId"],
        dead["communication"]["meta"]["versionId"]
    );
    allow_audit(&server).await;
    assert_eq!(resends().await, 0);

    // The practice cannot resend the service's letter.
    let (status, _, _) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .post(&resend, &json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, _, body) = whs.post(&resend, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(resends().await, 1);
    assert!(outcomes(&letter_state(&server, &id).await).contains(&"requeued".to_string()));
}
