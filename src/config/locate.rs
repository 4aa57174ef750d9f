//! Config stage helper: where each key of a YAML document stands.
//!
//! serde works on values without positions, so this walks the same text once
//! with an event parser and records the line and column of every key and
//! value by its path (`feeds.limit`, `segments[1].name`). Errors found after
//! deserializing (unknown keys, bad values) are then placed by path.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

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

pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
