//! Render stage: per-subscriber fields spliced into a digest compiled once.
//!
//! A digest is rendered (Tera → MJML → HTML) with a marker in place of
//! every subscriber field: a random ASCII word (letters, digits and `_`,
//! which neither Tera's escaping nor mrml changes, in text or attributes)
//! followed by the field's number. The output is cut at the markers into a
//! [`Plan`]; filling a plan for one subscriber is a single pass of string
//! copies with each value escaped for its context. The word is drawn
//! afresh for every run and removed from all data that goes into a
//! template ([`Marker::strip`]), so a post cannot forge a field.
//!
//! Imports nothing of the crate (its tests: the field numbers of
//! [`super::ReaderFields`]).

use std::borrow::Cow;

/// The placeholders of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// `gzf` + 16 random hex digits + `n`; a field is `{prefix}{index}_`.
    prefix: String,
}

impl Marker {
    /// A marker with a random word.
    pub fn new() -> Marker {
        let mut bytes = [0u8; 8];
        // Without randomness the word is still unlikely in a post, and
        // strip() removes it from all data anyway.
        let _ = getrandom::fill(&mut bytes);
        let hex = hex::encode(bytes);
        Marker {
            prefix: format!("gzf{hex}n"),
        }
    }

    /// The placeholder for field `index`.
    pub fn sentinel(&self, index: usize) -> String {
        format!("{}{index}_", self.prefix)
    }

    /// `text` without this run's marker word.
    pub fn strip<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if text.contains(&self.prefix) {
            Cow::Owned(text.replace(&self.prefix, ""))
        } else {
            Cow::Borrowed(text)
        }
    }

    /// Whether `rendered` holds a placeholder a template changed (upper-cased,
    /// cut, encoded): a reader field that went through a filter.
    pub fn damaged(&self, plan: &Plan) -> bool {
        // `gzf` and the first random digit: a field cut to four characters
        // is still seen, and ordinary text never holds this run's digit
        // after those letters by chance more than rarely.
        let stem = self.prefix[..4].to_ascii_lowercase();
        plan.parts.iter().any(|part| match part {
            Part::Literal(text) => text.to_ascii_lowercase().contains(&stem),
            Part::Field(_) => false,
        })
    }

    /// Cuts `rendered` at every placeholder.
    pub fn plan(&self, rendered: &str) -> Plan {
        let mut parts = Vec::new();
        let mut rest = rendered;
        while let Some(at) = rest.find(&self.prefix) {
            let after = &rest[at + self.prefix.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let index = after[..digits].parse::<usize>().ok();
            match index.filter(|_| after[digits..].starts_with('_')) {
                Some(index) => {
                    push_literal(&mut parts, &rest[..at]);
                    parts.push(Part::Field(index));
                    rest = &after[digits + 1..];
                }
                None => {
                    // Not one of ours (data never holds the word): drop the word.
                    push_literal(&mut parts, &rest[..at]);
                    rest = after;
                }
            }
        }
        push_literal(&mut parts, rest);
        let literal_len = parts
            .iter()
            .map(|p| match p {
                Part::Literal(text) => text.len(),
                Part::Field(_) => 0,
            })
            .sum();
        Plan { parts, literal_len }
    }
}

impl Default for Marker {
    fn default() -> Self {
        Marker::new()
    }
}

/// How a field's value is written where it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// HTML text or a quoted attribute: `& < > " '` become entities.
    Html,
    /// Plain text (the text part, a header before encoding): as is, with
    /// control characters removed.
    Text,
}

/// A rendered text cut at its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    parts: Vec<Part>,
    /// The length of the literal parts, to size the output.
    literal_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(usize),
}

impl Plan {
    /// The text with each field `i` replaced by `values[i]`, escaped.
    pub fn fill(&self, values: &[&str], escape: Escape) -> String {
        let mut out = String::with_capacity(self.literal_len + 64);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(index) => {
                    escape.push(values.get(*index).copied().unwrap_or(""), &mut out)
                }
            }
        }
        out
    }

    /// The literal text and the fields, in order.
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> {
        self.parts.iter().map(|part| match part {
            Part::Literal(text) => Piece::Literal(text),
            Part::Field(index) => Piece::Field(*index),
        })
    }
}

/// One piece of a [`Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'p> {
    Literal(&'p str),
    Field(usize),
}

impl Escape {
    /// Appends `value` escaped this way.
    pub fn push(self, value: &str, out: &mut String) {
        match self {
            Escape::Html => escape_html(value, out),
            Escape::Text => out.extend(value.chars().filter(|c| !c.is_control())),
        }
    }
}

fn push_literal(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    match parts.last_mut() {
        Some(Part::Literal(last)) => last.push_str(text),
        _ => parts.push(Part::Literal(text.to_string())),
    }
}

/// Appends `text` as HTML text or attribute value.
pub fn escape_html(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

/// Values that need care in some context, and how each [`Escape`] writes
/// them: `(value, Escape::Html, Escape::Text)`. Shared with the MIME tests.
#[cfg(test)]
pub(super) const HOSTILE: [(&str, &str, &str); 14] = [
    ("&", "&amp;", "&"),
    ("<", "&lt;", "<"),
    (">", "&gt;", ">"),
    ("\"", "&quot;", "\""),
    ("'", "&#39;", "'"),
    ("&amp;", "&amp;amp;", "&amp;"),
    (
        "x\" onmouseover=\"steal()",
        "x&quot; onmouseover=&quot;steal()",
        "x\" onmouseover=\"steal()",
    ),
    ("x' y='z", "x&#39; y=&#39;z", "x' y='z"),
    ("</p><script>", "&lt;/p&gt;&lt;script&gt;", "</p><script>"),
    (
        "https://e.com/u?a=1&b=\"2\"#'x'",
        "https://e.com/u?a=1&amp;b=&quot;2&quot;#&#39;x&#39;",
        "https://e.com/u?a=1&b=\"2\"#'x'",
    ),
    (
        "Zoë Ørsted 名前 😀",
        "Zoë Ørsted 名前 😀",
        "Zoë Ørsted 名前 😀",
    ),
    // Not control characters: kept.
    (
        "a\u{a0}b\u{2028}c",
        "a\u{a0}b\u{2028}c",
        "a\u{a0}b\u{2028}c",
    ),
    // Control characters (a header injection among them): dropped.
    (
        "A\r\nBcc: x@evil\t\u{0}\u{7f}\u{85}",
        "ABcc: x@evil",
        "ABcc: x@evil",
    ),
    ("{{ x }} gzf0n1_", "{{ x }} gzf0n1_", "{{ x }} gzf0n1_"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::ReaderFields;

    /// Where a field can stand in a rendered digest, `{}` the field, and
    /// how it is escaped there.
    const CONTEXTS: [(&str, &str, Escape); 6] = [
        ("html text", "<p>Hi {}!</p>", Escape::Html),
        ("quoted attribute", "<a title=\"{}\">x</a>", Escape::Html),
        (
            "single-quoted attribute",
            "<a title='{}'>x</a>",
            Escape::Html,
        ),
        ("link", "<a href=\"{}\">x</a>", Escape::Html),
        ("text part", "Hi {},\r\n", Escape::Text),
        ("header", "{}: the news", Escape::Text),
    ];

    /// Every field a digest can hold, with one attribute column and one pick.
    fn field_kinds() -> Vec<(&'static str, usize)> {
        let fields = ReaderFields {
            attrs: vec!["company".into()],
        };
        vec![
            ("name", ReaderFields::NAME),
            ("greeting name", ReaderFields::GREETING_NAME),
            ("email", ReaderFields::EMAIL),
            ("unsubscribe", ReaderFields::UNSUBSCRIBE),
            ("preferences", ReaderFields::PREFERENCES),
            ("attribute", ReaderFields::attr(0)),
            ("reason", fields.reason(0)),
        ]
    }

    #[test]
    fn every_field_is_escaped_for_every_context_it_can_stand_in() {
        let marker = Marker::new();
        let kinds = field_kinds();
        for (kind, index) in &kinds {
            for (context, template, escape) in CONTEXTS {
                let plan = marker.plan(&template.replace("{}", &marker.sentinel(*index)));
                for (value, html, text) in HOSTILE {
                    // The other fields hold something else: only `index` may land here.
                    let mut values = vec!["other"; kinds.len()];
                    values[*index] = value;
                    let expected = match escape {
                        Escape::Html => html,
                        Escape::Text => text,
                    };
                    assert_eq!(
                        plan.fill(&values, escape),
                        template.replace("{}", expected),
                        "{kind} in {context}: {value:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_escaped_field_reads_back_as_its_value_in_html() {
        let marker = Marker::new();
        for (value, _, _) in HOSTILE {
            let shown: String = value.chars().filter(|c| !c.is_control()).collect();
            let field = marker.sentinel(0);
            let html = marker
                .plan(&format!(
                    "<p id=\"t\">{field}</p><a id=\"d\" title=\"{field}\" href=\"{field}\">x</a>\
                     <a id=\"s\" title='{field}'>y</a>"
                ))
                .fill(&[value], Escape::Html);
            let doc = scraper::Html::parse_fragment(&html);
            let one = |css: &str| {
                let selector = scraper::Selector::parse(css).unwrap();
                doc.select(&selector).next().map(|e| e.value().clone())
            };
            let text: String = doc
                .select(&scraper::Selector::parse("#t").unwrap())
                .flat_map(|e| e.text())
                .collect();
            assert_eq!(text, shown, "text: {html}");
            let double = one("#d").unwrap_or_else(|| panic!("no link: {html}"));
            assert_eq!(double.attr("title"), Some(shown.as_str()), "{html}");
            assert_eq!(double.attr("href"), Some(shown.as_str()), "{html}");
            assert_eq!(
                double.attrs().count(),
                3,
                "a value added an attribute: {html}"
            );
            let single = one("#s").unwrap_or_else(|| panic!("no link: {html}"));
            assert_eq!(single.attr("title"), Some(shown.as_str()), "{html}");
            assert_eq!(
                single.attrs().count(),
                2,
                "a value added an attribute: {html}"
            );
        }
    }

    #[test]
    fn fields_are_filled_and_escaped_for_their_context() {
        let marker = Marker::new();
        let rendered = format!(
            "<p>Hi {}!</p><a href=\"{}\">x</a>",
            marker.sentinel(0),
            marker.sentinel(1)
        );
        let plan = marker.plan(&rendered);
        let html = plan.fill(&["Bob <b>&", "https://e.com/u?t=a&b"], Escape::Html);
        assert_eq!(
            html,
            "<p>Hi Bob &lt;b&gt;&amp;!</p><a href=\"https://e.com/u?t=a&amp;b\">x</a>"
        );
        let text = marker.plan(&format!("Hi {},\r\n", marker.sentinel(0)));
        assert_eq!(
            text.fill(&["Bob\r\nBcc: x@evil.example"], Escape::Text),
            "Hi BobBcc: x@evil.example,\r\n"
        );
    }

    #[test]
    fn data_cannot_forge_a_field() {
        let marker = Marker::new();
        let forged = format!("post says {}", marker.sentinel(0));
        let stripped = marker.strip(&forged);
        assert_eq!(stripped, "post says 0_");
        assert_eq!(
            marker.plan(&stripped).fill(&["V"], Escape::Html),
            "post says 0_"
        );
        assert_ne!(Marker::new(), marker, "a fresh word every run");
    }

    #[test]
    fn a_filtered_field_is_noticed() {
        let marker = Marker::new();
        let upper = marker.sentinel(1).to_uppercase();
        assert!(marker.damaged(&marker.plan(&format!("Hello {upper}"))));
        let cut: String = marker.sentinel(0).chars().take(9).collect();
        assert!(marker.damaged(&marker.plan(&format!("Hi {cut}…"))));
        let short: String = marker.sentinel(3).chars().take(4).collect();
        assert!(marker.damaged(&marker.plan(&format!("[{short}…]"))));
        assert!(!marker.damaged(&marker.plan(&format!("Hi {}", marker.sentinel(0)))));
    }
}
