//! Ledger stage: the delivery state machine — the status each delivery
//! has reached, the marks that move it, and the one transaction a send's
//! writes go in. May import the rest of `ledger` and `crate::address`
//! (for `AddressKey`).
//!
//! A delivery is `sending` from the moment its message is asked for until
//! the server's reply is recorded; a later run that finds it so cannot
//! know whether the 250 came (RFC 5321 §4.5.3.2), and
//! [`recover`](Ledger::recover) makes it `unknown`. Marks are written in
//! batches, each batch one transaction committed before
//! [`write`](Ledger::write) returns, and `sent` is final: nothing but
//! `sent` again may be written over it.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, FixedOffset};
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::NewDelivery;
use crate::address::AddressKey;
use crate::ledger::issues::require_issue;
use crate::ledger::suppression::suppress_in;
use crate::ledger::{Ledger, SuppressionReason};

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

/// What one transaction of a send writes (see [`Ledger::write`]).
#[derive(Debug, Default)]
pub struct Writes {
    /// Deliveries of readers frozen now.
    pub deliveries: Vec<NewDelivery>,
    /// Marks on deliveries frozen before, in order.
    pub marks: Vec<(AddressKey, Mark)>,
    /// Whether the issue's last reader is frozen with this.
    pub frozen: bool,
}

/// The reply recorded on a delivery [`recover`](Ledger::recover) found
/// `sending`.
const INTERRUPTED: &str = "interrupted while being sent; the message may have been delivered";

/// A change of a delivery's status, as [`Ledger::write`] writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// `sending`: the message is about to go. One more attempt, unless it
    /// was `sending` already (the same attempt on a new connection).
    /// Refused — the delivery becomes `suppressed` — when the address is
    /// in the suppression list.
    Sending,
    /// `sent`: the server answered this (a 250) to the message.
    Sent(String),
    /// `deferred` after this 4xx, until the time given.
    Deferred(String, DateTime<FixedOffset>),
    /// `failed` for good after this reply; with the address in `bounced`,
    /// which joins the suppression list.
    Failed {
        reply: String,
        bounced: Option<String>,
    },
    /// Back to `pending`, with why: the message was not handed over. An
    /// attempt counted by `Sending` is taken back.
    Pending(String),
    /// Back to `pending` without a word: the run stopped before the
    /// message was offered. An attempt counted by `Sending` is taken back,
    /// and the last reply stays what it was (none, if it was never tried).
    Requeued,
    /// `suppressed`: the reader left, or unsubscribed, before it went out.
    /// The last reply, if any, is kept.
    Suppressed,
}

impl Mark {
    /// The status the mark asks for.
    fn status(&self) -> DeliveryStatus {
        match self {
            Mark::Sending => DeliveryStatus::Sending,
            Mark::Sent(_) => DeliveryStatus::Sent,
            Mark::Deferred(..) => DeliveryStatus::Deferred,
            Mark::Failed { .. } => DeliveryStatus::Failed,
            Mark::Pending(_) | Mark::Requeued => DeliveryStatus::Pending,
            Mark::Suppressed => DeliveryStatus::Suppressed,
        }
    }
}

impl Ledger {
    /// `sending` deliveries of `issue` (a run died between their `sending`
    /// mark and the reply) become `unknown`; returns how many.
    pub fn recover(&self, issue: &str, at: DateTime<FixedOffset>) -> Result<u64> {
        self.recover_taking_back(issue, at, 0)
    }

    /// Like [`recover`](Ledger::recover), for what a run that died left
    /// `sending`: their attempt is taken back. Most of them were queued,
    /// never handed over, and a crash cannot tell which: repeated crashes
    /// must not use up a message's `max_attempts`. Their resends stay
    /// bounded by `max_age_hours`.
    pub fn recover_after_crash(&self, issue: &str, at: DateTime<FixedOffset>) -> Result<u64> {
        self.recover_taking_back(issue, at, 1)
    }

    fn recover_taking_back(
        &self,
        issue: &str,
        at: DateTime<FixedOffset>,
        taken_back: u32,
    ) -> Result<u64> {
        let recover = || -> Result<u64> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            require_issue(&tx, issue)?;
            let changed = tx
                .prepare_cached(
                    "UPDATE deliveries SET status = 'unknown', last_reply = ?2, updated = ?3,
                         attempts = max(attempts - ?4, 0)
                     WHERE issue_id = ?1 AND status = 'sending'",
                )?
                .execute(params![issue, INTERRUPTED, at.to_rfc3339(), taken_back])?;
            tx.commit()?;
            Ok(u64::try_from(changed)?)
        };
        recover()
            .with_context(|| format!("cannot recover the interrupted deliveries of issue {issue}"))
    }

    /// Writes `writes` on issue `issue` in one transaction that commits
    /// before this returns: the new deliveries (`pending`, created at
    /// `at`), then the marks in order, then — if asked — that the issue is
    /// frozen. Says, for each mark, whether it went as asked: only a
    /// [`Mark::Sending`] of a suppressed address does not (its delivery is
    /// made `suppressed`). `sent` is final: a mark that would change it is
    /// an error, as is a second delivery to one reader, and then nothing
    /// is recorded.
    pub fn write(
        &self,
        issue: &str,
        writes: &Writes,
        at: DateTime<FixedOffset>,
    ) -> Result<Vec<bool>> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .with_context(|| format!("cannot record deliveries of issue {issue}"))?;
        let at = at.to_rfc3339();
        for delivery in &writes.deliveries {
            insert(&tx, issue, delivery, &at).with_context(|| {
                format!(
                    "cannot freeze the delivery of issue {issue} to {}",
                    delivery.key.hex()
                )
            })?;
        }
        let mut went = Vec::with_capacity(writes.marks.len());
        for (key, mark) in &writes.marks {
            let applied = apply(&tx, issue, *key, mark, &at).with_context(|| {
                format!(
                    "cannot mark the delivery of issue {issue} to {} {}",
                    key.hex(),
                    mark.status().as_str()
                )
            })?;
            went.push(applied);
        }
        if writes.frozen {
            tx.prepare_cached("UPDATE issues SET frozen = ?2 WHERE id = ?1")?
                .execute(params![issue, at])?;
        }
        tx.commit()
            .with_context(|| format!("cannot record deliveries of issue {issue}"))?;
        Ok(went)
    }

    /// Deferred deliveries of `issue` become `failed` (their last reply
    /// kept, else `reply`): the issue is too old to try them again. So do
    /// `pending` ones the relay already failed to take (they have a reply:
    /// a connection that broke before the message went, a stall at RCPT),
    /// which no attempt bounds and which would keep the issue open for
    /// ever; a `pending` one never offered (a run stopped before it) still
    /// goes. Returns how many, by segment.
    pub fn expire_tried(
        &self,
        issue: &str,
        reply: &str,
        at: DateTime<FixedOffset>,
    ) -> Result<BTreeMap<String, u64>> {
        let expire = || -> Result<BTreeMap<String, u64>> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            require_issue(&tx, issue)?;
            let mut expired = BTreeMap::new();
            {
                let mut statement = tx.prepare_cached(
                    "SELECT segment, count(*) FROM deliveries
                     WHERE issue_id = ?1 AND (status = 'deferred'
                         OR (status = 'pending' AND last_reply IS NOT NULL))
                     GROUP BY segment",
                )?;
                let mut rows = statement.query([issue])?;
                while let Some(row) = rows.next()? {
                    let (segment, n): (String, i64) = (row.get(0)?, row.get(1)?);
                    expired.insert(segment, u64::try_from(n)?);
                }
            }
            tx.prepare_cached(
                "UPDATE deliveries SET status = 'failed', last_reply = coalesce(last_reply, ?2),
                     next_attempt = NULL, updated = ?3
                 WHERE issue_id = ?1 AND (status = 'deferred'
                     OR (status = 'pending' AND last_reply IS NOT NULL))",
            )?
            .execute(params![issue, reply, at.to_rfc3339()])?;
            tx.commit()?;
            Ok(expired)
        };
        expire().with_context(|| format!("cannot expire the undelivered messages of issue {issue}"))
    }
}

/// The reply recorded on an `unknown` delivery given up (see
/// [`Ledger::give_up_unknown`]).
const UNKNOWN_GIVEN_UP: &str =
    "not confirmed after its last attempt (it may have arrived); given up";

impl Ledger {
    /// `unknown` deliveries of `issue` become `failed` once they were
    /// tried `max_attempts` times, or all of them when `too_old` (the
    /// issue is past `delivery.max_age_hours`): a resend of an unknown
    /// message is an attempt like any other, so retries stay bounded and
    /// the issue completes. The reader is not suppressed: nothing says the
    /// address is bad. Returns how many, by segment.
    pub fn give_up_unknown(
        &self,
        issue: &str,
        max_attempts: u32,
        too_old: bool,
        at: DateTime<FixedOffset>,
    ) -> Result<BTreeMap<String, u64>> {
        let give_up = || -> Result<BTreeMap<String, u64>> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            require_issue(&tx, issue)?;
            let which = "issue_id = ?1 AND status = 'unknown' AND (?2 OR attempts >= ?3)";
            let mut given_up = BTreeMap::new();
            {
                let mut statement = tx.prepare_cached(&format!(
                    "SELECT segment, count(*) FROM deliveries WHERE {which} GROUP BY segment"
                ))?;
                let mut rows = statement.query(params![issue, too_old, max_attempts])?;
                while let Some(row) = rows.next()? {
                    let (segment, n): (String, i64) = (row.get(0)?, row.get(1)?);
                    given_up.insert(segment, u64::try_from(n)?);
                }
            }
            tx.prepare_cached(&format!(
                "UPDATE deliveries SET status = 'failed', last_reply = ?4, next_attempt = NULL,
                     updated = ?5
                 WHERE {which}"
            ))?
            .execute(params![
                issue,
                too_old,
                max_attempts,
                UNKNOWN_GIVEN_UP,
                at.to_rfc3339()
            ])?;
            tx.commit()?;
            Ok(given_up)
        };
        give_up().with_context(|| format!("cannot give up the unknown deliveries of issue {issue}"))
    }
}

/// Records `delivery` of `issue`, `pending`, created at `at`.
fn insert(tx: &Connection, issue: &str, delivery: &NewDelivery, at: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO deliveries (issue_id, address_key, address, segment, variant,
             picks, message_id, status, created, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8)",
    )?
    .execute(params![
        issue,
        delivery.key.hex(),
        delivery.address,
        delivery.segment,
        delivery.variant,
        delivery.picks,
        delivery.message_id,
        at,
    ])?;
    Ok(())
}

/// Writes `mark` on the delivery of `key`; false when a `Sending` mark met
/// a suppressed address (and made the delivery `suppressed` instead).
fn apply(tx: &Connection, issue: &str, key: AddressKey, mark: &Mark, at: &str) -> Result<bool> {
    let hex = key.hex();
    if *mark == Mark::Sending {
        let changed = tx
            .prepare_cached(
                "UPDATE deliveries SET status = 'sending',
                     attempts = attempts + (status <> 'sending'), next_attempt = NULL, updated = ?3
                 WHERE issue_id = ?1 AND address_key = ?2 AND status <> 'sent'
                     AND NOT EXISTS (SELECT 1 FROM suppression WHERE address_key = ?2)",
            )?
            .execute(params![issue, hex, at])?;
        if changed == 1 {
            return Ok(true);
        }
        let suppressed = tx
            .prepare_cached("SELECT 1 FROM suppression WHERE address_key = ?1")?
            .exists([&hex])?;
        if !suppressed {
            return Err(missing(tx, issue, &hex));
        }
        apply(tx, issue, key, &Mark::Suppressed, at)?;
        return Ok(false);
    }
    let (reply, next_attempt) = match mark {
        Mark::Sent(reply) | Mark::Pending(reply) | Mark::Failed { reply, .. } => {
            (Some(reply.as_str()), None)
        }
        Mark::Deferred(reply, next) => (Some(reply.as_str()), Some(next.to_rfc3339())),
        Mark::Sending | Mark::Suppressed | Mark::Requeued => (None, None),
    };
    let changed = tx
        .prepare_cached(
            // A verdict (deferred, failed) on a message whose attempt was
            // not counted yet is an attempt too; `pending` takes back the
            // attempt of a `sending` mark that never reached the server's
            // door.
            "UPDATE deliveries SET status = ?3,
                 attempts = attempts + CASE
                     WHEN ?3 IN ('deferred', 'failed') AND status <> 'sending' THEN 1
                     WHEN ?3 = 'pending' AND status = 'sending' THEN -1
                     ELSE 0 END,
                 last_reply = coalesce(?4, last_reply), next_attempt = ?5, updated = ?6
             WHERE issue_id = ?1 AND address_key = ?2
                 AND (status <> 'sent' OR ?3 = 'sent')",
        )?
        .execute(params![
            issue,
            hex,
            mark.status().as_str(),
            reply,
            next_attempt,
            at
        ])?;
    if changed == 0 {
        return Err(missing(tx, issue, &hex));
    }
    if let Mark::Failed {
        bounced: Some(address),
        ..
    } = mark
    {
        suppress_in(tx, key, Some(address), SuppressionReason::Bounced, at)?;
    }
    Ok(true)
}

/// Why a mark changed nothing: the delivery is sent (final), or missing.
fn missing(tx: &Connection, issue: &str, hex: &str) -> anyhow::Error {
    let exists = tx
        .prepare_cached("SELECT 1 FROM deliveries WHERE issue_id = ?1 AND address_key = ?2")
        .and_then(|mut statement| statement.exists((issue, hex)));
    match exists {
        Ok(true) => anyhow!("it was sent already, and a sent delivery never changes"),
        Ok(false) => anyhow!("the ledger has no such delivery"),
        Err(err) => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ledger::deliveries::testing::{ISSUE, key, status, with_issue};
    use crate::ledger::fixtures::{failed, issue, ledger, time, to};

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
    fn recover_makes_sending_unknown() {
        let (_root, ledger) = with_issue(&["ana@example.com", "bo@example.com", "cy@example.com"]);
        let at = time("2026-06-01T06:00:00Z");
        for address in ["ana@example.com", "bo@example.com"] {
            ledger.mark(ISSUE, key(address), Mark::Sending, at).unwrap();
        }
        ledger
            .mark(
                ISSUE,
                key("bo@example.com"),
                Mark::Sent("250 2.0.0 OK".into()),
                at,
            )
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
        // After a crash the attempt is taken back: it may never have gone.
        ledger
            .mark(ISSUE, key("cy@example.com"), Mark::Sending, at)
            .unwrap();
        assert_eq!(ledger.recover_after_crash(ISSUE, later).unwrap(), 1);
        let cy = ledger
            .delivery(ISSUE, key("cy@example.com"))
            .unwrap()
            .unwrap();
        assert_eq!((cy.status, cy.attempts), (DeliveryStatus::Unknown, 0));
    }

    #[test]
    fn marks_record_attempts_replies_and_times() {
        let (_root, ledger) = with_issue(&["ana@example.com"]);
        let ana = key("ana@example.com");
        let read = || ledger.delivery(ISSUE, ana).unwrap().unwrap();
        let t1 = time("2026-06-01T06:00:01Z");
        ledger
            .mark(ISSUE, ana, Mark::Pending("connection refused".into()), t1)
            .unwrap();
        let pending = read();
        assert_eq!(
            (pending.status, pending.attempts),
            (DeliveryStatus::Pending, 0)
        );
        assert_eq!(pending.last_reply.as_deref(), Some("connection refused"));
        assert_eq!(pending.updated, t1);
        let t2 = time("2026-06-01T06:00:02Z");
        ledger.mark(ISSUE, ana, Mark::Sending, t2).unwrap();
        ledger
            .mark(
                ISSUE,
                ana,
                Mark::Deferred("421 busy".into(), time("2026-06-01T07:00:00Z")),
                t2,
            )
            .unwrap();
        ledger.mark(ISSUE, ana, Mark::Sending, t2).unwrap();
        let sending = read();
        assert_eq!(
            (sending.status, sending.attempts),
            (DeliveryStatus::Sending, 2)
        );
        // The reply of the attempt before is kept; the deferral is over.
        assert_eq!(sending.last_reply.as_deref(), Some("421 busy"));
        assert_eq!(sending.next_attempt, None);
        ledger
            .mark(ISSUE, ana, failed("550 5.1.1 no such user"), t2)
            .unwrap();
        assert_eq!(read().status, DeliveryStatus::Failed);
        let t3 = time("2026-06-01T06:00:03Z");
        ledger.mark(ISSUE, ana, Mark::Suppressed, t3).unwrap();
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
        ledger.mark(ISSUE, ana, Mark::Sending, at).unwrap();
        ledger
            .mark(ISSUE, ana, Mark::Sent("250 2.0.0 OK id=1".into()), at)
            .unwrap();
        let later = time("2026-06-01T07:00:00Z");
        let errors = [
            ledger.mark(ISSUE, ana, Mark::Sending, later),
            ledger.mark(ISSUE, ana, Mark::Pending("dropped".into()), later),
            ledger.mark(ISSUE, ana, Mark::Deferred("451".into(), later), later),
            ledger.mark(ISSUE, ana, failed("550"), later),
            ledger.mark(ISSUE, ana, Mark::Suppressed, later),
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
            .mark(ISSUE, ana, Mark::Sent("250 2.0.0 OK id=2".into()), later)
            .unwrap();
        assert_eq!(status(&ledger, "ana@example.com"), DeliveryStatus::Sent);
    }

    #[test]
    fn marking_a_delivery_that_does_not_exist_is_an_error() {
        let (_root, ledger) = with_issue(&["ana@example.com"]);
        let at = time("2026-06-01T06:00:00Z");
        let bo = key("bo@example.com");
        for (issue, key) in [(ISSUE, bo), ("2026-06-02", key("ana@example.com"))] {
            let message = format!(
                "{:#}",
                ledger.mark(issue, key, Mark::Sending, at).unwrap_err()
            );
            assert!(message.contains(issue), "{message}");
            assert!(message.contains(&key.hex()), "{message}");
            assert!(message.contains("no such delivery"), "{message}");
        }
    }

    #[test]
    fn a_sending_mark_meets_the_suppression_list() {
        let (_root, ledger) = with_issue(&["ana@example.com", "bo@example.com"]);
        let at = time("2026-06-01T06:00:00Z");
        let (ana, bo) = (key("ana@example.com"), key("bo@example.com"));
        ledger
            .suppress(bo, None, SuppressionReason::Unsubscribed, at)
            .unwrap();
        let went = ledger
            .record(ISSUE, &[(ana, Mark::Sending), (bo, Mark::Sending)], at)
            .unwrap();
        assert_eq!(went, [true, false]);
        assert_eq!(status(&ledger, "ana@example.com"), DeliveryStatus::Sending);
        let bo_now = ledger.delivery(ISSUE, bo).unwrap().unwrap();
        assert_eq!(
            (bo_now.status, bo_now.attempts),
            (DeliveryStatus::Suppressed, 0)
        );
    }

    #[test]
    fn a_try_on_a_new_connection_is_the_same_attempt_and_pending_takes_it_back() {
        let (_root, ledger) = with_issue(&["ana@example.com"]);
        let ana = key("ana@example.com");
        let at = time("2026-06-01T06:00:00Z");
        let marks = [
            (ana, Mark::Sending),
            (ana, Mark::Sending),
            (ana, Mark::Pending("connection closed".into())),
        ];
        ledger.record(ISSUE, &marks, at).unwrap();
        let read = ledger.delivery(ISSUE, ana).unwrap().unwrap();
        assert_eq!((read.status, read.attempts), (DeliveryStatus::Pending, 0));
        assert_eq!(read.last_reply.as_deref(), Some("connection closed"));
        // A 4xx to RCPT after the `sending` mark is that one attempt.
        let next = time("2026-06-01T07:00:00Z");
        let marks = [
            (ana, Mark::Sending),
            (ana, Mark::Deferred("451 later".into(), next)),
        ];
        ledger.record(ISSUE, &marks, at).unwrap();
        let read = ledger.delivery(ISSUE, ana).unwrap().unwrap();
        assert_eq!((read.status, read.attempts), (DeliveryStatus::Deferred, 1));
    }

    #[test]
    fn a_bounce_joins_the_suppression_list_with_its_mark() {
        let (_root, ledger) = with_issue(&["ana@example.com"]);
        let ana = key("ana@example.com");
        let at = time("2026-06-01T06:00:00Z");
        let failed = Mark::Failed {
            reply: "550 no such user".into(),
            bounced: Some("ana@example.com".into()),
        };
        ledger
            .record(ISSUE, &[(ana, Mark::Sending), (ana, failed)], at)
            .unwrap();
        assert_eq!(status(&ledger, "ana@example.com"), DeliveryStatus::Failed);
        let bounce = ledger.suppression(ana).unwrap().unwrap();
        assert_eq!(bounce.reason, SuppressionReason::Bounced);
        assert_eq!(bounce.address.as_deref(), Some("ana@example.com"));
    }

    #[test]
    fn a_batch_with_a_wrong_mark_records_nothing() {
        let (_root, ledger) = with_issue(&["ana@example.com", "bo@example.com"]);
        let (ana, bo) = (key("ana@example.com"), key("bo@example.com"));
        let at = time("2026-06-01T06:00:00Z");
        ledger.mark(ISSUE, bo, Mark::Sending, at).unwrap();
        ledger
            .mark(ISSUE, bo, Mark::Sent("250 OK".into()), at)
            .unwrap();
        let err = ledger
            .record(ISSUE, &[(ana, Mark::Sending), (bo, Mark::Sending)], at)
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("sent already"), "{message}");
        assert!(message.contains(&bo.hex()), "{message}");
        assert_eq!(status(&ledger, "ana@example.com"), DeliveryStatus::Pending);
    }

    #[test]
    fn unknown_deliveries_are_given_up_after_max_attempts_or_age_without_a_bounce() {
        let (_root, ledger) = with_issue(&["ana@example.com", "bo@example.com", "cy@example.com"]);
        let at = time("2026-06-01T06:00:00Z");
        // Ana: unknown three times (each resend is an attempt); Bo: once.
        for _ in 0..3 {
            ledger
                .mark(ISSUE, key("ana@example.com"), Mark::Sending, at)
                .unwrap();
            ledger.recover(ISSUE, at).unwrap();
        }
        ledger
            .mark(ISSUE, key("bo@example.com"), Mark::Sending, at)
            .unwrap();
        ledger.recover(ISSUE, at).unwrap();
        let given_up = ledger.give_up_unknown(ISSUE, 3, false, at).unwrap();
        assert_eq!(given_up.values().sum::<u64>(), 1);
        let ana = ledger
            .delivery(ISSUE, key("ana@example.com"))
            .unwrap()
            .unwrap();
        assert_eq!((ana.status, ana.attempts), (DeliveryStatus::Failed, 3));
        assert_eq!(ana.last_reply.as_deref(), Some(UNKNOWN_GIVEN_UP));
        assert!(
            ledger
                .suppression(key("ana@example.com"))
                .unwrap()
                .is_none()
        );
        assert_eq!(status(&ledger, "bo@example.com"), DeliveryStatus::Unknown);
        // Too old: every unknown one goes, pending ones stay.
        let given_up = ledger.give_up_unknown(ISSUE, 3, true, at).unwrap();
        assert_eq!(given_up.values().sum::<u64>(), 1);
        assert_eq!(status(&ledger, "bo@example.com"), DeliveryStatus::Failed);
        assert_eq!(status(&ledger, "cy@example.com"), DeliveryStatus::Pending);
        assert!(ledger.complete_if_done(ISSUE, true, at).is_ok());
    }

    #[test]
    fn deferred_deliveries_of_an_old_issue_expire_as_failed() {
        let (_root, ledger) = ledger();
        let record = issue(ISSUE, "2026-06-01T06:00:00Z");
        let mut deliveries = [
            to("ana@example.com", "weekly"),
            to("bo@example.com", "daily"),
            to("cy@example.com", "daily"),
            to("di@example.com", "daily"),
        ]
        .into_iter();
        ledger
            .create_issue(&record, &mut deliveries, record.created)
            .unwrap();
        let at = time("2026-06-01T06:00:00Z");
        let later = time("2026-06-02T06:00:00Z");
        for address in ["ana@example.com", "bo@example.com"] {
            ledger.mark(ISSUE, key(address), Mark::Sending, at).unwrap();
            ledger
                .mark(
                    ISSUE,
                    key(address),
                    Mark::Deferred("451 later".into(), later),
                    at,
                )
                .unwrap();
        }
        // Di's message never got past RCPT: back to pending, with the reply.
        ledger
            .mark(ISSUE, key("di@example.com"), Mark::Sending, at)
            .unwrap();
        let stalled = Mark::Pending("the server did not answer in time".into());
        ledger
            .mark(ISSUE, key("di@example.com"), stalled, at)
            .unwrap();
        let expired = ledger
            .expire_tried(ISSUE, "too late", time("2026-06-05T06:00:00Z"))
            .unwrap();
        let expected: BTreeMap<String, u64> =
            [("daily".to_string(), 2), ("weekly".to_string(), 1)].into();
        assert_eq!(expired, expected);
        let ana = ledger
            .delivery(ISSUE, key("ana@example.com"))
            .unwrap()
            .unwrap();
        assert_eq!(ana.status, DeliveryStatus::Failed);
        assert_eq!(
            (ana.attempts, ana.last_reply.as_deref()),
            (1, Some("451 later"))
        );
        assert_eq!(ana.next_attempt, None);
        assert_eq!(status(&ledger, "di@example.com"), DeliveryStatus::Failed);
        // Never offered: still sent by the next run.
        assert_eq!(status(&ledger, "cy@example.com"), DeliveryStatus::Pending);
    }
}
