//! The aggregate reports: who may read which services' figures, the records read for them, and
//! the report made, suppressed and audited. The counting itself is [`crate::reports`]'.

use chrono::{Datelike, NaiveDate, Utc};
use serde_json::Value;

use super::Caller;
use crate::access::consent_file;
use crate::audit::{Event, Kind};
use crate::caller::Role;
use crate::config::Config;
use crate::consent::Question;
use crate::delivery::state::DeliveryState;
use crate::delivery::worker::workflow_task;
use crate::fhir::search::{SearchRequest, Tenancy};
use crate::fhir::{IssueType, Issues};
use crate::reports::facts::{self, ReferralRecords};
use crate::reports::places;
use crate::reports::render::Scope;
use crate::reports::{self, LetterFacts, Population, Published, ReferralFacts, Report};
use crate::services::Service;
use crate::store::{AuditTrail, DeliveryFilter, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReportsError {
    /// The caller's role reads no reports, or not those of the service asked for.
    #[error("{0}")]
    Forbidden(String),
    #[error("there is no report called {0}")]
    UnknownReport(String),
    /// The filters are not ones the reports take.
    #[error("invalid report filters")]
    BadFilter(Issues),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a report is limited to, as the caller asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// A service id.
    pub service: Option<String>,
    /// First and last month, `YYYY-MM`, inclusive.
    pub from: Option<String>,
    pub to: Option<String>,
    /// A postcode district.
    pub place: Option<String>,
}

/// A report made for a caller.
pub struct Made {
    pub report: &'static Report,
    pub published: Published,
    pub scope: Scope,
    /// When it was made (RFC 3339).
    pub generated: String,
    /// The period it covers, as dates.
    pub period: (String, String),
}

/// The services whose reports the caller reads: a commissioner, the services that name it as a
/// commissioner; a service's own client (its managers), its own service; nobody else.
pub fn readable_services<'c>(
    config: &'c Config,
    caller: &Caller<'_>,
) -> Result<Vec<&'c Service>, ReportsError> {
    let principal = caller.principal;
    if !principal.has_scope(crate::caller::scope::REPORTS) {
        return Err(ReportsError::Forbidden(format!(
            "reading reports needs the scope {}",
            crate::caller::scope::REPORTS
        )));
    }
    let code = principal.organisation_code();
    let services: Vec<&Service> = match principal.role {
        Role::Commissioner => config
            .services
            .iter()
            .filter(|s| s.commissioners.iter().any(|c| c.eq_ignore_ascii_case(code)))
            .collect(),
        Role::Service => config.services.iter().filter(|s| s.id == code).collect(),
        Role::Practice
        | Role::TalkingTherapies
        | Role::Physiotherapy
        | Role::SecondaryCare
        | Role::VoluntarySector
        | Role::Employer
        | Role::InformationGovernance
        | Role::Operations => {
            return Err(ReportsError::Forbidden(format!(
                "{} clients read no reports: they are for commissioners and service managers",
                principal.role.as_str()
            )));
        }
    };
    if services.is_empty() {
        return Err(ReportsError::Forbidden(format!(
            "{code} commissions none of this gateway's services: a service names its commissioners in its configuration"
        )));
    }
    Ok(services)
}

fn month(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()
}

/// Checks the filters: every problem at once, each at its parameter.
fn check(
    filters: &Filters,
    services: &[&Service],
    listed: &[places::LocalAuthority],
) -> Result<(), ReportsError> {
    let mut issues = Issues::new();
    for (name, value) in [("from", &filters.from), ("to", &filters.to)] {
        if let Some(v) = value
            && (v.len() != 7 || month(v).is_none())
        {
            issues.error(
                IssueType::Value,
                name,
                format!("'{v}' is not a month: use YYYY-MM, e.g. 2026-04"),
            );
        }
    }
    if let (Some(f), Some(t)) = (
        filters.from.as_deref().and_then(month),
        filters.to.as_deref().and_then(month),
    ) && f > t
    {
        issues.error(
            IssueType::Value,
            "to",
            "the last month is before the first: swap from and to",
        );
    }
    if let Some(place) = &filters.place {
        let upper = place.to_ascii_uppercase();
        if places::is_local_authority_code(&upper) {
            if !listed.iter().any(|la| la.code == upper) {
                issues.error(
                    IssueType::Value,
                    "place",
                    format!("'{place}' is not one of the local authorities this gateway lists ([[local_authorities]] in its configuration)"),
                );
            }
        } else if !places::is_district(place) {
            issues.error(
                IssueType::Value,
                "place",
                format!("'{place}' is not a postcode district or a local authority: use the outward code, e.g. S1 or S10, or the authority's ONS code, e.g. E08000019"),
            );
        }
    }
    if let Some(service) = &filters.service
        && !services.iter().any(|s| &s.id == service)
    {
        return Err(ReportsError::Forbidden(format!(
            "the service '{service}' is not one whose reports this client reads"
        )));
    }
    issues.into_result(()).map_err(ReportsError::BadFilter)
}

/// The report `name`, made for the caller over the services it may read, limited by `filters`.
/// Audited (which report, for whom, over what; never a person, for there is none in it).
pub async fn make(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    name: &str,
    filters: &Filters,
) -> Result<Made, ReportsError> {
    let mut made = make_several(store, config, caller, &[name], filters).await?;
    Ok(made.remove(0))
}

/// The reports `names`, in that order, as [`make`] makes each, over one reading of the records
/// (a dashboard page shows several), audited together.
pub async fn make_several(
    store: &dyn Store,
    config: &Config,
    caller: &Caller<'_>,
    names: &[&str],
    filters: &Filters,
) -> Result<Vec<Made>, ReportsError> {
    let services = readable_services(config, caller)?;
    let wanted = names
        .iter()
        .map(|name| {
            reports::report(name).ok_or_else(|| ReportsError::UnknownReport(name.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check(filters, &services, &config.local_authorities)?;
    let now = Utc::now();
    let today = now.date_naive();
    let (mut referrals, letters) = gather(
        store,
        &services,
        if config.reports.include_test_tenant {
            &[]
        } else {
            &config.auth.test_organisations
        },
        now,
    )
    .await?;
    facts::mark_returning(&mut referrals);
    for f in &mut referrals {
        f.local_authority =
            places::local_authority_of(&f.place, &config.local_authorities).map(str::to_string);
    }

    let from = filters.from.as_deref().and_then(month);
    let to = filters.to.as_deref().and_then(month).map(end_of_month);
    let place = filters.place.as_ref().map(|p| p.to_ascii_uppercase());
    // A place is a local authority (by its code) or a postcode district: what a referral is
    // compared with, and what the breakdown of a place-limited report is by.
    let by_authority = place
        .as_deref()
        .is_some_and(places::is_local_authority_code);
    let place_of = |f: &ReferralFacts| -> String {
        if by_authority {
            f.local_authority
                .clone()
                .unwrap_or_else(|| places::NOT_LISTED.to_string())
        } else {
            f.place.clone()
        }
    };
    let in_service = |f: &ReferralFacts| filters.service.as_ref().is_none_or(|s| &f.service == s);
    let in_months = |f: &ReferralFacts| {
        from.is_none_or(|m| f.referred_on >= m) && to.is_none_or(|m| f.referred_on <= m)
    };
    let in_place = |f: &ReferralFacts| place.as_ref().is_none_or(|p| &place_of(f) == p);
    let service_names: Vec<(String, String)> = services
        .iter()
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    let threshold = config.reports.suppression_threshold;
    let target_days = config.workflow.first_contact_target_days;
    // Unfiltered, the period starts with the month of the first referral the caller may see at
    // all: never a date of the slice asked for (a rare district's only referral would be dated
    // to the day by it, whatever its counts withhold).
    let first_month = referrals
        .iter()
        .map(|f| f.referred_on)
        .min()
        .unwrap_or(today)
        .with_day(1)
        .expect("the first of a month");
    // The referrals `keep` keeps, and their letters.
    let over = |keep: &dyn Fn(&ReferralFacts) -> bool| -> (Vec<ReferralFacts>, Vec<LetterFacts>) {
        let kept: Vec<ReferralFacts> = referrals.iter().filter(|f| keep(f)).cloned().collect();
        let ids: std::collections::HashSet<&str> =
            kept.iter().map(|f| f.referral.as_str()).collect();
        let letters = letters
            .iter()
            .filter(|(referral, _)| ids.contains(referral.as_str()))
            .map(|(_, l)| l.clone())
            .collect();
        (kept, letters)
    };
    // What every report is made over, and says it covers: the same for each of them.
    let (asked_referrals, asked_letters) = over(&|f| in_service(f) && in_months(f) && in_place(f));
    let scope = Scope {
        services: services
            .iter()
            .filter(|s| filters.service.as_ref().is_none_or(|id| &s.id == id))
            .map(|s| s.id.clone())
            .collect(),
        from: filters.from.clone(),
        to: filters.to.clone(),
        place: place.clone(),
    };
    let period = (
        from.unwrap_or(first_month).to_string(),
        to.map_or(today, |t| t.min(today)).to_string(),
    );
    let covered = format!(
        "over services {} ({} to {}{})",
        scope.services.join(", "),
        period.0,
        period.1,
        scope
            .place
            .as_ref()
            .map(|p| format!(", {p}"))
            .unwrap_or_default()
    );
    let generated = crate::fhir::search::format_instant(now);
    let mut made = Vec::with_capacity(wanted.len());
    let mut events = Vec::with_capacity(wanted.len());
    for report in wanted {
        let total_over = |keep: &dyn Fn(&ReferralFacts) -> bool| {
            let (r, l) = over(keep);
            report
                .build(&Population {
                    referrals: &r,
                    letters: &l,
                    target_days,
                    service_names: &service_names,
                    local_authorities: &config.local_authorities,
                    today,
                })
                .grand_total()
        };
        // A report limited by a filter is one slice of the breakdown by that filter (by service, by
        // place, by month). Where that breakdown would withhold the slice's own total, the sliced
        // report withholds its total too, or the withheld count could be read off it (the
        // unfiltered total less the other slices).
        let mut withhold_total = false;
        let mut slices = |selected: &[String],
                          key: &dyn Fn(&ReferralFacts) -> String,
                          rest: &dyn Fn(&ReferralFacts) -> bool| {
            let mut keys: std::collections::BTreeSet<String> =
                referrals.iter().filter(|f| rest(f)).map(key).collect();
            keys.extend(selected.iter().cloned());
            let counts = keys
                .into_iter()
                .map(|k| {
                    let total = total_over(&|f: &ReferralFacts| rest(f) && key(f) == k);
                    (k, total)
                })
                .collect();
            withhold_total |=
                reports::withheld_in(&counts, selected.iter().map(String::as_str), threshold);
        };
        if let Some(service) = &filters.service {
            slices(
                std::slice::from_ref(service),
                &|f| f.service.clone(),
                &|f| in_months(f) && in_place(f),
            );
        }
        if let Some(p) = &place {
            slices(std::slice::from_ref(p), &place_of, &|f| {
                in_service(f) && in_months(f)
            });
        }
        if from.is_some() || to.is_some() {
            let month_of = |f: &ReferralFacts| f.referred_on.format("%Y-%m").to_string();
            let selected: Vec<String> = referrals
                .iter()
                .filter(|f| in_service(f) && in_place(f) && in_months(f))
                .map(month_of)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            slices(&selected, &month_of, &|f| in_service(f) && in_place(f));
        }
        let published = reports::publish(
            report,
            &Population {
                referrals: &asked_referrals,
                letters: &asked_letters,
                target_days,
                service_names: &service_names,
                local_authorities: &config.local_authorities,
                today,
            },
            threshold,
            withhold_total,
        );
        events.push(Event {
            kind: Kind::Report,
            principal: Some(caller.principal),
            patient: None,
            entities: Vec::new(),
            decision: None,
            permitted: true,
            description: format!("report {} {covered}", report.name),
            at: now,
            request_id: caller.request_id.clone(),
        });
        made.push(Made {
            report,
            published,
            scope: scope.clone(),
            generated: generated.clone(),
            period: period.clone(),
        });
    }
    store.append_audit(&events).await?;
    Ok(made)
}

fn end_of_month(first: NaiveDate) -> NaiveDate {
    let (y, m) = if first.month() == 12 {
        (first.year() + 1, 1)
    } else {
        (first.year(), first.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).expect("a month's first day") - chrono::Duration::days(1)
}

/// Reads what the reports count for `services`: each referral's facts (through the same tenancy
/// rule a service's own search uses), and each letter with its referral's id.
async fn gather(
    store: &dyn Store,
    services: &[&Service],
    test_organisations: &[String],
    now: chrono::DateTime<Utc>,
) -> Result<(Vec<ReferralFacts>, Vec<(String, LetterFacts)>), StoreError> {
    let mut referrals = Vec::new();
    let mut letters = Vec::new();
    for service in services {
        let organisation = format!(
            "{}|{}",
            crate::fhir::systems::service_identifier_system(),
            service.id
        );
        let request = SearchRequest {
            resource_type: "ServiceRequest".into(),
            filters: Vec::new(),
            count: u32::MAX,
            offset: 0,
            sort: Default::default(),
            tenancy: Some(Tenancy::Service(organisation.clone())),
        };
        let ids: Vec<String> = store
            .search_candidates(&request)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        let mut known = std::collections::HashSet::new();
        for sr in store.read_many("ServiceRequest", &ids).await? {
            let Some(f) = facts_in_store(store, &sr, now).await? else {
                continue; // not a referral, or one with no date to count it by
            };
            // The tenancy search found it for this service; a record that says otherwise, or
            // an integrator's synthetic referral in the test tenant, is not counted.
            if f.service != service.id
                || test_organisations
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(&f.practice))
            {
                continue;
            }
            let id = f.referral.clone();
            known.insert(id);
            referrals.push(f);
        }
        for d in store
            .deliveries(&DeliveryFilter {
                service: Some(organisation.clone()),
                ..Default::default()
            })
            .await?
        {
            if !known.contains(&d.referral_id) {
                continue;
            }
            letters.push((
                d.referral_id.clone(),
                LetterFacts {
                    service: service.id.clone(),
                    state: d.state.code().to_string(),
                    written_on: d.created_at.date_naive(),
                    hours_to_acceptance: (d.state == DeliveryState::Accepted)
                        .then(|| (d.updated_at - d.created_at).num_hours()),
                },
            ));
        }
    }
    Ok((referrals, letters))
}

/// The facts the reports and the evaluation export count of one stored ServiceRequest: its
/// parties, the Patient version it came with, its workflow, first contact, supporting records,
/// follow-ups and the person's consent as of `now`. `None` for a ServiceRequest that is not a
/// referral.
pub async fn facts_in_store(
    store: &dyn Store,
    sr: &Value,
    now: chrono::DateTime<Utc>,
) -> Result<Option<ReferralFacts>, StoreError> {
    let id = sr["id"].as_str().unwrap_or_default().to_string();
    let Some(parties) = store
        .records_of("ServiceRequest", &id)
        .await?
        .into_iter()
        .find(|r| r.record == format!("ServiceRequest/{id}"))
    else {
        return Ok(None); // not a referral
    };
    let patient = match parties.patient_version {
        Some(v) => {
            store
                .read_version("Patient", parties.patient_id.as_str(), v)
                .await?
        }
        None => store.read("Patient", parties.patient_id.as_str()).await?,
    }
    .unwrap_or(Value::Null);
    let task = workflow_task(store, &id).await?;
    let first_contact = super::workflow::first_contact(store, task.as_ref()).await?;
    let refs = |list: &str, prefix: &str| -> Vec<String> {
        sr[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["reference"].as_str()?.strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    };
    let mut supporting = store
        .read_many("Observation", &refs("supportingInfo", "Observation/"))
        .await?;
    supporting.extend(
        store
            .read_many("Condition", &refs("reasonReference", "Condition/"))
            .await?,
    );
    let follow_up_ids: Vec<String> = crate::workflow::outputs(task.as_ref(), "follow-up")
        .filter_map(|o| {
            o["valueReference"]["reference"]
                .as_str()?
                .strip_prefix("Observation/")
        })
        .map(str::to_string)
        .collect();
    let follow_ups = store.read_many("Observation", &follow_up_ids).await?;
    let practice = parties.practice.clone().unwrap_or_default();
    let file = consent_file(store, &parties.patient_id).await?;
    let feedback = crate::workflow::feedback_recipient(parties.practice.as_deref(), &patient)
        .is_some_and(|to| file.decide(&Question::outcomes_to(&to, now)).permitted());
    let evaluation = file.decide(&Question::evaluation(now)).permitted();
    Ok(facts::referral_facts(&ReferralRecords {
        service_request: sr,
        patient: &patient,
        task: task.as_ref(),
        first_contact: first_contact.as_ref(),
        supporting: &supporting,
        follow_ups: &follow_ups,
        service: crate::fhir::identifiers::value_part(
            parties.service.as_deref().unwrap_or_default(),
        ),
        practice: &referrer_row(&practice),
        feedback_allowed: feedback,
        evaluation_allowed: evaluation,
    }))
}

/// The row a referring organisation (`system|value`) is counted under in the reports by
/// referrer: a practice's ODS code, another kind's code after its kind (`physiotherapy RHQ`,
/// `employer E1234`), so no referrer's code passes for a practice's.
fn referrer_row(referrer: &str) -> String {
    let code = crate::fhir::identifiers::value_part(referrer);
    let system = referrer.split_once('|').map(|(system, _)| system);
    if let Some(kind) = system.and_then(crate::fhir::systems::referrer_kind_of_system) {
        return format!("{kind} {code}");
    }
    match system {
        Some(s) if s == crate::fhir::systems::employer_identifier_system() => {
            format!("employer {code}")
        }
        _ => code.to_string(),
    }
}

/// Every report the caller may read, for the list.
pub fn catalogue(
    config: &Config,
    caller: &Caller<'_>,
) -> Result<Vec<&'static Report>, ReportsError> {
    readable_services(config, caller)?;
    Ok(reports::CATALOGUE.iter().collect())
}
