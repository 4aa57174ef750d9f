//! Render stage: the templates — built-in defaults, the project's
//! `templates/` overriding them by name, and the subject and preheader
//! templates from gazette.yaml — compiled once with Tera 2, with every
//! error placed at its file, line and column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mrml::prelude::parser::ParserOptions;
use mrml::prelude::parser::memory_loader::MemoryIncludeLoader;
use tera::{Context, ErrorKind, Tera};

use super::trace::{self, Trace};
use crate::config::Config;
use crate::diagnostics::{Diagnostic, display_path};

/// The folder of a project's own templates.
pub const DIR: &str = "templates";

/// The built-in templates, by name; `gazette init` writes them out.
pub const DEFAULTS: [(&str, &str); 2] = [
    ("digest.mjml.tera", include_str!("default/digest.mjml.tera")),
    ("digest.txt.tera", include_str!("default/digest.txt.tera")),
];

/// Every template of a project, compiled.
pub struct Templates {
    tera: Tera,
    /// Where each template came from, for messages.
    origins: HashMap<String, Origin>,
    /// `templates/*.mjml` files, for `<mj-include>` (and nothing else).
    includes: HashMap<String, String>,
    /// Each template's name and text, in load order, to [`Templates::trace`].
    sources: Vec<(String, String)>,
}

/// A template's output traced back to the template lines that produced it.
pub struct Traced<'a> {
    templates: &'a Templates,
    trace: Trace,
}

/// A place in a template: its file as shown, line, and column (0 when
/// only the line is known).
pub type Place = (PathBuf, usize, usize);

/// Where a template's text is.
#[derive(Debug, Clone)]
enum Origin {
    /// Built into gazette.
    BuiltIn,
    /// A file of the project.
    File(PathBuf),
    /// A value in gazette.yaml (subject or preheader), described.
    Config(PathBuf, String),
}

/// The Tera name of a segment's subject template for a variant.
pub fn subject_name(segment: &str, variant: &str) -> String {
    format!("subject:{segment}:{variant}")
}

/// The Tera name of a segment's preheader template.
pub fn preheader_name(segment: &str) -> String {
    format!("preheader:{segment}")
}

impl Templates {
    /// Compiles every template the config can use; `config_shown` names
    /// gazette.yaml in messages.
    pub fn load(
        config: &Config,
        root: &Path,
        config_shown: &Path,
    ) -> (Option<Templates>, Vec<Diagnostic>) {
        let mut problems = Vec::new();
        let mut tera = Tera::default();
        // MJML is markup: every value is escaped unless marked `| safe`.
        tera.autoescape_on(vec![".mjml.tera"]);
        let mut origins = HashMap::new();
        let mut sources: Vec<(String, String, Origin)> = DEFAULTS
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string(), Origin::BuiltIn))
            .collect();
        let mut includes = HashMap::new();
        let dir = root.join(DIR);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            entries.sort();
            for path in entries {
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
                else {
                    continue;
                };
                let is_template = name.ends_with(".tera");
                if !(is_template || name.ends_with(".mjml")) || !path.is_file() {
                    continue;
                }
                let shown = display_path(root, &path);
                match std::fs::read_to_string(&path) {
                    Ok(text) if is_template => {
                        sources.retain(|(n, _, _)| *n != name);
                        sources.push((name, text, Origin::File(shown)));
                    }
                    Ok(text) => {
                        // MJML's usual spelling is relative: `./header.mjml`.
                        includes.insert(format!("./{name}"), text.clone());
                        includes.insert(name, text);
                    }
                    Err(err) => {
                        problems.push(Diagnostic::error(shown, format!("cannot read: {err}")))
                    }
                }
            }
        }
        for segment in &config.segments {
            for variant in &segment.subjects {
                let what = format!(
                    "subject of segment '{}' (variant {})",
                    segment.id, variant.id
                );
                sources.push((
                    subject_name(&segment.id, &variant.id),
                    variant.value.clone(),
                    Origin::Config(config_shown.to_path_buf(), what),
                ));
            }
            let what = format!("preheader of segment '{}'", segment.id);
            let preheader = segment
                .preheader
                .clone()
                .unwrap_or_else(|| config.email.preheader.clone());
            sources.push((
                preheader_name(&segment.id),
                preheader,
                Origin::Config(config_shown.to_path_buf(), what),
            ));
        }
        let mut texts = Vec::with_capacity(sources.len());
        // One at a time, so each error is placed in its own template; a
        // template whose include is not added yet is tried again after the
        // others, until a round adds nothing.
        let mut pending = sources;
        loop {
            let tried = pending.len();
            let mut failed = Vec::new();
            for (name, text, origin) in pending {
                match tera.add_raw_template(&name, &text) {
                    Ok(()) => {
                        origins.insert(name.clone(), origin);
                        texts.push((name, text));
                    }
                    Err(err) => failed.push((name, text, origin, err)),
                }
            }
            if failed.is_empty() || failed.len() == tried {
                for (name, text, origin, err) in failed {
                    problems.push(located(&err, &origin));
                    origins.insert(name.clone(), origin);
                    texts.push((name, text));
                }
                break;
            }
            pending = failed
                .into_iter()
                .map(|(name, text, origin, _)| (name, text, origin))
                .collect();
        }
        for segment in &config.segments {
            for kind in ["mjml", "txt"] {
                let name = format!("{}.{kind}.tera", segment.template);
                if !origins.contains_key(&name) {
                    problems.push(Diagnostic::error(
                        config_shown,
                        format!(
                            "segment '{}' uses template '{}', but there is no {DIR}/{name}",
                            segment.id, segment.template
                        ),
                    ));
                }
            }
        }
        if problems.iter().any(Diagnostic::is_error) {
            return (None, problems);
        }
        let templates = Templates {
            tera,
            origins,
            includes,
            sources: texts,
        };
        (Some(templates), problems)
    }

    /// Renders template `name` with `context`; errors are placed in the
    /// template's file.
    pub fn render(&self, name: &str, context: &Context) -> Result<String, Diagnostic> {
        self.tera.render(name, context).map_err(|err| {
            let origin = self.origins.get(name).cloned().unwrap_or(Origin::BuiltIn);
            located(&err, &origin)
        })
    }

    /// `output`, which template `name` rendered with `context`, traced back
    /// to template lines by rendering again with every line marked; `None`
    /// when the marked render is not the same output.
    pub fn trace(&self, name: &str, context: &Context, output: &str) -> Option<Traced<'_>> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![".mjml.tera"]);
        for (id, (name, text)) in self.sources.iter().enumerate() {
            tera.add_raw_template(name, &trace::mark(text, id)?).ok()?;
        }
        let trace = Trace::strip(&tera.render(name, context).ok()?);
        (trace.text == output).then_some(Traced {
            templates: self,
            trace,
        })
    }

    /// Where template `name` is, as shown in messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        match self.origins.get(name) {
            Some(Origin::File(path)) => path.clone(),
            Some(Origin::Config(path, _)) => path.clone(),
            _ => PathBuf::from(format!("(built-in) {name}")),
        }
    }

    /// mrml's parser options: `<mj-include>` finds only `templates/*.mjml`.
    pub fn parser_options(&self) -> ParserOptions {
        ParserOptions {
            include_loader: Box::new(MemoryIncludeLoader::from(self.includes.clone())),
        }
    }
}

impl Traced<'_> {
    /// The template place of byte `offset` of the output.
    pub fn place(&self, offset: usize) -> Option<Place> {
        let (id, line, mark, before) = self.trace.line_of(offset)?;
        let (name, text) = self.templates.sources.get(id)?;
        let at = self.trace.text.get(offset..).unwrap_or("");
        let template_line = text.lines().nth(line - 1).unwrap_or("");
        let col = trace::column(template_line, mark, before, at).unwrap_or(0);
        Some((self.templates.shown(name), line, col))
    }
}

/// A Tera error at its place: the template file's line and column, or the
/// config value it came from.
fn located(err: &tera::Error, origin: &Origin) -> Diagnostic {
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
