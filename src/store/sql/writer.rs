async fn begin_savepoint(conn: &mut Conn) -> Result<(), StoreError> {
    sqlx::query("SAVEPOINT job").execute(&mut *conn).await?;
    Ok(())
}

/// Keeps the savepoint's writes if `result` is a success, undoes them otherwise.
async fn end_savepoint<T>(conn: &mut Conn, result: Result<T, StoreError>) -> Result<T, StoreError> {
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

    async fn write(self, conn: &mut Conn) -> Result<(), sqlx::Error> {
        if !self.referrals.is_empty() {
            sqlx::query(concat!(
                "INSERT INTO referrals (service_request_id, patient_id, practice, service, created_at, patient_version)
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ",
                json_int!("value ->> 5"),
                " FROM ",
                json_rows!("$1"),
            ))
            .bind(Value::Array(self.referrals).to_string())
            .execute(&mut *conn)
            .await?;
        }
        if !self.members.is_empty() {
            sqlx::query(concat!(
                "INSERT INTO referral_members (resource_type, resource_id, service_request_id)
                 SELECT value ->> 0, value ->> 1, value ->> 2 FROM ",
                json_rows!("$1"),
                // `WHERE true`: SQLite reads `ON` right after a FROM clause as a join condition.
                " WHERE true ON CONFLICT DO NOTHING",
            ))
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
            let mut insert = QueryBuilder::<Db>::new(
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
    /// A person's session ended (its id, until when), and its AuditEvent.
    EndSession(String, i64, Value, Reply<bool>),
    /// An operational alert and its AuditEvent.
    RaiseAlert(crate::alerts::NewAlert, Value, Reply<Option<String>>),
    /// An alert acknowledged (its id, by whom, when) and its AuditEvent.
    AcknowledgeAlert(String, String, DateTime<Utc>, Value, Reply<bool>),
    /// How an alert's notification went.
    AlertNotice(String, AlertNotice, Reply<()>),
}

enum ClientWrite {
    Register(ClientRecord),
    Revoke(ClientId),
    ReplaceKeys {
        id: ClientId,
        current: Value,
        keys: Value,
    },
    ConsumeAssertion {
        client_id: ClientId,
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
    Raised(Reply<Option<String>>, Result<Option<String>, StoreError>),
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
            Answer::Raised(_, r) => r.is_ok(),
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
            Answer::Raised(r, v) => drop(r.send(v)),
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
            Answer::Raised(r, _) => drop(r.send(Err(e()))),
        }
    }
}

/// A job as queued for the writer, with the span of the call that waits for it: the batch's
/// transaction span links to each, so a trace shows which transaction a write went in.
struct Queued {
    job: WriteJob,
    caller: tracing::Span,
}

impl WriteJob {
    /// What the job does, for its span (`db.operation.name`).
    fn kind(&self) -> &'static str {
        match self {
            WriteJob::Submit(..) => "submit",
            WriteJob::Create(..) => "create",
            WriteJob::Update(..) => "update",
            WriteJob::CreateOverride(..) => "create-override",
            WriteJob::UpdateOverride(..) => "update-override",
            WriteJob::Client(..) => "client",
            WriteJob::Transact(..) => "transaction",
            WriteJob::Delivery(..) => "record-delivery",
            WriteJob::Claim(..) => "claim-deliveries",
            WriteJob::Release(..) => "release-delivery",
            WriteJob::Quarantine(..) => "quarantine",
            WriteJob::EndSession(..) => "end-session",
            WriteJob::RaiseAlert(..) => "raise-alert",
            WriteJob::AcknowledgeAlert(..) => "acknowledge-alert",
            WriteJob::AlertNotice(..) => "alert-notice",
        }
    }

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
            WriteJob::EndSession(_, _, _, r) => drop(r.send(Err(e))),
            WriteJob::RaiseAlert(_, _, r) => drop(r.send(Err(e))),
            WriteJob::AcknowledgeAlert(_, _, _, _, r) => drop(r.send(Err(e))),
            WriteJob::AlertNotice(_, _, r) => drop(r.send(Err(e))),
        }
    }

    async fn run(
        self,
        conn: &mut Conn,
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
            WriteJob::EndSession(id, until, audit, reply) => Answer::Quarantine(
                reply,
                in_savepoint!(conn, end_session(conn, id, until, audit, own)),
            ),
            WriteJob::RaiseAlert(alert, audit, reply) => Answer::Raised(
                reply,
                in_savepoint!(conn, raise_alert(conn, alert, audit, own)),
            ),
            WriteJob::AcknowledgeAlert(id, by, at, audit, reply) => Answer::Quarantine(
                reply,
                in_savepoint!(conn, acknowledge_alert(conn, id, by, at, audit, own)),
            ),
            WriteJob::AlertNotice(id, notice, reply) => Answer::Release(
                reply,
                in_savepoint!(conn, record_alert_notice(conn, id, notice)),
            ),
        }
    }
}

async fn writer_loop(
    mut conn: Conn,
    options: <Conn as Connection>::Options,
    mut rx: mpsc::Receiver<Queued>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut healthy = true;
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        // A database restarted or failed over under a live instance: the writer's session is
        // gone, so it opens a new one rather than failing every later write. Until one opens,
        // each batch fails as unavailable (the callers retry; the write-once keys make that
        // safe even where a lost COMMIT had in fact committed).
        if !healthy && conn.ping().await.is_err() {
            match Conn::connect_with(&options).await {
                Ok(new) => {
                    tracing::warn!("the writer's database session was lost; reconnected");
                    conn = new;
                }
                Err(e) => {
                    for queued in batch.drain(..) {
                        queued.job.fail(StoreError::Unavailable(format!(
                            "cannot reach the database: {e}"
                        )));
                    }
                    continue;
                }
            }
        }
        healthy = commit_batch(&mut conn, &mut batch).await;
    }
    let _ = conn.close().await;
}

/// Applies every job of `batch` in one transaction and answers each once the commit is durable.
/// False if the transaction itself could not begin or end (the session may be lost). The
/// transaction is a span of its own, linked to the span of every write it carries.
async fn commit_batch(conn: &mut Conn, batch: &mut Vec<Queued>) -> bool {
    use tracing::Instrument as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::info_span!(
        "store.transaction",
        otel.kind = "client",
        db.system.name = DB_SYSTEM,
        whg.store.writes = batch.len() as i64,
    );
    for queued in batch.iter() {
        use opentelemetry::trace::TraceContextExt as _;
        span.add_link(queued.caller.context().span().span_context().clone());
    }
    let jobs = batch.drain(..).map(|q| q.job).collect();
    commit_jobs(conn, jobs).instrument(span).await
}

async fn commit_jobs(conn: &mut Conn, jobs: Vec<WriteJob>) -> bool {
    if let Err(e) = sqlx::query(BEGIN_BATCH).execute(&mut *conn).await {
        for job in jobs {
            job.fail(StoreError::Unavailable(format!(
                "cannot begin a transaction: {e}"
            )));
        }
        return false;
    }
    let mut answers = Vec::with_capacity(jobs.len());
    let mut pending = Pending::default();
    for job in jobs {
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
        return false;
    }
    // Only now, with the batch on disk, does any caller hear "stored".
    for answer in answers {
        answer.send();
    }
    true
}

/// The store over one database: a pool of readers, and one writer (a connection on a thread of
/// its own) that applies writes in batches.
pub struct SqlStore {
    readers: Pool,
    writer: Mutex<Option<(mpsc::Sender<Queued>, oneshot::Receiver<()>)>>,
    /// What only this backend keeps (see its `Coordination`; SQLite's is empty).
    #[allow(dead_code)]
    backend: BackendState,
}

impl SqlStore {
    /// Starts the writer on `writer` (migrated, configured by the backend; `options` open another
    /// if its session is lost) beside `readers`.
    fn start(
        writer: Conn,
        options: <Conn as Connection>::Options,
        readers: Pool,
        max_batch: usize,
        backend: BackendState,
    ) -> Result<SqlStore, StoreError> {
        let (tx, rx) = mpsc::channel(max_batch * 4);
        // The writer gets a thread of its own. Each statement is a round trip to the database
        // (for SQLite, to sqlx's SQLite thread); on the shared runtime every one of them waited
        // for a worker busy validating requests, and the writer spent most of its time waiting
        // to be scheduled.
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("whg-writer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(writer_loop(writer, options, rx, max_batch)),
                    Err(e) => tracing::error!(error = %e, "cannot start the writer's runtime"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(SqlStore {
            readers,
            writer: Mutex::new(Some((tx, done_rx))),
            backend,
        })
    }

    /// Hands a job to the writer and waits for its durable answer, in a span of the caller's
    /// trace (the wait for the group commit included).
    async fn write<T>(&self, job: impl FnOnce(Reply<T>) -> WriteJob) -> Result<T, StoreError> {
        use tracing::Instrument as _;
        let sender = match self.writer.lock().await.as_ref() {
            Some((tx, _)) => tx.clone(),
            None => return Err(StoreError::Unavailable("the store is shutting down".into())),
        };
        let (reply, answer) = oneshot::channel();
        let job = job(reply);
        let caller = tracing::info_span!(
            "store.write",
            otel.kind = "client",
            db.system.name = DB_SYSTEM,
            db.operation.name = job.kind(),
        );
        let queued = Queued {
            job,
            caller: caller.clone(),
        };
        async move {
            sender
                .send(queued)
                .await
                .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
            answer.await.map_err(|_| {
                StoreError::Unavailable("the writer stopped before answering".into())
            })?
        }
        .instrument(caller)
        .await
    }
}

#[async_trait]
impl Lifecycle for SqlStore {
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
