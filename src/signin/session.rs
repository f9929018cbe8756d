//! Sessions for people, and the sign-in in progress, as cookies the gateway signs (HMAC-SHA256
//! JWTs under the deployment's session key): any instance sharing the key reads them, so
//! several instances behind one address need no shared session table.
//!
//! A session ends when it has not been used for the idle time-out, or at the absolute limit
//! after sign-in, whichever comes first; each use renews the idle clock (the cookie is sent
//! again). Signing out clears the cookie in the browser; a copied cookie stays usable until
//! one of those limits, which is why both are short (docs/dashboard.md).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Person;

/// What a cookie holds: a session, or a sign-in on its way through the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Sealed {
    Session(Session),
    SignIn(Pending),
}

/// A signed-in person's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random: what signing out records as ended (`crate::store::Sessions`).
    pub id: String,
    pub person: Person,
    /// The token every form the session posts must carry (the sign-out form).
    pub csrf: String,
    /// Unix seconds: when the person signed in, and when the session was last used.
    pub signed_in: u64,
    pub seen: u64,
}

/// A sign-in started and not finished: what the provider's answer must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// OAuth2 `state`: the answer must name it (a login started elsewhere is refused).
    pub state: String,
    /// OpenID Connect `nonce`: the ID token must carry it (a replayed token is refused).
    pub nonce: String,
    /// PKCE code verifier: the token request proves with it that this browser started the flow.
    pub verifier: String,
    /// Unix seconds.
    pub started: u64,
}

/// How long a sign-in may take at the provider.
pub const SIGN_IN_SECS: u64 = 600;

/// Why a cookie is not a usable session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ended {
    #[error("not signed in")]
    Absent,
    #[error("the session cookie is not one this gateway signed")]
    Forged,
    #[error("the session ended after a time without use")]
    Idle,
    #[error("the session reached its time limit")]
    Expired,
    #[error("the session was signed out")]
    SignedOut,
    /// The person's role is no longer open to their organisation (taken off
    /// `[sign_in] operations_organisations` since they signed in).
    #[error("the session's role is no longer open to the person's organisation")]
    NoLongerAdmitted,
    /// The store could not say whether it was signed out: refused, not assumed alive.
    #[error("the session could not be checked just now")]
    Unchecked,
}

/// The session key, for signing and reading cookies.
#[derive(Clone)]
pub struct SessionKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The claims a cookie's JWT carries: what it seals, and when it stops being accepted at all.
#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(flatten)]
    sealed: Sealed,
    exp: u64,
}

impl SessionKey {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// Signs `sealed`, to be read back until `until` (unix seconds).
    pub fn seal(&self, sealed: &Sealed, until: u64) -> String {
        let claims = Claims {
            sealed: sealed.clone(),
            exp: until,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HMAC signing of serialisable claims cannot fail")
    }

    /// What a cookie this key signed holds, if it has not run out by `now`.
    pub fn open(&self, cookie: &str, now: u64) -> Result<Sealed, Ended> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Time is judged here, against the caller's clock, not by the library's.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp".to_string()].into();
        let claims = jsonwebtoken::decode::<Claims>(cookie, &self.decoding, &validation)
            .map_err(|_| Ended::Forged)?
            .claims;
        if claims.exp <= now {
            return Err(Ended::Expired);
        }
        Ok(claims.sealed)
    }
}

/// The limits a session lives under.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    pub idle_secs: u64,
    pub max_secs: u64,
}

impl Lifetime {
    pub fn from_config(config: &crate::config::SignInConfig) -> Self {
        Self {
            idle_secs: config.idle_minutes * 60,
            max_secs: config.max_hours * 3600,
        }
    }

    /// When a session last used at `seen` stops being accepted: the idle time-out, never past
    /// the absolute limit.
    pub fn until(&self, session: &Session) -> u64 {
        (session.seen + self.idle_secs).min(session.signed_in + self.max_secs)
    }

    /// The session in `sealed`, still alive at `now`, marked as used then.
    pub fn check(&self, sealed: Sealed, now: u64) -> Result<Session, Ended> {
        let Sealed::Session(mut session) = sealed else {
            return Err(Ended::Forged);
        };
        if now >= session.signed_in + self.max_secs {
            return Err(Ended::Expired);
        }
        if now >= session.seen + self.idle_secs {
            return Err(Ended::Idle);
        }
        session.seen = now;
        Ok(session)
    }
}

/// A random token for `state`, `nonce`, CSRF and PKCE: 32 bytes, base64url.
pub fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signin::PersonRole;

    fn session(signed_in: u64, seen: u64) -> Session {
        Session {
            id: random_token(),
            person: Person {
                subject: "555011".into(),
                role: PersonRole::Commissioner,
                organisation: "QF7".into(),
            },
            csrf: random_token(),
            signed_in,
            seen,
        }
    }

    const LIFE: Lifetime = Lifetime {
        idle_secs: 1800,
        max_secs: 8 * 3600,
    };

    #[test]
    fn a_sealed_session_opens_only_under_its_key_and_until_it_runs_out() {
        let key = SessionKey::new(&[7; 32]);
        let s = session(1000, 1000);
        let cookie = key.seal(&Sealed::Session(s.clone()), LIFE.until(&s));
        assert_eq!(key.open(&cookie, 1001), Ok(Sealed::Session(s.clone())));
        assert_eq!(key.open(&cookie, 1000 + 1800), Err(Ended::Expired));
        assert_eq!(
            SessionKey::new(&[8; 32]).open(&cookie, 1001),
            Err(Ended::Forged)
        );
        // A changed payload under the old signature.
        let mut parts: Vec<&str> = cookie.split('.').collect();
        let forged_payload = {
            use base64::Engine;
            let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut v: serde_json::Value =
                serde_json::from_slice(&e.decode(parts[1]).unwrap()).unwrap();
            v["person"]["organisation"] = "QHM".into();
            e.encode(serde_json::to_vec(&v).unwrap())
        };
        parts[1] = &forged_payload;
        assert_eq!(key.open(&parts.join("."), 1001), Err(Ended::Forged));
        // An unsigned token.
        let none = format!("eyJhbGciOiJub25lIn0.{}.", cookie.split('.').nth(1).unwrap());
        assert_eq!(key.open(&none, 1001), Err(Ended::Forged));
    }

    #[test]
    fn a_session_ends_when_idle_or_at_its_limit_and_each_use_renews_it() {
        let s = session(0, 0);
        let used = LIFE.check(Sealed::Session(s.clone()), 1799).unwrap();
        assert_eq!(used.seen, 1799);
        assert_eq!(
            LIFE.check(Sealed::Session(s.clone()), 1800),
            Err(Ended::Idle)
        );
        let late = session(0, 8 * 3600 - 10);
        assert_eq!(
            LIFE.check(Sealed::Session(late.clone()), 8 * 3600),
            Err(Ended::Expired)
        );
        assert_eq!(LIFE.until(&late), 8 * 3600);
        let pending = Sealed::SignIn(Pending {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            started: 0,
        });
        assert_eq!(
            LIFE.check(pending, 1),
            Err(Ended::Forged),
            "a sign-in cookie is no session"
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }
}
