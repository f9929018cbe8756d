//! The gateway's token-signing key: an ECDSA P-384 key in a PKCS#8 PEM file.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read signing key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write signing key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("signing key {0} is not a PKCS#8 PEM ECDSA P-384 private key")]
    Format(String),
    /// The key file lets others read or change it: whoever copied it can mint tokens.
    #[error("signing key: {0}")]
    Exposed(crate::secret_file::Exposed),
}

#[derive(Clone)]
pub struct SigningKey(Arc<Inner>);

struct Inner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public point's coordinates, base64url: the public JWK.
    x: String,
    y: String,
    key_id: String,
    pkcs8_pem: String,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                .expect("the system random source works");
        Self::from_pkcs8(pkcs8.as_ref()).expect("a freshly generated key is valid")
    }

    /// Loads the key at `path`, creating it (readable by the owner only) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            return Self::load(path);
        }
        let key = Self::generate();
        key.save(path)?;
        tracing::info!(path = %path.display(), key_id = key.key_id(), "created a new token-signing key");
        Ok(key)
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let display = path.display().to_string();
        let text = crate::secret_file::read(path).map_err(|e| match e {
            crate::secret_file::ReadError::Exposed(e) => KeyError::Exposed(e),
            crate::secret_file::ReadError::Io(source) => KeyError::Read {
                path: display.clone(),
                source,
            },
        })?;
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD
            .decode(body.trim())
            .map_err(|_| KeyError::Format(display.clone()))?;
        Self::from_pkcs8(&der).ok_or(KeyError::Format(display))
    }

    /// Writes the key as PKCS#8 PEM, readable by the owner only.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        crate::secret_file::create(path, self.0.pkcs8_pem.as_bytes()).map_err(|source| {
            KeyError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }

    fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der).ok()?;
        // Uncompressed point: 0x04 || x (48 bytes) || y (48 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 97 || point[0] != 4 {
            return None;
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..49]);
        let y = URL_SAFE_NO_PAD.encode(&point[49..]);
        let decoding = DecodingKey::from_ec_components(&x, &y).ok()?;
        let (x, y) = (x.clone(), y.clone());
        let encoding = EncodingKey::from_ec_der(der);
        // RFC 7638-style thumbprint of the public key, so rotated keys get new ids.
        let key_id = hex::encode(&Sha256::digest(point)[..8]);
        let b64 = STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).ok()?);
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Some(Self(Arc::new(Inner {
            encoding,
            decoding,
            x,
            y,
            key_id,
            pkcs8_pem: pem,
        })))
    }

    pub fn key_id(&self) -> &str {
        &self.0.key_id
    }

    /// The public key as a JWK Set (one ES384 signing key, with its id).
    pub fn public_jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-384", "x": self.0.x, "y": self.0.y,
            "kid": self.0.key_id, "alg": "ES384", "use": "sig",
        }] })
    }

    /// Signs `claims` as an ES384 JWT naming this key's id: the client side of a client
    /// assertion (`whg clients assertion`, tests).
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some(self.0.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.0.encoding)
            .expect("signing with a loaded ES384 key cannot fail")
    }

    pub(super) fn encoding(&self) -> &EncodingKey {
        &self.0.encoding
    }

    pub(super) fn decoding(&self) -> &DecodingKey {
        &self.0.decoding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_the_same_key_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.pem");
        let created = SigningKey::load_or_create(&path).unwrap();
        let loaded = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(created.key_id(), loaded.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        crate::secret_file::create(
            &dir.path().join("bad.pem"),
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n",
        )
        .unwrap();
        assert!(matches!(
            SigningKey::load(&dir.path().join("bad.pem")),
            Err(KeyError::Format(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.pem");
        SigningKey::generate().save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load_or_create(&path).err().unwrap();
        assert!(matches!(err, KeyError::Exposed(_)), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
