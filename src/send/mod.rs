//! Send stage: `gazette send` — the issue made now, every reader's digest
//! rendered and handed to the outbox, feeds rewritten alongside, and a
//! summary per segment.
//!
//! A dry run (and every run without SMTP configured) writes `.eml` files
//! under `outbox/<issue>/`, never writes the ledger and creates no
//! `.gazette/` ([`dry_run()`]); a
//! real send goes through the ledger ([`send`]). This file holds what both
//! share: the run, its summary, the history of issues sent. The send stage
//! sits at the top of the flow: it may import every stage below it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::address::AddressKey;
use crate::audience::shard::Shard;
use crate::audience::subscribers::Subscriber;
use crate::config::Config;
use crate::content::Library;
use crate::select::History;

mod audience_guard;
mod dispatch;
mod dry_run;
mod freeze;
mod frozen;
mod history;
mod journal;
mod live;
mod newly_frozen;
mod progress;
pub mod shard;
pub mod signals;
pub mod state_guard;

pub use dispatch::{SendEnd, relay_problem_text};
pub use dry_run::dry_run;
pub use live::send;

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
    /// Why no issue was made although posts were new (the subscribers
    /// file was refused: it gives no reader, or shrank too much); absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_made: Option<String>,
    /// Why the run stopped before its end (a relay problem: what the
    /// relay answered, to whom); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Messages an earlier run left `unknown` (each may have arrived) that
    /// this run sent again, with their Message-ID; counted in `sent` too.
    #[serde(skip_serializing_if = "is_zero")]
    pub resent: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Summary {
    /// The summary as text: one line for the issue, a table of segments.
    pub fn text(&self) -> String {
        // No issue: no issue line either (it would read "0 posts").
        if let Some(why) = &self.not_made {
            return format!("no issue made: {why}\n");
        }
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
        if let Some(why) = &self.stopped {
            out.push_str(&format!("stopped: {why}\n"));
        }
        let sent: u64 = self.segments.values().map(|c| c.sent).sum();
        let messages = if sent == 1 { "message" } else { "messages" };
        if self.resent > 0 {
            out.push_str(&format!(
                "resent {} message(s) an earlier run left unknown (same Message-ID; each may now be a duplicate)\n",
                self.resent
            ));
        }
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
    /// Whether an empty or shrunken audience may be mailed
    /// (`--allow-shrink`), which the audience guard otherwise refuses.
    pub allow_shrink: bool,
    /// `--retry-only`: finish the open issue, never make a new one.
    pub retry_only: bool,
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

/// What the issues already sent from the project in `root` sent and saw
/// (nothing before its first send).
pub fn history(root: &Path) -> Result<History> {
    match crate::ledger::Ledger::open_existing(root)? {
        Some(ledger) => history::read(&ledger),
        None => Ok(History::default()),
    }
}
