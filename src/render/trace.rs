//! Render stage: where in a template a piece of its output came from.
//!
//! Tera does not say which template line produced which output, so to place
//! an MJML problem in the `.mjml.tera` file the template is rendered once
//! more with an invisible mark at the start of each of its lines; the marks
//! are stripped again, and the output must come out identical (else there
//! is no place to give). Only done when mrml has something to report.
//!
//! Imports nothing of the crate.

/// The two characters around a mark: Unicode private-use code points, which
/// no filter changes and no template has reason to contain.
const OPEN: char = '\u{F8FF}';
const CLOSE: char = '\u{F8FE}';

/// `source` with a mark `OPEN id.line.col CLOSE` on every line, at the
/// first place of the line where Tera sees plain text and the mark cannot
/// change the output: not inside a tag, and not in whitespace that a tag's
/// whitespace control (`{%-`, `-%}`) would trim — so after a tag that ends
/// the line's leading markup, or at the first character a trim stops at.
/// `col` is the 0-based character column of the mark. `None` if the source
/// already holds a mark character.
pub fn mark(source: &str, id: usize) -> Option<String> {
    if source.contains([OPEN, CLOSE]) {
        return None;
    }
    let safe = safe_places(source);
    let mut out = String::with_capacity(source.len() + source.len() / 8);
    let mut line = 1;
    let mut col = 0;
    let mut marked = false;
    for (i, c) in source.char_indices() {
        if !marked && c != '\n' && safe[i] {
            out.push(OPEN);
            out.push_str(&format!("{id}.{line}.{col}"));
            out.push(CLOSE);
            marked = true;
        }
        out.push(c);
        col += 1;
        if c == '\n' {
            line += 1;
            col = 0;
            marked = false;
        }
    }
    Some(out)
}

/// For each byte offset of `source`, whether a mark placed before it
/// leaves Tera's output unchanged once removed.
fn safe_places(source: &str) -> Vec<bool> {
    let bytes = source.as_bytes();
    let n = bytes.len();
    let mut safe = vec![true; n + 1];
    let mut raw = false;
    let mut i = 0;
    while i + 1 < n {
        let end: &[u8] = match &bytes[i..i + 2] {
            b"{{" => b"}}",
            b"{%" => b"%}",
            b"{#" => b"#}",
            _ => {
                i += 1;
                continue;
            }
        };
        let close = bytes[i + 2..]
            .windows(2)
            .position(|w| w == end)
            .map_or(n, |at| i + 2 + at);
        let tag_end = (close + 2).min(n);
        let inner = source
            .get(i + 2..close.min(n))
            .unwrap_or("")
            .trim_matches(|c: char| c == '-' || c.is_whitespace());
        if raw {
            // Inside `{% raw %}` only `{% endraw %}` is a tag.
            if !(end == b"%}" && inner == "endraw") {
                i += 1;
                continue;
            }
        }
        for place in &mut safe[i + 1..tag_end] {
            *place = false;
        }
        if bytes.get(i + 2) == Some(&b'-') {
            let mut w = i;
            while w > 0 && bytes[w - 1].is_ascii_whitespace() {
                w -= 1;
            }
            if w < i {
                for place in &mut safe[w + 1..=i] {
                    *place = false;
                }
            }
        }
        if close < n && close > i + 2 && bytes[close - 1] == b'-' {
            let mut f = tag_end;
            while f < n && bytes[f].is_ascii_whitespace() {
                f += 1;
            }
            for place in &mut safe[tag_end..f] {
                *place = false;
            }
        }
        raw = end == b"%}" && inner == "raw";
        i = tag_end;
    }
    safe
}

/// A rendered, marked output with its marks taken out again.
pub struct Trace {
    /// The output without marks.
    pub text: String,
    /// Each mark: its byte offset in `text`, template id, line and
    /// 0-based column.
    marks: Vec<(usize, usize, usize, usize)>,
}

impl Trace {
    /// Takes the marks out of `marked`.
    pub fn strip(marked: &str) -> Trace {
        let mut text = String::with_capacity(marked.len());
        let mut marks = Vec::new();
        let mut rest = marked;
        while let Some(open) = rest.find(OPEN) {
            text.push_str(&rest[..open]);
            let after = &rest[open + OPEN.len_utf8()..];
            let Some(close) = after.find(CLOSE) else {
                rest = after;
                continue;
            };
            let numbers: Vec<usize> = after[..close]
                .split('.')
                .filter_map(|n| n.parse().ok())
                .collect();
            if let [id, line, col] = numbers[..] {
                marks.push((text.len(), id, line, col));
            }
            rest = &after[close + CLOSE.len_utf8()..];
        }
        text.push_str(rest);
        Trace { text, marks }
    }

    /// The template id, line and mark column whose text holds byte
    /// `offset` of the output, and the output's text from the mark to
    /// `offset`.
    pub fn line_of(&self, offset: usize) -> Option<(usize, usize, usize, &str)> {
        let at = self.marks.partition_point(|(start, ..)| *start <= offset);
        let (start, id, line, col) = *self.marks.get(at.checked_sub(1)?)?;
        let upto = self.text.get(start..offset)?;
        Some((id, line, col, upto))
    }
}

/// The 1-based column, in characters, of a problem on template line
/// `template_line` whose mark stands at 0-based column `mark`: when the
/// output between the mark and the problem (`before`) is the line's own
/// text there, or the problem's first characters (`at`) occur once on the
/// line; `None` when the line gives no way to tell.
pub fn column(template_line: &str, mark: usize, before: &str, at: &str) -> Option<usize> {
    let from: String = template_line.chars().skip(mark).collect();
    if !before.contains('\n') && from.starts_with(before) {
        return Some(mark + before.chars().count() + 1);
    }
    let token: String = at
        .chars()
        .take_while(|c| !c.is_whitespace())
        .take(24)
        .collect();
    if token.is_empty() {
        return None;
    }
    let mut found = template_line.match_indices(&token);
    match (found.next(), found.next()) {
        (Some((index, _)), None) => Some(template_line[..index].chars().count() + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks_of(marked: &str) -> Vec<String> {
        Trace::strip(marked)
            .marks
            .iter()
            .map(|(_, id, line, col)| format!("{id}.{line}.{col}"))
            .collect()
    }

    #[test]
    fn plain_lines_are_marked_and_strip_back_to_the_source() {
        let source = "<a>\n  <b>é</b>\n</a>\n";
        let marked = mark(source, 3).unwrap();
        assert_eq!(marks_of(&marked), ["3.1.0", "3.2.0", "3.3.0"]);
        let trace = Trace::strip(&marked);
        assert_eq!(trace.text, source);
        let offset = source.find("é").unwrap();
        assert_eq!(trace.line_of(offset).unwrap(), (3, 2, 0, "  <b>"));
    }

    #[test]
    fn marks_stand_after_tags_and_where_trimming_stops() {
        let source = "a\n{{ x\n | upper }}<p>\nb\n  {%- if y %}<q>\nc {% if z -%}\n\n  d\n\
                      {# note\n#}e\n{% raw %}{{ x\n{% endraw %}\n";
        let marked = mark(source, 0).unwrap();
        // Line 2 starts with a tag: marked before it. Line 3 starts inside
        // it: marked after it. Line 5: after `{%- if y %}` (col 13), not
        // in the whitespace it trims. Lines 6–7 are whitespace `-%}` trims;
        // line 8 is marked where the trim stops (col 2). Line 10 after the
        // comment; line 11 inside raw is text.
        assert_eq!(
            marks_of(&marked),
            [
                "0.1.0", "0.2.0", "0.3.11", "0.4.0", "0.5.13", "0.6.0", "0.8.2", "0.9.0", "0.10.2",
                "0.11.0", "0.12.0"
            ]
        );
    }

    #[test]
    fn a_source_holding_a_mark_character_is_not_traced() {
        assert!(mark("a\u{F8FF}b", 0).is_none());
    }

    #[test]
    fn the_column_comes_from_the_line_or_from_the_token() {
        let line = "    <mj-sektion padding=\"0\">";
        assert_eq!(column(line, 0, "    ", "<mj-sektion padding"), Some(5));
        assert_eq!(column(line, 4, "", "<mj-sektion padding"), Some(5));
        // Output differs from the template before the problem (a value was
        // filled in), but the token is found on the line.
        let line = "<mj-text>{{ a }}</mj-text><mj-bad>";
        assert_eq!(
            column(line, 0, "<mj-text>Ann</mj-text>", "<mj-bad>"),
            Some(27)
        );
        assert_eq!(column("{{ body }}", 0, "", "<p>"), Some(1));
        assert_eq!(column("  {{ body }}", 0, "  <p>Hi</p>", "<b>"), None);
    }
}
