/// Creates new resources with fresh ids (version 1).
async fn create_all(
    conn: &mut Conn,
    resources: Vec<Value>,
    own: &mut Pending,
) -> Result<Vec<Value>, StoreError> {
    insert_new(conn, resources, false, own).await
}

/// Inserts new resources at version 1: with fresh ids, or (`keep_ids`) with the ids they carry.
async fn insert_new(
    conn: &mut Conn,
    resources: Vec<Value>,
    keep_ids: bool,
    own: &mut Pending,
) -> Result<Vec<Value>, StoreError> {
    lock_keys(conn, &consent_people(&resources)).await?;
    let now = stored_instant(Utc::now());
    let mut writes = Vec::with_capacity(resources.len());
    for mut content in resources {
        let resource_type = content["resourceType"]
            .as_str()
            .ok_or_else(|| StoreError::Corrupt("a resource without a resourceType".into()))?
            .to_string();
        let id = match content["id"].as_str() {
            Some(id) if keep_ids => id.to_string(),
            _ => uuid::Uuid::now_v7().to_string(),
        };
        stamp(&mut content, &id, 1, &now);
        let index = index_entries(&content);
        writes.push(PlannedWrite {
            resource_type,
            id,
            version_id: 1,
            replaces: false,
            content,
            index,
            identity: None,
            source_time: now.clone(),
            source_practice: String::new(),
        });
    }
    if !writes.is_empty() {
        write_all(conn, &writes, &now, own).await?;
    }
    Ok(writes.into_iter().map(|w| w.content).collect())
}

/// Replaces a stored resource with a new version.
async fn update_one(
    conn: &mut Conn,
    mut content: Value,
    expected: Option<i64>,
    own: &mut Pending,
) -> Result<Value, StoreError> {
    let resource_type = content["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = content["id"].as_str().unwrap_or_default().to_string();
    lock_keys(conn, &consent_people([&content])).await?;
    let current: Option<i64> = sqlx::query_scalar(concat!(
        "SELECT version_id FROM resources WHERE resource_type = $1 AND id = $2",
        for_update!()
    ))
    .bind(&resource_type)
    .bind(&id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(current) = current else {
        return Err(StoreError::NotFound(format!("{resource_type}/{id}")));
    };
    if let Some(expected) = expected
        && expected != current
    {
        return Err(StoreError::VersionConflict {
            resource: format!("{resource_type}/{id}"),
            current,
            expected,
        });
    }
    let now = stored_instant(Utc::now());
    stamp(&mut content, &id, current + 1, &now);
    let index = index_entries(&content);
    let write = PlannedWrite {
        resource_type,
        id,
        version_id: current + 1,
        replaces: true,
        content,
        index,
        identity: None,
        source_time: now.clone(),
        source_practice: String::new(),
    };
    write_all(conn, std::slice::from_ref(&write), &now, own).await?;
    Ok(write.content)
}

/// A workflow change: new resources (members of the referral), updates at the versions they were
/// based on, and letters queued for delivery.
async fn transact(
    conn: &mut Conn,
    t: Transaction,
    own: &mut Pending,
) -> Result<Vec<Value>, StoreError> {
    let mut stored = Vec::with_capacity(t.creates.len() + t.updates.len());
    // An amended fit note keeps the duration rule over the person's fit notes as committed now.
    for amended in &t.amended_fit_notes {
        lock_keys(conn, &[person_key(amended.patient_id.as_str())]).await?;
        if let Some((gap, expression)) = amended.duration_rule {
            let mut all: Vec<_> = fit_notes_of(&mut *conn, amended.patient_id.as_str())
                .await?
                .into_iter()
                .filter(|f| f.reference != amended.facts.reference)
                .collect();
            all.push(amended.facts.clone());
            let note = &amended.facts;
            let run_start = crate::fit_notes::runs(&all, gap)
                .iter()
                .find(|r| r.contains(&note.reference))
                .map_or(note.start, |r| r.start);
            if let Some(issue) =
                crate::intake::fit_note::duration_rule(note.start, note.end, run_start, expression)
            {
                return Err(StoreError::Rejected(issue.into()));
            }
        }
    }
    for (resource, version) in t.updates {
        stored.push(update_one(conn, resource, Some(version), own).await?);
    }
    let created = insert_new(conn, t.creates, true, own).await?;
    for r in &created {
        own.members
            .push(json!([r["resourceType"], r["id"], t.referral]));
    }
    stored.extend(created);
    let now = stored_instant(Utc::now());
    for observation_id in &t.withdrawn_fit_notes {
        sqlx::query(
            "UPDATE fit_notes SET withdrawn_at = $1 WHERE observation_id = $2 AND withdrawn_at IS NULL",
        )
        .bind(&now)
        .bind(observation_id)
        .execute(&mut *conn)
        .await?;
    }
    for amended in &t.amended_fit_notes {
        let note = &amended.facts;
        let observation_id = note.reference.trim_start_matches("Observation/");
        sqlx::query(
            "UPDATE fit_notes SET period_start = $1, period_end = $2, issued = $3, not_fit = $4
             WHERE observation_id = $5 AND withdrawn_at IS NULL",
        )
        .bind(note.start.to_string())
        .bind(note.end.map(|d| d.to_string()))
        .bind(note.issued.to_string())
        .bind(note.not_fit)
        .bind(observation_id)
        .execute(&mut *conn)
        .await?;
    }
    for task_id in &t.withdrawn_prompts {
        sqlx::query(
            "UPDATE referral_prompts SET withdrawn_at = $1 WHERE task_id = $2 AND withdrawn_at IS NULL",
        )
        .bind(&now)
        .bind(task_id)
        .execute(&mut *conn)
        .await?;
    }
    append_audit(conn, t.audit, own).await?;
    for d in t.deliveries {
        sqlx::query(
            "INSERT INTO deliveries (id, document_id, referral_id, patient_id, service, practice, priority, state,
                 attempts, message_id, correlation_id, created_at, next_attempt_at, deadline_at, escalate_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(d.id.as_str())
        .bind(&d.document_id)
        .bind(&d.referral_id)
        .bind(d.patient_id.as_str())
        .bind(&d.service)
        .bind(&d.practice)
        .bind(if d.urgent { 0_i64 } else { 1_i64 })
        .bind(d.state.code())
        .bind(&d.message_id)
        .bind(&d.correlation_id)
        .bind(stored_instant(d.created_at))
        .bind(stored_instant(d.next_attempt_at))
        .bind(stored_instant(d.deadline_at))
        .bind(stored_instants(d.escalate_at))
        .bind(stored_instant(d.updated_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(stored)
}

/// Appends the AuditEvents of a change in the change's own savepoint, so both are kept or
/// neither. Anything else is refused: what is passed as audit never replaces a record.
async fn append_audit(
    conn: &mut Conn,
    events: Vec<Value>,
    own: &mut Pending,
) -> Result<(), StoreError> {
    if let Some(other) = events.iter().find(|e| e["resourceType"] != "AuditEvent") {
        return Err(StoreError::Corrupt(format!(
            "a {} passed as an AuditEvent",
            other["resourceType"]
                .as_str()
                .unwrap_or("value without a resourceType")
        )));
    }
    insert_new(conn, events, false, own).await.map(drop)
}

fn parties(row: &DbRow) -> RecordParties {
    RecordParties {
        record: row.get(0),
        patient_id: PatientId::new(row.get::<String, _>(1)),
        // '' is a self-referral's: no practice is party to it.
        practice: row.get::<Option<String>, _>(2).filter(|p| !p.is_empty()),
        service: row.get(3),
        patient_version: row.get(4),
    }
}

// Each statement is a round trip to sqlx's SQLite worker thread, so a submission's rows are
// written by a handful of set-based statements over JSON arrays (`json_each`) rather than one
// statement per row. The SQL text stays constant, so every statement is prepared once.

async fn write_all(
    conn: &mut Conn,
    writes: &[PlannedWrite],
    now: &str,
    own: &mut Pending,
) -> Result<(), StoreError> {
    let replaced: Vec<Value> = writes
        .iter()
        .filter(|w| w.replaces)
        .map(|w| json!([w.resource_type, w.id]))
        .collect();
    if !replaced.is_empty() {
        let keys = Value::Array(replaced).to_string();
        sqlx::query(concat!(
            "INSERT INTO resource_history (resource_type, id, version_id, last_updated, content)
             SELECT r.resource_type, r.id, r.version_id, r.last_updated, r.content FROM ",
            json_rows!("$1"),
            " JOIN resources r ON r.resource_type = j.value ->> 0 AND r.id = j.value ->> 1",
        ))
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
        sqlx::query(concat!(
            "DELETE FROM search_tokens
             WHERE (resource_type, resource_id) IN (SELECT value ->> 0, value ->> 1 FROM ",
            json_rows!("$1"),
            ")",
        ))
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
        for w in writes.iter().filter(|w| w.replaces) {
            let key = (w.resource_type.clone(), w.id.clone());
            own.tokens.remove(&key);
            own.replaced.push(key);
        }
    }

    // Whole resources are bound as parameters of one multi-row INSERT: passing them inside a JSON
    // array would make SQLite re-parse each kilobyte-sized document once per extracted column.
    let mut contents = Vec::with_capacity(writes.len());
    for w in writes {
        contents.push(
            serde_json::to_string(&w.content).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
    }
    let mut insert = QueryBuilder::<Db>::new(
        "INSERT INTO resources (resource_type, id, version_id, last_updated, content, source_time, source_practice) ",
    );
    insert.push_values(writes.iter().zip(contents), |mut row, (w, content)| {
        row.push_bind(w.resource_type.clone())
            .push_bind(w.id.clone())
            .push_bind(w.version_id)
            .push_bind(now.to_string())
            .push_bind(content)
            .push_bind(w.source_time.clone())
            .push_bind(w.source_practice.clone());
    });
    insert.push(
        " ON CONFLICT (resource_type, id) DO UPDATE
          SET version_id = excluded.version_id, last_updated = excluded.last_updated,
              content = excluded.content, source_time = excluded.source_time,
              source_practice = excluded.source_practice",
    );
    insert.build().persistent(true).execute(&mut *conn).await?;

    let identities: Vec<Value> = writes
        .iter()
        .filter_map(|w| {
            let (system, value) = w.identity.as_ref()?;
            Some(json!([w.resource_type, system, value, w.id]))
        })
        .collect();
    if !identities.is_empty() {
        sqlx::query(concat!(
            "INSERT INTO identities (resource_type, system, value, resource_id)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM ",
            json_rows!("$1"),
        ))
        .bind(Value::Array(identities).to_string())
        .execute(&mut *conn)
        .await?;
    }

    // Index entries are written with the batch (see `Pending`).
    for w in writes {
        own.tokens
            .insert((w.resource_type.clone(), w.id.clone()), w.index.clone());
    }
    Ok(())
}

fn parse_content(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl Resources for SqlStore {
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query("SELECT content FROM resources WHERE resource_type = $1 AND id = $2")
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.map(|r| parse_content(r.get::<&str, _>(0))).transpose()
    }

    async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query(
            "SELECT content FROM resources WHERE resource_type = $1 AND id = $2 AND version_id = $3
             UNION ALL
             SELECT content FROM resource_history WHERE resource_type = $1 AND id = $2 AND version_id = $3",
        )
        .bind(resource_type)
        .bind(id)
        .bind(version)
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| parse_content(r.get::<&str, _>(0))).transpose()
    }

    async fn read_many(
        &self,
        resource_type: &str,
        ids: &[String],
    ) -> Result<Vec<Value>, StoreError> {
        // CROSS JOIN keeps the id list as the outer loop: with a plain JOIN the planner, which
        // cannot see how long the bound list is, may scan every resource of the type instead.
        let rows = sqlx::query(concat!(
            "SELECT r.content FROM ",
            ids_in_order_join!("$1"),
            " resources r ON r.resource_type = $2 AND r.id = j.value ORDER BY j.key",
        ))
        .bind(serde_json::to_string(ids).unwrap_or_default())
        .bind(resource_type)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| parse_content(r.get::<&str, _>(0)))
            .collect()
    }

    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, StoreError> {
        let mut count = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM resources r");
        push_filters(&mut count, req);
        let mut read = snapshot(&self.readers).await?;
        let total: i64 = count.build_query_scalar().fetch_one(&mut *read).await?;

        let mut page = QueryBuilder::<Db>::new("SELECT r.content FROM resources r");
        push_filters(&mut page, req);
        push_order(&mut page, req);
        page.push(" LIMIT ")
            .push_bind(i64::from(req.count))
            .push(" OFFSET ")
            .push_bind(i64::from(req.offset));
        let rows = page.build().fetch_all(&mut *read).await?;
        read.commit().await?;
        let resources = rows
            .iter()
            .map(|r| parse_content(r.get::<&str, _>(0)))
            .collect::<Result<_, _>>()?;
        Ok(SearchPage {
            total: total as u64,
            resources,
        })
    }

    async fn search_candidates(&self, req: &SearchRequest) -> Result<Vec<Candidate>, StoreError> {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT r.id, (SELECT pt.value FROM search_tokens pt WHERE pt.resource_type = r.resource_type AND pt.resource_id = r.id AND pt.param = 'patient' LIMIT 1) FROM resources r",
        );
        push_filters(&mut q, req);
        push_order(&mut q, req);
        let rows = q.build().fetch_all(&self.readers).await?;
        Ok(rows
            .iter()
            .map(|r| Candidate {
                id: r.get(0),
                patient: r.get(1),
            })
            .collect())
    }

    async fn create(&self, resources: Vec<Value>) -> Result<Vec<Value>, StoreError> {
        self.write(|reply| WriteJob::Create(resources, reply)).await
    }

    async fn update(
        &self,
        resource: Value,
        expected_version: Option<i64>,
    ) -> Result<Value, StoreError> {
        self.write(|reply| WriteJob::Update(resource, expected_version, reply))
            .await
    }

    async fn transact(&self, transaction: Transaction) -> Result<Vec<Value>, StoreError> {
        self.write(|reply| WriteJob::Transact(transaction, reply))
            .await
    }

    async fn records_of(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<RecordParties>, StoreError> {
        let rows = sqlx::query(
            "SELECT record, patient_id, practice, service, patient_version FROM resource_parties
             WHERE resource_type = $1 AND resource_id = $2",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(parties).collect())
    }

    async fn records_of_patient(
        &self,
        patient_id: &PatientId,
    ) -> Result<Vec<RecordParties>, StoreError> {
        let rows = sqlx::query(
            "SELECT 'ServiceRequest/' || service_request_id, patient_id, practice, service, patient_version
             FROM referrals WHERE patient_id = $1
             UNION ALL
             SELECT 'Observation/' || observation_id, patient_id, practice, NULL, patient_version
             FROM fit_notes WHERE patient_id = $1",
        )
        .bind(patient_id.as_str())
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(parties).collect())
    }
}
