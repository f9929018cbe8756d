//! Consents: a practice, or a service's adviser at first contact, records a person's Consent or
//! withdraws one; a service asks whether it may disclose. What each may record is
//! [`consent::authorship`]'s rule, what a disclosure may do [`consent::decide`]'s; every change
//! is stored with its AuditEvent in one transaction, every decision audited.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{BadVersionTag, Caller, version_named};
use crate::access::{self, AccessError};
use crate::audit::{self, Event, Kind};
use crate::caller::{Principal, Role};
use crate::consent::{
    self, Action, Code, DataClass, Decision, Purpose, Question, Recipient, RecipientClass,
    authorship,
};
use crate::fhir::identifiers::{identifier_reference, value_part};
use crate::fhir::resource::claim_profile;
use crate::fhir::systems::{self, profile};
use crate::fhir::{Issue, IssueType, Issues};
use crate::services::Service;
use crate::store::{PatientId, Store, StoreError, Transaction};

/// Why a Consent was not recorded or changed, or a disclosure not decided.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// The Consent breaks the gateway's consent model or the authorship rule, or a request
    /// names something unknown.
    #[error("invalid")]
    Invalid(Issues),
    /// A changed Consent must keep the id it is stored under.
    #[error("the Consent's id must be '{0}', the id in the URL")]
    IdMismatch(String),
    #[error("Consent/{0} is not known to this gateway")]
    UnknownConsent(String),
    #[error(transparent)]
    BadVersionTag(#[from] BadVersionTag),
    #[error("Consent/{0} has no version")]
    Unversioned(String),
    /// The store did not return the Consent it created or changed.
    #[error("{0} Consent not returned")]
    NotReturned(&'static str),
    /// The service is the one that discloses (to the practice, an employer, another service):
    /// nobody else asks what the person allows.
    #[error("only a service the person was referred to asks whether it may disclose")]
    NotAService,
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records the Consent `body` for a person the caller has a referral for, as recorded by the
/// caller (whatever the body says). Returns it as stored.
pub async fn record(
    store: &dyn Store,
    services: &[Service],
    caller: &Caller<'_>,
    body: &Value,
) -> Result<Value, ConsentError> {
    let principal = caller.principal;
    let body_as_sent = body;
    let named = with_patient_reference(store, body).await?;
    let body = &named;
    // Known before the Consent is checked where it can be, so a service's Consent may name the
    // practices that referred the person; an access failure is reported as before, after it.
    let known_care = match patient_id(body) {
        Ok(p) => Care::of(store, principal, &p).await.ok(),
        Err(_) => None,
    };
    let referring = referring_practices(principal, known_care.as_ref());
    let mut resource = checked_consent(body, services, principal, &referring)?;
    // R4 create (http://hl7.org/fhir/R4/http.html#create): "If an id is provided, the server
    // SHALL ignore it", as it does meta.versionId and meta.lastUpdated: the gateway assigns them
    // (a Consent is changed by PUT to /fhir/Consent/{id}, never by naming it here).
    if let Some(fields) = resource.as_object_mut() {
        fields.remove("id");
    }
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
    }
    let patient = patient_id(&resource)?;
    let care = match known_care {
        Some(care) => care,
        None => Care::of(store, principal, &patient).await.map_err(|e| {
            let named = match patient_nhs_number(body_as_sent) {
                Some(_) => "the person with the NHS number given".to_string(),
                None => patient.reference(),
            };
            not_in_care(e, &named)
        })?,
    };
    // Who recorded it is the caller, whatever the body says.
    resource["organization"] = json!([identifier_reference(&care.party.organisation)]);
    let now = Utc::now();
    let record = consent::read_consent(&resource).map_err(ConsentError::Invalid)?;
    let file = access::consent_file(store, &patient).await?;
    let mut issues = Issues::new();
    authorship::may_record(
        &care.party,
        &record,
        authorship::Person {
            consents: &file.consents,
            referrals: &care.relations,
        },
        now,
        &mut issues,
        "Consent",
    );
    issues.into_result(()).map_err(ConsentError::Invalid)?;
    let referral = care.referral_for(&record);
    let id = uuid::Uuid::now_v7().to_string();
    resource["id"] = json!(id);
    claim_profile(&mut resource, &profile::whg_consent());
    claim_profile(
        &mut resource,
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Consent",
    );
    let status = resource["status"].as_str().unwrap_or_default().to_string();
    let audit = consent_audit(
        caller,
        &patient,
        &id,
        now,
        format!("recorded with status {status}"),
    );
    store
        .transact(Transaction {
            creates: vec![resource],
            audit: vec![audit],
            referral,
            ..Transaction::default()
        })
        .await?
        .into_iter()
        .find(|r| r["resourceType"] == "Consent")
        .ok_or(ConsentError::NotReturned("created"))
}

/// Withdraws an agreement (`status` `inactive`, or `entered-in-error`) with `body`, the Consent
/// `Consent/{id}` changed — the only change a stored Consent takes
/// ([`consent::authorship::may_amend`]). The change is made against the version read (or the
/// one `version_tag` names), so a concurrent change fails rather than being undone, and commits
/// with its AuditEvent. Returns the Consent as it now stands.
pub async fn amend(
    store: &dyn Store,
    services: &[Service],
    caller: &Caller<'_>,
    id: &str,
    body: &Value,
    version_tag: Option<&str>,
) -> Result<Value, ConsentError> {
    let principal = caller.principal;
    let known_care = match patient_id(body) {
        Ok(p) => Care::of(store, principal, &p).await.ok(),
        Err(_) => None,
    };
    let referring = referring_practices(principal, known_care.as_ref());
    let mut resource = checked_consent(body, services, principal, &referring)?;
    if resource["id"].as_str() != Some(id) {
        return Err(ConsentError::IdMismatch(id.to_string()));
    }
    let stored = store
        .read("Consent", id)
        .await?
        .ok_or_else(|| ConsentError::UnknownConsent(id.to_string()))?;
    let patient = patient_id(&stored)?;
    let care = Care::of(store, principal, &patient).await?;
    if patient_id(&resource)? != patient {
        return Err(ConsentError::Invalid(
            Issue::error(
                IssueType::BusinessRule,
                "Consent.patient",
                "a Consent cannot be moved to another person: record a new one",
            )
            .into(),
        ));
    }
    // A change based on an older version fails first, as a stale write, whatever it is.
    let version =
        super::stored_version(&stored).ok_or_else(|| ConsentError::Unversioned(id.to_string()))?;
    let expected = version_named(version_tag)?.unwrap_or(version);
    if expected != version {
        return Err(StoreError::VersionConflict {
            resource: format!("Consent/{id}"),
            current: version,
            expected,
        }
        .into());
    }
    let mut issues = Issues::new();
    let amendment = authorship::may_amend(&care.party, &stored, &resource, &mut issues);
    issues.into_result(()).map_err(ConsentError::Invalid)?;
    if amendment == Some(authorship::Amendment::Unchanged) {
        // Nothing to store: a re-sent withdrawal must not re-date it.
        return Ok(stored);
    }
    claim_profile(&mut resource, &profile::whg_consent());
    let status = resource["status"].as_str().unwrap_or_default().to_string();
    let audit = consent_audit(
        caller,
        &patient,
        id,
        Utc::now(),
        format!("changed to status {status}"),
    );
    store
        .transact(Transaction {
            // Nothing is created, so no referral to attach anything to: the Consent stays
            // on the referral it was recorded on.
            updates: vec![(resource, expected)],
            audit: vec![audit],
            ..Transaction::default()
        })
        .await?
        .into_iter()
        .find(|r| r["resourceType"] == "Consent")
        .ok_or(ConsentError::NotReturned("updated"))
}

/// The caller's part in a person's care: the caller must be party to one of the person's
/// referrals (the practice that referred them, a service they were referred to). Sending a fit
/// note does not make a practice one; anyone else is told the person is not found.
pub(super) struct Care {
    party: consent::Party,
    /// The person's referrals, as the authorship rule reads them.
    relations: Vec<authorship::CareRelation>,
    /// The caller's own referrals of the person: (ServiceRequest id, the other party; none for
    /// a service's self-referral, which has no practice).
    mine: Vec<(String, Option<String>)>,
}

impl Care {
    pub(super) async fn of(
        store: &dyn Store,
        principal: &Principal,
        patient_id: &PatientId,
    ) -> Result<Care, AccessError> {
        let not_found = || AccessError::NotFound(patient_id.reference());
        let party = crate::consent::Party::of(principal).ok_or_else(not_found)?;
        let referrals: Vec<_> = store
            .records_of_patient(patient_id)
            .await?
            .into_iter()
            .filter_map(|r| {
                let id = r.record.strip_prefix("ServiceRequest/")?.to_string();
                Some((id, r.practice, r.service?))
            })
            .collect();
        let mine: Vec<(String, Option<String>)> = referrals
            .iter()
            .filter_map(|(id, practice, service)| match principal.role {
                role if role.refers() && practice.as_ref() == Some(&principal.organisation) => {
                    Some((id.clone(), Some(service.clone())))
                }
                Role::Service if *service == principal.organisation => {
                    Some((id.clone(), practice.clone()))
                }
                _ => None,
            })
            .collect();
        if mine.is_empty() {
            return Err(not_found());
        }
        let relations = referrals
            .into_iter()
            .map(|(_, referrer, service)| authorship::CareRelation { referrer, service })
            .collect();
        Ok(Care {
            party,
            relations,
            mine,
        })
    }

    /// The caller's referral a Consent is recorded on (and so whose parties see it): the one
    /// with the party it names, or else the caller's latest.
    fn referral_for(&self, consent: &consent::ConsentRecord) -> String {
        let named = consent.provision.organisations();
        self.mine
            .iter()
            .filter(|(_, other)| other.as_deref().is_some_and(|o| named.contains(&o)))
            .map(|(id, _)| id)
            .max()
            .or_else(|| self.mine.iter().map(|(id, _)| id).max())
            .cloned()
            .unwrap_or_default()
    }
}

/// The caller must be party to one of the person's referrals (see [`Care`]).
pub(super) async fn require_party(
    store: &dyn Store,
    principal: &Principal,
    patient_id: &PatientId,
) -> Result<(), AccessError> {
    Care::of(store, principal, patient_id).await.map(drop)
}

/// The AuditEvent of a Consent recorded or changed.
fn consent_audit(
    caller: &Caller<'_>,
    patient_id: &PatientId,
    consent_id: &str,
    at: chrono::DateTime<Utc>,
    what: String,
) -> Value {
    let principal = caller.principal;
    audit::audit_event(&Event {
        kind: Kind::ConsentRecorded,
        principal: Some(principal),
        patient: Some(patient_id.reference()),
        entities: vec![format!("Consent/{consent_id}")],
        decision: None,
        permitted: true,
        description: format!(
            "Consent/{consent_id} {what} by the {} {}",
            principal.role.as_str(),
            principal.organisation
        ),
        at,
        request_id: caller.request_id.clone(),
    })
}

/// What is wrong with a Consent the caller might record, as recording would find it before
/// weighing the person's other Consents (`$validate`).
pub fn validate(services: &[Service], principal: &Principal, body: &Value) -> Issues {
    let referring = referring_practices(principal, None);
    match checked_consent(body, services, principal, &referring) {
        Ok(_) => Issues::new(),
        Err(ConsentError::Invalid(issues)) => issues,
        Err(other) => Issue::general(IssueType::Invalid, other.to_string()).into(),
    }
}

/// The practices a Consent the caller records may name as the referring practice: a practice
/// itself; a service, the practices that referred the person to it (as far as `care`, when the
/// caller's care of the person is known yet, says).
fn referring_practices(principal: &Principal, care: Option<&Care>) -> Vec<(String, Vec<String>)> {
    let ods = |org: &str| (value_part(org).to_string(), Vec::new());
    match principal.role {
        Role::Practice => vec![ods(&principal.organisation)],
        Role::Service => {
            let mut out: Vec<(String, Vec<String>)> = Vec::new();
            for (_, practice) in care.map(|c| c.mine.as_slice()).unwrap_or_default() {
                // A self-referral has no referring practice to name.
                let Some(practice) = practice else { continue };
                let entry = ods(practice);
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Validates a Consent (already read as FHIR R4) against the gateway's consent model, with
/// every problem, once actors in standard R4 terms are translated into the gateway's
/// ([`consent::standard`]: the caller's own organisation and the configured services are the
/// recipients it can place). Returns the Consent as translated.
fn checked_consent(
    body: &Value,
    services: &[Service],
    principal: &Principal,
    referring: &[(String, Vec<String>)],
) -> Result<Value, ConsentError> {
    let party = consent::Party::of(principal);
    let own_service = party
        .as_ref()
        .filter(|p| p.class == RecipientClass::WorkHealthService)
        .and_then(|p| crate::services::by_id(services, value_part(&p.organisation)));
    let parties = consent::standard::Parties {
        services,
        receiving: own_service.map(|s| (s, &[][..])),
        referring,
    };
    let mut body = body.clone();
    // Only the gateway marks its own records (an employer-letter approval among them).
    consent::strip_origin_tags(&mut body);
    let mut issues =
        match consent::standard::translate_and_read(&mut body, "Consent", &parties, &|_| None) {
            Ok(_) => Issues::new(),
            Err(issues) => issues,
        };
    if body["scope"]["coding"].as_array().is_none() {
        issues.error(
            IssueType::Required,
            "Consent.scope",
            "scope is required: patient-privacy for sharing, research for evaluation",
        );
    }
    if body["category"].as_array().is_none() {
        issues.error(
            IssueType::Required,
            "Consent.category",
            "category is required, e.g. http://loinc.org|59284-0 (Patient Consent)",
        );
    }
    if body["patient"]["reference"].as_str().is_none() && patient_nhs_number(&body).is_none() {
        issues.error(
            IssueType::Required,
            "Consent.patient",
            format!("patient is required: a reference Patient/{{id}} to a person you have referred or been referred, or their NHS number as patient.identifier (system {})", systems::NHS_NUMBER),
        );
    }
    issues.into_result(body).map_err(ConsentError::Invalid)
}

/// A person the caller has no referral of, named as a Consent's patient: the field is wrong
/// (422 there), and the answer is the same whether or not the gateway holds the person, so it
/// tells the caller nothing about anyone else's records.
fn not_in_care(e: AccessError, named: &str) -> ConsentError {
    match e {
        AccessError::NotFound(_) => ConsentError::Invalid(
            Issue::error(
                IssueType::Value,
                "Consent.patient",
                format!(
                    "{named} is not a person you have referred or been referred: name the person by NHS number (patient.identifier, system {}), or find their id with GET /fhir/Patient?identifier={}|<NHS number>",
                    systems::NHS_NUMBER,
                    systems::NHS_NUMBER
                ),
            )
            .into(),
        ),
        other => ConsentError::Access(other),
    }
}

/// The NHS number of a patient given by identifier (`patient.identifier`, the NHS number
/// system), when the Consent names no `Patient/{id}` reference.
fn patient_nhs_number(consent: &Value) -> Option<&str> {
    let patient = &consent["patient"];
    if patient.get("reference").is_some() {
        return None;
    }
    let identifier = &patient["identifier"];
    (identifier["system"] == systems::NHS_NUMBER)
        .then(|| identifier["value"].as_str())
        .flatten()
}

/// The Consent with its patient as a `Patient/{id}` reference: a caller that knows the person by
/// NHS number (its own system's key) names them by `patient.identifier`, and the gateway finds
/// the id. An NHS number that is not valid is an issue at the field; one the gateway does not
/// hold is left unresolved, to be answered as a person outside the caller's care is.
async fn with_patient_reference<'a>(
    store: &dyn Store,
    body: &'a Value,
) -> Result<std::borrow::Cow<'a, Value>, ConsentError> {
    let Some(number) = patient_nhs_number(body) else {
        return Ok(std::borrow::Cow::Borrowed(body));
    };
    let number = crate::fhir::identifiers::nhs_number(number).map_err(|why| {
        ConsentError::Invalid(
            Issue::error(
                IssueType::Value,
                "Consent.patient.identifier.value",
                format!("not an NHS number: {why}"),
            )
            .into(),
        )
    })?;
    let mut named = body.clone();
    let id = store.patient_by_nhs_number(&number).await?;
    // Not held: an id no person has, so the caller's care of "them" is none and the answer is
    // the one a person held but not in its care gets.
    let reference = id.map_or_else(|| "Patient/not-held".to_string(), |id| id.reference());
    named["patient"]["reference"] = json!(reference);
    Ok(std::borrow::Cow::Owned(named))
}

fn patient_id(consent: &Value) -> Result<PatientId, ConsentError> {
    consent["patient"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("Patient/"))
        .filter(|id| crate::fhir::search::is_fhir_id(id))
        .map(PatientId::from)
        .ok_or_else(|| {
            ConsentError::Invalid(
                Issue::error(
                    IssueType::Value,
                    "Consent.patient.reference",
                    "patient must reference a stored person as Patient/{id}",
                )
                .into(),
            )
        })
}

/// The id in a `Patient/{id}` reference, or an issue at `patient`.
pub(super) fn patient_in(reference: &str, issues: &mut Issues) -> Option<PatientId> {
    let id = reference
        .strip_prefix("Patient/")
        .filter(|id| crate::fhir::search::is_fhir_id(id))
        .map(PatientId::from);
    if id.is_none() {
        issues.error(IssueType::Value, "patient", "patient must be Patient/{id}");
    }
    id
}

/// The `C` code `raw`, or an issue at `field` listing the codes allowed.
pub(super) fn code_in<C: Code>(raw: &str, field: &str, issues: &mut Issues) -> Option<C> {
    let code = C::from_code(raw);
    if code.is_none() {
        issues.error(
            IssueType::CodeInvalid,
            field,
            format!("'{raw}' is not one of {}", consent::model::codes_of::<C>()),
        );
    }
    code
}

/// A disclosure to be decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisclosureRequest {
    pub patient: String,
    pub recipient: String,
    #[serde(default)]
    pub recipient_organisation: Option<String>,
    pub data_class: String,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub document: Option<String>,
}

/// A disclosure decided.
#[derive(Debug)]
pub struct Disclosure {
    pub decision: Decision,
    pub decided_at: chrono::DateTime<Utc>,
}

/// Whether the caller asks disclosure questions at all (a service): checked before its request
/// is read, and again by [`decide_disclosure`].
pub fn may_ask_disclosure(principal: &Principal) -> Result<(), ConsentError> {
    if principal.role != Role::Service {
        return Err(ConsentError::NotAService);
    }
    Ok(())
}

/// May this be sent now? Decided at the moment of asking and audited: the delivery outbox asks
/// before every attempt.
pub async fn decide_disclosure(
    store: &dyn Store,
    caller: &Caller<'_>,
    req: &DisclosureRequest,
) -> Result<Disclosure, ConsentError> {
    may_ask_disclosure(caller.principal)?;
    let mut issues = Issues::new();
    let patient = patient_in(&req.patient, &mut issues);
    let recipient = code_in::<RecipientClass>(&req.recipient, "recipient", &mut issues);
    let class = code_in::<DataClass>(&req.data_class, "dataClass", &mut issues);
    let purpose = match req.purpose.as_deref() {
        None => Some(Purpose::Treatment),
        Some(p) => Purpose::from_code(p),
    };
    if purpose.is_none() {
        issues.error(
            IssueType::CodeInvalid,
            "purpose",
            "purpose must be TREAT or HRESCH",
        );
    }
    if let Some(doc) = &req.document
        && !doc
            .split_once('/')
            .is_some_and(|(t, id)| !t.is_empty() && crate::fhir::search::is_fhir_id(id))
    {
        issues.error(
            IssueType::Value,
            "document",
            "document must be Type/id, e.g. DocumentReference/123",
        );
    }
    let (Some(patient), Some(recipient), Some(class), Some(purpose)) = issues
        .into_result((patient, recipient, class, purpose))
        .map_err(ConsentError::Invalid)?
    else {
        unreachable!("every missing part was reported")
    };
    require_party(store, caller.principal, &patient).await?;
    let question = Question {
        recipient: Recipient {
            class: recipient,
            organisation: req.recipient_organisation.clone(),
        },
        action: Action::Disclose,
        purpose,
        class,
        at: Utc::now(),
        document: req.document.clone(),
    };
    let decision = access::decide_disclosure(
        store,
        Some(caller.principal),
        &patient,
        &question,
        caller.request_id.clone(),
    )
    .await?;
    Ok(Disclosure {
        decision,
        decided_at: question.at,
    })
}
