//! Persistence behind the [`Store`] trait. SQLite (embedded, the default) lives in [`sqlite`];
//! a PostgreSQL implementation plugs in behind the same trait. What to write for a submission is
//! planned by pure code in [`plan`], shared by every backend.

pub mod plan;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::Config;
use crate::fhir::search::SearchRequest;
use crate::intake::ReferralSubmission;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The submission key was used before for different content.
    #[error("{namespace} referral '{key}' was already received with different content")]
    Conflict {
        namespace: String,
        key: String,
        existing_id: String,
    },
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
    /// [`StoreError::Conflict`].
    async fn submit_referral(
        &self,
        submission: ReferralSubmission,
    ) -> Result<StoredReferral, StoreError>;

    /// The current version of a resource, stamped with `id` and `meta`.
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError>;

    /// Resources matching every filter, newest first.
    async fn search(&self, request: &SearchRequest) -> Result<SearchPage, StoreError>;

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
