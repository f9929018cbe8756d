/// An override's columns, as stored: the state and who moved it there.
struct OverrideRow {
    decided: Option<(String, Agent, String)>,
    expires_at: Option<String>,
    ended_at: Option<String>,
}

impl OverrideRow {
    fn of(o: &Override) -> OverrideRow {
        let grant = o.state.grant();
        let decided = match &o.state {
            OverrideState::Refused { by, at, note } => {
                Some((stored_instant(*at), by.clone(), note.clone()))
            }
            _ => grant.map(|g| (stored_instant(g.at), g.by.clone(), g.note.clone())),
        };
        OverrideRow {
            decided,
            expires_at: grant.map(|g| stored_instant(g.until)),
            ended_at: match &o.state {
                OverrideState::Ended { at, .. } => Some(stored_instant(*at)),
                _ => None,
            },
        }
    }
}

/// What the request asked for, kept as JSON beside the state columns.
fn override_content(o: &Override) -> String {
    json!({
        "dataClasses": o.classes.iter().map(|c| c.code()).collect::<Vec<_>>(),
        "reason": o.reason.code(),
        "justification": o.justification,
    })
    .to_string()
}

async fn insert_override(
    conn: &mut Conn,
    o: Override,
    audit: Vec<Value>,
    own: &mut Pending,
) -> Result<(), StoreError> {
    let row = OverrideRow::of(&o);
    let (decided_at, decided_by, note) = row.decided.clone().unzip3();
    sqlx::query(
        "INSERT INTO consent_overrides (id, patient_id, version, state, recipient, recipient_organisation, hours,
             requested_at, requested_by, requester_organisation, decided_at, decided_by, decider_organisation,
             decision_note, expires_at, ended_at, reviewed_at, reviewed_by, reviewer_organisation,
             review_outcome, review_note, content)
         VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
    )
    .bind(&o.id)
    .bind(o.patient_id.as_str())
    .bind(o.state.status().code())
    .bind(o.recipient.code())
    .bind(&o.organisation)
    .bind(i64::from(o.hours))
    .bind(stored_instant(o.requested_at))
    .bind(&o.requested_by.client)
    .bind(&o.requested_by.organisation)
    .bind(decided_at)
    .bind(decided_by.as_ref().map(|p| p.client.clone()))
    .bind(decided_by.map(|p| p.organisation))
    .bind(note)
    .bind(row.expires_at)
    .bind(row.ended_at)
    .bind(o.review.as_ref().map(|r| stored_instant(r.at)))
    .bind(o.review.as_ref().map(|r| r.by.client.clone()))
    .bind(o.review.as_ref().map(|r| r.by.organisation.clone()))
    .bind(o.review.as_ref().map(|r| r.outcome.code()))
    .bind(o.review.as_ref().map(|r| r.note.clone()))
    .bind(override_content(&o))
    .execute(&mut *conn)
    .await?;
    append_audit(conn, audit, own).await
}

/// Stores an override's state as `o` has it, if it is still at `version`.
async fn save_override(
    conn: &mut Conn,
    o: Override,
    version: i64,
    audit: Vec<Value>,
    own: &mut Pending,
) -> Result<(), StoreError> {
    let row = OverrideRow::of(&o);
    let (decided_at, decided_by, note) = row.decided.clone().unzip3();
    let updated = sqlx::query(
        "UPDATE consent_overrides SET version = version + 1, state = $1, decided_at = $2, decided_by = $3,
             decider_organisation = $4, decision_note = $5, expires_at = $6, ended_at = $7, reviewed_at = $8,
             reviewed_by = $9, reviewer_organisation = $10, review_outcome = $11, review_note = $12
         WHERE id = $13 AND version = $14",
    )
    .bind(o.state.status().code())
    .bind(decided_at)
    .bind(decided_by.as_ref().map(|p| p.client.clone()))
    .bind(decided_by.map(|p| p.organisation))
    .bind(note)
    .bind(row.expires_at)
    .bind(row.ended_at)
    .bind(o.review.as_ref().map(|r| stored_instant(r.at)))
    .bind(o.review.as_ref().map(|r| r.by.client.clone()))
    .bind(o.review.as_ref().map(|r| r.by.organisation.clone()))
    .bind(o.review.as_ref().map(|r| r.outcome.code()))
    .bind(o.review.as_ref().map(|r| r.note.clone()))
    .bind(&o.id)
    .bind(version)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM consent_overrides WHERE id = $1")
                .bind(&o.id)
                .fetch_optional(&mut *conn)
                .await?;
        return Err(match current {
            Some(current) => StoreError::VersionConflict {
                resource: format!("override {}", o.id),
                current,
                expected: version,
            },
            None => StoreError::NotFound(format!("override {}", o.id)),
        });
    }
    append_audit(conn, audit, own).await
}

trait Unzip3<A, B, C> {
    fn unzip3(self) -> (Option<A>, Option<B>, Option<C>);
}

impl<A, B, C> Unzip3<A, B, C> for Option<(A, B, C)> {
    fn unzip3(self) -> (Option<A>, Option<B>, Option<C>) {
        match self {
            Some((a, b, c)) => (Some(a), Some(b), Some(c)),
            None => (None, None, None),
        }
    }
}

macro_rules! select_overrides {
    ($($rest:expr),+ $(,)?) => {
        concat!(
            "SELECT id, patient_id, version, state, recipient, recipient_organisation, hours, requested_at,
                    requested_by, requester_organisation, decided_at, decided_by, decider_organisation,
                    decision_note, expires_at, ended_at, reviewed_at, reviewed_by, reviewer_organisation,
                    review_outcome, review_note, content FROM consent_overrides ",
            $($rest),+
        )
    };
}

/// An override as stored, with its version.
fn override_of(r: &DbRow) -> Result<(Override, i64), StoreError> {
    let id: String = r.get(0);
    let corrupt = |what: &str| StoreError::Corrupt(format!("override {id}: {what}"));
    let what = format!("override {id}");
    let time = |i: usize| instants_of(&what, r.get::<Option<&str>, _>(i));
    let party = |client: usize, organisation: usize| -> Option<Agent> {
        Some(Agent {
            client: r.get::<Option<String>, _>(client)?,
            organisation: r.get::<Option<String>, _>(organisation).unwrap_or_default(),
        })
    };
    let content = parse_content(r.get::<&str, _>(21))?;
    let grant = || -> Result<Grant, StoreError> {
        Ok(Grant {
            by: party(11, 12).ok_or_else(|| corrupt("a grant without its grantor"))?,
            at: time(10)?.ok_or_else(|| corrupt("a grant without its time"))?,
            until: time(14)?.ok_or_else(|| corrupt("a grant without its end"))?,
            note: r.get::<Option<String>, _>(13).unwrap_or_default(),
        })
    };
    let status: &str = r.get(3);
    let state = match OverrideStatus::from_code(status) {
        Some(OverrideStatus::Requested) => OverrideState::Requested,
        Some(OverrideStatus::Granted) => OverrideState::Granted(grant()?),
        Some(OverrideStatus::Refused) => OverrideState::Refused {
            by: party(11, 12).ok_or_else(|| corrupt("a refusal without who refused"))?,
            at: time(10)?.ok_or_else(|| corrupt("a refusal without its time"))?,
            note: r.get::<Option<String>, _>(13).unwrap_or_default(),
        },
        Some(OverrideStatus::Ended) => OverrideState::Ended {
            grant: grant()?,
            at: time(15)?.ok_or_else(|| corrupt("ended without a time"))?,
        },
        None => return Err(corrupt(&format!("state '{status}'"))),
    };
    let review = match r.get::<Option<&str>, _>(19) {
        None => None,
        Some(outcome) => Some(Review {
            by: party(17, 18).ok_or_else(|| corrupt("a review without its reviewer"))?,
            at: time(16)?.ok_or_else(|| corrupt("a review without its time"))?,
            outcome: ReviewOutcome::from_code(outcome)
                .ok_or_else(|| corrupt(&format!("review outcome '{outcome}'")))?,
            note: r.get::<Option<String>, _>(20).unwrap_or_default(),
        }),
    };
    let recipient: &str = r.get(4);
    let o = Override {
        patient_id: PatientId::new(r.get::<String, _>(1)),
        recipient: RecipientClass::from_code(recipient)
            .ok_or_else(|| corrupt(&format!("recipient '{recipient}'")))?,
        organisation: r.get(5),
        classes: content["dataClasses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_str().and_then(DataClass::from_code))
            .collect::<Option<_>>()
            .ok_or_else(|| corrupt("data classes"))?,
        reason: content["reason"]
            .as_str()
            .and_then(OverrideReason::from_code)
            .ok_or_else(|| corrupt("reason"))?,
        justification: content["justification"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        hours: u32::try_from(r.get::<i64, _>(6)).map_err(|_| corrupt("hours"))?,
        requested_by: party(8, 9).ok_or_else(|| corrupt("no requester"))?,
        requested_at: time(7)?.ok_or_else(|| corrupt("no request time"))?,
        state,
        review,
        id: id.clone(),
    };
    Ok((o, r.get(2)))
}

#[async_trait]
impl Overrides for SqlStore {
    async fn create_override(
        &self,
        request: Override,
        audit: Vec<Value>,
    ) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::CreateOverride(request, audit, reply))
            .await
    }

    async fn override_by_id(&self, id: &str) -> Result<Option<(Override, i64)>, StoreError> {
        sqlx::query(select_overrides!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .as_ref()
            .map(override_of)
            .transpose()
    }

    async fn update_override(
        &self,
        changed: Override,
        version: i64,
        audit: Vec<Value>,
    ) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::UpdateOverride(changed, version, audit, reply))
            .await
    }

    async fn overrides_of_patient(
        &self,
        patient_id: &PatientId,
    ) -> Result<Vec<Override>, StoreError> {
        sqlx::query(select_overrides!(
            "WHERE patient_id = $1 ORDER BY requested_at DESC, id"
        ))
        .bind(patient_id.as_str())
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|r| override_of(r).map(|(o, _)| o))
        .collect()
    }

    async fn list_overrides(&self, filter: OverrideFilter) -> Result<Vec<Override>, StoreError> {
        sqlx::query(select_overrides!(
            "WHERE ($1 IS NULL OR state = $1)
               AND (NOT $2 OR (state IN ('granted', 'ended') AND reviewed_at IS NULL))
             ORDER BY requested_at DESC, id"
        ))
        .bind(filter.status.map(OverrideStatus::code))
        .bind(filter.unreviewed)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|r| override_of(r).map(|(o, _)| o))
        .collect()
    }
}
