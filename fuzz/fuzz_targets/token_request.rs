//! Any bytes as a token request body: the form, the client assertion (header, claims, signature
//! against a registered key) and the scope request are refused or accepted, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use whg::auth::SigningKey;
use whg::auth::assertion::{claimed_client, grant_scopes, verify};

static KEYS: LazyLock<jsonwebtoken::jwk::JwkSet> = LazyLock::new(|| {
    serde_json::from_value(SigningKey::generate().public_jwks()).expect("a JWK Set")
});

fuzz_target!(|data: &[u8]| {
    let registered = vec![
        "system/*.rs".to_string(),
        "system/ServiceRequest.c".to_string(),
    ];
    for (k, v) in form_urlencoded::parse(data) {
        match k.as_ref() {
            "client_assertion" => {
                if let Ok((header, client)) = claimed_client(&v) {
                    let now = chrono::Utc::now().timestamp().max(0) as u64;
                    let _ = verify(
                        &v,
                        &header,
                        &client,
                        &KEYS,
                        "https://whg.example/oauth2/token",
                        now,
                    );
                }
            }
            "scope" => {
                let _ = grant_scopes(Some(&v), &registered);
            }
            _ => {}
        }
    }
});
