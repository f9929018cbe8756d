//! Typed identifiers: the ids the store and the use cases pass around, each its own type, so a
//! patient's id is never taken for a letter's or a client's. Each is the plain id (a FHIR logical
//! id without its type, or a client's registered id); [`PatientId::reference`] makes a
//! reference of it.

use std::fmt;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

typed_id!(
    /// A person's Patient resource (the id, without `Patient/`).
    PatientId
);

typed_id!(
    /// A letter in the outbox: the id of its Communication.
    DeliveryId
);

typed_id!(
    /// A registered client system.
    ClientId
);

impl PatientId {
    /// `Patient/{id}`.
    pub fn reference(&self) -> String {
        format!("Patient/{}", self.0)
    }

    /// The person a `Patient/{id}` reference names (a bare id is taken as it is).
    pub fn of_reference(reference: &str) -> PatientId {
        PatientId::new(reference.trim_start_matches("Patient/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_text_and_a_patient_id_makes_its_reference() {
        let p = PatientId::of_reference("Patient/p1");
        assert_eq!(p, "p1");
        assert_eq!(p.reference(), "Patient/p1");
        assert_eq!(PatientId::of_reference("p1"), p);
        assert_eq!(DeliveryId::from("l1").to_string(), "l1");
        assert_eq!(
            serde_json::to_value(ClientId::new("practice:C88901")).unwrap(),
            serde_json::json!("practice:C88901")
        );
    }
}
