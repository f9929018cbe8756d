//! Consent routes: recording and changing Consents, overrides (requested by a practice or
//! service, granted or refused and reviewed by information governance), and disclosure decisions.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{request_id, require_scope};
use super::body::JsonBody;
use super::error::{ApiError, fhir_response, set_location};
use crate::access::{self, AccessError};
use crate::audit::{self, Event, Kind};
use crate::auth::{Principal, Role, scope};
use crate::consent::overrides::{self, Agent, ReviewOutcome, StepError, Verdict};
use crate::consent::{
    self, Action, Code, DataClass, Override, OverrideReason, OverrideState, OverrideStatus,
    Purpose, Question, Recipient, RecipientClass, authorship,
};
use crate::fhir::identifiers::identifier_reference;
use crate::fhir::resource::claim_profile;
use crate::fhir::systems::profile;
use crate::fhir::{Issue, IssueType, Issues};
use crate::store::{OverrideFilter, Transaction};

/// `POST /fhir/Consent`: a practice, or a service's adviser at first contact, records a Consent
/// for a person it has a referral for. What each may record is [`consent::authorship`]'s rule;
/// the Consent and its AuditEvent are stored in one transaction.
pub async fn create(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::CONSENT_CREATE)?;
    let mut resource = checked_consent(&body)?;
    if resource.get("id").is_some() {
        return Err(ApiError::Invalid(
            Issue::error(
                IssueType::Invalid,
                "Consent.id",
                "a new Consent must not carry an id: the gateway assigns one (to change a Consent, PUT it to /fhir/Consent/{id})",
            )
            .into(),
        ));
    }
    let patient = patient_id(&resource)?;
    let care = Care::of(&app, &principal, &patient).await?;
    // Who recorded it is the caller, whatever the body says.
    resource["organization"] = json!([identifier_reference(&care.party.organisation)]);
    let now = Utc::now();
    let record = consent::read_consent(&resource).map_err(ApiError::Invalid)?;
    let file = access::consent_file(&*app.store, &patient).await?;
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
    issues.into_result(()).map_err(ApiError::Invalid)?;
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
        &principal,
        &headers,
        &patient,
        &id,
        now,
        format!("recorded with status {status}"),
    );
    let stored = app
        .store
        .transact(Transaction {
            creates: vec![resource],
            audit: vec![audit],
            referral,
            ..Transaction::default()
        })
        .await?
        .into_iter()
        .find(|r| r["resourceType"] == "Consent")
        .ok_or_else(|| ApiError::Internal("created Consent not returned".into()))?;
    let mut response = fhir_response(StatusCode::CREATED, &stored);
    set_location(
        &mut response,
        &format!("{}/fhir/Consent/{id}", app.config.base_url()),
    );
    Ok(response)
}

/// `PUT /fhir/Consent/{id}`: withdraws an agreement (`status` `inactive`, or `entered-in-error`)
/// — the only change a stored Consent takes ([`consent::authorship::may_amend`]). The change is
/// made against the version read (or the one `If-Match: W/"n"` names), so a concurrent change
/// fails with 412 rather than being undone, and commits with its AuditEvent.
pub async fn update(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::CONSENT_UPDATE)?;
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such Consent: {e}")))?;
    let mut resource = checked_consent(&body)?;
    if resource["id"].as_str() != Some(id.as_str()) {
        return Err(ApiError::BadRequest(
            Issue::error(
                IssueType::Invalid,
                "Consent.id",
                format!("the Consent's id must be '{id}', the id in the URL"),
            )
            .into(),
        ));
    }
    let stored =
        app.store.read("Consent", &id).await?.ok_or_else(|| {
            ApiError::NotFound(format!("Consent/{id} is not known to this gateway"))
        })?;
    let patient = patient_id(&stored)?;
    let care = Care::of(&app, &principal, &patient).await?;
    if patient_id(&resource)? != patient {
        return Err(ApiError::Invalid(
            Issue::error(
                IssueType::BusinessRule,
                "Consent.patient",
                "a Consent cannot be moved to another person: record a new one",
            )
            .into(),
        ));
    }
    // A change based on an older version fails first, as a stale write (412), whatever it is.
    let version = stored["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| ApiError::Internal(format!("Consent/{id} has no version")))?;
    let expected = if_match(&headers)?.unwrap_or(version);
    if expected != version {
        return Err(crate::store::StoreError::VersionConflict {
            resource: format!("Consent/{id}"),
            current: version,
            expected,
        }
        .into());
    }
    let mut issues = Issues::new();
    let amendment = authorship::may_amend(&care.party, &stored, &resource, &mut issues);
    issues.into_result(()).map_err(ApiError::Invalid)?;
    if amendment == Some(authorship::Amendment::Unchanged) {
        // Nothing to store: a re-sent withdrawal must not re-date it.
        return Ok(fhir_response(StatusCode::OK, &stored));
    }
    claim_profile(&mut resource, &profile::whg_consent());
    let status = resource["status"].as_str().unwrap_or_default().to_string();
    let audit = consent_audit(
        &principal,
        &headers,
        &patient,
        &id,
        Utc::now(),
        format!("changed to status {status}"),
    );
    let updated = app
        .store
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
        .ok_or_else(|| ApiError::Internal("updated Consent not returned".into()))?;
    Ok(fhir_response(StatusCode::OK, &updated))
}

/// The caller's part in a person's care: the caller must be party to one of the person's
/// referrals (the practice that referred them, a service they were referred to). Sending a fit
/// note does not make a practice one; anyone else is told the person is not found.
struct Care {
    party: consent::Party,
    /// The person's referrals, as the authorship rule reads them.
    relations: Vec<authorship::CareRelation>,
    /// The caller's own referrals of the person: (ServiceRequest id, the other party).
    mine: Vec<(String, String)>,
}

impl Care {
    async fn of(app: &AppState, principal: &Principal, patient_id: &str) -> Result<Care, ApiError> {
        let not_found = || ApiError::from(AccessError::NotFound(format!("Patient/{patient_id}")));
        let party = principal.as_party().ok_or_else(not_found)?;
        let referrals: Vec<_> = app
            .store
            .records_of_patient(patient_id)
            .await?
            .into_iter()
            .filter_map(|r| {
                let id = r.record.strip_prefix("ServiceRequest/")?.to_string();
                Some((id, r.practice?, r.service?))
            })
            .collect();
        let mine: Vec<(String, String)> = referrals
            .iter()
            .filter_map(|(id, practice, service)| match principal.role {
                Role::Practice if *practice == principal.organisation => {
                    Some((id.clone(), service.clone()))
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
            .map(|(_, practice, service)| authorship::CareRelation { practice, service })
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
            .filter(|(_, other)| named.contains(&other.as_str()))
            .map(|(id, _)| id)
            .max()
            .or_else(|| self.mine.iter().map(|(id, _)| id).max())
            .cloned()
            .unwrap_or_default()
    }
}

/// The AuditEvent of a Consent recorded or changed.
fn consent_audit(
    principal: &Principal,
    headers: &HeaderMap,
    patient_id: &str,
    consent_id: &str,
    at: chrono::DateTime<Utc>,
    what: String,
) -> Value {
    audit::audit_event(&Event {
        kind: Kind::ConsentRecorded,
        principal: Some(principal),
        patient: Some(format!("Patient/{patient_id}")),
        entities: vec![format!("Consent/{consent_id}")],
        decision: None,
        permitted: true,
        description: format!(
            "Consent/{consent_id} {what} by the {} {}",
            principal.role.as_str(),
            principal.organisation
        ),
        at,
        request_id: request_id(headers),
    })
}

/// The `If-Match` header's text, if one was sent (the use case reads the version it names).
pub(super) fn version_tag(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

/// The version an `If-Match: W/"n"` header names, if one was sent.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim_start_matches("W/")
                .trim_matches('"')
                .parse::<i64>()
                .map_err(|_| {
                    ApiError::BadRequest(
                        Issue::general(
                            IssueType::Value,
                            "If-Match must be a version ETag such as W/\"2\"",
                        )
                        .into(),
                    )
                })
        })
        .transpose()
}

/// Parses and validates a Consent body: FHIR R4 (400 if not), then the gateway's consent model
/// (422 with every problem).
fn checked_consent(body: &JsonBody) -> Result<Value, ApiError> {
    super::body::require_resource(body, "Consent")?;
    let mut issues = match consent::read_consent(&body.value) {
        Ok(_) => Issues::new(),
        Err(issues) => issues,
    };
    if body.value["scope"]["coding"].as_array().is_none() {
        issues.error(
            IssueType::Required,
            "Consent.scope",
            "scope is required: patient-privacy for sharing, research for evaluation",
        );
    }
    if body.value["category"].as_array().is_none() {
        issues.error(
            IssueType::Required,
            "Consent.category",
            "category is required, e.g. http://loinc.org|59284-0 (Patient Consent)",
        );
    }
    if body.value["patient"]["reference"].as_str().is_none() {
        issues.error(
            IssueType::Required,
            "Consent.patient",
            "patient is required, as a reference Patient/{id} to a person known to the gateway",
        );
    }
    issues
        .into_result(body.value.clone())
        .map_err(ApiError::Invalid)
}

fn patient_id(consent: &Value) -> Result<String, ApiError> {
    consent["patient"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("Patient/"))
        .filter(|id| crate::fhir::search::is_fhir_id(id))
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::Invalid(
                Issue::error(
                    IssueType::Value,
                    "Consent.patient.reference",
                    "patient must reference a stored person as Patient/{id}",
                )
                .into(),
            )
        })
}

/// The caller must be party to one of the person's referrals (see [`Care`]).
async fn require_party(
    app: &AppState,
    principal: &Principal,
    patient_id: &str,
) -> Result<(), ApiError> {
    Care::of(app, principal, patient_id).await.map(drop)
}

/// What a practice or service asks to override.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideRequest {
    patient: String,
    recipient: String,
    #[serde(default)]
    recipient_organisation: Option<String>,
    data_classes: Vec<String>,
    reason: String,
    justification: String,
    hours: u32,
}

/// A JSON request body as `T`, or a 400 naming what was expected.
fn parse_request<T: serde::de::DeserializeOwned>(
    body: &JsonBody,
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(body.value.clone()).map_err(|e| {
        ApiError::BadRequest(
            Issue::general(IssueType::Structure, format!("not {what}: {e}")).into(),
        )
    })
}

/// The id in a `Patient/{id}` reference, or an issue at `patient`.
fn patient_in<'a>(reference: &'a str, issues: &mut Issues) -> Option<&'a str> {
    let id = reference
        .strip_prefix("Patient/")
        .filter(|id| crate::fhir::search::is_fhir_id(id));
    if id.is_none() {
        issues.error(IssueType::Value, "patient", "patient must be Patient/{id}");
    }
    id
}

/// The `C` code `raw`, or an issue at `field` listing the codes allowed.
fn code_in<C: Code>(raw: &str, field: &str, issues: &mut Issues) -> Option<C> {
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

/// Shortest justification accepted: one sentence a reviewer can judge.
const MIN_JUSTIFICATION: usize = 20;

/// `POST /api/v1/consent-overrides`: a practice or service asks to act against a person's
/// consent decision ("break glass") for a stated reason, for a limited time, for itself or for
/// the one third party it discloses to. The request permits nothing until information governance
/// grants it. Stored with its AuditEvent.
pub async fn create_override(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::CONSENT_OVERRIDE)?;
    let req: OverrideRequest = parse_request(&body, "an override request")?;
    let mut issues = Issues::new();
    let patient = patient_in(&req.patient, &mut issues).map(str::to_string);
    let recipient = code_in::<RecipientClass>(&req.recipient, "recipient", &mut issues);
    let organisation = req.recipient_organisation.as_deref().map(str::trim);
    if let Err(more) = overrides::check_request(&principal, recipient, organisation) {
        issues.extend(more);
    }
    if req.data_classes.is_empty() {
        issues.error(
            IssueType::Required,
            "dataClasses",
            "name at least one data class the override covers",
        );
    }
    let classes: Vec<Option<DataClass>> = req
        .data_classes
        .iter()
        .enumerate()
        .map(|(i, c)| code_in::<DataClass>(c, &format!("dataClasses[{i}]"), &mut issues))
        .collect();
    let reason = code_in::<OverrideReason>(&req.reason, "reason", &mut issues);
    if req.justification.trim().chars().count() < MIN_JUSTIFICATION {
        issues.error(
            IssueType::Required,
            "justification",
            format!(
                "explain why in at least {MIN_JUSTIFICATION} characters: information governance decides on it"
            ),
        );
    }
    let max = app.config.consent.override_max_hours;
    if req.hours == 0 || req.hours > max {
        issues.error(
            IssueType::Value,
            "hours",
            format!("an override lasts from 1 to {max} hours from its grant"),
        );
    }
    let classes: Option<Vec<DataClass>> = classes.into_iter().collect();
    let (Some(patient), Some(recipient), Some(classes), Some(reason), Some(organisation)) = issues
        .into_result((patient, recipient, classes, reason, organisation))
        .map_err(ApiError::Invalid)?
    else {
        unreachable!("every missing part was reported")
    };
    require_party(&app, &principal, &patient).await?;
    let now = now_to_the_microsecond();
    let request = Override {
        id: uuid::Uuid::now_v7().to_string(),
        patient_id: patient,
        recipient,
        organisation: organisation.to_string(),
        classes,
        reason,
        justification: req.justification.trim().to_string(),
        hours: req.hours,
        requested_by: Agent::of(&principal),
        requested_at: now,
        state: OverrideState::Requested,
        review: None,
    };
    let requested = override_event(
        &principal,
        &headers,
        &request,
        format!(
            "override {} requested ({}) for {} {} of {} for {} hours; in force only once information governance grants it",
            request.id,
            request.reason.code(),
            request.recipient.code(),
            request.organisation,
            classes_of(&request),
            request.hours
        ),
        now,
    );
    app.store
        .create_override(request.clone(), vec![requested])
        .await?;
    let mut response = (StatusCode::CREATED, Json(request.to_json())).into_response();
    set_location(
        &mut response,
        &format!(
            "{}/api/v1/consent-overrides/{}",
            app.config.base_url(),
            request.id
        ),
    );
    Ok(response)
}

/// Now, as precisely as the store keeps times: what is answered is what is stored.
fn now_to_the_microsecond() -> chrono::DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
}

fn classes_of(o: &Override) -> String {
    o.classes
        .iter()
        .map(|c| c.code())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The AuditEvent of one step on an override, naming the override by its identifier.
fn override_event(
    principal: &Principal,
    headers: &HeaderMap,
    o: &Override,
    description: String,
    at: chrono::DateTime<Utc>,
) -> Value {
    let mut event = audit::audit_event(&Event {
        kind: Kind::Override,
        principal: Some(principal),
        patient: Some(format!("Patient/{}", o.patient_id)),
        entities: Vec::new(),
        decision: None,
        permitted: true,
        description,
        at,
        request_id: request_id(headers),
    });
    if let Some(entities) = event["entity"].as_array_mut() {
        entities.push(json!({
            "what": { "identifier": { "system": audit::override_system(), "value": o.id } },
            "description": "the override",
        }));
    }
    event
}

/// Information governance: a client in that role, holding the review scope.
fn require_information_governance(principal: &Principal) -> Result<(), ApiError> {
    require_scope(principal, scope::OVERRIDE_REVIEW)?;
    if principal.role != Role::InformationGovernance {
        return Err(ApiError::Forbidden(
            "only information governance lists, grants, refuses and reviews overrides".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    unreviewed: Option<bool>,
    #[serde(default)]
    state: Option<String>,
}

/// `GET /api/v1/consent-overrides[?state=requested][&unreviewed=true]`: overrides for
/// information governance: requests to decide, granted ones to review.
pub async fn list_overrides(
    State(app): State<AppState>,
    principal: Principal,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_information_governance(&principal)?;
    let Query(q) = query.map_err(|e| {
        ApiError::BadRequest(Issue::general(IssueType::Invalid, e.body_text()).into())
    })?;
    let status = match q.state.as_deref() {
        None => None,
        Some(code) => Some(OverrideStatus::from_code(code).ok_or_else(|| {
            ApiError::BadRequest(
                Issue::error(
                    IssueType::CodeInvalid,
                    "state",
                    format!("'{code}' is not an override state: use requested, granted, refused or ended"),
                )
                .into(),
            )
        })?),
    };
    let list: Vec<Value> = app
        .store
        .list_overrides(OverrideFilter {
            status,
            unreviewed: q.unreviewed.unwrap_or(false),
        })
        .await?
        .iter()
        .map(Override::to_json)
        .collect();
    Ok(Json(json!({ "total": list.len(), "overrides": list })).into_response())
}

/// `GET /api/v1/consent-overrides/{id}`: one override, for information governance and for the
/// organisation that asked for it (to see whether it was granted). Anyone else is told it does
/// not exist.
pub async fn show_override(
    State(app): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such override: {e}")))?;
    let not_found = || ApiError::NotFound(format!("override {id} is not known to this gateway"));
    let information_governance = principal.role == Role::InformationGovernance;
    require_scope(
        &principal,
        if information_governance {
            scope::OVERRIDE_REVIEW
        } else {
            scope::CONSENT_OVERRIDE
        },
    )?;
    let may_read = |o: &Override| {
        information_governance || o.requested_by.organisation == principal.organisation
    };
    match app.store.override_by_id(&id).await? {
        Some((o, _)) if may_read(&o) => Ok(Json(o.to_json()).into_response()),
        _ => Err(not_found()),
    }
}

/// What information governance says when it grants or refuses a request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictRequest {
    note: String,
}

/// `POST /api/v1/consent-overrides/{id}/grant`: information governance grants a request; it is in
/// force from now for the hours asked.
pub async fn grant_override(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    decide_override(app, principal, headers, path, body, Verdict::Grant).await
}

/// `POST /api/v1/consent-overrides/{id}/refuse`: information governance turns a request down.
pub async fn refuse_override(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    decide_override(app, principal, headers, path, body, Verdict::Refuse).await
}

async fn decide_override(
    app: AppState,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
    verdict: Verdict,
) -> Result<Response, ApiError> {
    require_information_governance(&principal)?;
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such override: {e}")))?;
    let req: VerdictRequest = parse_request(&body, "a grant or refusal")?;
    require_note(&req.note)?;
    let (stored, version) = stored_override(&app, &id).await?;
    let now = now_to_the_microsecond();
    let mut changed = stored.clone();
    changed.state = overrides::decide_request(&stored, &principal, verdict, req.note.trim(), now)
        .map_err(step_refused)?;
    let description = match changed.state.grant() {
        Some(g) => format!(
            "override {id} granted by information governance: in force until {}",
            g.until.to_rfc3339()
        ),
        None => format!("override {id} refused by information governance"),
    };
    let event = override_event(&principal, &headers, &changed, description, now);
    app.store
        .update_override(changed.clone(), version, vec![event])
        .await?;
    Ok(Json(changed.to_json()).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewRequest {
    /// `appropriate` or `inappropriate`.
    outcome: String,
    note: String,
}

/// `POST /api/v1/consent-overrides/{id}/review`: information governance reviews a granted
/// override. `inappropriate` ends it at once.
pub async fn review_override(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_information_governance(&principal)?;
    let Path(id) = path.map_err(|e| ApiError::NotFound(format!("no such override: {e}")))?;
    let req: ReviewRequest = parse_request(&body, "a review")?;
    let outcome = ReviewOutcome::from_code(&req.outcome).ok_or_else(|| {
        ApiError::Invalid(
            Issue::error(
                IssueType::CodeInvalid,
                "outcome",
                "outcome must be appropriate or inappropriate",
            )
            .into(),
        )
    })?;
    require_note(&req.note)?;
    let (stored, version) = stored_override(&app, &id).await?;
    let now = now_to_the_microsecond();
    let (state, review) = overrides::review(&stored, &principal, outcome, req.note.trim(), now)
        .map_err(step_refused)?;
    let ends = matches!(
        (&stored.state, &state),
        (OverrideState::Granted(_), OverrideState::Ended { .. })
    );
    let mut changed = stored;
    changed.state = state;
    changed.review = Some(review);
    let description = if ends {
        format!("override {id} reviewed by information governance: inappropriate; ended at once")
    } else {
        format!(
            "override {id} reviewed by information governance: {}",
            outcome.code()
        )
    };
    let event = override_event(&principal, &headers, &changed, description, now);
    app.store
        .update_override(changed.clone(), version, vec![event])
        .await?;
    Ok(Json(changed.to_json()).into_response())
}

async fn stored_override(app: &AppState, id: &str) -> Result<(Override, i64), ApiError> {
    app.store
        .override_by_id(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("override {id} is not known to this gateway")))
}

/// Every grant, refusal and review says why: the requester and later reviewers read it.
fn require_note(note: &str) -> Result<(), ApiError> {
    if note.trim().is_empty() {
        return Err(ApiError::Invalid(
            Issue::error(
                IssueType::Required,
                "note",
                "say why, in a sentence the requester and later reviewers can read",
            )
            .into(),
        ));
    }
    Ok(())
}

fn step_refused(e: StepError) -> ApiError {
    match e {
        StepError::NotInformationGovernance | StepError::OwnRequest => {
            ApiError::Forbidden(e.to_string())
        }
        StepError::WrongState(why) => {
            ApiError::Invalid(Issue::general(IssueType::BusinessRule, why).into())
        }
    }
}

/// A disclosure to be decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisclosureRequest {
    patient: String,
    recipient: String,
    #[serde(default)]
    recipient_organisation: Option<String>,
    data_class: String,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    document: Option<String>,
}

/// `POST /api/v1/disclosures/$decide`: may this be sent now? Decided at the moment of asking and
/// audited: the delivery outbox asks before every attempt.
pub async fn decide_disclosure(
    State(app): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    require_scope(&principal, scope::DISCLOSURE)?;
    // The service is the one that discloses (to the practice, an employer, another service):
    // nobody else asks what the person allows.
    if principal.role != Role::Service {
        return Err(ApiError::Forbidden(
            "only a service the person was referred to asks whether it may disclose".into(),
        ));
    }
    let req: DisclosureRequest = parse_request(&body, "a disclosure request")?;
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
        .map_err(ApiError::Invalid)?
    else {
        unreachable!("every missing part was reported")
    };
    require_party(&app, &principal, patient).await?;
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
        &*app.store,
        Some(&principal),
        patient,
        &question,
        request_id(&headers),
    )
    .await?;
    Ok(Json(json!({
        "decision": if decision.permitted() { "permit" } else { "deny" },
        "reason": decision.reason,
        "consent": decision.consent(),
        "override": decision.override_id(),
        "decidedAt": question.at.to_rfc3339(),
    }))
    .into_response())
}
