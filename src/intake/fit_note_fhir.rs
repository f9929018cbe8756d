//! A fit-note Observation posted by a FHIR client (`POST /fhir/Observation`, profile
//! `whg-fit-note`), read into the practice format so one set of DWP rules checks both, with every
//! problem pointed back at the client's own element.

use serde_json::{Map, Value, json};

use crate::fhir::systems::{self, fit_note_sct, profile};
use crate::fhir::{IssueType, Issues};

/// Where each practice-format field lives in the Observation, longest prefix first when matched.
const FHIR_PATHS: &[(&str, &str)] = &[
    ("fitNoteId", "Observation.identifier"),
    (
        "practice",
        "Observation.contained.ofType(PractitionerRole).organization.identifier",
    ),
    ("patient", "Observation.subject.identifier"),
    (
        "issuer.registration",
        "Observation.contained.ofType(Practitioner).identifier",
    ),
    (
        "issuer.name",
        "Observation.contained.ofType(Practitioner).name",
    ),
    (
        "issuer.profession",
        "Observation.contained.ofType(PractitionerRole).code",
    ),
    ("issuer", "Observation.performer"),
    (
        "assessment.date",
        "Observation.component.where(code.coding.code='assessed-on').valueDateTime",
    ),
    ("assessment", "Observation.method"),
    ("conditions", "Observation.contained.ofType(Condition)"),
    ("fitness", "Observation.code"),
    (
        "adjustments.phasedReturn",
        "Observation.component.where(code.coding.code='775281000000100').valueBoolean",
    ),
    (
        "adjustments.alteredHours",
        "Observation.component.where(code.coding.code='775301000000104').valueBoolean",
    ),
    (
        "adjustments.amendedDuties",
        "Observation.component.where(code.coding.code='775321000000108').valueBoolean",
    ),
    (
        "adjustments.workplaceAdaptations",
        "Observation.component.where(code.coding.code='775351000000103').valueBoolean",
    ),
    ("comments", "Observation.note"),
    ("period.to", "Observation.effectivePeriod.end"),
    ("period.from", "Observation.effectivePeriod.start"),
    ("period", "Observation.effectivePeriod"),
    (
        "absenceStart",
        "Observation.component.where(code.coding.code='absence-start').valueDateTime",
    ),
    (
        "assessAgain",
        "Observation.component.where(code.coding.code='assess-again').valueBoolean",
    ),
    ("issuedOn", "Observation.issued"),
];

/// Rewrites practice-format expressions in `issues` to the Observation's elements.
pub fn to_fhir_expressions(issues: Issues) -> Issues {
    issues
        .into_vec()
        .into_iter()
        .map(|mut issue| {
            if let Some(e) = &issue.expression {
                let mapped = FHIR_PATHS
                    .iter()
                    .filter(|(prefix, _)| {
                        e == prefix
                            || e.strip_prefix(prefix)
                                .is_some_and(|rest| rest.starts_with(['.', '[']))
                    })
                    .max_by_key(|(prefix, _)| prefix.len())
                    .map_or("Observation", |(_, path)| path);
                issue.expression = Some(mapped.to_string());
            }
            issue
        })
        .collect()
}

/// The identifier a FHIR client gave its fit note: `(system, value)`.
pub fn client_identifier(obs: &Value) -> Option<(String, String)> {
    let id = obs["identifier"].as_array()?.first()?;
    Some((
        id["system"].as_str()?.to_string(),
        id["value"].as_str()?.to_string(),
    ))
}

fn contained<'a>(obs: &'a Value, reference: &str) -> Option<&'a Value> {
    let id = reference.strip_prefix('#')?;
    obs["contained"].as_array()?.iter().find(|r| r["id"] == id)
}

fn code_in(concept: &Value, system: &str) -> Option<String> {
    concept["coding"]
        .as_array()?
        .iter()
        .find(|c| c["system"] == system)?["code"]
        .as_str()
        .map(str::to_string)
}

fn date_part(v: &Value) -> Option<Value> {
    v.as_str().and_then(|s| s.get(..10)).map(|d| json!(d))
}

/// Reads `obs` into the practice format. Problems that have no practice-format field (a missing
/// profile claim, a wrong status, an unknown code) are returned as issues on the Observation.
pub fn practice_form(obs: &Value, sender_ods: &str) -> Result<Value, Issues> {
    let mut issues = Issues::new();
    if obs["resourceType"] != "Observation" {
        issues.error(
            IssueType::Structure,
            "Observation",
            "the body must be an Observation",
        );
        return Err(issues);
    }
    let claims = obs["meta"]["profile"].as_array().is_some_and(|p| {
        p.iter()
            .any(|p| p.as_str() == Some(profile::whg_fit_note().as_str()))
    });
    if !claims {
        issues.error(
            IssueType::Invariant,
            "Observation.meta.profile",
            format!(
                "a fit note must claim the profile {}",
                profile::whg_fit_note()
            ),
        );
    }
    if obs["status"] != "final" {
        issues.error(
            IssueType::Value,
            "Observation.status",
            "a fit note's status is 'final'",
        );
    }
    let mut form = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            form.insert(k.to_string(), v);
        }
    };
    match client_identifier(obs) {
        Some((_, value)) => put("fitNoteId", Some(json!(value))),
        None => issues.error(IssueType::Required, "Observation.identifier", "the fit note needs an identifier with a system and value: the client's own id, which makes a resend idempotent"),
    }

    let subject = &obs["subject"]["identifier"];
    let mut patient = Map::new();
    if subject["system"] == systems::NHS_NUMBER
        && let Some(v) = subject["value"].as_str()
    {
        patient.insert("nhsNumber".into(), json!(v));
    } else {
        issues.error(
            IssueType::Required,
            "Observation.subject.identifier",
            format!(
                "the subject must be identified by NHS number ({})",
                systems::NHS_NUMBER
            ),
        );
    }
    put("patient", Some(Value::Object(patient)));

    let role = obs["performer"][0]["reference"]
        .as_str()
        .and_then(|r| contained(obs, r));
    let practitioner = role
        .and_then(|r| r["practitioner"]["reference"].as_str())
        .and_then(|r| contained(obs, r));
    let ods = role
        .and_then(|r| r["organization"]["identifier"]["value"].as_str())
        .unwrap_or(sender_ods);
    put("practice", Some(json!({ "odsCode": ods })));
    if let (Some(role), Some(practitioner)) = (role, practitioner) {
        let mut issuer = Map::new();
        let name = &practitioner["name"][0];
        let mut n = Map::new();
        if let Some(f) = name.get("family") {
            n.insert("family".into(), f.clone());
        }
        if let Some(g) = name.get("given") {
            n.insert("given".into(), g.clone());
        }
        if let Some(p) = name["prefix"][0].as_str() {
            n.insert("prefix".into(), json!(p));
        }
        issuer.insert("name".into(), Value::Object(n));
        if let Some(p) = code_in(
            &role["code"][0],
            &systems::local_code_system("fit-note-issuer-profession"),
        ) {
            issuer.insert("profession".into(), json!(p));
        }
        let id = &practitioner["identifier"][0];
        let register = ["gmc", "nmc", "hcpc", "gphc"]
            .into_iter()
            .find(|r| systems::register_system(r).is_some_and(|s| id["system"] == s));
        if let (Some(register), Some(number)) = (register, id["value"].as_str()) {
            issuer.insert(
                "registration".into(),
                json!({ "register": register, "number": number }),
            );
        }
        put("issuer", Some(Value::Object(issuer)));
    } else {
        issues.error(IssueType::Required, "Observation.performer", "the performer must reference a contained PractitionerRole (with code and organization) whose practitioner is a contained Practitioner (with name and registration)");
    }

    let components: Vec<&Value> = obs["component"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let component = |system: &str, code: &str| -> Option<&Value> {
        components
            .iter()
            .copied()
            .find(|c| code_in(&c["code"], system).as_deref() == Some(code))
    };
    let local = systems::local_code_system("fit-note-component");
    let mut assessment = Map::new();
    if let Some(d) = component(&local, "assessed-on").and_then(|c| date_part(&c["valueDateTime"])) {
        assessment.insert("date".into(), d);
    }
    if let Some(m) = code_in(
        &obs["method"],
        &systems::local_code_system("fit-note-assessment-method"),
    ) {
        assessment.insert("method".into(), json!(m));
    }
    put("assessment", Some(Value::Object(assessment)));
    put(
        "assessAgain",
        component(&local, "assess-again").map(|c| c["valueBoolean"].clone()),
    );
    put(
        "absenceStart",
        component(&local, "absence-start").and_then(|c| date_part(&c["valueDateTime"])),
    );
    let mut adjustments = Map::new();
    for (field, (code, _)) in fit_note_sct::ADJUSTMENTS {
        if let Some(c) = component(systems::SNOMED, code) {
            adjustments.insert(field.into(), c["valueBoolean"].clone());
        }
    }
    put("adjustments", Some(Value::Object(adjustments)));

    let conditions: Vec<Value> = obs["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == systems::WORKFLOW_REASON_REFERENCE_EXT)
        .filter_map(|e| contained(obs, e["valueReference"]["reference"].as_str()?))
        .map(|c| {
            let mut item = Map::new();
            if let Some(text) = c["code"]["text"]
                .as_str()
                .or_else(|| c["code"]["coding"][0]["display"].as_str())
            {
                item.insert("text".into(), json!(text));
            }
            if let Some(code) = code_in(&c["code"], systems::SNOMED) {
                item.insert("snomedCode".into(), json!(code));
            }
            Value::Object(item)
        })
        .collect();
    put("conditions", Some(Value::Array(conditions)));

    match code_in(&obs["code"], systems::SNOMED).as_deref() {
        Some(c) if c == fit_note_sct::NOT_FIT.0 => put("fitness", Some(json!("not-fit"))),
        Some(c) if c == fit_note_sct::MAY_BE_FIT.0 => put("fitness", Some(json!("may-be-fit"))),
        _ => issues.error(
            IssueType::CodeInvalid,
            "Observation.code",
            format!(
                "the code must be SNOMED CT {} (not fit for work) or {} (may be fit for work)",
                fit_note_sct::NOT_FIT.0,
                fit_note_sct::MAY_BE_FIT.0
            ),
        ),
    }
    if let Some(text) = obs["note"][0]["text"].as_str() {
        put("comments", Some(json!(text)));
    }
    let period = &obs["effectivePeriod"];
    let mut p = Map::new();
    if let Some(s) = date_part(&period["start"]) {
        p.insert("from".into(), s);
    }
    match date_part(&period["end"]) {
        Some(e) => p.insert("to".into(), e),
        None => p.insert("indefinite".into(), json!(true)),
    };
    put("period", Some(Value::Object(p)));
    put("issuedOn", date_part(&obs["issued"]));
    if issues.is_empty() {
        Ok(Value::Object(form))
    } else {
        Err(issues)
    }
}
