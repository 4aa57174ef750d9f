//! Audience stage: reading a YAML subscribers file, a list of maps with
//! the same keys as the CSV columns, each item checked as a CSV row would
//! be. Read whole: YAML is for small, hand-written lists. May import:
//! `crate::diagnostics`, `crate::yaml` (located YAML), and the parent
//! module's types.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;

use saphyr_parser::{Event, Parser};
use serde_norway::Value;

use super::Subscriber;
use super::duplicates::{AddressTallies, salvage};
use super::row::{Cell, Column, RowCheck, RowPlace, forbidden, printable, subscriber};
use crate::diagnostics::Diagnostic;
use crate::yaml::{MAX_YAML_NESTING, position_of, yaml_error, yaml_too_deep};

/// A YAML list of maps, read whole (YAML is for small, hand-written lists);
/// duplicates are merged as in CSV.
pub(super) fn read(path: &Path, shown: &Path, each: &mut dyn FnMut(Subscriber)) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            problems.push(Diagnostic::error(shown, format!("cannot read: {err}")));
            return problems;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let bad = err.as_bytes()[valid];
            let (line, col) = position_of(&err.as_bytes()[..valid]);
            let message = format!("not valid UTF-8 (byte 0x{bad:02X}); save the file as UTF-8");
            problems.push(Diagnostic::error(shown, message).at(line, col));
            return problems;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if let Some((line, col)) = yaml_too_deep(text) {
        let message = format!("lists or maps nested more than {MAX_YAML_NESTING} deep");
        problems.push(Diagnostic::error(shown, message).at(line, col));
        return problems;
    }
    let items = match serde_norway::from_str::<Value>(text) {
        Ok(Value::Null) => Vec::new(),
        Ok(Value::Sequence(items)) => items,
        Ok(_) => {
            let message = "the file must be a list of subscribers, each starting with '- email:'";
            problems.push(Diagnostic::error(shown, message).at_line(1));
            return problems;
        }
        Err(err) => {
            problems.push(yaml_error(&err, text, shown, 0, ""));
            return problems;
        }
    };
    let lines = item_lines(text);
    let place = |index: usize| match lines.get(index) {
        Some(&line) if lines.len() == items.len() => RowPlace::Line(line),
        _ => RowPlace::Item(index + 1),
    };
    let mut tallies = AddressTallies::default();
    for (index, item) in items.iter().enumerate() {
        match yaml_subscriber(item, place(index), shown, &mut Vec::new()) {
            Some(sub) => tallies.note(&sub, place(index)),
            None => tallies.suppress(&salvage_item(item), place(index)),
        }
    }
    for (index, item) in items.iter().enumerate() {
        if let Some(sub) = yaml_subscriber(item, place(index), shown, &mut problems) {
            match tallies.settle(sub, place(index), shown, &mut problems) {
                Ok(sub) => each(sub),
                Err(duplicate) => problems.push(duplicate),
            }
        }
    }
    problems
}

/// The line where each item of the top-level list starts (serde gives no
/// positions); fewer than the items if the event parser disagrees.
fn item_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut depth = 0usize;
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else { break };
        let opens = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
        if depth == 1 && (opens || matches!(event, Event::Scalar(..) | Event::Alias(..))) {
            lines.push(span.start.line());
        }
        match event {
            _ if opens => depth += 1,
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    lines
}

/// Checks one item of the YAML list, as a CSV row with its keys as header.
fn yaml_subscriber(
    item: &Value,
    place: RowPlace,
    shown: &Path,
    problems: &mut Vec<Diagnostic>,
) -> Option<Subscriber> {
    let mut check = RowCheck::new(shown, place, problems);
    let Value::Mapping(map) = untag(item) else {
        check.error("each subscriber must be a map of keys and values, starting with 'email:'");
        return None;
    };
    let mut columns = Vec::with_capacity(map.len());
    let mut cells = Vec::with_capacity(map.len());
    let mut names = HashSet::new();
    for (key, value) in map {
        let Some(name) = scalar_text(key) else {
            check.error(format!(
                "a key is {}; keys are names like 'email'",
                kind(key)
            ));
            continue;
        };
        let name = name.trim();
        if let Some(c) = name.chars().find(|c| forbidden(*c)) {
            check.error(format!(
                "a key contains control character U+{:04X}; remove it",
                c as u32
            ));
            continue;
        }
        if !name.is_empty() && !names.insert(name.to_lowercase()) {
            check.error(format!("key '{name}' appears twice; remove one"));
            continue;
        }
        let column = Column::of(name);
        let cell = match untag(value) {
            Value::Sequence(items) if column == Column::Interests => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match scalar_text(item) {
                        Some(text) => list.push(text.into_owned()),
                        None => check.error(format!(
                            "each of 'interests' must be text, got {}",
                            kind(item)
                        )),
                    }
                }
                Cell::List(list)
            }
            value => match scalar_text(value) {
                Some(text) => Cell::Text(text),
                None => {
                    check.error(format!(
                        "'{}' must be text, got {}",
                        printable(column.label()),
                        kind(value)
                    ));
                    continue;
                }
            },
        };
        columns.push(column);
        cells.push(cell);
    }
    subscriber(columns.iter().zip(cells), &mut check)
}

/// A scalar as text (empty for null); `None` for a list or map.
fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match untag(value) {
        Value::Null => Some(Cow::Borrowed("")),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => None,
    }
}

/// The value without its YAML tags (`!text abc` is `abc`).
fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => untag(&tagged.value),
        other => other,
    }
}

fn kind(value: &Value) -> &'static str {
    match untag(value) {
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        _ => "a value",
    }
}

/// What a rejected YAML item still says about who must not be mailed.
fn salvage_item(item: &Value) -> Vec<(String, u8)> {
    let Value::Mapping(map) = untag(item) else {
        return Vec::new();
    };
    let values = map
        .values()
        .filter_map(scalar_text)
        .map(Cow::into_owned)
        .collect();
    salvage(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::subscribers::Status;
    use crate::audience::subscribers::testing::{emails, read_as, tag};

    #[test]
    fn yaml_lists_read_like_csv() {
        let text = r#"# subscribers
- email: Ana@Example.COM
  name: Ana
  interests: [AI, "machine  learning", ai, "c++"]
  personalize: false
  Status: Active
  plan: pro
  seats: 3
- email: bob@example.com
  interests: design; ai
  personalize: 1
  timezone: Europe/Paris
- name: No Email
- email: ana@example.com
  status: unsubscribed
- just text
- email: cy@example.com
  name: [a, b]
- {email: di@example.com, interests: [x, {y: z}]}
"#;
        let (subs, problems) = read_as("subscribers.yaml", text);
        assert_eq!(
            problems,
            [
                "subscribers.yaml:13: no email address; fill in 'email' or remove the row",
                "subscribers.yaml:14: warning: duplicate of line 2 (ana@example.com); line 2 is kept with this row's status 'unsubscribed'",
                "subscribers.yaml:16: each subscriber must be a map of keys and values, starting with 'email:'",
                "subscribers.yaml:17: 'name' must be text, got a list",
                "subscribers.yaml:19: each of 'interests' must be text, got a map",
            ]
        );
        assert_eq!(
            emails(&subs),
            [("Ana@example.com", 2), ("bob@example.com", 9)]
        );
        let ana = &subs[0];
        assert_eq!(ana.name.as_deref(), Some("Ana"));
        assert_eq!(
            ana.interests,
            [
                tag("AI", "ai"),
                tag("machine learning", "machine-learning"),
                tag("c++", "c-plus-plus"),
            ]
        );
        assert!(!ana.personalize);
        assert_eq!(ana.status, Status::Unsubscribed);
        let attrs: Vec<_> = ana
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(attrs, [("plan", "pro"), ("seats", "3")]);
        let bob = &subs[1];
        assert_eq!(bob.interests, [tag("design", "design"), tag("ai", "ai")]);
        assert!(bob.personalize);
        assert_eq!(bob.timezone, Some(chrono_tz::Europe::Paris));
        assert_eq!(bob.status, Status::Active);
    }

    #[test]
    fn yaml_items_are_checked_like_rows() {
        let text = r#"- email: ana@example.com
  name: "Ana\u0007"
- email: bob@example.com
  Email: bob@example.org
- email: cy@example.com
  status: paused
  timezone: Nowhere
"#;
        let (subs, problems) = read_as("people.yml", text);
        assert_eq!(
            problems,
            [
                "people.yml:1: 'name' contains control character U+0007; remove it",
                "people.yml:3: key 'Email' appears twice; remove one",
                "people.yml:5: warning: unknown status 'paused', not mailed; use active, unsubscribed, bounced or complained",
                "people.yml:5: warning: unknown timezone 'Nowhere', ignored; use an IANA name such as 'Europe/Berlin' or 'UTC'",
            ]
        );
        assert_eq!(emails(&subs), [("cy@example.com", 5)]);
        assert_eq!(subs[0].status, Status::Unknown("paused".into()));
    }

    #[test]
    fn yaml_that_is_not_a_list_is_one_error() {
        let (subs, problems) = read_as("subscribers.yaml", "email: ana@example.com\n");
        assert_eq!(
            problems,
            [
                "subscribers.yaml:1: the file must be a list of subscribers, each starting with '- email:'"
            ]
        );
        assert!(subs.is_empty());
        let (subs, problems) = read_as("subscribers.yaml", "- email: \"ana@example.com\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("subscribers.yaml:1:"),
            "{problems:?}"
        );
        assert!(subs.is_empty());
        let (subs, problems) = read_as("subscribers.yaml", "# nobody yet\n");
        assert_eq!(problems, Vec::<String>::new());
        assert!(subs.is_empty());
    }

    #[test]
    fn items_without_a_line_are_named_by_number() {
        let d = RowPlace::Item(3).locate(Diagnostic::warning("s.yaml", "duplicate of item 1"));
        assert_eq!(
            d.to_string(),
            "s.yaml: warning: item 3: duplicate of item 1"
        );
        assert_eq!(RowPlace::Item(3).same_kind(1), "item 1");
        assert_eq!(RowPlace::Item(3).line(), 0);
        assert_eq!(item_lines("- a\n-\n  b: 1\n- [x]\n"), [1, 3, 4]);
    }
}
