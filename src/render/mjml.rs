//! Render stage: MJML → HTML with mrml, errors and warnings placed in the
//! template that produced the MJML (file, line and column, traced back from
//! mrml's byte spans), and in the produced MJML itself (which `preview`
//! writes out as `.mjml`).
//!
//! Imports only diagnostics and its siblings in `render`.

use std::collections::HashMap;
use std::path::Path;

use mrml::prelude::parser::ParserOptions;
use mrml::prelude::render::RenderOptions;

use super::templates::TemplatePlace;
use crate::diagnostics::Diagnostic;

/// The HTML of `mjml`, rendered from template `shown`, and mrml's warnings;
/// `place` traces a byte offset of `mjml` back to its template line.
pub fn compile(
    mjml: &str,
    options: &ParserOptions,
    shown: &Path,
    place: impl Fn(usize) -> Option<TemplatePlace>,
) -> Result<(String, Vec<Diagnostic>), Diagnostic> {
    let problem = |offset: Option<usize>, message: String, warning: bool| {
        let produced = offset.map(|offset| {
            let (line, col) = position(mjml, offset);
            format!(
                "line {line}, column {col} of the MJML it produced{}",
                snippet(mjml, line)
            )
        });
        let (path, at, message) = match (offset.and_then(&place), produced) {
            (Some((path, line, col)), Some(produced)) => {
                (path, Some((line, col)), format!("{message} ({produced})"))
            }
            (None, Some(produced)) => (
                shown.to_path_buf(),
                None,
                format!("{message} at {produced}"),
            ),
            _ => (shown.to_path_buf(), None, message),
        };
        let diagnostic = if warning {
            Diagnostic::warning(path, message)
        } else {
            Diagnostic::error(path, message)
        };
        match at {
            Some((line, 0)) => diagnostic.at_line(line),
            Some((line, col)) => diagnostic.at(line, col),
            None => diagnostic,
        }
    };
    let parsed = mrml::parse_with_options(mjml, options).map_err(|err| {
        problem(
            offset_of(&err, mjml),
            format!("invalid MJML: {}", without_span(&err.to_string())),
            false,
        )
    })?;
    let warnings = parsed
        .warnings
        .iter()
        .map(|w| {
            let message = format!("MJML warning {}", w.kind.as_str());
            problem(Some(w.span.start), message, true)
        })
        .collect();
    // No web fonts: they would make every open a request to a third party.
    let render = RenderOptions {
        disable_comments: true,
        fonts: HashMap::new(),
        ..RenderOptions::default()
    };
    let html = parsed
        .element
        .render(&render)
        .map_err(|err| Diagnostic::error(shown, format!("cannot render the MJML: {err}")))?;
    Ok((html, warnings))
}

/// Where in `mjml` an error is, as a byte offset: from mrml's span, or
/// from the HTML tokenizer's row and column.
fn offset_of(err: &mrml::prelude::parser::Error, mjml: &str) -> Option<usize> {
    use mrml::prelude::parser::Error as E;
    match err {
        E::UnexpectedElement { position: span, .. }
        | E::UnexpectedToken { position: span, .. }
        | E::MissingAttribute { position: span, .. }
        | E::InvalidAttribute { position: span, .. }
        | E::InvalidFormat { position: span, .. }
        | E::IncludeLoaderError { position: span, .. } => Some(span.start),
        E::ParserError { source, .. } => {
            let at = source.pos();
            Some(offset(mjml, at.row as usize, at.col as usize))
        }
        _ => None,
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let offset = (0..=offset)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// mrml's message without its ` at position 12:34` (bytes of the produced
/// MJML, which the message places better).
fn without_span(message: &str) -> String {
    let Some(at) = message.find(" at position ") else {
        return message.to_string();
    };
    let rest = &message[at + " at position ".len()..];
    let span = rest
        .find(|c: char| !(c.is_ascii_digit() || c == ':'))
        .unwrap_or(rest.len());
    format!("{}{}", &message[..at], &rest[span..])
}

/// Byte offset of 1-based `line` and `col` (in characters) in `text`.
fn offset(text: &str, line: usize, col: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[start.min(text.len())..];
    start
        + rest
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

/// `: «the line»`, trimmed and cut, to show where the problem is.
fn snippet(text: &str, line: usize) -> String {
    let content: String = text
        .lines()
        .nth(line - 1)
        .unwrap_or("")
        .trim()
        .chars()
        .take(80)
        .collect();
    if content.is_empty() {
        String::new()
    } else {
        format!(": {content}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_include_outside_the_templates_fails_at_its_line() {
        let mjml =
            "<mjml>\n  <mj-body>\n    <mj-include path=\"/etc/passwd\" />\n  </mj-body>\n</mjml>";
        let err = compile(
            mjml,
            &ParserOptions::default(),
            Path::new("templates/t.mjml.tera"),
            |_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("templates/t.mjml.tera: invalid MJML: "),
            "{err}"
        );
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn a_tokenizer_error_has_its_line_too() {
        let mjml = "<mjml>\n<mj-body>\n<mj-section href=x=y></mj-section>\n</mj-body>\n</mjml>";
        let err = compile(mjml, &ParserOptions::default(), Path::new("t"), |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(" at line 3, column "), "{err}");
    }

    #[test]
    fn a_traced_error_names_the_template_line_and_the_produced_one() {
        let mjml = "<mjml>\n<mj-body>\n<mj-include path=\"/etc/passwd\" />\n</mj-body>\n</mjml>";
        let err = compile(mjml, &ParserOptions::default(), Path::new("t"), |_| {
            Some(("templates/x.mjml.tera".into(), 7, 3))
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("templates/x.mjml.tera:7:3: invalid MJML: "),
            "{err}"
        );
        assert!(err.contains("(line 3, column "), "{err}");
    }

    #[test]
    fn offsets_and_positions_agree() {
        let text = "ab\nçd\ne";
        for at in [0, 1, 3, 5, 6, 8] {
            let (line, col) = position(text, at);
            assert_eq!(offset(text, line, col), at, "{line}:{col}");
        }
    }

    #[test]
    fn a_valid_document_becomes_html_without_web_fonts() {
        let mjml = "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>";
        let (html, warnings) =
            compile(mjml, &ParserOptions::default(), Path::new("t"), |_| None).unwrap();
        assert!(
            html.contains("Hi") && html.starts_with("<!doctype html>"),
            "{html}"
        );
        assert!(!html.contains("fonts.googleapis.com"));
        assert!(warnings.is_empty());
    }
}
