//! The public self-referral form (`/refer`), over HTTP against the real binary: a person refers
//! themselves and the service finds the referral; every party's reach is checked with its own
//! legitimate credentials (the practice the person names, another service, an anonymous
//! caller); and the form's defences — token and cookie, origin, trap field, size, rate limits —
//! each hold. The browser's view (with and without script, axe-core) is tests/refer_browser.rs.

mod common;

use common::*;
use serde_json::{Value, json};
use whg::auth::Principal;

/// A practice with a name in the directory, so a person may choose it (a made-up code, not one of
/// the test tenant's organisations, which are never offered to a person, even with a route).
const PRACTICES: &str = "[directory.Z99901]\nchannel = \"fhir\"\nname = \"Norfolk Park Medical Practice (synthetic)\"\nendpoint = \"http://127.0.0.1:9/fhir\"\n[directory.C88902]\nchannel = \"fhir\"\nname = \"A test practice\"\nendpoint = \"http://127.0.0.1:9/fhir\"\n";
const NAMED_GP: &str = "Z99901";

fn start() -> Server {
    Server::start_with(&format!(
        "[self_referral]\nmin_fill_secs = 0\nper_source_per_hour = 1000.0\nburst_per_source = 1000.0\nall_sources_per_minute = 1000.0\nburst_all_sources = 1000.0\n{PRACTICES}"
    ))
}

/// A browser: its one cookie (the form's binding) kept between requests; redirects not followed.
struct Browser {
    http: reqwest::Client,
    cookie: std::sync::Mutex<Option<String>>,
    origin: String,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Browser {
    fn new(server: &Server) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: Default::default(),
            origin: server.base.clone(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let req = match self.cookie.lock().unwrap().clone() {
            Some(c) => req.header("cookie", c),
            None => req,
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        for v in headers.get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap().to_string();
            *self.cookie.lock().unwrap() = Some(pair);
        }
        Page {
            status,
            headers,
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&self, url: &str) -> Page {
        self.send(self.http.get(url)).await
    }

    async fn post(&self, url: &str, fields: &[(String, String)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            self.http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", &self.origin)
                .body(body),
        )
        .await
    }
}

/// The value of the hidden field `name` in a page.
fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at..];
    let value = rest.find("value=\"").unwrap() + 7;
    let end = rest[value..].find('"').unwrap();
    rest[value..value + end].to_string()
}

/// A person's answers (`nhs`: the NHS number they type, if any).
fn answers(nhs: Option<&str>) -> Vec<(String, String)> {
    let mut a: Vec<(&str, &str)> = vec![
        ("given-name", "Joanne"),
        ("family-name", "Self-Referrer"),
        ("dob-day", "14"),
        ("dob-month", "6"),
        ("dob-year", "1979"),
        ("sex", "female"),
        ("postcode", "S2 2RL"),
        ("address-line-1", "14 Granville Road"),
        ("phone", "07700 900982"),
        ("contact", "phone"),
        ("interpreter", "no"),
        ("gp", NAMED_GP),
        ("employment", "off-sick"),
        ("off-sick-day", "2"),
        ("off-sick-month", "11"),
        ("off-sick-year", "2026"),
        ("condition", "musculoskeletal"),
        ("condition-text", "Back pain from lifting"),
        ("support", "return-to-work"),
        ("consent-service", "yes"),
        ("consent-feedback", "yes"),
        ("consent-evaluation", "no"),
    ];
    if let Some(n) = nhs {
        a.push(("nhs-number", n));
    }
    a.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Draws the form for `service` in `browser`; its token.
async fn draw(browser: &Browser, server: &Server, service: &str) -> String {
    let page = browser.get(&server.url(&format!("/refer/{service}"))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    hidden(&page.body, "form-token")
}

/// Fills in and sends the form; the answer.
async fn send(
    browser: &Browser,
    server: &Server,
    service: &str,
    token: &str,
    answers: &[(String, String)],
) -> Page {
    let mut fields = answers.to_vec();
    fields.push(("form-token".into(), token.to_string()));
    fields.push(("service".into(), service.to_string()));
    browser
        .post(&server.url(&format!("/refer/{service}")), &fields)
        .await
}

/// A person refers themselves: the reference from the confirmation's address.
async fn refer_self(server: &Server, answers: &[(String, String)]) -> String {
    let browser = Browser::new(server);
    let token = draw(&browser, server, "sheffield-whs").await;
    let sent = send(&browser, server, "sheffield-whs", &token, answers).await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let location = sent.headers["location"].to_str().unwrap().to_string();
    location
        .strip_prefix("/refer/sheffield-whs/sent/")
        .unwrap_or_else(|| panic!("{location}"))
        .to_string()
}

fn sheffield() -> Principal {
    Principal::service("sheffield-whs")
}

/// The self-referral with `reference`, as the service finds it.
async fn found(server: &Server, reference: &str) -> Value {
    let (status, bundle) = server
        .as_(sheffield())
        .get(&format!(
            "/fhir/ServiceRequest?identifier=https://fhir.work-health-gateway.org/Id/self-referral|{reference}"
        ))
        .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"], 1, "{bundle}");
    bundle["entry"][0]["resource"].clone()
}

#[tokio::test]
async fn a_person_refers_themselves_and_the_service_finds_it() {
    let server = start();
    let browser = Browser::new(&server);

    // The start page lists the services that take self-referrals, and no other.
    let start = browser.get(&server.url("/refer")).await;
    assert_eq!(start.status, 200);
    assert!(
        start
            .body
            .contains("Refer yourself to Sheffield Work and Health Service")
    );
    assert!(start.body.contains("/refer/working-win"));
    assert!(
        !start.body.contains("/refer/workwell-north-cumbria"),
        "GP referrals only"
    );
    let csp = start.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );

    // By postcode: a district a service declares, sent in the body, not the address.
    let near = browser
        .post(
            &server.url("/refer/find"),
            &[("postcode".into(), "ne33 1aa".into())],
        )
        .await;
    assert_eq!(near.status, 200);
    assert!(
        near.body.contains("Services covering NE33"),
        "{}",
        near.body
    );
    assert!(
        near.body
            .contains("Refer yourself to WorkWell South Tyneside")
    );

    let token = draw(&browser, &server, "sheffield-whs").await;
    let cookie = browser.cookie.lock().unwrap().clone().unwrap();
    assert!(cookie.starts_with("whg_refer="), "{cookie}");
    let sent = send(&browser, &server, "sheffield-whs", &token, &answers(None)).await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let location = sent.headers["location"].to_str().unwrap().to_string();
    // Nothing of the person in the address: only the service and the reference.
    let reference = location
        .strip_prefix("/refer/sheffield-whs/sent/")
        .unwrap_or_else(|| panic!("{location}"));
    assert!(
        whg::app::self_referral::is_reference(reference),
        "{location}"
    );
    let form_page = browser.get(&server.url("/refer/sheffield-whs")).await;
    assert!(
        form_page
            .body
            .contains("Norfolk Park Medical Practice (synthetic)")
    );
    assert!(
        !form_page.body.contains("A test practice"),
        "the test tenant's are never offered"
    );
    let confirmation = browser.get(&server.url(&location)).await;
    assert_eq!(confirmation.headers["cache-control"], "no-store");
    assert_eq!(confirmation.status, 200);
    assert!(confirmation.body.contains("Referral sent"));
    assert!(confirmation.body.contains("within 14 days"));
    assert!(
        confirmation.body.contains("0114 496 0001"),
        "how to withdraw"
    );

    // The service finds it: the person is its requester, their NHS number is to trace, and the
    // consent they gave is stored as any referral's.
    let sr = found(&server, reference).await;
    assert_eq!(sr["requester"], sr["subject"], "{sr}");
    assert_eq!(
        sr["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "self-referral"
    );
    let id = sr["id"].as_str().unwrap();
    let (status, tasks) = server
        .as_(sheffield())
        .get(&format!("/fhir/Task?focus=ServiceRequest/{id}"))
        .await;
    assert_eq!(status, 200, "{tasks}");
    let task = &tasks["entry"][0]["resource"];
    assert_eq!(
        task["businessStatus"]["coding"][0]["code"], "received",
        "{task}"
    );
    let trace = task["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"]["coding"][0]["code"] == "nhs-number-to-trace")
        .expect("flagged for tracing");
    assert_eq!(
        trace["valueString"],
        "The person did not give their NHS number"
    );
    let patient = server
        .as_(sheffield())
        .get(&format!(
            "/fhir/{}",
            sr["subject"]["reference"].as_str().unwrap()
        ))
        .await
        .1;
    assert!(patient.get("identifier").is_none(), "{patient}");
    assert_eq!(
        patient["generalPractitioner"][0]["identifier"]["value"],
        NAMED_GP
    );
    let patient_id = patient["id"].as_str().unwrap();
    let (_, consents) = server
        .as_(sheffield())
        .get(&format!("/fhir/Consent?patient=Patient/{patient_id}"))
        .await;
    assert_eq!(consents["total"], 2, "service and feedback: {consents}");
    // The person recorded them, and the service withdraws one when they ask it to.
    let mut feedback = consents["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .find(|c| c.to_string().contains("referring-practice"))
        .expect("the feedback Consent");
    assert!(
        feedback.get("organization").is_none(),
        "no recording organisation: {feedback}"
    );
    feedback["status"] = json!("inactive");
    let consent_id = feedback["id"].as_str().unwrap().to_string();
    let (status, _, withdrawn) = server
        .as_(sheffield())
        .put(&format!("/fhir/Consent/{consent_id}"), &feedback)
        .await;
    assert_eq!(status, 200, "{withdrawn}");

    // The same form sent again (a double click, a reload) is the same referral.
    let again = send(&browser, &server, "sheffield-whs", &token, &answers(None)).await;
    assert_eq!(again.status, 303);
    assert_eq!(again.headers["location"].to_str().unwrap(), location);
    found(&server, reference).await;
    // The same form with other answers is not a second referral.
    let mut changed = answers(None);
    changed[0].1 = "Jo".into();
    let other = send(&browser, &server, "sheffield-whs", &token, &changed).await;
    assert_eq!(other.status, 409, "{}", other.body);
    assert!(other.body.contains(reference));

    // Audited as the person's, through the form.
    let logs = server.logs();
    assert!(
        !logs.contains("Self-Referrer") && !logs.contains("07700"),
        "no personal data in logs"
    );
}

#[tokio::test]
async fn nobody_but_the_service_reads_a_self_referral() {
    let server = start();
    let reference = refer_self(&server, &answers(Some("9990000018"))).await;
    let sr = found(&server, reference.as_str()).await;
    let id = sr["id"].as_str().unwrap();
    let patient = sr["subject"]["reference"].as_str().unwrap();

    // The practice the person named did not refer them: it reads none of it, finds none of it.
    let gp = server.as_(Principal::practice(NAMED_GP));
    for path in [
        format!("/fhir/ServiceRequest/{id}"),
        format!("/fhir/{patient}"),
        format!("/api/v1/referrals/{id}/workflow"),
    ] {
        let (status, body) = gp.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    for path in [
        format!(
            "/fhir/ServiceRequest?identifier=https://fhir.work-health-gateway.org/Id/self-referral|{reference}"
        ),
        "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018".to_string(),
        format!("/fhir/Consent?patient={patient}"),
    ] {
        let (status, bundle) = gp.get(&path).await;
        assert_eq!(status, 200, "{path}: {bundle}");
        assert_eq!(bundle["total"], 0, "{path}: {bundle}");
    }
    // Another service, and a caller without a token, neither.
    let (status, _) = server
        .as_(Principal::service("workwell-south-tyneside"))
        .get(&format!("/fhir/ServiceRequest/{id}"))
        .await;
    assert_eq!(status, 404);
    let anonymous = reqwest::get(server.url(&format!("/fhir/ServiceRequest/{id}")))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // The confirmation page looks nothing up: any reference shows the same page.
    let b = Browser::new(&server);
    let made_up = b
        .get(&server.url("/refer/sheffield-whs/sent/0000-0000-0000"))
        .await;
    assert_eq!(made_up.status, 200);
    assert!(!made_up.body.contains("Self-Referrer"));
}

#[tokio::test]
async fn an_nhs_number_typed_in_the_form_never_reaches_that_persons_record() {
    let server = start();
    // The person's GP referred them: their record, their consents.
    let mut gp_referral = referral("01-gp-work-stress-off-sick");
    gp_referral["patient"]["nhsNumber"] = json!("9990000018");
    let (gp_sr, gp_patient) = refer(&server, &gp_referral).await;
    let gp = server.as_(Principal::practice(DEFAULT_PRACTICE));
    let (_, before) = gp.get(&format!("/fhir/Patient/{gp_patient}")).await;
    let (_, consents_before) = gp
        .get(&format!("/fhir/Consent?patient=Patient/{gp_patient}"))
        .await;

    // Someone else types that NHS number, another name, address and consents into the form.
    let reference = refer_self(&server, &answers(Some("999 000 0018"))).await;
    let sr = found(&server, &reference).await;
    let self_patient = sr["subject"]["reference"]
        .as_str()
        .unwrap()
        .trim_start_matches("Patient/");
    assert_ne!(self_patient, gp_patient, "a new person, not the stored one");

    // The stored person is as they were, with the consents they had; the GP's referral too.
    let (_, after) = gp.get(&format!("/fhir/Patient/{gp_patient}")).await;
    assert_eq!(after, before);
    let (_, consents_after) = gp
        .get(&format!("/fhir/Consent?patient=Patient/{gp_patient}"))
        .await;
    assert_eq!(consents_after["total"], consents_before["total"]);
    let (status, _) = gp.get(&format!("/fhir/ServiceRequest/{gp_sr}")).await;
    assert_eq!(status, 200);
    // The service sees the number marked as typed, untraced, and the Task says to trace it.
    let (_, patient) = server
        .as_(sheffield())
        .get(&format!("/fhir/Patient/{self_patient}"))
        .await;
    assert_eq!(
        patient["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"], "02",
        "{patient}"
    );
}

#[tokio::test]
async fn every_problem_is_shown_at_its_question_and_nothing_is_stored() {
    let server = start();
    let browser = Browser::new(&server);
    let token = draw(&browser, &server, "sheffield-whs").await;
    let mut bad = answers(Some("999 000 0019"));
    bad.retain(|(k, _)| k != "given-name" && k != "consent-service");
    bad.push(("postcode".into(), "not a postcode".into()));
    bad.retain(|(k, v)| k != "postcode" || v != "S2 2RL");
    let page = send(&browser, &server, "sheffield-whs", &token, &bad).await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(page.body.contains("<title>Error: Refer yourself"));
    assert!(page.body.contains("There is a problem"));
    for (field, message) in [
        ("given-name", "Enter your first name"),
        ("nhs-number", "Enter your NHS number as 10 digits"),
        ("postcode", "Enter a real postcode"),
        ("consent-service", "Tick the box to agree"),
    ] {
        assert!(
            page.body.contains(&format!("href=\"#{field}\"")),
            "{field} in the summary"
        );
        assert!(
            page.body.contains(&format!("id=\"{field}-error\"")),
            "{field} error at the field"
        );
        assert!(page.body.contains(message), "{message}");
    }
    // What was typed is kept for the person to correct.
    assert!(page.body.contains("value=\"Self-Referrer\""));
    let (_, all) = server.as_(sheffield()).get("/fhir/ServiceRequest").await;
    assert_eq!(all["total"], 0, "nothing stored");
}

#[tokio::test]
async fn a_form_is_taken_only_from_the_gateways_own_page_in_the_same_browser() {
    let server = Server::start_with(&format!(
        "[self_referral]\nmin_fill_secs = 30\nmax_body_bytes = 16384\nburst_per_source = 1000.0\nburst_all_sources = 1000.0\n{PRACTICES}"
    ));
    let person = Browser::new(&server);
    let token = draw(&person, &server, "sheffield-whs").await;

    // Sent at once: not a person typing; drawn again with the answers kept.
    let hasty = send(&person, &server, "sheffield-whs", &token, &answers(None)).await;
    assert_eq!(hasty.status, 422, "{}", hasty.body);
    assert!(hasty.body.contains("Check your answers"));
    assert!(hasty.body.contains("value=\"Self-Referrer\""));
    assert_ne!(hidden(&hasty.body, "form-token"), token, "a new token");

    // Another browser with this token (the cookie is the binding), or none at all.
    let stranger = Browser::new(&server);
    let _ = draw(&stranger, &server, "sheffield-whs").await;
    let stolen = send(&stranger, &server, "sheffield-whs", &token, &answers(None)).await;
    assert_eq!(stolen.status, 403, "{}", stolen.body);
    // Drawn again for the browser it came from, the answers kept (a person's other window).
    assert!(stolen.body.contains("value=\"Self-Referrer\""));
    assert_ne!(hidden(&stolen.body, "form-token"), token);
    let cookieless = Browser::new(&server);
    let forged = send(
        &cookieless,
        &server,
        "sheffield-whs",
        &token,
        &answers(None),
    )
    .await;
    assert_eq!(forged.status, 403);
    let tampered = send(
        &person,
        &server,
        "sheffield-whs",
        &token.replace("v1.", "v1.1"),
        &answers(None),
    )
    .await;
    assert_eq!(tampered.status, 403);

    // Another site's page posting the form: its Origin, or the browser's own word for it.
    let mut elsewhere = Browser::new(&server);
    elsewhere.origin = "https://attacker.example".into();
    *elsewhere.cookie.lock().unwrap() = person.cookie.lock().unwrap().clone();
    let cross = send(&elsewhere, &server, "sheffield-whs", &token, &answers(None)).await;
    assert_eq!(cross.status, 403);
    let mut fields = answers(None);
    fields.push(("form-token".into(), token.clone()));
    let fetch_metadata = person
        .send(
            person
                .http
                .post(server.url("/refer/sheffield-whs"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "cross-site")
                .body(
                    form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(&fields)
                        .finish(),
                ),
        )
        .await;
    assert_eq!(fetch_metadata.status, 403);

    // The trap field filled, and a body past the limit.
    let mut trapped = answers(None);
    trapped.push(("website-address".into(), "http://spam.example".into()));
    let trap = send(&person, &server, "sheffield-whs", &token, &trapped).await;
    assert_eq!(trap.status, 400);
    assert!(
        !trap.body.contains("spam.example"),
        "the trap's value is not drawn back"
    );
    assert!(
        trap.body.contains("value=\"Self-Referrer\""),
        "the answers are"
    );
    // A post with no word of where it came from (no Origin, Referer or Fetch Metadata) and a
    // token not this browser's is refused outright: redrawing another site's answers into a
    // fresh form would let it plant one.
    let mut fields = answers(None);
    fields.push(("form-token".into(), token.clone()));
    let unsourced = Browser::new(&server)
        .send(
            reqwest::Client::new()
                .post(server.url("/refer/sheffield-whs"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(&fields)
                        .finish(),
                ),
        )
        .await;
    assert_eq!(unsourced.status, 403);
    assert!(!unsourced.body.contains("Self-Referrer"), "not drawn back");
    let mut huge = answers(None);
    huge.push(("support-text".into(), "x".repeat(20_000)));
    let big = send(&person, &server, "sheffield-whs", &token, &huge).await;
    assert_eq!(big.status, 413);

    // A form for a service that takes no self-referrals does not exist.
    let none = person
        .get(&server.url("/refer/workwell-north-cumbria"))
        .await;
    assert_eq!(none.status, 404);
    let (_, all) = server.as_(sheffield()).get("/fhir/ServiceRequest").await;
    assert_eq!(all["total"], 0, "nothing stored");
}

/// A flood: from one address the per-source limit holds; from many (behind a trusted proxy)
/// the cap on all sources does. Over either the answer is 429 with Retry-After and nothing is
/// stored, while a practice's API requests go on being answered.
#[tokio::test]
async fn a_flood_is_held_at_the_limits_and_nothing_else_waits() {
    let server = Server::start_with(&format!(
        "[self_referral]\nmin_fill_secs = 0\nper_source_per_hour = 1.0\nburst_per_source = 3.0\nall_sources_per_minute = 1.0\nburst_all_sources = 6.0\n\
         [limits]\nrequests_per_second_per_client = 100000.0\nburst_per_client = 100000.0\n\
         unauthenticated_requests_per_second_per_source = 100000.0\nunauthenticated_burst_per_source = 100000.0\n\
         trusted_proxies = [\"127.0.0.1/32\"]\n{PRACTICES}"
    ));
    let send_from = |source: String| {
        let server = &server;
        async move {
            let browser = Browser::new(server);
            let token = draw(&browser, server, "sheffield-whs").await;
            let mut fields = answers(None);
            fields.push(("form-token".into(), token));
            browser
                .send(
                    browser
                        .http
                        .post(server.url("/refer/sheffield-whs"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("origin", &browser.origin)
                        .header("x-forwarded-for", source)
                        .body(
                            form_urlencoded::Serializer::new(String::new())
                                .extend_pairs(&fields)
                                .finish(),
                        ),
                )
                .await
        }
    };
    // One address: three forms, then refused.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(send_from("203.0.113.7".into()).await.status);
    }
    assert_eq!(statuses, [303, 303, 303, 429, 429]);
    let refused = send_from("203.0.113.7".into()).await;
    assert!(refused.headers.contains_key("retry-after"));
    assert!(refused.body.contains("Too many forms"));
    // Forged and broken forms from many addresses spend nothing of the cap on all sources.
    for i in 0..20 {
        let browser = Browser::new(&server);
        let token = draw(&browser, &server, "sheffield-whs").await;
        let mut broken = answers(None);
        broken.retain(|(k, _)| k != "given-name");
        broken.push(("form-token".into(), token.clone()));
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&broken)
            .finish();
        let post = |origin: &str, source: String| {
            browser
                .http
                .post(server.url("/refer/sheffield-whs"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", origin)
                .header("x-forwarded-for", source)
                .body(body.clone())
        };
        let invalid = browser
            .send(post(&browser.origin, format!("192.0.2.{i}")))
            .await;
        assert_eq!(invalid.status, 422);
        let forged = browser
            .send(post(
                "https://attacker.example",
                format!("192.0.2.{}", 100 + i),
            ))
            .await;
        assert_eq!(forged.status, 403);
    }
    // Many addresses at once: the cap on all of them (6 in all, 3 already taken).
    let sends: Vec<_> = (0..12)
        .map(|i| send_from(format!("198.51.100.{i}")))
        .collect();
    let flood = futures::future::join_all(sends).await;
    let stored = flood.iter().filter(|p| p.status == 303).count();
    let limited = flood.iter().filter(|p| p.status == 429).count();
    assert_eq!(
        (stored, limited),
        (3, 9),
        "{:?}",
        flood.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    // Nothing past the limits was stored; the API and the form's pages are answered as before.
    let (_, all) = server.as_(sheffield()).get("/fhir/ServiceRequest").await;
    assert_eq!(all["total"], 6);
    let (status, _) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .get("/fhir/metadata")
        .await;
    assert_eq!(status, 200);
    let (status, _, outcome) = server
        .post_json("/api/v1/referrals", &referral("01-gp-work-stress-off-sick"))
        .await;
    assert_eq!(status, 201, "{outcome}");
    let page = Browser::new(&server)
        .get(&server.url("/refer/sheffield-whs"))
        .await;
    assert_eq!(page.status, 200);
}

/// What a person types is not an identity until the service has traced it: anyone can type
/// anyone's NHS number and practice, and a letter naming them could be filed in that person's
/// record. So no letter goes to a practice about a self-referral, even one the person named and
/// agreed to feedback to, while their NHS number is untraced; a decline queues none.
#[tokio::test]
async fn no_letter_goes_to_a_practice_about_a_self_referral_until_the_person_is_traced() {
    let server = start();
    let service = server.as_(sheffield());
    let letter = read_json(&root().join("fixtures/letters/01-letter-kept-job.json"));
    // Named a listed practice, gave an NHS number and agreed to feedback.
    let with_gp = refer_self(&server, &answers(Some("9990000018"))).await;
    let sr = found(&server, &with_gp).await;
    let id = sr["id"].as_str().unwrap();
    let (status, _, body) = service
        .post(
            &format!("/api/v1/referrals/{id}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = service
        .post(&format!("/api/v1/referrals/{id}/letters"), &letter)
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("traced and verified"), "{body}");

    // Declined, with a practice named, feedback agreed and an NHS number typed: no letter.
    let declined = refer_self(&server, &answers(Some("9990000026"))).await;
    let sr = found(&server, &declined).await;
    let id = sr["id"].as_str().unwrap();
    let decline = read_json(&root().join("fixtures/letters/10-decline-supported-elsewhere.json"));
    let (status, _, state) = service
        .post(&format!("/api/v1/referrals/{id}/triage"), &decline)
        .await;
    assert_eq!(status, 200, "{state}");
    let (_, letters) = service.get("/api/v1/letters").await;
    assert_eq!(letters["total"], 0, "no letter queued: {letters}");
    // And the practice the first person named sees no letter either.
    let (_, theirs) = server
        .as_(Principal::practice(NAMED_GP))
        .get("/api/v1/letters")
        .await;
    assert_eq!(theirs["total"], 0, "{theirs}");
}

/// A person refers themselves in a real browser (Debian's Chromium, tools/browser/refer.mjs),
/// with JavaScript and without: the start page and a search by postcode, the form sent empty
/// (every error in the summary and at its question), then filled in by its labels, and the
/// confirmation; axe-core finds nothing on any page. The service then finds both referrals.
/// Screenshots stay in target/artefacts/refer for CI to keep.
#[tokio::test]
async fn a_person_refers_themselves_in_chromium_with_and_without_javascript() {
    let Some(chromium) = chromium() else { return };
    let server = Server::start_with(&format!("[self_referral]\nmin_fill_secs = 1\n{PRACTICES}"));
    install_browser_tools();
    let root = root();
    let shots = root.join("target/artefacts/refer");
    let (ok, out) = run(std::process::Command::new("node")
        .arg(root.join("tools/browser/refer.mjs"))
        .args([
            "--base",
            &server.base,
            "--chromium",
            &chromium,
            "--screenshots",
        ])
        .arg(&shots));
    assert!(ok, "{out}");
    let seen: Value =
        serde_json::from_str(out.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(seen["ok"], true, "{seen}");
    assert!(seen["axeRulesChecked"].as_u64().unwrap() > 100, "{seen}");
    let references = seen["references"].as_array().unwrap();
    assert_eq!(references.len(), 2, "{seen}");
    for r in references {
        let sr = found(&server, r.as_str().unwrap()).await;
        let (_, patient) = server
            .as_(sheffield())
            .get(&format!(
                "/fhir/{}",
                sr["subject"]["reference"].as_str().unwrap()
            ))
            .await;
        assert_eq!(patient["name"][0]["given"][0], "Joanne", "{patient}");
    }
    assert!(shots.join("nojs-05-sent.png").exists());
}

/// The self-referral fixtures (fixtures/self-referral/): each form's answers, checked and mapped
/// as the form's use case does, give the expected FHIR transaction or the expected problems,
/// each at its question; the mapped resources pass the independent FHIR R4 checks and the
/// profile validators. `UPDATE_EXPECTED=1` rewrites the expected files (review the diff).
#[test]
fn the_self_referral_fixtures_map_to_their_expected_fhir() {
    use whg::intake::self_referral::{self as form, Answers, FormContext};
    let config = whg::config::Config::defaults();
    let services = form::self_referral_services(&config.services);
    let practices = vec![(
        "C88901".to_string(),
        "Norfolk Park Medical Practice (synthetic)".to_string(),
    )];
    let mut resources = Vec::new();
    let mut valid = 0;
    for path in fixtures("self-referral") {
        let fixture = read_json(&path);
        let mut answers = vec![(
            "service".to_string(),
            fixture["service"].as_str().unwrap().to_string(),
        )];
        for (k, v) in fixture["answers"].as_object().unwrap() {
            match v {
                Value::Array(values) => answers.extend(
                    values
                        .iter()
                        .map(|v| (k.clone(), v.as_str().unwrap().to_string())),
                ),
                v => answers.push((k.clone(), v.as_str().unwrap().to_string())),
            }
        }
        let answers = Answers(answers);
        let today =
            chrono::NaiveDate::parse_from_str(fixture["today"].as_str().unwrap(), "%Y-%m-%d")
                .unwrap();
        let sent_at: chrono::DateTime<chrono::Utc> =
            fixture["sentAt"].as_str().unwrap().parse().unwrap();
        let cx = FormContext {
            today,
            services: &services,
            practices: &practices,
        };
        let actual = match form::read(&answers, &cx) {
            Ok(r) => {
                let service = config.service(&r.service).unwrap();
                let reference = fixture["reference"].as_str().unwrap();
                let s = form::submission(&r, service, reference, answers.content_hash(), sent_at);
                let bundle = s.transaction_bundle();
                resources.extend(
                    bundle["entry"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["resource"].clone()),
                );
                valid += 1;
                json!({ "bundle": bundle })
            }
            Err(issues) => json!({
                "issues": issues.iter().map(|i| json!({
                    "expression": i.expression,
                    "code": i.code.as_str(),
                    "diagnostics": i.diagnostics,
                })).collect::<Vec<_>>()
            }),
        };
        let expected = expected_path(&path);
        if std::env::var_os("UPDATE_EXPECTED").is_some() {
            std::fs::write(
                &expected,
                format!("{}\n", serde_json::to_string_pretty(&actual).unwrap()),
            )
            .unwrap();
            continue;
        }
        assert_eq!(actual, read_json(&expected), "{}", path.display());
    }
    assert_eq!(valid, 3, "three valid fixtures");
    check_with_independent_fhir(&resources);
}
