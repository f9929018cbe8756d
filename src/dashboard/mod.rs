//! The dashboard for commissioners and service managers (`/dashboard`): the aggregate reports as
//! server-rendered pages in the NHS.UK frontend's look, each chart with its table and a CSV
//! download, filtered by service, period and place. No JavaScript: forms are plain GET and POST,
//! and the pages work, and pass WCAG 2.2 AA, without it.
//!
//! Pure: the HTTP edge (`api::dashboard`) signs people in and makes the reports through the same
//! use cases and the same tenancy rule as `GET /api/v1/reports`; this module only renders what
//! they made.

pub mod assets;
pub mod charts;
pub mod pages;

use crate::app::reports::Filters;

/// The reports the overview page shows, in order, and how each is drawn.
pub const OVERVIEW: &[&str] = &[
    "referrals-by-month",
    "time-to-first-contact",
    "discharge-outcomes",
    "follow-up-outcomes",
    "declines-by-reason",
];

/// How the report `name`, with `columns` columns, is drawn.
pub fn chart_kind(name: &str, columns: usize, target_days: u32) -> charts::Kind {
    match name {
        "time-to-first-contact" => charts::Kind::TargetBars { target_days },
        "follow-up-outcomes" => charts::Kind::Grouped,
        _ if columns > 1 => charts::Kind::Stacked,
        _ => charts::Kind::Bars,
    }
}

/// The filters as a query string for links (empty ones left out), with its `?`.
pub fn query(filters: &Filters) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("service", &filters.service),
        ("from", &filters.from),
        ("to", &filters.to),
        ("place", &filters.place),
    ] {
        if let Some(v) = value {
            out.append_pair(name, v);
        }
    }
    let q = out.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}
