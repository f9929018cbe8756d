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
    let golden = golden_files(&options.fixtures, ".bars-response.json")?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let endpoint = format!("{url}/$process-message");
    let token = options.receiver_token.as_deref();

    run.check(
        "RX-META-01",
        "discovery",
        "the receiver's CapabilityStatement declares it receives messages",
        "FHIR R4 messaging: CapabilityStatement.messaging",
        async {
            let mut request = http
                .get(format!("{url}/metadata"))
                .header("accept", "application/fhir+json");
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let r = request.send().await.map_err(|e| e.to_string())?;
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
        let name = file_name(path);
        let template = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let message =
            super::golden::filled(&template).map_err(|e| format!("{}: {e}", path.display()))?;
        let text = message.to_string();
        let header_id = message["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let bundle_id = message["id"].as_str().unwrap_or_default().to_string();
        let id = format!("RX-LETTER-{:02}", n + 1);
        run.check(
            &id,
            "letters",
            format!("takes the golden letter {name}"),
            BARS,
            async {
                let (status, body) = post(&http, &endpoint, token, &text).await?;
                if !(200..300).contains(&status) {
                    return Err(format!("answered {status}: {}", said(&body)));
                }
                answered_as_receiver(&body, &[&header_id, &bundle_id])
            },
        )
        .await;
        if n == 0 {
            run.check(
                "RX-LETTER-RESEND",
                "letters",
                format!(
                    "takes {name} again, the same message (the gateway resends until acknowledged)"
                ),
                BARS,
                async {
                    let (status, body) = post(&http, &endpoint, token, &text).await?;
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
        run.check(id, "refusals", name, "BaRS receiver: an unprocessable message is refused with a 4xx and an OperationOutcome; the gateway takes a 4xx other than 401, 408, 425 and 429 as final (src/delivery/fhir.rs)", async {
            let (status, body) = post(&http, &endpoint, token, &body).await?;
            match status {
                401 | 408 | 425 | 429 => Err(format!("answered {status}, which the gateway retries: a refusal of what cannot be filed is final (400, 422…)")),
                400..=499 if body["resourceType"] == "OperationOutcome" => Ok(()),
                400..=499 => Err(format!("answered {status} without an OperationOutcome saying why")),
                _ => Err(format!("answered {status}: a receiver must refuse what it cannot file (4xx), or the gateway keeps resending")),
            }
        })
        .await;
    }
    Ok(())
}

/// The golden files in `fixtures/outbound` whose names end with `suffix`, sorted.
fn golden_files(
    fixtures: &std::path::Path,
    suffix: &str,
) -> Result<Vec<std::path::PathBuf>, String> {
    let dir = fixtures.join("outbound");
    let mut golden: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| {
            format!(
                "cannot read {}: {e} (--fixtures names the fixtures directory)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    golden.sort();
    if golden.is_empty() {
        return Err(format!(
            "{} holds no *{suffix} golden messages",
            dir.display()
        ));
    }
    Ok(golden)
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default()
}

async fn post(
    http: &reqwest::Client,
    endpoint: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, Value), String> {
    let mut request = http
        .post(endpoint)
        .header("content-type", "application/fhir+json")
        .header("accept", "application/fhir+json")
        .body(body.to_string());
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request
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

/// A 2xx answer with a body is a response message naming the request (FHIR R4 names its
/// MessageHeader id in `response.identifier`; BaRS Core, its Bundle id: either is taken) with
/// code `ok`, or an OperationOutcome without errors; an empty one is taken as accepted.
fn answered_as_receiver(body: &Value, request: &[&str]) -> Result<(), String> {
    match body["resourceType"].as_str() {
        None => Ok(()),
        Some("Bundle") => {
            let header = &body["entry"][0]["resource"];
            if header["resourceType"] != "MessageHeader" {
                return Err(
                    "the answer is a Bundle whose first entry is not a MessageHeader".into(),
                );
            }
            let answers = header["response"]["identifier"]
                .as_str()
                .unwrap_or_default();
            if !request.contains(&answers) {
                return Err(format!(
                    "the response message's MessageHeader.response.identifier is {:?}, neither the request's MessageHeader id nor its Bundle id ({request:?})",
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

const ITK3: &str = "GP Connect Send Document over MESH: ITK3 acknowledgements 20013 and 30001, negative codes for what is not filed (docs/letters.md#delivery-over-mesh; ITK3 Messaging Distribution: response codes)";

/// `--target receiver --mesh-to MAILBOX`: the golden ITK3 letters (fixtures/outbound/*.itk3.json,
/// each with a fresh MessageHeader id so its acknowledgements are this run's) sent to the
/// practice system's mailbox from the gateway's own, and its acknowledgements read back: 20013
/// and 30001 for each letter, and a negative one for a message that is no letter.
pub async fn run_mesh(
    run: &mut Run,
    mesh: &super::MeshTarget,
    options: &Options,
) -> Result<(), String> {
    use whg::delivery::mesh::{AckKind, MeshClient, Reading, reading};
    let from = mesh
        .from
        .as_ref()
        .ok_or("a receiver over MESH is sent to from the gateway's [mesh] mailbox: give --config with a [mesh] table")?;
    let client = MeshClient::new(from, std::time::Duration::from_secs(30))?;
    let golden = golden_files(&options.fixtures, ".itk3.json")?;
    // What each sent message's acknowledgements must answer: its MessageHeader id.
    let mut sent: Vec<(String, String, bool)> = Vec::new();
    for (n, path) in golden.iter().enumerate() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let message =
            super::golden::filled(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let header = message["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let id = format!("RX-MESH-SEND-{:02}", n + 1);
        let mut ok = false;
        run.check(
            &id,
            "mesh",
            format!("MESH takes the golden letter {name} for {}", mesh.to),
            ITK3,
            async {
                match client
                    .send(
                        &mesh.to,
                        "Feedback from a work and health service",
                        &header,
                        &message,
                    )
                    .await
                {
                    whg::delivery::Outcome::Sent { .. } => {
                        ok = true;
                        Ok(())
                    }
                    other => Err(format!("MESH did not take it: {other:?}")),
                }
            },
        )
        .await;
        if ok {
            sent.push((name, header, true));
        }
    }
    // A message that is no letter: an ITK3 Bundle without its document.
    let mut broken =
        super::golden::filled(&std::fs::read_to_string(&golden[0]).map_err(|e| e.to_string())?)?;
    let header = uuid::Uuid::new_v4().to_string();
    broken["id"] = json!(uuid::Uuid::new_v4().to_string());
    broken["entry"][0]["resource"]["id"] = json!(header);
    if let Some(entries) = broken["entry"].as_array_mut() {
        entries.retain(|e| e["resource"]["resourceType"] == "MessageHeader");
    }
    if let whg::delivery::Outcome::Sent { .. } = client
        .send(
            &mesh.to,
            "Not a letter (conformance check)",
            &header,
            &broken,
        )
        .await
    {
        sent.push(("a message without its document".into(), header, false));
    }

    // The acknowledgements, as they come: read from the gateway's mailbox until each letter has
    // its two (or the broken one its negative) or the wait is over.
    let mut acks: std::collections::HashMap<String, Vec<(AckKind, String)>> =
        std::collections::HashMap::new();
    let until = std::time::Instant::now() + mesh.ack_wait;
    let complete = |acks: &std::collections::HashMap<String, Vec<(AckKind, String)>>| {
        sent.iter().all(|(_, h, letter)| {
            let got = acks.get(h).map(Vec::as_slice).unwrap_or_default();
            if *letter {
                got.iter().any(|(k, _)| *k == AckKind::Received)
                    && got.iter().any(|(k, _)| *k == AckKind::Accepted)
                    || got.iter().any(|(k, _)| *k == AckKind::Negative)
            } else {
                !got.is_empty()
            }
        })
    };
    while !complete(&acks) && std::time::Instant::now() < until {
        for id in client.inbox().await.unwrap_or_default() {
            let Ok(inbound) = client.download(&id, 1 << 20).await else {
                continue;
            };
            if let Reading::Ack(ack) = reading(&inbound)
                && sent.iter().any(|(_, h, _)| *h == ack.answers)
            {
                acks.entry(ack.answers.clone())
                    .or_default()
                    .push((ack.kind, format!("{} {}", ack.code, ack.detail)));
                let _ = client.acknowledge(&id).await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let wait = mesh.ack_wait.as_secs();
    for (n, (name, header, letter)) in sent.iter().enumerate() {
        let got = acks.get(header).cloned().unwrap_or_default();
        let said = got
            .iter()
            .map(|(_, d)| d.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if *letter {
            let id = format!("RX-MESH-20013-{:02}", n + 1);
            run.check(
                &id,
                "mesh",
                format!("{name}: an infrastructure acknowledgement (20013)"),
                ITK3,
                async {
                    if got.iter().any(|(k, _)| *k == AckKind::Received) {
                        Ok(())
                    } else if said.is_empty() {
                        Err(format!("none within {wait} s"))
                    } else {
                        Err(format!("answered {said}"))
                    }
                },
            )
            .await;
            let id = format!("RX-MESH-30001-{:02}", n + 1);
            run.check(
                &id,
                "mesh",
                format!("{name}: a business acknowledgement (30001), nothing negative"),
                ITK3,
                async {
                    let negative = got.iter().any(|(k, _)| *k == AckKind::Negative);
                    if got.iter().any(|(k, _)| *k == AckKind::Accepted) && !negative {
                        Ok(())
                    } else if said.is_empty() {
                        Err(format!("none within {wait} s"))
                    } else {
                        Err(format!("answered {said}"))
                    }
                },
            )
            .await;
        } else {
            run.check(
                "RX-MESH-NEGATIVE",
                "mesh",
                "a message without its document gets a negative acknowledgement, never 30001",
                ITK3,
                async {
                    let negative = got.iter().any(|(k, _)| *k == AckKind::Negative);
                    let filed = got.iter().any(|(k, _)| *k == AckKind::Accepted);
                    if negative && !filed {
                        Ok(())
                    } else if said.is_empty() {
                        Err(format!(
                            "no acknowledgement within {wait} s: ITK3 asks for a negative one"
                        ))
                    } else {
                        Err(format!("answered {said}"))
                    }
                },
            )
            .await;
        }
    }
    Ok(())
}
