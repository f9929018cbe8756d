//! The one-time link on which a person approves (or not) one version of a letter to their
//! employer. Pure: a link is `l1.{letter}.{version}.{expires}.{tag}`, its tag an HMAC-SHA256 under
//! the gateway's public-pages key with a label of its own (so no self-referral form token can
//! ever pass for one, nor one for a form token). It names one version: an edit makes the link
//! answer "this letter has changed". It is spent once the person has answered about that
//! version (a Consent names it), and it proves nothing about who holds it: the page asks for the
//! person's date of birth and the link's code (given to them apart from the link) before it
//! shows anything, a few tries a day.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key links are signed with.
#[derive(Clone)]
pub struct LinkKey(Vec<u8>);

/// What a genuine link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaim {
    pub letter: String,
    pub version: i64,
    /// Unix seconds.
    pub expires: i64,
}

/// Why a link was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProblem {
    /// Not a link this gateway made (mistyped, cut short, tampered with).
    Forged,
    /// Made, but past its time.
    Expired,
}

impl LinkKey {
    pub fn new(secret: &[u8]) -> Self {
        LinkKey(secret.to_vec())
    }

    fn mac(&self, letter: &str, version: i64, expires: i64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(format!("whg-employer-letter-link|v1|{letter}|{version}|{expires}").as_bytes());
        mac
    }

    /// The link's token for `version` of `letter`, good until `expires` (unix seconds).
    pub fn seal(&self, letter: &str, version: i64, expires: i64) -> String {
        let tag = hex::encode(self.mac(letter, version, expires).finalize().into_bytes());
        format!("l1.{letter}.{version}.{expires}.{tag}")
    }

    /// What `token` names, if this key made it and it has not expired at `now`.
    pub fn open(&self, token: &str, now: i64) -> Result<LinkClaim, LinkProblem> {
        let mut parts = token.split('.');
        let (Some("l1"), Some(letter), Some(version), Some(expires), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(LinkProblem::Forged);
        };
        let version: i64 = version.parse().map_err(|_| LinkProblem::Forged)?;
        let expires: i64 = expires.parse().map_err(|_| LinkProblem::Forged)?;
        let tag = hex::decode(tag).map_err(|_| LinkProblem::Forged)?;
        if letter.is_empty() || !letter.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(LinkProblem::Forged);
        }
        self.mac(letter, version, expires)
            .verify_slice(&tag)
            .map_err(|_| LinkProblem::Forged)?;
        if now >= expires {
            return Err(LinkProblem::Expired);
        }
        Ok(LinkClaim {
            letter: letter.to_string(),
            version,
            expires,
        })
    }
}

impl LinkKey {
    /// The link's code: six digits the adviser gives the person by another way than the link
    /// (said on the phone, or a text when the link went by e-mail), which the page asks for with
    /// the date of birth. Someone who saw the link where it was sent (an employer reading a
    /// work inbox, who may well know the person's date of birth) does not have it. Derived from
    /// the token under the key, so nothing is stored.
    pub fn code(&self, token: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(format!("whg-employer-letter-code|v1|{token}").as_bytes());
        let bytes = mac.finalize().into_bytes();
        let n = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % 1_000_000;
        format!("{n:06}")
    }

    /// Whether `given` is the link's code (spaces ignored), compared in constant time.
    pub fn code_matches(&self, token: &str, given: &str) -> bool {
        let given: String = given.chars().filter(|c| !c.is_whitespace()).collect();
        aws_lc_rs::constant_time::verify_slices_are_equal(
            self.code(token).as_bytes(),
            given.as_bytes(),
        )
        .is_ok()
    }
}

/// Whether a path segment is a link's token (for the logs, which never show one).
pub fn is_link_token(segment: &str) -> bool {
    segment.starts_with("l1.") && segment.matches('.').count() == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    const LETTER: &str = "01a24259-345a-775f-be12-a0c7f38764e0";

    #[test]
    fn a_link_opens_for_its_letter_and_version_until_it_expires() {
        let key = LinkKey::new(b"k1");
        let token = key.seal(LETTER, 2, 2000);
        assert!(is_link_token(&token));
        assert_eq!(
            key.open(&token, 1999),
            Ok(LinkClaim {
                letter: LETTER.into(),
                version: 2,
                expires: 2000
            })
        );
        assert_eq!(key.open(&token, 2000), Err(LinkProblem::Expired));
        assert_eq!(
            LinkKey::new(b"k2").open(&token, 1000),
            Err(LinkProblem::Forged)
        );
        // Another version, letter or time cannot be written into it.
        for (from, to) in [(".2.", ".3."), (".2000.", ".9999.")] {
            let changed = token.replacen(from, to, 1);
            assert_eq!(
                key.open(&changed, 1000),
                Err(LinkProblem::Forged),
                "{changed}"
            );
        }
        let other = token.replacen(LETTER, "01a24259-345a-775f-be12-a0c7f38764e1", 1);
        assert_eq!(key.open(&other, 1000), Err(LinkProblem::Forged));
        for broken in [
            "",
            "l1",
            "l1....",
            &format!("{token}.x"),
            &token[..token.len() - 2],
        ] {
            assert_eq!(key.open(broken, 1000), Err(LinkProblem::Forged), "{broken}");
        }
    }

    #[test]
    fn a_links_code_is_six_digits_only_the_key_gives() {
        let key = LinkKey::new(b"k1");
        let token = key.seal(LETTER, 1, 2000);
        let code = key.code(&token);
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert!(key.code_matches(&token, &code));
        assert!(key.code_matches(&token, &format!("{} {}", &code[..3], &code[3..])));
        assert!(!key.code_matches(&token, ""));
        assert_ne!(
            LinkKey::new(b"k2").code(&token),
            code,
            "another key, another code"
        );
        assert_ne!(
            key.code(&key.seal(LETTER, 2, 2000)),
            code,
            "another version, another code"
        );
    }

    #[test]
    fn a_self_referral_form_token_is_never_a_link() {
        // The same key signs both, under different labels and shapes.
        let form = crate::app::self_referral::FormKey::new(b"k1").seal(1000, "ABCD2345", "b");
        assert_eq!(
            LinkKey::new(b"k1").open(&form, 1000),
            Err(LinkProblem::Forged)
        );
        assert!(!is_link_token(&form));
    }
}
