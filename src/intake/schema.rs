//! JSON Schema checks for the practice formats, with errors turned into [`Issue`]s that name the
//! field in the sender's own terms.

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::fhir::{Issue, IssueType, Issues};

/// Compiles a schema from `profiles/`. Schemas are embedded constants, so failure is a build bug.
pub fn compile(schema_text: &str) -> Validator {
    let schema: Value = serde_json::from_str(schema_text).expect("embedded schema is valid JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("embedded schema compiles")
}

/// Every schema violation in `instance`.
pub fn check(validator: &Validator, instance: &Value) -> Issues {
    validator
        .iter_errors(instance)
        .map(|e| to_issue(&e))
        .collect()
}

/// `/patient/name/given/0` → `patient.name.given[0]`.
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

fn to_issue(error: &ValidationError<'_>) -> Issue {
    let path = pointer_to_path(error.instance_path().as_str());
    let here = if path.is_empty() {
        "the request body".to_string()
    } else {
        format!("'{path}'")
    };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let field = join(&path, name);
            Issue::error(
                IssueType::Required,
                &field,
                format!("'{field}' is required"),
            )
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let name = unexpected.first().map(String::as_str).unwrap_or_default();
            let field = join(&path, name);
            let mut msg = format!("'{field}' is not a field of this format");
            if unexpected.len() > 1 {
                msg.push_str(&format!(" (nor are: {})", unexpected[1..].join(", ")));
            }
            msg.push_str(": check its spelling against the schema");
            Issue::error(IssueType::Structure, field, msg)
        }
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<String> = options
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            Issue::error(
                IssueType::CodeInvalid,
                &path,
                format!(
                    "{} is not an allowed code for {here}; use one of: {}",
                    error.instance(),
                    allowed.join(", ")
                ),
            )
        }
        ValidationErrorKind::Format { format } => {
            let expected = match format.as_str() {
                "date" => "a date as YYYY-MM-DD",
                "date-time" => "a date and time with a time zone, e.g. 2026-03-02T09:30:00Z",
                "email" => "an e-mail address",
                other => other,
            };
            Issue::error(
                IssueType::Value,
                &path,
                format!("{here} must be {expected}; got {}", error.instance()),
            )
        }
        ValidationErrorKind::Pattern { .. } => Issue::error(
            IssueType::Value,
            &path,
            format!(
                "{here} has the wrong format ({}); {}",
                error.instance(),
                pattern_hint(&path)
            ),
        ),
        ValidationErrorKind::Type { .. } => {
            Issue::error(IssueType::Structure, &path, format!("{here}: {error}"))
        }
        _ => Issue::error(IssueType::Value, &path, format!("{here}: {error}")),
    }
}

/// What a field's pattern asks for, in words.
fn pattern_hint(path: &str) -> &'static str {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    match leaf {
        "referralId" => "use 1 to 64 letters, digits or . _ : / -, starting with a letter or digit",
        "targetService" => "use the service id configured in the gateway, e.g. sheffield-whs",
        "language" => "use a BCP 47 language tag such as en, pl or pa-Guru",
        "phone" => "use digits with optional spaces and a leading +, e.g. 0114 496 0000",
        "snomedCode" => "a SNOMED CT concept id is 6 to 18 digits",
        _ => "see the schema",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_become_dotted_paths() {
        assert_eq!(pointer_to_path(""), "");
        assert_eq!(pointer_to_path("/patient/nhsNumber"), "patient.nhsNumber");
        assert_eq!(
            pointer_to_path("/healthConditions/items/0/snomedCode"),
            "healthConditions.items[0].snomedCode"
        );
        assert_eq!(pointer_to_path("/a~1b"), "a/b");
    }

    #[test]
    fn reports_each_violation_with_its_field() {
        let v = compile(
            r#"{"type":"object","additionalProperties":false,"required":["a","b"],
                "properties":{"a":{"enum":["x","y"]},"b":{"type":"string","format":"date"},"c":{"type":"integer"}}}"#,
        );
        let issues = check(&v, &json!({"a": "z", "b": "2026-02-30", "d": 1}));
        let exprs: Vec<_> = issues
            .iter()
            .map(|i| i.expression.clone().unwrap())
            .collect();
        assert!(exprs.contains(&"a".to_string()));
        assert!(
            exprs.contains(&"b".to_string()),
            "impossible dates fail format: {exprs:?}"
        );
        assert!(exprs.contains(&"d".to_string()));
        let issues = check(&v, &json!({}));
        assert_eq!(
            issues
                .iter()
                .filter(|i| i.code == IssueType::Required)
                .count(),
            2
        );
    }
}
