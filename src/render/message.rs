//! Render stage: an [`Email`] → an RFC 5322 message: its headers (the
//! compliance ones included) written by lettre, its body the digest's
//! encoded `multipart/alternative` with the reader's fields spliced in.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use lettre::Message;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0,
};
use lettre::message::{Body, Mailbox};

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
    let content_type = format!("multipart/alternative; boundary=\"{}\"", email.boundary());
    let content_type = ContentType::parse(&content_type)
        .with_context(|| format!("cannot write the Content-Type {content_type}"))?;
    let mut body = Vec::new();
    email.body(&mut body);
    builder
        .header(MIME_VERSION_1_0)
        .header(content_type)
        // Quoted-printable parts: the multipart body is 7-bit.
        .body(Body::dangerous_pre_encoded(
            body,
            ContentTransferEncoding::SevenBit,
        ))
        .with_context(|| format!("cannot build the message to {}", email.to.email))
}

fn system_time(date: DateTime<FixedOffset>) -> SystemTime {
    let seconds = u64::try_from(date.timestamp()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}
