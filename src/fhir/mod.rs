//! FHIR helpers: identifier systems and checks, OperationOutcome, strict parsing (fhirbolt),
//! search parameters and the project's terminology. Other modules talk FHIR through here.

pub mod conformance;
pub mod identifiers;
pub mod outcome;
pub mod patient;
pub mod resource;
pub mod search;
pub mod systems;
pub mod terminology;

pub use outcome::{Issue, IssueType, Issues, NhsErrorCode, Severity, operation_outcome};
