//! Load harness for durable referral (or fit-note) intake over HTTP.
//!
//! Starts the release `whg` binary on a loopback port with a fresh SQLite file (synchronous=FULL,
//! so every 201 is on disk), then sends a bounded number of distinct referrals from N concurrent
//! clients and reports throughput and latency. It stops by itself.
//!
//!   cargo build --release && cargo run --release --example load -- [REQUESTS] [CONCURRENCY] [fit-notes]
//!
//! Defaults: 20000 requests, 64 concurrent clients, referrals. With `fit-notes`, each person gets
//! four consecutive fortnightly fit notes (sent concurrently, in any order), so the history,
//! the three-month rule and the default services' prompt rules run on every one.

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
    let what = if fit_notes { "fit notes" } else { "referrals" };
    let root = env!("CARGO_MANIFEST_DIR");
    let binary = format!("{root}/target/release/whg");
    assert!(
        std::path::Path::new(&binary).exists(),
        "build the release binary first: cargo build --release"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("load.db").display());
    // A signing key of the run's own, and a token for the sending practice.
    let key_path = dir.path().join("signing-key.pem");
    let key = whg::auth::SigningKey::generate();
    key.save(&key_path).unwrap();
    let config_path = dir.path().join("load.toml");
    std::fs::write(
        &config_path,
        format!(
            // One client sends everything, far above a real client's rate limit.
            "[auth]\nsigning_key = {:?}\n[limits]\nrequests_per_second_per_client = 1000000.0\nburst_per_client = 1000000.0\n",
            key_path.display().to_string()
        ),
    )
    .unwrap();
    let token = whg::auth::TokenIssuer::new(key, &whg::config::Config::defaults().auth).issue(
        &whg::auth::Principal::practice("C88901"),
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
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..requests)
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
    let next = Arc::new(AtomicUsize::new(0));
    let url = if fit_notes {
        format!("{base}/api/v1/fit-notes")
    } else {
        format!("{base}/api/v1/referrals")
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, bodies, url) =
                (client.clone(), next.clone(), bodies.clone(), url.clone());
            let auth = format!("Bearer {token}");
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        break;
                    }
                    let t = Instant::now();
                    let ok = client
                        .post(&url)
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .body(bodies[i].clone())
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 201);
                    latencies.push(t.elapsed());
                    if !ok {
                        failures += 1;
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    let mut failures = 0;
    for w in workers {
        let (l, f) = w.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("requests: {requests}, concurrency: {concurrency}, failures: {failures}");
    println!(
        "elapsed: {:.2} s, throughput: {:.0} durable {what}/s",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {:?}  p95 {:?}  p99 {:?}  max {:?}",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(failures, 0, "every request should have been stored");
}
