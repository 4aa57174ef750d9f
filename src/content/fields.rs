//! Content stage: front-matter fields, under whatever alias a generator
//! used, read into typed values with located errors.
//!
//! Imports: its siblings, `config` (for `Author`), `diagnostics`, `tag`.
//!
//! Each `take_*` reads the first alias present and marks every alias as
//! used; whatever is left at the end becomes the post's `extra` map.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, FixedOffset};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use url::Url;

use super::frontmatter::Places;
use super::{Cta, body, dates};
use crate::config::Author;
use crate::diagnostics::Diagnostic;
use crate::tag::{Tag, tag_key};

pub const TITLE: &[&str] = &["title"];
pub const SLUG: &[&str] = &["slug"];
pub const DATE: &[&str] = &[
    "date",
    "publish_date",
    "pubDate",
    "published",
    "published_at",
    "created_date",
];
pub const UPDATED: &[&str] = &["updated", "lastmod", "modified", "last_modified_at"];
pub const SUMMARY: &[&str] = &["summary", "description", "excerpt", "subtitle"];
pub const IMAGE: &[&str] = &[
    "image",
    "heroImage",
    "hero_image",
    "cover",
    "featured_image",
    "thumbnail",
];
pub const AUTHORS: &[&str] = &["authors", "author"];
pub const TAGS: &[&str] = &["tags", "categories", "category", "keywords", "taxonomies"];
pub const READ_TIME: &[&str] = &["read_time", "readTime", "reading_time"];
pub const CTA: &[&str] = &["cta"];
pub const DRAFT: &[&str] = &["draft"];
pub const NEWSLETTER: &[&str] = &["newsletter"];

/// Every key gazette reads; the rest go to `extra`.
pub fn known_keys() -> impl Iterator<Item = &'static str> {
    [
        TITLE, SLUG, DATE, UPDATED, SUMMARY, IMAGE, AUTHORS, TAGS, READ_TIME, CTA, DRAFT,
        NEWSLETTER,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// A post's front matter while it is being read.
pub struct FrontMatter<'a> {
    fields: Map<String, Value>,
    used: BTreeSet<String>,
    places: &'a Places,
    shown: &'a Path,
    pub problems: Vec<Diagnostic>,
}

impl<'a> FrontMatter<'a> {
    pub fn new(fields: Map<String, Value>, places: &'a Places, shown: &'a Path) -> Self {
        FrontMatter {
            fields,
            used: BTreeSet::new(),
            places,
            shown,
            problems: Vec::new(),
        }
    }

    /// An error at the value of `key` (or the start of the file).
    pub fn error(&mut self, key: &str, message: String) {
        let at = self.places.value(key).or(Some((1, 1)));
        let d = Diagnostic::error(self.shown, message).at_opt(at);
        self.problems.push(d);
    }

    /// An error about the file as a whole.
    pub fn error_in_file(&mut self, message: String) {
        self.problems.push(Diagnostic::error(self.shown, message));
    }

    /// A warning at the value of `key` (or the start of the file).
    pub fn warn(&mut self, key: Option<&str>, message: String) {
        let at = key.and_then(|k| self.places.value(k)).or(Some((1, 1)));
        self.problems
            .push(Diagnostic::warning(self.shown, message).at_opt(at));
    }

    /// The first alias present with a value (not null, not blank text).
    /// It and the blank aliases before it are marked as used; the other
    /// aliases stay in `extra`.
    fn first(&mut self, aliases: &[&'static str]) -> Option<(&'static str, Value)> {
        for alias in aliases {
            let Some(value) = self.fields.get(*alias) else {
                continue;
            };
            self.used.insert((*alias).to_string());
            if !is_blank(value) {
                return Some((*alias, value.clone()));
            }
        }
        None
    }

    /// Text under one of `aliases`; numbers are accepted as text.
    pub fn take_text(&mut self, aliases: &[&'static str]) -> Option<(&'static str, String)> {
        let (key, value) = self.first(aliases)?;
        match value {
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some((key, s)),
            Value::Number(n) => Some((key, n.to_string())),
            other => {
                self.error(key, format!("'{key}' must be text, got {}", kind(&other)));
                None
            }
        }
    }

    /// `draft: true` or `published: false`.
    pub fn take_draft(&mut self) -> Option<&'static str> {
        let mut reason = None;
        if let Some((key, value)) = self.first(DRAFT) {
            match as_bool(&value) {
                Some(true) => reason = Some("draft: true"),
                Some(false) => {}
                None => self.error(
                    key,
                    format!("'draft' must be true or false, got {}", kind(&value)),
                ),
            }
        }
        if let Some(published) = self.fields.get("published").and_then(as_bool) {
            self.used.insert("published".into());
            if !published {
                reason = reason.or(Some("published: false"));
            }
        }
        reason
    }

    /// `newsletter: false`: the post is in the feeds but never in an
    /// email. True when absent; an error when not true or false.
    pub fn take_newsletter(&mut self) -> bool {
        let Some((key, value)) = self.first(NEWSLETTER) else {
            return true;
        };
        as_bool(&value).unwrap_or_else(|| {
            self.error(
                key,
                format!("'{key}' must be true or false, got {}", kind(&value)),
            );
            true
        })
    }

    /// A date under one of `aliases`, read in `tz`.
    pub fn take_date(
        &mut self,
        aliases: &[&'static str],
        tz: Tz,
    ) -> Option<(&'static str, DateTime<FixedOffset>)> {
        // `published: false` is a flag, not a date.
        let aliases: Vec<&'static str> = aliases
            .iter()
            .copied()
            .filter(|a| !(*a == "published" && self.fields.get(*a).and_then(as_bool).is_some()))
            .collect();
        let (key, text) = self.take_text(&aliases)?;
        match dates::parse(&text, tz) {
            Ok(date) => Some((key, date)),
            Err(dates::DateError::Unreadable) => {
                self.error(
                    key,
                    format!(
                        "cannot read '{key}' value '{text}' as a date; expected {}",
                        dates::EXPECTED
                    ),
                );
                None
            }
            Err(dates::DateError::OutOfRange) => {
                let (first, last) = (dates::YEARS.start(), dates::YEARS.end());
                self.error(
                    key,
                    format!("'{key}' value '{text}' is outside the years {first} to {last}"),
                );
                None
            }
        }
    }

    /// The summary under one of its aliases, as plain text.
    pub fn take_summary(&mut self) -> Option<String> {
        self.take_text(SUMMARY)
            .map(|(_, text)| body::collapse(&text))
    }

    /// An image URL (text, or a map with `src` or `url`), resolved against `base`.
    pub fn take_image(&mut self, base: &Url) -> Option<Url> {
        let (key, value) = self.first(IMAGE)?;
        let text = match &value {
            Value::String(s) => s.clone(),
            Value::Object(map) => match map.get("src").or_else(|| map.get("url")) {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    self.error(
                        key,
                        format!("'{key}' must be a URL, or a map with 'src' or 'url'"),
                    );
                    return None;
                }
            },
            other => {
                self.error(key, format!("'{key}' must be a URL, got {}", kind(other)));
                return None;
            }
        };
        self.url(key, &text, base, false)
    }

    /// A link from front matter: absolute http(s) (or `mailto:` where
    /// `mailto` allows it), or relative to the post; anything else
    /// (`javascript:`, `data:`…) is an error, since it ends up in feeds and
    /// emails.
    fn url(&mut self, key: &str, text: &str, base: &Url, mailto: bool) -> Option<Url> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        match Url::parse(text).or_else(|_| base.join(text)) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(url) if mailto && url.scheme() == "mailto" => Some(url),
            Ok(url) => {
                let allowed = if mailto {
                    "http(s) or mailto:"
                } else {
                    "http(s)"
                };
                self.error(
                    key,
                    format!(
                        "'{key}' must be an {allowed} URL or a path, not a {}: URL",
                        url.scheme()
                    ),
                );
                None
            }
            Err(err) => {
                self.error(
                    key,
                    format!("'{key}' is not a usable URL ('{text}': {err})"),
                );
                None
            }
        }
    }

    /// Authors from `authors` or `author`: a name, a list, or `{name, email}`;
    /// `None` when none is named.
    pub fn take_authors(&mut self) -> Option<Vec<Author>> {
        let (key, value) = self.first(AUTHORS)?;
        let items = match value {
            Value::Array(items) => items,
            one => vec![one],
        };
        let mut authors = Vec::new();
        for item in items {
            match item {
                Value::String(name) if !name.trim().is_empty() => authors.push(Author {
                    name: name.trim().to_string(),
                    email: None,
                }),
                Value::Object(map) => match map.get("name") {
                    Some(Value::String(name)) => authors.push(Author {
                        name: name.trim().to_string(),
                        email: map
                            .get("email")
                            .and_then(Value::as_str)
                            .map(|e| e.trim().to_string()),
                    }),
                    _ => self.error(key, format!("each of '{key}' needs a 'name'")),
                },
                Value::String(_) | Value::Null => {}
                other => self.error(
                    key,
                    format!(
                        "'{key}' must be a name, a list of names or {{name, email}}, got {}",
                        kind(&other)
                    ),
                ),
            }
        }
        (!authors.is_empty()).then_some(authors)
    }

    /// Tags from every tag-like key, deduplicated by their folded key.
    pub fn take_tags(&mut self) -> Vec<Tag> {
        let mut tags: Vec<Tag> = Vec::new();
        for alias in TAGS {
            let Some(value) = self.fields.get(*alias).cloned() else {
                continue;
            };
            self.used.insert((*alias).to_string());
            let value = if *alias == "taxonomies" {
                match value.get("tags") {
                    Some(tags) => tags.clone(),
                    None => continue,
                }
            } else {
                value
            };
            let names: Vec<String> = match value {
                Value::String(text) => text.split(',').map(str::to_string).collect(),
                Value::Array(items) => items
                    .into_iter()
                    .filter_map(|item| match item {
                        Value::String(s) => Some(s),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        _ => None,
                    })
                    .collect(),
                Value::Null => Vec::new(),
                other => {
                    self.error(
                        alias,
                        format!(
                            "'{alias}' must be a list or comma-separated text, got {}",
                            kind(&other)
                        ),
                    );
                    Vec::new()
                }
            };
            for name in names {
                let name = body::collapse(&name);
                let key = tag_key(&name);
                if key.is_empty() {
                    if !name.is_empty() {
                        self.warn(
                            Some(alias),
                            format!("tag '{name}' has no letters or digits; ignored"),
                        );
                    }
                    continue;
                }
                if !tags.iter().any(|t| t.key == key) {
                    tags.push(Tag { name, key });
                }
            }
        }
        tags
    }

    /// Minutes from `read_time`/`readTime` ("8 mins", "8 min read", 8).
    pub fn take_read_time(&mut self) -> Option<u32> {
        let (key, text) = self.take_text(READ_TIME)?;
        let digits: String = text
            .trim()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        match digits.parse::<u32>() {
            Ok(minutes) if minutes > 0 => Some(minutes),
            _ => {
                self.warn(Some(key), format!("cannot read '{key}' value '{text}' as minutes; computing it from the word count"));
                None
            }
        }
    }

    /// The post's call to action: text, or `{text, url}`.
    pub fn take_cta(&mut self, base: &Url) -> Option<Cta> {
        let (key, value) = self.first(CTA)?;
        match value {
            Value::String(text) if !text.trim().is_empty() => Some(Cta {
                text: body::collapse(&text),
                url: None,
            }),
            Value::Object(map) => {
                let Some(Value::String(text)) = map.get("text") else {
                    self.error(key, "'cta' needs a 'text'".into());
                    return None;
                };
                let url = match map.get("url") {
                    Some(Value::String(url)) => self.url(key, url, base, true),
                    _ => None,
                };
                Some(Cta {
                    text: body::collapse(text),
                    url,
                })
            }
            Value::String(_) => None,
            other => {
                self.error(
                    key,
                    format!("'cta' must be text or {{text, url}}, got {}", kind(&other)),
                );
                None
            }
        }
    }

    /// The unread keys, with warnings for those that look like typos.
    pub fn into_extra(mut self) -> (Map<String, Value>, Vec<Diagnostic>) {
        let mut extra = Map::new();
        let fields = std::mem::take(&mut self.fields);
        for (key, value) in fields {
            if self.used.contains(&key) {
                continue;
            }
            // Unread aliases (a second summary key, say) stay readable in extra.
            let known = known_keys().any(|k| k == key);
            if let Some(known) = typo_of(&key).filter(|_| !known) {
                self.warn(
                    Some(&key),
                    format!(
                        "unknown front-matter key '{key}' (did you mean '{known}'?); kept in extra"
                    ),
                );
            }
            extra.insert(key, value);
        }
        (extra, self.problems)
    }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The known key `key` is probably a misspelling of.
fn typo_of(key: &str) -> Option<&'static str> {
    known_keys()
        .filter(|known| *known != key)
        .map(|known| {
            (
                strsim::damerau_levenshtein(&key.to_lowercase(), &known.to_lowercase()),
                known,
            )
        })
        .filter(|(distance, known)| *distance <= if known.len() > 5 { 2 } else { 1 })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_spotted_but_extensions_are_not() {
        assert_eq!(typo_of("titel"), Some("title"));
        assert_eq!(typo_of("tag"), Some("tags"));
        assert_eq!(typo_of("descripton"), Some("description"));
        assert_eq!(typo_of("image_alt"), None);
        assert_eq!(typo_of("layout"), None);
        assert_eq!(typo_of("weight"), None);
    }
}
