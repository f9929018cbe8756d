//! The BaRS MessageDefinitions the gateway takes, and the check a message's entries must pass
//! against the one its `MessageHeader.definition` claims. BaRS Core (Message Headers): the
//! receiver checks the bundle against `MessageHeader.definition`, which "must be rejected by the
//! Receiver if it fails to do so", as FHIR validation does not check it.
//!
//! The cardinalities are the MessageDefinitions' `focus` lists, from
//! NHSDigital/NHSDigital-FHIR-BookingAndReferrals (`MessageDefinition/`,
//! BARS-MessageDefinition-ServiceRequest-Request-Referral.xml, version 1.0.0-beta, and
//! BARS-MessageDefinition-ServiceRequest-Request-Cancelled.xml, version 1.0.0).

use std::collections::HashMap;

use crate::fhir::{IssueType, Issues};

/// One MessageDefinition: its canonical URL and the resource types it carries, each with its
/// least and (when bounded) greatest count.
#[derive(Debug)]
pub struct MessageDefinition {
    pub url: &'static str,
    pub title: &'static str,
    pub focus: &'static [(&'static str, u32, Option<u32>)],
}

/// `bars-message-servicerequest-request-referral`: a new referral.
pub const REFERRAL: MessageDefinition = MessageDefinition {
    url: "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral",
    title: "BaRS referral request",
    focus: &[
        ("MessageHeader", 1, Some(1)),
        ("ServiceRequest", 1, Some(1)),
        ("Patient", 1, Some(1)),
        ("Encounter", 1, Some(1)),
        ("CarePlan", 1, Some(1)),
        ("Location", 0, None),
        ("Organization", 2, None),
        ("Practitioner", 1, None),
        ("PractitionerRole", 1, None),
        ("Consent", 1, None),
        ("HealthcareService", 1, None),
        ("Device", 0, Some(1)),
        ("Observation", 0, None),
        ("Flag", 0, None),
        ("MedicationStatement", 0, None),
        ("AllergyIntolerance", 0, None),
        ("Questionnaire", 0, None),
        ("QuestionnaireResponse", 0, None),
        ("Condition", 0, None),
        ("Task", 0, None),
        ("Communication", 0, None),
        ("Procedure", 0, None),
        ("RelatedPerson", 0, None),
    ],
};

/// `bars-message-servicerequest-request-cancelled`: the referrer cancels a referral.
pub const CANCELLED: MessageDefinition = MessageDefinition {
    url: "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-cancelled",
    title: "BaRS referral cancellation",
    focus: &[
        ("MessageHeader", 1, Some(1)),
        ("ServiceRequest", 1, Some(1)),
        ("Patient", 1, Some(1)),
        ("Organization", 2, None),
    ],
};

/// The definitions the gateway takes.
pub const TAKEN: [&MessageDefinition; 2] = [&REFERRAL, &CANCELLED];

/// The definition a `MessageHeader.definition` names (a canonical, optionally `|version`).
pub fn named(definition: &str) -> Option<&'static MessageDefinition> {
    let url = definition.split('|').next().unwrap_or_default();
    TAKEN.into_iter().find(|d| d.url == url)
}

/// Checks the message's entry types (in order, one per entry) against `definition`: every type
/// it lists at least and at most as often as it says, and nothing it does not list. Counts are
/// reported at `Bundle.entry`, an unlisted type at its entry; an empty type is an entry reported
/// for its type already, and skipped.
pub fn check(definition: &MessageDefinition, types: &[&str], issues: &mut Issues) {
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for (i, rt) in types.iter().enumerate() {
        if rt.is_empty() {
            continue;
        }
        *counts.entry(rt).or_default() += 1;
        if !definition.focus.iter().any(|(t, _, _)| t == rt) {
            issues.error(
                IssueType::NotSupported,
                format!("Bundle.entry[{i}].resource.resourceType"),
                format!(
                    "the {} ({}) carries no {rt}: leave it out, or send the message its MessageHeader.definition should name",
                    definition.title, definition.url
                ),
            );
        }
    }
    for (rt, min, max) in definition.focus {
        let n = counts.get(rt).copied().unwrap_or(0);
        if n < *min {
            let why = if *rt == "Consent" {
                ": the person's agreement to the referral, as BaRS carries it"
            } else {
                ""
            };
            issues.error(
                IssueType::Required,
                "Bundle.entry",
                format!(
                    "the {} ({}) needs at least {min} {rt} entr{}{why}; the message has {n}",
                    definition.title,
                    definition.url,
                    if *min == 1 { "y" } else { "ies" }
                ),
            );
        }
        if let Some(max) = max
            && n > *max
        {
            issues.error(
                IssueType::Structure,
                "Bundle.entry",
                format!(
                    "the {} ({}) takes at most {max} {rt}; the message has {n}",
                    definition.title, definition.url
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(d: &MessageDefinition, types: &[&str]) -> Vec<String> {
        let mut issues = Issues::new();
        check(d, types, &mut issues);
        issues.iter().map(|i| i.diagnostics.clone()).collect()
    }

    const COMPLETE: &[&str] = &[
        "MessageHeader",
        "ServiceRequest",
        "Patient",
        "Encounter",
        "CarePlan",
        "Organization",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Consent",
        "HealthcareService",
    ];

    #[test]
    fn a_referral_carries_every_entry_its_definition_requires() {
        assert!(problems(&REFERRAL, COMPLETE).is_empty());
        // Without the Encounter and CarePlan, with one Organization.
        let short = [
            "MessageHeader",
            "ServiceRequest",
            "Patient",
            "Organization",
            "Practitioner",
            "PractitionerRole",
            "Consent",
            "HealthcareService",
        ];
        let found = problems(&REFERRAL, &short);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().any(|p| p.contains("at least 1 Encounter")));
        assert!(
            found
                .iter()
                .any(|p| p.contains("at least 2 Organization entries; the message has 1"))
        );
    }

    #[test]
    fn too_many_and_unlisted_types_are_refused() {
        let mut two_patients = COMPLETE.to_vec();
        two_patients.push("Patient");
        assert!(problems(&REFERRAL, &two_patients)[0].contains("at most 1 Patient"));
        let mut cancel = vec![
            "MessageHeader",
            "ServiceRequest",
            "Patient",
            "Organization",
            "Organization",
        ];
        assert!(problems(&CANCELLED, &cancel).is_empty());
        cancel.push("Condition");
        assert!(problems(&CANCELLED, &cancel)[0].contains("carries no Condition"));
    }

    #[test]
    fn definitions_are_named_with_or_without_a_version() {
        assert_eq!(named(REFERRAL.url).unwrap().url, REFERRAL.url);
        assert_eq!(
            named(&format!("{}|1.0.0", CANCELLED.url)).unwrap().url,
            CANCELLED.url
        );
        assert!(
            named("https://fhir.nhs.uk/MessageDefinition/bars-message-booking-request").is_none()
        );
    }
}
