//! Shared vocabulary: located YAML reading, used by config (`gazette.yaml`),
//! content (front matter) and audience (`subscribers.yaml`).
//!
//! Imports no stage, only `diagnostics`: it sits below every stage that
//! reads YAML, so none of them imports another to borrow it.
//!
//! serde works on values without positions, so [`Locator`] walks the same
//! text once with an event parser and records the line and column of every
//! key and value by its path (`feeds.limit`, `segments[1].name`); errors
//! found after deserializing (unknown keys, bad values) are then placed by
//! path. [`yaml_too_deep`] refuses hostile nesting before parsing, and
//! [`yaml_error`] turns a parse error into a diagnostic at its place.

use std::collections::HashMap;
use std::path::Path;

use saphyr_parser::{Event, Parser};

use crate::diagnostics::Diagnostic;

/// Line and column (1-based) of a key and of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub key: (usize, usize),
    pub value: (usize, usize),
}

/// Positions of every mapping key in a YAML document, by dotted path.
#[derive(Debug, Default)]
pub struct Locator {
    places: HashMap<String, Place>,
}

enum Frame {
    Map {
        key: Option<(String, (usize, usize))>,
    },
    Seq {
        index: usize,
    },
}

impl Locator {
    /// Indexes `text`; on a syntax error the positions found so far are kept
    /// (the YAML library reports the error itself).
    pub fn new(text: &str) -> Locator {
        let mut places = HashMap::new();
        let mut stack: Vec<(String, Frame)> = Vec::new();
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            let here = (span.start.line(), span.start.col() + 1);
            // The path of the node this event starts, and whether it is a key.
            let node = match stack.last_mut() {
                Some((path, Frame::Map { key })) => match key.take() {
                    None => match &event {
                        Event::Scalar(name, ..) => {
                            *key = Some((name.to_string(), here));
                            continue;
                        }
                        Event::MappingEnd => None,
                        _ => {
                            // A complex key: give it an unusable name.
                            *key = Some(("?".into(), here));
                            None
                        }
                    },
                    Some((name, key_at)) => {
                        let child = join(path, &name);
                        places.insert(
                            child.clone(),
                            Place {
                                key: key_at,
                                value: here,
                            },
                        );
                        Some(child)
                    }
                },
                Some((path, Frame::Seq { index })) => {
                    let child = format!("{path}[{index}]");
                    if !matches!(event, Event::SequenceEnd) {
                        *index += 1;
                    }
                    Some(child)
                }
                None => Some(String::new()),
            };
            match event {
                Event::MappingStart(..) => {
                    stack.push((node.unwrap_or_default(), Frame::Map { key: None }))
                }
                Event::SequenceStart(..) => {
                    stack.push((node.unwrap_or_default(), Frame::Seq { index: 0 }))
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        Locator { places }
    }

    /// The place of the key at `path`, if the document has it.
    pub fn get(&self, path: &str) -> Option<Place> {
        self.places.get(path).copied()
    }

    /// The value position of `path`, else of its nearest ancestor that has one.
    pub fn value_or_parent(&self, path: &str) -> Option<(usize, usize)> {
        let mut path = path;
        loop {
            if let Some(place) = self.get(path) {
                return Some(place.value);
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The deepest `[`/`{` nesting YAML text may have: parsing time grows with
/// the square of it, and real files stay within a few levels.
pub const MAX_YAML_NESTING: usize = 128;

/// Where flow collections (`[…]`, `{…}`) in YAML `text` first nest deeper
/// than [`MAX_YAML_NESTING`], found in one pass before parsing. Brackets in
/// comments and quoted strings are not counted.
pub fn yaml_too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for (index, line) in text.lines().enumerate() {
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        let mut chars = line.chars().enumerate().peekable();
        while let Some((column, c)) = chars.next() {
            match (quote, c) {
                (Some('"'), '\\') => {
                    chars.next();
                }
                (Some(q), _) if c == q => {
                    if q == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                (Some(_), _) => {}
                (None, '#') if previous.is_whitespace() => break,
                (None, '"' | '\'') if previous.is_whitespace() || "[{,:-?".contains(previous) => {
                    quote = Some(c);
                }
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_YAML_NESTING {
                        return Some((index + 1, column + 1));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            previous = c;
        }
    }
    None
}

/// Turns a YAML parse error into a located diagnostic.
///
/// `line_offset` shifts lines for YAML embedded in another file (front
/// matter); `what` is appended to the message ("in front matter").
pub fn yaml_error(
    err: &serde_norway::Error,
    text: &str,
    shown: &Path,
    line_offset: usize,
    what: &str,
) -> Diagnostic {
    let full = err.to_string();
    let mut at = err.location().map(|l| (l.line(), l.column()));
    // A duplicate key is reported at its mapping; show the second key instead.
    if let (Some(key), Some((line, _))) = (duplicate_key(&full), at) {
        at = second_key(text, key, line).or(at);
    }
    // "… at line 4 column 1, while scanning a quoted scalar at line 1 column 8":
    // the start of the scalar is the useful place.
    let mut message = full.clone();
    if let Some((head, tail)) = full.split_once(", while ") {
        let (kind, place) = tail.rsplit_once(" at line ").unwrap_or((tail, ""));
        if let Some(found) = parse_line_column(place) {
            at = Some(found);
        }
        message = match kind {
            "scanning a quoted scalar" => "unclosed quoted string".to_string(),
            _ => format!("{}, while {kind}", strip_location(head)),
        };
    } else {
        message = strip_location(&message).to_string();
    }
    if !what.is_empty() {
        message = format!("{message} {what}");
    }
    let d = Diagnostic::error(shown, message);
    match at {
        Some((line, col)) => d.at(line + line_offset, col),
        None => d,
    }
}

/// The key named by a "duplicate entry with key \"K\"" message.
fn duplicate_key(message: &str) -> Option<&str> {
    let rest = message.split_once("duplicate entry with key \"")?.1;
    Some(rest.split_once('"')?.0)
}

/// Line and column of the second `key:` at one indentation, from `from_line` on.
fn second_key(text: &str, key: &str, from_line: usize) -> Option<(usize, usize)> {
    let mut first_indent = None;
    for (index, line) in text.lines().enumerate().skip(from_line.saturating_sub(1)) {
        let bare = line.trim_start_matches([' ', '-']);
        let indent = line.len() - bare.len();
        let named = [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
            .iter()
            .any(|k| {
                bare.strip_prefix(k.as_str())
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            });
        if !named {
            continue;
        }
        match first_indent {
            None => first_indent = Some(indent),
            Some(first) if first == indent => return Some((index + 1, indent + 1)),
            Some(_) => {}
        }
    }
    None
}

/// Removes serde_norway's " at line L column C" suffix.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if parse_line_column(&message[i + " at line ".len()..]).is_some() => &message[..i],
        _ => message,
    }
}

/// Reads "L column C" (the rest of "at line L column C").
fn parse_line_column(text: &str) -> Option<(usize, usize)> {
    let (line, col) = text.split_once(" column ")?;
    let col = col.split(|c: char| !c.is_ascii_digit()).next()?;
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

/// 1-based line and column just after `bytes` (for positions of bad bytes).
pub fn position_of(bytes: &[u8]) -> (usize, usize) {
    let valid = String::from_utf8_lossy(bytes);
    position_in(&valid, valid.len())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn position_in(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_found_before_parsing() {
        let deep = format!("title: x\ntags: {}", "[".repeat(100_000));
        assert_eq!(yaml_too_deep(&deep), Some((2, 7 + MAX_YAML_NESTING)));
        let fine = "a: [1, {b: [2]}]\nq: \"[[[[\" # [[[[\nr: 'it''s [' \ns: don't [x]\n";
        assert_eq!(yaml_too_deep(fine), None);
        let balanced = "[[]]\n".repeat(1000);
        assert_eq!(yaml_too_deep(&balanced), None);
    }

    const DOC: &str = "site:\n  title: Hi\n  base_url: https://x\nsegments:\n  - id: a\n    rule: {tags: [x]}\n  - id: b\n";

    #[test]
    fn finds_nested_keys_and_values() {
        let loc = Locator::new(DOC);
        assert_eq!(loc.get("site").unwrap().key, (1, 1));
        assert_eq!(loc.get("site.title").unwrap().key, (2, 3));
        assert_eq!(loc.get("site.title").unwrap().value, (2, 10));
        assert_eq!(loc.get("site.base_url").unwrap().value, (3, 13));
    }

    #[test]
    fn finds_keys_inside_sequences_and_flow_maps() {
        let loc = Locator::new(DOC);
        assert_eq!(loc.get("segments[0].id").unwrap().key, (5, 5));
        assert_eq!(loc.get("segments[1].id").unwrap().key, (7, 5));
        assert_eq!(loc.get("segments[0].rule.tags").unwrap().key, (6, 12));
    }

    #[test]
    fn falls_back_to_the_parent() {
        let loc = Locator::new(DOC);
        assert_eq!(loc.value_or_parent("site.title.deeper"), Some((2, 10)));
        assert_eq!(loc.value_or_parent("nothing"), None);
    }
}
