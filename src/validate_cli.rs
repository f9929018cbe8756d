//! `whg validate KIND [PATH…]`: every body the API takes, checked as the gateway would check it,
//! offline (the format's rules, and for a referral the consent it carries) or, with `--online
//! URL`, by the gateway itself for the caller a token names (its tenancy: a practice sends only
//! as itself, a test client only synthetic people). Files, directories (their `*.json`, not the
//! fixtures' `*.expected.json`) or standard input (`-`, or no path). A person reads the answer;
//! `--json` gives the OperationOutcome (or the mapped FHIR) as the API would.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};
use whg::caller::{Principal, Role};
use whg::config::Config;
use whg::fhir::{Issue, IssueType, Issues, NhsErrorCode, Severity, operation_outcome};
use whg::intake::{bars, practice_referral};

/// What a body is: the route it would be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A practice referral (`POST /api/v1/referrals`).
    Referral,
    /// A BaRS message Bundle (`POST /fhir/$process-message`).
    Message,
    /// A practice fit note (`POST /api/v1/fit-notes`).
    FitNote,
    /// A fit note as a FHIR Observation in the gateway's profile (`POST /fhir/Observation`).
    Observation,
    /// A FHIR Consent in the gateway's profile (`POST /fhir/Consent`).
    Consent,
    /// A workflow triage (`POST /api/v1/referrals/{id}/triage`).
    Triage,
    /// A first contact or appointment (`…/contacts`).
    Contact,
    /// Support given (`…/support`).
    Support,
    /// A discharge with its outcomes (`…/discharge`).
    Discharge,
    /// An adviser's letter to the practice (`…/letters`).
    Letter,
}

/// How `whg validate` was asked to run.
pub struct Options {
    pub kind: Kind,
    pub paths: Vec<PathBuf>,
    pub json: bool,
    /// Who sends it, offline (`practice:C88901`, `service:sheffield-whs`): a Consent's author, a
    /// fit-note Observation's sender.
    pub acting_as: Option<String>,
    pub online: Option<String>,
    pub token: Option<String>,
}

fn is_error(issue: &Issue) -> bool {
    matches!(issue.severity, Severity::Error | Severity::Fatal)
}

/// One body's verdict: its issues (empty when valid) and, offline, what it maps to.
struct Verdict {
    issues: Vec<Issue>,
    code: Option<NhsErrorCode>,
    /// The FHIR the body maps to (a referral's or fit note's transaction), when valid.
    mapped: Option<Value>,
    /// A note for a valid body (e.g. what an online check said).
    note: Option<String>,
}

impl Verdict {
    fn valid(&self) -> bool {
        !self.issues.iter().any(is_error)
    }

    fn invalid(issues: Vec<Issue>, code: NhsErrorCode) -> Verdict {
        Verdict {
            issues,
            code: Some(code),
            mapped: None,
            note: None,
        }
    }

    fn ok(mapped: Option<Value>, note: Option<String>) -> Verdict {
        Verdict {
            issues: Vec::new(),
            code: None,
            mapped,
            note,
        }
    }
}

/// Exit codes: 0 every body valid, 1 one or more invalid, 2 a body could not be read or checked.
pub fn run(config: &Config, options: Options) -> ExitCode {
    let inputs = match inputs(&options.paths) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("whg: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match options.online {
        Some(_) => match tokio::runtime::Runtime::new() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("whg: cannot start the runtime: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let acting_as = match options
        .acting_as
        .as_deref()
        .map(principal_named)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("whg: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut valid, mut invalid, mut unreadable) = (0, 0, 0);
    let single = inputs.len() == 1;
    for (name, read) in inputs {
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                eprintln!("whg: cannot read {name}: {e}");
                unreadable += 1;
                continue;
            }
        };
        let verdict = match (&runtime, &options.online) {
            (Some(rt), Some(url)) => {
                rt.block_on(online(url, options.token.as_deref(), options.kind, &bytes))
            }
            _ => Ok(offline(config, options.kind, acting_as.as_ref(), &bytes)),
        };
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => {
                eprintln!("whg: {name}: {e}");
                unreadable += 1;
                continue;
            }
        };
        if verdict.valid() {
            valid += 1;
        } else {
            invalid += 1;
        }
        if options.json {
            print_json(&name, &verdict, single);
        } else {
            print_human(&name, options.kind, &verdict);
        }
    }
    if !options.json && !single {
        println!(
            "{valid} valid, {invalid} invalid{}",
            if unreadable > 0 {
                format!(", {unreadable} not checked")
            } else {
                String::new()
            }
        );
    }
    if unreadable > 0 {
        ExitCode::from(2)
    } else if invalid > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `practice:C88901` → a practice principal; `service:sheffield-whs` → a service.
fn principal_named(text: &str) -> Result<Principal, String> {
    let (role, org) = text.split_once(':').ok_or_else(|| {
        format!("--as takes ROLE:ORGANISATION (e.g. practice:C88901), not '{text}'")
    })?;
    let role = match role {
        "practice" => Role::Practice,
        "service" => Role::Service,
        other => {
            return Err(format!(
                "--as: a body is sent by a practice or a service, not '{other}'"
            ));
        }
    };
    Ok(Principal::new(role, org))
}

type Input = (String, std::io::Result<Vec<u8>>);

/// The bodies a directory holds: its `*.json` files, sorted, not the fixtures' `*.expected.json`
/// (what `whg validate` reads of a directory, and `whg conformance` sends of a fixture folder).
pub fn bodies_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "json")
                && !p.to_string_lossy().ends_with(".expected.json")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The bodies named: files; directories' `*.json` files (sorted, the fixtures' `*.expected.json`
/// left out); `-` or nothing for standard input.
fn inputs(paths: &[PathBuf]) -> Result<Vec<Input>, String> {
    if paths.is_empty() || paths.iter().any(|p| p == Path::new("-")) {
        if paths.len() > 1 {
            return Err("standard input (-) is read alone, not beside other paths".into());
        }
        let mut bytes = Vec::new();
        let read = std::io::stdin().read_to_end(&mut bytes).map(|_| bytes);
        return Ok(vec![("standard input".into(), read)]);
    }
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let files = bodies_in(path)
                .map_err(|e| format!("cannot read the directory {}: {e}", path.display()))?;
            if files.is_empty() {
                return Err(format!("{} holds no .json files", path.display()));
            }
            out.extend(
                files
                    .into_iter()
                    .map(|f| (f.display().to_string(), std::fs::read(&f))),
            );
        } else {
            out.push((path.display().to_string(), std::fs::read(path)));
        }
    }
    Ok(out)
}

fn not_json(e: &serde_json::Error) -> Verdict {
    Verdict::invalid(
        vec![Issue::general(
            IssueType::Structure,
            format!("not well-formed JSON: {e}"),
        )],
        NhsErrorCode::BAD_REQUEST,
    )
}

/// The gateway's own checks, without a server: the format's rules (and for a referral, the
/// consent the payload carries; the gateway would also weigh the person's stored consents).
fn offline(config: &Config, kind: Kind, acting_as: Option<&Principal>, bytes: &[u8]) -> Verdict {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return not_json(&e),
    };
    let ctx = config.intake_now();
    let unprocessable =
        |issues: Issues| Verdict::invalid(issues.into_vec(), NhsErrorCode::UNPROCESSABLE_ENTITY);
    let today = ctx.now.date_naive();
    let issues_of = |issues: Issues| {
        if issues.is_empty() {
            Verdict::ok(None, None)
        } else {
            unprocessable(issues)
        }
    };
    match kind {
        Kind::Referral => match practice_referral(&value, &ctx) {
            Ok(s) => with_consent(
                s,
                &ctx,
                whg::intake::admission::PRACTICE_CONSENT_EXPRESSION,
                Some(whg::intake::admission::practice_criterion_expression),
            ),
            Err(i) => unprocessable(i),
        },
        Kind::Message => match bars::validate(bytes, &value, &ctx) {
            Ok(bars::BarsMessage::Referral(s)) => with_consent(
                s,
                &ctx,
                whg::intake::admission::BARS_CONSENT_EXPRESSION,
                Some(whg::intake::admission::bars_criterion_expression),
            ),
            // An amendment maps as the referral it restates; what it changes depends on the
            // stored referral.
            // An amendment is not weighed against the criteria again (the gateway does not),
            // so it gets no eligibility check here either.
            Ok(bars::BarsMessage::Amendment(a)) => with_consent(
                a.submission,
                &ctx,
                whg::intake::admission::BARS_CONSENT_EXPRESSION,
                None,
            ),
            // What a cancellation does depends on the stored referral: offline, it can only be
            // said to be well formed.
            Ok(bars::BarsMessage::Cancellation(c)) => Verdict::ok(
                None,
                Some(format!(
                    "a valid cancellation ({}) of the referral {} sent by {}",
                    c.withdrawal.status(),
                    c.referral.key.value,
                    whg::fhir::identifiers::value_part(&c.referral.practice)
                )),
            ),
            Err(bars::Rejection::Malformed(i)) => {
                Verdict::invalid(i.into_vec(), NhsErrorCode::BAD_REQUEST)
            }
            Err(bars::Rejection::Invalid(i)) => unprocessable(i),
        },
        Kind::FitNote => match whg::intake::practice_fit_note(&value, &ctx) {
            Ok((s, _)) => Verdict::ok(Some(s.transaction_bundle()), None),
            Err(i) => unprocessable(i),
        },
        Kind::Observation | Kind::Consent => {
            let Some(principal) = acting_as else {
                return Verdict::invalid(
                    vec![Issue::general(
                        IssueType::Required,
                        format!(
                            "who sends it decides what it may say: give --as ROLE:ORGANISATION (e.g. --as practice:C88901{})",
                            if kind == Kind::Consent {
                                ", or --as service:sheffield-whs"
                            } else {
                                ""
                            }
                        ),
                    )],
                    NhsErrorCode::BAD_REQUEST,
                );
            };
            let resource_type = if kind == Kind::Consent {
                "Consent"
            } else {
                "Observation"
            };
            issues_of(whg::app::validation::validate(
                config,
                principal,
                resource_type,
                &value,
                bytes,
                None,
            ))
        }
        Kind::Triage => workflow_body::<whg::workflow::action::TriageBody>(&value, today),
        Kind::Contact => workflow_body::<whg::workflow::Contact>(&value, today),
        Kind::Support => workflow_body::<whg::workflow::action::Support>(&value, today),
        Kind::Discharge => workflow_body::<whg::workflow::Discharge>(&value, today),
        Kind::Letter => match whg::app::read_body::<whg::letters::LetterBody>(&value, "a letter") {
            Ok(letter) => issues_of(letter.validate()),
            Err(issue) => unprocessable(issue.into()),
        },
    }
}

/// A workflow step's body, read and checked as the route reads and checks it (what the
/// referral's stage allows is known only when it is sent).
fn workflow_body<B>(value: &Value, today: chrono::NaiveDate) -> Verdict
where
    B: serde::de::DeserializeOwned + whg::workflow::action::IntoAction,
{
    let unprocessable =
        |issues: Issues| Verdict::invalid(issues.into_vec(), NhsErrorCode::UNPROCESSABLE_ENTITY);
    let action = match whg::app::read_body::<B>(value, B::NAME) {
        Ok(body) => match body.into_action() {
            Ok(a) => a,
            Err(issues) => return unprocessable(issues),
        },
        Err(issue) => return unprocessable(issue.into()),
    };
    let issues = action.validate(today);
    if issues.is_empty() {
        Verdict::ok(
            None,
            Some(format!(
                "valid as {}; what the referral's stage allows is checked when it is sent",
                B::NAME
            )),
        )
    } else {
        unprocessable(issues)
    }
}

/// A valid referral (or the referral a message restates), weighed against the consent it
/// carries: only that can permit it offline.
fn with_consent(
    s: whg::intake::Submission,
    ctx: &whg::intake::IntakeContext,
    consent_expression: &str,
    criterion_expression: Option<whg::intake::admission::CriterionExpression>,
) -> Verdict {
    if let Some(question) = whg::intake::admission::intake_question(&s, ctx.now) {
        let decision = whg::consent::decide(
            &whg::intake::admission::submitted_consents(&s),
            &[],
            &question,
        );
        if !decision.permitted() {
            return Verdict::invalid(
                whg::intake::admission::intake_refusal(consent_expression, &decision, true)
                    .into_vec(),
                NhsErrorCode::UNPROCESSABLE_ENTITY,
            );
        }
    }
    // The service's criteria, as far as the referral says: a criterion missed is an error
    // where the service refuses such referrals, a warning shown beside "valid" where it takes
    // them marked.
    let eligibility = criterion_expression
        .zip(s.target_service(ctx.services))
        .map(|(criterion_expression, service)| {
            whg::intake::admission::eligibility_before_sending(
                &s,
                service,
                ctx.now.date_naive(),
                criterion_expression,
            )
        })
        .map(Issues::into_vec)
        .unwrap_or_default();
    if eligibility.iter().any(is_error) {
        return Verdict::invalid(eligibility, NhsErrorCode::UNPROCESSABLE_ENTITY);
    }
    let mut verdict = Verdict::ok(Some(s.transaction_bundle()), None);
    verdict.issues = eligibility;
    verdict
}

/// The gateway's own `$validate` for this kind, as the caller the token names.
async fn online(
    base: &str,
    token: Option<&str>,
    kind: Kind,
    bytes: &[u8],
) -> Result<Verdict, String> {
    let base = url::Url::parse(base).map_err(|e| format!("--online {base}: not a URL: {e}"))?;
    // The token and the body (a real person's details, perhaps) go in the clear over http: only
    // to this machine.
    if !whg::outbound::private_in_transit(&base) {
        return Err(format!(
            "--online {base}: use https (http only to this machine): the token and the body would travel in the clear"
        ));
    }
    let (path, content_type) = match kind {
        Kind::Referral => ("api/v1/referrals/$validate", "application/json"),
        Kind::FitNote => ("api/v1/fit-notes/$validate", "application/json"),
        Kind::Message => ("fhir/Bundle/$validate", "application/fhir+json"),
        Kind::Observation => ("fhir/Observation/$validate", "application/fhir+json"),
        Kind::Consent => ("fhir/Consent/$validate", "application/fhir+json"),
        Kind::Triage | Kind::Contact | Kind::Support | Kind::Discharge | Kind::Letter => {
            return Err("workflow bodies and letters have no online check: the gateway weighs them against the referral when they are sent (offline, whg validate checks everything else)".into());
        }
    };
    let token = token.ok_or("--online needs an access token: --token TOKEN or WHG_TOKEN (e.g. from the token endpoint, or whg token --client ID)")?;
    let mut root = base.clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    let url = root.join(path).map_err(|e| e.to_string())?;
    // Never followed: a redirect would take the body, and on the same origin the token, elsewhere.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(url.clone())
        .bearer_auth(token)
        .header("content-type", content_type)
        .header("accept", "application/fhir+json")
        .body(bytes.to_vec())
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} with no JSON: {e}"))?;
    if status.as_u16() == 401 || status.as_u16() == 403 {
        return Err(format!(
            "{url} refused the token ({status}): {}",
            diagnostics(&body).join("; ")
        ));
    }
    let issues: Vec<Issue> = body["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let text = i["diagnostics"].as_str().unwrap_or_default().to_string();
            let code = IssueType::from_code(i["code"].as_str().unwrap_or_default());
            let expression = i["expression"][0].as_str();
            match (i["severity"].as_str(), expression) {
                (Some("error" | "fatal"), Some(e)) => Issue::error(code, e, text),
                (Some("error" | "fatal"), None) => Issue::general(code, text),
                _ => Issue::information(text),
            }
        })
        .collect();
    let valid = status.is_success() && !issues.iter().any(is_error);
    if valid {
        let said = issues.first().map(|i| i.diagnostics.clone());
        Ok(Verdict::ok(None, said))
    } else {
        Ok(Verdict::invalid(issues, NhsErrorCode::UNPROCESSABLE_ENTITY))
    }
}

fn diagnostics(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["diagnostics"].as_str().map(str::to_string))
        .collect()
}

/// One body, for a person: a line saying valid or not, then each problem with its field.
fn print_human(name: &str, kind: Kind, verdict: &Verdict) {
    let kind_name = format!("{kind:?}").to_lowercase();
    if verdict.valid() {
        let detail = verdict
            .note
            .clone()
            .or_else(|| {
                verdict.mapped.as_ref().map(|b| {
                    format!(
                        "maps to {} FHIR resources",
                        b["entry"].as_array().map_or(0, Vec::len)
                    )
                })
            })
            .unwrap_or_else(|| "passes the gateway's checks".into());
        println!("valid    {name}: {kind_name}, {detail}");
        for issue in &verdict.issues {
            let field = issue.expression.as_deref().unwrap_or("(the whole body)");
            println!("  warning {field}: {}", issue.diagnostics);
        }
        return;
    }
    let errors: Vec<&Issue> = verdict.issues.iter().filter(|i| is_error(i)).collect();
    println!(
        "invalid  {name}: {} problem{}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for issue in errors {
        let field = issue.expression.as_deref().unwrap_or("(the whole body)");
        println!("  {field} [{}]: {}", issue.code.as_str(), issue.diagnostics);
    }
}

/// One body as JSON: alone, the mapped FHIR or the OperationOutcome as the API would answer;
/// among several, one line each naming its file.
fn print_json(name: &str, verdict: &Verdict, single: bool) {
    // A valid body's answer is its mapped FHIR, which has no place for warnings (a service's
    // criterion the referral misses, where the service takes it marked): they go to stderr.
    if verdict.valid() {
        for issue in &verdict.issues {
            let field = issue.expression.as_deref().unwrap_or("(the whole body)");
            eprintln!("warning {name}: {field}: {}", issue.diagnostics);
        }
    }
    let document = match (&verdict.mapped, verdict.valid()) {
        (Some(mapped), true) => mapped.clone(),
        (None, true) => operation_outcome(
            &[Issue::information(
                verdict.note.clone().unwrap_or_else(|| "valid".into()),
            )],
            None::<NhsErrorCode>,
        ),
        _ => operation_outcome(&verdict.issues, verdict.code),
    };
    if single {
        println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
    } else {
        println!(
            "{}",
            json!({ "file": name, "valid": verdict.valid(), "result": document })
        );
    }
}
