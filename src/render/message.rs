//! Render stage: an [`Email`] → an RFC 5322 message: its headers (the
//! compliance ones included) written by lettre, its body the digest's
//! encoded `multipart/alternative` with the reader's fields spliced in.
//!
//! Imports only its siblings in `render` and lettre.

use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use lettre::message::header::{
    self, ContentTransferEncoding, ContentType, HeaderName, HeaderValue, Headers, MIME_VERSION_1_0,
};
use lettre::message::{Mailbox, Mailboxes};

use super::Email;

/// Bytes a message takes beyond its compiled body, about: its headers and
/// the reader's fields spliced into the body.
const HEADROOM: usize = 4096;

/// The sender side of every message.
#[derive(Debug, Clone)]
pub struct Sender {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
}

/// The bytes of the message for `email`, dated `date`: the headers
/// written by lettre (encoding and folding), then the digest's body. No
/// `Message` is built: its builder re-parses the addresses it was given
/// to make an envelope, which the caller already has.
pub fn write(email: &Email, sender: &Sender, date: DateTime<FixedOffset>) -> Result<Vec<u8>> {
    let mut headers = Headers::new();
    headers.set(header::From::from(Mailboxes::from(sender.from.clone())));
    headers.set(header::To::from(Mailboxes::from(email.to.clone())));
    headers.set(header::Subject::from(email.subject.clone()));
    headers.set(header::Date::new(system_time(date)));
    headers.set(header::MessageId::from(email.message_id.clone()));
    for (name, value) in [
        ("List-Id", email.list_id.clone()),
        ("List-Unsubscribe", email.list_unsubscribe.clone()),
        (
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".to_string(),
        ),
    ] {
        headers.insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str(name),
            value,
        ));
    }
    if let Some(reply_to) = &sender.reply_to {
        headers.set(header::ReplyTo::from(Mailboxes::from(reply_to.clone())));
    }
    headers.set(MIME_VERSION_1_0);
    let content_type = format!("multipart/alternative; boundary=\"{}\"", email.boundary());
    headers.set(
        ContentType::parse(&content_type)
            .with_context(|| format!("cannot write the Content-Type {content_type}"))?,
    );
    // Quoted-printable parts: the multipart body is 7-bit.
    headers.set(ContentTransferEncoding::SevenBit);
    // Room for the headers and the body with its fields: one allocation.
    let mut out = Vec::with_capacity(HEADROOM + email.body_len());
    write!(out, "{headers}\r\n").context("cannot write the headers")?;
    email.body(&mut out);
    Ok(out)
}

fn system_time(date: DateTime<FixedOffset>) -> SystemTime {
    let seconds = u64::try_from(date.timestamp()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}
