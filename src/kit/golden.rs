//! The golden outbound messages (fixtures/outbound) as a real sender's: the files hold every id
//! as `<id-N>`, every instant as `<instant>`, the gateway's base as `<base>` and an attachment's
//! bytes, size and hash as `<attachment>`, so that they compare across runs. Sent to a practice
//! system, each becomes a message of its own: fresh ids (the same placeholder, the same id), the
//! time now, and a real PDF with its size and SHA-1 hash, as FHIR's Attachment defines them.

use base64::Engine;
use serde_json::Value;

/// The base URL the filled messages name as the gateway's.
const BASE: &str = "https://work-health-gateway.example";

/// `template` (a golden file's text) as a message to send.
pub fn filled(template: &str) -> Result<Value, String> {
    let pdf = letter_pdf();
    let data = base64::engine::general_purpose::STANDARD.encode(&pdf);
    let hash = base64::engine::general_purpose::STANDARD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &pdf).as_ref(),
    );
    let now = chrono::Utc::now();
    let mut text = template
        .replace(
            "\"data\": \"<attachment>\"",
            &format!("\"data\": \"{data}\""),
        )
        // An STU3 Binary (ITK3) holds the bytes as `content`.
        .replace(
            "\"content\": \"<attachment>\"",
            &format!("\"content\": \"{data}\""),
        )
        .replace(
            "\"size\": \"<attachment>\"",
            &format!("\"size\": {}", pdf.len()),
        )
        .replace(
            "\"hash\": \"<attachment>\"",
            &format!("\"hash\": \"{hash}\""),
        )
        .replace(
            "<instant>",
            &now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
        .replace("<today>", &now.format("%Y-%m-%d").to_string())
        .replace("<base>", BASE);
    // Each `<id-N>`, highest N first (so `<id-1>` never matches inside `<id-12>`).
    let mut numbers: Vec<u32> = text
        .match_indices("<id-")
        .filter_map(|(at, _)| text[at + 4..].split('>').next()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    for n in numbers.into_iter().rev() {
        text = text.replace(&format!("<id-{n}>"), &uuid::Uuid::new_v4().to_string());
    }
    if let Some(left) = ["<id-", "<instant>", "<base>", "<attachment>", "<today>"]
        .into_iter()
        .find(|p| text.contains(p))
    {
        return Err(format!("the placeholder {left}… is left unfilled"));
    }
    serde_json::from_str(&text).map_err(|e| format!("not JSON once filled: {e}"))
}

/// A one-page PDF saying what it is: what a letter's attachment carries, in miniature.
fn letter_pdf() -> Vec<u8> {
    use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};
    let (catalog, pages, page, font, content) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
    );
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(pages);
    pdf.pages(pages).kids([page]).count(1);
    let mut p = pdf.page(page);
    p.media_box(Rect::new(0.0, 0.0, 595.0, 842.0))
        .parent(pages)
        .contents(content);
    p.resources().fonts().pair(Name(b"F1"), font);
    drop(p);
    pdf.type1_font(font).base_font(Name(b"Helvetica"));
    let mut text = Content::new();
    text.begin_text()
        .set_font(Name(b"F1"), 12.0)
        .next_line(72.0, 770.0)
        .show(Str(
            b"A conformance check's letter from whg conformance (synthetic).",
        ))
        .end_text();
    pdf.stream(content, &text.finish());
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_and_ids_stay_consistent() {
        let template = r#"{"id": "<id-1>", "x": "<id-12>", "ref": "<base>/fhir/Patient/<id-1>", "at": "<instant>", "attachment": {"data": "<attachment>", "size": "<attachment>", "hash": "<attachment>"}}"#;
        let v = filled(template).unwrap();
        let id = v["id"].as_str().unwrap();
        assert_eq!(v["ref"], format!("{BASE}/fhir/Patient/{id}"));
        assert_ne!(v["x"], v["id"]);
        assert!(v["attachment"]["size"].as_u64().unwrap() > 100);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["attachment"]["data"].as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"%PDF-"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(v["attachment"]["hash"].as_str().unwrap())
                .unwrap()
                .len(),
            20
        );
        assert!(
            filled(r#"{"a": "<attachment>"}"#).is_err(),
            "not in a known field"
        );
        assert!(
            filled(r#"{"div": "<div>narrative</div>"}"#).is_ok(),
            "markup is not a placeholder"
        );
        // Two fillings are two messages.
        assert_ne!(filled(template).unwrap()["id"], v["id"]);
    }
}
