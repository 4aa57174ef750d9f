//! Diagnostics: located problems collected by every stage and printed together.
//!
//! A stage never stops at its first problem: it records each one as a
//! [`Diagnostic`] (`path:line:col: message`) and the command decides the exit
//! code once the whole input has been read.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// For the record (a post skipped as a draft); never fails a run.
    Note,
    /// Worth knowing; the output is still written.
    Warning,
    /// Bad input: nothing is written and the command exits 1.
    Error,
}

/// One problem with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file, relative to the project directory where possible.
    pub path: PathBuf,
    /// 1-based line and column, when the problem has a place inside the
    /// file; column 0 when only the line is known (a CSV record).
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(path: impl Into<PathBuf>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            position: None,
            message: message.into(),
        }
    }

    pub fn warning(path: impl Into<PathBuf>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message)
        }
    }

    pub fn note(path: impl Into<PathBuf>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Note,
            ..Diagnostic::error(path, message)
        }
    }

    /// Places the problem at a 1-based line and column.
    pub fn at(mut self, line: usize, col: usize) -> Diagnostic {
        self.position = Some((line.max(1), col.max(1)));
        self
    }

    /// Places the problem on a 1-based line, with no column.
    pub fn at_line(mut self, line: usize) -> Diagnostic {
        self.position = Some((line.max(1), 0));
        self
    }

    /// Places the problem at an optional position (no-op for `None`).
    pub fn at_opt(self, position: Option<(usize, usize)>) -> Diagnostic {
        match position {
            Some((line, col)) => self.at(line, col),
            None => self,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `path:line:col: message` for errors, `path:line:col: warning: message` for warnings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        match self.position {
            Some((line, 0)) => write!(f, ":{line}")?,
            Some((line, col)) => write!(f, ":{line}:{col}")?,
            None => {}
        }
        match self.severity {
            Severity::Error => write!(f, ": {}", self.message),
            Severity::Warning => write!(f, ": warning: {}", self.message),
            Severity::Note => write!(f, ": note: {}", self.message),
        }
    }
}

/// All the problems one run found, in the order the files were read.
#[derive(Debug, Default)]
pub struct Report {
    items: Vec<Diagnostic>,
}

impl Report {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn extend(&mut self, diagnostics: impl IntoIterator<Item = Diagnostic>) {
        self.items.extend(diagnostics);
    }

    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|d| d.severity == severity).count()
    }

    pub fn has_errors(&self) -> bool {
        self.errors() > 0
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// Sorts by file, then position, keeping the reading order within a place.
    pub fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (&a.path, a.position).cmp(&(&b.path, b.position)));
    }

    /// Prints every diagnostic (notes and warnings only when `all` is true).
    pub fn print(&self, out: &mut dyn Write, style: Style, all: bool) -> std::io::Result<()> {
        for d in &self.items {
            if d.is_error() || all {
                writeln!(out, "{}", style.paint(d))?;
            }
        }
        Ok(())
    }
}

/// Whether diagnostics are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Color,
}

impl Style {
    /// The diagnostic as one line, coloured when the style says so.
    pub fn paint(self, d: &Diagnostic) -> String {
        if self == Style::Plain {
            return d.to_string();
        }
        let (open, label) = match d.severity {
            Severity::Error => ("\x1b[1;31m", "error"),
            Severity::Warning => ("\x1b[1;33m", "warning"),
            Severity::Note => ("\x1b[1;36m", "note"),
        };
        let place = d.to_string();
        let place = place.split_at(place.len() - d.message.len()).0;
        let place = place
            .trim_end_matches("warning: ")
            .trim_end_matches("note: ");
        format!("\x1b[1m{place}\x1b[0m{open}{label}:\x1b[0m {}", d.message)
    }

    /// Paints a one-line summary label (`error:`/`warning:`) for the end of a run.
    pub fn label(self, severity: Severity) -> &'static str {
        match (self, severity) {
            (Style::Plain, Severity::Error) => "error:",
            (Style::Plain, Severity::Warning) => "warning:",
            (Style::Color, Severity::Error) => "\x1b[1;31merror:\x1b[0m",
            (Style::Color, Severity::Warning) => "\x1b[1;33mwarning:\x1b[0m",
            (Style::Plain, Severity::Note) => "note:",
            (Style::Color, Severity::Note) => "\x1b[1;36mnote:\x1b[0m",
        }
    }
}

/// Shows `path` relative to `root` when it lies inside it.
pub fn display_path(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_as_path_line_col_message() {
        let d = Diagnostic::error("content/a.md", "unclosed quote").at(3, 8);
        assert_eq!(d.to_string(), "content/a.md:3:8: unclosed quote");
    }

    #[test]
    fn warnings_say_so_and_position_is_optional() {
        let d = Diagnostic::warning("content/a.md", "no date");
        assert_eq!(d.to_string(), "content/a.md: warning: no date");
        let row = Diagnostic::error("subscribers.csv", "bad address").at_line(7);
        assert_eq!(row.to_string(), "subscribers.csv:7: bad address");
    }

    #[test]
    fn colour_keeps_the_text() {
        let d = Diagnostic::warning("a.md", "no date").at(1, 1);
        let painted = Style::Color.paint(&d);
        assert!(painted.contains("a.md:1:1: "), "{painted}");
        assert!(painted.ends_with("no date"), "{painted}");
    }
}
