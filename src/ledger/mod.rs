//! Ledger stage: what gazette must remember between runs, in one SQLite
//! file, `.gazette/state.db`: who must not be mailed
//! ([`suppression`](Suppression)), the issues made ([`IssueRecord`]) and
//! each of their deliveries ([`Delivery`]).
//!
//! Safety first: WAL with `synchronous = FULL`, so a recorded
//! unsubscribe or delivery survives a crash or power loss once its call
//! returns, and several gazette processes may share the file (a writer
//! waits up to 5 s for another). Speed from batching: a send's marks go
//! through one writer ([`Recorder`]) that commits whatever is waiting in
//! one transaction, and reads come a page at a time ([`Due`]).
//!
//! May import `crate::state` (which owns `.gazette/`) and the address key
//! (`AddressKey`) — nothing from the stages that use the ledger. Every file
//! of the folder keeps to the same rule.

mod backup;
mod deliveries;
#[cfg(test)]
mod fixtures;
mod issues;
mod recorder;
mod schema;
mod seen;
mod suppression;
mod suppression_file;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset};
use rusqlite::{Connection, ErrorCode, OpenFlags};

pub use backup::{Restored, backup, restore};
pub use deliveries::{
    Delivery, DeliveryCounts, DeliveryStatus, Due, Mark, NewDelivery, UnknownStatus, Writes,
};
pub use issues::IssueRecord;
pub use recorder::{Recorder, RecorderHandle};
pub use seen::SeenPosts;
pub use suppression::{Suppression, SuppressionReason, UnknownSuppressionReason};
pub use suppression_file::{
    NamedIssue, SUPPRESSION_FILE, SuppressionFile, SuppressionSync, read_named_issue,
    read_suppression_file, record_without_ledger, suppression_file,
};

use crate::state;

/// How long a connection waits for another to let go of the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between attempts to switch to WAL.
const WAL_RETRY: Duration = Duration::from_millis(10);
/// Prepared statements kept per connection: more than the ledger has, so
/// none is ever prepared twice.
const STATEMENT_CACHE: usize = 64;

/// Where the ledger of the project at `root` is (for messages).
pub fn ledger_path(root: &Path) -> PathBuf {
    state::ledger_file(root)
}

/// An open ledger, migrated to the schema this gazette knows.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
}

impl Ledger {
    /// `<root>/.gazette/state.db`, created (with `.gazette/` at 0700) and
    /// migrated.
    pub fn open(root: &Path) -> Result<Ledger> {
        state::create_dir(root)?;
        let path = state::ledger_file(root);
        let exists = path
            .try_exists()
            .with_context(|| format!("cannot look for {}", path.display()))?;
        if !exists {
            refuse_orphan_log(&path)?;
            create_whole(&path, schema::migrate)?;
        }
        refuse_empty(&path)?;
        Ledger::connect(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }

    /// The same, only if the file already exists (dry runs never create
    /// state): `None` otherwise.
    pub fn open_existing(root: &Path) -> Result<Option<Ledger>> {
        let path = ledger_path(root);
        let exists = path
            .try_exists()
            .with_context(|| format!("cannot look for {}", path.display()))?;
        if !exists {
            refuse_orphan_log(&path)?;
            return Ok(None);
        }
        refuse_empty(&path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Ledger::connect(&path, flags).map(Some)
    }

    fn connect(path: &Path, flags: OpenFlags) -> Result<Ledger> {
        let mut conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("cannot open {}", path.display()))?;
        configure(&conn)
            .map_err(|err| damaged(path, err))
            .with_context(|| format!("cannot set up {}", path.display()))?;
        schema::migrate(&mut conn)
            .and_then(|()| schema::read_every_table(&conn))
            .map_err(|err| damaged(path, err))
            .with_context(|| format!("cannot use {}", path.display()))?;
        Ok(Ledger { conn })
    }
}

/// What the operator can do about a ledger SQLite cannot read.
pub const DAMAGED_HELP: &str = "gazette cannot tell which issues were sent or who \
     unsubscribed; restore it with `gazette state restore BACKUP`, or move it aside and run \
     `gazette send --first-issue` (a new ledger takes the suppression list from suppressed.csv)";

/// `err`, said plainly when SQLite found the file damaged — not a
/// database, or cut short — so the operator learns which file and what to
/// do; other errors as they are.
fn damaged(path: &Path, err: anyhow::Error) -> anyhow::Error {
    let code = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<rusqlite::Error>())
        .and_then(rusqlite::Error::sqlite_error_code);
    match code {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => anyhow::anyhow!(
            "{}: the ledger is damaged ({}): {DAMAGED_HELP}",
            path.display(),
            err.root_cause()
        ),
        _ => err,
    }
}

impl Ledger {
    /// Copies the write-ahead log into the database and empties it, if no
    /// other connection is reading it (then it is left for SQLite's own
    /// checkpoints).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .context("cannot fold the ledger's write-ahead log into it")
    }
}

/// Creates the file at `path` owner-only (0600) if it is missing, before
/// SQLite opens it: SQLite gives its `-wal` and `-shm` files the mode of the
/// database, and all of them hold addresses. An existing file is untouched.
/// An existing ledger file of 0 bytes: SQLite would take it for a new,
/// empty ledger, and the next send for a first issue — old posts mailed
/// again, unsubscribed readers mailed again. It is an error instead
/// (gazette never leaves one: [`create_whole`]).
fn refuse_empty(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == 0 => bail!(
            "{}: the ledger is empty (0 bytes): {DAMAGED_HELP}",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// A write-ahead log left by a ledger that is gone: SQLite would lay its
/// pages over the new ledger's. Refused, as a sign of a ledger lost.
fn refuse_orphan_log(path: &Path) -> Result<()> {
    let log = wal_path(path);
    if log.exists() {
        bail!(
            "{}: missing, but its write-ahead log {} is there: {DAMAGED_HELP} (move the log \
             aside too)",
            path.display(),
            log.display()
        );
    }
    Ok(())
}

/// `state.db-wal` beside `path`, as SQLite names it.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Makes a new ledger whole before it appears under its name: built in a
/// temporary file (owner-only) beside it, then linked into place unless
/// another process got there first. So a `state.db` of 0 bytes is never
/// one gazette is still making, and [`refuse_empty`] can refuse it.
/// `fill` writes the new ledger (the schema, or a backup's pages); false
/// when another process's ledger is there instead.
fn create_whole(path: &Path, fill: impl FnOnce(&mut Connection) -> Result<()>) -> Result<bool> {
    let dir = path.parent().context("the ledger has a folder")?;
    let temp = tempfile::Builder::new()
        .prefix("state.db.")
        .suffix(".new")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a new ledger in {}", dir.display()))?;
    let mut conn = Connection::open(temp.path())
        .with_context(|| format!("cannot create {}", temp.path().display()))?;
    fill(&mut conn).with_context(|| format!("cannot set up {}", path.display()))?;
    drop(conn);
    match temp.persist_noclobber(path) {
        Ok(_) => Ok(true),
        // Another process made it meanwhile: theirs is the ledger.
        Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => {
            Err(anyhow::Error::new(err.error).context(format!("cannot create {}", path.display())))
        }
    }
}

/// `text` as the ledger writes times (RFC 3339, with its offset).
fn parse_time(text: &str) -> Result<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text).with_context(|| format!("'{text}' is not an RFC 3339 time"))
}

/// Settings SQLite keeps per connection (and the journal mode, which
/// sticks to the file once set).
fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    use_wal(conn)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Switches the file to write-ahead logging. While another connection
/// makes the same switch (two runs creating the ledger at once), SQLite
/// answers "busy" at once instead of waiting, so this waits itself, in
/// short steps, as long as [`BUSY_TIMEOUT`].
fn use_wal(conn: &Connection) -> Result<()> {
    let attempts = BUSY_TIMEOUT.as_millis() / WAL_RETRY.as_millis();
    let mut attempt = 0;
    loop {
        match conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => bail!(
                "SQLite cannot use write-ahead logging there (journal mode stays '{mode}'); \
                 keep the project on a local disk"
            ),
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) && attempt < attempts =>
            {
                attempt += 1;
                std::thread::sleep(WAL_RETRY);
            }
            Err(e) => return Err(e).context("cannot switch to write-ahead logging"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(ledger: &Ledger, name: &str) -> String {
        ledger
            .conn
            .pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
            .map(|value| match value {
                rusqlite::types::Value::Integer(n) => n.to_string(),
                rusqlite::types::Value::Text(text) => text,
                other => format!("{other:?}"),
            })
            .unwrap()
    }

    #[test]
    fn open_creates_the_file_and_sets_it_up() {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(root.path()).unwrap();
        assert!(root.path().join(".gazette/state.db").is_file());
        assert_eq!(pragma(&ledger, "journal_mode"), "wal");
        assert_eq!(pragma(&ledger, "synchronous"), "2"); // FULL
        assert_eq!(pragma(&ledger, "foreign_keys"), "1");
        assert_eq!(pragma(&ledger, "busy_timeout"), "5000");
        assert_eq!(
            pragma(&ledger, "user_version"),
            schema::MIGRATIONS.len().to_string()
        );
    }

    #[test]
    fn opening_again_keeps_the_data_and_the_schema() {
        let root = tempfile::tempdir().unwrap();
        let key = crate::address::AddressKey::of("ana@example.com");
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05+01:00").unwrap();
        {
            let ledger = Ledger::open(root.path()).unwrap();
            assert!(
                ledger
                    .suppress(key, None, SuppressionReason::Bounced, at)
                    .unwrap()
            );
        }
        let again = Ledger::open(root.path()).unwrap();
        let existing = Ledger::open_existing(root.path()).unwrap().unwrap();
        for ledger in [&again, &existing] {
            assert_eq!(ledger.suppressions().unwrap().len(), 1);
            assert_eq!(
                pragma(ledger, "user_version"),
                schema::MIGRATIONS.len().to_string()
            );
        }
    }

    #[test]
    fn a_version_1_ledger_is_migrated_and_keeps_its_suppressions() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".gazette")).unwrap();
        {
            let v1 = Connection::open(root.path().join(".gazette/state.db")).unwrap();
            v1.execute_batch(schema::MIGRATIONS[0]).unwrap();
            v1.pragma_update(None, "user_version", 1).unwrap();
            v1.execute(
                "INSERT INTO suppression VALUES
                 ('00112233445566778899aabbccddeeff', 'ana@example.com', 'bounced', '2026-01-02T03:04:05+01:00')",
                [],
            )
            .unwrap();
        }
        let ledger = Ledger::open(root.path()).unwrap();
        assert_eq!(
            pragma(&ledger, "user_version"),
            schema::MIGRATIONS.len().to_string()
        );
        let kept = ledger.suppressions().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].key.hex(), "00112233445566778899aabbccddeeff");
        assert_eq!(kept[0].address.as_deref(), Some("ana@example.com"));
        assert_eq!(kept[0].reason, SuppressionReason::Bounced);
        let issues: i64 = ledger
            .conn
            .query_row("SELECT count(*) FROM issues", [], |row| row.get(0))
            .unwrap();
        assert_eq!(issues, 0);
    }

    #[test]
    fn racing_processes_create_and_migrate_one_ledger() {
        let root = tempfile::tempdir().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap();
        std::thread::scope(|scope| {
            for i in 0..8 {
                let root = root.path();
                scope.spawn(move || {
                    let ledger = Ledger::open(root).unwrap();
                    let email = format!("reader{i}@example.com");
                    let key = crate::address::AddressKey::of(&email);
                    assert!(
                        ledger
                            .suppress(key, Some(&email), SuppressionReason::Bounced, at)
                            .unwrap()
                    );
                });
            }
        });
        let ledger = Ledger::open_existing(root.path()).unwrap().unwrap();
        assert_eq!(ledger.suppressions().unwrap().len(), 8);
    }

    #[test]
    fn open_existing_never_creates_state() {
        let root = tempfile::tempdir().unwrap();
        assert!(Ledger::open_existing(root.path()).unwrap().is_none());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        // Nor does a .gazette folder without a ledger get one.
        std::fs::create_dir(root.path().join(".gazette")).unwrap();
        assert!(Ledger::open_existing(root.path()).unwrap().is_none());
        let names = std::fs::read_dir(root.path().join(".gazette")).unwrap();
        assert_eq!(names.count(), 0);
    }

    #[test]
    fn a_ledger_from_a_newer_gazette_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(root.path()).unwrap();
        let newer = i64::try_from(schema::MIGRATIONS.len() + 1).unwrap();
        ledger
            .conn
            .pragma_update(None, "user_version", newer)
            .unwrap();
        drop(ledger);
        for err in [
            Ledger::open(root.path()).unwrap_err(),
            Ledger::open_existing(root.path()).unwrap_err(),
        ] {
            let message = format!("{err:#}");
            assert!(message.contains("newer gazette"), "{message}");
            assert!(message.contains("state.db"), "{message}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_ledger_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".gazette")).unwrap();
        let path = root.path().join(".gazette/state.db");
        std::fs::write(
            &path,
            "not a database, but long enough to be read as a header",
        )
        .unwrap();
        let message = format!("{:#}", Ledger::open_existing(root.path()).unwrap_err());
        assert!(message.contains("state.db"), "{message}");
        assert!(message.contains("the ledger is damaged"), "{message}");
        assert!(message.contains("gazette state restore"), "{message}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"not a database, but long enough to be read as a header"
        );
    }

    #[test]
    fn an_emptied_ledger_is_an_error_not_a_fresh_start() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".gazette")).unwrap();
        let path = root.path().join(".gazette/state.db");
        std::fs::write(&path, "").unwrap();
        for result in [
            Ledger::open(root.path()).map(|_| ()),
            Ledger::open_existing(root.path()).map(|_| ()),
        ] {
            let message = format!("{:#}", result.unwrap_err());
            assert!(
                message.contains("the ledger is empty (0 bytes)"),
                "{message}"
            );
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
        // A new project's first open still makes the ledger.
        let fresh = tempfile::tempdir().unwrap();
        Ledger::open(fresh.path()).unwrap();
        Ledger::open(fresh.path()).unwrap();
    }

    /// A ledger with `n` suppressions, checkpointed into `state.db` alone.
    pub(super) fn ledger_with_suppressions(root: &Path, n: usize) {
        let ledger = Ledger::open(root).unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap();
        for i in 0..n {
            let email = format!("reader{i}@example.com");
            let key = crate::address::AddressKey::of(&email);
            ledger
                .suppress(key, Some(&email), SuppressionReason::Bounced, at)
                .unwrap();
        }
        ledger.checkpoint().unwrap();
    }

    #[test]
    fn a_truncated_ledger_is_an_error_not_a_fresh_start() {
        let root = tempfile::tempdir().unwrap();
        ledger_with_suppressions(root.path(), 2000);
        let path = root.path().join(".gazette/state.db");
        let whole = std::fs::read(&path).unwrap();
        assert!(whole.len() > 16 * 4096, "{} bytes", whole.len());
        // The size SQLite's header records, then the same file with that
        // size marked untrusted (as writers before SQLite 3.7 left it):
        // SQLite goes by the file's size, and only reading the tables finds
        // the pages missing.
        let mut untrusted = whole.clone();
        untrusted[92..96].copy_from_slice(
            &(u32::from_be_bytes(whole[24..28].try_into().unwrap()) + 1).to_be_bytes(),
        );
        let cuts = [whole.len() / 2, 2 * 4096, 4096, 200];
        for (cut, bytes) in cuts
            .iter()
            .map(|&cut| (cut, &whole))
            .chain(cuts.iter().map(|&cut| (cut, &untrusted)))
        {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            for result in [
                Ledger::open(root.path()).map(|_| ()),
                Ledger::open_existing(root.path()).map(|_| ()),
            ] {
                let message = format!("{:#}", result.unwrap_err());
                assert!(
                    message.contains("state.db: the ledger is damaged"),
                    "{cut}: {message}"
                );
                assert!(message.contains("--first-issue"), "{message}");
            }
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                cut,
                "left as it was"
            );
        }
    }

    #[test]
    fn a_write_ahead_log_without_its_ledger_is_refused() {
        let root = tempfile::tempdir().unwrap();
        ledger_with_suppressions(root.path(), 10);
        let dir = root.path().join(".gazette");
        std::fs::remove_file(dir.join("state.db")).unwrap();
        std::fs::write(dir.join("state.db-wal"), vec![1u8; 5000]).unwrap();
        for result in [
            Ledger::open(root.path()).map(|_| ()),
            Ledger::open_existing(root.path()).map(|_| ()),
        ] {
            let message = format!("{:#}", result.unwrap_err());
            assert!(message.contains("its write-ahead log"), "{message}");
        }
        assert!(!dir.join("state.db").exists(), "no new ledger made");
    }

    #[test]
    fn a_ledger_overwritten_with_garbage_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        ledger_with_suppressions(root.path(), 10);
        let path = root.path().join(".gazette/state.db");
        let garbage: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &garbage).unwrap();
        let message = format!("{:#}", Ledger::open(root.path()).unwrap_err());
        assert!(
            message.contains("state.db: the ledger is damaged"),
            "{message}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "left as it was");
    }

    #[cfg(unix)]
    #[test]
    fn the_ledger_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(root.path()).unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap();
        let key = crate::address::AddressKey::of("ana@example.com");
        ledger
            .suppress(key, Some("ana@example.com"), SuppressionReason::Bounced, at)
            .unwrap();
        let mode = |name: &str| {
            let path = root.path().join(".gazette").join(name);
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(""), 0o700);
        assert_eq!(mode("state.db"), 0o600);
        assert_eq!(mode("state.db-wal"), 0o600);
    }
}
