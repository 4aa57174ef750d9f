//! Ledger stage: the posts each issue saw — every post published and meant
//! for email when it was made, carried or not — by slug, with the first
//! issue that saw it. A later issue takes the posts no issue saw, so what
//! an issue holds does not depend on dates or on the clock.
//!
//! Issues made before the ledger kept this (schema 4 and older) saw
//! nothing on record; [`SeenPosts::unrecorded`] tells the caller to reckon
//! what they saw. May import what `ledger` may.

use std::collections::HashSet;

use anyhow::{Context, Result};
use rusqlite::Connection;

use super::Ledger;

/// What earlier issues saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenPosts {
    /// The slugs some issue saw.
    pub slugs: HashSet<String>,
    /// True when there are issues and none of them recorded what it saw:
    /// a ledger upgraded in mid-life, until its next issue.
    pub unrecorded: bool,
}

impl Ledger {
    /// What the issues made so far saw.
    pub fn seen_posts(&self) -> Result<SeenPosts> {
        let read = || -> Result<SeenPosts> {
            // One snapshot: the slugs and the issues agree.
            let tx = self.conn.unchecked_transaction()?;
            let mut slugs = HashSet::new();
            {
                let mut statement = tx.prepare_cached("SELECT slug FROM seen_posts")?;
                let mut rows = statement.query([])?;
                while let Some(row) = rows.next()? {
                    slugs.insert(row.get(0)?);
                }
            }
            let issues = tx.prepare_cached("SELECT 1 FROM issues")?.exists([])?;
            let recorded = tx
                .prepare_cached("SELECT 1 FROM issues WHERE saw_posts = 1")?
                .exists([])?;
            Ok(SeenPosts {
                slugs,
                unrecorded: issues && !recorded,
            })
        };
        read().context("cannot read the posts earlier issues saw")
    }
}

/// Records that issue `id` saw the posts `slugs` (a slug some issue saw
/// already keeps its first issue), inside the caller's transaction.
pub(super) fn record_seen(conn: &Connection, id: &str, slugs: &[&str]) -> Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT OR IGNORE INTO seen_posts (slug, issue_id) VALUES (?1, ?2)")?;
    for slug in slugs {
        insert.execute([slug, &id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rusqlite::Connection;

    use super::SeenPosts;
    use crate::ledger::fixtures::{issue, ledger};
    use crate::ledger::schema::MIGRATIONS;

    #[test]
    fn an_issue_records_what_it_saw_and_a_slug_keeps_its_first_issue() {
        let (_root, ledger) = ledger();
        assert_eq!(ledger.seen_posts().unwrap(), SeenPosts::default());
        let first = issue("2026-06-01", "2026-06-01T06:00:00Z");
        ledger.open_issue(&first, &[], &["a", "b", "c"]).unwrap();
        let second = issue("2026-06-08", "2026-06-08T06:00:00Z");
        ledger.open_issue(&second, &[], &["c", "d"]).unwrap();
        let seen = ledger.seen_posts().unwrap();
        let slugs = ["a", "b", "c", "d"].map(String::from);
        assert_eq!(seen.slugs, HashSet::from(slugs));
        assert!(!seen.unrecorded);
        let c_first_seen_by: String = ledger
            .conn
            .query_row(
                "SELECT issue_id FROM seen_posts WHERE slug = 'c'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(c_first_seen_by, "2026-06-01");
    }

    #[test]
    fn a_refused_issue_records_nothing_it_saw() {
        let (_root, ledger) = ledger();
        let first = issue("2026-06-01", "2026-06-01T06:00:00Z");
        ledger.open_issue(&first, &[], &["a"]).unwrap();
        assert!(ledger.open_issue(&first, &[], &["b"]).is_err());
        let seen = ledger.seen_posts().unwrap();
        assert_eq!(seen.slugs, HashSet::from(["a".to_string()]));
    }

    /// A ledger of schema 4 with one issue, as a gazette before seen posts
    /// left it, opened by this one.
    #[test]
    fn issues_of_an_upgraded_ledger_saw_nothing_on_record_until_the_next() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".gazette")).unwrap();
        let path = root.path().join(".gazette/state.db");
        let old = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..4] {
            old.execute_batch(sql).unwrap();
        }
        old.pragma_update(None, "user_version", 4).unwrap();
        old.execute(
            "INSERT INTO issues (id, cutoff, since, posts, content_hash, created, custom_columns, frozen, completed)
             VALUES ('2026-06-01', '2026-06-01T06:00:00Z', NULL, '[]', 'x',
                 '2026-06-01T06:00:00Z', '[]', '2026-06-01T06:00:00Z', '2026-06-01T06:10:00Z')",
            [],
        )
        .unwrap();
        drop(old);
        let ledger = crate::ledger::Ledger::open(root.path()).unwrap();
        let seen = ledger.seen_posts().unwrap();
        assert_eq!(seen.slugs, HashSet::new());
        assert!(seen.unrecorded);
        let next = issue("2026-06-08", "2026-06-08T06:00:00Z");
        ledger.open_issue(&next, &[], &["a"]).unwrap();
        let seen = ledger.seen_posts().unwrap();
        assert!(!seen.unrecorded);
        assert_eq!(seen.slugs, HashSet::from(["a".to_string()]));
    }
}
