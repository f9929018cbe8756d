//! SQLite store: WAL mode, `synchronous = FULL`, one writer task that commits submissions in
//! batches (group commit), and a pool of readers.
//!
//! Group commit is what makes durable intake fast: every request waits for an fsync, but requests
//! that arrive while one commit is in flight share the next one. Each submission runs inside its
//! own savepoint, so one failing submission never takes its batch-mates down with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::plan::{Existing, PlannedWrite, plan};
use super::{
    Admission, Candidate, ClientRecord, Delivery, DeliveryAttempt, DeliveryFilter, DeliveryUpdate,
    History, Lease, OverrideFilter, QuarantinedMessage, RecordParties, Refusal, SearchPage, Store,
    StoreError, Stored, Transaction,
};
use crate::config::StoreConfig;
use crate::consent::overrides::{Agent, Grant, Review, ReviewOutcome};
use crate::consent::{
    Code, DataClass, Override, OverrideReason, OverrideState, OverrideStatus, RecipientClass,
};
use crate::delivery::state::{AttemptOutcome, DeliveryState};
use crate::fhir::resource::stamp;
use crate::fhir::search::{
    Comparator, Filter, IndexEntry, SearchRequest, Sort, Tenancy, Token, format_instant,
    index_entries,
};
use crate::fhir::{Issue, IssueType};
use crate::fit_notes::FitNoteFacts;
use crate::fit_notes::prompts::PastPrompt;
use crate::intake::{Submission, SubmissionKind};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

async fn begin_savepoint(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    sqlx::query("SAVEPOINT job").execute(&mut *conn).await?;
    Ok(())
}

/// Keeps the savepoint's writes if `result` is a success, undoes them otherwise.
async fn end_savepoint<T>(
    conn: &mut SqliteConnection,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    if result.is_err() {
        sqlx::query("ROLLBACK TO job").execute(&mut *conn).await?;
    }
    sqlx::query("RELEASE job").execute(&mut *conn).await?;
    result
}

/// Runs `$work` (a future using `$conn`) in a savepoint: kept if it succeeds, undone if it fails.
macro_rules! in_savepoint {
    ($conn:expr, $work:expr) => {
        match begin_savepoint($conn).await {
            Ok(()) => {
                let result = $work.await;
                end_savepoint($conn, result).await
            }
            Err(e) => Err(e),
        }
    };
}

/// Rows that nothing in a batch reads back through SQL, held until the batch ends and written
/// then in a few statements instead of a few per job: who each referral is from, for and about,
/// what it brought in, and the search index entries of everything written.
#[derive(Default)]
struct Pending {
    /// `[service_request_id, patient_id, practice, service, created_at, patient_version]`
    referrals: Vec<Value>,
    /// `[resource_type, resource_id, service_request_id]`
    members: Vec<Value>,
    /// Index entries of resources written in the batch, by `(type, id)`: the last write wins.
    tokens: HashMap<(String, String), Vec<IndexEntry>>,
    /// Resources a job replaced: their entries from earlier jobs of the batch are dropped.
    replaced: Vec<(String, String)>,
}

impl Pending {
    /// Takes in what a job that was kept left pending.
    fn absorb(&mut self, job: Pending) {
        for key in &job.replaced {
            self.tokens.remove(key);
        }
        self.tokens.extend(job.tokens);
        self.referrals.extend(job.referrals);
        self.members.extend(job.members);
    }

    async fn write(self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        if !self.referrals.is_empty() {
            sqlx::query(
                "INSERT INTO referrals (service_request_id, patient_id, practice, service, created_at, patient_version)
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM json_each(?)",
            )
            .bind(Value::Array(self.referrals).to_string())
            .execute(&mut *conn)
            .await?;
        }
        if !self.members.is_empty() {
            sqlx::query(
                "INSERT OR IGNORE INTO referral_members (resource_type, resource_id, service_request_id)
                 SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
            )
            .bind(Value::Array(self.members).to_string())
            .execute(&mut *conn)
            .await?;
        }
        let rows: Vec<(&(String, String), &IndexEntry)> = self
            .tokens
            .iter()
            .flat_map(|(key, entries)| entries.iter().map(move |e| (key, e)))
            .collect();
        // SQLite allows 32766 bound parameters: 5 per row.
        for chunk in rows.chunks(4000) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO search_tokens (resource_type, resource_id, param, system, value) ",
            );
            insert.push_values(chunk, |mut row, ((t, id), e)| {
                row.push_bind(t.clone())
                    .push_bind(id.clone())
                    .push_bind(e.param)
                    .push_bind(e.system.clone())
                    .push_bind(e.value.clone());
            });
            insert.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Work for the single writer. Each job runs in its own savepoint within a group commit.
enum WriteJob {
    Submit(Submission, Option<Admission>, Reply<Stored>),
    Create(Vec<Value>, Reply<Vec<Value>>),
    Update(Value, Option<i64>, Reply<Value>),
    CreateOverride(Override, Vec<Value>, Reply<()>),
    UpdateOverride(Override, i64, Vec<Value>, Reply<()>),
    /// Client registry changes and assertion `jti`s, small writes that must be durable too.
    Client(ClientWrite, Reply<bool>),
    Transact(Transaction, Reply<Vec<Value>>),
    Delivery(DeliveryUpdate, Reply<()>),
    /// Letters taken under a lease, and a lease let go.
    Claim(Lease, Claim, Reply<Vec<Delivery>>),
    Release(Lease, String, Reply<()>),
    /// A MESH message set aside, its content and its AuditEvent.
    Quarantine(QuarantinedMessage, Option<Vec<u8>>, Value, Reply<bool>),
}

enum ClientWrite {
    Register(ClientRecord),
    Revoke(String),
    ConsumeAssertion {
        client_id: String,
        jti: String,
        expires_at: i64,
    },
}

/// A job's answer, held until its batch is durable.
enum Answer {
    Submit(Reply<Stored>, Result<Stored, StoreError>),
    Create(Reply<Vec<Value>>, Result<Vec<Value>, StoreError>),
    Update(Reply<Value>, Result<Value, StoreError>),
    CreateOverride(Reply<()>, Result<(), StoreError>),
    UpdateOverride(Reply<()>, Result<(), StoreError>),
    Client(Reply<bool>, Result<bool, StoreError>),
    Transact(Reply<Vec<Value>>, Result<Vec<Value>, StoreError>),
    Delivery(Reply<()>, Result<(), StoreError>),
    Claim(Reply<Vec<Delivery>>, Result<Vec<Delivery>, StoreError>),
    Release(Reply<()>, Result<(), StoreError>),
    Quarantine(Reply<bool>, Result<bool, StoreError>),
}

impl Answer {
    /// Whether the job's writes stay (so what it left pending is written with the batch).
    fn kept(&self) -> bool {
        match self {
            Answer::Submit(_, r) => matches!(r, Ok(Stored { created: true, .. })),
            Answer::Create(_, r) => r.is_ok(),
            Answer::Update(_, r) => r.is_ok(),
            Answer::CreateOverride(_, r) => r.is_ok(),
            Answer::UpdateOverride(_, r) => r.is_ok(),
            Answer::Client(_, r) => r.is_ok(),
            Answer::Transact(_, r) => r.is_ok(),
            Answer::Delivery(_, r) => r.is_ok(),
            Answer::Claim(_, r) => r.is_ok(),
            Answer::Release(_, r) => r.is_ok(),
            Answer::Quarantine(_, r) => r.is_ok(),
        }
    }

    fn send(self) {
        match self {
            Answer::Submit(r, v) => drop(r.send(v)),
            Answer::Create(r, v) => drop(r.send(v)),
            Answer::Update(r, v) => drop(r.send(v)),
            Answer::CreateOverride(r, v) => drop(r.send(v)),
            Answer::UpdateOverride(r, v) => drop(r.send(v)),
            Answer::Client(r, v) => drop(r.send(v)),
            Answer::Transact(r, v) => drop(r.send(v)),
            Answer::Delivery(r, v) => drop(r.send(v)),
            Answer::Claim(r, v) => drop(r.send(v)),
            Answer::Release(r, v) => drop(r.send(v)),
            Answer::Quarantine(r, v) => drop(r.send(v)),
        }
    }

    fn fail(self, e: impl Fn() -> StoreError) {
        match self {
            Answer::Submit(r, _) => drop(r.send(Err(e()))),
            Answer::Create(r, _) => drop(r.send(Err(e()))),
            Answer::Update(r, _) => drop(r.send(Err(e()))),
            Answer::CreateOverride(r, _) => drop(r.send(Err(e()))),
            Answer::UpdateOverride(r, _) => drop(r.send(Err(e()))),
            Answer::Client(r, _) => drop(r.send(Err(e()))),
            Answer::Transact(r, _) => drop(r.send(Err(e()))),
            Answer::Delivery(r, _) => drop(r.send(Err(e()))),
            Answer::Claim(r, _) => drop(r.send(Err(e()))),
            Answer::Release(r, _) => drop(r.send(Err(e()))),
            Answer::Quarantine(r, _) => drop(r.send(Err(e()))),
        }
    }
}

impl WriteJob {
    fn fail(self, e: StoreError) {
        match self {
            WriteJob::Submit(_, _, r) => drop(r.send(Err(e))),
            WriteJob::Create(_, r) => drop(r.send(Err(e))),
            WriteJob::Update(_, _, r) => drop(r.send(Err(e))),
            WriteJob::CreateOverride(_, _, r) => drop(r.send(Err(e))),
            WriteJob::UpdateOverride(_, _, _, r) => drop(r.send(Err(e))),
            WriteJob::Client(_, r) => drop(r.send(Err(e))),
            WriteJob::Transact(_, r) => drop(r.send(Err(e))),
            WriteJob::Delivery(_, r) => drop(r.send(Err(e))),
            WriteJob::Claim(_, _, r) => drop(r.send(Err(e))),
            WriteJob::Release(_, _, r) => drop(r.send(Err(e))),
            WriteJob::Quarantine(_, _, _, r) => drop(r.send(Err(e))),
        }
    }

    async fn run(
        self,
        conn: &mut SqliteConnection,
        batch_tokens: &HashMap<(String, String), Vec<IndexEntry>>,
        own: &mut Pending,
    ) -> Answer {
        match self {
            // A resend writes nothing before it answers, and a conflict or refusal is an error,
            // so the one savepoint rule (keep on success, undo on error) serves submissions too.
            WriteJob::Submit(submission, admission, reply) => Answer::Submit(
                reply,
                in_savepoint!(conn, apply(conn, submission, admission, batch_tokens, own)),
            ),
            WriteJob::Create(resources, reply) => {
                Answer::Create(reply, in_savepoint!(conn, create_all(conn, resources, own)))
            }
            WriteJob::Update(resource, expected, reply) => Answer::Update(
                reply,
                in_savepoint!(conn, update_one(conn, resource, expected, own)),
            ),
            WriteJob::CreateOverride(request, audit, reply) => Answer::CreateOverride(
                reply,
                in_savepoint!(conn, insert_override(conn, request, audit, own)),
            ),
            WriteJob::UpdateOverride(changed, version, audit, reply) => Answer::UpdateOverride(
                reply,
                in_savepoint!(conn, save_override(conn, changed, version, audit, own)),
            ),
            WriteJob::Client(write, reply) => {
                Answer::Client(reply, in_savepoint!(conn, client_write(conn, write)))
            }
            WriteJob::Transact(transaction, reply) => {
                Answer::Transact(reply, in_savepoint!(conn, transact(conn, transaction, own)))
            }
            WriteJob::Delivery(update, reply) => Answer::Delivery(
                reply,
                in_savepoint!(conn, record_delivery(conn, update, own)),
            ),
            WriteJob::Claim(lease, which, reply) => {
                Answer::Claim(reply, in_savepoint!(conn, claim(conn, lease, which)))
            }
            WriteJob::Release(lease, id, reply) => {
                Answer::Release(reply, in_savepoint!(conn, release(conn, lease, id)))
            }
            WriteJob::Quarantine(message, content, audit, reply) => Answer::Quarantine(
                reply,
                in_savepoint!(conn, quarantine(conn, message, content, audit, own)),
            ),
        }
    }
}

pub struct SqliteStore {
    readers: SqlitePool,
    writer: Mutex<Option<(mpsc::Sender<WriteJob>, oneshot::Receiver<()>)>>,
}

impl SqliteStore {
    pub async fn open(url: &str, settings: &StoreConfig) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::UnsupportedUrl(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before any caller hears "stored".
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // A 64 MiB page cache and memory-mapped reads keep the indexes the writer probes in
            // memory instead of re-reading them through system calls.
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "268435456")
            .pragma("temp_store", "memory");
        if on_disk(url) {
            make_owner_only(options.get_filename())?;
        }
        let mut writer = SqliteConnection::connect_with(&options).await?;
        MIGRATOR
            .run(&mut writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(settings.read_connections)
            .connect_with(options.read_only(true))
            .await?;
        let (tx, rx) = mpsc::channel(settings.max_batch * 4);
        // The writer gets a thread of its own. Each statement is a round trip to sqlx's SQLite
        // thread; on the shared runtime every one of them waited for a worker busy validating
        // requests, and the writer spent most of its time waiting to be scheduled.
        let (done_tx, done_rx) = oneshot::channel();
        let max_batch = settings.max_batch;
        std::thread::Builder::new()
            .name("whg-writer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(writer_loop(writer, rx, max_batch)),
                    Err(e) => tracing::error!(error = %e, "cannot start the writer's runtime"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(SqliteStore {
            readers,
            writer: Mutex::new(Some((tx, done_rx))),
        })
    }
}

/// Whether `url` names a database file (not `sqlite::memory:` or `?mode=memory`).
fn on_disk(url: &str) -> bool {
    !(url.contains(":memory:") || url.contains("mode=memory"))
}

/// The database and its `-wal` and `-shm` files, as SQLite names them.
fn database_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// Makes the database owner-only before SQLite opens it. SQLite would create a new database file
/// as 0644 less the umask, and creates its `-wal` and `-shm` files with the database file's own
/// mode: a database file created here as 0600 keeps all three owner-only, whatever the umask.
///
/// Files found more open (a database copied or restored by hand) are made owner-only at once,
/// with a warning naming the mode they had: refusing to start would leave the personal data
/// exposed and the service down until someone came. Only if they cannot be changed (another
/// owner) does the store refuse to open.
fn make_owner_only(db: &Path) -> Result<(), StoreError> {
    crate::secret_file::precreate(db).map_err(|e| {
        StoreError::Unavailable(format!("cannot create the database {}: {e}", db.display()))
    })?;
    for file in database_files(db) {
        let too_open = crate::secret_file::too_open(&file).map_err(|e| {
            StoreError::Unavailable(format!("cannot check {}: {e}", file.display()))
        })?;
        let Some(mode) = too_open else { continue };
        crate::secret_file::restrict(&file).map_err(|e| {
            StoreError::Unavailable(format!(
                "{} holds personal data and is readable by other users (mode {mode:04o}), and cannot be made owner-only: {e}; \
                 run `chmod 600 {}` as its owner",
                file.display(),
                file.display()
            ))
        })?;
        tracing::warn!(
            file = %file.display(),
            previous_mode = %format!("{mode:04o}"),
            alert = "database-permissions",
            "the database was readable by other users; made owner-only (0600). Check who could read it and how it came to be so"
        );
    }
    Ok(())
}

async fn writer_loop(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<WriteJob>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        commit_batch(&mut conn, &mut batch).await;
    }
    let _ = conn.close().await;
}

/// Applies every job of `batch` in one transaction and answers each once the commit is durable.
async fn commit_batch(conn: &mut SqliteConnection, batch: &mut Vec<WriteJob>) {
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        for job in batch.drain(..) {
            job.fail(StoreError::Unavailable(format!(
                "cannot begin a transaction: {e}"
            )));
        }
        return;
    }
    let mut answers = Vec::with_capacity(batch.len());
    let mut pending = Pending::default();
    for job in batch.drain(..) {
        let mut own = Pending::default();
        let answer = job.run(conn, &pending.tokens, &mut own).await;
        if answer.kept() {
            pending.absorb(own);
        }
        answers.push(answer);
    }
    let committed = match pending.write(conn).await {
        Ok(()) => sqlx::query("COMMIT").execute(&mut *conn).await.map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = committed {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        tracing::error!(error = %e, batch = answers.len(), "commit failed; batch rolled back");
        for answer in answers {
            answer.fail(|| StoreError::Unavailable(format!("commit failed: {e}")));
        }
        return;
    }
    // Only now, with the batch on disk, does any caller hear "stored".
    for answer in answers {
        answer.send();
    }
}

async fn apply(
    conn: &mut SqliteConnection,
    mut s: Submission,
    admission: Option<Admission>,
    batch_tokens: &HashMap<(String, String), Vec<IndexEntry>>,
    own: &mut Pending,
) -> Result<Stored, StoreError> {
    // Every intake path checks this; the store holds to it whatever hands it a submission, since
    // a second Patient would make the sender party to a second person.
    if !s.is_about_one_person() {
        return Err(StoreError::Rejected(
            Issue::error(
                IssueType::BusinessRule,
                "Bundle.entry.resource.ofType(Patient)",
                format!(
                    "a {} is about one person, its subject: it cannot carry another Patient",
                    s.kind.noun()
                ),
            )
            .into(),
        ));
    }
    let now = format_instant(Utc::now());
    // Time-ordered ids: new rows land at the end of every index instead of on random pages.
    let focus_id = uuid::Uuid::now_v7().to_string();
    // The key's primary key decides: the first insert wins, every later one sees the stored row.
    let inserted = sqlx::query(
        "INSERT INTO submissions (namespace, key, content_hash, focus_type, focus_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, key) DO NOTHING",
    )
    .bind(&s.key.namespace)
    .bind(&s.key.value)
    .bind(&s.content_hash)
    .bind(s.kind.focus_type())
    .bind(&focus_id)
    .bind(&now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        let row = sqlx::query(
            "SELECT content_hash, focus_id FROM submissions WHERE namespace = ? AND key = ?",
        )
        .bind(&s.key.namespace)
        .bind(&s.key.value)
        .fetch_one(&mut *conn)
        .await?;
        let (hash, id): (String, String) = (row.get(0), row.get(1));
        if hash != s.content_hash {
            return Err(StoreError::Conflict {
                namespace: s.key.namespace.clone(),
                key: s.key.value.clone(),
                existing_id: id,
            });
        }
        let prompts = sqlx::query_scalar(
            "SELECT task_id FROM referral_prompts WHERE fit_note_id = ? ORDER BY task_id",
        )
        .bind(&id)
        .fetch_all(&mut *conn)
        .await?;
        return Ok(Stored {
            focus_id: id,
            created: false,
            prompts,
        });
    }

    let existing = matched_resources(conn, &s).await?;
    let mut new_prompts = Vec::new();
    if let Some(admit) = admission {
        let known_person = s.subject_entry().and_then(|e| existing.get(&e.full_url));
        let history = match known_person {
            Some(p) => History {
                consents: consents_of(conn, &p.id, batch_tokens).await?,
                referrals: care_relations_of(conn, &p.id).await?,
                fit_notes: fit_notes_of(&mut *conn, &p.id).await?,
                prompts: prompts_of(conn, &p.id).await?,
            },
            None => History::default(),
        };
        new_prompts = admit(&history, &mut s.entries).map_err(|r| match r {
            Refusal::Consent(d) => StoreError::Refused(d),
            Refusal::Rules(issues) => StoreError::Rejected(issues),
        })?;
    }
    let practice = s.practice.clone();
    let kind = s.kind.clone();
    let plan = plan(s, &existing, &focus_id, &now);
    write_all(conn, &plan.writes, &now, own).await?;
    let patient_version = plan.patient_version;
    let patient_id = plan
        .patient_id
        .ok_or_else(|| StoreError::Corrupt("a submission without a Patient".into()))?;
    match kind {
        SubmissionKind::Referral { service } => {
            own.referrals.push(json!([
                focus_id,
                patient_id,
                practice,
                service,
                now,
                patient_version
            ]));
            own.members
                .extend(plan.members.iter().map(|(t, id)| json!([t, id, focus_id])));
        }
        SubmissionKind::FitNote(note) => {
            sqlx::query(
                "INSERT INTO fit_notes (observation_id, patient_id, practice, period_start, period_end, issued, not_fit, created_at, patient_version)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&focus_id)
            .bind(&patient_id)
            .bind(&practice)
            .bind(note.start.to_string())
            .bind(note.end.map(|d| d.to_string()))
            .bind(note.issued.to_string())
            .bind(note.not_fit)
            .bind(&now)
            .bind(patient_version)
            .execute(&mut *conn)
            .await?;
        }
    }
    let mut prompt_ids = Vec::with_capacity(new_prompts.len());
    for p in new_prompts {
        let task_id = plan
            .ids
            .get(&p.full_url)
            .and_then(|r| r.strip_prefix("Task/"))
            .ok_or_else(|| StoreError::Corrupt("a prompt without its Task".into()))?
            .to_string();
        sqlx::query(
            "INSERT INTO referral_prompts (task_id, patient_id, fit_note_id, service, rule, covers_from, covers_to, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&task_id)
        .bind(&patient_id)
        .bind(&focus_id)
        .bind(&p.record.service)
        .bind(&p.record.rule)
        .bind(p.record.from.to_string())
        .bind(p.record.to.map(|d| d.to_string()))
        .bind(&now)
        .execute(&mut *conn)
        .await?;
        prompt_ids.push(task_id);
    }
    prompt_ids.sort();
    Ok(Stored {
        focus_id,
        created: true,
        prompts: prompt_ids,
    })
}

/// A person's fit notes, from the table written in each fit note's own transaction.
async fn fit_notes_of<'c, E>(executor: E, patient_id: &str) -> Result<Vec<FitNoteFacts>, StoreError>
where
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    let rows = sqlx::query(
        "SELECT observation_id, period_start, period_end, issued, not_fit FROM fit_notes
         WHERE patient_id = ? ORDER BY period_start, issued, observation_id",
    )
    .bind(patient_id)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FitNoteFacts {
                reference: format!("Observation/{}", r.get::<&str, _>(0)),
                start: stored_date(r.get(1))?,
                end: r.get::<Option<&str>, _>(2).map(stored_date).transpose()?,
                issued: stored_date(r.get(3))?,
                not_fit: r.get(4),
            })
        })
        .collect()
}

/// The person's referrals, as the consent authorship rule reads them.
async fn care_relations_of(
    conn: &mut SqliteConnection,
    patient_id: &str,
) -> Result<Vec<crate::consent::authorship::CareRelation>, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT practice, service FROM referrals WHERE patient_id = ?")
            .bind(patient_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(practice, service)| crate::consent::authorship::CareRelation { practice, service })
        .collect())
}

async fn prompts_of(
    conn: &mut SqliteConnection,
    patient_id: &str,
) -> Result<Vec<PastPrompt>, StoreError> {
    let rows = sqlx::query(
        "SELECT service, rule, covers_from, covers_to FROM referral_prompts WHERE patient_id = ?",
    )
    .bind(patient_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PastPrompt {
                service: r.get(0),
                rule: r.get(1),
                from: stored_date(r.get(2))?,
                to: r.get::<Option<&str>, _>(3).map(stored_date).transpose()?,
            })
        })
        .collect()
}

fn stored_date(text: &str) -> Result<chrono::NaiveDate, StoreError> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| StoreError::Corrupt(format!("stored date '{text}': {e}")))
}

/// Creates new resources with fresh ids (version 1).
async fn create_all(
    conn: &mut SqliteConnection,
    resources: Vec<Value>,
    own: &mut Pending,
) -> Result<Vec<Value>, StoreError> {
    insert_new(conn, resources, false, own).await
}

/// Inserts new resources at version 1: with fresh ids, or (`keep_ids`) with the ids they carry.
async fn insert_new(
    conn: &mut SqliteConnection,
    resources: Vec<Value>,
    keep_ids: bool,
    own: &mut Pending,
) -> Result<Vec<Value>, StoreError> {
    let now = format_instant(Utc::now());
    let mut writes = Vec::with_capacity(resources.len());
    for mut content in resources {
        let resource_type = content["resourceType"]
            .as_str()
            .ok_or_else(|| StoreError::Corrupt("a resource without a resourceType".into()))?
            .to_string();
        let id = match content["id"].as_str() {
            Some(id) if keep_ids => id.to_string(),
            _ => uuid::Uuid::now_v7().to_string(),
        };
        stamp(&mut content, &id, 1, &now);
        let index = index_entries(&content);
        writes.push(PlannedWrite {
            resource_type,
            id,
            version_id: 1,
            replaces: false,
            content,
            index,
            identity: None,
            source_time: now.clone(),
            source_practice: String::new(),
        });
    }
    if !writes.is_empty() {
        write_all(conn, &writes, &now, own).await?;
    }
    Ok(writes.into_iter().map(|w| w.content).collect())
}

/// Replaces a stored resource with a new version.
async fn update_one(
    conn: &mut SqliteConnection,
    mut content: Value,
    expected: Option<i64>,
    own: &mut Pending,
) -> Result<Value, StoreError> {
    let resource_type = content["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = content["id"].as_str().unwrap_or_default().to_string();
    let current: Option<i64> =
        sqlx::query_scalar("SELECT version_id FROM resources WHERE resource_type = ? AND id = ?")
            .bind(&resource_type)
            .bind(&id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(current) = current else {
        return Err(StoreError::NotFound(format!("{resource_type}/{id}")));
    };
    if let Some(expected) = expected
        && expected != current
    {
        return Err(StoreError::VersionConflict {
            resource: format!("{resource_type}/{id}"),
            current,
            expected,
        });
    }
    let now = format_instant(Utc::now());
    stamp(&mut content, &id, current + 1, &now);
    let index = index_entries(&content);
    let write = PlannedWrite {
        resource_type,
        id,
        version_id: current + 1,
        replaces: true,
        content,
        index,
        identity: None,
        source_time: now.clone(),
        source_practice: String::new(),
    };
    write_all(conn, std::slice::from_ref(&write), &now, own).await?;
    Ok(write.content)
}

/// A workflow change: new resources (members of the referral), updates at the versions they were
/// based on, and letters queued for delivery.
async fn transact(
    conn: &mut SqliteConnection,
    t: Transaction,
    own: &mut Pending,
) -> Result<Vec<Value>, StoreError> {
    let mut stored = Vec::with_capacity(t.creates.len() + t.updates.len());
    for (resource, version) in t.updates {
        stored.push(update_one(conn, resource, Some(version), own).await?);
    }
    let created = insert_new(conn, t.creates, true, own).await?;
    for r in &created {
        own.members
            .push(json!([r["resourceType"], r["id"], t.referral]));
    }
    stored.extend(created);
    append_audit(conn, t.audit, own).await?;
    for d in t.deliveries {
        sqlx::query(
            "INSERT INTO deliveries (id, document_id, referral_id, patient_id, service, practice, priority, state,
                 attempts, message_id, correlation_id, created_at, next_attempt_at, deadline_at, escalate_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.id)
        .bind(&d.document_id)
        .bind(&d.referral_id)
        .bind(&d.patient_id)
        .bind(&d.service)
        .bind(&d.practice)
        .bind(if d.urgent { 0 } else { 1 })
        .bind(d.state.code())
        .bind(&d.message_id)
        .bind(&d.correlation_id)
        .bind(&d.created_at)
        .bind(&d.next_attempt_at)
        .bind(&d.deadline_at)
        .bind(&d.escalate_at)
        .bind(&d.updated_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(stored)
}

/// An attempt's result: the outbox row, the attempt log and the Communication, together.
async fn record_delivery(
    conn: &mut SqliteConnection,
    u: DeliveryUpdate,
    own: &mut Pending,
) -> Result<(), StoreError> {
    let now = format_instant(Utc::now());
    let updated = sqlx::query(
        "UPDATE deliveries SET state = ?, attempts = MAX(attempts, COALESCE(?, attempts)), next_attempt_at = ?,
             last_error = ?, channel = COALESCE(?, channel), escalated_at = COALESCE(escalated_at, ?),
             transport_id = COALESCE(?, transport_id), deadline_at = COALESCE(?, deadline_at),
             updated_at = ?, lease_owner = NULL, lease_until = NULL
         WHERE id = ? AND lease_owner = ? AND lease_until = ?",
    )
    .bind(u.state.code())
    .bind(u.attempt.as_ref().map(|a| a.attempt))
    .bind(&u.next_attempt_at)
    .bind(&u.last_error)
    .bind(&u.channel)
    .bind(&u.escalated_at)
    .bind(&u.transport_id)
    .bind(&u.deadline_at)
    .bind(&now)
    .bind(&u.id)
    .bind(&u.lease.owner)
    .bind(&u.lease.until)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(lease_refusal(conn, &u.id).await);
    }
    if let Some(a) = &u.attempt {
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, seq, attempt, at, outcome, detail)
             SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5 FROM delivery_attempts WHERE delivery_id = ?1",
        )
        .bind(&u.id)
        .bind(a.attempt)
        .bind(&a.at)
        .bind(a.outcome.code())
        .bind(&a.detail)
        .execute(&mut *conn)
        .await?;
    }
    update_one(conn, u.communication, None, own).await?;
    append_audit(conn, u.audit, own).await
}

/// Appends the AuditEvents of a change in the change's own savepoint, so both are kept or
/// neither. Anything else is refused: what is passed as audit never replaces a record.
async fn append_audit(
    conn: &mut SqliteConnection,
    events: Vec<Value>,
    own: &mut Pending,
) -> Result<(), StoreError> {
    if let Some(other) = events.iter().find(|e| e["resourceType"] != "AuditEvent") {
        return Err(StoreError::Corrupt(format!(
            "a {} passed as an AuditEvent",
            other["resourceType"]
                .as_str()
                .unwrap_or("value without a resourceType")
        )));
    }
    insert_new(conn, events, false, own).await.map(drop)
}

/// A MESH message set aside and its AuditEvent, together; nothing if it was set aside before.
async fn quarantine(
    conn: &mut SqliteConnection,
    m: QuarantinedMessage,
    content: Option<Vec<u8>>,
    audit: Value,
    own: &mut Pending,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO mesh_quarantine (message_id, sender, workflow_id, message_type, local_id,
             received_at, size, reason, letter_id, content)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&m.id)
    .bind(&m.sender)
    .bind(&m.workflow_id)
    .bind(&m.message_type)
    .bind(&m.local_id)
    .bind(&m.received_at)
    .bind(i64::try_from(m.size).unwrap_or(i64::MAX))
    .bind(&m.reason)
    .bind(&m.letter_id)
    .bind(content)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        insert_new(conn, vec![audit], false, own).await?;
    }
    Ok(inserted)
}

/// `SELECT` of what [`quarantined_of`] reads, then `$rest`.
macro_rules! select_quarantined {
    ($rest:literal) => {
        concat!(
            "SELECT message_id, sender, workflow_id, message_type, local_id, received_at, size,
                    reason, letter_id, content IS NOT NULL, ",
            $rest
        )
    };
}

fn quarantined_of(r: &sqlx::sqlite::SqliteRow) -> QuarantinedMessage {
    QuarantinedMessage {
        id: r.get(0),
        sender: r.get(1),
        workflow_id: r.get(2),
        message_type: r.get(3),
        local_id: r.get(4),
        received_at: r.get(5),
        size: u64::try_from(r.get::<i64, _>(6)).unwrap_or_default(),
        reason: r.get(7),
        letter_id: r.get(8),
        has_content: r.get(9),
    }
}

/// The columns [`delivery_of`] reads, in its order.
macro_rules! delivery_columns {
    () => {
        "id, document_id, referral_id, patient_id, service, practice, priority, state, attempts,
         message_id, correlation_id, created_at, next_attempt_at, deadline_at, escalate_at,
         escalated_at, channel, last_error, updated_at, transport_id"
    };
}

macro_rules! select_deliveries {
    ($rest:literal) => {
        concat!("SELECT ", delivery_columns!(), " FROM deliveries ", $rest)
    };
}

fn delivery_of(r: &sqlx::sqlite::SqliteRow) -> Result<Delivery, StoreError> {
    let id: String = r.get(0);
    let state: String = r.get(7);
    let state = DeliveryState::from_code(&state).ok_or_else(|| {
        StoreError::Corrupt(format!("delivery {id} has the unknown state '{state}'"))
    })?;
    Ok(Delivery {
        id,
        document_id: r.get(1),
        referral_id: r.get(2),
        patient_id: r.get(3),
        service: r.get(4),
        practice: r.get(5),
        urgent: r.get::<i64, _>(6) == 0,
        state,
        attempts: r.get(8),
        message_id: r.get(9),
        correlation_id: r.get(10),
        created_at: r.get(11),
        next_attempt_at: r.get(12),
        deadline_at: r.get(13),
        escalate_at: r.get(14),
        escalated_at: r.get(15),
        channel: r.get(16),
        last_error: r.get(17),
        updated_at: r.get(18),
        transport_id: r.get(19),
    })
}

fn deliveries_of(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<Delivery>, StoreError> {
    rows.iter().map(delivery_of).collect()
}

/// An override's columns, as stored: the state and who moved it there.
struct OverrideRow {
    decided: Option<(String, Agent, String)>,
    expires_at: Option<String>,
    ended_at: Option<String>,
}

impl OverrideRow {
    fn of(o: &Override) -> OverrideRow {
        let grant = o.state.grant();
        let decided = match &o.state {
            OverrideState::Refused { by, at, note } => {
                Some((format_instant(*at), by.clone(), note.clone()))
            }
            _ => grant.map(|g| (format_instant(g.at), g.by.clone(), g.note.clone())),
        };
        OverrideRow {
            decided,
            expires_at: grant.map(|g| format_instant(g.until)),
            ended_at: match &o.state {
                OverrideState::Ended { at, .. } => Some(format_instant(*at)),
                _ => None,
            },
        }
    }
}

/// What the request asked for, kept as JSON beside the state columns.
fn override_content(o: &Override) -> String {
    json!({
        "dataClasses": o.classes.iter().map(|c| c.code()).collect::<Vec<_>>(),
        "reason": o.reason.code(),
        "justification": o.justification,
    })
    .to_string()
}

async fn insert_override(
    conn: &mut SqliteConnection,
    o: Override,
    audit: Vec<Value>,
    own: &mut Pending,
) -> Result<(), StoreError> {
    let row = OverrideRow::of(&o);
    let (decided_at, decided_by, note) = row.decided.clone().unzip3();
    sqlx::query(
        "INSERT INTO consent_overrides (id, patient_id, version, state, recipient, recipient_organisation, hours,
             requested_at, requested_by, requester_organisation, decided_at, decided_by, decider_organisation,
             decision_note, expires_at, ended_at, reviewed_at, reviewed_by, reviewer_organisation,
             review_outcome, review_note, content)
         VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&o.id)
    .bind(&o.patient_id)
    .bind(o.state.status().code())
    .bind(o.recipient.code())
    .bind(&o.organisation)
    .bind(o.hours)
    .bind(format_instant(o.requested_at))
    .bind(&o.requested_by.client)
    .bind(&o.requested_by.organisation)
    .bind(decided_at)
    .bind(decided_by.as_ref().map(|p| p.client.clone()))
    .bind(decided_by.map(|p| p.organisation))
    .bind(note)
    .bind(row.expires_at)
    .bind(row.ended_at)
    .bind(o.review.as_ref().map(|r| format_instant(r.at)))
    .bind(o.review.as_ref().map(|r| r.by.client.clone()))
    .bind(o.review.as_ref().map(|r| r.by.organisation.clone()))
    .bind(o.review.as_ref().map(|r| r.outcome.code()))
    .bind(o.review.as_ref().map(|r| r.note.clone()))
    .bind(override_content(&o))
    .execute(&mut *conn)
    .await?;
    append_audit(conn, audit, own).await
}

/// Stores an override's state as `o` has it, if it is still at `version`.
async fn save_override(
    conn: &mut SqliteConnection,
    o: Override,
    version: i64,
    audit: Vec<Value>,
    own: &mut Pending,
) -> Result<(), StoreError> {
    let row = OverrideRow::of(&o);
    let (decided_at, decided_by, note) = row.decided.clone().unzip3();
    let updated = sqlx::query(
        "UPDATE consent_overrides SET version = version + 1, state = ?, decided_at = ?, decided_by = ?,
             decider_organisation = ?, decision_note = ?, expires_at = ?, ended_at = ?, reviewed_at = ?,
             reviewed_by = ?, reviewer_organisation = ?, review_outcome = ?, review_note = ?
         WHERE id = ? AND version = ?",
    )
    .bind(o.state.status().code())
    .bind(decided_at)
    .bind(decided_by.as_ref().map(|p| p.client.clone()))
    .bind(decided_by.map(|p| p.organisation))
    .bind(note)
    .bind(row.expires_at)
    .bind(row.ended_at)
    .bind(o.review.as_ref().map(|r| format_instant(r.at)))
    .bind(o.review.as_ref().map(|r| r.by.client.clone()))
    .bind(o.review.as_ref().map(|r| r.by.organisation.clone()))
    .bind(o.review.as_ref().map(|r| r.outcome.code()))
    .bind(o.review.as_ref().map(|r| r.note.clone()))
    .bind(&o.id)
    .bind(version)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM consent_overrides WHERE id = ?")
                .bind(&o.id)
                .fetch_optional(&mut *conn)
                .await?;
        return Err(match current {
            Some(current) => StoreError::VersionConflict {
                resource: format!("override {}", o.id),
                current,
                expected: version,
            },
            None => StoreError::NotFound(format!("override {}", o.id)),
        });
    }
    append_audit(conn, audit, own).await
}

trait Unzip3<A, B, C> {
    fn unzip3(self) -> (Option<A>, Option<B>, Option<C>);
}

impl<A, B, C> Unzip3<A, B, C> for Option<(A, B, C)> {
    fn unzip3(self) -> (Option<A>, Option<B>, Option<C>) {
        match self {
            Some((a, b, c)) => (Some(a), Some(b), Some(c)),
            None => (None, None, None),
        }
    }
}

macro_rules! select_overrides {
    ($rest:literal) => {
        concat!(
            "SELECT id, patient_id, version, state, recipient, recipient_organisation, hours, requested_at,
                    requested_by, requester_organisation, decided_at, decided_by, decider_organisation,
                    decision_note, expires_at, ended_at, reviewed_at, reviewed_by, reviewer_organisation,
                    review_outcome, review_note, content FROM consent_overrides ",
            $rest
        )
    };
}

/// An override as stored, with its version.
fn override_of(r: &sqlx::sqlite::SqliteRow) -> Result<(Override, i64), StoreError> {
    let id: String = r.get(0);
    let corrupt = |what: &str| StoreError::Corrupt(format!("override {id}: {what}"));
    let time = |i: usize| -> Result<Option<DateTime<Utc>>, StoreError> {
        r.get::<Option<&str>, _>(i)
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| corrupt(&format!("time '{t}': {e}")))
            })
            .transpose()
    };
    let party = |client: usize, organisation: usize| -> Option<Agent> {
        Some(Agent {
            client: r.get::<Option<String>, _>(client)?,
            organisation: r.get::<Option<String>, _>(organisation).unwrap_or_default(),
        })
    };
    let content = parse_content(r.get::<&str, _>(21))?;
    let grant = || -> Result<Grant, StoreError> {
        Ok(Grant {
            by: party(11, 12).ok_or_else(|| corrupt("a grant without its grantor"))?,
            at: time(10)?.ok_or_else(|| corrupt("a grant without its time"))?,
            until: time(14)?.ok_or_else(|| corrupt("a grant without its end"))?,
            note: r.get::<Option<String>, _>(13).unwrap_or_default(),
        })
    };
    let status: &str = r.get(3);
    let state = match OverrideStatus::from_code(status) {
        Some(OverrideStatus::Requested) => OverrideState::Requested,
        Some(OverrideStatus::Granted) => OverrideState::Granted(grant()?),
        Some(OverrideStatus::Refused) => OverrideState::Refused {
            by: party(11, 12).ok_or_else(|| corrupt("a refusal without who refused"))?,
            at: time(10)?.ok_or_else(|| corrupt("a refusal without its time"))?,
            note: r.get::<Option<String>, _>(13).unwrap_or_default(),
        },
        Some(OverrideStatus::Ended) => OverrideState::Ended {
            grant: grant()?,
            at: time(15)?.ok_or_else(|| corrupt("ended without a time"))?,
        },
        None => return Err(corrupt(&format!("state '{status}'"))),
    };
    let review = match r.get::<Option<&str>, _>(19) {
        None => None,
        Some(outcome) => Some(Review {
            by: party(17, 18).ok_or_else(|| corrupt("a review without its reviewer"))?,
            at: time(16)?.ok_or_else(|| corrupt("a review without its time"))?,
            outcome: ReviewOutcome::from_code(outcome)
                .ok_or_else(|| corrupt(&format!("review outcome '{outcome}'")))?,
            note: r.get::<Option<String>, _>(20).unwrap_or_default(),
        }),
    };
    let recipient: &str = r.get(4);
    let o = Override {
        patient_id: r.get(1),
        recipient: RecipientClass::from_code(recipient)
            .ok_or_else(|| corrupt(&format!("recipient '{recipient}'")))?,
        organisation: r.get(5),
        classes: content["dataClasses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_str().and_then(DataClass::from_code))
            .collect::<Option<_>>()
            .ok_or_else(|| corrupt("data classes"))?,
        reason: content["reason"]
            .as_str()
            .and_then(OverrideReason::from_code)
            .ok_or_else(|| corrupt("reason"))?,
        justification: content["justification"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        hours: r.get(6),
        requested_by: party(8, 9).ok_or_else(|| corrupt("no requester"))?,
        requested_at: time(7)?.ok_or_else(|| corrupt("no request time"))?,
        state,
        review,
        id: id.clone(),
    };
    Ok((o, r.get(2)))
}

async fn client_write(conn: &mut SqliteConnection, write: ClientWrite) -> Result<bool, StoreError> {
    match write {
        ClientWrite::Register(c) => {
            let inserted = sqlx::query(
                "INSERT INTO clients (id, role, organisation, scopes, jwks, jwks_url, created_at, tenant)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&c.id)
            .bind(c.role.as_str())
            .bind(&c.organisation)
            .bind(c.scopes.join(" "))
            .bind(c.jwks.as_ref().map(Value::to_string))
            .bind(&c.jwks_url)
            .bind(&c.created_at)
            .bind(if c.test_tenant { "test" } else { "live" })
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict {
                    namespace: "client".into(),
                    key: c.id.clone(),
                    existing_id: c.id,
                });
            }
            Ok(true)
        }
        ClientWrite::Revoke(id) => Ok(sqlx::query(
            "UPDATE clients SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(format_instant(Utc::now()))
        .bind(&id)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1),
        ClientWrite::ConsumeAssertion {
            client_id,
            jti,
            expires_at,
        } => {
            // Assertions live five minutes at most; the used ones are forgotten once expired.
            sqlx::query("DELETE FROM client_assertions WHERE expires_at < ?")
                .bind(Utc::now().timestamp() - 600)
                .execute(&mut *conn)
                .await?;
            Ok(sqlx::query(
                "INSERT INTO client_assertions (client_id, jti, expires_at) VALUES (?, ?, ?)
                 ON CONFLICT (client_id, jti) DO NOTHING",
            )
            .bind(&client_id)
            .bind(&jti)
            .bind(expires_at)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1)
        }
    }
}

fn client_of(row: &sqlx::sqlite::SqliteRow) -> Result<ClientRecord, StoreError> {
    let role: String = row.get(1);
    Ok(ClientRecord {
        id: row.get(0),
        role: crate::auth::Role::from_str_code(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("client role '{role}'")))?,
        organisation: row.get(2),
        scopes: row
            .get::<&str, _>(3)
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        jwks: row
            .get::<Option<&str>, _>(4)
            .map(parse_content)
            .transpose()?,
        jwks_url: row.get(5),
        created_at: row.get(6),
        revoked_at: row.get(7),
        test_tenant: row.get::<&str, _>(8) == "test",
    })
}

macro_rules! select_clients {
    ($rest:literal) => {
        concat!(
            "SELECT id, role, organisation, scopes, jwks, jwks_url, created_at, revoked_at, tenant FROM clients",
            $rest
        )
    };
}

fn parties(row: &sqlx::sqlite::SqliteRow) -> RecordParties {
    RecordParties {
        record: row.get(0),
        patient_id: row.get(1),
        practice: row.get(2),
        service: row.get(3),
        patient_version: row.get(4),
    }
}

// Each statement is a round trip to sqlx's SQLite worker thread, so a submission's rows are
// written by a handful of set-based statements over JSON arrays (`json_each`) rather than one
// statement per row. The SQL text stays constant, so every statement is prepared once.

/// A person's stored Consents, read inside the writer's transaction.
/// Both those indexed before this batch and those recorded earlier in it (whose index entries
/// are still pending).
async fn consents_of(
    conn: &mut SqliteConnection,
    patient_id: &str,
    batch_tokens: &HashMap<(String, String), Vec<IndexEntry>>,
) -> Result<Vec<Value>, StoreError> {
    let patient = format!("Patient/{patient_id}");
    let mut ids: Vec<String> = sqlx::query_scalar(
        "SELECT resource_id FROM search_tokens
         WHERE resource_type = 'Consent' AND param = 'patient' AND value = ?",
    )
    .bind(&patient)
    .fetch_all(&mut *conn)
    .await?;
    ids.extend(
        batch_tokens
            .iter()
            .filter(|((t, _), entries)| {
                t == "Consent"
                    && entries
                        .iter()
                        .any(|e| e.param == "patient" && e.value == patient)
            })
            .map(|((_, id), _)| id.clone()),
    );
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT content FROM resources WHERE resource_type = 'Consent'
         AND id IN (SELECT value FROM json_each(?))",
    )
    .bind(serde_json::to_string(&ids).unwrap_or_default())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| parse_content(r.get::<&str, _>(0)))
        .collect()
}

/// Stored resources that the submission's shared entries match by identifier, by `full_url`.
async fn matched_resources(
    conn: &mut SqliteConnection,
    s: &Submission,
) -> Result<HashMap<String, Existing>, StoreError> {
    let wanted: Vec<Value> = s
        .entries
        .iter()
        .filter_map(|e| {
            let (system, value) = e.match_identifier.as_ref()?;
            Some(json!([e.resource_type, system, value, e.full_url]))
        })
        .collect();
    let mut existing = HashMap::new();
    if wanted.is_empty() {
        return Ok(existing);
    }
    let rows = sqlx::query(
        "SELECT j.value ->> 3, r.id, r.version_id, r.last_updated, r.content, r.source_time, r.source_practice
         FROM json_each(?) j
         JOIN identities i ON i.resource_type = j.value ->> 0 AND i.system = j.value ->> 1 AND i.value = j.value ->> 2
         JOIN resources r ON r.resource_type = i.resource_type AND r.id = i.resource_id",
    )
    .bind(Value::Array(wanted).to_string())
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        existing.insert(
            row.get::<String, _>(0),
            Existing {
                id: row.get(1),
                version_id: row.get(2),
                last_updated: row.get(3),
                content: row.get(4),
                source_time: row.get(5),
                source_practice: row.get(6),
            },
        );
    }
    Ok(existing)
}

async fn write_all(
    conn: &mut SqliteConnection,
    writes: &[PlannedWrite],
    now: &str,
    own: &mut Pending,
) -> Result<(), StoreError> {
    let replaced: Vec<Value> = writes
        .iter()
        .filter(|w| w.replaces)
        .map(|w| json!([w.resource_type, w.id]))
        .collect();
    if !replaced.is_empty() {
        let keys = Value::Array(replaced).to_string();
        sqlx::query(
            "INSERT INTO resource_history (resource_type, id, version_id, last_updated, content)
             SELECT r.resource_type, r.id, r.version_id, r.last_updated, r.content
             FROM json_each(?) j JOIN resources r ON r.resource_type = j.value ->> 0 AND r.id = j.value ->> 1",
        )
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "DELETE FROM search_tokens
             WHERE (resource_type, resource_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))",
        )
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
        for w in writes.iter().filter(|w| w.replaces) {
            let key = (w.resource_type.clone(), w.id.clone());
            own.tokens.remove(&key);
            own.replaced.push(key);
        }
    }

    // Whole resources are bound as parameters of one multi-row INSERT: passing them inside a JSON
    // array would make SQLite re-parse each kilobyte-sized document once per extracted column.
    let mut contents = Vec::with_capacity(writes.len());
    for w in writes {
        contents.push(
            serde_json::to_string(&w.content).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
    }
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO resources (resource_type, id, version_id, last_updated, content, source_time, source_practice) ",
    );
    insert.push_values(writes.iter().zip(contents), |mut row, (w, content)| {
        row.push_bind(w.resource_type.clone())
            .push_bind(w.id.clone())
            .push_bind(w.version_id)
            .push_bind(now.to_string())
            .push_bind(content)
            .push_bind(w.source_time.clone())
            .push_bind(w.source_practice.clone());
    });
    insert.push(
        " ON CONFLICT (resource_type, id) DO UPDATE
          SET version_id = excluded.version_id, last_updated = excluded.last_updated,
              content = excluded.content, source_time = excluded.source_time,
              source_practice = excluded.source_practice",
    );
    insert.build().persistent(true).execute(&mut *conn).await?;

    let identities: Vec<Value> = writes
        .iter()
        .filter_map(|w| {
            let (system, value) = w.identity.as_ref()?;
            Some(json!([w.resource_type, system, value, w.id]))
        })
        .collect();
    if !identities.is_empty() {
        sqlx::query(
            "INSERT INTO identities (resource_type, system, value, resource_id)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)",
        )
        .bind(Value::Array(identities).to_string())
        .execute(&mut *conn)
        .await?;
    }

    // Index entries are written with the batch (see `Pending`).
    for w in writes {
        own.tokens
            .insert((w.resource_type.clone(), w.id.clone()), w.index.clone());
    }
    Ok(())
}

fn parse_content(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Appends `AND <filter>` for each filter, matching rows of `resources r`.
fn push_filters(qb: &mut QueryBuilder<Sqlite>, req: &SearchRequest) {
    qb.push(" WHERE r.resource_type = ")
        .push_bind(req.resource_type.clone());
    if let Some(tenancy) = &req.tenancy {
        // The same relation read-by-id decides by (`records_of`): a search never returns what
        // a read would refuse.
        let (column, org) = match tenancy {
            Tenancy::Practice(org) => ("practice", org),
            Tenancy::Service(org) => ("service", org),
        };
        qb.push(format!(
            " AND EXISTS (SELECT 1 FROM resource_parties v WHERE v.resource_type = r.resource_type AND v.resource_id = r.id AND v.{column} = "
        ))
        .push_bind(org.clone())
        .push(")");
    }
    for f in &req.filters {
        match f {
            Filter::Token { param, any_of } => {
                qb.push(" AND EXISTS (SELECT 1 FROM search_tokens t WHERE t.resource_type = r.resource_type AND t.resource_id = r.id AND t.param = ")
                    .push_bind(*param)
                    .push(" AND (");
                push_token_alternatives(qb, "t", any_of);
                qb.push("))");
            }
            Filter::Reference { param, any_of } => {
                qb.push(" AND EXISTS (SELECT 1 FROM search_tokens t WHERE t.resource_type = r.resource_type AND t.resource_id = r.id AND t.param = ")
                    .push_bind(*param)
                    .push(" AND t.value IN (");
                let mut sep = qb.separated(", ");
                for v in any_of {
                    sep.push_bind(v.clone());
                }
                qb.push("))");
            }
            Filter::ChainedIdentifier {
                param,
                target,
                any_of,
            } => {
                qb.push(" AND EXISTS (SELECT 1 FROM search_tokens t JOIN search_tokens p ON p.resource_type = ")
                    .push_bind(*target)
                    .push(" AND p.param = 'identifier' AND t.value = ")
                    .push_bind(format!("{target}/"))
                    .push(" || p.resource_id WHERE t.resource_type = r.resource_type AND t.resource_id = r.id AND t.param = ")
                    .push_bind(*param)
                    .push(" AND (");
                push_token_alternatives(qb, "p", any_of);
                qb.push("))");
            }
            Filter::LastUpdated {
                comparator,
                lower,
                upper,
            } => {
                let (op, bound) = match comparator {
                    Comparator::Eq => {
                        qb.push(" AND r.last_updated >= ")
                            .push_bind(lower.clone())
                            .push(" AND r.last_updated < ")
                            .push_bind(upper.clone());
                        continue;
                    }
                    Comparator::Ne => {
                        qb.push(" AND (r.last_updated < ")
                            .push_bind(lower.clone())
                            .push(" OR r.last_updated >= ")
                            .push_bind(upper.clone())
                            .push(")");
                        continue;
                    }
                    Comparator::Gt => (" >= ", upper),
                    Comparator::Ge => (" >= ", lower),
                    Comparator::Lt => (" < ", lower),
                    Comparator::Le => (" < ", upper),
                };
                qb.push(" AND r.last_updated")
                    .push(op)
                    .push_bind(bound.clone());
            }
            Filter::Period {
                param,
                comparator,
                lower,
                upper,
            } => {
                // Indexed as `system` start (inclusive) and end (exclusive) instants.
                let bound = |qb: &mut QueryBuilder<Sqlite>, which: &str, op: &str, value: &str| {
                    qb.push(" EXISTS (SELECT 1 FROM search_tokens d WHERE d.resource_type = r.resource_type AND d.resource_id = r.id AND d.param = ")
                        .push_bind(*param)
                        .push(format!(" AND d.system = '{which}' AND d.value {op} "))
                        .push_bind(value.to_string())
                        .push(")");
                };
                qb.push(" AND");
                match comparator {
                    Comparator::Ge => bound(qb, "end", ">", lower),
                    Comparator::Gt => bound(qb, "end", ">", upper),
                    Comparator::Le => bound(qb, "start", "<", upper),
                    Comparator::Lt => bound(qb, "start", "<", lower),
                    Comparator::Eq | Comparator::Ne => {
                        if *comparator == Comparator::Ne {
                            qb.push(" NOT");
                        }
                        qb.push(" (");
                        bound(qb, "start", "<", upper);
                        qb.push(" AND");
                        bound(qb, "end", ">", lower);
                        qb.push(")");
                    }
                }
            }
        }
    }
}

fn push_order(qb: &mut QueryBuilder<Sqlite>, req: &SearchRequest) {
    const DATE_START: &str = "(SELECT s.value FROM search_tokens s WHERE s.resource_type = r.resource_type AND s.resource_id = r.id AND s.param = 'date' AND s.system = 'start')";
    qb.push(match req.sort {
        Sort::LastUpdatedDesc => " ORDER BY r.last_updated DESC, r.id".to_string(),
        Sort::LastUpdatedAsc => " ORDER BY r.last_updated ASC, r.id".to_string(),
        Sort::DateAsc => format!(" ORDER BY {DATE_START} ASC, r.id"),
        Sort::DateDesc => format!(" ORDER BY {DATE_START} DESC, r.id"),
    });
}

fn push_token_alternatives(qb: &mut QueryBuilder<Sqlite>, alias: &str, any_of: &[Token]) {
    for (i, token) in any_of.iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        qb.push("(1 = 1");
        if let Some(code) = &token.code {
            qb.push(format!(" AND {alias}.value = "))
                .push_bind(code.clone());
        }
        if let Some(system) = &token.system {
            qb.push(format!(" AND {alias}.system = "))
                .push_bind(system.clone());
        }
        qb.push(")");
    }
}

impl SqliteStore {
    /// Hands a job to the writer and waits for its durable answer.
    async fn write<T>(&self, job: impl FnOnce(Reply<T>) -> WriteJob) -> Result<T, StoreError> {
        let sender = match self.writer.lock().await.as_ref() {
            Some((tx, _)) => tx.clone(),
            None => return Err(StoreError::Unavailable("the store is shutting down".into())),
        };
        let (reply, answer) = oneshot::channel();
        sender
            .send(job(reply))
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit(
        &self,
        submission: Submission,
        admission: Option<Admission>,
    ) -> Result<Stored, StoreError> {
        self.write(|reply| WriteJob::Submit(submission, admission, reply))
            .await
    }

    async fn create(&self, resources: Vec<Value>) -> Result<Vec<Value>, StoreError> {
        self.write(|reply| WriteJob::Create(resources, reply)).await
    }

    async fn update(
        &self,
        resource: Value,
        expected_version: Option<i64>,
    ) -> Result<Value, StoreError> {
        self.write(|reply| WriteJob::Update(resource, expected_version, reply))
            .await
    }

    async fn records_of(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<RecordParties>, StoreError> {
        let rows = sqlx::query(
            "SELECT record, patient_id, practice, service, patient_version FROM resource_parties
             WHERE resource_type = ?1 AND resource_id = ?2",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(parties).collect())
    }

    async fn records_of_patient(&self, patient_id: &str) -> Result<Vec<RecordParties>, StoreError> {
        let rows = sqlx::query(
            "SELECT 'ServiceRequest/' || service_request_id, patient_id, practice, service, patient_version
             FROM referrals WHERE patient_id = ?1
             UNION ALL
             SELECT 'Observation/' || observation_id, patient_id, practice, NULL, patient_version
             FROM fit_notes WHERE patient_id = ?1",
        )
        .bind(patient_id)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(parties).collect())
    }

    async fn fit_notes_of_patient(
        &self,
        patient_id: &str,
    ) -> Result<Vec<FitNoteFacts>, StoreError> {
        fit_notes_of(&self.readers, patient_id).await
    }

    async fn patient_by_nhs_number(&self, nhs_number: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT resource_id FROM identities WHERE resource_type = 'Patient' AND system = ? AND value = ?",
        )
        .bind(crate::fhir::systems::NHS_NUMBER)
        .bind(nhs_number)
        .fetch_optional(&self.readers)
        .await?)
    }

    async fn search_candidates(&self, req: &SearchRequest) -> Result<Vec<Candidate>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT r.id, (SELECT pt.value FROM search_tokens pt WHERE pt.resource_type = r.resource_type AND pt.resource_id = r.id AND pt.param = 'patient' LIMIT 1) FROM resources r",
        );
        push_filters(&mut q, req);
        push_order(&mut q, req);
        let rows = q.build().fetch_all(&self.readers).await?;
        Ok(rows
            .iter()
            .map(|r| Candidate {
                id: r.get(0),
                patient: r.get(1),
            })
            .collect())
    }

    async fn read_many(
        &self,
        resource_type: &str,
        ids: &[String],
    ) -> Result<Vec<Value>, StoreError> {
        // CROSS JOIN keeps the id list as the outer loop: with a plain JOIN the planner, which
        // cannot see how long the bound list is, may scan every resource of the type instead.
        let rows = sqlx::query(
            "SELECT r.content FROM json_each(?) j
             CROSS JOIN resources r ON r.resource_type = ? AND r.id = j.value ORDER BY j.key",
        )
        .bind(serde_json::to_string(ids).unwrap_or_default())
        .bind(resource_type)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| parse_content(r.get::<&str, _>(0)))
            .collect()
    }

    async fn create_override(
        &self,
        request: Override,
        audit: Vec<Value>,
    ) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::CreateOverride(request, audit, reply))
            .await
    }

    async fn override_by_id(&self, id: &str) -> Result<Option<(Override, i64)>, StoreError> {
        sqlx::query(select_overrides!("WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .as_ref()
            .map(override_of)
            .transpose()
    }

    async fn update_override(
        &self,
        changed: Override,
        version: i64,
        audit: Vec<Value>,
    ) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::UpdateOverride(changed, version, audit, reply))
            .await
    }

    async fn overrides_of_patient(&self, patient_id: &str) -> Result<Vec<Override>, StoreError> {
        sqlx::query(select_overrides!(
            "WHERE patient_id = ? ORDER BY requested_at DESC, id"
        ))
        .bind(patient_id)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|r| override_of(r).map(|(o, _)| o))
        .collect()
    }

    async fn list_overrides(&self, filter: OverrideFilter) -> Result<Vec<Override>, StoreError> {
        sqlx::query(select_overrides!(
            "WHERE (?1 IS NULL OR state = ?1)
               AND (NOT ?2 OR (state IN ('granted', 'ended') AND reviewed_at IS NULL))
             ORDER BY requested_at DESC, id"
        ))
        .bind(filter.status.map(OverrideStatus::code))
        .bind(filter.unreviewed)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|r| override_of(r).map(|(o, _)| o))
        .collect()
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query("SELECT content FROM resources WHERE resource_type = ? AND id = ?")
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.map(|r| parse_content(r.get::<&str, _>(0))).transpose()
    }

    async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query(
            "SELECT content FROM resources WHERE resource_type = ?1 AND id = ?2 AND version_id = ?3
             UNION ALL
             SELECT content FROM resource_history WHERE resource_type = ?1 AND id = ?2 AND version_id = ?3",
        )
        .bind(resource_type)
        .bind(id)
        .bind(version)
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| parse_content(r.get::<&str, _>(0))).transpose()
    }

    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, StoreError> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM resources r");
        push_filters(&mut count, req);
        let total: i64 = count.build_query_scalar().fetch_one(&self.readers).await?;

        let mut page = QueryBuilder::<Sqlite>::new("SELECT r.content FROM resources r");
        push_filters(&mut page, req);
        push_order(&mut page, req);
        page.push(" LIMIT ")
            .push_bind(i64::from(req.count))
            .push(" OFFSET ")
            .push_bind(i64::from(req.offset));
        let rows = page.build().fetch_all(&self.readers).await?;
        let resources = rows
            .iter()
            .map(|r| parse_content(r.get::<&str, _>(0)))
            .collect::<Result<_, _>>()?;
        Ok(SearchPage {
            total: total as u64,
            resources,
        })
    }

    async fn register_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::Client(ClientWrite::Register(client), reply))
            .await
            .map(drop)
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(select_clients!(" ORDER BY id"))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(client_of).collect()
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(select_clients!(" WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(client_of).transpose()
    }

    async fn revoke_client(&self, id: &str) -> Result<bool, StoreError> {
        self.write(|reply| WriteJob::Client(ClientWrite::Revoke(id.to_string()), reply))
            .await
    }

    async fn consume_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.write(|reply| {
            WriteJob::Client(
                ClientWrite::ConsumeAssertion {
                    client_id: client_id.to_string(),
                    jti: jti.to_string(),
                    expires_at,
                },
                reply,
            )
        })
        .await
    }

    async fn transact(&self, transaction: Transaction) -> Result<Vec<Value>, StoreError> {
        self.write(|reply| WriteJob::Transact(transaction, reply))
            .await
    }

    async fn claim_due(
        &self,
        lease: &Lease,
        now: &str,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let which = Claim::Due {
            now: now.to_string(),
            limit,
        };
        self.write(|reply| WriteJob::Claim(lease.clone(), which, reply))
            .await
    }

    async fn claim_overdue_urgent(
        &self,
        lease: &Lease,
        now: &str,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let which = Claim::OverdueUrgent {
            now: now.to_string(),
            limit,
        };
        self.write(|reply| WriteJob::Claim(lease.clone(), which, reply))
            .await
    }

    async fn claim_delivery(
        &self,
        lease: &Lease,
        id: &str,
        now: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        let which = Claim::One {
            id: id.to_string(),
            now: now.to_string(),
        };
        let claimed = self
            .write(|reply| WriteJob::Claim(lease.clone(), which, reply))
            .await?;
        Ok(claimed.into_iter().next())
    }

    async fn release_delivery(&self, lease: &Lease, id: &str) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::Release(lease.clone(), id.to_string(), reply))
            .await
    }

    async fn update_delivery(&self, update: DeliveryUpdate) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::Delivery(update, reply)).await
    }

    async fn delivery(
        &self,
        id: &str,
    ) -> Result<Option<(Delivery, Vec<DeliveryAttempt>)>, StoreError> {
        let Some(row) = sqlx::query(select_deliveries!("WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT attempt, at, outcome, detail FROM delivery_attempts WHERE delivery_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|r| {
            let outcome: String = r.get(2);
            Ok(DeliveryAttempt {
                attempt: r.get(0),
                at: r.get(1),
                outcome: AttemptOutcome::from_code(&outcome).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "delivery {id} has an attempt with the unknown outcome '{outcome}'"
                    ))
                })?,
                detail: r.get(3),
            })
        })
        .collect::<Result<_, StoreError>>()?;
        Ok(Some((delivery_of(&row)?, attempts)))
    }

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(select_deliveries!(
            "WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR service = ?2)
               AND (?3 IS NULL OR practice = ?3) AND (?4 IS NULL OR referral_id = ?4)
               AND (?5 IS NULL OR message_id = ?5)
             ORDER BY created_at DESC, id LIMIT 1000"
        ))
        .bind(filter.state.map(DeliveryState::code))
        .bind(&filter.service)
        .bind(&filter.practice)
        .bind(&filter.referral)
        .bind(&filter.message_id)
        .fetch_all(&self.readers)
        .await?;
        deliveries_of(&rows)
    }

    async fn quarantine_mesh_message(
        &self,
        message: QuarantinedMessage,
        content: Option<Vec<u8>>,
        audit: Value,
    ) -> Result<bool, StoreError> {
        self.write(|reply| WriteJob::Quarantine(message, content, audit, reply))
            .await
    }

    async fn quarantined_mesh_messages(
        &self,
        limit: u32,
        offset: u32,
    ) -> Result<(u64, Vec<QuarantinedMessage>), StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mesh_quarantine")
            .fetch_one(&self.readers)
            .await?;
        let rows = sqlx::query(select_quarantined!(
            "NULL FROM mesh_quarantine ORDER BY received_at DESC, rowid DESC LIMIT ? OFFSET ?"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.readers)
        .await?;
        Ok((
            u64::try_from(total).unwrap_or_default(),
            rows.iter().map(quarantined_of).collect(),
        ))
    }

    async fn quarantined_mesh_message(
        &self,
        id: &str,
    ) -> Result<Option<(QuarantinedMessage, Option<Vec<u8>>)>, StoreError> {
        let row = sqlx::query(select_quarantined!(
            "content FROM mesh_quarantine WHERE message_id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(|r| {
            let content: Option<Vec<u8>> = r.get(10);
            (quarantined_of(&r), content)
        }))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self
            .writer
            .lock()
            .await
            .as_ref()
            .is_none_or(|(tx, _)| tx.is_closed())
        {
            return Err(StoreError::Unavailable("the writer is not running".into()));
        }
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn close(&self) {
        if let Some((tx, done)) = self.writer.lock().await.take() {
            drop(tx);
            let _ = done.await;
        }
        self.readers.close().await;
    }
}

// --- leases ----------------------------------------------------------------------------------
// Claims on letters, so that several gateway instances on one database never work on the same
// letter at once. A letter is free when nobody holds it or its lease has run out (a killed
// instance's letters are taken over then). Each claim is one statement, written through the
// writer; the PostgreSQL backend adds `FOR UPDATE SKIP LOCKED` to its inner SELECT. `$1`-style
// numbered placeholders, integers as i64.

/// Which letters a claim takes.
enum Claim {
    /// Due for an attempt at `now`: urgent first, then oldest due.
    Due { now: String, limit: u32 },
    /// Urgent, not yet delivered or escalated, past their escalation time at `now`.
    OverdueUrgent { now: String, limit: u32 },
    /// One letter, whatever its state.
    One { id: String, now: String },
}

/// `UPDATE` taking for `$1` until `$2` the letters the inner `SELECT` names among those free
/// at `$3`, and returning them.
macro_rules! claim_deliveries {
    ($which:literal) => {
        concat!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2
             WHERE id IN (SELECT id FROM deliveries
                          WHERE (lease_until IS NULL OR lease_until <= $3) AND ",
            $which,
            ") RETURNING ",
            delivery_columns!()
        )
    };
}

async fn claim(
    conn: &mut SqliteConnection,
    lease: Lease,
    which: Claim,
) -> Result<Vec<Delivery>, StoreError> {
    let rows = match which {
        // The states are those where DeliveryState::awaits_attempt (checked by a test), written
        // as literals so that the partial index `deliveries_due` serves the query.
        Claim::Due { now, limit } => {
            sqlx::query(claim_deliveries!(
                "state IN ('queued', 'escalated', 'sent', 'received') AND next_attempt_at <= $3
                 ORDER BY priority, next_attempt_at, id LIMIT $4"
            ))
            .bind(&lease.owner)
            .bind(&lease.until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
        }
        // The states an escalation applies to (where next(state, UrgentAckOverdue) is not an
        // error; checked by a test).
        Claim::OverdueUrgent { now, limit } => {
            sqlx::query(claim_deliveries!(
                "priority = 0 AND escalated_at IS NULL AND escalate_at <= $3
                 AND state IN ('queued', 'sent', 'received')
                 ORDER BY escalate_at, id LIMIT $4"
            ))
            .bind(&lease.owner)
            .bind(&lease.until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
        }
        Claim::One { id, now } => {
            sqlx::query(claim_deliveries!("id = $4"))
                .bind(&lease.owner)
                .bind(&lease.until)
                .bind(now)
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
        }
    };
    let mut claimed = deliveries_of(&rows)?;
    // RETURNING keeps no order: urgent first, then oldest due, as the inner SELECT chose them.
    claimed.sort_by(|a, b| {
        (!a.urgent, &a.next_attempt_at, &a.id).cmp(&(!b.urgent, &b.next_attempt_at, &b.id))
    });
    Ok(claimed)
}

async fn release(conn: &mut SqliteConnection, lease: Lease, id: String) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND lease_owner = $2 AND lease_until = $3",
    )
    .bind(id)
    .bind(lease.owner)
    .bind(lease.until)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Why a change of a letter under a lease matched no row: no such letter, or the lease is not
/// (any longer) the one that holds it.
async fn lease_refusal(conn: &mut SqliteConnection, id: &str) -> StoreError {
    match sqlx::query_scalar::<_, i64>("SELECT 1 FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
    {
        Ok(Some(_)) => StoreError::LeaseLost(id.to_string()),
        Ok(None) => StoreError::NotFound(format!("delivery {id}")),
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::config::Config;
    use crate::intake::{IntakeContext, practice_referral};

    const REFERRAL: &str =
        include_str!("../../fixtures/referrals/valid/01-gp-work-stress-off-sick.json");
    const REFUSAL: &str = include_str!("../../fixtures/consent/valid/05-nothing-to-dwp.json");

    fn submission(config: &Config, id: &str) -> Submission {
        let mut r: Value = serde_json::from_str(REFERRAL).unwrap();
        r["referralId"] = json!(id);
        practice_referral(&r, &IntakeContext::now(config)).unwrap()
    }

    /// Runs one referral job the way `commit_batch` does, keeping what it leaves pending.
    async fn refer(
        conn: &mut SqliteConnection,
        batch: &mut Pending,
        config: &Config,
        id: &str,
    ) -> Result<Stored, StoreError> {
        let s = submission(config, id);
        let admission = crate::intake::admission::referral(
            &s,
            None,
            &Principal::practice("C88901"),
            None,
            Utc::now(),
            crate::intake::admission::practice_criterion_expression,
            crate::access::PRACTICE_CONSENT_EXPRESSION,
        );
        let mut own = Pending::default();
        let result = in_savepoint!(
            conn,
            apply(conn, s, Some(admission), &batch.tokens, &mut own)
        );
        if matches!(result, Ok(Stored { created: true, .. })) {
            batch.absorb(own);
        }
        result
    }

    /// Index entries wait for the end of the batch; a refusal recorded earlier in the same batch
    /// must still refuse a later referral for that person.
    #[tokio::test]
    async fn later_jobs_in_a_batch_see_consents_recorded_earlier_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        MIGRATOR.run(&mut conn).await.unwrap();
        let config = Config::defaults();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        let mut batch = Pending::default();

        let first = refer(&mut conn, &mut batch, &config, "B-1").await.unwrap();
        let patient: String = sqlx::query_scalar(
            "SELECT content ->> '$.subject.reference' FROM resources WHERE resource_type = 'ServiceRequest' AND id = ?",
        )
        .bind(&first.focus_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            batch.tokens.keys().filter(|(t, _)| t == "Consent").count(),
            3,
            "the referral's Consents are indexed only at the end of the batch"
        );
        // A second referral in the same batch is let in by the first one's Consents.
        refer(&mut conn, &mut batch, &config, "B-2").await.unwrap();

        let mut refusal: Value =
            serde_json::from_str(&REFUSAL.replace("Patient/example", &patient)).unwrap();
        refusal["provision"]["actor"][0]["role"]["coding"][1]["code"] =
            json!("work-health-service");
        let mut own = Pending::default();
        create_all(&mut conn, vec![refusal], &mut own)
            .await
            .unwrap();
        batch.absorb(own);

        let third = refer(&mut conn, &mut batch, &config, "B-3").await;
        assert!(matches!(third, Err(StoreError::Refused(_))), "{third:?}");

        // At the end of the batch every index entry is written once.
        batch.write(&mut conn).await.unwrap();
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
        let consents: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT resource_id) FROM search_tokens WHERE resource_type = 'Consent' AND param = 'patient' AND value = ?",
        )
        .bind(&patient)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(consents, 3 + 3 + 1);
        let duplicates: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM search_tokens GROUP BY resource_type, resource_id, param, system, value HAVING COUNT(*) > 1)",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            duplicates, 0,
            "a re-versioned Patient keeps one set of entries"
        );
    }

    // ---- a state change and its audit are one write -----------------------------------------

    /// A store on a fresh database, and the database's URL for a second connection.
    async fn fresh_store(dir: &std::path::Path) -> (SqliteStore, String) {
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let store = SqliteStore::open(&url, &Config::defaults().store)
            .await
            .unwrap();
        (store, url)
    }

    /// Makes every AuditEvent insert fail from now on, as a crash or a full disk between the
    /// change and its audit would.
    async fn refuse_audit_inserts(url: &str) {
        let mut conn = SqliteConnection::connect(url).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON resources
             WHEN NEW.resource_type = 'AuditEvent'
             BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }

    async fn allow_audit_inserts(url: &str) {
        let mut conn = SqliteConnection::connect(url).await.unwrap();
        sqlx::query("DROP TRIGGER refuse_audit")
            .execute(&mut conn)
            .await
            .unwrap();
    }

    async fn audit_count(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE resource_type = 'AuditEvent'")
            .fetch_one(&store.readers)
            .await
            .unwrap()
    }

    fn audit_of(what: &str) -> Value {
        crate::audit::audit_event(&crate::audit::Event {
            kind: crate::audit::Kind::Updated,
            principal: None,
            patient: Some("Patient/p1".into()),
            entities: vec![what.to_string()],
            decision: None,
            permitted: true,
            description: format!("{what} changed"),
            at: Utc::now(),
            request_id: None,
        })
    }

    fn delivery(id: &str) -> Delivery {
        let now = format_instant(Utc::now());
        Delivery {
            id: id.into(),
            document_id: "d1".into(),
            referral_id: "sr1".into(),
            patient_id: "p1".into(),
            service: "s|whs".into(),
            practice: "o|C88901".into(),
            urgent: false,
            state: DeliveryState::Dead,
            attempts: 3,
            message_id: "m1".into(),
            correlation_id: "c1".into(),
            created_at: now.clone(),
            next_attempt_at: now.clone(),
            deadline_at: now.clone(),
            escalate_at: None,
            escalated_at: None,
            channel: None,
            last_error: None,
            updated_at: now,
            transport_id: None,
        }
    }

    fn requeue(id: &str, communication: Value, audit: Vec<Value>) -> DeliveryUpdate {
        DeliveryUpdate {
            id: id.into(),
            lease: lease_of("test"),
            state: DeliveryState::Queued,
            attempt: Some(DeliveryAttempt {
                attempt: 3,
                at: format_instant(Utc::now()),
                outcome: AttemptOutcome::Requeued,
                detail: None,
            }),
            next_attempt_at: format_instant(Utc::now()),
            last_error: None,
            channel: None,
            escalated_at: None,
            transport_id: None,
            deadline_at: None,
            communication,
            audit,
        }
    }

    #[tokio::test]
    async fn a_workflow_change_whose_audit_cannot_be_written_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = fresh_store(dir.path()).await;
        let task = store
            .create(vec![
                json!({ "resourceType": "Task", "status": "requested", "intent": "proposal" }),
            ])
            .await
            .unwrap()
            .remove(0);
        let id = task["id"].as_str().unwrap().to_string();
        let mut answered = task.clone();
        answered["status"] = json!("accepted");
        let change = |audit| Transaction {
            updates: vec![(answered.clone(), 1)],
            audit,
            ..Default::default()
        };
        refuse_audit_inserts(&url).await;
        let before = audit_count(&store).await;
        let refused = store.transact(change(vec![audit_of("Task/x")])).await;
        assert!(refused.is_err(), "{refused:?}");
        let stored = store.read("Task", &id).await.unwrap().unwrap();
        assert_eq!(
            (
                stored["status"].as_str(),
                stored["meta"]["versionId"].as_str()
            ),
            (Some("requested"), Some("1")),
            "the change went with its audit"
        );
        allow_audit_inserts(&url).await;
        store
            .transact(change(vec![audit_of("Task/x")]))
            .await
            .unwrap();
        assert_eq!(
            store.read("Task", &id).await.unwrap().unwrap()["status"],
            "accepted"
        );
        assert_eq!(audit_count(&store).await, before + 1);
        // What is passed as audit is an AuditEvent, never a record in disguise.
        let mut again = answered.clone();
        again["status"] = json!("rejected");
        let disguised = store
            .transact(Transaction {
                updates: vec![(again, 2)],
                audit: vec![json!({ "resourceType": "Task", "id": id, "status": "completed" })],
                ..Default::default()
            })
            .await;
        assert!(
            matches!(disguised, Err(StoreError::Corrupt(_))),
            "{disguised:?}"
        );
        assert_eq!(
            store.read("Task", &id).await.unwrap().unwrap()["status"],
            "accepted"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_delivery_change_whose_audit_cannot_be_written_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = fresh_store(dir.path()).await;
        let communication =
            json!({ "resourceType": "Communication", "id": "l1", "status": "not-done" });
        store
            .transact(Transaction {
                creates: vec![communication.clone()],
                referral: "sr1".into(),
                deliveries: vec![delivery("l1")],
                ..Default::default()
            })
            .await
            .unwrap();
        let mut queued = store.read("Communication", "l1").await.unwrap().unwrap();
        queued["status"] = json!("preparation");
        let now = format_instant(Utc::now());
        let held = store.claim_delivery(&lease_of("test"), "l1", &now).await;
        assert!(held.unwrap().is_some());
        refuse_audit_inserts(&url).await;
        let refused = store
            .update_delivery(requeue(
                "l1",
                queued.clone(),
                vec![audit_of("Communication/l1")],
            ))
            .await;
        assert!(refused.is_err(), "{refused:?}");
        let (d, attempts) = store.delivery("l1").await.unwrap().unwrap();
        assert_eq!((d.state, attempts.len()), (DeliveryState::Dead, 0));
        assert_eq!(
            store.read("Communication", "l1").await.unwrap().unwrap()["meta"]["versionId"],
            "1"
        );
        allow_audit_inserts(&url).await;
        let before = audit_count(&store).await;
        store
            .update_delivery(requeue("l1", queued, vec![audit_of("Communication/l1")]))
            .await
            .unwrap();
        let (d, attempts) = store.delivery("l1").await.unwrap().unwrap();
        assert_eq!((d.state, attempts.len()), (DeliveryState::Queued, 1));
        assert_eq!(audit_count(&store).await, before + 1);
        store.close().await;
    }

    /// A state or outcome code the gateway does not know is damage, never a letter in some
    /// other state.
    #[tokio::test]
    async fn an_unknown_stored_delivery_state_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = fresh_store(dir.path()).await;
        store
            .transact(Transaction {
                referral: "sr1".into(),
                deliveries: vec![delivery("l1")],
                ..Default::default()
            })
            .await
            .unwrap();
        let (d, _) = store.delivery("l1").await.unwrap().unwrap();
        assert_eq!(d.state, DeliveryState::Dead);
        let filter = DeliveryFilter {
            state: Some(DeliveryState::Dead),
            ..Default::default()
        };
        assert_eq!(store.deliveries(&filter).await.unwrap().len(), 1);
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE deliveries SET state = 'lost' WHERE id = 'l1'")
            .execute(&mut conn)
            .await
            .unwrap();
        let read = store.delivery("l1").await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
        let listed = store.deliveries(&DeliveryFilter::default()).await;
        assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
        sqlx::query(
            "UPDATE deliveries SET state = 'dead' WHERE id = 'l1';
             INSERT INTO delivery_attempts (delivery_id, seq, attempt, at, outcome) VALUES ('l1', 1, 1, '', 'lost')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let read = store.delivery("l1").await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
        store.close().await;
    }

    // --- leases

    fn lease_of(owner: &str) -> Lease {
        Lease {
            owner: owner.into(),
            until: "2999-01-01T00:00:00.000000Z".into(),
        }
    }

    /// `owner`'s lease from `at` for `secs`.
    fn lease_at(owner: &str, at: DateTime<Utc>, secs: i64) -> Lease {
        Lease {
            owner: owner.into(),
            until: format_instant(at + chrono::Duration::seconds(secs)),
        }
    }

    /// A letter in `state`, due (and, if urgent, to be escalated) at `due`.
    fn letter(id: &str, state: DeliveryState, urgent: bool, due: DateTime<Utc>) -> Delivery {
        let mut d = delivery(id);
        d.state = state;
        d.urgent = urgent;
        d.next_attempt_at = format_instant(due);
        d.escalate_at = urgent.then(|| format_instant(due));
        d.message_id = format!("m-{id}");
        d
    }

    async fn queue(store: &SqliteStore, letters: Vec<Delivery>) {
        let creates = letters
            .iter()
            .map(
                |d| json!({ "resourceType": "Communication", "id": d.id, "status": "preparation" }),
            )
            .collect();
        store
            .transact(Transaction {
                creates,
                referral: "sr1".into(),
                deliveries: letters,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    fn ids(claimed: &[Delivery]) -> Vec<&str> {
        claimed.iter().map(|d| d.id.as_str()).collect()
    }

    /// Two gateway instances on one database (two stores on one file here, each with its own
    /// writer) claiming at once never take the same letter, and between them take every one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_owners_claiming_at_once_never_take_the_same_letter() {
        let dir = tempfile::tempdir().unwrap();
        let (a, url) = fresh_store(dir.path()).await;
        let b = SqliteStore::open(&url, &Config::defaults().store)
            .await
            .unwrap();
        let t0 = Utc::now();
        let letters: Vec<Delivery> = (0..120)
            .map(|n| letter(&format!("l{n:03}"), DeliveryState::Queued, n % 7 == 0, t0))
            .collect();
        queue(&a, letters).await;
        let now = format_instant(t0 + chrono::Duration::seconds(1));
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let take = |store: SqliteStore, owner: &'static str, now: String| {
            let start = start.clone();
            tokio::spawn(async move {
                let lease = lease_at(owner, t0, 600);
                let mut taken = Vec::new();
                start.wait().await;
                loop {
                    let claimed = store.claim_due(&lease, &now, 3).await.unwrap();
                    if claimed.is_empty() {
                        break;
                    }
                    taken.extend(claimed.into_iter().map(|d| d.id));
                    // As a worker does between claims (it sends): the other gets its turn at
                    // the database's write lock.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                store.close().await;
                taken
            })
        };
        let (by_a, by_b) = tokio::join!(take(a, "a", now.clone()), take(b, "b", now));
        let (by_a, by_b) = (by_a.unwrap(), by_b.unwrap());
        let mut all: Vec<&String> = by_a.iter().chain(&by_b).collect();
        let claims = all.len();
        all.sort();
        all.dedup();
        assert_eq!(claims, all.len(), "a letter was taken twice");
        assert_eq!(all.len(), 120, "every letter was taken");
        assert!(!by_a.is_empty() && !by_b.is_empty(), "both took some");
    }

    #[tokio::test]
    async fn a_lease_holds_until_it_runs_out_then_another_owner_takes_the_letter_over() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = fresh_store(dir.path()).await;
        let t0 = Utc::now();
        let at = |secs: i64| format_instant(t0 + chrono::Duration::seconds(secs));
        queue(&store, vec![letter("l1", DeliveryState::Queued, false, t0)]).await;
        let a = lease_at("a", t0, 60);
        let claimed = store.claim_due(&a, &at(0), 10).await.unwrap();
        assert_eq!(ids(&claimed), ["l1"]);
        assert_eq!(claimed[0].state, DeliveryState::Queued);

        // While a's lease lasts, nobody takes it: not another owner, not a itself again, not by
        // name.
        for (owner, secs) in [("b", 1), ("a", 30), ("b", 59)] {
            let lease = lease_at(owner, t0 + chrono::Duration::seconds(secs), 60);
            assert!(
                store
                    .claim_due(&lease, &at(secs), 10)
                    .await
                    .unwrap()
                    .is_empty(),
                "{owner} at {secs} s"
            );
            assert!(
                store
                    .claim_delivery(&lease, "l1", &at(secs))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        // Once it runs out (a killed instance), another owner takes the letter over...
        let b = lease_at("b", t0 + chrono::Duration::seconds(60), 60);
        assert_eq!(
            ids(&store.claim_due(&b, &at(60), 10).await.unwrap()),
            ["l1"]
        );
        // ...and a change made under the old lease is refused: nothing is recorded.
        let communication = store.read("Communication", "l1").await.unwrap().unwrap();
        let mut stale = requeue("l1", communication.clone(), vec![]);
        stale.lease = a.clone();
        stale.state = DeliveryState::Accepted;
        let refused = store.update_delivery(stale).await;
        assert!(
            matches!(refused, Err(StoreError::LeaseLost(ref id)) if id == "l1"),
            "{refused:?}"
        );
        let (d, attempts) = store.delivery("l1").await.unwrap().unwrap();
        assert_eq!((d.state, attempts.len()), (DeliveryState::Queued, 0));
        // Letting go under the old lease does nothing either: b still holds it.
        store.release_delivery(&a, "l1").await.unwrap();
        let c = lease_at("c", t0 + chrono::Duration::seconds(61), 60);
        assert!(
            store
                .claim_delivery(&c, "l1", &at(61))
                .await
                .unwrap()
                .is_none()
        );
        // A letter that is not there is not found, whoever asks.
        let mut missing = requeue("l9", communication, vec![]);
        missing.lease = b.clone();
        let refused = store.update_delivery(missing).await;
        assert!(
            matches!(refused, Err(StoreError::NotFound(_))),
            "{refused:?}"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn recording_a_change_or_letting_go_frees_the_letter_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = fresh_store(dir.path()).await;
        let t0 = Utc::now();
        let at = |secs: i64| format_instant(t0 + chrono::Duration::seconds(secs));
        queue(&store, vec![letter("l1", DeliveryState::Queued, false, t0)]).await;
        let a = lease_at("a", t0, 600);
        assert_eq!(ids(&store.claim_due(&a, &at(0), 1).await.unwrap()), ["l1"]);
        let communication = store.read("Communication", "l1").await.unwrap().unwrap();
        let mut retry = requeue("l1", communication, vec![]);
        retry.lease = a.clone();
        retry.next_attempt_at = at(1);
        store.update_delivery(retry.clone()).await.unwrap();
        let (d, attempts) = store.delivery("l1").await.unwrap().unwrap();
        assert_eq!((d.state, attempts.len()), (DeliveryState::Queued, 1));
        // The update let the lease go: due again, b takes it long before a's lease would end.
        let b = lease_at("b", t0, 600);
        assert_eq!(ids(&store.claim_due(&b, &at(2), 1).await.unwrap()), ["l1"]);
        // The released lease is no longer a's: a second update under it is refused.
        let again = store.update_delivery(retry).await;
        assert!(matches!(again, Err(StoreError::LeaseLost(_))), "{again:?}");
        // Letting go without a change frees it too.
        store.release_delivery(&b, "l1").await.unwrap();
        let c = lease_at("c", t0, 600);
        assert!(
            store
                .claim_delivery(&c, "l1", &at(3))
                .await
                .unwrap()
                .is_some()
        );
        store.close().await;
    }

    /// What each claim takes: due letters in the states the worker sends (urgent first, then
    /// oldest due, none not yet due), overdue urgent letters in the states an escalation
    /// applies to, and one letter by name whatever its state.
    #[tokio::test]
    async fn claims_take_the_letters_the_state_machine_says() {
        use crate::delivery::state::{Event, next};
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = fresh_store(dir.path()).await;
        let t0 = Utc::now();
        let secs = |n: i64| t0 + chrono::Duration::seconds(n);
        let mut letters = Vec::new();
        for (n, state) in DeliveryState::ALL.into_iter().enumerate() {
            let n = n as i64;
            letters.push(letter(&format!("r-{state}"), state, false, secs(n)));
            letters.push(letter(&format!("u-{state}"), state, true, secs(10 + n)));
        }
        letters.push(letter(
            "u-escalated-before",
            DeliveryState::Sent,
            true,
            secs(20),
        ));
        letters.push(letter("not-yet", DeliveryState::Queued, true, secs(1000)));
        queue(&store, letters).await;
        // The escalation fields are not written by `transact`: set them as the worker would.
        let mut conn =
            SqliteConnection::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
                .await
                .unwrap();
        sqlx::query("UPDATE deliveries SET escalated_at = $1 WHERE id = 'u-escalated-before'")
            .bind(format_instant(t0))
            .execute(&mut conn)
            .await
            .unwrap();

        let now = format_instant(secs(100));
        let overdue = store
            .claim_overdue_urgent(&lease_at("e", t0, 600), &now, 100)
            .await
            .unwrap();
        let expected: Vec<String> = DeliveryState::ALL
            .into_iter()
            .filter(|s| next(*s, Event::UrgentAckOverdue).is_ok())
            .map(|s| format!("u-{s}"))
            .collect();
        assert_eq!(ids(&overdue), expected);
        // Those are held now; letting them go makes them due for attempts like the rest.
        for d in &overdue {
            store
                .release_delivery(&lease_at("e", t0, 600), &d.id)
                .await
                .unwrap();
        }

        let due = store
            .claim_due(&lease_at("w", t0, 600), &now, 100)
            .await
            .unwrap();
        let awaiting: Vec<DeliveryState> = DeliveryState::ALL
            .into_iter()
            .filter(|s| s.awaits_attempt())
            .collect();
        let mut expected: Vec<String> = awaiting.iter().map(|s| format!("u-{s}")).collect();
        expected.push("u-escalated-before".into());
        expected.extend(awaiting.iter().map(|s| format!("r-{s}")));
        assert_eq!(ids(&due), expected, "urgent first, then oldest due");

        for state in DeliveryState::ALL {
            let id = format!("r-{state}");
            let one = store
                .claim_delivery(&lease_at("x", t0, 600), &id, &format_instant(secs(700)))
                .await
                .unwrap();
            assert_eq!(one.map(|d| d.state), Some(state), "{id}");
        }
        assert!(
            store
                .claim_delivery(&lease_at("x", t0, 600), "nothing", &now)
                .await
                .unwrap()
                .is_none()
        );
        store.close().await;
    }

    fn requested_override() -> Override {
        use crate::consent::overrides::Agent;
        Override {
            id: "o1".into(),
            patient_id: "p1".into(),
            recipient: RecipientClass::WorkHealthService,
            organisation: "s|whs".into(),
            classes: vec![DataClass::Referral],
            reason: OverrideReason::RiskToPerson,
            justification: "Risk to the person disclosed at the practice today.".into(),
            hours: 4,
            requested_by: Agent {
                client: "service:whs".into(),
                organisation: "s|whs".into(),
            },
            // Stored to the microsecond.
            requested_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
            state: OverrideState::Requested,
            review: None,
        }
    }

    #[tokio::test]
    async fn an_override_step_whose_audit_cannot_be_written_is_not_stored() {
        use crate::auth::{Principal, Role};
        use crate::consent::overrides::{Verdict, decide_request};
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = fresh_store(dir.path()).await;
        let request = requested_override();
        refuse_audit_inserts(&url).await;
        let refused = store
            .create_override(request.clone(), vec![audit_of("override o1")])
            .await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(store.override_by_id("o1").await.unwrap(), None);
        allow_audit_inserts(&url).await;
        store
            .create_override(request.clone(), vec![audit_of("override o1")])
            .await
            .unwrap();
        let (stored, version) = store.override_by_id("o1").await.unwrap().unwrap();
        assert_eq!((&stored, version), (&request, 1));

        let ig = Principal::new(Role::InformationGovernance, "IG1");
        let mut granted = stored.clone();
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        granted.state = decide_request(&stored, &ig, Verdict::Grant, "ok", now).unwrap();
        refuse_audit_inserts(&url).await;
        let refused = store
            .update_override(granted.clone(), version, vec![audit_of("override o1")])
            .await;
        assert!(refused.is_err(), "{refused:?}");
        let (unchanged, version) = store.override_by_id("o1").await.unwrap().unwrap();
        assert_eq!((unchanged.state, version), (OverrideState::Requested, 1));
        allow_audit_inserts(&url).await;
        store
            .update_override(granted.clone(), 1, vec![audit_of("override o1")])
            .await
            .unwrap();
        let (now_granted, version) = store.override_by_id("o1").await.unwrap().unwrap();
        assert_eq!((&now_granted, version), (&granted, 2));
        // A change based on the old version is refused: two grants cannot both land.
        let stale = store
            .update_override(granted, 1, vec![audit_of("override o1")])
            .await;
        assert!(
            matches!(
                stale,
                Err(StoreError::VersionConflict {
                    current: 2,
                    expected: 1,
                    ..
                })
            ),
            "{stale:?}"
        );
        assert_eq!(
            store.overrides_of_patient("p1").await.unwrap(),
            [now_granted]
        );
        store.close().await;
    }

    /// Overrides recorded before grants existed were self-granted: the migration keeps them as
    /// they happened, and leaves none in force that information governance has not approved.
    #[tokio::test]
    async fn self_granted_overrides_from_before_grants_stop_unless_reviewed_appropriate() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        MIGRATOR.run_to(7, &mut conn).await.unwrap();
        let legacy = |id: &str, from: chrono::DateTime<Utc>, review: Option<&str>| {
            let mut content = json!({
                "id": id, "patient": "Patient/p1", "recipient": "employer",
                "recipientOrganisation": "e|acme", "dataClasses": ["adviser-letter"],
                "reason": "risk-to-others", "justification": "Falls asleep on night shifts at the gates.",
                "grantedAt": from.to_rfc3339(), "expiresAt": (from + chrono::Duration::hours(24)).to_rfc3339(),
                "grantedBy": { "client": "service:whs", "organisation": "s|whs", "role": "service" },
            });
            if let Some(outcome) = review {
                content["review"] = json!({
                    "outcome": outcome, "note": "looked at", "reviewedAt": (from + chrono::Duration::hours(1)).to_rfc3339(),
                    "reviewedBy": { "client": "information-governance:IG1", "organisation": "i|IG1" },
                });
            }
            (id.to_string(), content)
        };
        let running = Utc::now() - chrono::Duration::hours(2);
        let past = Utc::now() - chrono::Duration::days(10);
        let mut no_org = legacy("no-org", running, Some("appropriate"));
        no_org
            .1
            .as_object_mut()
            .unwrap()
            .remove("recipientOrganisation");
        for (id, content) in [
            legacy("running", running, None),
            legacy("approved", running, Some("appropriate")),
            legacy("inappropriate", running, Some("inappropriate")),
            legacy("expired", past, None),
            no_org,
        ] {
            sqlx::query(
                "INSERT INTO consent_overrides (id, patient_id, granted_at, expires_at, reviewed_at, content)
                 VALUES (?, 'p1', ?, ?, ?, ?)",
            )
            .bind(&id)
            .bind(content["grantedAt"].as_str())
            .bind(content["expiresAt"].as_str())
            .bind(content["review"]["reviewedAt"].as_str())
            .bind(content.to_string())
            .execute(&mut conn)
            .await
            .unwrap();
        }
        MIGRATOR.run(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let store = SqliteStore::open(&url, &Config::defaults().store)
            .await
            .unwrap();
        let state = |id: &'static str| {
            let store = &store;
            async move {
                let (o, _) = store.override_by_id(id).await.unwrap().unwrap();
                o
            }
        };
        let running = state("running").await;
        assert_eq!(
            running.state.status(),
            OverrideStatus::Ended,
            "self-granted, not approved"
        );
        assert_eq!(running.hours, 24);
        assert_eq!(
            running.state.grant().unwrap().by.client,
            "service:whs",
            "kept as it happened"
        );
        let approved = state("approved").await;
        assert_eq!(approved.state.status(), OverrideStatus::Granted);
        assert_eq!(approved.review.unwrap().outcome, ReviewOutcome::Appropriate);
        let inappropriate = state("inappropriate").await;
        assert!(
            matches!(inappropriate.state, OverrideState::Ended { at, .. } if at == inappropriate.review.as_ref().unwrap().at)
        );
        let expired = state("expired").await;
        assert_eq!(
            expired.state.status(),
            OverrideStatus::Granted,
            "expired: left for review"
        );
        assert!(expired.review.is_none());
        assert_eq!(
            state("no-org").await.organisation,
            "",
            "names no organisation: covers none"
        );
        assert_eq!(
            store
                .list_overrides(OverrideFilter {
                    status: None,
                    unreviewed: true
                })
                .await
                .unwrap()
                .iter()
                .map(|o| o.id.as_str())
                .collect::<Vec<_>>(),
            ["running", "expired"],
            "granted (ended since, or expired) and never reviewed: newest first"
        );
        store.close().await;
    }
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;
    use sqlx::Connection;

    /// A database at migration 0007 (before Patient versions were pinned), holding a person
    /// with two versions and a referral and a fit note stored with each, is pinned by 0008 to
    /// the version each came with, never the current one.
    #[tokio::test]
    async fn records_stored_before_versions_were_pinned_get_the_version_current_then() {
        let dir = tempfile::tempdir().unwrap();
        let early = dir.path().join("migrations");
        std::fs::create_dir(&early).unwrap();
        let all = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        for entry in std::fs::read_dir(all).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.as_str() < "0008" {
                std::fs::copy(&path, early.join(name)).unwrap();
            }
        }
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(early.as_path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        let (t1, t2) = ("2026-03-01T09:00:00.000000Z", "2026-04-01T09:00:00.000000Z");
        for (sql, at) in [
            (
                "INSERT INTO resource_history VALUES ('Patient', 'p1', 1, ?, '{}')",
                t1,
            ),
            (
                "INSERT INTO resources VALUES ('Patient', 'p1', 2, ?, '{}', '')",
                t2,
            ),
            (
                "INSERT INTO referrals VALUES ('sr1', 'p1', 'ods|A', 'svc|s', ?)",
                t1,
            ),
            (
                "INSERT INTO referrals VALUES ('sr2', 'p1', 'ods|B', 'svc|s', ?)",
                t2,
            ),
            (
                "INSERT INTO fit_notes VALUES ('o1', 'p1', 'ods|A', '2026-03-01', NULL, '2026-03-01', 1, ?)",
                t1,
            ),
        ] {
            sqlx::query(sql).bind(at).execute(&mut conn).await.unwrap();
        }
        MIGRATOR.run(&mut conn).await.unwrap();
        let pinned: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT service_request_id, patient_version FROM referrals
             UNION ALL SELECT observation_id, patient_version FROM fit_notes ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            pinned,
            [
                ("o1".into(), Some(1)),
                ("sr1".into(), Some(1)),
                ("sr2".into(), Some(2))
            ]
        );
    }
}
