//! SQLite store, the embedded default: WAL mode, `synchronous = FULL`, one writer that commits in
//! batches (group commit), and a pool of read-only connections. One process owns the file.
//!
//! Group commit is what makes durable intake fast: every request waits for an fsync, but requests
//! that arrive while one commit is in flight share the next one. Each submission runs inside its
//! own savepoint, so one failing submission never takes its batch-mates down with it.
//!
//! The SQL itself is shared with the PostgreSQL backend (`store/sql/`, see `store/mod.rs`);
//! what differs is said here, in the dialect below.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool};

use crate::config::StoreConfig;

type Db = Sqlite;
type Conn = SqliteConnection;
type DbRow = SqliteRow;
type Pool = SqlitePool;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

// ---- the dialect the shared SQL is written in

/// Takes the write lock at once: a batch never fails half-way for want of it.
/// OpenTelemetry's `db.system.name` for this backend.
const DB_SYSTEM: &str = "sqlite";
const BEGIN_BATCH: &str = "BEGIN IMMEDIATE";

/// Nothing to set: a deferred transaction on a WAL database reads one snapshot from its first
/// read to its end.
const SNAPSHOT_READ: Option<&str> = None;

/// The elements of a JSON array bound as `$p`, as rows `j` with a column `value`.
macro_rules! json_rows {
    ($p:literal) => {
        concat!("json_each(", $p, ") AS j")
    };
}

/// The strings of a JSON array bound as `$p`, as rows with a text column `value`.
macro_rules! json_texts {
    ($p:literal) => {
        concat!("json_each(", $p, ")")
    };
}

/// The strings of a JSON array, as rows `j (value, key)` in array order, joined (as the outer
/// loop) to what follows. CROSS JOIN keeps the id list as the outer loop: with a plain JOIN the
/// planner, which cannot see how long the bound list is, may scan every resource of the type.
macro_rules! ids_in_order_join {
    ($p:literal) => {
        concat!("json_each(", $p, ") j CROSS JOIN")
    };
}

/// A JSON value extracted with `->>`, as an integer (SQLite's `->>` already gives one).
macro_rules! json_int {
    ($e:literal) => {
        $e
    };
}

/// The larger of two values.
macro_rules! greatest {
    () => {
        "MAX"
    };
}

/// Locks the rows a read-then-write reads: nothing to add, as one writer holds the database.
macro_rules! for_update {
    () => {
        ""
    };
}

/// Skips rows another writer is locking: nothing to add, as one writer holds the database.
macro_rules! skip_locked {
    () => {
        ""
    };
}

/// The order rows of a table were inserted in.
macro_rules! insertion_order {
    () => {
        "rowid"
    };
}

/// Serialises writers about the same people across instances: nothing to do, as one writer
/// holds the database.
async fn lock_keys(_conn: &mut Conn, _keys: &[String]) -> Result<(), StoreError> {
    Ok(())
}

include!("../sql/prelude.rs");
include!("../sql/writer.rs");
include!("../sql/submissions.rs");
include!("../sql/resources.rs");
include!("../sql/search.rs");
include!("../sql/outbox.rs");
include!("../sql/overrides.rs");
include!("../sql/registry.rs");
include!("../sql/quarantine.rs");
include!("../sql/sessions.rs");
include!("../sql/alerts.rs");

pub type SqliteStore = SqlStore;

/// Nothing beyond the shared state: one process owns an SQLite database.
struct BackendState;

#[async_trait]
impl crate::store::Coordination for SqlStore {
    async fn take_shared_allowance(
        &self,
        _key: &str,
        _rate: f64,
        _burst: f64,
        _now: DateTime<Utc>,
    ) -> Result<Option<crate::store::Allowance>, StoreError> {
        Ok(None)
    }

    async fn leads(&self, _task: crate::store::Singleton) -> Result<bool, StoreError> {
        Ok(true)
    }
}

impl SqlStore {
    pub async fn open(url: &str, settings: &StoreConfig) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::UnsupportedUrl(format!("{}: {e}", super::redacted_url(url))))?
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
            .connect_with(options.clone().read_only(true))
            .await?;
        SqlStore::start(writer, options, readers, settings.max_batch, BackendState)
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

#[cfg(test)]
mod tests;
