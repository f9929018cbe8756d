async fn client_write(conn: &mut Conn, write: ClientWrite) -> Result<bool, StoreError> {
    match write {
        ClientWrite::Register(c) => {
            let inserted = sqlx::query(
                "INSERT INTO clients (id, role, organisation, scopes, jwks, jwks_url, created_at, tenant)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(c.id.as_str())
            .bind(c.role.as_str())
            .bind(&c.organisation)
            .bind(c.scopes.join(" "))
            .bind(c.jwks.as_ref().map(Value::to_string))
            .bind(&c.jwks_url)
            .bind(stored_instant(c.created_at))
            .bind(if c.test_tenant { "test" } else { "live" })
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict {
                    namespace: "client".into(),
                    key: c.id.to_string(),
                    existing_id: c.id.to_string(),
                });
            }
            Ok(true)
        }
        ClientWrite::Revoke(id) => Ok(sqlx::query(
            "UPDATE clients SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(stored_instant(Utc::now()))
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1),
        // The keys are compared as stored (the JSON text `Value::to_string` wrote), so a rotation
        // applies only to the keys it was worked out from.
        ClientWrite::ReplaceKeys { id, current, keys } => Ok(sqlx::query(
            "UPDATE clients SET jwks = $1 WHERE id = $2 AND jwks = $3 AND revoked_at IS NULL",
        )
        .bind(keys.to_string())
        .bind(id.as_str())
        .bind(current.to_string())
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1),
        ClientWrite::ConsumeAssertion {
            client_id,
            jti,
            expires_at,
        } => {
            // Assertions live five minutes at most; the used ones are forgotten once expired.
            sqlx::query("DELETE FROM client_assertions WHERE expires_at < $1")
                .bind(Utc::now().timestamp() - 600)
                .execute(&mut *conn)
                .await?;
            Ok(sqlx::query(
                "INSERT INTO client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (client_id, jti) DO NOTHING",
            )
            .bind(client_id.as_str())
            .bind(&jti)
            .bind(expires_at)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1)
        }
    }
}

fn client_of(row: &DbRow) -> Result<ClientRecord, StoreError> {
    let role: String = row.get(1);
    let id = ClientId::new(row.get::<String, _>(0));
    Ok(ClientRecord {
        role: crate::caller::Role::from_str_code(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("client role '{role}'")))?,
        organisation: row.get(2),
        scopes: row
            .get::<&str, _>(3)
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        jwks: row
            .get::<Option<&str>, _>(4)
            .map(parse_content)
            .transpose()?,
        jwks_url: row.get(5),
        created_at: instant_of(&format!("client {id}"), row.get::<&str, _>(6))?,
        revoked_at: instants_of(&format!("client {id}"), row.get::<Option<&str>, _>(7))?,
        test_tenant: row.get::<&str, _>(8) == "test",
        id,
    })
}

macro_rules! select_clients {
    ($($rest:expr),+ $(,)?) => {
        concat!(
            "SELECT id, role, organisation, scopes, jwks, jwks_url, created_at, revoked_at, tenant FROM clients",
            $($rest),+
        )
    };
}

#[async_trait]
impl Registry for SqlStore {
    async fn register_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        self.write(|reply| WriteJob::Client(ClientWrite::Register(client), reply))
            .await
            .map(drop)
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(select_clients!(" ORDER BY id"))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(client_of).collect()
    }

    async fn client(&self, id: &ClientId) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(select_clients!(" WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(client_of).transpose()
    }

    async fn revoke_client(&self, id: &ClientId) -> Result<bool, StoreError> {
        self.write(|reply| WriteJob::Client(ClientWrite::Revoke(id.clone()), reply))
            .await
    }

    async fn replace_client_keys(
        &self,
        id: &ClientId,
        current: &Value,
        keys: Value,
    ) -> Result<bool, StoreError> {
        let (id, current) = (id.clone(), current.clone());
        self.write(|reply| WriteJob::Client(ClientWrite::ReplaceKeys { id, current, keys }, reply))
            .await
    }

    async fn consume_assertion(
        &self,
        client_id: &ClientId,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.write(|reply| {
            WriteJob::Client(
                ClientWrite::ConsumeAssertion {
                    client_id: client_id.clone(),
                    jti: jti.to_string(),
                    expires_at,
                },
                reply,
            )
        })
        .await
    }
}
