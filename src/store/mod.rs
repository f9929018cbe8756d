//! Persistence behind the [`Store`] trait. SQLite (embedded, the default) lives in [`sqlite`];
//! a PostgreSQL implementation plugs in behind the same trait. What to write for a submission is
//! planned by pure code in [`plan`], shared by every backend.

pub mod plan;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::Config;
use crate::consent::Decision;
use crate::fhir::search::SearchRequest;
use crate::intake::{ReferralSubmission, SubmissionEntry};

/// The consent check a referral must pass, made inside the transaction that would store it, so a
/// withdrawal committed a moment earlier is always seen. Given the Consents stored for the person
/// the referral is about (none for a new person), it returns the resources to store with the
/// referral (its audit record) or the decision that refuses it.
pub type Admission = Box<dyn FnOnce(&[Value]) -> Result<Vec<SubmissionEntry>, Decision> + Send>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The submission key was used before for different content.
    #[error("{namespace} referral '{key}' was already received with different content")]
    Conflict {
        namespace: String,
        key: String,
        existing_id: String,
    },
    /// The person's consent does not let the referral in; nothing was stored.
    #[error("refused by consent: {}", .0.reason)]
    Refused(Decision),
    /// The resource changed since the version the caller based its change on.
    #[error("{resource} is at version {current}, not {expected}")]
    VersionConflict {
        resource: String,
        current: i64,
        expected: i64,
    },
    #[error("{0} does not exist")]
    NotFound(String),
    /// The database cannot be reached or written now; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back: a bug or tampering, never the caller's fault.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("unsupported database URL '{0}': use sqlite://PATH")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Outcome of a referral submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReferral {
    pub service_request_id: String,
    /// False when the same submission had been stored before (an idempotent resend).
    pub created: bool,
}

/// Who a stored referral is from, for and about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralParties {
    pub service_request_id: String,
    pub patient_id: String,
    /// `system|value` of the sending practice.
    pub practice: String,
    /// `system|value` of the receiving service.
    pub service: String,
}

/// A search hit before paging: its id and the person it is about (`Patient/id`), so results can
/// be filtered by consent before they are counted and paged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub patient: Option<String>,
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub total: u64,
    pub resources: Vec<Value>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Stores every resource of a submission atomically and durably, or nothing. A resend of a
    /// stored key with the same content returns the stored referral; with other content, a
    /// [`StoreError::Conflict`]. A new referral is stored only if `admission` (when given) lets it
    /// in; otherwise [`StoreError::Refused`].
    async fn submit_referral(
        &self,
        submission: ReferralSubmission,
        admission: Option<Admission>,
    ) -> Result<StoredReferral, StoreError>;

    /// The current version of a resource, stamped with `id` and `meta`.
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError>;

    /// Resources matching every filter, newest first.
    async fn search(&self, request: &SearchRequest) -> Result<SearchPage, StoreError>;

    /// Stores new resources (Consents, AuditEvents) atomically and durably, assigning ids. Returns
    /// them as stored.
    async fn create(&self, resources: Vec<Value>) -> Result<Vec<Value>, StoreError>;

    /// Replaces a stored resource with a new version (keeping the old one in history). With
    /// `expected_version`, refuses with [`StoreError::VersionConflict`] if another change came first.
    async fn update(
        &self,
        resource: Value,
        expected_version: Option<i64>,
    ) -> Result<Value, StoreError>;

    /// The referrals a stored resource came in with.
    async fn referrals_of(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<ReferralParties>, StoreError>;

    /// Every referral about a person.
    async fn referrals_of_patient(
        &self,
        patient_id: &str,
    ) -> Result<Vec<ReferralParties>, StoreError>;

    /// Every match of a search (ignoring `count` and `offset`), newest first.
    async fn search_candidates(
        &self,
        request: &SearchRequest,
    ) -> Result<Vec<Candidate>, StoreError>;

    /// Resources by id, in the order asked; missing ones are left out.
    async fn read_many(
        &self,
        resource_type: &str,
        ids: &[String],
    ) -> Result<Vec<Value>, StoreError>;

    /// Records a consent override for a person.
    async fn create_override(&self, patient_id: &str, record: Value) -> Result<(), StoreError>;

    /// A person's overrides, newest first.
    async fn overrides_of_patient(&self, patient_id: &str) -> Result<Vec<Value>, StoreError>;

    /// Overrides for review, newest first; only those not yet reviewed when `unreviewed`.
    async fn list_overrides(&self, unreviewed: bool) -> Result<Vec<Value>, StoreError>;

    /// Records the review of an override; `None` if there is no such override.
    async fn review_override(&self, id: &str, review: Value) -> Result<Option<Value>, StoreError>;

    /// Whether the store can take reads and writes now.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and closes connections.
    async fn close(&self);
}

/// Opens the store named by `config.database_url`.
pub async fn open(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.database_url.as_str();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::open(url, &config.store).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
