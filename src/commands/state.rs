//! Commands `gazette state backup FILE` and `gazette state restore FILE`:
//! the ledger copied out while it is in use, and put back from such a
//! copy — never while a send writes it, never half-written.

use std::path::Path;

use anyhow::Result;

use super::Invocation;
use crate::diagnostics::{Diagnostic, Report};
use crate::exit::Exit;
use crate::ledger::{self, Ledger, ledger_path, suppression_file};
use crate::state::key_file;
use crate::state::lock::{Lock, LockError};
use crate::unsubscribe::SECRET_VAR;

/// Runs `state backup FILE`.
pub fn backup(inv: &Invocation, file: &Path) -> Result<Exit> {
    let to = inv.root.join(file);
    ledger::backup(&inv.root, &to)?;
    if !inv.quiet {
        outln!(
            "backed up {} to {}",
            inv.shown(&ledger_path(&inv.root)).display(),
            inv.shown(&to).display()
        )?;
    }
    let mut report = Report::default();
    if key_file::path(&inv.root).exists() && !secret_in_env() {
        report.push(Diagnostic::note(
            ".gazette/secret",
            "the signing key is not in the backup: keep a copy of this file too (or set GAZETTE_SECRET), or every unsubscribe link sent so far stops working when it is lost",
        ));
    }
    inv.print(&report, true)?;
    Ok(Exit::Done)
}

/// Runs `state restore FILE`: refused (exit 75) while a send holds the
/// lock, which this holds meanwhile so no send starts halfway.
pub fn restore(inv: &Invocation, file: &Path) -> Result<Exit> {
    let from = inv.root.join(file);
    let _lock = match Lock::acquire(&inv.root) {
        Ok(lock) => lock,
        Err(LockError::Held(pid)) => {
            inv.error(format_args!(
                "a send is in progress (pid {pid}) and writes the ledger; nothing restored (try again once it ends)"
            ));
            return Ok(Exit::TryLater);
        }
        Err(LockError::Io(err)) => return Err(err),
    };
    let restored = ledger::restore(&inv.root, &from)?;
    let ledger_shown = inv.shown(&ledger_path(&inv.root));
    let mut report = Report::default();
    if let Some(aside) = &restored.moved_aside {
        report.push(Diagnostic::warning(
            &ledger_shown,
            format!(
                "SQLite could not read it; moved aside to {}",
                inv.shown(aside).display()
            ),
        ));
    }
    // Unsubscribes and bounces recorded after the backup was taken are in
    // the plain copy: the restored ledger takes them.
    let synced = Ledger::open(&inv.root)?.sync_suppression_file(&inv.root)?;
    let file_shown = inv.shown(&suppression_file(&inv.root));
    if synced.imported > 0 {
        report.push(Diagnostic::note(
            &file_shown,
            format!(
                "{} suppression(s) recorded after the backup were imported from it",
                synced.imported
            ),
        ));
    }
    if let Some(later) = &synced.ledger_behind {
        report.push(Diagnostic::warning(
            &file_shown,
            format!(
                "it names issue {}, later than any the backup holds: that issue's posts will be mailed again by the next send (a backup taken after it has them)",
                later.id
            ),
        ));
    }
    if !key_file::path(&inv.root).exists() && !secret_in_env() {
        report.push(Diagnostic::warning(
            ".gazette/secret",
            format!(
                "no signing key: put back the one the sent links were signed with (or set {SECRET_VAR}) before the next send, which would make a new one"
            ),
        ));
    }
    if !inv.quiet {
        let last = restored
            .last_issue
            .as_ref()
            .map_or_else(|| "none".to_string(), |issue| issue.id.clone());
        outln!(
            "restored {} from {}: last issue {last}, {} suppression(s)",
            ledger_shown.display(),
            inv.shown(&from).display(),
            restored.suppressions
        )?;
    }
    inv.print(&report, true)?;
    Ok(Exit::Done)
}

/// Whether `GAZETTE_SECRET` holds the key (then no key file is needed).
fn secret_in_env() -> bool {
    std::env::var_os(SECRET_VAR).is_some_and(|v| !v.is_empty())
}
