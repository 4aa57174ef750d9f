//! Ledger stage: the schema, built by numbered migrations.
//!
//! `PRAGMA user_version` says how many have run. Append new ones, never edit
//! or reorder old ones: ledgers made by released versions have run them.
//! May import what `ledger` may.

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, TransactionBehavior};

/// Migration `n` (from 1) takes the schema from version `n - 1` to `n`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: addresses that must not be mailed. `at` is RFC 3339.
    "CREATE TABLE suppression (
        address_key TEXT PRIMARY KEY,
        address TEXT,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
    );",
    // 2: issues, frozen at their first attempt, and one delivery per reader
    // of each. Times are RFC 3339 with the offset they were recorded in, so
    // they are compared in Rust, not as text. `completed` is set once no
    // delivery is pending, sending or deferred. `sending` is written just
    // before DATA: found by a later run, it means the reply was lost.
    "CREATE TABLE issues (
        id TEXT PRIMARY KEY,
        cutoff TEXT NOT NULL,
        since TEXT,
        posts TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        created TEXT NOT NULL,
        completed TEXT
    );
    CREATE TABLE deliveries (
        issue_id TEXT NOT NULL REFERENCES issues(id),
        address_key TEXT NOT NULL,
        address TEXT NOT NULL,
        segment TEXT NOT NULL,
        variant TEXT NOT NULL,
        picks TEXT NOT NULL,
        message_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_reply TEXT,
        next_attempt TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        PRIMARY KEY (issue_id, address_key)
    );
    CREATE INDEX deliveries_by_status ON deliveries (issue_id, status);",
    // 3: the custom columns of the subscribers file an issue was frozen
    // with (a JSON list), so a run can set up its renderer without reading
    // every delivery first; NULL for issues frozen before.
    "ALTER TABLE issues ADD COLUMN custom_columns TEXT;",
    // 4: when the last reader was frozen. Readers are frozen while
    // the first are sent; NULL while that goes on, or after a run that
    // stopped in the middle (the next one carries on). Issues before this
    // were frozen in one transaction.
    "ALTER TABLE issues ADD COLUMN frozen TEXT;
    UPDATE issues SET frozen = created;",
    // 5: posts seen: every post published and meant for email when an
    // issue was made, under the slug it had, with the first issue that saw
    // it (carried or not). A later issue takes only posts no issue saw,
    // whatever their dates, so a post written after a send but dated
    // before it still goes out. `saw_posts` is 1 for the issues that
    // recorded what they saw; 0 for those made before, which did not (what
    // they saw is reckoned from the posts they carried: see `select`).
    "CREATE TABLE seen_posts (
        slug TEXT PRIMARY KEY,
        issue_id TEXT NOT NULL REFERENCES issues(id)
    );
    ALTER TABLE issues ADD COLUMN saw_posts INTEGER NOT NULL DEFAULT 0;",
];

/// Runs the migrations the ledger lacks, each in its own transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    while version(conn)? < MIGRATIONS.len() {
        // A write lock first, then the version again: another process may
        // have migrated while this one waited.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = version(&tx)?;
        if let Some(sql) = MIGRATIONS.get(current) {
            tx.execute_batch(sql)
                .with_context(|| format!("migration {} failed", current + 1))?;
            tx.pragma_update(None, "user_version", i64::try_from(current + 1)?)?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Reads the suppression list and the issues whole, and the first
/// delivery, so a file SQLite cannot read — cut short, or overwritten — is
/// found when it is opened, not halfway through a send. SQLite itself
/// compares the size its header records with the file's on the first
/// read; this finds the pages missing from a file whose header size it
/// does not trust. The two tables whose loss would mail readers again are
/// small (a few MB for 100,000 suppressions); deliveries can be GBs.
pub(super) fn read_every_table(conn: &Connection) -> Result<()> {
    for sql in [
        "SELECT count(address) FROM suppression",
        "SELECT count(posts) FROM issues",
        "SELECT count(*) FROM (SELECT status FROM deliveries LIMIT 1)",
    ] {
        conn.query_row(sql, [], |_| Ok(()))?;
    }
    Ok(())
}

/// Whether `conn` holds a gazette ledger: a schema version this gazette
/// knows, and the tables that version has.
pub(super) fn check_is_ledger(conn: &Connection) -> Result<()> {
    let version = version(conn)?;
    if version == 0 {
        bail!("it has no gazette schema (user_version 0)");
    }
    let tables: &[&str] = if version >= 2 {
        &["suppression", "issues", "deliveries"]
    } else {
        &["suppression"]
    };
    for table in tables {
        let found: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get(0),
        )?;
        if found == 0 {
            bail!("it has no '{table}' table");
        }
    }
    Ok(())
}

/// The schema version of the ledger, if this gazette knows it.
fn version(conn: &Connection) -> Result<usize> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let Ok(version) = usize::try_from(version) else {
        bail!("it has schema version {version}, which no gazette makes");
    };
    if version > MIGRATIONS.len() {
        bail!(
            "it was made by a newer gazette (schema version {version}; this one knows up to {}); \
             upgrade gazette",
            MIGRATIONS.len()
        );
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), MIGRATIONS.len());
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 4);
    }

    #[test]
    fn a_failed_migration_leaves_the_version_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE suppression (x);").unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(format!("{err:#}").contains("migration 1 failed"), "{err:#}");
        assert_eq!(version(&conn).unwrap(), 0);
    }
}
