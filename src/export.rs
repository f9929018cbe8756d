//! The evaluation export: pseudonymised NDJSON, one line per referral, for people whose consent
//! covers evaluation, and nobody else. A person appears under a keyed, stable pseudonym (the same
//! across exports made with the same key, so evaluators can follow a person over time), dates are
//! months, and ages are bands. Each person disclosed is audited.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::access::consent_file;
use crate::audit::{Event, Kind};
use crate::consent::Question;
use crate::fhir::resource::identifier_value;
use crate::fhir::search::SearchRequest;
use crate::fhir::systems;
use crate::store::{AuditTrail, PatientId, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("pseudonym key {path}: {problem}")]
    Key { path: String, problem: String },
}

/// The secret that keys pseudonyms. Whoever holds it can re-identify people from NHS numbers, so
/// it stays with the gateway, never with the export.
pub struct PseudonymKey(Vec<u8>);

impl PseudonymKey {
    /// Loads the key (hex) at `path`, creating a random one (owner-only) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, ExportError> {
        // Whoever can read the key can re-identify everyone in every export.
        crate::secret_file::load_or_create_key(path)
            .map(Self)
            .map_err(|problem| ExportError::Key {
                path: path.display().to_string(),
                problem,
            })
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The pseudonym of the person with `nhs_number`.
    pub fn pseudonym(&self, nhs_number: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(b"whg-evaluation-pseudonym:");
        mac.update(nhs_number.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

pub use crate::reports::facts::age_band;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub people: usize,
    pub referrals: usize,
    /// People left out because their consent does not cover evaluation.
    pub withheld: usize,
}

/// Writes the export to `out`.
pub async fn evaluation_export(
    store: &dyn Store,
    key: &PseudonymKey,
    out: &mut impl Write,
    now: DateTime<Utc>,
) -> Result<ExportSummary, ExportError> {
    let all = SearchRequest {
        resource_type: "ServiceRequest".into(),
        filters: Vec::new(),
        count: u32::MAX,
        offset: 0,
        sort: Default::default(),
        tenancy: None,
    };
    let mut by_patient: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in store.search_candidates(&all).await? {
        if let Some(p) = c.patient {
            by_patient.entry(p).or_default().push(c.id);
        }
    }
    let question = Question::evaluation(now);
    let mut summary = ExportSummary::default();
    let mut events = Vec::new();
    for (patient_ref, referral_ids) in &by_patient {
        let patient_id = PatientId::of_reference(patient_ref);
        let decision = consent_file(store, &patient_id).await?.decide(&question);
        if !decision.permitted() {
            summary.withheld += 1;
            continue;
        }
        let Some(patient) = store.read("Patient", patient_id.as_str()).await? else {
            continue;
        };
        // A person only ever referred by themselves has, until traced, only the number they
        // typed: anyone's, so no basis for a pseudonym that follows one person.
        let referred_by_a_practice = store
            .records_of_patient(&patient_id)
            .await?
            .iter()
            .any(|r| {
                r.practice
                    .as_deref()
                    .is_some_and(crate::workflow::is_practice)
            });
        let nhs_number = if referred_by_a_practice {
            identifier_value(&patient, systems::NHS_NUMBER)
        } else {
            crate::fhir::patient::verified_nhs_number(&patient)
        };
        let Some(nhs_number) = nhs_number else {
            // No NHS number, no stable pseudonym: left out rather than given a random one.
            summary.withheld += 1;
            continue;
        };
        let person = key.pseudonym(nhs_number);
        let birth_date = patient["birthDate"]
            .as_str()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let mut referrals = store.read_many("ServiceRequest", referral_ids).await?;
        referrals.sort_by(|a, b| a["authoredOn"].as_str().cmp(&b["authoredOn"].as_str()));
        let mut facts = Vec::new();
        for sr in &referrals {
            if let Some(f) = crate::app::reports::facts_in_store(store, sr, now).await? {
                facts.push((sr, f));
            }
        }
        // New or returning is told from all of the person's referrals, as the reports tell it.
        let mut marked: Vec<_> = facts.iter().map(|(_, f)| f.clone()).collect();
        crate::reports::facts::mark_returning(&mut marked);
        for ((sr, _), f) in facts.iter().zip(&marked) {
            let line = referral_line(&person, &patient, birth_date, sr, f);
            serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            summary.referrals += 1;
        }
        summary.people += 1;
        events.push((patient_ref.clone(), decision));
    }
    out.flush()?;
    let audit_events: Vec<Event> = events
        .iter()
        .map(|(patient, decision)| Event {
            kind: Kind::Export,
            principal: None,
            patient: Some(patient.clone()),
            entities: Vec::new(),
            decision: Some(decision),
            permitted: true,
            description: format!("included in the evaluation export: {}", decision.reason),
            at: now,
            request_id: None,
        })
        .collect();
    for chunk in audit_events.chunks(500) {
        store.append_audit(chunk).await?;
    }
    Ok(summary)
}

/// One referral, pseudonymised: no name, NHS number, address or exact date (the fields are
/// documented in `docs/reports.md#the-evaluation-export`).
fn referral_line(
    person: &str,
    patient: &Value,
    birth_date: Option<NaiveDate>,
    sr: &Value,
    f: &crate::reports::ReferralFacts,
) -> Value {
    json!({
        "person": person,
        "referralMonth": f.referred_on.format("%Y-%m").to_string(),
        "service": f.service,
        "route": f.route,
        "status": sr["status"],
        "stage": f.stage.code(),
        "priority": sr["priority"],
        "returning": f.returning,
        "ageBandAtReferral": birth_date.map(|b| age_band(b, f.referred_on)),
        "sex": patient["gender"],
        "place": f.place,
        "ethnicity": f.ethnicity,
        "disability": f.disability,
        "employmentStatusAtReferral": f.employment_status,
        "employerSize": f.employer_size,
        "conditionCategories": f.conditions,
        "daysToFirstContact": f.days_to_first_contact,
        "declineReason": f.decline_reason,
        "supportGiven": f.support,
        "employmentOutcomeAtDischarge": f.employment_outcome,
        "endedEarlyReason": f.ended_early,
        "followUps": f.follow_ups.iter().map(|u| json!({
            "weeksAfterDischarge": u.interval,
            "workStatus": u.work_status,
            "wellbeingSwemwbs": u.wellbeing,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_stable_and_not_the_number() {
        let a = PseudonymKey::from_bytes(vec![1; 32]);
        let b = PseudonymKey::from_bytes(vec![2; 32]);
        assert_eq!(a.pseudonym("9990000018"), a.pseudonym("9990000018"));
        assert_ne!(a.pseudonym("9990000018"), a.pseudonym("9990000026"));
        assert_ne!(a.pseudonym("9990000018"), b.pseudonym("9990000018"));
        assert!(!a.pseudonym("9990000018").contains("9990000018"));
        assert_eq!(a.pseudonym("9990000018").len(), 32);
    }

    #[test]
    fn age_bands() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(age_band(d("2000-06-02"), d("2026-06-01")), "25-34");
        assert_eq!(age_band(d("2000-06-01"), d("2026-06-01")), "25-34");
        assert_eq!(age_band(d("2002-06-02"), d("2026-06-01")), "16-24");
        assert_eq!(age_band(d("1960-01-01"), d("2026-06-01")), "65+");
    }

    #[test]
    fn key_file_is_created_once_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = PseudonymKey::load_or_create(&path).unwrap();
        let b = PseudonymKey::load_or_create(&path).unwrap();
        assert_eq!(a.pseudonym("x"), b.pseudonym("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
