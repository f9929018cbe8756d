//! A published report drawn as an SVG chart: horizontal bars for a one-way report, stacked or
//! grouped columns for a two-way one. Pure; no script, no inline style (the page's CSP allows
//! neither), only SVG presentation attributes.
//!
//! A chart is a picture of the table that follows it on the page, never the only place a figure
//! is: the SVG is `role="img"` with a title and a description that says so, and each mark
//! carries its figure as a tooltip. Suppressed counts are drawn as the mark `[c]`, never as a
//! bar (a bar's length would tell what the number hides). Every colour has at least 3:1
//! contrast with the white background (WCAG 2.2 SC 1.4.11), and segments are parted by a
//! white line so neighbouring colours are not told apart by hue alone.

use maud::{Markup, html};

use crate::reports::render::SUPPRESSED_MARK;
use crate::reports::{Published, first_contact_within_target};

/// Series colours: NHS identity colours, each at least 3:1 against white.
pub const PALETTE: [&str; 8] = [
    "#005eb8", "#007f3b", "#330072", "#ae2573", "#425563", "#d5281b", "#003087", "#7c2855",
];
/// Text (NHS black) and the gridlines, which carry no information of their own.
const TEXT: &str = "#212b32";
const GRID: &str = "#aeb7bd";
/// The first-contact chart's two colours: within the target, and past it.
pub const WITHIN_TARGET: &str = "#007f3b";
pub const PAST_TARGET: &str = "#d5281b";

/// How a report is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One bar per row.
    Bars,
    /// The time-to-first-contact report: one bar per band, each coloured by whether the band
    /// is within the first-contact target of `target_days`.
    TargetBars { target_days: u32 },
    /// One column per row, its cells stacked (the columns partition the row: routes of a month).
    Stacked,
    /// One group per row, a column per cell (the cells are not parts of one whole: follow-up
    /// intervals of a work situation).
    Grouped,
}

/// The chart of `p`, titled `title`; `id` makes its elements' ids unique on the page.
pub fn chart(id: &str, title: &str, p: &Published, kind: Kind) -> Markup {
    match kind {
        Kind::Bars => bars(id, title, p, |_| PALETTE[0], &[]),
        Kind::TargetBars { target_days } => bars(
            id,
            title,
            p,
            |code| match first_contact_within_target(code, target_days) {
                Some(true) => WITHIN_TARGET,
                Some(false) => PAST_TARGET,
                None => PALETTE[4],
            },
            &[
                (
                    WITHIN_TARGET,
                    format!("Within the {target_days}-day target"),
                ),
                (PAST_TARGET, "Past the target".to_string()),
            ],
        ),
        Kind::Stacked => columns(id, title, p, true),
        Kind::Grouped => columns(id, title, p, false),
    }
}

/// Labels longer than this are cut (with "…") on the chart; the table has them whole.
const MAX_LABEL: usize = 34;

fn clipped(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL {
        label.to_string()
    } else {
        let cut: String = label.chars().take(MAX_LABEL - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

fn figure(n: Option<u64>) -> String {
    n.map_or_else(|| SUPPRESSED_MARK.to_string(), |n| n.to_string())
}

/// The SVG element's opening: accessible name and description.
fn frame(id: &str, title: &str, width: f64, height: f64, body: Markup) -> Markup {
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="whg-chart" role="img"
            viewBox=(format!("0 0 {width} {height}")) width=(width) height=(height)
            aria-labelledby=(title_id) aria-describedby=(desc_id)
            font-family="Frutiger W01, Arial, sans-serif" font-size="14" {
            title id=(title_id) { (title) }
            desc id=(desc_id) {
                "Chart of the figures in the table below it. "
                "Counts marked " (SUPPRESSED_MARK) " are not shown, to protect small numbers; "
                "a column marked " (SUPPRESSED_MARK) " beside its total is drawn without its hidden part."
            }
            (body)
        }
    }
}

/// Horizontal bars, one per row of a one-column report; `colour` by row code, and a `legend`
/// of what the colours mean when there is more than one.
fn bars(
    id: &str,
    title: &str,
    p: &Published,
    colour: impl Fn(&str) -> &'static str,
    legend: &[(&str, String)],
) -> Markup {
    const LABEL_W: f64 = 270.0;
    const BAR_W: f64 = 300.0;
    const ROW_H: f64 = 30.0;
    const WIDTH: f64 = 640.0;
    let top = if legend.is_empty() { 8.0 } else { 40.0 };
    let height = top + ROW_H * p.rows.len().max(1) as f64 + 8.0;
    let max = p
        .cells
        .iter()
        .filter_map(|c| c.first().copied().flatten())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    frame(
        id,
        title,
        WIDTH,
        height,
        html! {
            @for (i, (fill, label)) in legend.iter().enumerate() {
                @let x = LABEL_W + 220.0 * i as f64 - 200.0;
                rect x=(x) y="8" width="16" height="16" fill=(fill) {}
                text x=(x + 22.0) y="16" dominant-baseline="middle" fill=(TEXT) font-size="13" { (label) }
            }
            line x1=(LABEL_W) y1=(top) x2=(LABEL_W) y2=(height - 8.0) stroke=(GRID) {}
            @for (r, row) in p.rows.iter().enumerate() {
                @let y = top + ROW_H * r as f64;
                @let n = p.cells[r].first().copied().flatten();
                text x=(LABEL_W - 8.0) y=(y + ROW_H / 2.0) text-anchor="end"
                    dominant-baseline="middle" fill=(TEXT) {
                    title { (row.label) } (clipped(&row.label))
                }
                @match n {
                    Some(n) => {
                        @let w = if n == 0 { 0.0 } else { (n as f64 / max * BAR_W).max(2.0) };
                        @if n > 0 {
                            rect x=(LABEL_W) y=(y + 6.0) width=(w) height=(ROW_H - 12.0)
                                fill=(colour(&row.code)) {
                                title { (row.label) ": " (n) }
                            }
                        }
                        text x=(LABEL_W + w + 6.0) y=(y + ROW_H / 2.0) dominant-baseline="middle"
                            fill=(TEXT) { (n) }
                    }
                    None => {
                        text x=(LABEL_W + 6.0) y=(y + ROW_H / 2.0) dominant-baseline="middle"
                            fill=(TEXT) {
                            title { (row.label) ": not shown (small number)" } (SUPPRESSED_MARK)
                        }
                    }
                }
            }
        },
    )
}

/// A round step for an axis from 0 to `max` in about four steps.
fn step(max: u64) -> u64 {
    let rough = (max as f64 / 4.0).max(1.0);
    let magnitude = 10f64.powf(rough.log10().floor());
    let nice = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    nice as u64
}

/// Columns: one slot per row, its cells stacked or side by side, with a legend of the columns.
fn columns(id: &str, title: &str, p: &Published, stacked: bool) -> Markup {
    const LEFT: f64 = 56.0;
    const PLOT_H: f64 = 220.0;
    const BOTTOM: f64 = 84.0;
    const LEGEND_W: f64 = 200.0;
    const PER_LEGEND_ROW: usize = 3;
    let series = p.columns.len().max(1);
    let slot_w = if stacked {
        48.0
    } else {
        (14.0 * series as f64 + 18.0).max(48.0)
    };
    let legend_rows = series.div_ceil(PER_LEGEND_ROW);
    let legend_h = 24.0 * legend_rows as f64 + 12.0;
    let width = (LEFT + slot_w * p.rows.len().max(1) as f64 + 16.0).max(640.0);
    let height = legend_h + PLOT_H + BOTTOM;
    let shown = |r: usize| p.cells[r].iter().map(|n| n.unwrap_or(0));
    let max = (0..p.rows.len())
        .map(|r| {
            if stacked {
                shown(r).sum::<u64>()
            } else {
                shown(r).max().unwrap_or(0)
            }
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let step = step(max);
    let top_tick = max.div_ceil(step) * step;
    let base = legend_h + PLOT_H;
    let scale = |n: u64| n as f64 / top_tick as f64 * PLOT_H;
    frame(
        id,
        title,
        width,
        height,
        html! {
            @for (i, c) in p.columns.iter().enumerate() {
                @let x = 8.0 + LEGEND_W * (i % PER_LEGEND_ROW) as f64;
                @let y = 8.0 + 24.0 * (i / PER_LEGEND_ROW) as f64;
                rect x=(x) y=(y) width="16" height="16" fill=(PALETTE[i % PALETTE.len()]) {}
                text x=(x + 22.0) y=(y + 8.0) dominant-baseline="middle" fill=(TEXT)
                    font-size="13" { (clipped(&c.label)) }
            }
            @for t in (0..=top_tick).step_by(step as usize) {
                @let y = base - scale(t);
                line x1=(LEFT) y1=(y) x2=(width - 8.0) y2=(y) stroke=(GRID)
                    stroke-dasharray=(if t == 0 { "" } else { "2 3" }) {}
                text x=(LEFT - 6.0) y=(y) text-anchor="end" dominant-baseline="middle"
                    fill=(TEXT) font-size="12" { (t) }
            }
            @for (r, row) in p.rows.iter().enumerate() {
                @let x0 = LEFT + slot_w * r as f64 + 6.0;
                @let label_x = x0 + (slot_w - 12.0) / 2.0;
                @if stacked {
                    @let segments = stack(&p.cells[r], base, &scale);
                    @for &(c, n, y, h) in &segments {
                        rect x=(x0) y=(y) width=(slot_w - 12.0) height=(h)
                            fill=(PALETTE[c % PALETTE.len()]) stroke="#ffffff" stroke-width="1" {
                            title { (row.label) ", " (p.columns[c].label) ": " (n) }
                        }
                    }
                    @let y = segments.last().map_or(base, |s| s.2);
                    @let hidden = p.cells[r].iter().any(Option::is_none);
                    @let total = p.row_totals.as_ref().and_then(|t| t[r]);
                    // A column with a hidden part is drawn short of its total: the total is
                    // written over it, with the mark, and the chart's note says so.
                    text x=(label_x) y=(y - 6.0) text-anchor="middle" fill=(TEXT) font-size="12" {
                        @if hidden { title { (row.label) ": some counts not shown (small numbers)" } }
                        (figure(total)) @if hidden && total.is_some() { " " (SUPPRESSED_MARK) }
                    }
                } @else {
                    @let bar_w = (slot_w - 12.0) / series as f64;
                    @for (c, n) in p.cells[r].iter().enumerate() {
                        @let x = x0 + bar_w * c as f64;
                        @match n {
                            Some(n) => {
                                @let h = scale(*n);
                                rect x=(x) y=(base - h) width=(bar_w) height=(h)
                                    fill=(PALETTE[c % PALETTE.len()]) stroke="#ffffff" stroke-width="1" {
                                    title { (row.label) ", " (p.columns[c].label) ": " (n) }
                                }
                            }
                            None => {
                                text x=(x + bar_w / 2.0) y=(base - 4.0) text-anchor="middle"
                                    fill=(TEXT) font-size="10" {
                                    title { (row.label) ", " (p.columns[c].label) ": not shown (small number)" }
                                    (SUPPRESSED_MARK)
                                }
                            }
                        }
                    }
                }
                text x=(label_x) y=(base + 14.0) text-anchor="end" fill=(TEXT) font-size="12"
                    transform=(format!("rotate(-40 {label_x} {})", base + 14.0)) {
                    title { (row.label) } (clipped(&row.label))
                }
            }
        },
    )
}

/// A stacked column's segments, bottom up: (column, count, top, height) for each count shown
/// above zero.
fn stack(
    cells: &[Option<u64>],
    base: f64,
    scale: &dyn Fn(u64) -> f64,
) -> Vec<(usize, u64, f64, f64)> {
    let mut y = base;
    cells
        .iter()
        .enumerate()
        .filter_map(|(c, n)| Some((c, n.filter(|n| *n > 0)?)))
        .map(|(c, n)| {
            let h = scale(n);
            y -= h;
            (c, n, y, h)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::{Category, Table, suppress};

    fn one_way(counts: &[u64]) -> Published {
        let rows = (0..counts.len())
            .map(|i| Category::new(format!("r{i}"), format!("Row {i}")))
            .collect();
        let mut t = Table::one_way("Rows", rows, "Referrals");
        for (i, n) in counts.iter().enumerate() {
            t.cells[i][0] = *n;
        }
        suppress(&t, 5)
    }

    #[test]
    fn bars_are_as_long_as_their_counts_and_a_suppressed_count_has_no_bar() {
        let svg = chart("c", "Title <&>", &one_way(&[40, 20, 10, 2, 0]), Kind::Bars).into_string();
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("Title &lt;&amp;&gt;"), "text is escaped");
        // The longest count fills the bar area; half the count, half the bar.
        assert!(svg.contains("width=\"300\""), "{svg}");
        assert!(svg.contains("width=\"150\""), "{svg}");
        // 2 is under the threshold, and 10 is hidden with it (or 2 = 72 - 40 - 20 - 10 - 0).
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains("Row 2: not shown"));
        assert!(svg.contains("Row 3: not shown"));
        assert!(
            svg.contains(">0</text>"),
            "a zero is shown as 0, with no bar: {svg}"
        );
        assert!(
            !svg.contains("style="),
            "no inline style: the CSP forbids it"
        );
    }

    #[test]
    fn target_bars_are_coloured_by_the_target() {
        let p = crate::reports::report("time-to-first-contact").unwrap();
        let mut t = p.build(&crate::reports::Population {
            referrals: &[],
            letters: &[],
            target_days: 14,
            service_names: &[],
            local_authorities: &[],
            today: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        });
        t.cells[0][0] = 10; // 0 to 7 days
        t.cells[2][0] = 10; // 15 to 28 days
        let svg = chart(
            "c",
            "t",
            &suppress(&t, 5),
            Kind::TargetBars { target_days: 14 },
        )
        .into_string();
        // One bar of each, and the legend's two swatches.
        assert_eq!(svg.matches(WITHIN_TARGET).count(), 2, "{svg}");
        assert_eq!(svg.matches(PAST_TARGET).count(), 2, "{svg}");
        assert!(svg.contains("Within the 14-day target"));
    }

    fn two_way(cells: &[[u64; 2]]) -> Published {
        let rows = (0..cells.len())
            .map(|i| Category::new(format!("2026-0{}", i + 1), format!("2026-0{}", i + 1)))
            .collect();
        let columns = vec![Category::new("gp", "GP"), Category::new("self", "Self")];
        let mut t = Table::two_way("Month", rows, "Route", columns);
        for (r, row) in cells.iter().enumerate() {
            t.cells[r] = row.to_vec();
        }
        suppress(&t, 5)
    }

    #[test]
    fn columns_stack_shown_cells_and_mark_hidden_ones() {
        let p = two_way(&[[10, 10], [20, 1]]);
        let svg = chart("m", "By month", &p, Kind::Stacked).into_string();
        // Legend swatches (2) and the shown segments (1 is hidden, and so is 20 with it).
        let segments = svg.matches("stroke=\"#ffffff\"").count();
        let shown = p
            .cells
            .iter()
            .flatten()
            .filter(|n| n.is_some_and(|n| n > 0))
            .count();
        assert_eq!(segments, shown, "{svg}");
        assert!(svg.contains(">GP<"), "legend: {svg}");
        let grouped = chart("m", "By month", &p, Kind::Grouped).into_string();
        assert!(grouped.contains("not shown (small number)"));
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(step(1), 1);
        assert_eq!(step(9), 5);
        assert_eq!(step(40), 10);
        assert_eq!(step(130), 50);
        assert_eq!(step(1000), 500);
    }
}
