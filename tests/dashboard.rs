//! The dashboard (`/dashboard`) over HTTP: people sign in at `whg dev-issuer` by OpenID Connect
//! and see, through a session cookie, only the aggregate figures their role allows — by the same
//! tenancy rule, and the same numbers, as `GET /api/v1/reports`. Then the whole thing in
//! headless Chromium, with axe-core.
//!
//! Attacks tried, each with only what that party legitimately holds: a practice's or a
//! commissioner's API token at the dashboard; a service manager asking for another service; a
//! commissioner for a service it does not commission; a cookie edited, re-signed with another
//! key, or of the wrong kind; a provider's answer delivered to another browser, with another
//! state, or replayed; a sign-out posted from another site or without the session's token; an
//! account with no dashboard role.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use common::{Server, WHG, chromium, nhs_number, referral};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;
use whg::auth::{Principal, Role};

/// `whg dev-issuer` on a free port.
struct DevIssuer {
    child: Child,
    url: String,
}

impl DevIssuer {
    fn start() -> DevIssuer {
        let mut child = Command::new(WHG)
            .args(["dev-issuer", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start whg dev-issuer");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| {
                l.strip_prefix("dev issuer listening on ")
                    .map(str::to_string)
            })
            .expect("dev-issuer prints its address");
        // Keep reading its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        DevIssuer { child, url }
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway whose `[sign_in]` is the dev issuer, its session key in a directory of its own.
fn gateway(issuer: &DevIssuer, keys: &tempfile::TempDir, extra: &str) -> Server {
    Server::start_with(&format!(
        "[sign_in]\nissuer = {:?}\nclient_id = \"whg-dashboard\"\noperations_organisations = [\"X26\"]\nsession_key = {:?}\n{extra}",
        issuer.url,
        keys.path().join("session-key").display().to_string()
    ))
}

/// A dev issuer and a gateway signing in at it; the first two live as long as the gateway is used.
fn started(extra: &str) -> (DevIssuer, tempfile::TempDir, Server) {
    let issuer = DevIssuer::start();
    let keys = tempfile::tempdir().unwrap();
    let server = gateway(&issuer, &keys, extra);
    (issuer, keys, server)
}

/// A browser, as far as the dashboard can tell: cookies kept per name (every party here is on
/// 127.0.0.1, where browsers share cookies across ports too), redirects not followed, so each
/// step can be looked at.
struct Browser {
    http: reqwest::Client,
    jar: Mutex<BTreeMap<String, String>>,
}

struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
            .to_str()
            .unwrap()
            .to_string()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: Mutex::new(BTreeMap::new()),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    fn set_cookie(&self, name: &str, value: &str) {
        self.jar
            .lock()
            .unwrap()
            .insert(name.to_string(), value.to_string());
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers.get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut jar = self.jar.lock().unwrap();
            if attributes.contains("Max-Age=0") {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, url: &str) -> Page {
        self.send(self.http.get(url)).await
    }

    async fn post_form(&self, url: &str, fields: &[(String, String)], origin: &str) -> Page {
        self.send(
            self.http
                .post(url)
                .header(reqwest::header::ORIGIN, origin)
                .form(fields),
        )
        .await
    }
}

/// The value of the first `name="…" value="…"` in an HTML page, unescaped.
fn field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    let value = &rest[..rest.find('"')?];
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// The provider's answer for the account with `subject`, from a sign-in this browser starts:
/// the callback URL it sends the browser to.
async fn answer_from_provider(browser: &Browser, server: &Server, subject: &str) -> String {
    let start = browser.get(&server.url("/dashboard/sign-in")).await;
    assert_eq!(start.status, 303, "{}", start.body);
    let authorize = start.location();
    let page = browser.get(&authorize).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let button = page
        .body
        .find(&format!("data-subject=\"{subject}\""))
        .unwrap_or_else(|| panic!("no account {subject}: {}", page.body));
    let before = &page.body[..button];
    let value_at = before.rfind("value=\"").unwrap() + 7;
    let account = &before[value_at..value_at + before[value_at..].find('"').unwrap()];
    let mut fields: Vec<(String, String)> = [
        "client_id",
        "redirect_uri",
        "state",
        "nonce",
        "code_challenge",
    ]
    .into_iter()
    .filter_map(|n| Some((n.to_string(), field(&page.body, n)?)))
    .collect();
    fields.push(("account".into(), account.to_string()));
    let issuer = authorize.split("/authorize").next().unwrap();
    let chosen = browser
        .post_form(&format!("{issuer}/authorize"), &fields, issuer)
        .await;
    assert_eq!(chosen.status, 303, "{}", chosen.body);
    chosen.location()
}

/// Signs `browser` in as the account with `subject`; the dashboard's answer to the callback.
async fn sign_in(browser: &Browser, server: &Server, subject: &str) -> Page {
    let callback = answer_from_provider(browser, server, subject).await;
    browser.get(&callback).await
}

const COMMISSIONER_QF7: &str = "dev-commissioner-qf7";
const MANAGER_WORKWELL: &str = "dev-manager-workwell-south-tyneside";

/// People referred to two services by a live practice (not the test tenant, whose referrals
/// reports leave out): their NHS numbers, family names and birth dates, for looking for.
struct Seeded {
    identities: Vec<String>,
}

async fn seed(server: &Server) -> Seeded {
    let mut identities = Vec::new();
    let whs = server.as_(Principal::service("sheffield-whs"));
    for n in 0..18 {
        let service = if n < 12 {
            "sheffield-whs"
        } else {
            "workwell-south-tyneside"
        };
        let mut r = referral("01-gp-work-stress-off-sick");
        let nhs = nhs_number(700 + n);
        let family = format!("Dashperson{n}");
        let birth = format!("1981-02-{:02}", n + 1);
        r["referralId"] = json!(format!("DASH-{n}"));
        r["practice"]["odsCode"] = json!("C88903");
        r["patient"]["nhsNumber"] = json!(nhs);
        r["patient"]["name"]["family"] = json!(family);
        r["patient"]["birthDate"] = json!(birth);
        r["targetService"] = json!(service);
        r["authoredOn"] = json!(format!("2026-{:02}-03T10:00:00Z", 4 + n % 3));
        r["consent"]["recordedAt"] = json!(format!("2026-{:02}-03T09:55:00Z", 4 + n % 3));
        let (status, headers, outcome) = server
            .as_(Principal::practice("C88903"))
            .post("/api/v1/referrals", &r)
            .await;
        assert_eq!(status, 201, "{outcome}");
        if service == "sheffield-whs" && n % 2 == 0 {
            let id = common::location_id(&headers);
            let (status, _, answer) = whs
                .post(
                    &format!("/api/v1/referrals/{id}/triage"),
                    &json!({ "decision": "accept" }),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
        }
        identities.push(nhs.clone());
        identities.push(format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..]));
        identities.push(family);
        identities.push(birth);
        identities.push(format!("{} February 1981", n + 1));
    }
    // The fixture's own person, whose name every seeded referral still carries as given name.
    identities.push("Joanne".into());
    identities.push("Whitworth".into());
    Seeded { identities }
}

fn commissioner(ods: &str) -> Principal {
    Principal::new(Role::Commissioner, ods)
}

/// The options of the page's service filter: (value, text).
fn service_options(html: &str) -> Vec<String> {
    let select = &html[html.find("id=\"service\"").expect("a service filter")..];
    let select = &select[..select.find("</select>").unwrap()];
    select
        .split("<option value=\"")
        .skip(1)
        .map(|o| o[..o.find('"').unwrap()].to_string())
        .collect()
}

#[tokio::test]
async fn a_commissioner_signs_in_and_sees_only_the_services_it_commissions() {
    let (_issuer, _keys, server) = started("");
    seed(&server).await;
    let browser = Browser::new();

    let landing = browser.get(&server.url("/dashboard")).await;
    assert_eq!(landing.status, 200);
    assert!(landing.body.contains("href=\"/dashboard/sign-in\""));
    assert!(
        !landing.body.contains("<table"),
        "no figures before sign-in"
    );

    let signed_in = sign_in(&browser, &server, COMMISSIONER_QF7).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location(), "/dashboard");
    assert!(
        browser.cookie("whg_sign_in").is_none(),
        "the sign-in cookie is cleared"
    );
    let session = signed_in
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("whg_session="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/dashboard"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(
        !session.contains("Secure"),
        "plain http on loopback: {session}"
    );

    let overview = browser.get(&server.url("/dashboard")).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert_eq!(
        overview.headers["content-security-policy"],
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert!(overview.body.contains("Commissioner, QF7"));
    assert_eq!(service_options(&overview.body), ["", "sheffield-whs"]);
    for name in whg::dashboard::OVERVIEW {
        assert!(
            overview
                .body
                .contains(&format!("id=\"chart-{name}-title\"")),
            "{name}'s chart"
        );
    }
    assert!(!overview.body.contains("<script"), "no script at all");

    // A service it does not commission is refused outright, by the reports' own rule.
    let other = browser
        .get(&server.url("/dashboard?service=workwell-south-tyneside"))
        .await;
    assert_eq!(other.status, 403, "{}", other.body);
    assert!(!other.body.contains("<table"));
    let other_csv = browser
        .get(
            &server
                .url("/dashboard/reports/referrals-by-service/csv?service=workwell-south-tyneside"),
        )
        .await;
    assert_eq!(other_csv.status, 403);

    // The figures are the API's: the same CSV, byte for byte, as the commissioner's own
    // client gets from GET /api/v1/reports/{name}.
    for name in [
        "referrals-by-service",
        "referrals-by-month",
        "time-to-first-contact",
    ] {
        let page_csv = browser
            .get(&server.url(&format!("/dashboard/reports/{name}/csv")))
            .await;
        assert_eq!(page_csv.status, 200, "{}", page_csv.body);
        assert!(
            page_csv.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let api = server
            .client
            .get(server.url(&format!("/api/v1/reports/{name}")))
            .bearer_auth(server.token(&commissioner("QF7")))
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(page_csv.body, api, "{name}");
    }
    let by_service = browser
        .get(&server.url("/dashboard/reports/referrals-by-service/csv"))
        .await;
    assert!(
        by_service
            .body
            .contains("Sheffield Work and Health Service,12"),
        "{}",
        by_service.body
    );
    assert!(!by_service.body.contains("WorkWell"), "{}", by_service.body);
}

#[tokio::test]
async fn a_service_manager_sees_its_own_service_and_no_other() {
    let (_issuer, _keys, server) = started("");
    seed(&server).await;
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &server, MANAGER_WORKWELL).await.status,
        303
    );

    let overview = browser.get(&server.url("/dashboard")).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(
        overview.body.contains("Service manager, WorkWell"),
        "{}",
        &overview.body[..2000]
    );
    assert_eq!(
        service_options(&overview.body),
        ["", "workwell-south-tyneside"]
    );
    let csv = browser
        .get(&server.url("/dashboard/reports/referrals-by-service/csv"))
        .await;
    assert!(
        csv.body.contains(",6\r\n"),
        "its six referrals: {}",
        csv.body
    );
    assert!(!csv.body.contains("Sheffield"), "{}", csv.body);
    for path in [
        "/dashboard?service=sheffield-whs",
        "/dashboard/reports/referrals-by-route?service=sheffield-whs",
        "/dashboard/reports/referrals-by-route/csv?service=sheffield-whs",
    ] {
        let page = browser.get(&server.url(path)).await;
        assert_eq!(page.status, 403, "{path}: {}", page.body);
        assert!(!page.body.contains("<table"), "{path}");
    }
}

#[tokio::test]
async fn no_session_no_figures_whatever_token_is_sent() {
    let (_issuer, _keys, server) = started("");
    seed(&server).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Anonymous, a practice's token, and a commissioner's own API token: the dashboard takes
    // sessions only.
    for token in [
        None,
        Some(server.token(&Principal::practice("C88903"))),
        Some(server.token(&commissioner("QF7"))),
        Some(server.token(&Principal::service("sheffield-whs"))),
    ] {
        for path in [
            "/dashboard",
            "/dashboard/reports/referrals-by-route",
            "/dashboard/reports/referrals-by-route/csv",
        ] {
            let mut request = http.get(server.url(path));
            if let Some(t) = &token {
                request = request.bearer_auth(t);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            let expected = if path == "/dashboard" { 200 } else { 401 };
            assert_eq!(status, expected, "{path} with {token:?}: {body}");
            assert!(body.contains("href=\"/dashboard/sign-in\""), "{path}");
            assert!(
                !body.contains("<table") && !body.contains("code,"),
                "{path}: {body}"
            );
        }
    }
    // A sign-out with no session signs nobody out and changes nothing.
    let response = http
        .post(server.url("/dashboard/sign-out"))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_cookie_the_gateway_did_not_seal_as_a_session_opens_nothing() {
    let (_issuer, _keys, server) = started("");
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &server, MANAGER_WORKWELL).await.status,
        303
    );
    let real = browser.cookie("whg_session").unwrap();
    assert_eq!(browser.get(&server.url("/dashboard")).await.status, 200);

    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = real.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["person"]["organisation"], "workwell-south-tyneside");
    // The manager makes themself a commissioner of QF7, keeping the signature.
    claims["person"]["role"] = json!("commissioner");
    claims["person"]["organisation"] = json!("QF7");
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    // The same claims sealed under a key of their own; and unsigned.
    let own_key = whg::signin::session::SessionKey::new(b"a key that is not the gateway's!!");
    let sealed: whg::signin::session::Sealed = serde_json::from_value(claims.clone()).unwrap();
    let resealed = own_key.seal(&sealed, claims["exp"].as_u64().unwrap());
    let unsigned = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        b64.encode(serde_json::to_vec(&claims).unwrap())
    );
    // And a sign-in cookie (sealed by the gateway, but not a session).
    let pending = {
        let other = Browser::new();
        other.get(&server.url("/dashboard/sign-in")).await;
        other.cookie("whg_sign_in").unwrap()
    };
    for (what, cookie) in [
        ("edited", edited),
        ("resealed", resealed),
        ("unsigned", unsigned),
        ("a sign-in cookie", pending),
        ("garbage", "x".repeat(40)),
    ] {
        browser.set_cookie("whg_session", &cookie);
        let page = browser
            .get(&server.url("/dashboard/reports/referrals-by-route/csv"))
            .await;
        assert_eq!(page.status, 401, "{what}: {}", page.body);
        assert!(
            page.set_cookies()
                .iter()
                .any(|c| c.starts_with("whg_session=;")),
            "{what}: the cookie is cleared"
        );
    }
}

#[tokio::test]
async fn a_providers_answer_counts_only_in_the_browser_and_sign_in_it_belongs_to() {
    let (_issuer, _keys, server) = started("");

    // The answer delivered to another browser (a login CSRF: the attacker's own code, sent to
    // a victim): that browser started no sign-in.
    let attacker = Browser::new();
    let callback = answer_from_provider(&attacker, &server, COMMISSIONER_QF7).await;
    let victim = Browser::new();
    let page = victim.get(&callback).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(victim.cookie("whg_session").is_none());

    // Another sign-in's state in this browser.
    let browser = Browser::new();
    let callback = answer_from_provider(&browser, &server, COMMISSIONER_QF7).await;
    let forged = callback.replace("state=", "state=x");
    let page = browser.get(&forged).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("does not belong to this sign-in"),
        "{}",
        page.body
    );
    assert!(browser.cookie("whg_session").is_none());

    // The real answer, once; replayed with the sign-in cookie kept back, the code is spent.
    let browser = Browser::new();
    let callback = answer_from_provider(&browser, &server, COMMISSIONER_QF7).await;
    let kept = browser.cookie("whg_sign_in").unwrap();
    assert_eq!(browser.get(&callback).await.status, 303);
    let replayer = Browser::new();
    replayer.set_cookie("whg_sign_in", &kept);
    let page = replayer.get(&callback).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(replayer.cookie("whg_session").is_none());

    // Cancelled at the provider.
    let browser = Browser::new();
    let callback = answer_from_provider(&browser, &server, COMMISSIONER_QF7).await;
    let state = callback
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let page = browser
        .get(&server.url(&format!(
            "/dashboard/callback?state={state}&error=%3Cscript%3Ealert(1)%3C/script%3E"
        )))
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("(an error)"), "{}", page.body);
    assert!(
        !page.body.contains("alert(1)"),
        "the provider's text is not repeated"
    );

    // A forged error from another site, without the state, ends no sign-in under way.
    let browser = Browser::new();
    let callback = answer_from_provider(&browser, &server, COMMISSIONER_QF7).await;
    let forged = browser
        .get(&server.url("/dashboard/callback?error=access_denied"))
        .await;
    assert_eq!(forged.status, 400, "{}", forged.body);
    assert!(
        browser.cookie("whg_sign_in").is_some(),
        "the sign-in under way is kept"
    );
    assert_eq!(browser.get(&callback).await.status, 303, "and finishes");

    // Nor does an address the callback cannot read: it is refused, says nothing of itself, and
    // the sign-in under way still finishes.
    let browser = Browser::new();
    let callback = answer_from_provider(&browser, &server, COMMISSIONER_QF7).await;
    let garbled = browser
        .get(&server.url("/dashboard/callback?state=a&state=b&mischief=1"))
        .await;
    assert_eq!(garbled.status, 400, "{}", garbled.body);
    assert!(!garbled.body.contains("mischief") && !garbled.body.contains("`state`"));
    assert!(browser.cookie("whg_sign_in").is_some());
    assert_eq!(browser.get(&callback).await.status, 303);

    // A second sign-in cookie planted beside the real one (by a sibling site, or over plain
    // http): which is which cannot be told, so neither is used.
    let browser = Browser::new();
    let callback = answer_from_provider(&browser, &server, COMMISSIONER_QF7).await;
    let real = browser.cookie("whg_sign_in").unwrap();
    let attackers = {
        let attacker = Browser::new();
        answer_from_provider(&attacker, &server, COMMISSIONER_QF7).await;
        attacker.cookie("whg_sign_in").unwrap()
    };
    let page = browser
        .send(browser.http.get(&callback).header(
            "cookie",
            format!("whg_sign_in={attackers}; whg_sign_in={real}"),
        ))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
}

#[tokio::test]
async fn an_account_with_no_dashboard_role_is_refused_and_audited() {
    let (_issuer, _keys, server) = started("");
    let browser = Browser::new();
    let page = sign_in(&browser, &server, "dev-adviser").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("not one this dashboard knows"),
        "{}",
        page.body
    );
    assert!(browser.cookie("whg_session").is_none());

    let ok = Browser::new();
    assert_eq!(sign_in(&ok, &server, COMMISSIONER_QF7).await.status, 303);
    // Both are in the audit trail, as AuditEvents of their own kind.
    let ig = server.as_(Principal::new(Role::InformationGovernance, "X26"));
    let (status, bundle) = ig.get("/fhir/AuditEvent?_count=100").await;
    assert_eq!(status, 200, "{bundle}");
    let events = bundle.to_string();
    assert!(
        events.contains("dashboard sign-in refused: a role the dashboard does not know"),
        "{events}"
    );
    assert!(
        events.contains("signed in to the dashboard as commissioner for QF7"),
        "{events}"
    );
    assert!(events.contains("person:dev-commissioner-qf7"), "{events}");
}

/// The operations role sees every service's alerts, so an identity provider's say-so is not
/// enough: only people of the organisations `[sign_in] operations_organisations` lists may
/// sign in with it (none, unless listed).
#[tokio::test]
async fn operations_is_only_for_the_organisations_the_gateway_lists() {
    let issuer = DevIssuer::start();
    let keys = tempfile::tempdir().unwrap();
    let server = Server::start_with(&format!(
        "[sign_in]\nissuer = {:?}\nclient_id = \"whg-dashboard\"\noperations_organisations = [\"Y12\"]\nsession_key = {:?}\n",
        issuer.url,
        keys.path().join("session-key").display().to_string()
    ));
    let browser = Browser::new();
    let page = sign_in(&browser, &server, "dev-operations").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("cannot sign in as operations here"),
        "{}",
        page.body
    );
    assert!(browser.cookie("whg_session").is_none());
    let ops = browser.get(&server.url("/dashboard/ops")).await;
    assert_ne!(ops.status, 200, "{}", ops.body);
    let ig = server.as_(Principal::new(Role::InformationGovernance, "X26"));
    let (status, bundle) = ig.get("/fhir/AuditEvent?_count=100").await;
    assert_eq!(status, 200, "{bundle}");
    assert!(
        bundle
            .to_string()
            .contains("operations from an organisation not listed for it"),
        "{bundle}"
    );
}

#[tokio::test]
async fn sign_out_needs_the_sessions_own_token_from_the_gateways_own_page() {
    let (_issuer, _keys, server) = started("");
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &server, COMMISSIONER_QF7).await.status,
        303
    );
    let overview = browser.get(&server.url("/dashboard")).await;
    let csrf = field(&overview.body, "csrf").expect("the sign-out form's token");
    let url = server.url("/dashboard/sign-out");

    let wrong = browser
        .post_form(
            &url,
            &[("csrf".into(), "not-the-token".into())],
            &server.base,
        )
        .await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let elsewhere = browser
        .post_form(
            &url,
            &[("csrf".into(), csrf.clone())],
            "https://evil.example",
        )
        .await;
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.body);
    assert_eq!(browser.get(&server.url("/dashboard")).await.status, 200);
    assert!(
        browser
            .get(&server.url("/dashboard"))
            .await
            .body
            .contains("Sign out")
    );

    let copy = browser.cookie("whg_session").unwrap();
    let out = browser
        .post_form(&url, &[("csrf".into(), csrf)], &server.base)
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.location(), "/dashboard/signed-out");
    assert!(browser.cookie("whg_session").is_none());
    let after = browser
        .get(&server.url("/dashboard/reports/referrals-by-route"))
        .await;
    assert_eq!(after.status, 401);
    // A copy of the cookie taken before sign-out opens nothing either, on any instance (a
    // second one beside this, on PostgreSQL: SQLite has one instance).
    let beside = server.on_postgres().then(|| server.start_beside());
    for gateway in std::iter::once(&server).chain(beside.as_ref()) {
        browser.set_cookie("whg_session", &copy);
        let replayed = browser
            .get(&gateway.url("/dashboard/reports/referrals-by-route/csv"))
            .await;
        assert_eq!(replayed.status, 401, "{}", replayed.body);
        assert!(
            replayed.body.contains("You signed out"),
            "{}",
            replayed.body
        );
    }
}

#[tokio::test]
async fn filters_that_are_wrong_are_shown_at_their_fields() {
    let (_issuer, _keys, server) = started("");
    let browser = Browser::new();
    assert_eq!(
        sign_in(&browser, &server, COMMISSIONER_QF7).await.status,
        303
    );
    let page = browser
        .get(&server.url("/dashboard?from=2026-13&to=2026-01&place=S1%3Cb%3E"))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("There is a problem"));
    for field in ["from", "place"] {
        assert!(page.body.contains(&format!("href=\"#{field}\"")), "{field}");
        assert!(
            page.body.contains(&format!("id=\"{field}-error\"")),
            "{field}"
        );
    }
    assert!(page.body.contains("<title>Error: "));
    assert!(!page.body.contains("S1<b>"), "what was typed is escaped");
    assert!(page.body.contains("S1&lt;b&gt;"));
}

#[tokio::test]
async fn no_page_or_download_names_anyone() {
    let (_issuer, _keys, server) = started("");
    let seeded = seed(&server).await;
    let mut everything = String::new();
    for subject in [COMMISSIONER_QF7, MANAGER_WORKWELL] {
        let browser = Browser::new();
        assert_eq!(sign_in(&browser, &server, subject).await.status, 303);
        everything.push_str(&browser.get(&server.url("/dashboard")).await.body);
        for report in whg::reports::CATALOGUE {
            for suffix in ["", "/csv"] {
                let page = browser
                    .get(&server.url(&format!("/dashboard/reports/{}{suffix}", report.name)))
                    .await;
                assert_eq!(page.status, 200, "{}: {}", report.name, page.body);
                everything.push_str(&page.body);
            }
        }
    }
    for identity in &seeded.identities {
        assert!(
            !everything.contains(identity.as_str()),
            "{identity} is on a page"
        );
    }
    // And nothing of theirs reached the logs either.
    let logs = server.logs();
    for identity in &seeded.identities {
        assert!(
            !logs.contains(identity.as_str()),
            "{identity} is in the logs"
        );
    }
}

#[tokio::test]
async fn without_sign_in_configured_nobody_can_sign_in() {
    let server = Server::start();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/dashboard",
        "/dashboard/sign-in",
        "/dashboard/callback?code=x&state=y",
    ] {
        let response = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 503, "{path}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Sign-in is not set up")
        );
    }
    // Its stylesheet is served all the same, and loads nothing from elsewhere.
    let css = http
        .get(server.url("/dashboard/assets/nhsuk-frontend.min.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

/// The README's steps for a commissioner, in a real browser: the fixtures loaded with
/// tools/load_fixtures.py, then sign-in, charts, filters, a report, its CSV and sign-out, each
/// page checked by axe-core (tools/browser/dashboard.mjs). Screenshots stay in
/// target/artefacts/dashboard for CI to keep.
#[tokio::test]
async fn the_dashboard_in_chromium_over_the_fixtures() {
    let Some(chromium) = chromium() else { return };
    // A MESH mailbox whose password file is missing: an alert for the alerts page.
    let missing = tempfile::tempdir().unwrap();
    let missing = missing.path().join("missing").display().to_string();
    let (_issuer, _keys, server) = started(&format!(
        "[reports]\ninclude_test_tenant = true\n[mesh]\nurl = \"https://127.0.0.1:9\"\nmailbox = \"X26ABC1\"\npassword_file = {missing:?}\nshared_key_file = {missing:?}\n"
    ));
    let root = common::root();
    let (ok, out) = common::run(
        Command::new("python3")
            .arg(root.join("tools/load_fixtures.py"))
            .args(["--base", &server.base, "--whg", WHG, "--config"])
            .arg(server.config_path()),
    );
    assert!(ok, "{out}");
    assert!(out.contains("38 referrals sent"), "{out}");

    common::install_browser_tools();
    let shots = root.join("target/artefacts/dashboard");
    let (ok, out) = common::run(
        Command::new("node")
            .arg(root.join("tools/browser/dashboard.mjs"))
            .args([
                "--base",
                &server.base,
                "--chromium",
                &chromium,
                "--screenshots",
            ])
            .arg(&shots),
    );
    assert!(ok, "{out}");
    let seen: serde_json::Value =
        serde_json::from_str(out.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(seen["ok"], true, "{seen}");
    assert!(seen["charts"].as_u64().unwrap() >= 6, "{seen}");
    assert_eq!(seen["alertsAcknowledged"], 1, "{seen}");
    assert!(shots.join("02-overview.png").exists());
}

/// A person's pages are limited per person (each counts every referral of their services):
/// over the burst the answer is 429 with Retry-After, and another person is not held up.
#[tokio::test]
async fn a_person_who_asks_for_page_after_page_is_slowed_alone() {
    let (_issuer, _keys, server) = started(
        "[limits]\nrequests_per_second_per_client = 100000.0\nburst_per_client = 100000.0\n\
         unauthenticated_requests_per_second_per_source = 100000.0\nunauthenticated_burst_per_source = 100000.0\n\
         dashboard_pages_per_second_per_person = 0.01\ndashboard_page_burst_per_person = 3.0\n",
    );
    let greedy = Browser::new();
    assert_eq!(
        sign_in(&greedy, &server, COMMISSIONER_QF7).await.status,
        303
    );
    for _ in 0..3 {
        assert_eq!(greedy.get(&server.url("/dashboard")).await.status, 200);
    }
    let refused = greedy
        .get(&server.url("/dashboard/reports/referrals-by-route/csv"))
        .await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.headers.contains_key("retry-after"));
    assert!(!refused.body.contains("code,"));
    let other = Browser::new();
    assert_eq!(sign_in(&other, &server, MANAGER_WORKWELL).await.status, 303);
    assert_eq!(other.get(&server.url("/dashboard")).await.status, 200);
}

/// An on-call webhook: records every POST (headers and body) it is sent.
#[derive(Clone, Default)]
struct Webhook(std::sync::Arc<Mutex<Vec<(reqwest::header::HeaderMap, String)>>>);

impl Webhook {
    async fn start() -> (Webhook, String) {
        let hook = Webhook::default();
        let recorded = hook.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let recorded = recorded.clone();
                async move {
                    recorded.0.lock().unwrap().push((headers, body));
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (hook, url)
    }

    fn received(&self) -> Vec<(reqwest::header::HeaderMap, serde_json::Value)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(h, b)| (h.clone(), serde_json::from_str(b).unwrap()))
            .collect()
    }

    fn raw(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(h, b)| format!("{h:?}\n{b}\n"))
            .collect()
    }
}

/// The alert ids on a page of `/dashboard/ops` with an Acknowledge button.
fn open_alerts(html: &str) -> Vec<String> {
    html.match_indices("action=\"/dashboard/ops/alerts/")
        .map(|(at, m)| {
            let rest = &html[at + m.len()..];
            rest[..rest.find('/').unwrap()].to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_and_escalated_letters_reach_the_on_call_webhook_once_and_wait_for_a_person() {
    use common::receiver::*;
    use std::time::Duration;
    let (hook, hook_url) = Webhook::start().await;
    let (receiver, receiver_url) = Receiver::start().await;
    // The practice's system is down: every attempt fails, and may be retried.
    receiver.script(&[], Reply::Status(503));
    let issuer = DevIssuer::start();
    let keys = tempfile::tempdir().unwrap();
    let hook_key = keys.path().join("hook-key");
    whg::secret_file::create(&hook_key, b"webhook-signing-key-for-tests").unwrap();
    let mesh_missing = keys.path().join("no-such-file");
    // An SMTP server (aiosmtpd) recording every message it takes.
    let smtp = common::RecordingServer::start("tools/smtp_receiver.py");
    let config = format!(
        "{}\n[alerts]\npoll_interval_ms = 100\nendpoint_failing_after_secs = 1\n\
         [[alerts.routes]]\nname = \"on-call\"\nwebhook_url = {hook_url:?}\nsecret_file = {:?}\n\
         [[alerts.routes]]\nname = \"duty-inbox\"\nemail = \"whs-duty@example.nhs.uk\"\nkinds = [\"letter-escalated\"]\n\
         [alerts.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"whg-alerts@example.nhs.uk\"\n\
         [mesh]\nurl = \"https://127.0.0.1:9\"\nmailbox = \"X26ABC1\"\npassword_file = {:?}\nshared_key_file = {:?}\n",
        letters_config(
            &receiver_url,
            keys.path(),
            "retry_window_secs = 3\nurgent_ack_secs = 1"
        ),
        hook_key.display().to_string(),
        smtp.port,
        mesh_missing.display().to_string(),
        mesh_missing.display().to_string(),
    );
    let server = gateway(&issuer, &keys, &config);
    let (sr, _) = accepted_referral(&server, 1).await;
    let person = common::referral_for(1, WHS)["patient"].clone();
    let (status, headers, body) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{sr}/letters"),
            &letter("routine", "Seen twice."),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let routine = common::location_id(&headers);
    let (status, headers, body) = whs(&server)
        .post(
            &format!("/api/v1/referrals/{sr}/letters"),
            &letter(
                "urgent",
                "Safeguarding concern: please contact the patient today.",
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let urgent = common::location_id(&headers);

    // Each alert reaches the webhook: the urgent letter escalated, both letters dead at the end
    // of the window, the practice's endpoint failing, the MESH mailbox unusable.
    let kinds = [
        "letter-dead",
        "letter-escalated",
        "endpoint-failing",
        "mesh-mailbox",
    ];
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<String> = hook
            .received()
            .iter()
            .map(|(_, b)| b["kind"].as_str().unwrap().to_string())
            .collect();
        if kinds.iter().all(|k| got.iter().any(|g| g == k)) {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "alerts so far: {got:?}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The letters go on failing (and the endpoint-failing alert is raised again each time):
    // still one of each, each sent once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received = hook.received();
    let mut ids: Vec<&str> = received
        .iter()
        .map(|(h, _)| h["idempotency-key"].to_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        received.len(),
        "an alert was sent twice: {}",
        hook.raw()
    );
    assert_eq!(received.len(), 5, "{}", hook.raw());
    let of = |kind: &str, subject: &str| {
        received
            .iter()
            .find(|(_, b)| b["kind"] == kind && (subject.is_empty() || b["subject"] == subject))
            .map(|(h, b)| (h.clone(), b.clone()))
            .unwrap_or_else(|| panic!("no {kind} alert about {subject}: {}", hook.raw()))
    };
    let (dead_headers, dead) = of("letter-dead", &routine);
    of("letter-dead", &urgent);
    assert_eq!(dead["subject"], routine.as_str());
    assert_eq!(dead["service"], "sheffield-whs");
    assert_eq!(
        dead["acknowledge"],
        server.url("/dashboard/ops").as_str(),
        "the webhook says where to acknowledge it"
    );
    assert_eq!(
        dead_headers["x-whg-signature"].to_str().unwrap(),
        whg::app::alerts::signature(
            b"webhook-signing-key-for-tests",
            serde_json::to_string(&dead).unwrap().as_bytes()
        ),
        "signed with the route's key"
    );
    let (_, escalated) = of("letter-escalated", &urgent);
    assert_eq!(escalated["subject"], urgent.as_str());
    assert_eq!(escalated["dutyContact"], "Duty adviser, 0114 496 0000");
    assert!(
        escalated["summary"]
            .as_str()
            .unwrap()
            .contains("Phone the practice now")
    );
    let (_, failing) = of("endpoint-failing", "");
    assert_eq!(failing["subject"], common::DEFAULT_PRACTICE);
    let (_, mesh) = of("mesh-mailbox", "");
    assert_eq!(mesh["subject"], "X26ABC1");
    // The escalation, and only it, went to the duty inbox by e-mail too.
    let mails = smtp.records();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail["to"][0], "whs-duty@example.nhs.uk");
    assert_eq!(mail["from"], "whg-alerts@example.nhs.uk");
    assert!(
        mail["headers"]["subject"]
            .as_str()
            .unwrap()
            .contains(escalated["id"].as_str().unwrap()),
        "{mail}"
    );
    let text = mail["body"].as_str().unwrap();
    assert!(
        text.contains("Duty contact: Duty adviser, 0114 496 0000"),
        "{text}"
    );
    assert!(text.contains(&server.url("/dashboard/ops")), "{text}");
    // Nothing about the person in any of them.
    let raw = format!("{}{mails:?}", hook.raw());
    for secret in [
        person["nhsNumber"].as_str().unwrap(),
        person["name"]["family"].as_str().unwrap(),
        person["name"]["given"][0].as_str().unwrap(),
        person["birthDate"].as_str().unwrap(),
        "Safeguarding concern",
    ] {
        assert!(!raw.contains(secret), "'{secret}' reached the webhook");
    }

    // The operations page: every alert for operations staff; a service manager only their
    // service's letters; another service's manager none; a commissioner no page.
    let operations = Browser::new();
    sign_in(&operations, &server, "dev-operations").await;
    let page = operations.get(&server.url("/dashboard/ops")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let all = open_alerts(&page.body);
    assert_eq!(all.len(), 5, "{}", page.body);
    assert!(page.body.contains("Duty adviser, 0114 496 0000"));
    let dashboard = operations.get(&server.url("/dashboard")).await;
    assert_eq!(dashboard.status, 303, "operations staff have no figures");
    assert_eq!(dashboard.location(), "/dashboard/ops");

    let manager = Browser::new();
    sign_in(&manager, &server, "dev-manager-sheffield-whs").await;
    let page = manager.get(&server.url("/dashboard/ops")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let own = open_alerts(&page.body);
    assert_eq!(own.len(), 3, "the service's letters' alerts: {}", page.body);
    assert!(!page.body.contains("X26ABC1") && !page.body.contains("has been failing"));

    let other = Browser::new();
    sign_in(&other, &server, MANAGER_WORKWELL).await;
    let page = other.get(&server.url("/dashboard/ops")).await;
    assert_eq!(open_alerts(&page.body).len(), 0, "{}", page.body);
    let csrf_other = field(&page.body, "csrf").unwrap();
    let dead_id = dead["id"].as_str().unwrap().to_string();
    let acknowledge = server.url(&format!("/dashboard/ops/alerts/{dead_id}/acknowledge"));
    let origin = server.url("");
    let origin = origin.trim_end_matches('/');
    let refused = other
        .post_form(&acknowledge, &[("csrf".into(), csrf_other)], origin)
        .await;
    assert_eq!(
        refused.status, 404,
        "another service's alert is not theirs to acknowledge"
    );

    let commissioner = Browser::new();
    sign_in(&commissioner, &server, COMMISSIONER_QF7).await;
    assert_eq!(
        commissioner.get(&server.url("/dashboard/ops")).await.status,
        403
    );

    // Acknowledged by the service's manager: the page's own token, from the gateway's origin.
    let page = manager.get(&server.url("/dashboard/ops")).await;
    let csrf = field(&page.body, "csrf").unwrap();
    let forged = manager
        .post_form(
            &acknowledge,
            &[("csrf".into(), "not-the-token".into())],
            origin,
        )
        .await;
    assert_eq!(forged.status, 403);
    let cross_site = manager
        .post_form(
            &acknowledge,
            &[("csrf".into(), csrf.clone())],
            "https://evil.example",
        )
        .await;
    assert_eq!(cross_site.status, 403);
    let done = manager
        .post_form(&acknowledge, &[("csrf".into(), csrf.clone())], origin)
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/dashboard/ops?done=acknowledged");
    let page = manager.get(&server.url(&done.location())).await;
    assert!(page.body.contains("The alert is acknowledged."));
    assert_eq!(open_alerts(&page.body).len(), 2);
    assert!(page.body.contains(" by you"), "{}", page.body);
    let again = manager
        .post_form(&acknowledge, &[("csrf".into(), csrf)], origin)
        .await;
    assert_eq!(again.location(), "/dashboard/ops?done=already");
    let page = operations.get(&server.url("/dashboard/ops")).await;
    assert_eq!(open_alerts(&page.body).len(), 4, "gone for everyone");
    assert!(page.body.contains("by a colleague"), "{}", page.body);
    assert!(
        !page.body.contains("dev-manager-sheffield-whs"),
        "who acknowledged is not shown to another organisation"
    );

    // Raised and acknowledged, in the audit trail.
    let (status, trail) = server
        .as_(Principal::new(Role::InformationGovernance, "IG1"))
        .get("/fhir/AuditEvent?_count=500")
        .await;
    assert_eq!(status, 200, "{trail}");
    let subtypes: Vec<&str> = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["subtype"][0]["code"].as_str())
        .collect();
    assert_eq!(
        subtypes.iter().filter(|s| **s == "alert-raised").count(),
        5,
        "{subtypes:?}"
    );
    assert_eq!(
        subtypes
            .iter()
            .filter(|s| **s == "alert-acknowledged")
            .count(),
        1
    );
    drop(receiver);
}
