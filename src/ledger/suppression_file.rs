//! Ledger stage: the suppression list kept a second time, as a plain file
//! beside the project (`suppressed.csv`, outside `.gazette/`), so losing
//! the ledger does not re-mail the readers who unsubscribed or bounced.
//!
//! The ledger stays the one that decides; the file is its copy, brought
//! level both ways by [`Ledger::sync_suppression_file`]: rows only the
//! file has are imported (a new ledger gets the whole list), rows only
//! the ledger has are written out. A send brings them level before it
//! reads the audience and after it ends; `gazette unsubscribe` appends its
//! one row ([`Ledger::append_to_suppression_file`]), so many single
//! unsubscribes never rewrite a long file.
//!
//! The file holds address keys (the unkeyed hash of [`AddressKey::of`]),
//! never addresses, so it survives a lost `.gazette/secret` and names
//! nobody outright. It also names the project's last issue: its presence
//! is how a send tells a lost ledger from a new project, and a ledger
//! whose last issue is older than the file's has lost records. May import
//! what `ledger` may, and `crate::atomic_file`.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset};
use rusqlite::{Transaction, TransactionBehavior};

#[cfg(test)]
use super::SuppressionReason;
use super::suppression::suppress_in;
use super::{Ledger, Suppression, parse_time};
use crate::address::AddressKey;

/// The file's name in the project folder.
pub const SUPPRESSION_FILE: &str = "suppressed.csv";

/// The comment that names the last issue: `# last issue: ID CREATED`.
const LAST_ISSUE: &str = "# last issue: ";
/// The column names, the first line that is not a comment.
const HEADER: &str = "address_key,reason,at";

/// `<root>/suppressed.csv`, whether or not it exists.
pub fn suppression_file(root: &Path) -> PathBuf {
    root.join(SUPPRESSION_FILE)
}

/// The last issue a project made, as the file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedIssue {
    pub id: String,
    pub created: DateTime<FixedOffset>,
}

/// The file as read.
#[derive(Debug, Default)]
pub struct SuppressionFile {
    pub rows: Vec<Suppression>,
    pub last_issue: Option<NamedIssue>,
    /// The last line was cut short (a crash while appending): it was left
    /// out, and the next write replaces the file whole.
    pub torn: bool,
}

/// What bringing the ledger and the file level did.
#[derive(Debug, Default)]
pub struct SuppressionSync {
    /// Rows the ledger lacked, imported from the file.
    pub imported: usize,
    /// The issue the file names, which the ledger does not hold: the
    /// ledger lost records (or has none).
    pub ledger_behind: Option<NamedIssue>,
}

/// Reads `<root>/suppressed.csv`; `None` when there is none.
pub fn read_suppression_file(root: &Path) -> Result<Option<SuppressionFile>> {
    let path = suppression_file(root);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse(&text, &path).map(Some)
}

/// The last issue `<root>/suppressed.csv` names, read from its first
/// lines only (the rows are not read).
pub fn read_named_issue(root: &Path) -> Result<Option<NamedIssue>> {
    use std::io::BufRead;
    let path = suppression_file(root);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(named) = line.strip_prefix(LAST_ISSUE) {
            return named_issue(named)
                .map(Some)
                .with_context(|| format!("{}:{}", path.display(), i + 1));
        }
        if !line.starts_with('#') {
            break;
        }
    }
    Ok(None)
}

/// The file's text read; errors are located `PATH:LINE: what`.
fn parse(text: &str, path: &Path) -> Result<SuppressionFile> {
    let mut file = SuppressionFile::default();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let at_line = || format!("{}:{}", path.display(), i + 1);
        let last_and_cut = i + 1 == lines.len() && !complete;
        if let Some(named) = line.strip_prefix(LAST_ISSUE) {
            match named_issue(named) {
                Ok(named) => file.last_issue = Some(named),
                Err(_) if last_and_cut => file.torn = true,
                Err(err) => return Err(err.context(at_line())),
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() || *line == HEADER {
            continue;
        }
        match row(line) {
            Ok(row) => file.rows.push(row),
            // Appends end with a newline: a last line without one is the
            // rest of an append a crash cut short. Its row was in the
            // ledger before it was appended.
            Err(_) if last_and_cut => file.torn = true,
            Err(err) => return Err(err.context(at_line())),
        }
    }
    Ok(file)
}

/// `ID CREATED` of the last-issue comment.
fn named_issue(text: &str) -> Result<NamedIssue> {
    let (id, created) = text
        .trim()
        .split_once(' ')
        .context("the last issue must be 'ID CREATED'")?;
    Ok(NamedIssue {
        id: id.to_string(),
        created: parse_time(created.trim())?,
    })
}

/// One `address_key,reason,at` row; an address in place of the key is
/// taken too (a row added by hand).
fn row(line: &str) -> Result<Suppression> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [who, reason, at] = fields[..] else {
        bail!("expected address_key,reason,at, found '{line}'");
    };
    let key = if who.contains('@') {
        AddressKey::of(who)
    } else {
        AddressKey::from_hex(who)
            .filter(|_| who.len() == 32)
            .with_context(|| format!("'{who}' is neither 32 hex digits nor an address"))?
    };
    Ok(Suppression {
        key,
        address: None,
        reason: reason.parse()?,
        at: parse_time(at)?,
    })
}

/// The row as the file holds it.
fn line_of(s: &Suppression) -> String {
    format!(
        "{},{},{}\n",
        s.key.hex(),
        s.reason.as_str(),
        s.at.to_rfc3339()
    )
}

/// The whole file, from the ledger's list.
fn render(rows: &[Suppression], last_issue: Option<&NamedIssue>) -> String {
    let mut text = String::with_capacity(100 + rows.len() * 72);
    text.push_str(
        "# gazette: readers never to mail again, by address key. A copy of the ledger's\n\
         # suppression list: a new ledger imports it. Keep it and back it up.\n",
    );
    if let Some(named) = last_issue {
        text.push_str(&format!(
            "{LAST_ISSUE}{} {}\n",
            named.id,
            named.created.to_rfc3339()
        ));
    }
    text.push_str(HEADER);
    text.push('\n');
    for s in rows {
        text.push_str(&line_of(s));
    }
    text
}

impl Ledger {
    /// Brings the ledger and `<root>/suppressed.csv` level: the file's rows
    /// the ledger lacks are imported (in one transaction), the ledger's the
    /// file lacks are appended, and the file names the ledger's last issue
    /// (the file's own while the ledger has none). A missing or torn file, or one naming another issue,
    /// is written whole (atomically).
    pub fn sync_suppression_file(&self, root: &Path) -> Result<SuppressionSync> {
        let file = read_suppression_file(root)?;
        let mut report = SuppressionSync::default();
        let mut known = self.suppressed_keys()?;
        if let Some(file) = &file {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            for row in &file.rows {
                // `insert` is false for a key the ledger (or an earlier
                // row) has: the first record is kept.
                if known.insert(row.key)
                    && suppress_in(&tx, row.key, None, row.reason, &row.at.to_rfc3339())?
                {
                    report.imported += 1;
                }
            }
            tx.commit()?;
        }
        let ledger_last = self.last_issue()?.map(|r| NamedIssue {
            id: r.id,
            created: r.created,
        });
        let file_last = file.as_ref().and_then(|f| f.last_issue.clone());
        // By id, not by time: a clock set back makes no ledger look behind.
        if let Some(named) = &file_last
            && !self.holds_issue(&named.id)?
        {
            report.ledger_behind = Some(named.clone());
        }
        // A ledger without issues keeps the file's: until a new ledger's
        // first issue is made, the project still shows it sent before.
        let last = ledger_last.as_ref().or(file_last.as_ref());
        match file {
            Some(file) if !file.torn && file.last_issue.as_ref() == last => {
                // Usually none (a send's bounces): rows are read only then.
                let listed: HashSet<AddressKey> = file.rows.iter().map(|s| s.key).collect();
                if known.iter().any(|key| !listed.contains(key)) {
                    let all = self.suppressions()?;
                    let missing: Vec<&Suppression> =
                        all.iter().filter(|s| !listed.contains(&s.key)).collect();
                    append(&suppression_file(root), &missing)?;
                }
            }
            _ => write_whole(root, &self.suppressions()?, last)?,
        }
        Ok(report)
    }

    /// Whether the ledger holds the issue `id`.
    fn holds_issue(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM issues WHERE id = ?1")?
            .exists([id])?)
    }

    /// Adds the ledger's suppression of `key` to `<root>/suppressed.csv`
    /// (one line appended), or writes the file whole if it is missing or
    /// torn.
    pub fn append_to_suppression_file(&self, root: &Path, key: AddressKey) -> Result<()> {
        let path = suppression_file(root);
        if !ends_with_newline(&path)? {
            self.sync_suppression_file(root)?;
            return Ok(());
        }
        let row = self
            .suppression(key)?
            .with_context(|| format!("{} is not on the suppression list", key.hex()))?;
        append(&path, &[&row])
    }
}

/// Records `row` in `<root>/suppressed.csv` when the ledger cannot be
/// opened (damaged, or being restored): appended after the last whole line,
/// or a new file with it alone. The next ledger imports it, so the reader
/// is not mailed again whatever became of the ledger.
pub fn record_without_ledger(root: &Path, row: &Suppression) -> Result<()> {
    let path = suppression_file(root);
    if path
        .try_exists()
        .with_context(|| format!("cannot look for {}", path.display()))?
    {
        if ends_with_newline(&path)? {
            return append(&path, &[row]);
        }
        // A last line torn by a crash: the file again without it, and
        // with this row (the ledger that could repair it is out of reach).
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        crate::atomic_file::write_atomic(&path, format!("{whole}{}", line_of(row)).as_bytes())
    } else {
        write_whole(root, std::slice::from_ref(row), None)
    }
}

/// Writes the file whole, replacing it atomically.
fn write_whole(root: &Path, rows: &[Suppression], last: Option<&NamedIssue>) -> Result<()> {
    crate::atomic_file::write_atomic(&suppression_file(root), render(rows, last).as_bytes())
}

/// Appends `rows` in one write, made durable before it returns.
fn append(path: &Path, rows: &[&Suppression]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let text: String = rows.iter().map(|s| line_of(s)).collect();
    append_text(path, &text)
}

/// Appends `text` in one write, made durable before it returns.
fn append_text(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot append to {}", path.display()))
}

/// Whether the file exists and its last byte is a newline (an append
/// will start a line of its own).
fn ends_with_newline(path: &Path) -> Result<bool> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::End(-1))
        .and_then(|_| file.read_exact(&mut last))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    const REASONS: [SuppressionReason; 3] = [
        SuppressionReason::Unsubscribed,
        SuppressionReason::Bounced,
        SuppressionReason::Complained,
    ];

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn suppress(ledger: &Ledger, i: usize) -> AddressKey {
        let email = format!("reader{i}@example.com");
        let key = AddressKey::of(&email);
        let when = at("2026-01-02T03:04:05Z") + chrono::Duration::seconds(i as i64);
        ledger
            .suppress(key, Some(&email), REASONS[i % 3], when)
            .unwrap();
        key
    }

    #[test]
    fn a_new_ledger_imports_the_list_and_never_writes_addresses() {
        let root = tempfile::tempdir().unwrap();
        let keys: Vec<AddressKey> = {
            let ledger = Ledger::open(root.path()).unwrap();
            let keys = (0..5).map(|i| suppress(&ledger, i)).collect();
            ledger.sync_suppression_file(root.path()).unwrap();
            keys
        };
        let text = std::fs::read_to_string(suppression_file(root.path())).unwrap();
        assert!(!text.contains('@'), "{text}");
        std::fs::remove_dir_all(root.path().join(".gazette")).unwrap();
        let fresh = Ledger::open(root.path()).unwrap();
        let report = fresh.sync_suppression_file(root.path()).unwrap();
        assert_eq!(report.imported, 5);
        let imported = fresh.suppressions().unwrap();
        let found: Vec<AddressKey> = imported.iter().map(|s| s.key).collect();
        assert_eq!(found, keys);
        assert_eq!(imported[1].reason, SuppressionReason::Bounced);
        assert_eq!(imported[1].at, at("2026-01-02T03:04:06Z"));
        assert_eq!(
            std::fs::read_to_string(suppression_file(root.path())).unwrap(),
            text,
            "nothing new to write"
        );
    }

    #[test]
    fn single_unsubscribes_append_one_line_each() {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(root.path()).unwrap();
        let first = suppress(&ledger, 0);
        // No file yet: written whole.
        ledger
            .append_to_suppression_file(root.path(), first)
            .unwrap();
        let before = std::fs::read_to_string(suppression_file(root.path())).unwrap();
        let second = suppress(&ledger, 1);
        ledger
            .append_to_suppression_file(root.path(), second)
            .unwrap();
        let after = std::fs::read_to_string(suppression_file(root.path())).unwrap();
        assert_eq!(after.strip_prefix(&before).unwrap().lines().count(), 1);
        let file = read_suppression_file(root.path()).unwrap().unwrap();
        assert_eq!(file.rows.len(), 2);
    }

    #[test]
    fn a_torn_last_line_is_left_out_then_the_file_is_rewritten() {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(root.path()).unwrap();
        suppress(&ledger, 0);
        ledger.sync_suppression_file(root.path()).unwrap();
        let key = suppress(&ledger, 1);
        let path = suppression_file(root.path());
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&key.hex()[..20]);
        std::fs::write(&path, &text).unwrap();
        let file = read_suppression_file(root.path()).unwrap().unwrap();
        assert!(file.torn);
        assert_eq!(file.rows.len(), 1);
        ledger.append_to_suppression_file(root.path(), key).unwrap();
        let file = read_suppression_file(root.path()).unwrap().unwrap();
        assert!(!file.torn);
        assert_eq!(file.rows.len(), 2);
    }

    #[test]
    fn a_damaged_line_is_an_error_with_its_line() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            suppression_file(root.path()),
            "address_key,reason,at\nana@example.com,unsubscribed,2026-01-02T03:04:05Z\nxyz,bounced,2026-01-02T03:04:05Z\n",
        )
        .unwrap();
        let err = read_suppression_file(root.path()).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("suppressed.csv:3"), "{message}");
        assert!(message.contains("'xyz'"), "{message}");
    }

    #[test]
    fn a_ledger_older_than_the_file_is_reported_behind() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            suppression_file(root.path()),
            "# last issue: 2026-03-01 2026-03-01T06:00:00Z\naddress_key,reason,at\n",
        )
        .unwrap();
        let named = read_named_issue(root.path()).unwrap().unwrap();
        assert_eq!(named.id, "2026-03-01");
        let ledger = Ledger::open(root.path()).unwrap();
        let report = ledger.sync_suppression_file(root.path()).unwrap();
        let behind = report.ledger_behind.unwrap();
        assert_eq!(behind.id, "2026-03-01");
        // The file keeps naming it: the evidence stays until a later issue.
        let file = read_suppression_file(root.path()).unwrap().unwrap();
        assert_eq!(file.last_issue.unwrap().id, "2026-03-01");
    }
}
