//! Who may see and send what: tenancy (a practice sees what it sent, a service what is addressed to
//! it) and, for a person's data, the consent decision, with every decision audited. Loads what the
//! pure [`consent::decide`] needs from the store and records what it answered.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::audit::{self, Event, Kind};
use crate::auth::{Principal, Role};
use crate::consent::{
    self, Action, ConsentRecord, DataClass, Decision, Override, Purpose, Question, Recipient,
    RecipientClass,
};
use crate::fhir::search::{Filter, SearchRequest, Tenancy};
use crate::fit_notes::FitNoteFacts;
use crate::intake::{Submission, SubmissionEntry, SubmissionKind};
use crate::store::{Delivery, RecordParties, SearchPage, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Not the caller's to know about: answered as if it did not exist.
    #[error("{0} is not found")]
    NotFound(String),
    /// The caller's role or scopes do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The person's consent does not allow this; the reason names the deciding Consent.
    #[error("{0}")]
    ConsentDenied(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A person's consents and overrides, as the decision function takes them.
#[derive(Debug, Default)]
pub struct ConsentFile {
    pub consents: Vec<ConsentRecord>,
    pub overrides: Vec<Override>,
}

impl ConsentFile {
    pub fn decide(&self, question: &Question) -> Decision {
        consent::decide(&self.consents, &self.overrides, question)
    }
}

/// Loads everything recorded about a person's consent.
pub async fn consent_file(store: &dyn Store, patient_id: &str) -> Result<ConsentFile, StoreError> {
    let request = SearchRequest {
        resource_type: "Consent".into(),
        filters: vec![Filter::Reference {
            param: "patient",
            any_of: vec![format!("Patient/{patient_id}")],
        }],
        count: u32::MAX,
        offset: 0,
        sort: Default::default(),
        tenancy: None,
    };
    let ids: Vec<String> = store
        .search_candidates(&request)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let consents = store
        .read_many("Consent", &ids)
        .await?
        .iter()
        // A stored Consent that does not read as the model (e.g. one from a BaRS message the IG
        // policy does not accept) permits nothing, and so cannot deny either.
        .filter_map(|c| consent::read_consent(c).ok())
        .collect();
    let overrides = store.overrides_of_patient(patient_id).await?;
    Ok(ConsentFile {
        consents,
        overrides,
    })
}

/// People's consent files, each loaded once for a run of decisions (a search, a list).
#[derive(Default)]
struct ConsentFiles(HashMap<String, ConsentFile>);

impl ConsentFiles {
    async fn of(
        &mut self,
        store: &dyn Store,
        patient_id: &str,
    ) -> Result<&ConsentFile, StoreError> {
        if !self.0.contains_key(patient_id) {
            let file = consent_file(store, patient_id).await?;
            self.0.insert(patient_id.to_string(), file);
        }
        Ok(&self.0[patient_id])
    }
}

/// Whether reading a record of `class` needs the person's consent for this caller.
///
/// A practice reads back the referral and fit notes it sent without asking again; what the
/// service wrote about the person (its letters, workflow and outcomes) reaches the practice only
/// under a consent for feedback. A service is the other way round: it reads its own letters and
/// outcomes, and everything the practice sent needs the person's consent to the service.
/// Consent records themselves are readable by both, so a withdrawal can be seen.
fn needs_consent(role: Role, resource_type: &str, class: DataClass) -> bool {
    let service_authored = matches!(class, DataClass::AdviserLetter | DataClass::Outcome);
    resource_type != "Consent"
        && match role {
            Role::Service => !service_authored,
            Role::Practice => service_authored,
            Role::InformationGovernance => false,
        }
}

/// Reads an override as the overrides API shows it (and the decision fixtures write it).
pub fn override_from_record(r: &Value) -> Option<Override> {
    Override::from_json(r)
}

/// Checks and audits one caller's access.
pub struct Guard<'a> {
    pub store: &'a dyn Store,
    pub principal: &'a Principal,
    pub request_id: Option<String>,
    pub now: DateTime<Utc>,
}

impl Guard<'_> {
    fn event(&self, kind: Kind) -> Event<'_> {
        Event {
            kind,
            principal: Some(self.principal),
            patient: None,
            entities: Vec::new(),
            decision: None,
            permitted: true,
            description: String::new(),
            at: self.now,
            request_id: self.request_id.clone(),
        }
    }

    fn question(&self, class: DataClass) -> Option<Question> {
        // A service accesses what was sent to it; what a practice reads under consent is the
        // service's record disclosed to it, the same question the outbox asks before a letter.
        let action = match self.principal.role {
            Role::Practice => Action::Disclose,
            _ => Action::Access,
        };
        Some(Question {
            recipient: self.principal.as_recipient()?,
            action,
            purpose: Purpose::Treatment,
            class,
            at: self.now,
            document: None,
        })
    }

    /// The stored `resource_type/id`, if the caller may read it (see [`Guard::read`]).
    pub async fn fetch(&self, resource_type: &str, id: &str) -> Result<Value, AccessError> {
        let resource = self
            .store
            .read(resource_type, id)
            .await?
            .ok_or_else(|| AccessError::NotFound(format!("{resource_type}/{id}")))?;
        self.read(&resource).await?;
        Ok(resource)
    }

    /// May the caller read `resource` (as stored)? Audited when it concerns a person.
    pub async fn read(&self, resource: &Value) -> Result<(), AccessError> {
        let resource_type = resource["resourceType"].as_str().unwrap_or_default();
        let id = resource["id"].as_str().unwrap_or_default();
        let reference = format!("{resource_type}/{id}");
        if resource_type == "AuditEvent" {
            return if self.principal.role == Role::InformationGovernance {
                Ok(())
            } else {
                Err(AccessError::Forbidden(
                    "only information-governance staff read the audit trail".into(),
                ))
            };
        }
        let Some(class) = consent::data_class_of(resource) else {
            return Ok(()); // organisations and practitioners: directory data
        };
        if self.principal.role == Role::InformationGovernance {
            return Err(AccessError::Forbidden(
                "information-governance clients read the audit trail, not people's records".into(),
            ));
        }
        let referrals = match resource_type {
            "Patient" => self.store.records_of_patient(id).await?,
            "Consent" => match patient_of(resource) {
                Some(p) => self.store.records_of_patient(&p).await?,
                None => Vec::new(),
            },
            _ => self.store.records_of(resource_type, id).await?,
        };
        let mine: Vec<&RecordParties> = referrals
            .iter()
            .filter(|r| is_party(self.principal, r))
            .collect();
        let Some(first) = mine.first() else {
            return Err(AccessError::NotFound(reference));
        };
        let patient = format!("Patient/{}", first.patient_id);
        let mut event = self.event(Kind::Read);
        event.patient = Some(patient);
        event.entities = vec![reference.clone()];
        let decision = if needs_consent(self.principal.role, resource_type, class) {
            let file = consent_file(self.store, &first.patient_id).await?;
            let question = self
                .question(class)
                .expect("practices and services are recipients");
            Some(file.decide(&question))
        } else {
            None
        };
        event.decision = decision.as_ref();
        event.permitted = decision.as_ref().is_none_or(Decision::permitted);
        event.description = match &decision {
            Some(d) => d.reason.clone(),
            None => format!(
                "{} read its own referral's record",
                self.principal.role.as_str()
            ),
        };
        audit::append(self.store, &[event]).await?;
        match decision {
            Some(d) if !d.permitted() => Err(AccessError::ConsentDenied(d.reason)),
            _ => Ok(()),
        }
    }

    /// The letters in `letters` (already limited to the caller's organisation) that the caller
    /// may know of: a service all it wrote; a practice only those the person's consent lets the
    /// service disclose to it, so a list never shows a withheld letter. Audited as a search.
    pub async fn letters(&self, letters: Vec<Delivery>) -> Result<Vec<Delivery>, AccessError> {
        let visible = if self.principal.role == Role::Practice {
            let mut files = ConsentFiles::default();
            let mut visible = Vec::with_capacity(letters.len());
            for d in letters {
                let file = files.of(self.store, &d.patient_id).await?;
                let mut question = self
                    .question(DataClass::AdviserLetter)
                    .expect("a practice is a recipient");
                question.document = Some(format!("DocumentReference/{}", d.document_id));
                if file.decide(&question).permitted() {
                    visible.push(d);
                }
            }
            visible
        } else {
            letters
        };
        let mut event = self.event(Kind::Search);
        event.entities = visible
            .iter()
            .map(|d| format!("Communication/{}", d.id))
            .collect();
        event.description = format!("list letters: {} returned", visible.len());
        audit::append(self.store, &[event]).await?;
        Ok(visible)
    }

    /// Runs a search limited to what the caller may see. For a service, records withheld by
    /// consent are removed before counting and paging, so neither the total nor the pages reveal
    /// them. Audited.
    pub async fn search(&self, mut request: SearchRequest) -> Result<SearchPage, AccessError> {
        let resource_type = request.resource_type.clone();
        match (resource_type.as_str(), self.principal.role) {
            ("AuditEvent", Role::InformationGovernance) => {}
            ("AuditEvent", _) => {
                return Err(AccessError::Forbidden(
                    "only information-governance staff search the audit trail".into(),
                ));
            }
            (_, Role::InformationGovernance) => {
                return Err(AccessError::Forbidden(
                    "information-governance clients search the audit trail, not people's records"
                        .into(),
                ));
            }
            (_, Role::Practice) => {
                request.tenancy = Some(Tenancy::Practice(self.principal.organisation.clone()))
            }
            (_, Role::Service) => {
                request.tenancy = Some(Tenancy::Service(self.principal.organisation.clone()))
            }
        }
        let type_class =
            consent::data_class_of(&serde_json::json!({ "resourceType": resource_type }))
                .unwrap_or(DataClass::Referral);
        // Some types hold records of different classes: a service's Observations may be fit
        // notes, a practice's Tasks its own referral prompts or a service's workflow. Those are
        // read and classified one by one.
        let role = self.principal.role;
        let mixed_type = matches!(
            (role, resource_type.as_str()),
            (Role::Service, "Observation") | (Role::Practice, "Task")
        );
        let consent_filtered = mixed_type || needs_consent(role, &resource_type, type_class);
        let page = if consent_filtered {
            let candidates = self.store.search_candidates(&request).await?;
            // The data class decides which consent applies. It is the same for every resource of
            // a type except Observations and Tasks: those are read here, and the page is then
            // served from what was read.
            let mut read: HashMap<String, Value> = if mixed_type {
                let ids: Vec<String> = candidates.iter().map(|c| c.id.clone()).collect();
                self.store
                    .read_many(&resource_type, &ids)
                    .await?
                    .into_iter()
                    .filter_map(|r| Some((r["id"].as_str()?.to_string(), r)))
                    .collect()
            } else {
                HashMap::new()
            };
            let mut files = ConsentFiles::default();
            let mut visible = Vec::with_capacity(candidates.len());
            for c in candidates {
                let class = read
                    .get(&c.id)
                    .and_then(consent::data_class_of)
                    .unwrap_or(type_class);
                if !needs_consent(role, &resource_type, class) {
                    visible.push(c.id);
                    continue;
                }
                let Some(patient) = &c.patient else {
                    continue;
                };
                let file = files
                    .of(self.store, patient.trim_start_matches("Patient/"))
                    .await?;
                let question = self
                    .question(class)
                    .expect("practices and services are recipients");
                if file.decide(&question).permitted() {
                    visible.push(c.id);
                }
            }
            let total = visible.len() as u64;
            let start = (request.offset as usize).min(visible.len());
            let end = start
                .saturating_add(request.count as usize)
                .min(visible.len());
            let page = &visible[start..end];
            let resources = if read.is_empty() {
                self.store.read_many(&resource_type, page).await?
            } else {
                page.iter().filter_map(|id| read.remove(id)).collect()
            };
            SearchPage { total, resources }
        } else {
            self.store.search(&request).await?
        };
        let mut event = self.event(Kind::Search);
        event.entities = page
            .resources
            .iter()
            .filter_map(|r| Some(format!("{resource_type}/{}", r["id"].as_str()?)))
            .collect();
        event.description = format!(
            "search {resource_type}: {} of {} matches returned",
            page.resources.len(),
            page.total
        );
        audit::append(self.store, &[event]).await?;
        Ok(page)
    }
}

impl Guard<'_> {
    /// A person's fit-note history, for a practice that referred them or sent their fit notes, or
    /// a service they were referred to whose consent covers fit notes. Audited.
    pub async fn fit_note_history(
        &self,
        patient_id: &str,
    ) -> Result<Vec<FitNoteFacts>, AccessError> {
        let reference = format!("Patient/{patient_id}");
        if self.principal.role == Role::InformationGovernance {
            return Err(AccessError::Forbidden(
                "information-governance clients read the audit trail, not people's records".into(),
            ));
        }
        let records = self.store.records_of_patient(patient_id).await?;
        if !records.iter().any(|r| is_party(self.principal, r)) {
            return Err(AccessError::NotFound(reference));
        }
        let decision = if self.principal.role == Role::Service {
            let file = consent_file(self.store, patient_id).await?;
            let question = self
                .question(DataClass::FitNote)
                .expect("a service is a recipient");
            Some(file.decide(&question))
        } else {
            None
        };
        let notes = match &decision {
            Some(d) if !d.permitted() => Vec::new(),
            _ => self.store.fit_notes_of_patient(patient_id).await?,
        };
        let mut event = self.event(Kind::Read);
        event.patient = Some(reference);
        event.entities = notes.iter().map(|n| n.reference.clone()).collect();
        event.decision = decision.as_ref();
        event.permitted = decision.as_ref().is_none_or(Decision::permitted);
        event.description = match &decision {
            Some(d) => d.reason.clone(),
            None => format!(
                "fit-note summary read by a {}",
                self.principal.role.as_str()
            ),
        };
        audit::append(self.store, &[event]).await?;
        match decision {
            Some(d) if !d.permitted() => Err(AccessError::ConsentDenied(d.reason)),
            _ => Ok(notes),
        }
    }
}

/// Whether `principal` is a party to referral `r`: the practice that sent it, or the service it
/// is addressed to.
pub fn is_party(principal: &Principal, r: &RecordParties) -> bool {
    match principal.role {
        Role::Practice => r.practice == principal.organisation,
        Role::Service => r.service.as_ref() == Some(&principal.organisation),
        Role::InformationGovernance => false,
    }
}

/// The person's reference (`id`) in a Consent.
fn patient_of(resource: &Value) -> Option<String> {
    resource["patient"]["reference"]
        .as_str()?
        .strip_prefix("Patient/")
        .map(str::to_string)
}

/// The Consents that came with a referral, as the decision function reads them.
pub fn submitted_consents(submission: &Submission) -> Vec<ConsentRecord> {
    submission
        .entries
        .iter()
        .filter(|e| e.resource_type == "Consent")
        .enumerate()
        .filter_map(|(i, e)| {
            // Not stored yet, so no id: named by their place in the referral.
            let mut record = consent::read_consent(&e.resource).ok()?;
            record.reference = format!("Consent/in-this-referral-{}", i + 1);
            Some(record)
        })
        .collect()
}

/// The question intake asks: may the referral be disclosed to its service, for direct care?
/// `None` for a submission that goes to no service (a fit note).
pub fn intake_question(submission: &Submission, now: DateTime<Utc>) -> Option<Question> {
    let SubmissionKind::Referral { service } = &submission.kind else {
        return None;
    };
    Some(Question {
        recipient: Recipient {
            class: RecipientClass::WorkHealthService,
            organisation: Some(service.clone()),
        },
        action: Action::Disclose,
        purpose: Purpose::Treatment,
        class: DataClass::Referral,
        at: now,
        document: None,
    })
}

/// The intake consent check for a referral, to run in the store's transaction over the person's
/// stored Consents: those plus the referral's own must permit disclosing it to its service. On a
/// permit it returns the referral's audit record, which refers to the referral's own entries by
/// fullUrl (the store rewrites them to ids).
pub fn intake_consent(
    submission: &Submission,
    question: Question,
    principal: &Principal,
    request_id: Option<String>,
    now: DateTime<Utc>,
) -> impl FnOnce(&[Value]) -> Result<SubmissionEntry, Decision> + Send + use<> {
    let submitted = submitted_consents(submission);
    let patient = submission
        .entries
        .iter()
        .find(|e| e.resource_type == "Patient")
        .map(|e| e.full_url.clone());
    let focus = submission.focus.clone();
    let principal = principal.clone();
    move |stored: &[Value]| {
        let mut consents: Vec<ConsentRecord> = stored
            .iter()
            .filter_map(|c| consent::read_consent(c).ok())
            .collect();
        consents.extend(submitted);
        let decision = consent::decide(&consents, &[], &question);
        if !decision.permitted() {
            return Err(decision);
        }
        let event = audit::audit_event(&Event {
            kind: Kind::Intake,
            principal: Some(&principal),
            patient,
            entities: vec![focus],
            decision: Some(&decision),
            permitted: true,
            description: format!("referral accepted: {}", decision.reason),
            at: now,
            request_id,
        });
        Ok(audit::entry(event))
    }
}

/// The issue a referral refused by consent gets, pointing at where its consent is recorded.
pub fn intake_refusal(expression: &str, decision: &Decision) -> crate::fhir::Issues {
    crate::fhir::Issue::error(
        crate::fhir::IssueType::BusinessRule,
        expression,
        format!(
            "the person's consent does not allow this referral to go to the service ({}). Record their agreement to be referred there and send it again",
            decision.reason
        ),
    )
    .into()
}

/// Where a practice referral records consent.
pub const PRACTICE_CONSENT_EXPRESSION: &str = "consent.patientAgreed";
/// Where a BaRS message carries consent.
pub const BARS_CONSENT_EXPRESSION: &str = "Bundle.entry.resource.ofType(Consent)";

/// A disclosure decision, made at the moment of sending and audited: what the disclosure API
/// answers. The decision is the only thing it records.
pub async fn decide_disclosure(
    store: &dyn Store,
    principal: Option<&Principal>,
    patient_id: &str,
    question: &Question,
    request_id: Option<String>,
) -> Result<Decision, StoreError> {
    let (decision, event) =
        disclosure_decision(store, principal, patient_id, question, request_id).await?;
    store.create(vec![event]).await?;
    Ok(decision)
}

/// A disclosure decision and the AuditEvent that records it, not yet stored: the delivery outbox
/// stores the event in the transaction that records what the decision led to (the attempt, or
/// the letter cancelled).
pub async fn disclosure_decision(
    store: &dyn Store,
    principal: Option<&Principal>,
    patient_id: &str,
    question: &Question,
    request_id: Option<String>,
) -> Result<(Decision, Value), StoreError> {
    let file = consent_file(store, patient_id).await?;
    let decision = file.decide(question);
    let mut entities = Vec::new();
    if let Some(doc) = &question.document {
        entities.push(doc.clone());
    }
    let event = audit::audit_event(&Event {
        kind: Kind::Disclosure,
        principal,
        patient: Some(format!("Patient/{patient_id}")),
        entities,
        decision: Some(&decision),
        permitted: decision.permitted(),
        description: decision.reason.clone(),
        at: question.at,
        request_id,
    });
    Ok((decision, event))
}
