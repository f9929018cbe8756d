//! The work-and-health services referrals may be addressed to: who each is, how BaRS names it,
//! its eligibility criteria and the fit-note rules that prompt a referral to it. Plain values:
//! the configuration's `[[services]]` are read into them, and the core takes them as they are.

use serde::Deserialize;

use crate::eligibility::EligibilityConfig;
use crate::fit_notes::prompts::PromptRule;

/// A work-and-health service that referrals can be addressed to.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub ods_code: Option<String>,
    /// `system|value` of the service's BaRS target identifier.
    #[serde(default)]
    pub bars_endpoint: Option<String>,
    /// Fit-note rules that prompt practices to consider a referral to this service.
    #[serde(default)]
    pub prompts: Vec<PromptRule>,
    #[serde(default)]
    pub eligibility: Option<EligibilityConfig>,
    /// ODS codes of the commissioners (ICBs, local authorities) that fund the service: their
    /// `commissioner` clients read its aggregate reports. None: no commissioner does.
    #[serde(default)]
    pub commissioners: Vec<String>,
    /// Who to call when an urgent letter of the service's is not acknowledged in time (a duty
    /// adviser's line, say): named in the escalation's alert. Not a person's own details.
    #[serde(default)]
    pub duty_contact: Option<String>,
    /// How a person reaches the service (a phone number, an e-mail address), as the
    /// self-referral form's confirmation page gives it for questions and for withdrawing.
    #[serde(default)]
    pub public_contact: Option<String>,
    /// Whom the service takes referrals from (`referral-route` codes), as the service directory
    /// says (`GET /fhir/HealthcareService`). Default: GP practices.
    #[serde(default = "gp_only")]
    pub referral_routes: Vec<String>,
}

fn gp_only() -> Vec<String> {
    vec!["gp".to_string()]
}

/// The service with id `id` among `services`.
pub fn by_id<'a>(services: &'a [Service], id: &str) -> Option<&'a Service> {
    services.iter().find(|s| s.id == id)
}
