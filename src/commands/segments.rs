//! Command `gazette segments`: every segment, how many of its readers
//! would be mailed, and the posts a reader of it would get now.

use std::fmt::Write;

use anyhow::Result;

use super::Invocation;
use super::explain::{issue_line, write_picks};
use crate::audience::segments::segment_of;
use crate::audience::subscribers::Subscriber;
use crate::config::Config;
use crate::diagnostics::Report;
use crate::exit::Exit;
use crate::select::{Index, Issue, Reader, digest};

/// Runs `segments`; `since` as `--since` gives it.
pub fn run(inv: &Invocation, since: Option<&str>) -> Result<Exit> {
    let mut report = Report::default();
    let (config, loaded, since) = match inv.load_with_since(&mut report, since)? {
        Ok(loaded) => loaded,
        Err(exit) => return Ok(exit),
    };
    let (issue, index) = inv.issue(&config, &loaded.library, since, &mut report)?;
    let mut tallies = vec![SegmentTally::default(); config.segments.len()];
    let read = inv.read_audience(&config, &mut report, &mut |subscriber| {
        tally(&config, &mut tallies, &subscriber);
    })?;
    inv.print(&report, false)?;
    if !read {
        return Ok(Exit::BadInput);
    }
    out!("{}", text(&config, &issue, &index, &tallies))?;
    Ok(super::exit_of(&report))
}

/// Subscribers per segment, as `gazette segments` counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentTally {
    /// Would get this issue's email.
    pub mailable: usize,
    /// Unsubscribed, bounced, complained or of unknown status.
    pub not_mailable: usize,
}

/// Counts `subscriber` into its segment's entry of `counts` (one per
/// segment, in config order).
fn tally(config: &Config, counts: &mut [SegmentTally], subscriber: &Subscriber) {
    let segment = segment_of(subscriber, &config.segments);
    if let Some(at) = config.segments.iter().position(|s| s.id == segment.id) {
        if subscriber.status.mailable() {
            counts[at].mailable += 1;
        } else {
            counts[at].not_mailable += 1;
        }
    }
}

/// `gazette segments`: every segment, its subscribers and the posts a
/// reader of it with no interests of their own would get now.
fn text(config: &Config, issue: &Issue, index: &Index, counts: &[SegmentTally]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", issue_line(config, issue));
    for (segment, count) in config.segments.iter().zip(counts) {
        let _ = writeln!(
            out,
            "\n{} ({}): {} to mail, {} not mailable",
            segment.id, segment.name, count.mailable, count.not_mailable
        );
        let reader = Reader {
            interests: &[],
            personalize: true,
        };
        let (mode, picks) = digest(index, segment, reader, &config.digest);
        if picks.is_empty() {
            let _ = writeln!(out, "  no new posts: no email this issue");
            continue;
        }
        let _ = writeln!(out, "  {}", mode.describe());
        write_picks(&mut out, &picks, mode, None);
    }
    out
}
