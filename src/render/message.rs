//! Render stage: an [`Email`] → an RFC 5322 message with its compliance
//! headers, built with lettre (`multipart/alternative`: text, then HTML).

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};

use super::Email;

/// The sender side of every message.
#[derive(Debug, Clone)]
pub struct Sender {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
}

/// The message for `email`, dated `date`.
pub fn build(email: &Email, sender: &Sender, date: DateTime<FixedOffset>) -> Result<Message> {
    let mut builder = Message::builder()
        .from(sender.from.clone())
        .to(email.to.clone())
        .subject(email.subject.clone())
        .date(system_time(date))
        .message_id(Some(email.message_id.clone()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Id"),
            email.list_id.clone(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            email.list_unsubscribe.clone(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".to_string(),
        ));
    if let Some(reply_to) = &sender.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
        .with_context(|| format!("cannot build the message to {}", email.to.email))
}

fn system_time(date: DateTime<FixedOffset>) -> SystemTime {
    let seconds = u64::try_from(date.timestamp()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}
