//! Several gateway instances on one PostgreSQL database, as behind a load balancer: letters
//! delivered once between them through a `kill -9` and a receiver outage, one rate limit for a
//! client across them, and a revocation reaching all of them. PostgreSQL only (one process owns an
//! SQLite file): these tests run in the PostgreSQL pass of `scripts/test.sh`, and say so and pass
//! trivially on SQLite, where the pass that runs them does not exist.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::receiver::*;
use common::*;
use whg::auth::Principal;

/// Whether this run is on PostgreSQL; if not, says why the test does nothing.
fn on_postgres(test: &str) -> bool {
    let on = std::env::var_os(POSTGRES_ENV).is_some();
    if !on {
        eprintln!("{test}: several instances need PostgreSQL ({POSTGRES_ENV} unset); not run");
    }
    on
}

/// The letters both instances list as accepted by the practice's system.
async fn accepted(server: &Server) -> usize {
    let (status, list) = whs(server).get("/api/v1/letters?state=accepted").await;
    assert_eq!(status, 200, "{list}");
    list["total"].as_u64().unwrap() as usize
}

/// 1,000 letters written through two instances, which share the outbox. The receiver is down
/// (503) at first, so both instances hold and retry letters; then it recovers, and one instance
/// is killed with SIGKILL while it is sending. Every letter arrives, none is ever being sent by
/// two instances at once, and the survivor takes over the dead instance's letters when their
/// leases expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_deliver_a_thousand_letters_through_a_kill_9_and_a_receiver_outage() {
    if !on_postgres("two_instances_deliver_a_thousand_letters") {
        return;
    }
    let (receiver, url) = Receiver::start().await;
    // Each message takes a moment, so a letter sent by two instances at once would overlap.
    receiver.set_delay(Duration::from_millis(20));
    receiver.script(&[], Reply::Status(503));
    let tmp = tempfile::tempdir().unwrap();
    let config = letters_config(
        &url,
        tmp.path(),
        "concurrency = 8\n\n[limits]\nrequests_per_second_per_client = 100000.0\nburst_per_client = 100000.0\n",
    );
    let mut a = Server::start_with(&config);
    let b = a.start_beside();

    let referrals: Vec<String> = {
        let mut v = Vec::new();
        for n in 0..100 {
            let on = if n % 2 == 0 { &a } else { &b };
            v.push(accepted_referral(on, n).await.0);
        }
        v
    };
    // Ten letters a referral, written through both instances, sixteen at a time.
    let mut ids = HashSet::new();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(16) {
        let writes = chunk.iter().map(|&n| {
            let on = if n % 2 == 0 { &a } else { &b };
            let sr = &referrals[n / 10];
            async move {
                let (status, headers, body) = whs(on)
                    .post(
                        &format!("/api/v1/referrals/{sr}/letters"),
                        &letter("routine", &format!("Letter {n} of the two-instance run.")),
                    )
                    .await;
                assert_eq!(status, 201, "{body}");
                location_id(&headers)
            }
        });
        ids.extend(futures::future::join_all(writes).await);
    }
    assert_eq!(ids.len(), 1000);

    // Both instances attempt and fail for a while; then the receiver is back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        receiver.received().len() > 16,
        "both instances were attempting during the outage"
    );
    receiver.script(&[], Reply::Ok);
    let started = Instant::now();
    while receiver.delivered().len() < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "deliveries stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Mid-batch: instance A holds leases on the letters it is sending.
    a.kill();
    let killed_at = receiver.delivered().len();
    assert!(
        killed_at < 1000,
        "instance A was killed before the batch was done"
    );

    let started = Instant::now();
    while accepted(&b).await < 1000 {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{} of 1000 letters accepted after 180 s",
            accepted(&b).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let delivered: HashSet<String> = receiver
        .delivered()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(delivered.len(), 1000, "every letter arrived (0 lost)");
    assert_eq!(
        receiver.overlaps(),
        0,
        "no letter was being sent by two instances at the same time"
    );
    let logs = b.logs();
    assert!(!logs.contains(&nhs_number(3)), "no NHS number in the logs");
}

/// A client's rate limit is one allowance across the instances: what it spends on one, it cannot
/// spend again on the other.
#[tokio::test(flavor = "multi_thread")]
async fn a_clients_rate_limit_holds_across_instances() {
    if !on_postgres("a_clients_rate_limit_holds_across_instances") {
        return;
    }
    let a = Server::start_with(
        "[limits]\nrequests_per_second_per_client = 0.01\nburst_per_client = 10.0\n",
    );
    let b = a.start_beside();
    let gp = Principal::practice(DEFAULT_PRACTICE);
    for i in 0..10 {
        let on = if i % 2 == 0 { &a } else { &b };
        let (status, body) = on.as_(gp.clone()).get("/fhir/ServiceRequest").await;
        assert_eq!(status, 200, "request {i} is within the burst: {body}");
    }
    for on in [&a, &b] {
        let (status, body) = on.as_(gp.clone()).get("/fhir/ServiceRequest").await;
        assert_eq!(status, 429, "the burst is spent on both: {body}");
    }
    // Another client's allowance is its own.
    let (status, _) = b
        .as_(Principal::practice("A81001"))
        .get("/fhir/ServiceRequest")
        .await;
    assert_eq!(status, 200);
}

/// A client revoked through one instance's database is refused by every instance within one
/// revocation poll.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_client_is_refused_by_every_instance() {
    if !on_postgres("a_revoked_client_is_refused_by_every_instance") {
        return;
    }
    let a = Server::start();
    let b = a.start_beside();
    let key = a.config_path().with_file_name("gp-two.pem");
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let jwks = ok(a.whg(&["clients", "keygen", "--out", key.to_str().unwrap()]));
    let jwks_file = key.with_extension("jwks.json");
    std::fs::write(&jwks_file, jwks).unwrap();
    ok(a.whg(&[
        "clients",
        "add",
        "gp-two",
        "--role",
        "practice",
        "--org",
        "C88901",
        "--tenant",
        "test",
        "--jwks",
        jwks_file.to_str().unwrap(),
    ]));
    let token = ok(a.whg(&["token", "--client", "gp-two"]));
    let get = |on: &Server| {
        let url = on.url("/fhir/ServiceRequest");
        let token = token.clone();
        async move {
            http()
                .get(url)
                .bearer_auth(token)
                .header("accept", "application/fhir+json")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!((get(&a).await, get(&b).await), (200, 200));
    ok(b.whg(&["clients", "revoke", "gp-two"]));
    let started = Instant::now();
    loop {
        let (on_a, on_b) = (get(&a).await, get(&b).await);
        if (on_a, on_b) == (401, 401) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still answered {on_a} and {on_b} 10 s after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
