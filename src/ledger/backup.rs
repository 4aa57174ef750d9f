//! Ledger stage: a copy of the ledger taken while it is in use, and a
//! ledger put back from such a copy — both through SQLite's online backup,
//! which copies every page in one read transaction (a send writing
//! meanwhile is neither stopped nor half-copied) and writes a live ledger
//! in one transaction (a crash leaves the old one whole).
//!
//! The signing key (`.gazette/secret`) is not in the copy: it lets anyone
//! holding it unsubscribe anyone, so it is kept apart (docs: internals,
//! ledger). May import what `ledger` may.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{
    BUSY_TIMEOUT, IssueRecord, Ledger, WAL_RETRY, create_whole, ledger_path, schema, wal_path,
};

/// What a restore put in place.
#[derive(Debug)]
pub struct Restored {
    /// The last issue the restored ledger holds.
    pub last_issue: Option<IssueRecord>,
    pub suppressions: usize,
    /// Where a ledger SQLite could not read was moved aside.
    pub moved_aside: Option<std::path::PathBuf>,
}

/// Copies the ledger of the project at `root` to `to`, written whole
/// (a temporary file beside it, renamed): the copy is consistent even
/// while a send runs, and `to` is never half-written.
pub fn backup(root: &Path, to: &Path) -> Result<()> {
    let Some(ledger) = Ledger::open_existing(root)? else {
        bail!("{}: no ledger to back up", ledger_path(root).display());
    };
    let dir = match to.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".gazette-backup-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    {
        let mut copy = Connection::open(temp.path())
            .with_context(|| format!("cannot create {}", temp.path().display()))?;
        copy_pages(&ledger.conn, &mut copy)
            .with_context(|| format!("cannot back up to {}", to.display()))?;
        // A copy that stands alone: no write-ahead log beside it.
        copy.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))?;
    }
    temp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", to.display()))?;
    temp.persist(to)
        .with_context(|| format!("cannot replace {}", to.display()))?;
    Ok(())
}

/// Puts the ledger in `from` in place of the project's (the caller holds
/// the send lock). `from` must be a whole gazette ledger this gazette can
/// read; the live ledger is overwritten in one transaction. A ledger
/// SQLite cannot read is moved aside (`state.db.damaged`) first.
pub fn restore(root: &Path, from: &Path) -> Result<Restored> {
    let source = open_backup(from)?;
    let path = ledger_path(root);
    let mut moved_aside = None;
    let live = match Ledger::open_existing(root) {
        Ok(live) => live,
        // Unreadable, or a log without its ledger.
        Err(_) if path.exists() || wal_path(&path).exists() => {
            moved_aside = Some(move_aside(&path)?);
            None
        }
        Err(err) => return Err(err),
    };
    match live {
        Some(mut live) => copy_pages(&source, &mut live.conn).with_context(|| {
            format!("cannot restore {} from {}", path.display(), from.display())
        })?,
        None => {
            crate::state::create_dir(root)?;
            if !create_whole(&path, |conn| copy_pages(&source, conn))? {
                bail!(
                    "{}: another gazette created a ledger meanwhile; nothing restored (run the restore again)",
                    path.display()
                );
            }
        }
    }
    drop(source);
    // Opened as any run opens it: migrated, and read through.
    let restored = Ledger::open(root)?;
    Ok(Restored {
        last_issue: restored.last_issue()?,
        suppressions: restored.suppressions()?.len(),
        moved_aside,
    })
}

/// `from`, opened read-only, once it shows it is a whole gazette ledger.
fn open_backup(from: &Path) -> Result<Connection> {
    let shown = from.display();
    if !from.is_file() {
        bail!("{shown}: no such file");
    }
    let conn = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {shown}"))?;
    let whole: String = conn
        .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
        .map_err(|err| {
            anyhow::anyhow!("{shown}: not a whole SQLite database ({err}); nothing restored")
        })?;
    if whole != "ok" {
        bail!("{shown}: the database is damaged ({whole}); nothing restored");
    }
    schema::check_is_ledger(&conn)
        .with_context(|| format!("{shown}: not a gazette ledger; nothing restored"))?;
    Ok(conn)
}

/// Moves a ledger SQLite cannot read, and its log files, aside.
fn move_aside(path: &Path) -> Result<std::path::PathBuf> {
    let aside = path.with_extension("db.damaged");
    for (from, to) in [("", ""), ("-wal", "-wal"), ("-shm", "-shm")] {
        let from = std::path::PathBuf::from(format!("{}{from}", path.display()));
        let to = std::path::PathBuf::from(format!("{}{to}", aside.display()));
        if from.exists() {
            std::fs::rename(&from, &to).with_context(|| {
                format!("cannot move {} aside to {}", from.display(), to.display())
            })?;
        }
    }
    Ok(aside)
}

/// Copies every page of `from` into `to` in one step (one read
/// transaction on `from`, one write transaction on `to`), waiting while
/// another connection holds either.
fn copy_pages(from: &Connection, to: &mut Connection) -> Result<()> {
    let backup = Backup::new(from, to)?;
    let start = Instant::now();
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked if start.elapsed() < BUSY_TIMEOUT => {
                std::thread::sleep(WAL_RETRY);
            }
            StepResult::Busy | StepResult::Locked => {
                bail!("the database stayed busy for {} s", BUSY_TIMEOUT.as_secs())
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::ledger_with_suppressions;

    #[test]
    fn a_backup_restores_over_a_live_ledger_and_over_a_damaged_one() {
        let root = tempfile::tempdir().unwrap();
        ledger_with_suppressions(root.path(), 300);
        let copy = root.path().join("copy.db");
        backup(root.path(), &copy).unwrap();
        assert!(!root.path().join("copy.db-wal").exists());
        // Over a live ledger that has changed since.
        ledger_with_suppressions(root.path(), 400);
        let restored = restore(root.path(), &copy).unwrap();
        assert_eq!(restored.suppressions, 300);
        assert!(restored.moved_aside.is_none());
        // Over one SQLite cannot read: moved aside first.
        let path = ledger_path(root.path());
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let restored = restore(root.path(), &copy).unwrap();
        assert_eq!(restored.suppressions, 300);
        let aside = restored.moved_aside.unwrap();
        assert_eq!(std::fs::read(aside).unwrap(), vec![7u8; 10_000]);
        // Over a write-ahead log without its ledger: moved aside too.
        std::fs::remove_file(&path).unwrap();
        let log = root.path().join(".gazette/state.db-wal");
        std::fs::write(&log, vec![1u8; 5000]).unwrap();
        let restored = restore(root.path(), &copy).unwrap();
        assert_eq!(restored.suppressions, 300);
        assert!(root.path().join(".gazette/state.db.damaged-wal").exists());
        // Over none at all.
        std::fs::remove_dir_all(root.path().join(".gazette")).unwrap();
        assert_eq!(restore(root.path(), &copy).unwrap().suppressions, 300);
    }

    #[test]
    fn a_file_that_is_not_a_whole_ledger_is_refused_and_nothing_replaced() {
        let root = tempfile::tempdir().unwrap();
        ledger_with_suppressions(root.path(), 300);
        let copy = root.path().join("copy.db");
        backup(root.path(), &copy).unwrap();
        let whole = std::fs::read(&copy).unwrap();
        let other = root.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE notes (x); INSERT INTO notes VALUES (1);")
            .unwrap();
        let cut = root.path().join("cut.db");
        std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
        let garbage = root.path().join("garbage.db");
        std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
        let before = std::fs::read(ledger_path(root.path())).unwrap();
        for (file, says) in [
            (&other, "not a gazette ledger"),
            (&cut, "not a whole SQLite database"),
            (&garbage, "not a whole SQLite database"),
        ] {
            let message = format!("{:#}", restore(root.path(), file).unwrap_err());
            assert!(message.contains(says), "{message}");
            assert!(message.contains("nothing restored"), "{message}");
        }
        assert_eq!(std::fs::read(ledger_path(root.path())).unwrap(), before);
    }

    #[test]
    fn a_backup_taken_while_another_connection_writes_is_whole() {
        let root = tempfile::tempdir().unwrap();
        ledger_with_suppressions(root.path(), 10);
        let copy = root.path().join("copy.db");
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| ledger_with_suppressions(root.path(), 3000));
            for _ in 0..5 {
                backup(root.path(), &copy).unwrap();
                let conn = Connection::open(&copy).unwrap();
                let check: String = conn
                    .query_row("PRAGMA integrity_check", [], |row| row.get(0))
                    .unwrap();
                assert_eq!(check, "ok");
            }
            writer.join().unwrap();
        });
    }
}
