//! Backup and restore (`whg backup`, `whg restore`; docs/operations-backup.md), on whichever
//! backend the suite runs on: a backup taken while referrals arrive, the database wiped, the
//! backup restored, and everything acknowledged before the backup began is there again, letters,
//! their outbox rows and the audit trail included; the outbox resumes where the backup left it.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::receiver::{WHS, accepted_referral, letter, whs};
use common::*;
use serde_json::{Value, json};
use whg::auth::{Principal, Role};

/// A GP system's BaRS endpoint that is up (200) or down (503), and counts the distinct messages
/// it took.
#[derive(Clone, Default)]
struct Receiver {
    down: Arc<AtomicBool>,
    taken: Arc<Mutex<BTreeSet<String>>>,
    attempts: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/fhir/$process-message",
            axum::routing::post(move |headers: HeaderMap| {
                let r = state.clone();
                async move {
                    r.attempts.fetch_add(1, Ordering::SeqCst);
                    if r.down.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    let id = headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    r.taken.lock().unwrap().insert(id);
                    let outcome = json!({ "resourceType": "OperationOutcome", "issue": [{ "severity": "information", "code": "informational" }] });
                    (StatusCode::OK, axum::Json(outcome)).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn taken(&self) -> usize {
        self.taken.lock().unwrap().len()
    }
}

/// A gateway whose practice C88901 takes letters at the receiver, retrying quickly.
fn gateway(receiver_url: &str) -> Server {
    Server::start_with(&format!(
        r#"
[delivery]
initial_backoff_ms = 100
max_backoff_ms = 400
attempt_timeout_ms = 1000
poll_interval_ms = 100

[directory.C88901]
channel = "fhir"
name = "Porter Brook Surgery"
endpoint = "{receiver_url}/fhir"
"#
    ))
}

fn gp(server: &Server) -> Actor<'_> {
    server.as_(Principal::practice(DEFAULT_PRACTICE))
}

/// A letter to the GP on an accepted referral for person `n`; returns the letter's id.
async fn letter_on_new_referral(server: &Server, n: usize, summary: &str) -> String {
    let (sr, _) = accepted_referral(server, n).await;
    let (status, headers, body) = whs(server)
        .post(
            &format!("/api/v1/referrals/{sr}/letters"),
            &letter("routine", summary),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    location_id(&headers)
}

/// The letter's status document: its outbox row (`delivery`) and its attempts.
async fn letter_state(server: &Server, id: &str) -> Value {
    let (status, body) = whs(server).get(&format!("/api/v1/letters/{id}")).await;
    assert_eq!(status, 200, "letter {id}: {body}");
    body
}

/// Waits until the letter's outbox row satisfies `done`; returns its status document.
async fn wait_for_letter(server: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let state = letter_state(server, id).await;
        if done(&state) {
            return state;
        }
        assert!(
            Instant::now() < until,
            "letter {id} not there in time: {state:#}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn delivery_state(letter: &Value) -> &str {
    letter["delivery"]["state"].as_str().unwrap_or_default()
}

/// The ids of every AuditEvent, read page by page as information governance.
async fn audit_event_ids(server: &Server) -> BTreeSet<String> {
    let ig = server.as_(Principal::new(Role::InformationGovernance, "ig-team"));
    let mut ids = BTreeSet::new();
    let mut offset = 0;
    loop {
        let (status, page) = ig
            .get(&format!("/fhir/AuditEvent?_count=100&_offset={offset}"))
            .await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entry"].as_array().cloned().unwrap_or_default();
        offset += entries.len();
        ids.extend(
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string()),
        );
        if entries.len() < 100 {
            return ids;
        }
    }
}

/// The ids of the AuditEvents in the database, as one read sees them.
async fn stored_audit_event_ids(server: &Server) -> BTreeSet<String> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM resources WHERE resource_type = 'AuditEvent'")
            .fetch_all(&mut server.db().await)
            .await
            .unwrap();
    ids.into_iter().collect()
}

/// A referral the gateway acknowledged (201): the person's number, the ServiceRequest's id and
/// when the answer came.
#[derive(Debug, Clone)]
struct Acknowledged {
    n: usize,
    service_request: String,
    at: Instant,
}

/// Posts referrals for people `first..` one after another until `stop`, recording each one
/// acknowledged.
async fn keep_referring(
    server: &Server,
    first: usize,
    stop: &AtomicBool,
    acknowledged: &Mutex<Vec<Acknowledged>>,
) {
    let token = server.token(&Principal::practice(DEFAULT_PRACTICE));
    let mut n = first;
    while !stop.load(Ordering::SeqCst) {
        let body = referral_for(n, WHS);
        assert_eq!(sender_practice(&body).as_deref(), Some(DEFAULT_PRACTICE));
        let r = server
            .client
            .post(server.url("/api/v1/referrals"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/fhir+json")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .expect("request");
        let (status, headers, outcome) = read_response(r).await;
        assert_eq!(status, 201, "{outcome}");
        acknowledged.lock().unwrap().push(Acknowledged {
            n,
            service_request: location_id(&headers),
            at: Instant::now(),
        });
        n += 1;
    }
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_referrals_arrive_restores_everything_acknowledged_before_it() {
    let (receiver, url) = Receiver::start().await;
    let mut server = gateway(&url);

    // Referrals, and a letter the practice's system took.
    for n in 0..10 {
        refer(&server, &referral_for(n, WHS)).await;
    }
    let delivered = letter_on_new_referral(&server, 10, "Delivered before the backup.").await;
    let before = wait_for_letter(&server, &delivered, |l| delivery_state(l) == "accepted").await;
    assert_eq!(receiver.taken(), 1);
    // A letter still waiting in the outbox: the practice's system is down.
    receiver.set_down(true);
    let attempts_so_far = receiver.attempts.load(Ordering::SeqCst);
    let queued = letter_on_new_referral(&server, 11, "Queued at the time of the backup.").await;
    let waiting = wait_for_letter(&server, &queued, |l| {
        l["attempts"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(delivery_state(&waiting), "queued", "{waiting:#}");
    assert!(receiver.attempts.load(Ordering::SeqCst) > attempts_so_far);
    let audited = audit_event_ids(&server).await;
    assert!(!audited.is_empty());

    // The backup, while referrals keep arriving.
    let backup_file = server.dir.path().join("backups/whg.backup");
    let stop = AtomicBool::new(false);
    let acknowledged = Mutex::new(Vec::<Acknowledged>::new());
    let count = || acknowledged.lock().unwrap().len();
    let backing_up = async {
        wait_until("referrals to arrive", || count() >= 5).await;
        // All of these were committed before the backup began.
        let stored_audit = stored_audit_event_ids(&server).await;
        let acknowledged_before: Vec<Acknowledged> = acknowledged.lock().unwrap().clone();
        let began = Instant::now();
        let command = backup_command(&server, &backup_file);
        let out = tokio::task::spawn_blocking(move || run(command))
            .await
            .unwrap();
        let finished = Instant::now();
        // Referrals went on arriving during the backup, and one more after it.
        wait_until("a referral after the backup", || {
            acknowledged.lock().unwrap().last().unwrap().at > finished
        })
        .await;
        stop.store(true, Ordering::SeqCst);
        (out, began, finished, acknowledged_before, stored_audit)
    };
    let (_, (out, began, finished, acknowledged_before, stored_audit)) = tokio::join!(
        keep_referring(&server, 100, &stop, &acknowledged),
        backing_up
    );
    assert!(out.0, "whg backup failed: {}", out.1);
    assert!(out.1.contains("backed up"), "{}", out.1);
    if let Some(password) = url::Url::parse(&server.database_url())
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        assert!(!out.1.contains(&password), "the password is never shown");
    }
    let acknowledged = acknowledged.into_inner().unwrap();
    let during = acknowledged
        .iter()
        .filter(|a| a.at > began && a.at < finished)
        .count();
    let after: Vec<&Acknowledged> = acknowledged.iter().filter(|a| a.at > finished).collect();
    assert!(!after.is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the backup holds personal data");
    }

    // The gateway stops, the database is lost, and the backup is restored.
    server.stop();
    server.wipe_database();
    let refused = server.whg(&["backup", "--to", backup_file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "a backup never overwrites");
    let restored = server.whg(&["restore", "--from", backup_file.to_str().unwrap()]);
    assert!(
        restored.status.success(),
        "whg restore failed: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let again = server.whg(&["restore", "--from", backup_file.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a database that holds data is replaced only with --force: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    server.start_again();

    // Every referral acknowledged before the backup began is there.
    for a in &acknowledged_before {
        let (status, sr) = gp(&server)
            .get(&format!("/fhir/ServiceRequest/{}", a.service_request))
            .await;
        assert_eq!(status, 200, "referral {} is lost: {sr}", a.n);
    }
    // One acknowledged after it finished is not: this is the backup's database, not the old one.
    for a in &after {
        let (status, _) = gp(&server)
            .get(&format!("/fhir/ServiceRequest/{}", a.service_request))
            .await;
        assert_eq!(status, 404, "referral {} came after the backup", a.n);
    }
    // The audit trail: as information governance reads it, and as stored.
    let audited_now = audit_event_ids(&server).await;
    assert!(
        audited.is_subset(&audited_now),
        "AuditEvents lost: {:?}",
        audited.difference(&audited_now).collect::<Vec<_>>()
    );
    let stored_now = stored_audit_event_ids(&server).await;
    assert!(
        stored_audit.is_subset(&stored_now),
        "{} AuditEvents lost",
        stored_audit.difference(&stored_now).count()
    );
    // The letters and their outbox rows: the delivered one stays delivered and is not sent
    // again; the queued one goes once the practice's system is back.
    let restored_delivered = letter_state(&server, &delivered).await;
    assert_eq!(delivery_state(&restored_delivered), "accepted");
    assert_eq!(restored_delivered["attempts"], before["attempts"]);
    receiver.set_down(false);
    let sent = wait_for_letter(&server, &queued, |l| delivery_state(l) == "accepted").await;
    assert_eq!(sent["communication"]["status"], "completed", "{sent:#}");
    assert_eq!(receiver.taken(), 2, "each letter taken once");
    eprintln!(
        "backed up with {} referrals acknowledged before, {during} during and {} after the backup",
        acknowledged_before.len(),
        after.len()
    );
}

/// `whg backup --to FILE` for the server's database.
fn backup_command(server: &Server, file: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(WHG);
    command
        .args(["backup", "--to"])
        .arg(file)
        .arg("--config")
        .arg(server.config_path())
        .arg("--database-url")
        .arg(server.database_url());
    command
}

/// Runs a command; whether it succeeded, and what it wrote to standard error.
fn run(mut command: std::process::Command) -> (bool, String) {
    let out = command.output().expect("run whg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
