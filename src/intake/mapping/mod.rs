//! Practice referral → FHIR R4 transaction Bundle of UK Core-profiled resources. Pure: the same
//! referral always maps to the same Bundle (entry fullUrls are name-based UUIDs), so expected
//! outputs can be published as fixtures.

pub mod fit_note;
pub mod self_referral;

use std::cell::RefCell;
use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::fhir::systems;
use crate::fhir::terminology::{self, coding};
use crate::intake::practice::{HumanName, PracticeReferral, is_off_sick};
use crate::intake::submission::{match_identifier, transaction_request};
use crate::services::Service;

/// A Consent provision in the gateway's profile: permit `recipient` (a `consent-recipient` code;
/// `actor` is its Reference, by identifier or display) to `actions` on `classes` for `purpose`.
pub fn consent_provision(
    recipient: &str,
    actor: Value,
    period: Option<Value>,
    actions: &[&str],
    purpose: &str,
    classes: &[&str],
) -> Value {
    let mut provision = json!({
        "type": "permit",
        "actor": [{
            "role": { "coding": [
                { "system": systems::V3_PARTICIPATION_TYPE, "code": "IRCP", "display": "information recipient" },
                coding("consent-recipient", recipient),
            ] },
            "reference": actor,
        }],
        "action": actions.iter().map(|a| json!({ "coding": [{ "system": systems::CONSENT_ACTION, "code": a }] })).collect::<Vec<_>>(),
        "purpose": [{ "system": systems::V3_ACT_REASON, "code": purpose, "display": if purpose == "TREAT" { "treatment" } else { "healthcare research" } }],
        "class": classes.iter().map(|c| coding("consent-data-class", c)).collect::<Vec<_>>(),
    });
    if let Some(p) = period {
        provision["period"] = p;
    }
    provision
}

/// The person's agreement to evaluation: pseudonymised extracts of their referral and outcomes.
pub(super) fn evaluation_provision(period: Value) -> Value {
    consent_provision(
        "evaluation",
        json!({ "display": "Evaluators of the service (pseudonymised extracts only)" }),
        Some(period),
        &["use", "disclose"],
        "HRESCH",
        &["referral", "outcome"],
    )
}

/// A Consent in the gateway's profile, as a referral brings it: `status` (`active`, or
/// `rejected` for a recorded "no"), `scope` (`patient-privacy` or `research`), the person's
/// `patient` reference (also the performer: the person decides), decided at `date` (FHIR
/// dateTime text), opting in to `provision`. `recorder`: the organisation that recorded it on
/// the person's behalf (the consent rules read it as who may mark it entered in error); none
/// when the person recorded it themselves.
pub fn consent_resource(
    status: &str,
    scope: &str,
    patient: Value,
    date: &str,
    recorder: Option<Value>,
    provision: Value,
) -> Value {
    let mut categories = vec![
        json!({ "coding": [{ "system": systems::LOINC, "code": systems::LOINC_CONSENT_DOCUMENT, "display": "Patient Consent" }] }),
    ];
    let scope_display = if scope == "research" {
        "Research"
    } else {
        categories.push(json!({ "coding": [{ "system": systems::CONSENT_CATEGORY_BARS, "code": "DRC", "display": "Direct Care" }] }));
        "Privacy Consent"
    };
    let mut consent = json!({
        "resourceType": "Consent",
        "status": status,
        "scope": { "coding": [{ "system": systems::CONSENT_SCOPE, "code": scope, "display": scope_display }] },
        "category": categories,
        "patient": patient,
        "dateTime": date,
        "performer": [patient],
        "policyRule": { "coding": [{ "system": systems::V3_ACT_CODE, "code": "OPTIN", "display": "opt-in" }] },
        "provision": provision,
    });
    if let Some(recorder) = recorder {
        consent["organization"] = json!([recorder]);
    }
    crate::fhir::resource::claim_profile(&mut consent, &systems::profile::whg_consent());
    consent
}

/// The Organization of a configured service, as every intake path states it: from the gateway's
/// configuration only, never from what a sender says of the service (see
/// [`crate::intake::submission::is_service_organization`]).
pub fn service_organization(service: &Service) -> Value {
    let mut identifiers =
        vec![json!({ "system": systems::service_identifier_system(), "value": service.id })];
    if let Some(ods) = &service.ods_code {
        identifiers.insert(
            0,
            json!({ "system": systems::ODS_ORGANIZATION, "value": ods }),
        );
    }
    json!({ "resourceType": "Organization", "identifier": identifiers, "name": service.name })
}

/// Namespace for the name-based UUIDs of mapped entries.
pub(crate) const ENTRY_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_8b3d_4c5f_9e7a_1d2b_3c4d_5e6f);

/// Maps a validated practice referral addressed to `service` into a FHIR transaction Bundle.
pub fn referral_bundle(r: &PracticeReferral, service: &Service) -> Value {
    Mapper::new(r, service).bundle()
}

struct Mapper<'a> {
    r: &'a PracticeReferral,
    service: &'a Service,
    entries: Vec<Value>,
    /// fullUrls by role: each is a SHA-1 (UUIDv5), and roles are referenced many times.
    urls: RefCell<HashMap<String, String>>,
}

impl<'a> Mapper<'a> {
    fn new(r: &'a PracticeReferral, service: &'a Service) -> Self {
        Mapper {
            r,
            service,
            entries: Vec::new(),
            urls: RefCell::new(HashMap::new()),
        }
    }

    /// The fullUrl of the entry playing `role` in this referral.
    fn url(&self, role: &str) -> String {
        if let Some(url) = self.urls.borrow().get(role) {
            return url.clone();
        }
        // A practice's entries are named by its ODS code alone, as they always were; another
        // kind's by its namespace, so no two senders' entries share a fullUrl.
        let sender = self.r.sender();
        let owner = if sender.is_practice() {
            sender.code.to_string()
        } else {
            sender.namespace()
        };
        let name = format!("{owner}/{}/{role}", self.r.referral_id);
        let url = format!(
            "urn:uuid:{}",
            Uuid::new_v5(&ENTRY_NAMESPACE, name.as_bytes())
        );
        self.urls.borrow_mut().insert(role.to_string(), url.clone());
        url
    }

    fn reference(&self, role: &str) -> Value {
        json!({ "reference": self.url(role) })
    }

    /// Adds `resource` under `role`, claiming its UK Core profile. Shared resources are written as
    /// conditional updates on their identifier, so the store reuses an existing one.
    fn add(&mut self, role: &str, mut resource: Value) -> String {
        let resource_type = resource["resourceType"]
            .as_str()
            .expect("mapped resources have a type")
            .to_string();
        crate::fhir::resource::claim_uk_core(&mut resource);
        let request =
            transaction_request(&resource_type, match_identifier(&resource).as_ref(), false);
        let url = self.url(role);
        // Built by hand: `json!` would deep-copy `resource` through serde.
        let mut entry = Map::new();
        entry.insert("fullUrl".into(), Value::String(url.clone()));
        entry.insert("resource".into(), resource);
        entry.insert("request".into(), request);
        self.entries.push(Value::Object(entry));
        url
    }

    fn bundle(mut self) -> Value {
        let r = self.r;
        self.practice();
        self.service_organization();
        self.patient();
        let requester = self.requester();
        let conditions = self.conditions(requester.as_ref());
        let mut supporting = self.employment_observations();
        supporting.extend(self.exposure_observations());
        if let Some(obs) = self.conditions_status_observation() {
            supporting.push(obs);
        }
        let consents = self.consents();
        self.consent_provenance(&consents);
        supporting.extend(consents);

        let mut sr = json!({
            "resourceType": "ServiceRequest",
            "extension": [{ "url": systems::SOURCE_OF_SERVICE_REQUEST_EXT, "valueCodeableConcept": self.route_concept() }],
            "identifier": [{
                "system": referral_id_system(&r.sender()),
                "value": r.referral_id,
                "assigner": self.reference("practice"),
            }],
            "status": "active",
            "intent": "order",
            "category": [{ "coding": [{ "system": systems::BARS_SERVICE_REQUEST_CATEGORY, "code": "referral", "display": "Referral" }] }],
            "priority": r.priority,
            "code": { "coding": [
                { "system": systems::SNOMED, "code": "3457005", "display": "Patient referral" },
                coding("service-type", "work-and-health-support"),
            ] },
            "orderDetail": r.support_wanted.needs.iter().map(|n| json!({ "coding": [coding("support-need", n)] })).collect::<Vec<_>>(),
            "subject": self.reference("patient"),
            "authoredOn": instant(&r.authored_on),
            "performer": [{ "reference": self.url("service"), "display": self.service.name }],
            "supportingInfo": supporting.iter().map(|u| json!({ "reference": u })).collect::<Vec<_>>(),
        });
        if let Some(req) = &requester {
            sr["requester"] = json!({ "reference": req });
        }
        if !conditions.is_empty() {
            sr["reasonReference"] = conditions
                .iter()
                .map(|u| json!({ "reference": u }))
                .collect();
        }
        if let Some(text) = &r.support_wanted.text {
            sr["note"] = json!([{ "text": text }]);
        }
        self.add("service-request", sr);

        let mut bundle = Map::new();
        bundle.insert("resourceType".into(), json!("Bundle"));
        bundle.insert("type".into(), json!("transaction"));
        bundle.insert("entry".into(), Value::Array(self.entries));
        Value::Object(bundle)
    }

    /// The sending organisation's Organization (the entry's role is `practice`, whatever kind
    /// of referrer sends: it names the sender).
    fn practice(&mut self) {
        let p = self.r.sender();
        let (system, value) = p.identifier();
        let mut org = json!({
            "resourceType": "Organization",
            "identifier": [{ "system": system, "value": value }],
        });
        if let Some(name) = p.name {
            org["name"] = json!(name);
        }
        let mut telecom = Vec::new();
        if let Some(phone) = p.phone {
            telecom.push(json!({ "system": "phone", "value": phone, "use": "work" }));
        }
        if let Some(email) = p.email {
            telecom.push(json!({ "system": "email", "value": email, "use": "work" }));
        }
        if !telecom.is_empty() {
            org["telecom"] = json!(telecom);
        }
        self.add("practice", org);
    }

    /// The sender as a reference with its identifier, so the consent rules know who it is
    /// without resolving local ids (`consent::Party::from_identifier`).
    fn sender_reference(&self) -> Value {
        let (system, value) = self.r.sender().identifier();
        json!({
            "reference": self.url("practice"),
            "identifier": { "system": system, "value": value },
        })
    }

    fn service_organization(&mut self) {
        self.add("service", service_organization(self.service));
    }

    fn patient(&mut self) {
        let p = &self.r.patient;
        let extension = patient_extensions(
            &p.preferred_contact,
            p.interpreter_needed,
            p.ethnicity.as_deref(),
        );
        let telecom = telecom(p.phone.as_deref(), p.email.as_deref(), &p.preferred_contact);
        let mut address = json!({ "use": "home", "postalCode": p.postcode });
        if !p.address_lines.is_empty() {
            address["line"] = json!(p.address_lines);
        }

        let mut patient = json!({
            "resourceType": "Patient",
            "extension": extension,
            "identifier": [{
                "extension": [{
                    "url": systems::NHS_NUMBER_VERIFICATION_EXT,
                    "valueCodeableConcept": { "coding": [terminology::nhs_number_verification(&p.nhs_number_verification)
                            .expect("the schema admits England codes only")] },
                }],
                "system": systems::NHS_NUMBER,
                "value": p.nhs_number.replace(' ', ""),
            }],
            "name": [human_name(&p.name, Some("official"))],
            "birthDate": p.birth_date.format("%Y-%m-%d").to_string(),
            "address": [address],
            "communication": [{
                "language": { "coding": [{ "system": systems::BCP47, "code": p.language }] },
                "preferred": true,
            }],
        });
        // The person's GP practice, when it is the sender (another kind of referrer is not).
        if self.r.sender().is_practice() {
            patient["generalPractitioner"] = json!([self.reference("practice")]);
        }
        if !telecom.is_empty() {
            patient["telecom"] = json!(telecom);
        }
        match p.sex.as_str() {
            "female" | "male" | "other" => patient["gender"] = json!(p.sex),
            absent => patient["_gender"] = json!({ "extension": [data_absent_extension(absent)] }),
        }
        self.add("patient", patient);
    }

    /// Who asked for the referral: the referrer's role when given, else the person themselves
    /// (self-referral) or their employer.
    fn requester(&mut self) -> Option<String> {
        let r = self.r;
        if let Some(referrer) = &r.referrer {
            let mut practitioner = json!({ "resourceType": "Practitioner", "name": [human_name(&referrer.name, None)] });
            if let Some(reg) = &referrer.registration
                && let Some(system) = systems::register_system(&reg.register)
            {
                practitioner["identifier"] = json!([{ "system": system, "value": reg.number }]);
            }
            let practitioner_url = self.add("referrer", practitioner);
            let role = json!({
                "resourceType": "PractitionerRole",
                "active": true,
                "practitioner": { "reference": practitioner_url },
                "organization": self.reference("practice"),
                "code": [{ "coding": [coding("referrer-profession", &referrer.profession)] }],
            });
            return Some(self.add("referrer-role", role));
        }
        match r.route.as_str() {
            // An employer sending as itself asked for it.
            "employer" if r.sender().role == crate::caller::Role::Employer => {
                Some(self.url("practice"))
            }
            "employer" => r.employment.employer_name.as_ref().map(|name| {
                self.add(
                    "employer",
                    json!({ "resourceType": "Organization", "name": name }),
                )
            }),
            _ => Some(self.url("patient")),
        }
    }

    fn conditions(&mut self, requester: Option<&String>) -> Vec<String> {
        let r = self.r;
        // An Organization asserts no Condition (R4 `Condition.asserter` is a person or role).
        let asserter = requester
            .filter(|u| *u != &self.url("employer") && *u != &self.url("practice"))
            .cloned();
        r.health_conditions
            .items
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut code = json!({ "text": c.text });
                if let Some(sct) = &c.snomed_code {
                    code["coding"] = json!([{ "system": systems::SNOMED, "code": sct }]);
                }
                let mut condition = json!({
                    "resourceType": "Condition",
                    "clinicalStatus": { "coding": [{ "system": systems::CONDITION_CLINICAL, "code": "active", "display": "Active" }] },
                    "category": [
                        { "coding": [{ "system": systems::CONDITION_CATEGORY, "code": "problem-list-item", "display": "Problem List Item" }] },
                        { "coding": [coding("health-condition-category", &c.category)] },
                    ],
                    "code": code,
                    "subject": self.reference("patient"),
                    "recordedDate": instant(&r.authored_on),
                });
                if let Some(a) = &asserter {
                    condition["asserter"] = json!({ "reference": a });
                }
                self.add(&format!("condition-{i}"), condition)
            })
            .collect()
    }

    fn observation(&self, code: Value) -> Value {
        json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{ "coding": [{ "system": systems::OBSERVATION_CATEGORY, "code": "social-history", "display": "Social History" }] }],
            "code": code,
            "subject": self.reference("patient"),
            "effectiveDateTime": instant(&self.r.authored_on),
            "performer": [self.reference("practice")],
        })
    }

    fn employment_observations(&mut self) -> Vec<String> {
        let e = &self.r.employment;
        let mut out = Vec::new();

        let mut status = self.observation(local_code("employment-status"));
        set_coded_value(&mut status, "employment-status", &e.status);
        out.push(self.add("obs-employment-status", status));

        let mut components = employer_components(&WorkAnswers {
            employer_name: e.employer_name.as_deref(),
            employer_size: e.employer_size.as_deref(),
            sector: e.sector.as_deref(),
            contract_type: e.contract_type.as_deref(),
            occupational_health: e.employer_occupational_health.as_deref(),
        });
        if let Some(hours) = e.hours_per_week {
            components.push(json!({
                "code": local_code("hours-per-week"),
                "valueQuantity": { "value": hours, "unit": "hours per week", "system": systems::UCUM, "code": "h/wk" },
            }));
        }
        if e.job_title.is_some() || !components.is_empty() {
            let mut occupation = self.observation(json!({
                "coding": [{ "system": systems::LOINC, "code": "11341-5", "display": "History of Occupation" }],
            }));
            if let Some(title) = &e.job_title {
                occupation["valueCodeableConcept"] = json!({ "text": title });
            }
            if !components.is_empty() {
                occupation["component"] = json!(components);
            }
            out.push(self.add("obs-occupation", occupation));
        }

        if let Some(start) = e.sickness_absence_start {
            let mut absence = self.observation(local_code("sickness-absence-start"));
            absence["valueDateTime"] = json!(start.format("%Y-%m-%d").to_string());
            if is_off_sick(&e.status) {
                absence["note"] =
                    json!([{ "text": coding("employment-status", &e.status)["display"] }]);
            }
            out.push(self.add("obs-sickness-absence", absence));
        }
        if let Some(answer) = &self.r.patient.disability {
            let mut obs = self.observation(local_code("disability-status"));
            set_coded_value(&mut obs, "disability-status", answer);
            out.push(self.add("obs-disability", obs));
        }
        if let Some(right) = e.right_to_work {
            let mut obs = self.observation(local_code("right-to-work"));
            obs["valueBoolean"] = json!(right);
            out.push(self.add("obs-right-to-work", obs));
        }
        out
    }

    fn exposure_observations(&mut self) -> Vec<String> {
        let list = &self.r.workplace_exposures;
        if list.status != "recorded" {
            let mut obs = self.observation(local_code("workplace-exposure"));
            set_coded_value(&mut obs, "recorded-list-status", &list.status);
            return vec![self.add("obs-exposures", obs)];
        }
        list.items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let mut obs = self.observation(local_code("workplace-exposure"));
                let mut value = json!({ "coding": [coding("workplace-exposure", &item.code)] });
                if let Some(text) = &item.text {
                    value["text"] = json!(text);
                }
                obs["valueCodeableConcept"] = value;
                self.add(&format!("obs-exposure-{i}"), obs)
            })
            .collect()
    }

    /// When no conditions are listed, says why (none, declined, not recorded) so the absence of
    /// Conditions is never ambiguous.
    fn conditions_status_observation(&mut self) -> Option<String> {
        let status = &self.r.health_conditions.status;
        if status == "recorded" {
            return None;
        }
        let mut obs = self.observation(local_code("health-conditions"));
        set_coded_value(&mut obs, "recorded-list-status", status);
        Some(self.add("obs-conditions-status", obs))
    }

    /// The person's agreements, one Consent each so each can be withdrawn on its own: to be
    /// referred to the service (always; intake refuses a referral without it), to feedback to the
    /// practice, and to evaluation.
    fn consents(&mut self) -> Vec<String> {
        let c = &self.r.consent;
        let period = json!({ "start": instant(&c.recorded_at) });
        let mut period = period;
        if let Some(until) = &c.valid_until {
            period["end"] = json!(until.format("%Y-%m-%d").to_string());
        }
        let service_id =
            json!({ "system": systems::service_identifier_system(), "value": self.service.id });
        let mut classes = vec!["referral", "diagnosis"];
        if c.share_fit_notes == Some(true) {
            classes.push("fit-note");
        }
        let mut out = vec![self.consent_resource(
            "consent",
            "patient-privacy",
            consent_provision(
                "work-health-service",
                json!({ "reference": self.url("service"), "identifier": service_id, "display": self.service.name }),
                Some(period.clone()),
                &["disclose", "access"],
                "TREAT",
                &classes,
            ),
        )];
        // Feedback to the sender, as its kind is a recipient: a practice, or another referrer
        // (never an employer: the rules refuse it).
        let feedback = match self.r.sender().role {
            crate::caller::Role::Practice => {
                c.feedback_to_practice.map(|f| (f, "referring-practice"))
            }
            crate::caller::Role::Employer => None,
            _ => c.feedback_to_referrer.map(|f| (f, "referrer")),
        };
        if let Some((true, recipient)) = feedback {
            out.push(self.consent_resource(
                "consent-feedback",
                "patient-privacy",
                consent_provision(
                    recipient,
                    self.sender_reference(),
                    Some(period.clone()),
                    &["disclose"],
                    "TREAT",
                    &["adviser-letter", "outcome"],
                ),
            ));
        }
        if c.evaluation == Some(true) {
            out.push(self.consent_resource(
                "consent-evaluation",
                "research",
                evaluation_provision(period),
            ));
        }
        out
    }

    fn consent_resource(&mut self, role: &str, scope: &str, provision: Value) -> String {
        let c = &self.r.consent;
        // A recorded "no" is kept as what it is: a rejected Consent, which permits nothing.
        let status = if c.patient_agreed {
            "active"
        } else {
            "rejected"
        };
        // The sender records the agreement.
        let organization = self.sender_reference();
        let consent = consent_resource(
            status,
            scope,
            self.reference("patient"),
            &instant(&c.recorded_at),
            Some(organization),
            provision,
        );
        self.add(role, consent)
    }

    /// Who recorded the agreement and when, as a Provenance on the Consent (the UK Core pattern).
    fn consent_provenance(&mut self, consents: &[String]) {
        let c = &self.r.consent;
        let same_as_referrer = self.r.referrer.as_ref().is_some_and(|r| {
            r.name == c.recorded_by.name && r.profession == c.recorded_by.profession
        });
        let recorder = if same_as_referrer {
            self.url("referrer")
        } else {
            let practitioner = json!({ "resourceType": "Practitioner", "name": [human_name(&c.recorded_by.name, None)] });
            self.add("consent-recorder", practitioner)
        };
        let provenance = json!({
            "resourceType": "Provenance",
            "target": consents.iter().map(|u| json!({ "reference": u })).collect::<Vec<_>>(),
            "recorded": instant(&c.recorded_at),
            "agent": [{
                "type": { "coding": [{ "system": systems::PROVENANCE_PARTICIPANT_TYPE, "code": "enterer", "display": "Enterer" }] },
                "role": [{ "coding": [coding("referrer-profession", &c.recorded_by.profession)] }],
                "who": { "reference": recorder },
                "onBehalfOf": self.reference("practice"),
            }],
        });
        self.add("consent-provenance", provenance);
    }

    fn route_concept(&self) -> Value {
        route_concept(&self.r.route, self.r.route_detail.as_deref())
    }
}

/// The identifier system of a sender's own referral ids: one namespace per sending
/// organisation.
fn referral_id_system(sender: &crate::intake::practice::SendingOrganisation<'_>) -> String {
    if sender.is_practice() {
        systems::practice_referral_id_system(sender.code)
    } else {
        systems::referrer_referral_id_system(sender.role.as_str(), sender.code)
    }
}

/// What a person's referral says of their employer, each answer a code of its system.
pub(super) struct WorkAnswers<'a> {
    pub employer_name: Option<&'a str>,
    pub employer_size: Option<&'a str>,
    pub sector: Option<&'a str>,
    pub contract_type: Option<&'a str>,
    pub occupational_health: Option<&'a str>,
}

/// The occupation Observation's components for `w`: the employer's name and each coded answer
/// given (an absent answer records nothing; *prefer not to say* is a data-absent reason).
pub(super) fn employer_components(w: &WorkAnswers<'_>) -> Vec<Value> {
    let mut components = Vec::new();
    if let Some(name) = w.employer_name {
        components.push(json!({ "code": local_code("employer-name"), "valueString": name }));
    }
    for (code, system, value) in [
        ("employer-size", "employer-size-band", w.employer_size),
        ("employment-sector", "employment-sector", w.sector),
        ("contract-type", "contract-type", w.contract_type),
        (
            "occupational-health-access",
            "occupational-health-access",
            w.occupational_health,
        ),
    ] {
        if let Some(v) = value {
            let mut c = json!({ "code": local_code(code) });
            set_coded_value(&mut c, system, v);
            components.push(c);
        }
    }
    components
}

/// The Patient's extensions every referral format states: how the person wants to be
/// contacted, whether they need an interpreter, their ethnic group when given.
pub(super) fn patient_extensions(
    preferred_contact: &str,
    interpreter_needed: bool,
    ethnicity: Option<&str>,
) -> Vec<Value> {
    let mut extension = Vec::new();
    if let Some(method) = ukcore_contact_method(preferred_contact) {
        extension.push(json!({
            "url": systems::CONTACT_PREFERENCE_EXT,
            "extension": [{ "url": "PreferredContactMethod", "valueCodeableConcept": { "coding": [method] } }],
        }));
    }
    extension.push(
        json!({ "url": systems::INTERPRETER_REQUIRED_EXT, "valueBoolean": interpreter_needed }),
    );
    if let Some(ext) = ethnicity.and_then(crate::monitoring::ethnic_category_extension) {
        extension.push(ext);
    }
    extension
}

/// The Patient's telecoms: the way they want to be contacted ranked first.
pub(super) fn telecom(
    phone: Option<&str>,
    email: Option<&str>,
    preferred_contact: &str,
) -> Vec<Value> {
    let mut telecom = Vec::new();
    if let Some(phone) = phone {
        let mobile = phone.starts_with("07") || phone.starts_with("+447");
        let mut t = json!({ "system": "phone", "value": phone, "use": if mobile { "mobile" } else { "home" } });
        if matches!(preferred_contact, "phone" | "sms") {
            t["rank"] = json!(1);
        }
        telecom.push(t);
    }
    if let Some(email) = email {
        let mut t = json!({ "system": "email", "value": email, "use": "home" });
        if preferred_contact == "email" {
            t["rank"] = json!(1);
        }
        telecom.push(t);
    }
    telecom
}

/// The ServiceRequest's source-of-referral extension value: the `referral-route` code, with
/// UK Core's SNOMED concept where it has one, and who referred as text.
pub(super) fn route_concept(route: &str, detail: Option<&str>) -> Value {
    let mut codings = vec![coding("referral-route", route)];
    // Only routes with an exact concept in UK Core's SourceOfServiceRequest value set.
    let snomed = match route {
        "gp" => Some(("108161000000109", "Referred by general practitioner")),
        "other-primary-care" => Some((
            "276491000",
            "Referred by member of Primary Health Care Team",
        )),
        "self-referral" => Some(("310434002", "Self-referral to service")),
        _ => None,
    };
    if let Some((code, display)) = snomed {
        codings.push(json!({ "system": systems::SNOMED, "code": code, "display": display }));
    }
    let mut concept = json!({ "coding": codings });
    if let Some(detail) = detail {
        concept["text"] = json!(detail);
    }
    concept
}

pub(super) fn local_code(code: &str) -> Value {
    json!({ "coding": [coding("observation-type", code)] })
}

/// Puts a practice code into `valueCodeableConcept`, or, for the explicit absent answers, into
/// `dataAbsentReason`, so "prefer not to say" and "not recorded" stay distinct from any answer.
pub(super) fn set_coded_value(target: &mut Value, system_name: &str, code: &str) {
    match data_absent_reason(code) {
        Some(reason) => target["dataAbsentReason"] = reason,
        None => target["valueCodeableConcept"] = json!({ "coding": [coding(system_name, code)] }),
    }
}

/// The data-absent-reason for the practice format's explicit absent answers.
fn absent_reason(code: &str) -> Option<(&'static str, &'static str)> {
    match code {
        "prefer-not-to-say" => Some(("asked-declined", "Asked But Declined")),
        "not-recorded" => Some(("not-asked", "Not Asked")),
        _ => None,
    }
}

fn data_absent_reason(code: &str) -> Option<Value> {
    let (dar, display) = absent_reason(code)?;
    Some(
        json!({ "coding": [{ "system": systems::DATA_ABSENT_REASON, "code": dar, "display": display }] }),
    )
}

/// The primitive-element extension form, for an absent answer (`code` is one of them).
pub(super) fn data_absent_extension(code: &str) -> Value {
    let (dar, _) = absent_reason(code).unwrap_or(("not-asked", "Not Asked"));
    json!({ "url": systems::DATA_ABSENT_REASON_EXT, "valueCode": dar })
}

pub(crate) fn human_name(n: &HumanName, use_: Option<&str>) -> Value {
    let mut v = Map::new();
    if let Some(u) = use_ {
        v.insert("use".into(), json!(u));
    }
    v.insert("family".into(), json!(n.family));
    v.insert("given".into(), json!(n.given));
    if let Some(p) = &n.prefix {
        v.insert("prefix".into(), json!([p]));
    }
    Value::Object(v)
}

fn ukcore_contact_method(code: &str) -> Option<Value> {
    let (c, display) = match code {
        "letter" => ("1", "Letter"),
        "phone" => ("3", "Telephone"),
        "email" => ("4", "E-mail"),
        "sms" => ("9", "SMS"),
        _ => return None,
    };
    Some(
        json!({ "system": systems::PREFERRED_CONTACT_METHOD_UKCORE, "code": c, "display": display }),
    )
}

/// FHIR dateTime/instant text for a sender's timestamp (UTC written as `Z`).
fn instant(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
