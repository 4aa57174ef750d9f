//! Feed stage: [`Library`] → RSS 2.0, Atom 1.0 and JSON Feed 1.1 files.
//!
//! May import `config` and `content` (the stages before it) and `atomic_file`
//! (whole-or-nothing writes); nothing after it imports feed but the command line.
//!
//! Feeds are built in memory first (so a bad post never leaves a partial
//! set behind), hold no wall-clock time (two builds of the same content are
//! byte-identical), and are written atomically.

mod atom;
mod json;
mod rss;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, FixedOffset};

use crate::atomic_file::write_atomic;
use crate::config::Config;
use crate::content::{Head, Library, Post};

/// One feed file ready to be written.
#[derive(Debug)]
pub struct FeedFile {
    /// Path relative to the output folder (`rss.xml`, `tags/ai/atom.xml`).
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub entries: usize,
}

/// The site's feeds or one tag's (an RSS, Atom and JSON file each): their
/// posts and where their files live.
struct FeedSet<'a> {
    title: String,
    /// Folder inside the output folder, with a trailing `/`, or empty.
    prefix: String,
    posts: Vec<&'a Post>,
}

impl FeedSet<'_> {
    /// The public URL of this set's file `name`.
    /// Non-ASCII tag folders are percent-encoded, as URLs in feeds must be.
    fn url(&self, config: &Config, name: &str) -> String {
        let url = format!("{}/{}{name}", config.base(), self.prefix);
        url::Url::parse(&url).map_or(url, String::from)
    }

    /// The newest date among the posts (published or updated).
    fn newest(&self) -> Option<DateTime<FixedOffset>> {
        self.posts
            .iter()
            .map(|p| p.updated.unwrap_or(p.date).max(p.date))
            .max()
    }
}

/// Which of the posts (`heads`, newest first) [`build`] puts in a feed:
/// the newest `feeds.limit`, and of each tag its newest `feeds.limit` (at
/// least one: the newest post of a tag names its feed).
pub fn wanted(config: &Config, heads: &[&Head]) -> Vec<bool> {
    let feeds = &config.feeds;
    let mut wanted = vec![false; heads.len()];
    if !(feeds.rss || feeds.atom || feeds.json) {
        return wanted;
    }
    for want in wanted.iter_mut().take(feeds.limit) {
        *want = true;
    }
    if feeds.tags {
        let mut taken: HashMap<&str, usize> = HashMap::new();
        for (head, want) in heads.iter().zip(wanted.iter_mut()) {
            for tag in &head.tags {
                let n = taken.entry(&tag.key).or_default();
                if *n < feeds.limit.max(1) {
                    *n += 1;
                    *want = true;
                }
            }
        }
    }
    wanted
}

/// Builds every enabled feed of `library`: the site feeds, then one set per tag.
pub fn build(config: &Config, library: &Library) -> Result<Vec<FeedFile>> {
    let limit = config.feeds.limit;
    let mut sets = vec![FeedSet {
        title: config.site.title.clone(),
        prefix: String::new(),
        posts: library.posts.iter().take(limit).collect(),
    }];
    if config.feeds.tags {
        let mut tags: Vec<(&str, &str)> = Vec::new();
        for post in &library.posts {
            for tag in &post.tags {
                if !tags.iter().any(|(key, _)| *key == tag.key) {
                    tags.push((&tag.key, &tag.name));
                }
            }
        }
        tags.sort();
        for (key, name) in tags {
            let posts = library
                .posts
                .iter()
                .filter(|p| p.tags.iter().any(|t| t.key == key))
                .take(limit)
                .collect();
            sets.push(FeedSet {
                title: format!("{} — {name}", config.site.title),
                prefix: format!("tags/{key}/"),
                posts,
            });
        }
    }
    let mut files = Vec::new();
    for set in &sets {
        let entries = set.posts.len();
        let mut add = |name: &str, bytes: Vec<u8>| {
            files.push(FeedFile {
                path: PathBuf::from(format!("{}{name}", set.prefix)),
                bytes,
                entries,
            });
        };
        if config.feeds.rss {
            add(rss::FILE, rss::render(config, set)?);
        }
        if config.feeds.atom {
            add(atom::FILE, atom::render(config, set)?);
        }
        if config.feeds.json {
            add(json::FILE, json::render(config, set)?);
        }
    }
    Ok(files)
}

/// Writes `files` under `out`, each atomically.
pub fn write(out: &Path, files: &[FeedFile]) -> Result<()> {
    for file in files {
        write_atomic(&out.join(&file.path), &file.bytes)?;
    }
    Ok(())
}

/// The generator name and version written into feeds.
fn generator() -> (&'static str, &'static str) {
    ("gazette", env!("CARGO_PKG_VERSION"))
}

/// The authors of a post as display names.
fn author_names(post: &Post) -> Vec<String> {
    post.authors.iter().map(|a| a.name.clone()).collect()
}
