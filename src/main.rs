//! `whg`: the Work and Health Gateway command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

use whg::config::Config;

// Intake builds and drops many small JSON trees per request; glibc malloc spent about 30% of
// the server's CPU under load on fragmentation bookkeeping. mimalloc handles that pattern well.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "whg",
    version,
    about = "Work and Health Gateway: FHIR R4 referrals for UK work-and-health services"
)]
struct Cli {
    /// TOML file merged over the embedded defaults.
    #[arg(long, global = true, env = "WHG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
        #[arg(long, env = "WHG_LISTEN")]
        listen: Option<SocketAddr>,
        /// Database URL, e.g. sqlite://data/whg.db.
        #[arg(long, env = "WHG_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Check bodies as the gateway would: every problem with its field, for a person (or the
    /// API's JSON with --json). Offline, or by the gateway itself with --online. Exits 0 when
    /// every body is valid, 1 when one is not, 2 when one cannot be read or checked.
    Validate {
        /// What the bodies are (the route they would be sent to).
        #[arg(value_enum)]
        kind: validate_cli::Kind,
        /// Files, directories (their .json files, not .expected.json) or - for standard input
        /// (also when none is given).
        paths: Vec<PathBuf>,
        /// Print the OperationOutcome (or, offline, the mapped FHIR) as JSON: one document for
        /// one body, one line per body for several.
        #[arg(long)]
        json: bool,
        /// Who sends it, offline, for a Consent or a fit-note Observation: practice:ODS or
        /// service:ID.
        #[arg(long = "as", value_name = "ROLE:ORG")]
        acting_as: Option<String>,
        /// Ask the gateway at this URL (its $validate, as the token's caller: tenancy included).
        #[arg(long, value_name = "URL")]
        online: Option<String>,
        /// The access token for --online.
        #[arg(long, env = "WHG_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Write the pseudonymised evaluation export (NDJSON, one referral per line) for people whose
    /// consent covers evaluation.
    Export {
        /// File to write ("-" for standard output).
        #[arg(long)]
        out: PathBuf,
        /// Database URL, e.g. sqlite://data/whg.db.
        #[arg(long, env = "WHG_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Take in a service's or a region's history: one record per line (NDJSON) in the practice
    /// format, checked and stored as the API would (validation, consent, write-once ids, audit).
    /// Refused lines go to a report with their OperationOutcome and the rest are stored; the
    /// run saves a checkpoint and, run again after being stopped, resumes from it without
    /// storing anything twice. Exits 0 when every line was stored (or already was), 1 when a
    /// line was refused, 2 when the import could not finish (run it again to resume).
    Import {
        /// What the file holds.
        #[arg(value_enum)]
        kind: whg::import::Kind,
        /// The NDJSON file (or, with --columns, the CSV file).
        file: PathBuf,
        /// The file is CSV with a header row (a spreadsheet's export), each row made a record by
        /// this column-mapping file (TOML; see docs/import.md).
        #[arg(long, value_name = "MAPPING.toml")]
        columns: Option<PathBuf>,
        /// Where refused lines go (default: FILE.rejected.ndjson), owner-only.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Where progress is saved (default: FILE.checkpoint).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Records between checkpoints, at most (one is also saved each second).
        #[arg(long, default_value_t = 2_000)]
        checkpoint_every: u64,
        /// Database URL, e.g. sqlite://data/whg.db.
        #[arg(long, env = "WHG_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Print a short-lived access token signed with the gateway's key (for local use and
    /// scripts; the key file must be readable).
    Token {
        /// A registered client (`whg clients add`): the token carries its organisation, role and
        /// scopes, and stops working if the client is revoked.
        #[arg(long, conflicts_with_all = ["role", "org"])]
        client: Option<String>,
        /// The organisation's role (for an unregistered, local token).
        #[arg(long, value_enum, required_unless_present = "client")]
        role: Option<whg::auth::Role>,
        /// The organisation: an ODS code for a practice, a configured service id for a service.
        #[arg(long, required_unless_present = "client")]
        org: Option<String>,
        /// Scopes (repeatable); the role's defaults when absent.
        #[arg(long)]
        scope: Vec<String>,
        /// Lifetime in seconds; the configured token_ttl_secs when absent.
        #[arg(long)]
        ttl: Option<u64>,
        /// Database URL (for --client), e.g. sqlite://data/whg.db.
        #[arg(long, env = "WHG_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Write a consistent copy of the database to a new file while the gateway runs (SQLite:
    /// `VACUUM INTO`; PostgreSQL: `pg_dump --format=custom`). See docs/operations-backup.md.
    Backup {
        /// The file to write (owner-only); it must not exist.
        #[arg(long)]
        to: PathBuf,
        /// Database URL, e.g. sqlite://data/whg.db or postgres://whg@db.internal:5432/whg.
        #[arg(long, env = "WHG_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Bring the database's schema up to this version's and exit (what `serve` does at start,
    /// as a step of its own: a Kubernetes Job before a rollout, say). Safe beside running
    /// instances and another `migrate`: PostgreSQL migrations run under an advisory lock.
    Migrate {
        /// Database URL, e.g. sqlite://data/whg.db or postgres://whg@db.internal:5432/whg.
        #[arg(long, env = "WHG_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Create the gateway's keys where the configuration names them (the token-signing key,
    /// the pseudonym key, the self-referral form's key, and the sign-in session key when
    /// `[sign_in]` is set), owner-only;
    /// keys already there are checked and kept. For instances that must share keys (each
    /// would otherwise create its own on first start): make them once, then give every
    /// instance the same files (a Kubernetes Secret, say).
    Keys,
    /// Ask a gateway's health endpoint and exit 0 if it answers 2xx within 5 s, 1 otherwise:
    /// a container's health check, in images that have no curl.
    Probe {
        /// The URL to ask.
        #[arg(default_value = "http://127.0.0.1:8080/health/ready")]
        url: String,
    },
    /// Put a backup back as the database. Stop every gateway using the database first.
    Restore {
        /// A file `whg backup` wrote.
        #[arg(long)]
        from: PathBuf,
        /// Replace a database that holds data (without it, only an empty or missing one).
        #[arg(long)]
        force: bool,
        /// Database URL, e.g. sqlite://data/whg.db or postgres://whg@db.internal:5432/whg.
        #[arg(long, env = "WHG_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// An Inferno-style conformance run: a gateway driven as a practice system drives it
    /// (discovery, SMART Backend Services, every fixture, the BaRS scenarios, the declared
    /// interactions, error states, test triggers), or a practice system's receiver sent what the
    /// gateway sends. Exits 1 if a check fails.
    Conformance {
        #[arg(long, value_enum)]
        target: kit::Target,
        /// The gateway's base URL, or the receiver's FHIR base (where $process-message is).
        #[arg(long, required_unless_present = "mesh_to")]
        url: Option<String>,
        /// The receiver over MESH instead: the practice system's mailbox, sent to from the
        /// gateway's [mesh] mailbox (--config), its ITK3 acknowledgements read back.
        #[arg(long)]
        mesh_to: Option<String>,
        /// How long to wait for each MESH acknowledgement, in seconds.
        #[arg(long, default_value_t = 120)]
        ack_wait_secs: u64,
        /// A bearer token for a receiver behind OAuth2.
        #[arg(long, env = "WHG_RECEIVER_TOKEN", hide_env_values = true)]
        receiver_token: Option<String>,
        /// A registered test-tenant practice client (gateway target).
        #[arg(long)]
        client: Option<String>,
        /// The client's private key (from `whg clients keygen`, or RSA).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The client's practice (ODS code): the fixtures are sent as it.
        #[arg(long)]
        org: Option<String>,
        /// The fixtures directory.
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
        /// Write the results as JUnit XML.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write the results as one self-contained HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// A GP practice system in a box: takes the gateway's letters at FHIR $process-message and
    /// answers as a practice system would (the test tenant's practices deliver to it by default).
    /// `GET /received` lists what arrived; `PUT /mode` switches how it answers.
    MockPractice {
        /// Address to listen on (the embedded defaults' [test_tenant] practice_endpoint).
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// accept: 200 with a BaRS response message; reject: 422; down: 503 with Retry-After;
        /// slow: accept after --delay-ms.
        #[arg(long, value_enum, default_value = "accept")]
        mode: mock_practice::Mode,
        /// How long `slow` waits before answering, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        delay_ms: u64,
        /// Also take letters over MESH: a TOML file whose [mesh] table names the practice's
        /// mailbox (the keys of the gateway's own [mesh]); ITK3 acknowledgements go back.
        #[arg(long)]
        mesh: Option<PathBuf>,
    },
    /// A development OpenID Connect provider for the dashboard's sign-in, on this host only: a
    /// page to choose a commissioner or service manager of the configured services, and ID
    /// tokens for the gateway (PKCE S256 checked). Point `[sign_in] issuer` at it.
    DevIssuer {
        /// Address to listen on (loopback only).
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: std::net::SocketAddr,
        /// The client id the gateway signs in with (its `[sign_in] client_id`).
        #[arg(long, default_value = "whg-dashboard")]
        client_id: String,
    },
    /// Register, list and revoke the client systems that may get access tokens.
    Clients {
        #[command(subcommand)]
        what: ClientsWhat,
        /// Database URL, e.g. sqlite://data/whg.db.
        #[arg(long, env = "WHG_DATABASE_URL", global = true)]
        database_url: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Tenant {
    Live,
    Test,
}

#[derive(Subcommand)]
enum ClientsWhat {
    /// Register a client with its organisation, role, scopes and public key(s).
    Add {
        /// The client id: its assertions' iss and sub.
        id: String,
        #[arg(long, value_enum)]
        role: whg::auth::Role,
        /// An ODS code for a practice, a configured service id for a service.
        #[arg(long)]
        org: String,
        /// Scopes (repeatable); the role's defaults when absent.
        #[arg(long)]
        scope: Vec<String>,
        /// A PEM public key (RSA for RS384 or RS512, P-384 EC for ES384).
        #[arg(long, group = "keys")]
        public_key: Option<PathBuf>,
        /// A JWK Set file.
        #[arg(long, group = "keys")]
        jwks: Option<PathBuf>,
        /// A URL the gateway fetches the client's JWK Set from (kept for `[outbound]
        /// jwks_cache_secs`).
        #[arg(long, group = "keys")]
        jwks_url: Option<String>,
        /// `test` for an integrator's client: it acts only for the test organisations and sends
        /// only synthetic (999-range) NHS numbers.
        #[arg(long, value_enum, default_value = "live")]
        tenant: Tenant,
    },
    /// Every registered client, one JSON object per line.
    List,
    /// Revoke a client: no new tokens, and its current ones stop working.
    Revoke { id: String },
    /// Rotate a client's keys: add the new key, let the client sign with it (its assertions'
    /// `kid` header names it), retire the old one.
    Keys {
        #[command(subcommand)]
        what: KeysWhat,
    },
    /// Make an ES384 key pair for a client: the private key to FILE (owner-only), the public
    /// JWK Set to standard output (give it to `clients add --jwks`).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a signed client assertion (valid five minutes) for the token endpoint.
    Assertion {
        #[arg(long)]
        client: String,
        /// The client's private key (from `clients keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The token endpoint, e.g. http://127.0.0.1:8080/oauth2/token.
        #[arg(long)]
        token_url: String,
    },
}

#[derive(Subcommand)]
enum KeysWhat {
    /// The kids of a client's registered keys, one per line.
    List { id: String },
    /// Register more keys for a client, beside the ones it has (each needs its own kid; a key
    /// without one is given its RFC 7638 thumbprint).
    Add {
        id: String,
        /// A PEM public key (RSA for RS384 or RS512, P-384 EC for ES384).
        #[arg(long, group = "keys", required = true)]
        public_key: Option<PathBuf>,
        /// A JWK Set file (`whg clients keygen` writes one).
        #[arg(long, group = "keys", required = true)]
        jwks: Option<PathBuf>,
    },
    /// Retire a client's key: assertions signed with it are refused from now on. The last key
    /// cannot be retired (revoke the client instead).
    Retire {
        id: String,
        #[arg(long)]
        kid: String,
    },
}

mod clients;
mod dev_issuer;
mod kit;
mod local_server;
mod mock_practice;
mod validate_cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("whg: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve {
            listen,
            database_url,
        } => serve(config, listen, database_url),
        Command::Validate {
            kind,
            paths,
            json,
            acting_as,
            online,
            token,
        } => validate_cli::run(
            &config,
            validate_cli::Options {
                kind,
                paths,
                json,
                acting_as,
                online,
                token,
            },
        ),
        Command::Export { out, database_url } => export(config, &out, database_url),
        Command::Import {
            kind,
            file,
            columns,
            report,
            checkpoint,
            checkpoint_every,
            database_url,
        } => {
            let mut options = whg::import::Options::beside(kind, file);
            match columns.as_deref().map(read_column_map).transpose() {
                Ok(Some(map)) => options.format = whg::import::Format::Csv(map),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("whg: {e}");
                    return ExitCode::from(2);
                }
            }
            options.report = report.unwrap_or(options.report);
            options.checkpoint = checkpoint.unwrap_or(options.checkpoint);
            options.checkpoint_every = checkpoint_every;
            import(config, &options, database_url)
        }
        Command::Token {
            client,
            role,
            org,
            scope,
            ttl,
            database_url,
        } => token(&config, client, role.zip(org), scope, ttl, database_url),
        Command::Clients { what, database_url } => clients::run(config, what, database_url),
        Command::Conformance {
            target,
            url,
            mesh_to,
            ack_wait_secs,
            receiver_token,
            client,
            key,
            org,
            fixtures,
            junit,
            html,
        } => kit::run(kit::Options {
            target,
            url: url.unwrap_or_default(),
            mesh: mesh_to.map(|to| kit::MeshTarget {
                to,
                from: config.mesh.clone(),
                ack_wait: std::time::Duration::from_secs(ack_wait_secs),
            }),
            receiver_token,
            client,
            key,
            org,
            fixtures,
            junit,
            html,
        }),
        Command::MockPractice {
            listen,
            mode,
            delay_ms,
            mesh,
        } => mock_practice::run(listen, mode, delay_ms, mesh),
        Command::DevIssuer { listen, client_id } => dev_issuer::run(&config, listen, client_id),
        Command::Migrate { database_url } => migrate(config, database_url),
        Command::Probe { url } => probe(&url),
        Command::Keys => keys(&config),
        Command::Backup { to, database_url } => {
            backup_or_restore(&config, database_url, BackupStep::Backup { to })
        }
        Command::Restore {
            from,
            force,
            database_url,
        } => backup_or_restore(&config, database_url, BackupStep::Restore { from, force }),
    }
}

fn migrate(mut config: Config, database_url: Option<String>) -> ExitCode {
    if let Some(url) = database_url {
        config.database_url = url;
    }
    let migrated = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            runtime.block_on(async {
                let store = whg::store::open(&config).await.map_err(|e| e.to_string())?;
                store.close().await;
                Ok::<_, String>(())
            })
        });
    match migrated {
        Ok(()) => {
            println!("whg: the database's schema is up to date");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("whg: cannot migrate the database: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keys(config: &Config) -> ExitCode {
    let mut made = vec![
        whg::auth::SigningKey::load_or_create(&config.auth.signing_key)
            .map(drop)
            .map_err(|e| e.to_string()),
        whg::export::PseudonymKey::load_or_create(&config.consent.pseudonym_key)
            .map(drop)
            .map_err(|e| e.to_string()),
    ];
    // Every instance behind one address takes the forms any of them drew.
    made.push(
        whg::secret_file::load_or_create_key(&config.self_referral.form_key)
            .map(drop)
            .map_err(|e| format!("{}: {e}", config.self_referral.form_key.display())),
    );
    if let Some(sign_in) = &config.sign_in {
        made.push(
            whg::secret_file::load_or_create_key(&sign_in.session_key)
                .map(drop)
                .map_err(|e| format!("{}: {e}", sign_in.session_key.display())),
        );
    }
    let mut status = ExitCode::SUCCESS;
    for result in made {
        if let Err(e) = result {
            eprintln!("whg: {e}");
            status = ExitCode::FAILURE;
        }
    }
    status
}

fn probe(url: &str) -> ExitCode {
    let answered = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            runtime.block_on(async {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| e.to_string())?;
                let response = client.get(url).send().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(response.status())
            })
        });
    match answered {
        Ok(status) if status.is_success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("whg: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("whg: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

enum BackupStep {
    Backup { to: PathBuf },
    Restore { from: PathBuf, force: bool },
}

/// Exit codes: 0 done, 1 failed, 2 refused (it would have overwritten something, or the URL or
/// file is not one it can use).
fn backup_or_restore(config: &Config, database_url: Option<String>, step: BackupStep) -> ExitCode {
    let url = database_url.unwrap_or_else(|| config.database_url.clone());
    let database = match whg::backup::Database::from_url(&url) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("whg: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whg: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &step {
        BackupStep::Backup { to } => runtime.block_on(whg::backup::backup(&database, to)),
        BackupStep::Restore { from, force } => {
            runtime.block_on(whg::backup::restore(&database, from, *force))
        }
    };
    let what = database.describe();
    match (result, step) {
        (Ok(done), BackupStep::Backup { .. }) => {
            let file = done.file.display();
            eprintln!("whg: backed up {what} to {file} ({} bytes)", done.bytes);
            ExitCode::SUCCESS
        }
        (Ok(done), BackupStep::Restore { .. }) => {
            let file = done.file.display();
            eprintln!("whg: restored {what} from {file} ({} bytes)", done.bytes);
            ExitCode::SUCCESS
        }
        (Err(e), step) => {
            let noun = match step {
                BackupStep::Backup { .. } => "backup",
                BackupStep::Restore { .. } => "restore",
            };
            eprintln!("whg: {noun} failed: {e}");
            if e.is_refusal() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn export(mut config: Config, out: &Path, database_url: Option<String>) -> ExitCode {
    if let Some(url) = database_url {
        config.database_url = url;
    }
    hide_panic_messages(panic_on_stderr);
    let key = match whg::export::PseudonymKey::load_or_create(&config.consent.pseudonym_key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("whg: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whg: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let store = whg::store::open(&config).await?;
        let mut buffer = Vec::new();
        let summary =
            whg::export::evaluation_export(&*store, &key, &mut buffer, chrono::Utc::now()).await;
        store.close().await;
        let summary = summary?;
        if out.as_os_str() == "-" {
            std::io::Write::write_all(&mut std::io::stdout(), &buffer)?;
        } else {
            // Pseudonymised, but still personal data: owner-only whatever the umask.
            whg::secret_file::write_private(out, &buffer)?;
        }
        Ok::<_, whg::export::ExportError>(summary)
    });
    match result {
        Ok(s) => {
            eprintln!(
                "whg: exported {} referrals of {} people; {} people left out (no evaluation consent)",
                s.referrals, s.people, s.withheld
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("whg: export failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A panic is a bug; its message may quote what was being handled (a postcode sliced, a name
/// parsed), so only where it happened is said (by `report`), never the message itself.
fn hide_panic_messages(report: impl Fn(&str) + Send + Sync + 'static) {
    std::panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        report(&at);
    }));
}

/// A column-mapping file for `whg import --columns`.
fn read_column_map(path: &Path) -> Result<whg::import::columns::ColumnMap, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{} is not a column mapping: {e}", path.display()))
}

/// What a command run by a person says of a panic.
fn panic_on_stderr(at: &str) {
    eprintln!("whg: a bug at {at} (its message is not shown: it may hold personal data)");
}

fn import(
    mut config: Config,
    options: &whg::import::Options,
    database_url: Option<String>,
) -> ExitCode {
    if let Some(url) = database_url {
        config.database_url = url;
    }
    hide_panic_messages(panic_on_stderr);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whg: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Drawn on standard error only when it is a terminal; counts, never a line's content.
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {percent:>3}% {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("the template is valid"),
    );
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        let store = match whg::store::open(&config).await {
            Ok(s) => s,
            Err(e) => return Err(whg::import::ImportError::Store(e)),
        };
        let summary = whg::import::run(&*store, &config, options, &bar).await;
        store.close().await;
        summary
    });
    bar.finish_and_clear();
    match result {
        Ok(s) => {
            let seconds = started.elapsed().as_secs_f64();
            if let Some(line) = s.resumed_after {
                eprintln!("whg: resumed after line {line}");
            }
            eprintln!(
                "whg: import of {} finished: {} ({} lines this run in {seconds:.1} s, {:.0} lines/s)",
                options.kind.as_str(),
                whg::import::describe(&s.counts),
                s.this_run,
                s.this_run as f64 / seconds.max(1e-9),
            );
            if s.counts.rejected > 0 {
                eprintln!("whg: refused lines and why: {}", options.report.display());
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("whg: import stopped: {e}");
            ExitCode::from(2)
        }
    }
}

fn token(
    config: &Config,
    client: Option<String>,
    local: Option<(whg::auth::Role, String)>,
    scopes: Vec<String>,
    ttl: Option<u64>,
    database_url: Option<String>,
) -> ExitCode {
    let key = match whg::auth::SigningKey::load_or_create(&config.auth.signing_key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("whg: {e}");
            return ExitCode::from(2);
        }
    };
    let mut principal = match (client, local) {
        (Some(id), _) => match clients::registered(config, &id, database_url) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("whg: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some((role, org))) => whg::auth::Principal::new(role, &org),
        (None, None) => unreachable!("clap requires --client or --role and --org"),
    };
    if !scopes.is_empty() {
        principal.scopes = scopes;
    }
    let ttl = std::time::Duration::from_secs(ttl.unwrap_or(config.auth.token_ttl_secs));
    println!(
        "{}",
        whg::auth::TokenIssuer::new(key, &config.auth).issue(&principal, ttl)
    );
    ExitCode::SUCCESS
}

fn serve(mut config: Config, listen: Option<SocketAddr>, database_url: Option<String>) -> ExitCode {
    if let Some(l) = listen {
        config.listen = l;
    }
    if let Some(url) = database_url {
        config.database_url = url;
    }
    hide_panic_messages(|at| {
        tracing::error!(location = %at, "a bug: the gateway panicked (its message is not logged: it may hold personal data)");
    });
    // Made before the runtime: the exporters' HTTP clients run on threads of their own. Kept
    // until the gateway has stopped, then flushed.
    let mut telemetry = match whg::telemetry::init(&config.log, &config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("whg: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whg: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(whg::api::serve(config));
    drop(runtime);
    telemetry.shutdown();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whg: {e}");
            ExitCode::FAILURE
        }
    }
}
