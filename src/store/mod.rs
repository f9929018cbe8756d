//! Persistence, split by capability: [`Submissions`], [`Resources`] (reads, searches under the
//! one tenancy relation, workflow changes with their AuditEvents), [`Overrides`], [`Outbox`],
//! [`Registry`], [`MeshQuarantine`] and [`Lifecycle`]; [`Store`] is all of them, which every
//! backend implements. What to write for a submission is planned by pure code in [`plan`].
//!
//! Two backends: [`sqlite`], the embedded default (one process), and [`postgres`], for several
//! instances on one database. Both run the same SQL: the files under `store/sql/` are included
//! into each backend module (`include!`) and compiled against that backend's concrete sqlx types
//! (`Conn`, `DbRow`, `Pool`), with the few places the dialects differ (JSON arrays as rows, row
//! locks, advisory locks) named by macros each backend defines. One text of every query, with no
//! generic executor bounds repeated on every function; `tests/store_contract.rs` holds both to
//! the same behaviour.

pub mod plan;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;

use crate::audit::{self, Event};
use crate::config::Config;
use crate::consent::{Decision, Override, OverrideStatus};
use crate::fhir::Issues;
use crate::fhir::search::SearchRequest;
use crate::fit_notes::FitNoteFacts;
pub use crate::ids::{ClientId, DeliveryId, PatientId};
use crate::intake::admission::Admission;
use crate::intake::{Submission, SubmissionKey};
use crate::letters::delivery_state::{AttemptOutcome, DeliveryState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The submission key was used before for different content.
    #[error("{namespace} '{key}' was already received with different content")]
    Conflict {
        namespace: String,
        key: String,
        existing_id: String,
    },
    /// The person's consent does not let the submission in; nothing was stored.
    #[error("refused by consent: {}", .0.reason)]
    Refused(Decision),
    /// A rule over the person's history turns the submission away; nothing was stored.
    #[error("refused: {} rule(s) broken", .0.len())]
    Rejected(Issues),
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
    /// The gateway's own code failed (a rule panicked): this change was not made, and the
    /// writer goes on with the others.
    #[error("a bug stopped this change: {0}")]
    Bug(&'static str),
    /// The letter is no longer held under the lease the change was made under (it ran out and
    /// another instance took the letter over): nothing was recorded.
    #[error("delivery {0} is no longer held under this lease")]
    LeaseLost(String),
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// A registered client system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClientRecord {
    pub id: ClientId,
    pub role: crate::caller::Role,
    /// The organisation's local code: an ODS code or a service id.
    pub organisation: String,
    pub scopes: Vec<String>,
    /// A JWK Set the client's assertions are checked against, or
    pub jwks: Option<Value>,
    /// where to fetch one.
    pub jwks_url: Option<String>,
    #[serde(serialize_with = "instant::write")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "instant::write_optional")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// An integrator's client, in the test tenant.
    pub test_tenant: bool,
}

/// Outcome of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Id of the focal resource (the ServiceRequest or the fit-note Observation).
    pub focus_id: String,
    /// False when the same submission had been stored before (an idempotent resend).
    pub created: bool,
    /// Ids of the referral-prompt Tasks the submission created (also on a resend).
    pub prompts: Vec<String>,
}

/// Who a stored record (a referral or a fit note) is from, for and about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordParties {
    /// `ServiceRequest/{id}` or `Observation/{id}`.
    pub record: String,
    pub patient_id: PatientId,
    /// `system|value` of the practice that sent the record, when it is a party to this
    /// resource (a fit note reaches the services of the person's referrals, not their practices).
    pub practice: Option<String>,
    /// `system|value` of the receiving service; none for a fit note.
    pub service: Option<String>,
    /// The version of the person's Patient that came with the record (see `docs/security.md`,
    /// demographics): what each party is shown of the person.
    pub patient_version: Option<i64>,
}

/// A search hit before paging: its id and the person it is about (`Patient/id`), so results can
/// be filtered by consent before they are counted and paged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub patient: Option<String>,
}

/// Resources stored together with a referral's workflow: a triage, a contact or a letter. All of
/// it is written in one transaction, or none of it.
#[derive(Debug, Default)]
pub struct Transaction {
    /// New resources, their ids already assigned (so they can refer to each other).
    pub creates: Vec<Value>,
    /// Changed resources, each with the version it was based on: another change in between
    /// refuses the whole transaction with [`StoreError::VersionConflict`].
    pub updates: Vec<(Value, i64)>,
    /// The referral (ServiceRequest id) the new resources belong to, for tenancy (unused when
    /// nothing is created, e.g. a referral prompt answered).
    pub referral: String,
    /// Letters to queue for delivery.
    pub deliveries: Vec<Delivery>,
    /// The AuditEvents recording the change, written in its transaction (not members of the
    /// referral): a change is never stored without its audit, nor audited without being stored.
    pub audit: Vec<Value>,
    /// Fit notes (Observation ids) entered in error by this change: kept, but no longer counted
    /// in the person's fit-note history,
    pub withdrawn_fit_notes: Vec<String>,
    /// and the referral prompts (Task ids) withdrawn with them: no longer counted when the rules
    /// decide whether a prompt fired before.
    pub withdrawn_prompts: Vec<String>,
    /// Fit notes amended by this change, as the history rules now read them.
    pub amended_fit_notes: Vec<AmendedFitNote>,
}

/// A fit note amended: what the history rules now read of it, and the rule it must still keep,
/// checked in the change's transaction under the person's lock (as a new fit note's admission
/// is), so a fit note of theirs committed a moment earlier by any instance is counted.
#[derive(Debug, Clone)]
pub struct AmendedFitNote {
    /// `reference` is `Observation/{id}`.
    pub facts: crate::fit_notes::FitNoteFacts,
    pub patient_id: PatientId,
    /// The DWP's duration rule over the person's run of fit notes (when the sender gave no
    /// absence start): the gap that still counts as consecutive, and where a breach is reported.
    pub duration_rule: Option<(u32, &'static str)>,
}

/// A letter in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The Communication's id.
    pub id: DeliveryId,
    /// The DocumentReference holding the PDF.
    pub document_id: String,
    pub referral_id: String,
    #[serde(skip)]
    pub patient_id: PatientId,
    /// `system|value` of the service and of the practice.
    pub service: String,
    pub practice: String,
    pub urgent: bool,
    pub state: DeliveryState,
    pub attempts: i64,
    /// The same on every attempt (the FHIR message's Bundle id and X-Request-ID).
    pub message_id: String,
    pub correlation_id: String,
    #[serde(serialize_with = "instant::write")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "instant::write")]
    pub next_attempt_at: DateTime<Utc>,
    /// The end of the retry window: a letter undelivered by then is dead.
    #[serde(serialize_with = "instant::write")]
    pub deadline_at: DateTime<Utc>,
    /// When an urgent letter not yet acknowledged is escalated.
    #[serde(serialize_with = "instant::write_optional")]
    pub escalate_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "instant::write_optional")]
    pub escalated_at: Option<DateTime<Utc>>,
    pub channel: Option<String>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "instant::write")]
    pub updated_at: DateTime<Utc>,
    /// The MESH message id of the last send.
    pub transport_id: Option<String>,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryAttempt {
    pub attempt: i64,
    #[serde(serialize_with = "instant::write")]
    pub at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
    pub detail: Option<String>,
}

/// A hold on letters: while it lasts, no other holder claims them. Whatever changes a delivery
/// claims it first; recording the change (or [`Outbox::release_delivery`]) lets it go, and a
/// holder that dies lets it go when `until` passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder: the gateway instance's id, chosen at start-up.
    pub owner: String,
    /// Until when. With `owner`, it names one claim: a change is recorded only under the claim
    /// that took the letter. Stored to the microsecond (as every timestamp), so the holder
    /// should make it from a time truncated to one ([`Lease::new`]).
    pub until: DateTime<Utc>,
}

impl Lease {
    /// `owner`'s lease until `until`, to the microsecond the store keeps: the lease a change is
    /// recorded under must compare equal to the one stored.
    pub fn new(owner: impl Into<String>, until: DateTime<Utc>) -> Lease {
        Lease {
            owner: owner.into(),
            until: until.trunc_subsecs(6),
        }
    }
}

/// What the outbox worker records after an attempt (or an escalation).
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub id: DeliveryId,
    /// The lease the letter was claimed under: the update is refused with
    /// [`StoreError::LeaseLost`] if the letter is no longer held under it, and releases it.
    pub lease: Lease,
    pub state: DeliveryState,
    /// The attempt made, if one was: its number becomes the delivery's attempt count.
    pub attempt: Option<DeliveryAttempt>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub channel: Option<String>,
    pub escalated_at: Option<DateTime<Utc>>,
    /// The MESH message id of a send.
    pub transport_id: Option<String>,
    /// A new end of the retry window (a letter sent again by hand).
    pub deadline_at: Option<DateTime<Utc>>,
    /// The letter's Communication with its new status (stored as a new version).
    pub communication: Value,
    /// The AuditEvents recording what led to the change (a disclosure decision, a resend),
    /// written in its transaction.
    pub audit: Vec<Value>,
    /// An alert the change raises (a letter dead or escalated, its practice failing) and the
    /// AuditEvent recording it, both stored in its transaction unless an alert of its kind
    /// about its subject is open.
    pub alert: Option<(crate::alerts::NewAlert, Value)>,
}

/// Which overrides to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct OverrideFilter {
    pub status: Option<OverrideStatus>,
    /// Only overrides that were granted (in force, expired or ended since) and never reviewed.
    pub unreviewed: bool,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub service: Option<String>,
    pub practice: Option<String>,
    pub referral: Option<String>,
    pub message_id: Option<String>,
}

/// How many letters in one state the outbox still has in hand, and when the oldest was written.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxDepth {
    pub state: DeliveryState,
    pub letters: u64,
    pub oldest: Option<DateTime<Utc>>,
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub total: u64,
    pub resources: Vec<Value>,
}

/// Referrals and fit notes as they arrive: stored once per write-once key, with what intake reads of the person.
#[async_trait]
pub trait Submissions: Send + Sync {
    /// Stores every resource of a submission atomically and durably, or nothing. A resend of a
    /// stored key with the same content returns the stored record; with other content, a
    /// [`StoreError::Conflict`]. A new one is stored only if `admission` (when given) lets it
    /// in; otherwise [`StoreError::Refused`] or [`StoreError::Rejected`].
    async fn submit(
        &self,
        submission: Submission,
        admission: Option<Admission>,
    ) -> Result<Stored, StoreError>;

    /// A person's fit notes, as the history rules read them.
    async fn fit_notes_of_patient(
        &self,
        patient_id: &PatientId,
    ) -> Result<Vec<FitNoteFacts>, StoreError>;

    /// The id of the Patient with this NHS number, if the gateway holds one.
    async fn patient_by_nhs_number(
        &self,
        nhs_number: &str,
    ) -> Result<Option<PatientId>, StoreError>;

    /// The referral-prompt Tasks (still counted) of the person a fit note (Observation id) is
    /// about: those a correction of it may have to withdraw.
    async fn prompts_of_person_of(&self, observation_id: &str) -> Result<Vec<String>, StoreError>;

    /// The id of the record (a ServiceRequest, an Observation) stored under a write-once key,
    /// if one was: how a later message about a submission (a cancellation) finds it.
    async fn submitted(&self, key: &SubmissionKey) -> Result<Option<String>, StoreError>;
}

/// Stored FHIR resources: reads, searches (limited by the one tenancy relation), and workflow changes with their AuditEvents.
#[async_trait]
pub trait Resources: Send + Sync {
    /// The current version of a resource, stamped with `id` and `meta`.
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError>;

    /// A resource as it was at `version`: the current one, or one kept in its history.
    async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Value>, StoreError>;

    /// Resources by id, in the order asked; missing ones are left out.
    async fn read_many(
        &self,
        resource_type: &str,
        ids: &[String],
    ) -> Result<Vec<Value>, StoreError>;

    /// Resources matching every filter, newest first.
    async fn search(&self, request: &SearchRequest) -> Result<SearchPage, StoreError>;

    /// Every match of a search (ignoring `count` and `offset`), newest first.
    async fn search_candidates(
        &self,
        request: &SearchRequest,
    ) -> Result<Vec<Candidate>, StoreError>;

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

    /// Stores a workflow change atomically and durably (see [`Transaction`]); returns the
    /// resources as stored.
    async fn transact(&self, transaction: Transaction) -> Result<Vec<Value>, StoreError>;

    /// The records (referrals and fit notes) a stored resource belongs to, with their parties:
    /// the one tenancy relation (`resource_parties`), which searches are limited by too.
    async fn records_of(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<RecordParties>, StoreError>;

    /// Every referral and fit note about a person.
    async fn records_of_patient(
        &self,
        patient_id: &PatientId,
    ) -> Result<Vec<RecordParties>, StoreError>;
}

/// Break-glass overrides of a consent decision and their grants and reviews.
#[async_trait]
pub trait Overrides: Send + Sync {
    /// Records a requested override, with the AuditEvents of the request, in one transaction.
    async fn create_override(&self, request: Override, audit: Vec<Value>)
    -> Result<(), StoreError>;

    /// One override and its version, to base a change on.
    async fn override_by_id(&self, id: &str) -> Result<Option<(Override, i64)>, StoreError>;

    /// Stores an override's new state (a grant, a refusal, a review) with its AuditEvents, in one
    /// transaction. Refused with [`StoreError::VersionConflict`] if it changed since `version`.
    async fn update_override(
        &self,
        changed: Override,
        version: i64,
        audit: Vec<Value>,
    ) -> Result<(), StoreError>;

    /// A person's overrides, newest first.
    async fn overrides_of_patient(
        &self,
        patient_id: &PatientId,
    ) -> Result<Vec<Override>, StoreError>;

    /// Overrides for information governance, newest first.
    async fn list_overrides(&self, filter: OverrideFilter) -> Result<Vec<Override>, StoreError>;
}

/// Letters queued for delivery to practices, their attempts and states.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Takes up to `limit` letters due for an attempt at `now` that no unexpired lease holds,
    /// urgent first, then oldest due, under `lease`; returns them as stored, in that order.
    async fn claim_due(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Takes up to `limit` urgent letters not yet delivered whose escalation time has passed, not
    /// yet escalated, that no unexpired lease holds, under `lease`.
    async fn claim_overdue_urgent(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Takes one letter under `lease`, as stored now; none if there is no such letter or an
    /// unexpired lease (this holder's too) holds it.
    async fn claim_delivery(
        &self,
        lease: &Lease,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Lets go of a letter held under `lease` without changing it (nothing if it is not held
    /// under it).
    async fn release_delivery(&self, lease: &Lease, id: &DeliveryId) -> Result<(), StoreError>;

    /// Records an attempt's result (or an escalation), with the letter's Communication, if the
    /// letter is still held under `update.lease`; releases it.
    async fn update_delivery(&self, update: DeliveryUpdate) -> Result<(), StoreError>;

    /// One delivery and its attempts.
    async fn delivery(
        &self,
        id: &DeliveryId,
    ) -> Result<Option<(Delivery, Vec<DeliveryAttempt>)>, StoreError>;

    /// Deliveries matching `filter`, newest first.
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError>;

    /// Since when every attempt at practice `practice`'s endpoint (`system|value`) has failed,
    /// whichever letter it carried; none if its last attempt was answered, or none was made.
    async fn endpoint_failing_since(
        &self,
        practice: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// For each state a letter is still in the outbox's hands in (not final), how many letters
    /// and the oldest one's time of writing; states with none are left out.
    async fn outbox_depth(&self) -> Result<Vec<OutboxDepth>, StoreError>;
}

/// Registered client systems and the client assertions they have used.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Registers a client; [`StoreError::Conflict`] if the id is taken.
    async fn register_client(&self, client: ClientRecord) -> Result<(), StoreError>;

    /// Every registered client, revoked ones included.
    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError>;

    async fn client(&self, id: &ClientId) -> Result<Option<ClientRecord>, StoreError>;

    /// Revokes a client; false if there is no such client or it was already revoked.
    async fn revoke_client(&self, id: &ClientId) -> Result<bool, StoreError>;

    /// Replaces an active client's JWK Set with `keys` if it is still `current` (a key rotation:
    /// one added or retired); false if the client is revoked, unknown, or its keys changed since
    /// they were read, so two rotations at once cannot lose one.
    async fn replace_client_keys(
        &self,
        id: &ClientId,
        current: &Value,
        keys: Value,
    ) -> Result<bool, StoreError>;

    /// Records a client assertion's `jti` as used until `expires_at` (Unix seconds); false if it
    /// was used before (a replay).
    async fn consume_assertion(
        &self,
        client_id: &ClientId,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError>;
}

/// MESH messages that answer none of the gateway's letters, kept for review.
#[async_trait]
pub trait MeshQuarantine: Send + Sync {
    /// Quarantines a MESH message with its content (none when it was too large to read) and its
    /// AuditEvent, in one transaction. False if the message was quarantined before (a crash
    /// before it was acknowledged to MESH brings it back): nothing is written twice.
    async fn quarantine_mesh_message(
        &self,
        message: QuarantinedMessage,
        content: Option<Vec<u8>>,
        audit: Value,
    ) -> Result<bool, StoreError>;

    /// Quarantined MESH messages, newest first: `limit` of them from `offset`, and how many there
    /// are in all.
    async fn quarantined_mesh_messages(
        &self,
        limit: u32,
        offset: u32,
    ) -> Result<(u64, Vec<QuarantinedMessage>), StoreError>;

    /// One quarantined MESH message and its content.
    async fn quarantined_mesh_message(
        &self,
        id: &str,
    ) -> Result<Option<(QuarantinedMessage, Option<Vec<u8>>)>, StoreError>;
}

/// Whether the store can serve, and closing it.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Whether the store can take reads and writes now.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and closes connections.
    async fn close(&self);
}

/// What instances of the gateway on one database share beyond the data: request allowances,
/// and which instance runs a task that only one may run at a time.
#[async_trait]
pub trait Coordination: Send + Sync {
    /// Takes one request from `key`'s allowance (`rate` a second, `burst` at once) at `now`, in
    /// the store every instance shares; `Ok(None)` when instances share nothing (SQLite: one
    /// process owns the database, and the caller keeps its allowances in memory).
    async fn take_shared_allowance(
        &self,
        key: &str,
        rate: f64,
        burst: f64,
        now: DateTime<Utc>,
    ) -> Result<Option<Allowance>, StoreError>;

    /// Whether this instance is, now, the one that runs `task`. The first to ask holds it until
    /// it stops (or its database session ends, when it is killed); the others are told no.
    async fn leads(&self, task: Singleton) -> Result<bool, StoreError>;
}

/// Whether a request was within its allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    Admitted,
    /// Refused: whole seconds until a request would be admitted (at least 1).
    Refused {
        wait_secs: u64,
    },
}

/// A task only one instance may run at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Singleton {
    /// Reading the gateway's MESH inbox: one reader, so a message is examined once.
    MeshInbox,
    /// Sending alerts to the on-call routes: one sender, so each alert is sent once.
    AlertNotifier,
}

impl Singleton {
    pub fn key(self) -> &'static str {
        match self {
            Singleton::MeshInbox => "singleton|mesh-inbox",
            Singleton::AlertNotifier => "singleton|alert-notifier",
        }
    }
}

/// People's dashboard sessions ended before their time (signed out): sessions are sealed
/// cookies, not rows, so only the ended ones are kept, each until it would have run out anyway.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Records session `id` as ended until `until` (Unix seconds), with its AuditEvent, in one
    /// transaction; false (and no AuditEvent) if it was ended before.
    async fn end_session(&self, id: &str, until: i64, audit: Value) -> Result<bool, StoreError>;

    /// Whether session `id` was ended.
    async fn session_ended(&self, id: &str) -> Result<bool, StoreError>;
}

/// How one try at sending an alert to its on-call routes went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertNotice {
    /// The routes (by name) that took it this time: never sent it again.
    pub taken_by: Vec<String>,
    pub at: DateTime<Utc>,
    pub outcome: NoticeOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// Every route that takes its kind has it now.
    AllTaken,
    /// A route did not: the others are tried again at this time.
    RetryAt(DateTime<Utc>),
}

/// Operational alerts (`crate::alerts`): raised once while open, notified, acknowledged.
#[async_trait]
pub trait Alerts: Send + Sync {
    /// Stores `alert` with its AuditEvent, in one transaction, unless an alert of its kind
    /// about its subject is open (not acknowledged): the new alert's id, or none.
    async fn raise_alert(
        &self,
        alert: crate::alerts::NewAlert,
        audit: Value,
    ) -> Result<Option<String>, StoreError>;

    /// The alerts in `scope`, newest first, at most `limit`: those still open, or those
    /// acknowledged.
    async fn alerts(
        &self,
        scope: &crate::alerts::AlertScope,
        acknowledged: bool,
        limit: u32,
    ) -> Result<Vec<crate::alerts::Alert>, StoreError>;

    async fn alert(&self, id: &str) -> Result<Option<crate::alerts::Alert>, StoreError>;

    /// Records alert `id` acknowledged by `by` at `at`, with its AuditEvent, in one
    /// transaction; false (and no AuditEvent) if it was acknowledged before or does not exist.
    async fn acknowledge_alert(
        &self,
        id: &str,
        by: &str,
        at: DateTime<Utc>,
        audit: Value,
    ) -> Result<bool, StoreError>;

    /// Alerts still open, not yet taken by every on-call route, tried fewer than
    /// `max_attempts` times and due at `now`, oldest first, each with the routes that took it.
    async fn alerts_to_notify(
        &self,
        now: DateTime<Utc>,
        max_attempts: u32,
        limit: u32,
    ) -> Result<Vec<crate::alerts::Alert>, StoreError>;

    async fn record_alert_notice(&self, id: &str, notice: AlertNotice) -> Result<(), StoreError>;
}

/// Everything the gateway keeps, by capability. Each backend implements every part; callers
/// hold an `Arc<dyn Store>` and name the part they use.
pub trait Store:
    Submissions
    + Resources
    + Overrides
    + Outbox
    + Registry
    + MeshQuarantine
    + Sessions
    + Alerts
    + Coordination
    + Lifecycle
{
}

impl<T> Store for T where
    T: Submissions
        + Resources
        + Overrides
        + Outbox
        + Registry
        + MeshQuarantine
        + Sessions
        + Alerts
        + Coordination
        + Lifecycle
{
}

/// The audit trail: AuditEvents are only ever appended (no route updates or deletes them). A
/// use case whose change is its own transaction stores its events with the change instead.
#[async_trait]
pub trait AuditTrail: Send + Sync {
    async fn append_audit(&self, events: &[Event<'_>]) -> Result<(), StoreError>;
}

#[async_trait]
impl<T: Resources + ?Sized> AuditTrail for T {
    async fn append_audit(&self, events: &[Event<'_>]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.create(events.iter().map(audit::audit_event).collect())
            .await
            .map(drop)
    }
}

/// A database URL fit for a message or a log: its password, if it has one, replaced.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        // Not a URL, so no password to find, unless it has the `user:password@` part of one.
        Err(_) if !url.contains('@') => url.to_string(),
        Err(_) => "(a database URL that does not parse)".into(),
    }
}

/// Opens the store named by `config.database_url`.
pub async fn open(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.database_url.as_str();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::open(url, &config.store).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PostgresStore::open(url, &config.store).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(redacted_url(url)))
    }
}

/// A message from the gateway's MESH inbox that answers none of its letters, kept for review.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedMessage {
    /// MESH's message id.
    pub id: String,
    /// The mailbox that sent it (`mex-from`), as MESH states it.
    pub sender: String,
    pub workflow_id: String,
    /// `DATA`, or `REPORT` (MESH's own).
    pub message_type: String,
    /// The sender's `mex-localid`.
    pub local_id: String,
    #[serde(serialize_with = "instant::write")]
    pub received_at: DateTime<Utc>,
    /// Its size in bytes; at least this many when it was too large to read.
    pub size: u64,
    /// A `mesh-quarantine-reason` code (see [`crate::delivery::mesh::Quarantine`]).
    pub reason: String,
    /// The letter (its Communication's id) an acknowledgement named, if it named one.
    pub letter_id: Option<String>,
    /// Whether its content was kept (not when it was too large to read).
    pub has_content: bool,
}

/// Timestamps in what the store answers (a letter's delivery in the API, a client listed) as
/// the store keeps them: fixed-width UTC to the microsecond.
mod instant {
    use chrono::{DateTime, Utc};

    use crate::fhir::search::format_instant;

    pub fn write<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_instant(*t))
    }

    pub fn write_optional<S: serde::Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => write(t, s),
            None => s.serialize_none(),
        }
    }
}
