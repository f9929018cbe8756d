//! The dashboard's pages, as HTML (maud escapes every value; only the charts' SVG, built here,
//! goes in as markup). The NHS.UK frontend's components: header, skip link, error summary, form
//! groups with their errors, tables and cards.

use maud::{DOCTYPE, Markup, html};

use super::charts;
use crate::app::reports::{Filters, Made};
use crate::reports::places::LocalAuthority;
use crate::reports::render::SUPPRESSED_MARK;

/// The person the page is for, as the header shows them.
pub struct Viewer<'a> {
    /// "Commissioner" or "Service manager".
    pub role: &'a str,
    /// The ODS code a commissioner acts for, or a service manager's service name.
    pub organisation: &'a str,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: &'a str,
}

/// The filter form, as the person last filled it in.
pub struct FilterForm<'a> {
    /// Where the form is sent (the page it is on).
    pub action: &'a str,
    /// The services the person may choose between: (id, name).
    pub services: &'a [(String, String)],
    pub filters: &'a Filters,
    /// Problems with what was filled in: (field, what to do), in form order.
    pub problems: &'a [(String, String)],
    /// The listed local authorities, offered as places.
    pub local_authorities: &'a [LocalAuthority],
}

/// One report on a page: what was made, and how it is drawn.
pub struct Section<'a> {
    pub made: &'a Made,
    pub kind: charts::Kind,
    /// The filters as a query string (`?…` or empty), for the report's links.
    pub query: &'a str,
}

const SERVICE_NAME: &str = "Work and Health Gateway reports";

fn layout(title: &str, viewer: Option<&Viewer<'_>>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (SERVICE_NAME) }
                link rel="icon" href="/dashboard/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/dashboard/assets/nhsuk-frontend.min.css";
                link rel="stylesheet" href="/dashboard/assets/dashboard.css";
            }
            body {
                a class="nhsuk-skip-link" href="#maincontent" { "Skip to main content" }
                header class="nhsuk-header" role="banner" {
                    div class="nhsuk-header__container nhsuk-width-container" {
                        div class="nhsuk-header__service" {
                            a class="nhsuk-header__service-logo" href="/dashboard" {
                                span class="nhsuk-header__service-name" { (SERVICE_NAME) }
                            }
                        }
                        @if let Some(v) = viewer {
                            nav class="nhsuk-header__account" aria-label="Account" {
                                ul class="nhsuk-header__account-list" {
                                    li class="nhsuk-header__account-item" {
                                        span class="whg-account-name" {
                                            (v.role) ", " (v.organisation)
                                        }
                                    }
                                    li class="nhsuk-header__account-item" {
                                        form class="whg-inline-form" method="post" action="/dashboard/sign-out" {
                                            input type="hidden" name="csrf" value=(v.csrf);
                                            button class="nhsuk-header__account-button" type="submit" { "Sign out" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                div class="nhsuk-width-container" {
                    main class="nhsuk-main-wrapper" id="maincontent" tabindex="-1" {
                        (main)
                    }
                }
                footer class="nhsuk-footer" {
                    div class="nhsuk-width-container" {
                        p class="nhsuk-body-s" {
                            "Figures are counts of referrals, never of named people. A count marked "
                            (SUPPRESSED_MARK) " is under the small-number threshold, or would let one be worked out, and is not shown."
                        }
                    }
                }
            }
        }
    }
}

/// The page for someone not signed in. `notice`: why they are here (signed out, session ended).
pub fn landing(notice: Option<&str>, enabled: bool) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "See what became of referrals" }
            @if let Some(notice) = notice {
                div class="nhsuk-inset-text" {
                    span class="nhsuk-u-visually-hidden" { "Information: " }
                    p { (notice) }
                }
            }
            p class="nhsuk-lede-text" {
                "Referrals to work and health services, how soon people were contacted, the support they had and what became of them — counted, never named."
            }
            p { "For commissioners, the services you commission; for service managers, your own service." }
            @if enabled {
                a class="nhsuk-button" href="/dashboard/sign-in" draggable="false" { "Sign in" }
            } @else {
                div class="nhsuk-card nhsuk-card--warning" {
                    div class="nhsuk-card__content" {
                        h2 class="nhsuk-card__heading" {
                            span role="text" { span class="nhsuk-u-visually-hidden" { "Important: " } "Sign-in is not set up" }
                        }
                        p { "This gateway has no sign-in service configured, so nobody can sign in to the dashboard. Its operator sets one in the [sign_in] section of the configuration (docs/dashboard.md)." }
                    }
                }
            }
        },
    )
}

/// A page saying what went wrong and what to do, with a way back.
pub fn problem(viewer: Option<&Viewer<'_>>, title: &str, message: &str, again: bool) -> Markup {
    layout(
        title,
        viewer,
        html! {
            h1 { (title) }
            p { (message) }
            @if again {
                a class="nhsuk-button" href="/dashboard/sign-in" draggable="false" { "Sign in again" }
            } @else {
                p { a href="/dashboard" { "Back to the dashboard" } }
            }
        },
    )
}

/// After signing out: and, if the provider has one, the way to end its session too.
pub fn signed_out(end_session: Option<&str>) -> Markup {
    layout(
        "Signed out",
        None,
        html! {
            h1 { "You have signed out" }
            p { "You have signed out of the dashboard on this device." }
            @if let Some(url) = end_session {
                p {
                    "You may still be signed in to your organisation's sign-in service. "
                    a href=(url) { "Sign out of the sign-in service too" }
                    "."
                }
            }
            a class="nhsuk-button nhsuk-button--secondary" href="/dashboard/sign-in" draggable="false" { "Sign in again" }
        },
    )
}

fn error_for<'a>(problems: &'a [(String, String)], field: &str) -> Option<&'a str> {
    problems
        .iter()
        .find(|(f, _)| f == field)
        .map(|(_, m)| m.as_str())
}

/// One form group: label, hint, error and the control.
fn group(
    problems: &[(String, String)],
    field: &str,
    label: &str,
    hint: &str,
    control: impl FnOnce(&str, bool) -> Markup,
) -> Markup {
    let error = error_for(problems, field);
    let hint_id = format!("{field}-hint");
    let error_id = format!("{field}-error");
    let described = match error {
        Some(_) => format!("{hint_id} {error_id}"),
        None => hint_id.clone(),
    };
    html! {
        div class=(if error.is_some() { "nhsuk-form-group nhsuk-form-group--error" } else { "nhsuk-form-group" }) {
            label class="nhsuk-label" for=(field) { (label) }
            div class="nhsuk-hint" id=(hint_id) { (hint) }
            @if let Some(e) = error {
                span class="nhsuk-error-message" id=(error_id) {
                    span class="nhsuk-u-visually-hidden" { "Error:" } " " (e)
                }
            }
            (control(&described, error.is_some()))
        }
    }
}

fn filter_form(form: &FilterForm<'_>) -> Markup {
    let f = form.filters;
    let problems = form.problems;
    html! {
        @if !problems.is_empty() {
            // Focused on load without script (`autofocus`), as the frontend's own script would.
            div class="nhsuk-error-summary" tabindex="-1" autofocus {
                div role="alert" {
                    h2 class="nhsuk-error-summary__title" { "There is a problem" }
                    div class="nhsuk-error-summary__body" {
                        ul class="nhsuk-list nhsuk-error-summary__list" {
                            @for (field, message) in problems {
                                li { a href=(format!("#{field}")) { (message) } }
                            }
                        }
                    }
                }
            }
        }
        form class="whg-filters" method="get" action=(form.action) novalidate {
            fieldset class="nhsuk-fieldset" {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--m" {
                    h2 class="nhsuk-fieldset__heading" { "Filter the figures" }
                }
                div class="nhsuk-grid-row" {
                    div class="nhsuk-grid-column-one-quarter" {
                        (group(problems, "service", "Service", "Every service you can see, or one", |described, error| html! {
                            select class=(if error { "nhsuk-select nhsuk-select--error" } else { "nhsuk-select" })
                                id="service" name="service" aria-describedby=(described) {
                                option value="" selected[f.service.is_none()] { "All your services" }
                                @for (id, name) in form.services {
                                    option value=(id) selected[f.service.as_deref() == Some(id.as_str())] { (name) }
                                }
                            }
                        }))
                    }
                    div class="nhsuk-grid-column-one-quarter" {
                        (group(problems, "from", "From (month)", "For example, 2026-04", |described, error| html! {
                            input class=(if error { "nhsuk-input nhsuk-input--width-10 nhsuk-input--error" } else { "nhsuk-input nhsuk-input--width-10" })
                                id="from" name="from" type="text" inputmode="numeric" spellcheck="false" value=[f.from.as_deref()]
                                aria-describedby=(described);
                        }))
                    }
                    div class="nhsuk-grid-column-one-quarter" {
                        (group(problems, "to", "To (month)", "For example, 2026-09", |described, error| html! {
                            input class=(if error { "nhsuk-input nhsuk-input--width-10 nhsuk-input--error" } else { "nhsuk-input nhsuk-input--width-10" })
                                id="to" name="to" type="text" inputmode="numeric" spellcheck="false" value=[f.to.as_deref()]
                                aria-describedby=(described);
                        }))
                    }
                    div class="nhsuk-grid-column-one-quarter" {
                        (group(problems, "place", "Place", "Where people live: a postcode district such as S1, or a local authority's code such as E08000019", |described, error| html! {
                            input class=(if error { "nhsuk-input nhsuk-input--width-5 nhsuk-input--error" } else { "nhsuk-input nhsuk-input--width-5" })
                                id="place" name="place" type="text" spellcheck="false" autocomplete="off"
                                value=[f.place.as_deref()] aria-describedby=(described) list="places";
                            datalist id="places" {
                                @for la in form.local_authorities {
                                    option value=(la.code) { (la.name) }
                                }
                            }
                        }))
                    }
                }
            }
            div class="nhsuk-button-group" {
                button class="nhsuk-button" type="submit" { "Show figures" }
                a class="nhsuk-link" href=(form.action) { "Clear the filters" }
            }
        }
    }
}

/// A date (`YYYY-MM-DD`) as people write it: 1 April 2026.
fn long_date(iso: &str) -> String {
    chrono::NaiveDate::parse_from_str(iso, "%Y-%m-%d")
        .map(|d| d.format("%-d %B %Y").to_string())
        .unwrap_or_else(|_| iso.to_string())
}

/// When a report was made (RFC 3339, UTC) as people write it: 14:05 UTC on 2 December 2026.
fn made_at(instant: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(instant)
        .map(|t| t.format("%H:%M UTC on %-d %B %Y").to_string())
        .unwrap_or_else(|_| instant.to_string())
}

fn count(n: Option<u64>) -> Markup {
    html! {
        @match n {
            Some(n) => (n),
            None => abbr title="Not shown: a small number, or one that would let a small number be worked out" { (SUPPRESSED_MARK) },
        }
    }
}

/// A report's figures as a table: rows, columns and totals, suppressed counts marked.
fn table(made: &Made, caption: &str) -> Markup {
    let p = &made.published;
    let one_column = p.columns.len() == 1;
    let caption_id = format!("figures-{}", made.report.name);
    html! {
        // A wide table scrolls within itself at small widths (WCAG 1.4.10), keyboard-reachable.
        div class="nhsuk-scroll" {
        div class="nhsuk-scroll__content" role="region" aria-labelledby=(caption_id) tabindex="0" {
        table class="nhsuk-table whg-figures" {
            caption class="nhsuk-table__caption nhsuk-table__caption--s" id=(caption_id) { (caption) }
            thead class="nhsuk-table__head" {
                tr class="nhsuk-table__row" {
                    th class="nhsuk-table__header" scope="col" { (p.row_dimension) }
                    @for c in &p.columns {
                        th class="nhsuk-table__header nhsuk-table__header--numeric" scope="col" { (c.label) }
                    }
                    @if p.row_totals.is_some() {
                        th class="nhsuk-table__header nhsuk-table__header--numeric" scope="col" { "Total" }
                    }
                }
            }
            tbody class="nhsuk-table__body" {
                @for (r, row) in p.rows.iter().enumerate() {
                    tr class="nhsuk-table__row" {
                        th class="nhsuk-table__header" scope="row" { (row.label) }
                        @for n in &p.cells[r] {
                            td class="nhsuk-table__cell nhsuk-table__cell--numeric" { (count(*n)) }
                        }
                        @if let Some(totals) = &p.row_totals {
                            td class="nhsuk-table__cell nhsuk-table__cell--numeric" { (count(totals[r])) }
                        }
                    }
                }
                tr class="nhsuk-table__row" {
                    th class="nhsuk-table__header" scope="row" { "Total" }
                    @if one_column {
                        td class="nhsuk-table__cell nhsuk-table__cell--numeric" { (count(p.grand_total)) }
                    } @else {
                        @for n in &p.column_totals {
                            td class="nhsuk-table__cell nhsuk-table__cell--numeric" { (count(*n)) }
                        }
                        @if p.row_totals.is_some() {
                            td class="nhsuk-table__cell nhsuk-table__cell--numeric" { (count(p.grand_total)) }
                        }
                    }
                }
            }
        }
        }
        }
    }
}

/// A report as a card: title, what it counts, the chart, the table, the downloads.
fn section(s: &Section<'_>, heading_level_2: bool) -> Markup {
    let r = s.made.report;
    let id = format!("chart-{}", r.name);
    html! {
        section class="whg-chart-card" aria-labelledby=(format!("{id}-heading")) {
            @if heading_level_2 {
                h2 id=(format!("{id}-heading")) { (r.title) }
            } @else {
                h2 class="nhsuk-u-visually-hidden" id=(format!("{id}-heading")) { "Chart and figures" }
            }
            p { (r.description) }
            (charts::chart(&id, r.title, &s.made.published, s.kind))
            (table(s.made, &format!("{} (figures)", r.title)))
            ul class="nhsuk-list" {
                li {
                    a class="nhsuk-link" href=(format!("/dashboard/reports/{}/csv{}", r.name, s.query)) download {
                        "Download these figures as CSV" span class="nhsuk-u-visually-hidden" { " (" (r.title) ")" }
                    }
                }
                @if heading_level_2 {
                    li {
                        a class="nhsuk-link" href=(format!("/dashboard/reports/{}{}", r.name, s.query)) {
                            "See this report on its own" span class="nhsuk-u-visually-hidden" { " (" (r.title) ")" }
                        }
                    }
                }
            }
        }
    }
}

/// What the figures cover, in words.
fn covering(made: &Made, form: &FilterForm<'_>) -> Markup {
    let services = form.services;
    let names: Vec<&str> = made
        .scope
        .services
        .iter()
        .map(|id| {
            services
                .iter()
                .find(|(s, _)| s == id)
                .map_or(id.as_str(), |(_, n)| n.as_str())
        })
        .collect();
    html! {
        p class="nhsuk-body" {
            "Referrals made from " (long_date(&made.period.0)) " to " (long_date(&made.period.1))
            " to " (names.join(", "))
            @if let Some(place) = &made.scope.place {
                ", by people living in "
                @match form.local_authorities.iter().find(|la| &la.code == place) {
                    Some(la) => (la.name),
                    None => (place),
                }
            }
            ". Counted at " (made_at(&made.generated)) "."
        }
    }
}

/// The overview: the filters, then each chart with its table, then every other report.
pub fn overview(
    viewer: &Viewer<'_>,
    form: &FilterForm<'_>,
    sections: &[Section<'_>],
    others: &[(&str, &str)],
) -> Markup {
    let title = if form.problems.is_empty() {
        "Referrals and outcomes".to_string()
    } else {
        "Error: Referrals and outcomes".to_string()
    };
    layout(
        &title,
        Some(viewer),
        html! {
            h1 { "Referrals and outcomes" }
            (filter_form(form))
            @if let Some(first) = sections.first() {
                (covering(first.made, form))
            }
            @for s in sections {
                (section(s, true))
            }
            @if !others.is_empty() {
                h2 { "Every report" }
                ul class="nhsuk-list nhsuk-list--bullet" {
                    @for (name, title) in others {
                        li { a class="nhsuk-link" href=(format!("/dashboard/reports/{name}{}", super::query(form.filters))) { (title) } }
                    }
                }
            }
        },
    )
}

/// One report on its own page.
pub fn report(
    viewer: &Viewer<'_>,
    form: &FilterForm<'_>,
    s: Option<&Section<'_>>,
    title: &str,
) -> Markup {
    let page_title = if form.problems.is_empty() {
        title.to_string()
    } else {
        format!("Error: {title}")
    };
    layout(
        &page_title,
        Some(viewer),
        html! {
            a class="nhsuk-back-link" href=(format!("/dashboard{}", super::query(form.filters))) { "Back to referrals and outcomes" }
            h1 { (title) }
            (filter_form(form))
            @if let Some(s) = s {
                (covering(s.made, form))
                (section(s, false))
            }
        },
    )
}

/// One alert as the operations page lists it.
pub struct AlertRow<'a> {
    pub alert: &'a crate::alerts::Alert,
    /// The service it concerns, by name.
    pub service: Option<&'a str>,
    /// Whether the person viewing acknowledged it. Who else did is the audit trail's to say:
    /// a sign-in subject is an identifier at the provider, not for every colleague's page.
    pub acknowledged_by_viewer: bool,
}

fn alert_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%-d %B %Y at %H:%M UTC").to_string()
}

/// The operations page: open alerts, each with what to do and a button to acknowledge it, then
/// those acknowledged lately. `acknowledged`: the notice after an acknowledgement (or a refusal).
pub fn operations(
    viewer: &Viewer<'_>,
    open: &[AlertRow<'_>],
    done: &[AlertRow<'_>],
    notice: Option<&str>,
    routes_configured: bool,
) -> Markup {
    layout(
        "Alerts",
        Some(viewer),
        html! {
            h1 { "Alerts" }
            @if let Some(notice) = notice {
                div class="nhsuk-inset-text" {
                    span class="nhsuk-u-visually-hidden" { "Information: " }
                    p { (notice) }
                }
            }
            p class="nhsuk-lede-text" {
                "Letters that did not reach a GP practice, urgent letters not acknowledged, practices' systems failing and the MESH mailbox. Each stays here until someone acknowledges it."
            }
            h2 { "Open alerts (" (open.len()) ")" }
            @if open.is_empty() {
                p { "There are no open alerts." }
            }
            @for row in open {
                div class="nhsuk-card nhsuk-card--feature whg-alert" {
                    div class="nhsuk-card__content nhsuk-card__content--feature" {
                        h3 class="nhsuk-card__heading nhsuk-card__heading--feature" { (row.alert.raised.kind.title()) }
                        p { (row.alert.raised.summary) }
                        dl class="nhsuk-summary-list" {
                            div class="nhsuk-summary-list__row" {
                                dt class="nhsuk-summary-list__key" { "Raised" }
                                dd class="nhsuk-summary-list__value" { (alert_time(row.alert.raised.raised_at)) }
                            }
                            @if let Some(service) = row.service {
                                div class="nhsuk-summary-list__row" {
                                    dt class="nhsuk-summary-list__key" { "Service" }
                                    dd class="nhsuk-summary-list__value" { (service) }
                                }
                            }
                            @if let Some(contact) = &row.alert.raised.duty_contact {
                                div class="nhsuk-summary-list__row" {
                                    dt class="nhsuk-summary-list__key" { "Duty contact" }
                                    dd class="nhsuk-summary-list__value" { (contact) }
                                }
                            }
                            div class="nhsuk-summary-list__row" {
                                dt class="nhsuk-summary-list__key" { "On-call routes" }
                                dd class="nhsuk-summary-list__value" {
                                    @match (row.alert.notified_at, routes_configured) {
                                        (Some(at), _) => { "Sent " (alert_time(at)) }
                                        (None, true) => { "Not sent yet" }
                                        (None, false) => { "None is configured: this page is the only place it shows" }
                                    }
                                }
                            }
                        }
                        form method="post" action={ "/dashboard/ops/alerts/" (row.alert.id) "/acknowledge" } {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button class="nhsuk-button nhsuk-button--secondary" type="submit" {
                                "Acknowledge"
                                span class="nhsuk-u-visually-hidden" { ": " (row.alert.raised.kind.title()) }
                            }
                        }
                    }
                }
            }
            @if !done.is_empty() {
                h2 { "Acknowledged lately" }
                table class="nhsuk-table" {
                    caption class="nhsuk-table__caption" { "Alerts acknowledged, newest first" }
                    thead class="nhsuk-table__head" {
                        tr {
                            th scope="col" { "Alert" }
                            th scope="col" { "Raised" }
                            th scope="col" { "Acknowledged" }
                        }
                    }
                    tbody class="nhsuk-table__body" {
                        @for row in done {
                            tr class="nhsuk-table__row" {
                                td class="nhsuk-table__cell" { (row.alert.raised.kind.title()) ": " (row.alert.raised.subject) }
                                td class="nhsuk-table__cell" { (alert_time(row.alert.raised.raised_at)) }
                                td class="nhsuk-table__cell" {
                                    @if let Some(a) = &row.alert.acknowledged {
                                        (alert_time(a.at))
                                        @if row.acknowledged_by_viewer { " by you" } @else { " by a colleague" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
