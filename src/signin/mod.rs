//! Sign-in for people (not client systems): commissioners and service managers reach the
//! dashboard through a standard OpenID Connect login at a provider the deployment trusts
//! ([`oidc`]), and carry a session cookie ([`session`]) bound to one role and organisation.
//!
//! A signed-in person acts as a [`Principal`] with the reports scope and nothing else: the same
//! tenancy rule that decides which services' reports a commissioner's or a service's client
//! reads decides what the person sees, and no session can read a record, whatever its role.

pub mod oidc;
pub mod session;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::caller::{Principal, Role, scope};
use crate::config::SignInConfig;
use crate::services::Service;

/// The roles a person may sign in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersonRole {
    /// Of an ICB or local authority: the services it commissions, in aggregate.
    Commissioner,
    /// Of one work-and-health service: that service's figures, in aggregate, and its alerts.
    ServiceManager,
    /// Of the organisation running the gateway (on call): every operational alert, none of the
    /// figures and no person's record.
    Operations,
}

impl PersonRole {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "commissioner" => Some(Self::Commissioner),
            "service-manager" => Some(Self::ServiceManager),
            "operations" => Some(Self::Operations),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Commissioner => "Commissioner",
            Self::ServiceManager => "Service manager",
            Self::Operations => "Operations",
        }
    }
}

/// A person signed in: who the provider says they are, in which role, for which organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The provider's subject identifier (`sub`): what the audit trail names.
    pub subject: String,
    pub role: PersonRole,
    /// A commissioner's ODS code, or a service manager's service id.
    pub organisation: String,
}

impl Person {
    /// The principal the person acts as: the role's organisation, the reports scope only (an
    /// operations person none: what they see is decided by the alerts' own rule).
    pub fn principal(&self) -> Principal {
        let role = match self.role {
            PersonRole::Commissioner => Role::Commissioner,
            PersonRole::ServiceManager => Role::Service,
            PersonRole::Operations => Role::Operations,
        };
        let mut principal = Principal::new(role, &self.organisation);
        principal.client_id = format!("person:{}", self.subject);
        principal.scopes = match self.role {
            PersonRole::Operations => Vec::new(),
            _ => vec![scope::REPORTS.to_string()],
        };
        principal
    }
}

/// Why a person the provider vouched for may not sign in here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the sign-in service did not say who you are (no usable subject identifier)")]
    NoSubject,
    #[error(
        "your account has no role for this dashboard: ask for the commissioner, service-manager or operations role"
    )]
    NoRole,
    #[error(
        "the role your account has ('{0}') is not one this dashboard knows: ask for commissioner, service-manager or operations"
    )]
    UnknownRole(String),
    #[error("your account does not say which organisation you act for")]
    NoOrganisation,
    #[error(
        "'{0}' is not a service this gateway runs: a service manager's organisation is a service id"
    )]
    UnknownService(String),
    #[error(
        "'{0}' is not an ODS code: a commissioner's or operations person's organisation is its ODS code (e.g. QF7)"
    )]
    NotAnOdsCode(String),
    #[error(
        "people of '{0}' cannot sign in as operations here: ask the gateway's administrators to list the organisation in [sign_in] operations_organisations"
    )]
    NotAnOperationsOrganisation(String),
}

/// The longest subject identifier kept (CIS2's UUIDs are 12 digits, Entra's object ids 36).
const MAX_SUBJECT_LEN: usize = 128;

/// The person an ID token's verified claims describe, under `config`'s claim names. Pure.
pub fn person(
    claims: &Map<String, Value>,
    config: &SignInConfig,
    services: &[Service],
) -> Result<Person, Refused> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| {
            (1..=MAX_SUBJECT_LEN).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._@:-".contains(&b))
        })
        .ok_or(Refused::NoSubject)?;
    // A role claim may be one value or a list (providers send either); one known role is taken,
    // commissioner first when a person holds both.
    let roles: Vec<&str> = match claims.get(&config.role_claim) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let role = [
        PersonRole::Commissioner,
        PersonRole::ServiceManager,
        PersonRole::Operations,
    ]
    .into_iter()
    .find(|r| {
        roles
            .iter()
            .any(|given| PersonRole::parse(given) == Some(*r))
    });
    let role = match (role, roles.first()) {
        (Some(role), _) => role,
        (None, Some(other)) => return Err(Refused::UnknownRole(clip(other))),
        (None, None) => return Err(Refused::NoRole),
    };
    let organisation = claims
        .get(&config.organisation_claim)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(Refused::NoOrganisation)?;
    let organisation = match role {
        PersonRole::ServiceManager => {
            if !services.iter().any(|s| s.id == organisation) {
                return Err(Refused::UnknownService(clip(organisation)));
            }
            organisation.to_string()
        }
        PersonRole::Commissioner | PersonRole::Operations => {
            // ODS codes are upper case; a provider may send them either way.
            let code = organisation.to_ascii_uppercase();
            if !crate::fhir::identifiers::is_ods_code(&code) {
                return Err(Refused::NotAnOdsCode(clip(organisation)));
            }
            if role == PersonRole::Operations && !operations_listed(config, &code) {
                return Err(Refused::NotAnOperationsOrganisation(code));
            }
            code
        }
    };
    Ok(Person {
        subject: subject.to_string(),
        role,
        organisation,
    })
}

/// Whether people of organisation `code` may hold the operations role here. Asked at sign-in
/// and again of every session's request: an organisation taken off the list loses it at once,
/// not when its people's sessions run out.
fn operations_listed(config: &SignInConfig, code: &str) -> bool {
    config
        .operations_organisations
        .iter()
        .any(|listed| listed.eq_ignore_ascii_case(code))
}

/// Whether `person`, signed in earlier, may still use the role they signed in with under
/// today's configuration.
pub fn still_admitted(person: &Person, config: &SignInConfig) -> bool {
    person.role != PersonRole::Operations || operations_listed(config, &person.organisation)
}

/// A claim's value as shown back to the person: short, and only printable ASCII.
fn clip(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(40)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A sign-in configuration for a development issuer on this host, for the tests here and
    /// in [`super::oidc`].
    pub(crate) fn config() -> SignInConfig {
        SignInConfig {
            issuer: "http://127.0.0.1:8091".into(),
            client_id: "whg-dashboard".into(),
            client_secret_file: None,
            role_claim: "whg_role".into(),
            organisation_claim: "whg_org".into(),
            operations_organisations: vec!["X26".into()],
            session_key: "data/session-key".into(),
            idle_minutes: 30,
            max_hours: 8,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_commissioner_and_a_service_manager_are_mapped_to_reports_only_principals() {
        let services = crate::config::Config::defaults().services;
        let c = person(
            &claims(json!({"sub": "555011", "whg_role": "commissioner", "whg_org": "qf7"})),
            &config(),
            &services,
        )
        .unwrap();
        assert_eq!(c.organisation, "QF7");
        let p = c.principal();
        assert_eq!(p.role, Role::Commissioner);
        assert_eq!(p.scopes, vec![scope::REPORTS.to_string()]);
        assert!(!p.has_scope(scope::READ));
        assert_eq!(p.client_id, "person:555011");

        let m = person(
            &claims(json!({"sub": "a1", "whg_role": ["adviser", "service-manager"], "whg_org": "sheffield-whs"})),
            &config(),
            &services,
        )
        .unwrap();
        let p = m.principal();
        assert_eq!(p.role, Role::Service);
        assert_eq!(p.service_id(), Some("sheffield-whs"));
        assert_eq!(p.scopes, vec![scope::REPORTS.to_string()]);
    }

    #[test]
    fn operations_is_only_for_the_listed_organisations() {
        let services = crate::config::Config::defaults().services;
        let given = claims(json!({"sub": "ops1", "whg_role": "operations", "whg_org": "x26"}));
        let ops = person(&given, &config(), &services).unwrap();
        assert_eq!(
            (ops.role, ops.organisation.as_str()),
            (PersonRole::Operations, "X26")
        );
        let unlisted = SignInConfig {
            operations_organisations: Vec::new(),
            ..config()
        };
        assert_eq!(
            person(&given, &unlisted, &services),
            Err(Refused::NotAnOperationsOrganisation("X26".into()))
        );
        // Signed in while listed, then taken off the list: the session no longer admits them.
        assert!(still_admitted(&ops, &config()));
        assert!(!still_admitted(&ops, &unlisted));
        let commissioner =
            claims(json!({"sub": "c1", "whg_role": "commissioner", "whg_org": "QF7"}));
        let commissioner = person(&commissioner, &unlisted, &services).unwrap();
        assert!(
            still_admitted(&commissioner, &unlisted),
            "only operations is listed"
        );
    }

    #[test]
    fn accounts_without_a_known_role_subject_or_organisation_are_refused() {
        let services = crate::config::Config::defaults().services;
        let cases = [
            (
                json!({"whg_role": "commissioner", "whg_org": "QF7"}),
                Refused::NoSubject,
            ),
            (
                json!({"sub": "a b", "whg_role": "commissioner", "whg_org": "QF7"}),
                Refused::NoSubject,
            ),
            (json!({"sub": "1", "whg_org": "QF7"}), Refused::NoRole),
            (
                json!({"sub": "1", "whg_role": "practice", "whg_org": "QF7"}),
                Refused::UnknownRole("practice".into()),
            ),
            (
                json!({"sub": "1", "whg_role": "commissioner"}),
                Refused::NoOrganisation,
            ),
            (
                json!({"sub": "1", "whg_role": "commissioner", "whg_org": "  "}),
                Refused::NoOrganisation,
            ),
            (
                json!({"sub": "1", "whg_role": "service-manager", "whg_org": "elsewhere"}),
                Refused::UnknownService("elsewhere".into()),
            ),
            (
                json!({"sub": "1", "whg_role": "commissioner", "whg_org": "not an ods code"}),
                Refused::NotAnOdsCode("not an ods code".into()),
            ),
            // Operations sees every service's alerts: only the listed platform team's people.
            (
                json!({"sub": "1", "whg_role": "operations", "whg_org": "QF7"}),
                Refused::NotAnOperationsOrganisation("QF7".into()),
            ),
        ];
        for (given, refused) in cases {
            assert_eq!(
                person(&claims(given.clone()), &config(), &services),
                Err(refused),
                "{given}"
            );
        }
    }
}
