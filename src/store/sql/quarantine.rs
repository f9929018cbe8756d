/// A MESH message set aside and its AuditEvent, together; nothing if it was set aside before.
async fn quarantine(
    conn: &mut Conn,
    m: QuarantinedMessage,
    content: Option<Vec<u8>>,
    audit: Value,
    own: &mut Pending,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO mesh_quarantine (message_id, sender, workflow_id, message_type, local_id,
             received_at, size, reason, letter_id, content)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&m.id)
    .bind(&m.sender)
    .bind(&m.workflow_id)
    .bind(&m.message_type)
    .bind(&m.local_id)
    .bind(stored_instant(m.received_at))
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
    ($($rest:expr),+ $(,)?) => {
        concat!(
            "SELECT message_id, sender, workflow_id, message_type, local_id, received_at, size,
                    reason, letter_id, content IS NOT NULL, ",
            $($rest),+
        )
    };
}

fn quarantined_of(r: &DbRow) -> Result<QuarantinedMessage, StoreError> {
    let id: String = r.get(0);
    Ok(QuarantinedMessage {
        received_at: instant_of(&format!("MESH message {id}"), r.get::<&str, _>(5))?,
        id,
        sender: r.get(1),
        workflow_id: r.get(2),
        message_type: r.get(3),
        local_id: r.get(4),
        size: u64::try_from(r.get::<i64, _>(6)).unwrap_or_default(),
        reason: r.get(7),
        letter_id: r.get(8),
        has_content: r.get(9),
    })
}

#[async_trait]
impl MeshQuarantine for SqlStore {
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
        let mut read = snapshot(&self.readers).await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mesh_quarantine")
            .fetch_one(&mut *read)
            .await?;
        let rows = sqlx::query(select_quarantined!(
            "NULL FROM mesh_quarantine ORDER BY received_at DESC, ",
            insertion_order!(),
            " DESC LIMIT $1 OFFSET $2"
        ))
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&mut *read)
        .await?;
        read.commit().await?;
        Ok((
            u64::try_from(total).unwrap_or_default(),
            rows.iter().map(quarantined_of).collect::<Result<_, _>>()?,
        ))
    }

    async fn quarantined_mesh_message(
        &self,
        id: &str,
    ) -> Result<Option<(QuarantinedMessage, Option<Vec<u8>>)>, StoreError> {
        let row = sqlx::query(select_quarantined!(
            "content FROM mesh_quarantine WHERE message_id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| {
            let content: Option<Vec<u8>> = r.get(10);
            Ok((quarantined_of(&r)?, content))
        })
        .transpose()
    }
}
