//! The FHIR RESTful interaction a request is (R4 http.html), from its method and route template,
//! for the request span's `fhir.interaction` and `fhir.resource_type`. Pure.

/// The interaction and resource type of `method` on the route `route` (as axum matched it, e.g.
/// `/fhir/Observation/{id}` or `/fhir/{type}/{id}`) at `path`, if it is a FHIR interaction.
pub fn of(method: &str, route: &str, path: &str) -> Option<(&'static str, Option<&'static str>)> {
    let resource = resource_type(path);
    let rest = route.strip_prefix("/fhir")?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let interaction = match (method, segments.as_slice()) {
        ("GET", ["metadata"]) => "capabilities",
        (_, [op]) if op.starts_with('$') => "operation",
        (_, [_, op]) | (_, [_, _, op]) if op.starts_with('$') => "operation",
        ("GET", [_]) | ("POST", [_, "_search"]) => "search-type",
        ("POST", [_]) => "create",
        ("GET", [_, _]) => "read",
        ("PUT", [_, _]) => "update",
        ("DELETE", [_, _]) => "delete",
        ("GET", [_, _, "_history", _]) => "vread",
        ("GET", [_, _, "_history"]) => "history-instance",
        _ => return None,
    };
    Some((interaction, resource))
}

/// The resource type a `/fhir/{Type}…` path names, as one of the types the gateway serves
/// (only those: the attribute's values stay a closed set).
fn resource_type(path: &str) -> Option<&'static str> {
    const SERVED: [&str; 12] = [
        "Patient",
        "ServiceRequest",
        "Consent",
        "Observation",
        "Task",
        "Communication",
        "DocumentReference",
        "Encounter",
        "EpisodeOfCare",
        "AuditEvent",
        "HealthcareService",
        "Bundle",
    ];
    let first = path.strip_prefix("/fhir/")?.split('/').next()?;
    SERVED.into_iter().find(|t| *t == first)
}

#[cfg(test)]
mod tests {
    use super::of;

    #[test]
    fn each_route_shape_is_its_interaction() {
        assert_eq!(
            of("GET", "/fhir/metadata", "/fhir/metadata"),
            Some(("capabilities", None))
        );
        assert_eq!(
            of("POST", "/fhir/$process-message", "/fhir/$process-message"),
            Some(("operation", None))
        );
        assert_eq!(
            of("POST", "/fhir/Observation", "/fhir/Observation"),
            Some(("create", Some("Observation")))
        );
        assert_eq!(
            of("GET", "/fhir/Observation", "/fhir/Observation"),
            Some(("search-type", Some("Observation")))
        );
        assert_eq!(
            of("GET", "/fhir/Task/{id}", "/fhir/Task/abc"),
            Some(("read", Some("Task")))
        );
        assert_eq!(
            of("PUT", "/fhir/Task/{id}", "/fhir/Task/abc"),
            Some(("update", Some("Task")))
        );
        assert_eq!(
            of(
                "POST",
                "/fhir/Consent/{id}/$withdraw",
                "/fhir/Consent/abc/$withdraw"
            ),
            Some(("operation", Some("Consent")))
        );
        assert_eq!(
            of(
                "GET",
                "/fhir/Patient/{id}/_history/{vid}",
                "/fhir/Patient/abc/_history/1"
            ),
            Some(("vread", Some("Patient")))
        );
    }

    #[test]
    fn routes_outside_fhir_are_no_interaction() {
        assert_eq!(of("POST", "/api/v1/referrals", "/api/v1/referrals"), None);
        assert_eq!(of("GET", "/metrics", "/metrics"), None);
        assert_eq!(of("PATCH", "/fhir/Task/{id}", "/fhir/Task/abc"), None);
        // A type the gateway does not serve is not named.
        assert_eq!(
            of("GET", "/fhir/{type}", "/fhir/Medication"),
            Some(("search-type", None))
        );
        assert_eq!(
            of("GET", "/fhir/{type}/{id}", "/fhir/ServiceRequest/abc"),
            Some(("read", Some("ServiceRequest")))
        );
    }
}
