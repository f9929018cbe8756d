//! The audit trail: an AuditEvent for every consent decision, read of a person's data, disclosure
//! and override. Events are only ever appended (the API has no route that updates or deletes
//! them). Building an event is pure;
//! [`crate::store::AuditTrail`] stores a batch.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::caller::Principal;
use crate::consent::{Code, Decision};
use crate::fhir::search::format_instant;
use crate::fhir::systems;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const UK_CORE_AUDIT_EVENT: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-AuditEvent";

/// What happened, which fixes the event's type, subtype and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read of one resource about a person.
    Read,
    /// A search that returned (or withheld) people's records.
    Search,
    /// A record about a person created: a referral received (with the consent decision at
    /// intake), or a letter written.
    Intake,
    /// A Consent recorded or changed.
    ConsentRecorded,
    /// Another record about a person changed (e.g. a referral prompt answered).
    Updated,
    /// A disclosure decision for something to be sent out (letter, employer document, export).
    Disclosure,
    /// A user acted against a consent decision.
    Override,
    /// A pseudonymised export for evaluation.
    Export,
    /// A MESH inbox message that answers none of the gateway's letters, set aside unread or
    /// unused.
    MeshQuarantine,
    /// An aggregate report read: no person in it, but who looked at what is kept.
    Report,
    /// A person signed in to the dashboard (or was refused, `permitted: false`).
    SignIn,
    /// A person signed out of the dashboard.
    SignOut,
    /// An operational alert raised (no person in it).
    AlertRaised,
    /// A person acknowledged an operational alert.
    AlertAcknowledged,
}

impl Kind {
    /// `(type code, type display, subtype code, action)`.
    fn codes(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Kind::Read => ("110110", "Patient Record", "read", "R"),
            Kind::Search => ("110112", "Query", "search-type", "E"),
            Kind::Intake => ("110110", "Patient Record", "create", "C"),
            Kind::ConsentRecorded | Kind::Updated => ("110110", "Patient Record", "update", "U"),
            Kind::Disclosure => ("110106", "Export", "disclosure", "E"),
            Kind::Override => ("110113", "Security Alert", "consent-override", "E"),
            Kind::Export => ("110106", "Export", "evaluation-export", "E"),
            Kind::MeshQuarantine => ("110107", "Import", "mesh-quarantine", "C"),
            Kind::Report => ("110112", "Query", "aggregate-report", "E"),
            Kind::SignIn => ("110114", "User Authentication", "sign-in", "E"),
            Kind::SignOut => ("110114", "User Authentication", "sign-out", "E"),
            Kind::AlertRaised => ("110100", "Application Activity", "alert-raised", "C"),
            Kind::AlertAcknowledged => {
                ("110100", "Application Activity", "alert-acknowledged", "U")
            }
        }
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub kind: Kind,
    /// Who acted: a client, or the gateway itself (`None`), e.g. the delivery worker or an export.
    pub principal: Option<&'a Principal>,
    /// `Patient/id`, when the event is about one known person.
    pub patient: Option<String>,
    /// Other resources concerned (`Type/id`), e.g. the ServiceRequest read.
    pub entities: Vec<String>,
    /// The consent decision, when one was made.
    pub decision: Option<&'a Decision>,
    /// Whether the action went ahead.
    pub permitted: bool,
    /// What a reviewer needs to know, without personal identifiers.
    pub description: String,
    pub at: DateTime<Utc>,
    /// Request id, so the audit trail and the logs can be joined.
    pub request_id: Option<String>,
}

/// The AuditEvent for `event`.
pub fn audit_event(event: &Event) -> Value {
    let (type_code, type_display, subtype, action) = event.kind.codes();
    let subtype_system = match subtype {
        "read" | "search-type" | "create" | "update" => {
            "http://hl7.org/fhir/restful-interaction".to_string()
        }
        _ => systems::local_code_system("audit-event-subtype"),
    };
    let mut agents = Vec::new();
    match event.principal {
        Some(p) => {
            agents.push(json!({
                "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "datacollector", "display": "data collector" }] },
                "who": { "identifier": { "system": client_system(), "value": p.client_id } },
                "requestor": true,
            }));
            agents.push(json!({
                "who": crate::fhir::identifiers::identifier_reference(&p.organisation),
                "requestor": false,
                "role": [{ "text": format!("organisation the client acts for ({})", p.role.as_str()) }],
            }));
        }
        None => agents.push(json!({
            "who": { "display": "Work and Health Gateway" },
            "requestor": true,
        })),
    }
    let mut entities = Vec::new();
    if let Some(patient) = &event.patient {
        entities.push(json!({
            "what": { "reference": patient },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient" },
        }));
    }
    for what in &event.entities {
        entities.push(json!({
            "what": { "reference": what },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" },
        }));
    }
    if let Some(d) = event.decision {
        if let Some(consent) = d.consent() {
            entities.push(json!({
                "what": { "reference": consent },
                "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" },
                "description": "the Consent that decided",
            }));
        }
        if let Some(o) = d.override_id() {
            entities.push(json!({
                "what": { "identifier": { "system": override_system(), "value": o } },
                "description": "the override acted under",
            }));
        }
    }
    let mut resource = json!({
        "resourceType": "AuditEvent",
        "meta": { "profile": [UK_CORE_AUDIT_EVENT] },
        "type": { "system": DCM, "code": type_code, "display": type_display },
        "subtype": [{ "system": subtype_system, "code": subtype }],
        "action": action,
        "recorded": format_instant(event.at),
        "outcome": if event.permitted { "0" } else { "4" },
        "outcomeDesc": event.description,
        "agent": agents,
        "source": {
            "observer": { "display": "Work and Health Gateway" },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server" }],
        },
    });
    if let Some(d) = event.decision {
        resource["purposeOfEvent"] = json!([{ "coding": [d.purpose.coding()] }]);
    }
    if !entities.is_empty() {
        resource["entity"] = Value::Array(entities);
    }
    if let Some(id) = &event.request_id {
        resource["source"]["site"] = json!(format!("request {id}"));
    }
    resource
}

/// Identifier system of the gateway's registered clients.
pub fn client_system() -> String {
    format!("{}/Id/client", systems::CANONICAL_BASE)
}

/// Identifier system of consent overrides.
pub fn override_system() -> String {
    format!("{}/Id/consent-override", systems::CANONICAL_BASE)
}

/// Identifier system of MESH messages (MESH's message ids).
pub fn mesh_message_system() -> String {
    format!("{}/Id/mesh-message", systems::CANONICAL_BASE)
}

/// Adds to `event` an entity for the MESH message with id `message_id`, described as `role`.
pub fn with_mesh_message(mut event: Value, message_id: &str, role: &str) -> Value {
    let entity = json!({
        "what": { "identifier": { "system": mesh_message_system(), "value": message_id } },
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" },
        "description": role,
    });
    match event["entity"].as_array_mut() {
        Some(entities) => entities.push(entity),
        None => event["entity"] = json!([entity]),
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Basis, Effect};

    #[test]
    fn records_who_what_which_consent_and_outcome() {
        let p = Principal::service("sheffield-whs");
        let d = Decision {
            effect: Effect::Deny,
            basis: Basis::Refused {
                consent: "Consent/c1".into(),
            },
            reason: "Consent/c1 refuses access of referral to work-health-service x for TREAT"
                .into(),
            purpose: crate::consent::Purpose::Treatment,
        };
        let e = audit_event(&Event {
            kind: Kind::Read,
            principal: Some(&p),
            patient: Some("Patient/p1".into()),
            entities: vec!["ServiceRequest/s1".into()],
            decision: Some(&d),
            permitted: false,
            description: d.reason.clone(),
            at: Utc::now(),
            request_id: Some("r-1".into()),
        });
        assert_eq!(e["outcome"], "4");
        assert_eq!(e["action"], "R");
        assert_eq!(
            e["agent"][0]["who"]["identifier"]["value"],
            "service:sheffield-whs"
        );
        assert_eq!(e["agent"][1]["who"]["identifier"]["value"], "sheffield-whs");
        let whats: Vec<&str> = e["entity"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["what"]["reference"].as_str())
            .collect();
        assert_eq!(whats, ["Patient/p1", "ServiceRequest/s1", "Consent/c1"]);
        assert_eq!(e["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
        let index = crate::fhir::search::index_entries(&e);
        assert!(
            index
                .iter()
                .any(|i| i.param == "patient" && i.value == "Patient/p1")
        );
        assert!(
            index
                .iter()
                .any(|i| i.param == "agent" && i.value == "sheffield-whs")
        );
        crate::fhir::resource::parse_strict(e.to_string().as_bytes()).unwrap();
    }
}
