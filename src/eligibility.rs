//! A service's eligibility criteria checked against what a referral (or fit note) says. Pure and
//! explainable: every criterion the service declares gets met / not met / unknown with the reason,
//! and the result names the criteria version it was checked against.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::fit_notes::window_start;

/// A service's eligibility criteria, versioned. Every criterion given must be met; one left out is
/// not checked. Read from the configuration file (each service's `eligibility`), hence the
/// serde derives.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EligibilityConfig {
    pub version: String,
    /// Refuse (422) referrals for which a criterion is not met, rather than accept them marked.
    #[serde(default)]
    pub refuse_when_not_met: bool,
    pub min_age: Option<u32>,
    pub max_age: Option<u32>,
    /// Postcode districts covered, e.g. `NE33`.
    pub postcode_districts: Option<Vec<String>>,
    /// ODS codes of the practices whose patients the service takes.
    pub registered_practices: Option<Vec<String>>,
    /// Employment statuses (employment-status codes) the service supports.
    pub employment_statuses: Option<Vec<String>>,
    #[serde(default)]
    pub long_term_condition: bool,
    /// A fit note within this many months.
    pub fit_note_within_months: Option<u32>,
    #[serde(default)]
    pub right_to_work: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Met,
    NotMet,
    Unknown,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Met => "met",
            Outcome::NotMet => "not-met",
            Outcome::Unknown => "unknown",
        }
    }
}

/// What is known about the person: `None` where the sender did not say.
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    pub birth_date: Option<NaiveDate>,
    pub postcode: Option<&'a str>,
    pub practice_ods: Option<&'a str>,
    pub employment_status: Option<&'a str>,
    /// Number of health conditions recorded; `Some(0)` when the sender said there are none.
    pub conditions: Option<usize>,
    /// Statement dates of the fit notes the gateway holds for the person.
    pub fit_notes_issued: Vec<NaiveDate>,
    pub right_to_work: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CriterionResult {
    /// An `eligibility-criterion` code.
    pub criterion: &'static str,
    pub result: Outcome,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub service: String,
    pub version: String,
    pub outcome: Outcome,
    pub criteria: Vec<CriterionResult>,
}

impl Assessment {
    pub fn failed(&self) -> impl Iterator<Item = &CriterionResult> {
        self.criteria.iter().filter(|c| c.result == Outcome::NotMet)
    }
}

/// The outward code of a UK postcode (`NE33 1AB` → `NE33`). A postcode is ASCII: anything
/// else has no district (and is never cut inside a character, which would panic).
pub fn postcode_district(postcode: &str) -> Option<String> {
    let compact: String = postcode
        .split_whitespace()
        .collect::<String>()
        .to_ascii_uppercase();
    (compact.is_ascii() && compact.len() >= 5).then(|| compact[..compact.len() - 3].to_string())
}

fn age_on(birth: NaiveDate, today: NaiveDate) -> u32 {
    let mut age = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age.max(0) as u32
}

/// Checks `subject` against `rules` (of service `service`) as of `today`.
pub fn assess(
    service: &str,
    rules: &EligibilityConfig,
    s: &Subject,
    today: NaiveDate,
) -> Assessment {
    let mut criteria = Vec::new();
    let mut push = |criterion, result, detail: String| {
        criteria.push(CriterionResult {
            criterion,
            result,
            detail,
        })
    };

    if rules.min_age.is_some() || rules.max_age.is_some() {
        let range = match (rules.min_age, rules.max_age) {
            (Some(a), Some(b)) => format!("{a} to {b}"),
            (Some(a), None) => format!("{a} or over"),
            (None, Some(b)) => format!("{b} or under"),
            (None, None) => unreachable!(),
        };
        match s.birth_date {
            None => push(
                "age",
                Outcome::Unknown,
                format!("date of birth not given; the service takes ages {range}"),
            ),
            Some(b) => {
                let age = age_on(b, today);
                let ok = rules.min_age.is_none_or(|m| age >= m)
                    && rules.max_age.is_none_or(|m| age <= m);
                push(
                    "age",
                    if ok { Outcome::Met } else { Outcome::NotMet },
                    format!("aged {age}; the service takes ages {range}"),
                );
            }
        }
    }
    if let Some(districts) = &rules.postcode_districts {
        match s.postcode.and_then(postcode_district) {
            None => push("area", Outcome::Unknown, "postcode not given".into()),
            Some(d) => {
                let ok = districts.iter().any(|x| x.eq_ignore_ascii_case(&d));
                let detail = if ok {
                    format!("postcode district {d} is in the service's area")
                } else {
                    format!(
                        "postcode district {d} is outside the service's area ({})",
                        districts.join(", ")
                    )
                };
                push(
                    "area",
                    if ok { Outcome::Met } else { Outcome::NotMet },
                    detail,
                );
            }
        }
    }
    if let Some(practices) = &rules.registered_practices {
        match s.practice_ods {
            None => push(
                "registered-practice",
                Outcome::Unknown,
                "practice not given".into(),
            ),
            Some(p) => {
                let ok = practices.iter().any(|x| x == p);
                push(
                    "registered-practice",
                    if ok { Outcome::Met } else { Outcome::NotMet },
                    if ok {
                        format!("practice {p} is one the service covers")
                    } else {
                        format!("practice {p} is not among the practices the service covers")
                    },
                );
            }
        }
    }
    if let Some(statuses) = &rules.employment_statuses {
        match s.employment_status {
            None => push(
                "employment",
                Outcome::Unknown,
                "employment status not given".into(),
            ),
            Some(e) => {
                let ok = statuses.iter().any(|x| x == e);
                push(
                    "employment",
                    if ok { Outcome::Met } else { Outcome::NotMet },
                    if ok {
                        format!("employment status '{e}' is one the service supports")
                    } else {
                        format!(
                            "employment status '{e}' is not one the service supports ({})",
                            statuses.join(", ")
                        )
                    },
                );
            }
        }
    }
    if rules.long_term_condition {
        match s.conditions {
            None => push(
                "long-term-condition",
                Outcome::Unknown,
                "health conditions not given".into(),
            ),
            Some(0) => push(
                "long-term-condition",
                Outcome::NotMet,
                "the referral records no health condition".into(),
            ),
            Some(n) => push(
                "long-term-condition",
                Outcome::Met,
                format!("{n} health condition(s) recorded"),
            ),
        }
    }
    if let Some(months) = rules.fit_note_within_months {
        let from = window_start(today, months);
        let latest = s
            .fit_notes_issued
            .iter()
            .filter(|d| **d >= from && **d <= today)
            .max();
        match latest {
            Some(d) => push(
                "recent-fit-note",
                Outcome::Met,
                format!("fit note dated {d}, within {months} months"),
            ),
            // The gateway holds only the fit notes sent to it: absence here is not evidence.
            None => push(
                "recent-fit-note",
                Outcome::Unknown,
                format!("the gateway holds no fit note from the last {months} months"),
            ),
        }
    }
    if rules.right_to_work {
        match s.right_to_work {
            None => push(
                "right-to-work",
                Outcome::Unknown,
                "right to work in the UK not stated".into(),
            ),
            Some(true) => push(
                "right-to-work",
                Outcome::Met,
                "right to work in the UK stated".into(),
            ),
            Some(false) => push(
                "right-to-work",
                Outcome::NotMet,
                "stated not to have the right to work in the UK".into(),
            ),
        }
    }
    let outcome = if criteria.iter().any(|c| c.result == Outcome::NotMet) {
        Outcome::NotMet
    } else if criteria.iter().any(|c| c.result == Outcome::Unknown) {
        Outcome::Unknown
    } else {
        Outcome::Met
    };
    Assessment {
        service: service.to_string(),
        version: rules.version.clone(),
        outcome,
        criteria,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn workwell() -> EligibilityConfig {
        EligibilityConfig {
            version: "2026-11-01".into(),
            refuse_when_not_met: false,
            min_age: Some(16),
            max_age: Some(66),
            postcode_districts: Some(vec!["NE33".into(), "NE34".into()]),
            registered_practices: None,
            employment_statuses: Some(vec!["employed-at-work".into(), "off-sick".into()]),
            long_term_condition: true,
            fit_note_within_months: Some(6),
            right_to_work: true,
        }
    }

    fn eligible() -> Subject<'static> {
        Subject {
            birth_date: Some(d("1980-05-01")),
            postcode: Some("ne33 1ab"),
            practice_ods: Some("A12345"),
            employment_status: Some("off-sick"),
            conditions: Some(2),
            fit_notes_issued: vec![d("2026-10-01")],
            right_to_work: Some(true),
        }
    }

    #[test]
    fn all_met() {
        let a = assess("ww", &workwell(), &eligible(), d("2026-11-24"));
        assert_eq!(a.outcome, Outcome::Met, "{a:?}");
        assert_eq!(a.criteria.len(), 6);
        assert_eq!(a.version, "2026-11-01");
    }

    #[test]
    fn each_failure_is_named_with_its_reason() {
        let mut s = eligible();
        s.postcode = Some("S1 2HE");
        s.birth_date = Some(d("1950-01-01"));
        s.conditions = Some(0);
        let a = assess("ww", &workwell(), &s, d("2026-11-24"));
        assert_eq!(a.outcome, Outcome::NotMet);
        let failed: Vec<&str> = a.failed().map(|c| c.criterion).collect();
        assert_eq!(failed, ["age", "area", "long-term-condition"]);
        assert!(a.criteria[1].detail.contains("S1"), "{:?}", a.criteria[1]);
    }

    #[test]
    fn missing_information_is_unknown_not_a_failure() {
        let s = Subject {
            fit_notes_issued: vec![d("2025-01-01")],
            ..Default::default()
        };
        let a = assess("ww", &workwell(), &s, d("2026-11-24"));
        assert_eq!(a.outcome, Outcome::Unknown);
        assert!(
            a.criteria.iter().all(|c| c.result == Outcome::Unknown),
            "{a:?}"
        );
    }

    #[test]
    fn ages_are_counted_to_the_birthday() {
        assert_eq!(age_on(d("2010-11-25"), d("2026-11-24")), 15);
        assert_eq!(age_on(d("2010-11-24"), d("2026-11-24")), 16);
        assert_eq!(postcode_district("NE331AB").as_deref(), Some("NE33"));
        assert_eq!(postcode_district("S1 2HE").as_deref(), Some("S1"));
        assert_eq!(postcode_district("S1"), None);
        // Not a postcode, and never a panic: multi-byte characters where the cut would fall.
        for odd in ["NE33É1A", "ÉÉÉ", "NE33 1AÉ", "日本語日本語"] {
            assert_eq!(postcode_district(odd), None, "{odd}");
        }
    }
}
