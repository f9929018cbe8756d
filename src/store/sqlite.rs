//! SQLite store: WAL mode, `synchronous = FULL`, one writer task that commits submissions in
//! batches (group commit), and a pool of readers.
//!
//! Group commit is what makes durable intake fast: every request waits for an fsync, but requests
//! that arrive while one commit is in flight share the next one. Each submission runs inside its
//! own savepoint, so one failing submission never takes its batch-mates down with it.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::plan::{Existing, PlannedWrite, plan_writes};
use super::{SearchPage, Store, StoreError, StoredReferral};
use crate::config::StoreConfig;
use crate::fhir::search::{Comparator, Filter, IndexEntry, SearchRequest, Token, format_instant};
use crate::intake::ReferralSubmission;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

type Reply = oneshot::Sender<Result<StoredReferral, StoreError>>;

struct WriteJob {
    submission: ReferralSubmission,
    reply: Reply,
}

pub struct SqliteStore {
    readers: SqlitePool,
    writer: Mutex<Option<(mpsc::Sender<WriteJob>, JoinHandle<()>)>>,
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
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
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
        let handle = tokio::spawn(writer_loop(writer, rx, settings.max_batch));
        Ok(SqliteStore {
            readers,
            writer: Mutex::new(Some((tx, handle))),
        })
    }
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
            let _ = job.reply.send(Err(StoreError::Unavailable(format!(
                "cannot begin a transaction: {e}"
            ))));
        }
        return;
    }
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        answers.push((job.reply, apply_in_savepoint(conn, job.submission).await));
    }
    let committed = sqlx::query("COMMIT").execute(&mut *conn).await;
    if let Err(e) = committed {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        tracing::error!(error = %e, batch = answers.len(), "commit failed; batch rolled back");
        for (reply, _) in answers {
            let _ = reply.send(Err(StoreError::Unavailable(format!("commit failed: {e}"))));
        }
        return;
    }
    // Only now, with the batch on disk, does any caller hear "stored".
    for (reply, result) in answers {
        let _ = reply.send(result);
    }
}

async fn apply_in_savepoint(
    conn: &mut SqliteConnection,
    submission: ReferralSubmission,
) -> Result<StoredReferral, StoreError> {
    sqlx::query("SAVEPOINT submission")
        .execute(&mut *conn)
        .await?;
    let result = apply(conn, submission).await;
    // A conflict or a resend wrote nothing worth keeping either; only a new submission is kept.
    let keep = matches!(result, Ok(StoredReferral { created: true, .. }));
    let end = if keep {
        "RELEASE submission"
    } else {
        "ROLLBACK TO submission"
    };
    sqlx::query(end).execute(&mut *conn).await?;
    if !keep {
        sqlx::query("RELEASE submission")
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply(
    conn: &mut SqliteConnection,
    s: ReferralSubmission,
) -> Result<StoredReferral, StoreError> {
    let now = format_instant(Utc::now());
    // Time-ordered ids: new rows land at the end of every index instead of on random pages.
    let focus_id = uuid::Uuid::now_v7().to_string();
    // The key's primary key decides: the first insert wins, every later one sees the stored row.
    let inserted = sqlx::query(
        "INSERT INTO submissions (namespace, key, content_hash, focus_type, focus_id, created_at)
         VALUES (?, ?, ?, 'ServiceRequest', ?, ?) ON CONFLICT (namespace, key) DO NOTHING",
    )
    .bind(&s.key.namespace)
    .bind(&s.key.value)
    .bind(&s.content_hash)
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
        return if hash == s.content_hash {
            Ok(StoredReferral {
                service_request_id: id,
                created: false,
            })
        } else {
            Err(StoreError::Conflict {
                namespace: s.key.namespace.clone(),
                key: s.key.value.clone(),
                existing_id: id,
            })
        };
    }

    let existing = matched_resources(conn, &s).await?;
    let writes = plan_writes(s, &existing, &focus_id, &now);
    write_all(conn, &writes, &now).await?;
    Ok(StoredReferral {
        service_request_id: focus_id,
        created: true,
    })
}

// Each statement is a round trip to sqlx's SQLite worker thread, so a submission's rows are
// written by a handful of set-based statements over JSON arrays (`json_each`) rather than one
// statement per row. The SQL text stays constant, so every statement is prepared once.

/// Stored resources that the submission's shared entries match by identifier, by `full_url`.
async fn matched_resources(
    conn: &mut SqliteConnection,
    s: &ReferralSubmission,
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
        "SELECT j.value ->> 3, r.id, r.version_id, r.last_updated, r.content, r.source_time
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
            },
        );
    }
    Ok(existing)
}

async fn write_all(
    conn: &mut SqliteConnection,
    writes: &[PlannedWrite],
    now: &str,
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
        "INSERT INTO resources (resource_type, id, version_id, last_updated, content, source_time) ",
    );
    insert.push_values(writes.iter().zip(contents), |mut row, (w, content)| {
        row.push_bind(w.resource_type.clone())
            .push_bind(w.id.clone())
            .push_bind(w.version_id)
            .push_bind(now.to_string())
            .push_bind(content)
            .push_bind(w.source_time.clone());
    });
    insert.push(
        " ON CONFLICT (resource_type, id) DO UPDATE
          SET version_id = excluded.version_id, last_updated = excluded.last_updated,
              content = excluded.content, source_time = excluded.source_time",
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

    let tokens: Vec<(&PlannedWrite, &IndexEntry)> = writes
        .iter()
        .flat_map(|w| w.index.iter().map(move |t| (w, t)))
        .collect();
    // SQLite allows 32766 bound parameters; a referral has a few dozen tokens.
    for chunk in tokens.chunks(1000) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO search_tokens (resource_type, resource_id, param, system, value) ",
        );
        insert.push_values(chunk, |mut row, (w, t)| {
            row.push_bind(w.resource_type.clone())
                .push_bind(w.id.clone())
                .push_bind(t.param)
                .push_bind(t.system.clone())
                .push_bind(t.value.clone());
        });
        insert.build().persistent(true).execute(&mut *conn).await?;
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
        }
    }
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

#[async_trait]
impl Store for SqliteStore {
    async fn submit_referral(
        &self,
        submission: ReferralSubmission,
    ) -> Result<StoredReferral, StoreError> {
        let sender = match self.writer.lock().await.as_ref() {
            Some((tx, _)) => tx.clone(),
            None => return Err(StoreError::Unavailable("the store is shutting down".into())),
        };
        let (reply, answer) = oneshot::channel();
        sender
            .send(WriteJob { submission, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query("SELECT content FROM resources WHERE resource_type = ? AND id = ?")
            .bind(resource_type)
            .bind(id)
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
        page.push(" ORDER BY r.last_updated DESC, r.id LIMIT ")
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
        if let Some((tx, handle)) = self.writer.lock().await.take() {
            drop(tx);
            let _ = handle.await;
        }
        self.readers.close().await;
    }
}
