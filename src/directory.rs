//! The service directory: each configured service as a FHIR R4 `HealthcareService`, so a GP
//! system (or a person choosing where to refer themselves) can find which services cover a
//! postcode district, whom they take referrals from, what their criteria are — in plain words
//! and as the versioned rules the gateway checks — how soon they make contact, and where to send.
//! Pure: built from the configuration's services, searched in memory (a deployment runs a
//! handful of services, never thousands).

use serde_json::{Value, json};

use crate::eligibility::{EligibilityConfig, postcode_district};
use crate::fhir::search::{DEFAULT_COUNT, MAX_COUNT};
use crate::fhir::systems::{ODS_ORGANIZATION, service_identifier_system};
use crate::fhir::terminology::{code_system, coding};
use crate::fhir::{Issue, IssueType};
use crate::services::Service;

/// FHIR R4's `service-referral-method` (how referrals are made): electronic messaging.
const REFERRAL_METHOD: &str = "http://terminology.hl7.org/CodeSystem/service-referral-method";
const ENDPOINT_CONNECTION_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/endpoint-connection-type";
const ENDPOINT_PAYLOAD_TYPE: &str = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type";

/// What the directory says of every service alike.
pub struct Context<'a> {
    /// The gateway's public base URL: where referrals are sent.
    pub base_url: &'a str,
    /// Days from referral to first contact the services aim for.
    pub first_contact_days: u32,
}

/// `service` as a `HealthcareService`.
pub fn healthcare_service(service: &Service, cx: &Context<'_>) -> Value {
    let base = cx.base_url.trim_end_matches('/');
    let mut identifiers =
        vec![json!({ "system": service_identifier_system(), "value": service.id })];
    if let Some((system, value)) = service
        .bars_endpoint
        .as_deref()
        .and_then(|e| e.split_once('|'))
    {
        identifiers.push(json!({ "system": system, "value": value }));
    }
    let mut resource = json!({
        "resourceType": "HealthcareService",
        "id": service.id,
        "meta": { "profile": [crate::fhir::systems::profile::uk_core_for("HealthcareService").unwrap_or_default()] },
        "identifier": identifiers,
        "active": true,
        "type": [{ "coding": [coding("service-type", "work-and-health-support")] }],
        "name": service.name,
        "comment": format!(
            "Helps people in work but struggling with a health condition, or off sick, to stay in or return to work. \
             The service aims to contact each person within {} days of their referral.",
            cx.first_contact_days
        ),
        "extraDetails": how_to_refer(service, base),
        "characteristic": service.referral_routes.iter().map(|route| json!({
            "coding": [coding("referral-route", route)],
            "text": format!("Takes referrals from: {}", route_display(route)),
        })).collect::<Vec<_>>(),
        "referralMethod": [{ "coding": [{ "system": REFERRAL_METHOD, "code": "elec", "display": "Secure Messaging" }] }],
        "appointmentRequired": false,
        "endpoint": [{ "reference": "#bars", "display": "BaRS referral messages ($process-message)" }],
    });
    if let Some(ods) = &service.ods_code {
        resource["providedBy"] = json!({
            "identifier": { "system": ODS_ORGANIZATION, "value": ods },
            "display": service.name,
        });
    }
    let mut contained = vec![json!({
        "resourceType": "Endpoint",
        "id": "bars",
        "status": "active",
        "connectionType": { "system": ENDPOINT_CONNECTION_TYPE, "code": "hl7-fhir-msg" },
        "name": format!("Referrals to {}", service.name),
        "payloadType": [{
            "coding": [{ "system": ENDPOINT_PAYLOAD_TYPE, "code": "any" }],
            "text": "NHS BaRS referral request message (servicerequest-request)",
        }],
        "payloadMimeType": ["application/fhir+json"],
        "address": format!("{base}/fhir/$process-message"),
    })];
    if let Some(rules) = &service.eligibility {
        if let Some(districts) = rules.postcode_districts.as_ref().filter(|d| !d.is_empty()) {
            let mut areas = Vec::new();
            for district in districts {
                let id = format!("area-{}", district.to_ascii_uppercase());
                areas.push(json!({ "reference": format!("#{id}"), "display": format!("Postcode district {district}") }));
                contained.push(json!({
                    "resourceType": "Location",
                    "id": id,
                    "status": "active",
                    "name": format!("Postcode district {district}"),
                    "mode": "kind",
                    "physicalType": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "area", "display": "Area" }] },
                    "address": { "postalCode": district, "country": "GB" },
                }));
            }
            resource["coverageArea"] = json!(areas);
        }
        let criteria = eligibility(rules);
        if !criteria.is_empty() {
            resource["eligibility"] = json!(criteria);
        }
    }
    resource["contained"] = json!(contained);
    resource
}

/// How a practice refers, in words: the two APIs, and what happens to a referral that misses
/// a criterion.
fn how_to_refer(service: &Service, base: &str) -> String {
    let mut text = format!(
        "Send a referral through the Work and Health Gateway: an NHS BaRS referral message to {base}/fhir/$process-message \
         addressed to this service (HealthcareService identifier {system}|{id}), or the practice referral format to \
         {base}/api/v1/referrals with \"service\": \"{id}\". Check a referral first, without sending it, with \
         POST {base}/api/v1/referrals/$validate or `whg validate`: it names any criterion below that the referral does not meet.",
        system = service_identifier_system(),
        id = service.id,
    );
    if let Some(rules) = &service.eligibility {
        text.push_str(if rules.refuse_when_not_met {
            " A referral that does not meet a criterion is refused, with the criterion it misses."
        } else {
            " A referral that does not meet a criterion is still taken, marked for the service to review."
        });
    }
    text
}

/// The plain-language name of a `referral-route` code.
fn route_display(code: &str) -> String {
    code_system("referral-route")
        .display(code)
        .unwrap_or(code)
        .to_string()
}

/// Each criterion the service declares: its code, and the rule in plain words with the version
/// of the rules it belongs to (the version a referral's eligibility result names).
pub fn eligibility(rules: &EligibilityConfig) -> Vec<Value> {
    criteria_in_words(rules)
        .into_iter()
        .map(|(criterion, words)| {
            json!({
                "code": { "coding": [coding("eligibility-criterion", criterion)] },
                "comment": format!("{words} (criteria version {})", rules.version),
            })
        })
        .collect()
}

/// `(criterion code, the rule in plain words)` for every criterion `rules` declares.
pub fn criteria_in_words(rules: &EligibilityConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match (rules.min_age, rules.max_age) {
        (Some(a), Some(b)) => out.push(("age", format!("Aged {a} to {b}"))),
        (Some(a), None) => out.push(("age", format!("Aged {a} or over"))),
        (None, Some(b)) => out.push(("age", format!("Aged {b} or under"))),
        (None, None) => {}
    }
    if let Some(districts) = &rules.postcode_districts {
        out.push((
            "area",
            format!(
                "Living in one of these postcode districts: {}",
                districts.join(", ")
            ),
        ));
    }
    if let Some(practices) = &rules.registered_practices {
        out.push((
            "registered-practice",
            format!(
                "Registered with one of these GP practices (ODS codes): {}",
                practices.join(", ")
            ),
        ));
    }
    if let Some(statuses) = &rules.employment_statuses {
        let names = code_system("employment-status");
        let words: Vec<String> = statuses
            .iter()
            .map(|s| names.display(s).unwrap_or(s).to_lowercase())
            .collect();
        out.push(("employment", format!("One of: {}", words.join("; "))));
    }
    if rules.long_term_condition {
        out.push((
            "long-term-condition",
            "Living with a long-term health condition".to_string(),
        ));
    }
    if let Some(months) = rules.fit_note_within_months {
        out.push((
            "recent-fit-note",
            format!("Given a fit note in the last {months} months"),
        ));
    }
    if rules.right_to_work {
        out.push((
            "right-to-work",
            "Having the right to work in the UK".to_string(),
        ));
    }
    out
}

/// One search parameter's value: a comma-separated list, any of which may match (FHIR's OR).
/// A parameter given more than once is every one of its values at once (FHIR's AND).
type AnyOf<T> = Vec<T>;

/// An identifier to match: `system|value`, or a value in any system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierToken {
    pub system: Option<String>,
    pub value: String,
}

/// FHIR string search on the name, ignoring case: starts with (`name`) or holds
/// (`name:contains`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameMatch {
    pub text: String,
    pub contains: bool,
}

/// A directory search, parsed from its query: each filter a list of AND-ed parameters, each
/// an OR of its comma-separated values.
#[derive(Debug, PartialEq, Eq)]
pub struct Query {
    /// A page of at most this many, from the `offset`th match.
    pub count: u32,
    pub offset: u32,
    pub ids: Vec<AnyOf<String>>,
    /// Upper-case outward codes (`NE33`), from districts or whole postcodes.
    pub districts: Vec<AnyOf<String>>,
    /// `referral-route` codes.
    pub routes: Vec<AnyOf<String>>,
    pub names: Vec<AnyOf<NameMatch>>,
    pub identifiers: Vec<AnyOf<IdentifierToken>>,
    /// Parameters not supported here, by name.
    pub ignored: Vec<String>,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            count: DEFAULT_COUNT,
            offset: 0,
            ids: Vec::new(),
            districts: Vec::new(),
            routes: Vec::new(),
            names: Vec::new(),
            identifiers: Vec::new(),
            ignored: Vec::new(),
        }
    }
}

impl Query {
    /// The `(name, value)` pairs of the query that were used (not ignored): for the searchset's
    /// links, which say the search as the server ran it.
    pub fn used<'a>(&self, pairs: &'a [(String, String)]) -> Vec<&'a (String, String)> {
        pairs
            .iter()
            .filter(|(name, _)| !self.ignored.iter().any(|i| i == name))
            .collect()
    }
}

/// The search parameters the directory supports, for the CapabilityStatement:
/// `(name, type, what it matches)`.
pub const SEARCH_PARAMETERS: &[(&str, &str, &str)] = &[
    (
        "_id",
        "token",
        "The service's id in this gateway; several separated by commas",
    ),
    (
        "identifier",
        "token",
        "The service's id (system https://fhir.work-health-gateway.org/Id/service) or its BaRS / Directory of Services identifier",
    ),
    (
        "name",
        "string",
        "The service's name starts with this (name:contains: holds it), ignoring case",
    ),
    (
        "postcode-district",
        "token",
        "Services covering this postcode district (an outward code such as NE33, or a whole postcode): services that declare no area are not listed",
    ),
    (
        "referral-route",
        "token",
        "Services that take referrals by this route (a referral-route code: gp, self-referral, employer, …)",
    ),
];

/// `params` (name, value) as a [`Query`], or every problem with them.
pub fn parse_query<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Query, Vec<Issue>> {
    let mut q = Query::default();
    let mut problems = Vec::new();
    let routes = code_system("referral-route");
    for (name, value) in params {
        let at = format!("HealthcareService?{name}");
        let value = value.trim();
        let mut problem = |code, text: String| problems.push(Issue::error(code, at.clone(), text));
        let items = || value.split(',').map(str::trim).filter(|v| !v.is_empty());
        match name {
            "_format" => {}
            "_count" => match value.parse::<u32>() {
                Ok(n) => q.count = n.min(MAX_COUNT),
                Err(_) => problem(
                    IssueType::Invalid,
                    format!("_count must be a whole number from 0 to {MAX_COUNT}"),
                ),
            },
            "_offset" => match value.parse::<u32>() {
                Ok(n) => q.offset = n,
                Err(_) => problem(
                    IssueType::Invalid,
                    "_offset must be a whole number (the first match to show, from 0)".into(),
                ),
            },
            _ if SEARCH_PARAMETERS
                .iter()
                .any(|(n, ..)| *n == name.split(':').next().unwrap_or(name))
                && items().next().is_none() =>
            {
                problem(
                    IssueType::Invalid,
                    format!("{name} needs a value to look for"),
                )
            }
            "_id" => q.ids.push(items().map(str::to_string).collect()),
            "name" | "name:contains" => q.names.push(
                items()
                    .map(|v| NameMatch {
                        text: v.to_lowercase(),
                        contains: name == "name:contains",
                    })
                    .collect(),
            ),
            "postcode-district" => {
                let mut any = Vec::new();
                for v in items() {
                    match outward_code(v) {
                        Some(d) => any.push(d),
                        None => problem(
                            IssueType::Invalid,
                            format!(
                                "'{}' is not a postcode district (its first half, such as NE33 or S1) or a postcode",
                                clip(v)
                            ),
                        ),
                    }
                }
                q.districts.push(any);
            }
            "referral-route" => {
                let mut any = Vec::new();
                for v in items() {
                    let code = match v.split_once('|') {
                        Some((system, code)) if system == routes.url || system.is_empty() => code,
                        Some(_) => {
                            problem(
                                IssueType::Invalid,
                                format!("referral-route codes are from {}", routes.url),
                            );
                            continue;
                        }
                        None => v,
                    };
                    if routes.display(code).is_some() {
                        any.push(code.to_string());
                    } else {
                        let known: Vec<&str> = routes.codes().collect();
                        problem(
                            IssueType::CodeInvalid,
                            format!(
                                "'{}' is not a referral route: use one of {}",
                                clip(code),
                                known.join(", ")
                            ),
                        );
                    }
                }
                q.routes.push(any);
            }
            "identifier" => q.identifiers.push(
                items()
                    .map(|v| match v.split_once('|') {
                        Some((system, value)) => IdentifierToken {
                            system: Some(system.to_string()),
                            value: value.to_string(),
                        },
                        None => IdentifierToken {
                            system: None,
                            value: v.to_string(),
                        },
                    })
                    .collect(),
            ),
            other => q.ignored.push(clip(other)),
        }
    }
    if problems.is_empty() {
        Ok(q)
    } else {
        Err(problems)
    }
}

/// The outward code of `value`: a district as given (`NE33`, `s1`), or a whole postcode's.
/// Also what a configured postcode district must be.
pub fn outward_code(value: &str) -> Option<String> {
    let compact: String = value
        .split_whitespace()
        .collect::<String>()
        .to_ascii_uppercase();
    let is_outward = |s: &str| {
        (2..=4).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric())
            && s.chars().any(|c| c.is_ascii_digit())
    };
    if is_outward(&compact) {
        return Some(compact);
    }
    postcode_district(&compact).filter(|d| {
        let inward = &compact[d.len()..];
        is_outward(d)
            && inward.len() == 3
            && inward.starts_with(|c: char| c.is_ascii_digit())
            && inward[1..].chars().all(|c| c.is_ascii_alphabetic())
    })
}

/// What is repeated from a query: short, printable ASCII.
fn clip(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(40)
        .collect()
}

/// Whether `service` answers `q`: every parameter, each by any of its values.
pub fn matches(service: &Service, q: &Query) -> bool {
    fn all<T>(params: &[AnyOf<T>], hit: impl Fn(&T) -> bool) -> bool {
        params.iter().all(|any| any.iter().any(&hit))
    }
    let districts = service
        .eligibility
        .as_ref()
        .and_then(|r| r.postcode_districts.as_deref())
        .unwrap_or_default();
    let bars = service
        .bars_endpoint
        .as_deref()
        .and_then(|e| e.split_once('|'));
    let identified = |t: &IdentifierToken| {
        let system = t.system.as_deref();
        let ours = system.is_none_or(|s| s == service_identifier_system()) && t.value == service.id;
        let theirs = bars.is_some_and(|(s, v)| system.is_none_or(|sys| sys == s) && v == t.value);
        ours || theirs
    };
    let name = service.name.to_lowercase();
    all(&q.ids, |id| id == &service.id)
        && all(&q.districts, |d| {
            districts.iter().any(|c| c.eq_ignore_ascii_case(d))
        })
        && all(&q.routes, |r| service.referral_routes.contains(r))
        && all(&q.names, |n| {
            if n.contains {
                name.contains(n.text.as_str())
            } else {
                name.starts_with(n.text.as_str())
            }
        })
        && all(&q.identifiers, identified)
}

/// The services answering `q`, in configured order (the caller builds the
/// `HealthcareService`s of the page it shows, [`healthcare_service`]).
pub fn search<'a>(services: &'a [Service], q: &Query) -> Vec<&'a Service> {
    services.iter().filter(|s| matches(s, q)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Vec<Service> {
        crate::config::Config::defaults().services
    }

    fn cx() -> Context<'static> {
        Context {
            base_url: "https://whg.example.nhs.uk/",
            first_contact_days: 14,
        }
    }

    fn query(params: &[(&str, &str)]) -> Query {
        parse_query(params.iter().copied()).unwrap()
    }

    fn ids(q: &Query) -> Vec<String> {
        search(&services(), q)
            .iter()
            .map(|s| s.id.clone())
            .collect()
    }

    #[test]
    fn a_service_with_criteria_says_them_in_words_and_as_codes() {
        let all = services();
        let ww = crate::services::by_id(&all, "workwell-south-tyneside").unwrap();
        let hs = healthcare_service(ww, &cx());
        assert_eq!(hs["resourceType"], "HealthcareService");
        assert_eq!(hs["name"], "WorkWell South Tyneside");
        assert!(
            hs["comment"]
                .as_str()
                .unwrap()
                .contains("within 14 days of their referral")
        );
        let criteria: Vec<&str> = hs["eligibility"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["code"]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(
            criteria,
            [
                "age",
                "area",
                "employment",
                "long-term-condition",
                "recent-fit-note",
                "right-to-work"
            ]
        );
        let age = hs["eligibility"][0]["comment"].as_str().unwrap();
        assert_eq!(age, "Aged 16 to 66 (criteria version 2026-11-01)");
        // Each district a contained Location the coverage area points at; the endpoint too.
        let contained = hs["contained"].as_array().unwrap();
        for area in hs["coverageArea"].as_array().unwrap() {
            let id = area["reference"].as_str().unwrap().trim_start_matches('#');
            assert!(contained.iter().any(|c| c["id"] == id), "{id}");
        }
        assert_eq!(hs["coverageArea"].as_array().unwrap().len(), 6);
        assert_eq!(
            contained[0]["address"],
            "https://whg.example.nhs.uk/fhir/$process-message"
        );
        assert!(
            hs["identifier"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["system"] == "https://fhir.nhs.uk/Id/dos-service-id"
                    && i["value"] == "2000100002")
        );
        assert!(
            hs["extraDetails"]
                .as_str()
                .unwrap()
                .contains("still taken, marked for the service to review")
        );
    }

    #[test]
    fn a_service_without_criteria_declares_no_area_and_no_eligibility() {
        let all = services();
        let whs = crate::services::by_id(&all, "sheffield-whs").unwrap();
        let hs = healthcare_service(whs, &cx());
        assert!(hs.get("eligibility").is_none());
        assert!(hs.get("coverageArea").is_none());
        assert_eq!(hs["contained"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn searched_by_district_or_postcode_route_name_and_identifier() {
        let covering = ids(&query(&[("postcode-district", "ne33")]));
        assert_eq!(covering, ["workwell-south-tyneside"]);
        assert_eq!(ids(&query(&[("postcode-district", "NE33 1AB")])), covering);
        assert_eq!(ids(&query(&[("postcode-district", "ne331ab")])), covering);
        assert!(ids(&query(&[("postcode-district", "S1")])).is_empty());
        assert_eq!(
            ids(&query(&[])).len(),
            services().len(),
            "no filter: every service"
        );
        assert_eq!(
            ids(&query(&[("name", "workwell")])),
            ["workwell-south-tyneside", "workwell-north-cumbria"]
        );
        assert_eq!(
            ids(&query(&[("name:contains", "cumbria")])),
            ["workwell-north-cumbria"]
        );
        assert!(
            ids(&query(&[("name", "cumbria")])).is_empty(),
            "starts with"
        );
        assert_eq!(
            ids(&query(&[(
                "identifier",
                "https://fhir.nhs.uk/Id/dos-service-id|2000100001"
            )])),
            ["sheffield-whs"]
        );
        assert_eq!(
            ids(&query(&[(
                "identifier",
                "https://fhir.work-health-gateway.org/Id/service|sheffield-whs"
            )])),
            ["sheffield-whs"]
        );
        assert!(
            ids(&query(&[(
                "identifier",
                "https://fhir.nhs.uk/Id/dos-service-id|sheffield-whs"
            )]))
            .is_empty(),
            "a value in the wrong system"
        );
        assert_eq!(
            ids(&query(&[("_id", "pas-county-durham")])),
            ["pas-county-durham"]
        );
        let by_gp = ids(&query(&[("referral-route", "gp")]));
        assert_eq!(
            by_gp.len(),
            services().len(),
            "every service takes GP referrals"
        );
        let system = &code_system("referral-route").url;
        assert_eq!(
            ids(&query(&[("referral-route", &format!("{system}|gp"))])),
            by_gp
        );
        assert_eq!(
            ids(&query(&[("referral-route", "employer")])),
            ["workwell-south-tyneside"]
        );
        assert!(ids(&query(&[("referral-route", "other")])).is_empty());
        // Commas are OR, a parameter repeated is AND.
        assert_eq!(
            ids(&query(&[("_id", "sheffield-whs,pas-county-durham")])),
            ["sheffield-whs", "pas-county-durham"]
        );
        assert_eq!(
            ids(&query(&[("postcode-district", "NE33,S1")])),
            ["workwell-south-tyneside"]
        );
        assert!(
            ids(&query(&[
                ("_id", "sheffield-whs"),
                ("_id", "pas-county-durham")
            ]))
            .is_empty(),
            "one service is never both"
        );
        assert_eq!(
            ids(&query(&[("name", "workwell"), ("name:contains", "tyne")])),
            ["workwell-south-tyneside"]
        );
    }

    #[test]
    fn every_problem_with_a_query_is_named_at_its_parameter() {
        let problems = parse_query([
            ("postcode-district", "not a postcode"),
            ("referral-route", "carrier-pigeon"),
            ("referral-route", "http://example.org|gp"),
            ("name", " "),
        ])
        .unwrap_err();
        let at: Vec<String> = problems
            .iter()
            .map(|p| p.expression.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            at,
            [
                "HealthcareService?postcode-district",
                "HealthcareService?referral-route",
                "HealthcareService?referral-route",
                "HealthcareService?name"
            ]
        );
        let q = query(&[("colour", "blue")]);
        assert_eq!(q.ignored, ["colour"]);
    }

    #[test]
    fn districts_are_outward_codes() {
        for (given, district) in [
            ("S1", Some("S1")),
            ("ne33", Some("NE33")),
            ("EC1A", Some("EC1A")),
            ("SW1A 1AA", Some("SW1A")),
            ("NE33", Some("NE33")),
            ("NE", None),
            ("33", None),
            ("NE33 1A", None),
            ("NE33 AAA", None),
            ("<script>", None),
            ("NE33É1A", None),
            ("ÉÉÉÉÉ", None),
        ] {
            assert_eq!(outward_code(given).as_deref(), district, "{given}");
        }
    }
}
