// --- alerts ----------------------------------------------------------------------------------
// Operational alerts (crate::alerts). One open alert per kind and subject: the partial unique
// index `alerts_open_once` keeps a second out, so an alert raised by two instances at once, or
// raised again each poll, is stored (and sent, and audited) once.

/// The columns [`alert_of`] reads, in its order.
macro_rules! alert_columns {
    () => {
        "id, kind, subject, service, summary, duty_contact, raised_at, notified_at,
         notify_attempts, acknowledged_at, acknowledged_by"
    };
}

fn alert_of(r: &DbRow) -> Result<crate::alerts::Alert, StoreError> {
    let id: String = r.get(0);
    let what = format!("alert {id}");
    let kind: String = r.get(1);
    let kind = crate::alerts::AlertKind::from_code(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} has the unknown kind '{kind}'")))?;
    let acknowledged = match (
        instants_of(&what, r.get::<Option<&str>, _>(9))?,
        r.get::<Option<String>, _>(10),
    ) {
        (Some(at), Some(by)) => Some(crate::alerts::Acknowledgement { by, at }),
        _ => None,
    };
    Ok(crate::alerts::Alert {
        raised: crate::alerts::NewAlert {
            kind,
            subject: r.get(2),
            service: r.get(3),
            summary: r.get(4),
            duty_contact: r.get(5),
            raised_at: instant_of(&what, r.get::<&str, _>(6))?,
        },
        notified_at: instants_of(&what, r.get::<Option<&str>, _>(7))?,
        notify_attempts: r.get(8),
        acknowledged,
        id,
    })
}

/// Stores `alert` unless one of its kind about its subject is open; its id if stored.
async fn insert_alert(
    conn: &mut Conn,
    alert: crate::alerts::NewAlert,
) -> Result<Option<String>, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let raised = stored_instant(alert.raised_at);
    let inserted = sqlx::query(
        "INSERT INTO alerts (id, kind, subject, service, summary, duty_contact, raised_at, next_notify_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (kind, subject) WHERE acknowledged_at IS NULL DO NOTHING",
    )
    .bind(&id)
    .bind(alert.kind.code())
    .bind(&alert.subject)
    .bind(&alert.service)
    .bind(&alert.summary)
    .bind(&alert.duty_contact)
    .bind(&raised)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    Ok(inserted.then_some(id))
}

/// An alert raised on its own (not with a letter's change), and its AuditEvent if it was.
async fn raise_alert(
    conn: &mut Conn,
    alert: crate::alerts::NewAlert,
    audit: Value,
    own: &mut Pending,
) -> Result<Option<String>, StoreError> {
    let id = insert_alert(conn, alert).await?;
    if id.is_some() {
        insert_new(conn, vec![audit], false, own).await?;
    }
    Ok(id)
}

async fn acknowledge_alert(
    conn: &mut Conn,
    id: String,
    by: String,
    at: DateTime<Utc>,
    audit: Value,
    own: &mut Pending,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE alerts SET acknowledged_at = $1, acknowledged_by = $2
         WHERE id = $3 AND acknowledged_at IS NULL",
    )
    .bind(stored_instant(at))
    .bind(&by)
    .bind(&id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if done {
        insert_new(conn, vec![audit], false, own).await?;
    }
    Ok(done)
}

async fn record_alert_notice(
    conn: &mut Conn,
    id: String,
    notice: AlertNotice,
) -> Result<(), StoreError> {
    // Sent: when; failed: when to try again. Either way one more attempt was made.
    let (notified, retry) = match notice {
        AlertNotice::Sent { at } => (Some(stored_instant(at)), None),
        AlertNotice::Failed { retry_at } => (None, Some(stored_instant(retry_at))),
    };
    sqlx::query(
        "UPDATE alerts SET notified_at = COALESCE($1, notified_at),
             next_notify_at = COALESCE($2, next_notify_at), notify_attempts = notify_attempts + 1
         WHERE id = $3",
    )
    .bind(notified)
    .bind(retry)
    .bind(&id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Alerts for SqlStore {
    async fn raise_alert(
        &self,
        alert: crate::alerts::NewAlert,
        audit: Value,
    ) -> Result<Option<String>, StoreError> {
        self.write(|reply| WriteJob::RaiseAlert(alert, audit, reply))
            .await
    }

    async fn alerts(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<crate::alerts::Alert>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE ($1 = 0 OR acknowledged_at IS NULL) ORDER BY raised_at DESC, id DESC LIMIT $2"
        ))
        .bind(i64::from(open_only))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(alert_of)
        .collect()
    }

    async fn alert(&self, id: &str) -> Result<Option<crate::alerts::Alert>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.readers)
        .await?
        .as_ref()
        .map(alert_of)
        .transpose()
    }

    async fn acknowledge_alert(
        &self,
        id: &str,
        by: &str,
        at: DateTime<Utc>,
        audit: Value,
    ) -> Result<bool, StoreError> {
        let (id, by) = (id.to_string(), by.to_string());
        self.write(|reply| WriteJob::AcknowledgeAlert(id, by, at, audit, reply))
            .await
    }

    async fn alerts_to_notify(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::alerts::Alert>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE notified_at IS NULL AND next_notify_at <= $1
              ORDER BY next_notify_at, id LIMIT $2"
        ))
        .bind(stored_instant(now))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(alert_of)
        .collect()
    }

    async fn record_alert_notice(&self, id: &str, notice: AlertNotice) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(|reply| WriteJob::AlertNotice(id, notice, reply))
            .await
    }
}
