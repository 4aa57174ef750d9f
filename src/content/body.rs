//! Content stage: a post's body, from Markdown or HTML source to final HTML.
//!
//! Markdown goes through comrak (CommonMark with GFM tables, strikethrough,
//! task lists, footnotes and autolinks; raw HTML passes through). The HTML
//! is then rewritten once with lol_html: relative links and image sources
//! are resolved against the post's permalink, and a leading `<h1>` that
//! repeats the title is removed. Its text is read with scraper for the
//! summary, the reading time and a missing title.

use std::cell::{Cell, RefCell};

use lol_html::{RewriteStrSettings, element, rewrite_str};
use scraper::{Html, Node};
use url::Url;

/// Renders Markdown to HTML.
pub fn markdown_to_html(source: &str) -> String {
    let mut options = comrak::Options::default();
    options.extension.table = true;
    options.extension.strikethrough = true;
    options.extension.tasklist = true;
    options.extension.footnotes = true;
    options.extension.autolink = true;
    options.render.r#unsafe = true;
    comrak::markdown_to_html(source, &options)
}

/// What the text of an HTML body says, read without changing it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// The text of the first `<h1>` when no other text comes before it.
    pub leading_h1: Option<String>,
    /// The text of the first paragraph that has any, whitespace collapsed.
    pub first_paragraph: Option<String>,
    /// All visible text, whitespace collapsed, without the leading `<h1>`.
    pub text: String,
}

/// Reads the visible text of `html` (scripts and styles skipped).
pub fn read(html: &str) -> Reading {
    let document = Html::parse_fragment(html);
    let mut leading_h1: Option<(String, ego_tree::NodeId)> = None;
    let mut seen_text = false;
    let mut first_paragraph = None;
    let mut text = String::new();
    for node in document.root_element().descendants() {
        match node.value() {
            Node::Element(el) if el.name() == "h1" && leading_h1.is_none() && !seen_text => {
                let words = collapse(&text_of(node));
                leading_h1 = Some((words, node.id()));
                seen_text = true;
            }
            Node::Element(el) if el.name() == "p" && first_paragraph.is_none() => {
                let words = collapse(&text_of(node));
                if !words.is_empty() {
                    first_paragraph = Some(words);
                }
            }
            Node::Text(t) if !hidden(node) => {
                if !t.trim().is_empty() {
                    seen_text = true;
                }
                let inside_h1 = leading_h1
                    .as_ref()
                    .is_some_and(|(_, h1)| node.ancestors().any(|a| a.id() == *h1));
                if !inside_h1 {
                    text.push_str(t);
                    text.push(' ');
                }
            }
            _ => {}
        }
    }
    Reading {
        leading_h1: leading_h1.map(|(words, _)| words).filter(|w| !w.is_empty()),
        first_paragraph,
        text: collapse(&text),
    }
}

fn hidden(node: ego_tree::NodeRef<'_, Node>) -> bool {
    node.ancestors().any(|a| {
        matches!(a.value(), Node::Element(el) if matches!(el.name(), "script" | "style" | "template"))
    })
}

fn text_of(node: ego_tree::NodeRef<'_, Node>) -> String {
    let mut out = String::new();
    for child in node.descendants() {
        if let Node::Text(t) = child.value() {
            if !hidden(child) {
                out.push_str(t);
                out.push(' ');
            }
        }
    }
    out
}

/// Collapses runs of whitespace into single spaces and trims the ends.
pub fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The attributes that hold URLs, by element.
const URL_ATTRIBUTES: [(&str, &str); 10] = [
    ("a[href]", "href"),
    ("area[href]", "href"),
    ("img[src]", "src"),
    ("img[srcset]", "srcset"),
    ("source[src]", "src"),
    ("source[srcset]", "srcset"),
    ("video[src]", "src"),
    ("video[poster]", "poster"),
    ("audio[src]", "src"),
    ("iframe[src]", "src"),
];

/// Resolves relative URLs against `base` and, when `drop_first_h1`,
/// removes the first `<h1>`. Returns the new HTML and the URLs that could
/// not be resolved.
pub fn rewrite(html: &str, base: &Url, drop_first_h1: bool) -> (String, Vec<String>) {
    let bad = RefCell::new(Vec::new());
    let h1_dropped = Cell::new(!drop_first_h1);
    let mut settings =
        RewriteStrSettings::new().append_element_content_handler(element!("h1", |el| {
            if !h1_dropped.replace(true) {
                el.remove();
            }
            Ok(())
        }));
    for (selector, attribute) in URL_ATTRIBUTES {
        let bad = &bad;
        settings = settings.append_element_content_handler(element!(selector, move |el| {
            let Some(value) = el.get_attribute(attribute) else {
                return Ok(());
            };
            let resolved = if attribute == "srcset" {
                resolve_srcset(&value, base, &mut bad.borrow_mut())
            } else {
                resolve(&value, base, &mut bad.borrow_mut())
            };
            if resolved != value {
                el.set_attribute(attribute, &resolved)?;
            }
            Ok(())
        }));
    }
    // lol_html only fails on memory limits or handler errors; keep the input then.
    let out = rewrite_str(html, settings).unwrap_or_else(|_| html.to_string());
    (out, bad.into_inner())
}

/// Resolves one URL; absolute URLs and fragments-only stay as written.
pub fn resolve(value: &str, base: &Url, bad: &mut Vec<String>) -> String {
    let trimmed = value.trim();
    if trimmed.is_empty() || Url::parse(trimmed).is_ok() {
        return value.to_string();
    }
    match base.join(trimmed) {
        Ok(url) => url.to_string(),
        Err(_) => {
            bad.push(value.to_string());
            value.to_string()
        }
    }
}

/// `a.png 1x, /b.png 2x` with each URL resolved.
fn resolve_srcset(value: &str, base: &Url, bad: &mut Vec<String>) -> String {
    value
        .split(',')
        .map(|candidate| {
            let candidate = candidate.trim();
            match candidate.split_once(char::is_whitespace) {
                Some((url, size)) => format!("{} {}", resolve(url, base, bad), size.trim()),
                None => resolve(candidate, base, bad),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cuts `text` to at most `max` characters at a word boundary, adding "…".
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let limit = text.char_indices().nth(max).map_or(text.len(), |(i, _)| i);
    let head = &text[..limit];
    let head = match head.rfind(char::is_whitespace) {
        Some(space) if space > 0 => &head[..space],
        _ => head,
    };
    let head = head.trim_end_matches(|c: char| c.is_whitespace() || ",;:-–—(".contains(c));
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://example.com/blog/post/").unwrap()
    }

    #[test]
    fn markdown_extensions_are_on() {
        let html = markdown_to_html(
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n~~no~~ www.example.com\n\n- [x] done\n\nnote[^1]\n\n[^1]: foot\n\n<div class=\"raw\">kept</div>\n",
        );
        assert!(html.contains("<table>"), "{html}");
        assert!(html.contains("<del>no</del>"), "{html}");
        assert!(html.contains("href=\"http://www.example.com\""), "{html}");
        assert!(html.contains("type=\"checkbox\""), "{html}");
        assert!(html.contains("footnote"), "{html}");
        assert!(html.contains("<div class=\"raw\">kept</div>"), "{html}");
    }

    #[test]
    fn relative_urls_are_resolved_against_the_permalink() {
        let html = r##"<a href="/about">a</a> <a href="next/">n</a> <img src="img.png" srcset="a.png 1x, /b.png 2x"> <a href="https://x.org/">x</a> <a href="mailto:a@b.c">m</a> <a href="#top">t</a>"##;
        let (out, bad) = rewrite(html, &base(), false);
        assert!(bad.is_empty());
        assert_eq!(
            out,
            r##"<a href="https://example.com/about">a</a> <a href="https://example.com/blog/post/next/">n</a> <img src="https://example.com/blog/post/img.png" srcset="https://example.com/blog/post/a.png 1x, https://example.com/b.png 2x"> <a href="https://x.org/">x</a> <a href="mailto:a@b.c">m</a> <a href="https://example.com/blog/post/#top">t</a>"##
        );
    }

    #[test]
    fn leading_h1_is_found_and_dropped() {
        let html =
            "<div>\n <h1 style=\"x\">The  Title</h1><p>First &amp; best.</p><p>Second</p></div>";
        let reading = read(html);
        assert_eq!(reading.leading_h1.as_deref(), Some("The Title"));
        assert_eq!(reading.first_paragraph.as_deref(), Some("First & best."));
        assert_eq!(reading.text, "First & best. Second");
        let (out, _) = rewrite(html, &base(), true);
        assert_eq!(out, "<div>\n <p>First &amp; best.</p><p>Second</p></div>");
    }

    #[test]
    fn an_h1_after_text_is_not_leading() {
        let reading = read("<p>Intro</p><h1>Later</h1><script>var x;</script>");
        assert_eq!(reading.leading_h1, None);
        assert_eq!(reading.text, "Intro Later");
    }

    #[test]
    fn cut_at_a_word_boundary() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("one two three four", 12), "one two…");
        assert_eq!(cut("one, two three", 8), "one…");
        assert_eq!(cut("unbreakableword", 5), "unbre…");
    }
}
