//! FHIR search: which parameters the gateway supports, parsing a query string into typed filters,
//! and extracting the index entries a stored resource answers to. Pure; the store turns a
//! [`SearchRequest`] into SQL.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde_json::Value;

use super::outcome::{Issue, IssueType, Issues};

pub const DEFAULT_COUNT: u32 = 20;
pub const MAX_COUNT: u32 = 100;

/// Kinds of search parameter the gateway implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Token,
    Reference {
        target: &'static str,
    },
    /// A reference parameter whose targets are named by identifier only (a Task's owner, an
    /// AuditEvent's agent): R4 types it `reference`, and its `:identifier` modifier matches
    /// the reference's identifier. The bare parameter takes the same `system|value` token.
    IdentifierReference,
    /// `_lastUpdated`.
    Date,
    /// A resource's period (a fit note's `effectivePeriod`), indexed as its start and end.
    Period,
}

/// A search parameter the gateway supports: name, kind and a description for the CapabilityStatement.
#[derive(Debug, Clone, Copy)]
pub struct ParamDef {
    pub name: &'static str,
    pub kind: ParamKind,
    pub documentation: &'static str,
}

const SERVICE_REQUEST_PARAMS: &[ParamDef] = &[
    ParamDef {
        name: "identifier",
        kind: ParamKind::Token,
        documentation: "Sender's referral identifier, as system|value",
    },
    ParamDef {
        name: "status",
        kind: ParamKind::Token,
        documentation: "draft | active | on-hold | revoked | completed | entered-in-error | unknown",
    },
    ParamDef {
        name: "patient",
        kind: ParamKind::Reference { target: "Patient" },
        documentation: "The referred person, as Patient/id or id; chain patient.identifier takes an NHS number as https://fhir.nhs.uk/Id/nhs-number|value",
    },
    ParamDef {
        name: "_lastUpdated",
        kind: ParamKind::Date,
        documentation: "When the stored referral last changed, with prefixes eq, ne, gt, ge, lt, le, sa, eb",
    },
];

const CONSENT_PARAMS: &[ParamDef] = &[
    ParamDef {
        name: "patient",
        kind: ParamKind::Reference { target: "Patient" },
        documentation: "The person, as Patient/id or id; chain patient.identifier takes an NHS number",
    },
    ParamDef {
        name: "status",
        kind: ParamKind::Token,
        documentation: "draft | proposed | active | rejected | inactive | entered-in-error",
    },
    ParamDef {
        name: "_lastUpdated",
        kind: ParamKind::Date,
        documentation: "When the Consent was recorded or last changed",
    },
];

const AUDIT_EVENT_PARAMS: &[ParamDef] = &[
    ParamDef {
        name: "patient",
        kind: ParamKind::Reference { target: "Patient" },
        documentation: "Events about a person, as Patient/id or id; chain patient.identifier takes an NHS number",
    },
    ParamDef {
        name: "agent",
        kind: ParamKind::IdentifierReference,
        documentation: "Events by a client or organisation, by the identifier the event names it by: agent:identifier=<client id>, or agent:identifier=system|value of the organisation",
    },
    ParamDef {
        name: "outcome",
        kind: ParamKind::Token,
        documentation: "0 (permitted, success) | 4 (denied) | 8 | 12",
    },
    ParamDef {
        name: "_lastUpdated",
        kind: ParamKind::Date,
        documentation: "When the event was recorded",
    },
];

const OBSERVATION_PARAMS: &[ParamDef] = &[
    ParamDef {
        name: "patient",
        kind: ParamKind::Reference { target: "Patient" },
        documentation: "The person, as Patient/id or id; chain patient.identifier takes an NHS number as https://fhir.nhs.uk/Id/nhs-number|value",
    },
    ParamDef {
        name: "code",
        kind: ParamKind::Token,
        documentation: "The Observation's code, e.g. http://snomed.info/sct|751481000000104 (fit note: not fit for work) or 751601000000107 (may be fit)",
    },
    ParamDef {
        name: "date",
        kind: ParamKind::Period,
        documentation: "The period covered (effectivePeriod; an indefinite fit note has no end). ge/gt: covers time at or after the value; le/lt: starts at or before; eq (the default): the period lies wholly within the value (R4: the search range contains the target; an indefinite note is within none); ne: it does not. _sort=date or -date orders by the period's start",
    },
    ParamDef {
        name: "_lastUpdated",
        kind: ParamKind::Date,
        documentation: "When the stored Observation last changed",
    },
];

const TASK_PARAMS: &[ParamDef] = &[
    ParamDef {
        name: "owner",
        kind: ParamKind::IdentifierReference,
        documentation: "The organisation the task is for, by its identifier: owner:identifier=https://fhir.nhs.uk/Id/ods-organization-code|C88901 (or C88901)",
    },
    ParamDef {
        name: "status",
        kind: ParamKind::Token,
        documentation: "requested | accepted | rejected | …",
    },
    ParamDef {
        name: "patient",
        kind: ParamKind::Reference { target: "Patient" },
        documentation: "The person the task is for (Task.for), as Patient/id or id; chain patient.identifier takes an NHS number",
    },
    ParamDef {
        name: "focus",
        kind: ParamKind::Reference {
            target: "ServiceRequest",
        },
        documentation: "The referral a workflow Task tracks, as ServiceRequest/id",
    },
    ParamDef {
        name: "business-status",
        kind: ParamKind::Token,
        documentation: "Where a referral stands: received | accepted | declined | contacted | in-support | discharged (referral-workflow-status)",
    },
    ParamDef {
        name: "_lastUpdated",
        kind: ParamKind::Date,
        documentation: "When the task last changed",
    },
];

const COMMUNICATION_PARAMS: &[ParamDef] = &[
    ParamDef {
        name: "based-on",
        kind: ParamKind::Reference {
            target: "ServiceRequest",
        },
        documentation: "The referral a letter is about, as ServiceRequest/id",
    },
    ParamDef {
        name: "patient",
        kind: ParamKind::Reference { target: "Patient" },
        documentation: "The person the letter is about, as Patient/id or id",
    },
    ParamDef {
        name: "status",
        kind: ParamKind::Token,
        documentation: "preparation (queued) | in-progress (sent, escalated) | completed (accepted) | not-done (rejected, dead) | stopped (cancelled)",
    },
    ParamDef {
        name: "_lastUpdated",
        kind: ParamKind::Date,
        documentation: "When the letter's delivery state last changed",
    },
];

/// Search parameters supported for `resource_type` (empty: the type is read-only).
pub fn supported_params(resource_type: &str) -> &'static [ParamDef] {
    match resource_type {
        "ServiceRequest" => SERVICE_REQUEST_PARAMS,
        "Observation" => OBSERVATION_PARAMS,
        "Task" => TASK_PARAMS,
        "Communication" => COMMUNICATION_PARAMS,
        "Consent" => CONSENT_PARAMS,
        "AuditEvent" => AUDIT_EVENT_PARAMS,
        _ => &[],
    }
}

/// One alternative of a token parameter (`system|code`, `code`, `|code`, `system|`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `None`: any system. `Some("")`: no system.
    pub system: Option<String>,
    /// `None`: any code in the system.
    pub code: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Any of the tokens matches the parameter.
    Token {
        param: &'static str,
        any_of: Vec<Token>,
    },
    /// `_id`: the resource is any of these.
    Id { any_of: Vec<String> },
    /// The reference parameter points at any of these `Type/id` values.
    Reference {
        param: &'static str,
        any_of: Vec<String>,
    },
    /// The reference parameter points at a `target` resource whose `identifier` matches any token.
    ChainedIdentifier {
        param: &'static str,
        target: &'static str,
        any_of: Vec<Token>,
    },
    /// `_lastUpdated` against the half-open instant range `[lower, upper)` of the value's precision.
    LastUpdated {
        comparator: Comparator,
        lower: String,
        upper: String,
    },
    /// A period parameter against the half-open range `[lower, upper)` of the value.
    Period {
        param: &'static str,
        comparator: Comparator,
        lower: String,
        upper: String,
    },
}

/// The order of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Most recently changed first (the default).
    #[default]
    LastUpdatedDesc,
    LastUpdatedAsc,
    /// By the start of the `date` period.
    DateAsc,
    DateDesc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    pub resource_type: String,
    pub filters: Vec<Filter>,
    pub count: u32,
    pub offset: u32,
    pub sort: Sort,
    /// Whose data the search may return; set by the API from the caller, never by a parameter.
    pub tenancy: Option<Tenancy>,
}

/// Limits a search to one organisation's referrals (`system|value` of the organisation): for
/// ServiceRequest the referrals it sent or receives, for other types those about people it has a
/// referral for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenancy {
    Practice(String),
    Service(String),
}

/// Parses decoded query pairs. Unknown parameters are errors (a silently ignored filter would
/// return records the caller did not ask for).
/// What a search does with a parameter it does not know. R4 search, "Handling Errors"
/// (http://hl7.org/fhir/R4/search.html#errors): a client asks with `Prefer: handling=strict`
/// (refuse it) or `handling=lenient` (ignore it), and a server SHOULD otherwise ignore it.
///
/// Without a preference the gateway ignores an unknown *result* parameter (`_summary`,
/// `_elements`, `_include`…: leaving one out never widens what matches) but refuses an unknown
/// *filter*: a dropped `subject:identifier=<NHS number>` would answer with everyone's records
/// as if they were one person's, a misattribution no warning entry makes safe. A client that
/// wants unknown filters ignored says `handling=lenient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    /// No preference: unknown result parameters ignored, unknown filters refused.
    #[default]
    Default,
    Lenient,
    Strict,
}

impl Handling {
    /// The handling the `Prefer` header values ask for (RFC 7240: a preference may be quoted,
    /// and several may come in one header or in several).
    pub fn preferred<'a>(prefer: impl IntoIterator<Item = &'a str>) -> Handling {
        let mut handling = Handling::Default;
        for value in prefer {
            for part in value.split([',', ';']) {
                let Some((name, asked)) = part.split_once('=') else {
                    continue;
                };
                if !name.trim().eq_ignore_ascii_case("handling") {
                    continue;
                }
                match asked.trim().trim_matches('"').to_ascii_lowercase().as_str() {
                    "strict" => return Handling::Strict,
                    "lenient" => handling = Handling::Lenient,
                    _ => {}
                }
            }
        }
        handling
    }

    /// Whether an unknown parameter `name` is left out rather than refused.
    fn ignores(self, name: &str) -> bool {
        match self {
            Handling::Strict => false,
            Handling::Lenient => true,
            Handling::Default => name.starts_with('_'),
        }
    }
}

/// A parsed search, with the parameters it left out as unknown (lenient handling).
#[derive(Debug, Clone)]
pub struct ParsedSearch {
    pub request: SearchRequest,
    /// How the matches are shown (not what matches).
    pub presentation: Presentation,
    /// Names of the parameters ignored, in the order given.
    pub ignored: Vec<String>,
}

/// How a search's matches are returned: R4 search's `_summary`, `_elements` and `_total`
/// (http://hl7.org/fhir/R4/search.html#summary, #elements, #total).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presentation {
    pub summary: Summary,
    /// `_elements`: the top-level elements to return (and the mandatory ones, `id` and `meta`).
    pub elements: Option<Vec<String>>,
    /// `_total=none`: the Bundle carries no total.
    pub no_total: bool,
}

/// `_summary`. `true` and `text` need each type's summary elements, which the gateway does not
/// hold; they are refused rather than answered with full resources as if summarised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Summary {
    /// `false`, or not given: whole resources.
    #[default]
    Full,
    /// `data`: without the narrative (`text`).
    Data,
    /// `count`: the total only, no entries.
    Count,
}

/// The tag R4 asks for on a resource returned with fewer elements than it has ("Servers SHOULD
/// mark the resources with the tag SUBSETTED").
pub fn subsetted_tag() -> Value {
    serde_json::json!({
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
        "display": "subsetted",
    })
}

impl Presentation {
    /// `resource` as the search shows it: subsetted (and tagged so) for `_elements` or
    /// `_summary=data`.
    pub fn show(&self, mut resource: Value) -> Value {
        let mut subsetted = false;
        if let Some(elements) = &self.elements
            && let Some(fields) = resource.as_object_mut()
        {
            let rt = fields
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let before = fields.len();
            // What changes a resource's meaning always stays: a subset never reads as the
            // opposite of the whole (a ServiceRequest not to be performed, say).
            fields.retain(|name, _| {
                matches!(
                    name.as_str(),
                    "resourceType" | "id" | "meta" | "implicitRules" | "modifierExtension"
                ) || elements.iter().any(|e| e == name)
                    || mandatory_elements(&rt).contains(&name.as_str())
                    || modifier_elements(&rt).contains(&name.as_str())
            });
            subsetted = fields.len() < before;
        }
        if self.summary == Summary::Data
            && let Some(fields) = resource.as_object_mut()
        {
            subsetted |= fields.remove("text").is_some();
        }
        if subsetted {
            let tags = &mut resource["meta"]["tag"];
            match tags.as_array_mut() {
                Some(t) => t.push(subsetted_tag()),
                None => *tags = serde_json::json!([subsetted_tag()]),
            }
        }
        resource
    }
}

/// The top-level modifier elements (R4 "isModifier") of the types the gateway searches,
/// beyond their mandatory ones.
fn modifier_elements(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "ServiceRequest" => &["doNotPerform"],
        "Condition" => &["clinicalStatus", "verificationStatus"],
        "AllergyIntolerance" => &["clinicalStatus", "verificationStatus"],
        "Patient" => &["active"],
        "Practitioner" | "Organization" | "PractitionerRole" => &["active"],
        "DocumentReference" => &["docStatus"],
        _ => &[],
    }
}

/// The top-level elements R4 requires (min 1) of the types the gateway searches, which a
/// server "SHOULD always return ... whether they are requested or not" (R4 search, _elements).
fn mandatory_elements(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "ServiceRequest" => &["status", "intent", "subject"],
        "Task" => &["status", "intent"],
        "Observation" => &["status", "code"],
        "Consent" => &["status", "scope", "category"],
        "AuditEvent" => &["type", "recorded", "agent", "source"],
        "Communication" => &["status"],
        "Encounter" => &["status", "class"],
        "Condition" => &["subject"],
        "DocumentReference" => &["status", "content"],
        "Composition" => &["status", "type", "date", "author", "title"],
        "EpisodeOfCare" => &["status"],
        _ => &[],
    }
}

/// Parses a search on `resource_type`. An unknown parameter is ignored or refused as
/// [`Handling`] says; a known parameter with a value, modifier or chain it does not take is
/// refused whatever the handling (R4: a server SHALL reject a modifier it does not support).
pub fn parse_with(
    resource_type: &str,
    pairs: &[(String, String)],
    handling: Handling,
) -> Result<ParsedSearch, Issues> {
    if pairs.len() > MAX_PARAMS {
        return Err(Issue::general(
            IssueType::TooLong,
            format!(
                "a search takes at most {MAX_PARAMS} parameters; this one has {}",
                pairs.len()
            ),
        )
        .into());
    }
    let defs = supported_params(resource_type);
    let known = |name: &str| {
        let base = name.split(['.', ':']).next().unwrap_or(name);
        RESULT_PARAMS.contains(&base) || defs.iter().any(|d| d.name == base)
    };
    let mut used = Vec::with_capacity(pairs.len());
    let mut ignored = Vec::new();
    for (name, value) in pairs {
        if known(name) || !handling.ignores(name) {
            used.push((name.clone(), value.clone()));
        } else {
            ignored.push(name.clone());
        }
    }
    let mut issues = Issues::new();
    let mut presentation = Presentation::default();
    let mut filters = Vec::with_capacity(used.len());
    for (name, raw) in used {
        let expr = format!("{resource_type}?{name}");
        match name.as_str() {
            "_summary" => match raw.as_str() {
                "false" => presentation.summary = Summary::Full,
                "data" => presentation.summary = Summary::Data,
                "count" => presentation.summary = Summary::Count,
                "true" | "text" => issues.error(IssueType::NotSupported, expr, format!("_summary={raw} is not supported (the gateway does not subset by each type's summary elements): use _summary=data, count or false, or _elements to choose elements")),
                _ => issues.error(IssueType::Value, expr, "_summary takes true, text, data, count or false"),
            },
            "_elements" => {
                let elements: Vec<String> = raw
                    .split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty())
                    .collect();
                let well_formed = !elements.is_empty()
                    && elements
                        .iter()
                        .all(|e| e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && e.len() <= 64);
                if well_formed {
                    presentation.elements = Some(elements);
                } else {
                    issues.error(IssueType::Value, expr, "_elements takes top-level element names separated by commas, e.g. _elements=status,subject");
                }
            }
            "_total" => match raw.as_str() {
                "none" => presentation.no_total = true,
                "estimate" | "accurate" => presentation.no_total = false,
                _ => issues.error(IssueType::Value, expr, "_total takes none, estimate or accurate"),
            },
            _ => filters.push((name, raw)),
        }
    }
    if presentation.summary == Summary::Count && presentation.no_total {
        issues.error(
            IssueType::Value,
            format!("{resource_type}?_total"),
            "_summary=count asks for the total only, so it cannot be given with _total=none",
        );
    }
    let request = match parse(resource_type, &filters) {
        Ok(mut request) => {
            if presentation.summary == Summary::Count {
                // Only the total is wanted: no page is read.
                request.count = 0;
            }
            Some(request)
        }
        Err(found) => {
            issues.extend(found);
            None
        }
    };
    match (request, issues.is_empty()) {
        (Some(request), true) => Ok(ParsedSearch {
            request,
            presentation,
            ignored,
        }),
        _ => Err(issues),
    }
}

/// The most parameters one search takes (each filter is a join; a POST body could carry
/// thousands).
const MAX_PARAMS: usize = 50;

/// The most ids one `_id` takes.
const MAX_IDS: usize = 100;

/// The search-result parameters the gateway takes on every type.
const RESULT_PARAMS: &[&str] = &[
    "_id",
    "_count",
    "_offset",
    "_sort",
    "_format",
    "_summary",
    "_elements",
    "_total",
];

/// Parses a search on `resource_type`, refusing every parameter it does not take (strict).
pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> Result<SearchRequest, Issues> {
    let defs = supported_params(resource_type);
    let mut issues = Issues::new();
    let mut req = SearchRequest {
        resource_type: resource_type.to_string(),
        filters: Vec::new(),
        count: DEFAULT_COUNT,
        offset: 0,
        sort: Sort::default(),
        tenancy: None,
    };
    let has_period = defs.iter().any(|d| d.kind == ParamKind::Period);
    for (name, raw) in pairs {
        let expr = format!("{resource_type}?{name}");
        match name.as_str() {
            "_count" => match raw.parse::<u32>() {
                Ok(n) => req.count = n.min(MAX_COUNT),
                Err(_) => issues.error(
                    IssueType::Value,
                    expr,
                    format!("_count must be a whole number from 0 to {MAX_COUNT}"),
                ),
            },
            "_id" => {
                let ids: Vec<String> = raw.split(',').map(str::to_string).collect();
                if ids.len() > MAX_IDS {
                    issues.error(
                        IssueType::TooLong,
                        expr,
                        format!("_id takes at most {MAX_IDS} ids; search in pages of them"),
                    );
                } else if ids.iter().all(|id| is_fhir_id(id)) {
                    req.filters.push(Filter::Id { any_of: ids });
                } else {
                    issues.error(
                        IssueType::Value,
                        expr,
                        "_id takes resource ids (letters, digits, '-' and '.', up to 64), separated by commas",
                    );
                }
            }
            "_offset" => match raw.parse::<u32>() {
                Ok(n) => req.offset = n,
                Err(_) => issues.error(IssueType::Value, expr, "_offset must be a whole number"),
            },
            "_sort" => match raw.as_str() {
                "_lastUpdated" => req.sort = Sort::LastUpdatedAsc,
                "-_lastUpdated" => req.sort = Sort::LastUpdatedDesc,
                "date" if has_period => req.sort = Sort::DateAsc,
                "-date" if has_period => req.sort = Sort::DateDesc,
                _ => issues.error(
                    IssueType::NotSupported,
                    expr,
                    if has_period {
                        "_sort takes date, -date, _lastUpdated or -_lastUpdated"
                    } else {
                        "_sort takes _lastUpdated or -_lastUpdated"
                    },
                ),
            },
            // The answer's format is chosen at the edge (api::negotiate_format), which refuses
            // one it cannot give with 406.
            "_format" => {}
            _ => match parse_param(defs, name, raw) {
                Ok(filter) => req.filters.push(filter),
                Err(message) => issues.error(IssueType::NotSupported, expr, message),
            },
        }
    }
    issues.into_result(req)
}

fn parse_param(defs: &[ParamDef], name: &str, raw: &str) -> Result<Filter, String> {
    let (base, chain) = match name.split_once('.') {
        Some((b, c)) => (b, Some(c)),
        None => (name, None),
    };
    // A modifier (`owner:identifier`) is the parameter's own; only identifier references take one.
    let (base, modifier) = match base.split_once(':') {
        Some((b, m)) => (b, Some(m)),
        None => (base, None),
    };
    let Some(def) = defs.iter().find(|d| d.name == base) else {
        let known: Vec<&str> = defs.iter().map(|d| d.name).collect();
        return Err(if known.is_empty() {
            format!(
                "search parameter '{name}' is not supported: this resource type supports read only"
            )
        } else {
            format!(
                "search parameter '{name}' is not supported; supported: {}, _id, _count, _offset (send Prefer: handling=lenient to have unknown parameters ignored)",
                known.join(", ")
            )
        });
    };
    if raw.is_empty() {
        return Err(format!("search parameter '{name}' has no value"));
    }
    match (def.kind, modifier) {
        (ParamKind::IdentifierReference, _) if chain.is_some() => {
            return Err(format!(
                "chained search on '{base}' is not supported: its targets are named by identifier, so use {base}:identifier=system|value"
            ));
        }
        (ParamKind::IdentifierReference, None | Some("identifier")) => {
            return Ok(Filter::Token {
                param: def.name,
                any_of: raw.split(',').map(parse_token).collect(),
            });
        }
        (ParamKind::IdentifierReference, Some(m)) => {
            return Err(format!(
                "modifier ':{m}' is not supported on '{base}': its targets are named by identifier, so use {base}:identifier=system|value"
            ));
        }
        (_, Some(m)) => {
            return Err(format!("modifier ':{m}' is not supported on '{base}'"));
        }
        (_, None) => {}
    }
    match (def.kind, chain) {
        (ParamKind::Token, None) => Ok(Filter::Token {
            param: def.name,
            any_of: raw.split(',').map(parse_token).collect(),
        }),
        (ParamKind::Reference { target }, None) => {
            let any_of = raw
                .split(',')
                .map(|r| {
                    let id = r.strip_prefix(&format!("{target}/")).unwrap_or(r);
                    if is_fhir_id(id) {
                        Ok(format!("{target}/{id}"))
                    } else {
                        Err(format!(
                            "'{r}' is not a {target} reference (use {target}/id or id)"
                        ))
                    }
                })
                .collect::<Result<_, _>>()?;
            Ok(Filter::Reference {
                param: def.name,
                any_of,
            })
        }
        (ParamKind::Reference { target }, Some("identifier")) => Ok(Filter::ChainedIdentifier {
            param: def.name,
            target,
            any_of: raw.split(',').map(parse_token).collect(),
        }),
        (ParamKind::Date, None) => parse_date_filter(raw),
        (ParamKind::Period, None) => match parse_date_filter(raw)? {
            Filter::LastUpdated {
                comparator,
                lower,
                upper,
            } => Ok(Filter::Period {
                param: def.name,
                comparator,
                lower,
                upper,
            }),
            other => Ok(other),
        },
        (ParamKind::IdentifierReference, _) => unreachable!("taken above"),
        (_, Some(c)) => Err(format!("chained search '{base}.{c}' is not supported")),
    }
}

fn parse_token(raw: &str) -> Token {
    match raw.split_once('|') {
        Some((system, code)) => Token {
            system: Some(system.to_string()),
            code: (!code.is_empty()).then(|| code.to_string()),
        },
        None => Token {
            system: None,
            code: Some(raw.to_string()),
        },
    }
}

pub fn is_fhir_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn parse_date_filter(raw: &str) -> Result<Filter, String> {
    let (comparator, value) = match raw.get(..2) {
        Some("eq") => (Comparator::Eq, &raw[2..]),
        Some("ne") => (Comparator::Ne, &raw[2..]),
        Some("gt") | Some("sa") => (Comparator::Gt, &raw[2..]),
        Some("ge") => (Comparator::Ge, &raw[2..]),
        Some("lt") | Some("eb") => (Comparator::Lt, &raw[2..]),
        Some("le") => (Comparator::Le, &raw[2..]),
        _ => (Comparator::Eq, raw),
    };
    let (lower, upper) = instant_range(value).ok_or_else(|| {
        format!("'{value}' is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)")
    })?;
    Ok(Filter::LastUpdated {
        comparator,
        lower: format_instant(lower),
        upper: format_instant(upper),
    })
}

/// The half-open range of instants a FHIR date/dateTime denotes at its precision.
fn instant_range(value: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let day = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap());
    match value.len() {
        4 => {
            let y: i32 = value.parse().ok()?;
            Some((
                day(NaiveDate::from_ymd_opt(y, 1, 1)?),
                day(NaiveDate::from_ymd_opt(y + 1, 1, 1)?),
            ))
        }
        7 => {
            let start = NaiveDate::parse_from_str(&format!("{value}-01"), "%Y-%m-%d").ok()?;
            let next = if start.month() == 12 {
                NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)?
            };
            Some((day(start), day(next)))
        }
        10 => {
            let d = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
            Some((day(d), day(d.succ_opt()?)))
        }
        _ => {
            let t = DateTime::parse_from_rfc3339(value)
                .ok()?
                .with_timezone(&Utc);
            // Precision of the given value: whole seconds unless fractions were supplied.
            let step = if value.contains('.') {
                Duration::microseconds(1)
            } else {
                Duration::seconds(1)
            };
            Some((t, t + step))
        }
    }
}

/// The indexed end of a period with no end.
pub const PERIOD_OPEN_END: &str = "9999-12-31T23:59:59.999999Z";

/// How the store writes `meta.lastUpdated`: fixed-width UTC, so text order is time order.
pub fn format_instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// One search index entry of a stored resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub param: &'static str,
    pub system: String,
    pub value: String,
}

/// The index entries a resource answers to: identifiers for every type, plus the parameters its
/// type supports.
pub fn index_entries(resource: &Value) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    if let Some(ids) = resource.get("identifier").and_then(Value::as_array) {
        for id in ids {
            if let Some(value) = id.get("value").and_then(Value::as_str) {
                let system = id.get("system").and_then(Value::as_str).unwrap_or("");
                out.push(IndexEntry {
                    param: "identifier",
                    system: system.into(),
                    value: value.into(),
                });
            }
        }
    }
    let reference_to = |field: &str, prefix: &str| -> Option<String> {
        let r = resource.get(field)?.get("reference")?.as_str()?;
        r.starts_with(prefix).then(|| r.to_string())
    };
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("ServiceRequest") => {
            if let Some(status) = resource.get("status").and_then(Value::as_str) {
                out.push(IndexEntry {
                    param: "status",
                    system: "http://hl7.org/fhir/request-status".into(),
                    value: status.into(),
                });
            }
            if let Some(p) = reference_to("subject", "Patient/") {
                out.push(IndexEntry {
                    param: "patient",
                    system: String::new(),
                    value: p,
                });
            }
        }
        Some("Condition") => {
            if let Some(p) = reference_to("subject", "Patient/") {
                out.push(IndexEntry {
                    param: "patient",
                    system: String::new(),
                    value: p,
                });
            }
        }
        Some("Observation") => {
            if let Some(p) = reference_to("subject", "Patient/") {
                out.push(IndexEntry {
                    param: "patient",
                    system: String::new(),
                    value: p,
                });
            }
            for c in resource["code"]["coding"].as_array().into_iter().flatten() {
                if let Some(code) = c["code"].as_str() {
                    out.push(IndexEntry {
                        param: "code",
                        system: c["system"].as_str().unwrap_or("").into(),
                        value: code.into(),
                    });
                }
            }
            let period = &resource["effectivePeriod"];
            if let Some((start, _)) = period["start"].as_str().and_then(instant_range) {
                // An open end is indexed as the end of time, so ranges need no special case.
                let end = match period["end"].as_str() {
                    Some(e) => instant_range(e).map(|(_, upper)| format_instant(upper)),
                    None => Some(PERIOD_OPEN_END.to_string()),
                };
                out.push(IndexEntry {
                    param: "date",
                    system: "start".into(),
                    value: format_instant(start),
                });
                if let Some(end) = end {
                    out.push(IndexEntry {
                        param: "date",
                        system: "end".into(),
                        value: end,
                    });
                }
            }
        }
        Some("Communication") => {
            if let Some(p) = reference_to("subject", "Patient/") {
                out.push(IndexEntry {
                    param: "patient",
                    system: String::new(),
                    value: p,
                });
            }
            for based_on in resource["basedOn"].as_array().into_iter().flatten() {
                if let Some(r) = based_on["reference"].as_str() {
                    out.push(IndexEntry {
                        param: "based-on",
                        system: String::new(),
                        value: r.into(),
                    });
                }
            }
            if let Some(status) = resource["status"].as_str() {
                out.push(IndexEntry {
                    param: "status",
                    system: "http://hl7.org/fhir/event-status".into(),
                    value: status.into(),
                });
            }
        }
        Some("Task") => {
            for c in resource["businessStatus"]["coding"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(code) = c["code"].as_str() {
                    out.push(IndexEntry {
                        param: "business-status",
                        system: c["system"].as_str().unwrap_or("").into(),
                        value: code.into(),
                    });
                }
            }
            if let Some(p) = reference_to("focus", "ServiceRequest/") {
                out.push(IndexEntry {
                    param: "focus",
                    system: String::new(),
                    value: p,
                });
            }
            if let Some(p) = reference_to("for", "Patient/") {
                out.push(IndexEntry {
                    param: "patient",
                    system: String::new(),
                    value: p,
                });
            }
            if let Some(status) = resource["status"].as_str() {
                out.push(IndexEntry {
                    param: "status",
                    system: "http://hl7.org/fhir/task-status".into(),
                    value: status.into(),
                });
            }
            let owner = &resource["owner"]["identifier"];
            if let Some(value) = owner["value"].as_str() {
                out.push(IndexEntry {
                    param: "owner",
                    system: owner["system"].as_str().unwrap_or("").into(),
                    value: value.into(),
                });
            }
        }
        Some("Consent") => {
            if let Some(p) = reference_to("patient", "Patient/") {
                out.push(IndexEntry {
                    param: "patient",
                    system: String::new(),
                    value: p,
                });
            }
            if let Some(status) = resource.get("status").and_then(Value::as_str) {
                out.push(IndexEntry {
                    param: "status",
                    system: "http://hl7.org/fhir/consent-state-codes".into(),
                    value: status.into(),
                });
            }
        }
        Some("AuditEvent") => {
            for entity in resource["entity"].as_array().into_iter().flatten() {
                if let Some(p) = entity["what"]["reference"].as_str()
                    && p.starts_with("Patient/")
                {
                    out.push(IndexEntry {
                        param: "patient",
                        system: String::new(),
                        value: p.into(),
                    });
                }
            }
            for agent in resource["agent"].as_array().into_iter().flatten() {
                let who = &agent["who"]["identifier"];
                if let Some(value) = who["value"].as_str() {
                    out.push(IndexEntry {
                        param: "agent",
                        system: who["system"].as_str().unwrap_or("").into(),
                        value: value.into(),
                    });
                }
            }
            if let Some(outcome) = resource["outcome"].as_str() {
                out.push(IndexEntry {
                    param: "outcome",
                    system: "http://hl7.org/fhir/audit-event-outcome".into(),
                    value: outcome.into(),
                });
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_subset_keeps_what_changes_meaning_and_is_tagged() {
        let presentation = Presentation {
            elements: Some(vec!["subject".into()]),
            ..Presentation::default()
        };
        let shown = presentation.show(serde_json::json!({
            "resourceType": "ServiceRequest", "id": "x", "status": "active", "intent": "order",
            "subject": { "reference": "Patient/p" }, "doNotPerform": true,
            "modifierExtension": [{ "url": "https://example.org/m", "valueBoolean": true }],
            "note": [{ "text": "dropped" }]
        }));
        for kept in [
            "status",
            "intent",
            "subject",
            "doNotPerform",
            "modifierExtension",
        ] {
            assert!(shown.get(kept).is_some(), "{kept}: {shown}");
        }
        assert!(shown.get("note").is_none());
        assert_eq!(shown["meta"]["tag"][0]["code"], "SUBSETTED");
        let pairs = |q: &[(&str, &str)]| -> Vec<(String, String)> {
            q.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let count_without_total = pairs(&[("_summary", "count"), ("_total", "none")]);
        assert!(parse_with("Task", &count_without_total, Handling::Default).is_err());
    }
    use super::*;

    #[test]
    fn unknown_parameters_are_handled_as_the_client_prefers() {
        assert_eq!(Handling::preferred([]), Handling::Default);
        assert_eq!(
            Handling::preferred(["return=minimal, handling=strict"]),
            Handling::Strict
        );
        assert_eq!(
            Handling::preferred(["respond-async", "handling=\"strict\""]),
            Handling::Strict,
            "quoted, in a second header"
        );
        assert_eq!(Handling::preferred(["handling=lenient"]), Handling::Lenient);
        let pairs = |q: &[(&str, &str)]| -> Vec<(String, String)> {
            q.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let q = pairs(&[
            ("_include", "Task:focus"),
            ("status", "active"),
            ("owner:identifier", "C88901"),
        ]);
        // An unknown result parameter is left out by default; an unknown filter is refused
        // unless the client asks for leniency (leaving it out would widen what matches).
        let default = parse_with("Task", &q, Handling::Default).unwrap();
        assert_eq!(default.ignored, ["_include"]);
        assert_eq!(default.request.filters.len(), 2);
        let with_filter = pairs(&[("subject:identifier", "9990000018"), ("status", "active")]);
        assert!(parse_with("Task", &with_filter, Handling::Default).is_err());
        let lenient = parse_with("Task", &with_filter, Handling::Lenient).unwrap();
        assert_eq!(lenient.ignored, ["subject:identifier"]);
        assert_eq!(
            parse_with("Task", &q, Handling::Strict).unwrap_err().len(),
            1
        );
        // A modifier or chain a known parameter does not take is refused whatever the handling.
        for bad in [("owner:missing", "true"), ("owner.name", "Foo")] {
            assert!(
                parse_with("Task", &pairs(&[bad]), Handling::Lenient).is_err(),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..101).map(|n| format!("id{n}")).collect();
        assert!(
            parse_with(
                "Task",
                &pairs(&[("_id", &many.join(","))]),
                Handling::Default
            )
            .is_err()
        );
    }
    use serde_json::json;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_supported_parameters() {
        let req = parse(
            "ServiceRequest",
            &pairs(&[
                ("identifier", "sys|REF-1"),
                ("status", "active,on-hold"),
                ("patient", "abc"),
                (
                    "patient.identifier",
                    "https://fhir.nhs.uk/Id/nhs-number|9990000018",
                ),
                ("_lastUpdated", "ge2026-11"),
                ("_count", "500"),
            ]),
        )
        .unwrap();
        assert_eq!(req.count, MAX_COUNT);
        assert_eq!(req.filters.len(), 5);
        assert_eq!(
            req.filters[0],
            Filter::Token {
                param: "identifier",
                any_of: vec![Token {
                    system: Some("sys".into()),
                    code: Some("REF-1".into())
                }]
            }
        );
        assert_eq!(
            req.filters[2],
            Filter::Reference {
                param: "patient",
                any_of: vec!["Patient/abc".into()]
            }
        );
        assert_eq!(
            req.filters[4],
            Filter::LastUpdated {
                comparator: Comparator::Ge,
                lower: "2026-11-01T00:00:00.000000Z".into(),
                upper: "2026-12-01T00:00:00.000000Z".into()
            }
        );
    }

    #[test]
    fn rejects_unknown_and_malformed_parameters_all_at_once() {
        let err = parse(
            "ServiceRequest",
            &pairs(&[
                ("colour", "red"),
                ("_lastUpdated", "yesterday"),
                ("_count", "-1"),
                ("patient", "Patient/has space"),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.len(), 4);
        let err = parse("Patient", &pairs(&[("name", "x")])).unwrap_err();
        assert!(err.iter().next().unwrap().diagnostics.contains("read only"));
    }

    #[test]
    fn date_precision_ranges() {
        assert_eq!(
            instant_range("2026-12").unwrap().1.to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            instant_range("2026-02-28").unwrap().1.to_rfc3339(),
            "2026-03-01T00:00:00+00:00"
        );
        let (l, u) = instant_range("2026-11-24T10:00:00+01:00").unwrap();
        assert_eq!(format_instant(l), "2026-11-24T09:00:00.000000Z");
        assert_eq!((u - l).num_seconds(), 1);
        assert!(instant_range("2026-13").is_none());
    }

    #[test]
    fn token_forms() {
        assert_eq!(
            parse_token("x"),
            Token {
                system: None,
                code: Some("x".into())
            }
        );
        assert_eq!(
            parse_token("|x"),
            Token {
                system: Some("".into()),
                code: Some("x".into())
            }
        );
        assert_eq!(
            parse_token("s|"),
            Token {
                system: Some("s".into()),
                code: None
            }
        );
    }

    #[test]
    fn index_entries_for_service_request() {
        let sr = json!({
            "resourceType": "ServiceRequest", "status": "active",
            "identifier": [{"system": "s", "value": "v"}],
            "subject": {"reference": "Patient/p1"}
        });
        let e = index_entries(&sr);
        assert_eq!(e.len(), 3);
        assert!(e.contains(&IndexEntry {
            param: "patient",
            system: String::new(),
            value: "Patient/p1".into()
        }));
    }
}
