//! Content stage: a post built from its front matter and body — title,
//! slug, dates, permalink, the body's HTML within bounds, summary, reading
//! time — or only its [`Head`] when the run does not need the body.
//!
//! Imports: its siblings, `config`, `diagnostics`, `tag`.
//!

use std::path::Path;

use chrono::{DateTime, FixedOffset};
use serde_json::Map;
use url::Url;

use super::fields::{self, FrontMatter};
use super::library::Head;
use super::passes::ReadDepth;
use super::reader::{Kind, PostReader};
use super::{Cta, Post, body, hygiene, slug, xml_allowed};
use crate::config::{Author, Config};
use crate::diagnostics::Diagnostic;
use crate::tag::Tag;

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

/// What [`PostReader::build`] made of a post.
pub(super) enum BuiltPost {
    Whole(Box<Post>),
    HeadOnly(Head),
}

impl BuiltPost {
    /// The head of the post, however much of it was read.
    pub(super) fn into_head(self) -> Head {
        match self {
            BuiltPost::Whole(post) => Head {
                slug: post.slug,
                date: post.date,
                tags: post.tags,
                newsletter: post.newsletter,
            },
            BuiltPost::HeadOnly(head) => head,
        }
    }
}

/// The fields read from the front matter whether or not the body is read;
/// `None` where the field has an error (recorded in the front matter).
struct CommonFields {
    slug: Option<String>,
    date: Option<DateTime<FixedOffset>>,
    updated: Option<DateTime<FixedOffset>>,
    url: Option<Url>,
    summary: Option<String>,
    image: Option<Url>,
    authors: Vec<Author>,
    tags: Vec<Tag>,
    read_time: Option<u32>,
    cta: Option<Cta>,
    newsletter: bool,
}

/// The body as HTML and what was read of its text (empty when the body was
/// not read).
struct RenderedBody {
    html: Option<String>,
    text: body::BodyText,
}

impl PostReader<'_> {
    /// Builds the post from its front matter and body; `None` after an
    /// error (recorded in `fm`). Every field is read even after an error, so
    /// that one run reports every problem of the file.
    pub(super) fn build(
        &self,
        path: &Path,
        shown: &Path,
        kind: Kind,
        body_source: &str,
        depth: ReadDepth,
        fm: &mut FrontMatter,
    ) -> Option<BuiltPost> {
        let html = match depth {
            ReadDepth::Whole => body_html(kind, body_source, fm),
            ReadDepth::FrontMatter => None,
        };
        let reading = html.as_deref().map(body::read).unwrap_or_default();
        let title = match depth {
            ReadDepth::Whole => post_title(fm, &reading, html.is_some()),
            // Taken, so that it is not kept as an unknown key.
            ReadDepth::FrontMatter => fm
                .take_text(fields::TITLE)
                .map(|(_, t)| (body::collapse(&t), false)),
        };
        let common = self.common_fields(path, fm)?;
        match depth {
            ReadDepth::FrontMatter => head_only(self.config, common, title, fm),
            ReadDepth::Whole => whole_post(
                self.config,
                shown,
                common,
                RenderedBody {
                    html,
                    text: reading,
                },
                title,
                fm,
            ),
        }
    }

    /// Reads the [`CommonFields`], in the order their problems are reported.
    fn common_fields(&self, path: &Path, fm: &mut FrontMatter) -> Option<CommonFields> {
        let config = self.config;
        let tz = config.site.timezone;
        let relative = path.strip_prefix(self.dir).unwrap_or(path);
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
        let newsletter = fm.take_newsletter();
        Some(CommonFields {
            slug,
            date,
            updated,
            url,
            summary,
            image,
            authors,
            tags,
            read_time,
            cta,
            newsletter,
        })
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
}

/// The head of a post whose body is not read; its texts are checked as
/// [`scrub`] would check them in the whole post.
fn head_only(
    config: &Config,
    common: CommonFields,
    title: Option<(String, bool)>,
    fm: &mut FrontMatter,
) -> Option<BuiltPost> {
    let (slug, date, _) = (common.slug?, common.date?, common.url?);
    let summary = (common.summary).map(|s| body::cut(&s, config.content.summary_length));
    let texts = (title.iter().map(|(t, _)| t.as_str()))
        .chain(summary.as_deref())
        .chain(common.tags.iter().map(|t| t.name.as_str()))
        .chain(
            (common.authors.iter())
                .flat_map(|a| [Some(a.name.as_str()), a.email.as_deref()])
                .flatten(),
        )
        .chain(common.cta.as_ref().map(|c| c.text.as_str()));
    if let Some(removed) = hygiene::forbidden_in(texts) {
        fm.warn(None, escaped_removed(&removed));
    }
    Some(BuiltPost::HeadOnly(Head {
        slug,
        date,
        tags: common.tags,
        newsletter: common.newsletter,
    }))
}

/// The whole post: body rewritten against its permalink, summary, word
/// count and reading time.
fn whole_post(
    config: &Config,
    shown: &Path,
    common: CommonFields,
    rendered: RenderedBody,
    title: Option<(String, bool)>,
    fm: &mut FrontMatter,
) -> Option<BuiltPost> {
    let RenderedBody {
        html,
        text: reading,
    } = rendered;
    let (html, (title, drop_h1)) = (html?, title?);
    let (slug, date, url) = (common.slug?, common.date?, common.url?);
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
    let summary = (common.summary)
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
        updated: common.updated,
        summary: body::cut(&summary, config.content.summary_length),
        body_html: body_html.trim().to_string(),
        tags: common.tags,
        authors: common.authors,
        image: common.image,
        cta: common.cta,
        reading_time: (common.read_time).unwrap_or_else(|| words.div_ceil(wpm).max(1) as u32),
        words,
        text: text.clone(),
        newsletter: common.newsletter,
        extra: Map::new(),
    };
    if let Some(removed) = scrub(&mut post) {
        fm.warn(None, escaped_removed(&removed));
    }
    Some(BuiltPost::Whole(Box::new(post)))
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
    reading: &body::BodyText,
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
