//! Content stage: reading one post file — its bytes within the size
//! limit, as UTF-8, cleaned, split at its front-matter fences — and telling
//! whether it is published, skipped or failed.
//!
//! Imports: its siblings, `config`, `diagnostics`, `yaml`.

use std::io::Read;
use std::path::Path;

use chrono::{DateTime, FixedOffset};

use super::build::BuiltPost;
use super::fields::FrontMatter;
use super::library::Head;
use super::passes::ReadDepth;
use super::undated::GitDates;
use super::{Post, frontmatter, hygiene};
use crate::config::Config;
use crate::diagnostics::{Diagnostic, display_path};
use crate::yaml::position_of;

/// What reading one file gave.
pub(super) enum FileOutcome {
    /// A published post, read whole.
    Whole(Box<Post>),
    /// A published post whose body was not read.
    HeadOnly(Head),
    /// A draft or a scheduled post, and why it is skipped.
    Skipped(Head, String),
    /// The file has an error (in its problems).
    Failed,
}

/// Reads post files of one content folder at one moment.
pub(super) struct PostReader<'a> {
    pub config: &'a Config,
    /// The project directory, for the paths shown in messages.
    pub root: &'a Path,
    /// The content folder, which slugs from file names are relative to.
    pub dir: &'a Path,
    /// Posts dated after this are scheduled, not published.
    pub now: DateTime<FixedOffset>,
    pub git: GitDates,
}

impl PostReader<'_> {
    /// Reads the file at `path` to `depth`; its problems go to `problems`.
    pub(super) fn read(
        &self,
        path: &Path,
        depth: ReadDepth,
        problems: &mut Vec<Diagnostic>,
    ) -> FileOutcome {
        let shown = display_path(self.root, path);
        let Some(text) = self.read_text(path, &shown, problems) else {
            return FileOutcome::Failed;
        };
        let (text, repairs) = hygiene::clean(&text);
        for repair in repairs {
            problems.push(Diagnostic::warning(&shown, repair.message).at(repair.at.0, repair.at.1));
        }
        let split = match frontmatter::split(&text, &shown) {
            Ok(split) => split,
            Err(err) => {
                problems.push(err);
                return FileOutcome::Failed;
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
            return FileOutcome::Failed;
        };
        let date = match &built {
            BuiltPost::Whole(post) => post.date,
            BuiltPost::HeadOnly(head) => head.date,
        };
        let skipped = match draft {
            Some(reason) => Some(format!("draft ({reason})")),
            None => (date > self.now).then(|| format!("scheduled for {}", date.to_rfc3339())),
        };
        match (built, skipped) {
            (built, Some(reason)) => FileOutcome::Skipped(built.into_head(), reason),
            (BuiltPost::Whole(mut post), None) => {
                post.extra = extra;
                FileOutcome::Whole(post)
            }
            (BuiltPost::HeadOnly(head), None) => FileOutcome::HeadOnly(head),
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
}

/// The two kinds of post source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Markdown,
    Html,
}

/// The kind of post `path` is by its extension; `None`: not a post.
pub(super) fn kind_of(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "md" | "markdown" => Some(Kind::Markdown),
        "html" | "htm" => Some(Kind::Html),
        _ => None,
    }
}
