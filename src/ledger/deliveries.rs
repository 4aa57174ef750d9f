//! Ledger stage: deliveries, one per reader of an issue, and the status
//! each has reached.
//!
//! A delivery is `sending` from the moment its message is asked for until
//! the server's reply is recorded; a later run that finds it so cannot
//! know whether the 250 came (RFC 5321 §4.5.3.2), and
//! [`recover`](Ledger::recover) makes it `unknown`. Marks are written in
//! batches, each batch one transaction committed before
//! [`write`](Ledger::write) returns, and `sent` is final: nothing but
//! `sent` again may be written over it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, FixedOffset};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::issues::require_issue;
use super::suppression::suppress_in;
use super::{Ledger, Reason, parse_time};
use crate::address::AddressKey;

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
const INTERRUPTED: &str = "interrupted while being sent; the message may have been delivered";

/// Reads deliveries with their rowid; `WHERE` and `ORDER BY` follow.
const SELECT: &str = "SELECT issue_id, address_key, address, segment, variant, picks, message_id, \
     status, attempts, last_reply, next_attempt, updated, rowid FROM deliveries";

/// How many deliveries [`Due`] reads at a time.
const PAGE: i64 = 1000;

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
            Mark::Pending(_) => DeliveryStatus::Pending,
            Mark::Suppressed => DeliveryStatus::Suppressed,
        }
    }
}

impl Ledger {
    /// `sending` deliveries of `issue` (a run died between their `sending`
    /// mark and the reply) become `unknown`; returns how many.
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

    /// Deliveries of `issue` due at `now` — `pending`, `deferred` whose
    /// next attempt has come, and `unknown` when `resend_unknown` — in the
    /// order they were frozen (the subscribers file's), so every run goes
    /// in the same order. They are read a page at a time as the iterator
    /// is consumed: a million need not be held, and marks written
    /// meanwhile do not disturb the walk.
    pub fn due(
        &self,
        issue: &str,
        now: DateTime<FixedOffset>,
        resend_unknown: bool,
    ) -> Result<Due<'_>> {
        let start = || -> Result<Option<i64>> {
            require_issue(&self.conn, issue)?;
            let mut first = self.conn.prepare_cached(
                "SELECT min(rowid) FROM deliveries WHERE issue_id = ?1 AND status = ?2",
            )?;
            let mut start: Option<i64> = None;
            for status in due_statuses(resend_unknown) {
                let min: Option<i64> =
                    first.query_row(params![issue, status.as_str()], |row| row.get(0))?;
                start = match (start, min) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok(start)
        };
        let start = start()
            .with_context(|| format!("cannot read the deliveries of issue {issue} due now"))?;
        let mut due = self.due_after(
            issue,
            now,
            resend_unknown,
            start.map_or(i64::MAX, |first| first - 1),
        );
        due.done = start.is_none();
        Ok(due)
    }

    /// Like [`due`](Ledger::due), but only deliveries recorded after
    /// [`last_row`](Ledger::last_row) said `after`: those a freeze adds
    /// while they are sent, read as they are committed (see [`Due::again`]).
    pub fn due_after(
        &self,
        issue: &str,
        now: DateTime<FixedOffset>,
        resend_unknown: bool,
        after: i64,
    ) -> Due<'_> {
        Due {
            ledger: self,
            issue: issue.to_string(),
            now,
            resend_unknown,
            after,
            last: i64::MAX,
            page: Vec::new().into_iter(),
            done: false,
        }
    }

    /// Where the deliveries recorded so far end, for
    /// [`due_after`](Ledger::due_after).
    pub fn last_row(&self) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT coalesce(max(rowid), 0) FROM deliveries",
                [],
                |row| row.get(0),
            )
            .context("cannot read the ledger's deliveries")
    }

    /// How many deliveries [`due`](Ledger::due) would list now.
    pub fn due_count(
        &self,
        issue: &str,
        now: DateTime<FixedOffset>,
        resend_unknown: bool,
    ) -> Result<u64> {
        let count = || -> Result<u64> {
            let counts = self.counts(issue)?;
            let mut due = counts.pending + if resend_unknown { counts.unknown } else { 0 };
            let mut statement = self.conn.prepare_cached(
                "SELECT next_attempt FROM deliveries WHERE issue_id = ?1 AND status = 'deferred'",
            )?;
            let mut rows = statement.query([issue])?;
            while let Some(row) = rows.next()? {
                let next: Option<String> = row.get(0)?;
                let next = next.as_deref().map(parse_time).transpose()?;
                if !waiting(DeliveryStatus::Deferred, next, now) {
                    due += 1;
                }
            }
            Ok(due)
        };
        count().with_context(|| format!("cannot count the deliveries of issue {issue} due now"))
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

    /// Deferred deliveries of `issue` become `failed` (their last reply
    /// kept, else `reply`): the issue is too old to try them again. Returns
    /// how many, by segment.
    pub fn expire_deferred(
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
                     WHERE issue_id = ?1 AND status = 'deferred' GROUP BY segment",
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
                 WHERE issue_id = ?1 AND status = 'deferred'",
            )?
            .execute(params![issue, reply, at.to_rfc3339()])?;
            tx.commit()?;
            Ok(expired)
        };
        expire().with_context(|| format!("cannot expire the deferred deliveries of issue {issue}"))
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
}

/// The statuses [`Ledger::due`] lists.
fn due_statuses(resend_unknown: bool) -> impl Iterator<Item = DeliveryStatus> {
    [DeliveryStatus::Pending, DeliveryStatus::Deferred]
        .into_iter()
        .chain(resend_unknown.then_some(DeliveryStatus::Unknown))
}

/// Whether a delivery must wait past `now`: deferred until later. Times
/// are compared here, not in SQL: their text carries offsets. A deferral
/// without a time is due rather than stuck.
fn waiting(
    status: DeliveryStatus,
    next_attempt: Option<DateTime<FixedOffset>>,
    now: DateTime<FixedOffset>,
) -> bool {
    status == DeliveryStatus::Deferred && next_attempt.is_some_and(|next| next > now)
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
        Mark::Sending | Mark::Suppressed => (None, None),
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
        suppress_in(tx, key, Some(address), Reason::Bounced, at)?;
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

/// The deliveries of an issue due at one time, a page at a time (see
/// [`Ledger::due`]).
#[derive(Debug)]
pub struct Due<'l> {
    ledger: &'l Ledger,
    issue: String,
    now: DateTime<FixedOffset>,
    resend_unknown: bool,
    /// The rowid of the last delivery read.
    after: i64,
    /// The last rowid to read.
    last: i64,
    page: std::vec::IntoIter<Delivery>,
    done: bool,
}

impl Due<'_> {
    /// Only the deliveries recorded up to rowid `last` (see
    /// [`Ledger::last_row`]): those a freeze adds meanwhile are read by
    /// [`Ledger::due_after`] alone.
    pub fn up_to(mut self, last: i64) -> Self {
        self.last = last;
        self
    }

    /// After the end, looks again: deliveries committed since come next.
    pub fn again(&mut self) {
        self.done = false;
    }

    /// The next page of due deliveries; empty at the end.
    fn next_page(&mut self) -> Result<Vec<Delivery>> {
        // The rowid range, not an index: pages come in frozen order, each
        // from where the last one stopped.
        let unknown = self
            .resend_unknown
            .then_some(DeliveryStatus::Unknown.as_str());
        let mut statement = self.ledger.conn.prepare_cached(&format!(
            "{SELECT} NOT INDEXED WHERE rowid > ?3 AND rowid <= ?5 AND issue_id = ?1
                 AND status IN ('pending', 'deferred', ?2)
             ORDER BY rowid LIMIT ?4"
        ))?;
        let mut rows =
            statement.query(params![self.issue, unknown, self.after, PAGE, self.last])?;
        let mut page = Vec::new();
        let mut read = 0;
        while let Some(row) = rows.next()? {
            let stored = Stored::read(row)?;
            read += 1;
            self.after = stored.rowid;
            let delivery = stored.check()?;
            if !waiting(delivery.status, delivery.next_attempt, self.now) {
                page.push(delivery);
            }
        }
        if read < PAGE {
            self.done = true;
        }
        Ok(page)
    }
}

impl Iterator for Due<'_> {
    type Item = Result<Delivery>;

    fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            if let Some(delivery) = self.page.next() {
                return Some(Ok(delivery));
            }
            if self.done {
                return None;
            }
            match self.next_page() {
                Ok(page) => self.page = page.into_iter(),
                Err(err) => {
                    self.done = true;
                    let issue = &self.issue;
                    return Some(Err(err.context(format!(
                        "cannot read the deliveries of issue {issue} due now"
                    ))));
                }
            }
        }
    }
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
    rowid: i64,
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
mod tests {
    use super::*;
    use crate::ledger::fixtures::{create, failed, issue, ledger, time, to};

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

    /// The addresses of `issue` due at `now`.
    fn due_at(ledger: &Ledger, issue: &str, now: &str, resend: bool) -> Vec<String> {
        ledger
            .due(issue, time(now), resend)
            .unwrap()
            .map(|d| d.unwrap().address)
            .collect()
    }

    #[test]
    fn due_deliveries_come_in_the_order_they_were_frozen() {
        let (_root, ledger) = ledger();
        // An earlier issue's deliveries come first in the table.
        create(
            &ledger,
            &issue("2026-05-25", "2026-05-25T06:00:00Z"),
            &["zed@example.com"],
        );
        let record = issue(ISSUE, "2026-06-01T06:00:00Z");
        let mut deliveries = [
            to("ed@example.com", "weekly"),
            to("bo@example.com", "daily"),
            to("cy@example.com", "weekly"),
            to("ana@example.com", "daily"),
        ]
        .into_iter();
        ledger
            .create_issue(&record, &mut deliveries, record.created)
            .unwrap();
        let due: Vec<Delivery> = ledger
            .due(ISSUE, time("2026-06-01T06:00:00Z"), false)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let order: Vec<&str> = due.iter().map(|d| d.address.as_str()).collect();
        assert_eq!(
            order,
            [
                "ed@example.com",
                "bo@example.com",
                "cy@example.com",
                "ana@example.com"
            ]
        );
        assert!(due.iter().all(|d| d.issue_id == ISSUE));
        let missing = ledger.due("2026-06-02", time("2026-06-01T06:00:00Z"), false);
        assert!(format!("{:#}", missing.unwrap_err()).contains("no issue 2026-06-02"));
    }

    #[test]
    fn due_deliveries_are_read_page_by_page_past_those_done() {
        let addresses: Vec<String> = (0..2_500)
            .map(|n| format!("reader{n:04}@example.com"))
            .collect();
        let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
        let (_root, ledger) = with_issue(&refs);
        let at = time("2026-06-01T06:00:00Z");
        // Every third one sent before the walk; the first of each page
        // sent during it.
        let sent: Vec<(AddressKey, Mark)> = addresses
            .iter()
            .step_by(3)
            .flat_map(|a| {
                [
                    (key(a), Mark::Sending),
                    (key(a), Mark::Sent("250 OK".into())),
                ]
            })
            .collect();
        ledger.record(ISSUE, &sent, at).unwrap();
        let expected: Vec<String> = addresses
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 3 != 0)
            .map(|(_, a)| a.clone())
            .collect();
        assert_eq!(ledger.due_count(ISSUE, at, false).unwrap(), 1_666);
        let mut walked = Vec::new();
        for delivery in ledger.due(ISSUE, at, false).unwrap() {
            let delivery = delivery.unwrap();
            let mark = [(delivery.key, Mark::Sending)];
            assert_eq!(ledger.record(ISSUE, &mark, at).unwrap(), [true]);
            walked.push(delivery.address);
        }
        assert_eq!(walked, expected);
        assert_eq!(ledger.due_count(ISSUE, at, false).unwrap(), 0);
        assert!(due_at(&ledger, ISSUE, "2026-06-01T06:00:00Z", false).is_empty());
    }

    #[test]
    fn a_deferred_delivery_is_due_from_its_next_attempt() {
        let (_root, ledger) = with_issue(&["ana@example.com", "bo@example.com"]);
        let ana = key("ana@example.com");
        let at = time("2026-06-01T06:00:00Z");
        ledger.mark(ISSUE, ana, Mark::Sending, at).unwrap();
        // 09:00+02:00 is 07:00Z.
        let next = time("2026-06-01T09:00:00+02:00");
        ledger
            .mark(
                ISSUE,
                ana,
                Mark::Deferred("451 4.7.1 try later".into(), next),
                at,
            )
            .unwrap();
        let stored = ledger.delivery(ISSUE, ana).unwrap().unwrap();
        assert_eq!(stored.status, DeliveryStatus::Deferred);
        assert_eq!(stored.next_attempt, Some(next));
        assert_eq!(stored.last_reply.as_deref(), Some("451 4.7.1 try later"));
        let due_at = |now: &str| due_at(&ledger, ISSUE, now, false);
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
            .mark(ISSUE, key("ana@example.com"), Mark::Sending, at)
            .unwrap();
        assert_eq!(ledger.recover(ISSUE, at).unwrap(), 1);
        let due = |resend| due_at(&ledger, ISSUE, "2026-06-01T06:00:00Z", resend);
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
        ledger.suppress(bo, None, Reason::Unsubscribed, at).unwrap();
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
        assert_eq!(bounce.reason, Reason::Bounced);
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
    fn deferred_deliveries_of_an_old_issue_expire_as_failed() {
        let (_root, ledger) = ledger();
        let record = issue(ISSUE, "2026-06-01T06:00:00Z");
        let mut deliveries = [
            to("ana@example.com", "weekly"),
            to("bo@example.com", "daily"),
            to("cy@example.com", "daily"),
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
        let expired = ledger
            .expire_deferred(ISSUE, "too late", time("2026-06-05T06:00:00Z"))
            .unwrap();
        let expected: BTreeMap<String, u64> =
            [("daily".to_string(), 1), ("weekly".to_string(), 1)].into();
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
        assert_eq!(status(&ledger, "cy@example.com"), DeliveryStatus::Pending);
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
            .mark(ISSUE, key("a@example.com"), Mark::Sending, at)
            .unwrap();
        ledger
            .mark(ISSUE, key("a@example.com"), Mark::Sent("250 OK".into()), at)
            .unwrap();
        ledger
            .mark(ISSUE, key("b@example.com"), Mark::Sending, at)
            .unwrap();
        ledger
            .mark(ISSUE, key("c@example.com"), Mark::Suppressed, at)
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
