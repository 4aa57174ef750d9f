//! Render stage: the name of the list a site's digests belong to.
//! Imports config and `tag`'s slugs.

use crate::config::Config;

/// The list a site's digests belong to (`List-Id`, and what unsubscribe
/// tokens name): `digest.<host>`, with the site's path in front when it
/// has one (`newsletter-a.digest.example.com` for
/// `https://example.com/newsletter-a/`), so two sites on one host are two
/// lists.
pub fn list_name(config: &Config) -> String {
    let url = &config.site.base_url;
    let host = config.site.host();
    let path = crate::tag::slugify(url.path());
    let label: String = path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if label.trim_matches('-').is_empty() {
        format!("digest.{host}")
    } else {
        format!("{}.digest.{host}", label.trim_matches('-'))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(base: &str) -> Config {
        let yaml = format!("site:\n  title: T\n  base_url: {base}\n");
        Config::parse(&yaml, Path::new("gazette.yaml"))
            .0
            .expect("config")
    }

    #[test]
    fn two_sites_on_one_host_are_two_lists() {
        assert_eq!(
            list_name(&config("https://example.com")),
            "digest.example.com"
        );
        assert_eq!(
            list_name(&config("https://example.com/newsletter-a/")),
            "newsletter-a.digest.example.com"
        );
        assert_eq!(
            list_name(&config("https://example.com/blog/Weekly_Notes")),
            "blog-weekly-notes.digest.example.com"
        );
    }
}
