//! Content stage: splitting a post into front matter and body, and parsing
//! the front matter (YAML between `---`, TOML between `+++`) into a map.
//!
//! Imports: `diagnostics`, `yaml`.
//!
//! Errors are placed in the post file itself: front-matter line numbers are
//! shifted by the fence, so `content/a.md:3:8` points at the bad character.

use std::cell::OnceCell;
use std::path::Path;

use serde_json::{Map, Value};

use crate::diagnostics::Diagnostic;
use crate::yaml::{Locator, MAX_YAML_NESTING, position_in, yaml_error, yaml_too_deep};

/// A post split at its fences.
#[derive(Debug)]
pub struct Split<'a> {
    pub fields: Map<String, Value>,
    /// Where each front-matter key stands in the file.
    pub places: Places,
    pub body: &'a str,
}

/// Positions of front-matter keys and values, already shifted to file lines.
#[derive(Debug, Default)]
pub struct Places {
    offset: usize,
    /// YAML front matter, indexed only when a place is first asked for:
    /// most posts have no problem to place.
    yaml_text: Option<String>,
    yaml: OnceCell<Locator>,
    toml_text: Option<String>,
}

impl Places {
    /// The position of the value of top-level key `key` (or its key).
    pub fn value(&self, key: &str) -> Option<(usize, usize)> {
        let (line, col) = if let Some(text) = &self.yaml_text {
            self.yaml.get_or_init(|| Locator::new(text)).get(key)?.value
        } else {
            let text = self.toml_text.as_deref()?;
            toml_value_position(text, key)?
        };
        Some((line + self.offset, col))
    }
}

/// Finds `key = value` at the top level of a TOML text (before any table).
fn toml_value_position(text: &str, key: &str) -> Option<(usize, usize)> {
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            return None;
        }
        let Some(rest) = trimmed.strip_prefix(key) else {
            continue;
        };
        let rest_trimmed = rest.trim_start();
        if let Some(value) = rest_trimmed.strip_prefix('=') {
            let column = line.len() - value.trim_start().len();
            return Some((index + 1, column + 1));
        }
    }
    None
}

/// Splits `text` (already cleaned: LF line endings, no BOM) and parses its
/// front matter. Errors are located in `shown`.
pub fn split<'a>(text: &'a str, shown: &Path) -> Result<Split<'a>, Diagnostic> {
    let fence = match text.lines().next().map(str::trim_end) {
        Some("---") => "---",
        Some("+++") => "+++",
        _ => {
            return Ok(Split {
                fields: Map::new(),
                places: Places::default(),
                body: text,
            });
        }
    };
    let after_open = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut offset = after_open;
    let mut close = None;
    for line in text[after_open..].split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == fence || (fence == "---" && bare == "...") {
            close = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((matter_end, body_start)) = close else {
        return Err(Diagnostic::error(
            shown,
            format!(
                "front matter opened with '{fence}' is never closed (add a '{fence}' line after it)"
            ),
        )
        .at(1, 1));
    };
    let matter = &text[after_open..matter_end];
    let body = &text[body_start..];
    let (fields, places) = if fence == "---" {
        parse_yaml(matter, shown)?
    } else {
        parse_toml(matter, shown)?
    };
    Ok(Split {
        fields,
        places,
        body,
    })
}

fn parse_yaml(matter: &str, shown: &Path) -> Result<(Map<String, Value>, Places), Diagnostic> {
    if let Some((line, col)) = yaml_too_deep(matter) {
        let message =
            format!("lists or maps nested more than {MAX_YAML_NESTING} deep in front matter");
        return Err(Diagnostic::error(shown, message).at(line + 1, col));
    }
    let parsed: serde_norway::Value = match serde_norway::from_str(matter) {
        Ok(value) => value,
        Err(err) => return Err(yaml_error(&err, matter, shown, 1, "in front matter")),
    };
    let fields = match parsed {
        serde_norway::Value::Null => Map::new(),
        serde_norway::Value::Mapping(map) => {
            let mut fields = Map::new();
            for (key, value) in map {
                fields.insert(yaml_key(&key), yaml_to_json(value));
            }
            fields
        }
        _ => {
            return Err(
                Diagnostic::error(shown, "front matter must be a map of keys and values").at(2, 1),
            );
        }
    };
    let places = Places {
        offset: 1,
        yaml_text: Some(matter.to_string()),
        yaml: OnceCell::new(),
        toml_text: None,
    };
    Ok((fields, places))
}

fn yaml_key(key: &serde_norway::Value) -> String {
    match key {
        serde_norway::Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// YAML values as JSON values: tags dropped, non-string keys written out.
fn yaml_to_json(value: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (yaml_key(&k), yaml_to_json(v)))
                .collect(),
        ),
        Y::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

fn parse_toml(matter: &str, shown: &Path) -> Result<(Map<String, Value>, Places), Diagnostic> {
    let table: toml::Table = match toml::from_str(matter) {
        Ok(table) => table,
        Err(err) => {
            let at = err
                .span()
                .map(|span| position_in(matter, span.start.min(matter.len())));
            let message = format!("{} in front matter", err.message().trim_end_matches('\n'));
            let d = Diagnostic::error(shown, message);
            return Err(match at {
                Some((line, col)) => d.at(line + 1, col),
                None => d.at(2, 1),
            });
        }
    };
    let fields = table
        .into_iter()
        .map(|(k, v)| (k, toml_to_json(v)))
        .collect();
    let places = Places {
        offset: 1,
        yaml_text: None,
        yaml: OnceCell::new(),
        toml_text: Some(matter.to_string()),
    };
    Ok((fields, places))
}

/// TOML values as JSON values; datetimes become their RFC 3339 text.
fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown() -> &'static Path {
        Path::new("content/a.md")
    }

    #[test]
    fn yaml_front_matter_and_places() {
        let text = "---\ntitle: Hello\ndate: 2025-01-02\n---\nBody\n";
        let split = split(text, shown()).unwrap();
        assert_eq!(split.fields["title"], "Hello");
        assert_eq!(split.fields["date"], "2025-01-02");
        assert_eq!(split.body, "Body\n");
        assert_eq!(split.places.value("date"), Some((3, 7)));
    }

    #[test]
    fn toml_front_matter_and_places() {
        let text = "+++\ntitle = \"Hello\"\ndate = 2025-01-02T10:00:00Z\ntags = [\"a\"]\n+++\nBody";
        let split = split(text, shown()).unwrap();
        assert_eq!(split.fields["date"], "2025-01-02T10:00:00Z");
        assert_eq!(split.fields["tags"][0], "a");
        assert_eq!(split.places.value("date"), Some((3, 8)));
        assert_eq!(split.body, "Body");
    }

    #[test]
    fn no_front_matter() {
        let split = split("# Title\n\ntext", shown()).unwrap();
        assert!(split.fields.is_empty());
        assert_eq!(split.body, "# Title\n\ntext");
    }

    #[test]
    fn yaml_errors_are_shifted_by_the_fence() {
        let err = split("---\ntitle: ok\ndate: \"2025\nx: 1\n---\n", shown()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "content/a.md:3:7: unclosed quoted string in front matter"
        );
    }

    #[test]
    fn toml_errors_are_shifted_by_the_fence() {
        let err = split("+++\ntitle = \"ok\"\ndate = \n+++\n", shown()).unwrap_err();
        assert!(err.to_string().starts_with("content/a.md:3:"), "{err}");
    }

    #[test]
    fn unclosed_fence() {
        let err = split("---\ntitle: x\n", shown()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "content/a.md:1:1: front matter opened with '---' is never closed (add a '---' line after it)"
        );
    }
}
