//! Config stage: the raw serde shape of `gazette.yaml` and its checking.
//!
//! Imports: its siblings and `yaml` (no stage).
//!
//! [`deserialize_all`] reports every key or type problem in one run by
//! removing each offending key and trying again; [`RawConfig::check`] then
//! turns the raw values into the domain types of [`super::Config`].

use std::path::PathBuf;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::Deserialize;
use serde_norway::Value;
use serde_path_to_error::Segment;
use url::Url;

use super::audience::{RawAudience, RawDigest, RawSegment, check_segments};
use super::delivery::RawDelivery;
use super::email::{RawEmail, RawUnsubscribe};
use super::{Author, Config, ContentSettings, FeedContent, FeedSettings, Site};

/// Receives `(key path, message)` for each problem.
pub type Sink<'a> = dyn FnMut(&str, String) + 'a;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    site: RawSite,
    #[serde(default)]
    content: RawContent,
    #[serde(default)]
    feeds: RawFeeds,
    #[serde(default)]
    audience: RawAudience,
    #[serde(default)]
    digest: RawDigest,
    #[serde(default)]
    segments: Vec<RawSegment>,
    #[serde(default)]
    email: RawEmail,
    #[serde(default)]
    unsubscribe: RawUnsubscribe,
    #[serde(default)]
    delivery: RawDelivery,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSite {
    /// Required; checked in [`RawConfig::check`] so that its absence is
    /// reported along with every other problem.
    title: Option<String>,
    base_url: Option<String>,
    description: String,
    author: Option<RawAuthor>,
    language: String,
    timezone: String,
}

/// A name, or `{name, email}`.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a name, or a map with 'name' and 'email'")]
enum RawAuthor {
    Name(String),
    Full(FullAuthor),
}

/// `{name, email}`; other keys are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullAuthor {
    name: String,
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawContent {
    dir: PathBuf,
    permalink: String,
    summary_length: usize,
    max_file_size: RawSize,
    words_per_minute: u32,
}

/// Bytes as a number, or text such as `10 MiB`.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a number of bytes or a size such as '10 MiB'")]
enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFeeds {
    out: PathBuf,
    limit: usize,
    content: RawFeedContent,
    rss: bool,
    atom: bool,
    json: bool,
    tags: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawFeedContent {
    Full,
    Summary,
}

impl Default for RawSite {
    fn default() -> Self {
        RawSite {
            title: None,
            base_url: None,
            description: String::new(),
            author: None,
            language: "en".into(),
            timezone: "UTC".into(),
        }
    }
}

impl Default for RawContent {
    fn default() -> Self {
        RawContent {
            dir: "content".into(),
            permalink: "{base_url}/{slug}/".into(),
            summary_length: 300,
            max_file_size: RawSize::Bytes(10 * 1024 * 1024),
            words_per_minute: 200,
        }
    }
}

impl Default for RawFeeds {
    fn default() -> Self {
        RawFeeds {
            out: "public".into(),
            limit: 20,
            content: RawFeedContent::Full,
            rss: true,
            atom: true,
            json: true,
            tags: false,
        }
    }
}

/// Deserializes `value`, reporting every unknown key and bad value.
///
/// After each error the offending key is removed and the rest tried again,
/// so one run lists all of them. Returns what is left once it deserializes,
/// so that its values can be checked too.
pub fn deserialize_all(mut value: Value, report: &mut Sink) -> Option<RawConfig> {
    remove_dotted_keys(&mut value, "", report);
    // Each round removes one key, so the number of rounds is bounded by the keys.
    for _ in 0..1000 {
        match serde_path_to_error::deserialize::<_, RawConfig>(value.clone()) {
            Ok(raw) => return Some(raw),
            Err(err) => {
                let mut path = path_text(err.path().iter());
                let inner = err.into_inner().to_string();
                let message = describe(&mut path, &inner);
                report(&path, message);
                if !remove(&mut value, &path) {
                    return None;
                }
            }
        }
    }
    None
}

/// Reports and removes keys written with a dot (`feeds.limit: 5`): paths
/// are dotted, so such a key could not be named or removed later.
fn remove_dotted_keys(value: &mut Value, path: &str, report: &mut Sink) {
    match value {
        Value::Mapping(map) => {
            map.retain(|key, _| {
                let Some(key) = key.as_str().filter(|k| k.contains(['.', '['])) else {
                    return true;
                };
                let (parent, child) = key.split_once(['.', '[']).unwrap_or((key, ""));
                report(
                    &crate::yaml::join(path, key),
                    format!(
                        "key '{key}' holds a '.' or '['; nest it instead ('{parent}:' with '{child}' indented below it)"
                    ),
                );
                false
            });
            for (key, child) in map.iter_mut() {
                let name = key.as_str().unwrap_or_default();
                remove_dotted_keys(child, &crate::yaml::join(path, name), report);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                remove_dotted_keys(item, &format!("{path}[{index}]"), report);
            }
        }
        _ => {}
    }
}

/// `feeds.limit`, `segments[0].id`.
fn path_text<'a>(segments: impl Iterator<Item = &'a Segment>) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => path += &format!("[{index}]"),
            Segment::Map { key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path += key;
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    path
}

/// Rewrites serde's message in the config's own words; may extend `path`
/// with the key the message names.
fn describe(path: &mut String, inner: &str) -> String {
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let (key, rest) = rest.split_once('`').unwrap_or((rest, ""));
        if !path.ends_with(key) {
            *path = crate::yaml::join(path, key);
        }
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let best = expected
            .iter()
            .map(|known| (strsim::jaro_winkler(key, known), *known))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        return match best {
            Some((_, known)) => format!("unknown key '{path}' (did you mean '{known}'?)"),
            None if expected.is_empty() => format!("unknown key '{path}'"),
            None => format!(
                "unknown key '{path}'; expected one of: {}",
                expected.join(", ")
            ),
        };
    }
    if let Some(rest) = inner.strip_prefix("unknown variant `") {
        let (found, rest) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        return format!(
            "'{path}' cannot be '{found}'; expected one of: {}",
            expected.join(", ")
        );
    }
    let inner = inner.split(" at line ").next().unwrap_or(inner);
    format!("{inner} (key '{path}')")
}

/// Removes the key at `path` from `value`; false when it is not there.
fn remove(value: &mut Value, path: &str) -> bool {
    if path.is_empty() {
        return false;
    }
    let (parent, last) = match path.rfind(['.', '[']) {
        Some(i) => (&path[..i], &path[i..]),
        None => ("", path),
    };
    let Some(parent_value) = lookup(value, parent) else {
        return false;
    };
    let last = last.trim_start_matches('.');
    match parent_value {
        Value::Mapping(map) => map.remove(last).is_some(),
        Value::Sequence(items) => {
            let index = last.trim_matches(['[', ']']).parse::<usize>().ok();
            match index {
                Some(i) if i < items.len() => {
                    items.remove(i);
                    true
                }
                _ => false,
            }
        }
        _ => !parent.is_empty() && remove(value, parent),
    }
}

fn lookup<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut current = value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            current = current.as_mapping_mut()?.get_mut(key)?;
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            current = current
                .as_sequence_mut()?
                .get_mut(index.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

impl RawConfig {
    /// Validates values and builds the domain config; reports each bad value.
    pub fn check(self, report: &mut Sink) -> Option<Config> {
        let mut ok = true;
        let mut fail = |path: &str, message: String| {
            ok = false;
            report(path, message);
        };
        let (base_url, site) = self.site.check(&mut fail);
        let content = self.content.check(&mut fail);
        let feeds = self.feeds.check(&mut fail);
        let audience = self.audience.check(&mut fail);
        let digest = self.digest.check(&mut fail);
        let segments = check_segments(self.segments, &digest, base_url.as_ref(), &mut fail);
        let email = self.email.check(&mut fail);
        let unsubscribe = self.unsubscribe.check(&mut fail);
        let delivery = self.delivery.check(&mut fail);

        if !ok {
            return None;
        }
        Some(Config {
            site: site?,
            content: content?,
            feeds,
            audience,
            digest,
            segments,
            email,
            unsubscribe,
            delivery,
        })
    }
}

impl RawSite {
    /// The checked `site:`, and its base URL on its own: segments resolve
    /// their links against it even when another site key is wrong.
    fn check(self, fail: &mut impl FnMut(&str, String)) -> (Option<Url>, Option<Site>) {
        let base_url = match &self.base_url {
            None => {
                fail(
                    "site.base_url",
                    "missing key 'site.base_url' (the address the site is published at)".into(),
                );
                None
            }
            Some(text) => match Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                _ => {
                    fail(
                        "site.base_url",
                        format!("base_url must be an absolute http or https URL, got '{text}'"),
                    );
                    None
                }
            },
        };
        let title = match self.title {
            Some(title) if title.chars().any(char::is_control) => {
                fail(
                    "site.title",
                    "title must not hold control characters".into(),
                );
                None
            }
            Some(title) if !title.trim().is_empty() => Some(title),
            Some(_) => {
                fail("site.title", "title must not be empty".into());
                None
            }
            None => {
                fail("site.title", "missing key 'site.title'".into());
                None
            }
        };
        let timezone = match Tz::from_str(self.timezone.trim()) {
            Ok(tz) => Some(tz),
            Err(_) => {
                fail(
                    "site.timezone",
                    format!(
                        "unknown timezone '{}'; use an IANA name such as 'Europe/Berlin' or 'UTC'",
                        self.timezone
                    ),
                );
                None
            }
        };
        if !is_language_tag(&self.language) {
            fail(
                "site.language",
                format!(
                    "language must be a tag such as 'en' or 'pt-BR', got '{}'",
                    self.language
                ),
            );
        }
        let author = match self.author {
            None => None,
            Some(RawAuthor::Name(name)) => Some(Author { name, email: None }),
            Some(RawAuthor::Full(FullAuthor { name, email })) => Some(Author { name, email }),
        };
        if let Some(Author {
            email: Some(email), ..
        }) = &author
            && !looks_like_email(email)
        {
            fail(
                "site.author.email",
                format!("'{email}' is not an email address"),
            );
        }
        let site = match (title, base_url.clone(), timezone) {
            (Some(title), Some(base_url), Some(timezone)) => Some(Site {
                title,
                base_url,
                description: self.description,
                author,
                language: self.language,
                timezone,
            }),
            _ => None,
        };
        (base_url, site)
    }
}

impl RawContent {
    fn check(self, fail: &mut impl FnMut(&str, String)) -> Option<ContentSettings> {
        check_permalink(&self.permalink, fail);
        if self.summary_length < 20 {
            fail(
                "content.summary_length",
                "summary_length must be at least 20 characters".into(),
            );
        }
        if self.words_per_minute == 0 {
            fail(
                "content.words_per_minute",
                "words_per_minute must be more than 0".into(),
            );
        }
        let max_file_size = match self.max_file_size {
            RawSize::Bytes(bytes) => Some(bytes),
            RawSize::Text(text) => match parse_size(&text) {
                Some(bytes) => Some(bytes),
                None => {
                    fail(
                        "content.max_file_size",
                        format!(
                            "cannot read size '{text}'; write bytes (1048576) or a number with \
                             B, KB, MB, GB, KiB, MiB or GiB"
                        ),
                    );
                    None
                }
            },
        };
        Some(ContentSettings {
            dir: self.dir,
            permalink: self.permalink,
            summary_length: self.summary_length,
            max_file_size: max_file_size?,
            words_per_minute: self.words_per_minute,
        })
    }
}

impl RawFeeds {
    fn check(self, fail: &mut impl FnMut(&str, String)) -> FeedSettings {
        if self.limit == 0 {
            fail("feeds.limit", "limit must be at least 1".into());
        }
        FeedSettings {
            out: self.out,
            limit: self.limit,
            content: match self.content {
                RawFeedContent::Full => FeedContent::Full,
                RawFeedContent::Summary => FeedContent::Summary,
            },
            rss: self.rss,
            atom: self.atom,
            json: self.json,
            tags: self.tags,
        }
    }
}

/// The placeholders a permalink pattern may use.
pub const PERMALINK_PLACEHOLDERS: [&str; 5] = ["base_url", "slug", "year", "month", "day"];

fn check_permalink(pattern: &str, fail: &mut impl FnMut(&str, String)) {
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            fail(
                "content.permalink",
                "permalink has a '{' without a closing '}'".into(),
            );
            return;
        };
        let name = &rest[open + 1..open + close];
        if !PERMALINK_PLACEHOLDERS.contains(&name) {
            fail(
                "content.permalink",
                format!(
                    "unknown placeholder '{{{name}}}' in permalink; use {}",
                    PERMALINK_PLACEHOLDERS
                        .map(|p| format!("{{{p}}}"))
                        .join(", ")
                ),
            );
            return;
        }
        rest = &rest[open + close + 1..];
    }
    if !pattern.contains("{slug}") {
        fail("content.permalink", "permalink must contain {slug}".into());
    } else if !pattern.starts_with("{base_url}") {
        fail(
            "content.permalink",
            "permalink must start with {base_url} so that links are absolute".into(),
        );
    }
}

/// `10 MiB`, `512KB`, `2000000`.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000 * 1000,
        "gb" | "g" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    let bytes = number * factor as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// BCP 47 in its common shape: `en`, `pt-BR`, `zh-Hant-TW`.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first = parts.next().unwrap_or("");
    (2..=3).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// A cheap shape check: `local@domain.tld`, no spaces or angle brackets.
pub fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_common_units() {
        assert_eq!(parse_size("10 MiB"), Some(10 << 20));
        assert_eq!(parse_size("512KB"), Some(512_000));
        assert_eq!(parse_size("2000"), Some(2000));
        assert_eq!(parse_size("1.5 kib"), Some(1536));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(parse_size("0"), None);
    }

    #[test]
    fn language_tags() {
        assert!(is_language_tag("en"));
        assert!(is_language_tag("pt-BR"));
        assert!(!is_language_tag("english please"));
    }

    #[test]
    fn email_shapes() {
        assert!(looks_like_email("a@example.com"));
        assert!(!looks_like_email("a@localhost"));
        assert!(!looks_like_email("a b@example.com"));
    }
}
