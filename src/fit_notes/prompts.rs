//! Which services' prompt rules a newly accepted fit note fires. A rule fires at most once for the
//! same notes: a prompt records the span of statements that fired it, and a rule of the same
//! service whose triggering statements overlap an earlier prompt's span stays quiet (a fourth
//! consecutive note does not re-fire "three consecutive"; a gap that starts a new run can).

use chrono::NaiveDate;
use serde::Deserialize;

use super::{FitNoteFacts, runs, window_start};

/// A rule that prompts the practice to consider referring a person to a service when a fit note
/// arrives. Versioned: the version is written on every prompt it creates. Read from the
/// configuration file (each service's `prompts`), hence the serde derives.
// Not `deny_unknown_fields`: serde cannot combine it with the flattened trigger.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PromptRule {
    /// Stable name, e.g. `three-consecutive`.
    pub id: String,
    pub version: String,
    #[serde(flatten)]
    pub trigger: PromptTrigger,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(tag = "when", rename_all = "kebab-case")]
pub enum PromptTrigger {
    /// The person's current run of consecutive fit notes reaches `count`.
    Consecutive { count: u32 },
    /// A fit note starts a new run (the first of a spell of absence).
    FirstInRun,
    /// The person has had at least `count` fit notes in the last `months` months.
    WithinMonths { count: u32, months: u32 },
}

/// A prompt already created, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastPrompt {
    /// Service id.
    pub service: String,
    pub rule: String,
    /// The span of the statements that fired it; `to` is `None` when one was indefinite.
    pub from: NaiveDate,
    pub to: Option<NaiveDate>,
}

/// A rule that fires for the new note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing<'a> {
    pub rule: &'a PromptRule,
    /// References of the statements that fired it, in time order.
    pub fit_notes: Vec<String>,
    pub from: NaiveDate,
    pub to: Option<NaiveDate>,
    /// Why, in words a clinician reads.
    pub reason: String,
}

/// How a fit note reached the gateway, which decides what its prompts are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Sent as it was issued (the API, MESH): notes arrive in the order they are written.
    Live,
    /// History taken in later (`whg import`): a practice has nothing to act on for a spell of
    /// sickness that is over, so only a run still current as of today prompts; and as the run
    /// may become current only at a later note, "first in run" fires at the first note
    /// imported while it is current (once per run, as every rule).
    Imported,
}

/// Whether a spell of absence is still current on `today`: open-ended (an indefinite note is
/// still in force), or a note starting today would still join it — as [`runs`] joins notes,
/// up to `gap_days` clear days after its last day.
pub fn is_current(run: &super::Run<'_>, gap_days: u32, today: NaiveDate) -> bool {
    run.end
        .is_none_or(|end| end + chrono::Days::new(u64::from(gap_days) + 1) >= today)
}

/// The rules of `service` that `new_note` (already in `history`) fires, as of `today`, for a
/// note that arrived as `arrival` says.
// Each argument is one fact the rules weigh; a struct of them would only rename the list.
#[allow(clippy::too_many_arguments)]
pub fn fired<'a>(
    arrival: Arrival,
    service: &str,
    rules: &'a [PromptRule],
    history: &[FitNoteFacts],
    new_note: &str,
    past: &[PastPrompt],
    gap_days: u32,
    today: NaiveDate,
) -> Vec<Firing<'a>> {
    let all_runs = runs(history, gap_days);
    let Some(run) = all_runs.iter().find(|r| r.contains(new_note)) else {
        return Vec::new();
    };
    if arrival == Arrival::Imported && !is_current(run, gap_days, today) {
        return Vec::new();
    }
    rules
        .iter()
        .filter_map(|rule| {
            let (notes, reason): (Vec<&FitNoteFacts>, String) = match rule.trigger {
                PromptTrigger::Consecutive { count } => {
                    if run.notes.len() < count as usize {
                        return None;
                    }
                    (
                        run.notes.clone(),
                        format!(
                            "{} consecutive fit notes since {}",
                            run.notes.len(),
                            run.start
                        ),
                    )
                }
                PromptTrigger::FirstInRun => {
                    let reason = match (run.notes.len(), arrival) {
                        (1, _) => "the first fit note of a spell of sickness absence",
                        (_, Arrival::Live) => return None,
                        (_, Arrival::Imported) => {
                            "a current spell of sickness absence, imported with its earlier fit notes, with no prompt yet"
                        }
                    };
                    (run.notes.clone(), reason.to_string())
                }
                PromptTrigger::WithinMonths { count, months } => {
                    let from = window_start(today, months);
                    let recent: Vec<&FitNoteFacts> = history
                        .iter()
                        .filter(|n| n.issued >= from && n.issued <= today)
                        .collect();
                    if recent.len() < count as usize
                        || !recent.iter().any(|n| n.reference == new_note)
                    {
                        return None;
                    }
                    let reason =
                        format!("{} fit note(s) in the last {months} months", recent.len());
                    (recent, reason)
                }
            };
            let from = notes.iter().map(|n| n.start).min()?;
            let to = notes
                .iter()
                .map(|n| n.end)
                .try_fold(NaiveDate::MIN, |acc, e| e.map(|e| acc.max(e)));
            let overlaps_earlier = past.iter().any(|p| {
                p.service == service
                    && p.rule == rule.id
                    && p.from <= to.unwrap_or(NaiveDate::MAX)
                    && from <= p.to.unwrap_or(NaiveDate::MAX)
            });
            if overlaps_earlier {
                return None;
            }
            let mut sorted = notes;
            sorted.sort_by_key(|n| (n.start, n.issued));
            Some(Firing {
                rule,
                fit_notes: sorted.iter().map(|n| n.reference.clone()).collect(),
                from,
                to,
                reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{d, note};
    use super::*;

    fn rule(id: &str, trigger: PromptTrigger) -> PromptRule {
        PromptRule {
            id: id.into(),
            version: "v1".into(),
            trigger,
        }
    }

    /// Feeds notes one at a time, recording each prompt as the gateway would; returns which note
    /// fired which rule.
    fn replay(
        rules: &[PromptRule],
        notes: &[FitNoteFacts],
        today: NaiveDate,
    ) -> Vec<(String, String)> {
        replay_as(Arrival::Live, rules, notes, today)
    }

    fn replay_as(
        arrival: Arrival,
        rules: &[PromptRule],
        notes: &[FitNoteFacts],
        today: NaiveDate,
    ) -> Vec<(String, String)> {
        let mut history = Vec::new();
        let mut past = Vec::new();
        let mut out = Vec::new();
        for n in notes {
            history.push(n.clone());
            for f in fired(
                arrival,
                "svc",
                rules,
                &history,
                &n.reference,
                &past,
                7,
                today,
            ) {
                past.push(PastPrompt {
                    service: "svc".into(),
                    rule: f.rule.id.clone(),
                    from: f.from,
                    to: f.to,
                });
                out.push((n.reference.clone(), f.rule.id.clone()));
            }
        }
        out
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn imported_history_prompts_only_for_a_spell_still_current() {
        let rules = [
            rule("first", PromptTrigger::FirstInRun),
            rule("three", PromptTrigger::Consecutive { count: 3 }),
        ];
        let today = d("2026-12-03");
        // A spell that ended long ago: sent live it prompted; imported it does not.
        let over = [
            note("a1", "2025-01-06", Some("2025-01-19")),
            note("a2", "2025-01-20", Some("2025-02-02")),
            note("a3", "2025-02-03", Some("2025-02-16")),
        ];
        assert_eq!(
            replay(&rules, &over, today),
            pairs(&[("a1", "first"), ("a3", "three")])
        );
        assert!(replay_as(Arrival::Imported, &rules, &over, today).is_empty());
        // A spell over its first notes and current at its last: "first in run" fires once, at
        // the note that makes it current, with "three consecutive"; a fourth fires nothing.
        let current = [
            note("b1", "2026-10-05", Some("2026-10-18")),
            note("b2", "2026-10-19", Some("2026-11-15")),
            note("b3", "2026-11-16", Some("2026-12-13")),
            note("b4", "2026-12-14", Some("2026-12-27")),
        ];
        assert_eq!(
            replay_as(Arrival::Imported, &rules, &current, today),
            pairs(&[("b3", "first"), ("b3", "three")])
        );
    }

    #[test]
    fn a_spell_is_current_until_the_gap_after_its_last_day_has_passed() {
        let gap = 7;
        let ended = [note("n", "2026-11-01", Some("2026-11-26"))];
        let run = &super::super::runs(&ended, gap)[0];
        assert!(is_current(run, gap, d("2026-11-26")), "its last day");
        assert!(is_current(run, gap, d("2026-12-03")), "the gap's last day");
        assert!(
            is_current(run, gap, d("2026-12-04")),
            "a note starting the day after the gap still joins the spell"
        );
        let joined = [
            note("n", "2026-11-01", Some("2026-11-26")),
            note("m", "2026-12-04", Some("2026-12-10")),
        ];
        assert_eq!(
            super::super::runs(&joined, gap).len(),
            1,
            "as runs() joins it"
        );
        assert!(!is_current(run, gap, d("2026-12-05")), "the day after that");
        let open = [note("o", "2020-01-01", None)];
        assert!(is_current(
            &super::super::runs(&open, gap)[0],
            gap,
            d("2026-12-03")
        ));
    }

    #[test]
    fn three_consecutive_fires_once_and_again_only_after_a_gap() {
        let rules = [rule("three", PromptTrigger::Consecutive { count: 3 })];
        let notes = [
            note("n1", "2026-01-01", Some("2026-01-14")),
            note("n2", "2026-01-15", Some("2026-01-28")),
            note("n3", "2026-01-29", Some("2026-02-11")),
            note("n4", "2026-02-12", Some("2026-02-25")), // a fourth must not re-fire
            note("m1", "2026-05-01", Some("2026-05-14")), // the gap breaks the run
            note("m2", "2026-05-15", Some("2026-05-28")),
            note("m3", "2026-05-29", Some("2026-06-11")),
        ];
        assert_eq!(
            replay(&rules, &notes, d("2026-07-01")),
            pairs(&[("n3", "three"), ("m3", "three")])
        );
    }

    #[test]
    fn a_gap_longer_than_the_tolerance_stops_a_run_firing() {
        let rules = [rule("three", PromptTrigger::Consecutive { count: 3 })];
        let notes = [
            note("n1", "2026-01-01", Some("2026-01-14")),
            note("n2", "2026-01-15", Some("2026-01-28")),
            note("n3", "2026-02-06", Some("2026-02-20")), // 8 days after n2 ends
        ];
        assert!(replay(&rules, &notes, d("2026-03-01")).is_empty());
    }

    #[test]
    fn overlapping_notes_count_as_consecutive() {
        let rules = [rule("three", PromptTrigger::Consecutive { count: 3 })];
        let notes = [
            note("n1", "2026-01-01", Some("2026-01-31")),
            note("n2", "2026-01-20", Some("2026-02-20")),
            note("n3", "2026-02-10", Some("2026-03-10")),
        ];
        assert_eq!(
            replay(&rules, &notes, d("2026-03-01")),
            pairs(&[("n3", "three")])
        );
    }

    #[test]
    fn first_in_run_fires_for_each_new_spell_only() {
        let rules = [rule("first", PromptTrigger::FirstInRun)];
        let notes = [
            note("n1", "2026-01-01", Some("2026-01-14")),
            note("n2", "2026-01-15", Some("2026-01-28")),
            note("m1", "2026-06-01", Some("2026-06-14")),
        ];
        assert_eq!(
            replay(&rules, &notes, d("2026-07-01")),
            pairs(&[("n1", "first"), ("m1", "first")])
        );
    }

    #[test]
    fn within_months_fires_once_per_window() {
        let rules = [rule(
            "six",
            PromptTrigger::WithinMonths {
                count: 1,
                months: 6,
            },
        )];
        let mut notes = vec![
            note("n1", "2026-01-01", Some("2026-01-14")),
            note("n2", "2026-03-01", Some("2026-03-14")),
        ];
        assert_eq!(
            replay(&rules, &notes, d("2026-03-20")),
            pairs(&[("n1", "six")])
        );
        // Ten months later, a note outside the earlier window fires again.
        notes.push(note("n3", "2026-11-01", Some("2026-11-14")));
        assert_eq!(
            replay(&rules, &notes, d("2026-11-20")),
            pairs(&[("n3", "six")]),
            "as of November only n3 is in the window, and it fires"
        );
        // An old note sent late (outside the window) fires nothing.
        let late = [note("old", "2025-01-01", Some("2025-01-14"))];
        assert!(replay(&rules, &late, d("2026-11-20")).is_empty());
    }

    #[test]
    fn rules_of_other_services_and_other_rules_do_not_silence_each_other() {
        let rules = [
            rule("three", PromptTrigger::Consecutive { count: 1 }),
            rule("first", PromptTrigger::FirstInRun),
        ];
        let history = [note("n1", "2026-01-01", Some("2026-01-14"))];
        let past = [PastPrompt {
            service: "other".into(),
            rule: "three".into(),
            from: d("2026-01-01"),
            to: Some(d("2026-01-14")),
        }];
        let f = fired(
            Arrival::Live,
            "svc",
            &rules,
            &history,
            "n1",
            &past,
            7,
            d("2026-01-02"),
        );
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].fit_notes, ["n1"]);
    }
}
