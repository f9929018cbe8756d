//! What the gateway reads back from a stored Patient (UK Core) to address letters and route
//! them: NHS number, official name and date of birth.

use serde_json::Value;

use super::resource::identifier_value;
use super::systems::NHS_NUMBER;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demographics {
    pub nhs_number: Option<String>,
    /// Given names, space-separated.
    pub given: String,
    pub family: String,
    pub birth_date: Option<String>,
}

impl Demographics {
    /// "Given Family", if there is any name.
    pub fn full_name(&self) -> Option<String> {
        let name = format!("{} {}", self.given, self.family).trim().to_string();
        (!name.is_empty()).then_some(name)
    }
}

/// The Patient's NHS number, if it has been traced and verified (UK Core
/// NHSNumberVerificationStatus, England, `01` "Number present and verified"). A number a person
/// typed about themselves (`02`) is what they said, not who they are: anyone can type anyone's.
pub fn verified_nhs_number(patient: &Value) -> Option<&str> {
    patient["identifier"].as_array()?.iter().find_map(|id| {
        let verified = id["extension"].as_array().is_some_and(|ext| {
            ext.iter().any(|e| {
                e["url"] == super::systems::NHS_NUMBER_VERIFICATION_EXT
                    && e["valueCodeableConcept"]["coding"]
                        .as_array()
                        .is_some_and(|codings| {
                            codings.iter().any(|c| {
                                c["system"] == super::systems::NHS_NUMBER_VERIFICATION_ENGLAND
                                    && c["code"] == "01"
                            })
                        })
            })
        });
        (id["system"] == NHS_NUMBER && verified)
            .then(|| id["value"].as_str())
            .flatten()
    })
}

/// The person's demographics: the NHS number identifier, the first name (the mapping writes the
/// official name first) and the date of birth.
pub fn demographics(patient: &Value) -> Demographics {
    let name = &patient["name"][0];
    Demographics {
        nhs_number: identifier_value(patient, NHS_NUMBER).map(str::to_string),
        given: name["given"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        family: name["family"].as_str().unwrap_or_default().to_string(),
        birth_date: patient["birthDate"].as_str().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_demographics() {
        let p = json!({ "resourceType": "Patient",
            "identifier": [{ "system": "other", "value": "x" }, { "system": NHS_NUMBER, "value": "9990000018" }],
            "name": [{ "use": "official", "family": "Khan", "given": ["Aisha", "Noor"] }],
            "birthDate": "1984-03-09" });
        let d = demographics(&p);
        assert_eq!(d.nhs_number.as_deref(), Some("9990000018"));
        assert_eq!(d.full_name().as_deref(), Some("Aisha Noor Khan"));
        assert_eq!(d.birth_date.as_deref(), Some("1984-03-09"));
        assert_eq!(demographics(&json!({})), Demographics::default());
        assert_eq!(Demographics::default().full_name(), None);
    }
}
