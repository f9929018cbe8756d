//! `--target receiver`: the gateway's side of a letter, played towards the integrator's practice
//! system at `{url}/$process-message`. It sends the golden `servicerequest-response` messages
//! (fixtures/outbound/*.bars-response.json, the messages this gateway sends, byte for byte) and
//! checks the answers a BaRS receiver gives: 2xx for each (a resend too: the same message id is
//! the same letter), a response message naming the request when it answers with one, and a
//! refusal (4xx, which the gateway treats as final) for what is not a letter.

use serde_json::{Value, json};

use super::{Options, Run};

const BARS: &str =
    "BaRS receiver (docs/letters.md#delivery-over-fhir; BaRS messaging: servicerequest-response)";

pub async fn run(run: &mut Run, url: &str, options: &Options) -> Result<(), String> {
    let dir = options.fixtures.join("outbound");
    let mut golden: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| {
            format!(
                "cannot read {}: {e} (--fixtures names the fixtures directory)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bars-response.json"))
        .collect();
    golden.sort();
    if golden.is_empty() {
        return Err(format!(
            "{} holds no *.bars-response.json golden messages",
            dir.display()
        ));
    }
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let endpoint = format!("{url}/$process-message");

    run.check(
        "RX-META-01",
        "discovery",
        "the receiver's CapabilityStatement declares it receives messages",
        "FHIR R4 messaging: CapabilityStatement.messaging",
        async {
            let r = http
                .get(format!("{url}/metadata"))
                .header("accept", "application/fhir+json")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(super::skip(format!(
                    "GET /metadata answered {} (optional for a receiver)",
                    r.status()
                )));
            }
            let cs: Value = r.json().await.map_err(|e| format!("not JSON: {e}"))?;
            if cs["resourceType"] != "CapabilityStatement" {
                return Err(format!(
                    "GET /metadata is not a CapabilityStatement: {}",
                    cs["resourceType"]
                ));
            }
            let receives = cs["messaging"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|m| {
                    m["supportedMessage"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .any(|m| m["mode"] == "receiver");
            if receives {
                Ok(())
            } else {
                Err("no messaging.supportedMessage with mode receiver".into())
            }
        },
    )
    .await;

    for (n, path) in golden.iter().enumerate() {
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let message: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let header_id = message["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = format!("RX-LETTER-{:02}", n + 1);
        run.check(
            &id,
            "letters",
            format!("takes the golden letter {name}"),
            BARS,
            async {
                let r = post(&http, &endpoint, &text).await?;
                let status = r.0;
                if !(200..300).contains(&status) {
                    return Err(format!("answered {status}: {}", said(&r.1)));
                }
                answered_as_receiver(&r.1, &header_id)
            },
        )
        .await;
        if n == 0 {
            run.check(
                "RX-LETTER-RESEND",
                "letters",
                format!("takes {name} again (the gateway resends until acknowledged)"),
                BARS,
                async {
                    let (status, body) = post(&http, &endpoint, &text).await?;
                    if (200..300).contains(&status) {
                        Ok(())
                    } else {
                        Err(format!("a resend answered {status}: {}", said(&body)))
                    }
                },
            )
            .await;
        }
    }

    for (id, name, body) in [
        ("RX-REFUSE-01", "refuses a body that is not a message Bundle", json!({ "resourceType": "Bundle", "type": "collection", "entry": [] }).to_string()),
        ("RX-REFUSE-02", "refuses a message without its MessageHeader", json!({ "resourceType": "Bundle", "type": "message", "entry": [{ "resource": { "resourceType": "Patient" } }] }).to_string()),
        ("RX-REFUSE-03", "refuses a body that is not JSON", "this is not FHIR".to_string()),
    ] {
        run.check(id, "refusals", name, "BaRS receiver: an unprocessable message is refused with 4xx and an OperationOutcome, which the gateway treats as final (docs/letters.md)", async {
            let (status, body) = post(&http, &endpoint, &body).await?;
            if (400..500).contains(&status) {
                if body.is_null() || body["resourceType"] == "OperationOutcome" { Ok(()) } else { Err(format!("answered {status} with a {} rather than an OperationOutcome", body["resourceType"])) }
            } else {
                Err(format!("answered {status}: a receiver must refuse what it cannot file (4xx), or the gateway keeps resending"))
            }
        })
        .await;
    }
    Ok(())
}

async fn post(http: &reqwest::Client, endpoint: &str, body: &str) -> Result<(u16, Value), String> {
    let r = http
        .post(endpoint)
        .header("content-type", "application/fhir+json")
        .header("accept", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn said(body: &Value) -> String {
    body["issue"][0]["diagnostics"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string().chars().take(200).collect())
}

/// A 2xx answer with a body is a response message naming the request (or an OperationOutcome
/// without errors); an empty one is taken as accepted.
fn answered_as_receiver(body: &Value, request_header: &str) -> Result<(), String> {
    match body["resourceType"].as_str() {
        None => Ok(()),
        Some("Bundle") => {
            let header = &body["entry"][0]["resource"];
            if header["resourceType"] != "MessageHeader" {
                return Err(
                    "the answer is a Bundle whose first entry is not a MessageHeader".into(),
                );
            }
            if header["response"]["identifier"] != request_header {
                return Err(format!(
                    "the response message's MessageHeader.response.identifier is {}, not the request's MessageHeader id {request_header}",
                    header["response"]["identifier"]
                ));
            }
            match header["response"]["code"].as_str() {
                Some("ok") => Ok(()),
                other => Err(format!("the response message's code is {other:?}, not ok")),
            }
        }
        Some("OperationOutcome") => {
            let errors = body["issue"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["severity"] == "error" || i["severity"] == "fatal");
            if errors {
                Err(format!("a 2xx with error issues: {}", said(body)))
            } else {
                Ok(())
            }
        }
        Some(other) => Err(format!("answered with a {other}, not a response message")),
    }
}
