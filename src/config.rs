//! Configuration: embedded defaults, merged with an optional TOML file, then command-line and
//! environment overrides. Everything configurable lives in [`Config`].

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    #[serde(default)]
    pub base_url: Option<String>,
    pub allow_plaintext_non_loopback: bool,
    pub limits: Limits,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub consent: ConsentConfig,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

/// Access tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// PKCS#8 PEM ECDSA P-384 key that signs access tokens; created on first start if missing.
    pub signing_key: std::path::PathBuf,
    pub issuer: String,
    pub audience: String,
    pub token_ttl_secs: u64,
}

/// Consent policy: the information-governance decisions a deployment records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// Whether a BaRS referral's implied direct-care Consent (category DRC, policy IMPLIED) counts
    /// as the person's agreement to be referred to the receiving service.
    pub bars_implied_direct_care: bool,
    /// Longest time an override may be granted for.
    pub override_max_hours: u32,
    /// Key for the evaluation export's pseudonyms (HMAC-SHA256); created on first export.
    pub pseudonym_key: std::path::PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub max_batch: usize,
    pub read_connections: u32,
}

/// A work-and-health service that referrals can be addressed to.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub ods_code: Option<String>,
    /// `system|value` of the service's BaRS target identifier.
    #[serde(default)]
    pub bars_endpoint: Option<String>,
}

impl Config {
    /// The embedded defaults with `file` (if any) merged over them.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut merged: toml::Table = DEFAULTS
            .parse()
            .expect("embedded default config is valid TOML");
        if let Some(path) = file {
            let display = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: display.clone(),
                source,
            })?;
            let overlay: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
                path: display,
                source,
            })?;
            merge(&mut merged, overlay);
        }
        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The embedded defaults alone.
    pub fn defaults() -> Config {
        Config::load(None).expect("embedded defaults are a valid configuration")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.services {
            if !seen.insert(&s.id) {
                return Err(ConfigError::Invalid(format!(
                    "service id '{}' is configured twice",
                    s.id
                )));
            }
            if s.id.is_empty()
                || !s
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(ConfigError::Invalid(format!(
                    "service id '{}' must be lower-case letters, digits and hyphens",
                    s.id
                )));
            }
            if let Some(ep) = &s.bars_endpoint
                && !ep.contains('|')
            {
                return Err(ConfigError::Invalid(format!(
                    "service '{}': bars_endpoint must be system|value",
                    s.id
                )));
            }
        }
        if self.limits.max_body_bytes == 0
            || self.store.max_batch == 0
            || self.store.read_connections == 0
        {
            return Err(ConfigError::Invalid(
                "limits and store sizes must be greater than zero".into(),
            ));
        }
        Ok(())
    }

    /// Base URL for absolute links (Location headers, paging), without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    pub fn service(&self, id: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.id == id)
    }
}

/// Deep-merges `overlay` into `base`: tables merge, every other value (lists included) replaces.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load() {
        let c = Config::defaults();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://data/whg.db");
        assert!(c.service("sheffield-whs").is_some());
        assert_eq!(c.base_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn file_overlays_merge_tables_and_replace_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[limits]\nmax_body_bytes = 10\n[[services]]\nid = \"only\"\nname = \"Only\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.limits.max_body_bytes, 10);
        assert_eq!(
            c.limits.request_timeout_secs, 30,
            "untouched keys keep their defaults"
        );
        assert_eq!(c.services.len(), 1);
    }

    #[test]
    fn rejects_unknown_keys_and_duplicate_services() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        assert!(matches!(
            Config::load(Some(&path)),
            Err(ConfigError::Invalid(_))
        ));
        std::fs::write(
            &path,
            "[[services]]\nid = \"a\"\nname = \"A\"\n[[services]]\nid = \"a\"\nname = \"B\"\n",
        )
        .unwrap();
        assert!(Config::load(Some(&path)).is_err());
    }
}
