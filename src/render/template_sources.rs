//! Render stage: where a project's templates come from — the built-in
//! defaults, the project's `templates/` overriding them by name (and its
//! `*.mjml` includes), and the subject and preheader templates of
//! gazette.yaml. Imports config, diagnostics and its siblings in `render`.

use std::collections::HashMap;
use std::path::Path;

use super::templates::{DEFAULTS, DIR, Origin, preheader_name, subject_name};
use crate::config::Config;
use crate::diagnostics::{Diagnostic, display_path};

/// A template's Tera name, text and origin.
pub(super) type Source = (String, String, Origin);

/// Every template a project has, before compiling.
pub(super) struct Found {
    /// In load order: the built-in ones, the project's, gazette.yaml's.
    pub templates: Vec<Source>,
    /// `templates/*.mjml` files, by the names `<mj-include>` uses.
    pub includes: HashMap<String, String>,
    /// Files that could not be read.
    pub problems: Vec<Diagnostic>,
}

/// The templates of the project at `root` under `config`; `config_shown`
/// names gazette.yaml in messages.
pub(super) fn find(config: &Config, root: &Path, config_shown: &Path) -> Found {
    let mut found = Found {
        templates: DEFAULTS
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string(), Origin::BuiltIn))
            .collect(),
        includes: HashMap::new(),
        problems: Vec::new(),
    };
    read_dir(root, &mut found);
    found.templates.extend(from_config(config, config_shown));
    found
}

/// The project's `templates/` files: `*.tera` replace the built-in
/// template of their name, `*.mjml` are includes.
fn read_dir(root: &Path, found: &mut Found) {
    let Ok(entries) = std::fs::read_dir(root.join(DIR)) else {
        return;
    };
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
                found.templates.retain(|(n, _, _)| *n != name);
                found.templates.push((name, text, Origin::File(shown)));
            }
            Ok(text) => {
                // MJML's usual spelling is relative: `./header.mjml`.
                found.includes.insert(format!("./{name}"), text.clone());
                found.includes.insert(name, text);
            }
            Err(err) => found
                .problems
                .push(Diagnostic::error(shown, format!("cannot read: {err}"))),
        }
    }
}

/// Each segment's subject variants and preheader, from gazette.yaml.
fn from_config(config: &Config, config_shown: &Path) -> Vec<Source> {
    let mut sources = Vec::new();
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
    sources
}
