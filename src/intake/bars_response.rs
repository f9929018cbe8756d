//! The synchronous answer to a BaRS message taken at `$process-message`: a response message.
//!
//! FHIR R4 `$process-message` (http://hl7.org/fhir/R4/messageheader-operation-process-message.html):
//! the `return` is "a response message, if synchronous messaging is being used (mandatory in this
//! case)", and the BaRS API (`POST /$process-message`, `200`) answers with a `MessageBundle`.
//! A response message is a Bundle of type `message` whose MessageHeader's `response` names the
//! request (`response.identifier`, "the MessageHeader.id of the message to which this message is
//! a response") and how it went (`response.code`, `ok` here: refusals are 4xx OperationOutcomes).
//! Pure: the same request and result always give the same answer but for its timestamp.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fhir::search::{format_instant, is_fhir_id};
use crate::fhir::systems;
use crate::fhir::systems::profile;
use crate::services::Service;

/// UK Core's MessageHeader profile (2.4.0: the event, destination, sender, source and focus are
/// must-support; no other constraint on R4's).
const UK_CORE_MESSAGE_HEADER: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/UKCore-MessageHeader";

/// What the gateway did with a message, for its answer.
pub struct Accepted<'a> {
    /// Id of the stored ServiceRequest.
    pub service_request_id: &'a str,
    pub outcome: &'a Outcome,
    /// The stored ServiceRequest, when the sender asked for it (`Prefer: return=representation`).
    pub service_request: Option<&'a Value>,
    /// The service the message was addressed to: it sends the answer.
    pub service: Option<&'a Service>,
}

/// The configured service a message is addressed to: the one whose BaRS endpoint its
/// MessageHeader's destination names (the one rule intake and the answer both use).
pub fn addressed_service<'s>(header: &Value, services: &'s [Service]) -> Option<&'s Service> {
    let endpoints = destination_endpoints(header);
    services.iter().find(|s| {
        s.bars_endpoint
            .as_deref()
            .is_some_and(|ep| endpoints.contains(&ep))
    })
}

/// The endpoints a MessageHeader's destinations name.
pub fn destination_endpoints(header: &Value) -> Vec<&str> {
    header["destination"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["endpoint"].as_str())
        .collect()
}

/// What the request did, as the answer tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new referral stored.
    Stored,
    /// A referral received before: nothing new was stored.
    Resent,
    /// The referral cancelled (`revoked` or `entered-in-error`).
    Cancelled(&'static str),
    /// A cancellation received before: nothing changed.
    CancellationResent(&'static str),
    /// The referral amended: the ServiceRequest elements that changed.
    Amended(String),
    /// An amendment that changes nothing (received before, or restating the referral as it is).
    AmendmentResent,
}

impl Outcome {
    fn diagnostics(&self, id: &str) -> String {
        match self {
            Outcome::Amended(changed) => format!(
                "ServiceRequest/{id} amended ({changed}); the service sees the amendment with the referral"
            ),
            Outcome::AmendmentResent => {
                format!("ServiceRequest/{id} already says this; nothing changed")
            }
            Outcome::Stored => format!("referral stored as ServiceRequest/{id}"),
            Outcome::Resent => format!(
                "this referral was already received and is stored as ServiceRequest/{id}; nothing new was stored"
            ),
            Outcome::Cancelled(status) => {
                format!("ServiceRequest/{id} cancelled ({status}); the service sees it withdrawn")
            }
            Outcome::CancellationResent(status) => {
                format!("ServiceRequest/{id} was already cancelled ({status}); nothing changed")
            }
        }
    }
}

/// The id of the request's MessageHeader: its `id`, or the UUID its entry's `fullUrl` names (a
/// message's entries are usually named by `urn:uuid:` only), or lacking both the Bundle's id;
/// only a valid FHIR id (intake refuses a message without one: the response must name it).
pub fn request_header_id(request: &Value) -> Option<String> {
    named_header(request).filter(|id| is_fhir_id(id))
}

fn named_header(request: &Value) -> Option<String> {
    let entry = request.get("entry")?.get(0)?;
    let header = entry.get("resource")?;
    if header.get("resourceType")?.as_str()? != "MessageHeader" {
        return None;
    }
    header
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            entry
                .get("fullUrl")
                .and_then(Value::as_str)
                .and_then(|u| u.strip_prefix("urn:uuid:"))
                .map(str::to_string)
        })
        .or_else(|| {
            request
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
}

/// The response message for `request`, which was taken in as `accepted`. `base` is the
/// gateway's public base URL (`https://…`, without `/fhir`).
pub fn response_message(
    request: &Value,
    accepted: &Accepted<'_>,
    base: &str,
    now: DateTime<Utc>,
) -> Value {
    let request_header = &request["entry"][0]["resource"];
    let request_id = request_header_id(request).unwrap_or_default();
    // Named from the request and what it became, so a resend is answered with the same message
    // ids, and two senders' messages that share a header id never share an answer's.
    let name = |what: &str| {
        Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!(
                "{base}/fhir/$process-message/{}/{request_id}/{what}",
                accepted.service_request_id
            )
            .as_bytes(),
        )
    };
    let (header_id, outcome_id) = (name("header"), name("outcome"));
    let service_request_url = format!("{base}/fhir/ServiceRequest/{}", accepted.service_request_id);
    let diagnostics = accepted.outcome.diagnostics(accepted.service_request_id);
    let mut header = json!({
        "resourceType": "MessageHeader",
        "id": header_id.to_string(),
        "meta": { "profile": [UK_CORE_MESSAGE_HEADER] },
        // A response message carries the event of the message it answers (the one intake
        // accepts), written by the gateway rather than echoed.
        "eventCoding": {
            "system": systems::BARS_MESSAGE_EVENTS,
            "code": "servicerequest-request",
            "display": "Referral Request",
        },
        "source": {
            "name": "Work and Health Gateway",
            "software": "Work and Health Gateway",
            "version": env!("CARGO_PKG_VERSION"),
            // The endpoint the message was addressed to (the service's BaRS endpoint, which
            // intake matched to a configured service), else the gateway's own.
            "endpoint": endpoint(&request_header["destination"][0]["endpoint"])
                .unwrap_or_else(|| format!("{base}/fhir/$process-message")),
        },
        "response": {
            "identifier": request_id,
            "code": "ok",
            "details": { "reference": format!("urn:uuid:{outcome_id}") },
        },
        "focus": [{ "reference": service_request_url }],
    });
    // Back to where the request came from, when it said so in a form an endpoint takes.
    if let Some(endpoint) = endpoint(&request_header["source"]["endpoint"]) {
        header["destination"] = json!([{ "endpoint": endpoint }]);
    }
    // The answer is the service's (R4 MessageHeader.sender: "the real world sender of the
    // message"): an Organization in the message, by ODS code when it has one, else its id here.
    let sender = accepted.service.map(|service| {
        let sender_id = name("sender");
        header["sender"] = json!({
            "reference": format!("urn:uuid:{sender_id}"),
            "display": service.name,
        });
        let mut identifiers = Vec::new();
        if let Some(ods) = &service.ods_code {
            identifiers.push(json!({ "system": systems::ODS_ORGANIZATION, "value": ods }));
        }
        identifiers
            .push(json!({ "system": systems::service_identifier_system(), "value": service.id }));
        json!({
            "fullUrl": format!("urn:uuid:{sender_id}"),
            "resource": {
                "resourceType": "Organization",
                "id": sender_id.to_string(),
                "meta": { "profile": [profile::ORGANIZATION] },
                "identifier": identifiers,
                "name": service.name,
            },
        })
    });
    let outcome = json!({
        "resourceType": "OperationOutcome",
        "id": outcome_id.to_string(),
        "meta": { "profile": [profile::OPERATION_OUTCOME] },
        "issue": [{ "severity": "information", "code": "informational", "diagnostics": diagnostics }],
    });
    let mut entries = vec![
        json!({ "fullUrl": format!("urn:uuid:{header_id}"), "resource": header }),
        json!({ "fullUrl": format!("urn:uuid:{outcome_id}"), "resource": outcome }),
    ];
    if let Some(sr) = accepted.service_request {
        entries.push(json!({ "fullUrl": service_request_url, "resource": sr }));
    }
    entries.extend(sender);
    json!({
        "resourceType": "Bundle",
        "id": name("bundle").to_string(),
        "meta": { "lastUpdated": format_instant(now) },
        "type": "message",
        "timestamp": format_instant(now),
        "entry": entries,
    })
}

/// A sender's endpoint as the answer may carry it: an `http(s)` URI (BaRS also writes them as
/// `https://fhir.nhs.uk/Id/dos-service-id|<id>`) of printable characters, bounded in length.
fn endpoint(value: &Value) -> Option<String> {
    let text = value.as_str()?;
    let printable = text.chars().all(|c| c.is_ascii_graphic());
    (text.len() <= 256
        && printable
        && (text.starts_with("https://") || text.starts_with("http://")))
    .then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Value {
        serde_json::from_str(include_str!(
            "../../fixtures/messages/valid/01-bars-referral-current-forms.json"
        ))
        .unwrap()
    }

    #[test]
    fn the_answer_is_a_response_message_naming_the_request() {
        let now = "2026-12-01T10:00:00Z".parse().unwrap();
        let accepted = Accepted {
            service_request_id: "sr1",
            outcome: &Outcome::Stored,
            service_request: None,
            service: None,
        };
        let answer = response_message(&request(), &accepted, "https://whg.example", now);
        assert_eq!(answer["type"], "message");
        assert_eq!(answer["timestamp"], "2026-12-01T10:00:00.000000Z");
        let header = &answer["entry"][0]["resource"];
        assert_eq!(header["resourceType"], "MessageHeader");
        // The request's MessageHeader has no id: its entry's fullUrl names it.
        assert_eq!(
            header["response"]["identifier"],
            "00000000-0000-4000-8000-000000000001"
        );
        assert_eq!(header["response"]["code"], "ok");
        assert_eq!(header["eventCoding"]["code"], "servicerequest-request");
        assert_eq!(
            header["destination"][0]["endpoint"],
            "https://fhir.nhs.uk/Id/dos-service-id|1000000042"
        );
        assert_eq!(
            header["focus"][0]["reference"],
            "https://whg.example/fhir/ServiceRequest/sr1"
        );
        assert_eq!(
            header["source"]["endpoint"], "https://fhir.nhs.uk/Id/dos-service-id|2000100001",
            "the endpoint the message was addressed to"
        );
        // The details it refers to are in the message.
        let details = header["response"]["details"]["reference"].as_str().unwrap();
        assert_eq!(answer["entry"][1]["fullUrl"], details);
        assert_eq!(
            answer["entry"][1]["resource"]["resourceType"],
            "OperationOutcome"
        );
        assert_eq!(answer["entry"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_service_addressed_sends_the_answer() {
        let services: Vec<Service> = vec![Service {
            id: "sheffield-whs".into(),
            name: "Sheffield Work and Health Service".into(),
            ods_code: Some("8JK62".into()),
            bars_endpoint: Some("https://fhir.nhs.uk/Id/dos-service-id|2000100001".into()),
            prompts: Vec::new(),
            eligibility: None,
            commissioners: Vec::new(),
            duty_contact: None,
            public_contact: None,
            referral_routes: vec!["gp".into()],
        }];
        let r = request();
        let service = addressed_service(&r["entry"][0]["resource"], &services);
        assert_eq!(service.map(|s| s.id.as_str()), Some("sheffield-whs"));
        let accepted = Accepted {
            service_request_id: "sr1",
            outcome: &Outcome::Stored,
            service_request: None,
            service,
        };
        let answer = response_message(&r, &accepted, "https://whg.example", Utc::now());
        let header = &answer["entry"][0]["resource"];
        let sender = header["sender"]["reference"].as_str().unwrap();
        let org = answer["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["fullUrl"] == sender)
            .expect("the sender is in the message");
        assert_eq!(org["resource"]["resourceType"], "Organization");
        assert_eq!(org["resource"]["identifier"][0]["value"], "8JK62");
        assert_eq!(org["resource"]["identifier"][1]["value"], "sheffield-whs");
        assert_eq!(org["resource"]["name"], "Sheffield Work and Health Service");
        // A message addressed to no configured service names no sender (intake refuses it).
        let mut elsewhere = r.clone();
        elsewhere["entry"][0]["resource"]["destination"][0]["endpoint"] =
            json!("https://elsewhere.example");
        assert!(addressed_service(&elsewhere["entry"][0]["resource"], &services).is_none());
    }

    #[test]
    fn a_resend_gets_the_same_message_ids_and_says_nothing_new_was_stored() {
        let now = Utc::now();
        let first = Accepted {
            service_request_id: "sr1",
            outcome: &Outcome::Stored,
            service_request: None,
            service: None,
        };
        let again = Accepted {
            outcome: &Outcome::Resent,
            ..first
        };
        let a = response_message(&request(), &first, "https://whg.example", now);
        let b = response_message(&request(), &again, "https://whg.example", now);
        assert_eq!(a["id"], b["id"]);
        assert_eq!(a["entry"][0]["fullUrl"], b["entry"][0]["fullUrl"]);
        let said = b["entry"][1]["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap();
        assert!(said.contains("already received"), "{said}");
    }

    #[test]
    fn the_stored_referral_comes_with_the_answer_when_asked_for() {
        let sr = json!({ "resourceType": "ServiceRequest", "id": "sr1" });
        let accepted = Accepted {
            service_request_id: "sr1",
            outcome: &Outcome::Stored,
            service_request: Some(&sr),
            service: None,
        };
        let answer = response_message(&request(), &accepted, "https://whg.example", Utc::now());
        assert_eq!(answer["entry"][2]["resource"], sr);
        assert_eq!(
            answer["entry"][2]["fullUrl"],
            answer["entry"][0]["resource"]["focus"][0]["reference"]
        );
    }

    #[test]
    fn nothing_the_sender_wrote_but_a_plain_endpoint_comes_back() {
        let mut r = request();
        r["entry"][0]["resource"]["eventCoding"]["extension"] = json!([{ "url": "x" }]);
        r["entry"][0]["resource"]["source"]["endpoint"] =
            json!("https://a.example/\nX-Injected: 1");
        let accepted = Accepted {
            service_request_id: "sr1",
            outcome: &Outcome::Stored,
            service_request: None,
            service: None,
        };
        let answer = response_message(&r, &accepted, "https://whg.example", Utc::now());
        let header = &answer["entry"][0]["resource"];
        assert!(header["eventCoding"].get("extension").is_none());
        assert!(header.get("destination").is_none(), "{header}");
    }

    #[test]
    fn a_header_named_by_no_valid_id_has_none() {
        let mut r = request();
        r["entry"][0]["fullUrl"] = json!("urn:uuid:not a uuid!");
        r["id"] = json!("also not valid!");
        assert_eq!(request_header_id(&r), None);
    }

    #[test]
    fn a_header_with_an_id_is_named_by_it() {
        let mut r = request();
        r["entry"][0]["resource"]["id"] = json!("mh-1");
        assert_eq!(request_header_id(&r).as_deref(), Some("mh-1"));
        r["entry"][0]["resource"]
            .as_object_mut()
            .unwrap()
            .remove("id");
        r["entry"][0].as_object_mut().unwrap().remove("fullUrl");
        assert_eq!(request_header_id(&r), r["id"].as_str().map(str::to_string));
    }
}
