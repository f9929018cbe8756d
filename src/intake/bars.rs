//! BaRS `servicerequest-request` message Bundles (`POST /fhir/$process-message`): strict FHIR
//! parsing, the message rules, normalisation of older UK Core forms, and conversion into the same
//! submission the practice format produces.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::IntakeContext;
use super::message_definition;
use super::practice::{MAX_AGE_YEARS, age_on};
use super::submission::{
    Submission, SubmissionEntry, SubmissionKey, SubmissionKind, content_hash, match_identifier,
};
use crate::consent;
use crate::fhir::identifiers;
use crate::fhir::resource::{
    claim_profile, parse_strict, references, resource_type, rewrite_strings,
};
use crate::fhir::systems::{self, profile};
use crate::fhir::{Issue, IssueType, Issues};
use crate::services::Service;

/// What a valid message asks.
#[derive(Debug, Clone, PartialEq)]
pub enum BarsMessage {
    /// A new referral (reason `new`), to store.
    Referral(Submission),
    /// The referrer cancels a referral it sent (reason `update` or `delete`, the ServiceRequest
    /// `revoked` or `entered-in-error`).
    Cancellation(Cancellation),
    /// The referrer amends a referral it sent (reason `update`, the ServiceRequest `active`).
    Amendment(Amendment),
}

/// A referrer's amendment of a referral it sent: the referral restated whole with reason
/// `update` (BaRS: "'update' for an update"), mapped as a new referral would be.
#[derive(Debug, Clone, PartialEq)]
pub struct Amendment {
    /// Which referral, as a cancellation names it.
    pub referral: NamedReferral,
    /// The referral as restated.
    pub submission: Submission,
}

/// A referral a message about it names: by the sender, the service it went to, the write-once
/// key it was stored under, and the person it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedReferral {
    /// `system|value` of the sending practice, and of the service the message is addressed to.
    pub practice: String,
    pub service: String,
    /// The write-once key the referral was stored under: its new message was keyed by the
    /// sender and the ServiceRequest's identifier, as this one is.
    pub key: SubmissionKey,
    /// The person's NHS number as the message states it: it must be the referral's.
    pub nhs_number: Option<String>,
}

/// A referrer's cancellation of a referral it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub referral: NamedReferral,
    pub withdrawal: crate::workflow::Withdrawal,
}

/// Why a message was refused: it is not FHIR at all (400), or it is FHIR that breaks the message
/// rules (422).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Malformed(Issues),
    Invalid(Issues),
}

/// Retired STU1 verification codes and their England equivalents.
const RETIRED_VERIFICATION: &[(&str, &str)] = &[
    ("number-present-and-verified", "01"),
    ("number-present-but-not-traced", "02"),
    ("trace-required", "03"),
    ("trace-attempted-no-match-or-multiple-match-found", "04"),
    ("trace-needs-to-be-resolved", "05"),
    ("trace-in-progress", "06"),
    ("number-not-present-and-trace-not-required", "07"),
    ("trace-postponed", "08"),
];

/// Types the MessageDefinition lists or FHIR allows but that the gateway only ever writes
/// itself: the workflow (Task), letters and their delivery (Communication, Composition,
/// DocumentReference), the audit trail and its own provenance.
pub const GATEWAY_AUTHORED: &[&str] = &[
    "AuditEvent",
    "Task",
    "Communication",
    "Composition",
    "DocumentReference",
    "Provenance",
    "Binary",
];

/// Validates and normalises a BaRS referral message. `body` is the raw request (for strict
/// parsing with line numbers); `bundle` the same body as JSON.
pub fn validate(
    body: &[u8],
    bundle: &Value,
    ctx: &IntakeContext,
) -> Result<BarsMessage, Rejection> {
    let mut breaches = Vec::new();
    crate::fhir::resource::json_rule_violations(bundle, "Bundle", &mut breaches);
    if !breaches.is_empty() {
        return Err(Rejection::Malformed(
            breaches
                .into_iter()
                .map(|(path, message)| Issue::error(IssueType::Structure, path, message))
                .collect(),
        ));
    }
    if let Err(message) = parse_strict(body) {
        return Err(Rejection::Malformed(
            Issue::general(
                IssueType::Structure,
                format!("the body is not a valid FHIR R4 resource: {message}"),
            )
            .into(),
        ));
    }
    Message::read(bundle, ctx).map_err(Rejection::Invalid)
}

struct Message<'a> {
    bundle: &'a Value,
    entries: Vec<(String, &'a Value)>,
    by_url: HashMap<&'a str, usize>,
    /// The Consent entries, by index, as read into the gateway's terms.
    consents: HashMap<usize, Value>,
    issues: Issues,
}

/// What a message asks, read from its reason and its ServiceRequest's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    New,
    /// An update with the ServiceRequest still active: the referral restated, amended.
    Amend,
    Cancel(crate::workflow::Withdrawal),
}

fn at(i: usize, rest: &str) -> String {
    if rest.is_empty() {
        format!("Bundle.entry[{i}].resource")
    } else {
        format!("Bundle.entry[{i}].resource.{rest}")
    }
}

impl<'a> Message<'a> {
    fn read(bundle: &'a Value, ctx: &IntakeContext) -> Result<BarsMessage, Issues> {
        let mut m = Message {
            bundle,
            entries: Vec::new(),
            by_url: HashMap::new(),
            consents: HashMap::new(),
            issues: Issues::new(),
        };
        if resource_type(bundle) != Some("Bundle") {
            return Err(Issue::error(
                IssueType::Invalid,
                "Bundle",
                "$process-message takes a Bundle of type 'message'",
            )
            .into());
        }
        if bundle.get("type").and_then(Value::as_str) != Some("message") {
            m.issues.error(
                IssueType::Value,
                "Bundle.type",
                "Bundle.type must be 'message'",
            );
        }
        m.index_entries();
        let header = m.message_header();
        // The synchronous answer names the request by its MessageHeader's id (R4:
        // MessageHeader.response.identifier, an `id`), so the message must give it one.
        if header.is_some() && super::bars_response::request_header_id(bundle).is_none() {
            m.issues.error(
                IssueType::Required,
                "Bundle.entry[0]",
                "the MessageHeader must be identified: give it an id, or its entry a fullUrl urn:uuid:<uuid>, so the response can name the message it answers",
            );
        }
        let (sender_ods, service) = match header {
            Some(h) => (m.sender_ods(h), m.destination_service(h, ctx)),
            None => (None, None),
        };
        let focus = header.and_then(|h| m.focus(h));
        let intent = header.and_then(|h| m.intent(h, focus));
        if let (Some(h), Some(intent)) = (header, intent) {
            m.check_definition(h, intent);
        }
        match intent {
            Some(Intent::Cancel(_)) => {
                if let Some(sr) = focus {
                    m.check_cancelled_request(sr);
                }
            }
            _ => {
                if let Some(sr) = focus {
                    m.check_service_request(sr, ctx);
                }
            }
        }
        m.check_resource_types();
        m.check_patients(ctx);
        m.check_one_person(focus);
        m.check_organizations();
        m.check_references();
        if let (Some(Intent::New | Intent::Amend), Some(h), Some(sender), Some(service)) =
            (intent, header, sender_ods.as_deref(), service)
        {
            m.check_consents(h, sender, service, focus, ctx);
        }
        if !m.issues.is_empty() {
            return Err(m.issues);
        }
        let (Some(sender_ods), Some(service), Some(focus), Some(intent)) =
            (sender_ods, service, focus, intent)
        else {
            return Err(Issue::general(IssueType::Invalid, "the message could not be read").into());
        };
        Ok(match intent {
            Intent::New => BarsMessage::Referral(m.into_submission(
                &sender_ods,
                service,
                focus,
                ctx.bars_implied_direct_care,
            )),
            Intent::Amend => BarsMessage::Amendment(Amendment {
                referral: m.named_referral(&sender_ods, service, focus),
                submission: m.into_submission(
                    &sender_ods,
                    service,
                    focus,
                    ctx.bars_implied_direct_care,
                ),
            }),
            Intent::Cancel(withdrawal) => BarsMessage::Cancellation(Cancellation {
                referral: m.named_referral(&sender_ods, service, focus),
                withdrawal,
            }),
        })
    }

    /// What the message asks, from its reason and its ServiceRequest's status (BaRS Core,
    /// Cancellation: "a cancellation follows an initial request, therefore, this must always be
    /// 'update' for cancellation" and "the .status, in the request, must either be 'revoked' or
    /// 'entered-in-error'"; the same page's table, and its examples, also use 'delete', so both
    /// are taken).
    fn intent(&mut self, header: &'a Value, focus: Option<usize>) -> Option<Intent> {
        let reason = header["reason"]["coding"].as_array().and_then(|c| {
            c.iter()
                .find(|c| c["system"].as_str() == Some(systems::BARS_MESSAGE_REASON))
        });
        let status = focus.and_then(|i| self.entries[i].1["status"].as_str());
        let withdrawal = status.and_then(crate::workflow::Withdrawal::from_status);
        match (reason.and_then(|c| c["code"].as_str()), withdrawal) {
            (Some("new"), _) => Some(Intent::New),
            (Some("update" | "delete"), Some(w)) => Some(Intent::Cancel(w)),
            (Some("update"), None) if status == Some("active") => Some(Intent::Amend),
            // Another status is refused where the ServiceRequest is checked.
            (Some("update"), None) if focus.is_some() => None,
            (Some("update"), None) => {
                self.issues.error(IssueType::Required, at(0, "focus"), "an update names the ServiceRequest it restates (amended, 'active') or cancels ('revoked' or 'entered-in-error')");
                None
            }
            (Some("delete"), None) => {
                self.issues.error(IssueType::BusinessRule, at(0, "reason"), "a cancellation (reason 'delete') must carry the ServiceRequest with status 'revoked', or 'entered-in-error' if it was sent by mistake");
                None
            }
            (Some(other), _) => {
                self.issues.error(
                    IssueType::CodeInvalid,
                    at(0, "reason"),
                    format!(
                        "'{other}' is not a code of {} (new, update, delete)",
                        systems::BARS_MESSAGE_REASON
                    ),
                );
                None
            }
            (None, _) => {
                self.issues.error(
                    IssueType::Required,
                    at(0, "reason"),
                    format!(
                        "reason must carry a code from {}",
                        systems::BARS_MESSAGE_REASON
                    ),
                );
                None
            }
        }
    }

    /// The message must name the MessageDefinition of what it asks (BaRS: "MessageHeader.definition
    /// ... MUST be populated"), and carry what that definition requires.
    fn check_definition(&mut self, header: &'a Value, intent: Intent) {
        let expected = match intent {
            Intent::New | Intent::Amend => &message_definition::REFERRAL,
            Intent::Cancel(_) => &message_definition::CANCELLED,
        };
        let Some(named) = header["definition"].as_str() else {
            self.issues.error(
                IssueType::Required,
                at(0, "definition"),
                format!(
                    "definition is required: name the MessageDefinition of the message ({})",
                    expected.url
                ),
            );
            return;
        };
        match message_definition::named(named) {
            Some(d) if d.url == expected.url => {
                // The types the gateway writes itself are refused on their own account
                // (`check_resource_types`), and a second Patient as a second person
                // (`check_one_person`).
                let mut patients = 0;
                let types: Vec<&str> = self
                    .entries
                    .iter()
                    .map(|(_, r)| resource_type(r).unwrap_or_default())
                    .map(|rt| {
                        if rt == "Patient" {
                            patients += 1;
                        }
                        let elsewhere =
                            GATEWAY_AUTHORED.contains(&rt) || (rt == "Patient" && patients > 1);
                        if elsewhere { "" } else { rt }
                    })
                    .collect();
                message_definition::check(d, &types, &mut self.issues);
            }
            Some(d) => self.issues.error(
                IssueType::BusinessRule,
                at(0, "definition"),
                format!(
                    "the message is a {} but names the {} ({}): name {}",
                    expected.title, d.title, d.url, expected.url
                ),
            ),
            None => self.issues.error(
                IssueType::NotSupported,
                at(0, "definition"),
                format!(
                    "'{named}' is not a MessageDefinition this endpoint takes: {}",
                    message_definition::TAKEN.map(|d| d.url).join(", ")
                ),
            ),
        }
    }

    fn index_entries(&mut self) {
        let Some(entries) = self.bundle.get("entry").and_then(Value::as_array) else {
            self.issues.error(
                IssueType::Required,
                "Bundle.entry",
                "the message has no entries",
            );
            return;
        };
        let mut seen = HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            let (Some(url), Some(resource)) =
                (e.get("fullUrl").and_then(Value::as_str), e.get("resource"))
            else {
                self.issues.error(
                    IssueType::Required,
                    format!("Bundle.entry[{i}]"),
                    "every entry needs a fullUrl and a resource",
                );
                continue;
            };
            if !seen.insert(url) {
                self.issues.error(
                    IssueType::Duplicate,
                    format!("Bundle.entry[{i}].fullUrl"),
                    format!("fullUrl '{url}' appears more than once"),
                );
                continue;
            }
            self.by_url.insert(url, self.entries.len());
            self.entries.push((url.to_string(), resource));
        }
    }

    /// The entry a reference points at, with its index in the Bundle.
    fn resolve(&self, reference: Option<&Value>) -> Option<(usize, &'a Value)> {
        let r = reference?.get("reference")?.as_str()?;
        self.by_url.get(r).map(|&i| (i, self.entries[i].1))
    }

    fn message_header(&mut self) -> Option<&'a Value> {
        let first = self.entries.first().map(|(_, r)| *r);
        let Some(h) = first.filter(|r| resource_type(r) == Some("MessageHeader")) else {
            self.issues.error(
                IssueType::Structure,
                "Bundle.entry[0].resource",
                "the first entry of a message must be its MessageHeader",
            );
            return None;
        };
        let event = h.get("eventCoding");
        let system = event.and_then(|e| e.get("system")).and_then(Value::as_str);
        let code = event.and_then(|e| e.get("code")).and_then(Value::as_str);
        if system != Some(systems::BARS_MESSAGE_EVENTS) || code.is_none() {
            self.issues.error(
                IssueType::Value,
                at(0, "eventCoding"),
                format!("eventCoding must be from {}", systems::BARS_MESSAGE_EVENTS),
            );
        } else if code != Some("servicerequest-request") {
            self.issues.error(IssueType::NotSupported, at(0, "eventCoding.code"), format!("event '{}' is not accepted here: this endpoint takes referrals (servicerequest-request)", code.unwrap_or_default()));
        }
        Some(h)
    }

    fn sender_ods(&mut self, header: &'a Value) -> Option<String> {
        let ods = self
            .resolve(header.get("sender"))
            .filter(|(_, r)| resource_type(r) == Some("Organization"))
            .and_then(|(_, org)| ods_of(org));
        if ods.is_none() {
            self.issues.error(
                IssueType::Required,
                at(0, "sender"),
                "sender must reference an Organization in the message with an ODS code",
            );
        }
        ods
    }

    fn destination_service<'c>(
        &mut self,
        header: &'a Value,
        ctx: &'c IntakeContext,
    ) -> Option<&'c Service> {
        let found = super::bars_response::addressed_service(header, ctx.services);
        if found.is_none() {
            let endpoints = super::bars_response::destination_endpoints(header);
            self.issues.error(
                IssueType::NotFound,
                at(0, "destination"),
                format!(
                    "destination endpoint {:?} is not a service this gateway receives for",
                    endpoints
                ),
            );
        }
        found
    }

    fn focus(&mut self, header: &'a Value) -> Option<usize> {
        let focus = header
            .get("focus")
            .and_then(Value::as_array)
            .and_then(|f| f.first());
        match self.resolve(focus) {
            Some((i, r)) if resource_type(r) == Some("ServiceRequest") => Some(i),
            _ => {
                self.issues.error(
                    IssueType::Invalid,
                    at(0, "focus"),
                    "focus must reference the ServiceRequest entry of the message",
                );
                None
            }
        }
    }

    fn check_service_request(&mut self, i: usize, ctx: &IntakeContext) {
        let sr = self.entries[i].1;
        match sr.get("status").and_then(Value::as_str) {
            Some("active") => {}
            other => self.issues.error(
                IssueType::BusinessRule,
                at(i, "status"),
                format!(
                    "a referral, new or amended (reason 'update'), has status 'active', not '{}'; a cancellation carries 'revoked' or 'entered-in-error'",
                    other.unwrap_or("(missing)")
                ),
            ),
        }
        match sr.get("intent").and_then(Value::as_str) {
            Some("plan" | "order" | "proposal") => {}
            other => self.issues.error(
                IssueType::Value,
                at(i, "intent"),
                format!(
                    "intent '{}' is not a referral intent (plan, order or proposal)",
                    other.unwrap_or("(missing)")
                ),
            ),
        }
        self.check_subject(i);
        match sr.get("authoredOn").and_then(Value::as_str) {
            None => self.issues.error(
                IssueType::Required,
                at(i, "authoredOn"),
                "authoredOn is required",
            ),
            Some(t) => match DateTime::parse_from_rfc3339(t) {
                Ok(t) if t.with_timezone(&Utc) > ctx.now + Duration::minutes(5) => {
                    self.issues.error(
                        IssueType::Value,
                        at(i, "authoredOn"),
                        "authoredOn is in the future",
                    )
                }
                Ok(_) => {}
                Err(_) => self.issues.error(
                    IssueType::Value,
                    at(i, "authoredOn"),
                    "authoredOn must be a date and time with a time zone",
                ),
            },
        }
        let has_identifier = sr
            .get("identifier")
            .and_then(Value::as_array)
            .is_some_and(|ids| {
                ids.iter()
                    .any(|id| id.get("value").and_then(Value::as_str).is_some())
            });
        if !has_identifier && self.bundle.get("id").and_then(Value::as_str).is_none() {
            self.issues.error(IssueType::Required, at(i, "identifier"), "the ServiceRequest needs an identifier (or the Bundle an id) so a resend is recognised");
        }
    }

    fn check_patients(&mut self, ctx: &IntakeContext) {
        for i in 0..self.entries.len() {
            let p = self.entries[i].1;
            if resource_type(p) != Some("Patient") {
                continue;
            }
            let ids = p
                .get("identifier")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let nhs: Vec<(usize, &Value)> = ids
                .iter()
                .enumerate()
                .filter(|(_, id)| {
                    id.get("system").and_then(Value::as_str) == Some(systems::NHS_NUMBER)
                })
                .collect();
            match nhs.first() {
                None => self.issues.error(
                    IssueType::Required,
                    at(i, "identifier"),
                    format!("the Patient needs an NHS number ({})", systems::NHS_NUMBER),
                ),
                Some((j, id)) => {
                    let value = id.get("value").and_then(Value::as_str).unwrap_or_default();
                    if let Err(e) = identifiers::nhs_number(value) {
                        self.issues.error(
                            IssueType::Invariant,
                            at(i, &format!("identifier[{j}].value")),
                            format!("not a valid NHS number: {e}"),
                        );
                    }
                    if let Some(code) = verification_code(id)
                        && let Err(message) = normalise_verification(code.0, code.1)
                    {
                        self.issues.error(
                            IssueType::CodeInvalid,
                            at(i, &format!("identifier[{j}].extension")),
                            message,
                        );
                    }
                }
            }
            if let Some(b) = p.get("birthDate").and_then(Value::as_str) {
                match NaiveDate::parse_from_str(b, "%Y-%m-%d") {
                    Ok(d) if d > ctx.now.date_naive() => self.issues.error(
                        IssueType::Value,
                        at(i, "birthDate"),
                        "birthDate is in the future",
                    ),
                    Ok(d) if age_on(d, ctx.now.date_naive()) > MAX_AGE_YEARS => self.issues.error(
                        IssueType::Value,
                        at(i, "birthDate"),
                        format!("birthDate gives an age over {MAX_AGE_YEARS}: check the date"),
                    ),
                    Ok(_) => {}
                    Err(_) => self.issues.error(
                        IssueType::Value,
                        at(i, "birthDate"),
                        "birthDate must be a full date (YYYY-MM-DD)",
                    ),
                }
            }
        }
    }

    /// A referral message is about one person, the focus's subject: a second Patient entry, or
    /// a record whose `subject` or `patient` is anyone but that entry, is refused. Otherwise the
    /// sender would become party to a second person, and be shown them in whichever version the
    /// referral was pinned to; and consent and eligibility could be decided for one person while
    /// the referral is stored against another.
    fn check_one_person(&mut self, focus: Option<usize>) {
        let subject = focus
            .and_then(|sr| self.resolve(self.entries[sr].1.get("subject")))
            .filter(|(_, p)| resource_type(p) == Some("Patient"))
            .map(|(i, _)| i);
        // Without one, the ServiceRequest's subject is reported by `check_service_request`, and
        // the first Patient stands for the person so that every other one is still reported.
        let first_patient = || {
            self.entries
                .iter()
                .position(|(_, r)| resource_type(r) == Some("Patient"))
        };
        let Some(person) = subject.or_else(first_patient) else {
            return; // no Patient at all: reported as the ServiceRequest's subject
        };
        let person_url = self.entries[person].0.clone();
        for i in 0..self.entries.len() {
            let resource = self.entries[i].1;
            if i == person {
                continue;
            }
            if resource_type(resource) == Some("Patient") {
                self.issues.error(
                    IssueType::BusinessRule,
                    at(i, ""),
                    format!("a referral message is about one person, the ServiceRequest's subject ({person_url}): this is a second Patient; send each person's referral as a message of its own"),
                );
                continue;
            }
            if focus == Some(i) && subject.is_none() {
                continue;
            }
            for element in ["subject", "patient"] {
                let Some(reference) = resource.get(element) else {
                    continue;
                };
                if reference.get("reference").and_then(Value::as_str) != Some(&person_url) {
                    self.issues.error(
                        IssueType::Invalid,
                        at(i, element),
                        format!("{element} must reference the message's Patient entry ({person_url}): a referral message is about that one person"),
                    );
                }
            }
        }
    }

    fn check_organizations(&mut self) {
        let service_system = systems::service_identifier_system();
        for i in 0..self.entries.len() {
            let org = self.entries[i].1;
            if resource_type(org) != Some("Organization") {
                continue;
            }
            for (j, id) in org
                .get("identifier")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let system = id.get("system").and_then(Value::as_str);
                if system == Some(service_system.as_str()) {
                    self.issues.error(
                        IssueType::BusinessRule,
                        at(i, &format!("identifier[{j}].system")),
                        format!("{service_system} identifies the gateway's own services: the gateway states the service a message is addressed to from its configuration, so a message cannot name an Organization by it; leave this identifier out"),
                    );
                }
                if matches!(
                    system,
                    Some(
                        systems::ODS_ORGANIZATION
                            | systems::ODS_ORGANIZATION_LOWERCASE
                            | systems::ODS_SITE
                    )
                ) {
                    let value = id.get("value").and_then(Value::as_str).unwrap_or_default();
                    if !identifiers::is_ods_code(value) {
                        self.issues.error(IssueType::Value, at(i, &format!("identifier[{j}].value")), format!("'{value}' is not an ODS code (3 to 9 upper-case letters and digits)"));
                    }
                }
            }
        }
    }

    /// A message carries none of the resource types the gateway itself authors, although the
    /// MessageDefinition lists some: they would be stored as if the gateway or the service had
    /// written them (an AuditEvent, a workflow Task, a letter). What else it may carry is its
    /// MessageDefinition's to say ([`Message::check_definition`]).
    fn check_resource_types(&mut self) {
        for (i, (_, resource)) in self.entries.iter().enumerate() {
            let rt = resource_type(resource).unwrap_or_default();
            if GATEWAY_AUTHORED.contains(&rt) {
                self.issues.error(
                    IssueType::NotSupported,
                    at(i, "resourceType"),
                    format!("a referral message cannot carry a {rt}: the gateway and the service record {rt}s themselves"),
                );
            }
        }
    }

    /// References between entries must resolve inside the message: the gateway cannot follow
    /// references to the sender's own server.
    fn check_references(&mut self) {
        for i in 0..self.entries.len() {
            for r in references(self.entries[i].1) {
                if !self.by_url.contains_key(r) && !r.starts_with('#') {
                    self.issues.error(
                        IssueType::NotFound,
                        at(i, ""),
                        format!("reference '{r}' does not resolve to an entry of the message"),
                    );
                }
            }
        }
    }

    /// Each Consent is read as the gateway's consent model reads it, after standard R4 terms
    /// are translated ([`consent::standard`]): a Consent the model cannot read would permit
    /// nothing, and the sender should hear why rather than that no consent was found. A BaRS
    /// implied direct-care Consent without provisions is left to the admission's policy.
    fn check_consents(
        &mut self,
        header: &'a Value,
        sender_ods: &str,
        service: &Service,
        focus: Option<usize>,
        ctx: &IntakeContext,
    ) {
        let reference_of = |v: &Value| v["reference"].as_str().map(str::to_string);
        // The Organization the message is addressed to: the receiver of the destination whose
        // endpoint named the service, and the referral's performer (which intake replaces with
        // the service). No other destination or performer is taken for the service.
        let receiving: Vec<String> = header["destination"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["endpoint"].as_str().is_some()
                    && d["endpoint"].as_str() == service.bars_endpoint.as_deref()
            })
            .filter_map(|d| reference_of(&d["receiver"]))
            .chain(focus.and_then(|i| reference_of(&self.entries[i].1["performer"][0])))
            .collect();
        let referring = [(
            sender_ods.to_string(),
            reference_of(&header["sender"])
                .into_iter()
                .collect::<Vec<_>>(),
        )];
        let parties = consent::standard::Parties {
            services: ctx.services,
            receiving: Some((service, &receiving)),
            referring: &referring,
        };
        let resolve = |r: &str| self.by_url.get(r).map(|&i| self.entries[i].1.clone());
        let mut translated = HashMap::new();
        for (i, (_, resource)) in self.entries.iter().enumerate() {
            if resource_type(resource) != Some("Consent") {
                continue;
            }
            let mut c = (*resource).clone();
            if !(is_implied_direct_care(&c) && c.get("provision").is_none())
                && let Err(found) =
                    consent::standard::translate_and_read(&mut c, &at(i, ""), &parties, &resolve)
            {
                self.issues.extend(found);
            }
            translated.insert(i, c);
        }
        self.consents = translated;
    }

    /// The write-once key of the referral a message is about: the sender and the ServiceRequest's
    /// first identifier (else the Bundle's id).
    fn submission_key(&self, sender_ods: &str, focus: usize) -> SubmissionKey {
        let sr = self.entries[focus].1;
        let value = sr
            .get("identifier")
            .and_then(Value::as_array)
            .and_then(|ids| {
                ids.iter().find_map(|id| {
                    let value = id.get("value")?.as_str()?;
                    Some(format!(
                        "{}|{value}",
                        id.get("system").and_then(Value::as_str).unwrap_or("")
                    ))
                })
            })
            .or_else(|| {
                self.bundle
                    .get("id")
                    .and_then(Value::as_str)
                    .map(|id| format!("bundle:{id}"))
            })
            .unwrap_or_default();
        SubmissionKey {
            namespace: format!("bars:{sender_ods}"),
            value,
        }
    }

    /// The ServiceRequest at entry `i` is about the message's Patient entry.
    fn check_subject(&mut self, i: usize) {
        match self.resolve(self.entries[i].1.get("subject")) {
            Some((_, p)) if resource_type(p) == Some("Patient") => {}
            _ => self.issues.error(
                IssueType::Required,
                at(i, "subject"),
                "subject must reference the Patient entry of the message",
            ),
        }
    }

    /// A cancellation names the referral by the ServiceRequest identifier it was sent with, and
    /// carries the status it is cancelled with ([`Message::intent`] read it).
    fn check_cancelled_request(&mut self, i: usize) {
        let sr = self.entries[i].1;
        let has_identifier = sr["identifier"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|id| id["value"].as_str().is_some()));
        if !has_identifier {
            self.issues.error(
                IssueType::Required,
                at(i, "identifier"),
                "a cancellation names the referral it cancels by the ServiceRequest identifier the referral was sent with",
            );
        }
        self.check_subject(i);
    }

    fn named_referral(&self, sender_ods: &str, service: &Service, focus: usize) -> NamedReferral {
        let nhs_number = self
            .resolve(self.entries[focus].1.get("subject"))
            .and_then(|(_, p)| {
                crate::fhir::resource::identifier_value(p, systems::NHS_NUMBER).map(str::to_string)
            });
        NamedReferral {
            practice: format!("{}|{sender_ods}", systems::ODS_ORGANIZATION),
            service: format!("{}|{}", systems::service_identifier_system(), service.id),
            key: self.submission_key(sender_ods, focus),
            nhs_number,
        }
    }

    fn into_submission(
        self,
        sender_ods: &str,
        service: &Service,
        focus: usize,
        implied_consent_counts: bool,
    ) -> Submission {
        let sr = self.entries[focus].1;
        let key = self.submission_key(sender_ods, focus);
        let hash = content_hash(self.bundle);

        let mut entries: Vec<SubmissionEntry> = Vec::new();
        let mut performer: Option<String> = None;
        for (i, (url, resource)) in self.entries.iter().enumerate() {
            let rt = resource_type(resource).unwrap_or_default().to_string();
            if rt == "MessageHeader" {
                continue;
            }
            let mut resource = self
                .consents
                .get(&i)
                .cloned()
                .unwrap_or_else(|| (*resource).clone());
            normalise(&mut resource);
            if i == focus {
                let request = request_message_extension(self.bundle, self.entries[0].1);
                match resource["extension"].as_array_mut() {
                    Some(extensions) => extensions.push(request),
                    None => resource["extension"] = json!([request]),
                }
                performer = resource
                    .get("performer")
                    .and_then(Value::as_array)
                    .and_then(|p| p.first())
                    .and_then(|p| p.get("reference"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            entries.push(SubmissionEntry {
                full_url: url.clone(),
                resource_type: rt,
                match_identifier: None,
                keep_existing: false,
                resource,
            });
        }
        // The ServiceRequest's performer is the configured service the message is addressed
        // to, stated as the gateway's configuration states it (as on the practice path): so reads
        // and searches by service work the same for both intake paths, and no sender's name or
        // contact details for a service reach the service Organization every referral shares.
        let service_id =
            json!({ "system": systems::service_identifier_system(), "value": service.id });
        let mut service_org = crate::intake::mapping::service_organization(service);
        claim_profile(&mut service_org, profile::ORGANIZATION);
        match performer.and_then(|p| {
            entries
                .iter_mut()
                .find(|e| e.full_url == p && e.resource_type == "Organization")
        }) {
            Some(org) => org.resource = service_org,
            None => {
                // Name-based, so the same message always normalises to the same transaction.
                let name = format!("{}/{}/service", key.namespace, key.value);
                let url = format!(
                    "urn:uuid:{}",
                    Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
                );
                entries.push(SubmissionEntry {
                    full_url: url.clone(),
                    resource_type: "Organization".into(),
                    match_identifier: None,
                    keep_existing: false,
                    resource: service_org,
                });
                let sr_url = self.entries[focus].0.clone();
                if let Some(sr) = entries.iter_mut().find(|e| e.full_url == sr_url) {
                    sr.resource["performer"] =
                        json!([{ "reference": url, "display": service.name }]);
                }
            }
        }
        for e in &mut entries {
            e.match_identifier = match_identifier(&e.resource);
        }
        // Who recorded the person's consent is the sender, whatever the message says: the
        // consent rules judge what each party may record by it.
        for e in entries.iter_mut().filter(|e| e.resource_type == "Consent") {
            e.resource["organization"] = json!([{
                "identifier": { "system": systems::ODS_ORGANIZATION, "value": sender_ods }
            }]);
        }
        if implied_consent_counts {
            for e in entries.iter_mut().filter(|e| e.resource_type == "Consent") {
                make_implied_consent_explicit(&mut e.resource, &service_id);
            }
        }
        let focus_url = self.entries[focus].0.clone();
        let subject = sr
            .get("subject")
            .and_then(|s| s.get("reference"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Submission {
            sender: crate::intake::Sender::practice(sender_ods),
            kind: SubmissionKind::Referral {
                service: format!("{}|{}", systems::service_identifier_system(), service.id),
            },
            key,
            content_hash: hash,
            entries,
            focus: focus_url,
            subject,
        }
    }
}

/// BaRS carries the person's agreement as an implied direct-care Consent (category DRC, policy
/// rule IMPLIED) without provisions. Where the deployment's IG policy accepts it, it is stored
/// with the provision it implies: the receiving service may receive and see the referral and its
/// diagnoses, for direct care. Anything else is left as sent (and so permits nothing).
fn make_implied_consent_explicit(consent: &mut Value, service_id: &Value) {
    if !is_implied_direct_care(consent) || consent.get("provision").is_some() {
        return;
    }
    consent["provision"] = crate::intake::mapping::consent_provision(
        "work-health-service",
        json!({ "identifier": service_id }),
        None,
        &["disclose", "access"],
        "TREAT",
        &["referral", "diagnosis"],
    );
}

/// The request message a referral came in, for the service's answers to name: R4
/// `MessageHeader.response.identifier` is "the MessageHeader.id of the message to which this
/// message is a response"; BaRS reads it as the request's Bundle.id, so both are kept; and BaRS
/// says to "store MessageHeader.source.endpoint" as where responses go.
fn request_message_extension(bundle: &Value, header: &Value) -> Value {
    let mut parts = Vec::new();
    if let Some(id) = super::bars_response::request_header_id(bundle) {
        parts.push(json!({ "url": "messageHeader", "valueId": id }));
    }
    if let Some(id) = bundle["id"]
        .as_str()
        .filter(|id| crate::fhir::search::is_fhir_id(id))
    {
        parts.push(json!({ "url": "bundle", "valueId": id }));
    }
    // Only a BaRS endpoint (system|id) is kept: it is repeated to the sender, never used to
    // route (the practice directory says where letters go).
    if let Some(endpoint) = header["source"]["endpoint"]
        .as_str()
        .filter(|e| identifiers::bars_endpoint(e).is_some())
    {
        parts.push(json!({ "url": "sourceEndpoint", "valueString": endpoint }));
    }
    json!({ "url": profile::whg_bars_request_extension(), "extension": parts })
}

/// A BaRS implied direct-care Consent: category DRC, policy rule IMPLIED.
fn is_implied_direct_care(consent: &Value) -> bool {
    let is_drc = consent["category"].as_array().is_some_and(|cats| {
        cats.iter().any(|c| {
            c["coding"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|x| x["system"] == systems::CONSENT_CATEGORY_BARS && x["code"] == "DRC")
            })
        })
    });
    let implied = consent["policyRule"]["coding"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|x| x["code"] == "IMPLIED"));
    is_drc && implied
}

fn ods_of(org: &Value) -> Option<String> {
    org.get("identifier")?.as_array()?.iter().find_map(|id| {
        let system = id.get("system")?.as_str()?;
        matches!(
            system,
            systems::ODS_ORGANIZATION | systems::ODS_ORGANIZATION_LOWERCASE
        )
        .then(|| id.get("value")?.as_str().map(str::to_string))
        .flatten()
    })
}

/// `(system, code)` of an NHS number identifier's verification status extension.
fn verification_code(identifier: &Value) -> Option<(&str, &str)> {
    identifier
        .get("extension")?
        .as_array()?
        .iter()
        .find_map(|ext| {
            if ext.get("url")?.as_str()? != systems::NHS_NUMBER_VERIFICATION_EXT {
                return None;
            }
            let coding = ext
                .get("valueCodeableConcept")?
                .get("coding")?
                .as_array()?
                .first()?;
            Some((
                coding.get("system")?.as_str()?,
                coding.get("code")?.as_str()?,
            ))
        })
}

/// The England code for a verification status in either the current or the retired code system.
fn normalise_verification(system: &str, code: &str) -> Result<&'static str, String> {
    let found = match system {
        systems::NHS_NUMBER_VERIFICATION_ENGLAND => {
            crate::fhir::terminology::nhs_number_verification_code(code)
        }
        systems::NHS_NUMBER_VERIFICATION_RETIRED => RETIRED_VERIFICATION
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, e)| *e),
        other => {
            return Err(format!(
                "verification status system '{other}' is not known; use {}",
                systems::NHS_NUMBER_VERIFICATION_ENGLAND
            ));
        }
    };
    found.ok_or_else(|| format!("'{code}' is not a code of {system}"))
}

/// Rewrites accepted older forms to the canonical ones and claims UK Core profiles. A tag only
/// the gateway may set (who wrote a record) is removed.
fn normalise(resource: &mut Value) {
    crate::consent::strip_origin_tags(resource);
    let gateway_authored = profile::gateway_authored_extensions();
    if let Some(extensions) = resource.get_mut("extension").and_then(Value::as_array_mut) {
        extensions.retain(|e| {
            !e["url"]
                .as_str()
                .is_some_and(|url| gateway_authored.iter().any(|g| g == url))
        });
    }
    if let Some(ids) = resource.get_mut("identifier").and_then(Value::as_array_mut) {
        for id in ids {
            let Some((system, code)) = verification_code(id) else {
                continue;
            };
            let Ok(england) = normalise_verification(system, code) else {
                continue;
            };
            let Some(coding) = crate::fhir::terminology::nhs_number_verification(england) else {
                continue;
            };
            if let Some(exts) = id.get_mut("extension").and_then(Value::as_array_mut) {
                for ext in exts.iter_mut().filter(|e| {
                    e.get("url").and_then(Value::as_str)
                        == Some(systems::NHS_NUMBER_VERIFICATION_EXT)
                }) {
                    ext["valueCodeableConcept"] = json!({ "coding": [coding.clone()] });
                }
            }
        }
    }
    // ODS identifiers appear in identifiers and inside references (e.g. generalPractitioner).
    rewrite_strings(resource, "system", &|system| {
        (system == systems::ODS_ORGANIZATION_LOWERCASE)
            .then(|| systems::ODS_ORGANIZATION.to_string())
    });
    if let Some(p) = resource_type(resource).and_then(profile::uk_core_for) {
        claim_profile(resource, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_verification_codes_map_to_england_codes() {
        assert_eq!(
            normalise_verification(
                systems::NHS_NUMBER_VERIFICATION_RETIRED,
                "number-present-and-verified"
            ),
            Ok("01")
        );
        assert_eq!(
            normalise_verification(systems::NHS_NUMBER_VERIFICATION_ENGLAND, "03"),
            Ok("03")
        );
        assert!(normalise_verification(systems::NHS_NUMBER_VERIFICATION_ENGLAND, "99").is_err());
        assert!(normalise_verification("http://example.org", "01").is_err());
    }

    #[test]
    fn normalise_rewrites_lowercase_ods_system_everywhere() {
        let mut p = json!({
            "resourceType": "Patient",
            "identifier": [{ "system": systems::NHS_NUMBER, "value": "9990000018", "extension": [{
                "url": systems::NHS_NUMBER_VERIFICATION_EXT,
                "valueCodeableConcept": { "coding": [{ "system": systems::NHS_NUMBER_VERIFICATION_RETIRED, "code": "number-present-and-verified" }] }
            }]}],
            "generalPractitioner": [{ "identifier": { "system": systems::ODS_ORGANIZATION_LOWERCASE, "value": "C88038" } }]
        });
        normalise(&mut p);
        assert_eq!(
            p["generalPractitioner"][0]["identifier"]["system"],
            systems::ODS_ORGANIZATION
        );
        let coding = &p["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0];
        assert_eq!(coding["system"], systems::NHS_NUMBER_VERIFICATION_ENGLAND);
        assert_eq!(coding["code"], "01");
        assert_eq!(p["meta"]["profile"][0], profile::PATIENT);
    }
}
