//! The caller: a client acting for one organisation in one role, with scopes. A core value that
//! the store (a registered client's role), the consent rules (who asks for an override) and the
//! use cases read; [`crate::auth`] proves it from an access token and re-exports it, so neither
//! the store nor the core depends on the token machinery.

use serde::{Deserialize, Serialize};

use crate::fhir::systems;

/// Scopes the gateway checks: SMART v2 system scopes (`system/<Type>.<cruds>`) for FHIR
/// interactions, the gateway's own (`whg/…`) for the rest. What a route needs is one
/// interaction on one type; what a client holds may be wider (`system/*.rs`, or SMART v1
/// `system/Observation.read`), and [`grants`] decides.
pub mod scope {
    pub const REFERRAL_CREATE: &str = "system/ServiceRequest.c";
    pub const FIT_NOTE_CREATE: &str = "system/Observation.c";
    /// Mark a fit note the practice sent entered in error.
    pub const FIT_NOTE_UPDATE: &str = "system/Observation.u";
    /// Accept or reject a referral prompt.
    pub const TASK_UPDATE: &str = "system/Task.u";
    /// Read and search everything the client's tenancy and consent allow.
    pub const READ: &str = "system/*.rs";
    pub const CONSENT_CREATE: &str = "system/Consent.c";
    pub const CONSENT_UPDATE: &str = "system/Consent.u";
    pub const AUDIT_READ: &str = "system/AuditEvent.rs";
    /// Act against a person's consent decision for a stated reason ("break glass").
    pub const CONSENT_OVERRIDE: &str = "whg/consent.override";
    /// Review the list of overrides.
    pub const OVERRIDE_REVIEW: &str = "whg/consent.override-review";
    /// Ask for a disclosure decision (the delivery outbox and integrators' tests).
    pub const DISCLOSURE: &str = "whg/disclosure";
    /// Triage, contacts, support, discharge and letters on referrals addressed to the service.
    pub const WORKFLOW: &str = "whg/workflow";
    /// Review the MESH inbox messages the gateway quarantined (information governance).
    pub const MESH_QUARANTINE: &str = "whg/mesh.quarantine";
    /// Read the aggregate reports (commissioners; a service's managers, for their service).
    pub const REPORTS: &str = "whg/reports";

    /// Every scope a route asks for, as published in the SMART configuration.
    pub const ALL: &[&str] = &[
        REFERRAL_CREATE,
        FIT_NOTE_CREATE,
        FIT_NOTE_UPDATE,
        TASK_UPDATE,
        READ,
        CONSENT_CREATE,
        CONSENT_UPDATE,
        AUDIT_READ,
        CONSENT_OVERRIDE,
        OVERRIDE_REVIEW,
        DISCLOSURE,
        WORKFLOW,
        MESH_QUARANTINE,
        REPORTS,
    ];

    /// Reading one resource of `resource_type` by id.
    pub fn read(resource_type: &str) -> String {
        format!("system/{resource_type}.r")
    }

    /// Searching resources of `resource_type`.
    pub fn search(resource_type: &str) -> String {
        format!("system/{resource_type}.s")
    }

    /// `(type, permissions)` of a SMART system scope, with v1 `read`/`write`/`*` as v2 letters.
    fn smart(scope: &str) -> Option<(&str, String)> {
        let (resource_type, permissions) = scope.strip_prefix("system/")?.split_once('.')?;
        let letters = match permissions {
            "read" => "rs".to_string(),
            "write" => "cud".to_string(),
            "*" => "cruds".to_string(),
            // v2 letters come in the order c r u d s, each at most once.
            p if !p.is_empty() && is_ordered_subset(p, "cruds") => p.to_string(),
            _ => return None,
        };
        Some((resource_type, letters))
    }

    fn is_ordered_subset(p: &str, of: &str) -> bool {
        let mut rest = of.chars();
        p.chars().all(|c| rest.by_ref().any(|o| o == c))
    }

    /// Whether holding `granted` allows what `wanted` asks. A SMART scope allows a narrower
    /// one on the same type (or any type, for `*`); the gateway's own scopes only themselves.
    pub fn grants(granted: &str, wanted: &str) -> bool {
        if granted == wanted {
            return true;
        }
        match (smart(granted), smart(wanted)) {
            (Some((gt, gp)), Some((wt, wp))) => {
                (gt == "*" || gt == wt) && wp.chars().all(|c| gp.contains(c))
            }
            _ => false,
        }
    }

    /// Whether `scope` is one the gateway understands (a SMART system scope, or one of its own).
    pub fn is_known(scope: &str) -> bool {
        smart(scope).is_some()
            || [
                CONSENT_OVERRIDE,
                OVERRIDE_REVIEW,
                DISCLOSURE,
                WORKFLOW,
                MESH_QUARANTINE,
                REPORTS,
            ]
            .contains(&scope)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn smart_scopes_allow_narrower_ones() {
            assert!(grants("system/*.rs", "system/Observation.r"));
            assert!(grants("system/*.rs", "system/Task.s"));
            assert!(!grants("system/*.rs", "system/Observation.c"));
            assert!(grants("system/Observation.cruds", "system/Observation.c"));
            assert!(!grants("system/Observation.cruds", "system/Task.c"));
            assert!(grants("system/Consent.write", "system/Consent.u"));
            assert!(grants("system/Consent.read", "system/Consent.s"));
            assert!(grants("system/Task.*", "system/Task.u"));
            assert!(
                !grants("system/Task.rc", "system/Task.c"),
                "letters out of order are not a scope"
            );
            assert!(
                !grants("patient/*.rs", "system/Observation.r"),
                "only system scopes"
            );
            assert!(!grants(
                "whg/consent.override",
                "whg/consent.override-review"
            ));
            assert!(grants(DISCLOSURE, DISCLOSURE));
            assert!(is_known("system/Observation.rs") && is_known(DISCLOSURE));
            assert!(!is_known("system/Observation.x") && !is_known("openid"));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A GP practice system: sends referrals, reads its own.
    Practice,
    /// An NHS Talking Therapies service's system: refers on the `talking-therapies` route.
    TalkingTherapies,
    /// A physiotherapy service's system (first-contact, community or MSK): refers on the
    /// `other-primary-care` and `secondary-care` routes.
    Physiotherapy,
    /// A hospital or specialist service's system: refers on the `secondary-care` route.
    SecondaryCare,
    /// A voluntary, community or social-enterprise organisation (a social prescriber, a link
    /// worker): refers on the `voluntary-sector` route.
    VoluntarySector,
    /// An employer (its HR or occupational-health system): refers on the `employer` route,
    /// only with the person's recorded agreement, and is never disclosed their health data
    /// (what reaches an employer is a document the person approved, named by a consent).
    Employer,
    /// A work-and-health service (its advisers' system): reads referrals addressed to it.
    Service,
    /// Information-governance staff: read the audit trail and review overrides.
    InformationGovernance,
    /// A commissioner (an ICB or local authority): reads aggregate reports on the services it
    /// commissions, never a person's record.
    Commissioner,
    /// The deployment's on-call operations staff (people only, never a client system): see
    /// and acknowledge the gateway's operational alerts, which carry no personal data; never a
    /// person's record or a service's figures.
    Operations,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub client_id: String,
    pub role: Role,
    /// `system|value` of the organisation the client acts for.
    pub organisation: String,
    pub scopes: Vec<String>,
    /// An integrator's client in the test tenant: it acts only for test organisations and
    /// sends only synthetic people.
    pub test_tenant: bool,
}

impl Principal {
    /// A practice system with the scopes practices get by default.
    pub fn practice(ods_code: &str) -> Self {
        Self::new(Role::Practice, ods_code)
    }

    /// A service's system with the scopes services get by default.
    pub fn service(service_id: &str) -> Self {
        Self::new(Role::Service, service_id)
    }

    /// A principal in `role` for the organisation with local code `code` (an ODS code for a
    /// practice, a configured service id for a service), with the role's default scopes.
    pub fn new(role: Role, code: &str) -> Self {
        let organisation = match role {
            Role::Practice | Role::Commissioner | Role::Operations => {
                format!("{}|{code}", systems::ODS_ORGANIZATION)
            }
            Role::Service => format!("{}|{code}", systems::service_identifier_system()),
            // A referrer that is not a GP practice is named in the gateway's own systems, so
            // its identifier never passes for a practice's (an NHS trust's ODS code is the
            // usual value): the system says what kind of party it is (`consent::Party`).
            Role::TalkingTherapies
            | Role::Physiotherapy
            | Role::SecondaryCare
            | Role::VoluntarySector => {
                format!(
                    "{}|{code}",
                    systems::referrer_identifier_system(role.as_str())
                )
            }
            Role::Employer => format!("{}|{code}", systems::employer_identifier_system()),
            Role::InformationGovernance => {
                format!("{}/Id/organisation|{code}", systems::CANONICAL_BASE)
            }
        };
        Self {
            client_id: format!("{}:{code}", role.as_str()),
            role,
            organisation,
            scopes: role
                .default_scopes()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            test_tenant: false,
        }
    }

    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes.iter().any(|s| scope::grants(s, wanted))
    }

    /// The value part of the organisation's identifier (ODS code or service id).
    pub fn organisation_code(&self) -> &str {
        crate::fhir::identifiers::value_part(&self.organisation)
    }

    pub fn practice_ods(&self) -> Option<&str> {
        (self.role == Role::Practice).then(|| self.organisation_code())
    }

    pub fn service_id(&self) -> Option<&str> {
        (self.role == Role::Service).then(|| self.organisation_code())
    }
}

impl Role {
    /// Roles a registered client system may hold (never operations: that is people only).
    pub const CLIENT_ROLES: &'static [Role] = &[
        Role::Practice,
        Role::TalkingTherapies,
        Role::Physiotherapy,
        Role::SecondaryCare,
        Role::VoluntarySector,
        Role::Employer,
        Role::Service,
        Role::InformationGovernance,
        Role::Commissioner,
    ];

    /// The role named by its code (`practice`, `employer`, `service`, …).
    pub fn from_str_code(code: &str) -> Option<Role> {
        Self::CLIENT_ROLES
            .iter()
            .copied()
            .find(|r| r.as_str() == code)
    }

    /// Whether the role is ever party to a person's records (referrers and services are; the
    /// audit trail's readers and commissioners never are).
    pub fn reads_records(self) -> bool {
        self.refers() || self == Role::Service
    }

    /// Whether the role sends referrals as itself and reads back what it sent: a GP practice,
    /// or a referrer of another kind.
    pub fn refers(self) -> bool {
        !self.referral_routes().is_empty()
    }

    /// The referral routes (`referral-route` codes) a referrer of this role may refer on; none
    /// for a role that does not refer. A practice states any route (it records who in the
    /// practice, or who outside it, prompted the referral it sends); a referrer of another
    /// kind only its own.
    pub fn referral_routes(self) -> &'static [&'static str] {
        match self {
            Role::Practice => &[
                "gp",
                "other-primary-care",
                "talking-therapies",
                "secondary-care",
                "voluntary-sector",
                "employer",
                "self-referral",
                "other",
            ],
            Role::TalkingTherapies => &["talking-therapies"],
            Role::Physiotherapy => &["other-primary-care", "secondary-care"],
            Role::SecondaryCare => &["secondary-care"],
            Role::VoluntarySector => &["voluntary-sector"],
            Role::Employer => &["employer"],
            Role::Service | Role::InformationGovernance | Role::Commissioner | Role::Operations => {
                &[]
            }
        }
    }

    /// A referrer that is not a GP practice, by the code the practice format's
    /// `referringOrganisation.kind` names it with (its role code).
    pub fn other_referrer(kind: &str) -> Option<Role> {
        Self::from_str_code(kind).filter(|r| r.refers() && *r != Role::Practice)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Practice => "practice",
            Role::TalkingTherapies => "talking-therapies",
            Role::Physiotherapy => "physiotherapy",
            Role::SecondaryCare => "secondary-care",
            Role::VoluntarySector => "voluntary-sector",
            Role::Employer => "employer",
            Role::Service => "service",
            Role::InformationGovernance => "information-governance",
            Role::Commissioner => "commissioner",
            Role::Operations => "operations",
        }
    }

    pub fn default_scopes(self) -> &'static [&'static str] {
        match self {
            Role::Practice => &[
                scope::REFERRAL_CREATE,
                scope::FIT_NOTE_CREATE,
                scope::FIT_NOTE_UPDATE,
                scope::TASK_UPDATE,
                scope::READ,
                scope::CONSENT_CREATE,
                scope::CONSENT_UPDATE,
            ],
            // A referrer of another kind sends referrals, reads back what it sent and withdraws
            // an agreement it recorded; it sends no fit notes and answers no prompts.
            Role::TalkingTherapies
            | Role::Physiotherapy
            | Role::SecondaryCare
            | Role::VoluntarySector
            | Role::Employer => &[scope::REFERRAL_CREATE, scope::READ, scope::CONSENT_UPDATE],
            Role::Service => &[
                scope::READ,
                scope::CONSENT_CREATE,
                scope::CONSENT_UPDATE,
                scope::DISCLOSURE,
                scope::WORKFLOW,
                scope::REPORTS,
            ],
            Role::InformationGovernance => &[
                scope::AUDIT_READ,
                scope::OVERRIDE_REVIEW,
                scope::MESH_QUARANTINE,
            ],
            Role::Commissioner => &[scope::REPORTS],
            Role::Operations => &[],
        }
    }
}
