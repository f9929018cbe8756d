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
            ongoing_since: None,
        },
        notified_at: instants_of(&what, r.get::<Option<&str>, _>(7))?,
        notify_attempts: r.get(8),
        taken_by: Vec::new(),
        acknowledged,
        id,
    })
}

/// Stores `alert` unless one of its kind about its subject is open, or was acknowledged
/// within its kind's quiet time ([`crate::alerts::AlertKind::quiet_after_acknowledged`]); its
/// id if stored.
async fn insert_alert(
    conn: &mut Conn,
    alert: crate::alerts::NewAlert,
) -> Result<Option<String>, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let raised = stored_instant(alert.raised_at);
    let quiet_since = stored_instant(alert.quiet_since());
    // Stored instants are fixed-width UTC text, so they compare as they sort.
    let inserted = sqlx::query(
        "INSERT INTO alerts (id, kind, subject, service, summary, duty_contact, raised_at, next_notify_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, $7
         WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE kind = $2 AND subject = $3 AND acknowledged_at > $8)
         ON CONFLICT (kind, subject) WHERE acknowledged_at IS NULL DO NOTHING",
    )
    .bind(&id)
    .bind(alert.kind.code())
    .bind(&alert.subject)
    .bind(&alert.service)
    .bind(&alert.summary)
    .bind(&alert.duty_contact)
    .bind(&raised)
    .bind(&quiet_since)
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
    let at = stored_instant(notice.at);
    for route in &notice.taken_by {
        sqlx::query(
            "INSERT INTO alert_route_notices (alert_id, route, sent_at) VALUES ($1, $2, $3)
             ON CONFLICT (alert_id, route) DO NOTHING",
        )
        .bind(&id)
        .bind(route)
        .bind(&at)
        .execute(&mut *conn)
        .await?;
    }
    // Taken by all: when; not: when to try the rest again. Either way one more try was made.
    let (notified, retry) = match notice.outcome {
        NoticeOutcome::AllTaken => (Some(at), None),
        NoticeOutcome::RetryAt(retry_at) => (None, Some(stored_instant(retry_at))),
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
        scope: &crate::alerts::AlertScope,
        acknowledged: bool,
        limit: u32,
    ) -> Result<Vec<crate::alerts::Alert>, StoreError> {
        let service = match scope {
            crate::alerts::AlertScope::Every => None,
            crate::alerts::AlertScope::Service(id) => Some(id.as_str()),
        };
        sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE ($1 IS NULL OR service = $1)
               AND (CASE WHEN acknowledged_at IS NULL THEN 0 ELSE 1 END) = $2
             ORDER BY COALESCE(acknowledged_at, raised_at) DESC, id DESC LIMIT $3"
        ))
        .bind(service)
        .bind(i64::from(acknowledged))
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
        max_attempts: u32,
        limit: u32,
    ) -> Result<Vec<crate::alerts::Alert>, StoreError> {
        // Acknowledged: a person has it, so nobody need be told. Out of attempts: the on-call
        // routes have been failing for hours, and the operations page still lists it.
        let mut due: Vec<crate::alerts::Alert> = sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE notified_at IS NULL AND acknowledged_at IS NULL
                AND notify_attempts < $2 AND next_notify_at <= $1
              ORDER BY next_notify_at, id LIMIT $3"
        ))
        .bind(stored_instant(now))
        .bind(i64::from(max_attempts))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(alert_of)
        .collect::<Result<_, _>>()?;
        for alert in due.iter_mut().filter(|a| a.notify_attempts > 0) {
            alert.taken_by = sqlx::query_scalar(
                "SELECT route FROM alert_route_notices WHERE alert_id = $1 ORDER BY route",
            )
            .bind(&alert.id)
            .fetch_all(&self.readers)
            .await?;
        }
        Ok(due)
    }

    async fn record_alert_notice(&self, id: &str, notice: AlertNotice) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(|reply| WriteJob::AlertNotice(id, notice, reply))
            .await
    }
}
