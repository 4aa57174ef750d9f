//! Content stage: `content/` → [`Library`] of published [`Post`]s.
//!
//! Walks the folder, reads each post (size limit, UTF-8, text hygiene),
//! splits its front matter, maps the aliases of many generators onto one
//! [`Post`], renders the body and resolves its URLs. Forgiving about
//! schema, strict about correctness: every problem of every file is
//! collected with its place, and drafts and scheduled posts are listed as
//! skipped rather than dropped silently.

mod body;
mod dates;
mod fields;
mod frontmatter;
mod hygiene;
mod slug;

use std::collections::HashMap;
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

pub use hygiene::xml_allowed;
pub use slug::slugify;

/// One published post, fully read and checked.
#[derive(Debug, Clone)]
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
    /// Front-matter keys gazette does not read itself, for templates.
    pub extra: Map<String, Value>,
}

/// A tag as written (for display) and its folded key (for matching and paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub key: String,
}

/// A post's own call to action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cta {
    pub text: String,
    pub url: Option<Url>,
}

/// The published posts, newest first, ties broken by slug.
#[derive(Debug, Clone, Default)]
pub struct Library {
    pub posts: Vec<Post>,
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

/// What reading one file gave.
enum Read1 {
    Post(Box<Post>),
    Skipped(Box<Post>, String),
    Failed,
}

/// Reads every post under the configured content folder of `root`.
pub fn load(config: &Config, root: &Path, clock: &Clock) -> Loaded {
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
    let mut reader = Reader {
        config,
        root,
        dir: &dir,
        now: clock.now(),
        git: GitDates::new(&dir),
    };
    let mut posts = Vec::new();
    let walker = walkdir::WalkDir::new(&dir)
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
        if !entry.file_type().is_file() || kind_of(entry.path()).is_none() {
            continue;
        }
        let mut problems = Vec::new();
        match reader.read(entry.path(), &mut problems) {
            Read1::Post(post) => posts.push(*post),
            Read1::Skipped(post, reason) => {
                problems.push(Diagnostic::note(
                    post.source.clone(),
                    format!("skipped: {reason}"),
                ));
            }
            Read1::Failed => {}
        }
        diagnostics.extend(problems);
    }
    check_duplicate_slugs(&posts, &mut diagnostics);
    posts.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.slug.cmp(&b.slug)));
    Loaded {
        library: Library { posts },
        diagnostics,
    }
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

fn check_duplicate_slugs(posts: &[Post], diagnostics: &mut Vec<Diagnostic>) {
    let mut first: HashMap<&str, &Path> = HashMap::new();
    for post in posts {
        if let Some(other) = first.get(post.slug.as_str()) {
            diagnostics.push(Diagnostic::error(
                post.source.clone(),
                format!(
                    "slug '{}' is also used by {}; give one of them a different `slug:`",
                    post.slug,
                    other.display()
                ),
            ));
        } else {
            first.insert(&post.slug, &post.source);
        }
    }
}

/// 1-based line and column just after `bytes` (for positions of bad bytes).
pub fn position_of(bytes: &[u8]) -> (usize, usize) {
    let valid = String::from_utf8_lossy(bytes);
    hygiene::position_in(&valid, valid.len())
}

struct Reader<'a> {
    config: &'a Config,
    root: &'a Path,
    dir: &'a Path,
    now: DateTime<FixedOffset>,
    git: GitDates,
}

impl Reader<'_> {
    fn read(&mut self, path: &Path, problems: &mut Vec<Diagnostic>) -> Read1 {
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
        let post = self.build(path, &shown, kind, split.body, &mut fm);
        let draft = fm.take_draft();
        let (extra, fm_problems) = fm.into_extra();
        let failed = fm_problems.iter().any(Diagnostic::is_error);
        problems.extend(fm_problems);
        let Some(mut post) = post.filter(|_| !failed) else {
            return Read1::Failed;
        };
        post.extra = extra;
        if let Some(reason) = draft {
            return Read1::Skipped(Box::new(post), format!("draft ({reason})"));
        }
        if post.date > self.now {
            let reason = format!("scheduled for {}", post.date.to_rfc3339());
            return Read1::Skipped(Box::new(post), reason);
        }
        Read1::Post(Box::new(post))
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

    /// Builds the post from its front matter and body; `None` after an error
    /// (recorded in `fm`).
    fn build(
        &mut self,
        path: &Path,
        shown: &Path,
        kind: Kind,
        body_source: &str,
        fm: &mut FrontMatter,
    ) -> Option<Post> {
        let config = self.config;
        let tz = config.site.timezone;
        let relative = path.strip_prefix(self.dir).unwrap_or(path);

        let (summary_source, body_source) = split_more(body_source);
        let nested = body::container_depth(body_source);
        if kind == Kind::Markdown && nested > MAX_DEPTH {
            fm.error_in_file(format!(
                "quotes or lists nested {nested} deep on one line; gazette reads at most {MAX_DEPTH} levels"
            ));
            return None;
        }
        let html = match kind {
            Kind::Markdown => body::markdown_to_html(body_source),
            Kind::Html => body_source.to_string(),
        };
        let depth = body::depth(&html);
        if depth > MAX_DEPTH {
            fm.error_in_file(format!(
                "HTML nested {depth} elements deep; gazette reads at most {MAX_DEPTH} levels"
            ));
            return None;
        }
        let reading = body::read(&html);

        let title = fm.take_text(fields::TITLE).map(|(_, t)| body::collapse(&t));
        let (title, drop_h1) = match (title, &reading.leading_h1) {
            (Some(title), Some(h1)) => {
                let repeats = h1.to_lowercase() == title.to_lowercase();
                (Some(title), repeats)
            }
            (Some(title), None) => (Some(title), false),
            (None, Some(h1)) => (Some(h1.clone()), true),
            (None, None) => (None, false),
        };
        let Some(title) = title else {
            fm.error(
                "title",
                "no title: add `title:` to the front matter or start the post with a `# ` heading"
                    .into(),
            );
            return None;
        };

        let slug = match fm.take_text(fields::SLUG) {
            Some((key, slug)) => match slug::check(slug.trim()) {
                Ok(()) => slug.trim().to_string(),
                Err(message) => {
                    fm.error(key, message);
                    return None;
                }
            },
            None => {
                let slug = slug::from_path(relative);
                if slug.is_empty() {
                    fm.error(
                        "slug",
                        "cannot make a slug from the file name; add `slug:`".into(),
                    );
                    return None;
                }
                slug
            }
        };

        let date = match fm.take_date(fields::DATE, tz) {
            Some((_, date)) => date,
            None if fm_has_error(fm) => return None,
            None => self.fallback_date(path, relative, fm)?,
        };
        let updated = fm.take_date(fields::UPDATED, tz).map(|(_, d)| d);

        let link = slug::permalink(&config.content.permalink, config.base(), &slug, date, tz);
        let url = match Url::parse(&link) {
            Ok(url) => url,
            Err(err) => {
                fm.error(
                    "slug",
                    format!("permalink '{link}' is not a valid URL: {err}"),
                );
                return None;
            }
        };

        let (body_html, bad_urls) = body::rewrite(&html, &url, drop_h1);
        let body_html = body_html.trim().to_string();
        for bad in bad_urls {
            fm.warn(
                None,
                format!("cannot resolve link '{bad}' against {url}; left as written"),
            );
        }

        let length = config.content.summary_length;
        let summary = match fm.take_summary() {
            Some(summary) => summary,
            None => match summary_source {
                Some(before) => {
                    let html = match kind {
                        Kind::Markdown => body::markdown_to_html(before),
                        Kind::Html => before.to_string(),
                    };
                    body::read(&html).text
                }
                None => reading
                    .first_paragraph
                    .clone()
                    .unwrap_or_else(|| reading.text.clone()),
            },
        };
        let summary = body::cut(&summary, length);

        let image = fm.take_image(&url);
        let authors = fm
            .take_authors()
            .unwrap_or_else(|| config.site.author.iter().cloned().collect());
        let tags = fm.take_tags();
        let words = reading.text.split_whitespace().count();
        let wpm = config.content.words_per_minute as usize;
        let reading_time = fm
            .take_read_time()
            .unwrap_or_else(|| words.div_ceil(wpm).max(1) as u32);
        let cta = fm.take_cta(&url);

        Some(Post {
            source: shown.to_path_buf(),
            slug,
            url,
            title,
            date,
            updated,
            summary,
            body_html,
            tags,
            authors,
            image,
            cta,
            reading_time,
            words,
            extra: Map::new(),
        })
    }

    /// A date for a post that states none: the Jekyll file-name prefix, the
    /// first git commit of the file, or its modification time (with a warning).
    fn fallback_date(
        &mut self,
        path: &Path,
        relative: &Path,
        fm: &mut FrontMatter,
    ) -> Option<DateTime<FixedOffset>> {
        let tz = self.config.site.timezone;
        let stem = relative
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if let Some((day, _)) = dates::jekyll_prefix(stem) {
            return dates::in_zone(day.and_hms_opt(0, 0, 0)?, tz);
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

fn fm_has_error(fm: &FrontMatter) -> bool {
    fm.problems.iter().any(Diagnostic::is_error)
}

/// Splits at `<!-- more -->`: the part before (the summary) and the whole body without the marker.
fn split_more(body: &str) -> (Option<&str>, &str) {
    for marker in ["<!-- more -->", "<!--more-->"] {
        if let Some(i) = body.find(marker) {
            return (Some(&body[..i]), body);
        }
    }
    (None, body)
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
