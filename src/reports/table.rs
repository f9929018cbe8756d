//! A report's figures: a table of counts with its margins, and small-number suppression over it.
//! Pure.
//!
//! Suppression is in two steps, as statistical disclosure control does it. Primary: every entry
//! (cell, row or column total, grand total) from 1 to under the threshold is suppressed, so a
//! suppressed entry says only "at least one, fewer than the threshold, or hidden to protect
//! another". A zero is shown: it is nobody. Then
//! secondary: a line of the table (a row with its total, a column with its total, the totals with
//! the grand total) that hides exactly one entry would let that entry be worked out by
//! subtraction, and one whose hidden entries add up to their number would show each to be 1, so
//! the smallest non-zero entry still shown in that line is hidden as well; repeated until no
//! line gives its hidden entries away.

use serde::Serialize;

/// One row or column of a report: its code and what a person reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Category {
    pub code: String,
    pub label: String,
}

impl Category {
    pub fn new(code: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            label: label.into(),
        }
    }
}

/// Counts by row (and column, for a two-way report), with their totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// What the rows are (e.g. "Referral route").
    pub row_dimension: &'static str,
    /// What the columns are; one column ("Referrals") for a one-way report.
    pub column_dimension: &'static str,
    pub rows: Vec<Category>,
    pub columns: Vec<Category>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<u64>>,
    /// Whether the row totals are counts of distinct things (a two-way report whose columns
    /// partition its rows) or, for a one-column report, the cell itself and so not shown.
    pub row_totals: bool,
    /// What the grand total counts when a row may count one thing more than once (support given:
    /// a referral with three kinds of support is in three rows). `None`: the sum of the rows.
    pub distinct_total: Option<u64>,
    /// For a two-way report whose column totals and grand total another report publishes (the
    /// columns are that report's rows): those totals as it published them. They are shown or
    /// hidden here exactly as there, and never hidden to protect a cell here, so neither report
    /// can be used to undo the other's suppression.
    pub published_margins: Option<(Vec<Shown>, Shown)>,
    /// The grand total is withheld whatever it is: the report is a slice (one service, place or
    /// run of months) whose own count another report withholds.
    pub withhold_total: bool,
}

impl Table {
    /// An empty one-way table with `rows`, counted in one column called `unit`.
    pub fn one_way(row_dimension: &'static str, rows: Vec<Category>, unit: &str) -> Self {
        let n = rows.len();
        Self {
            row_dimension,
            column_dimension: "",
            rows,
            columns: vec![Category::new("count", unit)],
            cells: vec![vec![0]; n],
            row_totals: false,
            distinct_total: None,
            published_margins: None,
            withhold_total: false,
        }
    }

    /// An empty two-way table.
    pub fn two_way(
        row_dimension: &'static str,
        rows: Vec<Category>,
        column_dimension: &'static str,
        columns: Vec<Category>,
    ) -> Self {
        let cells = vec![vec![0; columns.len()]; rows.len()];
        Self {
            row_dimension,
            column_dimension,
            rows,
            columns,
            cells,
            row_totals: true,
            distinct_total: None,
            published_margins: None,
            withhold_total: false,
        }
    }

    /// Counts one more in the row coded `row` (the first column), adding the row if it is new.
    pub fn count(&mut self, row: &str, label: impl FnOnce() -> String) {
        self.count_at(row, label, "count");
    }

    /// Counts one more at (`row`, `column`); a row not yet in the table is added, a column not
    /// in it is a bug in the report's definition.
    pub fn count_at(&mut self, row: &str, label: impl FnOnce() -> String, column: &str) {
        let c = self
            .columns
            .iter()
            .position(|c| c.code == column)
            .unwrap_or_else(|| panic!("column {column} is not in the report"));
        let r = match self.rows.iter().position(|r| r.code == row) {
            Some(r) => r,
            None => {
                self.rows.push(Category::new(row, label()));
                self.cells.push(vec![0; self.columns.len()]);
                self.rows.len() - 1
            }
        };
        self.cells[r][c] += 1;
    }

    pub fn row_total(&self, r: usize) -> u64 {
        self.cells[r].iter().sum()
    }

    pub fn column_total(&self, c: usize) -> u64 {
        self.cells.iter().map(|row| row[c]).sum()
    }

    pub fn grand_total(&self) -> u64 {
        self.distinct_total
            .unwrap_or_else(|| self.cells.iter().flatten().sum())
    }
}

/// A count as published: shown, or suppressed.
pub type Shown = Option<u64>;

/// A table after suppression: what may be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub row_dimension: &'static str,
    pub column_dimension: &'static str,
    pub rows: Vec<Category>,
    pub columns: Vec<Category>,
    pub cells: Vec<Vec<Shown>>,
    /// Per row; `None` for a one-column report (the cell is its row's total).
    pub row_totals: Option<Vec<Shown>>,
    pub column_totals: Vec<Shown>,
    pub grand_total: Shown,
    /// Entries hidden, primary and secondary.
    pub suppressed: usize,
    pub threshold: u64,
}

/// Where an entry sits: a cell, a row total, a column total, or the grand total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Cell(usize, usize),
    Row(usize),
    Column(usize),
    Grand,
}

/// Whether any of `selected` is withheld when `counts` (by key) are published as a one-way
/// table under `threshold`: a report limited to such a slice must withhold its total, or the
/// slice's count, hidden in the breakdown, would be read off the sliced report.
pub fn withheld_in<'a>(
    counts: &std::collections::BTreeMap<String, u64>,
    selected: impl IntoIterator<Item = &'a str>,
    threshold: u64,
) -> bool {
    let mut table = Table::one_way(
        "slice",
        counts
            .keys()
            .map(|k| Category::new(k.clone(), k.clone()))
            .collect(),
        "count",
    );
    for (r, n) in counts.values().enumerate() {
        table.cells[r][0] = *n;
    }
    let published = suppress(&table, threshold);
    selected.into_iter().any(|key| {
        counts
            .keys()
            .position(|k| k == key)
            .is_some_and(|r| published.cells[r][0].is_none())
    })
}

/// Whether the hidden entries of one line (whose last entry is its total) could be worked out
/// from what the line shows. Zeros are never hidden, so a reader knows every hidden entry is at
/// least 1: one alone is its total less the rest, and several whose sum (the shown total less
/// the shown entries) is their number are all 1. With the total hidden too, the line says
/// nothing of them by itself.
fn determined(line: &[At], hidden: &[At], value: &impl Fn(At) -> u64) -> bool {
    let total_shown = line.last().is_some_and(|t| !hidden.contains(t));
    match hidden {
        [] => false,
        [_] => true,
        many => total_shown && many.iter().map(|&at| value(at)).sum::<u64>() == many.len() as u64,
    }
}

/// Suppresses `table` for publication with cells under `threshold` hidden (see the module's
/// comment). A threshold of 0 or 1 hides nothing under it (1 hides zeros only: not useful, but
/// what was asked).
pub fn suppress(table: &Table, threshold: u64) -> Published {
    let rows = table.rows.len();
    let cols = table.columns.len();
    let value = |at: At| match at {
        At::Cell(r, c) => table.cells[r][c],
        At::Row(r) => table.row_total(r),
        At::Column(c) => table.column_total(c),
        At::Grand => table.grand_total(),
    };
    // The lines an attacker can subtract along: each is a set of entries that add up to its
    // last one (the total). A one-column table's row totals are its cells, and not published.
    // A table whose grand total counts distinct things (rows overlap) has no column line: its
    // column total is not the sum of its cells.
    let additive = table.distinct_total.is_none();
    let mut lines: Vec<Vec<At>> = Vec::new();
    if table.row_totals {
        for r in 0..rows {
            let mut line: Vec<At> = (0..cols).map(|c| At::Cell(r, c)).collect();
            line.push(At::Row(r));
            lines.push(line);
        }
    }
    if additive {
        for c in 0..cols {
            let mut line: Vec<At> = (0..rows).map(|r| At::Cell(r, c)).collect();
            line.push(if table.row_totals || cols > 1 {
                At::Column(c)
            } else {
                At::Grand
            });
            lines.push(line);
        }
        if table.row_totals && cols > 1 {
            let mut line: Vec<At> = (0..cols).map(At::Column).collect();
            line.push(At::Grand);
            lines.push(line);
            let mut line: Vec<At> = (0..rows).map(At::Row).collect();
            line.push(At::Grand);
            lines.push(line);
        }
    }
    let mut every: Vec<At> = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| At::Cell(r, c)))
        .collect();
    if table.row_totals {
        every.extend((0..rows).map(At::Row));
    }
    if table.row_totals || cols > 1 {
        every.extend((0..cols).map(At::Column));
    }
    every.push(At::Grand);

    // Margins another report publishes keep its pattern; nothing here changes them.
    let fixed = |at: At| match (&table.published_margins, at) {
        (_, At::Grand) if table.withhold_total => Some(true),
        (Some((columns, _)), At::Column(c)) => Some(columns[c].is_none()),
        (Some((_, grand)), At::Grand) => Some(grand.is_none()),
        _ => None,
    };
    let mut hidden: Vec<At> = every
        .iter()
        .copied()
        .filter(|&at| fixed(at).unwrap_or_else(|| (1..threshold).contains(&value(at))))
        .collect();
    // A line whose total is small hides all of itself, zeros too: "3 people, all in one row"
    // would say what each of them is, though no count of them is shown.
    for line in &lines {
        let total = *line.last().expect("a line ends with its total");
        if (1..threshold).contains(&value(total)) {
            for &at in line {
                if !hidden.contains(&at) && fixed(at).is_none() {
                    hidden.push(at);
                }
            }
        }
    }
    loop {
        let mut changed = false;
        for line in &lines {
            let hidden_here: Vec<At> = line
                .iter()
                .copied()
                .filter(|at| hidden.contains(at))
                .collect();
            if !determined(line, &hidden_here, &value) {
                continue;
            }
            // Hide the smallest non-zero entry still shown, a cell before a total (a total
            // carries more of the report), so the hidden entries cannot be worked out.
            let next = line
                .iter()
                .copied()
                .filter(|&at| !hidden.contains(&at) && value(at) > 0 && fixed(at).is_none())
                .min_by_key(|&at| {
                    (
                        matches!(at, At::Row(_) | At::Column(_) | At::Grand),
                        value(at),
                    )
                });
            if let Some(at) = next {
                hidden.push(at);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    if !additive && (1..threshold).contains(&table.grand_total()) {
        hidden = every.clone();
    }
    // Where rows overlap (the grand total counts distinct referrals), the total bounds a hidden
    // row: it goes with any hidden row.
    if !additive
        && hidden.iter().any(|at| matches!(at, At::Cell(..)))
        && !hidden.contains(&At::Grand)
    {
        hidden.push(At::Grand);
    }
    let shown = |at: At| (!hidden.contains(&at)).then(|| value(at));
    Published {
        row_dimension: table.row_dimension,
        column_dimension: table.column_dimension,
        rows: table.rows.clone(),
        columns: table.columns.clone(),
        cells: (0..rows)
            .map(|r| (0..cols).map(|c| shown(At::Cell(r, c))).collect())
            .collect(),
        row_totals: table
            .row_totals
            .then(|| (0..rows).map(|r| shown(At::Row(r))).collect()),
        column_totals: (0..cols)
            .map(|c| {
                if table.row_totals || cols > 1 {
                    shown(At::Column(c))
                } else {
                    shown(At::Grand)
                }
            })
            .collect(),
        grand_total: shown(At::Grand),
        suppressed: hidden.len(),
        threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_way(counts: &[u64]) -> Table {
        let mut t = Table::one_way(
            "Route",
            (0..counts.len())
                .map(|i| Category::new(format!("r{i}"), format!("Route {i}")))
                .collect(),
            "Referrals",
        );
        for (i, n) in counts.iter().enumerate() {
            t.cells[i][0] = *n;
        }
        t
    }

    fn two_way(counts: &[&[u64]]) -> Table {
        let mut t = Table::two_way(
            "Month",
            (0..counts.len())
                .map(|i| Category::new(format!("m{i}"), format!("Month {i}")))
                .collect(),
            "Route",
            (0..counts[0].len())
                .map(|i| Category::new(format!("r{i}"), format!("Route {i}")))
                .collect(),
        );
        for (r, row) in counts.iter().enumerate() {
            t.cells[r] = row.to_vec();
        }
        t
    }

    /// No line of a published table gives its hidden entries away (`table` holds the true
    /// counts): none hides exactly one, and none hides only zeros. The property that makes
    /// subtraction useless.
    fn no_line_hides_exactly_one(p: &Published) {
        no_line_gives_away(p, None)
    }

    fn no_line_gives_away(p: &Published, truth: Option<&Table>) {
        let cols = p.columns.len();
        // `hidden`: the true values of the line's hidden cells; `total_hidden`: its total too.
        let check = |hidden: Vec<u64>, total_hidden: bool, what: String| {
            // Zeros a reader can work out are nobody: harmless.
            if truth.is_some() && !total_hidden && hidden.iter().all(|&v| v == 0) {
                return;
            }
            let count = hidden.len() + usize::from(total_hidden);
            assert_ne!(count, 1, "{what} hides one entry: {p:?}");
            // Where no zero is hidden a reader knows each hidden count is at least 1: several
            // adding up to their number would each be 1.
            if truth.is_some() && hidden.len() >= 2 && !total_hidden && !hidden.contains(&0) {
                assert!(
                    hidden.iter().sum::<u64>() > hidden.len() as u64,
                    "{what} hides only ones beside its total: {p:?}"
                );
            }
        };
        let cell = |r: usize, c: usize| truth.map_or(0, |t| t.cells[r][c]);
        for (r, row) in p.cells.iter().enumerate() {
            if let Some(totals) = &p.row_totals {
                let hidden: Vec<u64> = (0..cols)
                    .filter(|&c| row[c].is_none())
                    .map(|c| cell(r, c))
                    .collect();
                check(hidden, totals[r].is_none(), format!("row {r}"));
            }
        }
        for c in 0..cols {
            let hidden: Vec<u64> = (0..p.rows.len())
                .filter(|&r| p.cells[r][c].is_none())
                .map(|r| cell(r, c))
                .collect();
            check(hidden, p.column_totals[c].is_none(), format!("column {c}"));
        }
    }

    #[test]
    fn small_cells_are_hidden_with_a_partner() {
        let p = suppress(&one_way(&[40, 3, 20, 9]), 5);
        assert_eq!(p.cells[1][0], None, "3 is under 5");
        // 3 alone hidden: 72 - 40 - 20 - 9 would give it back, so the smallest shown (9) goes too.
        assert_eq!(p.cells[3][0], None);
        assert_eq!(p.cells[0][0], Some(40));
        assert_eq!(p.grand_total, Some(72));
        assert_eq!(p.suppressed, 2);
        no_line_hides_exactly_one(&p);
    }

    #[test]
    fn zeros_are_shown_and_ones_are_not_given_away() {
        let t = one_way(&[12, 0, 7]);
        let p = suppress(&t, 5);
        assert_eq!(p.cells[1][0], Some(0), "a zero is nobody");
        assert_eq!(p.suppressed, 0);
        // Two hidden ones beside the total: 9 - 7 = 2 would show each to be 1.
        let t = one_way(&[7, 1, 1, 9]);
        let p = suppress(&t, 5);
        assert_eq!((p.cells[1][0], p.cells[2][0]), (None, None));
        assert_eq!(
            p.cells[0][0], None,
            "the smallest shown count hides with them"
        );
        no_line_gives_away(&p, Some(&t));
    }

    #[test]
    fn a_small_total_is_hidden_and_so_are_its_parts_zeros_too() {
        let p = suppress(&one_way(&[3, 0, 0]), 5);
        assert_eq!(p.grand_total, None);
        assert!(
            p.cells.iter().all(|r| r[0].is_none()),
            "three people all in the first row would be told by its zeros: {p:?}"
        );
        let mut small_row = two_way(&[&[3, 0], &[20, 30]]);
        small_row.rows[0].code = "small".into();
        let p = suppress(&small_row, 5);
        assert_eq!(p.cells[0], vec![None, None], "{p:?}");
        no_line_hides_exactly_one(&p);
    }

    #[test]
    fn overlapping_rows_hide_their_total_with_a_row() {
        let mut t = one_way(&[30, 4]);
        t.distinct_total = Some(32);
        let p = suppress(&t, 5);
        assert_eq!((p.cells[1][0], p.grand_total), (None, None));
        assert_eq!(p.cells[0][0], Some(30));
    }

    #[test]
    fn nothing_is_hidden_when_every_count_is_large() {
        let p = suppress(&two_way(&[&[10, 20], &[30, 40]]), 5);
        assert_eq!(p.suppressed, 0);
        assert_eq!(p.row_totals, Some(vec![Some(30), Some(70)]));
        assert_eq!(p.column_totals, vec![Some(40), Some(60)]);
        assert_eq!(p.grand_total, Some(100));
    }

    #[test]
    fn two_way_suppression_protects_rows_columns_and_margins() {
        let p = suppress(&two_way(&[&[2, 30, 40], &[25, 30, 35], &[20, 6, 50]]), 5);
        assert_eq!(p.cells[0][0], None);
        no_line_hides_exactly_one(&p);
        // The margins' own lines hold too.
        let totals_hidden = p.column_totals.iter().filter(|v| v.is_none()).count()
            + usize::from(p.grand_total.is_none());
        assert_ne!(totals_hidden, 1);
    }

    #[test]
    fn suppression_holds_for_many_random_tables() {
        // A deterministic sweep (no rand dependency) of 3×3 tables of small counts.
        let mut seed = 7u64;
        for _ in 0..2000 {
            let mut next = || {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) % 12
            };
            let rows: Vec<Vec<u64>> = (0..3).map(|_| (0..3).map(|_| next()).collect()).collect();
            let refs: Vec<&[u64]> = rows.iter().map(Vec::as_slice).collect();
            let t = two_way(&refs);
            let p = suppress(&t, 5);
            no_line_gives_away(&p, Some(&t));
            for (r, row) in rows.iter().enumerate() {
                for (c, v) in row.iter().enumerate() {
                    match v {
                        0 => {}
                        1..5 => assert_eq!(p.cells[r][c], None),
                        _ => assert!(p.cells[r][c].is_none_or(|shown| shown == *v)),
                    }
                }
            }
        }
    }
}
