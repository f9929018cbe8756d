//! A published report in the forms it is served in: JSON, CSV and a FHIR R4 MeasureReport, and
//! each report's Measure definition. Pure.

use serde_json::{Value, json};

use super::{Published, Report};
use crate::fhir::systems;

/// What the report was made over, stated in every form.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// Service ids covered.
    pub services: Vec<String>,
    /// First and last month (`YYYY-MM`), inclusive, if limited.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Postcode district, if limited.
    pub place: Option<String>,
}

/// The mark a suppressed count carries in CSV (the ONS's "[c]", confidential).
pub const SUPPRESSED_MARK: &str = "[c]";

pub fn json(report: &Report, p: &Published, scope: &Scope, generated: &str) -> Value {
    let rows: Vec<Value> = p
        .rows
        .iter()
        .enumerate()
        .map(|(r, row)| {
            let mut v = json!({
                "code": row.code,
                "label": row.label,
                "counts": p.columns.iter().zip(&p.cells[r]).map(|(c, n)| json!({ "column": c.code, "count": n })).collect::<Vec<_>>(),
            });
            if let Some(totals) = &p.row_totals {
                v["total"] = json!(totals[r]);
            }
            v
        })
        .collect();
    json!({
        "name": report.name,
        "title": report.title,
        "description": report.description,
        "generated": generated,
        "scope": scope,
        "rowDimension": p.row_dimension,
        "columnDimension": p.column_dimension,
        "columns": p.columns,
        "rows": rows,
        "columnTotals": p.column_totals,
        "total": p.grand_total,
        "suppression": {
            "threshold": p.threshold,
            "suppressed": p.suppressed,
            "rule": format!("Counts under {} are not shown (null), nor is any other count that would let one be worked out from the totals.", p.threshold),
        },
        "measure": report.measure_url(),
    })
}

/// One CSV field, quoted when it must be (RFC 4180).
fn field(text: &str) -> String {
    // A leading =, +, - or @ is read as a formula by spreadsheets: a text field never starts
    // with one unquoted-and-prefixed (OWASP CSV injection).
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn count(n: &Option<u64>) -> String {
    n.map_or_else(|| SUPPRESSED_MARK.to_string(), |n| n.to_string())
}

pub fn csv(p: &Published) -> String {
    let mut out = String::new();
    let mut header = vec![field("code"), field(p.row_dimension)];
    header.extend(p.columns.iter().map(|c| field(&c.label)));
    if p.row_totals.is_some() {
        header.push("Total".into());
    }
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for (r, row) in p.rows.iter().enumerate() {
        let mut line = vec![field(&row.code), field(&row.label)];
        line.extend(p.cells[r].iter().map(count));
        if let Some(totals) = &p.row_totals {
            line.push(count(&totals[r]));
        }
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    let mut line = vec!["total".to_string(), "Total".to_string()];
    line.extend(p.column_totals.iter().map(count));
    if p.row_totals.is_some() {
        line.push(count(&p.grand_total));
    }
    out.push_str(&line.join(","));
    out.push_str("\r\n");
    out
}

/// A count in a MeasureReport population: the number, or no number and a data-absent reason of
/// `masked` (FHIR's code for a value withheld for privacy).
fn population(n: &Option<u64>) -> Value {
    let code = json!({ "coding": [{ "system": systems::MEASURE_POPULATION, "code": "initial-population", "display": "Initial Population" }] });
    match n {
        Some(n) => json!({ "code": code, "count": n }),
        None => json!({ "code": code, "_count": { "extension": [{
            "url": systems::DATA_ABSENT_REASON_EXT, "valueCode": "masked",
        }] } }),
    }
}

fn concept(code: &str, label: &str) -> Value {
    json!({ "text": label, "coding": [{ "code": code, "display": label }] })
}

/// The report as a FHIR R4 `MeasureReport` (type `summary`) against its Measure: one group, the
/// grand total as its population, one stratifier by rows (with their totals) and, for a two-way
/// report, one by row and column whose strata carry both as components.
pub fn measure_report(
    report: &Report,
    p: &Published,
    generated: &str,
    period: (&str, &str),
) -> Value {
    let by_row = |r: usize| {
        p.row_totals
            .as_ref()
            .map_or_else(|| p.cells[r][0], |t| t[r])
    };
    let mut stratifiers = vec![json!({
        "code": [{ "text": p.row_dimension }],
        "stratum": p.rows.iter().enumerate().map(|(r, row)| json!({
            "value": concept(&row.code, &row.label),
            "population": [population(&by_row(r))],
        })).collect::<Vec<_>>(),
    })];
    if p.row_totals.is_some() {
        stratifiers.push(json!({
            "code": [{ "text": format!("{} by {}", p.row_dimension, p.column_dimension) }],
            "stratum": p.rows.iter().enumerate().flat_map(|(r, row)| p.columns.iter().enumerate().map(move |(c, col)| (r, c, row, col))).map(|(r, c, row, col)| json!({
                "component": [
                    { "code": { "text": p.row_dimension }, "value": concept(&row.code, &row.label) },
                    { "code": { "text": p.column_dimension }, "value": concept(&col.code, &col.label) },
                ],
                "population": [population(&p.cells[r][c])],
            })).collect::<Vec<_>>(),
        }));
    }
    json!({
        "resourceType": "MeasureReport",
        "meta": { "profile": ["http://hl7.org/fhir/StructureDefinition/MeasureReport"] },
        "status": "complete",
        "type": "summary",
        "measure": report.measure_url(),
        "date": generated,
        "period": { "start": period.0, "end": period.1 },
        "group": [{
            "code": { "text": report.title },
            "population": [population(&p.grand_total)],
            "stratifier": stratifiers,
        }],
    })
}

/// The Measure a report is published against (`profiles/Measure-{name}.json`).
pub fn measure(report: &Report) -> Value {
    json!({
        "resourceType": "Measure",
        "id": report.name,
        "meta": { "profile": ["http://hl7.org/fhir/StructureDefinition/Measure"] },
        "url": report.measure_url(),
        "version": "0.1.0",
        "name": report.name.split('-').map(|w| { let mut c = w.chars(); c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default() }).collect::<String>(),
        "title": report.title,
        "status": "draft",
        "experimental": false,
        "publisher": "Work and Health Gateway project",
        "description": format!("{} Counts under the gateway's suppression threshold (5 unless configured), and any count that would reveal one, are withheld: a MeasureReport carries them with the data-absent reason `masked`.", report.description),
        "scoring": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "cohort", "display": "Cohort" }] },
        "type": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/measure-type", "code": "outcome", "display": "Outcome" }] }],
        "group": [{
            "description": report.title,
            "population": [{
                "code": { "coding": [{ "system": systems::MEASURE_POPULATION, "code": "initial-population", "display": "Initial Population" }] },
                "description": "What the report counts, within the caller's services, period and place.",
                "criteria": { "language": "text/plain", "expression": report.description },
            }],
        }],
    })
}
