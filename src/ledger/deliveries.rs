//! Ledger stage: deliveries, one per reader of an issue, and the status
//! each has reached.
//!
//! A delivery is `sending` from just before DATA until the server's reply
//! is recorded; a later run that finds it so cannot know whether the 250
//! came (RFC 5321 §4.5.3.2), and [`recover`](Ledger::recover) makes it
//! `unknown`. Each status change commits before it returns, and `sent` is
//! final: nothing but `sent` again may be written over it.

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::issues::require_issue;
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

impl Counts {
    /// Adds `n` deliveries in `status`.
    pub(super) fn add(&mut self, status: DeliveryStatus, n: u64) {
        let count = match status {
            DeliveryStatus::Pending => &mut self.pending,
            DeliveryStatus::Sending => &mut self.sending,
            DeliveryStatus::Sent => &mut self.sent,
            DeliveryStatus::Deferred => &mut self.deferred,
            DeliveryStatus::Failed => &mut self.failed,
            DeliveryStatus::Unknown => &mut self.unknown,
            DeliveryStatus::Suppressed => &mut self.suppressed,
        };
        *count += n;
    }
}

/// The reply recorded on a delivery [`recover`](Ledger::recover) found
/// `sending`.
const INTERRUPTED: &str = "interrupted after DATA; the message may have been delivered";

/// Reads deliveries; `WHERE` and `ORDER BY` follow.
const SELECT: &str = "SELECT issue_id, address_key, address, segment, variant, picks, message_id, \
     status, attempts, last_reply, next_attempt, updated FROM deliveries";

impl Ledger {
    /// `sending` deliveries of `issue` (a run died between DATA and its
    /// reply) become `unknown`; returns how many.
    pub fn recover(&self, issue: &str, at: DateTime<FixedOffset>) -> Result<u64> {
        let recover = || -> Result<u64> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            require_issue(&tx, issue)?;
            let changed = tx
                .prepare_cached(
                    "UPDATE deliveries SET status = 'unknown', last_reply = ?2, updated = ?3
                     WHERE issue_id = ?1 AND status = 'sending'",
                )?
                .execute(params![issue, INTERRUPTED, at.to_rfc3339()])?;
            tx.commit()?;
            Ok(u64::try_from(changed)?)
        };
        recover()
            .with_context(|| format!("cannot recover the interrupted deliveries of issue {issue}"))
    }

    /// Deliveries of `issue` due at `now`: `pending`, `deferred` whose
    /// next attempt has come, and `unknown` when `resend_unknown`; ordered
    /// by segment, then key, so every run goes in the same order.
    pub fn due(
        &self,
        issue: &str,
        now: DateTime<FixedOffset>,
        resend_unknown: bool,
    ) -> Result<Vec<Delivery>> {
        let due = || -> Result<Vec<Delivery>> {
            require_issue(&self.conn, issue)?;
            // `IN (…, NULL)` matches nothing more.
            let unknown = resend_unknown.then_some(DeliveryStatus::Unknown.as_str());
            let mut statement = self.conn.prepare_cached(&format!(
                "{SELECT} WHERE issue_id = ?1 AND status IN ('pending', 'deferred', ?2)
                 ORDER BY segment, address_key"
            ))?;
            let mut due = Vec::new();
            for stored in statement.query_map(params![issue, unknown], Stored::read)? {
                let delivery = stored?.check()?;
                // Times are compared here, not in SQL: their text carries
                // offsets. A deferral without a time is due rather than stuck.
                let waiting = delivery.status == DeliveryStatus::Deferred
                    && delivery.next_attempt.is_some_and(|next| next > now);
                if !waiting {
                    due.push(delivery);
                }
            }
            Ok(due)
        };
        due().with_context(|| format!("cannot read the deliveries of issue {issue} due now"))
    }

    /// The delivery of `key` in `issue`.
    pub fn delivery(&self, issue: &str, key: AddressKey) -> Result<Option<Delivery>> {
        let read = || -> Result<Option<Delivery>> {
            self.conn
                .prepare_cached(&format!(
                    "{SELECT} WHERE issue_id = ?1 AND address_key = ?2"
                ))?
                .query_row((issue, key.hex()), Stored::read)
                .optional()?
                .map(Stored::check)
                .transpose()
        };
        read()
            .with_context(|| format!("cannot read the delivery of issue {issue} to {}", key.hex()))
    }

    /// `sending`, with one more attempt: written just before DATA.
    pub fn mark_sending(
        &self,
        issue: &str,
        key: AddressKey,
        at: DateTime<FixedOffset>,
    ) -> Result<()> {
        let change = Change {
            status: DeliveryStatus::Sending,
            attempt: true,
            reply: None,
            next_attempt: None,
        };
        self.mark(issue, key, &change, at)
    }

    /// `sent`: the server answered `reply` (a 250) to DATA.
    pub fn mark_sent(
        &self,
        issue: &str,
        key: AddressKey,
        reply: &str,
        at: DateTime<FixedOffset>,
    ) -> Result<()> {
        let change = Change {
            status: DeliveryStatus::Sent,
            attempt: false,
            reply: Some(reply),
            next_attempt: None,
        };
        self.mark(issue, key, &change, at)
    }

    /// `deferred` until `next_attempt`, after a 4xx `reply`; counts an
    /// attempt unless the message was `sending` (already counted).
    pub fn mark_deferred(
        &self,
        issue: &str,
        key: AddressKey,
        reply: &str,
        next_attempt: DateTime<FixedOffset>,
        at: DateTime<FixedOffset>,
    ) -> Result<()> {
        let change = Change {
            status: DeliveryStatus::Deferred,
            attempt: false,
            reply: Some(reply),
            next_attempt: Some(next_attempt),
        };
        self.mark(issue, key, &change, at)
    }

    /// `failed` for good, after `reply` (a 5xx, or the last 4xx allowed).
    pub fn mark_failed(
        &self,
        issue: &str,
        key: AddressKey,
        reply: &str,
        at: DateTime<FixedOffset>,
    ) -> Result<()> {
        let change = Change {
            status: DeliveryStatus::Failed,
            attempt: false,
            reply: Some(reply),
            next_attempt: None,
        };
        self.mark(issue, key, &change, at)
    }

    /// `suppressed`: the reader left, or bounced, before it went out. The
    /// last reply, if any, is kept.
    pub fn mark_suppressed(
        &self,
        issue: &str,
        key: AddressKey,
        at: DateTime<FixedOffset>,
    ) -> Result<()> {
        let change = Change {
            status: DeliveryStatus::Suppressed,
            attempt: false,
            reply: None,
            next_attempt: None,
        };
        self.mark(issue, key, &change, at)
    }

    /// Back to `pending` without counting an attempt (a connection failed
    /// before DATA), with why in `reply`.
    pub fn mark_pending(
        &self,
        issue: &str,
        key: AddressKey,
        reply: &str,
        at: DateTime<FixedOffset>,
    ) -> Result<()> {
        let change = Change {
            status: DeliveryStatus::Pending,
            attempt: false,
            reply: Some(reply),
            next_attempt: None,
        };
        self.mark(issue, key, &change, at)
    }

    /// Deliveries of `issue` by status.
    pub fn counts(&self, issue: &str) -> Result<Counts> {
        let counts = || -> Result<Counts> {
            require_issue(&self.conn, issue)?;
            let mut statement = self.conn.prepare_cached(
                "SELECT status, count(*) FROM deliveries WHERE issue_id = ?1 GROUP BY status",
            )?;
            let mut rows = statement.query([issue])?;
            let mut counts = Counts::default();
            while let Some(row) = rows.next()? {
                let (status, n): (String, i64) = (row.get(0)?, row.get(1)?);
                let status = status.parse().with_context(|| {
                    format!("the ledger's deliveries of issue {issue} are damaged")
                })?;
                counts.add(status, u64::try_from(n)?);
            }
            Ok(counts)
        };
        counts().with_context(|| format!("cannot count the deliveries of issue {issue}"))
    }

    /// Applies `change` to the delivery of `key` in `issue`, and commits.
    fn mark(
        &self,
        issue: &str,
        key: AddressKey,
        change: &Change<'_>,
        at: DateTime<FixedOffset>,
    ) -> Result<()> {
        let mark = || -> Result<()> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            // `sent` is final: a bug must not make a sent message look unsent.
            let changed = tx
                .prepare_cached(
                    // A verdict (deferred, failed) on a message that never
                    // reached DATA is an attempt too.
                    "UPDATE deliveries SET status = ?3,
                         attempts = attempts + CASE WHEN ?4 = 1 THEN 1
                             WHEN ?3 IN ('deferred', 'failed') AND status <> 'sending' THEN 1
                             ELSE 0 END,
                         last_reply = coalesce(?5, last_reply), next_attempt = ?6, updated = ?7
                     WHERE issue_id = ?1 AND address_key = ?2
                         AND (status <> 'sent' OR ?3 = 'sent')",
                )?
                .execute(params![
                    issue,
                    key.hex(),
                    change.status.as_str(),
                    i64::from(change.attempt),
                    change.reply,
                    change.next_attempt.map(|next| next.to_rfc3339()),
                    at.to_rfc3339(),
                ])?;
            if changed == 0 {
                let exists = tx
                    .prepare_cached(
                        "SELECT 1 FROM deliveries WHERE issue_id = ?1 AND address_key = ?2",
                    )?
                    .exists((issue, key.hex()))?;
                if exists {
                    bail!("it was sent already, and a sent delivery never changes");
                }
                bail!("the ledger has no such delivery");
            }
            tx.commit()?;
            Ok(())
        };
        mark().with_context(|| {
            format!(
                "cannot mark the delivery of issue {issue} to {} {}",
                key.hex(),
                change.status.as_str()
            )
        })
    }
}

/// What a `mark_*` writes.
struct Change<'a> {
    status: DeliveryStatus,
    /// Whether DATA is begun once more.
    attempt: bool,
    /// The reply to record; `None` keeps the last one.
    reply: Option<&'a str>,
    /// Only for `deferred`; cleared otherwise.
    next_attempt: Option<DateTime<FixedOffset>>,
}

/// Deliveries by issue id, then status.
pub(super) fn counts_by_issue(conn: &Connection) -> Result<HashMap<String, Counts>> {
    let mut statement = conn.prepare_cached(
        "SELECT issue_id, status, count(*) FROM deliveries GROUP BY issue_id, status",
    )?;
    let mut rows = statement.query([])?;
    let mut counts: HashMap<String, Counts> = HashMap::new();
    while let Some(row) = rows.next()? {
        let (issue, status, n): (String, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let status = status
            .parse()
            .with_context(|| format!("the ledger's deliveries of issue {issue} are damaged"))?;
        counts
            .entry(issue)
            .or_default()
            .add(status, u64::try_from(n)?);
    }
    Ok(counts)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fixtures::{create, issue, ledger, time, to};

    const ISSUE: &str = "2026-06-01";

    fn key(address: &str) -> AddressKey {
        AddressKey::of(address)
    }

    fn status(ledger: &Ledger, address: &str) -> DeliveryStatus {
        ledger
            .delivery(ISSUE, key(address))
            .unwrap()
            .unwrap()
            .status
    }

    /// A ledger with issue [`ISSUE`] to `addresses`.
    fn with_issue(addresses: &[&str]) -> (tempfile::TempDir, Ledger) {
        let (root, ledger) = ledger();
        create(&ledger, &issue(ISSUE, "2026-06-01T06:00:00Z"), addresses);
        (root, ledger)
    }

    #[test]
    fn statuses_round_trip_through_text() {
        use DeliveryStatus::*;
        for status in [
            Pending, Sending, Sent, Deferred, Failed, Unknown, Suppressed,
        ] {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        assert_eq!(
            "Sent".parse::<DeliveryStatus>(),
            Err(UnknownStatus("Sent".to_string()))
        );
    }

    #[test]
    fn due_deliveries_come_by_segment_then_key() {
        let (_root, ledger) = ledger();
        let record = issue(ISSUE, "2026-06-01T06:00:00Z");
        let mut deliveries = [
            to("ana@example.com", "weekly"),
            to("bo@example.com", "daily"),
            to("cy@example.com", "weekly"),
            to("di@example.com", "daily"),
            to("ed@example.com", "weekly"),
        ]
        .into_iter();
        ledger
            .create_issue(&record, &mut deliveries, record.created)
            .unwrap();
        let due = ledger
            .due(ISSUE, time("2026-06-01T06:00:00Z"), false)
            .unwrap();
        let order: Vec<(String, String)> = due
            .iter()
            .map(|d| (d.segment.clone(), d.key.hex()))
            .collect();
        let mut expected = order.clone();
        expected.sort();
        assert_eq!(order, expected);
        assert_eq!(order.len(), 5);
        assert_eq!(&order[0].0, "daily");
        assert!(due.iter().all(|d| d.issue_id == ISSUE));
        let missing = ledger.due("2026-06-02", time("2026-06-01T06:00:00Z"), false);
        assert!(format!("{:#}", missing.unwrap_err()).contains("no issue 2026-06-02"));
    }

    #[test]
    fn a_deferred_delivery_is_due_from_its_next_attempt() {
        let (_root, ledger) = with_issue(&["ana@example.com", "bo@example.com"]);
        let ana = key("ana@example.com");
        let at = time("2026-06-01T06:00:00Z");
        ledger.mark_sending(ISSUE, ana, at).unwrap();
        // 09:00+02:00 is 07:00Z.
        let next = time("2026-06-01T09:00:00+02:00");
        ledger
            .mark_deferred(ISSUE, ana, "451 4.7.1 try later", next, at)
            .unwrap();
        let stored = ledger.delivery(ISSUE, ana).unwrap().unwrap();
        assert_eq!(stored.status, DeliveryStatus::Deferred);
        assert_eq!(stored.next_attempt, Some(next));
        assert_eq!(stored.last_reply.as_deref(), Some("451 4.7.1 try later"));
        let due_at = |now: &str| -> Vec<String> {
            ledger
                .due(ISSUE, time(now), false)
                .unwrap()
                .into_iter()
                .map(|d| d.address)
                .collect()
        };
        // 08:59+02:00 sorts after 07:00Z as text, but is earlier.
        assert_eq!(due_at("2026-06-01T06:59:59Z"), ["bo@example.com"]);
        assert_eq!(due_at("2026-06-01T08:59:59+02:00"), ["bo@example.com"]);
        assert_eq!(due_at("2026-06-01T07:00:00Z").len(), 2);
        assert_eq!(due_at("2026-06-01T05:00:00-03:00").len(), 2);
    }

    #[test]
    fn unknown_deliveries_are_due_only_when_resent() {
        let (_root, ledger) = with_issue(&["ana@example.com", "bo@example.com"]);
        let at = time("2026-06-01T06:00:00Z");
        ledger
            .mark_sending(ISSUE, key("ana@example.com"), at)
            .unwrap();
        assert_eq!(ledger.recover(ISSUE, at).unwrap(), 1);
        let due = |resend| -> Vec<String> {
            ledger
                .due(ISSUE, at, resend)
                .unwrap()
                .into_iter()
                .map(|d| d.address)
                .collect()
        };
        assert_eq!(due(false), ["bo@example.com"]);
        let mut both = due(true);
        both.sort();
        assert_eq!(both, ["ana@example.com", "bo@example.com"]);
    }

    #[test]
    fn recover_makes_sending_unknown() {
        let (_root, ledger) = with_issue(&["ana@example.com", "bo@example.com", "cy@example.com"]);
        let at = time("2026-06-01T06:00:00Z");
        for address in ["ana@example.com", "bo@example.com"] {
            ledger.mark_sending(ISSUE, key(address), at).unwrap();
        }
        ledger
            .mark_sent(ISSUE, key("bo@example.com"), "250 2.0.0 OK", at)
            .unwrap();
        let later = time("2026-06-08T06:00:00Z");
        assert_eq!(ledger.recover(ISSUE, later).unwrap(), 1);
        let ana = ledger
            .delivery(ISSUE, key("ana@example.com"))
            .unwrap()
            .unwrap();
        assert_eq!(ana.status, DeliveryStatus::Unknown);
        assert_eq!(ana.attempts, 1);
        assert_eq!(ana.last_reply.as_deref(), Some(INTERRUPTED));
        assert_eq!(ana.updated, later);
        assert_eq!(status(&ledger, "bo@example.com"), DeliveryStatus::Sent);
        assert_eq!(status(&ledger, "cy@example.com"), DeliveryStatus::Pending);
        assert_eq!(ledger.recover(ISSUE, later).unwrap(), 0);
        assert!(ledger.recover("2026-06-02", later).is_err());
    }

    #[test]
    fn marks_record_attempts_replies_and_times() {
        let (_root, ledger) = with_issue(&["ana@example.com"]);
        let ana = key("ana@example.com");
        let read = || ledger.delivery(ISSUE, ana).unwrap().unwrap();
        let t1 = time("2026-06-01T06:00:01Z");
        ledger
            .mark_pending(ISSUE, ana, "connection refused", t1)
            .unwrap();
        let pending = read();
        assert_eq!(
            (pending.status, pending.attempts),
            (DeliveryStatus::Pending, 0)
        );
        assert_eq!(pending.last_reply.as_deref(), Some("connection refused"));
        assert_eq!(pending.updated, t1);
        let t2 = time("2026-06-01T06:00:02Z");
        ledger.mark_sending(ISSUE, ana, t2).unwrap();
        ledger
            .mark_deferred(ISSUE, ana, "421 busy", time("2026-06-01T07:00:00Z"), t2)
            .unwrap();
        ledger.mark_sending(ISSUE, ana, t2).unwrap();
        let sending = read();
        assert_eq!(
            (sending.status, sending.attempts),
            (DeliveryStatus::Sending, 2)
        );
        // The reply of the attempt before is kept; the deferral is over.
        assert_eq!(sending.last_reply.as_deref(), Some("421 busy"));
        assert_eq!(sending.next_attempt, None);
        ledger
            .mark_failed(ISSUE, ana, "550 5.1.1 no such user", t2)
            .unwrap();
        assert_eq!(read().status, DeliveryStatus::Failed);
        let t3 = time("2026-06-01T06:00:03Z");
        ledger.mark_suppressed(ISSUE, ana, t3).unwrap();
        let suppressed = read();
        assert_eq!(suppressed.status, DeliveryStatus::Suppressed);
        assert_eq!(suppressed.attempts, 2);
        assert_eq!(
            suppressed.last_reply.as_deref(),
            Some("550 5.1.1 no such user")
        );
        assert_eq!(suppressed.updated, t3);
    }

    #[test]
    fn a_sent_delivery_is_never_downgraded() {
        let (_root, ledger) = with_issue(&["ana@example.com"]);
        let ana = key("ana@example.com");
        let at = time("2026-06-01T06:00:00Z");
        ledger.mark_sending(ISSUE, ana, at).unwrap();
        ledger
            .mark_sent(ISSUE, ana, "250 2.0.0 OK id=1", at)
            .unwrap();
        let later = time("2026-06-01T07:00:00Z");
        let errors = [
            ledger.mark_sending(ISSUE, ana, later),
            ledger.mark_pending(ISSUE, ana, "dropped", later),
            ledger.mark_deferred(ISSUE, ana, "451", later, later),
            ledger.mark_failed(ISSUE, ana, "550", later),
            ledger.mark_suppressed(ISSUE, ana, later),
        ];
        for result in errors {
            let message = format!("{:#}", result.unwrap_err());
            assert!(message.contains("sent already"), "{message}");
            assert!(message.contains(ISSUE), "{message}");
            assert!(message.contains(&ana.hex()), "{message}");
        }
        let sent = ledger.delivery(ISSUE, ana).unwrap().unwrap();
        assert_eq!((sent.status, sent.attempts), (DeliveryStatus::Sent, 1));
        assert_eq!(sent.last_reply.as_deref(), Some("250 2.0.0 OK id=1"));
        assert_eq!(sent.updated, at);
        // Sent again is no downgrade.
        ledger
            .mark_sent(ISSUE, ana, "250 2.0.0 OK id=2", later)
            .unwrap();
        assert_eq!(status(&ledger, "ana@example.com"), DeliveryStatus::Sent);
    }

    #[test]
    fn marking_a_delivery_that_does_not_exist_is_an_error() {
        let (_root, ledger) = with_issue(&["ana@example.com"]);
        let at = time("2026-06-01T06:00:00Z");
        let bo = key("bo@example.com");
        for (issue, key) in [(ISSUE, bo), ("2026-06-02", key("ana@example.com"))] {
            let message = format!("{:#}", ledger.mark_sending(issue, key, at).unwrap_err());
            assert!(message.contains(issue), "{message}");
            assert!(message.contains(&key.hex()), "{message}");
            assert!(message.contains("no such delivery"), "{message}");
        }
    }

    #[test]
    fn counts_are_by_status() {
        let addresses = [
            "a@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com",
        ];
        let (_root, ledger) = with_issue(&addresses);
        let at = time("2026-06-01T06:00:00Z");
        assert_eq!(
            ledger.counts(ISSUE).unwrap(),
            Counts {
                pending: 4,
                ..Counts::default()
            }
        );
        ledger
            .mark_sending(ISSUE, key("a@example.com"), at)
            .unwrap();
        ledger
            .mark_sent(ISSUE, key("a@example.com"), "250 OK", at)
            .unwrap();
        ledger
            .mark_sending(ISSUE, key("b@example.com"), at)
            .unwrap();
        ledger
            .mark_suppressed(ISSUE, key("c@example.com"), at)
            .unwrap();
        assert_eq!(
            ledger.counts(ISSUE).unwrap(),
            Counts {
                pending: 1,
                sending: 1,
                sent: 1,
                suppressed: 1,
                ..Counts::default()
            }
        );
        assert!(ledger.counts("2026-06-02").is_err());
    }

    #[test]
    fn another_connection_sees_each_mark_at_once() {
        let (root, writer) = with_issue(&["ana@example.com"]);
        let reader = Ledger::open(root.path()).unwrap();
        let ana = key("ana@example.com");
        let at = time("2026-06-01T06:00:00Z");
        let seen = || reader.delivery(ISSUE, ana).unwrap().unwrap().status;
        assert_eq!(seen(), DeliveryStatus::Pending);
        writer.mark_sending(ISSUE, ana, at).unwrap();
        assert_eq!(seen(), DeliveryStatus::Sending);
        writer.mark_sent(ISSUE, ana, "250 OK", at).unwrap();
        assert_eq!(seen(), DeliveryStatus::Sent);
        // And the guard holds across connections.
        assert!(reader.mark_pending(ISSUE, ana, "dropped", at).is_err());
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
