//! The SQLite backend's own tests: what only SQLite shows (its triggers, its upgrade path), and
//! the outbox's leases between two stores on one file.

use super::*;
use crate::caller::Principal;
use crate::config::Config;
use crate::intake::practice_referral;

const REFERRAL: &str =
    include_str!("../../../fixtures/referrals/valid/01-gp-work-stress-off-sick.json");
const REFUSAL: &str = include_str!("../../../fixtures/consent/valid/05-nothing-to-dwp.json");

fn submission(config: &Config, id: &str) -> Submission {
    let mut r: Value = serde_json::from_str(REFERRAL).unwrap();
    r["referralId"] = json!(id);
    practice_referral(&r, &config.intake_now()).unwrap()
}

/// Runs one referral job the way `commit_batch` does, keeping what it leaves pending.
async fn refer(
    conn: &mut Conn,
    batch: &mut Pending,
    config: &Config,
    id: &str,
) -> Result<Stored, StoreError> {
    let s = submission(config, id);
    let admission = crate::intake::admission::referral(
        &s,
        None,
        Some(&Principal::practice("C88901")),
        None,
        Utc::now(),
        crate::intake::admission::practice_criterion_expression,
        crate::intake::admission::PRACTICE_CONSENT_EXPRESSION,
    );
    let mut own = Pending::default();
    let result = in_savepoint!(
        conn,
        apply(conn, s, Some(admission), &batch.tokens, &mut own)
    );
    if matches!(result, Ok(Stored { created: true, .. })) {
        batch.absorb(own);
    }
    result
}

/// Index entries wait for the end of the batch; a refusal recorded earlier in the same batch
/// must still refuse a later referral for that person.
#[tokio::test]
async fn later_jobs_in_a_batch_see_consents_recorded_earlier_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let mut conn = Conn::connect(&url).await.unwrap();
    MIGRATOR.run(&mut conn).await.unwrap();
    let config = Config::defaults();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    let mut batch = Pending::default();

    let first = refer(&mut conn, &mut batch, &config, "B-1").await.unwrap();
    let patient: String = sqlx::query_scalar(
        "SELECT content ->> '$.subject.reference' FROM resources WHERE resource_type = 'ServiceRequest' AND id = ?",
    )
    .bind(&first.focus_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        batch.tokens.keys().filter(|(t, _)| t == "Consent").count(),
        3,
        "the referral's Consents are indexed only at the end of the batch"
    );
    // A second referral in the same batch is let in by the first one's Consents.
    refer(&mut conn, &mut batch, &config, "B-2").await.unwrap();

    let mut refusal: Value =
        serde_json::from_str(&REFUSAL.replace("Patient/example", &patient)).unwrap();
    refusal["provision"]["actor"][0]["role"]["coding"][1]["code"] = json!("work-health-service");
    let mut own = Pending::default();
    create_all(&mut conn, vec![refusal], &mut own)
        .await
        .unwrap();
    batch.absorb(own);

    let third = refer(&mut conn, &mut batch, &config, "B-3").await;
    assert!(matches!(third, Err(StoreError::Refused(_))), "{third:?}");

    // At the end of the batch every index entry is written once.
    batch.write(&mut conn).await.unwrap();
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    let consents: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT resource_id) FROM search_tokens WHERE resource_type = 'Consent' AND param = 'patient' AND value = ?",
    )
    .bind(&patient)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(consents, 3 + 3 + 1);
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM search_tokens GROUP BY resource_type, resource_id, param, system, value HAVING COUNT(*) > 1)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        duplicates, 0,
        "a re-versioned Patient keeps one set of entries"
    );
}

// ---- a state change and its audit are one write -----------------------------------------

/// A store on a fresh database, and the database's URL for a second connection.
async fn fresh_store(dir: &std::path::Path) -> (SqliteStore, String) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
    let store = SqliteStore::open(&url, &Config::defaults().store)
        .await
        .unwrap();
    (store, url)
}

/// Makes every AuditEvent insert fail from now on, as a crash or a full disk between the
/// change and its audit would.
async fn refuse_audit_inserts(url: &str) {
    let mut conn = Conn::connect(url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON resources
         WHEN NEW.resource_type = 'AuditEvent'
         BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn allow_audit_inserts(url: &str) {
    let mut conn = Conn::connect(url).await.unwrap();
    sqlx::query("DROP TRIGGER refuse_audit")
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn audit_count(store: &SqliteStore) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE resource_type = 'AuditEvent'")
        .fetch_one(&store.readers)
        .await
        .unwrap()
}

fn audit_of(what: &str) -> Value {
    crate::audit::audit_event(&crate::audit::Event {
        kind: crate::audit::Kind::Updated,
        principal: None,
        patient: Some("Patient/p1".into()),
        entities: vec![what.to_string()],
        decision: None,
        permitted: true,
        description: format!("{what} changed"),
        at: Utc::now(),
        request_id: None,
    })
}

fn delivery(id: &str) -> Delivery {
    let now = Utc::now();
    Delivery {
        id: id.into(),
        document_id: "d1".into(),
        referral_id: "sr1".into(),
        patient_id: "p1".into(),
        service: "s|whs".into(),
        practice: "o|C88901".into(),
        urgent: false,
        state: DeliveryState::Dead,
        attempts: 3,
        message_id: "m1".into(),
        correlation_id: "c1".into(),
        created_at: now,
        next_attempt_at: now,
        deadline_at: now,
        escalate_at: None,
        escalated_at: None,
        channel: None,
        last_error: None,
        updated_at: now,
        transport_id: None,
    }
}

fn requeue(id: &str, communication: Value, audit: Vec<Value>) -> DeliveryUpdate {
    DeliveryUpdate {
        id: id.into(),
        lease: lease_of("test"),
        state: DeliveryState::Queued,
        attempt: Some(DeliveryAttempt {
            attempt: 3,
            at: Utc::now(),
            outcome: AttemptOutcome::Requeued,
            detail: None,
        }),
        next_attempt_at: Utc::now(),
        last_error: None,
        channel: None,
        escalated_at: None,
        transport_id: None,
        deadline_at: None,
        communication,
        audit,
        alert: None,
    }
}

#[tokio::test]
async fn a_workflow_change_whose_audit_cannot_be_written_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = fresh_store(dir.path()).await;
    let task = store
        .create(vec![
            json!({ "resourceType": "Task", "status": "requested", "intent": "proposal" }),
        ])
        .await
        .unwrap()
        .remove(0);
    let id = task["id"].as_str().unwrap().to_string();
    let mut answered = task.clone();
    answered["status"] = json!("accepted");
    let change = |audit| Transaction {
        updates: vec![(answered.clone(), 1)],
        audit,
        ..Default::default()
    };
    refuse_audit_inserts(&url).await;
    let before = audit_count(&store).await;
    let refused = store.transact(change(vec![audit_of("Task/x")])).await;
    assert!(refused.is_err(), "{refused:?}");
    let stored = store.read("Task", &id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored["status"].as_str(),
            stored["meta"]["versionId"].as_str()
        ),
        (Some("requested"), Some("1")),
        "the change went with its audit"
    );
    allow_audit_inserts(&url).await;
    store
        .transact(change(vec![audit_of("Task/x")]))
        .await
        .unwrap();
    assert_eq!(
        store.read("Task", &id).await.unwrap().unwrap()["status"],
        "accepted"
    );
    assert_eq!(audit_count(&store).await, before + 1);
    // What is passed as audit is an AuditEvent, never a record in disguise.
    let mut again = answered.clone();
    again["status"] = json!("rejected");
    let disguised = store
        .transact(Transaction {
            updates: vec![(again, 2)],
            audit: vec![json!({ "resourceType": "Task", "id": id, "status": "completed" })],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(disguised, Err(StoreError::Corrupt(_))),
        "{disguised:?}"
    );
    assert_eq!(
        store.read("Task", &id).await.unwrap().unwrap()["status"],
        "accepted"
    );
    store.close().await;
}

#[tokio::test]
async fn a_delivery_change_whose_audit_cannot_be_written_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = fresh_store(dir.path()).await;
    let communication =
        json!({ "resourceType": "Communication", "id": "l1", "status": "not-done" });
    store
        .transact(Transaction {
            creates: vec![communication.clone()],
            referral: "sr1".into(),
            deliveries: vec![delivery("l1")],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut queued = store.read("Communication", "l1").await.unwrap().unwrap();
    queued["status"] = json!("preparation");
    let held = store
        .claim_delivery(&lease_of("test"), &DeliveryId::from("l1"), Utc::now())
        .await;
    assert!(held.unwrap().is_some());
    refuse_audit_inserts(&url).await;
    let refused = store
        .update_delivery(requeue(
            "l1",
            queued.clone(),
            vec![audit_of("Communication/l1")],
        ))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let (d, attempts) = store
        .delivery(&DeliveryId::from("l1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.state, attempts.len()), (DeliveryState::Dead, 0));
    assert_eq!(
        store.read("Communication", "l1").await.unwrap().unwrap()["meta"]["versionId"],
        "1"
    );
    allow_audit_inserts(&url).await;
    let before = audit_count(&store).await;
    store
        .update_delivery(requeue("l1", queued, vec![audit_of("Communication/l1")]))
        .await
        .unwrap();
    let (d, attempts) = store
        .delivery(&DeliveryId::from("l1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.state, attempts.len()), (DeliveryState::Queued, 1));
    assert_eq!(audit_count(&store).await, before + 1);
    store.close().await;
}

/// A practice's endpoint is failing from the first failed attempt after its last answer,
/// whichever of its letters the attempts carried; an answer (even a refusal) ends it.
#[tokio::test]
async fn an_endpoint_fails_from_its_first_failure_since_it_last_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fresh_store(dir.path()).await;
    for id in ["l1", "l2"] {
        store
            .transact(Transaction {
                creates: vec![
                    json!({ "resourceType": "Communication", "id": id, "status": "preparation" }),
                ],
                referral: "sr1".into(),
                deliveries: vec![delivery(id)],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let t0 = "2026-12-02T10:00:00Z"
        .parse::<chrono::DateTime<Utc>>()
        .unwrap();
    let attempt = |id: &'static str, outcome, at: chrono::DateTime<Utc>| {
        let store = &store;
        async move {
            let lease = lease_of("test");
            let held = store
                .claim_delivery(&lease, &DeliveryId::from(id), Utc::now())
                .await
                .unwrap();
            assert!(held.is_some());
            let communication = store.read("Communication", id).await.unwrap().unwrap();
            let mut update = requeue(id, communication, vec![audit_of("Communication/x")]);
            update.attempt = Some(DeliveryAttempt {
                attempt: 4,
                at,
                outcome,
                detail: None,
            });
            store.update_delivery(update).await.unwrap();
            store.endpoint_failing_since("o|C88901").await.unwrap()
        }
    };
    assert_eq!(
        store.endpoint_failing_since("o|C88901").await.unwrap(),
        None
    );
    let minutes = |m| t0 + chrono::Duration::minutes(m);
    assert_eq!(attempt("l1", AttemptOutcome::Retry, t0).await, Some(t0));
    assert_eq!(
        attempt("l2", AttemptOutcome::Retry, minutes(30)).await,
        Some(t0),
        "another letter's failure does not restart the clock"
    );
    assert_eq!(
        attempt("l2", AttemptOutcome::Permanent, minutes(40)).await,
        None
    );
    assert_eq!(
        attempt("l1", AttemptOutcome::Requeued, minutes(45)).await,
        None,
        "a resend by hand says nothing of the endpoint"
    );
    assert_eq!(
        attempt("l1", AttemptOutcome::Retry, minutes(50)).await,
        Some(minutes(50))
    );
    assert_eq!(
        attempt("l2", AttemptOutcome::Delivered, minutes(55)).await,
        None
    );
    assert_eq!(store.endpoint_failing_since("o|OTHER").await.unwrap(), None);
    store.close().await;
}

/// A state or outcome code the gateway does not know is damage, never a letter in some
/// other state.
#[tokio::test]
async fn an_unknown_stored_delivery_state_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = fresh_store(dir.path()).await;
    store
        .transact(Transaction {
            referral: "sr1".into(),
            deliveries: vec![delivery("l1")],
            ..Default::default()
        })
        .await
        .unwrap();
    let (d, _) = store
        .delivery(&DeliveryId::from("l1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.state, DeliveryState::Dead);
    let filter = DeliveryFilter {
        state: Some(DeliveryState::Dead),
        ..Default::default()
    };
    assert_eq!(store.deliveries(&filter).await.unwrap().len(), 1);
    let mut conn = Conn::connect(&url).await.unwrap();
    sqlx::query("UPDATE deliveries SET state = 'lost' WHERE id = 'l1'")
        .execute(&mut conn)
        .await
        .unwrap();
    let read = store.delivery(&DeliveryId::from("l1")).await;
    assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    let listed = store.deliveries(&DeliveryFilter::default()).await;
    assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
    sqlx::query(
        "UPDATE deliveries SET state = 'dead' WHERE id = 'l1';
         INSERT INTO delivery_attempts (delivery_id, seq, attempt, at, outcome) VALUES ('l1', 1, 1, '', 'lost')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let read = store.delivery(&DeliveryId::from("l1")).await;
    assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    store.close().await;
}

// --- leases

fn lease_of(owner: &str) -> Lease {
    Lease::new(owner, "2999-01-01T00:00:00Z".parse().unwrap())
}

/// `owner`'s lease from `at` for `secs`.
fn lease_at(owner: &str, at: DateTime<Utc>, secs: i64) -> Lease {
    Lease::new(owner, at + chrono::Duration::seconds(secs))
}

/// A letter in `state`, due (and, if urgent, to be escalated) at `due`.
fn letter(id: &str, state: DeliveryState, urgent: bool, due: DateTime<Utc>) -> Delivery {
    let mut d = delivery(id);
    d.state = state;
    d.urgent = urgent;
    d.next_attempt_at = due;
    d.escalate_at = urgent.then_some(due);
    d.message_id = format!("m-{id}");
    d
}

async fn queue(store: &SqliteStore, letters: Vec<Delivery>) {
    let creates = letters
        .iter()
        .map(|d| json!({ "resourceType": "Communication", "id": d.id, "status": "preparation" }))
        .collect();
    store
        .transact(Transaction {
            creates,
            referral: "sr1".into(),
            deliveries: letters,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn ids(claimed: &[Delivery]) -> Vec<&str> {
    claimed.iter().map(|d| d.id.as_str()).collect()
}

/// Two gateway instances on one database (two stores on one file here, each with its own
/// writer) claiming at once never take the same letter, and between them take every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_owners_claiming_at_once_never_take_the_same_letter() {
    let dir = tempfile::tempdir().unwrap();
    let (a, url) = fresh_store(dir.path()).await;
    let b = SqliteStore::open(&url, &Config::defaults().store)
        .await
        .unwrap();
    let t0 = Utc::now();
    let letters: Vec<Delivery> = (0..120)
        .map(|n| letter(&format!("l{n:03}"), DeliveryState::Queued, n % 7 == 0, t0))
        .collect();
    queue(&a, letters).await;
    let now = t0 + chrono::Duration::seconds(1);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let take = |store: SqliteStore, owner: &'static str, now: DateTime<Utc>| {
        let start = start.clone();
        tokio::spawn(async move {
            let lease = lease_at(owner, t0, 600);
            let mut taken = Vec::new();
            start.wait().await;
            loop {
                let claimed = store.claim_due(&lease, now, 3).await.unwrap();
                if claimed.is_empty() {
                    break;
                }
                taken.extend(claimed.into_iter().map(|d| d.id));
                // As a worker does between claims (it sends): the other gets its turn at
                // the database's write lock.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            store.close().await;
            taken
        })
    };
    let (by_a, by_b) = tokio::join!(take(a, "a", now), take(b, "b", now));
    let (by_a, by_b) = (by_a.unwrap(), by_b.unwrap());
    let mut all: Vec<&DeliveryId> = by_a.iter().chain(&by_b).collect();
    let claims = all.len();
    all.sort();
    all.dedup();
    assert_eq!(claims, all.len(), "a letter was taken twice");
    assert_eq!(all.len(), 120, "every letter was taken");
    assert!(!by_a.is_empty() && !by_b.is_empty(), "both took some");
}

#[tokio::test]
async fn a_lease_holds_until_it_runs_out_then_another_owner_takes_the_letter_over() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fresh_store(dir.path()).await;
    let t0 = Utc::now();
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    queue(&store, vec![letter("l1", DeliveryState::Queued, false, t0)]).await;
    let a = lease_at("a", t0, 60);
    let claimed = store.claim_due(&a, at(0), 10).await.unwrap();
    assert_eq!(ids(&claimed), ["l1"]);
    assert_eq!(claimed[0].state, DeliveryState::Queued);

    // While a's lease lasts, nobody takes it: not another owner, not a itself again, not by
    // name.
    for (owner, secs) in [("b", 1), ("a", 30), ("b", 59)] {
        let lease = lease_at(owner, t0 + chrono::Duration::seconds(secs), 60);
        assert!(
            store
                .claim_due(&lease, at(secs), 10)
                .await
                .unwrap()
                .is_empty(),
            "{owner} at {secs} s"
        );
        assert!(
            store
                .claim_delivery(&lease, &DeliveryId::from("l1"), at(secs))
                .await
                .unwrap()
                .is_none()
        );
    }
    // Once it runs out (a killed instance), another owner takes the letter over...
    let b = lease_at("b", t0 + chrono::Duration::seconds(60), 60);
    assert_eq!(ids(&store.claim_due(&b, at(60), 10).await.unwrap()), ["l1"]);
    // ...and a change made under the old lease is refused: nothing is recorded.
    let communication = store.read("Communication", "l1").await.unwrap().unwrap();
    let mut stale = requeue("l1", communication.clone(), vec![]);
    stale.lease = a.clone();
    stale.state = DeliveryState::Accepted;
    let refused = store.update_delivery(stale).await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost(ref id)) if id == "l1"),
        "{refused:?}"
    );
    let (d, attempts) = store
        .delivery(&DeliveryId::from("l1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.state, attempts.len()), (DeliveryState::Queued, 0));
    // Letting go under the old lease does nothing either: b still holds it.
    store
        .release_delivery(&a, &DeliveryId::from("l1"))
        .await
        .unwrap();
    let c = lease_at("c", t0 + chrono::Duration::seconds(61), 60);
    assert!(
        store
            .claim_delivery(&c, &DeliveryId::from("l1"), at(61))
            .await
            .unwrap()
            .is_none()
    );
    // A letter that is not there is not found, whoever asks.
    let mut missing = requeue("l9", communication, vec![]);
    missing.lease = b.clone();
    let refused = store.update_delivery(missing).await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(_))),
        "{refused:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn recording_a_change_or_letting_go_frees_the_letter_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fresh_store(dir.path()).await;
    let t0 = Utc::now();
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    queue(&store, vec![letter("l1", DeliveryState::Queued, false, t0)]).await;
    let a = lease_at("a", t0, 600);
    assert_eq!(ids(&store.claim_due(&a, at(0), 1).await.unwrap()), ["l1"]);
    let communication = store.read("Communication", "l1").await.unwrap().unwrap();
    let mut retry = requeue("l1", communication, vec![]);
    retry.lease = a.clone();
    retry.next_attempt_at = at(1);
    store.update_delivery(retry.clone()).await.unwrap();
    let (d, attempts) = store
        .delivery(&DeliveryId::from("l1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.state, attempts.len()), (DeliveryState::Queued, 1));
    // The update let the lease go: due again, b takes it long before a's lease would end.
    let b = lease_at("b", t0, 600);
    assert_eq!(ids(&store.claim_due(&b, at(2), 1).await.unwrap()), ["l1"]);
    // The released lease is no longer a's: a second update under it is refused.
    let again = store.update_delivery(retry).await;
    assert!(matches!(again, Err(StoreError::LeaseLost(_))), "{again:?}");
    // Letting go without a change frees it too.
    store
        .release_delivery(&b, &DeliveryId::from("l1"))
        .await
        .unwrap();
    let c = lease_at("c", t0, 600);
    assert!(
        store
            .claim_delivery(&c, &DeliveryId::from("l1"), at(3))
            .await
            .unwrap()
            .is_some()
    );
    store.close().await;
}

/// What each claim takes: due letters in the states the worker sends (urgent first, then
/// oldest due, none not yet due), overdue urgent letters in the states an escalation
/// applies to, and one letter by name whatever its state.
#[tokio::test]
async fn claims_take_the_letters_the_state_machine_says() {
    use crate::letters::delivery_state::{Event, next};
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fresh_store(dir.path()).await;
    let t0 = Utc::now();
    let secs = |n: i64| t0 + chrono::Duration::seconds(n);
    let mut letters = Vec::new();
    for (n, state) in DeliveryState::ALL.into_iter().enumerate() {
        let n = n as i64;
        letters.push(letter(&format!("r-{state}"), state, false, secs(n)));
        letters.push(letter(&format!("u-{state}"), state, true, secs(10 + n)));
    }
    letters.push(letter(
        "u-escalated-before",
        DeliveryState::Sent,
        true,
        secs(20),
    ));
    letters.push(letter("not-yet", DeliveryState::Queued, true, secs(1000)));
    queue(&store, letters).await;
    // The escalation fields are not written by `transact`: set them as the worker would.
    let mut conn = Conn::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    sqlx::query("UPDATE deliveries SET escalated_at = $1 WHERE id = 'u-escalated-before'")
        .bind(format_instant(t0))
        .execute(&mut conn)
        .await
        .unwrap();

    let now = secs(100);
    let overdue = store
        .claim_overdue_urgent(&lease_at("e", t0, 600), now, 100)
        .await
        .unwrap();
    let expected: Vec<String> = DeliveryState::ALL
        .into_iter()
        .filter(|s| next(*s, Event::UrgentAckOverdue).is_ok())
        .map(|s| format!("u-{s}"))
        .collect();
    assert_eq!(ids(&overdue), expected);
    // Those are held now; letting them go makes them due for attempts like the rest.
    for d in &overdue {
        store
            .release_delivery(&lease_at("e", t0, 600), &d.id)
            .await
            .unwrap();
    }

    let due = store
        .claim_due(&lease_at("w", t0, 600), now, 100)
        .await
        .unwrap();
    let awaiting: Vec<DeliveryState> = DeliveryState::ALL
        .into_iter()
        .filter(|s| s.awaits_attempt())
        .collect();
    let mut expected: Vec<String> = awaiting.iter().map(|s| format!("u-{s}")).collect();
    expected.push("u-escalated-before".into());
    expected.extend(awaiting.iter().map(|s| format!("r-{s}")));
    assert_eq!(ids(&due), expected, "urgent first, then oldest due");

    for state in DeliveryState::ALL {
        let id = format!("r-{state}");
        let one = store
            .claim_delivery(
                &lease_at("x", t0, 600),
                &DeliveryId::new(id.as_str()),
                secs(700),
            )
            .await
            .unwrap();
        assert_eq!(one.map(|d| d.state), Some(state), "{id}");
    }
    assert!(
        store
            .claim_delivery(&lease_at("x", t0, 600), &DeliveryId::from("nothing"), now)
            .await
            .unwrap()
            .is_none()
    );
    store.close().await;
}

fn requested_override() -> Override {
    use crate::consent::overrides::Agent;
    Override {
        id: "o1".into(),
        patient_id: "p1".into(),
        recipient: RecipientClass::WorkHealthService,
        organisation: "s|whs".into(),
        classes: vec![DataClass::Referral],
        reason: OverrideReason::RiskToPerson,
        justification: "Risk to the person disclosed at the practice today.".into(),
        hours: 4,
        requested_by: Agent {
            client: "service:whs".into(),
            organisation: "s|whs".into(),
        },
        // Stored to the microsecond.
        requested_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
        state: OverrideState::Requested,
        review: None,
    }
}

#[tokio::test]
async fn an_override_step_whose_audit_cannot_be_written_is_not_stored() {
    use crate::caller::{Principal, Role};
    use crate::consent::overrides::{Verdict, decide_request};
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = fresh_store(dir.path()).await;
    let request = requested_override();
    refuse_audit_inserts(&url).await;
    let refused = store
        .create_override(request.clone(), vec![audit_of("override o1")])
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(store.override_by_id("o1").await.unwrap(), None);
    allow_audit_inserts(&url).await;
    store
        .create_override(request.clone(), vec![audit_of("override o1")])
        .await
        .unwrap();
    let (stored, version) = store.override_by_id("o1").await.unwrap().unwrap();
    assert_eq!((&stored, version), (&request, 1));

    let ig = Principal::new(Role::InformationGovernance, "IG1");
    let mut granted = stored.clone();
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    granted.state = decide_request(&stored, &ig, Verdict::Grant, "ok", now).unwrap();
    refuse_audit_inserts(&url).await;
    let refused = store
        .update_override(granted.clone(), version, vec![audit_of("override o1")])
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let (unchanged, version) = store.override_by_id("o1").await.unwrap().unwrap();
    assert_eq!((unchanged.state, version), (OverrideState::Requested, 1));
    allow_audit_inserts(&url).await;
    store
        .update_override(granted.clone(), 1, vec![audit_of("override o1")])
        .await
        .unwrap();
    let (now_granted, version) = store.override_by_id("o1").await.unwrap().unwrap();
    assert_eq!((&now_granted, version), (&granted, 2));
    // A change based on the old version is refused: two grants cannot both land.
    let stale = store
        .update_override(granted, 1, vec![audit_of("override o1")])
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::VersionConflict {
                current: 2,
                expected: 1,
                ..
            })
        ),
        "{stale:?}"
    );
    assert_eq!(
        store
            .overrides_of_patient(&PatientId::from("p1"))
            .await
            .unwrap(),
        [now_granted]
    );
    store.close().await;
}

/// Overrides recorded before grants existed were self-granted: the migration keeps them as
/// they happened, and leaves none in force that information governance has not approved.
#[tokio::test]
async fn self_granted_overrides_from_before_grants_stop_unless_reviewed_appropriate() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let mut conn = Conn::connect(&url).await.unwrap();
    MIGRATOR.run_to(7, &mut conn).await.unwrap();
    let legacy = |id: &str, from: chrono::DateTime<Utc>, review: Option<&str>| {
        let mut content = json!({
            "id": id, "patient": "Patient/p1", "recipient": "employer",
            "recipientOrganisation": "e|acme", "dataClasses": ["adviser-letter"],
            "reason": "risk-to-others", "justification": "Falls asleep on night shifts at the gates.",
            "grantedAt": from.to_rfc3339(), "expiresAt": (from + chrono::Duration::hours(24)).to_rfc3339(),
            "grantedBy": { "client": "service:whs", "organisation": "s|whs", "role": "service" },
        });
        if let Some(outcome) = review {
            content["review"] = json!({
                "outcome": outcome, "note": "looked at", "reviewedAt": (from + chrono::Duration::hours(1)).to_rfc3339(),
                "reviewedBy": { "client": "information-governance:IG1", "organisation": "i|IG1" },
            });
        }
        (id.to_string(), content)
    };
    let running = Utc::now() - chrono::Duration::hours(2);
    let past = Utc::now() - chrono::Duration::days(10);
    let mut no_org = legacy("no-org", running, Some("appropriate"));
    no_org
        .1
        .as_object_mut()
        .unwrap()
        .remove("recipientOrganisation");
    for (id, content) in [
        legacy("running", running, None),
        legacy("approved", running, Some("appropriate")),
        legacy("inappropriate", running, Some("inappropriate")),
        legacy("expired", past, None),
        no_org,
    ] {
        sqlx::query(
            "INSERT INTO consent_overrides (id, patient_id, granted_at, expires_at, reviewed_at, content)
             VALUES (?, 'p1', ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(content["grantedAt"].as_str())
        .bind(content["expiresAt"].as_str())
        .bind(content["review"]["reviewedAt"].as_str())
        .bind(content.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    MIGRATOR.run(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let store = SqliteStore::open(&url, &Config::defaults().store)
        .await
        .unwrap();
    let state = |id: &'static str| {
        let store = &store;
        async move {
            let (o, _) = store.override_by_id(id).await.unwrap().unwrap();
            o
        }
    };
    let running = state("running").await;
    assert_eq!(
        running.state.status(),
        OverrideStatus::Ended,
        "self-granted, not approved"
    );
    assert_eq!(running.hours, 24);
    assert_eq!(
        running.state.grant().unwrap().by.client,
        "service:whs",
        "kept as it happened"
    );
    let approved = state("approved").await;
    assert_eq!(approved.state.status(), OverrideStatus::Granted);
    assert_eq!(approved.review.unwrap().outcome, ReviewOutcome::Appropriate);
    let inappropriate = state("inappropriate").await;
    assert!(
        matches!(inappropriate.state, OverrideState::Ended { at, .. } if at == inappropriate.review.as_ref().unwrap().at)
    );
    let expired = state("expired").await;
    assert_eq!(
        expired.state.status(),
        OverrideStatus::Granted,
        "expired: left for review"
    );
    assert!(expired.review.is_none());
    assert_eq!(
        state("no-org").await.organisation,
        "",
        "names no organisation: covers none"
    );
    assert_eq!(
        store
            .list_overrides(OverrideFilter {
                status: None,
                unreviewed: true
            })
            .await
            .unwrap()
            .iter()
            .map(|o| o.id.as_str())
            .collect::<Vec<_>>(),
        ["running", "expired"],
        "granted (ended since, or expired) and never reviewed: newest first"
    );
    store.close().await;
}

mod upgrade_tests {
    use super::*;
    use sqlx::Connection;

    /// A database at migration 0007 (before Patient versions were pinned), holding a person
    /// with two versions and a referral and a fit note stored with each, is pinned by 0008 to
    /// the version each came with, never the current one.
    #[tokio::test]
    async fn records_stored_before_versions_were_pinned_get_the_version_current_then() {
        let dir = tempfile::tempdir().unwrap();
        let early = dir.path().join("migrations");
        std::fs::create_dir(&early).unwrap();
        let all = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        for entry in std::fs::read_dir(all).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.as_str() < "0008" {
                std::fs::copy(&path, early.join(name)).unwrap();
            }
        }
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        let mut conn = Conn::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(early.as_path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        let (t1, t2) = ("2026-03-01T09:00:00.000000Z", "2026-04-01T09:00:00.000000Z");
        for (sql, at) in [
            (
                "INSERT INTO resource_history VALUES ('Patient', 'p1', 1, ?, '{}')",
                t1,
            ),
            (
                "INSERT INTO resources VALUES ('Patient', 'p1', 2, ?, '{}', '')",
                t2,
            ),
            (
                "INSERT INTO referrals VALUES ('sr1', 'p1', 'ods|A', 'svc|s', ?)",
                t1,
            ),
            (
                "INSERT INTO referrals VALUES ('sr2', 'p1', 'ods|B', 'svc|s', ?)",
                t2,
            ),
            (
                "INSERT INTO fit_notes VALUES ('o1', 'p1', 'ods|A', '2026-03-01', NULL, '2026-03-01', 1, ?)",
                t1,
            ),
        ] {
            sqlx::query(sql).bind(at).execute(&mut conn).await.unwrap();
        }
        MIGRATOR.run(&mut conn).await.unwrap();
        let pinned: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT service_request_id, patient_version FROM referrals
             UNION ALL SELECT observation_id, patient_version FROM fit_notes ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            pinned,
            [
                ("o1".into(), Some(1)),
                ("sr1".into(), Some(1)),
                ("sr2".into(), Some(2))
            ]
        );
    }
}

/// A database URL in an error says where, never the password.
#[tokio::test]
async fn an_unusable_database_url_is_named_without_its_password() {
    let mut config = Config::defaults();
    config.database_url = "mysql://root:hunter2@db.example/whg".into();
    let Err(refused) = crate::store::open(&config).await else {
        panic!("a MySQL URL was taken");
    };
    let said = refused.to_string();
    assert!(!said.contains("hunter2"), "{said}");
    assert!(said.contains("mysql://root:***@db.example/whg"), "{said}");
}

/// A letter whose row does not read back (here a hand-edited time) is damage: read by id it is
/// an error, but a claim leaves it out and takes the others, so one bad row never stops the
/// outbox.
#[tokio::test]
async fn a_damaged_letter_is_left_out_of_a_claim_and_the_rest_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = fresh_store(dir.path()).await;
    let t0 = Utc::now();
    queue(
        &store,
        ["l1", "l2", "l3"]
            .map(|id| letter(id, DeliveryState::Queued, false, t0))
            .into(),
    )
    .await;
    let mut conn = Conn::connect(&url).await.unwrap();
    sqlx::query("UPDATE deliveries SET deadline_at = 'next Tuesday' WHERE id = 'l2'")
        .execute(&mut conn)
        .await
        .unwrap();
    let read = store.delivery(&DeliveryId::from("l2")).await;
    assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    let claimed = store
        .claim_due(
            &lease_at("w", t0, 600),
            t0 + chrono::Duration::seconds(1),
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["l1", "l3"]);
    store.close().await;
}

/// Admission rules run on the writer's thread: one that panics (a bug) refuses its own
/// submission with [`StoreError::Bug`], stores nothing of it, and the writer takes the next.
#[tokio::test]
async fn a_panicking_admission_refuses_its_submission_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fresh_store(dir.path()).await;
    let config = Config::defaults();
    let panicking: crate::intake::admission::Admission =
        Box::new(|_, _| panic!("a rule with a bug"));
    let failed = store
        .submit(submission(&config, "PANIC-1"), Some(panicking))
        .await;
    assert!(matches!(failed, Err(StoreError::Bug(_))), "{failed:?}");
    let key = submission(&config, "PANIC-1").key;
    assert_eq!(store.submitted(&key).await.unwrap(), None, "nothing stored");
    let stored = store
        .submit(submission(&config, "PANIC-2"), None)
        .await
        .expect("the writer is still running");
    assert!(stored.created);
}
