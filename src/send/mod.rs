//! Send stage: `gazette send` — the issue made now, every reader's digest
//! rendered and handed to the outbox, feeds rewritten alongside, and a
//! summary per segment.
//!
//! A dry run (and every run without SMTP configured) writes `.eml` files
//! under `outbox/<issue>/` and never writes the ledger; a real send goes
//! through the ledger ([`send`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, FixedOffset};
use rayon::prelude::*;
use serde::Serialize;

use crate::address::AddressKey;
use crate::audience::segments::segment_of;
use crate::audience::shard::Shard;
use crate::audience::subscribers::{self, Subscriber};
use crate::audience::suppressed::Suppressed;
use crate::config::{Config, Segment};
use crate::content::Library;
use crate::deliver::EmlDir;
use crate::diagnostics::{Diagnostic, display_path};
use crate::render::Renderer;
use crate::select::{self, History, Index, Reader};
use crate::unsubscribe::Secret;

mod live;
pub mod lock;
mod progress;
pub mod shard;

pub use live::{Ended, send};

/// What one segment's readers came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SegmentCounts {
    /// Handed to the server and accepted (or written, in a dry run).
    pub sent: u64,
    pub deferred: u64,
    pub failed: u64,
    /// Not mailed: unsubscribed, bounced, complained or of unknown status.
    pub suppressed: u64,
    /// Not mailed: the segment had no new post for them.
    pub skipped: u64,
}

/// What a run did, for people (text) and scripts (`--format json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub issue: String,
    pub dry_run: bool,
    /// The posts of the issue, by slug, newest first.
    pub posts: Vec<String>,
    /// Where the `.eml` files went, for a dry run.
    pub outbox: Option<String>,
    /// `K/N` when the run mailed one shard of the audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub segments: BTreeMap<String, SegmentCounts>,
}

impl Summary {
    /// The summary as text: one line for the issue, a table of segments.
    pub fn text(&self) -> String {
        let mut out = format!(
            "issue {}: {} post{}{}{}\n",
            self.issue,
            self.posts.len(),
            if self.posts.len() == 1 { "" } else { "s" },
            self.shard
                .as_ref()
                .map(|k| format!(", shard {k}"))
                .unwrap_or_default(),
            if self.dry_run { " (dry run)" } else { "" }
        );
        if self.posts.is_empty() {
            out.push_str("nothing new to send\n");
            return out;
        }
        out.push_str(&format!(
            "{:<20} {:>8} {:>8} {:>8} {:>10} {:>8}\n",
            "segment", "sent", "deferred", "failed", "suppressed", "skipped"
        ));
        for (segment, c) in &self.segments {
            out.push_str(&format!(
                "{segment:<20} {:>8} {:>8} {:>8} {:>10} {:>8}\n",
                c.sent, c.deferred, c.failed, c.suppressed, c.skipped
            ));
        }
        let sent: u64 = self.segments.values().map(|c| c.sent).sum();
        let messages = if sent == 1 { "message" } else { "messages" };
        match &self.outbox {
            Some(outbox) => {
                out.push_str(&format!("dry run: wrote {sent} {messages} to {outbox}\n"))
            }
            None if self.dry_run => out.push_str(&format!(
                "dry run: rendered {sent} {messages} and discarded them\n"
            )),
            None => {}
        }
        out
    }
}

/// Everything a send needs that the command line decided.
pub struct Run<'a> {
    pub root: &'a Path,
    pub config: &'a Config,
    pub config_shown: &'a Path,
    pub library: &'a Library,
    pub now: DateTime<FixedOffset>,
    pub since: Option<DateTime<FixedOffset>>,
    /// Where a dry run writes `.eml` files; `None` renders and discards.
    pub outbox: Option<&'a Path>,
    /// The part of the audience this run mails.
    pub shard: Shard,
}

impl Run<'_> {
    /// `K/N` for a sharded run.
    pub fn shard_label(&self) -> Option<String> {
        (!self.shard.is_all()).then(|| self.shard.to_string())
    }

    /// Whether `subscriber` is in this run's shard.
    pub fn mails(&self, subscriber: &Subscriber) -> bool {
        self.shard.is_all() || self.shard.contains(&AddressKey::of(&subscriber.email))
    }
}

/// What the issues already sent from the project in `root` sent (none
/// before its first send).
pub fn history(root: &Path) -> Result<History> {
    match crate::ledger::Ledger::open_existing(root)? {
        Some(ledger) => live::history(&ledger),
        None => Ok(History::default()),
    }
}

/// A dry run: every reader's email written as a `.eml` file; nothing
/// recorded. Returns the summary and the problems met (bad subscriber
/// rows, template errors).
pub fn dry_run(run: &Run) -> Result<(Summary, Vec<Diagnostic>)> {
    let config = run.config;
    // What a real send would do now: after the issues already sent.
    let history = history(run.root)?;
    let window = select::Window::new(config, run.now, run.since);
    let issue = select::plan(run.library, &history, window);
    let mut summary = Summary {
        issue: issue.id.clone(),
        dry_run: true,
        posts: issue.posts.iter().map(|p| p.slug.clone()).collect(),
        outbox: None,
        shard: run.shard_label(),
        segments: config
            .segments
            .iter()
            .map(|s| (s.id.clone(), SegmentCounts::default()))
            .collect(),
    };
    let mut problems = Vec::new();
    if issue.posts.is_empty() {
        return Ok((summary, problems));
    }
    let index = Index::new(&issue.posts, run.now, &config.digest);
    let path = run.root.join(&config.audience.file);
    let shown = display_path(run.root, &path);
    let suppressed = Suppressed::load(run.root)?;
    // Columns first: every reader's digest can use every custom column.
    let attrs = subscribers::columns(&path, &shown);
    let secret = Secret::load(run.root)?;
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
    let mut tally = Tally {
        summary: &mut summary,
        problems: &mut problems,
        failure: None,
    };
    // Readers are rendered a batch at a time on every core: the file is
    // streamed, and no more than a batch is held at once.
    let mut batch = Vec::with_capacity(BATCH);
    let render = |batch: &mut Vec<Subscriber>, tally: &mut Tally| {
        let results: Vec<_> = batch
            .par_iter()
            .map(|subscriber| {
                let segment = segment_of(subscriber, &config.segments);
                let result =
                    deliver_one(&renderer, &index, subscriber, segment, run, outbox.as_ref());
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
struct Tally<'a> {
    summary: &'a mut Summary,
    problems: &'a mut Vec<Diagnostic>,
    /// A message that could not be written: the run stops.
    failure: Option<anyhow::Error>,
}

impl Tally<'_> {
    fn record(&mut self, segment: &str, result: Result<Outcome, Failure>) {
        match result {
            Ok(outcome) => {
                if let Some(counts) = self.summary.segments.get_mut(segment) {
                    match outcome {
                        Outcome::Written => counts.sent += 1,
                        Outcome::Suppressed => counts.suppressed += 1,
                        Outcome::Skipped => counts.skipped += 1,
                    }
                }
            }
            Err(Failure::Render(problem)) => {
                if !self.problems.contains(&problem) {
                    self.problems.push(problem);
                }
            }
            Err(Failure::Write(err)) => {
                self.failure.get_or_insert(err);
            }
        }
    }
}

enum Outcome {
    Written,
    Suppressed,
    Skipped,
}

enum Failure {
    Render(Diagnostic),
    Write(anyhow::Error),
}

fn deliver_one(
    renderer: &Renderer,
    index: &Index,
    subscriber: &Subscriber,
    segment: &Segment,
    run: &Run,
    outbox: Option<&EmlDir>,
) -> Result<Outcome, Failure> {
    if !subscriber.status.mailable() {
        return Ok(Outcome::Suppressed);
    }
    let config = run.config;
    let reader = Reader {
        interests: &subscriber.interests,
        personalize: subscriber.personalize,
    };
    let (_, picks) = select::digest(index, segment, reader, &config.digest);
    if picks.is_empty() {
        return Ok(Outcome::Skipped);
    }
    let email = renderer
        .email(segment, subscriber, &picks)
        .map_err(Failure::Render)?;
    let bytes = renderer.eml(&email, run.now).map_err(Failure::Write)?;
    if let Some(outbox) = outbox {
        outbox
            .write(&subscriber.email, &bytes)
            .map_err(Failure::Write)?;
    }
    Ok(Outcome::Written)
}
