// What the shared SQL code uses, included first into each backend module (see `store::sql`
// in `store/mod.rs`): one list, so both backends compile the same names.
use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, QueryBuilder, Row};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::consent::overrides::{Agent, Grant, Review, ReviewOutcome};
use crate::consent::{
    Code, DataClass, Override, OverrideReason, OverrideState, OverrideStatus, RecipientClass,
};
use crate::fhir::resource::stamp;
use crate::fhir::search::{
    Comparator, Filter, IndexEntry, SearchRequest, Sort, Tenancy, Token, format_instant,
    index_entries,
};
use crate::fhir::{Issue, IssueType};
use crate::fit_notes::FitNoteFacts;
use crate::fit_notes::prompts::PastPrompt;
use crate::intake::admission::{Admission, History, Refusal};
use crate::intake::{Submission, SubmissionKey, SubmissionKind};
use crate::letters::delivery_state::{AttemptOutcome, DeliveryState};
use crate::store::plan::{Existing, PlannedWrite, plan};
use crate::store::{
    AlertNotice, Alerts, Candidate, ClientId, ClientRecord, Delivery, DeliveryAttempt,
    DeliveryFilter, DeliveryId, DeliveryUpdate, Lease, Lifecycle, MeshQuarantine, NoticeOutcome,
    Outbox, OutboxDepth, OverrideFilter, Overrides, PatientId, QuarantinedMessage, RecordParties,
    Registry, Resources, SearchPage, Sessions, StoreError, Stored, Submissions, Transaction,
};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A read-only transaction whose statements all see one snapshot of the database: for reads of
/// more than one statement that must agree, such as a page and the total it is counted in.
async fn snapshot(pool: &Pool) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
    let mut tx = pool.begin().await?;
    if let Some(set) = SNAPSHOT_READ {
        sqlx::query(set).execute(&mut *tx).await?;
    }
    Ok(tx)
}

/// A timestamp as stored: fixed-width UTC text, whose order as text is its order in time (the
/// claims and sorts compare them in SQL).
fn stored_instant(t: DateTime<Utc>) -> String {
    format_instant(t)
}

fn stored_instants(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(stored_instant)
}

/// A stored timestamp read back; `what` names the record for the error.
fn instant_of(what: &str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("{what} has the unreadable time '{text}'")))
}

fn instants_of(what: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(|t| instant_of(what, t)).transpose()
}
