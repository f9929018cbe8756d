//! `whg import`: a service's or a region's history, one record per line (NDJSON in the practice
//! formats), taken in by the same use cases as the API — the same validation, consent and
//! eligibility, the same write-once keys, the same audit — so an imported record is exactly what
//! the API would have stored. Each line stands alone: a refused one is written to the report with
//! its OperationOutcome and the rest go on. The run saves a [`checkpoint`] as it goes and resumes
//! from it after being killed, without storing anything twice.
//!
//! The operator who runs it holds the database (as for `whg export`), so each line is sent as
//! the practice it names (a test organisation's lines under the test tenant's rules); the audit
//! trail records the sender as the `whg-import` client.
//!
//! Lines are stored one after another, in file order: a person's later fit note is weighed
//! against the earlier ones (the duration rule, runs, prompts) exactly as if they had been sent
//! in that order.

pub mod checkpoint;
pub mod columns;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// How the file is written.
#[derive(Debug, Clone)]
pub enum Format {
    /// One JSON record per line in the practice format.
    Ndjson,
    /// A spreadsheet's export (RFC 4180 CSV with a header row), each row made a practice-format
    /// record by a column-mapping file ([`columns`]).
    Csv(columns::ColumnMap),
}

/// How to run one import.
#[derive(Debug, Clone)]
pub struct Options {
    pub kind: Kind,
    pub format: Format,
    pub file: PathBuf,
    /// Where refused lines go, one `{"line": n, "outcome": OperationOutcome}` per line.
    pub report: PathBuf,
    /// Where progress is saved; removed when the run reaches the end of the file.
    pub checkpoint: PathBuf,
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
            format: Format::Ndjson,
            report: with(".rejected.ndjson"),
            checkpoint: with(".checkpoint"),
            file,
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
    #[error("the column mapping does not fit {path}: {why}", path = .0.display(), why = .1)]
    Mapping(PathBuf, columns::MappingError),
    /// The store cannot take records now: the run stops at its last checkpoint, to be resumed.
    #[error(
        "the store failed ({0}); the import stopped and resumes from its checkpoint when run again"
    )]
    Store(StoreError),
}

/// A record taken from the file.
struct Record {
    /// The line it starts on (1-based): what the report names.
    line: u64,
    /// Byte offset just after it.
    end: u64,
    /// Lines of the file up to `end` (a CSV row may span several).
    lines_to_end: u64,
    /// The record; `None` for a blank line; the issues when it cannot be read.
    body: Result<Option<Value>, Issues>,
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
    let tail = match &saved {
        Some(c) => tail_hash(file_path, c.offset).map_err(read_err)?,
        None => String::new(),
    };
    let report_found = match std::fs::symlink_metadata(&options.report) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(ImportError::Write(
                options.report.clone(),
                std::io::Error::other("it is a symbolic link: name the report file itself"),
            ));
        }
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(ImportError::Read(options.report.clone(), e)),
    };
    let start = checkpoint::start(
        saved.as_ref(),
        options.kind.as_str(),
        &identity,
        &tail,
        report_found,
    )
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

    let records: Box<dyn Iterator<Item = std::io::Result<Record>>> = match &options.format {
        Format::Ndjson => {
            file.seek(SeekFrom::Start(start.offset)).map_err(read_err)?;
            let lines = LineReader {
                reader: BufReader::with_capacity(256 * 1024, file),
                number: start.line,
                offset: start.offset,
                max_bytes: config.limits.max_body_bytes,
            };
            let depth = config.limits.max_json_depth;
            Box::new(lines.map(move |line| line.map(|l| l.parsed(depth))))
        }
        Format::Csv(map) => Box::new(
            CsvRecords::open(file_path, file, map, start.offset, start.line).map_err(
                |e| match e {
                    CsvOpenError::Read(e) => read_err(e),
                    CsvOpenError::Mapping(m) => ImportError::Mapping(file_path.clone(), m),
                },
            )?,
        ),
    };
    bar.set_length(identity.len);
    bar.set_position(start.offset);

    let kind = options.kind;
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
            tail_sha256: tail_hash(file_path, offset).map_err(read_err)?,
            offset,
            line,
            counts,
            report_len,
        };
        write_checkpoint(&options.checkpoint, &checkpoint)
    };
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                save(&mut report, line_no, offset, counts, report_len)?;
                return Err(read_err(e));
            }
        };
        let outcome = match &record.body {
            Ok(None) => Settled::Blank,
            Ok(Some(body)) => match settle(store, config, kind, body).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    // Stopped where the last settled record ends: this one is tried again.
                    save(&mut report, line_no, offset, counts, report_len)?;
                    return Err(ImportError::Store(e));
                }
            },
            Err(issues) => Settled::Rejected(outcome_of(issues)),
        };
        match outcome {
            Settled::Blank => {}
            Settled::Imported => counts.imported += 1,
            Settled::AlreadyStored => counts.already_stored += 1,
            Settled::Rejected(outcome) => {
                counts.rejected += 1;
                let mut row =
                    serde_json::to_vec(&json!({ "line": record.line, "outcome": outcome }))
                        .expect("a JSON value serialises");
                row.push(b'\n');
                report.write_all(&row).map_err(write_err(&options.report))?;
                report_len += row.len() as u64;
            }
        }
        (line_no, offset) = (record.lines_to_end, record.end);
        this_run += 1;
        since_saved.0 += 1;
        bar.set_position(offset);
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

/// One record through its use case, as the practice it names.
async fn settle(
    store: &dyn Store,
    config: &Config,
    kind: Kind,
    body: &Value,
) -> Result<Settled, StoreError> {
    let ods = body
        .pointer("/practice/odsCode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let principal = sender(ods, config);
    let caller = Caller::new(&principal, None);
    let stored = match kind {
        Kind::FitNotes => {
            crate::app::fit_notes::import_practice_fit_note(store, config, &caller, body).await
        }
        Kind::Referrals => crate::app::referrals::submit_practice_referral(
            store,
            config,
            &caller,
            body,
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

/// The practice a line names, sending as itself through the import: a test organisation only
/// under the test tenant's rules (synthetic people only), as its registered client would be.
fn sender(ods: &str, config: &Config) -> Principal {
    let mut principal = Principal::new(Role::Practice, ods);
    principal.client_id = "whg-import".to_string();
    principal.organisation = format!("{}|{ods}", systems::ODS_ORGANIZATION);
    principal.test_tenant = config
        .auth
        .test_organisations
        .iter()
        .any(|t| t.eq_ignore_ascii_case(ods));
    principal
}

/// The OperationOutcome a refused line is reported with (what the API would answer), or the
/// store failure that stops the run: only a store that cannot be written now (or whose data is
/// unreadable) stops it. A line the store turns away for itself — a bug in a rule, say — is
/// reported, so one line never blocks the rest of the file, run after run.
fn refused(e: SubmitError) -> Result<Value, StoreError> {
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
        SubmitError::Store(
            e @ (StoreError::Unavailable(_) | StoreError::Corrupt(_) | StoreError::UnsupportedUrl(_)),
        ) => return Err(e),
        SubmitError::Store(e) => Issue::general(
            IssueType::Exception,
            format!("the gateway could not store this line ({e}); the others go on"),
        )
        .into(),
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
    // A new name each time, created only if nothing is there (`O_EXCL` follows no symlink).
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", uuid::Uuid::now_v7().simple()));
    let tmp = PathBuf::from(tmp);
    let bytes = serde_json::to_vec(checkpoint).expect("a checkpoint serialises");
    crate::secret_file::create(&tmp, &bytes)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ImportError::Write(path.to_path_buf(), e)
        })
}

/// SHA-256 (hex) of the [`HEAD_BYTES`] of the file that end at `offset`, and whether a line
/// ends there: what a resumed run checks it is resuming the same file at a line's end.
fn tail_hash(path: &Path, offset: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let from = offset.saturating_sub(HEAD_BYTES as u64);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::with_capacity((offset - from) as usize);
    file.take(offset - from).read_to_end(&mut tail)?;
    if tail.len() as u64 != offset - from {
        return Ok(String::new());
    }
    Ok(hex::encode(Sha256::digest(&tail)))
}

/// A line of an NDJSON file.
struct Line {
    /// 1-based.
    number: u64,
    /// Byte offset just after it.
    end: u64,
    text: Result<String, Issue>,
}

impl Line {
    /// The line as a record: parsed as JSON within the API's nesting limit.
    fn parsed(self, depth: usize) -> Record {
        let body = self.text.map_err(Issues::from).and_then(|text| {
            // A spreadsheet program's export often starts with a byte-order mark.
            let text = if self.number == 1 {
                text.strip_prefix('\u{feff}').unwrap_or(&text)
            } else {
                &text
            };
            if text.trim().is_empty() {
                return Ok(None);
            }
            if crate::fhir::resource::nesting_exceeds(text.as_bytes(), depth) {
                return Err(Issue::general(
                    IssueType::Structure,
                    format!("the line's JSON nests deeper than {depth} levels"),
                )
                .into());
            }
            // serde's message gives the position, never the content.
            serde_json::from_str(text).map(Some).map_err(|e| {
                Issue::general(IssueType::Structure, format!("the line is not JSON: {e}")).into()
            })
        });
        Record {
            line: self.number,
            end: self.end,
            lines_to_end: self.number,
            body,
        }
    }
}

/// Why a CSV file cannot be read at all.
enum CsvOpenError {
    Read(std::io::Error),
    Mapping(columns::MappingError),
}

/// A CSV file's rows from where the run starts, each made a record by the mapping.
struct CsvRecords {
    reader: csv::Reader<std::fs::File>,
    mapper: columns::RowMapper,
    /// Where `reader` started in the file (its positions count from there).
    base_offset: u64,
    /// Line numbers, counted from the bytes themselves: the csv crate's own line count is not
    /// the file's (a quoted line break, the header).
    lines: NewlineCounter,
    row: csv::StringRecord,
}

/// Counts the line breaks in a file up to an offset, reading it once, forwards.
struct NewlineCounter {
    reader: BufReader<std::fs::File>,
    at: u64,
    newlines: u64,
}

impl NewlineCounter {
    /// The number of the line a record at `offset` starts on. The csv crate puts a row that
    /// follows a CRLF at the LF (it ends rows at the CR): such a row starts on the next line.
    /// (A row's end is moved past that LF, so a resumed reader starts at a line's start.)
    fn line_at(&mut self, offset: u64) -> std::io::Result<u64> {
        let before = self.to(offset)?;
        let at_lf = self.reader.fill_buf()?.first() == Some(&b'\n');
        Ok(before + 1 + u64::from(at_lf))
    }

    /// The line breaks before `offset` (at or after where the counter is).
    fn to(&mut self, offset: u64) -> std::io::Result<u64> {
        while self.at < offset {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                break;
            }
            let n = available.len().min((offset - self.at) as usize);
            self.newlines += available[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            self.at += n as u64;
            self.reader.consume(n);
        }
        Ok(self.newlines)
    }
}

impl CsvRecords {
    /// Reads the header row from the top, then goes to `offset` (after the header, at least) to
    /// read rows; `lines` are the file's line breaks before `offset`.
    fn open(
        path: &Path,
        mut file: std::fs::File,
        map: &columns::ColumnMap,
        offset: u64,
        lines: u64,
    ) -> Result<CsvRecords, CsvOpenError> {
        let io = CsvOpenError::Read;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut head = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(file.try_clone().map_err(io)?);
        let header: Vec<String> = head
            .headers()
            .map_err(|e| CsvOpenError::Read(csv_io(e)))?
            .iter()
            .map(str::to_string)
            .collect();
        let mapper = map.for_header(&header).map_err(CsvOpenError::Mapping)?;
        let after_header = head.position().byte();
        let (start, counted) = if offset == 0 {
            (after_header, (0, 0))
        } else {
            (offset.max(after_header), (offset, lines))
        };
        // Its own handle: a clone would share the reader's file position.
        let mut counter_file = std::fs::File::open(path).map_err(io)?;
        counter_file.seek(SeekFrom::Start(counted.0)).map_err(io)?;
        let lines = NewlineCounter {
            reader: BufReader::with_capacity(256 * 1024, counter_file),
            at: counted.0,
            newlines: counted.1,
        };
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(file);
        Ok(CsvRecords {
            reader,
            mapper,
            base_offset: start,
            lines,
            row: csv::StringRecord::new(),
        })
    }
}

/// A CSV error as the I/O error it is (a row it cannot split is reported, not returned).
fn csv_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

impl Iterator for CsvRecords {
    type Item = std::io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        let read = self.reader.read_record(&mut self.row);
        let end = self.base_offset + self.reader.position().byte();
        let started = self
            .row
            .position()
            .map_or(end, |p| self.base_offset + p.byte());
        let body = match read {
            Ok(false) => return None,
            Ok(true) => {
                let cells: Vec<&str> = self.row.iter().collect();
                if cells.iter().all(|c| c.trim().is_empty()) {
                    Ok(None)
                } else {
                    self.mapper.record(&cells).map(Some)
                }
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => return Some(Err(csv_io(e))),
                csv::ErrorKind::Utf8 { .. } => {
                    Err(Issue::general(IssueType::Structure, "the row is not UTF-8 text").into())
                }
                _ => Err(
                    Issue::general(IssueType::Structure, "the row cannot be read as CSV").into(),
                ),
            },
        };
        let line = match self.lines.line_at(started) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        // The row's end, past the LF of its CRLF (see `line_at`): where a resumed run starts.
        let end = match self
            .lines
            .to(end)
            .and_then(|_| self.lines.reader.fill_buf())
        {
            Ok(next) if next.first() == Some(&b'\n') => end + 1,
            Ok(_) => end,
            Err(e) => return Some(Err(e)),
        };
        let lines_to_end = match self.lines.to(end) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(Record {
            line,
            end,
            lines_to_end,
            body,
        }))
    }
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
                let content = chunk.len() - usize::from(done);
                if bytes.len() + content > self.max_bytes {
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

    fn csv_records(path: &Path, offset: u64, lines: u64) -> Vec<(u64, u64, u64, Value)> {
        let map: columns::ColumnMap =
            toml::from_str("[fields]\nid = \"Id\"\nnote = \"Note\"\n").unwrap();
        let file = std::fs::File::open(path).unwrap();
        let Ok(records) = CsvRecords::open(path, file, &map, offset, lines) else {
            panic!("the mapping fits")
        };
        records
            .map(|r| {
                let r = r.unwrap();
                let body = match r.body {
                    Ok(Some(v)) => v,
                    Ok(None) => Value::Null,
                    Err(_) => json!("unreadable"),
                };
                (r.line, r.end, r.lines_to_end, body)
            })
            .collect()
    }

    #[test]
    fn csv_rows_resume_at_the_checkpoint_with_the_same_lines_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        // A byte-order mark, a row over two lines, a blank row, and a last row without a line end.
        std::fs::write(
            &path,
            "\u{feff}Id,Note\r\na,\"one,\r\ntwo\"\r\nb,plain\r\n,\r\nc,\"last\"",
        )
        .unwrap();
        let all = csv_records(&path, 0, 0);
        let ids: Vec<&Value> = all.iter().map(|r| &r.3["id"]).collect();
        assert_eq!(ids, [&json!("a"), &json!("b"), &Value::Null, &json!("c")]);
        assert_eq!(all[0].3["note"], "one,\r\ntwo");
        let lines: Vec<u64> = all.iter().map(|r| r.0).collect();
        assert_eq!(
            lines,
            [2, 4, 5, 6],
            "each row named by the line it starts on"
        );
        assert_eq!(all[3].1, std::fs::metadata(&path).unwrap().len());
        // Resumed after the first row: the rest are the same rows at the same places.
        let (_, end, lines_to_end, _) = all[0];
        assert_eq!(lines_to_end, 3);
        assert_eq!(csv_records(&path, end, lines_to_end), all[1..].to_vec());
    }

    #[test]
    fn the_defaults_sit_beside_the_file() {
        let o = Options::beside(Kind::FitNotes, PathBuf::from("/tmp/notes.ndjson"));
        assert_eq!(o.report, PathBuf::from("/tmp/notes.ndjson.rejected.ndjson"));
        assert_eq!(o.checkpoint, PathBuf::from("/tmp/notes.ndjson.checkpoint"));
    }

    #[test]
    fn each_line_is_sent_as_the_practice_it_names_by_the_import_client() {
        let mut config = Config::defaults();
        config.auth.test_organisations = vec!["C88901".into()];
        let p = sender("C88901", &config);
        assert_eq!(p.role, Role::Practice);
        assert_eq!(p.client_id, "whg-import");
        assert_eq!(
            p.organisation,
            format!("{}|C88901", systems::ODS_ORGANIZATION)
        );
        assert!(
            p.test_tenant,
            "a test organisation sends under the test tenant's rules"
        );
        assert!(!sender("A81001", &config).test_tenant);
    }
}
