//! `whg backup` and `whg restore`: a consistent copy of the gateway's database taken while it
//! runs, and that copy put back in place of a lost or damaged database. See
//! `docs/operations-backup.md`.
//!
//! - SQLite: `VACUUM INTO` on a connection of the backup's own, which reads one snapshot (a
//!   read transaction in WAL mode) while the gateway goes on writing; the copy is written
//!   owner-only, checked (`PRAGMA quick_check`), flushed to disk and only then given its name.
//!   A restore copies the backup into place the same way, after removing the old database's
//!   `-wal` and `-shm` (a WAL left beside a different database would be replayed into it).
//! - PostgreSQL: `pg_dump --format=custom`, which reads one snapshot (a repeatable-read
//!   transaction); `pg_restore --clean --if-exists --no-owner --single-transaction`, so a
//!   restore is all or nothing. The password is given to them in `PGPASSWORD`, never on their
//!   command line, where other users of the machine could read it.
//!
//! Neither replaces what it would overwrite unless told to: a backup never writes over a file,
//! and a restore refuses a database that holds anything unless `force` is given.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// Which database a URL names, for backup and restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: its URL without the password, and the password.
    Postgres {
        url: String,
        password: Option<String>,
    },
}

/// What a backup file holds, known from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackupFormat {
    Sqlite,
    PgDumpCustom,
}

/// What a backup or restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The file written (a backup) or read (a restore).
    pub file: PathBuf,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "unsupported database URL {0}: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
    )]
    UnsupportedUrl(String),
    #[error("{0} exists: a backup never writes over a file; choose a new name")]
    TargetExists(PathBuf),
    #[error("there is no database at {0}")]
    NoDatabase(PathBuf),
    #[error(
        "the database {0} already holds data: stop every gateway using it, then run the restore again with --force to replace it"
    )]
    DatabaseExists(String),
    #[error("{file} is not a backup of {backend} database (`whg backup` writes one)")]
    WrongFormat {
        file: PathBuf,
        backend: &'static str,
    },
    #[error("{file} is damaged: {detail}")]
    Damaged { file: PathBuf, detail: String },
    #[error(
        "{tool} was not found: install the PostgreSQL client programs of the server's major version or later (Debian: postgresql-client-15)"
    )]
    ToolMissing { tool: &'static str },
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        tool: &'static str,
        status: String,
        stderr: String,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BackupError {
    /// True when the command refused to do something destructive, rather than failed.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BackupError::TargetExists(_)
                | BackupError::DatabaseExists(_)
                | BackupError::WrongFormat { .. }
        )
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Database {
    /// The database `url` names (`sqlite://PATH`, `postgres://…` or `postgresql://…`).
    pub fn from_url(url: &str) -> Result<Database, BackupError> {
        if url.starts_with("sqlite:") {
            if url.contains(":memory:") || url.contains("mode=memory") {
                return Err(BackupError::UnsupportedUrl(
                    "an in-memory SQLite database".into(),
                ));
            }
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|_| BackupError::UnsupportedUrl(crate::store::redacted_url(url)))?;
            return Ok(Database::Sqlite(options.get_filename().to_path_buf()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut parsed = url::Url::parse(url)
                .map_err(|_| BackupError::UnsupportedUrl(crate::store::redacted_url(url)))?;
            let password = parsed.password().map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            });
            // Cannot fail: the URL has a host, or parsing it as postgres:// would have failed.
            let _ = parsed.set_password(None);
            return Ok(Database::Postgres {
                url: parsed.to_string(),
                password,
            });
        }
        Err(BackupError::UnsupportedUrl(crate::store::redacted_url(url)))
    }

    /// How to name the database in messages: its path, or its URL without the password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres { url, .. } => url.clone(),
        }
    }
}

/// Writes a consistent copy of `database` to the new file `to`, owner-only (it holds personal
/// data). The gateway may go on running and writing meanwhile.
pub async fn backup(database: &Database, to: &Path) -> Result<Done, BackupError> {
    if to.exists() {
        return Err(BackupError::TargetExists(to.to_path_buf()));
    }
    let partial = partial_name(to);
    remove_if_present(&partial)?;
    // Created empty and owner-only here; what writes it (SQLite, pg_dump) keeps the mode.
    crate::secret_file::create(&partial, b"").map_err(io(&partial))?;
    let written = match database {
        Database::Sqlite(path) => sqlite_backup(path, &partial).await,
        Database::Postgres { url, password } => pg_dump(url, password.as_deref(), &partial),
    };
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    put_in_place(&partial, to)?;
    Ok(Done {
        file: to.to_path_buf(),
        bytes: std::fs::metadata(to).map_err(io(to))?.len(),
    })
}

/// Replaces `database` with the backup in `from`. Refuses a database that holds anything unless
/// `force`: stop every gateway using it first.
pub async fn restore(database: &Database, from: &Path, force: bool) -> Result<Done, BackupError> {
    let format = format_of(from)?;
    match database {
        Database::Sqlite(path) => {
            if format != BackupFormat::Sqlite {
                return Err(BackupError::WrongFormat {
                    file: from.to_path_buf(),
                    backend: "an SQLite",
                });
            }
            sqlite_restore(from, path, force).await?;
        }
        Database::Postgres { url, password } => {
            if format != BackupFormat::PgDumpCustom {
                return Err(BackupError::WrongFormat {
                    file: from.to_path_buf(),
                    backend: "a PostgreSQL",
                });
            }
            if !force && pg_holds_tables(url, password.as_deref()).await? {
                return Err(BackupError::DatabaseExists(url.clone()));
            }
            pg_restore(url, password.as_deref(), from)?;
        }
    }
    Ok(Done {
        file: from.to_path_buf(),
        bytes: std::fs::metadata(from).map_err(io(from))?.len(),
    })
}

// ---- SQLite -----------------------------------------------------------------------------------

async fn sqlite_backup(database: &Path, to: &Path) -> Result<(), BackupError> {
    if !holds_data(database)? {
        return Err(BackupError::NoDatabase(database.to_path_buf()));
    }
    // Read-only, and never created: a backup of a mistyped path fails instead of copying an
    // empty database. The busy timeout covers the moment the gateway checkpoints its WAL.
    let options = SqliteConnectOptions::new()
        .filename(database)
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(30));
    let mut conn = SqliteConnection::connect_with(&options).await?;
    // One read transaction: the copy is the database as of one commit, whatever is written
    // while it runs.
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(to.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await;
    conn.close().await?;
    copied?;
    check_sqlite(to).await
}

async fn sqlite_restore(from: &Path, database: &Path, force: bool) -> Result<(), BackupError> {
    check_sqlite(from).await?;
    let [db, wal, shm] = sqlite_files(database);
    // A database file the gateway pre-created and never wrote to is empty: nothing to lose.
    if !force && (holds_data(&db)? || holds_data(&wal)?) {
        return Err(BackupError::DatabaseExists(database.display().to_string()));
    }
    let partial = partial_name(database);
    remove_if_present(&partial)?;
    {
        let mut source = std::fs::File::open(from).map_err(io(from))?;
        crate::secret_file::create(&partial, b"").map_err(io(&partial))?;
        let mut target = std::fs::OpenOptions::new()
            .write(true)
            .open(&partial)
            .map_err(io(&partial))?;
        std::io::copy(&mut source, &mut target).map_err(io(&partial))?;
        target.flush().map_err(io(&partial))?;
    }
    // The old database's WAL and shared memory go before the new file takes its name: SQLite
    // would otherwise apply the old WAL's pages to the restored database.
    remove_if_present(&wal)?;
    remove_if_present(&shm)?;
    put_in_place(&partial, &db)
}

/// Checks an SQLite file is a whole database the gateway made: `quick_check` passes and it has
/// the gateway's migrations table.
async fn check_sqlite(file: &Path) -> Result<(), BackupError> {
    let damaged = |detail: String| BackupError::Damaged {
        file: file.to_path_buf(),
        detail,
    };
    let options = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .create_if_missing(false);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| damaged(e.to_string()))?;
    let verdict: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| damaged(e.to_string()))?;
    let migrated: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| damaged(e.to_string()))?;
    conn.close().await?;
    if verdict != "ok" {
        return Err(damaged(format!("integrity check: {verdict}")));
    }
    if migrated == 0 {
        return Err(damaged("it holds no gateway schema".into()));
    }
    Ok(())
}

/// The database and its `-wal` and `-shm` files, as SQLite names them.
fn sqlite_files(db: &Path) -> [PathBuf; 3] {
    [db.to_path_buf(), suffixed(db, "-wal"), suffixed(db, "-shm")]
}

// ---- PostgreSQL -------------------------------------------------------------------------------

fn pg_dump(url: &str, password: Option<&str>, to: &Path) -> Result<(), BackupError> {
    let mut command = pg_tool("pg_dump", password);
    command
        .arg("--format=custom")
        .arg("--no-password")
        .arg(format!("--file={}", to.display()))
        .arg(format!("--dbname={url}"));
    run(command, "pg_dump")
}

fn pg_restore(url: &str, password: Option<&str>, from: &Path) -> Result<(), BackupError> {
    let mut command = pg_tool("pg_restore", password);
    command
        .args([
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--no-password",
        ])
        .arg(format!("--dbname={url}"))
        .arg(from);
    run(command, "pg_restore")
}

/// Whether the database holds any table outside PostgreSQL's own schemas.
async fn pg_holds_tables(url: &str, password: Option<&str>) -> Result<bool, BackupError> {
    let mut options = sqlx::postgres::PgConnectOptions::from_str(url)?;
    if let Some(p) = password {
        options = options.password(p);
    }
    let mut conn = sqlx::postgres::PgConnection::connect_with(&options).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(tables > 0)
}

fn pg_tool(tool: &str, password: Option<&str>) -> Command {
    let mut command = Command::new(tool);
    if let Some(p) = password {
        command.env("PGPASSWORD", p);
    }
    command
}

fn run(mut command: Command, tool: &'static str) -> Result<(), BackupError> {
    let out = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackupError::ToolMissing { tool },
        _ => BackupError::ToolFailed {
            tool,
            status: "did not start".into(),
            stderr: e.to_string(),
        },
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(BackupError::ToolFailed {
        tool,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

// ---- files ------------------------------------------------------------------------------------

/// What a backup file holds, from its first bytes: SQLite's header or pg_dump's.
fn format_of(file: &Path) -> Result<BackupFormat, BackupError> {
    let mut head = [0u8; 16];
    let read = {
        use std::io::Read;
        let mut f = std::fs::File::open(file).map_err(io(file))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]).map_err(io(file))? {
                0 => break,
                k => n += k,
            }
        }
        n
    };
    match &head[..read] {
        h if h.starts_with(b"SQLite format 3\0") => Ok(BackupFormat::Sqlite),
        h if h.starts_with(b"PGDMP") => Ok(BackupFormat::PgDumpCustom),
        _ => Err(BackupError::Damaged {
            file: file.to_path_buf(),
            detail: "neither an SQLite database nor a pg_dump archive".into(),
        }),
    }
}

/// Whether `path` is a file with something in it.
fn holds_data(path: &Path) -> Result<bool, BackupError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len() > 0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(path)(e)),
    }
}

/// The name a file is written under until it is complete.
fn partial_name(path: &Path) -> PathBuf {
    suffixed(path, ".partial")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Flushes a completed file to disk, gives it its final name and flushes the directory, so that
/// the name is only ever seen on a whole file, also after a power loss.
fn put_in_place(partial: &Path, path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(io(partial))?;
    std::fs::rename(partial, path).map_err(io(path))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_database_and_keep_the_password_out_of_sight() {
        assert_eq!(
            Database::from_url("sqlite://data/whg.db").unwrap(),
            Database::Sqlite(PathBuf::from("data/whg.db"))
        );
        assert!(Database::from_url("sqlite::memory:").is_err());
        let pg = Database::from_url("postgres://whg:s%40cret@127.0.0.1:5432/whg").unwrap();
        assert_eq!(
            pg,
            Database::Postgres {
                url: "postgres://whg@127.0.0.1:5432/whg".into(),
                password: Some("s@cret".into()),
            }
        );
        assert!(!pg.describe().contains("cret"));
        let err = Database::from_url("mysql://root:hunter2@db/whg").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(
            crate::store::redacted_url("postgres://u:p@h/d"),
            "postgres://u:***@h/d".to_string()
        );
    }

    async fn gateway_database(path: &Path) {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        for sql in [
            "CREATE TABLE _sqlx_migrations (version INTEGER PRIMARY KEY)",
            "CREATE TABLE referrals (id TEXT PRIMARY KEY)",
            "INSERT INTO referrals VALUES ('before')",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }

    async fn referrals(path: &Path) -> Vec<String> {
        let options = SqliteConnectOptions::new().filename(path).read_only(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query_scalar("SELECT id FROM referrals ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_sqlite_backup_is_owner_only_and_restores_only_over_nothing_unless_forced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("whg.db");
        gateway_database(&db).await;
        let database = Database::Sqlite(db.clone());
        let copy = dir.path().join("backups/one.db");
        std::fs::create_dir(dir.path().join("backups")).unwrap();
        backup(&database, &copy).await.unwrap();
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!partial_name(&copy).exists());
        assert!(matches!(
            backup(&database, &copy).await,
            Err(BackupError::TargetExists(_))
        ));

        // Written after the backup: gone once the backup is restored over it.
        let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&db))
            .await
            .unwrap();
        sqlx::query("INSERT INTO referrals VALUES ('after')")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let refused = restore(&database, &copy, false).await.unwrap_err();
        assert!(refused.is_refusal(), "{refused}");
        assert_eq!(referrals(&db).await, ["after", "before"]);
        // A WAL left beside the old database is not replayed into the restored one.
        std::fs::write(suffixed(&db, "-wal"), b"stale").unwrap();
        restore(&database, &copy, true).await.unwrap();
        assert!(!suffixed(&db, "-wal").exists());
        assert_eq!(referrals(&db).await, ["before"]);
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Into an empty place: no --force needed.
        let elsewhere = Database::Sqlite(dir.path().join("new/whg.db"));
        std::fs::create_dir(dir.path().join("new")).unwrap();
        restore(&elsewhere, &copy, false).await.unwrap();
        assert_eq!(referrals(&dir.path().join("new/whg.db")).await, ["before"]);
    }

    #[tokio::test]
    async fn what_is_not_a_gateway_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = Database::Sqlite(dir.path().join("whg.db"));
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a database").unwrap();
        assert!(matches!(
            restore(&target, &text, false).await,
            Err(BackupError::Damaged { .. })
        ));
        let dump = dir.path().join("pg.dump");
        std::fs::write(&dump, b"PGDMP\x01\x0e\x00").unwrap();
        assert!(matches!(
            restore(&target, &dump, false).await,
            Err(BackupError::WrongFormat { .. })
        ));
        assert!(matches!(
            backup(&target, &dir.path().join("copy.db")).await,
            Err(BackupError::NoDatabase(_))
        ));
        assert!(!dir.path().join("copy.db").exists());
    }
}
