//! The HTTP contract: status codes, OperationOutcomes, idempotency under concurrency, search and
//! paging, capability, health, request ids, graceful shutdown and what reaches the logs.

mod common;

use common::*;
use serde_json::{Value, json};

fn base_referral() -> Value {
    referral("01-gp-work-stress-off-sick")
}

async fn count_service_requests(server: &Server, query: &str) -> u64 {
    let (status, bundle) = server.get(&format!("/fhir/ServiceRequest?{query}")).await;
    assert_eq!(status, 200, "{bundle}");
    bundle["total"].as_u64().unwrap()
}

#[tokio::test]
async fn wrong_content_type_is_415_with_an_outcome() {
    let server = Server::start();
    let body = serde_json::to_vec(&base_referral()).unwrap();
    for ct in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
    ] {
        let (status, headers, outcome) =
            server.post_raw("/api/v1/referrals", ct, body.clone()).await;
        assert_eq!(status, 415, "{ct}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/fhir+json")
        );
    }
    let (status, _, _) = server
        .post_raw("/api/v1/referrals", "application/json; charset=utf-8", body)
        .await;
    assert_eq!(status, 201, "plain application/json is accepted too");
}

#[tokio::test]
async fn malformed_json_is_400_and_names_the_position() {
    let server = Server::start();
    for body in [&b"{\"referralId\": "[..], b"not json", b"", b"[1,2"] {
        let (status, _, outcome) = server
            .post_raw("/api/v1/referrals", "application/json", body.to_vec())
            .await;
        assert_eq!(status, 400);
        let diag = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diag.contains("not well-formed JSON"), "{diag}");
    }
    // Deeply nested input is refused, not a crash.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (status, _, outcome) = server
        .post_raw(
            "/fhir/$process-message",
            "application/fhir+json",
            deep.into_bytes(),
        )
        .await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(count_service_requests(&server, "").await, 0);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = Server::start_with("[limits]\nmax_body_bytes = 4096\n");
    let mut big = base_referral();
    big["supportWanted"]["text"] = json!("x".repeat(5000));
    let (status, _, outcome) = server.post_json("/api/v1/referrals", &big).await;
    assert_eq!(status, 413);
    assert_eq!(outcome["issue"][0]["code"], "too-long");
    // Also without a Content-Length (chunked), the limit holds.
    let stream = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(vec![b' '; 3000]),
        Ok(vec![b' '; 3000]),
    ]);
    let r = server
        .client
        .post(server.url("/api/v1/referrals"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(count_service_requests(&server, "").await, 0);
    // A POST search's form body too.
    let r = server
        .client
        .post(server.url("/fhir/ServiceRequest/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("_id={}", "a".repeat(5000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["code"], "too-long");
}

#[tokio::test]
async fn a_resend_returns_the_stored_referral_and_a_changed_resend_is_409() {
    let server = Server::start();
    let r = base_referral();
    let (s1, h1, o1) = server.post_json("/api/v1/referrals", &r).await;
    assert_eq!(s1, 201, "{o1}");
    let (s2, h2, o2) = server.post_json("/api/v1/referrals", &r).await;
    assert_eq!(s2, 200, "{o2}");
    assert_eq!(h1["location"], h2["location"], "same id");
    assert!(
        o2["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("already received")
    );

    // Same content with keys in another order is the same referral.
    let reordered: Value = serde_json::from_str(&{
        let mut m: Vec<(String, Value)> = r.as_object().unwrap().clone().into_iter().collect();
        m.reverse();
        let obj: serde_json::Map<String, Value> = m.into_iter().collect();
        serde_json::to_string(&obj).unwrap()
    })
    .unwrap();
    let (s3, h3, _) = server.post_json("/api/v1/referrals", &reordered).await;
    assert_eq!((s3, &h3["location"]), (200, &h1["location"]));

    let mut changed = r.clone();
    changed["priority"] = json!("urgent");
    let (s4, _, o4) = server.post_json("/api/v1/referrals", &changed).await;
    assert_eq!(s4, 409, "{o4}");
    assert_eq!(o4["issue"][0]["code"], "duplicate");
    assert_eq!(count_service_requests(&server, "").await, 1);

    // The same id from another practice is a different referral.
    let mut other_practice = r.clone();
    other_practice["practice"]["odsCode"] = json!("C88999");
    let (s5, h5, _) = server.post_json("/api/v1/referrals", &other_practice).await;
    assert_eq!(s5, 201);
    assert_ne!(h5["location"], h1["location"]);
}

#[tokio::test]
async fn sixteen_identical_concurrent_requests_store_exactly_one_referral() {
    let server = Server::start();
    let r = base_referral();
    let sends = (0..16).map(|_| server.post_json("/api/v1/referrals", &r));
    let results = futures::future::join_all(sends).await;
    let created = results.iter().filter(|(s, _, _)| *s == 201).count();
    let resent = results.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(
        (created, resent),
        (1, 15),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let locations: std::collections::HashSet<_> = results
        .iter()
        .map(|(_, h, _)| h["location"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(locations.len(), 1);
    assert_eq!(count_service_requests(&server, "").await, 1);
    // The shared Patient was not duplicated either.
    let (_, bundle) = server
        .get("/fhir/ServiceRequest?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018")
        .await;
    assert_eq!(bundle["total"], 1);

    // And 16 concurrent BaRS resends likewise.
    let msg =
        read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"));
    let results = futures::future::join_all(
        (0..16).map(|_| server.post_json("/fhir/$process-message", &msg)),
    )
    .await;
    assert!(results.iter().all(|(s, _, _)| *s == 200));
    // (Counted as the BaRS sender, which sees only its own referrals.)
    assert_eq!(count_service_requests(&server, "").await, 1);
    let (_, rows) = server
        .as_(whg::auth::Principal::practice(DEFAULT_PRACTICE))
        .get("/fhir/ServiceRequest")
        .await;
    assert_eq!(rows["total"], 1);
}

#[tokio::test]
async fn prefer_header_chooses_the_response_body() {
    let server = Server::start();
    let r = server
        .client
        .post(server.url("/api/v1/referrals"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=representation")
        .body(serde_json::to_vec(&base_referral()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let sr: Value = r.json().await.unwrap();
    assert_eq!(sr["resourceType"], "ServiceRequest");
    assert_eq!(sr["meta"]["versionId"], "1");
    assert!(
        sr["subject"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Patient/")
    );
}

async fn practice_get(server: &Server, path: &str) -> (u16, Value) {
    server
        .as_(whg::auth::Principal::practice(DEFAULT_PRACTICE))
        .get(path)
        .await
}

#[tokio::test]
async fn search_filters_and_pages() {
    let server = Server::start();
    let names = [
        "01-gp-work-stress-off-sick",
        "02-gp-depression-teacher-at-work",
        "03-gp-low-back-pain-driver",
        "04-self-referral-business-owner",
        "05-talking-therapies-ptsd-paramedic",
    ];
    let mut ids = Vec::new();
    for n in names {
        let (s, h, _) = server.post_json("/api/v1/referrals", &referral(n)).await;
        assert_eq!(s, 201);
        ids.push(location_id(&h));
    }
    assert_eq!(count_service_requests(&server, "").await, 5);
    assert_eq!(count_service_requests(&server, "status=active").await, 5);
    assert_eq!(count_service_requests(&server, "status=revoked").await, 0);
    assert_eq!(
        count_service_requests(&server, "identifier=WHS-2026-0002").await,
        1
    );
    assert_eq!(count_service_requests(&server, "identifier=https://fhir.work-health-gateway.org/Id/practice-referral-id/C88901|WHS-2026-0002").await, 1);
    assert_eq!(count_service_requests(&server, "identifier=https://fhir.work-health-gateway.org/Id/practice-referral-id/C88999|WHS-2026-0002").await, 0);
    assert_eq!(
        count_service_requests(&server, "identifier=WHS-2026-0002,WHS-2025-0917").await,
        2
    );
    assert_eq!(
        count_service_requests(
            &server,
            "patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9990378142"
        )
        .await,
        1
    );
    assert_eq!(
        count_service_requests(&server, "patient.identifier=9990378142").await,
        1
    );
    assert_eq!(
        count_service_requests(
            &server,
            "patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9990000019"
        )
        .await,
        0
    );
    assert_eq!(
        count_service_requests(&server, "_lastUpdated=ge2020-01-01").await,
        5
    );
    assert_eq!(
        count_service_requests(&server, "_lastUpdated=lt2020-01-01").await,
        0
    );
    assert_eq!(
        count_service_requests(&server, "_lastUpdated=gt2999").await,
        0
    );

    let sr = server.resolve(&format!("ServiceRequest/{}", ids[0])).await;
    let patient_ref = sr["subject"]["reference"].as_str().unwrap();
    assert_eq!(
        count_service_requests(&server, &format!("patient={patient_ref}")).await,
        1
    );
    let patient_id = patient_ref.trim_start_matches("Patient/");
    assert_eq!(
        count_service_requests(&server, &format!("patient={patient_id}&status=active")).await,
        1
    );

    // Paging: 5 results, 2 a page, every one seen once, links consistent.
    let mut seen = Vec::new();
    let mut next = Some(server.url("/fhir/ServiceRequest?_count=2"));
    let mut pages = 0;
    while let Some(url) = next {
        let page: Value = server
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["type"], "searchset");
        assert_eq!(page["total"], 5);
        for e in page["entry"].as_array().unwrap() {
            assert_eq!(e["search"]["mode"], "match");
            assert!(
                e["fullUrl"]
                    .as_str()
                    .unwrap()
                    .ends_with(e["resource"]["id"].as_str().unwrap())
            );
            seen.push(e["resource"]["id"].as_str().unwrap().to_string());
        }
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
        pages += 1;
    }
    assert_eq!(pages, 3);
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);

    // `_id` (R4: a token parameter of every resource) finds the ones named.
    let (status, one) = server
        .get(&format!("/fhir/ServiceRequest?_id={}", ids[0]))
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["total"], 1);
    assert_eq!(one["entry"][0]["resource"]["id"], json!(ids[0]));
    let (status, _) = server.get("/fhir/ServiceRequest?_id=not%20an%20id").await;
    assert_eq!(status, 400);

    // R4 search, "Handling Errors" (http://hl7.org/fhir/R4/search.html#errors): the client
    // chooses with `Prefer: handling=strict` (refuse) or `handling=lenient` (ignore), and the
    // self link says what was applied. Unasked, the gateway ignores an unknown result parameter
    // but refuses an unknown filter: dropping one would widen what matches.
    let practice = server.as_(whg::auth::Principal::practice(DEFAULT_PRACTICE));
    let as_practice = |path: &str, prefer: Option<&str>| {
        let mut request = practice.request(reqwest::Method::GET, path);
        if let Some(p) = prefer {
            request = request.header("prefer", p);
        }
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let warned = |bundle: &Value, name: &str| {
        let said: Vec<&Value> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "outcome")
            .collect();
        assert_eq!(said.len(), 1, "{bundle}");
        assert_eq!(said[0]["resource"]["issue"][0]["severity"], "warning");
        assert_eq!(
            said[0]["resource"]["issue"][0]["expression"][0],
            format!("ServiceRequest?{name}")
        );
        let self_link = bundle["link"][0]["url"].as_str().unwrap();
        assert!(
            self_link.contains("status=active") && !self_link.contains(name),
            "{self_link}"
        );
    };
    let (status, summary) = as_practice(
        "/fhir/ServiceRequest?_include=ServiceRequest:subject&status=active",
        None,
    )
    .await;
    assert_eq!(status, 200, "{summary}");
    warned(&summary, "_include");
    let (status, refused) =
        as_practice("/fhir/ServiceRequest?colour=red&status=active", None).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("handling=lenient"),
        "{refused}"
    );
    let (status, lenient) = as_practice(
        "/fhir/ServiceRequest?colour=red&status=active",
        Some("handling=lenient"),
    )
    .await;
    assert_eq!(status, 200, "{lenient}");
    warned(&lenient, "colour");
    // A malformed value of a parameter it does take is refused whatever the handling; strict
    // refuses an unknown result parameter too, all at once.
    let (status, outcome) = as_practice(
        "/fhir/ServiceRequest?colour=red&_lastUpdated=yesterday",
        Some("handling=lenient"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(outcome["issue"].as_array().unwrap().len(), 1, "{outcome}");
    let (status, outcome) = as_practice(
        "/fhir/ServiceRequest?_include=ServiceRequest:subject&_lastUpdated=yesterday",
        Some("handling=strict"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(outcome["issue"].as_array().unwrap().len(), 2, "{outcome}");
    let (status, _) = server.get("/fhir/Patient?name=Smith").await;
    assert_eq!(status, 400, "Patient is searched by NHS number only");
    // By NHS number: the caller's own person, as its records' senders stated them; someone it
    // has no record of is not found, never refused, so the answer reveals nothing.
    let nhs = "https://fhir.nhs.uk/Id/nhs-number|9990378142";
    let (status, found) = practice_get(&server, &format!("/fhir/Patient?identifier={nhs}")).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entry"][0]["resource"]["resourceType"], "Patient");
    assert!(
        !found["link"][0]["url"]
            .as_str()
            .unwrap()
            .contains("9990378142")
    );
    let other = server.as_(whg::auth::Principal::practice("C88999"));
    let (status, none) = other.get(&format!("/fhir/Patient?identifier={nhs}")).await;
    assert_eq!(status, 200);
    assert_eq!(none["total"], 0, "{none}");
    assert!(none.get("entry").is_none());
    let (status, _) = server
        .get("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990378143")
        .await;
    assert_eq!(status, 400, "not a valid NHS number");
    // The same by POST, the number in the body; every lookup audited, found or not.
    let r = other
        .request(reqwest::Method::POST, "/fhir/Patient/_search")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("identifier={nhs}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["total"], 0);
    let ig = server.as_(whg::auth::Principal::new(
        whg::auth::Role::InformationGovernance,
        "ig-team",
    ));
    assert_eq!(
        ig.get(&format!("/fhir/Patient?identifier={nhs}")).await.0,
        403,
        "information governance reads the audit trail, not people"
    );
    let (_, trail) = ig.get("/fhir/AuditEvent?_count=200").await;
    assert_eq!(
        trail
            .to_string()
            .matches("search Patient by NHS number: 0 returned")
            .count(),
        2,
        "{trail}"
    );
    let (status, empty) = server.get("/fhir/ServiceRequest?status=revoked").await;
    assert_eq!(status, 200);
    assert!(empty.get("entry").is_none(), "no empty arrays in FHIR JSON");
}

#[tokio::test]
async fn every_stored_type_is_readable_and_unknown_ids_are_404() {
    let server = Server::start();
    let (_, h, _) = server
        .post_json("/api/v1/referrals", &base_referral())
        .await;
    let id = location_id(&h);
    let sr = server.resolve(&format!("ServiceRequest/{id}")).await;
    let mut types = std::collections::HashSet::new();
    for r in whg::fhir::resource::references(&sr) {
        let res = server.resolve(r).await;
        types.insert(res["resourceType"].as_str().unwrap().to_string());
    }
    for t in [
        "Patient",
        "Organization",
        "PractitionerRole",
        "Condition",
        "Observation",
        "Consent",
    ] {
        assert!(
            types.contains(t),
            "{t} not reachable from the ServiceRequest: {types:?}"
        );
    }
    let r = server
        .client
        .get(server.url(&format!("/fhir/ServiceRequest/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    for path in [
        "/fhir/ServiceRequest/does-not-exist",
        "/fhir/Patient/00000000-0000-0000-0000-000000000000",
        "/fhir/Nonsense/1",
        "/fhir/ServiceRequest/bad%20id",
        "/nowhere",
    ] {
        let (status, outcome) = server.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
}

#[tokio::test]
async fn capability_statement_tells_the_truth() {
    let server = Server::start();
    let (status, cs) = server.get("/fhir/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    let sr = resources
        .iter()
        .find(|r| r["type"] == "ServiceRequest")
        .unwrap();
    let params: Vec<&str> = sr["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    // Every advertised parameter works; an unadvertised one is refused.
    for p in &params {
        let value = match *p {
            "_lastUpdated" => "ge2000",
            "patient" => "Patient/x",
            _ => "x",
        };
        let (status, _) = server
            .get(&format!("/fhir/ServiceRequest?{p}={value}"))
            .await;
        assert_eq!(status, 200, "advertised {p} must work");
    }
    // Conformance resources are searched by url, and Patient by NHS number, on routes of their own.
    let conformance = whg::fhir::conformance::TYPES;
    for r in resources.iter().filter(|r| {
        let t = r["type"].as_str().unwrap();
        whg::fhir::search::supported_params(t).is_empty()
            && !conformance.contains(&t)
            && t != "Patient"
            && t != "HealthcareService"
    }) {
        assert!(
            r.get("searchParam").is_none(),
            "{} advertises search it does not support",
            r["type"]
        );
    }
    // The service directory, on a route of its own: every parameter it advertises works.
    let directory = resources
        .iter()
        .find(|r| r["type"] == "HealthcareService")
        .unwrap();
    for p in directory["searchParam"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let value = match name {
            "postcode-district" => "NE33",
            "referral-route" => "gp",
            _ => "x",
        };
        let (status, _) = server
            .get(&format!("/fhir/HealthcareService?{name}={value}"))
            .await;
        assert_eq!(status, 200, "advertised HealthcareService {name} must work");
    }
    // R4's own definitions type Task's `owner` (SearchParameter Task-owner) and AuditEvent's
    // `agent` (AuditEvent-agent) as `reference`
    // (http://hl7.org/fhir/R4/task.html#search, http://hl7.org/fhir/R4/auditevent.html#search);
    // their targets are kept by identifier, so the `:identifier` modifier
    // (http://hl7.org/fhir/R4/search.html#reference, "identifier") finds them.
    let param_type = |resource: &str, name: &str| {
        resources
            .iter()
            .find(|r| r["type"] == resource)
            .and_then(|r| r["searchParam"].as_array())
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .map(|p| p["type"].as_str().unwrap().to_string())
    };
    // R4 CapabilityStatement: rest.security.service (restful-security-service, SMART-on-FHIR)
    // and messaging.supportedMessage for the BaRS messages taken and sent
    // (http://hl7.org/fhir/R4/capabilitystatement.html).
    assert_eq!(
        cs["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );
    let messages = cs["messaging"][0]["supportedMessage"].as_array().unwrap();
    assert!(messages.iter().any(|m| m["mode"] == "receiver"
        && m["definition"]
            == "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral"));
    assert!(messages.iter().any(|m| m["mode"] == "sender"));
    assert!(
        cs["messaging"][0]["endpoint"][0]["address"]
            .as_str()
            .unwrap()
            .ends_with("/fhir/$process-message")
    );
    assert_eq!(param_type("Task", "owner").as_deref(), Some("reference"));
    assert_eq!(
        param_type("AuditEvent", "agent").as_deref(),
        Some("reference")
    );
    let (status, found) = server
        .as_(whg::auth::Principal::practice(DEFAULT_PRACTICE))
        .get("/fhir/Task?owner:identifier=https://fhir.nhs.uk/Id/ods-organization-code|C88901")
        .await;
    assert_eq!(status, 200, "{found}");
    let (status, refused) = server
        .as_(whg::auth::Principal::practice(DEFAULT_PRACTICE))
        .get("/fhir/Task?owner:missing=true")
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("owner:identifier"),
        "{refused}"
    );
    check_with_independent_fhir(&[cs]);
}

#[tokio::test]
async fn health_probes_and_request_ids() {
    let server = Server::start();
    let (s, _) = server.get("/health/live").await;
    assert_eq!(s, 200);
    let (s, body) = server.get("/health/ready").await;
    assert_eq!((s, body["status"].as_str()), (200, Some("pass")));

    let r = server
        .client
        .get(server.url("/health/live"))
        .header("x-request-id", "req-123")
        .header("x-correlation-id", "conv-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-123");
    assert_eq!(r.headers()["x-correlation-id"], "conv-9");
    let r = server
        .client
        .get(server.url("/fhir/metadata"))
        .send()
        .await
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID is generated when none is sent");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        server.logs().contains(&generated),
        "log lines carry the request id"
    );
}

#[tokio::test]
async fn logs_carry_no_patient_identifiers() {
    let server = Server::start();
    let r = base_referral();
    server.post_json("/api/v1/referrals", &r).await;
    let mut bad = r.clone();
    bad["patient"]["nhsNumber"] = json!("9990000019");
    server.post_json("/api/v1/referrals", &bad).await;
    server
        .get("/fhir/ServiceRequest?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = server.logs();
    assert!(logs.contains("POST"), "requests are logged: {logs}");
    for secret in [
        "9990000018",
        "9990000019",
        "Whitworth",
        "1979-06-14",
        "Joanne",
    ] {
        assert!(!logs.contains(secret), "log contains '{secret}':\n{logs}");
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_cleanly() {
    let mut server = Server::start();
    // Some referrals are answered before the signal, so durability below is never vacuous.
    for i in 0..5 {
        let mut r = base_referral();
        r["referralId"] = json!(format!("BEFORE-{i}"));
        assert_eq!(server.post_json("/api/v1/referrals", &r).await.0, 201);
    }
    let referrals: Vec<Value> = (0..40)
        .map(|i| {
            let mut r = base_referral();
            r["referralId"] = json!(format!("SHUTDOWN-{i}"));
            r
        })
        .collect();
    let client = server.direct_client.clone();
    let url = server.url("/api/v1/referrals");
    let sends: Vec<_> = referrals
        .iter()
        .map(|r| {
            let client = client.clone();
            let url = url.clone();
            let body = serde_json::to_vec(r).unwrap();
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let mut answered = 5;
    for s in sends {
        // A request either completed (201) or was never accepted (connection refused): none is
        // cut off half-way.
        match s.await.unwrap() {
            Ok(code) => {
                assert_eq!(code, 201);
                answered += 1;
            }
            Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
        }
    }
    // Every answered referral is in the database.
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM submissions")
        .fetch_one(&mut server.db().await)
        .await
        .unwrap();
    assert_eq!(stored, answered, "every 201 was durable");
}

#[tokio::test]
async fn refuses_plaintext_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(WHG)
        .args(["serve", "--listen", "0.0.0.0:0", "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("x.db").display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("plaintext"));
}

#[tokio::test]
async fn a_referral_arriving_late_does_not_overwrite_newer_details() {
    let server = Server::start();
    // The 2026 re-referral arrives first, then the 2022 one for the same person.
    let (s1, h1, _) = server
        .post_json(
            "/api/v1/referrals",
            &referral("11-rereferral-2026-same-person"),
        )
        .await;
    let (s2, h2, _) = server
        .post_json("/api/v1/referrals", &referral("10-rereferral-2022"))
        .await;
    assert_eq!((s1, s2), (201, 201));
    let newer = server
        .resolve(&format!("ServiceRequest/{}", location_id(&h1)))
        .await;
    let older = server
        .resolve(&format!("ServiceRequest/{}", location_id(&h2)))
        .await;
    assert_eq!(
        newer["subject"], older["subject"],
        "one person, two referrals"
    );
    let patient = server
        .resolve(newer["subject"]["reference"].as_str().unwrap())
        .await;
    assert_eq!(
        patient["meta"]["versionId"], "1",
        "the 2022 details did not replace the 2026 ones"
    );
    assert_eq!(patient["address"][0]["postalCode"], "S13 9AS");
}

/// FHIR R4 `$process-message`: the `return` parameter is "a response message, if synchronous
/// messaging is being used (mandatory in this case)"
/// (http://hl7.org/fhir/R4/messageheader-operation-process-message.html), and the BaRS API's
/// `200` for `POST /$process-message` is a `MessageBundle` (NHS England's
/// booking-and-referral OpenAPI specification). The response MessageHeader's
/// `response.identifier` is "the MessageHeader.id of the message to which this message is a
/// response" (http://hl7.org/fhir/R4/messageheader-definitions.html#MessageHeader.response.identifier).
#[tokio::test]
async fn process_message_answers_with_a_response_message() {
    let server = Server::start();
    let msg =
        read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"));
    let request_header = msg["entry"][0]["fullUrl"]
        .as_str()
        .unwrap()
        .trim_start_matches("urn:uuid:")
        .to_string();
    let (status, headers, first) = server.post_json("/fhir/$process-message", &msg).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["resourceType"], "Bundle");
    assert_eq!(first["type"], "message");
    let header = &first["entry"][0]["resource"];
    assert_eq!(header["resourceType"], "MessageHeader");
    assert_eq!(header["response"]["identifier"], request_header.as_str());
    assert_eq!(header["response"]["code"], "ok");
    assert_eq!(
        header["destination"][0]["endpoint"],
        msg["entry"][0]["resource"]["source"]["endpoint"]
    );
    let location = headers["location"].to_str().unwrap();
    assert_eq!(header["focus"][0]["reference"], location);
    whg::fhir::resource::check_strict(&first).unwrap();

    // A resend is answered the same way, saying nothing new was stored.
    let (status, _, again) = server.post_json("/fhir/$process-message", &msg).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    let said = again["entry"][1]["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap();
    assert!(said.contains("already received"), "{said}");

    // With the stored referral, when asked for; the message alone with return=minimal (the
    // response message is the operation's return, "mandatory" for synchronous messaging).
    let sender = server.as_(whg::auth::Principal::practice(
        &sender_practice(&msg).unwrap(),
    ));
    // The MessageHeader, its OperationOutcome and the sending service's Organization; with
    // representation, the ServiceRequest too.
    for (prefer, entries) in [("return=representation", 4), ("return=minimal", 3)] {
        let r = sender
            .request(reqwest::Method::POST, "/fhir/$process-message")
            .header("content-type", "application/fhir+json")
            .header("prefer", prefer)
            .body(serde_json::to_vec(&msg).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{prefer}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["type"], "message", "{prefer}");
        assert_eq!(
            answer["entry"].as_array().unwrap().len(),
            entries,
            "{answer}"
        );
        if entries == 4 {
            assert_eq!(
                answer["entry"][2]["resource"]["resourceType"],
                "ServiceRequest"
            );
        }
        let sender = answer["entry"][0]["resource"]["sender"]["reference"].as_str();
        let organization = answer["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["fullUrl"].as_str() == sender)
            .unwrap_or_else(|| panic!("the sender is in the message: {answer}"));
        assert_eq!(organization["resource"]["resourceType"], "Organization");
    }
}

/// R4 search result parameters (http://hl7.org/fhir/R4/search.html): `_summary=count` "Return
/// only the count of matches"; `_summary=data` removes the text element; `_elements` returns the
/// elements asked for and the mandatory ones, tagged SUBSETTED ("Servers SHOULD mark the
/// resources with the tag SUBSETTED"); `_total=none` leaves the total out; and POST
/// `[type]/_search` with the parameters form-encoded in the body is the same search. Each under
/// the same tenancy rule as GET. Before, none of these.
#[tokio::test]
async fn search_result_parameters_and_post_search() {
    use whg::auth::Principal;
    let server = Server::start();
    for n in [
        "01-gp-work-stress-off-sick",
        "02-gp-depression-teacher-at-work",
    ] {
        let (s, _, body) = server.post_json("/api/v1/referrals", &referral(n)).await;
        assert_eq!(s, 201, "{body}");
    }
    let gp = server.as_(Principal::practice(DEFAULT_PRACTICE));
    let (status, counted) = gp.get("/fhir/ServiceRequest?_summary=count").await;
    assert_eq!(status, 200, "{counted}");
    assert_eq!(counted["total"], 2);
    assert!(counted.get("entry").is_none(), "{counted}");

    let (_, subset) = gp.get("/fhir/ServiceRequest?_elements=priority").await;
    let sr = &subset["entry"][0]["resource"];
    for kept in [
        "resourceType",
        "id",
        "meta",
        "priority",
        "status",
        "intent",
        "subject",
    ] {
        assert!(sr.get(kept).is_some(), "{kept} missing: {sr}");
    }
    assert!(
        sr.get("note").is_none() && sr.get("authoredOn").is_none(),
        "{sr}"
    );
    assert!(
        sr["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["code"] == "SUBSETTED"),
        "{sr}"
    );
    let (_, data) = gp.get("/fhir/ServiceRequest?_summary=data").await;
    assert!(data["entry"][0]["resource"].get("text").is_none());
    let (_, untotalled) = gp.get("/fhir/ServiceRequest?_total=none").await;
    assert!(untotalled.get("total").is_none(), "{untotalled}");
    assert_eq!(untotalled["entry"].as_array().unwrap().len(), 2);
    for bad in [
        "_summary=true",
        "_summary=maybe",
        "_elements=a.b",
        "_total=some",
    ] {
        let (status, outcome) = gp.get(&format!("/fhir/ServiceRequest?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {outcome}");
    }

    // POST _search: the parameters in the body, the same answer as GET.
    let (_, by_get) = gp
        .get("/fhir/ServiceRequest?identifier=WHS-2026-0002")
        .await;
    let post = |path: &str, content_type: &str, body: &str| {
        gp.request(reqwest::Method::POST, path)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
    };
    for path in [
        "/fhir/ServiceRequest/_search",
        "/fhir/Consent/_search",
        "/fhir/Task/_search",
    ] {
        let r = post(path, "application/x-www-form-urlencoded", "_count=5")
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = post(
        "/fhir/ServiceRequest/_search",
        "application/x-www-form-urlencoded",
        "identifier=WHS-2026-0002",
    )
    .await
    .unwrap();
    let by_post: Value = r.json().await.unwrap();
    // A POST search's parameters stay out of URLs: no link repeats them.
    assert!(
        by_post["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| !l["url"].as_str().unwrap().contains("WHS-2026-0002")),
        "{by_post}"
    );
    assert_eq!(by_post["total"], by_get["total"]);
    assert_eq!(by_post["total"], 1);
    assert_eq!(
        by_post["entry"][0]["resource"]["id"],
        by_get["entry"][0]["resource"]["id"]
    );
    let r = post("/fhir/ServiceRequest/_search", "application/json", "{}")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // Bounded: at most 50 parameters (and the body within the configured limit: see
    // oversized_body_is_413).
    let many = vec!["status=active"; 51].join("&");
    let r = post(
        "/fhir/ServiceRequest/_search",
        "application/x-www-form-urlencoded",
        &many,
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Another practice finds none of these by POST either.
    let other = server.as_(Principal::practice("C88999"));
    let r = other
        .request(reqwest::Method::POST, "/fhir/ServiceRequest/_search")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("_summary=count")
        .send()
        .await
        .unwrap();
    let none: Value = r.json().await.unwrap();
    assert_eq!(none["total"], 0, "{none}");
}

/// The gateway's conformance resources are served as profiles/ publishes them, by id and by
/// canonical url (R4 conformance resources; no one's data, so no token, like the
/// CapabilityStatement), and `$validate` (R4 Resource/$validate: "the outcome is returned
/// whether or not the resource is valid") runs intake's checks with nothing stored.
#[tokio::test]
async fn conformance_resources_are_served_and_validate_checks_without_storing() {
    use whg::auth::Principal;
    let server = Server::start();
    let anonymous = http();
    let mut served = 0;
    for entry in std::fs::read_dir(root().join("profiles")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some((rt, rest)) = name.split_once('-') else {
            continue;
        };
        if !["StructureDefinition", "ValueSet", "CodeSystem"].contains(&rt) {
            continue;
        }
        let published = read_json(&root().join("profiles").join(&name));
        let id = rest.trim_end_matches(".json");
        let r = anonymous
            .get(server.url(&format!("/fhir/{rt}/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{name}");
        assert!(r.headers().contains_key("etag"));
        assert_eq!(r.json::<Value>().await.unwrap(), published, "{name}");
        let url = published["url"].as_str().unwrap();
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("url", url)
            .finish();
        let r = anonymous
            .get(server.url(&format!("/fhir/{rt}?{query}")))
            .send()
            .await
            .unwrap();
        let found: Value = r.json().await.unwrap();
        assert_eq!(found["total"], 1, "{name}: {found}");
        served += 1;
    }
    assert!(served >= 70, "{served}");
    let r = anonymous
        .get(server.url("/fhir/StructureDefinition/not-ours"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // $validate: a token is needed (it runs intake's checks), nothing is stored.
    let r = anonymous
        .post(server.url("/fhir/Bundle/$validate"))
        .header("content-type", "application/fhir+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let gp = server.as_(Principal::practice("C88902"));
    let message =
        read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"));
    let (status, _, outcome) = gp.post("/fhir/Bundle/$validate", &message).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["issue"][0]["severity"], "information", "{outcome}");
    let invalid = root().join("fixtures/messages/invalid/09-several-problems.json");
    let (status, _, outcome) = gp
        .post("/fhir/Bundle/$validate", &read_json(&invalid))
        .await;
    assert_eq!(status, 200, "{outcome}");
    let (_, expected) = (
        0,
        read_json(&invalid.with_extension("").with_extension("expected.json")),
    );
    assert_eq!(
        issue_keys(&outcome),
        expected_issue_keys(&expected),
        "the same issues as $process-message gives"
    );
    // As a Parameters, with the profile named.
    let consent =
        read_json(&root().join("fixtures/consent/invalid/05-period-ends-before-start.json"));
    let parameters = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "resource", "resource": consent },
        { "name": "profile", "valueUri": "https://fhir.work-health-gateway.org/StructureDefinition/whg-consent" },
    ]});
    let (status, _, outcome) = gp.post("/fhir/Consent/$validate", &parameters).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [
            // Said: its raw text was not seen (checks such as a key given twice need the body).
            ("".to_string(), "informational".to_string()),
            (
                "Consent.provision.period.end".to_string(),
                "value".to_string()
            )
        ]
    );
    let ig = server.as_(Principal::new(
        whg::auth::Role::InformationGovernance,
        "ig-team",
    ));
    assert_eq!(ig.post("/fhir/Bundle/$validate", &message).await.0, 403);
    let (_, _, outcome) = gp.post("/fhir/Consent/$validate", &message).await;
    assert_eq!(
        outcome["issue"][0]["severity"], "error",
        "a Bundle is not a Consent"
    );
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM resources")
        .fetch_one(&mut server.db().await)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing stored");
}

/// FHIR XML (R4 http.html#mime: application/fhir+xml; xml.html): the FHIR API takes it and
/// answers in it when Accept asks, the same resources as in JSON; the practice formats stay JSON.
#[tokio::test]
async fn the_fhir_api_speaks_xml_too() {
    let server = Server::start();
    let message =
        read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"));
    let practice = server.as_(whg::auth::Principal::practice(
        &sender_practice(&message).unwrap(),
    ));
    let xml = whg::fhir::resource::json_to_xml(&serde_json::to_vec(&message).unwrap()).unwrap();
    assert!(
        String::from_utf8_lossy(&xml).contains("<Bundle xmlns=\"http://hl7.org/fhir\""),
        "{}",
        String::from_utf8_lossy(&xml[..200])
    );
    let answer = practice
        .request(reqwest::Method::POST, "/fhir/$process-message")
        .header("content-type", "application/fhir+xml")
        .header("accept", "application/fhir+xml")
        .body(xml.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "application/fhir+xml; charset=utf-8"
    );
    let body = answer.bytes().await.unwrap();
    let response = whg::fhir::resource::xml_to_json(&body).unwrap();
    assert_eq!(response["resourceType"], "Bundle");
    assert_eq!(response["type"], "message");
    assert_eq!(
        response["entry"][0]["resource"]["response"]["code"], "ok",
        "{response}"
    );
    // A resend in JSON is the same message: one referral, answered alike (in JSON by default).
    let (status, _, again) = practice.post("/fhir/$process-message", &message).await;
    assert_eq!(status, 200, "{again}");
    let (_, page) = practice.get("/fhir/ServiceRequest").await;
    assert_eq!(page["total"], 1, "{page}");

    // The CapabilityStatement says so, and comes in XML when asked.
    let cs = server
        .client
        .get(server.url("/fhir/metadata"))
        .header("accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cs.headers()["content-type"],
        "application/fhir+xml; charset=utf-8"
    );
    let cs = whg::fhir::resource::xml_to_json(&cs.bytes().await.unwrap()).unwrap();
    assert!(
        cs["format"]
            .as_array()
            .unwrap()
            .contains(&json!("application/fhir+xml"))
    );

    // Broken XML, XML that is not FHIR, and an entity bomb are 400s with an outcome (in JSON,
    // which the caller accepts), and store nothing.
    let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><Bundle xmlns="http://hl7.org/fhir"><id value="&lol3;"/></Bundle>"#;
    for bad in [
        &b"<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"message\""[..],
        b"<Referral><who>someone</who></Referral>",
        b"<Bundle xmlns=\"http://hl7.org/fhir\"><notAnElement value=\"x\"/></Bundle>",
        // An attribute FHIR XML does not define is refused, as an unknown JSON element is.
        b"<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"message\" smuggled=\"x\"/></Bundle>",
        &bomb[..],
    ] {
        let (status, headers, outcome) = server
            .post_raw(
                "/fhir/$process-message",
                "application/fhir+xml",
                bad.to_vec(),
            )
            .await;
        assert_eq!(status, 400, "{outcome}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/fhir+json")
        );
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(
            diagnostics.contains("FHIR R4 resource in XML"),
            "{diagnostics}"
        );
    }
    let (_, page) = practice.get("/fhir/ServiceRequest").await;
    assert_eq!(page["total"], 1, "{page}");

    // XML nested beyond the JSON nesting limit is refused before it is read (fhirbolt's reader
    // would recurse once per level): a 400, and the gateway still answers.
    let deep = format!(
        "<Bundle xmlns=\"http://hl7.org/fhir\">{}{}</Bundle>",
        "<extension url=\"a\">".repeat(30_000),
        "</extension>".repeat(30_000)
    );
    let (status, _, outcome) = server
        .post_raw(
            "/fhir/$process-message",
            "application/fhir+xml",
            deep.into_bytes(),
        )
        .await;
    assert_eq!(status, 400, "{outcome}");
    assert!(outcome.to_string().contains("nests deeper"), "{outcome}");
    let (status, _) = server.get("/fhir/metadata").await;
    assert_eq!(status, 200);

    // Narrative that is not well-formed XHTML is refused on the way in, in JSON as in XML, so
    // nothing stored breaks an answer written as XML (R4 narrative.html).
    for div in [
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">a < b</div>",
        "<div>no namespace</div>",
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>open</div>",
        "</x>",
    ] {
        let mut broken = message.clone();
        broken["entry"][0]["resource"]["text"] = json!({ "status": "generated", "div": div });
        let (status, _, outcome) = practice.post("/fhir/$process-message", &broken).await;
        assert!(status == 400 || status == 422, "{div}: {status} {outcome}");
        assert!(outcome.to_string().contains("XHTML"), "{div}: {outcome}");
    }
    // _format asks as Accept does (R4 http.html#mime), and wins over it.
    let cs = server
        .client
        .get(server.url("/fhir/metadata?_format=xml"))
        .header("accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cs.headers()["content-type"],
        "application/fhir+xml; charset=utf-8"
    );
    let (_, page) = practice.get("/fhir/ServiceRequest?_format=json").await;
    assert_eq!(page["total"], 1, "{page}");

    // The practice JSON format is not FHIR: XML there is 415.
    let (status, _, outcome) = server
        .post_raw("/api/v1/referrals", "application/fhir+xml", xml)
        .await;
    assert_eq!(status, 415, "{outcome}");
    // An Accept naming neither format is still 406.
    let refused = server
        .client
        .get(server.url("/fhir/metadata"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 406);
    // Outside the FHIR API, routes answer in their own format whatever Accept says: a scraper
    // asking for text/plain gets the metrics, not a 406.
    let metrics = http()
        .get(server.url("/metrics"))
        .header("accept", "text/plain;version=0.0.4")
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

/// `POST /api/v1/{referrals,fit-notes}/$validate`: intake's checks for this caller, nothing stored.
/// The sender rules apply as they would to a real submission (a practice sends only as itself; a
/// test-tenant client only synthetic people), so an integrator's online check is the real one.
#[tokio::test]
async fn practice_formats_are_validated_online_for_their_sender_with_nothing_stored() {
    let server = Server::start();
    let gp = server.as_(whg::auth::Principal::practice(DEFAULT_PRACTICE));
    let valid = referral("01-gp-work-stress-off-sick");
    let (status, _, outcome) = gp.post("/api/v1/referrals/$validate", &valid).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["issue"].as_array().unwrap().len(), 1, "{outcome}");
    assert_eq!(outcome["issue"][0]["severity"], "information");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("valid:")
    );

    let several =
        read_json(&root().join("fixtures/referrals/invalid/18-several-problems-at-once.json"));
    let (status, _, outcome) = gp.post("/api/v1/referrals/$validate", &several).await;
    assert_eq!(status, 200, "{outcome}");
    let expected = read_json(&expected_path(
        &root().join("fixtures/referrals/invalid/18-several-problems-at-once.json"),
    ));
    assert_eq!(
        issue_keys(&outcome),
        expected_issue_keys(&expected),
        "the same issues intake gives"
    );

    // Sent as another practice: the sender rule, at the field.
    let other = server.as_(whg::auth::Principal::practice("C88999"));
    let (status, _, outcome) = other.post("/api/v1/referrals/$validate", &valid).await;
    assert_eq!(status, 200);
    assert_eq!(outcome["issue"][0]["code"], "forbidden", "{outcome}");
    assert_eq!(
        outcome["issue"][0]["expression"][0], "practice.odsCode",
        "{outcome}"
    );

    // A test-tenant client with a real person's NHS number.
    let mut tester = whg::auth::Principal::practice(DEFAULT_PRACTICE);
    tester.test_tenant = true;
    let tester = server.as_(tester);
    let mut real = valid.clone();
    real["patient"]["nhsNumber"] = json!("9434765919");
    let (_, _, outcome) = tester.post("/api/v1/referrals/$validate", &real).await;
    assert_eq!(outcome["issue"][0]["code"], "forbidden", "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("test tenant"),
        "{outcome}"
    );

    let note =
        read_json(&root().join("fixtures/fit-notes/valid/02-doctor-may-be-fit-phased-return.json"));
    let (status, _, outcome) = gp.post("/api/v1/fit-notes/$validate", &note).await;
    assert_eq!(
        (status, outcome["issue"][0]["severity"].as_str()),
        (200, Some("information")),
        "{outcome}"
    );
    // A service has no scope to send either.
    let whs = server.as_(whg::auth::Principal::service("sheffield-whs"));
    assert_eq!(whs.post("/api/v1/fit-notes/$validate", &note).await.0, 403);

    // Nothing was stored.
    assert_eq!(gp.get("/fhir/ServiceRequest").await.1["total"], 0);
    assert_eq!(
        gp.get("/fhir/Observation?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9990005524")
            .await
            .1["total"],
        0
    );

    // The API contract is served without a token.
    let contract: Value = http_get(server.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        contract["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        contract["openapi"]
    );
    assert!(contract["paths"]["/api/v1/referrals/$validate"].is_object());
}

/// The test tenant's triggers (docs/onboarding.md#test-triggers): a test client sees each error
/// state on demand; a live client's header changes nothing.
#[tokio::test]
async fn test_triggers_answer_for_test_clients_only() {
    let server = Server::start();
    let mut tester = whg::auth::Principal::practice(DEFAULT_PRACTICE);
    tester.test_tenant = true;
    let tester = server.as_(tester);
    let live = server.as_(whg::auth::Principal::practice("C88999"));
    for (trigger, status) in [
        ("throttled", 429),
        ("unavailable", 503),
        ("timeout", 503),
        ("sideways", 400),
    ] {
        let r = tester
            .request(reqwest::Method::GET, "/fhir/ServiceRequest")
            .header("x-test-trigger", trigger)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{trigger}");
        if trigger == "throttled" {
            assert!(r.headers().contains_key("retry-after"));
        }
        let r = live
            .request(reqwest::Method::GET, "/fhir/ServiceRequest")
            .header("x-test-trigger", trigger)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "a live client's {trigger} changes nothing"
        );
    }
    assert!(
        !server.logs().contains("store unavailable"),
        "a trigger is not an incident"
    );
}
