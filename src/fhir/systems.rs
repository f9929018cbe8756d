//! Canonical URLs and identifier systems: one place, so every module emits the same strings.

/// The project's own canonical base for its profiles, code systems and identifier systems.
pub const CANONICAL_BASE: &str = "https://fhir.work-health-gateway.org";

pub const SNOMED: &str = "http://snomed.info/sct";
pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const BCP47: &str = "urn:ietf:bcp:47";

pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS_ORGANIZATION: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// The mistyped form seen in BaRS examples; accepted on input, never emitted.
pub const ODS_ORGANIZATION_LOWERCASE: &str = "https://fhir.nhs.uk/id/ods-organization-code";
pub const ODS_SITE: &str = "https://fhir.nhs.uk/Id/ods-site-code";

pub const GMC: &str = "https://fhir.hl7.org.uk/Id/gmc-number";
pub const NMC: &str = "https://fhir.hl7.org.uk/Id/nmc-number";
pub const HCPC: &str = "https://fhir.hl7.org.uk/Id/hcpc-number";
pub const GPHC: &str = "https://fhir.hl7.org.uk/Id/gphc-number";

pub const NHS_NUMBER_VERIFICATION_EXT: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus";
pub const NHS_NUMBER_VERIFICATION_ENGLAND: &str =
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland";
/// Retired STU1 code system (string codes); BaRS examples still send it.
pub const NHS_NUMBER_VERIFICATION_RETIRED: &str =
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus";
pub const SOURCE_OF_SERVICE_REQUEST_EXT: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-SourceOfServiceRequest";
pub const CONTACT_PREFERENCE_EXT: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference";
pub const PREFERRED_CONTACT_METHOD_UKCORE: &str =
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-PreferredContactMethod";
pub const INTERPRETER_REQUIRED_EXT: &str =
    "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired";
pub const DATA_ABSENT_REASON_EXT: &str =
    "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
pub const DATA_ABSENT_REASON: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
/// FHIR's measure population types (`initial-population`, …).
pub const MEASURE_POPULATION: &str = "http://terminology.hl7.org/CodeSystem/measure-population";

pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
pub const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
pub const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
pub const CONSENT_ACTION: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
pub const CONSENT_PROVISION_TYPE: &str = "http://hl7.org/fhir/consent-provision-type";
pub const CONSENT_CATEGORY_BARS: &str = "https://fhir.nhs.uk/CodeSystem/consent-categories-bars";
pub const LOINC_CONSENT_DOCUMENT: &str = "59284-0";
pub const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const V3_ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
pub const V3_PARTICIPATION_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub const PROVENANCE_PARTICIPANT_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type";

pub const BARS_MESSAGE_EVENTS: &str = "https://fhir.nhs.uk/CodeSystem/message-events-bars";
pub const BARS_MESSAGE_REASON: &str = "https://fhir.nhs.uk/CodeSystem/message-reason-bars";
/// The BaRS MessageDefinitions of a referral the gateway takes in and of the responses (letters)
/// it sends back.
pub const BARS_REFERRAL_REQUEST_DEFINITION: &str =
    "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral";
pub const BARS_REFERRAL_RESPONSE_DEFINITION: &str =
    "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-response-referral";
pub const BARS_SERVICE_REQUEST_CATEGORY: &str =
    "https://fhir.nhs.uk/CodeSystem/message-category-servicerequest";
pub const NHS_HTTP_ERROR_CODES: &str = "https://fhir.nhs.uk/CodeSystem/http-error-codes";

pub mod profile {
    pub const PATIENT: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient";
    pub const ORGANIZATION: &str =
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Organization";
    pub const OPERATION_OUTCOME: &str =
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-OperationOutcome";

    /// Resource types UK Core profiles as `UKCore-<type>`; other types carried in a BaRS message
    /// keep whatever profiles their sender claimed.
    const UK_CORE_TYPES: &[&str] = &[
        "AllergyIntolerance",
        "Appointment",
        "AuditEvent",
        "CarePlan",
        "CareTeam",
        "Communication",
        "Composition",
        "Condition",
        "Consent",
        "Device",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "EpisodeOfCare",
        "FamilyMemberHistory",
        "Flag",
        "HealthcareService",
        "Immunization",
        "List",
        "Location",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationRequest",
        "MedicationStatement",
        "Observation",
        "OperationOutcome",
        "Organization",
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "Questionnaire",
        "QuestionnaireResponse",
        "RelatedPerson",
        "Schedule",
        "ServiceRequest",
        "Slot",
        "Specimen",
        "Task",
    ];

    /// The gateway's fit-note Observation profile (derived from UKCore-Observation).
    pub fn whg_fit_note() -> String {
        format!("{}/StructureDefinition/whg-fit-note", super::CANONICAL_BASE)
    }

    /// Extension on a ServiceRequest: the eligibility check made at intake.
    pub fn whg_eligibility_extension() -> String {
        format!(
            "{}/StructureDefinition/whg-eligibility-assessment",
            super::CANONICAL_BASE
        )
    }

    /// Extension on a ServiceRequest received as a BaRS message: the request message it came
    /// in (its MessageHeader id and Bundle id) and where answers go (its `source.endpoint`),
    /// which the service's response messages name.
    pub fn whg_bars_request_extension() -> String {
        format!(
            "{}/StructureDefinition/whg-bars-request",
            super::CANONICAL_BASE
        )
    }

    /// Extensions only the gateway writes: intake removes any copy a sender sends.
    pub fn gateway_authored_extensions() -> [String; 2] {
        [whg_eligibility_extension(), whg_bars_request_extension()]
    }

    /// The gateway's referral-prompt Task profile (derived from UKCore-Task).
    pub fn whg_referral_prompt() -> String {
        format!(
            "{}/StructureDefinition/whg-referral-prompt",
            super::CANONICAL_BASE
        )
    }

    /// The gateway's own Consent profile (derived from UKCore-Consent).
    pub fn whg_consent() -> String {
        format!("{}/StructureDefinition/whg-consent", super::CANONICAL_BASE)
    }

    /// The UK Core profile for a resource type, if UK Core has one.
    pub fn uk_core_for(resource_type: &str) -> Option<&'static str> {
        static PROFILES: std::sync::LazyLock<Vec<(&'static str, String)>> =
            std::sync::LazyLock::new(|| {
                UK_CORE_TYPES
                    .iter()
                    .map(|t| {
                        (
                            *t,
                            format!("https://fhir.hl7.org.uk/StructureDefinition/UKCore-{t}"),
                        )
                    })
                    .collect()
            });
        PROFILES
            .iter()
            .find(|(t, _)| *t == resource_type)
            .map(|(_, p)| p.as_str())
    }
}

/// A code system of the project's own, by its short name (the file `profiles/CodeSystem-<name>.json`).
pub fn local_code_system(name: &str) -> String {
    format!("{CANONICAL_BASE}/CodeSystem/{name}")
}

/// Identifier system for the gateway's configured work-and-health services.
pub fn service_identifier_system() -> String {
    format!("{CANONICAL_BASE}/Id/service")
}

/// Identifier system of a referrer that is neither a GP practice nor an employer (a Talking
/// Therapies, physiotherapy, secondary-care or voluntary-sector organisation), as registered
/// with the gateway: one system per kind (`…/Id/referrer/physiotherapy`), so two kinds of
/// referrer registered under the same code (an NHS trust's ODS code is the usual value, and one
/// trust runs several services) are two parties, never one.
pub fn referrer_identifier_system(kind: &str) -> String {
    format!("{CANONICAL_BASE}/Id/referrer/{kind}")
}

/// The kind of referrer an identifier system names (`talking-therapies`, …), if it is one of
/// `referrer_identifier_system`'s.
pub fn referrer_kind_of_system(system: &str) -> Option<&str> {
    system
        .strip_prefix(CANONICAL_BASE)?
        .strip_prefix("/Id/referrer/")
        .filter(|kind| !kind.is_empty() && !kind.contains('/'))
}

/// Identifier system of an employer registered with the gateway as a referrer.
pub fn employer_identifier_system() -> String {
    format!("{CANONICAL_BASE}/Id/employer")
}

/// Identifier system of an employer's contact an adviser addresses a letter the person approved
/// to: its e-mail address, in lower case. The recipient such a letter's consent names.
pub fn employer_contact_system() -> String {
    format!("{CANONICAL_BASE}/Id/employer-contact")
}

/// Identifier system for a sending practice's own referral ids: one namespace per ODS code, so two
/// practices can both use "REF-1" without colliding.
pub fn practice_referral_id_system(ods_code: &str) -> String {
    format!("{CANONICAL_BASE}/Id/practice-referral-id/{ods_code}")
}

/// Identifier system for the own referral ids of a referrer of another kind (`kind`, `code`):
/// one namespace per referring organisation, as a practice's.
pub fn referrer_referral_id_system(kind: &str, code: &str) -> String {
    format!("{CANONICAL_BASE}/Id/referral-id/{kind}/{code}")
}

/// Identifier system for a sending practice's own fit-note ids, one namespace per ODS code.
pub fn practice_fit_note_id_system(ods_code: &str) -> String {
    format!("{CANONICAL_BASE}/Id/practice-fit-note-id/{ods_code}")
}

/// The FHIR standard extension that links a resource to the reason for it (R4 has no
/// `Observation.reasonReference`): a fit note's Conditions.
pub const WORKFLOW_REASON_REFERENCE_EXT: &str =
    "http://hl7.org/fhir/StructureDefinition/workflow-reasonReference";

/// SNOMED CT UK concepts for fit notes (standards 3.2). Each was checked against two independent
/// sources (the Momentum MED3 code list and the UK Core fitness-for-work example / NHS draft
/// questionnaire) and by its Verhoeff check digit; none has been checked on a terminology server.
pub mod fit_note_sct {
    pub const NOT_FIT: (&str, &str) = (
        "751481000000104",
        "eMED3 (2010) new statement issued, not fit for work",
    );
    pub const MAY_BE_FIT: (&str, &str) = (
        "751601000000107",
        "eMED3 (2010) new statement issued, may be fit for work",
    );
    pub const PHASED_RETURN: (&str, &str) = (
        "775281000000100",
        "MED3 (2010) certificate issued - recommend phased return to work",
    );
    pub const ALTERED_HOURS: (&str, &str) = (
        "775301000000104",
        "MED3 (2010) certificate issued - recommend altered hours",
    );
    pub const AMENDED_DUTIES: (&str, &str) = (
        "775321000000108",
        "MED3 (2010) certificate issued - recommend amended duties",
    );
    pub const WORKPLACE_ADAPTATION: (&str, &str) = (
        "775351000000103",
        "MED3 (2010) certificate issued - recommend workplace adaptation",
    );

    /// The adjustment concepts in the form's order, by the practice format's field name.
    pub const ADJUSTMENTS: [(&str, (&str, &str)); 4] = [
        ("phasedReturn", PHASED_RETURN),
        ("alteredHours", ALTERED_HOURS),
        ("amendedDuties", AMENDED_DUTIES),
        ("workplaceAdaptations", WORKPLACE_ADAPTATION),
    ];
}

/// Identifier system of a professional register, by the practice format's register code.
pub fn register_system(register: &str) -> Option<&'static str> {
    Some(match register {
        "gmc" => GMC,
        "nmc" => NMC,
        "hcpc" => HCPC,
        "gphc" => GPHC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uk_core_profiles_by_type() {
        assert_eq!(profile::uk_core_for("Patient"), Some(profile::PATIENT));
        assert_eq!(
            profile::uk_core_for("Encounter"),
            Some("https://fhir.hl7.org.uk/StructureDefinition/UKCore-Encounter")
        );
        assert_eq!(
            profile::uk_core_for("MessageHeader"),
            None,
            "not profiled: the gateway does not store it"
        );
        assert_eq!(profile::uk_core_for("Basic"), None);
    }
}
