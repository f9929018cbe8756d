//! Where people live, as the reports count it: the postcode district of their address (`S1`),
//! and the local authority that district is listed under in the gateway's configuration
//! (`[[local_authorities]]`: ONS GSS code, name, districts). Pure.
//!
//! The reports keep only the district of an address, never the full postcode, so a local
//! authority is found from its districts; a district that crosses a boundary is listed under
//! the authority most of it lies in (docs/reports.md).

use serde::Deserialize;

/// A local authority and the postcode districts listed under it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalAuthority {
    /// Its ONS GSS code, e.g. `E08000019` (Sheffield).
    pub code: String,
    pub name: String,
    pub postcode_districts: Vec<String>,
}

/// The row of referrals whose district no listed authority holds (or whose address has none).
pub const NOT_LISTED: &str = "not-listed";

/// Whether `text` has the shape of the GSS code of a local authority: a county, unitary,
/// district or borough in England (E06 to E10), a Welsh principal area (W06), a Scottish council
/// area (S12) or a Northern Irish district (N09), then six digits.
pub fn is_local_authority_code(text: &str) -> bool {
    text.len() == 9
        && ["E06", "E07", "E08", "E09", "E10", "W06", "S12", "N09"]
            .iter()
            .any(|p| text.starts_with(p))
        && text[3..].bytes().all(|b| b.is_ascii_digit())
}

/// The code of the authority `district` is listed under, if any.
pub fn local_authority_of<'a>(district: &str, listed: &'a [LocalAuthority]) -> Option<&'a str> {
    listed
        .iter()
        .find(|la| {
            la.postcode_districts
                .iter()
                .any(|d| d.eq_ignore_ascii_case(district))
        })
        .map(|la| la.code.as_str())
}

/// What is wrong with the configured list, if anything: codes that are not GSS codes, a code
/// or a district listed twice, a district that is not one.
pub fn check(listed: &[LocalAuthority]) -> Result<(), String> {
    let mut codes = std::collections::HashSet::new();
    let mut districts = std::collections::HashMap::new();
    for la in listed {
        if !is_local_authority_code(&la.code) {
            return Err(format!(
                "local_authorities: '{}' is not a local authority's ONS code (e.g. E08000019)",
                la.code
            ));
        }
        if !codes.insert(la.code.as_str()) {
            return Err(format!("local_authorities: {} is listed twice", la.code));
        }
        if la.name.trim().is_empty() {
            return Err(format!("local_authorities: {} has no name", la.code));
        }
        for d in &la.postcode_districts {
            if !is_district(d) {
                return Err(format!(
                    "local_authorities: '{d}' (under {}) is not a postcode district",
                    la.code
                ));
            }
            if let Some(other) = districts.insert(d.to_ascii_uppercase(), la.code.as_str()) {
                return Err(format!(
                    "local_authorities: {d} is listed under both {other} and {}: list a district once, under the authority most of it lies in",
                    la.code
                ));
            }
        }
    }
    Ok(())
}

/// Whether `text` has the shape of a postcode district (an outward code: S1, S10, NE31, EC1A).
pub fn is_district(text: &str) -> bool {
    (2..=4).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric())
        && text.as_bytes()[0].is_ascii_alphabetic()
        && text.bytes().any(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Vec<LocalAuthority> {
        vec![LocalAuthority {
            code: "E08000019".into(),
            name: "Sheffield".into(),
            postcode_districts: vec!["S1".into(), "S10".into()],
        }]
    }

    #[test]
    fn a_district_is_found_under_its_authority() {
        assert_eq!(local_authority_of("S10", &listed()), Some("E08000019"));
        assert_eq!(local_authority_of("s1", &listed()), Some("E08000019"));
        assert_eq!(local_authority_of("S11", &listed()), None);
        assert_eq!(local_authority_of("unknown", &listed()), None);
    }

    #[test]
    fn codes_and_lists_are_checked() {
        for (code, ok) in [
            ("E08000019", true),
            ("E06000047", true),
            ("W06000015", true),
            ("E12000003", false), // a region, not an authority
            ("E0800001", false),
            ("e08000019", false),
            ("E0800001X", false),
        ] {
            assert_eq!(is_local_authority_code(code), ok, "{code}");
        }
        assert!(check(&listed()).is_ok());
        let mut twice = listed();
        twice.push(LocalAuthority {
            code: "E08000018".into(),
            name: "Rotherham".into(),
            postcode_districts: vec!["s10".into()],
        });
        assert!(check(&twice).unwrap_err().contains("listed under both"));
        let mut bad = listed();
        bad[0].postcode_districts.push("S1 1AA".into());
        assert!(check(&bad).unwrap_err().contains("not a postcode district"));
    }
}
