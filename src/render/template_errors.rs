//! Render stage: a Tera error placed where its template is — the file's
//! line and column, or the gazette.yaml value it came from. Imports only
//! diagnostics and its siblings in `render`.

use tera::ErrorKind;

use super::templates::Origin;
use crate::diagnostics::Diagnostic;

/// A Tera error at its place: the template file's line and column, or the
/// config value it came from.
pub(super) fn located(err: &tera::Error, origin: &Origin) -> Diagnostic {
    let (message, at) = match err.kind() {
        ErrorKind::SyntaxError(report) | ErrorKind::RenderingError(report) => {
            let span = report.span();
            (
                report.message().to_string(),
                Some((span.start_line, span.start_col + 1)),
            )
        }
        other => from_report(&other.to_string()),
    };
    let message = message.trim().to_string();
    match origin {
        Origin::Config(path, what) => {
            let at = at
                .map(|(line, col)| format!(" (at {line}:{col})"))
                .unwrap_or_default();
            Diagnostic::error(path, format!("{what}: {message}{at}"))
        }
        Origin::File(path) => Diagnostic::error(path, message).at_opt(at),
        Origin::BuiltIn => Diagnostic::error("(built-in template)", message),
    }
}

/// The message and place in one of Tera's multi-line reports
/// (`error: Unknown filter…` / ` --> name:1:17` / a code frame).
fn from_report(report: &str) -> (String, Option<(usize, usize)>) {
    let mut lines = report.lines();
    let first = lines.next().unwrap_or(report);
    let message = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let at = lines
        .find_map(|line| line.trim_start().strip_prefix("--> "))
        .and_then(|place| {
            let mut parts = place.rsplitn(3, ':');
            let col = parts.next()?.parse().ok()?;
            let line = parts.next()?.parse().ok()?;
            Some((line, col))
        });
    (message, at)
}
