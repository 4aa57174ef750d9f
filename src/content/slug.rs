//! Content stage: slugs (from the `slug` field or the file name) and the
//! permalink each post gets from the configured pattern.
//!
//! Imports: its sibling `dates`, `tag`.

use std::path::Path;

use chrono::{DateTime, Datelike, FixedOffset};
use chrono_tz::Tz;

use super::dates;
use crate::tag::slugify;

/// Why a `slug:` value cannot be used, if it cannot.
pub fn check(slug: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || "-_.~".contains(c);
    if slug.is_empty() || slug.starts_with('.') {
        return Err(format!("slug '{slug}' must not be empty or start with '.'"));
    }
    match slug.chars().find(|c| !allowed(*c)) {
        Some(bad) => Err(format!(
            "slug '{slug}' contains {bad:?}; use letters, digits, '-', '_', '.' and '~' only"
        )),
        None => Ok(()),
    }
}

/// The name a file stands under: its stem, or the folder's name for a page
/// bundle (`dir/index.md`), still with any Jekyll date prefix.
pub fn stem_of(relative: &Path) -> &str {
    let stem = relative
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem.eq_ignore_ascii_case("index") || stem.eq_ignore_ascii_case("_index") {
        relative
            .parent()
            .and_then(Path::file_name)
            .and_then(|s| s.to_str())
            .unwrap_or_default()
    } else {
        stem
    }
}

/// The slug a file gets when it names none: its [`stem_of`] without a
/// Jekyll date prefix.
pub fn from_path(relative: &Path) -> String {
    let stem = stem_of(relative);
    let stem = dates::jekyll_prefix(stem).map_or(stem, |(_, rest)| rest);
    slugify(stem)
}

/// Fills the permalink pattern (checked by config: only known placeholders).
pub fn permalink(
    pattern: &str,
    base: &str,
    slug: &str,
    date: DateTime<FixedOffset>,
    tz: Tz,
) -> String {
    let local = date.with_timezone(&tz);
    pattern
        .replace("{base_url}", base)
        .replace("{year}", &format!("{:04}", local.year()))
        .replace("{month}", &format!("{:02}", local.month()))
        .replace("{day}", &format!("{:02}", local.day()))
        .replace("{slug}", slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_from_paths() {
        assert_eq!(from_path(Path::new("hello-world.md")), "hello-world");
        assert_eq!(from_path(Path::new("2024-01-31-My Post.md")), "my-post");
        assert_eq!(from_path(Path::new("trip/index.md")), "trip");
        assert_eq!(from_path(Path::new("2024-05-06-trip/index.md")), "trip");
        assert_eq!(from_path(Path::new("a/b/deep.html")), "deep");
    }

    #[test]
    fn slug_field_is_checked() {
        assert!(check("ok-slug_1.2~x").is_ok());
        assert_eq!(
            check("a b").unwrap_err(),
            "slug 'a b' contains ' '; use letters, digits, '-', '_', '.' and '~' only"
        );
        assert!(check("../etc").is_err());
        assert!(check("a/b").is_err());
    }

    #[test]
    fn permalink_placeholders() {
        let date = DateTime::parse_from_rfc3339("2025-01-01T00:30:00+00:00").unwrap();
        let tz: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            permalink(
                "{base_url}/{year}/{month}/{day}/{slug}/",
                "https://e.com",
                "p",
                date,
                tz
            ),
            "https://e.com/2024/12/31/p/"
        );
    }
}
