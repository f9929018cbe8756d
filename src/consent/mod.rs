//! Consent: the model (what a Consent in the project's profile says), the one decision function,
//! and the classification of stored resources into the data classes consents talk about.
//! Everything here is pure; loading consents and recording decisions is the caller's job.

pub mod decide;
pub mod model;
pub mod overrides;

pub use decide::{Basis, Decision, Effect, Question, Recipient, decide};
pub use model::{
    Action, Code, ConsentRecord, ConsentStatus, DataClass, OverrideReason, Purpose, RecipientClass,
    read_consent,
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
        "Composition" | "DocumentReference" | "Binary" | "Communication" => {
            DataClass::AdviserLetter
        }
        // A referral prompt is the practice's own to-do, about the fit note it sent.
        "Task" if is_referral_prompt(resource) => DataClass::Referral,
        "Task" | "EpisodeOfCare" => DataClass::Outcome,
        // Patient, ServiceRequest, employment Observations, Encounter, CarePlan, Consent,
        // Provenance, QuestionnaireResponse: the referral and what came with it.
        _ => DataClass::Referral,
    })
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
