//! Send stage: a dry run — every reader's email rendered on every core and
//! written as a `.eml` file (or discarded), nothing recorded. May import
//! every stage below send; writes only the outbox.

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;

use super::{Run, SegmentCounts, Summary, history};
use crate::audience::segments::segment_of;
use crate::audience::subscribers::{self, Subscriber};
use crate::audience::suppressed::Suppressed;
use crate::config::Segment;
use crate::deliver::EmlDir;
use crate::diagnostics::{Diagnostic, display_path};
use crate::render::Renderer;
use crate::select::{self, Index, Reader};
use crate::unsubscribe::Secret;

/// A dry run: every reader's email written as a `.eml` file; nothing
/// recorded. Returns the summary and the problems met (bad subscriber
/// rows, template errors).
pub fn dry_run(run: &Run) -> Result<(Summary, Vec<Diagnostic>)> {
    let config = run.config;
    // What a real send would do now: after the issues already sent.
    let history = history(run.root)?;
    let window = select::Window::new(config, run.now, run.since);
    let issue = select::plan(run.library, &history, window);
    let mut problems = Vec::new();
    let ledger_shown = display_path(run.root, &crate::ledger::ledger_path(run.root));
    problems.extend(issue.calendar_warnings(&ledger_shown));
    let mut summary = Summary {
        issue: issue.id.clone(),
        dry_run: true,
        posts: issue.posts.iter().map(|p| p.slug.clone()).collect(),
        outbox: None,
        shard: run.shard_label(),
        not_made: None,
        stopped: None,
        resent: 0,
        segments: config
            .segments
            .iter()
            .map(|s| (s.id.clone(), SegmentCounts::default()))
            .collect(),
    };
    if issue.posts.is_empty() {
        return Ok((summary, problems));
    }
    let index = Index::new(&issue.posts, run.now, &config.digest);
    let path = run.root.join(&config.audience.file);
    let shown = display_path(run.root, &path);
    let suppressed = Suppressed::load(run.root)?;
    // Columns first: every reader's digest can use every custom column.
    let attrs = subscribers::columns(&path, &shown);
    let secret = dry_run_secret(run.root, &mut problems)?;
    let (renderer, found) =
        Renderer::new(config, run.root, run.config_shown, &issue, secret, attrs);
    problems.extend(found);
    let Some(renderer) = renderer else {
        // Still read every row, so that one run reports every problem.
        problems.extend(subscribers::read(&path, &shown, &mut |_| {}));
        return Ok((summary, problems));
    };
    let outbox = run
        .outbox
        .map(|dir| EmlDir::create(dir, &issue.id))
        .transpose()?;
    let mut tally = DryRunTally {
        summary: &mut summary,
        problems: &mut problems,
        failure: None,
    };
    // Readers are rendered a batch at a time on every core: the file is
    // streamed, and no more than a batch is held at once.
    let mut batch = Vec::with_capacity(BATCH);
    let render = |batch: &mut Vec<Subscriber>, tally: &mut DryRunTally| {
        let results: Vec<_> = batch
            .par_iter()
            .map(|subscriber| {
                let segment = segment_of(subscriber, &config.segments);
                let result =
                    write_reader(&renderer, &index, subscriber, segment, run, outbox.as_ref());
                (segment, result)
            })
            .collect();
        for (segment, result) in results {
            tally.record(&segment.id, result);
        }
        batch.clear();
    };
    let found = subscribers::read(&path, &shown, &mut |mut subscriber| {
        if tally.failure.is_some() || !run.mails(&subscriber) {
            return;
        }
        suppressed.apply(&mut subscriber);
        batch.push(subscriber);
        if batch.len() == BATCH {
            render(&mut batch, &mut tally);
        }
    });
    render(&mut batch, &mut tally);
    if let Some(err) = tally.failure {
        return Err(err);
    }
    problems.extend(found);
    problems.extend(renderer.take_warnings());
    if let Some(outbox) = outbox {
        summary.outbox = Some(display_path(run.root, outbox.dir()).display().to_string());
        outbox.summary(&serde_json::to_vec_pretty(&summary)?)?;
    }
    Ok((summary, problems))
}

/// Readers rendered together in a dry run.
const BATCH: usize = 512;

/// What a dry run has done so far.
struct DryRunTally<'a> {
    summary: &'a mut Summary,
    problems: &'a mut Vec<Diagnostic>,
    /// A message that could not be written: the run stops.
    failure: Option<anyhow::Error>,
}

impl DryRunTally<'_> {
    fn record(&mut self, segment: &str, result: Result<DryRunOutcome, DryRunFailure>) {
        match result {
            Ok(outcome) => {
                if let Some(counts) = self.summary.segments.get_mut(segment) {
                    match outcome {
                        DryRunOutcome::Written => counts.sent += 1,
                        DryRunOutcome::Suppressed => counts.suppressed += 1,
                        DryRunOutcome::Skipped => counts.skipped += 1,
                    }
                }
            }
            Err(DryRunFailure::Render(problem)) => {
                if !self.problems.contains(&problem) {
                    self.problems.push(problem);
                }
            }
            Err(DryRunFailure::Write(err)) => {
                self.failure.get_or_insert(err);
            }
        }
    }
}

/// What became of one reader in a dry run.
enum DryRunOutcome {
    Written,
    Suppressed,
    Skipped,
}

/// Why one reader's message was not written: a template problem (the run
/// goes on) or a file that could not be written (the run stops).
enum DryRunFailure {
    Render(Diagnostic),
    Write(anyhow::Error),
}

/// `subscriber`'s digest rendered and written to `outbox` (if any).
fn write_reader(
    renderer: &Renderer,
    index: &Index,
    subscriber: &Subscriber,
    segment: &Segment,
    run: &Run,
    outbox: Option<&EmlDir>,
) -> Result<DryRunOutcome, DryRunFailure> {
    if !subscriber.status.mailable() {
        return Ok(DryRunOutcome::Suppressed);
    }
    let config = run.config;
    let reader = Reader {
        interests: &subscriber.interests,
        personalize: subscriber.personalize,
    };
    let (_, picks) = select::digest(index, segment, reader, &config.digest);
    if picks.is_empty() {
        return Ok(DryRunOutcome::Skipped);
    }
    let email = renderer
        .email(segment, subscriber, &picks)
        .map_err(DryRunFailure::Render)?;
    let bytes = renderer
        .eml(&email, run.now)
        .map_err(DryRunFailure::Write)?;
    if let Some(outbox) = outbox {
        outbox
            .write(&subscriber.email, &bytes)
            .map_err(DryRunFailure::Write)?;
    }
    Ok(DryRunOutcome::Written)
}

/// What a dry run signs unsubscribe links (and derives Message-IDs) with
/// when the project has no key yet. Fixed, so two dry runs still write the
/// same files; no key checks tokens with it.
const STAND_IN_KEY: &[u8] = b"gazette dry run without a key: links do not work";

/// The key a dry run signs with: `GAZETTE_SECRET` or the key file, as a
/// real send would; without either, a stand-in (with a warning), since
/// making the key file would create `.gazette/` for a run that records
/// nothing.
fn dry_run_secret(root: &Path, problems: &mut Vec<Diagnostic>) -> Result<Secret> {
    if let Some(secret) = Secret::load_existing(root)? {
        return Ok(secret);
    }
    problems.push(Diagnostic::warning(
        display_path(root, &crate::state::key_file::path(root)),
        "no unsubscribe key yet, so this dry run signs its links with a stand-in key \
         and they will not work; the first real send makes the key (or set GAZETTE_SECRET)",
    ));
    Ok(Secret::from_bytes(STAND_IN_KEY))
}
