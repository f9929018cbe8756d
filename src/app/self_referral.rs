//! A person refers themselves through the public form (`/refer`): the form's token (what makes a
//! sent form one the gateway drew, for this browser, a person's while ago), and the use case
//! that checks the answers and stores the referral as any referral is stored — the same
//! admission (consent, eligibility, the workflow Task) in the store's one transaction.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::rate_limits::RateLimiter;
use super::submissions::{SubmitError, store_submission};
use crate::config::Config;
use crate::fhir::Issues;
use crate::intake::admission;
use crate::intake::self_referral::{self, Answers, FormContext};
use crate::services::Service;
use crate::store::{Store, StoreError};

/// The key the form's tokens are signed with.
#[derive(Clone)]
pub struct FormKey(Vec<u8>);

impl FormKey {
    pub fn new(secret: &[u8]) -> Self {
        FormKey(secret.to_vec())
    }

    /// The key employer-letter approval links are signed with: the same secret (one key file for
    /// the gateway's public pages, shared between instances), under a label of its own.
    pub fn link_key(&self) -> crate::letters::approval_link::LinkKey {
        crate::letters::approval_link::LinkKey::new(&self.0)
    }

    /// The configured key file's key, created on first start.
    pub fn load(config: &Config) -> Result<Self, String> {
        let path = &config.self_referral.form_key;
        crate::secret_file::load_or_create_key(path)
            .map(|k| FormKey::new(&k))
            .map_err(|e| format!("self_referral.form_key {}: {e}", path.display()))
    }

    fn mac(&self, issued_at: i64, reference: &str, binding: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(format!("whg-refer-form|v1|{issued_at}|{reference}|{binding}").as_bytes());
        mac
    }

    /// A token for a form drawn at `issued_at` (unix seconds) in the browser holding cookie
    /// value `binding`, under the person's `reference`.
    pub fn seal(&self, issued_at: i64, reference: &str, binding: &str) -> String {
        let tag = hex::encode(
            self.mac(issued_at, reference, binding)
                .finalize()
                .into_bytes(),
        );
        format!("v1.{issued_at}.{reference}.{tag}")
    }

    /// The form `token` stands for, if this key signed it for `binding` and it is neither too
    /// fresh nor too old at `now`.
    pub fn open(
        &self,
        token: &str,
        binding: &str,
        now: i64,
        config: &crate::config::SelfReferralConfig,
    ) -> Result<DrawnForm, TokenProblem> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(issued), Some(reference), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenProblem::Forged);
        };
        let issued_at: i64 = issued.parse().map_err(|_| TokenProblem::Forged)?;
        let tag = hex::decode(tag).map_err(|_| TokenProblem::Forged)?;
        if binding.is_empty() || !is_reference(reference) {
            return Err(TokenProblem::Forged);
        }
        self.mac(issued_at, reference, binding)
            .verify_slice(&tag)
            .map_err(|_| TokenProblem::Forged)?;
        let age = now - issued_at;
        if age < 0 || age > config.form_lifetime_secs as i64 {
            return Err(TokenProblem::Expired);
        }
        if age < config.min_fill_secs as i64 {
            return Err(TokenProblem::TooSoon);
        }
        Ok(DrawnForm {
            reference: reference.to_string(),
        })
    }
}

/// What a genuine form token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawnForm {
    /// The person's reference for the referral: the key a resend is known by.
    pub reference: String,
}

/// Why a form's token was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// Not one this gateway drew for this browser (another site's form, a tampered or missing
    /// token, a cookie lost).
    Forged,
    /// Drawn too long ago (or in the future).
    Expired,
    /// Sent sooner after it was drawn than a person can fill it in.
    TooSoon,
}

/// The letters of a reference: Crockford's base 32 (no I, L, O or U to misread).
const REFERENCE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new reference for a form: 60 random bits as `XXXX-XXXX-XXXX`, short enough to read out
/// on the phone.
pub fn new_reference() -> String {
    let bits: u64 = rand::random::<u64>() >> 4;
    let letters: Vec<u8> = (0..12)
        .rev()
        .map(|i| REFERENCE_ALPHABET[((bits >> (i * 5)) & 31) as usize])
        .collect();
    let text = String::from_utf8(letters).expect("the alphabet is ASCII");
    format!("{}-{}-{}", &text[..4], &text[4..8], &text[8..])
}

/// Whether `s` is a reference as [`new_reference`] writes them.
pub fn is_reference(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 14
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 9 {
                *c == b'-'
            } else {
                REFERENCE_ALPHABET.contains(c)
            }
        })
}

/// A new random value to bind a browser's forms to (its cookie).
pub fn new_binding() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The GP practices a person may choose from: those the gateway can write to, by name, in
/// order of name. Never the test tenant's organisations (`[auth] test_organisations`, whatever
/// route they have): a real person's letters must never go to an integrator's system.
pub fn listed_practices(config: &Config) -> Vec<(String, String)> {
    let mut listed: Vec<(String, String)> = config
        .directory
        .iter()
        .filter(|(ods, _)| !config.auth.is_test_organisation(ods))
        .filter_map(|(ods, route)| Some((ods.clone(), route.name()?.to_string())))
        .collect();
    listed.sort_by(|a, b| a.1.cmp(&b.1));
    listed
}

/// What the form offers, from the configuration.
pub struct Offer<'a> {
    pub services: Vec<&'a Service>,
    pub practices: Vec<(String, String)>,
}

impl<'a> Offer<'a> {
    pub fn of(config: &'a Config) -> Self {
        Offer {
            services: self_referral::self_referral_services(&config.services),
            practices: listed_practices(config),
        }
    }

    /// The self-referral service with id `id`.
    pub fn service(&self, id: &str) -> Option<&'a Service> {
        self.services.iter().copied().find(|s| s.id == id)
    }
}

/// Why a self-referral was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SelfReferralError {
    /// Problems with the answers, each at its question.
    #[error("the form has problems")]
    Invalid(Issues),
    /// The same form (its reference) was already sent with other answers.
    #[error("this form was already sent with different answers")]
    SentDifferently,
    /// Every source's allowance is spent for now: seconds until it has one again.
    #[error("too many self-referrals just now")]
    Throttled(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored self-referral.
#[derive(Debug, Clone)]
pub struct Sent {
    pub reference: String,
    pub service_id: String,
    /// False when the same form had already been sent (nothing new stored).
    pub created: bool,
}

/// Checks `answers` and stores the self-referral under the form's `reference`, sent at `now`,
/// if every source's allowance (`limiter`) has room for it.
pub async fn refer_self(
    store: &dyn Store,
    config: &Config,
    limiter: &RateLimiter,
    answers: &Answers,
    form: &DrawnForm,
    request_id: Option<String>,
    now: DateTime<Utc>,
) -> Result<Sent, SelfReferralError> {
    let offer = Offer::of(config);
    let cx = FormContext {
        today: now.date_naive(),
        services: &offer.services,
        practices: &offer.practices,
    };
    let referral = self_referral::read(answers, &cx).map_err(SelfReferralError::Invalid)?;
    // A form already stored (a double click, a reload) is answered as before whatever the cap:
    // refusing it would have the person start again and send it twice.
    let key = crate::intake::SubmissionKey {
        namespace: self_referral::NAMESPACE.to_string(),
        value: form.reference.clone(),
    };
    let already = store.submitted(&key).await?.is_some();
    if !already
        && let Err(t) = limiter
            .admit_self_referral_stored(store, &config.self_referral)
            .await
    {
        if t.first {
            tracing::warn!(
                retry_after = t.wait,
                alert = "self-referral-cap",
                "the self-referral form's cap on all sources is reached: forms are refused until it admits again"
            );
        }
        return Err(SelfReferralError::Throttled(t.wait));
    }
    let service = offer
        .service(&referral.service)
        .expect("read takes only an offered service");
    let submission = self_referral::submission(
        &referral,
        service,
        &form.reference,
        answers.content_hash(),
        now,
    );
    let admission = admission::referral(
        &submission,
        Some(service),
        None,
        request_id.clone(),
        now,
        self_referral::criterion_expression,
        self_referral::field::CONSENT_SERVICE,
    );
    let stored = store_submission(
        store,
        None,
        request_id,
        submission,
        admission,
        self_referral::field::CONSENT_SERVICE,
    )
    .await
    .map_err(|e| match e {
        SubmitError::Invalid(issues) | SubmitError::ConsentRefused(issues) => {
            SelfReferralError::Invalid(issues)
        }
        SubmitError::Store(StoreError::Conflict { .. }) => SelfReferralError::SentDifferently,
        SubmitError::Store(e) => SelfReferralError::Store(e),
        other => SelfReferralError::Store(StoreError::Bug(bug_of(&other))),
    })?;
    Ok(Sent {
        reference: form.reference.clone(),
        service_id: service.id.clone(),
        created: stored.created,
    })
}

/// A submission error the form's path cannot meet (no client, no BaRS message): a bug.
fn bug_of(e: &SubmitError) -> &'static str {
    match e {
        SubmitError::Malformed(_) => "a self-referral mapped to a malformed submission",
        SubmitError::NotTheSender { .. } | SubmitError::RealPersonFromTestTenant { .. } => {
            "a self-referral was checked as a client's"
        }
        _ => "a self-referral met an error of another path",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> crate::config::SelfReferralConfig {
        Config::defaults().self_referral
    }

    #[test]
    fn a_token_opens_only_for_its_browser_in_its_time() {
        let key = FormKey::new(b"k1");
        let reference = new_reference();
        let token = key.seal(1000, &reference, "browser-a");
        let l = limits();
        assert_eq!(
            key.open(&token, "browser-a", 1000 + 10, &l),
            Ok(DrawnForm {
                reference: reference.clone()
            })
        );
        // Another browser (a cross-site form has no cookie, or its own).
        assert_eq!(
            key.open(&token, "browser-b", 1010, &l),
            Err(TokenProblem::Forged)
        );
        assert_eq!(key.open(&token, "", 1010, &l), Err(TokenProblem::Forged));
        // Another key.
        assert_eq!(
            FormKey::new(b"k2").open(&token, "browser-a", 1010, &l),
            Err(TokenProblem::Forged)
        );
        // Too soon, too late, from the future.
        assert_eq!(
            key.open(&token, "browser-a", 1001, &l),
            Err(TokenProblem::TooSoon)
        );
        let late = 1000 + l.form_lifetime_secs as i64 + 1;
        assert_eq!(
            key.open(&token, "browser-a", late, &l),
            Err(TokenProblem::Expired)
        );
        assert_eq!(
            key.open(&token, "browser-a", 999, &l),
            Err(TokenProblem::Expired)
        );
        // Tampered: another reference or time under the same tag.
        let other = token.replacen(&reference, &new_reference(), 1);
        assert_eq!(
            key.open(&other, "browser-a", 1010, &l),
            Err(TokenProblem::Forged)
        );
        let earlier = token.replacen("v1.1000.", "v1.990.", 1);
        assert_eq!(
            key.open(&earlier, "browser-a", 1010, &l),
            Err(TokenProblem::Forged)
        );
        for junk in [
            "",
            "v1",
            "v1.1000",
            "v2.1000.X.00",
            "v1.x.y.z",
            &format!("{token}.x"),
        ] {
            assert_eq!(
                key.open(junk, "browser-a", 1010, &l),
                Err(TokenProblem::Forged),
                "{junk}"
            );
        }
    }

    #[test]
    fn the_test_tenants_practices_are_never_offered_to_a_person() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[directory.B82001]\nchannel = \"fhir\"\nname = \"Zeta Surgery\"\nendpoint = \"https://gp.example.nhs.uk/fhir\"\n\
             [directory.B82002]\nchannel = \"fhir\"\nname = \"Alpha Surgery\"\nendpoint = \"https://gp2.example.nhs.uk/fhir\"\n\
             [directory.C88902]\nchannel = \"fhir\"\nname = \"A test practice with a route of its own\"\nendpoint = \"https://gp3.example.nhs.uk/fhir\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        // The defaults route the test organisations to the test tenant's practice system.
        assert!(config.directory.contains_key("C88901"));
        assert_eq!(
            listed_practices(&config),
            [
                ("B82002".to_string(), "Alpha Surgery".to_string()),
                ("B82001".to_string(), "Zeta Surgery".to_string()),
            ]
        );
    }

    #[test]
    fn references_are_readable_and_checked() {
        for _ in 0..1000 {
            let r = new_reference();
            assert!(is_reference(&r), "{r}");
            assert!(!r.contains(['I', 'L', 'O', 'U']));
        }
        for bad in [
            "",
            "ABCD-EFGH-JKM",
            "ABCD-EFGH-JKMNP",
            "abcd-efgh-jkmn",
            "ABCD_EFGH_JKMN",
            "ABCD-EFGH-JKMI",
        ] {
            assert!(!is_reference(bad), "{bad}");
        }
    }
}
