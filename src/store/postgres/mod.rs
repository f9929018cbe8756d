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
/// OpenTelemetry's `db.system.name` for this backend.
const DB_SYSTEM: &str = "postgresql";
const BEGIN_BATCH: &str = "BEGIN";

/// Under READ COMMITTED each statement takes its own snapshot, so a page and its total could
/// disagree with another instance's commit between them; REPEATABLE READ gives the
/// transaction one.
const SNAPSHOT_READ: Option<&str> =
    Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");

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

/// Skips rows another instance's claim is locking at this moment, rather than waiting for it.
macro_rules! skip_locked {
    () => {
        " FOR UPDATE SKIP LOCKED"
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
include!("../sql/sessions.rs");
include!("../sql/alerts.rs");

pub type PostgresStore = SqlStore;

/// What only PostgreSQL keeps: the connection a singleton task's lock lives on, and how to open
/// another when it is lost.
struct BackendState {
    options: PgConnectOptions,
    /// A session of its own, so its advisory locks last as long as this instance does (a
    /// pooled connection would hand them to whichever request took it next).
    leader: Mutex<Option<PgConnection>>,
    /// Allowances taken since expired ones were last swept.
    since_sweep: std::sync::atomic::AtomicU32,
}

/// How many allowances are taken between sweeps of expired ones (a flood from many source
/// addresses leaves a row per address; swept, the table stays the size of the last minutes).
const SWEEP_EVERY: u32 = 1024;

#[async_trait]
impl crate::store::Coordination for SqlStore {
    /// GCRA, which is the token bucket the in-memory limiter keeps, held as one number per key:
    /// each admitted request moves the key's theoretical arrival time (`tat`) on by one interval
    /// (`1 / rate`) from whichever is later, it or now; a request is admitted while that stays
    /// within `burst` intervals of now. One statement, atomic across instances.
    async fn take_shared_allowance(
        &self,
        key: &str,
        rate: f64,
        burst: f64,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::store::Allowance>, StoreError> {
        use crate::store::Allowance;
        let now = now.timestamp_micros() as f64 / 1e6;
        let interval = 1.0 / rate.max(f64::MIN_POSITIVE);
        let tolerance = burst.max(1.0) * interval;
        let admitted: Option<f64> = sqlx::query_scalar(
            "INSERT INTO rate_allowances AS a (key, tat) VALUES ($1, $2 + $3)
             ON CONFLICT (key) DO UPDATE SET tat = GREATEST(a.tat, $2) + $3
             WHERE GREATEST(a.tat, $2) + $3 - $2 <= $4
             RETURNING tat",
        )
        .bind(key)
        .bind(now)
        .bind(interval)
        .bind(tolerance)
        .fetch_optional(&self.readers)
        .await?;
        let swept = self
            .backend
            .since_sweep
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if swept % SWEEP_EVERY == SWEEP_EVERY - 1 {
            sqlx::query("DELETE FROM rate_allowances WHERE tat < $1")
                .bind(now)
                .execute(&self.readers)
                .await?;
        }
        if admitted.is_some() {
            return Ok(Some(Allowance::Admitted));
        }
        let tat: Option<f64> = sqlx::query_scalar("SELECT tat FROM rate_allowances WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.readers)
            .await?;
        let wait = tat.map_or(1.0, |tat| tat + interval - now - tolerance);
        Ok(Some(Allowance::Refused {
            wait_secs: wait.ceil().max(1.0) as u64,
        }))
    }

    /// A session-level advisory lock on the leader connection: held until this instance's
    /// session ends, so a killed instance's task passes to the next instance that asks. Asking
    /// again while holding it keeps it (PostgreSQL counts the holds; the session's end releases
    /// them all).
    async fn leads(&self, task: crate::store::Singleton) -> Result<bool, StoreError> {
        let mut leader = self.backend.leader.lock().await;
        if leader.is_none() {
            *leader = Some(PgConnection::connect_with(&self.backend.options).await?);
        }
        let Some(conn) = leader.as_mut() else {
            return Ok(false);
        };
        match sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(task.key())
            .fetch_one(&mut *conn)
            .await
        {
            Ok(held) => Ok(held),
            Err(e) => {
                // The session is gone, and its locks with it: start a new one next time.
                *leader = None;
                Err(e.into())
            }
        }
    }
}

impl SqlStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), brings the schema up
    /// to date and starts the writer. Instances starting together migrate once: sqlx's migrator
    /// holds an advisory lock while it runs.
    pub async fn open(url: &str, settings: &StoreConfig) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::UnsupportedUrl(format!("{}: {e}", super::redacted_url(url))))?
            .application_name("whg");
        // The writer's statements look rows up by the keys a bound JSON list names (a handful per
        // job). PostgreSQL cannot see how long such a list is (it guesses 100 rows) and, planning
        // once for a prepared statement while the tables are small, settled on hash joins that
        // scan whole tables (measured: every identity lookup a sequential scan, 161 referrals/s).
        // Nested loops over the indexes are right for every one of them, at any size.
        let writer_options = options.clone().options([
            ("plan_cache_mode", "force_custom_plan"),
            ("enable_hashjoin", "off"),
            ("enable_mergejoin", "off"),
        ]);
        let mut writer = PgConnection::connect_with(&writer_options).await?;
        MIGRATOR
            .run(&mut writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        // Readers plan each statement for the values it is given (a search's tenancy and filters
        // differ in selectivity by orders of magnitude), never once for all.
        let readers = PgPoolOptions::new()
            .max_connections(settings.read_connections)
            .connect_with(
                options
                    .clone()
                    .options([("plan_cache_mode", "force_custom_plan")]),
            )
            .await?;
        let backend = BackendState {
            options: options.clone(),
            leader: Mutex::new(None),
            since_sweep: Default::default(),
        };
        SqlStore::start(writer, writer_options, readers, settings.max_batch, backend)
    }
}
