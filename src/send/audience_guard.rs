//! Send stage: the guard that keeps a bad subscribers file from emptying
//! an issue. Before a real send makes an issue (or resumes one), the file
//! must give this run at least one mailable reader and must not have lost
//! more than `audience.max_shrink` of the readers the last issue had;
//! otherwise the run stops with the numbers and nothing is recorded, and
//! `--allow-shrink` confirms a list that really shrank (never one that
//! gives no reader at all). May import
//! audience (the file, the suppression list), the ledger's counts and
//! diagnostics.

use anyhow::Result;

use super::Run;
use crate::address::AddressKey;
use crate::audience::suppressed::Suppressed;
use crate::diagnostics::{Diagnostic, display_path};
use crate::ledger::{DeliveryCounts, Ledger};

/// The readers the subscribers file gives this run now: mailable, not
/// suppressed, in its shard; sorted, each once. Problems of the file go
/// to `problems`.
pub(super) fn mailable_now(run: &Run, problems: &mut Vec<Diagnostic>) -> Result<Vec<AddressKey>> {
    let mut keys = Vec::new();
    each_mailable(run, problems, &mut |key| keys.push(key))?;
    keys.sort_unstable_by_key(|key| key.0);
    keys.dedup();
    Ok(keys)
}

/// Hands `visit` the key of each reader the file gives this run now.
fn each_mailable(
    run: &Run,
    problems: &mut Vec<Diagnostic>,
    visit: &mut dyn FnMut(AddressKey),
) -> Result<()> {
    let path = run.root.join(&run.config.audience.file);
    let shown = display_path(run.root, &path);
    let found = Suppressed::load(run.root)?.read(&path, &shown, &mut |subscriber| {
        if subscriber.status.mailable() && run.mails(&subscriber) {
            visit(AddressKey::of(&subscriber.email));
        }
    });
    problems.extend(found);
    Ok(())
}

/// The readers an issue had: every delivery but those suppressed.
pub(super) fn readers_of(counts: &DeliveryCounts) -> u64 {
    let c = counts;
    c.pending + c.sending + c.sent + c.deferred + c.failed + c.unknown
}

/// Whether `now` mailable readers may be sent to, beside `before`, the
/// readers of `issue` (the last one, or the one being resumed): `None`
/// when they may, else the error that stops the run. `what` says what
/// was stopped ("no issue was made", "issue … was not resumed").
pub(super) fn refusal(
    run: &Run,
    now: usize,
    before: Option<(&str, u64)>,
    what: &str,
) -> Option<Diagnostic> {
    let path = run.root.join(&run.config.audience.file);
    let shown = display_path(run.root, &path);
    let shard = run
        .shard_label()
        .map(|k| format!(" in shard {k}"))
        .unwrap_or_default();
    // Not even `--allow-shrink` mails an issue to nobody: its posts would
    // count as sent, and no later issue would carry them.
    if now == 0 {
        return Some(Diagnostic::error(
            shown,
            format!(
                "no reader to mail{shard} (the file is missing, empty, or every row was refused \
                 or is not mailable); {what}, and the posts wait for an issue with readers. Fix the file"
            ),
        ));
    }
    if run.allow_shrink {
        return None;
    }
    let (issue, before) = before?;
    let max_shrink = run.config.audience.max_shrink;
    let lost = before.saturating_sub(now as u64);
    // Compared in whole readers: the share lost is above the limit.
    if before > 0 && lost as f64 > max_shrink * before as f64 {
        return Some(Diagnostic::error(
            shown,
            format!(
                "{now} mailable reader(s){shard}, {before} in issue {issue}: {lost} fewer, more than \
                 audience.max_shrink ({}%) allows; {what}. If the list really shrank, confirm with \
                 `gazette send --allow-shrink`",
                max_shrink * 100.0
            ),
        ));
    }
    None
}

/// The guard before a new issue is made: `None` when it may be made,
/// else the error (the file's own problems are in `problems`).
pub(super) fn before_new_issue(
    run: &Run,
    ledger: &Ledger,
    problems: &mut Vec<Diagnostic>,
) -> Result<Option<Diagnostic>> {
    // Counted, not kept: the freeze reads the file again. The reader
    // merges an address listed twice, so each is counted once.
    // The file's own problems are shown only when the run stops here:
    // otherwise the freeze reads the file and reports them once.
    let mut now = 0;
    let mut found = Vec::new();
    each_mailable(run, &mut found, &mut |_| now += 1)?;
    let before = match ledger.last_issue()? {
        Some(last) => Some((last.id.clone(), readers_of(&ledger.counts(&last.id)?))),
        None => None,
    };
    let refused = refusal(
        run,
        now,
        before.as_ref().map(|(id, n)| (id.as_str(), *n)),
        "no issue was made",
    );
    if refused.is_some() {
        problems.extend(found);
    }
    Ok(refused)
}
