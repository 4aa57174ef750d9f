//! Render stage: MJML → HTML with mrml, errors and warnings placed in the
//! MJML the template produced (line and column from mrml's byte spans).

use std::collections::HashMap;
use std::path::Path;

use mrml::prelude::parser::ParserOptions;
use mrml::prelude::render::RenderOptions;

use crate::diagnostics::Diagnostic;

/// The HTML of `mjml`, rendered from template `shown`, and mrml's warnings.
pub fn compile(
    mjml: &str,
    options: &ParserOptions,
    shown: &Path,
) -> Result<(String, Vec<Diagnostic>), Diagnostic> {
    let parsed = mrml::parse_with_options(mjml, options).map_err(|err| {
        let at = place_of(&err, mjml);
        let near = at.map(|(line, _)| snippet(mjml, line)).unwrap_or_default();
        let place = at.map_or_else(String::new, |(line, col)| {
            format!(" at line {line}, column {col} of the MJML it produced{near}")
        });
        Diagnostic::error(shown, format!("invalid MJML: {err}{place}"))
    })?;
    let warnings = parsed
        .warnings
        .iter()
        .map(|w| {
            let (line, col) = position(mjml, w.span.start);
            Diagnostic::warning(
                shown,
                format!(
                    "MJML warning {} at line {line}, column {col} of the MJML it produced{}",
                    w.kind.as_str(),
                    snippet(mjml, line)
                ),
            )
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

/// Where in `mjml` an error is: from mrml's byte span, or from the HTML
/// tokenizer's row and column.
fn place_of(err: &mrml::prelude::parser::Error, mjml: &str) -> Option<(usize, usize)> {
    use mrml::prelude::parser::Error as E;
    match err {
        E::UnexpectedElement { position: span, .. }
        | E::UnexpectedToken { position: span, .. }
        | E::MissingAttribute { position: span, .. }
        | E::InvalidAttribute { position: span, .. }
        | E::InvalidFormat { position: span, .. }
        | E::IncludeLoaderError { position: span, .. } => Some(position(mjml, span.start)),
        E::ParserError { source, .. } => {
            let at = source.pos();
            Some((at.row as usize, at.col as usize))
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
        let err = compile(mjml, &ParserOptions::default(), Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(" at line 3, column "), "{err}");
    }

    #[test]
    fn a_valid_document_becomes_html_without_web_fonts() {
        let mjml = "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>";
        let (html, warnings) = compile(mjml, &ParserOptions::default(), Path::new("t")).unwrap();
        assert!(
            html.contains("Hi") && html.starts_with("<!doctype html>"),
            "{html}"
        );
        assert!(!html.contains("fonts.googleapis.com"));
        assert!(warnings.is_empty());
    }
}
