//! The caller: a client acting for one organisation in one role, with scopes.

use serde::{Deserialize, Serialize};

use crate::consent::{Recipient, RecipientClass};
use crate::fhir::systems;

/// Scopes the gateway checks. SMART v2 system scopes where one fits, the gateway's own otherwise.
pub mod scope {
    pub const REFERRAL_CREATE: &str = "system/ServiceRequest.c";
    pub const FIT_NOTE_CREATE: &str = "system/Observation.c";
    /// Accept or reject a referral prompt.
    pub const TASK_UPDATE: &str = "system/Task.u";
    pub const READ: &str = "system/*.rs";
    pub const CONSENT_WRITE: &str = "system/Consent.cu";
    pub const AUDIT_READ: &str = "system/AuditEvent.rs";
    /// Act against a person's consent decision for a stated reason ("break glass").
    pub const CONSENT_OVERRIDE: &str = "whg/consent.override";
    /// Review the list of overrides.
    pub const OVERRIDE_REVIEW: &str = "whg/consent.override-review";
    /// Ask for a disclosure decision (the delivery outbox and integrators' tests).
    pub const DISCLOSURE: &str = "whg/disclosure";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A GP practice system: sends referrals, reads its own.
    Practice,
    /// A work-and-health service (its advisers' system): reads referrals addressed to it.
    Service,
    /// Information-governance staff: read the audit trail and review overrides.
    InformationGovernance,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub client_id: String,
    pub role: Role,
    /// `system|value` of the organisation the client acts for.
    pub organisation: String,
    pub scopes: Vec<String>,
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
            Role::Practice => format!("{}|{code}", systems::ODS_ORGANIZATION),
            Role::Service => format!("{}|{code}", systems::service_identifier_system()),
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
        }
    }

    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes.iter().any(|s| s == wanted)
    }

    /// The value part of the organisation's identifier (ODS code or service id).
    pub fn organisation_code(&self) -> &str {
        self.organisation
            .rsplit_once('|')
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    pub fn practice_ods(&self) -> Option<&str> {
        (self.role == Role::Practice).then(|| self.organisation_code())
    }

    pub fn service_id(&self) -> Option<&str> {
        (self.role == Role::Service).then(|| self.organisation_code())
    }

    /// As a recipient of a person's information, for consent decisions.
    pub fn as_recipient(&self) -> Option<Recipient> {
        let class = match self.role {
            Role::Practice => RecipientClass::ReferringPractice,
            Role::Service => RecipientClass::WorkHealthService,
            Role::InformationGovernance => return None,
        };
        Some(Recipient {
            class,
            organisation: Some(self.organisation.clone()),
        })
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Practice => "practice",
            Role::Service => "service",
            Role::InformationGovernance => "information-governance",
        }
    }

    pub fn default_scopes(self) -> &'static [&'static str] {
        match self {
            Role::Practice => &[
                scope::REFERRAL_CREATE,
                scope::FIT_NOTE_CREATE,
                scope::TASK_UPDATE,
                scope::READ,
                scope::CONSENT_WRITE,
            ],
            Role::Service => &[scope::READ, scope::CONSENT_WRITE, scope::DISCLOSURE],
            Role::InformationGovernance => &[scope::AUDIT_READ, scope::OVERRIDE_REVIEW],
        }
    }
}
