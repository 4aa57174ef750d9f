//! Content stage: `content/` → [`Library`] of published [`Post`]s.
//!
//! Walks the folder, reads each post (size limit, UTF-8, text hygiene),
//! splits its front matter, maps the aliases of many generators onto one
//! [`Post`], renders the body and resolves its URLs. Forgiving about
//! schema, strict about correctness: every problem of every file is
//! collected with its place, and drafts and scheduled posts are listed as
//! skipped rather than dropped silently.
//!
//! A run that publishes only some posts (the new ones, the feeds'
//! newest) reads in two passes ([`Want::Some`]): every file's front matter
//! first (what selection needs: slug, date, tags, and every front-matter
//! problem), then the bodies of the posts it needs. Rendering the bodies is
//! most of the work, so a send of a 10,000-post site reads ~40 bodies, not
//! 10,000. `check` reads every body ([`Want::Everything`]).

mod body;
mod dates;
mod fields;
mod frontmatter;
mod hygiene;
mod slug;

use std::collections::HashMap;

use rayon::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, FixedOffset, Timelike};
use serde_json::{Map, Value};
use url::Url;

use crate::clock::Clock;
use crate::config::{Author, Config};
use crate::diagnostics::{Diagnostic, display_path};
use fields::FrontMatter;

/// Re-exported from their shared homes ([`crate::tag`], [`crate::yaml`]):
/// a [`Post`] carries tags, and later stages still name these here.
pub use crate::tag::{Tag, slugify, tag_key};
pub use crate::yaml::position_of;
pub use hygiene::xml_allowed;

/// One published post, fully read and checked. Serializable, so an issue
/// can freeze its posts in the ledger.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Post {
    /// The file, relative to the project directory.
    pub source: PathBuf,
    pub slug: String,
    /// The permalink: absolute, from the configured pattern.
    pub url: Url,
    pub title: String,
    pub date: DateTime<FixedOffset>,
    pub updated: Option<DateTime<FixedOffset>>,
    /// Plain text, at most `content.summary_length` characters.
    pub summary: String,
    /// The body as HTML with every link and image source absolute.
    pub body_html: String,
    pub tags: Vec<Tag>,
    pub authors: Vec<Author>,
    pub image: Option<Url>,
    pub cta: Option<Cta>,
    /// Minutes, as the post states it or from its word count.
    pub reading_time: u32,
    pub words: usize,
    /// The body's visible text, whitespace collapsed (for ranking and
    /// plaintext mail).
    pub text: String,
    /// Front-matter keys gazette does not read itself, for templates.
    pub extra: Map<String, Value>,
}

/// A post's own call to action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cta {
    pub text: String,
    pub url: Option<Url>,
}

/// The published posts, newest first, ties broken by slug.
#[derive(Debug, Clone, Default)]
pub struct Library {
    /// The posts read whole: all of them, or those the run wanted.
    pub posts: Vec<Post>,
    /// Published posts whose front matter was read but not their body, as
    /// the run did not want them (not in `posts`).
    pub unread: usize,
}

impl Library {
    /// How many posts are published, read whole or not.
    pub fn published(&self) -> usize {
        self.posts.len() + self.unread
    }
}

/// What the front matter says of a published post: enough to choose the
/// posts whose bodies a run needs.
#[derive(Debug, Clone)]
pub struct Head {
    pub slug: String,
    pub date: DateTime<FixedOffset>,
    pub tags: Vec<Tag>,
}

/// Which posts to read whole.
pub enum Want<'a> {
    /// Every post (what `check` reads).
    Everything,
    /// Those `choose` marks, given every published post's head, newest
    /// first (ties broken by slug, as [`Library::posts`]).
    Some(&'a (dyn Fn(&[&Head]) -> Vec<bool> + Sync)),
}

/// The outcome of reading `content/`.
#[derive(Debug)]
pub struct Loaded {
    pub library: Library,
    /// Errors, warnings and notes (skipped posts), in file order.
    pub diagnostics: Vec<Diagnostic>,
}

/// The deepest element nesting a post body may have. HTML tree parsing is
/// quadratic in depth, so a hostile post could stall a run without it; real
/// posts stay far below.
const MAX_DEPTH: usize = 512;

/// The most formatting elements (`<b>`, `<i>`…) a body may leave open at
/// once: the HTML parser reopens each of them in every later block.
const MAX_FORMATTING: usize = 64;

/// The most cells a Markdown table row may have: the table extension's work
/// grows with the square of the row width.
const MAX_TABLE_CELLS: usize = 1000;

/// What reading one file gave.
enum Read1 {
    Post(Box<Post>),
    /// A published post whose body was not read.
    Head(Head),
    Skipped(Head, String),
    Failed,
}

/// What [`Reader::build`] made of a post.
enum Built {
    Post(Box<Post>),
    Head(Head),
}

/// How much of a file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Front matter, body and all.
    Whole,
    /// The front matter only (every problem of it still reported).
    FrontMatter,
}

impl Built {
    /// The head of the post, however much of it was read.
    fn into_head(self) -> Head {
        match self {
            Built::Post(post) => Head {
                slug: post.slug,
                date: post.date,
                tags: post.tags,
            },
            Built::Head(head) => head,
        }
    }
}

/// Reads the posts under the configured content folder of `root`: every
/// one whole, or as `want` says.
pub fn load(config: &Config, root: &Path, clock: &Clock, want: Want) -> Loaded {
    let dir = root.join(&config.content.dir);
    let mut diagnostics = Vec::new();
    if !dir.is_dir() {
        let shown = display_path(root, &dir);
        diagnostics.push(Diagnostic::error(
            shown,
            "content folder not found (set content.dir in gazette.yaml)",
        ));
        return Loaded {
            library: Library::default(),
            diagnostics,
        };
    }
    let reader = Reader {
        config,
        root,
        dir: &dir,
        now: clock.now(),
        git: GitDates::new(&dir),
    };
    let mut paths = Vec::new();
    let walker = walkdir::WalkDir::new(&dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let path = err.path().map_or(dir.clone(), Path::to_path_buf);
                diagnostics.push(Diagnostic::error(
                    display_path(root, &path),
                    format!("cannot read: {err}"),
                ));
                continue;
            }
        };
        if entry.file_type().is_file() && kind_of(entry.path()).is_some() {
            paths.push(entry.into_path());
        }
    }
    let depth = match want {
        Want::Everything => Depth::Whole,
        Want::Some(_) => Depth::FrontMatter,
    };
    // Posts are independent: read on every core, then taken in file order.
    let read_all = |paths: &[&PathBuf], depth| -> Vec<(Read1, Vec<Diagnostic>)> {
        paths
            .par_iter()
            .map(|path| {
                let mut problems = Vec::new();
                let read = reader.read(path, depth, &mut problems);
                (read, problems)
            })
            .collect()
    };
    let mut read = read_all(&paths.iter().collect::<Vec<_>>(), depth);
    if let Want::Some(choose) = want {
        // The wanted posts read again, whole: their problems replace those
        // of their front matter (a superset).
        let mut heads: Vec<(usize, &Head)> = read
            .iter()
            .enumerate()
            .filter_map(|(i, (r, _))| match r {
                Read1::Head(head) => Some((i, head)),
                _ => None,
            })
            .collect();
        heads.sort_by(|(_, a), (_, b)| newest_first(a.date, &a.slug, b.date, &b.slug));
        let chosen = choose(&heads.iter().map(|(_, h)| *h).collect::<Vec<_>>());
        // Files that failed are read whole too, so that the problems of
        // their bodies are reported in the same run, and drafts and
        // scheduled posts (few), so that a post's problems show before
        // the day it is published.
        let failed = read
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| matches!(r, Read1::Failed | Read1::Skipped(..)))
            .map(|(i, _)| i);
        let mut wanted: Vec<usize> = heads
            .iter()
            .zip(chosen.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, want)| **want)
            .map(|((i, _), _)| *i)
            .chain(failed)
            .collect();
        wanted.sort_unstable();
        let whole = read_all(
            &wanted.iter().map(|i| &paths[*i]).collect::<Vec<_>>(),
            Depth::Whole,
        );
        for (i, result) in wanted.into_iter().zip(whole) {
            read[i] = result;
        }
    }
    let mut posts = Vec::new();
    let mut unread = 0;
    // Published and scheduled posts, in file order: each needs its own slug.
    let mut claims: Vec<(String, PathBuf)> = Vec::new();
    for (path, (read, mut problems)) in paths.iter().zip(read) {
        let shown = display_path(root, path);
        match read {
            Read1::Post(post) => {
                claims.push((post.slug.clone(), post.source.clone()));
                posts.push(*post);
            }
            Read1::Head(head) => {
                claims.push((head.slug, shown));
                unread += 1;
            }
            Read1::Skipped(head, reason) => {
                if head.date > reader.now {
                    claims.push((head.slug, shown.clone()));
                }
                problems.push(Diagnostic::note(shown, format!("skipped: {reason}")));
            }
            Read1::Failed => {}
        }
        diagnostics.extend(problems);
    }
    check_duplicate_slugs(&claims, &mut diagnostics);
    posts.sort_by(|a, b| newest_first(a.date, &a.slug, b.date, &b.slug));
    Loaded {
        library: Library { posts, unread },
        diagnostics,
    }
}

/// The order of [`Library::posts`]: newest first, ties broken by slug.
fn newest_first(
    a_date: DateTime<FixedOffset>,
    a_slug: &str,
    b_date: DateTime<FixedOffset>,
    b_slug: &str,
) -> std::cmp::Ordering {
    b_date.cmp(&a_date).then_with(|| a_slug.cmp(b_slug))
}

/// The two kinds of post source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Markdown,
    Html,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "md" | "markdown" => Some(Kind::Markdown),
        "html" | "htm" => Some(Kind::Html),
        _ => None,
    }
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

/// Reads a date given on the command line (`--since`) in any of the shapes
/// front matter may use; naive values are read in `tz`.
pub fn parse_date(text: &str, tz: chrono_tz::Tz) -> Result<DateTime<FixedOffset>, String> {
    dates::parse(text, tz).map_err(|err| match err {
        dates::DateError::Unreadable => {
            format!(
                "cannot read '{text}' as a date; expected {}",
                dates::EXPECTED
            )
        }
        dates::DateError::OutOfRange => format!(
            "'{text}' is outside the years {} to {}",
            dates::YEARS.start(),
            dates::YEARS.end()
        ),
    })
}

struct Reader<'a> {
    config: &'a Config,
    root: &'a Path,
    dir: &'a Path,
    now: DateTime<FixedOffset>,
    git: GitDates,
}

impl Reader<'_> {
    fn read(&self, path: &Path, depth: Depth, problems: &mut Vec<Diagnostic>) -> Read1 {
        let shown = display_path(self.root, path);
        let Some(text) = self.read_text(path, &shown, problems) else {
            return Read1::Failed;
        };
        let (text, repairs) = hygiene::clean(&text);
        for repair in repairs {
            problems.push(Diagnostic::warning(&shown, repair.message).at(repair.at.0, repair.at.1));
        }
        let split = match frontmatter::split(&text, &shown) {
            Ok(split) => split,
            Err(err) => {
                problems.push(err);
                return Read1::Failed;
            }
        };
        let kind = kind_of(path).unwrap_or(Kind::Markdown);
        let mut fm = FrontMatter::new(split.fields, &split.places, &shown);
        let built = self.build(path, &shown, kind, split.body, depth, &mut fm);
        let draft = fm.take_draft();
        let (extra, fm_problems) = fm.into_extra();
        let failed = fm_problems.iter().any(Diagnostic::is_error);
        problems.extend(fm_problems);
        let Some(built) = built.filter(|_| !failed) else {
            return Read1::Failed;
        };
        let date = match &built {
            Built::Post(post) => post.date,
            Built::Head(head) => head.date,
        };
        let skipped = match draft {
            Some(reason) => Some(format!("draft ({reason})")),
            None => (date > self.now).then(|| format!("scheduled for {}", date.to_rfc3339())),
        };
        match (built, skipped) {
            (built, Some(reason)) => Read1::Skipped(built.into_head(), reason),
            (Built::Post(mut post), None) => {
                post.extra = extra;
                Read1::Post(post)
            }
            (Built::Head(head), None) => Read1::Head(head),
        }
    }

    /// The file as text: within the size limit and valid UTF-8.
    fn read_text(
        &self,
        path: &Path,
        shown: &Path,
        problems: &mut Vec<Diagnostic>,
    ) -> Option<String> {
        let limit = self.config.content.max_file_size;
        let mut bytes = Vec::new();
        let read =
            std::fs::File::open(path).and_then(|file| file.take(limit + 1).read_to_end(&mut bytes));
        if let Err(err) = read {
            problems.push(Diagnostic::error(shown, format!("cannot read: {err}")));
            return None;
        }
        if bytes.len() as u64 > limit {
            problems.push(Diagnostic::error(
                shown,
                format!("file is larger than content.max_file_size ({limit} bytes); not read"),
            ));
            return None;
        }
        match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(err) => {
                let valid = err.utf8_error().valid_up_to();
                let bad = err.as_bytes()[valid];
                let (line, col) = position_of(&err.as_bytes()[..valid]);
                problems.push(
                    Diagnostic::error(
                        shown,
                        format!("not valid UTF-8 (byte 0x{bad:02X}); save the file as UTF-8"),
                    )
                    .at(line, col),
                );
                None
            }
        }
    }

    /// Builds the post from its front matter and body; `None` after an
    /// error (recorded in `fm`). Every field is read even after an error, so
    /// that one run reports every problem of the file.
    fn build(
        &self,
        path: &Path,
        shown: &Path,
        kind: Kind,
        body_source: &str,
        depth: Depth,
        fm: &mut FrontMatter,
    ) -> Option<Built> {
        let config = self.config;
        let tz = config.site.timezone;
        let relative = path.strip_prefix(self.dir).unwrap_or(path);

        let html = match depth {
            Depth::Whole => body_html(kind, body_source, fm),
            Depth::FrontMatter => None,
        };
        let reading = html.as_deref().map(body::read).unwrap_or_default();
        let title = match depth {
            Depth::Whole => post_title(fm, &reading, html.is_some()),
            // Taken, so that it is not kept as an unknown key.
            Depth::FrontMatter => fm
                .take_text(fields::TITLE)
                .map(|(_, t)| (body::collapse(&t), false)),
        };
        let slug = self.slug(relative, fm);
        let date = match fm.take_date(fields::DATE, tz) {
            Some((_, date)) => Some(date),
            None if fm_has_error(fm) => None,
            None => self.fallback_date(path, relative, fm),
        };
        let updated = fm.take_date(fields::UPDATED, tz);
        let updated = match (updated, date) {
            (Some((key, updated)), Some(date)) if updated < date => {
                fm.warn(
                    Some(key),
                    format!("'{key}' is before the post's date; ignored"),
                );
                None
            }
            (updated, _) => updated.map(|(_, d)| d),
        };
        let url = match (&slug, date) {
            (Some(slug), Some(date)) => permalink(config, slug, date, fm),
            _ => None,
        };
        // Image and CTA links of a post without a permalink are still
        // checked, against the site's address.
        let base = url.clone().or_else(|| Url::parse(config.base()).ok())?;
        let summary = fm.take_summary();
        let image = fm.take_image(&base);
        let authors = fm
            .take_authors()
            .unwrap_or_else(|| config.site.author.iter().cloned().collect());
        let tags = fm.take_tags();
        let read_time = fm.take_read_time();
        let cta = fm.take_cta(&base);
        if depth == Depth::FrontMatter {
            let (slug, date, _) = (slug?, date?, url?);
            // What `scrub` would say of the front matter's texts.
            let summary = summary.map(|s| body::cut(&s, config.content.summary_length));
            let texts = (title.iter().map(|(t, _)| t.as_str()))
                .chain(summary.as_deref())
                .chain(tags.iter().map(|t| t.name.as_str()))
                .chain(
                    authors
                        .iter()
                        .flat_map(|a| [Some(a.name.as_str()), a.email.as_deref()])
                        .flatten(),
                )
                .chain(cta.as_ref().map(|c| c.text.as_str()));
            if let Some(removed) = hygiene::forbidden_in(texts) {
                fm.warn(None, escaped_removed(&removed));
            }
            return Some(Built::Head(Head { slug, date, tags }));
        }

        let (html, (title, drop_h1), slug, date, url) = (html?, title?, slug?, date?, url?);
        let (body_html, bad_urls) = body::rewrite(&html, &url, drop_h1);
        for bad in bad_urls {
            fm.warn(
                None,
                format!("cannot resolve link '{bad}' against {url}; left as written"),
            );
        }
        let text = if drop_h1 {
            &reading.text_without_h1
        } else {
            &reading.text
        };
        let summary = summary
            .or_else(|| summary_before_more(&html))
            .or_else(|| reading.first_paragraph.clone())
            .unwrap_or_else(|| text.clone());
        // Collapsed: words are separated by single spaces.
        let words = if text.is_empty() {
            0
        } else {
            text.bytes().filter(|b| *b == b' ').count() + 1
        };
        let wpm = config.content.words_per_minute as usize;
        let mut post = Post {
            source: shown.to_path_buf(),
            slug,
            url,
            title,
            date,
            updated,
            summary: body::cut(&summary, config.content.summary_length),
            body_html: body_html.trim().to_string(),
            tags,
            authors,
            image,
            cta,
            reading_time: read_time.unwrap_or_else(|| words.div_ceil(wpm).max(1) as u32),
            words,
            text: text.clone(),
            extra: Map::new(),
        };
        if let Some(removed) = scrub(&mut post) {
            fm.warn(None, escaped_removed(&removed));
        }
        Some(Built::Post(Box::new(post)))
    }

    /// The `slug:` field, or one made from the file name.
    fn slug(&self, relative: &Path, fm: &mut FrontMatter) -> Option<String> {
        if let Some((key, slug)) = fm.take_text(fields::SLUG) {
            return match slug::check(slug.trim()) {
                Ok(()) => Some(slug.trim().to_string()),
                Err(message) => {
                    fm.error(key, message);
                    None
                }
            };
        }
        let slug = slug::from_path(relative);
        if slug.is_empty() {
            fm.error(
                "slug",
                "cannot make a slug from the file name; add `slug:`".into(),
            );
            return None;
        }
        Some(slug)
    }

    /// A date for a post that states none: the Jekyll file-name prefix, the
    /// first git commit of the file, or its modification time (with a warning).
    fn fallback_date(
        &self,
        path: &Path,
        relative: &Path,
        fm: &mut FrontMatter,
    ) -> Option<DateTime<FixedOffset>> {
        let tz = self.config.site.timezone;
        let prefixed = dates::jekyll_prefix(slug::stem_of(relative))
            .and_then(|(day, _)| dates::in_zone(day.and_hms_opt(0, 0, 0)?, tz))
            .filter(dates::in_range);
        if prefixed.is_some() {
            return prefixed;
        }
        if let Some(date) = self.git.first_commit(path) {
            fm.warn(
                None,
                format!(
                    "no date in front matter; using the date the file was first committed to git, {} (add `date:` to fix it)",
                    date.to_rfc3339()
                ),
            );
            return Some(date);
        }
        let modified = std::fs::metadata(path).and_then(|m| m.modified());
        match modified {
            Ok(time) => {
                let date = DateTime::<chrono::Utc>::from(time).fixed_offset();
                let date = date.with_nanosecond(0).unwrap_or(date);
                fm.warn(
                    None,
                    format!(
                        "no date in front matter; using the file's modification time, {} (add `date:` to fix it)",
                        date.to_rfc3339()
                    ),
                );
                Some(date)
            }
            Err(err) => {
                fm.error(
                    "date",
                    format!("no date in front matter, and no modification time: {err}"),
                );
                None
            }
        }
    }
}

/// The body as HTML, if its nesting is within bounds.
fn body_html(kind: Kind, source: &str, fm: &mut FrontMatter) -> Option<String> {
    if kind == Kind::Markdown {
        let nested = body::container_depth(source);
        if nested > MAX_DEPTH {
            fm.error_in_file(format!(
                "quotes or lists nested {nested} deep on one line; gazette reads at most {MAX_DEPTH} levels"
            ));
            return None;
        }
        let width = body::table_width(source);
        if width > MAX_TABLE_CELLS {
            fm.error_in_file(format!(
                "a table row with {width} cells; gazette reads at most {MAX_TABLE_CELLS}"
            ));
            return None;
        }
    }
    let html = match kind {
        Kind::Markdown => body::markdown_to_html(source),
        Kind::Html => source.to_string(),
    };
    let nesting = body::nesting(&html);
    if nesting.depth > MAX_DEPTH {
        fm.error_in_file(format!(
            "HTML nested {} elements deep; gazette reads at most {MAX_DEPTH} levels",
            nesting.depth
        ));
        return None;
    }
    if nesting.formatting > MAX_FORMATTING {
        fm.error_in_file(format!(
            "{} formatting elements (<b>, <i>, <a>…) open at once; gazette reads at most {MAX_FORMATTING} (close them)",
            nesting.formatting
        ));
        return None;
    }
    Some(html)
}

/// The title, and whether the body's first `<h1>` is to be dropped: it
/// repeats the title, or it is the title when the front matter has none.
/// A missing title is only reported when the body could be read.
fn post_title(
    fm: &mut FrontMatter,
    reading: &body::Reading,
    body_read: bool,
) -> Option<(String, bool)> {
    let title = fm.take_text(fields::TITLE).map(|(_, t)| body::collapse(&t));
    match (title, &reading.first_h1) {
        (Some(title), Some(h1)) => {
            let repeats = reading.h1_leads && h1.to_lowercase() == title.to_lowercase();
            Some((title, repeats))
        }
        (Some(title), None) => Some((title, false)),
        (None, Some(h1)) => Some((h1.clone(), true)),
        (None, None) if !body_read => None,
        (None, None) => {
            fm.error(
                "title",
                "no title: add `title:` to the front matter or a `# ` heading to the post".into(),
            );
            None
        }
    }
}

/// The post's permalink, from the configured pattern.
fn permalink(
    config: &Config,
    slug: &str,
    date: DateTime<FixedOffset>,
    fm: &mut FrontMatter,
) -> Option<Url> {
    let link = slug::permalink(
        &config.content.permalink,
        config.base(),
        slug,
        date,
        config.site.timezone,
    );
    match Url::parse(&link) {
        Ok(url) => Some(url),
        Err(err) => {
            fm.error(
                "slug",
                format!("permalink '{link}' is not a valid URL: {err}"),
            );
            None
        }
    }
}

/// The text before a `<!-- more -->` marker in the rendered body (so a
/// marker inside a code block does not count), if there is any.
fn summary_before_more(html: &str) -> Option<String> {
    let at = ["<!-- more -->", "<!--more-->"]
        .iter()
        .filter_map(|marker| html.find(marker))
        .min()?;
    Some(body::read(&html[..at]).text).filter(|text| !text.is_empty())
}

/// Removes characters XML forbids from every text of `post`; they can
/// arrive through escapes (`"\u0001"` in YAML, `&#1;` in HTML) after the
/// file's own text was cleaned. Says what was removed, if anything.
fn scrub(post: &mut Post) -> Option<String> {
    let mut texts: Vec<&mut String> = vec![
        &mut post.title,
        &mut post.summary,
        &mut post.body_html,
        &mut post.text,
    ];
    texts.extend(post.tags.iter_mut().map(|tag| &mut tag.name));
    for author in &mut post.authors {
        texts.push(&mut author.name);
        texts.extend(author.email.as_mut());
    }
    texts.extend(post.cta.as_mut().map(|cta| &mut cta.text));
    let removed = hygiene::forbidden_in(texts.iter().map(|text| text.as_str()));
    if removed.is_some() {
        for text in texts {
            text.retain(xml_allowed);
        }
    }
    post.title = body::collapse(&post.title);
    removed
}

/// The warning for what [`scrub`] removed.
fn escaped_removed(removed: &str) -> String {
    format!("removed {removed} (written as an escape; not allowed in XML feeds)")
}

fn fm_has_error(fm: &FrontMatter) -> bool {
    fm.problems.iter().any(Diagnostic::is_error)
}

/// First-commit dates of files, when the content folder is in a git work tree.
struct GitDates {
    enabled: bool,
}

impl GitDates {
    fn new(dir: &Path) -> GitDates {
        let inside = Command::new("git")
            .args(["rev-parse", "--is-inside-work-tree"])
            .current_dir(dir)
            .output()
            .is_ok_and(|out| out.status.success() && out.stdout.starts_with(b"true"));
        GitDates { enabled: inside }
    }

    /// The author date of the commit that added `path`, if any.
    fn first_commit(&self, path: &Path) -> Option<DateTime<FixedOffset>> {
        if !self.enabled {
            return None;
        }
        let dir = path.parent()?;
        let name = path.file_name()?;
        let out = Command::new("git")
            .args(["log", "--diff-filter=A", "--follow", "--format=%aI", "--"])
            .arg(name)
            .current_dir(dir)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        DateTime::parse_from_rfc3339(text.lines().last()?.trim()).ok()
    }
}

/// A post with the given slug, date (RFC 3339) and tag names, for unit tests
/// of later stages.
#[cfg(test)]
pub fn test_post(slug: &str, date: &str, tags: &[&str]) -> Post {
    Post {
        source: PathBuf::from(format!("content/{slug}.md")),
        slug: slug.to_string(),
        url: Url::parse(&format!("https://example.com/{slug}/")).expect("test URL"),
        title: format!("Post {slug}"),
        date: DateTime::parse_from_rfc3339(date).expect("test date"),
        updated: None,
        summary: String::new(),
        body_html: String::new(),
        tags: tags
            .iter()
            .map(|name| Tag {
                name: (*name).to_string(),
                key: tag_key(name),
            })
            .collect(),
        authors: Vec::new(),
        image: None,
        cta: None,
        reading_time: 1,
        words: 0,
        text: String::new(),
        extra: Map::new(),
    }
}
