//! Select stage: [`Library`] → the [`Issue`] (the posts new since the last
//! cutoff), then per segment and reader the ranked [`Pick`]s, each with the
//! reason the reader is shown, and the A/B [`variant`] of each reader.
//!
//! Nothing here reads the clock or the ledger: `now` and the [`History`] of
//! earlier issues are passed in, so the same inputs give the same picks.
//!
//! May import the stages before it (config, content) and the shared words
//! below them; never audience, render, send, deliver, ledger or the
//! commands.

mod picks;
mod rank;
pub mod variant;

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset};
use chrono_tz::Tz;

use crate::content::{Library, Post};

pub use picks::{Mode, Pick, PickReason, Reader, digest};
pub use rank::{Index, Score};

/// What earlier issues sent (from the ledger; empty before the first).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The cutoff of the latest issue.
    pub last_cutoff: Option<DateTime<FixedOffset>>,
    /// Slugs of every post sent before: never sent again, even if redated.
    pub sent: HashSet<String>,
}

/// One digest run: the posts it covers, frozen.
#[derive(Debug, Clone)]
pub struct Issue<'a> {
    /// The issue's date in the site timezone (`2026-11-25`).
    pub id: String,
    /// Posts published up to this instant are covered.
    pub cutoff: DateTime<FixedOffset>,
    /// Posts published after this instant are covered; `None` for a first
    /// issue, which takes the latest posts instead.
    pub since: Option<DateTime<FixedOffset>>,
    /// Newest first.
    pub posts: Vec<&'a Post>,
}

/// The window of an issue made at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now: DateTime<FixedOffset>,
    pub timezone: Tz,
    /// `--since`: overrides the last cutoff.
    pub since: Option<DateTime<FixedOffset>>,
    /// Posts of a first issue (no cutoff yet).
    pub first_issue_posts: usize,
}

impl Window {
    /// The window of an issue made at `now` under `config`.
    pub fn new(
        config: &crate::config::Config,
        now: DateTime<FixedOffset>,
        since: Option<DateTime<FixedOffset>>,
    ) -> Window {
        Window {
            now,
            timezone: config.site.timezone,
            since,
            first_issue_posts: config.digest.first_issue_posts,
        }
    }
}

/// Which of the posts (their dates and slugs, newest first; whole posts
/// or the heads read before their bodies) the issue made at `window.now`
/// covers: published after the last cutoff (or `--since`) and not sent
/// before; for a first issue, the latest `first_issue_posts`.
pub fn fresh<'a>(
    posts: impl Iterator<Item = (DateTime<FixedOffset>, &'a str)>,
    history: &History,
    window: &Window,
) -> Vec<usize> {
    let since = window.since.or(history.last_cutoff);
    let fresh = posts.enumerate().filter(|(_, (date, slug))| {
        *date <= window.now
            && since.is_none_or(|since| *date > since)
            && !history.sent.contains(*slug)
    });
    let limit = match since {
        Some(_) => usize::MAX,
        None => window.first_issue_posts,
    };
    fresh.take(limit).map(|(i, _)| i).collect()
}

/// The issue made at `window.now`, with the posts [`fresh`] chooses.
pub fn plan<'a>(library: &'a Library, history: &History, window: Window) -> Issue<'a> {
    let since = window.since.or(history.last_cutoff);
    let dated = library.posts.iter().map(|p| (p.date, p.slug.as_str()));
    let posts = fresh(dated, history, &window)
        .into_iter()
        .map(|i| &library.posts[i])
        .collect();
    Issue {
        id: window
            .now
            .with_timezone(&window.timezone)
            .format("%Y-%m-%d")
            .to_string(),
        cutoff: window.now,
        since,
        posts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{Head, test_post};

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn library() -> Library {
        Library {
            posts: vec![
                test_post("d", "2026-05-04T00:00:00Z", &[]),
                test_post("c", "2026-05-03T00:00:00Z", &[]),
                test_post("b", "2026-05-02T00:00:00Z", &[]),
                test_post("a", "2026-05-01T00:00:00Z", &[]),
            ],
            unread: 0,
        }
    }

    fn window(since: Option<&str>) -> Window {
        Window {
            now: at("2026-05-05T00:00:00Z"),
            timezone: Tz::UTC,
            since: since.map(at),
            first_issue_posts: 2,
        }
    }

    fn slugs(issue: &Issue) -> Vec<String> {
        issue.posts.iter().map(|p| p.slug.clone()).collect()
    }

    #[test]
    fn a_first_issue_takes_the_latest_posts() {
        let library = library();
        let issue = plan(&library, &History::default(), window(None));
        assert_eq!(slugs(&issue), ["d", "c"]);
        assert_eq!(issue.id, "2026-05-05");
        assert_eq!(issue.since, None);
    }

    #[test]
    fn later_issues_take_what_is_new_since_the_cutoff_and_never_repeat() {
        let library = library();
        let history = History {
            last_cutoff: Some(at("2026-05-01T12:00:00Z")),
            sent: HashSet::from(["c".to_string()]),
        };
        let issue = plan(&library, &history, window(None));
        assert_eq!(slugs(&issue), ["d", "b"]);
        let since = plan(&library, &history, window(Some("2026-05-02T12:00:00Z")));
        assert_eq!(slugs(&since), ["d"]);
    }

    #[test]
    fn heads_choose_what_whole_posts_do() {
        // The posts whose bodies a send reads are chosen from their heads:
        // the same choice as the issue's from the posts read whole.
        let library = library();
        let heads: Vec<Head> = library
            .posts
            .iter()
            .map(|p| Head {
                slug: p.slug.clone(),
                date: p.date,
                tags: Vec::new(),
            })
            .collect();
        let history = History {
            last_cutoff: Some(at("2026-05-01T12:00:00Z")),
            sent: HashSet::from(["c".to_string()]),
        };
        for (history, window) in [
            (History::default(), window(None)),
            (history.clone(), window(None)),
            (history, window(Some("2026-05-02T12:00:00Z"))),
        ] {
            let from_heads = fresh(
                heads.iter().map(|h| (h.date, h.slug.as_str())),
                &history,
                &window,
            );
            let from_posts = fresh(
                library.posts.iter().map(|p| (p.date, p.slug.as_str())),
                &history,
                &window,
            );
            assert_eq!(from_heads, from_posts);
            assert!(!from_heads.is_empty());
        }
    }
}
