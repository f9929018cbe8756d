//! The service directory (`GET /fhir/HealthcareService`) and eligibility before sending: a GP
//! system finds which services cover a person's postcode district and take its referrals, reads
//! their criteria in words and as the versioned rules, and learns from `$validate` or
//! `whg validate` which criterion a referral misses before it sends it.

mod common;

use common::*;
use serde_json::{Value, json};
use whg::auth::Principal;

/// `GET path` without a token.
async fn anonymous(server: &Server, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(server.url(path))
        .send()
        .await
        .unwrap();
    let (status, _, body) = read_response(r).await;
    (status, body)
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Services beside the defaults: one taking employers' and people's own referrals in two
/// districts, refusing referrals that miss its criteria.
const SERVICES: &str = r#"
[[services]]
id = "sheffield-whs"
name = "Sheffield Work and Health Service"
bars_endpoint = "https://fhir.nhs.uk/Id/dos-service-id|2000100001"

[[services]]
id = "workwell-south-tyneside"
name = "WorkWell South Tyneside"

[services.eligibility]
version = "2026-11-01"
refuse_when_not_met = false
postcode_districts = ["NE33"]

[[services]]
id = "working-win-leeds"
name = "Working Win Leeds"
ods_code = "X99LW"
referral_routes = ["gp", "self-referral", "employer"]

[services.eligibility]
version = "2026-12-01"
refuse_when_not_met = true
min_age = 18
postcode_districts = ["LS1", "LS2"]
"#;

#[tokio::test]
async fn anyone_reads_the_directory_and_each_entry_is_valid_fhir() {
    let server = Server::start();
    let (status, bundle) = anonymous(&server, "/fhir/HealthcareService").await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    let listed = ids(&bundle);
    let configured: Vec<String> = whg::config::Config::defaults()
        .services
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(listed, configured, "every configured service, in order");
    assert_eq!(bundle["total"], configured.len());
    let resources: Vec<Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect();
    check_with_independent_fhir(&resources);

    // Paged like every searchset: a page of two, the next page from its link.
    let (_, first) = anonymous(&server, "/fhir/HealthcareService?_count=2").await;
    assert_eq!(ids(&first), configured[..2]);
    assert_eq!(first["total"], configured.len());
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next page")["url"]
        .as_str()
        .unwrap()
        .strip_prefix(&server.base)
        .unwrap()
        .to_string();
    let (_, second) = anonymous(&server, &next).await;
    assert_eq!(ids(&second), configured[2..4]);

    // Read by id; a service the gateway does not run is not found, as an OperationOutcome.
    let (status, ww) = anonymous(&server, "/fhir/HealthcareService/workwell-south-tyneside").await;
    assert_eq!(status, 200, "{ww}");
    assert_eq!(ww["name"], "WorkWell South Tyneside");
    let words: Vec<&str> = ww["eligibility"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["comment"].as_str().unwrap())
        .collect();
    assert!(
        words.contains(&"Aged 16 to 66 (criteria version 2026-11-01)"),
        "{words:?}"
    );
    assert!(
        ww["comment"].as_str().unwrap().contains("within 14 days"),
        "the contact promise"
    );
    assert_eq!(
        ww["contained"][0]["address"],
        server.url("/fhir/$process-message"),
        "where to send"
    );
    let (status, missing) = anonymous(&server, "/fhir/HealthcareService/no-such-service").await;
    assert_eq!(status, 404);
    assert_eq!(missing["resourceType"], "OperationOutcome");

    // The CapabilityStatement says so.
    let (_, capability) = anonymous(&server, "/fhir/metadata").await;
    let declared = capability["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "HealthcareService")
        .expect("HealthcareService declared");
    let params: Vec<&str> = declared["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"postcode-district") && params.contains(&"referral-route"));
}

#[tokio::test]
async fn searched_by_postcode_district_and_referral_route() {
    let server = Server::start_with(SERVICES);
    let search = |q: &'static str| {
        let server = &server;
        async move {
            let (status, bundle) = anonymous(server, &format!("/fhir/HealthcareService?{q}")).await;
            assert_eq!(status, 200, "{q}: {bundle}");
            ids(&bundle)
        }
    };
    assert_eq!(search("postcode-district=LS1").await, ["working-win-leeds"]);
    assert_eq!(
        search("postcode-district=ls2%204aa").await,
        ["working-win-leeds"],
        "a whole postcode, any case"
    );
    assert!(
        search("postcode-district=S1").await.is_empty(),
        "Sheffield's service declares no area: it is not offered for an area it may not cover"
    );
    assert_eq!(
        search("referral-route=employer").await,
        ["working-win-leeds"]
    );
    assert_eq!(
        search("referral-route=gp").await,
        [
            "sheffield-whs",
            "workwell-south-tyneside",
            "working-win-leeds"
        ]
    );
    assert_eq!(
        search("postcode-district=LS1&referral-route=self-referral").await,
        ["working-win-leeds"]
    );
    assert!(
        search("postcode-district=LS1&referral-route=talking-therapies")
            .await
            .is_empty()
    );
    assert_eq!(search("name=working").await, ["working-win-leeds"]);
    assert_eq!(
        search("identifier=https://fhir.nhs.uk/Id/dos-service-id%7C2000100001").await,
        ["sheffield-whs"]
    );
    let (_, leeds) = anonymous(&server, "/fhir/HealthcareService/working-win-leeds").await;
    assert_eq!(leeds["providedBy"]["identifier"]["value"], "X99LW");
    assert!(
        leeds["extraDetails"]
            .as_str()
            .unwrap()
            .contains("is refused, with the criterion it misses")
    );
    let routes: Vec<&str> = leeds["characteristic"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["gp", "self-referral", "employer"]);
}

#[tokio::test]
async fn a_wrong_search_is_refused_with_every_problem_at_its_parameter() {
    let server = Server::start();
    let (status, outcome) = anonymous(
        &server,
        "/fhir/HealthcareService?postcode-district=nowhere&referral-route=carrier-pigeon",
    )
    .await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(
        issue_keys(&outcome),
        [
            (
                "HealthcareService?postcode-district".into(),
                "invalid".into()
            ),
            (
                "HealthcareService?referral-route".into(),
                "code-invalid".into()
            )
        ]
    );
    for issue in outcome["issue"].as_array().unwrap() {
        assert_eq!(issue["severity"], "error");
        assert!(issue["diagnostics"].as_str().unwrap().len() > 20, "{issue}");
    }
    // A parameter it does not support: refused, or ignored and said so when asked.
    let (status, outcome) = anonymous(&server, "/fhir/HealthcareService?colour=blue").await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "not-supported");
    let r = reqwest::Client::new()
        .get(server.url("/fhir/HealthcareService?colour=blue"))
        .header("prefer", "handling=lenient")
        .send()
        .await
        .unwrap();
    let (status, _, bundle) = read_response(r).await;
    assert_eq!(status, 200, "{bundle}");
    let outcome = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("what was ignored is said");
    assert_eq!(outcome["resource"]["issue"][0]["severity"], "warning");
}

#[tokio::test]
async fn the_directory_is_rate_limited_like_any_request_without_a_token() {
    let server = Server::start_with(
        "[limits]\nunauthenticated_requests_per_second_per_source = 0.01\nunauthenticated_burst_per_source = 3.0\n",
    );
    for _ in 0..3 {
        assert_eq!(anonymous(&server, "/fhir/HealthcareService").await.0, 200);
    }
    let (status, outcome) = anonymous(&server, "/fhir/HealthcareService").await;
    assert_eq!(status, 429, "{outcome}");
}

/// The issue of `outcome` at `field`.
fn issue_at<'a>(outcome: &'a Value, field: &str) -> &'a Value {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["expression"][0] == field)
        .unwrap_or_else(|| panic!("no issue at {field}: {outcome}"))
}

/// A referral for someone outside the service's area, to a service that refuses such
/// referrals and to one that takes them marked.
fn out_of_area(service: &str) -> Value {
    let mut r = referral_for(41, service);
    r["patient"]["postcode"] = json!("S1 2HE");
    r
}

#[tokio::test]
async fn a_gp_learns_before_sending_which_criterion_a_referral_misses() {
    let server = Server::start_with(SERVICES);
    let gp = server.as_(Principal::practice(DEFAULT_PRACTICE));

    // Refused when sent: $validate says so, as an error at the field.
    let (status, _, outcome) = gp
        .post(
            "/api/v1/referrals/$validate",
            &out_of_area("working-win-leeds"),
        )
        .await;
    assert_eq!(status, 200, "{outcome}");
    let area = issue_at(&outcome, "patient.postcode");
    assert_eq!(area["severity"], "error");
    assert_eq!(area["code"], "business-rule");
    let said = area["diagnostics"].as_str().unwrap();
    assert!(
        said.contains("'area'") && said.contains("2026-12-01"),
        "{said}"
    );
    // And sending it is refused the same way, with nothing stored.
    let (status, _, refused) = gp
        .post("/api/v1/referrals", &out_of_area("working-win-leeds"))
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["issue"][0]["expression"][0], "patient.postcode");
    let (status, found) = gp
        .get("/fhir/ServiceRequest?identifier=CONSENT-TEST-41&_total=accurate")
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 0, "a refused referral stores nothing");

    // WorkWell takes it marked: a warning, and still valid.
    let mut marked = out_of_area("workwell-south-tyneside");
    marked["referralId"] = json!("CONSENT-TEST-42");
    let (status, _, outcome) = gp.post("/api/v1/referrals/$validate", &marked).await;
    assert_eq!(status, 200, "{outcome}");
    let area = issue_at(&outcome, "patient.postcode");
    assert_eq!(area["severity"], "warning");
    assert!(
        area["diagnostics"]
            .as_str()
            .unwrap()
            .contains("marked for review")
    );

    // `whg validate` offline, from the same configuration: the same error, exit 1.
    let file = server.dir.path().join("out-of-area.json");
    std::fs::write(&file, out_of_area("working-win-leeds").to_string()).unwrap();
    let out = std::process::Command::new(WHG)
        .args(["validate", "referral", file.to_str().unwrap(), "--config"])
        .arg(server.config_path())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{printed}");
    assert!(
        printed.contains("patient.postcode") && printed.contains("'area'"),
        "{printed}"
    );
}

/// The HealthcareService a BaRS message carried is stored with its referral: read by its id
/// with a token, under the tenancy rule, as before the directory; never without one.
#[tokio::test]
async fn a_healthcare_service_a_message_carried_is_read_as_a_stored_record() {
    let server = Server::start();
    let message =
        read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"));
    let sender = sender_practice(&message).unwrap();
    let (status, _, body) = server.post_json("/fhir/$process-message", &message).await;
    assert!((200..300).contains(&status), "{body}");
    let stored: String =
        sqlx::query_scalar("SELECT id FROM resources WHERE resource_type = 'HealthcareService'")
            .fetch_one(&mut server.db().await)
            .await
            .unwrap();
    let path = format!("/fhir/HealthcareService/{stored}");
    let (status, read) = server.as_(Principal::practice(&sender)).get(&path).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["id"], stored.as_str());
    let (status, _) = anonymous(&server, &path).await;
    assert_eq!(status, 404, "not without a token");
    let (status, _) = server.as_(Principal::practice("Y99999")).get(&path).await;
    assert!(
        status == 404 || status == 403,
        "another practice does not read it: {status}"
    );
}
