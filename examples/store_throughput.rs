//! Store throughput without HTTP: submits 4000 distinct referrals concurrently to the SQLite
//! store (synchronous = FULL) and reports referrals per second.
//!
//!   cargo run --release --example store_throughput
//!
//! `RUST_LOG=sqlx=debug` logs every statement with its time.

use std::time::Instant;
use whg::config::Config;
use whg::intake::practice_referral;
#[tokio::main]
async fn main() {
    let defaults = whg::config::Config::defaults();
    let _telemetry = whg::telemetry::init(&defaults.log, &defaults.telemetry);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.database_url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = whg::store::open(&config).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("fixtures/referrals/valid/01-gp-work-stress-off-sick.json")
            .unwrap(),
    )
    .unwrap();
    let ctx = config.intake_now();
    let n = 4000;
    let subs: Vec<_> = (0..n)
        .map(|i| {
            let mut r = v.clone();
            r["referralId"] = format!("P-{i}").into();
            practice_referral(&r, &ctx).unwrap()
        })
        .collect();
    let t = Instant::now();
    let futs: Vec<_> = subs
        .into_iter()
        .map(|s| {
            let st = store.clone();
            tokio::spawn(async move { st.submit(s, None).await.unwrap() })
        })
        .collect();
    for f in futs {
        f.await.unwrap();
    }
    let e = t.elapsed();
    println!(
        "{n} submissions in {:?}: {:.0}/s",
        e,
        n as f64 / e.as_secs_f64()
    );
    store.close().await;
}
