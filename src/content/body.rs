//! Content stage: a post's body, from Markdown or HTML source to final HTML.
//!
//! Imports: nothing of the crate.
//!
//! Markdown goes through comrak (CommonMark with GFM tables, strikethrough,
//! task lists, footnotes and autolinks; raw HTML passes through). The HTML
//! is then rewritten once with lol_html: relative links and image sources
//! are resolved against the post's permalink, and a leading `<h1>` that
//! repeats the title is removed. Its text is read with scraper for the
//! summary, the reading time and a missing title.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ego_tree::iter::Edge;
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

/// The deepest nesting of Markdown containers opened on one line
/// (`> > >`, `- - -`, `1. 1.`), found before rendering: the renderer's
/// memory grows with it.
pub fn container_depth(source: &str) -> usize {
    source.lines().map(line_containers).max().unwrap_or(0)
}

fn line_containers(line: &str) -> usize {
    let bytes = line.as_bytes();
    let spaced = |i: usize| matches!(bytes.get(i), Some(b' ' | b'\t'));
    let (mut count, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' => i += 1,
            b'>' => {
                count += 1;
                i += 1;
            }
            b'-' | b'*' | b'+' if spaced(i + 1) => {
                count += 1;
                i += 2;
            }
            b'0'..=b'9' => {
                let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                if matches!(bytes.get(i + digits), Some(b'.' | b')')) && spaced(i + digits + 1) {
                    count += 1;
                    i += digits + 2;
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    count
}

/// What the text of an HTML body says, read without changing it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyText {
    /// The text of the first `<h1>`, wherever it stands.
    pub first_h1: Option<String>,
    /// Whether that `<h1>` comes before any other text.
    pub h1_leads: bool,
    /// The text of the first paragraph that has any, whitespace collapsed.
    pub first_paragraph: Option<String>,
    /// All visible text, whitespace collapsed.
    pub text: String,
    /// All visible text but that of the first `<h1>`, whitespace collapsed.
    pub text_without_h1: String,
}

/// Reads the visible text of `html` (scripts and styles skipped), in one
/// pass over the tree so that deep nesting stays linear.
pub fn read(html: &str) -> BodyText {
    let document = Html::parse_fragment(html);
    // The first `<h1>`, and where its text starts and ends in `text`.
    let mut h1: Option<ego_tree::NodeId> = None;
    let mut h1_span: Option<(usize, usize)> = None;
    let mut h1_leads = false;
    let mut seen_text = false;
    let mut hidden_depth = 0usize;
    let mut first_paragraph = None;
    let mut text = String::new();
    for edge in document.root_element().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(el) if HIDDEN.contains(&el.name()) => hidden_depth += 1,
                Node::Element(el) if el.name() == "h1" && h1.is_none() => {
                    h1 = Some(node.id());
                    h1_span = Some((text.len(), text.len()));
                    h1_leads = !seen_text;
                }
                Node::Element(el) if el.name() == "p" && first_paragraph.is_none() => {
                    let words = collapse(&text_of(node));
                    if !words.is_empty() {
                        first_paragraph = Some(words);
                    }
                }
                Node::Text(t) if hidden_depth == 0 => {
                    seen_text |= !t.trim().is_empty();
                    text.push_str(t);
                    text.push(' ');
                }
                _ => {}
            },
            Edge::Close(node) => match node.value() {
                Node::Element(el) if HIDDEN.contains(&el.name()) => hidden_depth -= 1,
                Node::Element(_) if h1 == Some(node.id()) => {
                    h1_span = h1_span.map(|(start, _)| (start, text.len()));
                }
                _ => {}
            },
        }
    }
    let all = collapse(&text);
    let (first_h1, text_without_h1) = match h1_span {
        Some((start, end)) => (
            Some(collapse(&text[start..end])).filter(|t| !t.is_empty()),
            collapse(&format!("{} {}", &text[..start], &text[end..])),
        ),
        None => (None, all.clone()),
    };
    BodyText {
        h1_leads: h1_leads && first_h1.is_some(),
        first_h1,
        first_paragraph,
        text: all,
        text_without_h1,
    }
}

/// Elements whose text is not shown to readers.
const HIDDEN: [&str; 3] = ["script", "style", "template"];

/// The visible text inside `node` (each node is read once per call).
fn text_of(node: ego_tree::NodeRef<'_, Node>) -> String {
    let mut out = String::new();
    let mut hidden_depth = 0usize;
    for edge in node.traverse() {
        match edge {
            Edge::Open(n) => match n.value() {
                Node::Element(el) if HIDDEN.contains(&el.name()) => hidden_depth += 1,
                Node::Text(t) if hidden_depth == 0 => {
                    out.push_str(t);
                    out.push(' ');
                }
                _ => {}
            },
            Edge::Close(n) => {
                if matches!(n.value(), Node::Element(el) if HIDDEN.contains(&el.name())) {
                    hidden_depth -= 1;
                }
            }
        }
    }
    out
}

/// Collapses runs of whitespace into single spaces and trims the ends.
pub fn collapse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Runs of non-space text are copied whole; only spaces are looked at.
    let mut word_start: Option<usize> = None;
    let flush = |out: &mut String, start: Option<usize>, end: usize| {
        if let Some(start) = start {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&text[start..end]);
        }
    };
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            flush(&mut out, word_start.take(), i);
        } else if word_start.is_none() {
            word_start = Some(i);
        }
    }
    flush(&mut out, word_start, text.len());
    out
}

/// Elements whose end tag HTML lets authors leave out: not counted by
/// [`nesting`], which only sees explicit end tags.
const OPTIONAL_END: &[&str] = &[
    "p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option", "optgroup", "rb",
    "rt", "rtc", "rp", "colgroup", "caption", "html", "head", "body",
];

/// The formatting elements: when left open, the HTML parser reopens every
/// one of them in each later block, so their number multiplies the tree.
const FORMATTING: &[&str] = &[
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u",
];

/// How deeply the elements of a body nest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nesting {
    /// The most elements open at once.
    pub depth: usize,
    /// The most formatting elements (`<b>`, `<i>`, `<a>`…) open at once.
    pub formatting: usize,
}

/// How deeply elements nest in `html`, counted in one linear pass (the tree
/// parser is quadratic in depth and multiplies unclosed formatting elements,
/// so both are checked before parsing).
pub fn nesting(html: &str) -> Nesting {
    let open = Rc::new(Cell::new(Nesting::default()));
    let deepest = Rc::new(Cell::new(Nesting::default()));
    let (now, max) = (open.clone(), deepest.clone());
    let settings =
        RewriteStrSettings::new().append_element_content_handler(element!("*", move |el| {
            let name = el.tag_name();
            if OPTIONAL_END.contains(&name.as_str()) {
                return Ok(());
            }
            if let Some(handlers) = el.end_tag_handlers() {
                let formatting = usize::from(FORMATTING.contains(&name.as_str()));
                let mut n = now.get();
                n.depth += 1;
                n.formatting += formatting;
                now.set(n);
                let m = max.get();
                max.set(Nesting {
                    depth: m.depth.max(n.depth),
                    formatting: m.formatting.max(n.formatting),
                });
                let close = now.clone();
                let on_close: lol_html::EndTagHandler<'static> = Box::new(move |_| {
                    let n = close.get();
                    close.set(Nesting {
                        depth: n.depth.saturating_sub(1),
                        formatting: n.formatting.saturating_sub(formatting),
                    });
                    Ok(())
                });
                handlers.push(on_close);
            }
            Ok(())
        }));
    // Rewriting only fails on handler errors, and these handlers return none.
    let _ = rewrite_str(html, settings);
    deepest.get()
}

/// The widest row of a Markdown table in `source`, in cells (`|`
/// separators): the table extension's work grows with its square.
pub fn table_width(source: &str) -> usize {
    source
        .lines()
        .filter(|line| line.trim_start().starts_with('|') || line.contains(" | "))
        .map(|line| line.matches('|').count())
        .max()
        .unwrap_or(0)
}

/// The attributes that hold URLs, by element (lower-case names).
const URL_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href"]),
    ("area", &["href"]),
    ("link", &["href"]),
    ("img", &["src", "srcset", "data-src"]),
    ("source", &["src", "srcset"]),
    ("video", &["src", "poster"]),
    ("audio", &["src"]),
    ("track", &["src"]),
    ("embed", &["src"]),
    ("iframe", &["src"]),
    ("input", &["src"]),
    ("object", &["data"]),
    ("form", &["action"]),
    ("blockquote", &["cite"]),
    ("q", &["cite"]),
    ("ins", &["cite"]),
    ("del", &["cite"]),
    ("image", &["href"]),
];

/// Resolves relative URLs against `base` and, when `drop_first_h1`,
/// removes the first `<h1>`. Returns the new HTML and the URLs that could
/// not be resolved.
pub fn rewrite(html: &str, base: &Url, drop_first_h1: bool) -> (String, Vec<String>) {
    let bad = RefCell::new(Vec::new());
    let h1_dropped = Cell::new(!drop_first_h1);
    // One handler for every element, not a selector per tag: lol_html
    // compiles each selector anew per document.
    let settings = RewriteStrSettings::new().append_element_content_handler(element!("*", |el| {
        let name = el.tag_name();
        if name == "h1" && !h1_dropped.replace(true) {
            el.remove();
            return Ok(());
        }
        let Some((_, attributes)) = URL_ATTRIBUTES.iter().find(|(tag, _)| *tag == name) else {
            return Ok(());
        };
        for &attribute in *attributes {
            let Some(value) = el.get_attribute(attribute) else {
                continue;
            };
            let resolved = if attribute == "srcset" {
                resolve_srcset(&value, base, &mut bad.borrow_mut())
            } else {
                resolve(&value, base, &mut bad.borrow_mut())
            };
            if resolved != value {
                el.set_attribute(attribute, &resolved)?;
            }
        }
        Ok(())
    }));
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

    #[test]
    fn collapse_joins_words_with_single_spaces_whatever_the_space() {
        assert_eq!(collapse("  a\u{a0}b \n\t c\u{3000}d  "), "a b c d");
        assert_eq!(collapse(" \n "), "");
        assert_eq!(collapse("é"), "é");
    }

    #[test]
    fn rewrite_resolves_url_attributes_and_drops_the_first_h1_in_any_case() {
        let (html, bad) = rewrite(
            "<H1>T</H1><h1>U</h1><A HREF=\"x/\">a</A><img SRCSET=\"a.png 1x, /b.png 2x\"><p data-src=\"keep\">",
            &base(),
            true,
        );
        assert_eq!(
            html,
            "<h1>U</h1><A HREF=\"https://example.com/blog/post/x/\">a</A>\
             <img SRCSET=\"https://example.com/blog/post/a.png 1x, https://example.com/b.png 2x\"><p data-src=\"keep\">"
        );
        assert!(bad.is_empty());
    }

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
        let more = r#"<blockquote cite="src.html">q</blockquote><img data-src="lazy.png"><svg><image href="s.svg"/></svg><object data="o.pdf"></object>"#;
        let (resolved, _) = rewrite(more, &base(), false);
        assert_eq!(
            resolved,
            r#"<blockquote cite="https://example.com/blog/post/src.html">q</blockquote><img data-src="https://example.com/blog/post/lazy.png"><svg><image href="https://example.com/blog/post/s.svg" /></svg><object data="https://example.com/blog/post/o.pdf"></object>"#
        );
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
        assert_eq!(reading.first_h1.as_deref(), Some("The Title"));
        assert!(reading.h1_leads);
        assert_eq!(reading.first_paragraph.as_deref(), Some("First & best."));
        assert_eq!(reading.text, "The Title First & best. Second");
        assert_eq!(reading.text_without_h1, "First & best. Second");
        let (out, _) = rewrite(html, &base(), true);
        assert_eq!(out, "<div>\n <p>First &amp; best.</p><p>Second</p></div>");
    }

    #[test]
    fn an_h1_after_text_is_not_leading() {
        let reading = read("<p>Intro</p><h1>Later</h1><p>More</p><script>var x;</script>");
        assert_eq!(reading.first_h1.as_deref(), Some("Later"));
        assert!(!reading.h1_leads);
        assert_eq!(reading.text, "Intro Later More");
        assert_eq!(reading.text_without_h1, "Intro More");
    }

    #[test]
    fn container_depth_counts_markers_that_open_blocks() {
        assert_eq!(
            container_depth("text > not a quote\n> one\n> > two\n>>> three"),
            3
        );
        assert_eq!(container_depth("- - - x\n1. 2) - > y"), 4);
        assert_eq!(container_depth("----------\n***\n2024 was\n-x"), 0);
        assert_eq!(container_depth(""), 0);
    }

    #[test]
    fn nesting_counts_open_elements() {
        let depth = |html: &str| nesting(html).depth;
        assert_eq!(depth("<div>a</div><div>b</div>"), 1);
        assert_eq!(
            depth("<div><ul><li><b>x</b></li></ul></div><br><img src=x>"),
            3
        );
        assert_eq!(depth(&"<div>".repeat(3000)), 3000);
        assert_eq!(depth("<p>a<p>b<p>c<p>d"), 0);
        assert_eq!(depth("<ul><li>a<li>b<li>c</ul>"), 1);
    }

    #[test]
    fn nesting_counts_unclosed_formatting_elements() {
        let formatting = |html: &str| nesting(html).formatting;
        assert_eq!(formatting("<b>a</b> <i>b</i> <a href=x>c</a>"), 1);
        assert_eq!(formatting("<div><b><i><em>x</em></i></b></div>"), 3);
        let hostile = format!("{}{}", "<b>".repeat(500), "<p>x".repeat(100));
        assert_eq!(
            nesting(&hostile),
            Nesting {
                depth: 500,
                formatting: 500
            }
        );
    }

    #[test]
    fn table_width_counts_cells_of_table_rows() {
        assert_eq!(table_width("| a | b |\n|---|---|\n| 1 | 2 |"), 3);
        assert_eq!(table_width("a | b | c\nplain text"), 2);
        assert_eq!(table_width("no tables here"), 0);
    }

    #[test]
    fn cut_at_a_word_boundary() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("one two three four", 12), "one two…");
        assert_eq!(cut("one, two three", 8), "one…");
        assert_eq!(cut("unbreakableword", 5), "unbre…");
    }
}
