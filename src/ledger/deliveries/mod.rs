//! Ledger stage: deliveries, one per reader of an issue — the record
//! ([`Delivery`]) and how it is read back. The status a delivery reaches
//! and the marks that move it are the state machine in [`status`] (its
//! header has the invariants); [`due`] reads the deliveries to send now,
//! [`counts`] tallies them. May import the rest of `ledger` and
//! `crate::address` (for `AddressKey`).

mod counts;
mod due;
mod status;

use std::collections::HashSet;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use rusqlite::{OptionalExtension, Row};

pub use counts::DeliveryCounts;
pub(super) use counts::counts_by_issue;
pub use due::Due;
pub use status::{DeliveryStatus, Mark, UnknownStatus, Writes};

use super::issues::require_issue;
use super::{Ledger, parse_time};
use crate::address::AddressKey;

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

/// Reads deliveries with their rowid; `WHERE` and `ORDER BY` follow.
const SELECT: &str = "SELECT issue_id, address_key, address, segment, variant, picks, message_id, \
     status, attempts, last_reply, next_attempt, updated, rowid FROM deliveries";

impl Ledger {
    /// The delivery of `key` in `issue`.
    pub fn delivery(&self, issue: &str, key: AddressKey) -> Result<Option<Delivery>> {
        let read = || -> Result<Option<Delivery>> {
            self.conn
                .prepare_cached(&format!(
                    "{SELECT} WHERE issue_id = ?1 AND address_key = ?2"
                ))?
                .query_row((issue, key.hex()), StoredDelivery::read)
                .optional()?
                .map(StoredDelivery::check)
                .transpose()
        };
        read()
            .with_context(|| format!("cannot read the delivery of issue {issue} to {}", key.hex()))
    }

    /// The deliveries of `issue` not `sent`, in the order they were
    /// frozen: what `status --issue` lists and a send names.
    pub fn not_sent(&self, issue: &str) -> Result<Vec<Delivery>> {
        let read = || -> Result<Vec<Delivery>> {
            require_issue(&self.conn, issue)?;
            let mut statement = self.conn.prepare_cached(&format!(
                "{SELECT} WHERE issue_id = ?1 AND status <> 'sent' ORDER BY rowid"
            ))?;
            let rows = statement.query_map([issue], StoredDelivery::read)?;
            rows.map(|row| row?.check()).collect()
        };
        read().with_context(|| format!("cannot read the undelivered messages of issue {issue}"))
    }

    /// The first `limit` deliveries of `issue` that a run at `at` left
    /// `failed`, `deferred` or `unknown` (its marks carry that time), and
    /// how many there are in all: the readers a send names.
    pub fn left_undelivered(
        &self,
        issue: &str,
        at: DateTime<FixedOffset>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, u64)> {
        let read = || -> Result<(Vec<Delivery>, u64)> {
            let filter = "WHERE issue_id = ?1 AND updated = ?2 \
                 AND status IN ('failed', 'deferred', 'unknown')";
            let at = at.to_rfc3339();
            let total: i64 = self.conn.query_row(
                &format!("SELECT count(*) FROM deliveries {filter}"),
                (issue, &at),
                |row| row.get(0),
            )?;
            let mut statement = self
                .conn
                .prepare(&format!("{SELECT} {filter} ORDER BY rowid LIMIT ?3"))?;
            let limit = i64::try_from(limit)?;
            let rows = statement.query_map((issue, &at, limit), StoredDelivery::read)?;
            let first = rows.map(|row| row?.check()).collect::<Result<_>>()?;
            Ok((first, u64::try_from(total)?))
        };
        read().with_context(|| format!("cannot read the undelivered messages of issue {issue}"))
    }

    /// The readers of `issue` frozen so far.
    pub fn delivery_keys(&self, issue: &str) -> Result<HashSet<AddressKey>> {
        let read = || -> Result<HashSet<AddressKey>> {
            require_issue(&self.conn, issue)?;
            let mut statement = self
                .conn
                .prepare_cached("SELECT address_key FROM deliveries WHERE issue_id = ?1")?;
            let mut rows = statement.query([issue])?;
            let mut keys = HashSet::new();
            while let Some(row) = rows.next()? {
                let hex: String = row.get(0)?;
                let key = AddressKey::from_hex(&hex).with_context(|| {
                    format!("the ledger's deliveries of issue {issue} are damaged")
                })?;
                keys.insert(key);
            }
            Ok(keys)
        };
        read().with_context(|| format!("cannot read the readers of issue {issue}"))
    }
}

/// A row as stored, before its text is checked.
struct StoredDelivery {
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
    rowid: i64,
}

impl StoredDelivery {
    fn read(row: &Row<'_>) -> rusqlite::Result<StoredDelivery> {
        Ok(StoredDelivery {
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
            rowid: row.get(12)?,
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

#[cfg(test)]
pub(super) mod testing {
    //! What the tests of every delivery file share: issue [`ISSUE`].

    use super::*;
    use crate::ledger::fixtures::{create, issue, ledger};

    pub const ISSUE: &str = "2026-06-01";

    pub fn key(address: &str) -> AddressKey {
        AddressKey::of(address)
    }

    pub fn status(ledger: &Ledger, address: &str) -> DeliveryStatus {
        ledger
            .delivery(ISSUE, key(address))
            .unwrap()
            .unwrap()
            .status
    }

    /// A ledger with issue [`ISSUE`] to `addresses`.
    pub fn with_issue(addresses: &[&str]) -> (tempfile::TempDir, Ledger) {
        let (root, ledger) = ledger();
        create(&ledger, &issue(ISSUE, "2026-06-01T06:00:00Z"), addresses);
        (root, ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{ISSUE, key, with_issue};
    use super::*;
    use crate::ledger::Mark;
    use crate::ledger::fixtures::time;

    #[test]
    fn another_connection_sees_each_mark_at_once() {
        let (root, writer) = with_issue(&["ana@example.com"]);
        let reader = Ledger::open(root.path()).unwrap();
        let ana = key("ana@example.com");
        let at = time("2026-06-01T06:00:00Z");
        let seen = || reader.delivery(ISSUE, ana).unwrap().unwrap().status;
        assert_eq!(seen(), DeliveryStatus::Pending);
        writer.mark(ISSUE, ana, Mark::Sending, at).unwrap();
        assert_eq!(seen(), DeliveryStatus::Sending);
        writer
            .mark(ISSUE, ana, Mark::Sent("250 OK".into()), at)
            .unwrap();
        assert_eq!(seen(), DeliveryStatus::Sent);
        // And the guard holds across connections.
        assert!(
            reader
                .mark(ISSUE, ana, Mark::Pending("dropped".into()), at)
                .is_err()
        );
        drop(writer);
        drop(reader);
        let reopened = Ledger::open_existing(root.path()).unwrap().unwrap();
        assert_eq!(
            reopened.delivery(ISSUE, ana).unwrap().unwrap().status,
            DeliveryStatus::Sent
        );
    }

    #[test]
    fn a_damaged_delivery_is_an_error_naming_it() {
        let (_root, ledger) = with_issue(&["ana@example.com"]);
        ledger
            .conn
            .execute("UPDATE deliveries SET status = 'lost'", [])
            .unwrap();
        let ana = key("ana@example.com");
        let message = format!("{:#}", ledger.delivery(ISSUE, ana).unwrap_err());
        assert!(message.contains(&ana.hex()), "{message}");
        assert!(message.contains("lost"), "{message}");
        let message = format!("{:#}", ledger.issues().unwrap_err());
        assert!(message.contains(ISSUE), "{message}");
        assert!(message.contains("lost"), "{message}");
    }
}
