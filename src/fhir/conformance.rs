//! The gateway's conformance resources, as `profiles/` publishes them (embedded by `build.rs`):
//! what `GET /fhir/StructureDefinition/{id}`, `/ValueSet/{id}`, `/CodeSystem/{id}` and
//! `/Measure/{id}` (the reports' definitions) serve, and
//! what an integrator's validator loads.

use std::sync::LazyLock;

use serde_json::Value;

include!(concat!(env!("OUT_DIR"), "/conformance.rs"));

/// The types served.
pub const TYPES: [&str; 4] = ["StructureDefinition", "ValueSet", "CodeSystem", "Measure"];

static PARSED: LazyLock<Vec<Value>> = LazyLock::new(|| {
    EMBEDDED
        .iter()
        .map(|(name, text)| {
            serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("profiles/{name} is not JSON: {e}"))
        })
        .collect()
});

/// Every published resource of `resource_type`, in file-name order.
pub fn all(resource_type: &str) -> impl Iterator<Item = &'static Value> {
    PARSED
        .iter()
        .filter(move |r| r["resourceType"] == resource_type)
}

/// The published resource of `resource_type` with `id`.
pub fn by_id(resource_type: &str, id: &str) -> Option<&'static Value> {
    all(resource_type).find(|r| r["id"] == id)
}

/// The published resources of `resource_type` with canonical `url` (`url|version` narrows to
/// that version).
pub fn by_url<'a>(
    resource_type: &'a str,
    canonical: &'a str,
) -> impl Iterator<Item = &'static Value> + 'a {
    let (url, version) = match canonical.split_once('|') {
        Some((u, v)) => (u, Some(v)),
        None => (canonical, None),
    };
    all(resource_type).filter(move |r| r["url"] == url && version.is_none_or(|v| r["version"] == v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_resource_is_served_under_its_id_and_url() {
        assert!(EMBEDDED.len() >= 70, "{}", EMBEDDED.len());
        for (name, _) in EMBEDDED {
            let (rt, rest) = name.split_once('-').unwrap();
            let id = rest.strip_suffix(".json").unwrap();
            let r = by_id(rt, id).unwrap_or_else(|| panic!("{name}: id must be {id}"));
            let url = r["url"].as_str().unwrap();
            assert_eq!(by_url(rt, url).count(), 1, "{name}");
            let version = r["version"].as_str().unwrap();
            assert_eq!(by_url(rt, &format!("{url}|{version}")).count(), 1);
            assert_eq!(by_url(rt, &format!("{url}|0.0.0-none")).count(), 0);
        }
    }
}
