//! `whg import`: a service's or a region's history, one record per line (NDJSON in the practice
//! formats), taken in by the same use cases as the API — the same validation, consent and
//! eligibility, the same write-once keys, the same audit — so an imported record is exactly what
//! the API would have stored. Each line stands alone: a refused one is written to the report with
//! its OperationOutcome and the rest go on. The run saves a [`checkpoint`] as it goes and resumes
//! from it after being killed, without storing anything twice.
//!
//! The operator who runs it holds the database (as for `whg export`), so each line is sent as
//! the practice it names; the audit trail records the sender as the `whg-import` client.

pub mod checkpoint;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app::submissions::SubmitError;
use crate::app::{Caller, Return};
use crate::caller::{Principal, Role};
use crate::config::Config;
use crate::fhir::{Issue, IssueType, Issues, systems};
use crate::store::{Store, StoreError};
use checkpoint::{Checkpoint, Counts, FileIdentity, HEAD_BYTES};

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Fit notes in the practice format (`POST /api/v1/fit-notes`), one per line.
    FitNotes,
    /// Referrals in the practice format (`POST /api/v1/referrals`), one per line.
    Referrals,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::FitNotes => "fit-notes",
            Kind::Referrals => "referrals",
        }
    }
}

/// How to run one import.
#[derive(Debug, Clone)]
pub struct Options {
    pub kind: Kind,
    pub file: PathBuf,
    /// Where refused lines go, one `{"line": n, "outcome": OperationOutcome}` per line.
    pub report: PathBuf,
    /// Where progress is saved; removed when the run reaches the end of the file.
    pub checkpoint: PathBuf,
    /// Lines in flight at once (validated and mapped while earlier ones are written).
    pub concurrency: usize,
}

impl Options {
    /// The defaults beside the file: `FILE.rejected.ndjson` and `FILE.checkpoint`.
    pub fn beside(kind: Kind, file: PathBuf) -> Options {
        let with = |suffix: &str| {
            let mut name = file.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Options {
            kind,
            report: with(".rejected.ndjson"),
            checkpoint: with(".checkpoint"),
            file,
            concurrency: 8,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Over the whole import, earlier runs it resumed included.
    pub counts: Counts,
    /// The line it resumed after, when it resumed.
    pub resumed_after: Option<u64>,
    /// Lines this run settled.
    pub this_run: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}", path = .0.display(), source = .1)]
    Read(PathBuf, std::io::Error),
    #[error("cannot write {path}: {source}", path = .0.display(), source = .1)]
    Write(PathBuf, std::io::Error),
    #[error("checkpoint {path} is unreadable ({why}): delete it to start the import again", path = .0.display(), why = .1)]
    BadCheckpoint(PathBuf, String),
    #[error("{why}: delete {path} to start the import again", path = .0.display(), why = .1)]
    CheckpointMismatch(PathBuf, checkpoint::Mismatch),
    /// The store cannot take records now: the run stops at its last checkpoint, to be resumed.
    #[error(
        "the store failed ({0}); the import stopped and resumes from its checkpoint when run again"
    )]
    Store(StoreError),
}

/// A line taken from the file.
struct Line {
    /// 1-based.
    number: u64,
    /// Byte offset just after it.
    end: u64,
    text: Result<String, Issue>,
}

/// What became of one line.
enum Settled {
    Blank,
    Imported,
    AlreadyStored,
    Rejected(Value),
}

/// How often progress is saved: whichever comes first.
const CHECKPOINT_LINES: u64 = 2_000;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Imports `options.file` into `store`, reporting progress on `bar` (its length is set to the
/// file's size in bytes).
pub async fn run(
    store: &dyn Store,
    config: &Config,
    options: &Options,
    bar: &indicatif::ProgressBar,
) -> Result<Summary, ImportError> {
    let file_path = &options.file;
    let read_err = |e| ImportError::Read(file_path.clone(), e);
    let mut file = std::fs::File::open(file_path).map_err(read_err)?;
    let identity = identify(&mut file).map_err(read_err)?;
    let saved = read_checkpoint(&options.checkpoint)?;
    let start = checkpoint::start(saved.as_ref(), options.kind.as_str(), &identity)
        .map_err(|m| ImportError::CheckpointMismatch(options.checkpoint.clone(), m))?;

    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e| ImportError::Write(path, e)
    };
    // Personal data (what was refused, and why): owner-only, as the export is.
    let mut report =
        crate::secret_file::open_private(&options.report).map_err(write_err(&options.report))?;
    report
        .set_len(start.report_len)
        .and_then(|()| report.seek(SeekFrom::Start(start.report_len)).map(|_| ()))
        .map_err(write_err(&options.report))?;
    let mut report = std::io::BufWriter::new(report);
    let mut report_len = start.report_len;

    file.seek(SeekFrom::Start(start.offset)).map_err(read_err)?;
    let lines = LineReader {
        reader: BufReader::with_capacity(256 * 1024, file),
        number: start.line,
        offset: start.offset,
        max_bytes: config.limits.max_body_bytes,
    };
    bar.set_length(identity.len);
    bar.set_position(start.offset);

    let kind = options.kind;
    let depth = config.limits.max_json_depth;
    let mut settled = futures_util::stream::iter(lines)
        .map(|line| async move {
            let line = line?;
            let outcome = match line.text {
                Ok(text) => settle(store, config, kind, text.as_str(), depth).await?,
                Err(issue) => Settled::Rejected(outcome_of(&issue.into())),
            };
            Ok::<_, LineError>((line.number, line.end, outcome))
        })
        .buffered(options.concurrency.max(1));

    let mut counts = start.counts;
    let (mut line_no, mut offset) = (start.line, start.offset);
    let mut since_saved = (0u64, Instant::now());
    let mut this_run = 0u64;
    let save = |report: &mut std::io::BufWriter<std::fs::File>,
                line: u64,
                offset: u64,
                counts: Counts,
                report_len: u64| {
        // The report's lines reach the disk before the checkpoint that counts them.
        report
            .flush()
            .and_then(|()| report.get_ref().sync_data())
            .map_err(write_err(&options.report))?;
        let checkpoint = Checkpoint {
            kind: kind.as_str().to_string(),
            head_sha256: identity.head_sha256.clone(),
            offset,
            line,
            counts,
            report_len,
        };
        write_checkpoint(&options.checkpoint, &checkpoint)
    };
    while let Some(next) = settled.next().await {
        let (number, end, outcome) = match next {
            Ok(done) => done,
            Err(LineError::Read(e)) => {
                save(&mut report, line_no, offset, counts, report_len)?;
                return Err(read_err(e));
            }
            Err(LineError::Store(e)) => {
                save(&mut report, line_no, offset, counts, report_len)?;
                return Err(ImportError::Store(e));
            }
        };
        match outcome {
            Settled::Blank => {}
            Settled::Imported => counts.imported += 1,
            Settled::AlreadyStored => counts.already_stored += 1,
            Settled::Rejected(outcome) => {
                counts.rejected += 1;
                let mut row = serde_json::to_vec(&json!({ "line": number, "outcome": outcome }))
                    .expect("a JSON value serialises");
                row.push(b'\n');
                report.write_all(&row).map_err(write_err(&options.report))?;
                report_len += row.len() as u64;
            }
        }
        (line_no, offset) = (number, end);
        this_run += 1;
        since_saved.0 += 1;
        bar.set_position(end);
        if since_saved.0 >= CHECKPOINT_LINES || since_saved.1.elapsed() >= CHECKPOINT_EVERY {
            save(&mut report, line_no, offset, counts, report_len)?;
            bar.set_message(describe(&counts));
            since_saved = (0, Instant::now());
        }
    }
    report
        .flush()
        .and_then(|()| report.get_ref().sync_data())
        .map_err(write_err(&options.report))?;
    // The end of the file: nothing to resume. A later run over the same file sends every line
    // again and finds each one stored.
    match std::fs::remove_file(&options.checkpoint) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ImportError::Write(options.checkpoint.clone(), e)),
    }
    bar.set_message(describe(&counts));
    Ok(Summary {
        counts,
        resumed_after: start.resumed.then_some(start.line),
        this_run,
    })
}

/// The counts in words, for the progress bar and the summary.
pub fn describe(counts: &Counts) -> String {
    format!(
        "{} imported, {} already stored, {} rejected",
        counts.imported, counts.already_stored, counts.rejected
    )
}

/// Why a line could not be settled: the run stops.
enum LineError {
    Read(std::io::Error),
    Store(StoreError),
}

impl From<std::io::Error> for LineError {
    fn from(e: std::io::Error) -> Self {
        LineError::Read(e)
    }
}

/// One line through its use case, as the practice it names.
async fn settle(
    store: &dyn Store,
    config: &Config,
    kind: Kind,
    text: &str,
    depth: usize,
) -> Result<Settled, LineError> {
    if text.trim().is_empty() {
        return Ok(Settled::Blank);
    }
    if crate::fhir::resource::nesting_exceeds(text.as_bytes(), depth) {
        let issue = Issue::general(
            IssueType::Structure,
            format!("the line's JSON nests deeper than {depth} levels"),
        );
        return Ok(Settled::Rejected(outcome_of(&issue.into())));
    }
    let body: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            // serde's message gives the position, never the content.
            let issue = Issue::general(IssueType::Structure, format!("the line is not JSON: {e}"));
            return Ok(Settled::Rejected(outcome_of(&issue.into())));
        }
    };
    let ods = body
        .pointer("/practice/odsCode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let principal = sender(ods);
    let caller = Caller::new(&principal, None);
    let stored = match kind {
        Kind::FitNotes => {
            crate::app::fit_notes::import_practice_fit_note(store, config, &caller, &body).await
        }
        Kind::Referrals => crate::app::referrals::submit_practice_referral(
            store,
            config,
            &caller,
            &body,
            Return::Minimal,
        )
        .await
        .map(|r| r.stored),
    };
    match stored {
        Ok(s) if s.created => Ok(Settled::Imported),
        Ok(_) => Ok(Settled::AlreadyStored),
        Err(e) => refused(e).map(Settled::Rejected),
    }
}

/// The practice a line names, sending as itself through the import.
fn sender(ods: &str) -> Principal {
    let mut principal = Principal::new(Role::Practice, ods);
    principal.client_id = "whg-import".to_string();
    principal.organisation = format!("{}|{ods}", systems::ODS_ORGANIZATION);
    principal
}

/// The OperationOutcome a refused line is reported with (what the API would answer), or the
/// store failure that stops the run.
fn refused(e: SubmitError) -> Result<Value, LineError> {
    let issues = match e {
        SubmitError::Malformed(issues)
        | SubmitError::Invalid(issues)
        | SubmitError::ConsentRefused(issues) => issues,
        SubmitError::Store(StoreError::Conflict { namespace, key, .. }) => Issue::general(
            IssueType::Duplicate,
            format!(
                "{namespace} '{key}' is already stored with different content: a record's id is write-once, so a changed record needs an id of its own"
            ),
        )
        .into(),
        SubmitError::Store(e) => return Err(LineError::Store(e)),
        e @ (SubmitError::NotTheSender { .. }
        | SubmitError::RealPersonFromTestTenant { .. }
        | SubmitError::UnknownReferral(_)
        | SubmitError::NotReadBack(_)) => Issue::general(IssueType::Forbidden, e.to_string()).into(),
    };
    Ok(outcome_of(&issues))
}

fn outcome_of(issues: &Issues) -> Value {
    let issues: Vec<Issue> = issues.iter().cloned().collect();
    crate::fhir::operation_outcome(&issues, None)
}

/// The file's length and the hash of its start.
fn identify(file: &mut std::fs::File) -> std::io::Result<FileIdentity> {
    let len = file.metadata()?.len();
    let mut head = Vec::with_capacity(HEAD_BYTES);
    Read::by_ref(file)
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(FileIdentity {
        len,
        head_sha256: hex::encode(Sha256::digest(&head)),
    })
}

fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, ImportError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ImportError::BadCheckpoint(path.to_path_buf(), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ImportError::Read(path.to_path_buf(), e)),
    }
}

/// Replaces the checkpoint whole (a new file renamed over the old), so a crash mid-write leaves
/// the previous one.
fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), ImportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let bytes = serde_json::to_vec(checkpoint).expect("a checkpoint serialises");
    crate::secret_file::write_private(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| ImportError::Write(path.to_path_buf(), e))
}

/// The file's lines from where the run starts, each at most `max_bytes` (the API's body limit):
/// a longer line is skipped to its end and reported, never held whole.
struct LineReader<R> {
    reader: R,
    number: u64,
    offset: u64,
    max_bytes: usize,
}

impl<R: BufRead> Iterator for LineReader<R> {
    type Item = std::io::Result<Line>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut bytes = Vec::new();
        let mut read = 0u64;
        let mut too_long = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if available.is_empty() {
                break;
            }
            let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..=i], true),
                None => (available, false),
            };
            if !too_long {
                if bytes.len() + chunk.len() > self.max_bytes + 1 {
                    too_long = true;
                    bytes = Vec::new();
                } else {
                    bytes.extend_from_slice(chunk);
                }
            }
            let n = chunk.len();
            read += n as u64;
            self.reader.consume(n);
            if done {
                break;
            }
        }
        if read == 0 {
            return None;
        }
        self.number += 1;
        self.offset += read;
        let text = if too_long {
            Err(Issue::general(
                IssueType::TooLong,
                format!(
                    "the line is longer than {} bytes, the most one record may take",
                    self.max_bytes
                ),
            ))
        } else {
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            String::from_utf8(bytes)
                .map_err(|_| Issue::general(IssueType::Structure, "the line is not UTF-8 text"))
        };
        Some(Ok(Line {
            number: self.number,
            end: self.offset,
            text,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max_bytes: usize) -> Vec<(u64, u64, Result<String, String>)> {
        LineReader {
            reader: BufReader::with_capacity(4, input),
            number: 0,
            offset: 0,
            max_bytes,
        }
        .map(|l| {
            let l = l.unwrap();
            (l.number, l.end, l.text.map_err(|i| i.diagnostics))
        })
        .collect()
    }

    #[test]
    fn lines_are_numbered_with_the_offset_after_each() {
        let got = lines(b"{\"a\":1}\n\n{\"b\":2}", 100);
        assert_eq!(
            got,
            vec![
                (1, 8, Ok("{\"a\":1}".into())),
                (2, 9, Ok(String::new())),
                (3, 16, Ok("{\"b\":2}".into())),
            ]
        );
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_to_its_end_and_reported() {
        let got = lines(b"0123456789\nabc\n", 5);
        assert_eq!(got.len(), 2);
        assert!(
            got[0]
                .2
                .as_ref()
                .unwrap_err()
                .contains("longer than 5 bytes")
        );
        assert_eq!(got[0].1, 11, "the whole long line is consumed");
        assert_eq!(got[1], (2, 15, Ok("abc".into())));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_reported() {
        let got = lines(b"\xff\xfe\n{}\n", 100);
        assert!(got[0].2.as_ref().unwrap_err().contains("UTF-8"));
        assert_eq!(got[1].2, Ok("{}".into()));
    }

    #[test]
    fn the_defaults_sit_beside_the_file() {
        let o = Options::beside(Kind::FitNotes, PathBuf::from("/tmp/notes.ndjson"));
        assert_eq!(o.report, PathBuf::from("/tmp/notes.ndjson.rejected.ndjson"));
        assert_eq!(o.checkpoint, PathBuf::from("/tmp/notes.ndjson.checkpoint"));
    }

    #[test]
    fn each_line_is_sent_as_the_practice_it_names_by_the_import_client() {
        let p = sender("C88901");
        assert_eq!(p.role, Role::Practice);
        assert_eq!(p.client_id, "whg-import");
        assert_eq!(
            p.organisation,
            format!("{}|C88901", systems::ODS_ORGANIZATION)
        );
        assert!(!p.test_tenant);
    }
}
