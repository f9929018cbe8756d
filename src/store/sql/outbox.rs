/// The columns [`delivery_of`] reads, in its order.
macro_rules! delivery_columns {
    () => {
        "id, document_id, referral_id, patient_id, service, practice, priority, state, attempts,
         message_id, correlation_id, created_at, next_attempt_at, deadline_at, escalate_at,
         escalated_at, channel, last_error, updated_at, transport_id"
    };
}

macro_rules! select_deliveries {
    ($($rest:expr),+ $(,)?) => {
        concat!("SELECT ", delivery_columns!(), " FROM deliveries ", $($rest),+)
    };
}

/// An attempt's result: the outbox row, the attempt log and the Communication, together.
async fn record_delivery(
    conn: &mut Conn,
    u: DeliveryUpdate,
    own: &mut Pending,
) -> Result<(), StoreError> {
    let now = stored_instant(Utc::now());
    let updated = sqlx::query(concat!(
        "UPDATE deliveries SET state = $1, attempts = ",
        greatest!(),
        "(attempts, COALESCE($2, attempts)), next_attempt_at = $3,
             last_error = $4, channel = COALESCE($5, channel), escalated_at = COALESCE(escalated_at, $6),
             transport_id = COALESCE($7, transport_id), deadline_at = COALESCE($8, deadline_at),
             updated_at = $9, lease_owner = NULL, lease_until = NULL
         WHERE id = $10 AND lease_owner = $11 AND lease_until = $12",
    ))
    .bind(u.state.code())
    .bind(u.attempt.as_ref().map(|a| a.attempt))
    .bind(stored_instant(u.next_attempt_at))
    .bind(&u.last_error)
    .bind(&u.channel)
    .bind(stored_instants(u.escalated_at))
    .bind(&u.transport_id)
    .bind(stored_instants(u.deadline_at))
    .bind(&now)
    .bind(u.id.as_str())
    .bind(&u.lease.owner)
    .bind(stored_instant(u.lease.until))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(lease_refusal(conn, u.id.as_str()).await);
    }
    if let Some(a) = &u.attempt {
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, seq, attempt, at, outcome, detail)
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM delivery_attempts WHERE delivery_id = $1",
        )
        .bind(u.id.as_str())
        .bind(a.attempt)
        .bind(stored_instant(a.at))
        .bind(a.outcome.code())
        .bind(&a.detail)
        .execute(&mut *conn)
        .await?;
        record_endpoint_health(conn, u.id.as_str(), a).await?;
    }
    let mut audit = u.audit;
    if let Some((alert, raised)) = u.alert
        && insert_alert(conn, alert).await?.is_some()
    {
        audit.push(raised);
    }
    update_one(conn, u.communication, None, own).await?;
    append_audit(conn, audit, own).await
}

/// What attempt `a` at letter `id` says of its practice's endpoint: failing since the first
/// failure after its last answer, or answering.
async fn record_endpoint_health(
    conn: &mut Conn,
    id: &str,
    a: &DeliveryAttempt,
) -> Result<(), StoreError> {
    use crate::letters::delivery_state::EndpointHealth;
    let failing_since = match a.outcome.endpoint() {
        None => return Ok(()),
        Some(EndpointHealth::Answered) => None,
        Some(EndpointHealth::Failed) => Some(stored_instant(a.at)),
    };
    sqlx::query(
        "INSERT INTO endpoint_health (practice, failing_since)
         SELECT practice, $2 FROM deliveries WHERE id = $1
         ON CONFLICT (practice) DO UPDATE SET failing_since = CASE
             WHEN excluded.failing_since IS NULL THEN NULL
             ELSE COALESCE(endpoint_health.failing_since, excluded.failing_since) END",
    )
    .bind(id)
    .bind(failing_since)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn delivery_of(r: &DbRow) -> Result<Delivery, StoreError> {
    let id = DeliveryId::new(r.get::<String, _>(0));
    let state: String = r.get(7);
    let state = DeliveryState::from_code(&state).ok_or_else(|| {
        StoreError::Corrupt(format!("delivery {id} has the unknown state '{state}'"))
    })?;
    let what = format!("delivery {id}");
    let at = |i: usize| instant_of(&what, r.get::<&str, _>(i));
    let at_maybe = |i: usize| instants_of(&what, r.get::<Option<&str>, _>(i));
    Ok(Delivery {
        document_id: r.get(1),
        referral_id: r.get(2),
        patient_id: PatientId::new(r.get::<String, _>(3)),
        service: r.get(4),
        practice: r.get(5),
        urgent: r.get::<i64, _>(6) == 0,
        state,
        attempts: r.get(8),
        message_id: r.get(9),
        correlation_id: r.get(10),
        created_at: at(11)?,
        next_attempt_at: at(12)?,
        deadline_at: at(13)?,
        escalate_at: at_maybe(14)?,
        escalated_at: at_maybe(15)?,
        channel: r.get(16),
        last_error: r.get(17),
        updated_at: at(18)?,
        transport_id: r.get(19),
        id,
    })
}

fn deliveries_of(rows: &[DbRow]) -> Result<Vec<Delivery>, StoreError> {
    rows.iter().map(delivery_of).collect()
}

// --- leases ----------------------------------------------------------------------------------
// Claims on letters, so that several gateway instances on one database never work on the same
// letter at once. A letter is free when nobody holds it or its lease has run out (a killed
// instance's letters are taken over then). Each claim is one statement, written through the
// writer; on PostgreSQL the inner SELECT skips rows another instance's claim is
// taking at that moment (`FOR UPDATE SKIP LOCKED`), so two claims never wait on each other.

/// Which letters a claim takes.
enum Claim {
    /// Due for an attempt at `now`: urgent first, then oldest due.
    Due { now: DateTime<Utc>, limit: u32 },
    /// Urgent, not yet delivered or escalated, past their escalation time at `now`.
    OverdueUrgent { now: DateTime<Utc>, limit: u32 },
    /// One letter, whatever its state.
    One { id: String, now: DateTime<Utc> },
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
            skip_locked!(),
            ") RETURNING ",
            delivery_columns!()
        )
    };
}

async fn claim(conn: &mut Conn, lease: Lease, which: Claim) -> Result<Vec<Delivery>, StoreError> {
    let rows = match which {
        // The states are those where DeliveryState::awaits_attempt (checked by a test), written
        // as literals so that the partial index `deliveries_due` serves the query.
        Claim::Due { now, limit } => {
            sqlx::query(claim_deliveries!(
                "state IN ('queued', 'escalated', 'sent', 'received') AND next_attempt_at <= $3
                 ORDER BY priority, next_attempt_at, id LIMIT $4"
            ))
            .bind(&lease.owner)
            .bind(stored_instant(lease.until))
            .bind(stored_instant(now))
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
            .bind(stored_instant(lease.until))
            .bind(stored_instant(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
        }
        Claim::One { id, now } => {
            sqlx::query(claim_deliveries!("id = $4"))
                .bind(&lease.owner)
                .bind(stored_instant(lease.until))
                .bind(stored_instant(now))
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
        }
    };
    // A row that does not read back (damage, or a hand edit) must not stop every other letter:
    // it is left out, said in the log (its id is no one's personal data), and stays held until
    // its lease runs out.
    let mut claimed: Vec<Delivery> = rows
        .iter()
        .filter_map(|r| {
            delivery_of(r)
                .inspect_err(|e| tracing::error!(error = %e, "a claimed letter cannot be read"))
                .ok()
        })
        .collect();
    // RETURNING keeps no order: urgent first, then oldest due, as the inner SELECT chose them.
    claimed.sort_by(|a, b| {
        (!a.urgent, &a.next_attempt_at, &a.id).cmp(&(!b.urgent, &b.next_attempt_at, &b.id))
    });
    Ok(claimed)
}

async fn release(conn: &mut Conn, lease: Lease, id: String) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND lease_owner = $2 AND lease_until = $3",
    )
    .bind(id)
    .bind(lease.owner)
    .bind(stored_instant(lease.until))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Why a change of a letter under a lease matched no row: no such letter, or the lease is not
/// (any longer) the one that holds it.
async fn lease_refusal(conn: &mut Conn, id: &str) -> StoreError {
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

#[async_trait]
impl Outbox for SqlStore {
    async fn claim_due(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let which = Claim::Due { now, limit };
        self.write(|reply| WriteJob::Claim(lease.clone(), which, reply))
            .await
    }

    async fn claim_overdue_urgent(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let which = Claim::OverdueUrgent { now, limit };
        self.write(|reply| WriteJob::Claim(lease.clone(), which, reply))
            .await
    }

    async fn claim_delivery(
        &self,
        lease: &Lease,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<Delivery>, StoreError> {
        let which = Claim::One {
            id: id.to_string(),
            now,
        };
        let claimed = self
            .write(|reply| WriteJob::Claim(lease.clone(), which, reply))
            .await?;
        Ok(claimed.into_iter().next())
    }

    async fn release_delivery(&self, lease: &Lease, id: &DeliveryId) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::Release(lease.clone(), id.to_string(), reply))
            .await
    }

    async fn update_delivery(&self, update: DeliveryUpdate) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::Delivery(update, reply)).await
    }

    async fn delivery(
        &self,
        id: &DeliveryId,
    ) -> Result<Option<(Delivery, Vec<DeliveryAttempt>)>, StoreError> {
        // One snapshot, so the attempts listed are the ones the delivery's state counts.
        let mut read = snapshot(&self.readers).await?;
        let Some(row) = sqlx::query(select_deliveries!("WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&mut *read)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT attempt, at, outcome, detail FROM delivery_attempts WHERE delivery_id = $1 ORDER BY seq",
        )
        .bind(id.as_str())
        .fetch_all(&mut *read)
        .await?
        .iter()
        .map(|r| {
            let outcome: String = r.get(2);
            Ok(DeliveryAttempt {
                attempt: r.get(0),
                at: instant_of(&format!("delivery {id}"), r.get::<&str, _>(1))?,
                outcome: AttemptOutcome::from_code(&outcome).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "delivery {id} has an attempt with the unknown outcome '{outcome}'"
                    ))
                })?,
                detail: r.get(3),
            })
        })
        .collect::<Result<_, StoreError>>()?;
        read.commit().await?;
        Ok(Some((delivery_of(&row)?, attempts)))
    }

    async fn endpoint_failing_since(
        &self,
        practice: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let since: Option<Option<String>> =
            sqlx::query_scalar("SELECT failing_since FROM endpoint_health WHERE practice = $1")
                .bind(practice)
                .fetch_optional(&self.readers)
                .await?;
        instants_of(
            &format!("the endpoint of {practice}"),
            since.flatten().as_deref(),
        )
    }

    async fn outbox_depth(&self) -> Result<Vec<OutboxDepth>, StoreError> {
        // The states where DeliveryState::is_final is false (checked by a test), as literals
        // so that the index on state serves the query.
        let rows = sqlx::query(
            "SELECT state, COUNT(*), MIN(created_at) FROM deliveries
             WHERE state IN ('queued', 'escalated', 'sent', 'received') GROUP BY state",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.get(0);
                Ok(OutboxDepth {
                    state: DeliveryState::from_code(&state).ok_or_else(|| {
                        StoreError::Corrupt(format!("a delivery has the unknown state '{state}'"))
                    })?,
                    letters: u64::try_from(r.get::<i64, _>(1)).unwrap_or_default(),
                    oldest: instants_of("the oldest delivery", r.get::<Option<&str>, _>(2))?,
                })
            })
            .collect()
    }

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(select_deliveries!(
            "WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR service = $2)
               AND ($3 IS NULL OR practice = $3) AND ($4 IS NULL OR referral_id = $4)
               AND ($5 IS NULL OR message_id = $5)
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
}
