//! Ledger stage: issues, each frozen with its posts and one `pending`
//! delivery per reader, so a resumed run sends the same digest even if the
//! content changed in between. The posts come first, the readers as they
//! are read (see [`Ledger::write`]); `frozen` says when the last one was.
//!
//! Times keep the offset they were recorded in, and RFC 3339 text with
//! different offsets does not sort by time: "newest" is decided in Rust.
//! May import what `ledger` may.

use anyhow::{Context, Result, bail};
use std::collections::HashSet;

use chrono::{DateTime, FixedOffset};
use rusqlite::{Connection, Row, Transaction, TransactionBehavior, params};

use super::deliveries::counts_by_issue;
use super::seen::record_seen;
use super::{DeliveryCounts, Ledger, parse_time};

/// An issue as frozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRecord {
    /// `YYYY-MM-DD`, or `YYYY-MM-DD-N` for the Nth issue made that day.
    pub id: String,
    /// Posts published up to here are in it.
    pub cutoff: DateTime<FixedOffset>,
    /// The `--since` it was made with, else the previous issue's cutoff
    /// (for the record: posts are chosen by what earlier issues saw, see
    /// [`Ledger::seen_posts`]); `None` for a first issue.
    pub since: Option<DateTime<FixedOffset>>,
    /// The frozen posts, as JSON the caller chose.
    pub posts: String,
    /// Hex SHA-256 of `posts`, computed by the caller.
    pub content_hash: String,
    pub created: DateTime<FixedOffset>,
    /// When no delivery was pending, sending or deferred any more.
    pub completed: Option<DateTime<FixedOffset>>,
}

/// Reads issues; `WHERE` follows.
const SELECT: &str =
    "SELECT id, cutoff, since, posts, content_hash, created, completed FROM issues";

impl Ledger {
    /// The most recent issue (by created, then id), completed or not.
    pub fn last_issue(&self) -> Result<Option<IssueRecord>> {
        self.newest_issue("SELECT id, created FROM issues")
            .context("cannot read the last issue")
    }

    /// The most recent issue that is not completed (the one a run must
    /// finish first).
    pub fn unfinished_issue(&self) -> Result<Option<IssueRecord>> {
        self.newest_issue("SELECT id, created FROM issues WHERE completed IS NULL")
            .context("cannot read the unfinished issue")
    }

    /// The posts JSON of every issue ever made, oldest first (the caller
    /// extracts slugs).
    pub fn issue_posts(&self) -> Result<Vec<String>> {
        let read = || -> Result<Vec<String>> {
            let mut statement = self
                .conn
                .prepare_cached("SELECT created, id, posts FROM issues")?;
            let mut rows = statement.query([])?;
            let mut all = Vec::new();
            while let Some(row) = rows.next()? {
                let (created, id, posts): (String, String, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                all.push((created_time(&id, &created)?, id, posts));
            }
            all.sort();
            Ok(all.into_iter().map(|(_, _, posts)| posts).collect())
        };
        read().context("cannot read the posts of past issues")
    }

    /// The id of every issue recorded.
    pub fn issue_ids(&self) -> Result<HashSet<String>> {
        let read = || -> Result<HashSet<String>> {
            let mut statement = self.conn.prepare_cached("SELECT id FROM issues")?;
            let ids = statement.query_map([], |row| row.get(0))?;
            Ok(ids.collect::<rusqlite::Result<_>>()?)
        };
        read().context("cannot read the ledger's issues")
    }

    /// Records `issue`, made at `at` with the subscribers file's custom
    /// columns and the slugs of the posts it saw that no earlier issue saw
    /// ([`Ledger::seen_posts`]), in one transaction, before its deliveries
    /// (see [`Ledger::write`]): it is frozen once they all are
    /// ([`Ledger::is_frozen`]). An id that exists or an issue completed
    /// already is refused.
    pub fn open_issue(
        &self,
        issue: &IssueRecord,
        custom_columns: &[String],
        seen: &[&str],
    ) -> Result<()> {
        let open = || -> Result<()> {
            if issue.completed.is_some() {
                bail!("a new issue cannot be completed already");
            }
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            if issue_exists(&tx, &issue.id)? {
                bail!("an issue with that id exists already");
            }
            tx.prepare_cached(
                "INSERT INTO issues (id, cutoff, since, posts, content_hash, created,
                     custom_columns, saw_posts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
            )?
            .execute(params![
                issue.id,
                issue.cutoff.to_rfc3339(),
                issue.since.map(|since| since.to_rfc3339()),
                issue.posts,
                issue.content_hash,
                issue.created.to_rfc3339(),
                serde_json::to_string(custom_columns)?,
            ])?;
            record_seen(&tx, &issue.id, seen)?;
            tx.commit()?;
            Ok(())
        };
        open().with_context(|| format!("cannot create issue {}", issue.id))
    }

    /// Whether every reader of issue `id` is frozen.
    pub fn is_frozen(&self, id: &str) -> Result<bool> {
        let read = || -> Result<bool> {
            require_issue(&self.conn, id)?;
            let frozen: Option<String> = self
                .conn
                .prepare_cached("SELECT frozen FROM issues WHERE id = ?1")?
                .query_row([id], |row| row.get(0))?;
            Ok(frozen.is_some())
        };
        read().with_context(|| format!("cannot read issue {id}"))
    }

    /// The custom columns issue `id` was frozen with; `None` for an issue
    /// frozen before the ledger kept them.
    pub fn custom_columns(&self, id: &str) -> Result<Option<Vec<String>>> {
        let read = || -> Result<Option<Vec<String>>> {
            require_issue(&self.conn, id)?;
            let json: Option<String> = self
                .conn
                .prepare_cached("SELECT custom_columns FROM issues WHERE id = ?1")?
                .query_row([id], |row| row.get(0))?;
            json.map(|json| serde_json::from_str(&json).with_context(|| damaged(id)))
                .transpose()
        };
        read().with_context(|| format!("cannot read the custom columns of issue {id}"))
    }
    /// Sets `completed` (if it was not) when every reader of `issue` is
    /// frozen and no delivery is pending, sending or deferred (or
    /// `unknown`, when `unknown_open`: those are to be sent again); returns
    /// whether it is completed.
    pub fn complete_if_done(
        &self,
        issue: &str,
        unknown_open: bool,
        at: DateTime<FixedOffset>,
    ) -> Result<bool> {
        let complete = || -> Result<bool> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            require_issue(&tx, issue)?;
            let open = tx
                .prepare_cached(
                    "SELECT 1 FROM deliveries
                     WHERE issue_id = ?1 AND (status IN ('pending', 'sending', 'deferred')
                         OR (?2 AND status = 'unknown'))",
                )?
                .exists(params![issue, unknown_open])?;
            let frozen = tx
                .prepare_cached("SELECT 1 FROM issues WHERE id = ?1 AND frozen IS NOT NULL")?
                .exists([issue])?;
            if open || !frozen {
                return Ok(false);
            }
            tx.prepare_cached(
                "UPDATE issues SET completed = ?2 WHERE id = ?1 AND completed IS NULL",
            )?
            .execute(params![issue, at.to_rfc3339()])?;
            tx.commit()?;
            Ok(true)
        };
        complete().with_context(|| format!("cannot complete issue {issue}"))
    }

    /// Every issue, newest first, with its counts (for `gazette status`).
    pub fn issues(&self) -> Result<Vec<(IssueRecord, DeliveryCounts)>> {
        let read = || -> Result<Vec<(IssueRecord, DeliveryCounts)>> {
            // One snapshot, so the counts are those of the issues read.
            let tx = self.conn.unchecked_transaction()?;
            let mut issues = tx
                .prepare_cached(SELECT)?
                .query_map([], StoredIssue::read)?
                .map(|stored| stored?.check())
                .collect::<Result<Vec<_>>>()?;
            issues.sort_by(|a, b| (&b.created, &b.id).cmp(&(&a.created, &a.id)));
            let mut counts = counts_by_issue(&tx)?;
            Ok(issues
                .into_iter()
                .map(|issue| {
                    let counts = counts.remove(&issue.id).unwrap_or_default();
                    (issue, counts)
                })
                .collect())
        };
        read().context("cannot read the ledger's issues")
    }

    /// The issue among those `sql` lists (`id, created`) created last, then
    /// with the greatest id.
    fn newest_issue(&self, sql: &str) -> Result<Option<IssueRecord>> {
        let mut newest = None;
        {
            let mut statement = self.conn.prepare_cached(sql)?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let (id, created): (String, String) = (row.get(0)?, row.get(1)?);
                let candidate = (created_time(&id, &created)?, id);
                if newest.as_ref().is_none_or(|newest| candidate > *newest) {
                    newest = Some(candidate);
                }
            }
        }
        newest
            .map(|(_, id)| read_issue(&self.conn, &id))
            .transpose()
    }
}

/// Errors unless issue `id` is recorded (a caller's bug, not an empty
/// answer).
pub(super) fn require_issue(conn: &Connection, id: &str) -> Result<()> {
    if !issue_exists(conn, id)? {
        bail!("the ledger has no issue {id}");
    }
    Ok(())
}

/// Whether an issue `id` is recorded.
fn issue_exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM issues WHERE id = ?1")?
        .exists([id])?)
}

/// The issue `id`, which exists.
fn read_issue(conn: &Connection, id: &str) -> Result<IssueRecord> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], StoredIssue::read)?
        .check()
}

/// The `created` time of issue `id`.
fn created_time(id: &str, created: &str) -> Result<DateTime<FixedOffset>> {
    parse_time(created).with_context(|| damaged(id))
}

fn damaged(id: &str) -> String {
    format!("the ledger's issue {id} is damaged")
}

/// A row as stored, before its text is checked.
struct StoredIssue {
    id: String,
    cutoff: String,
    since: Option<String>,
    posts: String,
    content_hash: String,
    created: String,
    completed: Option<String>,
}

impl StoredIssue {
    fn read(row: &Row<'_>) -> rusqlite::Result<StoredIssue> {
        Ok(StoredIssue {
            id: row.get(0)?,
            cutoff: row.get(1)?,
            since: row.get(2)?,
            posts: row.get(3)?,
            content_hash: row.get(4)?,
            created: row.get(5)?,
            completed: row.get(6)?,
        })
    }

    fn check(self) -> Result<IssueRecord> {
        let optional = |text: Option<&str>| text.map(parse_time).transpose();
        let context = || damaged(&self.id);
        Ok(IssueRecord {
            cutoff: parse_time(&self.cutoff).with_context(context)?,
            since: optional(self.since.as_deref()).with_context(context)?,
            created: parse_time(&self.created).with_context(context)?,
            completed: optional(self.completed.as_deref()).with_context(context)?,
            id: self.id,
            posts: self.posts,
            content_hash: self.content_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::address::AddressKey;
    use crate::ledger::Mark;
    use crate::ledger::fixtures::{create, issue, ledger, time, to};
    use crate::ledger::{DeliveryCounts, DeliveryStatus, Writes};

    #[test]
    fn an_issue_and_ten_thousand_deliveries_are_frozen_in_one_call() {
        let (_root, ledger) = ledger();
        let mut record = issue("2026-06-01", "2026-06-01T06:00:00+02:00");
        record.since = Some(time("2026-05-25T06:00:00+02:00"));
        let addresses: Vec<String> = (0..10_000)
            .map(|n| format!("reader{n}@example.com"))
            .collect();
        let mut deliveries = addresses
            .iter()
            .enumerate()
            .map(|(n, address)| to(address, if n % 2 == 0 { "even" } else { "odd" }));
        let at = time("2026-06-01T06:00:01+02:00");
        let started = Instant::now();
        let inserted = ledger.create_issue(&record, &mut deliveries, at).unwrap();
        eprintln!(
            "create_issue with 10,000 deliveries took {:?}",
            started.elapsed()
        );
        assert_eq!(inserted, 10_000);
        assert_eq!(ledger.last_issue().unwrap(), Some(record.clone()));
        let key = AddressKey::of("reader9999@example.com");
        let delivery = ledger.delivery("2026-06-01", key).unwrap().unwrap();
        assert_eq!(delivery.key, key);
        assert_eq!(delivery.address, "reader9999@example.com");
        assert_eq!(delivery.segment, "odd");
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.attempts, 0);
        assert_eq!((delivery.last_reply, delivery.next_attempt), (None, None));
        assert_eq!(delivery.updated, at);
        assert_eq!(ledger.delivery("2026-06-02", key).unwrap(), None);
    }

    #[test]
    fn an_existing_id_is_refused_and_nothing_is_recorded() {
        let (_root, ledger) = ledger();
        let first = issue("2026-06-01", "2026-06-01T06:00:00Z");
        create(&ledger, &first, &["ana@example.com"]);
        let mut again = issue("2026-06-01", "2026-06-01T07:00:00Z");
        again.posts = "[]".to_string();
        let mut deliveries = [to("bo@example.com", "all")].into_iter();
        let err = ledger
            .create_issue(&again, &mut deliveries, again.created)
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("2026-06-01"), "{message}");
        assert!(message.contains("exists already"), "{message}");
        assert_eq!(ledger.last_issue().unwrap(), Some(first));
        let bo = AddressKey::of("bo@example.com");
        assert_eq!(ledger.delivery("2026-06-01", bo).unwrap(), None);
    }

    #[test]
    fn a_second_delivery_to_one_reader_records_nothing_of_its_batch() {
        let (_root, ledger) = ledger();
        let record = issue("2026-06-01", "2026-06-01T06:00:00Z");
        ledger.open_issue(&record, &[], &[]).unwrap();
        let writes = Writes {
            deliveries: vec![to("ana@example.com", "all"), to("ANA@example.com", "all")],
            marks: Vec::new(),
            frozen: true,
        };
        let err = ledger
            .write(&record.id, &writes, record.created)
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("2026-06-01"), "{message}");
        let key = AddressKey::of("ana@example.com");
        assert!(message.contains(&key.hex()), "{message}");
        assert_eq!(ledger.delivery("2026-06-01", key).unwrap(), None);
        assert!(!ledger.is_frozen("2026-06-01").unwrap());
    }

    #[test]
    fn a_completed_issue_cannot_be_created() {
        let (_root, ledger) = ledger();
        let mut record = issue("2026-06-01", "2026-06-01T06:00:00Z");
        record.completed = Some(record.created);
        let err = ledger
            .create_issue(&record, &mut std::iter::empty(), record.created)
            .unwrap_err();
        assert!(format!("{err:#}").contains("completed"), "{err:#}");
        assert_eq!(ledger.last_issue().unwrap(), None);
    }

    #[test]
    fn an_issue_keeps_its_custom_columns_and_is_frozen_with_its_last_reader() {
        let (_root, ledger) = ledger();
        let record = issue("2026-06-01", "2026-06-01T06:00:00Z");
        let columns = vec!["role".to_string(), "company".to_string()];
        ledger.open_issue(&record, &columns, &[]).unwrap();
        assert_eq!(ledger.custom_columns("2026-06-01").unwrap(), Some(columns));
        assert!(ledger.custom_columns("2026-06-02").is_err());
        // Readers still to freeze: not complete, though nothing is pending.
        assert!(!ledger.is_frozen("2026-06-01").unwrap());
        assert!(
            !ledger
                .complete_if_done("2026-06-01", false, record.created)
                .unwrap()
        );
        let first = Writes {
            deliveries: vec![to("ana@example.com", "all")],
            ..Writes::default()
        };
        ledger.write("2026-06-01", &first, record.created).unwrap();
        let keys = ledger.delivery_keys("2026-06-01").unwrap();
        assert_eq!(keys, [AddressKey::of("ana@example.com")].into());
        assert!(!ledger.is_frozen("2026-06-01").unwrap());
        let last = Writes {
            frozen: true,
            ..Writes::default()
        };
        ledger.write("2026-06-01", &last, record.created).unwrap();
        assert!(ledger.is_frozen("2026-06-01").unwrap());
        let sent = [(AddressKey::of("ana@example.com"), Mark::Sent("250".into()))];
        ledger.record("2026-06-01", &sent, record.created).unwrap();
        assert!(
            ledger
                .complete_if_done("2026-06-01", false, record.created)
                .unwrap()
        );
        // Issued before the ledger kept them: unknown.
        ledger
            .conn
            .execute("UPDATE issues SET custom_columns = NULL", [])
            .unwrap();
        assert_eq!(ledger.custom_columns("2026-06-01").unwrap(), None);
    }

    #[test]
    fn every_issue_id_is_listed() {
        let (_root, ledger) = ledger();
        assert!(ledger.issue_ids().unwrap().is_empty());
        create(&ledger, &issue("2026-06-01", "2026-06-01T06:00:00Z"), &[]);
        create(&ledger, &issue("2026-06-01-2", "2026-06-01T07:00:00Z"), &[]);
        let ids = ledger.issue_ids().unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains("2026-06-01") && ids.contains("2026-06-01-2"));
    }

    #[test]
    fn the_last_issue_is_the_one_created_last() {
        let (_root, ledger) = ledger();
        assert_eq!(ledger.last_issue().unwrap(), None);
        assert_eq!(ledger.unfinished_issue().unwrap(), None);
        // 08:00+02:00 is 06:00Z: earlier than 07:00Z although its text sorts later.
        let early = issue("2026-06-01", "2026-06-01T08:00:00+02:00");
        let late = issue("2026-06-01-2", "2026-06-01T07:00:00Z");
        create(&ledger, &late, &[]);
        create(&ledger, &early, &[]);
        assert_eq!(ledger.last_issue().unwrap(), Some(late.clone()));
        assert_eq!(ledger.unfinished_issue().unwrap(), Some(late.clone()));
        // Made at the same instant: the greater id.
        let twin = issue("2026-06-01-3", "2026-06-01T09:00:00+02:00");
        create(&ledger, &twin, &[]);
        assert_eq!(ledger.last_issue().unwrap(), Some(twin.clone()));
        assert_eq!(
            ledger.issue_posts().unwrap(),
            vec![early.posts, late.posts, twin.posts]
        );
    }

    #[test]
    fn an_issue_is_completed_when_nothing_is_left_to_try() {
        let (_root, ledger) = ledger();
        let record = issue("2026-06-01", "2026-06-01T06:00:00Z");
        create(&ledger, &record, &["ana@example.com", "bo@example.com"]);
        let (ana, bo) = (
            AddressKey::of("ana@example.com"),
            AddressKey::of("bo@example.com"),
        );
        let at = time("2026-06-01T06:00:00Z");
        assert!(!ledger.complete_if_done("2026-06-01", false, at).unwrap());
        ledger.mark("2026-06-01", ana, Mark::Sending, at).unwrap();
        ledger
            .mark("2026-06-01", ana, Mark::Sent("250 OK".into()), at)
            .unwrap();
        ledger.mark("2026-06-01", bo, Mark::Sending, at).unwrap();
        ledger
            .mark(
                "2026-06-01",
                bo,
                Mark::Deferred("451".into(), time("2026-06-02T00:00:00Z")),
                at,
            )
            .unwrap();
        assert!(!ledger.complete_if_done("2026-06-01", false, at).unwrap());
        assert_eq!(ledger.unfinished_issue().unwrap(), Some(record.clone()));
        ledger.mark("2026-06-01", bo, Mark::Sending, at).unwrap();
        assert!(!ledger.complete_if_done("2026-06-01", false, at).unwrap());
        // Unknown is settled for completion: only a resend may change it.
        ledger.recover("2026-06-01", at).unwrap();
        let done = time("2026-06-02T01:00:00+01:00");
        assert!(ledger.complete_if_done("2026-06-01", false, done).unwrap());
        // Completed once: the first time is kept.
        let later = time("2026-06-03T00:00:00Z");
        assert!(ledger.complete_if_done("2026-06-01", false, later).unwrap());
        let completed = ledger.last_issue().unwrap().unwrap().completed;
        assert_eq!(completed, Some(done));
        assert_eq!(ledger.unfinished_issue().unwrap(), None);
        assert!(ledger.complete_if_done("2026-06-02", false, at).is_err());
    }

    #[test]
    fn the_unfinished_issue_is_the_newest_not_completed() {
        let (_root, ledger) = ledger();
        let old = issue("2026-05-25", "2026-05-25T06:00:00Z");
        create(&ledger, &old, &["ana@example.com"]);
        let new = issue("2026-06-01", "2026-06-01T06:00:00Z");
        create(&ledger, &new, &[]);
        assert!(
            ledger
                .complete_if_done("2026-06-01", false, new.created)
                .unwrap()
        );
        assert_eq!(ledger.unfinished_issue().unwrap(), Some(old));
        assert_eq!(ledger.last_issue().unwrap().unwrap().id, "2026-06-01");
    }

    #[test]
    fn issues_are_listed_newest_first_with_their_counts() {
        let (_root, ledger) = ledger();
        assert_eq!(ledger.issues().unwrap(), vec![]);
        // 08:00+02:00 is 06:00Z: the oldest, although its text sorts last.
        let first = issue("2026-05-18", "2026-05-18T08:00:00+02:00");
        let second = issue("2026-05-25", "2026-05-25T06:00:00Z");
        let third = issue("2026-06-01", "2026-06-01T06:00:00Z");
        create(&ledger, &second, &["ana@example.com", "bo@example.com"]);
        create(&ledger, &third, &[]);
        create(&ledger, &first, &["ana@example.com"]);
        let ana = AddressKey::of("ana@example.com");
        let at = time("2026-06-01T07:00:00Z");
        ledger
            .mark("2026-05-25", ana, Mark::Suppressed, at)
            .unwrap();
        let listed = ledger.issues().unwrap();
        let ids: Vec<&str> = listed.iter().map(|(issue, _)| issue.id.as_str()).collect();
        assert_eq!(ids, ["2026-06-01", "2026-05-25", "2026-05-18"]);
        assert_eq!(listed[0], (third, DeliveryCounts::default()));
        assert_eq!(
            listed[1].1,
            DeliveryCounts {
                pending: 1,
                suppressed: 1,
                ..DeliveryCounts::default()
            }
        );
        assert_eq!(
            listed[2].1,
            DeliveryCounts {
                pending: 1,
                ..DeliveryCounts::default()
            }
        );
    }

    #[test]
    fn a_damaged_issue_is_an_error_naming_it() {
        let (_root, ledger) = ledger();
        ledger
            .conn
            .execute(
                "INSERT INTO issues VALUES ('2026-06-01', 'soon', NULL, '[]', 'x', '2026-06-01T06:00:00Z', NULL, '[]', NULL, 1)",
                [],
            )
            .unwrap();
        let message = format!("{:#}", ledger.last_issue().unwrap_err());
        assert!(message.contains("2026-06-01"), "{message}");
        assert!(message.contains("soon"), "{message}");
    }
}
