//! Content stage: the [`Library`] a run gets, gathered from what reading
//! each file gave, with the one check that needs every file at once (no
//! slug claimed twice).
//!
//! Imports: its siblings, `diagnostics`, `tag`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use super::Post;
use super::reader::FileOutcome;
use crate::diagnostics::{Diagnostic, display_path};
use crate::tag::Tag;

/// The published posts, newest first, ties broken by slug.
#[derive(Debug, Clone, Default)]
pub struct Library {
    /// The posts read whole: all of them, or those the run wanted.
    pub posts: Vec<Post>,
    /// Published posts whose front matter was read but not their body, as
    /// the run did not want them (not in `posts`); in file order.
    pub unread: Vec<Head>,
}

impl Library {
    /// How many posts are published, read whole or not.
    pub fn published(&self) -> usize {
        self.posts.len() + self.unread.len()
    }
}

/// What the front matter says of a published post: enough to choose the
/// posts whose bodies a run needs.
#[derive(Debug, Clone)]
pub struct Head {
    pub slug: String,
    pub date: DateTime<FixedOffset>,
    pub tags: Vec<Tag>,
    /// False for `newsletter: false` (see [`Post::newsletter`]).
    pub newsletter: bool,
}

/// The outcome of reading `content/`.
#[derive(Debug)]
pub struct Loaded {
    pub library: Library,
    /// Errors, warnings and notes (skipped posts), in file order.
    pub diagnostics: Vec<Diagnostic>,
}

/// The order of [`Library::posts`]: newest first, ties broken by slug.
pub(super) fn newest_first(
    a_date: DateTime<FixedOffset>,
    a_slug: &str,
    b_date: DateTime<FixedOffset>,
    b_slug: &str,
) -> std::cmp::Ordering {
    b_date.cmp(&a_date).then_with(|| a_slug.cmp(b_slug))
}

/// The library made of each file's outcome (`outcomes[i]` is of
/// `paths[i]`), in file order; every file's problems, a note for each
/// skipped post and an error for each slug used twice go to `diagnostics`.
/// Posts scheduled after `now` still claim their slug.
pub(super) fn gather(
    root: &Path,
    now: DateTime<FixedOffset>,
    paths: &[PathBuf],
    outcomes: Vec<(FileOutcome, Vec<Diagnostic>)>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Library {
    let mut posts = Vec::new();
    let mut unread = Vec::new();
    // Published and scheduled posts, in file order: each needs its own slug.
    let mut claims: Vec<(String, PathBuf)> = Vec::new();
    for (path, (outcome, mut problems)) in paths.iter().zip(outcomes) {
        let shown = display_path(root, path);
        match outcome {
            FileOutcome::Whole(post) => {
                claims.push((post.slug.clone(), post.source.clone()));
                posts.push(*post);
            }
            FileOutcome::HeadOnly(head) => {
                claims.push((head.slug.clone(), shown));
                unread.push(head);
            }
            FileOutcome::Skipped(head, reason) => {
                if head.date > now {
                    claims.push((head.slug, shown.clone()));
                }
                problems.push(Diagnostic::note(shown, format!("skipped: {reason}")));
            }
            FileOutcome::Failed => {}
        }
        diagnostics.extend(problems);
    }
    check_duplicate_slugs(&claims, diagnostics);
    posts.sort_by(|a, b| newest_first(a.date, &a.slug, b.date, &b.slug));
    Library { posts, unread }
}

/// Errors for every slug claimed twice (scheduled posts count: they will
/// be published under it).
fn check_duplicate_slugs(claims: &[(String, PathBuf)], diagnostics: &mut Vec<Diagnostic>) {
    let mut first: HashMap<&str, &Path> = HashMap::new();
    for (slug, source) in claims {
        if let Some(other) = first.get(slug.as_str()) {
            diagnostics.push(Diagnostic::error(
                source.clone(),
                format!(
                    "slug '{slug}' is also used by {}; give one of them a different `slug:`",
                    other.display()
                ),
            ));
        } else {
            first.insert(slug, source);
        }
    }
}
