//! What became of referrals, for commissioners and service managers: aggregate reports over the
//! referrals the gateway holds, each a table of counts with small numbers suppressed, published
//! as JSON, CSV and a FHIR MeasureReport against the report's own Measure. Pure: the application
//! layer reads the records ([`facts`]), this module counts and suppresses them.
//!
//! Reports count everyone referred, whatever their consent says about their records: a
//! suppressed count discloses no one (it is not personal data), and leaving out people who said
//! no to evaluation would make the figures wrong in a way nobody could see. The evaluation
//! export, which is about people, stays for people whose consent covers evaluation only.

pub mod facts;
pub mod places;
pub mod render;
pub mod table;

use chrono::NaiveDate;

pub use facts::{ReferralFacts, ReferralRecords};
pub use table::{Category, Published, Table, suppress, withheld_in};

use crate::fhir::terminology::code_system;
use crate::workflow::Stage;

/// A letter, as the letters reports count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterFacts {
    pub service: String,
    /// A `letter-delivery-state` code.
    pub state: String,
    pub written_on: NaiveDate,
    /// Hours from writing to the practice's acceptance, for an accepted letter.
    pub hours_to_acceptance: Option<i64>,
}

/// Everything the reports are computed over, already limited to what the caller may see.
pub struct Population<'a> {
    pub referrals: &'a [ReferralFacts],
    pub letters: &'a [LetterFacts],
    /// The first-contact target in days.
    pub target_days: u32,
    /// Service ids and names, for labels.
    pub service_names: &'a [(String, String)],
    /// The listed local authorities, for the rows of the report by authority.
    pub local_authorities: &'a [places::LocalAuthority],
    /// The day the report is made, for referrals still waiting.
    pub today: NaiveDate,
}

/// One report: its name (in the URL), what it shows, and how it is counted.
pub struct Report {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    build: fn(&Population<'_>) -> Table,
    /// For a two-way report: the one-way report whose rows are its columns (so its column
    /// totals are that report's counts, and must be suppressed alike).
    linked: Option<&'static str>,
}

impl Report {
    pub fn build(&self, population: &Population<'_>) -> Table {
        (self.build)(population)
    }

    /// The canonical URL of the report's published Measure (`profiles/Measure-{name}.json`).
    pub fn measure_url(&self) -> String {
        format!(
            "{}/Measure/{}",
            crate::fhir::systems::CANONICAL_BASE,
            self.name
        )
    }
}

/// Every report, in the order the list shows them.
pub const CATALOGUE: &[Report] = &[
    Report {
        linked: None,
        name: "referrals-by-route",
        title: "Referrals by route",
        description: "Referrals received, by the way they came (GP, self-referral, employer, …).",
        build: |p| {
            coded_one_way(p, "Referral route", "referral-route", |f| {
                vec![f.route.clone()]
            })
        },
    },
    Report {
        linked: None,
        name: "referrals-by-practice",
        title: "Referrals by referrer",
        description: "Referrals received, by the referring organisation (ODS code).",
        build: |p| {
            let mut t = Table::one_way("Referrer (ODS code)", Vec::new(), "Referrals");
            for f in p.referrals {
                let (row, label) = referrer(f);
                t.count(row, || label);
            }
            sort_rows(&mut t);
            t
        },
    },
    Report {
        linked: None,
        name: "referrals-by-service",
        title: "Referrals by service",
        description: "Referrals received, by the service they were addressed to.",
        build: |p| {
            let rows = p
                .service_names
                .iter()
                .map(|(id, name)| Category::new(id.clone(), name.clone()))
                .collect();
            let mut t = Table::one_way("Service", rows, "Referrals");
            for f in p.referrals {
                t.count(&f.service, || f.service.clone());
            }
            t
        },
    },
    Report {
        linked: Some("referrals-by-route"),
        name: "referrals-by-month",
        title: "Referrals per month by route",
        description: "Referrals received each month (by the date the referral was made), by route.",
        build: |p| {
            let mut columns = categories("referral-route");
            columns.push(Category::new("not-recorded", "Not recorded"));
            let mut t = Table::two_way("Month", Vec::new(), "Referral route", columns);
            for f in p.referrals {
                let month = f.referred_on.format("%Y-%m").to_string();
                let label = month.clone();
                t.count_at(&month, || label, &f.route);
            }
            sort_rows(&mut t);
            t
        },
    },
    Report {
        linked: None,
        name: "referrals-by-place",
        title: "Referrals by place",
        description: "Referrals received, by the postcode district the person lives in.",
        build: |p| {
            let mut t = Table::one_way("Postcode district", Vec::new(), "Referrals");
            for f in p.referrals {
                t.count(&f.place, || f.place.clone());
            }
            sort_rows(&mut t);
            t
        },
    },
    Report {
        linked: None,
        name: "referrals-by-local-authority",
        title: "Referrals by local authority",
        description: "Referrals received, by the local authority the person lives in (found from the postcode district, by the gateway's list of local authorities).",
        build: |p| {
            let mut rows: Vec<Category> = p
                .local_authorities
                .iter()
                .map(|la| Category::new(la.code.clone(), la.name.clone()))
                .collect();
            rows.push(Category::new(
                places::NOT_LISTED,
                "Not in a listed local authority",
            ));
            let mut t = Table::one_way("Local authority", rows, "Referrals");
            for f in p.referrals {
                let row = f.local_authority.as_deref().unwrap_or(places::NOT_LISTED);
                t.count(row, || row.to_string());
            }
            t
        },
    },
    Report {
        linked: None,
        name: "new-and-returning",
        title: "New and returning people",
        description: "Referrals of people referred to the same service for the first time, and of people referred to it before (derived from the records, never typed in).",
        build: |p| {
            let rows = vec![
                Category::new("new", "New to the service"),
                Category::new("returning", "Referred to the service before"),
            ];
            let mut t = Table::one_way("New or returning", rows, "Referrals");
            for f in p.referrals {
                t.count(if f.returning { "returning" } else { "new" }, String::new);
            }
            t
        },
    },
    Report {
        linked: None,
        name: "time-to-first-contact",
        title: "Time from referral to first contact",
        description: "Days from the referral to the service's first contact with the person, against the first-contact target; referrals still waiting by whether the target has passed.",
        build: |p| {
            let target = i64::from(p.target_days);
            let rows = first_contact_bands(target);
            let mut t = Table::one_way("Days to first contact", rows.clone(), "Referrals");
            for f in p.referrals {
                if let Some(band) = first_contact_band(f, target, p) {
                    t.count(&band, String::new);
                }
            }
            t
        },
    },
    Report {
        linked: None,
        name: "declines-by-reason",
        title: "Referrals declined, by reason",
        description: "Referrals the service declined at triage or after, by the coded reason (the inappropriate-referral feedback).",
        build: |p| {
            coded_one_way(p, "Decline reason", "referral-decline-reason", |f| {
                f.decline_reason.iter().cloned().collect()
            })
        },
    },
    Report {
        linked: Some("declines-by-reason"),
        name: "declines-by-referrer",
        title: "Referrals declined, by referrer and reason",
        description: "Declined referrals by referring organisation and reason, so a practice sending referrals the service cannot take can be told.",
        build: |p| {
            let columns = categories("referral-decline-reason");
            let mut t =
                Table::two_way("Referrer (ODS code)", Vec::new(), "Decline reason", columns);
            for f in p.referrals {
                if let Some(reason) = &f.decline_reason {
                    let (row, label) = referrer(f);
                    t.count_at(row, || label, reason);
                }
            }
            sort_rows(&mut t);
            t
        },
    },
    Report {
        linked: None,
        name: "support-given",
        title: "Support given",
        description: "Referrals in which each kind of support was given. A referral with several kinds is counted in each; the total counts referrals given any support.",
        build: |p| {
            let mut t = coded_one_way(p, "Support given", "support-given", |f| f.support.clone());
            t.distinct_total =
                Some(p.referrals.iter().filter(|f| !f.support.is_empty()).count() as u64);
            t
        },
    },
    Report {
        linked: None,
        name: "discharge-outcomes",
        title: "Work outcomes at discharge",
        description: "Discharged referrals by the person's work situation when support ended.",
        build: |p| {
            coded_one_way(p, "Employment outcome", "employment-outcome", |f| {
                f.employment_outcome.iter().cloned().collect()
            })
        },
    },
    Report {
        linked: None,
        name: "ended-early",
        title: "Support ended early, by reason",
        description: "Discharged referrals whose support ended before it was planned to, by reason.",
        build: |p| {
            coded_one_way(
                p,
                "Reason support ended early",
                "support-ended-reason",
                |f| f.ended_early.iter().cloned().collect(),
            )
        },
    },
    Report {
        linked: None,
        name: "follow-up-outcomes",
        title: "Outcomes at follow-up",
        description: "What became of people weeks after discharge: their work situation at each follow-up interval.",
        build: |p| {
            let columns = categories("follow-up-interval");
            let rows = categories("follow-up-work-status");
            let mut t = Table::two_way("Work situation", rows, "Weeks after discharge", columns);
            for f in p.referrals {
                for u in &f.follow_ups {
                    t.count_at(&u.work_status, || u.work_status.clone(), &u.interval);
                }
            }
            t
        },
    },
    Report {
        linked: None,
        name: "letters",
        title: "Letters to referrers, by delivery state",
        description: "Letters the services wrote to referrers, by where their delivery stands (accepted, rejected, dead, …).",
        build: |p| {
            let mut t = Table::one_way(
                "Delivery state",
                categories("letter-delivery-state"),
                "Letters",
            );
            for l in p.letters {
                t.count(&l.state, || l.state.clone());
            }
            t
        },
    },
    Report {
        linked: None,
        name: "letters-time-to-acceptance",
        title: "Time from letter to acceptance",
        description: "Accepted letters by the time from writing to the practice system's acceptance.",
        build: |p| {
            let rows = vec![
                Category::new("under-1-hour", "Under 1 hour"),
                Category::new("1-24-hours", "1 to 24 hours"),
                Category::new("1-7-days", "1 to 7 days"),
                Category::new("over-7-days", "Over 7 days"),
            ];
            let mut t = Table::one_way("Time to acceptance", rows, "Letters");
            for h in p.letters.iter().filter_map(|l| l.hours_to_acceptance) {
                let band = match h {
                    ..1 => "under-1-hour",
                    1..24 => "1-24-hours",
                    24..168 => "1-7-days",
                    _ => "over-7-days",
                };
                t.count(band, String::new);
            }
            t
        },
    },
    Report {
        linked: None,
        name: "consent-coverage",
        title: "Consent coverage",
        description: "Referrals by what the person's consent allows today: feedback to the referrer, use of their data for evaluation, both or neither.",
        build: |p| {
            let rows = vec![
                Category::new("both", "Feedback and evaluation"),
                Category::new("feedback-only", "Feedback only"),
                Category::new("evaluation-only", "Evaluation only"),
                Category::new("neither", "Neither"),
            ];
            let mut t = Table::one_way("Consent allows", rows, "Referrals");
            for f in p.referrals {
                let row = match (f.feedback_allowed, f.evaluation_allowed) {
                    (true, true) => "both",
                    (true, false) => "feedback-only",
                    (false, true) => "evaluation-only",
                    (false, false) => "neither",
                };
                t.count(row, String::new);
            }
            t
        },
    },
    Report {
        linked: None,
        name: "ethnicity",
        title: "Referrals by ethnic group",
        description: "Referrals by the person's ethnic group (ONS Census 2021 categories), with those who preferred not to say and those not recorded.",
        build: |p| {
            coded_one_way(p, "Ethnic group", "ethnic-group", |f| {
                vec![f.ethnicity.clone()]
            })
        },
    },
    Report {
        linked: None,
        name: "disability",
        title: "Referrals by disability",
        description: "Referrals by whether the person is disabled as the Equality Act 2010 defines it.",
        build: |p| {
            coded_one_way(p, "Disability", "disability-status", |f| {
                vec![f.disability.clone()]
            })
        },
    },
    Report {
        linked: None,
        name: "employer-size",
        title: "Referrals by employer size",
        description: "Referrals by the size of the person's employer, where known.",
        build: |p| {
            coded_one_way(p, "Employer size", "employer-size-band", |f| {
                vec![f.employer_size.clone()]
            })
        },
    },
];

/// The report `report` over `population`, suppressed for publication under `threshold`: a
/// two-way report's margins as its linked one-way report publishes them.
///
/// `withhold_total`: the population is a slice whose own count is withheld elsewhere (see
/// [`table::withheld_in`]).
pub fn publish(
    report: &Report,
    population: &Population<'_>,
    threshold: u64,
    withhold_total: bool,
) -> Published {
    let mut table = report.build(population);
    table.withhold_total = withhold_total;
    if let Some(linked) = report.linked.and_then(self::report) {
        let margins = suppress(&linked.build(population), threshold);
        let columns = table
            .columns
            .iter()
            .map(|c| {
                let r = margins
                    .rows
                    .iter()
                    .position(|row| row.code == c.code)
                    .expect("a linked report has a row for every column");
                margins.cells[r][0]
            })
            .collect();
        table.published_margins = Some((columns, margins.grand_total));
    }
    suppress(&table, threshold)
}

/// The report called `name`.
pub fn report(name: &str) -> Option<&'static Report> {
    CATALOGUE.iter().find(|r| r.name == name)
}

/// A CodeSystem's codes as categories, in published order.
fn categories(system: &str) -> Vec<Category> {
    code_system(system)
        .concepts
        .iter()
        .map(|(c, d)| Category::new(c.clone(), d.clone()))
        .collect()
}

/// A one-way report over a CodeSystem: every code a row (so an empty row shows as a count), each
/// referral counted in the rows `codes_of` gives (a code outside the CodeSystem gets its own row).
fn coded_one_way(
    p: &Population<'_>,
    dimension: &'static str,
    system: &str,
    codes_of: impl Fn(&ReferralFacts) -> Vec<String>,
) -> Table {
    let mut t = Table::one_way(dimension, categories(system), "Referrals");
    if system == "referral-route" {
        t.rows.push(Category::new("not-recorded", "Not recorded"));
        t.cells.push(vec![0]);
    }
    for f in p.referrals {
        for code in codes_of(f) {
            t.count(&code, || code.clone());
        }
    }
    t
}

/// Rows in code order (months, ODS codes, districts).
fn sort_rows(t: &mut Table) {
    let mut order: Vec<usize> = (0..t.rows.len()).collect();
    order.sort_by(|&a, &b| t.rows[a].code.cmp(&t.rows[b].code));
    t.rows = order.iter().map(|&i| t.rows[i].clone()).collect();
    t.cells = order.iter().map(|&i| t.cells[i].clone()).collect();
}

fn first_contact_bands(target: i64) -> Vec<Category> {
    let half = (target / 2).max(1);
    vec![
        Category::new(format!("0-{half}"), format!("0 to {half} days")),
        Category::new(
            format!("{}-{target}", half + 1),
            format!("{} to {target} days (within the target)", half + 1),
        ),
        Category::new(
            format!("{}-{}", target + 1, 2 * target),
            format!("{} to {} days (past the target)", target + 1, 2 * target),
        ),
        Category::new(
            format!("over-{}", 2 * target),
            format!("Over {} days (past the target)", 2 * target),
        ),
        Category::new(
            "waiting-within-target",
            "Not yet contacted, target not yet passed",
        ),
        Category::new("waiting-past-target", "Not yet contacted, target passed"),
    ]
}

/// Whether a row of the time-to-first-contact report is within the first-contact target of
/// `target_days` (contacted within it, or waiting and not yet past it): `None` for a row that is
/// not one of its bands.
pub fn first_contact_within_target(code: &str, target_days: u32) -> Option<bool> {
    let bands = first_contact_bands(i64::from(target_days));
    let at = bands.iter().position(|b| b.code == code)?;
    // The bands in order: two within the target, two past it, then waiting within and past.
    Some(matches!(at, 0 | 1 | 4))
}

/// The band a referral falls in; `None` for a referral closed without a contact (declined at
/// triage, or withdrawn), which the target does not apply to.
fn first_contact_band(f: &ReferralFacts, target: i64, p: &Population<'_>) -> Option<String> {
    let half = (target / 2).max(1);
    let band = |days: i64| {
        if days <= half {
            format!("0-{half}")
        } else if days <= target {
            format!("{}-{target}", half + 1)
        } else if days <= 2 * target {
            format!("{}-{}", target + 1, 2 * target)
        } else {
            format!("over-{}", 2 * target)
        }
    };
    match f.days_to_first_contact {
        Some(days) => Some(band(days)),
        None if matches!(f.stage, Stage::Received | Stage::Accepted) => {
            let waited = (p.today - f.referred_on).num_days();
            Some(
                if waited > target {
                    "waiting-past-target"
                } else {
                    "waiting-within-target"
                }
                .into(),
            )
        }
        None => None,
    }
}

/// A referral's row in the reports by referrer: its practice, or one row for the people who
/// referred themselves (no organisation referred them).
fn referrer(f: &ReferralFacts) -> (&str, String) {
    if f.practice.is_empty() {
        (
            "self-referral",
            "Self-referral (no referring organisation)".to_string(),
        )
    } else {
        (&f.practice, f.practice.clone())
    }
}

#[cfg(test)]
mod tests;
