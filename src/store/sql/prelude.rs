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
use crate::intake::{Submission, SubmissionKind};
use crate::letters::delivery_state::{AttemptOutcome, DeliveryState};
use crate::store::plan::{Existing, PlannedWrite, plan};
use crate::store::{
    Admission, Candidate, ClientRecord, Delivery, DeliveryAttempt, DeliveryFilter, DeliveryUpdate,
    History, Lease, Lifecycle, MeshQuarantine, Outbox, OverrideFilter, Overrides,
    QuarantinedMessage, RecordParties, Refusal, Registry, Resources, SearchPage, StoreError,
    Stored, Submissions, Transaction,
};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
