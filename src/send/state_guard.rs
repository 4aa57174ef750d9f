//! Send stage: the guard that keeps a lost ledger from passing for a new
//! project. Before a real send, a ledger without issues in a project that
//! sent before — `suppressed.csv` names an issue (`.gazette/secret` is no
//! sign: `preview` makes it too) — stops the run (exit 1) until
//! `--first-issue` confirms a new start. Every real send then brings the
//! ledger and `suppressed.csv` level (a new ledger imports the list), once
//! it has its issue (so the file names it before anything is sent), and
//! when it ends. May import the ledger, the state folder's key file,
//! the unsubscribe key's variable name and diagnostics.

use std::path::Path;

use anyhow::Result;

use crate::diagnostics::{Diagnostic, display_path};
use crate::ledger::{Ledger, NamedIssue, ledger_path, read_named_issue, suppression_file};
use crate::state::key_file;
use crate::unsubscribe::SECRET_VAR;

/// What the guard found before a real send.
#[derive(Debug, Default)]
pub struct StateCheck {
    /// Errors (the send must not start) and warnings.
    pub problems: Vec<Diagnostic>,
    pub refused: bool,
}

/// Checks the ledger of the project at `root` before a real send and,
/// unless that refuses the send, imports `suppressed.csv` into it.
/// `first_issue`: the operator confirmed a new ledger's first issue.
pub fn before_send(root: &Path, first_issue: bool) -> Result<StateCheck> {
    // A refused send creates no ledger: without one, dry runs and
    // previews go by `suppressed.csv`.
    let existing = Ledger::open_existing(root)?;
    let ledger_shown = display_path(root, &ledger_path(root));
    let file_shown = display_path(root, &suppression_file(root));
    let last_issue = existing
        .as_ref()
        .map(Ledger::last_issue)
        .transpose()?
        .flatten();
    let named = read_named_issue(root)?;
    let mut check = StateCheck::default();
    if let (None, Some(NamedIssue { id, created }), false) = (&last_issue, &named, first_issue) {
        check.problems.push(Diagnostic::error(
            &ledger_shown,
            format!(
                "the ledger holds no issue, yet this project sent before ({} names issue {id} \
                 of {}): .gazette/ was lost or replaced, and a first issue would mail old posts \
                 again; restore the ledger with `gazette state restore BACKUP`, or run \
                 `gazette send --first-issue --since {}` to start a new one with the posts dated \
                 after that issue only (it takes the suppression list from {})",
                file_shown.display(),
                created.format("%Y-%m-%d %H:%M"),
                created.to_rfc3339(),
                file_shown.display()
            ),
        ));
        check.refused = true;
    }
    let sent_before = last_issue.is_some() || named.is_some();
    let key_file_kept = key_file::path(root).exists();
    let env_key = std::env::var_os(SECRET_VAR).is_some_and(|v| !v.is_empty());
    if sent_before && !env_key && !key_file_kept {
        check.problems.push(Diagnostic::warning(
            ".gazette/secret",
            format!(
                "no signing key: the next message sent makes a new one, and the unsubscribe \
                 links of the issues already sent stop working (`gazette unsubscribe ADDRESS` \
                 still does); if you kept the old key, put the file back or set {SECRET_VAR}"
            ),
        ));
    }
    if check.refused {
        return Ok(check);
    }
    let ledger = match existing {
        Some(ledger) => ledger,
        None => Ledger::open(root)?,
    };
    let synced = ledger.sync_suppression_file(root)?;
    if synced.imported > 0 {
        check.problems.push(Diagnostic::warning(
            &file_shown,
            format!(
                "{} suppression(s) the ledger lacked were imported from it",
                synced.imported
            ),
        ));
    }
    if let (Some(behind), Some(last)) = (&synced.ledger_behind, &last_issue) {
        check.problems.push(Diagnostic::warning(
            &ledger_shown,
            format!(
                "its last issue is {} but {} names {} of {}, which it does not hold: the \
                 ledger lost records (a deleted state.db-wal, or an older backup restored), and \
                 messages of the lost issue may be mailed again",
                last.id,
                file_shown.display(),
                behind.id,
                behind.created.format("%Y-%m-%d %H:%M")
            ),
        ));
    }
    Ok(check)
}

/// After a real send: the issue it made and the bounces it recorded
/// written to `suppressed.csv`.
pub fn after_send(root: &Path) -> Result<()> {
    Ledger::open(root)?.sync_suppression_file(root)?;
    Ok(())
}
