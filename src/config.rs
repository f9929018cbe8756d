//! Configuration: embedded defaults, merged with an optional TOML file, then command-line and
//! environment overrides. Everything configurable lives in [`Config`].

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

// The rule types a service's configuration holds live with the pure rules that read them; they
// are re-exported here, where the configuration file is read.
pub use crate::eligibility::EligibilityConfig;
pub use crate::fit_notes::prompts::{PromptRule, PromptTrigger};
use crate::intake::IntakeContext;
pub use crate::services::Service;

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
    pub telemetry: TelemetryConfig,
    pub alerts: AlertsConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub consent: ConsentConfig,
    pub fit_notes: FitNoteConfig,
    /// HTTPS: when absent the gateway speaks plaintext HTTP (loopback only, unless allowed).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub services: Vec<Service>,
    pub workflow: WorkflowConfig,
    pub reports: ReportsConfig,
    pub delivery: DeliveryConfig,
    /// The gateway's MESH mailbox, for practices that take letters over MESH.
    #[serde(default)]
    pub mesh: Option<MeshConfig>,
    /// How each GP practice takes letters, by ODS code (with the test tenant's practice system
    /// for the test organisations that have no entry: [`TestTenantConfig`]).
    #[serde(default)]
    pub directory: std::collections::BTreeMap<String, PracticeRoute>,
    /// How referrers of other kinds take letters, by kind and code (`[referrers.talking-therapies.TAJ]`):
    /// the triage decision and the adviser's letters, under the person's consent to feedback.
    #[serde(default)]
    pub referrers:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, PracticeRoute>>,
    pub test_tenant: TestTenantConfig,
    pub outbound: OutboundConfig,
    /// Local authorities, by their postcode districts: the reports' places beside districts.
    #[serde(default)]
    pub local_authorities: Vec<crate::reports::places::LocalAuthority>,
    /// Sign-in for people (the dashboard), by OpenID Connect. Absent, nobody can sign in.
    #[serde(default)]
    pub sign_in: Option<SignInConfig>,
    pub self_referral: SelfReferralConfig,
    pub employer_letters: EmployerLettersConfig,
}

/// Letters to a person's employer (`docs/employer-letters.md`): the one-time link on which the
/// person approves one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmployerLettersConfig {
    /// How long a link works after the adviser makes it.
    pub link_valid_hours: u64,
    /// Dates of birth a link takes a day (right or wrong): the link alone shows nothing, and a
    /// date of birth cannot be guessed a few at a time.
    pub birth_date_tries_per_day: f64,
}

/// The public self-referral form (`/refer`): anyone may send it, so what it may cost is bounded
/// here. The services it offers are those whose `referral_routes` include `self-referral`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfReferralConfig {
    /// The key the form's tokens are signed with: created on first start; instances behind one
    /// address share the file, so a form drawn by one is taken by another.
    pub form_key: std::path::PathBuf,
    /// Forms taken from one source address: a sustained rate per hour and a burst (a family or
    /// a library's computers share an address).
    pub per_source_per_hour: f64,
    pub burst_per_source: f64,
    /// Forms taken from every source together, per minute, and a burst: a flood from many
    /// addresses fills neither the store nor the services' worklists.
    pub all_sources_per_minute: f64,
    pub burst_all_sources: f64,
    /// A form sent sooner than this after it was drawn is not a person filling it in.
    pub min_fill_secs: u64,
    /// How long a drawn form may be sent (then it is drawn again with the answers kept).
    pub form_lifetime_secs: u64,
    /// The largest form body: the questions' own limits add up to about 10 KiB.
    pub max_body_bytes: usize,
}

/// People sign in to the dashboard at an OpenID Connect provider the deployment trusts (NHS
/// CIS2, an ICB's Entra ID, or `whg dev-issuer` on a developer's machine): the authorization
/// code flow with PKCE, the ID token's signature, issuer, audience, lifetime and nonce checked.
/// The person's role and organisation come from two claims the provider is set up to send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInConfig {
    /// The provider's issuer URL; its `/.well-known/openid-configuration` is read.
    pub issuer: String,
    /// The gateway's client id at the provider (the ID token's audience).
    pub client_id: String,
    /// The client secret, for a confidential client; absent, a public client (PKCE only).
    #[serde(default)]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// The claim naming the person's role: `commissioner` or `service-manager`.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The claim naming the organisation the person acts for: a commissioner's ODS code, a
    /// service manager's service id.
    #[serde(default = "default_organisation_claim")]
    pub organisation_claim: String,
    /// The organisations (ODS codes) whose people may sign in as `operations`: that role sees
    /// every service's alerts, so it is limited to the deployment's own platform team, not
    /// whoever the provider calls operations. Empty: nobody signs in as operations.
    #[serde(default)]
    pub operations_organisations: Vec<String>,
    /// The HMAC key that signs session cookies (created, owner-only, on first use). Every
    /// instance behind one address must share it.
    #[serde(default = "default_session_key")]
    pub session_key: std::path::PathBuf,
    /// A session not used for this long ends.
    #[serde(default = "default_idle_minutes")]
    pub idle_minutes: u64,
    /// A session ends this long after sign-in, used or not.
    #[serde(default = "default_max_hours")]
    pub max_hours: u64,
}

fn default_role_claim() -> String {
    "whg_role".into()
}
fn default_organisation_claim() -> String {
    "whg_org".into()
}
fn default_session_key() -> std::path::PathBuf {
    "data/session-key".into()
}
fn default_idle_minutes() -> u64 {
    30
}
fn default_max_hours() -> u64 {
    8
}

/// Fetches of URLs that come from outside the deployment (a registered client's JWKS URL).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Non-public address classes such fetches may reach besides the public Internet:
    /// `loopback`, `private`, `link-local`. Empty (the default) refuses them all.
    pub allow_non_public: Vec<crate::outbound::AddressClass>,
    /// One fetch's time limit (connect, send and answer).
    pub timeout_ms: u64,
    /// The largest JWK Set read from a client's JWKS URL.
    pub max_jwks_bytes: usize,
    /// How long a JWK Set fetched from a client's JWKS URL is used before it is fetched again.
    pub jwks_cache_secs: u64,
    /// The least time between two fetches from one client's JWKS URL, whatever the token
    /// requests say: an assertion naming a `kid` the cached set lacks (a rotated key) is fetched
    /// for no sooner, and a failed fetch is remembered this long.
    pub jwks_min_refetch_secs: u64,
}

impl OutboundConfig {
    pub fn policy(&self) -> crate::outbound::AddressPolicy {
        crate::outbound::AddressPolicy::allowing(&self.allow_non_public)
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
}

/// The adviser workflow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    /// Days from referral to first contact the services aim for ("all clients seen within two
    /// weeks of referral").
    pub first_contact_target_days: u32,
}

/// The aggregate reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// Counts under this are suppressed (and so is any count that would reveal one). At least 1.
    pub suppression_threshold: u64,
    /// Count referrals from the test tenant's organisations (`[auth] test_organisations`):
    /// integrators' synthetic referrals, which would otherwise swell a live service's figures.
    pub include_test_tenant: bool,
}

/// The letter outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Run the outbox worker in this process.
    pub enabled: bool,
    /// How long a letter is retried before it is dead.
    pub retry_window_secs: u64,
    /// The first retry's delay; each later one doubles it (with jitter), up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// An urgent letter not acknowledged within this time is escalated.
    pub urgent_ack_secs: u64,
    /// One attempt's time limit (connect, send and answer).
    pub attempt_timeout_ms: u64,
    /// How often the worker looks for due letters when nothing wakes it.
    pub poll_interval_ms: u64,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// How long an instance holds a letter it works on (an attempt, an escalation, an
    /// acknowledgement, a resend) before another instance may take it over: at least the
    /// longest attempt, and as long as a killed instance's letters wait (a restarted instance
    /// is a new one). Unset: the longest attempt ([`DeliveryConfig::longest_attempt_ms`]).
    #[serde(default)]
    pub lease_seconds: Option<u64>,
    /// The mail server letters go through to recipients that take them by secure e-mail
    /// (`channel = "email"`: an NHSmail relay such as `send.nhs.net:587`).
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
}

impl DeliveryConfig {
    /// The longest one attempt can take: a token request and the send, each with the attempt's
    /// time limit (a MESH send is one request), and 10 s for the store's reads and writes around
    /// them.
    pub fn longest_attempt_ms(&self) -> u64 {
        self.attempt_timeout_ms
            .saturating_mul(2)
            .saturating_add(10_000)
    }

    /// How long a lease on a letter lasts: `lease_seconds`, or the longest attempt.
    pub fn lease(&self) -> std::time::Duration {
        match self.lease_seconds {
            Some(secs) => std::time::Duration::from_secs(secs),
            None => std::time::Duration::from_millis(self.longest_attempt_ms()),
        }
    }
}

/// The gateway's own MESH mailbox (GP Connect Send Document goes out, ITK3 acknowledgements
/// come back, through it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// The MESH API base, e.g. `https://msg.intspineservices.nhs.uk`.
    pub url: String,
    pub mailbox: String,
    /// Files holding the mailbox password and the environment's shared key (for the
    /// `NHSMESH` authorisation HMAC).
    pub password_file: std::path::PathBuf,
    pub shared_key_file: std::path::PathBuf,
    /// The mailbox's client certificate and key (PEM), and the CA for the MESH server, as MESH
    /// requires mutual TLS. Left out for a local sandbox over plain HTTP.
    #[serde(default)]
    pub client_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub client_key: Option<std::path::PathBuf>,
    #[serde(default)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// How often the inbox is read for acknowledgements.
    #[serde(default = "mesh_poll_ms")]
    pub poll_interval_ms: u64,
    /// A letter with no infrastructure acknowledgement (20013) within this time is sent again.
    #[serde(default = "mesh_infrastructure_ack_secs")]
    pub infrastructure_ack_secs: u64,
    /// A letter received (20013) but with no business acknowledgement (30001) within this time
    /// is sent again.
    #[serde(default = "mesh_business_ack_secs")]
    pub business_ack_secs: u64,
    /// The largest inbox message the gateway reads, in bytes. An ITK3 acknowledgement is a few
    /// kilobytes; anything larger is acknowledged to MESH and quarantined with its size, unread.
    #[serde(default = "mesh_max_message_bytes")]
    pub max_message_bytes: u64,
}

fn mesh_poll_ms() -> u64 {
    30_000
}

fn mesh_infrastructure_ack_secs() -> u64 {
    4 * 3600
}

fn mesh_business_ack_secs() -> u64 {
    24 * 3600
}

fn mesh_max_message_bytes() -> u64 {
    1024 * 1024
}

/// The test tenant's practice system (`whg mock-practice`, or an integrator's own test system).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TestTenantConfig {
    /// The FHIR base the test organisations without a directory entry take letters at; empty
    /// for none.
    pub practice_endpoint: String,
}

/// Where and how a recipient of letters (a practice, or a referrer of another kind) takes them.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum PracticeRoute {
    /// A BaRS-style FHIR endpoint: `POST {endpoint}/$process-message`.
    Fhir(FhirRoute),
    /// GP Connect Send Document over MESH (workflow `GPCONNECT_SEND_DOCUMENT`): practices only.
    Mesh(MeshRoute),
    /// Secure e-mail through `[delivery.smtp]`: the letter's PDF attached to a message that
    /// names no one.
    Email(EmailRoute),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EmailRoute {
    #[serde(default)]
    pub name: Option<String>,
    /// The recipient's secure mailbox (e.g. an NHSmail shared mailbox).
    pub address: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FhirRoute {
    #[serde(default)]
    pub name: Option<String>,
    pub endpoint: String,
    /// OAuth2 client credentials; without `token_url` requests go unauthenticated (only for
    /// endpoints protected otherwise, e.g. mutual TLS on a private network).
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// A file holding the client secret (never the secret itself in configuration).
    #[serde(default)]
    pub client_secret_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub scope: Option<String>,
    /// The practice system's BaRS target identifier (`system|value`, e.g. its DoS id): sent as
    /// `NHSD-Target-Identifier` and as the message's `destination.endpoint`. Only the directory
    /// says where a letter is addressed, never a message a sender sent.
    #[serde(default)]
    pub target_identifier: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MeshRoute {
    #[serde(default)]
    pub name: Option<String>,
    /// The practice's mailbox. Without it the message is routed by MESH's demographic lookup
    /// (`GPPROVIDER_<NHS number>_<date of birth>_<surname>`) to the person's registered practice.
    #[serde(default)]
    pub mailbox: Option<String>,
}

impl PracticeRoute {
    pub fn name(&self) -> Option<&str> {
        match self {
            PracticeRoute::Fhir(FhirRoute { name, .. })
            | PracticeRoute::Mesh(MeshRoute { name, .. })
            | PracticeRoute::Email(EmailRoute { name, .. }) => name.as_deref(),
        }
    }

    /// The channel's name, as deliveries and their metrics record it.
    pub const FHIR: &'static str = "fhir";
    pub const MESH: &'static str = "mesh";
    pub const EMAIL: &'static str = "email";

    pub fn channel(&self) -> &'static str {
        match self {
            PracticeRoute::Fhir(_) => Self::FHIR,
            PracticeRoute::Mesh(_) => Self::MESH,
            PracticeRoute::Email(_) => Self::EMAIL,
        }
    }
}

/// TLS with rustls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
    /// PEM CA certificate(s): when given, every client must present a certificate they signed
    /// (mutual TLS, as BaRS receivers use).
    #[serde(default)]
    pub client_ca: Option<std::path::PathBuf>,
}

/// How fit-note history is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitNoteConfig {
    /// Days allowed between one note's end and the next one's start for the two to count as
    /// consecutive (a weekend, or a few days to get an appointment).
    pub consecutive_gap_days: u32,
    /// The window, in months, the history summary counts fit notes over.
    pub summary_window_months: u32,
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
    /// How often the server re-reads the client registry (revocations, new clients).
    pub revocation_poll_secs: u64,
    /// Organisations (ODS codes, service ids) of the test tenant: integrators' clients act only
    /// for these, and live clients never do.
    #[serde(default)]
    pub test_organisations: Vec<String>,
    /// Other authorization servers whose access tokens are accepted for registered clients.
    #[serde(default)]
    pub external_issuers: Vec<ExternalIssuerConfig>,
}

impl AuthConfig {
    /// Whether `ods` is one of the test tenant's organisations: compared exactly, as the client
    /// registry compares them (ODS codes are upper case).
    pub fn is_test_organisation(&self, ods: &str) -> bool {
        self.test_organisations.iter().any(|o| o == ods)
    }
}

/// An authorization server the gateway trusts (e.g. a regional identity service). Its tokens'
/// `sub` (or `client_id`) must be a client registered here, which fixes the organisation and
/// role; the token's scopes count only as far as the registration allows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuerConfig {
    /// The tokens' `iss`.
    pub issuer: String,
    /// The `aud` its tokens carry for this gateway.
    pub audience: String,
    /// Its public keys, as a JWK Set file (nothing is fetched at run time).
    pub jwks: std::path::PathBuf,
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
    /// Deepest nesting of arrays and objects accepted in a JSON body.
    pub max_json_depth: usize,
    /// Each client's sustained request rate, and the burst it may spend at once.
    pub requests_per_second_per_client: f64,
    pub burst_per_client: f64,
    /// The same for requests without a valid access token (the token endpoint, discovery,
    /// probes, refused tokens), per source address, counted before anything is parsed.
    pub unauthenticated_requests_per_second_per_source: f64,
    pub unauthenticated_burst_per_source: f64,
    /// Reverse proxies and ingress controllers believed about the address a request came from
    /// (`X-Forwarded-For`): without them, behind a proxy every anonymous caller shares the
    /// proxy's one bucket. Only the proxies' own ranges belong here, never a public range.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A signed-in person's dashboard pages and downloads: each counts every referral of the
    /// person's services, far more work than an API request.
    pub dashboard_pages_per_second_per_person: f64,
    pub dashboard_page_burst_per_person: f64,
    /// The largest token request body (a form with one signed assertion is about 2 KiB).
    pub max_token_request_bytes: usize,
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

/// Operational alerts for a person (`crate::alerts`): where they are sent, and when a failing
/// practice endpoint becomes one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// The on-call routes: each alert goes to every route that takes its kind.
    #[serde(default)]
    pub routes: Vec<AlertRoute>,
    /// The mail server e-mail routes send through.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Letters to a practice failing every attempt for longer than this raise an alert.
    pub endpoint_failing_after_secs: u64,
    /// How often the notifier looks for alerts to send.
    pub poll_interval_ms: u64,
    /// One webhook call's time limit.
    pub notify_timeout_ms: u64,
    /// How long after a failed notification it is tried again.
    pub notify_retry_secs: u64,
    /// How many tries at the on-call routes an alert gets before the notifier gives up (with
    /// an error log line; it stays on the operations page).
    pub max_notify_attempts: u32,
}

/// An on-call route: a webhook (an incident tool, a chat channel's incoming hook) that is
/// POSTed each alert as JSON, with an `Idempotency-Key` of the alert's id and, when a secret is
/// configured, `X-WHG-Signature: sha256=<HMAC of the body>`; or an e-mail address sent each
/// alert as plain text through `[alerts.smtp]`. One of the two.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRoute {
    pub name: String,
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// The alert kinds it takes (`letter-dead`, `letter-escalated`, `endpoint-failing`,
    /// `mesh-mailbox`); none: every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// A file holding the HMAC key the body is signed with (owner-only).
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
}

/// The mail server alerts are sent through (a relay such as NHSmail's `send.nhs.net:587`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// `starttls` (submission, 587), `tls` (implicit, 465), or `none` (plain; loopback only).
    pub tls: SmtpTls,
    /// The sender address, e.g. `whg-alerts@example.nhs.uk`.
    pub from: String,
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password (owner-only).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
}

impl SmtpConfig {
    /// Whether the settings can work: a sender address, and TLS unless the server is on
    /// loopback (`label` names the table in the error).
    fn check(&self, label: &str) -> Result<(), ConfigError> {
        if self.from.parse::<lettre::Address>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "{label}.from: '{}' is not an e-mail address",
                self.from
            )));
        }
        if self.tls == SmtpTls::None && !is_loopback_host(&self.host) {
            return Err(ConfigError::Invalid(format!(
                "{label}: tls = \"none\" only for a mail server on loopback; use starttls or tls"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

/// OpenTelemetry: traces and metrics exported over OTLP/HTTP (protobuf) to the platform's
/// collector. Off unless `otlp_endpoint` is set; `/metrics` and the logs do not depend on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://otel-collector:4318`: traces go to
    /// `{endpoint}/v1/traces`, metrics to `{endpoint}/v1/metrics`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` on every span and metric.
    pub service_name: String,
    /// How often metrics are exported (and the outbox's depth read for them).
    pub metrics_interval_ms: u64,
    /// The share of requests traced (0.0 to 1.0), whether or not a caller's `traceparent`
    /// asks for it: the caller's trace is joined, its sampled flag not obeyed (an anonymous
    /// caller could otherwise have every one of its requests traced and exported).
    pub sample_ratio: f64,
    /// Who may read `GET /metrics`: direct connections from these ranges (the scraper's), never
    /// a request passed on by a trusted proxy. Anyone else is answered 404.
    pub metrics_scrapers: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub max_batch: usize,
    pub read_connections: u32,
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
        let mut config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.route_test_organisations();
        config.validate()?;
        Ok(config)
    }

    /// What intake validates against, as of now: the configured services and the consent
    /// policy for BaRS messages.
    pub fn intake_now(&self) -> IntakeContext<'_> {
        IntakeContext {
            now: chrono::Utc::now(),
            services: &self.services,
            bars_implied_direct_care: self.consent.bars_implied_direct_care,
        }
    }

    /// The test organisations without a directory entry of their own take letters at the test
    /// tenant's practice system, as any FHIR practice does (an entry is the operator's choice and
    /// always wins).
    fn route_test_organisations(&mut self) {
        let endpoint = self.test_tenant.practice_endpoint.trim();
        if endpoint.is_empty() {
            return;
        }
        for ods in &self.auth.test_organisations {
            self.directory.entry(ods.clone()).or_insert_with(|| {
                PracticeRoute::Fhir(FhirRoute {
                    name: Some(format!(
                        "Test practice {ods} (the test tenant's practice system)"
                    )),
                    endpoint: endpoint.to_string(),
                    token_url: None,
                    client_id: None,
                    client_secret_file: None,
                    scope: None,
                    target_identifier: None,
                })
            });
        }
    }

    /// The embedded defaults alone.
    pub fn defaults() -> Config {
        Config::load(None).expect("embedded defaults are a valid configuration")
    }

    /// Where letters to `recipient` (`system|value`: a practice's ODS code, or a referrer of
    /// another kind in its own identifier system) go, if anywhere.
    pub fn route_to(&self, recipient: &str) -> Option<&PracticeRoute> {
        let (system, value) = recipient.split_once('|')?;
        if system == crate::fhir::systems::ODS_ORGANIZATION {
            return self.directory.get(value);
        }
        let kind = crate::fhir::systems::referrer_kind_of_system(system)?;
        self.referrers.get(kind)?.get(value)
    }

    /// Whether one letter route (`label`: where it is configured) can work.
    fn check_route(&self, label: &str, route: &PracticeRoute) -> Result<(), ConfigError> {
        let (endpoint, token_url, client_id, client_secret_file, target_identifier) = match route {
            PracticeRoute::Fhir(FhirRoute {
                endpoint,
                token_url,
                client_id,
                client_secret_file,
                target_identifier,
                ..
            }) => (
                endpoint,
                token_url,
                client_id,
                client_secret_file,
                target_identifier,
            ),
            PracticeRoute::Mesh(_) if self.mesh.is_none() => {
                return Err(ConfigError::Invalid(format!(
                    "{label}: channel mesh needs the gateway's [mesh] mailbox"
                )));
            }
            PracticeRoute::Mesh(_) => return Ok(()),
            PracticeRoute::Email(EmailRoute { address, .. }) => {
                if address.parse::<lettre::Address>().is_err() {
                    return Err(ConfigError::Invalid(format!(
                        "{label}: '{address}' is not an e-mail address"
                    )));
                }
                if self.delivery.smtp.is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "{label}: channel email needs the mail server letters go through, [delivery.smtp]"
                    )));
                }
                return Ok(());
            }
        };
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(ConfigError::Invalid(format!(
                "{label}: endpoint must be an http(s) URL"
            )));
        }
        if let Some(target) = target_identifier
            && crate::fhir::identifiers::bars_endpoint(target).is_none()
        {
            return Err(ConfigError::Invalid(format!(
                "{label}: target_identifier must be a BaRS endpoint, system|value (e.g. https://fhir.nhs.uk/Id/dos-service-id|2000100001)"
            )));
        }
        if token_url.is_some() && (client_id.is_none() || client_secret_file.is_none()) {
            return Err(ConfigError::Invalid(format!(
                "{label}: token_url needs client_id and client_secret_file"
            )));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(sign_in) = &self.sign_in {
            sign_in.validate()?;
        }
        crate::reports::places::check(&self.local_authorities).map_err(ConfigError::Invalid)?;
        let routes = crate::fhir::terminology::code_system("referral-route");
        for service in &self.services {
            if service.referral_routes.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "services '{}': referral_routes is empty; list whom it takes referrals from (e.g. [\"gp\"])",
                    service.id
                )));
            }
            let districts = service
                .eligibility
                .as_ref()
                .and_then(|e| e.postcode_districts.as_deref())
                .unwrap_or_default();
            let mut seen = std::collections::BTreeSet::new();
            for district in districts {
                if crate::directory::outward_code(district).as_deref() != Some(district.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "services '{}': eligibility.postcode_districts '{district}' is not a postcode district in capitals (the first half of a postcode, such as NE33)",
                        service.id
                    )));
                }
                if !seen.insert(district) {
                    return Err(ConfigError::Invalid(format!(
                        "services '{}': eligibility.postcode_districts lists '{district}' twice",
                        service.id
                    )));
                }
            }
            if let Some(route) = service
                .referral_routes
                .iter()
                .find(|r| routes.display(r).is_none())
            {
                let known: Vec<&str> = routes.codes().collect();
                return Err(ConfigError::Invalid(format!(
                    "services '{}': referral_routes '{route}' is not a referral route ({})",
                    service.id,
                    known.join(", ")
                )));
            }
        }
        for route in &self.alerts.routes {
            if let Some(kind) = route
                .kinds
                .iter()
                .find(|k| crate::alerts::AlertKind::from_code(k).is_none())
            {
                return Err(ConfigError::Invalid(format!(
                    "alerts.routes '{}': '{kind}' is not an alert kind (letter-dead, letter-escalated, endpoint-failing, mesh-mailbox)",
                    route.name
                )));
            }
            match (&route.webhook_url, &route.email) {
                (Some(webhook), None) => {
                    let url = url::Url::parse(webhook).ok();
                    let loopback = url
                        .as_ref()
                        .and_then(url::Url::host_str)
                        .is_some_and(is_loopback_host);
                    match url.as_ref().map(url::Url::scheme) {
                        Some("https") => {}
                        Some("http") if loopback => {}
                        _ => {
                            return Err(ConfigError::Invalid(format!(
                                "alerts.routes '{}': webhook_url must be an https URL (plain http only on loopback)",
                                route.name
                            )));
                        }
                    }
                }
                (None, Some(address)) => {
                    if address.parse::<lettre::Address>().is_err() {
                        return Err(ConfigError::Invalid(format!(
                            "alerts.routes '{}': '{address}' is not an e-mail address",
                            route.name
                        )));
                    }
                    if self.alerts.smtp.is_none() {
                        return Err(ConfigError::Invalid(format!(
                            "alerts.routes '{}' sends e-mail, but [alerts.smtp] names no mail server",
                            route.name
                        )));
                    }
                }
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "alerts.routes '{}': give webhook_url or email (one of the two)",
                        route.name
                    )));
                }
            }
        }
        if let Some(smtp) = &self.alerts.smtp {
            smtp.check("alerts.smtp")?;
        }
        if let Some(smtp) = &self.delivery.smtp {
            smtp.check("delivery.smtp")?;
        }
        let e = &self.employer_letters;
        if !(1..=24 * 90).contains(&e.link_valid_hours) {
            return Err(ConfigError::Invalid(
                "employer_letters.link_valid_hours must be from 1 to 2160 (90 days)".into(),
            ));
        }
        if !(e.birth_date_tries_per_day.is_finite() && e.birth_date_tries_per_day >= 1.0) {
            return Err(ConfigError::Invalid(
                "employer_letters.birth_date_tries_per_day must be a number of at least 1".into(),
            ));
        }
        if self.reports.suppression_threshold < 1 {
            return Err(ConfigError::Invalid(
                "reports.suppression_threshold must be at least 1: 0 would publish every small count"
                    .into(),
            ));
        }
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
            let mut rules = std::collections::HashSet::new();
            for rule in &s.prompts {
                if !rules.insert(&rule.id) {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': prompt rule '{}' is configured twice",
                        s.id, rule.id
                    )));
                }
                let zero = match rule.trigger {
                    PromptTrigger::Consecutive { count } => count == 0,
                    PromptTrigger::WithinMonths { count, months } => count == 0 || months == 0,
                    PromptTrigger::FirstInRun => false,
                };
                if zero {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': prompt rule '{}' needs counts and months above zero",
                        s.id, rule.id
                    )));
                }
            }
            if let Some(e) = &s.eligibility
                && let (Some(min), Some(max)) = (e.min_age, e.max_age)
                && min > max
            {
                return Err(ConfigError::Invalid(format!(
                    "service '{}': eligibility min_age is above max_age",
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
        for (ods, route) in &self.directory {
            self.check_route(&format!("directory.{ods}"), route)?;
        }
        for (kind, routes) in &self.referrers {
            // Employers take only letters the person approved, addressed by the adviser.
            if crate::caller::Role::other_referrer(kind)
                .is_none_or(|r| r == crate::caller::Role::Employer)
            {
                return Err(ConfigError::Invalid(format!(
                    "referrers.{kind}: not a kind of referrer that takes letters (talking-therapies, physiotherapy, secondary-care, voluntary-sector)"
                )));
            }
            for (code, route) in routes {
                let label = format!("referrers.{kind}.{code}");
                if matches!(route, PracticeRoute::Mesh(_)) {
                    return Err(ConfigError::Invalid(format!(
                        "{label}: channel mesh is GP Connect Send Document, which only a GP practice's system files; use fhir or email"
                    )));
                }
                self.check_route(&label, route)?;
            }
        }
        let d = &self.delivery;
        if d.concurrency == 0
            || d.initial_backoff_ms == 0
            || d.max_backoff_ms < d.initial_backoff_ms
            || d.attempt_timeout_ms == 0
            || d.poll_interval_ms == 0
        {
            return Err(ConfigError::Invalid(
                "delivery: concurrency, backoffs, attempt_timeout_ms and poll_interval_ms must be above zero, max_backoff_ms at least initial_backoff_ms".into(),
            ));
        }
        if d.lease_seconds
            .is_some_and(|secs| secs.saturating_mul(1000) < d.longest_attempt_ms() || secs > 86_400)
        {
            return Err(ConfigError::Invalid(format!(
                "delivery.lease_seconds must outlast the longest attempt, twice attempt_timeout_ms plus 10 s ({} s here), and be at most a day",
                d.longest_attempt_ms().div_ceil(1000)
            )));
        }
        if self.alerts.max_notify_attempts == 0 {
            return Err(ConfigError::Invalid(
                "alerts.max_notify_attempts must be at least 1".into(),
            ));
        }
        if self.limits.requests_per_second_per_client <= 0.0 || self.limits.burst_per_client < 1.0 {
            return Err(ConfigError::Invalid(
                "limits: requests_per_second_per_client must be above 0 and burst_per_client at least 1".into(),
            ));
        }
        check_ranges(
            "limits.trusted_proxies",
            &self.limits.trusted_proxies,
            "would believe almost any caller about its own address; list only the proxies' own ranges",
        )?;
        check_ranges(
            "telemetry.metrics_scrapers",
            &self.telemetry.metrics_scrapers,
            "would show the gateway's counters to almost anyone; list only the scrapers' own ranges",
        )?;
        if self.limits.unauthenticated_requests_per_second_per_source <= 0.0
            || self.limits.unauthenticated_burst_per_source < 1.0
        {
            return Err(ConfigError::Invalid(
                "limits: unauthenticated_requests_per_second_per_source must be above 0 and unauthenticated_burst_per_source at least 1".into(),
            ));
        }
        if self.limits.max_token_request_bytes == 0
            || self.outbound.timeout_ms == 0
            || self.outbound.max_jwks_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "limits.max_token_request_bytes, outbound.timeout_ms and outbound.max_jwks_bytes must be above zero".into(),
            ));
        }
        if self.outbound.jwks_min_refetch_secs == 0
            || self.outbound.jwks_cache_secs < self.outbound.jwks_min_refetch_secs
        {
            return Err(ConfigError::Invalid(
                "outbound: jwks_min_refetch_secs must be above zero and jwks_cache_secs at least jwks_min_refetch_secs".into(),
            ));
        }
        if self.limits.max_body_bytes == 0
            || self.limits.max_json_depth == 0
            || self.auth.revocation_poll_secs == 0
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

    pub fn service(&self, id: &str) -> Option<&Service> {
        crate::services::by_id(&self.services, id)
    }

    /// The name of the service identified as `system|id` (its id if it is not configured).
    pub fn service_name<'a>(&'a self, identifier: &'a str) -> &'a str {
        let id = crate::fhir::identifiers::value_part(identifier);
        self.service(id).map_or(id, |s| s.name.as_str())
    }
}

/// Whether `host` (a name or an address, IPv6 in brackets or not) is this machine.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl SignInConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let issuer = url::Url::parse(&self.issuer)
            .map_err(|e| ConfigError::Invalid(format!("sign_in.issuer is not a URL: {e}")))?;
        // An ID token's issuer is only as trustworthy as the connection it was fetched over:
        // plaintext is for a development issuer on this host.
        if !crate::outbound::private_in_transit(&issuer) {
            return Err(ConfigError::Invalid(
                "sign_in.issuer must be an https URL (plain http only on this host, for whg dev-issuer)".into(),
            ));
        }
        if self.client_id.is_empty()
            || self.role_claim.is_empty()
            || self.organisation_claim.is_empty()
        {
            return Err(ConfigError::Invalid(
                "sign_in: client_id, role_claim and organisation_claim must not be empty".into(),
            ));
        }
        if self.idle_minutes == 0 || self.max_hours == 0 || self.idle_minutes > self.max_hours * 60
        {
            return Err(ConfigError::Invalid(
                "sign_in: idle_minutes and max_hours must be above zero, idle_minutes at most max_hours".into(),
            ));
        }
        Ok(())
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

/// Address ranges the gateway trusts for something: none wider than an IPv4 /8 or an IPv6 /32
/// (`why` says what so wide a range would do), and IPv4 written as IPv4 (a caller's mapped
/// address, `::ffff:a.b.c.d`, is compared as the IPv4 address, so a mapped range would match
/// nobody, silently).
fn check_ranges(name: &str, nets: &[ipnet::IpNet], why: &str) -> Result<(), ConfigError> {
    for net in nets {
        let (too_wide, mapped) = match net {
            ipnet::IpNet::V4(v4) => (v4.prefix_len() < 8, false),
            ipnet::IpNet::V6(v6) => (
                v6.prefix_len() < 32,
                v6.network().to_ipv4_mapped().is_some() && v6.prefix_len() >= 96,
            ),
        };
        if too_wide {
            return Err(ConfigError::Invalid(format!("{name}: {net} {why}")));
        }
        if mapped {
            return Err(ConfigError::Invalid(format!(
                "{name}: {net} is an IPv4-mapped range; write the IPv4 range itself (e.g. 10.0.0.0/8)"
            )));
        }
    }
    Ok(())
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
    fn trusted_and_scraper_ranges_must_be_narrow_and_written_as_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for (text, says) in [
            (
                "[limits]\ntrusted_proxies = [\"0.0.0.0/0\"]\n",
                "limits.trusted_proxies: 0.0.0.0/0",
            ),
            (
                "[limits]\ntrusted_proxies = [\"2000::/8\"]\n",
                "limits.trusted_proxies: 2000::/8",
            ),
            (
                "[limits]\ntrusted_proxies = [\"::ffff:10.0.0.0/104\"]\n",
                "IPv4-mapped",
            ),
            (
                "[telemetry]\nmetrics_scrapers = [\"::/0\"]\n",
                "telemetry.metrics_scrapers: ::/0",
            ),
        ] {
            let got = load(text).unwrap_err();
            assert!(got.contains(says), "{text}: {got}");
        }
        load("[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"fd00::/32\"]\n").unwrap();
    }

    #[test]
    fn referrers_take_letters_only_by_routes_that_can_reach_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path)).map_err(|e| e.to_string())
        };
        let smtp = "[delivery.smtp]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\nfrom = \"whg@example.nhs.uk\"\n";
        let tt = format!(
            "{smtp}[referrers.talking-therapies.TAJ]\nchannel = \"email\"\naddress = \"tt@nhs.net\"\n"
        );
        let c = load(&tt).unwrap();
        let to_tt = "https://fhir.work-health-gateway.org/Id/referrer/talking-therapies|TAJ";
        assert!(matches!(c.route_to(to_tt), Some(PracticeRoute::Email(_))));
        // The same code of another kind is another organisation, with no route.
        assert!(
            c.route_to("https://fhir.work-health-gateway.org/Id/referrer/physiotherapy|TAJ")
                .is_none()
        );
        assert!(
            c.route_to("https://fhir.nhs.uk/Id/ods-organization-code|TAJ")
                .is_none()
        );
        for (text, says) in [
            (
                "[referrers.talking-therapies.TAJ]\nchannel = \"email\"\naddress = \"tt@nhs.net\"\n".to_string(),
                "needs the mail server",
            ),
            (
                format!("{smtp}[referrers.talking-therapies.TAJ]\nchannel = \"email\"\naddress = \"not an address\"\n"),
                "is not an e-mail address",
            ),
            (
                "[referrers.talking-therapies.TAJ]\nchannel = \"mesh\"\n".to_string(),
                "only a GP practice's system files",
            ),
            (
                format!("{smtp}[referrers.employer.E1234]\nchannel = \"email\"\naddress = \"hr@example.com\"\n"),
                "not a kind of referrer that takes letters",
            ),
            (
                "[referrers.talking-therapies.TAJ]\nchannel = \"fhir\"\nendpoint = \"ftp://x\"\n".to_string(),
                "endpoint must be an http(s) URL",
            ),
            (
                "[delivery.smtp]\nhost = \"mail.example.org\"\nport = 25\ntls = \"none\"\nfrom = \"whg@example.nhs.uk\"\n".to_string(),
                "delivery.smtp: tls = \"none\" only for a mail server on loopback",
            ),
        ] {
            let e = load(&text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_deployment_example_is_a_valid_configuration() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/whg.example.toml");
        let c = Config::load(Some(Path::new(path))).unwrap();
        assert!(c.tls.is_some());
        assert!(c.auth.test_organisations.is_empty());
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

    #[test]
    fn a_practice_target_identifier_is_a_bars_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let load = |target: &str| {
            std::fs::write(
                &path,
                format!("[directory.C88901]\nchannel = \"fhir\"\nendpoint = \"https://gp.example/fhir\"\ntarget_identifier = \"{target}\"\n"),
            )
            .unwrap();
            Config::load(Some(&path))
        };
        assert!(load("https://fhir.nhs.uk/Id/dos-service-id|1000000042").is_ok());
        for bad in [
            "1000000042",
            "https://fhir.nhs.uk/Id/dos-service-id|",
            "ftp://x|1",
            "https://x|a b",
        ] {
            assert!(matches!(load(bad), Err(ConfigError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn a_letter_lease_outlasts_the_longest_attempt() {
        let c = Config::defaults();
        assert_eq!(c.delivery.lease(), std::time::Duration::from_secs(70));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let lease = |toml: &str| {
            std::fs::write(&path, format!("[delivery]\n{toml}\n")).unwrap();
            Config::load(Some(&path)).map(|c| c.delivery.lease().as_secs())
        };
        assert_eq!(lease("attempt_timeout_ms = 1000").unwrap(), 12);
        assert_eq!(lease("lease_seconds = 300").unwrap(), 300);
        assert_eq!(
            lease("attempt_timeout_ms = 1000\nlease_seconds = 12").unwrap(),
            12
        );
        for short_or_long in [
            "lease_seconds = 69",
            "lease_seconds = 86401",
            "attempt_timeout_ms = 1000\nlease_seconds = 11",
        ] {
            assert!(
                matches!(lease(short_or_long), Err(ConfigError::Invalid(_))),
                "{short_or_long}"
            );
        }
    }
}
