//! Ledger stage: deliveries, one per reader of an issue, and the status
//! each has reached.
//!
//! A delivery is `sending` from just before DATA until the server's reply
//! is recorded; a later run that finds it so cannot know whether the 250
//! came (RFC 5321 §4.5.3.2), and [`recover`](Ledger::recover) makes it
//! `unknown`. Each status change commits before it returns, and `sent` is
//! final: nothing but `sent` again may be written over it.

use std::str::FromStr;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use rusqlite::{OptionalExtension, Row};

use super::{Ledger, parse_time};
use crate::unsubscribe::AddressKey;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not attempted yet, or put back before DATA.
    Pending,
    /// DATA is under way (or was, when the process died).
    Sending,
    /// The server answered 250 to DATA.
    Sent,
    /// A 4xx reply: to be tried again from `next_attempt`.
    Deferred,
    /// A 5xx reply, or too many 4xx: never tried again.
    Failed,
    /// Interrupted after DATA: the message may have been delivered.
    Unknown,
    /// The reader unsubscribed or bounced before it went out.
    Suppressed,
}

impl DeliveryStatus {
    /// The status as the ledger stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unknown => "unknown",
            DeliveryStatus::Suppressed => "suppressed",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = UnknownStatus;

    /// The status [`as_str`](DeliveryStatus::as_str) wrote (exactly).
    fn from_str(text: &str) -> Result<DeliveryStatus, UnknownStatus> {
        match text {
            "pending" => Ok(DeliveryStatus::Pending),
            "sending" => Ok(DeliveryStatus::Sending),
            "sent" => Ok(DeliveryStatus::Sent),
            "deferred" => Ok(DeliveryStatus::Deferred),
            "failed" => Ok(DeliveryStatus::Failed),
            "unknown" => Ok(DeliveryStatus::Unknown),
            "suppressed" => Ok(DeliveryStatus::Suppressed),
            _ => Err(UnknownStatus(text.to_string())),
        }
    }
}

/// A delivery status gazette does not know, as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown delivery status '{0}' \
     (expected pending, sending, sent, deferred, failed, unknown or suppressed)"
)]
pub struct UnknownStatus(pub String);

/// A delivery as an issue is frozen with (it starts `pending`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub key: AddressKey,
    pub address: String,
    pub segment: String,
    pub variant: String,
    /// JSON the caller chose: the picked slugs and why.
    pub picks: String,
    pub message_id: String,
}

/// A delivery as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub issue_id: String,
    pub key: AddressKey,
    pub address: String,
    pub segment: String,
    pub variant: String,
    pub picks: String,
    pub message_id: String,
    pub status: DeliveryStatus,
    /// How many times DATA was begun.
    pub attempts: u32,
    /// The last SMTP reply, or why there was none.
    pub last_reply: Option<String>,
    /// When a `deferred` delivery may be tried again.
    pub next_attempt: Option<DateTime<FixedOffset>>,
    pub updated: DateTime<FixedOffset>,
}

/// Deliveries of one issue by status, for summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u64,
    pub sending: u64,
    pub sent: u64,
    pub deferred: u64,
    pub failed: u64,
    pub unknown: u64,
    pub suppressed: u64,
}

/// Reads deliveries; `WHERE` and `ORDER BY` follow.
const SELECT: &str = "SELECT issue_id, address_key, address, segment, variant, picks, message_id, \
     status, attempts, last_reply, next_attempt, updated FROM deliveries";

impl Ledger {
    /// The delivery of `key` in `issue`.
    pub fn delivery(&self, issue: &str, key: AddressKey) -> Result<Option<Delivery>> {
        self.conn
            .prepare_cached(&format!(
                "{SELECT} WHERE issue_id = ?1 AND address_key = ?2"
            ))?
            .query_row((issue, key.hex()), Stored::read)
            .optional()?
            .map(Stored::check)
            .transpose()
            .with_context(|| format!("cannot read the delivery of issue {issue} to {}", key.hex()))
    }
}

/// A row as stored, before its text is checked.
struct Stored {
    issue_id: String,
    key: String,
    address: String,
    segment: String,
    variant: String,
    picks: String,
    message_id: String,
    status: String,
    attempts: i64,
    last_reply: Option<String>,
    next_attempt: Option<String>,
    updated: String,
}

impl Stored {
    fn read(row: &Row<'_>) -> rusqlite::Result<Stored> {
        Ok(Stored {
            issue_id: row.get(0)?,
            key: row.get(1)?,
            address: row.get(2)?,
            segment: row.get(3)?,
            variant: row.get(4)?,
            picks: row.get(5)?,
            message_id: row.get(6)?,
            status: row.get(7)?,
            attempts: row.get(8)?,
            last_reply: row.get(9)?,
            next_attempt: row.get(10)?,
            updated: row.get(11)?,
        })
    }

    fn check(self) -> Result<Delivery> {
        let context = || {
            format!(
                "the ledger's delivery of issue {} to '{}' is damaged",
                self.issue_id, self.key
            )
        };
        let key = AddressKey::from_hex(&self.key)
            .context("the key is not 32 hex digits")
            .with_context(context)?;
        let status = self.status.parse().with_context(context)?;
        let attempts = u32::try_from(self.attempts)
            .with_context(|| format!("{} attempts", self.attempts))
            .with_context(context)?;
        let next_attempt = self
            .next_attempt
            .as_deref()
            .map(parse_time)
            .transpose()
            .with_context(context)?;
        let updated = parse_time(&self.updated).with_context(context)?;
        Ok(Delivery {
            issue_id: self.issue_id,
            key,
            address: self.address,
            segment: self.segment,
            variant: self.variant,
            picks: self.picks,
            message_id: self.message_id,
            status,
            attempts,
            last_reply: self.last_reply,
            next_attempt,
            updated,
        })
    }
}
