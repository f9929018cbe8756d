async fn apply(
    conn: &mut Conn,
    mut s: Submission,
    admission: Option<Admission>,
    batch_tokens: &HashMap<(String, String), Vec<IndexEntry>>,
    own: &mut Pending,
) -> Result<Stored, StoreError> {
    // Every intake path checks this; the store holds to it whatever hands it a submission, since
    // a second Patient would make the sender party to a second person.
    if !s.is_about_one_person() {
        return Err(StoreError::Rejected(
            Issue::error(
                IssueType::BusinessRule,
                "Bundle.entry.resource.ofType(Patient)",
                format!(
                    "a {} is about one person, its subject: it cannot carry another Patient",
                    s.kind.noun()
                ),
            )
            .into(),
        ));
    }
    let now = stored_instant(Utc::now());
    // Time-ordered ids: new rows land at the end of every index instead of on random pages.
    let focus_id = uuid::Uuid::now_v7().to_string();
    // The key's primary key decides: the first insert wins, every later one sees the stored row.
    let inserted = sqlx::query(
        "INSERT INTO submissions (namespace, key, content_hash, focus_type, focus_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (namespace, key) DO NOTHING",
    )
    .bind(&s.key.namespace)
    .bind(&s.key.value)
    .bind(&s.content_hash)
    .bind(s.kind.focus_type())
    .bind(&focus_id)
    .bind(&now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        let row = sqlx::query(
            "SELECT content_hash, focus_id FROM submissions WHERE namespace = $1 AND key = $2",
        )
        .bind(&s.key.namespace)
        .bind(&s.key.value)
        .fetch_one(&mut *conn)
        .await?;
        let (hash, id): (String, String) = (row.get(0), row.get(1));
        if hash != s.content_hash {
            return Err(StoreError::Conflict {
                namespace: s.key.namespace.clone(),
                key: s.key.value.clone(),
                existing_id: id,
            });
        }
        let prompts = sqlx::query_scalar(
            "SELECT task_id FROM referral_prompts WHERE fit_note_id = $1 ORDER BY task_id",
        )
        .bind(&id)
        .fetch_all(&mut *conn)
        .await?;
        return Ok(Stored {
            focus_id: id,
            created: false,
            prompts,
        });
    }

    // Across instances (PostgreSQL), submissions naming the same shared resources (the person,
    // their practice) take turns, so two never create one person twice or both write a
    // resource's next version.
    lock_keys(conn, &identity_keys(&s)).await?;
    let existing = matched_resources(conn, &s).await?;
    let mut new_prompts = Vec::new();
    if let Some(admit) = admission {
        let known_person = s.subject_entry().and_then(|e| existing.get(&e.full_url));
        let history = match known_person {
            Some(p) => {
                // The person's history is read under the lock a Consent about them is written
                // under: a withdrawal committed by any instance a moment earlier is seen.
                lock_keys(conn, &[person_key(&p.id)]).await?;
                History {
                    consents: consents_of(conn, &p.id, batch_tokens).await?,
                    referrals: care_relations_of(conn, &p.id).await?,
                    fit_notes: fit_notes_of(&mut *conn, &p.id).await?,
                    prompts: prompts_of(conn, &p.id).await?,
                }
            }
            None => History::default(),
        };
        // The admission is the core's rules, run here on the writer's thread that every write
        // waits on: a panic in one (a bug) refuses this submission, not every write after it.
        let admitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            admit(&history, &mut s.entries)
        }))
        .map_err(|_| StoreError::Bug("the submission's admission rules failed"))?;
        new_prompts = admitted.map_err(|r| match r {
            Refusal::Consent(d) => StoreError::Refused(d),
            Refusal::Rules(issues) => StoreError::Rejected(issues),
        })?;
    }
    // The referring organisation (the `practice` column holds any referrer's: its
    // identifier's system says which kind). A self-referral has none: '' names none (no
    // organisation identifier is empty), read back as none (`resources::parties`).
    let practice = s.sender.organisation().unwrap_or_default().to_string();
    let kind = s.kind.clone();
    let plan = plan(s, &existing, &focus_id, &now);
    write_all(conn, &plan.writes, &now, own).await?;
    let patient_version = plan.patient_version;
    let patient_id = plan
        .patient_id
        .ok_or_else(|| StoreError::Corrupt("a submission without a Patient".into()))?;
    match kind {
        SubmissionKind::Referral { service } => {
            own.referrals.push(json!([
                focus_id,
                patient_id,
                practice,
                service,
                now,
                patient_version
            ]));
            own.members
                .extend(plan.members.iter().map(|(t, id)| json!([t, id, focus_id])));
        }
        SubmissionKind::FitNote(note) => {
            sqlx::query(
                "INSERT INTO fit_notes (observation_id, patient_id, practice, period_start, period_end, issued, not_fit, created_at, patient_version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&focus_id)
            .bind(&patient_id)
            .bind(&practice)
            .bind(note.start.to_string())
            .bind(note.end.map(|d| d.to_string()))
            .bind(note.issued.to_string())
            .bind(note.not_fit)
            .bind(&now)
            .bind(patient_version)
            .execute(&mut *conn)
            .await?;
        }
    }
    let mut prompt_ids = Vec::with_capacity(new_prompts.len());
    for p in new_prompts {
        let task_id = plan
            .ids
            .get(&p.full_url)
            .and_then(|r| r.strip_prefix("Task/"))
            .ok_or_else(|| StoreError::Corrupt("a prompt without its Task".into()))?
            .to_string();
        sqlx::query(
            "INSERT INTO referral_prompts (task_id, patient_id, fit_note_id, service, rule, covers_from, covers_to, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&task_id)
        .bind(&patient_id)
        .bind(&focus_id)
        .bind(&p.record.service)
        .bind(&p.record.rule)
        .bind(p.record.from.to_string())
        .bind(p.record.to.map(|d| d.to_string()))
        .bind(&now)
        .execute(&mut *conn)
        .await?;
        prompt_ids.push(task_id);
    }
    prompt_ids.sort();
    Ok(Stored {
        focus_id,
        created: true,
        prompts: prompt_ids,
    })
}

/// A person's fit notes, from the table written in each fit note's own transaction.
async fn fit_notes_of<'c, E>(executor: E, patient_id: &str) -> Result<Vec<FitNoteFacts>, StoreError>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    let rows = sqlx::query(
        "SELECT observation_id, period_start, period_end, issued, not_fit FROM fit_notes
         WHERE patient_id = $1 AND withdrawn_at IS NULL ORDER BY period_start, issued, observation_id",
    )
    .bind(patient_id)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FitNoteFacts {
                reference: format!("Observation/{}", r.get::<&str, _>(0)),
                start: stored_date(r.get(1))?,
                end: r.get::<Option<&str>, _>(2).map(stored_date).transpose()?,
                issued: stored_date(r.get(3))?,
                not_fit: r.get(4),
            })
        })
        .collect()
}

/// The person's referrals, as the consent authorship rule reads them.
async fn care_relations_of(
    conn: &mut Conn,
    patient_id: &str,
) -> Result<Vec<crate::consent::authorship::CareRelation>, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT practice, service FROM referrals WHERE patient_id = $1")
            .bind(patient_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(
            |(practice, service)| crate::consent::authorship::CareRelation {
                referrer: (!practice.is_empty()).then_some(practice),
                service,
            },
        )
        .collect())
}

async fn prompts_of(conn: &mut Conn, patient_id: &str) -> Result<Vec<PastPrompt>, StoreError> {
    let rows = sqlx::query(
        "SELECT service, rule, covers_from, covers_to FROM referral_prompts WHERE patient_id = $1 AND withdrawn_at IS NULL",
    )
    .bind(patient_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PastPrompt {
                service: r.get(0),
                rule: r.get(1),
                from: stored_date(r.get(2))?,
                to: r.get::<Option<&str>, _>(3).map(stored_date).transpose()?,
            })
        })
        .collect()
}

fn stored_date(text: &str) -> Result<chrono::NaiveDate, StoreError> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| StoreError::Corrupt(format!("stored date '{text}': {e}")))
}

/// A person's stored Consents, read inside the writer's transaction.
/// Both those indexed before this batch and those recorded earlier in it (whose index entries
/// are still pending).
async fn consents_of(
    conn: &mut Conn,
    patient_id: &str,
    batch_tokens: &HashMap<(String, String), Vec<IndexEntry>>,
) -> Result<Vec<Value>, StoreError> {
    let patient = format!("Patient/{patient_id}");
    let mut ids: Vec<String> = sqlx::query_scalar(
        "SELECT resource_id FROM search_tokens
         WHERE resource_type = 'Consent' AND param = 'patient' AND value = $1",
    )
    .bind(&patient)
    .fetch_all(&mut *conn)
    .await?;
    ids.extend(
        batch_tokens
            .iter()
            .filter(|((t, _), entries)| {
                t == "Consent"
                    && entries
                        .iter()
                        .any(|e| e.param == "patient" && e.value == patient)
            })
            .map(|((_, id), _)| id.clone()),
    );
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT content FROM resources WHERE resource_type = 'Consent' AND id IN (SELECT value FROM ",
        json_texts!("$1"),
        ")",
    ))
    .bind(serde_json::to_string(&ids).unwrap_or_default())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| parse_content(r.get::<&str, _>(0)))
        .collect()
}

/// Stored resources that the submission's shared entries match by identifier, by `full_url`.
async fn matched_resources(
    conn: &mut Conn,
    s: &Submission,
) -> Result<HashMap<String, Existing>, StoreError> {
    let wanted: Vec<Value> = s
        .entries
        .iter()
        .filter_map(|e| {
            let (system, value) = e.match_identifier.as_ref()?;
            Some(json!([e.resource_type, system, value, e.full_url]))
        })
        .collect();
    let mut existing = HashMap::new();
    if wanted.is_empty() {
        return Ok(existing);
    }
    let rows = sqlx::query(concat!(
        "SELECT j.value ->> 3, r.id, r.version_id, r.last_updated, r.content, r.source_time, r.source_practice
         FROM ",
        json_rows!("$1"),
        "
         JOIN identities i ON i.resource_type = j.value ->> 0 AND i.system = j.value ->> 1 AND i.value = j.value ->> 2
         JOIN resources r ON r.resource_type = i.resource_type AND r.id = i.resource_id",
    ))
    .bind(Value::Array(wanted).to_string())
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        existing.insert(
            row.get::<String, _>(0),
            Existing {
                id: row.get(1),
                version_id: row.get(2),
                last_updated: row.get(3),
                content: row.get(4),
                source_time: row.get(5),
                source_practice: row.get(6),
            },
        );
    }
    Ok(existing)
}

#[async_trait]
impl Submissions for SqlStore {
    async fn submit(
        &self,
        submission: Submission,
        admission: Option<Admission>,
    ) -> Result<Stored, StoreError> {
        self.write(|reply| WriteJob::Submit(submission, admission, reply))
            .await
    }

    async fn fit_notes_of_patient(
        &self,
        patient_id: &PatientId,
    ) -> Result<Vec<FitNoteFacts>, StoreError> {
        fit_notes_of(&self.readers, patient_id.as_str()).await
    }

    async fn patient_by_nhs_number(
        &self,
        nhs_number: &str,
    ) -> Result<Option<PatientId>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT resource_id FROM identities WHERE resource_type = 'Patient' AND system = $1 AND value = $2",
        )
        .bind(crate::fhir::systems::NHS_NUMBER)
        .bind(nhs_number)
        .fetch_optional(&self.readers)
        .await?
        .map(PatientId::new))
    }

    async fn prompts_of_person_of(&self, observation_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT p.task_id FROM referral_prompts p JOIN fit_notes n ON n.patient_id = p.patient_id
             WHERE n.observation_id = $1 AND p.withdrawn_at IS NULL ORDER BY p.task_id",
        )
        .bind(observation_id)
        .fetch_all(&self.readers)
        .await?)
    }

    async fn submitted(&self, key: &SubmissionKey) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT focus_id FROM submissions WHERE namespace = $1 AND key = $2",
        )
        .bind(&key.namespace)
        .bind(&key.value)
        .fetch_optional(&self.readers)
        .await?)
    }
}

/// The lock key of a shared resource a submission matches by identifier.
fn identity_keys(s: &Submission) -> Vec<String> {
    let mut keys: Vec<String> = s
        .entries
        .iter()
        .filter_map(|e| {
            let (system, value) = e.match_identifier.as_ref()?;
            Some(format!("identity|{}|{system}|{value}", e.resource_type))
        })
        .collect();
    // One order for every writer, so two never wait for each other's second key.
    keys.sort();
    keys.dedup();
    keys
}

/// The lock key of a person: their admission decisions and their Consents take turns on it.
fn person_key(patient_id: &str) -> String {
    format!("Patient/{patient_id}")
}

/// The people the Consents among `resources` are about, as lock keys.
fn consent_people<'a>(resources: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut keys: Vec<String> = resources
        .into_iter()
        .filter(|r| r["resourceType"] == "Consent")
        .filter_map(|r| r["patient"]["reference"].as_str())
        .filter_map(|reference| reference.strip_prefix("Patient/"))
        .map(person_key)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}
