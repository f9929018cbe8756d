//! Practice fit note → FHIR R4 transaction: the person (kept as stored when already known), the
//! practice, and one Observation in the gateway's fit-note profile
//! (`profiles/StructureDefinition-whg-fit-note.json`) that holds the issuer and the diagnoses as
//! contained resources, so the statement reads as the form was filled in. Pure and deterministic.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{ENTRY_NAMESPACE, human_name};
use crate::fhir::systems::{self, fit_note_sct, profile};
use crate::fhir::terminology::coding;
use crate::intake::fit_note::FitNote;
use crate::intake::submission::{match_identifier, transaction_request};

/// The SNOMED CT concept of a fit note's advice.
pub fn fitness_concept(not_fit: bool) -> (&'static str, &'static str) {
    if not_fit {
        fit_note_sct::NOT_FIT
    } else {
        fit_note_sct::MAY_BE_FIT
    }
}

fn sct(concept: (&str, &str)) -> Value {
    json!({ "coding": [{ "system": systems::SNOMED, "code": concept.0, "display": concept.1 }] })
}

fn local(system: &str, code: &str) -> Value {
    json!({ "coding": [coding(system, code)] })
}

/// Maps a checked fit note into a FHIR transaction Bundle. `id_system` is the identifier system
/// of the sender's own fit-note id (the practice format's, or a FHIR client's).
pub fn fit_note_bundle(f: &FitNote, id_system: &str) -> Value {
    let n = &f.note;
    let ods = &n.practice.ods_code;
    let url = |role: &str| {
        let name = format!("{ods}/fit-note/{}/{role}", n.fit_note_id);
        format!(
            "urn:uuid:{}",
            Uuid::new_v5(&ENTRY_NAMESPACE, name.as_bytes())
        )
    };

    let mut practice = json!({
        "resourceType": "Organization",
        "identifier": [{ "system": systems::ODS_ORGANIZATION, "value": ods }],
    });
    if let Some(name) = &n.practice.name {
        practice["name"] = json!(name);
    }

    let p = &n.patient;
    let mut patient = json!({
        "resourceType": "Patient",
        "identifier": [{ "system": systems::NHS_NUMBER, "value": p.nhs_number.replace(' ', "") }],
    });
    if let Some(name) = &p.name {
        patient["name"] = json!([human_name(name, Some("official"))]);
    }
    if let Some(sex) = &p.sex
        && matches!(sex.as_str(), "female" | "male" | "other")
    {
        patient["gender"] = json!(sex);
    }
    if let Some(birth) = p.birth_date {
        patient["birthDate"] = json!(birth.to_string());
    }
    if let Some(pc) = &p.postcode {
        patient["address"] = json!([{ "use": "home", "postalCode": pc }]);
    }
    patient["generalPractitioner"] = json!([{ "reference": url("practice") }]);
    let subject = json!({ "reference": url("patient") });

    let issuer = &n.issuer;
    let mut contained = vec![
        json!({
            "resourceType": "Practitioner",
            "id": "issuer",
            "identifier": [{ "system": systems::register_system(&issuer.registration.register).unwrap_or_default(), "value": issuer.registration.number }],
            "name": [human_name(&issuer.name, None)],
        }),
        json!({
            "resourceType": "PractitionerRole",
            "id": "issuer-role",
            "practitioner": { "reference": "#issuer" },
            "organization": { "reference": url("practice"), "identifier": { "system": systems::ODS_ORGANIZATION, "value": ods } },
            "code": [local("fit-note-issuer-profession", &issuer.profession)],
        }),
    ];
    let mut reasons = Vec::new();
    for (i, c) in n.conditions.iter().enumerate() {
        let id = format!("condition-{i}");
        let mut code = json!({ "text": c.text });
        if let Some(sct) = &c.snomed_code {
            code["coding"] = json!([{ "system": systems::SNOMED, "code": sct }]);
        }
        contained.push(json!({
            "resourceType": "Condition",
            "id": id,
            "category": [{ "coding": [{ "system": systems::CONDITION_CATEGORY, "code": "encounter-diagnosis", "display": "Encounter Diagnosis" }] }],
            "code": code,
            "subject": subject,
        }));
        reasons.push(json!({ "url": systems::WORKFLOW_REASON_REFERENCE_EXT, "valueReference": { "reference": format!("#{id}") } }));
    }

    let mut components: Vec<Value> = fit_note_sct::ADJUSTMENTS
        .iter()
        .zip(n.adjustments.boxes())
        .map(|((_, concept), (_, ticked))| json!({ "code": sct(*concept), "valueBoolean": ticked }))
        .collect();
    components.push(json!({ "code": local("fit-note-component", "assessed-on"), "valueDateTime": n.assessment.date.to_string() }));
    components.push(json!({ "code": local("fit-note-component", "assess-again"), "valueBoolean": n.assess_again }));
    if let Some(start) = n.absence_start {
        components.push(json!({ "code": local("fit-note-component", "absence-start"), "valueDateTime": start.to_string() }));
    }

    let mut period = json!({ "start": f.start.to_string() });
    if let Some(end) = f.end {
        period["end"] = json!(end.to_string());
    }
    let mut observation = json!({
        "resourceType": "Observation",
        "meta": { "profile": [profile::whg_fit_note()] },
        "contained": contained,
        "extension": reasons,
        "identifier": [{ "system": id_system, "value": n.fit_note_id }],
        "status": "final",
        "category": [{ "coding": [{ "system": systems::OBSERVATION_CATEGORY, "code": "social-history", "display": "Social History" }] }],
        "code": sct(fitness_concept(f.not_fit())),
        "subject": subject,
        "effectivePeriod": period,
        // The statement's date, as the instant that day starts (UTC).
        "issued": format!("{}T00:00:00Z", n.issued_on),
        "performer": [{ "reference": "#issuer-role" }],
        "method": local("fit-note-assessment-method", &n.assessment.method),
        "component": components,
    });
    if let Some(text) = &n.comments {
        observation["note"] = json!([{ "text": text }]);
    }

    let mut entries = Vec::new();
    for (role, mut resource, keep_existing) in [
        ("practice", practice, true),
        ("patient", patient, true),
        ("fit-note", observation, false),
    ] {
        let resource_type = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if resource_type != "Observation" {
            crate::fhir::resource::claim_uk_core(&mut resource);
        }
        let request = transaction_request(
            &resource_type,
            match_identifier(&resource).as_ref(),
            keep_existing,
        );
        let mut entry = Map::new();
        entry.insert("fullUrl".into(), Value::String(url(role)));
        entry.insert("resource".into(), resource);
        entry.insert("request".into(), request);
        entries.push(Value::Object(entry));
    }
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

#[cfg(test)]
mod tests {
    use crate::fhir::identifiers::is_snomed_concept_id;
    use crate::fhir::systems::fit_note_sct;

    #[test]
    fn chosen_snomed_concepts_pass_their_check_digit() {
        for (code, _) in [fit_note_sct::NOT_FIT, fit_note_sct::MAY_BE_FIT]
            .into_iter()
            .chain(fit_note_sct::ADJUSTMENTS.iter().map(|(_, c)| *c))
        {
            assert!(is_snomed_concept_id(code), "{code}");
        }
    }
}
