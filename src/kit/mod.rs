//! `whg conformance`: an Inferno-style conformance run, for an integrator's first day and for CI.
//!
//! `--target gateway` drives a gateway (this one, or another deployment of it) as a practice
//! system would, over HTTP only: discovery, SMART Backend Services, every fixture with its
//! expected result, the BaRS scenarios, the interactions the CapabilityStatement declares, the
//! error states and the test tenant's triggers. `--target receiver` plays the gateway towards
//! the integrator's own practice system: its golden letters, and what a receiver must refuse.
//!
//! Each check names the requirement it proves (a document and section), so a failure says what
//! is broken and where it is specified. Results go to the screen (a progress bar, then a line
//! per failure and a summary), and optionally to JUnit XML (CI systems read it) and to one
//! self-contained HTML page. The exit code is 0 only if nothing failed.

mod gateway;
mod golden;
mod receiver;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A Work and Health Gateway, driven as a practice system drives it.
    Gateway,
    /// A practice system's FHIR endpoint, sent what the gateway sends.
    Receiver,
}

/// A receiver reached over MESH: its mailbox, the gateway's own to send from, and how long to
/// wait for each acknowledgement.
pub struct MeshTarget {
    pub to: String,
    pub from: Option<whg::config::MeshConfig>,
    pub ack_wait: Duration,
}

pub struct Options {
    pub target: Target,
    pub url: String,
    pub mesh: Option<MeshTarget>,
    /// A bearer token for a receiver behind OAuth2 (receiver target).
    pub receiver_token: Option<String>,
    /// A registered test-tenant practice client (gateway target).
    pub client: Option<String>,
    pub key: Option<PathBuf>,
    /// The client's practice (ODS code): the fixtures are sent as it.
    pub org: Option<String>,
    pub fixtures: PathBuf,
    pub junit: Option<PathBuf>,
    pub html: Option<PathBuf>,
}

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// Not run, and why (what the check needs that this run does not have).
    Skipped(String),
}

/// One check: its id, what it does, the requirement it proves, and how it ended.
#[derive(Debug, Clone)]
pub struct Check {
    pub id: String,
    pub group: &'static str,
    pub name: String,
    /// Where the requirement is written (a document and section, or a standard).
    pub requirement: String,
    pub outcome: Outcome,
    pub took: Duration,
}

/// The checks as they run, with the progress bar.
pub struct Run {
    pub checks: Vec<Check>,
    bar: indicatif::ProgressBar,
}

impl Run {
    fn new() -> Run {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} checks, {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Run {
            checks: Vec::new(),
            bar,
        }
    }

    /// Runs `check` and records it under `id` (`group`), proving `requirement`.
    pub async fn check<F>(
        &mut self,
        id: &str,
        group: &'static str,
        name: impl Into<String>,
        requirement: &str,
        check: F,
    ) where
        F: std::future::Future<Output = Result<(), String>>,
    {
        let name = name.into();
        self.bar.set_message(format!("{id} {name}"));
        let started = Instant::now();
        let outcome = match check.await {
            Ok(()) => Outcome::Passed,
            Err(why) if why.starts_with(SKIP) => Outcome::Skipped(why[SKIP.len()..].to_string()),
            Err(why) => Outcome::Failed(why),
        };
        if let Outcome::Failed(why) = &outcome {
            self.bar.println(format!("FAIL {id} {name}: {why}"));
        }
        self.bar.inc(1);
        self.checks.push(Check {
            id: id.to_string(),
            group,
            name,
            requirement: requirement.to_string(),
            outcome,
            took: started.elapsed(),
        });
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.checks.iter().filter(|c| f(&c.outcome)).count()
    }
}

/// What a check returns to be recorded as skipped rather than failed.
pub const SKIP: &str = "\u{0}skip:";

pub fn skip(why: impl std::fmt::Display) -> String {
    format!("{SKIP}{why}")
}

pub fn run(options: Options) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whg: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let url = match (&options.mesh, url::Url::parse(&options.url)) {
        (Some(mesh), _) if options.target == Target::Receiver => format!("mesh:{}", mesh.to),
        (_, Ok(u)) if u.scheme() == "http" || u.scheme() == "https" => {
            u.as_str().trim_end_matches('/').to_string()
        }
        _ => {
            eprintln!(
                "whg: --url {:?}: give the base URL, e.g. http://127.0.0.1:8080 (or, for a receiver over MESH, --mesh-to MAILBOX)",
                options.url
            );
            return ExitCode::from(2);
        }
    };
    let started = chrono::Utc::now();
    let mut run = Run::new();
    let setup = runtime.block_on(async {
        match options.target {
            Target::Gateway => gateway::run(&mut run, &url, &options).await,
            Target::Receiver => match &options.mesh {
                Some(mesh) => receiver::run_mesh(&mut run, mesh, &options).await,
                None => receiver::run(&mut run, &url, &options).await,
            },
        }
    });
    run.bar.finish_and_clear();
    if let Err(e) = setup {
        eprintln!("whg: {e}");
        return ExitCode::from(2);
    }
    let (passed, failed, skipped) = (
        run.count(|o| *o == Outcome::Passed),
        run.count(|o| matches!(o, Outcome::Failed(_))),
        run.count(|o| matches!(o, Outcome::Skipped(_))),
    );
    for check in &run.checks {
        if let Outcome::Failed(why) = &check.outcome {
            println!(
                "FAIL {} {}: {why}\n     requirement: {}",
                check.id, check.name, check.requirement
            );
        }
    }
    let target = format!("{:?}", options.target).to_lowercase();
    println!("conformance ({target} {url}): {passed} passed, {failed} failed, {skipped} skipped");
    let title = format!("whg conformance --target {target} {url}");
    for (path, text) in [
        (
            options.junit.as_ref(),
            options
                .junit
                .as_ref()
                .map(|_| report::junit(&title, &run.checks)),
        ),
        (
            options.html.as_ref(),
            options
                .html
                .as_ref()
                .map(|_| report::html(&title, started, &run.checks)),
        ),
    ] {
        if let (Some(path), Some(text)) = (path, text)
            && let Err(e) = std::fs::write(path, text)
        {
            eprintln!("whg: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
