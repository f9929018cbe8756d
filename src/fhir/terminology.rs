//! The gateway's own CodeSystems (from `profiles/`), embedded at build time so the binary works
//! offline and emits exactly the codes and displays it publishes.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

macro_rules! code_systems {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../profiles/CodeSystem-", $name, ".json")))),*]
    };
}

const SOURCES: &[(&str, &str)] = code_systems!(
    "audit-event-subtype",
    "consent-data-class",
    "consent-override-reason",
    "consent-recipient",
    "contact-channel",
    "contract-type",
    "disability-status",
    "eligibility-criterion",
    "eligibility-result",
    "employer-size-band",
    "employment-outcome",
    "employment-sector",
    "employment-status",
    "ethnic-group",
    "fit-note-assessment-method",
    "fit-note-component",
    "fit-note-issuer-profession",
    "follow-up-interval",
    "follow-up-work-status",
    "health-condition-category",
    "health-outcome",
    "letter-delivery-state",
    "letter-priority",
    "observation-type",
    "occupational-health-access",
    "preferred-contact-method",
    "recorded-list-status",
    "record-origin",
    "referral-decline-reason",
    "referral-prompt-input",
    "referral-route",
    "referral-workflow-status",
    "referrer-profession",
    "service-type",
    "sex",
    "support-ended-reason",
    "support-given",
    "support-need",
    "task-code",
    "workflow-task-input",
    "workplace-exposure",
);

/// One CodeSystem: its canonical URL and its codes with their displays, in published order.
#[derive(Debug)]
pub struct CodeSystem {
    pub url: String,
    pub concepts: Vec<(String, String)>,
}

impl CodeSystem {
    pub fn display(&self, code: &str) -> Option<&str> {
        self.concepts
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, d)| d.as_str())
    }

    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.concepts.iter().map(|(c, _)| c.as_str())
    }
}

static SYSTEMS: LazyLock<HashMap<&'static str, CodeSystem>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|(name, text)| {
            let json: Value =
                serde_json::from_str(text).expect("embedded CodeSystem is valid JSON");
            let url = json["url"].as_str().expect("CodeSystem.url").to_string();
            let concepts = json["concept"]
                .as_array()
                .expect("CodeSystem.concept")
                .iter()
                .map(|c| {
                    (
                        c["code"].as_str().unwrap().to_string(),
                        c["display"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (*name, CodeSystem { url, concepts })
        })
        .collect()
});

/// The project's CodeSystem called `name` (the part after `CodeSystem-` in its file name).
///
/// Panics on an unknown name: names are compile-time constants in this crate, and the test below
/// loads every one.
pub fn code_system(name: &str) -> &'static CodeSystem {
    SYSTEMS
        .get(name)
        .unwrap_or_else(|| panic!("no embedded CodeSystem {name}"))
}

pub fn names() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().map(|(n, _)| *n)
}

/// A FHIR Coding for a code of one of the project's CodeSystems.
pub fn coding(system_name: &str, code: &str) -> Value {
    let cs = code_system(system_name);
    match cs.display(code) {
        Some(display) => serde_json::json!({ "system": cs.url, "code": code, "display": display }),
        None => serde_json::json!({ "system": cs.url, "code": code }),
    }
}

/// UK Core NHS number verification status (England): code and display.
const NHS_NUMBER_VERIFICATION_ENGLAND: &[(&str, &str)] = &[
    ("01", "Number present and verified"),
    ("02", "Number present but not traced"),
    ("03", "Trace required"),
    ("04", "Trace attempted - No match or multiple match found"),
    (
        "05",
        "Trace needs to be resolved - (NHS Number or patient detail conflict)",
    ),
    ("06", "Trace in progress"),
    ("07", "Number not present and trace not required"),
    ("08", "Trace postponed (baby under six weeks old)"),
];

/// `code` as the static England verification status code (01–08), if it is one.
pub fn nhs_number_verification_code(code: &str) -> Option<&'static str> {
    NHS_NUMBER_VERIFICATION_ENGLAND
        .iter()
        .map(|(c, _)| *c)
        .find(|c| *c == code)
}

/// The England NHS number verification status Coding for `code` (01–08), if it is one.
pub fn nhs_number_verification(code: &str) -> Option<Value> {
    let (code, display) = NHS_NUMBER_VERIFICATION_ENGLAND
        .iter()
        .find(|(c, _)| *c == code)?;
    Some(serde_json::json!({
        "system": super::systems::NHS_NUMBER_VERIFICATION_ENGLAND,
        "code": code,
        "display": display,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_number_verification_codings() {
        assert_eq!(
            nhs_number_verification("01").unwrap()["display"],
            "Number present and verified"
        );
        assert_eq!(nhs_number_verification("08").unwrap()["code"], "08");
        assert!(nhs_number_verification("09").is_none());
    }

    #[test]
    fn every_embedded_code_system_loads_with_unique_codes() {
        for name in names() {
            let cs = code_system(name);
            assert!(cs.url.ends_with(&format!("/CodeSystem/{name}")));
            let mut codes: Vec<&str> = cs.codes().collect();
            let n = codes.len();
            codes.sort();
            codes.dedup();
            assert_eq!(n, codes.len(), "{name} has duplicate codes");
        }
    }

    #[test]
    fn every_code_system_file_in_profiles_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles");
        let on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.strip_prefix("CodeSystem-")?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect();
        for n in &on_disk {
            assert!(
                names().any(|x| x == n),
                "profiles/CodeSystem-{n}.json is not embedded in terminology.rs"
            );
        }
    }

    /// The practice schemas' enums are generated from the CodeSystems; this catches a hand edit
    /// of either that was not regenerated.
    #[test]
    fn schema_enums_match_code_systems() {
        let schema: Value =
            serde_json::from_str(include_str!("../../profiles/practice-referral.schema.json"))
                .unwrap();
        let defs = schema["$defs"].as_object().unwrap();
        let mut checked = 0;
        for name in names() {
            if let Some(def) = defs.get(name) {
                let in_schema: Vec<&str> = def["enum"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                let in_cs: Vec<&str> = code_system(name).codes().collect();
                assert_eq!(
                    in_schema, in_cs,
                    "schema enum for {name} differs from its CodeSystem"
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 10,
            "expected the referral schema to use the code systems"
        );
    }
}
