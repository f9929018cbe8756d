//! The storage contract: what every backend must do, run against each (SQLite on a temporary
//! file; PostgreSQL on a fresh database of the server `WHG_TEST_POSTGRES` names, which
//! `scripts/test.sh` starts). Each contract is one function over an [`Instances`] pair: two store
//! handles on one database, as two gateway instances would hold them (on SQLite, where one
//! process owns the file, both are the same store).

mod common;

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use common::nhs_number;
use serde_json::{Value, json};
use whg::auth::Principal;
use whg::config::Config;
use whg::fhir::search::{SearchRequest, Sort, Tenancy, format_instant};
use whg::intake::{Submission, practice_referral};
use whg::store::{
    ClientId, ClientRecord, PatientId, QuarantinedMessage, Store, StoreError, Transaction,
};

const REFERRAL: &str = include_str!("../fixtures/referrals/valid/01-gp-work-stress-off-sick.json");
const REFUSAL: &str = include_str!("../fixtures/consent/valid/05-nothing-to-dwp.json");
const PRACTICE: &str = "https://fhir.nhs.uk/Id/ods-organization-code|C88901";

/// Two handles on one database.
struct Instances {
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    config: Config,
    /// The PostgreSQL database, dropped after the stores (the harness's, so none is left behind).
    _database: Option<common::TestDatabase>,
    _dir: tempfile::TempDir,
}

async fn sqlite() -> Instances {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.database_url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let a = whg::store::open(&config).await.unwrap();
    Instances {
        b: a.clone(),
        a,
        config,
        _database: None,
        _dir: dir,
    }
}

/// A fresh database on the test PostgreSQL server, or `None` (and a note) when there is none:
/// `scripts/test.sh` runs this suite a second time with one (its PostgreSQL pass).
async fn postgres() -> Option<Instances> {
    if std::env::var_os(common::POSTGRES_ENV).is_none() {
        eprintln!(
            "WHG_TEST_POSTGRES not set: the PostgreSQL half of this contract runs in the PostgreSQL pass"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let database = common::TestDatabase::create(dir.path());
    let mut config = Config::defaults();
    config.database_url = database.url();
    let a = whg::store::open(&config).await.unwrap();
    let b = whg::store::open(&config).await.unwrap();
    Some(Instances {
        a,
        b,
        config,
        _database: Some(database),
        _dir: dir,
    })
}

/// One test per backend for each contract.
macro_rules! contract {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(instances) = super::postgres().await {
                    super::$name(instances).await;
                }
            }
        }
    )+};
}

contract!(
    a_resend_stores_nothing_and_other_content_conflicts,
    concurrent_identical_referrals_store_one,
    referrals_for_a_new_person_on_two_instances_make_one_person,
    a_refusal_recorded_on_one_instance_refuses_the_next_referral_on_another,
    a_change_based_on_an_old_version_is_refused_and_stores_nothing,
    searches_and_reads_see_only_the_parties_records,
    clients_and_assertions,
    quarantine_keeps_a_message_once,
    a_session_ended_on_one_instance_is_ended_on_every_one,
    alerts_are_raised_once_listed_by_scope_and_sent_once_per_route,
);

fn letter_alert(letter: &str, service: &str, at: chrono::DateTime<Utc>) -> whg::alerts::NewAlert {
    let facts = whg::alerts::LetterFacts {
        letter_id: letter,
        service_id: service,
        service_name: service,
        practice_ods: "C88901",
        practice_name: None,
        attempts: 3,
    };
    whg::alerts::letter_dead(&facts, 3600, at)
}

/// One open alert per kind and subject whichever instance raises it, and none again within the
/// kind's quiet time after an acknowledgement; each person's scope asked of the store; each
/// on-call route sent an alert once, however often another route fails; an acknowledged alert
/// or one out of attempts never sent again.
async fn alerts_are_raised_once_listed_by_scope_and_sent_once_per_route(db: Instances) {
    use whg::alerts::{AlertScope, endpoint_failing, raised_event};
    use whg::store::{AlertNotice, NoticeOutcome};
    let now = Utc::now().trunc_subsecs(0);
    let failing = endpoint_failing("C88901", None, now, "HTTP 503", now);
    let first =
        db.a.raise_alert(failing.clone(), raised_event(&failing, None))
            .await
            .unwrap()
            .expect("stored");
    assert_eq!(
        db.b.raise_alert(failing.clone(), raised_event(&failing, None))
            .await
            .unwrap(),
        None,
        "open already: not raised twice"
    );
    let whs = letter_alert("letter-1", "sheffield-whs", now);
    let ww = letter_alert("letter-2", "workwell-south-tyneside", now);
    for alert in [&whs, &ww] {
        db.a.raise_alert(alert.clone(), raised_event(alert, Some(&alert.subject)))
            .await
            .unwrap()
            .expect("stored");
    }
    let subjects = |alerts: Vec<whg::alerts::Alert>| {
        let mut s: Vec<String> = alerts.into_iter().map(|a| a.raised.subject).collect();
        s.sort();
        s
    };
    let own = AlertScope::Service("sheffield-whs".into());
    assert_eq!(
        subjects(db.b.alerts(&own, false, 50).await.unwrap()),
        ["letter-1"]
    );
    assert_eq!(
        subjects(db.b.alerts(&AlertScope::Every, false, 50).await.unwrap()),
        ["C88901", "letter-1", "letter-2"]
    );

    // Two routes: one takes it, one fails; the retry goes to the one that failed only.
    db.a.record_alert_notice(
        &first,
        AlertNotice {
            taken_by: vec!["webhook".into()],
            at: now,
            outcome: NoticeOutcome::RetryAt(now),
        },
    )
    .await
    .unwrap();
    let due = db.b.alerts_to_notify(now, 10, 50).await.unwrap();
    let again = due.iter().find(|a| a.id == first).expect("due again");
    assert_eq!(again.taken_by, ["webhook"]);
    assert_eq!(again.notify_attempts, 1);
    assert!(
        db.b.alerts_to_notify(now, 1, 50)
            .await
            .unwrap()
            .iter()
            .all(|a| a.id != first),
        "out of attempts: not tried again"
    );
    db.a.record_alert_notice(
        &first,
        AlertNotice {
            taken_by: vec!["email".into()],
            at: now,
            outcome: NoticeOutcome::AllTaken,
        },
    )
    .await
    .unwrap();
    assert!(
        db.b.alerts_to_notify(now, 10, 50)
            .await
            .unwrap()
            .iter()
            .all(|a| a.id != first),
        "taken by every route"
    );

    // Acknowledged: never sent, listed as done; the same trouble stays quiet for a while.
    let letter = db.a.alerts(&own, false, 50).await.unwrap().remove(0);
    let audit = raised_event(&whs, None);
    assert!(
        db.a.acknowledge_alert(&letter.id, "person-1", now, audit.clone())
            .await
            .unwrap()
    );
    assert!(
        !db.b
            .acknowledge_alert(&letter.id, "person-2", now, audit.clone())
            .await
            .unwrap(),
        "acknowledged once"
    );
    assert!(
        db.b.alerts_to_notify(now, 10, 50)
            .await
            .unwrap()
            .iter()
            .all(|a| a.id != letter.id),
        "a person has it: nobody is sent it"
    );
    let done = db.b.alerts(&own, true, 50).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].acknowledged.as_ref().unwrap().by, "person-1");
    assert!(db.b.alerts(&own, false, 50).await.unwrap().is_empty());

    assert!(
        db.a.acknowledge_alert(&first, "person-1", now, audit.clone())
            .await
            .unwrap()
    );
    // The same outage (failing since before the acknowledgement), five minutes on: quiet.
    let soon = endpoint_failing(
        "C88901",
        None,
        now - chrono::Duration::hours(1),
        "HTTP 503",
        now + chrono::Duration::minutes(5),
    );
    assert_eq!(
        db.b.raise_alert(soon.clone(), raised_event(&soon, None))
            .await
            .unwrap(),
        None,
        "acknowledged five minutes ago: not raised again"
    );
    // It recovered and failed again since: a new outage, which nobody has acknowledged.
    let again = endpoint_failing(
        "C88901",
        None,
        now + chrono::Duration::minutes(1),
        "HTTP 503",
        now + chrono::Duration::minutes(10),
    );
    let second =
        db.b.raise_alert(again.clone(), raised_event(&again, None))
            .await
            .unwrap()
            .expect("a new outage is raised, within the quiet time of the last");
    assert!(
        db.a.acknowledge_alert(
            &second,
            "person-1",
            now + chrono::Duration::minutes(11),
            audit.clone()
        )
        .await
        .unwrap()
    );
    // Still failing, long after the quiet time: raised again.
    let later = endpoint_failing(
        "C88901",
        None,
        now + chrono::Duration::minutes(1),
        "HTTP 503",
        now + chrono::Duration::hours(5),
    );
    assert!(
        db.b.raise_alert(later.clone(), raised_event(&later, None))
            .await
            .unwrap()
            .is_some(),
        "still failing after the quiet time: raised again"
    );
    // The acknowledged, the one acknowledged last first.
    let done = db.b.alerts(&AlertScope::Every, true, 50).await.unwrap();
    assert_eq!(done[0].id, second, "{done:?}");
}

/// Signing out on one instance ends the session on all of them, once, audited once; a session
/// past its time is forgotten when the next one ends.
async fn a_session_ended_on_one_instance_is_ended_on_every_one(db: Instances) {
    let audit = || json!({ "resourceType": "AuditEvent", "recorded": format_instant(Utc::now()) });
    let until = Utc::now().timestamp() + 1800;
    assert!(!db.b.session_ended("session-1").await.unwrap());
    assert!(db.a.end_session("session-1", until, audit()).await.unwrap());
    assert!(db.b.session_ended("session-1").await.unwrap());
    assert!(
        !db.b.end_session("session-1", until, audit()).await.unwrap(),
        "ended once"
    );
    assert!(!db.a.session_ended("session-2").await.unwrap());
    assert_eq!(audit_events(&db).await, 1, "audited once");
    // One that had already run out is not kept past the next sign-out.
    let past = Utc::now().timestamp() - 10;
    assert!(
        db.a.end_session("session-old", past, audit())
            .await
            .unwrap()
    );
    assert!(db.b.end_session("session-3", until, audit()).await.unwrap());
    assert!(!db.a.session_ended("session-old").await.unwrap());
    assert!(db.a.session_ended("session-1").await.unwrap());
}

fn submission(config: &Config, referral_id: &str, nhs_number: Option<&str>) -> Submission {
    let mut r: Value = serde_json::from_str(REFERRAL).unwrap();
    r["referralId"] = json!(referral_id);
    if let Some(n) = nhs_number {
        r["patient"]["nhsNumber"] = json!(n);
    }
    practice_referral(&r, &config.intake_now()).unwrap()
}

/// A referral as the API submits it: with the admission that checks the person's consent.
async fn refer(
    store: &dyn Store,
    config: &Config,
    referral_id: &str,
    nhs_number: Option<&str>,
) -> Result<whg::store::Stored, StoreError> {
    let s = submission(config, referral_id, nhs_number);
    let admission = whg::intake::admission::referral(
        &s,
        None,
        Some(&Principal::practice("C88901")),
        None,
        Utc::now(),
        whg::intake::admission::practice_criterion_expression,
        whg::intake::admission::PRACTICE_CONSENT_EXPRESSION,
    );
    store.submit(s, Some(admission)).await
}

/// How many AuditEvents the store holds.
async fn audit_events(db: &Instances) -> u64 {
    db.a.search(&search("AuditEvent", None))
        .await
        .unwrap()
        .total
}

fn search(resource_type: &str, tenancy: Option<Tenancy>) -> SearchRequest {
    SearchRequest {
        resource_type: resource_type.into(),
        filters: vec![],
        count: 100,
        offset: 0,
        sort: Sort::LastUpdatedDesc,
        tenancy,
    }
}

async fn a_resend_stores_nothing_and_other_content_conflicts(db: Instances) {
    let first = refer(&*db.a, &db.config, "C-1", None).await.unwrap();
    assert!(first.created);
    let again = refer(&*db.b, &db.config, "C-1", None).await.unwrap();
    assert_eq!((again.created, &again.focus_id), (false, &first.focus_id));

    let mut changed = submission(&db.config, "C-1", None);
    changed.content_hash = "different".into();
    match db.b.submit(changed, None).await {
        Err(StoreError::Conflict { existing_id, .. }) => assert_eq!(existing_id, first.focus_id),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let all = db.a.search(&search("ServiceRequest", None)).await.unwrap();
    assert_eq!(all.total, 1);
}

async fn concurrent_identical_referrals_store_one(db: Instances) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 {
                db.a.clone()
            } else {
                db.b.clone()
            };
            let config = db.config.clone();
            tokio::spawn(async move { refer(&*store, &config, "C-16", None).await })
        })
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for t in tasks {
        let stored = t.await.unwrap().unwrap();
        created += usize::from(stored.created);
        ids.push(stored.focus_id);
    }
    ids.dedup();
    assert_eq!(
        (created, ids.len()),
        (1, 1),
        "one referral, one id: {ids:?}"
    );
    let all = db.a.search(&search("ServiceRequest", None)).await.unwrap();
    assert_eq!(all.total, 1);
}

async fn referrals_for_a_new_person_on_two_instances_make_one_person(db: Instances) {
    let nhs = nhs_number(7);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 {
                db.a.clone()
            } else {
                db.b.clone()
            };
            let config = db.config.clone();
            let nhs = nhs.clone();
            tokio::spawn(
                async move { refer(&*store, &config, &format!("P-{i}"), Some(&nhs)).await },
            )
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().created);
    }
    let patients = db.a.search(&search("Patient", None)).await.unwrap();
    assert_eq!(patients.total, 1, "one Patient for one NHS number");
    let patient = PatientId::new(patients.resources[0]["id"].as_str().unwrap());
    assert_eq!(
        db.b.patient_by_nhs_number(&nhs).await.unwrap().as_ref(),
        Some(&patient)
    );
    assert_eq!(
        db.b.records_of_patient(&patient).await.unwrap().len(),
        8,
        "every referral is about that one person"
    );
}

async fn a_refusal_recorded_on_one_instance_refuses_the_next_referral_on_another(db: Instances) {
    let nhs = nhs_number(11);
    refer(&*db.a, &db.config, "R-1", Some(&nhs)).await.unwrap();
    let patient = db.a.patient_by_nhs_number(&nhs).await.unwrap().unwrap();
    let mut refusal: Value =
        serde_json::from_str(&REFUSAL.replace("Patient/example", &format!("Patient/{patient}")))
            .unwrap();
    refusal["provision"]["actor"][0]["role"]["coding"][1]["code"] = json!("work-health-service");
    db.a.create(vec![refusal]).await.unwrap();
    // The very next referral, on the other instance, reads the refusal.
    match refer(&*db.b, &db.config, "R-2", Some(&nhs)).await {
        Err(StoreError::Refused(_)) => {}
        other => panic!("expected the refusal to refuse, got {other:?}"),
    }
    let referrals = db.b.records_of_patient(&patient).await.unwrap();
    assert_eq!(
        referrals.len(),
        1,
        "nothing of the refused referral was stored"
    );
}

async fn a_change_based_on_an_old_version_is_refused_and_stores_nothing(db: Instances) {
    let task =
        db.a.create(vec![
            json!({ "resourceType": "Task", "status": "requested", "intent": "proposal" }),
        ])
        .await
        .unwrap()
        .remove(0);
    let id = task["id"].as_str().unwrap().to_string();
    let mut accepted = task.clone();
    accepted["status"] = json!("accepted");
    db.a.update(accepted.clone(), Some(1)).await.unwrap();

    // Based on version 1, now at 2: refused whole, with its new resource and its audit.
    let mut rejected = task.clone();
    rejected["status"] = json!("rejected");
    let before =
        db.b.search(&search("AuditEvent", None))
            .await
            .unwrap()
            .total;
    let stale =
        db.b.transact(Transaction {
            creates: vec![json!({
                "resourceType": "Communication", "id": uuid::Uuid::now_v7().to_string(),
                "status": "completed"
            })],
            updates: vec![(rejected, 1)],
            audit: vec![json!({
                "resourceType": "AuditEvent", "recorded": format_instant(Utc::now())
            })],
            ..Default::default()
        })
        .await;
    match stale {
        Err(StoreError::VersionConflict {
            current, expected, ..
        }) => assert_eq!((current, expected), (2, 1)),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let stored = db.a.read("Task", &id).await.unwrap().unwrap();
    assert_eq!(stored["status"], "accepted");
    assert_eq!(
        db.a.read_version("Task", &id, 1).await.unwrap().unwrap()["status"],
        "requested",
        "the first version is kept in history"
    );
    assert_eq!(
        db.a.search(&search("Communication", None))
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        db.a.search(&search("AuditEvent", None))
            .await
            .unwrap()
            .total,
        before
    );
}

async fn searches_and_reads_see_only_the_parties_records(db: Instances) {
    let stored = refer(&*db.a, &db.config, "T-1", None).await.unwrap();
    let own =
        db.b.search(&search(
            "ServiceRequest",
            Some(Tenancy::Practice(PRACTICE.into())),
        ))
        .await
        .unwrap();
    assert_eq!(own.total, 1);
    let other =
        db.b.search(&search(
            "ServiceRequest",
            Some(Tenancy::Practice(
                "https://fhir.nhs.uk/Id/ods-organization-code|A99999".into(),
            )),
        ))
        .await
        .unwrap();
    assert_eq!((other.total, other.resources.len()), (0, 0));
    let parties =
        db.b.records_of("ServiceRequest", &stored.focus_id)
            .await
            .unwrap();
    assert_eq!(parties.len(), 1);
    assert_eq!(parties[0].practice.as_deref(), Some(PRACTICE));
    let candidates =
        db.a.search_candidates(&search("Patient", Some(Tenancy::Practice(PRACTICE.into()))))
            .await
            .unwrap();
    assert_eq!(candidates.len(), 1);
    let ids = vec![stored.focus_id.clone(), "missing".to_string()];
    assert_eq!(
        db.b.read_many("ServiceRequest", &ids).await.unwrap().len(),
        1
    );
}

async fn clients_and_assertions(db: Instances) {
    let id = ClientId::new("gp-1");
    let client = ClientRecord {
        id: id.clone(),
        role: whg::auth::Role::Practice,
        organisation: "C88901".into(),
        scopes: vec!["system/ServiceRequest.c".into()],
        jwks: Some(json!({ "keys": [] })),
        jwks_url: None,
        created_at: Utc::now().trunc_subsecs(6),
        revoked_at: None,
        test_tenant: true,
    };
    db.a.register_client(client.clone()).await.unwrap();
    assert!(matches!(
        db.b.register_client(client.clone()).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(db.b.client(&id).await.unwrap().as_ref(), Some(&client));
    let expires = Utc::now().timestamp() + 300;
    assert!(db.a.consume_assertion(&id, "jti-1", expires).await.unwrap());
    assert!(
        !db.b.consume_assertion(&id, "jti-1", expires).await.unwrap(),
        "an assertion used on one instance is a replay on the other"
    );
    assert!(db.b.revoke_client(&id).await.unwrap());
    assert!(!db.a.revoke_client(&id).await.unwrap());
    assert!(
        db.a.client(&id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
}

async fn quarantine_keeps_a_message_once(db: Instances) {
    let message = QuarantinedMessage {
        id: "20261201120000000000_ABCDEF".into(),
        sender: "X26OT001".into(),
        workflow_id: "GPFED_CONFIG_LOADER".into(),
        message_type: "DATA".into(),
        local_id: "junk".into(),
        received_at: Utc::now().trunc_subsecs(6),
        size: 5,
        reason: "unknown-workflow".into(),
        letter_id: None,
        has_content: true,
    };
    let audit = || json!({ "resourceType": "AuditEvent", "recorded": format_instant(Utc::now()) });
    assert!(
        db.a.quarantine_mesh_message(message.clone(), Some(b"hello".to_vec()), audit())
            .await
            .unwrap()
    );
    assert!(
        !db.b
            .quarantine_mesh_message(message.clone(), Some(b"hello".to_vec()), audit())
            .await
            .unwrap()
    );
    let (total, listed) = db.b.quarantined_mesh_messages(10, 0).await.unwrap();
    assert_eq!((total, listed), (1, vec![message.clone()]));
    let (_, content) =
        db.a.quarantined_mesh_message(&message.id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(content.as_deref(), Some(&b"hello"[..]));
    assert_eq!(audit_events(&db).await, 1, "audited once");
}

/// A database restarted or failed over under a live instance ends its sessions; the instance
/// goes on writing once the database is back, without a restart of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writes_go_on_after_the_database_ends_the_instances_sessions() {
    use sqlx::Connection;
    let Some(db) = postgres().await else { return };
    refer(&*db.a, &db.config, "S-1", None).await.unwrap();
    let database = url::Url::parse(&db.config.database_url).unwrap().path()[1..].to_string();
    let mut admin = sqlx::PgConnection::connect(&std::env::var("WHG_TEST_POSTGRES").unwrap())
        .await
        .unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(&database)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(
        ended >= 2,
        "the writer's and the readers' sessions ended ({ended})"
    );
    // The first write may find the session gone (and is refused as unavailable, to be retried);
    // one of the next few is stored.
    let mut stored = None;
    for attempt in 0..5 {
        match refer(&*db.a, &db.config, "S-2", None).await {
            Ok(s) => {
                stored = Some(s);
                break;
            }
            Err(StoreError::Unavailable(_)) if attempt < 4 => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(stored.unwrap().created);
    let all = db.a.search(&search("ServiceRequest", None)).await.unwrap();
    assert_eq!(all.total, 2);
}

/// One instance at a time reads the MESH inbox: the first to ask leads; the other is told no
/// until the leader's session ends (it stopped, or was killed), and then takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_instance_at_a_time_reads_the_mesh_inbox() {
    use whg::store::Singleton;
    let Some(db) = postgres().await else { return };
    let Instances { a, b, .. } = db;
    assert!(a.leads(Singleton::MeshInbox).await.unwrap());
    assert!(
        a.leads(Singleton::MeshInbox).await.unwrap(),
        "and keeps leading"
    );
    assert!(!b.leads(Singleton::MeshInbox).await.unwrap());
    a.close().await;
    drop(a);
    let started = std::time::Instant::now();
    while !b.leads(Singleton::MeshInbox).await.unwrap() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the other instance never took over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// SQLite: one process owns the database, so it always leads.
#[tokio::test]
async fn sqlite_the_only_instance_reads_the_mesh_inbox() {
    let db = sqlite().await;
    assert!(db.a.leads(whg::store::Singleton::MeshInbox).await.unwrap());
}
