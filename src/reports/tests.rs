use chrono::NaiveDate;

use super::facts::{FollowUpFacts, mark_returning};
use super::*;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn referral(person: &str, route: &str, on: &str) -> ReferralFacts {
    ReferralFacts {
        referral: format!("{person}-{on}"),
        person: person.into(),
        service: "whs".into(),
        practice: "C88901".into(),
        route: route.into(),
        referred_on: day(on),
        place: "S1".into(),
        local_authority: None,
        returning: false,
        stage: Stage::Received,
        days_to_first_contact: None,
        decline_reason: None,
        support: Vec::new(),
        employment_outcome: None,
        ended_early: None,
        follow_ups: Vec::new(),
        employment_status: "employed-off-sick".into(),
        ethnicity: "not-recorded".into(),
        disability: "not-recorded".into(),
        employer_size: "not-recorded".into(),
        conditions: Vec::new(),
        age_band: None,
        feedback_allowed: true,
        evaluation_allowed: false,
    }
}

fn population(referrals: &[ReferralFacts]) -> Population<'_> {
    Population {
        referrals,
        letters: &[],
        target_days: 14,
        service_names: &[],
        local_authorities: &[],
        today: day("2026-06-30"),
    }
}

#[test]
fn names_are_unique_and_url_safe() {
    let mut names: Vec<&str> = CATALOGUE.iter().map(|r| r.name).collect();
    assert!(
        names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
    );
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CATALOGUE.len());
}

#[test]
fn returning_is_an_earlier_referral_to_the_same_service() {
    let mut facts = vec![
        referral("p1", "gp", "2026-03-01"),
        referral("p1", "gp", "2026-01-01"),
        referral("p2", "gp", "2026-02-01"),
    ];
    let mut other_service = referral("p2", "gp", "2026-05-01");
    other_service.service = "workwell".into();
    facts.push(other_service);
    mark_returning(&mut facts);
    assert!(facts[0].returning, "p1's second referral");
    assert!(!facts[1].returning, "p1's first");
    assert!(!facts[2].returning);
    assert!(!facts[3].returning, "first referral to another service");
}

#[test]
fn time_to_first_contact_bands_around_the_target() {
    let seen = |days: Option<i64>, stage: Stage, on: &str| {
        let mut f = referral("p", "gp", on);
        f.days_to_first_contact = days;
        f.stage = stage;
        let facts = [f];
        let t = report("time-to-first-contact")
            .unwrap()
            .build(&population(&facts));
        t.rows
            .iter()
            .zip(&t.cells)
            .find(|(_, c)| c[0] == 1)
            .map(|(r, _)| r.code.clone())
    };
    assert_eq!(
        seen(Some(3), Stage::Contacted, "2026-06-01").as_deref(),
        Some("0-7")
    );
    assert_eq!(
        seen(Some(14), Stage::Contacted, "2026-06-01").as_deref(),
        Some("8-14")
    );
    assert_eq!(
        seen(Some(15), Stage::Contacted, "2026-06-01").as_deref(),
        Some("15-28")
    );
    assert_eq!(
        seen(Some(40), Stage::Discharged, "2026-01-01").as_deref(),
        Some("over-28")
    );
    assert_eq!(
        seen(None, Stage::Accepted, "2026-06-20").as_deref(),
        Some("waiting-within-target")
    );
    assert_eq!(
        seen(None, Stage::Received, "2026-06-01").as_deref(),
        Some("waiting-past-target")
    );
    assert_eq!(seen(None, Stage::Declined, "2026-06-01"), None);
}

#[test]
fn each_first_contact_band_is_within_the_target_or_past_it() {
    let within: Vec<(String, bool)> = report("time-to-first-contact")
        .unwrap()
        .build(&population(&[]))
        .rows
        .iter()
        .map(|r| {
            (
                r.code.clone(),
                super::first_contact_within_target(&r.code, 14).unwrap(),
            )
        })
        .collect();
    let expected = [
        ("0-7", true),
        ("8-14", true),
        ("15-28", false),
        ("over-28", false),
        ("waiting-within-target", true),
        ("waiting-past-target", false),
    ];
    assert_eq!(within, expected.map(|(c, w)| (c.to_string(), w)).to_vec());
    assert_eq!(super::first_contact_within_target("gp", 14), None);
}

#[test]
fn follow_ups_count_each_interval() {
    let mut f = referral("p", "gp", "2026-01-01");
    f.follow_ups = vec![
        FollowUpFacts {
            interval: "4".into(),
            work_status: "off-sick".into(),
            wellbeing: None,
        },
        FollowUpFacts {
            interval: "12".into(),
            work_status: "in-work-same-employer".into(),
            wellbeing: Some(25),
        },
    ];
    let facts = [f];
    let t = report("follow-up-outcomes")
        .unwrap()
        .build(&population(&facts));
    let at = |row: &str, col: &str| {
        let r = t.rows.iter().position(|c| c.code == row).unwrap();
        let c = t.columns.iter().position(|c| c.code == col).unwrap();
        t.cells[r][c]
    };
    assert_eq!(at("off-sick", "4"), 1);
    assert_eq!(at("in-work-same-employer", "12"), 1);
    assert_eq!(t.grand_total(), 2);
}

#[test]
fn support_total_counts_referrals_not_kinds() {
    let mut a = referral("a", "gp", "2026-01-01");
    a.support = vec!["workplace-adjustments".into(), "employer-liaison".into()];
    let b = referral("b", "gp", "2026-01-01");
    let facts = [a, b];
    let t = report("support-given").unwrap().build(&population(&facts));
    assert_eq!(t.grand_total(), 1);
}

/// The published Measure definitions are what the catalogue says. Run with
/// `WHG_WRITE_PROFILES=1` to rewrite them after changing a report.
#[test]
fn measures_in_profiles_match_the_catalogue() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    for r in CATALOGUE {
        let path = dir.join(format!("Measure-{}.json", r.name));
        let expected = serde_json::to_string_pretty(&render::measure(r)).unwrap() + "\n";
        if std::env::var_os("WHG_WRITE_PROFILES").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        let found = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: WHG_WRITE_PROFILES=1 cargo test",
                path.display()
            )
        });
        assert_eq!(
            found,
            expected,
            "{} is stale: WHG_WRITE_PROFILES=1 cargo test",
            path.display()
        );
    }
}

/// A two-way report's margins are its linked report's counts as that report publishes them, so
/// one cannot fill in what the other withholds.
#[test]
fn linked_reports_withhold_alike() {
    let mut facts = Vec::new();
    for (route, n) in [("gp", 20), ("self-referral", 3), ("talking-therapies", 8)] {
        for i in 0..n {
            facts.push(referral(
                &format!("{route}{i}"),
                route,
                ["2026-01-05", "2026-02-05", "2026-03-05"][i % 3],
            ));
        }
    }
    let p = population(&facts);
    let by_route = publish(report("referrals-by-route").unwrap(), &p, 5, false);
    let by_month = publish(report("referrals-by-month").unwrap(), &p, 5, false);
    for (c, column) in by_month.columns.iter().enumerate() {
        let r = by_route
            .rows
            .iter()
            .position(|r| r.code == column.code)
            .unwrap();
        assert_eq!(
            by_month.column_totals[c], by_route.cells[r][0],
            "{}",
            column.code
        );
    }
    assert_eq!(by_month.grand_total, by_route.grand_total);
    let self_referral = by_route
        .rows
        .iter()
        .position(|r| r.code == "self-referral")
        .unwrap();
    assert_eq!(by_route.cells[self_referral][0], None);
}

#[test]
fn a_slice_withheld_in_its_breakdown_withholds_its_total() {
    let counts: std::collections::BTreeMap<String, u64> = [("S1", 30), ("S2", 3), ("S3", 9)]
        .map(|(k, v)| (k.to_string(), v))
        .into();
    assert!(withheld_in(&counts, ["S2"], 5), "under the threshold");
    assert!(withheld_in(&counts, ["S3"], 5), "hidden to protect S2");
    assert!(!withheld_in(&counts, ["S1"], 5));
    assert!(
        !withheld_in(&counts, ["S9"], 5),
        "nobody there: nothing to hide"
    );
    let facts = [referral("p", "gp", "2026-01-01")];
    let one = publish(
        report("referrals-by-route").unwrap(),
        &population(&facts),
        5,
        true,
    );
    assert_eq!(one.grand_total, None);
}

#[test]
fn people_who_referred_themselves_are_one_row_of_the_reports_by_referrer() {
    let mut own = referral("p1", "self-referral", "2026-03-01");
    own.practice = String::new();
    let mut declined = referral("p2", "self-referral", "2026-03-02");
    declined.practice = String::new();
    declined.decline_reason = Some("not-eligible".into());
    let facts = [own, declined, referral("p3", "gp", "2026-03-03")];
    let by_referrer = (report("referrals-by-practice").unwrap().build)(&population(&facts));
    let rows: Vec<(&str, &str)> = by_referrer
        .rows
        .iter()
        .map(|r| (r.code.as_str(), r.label.as_str()))
        .collect();
    assert!(
        rows.contains(&("self-referral", "Self-referral (no referring organisation)")),
        "{rows:?}"
    );
    assert!(
        !rows.iter().any(|(code, _)| code.is_empty()),
        "no blank row: {rows:?}"
    );
    let declines = (report("declines-by-referrer").unwrap().build)(&population(&facts));
    assert_eq!(declines.rows[0].code, "self-referral");
}
