//! The MESH channel: GP Connect Send Document. A letter goes out as an ITK3 message (STU3: a
//! MessageHeader `ITK007C` asking for both acknowledgements, and a document Bundle with a
//! CareConnect Composition, the Patient and the PDF as a Binary) to the practice's mailbox on
//! workflow `GPCONNECT_SEND_DOCUMENT`. The practice's system answers with ITK3 responses on
//! `GPCONNECT_SEND_DOCUMENT_ACK`: infrastructure (20013 received, other 1xxxx/2xxxx codes
//! negative) and business (30001 accepted, 30002/30003 negative), read from the gateway's inbox.
//!
//! The ITK MessageHeader's id is the letter's message id on every send, so a practice system
//! that has the letter already can tell a resend from a new letter (standards 4.1–4.3).

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Failure, Outcome};
use crate::config::{MeshConfig, MeshRoute};
use crate::fhir::identifiers::identifier_reference;
use crate::fhir::systems::{NHS_NUMBER, SNOMED};

/// CareConnect's care-setting-type extension, which CareConnect-Composition-1 slices as
/// `careSettingTypeExtension`.
const CARE_SETTING_TYPE_EXTENSION: &str =
    "https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-CareSettingType-1";

/// The care setting a work-and-health service's letter comes from: "Occupational health
/// service", a member of UK Core Care Setting Type (ValueSet UKCore-CareSettingType 3.1.0, the
/// SNOMED CT UK 'Services' refset 1127531000000102).
const CARE_SETTING_TYPE: (&str, &str) = ("310064001", "Occupational health service");

pub const WORKFLOW: &str = "GPCONNECT_SEND_DOCUMENT";
pub const ACK_WORKFLOW: &str = "GPCONNECT_SEND_DOCUMENT_ACK";
const ITK_RESPONSE_CODES: &str = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1";
const ACCEPT: &str = "application/vnd.mesh.v2+json";

/// The `Authorization` header for one MESH request: `NHSMESH mailbox:nonce:count:time:hmac`,
/// the HMAC-SHA256 (keyed with the environment's shared key) of
/// `mailbox:nonce:count:password:time`. Each header is used once (a fresh nonce each time).
pub fn authorization(
    mailbox: &str,
    password: &str,
    shared_key: &str,
    nonce: &str,
    at: DateTime<Utc>,
) -> String {
    let time = at.format("%Y%m%d%H%M").to_string();
    let count = 1;
    let mut mac = Hmac::<Sha256>::new_from_slice(shared_key.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("{mailbox}:{nonce}:{count}:{password}:{time}").as_bytes());
    let digest = hex::encode(mac.finalize().into_bytes());
    format!("NHSMESH {mailbox}:{nonce}:{count}:{time}:{digest}")
}

/// Who the letter is about, as the message and MESH's routing need it.
pub struct Person<'a> {
    pub nhs_number: &'a str,
    pub family: &'a str,
    pub given: &'a str,
    pub birth_date: &'a str,
}

/// The `mex-to` address: the practice's mailbox, or MESH's demographic routing string.
pub fn recipient(route: &MeshRoute, person: &Person) -> Result<String, String> {
    if let Some(mailbox) = &route.mailbox {
        return Ok(mailbox.clone());
    }
    if person.nhs_number.is_empty() || person.birth_date.len() != 10 || person.family.is_empty() {
        return Err(
            "MESH demographic routing needs the person's NHS number, date of birth and surname"
                .into(),
        );
    }
    Ok(format!(
        "GPPROVIDER_{}_{}_{}",
        person.nhs_number,
        person.birth_date.replace('-', ""),
        person.family.to_uppercase()
    ))
}

/// What the ITK3 message carries.
pub struct Letter<'a> {
    /// The letter's message id: the ITK MessageHeader's id on every send.
    pub message_id: &'a str,
    /// The letter's own id (the Communication's), the ITK `SenderReference`.
    pub letter_id: &'a str,
    pub timestamp: &'a str,
    pub title: &'a str,
    pub author: &'a str,
    /// `system|value` of the sending service, and its name.
    pub service: &'a str,
    pub service_name: &'a str,
    /// The service's ODS code, when it has one: GP Connect Send Document's custodian is the
    /// sending Organization by its ODS code.
    pub service_ods: Option<&'a str>,
    pub sender_mailbox: &'a str,
    pub person: Person<'a>,
    pub pdf_base64: &'a str,
}

fn uuid_for(message_id: &str, part: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{message_id}#{part}").as_bytes(),
    )
    .to_string()
}

/// The sending service's identifiers: its ODS code first when it has one (what a GP system
/// recognises a custodian by), then the gateway's own service id.
fn organisation_identifiers(l: &Letter) -> Value {
    let local = identifier_reference(l.service)["identifier"].clone();
    match l.service_ods {
        Some(ods) => json!([
            { "system": crate::fhir::systems::ODS_ORGANIZATION, "value": ods },
            local,
        ]),
        None => json!([local]),
    }
}

/// The ITK3 GP Connect Send Document message (FHIR STU3, CareConnect profiles).
pub fn itk_message(l: &Letter) -> Value {
    let org = uuid_for(l.message_id, "organization");
    let patient = uuid_for(l.message_id, "patient");
    let author = uuid_for(l.message_id, "practitioner");
    let binary = uuid_for(l.message_id, "binary");
    let composition = uuid_for(l.message_id, "composition");
    let document = uuid_for(l.message_id, "document");
    let organization = json!({
        "resourceType": "Organization",
        "id": org,
        "meta": { "profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-ITK-Header-Organization-1"] },
        "identifier": organisation_identifiers(l),
        "name": l.service_name,
    });
    let given: Vec<&str> = l.person.given.split_whitespace().collect();
    let mut patient_resource = json!({
        "resourceType": "Patient",
        "id": patient,
        "meta": { "profile": ["https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Patient-1"] },
        "identifier": [{ "system": NHS_NUMBER, "value": l.person.nhs_number }],
        "name": [{ "use": "official", "family": l.person.family, "given": given }],
    });
    if !l.person.birth_date.is_empty() {
        patient_resource["birthDate"] = json!(l.person.birth_date);
    }
    let document_bundle = json!({
        "resourceType": "Bundle",
        "id": document,
        "meta": { "profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Document-Bundle-1"] },
        "identifier": { "system": "https://tools.ietf.org/html/rfc4122", "value": document },
        "type": "document",
        "entry": [
            { "fullUrl": format!("urn:uuid:{composition}"), "resource": {
                "resourceType": "Composition",
                "id": composition,
                "meta": { "profile": ["https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Composition-1"] },
                // GP Connect Send Document: careSettingType, "a required element used to
                // represent the service that is sending the document using a SNOMED-CT code from
                // the FHIR UK Core Care Setting Type valueset".
                "extension": [{
                    "url": CARE_SETTING_TYPE_EXTENSION,
                    "valueCodeableConcept": { "coding": [{ "system": SNOMED, "code": CARE_SETTING_TYPE.0, "display": CARE_SETTING_TYPE.1 }] },
                }],
                "identifier": { "system": "https://tools.ietf.org/html/rfc4122", "value": l.letter_id },
                "status": "final",
                "type": { "coding": [{ "system": SNOMED, "code": crate::letters::DOCUMENT_TYPE.0, "display": crate::letters::DOCUMENT_TYPE.1 }] },
                "subject": { "reference": format!("urn:uuid:{patient}") },
                "date": l.timestamp,
                "author": [{ "reference": format!("urn:uuid:{author}") }],
                "title": l.title,
                "confidentiality": "N",
                "custodian": { "reference": format!("urn:uuid:{org}") },
                "section": [{
                    "title": l.title,
                    "text": { "status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">The letter is attached as a PDF.</div>" },
                    "entry": [{ "reference": format!("urn:uuid:{binary}") }],
                }],
            } },
            { "fullUrl": format!("urn:uuid:{patient}"), "resource": patient_resource },
            { "fullUrl": format!("urn:uuid:{org}"), "resource": organization },
            { "fullUrl": format!("urn:uuid:{author}"), "resource": {
                "resourceType": "Practitioner",
                "id": author,
                "meta": { "profile": ["https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Practitioner-1"] },
                "name": [{ "text": l.author }],
            } },
            { "fullUrl": format!("urn:uuid:{binary}"), "resource": {
                "resourceType": "Binary",
                "id": binary,
                "meta": { "profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Attachment-Binary-1"] },
                "contentType": "application/pdf",
                "content": l.pdf_base64,
            } },
        ],
    });
    let handling = |url: &str, value: Value| {
        let mut e = json!({ "url": url });
        if let (Some(e), Value::Object(v)) = (e.as_object_mut(), value) {
            e.extend(v);
        }
        e
    };
    json!({
        "resourceType": "Bundle",
        "id": uuid_for(l.message_id, "bundle"),
        "meta": { "profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Message-Bundle-1"] },
        "identifier": { "system": "https://tools.ietf.org/html/rfc4122", "value": uuid_for(l.message_id, "bundle") },
        "type": "message",
        "entry": [
            { "fullUrl": format!("urn:uuid:{}", l.message_id), "resource": {
                "resourceType": "MessageHeader",
                "id": l.message_id,
                "meta": { "profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/ITK-MessageHeader-2"] },
                "extension": [{
                    "url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2",
                    "extension": [
                        handling("BusAckRequested", json!({ "valueBoolean": true })),
                        handling("InfAckRequested", json!({ "valueBoolean": true })),
                        handling("RecipientType", json!({ "valueCoding": { "system": "https://fhir.nhs.uk/STU3/CodeSystem/ITK-RecipientType-1", "code": "FA", "display": "For Action" } })),
                        handling("MessageDefinition", json!({ "valueReference": { "reference": "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-GPConnectSendDocument-MessageDefinition-1" } })),
                        handling("SenderReference", json!({ "valueString": l.letter_id })),
                        handling("LocalExtension", json!({ "valueString": "None" })),
                    ],
                }],
                "event": { "system": "https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2", "code": "ITK007C", "display": "ITK GP Connect Send Document" },
                "sender": { "reference": format!("urn:uuid:{org}") },
                "timestamp": l.timestamp,
                "source": { "endpoint": l.sender_mailbox },
                "focus": [{ "reference": format!("urn:uuid:{document}") }],
            } },
            { "fullUrl": format!("urn:uuid:{org}"), "resource": organization },
            { "fullUrl": format!("urn:uuid:{document}"), "resource": document_bundle },
        ],
    })
}

/// An ITK3 acknowledgement, read from a practice's response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The id of the MessageHeader it answers (the letter's message id).
    pub answers: String,
    pub kind: AckKind,
    /// The ITK response code and its display or diagnostics.
    pub code: String,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// 20013: the practice's system has the message.
    Received,
    /// 30001: the practice's system filed it.
    Accepted,
    /// Any other infrastructure or business code: it will not be filed.
    Negative,
}

/// An ITK3 response message (STU3) with `code` (20013, 30001, or a negative code) answering the
/// message whose MessageHeader id is `original`, as the system behind mailbox `from` sends it:
/// what a practice system returns, and what [`read_ack`] reads.
pub fn itk_response(original: &str, code: &str, display: &str, from: &str) -> Value {
    let positive = code == "20013" || code == "30001";
    let header_id = uuid::Uuid::new_v4().to_string();
    let outcome_id = uuid::Uuid::new_v4().to_string();
    serde_json::json!({
        "resourceType": "Bundle", "id": uuid::Uuid::new_v4().to_string(), "type": "message",
        "meta": { "profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Message-Bundle-1"] },
        "entry": [
            { "fullUrl": format!("urn:uuid:{header_id}"), "resource": {
                "resourceType": "MessageHeader", "id": header_id,
                "event": { "system": "https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2", "code": "ITK008M", "display": "ITK Response" },
                "response": { "identifier": original, "code": if positive { "ok" } else { "fatal-error" } },
                "source": { "endpoint": from },
                "focus": [{ "reference": format!("urn:uuid:{outcome_id}") }],
            } },
            { "fullUrl": format!("urn:uuid:{outcome_id}"), "resource": {
                "resourceType": "OperationOutcome", "id": outcome_id,
                "issue": [{
                    "severity": if positive { "information" } else { "error" },
                    "code": if positive { "informational" } else { "processing" },
                    "details": { "coding": [{ "system": ITK_RESPONSE_CODES, "code": code, "display": display }] },
                }],
            } },
        ],
    })
}

/// Reads an ITK3 response message (JSON); `None` if it is not one.
pub fn read_ack(body: &[u8]) -> Option<Ack> {
    let bundle: Value = serde_json::from_slice(body).ok()?;
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()?
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let header = resources
        .iter()
        .find(|r| r["resourceType"] == "MessageHeader")?;
    let answers = header["response"]["identifier"].as_str()?.to_string();
    let outcome = resources
        .iter()
        .find(|r| r["resourceType"] == "OperationOutcome")?;
    let codes: Vec<(String, String)> = outcome["issue"]
        .as_array()?
        .iter()
        .flat_map(|issue| {
            issue["details"]["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["system"] == ITK_RESPONSE_CODES)
                .map(move |c| {
                    let detail = issue["diagnostics"]
                        .as_str()
                        .or(c["display"].as_str())
                        .unwrap_or_default();
                    (
                        c["code"].as_str().unwrap_or_default().to_string(),
                        detail.to_string(),
                    )
                })
        })
        .collect();
    let (code, detail) = codes.first()?.clone();
    let kind = if codes.iter().all(|(c, _)| c == "30001") {
        AckKind::Accepted
    } else if codes.iter().all(|(c, _)| c == "20013") {
        AckKind::Received
    } else {
        AckKind::Negative
    };
    Some(Ack {
        answers,
        kind,
        code,
        detail,
    })
}

/// A message from the gateway's inbox.
pub struct Inbound {
    pub id: String,
    /// `DATA` or `REPORT` (MESH's own non-delivery report).
    pub message_type: String,
    pub workflow: String,
    /// The mailbox that sent it (`mex-from`), as MESH states it: MESH checks it against the
    /// sender's authenticated mailbox, the sender cannot choose it.
    pub sender: String,
    /// The sender's `mex-localid`: for a report, the letter's message id the gateway sent.
    pub local_id: String,
    /// For a report: MESH's error code (e.g. `EPL-151`, no mailbox for the practice) and text.
    pub status_code: String,
    pub status_description: String,
    /// Its size in bytes: as MESH gave it, or (read in part) at least this many.
    pub size: u64,
    /// The content, or `None` when it is larger than the gateway reads (see
    /// [`MeshClient::download`]).
    pub body: Option<Vec<u8>>,
}

/// Why an inbox message was set aside instead of being taken as an answer to a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quarantine {
    /// Larger than the configured maximum (or in several chunks): never read.
    TooLarge,
    /// On a workflow other than the acknowledgements' (`GPCONNECT_SEND_DOCUMENT_ACK`).
    UnexpectedWorkflow,
    /// Not an ITK3 response message.
    NotAnAcknowledgement,
    /// Names a message id that none of the gateway's letters has.
    AnswersNoLetter,
    /// From a mailbox other than the one the letter it names was sent to.
    WrongSender,
}

impl Quarantine {
    /// The `mesh-quarantine-reason` code, as stored and listed.
    pub fn code(self) -> &'static str {
        match self {
            Quarantine::TooLarge => "too-large",
            Quarantine::UnexpectedWorkflow => "unexpected-workflow",
            Quarantine::NotAnAcknowledgement => "not-an-acknowledgement",
            Quarantine::AnswersNoLetter => "answers-no-letter",
            Quarantine::WrongSender => "wrong-sender",
        }
    }

    /// What a reviewer reads.
    pub fn description(self) -> &'static str {
        match self {
            Quarantine::TooLarge => {
                "larger than the gateway reads from MESH; acknowledged without being read"
            }
            Quarantine::UnexpectedWorkflow => {
                "not on the acknowledgement workflow GPCONNECT_SEND_DOCUMENT_ACK"
            }
            Quarantine::NotAnAcknowledgement => "not an ITK3 response message",
            Quarantine::AnswersNoLetter => "names no letter this gateway sent",
            Quarantine::WrongSender => {
                "an acknowledgement from a mailbox the letter was not sent to; the letter is unchanged"
            }
        }
    }
}

/// How a message from the inbox is taken, before any letter is looked up: as an answer
/// (MESH's report, or an ITK3 acknowledgement) or set aside.
pub enum Reading {
    /// MESH's non-delivery report of the letter with this message id, and what MESH said.
    Report {
        answers: String,
        detail: String,
    },
    Ack(Ack),
    Quarantine(Quarantine),
}

/// Reads an inbox message as an answer to a letter, or says why it is none.
pub fn reading(inbound: &Inbound) -> Reading {
    let Some(body) = &inbound.body else {
        return Reading::Quarantine(Quarantine::TooLarge);
    };
    // Only MESH writes reports: a mailbox can send nothing but DATA.
    if inbound.message_type == "REPORT" {
        return Reading::Report {
            answers: inbound.local_id.clone(),
            // MESH's code and text are remote text: bounded and cleaned, and kept only in the
            // delivery record (never logged).
            detail: super::Failure::new(format!(
                "MESH could not deliver the letter ({})",
                crate::outbound::cleaned_remote_text(&inbound.status_code, 40)
            ))
            .with_remote(&inbound.status_description)
            .detail(),
        };
    }
    if inbound.workflow != ACK_WORKFLOW {
        return Reading::Quarantine(Quarantine::UnexpectedWorkflow);
    }
    match read_ack(body) {
        Some(ack) => Reading::Ack(ack),
        None => Reading::Quarantine(Quarantine::NotAnAcknowledgement),
    }
}

/// Whether `sender` is the mailbox a letter went to. MESH mailbox ids are case-insensitive.
pub fn is_recipient(sender: &str, recipient: &str) -> bool {
    !sender.is_empty() && sender.eq_ignore_ascii_case(recipient)
}

/// `text` as it may go into a log line or an audit description: a MESH-style identifier
/// (letters, digits, `_ - . :`, at most 64), or a placeholder. Header values come from outside.
pub fn plain(text: &str) -> &str {
    let fits = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if fits { text } else { "(not shown)" }
}

/// A MESH mailbox client.
pub struct MeshClient {
    http: reqwest::Client,
    url: String,
    mailbox: String,
    password: String,
    shared_key: String,
}

impl MeshClient {
    /// A client for the configured mailbox: reads its secrets and, when given, its TLS
    /// certificate, key and CA.
    pub fn new(config: &MeshConfig, timeout: Duration) -> Result<MeshClient, String> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        // Redirects are not followed: a letter goes to the configured MESH server only.
        let mut http = crate::outbound::builder(timeout);
        if let (Some(cert), Some(key)) = (&config.client_cert, &config.client_key) {
            let pem = format!("{}\n{}", read(cert)?, read(key)?);
            let identity = reqwest::Identity::from_pem(pem.as_bytes())
                .map_err(|e| format!("the MESH client certificate: {e}"))?;
            http = http.identity(identity);
        }
        if let Some(ca) = &config.ca_cert {
            let ca = reqwest::Certificate::from_pem(read(ca)?.as_bytes())
                .map_err(|e| format!("the MESH CA certificate: {e}"))?;
            http = http.add_root_certificate(ca);
        }
        Ok(MeshClient {
            http: http.build().map_err(|e| e.to_string())?,
            url: config.url.trim_end_matches('/').to_string(),
            mailbox: config.mailbox.clone(),
            password: read(&config.password_file)?,
            shared_key: read(&config.shared_key_file)?,
        })
    }

    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    fn auth(&self) -> String {
        authorization(
            &self.mailbox,
            &self.password,
            &self.shared_key,
            &uuid::Uuid::new_v4().to_string(),
            Utc::now(),
        )
    }

    fn path(&self, rest: &str) -> String {
        format!("{}/messageexchange/{}{rest}", self.url, self.mailbox)
    }

    /// Sends one message; `Outcome::Sent` with MESH's message id, or what went wrong.
    pub async fn send(&self, to: &str, subject: &str, local_id: &str, body: &Value) -> Outcome {
        self.send_on(WORKFLOW, to, subject, local_id, body).await
    }

    /// Sends one message on `workflow` (a practice system answers on [`ACK_WORKFLOW`]).
    pub async fn send_on(
        &self,
        workflow: &str,
        to: &str,
        subject: &str,
        local_id: &str,
        body: &Value,
    ) -> Outcome {
        let response = self
            .http
            .post(self.path("/outbox"))
            .header("authorization", self.auth())
            .header("accept", ACCEPT)
            .header("content-type", "application/fhir+json")
            .header("mex-from", &self.mailbox)
            .header("mex-to", to)
            .header("mex-workflowid", workflow)
            .header("mex-subject", subject)
            .header("mex-localid", local_id)
            .header("mex-filename", format!("{local_id}.json"))
            .body(body.to_string())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    error: Failure::new(format!("MESH: {}", super::fhir::describe(&e).reason)),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let text = crate::outbound::read_bounded(response, super::MAX_ANSWER_BYTES)
            .await
            .unwrap_or_default();
        if status.is_success() {
            return match serde_json::from_slice::<Value>(&text)
                .ok()
                .and_then(|v| v["message_id"].as_str().map(str::to_string))
            {
                Some(transport_id) => Outcome::Sent { transport_id },
                None => Outcome::Retry {
                    error: Failure::new("MESH accepted the message without giving its id"),
                    retry_after: None,
                },
            };
        }
        let error = Failure::new(format!("MESH HTTP {}", status.as_u16()))
            .with_remote(&String::from_utf8_lossy(&text));
        match status.as_u16() {
            // 417: MESH refuses the addressing (unknown recipient, workflow not allowed).
            400 | 403 | 417 => Outcome::Rejected { error },
            _ => Outcome::Retry {
                error,
                retry_after: None,
            },
        }
    }

    /// The ids of the messages waiting in the inbox.
    pub async fn inbox(&self) -> Result<Vec<String>, String> {
        let v: Value = self
            .http
            .get(self.path("/inbox"))
            .header("authorization", self.auth())
            .header("accept", ACCEPT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("MESH inbox: {e}"))?
            .json()
            .await
            .map_err(|e| format!("MESH inbox: {e}"))?;
        Ok(v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect())
    }

    /// Downloads a message, reading at most `max_bytes` of it. A larger one (by its
    /// Content-Length, or found so while reading) is not read further, nor is a message in more
    /// than one chunk (no acknowledgement is): its body is `None`.
    pub async fn download(&self, id: &str, max_bytes: u64) -> Result<Inbound, String> {
        let mut response = self
            .http
            .get(self.path(&format!("/inbox/{id}")))
            .header("authorization", self.auth())
            .header("accept", ACCEPT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("MESH download {id}: {e}"))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let mut inbound = Inbound {
            id: id.to_string(),
            message_type: header("mex-messagetype"),
            workflow: header("mex-workflowid"),
            sender: header("mex-from"),
            local_id: header("mex-localid"),
            status_code: header("mex-statuscode"),
            status_description: header("mex-statusdescription"),
            size: response.content_length().unwrap_or(0),
            body: None,
        };
        // `1:N`; MESH's reports, which have no content, say `1:0`.
        let chunked = header("mex-chunk-range")
            .split_once(':')
            .and_then(|(_, total)| total.trim().parse::<u32>().ok())
            .is_some_and(|total| total > 1);
        if chunked || inbound.size > max_bytes {
            // Dropping the response closes the connection: the rest is never read.
            return Ok(inbound);
        }
        let mut body = Vec::with_capacity(usize::try_from(inbound.size).unwrap_or(0));
        while let Some(part) = response
            .chunk()
            .await
            .map_err(|e| format!("MESH download {id}: {e}"))?
        {
            let read = (body.len() + part.len()) as u64;
            if read > max_bytes {
                inbound.size = inbound.size.max(read);
                return Ok(inbound);
            }
            body.extend_from_slice(&part);
        }
        inbound.size = body.len() as u64;
        inbound.body = Some(body);
        Ok(inbound)
    }

    /// The mailbox MESH delivered one of the gateway's messages to (its tracking record), for a
    /// letter MESH routed by the person's demographics; `None` if MESH names none.
    pub async fn recipient_of(&self, message_id: &str) -> Result<Option<String>, String> {
        let tracking: Value = self
            .http
            .get(self.path(&format!(
                "/outbox/tracking?messageID={}",
                form_urlencoded::byte_serialize(message_id.as_bytes()).collect::<String>()
            )))
            .header("authorization", self.auth())
            .header("accept", ACCEPT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("MESH tracking: {e}"))?
            .json()
            .await
            .map_err(|e| format!("MESH tracking: {e}"))?;
        Ok(tracking["recipient"]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(str::to_string))
    }

    /// Removes a handled message from the inbox.
    pub async fn acknowledge(&self, id: &str) -> Result<(), String> {
        self.http
            .put(self.path(&format!("/inbox/{id}/status/acknowledged")))
            .header("authorization", self.auth())
            .header("accept", ACCEPT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map(drop)
            .map_err(|e| format!("MESH acknowledge {id}: {e}"))
    }
}

/// The PDF of a stored DocumentReference, base64 as stored.
pub fn pdf_of(document: &Value) -> Option<&str> {
    document["content"][0]["attachment"]["data"].as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn authorization_matches_the_mesh_algorithm() {
        // The same inputs through Python's hmac (as mesh-sandbox checks it):
        // hmac.new(b"Banana", b"X26ABC1:nonce-1:1:password:202611241730", sha256).hexdigest()
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 17, 30, 0).unwrap();
        let header = authorization("X26ABC1", "password", "Banana", "nonce-1", at);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Banana").unwrap();
        mac.update(b"X26ABC1:nonce-1:1:password:202611241730");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            header,
            format!("NHSMESH X26ABC1:nonce-1:1:202611241730:{expected}")
        );
    }

    #[test]
    fn demographic_routing_string() {
        let person = Person {
            nhs_number: "9990000018",
            family: "Khan",
            given: "Aisha",
            birth_date: "1984-03-09",
        };
        let route = MeshRoute {
            name: None,
            mailbox: None,
        };
        assert_eq!(
            recipient(&route, &person).unwrap(),
            "GPPROVIDER_9990000018_19840309_KHAN"
        );
        let direct = MeshRoute {
            name: None,
            mailbox: Some("X26ABC2".into()),
        };
        assert_eq!(recipient(&direct, &person).unwrap(), "X26ABC2");
        let unknown = Person {
            birth_date: "",
            ..person
        };
        assert!(recipient(&route, &unknown).is_err());
    }

    fn response(code: &str) -> Vec<u8> {
        json!({ "resourceType": "Bundle", "type": "message", "entry": [
            { "resource": { "resourceType": "MessageHeader", "response": { "identifier": "m-1", "code": "ok" } } },
            { "resource": { "resourceType": "OperationOutcome", "issue": [{ "severity": "information", "code": "informational",
                "details": { "coding": [{ "system": ITK_RESPONSE_CODES, "code": code, "display": "display" }] } }] } },
        ] })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn reads_acknowledgements() {
        let ack = read_ack(&response("20013")).unwrap();
        assert_eq!((ack.answers.as_str(), ack.kind), ("m-1", AckKind::Received));
        assert_eq!(
            read_ack(&response("30001")).unwrap().kind,
            AckKind::Accepted
        );
        for negative in ["10001", "20004", "30002", "30003"] {
            assert_eq!(
                read_ack(&response(negative)).unwrap().kind,
                AckKind::Negative
            );
        }
        assert!(read_ack(b"not json").is_none());
        assert!(read_ack(br#"{"resourceType":"Bundle","entry":[]}"#).is_none());
    }

    fn inbound(message_type: &str, workflow: &str, body: Option<&[u8]>) -> Inbound {
        Inbound {
            id: "20260101000000000000_ABCDEF".into(),
            message_type: message_type.into(),
            workflow: workflow.into(),
            sender: "X26ABC2".into(),
            local_id: "m-1".into(),
            status_code: "EPL-151".into(),
            status_description: "No mailbox matched".into(),
            size: body.map_or(10_000_000, |b| b.len() as u64),
            body: body.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn inbox_messages_are_answers_or_set_aside_with_a_reason() {
        let ack = response("30001");
        let quarantined = |i: &Inbound| match reading(i) {
            Reading::Quarantine(q) => Some(q),
            _ => None,
        };
        assert!(matches!(
            reading(&inbound("DATA", ACK_WORKFLOW, Some(&ack))),
            Reading::Ack(Ack {
                kind: AckKind::Accepted,
                ..
            })
        ));
        assert!(matches!(
            reading(&inbound("REPORT", WORKFLOW, Some(b""))),
            Reading::Report { answers, detail } if answers == "m-1" && detail.contains("(EPL-151)")
        ));
        assert_eq!(
            quarantined(&inbound("DATA", ACK_WORKFLOW, None)),
            Some(Quarantine::TooLarge)
        );
        assert_eq!(
            quarantined(&inbound("REPORT", WORKFLOW, None)),
            Some(Quarantine::TooLarge),
            "nothing unread is taken as an answer"
        );
        assert_eq!(
            quarantined(&inbound("DATA", "OTHER_WORKFLOW", Some(&ack))),
            Some(Quarantine::UnexpectedWorkflow),
            "an acknowledgement on another workflow"
        );
        assert_eq!(
            quarantined(&inbound("DATA", ACK_WORKFLOW, Some(b"junk"))),
            Some(Quarantine::NotAnAcknowledgement)
        );
        let codes: std::collections::HashSet<&str> = [
            Quarantine::TooLarge,
            Quarantine::UnexpectedWorkflow,
            Quarantine::NotAnAcknowledgement,
            Quarantine::AnswersNoLetter,
            Quarantine::WrongSender,
        ]
        .iter()
        .map(|q| q.code())
        .collect();
        assert_eq!(codes.len(), 5);
    }

    #[test]
    fn only_the_recipient_mailbox_answers_and_outside_text_stays_out_of_logs() {
        assert!(is_recipient("X26ABC2", "X26ABC2"));
        assert!(is_recipient("x26abc2", "X26ABC2"));
        assert!(!is_recipient("X26ABC3", "X26ABC2"));
        assert!(!is_recipient("", ""));
        assert_eq!(
            plain("GPCONNECT_SEND_DOCUMENT_ACK"),
            "GPCONNECT_SEND_DOCUMENT_ACK"
        );
        assert_eq!(plain("X26ABC1\nforged log line"), "(not shown)");
        assert_eq!(plain(&"A".repeat(65)), "(not shown)");
        assert_eq!(plain(""), "(not shown)");
    }

    #[test]
    fn the_message_asks_for_both_acknowledgements_and_carries_the_pdf() {
        let m = itk_message(&Letter {
            message_id: "m-1",
            letter_id: "l-1",
            timestamp: "2026-11-24T17:30:00Z",
            title: "Feedback",
            author: "Sam Patel",
            service: "https://fhir.work-health-gateway.org/Id/service|sheffield-whs",
            service_name: "Sheffield Work and Health Service",
            service_ods: Some("RHQ01"),
            sender_mailbox: "X26ABC1",
            person: Person {
                nhs_number: "9990000018",
                family: "Khan",
                given: "Aisha",
                birth_date: "1984-03-09",
            },
            pdf_base64: "JVBERi0=",
        });
        let header = &m["entry"][0]["resource"];
        assert_eq!(header["id"], "m-1");
        assert_eq!(header["event"]["code"], "ITK007C");
        let handling = header["extension"][0]["extension"].as_array().unwrap();
        assert_eq!(handling[0]["valueBoolean"], true);
        assert_eq!(handling[1]["valueBoolean"], true);
        let document = &m["entry"][2]["resource"];
        assert_eq!(document["type"], "document");
        let composition = &document["entry"][0]["resource"];
        assert_eq!(
            composition["extension"][0]["url"],
            "https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-CareSettingType-1"
        );
        assert_eq!(
            composition["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
            "310064001"
        );
        // GP Connect Send Document: the custodian is the sending Organization by its ODS code.
        let custodian = &document["entry"][2]["resource"];
        assert_eq!(custodian["resourceType"], "Organization");
        assert_eq!(
            custodian["identifier"][0]["system"],
            "https://fhir.nhs.uk/Id/ods-organization-code"
        );
        assert_eq!(custodian["identifier"][0]["value"], "RHQ01");
        let binary = &document["entry"][4]["resource"];
        assert_eq!(
            (binary["contentType"].as_str(), binary["content"].as_str()),
            (Some("application/pdf"), Some("JVBERi0="))
        );
    }
}
