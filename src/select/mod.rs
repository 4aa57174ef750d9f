//! Select stage: [`Library`] → the [`Issue`] (the published posts no
//! earlier issue saw), then per segment and reader the ranked [`Pick`]s, each with the
//! reason the reader is shown, and the A/B [`variant`] of each reader.
//!
//! Nothing here reads the clock or the ledger: `now` and the [`History`] of
//! earlier issues are passed in, so the same inputs give the same picks.
//!
//! May import the stages before it (config, content) and the shared words
//! below them; never audience, render, send, deliver, ledger or the
//! commands.

mod calendar;
mod picks;
mod rank;
pub mod variant;

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset};
use chrono_tz::Tz;

use crate::content::{Head, Library, Post};

pub use picks::{Mode, Pick, PickReason, Reader, digest};
pub use rank::{Index, Score};

/// What earlier issues sent and saw (from the ledger; empty before the
/// first).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The cutoff of the latest issue: `None` before the first. Only
    /// reported against the clock ([`Issue::clock_warning`]); posts are
    /// not chosen by it.
    pub last_cutoff: Option<DateTime<FixedOffset>>,
    /// Slugs of every post sent before: never sent again, even if redated.
    pub sent: HashSet<String>,
    /// Slugs of every post an earlier issue saw (published and meant for
    /// email when it was made), carried or not.
    pub seen: HashSet<String>,
    /// For a ledger whose issues were made before they recorded what they
    /// saw: posts dated up to here (the newest post they carried) count as
    /// seen. `None` once an issue has recorded what it saw.
    pub seen_through: Option<DateTime<FixedOffset>>,
    /// The ids of the issues in the ledger: a second issue of a day is
    /// numbered after them.
    pub issue_ids: HashSet<String>,
}

impl History {
    /// Whether an earlier issue saw `post`.
    fn saw(&self, post: &Candidate) -> bool {
        self.seen.contains(post.slug) || self.seen_through.is_some_and(|t| post.date <= t)
    }
}

/// What choosing an issue's posts needs to know of a post, read whole or
/// by its head.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub slug: &'a str,
    pub date: DateTime<FixedOffset>,
    /// False for `newsletter: false`: never in an issue, never seen.
    pub newsletter: bool,
}

impl<'a> From<&'a Post> for Candidate<'a> {
    fn from(post: &'a Post) -> Self {
        Candidate {
            slug: &post.slug,
            date: post.date,
            newsletter: post.newsletter,
        }
    }
}

impl<'a> From<&'a Head> for Candidate<'a> {
    fn from(head: &'a Head) -> Self {
        Candidate {
            slug: &head.slug,
            date: head.date,
            newsletter: head.newsletter,
        }
    }
}

/// How an issue's posts were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The first issue: the latest `first_issue_posts`.
    First { latest: usize },
    /// The posts no earlier issue saw, whatever their dates.
    Unseen,
    /// `--since`: the posts published after it that no earlier issue
    /// carried, seen or not.
    Since(DateTime<FixedOffset>),
    /// Read back from the ledger: chosen by the run that froze it.
    Frozen,
}

/// One digest run: the posts it covers, frozen.
#[derive(Debug, Clone)]
pub struct Issue<'a> {
    /// The issue's date in the site timezone (`2026-11-25`).
    pub id: String,
    /// When it was made (the clock of the run that made it).
    pub cutoff: DateTime<FixedOffset>,
    pub basis: Basis,
    /// The previous issue's cutoff (`None` before the first).
    pub last_cutoff: Option<DateTime<FixedOffset>>,
    /// Newest first.
    pub posts: Vec<&'a Post>,
    /// The slugs of the published posts meant for email that no earlier
    /// issue saw (the issue's posts among them): the ledger records them
    /// with the issue, so no later issue takes them unless it carries them.
    pub seen: Vec<&'a str>,
    /// The site timezone, for the dates of notes and warnings.
    pub timezone: Tz,
}

impl Issue<'_> {
    /// An issue read back from the ledger, with its frozen posts.
    pub fn frozen(id: String, cutoff: DateTime<FixedOffset>, posts: Vec<&Post>) -> Issue<'_> {
        Issue {
            id,
            cutoff,
            basis: Basis::Frozen,
            last_cutoff: None,
            posts,
            seen: Vec::new(),
            timezone: Tz::UTC,
        }
    }

    /// Where the issue's window starts, as the ledger records it: the
    /// `--since`, else the previous issue's cutoff; `None` for a first
    /// issue (or one read back).
    pub fn since(&self) -> Option<DateTime<FixedOffset>> {
        match self.basis {
            Basis::Unseen => self.last_cutoff,
            Basis::Since(since) => Some(since),
            Basis::First { .. } | Basis::Frozen => None,
        }
    }
}

/// The window of an issue made at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now: DateTime<FixedOffset>,
    pub timezone: Tz,
    /// `--since`: the posts published after it that no earlier issue
    /// carried, instead of those no earlier issue saw.
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

    /// How the issue made in this window after `history` chooses posts.
    fn basis(&self, history: &History) -> Basis {
        match (self.since, history.last_cutoff) {
            (Some(since), _) => Basis::Since(since),
            (None, Some(_)) => Basis::Unseen,
            (None, None) => Basis::First {
                latest: self.first_issue_posts,
            },
        }
    }
}

/// Which of the posts (newest first; whole posts or the heads read before
/// their bodies) the issue made at `window.now` carries: the published
/// posts meant for email that no earlier issue sent and — after a first
/// issue, which takes the latest `first_issue_posts` — no earlier issue
/// saw; with `--since`, those published after it instead of the unseen.
/// Dates choose nothing but the first issue's latest and `--since`'s
/// window, so a post written after a send but dated before it, or a clock
/// that was once ahead, loses no post.
pub fn fresh<'a>(
    posts: impl Iterator<Item = Candidate<'a>>,
    history: &History,
    window: &Window,
) -> Vec<usize> {
    let mailable = posts.enumerate().filter(|(_, post)| {
        post.newsletter && post.date <= window.now && !history.sent.contains(post.slug)
    });
    let index = |(i, _): (usize, Candidate)| i;
    match window.basis(history) {
        Basis::First { latest } => mailable.take(latest).map(index).collect(),
        Basis::Unseen => mailable
            .filter(|(_, post)| !history.saw(post))
            .map(index)
            .collect(),
        Basis::Since(since) => mailable
            .filter(|(_, post)| post.date > since)
            .map(index)
            .collect(),
        // Never planned: an issue read back keeps its frozen posts.
        Basis::Frozen => Vec::new(),
    }
}

/// The slugs of the posts an issue made at `now` sees that no earlier
/// issue recorded: every one published and meant for email. (Those an
/// upgraded ledger's issues are reckoned to have seen are among them, so
/// that the record is whole from then on.)
fn newly_seen<'a>(
    posts: impl Iterator<Item = Candidate<'a>>,
    history: &History,
    now: DateTime<FixedOffset>,
) -> Vec<&'a str> {
    posts
        .filter(|post| post.newsletter && post.date <= now && !history.seen.contains(post.slug))
        .map(|post| post.slug)
        .collect()
}

/// The id of an issue made on `day` (`YYYY-MM-DD`): the day itself, else
/// `-2`, `-3`… after the ids `taken` — the same in a preview as in the
/// send, so variants, which are drawn by issue id, are the same too.
fn free_id(day: &str, taken: &HashSet<String>) -> String {
    (1..)
        .map(|n| match n {
            1 => day.to_string(),
            _ => format!("{day}-{n}"),
        })
        .find(|id| !taken.contains(id))
        .expect("an unbounded range has a free id")
}

/// The issue made at `window.now`, with the posts [`fresh`] chooses.
pub fn plan<'a>(library: &'a Library, history: &History, window: Window) -> Issue<'a> {
    let posts = fresh(library.posts.iter().map(Candidate::from), history, &window)
        .into_iter()
        .map(|i| &library.posts[i])
        .collect();
    let every = (library.posts.iter().map(Candidate::from))
        .chain(library.unread.iter().map(Candidate::from));
    let day = window
        .now
        .with_timezone(&window.timezone)
        .format("%Y-%m-%d");
    Issue {
        id: free_id(&day.to_string(), &history.issue_ids),
        cutoff: window.now,
        basis: window.basis(history),
        last_cutoff: history.last_cutoff,
        posts,
        seen: newly_seen(every, history, window.now),
        timezone: window.timezone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::test_post;

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
            unread: Vec::new(),
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

    fn set(slugs: &[&str]) -> HashSet<String> {
        slugs.iter().map(|s| s.to_string()).collect()
    }

    /// After one issue made at `cutoff` that saw `seen` and carried `sent`.
    fn after(cutoff: &str, seen: &[&str], sent: &[&str]) -> History {
        History {
            last_cutoff: Some(at(cutoff)),
            sent: set(sent),
            seen: set(seen),
            seen_through: None,
            issue_ids: set(&["2026-05-01"]),
        }
    }

    #[test]
    fn a_second_issue_of_a_day_is_numbered_after_those_in_the_ledger() {
        let taken = set(&["2026-06-01", "2026-06-01-2", "2026-05-31"]);
        assert_eq!(free_id("2026-06-01", &taken), "2026-06-01-3");
        assert_eq!(free_id("2026-06-02", &taken), "2026-06-02");
        let mut history = after("2026-05-05T06:00:00Z", &[], &[]);
        history.issue_ids = set(&["2026-05-05"]);
        let library = library();
        let issue = plan(&library, &history, window(None));
        assert_eq!(issue.id, "2026-05-05-2");
    }

    #[test]
    fn a_first_issue_takes_the_latest_posts_and_sees_them_all() {
        let library = library();
        let issue = plan(&library, &History::default(), window(None));
        assert_eq!(slugs(&issue), ["d", "c"]);
        assert_eq!(issue.seen, ["d", "c", "b", "a"]);
        assert_eq!(issue.id, "2026-05-05");
        assert_eq!(issue.since(), None);
        assert_eq!(issue.basis, Basis::First { latest: 2 });
    }

    #[test]
    fn a_second_issue_after_a_first_that_saw_many_old_posts_takes_only_the_new() {
        let mut library = library();
        library
            .posts
            .insert(0, test_post("e", "2026-05-04T12:00:00Z", &[]));
        let history = after("2026-05-04T06:00:00Z", &["d", "c", "b", "a"], &["d", "c"]);
        let issue = plan(&library, &history, window(None));
        assert_eq!(slugs(&issue), ["e"]);
        assert_eq!(issue.seen, ["e"]);
        assert!(issue.late_notes().is_empty());
    }

    #[test]
    fn a_post_written_after_the_send_but_dated_before_it_goes_in_the_next_issue() {
        // "d" is dated the morning's midnight but was written after the
        // 06:00 send that saw only "c": the next issue takes it, with a note.
        let library = library();
        let history = after("2026-05-04T06:00:00Z", &["c", "b", "a"], &["c"]);
        let issue = plan(&library, &history, window(None));
        assert_eq!(slugs(&issue), ["d"]);
        let notes = issue.late_notes();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0]
                .1
                .contains("post 'd' is dated 2026-05-04T00:00:00+00:00")
        );
        assert!(notes[0].1.contains("it goes in this one"), "{}", notes[0].1);
        assert_eq!(issue.clock_warning(), None);
    }

    #[test]
    fn a_back_dated_post_goes_in_the_next_issue() {
        // "b" was written after the issue that saw c and a, dated before them.
        let library = library();
        let history = after("2026-05-04T06:00:00Z", &["d", "c", "a"], &["d", "c", "a"]);
        let issue = plan(&library, &history, window(None));
        assert_eq!(slugs(&issue), ["b"]);
        assert_eq!(issue.late_notes()[0].0.slug, "b");
    }

    #[test]
    fn a_cutoff_a_year_ahead_is_reported_and_chooses_nothing() {
        let library = library();
        let ahead = after("2027-05-04T06:00:00Z", &["b", "a"], &["b", "a"]);
        let issue = plan(&library, &ahead, window(None));
        assert_eq!(slugs(&issue), ["d", "c"]);
        let warning = issue.clock_warning().unwrap();
        assert!(warning.contains("2026-05-05T00:00:00+00:00"), "{warning}");
        assert!(warning.contains("2027-05-04T06:00:00+00:00"), "{warning}");
        // Every post is "before" a cutoff ahead: no note says so.
        assert!(issue.late_notes().is_empty());
        let sane = after("2026-05-02T06:00:00Z", &["b", "a"], &["b", "a"]);
        assert_eq!(slugs(&plan(&library, &sane, window(None))), ["d", "c"]);
    }

    #[test]
    fn since_takes_what_no_issue_carried_after_it_seen_or_not() {
        let library = library();
        let history = after("2026-05-04T06:00:00Z", &["d", "c", "b", "a"], &["c"]);
        let since = plan(&library, &history, window(Some("2026-05-01T12:00:00Z")));
        assert_eq!(slugs(&since), ["d", "b"]);
        assert_eq!(since.since(), Some(at("2026-05-01T12:00:00Z")));
        assert!(since.late_notes().is_empty());
        let first = plan(
            &library,
            &History::default(),
            window(Some("2026-05-02T12:00:00Z")),
        );
        assert_eq!(slugs(&first), ["d", "c"]);
        assert_eq!(first.seen, ["d", "c", "b", "a"]);
    }

    #[test]
    fn a_post_out_of_the_newsletter_is_never_carried_nor_seen() {
        let mut library = library();
        library.posts[0].newsletter = false;
        let first = plan(&library, &History::default(), window(None));
        assert_eq!(slugs(&first), ["c", "b"]);
        assert_eq!(first.seen, ["c", "b", "a"]);
        let history = after("2026-05-04T06:00:00Z", &["c", "b", "a"], &["c", "b"]);
        assert!(plan(&library, &history, window(None)).posts.is_empty());
        // Back in the newsletter: no issue saw it, so the next one takes it.
        library.posts[0].newsletter = true;
        assert_eq!(slugs(&plan(&library, &history, window(None))), ["d"]);
    }

    #[test]
    fn an_upgraded_ledger_reckons_posts_up_to_the_newest_carried_as_seen() {
        let library = library();
        let history = History {
            seen_through: Some(at("2026-05-02T00:00:00Z")),
            ..after("2026-05-03T06:00:00Z", &[], &["b"])
        };
        // c was published before the last send but after the newest post
        // it carried: written after that send, it goes now.
        let issue = plan(&library, &history, window(None));
        assert_eq!(slugs(&issue), ["d", "c"]);
        // The record becomes whole: every published post is seen now.
        assert_eq!(issue.seen, ["d", "c", "b", "a"]);
    }

    #[test]
    fn unread_heads_are_seen_too() {
        let mut library = library();
        let head = library.posts.remove(3);
        library.unread.push(Head {
            slug: head.slug,
            date: head.date,
            tags: Vec::new(),
            newsletter: true,
        });
        let issue = plan(&library, &History::default(), window(None));
        assert_eq!(issue.seen, ["d", "c", "b", "a"]);
    }

    #[test]
    fn heads_choose_what_whole_posts_do() {
        // The posts whose bodies a send reads are chosen from their heads:
        // the same choice as the issue's from the posts read whole.
        let mut library = library();
        library.posts[1].newsletter = false;
        let heads: Vec<Head> = library
            .posts
            .iter()
            .map(|p| Head {
                slug: p.slug.clone(),
                date: p.date,
                tags: Vec::new(),
                newsletter: p.newsletter,
            })
            .collect();
        let history = after("2026-05-01T12:00:00Z", &["b", "a"], &["b"]);
        for (history, window) in [
            (History::default(), window(None)),
            (history.clone(), window(None)),
            (history, window(Some("2026-05-01T12:00:00Z"))),
        ] {
            let from_heads = fresh(heads.iter().map(Candidate::from), &history, &window);
            let from_posts = fresh(library.posts.iter().map(Candidate::from), &history, &window);
            assert_eq!(from_heads, from_posts);
            assert!(!from_heads.is_empty());
            assert!(!from_heads.contains(&1), "not in the newsletter");
        }
    }
}
