//! Generic operations on FHIR resources held as JSON: strict parsing (through fhirbolt),
//! reference rewriting and small accessors. fhirbolt stays behind this module so it can be swapped.

use std::collections::HashMap;

use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
use serde_json::Value;

/// Parses `bytes` as an R4 resource in fhirbolt's strict mode: unknown elements, wrong types and
/// missing mandatory elements are errors. Returns fhirbolt's message (with line and column).
pub fn parse_strict(bytes: &[u8]) -> Result<(), String> {
    read_strict(|config| fhirbolt::json::from_slice::<Resource>(bytes, Some(config))).map(|_| ())
}

/// Runs a fhirbolt reader in strict mode. fhirbolt 0.4 (unmaintained) panics on some malformed
/// input, e.g. an empty array where a primitive is expected. Contained here, that is a parse
/// error, not a crashed request.
fn read_strict<E: std::fmt::Display>(
    read: impl FnOnce(DeserializationConfig) -> Result<Resource, E> + std::panic::UnwindSafe,
) -> Result<Resource, String> {
    let config = DeserializationConfig {
        mode: DeserializationMode::Strict,
    };
    match std::panic::catch_unwind(|| read(config)) {
        Ok(parsed) => parsed.map_err(|e| e.to_string()),
        Err(_) => {
            Err("an element has a value of an impossible shape (such as an empty array)".into())
        }
    }
}

/// An R4 resource in FHIR XML as FHIR JSON (R4 xml.html and json.html are two forms of one
/// model). Read strictly, as JSON bodies are: what XML cannot say in JSON is an error. quick-xml,
/// under fhirbolt, expands no entities beyond XML's five, so a DTD cannot make a payload grow.
pub fn xml_to_json(bytes: &[u8]) -> Result<Value, String> {
    let resource =
        read_strict(|config| fhirbolt::xml::from_slice::<Resource>(bytes, Some(config)))?;
    fhirbolt::json::to_json_value(resource, None).map_err(|e| e.to_string())
}

/// A resource held as FHIR JSON, in FHIR XML. Fails only for JSON fhirbolt does not read strictly,
/// which the gateway never emits (every emitted resource is checked by the tests).
pub fn json_to_xml(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let resource =
        read_strict(|config| fhirbolt::json::from_slice::<Resource>(bytes, Some(config)))?;
    fhirbolt::xml::to_vec(&resource, None).map_err(|e| e.to_string())
}

/// Breaches of the FHIR JSON rules that parsers let through: empty arrays, objects or strings,
/// and nulls, each with the FHIRPath-like location of the offending element.
pub fn json_rule_violations(value: &Value, at: &str, out: &mut Vec<(String, &'static str)>) {
    match value {
        Value::Null => out.push((
            at.to_string(),
            "null is not allowed in FHIR JSON: leave the element out",
        )),
        Value::String(s) if s.trim().is_empty() => out.push((
            at.to_string(),
            "an empty or blank string is not allowed in FHIR JSON: leave the element out",
        )),
        Value::Array(items) if items.is_empty() => out.push((
            at.to_string(),
            "an empty array is not allowed in FHIR JSON: leave the element out",
        )),
        Value::Object(map) if map.is_empty() => out.push((
            at.to_string(),
            "an empty object is not allowed in FHIR JSON: leave the element out",
        )),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                json_rule_violations(item, &format!("{at}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, child) in map {
                let path = format!("{at}.{k}");
                // Narrative is XHTML (R4 narrative.html: "The XHTML ... SHALL be well-formed",
                // a `div` in the XHTML namespace): what is not is refused on the way in, so
                // nothing stored breaks a resource written as XML.
                if k == "div"
                    && let Value::String(div) = child
                    && !is_xhtml_div(div)
                {
                    out.push((path, "the narrative must be a well-formed XHTML <div xmlns=\"http://www.w3.org/1999/xhtml\">: leave text out, or escape < and & in it"));
                    continue;
                }
                json_rule_violations(child, &path, out);
            }
        }
        _ => {}
    }
}

/// Whether `div` is one well-formed XHTML `div` element (R4 narrative.html, txt-1's base).
pub fn is_xhtml_div(div: &str) -> bool {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(div);
    let mut depth = 0usize;
    let mut roots = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                if depth == 0 {
                    roots += 1;
                    let xhtml = e.attributes().flatten().any(|a| {
                        a.key.as_ref() == b"xmlns" && &*a.value == b"http://www.w3.org/1999/xhtml"
                    });
                    if e.name().as_ref() != b"div" || !xhtml {
                        return false;
                    }
                }
                depth += 1;
            }
            Ok(Event::End(_)) if depth > 0 => depth -= 1,
            Ok(Event::End(_)) => return false,
            Ok(Event::Empty(e)) if depth == 0 => {
                roots += 1;
                if e.name().as_ref() != b"div" {
                    return false;
                }
            }
            Ok(Event::Text(t)) if depth == 0 && !t.iter().all(u8::is_ascii_whitespace) => {
                return false;
            }
            Ok(Event::DocType(_)) | Ok(Event::PI(_)) => return false,
            Ok(Event::Eof) => return depth == 0 && roots == 1,
            Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// What FHIR XML must be before fhirbolt reads it: nested at most `depth_limit` elements deep
/// (fhirbolt's reader recurses once per level with no limit of its own, and a stack overflow is no
/// panic to catch), and with no attribute FHIR XML does not define outside the narrative (R4
/// xml.html: `value`, `id`, an extension's `url`, and the namespace; fhirbolt would drop an
/// unknown one silently, where JSON's strict reading refuses an unknown element). Unreadable XML
/// passes: fhirbolt says what is wrong with it.
pub fn xml_precheck(xml: &[u8], depth_limit: usize) -> Result<(), String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    // The depth of the narrative's div while inside it: XHTML, whose attributes are its own.
    let mut narrative_at: Option<usize> = None;
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(Event::Eof) | Err(_) => return Ok(()),
            Ok(event) => event,
        };
        let element = match &event {
            Event::Start(e) | Event::Empty(e) => Some(e.clone()),
            _ => None,
        };
        if let Some(e) = element {
            if narrative_at.is_none() && e.local_name().as_ref() == b"div" {
                narrative_at = Some(depth);
            }
            if narrative_at.is_none() {
                for attribute in e.attributes().flatten() {
                    let key = attribute.key.as_ref();
                    if !matches!(key, b"value" | b"id" | b"url" | b"xmlns")
                        && !key.starts_with(b"xmlns:")
                    {
                        return Err(format!(
                            "<{}> has an attribute '{}' that FHIR XML does not define",
                            String::from_utf8_lossy(e.name().as_ref()),
                            String::from_utf8_lossy(key)
                        ));
                    }
                }
            }
        }
        match event {
            Event::Start(_) => {
                depth += 1;
                if depth > depth_limit {
                    return Err(format!("the XML nests deeper than {depth_limit} levels"));
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if narrative_at == Some(depth) {
                    narrative_at = None;
                }
            }
            Event::Empty(_) if narrative_at == Some(depth) => narrative_at = None,
            _ => {}
        }
        buf.clear();
    }
}

/// Strict-parses a resource already held as JSON.
pub fn check_strict(resource: &Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(resource).map_err(|e| e.to_string())?;
    parse_strict(&bytes)
}

pub fn resource_type(resource: &Value) -> Option<&str> {
    resource.get("resourceType").and_then(Value::as_str)
}

/// Replaces every `reference` whose value is a key of `targets` (e.g. `urn:uuid:…` fullUrls inside
/// a Bundle) with the mapped value (e.g. `Patient/…`). Walks the whole resource, so references in
/// extensions and nested elements are rewritten too.
pub fn rewrite_references(value: &mut Value, targets: &HashMap<String, String>) {
    rewrite_strings(value, "reference", &|r| targets.get(r).cloned());
}

/// Replaces the string value of every element named `key`, anywhere in the resource, where
/// `replace` returns a new value.
pub fn rewrite_strings(value: &mut Value, key: &str, replace: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match child {
                    Value::String(s) if k == key => {
                        if let Some(new) = replace(s) {
                            *s = new;
                        }
                    }
                    _ => rewrite_strings(child, key, replace),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| rewrite_strings(v, key, replace)),
        _ => {}
    }
}

/// Every `reference` string in a resource, in document order.
pub fn references(value: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    collect_references(value, &mut out);
    out
}

fn collect_references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("reference", Value::String(s)) => out.push(s),
                    _ => collect_references(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

/// Sets `meta.profile` to contain `profile` (kept first) without dropping profiles already claimed.
pub fn claim_profile(resource: &mut Value, profile: &str) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let profiles = meta
        .entry("profile")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = profiles
        && !list.iter().any(|p| p.as_str() == Some(profile))
    {
        list.insert(0, Value::String(profile.to_string()));
    }
}

/// Claims the resource type's UK Core profile, if UK Core has one (see [`claim_profile`]).
pub fn claim_uk_core(resource: &mut Value) {
    if let Some(profile) = resource["resourceType"]
        .as_str()
        .and_then(super::systems::profile::uk_core_for)
    {
        claim_profile(resource, profile);
    }
}

/// Sets the server-assigned id and version metadata.
pub fn stamp(resource: &mut Value, id: &str, version_id: i64, last_updated: &str) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    obj.insert("id".into(), Value::String(id.to_string()));
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("versionId".into(), Value::String(version_id.to_string()));
        meta.insert(
            "lastUpdated".into(),
            Value::String(last_updated.to_string()),
        );
    }
}

/// First identifier of `resource` in `system`.
pub fn identifier_value<'a>(resource: &'a Value, system: &str) -> Option<&'a str> {
    resource
        .get("identifier")?
        .as_array()?
        .iter()
        .find_map(|i| {
            (i.get("system")?.as_str()? == system)
                .then(|| i.get("value")?.as_str())
                .flatten()
        })
}

/// The deepest nesting of arrays and objects in `json` (strings skipped), stopping once it
/// passes `limit`. Deep nesting costs every recursive walk of a document: the HTTP bodies and
/// the lines `whg import` reads are both checked with it before they are parsed.
pub fn nesting_exceeds(json: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a":[{"b":"[[[[[[["}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!nesting_exceeds(br#"{"a":"\"[[[[[["}"#, 1));
        assert!(nesting_exceeds(&b"[".repeat(10_000), 64));
    }

    #[test]
    fn narrative_is_one_well_formed_xhtml_div() {
        let ok = [
            r#"<div xmlns="http://www.w3.org/1999/xhtml">Plain</div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>One &amp; <b>two</b></p></div>"#,
            r#"  <div xmlns="http://www.w3.org/1999/xhtml"><br/></div>  "#,
        ];
        for d in ok {
            assert!(is_xhtml_div(d), "{d}");
        }
        let bad = [
            r#"<div xmlns="http://www.w3.org/1999/xhtml">a < b</div>"#,
            r#"<div>no namespace</div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>open</div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml">one</div><div xmlns="http://www.w3.org/1999/xhtml">two</div>"#,
            r#"<p xmlns="http://www.w3.org/1999/xhtml">not a div</p>"#,
            r#"text <div xmlns="http://www.w3.org/1999/xhtml">x</div>"#,
            "</x>",
            "",
        ];
        for d in bad {
            assert!(!is_xhtml_div(d), "{d}");
        }
    }

    #[test]
    fn xml_is_prechecked_for_depth_and_undefined_attributes() {
        let fhir = |body: &str| format!(r#"<Patient xmlns="http://hl7.org/fhir">{body}</Patient>"#);
        assert!(
            xml_precheck(
                fhir(r#"<id value="a"/><extension url="u"><valueString value="v"/></extension>"#)
                    .as_bytes(),
                10
            )
            .is_ok()
        );
        // The narrative's XHTML has attributes of its own.
        assert!(xml_precheck(fhir(r#"<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p class="x" style="y">t</p></div></text><active value="true"/>"#).as_bytes(), 10).is_ok());
        let err = xml_precheck(
            fhir(r#"<active value="true" hidden="yes"/>"#).as_bytes(),
            10,
        )
        .unwrap_err();
        assert!(err.contains("'hidden'"), "{err}");
        // After the narrative, FHIR's rules apply again.
        let err = xml_precheck(fhir(r#"<text><div xmlns="http://www.w3.org/1999/xhtml"/></text><active value="true" x="1"/>"#).as_bytes(), 10).unwrap_err();
        assert!(err.contains("'x'"), "{err}");
        let deep = fhir(&format!(
            "{}{}",
            "<extension url=\"a\">".repeat(12),
            "</extension>".repeat(12)
        ));
        assert!(
            xml_precheck(deep.as_bytes(), 10)
                .unwrap_err()
                .contains("deeper than 10")
        );
        assert!(xml_precheck(deep.as_bytes(), 20).is_ok());
        // Unreadable XML is fhirbolt's to describe.
        assert!(xml_precheck(b"<Patient", 10).is_ok());
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_nested_references_only_where_mapped() {
        let mut sr = json!({
            "resourceType": "ServiceRequest",
            "subject": {"reference": "urn:uuid:p"},
            "performer": [{"reference": "urn:uuid:o"}, {"reference": "Organization/kept"}],
            "extension": [{"url": "x", "valueReference": {"reference": "urn:uuid:p"}}],
            "note": [{"text": "urn:uuid:p"}]
        });
        let map = HashMap::from([
            ("urn:uuid:p".to_string(), "Patient/1".to_string()),
            ("urn:uuid:o".to_string(), "Organization/2".to_string()),
        ]);
        rewrite_references(&mut sr, &map);
        assert_eq!(sr["subject"]["reference"], "Patient/1");
        assert_eq!(sr["performer"][0]["reference"], "Organization/2");
        assert_eq!(sr["performer"][1]["reference"], "Organization/kept");
        assert_eq!(
            sr["extension"][0]["valueReference"]["reference"],
            "Patient/1"
        );
        assert_eq!(
            sr["note"][0]["text"], "urn:uuid:p",
            "text that merely looks like a reference is untouched"
        );
        assert_eq!(
            references(&sr),
            vec![
                "Patient/1",
                "Organization/2",
                "Organization/kept",
                "Patient/1"
            ]
        );
    }

    #[test]
    fn strict_parse_rejects_unknown_elements_and_accepts_valid() {
        assert!(check_strict(&json!({"resourceType": "Patient", "gender": "female"})).is_ok());
        let err = check_strict(&json!({"resourceType": "Patient", "sex": "female"})).unwrap_err();
        assert!(err.contains("sex"), "{err}");
        assert!(check_strict(&json!({"resourceType": "Nonsense"})).is_err());
    }

    #[test]
    fn malformed_shapes_that_panic_fhirbolt_are_errors() {
        for body in [
            r#"{"resourceType":"Patient","id":[]}"#,
            r#"{"resourceType":"Patient","meta":{"profile":[]}}"#,
        ] {
            assert!(parse_strict(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn json_rules_locate_each_breach() {
        let mut out = Vec::new();
        let v = json!({"resourceType": "Patient", "id": [], "name": [{"given": ["", "A"]}], "x": null, "meta": {}});
        json_rule_violations(&v, "Patient", &mut out);
        let paths: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths.len(), 4, "{paths:?}");
        assert!(paths.contains(&"Patient.name[0].given[0]"));
        assert!(paths.contains(&"Patient.id"));
    }

    #[test]
    fn claim_profile_keeps_existing() {
        let mut r = json!({"resourceType": "Patient", "meta": {"profile": ["a"]}});
        claim_profile(&mut r, "b");
        claim_profile(&mut r, "b");
        assert_eq!(r["meta"]["profile"], json!(["b", "a"]));
    }
}
