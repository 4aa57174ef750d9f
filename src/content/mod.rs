//! Content stage: `content/` → [`Library`] of published [`Post`]s.
//!
//! May import `config` (the stage before it) and what lies below the stages
//! (`clock`, `diagnostics`, `tag`, `yaml`); never feed, audience, select or a
//! later stage, which import content.
//!
//! Walks the folder, reads each post (size limit, UTF-8, text hygiene),
//! splits its front matter, maps the aliases of many generators onto one
//! [`Post`], renders the body and resolves its URLs. Forgiving about
//! schema, strict about correctness: every problem of every file is
//! collected with its place, and drafts and scheduled posts are listed as
//! skipped rather than dropped silently.
//!
//! The files, in the order a run goes through them: [`load`] walks the
//! folder (`load.rs`), `passes.rs` decides how much of each file to read
//! ([`Want`]), `reader.rs` reads one file, `build.rs` turns its front
//! matter and body into a post (`undated.rs` when it states no date), and
//! `library.rs` gathers the outcomes into the [`Library`].

mod body;
mod build;
mod dates;
mod fields;
mod frontmatter;
mod hygiene;
mod library;
mod load;
mod passes;
mod reader;
mod slug;
mod undated;

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};
use url::Url;

use crate::config::Author;
use crate::tag::Tag;
pub use hygiene::xml_allowed;
pub use library::{Head, Library, Loaded};
pub use load::load;
pub use passes::Want;

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
    /// False for `newsletter: false`: in the feeds, never in an email.
    /// Posts frozen before the field existed read as true.
    #[serde(default = "in_newsletter")]
    pub newsletter: bool,
    /// Front-matter keys gazette does not read itself, for templates.
    pub extra: Map<String, Value>,
}

/// Whether a post frozen without the `newsletter` field goes in email.
fn in_newsletter() -> bool {
    true
}

/// A post's own call to action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cta {
    pub text: String,
    pub url: Option<Url>,
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
                key: crate::tag::tag_key(name),
            })
            .collect(),
        authors: Vec::new(),
        image: None,
        cta: None,
        reading_time: 1,
        words: 0,
        text: String::new(),
        newsletter: true,
        extra: Map::new(),
    }
}
