//! Use cases of the operational alerts: list what a person may see, acknowledge one, and the
//! notifier that sends them to the on-call routes. (They are raised by the outbox worker, in
//! the transaction of the change that raises them.)

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::alerts::{self, Alert};
use crate::audit::{Event, Kind, audit_event};
use crate::caller::Principal;
use crate::config::{AlertRoute, Config};
use crate::store::{AlertNotice, NoticeOutcome, Singleton, Store, StoreError};

/// What the operations page lists for a person: the alerts still open, and the latest
/// acknowledged, newest first.
pub struct Listed {
    pub open: Vec<Alert>,
    pub acknowledged: Vec<Alert>,
}

/// The alerts `principal` may see (the one rule: [`alerts::AlertScope`], asked of the store):
/// up to 500 open and the 20 acknowledged last.
pub async fn listed(store: &dyn Store, principal: &Principal) -> Result<Listed, StoreError> {
    let Some(scope) = alerts::AlertScope::of(principal) else {
        return Ok(Listed {
            open: Vec::new(),
            acknowledged: Vec::new(),
        });
    };
    Ok(Listed {
        open: store.alerts(&scope, false, 500).await?,
        acknowledged: store.alerts(&scope, true, 20).await?,
    })
}

#[derive(Debug, PartialEq, Eq)]
pub enum Acknowledged {
    Done,
    /// Someone acknowledged it first.
    Already,
    /// No such alert, or not one this person may see: the same answer for both.
    NotFound,
}

/// Alert `id` acknowledged by the person `principal` stands for (`subject`, their sign-in
/// subject), audited in the same transaction.
pub async fn acknowledge(
    store: &dyn Store,
    principal: &Principal,
    subject: &str,
    id: &str,
    request_id: Option<String>,
) -> Result<Acknowledged, StoreError> {
    // Alert ids are the gateway's UUIDs: anything else is not looked up.
    if uuid::Uuid::try_parse(id).is_err() {
        return Ok(Acknowledged::NotFound);
    }
    let Some(alert) = store.alert(id).await? else {
        return Ok(Acknowledged::NotFound);
    };
    if !alerts::visible_to(principal, &alert.raised) {
        return Ok(Acknowledged::NotFound);
    }
    if alert.acknowledged.is_some() {
        return Ok(Acknowledged::Already);
    }
    let now = Utc::now();
    let audit = audit_event(&Event {
        kind: Kind::AlertAcknowledged,
        principal: Some(principal),
        patient: None,
        entities: Vec::new(),
        decision: None,
        permitted: true,
        description: format!(
            "alert {id} acknowledged: {} about {}",
            alert.raised.kind.code(),
            alert.raised.subject
        ),
        at: now,
        request_id,
    });
    Ok(if store.acknowledge_alert(id, subject, now, audit).await? {
        Acknowledged::Done
    } else {
        Acknowledged::Already
    })
}

/// Sends alerts to the on-call routes until the process ends: one instance at a time (the
/// others ask each poll and one takes over if it stops), each alert once it is stored, to the
/// routes that did not take it again after `notify_retry_secs`, at most `max_notify_attempts`
/// times, and never once a person has acknowledged it. A receiver de-duplicates by the
/// alert's id (a webhook's `Idempotency-Key`, an e-mail's subject): an instance stopped between
/// a send and its record sends it again.
pub async fn run_notifier(
    store: std::sync::Arc<dyn Store>,
    config: std::sync::Arc<Config>,
    http: reqwest::Client,
) {
    let routes = match prepared_routes(&config) {
        Ok(routes) => routes,
        Err(e) => {
            tracing::error!(error = %e, "alerts will not be sent to the on-call routes");
            return;
        }
    };
    if routes.is_empty() {
        return;
    }
    let ops_page = format!(
        "{}/dashboard/ops",
        config
            .base_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
    );
    let poll = Duration::from_millis(config.alerts.poll_interval_ms.max(100));
    loop {
        tokio::time::sleep(poll).await;
        match store.leads(Singleton::AlertNotifier).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which instance sends alerts");
                continue;
            }
        }
        let max_attempts = config.alerts.max_notify_attempts;
        let due = match store.alerts_to_notify(Utc::now(), max_attempts, 50).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the alerts to send");
                continue;
            }
        };
        for alert in due {
            // A batch can take minutes to send (each route has its timeout): one a person
            // acknowledged since it was read is not sent.
            if let Ok(Some(now)) = store.alert(&alert.id).await
                && now.acknowledged.is_some()
            {
                continue;
            }
            let notice = notify(&http, &routes, &alert, &ops_page, &config).await;
            if matches!(notice.outcome, NoticeOutcome::RetryAt(_))
                && alert.notify_attempts + 1 >= i64::from(max_attempts)
            {
                tracing::error!(alert_id = %alert.id, attempts = max_attempts, "an alert could not be sent to every on-call route and will not be tried again; it stays on the operations page");
            }
            if let Err(e) = store.record_alert_notice(&alert.id, notice).await {
                tracing::warn!(alert_id = %alert.id, error = %e, "alert sent but not recorded as sent; it will be sent again");
            }
        }
    }
}

use crate::mail::Mailer;

/// Where a route sends, ready to send.
enum Channel {
    Webhook {
        url: String,
        key: Option<Vec<u8>>,
    },
    Email {
        to: lettre::message::Mailbox,
        from: lettre::message::Mailbox,
        mailer: Box<Mailer>,
    },
}

struct Prepared<'a> {
    route: &'a AlertRoute,
    channel: Channel,
}

/// Whether every route can be sent through (its signing key read, its mail server's settings
/// and password usable): checked at start, so a route that could never work stops the gateway
/// with the reason rather than failing quietly later.
pub fn check_routes(config: &Config) -> Result<(), String> {
    prepared_routes(config).map(drop)
}

fn prepared_routes(config: &Config) -> Result<Vec<Prepared<'_>>, String> {
    let timeout = Duration::from_millis(config.alerts.notify_timeout_ms);
    config
        .alerts
        .routes
        .iter()
        .map(|route| {
            let problem = |e: String| format!("alerts.routes '{}': {e}", route.name);
            let channel = match (&route.webhook_url, &route.email) {
                (Some(url), _) => Channel::Webhook {
                    url: url.clone(),
                    key: route
                        .secret_file
                        .as_ref()
                        .map(|path| {
                            crate::secret_file::read(path)
                                .map(|text| text.trim().as_bytes().to_vec())
                                .map_err(|e| problem(e.to_string()))
                        })
                        .transpose()?,
                },
                (None, Some(to)) => {
                    let smtp =
                        config.alerts.smtp.as_ref().ok_or_else(|| {
                            problem("no [alerts.smtp] to send e-mail through".into())
                        })?;
                    Channel::Email {
                        to: to.parse().map_err(|e| problem(format!("{to}: {e}")))?,
                        from: smtp
                            .from
                            .parse()
                            .map_err(|e| problem(format!("alerts.smtp.from: {e}")))?,
                        mailer: Box::new(
                            crate::mail::transport(smtp, timeout, "alerts.smtp")
                                .map_err(problem)?,
                        ),
                    }
                }
                (None, None) => return Err(problem("no webhook_url or email".into())),
            };
            Ok(Prepared { route, channel })
        })
        .collect()
}

/// The e-mail for `alert`: plain text, the alert's id in the subject.
fn email_text(alert: &Alert, ops_page: &str) -> (String, String) {
    let raised = &alert.raised;
    let subject = format!("[WHG alert] {} ({})", raised.kind.title(), alert.id);
    let mut body = format!("{}\n\n{}\n\n", raised.kind.title(), raised.summary);
    body.push_str(&format!(
        "Raised: {}\n",
        crate::fhir::search::format_instant(raised.raised_at)
    ));
    if let Some(service) = &raised.service {
        body.push_str(&format!("Service: {service}\n"));
    }
    if let Some(contact) = &raised.duty_contact {
        body.push_str(&format!("Duty contact: {contact}\n"));
    }
    body.push_str(&format!(
        "Alert: {}\n\nAcknowledge it on the alerts page: {ops_page}\n",
        alert.id
    ));
    (subject, body)
}

/// Sends `alert` to every route that takes its kind and has not taken it already.
async fn notify(
    http: &reqwest::Client,
    routes: &[Prepared<'_>],
    alert: &Alert,
    ops_page: &str,
    config: &Config,
) -> AlertNotice {
    let body = alerts::webhook_payload(alert, ops_page).to_string();
    let timeout = Duration::from_millis(config.alerts.notify_timeout_ms);
    let mut all_taken = true;
    let mut taken_by = Vec::new();
    for prepared in routes.iter().filter(|p| {
        alerts::routed(&p.route.kinds, alert.raised.kind) && !alert.taken_by.contains(&p.route.name)
    }) {
        let name = &prepared.route.name;
        let taken = match &prepared.channel {
            Channel::Webhook { url, key } => {
                let mut request = http
                    .post(url)
                    .timeout(timeout)
                    .header("content-type", "application/json")
                    .header("idempotency-key", &alert.id)
                    .body(body.clone());
                if let Some(key) = key {
                    request = request.header("x-whg-signature", signature(key, body.as_bytes()));
                }
                match request.send().await {
                    Ok(r) if r.status().is_success() => true,
                    Ok(r) => {
                        tracing::warn!(route = %name, status = r.status().as_u16(), alert_id = %alert.id, "an on-call route refused an alert");
                        false
                    }
                    Err(e) => {
                        // The error's own text holds the URL, which for many webhooks is the
                        // secret.
                        let why = if e.is_timeout() {
                            "timed out"
                        } else if e.is_connect() {
                            "cannot connect"
                        } else {
                            "request failed"
                        };
                        tracing::warn!(route = %name, error = why, alert_id = %alert.id, "an on-call route could not be reached");
                        false
                    }
                }
            }
            Channel::Email { to, from, mailer } => {
                use lettre::AsyncTransport as _;
                let (subject, text) = email_text(alert, ops_page);
                let message = lettre::Message::builder()
                    .from(from.clone())
                    .to(to.clone())
                    .subject(subject)
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .body(text);
                match message {
                    Ok(message) => match mailer.send(message).await {
                        Ok(_) => true,
                        Err(e) => {
                            // The mail server's own answer stays out of the logs; its class does not.
                            let why = crate::mail::failure_class(&e);
                            tracing::warn!(route = %name, error = why, alert_id = %alert.id, "an on-call e-mail was not sent");
                            false
                        }
                    },
                    Err(e) => {
                        tracing::error!(route = %name, error = %e, alert_id = %alert.id, "an on-call e-mail could not be made");
                        false
                    }
                }
            }
        };
        if taken {
            taken_by.push(name.clone());
        }
        all_taken &= taken;
    }
    let now = Utc::now();
    AlertNotice {
        taken_by,
        at: now,
        outcome: if all_taken {
            NoticeOutcome::AllTaken
        } else {
            NoticeOutcome::RetryAt(now + retry_after(config))
        },
    }
}

fn retry_after(config: &Config) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(config.alerts.notify_retry_secs).unwrap_or(60))
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
