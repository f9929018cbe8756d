//! PostgreSQL store, the multi-instance backend: several gateways on one database behind a load
//! balancer. Each instance keeps one writer connection that commits in batches (group commit:
//! requests arriving while a commit is in flight share the next one) and a pool of readers.
//!
//! What makes several writers safe, where SQLite has only one:
//! - the write-once submission key is a primary key: a concurrent identical insert waits for the
//!   first to commit and then finds it (`ON CONFLICT DO NOTHING`), so one referral is stored;
//! - writers about the same people take turns on transaction-scoped advisory locks
//!   ([`lock_keys`]): a submission on the shared resources it names (the person, the practice),
//!   an admission decision and a Consent on the person, so a withdrawal committed by one instance
//!   is always seen by the next admission on another;
//! - a read-then-write of a resource's version locks its row (`FOR UPDATE`).
//!
//! The SQL is shared with the SQLite backend (`store/sql/`, see `store/mod.rs`); what differs is
//! the dialect below.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres};

use crate::config::StoreConfig;

type Db = Postgres;
type Conn = PgConnection;
type DbRow = PgRow;
type Pool = PgPool;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

// ---- the dialect the shared SQL is written in

/// READ COMMITTED: each statement sees what other instances committed before it began.
const BEGIN_BATCH: &str = "BEGIN";

/// The elements of a JSON array bound as `$p`, as rows `j` with a column `value`.
macro_rules! json_rows {
    ($p:literal) => {
        concat!("json_array_elements(", $p, "::json) AS j(value)")
    };
}

/// The strings of a JSON array bound as `$p`, as rows with a text column `value`.
macro_rules! json_texts {
    ($p:literal) => {
        concat!("json_array_elements_text(", $p, "::json) AS j(value)")
    };
}

/// The strings of a JSON array, as rows `j (value, key)` in array order, joined to what follows.
macro_rules! ids_in_order_join {
    ($p:literal) => {
        concat!(
            "json_array_elements_text(",
            $p,
            "::json) WITH ORDINALITY AS j(value, key) JOIN"
        )
    };
}

/// A JSON value extracted with `->>` (text in PostgreSQL), as an integer.
macro_rules! json_int {
    ($e:literal) => {
        concat!("(", $e, ")::bigint")
    };
}

/// The larger of two values.
macro_rules! greatest {
    () => {
        "GREATEST"
    };
}

/// Locks the rows a read-then-write reads, so another instance's change waits for this one and
/// then sees the version it wrote.
macro_rules! for_update {
    () => {
        " FOR UPDATE"
    };
}

/// The order rows of a table were inserted in.
macro_rules! insertion_order {
    () => {
        "seq"
    };
}

/// Takes a transaction-scoped advisory lock on each key, in the order given (callers sort them,
/// so two writers never wait for each other's second key). Held until the batch commits or rolls
/// back. A deadlock between batches of two instances is still possible when jobs of one batch
/// lock different people; PostgreSQL then refuses one statement, whose job fails as unavailable
/// (the client retries) while its batch-mates go on.
async fn lock_keys(conn: &mut Conn, keys: &[String]) -> Result<(), StoreError> {
    for key in keys {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
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

pub type PostgresStore = SqlStore;

impl SqlStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), brings the schema up
    /// to date and starts the writer. Instances starting together migrate once: sqlx's migrator
    /// holds an advisory lock while it runs.
    pub async fn open(url: &str, settings: &StoreConfig) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::UnsupportedUrl(format!("{}: {e}", redacted(url))))?
            .application_name("whg");
        let mut writer = PgConnection::connect_with(&options).await?;
        MIGRATOR
            .run(&mut writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let readers = PgPoolOptions::new()
            .max_connections(settings.read_connections)
            .connect_with(options)
            .await?;
        SqlStore::start(writer, readers, settings.max_batch)
    }
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "the database URL".into(),
    }
}
