//! The aggregate reports over HTTP: a seeded synthetic population whose figures the test works
//! out itself from the seeding plan (not with the gateway's code), small-number suppression that
//! subtraction cannot undo, the three forms (JSON, CSV, MeasureReport), no person anywhere in
//! them, and who may read them: commissioners of the service and its own managers, nobody else.

mod common;

use std::collections::BTreeMap;

use common::{Server, nhs_number, read_response, referral};
use serde_json::{Value, json};
use whg::auth::Principal;
use whg::caller::Role;

/// One seeded referral: who sends it, how, and what becomes of it.
struct Seed {
    n: usize,
    practice: &'static str,
    template: &'static str,
    month: u32,
    ethnicity: Option<&'static str>,
    disability: Option<&'static str>,
    evaluation: bool,
    /// `None`: left waiting; `Some(reason)`: declined; otherwise accepted and contacted after
    /// `days` and discharged.
    fate: Fate,
}

#[derive(Clone, Copy)]
enum Fate {
    Waiting,
    Declined(&'static str),
    Contacted {
        days: i64,
        discharged: Option<&'static str>,
    },
}

/// The plan: 41 referrals from three live practices (30, 3 and 8; not the test tenant's, whose
/// synthetic referrals reports leave out unless asked), so the practice report has a
/// small cell that subtraction from the total would give away without secondary suppression.
fn plan() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for n in 0..41 {
        let practice = match n {
            0..30 => "C88903",
            30..33 => "C88904",
            _ => "C88905",
        };
        let template = if n % 5 == 4 {
            "04-self-referral-business-owner"
        } else {
            "01-gp-work-stress-off-sick"
        };
        let fate = match n % 8 {
            0 | 1 => Fate::Waiting,
            2 => Fate::Declined("not-eligible"),
            3 => Fate::Contacted {
                days: 3,
                discharged: Some("returned-to-work"),
            },
            4 => Fate::Contacted {
                days: 10,
                discharged: None,
            },
            5 => Fate::Contacted {
                days: 20,
                discharged: Some("kept-job"),
            },
            6 => Fate::Declined("person-declined"),
            _ => Fate::Contacted {
                days: 6,
                discharged: Some("returned-to-work"),
            },
        };
        seeds.push(Seed {
            n,
            practice,
            template,
            month: 4 + (n % 3) as u32,
            ethnicity: [
                Some("white-british"),
                Some("asian-pakistani"),
                None,
                Some("prefer-not-to-say"),
            ][n % 4],
            disability: [Some("not-disabled"), Some("limited-a-little"), None][n % 3],
            evaluation: n % 2 == 0,
            fate,
        });
    }
    seeds
}

fn body_of(s: &Seed) -> Value {
    let mut r = referral(s.template);
    r["referralId"] = json!(format!("REPORTS-{}", s.n));
    r["practice"]["odsCode"] = json!(s.practice);
    r["patient"]["nhsNumber"] = json!(nhs_number(500 + s.n));
    r["patient"]["name"]["family"] = json!(format!("Reportsperson{}", s.n));
    r["targetService"] = json!("sheffield-whs");
    r["authoredOn"] = json!(format!("2026-{:02}-01T10:00:00Z", s.month));
    r["consent"]["recordedAt"] = json!(format!("2026-{:02}-01T09:55:00Z", s.month));
    r["consent"]["evaluation"] = json!(s.evaluation);
    if s.n < 3 {
        // Three people from a district of their own: a small count to protect.
        r["patient"]["postcode"] = json!("S35 1AA");
    }
    if let Some(e) = s.ethnicity {
        r["patient"]["ethnicity"] = json!(e);
    }
    if let Some(d) = s.disability {
        r["patient"]["disability"] = json!(d);
    }
    r
}

fn day(month: u32, plus: i64) -> String {
    (chrono::NaiveDate::from_ymd_opt(2026, month, 1).unwrap() + chrono::Duration::days(plus))
        .to_string()
}

/// Seeds the plan: every referral sent by its practice, every fate recorded by the service.
async fn seed(server: &Server, seeds: &[Seed]) {
    let whs = server.as_(Principal::service("sheffield-whs"));
    for s in seeds {
        let (status, headers, outcome) = server
            .as_(Principal::practice(s.practice))
            .post("/api/v1/referrals", &body_of(s))
            .await;
        assert_eq!(status, 201, "referral {}: {outcome}", s.n);
        let id = common::location_id(&headers);
        let step = |path: &'static str, body: Value| {
            let whs = &whs;
            let id = id.clone();
            async move {
                let (status, _, answer) = whs
                    .post(&format!("/api/v1/referrals/{id}/{path}"), &body)
                    .await;
                assert_eq!(status, 200, "{path} {body}: {answer}");
            }
        };
        match s.fate {
            Fate::Waiting => {}
            Fate::Declined(reason) => {
                let mut body = json!({ "decision": "decline", "reason": reason });
                if reason == "not-eligible" {
                    body["criterion"] = json!("area");
                }
                step("triage", body).await;
            }
            Fate::Contacted { days, discharged } => {
                step("triage", json!({ "decision": "accept" })).await;
                step(
                    "contacts",
                    json!({ "date": day(s.month, days), "channel": "phone" }),
                )
                .await;
                if let Some(outcome) = discharged {
                    step(
                        "discharge",
                        json!({ "date": day(s.month, days + 30), "employmentOutcome": outcome }),
                    )
                    .await;
                    step("follow-ups", json!({ "date": day(s.month, days + 60), "interval": "4", "workStatus": "in-work-same-employer", "wellbeingScore": 24 })).await;
                }
            }
        }
    }
}

/// A report as the caller gets it in JSON.
async fn report(server: &Server, who: &Principal, path: &str) -> (u16, Value) {
    server.as_(who.clone()).get(path).await
}

/// A report as the caller gets it in the form `accept` names.
async fn fetch(server: &Server, who: &Principal, path: &str, accept: &str) -> reqwest::Response {
    server
        .as_(who.clone())
        .request(reqwest::Method::GET, path)
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

/// `{row code: count}` of a one-way report (`None` for a suppressed count).
fn one_way(report: &Value) -> BTreeMap<String, Option<u64>> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_string(),
                r["counts"][0]["count"].as_u64(),
            )
        })
        .collect()
}

/// Checks a one-way report against the counts the test expects (`expected`, by row code; a row
/// not named is expected to be 0): every count shown is right, every count from 1 to 4 is
/// hidden, and the subtraction a reader would make (the total less what is shown) does not give
/// a hidden count back. Returns the counts as published.
fn published_as_expected(
    report: &Value,
    expected: &BTreeMap<&str, u64>,
) -> BTreeMap<String, Option<u64>> {
    let counts = one_way(report);
    for (code, shown) in &counts {
        let truth = expected.get(code.as_str()).copied().unwrap_or(0);
        match shown {
            Some(n) => assert_eq!(*n, truth, "{code} in {report}"),
            None => assert!(truth > 0, "{code} is 0 and hidden: {report}"),
        }
        if (1..5).contains(&truth) {
            assert_eq!(
                *shown, None,
                "{code} is {truth}, under 5, and shown: {report}"
            );
        }
    }
    for code in expected.keys() {
        assert!(counts.contains_key(*code), "no row {code} in {report}");
    }
    let total: u64 = expected.values().sum();
    if let Some(shown_total) = report["total"].as_u64() {
        assert_eq!(shown_total, total, "{report}");
        let hidden: Vec<u64> = counts
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| expected.get(k.as_str()).copied().unwrap_or(0))
            .collect();
        let left = total - counts.values().flatten().sum::<u64>();
        assert_ne!(
            hidden.len(),
            1,
            "one hidden count is the total less the rest: {report}"
        );
        assert!(
            hidden.is_empty() || left > hidden.len() as u64,
            "{} hidden counts adding to {left} are each 1: {report}",
            hidden.len()
        );
    }
    counts
}

fn tally<'a>(codes: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, u64> {
    let mut t = BTreeMap::new();
    for c in codes {
        *t.entry(c).or_default() += 1;
    }
    t
}

fn commissioner() -> Principal {
    Principal::new(Role::Commissioner, "QF7")
}

#[tokio::test]
async fn reports_count_what_happened_and_give_away_no_one() {
    let server = Server::start();
    let seeds = plan();
    seed(&server, &seeds).await;
    let icb = commissioner();

    // The list.
    let (status, list) = report(&server, &icb, "/api/v1/reports").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["services"],
        json!([{ "id": "sheffield-whs", "name": "Sheffield Work and Health Service" }])
    );
    let names: Vec<&str> = list["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"referrals-by-route") && names.contains(&"follow-up-outcomes"),
        "{names:?}"
    );

    // Referrals by referrer: 30, 3 and 8. The 3 is hidden, and so is the 8: otherwise the total
    // less 30 would give the 3 back.
    let (status, by_practice) =
        report(&server, &icb, "/api/v1/reports/referrals-by-practice").await;
    assert_eq!(status, 200, "{by_practice}");
    let counts = one_way(&by_practice);
    assert_eq!(counts["C88903"], Some(30));
    assert_eq!(counts["C88904"], None, "3 is under the threshold");
    assert_eq!(
        counts["C88905"], None,
        "8 is hidden too, or 41 - 30 = 11 - 8 gives the 3 away"
    );
    assert_eq!(by_practice["total"], json!(41));
    // The attack, as a reader would make it: the total less everything shown.
    let shown: u64 = counts.values().flatten().sum();
    let hidden: Vec<&String> = counts
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
    assert!(hidden.len() >= 2, "one hidden count would be 41 - {shown}");

    // Routes: independent count from the plan.
    let mut by_route: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &seeds {
        *by_route
            .entry(if s.template.starts_with("04") {
                "self-referral"
            } else {
                "gp"
            })
            .or_default() += 1;
    }
    let (_, routes) = report(&server, &icb, "/api/v1/reports/referrals-by-route").await;
    let counts = published_as_expected(&routes, &by_route);
    assert_eq!(counts["gp"], Some(by_route["gp"]));
    assert_eq!(counts["self-referral"], Some(by_route["self-referral"]));
    assert_eq!(counts["employer"], Some(0), "a zero is nobody, and shown");
    assert_eq!(routes["total"], json!(41));

    // Declines by reason, and time to first contact, from the plan.
    let declined = |r: &str| {
        seeds
            .iter()
            .filter(|s| matches!(s.fate, Fate::Declined(x) if x == r))
            .count() as u64
    };
    let (_, declines) = report(&server, &icb, "/api/v1/reports/declines-by-reason").await;
    let expected = BTreeMap::from([
        ("not-eligible", declined("not-eligible")),
        ("person-declined", declined("person-declined")),
    ]);
    published_as_expected(&declines, &expected);
    let contacted = |lo: i64, hi: i64| {
        seeds
            .iter()
            .filter(|s| matches!(s.fate, Fate::Contacted { days, .. } if (lo..=hi).contains(&days)))
            .count() as u64
    };
    let (_, timing) = report(&server, &icb, "/api/v1/reports/time-to-first-contact").await;
    let waiting = seeds
        .iter()
        .filter(|s| matches!(s.fate, Fate::Waiting))
        .count() as u64;
    let expected = BTreeMap::from([
        ("0-7", contacted(0, 7)),
        ("8-14", contacted(8, 14)),
        ("15-28", contacted(15, 28)),
        // April to June are long past the target.
        ("waiting-past-target", waiting),
    ]);
    let counts = published_as_expected(&timing, &expected);
    assert_eq!(counts["0-7"], Some(contacted(0, 7)));

    // Follow-ups after discharge, in the two-way report.
    let followed = seeds
        .iter()
        .filter(|s| {
            matches!(
                s.fate,
                Fate::Contacted {
                    discharged: Some(_),
                    ..
                }
            )
        })
        .count() as u64;
    let (_, follow) = report(&server, &icb, "/api/v1/reports/follow-up-outcomes").await;
    let row = follow["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "in-work-same-employer")
        .unwrap();
    assert_eq!(
        row["counts"][0],
        json!({ "column": "4", "count": followed })
    );

    // Monitoring, from the plan; "not recorded" is its own row.
    let (_, ethnicity) = report(&server, &icb, "/api/v1/reports/ethnicity").await;
    let expected = tally(seeds.iter().map(|s| s.ethnicity.unwrap_or("not-recorded")));
    published_as_expected(&ethnicity, &expected);
    let (_, disability) = report(&server, &icb, "/api/v1/reports/disability").await;
    let expected = tally(seeds.iter().map(|s| s.disability.unwrap_or("not-recorded")));
    published_as_expected(&disability, &expected);
    let (_, practices) = report(&server, &icb, "/api/v1/reports/referrals-by-practice").await;
    published_as_expected(&practices, &tally(seeds.iter().map(|s| s.practice)));

    // Filters change the figures: April only.
    let (_, april) = report(
        &server,
        &icb,
        "/api/v1/reports/referrals-by-route?from=2026-04&to=2026-04",
    )
    .await;
    let in_april = seeds.iter().filter(|s| s.month == 4).count() as u64;
    assert_eq!(april["total"], json!(in_april));
    let (status, bad) = report(
        &server,
        &icb,
        "/api/v1/reports/referrals-by-route?from=April&place=S1%202",
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    let expressions: Vec<String> = common::issue_keys(&bad)
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    assert_eq!(expressions, ["from", "place"], "{bad}");

    // A filter cannot undo the suppression: every district the breakdown by place withholds
    // (S35's three people, and the district hidden with it) has its sliced reports' totals
    // withheld too, or the unfiltered total less the others would give it back.
    let (_, places) = report(&server, &icb, "/api/v1/reports/referrals-by-place").await;
    let by_place = one_way(&places);
    assert_eq!(by_place["S35"], None, "{places}");
    let hidden: Vec<&String> = by_place
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
    assert!(hidden.len() >= 2, "{places}");
    for district in hidden {
        for name in ["referrals-by-route", "ethnicity", "time-to-first-contact"] {
            let (status, sliced) = report(
                &server,
                &icb,
                &format!("/api/v1/reports/{name}?place={district}"),
            )
            .await;
            assert_eq!(status, 200, "{sliced}");
            assert_eq!(
                sliced["total"],
                Value::Null,
                "{name} in {district}: {sliced}"
            );
        }
    }
    // A district shown in the breakdown is shown when asked for alone.
    let (shown_district, shown_count) =
        by_place.iter().find_map(|(k, v)| Some((k, (*v)?))).unwrap();
    let (_, sliced) = report(
        &server,
        &icb,
        &format!("/api/v1/reports/referrals-by-route?place={shown_district}"),
    )
    .await;
    assert_eq!(sliced["total"], json!(shown_count), "{sliced}");

    // By local authority: both seeded districts (S2 and S35) are listed under Sheffield
    // ([[local_authorities]] in the default configuration), so it counts everyone; and a
    // listed authority is a place as a district is.
    let (_, by_authority) = report(
        &server,
        &icb,
        "/api/v1/reports/referrals-by-local-authority",
    )
    .await;
    published_as_expected(
        &by_authority,
        &BTreeMap::from([("E08000019", seeds.len() as u64)]),
    );
    assert_eq!(
        by_authority["rows"][0]["label"], "Sheffield",
        "{by_authority}"
    );
    let (_, sheffield) = report(
        &server,
        &icb,
        "/api/v1/reports/referrals-by-route?place=E08000019",
    )
    .await;
    assert_eq!(sheffield["total"], json!(seeds.len()), "{sheffield}");
    assert_eq!(sheffield["scope"]["place"], "E08000019");
    let (status, tyneside) = report(
        &server,
        &icb,
        "/api/v1/reports/referrals-by-route?place=E08000023",
    )
    .await;
    assert_eq!((status, &tyneside["total"]), (200, &json!(0)), "{tyneside}");
    let (status, unlisted) = report(
        &server,
        &icb,
        "/api/v1/reports/referrals-by-route?place=E09000001",
    )
    .await;
    assert_eq!(status, 400, "{unlisted}");
    assert!(
        unlisted
            .to_string()
            .contains("not one of the local authorities this gateway lists")
    );

    // CSV: the same figures, suppressed counts marked.
    let csv = fetch(
        &server,
        &icb,
        "/api/v1/reports/referrals-by-practice",
        "text/csv",
    )
    .await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    assert!(
        text.contains("C88903,C88903,30\r\n") && text.contains("C88904,C88904,[c]\r\n"),
        "{text}"
    );
    assert!(text.ends_with("total,Total,41\r\n"), "{text}");

    // A FHIR MeasureReport against the published Measure, valid R4.
    let mr = fetch(
        &server,
        &icb,
        "/api/v1/reports/referrals-by-practice",
        "application/fhir+json",
    )
    .await;
    let (status, _, mr) = read_response(mr).await;
    assert_eq!(status, 200);
    assert_eq!(mr["resourceType"], "MeasureReport");
    assert_eq!(
        mr["measure"],
        "https://fhir.work-health-gateway.org/Measure/referrals-by-practice"
    );
    assert_eq!(mr["group"][0]["population"][0]["count"], 41);
    let masked = mr["group"][0]["stratifier"][0]["stratum"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["value"]["text"] == "C88904")
        .unwrap();
    assert!(masked["population"][0].get("count").is_none());
    assert_eq!(
        masked["population"][0]["_count"]["extension"][0]["valueCode"],
        "masked"
    );
    let measure =
        common::read_json(&common::root().join("profiles/Measure-referrals-by-practice.json"));
    common::check_with_independent_fhir(&[mr.clone(), measure]);

    // Nobody in any report, in any form.
    let mut everything = String::new();
    for name in &names {
        for accept in ["application/json", "text/csv", "application/fhir+json"] {
            let r = fetch(&server, &icb, &format!("/api/v1/reports/{name}"), accept).await;
            assert_eq!(r.status(), 200, "{name} as {accept}");
            everything.push_str(&r.text().await.unwrap());
        }
    }
    for s in &seeds {
        let body = body_of(s);
        for secret in [
            body["patient"]["nhsNumber"].as_str().unwrap(),
            body["patient"]["name"]["family"].as_str().unwrap(),
            body["patient"]["birthDate"].as_str().unwrap(),
        ] {
            assert!(!everything.contains(secret), "{secret} appears in a report");
        }
    }

    // Who may read: the service's own managers, for their own service only.
    let managers = Principal::service("sheffield-whs");
    let (status, own) = report(&server, &managers, "/api/v1/reports/referrals-by-route").await;
    assert_eq!((status, &own["total"]), (200, &json!(41)));
    let (status, other) = report(
        &server,
        &managers,
        "/api/v1/reports/referrals-by-route?service=pas-county-durham",
    )
    .await;
    assert_eq!(status, 403, "{other}");
    let other_icb = Principal::new(Role::Commissioner, "QHM");
    let (status, theirs) = report(
        &server,
        &other_icb,
        "/api/v1/reports/referrals-by-route?service=sheffield-whs",
    )
    .await;
    assert_eq!(status, 403, "{theirs}");
    let (status, theirs) = report(&server, &other_icb, "/api/v1/reports/referrals-by-route").await;
    assert_eq!(
        (status, &theirs["total"]),
        (200, &json!(0)),
        "QHM's services had no referrals: {theirs}"
    );
    for nobody in [
        Principal::practice("C88901"),
        Principal::new(Role::InformationGovernance, "IG1"),
        Principal::new(Role::Commissioner, "X99"),
    ] {
        let (status, answer) = report(&server, &nobody, "/api/v1/reports/referrals-by-route").await;
        assert_eq!(status, 403, "{:?}: {answer}", nobody.role);
    }
    let anonymous = common::http()
        .get(server.url("/api/v1/reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, _) = report(&server, &icb, "/api/v1/reports/no-such-report").await;
    assert_eq!(status, 404);
}

/// A commissioner's token reaches no person: no read, no search, no letter, no workflow.
#[tokio::test]
async fn a_commissioner_sees_no_one() {
    let server = Server::start();
    let (referral_id, patient) =
        common::refer(&server, &common::referral_for(1, "sheffield-whs")).await;
    let icb = server.as_(commissioner());
    for path in [
        format!("/fhir/ServiceRequest/{referral_id}"),
        format!("/fhir/Patient/{patient}"),
        "/fhir/ServiceRequest".to_string(),
        format!(
            "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{}",
            common::nhs_number(1)
        ),
        format!("/api/v1/referrals/{referral_id}/workflow"),
        "/api/v1/letters".to_string(),
        "/fhir/AuditEvent".to_string(),
    ] {
        let (status, answer) = icb.get(&path).await;
        assert!(status == 403 || status == 404, "{path}: {status} {answer}");
        assert!(
            !answer.to_string().contains(&common::nhs_number(1)),
            "{path}: {answer}"
        );
    }
    let (status, _, answer) = icb
        .post(
            &format!("/api/v1/referrals/{referral_id}/triage"),
            &json!({ "decision": "accept" }),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
}

/// Follow-ups: only after discharge, each interval once, the score within the scale.
#[tokio::test]
async fn follow_ups_come_after_discharge_once_per_interval() {
    let server = Server::start();
    let (id, _) = common::refer(&server, &common::referral_for(2, "sheffield-whs")).await;
    let whs = server.as_(Principal::service("sheffield-whs"));
    let follow = json!({ "date": "2026-05-01", "interval": "4", "workStatus": "off-sick" });
    let (status, _, early) = whs
        .post(&format!("/api/v1/referrals/{id}/follow-ups"), &follow)
        .await;
    assert_eq!(status, 422, "{early}");
    assert!(
        early.to_string().contains("allowed when it is discharged"),
        "{early}"
    );
    for (path, body) in [
        ("triage", json!({ "decision": "accept" })),
        (
            "contacts",
            json!({ "date": "2026-03-10", "channel": "phone" }),
        ),
        (
            "discharge",
            json!({ "date": "2026-04-01", "employmentOutcome": "still-off-sick", "endedEarlyReason": "moved-away" }),
        ),
    ] {
        let (status, _, answer) = whs
            .post(&format!("/api/v1/referrals/{id}/{path}"), &body)
            .await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let (status, _, bad) = whs
        .post(&format!("/api/v1/referrals/{id}/follow-ups"), &json!({ "date": "2026-03-01", "interval": "5", "workStatus": "asleep", "wellbeingScore": 40 }))
        .await;
    assert_eq!(status, 422, "{bad}");
    let expressions: Vec<String> = common::issue_keys(&bad)
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    for e in ["interval", "workStatus", "wellbeingScore", "date"] {
        assert!(expressions.iter().any(|x| x == e), "{e} missing from {bad}");
    }
    let (status, _, state) = whs
        .post(&format!("/api/v1/referrals/{id}/follow-ups"), &follow)
        .await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["stage"], "discharged");
    let (status, _, again) = whs
        .post(&format!("/api/v1/referrals/{id}/follow-ups"), &follow)
        .await;
    assert_eq!(status, 422, "{again}");
    assert_eq!(again["issue"][0]["code"], "duplicate");
}

/// The monitoring fields reach the reports over BaRS as over the practice format: UK Core's
/// ethnic-category extension on the Patient (here with the Data Dictionary code alone, as a GP
/// system sends it), and disability and employer size as Observations in the gateway's own
/// CodeSystems (profiles/), referenced from the ServiceRequest's supportingInfo.
#[tokio::test]
async fn monitoring_fields_sent_over_bars_are_counted() {
    let server =
        Server::start_with("[reports]\nsuppression_threshold = 1\ninclude_test_tenant = true\n");
    let local = whg::fhir::systems::local_code_system;
    let mut message = common::read_json(
        &common::root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"),
    );
    let patient = "urn:uuid:00000000-0000-4000-8000-000000000004";
    let entries = message["entry"].as_array_mut().unwrap();
    for e in entries.iter_mut() {
        match e["resource"]["resourceType"].as_str() {
            Some("Patient") => {
                e["resource"]["extension"] = json!([{
                    "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory",
                    "valueCodeableConcept": { "coding": [{
                        "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                        "code": "H", "display": "Asian or Asian British - Indian",
                    }] },
                }])
            }
            Some("ServiceRequest") => {
                let info = e["resource"]["supportingInfo"].as_array_mut().unwrap();
                info.push(json!({ "reference": "urn:uuid:00000000-0000-4000-8000-000000000013" }));
                info.push(json!({ "reference": "urn:uuid:00000000-0000-4000-8000-000000000014" }));
            }
            _ => {}
        }
    }
    entries.push(json!({
        "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000013",
        "resource": {
            "resourceType": "Observation", "status": "final",
            "code": { "coding": [{ "system": local("observation-type"), "code": "disability-status" }] },
            "subject": { "reference": patient },
            "valueCodeableConcept": { "coding": [{ "system": local("disability-status"), "code": "limited-a-lot" }] },
        },
    }));
    entries.push(json!({
        "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000014",
        "resource": {
            "resourceType": "Observation", "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "11341-5", "display": "History of Occupation" }] },
            "subject": { "reference": patient },
            "component": [{
                "code": { "coding": [{ "system": local("observation-type"), "code": "employer-size" }] },
                "valueCodeableConcept": { "coding": [{ "system": local("employer-size-band"), "code": "50-249" }] },
            }],
        },
    }));
    let sender = common::sender_practice(&message).unwrap();
    let (status, _, answer) = server
        .as_(Principal::practice(&sender))
        .post("/fhir/$process-message", &message)
        .await;
    assert_eq!(status, 200, "{answer}");

    let icb = commissioner();
    for (name, code) in [
        ("ethnicity", "asian-indian"),
        ("disability", "limited-a-lot"),
        ("employer-size", "50-249"),
    ] {
        let (status, published) = report(&server, &icb, &format!("/api/v1/reports/{name}")).await;
        assert_eq!(status, 200, "{published}");
        let counts = one_way(&published);
        assert_eq!(counts[code], Some(1), "{name}: {published}");
        assert_eq!(
            counts.get("not-recorded").copied().flatten(),
            Some(0),
            "{name}: {published}"
        );
    }
}
