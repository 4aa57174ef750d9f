//! Render stage: post HTML made safe to place in an email.
//!
//! ammonia keeps formatting, links and images and drops everything that
//! runs or reaches out on its own: scripts, event handlers, frames, forms,
//! `javascript:` and `data:` URLs. Then images of one pixel or none
//! (tracking pixels, by their `width`/`height`) are removed.
//!
//! Imports nothing of the crate.

use std::sync::OnceLock;

use lol_html::{RewriteStrSettings, element, rewrite_str};

/// `html` with only safe elements, attributes and URLs left.
pub fn post_html(html: &str) -> String {
    // After cleaning: the parser turns `<image>` into `<img>` on the way.
    let clean = cleaner().clean(html).to_string();
    drop_tiny_images(&clean)
}

fn cleaner() -> &'static ammonia::Builder<'static> {
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    CLEANER.get_or_init(|| {
        let mut builder = ammonia::Builder::default();
        builder
            .url_schemes(["http", "https", "mailto"].into_iter().collect())
            .link_rel(Some("noopener noreferrer"))
            .url_relative(ammonia::UrlRelative::Deny);
        builder
    })
}

/// Removes `<img>` elements declared 1×1 or smaller.
fn drop_tiny_images(html: &str) -> String {
    let settings =
        RewriteStrSettings::new().append_element_content_handler(element!("img", |el| {
            let tiny = |name: &str| {
                el.get_attribute(name).is_some_and(|value| {
                    let digits: String = value
                        .trim()
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    digits.parse::<u32>().is_ok_and(|n| n <= 1)
                })
            };
            if tiny("width") || tiny("height") {
                el.remove();
            }
            Ok(())
        }));
    // Only handler errors fail a rewrite, and this handler has none.
    rewrite_str(html, settings).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_that_runs_or_tracks_survives() {
        let html = r#"<p onclick="x()">Hi <script>alert(1)</script><a href="javascript:alert(1)">j</a>
<a href="https://example.com/">ok</a><img src="data:image/png;base64,AAAA"><iframe src="https://evil.example/"></iframe>
<form action="https://evil.example/"><input name="q"></form><img src="https://t.example/p.gif" width="1" height="1"><image src="https://t2.example/b.gif" width="1" height="1">
<img src="https://example.com/photo.jpg" alt="photo" onerror="steal()"></p>"#;
        let clean = post_html(html);
        for bad in [
            "script",
            "onclick",
            "javascript:",
            "data:",
            "iframe",
            "form",
            "input",
            "t.example",
            "onerror",
        ] {
            assert!(!clean.contains(bad), "{bad} in {clean}");
        }
        assert!(
            clean.contains(r#"<a href="https://example.com/" rel="noopener noreferrer">ok</a>"#),
            "{clean}"
        );
        assert!(
            clean.contains(r#"<img src="https://example.com/photo.jpg" alt="photo">"#),
            "{clean}"
        );
    }

    #[test]
    fn template_syntax_in_a_post_is_only_text() {
        let clean = post_html(
            "<p>{{ get_env(name=\"HOME\") }}</p></mj-text><mj-include path=\"/etc/passwd\"/>",
        );
        assert_eq!(clean, "<p>{{ get_env(name=\"HOME\") }}</p>");
    }
}
