//! Registering client systems: checking what `whg clients add` is given and turning a public key
//! into the JWK Set its assertions are checked against. Pure; the store keeps the records.

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::assertion::ALGORITHMS;
use super::{Role, scope};
use crate::store::{ClientId, ClientRecord};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("client id '{0}' must be 1 to 64 letters, digits, '.', '-' or '_'")]
    Id(String),
    #[error(
        "unknown scope '{0}': use SMART system scopes (system/Type.cruds) or the gateway's whg/… scopes"
    )]
    Scope(String),
    #[error("the public key is neither an RSA nor a P-384 EC public key in PEM: {0}")]
    PublicKey(String),
    #[error("the JWK Set is not usable: {0}")]
    Jwks(String),
    #[error("the JWKS URL '{0}' cannot be used: {1}")]
    Url(String, crate::outbound::UrlRefusal),
    #[error("{0}")]
    Tenant(String),
    #[error(
        "'{0}' cannot name a referring organisation: use its code (for an NHS organisation its ODS code), 1 to 32 letters, digits or '-', as its referrals' referringOrganisation.code will"
    )]
    Organisation(String),
}

/// Where a client's public keys come from.
pub enum KeySource {
    /// A PEM public key (RSA for RS384 or RS512, P-384 EC for ES384).
    PublicKeyPem(Vec<u8>),
    /// A JWK Set.
    Jwks(Value),
    /// A URL the gateway fetches the client's JWK Set from at each token request.
    JwksUrl(String),
}

/// Which tenant a client works in, and the test tenant's organisations.
pub struct Tenancy<'a> {
    pub test: bool,
    pub test_organisations: &'a [String],
}

/// The longest client id the registry takes.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// The registry's rule for client ids: 1 to 64 letters, digits, `.`, `-` or `_`. Every place
/// that is handed a client id by a caller (the token endpoint's assertion, an external issuer's
/// token) applies it before looking the id up or writing it anywhere, so an id that could never
/// have been registered is refused without being stored, echoed or logged.
pub fn valid_client_id(id: &str) -> bool {
    (1..=MAX_CLIENT_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether `code` can be a referring organisation's code, as the practice format's
/// `referringOrganisation.code` takes it (`^[A-Za-z0-9][A-Za-z0-9-]{0,31}$`).
fn valid_referrer_code(code: &str) -> bool {
    (1..=32).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && code.as_bytes()[0] != b'-'
}

/// Checks a registration and returns the record to store.
pub fn new_client(
    id: &str,
    role: Role,
    organisation: &str,
    scopes: Vec<String>,
    keys: KeySource,
    tenancy: Tenancy,
    now: DateTime<Utc>,
) -> Result<ClientRecord, RegistryError> {
    let test_org = tenancy.test_organisations.iter().any(|o| o == organisation);
    if tenancy.test && !test_org {
        return Err(RegistryError::Tenant(format!(
            "a test-tenant client acts only for a test organisation ([auth] test_organisations), not {organisation}"
        )));
    }
    if !tenancy.test && test_org {
        return Err(RegistryError::Tenant(format!(
            "{organisation} is a test organisation: register its clients with --tenant test"
        )));
    }
    if !valid_client_id(id) {
        return Err(RegistryError::Id(id.to_string()));
    }
    if role.refers() && role != Role::Practice && !valid_referrer_code(organisation) {
        return Err(RegistryError::Organisation(organisation.to_string()));
    }
    if let Some(bad) = scopes.iter().find(|s| !scope::is_known(s)) {
        return Err(RegistryError::Scope(bad.clone()));
    }
    let scopes = if scopes.is_empty() {
        role.default_scopes()
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        scopes
    };
    let (jwks, jwks_url) = match keys {
        KeySource::PublicKeyPem(pem) => (Some(jwks_from_pem(&pem)?), None),
        KeySource::Jwks(set) => (Some(checked_jwks(set)?), None),
        // Parsed, not matched as a string: `http://127.0.0.1.evil.example/` is not a loopback
        // host. Which addresses may be fetched is the deployment's policy, applied at each fetch.
        KeySource::JwksUrl(url) => match crate::outbound::parsed_url(&url) {
            Ok(parsed) => (None, Some(parsed.to_string())),
            Err(why) => return Err(RegistryError::Url(url, why)),
        },
    };
    Ok(ClientRecord {
        id: ClientId::new(id),
        role,
        organisation: organisation.to_string(),
        scopes,
        jwks,
        jwks_url,
        created_at: now,
        revoked_at: None,
        test_tenant: tenancy.test,
    })
}

/// The JWK Set of one PEM public key. An EC key is for ES384; an RSA key names no `alg`, so
/// its holder may sign with RS384 or RS512.
pub fn jwks_from_pem(pem: &[u8]) -> Result<Value, RegistryError> {
    let (key, alg) = DecodingKey::from_ec_pem(pem)
        .map(|k| (k, Some(Algorithm::ES384)))
        .or_else(|_| DecodingKey::from_rsa_pem(pem).map(|k| (k, None)))
        .map_err(|e| RegistryError::PublicKey(e.to_string()))?;
    let jwk =
        Jwk::from_decoding_key(&key, alg).map_err(|e| RegistryError::PublicKey(e.to_string()))?;
    checked_jwks(serde_json::json!({ "keys": [jwk] }))
}

/// A JWK Set whose every key can check assertions in one of [`ALGORITHMS`], each with a `kid`
/// of its own: a key without one is given its RFC 7638 thumbprint, so every key can be named
/// when it is retired and selected by an assertion's `kid` header.
fn checked_jwks(set: Value) -> Result<Value, RegistryError> {
    let mut parsed: JwkSet =
        serde_json::from_value(set).map_err(|e| RegistryError::Jwks(e.to_string()))?;
    if parsed.keys.is_empty() {
        return Err(RegistryError::Jwks("it has no keys".into()));
    }
    let mut kids = std::collections::HashSet::new();
    for k in &mut parsed.keys {
        let fits = ALGORITHMS.iter().any(|a| super::assertion::key_fits(k, *a));
        if !fits || DecodingKey::from_jwk(k).is_err() {
            return Err(RegistryError::Jwks(
                "every key must be an RSA key (RS384 or RS512) or a P-384 EC key (ES384)".into(),
            ));
        }
        if k.common.key_id.is_none() {
            let thumbprint = k
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .map_err(|e| RegistryError::Jwks(e.to_string()))?;
            k.common.key_id = Some(thumbprint);
        }
        let kid = k.common.key_id.clone().unwrap_or_default();
        if !kids.insert(kid.clone()) {
            return Err(RegistryError::Jwks(format!(
                "two keys have the kid '{kid}': each key needs its own"
            )));
        }
    }
    serde_json::to_value(&parsed).map_err(|e| RegistryError::Jwks(e.to_string()))
}

/// Why a client's keys could not be changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RotationError {
    #[error(transparent)]
    Keys(#[from] RegistryError),
    #[error(
        "the client's keys are fetched from its JWKS URL: it rotates them by publishing a new JWK Set there"
    )]
    FetchedKeys,
    #[error("the client has no key with kid '{0}' (see `whg clients keys list`)")]
    UnknownKid(String),
    #[error(
        "'{0}' is the client's only key: add its successor first (`whg clients keys add`), or revoke the client"
    )]
    LastKey(String),
}

/// The kids of a client's registered keys, in the order registered.
pub fn key_ids(client: &ClientRecord) -> Vec<String> {
    current_keys(client)
        .ok()
        .and_then(|set| set["keys"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_string))
        .collect()
}

/// A client's JWK Set as rotations see it: every key with its kid (a set registered before kids
/// were assigned gets its thumbprints, so its keys can be named).
fn current_keys(client: &ClientRecord) -> Result<Value, RotationError> {
    let stored = client.jwks.as_ref().ok_or(RotationError::FetchedKeys)?;
    Ok(checked_jwks(stored.clone())?)
}

/// The client's JWK Set with `added`'s keys beside the ones it has (a rotation's first step:
/// both keys work until the old one is retired). A key already registered is refused, as is a
/// kid the client has.
pub fn add_keys(client: &ClientRecord, added: KeySource) -> Result<Value, RotationError> {
    let current = &current_keys(client)?;
    let added = match added {
        KeySource::PublicKeyPem(pem) => jwks_from_pem(&pem)?,
        KeySource::Jwks(set) => checked_jwks(set)?,
        KeySource::JwksUrl(_) => return Err(RotationError::FetchedKeys),
    };
    let mut keys = current["keys"].as_array().cloned().unwrap_or_default();
    keys.extend(added["keys"].as_array().cloned().unwrap_or_default());
    Ok(checked_jwks(serde_json::json!({ "keys": keys }))?)
}

/// The client's JWK Set without the key `kid` (a rotation's last step). The last key is not
/// retired: a client with no key is a revoked one, and `whg clients revoke` says so.
pub fn retire_key(client: &ClientRecord, kid: &str) -> Result<Value, RotationError> {
    let current = current_keys(client)?;
    let keys = current["keys"].as_array().cloned().unwrap_or_default();
    if !keys.iter().any(|k| k["kid"] == kid) {
        return Err(RotationError::UnknownKid(kid.to_string()));
    }
    let kept: Vec<Value> = keys.into_iter().filter(|k| k["kid"] != kid).collect();
    if kept.is_empty() {
        return Err(RotationError::LastKey(kid.to_string()));
    }
    Ok(checked_jwks(serde_json::json!({ "keys": kept }))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SigningKey;

    const TEST_ORGS: &[String] = &[];

    fn live() -> Tenancy<'static> {
        Tenancy {
            test: false,
            test_organisations: TEST_ORGS,
        }
    }

    #[test]
    fn test_tenant_clients_act_only_for_test_organisations() {
        let jwks = SigningKey::generate().public_jwks();
        let orgs = vec!["C88901".to_string()];
        let test = |org: &str, t: bool| {
            new_client(
                "i",
                Role::Practice,
                org,
                vec![],
                KeySource::Jwks(jwks.clone()),
                Tenancy {
                    test: t,
                    test_organisations: &orgs,
                },
                Utc::now(),
            )
        };
        assert!(test("C88901", true).unwrap().test_tenant);
        assert!(matches!(
            test("A12345", true),
            Err(RegistryError::Tenant(_))
        ));
        assert!(matches!(
            test("C88901", false),
            Err(RegistryError::Tenant(_))
        ));
        assert!(!test("A12345", false).unwrap().test_tenant);
    }

    fn client_with(keys: Value) -> ClientRecord {
        new_client(
            "gp",
            Role::Practice,
            "C88901",
            vec![],
            KeySource::Jwks(keys),
            live(),
            Utc::now(),
        )
        .unwrap()
    }

    #[test]
    fn every_key_gets_a_kid_and_kids_are_distinct() {
        let mut jwk = SigningKey::generate().public_jwks();
        jwk["keys"][0].as_object_mut().unwrap().remove("kid");
        let client = client_with(jwk.clone());
        let kid = key_ids(&client);
        let parsed: Jwk = serde_json::from_value(jwk["keys"][0].clone()).unwrap();
        assert_eq!(
            kid,
            vec![
                parsed
                    .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                    .unwrap()
            ],
            "the RFC 7638 thumbprint"
        );
        let twice = serde_json::json!({"keys": [jwk["keys"][0], jwk["keys"][0]]});
        assert!(matches!(
            new_client("gp", Role::Practice, "C88901", vec![], KeySource::Jwks(twice), live(), Utc::now()),
            Err(RegistryError::Jwks(why)) if why.contains("kid")
        ));
    }

    #[test]
    fn a_rotation_adds_beside_and_retires_but_never_the_last_key() {
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        let mut client = client_with(a.public_jwks());
        let both = add_keys(&client, KeySource::Jwks(b.public_jwks())).unwrap();
        client.jwks = Some(both);
        assert_eq!(key_ids(&client), vec![a.key_id(), b.key_id()]);
        assert!(matches!(
            add_keys(&client, KeySource::Jwks(b.public_jwks())),
            Err(RotationError::Keys(RegistryError::Jwks(_)))
        ));
        let only_b = retire_key(&client, a.key_id()).unwrap();
        client.jwks = Some(only_b);
        assert_eq!(key_ids(&client), vec![b.key_id()]);
        assert_eq!(
            retire_key(&client, b.key_id()),
            Err(RotationError::LastKey(b.key_id().to_string()))
        );
        assert_eq!(
            retire_key(&client, "nope"),
            Err(RotationError::UnknownKid("nope".into()))
        );
        client.jwks = None;
        client.jwks_url = Some("https://gp-supplier.example/jwks".into());
        assert_eq!(
            add_keys(&client, KeySource::Jwks(a.public_jwks())),
            Err(RotationError::FetchedKeys)
        );
    }

    #[test]
    fn registrations_are_checked() {
        let jwks = SigningKey::generate().public_jwks();
        let add = |id: &str, scopes: Vec<String>, keys: KeySource| {
            new_client(
                id,
                Role::Practice,
                "C88901",
                scopes,
                keys,
                live(),
                Utc::now(),
            )
        };
        let ok = add("gp-1", vec![], KeySource::Jwks(jwks.clone())).unwrap();
        assert!(
            ok.scopes.contains(&"system/ServiceRequest.c".to_string()),
            "role defaults"
        );
        for bad in ["bad id", "", "gp\nforged", &"a".repeat(65)] {
            assert!(
                matches!(
                    add(bad, vec![], KeySource::Jwks(jwks.clone())),
                    Err(RegistryError::Id(_))
                ),
                "{bad:?}"
            );
        }
        assert!(add(&"a".repeat(64), vec![], KeySource::Jwks(jwks.clone())).is_ok());
        assert!(matches!(
            add("gp", vec!["openid".into()], KeySource::Jwks(jwks.clone())),
            Err(RegistryError::Scope(_))
        ));
        let no_keys = KeySource::Jwks(serde_json::json!({"keys": []}));
        assert!(matches!(
            add("gp", vec![], no_keys),
            Err(RegistryError::Jwks(_))
        ));
        let p256 = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]});
        assert!(matches!(
            add("gp", vec![], KeySource::Jwks(p256)),
            Err(RegistryError::Jwks(_))
        ));
        let remote = |url: &str| add("gp", vec![], KeySource::JwksUrl(url.into()));
        for refused in [
            "http://example.org/jwks",
            "http://127.0.0.1.evil.example/jwks",
            "http://localhost@evil.example/jwks",
            "https://user:secret@gp-supplier.example/jwks",
            "ftp://gp-supplier.example/jwks",
            "jwks.json",
        ] {
            assert!(
                matches!(remote(refused), Err(RegistryError::Url(..))),
                "{refused}"
            );
        }
        assert!(remote("http://127.0.0.1:9/jwks").is_ok());
        assert!(remote("http://[::1]:9/jwks").is_ok());
        assert!(remote("https://gp-supplier.example/jwks").is_ok());
    }
}
