/// A session ended (signed out) and its AuditEvent, together; false if it was ended before.
/// Sessions past their time are forgotten here too: their cookies are refused by their own
/// expiry.
async fn end_session(
    conn: &mut Conn,
    id: String,
    until: i64,
    audit: Value,
    own: &mut Pending,
) -> Result<bool, StoreError> {
    sqlx::query("DELETE FROM ended_sessions WHERE until < $1")
        .bind(Utc::now().timestamp())
        .execute(&mut *conn)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO ended_sessions (id, until) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&id)
    .bind(until)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        insert_new(conn, vec![audit], false, own).await?;
    }
    Ok(inserted)
}

#[async_trait]
impl Sessions for SqlStore {
    async fn end_session(&self, id: &str, until: i64, audit: Value) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(|reply| WriteJob::EndSession(id, until, audit, reply))
            .await
    }

    async fn session_ended(&self, id: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ended_sessions WHERE id = $1")
                .bind(id)
                .fetch_one(&self.readers)
                .await?
                > 0,
        )
    }
}
