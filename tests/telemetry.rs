//! OpenTelemetry over OTLP/HTTP, as a platform team's collector receives it: an OTLP receiver
//! (tools/otlp_receiver.py) decodes every export with the OpenTelemetry project's own protobuf
//! definitions (opentelemetry-proto from PyPI), and the test reads the spans and metrics back.
//! A referral sent in a caller's trace, triaged, and a letter delivered to a practice's system:
//! the spans join the caller's trace, the store's writes and transactions are linked to the
//! request, a delivery attempt carries the letter's message id and passes its context to the
//! practice; the metrics count intake, the outbox, deliveries and consent decisions; and no NHS
//! number, name, birth date, address, token or secret is anywhere in what was exported.

mod common;

use std::time::{Duration, Instant};

use common::receiver::*;
use common::*;
use serde_json::{Value, json};
use whg::auth::Principal;

/// The OTLP/HTTP receiver, on a port of its own, writing what it decodes to a file.
struct Collector(RecordingServer);

impl Collector {
    fn start() -> Collector {
        Collector(RecordingServer::start("tools/otlp_receiver.py"))
    }

    /// The gateway's `[telemetry]` pointing at this receiver, metrics exported often.
    fn config(&self) -> String {
        format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\nmetrics_interval_ms = 200\n",
            self.0.port
        )
    }

    /// Every export received so far.
    fn exports(&self) -> Vec<Value> {
        self.0.records()
    }
}

/// Every span of every trace export.
fn spans(exports: &[Value]) -> Vec<Value> {
    exports
        .iter()
        .filter(|e| e["signal"] == "traces")
        .flat_map(|e| {
            e["body"]["resourceSpans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Every metric of every metrics export, as (name, data points).
fn metrics(exports: &[Value]) -> Vec<(String, Vec<Value>)> {
    exports
        .iter()
        .filter(|e| e["signal"] == "metrics")
        .flat_map(|e| {
            e["body"]["resourceMetrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|r| r["scopeMetrics"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["metrics"].as_array().cloned().unwrap_or_default())
        .map(|m| {
            let points = ["sum", "gauge", "histogram"]
                .iter()
                .find_map(|kind| m[kind]["dataPoints"].as_array().cloned())
                .unwrap_or_default();
            (m["name"].as_str().unwrap_or_default().to_string(), points)
        })
        .collect()
}

/// An attribute's value as text (OTLP's JSON mapping writes 64-bit integers as strings).
fn attr(item: &Value, key: &str) -> Option<String> {
    let value = &item["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"];
    ["stringValue", "intValue", "boolValue", "doubleValue"]
        .iter()
        .find_map(|k| match &value[k] {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
}

fn one<'a>(spans: &'a [Value], what: &str, test: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<&Value> = spans.iter().filter(|s| test(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {what} span, found {}: {:#?}",
        found.len(),
        spans
            .iter()
            .map(|s| (&s["name"], &s["kind"], &s["attributes"]))
            .collect::<Vec<_>>()
    );
    found[0]
}

/// Whether a data point of metric `name` has every attribute in `with` and passes `test`.
fn has_point(
    metrics: &[(String, Vec<Value>)],
    name: &str,
    with: &[(&str, &str)],
    test: impl Fn(&Value) -> bool,
) -> bool {
    metrics
        .iter()
        .filter(|(n, _)| n == name)
        .any(|(_, points)| {
            points
                .iter()
                .any(|p| with.iter().all(|(k, v)| attr(p, k).as_deref() == Some(*v)) && test(p))
        })
}

fn count_of(point: &Value) -> u64 {
    point["count"]
        .as_str()
        .or(point["asInt"].as_str())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_and_metrics_reach_the_collector_linked_and_without_personal_data() {
    let collector = Collector::start();
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(&letters_config(&url, tmp.path(), &collector.config()));
    let gp = server.as_(Principal::practice(DEFAULT_PRACTICE));
    let token = gp.token.clone();

    // The practice's system sends the referral in a trace of its own (W3C Trace Context).
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let referral = referral_for(1, WHS);
    let response = gp
        .request(reqwest::Method::POST, "/api/v1/referrals")
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .body(referral.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let sr = location_id(response.headers());
    let (status, _) = gp.get(&format!("/fhir/ServiceRequest/{sr}")).await;
    assert_eq!(status, 200);
    // The NHS number in a search's query and in a path: neither may reach a span.
    let nhs = referral["patient"]["nhsNumber"].as_str().unwrap();
    let (status, found) = gp
        .get(&format!(
            "/fhir/ServiceRequest?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"
        ))
        .await;
    assert_eq!(status, 200, "{found}");
    let (status, _) = gp.get(&format!("/fhir/Patient/{nhs}")).await;
    assert!((400..500).contains(&status), "{status}");
    let (status, _, body) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{sr}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{sr}/letters"),
            &letter(
                "routine",
                "Seen twice; returning to work on amended duties.",
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let until = Instant::now() + Duration::from_secs(20);
    while receiver.delivered().is_empty() {
        assert!(
            Instant::now() < until,
            "the letter did not arrive: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A metrics export after the delivery, then a clean stop, which flushes the spans.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let on_postgres = server.on_postgres();
    assert!(server.terminate().success());
    let exports = collector.exports();
    let spans = spans(&exports);
    let metrics = metrics(&exports);

    // The request joined the caller's trace, named by its route.
    let request = one(&spans, "referral request", |s| {
        s["name"] == "POST /api/v1/referrals"
    });
    assert_eq!(request["traceId"], trace_id);
    assert_eq!(request["parentSpanId"], caller_span);
    assert_eq!(request["kind"], "SPAN_KIND_SERVER");
    assert_eq!(
        attr(request, "http.route").as_deref(),
        Some("/api/v1/referrals")
    );
    assert_eq!(
        request["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "http.response.status_code")
            .unwrap()["value"],
        json!({ "intValue": "201" }),
        "an integer, as the conventions say"
    );
    assert_eq!(
        attr(request, "http.request.method").as_deref(),
        Some("POST")
    );
    let read = one(&spans, "FHIR read", |s| {
        s["name"] == "GET /fhir/{type}/{id}"
            && attr(s, "fhir.resource_type").as_deref() == Some("ServiceRequest")
    });
    assert_eq!(attr(read, "fhir.interaction").as_deref(), Some("read"));
    assert_eq!(
        attr(read, "fhir.resource_type").as_deref(),
        Some("ServiceRequest")
    );

    // Its write is a child span; the transaction that carried it links to that write.
    let system = if on_postgres { "postgresql" } else { "sqlite" };
    let write = one(&spans, "referral write", |s| {
        s["name"] == "store.write" && s["parentSpanId"] == request["spanId"]
    });
    assert_eq!(write["traceId"], trace_id);
    assert_eq!(attr(write, "db.operation.name").as_deref(), Some("submit"));
    assert_eq!(attr(write, "db.system.name").as_deref(), Some(system));
    let transaction = one(&spans, "transaction of the referral", |s| {
        s["name"] == "store.transaction"
            && s["links"].as_array().is_some_and(|links| {
                links
                    .iter()
                    .any(|l| l["traceId"] == trace_id && l["spanId"] == write["spanId"])
            })
    });
    assert_eq!(attr(transaction, "db.system.name").as_deref(), Some(system));

    // The delivery attempt: the letter's message id on its span, the send a child of it, and
    // the practice's system given that send's context.
    let delivered = &receiver.delivered()[0];
    let attempt = one(&spans, "delivery attempt", |s| {
        s["name"] == "delivery.attempt"
            && attr(s, "whg.letter.message_id").as_deref() == Some(delivered.request_id.as_str())
    });
    assert_eq!(
        attr(attempt, "whg.letter.state").as_deref(),
        Some("accepted")
    );
    assert_eq!(attr(attempt, "whg.practice.ods").as_deref(), Some("C88901"));
    let send = one(&spans, "delivery send", |s| {
        s["name"] == "POST $process-message" && s["parentSpanId"] == attempt["spanId"]
    });
    assert_eq!(send["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(
        attr(send, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        delivered.traceparent,
        format!(
            "00-{}-{}-01",
            attempt["traceId"].as_str().unwrap(),
            send["spanId"].as_str().unwrap()
        ),
        "the practice's system is given the send's trace context"
    );
    assert!(
        spans.iter().any(|s| s["name"] == "store.write"
            && s["parentSpanId"] == attempt["spanId"]
            && attr(s, "db.operation.name").as_deref() == Some("record-delivery")),
        "recording the attempt is a write in the attempt's trace"
    );

    // Metrics: intake's rate and latency, the outbox, deliveries, consent decisions.
    assert!(
        has_point(
            &metrics,
            "http.server.request.duration",
            &[
                ("http.route", "/api/v1/referrals"),
                ("http.response.status_code", "201")
            ],
            |p| count_of(p) >= 1
        ),
        "intake latency: {metrics:#?}"
    );
    assert!(
        has_point(
            &metrics,
            "whg.letters.outcomes",
            &[
                ("whg.letter.outcome", "accepted"),
                ("whg.delivery.channel", "fhir")
            ],
            |p| count_of(p) >= 1
        ),
        "delivery outcomes"
    );
    assert!(
        has_point(
            &metrics,
            "whg.consent.decisions",
            &[("whg.consent.effect", "permit")],
            |p| count_of(p) >= 1
        ),
        "consent decisions"
    );
    for state in ["queued", "sent", "received", "escalated"] {
        assert!(
            has_point(
                &metrics,
                "whg.outbox.letters",
                &[("whg.letter.state", state)],
                |_| true
            ),
            "outbox depth for {state}"
        );
        assert!(
            has_point(
                &metrics,
                "whg.outbox.oldest_age",
                &[("whg.letter.state", state)],
                |_| true
            ),
            "outbox age for {state}"
        );
    }

    // Nothing about the person, and no credential, in any byte exported.
    let raw: Vec<u8> = exports
        .iter()
        .flat_map(|e| hex::decode(e["raw"].as_str().unwrap()).unwrap())
        .collect();
    let raw = String::from_utf8_lossy(&raw);
    let patient = &referral["patient"];
    for secret in [
        patient["nhsNumber"].as_str().unwrap(),
        patient["name"]["family"].as_str().unwrap(),
        patient["name"]["given"][0].as_str().unwrap(),
        patient["birthDate"].as_str().unwrap(),
        patient["postcode"].as_str().unwrap(),
        patient["phone"].as_str().unwrap(),
        patient["email"].as_str().unwrap(),
        &token,
        SECRET,
    ] {
        assert!(!raw.contains(secret), "'{secret}' was exported");
    }
    let digits: Vec<String> = raw
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= 10)
        .map(str::to_string)
        .collect();
    // Any synthetic (999-range) NHS number at all, not only this person's.
    for run in digits {
        for i in 0..=run.len() - 10 {
            let ten = &run[i..i + 10];
            assert!(
                !(ten.starts_with("999") && whg::fhir::identifiers::nhs_number(ten).is_ok()),
                "an NHS number was exported: {run}"
            );
        }
    }
}

/// Person `n` referred and accepted, then a letter written in a caller's sampled trace (W3C
/// Trace Context) by the service's system and delivered; the gateway stopped cleanly after a
/// metrics export, which flushes its spans.
async fn letter_in_a_sampled_trace_delivered(server: &mut Server, receiver: &Receiver, n: usize) {
    let (sr, _) = accepted_referral(server, n).await;
    let response = whs(server)
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/referrals/{sr}/letters"),
        )
        .header("content-type", "application/json")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(letter("routine", "Seen once.").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let until = Instant::now() + Duration::from_secs(20);
    while receiver.delivered().is_empty() {
        assert!(
            Instant::now() < until,
            "the letter did not arrive: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(server.terminate().success());
}

/// Off unless `[telemetry]` says otherwise: the OpenTelemetry SDK's own environment variables,
/// pointing at a collector that is listening, turn nothing on (configuration is in one place),
/// and a caller's trace context is not passed on to the practice.
#[tokio::test(flavor = "multi_thread")]
async fn without_an_endpoint_nothing_is_exported_and_no_trace_context_is_passed_on() {
    let collector = Collector::start();
    let collector_url = format!("http://127.0.0.1:{}", collector.0.port);
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start_with_env(
        &letters_config(&url, tmp.path(), ""),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ],
    );
    letter_in_a_sampled_trace_delivered(&mut server, &receiver, 2).await;
    assert_eq!(receiver.delivered()[0].traceparent, "");
    assert!(
        collector.exports().is_empty(),
        "exported without [telemetry]: {:?}",
        collector.exports()
    );
}

/// At `sample_ratio = 0` no trace is kept, whatever the caller's `traceparent` says about its
/// own sampling: a caller cannot have its requests traced at the gateway's cost. Metrics go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_callers_sampled_flag_does_not_override_the_gateways_ratio() {
    let collector = Collector::start();
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = format!("{}sample_ratio = 0.0\n", collector.config());
    let mut server = Server::start_with(&letters_config(&url, tmp.path(), &config));
    letter_in_a_sampled_trace_delivered(&mut server, &receiver, 3).await;
    let exports = collector.exports();
    assert!(
        spans(&exports).is_empty(),
        "spans exported at ratio 0: {:?}",
        spans(&exports)
    );
    assert!(
        metrics(&exports)
            .iter()
            .any(|(name, _)| name == "http.server.request.duration"),
        "metrics are not sampled: {:?}",
        metrics(&exports).iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    // Whatever reaches the practice does not say the gateway kept the trace.
    let passed = &receiver.delivered()[0].traceparent;
    assert!(!passed.ends_with("-01"), "{passed}");
}

#[test]
fn an_endpoint_that_is_not_a_url_stops_the_gateway_with_the_reason() {
    let stderr = refused_at_start("[telemetry]\notlp_endpoint = \"collector:4318\"\n");
    assert!(
        stderr.contains("telemetry.otlp_endpoint 'collector:4318' is not an http or https URL"),
        "{stderr}"
    );
}
