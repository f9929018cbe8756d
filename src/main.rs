//! `whg`: the Work and Health Gateway command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use serde_json::Value;

use whg::config::Config;
use whg::fhir::{NhsErrorCode, operation_outcome};
use whg::intake::{IntakeContext, bars, practice_referral};

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
    /// Check a payload offline: prints the mapped FHIR, or an OperationOutcome and exits 1.
    Validate {
        #[command(subcommand)]
        what: ValidateWhat,
    },
}

#[derive(Subcommand)]
enum ValidateWhat {
    /// A practice referral (profiles/practice-referral.schema.json).
    Referral { file: PathBuf },
    /// A BaRS servicerequest-request message Bundle.
    Message { file: PathBuf },
}

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
            what: ValidateWhat::Referral { file },
        } => validate(&config, &file, Kind::Referral),
        Command::Validate {
            what: ValidateWhat::Message { file },
        } => validate(&config, &file, Kind::Message),
    }
}

fn serve(mut config: Config, listen: Option<SocketAddr>, database_url: Option<String>) -> ExitCode {
    if let Some(l) = listen {
        config.listen = l;
    }
    if let Some(url) = database_url {
        config.database_url = url;
    }
    whg::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whg: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(whg::api::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whg: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Kind {
    Referral,
    Message,
}

/// Exit codes: 0 valid, 1 invalid, 2 unreadable.
fn validate(config: &Config, file: &Path, kind: Kind) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("whg: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            let issue = whg::fhir::Issue::general(
                whg::fhir::IssueType::Structure,
                format!("the file is not well-formed JSON: {e}"),
            );
            return print_outcome(&[issue], NhsErrorCode::BAD_REQUEST);
        }
    };
    let ctx = IntakeContext::now(config);
    let result = match kind {
        Kind::Referral => practice_referral(&value, &ctx)
            .map(|s| s.transaction_bundle())
            .map_err(|i| (i, NhsErrorCode::UNPROCESSABLE_ENTITY)),
        Kind::Message => bars::validate(&bytes, &value, &ctx)
            .map(|s| s.transaction_bundle())
            .map_err(|r| match r {
                bars::Rejection::Malformed(i) => (i, NhsErrorCode::BAD_REQUEST),
                bars::Rejection::Invalid(i) => (i, NhsErrorCode::UNPROCESSABLE_ENTITY),
            }),
    };
    match result {
        Ok(bundle) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&bundle).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err((issues, code)) => print_outcome(&issues.into_vec(), code),
    }
}

fn print_outcome(issues: &[whg::fhir::Issue], code: NhsErrorCode) -> ExitCode {
    println!(
        "{}",
        serde_json::to_string_pretty(&operation_outcome(issues, Some(code))).unwrap_or_default()
    );
    ExitCode::from(1)
}
