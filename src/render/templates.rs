//! Render stage: the templates — built-in defaults, the project's
//! `templates/` overriding them by name, and the subject and preheader
//! templates from gazette.yaml — compiled once with Tera 2, with every
//! error placed at its file, line and column.
//!
//! Imports config, diagnostics and its siblings in `render`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mrml::prelude::parser::ParserOptions;
use mrml::prelude::parser::memory_loader::MemoryIncludeLoader;
use tera::{Context, Tera};

use super::template_errors::located;
use super::template_sources::{self, Source};
use super::trace::{self, Trace};
use crate::config::Config;
use crate::diagnostics::Diagnostic;

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
pub type TemplatePlace = (PathBuf, usize, usize);

/// Where a template's text is.
#[derive(Debug, Clone)]
pub(super) enum Origin {
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
        let mut tera = Tera::default();
        // MJML is markup: every value is escaped unless marked `| safe`.
        tera.autoescape_on(vec![".mjml.tera"]);
        let found = template_sources::find(config, root, config_shown);
        let mut problems = found.problems;
        let (origins, texts) = add_all(&mut tera, found.templates, &mut problems);
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
            includes: found.includes,
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
    pub fn place(&self, offset: usize) -> Option<TemplatePlace> {
        let (id, line, mark, before) = self.trace.line_of(offset)?;
        let (name, text) = self.templates.sources.get(id)?;
        let at = self.trace.text.get(offset..).unwrap_or("");
        let template_line = text.lines().nth(line - 1).unwrap_or("");
        let col = trace::column(template_line, mark, before, at).unwrap_or(0);
        Some((self.templates.shown(name), line, col))
    }
}

/// Adds `sources` to `tera` one at a time, so each error is placed in
/// its own template; a template whose include is not added yet is tried
/// again after the others, until a round adds nothing. Returns where each
/// template came from and each one's name and text, in the order added.
fn add_all(
    tera: &mut Tera,
    sources: Vec<Source>,
    problems: &mut Vec<Diagnostic>,
) -> (HashMap<String, Origin>, Vec<(String, String)>) {
    let mut origins = HashMap::new();
    let mut texts = Vec::with_capacity(sources.len());
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
            return (origins, texts);
        }
        pending = failed
            .into_iter()
            .map(|(name, text, origin, _)| (name, text, origin))
            .collect();
    }
}
