//! What an intake path hands the store: a FHIR transaction's entries plus the write-once key that
//! makes a resend idempotent.

use crate::caller::Role;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fhir::resource::{identifier_value, resource_type};
use crate::fhir::systems;

/// Write-once identity of a submission: the sender's namespace (e.g. `practice:C88038`) and its
/// own id for the referral. Unique in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubmissionKey {
    pub namespace: String,
    pub value: String,
}

/// One resource to store. References to other entries use their `full_url` (`urn:uuid:…`).
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionEntry {
    pub full_url: String,
    pub resource_type: String,
    pub resource: Value,
    /// Resources that exist once across referrals (a person, an organisation, a clinician) are
    /// matched by this identifier: an existing one is updated rather than duplicated.
    pub match_identifier: Option<(String, String)>,
    /// A matched resource is reused as stored, never updated (`ifNoneExist`): a fit note's
    /// sparse person details must not replace a referral's full ones.
    pub keep_existing: bool,
}

/// What a submission is, with what the store records about it beside its resources.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmissionKind {
    /// A referral to a service (`system|value` of its identifier): the tenancy every later read
    /// is checked against.
    Referral { service: String },
    /// A fit note; `reference` is the Observation's `fullUrl`.
    FitNote(crate::fit_notes::FitNoteFacts),
}

impl SubmissionKind {
    /// The type of the submission's focal resource.
    pub fn focus_type(&self) -> &'static str {
        match self {
            SubmissionKind::Referral { .. } => "ServiceRequest",
            SubmissionKind::FitNote(_) => "Observation",
        }
    }

    /// What the submission is, in words for messages.
    pub fn noun(&self) -> &'static str {
        match self {
            SubmissionKind::Referral { .. } => "referral",
            SubmissionKind::FitNote(_) => "fit note",
        }
    }
}

/// Who sent a submission, and so who is party to it: the tenancy every later read is checked
/// against is the sender's and the receiving service's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A referring organisation's system sending as itself (`system|value` of the
    /// organisation): a GP practice (an ODS code), or a referrer of another kind (its identifier
    /// in the gateway's referrer or employer system, `Principal::new`). It reads back what it
    /// sent.
    Organisation {
        /// The kind of referrer it is (`Role::refers`), as what it sent says.
        role: Role,
        organisation: String,
    },
    /// The person themselves, through the public self-referral form (`/refer`). No organisation
    /// is party to what they send: the GP practice they name is not (it did not refer them, and
    /// is told only what the person's consent to feedback lets a letter carry), and the form
    /// reads nothing back.
    Person,
}

impl Sender {
    /// A GP practice sending as itself (`system|value`, by its ODS code).
    pub fn practice(ods_code: &str) -> Sender {
        Sender::Organisation {
            role: Role::Practice,
            organisation: format!("{}|{ods_code}", crate::fhir::systems::ODS_ORGANIZATION),
        }
    }

    /// `system|value` of the sending organisation, of whatever kind; none when the person
    /// referred themselves. The party the submission's records belong to.
    pub fn organisation(&self) -> Option<&str> {
        match self {
            Sender::Organisation { organisation, .. } => Some(organisation),
            Sender::Person => None,
        }
    }

    /// `system|value` of the sending GP practice: the person's own practice, which the rules
    /// about where they live and their fit notes read; none for a referrer of another kind or
    /// the person.
    pub fn gp_practice(&self) -> Option<&str> {
        match self {
            Sender::Organisation {
                role: Role::Practice,
                organisation,
            } => Some(organisation),
            _ => None,
        }
    }

    /// Who the store records as having stated what this sender sends (see
    /// `store::plan::restates`): the organisation's `system|value`, or `person` for the person
    /// themselves — not an organisation identifier, so it never passes for a practice's, and
    /// not the gateway's empty statement.
    pub fn stated_by(&self) -> String {
        match self {
            Sender::Organisation { organisation, .. } => organisation.clone(),
            Sender::Person => "person".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub key: SubmissionKey,
    pub sender: Sender,
    pub kind: SubmissionKind,
    /// Hash of the sender's content: a resend with the same key must carry the same hash.
    pub content_hash: String,
    pub entries: Vec<SubmissionEntry>,
    /// `full_url` of the ServiceRequest the submission is about.
    pub focus: String,
    /// `full_url` of the Patient entry the submission is about: the focus's `subject`. The record
    /// is stored against this person, pinned to the version of them this entry states, and its
    /// consent and eligibility are decided for them; a submission carries no other Patient.
    pub subject: String,
}

impl Submission {
    /// The service a referral is addressed to, among `services`; none for a fit note, or a
    /// service this gateway does not run.
    pub fn target_service<'a>(
        &self,
        services: &'a [crate::services::Service],
    ) -> Option<&'a crate::services::Service> {
        match &self.kind {
            SubmissionKind::Referral { service } => service
                .split_once('|')
                .and_then(|(_, id)| crate::services::by_id(services, id)),
            SubmissionKind::FitNote(_) => None,
        }
    }

    /// Builds a submission from a FHIR transaction Bundle whose entries carry `fullUrl`s,
    /// taking the resources out of it rather than copying them; `None` unless its focus has a
    /// `subject` and it is [about one person](Submission::is_about_one_person).
    pub fn from_transaction(
        key: SubmissionKey,
        sender: Sender,
        kind: SubmissionKind,
        content_hash: String,
        bundle: Value,
    ) -> Option<Self> {
        let Value::Object(mut bundle) = bundle else {
            return None;
        };
        let Value::Array(raw_entries) = bundle.remove("entry")? else {
            return None;
        };
        let entries: Vec<SubmissionEntry> = raw_entries
            .into_iter()
            .map(|e| {
                let Value::Object(mut e) = e else { return None };
                let full_url = e.get("fullUrl")?.as_str()?.to_string();
                let resource = e.remove("resource")?;
                let keep_existing = e
                    .get("request")
                    .is_some_and(|r| r.get("ifNoneExist").is_some());
                Some(SubmissionEntry {
                    full_url,
                    keep_existing,
                    resource_type: resource_type(&resource)?.to_string(),
                    match_identifier: match_identifier(&resource),
                    resource,
                })
            })
            .collect::<Option<_>>()?;
        let focus = entries
            .iter()
            .find(|e| e.resource_type == kind.focus_type())?;
        let subject = focus.resource.get("subject")?.get("reference")?.as_str()?;
        let (focus, subject) = (focus.full_url.clone(), subject.to_string());
        let submission = Submission {
            key,
            sender,
            kind,
            content_hash,
            entries,
            focus,
            subject,
        };
        submission.is_about_one_person().then_some(submission)
    }

    /// The Patient entry the submission is about (see [`Submission::subject`]).
    pub fn subject_entry(&self) -> Option<&SubmissionEntry> {
        self.entries
            .iter()
            .find(|e| e.full_url == self.subject && e.resource_type == "Patient")
    }

    /// Whether the submission is about exactly one person: its subject is a Patient entry and no
    /// other entry is a Patient. Another Patient would make its sender party to a second person
    /// (and show them that person's details in the version the subject was pinned to).
    pub fn is_about_one_person(&self) -> bool {
        self.subject_entry().is_some()
            && self
                .entries
                .iter()
                .all(|e| e.resource_type != "Patient" || e.full_url == self.subject)
    }

    /// When the submission was authored (a referral's `authoredOn`, a fit note's `issued`), as
    /// fixed-width UTC text (comparable as text); empty when the focus has neither.
    pub fn source_time(&self) -> String {
        self.entries
            .iter()
            .find(|e| e.full_url == self.focus)
            .and_then(|e| {
                let r = &e.resource;
                r.get("authoredOn").or_else(|| r.get("issued"))?.as_str()
            })
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| crate::fhir::search::format_instant(t.with_timezone(&chrono::Utc)))
            .unwrap_or_default()
    }

    /// The submission as the FHIR transaction Bundle it stands for.
    pub fn transaction_bundle(&self) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut entry = serde_json::Map::new();
                entry.insert("fullUrl".into(), Value::String(e.full_url.clone()));
                entry.insert("resource".into(), e.resource.clone());
                entry.insert(
                    "request".into(),
                    transaction_request(
                        &e.resource_type,
                        e.match_identifier.as_ref(),
                        e.keep_existing,
                    ),
                );
                Value::Object(entry)
            })
            .collect();
        serde_json::json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
    }
}

/// The `request` of a transaction entry: for a shared resource a conditional update on the
/// matching identifier, or a conditional create when an existing one is kept as it is; a create
/// otherwise.
pub fn transaction_request(
    resource_type: &str,
    match_identifier: Option<&(String, String)>,
    keep_existing: bool,
) -> Value {
    match match_identifier {
        Some((system, value)) if keep_existing => serde_json::json!({
            "method": "POST",
            "url": resource_type,
            "ifNoneExist": format!("identifier={system}|{value}"),
        }),
        Some((system, value)) => {
            serde_json::json!({ "method": "PUT", "url": format!("{resource_type}?identifier={system}|{value}") })
        }
        None => serde_json::json!({ "method": "POST", "url": resource_type }),
    }
}

/// The identifier by which a resource is the same resource across referrals, if it is shared:
/// a Patient by NHS number, an Organization by ODS code or gateway service id, a Practitioner by
/// professional registration. Everything else belongs to one referral.
pub fn match_identifier(resource: &Value) -> Option<(String, String)> {
    let systems: &[&str] = match resource_type(resource)? {
        "Patient" => &[systems::NHS_NUMBER],
        "Organization" => &[systems::ODS_ORGANIZATION, systems::ODS_SITE, "service"],
        "Practitioner" => &[systems::GMC, systems::NMC, systems::HCPC, systems::GPHC],
        _ => return None,
    };
    let service_system = systems::service_identifier_system();
    systems.iter().find_map(|s| {
        let system = if *s == "service" {
            service_system.as_str()
        } else {
            s
        };
        identifier_value(resource, system).map(|v| (system.to_string(), v.to_string()))
    })
}

/// Whether `resource` is the Organization of one of the gateway's configured services: it carries
/// the gateway's own service identifier. Only the gateway states one, from its configuration
/// ([`crate::intake::mapping::service_organization`]); a BaRS message naming an Organization by that
/// identifier is refused, so no sender's statement is ever taken for a service's.
pub fn is_service_organization(resource: &Value) -> bool {
    resource_type(resource) == Some("Organization")
        && identifier_value(resource, &systems::service_identifier_system()).is_some()
}

/// SHA-256 over a canonical serialisation (object keys sorted), so key order and whitespace in
/// the sender's JSON do not make an identical resend look different.
pub fn content_hash(value: &Value) -> String {
    let mut hasher = Sha256::new();
    write_canonical(value, &mut hasher);
    hex::encode(hasher.finalize())
}

fn write_canonical(value: &Value, h: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                h.update(serde_json::to_string(k).unwrap_or_default().as_bytes());
                h.update(b":");
                write_canonical(&map[k], h);
                h.update(b",");
            }
            h.update(b"}");
        }
        Value::Array(items) => {
            h.update(b"[");
            for i in items {
                write_canonical(i, h);
                h.update(b",");
            }
            h.update(b"]");
        }
        other => h.update(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"c":[1,2],"d":"x"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"d":"x","c":[1,2]},"a":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"b":{"d":"x","c":[2,1]},"a":1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn shared_resources_match_by_their_identifier() {
        let p = json!({"resourceType": "Patient", "identifier": [{"system": systems::NHS_NUMBER, "value": "9990000018"}]});
        assert_eq!(
            match_identifier(&p),
            Some((systems::NHS_NUMBER.into(), "9990000018".into()))
        );
        let o = json!({"resourceType": "Organization", "identifier": [{"system": systems::service_identifier_system(), "value": "sheffield-whs"}]});
        assert_eq!(match_identifier(&o).unwrap().1, "sheffield-whs");
        let c = json!({"resourceType": "Condition", "identifier": [{"system": "x", "value": "y"}]});
        assert_eq!(match_identifier(&c), None);
        let unregistered = json!({"resourceType": "Practitioner", "name": [{"family": "X"}]});
        assert_eq!(match_identifier(&unregistered), None);
    }
}
