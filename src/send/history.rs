//! Send stage: the [`History`] a new issue is chosen against — the posts
//! earlier issues carried and saw — read from the ledger. May import every
//! stage below send.

use std::collections::HashSet;

use anyhow::{Context, Result};

use crate::content::Post;
use crate::ledger::Ledger;
use crate::select::History;

/// What earlier issues sent and saw: the last cutoff, the slugs carried
/// and seen. A ledger whose issues were all made before issues recorded
/// what they saw (one upgraded in mid-life) reckons they saw every post
/// dated up to the newest one they carried: older posts were either
/// carried or passed over then, and newer ones were written after the
/// last send (or were drafts or scheduled then), so they go out now. The
/// next issue records them all as seen.
pub fn read(ledger: &Ledger) -> Result<History> {
    let mut sent = HashSet::new();
    let mut newest_carried = None;
    for json in ledger.issue_posts()? {
        let posts: Vec<Post> =
            serde_json::from_str(&json).context("cannot read an earlier issue")?;
        for post in posts {
            newest_carried = newest_carried.max(Some(post.date));
            sent.insert(post.slug);
        }
    }
    let seen = ledger.seen_posts()?;
    Ok(History {
        last_cutoff: ledger.last_issue()?.map(|r| r.cutoff),
        sent,
        seen: seen.slugs,
        seen_through: newest_carried.filter(|_| seen.unrecorded),
        issue_ids: ledger.issue_ids()?,
    })
}
