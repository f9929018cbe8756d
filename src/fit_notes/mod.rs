//! Fit-note history: runs of consecutive statements, the summary practices and services see, and
//! the rules that prompt a referral. Pure: the notes and "today" come in.

pub mod prompts;

use chrono::{Months, NaiveDate};
use serde::Serialize;

/// What the history needs of one stored fit note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitNoteFacts {
    /// `Observation/{id}` once stored; the entry's `fullUrl` while it is being admitted.
    pub reference: String,
    /// First day covered.
    pub start: NaiveDate,
    /// Last day covered (inclusive); `None` for an indefinite statement.
    pub end: Option<NaiveDate>,
    /// Date of the statement.
    pub issued: NaiveDate,
    pub not_fit: bool,
}

/// Fit notes that follow one another with gaps of at most `gap_days` days (or overlap): one spell
/// of certified sickness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run<'a> {
    pub notes: Vec<&'a FitNoteFacts>,
    pub start: NaiveDate,
    /// `None` when a note in the run is indefinite.
    pub end: Option<NaiveDate>,
}

impl Run<'_> {
    pub fn contains(&self, reference: &str) -> bool {
        self.notes.iter().any(|n| n.reference == reference)
    }
}

/// Splits notes into runs, in time order. Notes are ordered by start, then statement date.
pub fn runs(notes: &[FitNoteFacts], gap_days: u32) -> Vec<Run<'_>> {
    let mut sorted: Vec<&FitNoteFacts> = notes.iter().collect();
    sorted
        .sort_by(|a, b| (a.start, a.issued, &a.reference).cmp(&(b.start, b.issued, &b.reference)));
    let mut out: Vec<Run> = Vec::new();
    for note in sorted {
        let joins = out.last().is_some_and(|run| match run.end {
            None => true,
            Some(end) => note.start <= end + chrono::Days::new(u64::from(gap_days) + 1),
        });
        if joins {
            let run = out.last_mut().expect("checked above");
            run.end = match (run.end, note.end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            run.notes.push(note);
        } else {
            out.push(Run {
                notes: vec![note],
                start: note.start,
                end: note.end,
            });
        }
    }
    out
}

/// The first day of the six-month-style window ending `today`.
pub fn window_start(today: NaiveDate, months: u32) -> NaiveDate {
    today
        .checked_sub_months(Months::new(months))
        .unwrap_or(NaiveDate::MIN)
}

/// A person's fit-note history at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub window_months: u32,
    /// Statements dated within the window.
    pub count_in_window: usize,
    pub total: usize,
    /// Days within the window (up to today) covered by at least one statement.
    pub days_certified_in_window: i64,
    /// The most recent run of consecutive statements.
    pub current_run: Option<RunSummary>,
    /// The fitness advice of the latest statement: `not-fit` or `may-be-fit`.
    pub latest_fitness: Option<&'static str>,
    pub latest_issued: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub count: usize,
    pub start: NaiveDate,
    /// Absent for an indefinite statement.
    pub end: Option<NaiveDate>,
    /// Whether the run reaches today (allowing the gap tolerance): the spell is still certified.
    pub ongoing: bool,
    /// Days from the run's start to its end, or to today when it is ongoing.
    pub days_certified: i64,
    pub fit_notes: Vec<String>,
}

/// Summarises `notes` as of `today`.
pub fn summary(
    notes: &[FitNoteFacts],
    today: NaiveDate,
    gap_days: u32,
    window_months: u32,
) -> Summary {
    let from = window_start(today, window_months);
    let latest = notes
        .iter()
        .max_by(|a, b| (a.issued, a.start, &a.reference).cmp(&(b.issued, b.start, &b.reference)));
    let all_runs = runs(notes, gap_days);
    let current_run = all_runs.last().map(|run| {
        let ongoing = run
            .end
            .is_none_or(|end| end + chrono::Days::new(u64::from(gap_days)) >= today);
        let last_day = match run.end {
            Some(end) if !ongoing || end < today => end,
            _ => today,
        };
        RunSummary {
            count: run.notes.len(),
            start: run.start,
            end: run.end,
            ongoing,
            days_certified: (last_day - run.start).num_days() + 1,
            fit_notes: run.notes.iter().map(|n| n.reference.clone()).collect(),
        }
    });
    Summary {
        window_months,
        count_in_window: notes
            .iter()
            .filter(|n| n.issued >= from && n.issued <= today)
            .count(),
        total: notes.len(),
        days_certified_in_window: covered_days(notes, from, today),
        current_run,
        latest_fitness: latest.map(|n| if n.not_fit { "not-fit" } else { "may-be-fit" }),
        latest_issued: latest.map(|n| n.issued),
    }
}

/// Days in `[from, to]` covered by at least one note (overlaps counted once).
fn covered_days(notes: &[FitNoteFacts], from: NaiveDate, to: NaiveDate) -> i64 {
    let mut spans: Vec<(NaiveDate, NaiveDate)> = notes
        .iter()
        .filter_map(|n| {
            let start = n.start.max(from);
            let end = n.end.unwrap_or(to).min(to);
            (start <= end).then_some((start, end))
        })
        .collect();
    spans.sort();
    let mut days = 0;
    let mut reached: Option<NaiveDate> = None;
    for (start, end) in spans {
        let start = match reached {
            Some(r) if r >= start => r + chrono::Days::new(1),
            _ => start,
        };
        if start <= end {
            days += (end - start).num_days() + 1;
        }
        reached = Some(reached.map_or(end, |r| r.max(end)));
    }
    days
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    pub fn note(reference: &str, start: &str, end: Option<&str>) -> FitNoteFacts {
        FitNoteFacts {
            reference: reference.into(),
            start: d(start),
            end: end.map(d),
            issued: d(start),
            not_fit: true,
        }
    }

    #[test]
    fn runs_join_contiguous_overlapping_and_small_gaps_only() {
        let notes = vec![
            note("a", "2026-01-01", Some("2026-01-14")),
            note("b", "2026-01-15", Some("2026-01-28")), // contiguous
            note("c", "2026-01-20", Some("2026-02-10")), // overlapping
            note("d", "2026-02-18", Some("2026-03-01")), // 7-day gap: tolerated
            note("e", "2026-03-10", Some("2026-03-20")), // 8-day gap: a new run
        ];
        let r = runs(&notes, 7);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].notes.len(), 4);
        assert_eq!(
            (r[0].start, r[0].end),
            (d("2026-01-01"), Some(d("2026-03-01")))
        );
        assert_eq!(r[1].notes.len(), 1);
        assert_eq!(
            runs(&notes, 0).len(),
            3,
            "no tolerance: the gaps break runs"
        );
    }

    #[test]
    fn an_indefinite_note_absorbs_everything_after_it() {
        let notes = vec![
            note("a", "2026-01-01", None),
            note("b", "2026-09-01", Some("2026-09-10")),
        ];
        let r = runs(&notes, 0);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].end, None);
    }

    #[test]
    fn runs_do_not_depend_on_arrival_order() {
        let mut notes = vec![
            note("c", "2026-02-01", Some("2026-02-28")),
            note("a", "2026-01-01", Some("2026-01-14")),
            note("b", "2026-01-15", Some("2026-01-31")),
        ];
        let forward = runs(&notes, 0)[0]
            .notes
            .iter()
            .map(|n| n.reference.clone())
            .collect::<Vec<_>>();
        notes.reverse();
        let backward = runs(&notes, 0)[0]
            .notes
            .iter()
            .map(|n| n.reference.clone())
            .collect::<Vec<_>>();
        assert_eq!(forward, ["a", "b", "c"]);
        assert_eq!(forward, backward);
    }

    #[test]
    fn summary_counts_the_window_the_run_and_the_days() {
        let mut notes = vec![
            note("old", "2025-01-01", Some("2025-01-31")),
            note("a", "2026-09-01", Some("2026-09-14")),
            note("b", "2026-09-15", Some("2026-10-12")),
            note("c", "2026-10-10", Some("2026-12-31")), // overlaps b by three days
        ];
        notes[3].not_fit = false;
        let s = summary(&notes, d("2026-11-24"), 7, 6);
        assert_eq!(s.total, 4);
        assert_eq!(s.count_in_window, 3);
        // 2026-09-01 ..= 2026-11-24: 30 + 31 + 24 days, overlaps counted once.
        assert_eq!(s.days_certified_in_window, 85);
        let run = s.current_run.unwrap();
        assert_eq!(run.count, 3);
        assert!(run.ongoing);
        assert_eq!(run.days_certified, 85);
        assert_eq!(s.latest_fitness, Some("may-be-fit"));
    }

    #[test]
    fn a_run_that_ended_long_ago_is_not_ongoing() {
        let notes = vec![note("a", "2026-01-01", Some("2026-01-14"))];
        let s = summary(&notes, d("2026-11-24"), 7, 6);
        let run = s.current_run.unwrap();
        assert!(!run.ongoing);
        assert_eq!(run.days_certified, 14);
        assert_eq!(s.count_in_window, 0);
        assert_eq!(s.days_certified_in_window, 0);
        assert_eq!(summary(&[], d("2026-11-24"), 7, 6).current_run, None);
    }
}
