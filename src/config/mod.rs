//! Config stage: `gazette.yaml` → a checked [`Config`].
//!
//! May import only what lies below the stages (`diagnostics`, `yaml`, `tag`):
//! config is read first, so it imports no stage; content, feed and every
//! later stage import it.
//!
//! Keys are strict (an unknown key is an error that names its path and line,
//! with a suggestion when it looks like a typo); values are validated after
//! parsing (absolute base URL, IANA timezone, permalink pattern, sizes).
//! Every problem of the file is reported in one run.

mod audience;
mod delivery;
mod email;
mod raw;

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde_norway::Value;
use url::Url;

use crate::diagnostics::Diagnostic;
use crate::yaml::{Locator, MAX_YAML_NESTING, position_of, yaml_error, yaml_too_deep};
pub use audience::{
    AttributeTest, AudienceSettings, DEFAULT_SEGMENT, DigestSettings, Rule, Segment, SegmentCta,
    Variant, Weights,
};
pub use delivery::DeliverySettings;
pub use email::{EmailSettings, UnsubscribeSettings, Utm};

/// The default name of the config file inside a project.
pub const FILE_NAME: &str = "gazette.yaml";

/// The whole checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub site: Site,
    pub content: ContentSettings,
    pub feeds: FeedSettings,
    pub audience: AudienceSettings,
    pub digest: DigestSettings,
    /// In the order they are tried; the `default` segment is always last.
    pub segments: Vec<Segment>,
    pub email: EmailSettings,
    pub unsubscribe: UnsubscribeSettings,
    pub delivery: DeliverySettings,
}

/// `site:` — who publishes and where.
#[derive(Debug, Clone)]
pub struct Site {
    pub title: String,
    /// Absolute http(s) URL; the site root, without a trailing slash in output.
    pub base_url: Url,
    pub description: String,
    /// The default author of posts that name none.
    pub author: Option<Author>,
    pub language: String,
    pub timezone: Tz,
}

impl Site {
    /// The site's host, as Message-IDs and the list name use it
    /// (`localhost` for a base URL without one).
    pub fn host(&self) -> &str {
        self.base_url.host_str().unwrap_or("localhost")
    }
}

/// A person credited for a post or a site.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Author {
    pub name: String,
    pub email: Option<String>,
}

/// `content:` — where posts are and how they become pages.
#[derive(Debug, Clone)]
pub struct ContentSettings {
    /// The content folder, relative to the project directory.
    pub dir: PathBuf,
    /// Permalink pattern with `{base_url}`, `{slug}`, `{year}`, `{month}`, `{day}`.
    pub permalink: String,
    /// Longest summary, in characters; longer ones are cut at a word boundary.
    pub summary_length: usize,
    /// Largest post file read, in bytes.
    pub max_file_size: u64,
    /// Reading speed used when a post does not state its reading time.
    pub words_per_minute: u32,
}

/// `feeds:` — which feeds `gazette feeds` writes.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// Output folder, relative to the project directory.
    pub out: PathBuf,
    /// Most posts per feed.
    pub limit: usize,
    pub content: FeedContent,
    pub rss: bool,
    pub atom: bool,
    pub json: bool,
    /// Also write one feed set per tag under `tags/<tag>/`.
    pub tags: bool,
}

/// What a feed entry carries as its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedContent {
    /// The whole post as HTML.
    Full,
    /// Only the summary; readers follow the link for the rest.
    Summary,
}

impl Config {
    /// Reads and checks the config at `path`; `shown` is the path used in messages.
    ///
    /// Returns the config only when there was no error; the diagnostics hold
    /// every problem found (errors and warnings).
    pub fn load(path: &Path, shown: &Path) -> (Option<Config>, Vec<Diagnostic>) {
        let text = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(err) => {
                    let d = Diagnostic::error(shown, "not valid UTF-8; save the file as UTF-8");
                    let at = position_of(&err.as_bytes()[..err.utf8_error().valid_up_to()]);
                    return (None, vec![d.at(at.0, at.1)]);
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let message = "no config file here; run `gazette init` to create a project, \
                               or point to one with -C DIR or --config FILE";
                return (None, vec![Diagnostic::error(shown, message)]);
            }
            Err(err) => {
                return (
                    None,
                    vec![Diagnostic::error(shown, format!("cannot read: {err}"))],
                );
            }
        };
        Config::parse(&text, shown)
    }

    /// Checks config text; see [`Config::load`].
    pub fn parse(text: &str, shown: &Path) -> (Option<Config>, Vec<Diagnostic>) {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if let Some((line, col)) = yaml_too_deep(text) {
            let message = format!("lists or maps nested more than {MAX_YAML_NESTING} deep");
            return (None, vec![Diagnostic::error(shown, message).at(line, col)]);
        }
        let value: Value = match serde_norway::from_str(text) {
            Ok(Value::Null) => Value::Mapping(Default::default()),
            Ok(value) => value,
            Err(err) => return (None, vec![yaml_error(&err, text, shown, 0, "")]),
        };
        let locator = Locator::new(text);
        let mut problems = Vec::new();
        let raw = raw::deserialize_all(value, &mut |path, message| {
            // An unknown key is shown at the key, a bad value at the value.
            let at = match locator.get(path) {
                Some(place)
                    if message.starts_with("unknown key") || message.starts_with("key '") =>
                {
                    Some(place.key)
                }
                _ => locator.value_or_parent(path),
            };
            problems.push(Diagnostic::error(shown, message).at_opt(at));
        });
        let config = raw.and_then(|raw| {
            raw.check(&mut |path, message| {
                problems
                    .push(Diagnostic::error(shown, message).at_opt(locator.value_or_parent(path)));
            })
        });
        // serde finds problems in its own order; show them in file order.
        problems.sort_by_key(|d| d.position);
        if problems.iter().any(Diagnostic::is_error) {
            return (None, problems);
        }
        (config, problems)
    }

    /// The site root as text without a trailing slash, for joining paths.
    pub fn base(&self) -> &str {
        self.site.base_url.as_str().trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let (config, problems) = Config::parse(text, Path::new("gazette.yaml"));
        assert!(config.is_none() || problems.iter().all(|d| !d.is_error()));
        problems.iter().map(ToString::to_string).collect()
    }

    const MINIMAL: &str = "site:\n  title: T\n  base_url: https://example.com\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let (config, problems) = Config::parse(MINIMAL, Path::new("gazette.yaml"));
        assert!(problems.is_empty(), "{problems:?}");
        let config = config.unwrap();
        assert_eq!(config.site.language, "en");
        assert_eq!(config.site.timezone, Tz::UTC);
        assert_eq!(config.content.permalink, "{base_url}/{slug}/");
        assert_eq!(config.content.max_file_size, 10 * 1024 * 1024);
        assert_eq!(config.feeds.limit, 20);
        assert_eq!(config.feeds.content, FeedContent::Full);
        assert_eq!(config.base(), "https://example.com");
    }

    #[test]
    fn unknown_keys_are_located_with_a_suggestion() {
        let text = format!("{MINIMAL}feeds:\n  limt: 3\n  titel: x\n");
        assert_eq!(
            errors(&text),
            [
                "gazette.yaml:5:3: unknown key 'feeds.limt' (did you mean 'limit'?)",
                "gazette.yaml:6:3: unknown key 'feeds.titel'; expected one of: out, limit, content, rss, atom, json, tags",
            ]
        );
    }

    #[test]
    fn every_bad_value_is_reported_once() {
        let text = "site:\n  title: T\n  base_url: ftp://x\n  timezone: Mars/Base\n\
                    feeds:\n  limit: many\ncontent:\n  max_file_size: 10 parsecs\n  permalink: /posts/\n";
        assert_eq!(
            errors(text),
            [
                "gazette.yaml:3:13: base_url must be an absolute http or https URL, got 'ftp://x'",
                "gazette.yaml:4:13: unknown timezone 'Mars/Base'; use an IANA name such as 'Europe/Berlin' or 'UTC'",
                "gazette.yaml:6:10: invalid type: string \"many\", expected usize (key 'feeds.limit')",
                "gazette.yaml:8:18: cannot read size '10 parsecs'; write bytes (1048576) or a number with B, KB, MB, GB, KiB, MiB or GiB",
                "gazette.yaml:9:14: permalink must contain {slug}",
            ]
        );
    }

    #[test]
    fn missing_required_keys_are_named() {
        assert_eq!(
            errors("site:\n  title: T\n"),
            [
                "gazette.yaml:2:3: missing key 'site.base_url' (the address the site is published at)"
            ]
        );
        assert_eq!(
            errors(""),
            [
                "gazette.yaml: missing key 'site.base_url' (the address the site is published at)",
                "gazette.yaml: missing key 'site.title'"
            ]
        );
    }

    #[test]
    fn segment_links_resolve_on_the_base_url_when_another_site_key_is_wrong() {
        let text = "site:\n  base_url: https://example.com\n  timezone: Mars/Base\n\
                    segments:\n  - id: fans\n    match: {segment: fans}\n    cta: {text: Demo, url: /demo/}\n";
        assert_eq!(
            errors(text),
            [
                "gazette.yaml:2:3: missing key 'site.title'",
                "gazette.yaml:3:13: unknown timezone 'Mars/Base'; use an IANA name such as 'Europe/Berlin' or 'UTC'",
            ]
        );
    }

    #[test]
    fn segment_template_names_are_checked() {
        let text = format!(
            "{MINIMAL}segments:\n  - id: fans\n    match: {{segment: fans}}\n    template: ../x\n  - id: default\n    template: ''\n"
        );
        assert_eq!(
            errors(&text),
            [
                "gazette.yaml:7:15: template name '../x' must be ASCII letters, digits, '-' or '_' (it names templates/<name>.mjml.tera)",
                "gazette.yaml:9:15: template name '' must be ASCII letters, digits, '-' or '_' (it names templates/<name>.mjml.tera)",
            ]
        );
    }

    #[test]
    fn syntax_errors_point_at_the_opening_quote() {
        assert_eq!(
            errors("site:\n  title: \"T\n  base_url: x\n"),
            ["gazette.yaml:2:10: unclosed quoted string"]
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
        for i in 1..9 {
            text += &format!(
                "{}: &{} [*{},*{},*{},*{},*{},*{},*{},*{},*{}]\n",
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char
            );
        }
        let found = errors(&text);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("repetition limit exceeded"), "{found:?}");
    }
}
