//! The SMTP transport one `SmtpConfig` describes: what on-call alerts (`[alerts.smtp]`) and
//! letters sent by secure e-mail (`[delivery.smtp]`) go through.

use std::time::Duration;

use crate::config::{SmtpConfig, SmtpTls};

pub type Mailer = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;

/// The transport `smtp` describes (`label` names its table in errors), each exchange bounded by
/// `timeout`. The password is read from its file here, so a file that cannot be read stops the
/// gateway at start rather than at the first message.
pub fn transport(smtp: &SmtpConfig, timeout: Duration, label: &str) -> Result<Mailer, String> {
    let builder = match smtp.tls {
        SmtpTls::Starttls => Mailer::starttls_relay(&smtp.host).map_err(|e| e.to_string())?,
        SmtpTls::Tls => Mailer::relay(&smtp.host).map_err(|e| e.to_string())?,
        SmtpTls::None => Mailer::builder_dangerous(&smtp.host),
    };
    let mut builder = builder.port(smtp.port).timeout(Some(timeout));
    if let Some(user) = &smtp.username {
        let password = match &smtp.password_file {
            Some(path) => crate::secret_file::read(path)
                .map_err(|e| format!("{label}.password_file: {e}"))?
                .trim()
                .to_string(),
            None => String::new(),
        };
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            password,
        ));
    }
    Ok(builder.build())
}

/// Why a mail server did not take a message, in the gateway's words: its own answer can carry
/// anything, and stays out of logs.
pub fn failure_class(e: &lettre::transport::smtp::Error) -> &'static str {
    if e.is_permanent() {
        "refused permanently"
    } else if e.is_transient() {
        "refused for now"
    } else {
        "cannot reach the mail server"
    }
}
