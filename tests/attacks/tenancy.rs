//! Attack 3: search looser than read. And the tenancy matrix: for every role, every stored
//! resource, read-by-id and every advertised search parameter, search results are a subset of
//! what read allows, with exact totals.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use whg::auth::{Principal, Role};

use crate::common::*;

pub const WHS: &str = "sheffield-whs";
pub const WORKWELL: &str = "workwell-south-tyneside";
/// A second practice, which only ever files one fit note for the person.
pub const OTHER_PRACTICE: &str = "B82005";

pub fn practice_a(server: &Server) -> Actor<'_> {
    server.as_(Principal::practice(DEFAULT_PRACTICE))
}

pub fn practice_b(server: &Server) -> Actor<'_> {
    server.as_(Principal::practice(OTHER_PRACTICE))
}

pub fn service<'a>(server: &'a Server, id: &str) -> Actor<'a> {
    server.as_(Principal::service(id))
}

pub fn ig(server: &Server) -> Actor<'_> {
    server.as_(Principal::new(Role::InformationGovernance, "ig-team"))
}

/// Ids of the resources of `resource_type` a referral brought in or was given since.
pub async fn members(server: &Server, referral: &str, resource_type: &str) -> BTreeSet<String> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT resource_id FROM referral_members WHERE service_request_id = $1 AND resource_type = $2",
    )
    .bind(referral)
    .bind(resource_type)
    .fetch_all(&mut server.db().await)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// Ids of a searchset's entries.
pub fn ids(bundle: &Value) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// A fit note practice B files for the person with NHS number `nhs`, stating its own details.
pub fn other_practices_fit_note(nhs: &str) -> Value {
    let mut note =
        read_json(&root().join("fixtures/fit-notes/valid/01-doctor-not-fit-back-pain.json"));
    note["fitNoteId"] = json!("B-FN-1");
    note["practice"] =
        json!({ "odsCode": OTHER_PRACTICE, "name": "Leeds Road Surgery (synthetic)" });
    note["patient"]["nhsNumber"] = json!(nhs);
    note["patient"]["postcode"] = json!("LS1 4AP");
    note
}

/// A routine letter from the service to the practice.
pub fn letter(summary: &str) -> Value {
    json!({
        "priority": "routine",
        "summary": summary,
        "supportGiven": ["advice-session"],
        "plan": { "type": "return-to-work-plan", "text": "Phased return over four weeks." },
        "recommendations": "Consider amended duties on the next fit note.",
        "outcomes": { "employment": "returned-to-work", "health": ["managing-health-better"] },
        "author": { "name": "Sam Patel", "role": "Work and health adviser" }
    })
}

/// What the attacks are tried against.
pub struct Scenario {
    /// The person practice A referred to both services, and B filed a fit note for.
    pub person: String,
    pub nhs: String,
    /// A's referral of the person to WHS: triaged, contacted, written to.
    pub a_to_whs: String,
    /// A's referral of the same person to WorkWell.
    pub a_to_workwell: String,
    /// B's fit note.
    pub b_fit_note: String,
    /// Another person A referred to WHS, whose agreement A then withdrew.
    pub withdrawn_person: String,
    pub withdrawn_referral: String,
}

/// Practice A refers a person to WHS and to WorkWell; WHS accepts, records a contact and writes
/// a letter; practice B files a fit note for the same person; a second person's agreement to
/// WHS is withdrawn by A.
pub async fn scenario(server: &Server) -> Scenario {
    let nhs = nhs_number(101);
    let (a_to_whs, person) = refer(server, &referral_for(101, WHS)).await;
    let mut to_workwell = referral_for(101, WORKWELL);
    to_workwell["referralId"] = json!("ATTACK-101-WORKWELL");
    let (a_to_workwell, again) = refer(server, &to_workwell).await;
    assert_eq!(person, again, "one person");
    let whs = service(server, WHS);
    for (step, body) in [
        ("triage", json!({ "decision": "accept" })),
        (
            "contacts",
            json!({ "date": "2026-03-09", "channel": "phone", "attended": false }),
        ),
        (
            "letters",
            letter("Did not attend the first appointment; offered another."),
        ),
    ] {
        let (status, _, body) = whs
            .post(&format!("/api/v1/referrals/{a_to_whs}/{step}"), &body)
            .await;
        assert!(status == 200 || status == 201, "{step}: {status} {body}");
    }
    let (status, headers, body) = server
        .post_json("/api/v1/fit-notes", &other_practices_fit_note(&nhs))
        .await;
    assert_eq!(status, 201, "{body}");
    let b_fit_note = location_id(&headers);

    let (withdrawn_referral, withdrawn_person) = refer(server, &referral_for(102, WHS)).await;
    let mut consent = consent_for(server, &withdrawn_person, "work-health-service").await;
    consent["status"] = json!("inactive");
    let id = consent["id"].as_str().unwrap().to_string();
    let (status, _, body) = practice_a(server)
        .put(&format!("/fhir/Consent/{id}"), &consent)
        .await;
    assert_eq!(status, 200, "{body}");
    Scenario {
        person,
        nhs,
        a_to_whs,
        a_to_workwell,
        b_fit_note,
        withdrawn_person,
        withdrawn_referral,
    }
}

#[tokio::test]
async fn filing_one_fit_note_makes_a_practice_party_to_that_fit_note_only() {
    let server = Server::start();
    let s = scenario(&server).await;
    let b = practice_b(&server);
    // The attacker knows only the NHS number.
    let (status, bundle) = b
        .get(&format!(
            "/fhir/Observation?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{}&_count=100",
            s.nhs
        ))
        .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(ids(&bundle), BTreeSet::from([s.b_fit_note.clone()]));
    assert_eq!(bundle["total"], 1);
    // Each of A's employment Observations is refused by id, as before.
    for obs in members(&server, &s.a_to_whs, "Observation").await {
        assert_eq!(b.get(&format!("/fhir/Observation/{obs}")).await.0, 404);
    }
    // B's view of the person is what B stated: not A's address, phone or e-mail.
    let (status, patient) = b.get(&format!("/fhir/Patient/{}", s.person)).await;
    assert_eq!(status, 200, "{patient}");
    let text = patient.to_string();
    assert!(text.contains("LS1 4AP"), "{patient}");
    for a_stated in [
        "S2 2RL",
        "07700 900123",
        "joanne.whitworth@example.org",
        "Granville",
    ] {
        assert!(!text.contains(a_stated), "B sees A's {a_stated}: {patient}");
    }
    // Nor the fit-note summary of other practices, nor the person's Consents with A.
    let (_, summary) = b
        .get(&format!("/api/v1/patients/{}/fit-notes/summary", s.nhs))
        .await;
    assert!(!summary.to_string().contains(&s.a_to_whs), "{summary}");
    let (_, consents) = b
        .get(&format!("/fhir/Consent?patient=Patient/{}", s.person))
        .await;
    assert_eq!(consents["total"], 0, "{consents}");
}

#[tokio::test]
async fn a_service_searches_only_the_records_of_referrals_addressed_to_it() {
    let server = Server::start();
    let s = scenario(&server).await;
    let workwell = service(&server, WORKWELL);
    let whs_only = members(&server, &s.a_to_whs, "Observation").await;
    let workwell_own = members(&server, &s.a_to_workwell, "Observation").await;
    assert!(!whs_only.is_empty() && !workwell_own.is_empty());
    let (status, bundle) = workwell
        .get(&format!(
            "/fhir/Observation?patient=Patient/{}&_count=100",
            s.person
        ))
        .await;
    assert_eq!(status, 200, "{bundle}");
    let found = ids(&bundle);
    assert!(
        found.is_disjoint(&whs_only),
        "WorkWell sees WHS's: {found:?}"
    );
    assert!(
        workwell_own.is_subset(&found),
        "{found:?} lacks {workwell_own:?}"
    );
    for obs in &whs_only {
        assert_eq!(
            workwell.get(&format!("/fhir/Observation/{obs}")).await.0,
            404
        );
    }
    // Nor the person's Consents about WHS (what they agreed or refused with another service).
    let (_, consents) = workwell
        .get(&format!(
            "/fhir/Consent?patient=Patient/{}&_count=100",
            s.person
        ))
        .await;
    let whs_consents = members(&server, &s.a_to_whs, "Consent").await;
    assert!(!whs_consents.is_empty());
    assert!(ids(&consents).is_disjoint(&whs_consents), "{consents}");
    assert_eq!(
        ids(&consents),
        members(&server, &s.a_to_workwell, "Consent").await
    );
    // Nor WHS's contact with the person, its workflow or its letters.
    for t in [
        "Consent",
        "Encounter",
        "Task",
        "Communication",
        "DocumentReference",
        "Composition",
    ] {
        for id in members(&server, &s.a_to_whs, t).await {
            assert_eq!(
                workwell.get(&format!("/fhir/{t}/{id}")).await.0,
                404,
                "{t}/{id}"
            );
        }
    }
}

#[tokio::test]
async fn after_a_withdrawal_the_work_queue_no_longer_lists_the_person() {
    let server = Server::start();
    let s = scenario(&server).await;
    let whs = service(&server, WHS);
    assert_eq!(
        whs.get(&format!("/fhir/ServiceRequest/{}", s.withdrawn_referral))
            .await
            .0,
        403
    );
    let (status, queue) = whs
        .get("/fhir/Task?owner=https://fhir.work-health-gateway.org/Id/service|sheffield-whs&business-status=received&_count=100")
        .await;
    assert_eq!(status, 200, "{queue}");
    let tasks = members(&server, &s.withdrawn_referral, "Task").await;
    assert_eq!(tasks.len(), 1);
    assert!(ids(&queue).is_disjoint(&tasks), "{queue}");
    assert_eq!(queue["total"].as_u64().unwrap() as usize, ids(&queue).len());
    for t in &tasks {
        assert_eq!(whs.get(&format!("/fhir/Task/{t}")).await.0, 403);
    }
    let (_, by_person) = whs
        .get(&format!(
            "/fhir/Task?patient=Patient/{}",
            s.withdrawn_person
        ))
        .await;
    assert_eq!(by_person["total"], 0, "{by_person}");
}

/// Every stored resource, by type.
async fn stored(server: &Server) -> BTreeMap<String, BTreeSet<String>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT resource_type, id FROM resources ORDER BY resource_type, id")
            .fetch_all(&mut server.db().await)
            .await
            .unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (t, id) in rows {
        out.entry(t).or_default().insert(id);
    }
    out
}

/// Values to search `param` of `resource_type` with: some of those the stored resources are
/// indexed under, and for `patient` the NHS-number chain too.
async fn values(
    server: &Server,
    resource_type: &str,
    param: &str,
    kind: &str,
    nhs: &[String],
) -> Vec<String> {
    match kind {
        "date" => return vec!["ge2000-01-01".into(), "lt2000-01-01".into()],
        "reference" | "token" => {}
        other => panic!("unexpected parameter type {other}"),
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT system, value FROM search_tokens WHERE resource_type = $1 AND param = $2 ORDER BY value LIMIT 6",
    )
    .bind(resource_type)
    .bind(param)
    .fetch_all(&mut server.db().await)
    .await
    .unwrap();
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|(system, value)| {
            if kind == "token" && !system.is_empty() {
                format!("{system}|{value}")
            } else {
                value
            }
        })
        .collect();
    if param == "patient" || (resource_type == "Patient" && param == "identifier") {
        out.extend(
            nhs.iter()
                .map(|n| format!("https://fhir.nhs.uk/Id/nhs-number|{n}")),
        );
    }
    out
}

fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[tokio::test]
async fn the_tenancy_matrix_search_is_never_looser_than_read() {
    let server = Server::start();
    let s = scenario(&server).await;
    // Practice B also refers someone of its own, so it has more than one fit note's worth.
    let mut own = referral_for(103, WHS);
    own["practice"]["odsCode"] = json!(OTHER_PRACTICE);
    own["referralId"] = json!("B-REF-103");
    let (status, _, body) = server.post_json("/api/v1/referrals", &own).await;
    assert_eq!(status, 201, "{body}");
    // A Talking Therapies service and an employer refer someone each, as themselves.
    let mut nhs = vec![s.nhs.clone(), nhs_number(102), nhs_number(103)];
    for name in [
        "29-talking-therapies-service-depression-retail",
        "33-employer-hr-driver-stay-in-work",
    ] {
        let body = read_json(&root().join(format!("fixtures/referrals/valid/{name}.json")));
        let (status, _, outcome) = server.post_json("/api/v1/referrals", &body).await;
        assert_eq!(status, 201, "{name}: {outcome}");
        nhs.push(body["patient"]["nhsNumber"].as_str().unwrap().to_string());
    }

    let (_, metadata) = practice_a(&server).get("/fhir/metadata").await;
    let searchable: Vec<(String, Vec<(String, String)>)> = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let params: Vec<(String, String)> = r["searchParam"]
                .as_array()?
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_string(),
                        p["type"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            Some((r["type"].as_str().unwrap().to_string(), params))
        })
        // The gateway's own conformance resources and its service directory hold no one's data
        // (served to anyone; tests/directory.rs).
        .filter(|(t, _)| {
            !whg::fhir::conformance::TYPES.contains(&t.as_str()) && t != "HealthcareService"
        })
        .collect();
    assert!(searchable.len() >= 7, "{searchable:?}");
    assert!(searchable.iter().any(|(t, _)| t == "Patient"));

    let roles = [
        ("practice A", Principal::practice(DEFAULT_PRACTICE)),
        ("practice B", Principal::practice(OTHER_PRACTICE)),
        ("WHS", Principal::service(WHS)),
        ("WorkWell", Principal::service(WORKWELL)),
        ("IG", Principal::new(Role::InformationGovernance, "ig-team")),
        (
            "Talking Therapies",
            Principal::new(Role::TalkingTherapies, "TAJ"),
        ),
        (
            "another referrer",
            Principal::new(Role::VoluntarySector, "TAJ"),
        ),
        ("employer", Principal::new(Role::Employer, "EMP-4471")),
    ];
    let everything = stored(&server).await;
    let mut searches = 0;
    for (name, principal) in roles {
        let actor = server.as_(principal);
        // What read-by-id allows this role, for every stored resource of every type.
        let mut readable: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (t, all) in &everything {
            for id in all {
                let (status, body) = actor.get(&format!("/fhir/{t}/{id}")).await;
                assert!(
                    matches!(status, 200 | 403 | 404),
                    "{name} read {t}/{id}: {status} {body}"
                );
                if status == 200 {
                    readable.entry(t.as_str()).or_default().insert(id.clone());
                }
            }
        }
        for (t, params) in &searchable {
            let allowed = readable.get(t.as_str()).cloned().unwrap_or_default();
            // A person is searched by NHS number only: a search naming none is refused (400)
            // for everyone, so the matrix asks by number.
            let mut queries = if t == "Patient" {
                Vec::new()
            } else {
                vec![String::new()]
            };
            for (param, kind) in params {
                for v in values(&server, t, param, kind, &nhs).await {
                    let param = if v.starts_with("https://fhir.nhs.uk/Id/nhs-number|")
                        && param == "patient"
                    {
                        "patient.identifier".to_string()
                    } else {
                        param.clone()
                    };
                    queries.push(format!("{param}={}", encode(&v)));
                }
            }
            for q in queries {
                let path = format!("/fhir/{t}?{q}&_count=100");
                let (status, bundle) = actor.get(&path).await;
                searches += 1;
                if t == "AuditEvent" {
                    // Only information governance reads or searches the audit trail; what it
                    // finds it can read (events are appended as the matrix runs).
                    if name == "IG" {
                        assert_eq!(status, 200, "{name} {path}: {bundle}");
                        for id in ids(&bundle).iter().take(5) {
                            assert_eq!(actor.get(&format!("/fhir/AuditEvent/{id}")).await.0, 200);
                        }
                    } else {
                        assert_eq!(status, 403, "{name} {path}");
                    }
                    continue;
                }
                if name == "IG" {
                    assert_eq!(status, 403, "IG searches people's records: {path}");
                    assert!(allowed.is_empty(), "IG reads {t}: {allowed:?}");
                    continue;
                }
                assert_eq!(status, 200, "{name} {path}: {bundle}");
                let found = ids(&bundle);
                assert!(
                    found.is_subset(&allowed),
                    "{name} {path} returns what read refuses: {:?}",
                    found.difference(&allowed).collect::<Vec<_>>()
                );
                assert_eq!(
                    bundle["total"].as_u64().unwrap() as usize,
                    found.len(),
                    "{name} {path}: the total counts what is not returned"
                );
                if q.is_empty() {
                    // Nothing the role may read is hidden from an unfiltered search either
                    // (every person's record is in the one relation searches use).
                    assert_eq!(found, allowed, "{name} {path}");
                }
            }
        }
    }
    assert!(searches > 100, "{searches} searches");
}
