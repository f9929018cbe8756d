macro_rules! select_deliveries {
    ($($rest:expr),+ $(,)?) => {
        concat!(
            "SELECT id, document_id, referral_id, patient_id, service, practice, priority, state, attempts,
                    message_id, correlation_id, created_at, next_attempt_at, deadline_at, escalate_at,
                    escalated_at, channel, last_error, updated_at, transport_id FROM deliveries ",
            $($rest),+
        )
    };
}

/// An attempt's result: the outbox row, the attempt log and the Communication, together.
async fn record_delivery(
    conn: &mut Conn,
    u: DeliveryUpdate,
    own: &mut Pending,
) -> Result<(), StoreError> {
    let now = format_instant(Utc::now());
    let updated = sqlx::query(concat!(
        "UPDATE deliveries SET state = $1, attempts = ",
        greatest!(),
        "(attempts, COALESCE($2, attempts)), next_attempt_at = $3,
             last_error = $4, channel = COALESCE($5, channel), escalated_at = COALESCE(escalated_at, $6),
             transport_id = COALESCE($7, transport_id), deadline_at = COALESCE($8, deadline_at),
             updated_at = $9
         WHERE id = $10",
    ))
    .bind(&u.state)
    .bind(u.attempt.as_ref().map(|a| a.attempt))
    .bind(&u.next_attempt_at)
    .bind(&u.last_error)
    .bind(&u.channel)
    .bind(&u.escalated_at)
    .bind(&u.transport_id)
    .bind(&u.deadline_at)
    .bind(&now)
    .bind(&u.id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound(format!("delivery {}", u.id)));
    }
    if let Some(a) = &u.attempt {
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, seq, attempt, at, outcome, detail)
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM delivery_attempts WHERE delivery_id = $1",
        )
        .bind(&u.id)
        .bind(a.attempt)
        .bind(&a.at)
        .bind(&a.outcome)
        .bind(&a.detail)
        .execute(&mut *conn)
        .await?;
    }
    update_one(conn, u.communication, None, own).await?;
    append_audit(conn, u.audit, own).await
}

fn delivery_of(r: &DbRow) -> Delivery {
    Delivery {
        id: r.get(0),
        document_id: r.get(1),
        referral_id: r.get(2),
        patient_id: r.get(3),
        service: r.get(4),
        practice: r.get(5),
        urgent: r.get::<i64, _>(6) == 0,
        state: r.get(7),
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
    }
}

#[async_trait]
impl Outbox for SqlStore {
    async fn due_deliveries(&self, now: &str, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(select_deliveries!(
            "WHERE state IN ('queued', 'escalated', 'sent', 'received') AND next_attempt_at <= $1 ORDER BY priority, next_attempt_at LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(delivery_of).collect())
    }

    async fn overdue_urgent(&self, now: &str) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(select_deliveries!(
            "WHERE priority = 0 AND escalated_at IS NULL AND escalate_at <= $1 AND state IN ('queued', 'sent', 'received')"
        ))
        .bind(now)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(delivery_of).collect())
    }

    async fn update_delivery(&self, update: DeliveryUpdate) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::Delivery(update, reply)).await
    }

    async fn delivery(
        &self,
        id: &str,
    ) -> Result<Option<(Delivery, Vec<DeliveryAttempt>)>, StoreError> {
        let Some(row) = sqlx::query(select_deliveries!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT attempt, at, outcome, detail FROM delivery_attempts WHERE delivery_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|r| DeliveryAttempt {
            attempt: r.get(0),
            at: r.get(1),
            outcome: r.get(2),
            detail: r.get(3),
        })
        .collect();
        Ok(Some((delivery_of(&row), attempts)))
    }

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(select_deliveries!(
            "WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR service = $2)
               AND ($3 IS NULL OR practice = $3) AND ($4 IS NULL OR referral_id = $4)
               AND ($5 IS NULL OR message_id = $5)
             ORDER BY created_at DESC, id LIMIT 1000"
        ))
        .bind(&filter.state)
        .bind(&filter.service)
        .bind(&filter.practice)
        .bind(&filter.referral)
        .bind(&filter.message_id)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(delivery_of).collect())
    }
}
