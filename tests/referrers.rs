//! Referrers that are not GP practices (issue 17, part 2): Talking Therapies, physiotherapy,
//! secondary care, the voluntary sector and employers, each a registered client system of its
//! own kind. Each refers over HTTP as itself, on its own routes, and reads back only what it
//! sent; an employer refers only with the person's recorded agreement and is shown nothing the
//! service writes. Thought of as an attacker with each of these tokens: what can it read,
//! change or cause?

mod common;

use common::clients::{client_token, es384_client};
use common::*;
use serde_json::{Value, json};
use whg::auth::Principal;
use whg::caller::Role;

fn fixture(name: &str) -> Value {
    read_json(
        &root()
            .join("fixtures/referrals/valid")
            .join(format!("{name}.json")),
    )
}

const TALKING_THERAPIES: &str = "29-talking-therapies-service-depression-retail";
const PHYSIOTHERAPY: &str = "30-physiotherapy-msk-warehouse-back-pain";
const SECONDARY_CARE: &str = "31-secondary-care-long-covid-teacher";
const VOLUNTARY_SECTOR: &str = "32-voluntary-sector-carer-anxiety";
const EMPLOYER: &str = "33-employer-hr-driver-stay-in-work";

/// The referrer a fixture names, as a client acting for it.
fn sender(body: &Value) -> Principal {
    sender_of(body).expect("the fixture names its sender")
}

async fn post_as(
    server: &Server,
    token: &str,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = http()
        .post(server.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .json(body)
        .send()
        .await
        .unwrap();
    read_response(r).await
}

async fn get_as(server: &Server, token: &str, path: &str) -> (u16, Value) {
    let r = http()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read_response(r).await;
    (status, body)
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

async fn stored_referrals(server: &Server) -> i64 {
    use sqlx::Row;
    let mut db = server.db().await;
    sqlx::query("SELECT COUNT(*) FROM referrals")
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get::<i64, _>(0)
}

#[tokio::test]
async fn each_kind_of_referrer_refers_as_its_own_registered_client_and_reads_back_what_it_sent() {
    let server = Server::start();
    for (n, name) in [
        TALKING_THERAPIES,
        PHYSIOTHERAPY,
        SECONDARY_CARE,
        VOLUNTARY_SECTOR,
        EMPLOYER,
    ]
    .into_iter()
    .enumerate()
    {
        let body = fixture(name);
        let kind = body["referringOrganisation"]["kind"].as_str().unwrap();
        let code = body["referringOrganisation"]["code"].as_str().unwrap();
        // Registered as an operator would, with its own key; its token from the SMART
        // Backend Services exchange.
        let id = format!("referrer-{n}");
        let key = es384_client(&server, &id, kind, code, &[]);
        let token = client_token(&server, &id, &key).await;

        let (status, headers, outcome) = post_as(&server, &token, "/api/v1/referrals", &body).await;
        assert_eq!(status, 201, "{name}: {outcome}");
        let sr_id = location_id(&headers);
        let (status, sr) = get_as(&server, &token, &format!("/fhir/ServiceRequest/{sr_id}")).await;
        assert_eq!(status, 200, "{name} reads back its own referral: {sr}");
        assert_eq!(sr["identifier"][0]["value"], body["referralId"]);
        assert_eq!(
            sr["extension"][0]["valueCodeableConcept"]["coding"][0]["code"], body["route"],
            "{name}: the route it referred on"
        );

        // The organisation it stated is named in its kind's own identifier system, never as a
        // practice: nothing of a practice's (feedback, the person's GP) is taken from it.
        let assigner = sr["identifier"][0]["assigner"]["reference"]
            .as_str()
            .unwrap();
        let (_, organisation) = get_as(&server, &token, &format!("/fhir/{assigner}")).await;
        let system = if kind == "employer" {
            "https://fhir.work-health-gateway.org/Id/employer".to_string()
        } else {
            format!("https://fhir.work-health-gateway.org/Id/referrer/{kind}")
        };
        assert_eq!(
            organisation["identifier"],
            json!([{ "system": system, "value": code }]),
            "{name}: {organisation}"
        );
        let patient_ref = sr["subject"]["reference"].as_str().unwrap().to_string();
        let (status, patient) = get_as(&server, &token, &format!("/fhir/{patient_ref}")).await;
        assert_eq!(status, 200, "{patient}");
        assert!(
            patient.get("generalPractitioner").is_none(),
            "{name}: a referrer of another kind is not the person's GP practice"
        );

        // The service it referred to sees it under the person's agreement.
        let service = body["targetService"].as_str().unwrap();
        let (status, seen) = server
            .as_(Principal::service(service))
            .get(&format!("/fhir/ServiceRequest/{sr_id}"))
            .await;
        assert_eq!(status, 200, "{name}: {seen}");

        // The person's agreements it recorded: feedback to itself (never for an employer).
        let (_, consents) = get_as(
            &server,
            &token,
            &format!("/fhir/Consent?patient={patient_ref}&status=active"),
        )
        .await;
        let text = consents.to_string();
        let feedback = text.contains("consent-recipient\",\"code\":\"referrer\"");
        let asked = body["consent"]["feedbackToReferrer"] == json!(true);
        assert_eq!(feedback, asked, "{name}: {consents}");
        assert!(
            !text.contains("\"code\":\"referring-practice\""),
            "{name}: no practice is granted anything by a referrer of another kind"
        );
    }
}

#[tokio::test]
async fn a_referrer_sends_only_as_itself_on_its_own_routes() {
    let server = Server::start();
    let body = fixture(TALKING_THERAPIES);
    let talking_therapies = sender(&body);
    assert_eq!(talking_therapies.role, Role::TalkingTherapies);

    // Another kind's token for the same code, another organisation's token of the same kind,
    // a practice's token: none sends it.
    for (who, principal) in [
        (
            "physiotherapy, same code",
            Principal::new(Role::Physiotherapy, "TAJ"),
        ),
        (
            "talking therapies, another code",
            Principal::new(Role::TalkingTherapies, "RHQ"),
        ),
        ("a practice", Principal::practice(DEFAULT_PRACTICE)),
        ("the service", Principal::service("sheffield-whs")),
    ] {
        let (status, _, outcome) = post_as(
            &server,
            &server.token(&principal),
            "/api/v1/referrals",
            &body,
        )
        .await;
        assert_eq!(status, 403, "{who}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }

    // Its own token, on another kind's route; to a service that does not take its route.
    let token = server.token(&talking_therapies);
    let mut on_employer_route = body.clone();
    on_employer_route["route"] = json!("employer");
    let (status, _, outcome) =
        post_as(&server, &token, "/api/v1/referrals", &on_employer_route).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [("route".into(), "business-rule".into())]
    );

    let mut employer = fixture(EMPLOYER);
    employer["targetService"] = json!("sheffield-whs");
    let (status, _, outcome) = post_as(
        &server,
        &server.token(&sender(&employer)),
        "/api/v1/referrals",
        &employer,
    )
    .await;
    assert_eq!(status, 422, "{outcome}");
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains("does not take referrals on the 'employer' route"),
        "{diagnostics}"
    );

    // A fit note is a practice's to send; an employer holds no scope for it either.
    let note = read_json(&root().join("fixtures/fit-notes/valid/01-doctor-not-fit-back-pain.json"));
    let (status, _, outcome) = post_as(
        &server,
        &server.token(&sender(&fixture(EMPLOYER))),
        "/api/v1/fit-notes",
        &note,
    )
    .await;
    assert_eq!(status, 403, "{outcome}");
    assert_eq!(
        stored_referrals(&server).await,
        0,
        "nothing refused is stored"
    );
}

#[tokio::test]
async fn an_employer_refers_only_with_the_persons_agreement() {
    let server = Server::start();
    let mut body = fixture(EMPLOYER);
    body["consent"]["patientAgreed"] = json!(false);
    let token = server.token(&sender(&body));
    let (status, _, outcome) = post_as(&server, &token, "/api/v1/referrals", &body).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome["issue"][0]["expression"][0]
            .as_str()
            .unwrap()
            .starts_with("consent"),
        "{outcome}"
    );
    assert_eq!(stored_referrals(&server).await, 0);

    // Nor may it say the person agreed to what an employer is never given.
    let mut body = fixture(EMPLOYER);
    body["consent"]["feedbackToReferrer"] = json!(true);
    let (status, _, outcome) = post_as(&server, &token, "/api/v1/referrals", &body).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [("consent.feedbackToReferrer".into(), "forbidden".into())]
    );
    assert_eq!(stored_referrals(&server).await, 0);
}

#[tokio::test]
async fn referrers_read_nothing_they_did_not_send_and_an_employer_nothing_the_service_wrote() {
    let server = Server::start();
    let tt_body = fixture(TALKING_THERAPIES);
    let tt = server.token(&sender(&tt_body));
    let (status, headers, outcome) = post_as(&server, &tt, "/api/v1/referrals", &tt_body).await;
    assert_eq!(status, 201, "{outcome}");
    let tt_referral = location_id(&headers);

    let employer_body = fixture(EMPLOYER);
    let employer = server.token(&sender(&employer_body));
    let (status, headers, outcome) =
        post_as(&server, &employer, "/api/v1/referrals", &employer_body).await;
    assert_eq!(status, 201, "{outcome}");
    let employer_referral = location_id(&headers);

    let (practice_referral, practice_person) =
        refer(&server, &referral("01-gp-work-stress-off-sick")).await;
    let person_of = |token: &str, referral: &str| {
        let (server, token, referral) = (&server, token.to_string(), referral.to_string());
        async move {
            let (_, sr) = get_as(server, &token, &format!("/fhir/ServiceRequest/{referral}")).await;
            sr["subject"]["reference"].as_str().unwrap().to_string()
        }
    };
    let people = [
        (&tt_referral, person_of(&tt, &tt_referral).await),
        (
            &employer_referral,
            person_of(&employer, &employer_referral).await,
        ),
        (&practice_referral, format!("Patient/{practice_person}")),
    ];

    // Each referrer: its own referral only, by id and by search; never another's, whatever
    // its kind, and never a practice's.
    let other_tt = server.token(&Principal::new(Role::TalkingTherapies, "RHQ"));
    // One NHS trust runs several services under one ODS code: its physiotherapy service is
    // not its Talking Therapies service.
    let same_code_other_kind = server.token(&Principal::new(Role::Physiotherapy, "TAJ"));
    let practice = server.token(&Principal::practice(DEFAULT_PRACTICE));
    for (who, token, own) in [
        ("talking therapies", &tt, Some(&tt_referral)),
        ("employer", &employer, Some(&employer_referral)),
        ("another talking therapies service", &other_tt, None),
        ("another kind", &same_code_other_kind, None),
        ("the practice", &practice, Some(&practice_referral)),
    ] {
        for referral in [&tt_referral, &employer_referral, &practice_referral] {
            let (status, body) =
                get_as(&server, token, &format!("/fhir/ServiceRequest/{referral}")).await;
            let expected = if Some(referral) == own { 200 } else { 404 };
            assert_eq!(status, expected, "{who} reading {referral}: {body}");
        }
        let (status, found) = get_as(&server, token, "/fhir/ServiceRequest?_count=50").await;
        assert_eq!(status, 200, "{found}");
        let ids: Vec<String> = entries(&found)
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, own.into_iter().cloned().collect::<Vec<_>>(), "{who}");
        for (referral, person) in &people {
            let (status, body) = get_as(&server, token, &format!("/fhir/{person}")).await;
            let expected = if Some(*referral) == own { 200 } else { 404 };
            assert_eq!(
                status, expected,
                "{who} reading the person {referral} is about: {body}"
            );
        }
    }

    // The services accept both; the workflow Task is what the service wrote.
    for (service, referral) in [
        ("sheffield-whs", &tt_referral),
        ("workwell-south-tyneside", &employer_referral),
    ] {
        let (status, _, state) = server
            .as_(Principal::service(service))
            .post(
                &format!("/api/v1/referrals/{referral}/triage"),
                &json!({ "decision": "accept" }),
            )
            .await;
        assert_eq!(status, 200, "{state}");
    }

    // Talking Therapies asked for feedback with the person's agreement: it sees the decision.
    let (status, tasks) = get_as(
        &server,
        &tt,
        &format!("/fhir/Task?focus=ServiceRequest/{tt_referral}"),
    )
    .await;
    assert_eq!(status, 200, "{tasks}");
    assert_eq!(entries(&tasks).len(), 1, "{tasks}");
    assert_eq!(entries(&tasks)[0]["status"], "accepted", "{tasks}");

    // The employer is shown nothing the service wrote: not by search, not by id.
    let (status, tasks) = get_as(
        &server,
        &employer,
        &format!("/fhir/Task?focus=ServiceRequest/{employer_referral}"),
    )
    .await;
    assert_eq!(status, 200, "{tasks}");
    assert!(entries(&tasks).is_empty(), "{tasks}");
    let (_, seen_by_service) = server
        .as_(Principal::service("workwell-south-tyneside"))
        .get(&format!(
            "/fhir/Task?focus=ServiceRequest/{employer_referral}"
        ))
        .await;
    let task_id = entries(&seen_by_service)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = get_as(&server, &employer, &format!("/fhir/Task/{task_id}")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = get_as(
        &server,
        &employer,
        &format!("/api/v1/referrals/{employer_referral}/workflow"),
    )
    .await;
    // What it is told of its own referral is what it sent: the service's record is withheld.
    assert_eq!(status, 200, "{body}");
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["referral", "serviceRequestStatus", "withheld"],
        "{body}"
    );
    let (status, letters) = get_as(&server, &employer, "/api/v1/letters").await;
    assert_eq!(status, 200, "{letters}");
    assert_eq!(letters["letters"], json!([]), "{letters}");

    // Nor may a referrer act on the referral as a service would.
    let (status, _, outcome) = post_as(
        &server,
        &tt,
        &format!("/api/v1/referrals/{tt_referral}/triage"),
        &json!({ "decision": "decline", "reason": "not-eligible" }),
    )
    .await;
    assert_eq!(status, 403, "{outcome}");
}

#[tokio::test]
async fn an_employer_never_undoes_a_refusal_and_is_not_told_what_others_recorded() {
    let server = Server::start();
    let workwell = "workwell-south-tyneside";
    // The person's practice referred them to WorkWell; they then withdrew their agreement.
    let mut by_practice = referral_for(40, workwell);
    by_practice["patient"]["nhsNumber"] = fixture(EMPLOYER)["patient"]["nhsNumber"].clone();
    let (_, patient) = refer(&server, &by_practice).await;
    let mut consent = consent_for(&server, &patient, "work-health-service").await;
    consent["status"] = json!("inactive");
    let consent_id = consent["id"].as_str().unwrap().to_string();
    let (status, _, updated) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .put(&format!("/fhir/Consent/{consent_id}"), &consent)
        .await;
    assert_eq!(status, 200, "{updated}");

    // The employer says the person agreed, dated now (after the withdrawal): refused, and told
    // nothing of the practice's record.
    let body = fixture(EMPLOYER);
    let (status, _, outcome) = post_as(
        &server,
        &server.token(&sender(&body)),
        "/api/v1/referrals",
        &body,
    )
    .await;
    assert_eq!(status, 422, "{outcome}");
    let text = outcome.to_string();
    assert!(
        !text.contains("Consent/") && !text.contains(&consent_id),
        "the refusal names no Consent of another party's: {outcome}"
    );
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("does not allow this referral"),
        "{outcome}"
    );
    assert_eq!(stored_referrals(&server).await, 1, "only the practice's");
}

/// A gateway whose referrers take letters: Talking Therapies TAJ at a FHIR endpoint (the
/// receiver), the Long COVID clinic and the physiotherapy service by secure e-mail (the SMTP
/// server).
fn letters_gateway(receiver_url: &str, smtp: &RecordingServer, dir: &std::path::Path) -> Server {
    let smtp_table = format!(
        "[delivery.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"whg-letters@example.nhs.uk\"\n",
        smtp.port
    );
    Server::start_with(&format!(
        "{}\n\
         [referrers.talking-therapies.TAJ]\nchannel = \"fhir\"\nname = \"Sheffield Talking Therapies\"\nendpoint = \"{receiver_url}/fhir\"\n\
         token_url = \"{receiver_url}/token\"\nclient_id = \"whg-test\"\nclient_secret_file = {:?}\n\
         [referrers.secondary-care.RHQ-LC]\nchannel = \"email\"\naddress = \"longcovid.clinic@nhs.net\"\n\
         [referrers.physiotherapy.RHQ]\nchannel = \"email\"\naddress = \"msk.physio@nhs.net\"\n",
        common::receiver::letters_config(receiver_url, dir, &smtp_table),
        // The secret letters_config wrote for the practice's system: the receiver takes one.
        dir.join("c88901-secret").display().to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_triage_decision_and_letters_reach_each_referrer_by_its_own_route_under_the_persons_consent()
 {
    use base64::Engine as _;
    use common::receiver::{Receiver, flat, letter, pdf_text, wait_one, whs};
    let (receiver, receiver_url) = Receiver::start().await;
    let smtp = RecordingServer::start("tools/smtp_receiver.py");
    let dir = tempfile::tempdir().unwrap();
    let server = letters_gateway(&receiver_url, &smtp, dir.path());

    // Talking Therapies referred; the person agreed to feedback to it. The service declines:
    // the decision, with its reason, reaches TAJ's system as a BaRS message.
    let tt_body = fixture(TALKING_THERAPIES);
    let tt = server.token(&sender(&tt_body));
    let (status, headers, outcome) = post_as(&server, &tt, "/api/v1/referrals", &tt_body).await;
    assert_eq!(status, 201, "{outcome}");
    let tt_referral = location_id(&headers);
    let (status, _, state) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{tt_referral}/triage"),
            &json!({ "decision": "decline", "reason": "not-eligible", "criterion": "area", "note": "Rotherham's service can help." }),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    let decline = state["letters"][0]["id"].as_str().unwrap().to_string();
    let delivered = wait_one(&server, &decline, "accepted", 15).await;
    assert_eq!(delivered["delivery"]["channel"], "fhir", "{delivered}");
    let messages = receiver.delivered();
    assert_eq!(messages.len(), 1, "only the decline went anywhere");
    let bundle = &messages[0].bundle;
    assert!(
        bundle
            .to_string()
            .contains("https://fhir.work-health-gateway.org/Id/referrer/talking-therapies"),
        "the message is addressed to the Talking Therapies service as itself: {bundle}"
    );
    let text = flat(&pdf_text(&common::receiver::document_pdf(bundle)));
    for needed in [
        "Sheffield Talking Therapies",
        "Talking Therapies TAJ",
        "Referral not accepted",
        "Rotherham's service can help.",
        "No further action is needed from you",
    ] {
        assert!(text.contains(needed), "{needed} not in the letter:\n{text}");
    }
    assert!(
        !text.contains("GP"),
        "a Talking Therapies service is not written to as a GP: {text}"
    );
    // The referrer reads the letter it was sent; another referrer does not learn of it.
    let (status, letters) = get_as(&server, &tt, "/api/v1/letters").await;
    assert_eq!(status, 200, "{letters}");
    assert!(letters.to_string().contains(&decline), "{letters}");
    let physio_body = fixture(PHYSIOTHERAPY);
    let physio = server.token(&sender(&physio_body));
    let (status, letters) = get_as(&server, &physio, "/api/v1/letters").await;
    assert_eq!(status, 200, "{letters}");
    assert!(!letters.to_string().contains(&decline), "{letters}");
    let (status, _) = get_as(&server, &physio, &format!("/api/v1/letters/{decline}")).await;
    assert_eq!(status, 404, "another referrer's letter is not known to it");

    // The Long COVID clinic referred, with the person's agreement to feedback; it takes letters
    // by secure e-mail. The adviser's letter arrives as a PDF attached to a message that names
    // nobody.
    let clinic_body = fixture(SECONDARY_CARE);
    let clinic = server.token(&sender(&clinic_body));
    let (status, headers, outcome) =
        post_as(&server, &clinic, "/api/v1/referrals", &clinic_body).await;
    assert_eq!(status, 201, "{outcome}");
    let clinic_referral = location_id(&headers);
    let (status, _, state) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{clinic_referral}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    let (status, headers, body) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{clinic_referral}/letters"),
            &letter(
                "routine",
                "Seen twice; a phased return is agreed with the school.",
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let feedback = location_id(&headers);
    let delivered = wait_one(&server, &feedback, "accepted", 15).await;
    assert_eq!(delivered["delivery"]["channel"], "email", "{delivered}");
    let mails = smtp.mails_to("longcovid.clinic@nhs.net", 1, 15).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail["from"], "whg-letters@example.nhs.uk");
    let attachment = &mail["attachments"][0];
    assert_eq!(attachment["contentType"], "application/pdf", "{mail}");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(attachment["base64"].as_str().unwrap())
        .unwrap();
    let text = flat(&pdf_text(&pdf));
    for needed in [
        "Long COVID clinic, Sheffield (synthetic)",
        "Secondary care RHQ-LC",
        "Seen twice; a phased return is agreed with the school.",
    ] {
        assert!(text.contains(needed), "{needed} not in the letter:\n{text}");
    }
    assert!(
        mail["body"]
            .as_str()
            .unwrap()
            .contains("Your reference for the referral: LCC-2026-311"),
        "{mail}"
    );
    let person = &clinic_body["patient"];
    let outside_pdf = format!("{} {}", mail["headers"], mail["body"]);
    for secret in [
        person["nhsNumber"].as_str().unwrap(),
        person["name"]["family"].as_str().unwrap(),
        person["birthDate"].as_str().unwrap(),
    ] {
        assert!(
            !outside_pdf.contains(secret),
            "the e-mail itself names nobody ({secret}): {outside_pdf}"
        );
    }

    // The physiotherapy service referred, but the person did not agree to feedback to it: the
    // letter is written, and stopped by consent before it leaves.
    let (status, headers, outcome) =
        post_as(&server, &physio, "/api/v1/referrals", &physio_body).await;
    assert_eq!(status, 201, "{outcome}");
    let physio_referral = location_id(&headers);
    let (status, _, state) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{physio_referral}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    let (status, headers, body) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{physio_referral}/letters"),
            &letter("routine", "Seen once."),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let stopped = wait_one(&server, &location_id(&headers), "cancelled", 15).await;
    assert!(
        stopped["delivery"]["lastError"]
            .as_str()
            .unwrap()
            .contains("consent does not allow this letter"),
        "{stopped}"
    );
    assert!(smtp.mails_to("msk.physio@nhs.net", 0, 15).await.is_empty());

    // An employer referred: nothing about the person is ever written to it, whether the service
    // declines or writes a letter.
    let employer_body = fixture(EMPLOYER);
    let employer = server.token(&sender(&employer_body));
    let (status, headers, outcome) =
        post_as(&server, &employer, "/api/v1/referrals", &employer_body).await;
    assert_eq!(status, 201, "{outcome}");
    let employer_referral = location_id(&headers);
    let workwell = server.as_(Principal::service(
        employer_body["targetService"].as_str().unwrap(),
    ));
    let (status, _, state) = workwell
        .post(
            &format!("/api/v1/referrals/{employer_referral}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    let (status, _, outcome) = workwell
        .post(
            &format!("/api/v1/referrals/{employer_referral}/letters"),
            &letter("routine", "Seen once."),
        )
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("an employer is never sent letters"),
        "{outcome}"
    );
    let (status, letters) = get_as(&server, &employer, "/api/v1/letters").await;
    assert_eq!(status, 200, "{letters}");
    assert_eq!(letters["total"], 0, "{letters}");
    assert_eq!(receiver.delivered().len(), 1);
}
