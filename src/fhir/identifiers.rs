//! Checks on UK identifiers: NHS numbers, ODS codes, professional registrations, SNOMED CT ids.

/// Why an NHS number is not valid, worded for the person who typed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number has exactly 10 digits (spaces between groups are allowed)")]
    Format,
    #[error("the check digit does not match (Modulus 11): check the number was copied correctly")]
    CheckDigit,
    #[error("an NHS number cannot be ten identical digits")]
    Repeated,
}

/// The value part of a `system|value` identifier (the form the gateway keeps organisations in).
pub fn value_part(system_value: &str) -> &str {
    system_value
        .rsplit_once('|')
        .map_or(system_value, |(_, v)| v)
}

/// A FHIR Reference by identifier to the `system|value` organisation.
pub fn identifier_reference(system_value: &str) -> serde_json::Value {
    let (system, value) = system_value.split_once('|').unwrap_or(("", system_value));
    serde_json::json!({ "identifier": { "system": system, "value": value } })
}

/// The `system|value` a FHIR Identifier holds (the inverse of [`identifier_reference`]'s): empty
/// parts where it has none.
pub fn system_value(identifier: &serde_json::Value) -> String {
    format!(
        "{}|{}",
        identifier["system"].as_str().unwrap_or_default(),
        identifier["value"].as_str().unwrap_or_default()
    )
}

/// Whether `resource` (an Organization, say) is identified as `system_value` among its
/// identifiers.
pub fn has_identifier(resource: &serde_json::Value, system_value: &str) -> bool {
    let (system, value) = system_value.split_once('|').unwrap_or(("", system_value));
    resource["identifier"].as_array().is_some_and(|ids| {
        ids.iter()
            .any(|i| i["system"] == system && i["value"] == value)
    })
}

/// Validates an NHS number by the NHS Data Dictionary's Modulus 11 rule and returns its canonical
/// 10-digit form. Spaces (as in "999 123 4567") are accepted and removed.
pub fn nhs_number(input: &str) -> Result<String, NhsNumberError> {
    let digits: String = input.chars().filter(|c| *c != ' ').collect();
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NhsNumberError::Format);
    }
    let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
    if d.iter().all(|x| *x == d[0]) {
        return Err(NhsNumberError::Repeated);
    }
    let sum: u32 = d[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(digit, weight)| digit * weight)
        .sum();
    let check = match 11 - (sum % 11) {
        11 => 0,
        10 => return Err(NhsNumberError::CheckDigit),
        c => c,
    };
    if check == d[9] {
        Ok(digits)
    } else {
        Err(NhsNumberError::CheckDigit)
    }
}

/// GP practice ODS codes: one letter and five digits (e.g. `A81001`).
pub fn is_gp_practice_ods(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 6 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit)
}

/// Any ODS organisation or site code: 3 to 9 upper-case letters and digits.
pub fn is_ods_code(code: &str) -> bool {
    (3..=9).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A BaRS endpoint, `system|value` ("the system and Service ID separated by a pipe", e.g.
/// `https://fhir.nhs.uk/Id/dos-service-id|2000100001`): an http(s) system of printable
/// characters (at most 200) and an id of 1 to 64 letters, digits, `-` and `.`. Anything else is
/// not an endpoint the gateway repeats or addresses to.
pub fn bars_endpoint(text: &str) -> Option<(&str, &str)> {
    let (system, value) = text.split_once('|')?;
    let system_ok = (system.starts_with("https://") || system.starts_with("http://"))
        && system.len() <= 200
        && system.bytes().all(|b| b.is_ascii_graphic() && b != b'|');
    let value_ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (system_ok && value_ok).then_some((system, value))
}

/// Checks a registration number against its register's published format. Returns a description of
/// the expected format when it does not match.
pub fn registration_number(register: &str, number: &str) -> Result<(), &'static str> {
    let b = number.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let ok = match register {
        // GMC: 7 digits.
        "gmc" => b.len() == 7 && digits(b),
        // NMC PIN: 2 digits, a letter, 4 digits, a letter (e.g. 12A3456E).
        "nmc" => {
            b.len() == 8
                && digits(&b[0..2])
                && b[2].is_ascii_uppercase()
                && digits(&b[3..7])
                && b[7].is_ascii_uppercase()
        }
        // HCPC: 2-letter profession prefix then up to 6 digits (e.g. PH123456, OT12345).
        "hcpc" => {
            (4..=8).contains(&b.len())
                && b[..2].iter().all(u8::is_ascii_uppercase)
                && digits(&b[2..])
        }
        // GPhC: 7 digits starting with 2.
        "gphc" => b.len() == 7 && b[0] == b'2' && digits(b),
        _ => return Err("a known register (gmc, nmc, hcpc, gphc)"),
    };
    if ok {
        Ok(())
    } else {
        Err(match register {
            "gmc" => "7 digits",
            "nmc" => "2 digits, a letter, 4 digits and a letter (e.g. 12A3456E)",
            "hcpc" => "2 letters then 2 to 6 digits (e.g. PH123456)",
            _ => "7 digits starting with 2",
        })
    }
}

/// SNOMED CT identifiers carry a Verhoeff check digit and a partition identifier; a concept id has
/// partition `00` or `10`. This catches mistyped codes without a terminology server.
pub fn is_snomed_concept_id(code: &str) -> bool {
    if !(6..=18).contains(&code.len())
        || !code.bytes().all(|b| b.is_ascii_digit())
        || code.starts_with('0')
    {
        return false;
    }
    let partition = &code[code.len() - 3..code.len() - 1];
    (partition == "00" || partition == "10") && verhoeff_valid(code)
}

fn verhoeff_valid(num: &str) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut c = 0u8;
    for (i, b) in num.bytes().rev().enumerate() {
        c = D[c as usize][P[i % 8][(b - b'0') as usize] as usize];
    }
    c == 0
}

/// UK postcode shape (outward and inward code), upper case, with or without the space.
pub fn is_uk_postcode(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    let b = compact.as_bytes();
    if !(5..=7).contains(&b.len()) || s.len() > compact.len() + 1 {
        return false;
    }
    let (outward, inward) = b.split_at(b.len() - 3);
    let inward_ok = inward[0].is_ascii_digit() && inward[1..].iter().all(u8::is_ascii_uppercase);
    let outward_ok = outward[0].is_ascii_uppercase()
        && outward.iter().any(u8::is_ascii_digit)
        && outward
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    inward_ok && outward_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_value_pairs() {
        let ods = "https://fhir.nhs.uk/Id/ods-organization-code|C88901";
        assert_eq!(value_part(ods), "C88901");
        assert_eq!(value_part("C88901"), "C88901");
        assert_eq!(
            identifier_reference(ods),
            serde_json::json!({ "identifier": { "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "C88901" } })
        );
    }

    #[test]
    fn nhs_numbers_from_published_test_vectors() {
        for ok in [
            "4010232137",
            "9111231114",
            "9111231122",
            "9111231130",
            "9111231149",
            "9111231157",
            "9912003888",
            "9000000009",
            "999 000 0018",
        ] {
            assert!(nhs_number(ok).is_ok(), "{ok} should be valid");
        }
        assert_eq!(nhs_number("999 000 0018").unwrap(), "9990000018");
        for bad in [
            "9111111111",
            "9111111112",
            "9111111113",
            "9111111114",
            "1000000000",
            "3478526985",
            "4857773456",
        ] {
            assert_eq!(nhs_number(bad), Err(NhsNumberError::CheckDigit), "{bad}");
        }
        assert_eq!(
            nhs_number("1234567890"),
            Err(NhsNumberError::CheckDigit),
            "check value 10 is never issued"
        );
        assert_eq!(nhs_number("0000000000"), Err(NhsNumberError::Repeated));
        assert_eq!(nhs_number("99900000"), Err(NhsNumberError::Format));
        assert_eq!(nhs_number("99900000AB"), Err(NhsNumberError::Format));
        assert_eq!(nhs_number(""), Err(NhsNumberError::Format));
    }

    #[test]
    fn every_single_digit_change_is_caught() {
        // Modulus 11 detects every single-digit substitution: exhaustively over one valid number.
        let valid = "9990000018";
        for pos in 0..10 {
            for d in b'0'..=b'9' {
                let mut s = valid.as_bytes().to_vec();
                if s[pos] == d {
                    continue;
                }
                s[pos] = d;
                let s = String::from_utf8(s).unwrap();
                assert!(nhs_number(&s).is_err(), "{s} should fail");
            }
        }
    }

    #[test]
    fn ods_codes() {
        assert!(is_gp_practice_ods("A81001"));
        assert!(!is_gp_practice_ods("a81001"));
        assert!(!is_gp_practice_ods("A8100"));
        assert!(!is_gp_practice_ods("RY6"));
        assert!(is_ods_code("RY6") && is_ods_code("FQW30") && is_ods_code("A81001"));
        assert!(!is_ods_code("ry6") && !is_ods_code("AB") && !is_ods_code("A-1001"));
    }

    #[test]
    fn registrations() {
        assert!(registration_number("gmc", "1234567").is_ok());
        assert!(registration_number("gmc", "123456").is_err());
        assert!(registration_number("nmc", "12A3456E").is_ok());
        assert!(registration_number("nmc", "12A3456").is_err());
        assert!(registration_number("hcpc", "PH123456").is_ok());
        assert!(registration_number("hcpc", "OT12345").is_ok());
        assert!(registration_number("hcpc", "P123456").is_err());
        assert!(registration_number("gphc", "2012345").is_ok());
        assert!(registration_number("gphc", "3012345").is_err());
        assert!(registration_number("bacp", "1").is_err());
    }

    #[test]
    fn snomed_ids() {
        for ok in [
            "35489007",
            "3457005",
            "306098008",
            "108161000000109",
            "751601000000107",
            "69896004",
            "279039007",
        ] {
            assert!(is_snomed_concept_id(ok), "{ok}");
        }
        for bad in [
            "35489008",
            "3457006",
            "123",
            "0123456",
            "35489A07",
            "108161000000119",
        ] {
            assert!(!is_snomed_concept_id(bad), "{bad}");
        }
    }

    #[test]
    fn postcodes() {
        for ok in [
            "S1 2HE", "S12HE", "DH1 3LE", "NE1 4LP", "EC1A 1BB", "W1A 0AX", "ZZ99 3VZ", "CA1 1RR",
        ] {
            assert!(is_uk_postcode(ok), "{ok}");
        }
        for bad in ["s1 2he", "S1  2HE", "12345", "S1 2H", "SS", "S1 2HEE"] {
            assert!(!is_uk_postcode(bad), "{bad}");
        }
    }
}
