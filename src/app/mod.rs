//! The application layer: the use cases, each one function that takes the store, the
//! configuration (or the plain values it needs) and the [`Caller`], runs the core's rules and
//! stores what they decide, and answers with domain values or the use case's own error. Nothing
//! here knows HTTP: the routes in `crate::api` extract a request, call one use case and turn its
//! answer (or its error, in `api/error.rs`) into a response.
//!
//! - [`submissions`]: what every submission goes through (sender, test tenant, store, audit);
//! - [`referrals`]: a referral in the practice format or as a BaRS message;
//! - [`fit_notes`]: a fit note, the fit-note summary, and a practice's answer to a prompt;
//! - [`consents`]: a Consent recorded or amended (withdrawn), and disclosure decisions;
//! - [`overrides`]: break-glass overrides requested, granted or refused, and reviewed;
//! - [`alerts`]: operational alerts raised, listed, acknowledged and sent to the on-call routes;
//! - [`workflow`]: triage, contacts, support, discharge, letters and their resending;
//! - [`employer_letters`]: letters to a person's employer, approved by the person, then sent;
//! - [`records`]: FHIR reads, version reads and searches, under the one tenancy rule;
//! - [`quarantine`]: the MESH messages set aside, for information governance;
//! - [`tokens`]: a registered system proving itself with a client assertion.

pub mod alerts;
pub mod consents;
pub mod employer_letters;
pub mod fit_notes;
pub mod overrides;
pub mod quarantine;
pub mod rate_limits;
pub mod records;
pub mod referrals;
pub mod reports;
pub mod self_referral;
pub mod sign_in;
pub mod submissions;
pub mod tokens;
pub mod validation;
pub mod workflow;

use crate::access::Guard;
use crate::caller::Principal;
use crate::store::Store;

/// Who asks for a use case: the authenticated client, and the id of the request it came in
/// (for the audit trail; `None` when there is none that may be recorded).
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub request_id: Option<String>,
}

impl<'a> Caller<'a> {
    pub fn new(principal: &'a Principal, request_id: Option<String>) -> Self {
        Caller {
            principal,
            request_id,
        }
    }

    /// The tenancy and consent checks for this caller, as of now.
    pub fn guard<'s>(&'s self, store: &'s dyn Store) -> Guard<'s> {
        Guard {
            store,
            principal: self.principal,
            request_id: self.request_id.clone(),
            now: chrono::Utc::now(),
        }
    }
}

/// What a client asked to get back from a create (at the HTTP edge, `Prefer: return=…`,
/// RFC 7240): it decides what a submission use case reads back after storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// The stored resource.
    Representation,
    /// Nothing but the status and headers.
    Minimal,
    /// An OperationOutcome saying what happened (the default).
    OperationOutcome,
}

/// A version tag a change was based on that names no version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("If-Match must be a version ETag such as W/\"2\"")]
pub struct BadVersionTag;

/// The version a weak version tag (`W/"n"`, as an `If-Match` header carries it) names, if one
/// was given.
pub fn version_named(tag: Option<&str>) -> Result<Option<i64>, BadVersionTag> {
    tag.map(|v| {
        v.trim_start_matches("W/")
            .trim_matches('"')
            .parse::<i64>()
            .map_err(|_| BadVersionTag)
    })
    .transpose()
}

/// The version of a stored resource, from its `meta.versionId`.
fn stored_version(resource: &serde_json::Value) -> Option<i64> {
    resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
}

/// A JSON request body as `T` (`what` names it for the caller, e.g. "a triage"), or the issue
/// naming the field that could not be read (`expression`, e.g. `date` or `outcomes[0].code`) and
/// what it should hold: serde's own messages say what was wrong but not where. The API answers
/// it as a 422; `whg validate` prints it.
pub fn read_body<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    what: &str,
) -> Result<T, crate::fhir::Issue> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let why = e.inner().to_string();
        field_issue(what, &field, &why)
    })
}

/// The issue for a body field serde could not read: `field` is `.` for the body itself.
fn field_issue(what: &str, field: &str, why: &str) -> crate::fhir::Issue {
    use crate::fhir::{Issue, IssueType};
    // chrono's parse errors say nothing of the form expected.
    const CHRONO: [&str; 6] = [
        "input contains invalid characters",
        "premature end of input",
        "trailing input",
        "input is out of range",
        "input is not enough for unique date and time",
        "no possible date and time matching input",
    ];
    let within = |name: &str| match field {
        "." | "" => name.to_string(),
        parent => format!("{parent}.{name}"),
    };
    // serde names a missing field in its message, the path being its container's; an unknown
    // field's path is the field's own.
    let missing = why
        .strip_prefix("missing field")
        .and_then(|rest| rest.split('`').nth(1))
        .map(within);
    if let Some(missing) = missing {
        return Issue::error(
            IssueType::Required,
            missing,
            format!("{what} needs this field"),
        );
    }
    if why.starts_with("unknown field") {
        return Issue::error(
            IssueType::Structure,
            field,
            format!("{what} has no such field: leave it out ({why})"),
        );
    }
    let (code, diagnostic) = if CHRONO.iter().any(|m| why.starts_with(m)) {
        (
            IssueType::Value,
            format!("not a date: write it as YYYY-MM-DD, e.g. 2026-12-01 ({why})"),
        )
    } else {
        (
            IssueType::Value,
            format!("not what {what} takes here: {why}"),
        )
    };
    if field == "." || field.is_empty() {
        Issue::general(code, format!("{what}: {diagnostic}"))
    } else {
        Issue::error(code, field, diagnostic)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_tags() {
        use super::{BadVersionTag, version_named};
        assert_eq!(version_named(None), Ok(None));
        assert_eq!(version_named(Some("W/\"2\"")), Ok(Some(2)));
        assert_eq!(version_named(Some("\"3\"")), Ok(Some(3)));
        assert_eq!(version_named(Some("W/\"two\"")), Err(BadVersionTag));
    }

    /// The application layer knows no HTTP: no file under `src/app/` names axum or http.
    #[test]
    fn no_http_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/app");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // Spelt in halves, so this file does not name them itself.
            for word in [concat!("ax", "um"), concat!("http", "::")] {
                let found = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .any(|l| l.contains(word));
                assert!(!found, "{} uses {word}", path.display());
            }
        }
    }
}
