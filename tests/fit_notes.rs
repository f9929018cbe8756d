//! Fit notes over HTTP: every fixture gives its expected result; the emitted Observations and
//! prompt Tasks conform to the published profiles; sequences fire exactly the expected prompts;
//! history search and the summary; prompts answered by the practice; eligibility at referral.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

const FIT_NOTES: &str = "/api/v1/fit-notes";

fn cli_fit_note(fixture: &Path) -> (i32, Value) {
    let out = Command::new(WHG)
        .args(["validate", "fit-note", "--json"])
        .arg(fixture)
        .output()
        .expect("run whg validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{}: {e}: {stdout}", fixture.display())),
    )
}

fn observation_of(bundle: &Value) -> Value {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Observation")
        .unwrap()["resource"]
        .clone()
}

// ---- a small checker for the published differentials -------------------------------------

/// The values at a FHIR path (`Observation.component.code`), arrays flattened; `x[x]` matches
/// the element with its type suffix.
fn at<'a>(node: &'a Value, path: &[&str]) -> Vec<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return vec![node];
    };
    let children: Vec<&Value> = match first.strip_suffix("[x]") {
        Some(stem) => node
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| {
                k.starts_with(stem)
                    && k.len() > stem.len()
                    && k[stem.len()..].starts_with(|c: char| c.is_ascii_uppercase())
            })
            .map(|(_, v)| v)
            .collect(),
        None => node.get(*first).into_iter().collect(),
    };
    children
        .into_iter()
        .flat_map(|c| match c {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
        .flat_map(|c| at(c, rest))
        .collect()
}

/// Whether `value` contains everything in `pattern` (FHIR pattern semantics).
fn matches_pattern(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| matches_pattern(vv, pv))),
        (Value::Array(v), Value::Array(p)) => p
            .iter()
            .all(|pv| v.iter().any(|vv| matches_pattern(vv, pv))),
        (v, p) => v == p,
    }
}

fn value_set_codes(url: &str) -> Vec<String> {
    let name = url.rsplit('/').next().unwrap();
    let vs = read_json(&root().join(format!("profiles/ValueSet-{name}.json")));
    let include = &vs["compose"]["include"][0];
    match include["concept"].as_array() {
        Some(concepts) => concepts
            .iter()
            .map(|c| c["code"].as_str().unwrap().to_string())
            .collect(),
        None => {
            let cs = read_json(&root().join(format!("profiles/CodeSystem-{name}.json")));
            cs["concept"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["code"].as_str().unwrap().to_string())
                .collect()
        }
    }
}

/// Checks `resource` against a StructureDefinition's differential: cardinalities (of elements
/// and of slices, which are told apart by their `pattern` on a child), fixed values, patterns,
/// required bindings to the project's ValueSets and restricted choice types. Returns every breach.
fn conformance_problems(sd: &Value, resource: &Value) -> Vec<String> {
    let elements = sd["differential"]["element"].as_array().unwrap();
    let mut problems = Vec::new();
    let slice_members = |slice_id: &str, base: &[&str]| -> Vec<Value> {
        // A slice's members are the base element's items matching its children's patterns.
        let patterns: Vec<(Vec<String>, Value)> = elements
            .iter()
            .filter_map(|e| {
                let child = e["id"].as_str()?.strip_prefix(&format!("{slice_id}."))?;
                let p = e.get("patternCodeableConcept").or(e.get("fixedUri"))?;
                Some((child.split('.').map(str::to_string).collect(), p.clone()))
            })
            .collect();
        at(resource, base)
            .into_iter()
            .filter(|item| {
                patterns.iter().all(|(path, p)| {
                    let path: Vec<&str> = path.iter().map(String::as_str).collect();
                    at(item, &path).iter().any(|v| matches_pattern(v, p))
                })
            })
            .cloned()
            .collect()
    };
    for e in elements {
        let id = e["id"].as_str().unwrap();
        let segments: Vec<&str> = id.split('.').skip(1).collect();
        if segments.is_empty() {
            continue;
        }
        // Elements within a slice are checked on that slice's members.
        let slice_at = segments.iter().position(|s| s.contains(':'));
        let (targets, rest): (Vec<Value>, Vec<&str>) = match slice_at {
            Some(i) => {
                let slice_id = format!(
                    "{}.{}",
                    id.split('.').next().unwrap(),
                    segments[..=i].join(".")
                );
                let base: Vec<&str> = segments[..=i]
                    .iter()
                    .map(|s| s.split(':').next().unwrap())
                    .collect();
                let members = slice_members(&slice_id, &base);
                if i == segments.len() - 1 {
                    let (min, max) = (
                        e["min"].as_u64().unwrap_or(0),
                        e["max"].as_str().unwrap_or("*"),
                    );
                    if (members.len() as u64) < min
                        || (max != "*" && members.len() as u64 > max.parse().unwrap())
                    {
                        problems.push(format!(
                            "{id}: {} member(s), allowed {min}..{max}",
                            members.len()
                        ));
                    }
                    continue;
                }
                (members, segments[i + 1..].to_vec())
            }
            None => (vec![resource.clone()], segments.clone()),
        };
        for target in &targets {
            let values = at(target, &rest);
            if let Some(min) = e["min"].as_u64()
                && (values.len() as u64) < min
            {
                problems.push(format!(
                    "{id}: {} value(s), at least {min} required",
                    values.len()
                ));
            }
            if let Some(max) = e["max"].as_str()
                && max != "*"
                && values.len() as u64 > max.parse::<u64>().unwrap()
            {
                problems.push(format!(
                    "{id}: {} value(s), at most {max} allowed",
                    values.len()
                ));
            }
            for v in &values {
                if let Some(f) = e.get("fixedCode").or(e.get("fixedUri"))
                    && *v != f
                {
                    problems.push(format!("{id}: {v} is not the fixed {f}"));
                }
                if let Some(p) = e.get("patternCodeableConcept")
                    && !matches_pattern(v, p)
                {
                    problems.push(format!("{id}: {v} does not match {p}"));
                }
                if e["binding"]["strength"] == "required" {
                    let codes = value_set_codes(e["binding"]["valueSet"].as_str().unwrap());
                    let coded: Vec<&str> = at(v, &["coding", "code"])
                        .iter()
                        .filter_map(|c| c.as_str())
                        .chain(v["code"].as_str())
                        // A bound `code` element is the code itself.
                        .chain(v.as_str())
                        .collect();
                    if !coded.iter().any(|c| codes.iter().any(|k| k == c)) {
                        problems.push(format!("{id}: {v} is not in {}", e["binding"]["valueSet"]));
                    }
                }
            }
            if let (Some(types), Some(last)) = (e["type"].as_array(), rest.last())
                && let Some(stem) = last.strip_suffix("[x]")
            {
                let parent: Vec<&str> = rest[..rest.len() - 1].to_vec();
                for p in at(target, &parent) {
                    for (k, _) in p
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| k.starts_with(stem) && k.len() > stem.len())
                    {
                        let suffix = &k[stem.len()..];
                        if !types.iter().any(|t| {
                            t["code"]
                                .as_str()
                                .is_some_and(|c| c.eq_ignore_ascii_case(suffix))
                        }) {
                            problems.push(format!("{id}: {k} is not an allowed type"));
                        }
                    }
                }
            }
        }
    }
    problems
}

fn profile(name: &str) -> Value {
    let sd = read_json(&root().join(format!("profiles/StructureDefinition-{name}.json")));
    whg::fhir::resource::check_strict(&sd)
        .unwrap_or_else(|e| panic!("{name} is not a valid StructureDefinition: {e}"));
    sd
}

fn assert_conforms(sd: &Value, resource: &Value, what: &str) {
    let problems = conformance_problems(sd, resource);
    assert!(
        problems.is_empty(),
        "{what} breaks {}:\n{}",
        sd["url"],
        problems.join("\n")
    );
}

#[test]
fn the_checker_catches_breaches() {
    let sd = profile("whg-fit-note");
    let cli = cli_fit_note(
        &root().join("fixtures/fit-notes/valid/02-doctor-may-be-fit-phased-return.json"),
    )
    .1;
    let good = observation_of(&cli);
    assert_conforms(&sd, &good, "the base fixture");
    let mut bad = good.clone();
    bad["status"] = json!("preliminary");
    bad["valueBoolean"] = json!(true);
    bad["component"].as_array_mut().unwrap().remove(0);
    bad["method"]["coding"][0]["code"] = json!("carrier-pigeon");
    let problems = conformance_problems(&sd, &bad);
    for expected in [
        "Observation.status",
        "Observation.value[x]",
        "Observation.component:phasedReturn",
        "Observation.method",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} not caught: {problems:?}"
        );
    }
}

// ---- fixtures --------------------------------------------------------------------------------

#[tokio::test]
async fn every_fit_note_fixture_gives_its_expected_result() {
    let sd = profile("whg-fit-note");
    let server = Server::start();
    let valid = fixtures("fit-notes/valid");
    assert!(valid.len() >= 20, "at least 20 valid fit notes");
    let mut emitted = Vec::new();
    for f in &valid {
        let (code, bundle) = cli_fit_note(f);
        assert_eq!(code, 0, "{}: {bundle}", f.display());
        let path = expected_path(f);
        if std::env::var("UPDATE_EXPECTED").is_ok() {
            std::fs::write(&path, serde_json::to_string_pretty(&bundle).unwrap() + "\n").unwrap();
        } else {
            assert!(
                read_json(&path) == bundle,
                "{} no longer maps to its expected FHIR: run UPDATE_EXPECTED=1 cargo test --test fit_notes",
                f.display()
            );
        }
        for e in bundle["entry"].as_array().unwrap() {
            whg::fhir::resource::check_strict(&e["resource"])
                .unwrap_or_else(|err| panic!("{}: {err}", f.display()));
        }
        assert_conforms(&sd, &observation_of(&bundle), &f.display().to_string());

        let body = read_json(f);
        let (status, headers, outcome) = server.post_json(FIT_NOTES, &body).await;
        assert_eq!(status, 201, "{}: {outcome}", f.display());
        let id = location_id(&headers);
        let (again, _, _) = server.post_json(FIT_NOTES, &body).await;
        assert_eq!(again, 200, "{}: an identical resend", f.display());
        let stored = server.resolve(&format!("Observation/{id}")).await;
        assert_conforms(&sd, &stored, &format!("stored {}", f.display()));
        assert!(
            stored["subject"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
        emitted.push(stored);
    }
    check_with_independent_fhir(&emitted);

    let invalid = fixtures("fit-notes/invalid");
    assert!(invalid.len() >= 12, "at least 12 invalid fit notes");
    for f in &invalid {
        let expected = read_json(&expected_path(f));
        let keys = expected_issue_keys(&expected);
        let (code, outcome) = cli_fit_note(f);
        assert_eq!(code, 1, "{}", f.display());
        assert_eq!(issue_keys(&outcome), keys, "{} (CLI)", f.display());
        let (status, _, outcome) = server.post_json(FIT_NOTES, &read_json(f)).await;
        assert_eq!(
            status as u64,
            expected["status"].as_u64().unwrap(),
            "{}: {outcome}",
            f.display()
        );
        assert_eq!(issue_keys(&outcome), keys, "{} (HTTP)", f.display());
        for issue in outcome["issue"].as_array().unwrap() {
            assert!(
                issue["diagnostics"].as_str().is_some_and(|d| d.len() > 15),
                "{}: {issue}",
                f.display()
            );
        }
        // Nothing about the person was stored.
        let nhs = read_json(f)["patient"]["nhsNumber"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (_, found) = server
            .get(&format!(
                "/fhir/Observation?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"
            ))
            .await;
        assert_eq!(found["total"], 0, "{}", f.display());
    }
}

/// The same fit note as a FHIR Observation from a FHIR client: accepted, stored the same way; a
/// broken one is refused with problems pointing at the Observation's elements.
#[tokio::test]
async fn fhir_clients_post_fit_note_observations() {
    let server = Server::start();
    let (_, bundle) = cli_fit_note(
        &root().join("fixtures/fit-notes/valid/02-doctor-may-be-fit-phased-return.json"),
    );
    let mut obs = observation_of(&bundle);
    obs["subject"] = json!({ "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000026" } });
    obs["contained"][1]["organization"]
        .as_object_mut()
        .unwrap()
        .remove("reference");
    obs["contained"][2]["subject"] = obs["subject"].clone();
    obs["identifier"][0] =
        json!({ "system": "https://gp-system.example/fit-notes", "value": "EMED3-77" });
    let practice = server.as_(whg::auth::Principal::practice(DEFAULT_PRACTICE));
    let (status, headers, outcome) = practice.post("/fhir/Observation", &obs).await;
    assert_eq!(status, 201, "{outcome}");
    let id = location_id(&headers);
    // R4 create (http://hl7.org/fhir/R4/http.html#create): [base]/[type]/[id]/_history/[vid].
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/fhir/Observation/{id}/_history/1"))
    );
    assert_eq!(headers["etag"], "W/\"1\"");
    let stored = practice.get(&format!("/fhir/Observation/{id}")).await.1;
    assert_conforms(
        &profile("whg-fit-note"),
        &stored,
        "a FHIR client's fit note as stored",
    );
    assert_eq!(stored["identifier"][0]["value"], "EMED3-77");
    assert_eq!(
        practice.post("/fhir/Observation", &obs).await.0,
        200,
        "a resend"
    );

    let mut broken = obs.clone();
    broken["identifier"][0]["value"] = json!("EMED3-78");
    broken["code"]["coding"][0]["code"] = json!("751481000000104"); // not fit, yet a phased return
    broken["effectivePeriod"] = json!({ "start": "2026-03-02", "end": "2026-03-01" });
    let (status, _, outcome) = practice.post("/fhir/Observation", &broken).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [
            (
                "Observation.component.where(code.coding.code='775281000000100').valueBoolean"
                    .to_string(),
                "business-rule".to_string()
            ),
            (
                "Observation.effectivePeriod.end".to_string(),
                "business-rule".to_string()
            ),
        ]
    );
    let mut unprofiled = obs.clone();
    unprofiled["meta"] = json!({});
    unprofiled["meta"]
        .as_object_mut()
        .unwrap()
        .remove("profile");
    unprofiled.as_object_mut().unwrap().remove("meta");
    let (status, _, outcome) = practice.post("/fhir/Observation", &unprofiled).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(issue_keys(&outcome)[0].0, "Observation.meta.profile");
    let (status, _, _) = practice
        .post(
            "/fhir/Observation",
            &json!({ "resourceType": "Observation", "status": "final", "code": {}, "bogus": 1 }),
        )
        .await;
    assert_eq!(status, 400, "not FHIR R4");
    // Another practice cannot send as this one.
    let other = server.as_(whg::auth::Principal::practice("C88902"));
    let mut foreign = obs.clone();
    foreign["identifier"][0]["value"] = json!("EMED3-79");
    assert_eq!(other.post("/fhir/Observation", &foreign).await.0, 403);
}

// ---- sequences and prompts ---------------------------------------------------------------------

/// A gateway whose only prompt rules are a sequence file's.
fn server_with_rules(rules: &Value) -> Server {
    let mut toml = String::from(
        "[[services]]\nid = \"pas-county-durham\"\nname = \"Patient Advisory Service, County Durham\"\n",
    );
    for r in rules.as_array().unwrap() {
        toml.push_str(&format!(
            "[[services.prompts]]\nid = \"{}\"\nversion = \"test-1\"\nwhen = \"{}\"\n",
            r["id"].as_str().unwrap(),
            r["when"].as_str().unwrap()
        ));
        if let Some(c) = r["count"].as_u64() {
            toml.push_str(&format!("count = {c}\n"));
        }
    }
    toml.push_str(
        "[[services]]\nid = \"sheffield-whs\"\nname = \"Sheffield Work and Health Service\"\n",
    );
    Server::start_with(&toml)
}

fn fired_rules(bundle: &Value) -> Vec<String> {
    let mut rules: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Task")
        .map(|e| {
            let input = e["resource"]["input"].as_array().unwrap();
            let rule = input
                .iter()
                .find(|i| i["type"]["coding"][0]["code"] == "rule")
                .unwrap();
            rule["valueString"]
                .as_str()
                .unwrap()
                .split('|')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    rules.sort();
    rules
}

#[tokio::test]
async fn fit_note_sequences_fire_exactly_the_expected_prompts() {
    let task_profile = profile("whg-referral-prompt");
    // Every answer (the fit note and the prompts it raised), for the independent validators.
    let mut answers = Vec::new();
    for f in fixtures("fit-notes/sequences") {
        let seq = read_json(&f);
        let server = server_with_rules(&seq["rules"]);
        let practice = server.as_(whg::auth::Principal::practice(DEFAULT_PRACTICE));
        for (i, step) in seq["steps"].as_array().unwrap().iter().enumerate() {
            let response = server
                .client
                .post(server.url(FIT_NOTES))
                .header("authorization", format!("Bearer {}", practice.token))
                .header("prefer", "return=representation")
                .json(&step["fitNote"])
                .send()
                .await
                .unwrap();
            let (status, _, body) = read_response(response).await;
            let what = format!("{} step {}", f.display(), i + 1);
            assert_eq!(
                status as u64,
                step["expect"]["status"].as_u64().unwrap(),
                "{what}: {body}"
            );
            if status != 201 {
                assert_eq!(
                    issue_keys(&body),
                    expected_issue_keys(&step["expect"]),
                    "{what}"
                );
                continue;
            }
            let expected: Vec<String> = step["expect"]["prompts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            assert_eq!(fired_rules(&body), expected, "{what}");
            for t in body["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["resource"]["resourceType"] == "Task")
            {
                assert_conforms(&task_profile, &t["resource"], &what);
                whg::fhir::resource::check_strict(&t["resource"]).unwrap();
            }
            answers.push(body);
        }
    }
    check_with_independent_fhir(&answers);
}

#[tokio::test]
async fn history_search_summary_and_answering_prompts() {
    let seq = read_json(
        &root().join("fixtures/fit-notes/sequences/01-three-consecutive-then-a-fourth.json"),
    );
    let server = server_with_rules(&seq["rules"]);
    let practice = server.as_(whg::auth::Principal::practice(DEFAULT_PRACTICE));
    for step in seq["steps"].as_array().unwrap() {
        assert_eq!(practice.post(FIT_NOTES, &step["fitNote"]).await.0, 201);
    }
    let nhs = seq["steps"][0]["fitNote"]["patient"]["nhsNumber"]
        .as_str()
        .unwrap()
        .to_string();
    let by_nhs = format!("patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}");

    // Sorted by the period's start, paged.
    let (status, page) = practice
        .get(&format!("/fhir/Observation?{by_nhs}&_sort=date&_count=3"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 4);
    let starts: Vec<&str> = page["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["effectivePeriod"]["start"].as_str().unwrap())
        .collect();
    assert_eq!(starts, ["2026-01-05", "2026-01-19", "2026-02-02"]);
    assert!(
        page["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next" && l["url"].as_str().unwrap().contains("_sort=date"))
    );
    let (_, desc) = practice
        .get(&format!("/fhir/Observation?{by_nhs}&_sort=-date&_count=1"))
        .await;
    assert_eq!(
        desc["entry"][0]["resource"]["effectivePeriod"]["start"],
        "2026-02-16"
    );
    // Date ranges: periods reaching into February; starting by 18 January; a code.
    let (_, feb) = practice
        .get(&format!("/fhir/Observation?{by_nhs}&date=ge2026-02-01"))
        .await;
    assert_eq!(feb["total"], 3, "notes 2 (ends 1 Feb), 3 and 4");
    let (_, early) = practice
        .get(&format!("/fhir/Observation?{by_nhs}&date=le2026-01-18"))
        .await;
    assert_eq!(early["total"], 1);
    let (_, both) = practice
        .get(&format!(
            "/fhir/Observation?{by_nhs}&date=ge2026-01-20&date=lt2026-02-10"
        ))
        .await;
    assert_eq!(both["total"], 2);
    // R4 search (http://hl7.org/fhir/R4/search.html#prefix), `eq`: "the range of the search
    // value fully contains the range of the target value". January contains note 1 only: note 2
    // runs into 1 February (overlapping January, not contained by it).
    let (_, january) = practice
        .get(&format!("/fhir/Observation?{by_nhs}&date=2026-01"))
        .await;
    assert_eq!(january["total"], 1, "{january}");
    assert_eq!(
        january["entry"][0]["resource"]["effectivePeriod"]["start"],
        "2026-01-05"
    );
    let (_, not_january) = practice
        .get(&format!("/fhir/Observation?{by_nhs}&date=ne2026-01"))
        .await;
    assert_eq!(not_january["total"], 3, "{not_january}");
    let (_, may) = practice
        .get(&format!(
            "/fhir/Observation?{by_nhs}&code=http://snomed.info/sct|751601000000107"
        ))
        .await;
    assert_eq!(may["total"], 0, "every note in the sequence is 'not fit'");
    let (_, not_fit) = practice
        .get(&format!("/fhir/Observation?{by_nhs}&code=751481000000104"))
        .await;
    assert_eq!(not_fit["total"], 4);
    let (status, bad) = practice.get("/fhir/Observation?date=2026-02-30").await;
    assert_eq!(status, 400, "{bad}");

    // The summary.
    let (status, s) = practice
        .get(&format!("/api/v1/patients/{nhs}/fit-notes/summary"))
        .await;
    assert_eq!(status, 200, "{s}");
    let run = &s["summary"]["currentRun"];
    assert_eq!(run["count"], 4);
    assert_eq!(run["start"], "2026-01-05");
    assert_eq!(run["end"], "2026-03-01");
    assert_eq!(run["daysCertified"], 56);
    assert_eq!(s["summary"]["total"], 4);
    assert_eq!(s["summary"]["latestFitness"], "not-fit");
    assert_eq!(
        practice
            .get("/api/v1/patients/9990000019/fit-notes/summary")
            .await
            .0,
        400,
        "bad check digit"
    );
    assert_eq!(
        practice
            .get("/api/v1/patients/9990000034/fit-notes/summary")
            .await
            .0,
        404,
        "no fit notes held"
    );
    let other = server.as_(whg::auth::Principal::practice("C88902"));
    assert_eq!(
        other
            .get(&format!("/api/v1/patients/{nhs}/fit-notes/summary"))
            .await
            .0,
        404,
        "another practice's patient"
    );
    let service = server.as_(whg::auth::Principal::service("pas-county-durham"));
    assert_eq!(
        service
            .get(&format!("/api/v1/patients/{nhs}/fit-notes/summary"))
            .await
            .0,
        404,
        "not referred to the service"
    );

    // The prompts: the practice's own, answered once.
    let (_, tasks) = practice
        .get("/fhir/Task?owner=C88901&status=requested")
        .await;
    assert_eq!(tasks["total"], 2, "{tasks}");
    assert_eq!(
        other.get("/fhir/Task?status=requested").await.1["total"],
        0,
        "another practice sees none"
    );
    assert_eq!(
        service.get("/fhir/Task?status=requested").await.1["total"],
        0,
        "nor does the service"
    );
    let task = tasks["entry"][0]["resource"].clone();
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(other.get(&format!("/fhir/Task/{id}")).await.0, 404);
    let mut answer = task.clone();
    answer["status"] = json!("accepted");
    answer["note"] = json!([{ "text": "Discussed with the patient; referral to follow." }]);
    assert_eq!(
        other.put(&format!("/fhir/Task/{id}"), &answer).await.0,
        404,
        "not the other practice's to answer"
    );
    let mut tampered = answer.clone();
    tampered["owner"]["identifier"]["value"] = json!("C88902");
    let (status, _, outcome) = practice.put(&format!("/fhir/Task/{id}"), &tampered).await;
    assert_eq!(status, 422);
    assert_eq!(
        issue_keys(&outcome),
        [("Task.owner".to_string(), "business-rule".to_string())]
    );
    let (status, _, updated) = practice.put(&format!("/fhir/Task/{id}"), &answer).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["status"], "accepted");
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(
        practice.put(&format!("/fhir/Task/{id}"), &answer).await.0,
        422,
        "already answered"
    );
    let (_, left) = practice
        .get(
            "/fhir/Task?owner:identifier=https://fhir.nhs.uk/Id/ods-organization-code|C88901&status=requested",
        )
        .await;
    assert_eq!(left["total"], 1);
    // A prompt never refers anyone.
    let (_, referrals) = practice.get("/fhir/ServiceRequest").await;
    assert_eq!(referrals["total"], 0);
}

/// A service sees a referred person's fit notes only with their consent to share them.
#[tokio::test]
async fn services_see_fit_notes_only_with_consent() {
    let server = Server::start();
    let practice = server.as_(whg::auth::Principal::practice(DEFAULT_PRACTICE));
    let mut referral =
        read_json(&root().join("fixtures/referrals/valid/01-gp-work-stress-off-sick.json"));
    referral["consent"]["shareFitNotes"] = json!(false);
    let nhs = referral["patient"]["nhsNumber"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, outcome) = practice.post("/api/v1/referrals", &referral).await;
    assert_eq!(status, 201, "{outcome}");
    let mut note =
        read_json(&root().join("fixtures/fit-notes/valid/01-doctor-not-fit-back-pain.json"));
    note["patient"] = json!({ "nhsNumber": nhs });
    note["fitNoteId"] = json!("FN-CONSENT");
    assert_eq!(practice.post(FIT_NOTES, &note).await.0, 201);
    let service = server.as_(whg::auth::Principal::service(
        referral["targetService"].as_str().unwrap(),
    ));
    let by_nhs = format!("patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}");
    let (_, seen) = service
        .get(&format!("/fhir/Observation?{by_nhs}&code=751481000000104"))
        .await;
    assert_eq!(seen["total"], 0, "fit notes withheld: {seen}");
    let (_, employment) = service.get(&format!("/fhir/Observation?{by_nhs}")).await;
    assert!(
        employment["total"].as_u64().unwrap() > 0,
        "the referral's own observations are visible"
    );
    assert_eq!(
        service
            .get(&format!("/api/v1/patients/{nhs}/fit-notes/summary"))
            .await
            .0,
        403
    );

    // With the person's agreement, they are visible.
    referral["referralId"] = json!("REF-SHARE");
    referral["consent"]["shareFitNotes"] = json!(true);
    let (status, _, outcome) = practice.post("/api/v1/referrals", &referral).await;
    assert_eq!(status, 201, "{outcome}");
    let (_, seen) = service
        .get(&format!("/fhir/Observation?{by_nhs}&code=751481000000104"))
        .await;
    assert_eq!(seen["total"], 1, "{seen}");
    let (status, s) = service
        .get(&format!("/api/v1/patients/{nhs}/fit-notes/summary"))
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["summary"]["total"], 1);
}

// ---- eligibility ---------------------------------------------------------------------------

fn eligibility_of(sr: &Value) -> &Value {
    sr["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "https://fhir.work-health-gateway.org/StructureDefinition/whg-eligibility-assessment")
        .unwrap_or_else(|| panic!("no eligibility on {sr}"))
}

fn part<'a>(ext: &'a Value, url: &str) -> Vec<&'a Value> {
    ext["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["url"] == url)
        .collect()
}

#[tokio::test]
async fn referrals_carry_their_services_eligibility_and_may_be_refused_by_it() {
    profile("whg-eligibility-assessment");
    let server = Server::start_with(
        "[[services]]\nid = \"workwell-south-tyneside\"\nname = \"WorkWell South Tyneside\"\n\
         [services.eligibility]\nversion = \"2026-11-01\"\nmin_age = 16\nmax_age = 66\npostcode_districts = [\"NE33\", \"NE34\"]\nlong_term_condition = true\nfit_note_within_months = 6\nright_to_work = true\n\
         [[services]]\nid = \"strict-service\"\nname = \"A service that refuses\"\n\
         [services.eligibility]\nversion = \"v7\"\nrefuse_when_not_met = true\npostcode_districts = [\"NE33\"]\nmin_age = 16\nmax_age = 66\n",
    );
    let practice = server.as_(whg::auth::Principal::practice(DEFAULT_PRACTICE));
    let mut referral =
        read_json(&root().join("fixtures/referrals/valid/01-gp-work-stress-off-sick.json"));
    referral["targetService"] = json!("workwell-south-tyneside");
    referral["patient"]["postcode"] = json!("NE33 1AB");
    referral["employment"]["rightToWork"] = json!(true);
    // A recent fit note for the person, so every criterion can be met.
    let mut note =
        read_json(&root().join("fixtures/fit-notes/valid/01-doctor-not-fit-back-pain.json"));
    let today = chrono::Utc::now().date_naive();
    let start = today - chrono::Days::new(10);
    note["patient"] = json!({ "nhsNumber": referral["patient"]["nhsNumber"] });
    note["issuedOn"] = json!(start.to_string());
    note["assessment"]["date"] = json!(start.to_string());
    note["period"] =
        json!({ "from": start.to_string(), "to": (start + chrono::Days::new(27)).to_string() });
    assert_eq!(practice.post(FIT_NOTES, &note).await.0, 201);
    let (status, headers, outcome) = practice.post("/api/v1/referrals", &referral).await;
    assert_eq!(status, 201, "{outcome}");
    let sr = practice
        .get(&format!("/fhir/ServiceRequest/{}", location_id(&headers)))
        .await
        .1;
    whg::fhir::resource::check_strict(&sr).unwrap();
    let e = eligibility_of(&sr);
    assert_eq!(part(e, "version")[0]["valueString"], "2026-11-01");
    assert_eq!(part(e, "outcome")[0]["valueCoding"]["code"], "met", "{e}");
    assert_eq!(
        part(e, "criterion").len(),
        5,
        "age, area, condition, fit note, right to work"
    );

    // Outside the area: accepted and marked, each criterion explained.
    referral["referralId"] = json!("REF-ELSEWHERE");
    referral["patient"]["postcode"] = json!("S1 2HE");
    referral["patient"]["nhsNumber"] = json!("9990000026");
    let (status, headers, _) = practice.post("/api/v1/referrals", &referral).await;
    assert_eq!(status, 201);
    let sr = practice
        .get(&format!("/fhir/ServiceRequest/{}", location_id(&headers)))
        .await
        .1;
    let e = eligibility_of(&sr);
    assert_eq!(part(e, "outcome")[0]["valueCoding"]["code"], "not-met");
    let area = part(e, "criterion")
        .into_iter()
        .find(|c| c["extension"][0]["valueCoding"]["code"] == "area")
        .unwrap()
        .clone();
    assert_eq!(area["extension"][1]["valueCoding"]["code"], "not-met");
    assert!(
        area["extension"][2]["valueString"]
            .as_str()
            .unwrap()
            .contains("S1")
    );
    let recent = part(e, "criterion")
        .into_iter()
        .find(|c| c["extension"][0]["valueCoding"]["code"] == "recent-fit-note")
        .unwrap()
        .clone();
    assert_eq!(
        recent["extension"][1]["valueCoding"]["code"], "unknown",
        "the gateway holds no fit note for this person"
    );

    // A service that refuses: 422 naming the failed criteria, nothing stored.
    referral["referralId"] = json!("REF-STRICT");
    referral["targetService"] = json!("strict-service");
    referral["patient"]["birthDate"] = json!("1950-01-01");
    let (status, _, outcome) = practice.post("/api/v1/referrals", &referral).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(
        issue_keys(&outcome),
        [
            ("patient.birthDate".to_string(), "business-rule".to_string()),
            ("patient.postcode".to_string(), "business-rule".to_string()),
        ]
    );
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("v7")
    );
    let (_, found) = practice
        .get("/fhir/ServiceRequest?identifier=REF-STRICT")
        .await;
    assert_eq!(found["total"], 0);
}

/// Every field of a fit note (practice format and FHIR) deleted, nulled or retyped: always a
/// 201/200 or a 4xx OperationOutcome with issues, never a 500.
#[tokio::test]
async fn mangled_fit_notes_get_a_4xx_never_a_500() {
    fn paths(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let mut p = at.clone();
                    p.push(k.clone());
                    out.push(p.clone());
                    paths(c, p, out);
                }
            }
            Value::Array(items) => {
                for (i, c) in items.iter().enumerate() {
                    let mut p = at.clone();
                    p.push(i.to_string());
                    out.push(p.clone());
                    paths(c, p, out);
                }
            }
            _ => {}
        }
    }
    fn set(v: &mut Value, path: &[String], new: Option<Value>) {
        let (last, parents) = path.split_last().unwrap();
        let mut node = v;
        for p in parents {
            node = match node {
                Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
                other => &mut other[p.as_str()],
            };
        }
        match (node, new) {
            (Value::Object(m), None) => {
                m.remove(last);
            }
            (Value::Array(a), None) => {
                a.remove(last.parse::<usize>().unwrap());
            }
            (Value::Object(m), Some(n)) => {
                m.insert(last.clone(), n);
            }
            (Value::Array(a), Some(n)) => a[last.parse::<usize>().unwrap()] = n,
            _ => {}
        }
    }
    let server = Server::start();
    let practice = server.as_(whg::auth::Principal::practice(DEFAULT_PRACTICE));
    let base = read_json(&root().join("fixtures/fit-notes/valid/07-all-four-adjustments.json"));
    let (_, bundle) =
        cli_fit_note(&root().join("fixtures/fit-notes/valid/07-all-four-adjustments.json"));
    let mut obs = observation_of(&bundle);
    obs["subject"] = json!({ "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000026" } });
    let mut n = 0;
    for (route, doc) in [(FIT_NOTES, base), ("/fhir/Observation", obs)] {
        let mut all = Vec::new();
        paths(&doc, Vec::new(), &mut all);
        for (i, path) in all.iter().enumerate() {
            for replacement in [
                None,
                Some(Value::Null),
                Some(json!(42)),
                Some(json!("x")),
                Some(json!([])),
            ] {
                let mut mangled = doc.clone();
                set(&mut mangled, path, replacement.clone());
                if route == FIT_NOTES {
                    mangled["fitNoteId"] = json!(format!("M-{i}-{n}"));
                } else if mangled["identifier"][0].is_object() {
                    mangled["identifier"][0]["value"] = json!(format!("M-{i}-{n}"));
                }
                n += 1;
                let (status, _, body) = practice.post(route, &mangled).await;
                assert!(
                    status == 201
                        || status == 200
                        || ((400..500).contains(&status)
                            && body["issue"].as_array().is_some_and(|i| !i.is_empty())),
                    "{route} {path:?} = {replacement:?}: {status} {body}"
                );
            }
        }
    }
    assert!(n > 300, "{n} mutations");
}

/// The practice that sent a fit note corrects it by marking it entered in error (R4
/// Observation.status `entered-in-error`: "The observation has been withdrawn following previous
/// final release"): kept and readable, but no longer in the person's history (the summary), the
/// referral prompts it raised still waiting are cancelled so the practice sees them withdrawn, it
/// is audited, and nobody else can do it. Before, a fit note could only ever be `final`.
#[tokio::test]
async fn a_fit_note_entered_in_error_leaves_the_history_and_withdraws_its_prompts() {
    use whg::auth::{Principal, Role};
    let seq = read_json(
        &root().join("fixtures/fit-notes/sequences/01-three-consecutive-then-a-fourth.json"),
    );
    let server = server_with_rules(&seq["rules"]);
    let practice = server.as_(Principal::practice(DEFAULT_PRACTICE));
    let mut last = Value::Null;
    for step in seq["steps"].as_array().unwrap() {
        let (status, _, body) = practice.post(FIT_NOTES, &step["fitNote"]).await;
        assert_eq!(status, 201, "{body}");
        last = body;
    }
    let nhs = seq["steps"][0]["fitNote"]["patient"]["nhsNumber"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, before) = practice
        .get(&format!("/api/v1/patients/{nhs}/fit-notes/summary"))
        .await;
    assert_eq!(before["summary"]["total"], 4, "{before}");
    // The first note: it raised the first-fit-note prompt, and the third note's prompt (three
    // consecutive) rests on it too. Both still wait.
    let (_, first) = practice
        .get(&format!(
            "/fhir/Observation?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}&_sort=date&_count=1"
        ))
        .await;
    let note = first["entry"][0]["resource"].clone();
    let id = note["id"].as_str().unwrap().to_string();
    let (_, waiting) = practice
        .get("/fhir/Task?owner=C88901&status=requested")
        .await;
    let raised_by_it: Vec<String> = waiting["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["resource"]
                .to_string()
                .contains(&format!("\"Observation/{id}\""))
        })
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(raised_by_it.len(), 2, "{waiting} {last}");

    let mut withdrawn = note.clone();
    withdrawn["status"] = json!("entered-in-error");
    // Nobody but the practice that sent it.
    let other = server.as_(Principal::practice("C88902"));
    assert_eq!(
        other
            .put(&format!("/fhir/Observation/{id}"), &withdrawn)
            .await
            .0,
        404
    );
    // Only the status changes when a fit note is entered in error (a change of content is an
    // amendment).
    let mut changed = withdrawn.clone();
    changed["effectivePeriod"]["end"] = json!("2026-12-31");
    let (status, _, outcome) = practice
        .put(&format!("/fhir/Observation/{id}"), &changed)
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome.to_string().contains("only the status changes"),
        "{outcome}"
    );

    let (status, headers, stored) = practice
        .put(&format!("/fhir/Observation/{id}"), &withdrawn)
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["status"], "entered-in-error");
    assert_eq!(headers["etag"], "W/\"2\"");
    let (_, read) = practice.get(&format!("/fhir/Observation/{id}")).await;
    assert_eq!(read["status"], "entered-in-error", "kept, and readable");
    let (_, after) = practice
        .get(&format!("/api/v1/patients/{nhs}/fit-notes/summary"))
        .await;
    assert_eq!(after["summary"]["total"], 3, "out of the history: {after}");
    for task in &raised_by_it {
        let (_, t) = practice.get(&format!("/fhir/Task/{task}")).await;
        assert_eq!(t["status"], "cancelled", "{t}");
    }
    // Corrected and sent again as a new fit note, it raises its prompt again: the withdrawn one
    // no longer counts.
    let mut corrected = seq["steps"][0]["fitNote"].clone();
    corrected["fitNoteId"] = json!(format!(
        "{}-corrected",
        corrected["fitNoteId"].as_str().unwrap()
    ));
    let (status, _, body) = practice.post(FIT_NOTES, &corrected).await;
    assert_eq!(status, 201, "{body}");
    let (_, again_waiting) = practice
        .get("/fhir/Task?owner=C88901&status=requested")
        .await;
    assert!(
        again_waiting["total"].as_u64().unwrap() >= 1,
        "the corrected note raises a prompt: {again_waiting}"
    );
    // Sent again: nothing changes.
    let (status, _, again) = practice
        .put(&format!("/fhir/Observation/{id}"), &withdrawn)
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["meta"]["versionId"], "2");
    let (_, events) = server
        .as_(Principal::new(Role::InformationGovernance, "ig-team"))
        .get("/fhir/AuditEvent?_count=200")
        .await;
    assert_eq!(
        events
            .to_string()
            .matches("fit note entered in error by the practice")
            .count(),
        1
    );
}

/// The practice that sent a fit note amends it (R4 Observation.status `amended`: "Subsequent to
/// being Final, the observation has been modified"): checked as a new fit note is, the same fit
/// note (its identifier) about the same person; a new version others read, the history the rules
/// read takes the new period, waiting prompts resting on it are cancelled when what fired them
/// changed, and it is audited. Nobody else can, and a resend changes nothing.
#[tokio::test]
async fn a_practice_amends_a_fit_note_it_sent() {
    use whg::auth::{Principal, Role};
    let seq = read_json(
        &root().join("fixtures/fit-notes/sequences/01-three-consecutive-then-a-fourth.json"),
    );
    let server = server_with_rules(&seq["rules"]);
    let practice = server.as_(Principal::practice(DEFAULT_PRACTICE));
    let first = &seq["steps"][0]["fitNote"];
    let (status, _, body) = practice.post(FIT_NOTES, first).await;
    assert_eq!(status, 201, "{body}");
    let nhs = first["patient"]["nhsNumber"].as_str().unwrap().to_string();
    let (_, found) = practice
        .get(&format!(
            "/fhir/Observation?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}&_count=1"
        ))
        .await;
    let note = found["entry"][0]["resource"].clone();
    let id = note["id"].as_str().unwrap().to_string();
    let (_, waiting) = practice
        .get("/fhir/Task?owner=C88901&status=requested")
        .await;
    assert_eq!(
        waiting["total"], 1,
        "the first fit note's prompt: {waiting}"
    );
    let prompt = waiting["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Its comments corrected: a new version, nothing the rules read changed, the prompt waits.
    let mut reworded = note.clone();
    reworded["status"] = json!("amended");
    reworded["note"] = json!([{ "text": "Cannot lift, or sit for more than twenty minutes, while the pain settles." }]);
    let other = server.as_(Principal::practice("C88902"));
    assert_eq!(
        other
            .put(&format!("/fhir/Observation/{id}"), &reworded)
            .await
            .0,
        404
    );
    let (status, headers, amended) = practice
        .put(&format!("/fhir/Observation/{id}"), &reworded)
        .await;
    assert_eq!(status, 200, "{amended}");
    assert_eq!(amended["status"], "amended");
    assert_eq!(headers["etag"], "W/\"2\"");
    assert_eq!(amended["subject"], note["subject"]);
    assert_eq!(amended["identifier"], note["identifier"]);
    // What it names, in its contained issuer and conditions too, is what is stored.
    assert!(!amended.to_string().contains("urn:uuid:"), "{amended}");
    let sorted = |v: &Value| {
        let mut items = v.as_array().unwrap().clone();
        items.sort_by_key(|r| r["id"].to_string());
        items
    };
    assert_eq!(sorted(&amended["contained"]), sorted(&note["contained"]));
    let (_, t) = practice.get(&format!("/fhir/Task/{prompt}")).await;
    assert_eq!(t["status"], "requested", "{t}");
    // Sent again: nothing changes.
    let (status, _, again) = practice
        .put(&format!("/fhir/Observation/{id}"), &reworded)
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["meta"]["versionId"], "2");

    // What an amendment cannot be: another fit note's identifier, another person, a fit note
    // that breaks the DWP's rules (adjustments with "not fit"), a stale version.
    let mut renamed = reworded.clone();
    renamed["identifier"][0]["value"] = json!("SOMETHING-ELSE");
    let (status, _, outcome) = practice
        .put(&format!("/fhir/Observation/{id}"), &renamed)
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome.to_string().contains("Observation.identifier"),
        "{outcome}"
    );
    let mut broken = reworded.clone();
    for c in broken["component"].as_array_mut().unwrap() {
        if c["valueBoolean"].is_boolean() {
            c["valueBoolean"] = json!(true);
        }
    }
    let (status, _, outcome) = practice
        .put(&format!("/fhir/Observation/{id}"), &broken)
        .await;
    assert_eq!(status, 422, "{outcome}");
    // Its period extended: the history the summary and the rules read follows, and the prompt
    // that rested on the old period is cancelled. (Based on a version since replaced: 412.)
    let mut longer = reworded.clone();
    longer["effectivePeriod"]["end"] = json!("2026-01-25");
    let stale = practice
        .request(reqwest::Method::PUT, &format!("/fhir/Observation/{id}"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(serde_json::to_vec(&longer).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let (status, _, amended) = practice
        .put(&format!("/fhir/Observation/{id}"), &longer)
        .await;
    assert_eq!(status, 200, "{amended}");
    assert_eq!(amended["effectivePeriod"]["end"], "2026-01-25");
    let (_, summary) = practice
        .get(&format!("/api/v1/patients/{nhs}/fit-notes/summary"))
        .await;
    assert!(summary.to_string().contains("2026-01-25"), "{summary}");
    let (_, t) = practice.get(&format!("/fhir/Task/{prompt}")).await;
    assert_eq!(t["status"], "cancelled", "{t}");
    assert!(
        t["statusReason"]["text"]
            .as_str()
            .unwrap()
            .contains("amended"),
        "{t}"
    );
    let (_, history) = practice
        .get(&format!("/fhir/Observation/{id}/_history"))
        .await;
    assert_eq!(history["total"], 3, "{history}");
    check_with_independent_fhir(std::slice::from_ref(&amended));
    let (_, events) = server
        .as_(Principal::new(Role::InformationGovernance, "ig-team"))
        .get("/fhir/AuditEvent?_count=200")
        .await;
    assert_eq!(
        events
            .to_string()
            .matches("fit note amended by the practice")
            .count(),
        2,
        "{events}"
    );

    // The DWP's duration rule holds for an amendment as for a new fit note: more than three
    // months in the first six months of absence is refused (checked in the store's transaction,
    // over the person's fit notes as committed).
    let mut too_long = longer.clone();
    too_long["effectivePeriod"]["end"] = json!("2026-06-30");
    let (status, _, outcome) = practice
        .put(&format!("/fhir/Observation/{id}"), &too_long)
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome.to_string().contains("Observation.effectivePeriod"),
        "{outcome}"
    );
    let (_, kept) = practice.get(&format!("/fhir/Observation/{id}")).await;
    assert_eq!(kept["effectivePeriod"]["end"], "2026-01-25");

    // Entered in error, it is not amended any more.
    let mut withdrawn = amended.clone();
    withdrawn["status"] = json!("entered-in-error");
    let (status, _, _) = practice
        .put(&format!("/fhir/Observation/{id}"), &withdrawn)
        .await;
    assert_eq!(status, 200);
    let (status, _, outcome) = practice
        .put(&format!("/fhir/Observation/{id}"), &longer)
        .await;
    assert_eq!(status, 422, "{outcome}");
}
