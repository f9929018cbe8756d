//! `whg clients …`: the client registry from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use whg::auth::registry::{self, KeySource};
use whg::auth::{Principal, SigningKey};
use whg::config::Config;
use whg::store::{ClientId, Store, StoreError};

use super::{ClientsWhat, KeysWhat};

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

/// The key source a command names: a PEM public key or a JWK Set file.
fn key_source(
    public_key: Option<PathBuf>,
    jwks: Option<PathBuf>,
) -> Result<Option<KeySource>, String> {
    Ok(match (public_key, jwks) {
        (Some(p), _) => Some(KeySource::PublicKeyPem(read(&p)?)),
        (_, Some(j)) => Some(KeySource::Jwks(
            serde_json::from_slice(&read(&j)?)
                .map_err(|e| format!("{} is not JSON: {e}", j.display()))?,
        )),
        _ => None,
    })
}

/// `whg clients keys …`: a rotation, applied only to the keys it was worked out from.
fn keys(config: &Config, what: KeysWhat) -> Result<(), String> {
    let id = match &what {
        KeysWhat::List { id } | KeysWhat::Add { id, .. } | KeysWhat::Retire { id, .. } => {
            id.clone()
        }
    };
    runtime()?.block_on(async {
        let store = open(config).await?;
        let result = async {
            let client = store
                .client(&ClientId::new(id.as_str()))
                .await
                .map_err(|e| e.to_string())?
                .filter(|c| c.revoked_at.is_none())
                .ok_or_else(|| format!("no active client '{id}'"))?;
            let keys = match what {
                KeysWhat::List { .. } => {
                    if let Some(url) = &client.jwks_url {
                        println!("(fetched from {url})");
                    }
                    for kid in registry::key_ids(&client) {
                        println!("{kid}");
                    }
                    return Ok(());
                }
                KeysWhat::Add { public_key, jwks, .. } => {
                    let source = key_source(public_key, jwks)?
                        .ok_or("give the key to add: --public-key or --jwks")?;
                    registry::add_keys(&client, source)
                }
                KeysWhat::Retire { kid, .. } => registry::retire_key(&client, &kid),
            }
            .map_err(|e| e.to_string())?;
            let current = client.jwks.clone().unwrap_or_default();
            if !store
                .replace_client_keys(&client.id, &current, keys.clone())
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!(
                    "client '{id}' changed while its keys were being rotated (revoked, or another rotation): try again"
                ));
            }
            let kids: Vec<&str> = keys["keys"].as_array().into_iter().flatten()
                .filter_map(|k| k["kid"].as_str())
                .collect();
            eprintln!("whg: client '{id}' now has the keys {}", kids.join(", "));
            Ok(())
        }
        .await;
        store.close().await;
        result
    })
}

fn execute(config: &Config, what: ClientsWhat) -> Result<(), String> {
    match what {
        ClientsWhat::Keys { what } => keys(config, what),
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
            let keys = match (key_source(public_key, jwks)?, jwks_url) {
                (Some(source), _) => source,
                (None, Some(u)) => KeySource::JwksUrl(u),
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
