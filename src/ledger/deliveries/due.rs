//! Ledger stage: the deliveries due now — `pending`, `deferred` whose
//! time has come, `unknown` when resent — read in frozen order a page at a
//! time. May import the rest of `ledger`.

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use rusqlite::params;

use super::{Delivery, DeliveryStatus, SELECT, StoredDelivery};
use crate::ledger::issues::require_issue;
use crate::ledger::{Ledger, parse_time};

/// How many deliveries [`Due`] reads at a time.
const PAGE: i64 = 1000;

impl Ledger {
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
            let stored = StoredDelivery::read(row)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::AddressKey;
    use crate::ledger::Mark;
    use crate::ledger::deliveries::testing::{ISSUE, key, with_issue};
    use crate::ledger::fixtures::{create, issue, ledger, time, to};

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
}
