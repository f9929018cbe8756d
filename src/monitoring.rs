//! Equality monitoring: the person's ethnic group and disability, as the evaluations asked for
//! them (ONS Census 2021 ethnic groups, the Equality Act 2010 definition of disability), each with
//! explicit "prefer not to say" and "not recorded" answers so a missing answer is never mistaken
//! for one. Pure: how the practice format's codes become UK Core FHIR, and how the reports read
//! them back.

use serde_json::{Value, json};

use crate::fhir::systems;
use crate::fhir::terminology::{code_system, coding};

/// UK Core's Patient extension for ethnic category (`Extension-UKCore-EthnicCategory`, binding
/// *preferred* to `UKCore-EthnicCategory`).
pub const ETHNIC_CATEGORY_EXT: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory";
/// The NHS Data Dictionary's ETHNIC CATEGORY codes for England, as UK Core publishes them.
pub const ETHNIC_CATEGORY_ENGLAND: &str =
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland";

/// The NHS Data Dictionary code (England, 2001 classification) an ONS 2021 group maps to, with
/// its display as `UKCore-EthnicCategoryEngland` 1.0.0 gives it. Census 2021 added groups the
/// Data Dictionary has no code for (Roma, Gypsy or Irish Traveller, Arab): they map to the
/// "any other" code of their heading, so nothing is lost (the ONS coding travels beside it).
/// Chinese sits under "Other Ethnic Groups" in the Data Dictionary and under Asian in 2021.
pub fn england_code(group: &str) -> Option<(&'static str, &'static str)> {
    Some(match group {
        "white-british" => ("A", "White - British"),
        "white-irish" => ("B", "White - Irish"),
        "white-gypsy-irish-traveller" | "white-roma" | "white-other" => {
            ("C", "White - Any other White background")
        }
        "mixed-white-black-caribbean" => ("D", "Mixed - White and Black Caribbean"),
        "mixed-white-black-african" => ("E", "Mixed - White and Black African"),
        "mixed-white-asian" => ("F", "Mixed - White and Asian"),
        "mixed-other" => ("G", "Mixed - Any other mixed background"),
        "asian-indian" => ("H", "Asian or Asian British - Indian"),
        "asian-pakistani" => ("J", "Asian or Asian British - Pakistani"),
        "asian-bangladeshi" => ("K", "Asian or Asian British - Bangladeshi"),
        "asian-other" => ("L", "Asian or Asian British - Any other Asian background"),
        "black-caribbean" => ("M", "Black or Black British - Caribbean"),
        "black-african" => ("N", "Black or Black British - African"),
        "black-other" => ("P", "Black or Black British - Any other Black background"),
        "asian-chinese" => ("R", "Other Ethnic Groups - Chinese"),
        "other-arab" | "other-any" => ("S", "Other Ethnic Groups - Any other ethnic group"),
        "prefer-not-to-say" => ("Z", "Not stated"),
        "not-recorded" => ("99", "Not known"),
        _ => return None,
    })
}

/// The Patient extension for an `ethnic-group` code: the Data Dictionary coding UK Core readers
/// expect, then the ONS 2021 coding the reports count by.
pub fn ethnic_category_extension(group: &str) -> Option<Value> {
    let (code, display) = england_code(group)?;
    Some(json!({
        "url": ETHNIC_CATEGORY_EXT,
        "valueCodeableConcept": { "coding": [
            { "system": ETHNIC_CATEGORY_ENGLAND, "code": code, "display": display },
            coding("ethnic-group", group),
        ] },
    }))
}

/// The person's ONS 2021 ethnic group as recorded on a stored Patient; `not-recorded` when
/// there is none, and for a Patient that carries only a Data Dictionary code (a BaRS sender's),
/// the ONS group that code stands for where it stands for one alone.
pub fn ethnic_group_of(patient: &Value) -> String {
    let own = systems::local_code_system("ethnic-group");
    let codings = patient["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == ETHNIC_CATEGORY_EXT)
        .flat_map(|e| {
            e["valueCodeableConcept"]["coding"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect::<Vec<_>>();
    if let Some(code) = codings
        .iter()
        .find(|c| c["system"] == own.as_str())
        .and_then(|c| c["code"].as_str())
        && code_system("ethnic-group").display(code).is_some()
    {
        return code.to_string();
    }
    let england = codings
        .iter()
        .find(|c| c["system"] == ETHNIC_CATEGORY_ENGLAND)
        .and_then(|c| c["code"].as_str());
    england
        .and_then(|dd| {
            let groups: Vec<&str> = code_system("ethnic-group")
                .codes()
                .filter(|g| england_code(g).is_some_and(|(c, _)| c == dd))
                .collect();
            // "C" stands for three ONS groups: which one is not known, so it is "other".
            match groups.as_slice() {
                [one] => Some(one.to_string()),
                [..] if dd == "C" => Some("white-other".to_string()),
                [..] if dd == "S" => Some("other-any".to_string()),
                _ => None,
            }
        })
        .unwrap_or_else(|| "not-recorded".to_string())
}

/// The disability answer a stored disability Observation records (`not-recorded` when none).
pub fn disability_of(observation: Option<&Value>) -> String {
    answer_of(observation, "disability-status")
}

/// The practice-format answer an Observation (or component) holds: its code from the project's
/// CodeSystem `system_name`, or, where it holds a data-absent reason instead, `prefer-not-to-say`
/// (asked and declined) or `not-recorded`; `not-recorded` when there is no Observation.
pub fn answer_of(observation: Option<&Value>, system_name: &str) -> String {
    let Some(o) = observation else {
        return "not-recorded".into();
    };
    let system = systems::local_code_system(system_name);
    if let Some(code) = o["valueCodeableConcept"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["system"] == system.as_str())
        .filter_map(|c| c["code"].as_str())
        .find(|code| code_system(system_name).display(code).is_some())
    {
        return code.to_string();
    }
    match o["dataAbsentReason"]["coding"][0]["code"].as_str() {
        Some("asked-declined") => "prefer-not-to-say".into(),
        _ => "not-recorded".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ons_group_and_absent_answer_maps_to_a_data_dictionary_code() {
        for group in code_system("ethnic-group").codes() {
            assert!(england_code(group).is_some(), "{group} has no England code");
        }
        assert_eq!(england_code("prefer-not-to-say").unwrap().0, "Z");
        assert_eq!(england_code("not-recorded").unwrap().0, "99");
        assert_eq!(england_code("asian-chinese").unwrap().0, "R");
        assert!(england_code("martian").is_none());
    }

    #[test]
    fn the_group_is_read_back_from_either_coding() {
        let patient = |ext: Value| json!({ "resourceType": "Patient", "extension": [ext] });
        let ours = patient(ethnic_category_extension("white-roma").unwrap());
        assert_eq!(ethnic_group_of(&ours), "white-roma");
        let dd_only = |code: &str| {
            patient(
                json!({ "url": ETHNIC_CATEGORY_EXT, "valueCodeableConcept": { "coding": [
                { "system": ETHNIC_CATEGORY_ENGLAND, "code": code }
            ] } }),
            )
        };
        assert_eq!(ethnic_group_of(&dd_only("H")), "asian-indian");
        assert_eq!(ethnic_group_of(&dd_only("C")), "white-other");
        assert_eq!(ethnic_group_of(&dd_only("Z")), "prefer-not-to-say");
        assert_eq!(ethnic_group_of(&dd_only("Q")), "not-recorded");
        assert_eq!(
            ethnic_group_of(&json!({ "resourceType": "Patient" })),
            "not-recorded"
        );
    }

    #[test]
    fn disability_answers_stay_distinct() {
        assert_eq!(disability_of(None), "not-recorded");
        let coded = json!({ "valueCodeableConcept": { "coding": [coding("disability-status", "limited-a-lot")] } });
        assert_eq!(disability_of(Some(&coded)), "limited-a-lot");
        let declined = json!({ "dataAbsentReason": { "coding": [{ "code": "asked-declined" }] } });
        assert_eq!(disability_of(Some(&declined)), "prefer-not-to-say");
    }
}
