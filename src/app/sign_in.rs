//! Signing people in to the dashboard and out of it, and the session each of their requests
//! carries: the OpenID Connect flow ([`crate::signin::oidc`]) and the sealed cookies
//! ([`crate::signin::session`]), with every sign-in, refusal and sign-out audited. The use cases
//! take and give cookie *values*; the HTTP edge decides how they are set.

use chrono::Utc;

use crate::audit::{Event, Kind};
use crate::config::SignInConfig;
use crate::services::Service;
use crate::signin::oidc::{Provider, SignInError};
use crate::signin::session::{
    Ended, Lifetime, Pending, SIGN_IN_SECS, Sealed, Session, SessionKey, random_token, same_secret,
};
use crate::signin::{Person, Refused, person};
use crate::store::{AuditTrail, Store, StoreError};

/// The path under the gateway's base URL the provider sends the browser back to.
pub const CALLBACK_PATH: &str = "/dashboard/callback";

/// Sign-in as configured: the provider, the key cookies are sealed with, and session limits.
pub struct SignIn {
    provider: Provider,
    key: SessionKey,
    lifetime: Lifetime,
    /// `{base_url}/dashboard/callback`: registered at the provider as the redirect URI.
    redirect_uri: String,
    /// Who may sign in with which role: asked again of every session.
    config: SignInConfig,
}

/// Why a sign-in did not end with a session.
#[derive(Debug, thiserror::Error)]
pub enum SignInFailure {
    /// No sign-in was started in this browser, or it was started too long ago, or the cookie
    /// that records it is not one the gateway sealed.
    #[error(
        "this sign-in was not started here or took longer than {} minutes: start again",
        SIGN_IN_SECS / 60
    )]
    NotStarted,
    /// The answer names another sign-in (`state`): a login started elsewhere, or forged.
    #[error("the answer from the sign-in service does not belong to this sign-in: start again")]
    StateMismatch,
    /// The person cancelled, or the provider refused them (its `error` code).
    #[error(
        "the sign-in service did not sign you in ({0}): start again, or ask your administrator"
    )]
    Denied(String),
    #[error(transparent)]
    Provider(#[from] SignInError),
    /// The provider vouched for the person, but not in a role or organisation the dashboard has.
    #[error(transparent)]
    Refused(Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SignInFailure {
    /// What the logs say of it: never the claim values a refusal quotes (the provider's text).
    pub fn loggable(&self) -> String {
        match self {
            SignInFailure::Refused(refused) => format!("refused: {}", refused_code(refused)),
            other => other.to_string(),
        }
    }
}

/// What the provider sent the browser back with (the callback's query).
#[derive(Debug, Default)]
pub struct Answer {
    pub code: Option<String>,
    pub state: Option<String>,
    /// An OAuth2 error code (RFC 6749 §4.1.2.1), when there is no code.
    pub error: Option<String>,
}

/// A session in use: who, the cookie that carries it on (its idle clock renewed), and when that
/// cookie stops being accepted (unix seconds).
pub struct Live {
    pub session: Session,
    pub cookie: String,
    pub until: u64,
}

/// The OAuth2 authorization error codes (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6) shown back to
/// the person; anything else a provider sends is not repeated.
const KNOWN_ERRORS: &[&str] = &[
    "access_denied",
    "invalid_request",
    "unauthorized_client",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
];

fn unix(now: chrono::DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or_default()
}

impl SignIn {
    /// Sign-in under `config`, for a gateway reached at `base_url`; the session key is read
    /// from its file, or created (owner-only) on first use.
    pub fn new(
        config: &SignInConfig,
        base_url: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, String> {
        // An issuer over plain http is one on this host (`whg dev-issuer`, which signs anyone
        // in): only for a gateway that is itself reached only from this host, never one that
        // people elsewhere use, where any local user could then sign in as anyone.
        let plain_issuer = url::Url::parse(&config.issuer).is_ok_and(|u| u.scheme() == "http");
        let local_gateway =
            url::Url::parse(base_url).is_ok_and(|u| crate::outbound::on_this_host(&u));
        if plain_issuer && !local_gateway {
            return Err(format!(
                "sign_in.issuer {} is plain http on this host (a development issuer), but the gateway is reached at {base_url}: a deployment others use needs an https issuer",
                config.issuer
            ));
        }
        let secret = crate::secret_file::load_or_create_key(&config.session_key)
            .map_err(|e| format!("sign_in.session_key {}: {e}", config.session_key.display()))?;
        Ok(Self {
            provider: Provider::new(config.clone(), timeout).map_err(|e| e.to_string())?,
            key: SessionKey::new(&secret),
            lifetime: Lifetime::from_config(config),
            redirect_uri: format!("{}{CALLBACK_PATH}", base_url.trim_end_matches('/')),
            config: config.clone(),
        })
    }

    /// Starts a sign-in: where to send the browser, and the cookie that remembers what the
    /// provider's answer must match (good for [`SIGN_IN_SECS`]).
    pub async fn start(&self) -> Result<(String, String), SignInError> {
        let now = unix(Utc::now());
        let (url, pending) = self.provider.begin(&self.redirect_uri, now).await?;
        let cookie = self.key.seal(&Sealed::SignIn(pending), now + SIGN_IN_SECS);
        Ok((url, cookie))
    }

    /// Finishes a sign-in from the provider's answer and the pending cookie: a new session, or
    /// why not. Both are audited (a refusal without the claims that caused it: they are the
    /// provider's text).
    pub async fn finish(
        &self,
        store: &dyn Store,
        services: &[Service],
        pending_cookie: Option<&str>,
        answer: &Answer,
        request_id: Option<String>,
    ) -> Result<Live, SignInFailure> {
        let now = Utc::now();
        let pending = self.pending(pending_cookie, unix(now))?;
        // The state first, even for an error: a forged `?error=` from another site must not
        // end a sign-in under way (RFC 6749 §10.12).
        let state = answer.state.as_deref().unwrap_or_default();
        if !same_secret(state, &pending.state) {
            return Err(SignInFailure::StateMismatch);
        }
        if let Some(error) = &answer.error {
            let shown = KNOWN_ERRORS
                .iter()
                .find(|e| **e == error.as_str())
                .map_or("an error", |e| e);
            return Err(SignInFailure::Denied(shown.to_string()));
        }
        let code = answer
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or(SignInFailure::Denied("no code".into()))?;
        let claims = self
            .provider
            .finish(&pending, code, &self.redirect_uri, unix(now))
            .await?;
        let person = match person(&claims, self.provider.config(), services) {
            Ok(person) => person,
            Err(refused) => {
                store
                    .append_audit(&[access_event(
                        Kind::SignIn,
                        None,
                        false,
                        format!("dashboard sign-in refused: {}", refused_code(&refused)),
                        request_id,
                    )])
                    .await?;
                return Err(SignInFailure::Refused(refused));
            }
        };
        let session = Session {
            id: random_token(),
            person,
            csrf: random_token(),
            signed_in: unix(now),
            seen: unix(now),
        };
        let principal = session.person.principal();
        store
            .append_audit(&[access_event(
                Kind::SignIn,
                Some(&principal),
                true,
                format!(
                    "signed in to the dashboard as {} for {}",
                    session.person.role.label().to_lowercase(),
                    session.person.organisation
                ),
                request_id,
            )])
            .await?;
        Ok(self.renewed(session))
    }

    fn pending(&self, cookie: Option<&str>, now: u64) -> Result<Pending, SignInFailure> {
        match cookie.map(|c| self.key.open(c, now)) {
            Some(Ok(Sealed::SignIn(pending)))
                if now < pending.started.saturating_add(SIGN_IN_SECS) =>
            {
                Ok(pending)
            }
            _ => Err(SignInFailure::NotStarted),
        }
    }

    fn renewed(&self, session: Session) -> Live {
        let until = self.lifetime.until(&session);
        let cookie = self.key.seal(&Sealed::Session(session.clone()), until);
        Live {
            session,
            cookie,
            until,
        }
    }

    /// The session a request's cookie carries, still alive and not signed out, with the
    /// cookie that renews it.
    pub async fn session(&self, store: &dyn Store, cookie: Option<&str>) -> Result<Live, Ended> {
        let now = unix(Utc::now());
        let cookie = cookie.ok_or(Ended::Absent)?;
        let sealed = self.key.open(cookie, now)?;
        let session = self.lifetime.check(sealed, now)?;
        if !crate::signin::still_admitted(&session.person, &self.config) {
            return Err(Ended::NoLongerAdmitted);
        }
        match store.session_ended(&session.id).await {
            Ok(false) => Ok(self.renewed(session)),
            Ok(true) => Err(Ended::SignedOut),
            Err(e) => {
                tracing::error!(error = %e, "cannot read whether a session was signed out");
                Err(Ended::Unchecked)
            }
        }
    }

    /// Signs the session's person out, if the form carried the session's own CSRF token;
    /// audited. The caller clears the cookie.
    pub async fn sign_out(
        &self,
        store: &dyn Store,
        session: &Session,
        csrf: &str,
        request_id: Option<String>,
    ) -> Result<(), SignOutRefused> {
        if !same_secret(csrf, &session.csrf) {
            return Err(SignOutRefused::Csrf);
        }
        let principal = session.person.principal();
        let audit = crate::audit::audit_event(&access_event(
            Kind::SignOut,
            Some(&principal),
            true,
            "signed out of the dashboard".into(),
            request_id,
        ));
        // Ended in the store with its AuditEvent: every copy of the cookie is refused from now
        // until the session would have run out anyway.
        let until = i64::try_from(self.lifetime.until(session)).unwrap_or(i64::MAX);
        store.end_session(&session.id, until, audit).await?;
        Ok(())
    }

    /// Where to send the browser to end the person's session at the provider too, if it says.
    pub fn end_session_url(&self) -> Option<String> {
        self.provider.end_session_url()
    }
}

/// Why a sign-out form was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SignOutRefused {
    #[error("the form did not come from this session's page (its check token is wrong)")]
    Csrf,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A sign-in or sign-out as the audit trail records it: the person (when the provider named one
/// the dashboard takes) and what happened, about no patient or record.
fn access_event(
    kind: Kind,
    principal: Option<&crate::caller::Principal>,
    permitted: bool,
    description: String,
    request_id: Option<String>,
) -> Event<'_> {
    Event {
        kind,
        principal,
        patient: None,
        entities: Vec::new(),
        decision: None,
        permitted,
        description,
        at: Utc::now(),
        request_id,
    }
}

/// A refusal as the audit trail records it: its kind, never the claim values behind it.
fn refused_code(refused: &Refused) -> &'static str {
    match refused {
        Refused::NoSubject => "no usable subject",
        Refused::NoRole => "no role",
        Refused::UnknownRole(_) => "a role the dashboard does not know",
        Refused::NoOrganisation => "no organisation",
        Refused::UnknownService(_) => "a service this gateway does not run",
        Refused::NotAnOdsCode(_) => "an organisation that is not an ODS code",
        Refused::NotAnOperationsOrganisation(_) => {
            "operations from an organisation not listed for it"
        }
    }
}

/// A person as the pages name them: a commissioner by ODS code, a service manager by the
/// service's name.
pub fn organisation_name<'a>(person: &'a Person, services: &'a [Service]) -> &'a str {
    match person.role {
        crate::signin::PersonRole::Commissioner | crate::signin::PersonRole::Operations => {
            &person.organisation
        }
        crate::signin::PersonRole::ServiceManager => services
            .iter()
            .find(|s| s.id == person.organisation)
            .map_or(person.organisation.as_str(), |s| s.name.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_development_issuer_serves_only_a_gateway_on_this_host() {
        let config = crate::signin::tests::config();
        assert!(config.issuer.starts_with("http://127.0.0.1"));
        let refused = SignIn::new(
            &config,
            "https://gateway.example.nhs.uk",
            std::time::Duration::from_secs(1),
        )
        .err()
        .expect("refused");
        assert!(refused.contains("needs an https issuer"), "{refused}");
    }
}
