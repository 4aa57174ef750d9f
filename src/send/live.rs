//! Send stage: a real send. The issue is frozen in the ledger — its posts,
//! then each reader's segment, variant, picks and fields — so a resumed run
//! sends the same digests whatever changed since. Every message is recorded
//! as `sending` before it is handed over and as `sent` only after the
//! server's 250; a run that dies in between leaves `unknown`, resent by
//! the next run with its Message-ID (the only possible duplicate), within
//! the retry limits.
//!
//! Four stages run at once, joined by bounded queues: a freezer thread
//! reads the subscribers file and freezes each reader ([`super::freeze`]),
//! this thread streams the due deliveries from the ledger a page at a time
//! as they are committed and renders each reader's message
//! ([`super::dispatch`]), a pool of SMTP sessions sends them, and the
//! ledger's writer commits the frozen readers and the marks in batches.
//! Memory stays flat however many readers there are: only messages in
//! flight are held. This file finds the issue to send and wires the
//! stages; it may import every stage below send.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use sha2::{Digest, Sha256};

use super::audience_guard;
use super::dispatch::{Allowed, Dispatch, SendEnd, Unsettled};
use super::freeze::{FreezeReport, Freezer};
use super::frozen::FrozenDigest;
use super::newly_frozen::FreezeProgress;
use super::progress::Progress;
use super::{Run, SegmentCounts, Summary};
use crate::address::AddressKey;
use crate::audience::subscribers;
use crate::audience::suppressed::Suppressed;
use crate::config::Config;
use crate::content::Post;
use crate::deliver::pool::Limits;
use crate::deliver::retry::{RetryPolicy, too_old};
use crate::deliver::smtp::SmtpSettings;
use crate::diagnostics::{Diagnostic, display_path};
use crate::ledger::{IssueRecord, Ledger, Recorder};
use crate::render::Renderer;
use crate::select::{self, Issue};
use crate::unsubscribe::Secret;

/// Sends the issue due now through `smtp`.
pub fn send(
    run: &Run,
    smtp: SmtpSettings,
    quiet: bool,
) -> Result<(Summary, Vec<Diagnostic>, SendEnd)> {
    let config = run.config;
    let ledger = Ledger::open(run.root)?;
    let mut problems = Vec::new();
    let due = match DueIssue::find(run, &ledger, &mut problems)? {
        Found::Issue(due) => due,
        Found::Nothing if run.retry_only => {
            let summary = Summary {
                not_made: Some("no open issue to retry, and --retry-only makes none".into()),
                ..nothing_new(run)
            };
            return Ok((summary, problems, SendEnd::Done));
        }
        Found::Nothing => return Ok((nothing_new(run), problems, SendEnd::Done)),
        Found::Refused(refusal) => {
            problems.push(refusal);
            let summary = Summary {
                not_made: Some(
                    "the subscribers file was refused (see above); the new posts wait for the next run"
                        .into(),
                ),
                ..nothing_new(run)
            };
            return Ok((summary, problems, SendEnd::AudienceRefused));
        }
    };
    let DueIssue {
        record,
        posts,
        allowed,
        frozen,
    } = due;
    ledger.recover_after_crash(&record.id, run.now)?;
    // Named in suppressed.csv before any of it is sent (see state_guard).
    ledger.sync_suppression_file(run.root)?;
    let mut summary = Summary {
        issue: record.id.clone(),
        dry_run: false,
        posts: posts.iter().map(|p| p.slug.clone()).collect(),
        outbox: None,
        shard: run.shard_label(),
        segments: expire_too_old(run, &ledger, &record, &mut problems)?,
        not_made: None,
        stopped: None,
        resent: 0,
    };
    give_up_unknown(run, &ledger, &record, &mut summary, &mut problems)?;
    let resend_unknown = config.delivery.resend_unknown;
    let attrs = match ledger.custom_columns(&record.id)? {
        Some(attrs) => attrs,
        None => columns_of_due(&ledger, &record.id, run.now, resend_unknown)?,
    };
    let secret = Secret::load(run.root)?;
    let Some(renderer) = renderer_for(run, &record, &posts, secret.clone(), attrs, &mut problems)
    else {
        return Ok((summary, problems, SendEnd::Done));
    };
    let from = config
        .email
        .from
        .as_ref()
        .map(|m| m.email.clone())
        .context("email.from is required to send")?;
    let limits = Limits {
        concurrency: config.delivery.concurrency,
        interval: interval(config),
        max_connection_failures: config.delivery.max_connection_failures,
        refusal_streak: config.delivery.refusal_streak,
    };
    let total = ledger.due_count(&record.id, run.now, resend_unknown)?;
    // Readers frozen by this run come after every delivery recorded now.
    let floor = ledger.last_row()?;
    let recorder = Recorder::start(run.root, &record.id, run.now)?;
    let freeze_progress = FreezeProgress::default();
    let freezer = match frozen {
        Some(frozen) => Some(Freezer {
            run,
            record: &record,
            posts: &posts,
            frozen,
            // Who may not be mailed, for the readers still to freeze.
            suppressed: Suppressed::load(run.root)?,
            secret: &secret,
        }),
        None => None,
    };
    let dispatch = Dispatch {
        policy: RetryPolicy::new(&config.delivery, run.now, record.created),
        run,
        ledger: &ledger,
        record: &record,
        posts: &posts,
        allowed,
        renderer,
        recorder,
        summary,
        problems,
        progress: Progress::new(total, quiet),
        unsettled: Unsettled::default(),
        freeze_progress: &freeze_progress,
        quiet,
    };
    let (summary, mut problems, ended, recorder) =
        dispatch_beside_freeze(dispatch, freezer, smtp, from, &limits, floor)?;
    let written = recorder.finish();
    let ended = ended?;
    written?;
    let mut summary = summary;
    if let SendEnd::Interrupted(signal) = ended {
        warn_interrupted(run, &ledger, &record, signal, &summary, &mut problems)?;
    }
    warn_unknown(run, &ledger, &record, &mut problems)?;
    give_up_unknown(run, &ledger, &record, &mut summary, &mut problems)?;
    name_undelivered(run, &ledger, &record, &mut problems)?;
    ledger.complete_if_done(&record.id, resend_unknown, run.now)?;
    Ok((summary, problems, ended))
}

/// How many undelivered readers a send names; `status --issue` has all.
const NAMED: usize = 20;

/// Names, in the cron log, the readers this run left failed, deferred or
/// unknown, each with the server's reply (or why there was none): the
/// first [`NAMED`], then how many more and where to see them.
fn name_undelivered(
    run: &Run,
    ledger: &Ledger,
    record: &IssueRecord,
    problems: &mut Vec<Diagnostic>,
) -> Result<()> {
    let (first, total) = ledger.left_undelivered(&record.id, run.now, NAMED)?;
    let shown = display_path(run.root, &crate::ledger::ledger_path(run.root));
    for delivery in &first {
        let next = delivery
            .next_attempt
            .map(|t| format!(", tried again from {}", t.to_rfc3339()))
            .unwrap_or_default();
        problems.push(Diagnostic::warning(
            &shown,
            format!(
                "{}: {}{next}: {}",
                delivery.address,
                delivery.status.as_str(),
                delivery.last_reply.as_deref().unwrap_or("no reply")
            ),
        ));
    }
    let more = total.saturating_sub(first.len() as u64);
    if more > 0 {
        problems.push(Diagnostic::warning(
            &shown,
            format!(
                "and {more} more not delivered: `gazette status --issue {}` lists them all",
                record.id
            ),
        ));
    }
    Ok(())
}

/// What a send dispatching beside a freeze came to: the summary and the
/// problems (the freeze's among them), how delivering ended, and the
/// ledger's writer, still to finish.
type Dispatched = (Summary, Vec<Diagnostic>, Result<SendEnd>, Recorder);

/// Runs `dispatch` on a runtime of its own — beside `freezer` on a thread
/// of its own, if readers are still to freeze (those it commits come after
/// rowid `floor`) — and folds what the freeze found into the summary.
fn dispatch_beside_freeze(
    mut dispatch: Dispatch,
    freezer: Option<Freezer>,
    smtp: SmtpSettings,
    from: lettre::Address,
    limits: &Limits,
    floor: i64,
) -> Result<Dispatched> {
    std::thread::scope(|scope| {
        let marks = dispatch.recorder.marks().clone();
        let freeze_progress = dispatch.freeze_progress;
        let freezer = freezer.map(|freezer| {
            std::thread::Builder::new()
                .name("freezer".into())
                .spawn_scoped(scope, move || freezer.freeze(&marks, freeze_progress))
        });
        let freezer = freezer
            .transpose()
            .context("cannot start freezing readers")?;
        let growing = freezer.as_ref().map(|_| (floor, freeze_progress));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the sending runtime")?;
        let ended = runtime.block_on(dispatch.deliver(smtp, from, limits, growing));
        // Sessions still open (after an error) end before the last marks are
        // written.
        drop(runtime);
        let Dispatch {
            mut summary,
            mut problems,
            progress,
            renderer,
            recorder,
            ..
        } = dispatch;
        // Readers are frozen to the end, even when the relay is gone.
        if let Some(freezer) = freezer {
            let report = freezer
                .join()
                .map_err(|_| anyhow::anyhow!("freezing readers panicked"))?;
            add_freeze_report(&mut summary, &mut problems, report);
        }
        progress.finish();
        problems.extend(renderer.take_warnings());
        anyhow::Ok((summary, problems, ended, recorder))
    })
}

/// Adds what freezing found to the summary and the problems.
fn add_freeze_report(summary: &mut Summary, problems: &mut Vec<Diagnostic>, report: FreezeReport) {
    for (segment, counts) in report.segments {
        let total = summary.segments.entry(segment).or_default();
        total.suppressed += counts.suppressed;
        total.skipped += counts.skipped;
    }
    // A run that carries a freeze on read the file twice: once said.
    for problem in report.problems {
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
}

/// With `resend_unknown`, the `unknown` messages tried
/// `delivery.max_attempts` times, or of an issue past
/// `delivery.max_age_hours`, are given up — counted failed, their readers
/// not suppressed — so retries stay bounded and the issue completes.
fn give_up_unknown(
    run: &Run,
    ledger: &Ledger,
    record: &IssueRecord,
    summary: &mut Summary,
    problems: &mut Vec<Diagnostic>,
) -> Result<()> {
    let delivery = &run.config.delivery;
    if !delivery.resend_unknown {
        return Ok(());
    }
    let too_old = too_old(delivery, run.now, record.created);
    let given_up = ledger.give_up_unknown(&record.id, delivery.max_attempts, too_old, run.now)?;
    for (segment, n) in &given_up {
        summary.segments.entry(segment.clone()).or_default().failed += n;
    }
    let given_up: u64 = given_up.values().sum();
    if given_up > 0 {
        let limit = if too_old {
            "their issue is older than delivery.max_age_hours".to_string()
        } else {
            format!(
                "each was tried delivery.max_attempts ({}) times",
                delivery.max_attempts
            )
        };
        problems.push(Diagnostic::warning(
            display_path(run.root, &crate::ledger::ledger_path(run.root)),
            format!(
                "{given_up} message(s) of issue {} were never confirmed and are given up ({limit}); counted as failed, their readers not suppressed",
                record.id
            ),
        ));
    }
    Ok(())
}

/// Says what a run stopped by `signal` did: how many messages it sent,
/// how many wait for the next run.
fn warn_interrupted(
    run: &Run,
    ledger: &Ledger,
    record: &IssueRecord,
    signal: &str,
    summary: &Summary,
    problems: &mut Vec<Diagnostic>,
) -> Result<()> {
    let counts = ledger.counts(&record.id)?;
    let sent: u64 = summary.segments.values().map(|c| c.sent).sum();
    let left = counts.pending + counts.deferred + counts.unknown + counts.sending;
    let unfrozen = if ledger.is_frozen(&record.id)? {
        ""
    } else {
        ", with the readers not frozen yet"
    };
    problems.push(Diagnostic::warning(
        display_path(run.root, &crate::ledger::ledger_path(run.root)),
        format!(
            "stopped by {signal}: this run sent {sent} message(s) of issue {}; {left} are left for the next run{unfrozen}",
            record.id
        ),
    ));
    Ok(())
}

/// Warns of messages marked `sending` without a reply, now `unknown`: each
/// may have arrived.
fn warn_unknown(
    run: &Run,
    ledger: &Ledger,
    record: &IssueRecord,
    problems: &mut Vec<Diagnostic>,
) -> Result<()> {
    let unknown = ledger.recover(&record.id, run.now)?;
    if unknown > 0 {
        problems.push(Diagnostic::warning(
            display_path(run.root, &crate::ledger::ledger_path(run.root)),
            format!(
                "{unknown} message(s) were on their way but not confirmed (each may have arrived); {}",
                if run.config.delivery.resend_unknown {
                    "the next run sends them again with the same Message-ID"
                } else {
                    "they are not sent again (delivery.resend_unknown is false)"
                }
            ),
        ));
    }
    Ok(())
}

/// The issue a real send works on: one still to finish, or one made now.
struct DueIssue {
    record: IssueRecord,
    posts: Vec<Post>,
    allowed: Allowed,
    /// While its readers are not all frozen: those that are.
    frozen: Option<HashSet<AddressKey>>,
}

/// What a real send finds to work on.
enum Found {
    Issue(DueIssue),
    /// Nothing new, and no issue to finish.
    Nothing,
    /// The subscribers file would empty the issue: the error that says so
    /// (see [`audience_guard`](super::audience_guard)).
    Refused(Diagnostic),
}

impl DueIssue {
    /// The issue to finish or, if none, the one made now.
    fn find(run: &Run, ledger: &Ledger, problems: &mut Vec<Diagnostic>) -> Result<Found> {
        let Some(record) = unfinished(ledger, run.config.delivery.resend_unknown)? else {
            if run.retry_only {
                return Ok(Found::Nothing);
            }
            // Made just now from the subscribers file: every reader in it
            // is allowed.
            return Ok(match open(run, ledger, problems)? {
                Opened::Nothing => Found::Nothing,
                Opened::Refused(refusal) => Found::Refused(refusal),
                Opened::Issue(record, posts) => Found::Issue(DueIssue {
                    record,
                    posts,
                    allowed: Allowed::All,
                    frozen: Some(HashSet::new()),
                }),
            });
        };
        let posts: Vec<Post> = serde_json::from_str(&record.posts)
            .with_context(|| format!("cannot read the posts of issue {}", record.id))?;
        let mailable = audience_guard::mailable_now(run, problems)?;
        // A file gone missing must not turn the pending readers into
        // skipped ones: the issue waits for the file.
        let before = audience_guard::readers_of(&ledger.counts(&record.id)?);
        let what = format!(
            "issue {} was not resumed; its readers stay pending",
            record.id
        );
        if let Some(refusal) =
            audience_guard::refusal(run, mailable.len(), Some((&record.id, before)), &what)
        {
            return Ok(Found::Refused(refusal));
        }
        let allowed = Allowed::Only(mailable);
        let frozen = if ledger.is_frozen(&record.id)? {
            None
        } else {
            Some(ledger.delivery_keys(&record.id)?)
        };
        Ok(Found::Issue(DueIssue {
            record,
            posts,
            allowed,
            frozen,
        }))
    }
}

/// The summary of a run with nothing new to send.
fn nothing_new(run: &Run) -> Summary {
    Summary {
        issue: run
            .now
            .with_timezone(&run.config.site.timezone)
            .format("%Y-%m-%d")
            .to_string(),
        dry_run: false,
        posts: Vec::new(),
        outbox: None,
        shard: run.shard_label(),
        segments: BTreeMap::new(),
        not_made: None,
        stopped: None,
        resent: 0,
    }
}

/// Every segment's counts, with the deferred messages of an issue past its
/// age (and the pending ones the relay failed to take) counted failed, and
/// a warning saying so.
fn expire_too_old(
    run: &Run,
    ledger: &Ledger,
    record: &IssueRecord,
    problems: &mut Vec<Diagnostic>,
) -> Result<BTreeMap<String, SegmentCounts>> {
    let mut segments: BTreeMap<String, SegmentCounts> = run
        .config
        .segments
        .iter()
        .map(|s| (s.id.clone(), SegmentCounts::default()))
        .collect();
    let expired = expire(ledger, record, run, &mut segments)?;
    if expired > 0 {
        problems.push(Diagnostic::warning(
            display_path(run.root, &crate::ledger::ledger_path(run.root)),
            format!(
                "{expired} undelivered message(s) of issue {} (deferred, or not taken by the relay) are older than delivery.max_age_hours; counted as failed, not suppressed",
                record.id
            ),
        ));
    }
    Ok(segments)
}

/// The renderer of `record`'s digests, every custom column in `attrs`;
/// `None` when the templates cannot be used (the problems say why).
fn renderer_for<'r>(
    run: &Run<'r>,
    record: &IssueRecord,
    posts: &[Post],
    secret: Secret,
    attrs: Vec<String>,
    problems: &mut Vec<Diagnostic>,
) -> Option<Renderer<'r>> {
    let issue = Issue::frozen(record.id.clone(), record.cutoff, posts.iter().collect());
    let (renderer, found) = Renderer::new(
        run.config,
        run.root,
        run.config_shown,
        &issue,
        secret,
        attrs,
    );
    problems.extend(found);
    renderer
}

/// The issue a run must finish first: one not completed, or — when
/// `resend_unknown` — the last one if it still has `unknown` messages.
fn unfinished(ledger: &Ledger, resend_unknown: bool) -> Result<Option<IssueRecord>> {
    if let Some(record) = ledger.unfinished_issue()? {
        return Ok(Some(record));
    }
    if !resend_unknown {
        return Ok(None);
    }
    match ledger.last_issue()? {
        Some(record) if ledger.counts(&record.id)?.unknown > 0 => Ok(Some(record)),
        _ => Ok(None),
    }
}

/// The custom columns of an issue frozen before the ledger kept them:
/// those of its due readers' frozen fields, in one pass.
fn columns_of_due(
    ledger: &Ledger,
    issue: &str,
    now: DateTime<FixedOffset>,
    resend_unknown: bool,
) -> Result<Vec<String>> {
    let mut attrs = Vec::new();
    for delivery in ledger.due(issue, now, resend_unknown)? {
        let reader = FrozenDigest::of(&delivery?)?;
        subscribers::add_columns(&mut attrs, &reader.attrs);
    }
    Ok(attrs)
}

/// What [`open`] did.
enum Opened {
    /// Recorded with its posts.
    Issue(IssueRecord, Vec<Post>),
    /// Nothing new to make an issue of.
    Nothing,
    /// The audience guard stopped it: the error that says why.
    Refused(Diagnostic),
}

/// The issue made now, recorded with its posts (its readers are frozen
/// while the first are sent) once the audience guard lets it.
fn open(run: &Run, ledger: &Ledger, problems: &mut Vec<Diagnostic>) -> Result<Opened> {
    let config = run.config;
    let history = super::history::read(ledger)?;
    let window = select::Window::new(config, run.now, run.since);
    let planned = select::plan(run.library, &history, window);
    let ledger_shown = display_path(run.root, &crate::ledger::ledger_path(run.root));
    problems.extend(planned.calendar_warnings(&ledger_shown));
    if planned.posts.is_empty() {
        return Ok(Opened::Nothing);
    }
    if let Some(refusal) = audience_guard::before_new_issue(run, ledger, problems)? {
        return Ok(Opened::Refused(refusal));
    }
    let posts: Vec<Post> = planned.posts.iter().map(|p| (*p).clone()).collect();
    let json = serde_json::to_string(&posts)?;
    let record = IssueRecord {
        id: planned.id.clone(),
        cutoff: run.now,
        since: planned.since(),
        content_hash: hex::encode(Sha256::digest(json.as_bytes())),
        posts: json,
        created: run.now,
        completed: None,
    };
    let path = run.root.join(&config.audience.file);
    let shown = display_path(run.root, &path);
    // Every digest can use every custom column of the file, as in a dry run.
    ledger.open_issue(&record, &subscribers::columns(&path, &shown), &planned.seen)?;
    Ok(Opened::Issue(record, posts))
}

/// Deferred messages of an issue past its age, and pending ones the relay
/// failed to take: failed, so it can complete.
fn expire(
    ledger: &Ledger,
    record: &IssueRecord,
    run: &Run,
    segments: &mut BTreeMap<String, SegmentCounts>,
) -> Result<u64> {
    if !too_old(&run.config.delivery, run.now, record.created) {
        return Ok(0);
    }
    let expired = ledger.expire_tried(
        &record.id,
        "not delivered before the issue was too old",
        run.now,
    )?;
    for (segment, n) in &expired {
        segments.entry(segment.clone()).or_default().failed += n;
    }
    Ok(expired.values().sum())
}

/// The shortest time between two messages under the rate limits.
fn interval(config: &Config) -> Option<std::time::Duration> {
    crate::deliver::pace::interval(config.delivery.per_second, config.delivery.per_hour)
}
