//! Load harness for durable referral (or fit-note) intake over HTTP.
//!
//! Starts the release `whg` binary on a loopback port with a fresh SQLite file (synchronous=FULL,
//! so every 201 is on disk), then sends a bounded number of distinct referrals from N concurrent
//! clients and reports throughput and latency. It stops by itself.
//!
//!   cargo build --release && cargo run --release --example load -- [REQUESTS] [CONCURRENCY] [fit-notes|letters]
//!
//! The gateway stores on a fresh SQLite file, or, with `WHG_LOAD_POSTGRES` set to a PostgreSQL
//! server's admin URL (`postgres://whg@127.0.0.1:5432/postgres`), on a fresh database there;
//! `scripts/load-both.sh` runs the same load on each, one after the other, for figures side by
//! side.
//!
//! Defaults: 20000 requests, 64 concurrent clients, referrals. With `fit-notes`, each person gets
//! four consecutive fortnightly fit notes (sent concurrently, in any order), so the history,
//! the three-month rule and the default services' prompt rules run on every one. With `letters`,
//! REQUESTS/10 referrals are made and accepted first; then REQUESTS adviser letters are written
//! (each rendered as PDF and queued durably) and delivered by the outbox to a FHIR receiver in
//! this process: it reports the rate letters are taken and the rate they are delivered.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let fit_notes = args.get(3).is_some_and(|a| a == "fit-notes");
    let letters = args.get(3).is_some_and(|a| a == "letters");
    let what = if fit_notes { "fit notes" } else { "referrals" };
    // The practice's system, taking letters: counts what it receives (each message once).
    let received = Arc::new(std::sync::Mutex::new(
        std::collections::HashSet::<String>::new(),
    ));
    let receiver_url = if letters {
        let seen = received.clone();
        let app = axum::Router::new().route(
            "/fhir/$process-message",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let seen = seen.clone();
                async move {
                    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
                        seen.lock().unwrap().insert(id.to_string());
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Some(url)
    } else {
        None
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let binary = format!("{root}/target/release/whg");
    assert!(
        std::path::Path::new(&binary).exists(),
        "build the release binary first: cargo build --release"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = match std::env::var("WHG_LOAD_POSTGRES") {
        Ok(admin) => fresh_postgres_database(&admin).await,
        Err(_) => format!("sqlite://{}", dir.path().join("load.db").display()),
    };
    println!(
        "backend: {}",
        if db.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        }
    );
    // A signing key of the run's own, and a token for the sending practice.
    let key_path = dir.path().join("signing-key.pem");
    let key = whg::auth::SigningKey::generate();
    key.save(&key_path).unwrap();
    let config_path = dir.path().join("load.toml");
    std::fs::write(
        &config_path,
        format!(
            // One client sends everything, far above a real client's rate limit.
            "[auth]\nsigning_key = {:?}\n[limits]\nrequests_per_second_per_client = 1000000.0\nburst_per_client = 1000000.0\n{}",
            key_path.display().to_string(),
            receiver_url.as_ref().map_or(String::new(), |url| format!(
                "[delivery]\nconcurrency = 16\npoll_interval_ms = 50\n[directory.C88901]\nchannel = \"fhir\"\nendpoint = \"{url}/fhir\"\n"
            ))
        ),
    )
    .unwrap();
    let issuer = whg::auth::TokenIssuer::new(key, &whg::config::Config::defaults().auth);
    let token = issuer.issue(
        &whg::auth::Principal::practice("C88901"),
        Duration::from_secs(3600),
    );
    let service_token = issuer.issue(
        &whg::auth::Principal::service("sheffield-whs"),
        Duration::from_secs(3600),
    );
    let mut child = Command::new(&binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db,
            "--config",
        ])
        .arg(&config_path)
        .env(
            "RUST_LOG",
            std::env::var("WHG_LOAD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(if std::env::var("WHG_LOAD_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("whg listening on ")
        .expect("server start line")
        .to_string();

    let fixture = if fit_notes {
        "fit-notes/valid/07-all-four-adjustments"
    } else {
        "referrals/valid/01-gp-work-stress-off-sick"
    };
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/fixtures/{fixture}.json")).unwrap(),
    )
    .unwrap();
    // Distinct people, as in real intake: synthetic 999-range NHS numbers that pass Modulus 11.
    let mut nhs_numbers = (0u64..)
        .map(|i| format!("999{:07}", i))
        .filter(|n| whg::fhir::identifiers::nhs_number(n).is_ok());
    let mut person = String::new();
    let referrals = if letters {
        requests.div_ceil(10)
    } else {
        requests
    };
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..referrals)
            .map(|i| {
                let mut r = template.clone();
                if fit_notes {
                    let first = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
                    let from = first + chrono::Days::new(14 * (i % 4) as u64);
                    let from_text = Value::from(from.to_string());
                    r["fitNoteId"] = Value::from(format!("LOAD-{i:07}"));
                    if i % 4 == 0 {
                        person = nhs_numbers.next().unwrap();
                    }
                    r["patient"] = serde_json::json!({ "nhsNumber": person });
                    r["issuedOn"] = from_text.clone();
                    r["assessment"]["date"] = from_text.clone();
                    r["period"] = serde_json::json!({ "from": from_text, "to": (from + chrono::Days::new(13)).to_string() });
                } else {
                    r["referralId"] = Value::from(format!("LOAD-{i:07}"));
                    r["patient"]["nhsNumber"] = Value::from(nhs_numbers.next().unwrap());
                }
                serde_json::to_vec(&r).unwrap()
            })
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let url = if fit_notes {
        format!("{base}/api/v1/fit-notes")
    } else {
        format!("{base}/api/v1/referrals")
    };
    let bodies: Vec<(String, Vec<u8>)> = bodies.iter().map(|b| (url.clone(), b.clone())).collect();
    let run = send_all(&client, &token, bodies, concurrency).await;
    if !letters {
        run.report(what, concurrency);
    } else {
        // Accept every referral, then write the letters, spread over the referrals.
        let referral_ids: Vec<String> = run
            .locations
            .iter()
            .map(|l| l.rsplit('/').next().unwrap().to_string())
            .collect();
        run.expect(201);
        let triage: Vec<(String, Vec<u8>)> = referral_ids
            .iter()
            .map(|id| {
                (
                    format!("{base}/api/v1/referrals/{id}/triage"),
                    br#"{"decision":"accept"}"#.to_vec(),
                )
            })
            .collect();
        send_all(&client, &service_token, triage, concurrency)
            .await
            .expect(200);
        let letter = std::fs::read(format!(
            "{root}/fixtures/letters/02-letter-returned-to-work.json"
        ))
        .unwrap();
        let posts: Vec<(String, Vec<u8>)> = (0..requests)
            .map(|i| {
                (
                    format!(
                        "{base}/api/v1/referrals/{}/letters",
                        referral_ids[i % referral_ids.len()]
                    ),
                    letter.clone(),
                )
            })
            .collect();
        let started = Instant::now();
        let written = send_all(&client, &service_token, posts, concurrency).await;
        written.report("letters written (PDF rendered, queued)", concurrency);
        while received.lock().unwrap().len() < requests {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "letters not delivered in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        println!(
            "delivered: {requests} letters to the practice's FHIR endpoint {:.2} s after the first was written: {:.0} letters/s end to end",
            elapsed.as_secs_f64(),
            requests as f64 / elapsed.as_secs_f64()
        );
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// What one phase of the run measured.
struct Run {
    latencies: Vec<Duration>,
    failures: usize,
    elapsed: Duration,
    statuses: Vec<u16>,
    /// The `Location` of each stored resource.
    locations: Vec<String>,
}

impl Run {
    fn report(mut self, what: &str, concurrency: usize) {
        let requests = self.latencies.len();
        self.latencies.sort();
        let l = &self.latencies;
        let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
        println!(
            "requests: {requests}, concurrency: {concurrency}, failures: {}",
            self.failures
        );
        println!(
            "elapsed: {:.2} s, throughput: {:.0} durable {what}/s",
            self.elapsed.as_secs_f64(),
            requests as f64 / self.elapsed.as_secs_f64()
        );
        println!(
            "latency p50 {:?}  p95 {:?}  p99 {:?}  max {:?}",
            pct(0.50),
            pct(0.95),
            pct(0.99),
            l[l.len() - 1]
        );
        assert_eq!(self.failures, 0, "every request should have been stored");
    }

    fn expect(&self, status: u16) {
        assert!(
            self.statuses.iter().all(|s| *s == status),
            "statuses {:?}",
            &self.statuses[..self.statuses.len().min(5)]
        );
    }
}

/// Posts every `(url, body)` from `concurrency` clients; a 201 counts as stored.
async fn send_all(
    client: &reqwest::Client,
    token: &str,
    bodies: Vec<(String, Vec<u8>)>,
    concurrency: usize,
) -> Run {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, bodies) = (client.clone(), next.clone(), bodies.clone());
            let auth = format!("Bearer {token}");
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut statuses = Vec::new();
                let mut locations = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        break;
                    }
                    let t = Instant::now();
                    let response = client
                        .post(&bodies[i].0)
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .body(bodies[i].1.clone())
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    latencies.push(t.elapsed());
                    let status = response.as_ref().map_or(0, |r| r.status().as_u16());
                    if let Some(l) = response.ok().and_then(|r| {
                        r.headers()
                            .get("location")?
                            .to_str()
                            .ok()
                            .map(str::to_string)
                    }) {
                        locations.push(l);
                    }
                    statuses.push(status);
                }
                (latencies, statuses, locations)
            })
        })
        .collect();
    let mut run = Run {
        latencies: Vec::new(),
        failures: 0,
        elapsed: Duration::ZERO,
        statuses: Vec::new(),
        locations: Vec::new(),
    };
    for w in workers {
        let (l, s, loc) = w.await.unwrap();
        run.latencies.extend(l);
        run.statuses.extend(s);
        run.locations.extend(loc);
    }
    run.elapsed = started.elapsed();
    run.failures = run.statuses.iter().filter(|s| **s != 201).count();
    run
}

/// Creates `whg_load_<random>` on the PostgreSQL server `admin` names; returns its URL.
async fn fresh_postgres_database(admin: &str) -> String {
    use sqlx::Connection;
    let name = format!("whg_load_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(admin).unwrap();
    url.set_path(&name);
    url.to_string()
}
