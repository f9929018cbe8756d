//! `--target gateway`: a gateway driven as a practice system drives it, with a registered
//! test-tenant practice client (`--client`, `--key`, `--org`). The fixtures are sent as that
//! practice (their sender's ODS code rewritten to `--org`), and the BaRS scenario gets a fresh
//! referral identifier each run, so a run can be repeated against the same gateway: a fixture
//! already stored answers as a resend (200), which the checks accept.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Options, Run, skip};

const SMART: &str = "SMART Backend Services (docs/security.md#registered-systems-and-access-tokens-smart-backend-services)";
const ERRORS: &str = "docs/onboarding.md#error-catalogue";
const FIXTURES: &str = "fixtures/README.md: every fixture gives its expected result";

/// A client's private key, as `whg clients keygen` writes it (P-384, ES384) or an RSA key (RS384).
enum ClientKey {
    Ec(whg::auth::SigningKey),
    Rsa(jsonwebtoken::EncodingKey),
}

impl ClientKey {
    fn load(path: &Path) -> Result<ClientKey, String> {
        if let Ok(key) = whg::auth::SigningKey::load(path) {
            return Ok(ClientKey::Ec(key));
        }
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        jsonwebtoken::EncodingKey::from_rsa_pem(&pem)
            .map(ClientKey::Rsa)
            .map_err(|_| format!("{} is neither a P-384 EC key (whg clients keygen) nor an RSA private key in PEM", path.display()))
    }

    fn sign(&self, claims: &Value) -> String {
        match self {
            ClientKey::Ec(key) => key.sign(claims),
            ClientKey::Rsa(key) => jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS384),
                claims,
                key,
            )
            .unwrap_or_default(),
        }
    }
}

struct Gateway {
    url: String,
    http: reqwest::Client,
    client: String,
    key: ClientKey,
    org: String,
    fixtures: PathBuf,
    /// The token endpoint as the gateway's SMART configuration names it: where assertions go,
    /// and their `aud`.
    token_endpoint: String,
}

/// An answer: status, headers, JSON body (`Null` when not JSON).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn said(&self) -> String {
        let issues: Vec<String> = self.body["issue"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                format!(
                    "{} {}: {}",
                    i["expression"][0].as_str().unwrap_or("-"),
                    i["code"].as_str().unwrap_or("?"),
                    i["diagnostics"].as_str().unwrap_or("")
                )
            })
            .collect();
        if !issues.is_empty() {
            return issues.join("; ").chars().take(600).collect();
        }
        if let Some(e) = self.body["error"].as_str() {
            return format!(
                "{e}: {}",
                self.body["error_description"].as_str().unwrap_or("")
            );
        }
        self.body.to_string().chars().take(300).collect()
    }

    fn expect(&self, statuses: &[u16]) -> Result<(), String> {
        if statuses.contains(&self.status) {
            Ok(())
        } else {
            Err(format!(
                "expected {statuses:?}, answered {}: {}",
                self.status,
                self.said()
            ))
        }
    }

    fn location_id(&self) -> Option<String> {
        let location = self.headers.get("location")?.to_str().ok()?;
        let path = location.split("/_history/").next()?;
        path.rsplit('/').next().map(str::to_string)
    }
}

impl Gateway {
    /// `path` on the gateway, or an absolute URL as given.
    fn address(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.url)
        }
    }

    fn token_url(&self) -> String {
        self.token_endpoint.clone()
    }

    fn assertion(&self, overrides: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.client, "sub": self.client, "aud": self.token_url(),
            "iat": now, "exp": now + 240, "jti": uuid::Uuid::now_v7().to_string(),
        });
        for (k, v) in overrides.as_object().into_iter().flatten() {
            claims[k] = v.clone();
        }
        self.key.sign(&claims)
    }

    async fn exchange(&self, assertion: &str, scope: Option<&str>) -> Result<Answer, String> {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let body = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            reqwest::Method::POST,
            &self.token_endpoint,
            None,
            Some(("application/x-www-form-urlencoded", body.into_bytes())),
            &[],
        )
        .await
    }

    async fn token(&self, scope: Option<&str>) -> Result<String, String> {
        let answer = self.exchange(&self.assertion(json!({})), scope).await?;
        answer.expect(&[200])?;
        answer.body["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "the token endpoint's answer has no access_token".into())
    }

    /// One request; a 429 the gateway's rate limit answers is waited out (its Retry-After, a few
    /// times) as a well-behaved client does, except when a test trigger asked for it.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let triggered = headers.iter().any(|(k, _)| *k == whg::api::TEST_TRIGGER);
        let mut tries = 0;
        loop {
            // A pooled connection the gateway closed (after refusing a body too large, say) is
            // not the gateway's answer: once more, on a new connection.
            let answer = match self
                .send_once(method.clone(), path, token, body.clone(), headers)
                .await
            {
                Ok(a) => a,
                Err(_) => {
                    self.send_once(method.clone(), path, token, body.clone(), headers)
                        .await?
                }
            };
            if answer.status != 429 || triggered || tries == 5 {
                return Ok(answer);
            }
            tries += 1;
            let wait = answer
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(std::time::Duration::from_secs(wait.clamp(1, 10))).await;
        }
    }

    async fn send_once(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let mut request = self
            .http
            .request(method.clone(), self.address(path))
            .header("accept", "application/fhir+json, application/json");
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let r = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {}", describe(&e)))?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    async fn post_json(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        text: &str,
    ) -> Result<Answer, String> {
        self.send(
            reqwest::Method::POST,
            path,
            Some(token),
            Some((content_type, text.as_bytes().to_vec())),
            &[],
        )
        .await
    }

    async fn get(&self, path: &str, token: &str) -> Result<Answer, String> {
        self.send(reqwest::Method::GET, path, Some(token), None, &[])
            .await
    }

    /// A fixture's text, sent as this run's practice: its sender's ODS code (the practice format's
    /// `practice.odsCode`, a BaRS message's sender Organization) is rewritten to `--org`.
    fn as_our_practice(&self, text: &str) -> String {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return text.to_string();
        };
        let sender = value["practice"]["odsCode"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                let entries = value["entry"].as_array()?;
                let header = entries
                    .iter()
                    .find(|e| e["resource"]["resourceType"] == "MessageHeader")?;
                let reference = header["resource"]["sender"]["reference"].as_str()?;
                let org = entries.iter().find(|e| e["fullUrl"] == reference)?;
                org["resource"]["identifier"][0]["value"]
                    .as_str()
                    .map(str::to_string)
            });
        match sender {
            // Only a sender that is a practice's code: a fixture about a malformed one keeps it.
            Some(ods) if whg::fhir::identifiers::is_gp_practice_ods(&ods) && ods != self.org => {
                text.replace(&ods, &self.org)
                    .replace(&ods.to_lowercase(), &self.org.to_lowercase())
            }
            _ => text.to_string(),
        }
    }
}

/// The kind of a referral fixture's sender when it is not a GP practice
/// (`referringOrganisation.kind`).
fn other_referrer(text: &str) -> Option<String> {
    let value = serde_json::from_str::<Value>(text).ok()?;
    value["referringOrganisation"]["kind"]
        .as_str()
        .map(str::to_string)
}

/// The fixtures of `dir` (not their `.expected.json`), sorted.
fn fixtures_in(dir: &Path) -> Vec<PathBuf> {
    crate::validate_cli::bodies_in(dir).unwrap_or_default()
}

fn expected_of(fixture: &Path) -> Option<Value> {
    let name = fixture
        .file_name()?
        .to_string_lossy()
        .replace(".json", ".expected.json");
    std::fs::read_to_string(fixture.with_file_name(name))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// (expression, code) of each issue, sorted: what an invalid fixture's expected file lists.
fn issue_keys(issues: &Value) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = issues
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["expression"][0]
                    .as_str()
                    .or(i["expression"].as_str())
                    .unwrap_or("")
                    .to_string(),
                i["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// What went wrong sending a request, with its causes (reqwest's own message names only the URL).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A BaRS message taken: 200 with a response message whose code is `ok`.
fn accepted(a: Answer) -> Result<(), String> {
    a.expect(&[200])?;
    match a.body["entry"][0]["resource"]["response"]["code"].as_str() {
        Some("ok") => Ok(()),
        other => Err(format!("the response message's code is {other:?}, not ok")),
    }
}

/// Every error answer is an OperationOutcome whose issues each carry a BaRS `REC_*` code
/// (docs/bars.md).
fn carries_rec_codes(body: &Value) -> Result<(), String> {
    if body["resourceType"] != "OperationOutcome"
        || body["issue"].as_array().is_none_or(Vec::is_empty)
    {
        return Err(format!(
            "the refusal is not an OperationOutcome with its issues: {}",
            body.to_string().chars().take(200).collect::<String>()
        ));
    }
    for issue in body["issue"].as_array().into_iter().flatten() {
        let code = issue["details"]["coding"][0]["code"]
            .as_str()
            .unwrap_or_default();
        if !code.starts_with("REC_") {
            return Err(format!(
                "an issue without a REC_* code in details.coding: {issue}"
            ));
        }
    }
    Ok(())
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default()
}

pub async fn run(run: &mut Run, url: &str, options: &Options) -> Result<(), String> {
    let (Some(client), Some(key), Some(org)) = (&options.client, &options.key, &options.org) else {
        return Err("--target gateway needs a registered test-tenant practice client: --client ID --key PEM --org ODS (docs/onboarding.md)".into());
    };
    let g = Gateway {
        url: url.to_string(),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?,
        client: client.clone(),
        key: ClientKey::load(key)?,
        org: org.to_uppercase(),
        fixtures: options.fixtures.clone(),
        token_endpoint: format!("{url}/oauth2/token"),
    };
    if !g.fixtures.join("referrals/valid").is_dir() {
        return Err(format!(
            "{} is not the fixtures directory (--fixtures)",
            g.fixtures.display()
        ));
    }
    // A SMART client finds the token endpoint by discovery (SMART App Launch 2.0, Conformance:
    // the FHIR base URL + /.well-known/smart-configuration).
    let mut g = g;
    if let Ok(a) = g
        .send(
            reqwest::Method::GET,
            "/fhir/.well-known/smart-configuration",
            None,
            None,
            &[],
        )
        .await
        && let Some(endpoint) = a.body["token_endpoint"].as_str()
    {
        g.token_endpoint = endpoint.to_string();
    }
    // A live client would send every fixture as real referrals to live services: the run goes
    // on only for a test-tenant client, which the test trigger proves (a live one is not
    // throttled by it).
    let token = g
        .token(None)
        .await
        .map_err(|e| format!("no access token for {}: {e}", g.client))?;
    let probe = g
        .send(
            reqwest::Method::GET,
            "/fhir/ServiceRequest?_count=1",
            Some(&token),
            None,
            &[(whg::api::TEST_TRIGGER, "throttled")],
        )
        .await?;
    if probe.status != 429 {
        return Err(format!(
            "{} is not a test-tenant client (the test trigger answered {}, not 429): the run sends every fixture as a referral, so it runs only as a test-tenant client (whg clients add … --tenant test)",
            g.client, probe.status
        ));
    }
    discovery(run, &g).await;
    smart(run, &g).await;
    let token = match g.token(None).await {
        Ok(t) => t,
        Err(e) => return Err(format!("no access token for {}: {e}", g.client)),
    };
    let stored = fixtures(run, &g, &token).await;
    bars(run, &g, &token).await;
    interactions(run, &g, &token, &stored).await;
    error_states(run, &g, &token).await;
    Ok(())
}

async fn discovery(run: &mut Run, g: &Gateway) {
    run.check(
        "GW-DISC-01",
        "discovery",
        "the CapabilityStatement is FHIR R4 and names SMART-on-FHIR security",
        "FHIR R4 capabilities; README: GET /fhir/metadata",
        async {
            let a = g
                .send(reqwest::Method::GET, "/fhir/metadata", None, None, &[])
                .await?;
            a.expect(&[200])?;
            if a.body["resourceType"] != "CapabilityStatement" || a.body["fhirVersion"] != "4.0.1" {
                return Err(format!(
                    "not an R4 CapabilityStatement: {} {}",
                    a.body["resourceType"], a.body["fhirVersion"]
                ));
            }
            let smart = a.body["rest"][0]["security"]["service"]
                .to_string()
                .contains("SMART-on-FHIR");
            if smart {
                Ok(())
            } else {
                Err("rest.security.service does not name SMART-on-FHIR".into())
            }
        },
    )
    .await;
    run.check("GW-DISC-02", "discovery", "{FHIR base}/.well-known/smart-configuration names the token endpoint, private_key_jwt and the algorithms", "SMART App Launch 2.0, Conformance: the document at the FHIR base's /.well-known/smart-configuration", async {
        let a = g.send(reqwest::Method::GET, "/fhir/.well-known/smart-configuration", None, None, &[]).await?;
        a.expect(&[200])?;
        let named = a.body["token_endpoint"].as_str().unwrap_or_default();
        if url::Url::parse(named).is_err() || !named.ends_with("/oauth2/token") {
            return Err(format!("token_endpoint is {:?}, not the gateway's /oauth2/token as an absolute URL", a.body["token_endpoint"]));
        }
        if !a.body["token_endpoint_auth_methods_supported"].to_string().contains("private_key_jwt") {
            return Err(format!("token_endpoint_auth_methods_supported lacks private_key_jwt: {}", a.body["token_endpoint_auth_methods_supported"]));
        }
        let algs = a.body["token_endpoint_auth_signing_alg_values_supported"].to_string();
        if !["RS384", "ES384"].iter().all(|alg| algs.contains(alg)) {
            return Err(format!("token_endpoint_auth_signing_alg_values_supported lacks RS384 or ES384: {algs}"));
        }
        Ok(())
    })
    .await;
    run.check(
        "GW-DISC-03",
        "discovery",
        "the API contract is served as OpenAPI 3.1",
        "docs/onboarding.md: GET /api/v1/openapi.json",
        async {
            let a = g
                .send(
                    reqwest::Method::GET,
                    "/api/v1/openapi.json",
                    None,
                    None,
                    &[],
                )
                .await?;
            a.expect(&[200])?;
            if a.body["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
            {
                Ok(())
            } else {
                Err(format!("openapi is {}", a.body["openapi"]))
            }
        },
    )
    .await;
}

async fn smart(run: &mut Run, g: &Gateway) {
    run.check(
        "GW-SMART-01",
        "smart",
        "a signed assertion gets a bearer token of five minutes at most",
        SMART,
        async {
            let a = g.exchange(&g.assertion(json!({})), None).await?;
            a.expect(&[200])?;
            let ttl = a.body["expires_in"].as_u64().unwrap_or(u64::MAX);
            if a.body["token_type"]
                .as_str()
                .map(str::to_lowercase)
                .as_deref()
                != Some("bearer")
                || ttl > 300
            {
                return Err(format!(
                    "token_type {} expires_in {}",
                    a.body["token_type"], a.body["expires_in"]
                ));
            }
            if !a
                .headers
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("no-store"))
            {
                return Err(
                    "the token answer lacks Cache-Control: no-store (RFC 6749 §5.1)".into(),
                );
            }
            Ok(())
        },
    )
    .await;
    let refused = |a: Answer| -> Result<(), String> {
        a.expect(&[400, 401])?;
        match a.body["error"].as_str() {
            Some("invalid_client") => Ok(()),
            other => Err(format!("error is {other:?}, not invalid_client")),
        }
    };
    run.check(
        "GW-SMART-02",
        "smart",
        "an assertion signed by another key is refused",
        SMART,
        async {
            // The client's own header (its kid) and claims, with another key's signature: the
            // gateway must check the signature, not only find the key.
            let genuine = g.assertion(json!({}));
            let other = whg::auth::SigningKey::generate().sign(&json!({ "iss": g.client }));
            let mut parts: Vec<&str> = genuine.split('.').collect();
            let signature = other.rsplit('.').next().unwrap_or_default().to_string();
            if parts.len() == 3 {
                parts[2] = &signature;
            }
            refused(g.exchange(&parts.join("."), None).await?)
        },
    )
    .await;
    run.check(
        "GW-SMART-03",
        "smart",
        "an expired assertion is refused",
        SMART,
        async {
            let now = chrono::Utc::now().timestamp();
            refused(
                g.exchange(
                    &g.assertion(json!({ "iat": now - 600, "exp": now - 300 })),
                    None,
                )
                .await?,
            )
        },
    )
    .await;
    run.check(
        "GW-SMART-04",
        "smart",
        "a replayed assertion (the same jti) is refused",
        SMART,
        async {
            let once = g.assertion(json!({}));
            g.exchange(&once, None).await?.expect(&[200])?;
            // SMART App Launch 2.0 (client-confidential-asymmetric): an authentication
            // failure, a replay among them, is invalid_client.
            refused(g.exchange(&once, None).await?)
        },
    )
    .await;
    run.check(
        "GW-SMART-05",
        "smart",
        "an assertion for another audience is refused",
        SMART,
        async {
            refused(
                g.exchange(
                    &g.assertion(json!({ "aud": "https://elsewhere.example/oauth2/token" })),
                    None,
                )
                .await?,
            )
        },
    )
    .await;
    run.check(
        "GW-SMART-06",
        "smart",
        "an assertion expiring more than five minutes ahead is refused",
        SMART,
        async {
            let now = chrono::Utc::now().timestamp();
            refused(
                g.exchange(&g.assertion(json!({ "exp": now + 3600 })), None)
                    .await?,
            )
        },
    )
    .await;
    run.check("GW-SMART-07", "smart", "a narrower scope is granted as asked, and the token carries no more", SMART, async {
        let a = g.exchange(&g.assertion(json!({})), Some("system/ServiceRequest.c")).await?;
        a.expect(&[200])?;
        if a.body["scope"] != "system/ServiceRequest.c" {
            return Err(format!("scope granted: {}", a.body["scope"]));
        }
        let narrow = a.body["access_token"].as_str().unwrap_or_default().to_string();
        let read = g.get("/fhir/Consent?_count=1", &narrow).await?;
        read.expect(&[403])?;
        let challenge = read.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if challenge.contains("insufficient_scope") { Ok(()) } else { Err(format!("a 403 for a missing scope says WWW-Authenticate {challenge:?}, not insufficient_scope (RFC 6750 §3.1)")) }
    })
    .await;
    run.check(
        "GW-SMART-08",
        "smart",
        "a scope beyond the registration is refused (invalid_scope)",
        SMART,
        async {
            let a = g
                .exchange(&g.assertion(json!({})), Some("whg/mesh.quarantine"))
                .await?;
            a.expect(&[400])?;
            if a.body["error"] == "invalid_scope" {
                Ok(())
            } else {
                Err(format!("error is {}, not invalid_scope", a.body["error"]))
            }
        },
    )
    .await;
    run.check(
        "GW-SMART-09",
        "smart",
        "a route without a token answers 401 with a Bearer challenge",
        "RFC 6750 §3; docs/security.md",
        async {
            let a = g
                .send(
                    reqwest::Method::GET,
                    "/fhir/ServiceRequest",
                    None,
                    None,
                    &[],
                )
                .await?;
            a.expect(&[401])?;
            if a.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer"))
            {
                Ok(())
            } else {
                Err("no WWW-Authenticate: Bearer".into())
            }
        },
    )
    .await;
}

/// What the fixtures stored that later checks read: a ServiceRequest and its Patient.
#[derive(Default)]
struct Stored {
    service_request: Option<String>,
    patient: Option<String>,
}

async fn fixtures(run: &mut Run, g: &Gateway, token: &str) -> Stored {
    let mut stored = Stored::default();
    for (group, dir, route, content_type) in [
        (
            "referrals",
            "referrals",
            "/api/v1/referrals",
            "application/json",
        ),
        (
            "fit-notes",
            "fit-notes",
            "/api/v1/fit-notes",
            "application/json",
        ),
        (
            "messages",
            "messages",
            "/fhir/$process-message",
            "application/fhir+json",
        ),
    ] {
        for (validity, files) in [
            ("valid", fixtures_in(&g.fixtures.join(dir).join("valid"))),
            (
                "invalid",
                fixtures_in(&g.fixtures.join(dir).join("invalid")),
            ),
        ] {
            for (n, path) in files.iter().enumerate() {
                let id = format!(
                    "GW-FIX-{}-{}-{:02}",
                    group.to_uppercase(),
                    validity.to_uppercase(),
                    n + 1
                );
                let name = format!("{dir}/{validity}/{}", name_of(path));
                let mut focus = None;
                run.check(&id, group, name.clone(), FIXTURES, async {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    if let Some(kind) = other_referrer(&text) {
                        // The kit's client is a practice: another kind of referrer's fixture is
                        // its own registered client's to send (tests/referrers.rs sends each).
                        return Err(skip(format!(
                            "sent by a {kind} referrer, not a practice: run it with that referrer's own client"
                        )));
                    }
                    let a = g
                        .post_json(route, token, content_type, &g.as_our_practice(&text))
                        .await?;
                    if validity == "valid" {
                        let ok: &[u16] = if group == "messages" {
                            &[200]
                        } else {
                            &[200, 201]
                        };
                        a.expect(ok)?;
                        if group == "messages"
                            && a.body["entry"][0]["resource"]["response"]["code"] != "ok"
                        {
                            return Err(format!(
                                "the response message's code is {}, not ok",
                                a.body["entry"][0]["resource"]["response"]["code"]
                            ));
                        }
                        focus = a.location_id();
                        return Ok(());
                    }
                    let expected = expected_of(path).ok_or("no .expected.json beside it")?;
                    let status = expected["status"].as_u64().unwrap_or(422) as u16;
                    a.expect(&[status])?;
                    carries_rec_codes(&a.body)?;
                    let (got, want) = (
                        issue_keys(&a.body["issue"]),
                        issue_keys(&expected["issues"]),
                    );
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!(
                            "issues (expression, code) {got:?}, expected {want:?}"
                        ))
                    }
                })
                .await;
                if group == "referrals" && stored.service_request.is_none() {
                    stored.service_request = focus;
                }
            }
        }
    }
    if let Some(sr) = &stored.service_request
        && let Ok(a) = g.get(&format!("/fhir/ServiceRequest/{sr}"), token).await
    {
        stored.patient = a.body["subject"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"))
            .map(str::to_string);
    }
    stored
}

/// The BaRS scenario: a new referral, its resend, an amendment and a cancellation, on a fresh
/// referral identifier so each run is a new referral.
async fn bars(run: &mut Run, g: &Gateway, token: &str) {
    const REQ: &str = "docs/bars.md (BaRS servicerequest-request: new, update, cancel)";
    let read = |p: &str| {
        std::fs::read_to_string(g.fixtures.join(p)).map_err(|e| format!("cannot read {p}: {e}"))
    };
    let (new, amend, cancel) = match (
        read("messages/valid/01-bars-referral-current-forms.json"),
        read("messages/amendments/01-more-urgent.json"),
        read("messages/cancellations/01-revoked.json"),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            run.check("GW-BARS-00", "bars", "the BaRS scenario's fixtures", REQ, async { Err("fixtures/messages/{valid,amendments,cancellations} lack the scenario's messages".to_string()) }).await;
            return;
        }
    };
    let fresh = format!("CONF-{}", uuid::Uuid::now_v7());
    // Each message a new Bundle and MessageHeader id; the three about one new referral.
    let prepare = |text: &str| -> String {
        let mut v: Value = serde_json::from_str(&g.as_our_practice(text)).unwrap_or(Value::Null);
        v["id"] = json!(uuid::Uuid::now_v7().to_string());
        if v["entry"][0]["resource"]["resourceType"] == "MessageHeader" {
            v["entry"][0]["resource"]["id"] = json!(uuid::Uuid::now_v7().to_string());
        }
        v.to_string().replace("REF-BARS-0001", &fresh)
    };
    let (new, amend, cancel) = (prepare(&new), prepare(&amend), prepare(&cancel));
    let post = |body: String| async move {
        g.post_json(
            "/fhir/$process-message",
            token,
            "application/fhir+json",
            &body,
        )
        .await
    };
    let focus = |a: &Answer| {
        a.body["entry"][0]["resource"]["focus"][0]["reference"]
            .as_str()
            .map(str::to_string)
    };
    let mut first_focus = None;
    run.check(
        "GW-BARS-01",
        "bars",
        "a new referral is accepted with a response message naming it",
        REQ,
        async {
            let a = post(new.clone()).await?;
            a.expect(&[200])?;
            let header = &a.body["entry"][0]["resource"];
            let sent: Value = serde_json::from_str(&new).unwrap_or(Value::Null);
            if header["response"]["identifier"] != sent["entry"][0]["resource"]["id"]
                || header["response"]["code"] != "ok"
            {
                return Err(format!(
                    "response {} does not name the request's MessageHeader with code ok",
                    header["response"]
                ));
            }
            if focus(&a).is_none() {
                return Err("the response message has no focus".to_string());
            }
            first_focus = a.location_id().map(|id| format!("ServiceRequest/{id}"));
            first_focus
                .as_ref()
                .map(|_| ())
                .ok_or_else(|| "the answer has no Location naming the ServiceRequest".to_string())
        },
    )
    .await;
    run.check(
        "GW-BARS-02",
        "bars",
        "the same message again is a resend: the same ServiceRequest",
        REQ,
        async {
            let a = post(new.clone()).await?;
            a.expect(&[200])?;
            let again = a.location_id().map(|id| format!("ServiceRequest/{id}"));
            if again == first_focus {
                Ok(())
            } else {
                Err(format!(
                    "the resend names {again:?}, the first {first_focus:?}"
                ))
            }
        },
    )
    .await;
    run.check(
        "GW-BARS-03",
        "bars",
        "the referrer's amendment (reason update) is taken",
        REQ,
        async { accepted(post(amend.clone()).await?) },
    )
    .await;
    run.check(
        "GW-BARS-04",
        "bars",
        "the referrer's cancellation is taken, and the ServiceRequest is revoked",
        REQ,
        async {
            post(cancel.clone()).await?.expect(&[200])?;
            let Some(reference) = &first_focus else {
                return Err(skip("no referral from GW-BARS-01"));
            };
            let a = g.get(&format!("/fhir/{reference}"), token).await?;
            if a.body["status"] == "revoked" {
                Ok(())
            } else {
                Err(format!(
                    "the ServiceRequest's status is {}",
                    a.body["status"]
                ))
            }
        },
    )
    .await;
    run.check(
        "GW-BARS-05",
        "bars",
        "a cancellation sent again changes nothing and is still accepted",
        REQ,
        async { accepted(post(cancel.clone()).await?) },
    )
    .await;
    run.check(
        "GW-BARS-06",
        "bars",
        "an amendment of a cancelled referral is refused with a REC_* code",
        REQ,
        async {
            let mut again: Value = serde_json::from_str(&amend).unwrap_or(Value::Null);
            again["id"] = json!(uuid::Uuid::now_v7().to_string());
            again["entry"][0]["resource"]["id"] = json!(uuid::Uuid::now_v7().to_string());
            let a = post(again.to_string()).await?;
            if !(400..500).contains(&a.status) {
                return Err(format!("answered {}: {}", a.status, a.said()));
            }
            carries_rec_codes(&a.body)
        },
    )
    .await;
}

/// The interactions the CapabilityStatement declares, type by type.
async fn interactions(run: &mut Run, g: &Gateway, token: &str, stored: &Stored) {
    const REQ: &str =
        "the gateway's CapabilityStatement (GET /fhir/metadata): each declared interaction";
    let Ok(metadata) = g
        .send(reqwest::Method::GET, "/fhir/metadata", None, None, &[])
        .await
    else {
        return;
    };
    let resources = metadata.body["rest"][0]["resource"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for resource in resources {
        let Some(kind) = resource["type"].as_str().map(str::to_string) else {
            continue;
        };
        let declared: Vec<String> = resource["interaction"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["code"].as_str().map(str::to_string))
            .collect();
        let instance = match kind.as_str() {
            "ServiceRequest" => stored.service_request.clone(),
            "Patient" => stored.patient.clone(),
            _ => None,
        };
        for interaction in declared {
            let id = format!(
                "GW-CAP-{}-{}",
                kind.to_uppercase(),
                interaction.to_uppercase()
            );
            let name = format!("{kind} {interaction}");
            let instance = instance.clone();
            let kind = kind.clone();
            run.check(&id, "capability", name, REQ, async move {
                match interaction.as_str() {
                    "search-type" => {
                        // A person is found by NHS number only (README: GET /fhir/Patient).
                        let query = if kind == "Patient" {
                            "identifier=https://fhir.nhs.uk/Id/nhs-number%7C9990000018"
                        } else {
                            "_count=1"
                        };
                        let a = g.get(&format!("/fhir/{kind}?{query}"), token).await?;
                        match a.status {
                            200 if a.body["type"] == "searchset" => Ok(()),
                            200 => Err(format!("a search answered a {} Bundle", a.body["type"])),
                            // A practice may not search every type (the audit trail is information governance's).
                            403 if a.body["resourceType"] == "OperationOutcome" => Err(skip(format!("a practice may not search {kind}: {}", a.said()))),
                            _ => Err(format!("answered {}: {}", a.status, a.said())),
                        }
                    }
                    "read" | "vread" | "history-instance" => {
                        let Some(id) = instance else { return Err(skip(format!("no {kind} of this run's practice to read"))) };
                        let path = match interaction.as_str() {
                            "read" => format!("/fhir/{kind}/{id}"),
                            "vread" => format!("/fhir/{kind}/{id}/_history/1"),
                            _ => format!("/fhir/{kind}/{id}/_history"),
                        };
                        let a = g.get(&path, token).await?;
                        a.expect(&[200])?;
                        let ok = match interaction.as_str() {
                            "history-instance" => a.body["type"] == "history",
                            _ => a.body["resourceType"] == kind.as_str() && a.body["id"] == id.as_str(),
                        };
                        let etag = interaction == "history-instance" || a.headers.contains_key("etag");
                        if ok && etag { Ok(()) } else { Err(format!("answered {} {} without what {interaction} returns (or without an ETag)", a.body["resourceType"], a.body["type"])) }
                    }
                    other => Err(skip(format!("{other} is exercised by the fixtures and scenarios above or needs another role's token"))),
                }
            })
            .await;
        }
    }
}

async fn error_states(run: &mut Run, g: &Gateway, token: &str) {
    let referral = std::fs::read_to_string(
        g.fixtures
            .join("referrals/valid/01-gp-work-stress-off-sick.json"),
    )
    .unwrap_or_default();
    let referral = g.as_our_practice(&referral);
    run.check(
        "GW-ERR-400",
        "errors",
        "malformed JSON is a 400 with an OperationOutcome",
        ERRORS,
        async {
            let a = g
                .post_json(
                    "/api/v1/referrals",
                    token,
                    "application/json",
                    "{\"referralId\": ",
                )
                .await?;
            a.expect(&[400])?;
            carries_rec_codes(&a.body)
        },
    )
    .await;
    run.check(
        "GW-ERR-415",
        "errors",
        "a body of another content type is a 415",
        ERRORS,
        async {
            g.post_json("/api/v1/referrals", token, "text/plain", &referral)
                .await?
                .expect(&[415])
        },
    )
    .await;
    run.check(
        "GW-ERR-413",
        "errors",
        "a body over the limit is a 413",
        ERRORS,
        async {
            // Just over the embedded defaults' limit ([limits] max_body_bytes, 1 MiB): a gateway
            // configured for more answers for the body itself, and the check says so.
            let big = format!("{{\"padding\": \"{}\"}}", "x".repeat((1 << 20) + 1024));
            let a = g
                .post_json("/api/v1/referrals", token, "application/json", &big)
                .await?;
            match a.status {
                413 => carries_rec_codes(&a.body),
                400 | 422 => Err(skip(
                    "this gateway takes bodies over 1 MiB ([limits] max_body_bytes)",
                )),
                other => Err(format!("answered {other}: {}", a.said())),
            }
        },
    )
    .await;
    run.check(
        "GW-ERR-409",
        "errors",
        "a referral id reused for other content is a 409",
        ERRORS,
        async {
            g.post_json("/api/v1/referrals", token, "application/json", &referral)
                .await?
                .expect(&[200, 201])?;
            let mut changed: Value = serde_json::from_str(&referral).map_err(|e| e.to_string())?;
            changed["authoredOn"] = json!("2026-03-02T10:41:00Z");
            let a = g
                .post_json(
                    "/api/v1/referrals",
                    token,
                    "application/json",
                    &changed.to_string(),
                )
                .await?;
            a.expect(&[409])?;
            carries_rec_codes(&a.body)
        },
    )
    .await;
    run.check(
        "GW-ERR-404",
        "errors",
        "an unknown route is a 404 with an OperationOutcome",
        ERRORS,
        async {
            let a = g.get("/api/v1/no-such-route", token).await?;
            a.expect(&[404])?;
            if a.body["resourceType"] == "OperationOutcome" {
                Ok(())
            } else {
                Err("no OperationOutcome".into())
            }
        },
    )
    .await;
    for (trigger, status, retry_after) in [
        ("throttled", 429, true),
        ("unavailable", 503, false),
        ("timeout", 503, false),
        ("no-such-trigger", 400, false),
    ] {
        let id = format!("GW-TRIGGER-{}", trigger.to_uppercase());
        run.check(
            &id,
            "triggers",
            format!("X-Test-Trigger: {trigger} answers {status}"),
            "docs/onboarding.md#test-triggers",
            async {
                let a = g
                    .send(
                        reqwest::Method::GET,
                        "/fhir/ServiceRequest",
                        Some(token),
                        None,
                        &[(whg::api::TEST_TRIGGER, trigger)],
                    )
                    .await?;
                a.expect(&[status])?;
                carries_rec_codes(&a.body)?;
                if retry_after && !a.headers.contains_key("retry-after") {
                    return Err("a 429 without Retry-After".into());
                }
                Ok(())
            },
        )
        .await;
    }
}
