//! Letters by secure e-mail (`channel = "email"`): for recipients with no FHIR endpoint, such as
//! a Talking Therapies service or a voluntary organisation reading an NHSmail shared mailbox.
//! The message names nobody: its subject and text say which service wrote and quote the
//! referrer's own reference; the person's details are in the attached PDF only, which is what
//! a practice's system would file. Every attempt of one letter carries the same `Message-ID`,
//! so a mailbox that received an attempt whose answer was lost can tell the next is a repeat.
//!
//! The mail server taking the message is as far as the gateway can see: it is recorded as the
//! letter accepted. A permanent refusal (5xx) is the letter refused; anything else is retried.

use std::time::Duration;

use lettre::AsyncTransport as _;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType};

use super::{Failure, Outcome};
use crate::config::SmtpConfig;
use crate::mail::Mailer;

/// The gateway's mail server for letters, ready to send.
pub struct EmailChannel {
    mailer: Mailer,
    from: Mailbox,
}

/// Whom a letter by e-mail is for, which decides what its message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// An organisation that referred the person (or their practice): it files the letter.
    Referrer,
    /// The person's employer: a letter the person read and approved for it.
    Employer,
}

/// One letter as an e-mail.
pub struct LetterMail<'a> {
    /// The letter's message id (one per letter, the same on every attempt).
    pub message_id: &'a str,
    pub to: &'a str,
    pub audience: Audience,
    pub service_name: &'a str,
    /// The letter's title ("Feedback from …", "Referral not accepted by …").
    pub title: &'a str,
    /// The referrer's own id of the referral, when it gave one.
    pub their_reference: Option<&'a str>,
    /// Where the recipient answers (the service's contact), if known.
    pub reply_to: Option<&'a str>,
    pub pdf: Vec<u8>,
}

impl EmailChannel {
    /// The channel `[delivery.smtp]` describes, each exchange bounded by `timeout`.
    pub fn new(smtp: &SmtpConfig, timeout: Duration) -> Result<EmailChannel, String> {
        Ok(EmailChannel {
            mailer: crate::mail::transport(smtp, timeout, "delivery.smtp")?,
            from: smtp
                .from
                .parse()
                .map_err(|e| format!("delivery.smtp.from: {e}"))?,
        })
    }

    pub async fn send(&self, letter: &LetterMail<'_>) -> Outcome {
        let message = match message(&self.from, letter) {
            Ok(m) => m,
            // The address was checked when the configuration was loaded; a route that still
            // cannot be written to is the operator's to fix, not worth retrying.
            Err(reason) => {
                return Outcome::Rejected {
                    error: Failure::new(reason),
                };
            }
        };
        match self.mailer.send(message).await {
            Ok(_) => Outcome::Accepted,
            Err(e) => {
                let why = crate::mail::failure_class(&e);
                let error = Failure::new(format!("e-mail {why}")).with_remote(&e.to_string());
                if e.is_permanent() {
                    Outcome::Rejected { error }
                } else {
                    Outcome::Retry {
                        error,
                        retry_after: None,
                    }
                }
            }
        }
    }
}

/// The message for `letter` from `from`: text that names nobody, and the PDF.
fn message(from: &Mailbox, letter: &LetterMail<'_>) -> Result<lettre::Message, String> {
    let to: Mailbox = letter
        .to
        .parse()
        .map_err(|e| format!("the route's address cannot be used: {e}"))?;
    let mut text = match letter.audience {
        Audience::Referrer => format!(
            "{} has sent a letter about a person you referred to it.\n\n",
            letter.service_name
        ),
        Audience::Employer => format!(
            "{} has sent a letter for you from one of your employees, who has read it and agreed to it being sent to you.\n\n",
            letter.service_name
        ),
    };
    if let Some(reference) = letter.their_reference {
        text.push_str(&format!("Your reference for the referral: {reference}\n\n"));
    }
    text.push_str(match letter.audience {
        Audience::Referrer => {
            "The letter is attached as a PDF. It is confidential: file it in the person's record \
             and do not forward it outside your organisation.\n"
        }
        Audience::Employer => {
            "The letter is attached as a PDF. It is confidential: keep it with the person's \
             employment record and share it only with those who need it to support them.\n"
        }
    });
    if let Some(reply) = letter.reply_to {
        text.push_str(&format!("\nTo answer it, contact {reply}.\n"));
    }
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .to(to)
        .subject(format!("{} (letter {})", letter.title, letter.message_id))
        .message_id(Some(format!("<{}@work-health-gateway>", letter.message_id)));
    if let Some(reply) = letter.reply_to.and_then(|r| r.parse::<Mailbox>().ok()) {
        builder = builder.reply_to(reply);
    }
    let pdf_type = ContentType::parse("application/pdf").map_err(|e| e.to_string())?;
    builder
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(text))
                .singlepart(
                    Attachment::new(format!("letter-{}.pdf", letter.message_id))
                        .body(letter.pdf.clone(), pdf_type),
                ),
        )
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> LetterMail<'static> {
        LetterMail {
            message_id: "0193a1b2-0000-7000-8000-000000000001",
            to: "talkingtherapies@example.org",
            audience: Audience::Referrer,
            service_name: "Sheffield Work and Health Service",
            title: "Feedback from Sheffield Work and Health Service",
            their_reference: Some("TT-2026-0042"),
            reply_to: Some("whs@example.nhs.uk"),
            pdf: b"%PDF-1.7 synthetic".to_vec(),
        }
    }

    #[test]
    fn the_message_names_nobody_and_carries_the_pdf_under_the_letters_message_id() {
        let from: Mailbox = "whg-letters@example.nhs.uk".parse().unwrap();
        let raw = String::from_utf8(message(&from, &letter()).unwrap().formatted()).unwrap();
        // Long headers are folded (RFC 5322 2.2.3); read them unfolded.
        let raw = raw.replace("\r\n ", " ");
        assert!(
            raw.contains("Subject: Feedback from Sheffield Work and Health Service (letter 0193a1b2-0000-7000-8000-000000000001)"),
            "{raw}"
        );
        assert!(
            raw.contains("Message-ID: <0193a1b2-0000-7000-8000-000000000001@work-health-gateway>"),
            "{raw}"
        );
        assert!(
            raw.contains("Your reference for the referral: TT-2026-0042"),
            "{raw}"
        );
        assert!(raw.contains("Content-Type: application/pdf"), "{raw}");
        assert!(raw.contains("Reply-To: whs@example.nhs.uk"), "{raw}");
    }

    #[test]
    fn an_address_that_cannot_be_written_to_is_refused_not_retried() {
        let from: Mailbox = "whg-letters@example.nhs.uk".parse().unwrap();
        let mut bad = letter();
        bad.to = "not an address";
        assert!(message(&from, &bad).is_err());
    }
}
