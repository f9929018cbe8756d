//! `whg clients …`: the client registry from the command line.

use std::path::Path;
use std::process::ExitCode;

use whg::auth::registry::{self, KeySource};
use whg::auth::{Principal, SigningKey};
use whg::config::Config;
use whg::store::{ClientId, Store, StoreError};

use super::ClientsWhat;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))
}

async fn open(config: &Config) -> Result<std::sync::Arc<dyn Store>, String> {
    whg::store::open(config).await.map_err(|e| e.to_string())
}

/// The principal a registered, active client acts as.
pub fn registered(
    config: &Config,
    id: &str,
    database_url: Option<String>,
) -> Result<Principal, String> {
    let mut config = config.clone();
    if let Some(url) = database_url {
        config.database_url = url;
    }
    runtime()?.block_on(async {
        let store = open(&config).await?;
        let client = store
            .client(&ClientId::new(id))
            .await
            .map_err(|e| e.to_string());
        store.close().await;
        let client = client?.ok_or_else(|| format!("no client '{id}' is registered"))?;
        if client.revoked_at.is_some() {
            return Err(format!("client '{id}' has been revoked"));
        }
        let mut p = Principal::new(client.role, &client.organisation);
        p.client_id = client.id.to_string();
        p.scopes = client.scopes;
        p.test_tenant = client.test_tenant;
        Ok(p)
    })
}

pub fn run(mut config: Config, what: ClientsWhat, database_url: Option<String>) -> ExitCode {
    if let Some(url) = database_url {
        config.database_url = url;
    }
    match execute(&config, what) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whg: {e}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn execute(config: &Config, what: ClientsWhat) -> Result<(), String> {
    match what {
        ClientsWhat::Keygen { out } => {
            let key = SigningKey::generate();
            key.save(&out).map_err(|e| e.to_string())?;
            println!("{}", key.public_jwks());
            eprintln!(
                "whg: private key written to {} (owner-only); register the public JWK Set above with `whg clients add ID --jwks FILE`",
                out.display()
            );
            Ok(())
        }
        ClientsWhat::Assertion {
            client,
            key,
            token_url,
        } => {
            let key = SigningKey::load(&key).map_err(|e| e.to_string())?;
            let now = chrono::Utc::now().timestamp();
            println!(
                "{}",
                key.sign(&serde_json::json!({
                    "iss": client, "sub": client, "aud": token_url,
                    "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(),
                }))
            );
            Ok(())
        }
        ClientsWhat::Add {
            id,
            role,
            org,
            scope,
            public_key,
            jwks,
            jwks_url,
            tenant,
        } => {
            let keys = match (public_key, jwks, jwks_url) {
                (Some(p), _, _) => KeySource::PublicKeyPem(read(&p)?),
                (_, Some(j), _) => KeySource::Jwks(
                    serde_json::from_slice(&read(&j)?)
                        .map_err(|e| format!("{} is not JSON: {e}", j.display()))?,
                ),
                (_, _, Some(u)) => KeySource::JwksUrl(u),
                _ => return Err("give the client's key: --public-key, --jwks or --jwks-url".into()),
            };
            let record = registry::new_client(
                &id,
                role,
                &org,
                scope,
                keys,
                registry::Tenancy {
                    test: tenant == super::Tenant::Test,
                    test_organisations: &config.auth.test_organisations,
                },
                chrono::Utc::now(),
            )
            .map_err(|e| e.to_string())?;
            runtime()?.block_on(async {
                let store = open(config).await?;
                let result = store.register_client(record.clone()).await;
                store.close().await;
                match result {
                    Ok(()) => {
                        println!("{}", serde_json::to_string(&record).unwrap_or_default());
                        Ok(())
                    }
                    Err(StoreError::Conflict { .. }) => Err(format!(
                        "a client '{id}' is already registered (revoked clients keep their id)"
                    )),
                    Err(e) => Err(e.to_string()),
                }
            })
        }
        ClientsWhat::List => runtime()?.block_on(async {
            let store = open(config).await?;
            let clients = store.clients().await.map_err(|e| e.to_string());
            store.close().await;
            for c in clients? {
                println!("{}", serde_json::to_string(&c).unwrap_or_default());
            }
            Ok(())
        }),
        ClientsWhat::Revoke { id } => runtime()?.block_on(async {
            let store = open(config).await?;
            let revoked = store
                .revoke_client(&ClientId::new(id.as_str()))
                .await
                .map_err(|e| e.to_string());
            store.close().await;
            if revoked? {
                eprintln!(
                    "whg: client '{id}' revoked; its tokens stop working within {} s",
                    config.auth.revocation_poll_secs
                );
                Ok(())
            } else {
                Err(format!("no active client '{id}' to revoke"))
            }
        }),
    }
}
