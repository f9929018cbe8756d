//! What an integrator is given, run as they would run it: `whg mock-practice` taking the
//! gateway's letters in each of its modes, the Python example client signing an assertion and
//! sending a referral, and the Postman collection's whole journey under newman.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use whg::auth::Principal;

const WHS: &str = "sheffield-whs";

/// A `whg mock-practice` on a port of its own: the process and its FHIR base.
struct MockPractice {
    child: Child,
    base: String,
}

impl MockPractice {
    fn start(args: &[&str]) -> MockPractice {
        let mut child = Command::new(WHG)
            .args(["mock-practice", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        // "mock practice listening on http://127.0.0.1:PORT (FHIR base http://127.0.0.1:PORT/fhir, …"
        let base = first
            .split("FHIR base ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        // Keep reading its output, so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        MockPractice { child, base }
    }

    fn root(&self) -> String {
        self.base.trim_end_matches("/fhir").to_string()
    }

    async fn set_mode(&self, mode: &str) {
        let r = http()
            .put(format!("{}/mode", self.root()))
            .body(mode.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "mode {mode}");
    }

    async fn received(&self) -> Value {
        http_get(format!("{}/received", self.root()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for MockPractice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway whose test organisations deliver to `practice` (the embedded defaults' route, at
/// the mock's port), retrying quickly.
fn gateway_for(practice: &MockPractice) -> Server {
    Server::start_with(&format!(
        "[test_tenant]\npractice_endpoint = {:?}\n[delivery]\ninitial_backoff_ms = 100\nmax_backoff_ms = 200\npoll_interval_ms = 50\nattempt_timeout_ms = 1000\n",
        practice.base
    ))
}

async fn letter_to_practice(server: &Server, n: usize) -> String {
    let (sr, _) = refer(server, &referral_for(n, WHS)).await;
    let whs = server.as_(Principal::service(WHS));
    let (status, _, state) = whs
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    let letter = read_json(&root().join("fixtures/letters/02-letter-returned-to-work.json"));
    let (status, headers, body) = whs
        .post(&format!("/api/v1/referrals/{sr}/letters"), &letter)
        .await;
    assert_eq!(status, 201, "{body}");
    location_id(&headers)
}

async fn letter_state(server: &Server, id: &str, wanted: &str) -> Value {
    let whs = server.as_(Principal::service(WHS));
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, letter) = whs.get(&format!("/api/v1/letters/{id}")).await;
        if letter["delivery"]["state"] == wanted || Instant::now() > until {
            assert_eq!(letter["delivery"]["state"], wanted, "{letter}");
            return letter;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mock_practice_takes_letters_and_its_modes_show_what_the_gateway_does() {
    let practice = MockPractice::start(&["--mode", "down"]);
    let server = gateway_for(&practice);

    // Down: the gateway retries, and says why.
    let id = letter_to_practice(&server, 1).await;
    let whs = server.as_(Principal::service(WHS));
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, letter) = whs.get(&format!("/api/v1/letters/{id}")).await;
        if letter["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(letter["delivery"]["state"], "queued", "{letter}");
            assert!(letter.to_string().contains("HTTP 503"), "{letter}");
            break;
        }
        assert!(Instant::now() < until, "no attempt: {letter}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Up again: the next attempt delivers it, acknowledged by the practice's response message.
    practice.set_mode("accept").await;
    letter_state(&server, &id, "accepted").await;
    let received = practice.received().await;
    assert_eq!(received["total"], 1, "{received}");
    let record = &received["received"][0];
    assert_eq!(record["event"], "servicerequest-response", "{record}");
    assert!(
        record["documents"]
            .to_string()
            .contains("DocumentReference"),
        "{record}"
    );
    // Ids, events and document types only: nothing about the person.
    let patient = referral_for(1, WHS)["patient"].clone();
    assert!(
        !received
            .to_string()
            .contains(patient["nhsNumber"].as_str().unwrap())
    );

    // Rejecting: the letter is rejected, with the practice's words kept as its error.
    practice.set_mode("reject").await;
    let id = letter_to_practice(&server, 2).await;
    let letter = letter_state(&server, &id, "rejected").await;
    assert!(letter.to_string().contains("HTTP 422"), "{letter}");

    // Slow: longer than the gateway waits, so the attempt times out and is retried.
    practice.set_mode("slow").await;
    let id = letter_to_practice(&server, 3).await;
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, letter) = whs.get(&format!("/api/v1/letters/{id}")).await;
        if letter["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(
                letter["delivery"]["state"], "queued",
                "retried after a timeout: {letter}"
            );
            break;
        }
        assert!(Instant::now() < until, "no attempt: {letter}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        practice.received().await["total"],
        1,
        "the slow one was not taken yet"
    );

    // What a practice system answers to what is not a letter.
    let client = http();
    practice.set_mode("accept").await;
    let r = client
        .post(format!("{}/$process-message", practice.base))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Bundle","type":"collection"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .put(format!("{}/mode", practice.root()))
        .body("sideways")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

/// examples/python/whg_client.py, as its README runs it: a client registered with the CLI signs
/// an assertion, gets a token and sends a referral; then a broken one is refused, with exit 1.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_example_client_signs_an_assertion_and_sends_a_referral() {
    let server = Server::start();
    let key = test_client(&server, "py-gp", DEFAULT_PRACTICE);
    let client = |fixture: &str| {
        Command::new(python())
            .arg(root().join("examples/python/whg_client.py"))
            .args([
                "--base-url",
                &server.base,
                "--client-id",
                "py-gp",
                "--key",
                key.to_str().unwrap(),
            ])
            .args(["send-referral", root().join(fixture).to_str().unwrap()])
            .output()
            .unwrap()
    };
    let sent = client("fixtures/referrals/valid/01-gp-work-stress-off-sick.json");
    let said =
        String::from_utf8_lossy(&sent.stdout).to_string() + &String::from_utf8_lossy(&sent.stderr);
    assert!(sent.status.success(), "{said}");
    assert!(said.contains("201"), "{said}");
    let (_, found) = server.get("/fhir/ServiceRequest").await;
    assert_eq!(found["total"], 1, "{found}");
    let refused = client("fixtures/referrals/invalid/18-several-problems-at-once.json");
    let said = String::from_utf8_lossy(&refused.stdout).to_string();
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("422"), "{said}");
}

/// examples/postman's collection, run by newman (pinned in tools/conformance): the whole journey
/// with its own assertions on every answer.
#[tokio::test(flavor = "multi_thread")]
async fn the_postman_collection_runs_the_whole_journey() {
    let server = Server::start();
    let practice = server.token(&Principal::practice(DEFAULT_PRACTICE));
    let service = server.token(&Principal::service(WHS));
    let newman = root().join("tools/conformance/node_modules/.bin/newman");
    assert!(
        newman.exists(),
        "run `npm ci --prefix tools/conformance` (scripts/test.sh does)"
    );
    let out = Command::new(newman)
        .arg("run")
        .arg(root().join("examples/postman/whg.postman_collection.json"))
        .args(["--env-var", &format!("baseUrl={}", server.base)])
        .args(["--env-var", &format!("practiceToken={practice}")])
        .args(["--env-var", &format!("serviceToken={service}")])
        .args(["--reporters", "cli", "--color", "off"])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("assertions"), "{said}");
}

fn whg_validate(args: &[&str], stdin: Option<&[u8]>) -> (i32, String) {
    let mut child = Command::new(WHG)
        .arg("validate")
        .args(args)
        .current_dir(root())
        .env_remove("WHG_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said)
}

/// `whg validate`: standard input, directories, every body the API takes, a person's output by
/// default and the API's JSON with --json; and --online, where the gateway applies the caller's
/// tenancy as well.
#[tokio::test(flavor = "multi_thread")]
async fn whg_validate_reads_stdin_and_directories_and_checks_every_body_online_too() {
    let valid =
        std::fs::read(root().join("fixtures/referrals/valid/01-gp-work-stress-off-sick.json"))
            .unwrap();
    let (code, said) = whg_validate(&["referral"], Some(&valid));
    assert_eq!(code, 0, "{said}");
    assert!(
        said.starts_with("valid    standard input: referral, maps to"),
        "{said}"
    );
    let (code, said) = whg_validate(&["referral", "-"], Some(b"{\"referralId\": "));
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("not well-formed JSON"), "{said}");

    // A directory: each file, every problem with its field, then the count.
    let invalid: Vec<_> = fixtures("referrals/invalid");
    let (code, said) = whg_validate(&["referral", "fixtures/referrals/invalid"], None);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(&format!("0 valid, {} invalid", invalid.len())),
        "{said}"
    );
    assert!(
        said.contains("invalid  fixtures/referrals/invalid/18-several-problems-at-once.json: "),
        "{said}"
    );
    assert!(
        said.contains("  patient.nhsNumber ["),
        "a problem names its field: {said}"
    );
    assert!(!said.contains(".expected.json"), "{said}");
    let (code, said) = whg_validate(
        &[
            "referral",
            "--json",
            "fixtures/referrals/valid",
            "fixtures/referrals/invalid/01-nhs-number-check-digit.json",
        ],
        None,
    );
    assert_eq!(code, 1);
    let lines: Vec<Value> = said
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), fixtures("referrals/valid").len() + 1);
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["valid"] == true && l["result"]["resourceType"] == "Bundle"),
        "{said}"
    );
    assert_eq!(
        lines.last().unwrap()["result"]["resourceType"],
        "OperationOutcome"
    );

    // Every body the API takes.
    for (kind, path, extra, ok) in [
        (
            "consent",
            "fixtures/consent/valid",
            vec!["--as", "practice:C88901"],
            0,
        ),
        ("fit-note", "fixtures/fit-notes/valid", vec![], 0),
        ("fit-note", "fixtures/fit-notes/invalid", vec![], 1),
        ("message", "fixtures/messages/valid", vec![], 0),
        ("message", "fixtures/messages/cancellations", vec![], 0),
        (
            "letter",
            "fixtures/letters/02-letter-returned-to-work.json",
            vec![],
            0,
        ),
        (
            "letter",
            "fixtures/letters/16-invalid-letter-bad-codes.json",
            vec![],
            1,
        ),
    ] {
        let mut args = vec![kind, path];
        args.extend(extra);
        let (code, said) = whg_validate(&args, None);
        assert_eq!(code, ok, "{kind} {path}: {said}");
    }
    let (code, said) = whg_validate(&["consent", "fixtures/consent/valid"], None);
    assert_eq!(code, 1, "a Consent's author must be named offline: {said}");
    assert!(said.contains("--as"), "{said}");
    for (kind, body, field) in [
        (
            "contact",
            r#"{"date": "07/05/2026", "channel": "phone"}"#,
            "date",
        ),
        (
            "support",
            r#"{"date": "2099-01-01", "codes": ["return-to-work-plan"]}"#,
            "date",
        ),
        ("support", r#"{"date": "2026-05-07"}"#, "codes"),
        ("triage", r#"{"decision": "maybe"}"#, "decision"),
    ] {
        let (code, said) = whg_validate(&[kind], Some(body.as_bytes()));
        assert_eq!(code, 1, "{kind}: {said}");
        assert!(said.contains(&format!("  {field} [")), "{kind}: {said}");
    }
    let (code, said) = whg_validate(
        &["discharge"],
        Some(br#"{"date": "2026-05-07", "employmentOutcome": "returned-to-work"}"#),
    );
    assert_eq!(code, 0, "{said}");

    // Online: the gateway's own checks, with the caller's tenancy.
    let server = Server::start();
    let gp = server.token(&Principal::practice(DEFAULT_PRACTICE));
    let other = server.token(&Principal::practice("C88999"));
    let file = "fixtures/referrals/valid/01-gp-work-stress-off-sick.json";
    let (code, said) = whg_validate(
        &["referral", file, "--online", &server.base, "--token", &gp],
        None,
    );
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("passes the gateway's checks for its sender"),
        "{said}"
    );
    let (code, said) = whg_validate(
        &[
            "referral",
            file,
            "--online",
            &server.base,
            "--token",
            &other,
        ],
        None,
    );
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("practice.odsCode [forbidden]"), "{said}");
    let (code, said) = whg_validate(
        &[
            "message",
            "fixtures/messages/valid/01-bars-referral-current-forms.json",
            "--online",
            &server.base,
            "--token",
            &server.token(&Principal::practice("C88902")),
        ],
        None,
    );
    assert_eq!(code, 0, "{said}");
    let (code, said) = whg_validate(
        &["triage", "--online", &server.base, "--token", &gp],
        Some(br#"{"decision": "accept"}"#),
    );
    assert_eq!(code, 2, "{said}");
    let (code, said) = whg_validate(&["referral", file, "--online", &server.base], None);
    assert_eq!(code, 2, "no token: {said}");
    // Nothing stored.
    assert_eq!(server.get("/fhir/ServiceRequest").await.1["total"], 0);
}

/// A registered test-tenant client for `org`, made with the CLI: (client id, private key file).
fn test_client(server: &Server, id: &str, org: &str) -> std::path::PathBuf {
    let key = server.config_path().with_file_name(format!("{id}.pem"));
    let out = server.whg(&["clients", "keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    let jwks = key.with_extension("jwks.json");
    std::fs::write(&jwks, &out.stdout).unwrap();
    let out = server.whg(&[
        "clients",
        "add",
        id,
        "--role",
        "practice",
        "--org",
        org,
        "--tenant",
        "test",
        "--jwks",
        jwks.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    key
}

fn conformance(args: &[&str]) -> (i32, String) {
    let out = Command::new(WHG)
        .arg("conformance")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said)
}

/// A gateway with one thing broken, as a faulty build would be: a proxy that answers 400 where
/// the gateway answered 422. Everything else passes through unchanged.
async fn broken_gateway(upstream: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
            let mut out = http.request(
                parts.method,
                format!(
                    "{upstream}{}",
                    parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/")
                ),
            );
            for (k, v) in &parts.headers {
                if k != "host" && k != "content-length" {
                    out = out.header(k, v);
                }
            }
            let answer = out.body(body).send().await.unwrap();
            let status = match answer.status().as_u16() {
                422 => 400,
                s => s,
            };
            let mut response = axum::response::Response::builder().status(status);
            for (k, v) in answer.headers() {
                if k != "content-length" && k != "transfer-encoding" {
                    response = response.header(k, v);
                }
            }
            response
                .body(axum::body::Body::from(answer.bytes().await.unwrap()))
                .unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// `whg conformance --target gateway` passes against this gateway, writes JUnit XML and an HTML
/// report, and fails against a broken one; `--target receiver` passes against the mock practice
/// and fails against one that refuses every letter.
#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_kit_passes_this_gateway_and_fails_a_broken_one() {
    let server = Server::start();
    let key = test_client(&server, "kit-gp", DEFAULT_PRACTICE);
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let html = dir.path().join("report.html");
    let args = |url: &str| -> Vec<String> {
        [
            "--target",
            "gateway",
            "--url",
            url,
            "--client",
            "kit-gp",
            "--key",
            key.to_str().unwrap(),
            "--org",
            DEFAULT_PRACTICE,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut first = args(&server.base);
    first.extend([
        "--junit".into(),
        junit.display().to_string(),
        "--html".into(),
        html.display().to_string(),
    ]);
    let (code, said) = conformance(&first.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{said}");
    let summary = said
        .lines()
        .find(|l| l.starts_with("conformance (gateway"))
        .unwrap_or_else(|| panic!("{said}"));
    let passed: usize = summary
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(passed >= 100, "{summary}");
    assert!(summary.contains(" 0 failed"), "{summary}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.starts_with("<?xml") && xml.contains("<testsuites") && xml.contains("failures=\"0\""),
        "{xml}"
    );
    assert!(
        xml.contains("GW-SMART-04") && xml.contains("<system-out>requirement: "),
        "each check names its requirement"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<table>") && page.contains("GW-BARS-01") && !page.contains("<script"),
        "self-contained"
    );

    // Again, against the same gateway: what is stored answers as a resend, and still passes.
    let (code, said) = conformance(
        &args(&server.base)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 0, "a second run: {said}");

    // A gateway that answers 400 where it should answer 422.
    let broken = broken_gateway(server.base.clone()).await;
    let (code, said) = conformance(&args(&broken).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("FAIL GW-FIX-REFERRALS-INVALID-01"), "{said}");
    assert!(said.contains("expected [422], answered 400"), "{said}");

    // A live client's run would send every fixture as real referrals: it does not start.
    let live_key = dir.path().join("live.pem");
    let out = server.whg(&["clients", "keygen", "--out", live_key.to_str().unwrap()]);
    let live_jwks = dir.path().join("live.jwks.json");
    std::fs::write(&live_jwks, &out.stdout).unwrap();
    let out = server.whg(&[
        "clients",
        "add",
        "live-gp",
        "--role",
        "practice",
        "--org",
        "C88999",
        "--jwks",
        live_jwks.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let (code, said) = conformance(&[
        "--target",
        "gateway",
        "--url",
        &server.base,
        "--client",
        "live-gp",
        "--key",
        live_key.to_str().unwrap(),
        "--org",
        "C88999",
    ]);
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("is not a test-tenant client"), "{said}");
    assert_eq!(
        server
            .as_(Principal::practice("C88999"))
            .get("/fhir/ServiceRequest")
            .await
            .1["total"],
        0,
        "nothing was sent"
    );

    // The receiver side, against the mock practice; then against one refusing every letter.
    let practice = MockPractice::start(&[]);
    let (code, said) = conformance(&["--target", "receiver", "--url", &practice.base]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(" 0 failed"), "{said}");
    practice.set_mode("reject").await;
    let (code, said) = conformance(&["--target", "receiver", "--url", &practice.base]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("FAIL RX-LETTER-01"), "{said}");
}

/// The receiver side over MESH: the kit sends the golden ITK3 letters from the gateway's mailbox
/// to the practice's, and reads back the acknowledgements the mock practice (reading its MESH
/// mailbox) returns: all pass when it files them, and the business acknowledgements fail when it
/// refuses them.
#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_kit_checks_a_receiver_over_mesh_by_its_itk3_acknowledgements() {
    let sandbox = MeshSandbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = dir.path().join("gateway.toml");
    std::fs::write(&gateway, sandbox.gateway_config(dir.path())).unwrap();
    let practice_mesh = dir.path().join("practice.toml");
    let practice_dir = dir.path().join("practice");
    std::fs::create_dir(&practice_dir).unwrap();
    std::fs::write(
        &practice_mesh,
        sandbox.gateway_config(&practice_dir).replace(
            &format!("mailbox = \"{GATEWAY_MAILBOX}\""),
            &format!("mailbox = \"{PRACTICE_MAILBOX}\""),
        ),
    )
    .unwrap();
    let practice = MockPractice::start(&["--mesh", practice_mesh.to_str().unwrap()]);
    let kit = |extra: &[&str]| {
        let out = Command::new(WHG)
            .env("WHG_CONFIG", &gateway)
            .args([
                "conformance",
                "--target",
                "receiver",
                "--mesh-to",
                PRACTICE_MAILBOX,
                "--ack-wait-secs",
                "30",
            ])
            .args(extra)
            .current_dir(root())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, said) = kit(&[]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(" 0 failed"), "{said}");
    assert!(practice.received().await["total"].as_u64().unwrap() >= 1);

    practice.set_mode("reject").await;
    let (code, said) = kit(&[]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("FAIL RX-MESH-30001-01") && said.contains("30002"),
        "{said}"
    );
    assert!(
        !said.contains("FAIL RX-MESH-20013-01"),
        "it still had them: {said}"
    );
}
