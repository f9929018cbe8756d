//! The run's reports: JUnit XML (the format CI systems read, as Jenkins' junit-10.xsd has it:
//! one testsuite per group, a failure or skipped element per check that did not pass, the
//! requirement in the testcase's system-out) and one
//! self-contained HTML page (no scripts, no external styles) a person can open or attach.

use std::collections::BTreeMap;

use super::{Check, Outcome};

fn xml(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            other => other.to_string(),
        })
        .collect()
}

fn groups(checks: &[Check]) -> BTreeMap<&'static str, Vec<&Check>> {
    let mut by: BTreeMap<&'static str, Vec<&Check>> = BTreeMap::new();
    for c in checks {
        by.entry(c.group).or_default().push(c);
    }
    by
}

pub fn junit(title: &str, checks: &[Check]) -> String {
    let failed = checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .count();
    let skipped = checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Skipped(_)))
        .count();
    let time: f64 = checks.iter().map(|c| c.took.as_secs_f64()).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" disabled=\"{skipped}\" time=\"{time:.3}\">\n",
        xml(title),
        checks.len()
    );
    for (group, members) in groups(checks) {
        let f = members
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .count();
        let s = members
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Skipped(_)))
            .count();
        let t: f64 = members.iter().map(|c| c.took.as_secs_f64()).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" skipped=\"{s}\" time=\"{t:.3}\">\n",
            xml(group),
            members.len()
        ));
        for c in members {
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{} {}\" time=\"{:.3}\">\n",
                xml(group),
                xml(&c.id),
                xml(&c.name),
                c.took.as_secs_f64(),
            ));
            match &c.outcome {
                Outcome::Passed => {}
                Outcome::Failed(why) => out.push_str(&format!(
                    "      <failure message=\"{}\">{}</failure>\n",
                    xml(&why.chars().take(200).collect::<String>()),
                    xml(why)
                )),
                Outcome::Skipped(why) => {
                    out.push_str(&format!("      <skipped message=\"{}\"/>\n", xml(why)))
                }
            }
            // junit-10.xsd allows no properties in a testcase: the requirement is its output.
            out.push_str(&format!(
                "      <system-out>requirement: {}</system-out>\n    </testcase>\n",
                xml(&c.requirement)
            ));
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

pub fn html(title: &str, started: chrono::DateTime<chrono::Utc>, checks: &[Check]) -> String {
    let count = |f: fn(&Outcome) -> bool| checks.iter().filter(|c| f(&c.outcome)).count();
    let passed = count(|o| *o == Outcome::Passed);
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let mut rows = String::new();
    for (group, members) in groups(checks) {
        rows.push_str(&format!(
            "<tr><th colspan=\"4\" scope=\"rowgroup\">{}</th></tr>\n",
            xml(group)
        ));
        for c in members {
            let (class, label, detail) = match &c.outcome {
                Outcome::Passed => ("pass", "passed", String::new()),
                Outcome::Failed(why) => ("fail", "FAILED", xml(why)),
                Outcome::Skipped(why) => ("skip", "skipped", xml(why)),
            };
            rows.push_str(&format!(
                "<tr class=\"{class}\"><td>{}</td><td>{}<div class=\"req\">{}</div></td><td>{label}</td><td>{detail}</td></tr>\n",
                xml(&c.id),
                xml(&c.name),
                xml(&c.requirement)
            ));
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:2rem;color:#212b32}}table{{border-collapse:collapse;width:100%}}\
th,td{{border:1px solid #d8dde0;padding:.4rem .6rem;text-align:left;vertical-align:top}}\
th[scope=rowgroup]{{background:#f0f4f5}}tr.fail td{{background:#fde8e8}}tr.skip td{{color:#4c6272}}\
.req{{font-size:.85em;color:#4c6272}}.summary{{font-size:1.2em}}</style></head>\n<body>\n<h1>{title}</h1>\n\
<p class=\"summary\">{passed} passed, {failed} failed, {skipped} skipped, {} checks, started {}</p>\n\
<table><thead><tr><th scope=\"col\">Check</th><th scope=\"col\">What, and the requirement it proves</th><th scope=\"col\">Result</th><th scope=\"col\">Detail</th></tr></thead>\n<tbody>\n{rows}</tbody></table>\n</body></html>\n",
        checks.len(),
        started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        title = xml(title),
    )
}
