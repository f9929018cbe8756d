//! Consent: the model (what a Consent in the project's profile says), the one decision function,
//! and the classification of stored resources into the data classes consents talk about.
//! Everything here is pure; loading consents and recording decisions is the caller's job.

pub mod authorship;
pub mod decide;
pub mod model;
pub mod overrides;
pub mod standard;

pub use decide::{Basis, Decision, Effect, Question, Recipient, decide};
pub use model::{
    Action, Code, ConsentRecord, ConsentStatus, DataClass, OverrideReason, Party, Purpose,
    RecipientClass, read_consent,
};
pub use overrides::{Override, OverrideState, OverrideStatus};

use serde_json::Value;

use crate::fhir::systems;

/// The data class of a stored resource, or `None` for resources that are not about a person
/// (organisations, practitioners), which any authenticated caller may read.
pub fn data_class_of(resource: &Value) -> Option<DataClass> {
    let resource_type = resource["resourceType"].as_str()?;
    Some(match resource_type {
        "Organization" | "Practitioner" | "PractitionerRole" => return None,
        "Condition" => DataClass::Diagnosis,
        "Observation" if is_fit_note(resource) => DataClass::FitNote,
        // What the service recorded after discharge (a follow-up outcome).
        "Observation" if is_service_record(resource) => DataClass::Outcome,
        "Composition" | "DocumentReference" | "Binary" | "Communication" => {
            DataClass::AdviserLetter
        }
        // A referral prompt is the practice's own to-do, about the fit note it sent.
        "Task" if is_referral_prompt(resource) => DataClass::Referral,
        "Task" | "EpisodeOfCare" => DataClass::Outcome,
        // The service's contacts with the person; a referrer's Encounter (the consultation a
        // BaRS referral comes from) is part of the referral.
        "Encounter" if is_service_record(resource) => DataClass::Outcome,
        // Patient, ServiceRequest, employment Observations, Encounter, CarePlan, Consent,
        // Provenance, QuestionnaireResponse: the referral and what came with it.
        _ => DataClass::Referral,
    })
}

/// The `meta.tag` the gateway puts on records the service writes about its work with a person.
pub fn service_record_tag() -> Value {
    serde_json::json!({
        "system": systems::local_code_system("record-origin"),
        "code": "work-health-service",
    })
}

/// Whether a stored resource carries [`service_record_tag`]. Intake removes the tag from
/// everything it receives, so only the gateway's own records carry it.
pub fn is_service_record(resource: &Value) -> bool {
    let system = systems::local_code_system("record-origin");
    resource["meta"]["tag"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["system"] == system.as_str()))
}

/// Removes record-origin tags a sender put on a resource (see [`is_service_record`]).
pub fn strip_origin_tags(resource: &mut Value) {
    let system = systems::local_code_system("record-origin");
    if let Some(tags) = resource
        .get_mut("meta")
        .and_then(|m| m.get_mut("tag"))
        .and_then(Value::as_array_mut)
    {
        tags.retain(|t| t["system"] != system.as_str());
    }
}

/// The letter (`DocumentReference/{id}`) a stored letter resource is a form of, so a consent
/// naming that one document decides its every form: the DocumentReference itself, its
/// Composition (which shares its id), and the Communication that sends it.
pub fn letter_document(resource: &Value) -> Option<String> {
    let id = resource["id"].as_str()?;
    match resource["resourceType"].as_str()? {
        "DocumentReference" | "Composition" => Some(format!("DocumentReference/{id}")),
        "Communication" => resource["payload"]
            .as_array()?
            .iter()
            .find_map(|p| p["contentReference"]["reference"].as_str())
            .filter(|r| r.starts_with("DocumentReference/"))
            .map(str::to_string),
        _ => None,
    }
}

/// Whether a Task is a referral prompt (`task-code#referral-prompt`), not a referral's workflow.
pub fn is_referral_prompt(task: &Value) -> bool {
    task["code"]["coding"][0]["code"] == "referral-prompt"
}

/// Whether an Observation is a fit note (claims the project's fit-note profile).
fn is_fit_note(resource: &Value) -> bool {
    let profile = systems::profile::whg_fit_note();
    resource["meta"]["profile"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p.as_str() == Some(profile.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_resources() {
        assert_eq!(
            data_class_of(&json!({"resourceType": "Organization"})),
            None
        );
        assert_eq!(
            data_class_of(&json!({"resourceType": "Condition"})),
            Some(DataClass::Diagnosis)
        );
        assert_eq!(
            data_class_of(&json!({"resourceType": "Observation"})),
            Some(DataClass::Referral)
        );
        let fit_note = json!({"resourceType": "Observation", "meta": {"profile": [format!("{}/StructureDefinition/whg-fit-note", systems::CANONICAL_BASE)]}});
        assert_eq!(data_class_of(&fit_note), Some(DataClass::FitNote));
        assert_eq!(
            data_class_of(&json!({"resourceType": "ServiceRequest"})),
            Some(DataClass::Referral)
        );
    }
}
