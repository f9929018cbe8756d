//! Where an import stopped: written after each batch of lines is stored, so a run killed at any
//! moment (`kill -9`, a power cut) starts again where its last checkpoint says. Lines stored after
//! that checkpoint are sent again and recognised as already stored (every submission has its
//! sender's write-once key), so resuming never stores a record twice. Pure: the shell reads and
//! writes the file.

use serde::{Deserialize, Serialize};

/// What the run has done with the lines so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Stored by this import.
    pub imported: u64,
    /// Already in the store with the same content (a line imported before, or sent over the API).
    pub already_stored: u64,
    /// Refused: written to the report with their OperationOutcome.
    pub rejected: u64,
}

impl Counts {
    pub fn lines(&self) -> u64 {
        self.imported + self.already_stored + self.rejected
    }
}

/// Which file a checkpoint is about: its length and a hash of its first bytes (with, at resume,
/// a hash of the bytes just before the checkpoint's offset: see [`start`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub len: u64,
    /// SHA-256 (hex) of the first [`HEAD_BYTES`] bytes.
    pub head_sha256: String,
}

/// How much of the file's start identifies it.
pub const HEAD_BYTES: usize = 64 * 1024;

/// The saved progress of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// What the file holds (`fit-notes`, `referrals`).
    pub kind: String,
    /// How it is read (`ndjson`, or `csv:` and the mapping's hash): see `Format::identity`.
    pub format: String,
    pub head_sha256: String,
    /// SHA-256 (hex) of the [`HEAD_BYTES`] that end at `offset`: the file up to where the run
    /// stopped is the file it read, so the next byte starts the next line. (Rows appended to
    /// the file since change neither hash.)
    pub tail_sha256: String,
    /// Bytes of the file read and settled (stored, found stored, or reported).
    pub offset: u64,
    /// Lines settled, blank ones included: the next line's number is `line + 1`.
    pub line: u64,
    pub counts: Counts,
    /// Bytes of the rejects report that belong to the settled lines: a resumed run cuts the
    /// report back to this, so a line reported after the checkpoint is not reported twice.
    pub report_len: u64,
}

/// Where a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub offset: u64,
    pub line: u64,
    pub counts: Counts,
    pub report_len: u64,
    /// Whether it resumes an earlier run.
    pub resumed: bool,
}

/// Why a checkpoint cannot be resumed from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("the checkpoint is for an import of {saved}, not {wanted}")]
    Kind { saved: String, wanted: String },
    #[error(
        "the checkpoint is for the file read another way (as NDJSON or CSV, or with another column mapping)"
    )]
    Format,
    #[error(
        "the checkpoint is for another file (its first bytes, or those before where the checkpoint stopped, differ; or it is shorter than that)"
    )]
    File,
    #[error(
        "the report of the lines refused so far holds {found} bytes, not the {expected} the checkpoint counts (it was cut or removed): those refusals would be lost"
    )]
    Report { expected: u64, found: u64 },
}

/// Where an import of `kind` from the file `identity` starts, given the checkpoint found (if
/// any), the hash of the file's bytes before that checkpoint's offset (`tail_sha256`, as
/// [`Checkpoint::tail_sha256`]) and the report's length now.
pub fn start(
    saved: Option<&Checkpoint>,
    kind: &str,
    format: &str,
    identity: &FileIdentity,
    tail_sha256: &str,
    report_len: u64,
) -> Result<Start, Mismatch> {
    let Some(saved) = saved else {
        return Ok(Start {
            offset: 0,
            line: 0,
            counts: Counts::default(),
            report_len: 0,
            resumed: false,
        });
    };
    if saved.kind != kind {
        return Err(Mismatch::Kind {
            saved: saved.kind.clone(),
            wanted: kind.to_string(),
        });
    }
    if saved.format != format {
        return Err(Mismatch::Format);
    }
    if saved.head_sha256 != identity.head_sha256
        || saved.offset > identity.len
        || saved.tail_sha256 != tail_sha256
    {
        return Err(Mismatch::File);
    }
    if report_len < saved.report_len {
        return Err(Mismatch::Report {
            expected: saved.report_len,
            found: report_len,
        });
    }
    Ok(Start {
        offset: saved.offset,
        line: saved.line,
        counts: saved.counts,
        report_len: saved.report_len,
        resumed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(len: u64, head: &str) -> FileIdentity {
        FileIdentity {
            len,
            head_sha256: head.into(),
        }
    }

    fn saved(offset: u64) -> Checkpoint {
        Checkpoint {
            kind: "fit-notes".into(),
            format: "ndjson".into(),
            head_sha256: "abc".into(),
            tail_sha256: "tail".into(),
            offset,
            line: 40,
            counts: Counts {
                imported: 30,
                already_stored: 5,
                rejected: 3,
            },
            report_len: 900,
        }
    }

    #[test]
    fn without_a_checkpoint_a_run_starts_at_the_top() {
        let s = start(None, "fit-notes", "ndjson", &identity(10, "abc"), "", 0).unwrap();
        assert_eq!((s.offset, s.line, s.resumed), (0, 0, false));
        assert_eq!(s.counts.lines(), 0);
    }

    #[test]
    fn a_checkpoint_for_the_same_file_resumes_where_it_stopped() {
        let s = start(
            Some(&saved(5000)),
            "fit-notes",
            "ndjson",
            &identity(5000, "abc"),
            "tail",
            900,
        )
        .unwrap();
        assert_eq!(
            (s.offset, s.line, s.report_len, s.resumed),
            (5000, 40, 900, true)
        );
        assert_eq!(s.counts.imported, 30);
        // Rows appended to the file since: still the same file.
        assert!(
            start(
                Some(&saved(5000)),
                "fit-notes",
                "ndjson",
                &identity(9000, "abc"),
                "tail",
                900
            )
            .is_ok()
        );
        // A report that grew past the checkpoint (lines refused after it): cut back, not refused.
        assert!(
            start(
                Some(&saved(5000)),
                "fit-notes",
                "ndjson",
                &identity(5000, "abc"),
                "tail",
                1200
            )
            .is_ok()
        );
    }

    #[test]
    fn a_checkpoint_for_another_file_or_kind_is_refused() {
        assert_eq!(
            start(
                Some(&saved(5000)),
                "fit-notes",
                "ndjson",
                &identity(5000, "def"),
                "tail",
                900
            ),
            Err(Mismatch::File)
        );
        assert_eq!(
            start(
                Some(&saved(5000)),
                "fit-notes",
                "ndjson",
                &identity(4999, "abc"),
                "tail",
                900
            ),
            Err(Mismatch::File),
            "a file shorter than the checkpoint's offset was cut or replaced"
        );
        assert_eq!(
            start(
                Some(&saved(5000)),
                "fit-notes",
                "ndjson",
                &identity(5000, "abc"),
                "changed",
                900
            ),
            Err(Mismatch::File),
            "a row changed before the offset: resuming there would skip or split lines"
        );
        assert_eq!(
            start(
                Some(&saved(5000)),
                "fit-notes",
                "ndjson",
                &identity(5000, "abc"),
                "tail",
                10
            ),
            Err(Mismatch::Report {
                expected: 900,
                found: 10
            })
        );
        assert_eq!(
            start(
                Some(&saved(5000)),
                "fit-notes",
                "csv:1234",
                &identity(5000, "abc"),
                "tail",
                900
            ),
            Err(Mismatch::Format),
            "read another way, the offset means something else"
        );
        assert!(matches!(
            start(
                Some(&saved(5000)),
                "referrals",
                "ndjson",
                &identity(5000, "abc"),
                "tail",
                900
            ),
            Err(Mismatch::Kind { .. })
        ));
    }
}
