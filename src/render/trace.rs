//! Render stage: where in a template a piece of its output came from.
//!
//! Tera does not say which template line produced which output, so to place
//! an MJML problem in the `.mjml.tera` file the template is rendered once
//! more with an invisible mark at the start of each of its lines; the marks
//! are stripped again, and the output must come out identical (else there
//! is no place to give). Only done when mrml has something to report.

/// The two characters around a mark: Unicode private-use code points, which
/// no filter changes and no template has reason to contain.
const OPEN: char = '\u{F8FF}';
const CLOSE: char = '\u{F8FE}';

/// `source` with a mark `OPEN id.line CLOSE` at the start of every line
/// where Tera sees plain text — not inside a tag, and not where a tag's
/// whitespace control (`{%-`, `-%}`) would reach the mark and trim
/// differently. `None` if the source already holds a mark character.
pub fn mark(source: &str, id: usize) -> Option<String> {
    if source.contains([OPEN, CLOSE]) {
        return None;
    }
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len() + source.len() / 8);
    let mut in_tag: Option<&[u8; 2]> = None;
    let mut line = 1;
    let mut at_line_start = true;
    let mut i = 0;
    while i < bytes.len() {
        if at_line_start {
            at_line_start = false;
            if in_tag.is_none() && !trimmed_here(bytes, i) {
                out.push(OPEN);
                out.push_str(&format!("{id}.{line}"));
                out.push(CLOSE);
            }
        }
        let pair = bytes.get(i..i + 2);
        match (in_tag, pair) {
            (None, Some(b"{{")) => in_tag = Some(b"}}"),
            (None, Some(b"{%")) => in_tag = Some(b"%}"),
            (None, Some(b"{#")) => in_tag = Some(b"#}"),
            (Some(end), Some(pair)) if pair == end => {
                in_tag = None;
                out.push_str(&source[i..i + 2]);
                i += 2;
                continue;
            }
            _ => {}
        }
        let len = utf8_len(bytes[i]);
        out.push_str(&source[i..i + len]);
        if bytes[i] == b'\n' {
            line += 1;
            at_line_start = true;
        }
        i += len;
    }
    Some(out)
}

/// Whether whitespace at byte `at` could be trimmed by a neighbouring tag:
/// a `-%}` before it or a `{%-` after it with only whitespace between.
fn trimmed_here(bytes: &[u8], at: usize) -> bool {
    let before = bytes[..at].trim_ascii_end();
    let after = bytes[at..].trim_ascii_start();
    let trims_after = [b"-}}", b"-%}", b"-#}"]
        .iter()
        .any(|t| before.ends_with(*t));
    let trims_before = [b"{{-", b"{%-", b"{#-"]
        .iter()
        .any(|t| after.starts_with(*t));
    trims_after || trims_before
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

/// A rendered, marked output with its marks taken out again.
pub struct Trace {
    /// The output without marks.
    pub text: String,
    /// Each mark: its byte offset in `text`, template id and line.
    marks: Vec<(usize, usize, usize)>,
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
            let parsed = after[..close].split_once('.').and_then(|(id, line)| {
                Some((id.parse::<usize>().ok()?, line.parse::<usize>().ok()?))
            });
            if let Some((id, line)) = parsed {
                marks.push((text.len(), id, line));
            }
            rest = &after[close + CLOSE.len_utf8()..];
        }
        text.push_str(rest);
        Trace { text, marks }
    }

    /// The template id and line whose text holds byte `offset` of the
    /// output, and the output's text from that line's start to `offset`.
    pub fn line_of(&self, offset: usize) -> Option<(usize, usize, &str)> {
        let at = self.marks.partition_point(|(start, _, _)| *start <= offset);
        let (start, id, line) = *self.marks.get(at.checked_sub(1)?)?;
        let upto = self.text.get(start..offset)?;
        Some((id, line, upto))
    }
}

/// The 1-based column, in characters, of a problem on template line
/// `template_line`, when the output before it on that line (`before`) is
/// the line's own text, or the problem's first characters (`at`) occur
/// once on the line; `None` when the line gives no way to tell.
pub fn column(template_line: &str, before: &str, at: &str) -> Option<usize> {
    if !before.contains('\n') && template_line.starts_with(before) {
        return Some(before.chars().count() + 1);
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
            .map(|(_, id, line)| format!("{id}.{line}"))
            .collect()
    }

    #[test]
    fn plain_lines_are_marked_and_strip_back_to_the_source() {
        let source = "<a>\n  <b>é</b>\n</a>\n";
        let marked = mark(source, 3).unwrap();
        assert_eq!(marks_of(&marked), ["3.1", "3.2", "3.3"]);
        let trace = Trace::strip(&marked);
        assert_eq!(trace.text, source);
        let offset = source.find("é").unwrap();
        let (id, line, before) = trace.line_of(offset).unwrap();
        assert_eq!((id, line, before), (3, 2, "  <b>"));
    }

    #[test]
    fn lines_inside_tags_or_reached_by_trimming_are_not_marked() {
        let source =
            "a\n{{ x\n | upper }}\nb\n  {%- if y %}\nc {% endif -%}\n\n  d\n{# note\n#}e\n";
        let marked = mark(source, 0).unwrap();
        // Line 3 is inside `{{ }}`; 5 starts with `{%-`; 7 and 8 follow
        // `-%}`; 10 is inside a comment.
        assert_eq!(marks_of(&marked), ["0.1", "0.2", "0.4", "0.6", "0.9"]);
    }

    #[test]
    fn a_source_holding_a_mark_character_is_not_traced() {
        assert!(mark("a\u{F8FF}b", 0).is_none());
    }

    #[test]
    fn the_column_comes_from_the_line_or_from_the_token() {
        let line = "    <mj-sektion padding=\"0\">";
        assert_eq!(column(line, "    ", "<mj-sektion padding"), Some(5));
        // Output differs from the template before the problem (a value was
        // filled in), but the token is found on the line.
        let line = "<mj-text>{{ a }}</mj-text><mj-bad>";
        assert_eq!(column(line, "<mj-text>Ann</mj-text>", "<mj-bad>"), Some(27));
        assert_eq!(column("{{ body }}", "", "<p>"), Some(1));
        assert_eq!(column("  {{ body }}", "  <p>Hi</p>", "<b>"), None);
    }
}
