//! What the reports count, read out of the stored FHIR records of one referral: plain values,
//! with nothing that names the person (the person's key is kept only to tell new from returning
//! and to count people, and never leaves this module's callers). Pure.

use chrono::NaiveDate;
use serde_json::Value;

use crate::fhir::systems;
use crate::fhir::terminology::code_system;
use crate::workflow::{self, Stage};

/// One referral, as the reports see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralFacts {
    /// The referral's ServiceRequest id: to match its letters, never published.
    pub referral: String,
    /// The person's key in the store (their Patient id): used to tell new from returning and to
    /// count people, never published.
    pub person: String,
    /// The configured service id.
    pub service: String,
    /// The referring organisation's ODS code.
    pub practice: String,
    /// A `referral-route` code, or `not-recorded`.
    pub route: String,
    pub referred_on: NaiveDate,
    /// The outward code of the person's postcode (e.g. `S1`), or `unknown`.
    pub place: String,
    /// The code of the local authority the district is listed under (set by the application
    /// layer from the configured list; `None` when none holds it).
    pub local_authority: Option<String>,
    /// Whether the person had been referred to the same service before (derived, never typed).
    pub returning: bool,
    pub stage: Stage,
    /// Days from referral to the service's first contact.
    pub days_to_first_contact: Option<i64>,
    /// A `referral-decline-reason` code, for a declined referral.
    pub decline_reason: Option<String>,
    /// `support-given` codes, once each.
    pub support: Vec<String>,
    /// An `employment-outcome` code at discharge.
    pub employment_outcome: Option<String>,
    /// A `support-ended-reason` code when support ended early.
    pub ended_early: Option<String>,
    /// `(follow-up-interval, follow-up-work-status, SWEMWBS total)` for each follow-up.
    pub follow_ups: Vec<FollowUpFacts>,
    /// An `employment-status` code at referral, or `not-recorded`.
    pub employment_status: String,
    /// An `ethnic-group` code (ONS 2021), `prefer-not-to-say` or `not-recorded`.
    pub ethnicity: String,
    /// A `disability-status` code, `prefer-not-to-say` or `not-recorded`.
    pub disability: String,
    /// An `employer-size-band` code, or `not-recorded`.
    pub employer_size: String,
    /// `health-condition-category` codes of the referral's conditions.
    pub conditions: Vec<String>,
    /// The person's age band on the day of referral.
    pub age_band: Option<&'static str>,
    /// Whether the person's consent lets the service send feedback to the referring practice,
    /// and lets their data be used for evaluation, as of the report.
    pub feedback_allowed: bool,
    pub evaluation_allowed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpFacts {
    pub interval: String,
    pub work_status: String,
    pub wellbeing: Option<u8>,
}

/// The stored records of one referral a report reads, as the store holds them.
pub struct ReferralRecords<'a> {
    pub service_request: &'a Value,
    /// The Patient version the referral came with.
    pub patient: &'a Value,
    pub task: Option<&'a Value>,
    /// The Encounter the Task names as first contact.
    pub first_contact: Option<&'a Value>,
    /// The ServiceRequest's supportingInfo Observations and reasonReference Conditions.
    pub supporting: &'a [Value],
    /// The follow-up Observations the Task names.
    pub follow_ups: &'a [Value],
    pub service: &'a str,
    pub practice: &'a str,
    pub feedback_allowed: bool,
    pub evaluation_allowed: bool,
}

/// The code a concept holds from the project's CodeSystem `system_name`, if it is one of that
/// CodeSystem's codes: anything else a sender put there is counted as not recorded, so no text
/// of a sender's can become a row of a published report.
fn code_in<'a>(concept: &'a Value, system_name: &str) -> Option<&'a str> {
    let system = systems::local_code_system(system_name);
    concept["coding"]
        .as_array()?
        .iter()
        .filter(|c| c["system"] == system.as_str())
        .filter_map(|c| c["code"].as_str())
        .find(|code| code_system(system_name).display(code).is_some())
}

/// The day a FHIR date or dateTime names, as its writer stated it (the local date of a time
/// with an offset, as the workflow reads a referral's date), not moved to UTC.
fn date_of(text: Option<&str>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text?.get(..10)?, "%Y-%m-%d").ok()
}

/// Age band at a date, as evaluations report them.
pub fn age_band(birth_date: NaiveDate, on: NaiveDate) -> &'static str {
    let age = on.years_since(birth_date).unwrap_or(0);
    match age {
        0..=24 => "16-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        _ => "65+",
    }
}

/// The outward code (postcode district) of a UK postcode: everything before the inward code's
/// last three characters.
pub fn postcode_district(postcode: &str) -> Option<String> {
    let compact: String = postcode
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    (compact.len() >= 5 && compact.len() <= 7).then(|| compact[..compact.len() - 3].to_string())
}

/// The facts of one referral; `None` for a ServiceRequest with no date (nothing to count it in).
pub fn referral_facts(r: &ReferralRecords<'_>) -> Option<ReferralFacts> {
    let sr = r.service_request;
    let referred_on = date_of(sr["authoredOn"].as_str())?;
    let route = sr["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == systems::SOURCE_OF_SERVICE_REQUEST_EXT)
        .find_map(|e| code_in(&e["valueCodeableConcept"], "referral-route"))
        .unwrap_or("not-recorded")
        .to_string();
    let place = r.patient["address"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["postalCode"].as_str())
        .filter(|pc| crate::fhir::identifiers::is_uk_postcode(&pc.to_ascii_uppercase()))
        .find_map(postcode_district)
        .unwrap_or_else(|| "unknown".into());
    let task = r.task;
    let stage = workflow::stage_of(task);
    let first_contact = r
        .first_contact
        .and_then(|e| date_of(e["period"]["start"].as_str()));
    let output_codes = |kind: &str, system: &str| -> Vec<String> {
        workflow::outputs(task, kind)
            .filter_map(|o| code_in(&o["valueCodeableConcept"], system).map(str::to_string))
            .collect()
    };
    let mut support = output_codes("support-given", "support-given");
    support.sort();
    support.dedup();
    let decline_reason = (stage == Stage::Declined)
        .then(|| {
            workflow::inputs(task, "decline-reason")
                .find_map(|i| code_in(&i["valueCodeableConcept"], "referral-decline-reason"))
                .map(str::to_string)
        })
        .flatten();
    let follow_ups = r
        .follow_ups
        .iter()
        .filter_map(|o| {
            let component = |code: &str| {
                o["component"]
                    .as_array()?
                    .iter()
                    .find(|c| code_in(&c["code"], "observation-type") == Some(code))
            };
            Some(FollowUpFacts {
                interval: code_in(
                    &component("follow-up-interval")?["valueCodeableConcept"],
                    "follow-up-interval",
                )?
                .to_string(),
                work_status: code_in(
                    &component("follow-up-work-status")?["valueCodeableConcept"],
                    "follow-up-work-status",
                )?
                .to_string(),
                wellbeing: component("wellbeing-swemwbs")
                    .and_then(|c| c["valueInteger"].as_u64())
                    .and_then(|v| u8::try_from(v).ok()),
            })
        })
        .collect();
    let observation = |code: &str| {
        r.supporting.iter().find(|o| {
            o["resourceType"] == "Observation"
                && code_in(&o["code"], "observation-type") == Some(code)
        })
    };
    let coded_or_absent =
        |o: Option<&Value>, system: &str| -> String { crate::monitoring::answer_of(o, system) };
    let employment_status = coded_or_absent(observation("employment-status"), "employment-status");
    let employer_size = r
        .supporting
        .iter()
        .filter(|o| o["resourceType"] == "Observation")
        .flat_map(|o| o["component"].as_array().into_iter().flatten())
        .find(|c| code_in(&c["code"], "observation-type") == Some("employer-size"))
        .map(|c| coded_or_absent(Some(c), "employer-size-band"))
        .unwrap_or_else(|| "not-recorded".into());
    let mut conditions: Vec<String> = r
        .supporting
        .iter()
        .filter(|c| c["resourceType"] == "Condition")
        .flat_map(|c| c["category"].as_array().into_iter().flatten())
        .filter_map(|c| code_in(c, "health-condition-category").map(str::to_string))
        .collect();
    conditions.sort();
    conditions.dedup();
    let age_band = r.patient["birthDate"]
        .as_str()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(|b| age_band(b, referred_on));
    Some(ReferralFacts {
        referral: sr["id"].as_str().unwrap_or_default().to_string(),
        person: r.patient["id"].as_str().unwrap_or_default().to_string(),
        service: r.service.to_string(),
        practice: r.practice.to_string(),
        route,
        referred_on,
        place,
        local_authority: None,
        returning: false,
        stage,
        days_to_first_contact: first_contact.map(|c| (c - referred_on).num_days()),
        decline_reason,
        support,
        employment_outcome: output_codes("employment-outcome", "employment-outcome")
            .into_iter()
            .next(),
        ended_early: output_codes("ended-early-reason", "support-ended-reason")
            .into_iter()
            .next(),
        follow_ups,
        employment_status,
        ethnicity: crate::monitoring::ethnic_group_of(r.patient),
        disability: crate::monitoring::disability_of(observation("disability-status")),
        employer_size,
        conditions,
        age_band,
        feedback_allowed: r.feedback_allowed,
        evaluation_allowed: r.evaluation_allowed,
    })
}

/// Marks each referral of a person who had an earlier referral to the same service as
/// returning. Referrals on the same day are told apart by their order in `facts`.
pub fn mark_returning(facts: &mut [ReferralFacts]) {
    let mut order: Vec<usize> = (0..facts.len()).collect();
    order.sort_by(|&a, &b| {
        (&facts[a].service, &facts[a].person, facts[a].referred_on, a).cmp(&(
            &facts[b].service,
            &facts[b].person,
            facts[b].referred_on,
            b,
        ))
    });
    let mut previous: Option<(String, String)> = None;
    for i in order {
        let key = (facts[i].service.clone(), facts[i].person.clone());
        facts[i].returning = previous.as_ref() == Some(&key);
        previous = Some(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postcode_districts() {
        assert_eq!(postcode_district("S1 2HE").as_deref(), Some("S1"));
        assert_eq!(postcode_district("s102ab").as_deref(), Some("S10"));
        assert_eq!(postcode_district("SW1A 1AA").as_deref(), Some("SW1A"));
        assert_eq!(postcode_district("ZZ99 3VZ").as_deref(), Some("ZZ99"));
        assert_eq!(postcode_district("S1"), None);
    }
}
