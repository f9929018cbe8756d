//! The gateway's consent model: what a FHIR Consent in the project's profile says, as plain data.
//! Reading a Consent resource into this model is also how a posted Consent is validated, so the
//! decision function and the API agree on what every provision means.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::fhir::outcome::{IssueType, Issues};
use crate::fhir::systems;
use crate::fhir::terminology::code_system;

/// A code of one of the consent vocabularies, with its FHIR system and code.
pub trait Code: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn code(self) -> &'static str;
    fn system() -> String;

    fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    fn coding(self) -> Value {
        serde_json::json!({ "system": Self::system(), "code": self.code() })
    }
}

macro_rules! local_code {
    ($(#[$doc:meta])* $name:ident, $system:literal, { $($variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl Code for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }
            fn system() -> String {
                systems::local_code_system($system)
            }
        }
    };
}

local_code!(
    /// Who receives information (`consent-recipient`).
    RecipientClass, "consent-recipient", {
        ReferringPractice => "referring-practice",
        Referrer => "referrer",
        WorkHealthService => "work-health-service",
        Employer => "employer",
        OtherService => "other-service",
        UnionRepresentative => "union-representative",
        Evaluation => "evaluation",
        Dwp => "dwp",
    }
);

local_code!(
    /// What information (`consent-data-class`).
    DataClass, "consent-data-class", {
        Referral => "referral",
        FitNote => "fit-note",
        Diagnosis => "diagnosis",
        AdviserLetter => "adviser-letter",
        Outcome => "outcome",
    }
);

local_code!(
    /// Why a user acted against a consent decision (`consent-override-reason`).
    OverrideReason, "consent-override-reason", {
        RiskToPerson => "risk-to-person",
        RiskToOthers => "risk-to-others",
        LegalDuty => "legal-duty",
    }
);

/// What is done with the information (FHIR `consentaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Collect,
    Access,
    Use,
    Disclose,
    Correct,
}

impl Code for Action {
    const ALL: &'static [Self] = &[
        Action::Collect,
        Action::Access,
        Action::Use,
        Action::Disclose,
        Action::Correct,
    ];
    fn code(self) -> &'static str {
        match self {
            Action::Collect => "collect",
            Action::Access => "access",
            Action::Use => "use",
            Action::Disclose => "disclose",
            Action::Correct => "correct",
        }
    }
    fn system() -> String {
        systems::CONSENT_ACTION.to_string()
    }
}

/// Why the information is wanted (v3 `ActReason` purpose of use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Direct care: the referral, support and feedback to the practice.
    Treatment,
    /// Evaluation and research (pseudonymised).
    Research,
}

impl Code for Purpose {
    const ALL: &'static [Self] = &[Purpose::Treatment, Purpose::Research];
    fn code(self) -> &'static str {
        match self {
            Purpose::Treatment => "TREAT",
            Purpose::Research => "HRESCH",
        }
    }
    fn system() -> String {
        systems::V3_ACT_REASON.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionType {
    Permit,
    Deny,
}

/// FHIR Consent.status. Only `Active` consents take part in decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    Draft,
    Proposed,
    Active,
    Rejected,
    Inactive,
    EnteredInError,
}

impl ConsentStatus {
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "draft" => Self::Draft,
            "proposed" => Self::Proposed,
            "active" => Self::Active,
            "rejected" => Self::Rejected,
            "inactive" => Self::Inactive,
            "entered-in-error" => Self::EnteredInError,
            _ => return None,
        })
    }
}

/// A half-open interval of time; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    pub start: Option<DateTime<Utc>>,
    /// Exclusive: a consent that ends at midnight no longer holds at midnight.
    pub end: Option<DateTime<Utc>>,
}

impl Period {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| s <= at) && self.end.is_none_or(|e| at < e)
    }
}

/// An organisation, as `system|value` of one of its identifiers.
pub type OrgId = String;

/// Who a provision is about: a recipient class, optionally narrowed to one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorRule {
    pub class: RecipientClass,
    /// `None`: any organisation of the class.
    pub organisation: Option<OrgId>,
}

/// One provision. Every non-empty list narrows it; an empty list means "any".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Provision {
    pub kind: Option<ProvisionType>,
    pub period: Period,
    pub actors: Vec<ActorRule>,
    pub actions: Vec<Action>,
    pub purposes: Vec<Purpose>,
    pub classes: Vec<DataClass>,
    /// Specific documents (`Type/id`) the provision is about (`provision.data` with meaning
    /// `instance`): how a person approves one letter for their employer.
    pub documents: Vec<String>,
    /// Nested provisions: exceptions that apply only within this provision's scope.
    pub children: Vec<Provision>,
}

/// A party to a person's referrals that records Consents: a practice or a service, named by
/// `system|value` of its identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub class: RecipientClass,
    pub organisation: OrgId,
}

impl Party {
    /// The caller as the party that records a Consent for a person (practices and services
    /// only).
    pub fn of(caller: &crate::caller::Principal) -> Option<Party> {
        let super::decide::Recipient {
            class,
            organisation,
        } = super::decide::Recipient::of(caller)?;
        Some(Party {
            class,
            organisation: organisation?,
        })
    }

    /// The party an organisation identifier names: an ODS code is a practice, a service id a
    /// work-and-health service, a registered referrer's or employer's id that referrer (see
    /// `Principal::new`); anything else records nothing the rules can attribute.
    pub fn from_identifier(system: &str, value: &str) -> Option<Party> {
        let class = if system == systems::ODS_ORGANIZATION {
            RecipientClass::ReferringPractice
        } else if system == systems::service_identifier_system() {
            RecipientClass::WorkHealthService
        } else if systems::referrer_kind_of_system(system)
            .and_then(crate::caller::Role::other_referrer)
            .is_some_and(|r| r != crate::caller::Role::Employer)
        {
            RecipientClass::Referrer
        } else if system == systems::employer_identifier_system()
            || system == systems::employer_contact_system()
        {
            RecipientClass::Employer
        } else {
            return None;
        };
        Some(Party {
            class,
            organisation: format!("{system}|{value}"),
        })
    }
}

impl Provision {
    /// Every organisation the provision or its nested ones name, as `system|value`.
    pub fn organisations(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .actors
            .iter()
            .filter_map(|a| a.organisation.as_deref())
            .collect();
        for child in &self.children {
            out.extend(child.organisations());
        }
        out
    }
}

/// One stored Consent, as the decision function sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRecord {
    /// `Consent/id`.
    pub reference: String,
    pub status: ConsentStatus,
    pub provision: Provision,
    /// When the person made the decision this record holds: for an agreement or a refusal its
    /// `dateTime` (never later than when the gateway stored it, so a sender cannot date a
    /// decision ahead to outrank the person's later ones); for a withdrawal (`inactive`) when it
    /// was withdrawn. `None` sorts before every time.
    pub decided_at: Option<DateTime<Utc>>,
    /// Who recorded it for the person (`Consent.organization`), when the gateway knows.
    pub recorded_by: Option<Party>,
}

/// Reads a Consent resource into the model. Every problem is reported, each with the FHIRPath of
/// the element, so the same function validates a posted Consent and loads a stored one.
pub fn read_consent(resource: &Value) -> Result<ConsentRecord, Issues> {
    let mut issues = Issues::new();
    let status = match resource["status"].as_str() {
        Some(code) => ConsentStatus::from_code(code).unwrap_or_else(|| {
            issues.error(IssueType::CodeInvalid, "Consent.status", format!("'{code}' is not a Consent status: use active, inactive, rejected, draft, proposed or entered-in-error"));
            ConsentStatus::EnteredInError
        }),
        None => {
            issues.error(
                IssueType::Required,
                "Consent.status",
                "status is required (active, inactive, rejected, …)",
            );
            ConsentStatus::EnteredInError
        }
    };
    let provision = match resource.get("provision") {
        Some(p) => read_provision(p, "Consent.provision", true, &mut issues),
        None => {
            issues.error(IssueType::Required, "Consent.provision", "provision is required: say who may receive what, for which purpose (a Consent without one would decide nothing)");
            Provision::default()
        }
    };
    // R4 (http://hl7.org/fhir/R4/extensibility.html#modifierExtension): an application that
    // does not understand a modifier extension "SHALL NOT" process the element as if it were
    // absent; a Consent changed by one could mean the opposite of what the model reads.
    let mut modifiers = Vec::new();
    modifier_extensions(resource, "Consent", &mut modifiers);
    for at in modifiers {
        issues.error(IssueType::NotSupported, at, "the gateway does not understand this modifierExtension, and FHIR forbids reading a Consent as if an unknown modifier were absent: leave it out, or say what it says with the Consent's own elements");
    }
    let id = resource["id"].as_str().unwrap_or_default();
    if !issues.is_empty() {
        return Err(issues);
    }
    let stored_at = resource["meta"]["lastUpdated"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let stated = resource["dateTime"]
        .as_str()
        .and_then(|t| parse_bound(t, false));
    let decided_at = match status {
        ConsentStatus::Inactive => stored_at.or(stated),
        _ => match (stated, stored_at) {
            (Some(s), Some(at)) => Some(s.min(at)),
            (s, at) => s.or(at),
        },
    };
    Ok(ConsentRecord {
        reference: format!("Consent/{id}"),
        status,
        provision,
        decided_at,
        recorded_by: recorder_of(resource),
    })
}

/// The FHIRPath of every `modifierExtension` in `v` (at `path`).
fn modifier_extensions(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(fields) => {
            for (name, value) in fields {
                let at = format!("{path}.{name}");
                if name == "modifierExtension" {
                    out.push(at);
                } else {
                    modifier_extensions(value, &at, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                // An array's elements are named by index on the element's own path.
                modifier_extensions(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The party named as the Consent's `organization` (the first with an identifier).
pub fn recorder_of(resource: &Value) -> Option<Party> {
    array(resource, "organization").iter().find_map(|o| {
        Party::from_identifier(
            o["identifier"]["system"].as_str()?,
            o["identifier"]["value"].as_str()?,
        )
    })
}

fn read_provision(p: &Value, path: &str, top: bool, issues: &mut Issues) -> Provision {
    let mut out = Provision::default();
    match p["type"].as_str() {
        Some("permit") => out.kind = Some(ProvisionType::Permit),
        Some("deny") => out.kind = Some(ProvisionType::Deny),
        Some(other) => issues.error(
            IssueType::CodeInvalid,
            format!("{path}.type"),
            format!("'{other}' is not a provision type: use permit or deny"),
        ),
        None => issues.error(
            IssueType::Required,
            format!("{path}.type"),
            if top {
                "the top-level provision needs a type: permit or deny"
            } else {
                "a nested provision needs a type: permit or deny"
            },
        ),
    }
    if let Some(period) = p.get("period") {
        out.period = read_period(period, &format!("{path}.period"), issues);
    }
    // R4 provision elements the model does not apply. Each narrows what its provision covers, so
    // a permit read without it would allow more than the person agreed to; a deny read without
    // it withholds more, which is safe.
    if out.kind == Some(ProvisionType::Permit) {
        for element in NARROWING_NOT_APPLIED {
            if p.get(element).is_some() {
                issues.error(IssueType::NotSupported, format!("{path}.{element}"), format!("the gateway does not apply provision.{element}: a permit narrowed by it would be applied more widely than the person agreed. Say what is permitted with class (or data for one document), or leave {element} out"));
            }
        }
    }
    for (i, actor) in array(p, "actor").iter().enumerate() {
        let at = format!("{path}.actor[{i}]");
        if let Some(rule) = read_actor(actor, &at, issues) {
            out.actors.push(rule);
        }
    }
    for (i, action) in array(p, "action").iter().enumerate() {
        let at = format!("{path}.action[{i}]");
        match coded::<Action>(action.get("coding").unwrap_or(&Value::Null)) {
            Some(a) => out.actions.push(a),
            None => issues.error(
                IssueType::CodeInvalid,
                at,
                format!(
                    "action must carry a code from {} (collect, access, use, disclose, correct)",
                    systems::CONSENT_ACTION
                ),
            ),
        }
    }
    for (i, purpose) in array(p, "purpose").iter().enumerate() {
        let at = format!("{path}.purpose[{i}]");
        match coding_is::<Purpose>(purpose) {
            Some(x) => out.purposes.push(x),
            None => issues.error(
                IssueType::CodeInvalid,
                at,
                format!(
                    "purpose must be {}|TREAT (direct care) or |HRESCH (evaluation and research)",
                    systems::V3_ACT_REASON
                ),
            ),
        }
    }
    for (i, class) in array(p, "class").iter().enumerate() {
        let at = format!("{path}.class[{i}]");
        match coding_is::<DataClass>(class) {
            Some(x) => out.classes.push(x),
            None if class["system"] == RESOURCE_TYPES => issues.error(
                IssueType::CodeInvalid,
                at,
                format!(
                    "class names a resource type, which the gateway cannot map without changing what the person agreed to: its classes group records by what they are to the person (a referral is its ServiceRequest with the Patient and all that came with it; an adviser letter a Composition, DocumentReference or Communication). Use a code from {} ({})",
                    DataClass::system(),
                    codes_of::<DataClass>()
                ),
            ),
            None => issues.error(
                IssueType::CodeInvalid,
                at,
                format!(
                    "class must be a code from {} ({})",
                    DataClass::system(),
                    codes_of::<DataClass>()
                ),
            ),
        }
    }
    for (i, data) in array(p, "data").iter().enumerate() {
        let at = format!("{path}.data[{i}]");
        match (data["meaning"].as_str(), data["reference"]["reference"].as_str()) {
            (Some("instance"), Some(r)) if r.split_once('/').is_some_and(|(t, id)| !t.is_empty() && !id.is_empty()) => out.documents.push(r.to_string()),
            _ => issues.error(IssueType::Value, at, "data must have meaning 'instance' and a reference to one document as Type/id (e.g. DocumentReference/123)"),
        }
    }
    for (i, child) in array(p, "provision").iter().enumerate() {
        let child = read_provision(child, &format!("{path}.provision[{i}]"), false, issues);
        out.children.push(child);
    }
    out
}

/// R4 `Consent.provision.class`'s example binding, resource types.
const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

/// Provision elements that narrow a provision and that the model does not read.
const NARROWING_NOT_APPLIED: [&str; 3] = ["securityLabel", "code", "dataPeriod"];

fn read_actor(actor: &Value, path: &str, issues: &mut Issues) -> Option<ActorRule> {
    let codings = actor["role"]["coding"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let class = codings.iter().find_map(coding_is::<RecipientClass>);
    let Some(class) = class else {
        issues.error(
            IssueType::CodeInvalid,
            format!("{path}.role"),
            format!(
                "actor.role must include a recipient class from {} ({}), or be {}|IRCP (information recipient) naming a service this gateway receives for or the referring practice by ODS code",
                RecipientClass::system(),
                codes_of::<RecipientClass>(),
                super::standard::PARTICIPATION_TYPE,
            ),
        );
        return None;
    };
    let reference = &actor["reference"];
    let organisation = match (
        reference["identifier"]["system"].as_str(),
        reference["identifier"]["value"].as_str(),
    ) {
        (Some(system), Some(value)) => Some(format!("{system}|{value}")),
        _ if reference.get("reference").is_some() => {
            issues.error(IssueType::Required, format!("{path}.reference.identifier"), "name the recipient organisation by identifier (ODS code or service id) so the decision does not depend on local resource ids");
            return None;
        }
        _ if reference["display"].as_str().is_some() => None,
        _ => {
            issues.error(IssueType::Required, format!("{path}.reference"), "actor.reference needs an identifier of the recipient organisation, or a display such as 'any employer' for the whole class");
            return None;
        }
    };
    Some(ActorRule {
        class,
        organisation,
    })
}

fn read_period(period: &Value, path: &str, issues: &mut Issues) -> Period {
    let mut bound = |name: &str, end: bool| -> Option<DateTime<Utc>> {
        let raw = period[name].as_str()?;
        let parsed = parse_bound(raw, end);
        if parsed.is_none() {
            issues.error(
                IssueType::Value,
                format!("{path}.{name}"),
                format!("'{raw}' is not a FHIR date or dateTime with a time zone"),
            );
        }
        parsed
    };
    let out = Period {
        start: bound("start", false),
        end: bound("end", true),
    };
    if let (Some(s), Some(e)) = (out.start, out.end)
        && e <= s
    {
        issues.error(
            IssueType::Value,
            format!("{path}.end"),
            "period.end must be after period.start",
        );
    }
    out
}

/// A period bound: a dateTime, or a date meaning the whole day (so an end date is inclusive).
pub fn parse_bound(raw: &str, end: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
    let date = if end { date.succ_opt()? } else { date };
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The code of a single Coding, if it is one of `C`'s.
fn coding_is<C: Code>(coding: &Value) -> Option<C> {
    (coding["system"].as_str()? == C::system())
        .then(|| C::from_code(coding["code"].as_str()?))
        .flatten()
}

/// The first coding of a list that is one of `C`'s.
fn coded<C: Code>(codings: &Value) -> Option<C> {
    codings.as_array()?.iter().find_map(coding_is::<C>)
}

/// The codes of `C`, comma-separated, for diagnostics.
pub fn codes_of<C: Code>() -> String {
    C::ALL
        .iter()
        .map(|c| c.code())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that the published CodeSystems and the Rust enums hold the same codes.
pub fn vocabulary_matches_profiles() -> Result<(), String> {
    fn check<C: Code>(name: &str) -> Result<(), String> {
        let published: Vec<&str> = code_system(name)
            .concepts
            .iter()
            .map(|(c, _)| c.as_str())
            .collect();
        let ours: Vec<&str> = C::ALL.iter().map(|c| c.code()).collect();
        if published == ours {
            Ok(())
        } else {
            Err(format!("{name}: profiles {published:?} vs code {ours:?}"))
        }
    }
    check::<RecipientClass>("consent-recipient")?;
    check::<DataClass>("consent-data-class")?;
    check::<OverrideReason>("consent-override-reason")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vocabularies_match_the_published_code_systems() {
        vocabulary_matches_profiles().unwrap();
    }

    #[test]
    fn date_bounds_cover_whole_days() {
        let start = parse_bound("2026-01-05", false).unwrap();
        let end = parse_bound("2026-01-05", true).unwrap();
        assert_eq!(end - start, chrono::Duration::days(1));
        assert!(parse_bound("2026-02-30", false).is_none());
        assert!(
            parse_bound("2026-01-05T10:00:00", false).is_none(),
            "no zone"
        );
    }

    #[test]
    fn reads_a_provision_tree() {
        let c = json!({
            "resourceType": "Consent", "id": "c1", "status": "active",
            "provision": {
                "type": "permit",
                "period": { "start": "2026-01-01", "end": "2026-12-31" },
                "actor": [{
                    "role": { "coding": [{ "system": RecipientClass::system(), "code": "work-health-service" }] },
                    "reference": { "identifier": { "system": "https://x/Id/service", "value": "whs" } }
                }],
                "action": [{ "coding": [{ "system": systems::CONSENT_ACTION, "code": "access" }] }],
                "purpose": [{ "system": systems::V3_ACT_REASON, "code": "TREAT" }],
                "class": [{ "system": DataClass::system(), "code": "referral" }],
                "provision": [{ "type": "deny", "class": [{ "system": DataClass::system(), "code": "diagnosis" }] }]
            }
        });
        let r = read_consent(&c).unwrap();
        assert_eq!(r.reference, "Consent/c1");
        assert_eq!(r.status, ConsentStatus::Active);
        assert_eq!(
            r.provision.actors,
            vec![ActorRule {
                class: RecipientClass::WorkHealthService,
                organisation: Some("https://x/Id/service|whs".into())
            }]
        );
        assert_eq!(r.provision.children[0].kind, Some(ProvisionType::Deny));
        assert_eq!(r.provision.children[0].classes, vec![DataClass::Diagnosis]);
    }

    #[test]
    fn a_modifier_extension_anywhere_is_refused() {
        let mut c = json!({
            "resourceType": "Consent", "id": "c1", "status": "active",
            "provision": { "type": "permit", "actor": [{
                "role": { "coding": [{ "system": RecipientClass::system(), "code": "employer" }] },
                "reference": { "display": "any employer" },
                "modifierExtension": [{ "url": "https://example.org/not", "valueBoolean": true }]
            }]}
        });
        let paths: Vec<String> = read_consent(&c)
            .unwrap_err()
            .iter()
            .map(|i| i.expression.clone().unwrap_or_default())
            .collect();
        assert_eq!(paths, ["Consent.provision.actor[0].modifierExtension"]);
        c["provision"]["actor"][0]
            .as_object_mut()
            .unwrap()
            .remove("modifierExtension");
        assert!(read_consent(&c).is_ok());
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let c = json!({
            "status": "withdrawn",
            "provision": {
                "period": { "start": "2026-05-01", "end": "2026-04-01" },
                "actor": [{ "role": { "coding": [{ "system": "x", "code": "y" }] }, "reference": { "display": "someone" } }],
                "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Observation" }],
                "data": [{ "meaning": "related", "reference": { "reference": "DocumentReference/1" } }],
                "provision": [{}]
            }
        });
        let issues = read_consent(&c).unwrap_err();
        let paths: Vec<String> = issues
            .iter()
            .map(|i| i.expression.clone().unwrap_or_default())
            .collect();
        for expected in [
            "Consent.status",
            "Consent.provision.type",
            "Consent.provision.period.end",
            "Consent.provision.actor[0].role",
            "Consent.provision.class[0]",
            "Consent.provision.data[0]",
            "Consent.provision.provision[0].type",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{expected} missing from {paths:?}"
            );
        }
    }
}
