//! The SQLite backend's own tests: what only SQLite shows (its triggers, its upgrade path).

use super::*;
use crate::caller::Principal;
use crate::config::Config;
use crate::intake::{IntakeContext, practice_referral};

const REFERRAL: &str =
    include_str!("../../../fixtures/referrals/valid/01-gp-work-stress-off-sick.json");
const REFUSAL: &str = include_str!("../../../fixtures/consent/valid/05-nothing-to-dwp.json");

fn submission(config: &Config, id: &str) -> Submission {
    let mut r: Value = serde_json::from_str(REFERRAL).unwrap();
    r["referralId"] = json!(id);
    practice_referral(&r, &IntakeContext::now(config)).unwrap()
}

/// Runs one referral job the way `commit_batch` does, keeping what it leaves pending.
async fn refer(
    conn: &mut SqliteConnection,
    batch: &mut Pending,
    config: &Config,
    id: &str,
) -> Result<Stored, StoreError> {
    let s = submission(config, id);
    let admission = crate::intake::admission::referral(
        &s,
        None,
        &Principal::practice("C88901"),
        None,
        Utc::now(),
        crate::intake::admission::practice_criterion_expression,
        crate::access::PRACTICE_CONSENT_EXPRESSION,
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
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
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
    let mut conn = SqliteConnection::connect(url).await.unwrap();
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
    let mut conn = SqliteConnection::connect(url).await.unwrap();
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
    let now = format_instant(Utc::now());
    Delivery {
        id: id.into(),
        document_id: "d1".into(),
        referral_id: "sr1".into(),
        patient_id: "p1".into(),
        service: "s|whs".into(),
        practice: "o|C88901".into(),
        urgent: false,
        state: "dead".into(),
        attempts: 3,
        message_id: "m1".into(),
        correlation_id: "c1".into(),
        created_at: now.clone(),
        next_attempt_at: now.clone(),
        deadline_at: now.clone(),
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
        state: "queued".into(),
        attempt: Some(DeliveryAttempt {
            attempt: 3,
            at: format_instant(Utc::now()),
            outcome: "requeued".into(),
            detail: None,
        }),
        next_attempt_at: format_instant(Utc::now()),
        last_error: None,
        channel: None,
        escalated_at: None,
        transport_id: None,
        deadline_at: None,
        communication,
        audit,
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
    refuse_audit_inserts(&url).await;
    let refused = store
        .update_delivery(requeue(
            "l1",
            queued.clone(),
            vec![audit_of("Communication/l1")],
        ))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let (d, attempts) = store.delivery("l1").await.unwrap().unwrap();
    assert_eq!((d.state.as_str(), attempts.len()), ("dead", 0));
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
    let (d, attempts) = store.delivery("l1").await.unwrap().unwrap();
    assert_eq!((d.state.as_str(), attempts.len()), ("queued", 1));
    assert_eq!(audit_count(&store).await, before + 1);
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
        store.overrides_of_patient("p1").await.unwrap(),
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
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
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
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
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
