//! A checked self-referral → FHIR R4 transaction Bundle of UK Core-profiled resources: the same
//! resources a practice referral maps to, stated by the person (the Patient is the requester,
//! the performer of what they said of their work, and the performer of their Consents), with no
//! practice among them. Pure: the same answers, reference and time map to the same Bundle.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    ENTRY_NAMESPACE, WorkAnswers, consent_provision, consent_resource, data_absent_extension,
    employer_components, evaluation_provision, human_name, local_code, patient_extensions,
    route_concept, service_organization, set_coded_value, telecom,
};
use crate::fhir::search::format_instant;
use crate::fhir::systems;
use crate::fhir::terminology::{coding, nhs_number_verification};
use crate::intake::self_referral::{Conditions, Gp, Interpreter, LANGUAGES, SelfReferral};
use crate::intake::submission::transaction_request;
use crate::services::Service;

/// Identifier system of self-referrals: the person's reference for theirs.
pub fn reference_system() -> String {
    format!("{}/Id/self-referral", systems::CANONICAL_BASE)
}

/// Maps `r`, addressed to `service`, sent at `now` under the person's `reference`.
pub fn bundle(r: &SelfReferral, service: &Service, reference: &str, now: DateTime<Utc>) -> Value {
    let mut m = Mapper {
        r,
        reference,
        at: format_instant(now),
        entries: Vec::new(),
    };
    m.add("service", service_organization(service));
    m.patient();
    let mut supporting = m.work();
    let conditions = m.conditions(&mut supporting);
    let consents = m.consents(service);
    m.consent_provenance(&consents);
    supporting.extend(consents);

    let mut sr = json!({
        "resourceType": "ServiceRequest",
        "extension": [{ "url": systems::SOURCE_OF_SERVICE_REQUEST_EXT, "valueCodeableConcept": route_concept("self-referral", None) }],
        "identifier": [{ "system": reference_system(), "value": reference }],
        "status": "active",
        "intent": "order",
        "category": [{ "coding": [{ "system": systems::BARS_SERVICE_REQUEST_CATEGORY, "code": "referral", "display": "Referral" }] }],
        "priority": "routine",
        "code": { "coding": [
            { "system": systems::SNOMED, "code": "3457005", "display": "Patient referral" },
            coding("service-type", "work-and-health-support"),
        ] },
        "orderDetail": r.needs.iter().map(|n| json!({ "coding": [coding("support-need", n)] })).collect::<Vec<_>>(),
        "subject": m.reference("patient"),
        "authoredOn": m.at,
        "requester": m.reference("patient"),
        "performer": [{ "reference": m.url("service"), "display": service.name }],
        "supportingInfo": supporting.iter().map(|u| json!({ "reference": u })).collect::<Vec<_>>(),
    });
    if !conditions.is_empty() {
        sr["reasonReference"] = conditions
            .iter()
            .map(|u| json!({ "reference": u }))
            .collect();
    }
    let mut notes = Vec::new();
    if let Some(text) = &r.support_text {
        notes.push(json!({ "text": text }));
    }
    if let Some(Interpreter::Named(language)) = &r.interpreter {
        notes.push(json!({ "text": format!("Needs an interpreter: {language}") }));
    }
    if !notes.is_empty() {
        sr["note"] = json!(notes);
    }
    m.add("service-request", sr);

    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("type".into(), json!("transaction"));
    bundle.insert("entry".into(), Value::Array(m.entries));
    Value::Object(bundle)
}

struct Mapper<'a> {
    r: &'a SelfReferral,
    reference: &'a str,
    /// When the person sent the form, as FHIR instant text.
    at: String,
    entries: Vec<Value>,
}

impl Mapper<'_> {
    /// The fullUrl of the entry playing `role`: name-based, so the mapping is repeatable.
    fn url(&self, role: &str) -> String {
        let name = format!("self-referral/{}/{role}", self.reference);
        format!(
            "urn:uuid:{}",
            Uuid::new_v5(&ENTRY_NAMESPACE, name.as_bytes())
        )
    }

    fn reference(&self, role: &str) -> Value {
        json!({ "reference": self.url(role) })
    }

    fn add(&mut self, role: &str, mut resource: Value) -> String {
        let resource_type = resource["resourceType"]
            .as_str()
            .expect("mapped resources have a type")
            .to_string();
        crate::fhir::resource::claim_uk_core(&mut resource);
        // The person is never matched to a stored one (`intake::self_referral`); the service's
        // Organization is the gateway's own statement, matched by its identifier.
        let matched = (resource_type == "Organization")
            .then(|| crate::intake::submission::match_identifier(&resource))
            .flatten();
        let request = transaction_request(&resource_type, matched.as_ref(), false);
        let url = self.url(role);
        let mut entry = Map::new();
        entry.insert("fullUrl".into(), Value::String(url.clone()));
        entry.insert("resource".into(), resource);
        entry.insert("request".into(), request);
        self.entries.push(Value::Object(entry));
        url
    }

    fn patient(&mut self) {
        let r = self.r;
        let mut patient = json!({
            "resourceType": "Patient",
            // An unanswered question records nothing, as the practice format's absent answer.
            "extension": patient_extensions(
                &r.preferred_contact,
                r.interpreter.is_some(),
                (r.ethnicity != "not-recorded").then_some(r.ethnicity.as_str()),
            ),
            "name": [human_name(&r.name, Some("official"))],
            "birthDate": r.birth_date.format("%Y-%m-%d").to_string(),
            "address": [{ "use": "home", "postalCode": r.postcode }],
        });
        if let Some(nhs) = &r.nhs_number {
            // As the person typed it: nobody has traced it yet.
            patient["identifier"] = json!([{
                "extension": [{
                    "url": systems::NHS_NUMBER_VERIFICATION_EXT,
                    "valueCodeableConcept": { "coding": [nhs_number_verification("02").expect("02 is an England code")] },
                }],
                "system": systems::NHS_NUMBER,
                "value": nhs,
            }]);
        }
        if !r.address_lines.is_empty() {
            patient["address"][0]["line"] = json!(r.address_lines);
        }
        let telecom = telecom(r.phone.as_deref(), r.email.as_deref(), &r.preferred_contact);
        if !telecom.is_empty() {
            patient["telecom"] = json!(telecom);
        }
        // UK Core binds the language to BCP 47 (required): a language the form has no tag for
        // is said on the referral instead (its note).
        if let Some(Interpreter::Listed(tag)) = &r.interpreter {
            let name = LANGUAGES
                .iter()
                .find(|(t, _)| t == tag)
                .map_or(*tag, |(_, n)| n);
            patient["communication"] = json!([{
                "language": { "coding": [{ "system": systems::BCP47, "code": tag, "display": name }] },
                "preferred": true,
            }]);
        }
        match &r.gp {
            Gp::Listed { ods, name } => {
                patient["generalPractitioner"] = json!([{
                    "identifier": { "system": systems::ODS_ORGANIZATION, "value": ods },
                    "display": name,
                }]);
            }
            Gp::Named(name) => patient["generalPractitioner"] = json!([{ "display": name }]),
            Gp::NotGiven => {}
        }
        match r.sex.as_str() {
            "female" | "male" | "other" => patient["gender"] = json!(r.sex),
            absent => patient["_gender"] = json!({ "extension": [data_absent_extension(absent)] }),
        }
        self.add("patient", patient);
    }

    /// An Observation of what the person said of themselves.
    fn observation(&self, code: Value) -> Value {
        json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{ "coding": [{ "system": systems::OBSERVATION_CATEGORY, "code": "social-history", "display": "Social History" }] }],
            "code": code,
            "subject": self.reference("patient"),
            "effectiveDateTime": self.at,
            "performer": [self.reference("patient")],
        })
    }

    /// Their work: status, job and employer, when they went off sick, disability.
    fn work(&mut self) -> Vec<String> {
        let r = self.r;
        let mut out = Vec::new();
        let mut status = self.observation(local_code("employment-status"));
        set_coded_value(&mut status, "employment-status", &r.employment_status);
        out.push(self.add("obs-employment-status", status));
        // An unanswered question records nothing, as the practice format's absent one.
        fn answered(code: &str) -> Option<&str> {
            (code != "not-recorded").then_some(code)
        }
        let components = employer_components(&WorkAnswers {
            employer_name: r.employer_name.as_deref(),
            employer_size: answered(&r.employer_size),
            sector: answered(&r.sector),
            contract_type: answered(&r.contract),
            occupational_health: answered(&r.occupational_health),
        });
        if r.job_title.is_some() || !components.is_empty() {
            let mut occupation = self.observation(json!({
                "coding": [{ "system": systems::LOINC, "code": "11341-5", "display": "History of Occupation" }],
            }));
            if let Some(title) = &r.job_title {
                occupation["valueCodeableConcept"] = json!({ "text": title });
            }
            if !components.is_empty() {
                occupation["component"] = json!(components);
            }
            out.push(self.add("obs-occupation", occupation));
        }
        if let Some(start) = r.off_sick_since {
            let mut absence = self.observation(local_code("sickness-absence-start"));
            absence["valueDateTime"] = json!(start.format("%Y-%m-%d").to_string());
            absence["note"] =
                json!([{ "text": coding("employment-status", &r.employment_status)["display"] }]);
            out.push(self.add("obs-sickness-absence", absence));
        }
        if r.disability != "not-recorded" {
            let mut disability = self.observation(local_code("disability-status"));
            set_coded_value(&mut disability, "disability-status", &r.disability);
            out.push(self.add("obs-disability", disability));
        }
        out
    }

    /// The health condition they named (a Condition they asserted), or why there is none.
    fn conditions(&mut self, supporting: &mut Vec<String>) -> Vec<String> {
        match &self.r.conditions {
            Conditions::One(c) => {
                let mut code =
                    json!({ "coding": [coding("health-condition-category", &c.category)] });
                if let Some(text) = &c.text {
                    code["text"] = json!(text);
                }
                let condition = json!({
                    "resourceType": "Condition",
                    "clinicalStatus": { "coding": [{ "system": systems::CONDITION_CLINICAL, "code": "active", "display": "Active" }] },
                    // What the person says of their health: no clinician has confirmed it.
                    "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "unconfirmed", "display": "Unconfirmed" }] },
                    "category": [
                        { "coding": [{ "system": systems::CONDITION_CATEGORY, "code": "problem-list-item", "display": "Problem List Item" }] },
                        { "coding": [coding("health-condition-category", &c.category)] },
                    ],
                    "code": code,
                    "subject": self.reference("patient"),
                    "recordedDate": self.at,
                    "asserter": self.reference("patient"),
                });
                vec![self.add("condition-0", condition)]
            }
            Conditions::Status(status) => {
                let mut obs = self.observation(local_code("health-conditions"));
                set_coded_value(&mut obs, "recorded-list-status", status);
                supporting.push(self.add("obs-conditions-status", obs));
                Vec::new()
            }
        }
    }

    /// The person's agreements, one Consent each so each can be withdrawn on its own: to the
    /// service seeing the referral (always: the form is not sent without it), to feedback to
    /// their GP practice, to evaluation. They record them themselves.
    fn consents(&mut self, service: &Service) -> Vec<String> {
        let r = self.r;
        let period = json!({ "start": self.at });
        let service_id =
            json!({ "system": systems::service_identifier_system(), "value": service.id });
        let mut out = vec![self.consent(
            "consent",
            "patient-privacy",
            consent_provision(
                "work-health-service",
                json!({ "reference": self.url("service"), "identifier": service_id, "display": service.name }),
                Some(period.clone()),
                &["disclose", "access"],
                "TREAT",
                &["referral", "diagnosis"],
            ),
        )];
        if let (true, Gp::Listed { ods, name }) = (r.feedback_to_gp, &r.gp) {
            out.push(self.consent(
                "consent-feedback",
                "patient-privacy",
                consent_provision(
                    "referring-practice",
                    json!({ "identifier": { "system": systems::ODS_ORGANIZATION, "value": ods }, "display": name }),
                    Some(period.clone()),
                    &["disclose"],
                    "TREAT",
                    &["adviser-letter", "outcome"],
                ),
            ));
        }
        if r.evaluation {
            out.push(self.consent(
                "consent-evaluation",
                "research",
                evaluation_provision(period),
            ));
        }
        out
    }

    /// One of the person's agreements. They recorded it themselves: no organisation is its
    /// recorder (the service may withdraw it, as any party to their care may, but not mark it
    /// entered in error as a recorder could).
    fn consent(&mut self, role: &str, scope: &str, provision: Value) -> String {
        let consent = consent_resource(
            "active",
            scope,
            self.reference("patient"),
            &self.at,
            None,
            provision,
        );
        self.add(role, consent)
    }

    /// The person entered their agreements themselves, in the self-referral form.
    fn consent_provenance(&mut self, consents: &[String]) {
        let provenance = json!({
            "resourceType": "Provenance",
            "target": consents.iter().map(|u| json!({ "reference": u })).collect::<Vec<_>>(),
            "recorded": self.at,
            "agent": [{
                "type": { "coding": [{ "system": systems::PROVENANCE_PARTICIPANT_TYPE, "code": "enterer", "display": "Enterer" }] },
                "who": self.reference("patient"),
            }],
            "reason": [{ "text": "Recorded by the person in the self-referral form" }],
        });
        self.add("consent-provenance", provenance);
    }
}
