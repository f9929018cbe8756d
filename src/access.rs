//! Who may see and send what: tenancy (a practice sees what it sent, a service what is addressed to
//! it) and, for a person's data, the consent decision, with every decision audited. Loads what the
//! pure [`consent::decide`] needs from the store and records what it answered.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::audit::{self, Event, Kind};
use crate::caller::{Principal, Role};
use crate::consent::{
    self, Action, ConsentRecord, DataClass, Decision, Override, Purpose, Question, Recipient,
};
use crate::fhir::search::{Filter, SearchRequest, Tenancy};
use crate::fit_notes::FitNoteFacts;
use crate::store::{AuditTrail, Delivery, PatientId, RecordParties, SearchPage, Store, StoreError};

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
    /// The decision: every path that asks (reads, searches, reports, disclosures) asks here,
    /// so this is where decisions are counted for the metrics.
    pub fn decide(&self, question: &Question) -> Decision {
        let decision = consent::decide(&self.consents, &self.overrides, question);
        crate::telemetry::instruments::consent_decided(&decision);
        decision
    }
}

/// Every Consent stored about a person, as stored.
pub async fn consents_of(
    store: &dyn Store,
    patient_id: &PatientId,
) -> Result<Vec<Value>, StoreError> {
    let request = SearchRequest {
        resource_type: "Consent".into(),
        filters: vec![Filter::Reference {
            param: "patient",
            any_of: vec![patient_id.reference()],
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
    store.read_many("Consent", &ids).await
}

/// Loads everything recorded about a person's consent.
pub async fn consent_file(
    store: &dyn Store,
    patient_id: &PatientId,
) -> Result<ConsentFile, StoreError> {
    let consents = consents_of(store, patient_id)
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
struct ConsentFiles(HashMap<PatientId, ConsentFile>);

impl ConsentFiles {
    async fn of(
        &mut self,
        store: &dyn Store,
        patient_id: &PatientId,
    ) -> Result<&ConsentFile, StoreError> {
        if !self.0.contains_key(patient_id) {
            let file = consent_file(store, patient_id).await?;
            self.0.insert(patient_id.clone(), file);
        }
        Ok(&self.0[patient_id])
    }
}

/// The data class whose consent a caller needs to read a record of `class` (of `resource_type`),
/// or `None` when it needs none.
///
/// A practice reads back the referral and fit notes it sent without asking again; what the
/// service wrote about the person (its letters, contacts and outcomes) reaches the practice only
/// under a consent for feedback. A service is the other way round: it reads its own letters,
/// contacts and outcomes, and everything the practice sent needs the person's consent to the
/// service — so does the referral's workflow Task, which stands for the referral in the
/// service's work queue. Consent records themselves are readable by both, so a withdrawal can
/// be seen.
fn consent_class(role: Role, resource_type: &str, class: DataClass) -> Option<DataClass> {
    let service_authored = matches!(class, DataClass::AdviserLetter | DataClass::Outcome);
    match (role, resource_type) {
        (_, "Consent")
        | (Role::InformationGovernance | Role::Commissioner | Role::Operations, _) => None,
        (Role::Service, "Task") => Some(DataClass::Referral),
        (Role::Service, _) => (!service_authored).then_some(class),
        // A referrer of any kind: as a practice (an employer's consent names documents only,
        // so what the service wrote never reaches it otherwise: rule 6 of `consent::decide`).
        (
            Role::Practice
            | Role::TalkingTherapies
            | Role::Physiotherapy
            | Role::SecondaryCare
            | Role::VoluntarySector
            | Role::Employer,
            _,
        ) => service_authored.then_some(class),
    }
}

/// Types whose records are decided one by one, so a search reads each: their class differs
/// (fit notes among Observations, referral prompts among Tasks, the service's contacts among
/// Encounters), each is a letter a consent may name by its document, or some are the service's
/// alone ([`services_alone`]: employer letters and the person's answers about them, among
/// letters and Consents).
fn decided_each(resource_type: &str) -> bool {
    matches!(
        resource_type,
        "Observation"
            | "Task"
            | "Encounter"
            | "DocumentReference"
            | "Composition"
            | "Communication"
            | "Consent"
    )
}

/// Whether `resource` is hidden from `role` whatever the person's consent: the service's
/// dealings with the person's employer (an employer letter, the person's answer about one) are
/// the service's alone. No referrer learns what the person was asked to let their employer know
/// or what they said — neither their practice under its consent to feedback, nor an employer
/// that referred them. Part of the one tenancy rule: reads, searches, counts and paging alike.
fn services_alone(role: Role, resource: &Value) -> bool {
    role.refers() && crate::letters::employer::is_employer_record(resource)
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
        let action = if self.principal.role.refers() {
            Action::Disclose
        } else {
            Action::Access
        };
        Some(Question {
            recipient: Recipient::of(self.principal)?,
            action,
            purpose: Purpose::Treatment,
            class,
            at: self.now,
            document: None,
        })
    }

    /// The stored `resource_type/id` as the caller is shown it, if the caller may read it (see
    /// [`Guard::read`] and [`Guard::as_stated`]).
    pub async fn fetch(&self, resource_type: &str, id: &str) -> Result<Value, AccessError> {
        let resource = self
            .store
            .read(resource_type, id)
            .await?
            .ok_or_else(|| AccessError::NotFound(format!("{resource_type}/{id}")))?;
        let mine = self.check(&resource).await?;
        self.as_stated(resource, &mine).await
    }

    /// One version of `resource_type/id` (FHIR vread), if the caller may read the resource and
    /// that version: of a person, only the versions the caller's own records came with (the
    /// details their senders stated); of anything else, any version.
    pub async fn fetch_version(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Value, AccessError> {
        let not_found =
            || AccessError::NotFound(format!("{resource_type}/{id}/_history/{version}"));
        let current = self
            .store
            .read(resource_type, id)
            .await?
            .ok_or_else(not_found)?;
        let mine = self.check(&current).await?;
        if resource_type == "Patient" && !mine.iter().any(|r| r.patient_version == Some(version)) {
            return Err(not_found());
        }
        self.store
            .read_version(resource_type, id, version)
            .await?
            .ok_or_else(not_found)
    }

    /// The person with NHS number `nhs_number`, if the gateway holds them and the caller may
    /// read them (as [`Guard::fetch`], so as their own records' senders stated them): a search's
    /// answer, so a person the caller may not see, for tenancy or consent, is simply not found.
    /// Every lookup is audited as a search, found or not (a run through NHS numbers shows).
    pub async fn find_person(&self, nhs_number: &str) -> Result<Option<Value>, AccessError> {
        if !self.principal.role.reads_records() {
            return Err(no_records(self.principal.role));
        }
        let found = match self.store.patient_by_nhs_number(nhs_number).await? {
            None => None,
            Some(id) => match self.fetch("Patient", id.as_str()).await {
                Ok(person) => Some(person),
                Err(
                    AccessError::NotFound(_)
                    | AccessError::Forbidden(_)
                    | AccessError::ConsentDenied(_),
                ) => None,
                Err(other) => return Err(other),
            },
        };
        let mut event = self.event(Kind::Search);
        event.entities = found
            .iter()
            .filter_map(|p| Some(format!("Patient/{}", p["id"].as_str()?)))
            .collect();
        event.description = format!(
            "search Patient by NHS number: {} returned",
            found.as_ref().map_or(0, |_| 1)
        );
        self.store.append_audit(&[event]).await?;
        Ok(found)
    }

    /// Every version of `resource_type/id` the caller may read (FHIR instance history), newest
    /// first: checked, and audited, once; of a person, only the versions the caller's own records
    /// came with, as [`Guard::fetch_version`].
    pub async fn history(&self, resource_type: &str, id: &str) -> Result<Vec<Value>, AccessError> {
        let current = self
            .store
            .read(resource_type, id)
            .await?
            .ok_or_else(|| AccessError::NotFound(format!("{resource_type}/{id}")))?;
        let mine = self.check(&current).await?;
        let latest = current["meta"]["versionId"]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(1);
        let mut versions = Vec::new();
        for version in (1..=latest).rev() {
            if resource_type == "Patient"
                && !mine.iter().any(|r| r.patient_version == Some(version))
            {
                continue;
            }
            if let Some(v) = self.store.read_version(resource_type, id, version).await? {
                versions.push(v);
            }
        }
        Ok(versions)
    }

    /// May the caller read `resource` (as stored)? Audited when it concerns a person.
    pub async fn read(&self, resource: &Value) -> Result<(), AccessError> {
        self.check(resource).await.map(drop)
    }

    /// The tenancy rule and the consent decision for one stored resource: the caller must be
    /// party to one of the records it belongs to (`resource_parties`, the relation searches are
    /// limited by too), and, where [`consent_class`] says so, the person's consent must permit
    /// it. Returns the caller's records the resource belongs to.
    async fn check(&self, resource: &Value) -> Result<Vec<RecordParties>, AccessError> {
        let resource_type = resource["resourceType"].as_str().unwrap_or_default();
        let id = resource["id"].as_str().unwrap_or_default();
        let reference = format!("{resource_type}/{id}");
        if resource_type == "AuditEvent" {
            return if self.principal.role == Role::InformationGovernance {
                Ok(Vec::new())
            } else {
                Err(AccessError::Forbidden(
                    "only information-governance staff read the audit trail".into(),
                ))
            };
        }
        if services_alone(self.principal.role, resource) {
            return Err(AccessError::NotFound(reference));
        }
        let Some(class) = consent::data_class_of(resource) else {
            return Ok(Vec::new()); // organisations and practitioners: directory data
        };
        if !self.principal.role.reads_records() {
            return Err(no_records(self.principal.role));
        }
        let mine: Vec<RecordParties> = self
            .store
            .records_of(resource_type, id)
            .await?
            .into_iter()
            .filter(|r| is_party(self.principal, r))
            .collect();
        let Some(first) = mine.first() else {
            return Err(AccessError::NotFound(reference));
        };
        let patient = format!("Patient/{}", first.patient_id);
        let mut event = self.event(Kind::Read);
        event.patient = Some(patient);
        event.entities = vec![reference.clone()];
        let decision = match consent_class(self.principal.role, resource_type, class) {
            Some(class) => {
                let file = consent_file(self.store, &first.patient_id).await?;
                let mut question = self
                    .question(class)
                    .expect("practices and services are recipients");
                question.document = consent::letter_document(resource);
                Some(file.decide(&question))
            }
            None => None,
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
        self.store.append_audit(&[event]).await?;
        match decision {
            Some(d) if !d.permitted() => Err(AccessError::ConsentDenied(d.reason)),
            _ => Ok(mine),
        }
    }

    /// What the caller is shown of a resource it may read: a person's details as its own
    /// records' senders stated them (the newest version that came with one of `mine`), never
    /// details another sender stated. Other resources are shown as stored.
    async fn as_stated(
        &self,
        resource: Value,
        mine: &[RecordParties],
    ) -> Result<Value, AccessError> {
        if resource["resourceType"] != "Patient" {
            return Ok(resource);
        }
        // Every record is pinned to a version (migration 0008 pinned the older ones): one that
        // is not would show whatever another sender stated last, so it is refused as corrupt.
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        let Some(version) = mine.iter().filter_map(|r| r.patient_version).max() else {
            return Err(
                StoreError::Corrupt(format!("Patient/{id}: no record pins a version")).into(),
            );
        };
        let current = resource["meta"]["versionId"]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok());
        if current == Some(version) {
            return Ok(resource);
        }
        self.store
            .read_version("Patient", &id, version)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("Patient/{id} version {version} is missing")).into()
            })
    }

    /// A search result as the caller is shown it (see [`Guard::as_stated`]).
    async fn shown(&self, resource: Value) -> Result<Value, AccessError> {
        if resource["resourceType"] != "Patient" {
            return Ok(resource);
        }
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        let mine: Vec<RecordParties> = self
            .store
            .records_of("Patient", &id)
            .await?
            .into_iter()
            .filter(|r| is_party(self.principal, r))
            .collect();
        self.as_stated(resource, &mine).await
    }

    /// The letters in `letters` (already limited to the caller's organisation) that the caller
    /// may know of: a service all it wrote; a practice only those the person's consent lets the
    /// service disclose to it, so a list never shows a withheld letter. Audited as a search.
    pub async fn letters(&self, letters: Vec<Delivery>) -> Result<Vec<Delivery>, AccessError> {
        let visible = if self.principal.role.refers() {
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
        self.store.append_audit(&[event]).await?;
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
            (_, Role::Commissioner | Role::Operations) => {
                return Err(no_records(self.principal.role));
            }
            // A referrer of any kind: what it sent (its organisation's identifier is of its
            // kind's system, so never another kind's).
            (
                _,
                Role::Practice
                | Role::TalkingTherapies
                | Role::Physiotherapy
                | Role::SecondaryCare
                | Role::VoluntarySector
                | Role::Employer,
            ) => request.tenancy = Some(Tenancy::Practice(self.principal.organisation.clone())),
            (_, Role::Service) => {
                request.tenancy = Some(Tenancy::Service(self.principal.organisation.clone()))
            }
        }
        let type_class =
            consent::data_class_of(&serde_json::json!({ "resourceType": resource_type }))
                .unwrap_or(DataClass::Referral);
        let role = self.principal.role;
        let mixed_type = decided_each(&resource_type);
        let consent_filtered =
            mixed_type || consent_class(role, &resource_type, type_class).is_some();
        let mut page = if consent_filtered {
            let candidates = self.store.search_candidates(&request).await?;
            // The data class decides which consent applies. It is the same for every resource of
            // a type except those `decided_each` names: those are read here, and the page is
            // then served from what was read.
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
                if read.get(&c.id).is_some_and(|r| services_alone(role, r)) {
                    continue;
                }
                let class = read
                    .get(&c.id)
                    .and_then(consent::data_class_of)
                    .unwrap_or(type_class);
                let Some(class) = consent_class(role, &resource_type, class) else {
                    visible.push(c.id);
                    continue;
                };
                let Some(patient) = &c.patient else {
                    continue;
                };
                let file = files
                    .of(self.store, &PatientId::of_reference(patient))
                    .await?;
                let mut question = self
                    .question(class)
                    .expect("practices and services are recipients");
                question.document = read.get(&c.id).and_then(consent::letter_document);
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
        let mut shown = Vec::with_capacity(page.resources.len());
        for r in std::mem::take(&mut page.resources) {
            shown.push(self.shown(r).await?);
        }
        page.resources = shown;
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
        self.store.append_audit(&[event]).await?;
        Ok(page)
    }
}

impl Guard<'_> {
    /// A person's fit-note history: for a practice that referred them or sent their fit notes,
    /// the fit notes it sent; for a service they were referred to whose consent covers fit
    /// notes, all of them. Audited.
    pub async fn fit_note_history(
        &self,
        patient_id: &PatientId,
    ) -> Result<Vec<FitNoteFacts>, AccessError> {
        let reference = patient_id.reference();
        if !self.principal.role.reads_records() {
            return Err(no_records(self.principal.role));
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
        let mut notes = match &decision {
            Some(d) if !d.permitted() => Vec::new(),
            _ => self.store.fit_notes_of_patient(patient_id).await?,
        };
        if self.principal.role.refers() {
            // A referrer is party to the fit notes it sent (a practice's own; another kind
            // sends none), not to other practices' (the same rule as reading each one).
            notes.retain(|n| {
                records
                    .iter()
                    .any(|r| r.record == n.reference && is_party(self.principal, r))
            });
        }
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
        self.store.append_audit(&[event]).await?;
        match decision {
            Some(d) if !d.permitted() => Err(AccessError::ConsentDenied(d.reason)),
            _ => Ok(notes),
        }
    }
}

/// The refusal for a role that is never party to a person's records.
fn no_records(role: Role) -> AccessError {
    AccessError::Forbidden(match role {
        Role::Commissioner => {
            "commissioners read aggregate reports (/api/v1/reports), never a person's records"
                .into()
        }
        Role::Operations => {
            "operations staff see the gateway's alerts (/dashboard/ops), never a person's records"
                .into()
        }
        _ => "information-governance clients read the audit trail, not people's records".into(),
    })
}

/// Whether `principal` is a party to referral `r`: the referrer that sent it, or the service it
/// is addressed to.
pub fn is_party(principal: &Principal, r: &RecordParties) -> bool {
    match principal.role {
        // The organisation that referred (a practice, or a referrer of another kind: the
        // identifier's system tells them apart, `Principal::new`).
        Role::Practice
        | Role::TalkingTherapies
        | Role::Physiotherapy
        | Role::SecondaryCare
        | Role::VoluntarySector
        | Role::Employer => r.practice.as_ref() == Some(&principal.organisation),
        Role::Service => r.service.as_ref() == Some(&principal.organisation),
        Role::InformationGovernance | Role::Commissioner | Role::Operations => false,
    }
}

/// A disclosure decision, made at the moment of sending and audited: what the disclosure API
/// answers. The decision is the only thing it records.
pub async fn decide_disclosure(
    store: &dyn Store,
    principal: Option<&Principal>,
    patient_id: &PatientId,
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
    patient_id: &PatientId,
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

/// The person as the referral's practice stated them when it referred (the Patient version
/// pinned to the referral): what a letter about the referral says and where MESH routes it,
/// whatever another sender stated since.
pub async fn patient_of_referral(
    store: &dyn Store,
    referral_id: &str,
) -> Result<Option<Value>, StoreError> {
    let own = store
        .records_of("ServiceRequest", referral_id)
        .await?
        .into_iter()
        .find(|r| r.record == format!("ServiceRequest/{referral_id}"));
    let Some(own) = own else {
        return Ok(None);
    };
    let version = own.patient_version.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "ServiceRequest/{referral_id} pins no Patient version"
        ))
    })?;
    store
        .read_version("Patient", own.patient_id.as_str(), version)
        .await
}
