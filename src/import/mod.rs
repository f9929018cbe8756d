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

impl Format {
    /// What a checkpoint records of the format: a resumed run must read the file the same way
    /// (a CSV checkpoint names its mapping by hash).
    pub fn identity(&self) -> String {
        match self {
            Format::Ndjson => "ndjson".to_string(),
            Format::Csv(map) => format!(
                "csv:{}",
                hex::encode(Sha256::digest(
                    serde_json::to_vec(map).expect("a mapping serialises")
                ))
            ),
        }
    }
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
    /// Records between checkpoints (at most; one is also saved each second).
    pub checkpoint_every: u64,
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
            checkpoint_every: 2_000,
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

/// Progress is saved at least this often (and every [`Options::checkpoint_every`] records).
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
    // Every check reads the file this run opened (by position, never moving the readers'
    // place), not whatever is at its path by then: a spreadsheet program saves by renaming.
    let opened = file.try_clone().map_err(read_err)?;
    let identity = identify(&mut file).map_err(read_err)?;
    let format = options.format.identity();
    let saved = read_checkpoint(&options.checkpoint)?;
    let tail = match &saved {
        Some(c) => tail_hash(&opened, c.offset).map_err(read_err)?,
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
        &format,
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
            CsvRecords::open(
                &opened,
                file,
                map,
                start.offset,
                start.line,
                config.limits.max_body_bytes,
            )
            .map_err(|e| match e {
                CsvOpenError::Read(e) => read_err(e),
                CsvOpenError::Mapping(m) => ImportError::Mapping(file_path.clone(), m),
            })?,
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
            format: format.clone(),
            head_sha256: identity.head_sha256.clone(),
            tail_sha256: tail_hash(&opened, offset).map_err(read_err)?,
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
                // The error is the news; if this save fails too, the previous checkpoint holds.
                let _ = save(&mut report, line_no, offset, counts, report_len);
                return Err(read_err(e));
            }
        };
        let outcome = match &record.body {
            Ok(None) => Settled::Blank,
            Ok(Some(body)) => match settle(store, config, kind, body).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    // Stopped where the last settled record ends: this one is tried again.
                    let _ = save(&mut report, line_no, offset, counts, report_len);
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
        if since_saved.0 >= options.checkpoint_every.max(1)
            || since_saved.1.elapsed() >= CHECKPOINT_EVERY
        {
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
    let principal = sender_of(body, config);
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

/// The referrer a line names, sending as itself through the import: its practice, or the
/// referring organisation of another kind (`referringOrganisation`, a referral's only). A line
/// that names neither is refused by the format's own rules, as the API would refuse it.
fn sender_of(body: &Value, config: &Config) -> Principal {
    let other = body.pointer("/referringOrganisation");
    let kind = other
        .and_then(|o| o.get("kind"))
        .and_then(Value::as_str)
        .and_then(Role::other_referrer);
    let code = other.and_then(|o| o.get("code")).and_then(Value::as_str);
    if body.get("practice").is_none()
        && let (Some(role), Some(code)) = (kind, code)
    {
        let mut principal = Principal::new(role, code);
        principal.client_id = "whg-import".to_string();
        return principal;
    }
    let ods = body
        .pointer("/practice/odsCode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    sender(ods, config)
}

/// The practice a line names, sending as itself through the import: a test organisation only
/// under the test tenant's rules (synthetic people only), as its registered client would be.
fn sender(ods: &str, config: &Config) -> Principal {
    let mut principal = Principal::new(Role::Practice, ods);
    principal.client_id = "whg-import".to_string();
    principal.organisation = format!("{}|{ods}", systems::ODS_ORGANIZATION);
    principal.test_tenant = config.auth.is_test_organisation(ods);
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
fn tail_hash(file: &std::fs::File, offset: u64) -> std::io::Result<String> {
    let from = offset.saturating_sub(HEAD_BYTES as u64);
    let mut tail = Vec::with_capacity((offset - from) as usize);
    Positional {
        file: file.try_clone()?,
        at: from,
    }
    .take(offset - from)
    .read_to_end(&mut tail)?;
    if tail.len() as u64 != offset - from {
        return Ok(String::new());
    }
    Ok(hex::encode(Sha256::digest(&tail)))
}

/// Reads a file from a position of its own (`pread`), leaving the file's shared position (the
/// row reader's) where it is.
struct Positional {
    file: std::fs::File,
    at: u64,
}

impl Read for Positional {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(&self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
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
    reader: csv::Reader<std::io::Chain<&'static [u8], RowCap>>,
    mapper: columns::RowMapper,
    /// The file offset of the reader's byte 0.
    base_offset: u64,
    /// Line numbers, counted from the bytes themselves: the csv crate's own count is not the
    /// file's (the header, quoted line breaks, blank lines it skips).
    lines: LineBreaks,
    row: csv::StringRecord,
    /// Bytes the reader has taken since the last row: a row may not hold more than the cap.
    taken: std::rc::Rc<std::cell::Cell<u64>>,
    max_row_bytes: usize,
    /// Where the last row ended (the next one starts at or after it).
    last_end: u64,
}

/// The row reader's file, refusing to give a row more than its cap: an unclosed quote would
/// otherwise make the rest of the file one cell, held whole.
struct RowCap {
    file: std::fs::File,
    taken: std::rc::Rc<std::cell::Cell<u64>>,
    cap: u64,
}

impl Read for RowCap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.taken.get() > self.cap {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                RowTooLong,
            ));
        }
        let n = self.file.read(buf)?;
        self.taken.set(self.taken.get() + n as u64);
        Ok(n)
    }
}

/// The error [`RowCap`] gives; the row reader names the row's line.
#[derive(Debug, thiserror::Error)]
#[error("a row is too long")]
struct RowTooLong;

/// Counts a file's line breaks (CRLF, LF or a lone CR, each one) up to an offset, reading it
/// forwards by position.
struct LineBreaks {
    reader: BufReader<Positional>,
    at: u64,
    breaks: u64,
    /// The last byte counted was a CR: an LF next is the same break.
    after_cr: bool,
}

impl LineBreaks {
    fn new(file: &std::fs::File, at: u64, breaks: u64) -> std::io::Result<LineBreaks> {
        // Resuming just after a lone CR: an LF now there (the file grew) is the same break.
        let mut before = [0u8; 1];
        let after_cr = at > 0
            && std::os::unix::fs::FileExt::read_at(file, &mut before, at - 1)? == 1
            && before[0] == b'\r';
        let positional = Positional {
            file: file.try_clone()?,
            at,
        };
        Ok(LineBreaks {
            reader: BufReader::with_capacity(256 * 1024, positional),
            at,
            breaks,
            after_cr,
        })
    }

    /// The line breaks before `offset` (at or after where the counter is).
    fn to(&mut self, offset: u64) -> std::io::Result<u64> {
        while self.at < offset {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                break;
            }
            let n = available.len().min((offset - self.at) as usize);
            for &b in &available[..n] {
                match b {
                    b'\r' => {
                        self.breaks += 1;
                        self.after_cr = true;
                    }
                    b'\n' if self.after_cr => self.after_cr = false,
                    b'\n' => self.breaks += 1,
                    _ => self.after_cr = false,
                }
            }
            self.at += n as u64;
            self.reader.consume(n);
        }
        Ok(self.breaks)
    }

    /// The number of the line a row read from `offset` starts on: the first line with
    /// something other than line breaks on it (the csv crate skips blank lines before a row),
    /// and the offset just past those breaks.
    fn row_start(&mut self, offset: u64) -> std::io::Result<(u64, u64)> {
        self.to(offset)?;
        loop {
            let next = self.reader.fill_buf()?.first().copied();
            match next {
                Some(b @ (b'\r' | b'\n')) => {
                    let _ = b;
                    self.to(self.at + 1)?;
                }
                _ => return Ok((self.breaks + 1, self.at)),
            }
        }
    }
}

impl CsvRecords {
    /// Reads the header row from the top of `opened` (by position), then rows from `offset`
    /// (after the header, at least) on `file`; `lines` are the file's line breaks before
    /// `offset`.
    fn open(
        opened: &std::fs::File,
        mut file: std::fs::File,
        map: &columns::ColumnMap,
        offset: u64,
        lines: u64,
        max_row_bytes: usize,
    ) -> Result<CsvRecords, CsvOpenError> {
        let io = CsvOpenError::Read;
        let from_top = Positional {
            file: opened.try_clone().map_err(io)?,
            at: 0,
        };
        // The header row is as capped as any other.
        let mut head = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(from_top.take(max_row_bytes as u64));
        let header: Vec<String> = head
            .headers()
            .map_err(|e| CsvOpenError::Read(csv_io(e)))?
            .iter()
            .map(str::to_string)
            .collect();
        // The csv crate's positions count the byte-order mark it skips.
        let after_header = head.position().byte();
        if header.iter().any(|h| h.contains(['\n', '\r'])) || after_header >= max_row_bytes as u64 {
            return Err(CsvOpenError::Read(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the header row holds a line break or runs on: a quote in it is probably not closed",
            )));
        }
        let mapper = map.for_header(&header).map_err(CsvOpenError::Mapping)?;
        let (start, counted) = if offset == 0 {
            (after_header, (0, 0))
        } else {
            (offset.max(after_header), (offset, lines))
        };
        let lines = LineBreaks::new(opened, counted.0, counted.1).map_err(io)?;
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let capped = RowCap {
            file,
            taken: taken.clone(),
            // The reader reads ahead by its buffer: a row is refused only well past the limit.
            cap: max_row_bytes as u64 + 2 * CSV_BUFFER as u64,
        };
        // A new reader would strip a byte-order mark at the offset (two exports put end to end)
        // that a run from the top keeps in its cell: it is given a line break to start with,
        // which it skips, so it reads from the offset exactly as a run from the top does.
        let (lead, base_offset): (&'static [u8], u64) = if start > 0 {
            (b"\n", start - 1)
        } else {
            (b"", 0)
        };
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(CSV_BUFFER)
            .from_reader(lead.chain(capped));
        Ok(CsvRecords {
            reader,
            mapper,
            base_offset,
            lines,
            row: csv::StringRecord::new(),
            taken,
            max_row_bytes,
            last_end: start,
        })
    }
}

const CSV_BUFFER: usize = 256 * 1024;

/// A CSV error as the I/O error it is (a row it cannot split is reported, not returned).
fn csv_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

impl CsvRecords {
    fn row_too_long(&mut self) -> std::io::Error {
        let line = self
            .lines
            .row_start(self.last_end)
            .map_or(0, |(line, _)| line);
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the row starting on line {line} runs past {} bytes: a quote is probably not closed (fix the file and run the import again)",
                self.max_row_bytes
            ),
        )
    }
}

impl Iterator for CsvRecords {
    type Item = std::io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        let read = self.reader.read_record(&mut self.row);
        let end = self.base_offset + self.reader.position().byte();
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
                csv::ErrorKind::Io(io)
                    if io.get_ref().is_some_and(|inner| inner.is::<RowTooLong>()) =>
                {
                    return Some(Err(self.row_too_long()));
                }
                csv::ErrorKind::Io(_) => return Some(Err(csv_io(e))),
                csv::ErrorKind::Utf8 { .. } => Err(Issue::general(
                    IssueType::Structure,
                    "the row is not UTF-8 text (save the spreadsheet as \"CSV UTF-8\")",
                )
                .into()),
                _ => Err(
                    Issue::general(IssueType::Structure, "the row cannot be read as CSV").into(),
                ),
            },
        };
        self.taken.set(0);
        let (line, row_from) = match self.lines.row_start(self.last_end) {
            Ok(start) => start,
            Err(e) => return Some(Err(e)),
        };
        // The row itself, from its first byte to the CR or LF that ends it.
        if end.saturating_sub(row_from) > self.max_row_bytes as u64 + 1 {
            return Some(Err(self.row_too_long()));
        }
        // The row's end, past the LF of its CRLF (the crate ends a row at the CR): where a
        // resumed run starts, at a line's start.
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
        self.last_end = end;
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
        csv_read(path, offset, lines, 1 << 20)
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    fn csv_read(
        path: &Path,
        offset: u64,
        lines: u64,
        max_row_bytes: usize,
    ) -> Vec<Result<(u64, u64, u64, Value), String>> {
        let map: columns::ColumnMap = toml::from_str(
            "[fields]\nid = \"Id\"\nnote = { column = \"Note\", multiline = true }\n",
        )
        .unwrap();
        let file = std::fs::File::open(path).unwrap();
        let opened = std::fs::File::open(path).unwrap();
        let Ok(records) = CsvRecords::open(&opened, file, &map, offset, lines, max_row_bytes)
        else {
            panic!("the mapping fits")
        };
        records
            .map(|r| {
                let r = r.map_err(|e| e.to_string())?;
                let body = match r.body {
                    Ok(Some(v)) => v,
                    Ok(None) => Value::Null,
                    Err(_) => json!("unreadable"),
                };
                Ok((r.line, r.end, r.lines_to_end, body))
            })
            .collect()
    }

    /// Every row read from the top, then from after each row: the same rows at the same places.
    fn resumes_alike(path: &Path) -> Vec<(u64, u64, u64, Value)> {
        let all = csv_records(path, 0, 0);
        for (i, (_, end, lines_to_end, _)) in all.iter().enumerate() {
            assert_eq!(
                csv_records(path, *end, *lines_to_end),
                all[i + 1..].to_vec(),
                "resumed after row {i}"
            );
        }
        all
    }

    #[test]
    fn csv_line_numbers_hold_for_every_line_end_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("crlf", "Id,Note\r\na,x\r\n\r\n\r\n\r\nb,y\r\n"),
            ("lf", "Id,Note\na,x\n\n\n\nb,y\n"),
            ("cr", "Id,Note\ra,x\r\r\r\rb,y\r"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let rows = resumes_alike(&path);
            let lines: Vec<(u64, &Value)> = rows.iter().map(|r| (r.0, &r.3["id"])).collect();
            let (a, b) = (json!("a"), json!("b"));
            assert_eq!(lines, [(2, &a), (6, &b)], "{name}");
        }
    }

    #[test]
    fn a_byte_order_mark_mid_file_is_read_alike_from_the_top_and_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("joined.csv");
        std::fs::write(&path, "Id,Note\na,x\n\u{feff}b,y\n").unwrap();
        let rows = resumes_alike(&path);
        assert_eq!(rows[1].3["id"], "\u{feff}b");
    }

    #[test]
    fn a_header_with_an_open_quote_is_refused_rather_than_swallowing_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad-header.csv");
        std::fs::write(&path, "Id,\"Note\na,x\nb,\"y\"\n").unwrap();
        let map: columns::ColumnMap = toml::from_str("[fields]\nid = \"Id\"\n").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let opened = std::fs::File::open(&path).unwrap();
        assert!(matches!(
            CsvRecords::open(&opened, file, &map, 0, 0, 1 << 20),
            Err(CsvOpenError::Read(_))
        ));
    }

    #[test]
    fn an_unclosed_quote_stops_the_run_naming_the_row_instead_of_swallowing_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("open-quote.csv");
        let mut text = String::from("Id,Note\na,\"never closed\n");
        for i in 0..2_000 {
            text.push_str(&format!("r{i},some words about row {i}\n"));
        }
        std::fs::write(&path, text).unwrap();
        let read = csv_read(&path, 0, 0, 1_000);
        let last = read.last().unwrap();
        let e = last.as_ref().unwrap_err();
        assert!(e.contains("row starting on line 2"), "{e}");
        assert!(e.contains("quote"), "{e}");
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
