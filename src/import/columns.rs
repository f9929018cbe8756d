//! A spreadsheet's rows as practice-format records: a column-mapping file says which column
//! fills which field, and how to read it (a UK date, a yes/no, a list). Pure: the shell reads the
//! CSV and the mapping file.
//!
//! ```toml
//! [fields]
//! fitNoteId = "Note ref"
//! "practice.odsCode" = "Practice"
//! "patient.birthDate" = { column = "DOB", date = "%d/%m/%Y" }
//! "assessAgain" = { column = "Review?", type = "boolean" }
//! "conditions.0.text" = "Diagnosis"
//! [fixed]
//! "issuer.profession" = "doctor"
//! ```
//!
//! A field is a dotted path into the record (a number picks an array item). An empty cell leaves
//! its field out, so the format's own rules say whether it was needed.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fhir::{Issue, IssueType, Issues};

/// The mapping file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMap {
    /// Field path → where its value comes from.
    pub fields: BTreeMap<String, Source>,
    /// Field path → the same value on every row (TOML values: strings, booleans, numbers,
    /// arrays).
    #[serde(default)]
    pub fixed: BTreeMap<String, toml::Value>,
}

/// A column, named alone (read as text) or with how to read it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Source {
    Column(String),
    Read(ColumnRead),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRead {
    pub column: String,
    #[serde(default, rename = "type")]
    pub kind: Option<CellType>,
    /// A date's `strftime` form in the sheet (e.g. `%d/%m/%Y`); implies `type = "date"`.
    #[serde(default)]
    pub date: Option<String>,
    /// What separates a list's items (default `;`).
    #[serde(default)]
    pub separator: Option<String>,
    /// The column's cells may hold line breaks (a free-text comment). Elsewhere a line break
    /// in a cell means a quote was left open and rows ran together: the row is refused.
    #[serde(default)]
    pub multiline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellType {
    String,
    /// yes/no, y/n, true/false, 1/0 (any case).
    Boolean,
    Number,
    /// A date, given as `date`'s form, written `YYYY-MM-DD`.
    Date,
    /// Items separated by `separator`, each trimmed, empty ones dropped.
    List,
}

/// Why a mapping cannot be used with a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("the mapping names column '{0}', which the file's header row does not have")]
    NoSuchColumn(String),
    #[error(
        "'{0}' is not a field path: dotted names and item numbers, such as patient.name.given.0"
    )]
    BadPath(String),
    #[error("field '{0}' is both mapped to a column and fixed")]
    Twice(String),
    #[error("field '{0}' has a date form but is not a date")]
    DateFormNotDate(String),
    #[error(
        "field '{0}' has a two-digit year (%y): a date of birth in 1920 would be read as 2020; use %Y"
    )]
    TwoDigitYear(String),
    #[error("field '{0}' has an empty list separator")]
    EmptySeparator(String),
    #[error("fields '{0}' and '{1}' overlap: one would overwrite the other")]
    Overlap(String, String),
    #[error("the file's header row has column '{0}' more than once, and the mapping reads it")]
    AmbiguousColumn(String),
    #[error("fixed value of '{0}' is a TOML date: write it as quoted text, such as \"2026-03-02\"")]
    FixedDate(String),
}

/// One field's reading, resolved against the header row.
#[derive(Debug, Clone)]
struct Field {
    path: Vec<Segment>,
    expression: String,
    column: String,
    index: usize,
    kind: CellType,
    date_form: String,
    separator: String,
    multiline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Item(usize),
}

/// A mapping checked against a file's header row: what turns each row into a record.
#[derive(Debug, Clone)]
pub struct RowMapper {
    fields: Vec<Field>,
    fixed: Vec<(Vec<Segment>, Value)>,
    /// Cells in the header row: a row with more (not empty) has a comma out of place.
    columns: usize,
    /// The columns whose cells may hold line breaks (read by a `multiline` field).
    multiline_columns: Vec<usize>,
    header: Vec<String>,
}

fn parse_path(path: &str) -> Result<Vec<Segment>, MappingError> {
    let bad = || MappingError::BadPath(path.to_string());
    let segments: Vec<Segment> = path
        .split('.')
        .map(|s| {
            if s.is_empty() {
                Err(bad())
            } else if s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().map(Segment::Item).map_err(|_| bad())
            } else if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                Ok(Segment::Key(s.to_string()))
            } else {
                Err(bad())
            }
        })
        .collect::<Result<_, _>>()?;
    // Items are small indexes into short lists (conditions, given names), never a way to make
    // a record of a million nulls.
    let sane = matches!(segments.first(), Some(Segment::Key(_)))
        && segments
            .iter()
            .all(|s| !matches!(s, Segment::Item(i) if *i > 99));
    sane.then_some(segments).ok_or_else(bad)
}

impl ColumnMap {
    /// The mapping for a file whose header row is `header`: every named column must be there.
    pub fn for_header(&self, header: &[String]) -> Result<RowMapper, MappingError> {
        // One field may not be another (`a.0`, `a.00`) or sit inside it (`a` and `a.b`): one
        // would overwrite the other. Compared as parsed paths.
        let paths: Vec<(&String, Vec<Segment>)> = self
            .fields
            .keys()
            .chain(self.fixed.keys())
            .map(|p| parse_path(p).map(|segments| (p, segments)))
            .collect::<Result<_, _>>()?;
        for (i, (a, pa)) in paths.iter().enumerate() {
            for (b, pb) in &paths[i + 1..] {
                if a == b {
                    // The same field in [fields] and [fixed].
                    return Err(MappingError::Twice(a.to_string()));
                }
                if pb.starts_with(pa) || pa.starts_with(pb) {
                    let (short, long) = if pa.len() <= pb.len() { (a, b) } else { (b, a) };
                    return Err(MappingError::Overlap(short.to_string(), long.to_string()));
                }
            }
        }
        let mut fields = Vec::new();
        for (path, source) in &self.fields {
            if self.fixed.contains_key(path) {
                return Err(MappingError::Twice(path.clone()));
            }
            let (column, kind, date_form, separator, multiline) = match source {
                Source::Column(c) => (c.clone(), CellType::String, None, None, false),
                Source::Read(r) => {
                    let kind = match (r.kind, &r.date) {
                        (None, Some(_)) => CellType::Date,
                        (Some(k), Some(_)) if k != CellType::Date => {
                            return Err(MappingError::DateFormNotDate(path.clone()));
                        }
                        (k, _) => k.unwrap_or(CellType::String),
                    };
                    if r.date.as_deref().is_some_and(two_digit_year) {
                        return Err(MappingError::TwoDigitYear(path.clone()));
                    }
                    if r.separator.as_deref() == Some("") {
                        return Err(MappingError::EmptySeparator(path.clone()));
                    }
                    (
                        r.column.clone(),
                        kind,
                        r.date.clone(),
                        r.separator.clone(),
                        r.multiline,
                    )
                }
            };
            let mut named = header
                .iter()
                .enumerate()
                .filter(|(_, h)| h.trim() == column.trim())
                .map(|(i, _)| i);
            let index = named
                .next()
                .ok_or_else(|| MappingError::NoSuchColumn(column.clone()))?;
            if named.next().is_some() {
                return Err(MappingError::AmbiguousColumn(column.clone()));
            }
            fields.push(Field {
                path: parse_path(path)?,
                expression: path.clone(),
                column,
                index,
                kind,
                date_form: date_form.unwrap_or_else(|| "%Y-%m-%d".to_string()),
                separator: separator.unwrap_or_else(|| ";".to_string()),
                multiline,
            });
        }
        let fixed = self
            .fixed
            .iter()
            .map(|(path, value)| {
                if has_datetime(value) {
                    return Err(MappingError::FixedDate(path.clone()));
                }
                let value =
                    serde_json::to_value(value).map_err(|_| MappingError::BadPath(path.clone()))?;
                Ok((parse_path(path)?, value))
            })
            .collect::<Result<_, MappingError>>()?;
        let multiline_columns = fields
            .iter()
            .filter(|f| f.multiline)
            .map(|f| f.index)
            .collect();
        Ok(RowMapper {
            fields,
            fixed,
            columns: header.len(),
            multiline_columns,
            header: header.to_vec(),
        })
    }
}

impl RowMapper {
    /// The record a row stands for, or every cell that could not be read (by field, naming its
    /// column; a cell's content is never repeated).
    pub fn record(&self, row: &[&str]) -> Result<Value, Issues> {
        let mut record = Value::Object(Map::new());
        let mut issues = Issues::new();
        // Fewer cells is a row whose last ones were left empty; more, not empty, is a comma
        // that was not quoted, and every cell after it is in the wrong column.
        if row.len() > self.columns && row[self.columns..].iter().any(|c| !c.trim().is_empty()) {
            issues.push(Issue::general(
                IssueType::Structure,
                format!(
                    "the row has {} cells but the header {}: a comma in a cell is probably not quoted",
                    row.len(),
                    self.columns
                ),
            ));
            return Err(issues);
        }
        // A line break in any cell — read or not — that no `multiline` field reads means a
        // quote was left open and the rows after it ran into this one.
        for (i, cell) in row.iter().enumerate() {
            if cell.contains(['\n', '\r']) && !self.multiline_columns.contains(&i) {
                let column = self.header.get(i).map_or("", String::as_str);
                let expression = self
                    .fields
                    .iter()
                    .find(|f| f.index == i)
                    .map_or(String::new(), |f| f.expression.clone());
                issues.push(Issue::error(
                    IssueType::Structure,
                    expression,
                    format!(
                        "column '{column}' holds a line break: a quote is probably not closed and rows ran together (a column whose cells may hold line breaks is read by a field marked multiline = true)"
                    ),
                ));
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        for (path, value) in &self.fixed {
            put(&mut record, path, value.clone());
        }
        for f in &self.fields {
            let cell = row.get(f.index).map_or("", |c| c.trim());
            if cell.is_empty() {
                continue;
            }
            match read(f, cell) {
                Ok(value) => put(&mut record, &f.path, value),
                Err(why) => issues.push(Issue::error(
                    IssueType::Value,
                    f.expression.clone(),
                    format!("column '{}' {why}", f.column),
                )),
            }
        }
        issues.into_result(record)
    }
}

/// Whether a date form reads a year of two digits (`%y`, and the forms that include it: `%D`,
/// `%x`, padding variants), as chrono parses the form.
fn two_digit_year(form: &str) -> bool {
    use chrono::format::{Item, Numeric, StrftimeItems};
    StrftimeItems::new(form)
        .any(|item| matches!(item, Item::Numeric(Numeric::YearMod100, _) | Item::Error))
}

fn has_datetime(value: &toml::Value) -> bool {
    match value {
        toml::Value::Datetime(_) => true,
        toml::Value::Array(items) => items.iter().any(has_datetime),
        toml::Value::Table(t) => t.values().any(has_datetime),
        _ => false,
    }
}

fn read(f: &Field, cell: &str) -> Result<Value, String> {
    match f.kind {
        CellType::String => Ok(Value::String(cell.to_string())),
        CellType::Boolean => match cell.to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "1" => Ok(Value::Bool(true)),
            "no" | "n" | "false" | "0" => Ok(Value::Bool(false)),
            _ => Err("is not yes or no".to_string()),
        },
        CellType::Number => cell
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .and_then(|n| {
                if n.fract() == 0.0 && n.abs() < 9e15 {
                    Some(Value::from(n as i64))
                } else {
                    serde_json::Number::from_f64(n).map(Value::Number)
                }
            })
            .ok_or_else(|| "is not a number".to_string()),
        CellType::Date => NaiveDate::parse_from_str(cell, &f.date_form)
            .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
            .map_err(|_| format!("is not a date in the form {}", f.date_form)),
        CellType::List => Ok(Value::Array(
            cell.split(f.separator.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
    }
}

/// Sets `value` at `path`, making the objects and arrays on the way (array gaps as nulls, which
/// the format's schema then names).
fn put(target: &mut Value, path: &[Segment], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = target;
    for (i, segment) in parents.iter().enumerate() {
        let next_is_item = matches!(path[i + 1], Segment::Item(_));
        let empty = || {
            if next_is_item {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            }
        };
        at = match segment {
            Segment::Key(k) => {
                if !at.is_object() {
                    *at = Value::Object(Map::new());
                }
                let map = at.as_object_mut().expect("made an object above");
                map.entry(k.clone()).or_insert_with(empty)
            }
            Segment::Item(n) => {
                if !at.is_array() {
                    *at = Value::Array(Vec::new());
                }
                let items = at.as_array_mut().expect("made an array above");
                if items.len() <= *n {
                    items.resize(*n + 1, Value::Null);
                }
                if items[*n].is_null() {
                    items[*n] = empty();
                }
                &mut items[*n]
            }
        };
    }
    match last {
        Segment::Key(k) => {
            if !at.is_object() {
                *at = Value::Object(Map::new());
            }
            at.as_object_mut()
                .expect("made an object above")
                .insert(k.clone(), value);
        }
        Segment::Item(n) => {
            if !at.is_array() {
                *at = Value::Array(Vec::new());
            }
            let items = at.as_array_mut().expect("made an array above");
            if items.len() <= *n {
                items.resize(*n + 1, Value::Null);
            }
            items[*n] = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(text: &str) -> ColumnMap {
        toml::from_str(text).unwrap()
    }

    fn header(cols: &[&str]) -> Vec<String> {
        cols.iter().map(|c| c.to_string()).collect()
    }

    const MAP: &str = r#"
        [fields]
        fitNoteId = "Ref"
        "practice.odsCode" = "Practice"
        "patient.nhsNumber" = "NHS number"
        "patient.birthDate" = { column = "DOB", date = "%d/%m/%Y" }
        "assessAgain" = { column = "Review", type = "boolean" }
        "conditions.0.text" = "Diagnosis"
        "conditions.1.text" = "Second diagnosis"
        "support.hours" = { column = "Hours", type = "number" }
        "support.needs" = { column = "Needs", type = "list" }
        "support.notes" = { column = "Notes", multiline = true }
        [fixed]
        "issuer.profession" = "doctor"
        "issuer.name.given" = ["Asha"]
    "#;

    fn mapper() -> RowMapper {
        mapping(MAP)
            .for_header(&header(&[
                "Ref",
                "Practice",
                "NHS number",
                "DOB",
                "Review",
                "Diagnosis",
                "Second diagnosis",
                "Hours",
                "Needs",
                "Notes",
            ]))
            .unwrap()
    }

    fn mapper_with_extra() -> RowMapper {
        mapping(MAP)
            .for_header(&header(&[
                "Ref",
                "Practice",
                "NHS number",
                "DOB",
                "Review",
                "Diagnosis",
                "Second diagnosis",
                "Hours",
                "Needs",
                "Notes",
                "Extra",
            ]))
            .unwrap()
    }

    #[test]
    fn a_row_becomes_the_record_its_mapping_describes() {
        let record = mapper()
            .record(&[
                "FN-1",
                "C88901",
                " 9990005516 ",
                "12/04/1979",
                "Yes",
                "Low back pain",
                "",
                "37.5",
                "confidence; ; money advice",
            ])
            .unwrap();
        assert_eq!(
            record,
            json!({
                "fitNoteId": "FN-1",
                "practice": { "odsCode": "C88901" },
                "patient": { "nhsNumber": "9990005516", "birthDate": "1979-04-12" },
                "assessAgain": true,
                "conditions": [{ "text": "Low back pain" }],
                "support": { "hours": 37.5, "needs": ["confidence", "money advice"] },
                "issuer": { "profession": "doctor", "name": { "given": ["Asha"] } },
            })
        );
    }

    #[test]
    fn every_unreadable_cell_is_named_by_field_and_column_without_its_content() {
        let issues = mapper()
            .record(&[
                "FN-1",
                "C88901",
                "x",
                "1979-04-12",
                "maybe",
                "",
                "",
                "lots",
                "",
            ])
            .unwrap_err();
        let got: Vec<(String, String)> = issues
            .iter()
            .map(|i| {
                (
                    i.expression.clone().unwrap_or_default(),
                    i.diagnostics.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "assessAgain".into(),
                    "column 'Review' is not yes or no".into()
                ),
                (
                    "patient.birthDate".into(),
                    "column 'DOB' is not a date in the form %d/%m/%Y".into()
                ),
                (
                    "support.hours".into(),
                    "column 'Hours' is not a number".into()
                ),
            ]
        );
        assert!(!format!("{issues:?}").contains("maybe"));
    }

    #[test]
    fn rows_that_ran_together_or_shifted_are_refused() {
        let m = mapper();
        let broke = m
            .record(&[
                "FN-1",
                "C88901",
                "9990005516\nFN-2",
                "",
                "",
                "",
                "",
                "",
                "",
                "a\nb",
            ])
            .unwrap_err();
        let exprs: Vec<String> = broke.iter().filter_map(|i| i.expression.clone()).collect();
        assert_eq!(
            exprs,
            ["patient.nhsNumber"],
            "a line break only where allowed"
        );
        // A column the mapping does not read is checked too.
        let unread = mapper_with_extra()
            .record(&[
                "FN-1",
                "C88901",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "x\nFN-2,C88901",
            ])
            .unwrap_err();
        assert!(
            unread
                .iter()
                .next()
                .unwrap()
                .diagnostics
                .contains("'Extra'"),
            "{unread:?}"
        );
        let shifted = m
            .record(&["FN-1", "C88901", "x", "", "", "", "", "", "", "", "spill"])
            .unwrap_err();
        assert!(
            shifted
                .iter()
                .next()
                .unwrap()
                .diagnostics
                .contains("not quoted")
        );
        let trailing_empty = m.record(&["FN-1", "C88901", "", "", "", "", "", "", "", "", " "]);
        assert!(trailing_empty.is_ok());
    }

    #[test]
    fn a_short_row_leaves_its_missing_cells_out() {
        let record = mapper().record(&["FN-2", "C88901"]).unwrap();
        assert_eq!(record["fitNoteId"], "FN-2");
        assert!(record.get("patient").is_none());
    }

    #[test]
    fn a_mapping_that_does_not_fit_the_file_is_refused_before_any_row() {
        let m = mapping(MAP);
        assert_eq!(
            m.for_header(&header(&["Ref"])).unwrap_err(),
            MappingError::NoSuchColumn("Review".into()),
            "the first missing column, in field order"
        );
        let bad = mapping("[fields]\n\"patient..name\" = \"A\"\n");
        assert!(matches!(
            bad.for_header(&header(&["A"])),
            Err(MappingError::BadPath(_))
        ));
        let huge = mapping("[fields]\n\"conditions.100000.text\" = \"A\"\n");
        assert!(matches!(
            huge.for_header(&header(&["A"])),
            Err(MappingError::BadPath(_))
        ));
        for (text, want) in [
            (
                "[fields]\na = \"A\"\n\"a.b\" = \"A\"\n",
                MappingError::Overlap("a".into(), "a.b".into()),
            ),
            (
                "[fields]\na = { column = \"A\", date = \"%d/%m/%y\" }\n",
                MappingError::TwoDigitYear("a".into()),
            ),
            (
                "[fields]\na = { column = \"A\", date = \"%D\" }\n",
                MappingError::TwoDigitYear("a".into()),
            ),
            (
                "[fields]\na = { column = \"A\", date = \"%d/%m/%-y\" }\n",
                MappingError::TwoDigitYear("a".into()),
            ),
            (
                "[fields]\n\"a.0\" = \"A\"\n\"a.00\" = \"B\"\n",
                MappingError::Overlap("a.0".into(), "a.00".into()),
            ),
            (
                "[fields]\na = { column = \"A\", type = \"list\", separator = \"\" }\n",
                MappingError::EmptySeparator("a".into()),
            ),
            (
                "[fields]\nb = \"B\"\n[fixed]\na = 2026-03-02\n",
                MappingError::FixedDate("a".into()),
            ),
        ] {
            assert_eq!(
                mapping(text).for_header(&header(&["A", "B"])).unwrap_err(),
                want
            );
        }
        assert_eq!(
            mapping("[fields]\na = \"A\"\n")
                .for_header(&header(&["A", "A"]))
                .unwrap_err(),
            MappingError::AmbiguousColumn("A".into())
        );
        let twice = mapping("[fields]\na = \"A\"\n[fixed]\na = \"x\"\n");
        assert_eq!(
            twice.for_header(&header(&["A"])).unwrap_err(),
            MappingError::Twice("a".into())
        );
        let not_date =
            mapping("[fields]\na = { column = \"A\", type = \"boolean\", date = \"%d\" }\n");
        assert_eq!(
            not_date.for_header(&header(&["A"])).unwrap_err(),
            MappingError::DateFormNotDate("a".into())
        );
        assert!(
            toml::from_str::<ColumnMap>("[fields]\na = { colum = \"A\" }\n").is_err(),
            "a misspelt key is refused, not ignored"
        );
    }
}
