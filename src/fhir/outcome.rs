//! Problems found in input, and their FHIR `OperationOutcome` form.

use serde_json::{Value, json};

use super::systems::{NHS_HTTP_ERROR_CODES, profile};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// The subset of the FHIR `issue-type` value set the gateway reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    CodeInvalid,
    BusinessRule,
    Conflict,
    Duplicate,
    NotFound,
    NotSupported,
    TooLong,
    Security,
    Login,
    Forbidden,
    Transient,
    Throttled,
    Exception,
    Informational,
}

impl IssueType {
    /// The issue type a FHIR `code` names (one another server answered with); `invalid` for one
    /// outside the gateway's subset.
    pub fn from_code(code: &str) -> IssueType {
        use IssueType::*;
        [
            Invalid,
            Structure,
            Required,
            Value,
            Invariant,
            CodeInvalid,
            BusinessRule,
            Conflict,
            Duplicate,
            NotFound,
            NotSupported,
            TooLong,
            Security,
            Login,
            Forbidden,
            Transient,
            Throttled,
            Exception,
            Informational,
        ]
        .into_iter()
        .find(|t| t.as_str() == code)
        .unwrap_or(Invalid)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::BusinessRule => "business-rule",
            IssueType::Conflict => "conflict",
            IssueType::Duplicate => "duplicate",
            IssueType::NotFound => "not-found",
            IssueType::NotSupported => "not-supported",
            IssueType::TooLong => "too-long",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::Transient => "transient",
            IssueType::Throttled => "throttled",
            IssueType::Exception => "exception",
            IssueType::Informational => "informational",
        }
    }
}

/// One problem (or note) about an input, pointing at the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// Path of the field: dotted JSON path for the practice format (`patient.nhsNumber`,
    /// `healthConditions.items[0].snomedCode`), FHIRPath for FHIR input.
    pub expression: Option<String>,
    pub diagnostics: String,
}

impl Issue {
    pub fn error(
        code: IssueType,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            expression: Some(expression.into()),
            diagnostics: diagnostics.into(),
        }
    }

    /// An error about the request as a whole rather than one field.
    pub fn general(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            expression: None,
            diagnostics: diagnostics.into(),
        }
    }

    /// A warning about the field at `expression`: the request went ahead.
    pub fn warning(
        code: IssueType,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        Issue {
            severity: Severity::Warning,
            code,
            expression: Some(expression.into()),
            diagnostics: diagnostics.into(),
        }
    }

    pub fn information(diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Information,
            code: IssueType::Informational,
            expression: None,
            diagnostics: diagnostics.into(),
        }
    }
}

/// Every problem found in one input. Validation keeps going after the first problem so that a
/// sender can fix everything in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issues(Vec<Issue>);

impl Issues {
    pub fn new() -> Self {
        Issues(Vec::new())
    }

    pub fn push(&mut self, issue: Issue) {
        self.0.push(issue);
    }

    pub fn error(
        &mut self,
        code: IssueType,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) {
        self.push(Issue::error(code, expression, diagnostics));
    }

    pub fn extend(&mut self, other: Issues) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Issue> {
        self.0.iter()
    }

    /// True when some issue already concerns `expression` or a field inside it.
    pub fn touches(&self, expression: &str) -> bool {
        self.0.iter().any(|i| {
            i.expression.as_deref().is_some_and(|e| {
                e == expression
                    || e.strip_prefix(expression)
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
        })
    }

    /// `Ok(value)` when nothing was found, otherwise every issue.
    pub fn into_result<T>(self, value: T) -> Result<T, Issues> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    pub fn into_vec(self) -> Vec<Issue> {
        self.0
    }

    /// The issues found in a resource read on its own (expressions from `root`, e.g.
    /// `Consent`), as found where it sits inside another (`at`, e.g. `Bundle.entry[3].resource`).
    pub fn rebased(self, root: &str, at: &str) -> Issues {
        Issues(
            self.0
                .into_iter()
                .map(|mut issue| {
                    issue.expression = issue.expression.map(|e| match e.strip_prefix(root) {
                        Some(rest) if rest.is_empty() || rest.starts_with(['.', '[']) => {
                            format!("{at}{rest}")
                        }
                        _ => e,
                    });
                    issue
                })
                .collect(),
        )
    }
}

impl From<Issue> for Issues {
    fn from(issue: Issue) -> Self {
        Issues(vec![issue])
    }
}

impl FromIterator<Issue> for Issues {
    fn from_iter<I: IntoIterator<Item = Issue>>(iter: I) -> Self {
        Issues(iter.into_iter().collect())
    }
}

/// A BaRS-style error code (`REC_*`) carried in `issue.details`, for FHIR messaging endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NhsErrorCode(pub &'static str, pub &'static str);

impl NhsErrorCode {
    pub const BAD_REQUEST: Self = NhsErrorCode(
        "REC_BAD_REQUEST",
        "400: The Receiver was unable to process the request.",
    );
    pub const UNSUPPORTED_MEDIA_TYPE: Self =
        NhsErrorCode("REC_UNSUPPORTED_MEDIA_TYPE", "415: Unsupported Media Type.");
    pub const PAYLOAD_TOO_LARGE: Self =
        NhsErrorCode("REC_PAYLOAD_TOO_LARGE", "413: Payload Too Large.");
    pub const UNPROCESSABLE_ENTITY: Self = NhsErrorCode(
        "REC_UNPROCESSABLE_ENTITY",
        "422: The Receiver was unable to process the request.",
    );
    pub const CONFLICT: Self = NhsErrorCode("REC_CONFLICT", "409: Conflict.");
    pub const UNAUTHORIZED: Self = NhsErrorCode("REC_UNAUTHORIZED", "401: Unauthorized.");
    pub const FORBIDDEN: Self = NhsErrorCode("REC_FORBIDDEN", "403: Forbidden.");
    pub const NOT_FOUND: Self = NhsErrorCode(
        "REC_NOT_FOUND",
        "404: The Receiver was unable to find the specified resource.",
    );
    pub const SERVER_ERROR: Self = NhsErrorCode(
        "REC_SERVER_ERROR",
        "500: The Receiver has encountered an error processing the request.",
    );
    pub const TOO_MANY_REQUESTS: Self =
        NhsErrorCode("REC_TOO_MANY_REQUESTS", "429: Too Many Requests.");
    pub const SERVICE_UNAVAILABLE: Self = NhsErrorCode(
        "REC_SERVICE_UNAVAILABLE",
        "503: The Receiver is currently unavailable.",
    );
}

/// Builds the `OperationOutcome` JSON for a list of issues.
pub fn operation_outcome(issues: &[Issue], nhs_code: Option<NhsErrorCode>) -> Value {
    let issue: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({
                "severity": i.severity.as_str(),
                "code": i.code.as_str(),
                "diagnostics": i.diagnostics,
            });
            if let Some(expr) = &i.expression {
                v["expression"] = json!([expr]);
            }
            if let Some(NhsErrorCode(code, display)) = nhs_code {
                v["details"] = json!({
                    "coding": [{ "system": NHS_HTTP_ERROR_CODES, "code": code, "display": display }]
                });
            }
            v
        })
        .collect();
    json!({
        "resourceType": "OperationOutcome",
        "meta": { "profile": [profile::OPERATION_OUTCOME] },
        "issue": issue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touches_matches_field_and_children_but_not_siblings() {
        let issues: Issues = [Issue::error(IssueType::Value, "patient.nhsNumber", "bad")]
            .into_iter()
            .collect();
        assert!(issues.touches("patient.nhsNumber"));
        assert!(issues.touches("patient"));
        assert!(!issues.touches("patient.nhs"));
        assert!(!issues.touches("practice"));
    }

    #[test]
    fn outcome_lists_every_issue_with_expression_and_bars_code() {
        let issues = vec![
            Issue::error(IssueType::Required, "a", "x"),
            Issue::general(IssueType::Invalid, "y"),
        ];
        let oo = operation_outcome(&issues, Some(NhsErrorCode::UNPROCESSABLE_ENTITY));
        assert_eq!(oo["issue"].as_array().unwrap().len(), 2);
        assert_eq!(oo["issue"][0]["expression"][0], "a");
        assert!(oo["issue"][1].get("expression").is_none());
        assert_eq!(
            oo["issue"][0]["details"]["coding"][0]["code"],
            "REC_UNPROCESSABLE_ENTITY"
        );
    }
}
