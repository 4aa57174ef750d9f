//! Command `gazette init [DIR]`: scaffolds a project that `check`, `feeds`,
//! `segments` and `preview` accept at once, with the default templates
//! written out to edit. Existing files are never overwritten.

use std::path::Path;

use anyhow::{Context, Result};

use crate::atomic_file::write_atomic;
use crate::clock::Clock;
use crate::exit::Exit;
use crate::render::templates::{DEFAULTS, DIR};

/// The scaffold: path inside the project and contents.
const FILES: [(&str, &str); 3] = [
    ("gazette.yaml", include_str!("../scaffold/gazette.yaml")),
    (
        "subscribers.csv",
        include_str!("../scaffold/subscribers.csv"),
    ),
    (
        "content/hello-gazette.md",
        include_str!("../scaffold/content/hello-gazette.md"),
    ),
];

/// Every file `init` writes: the scaffold and the default templates.
fn files() -> Vec<(String, &'static str)> {
    let templates = DEFAULTS
        .iter()
        .map(|(name, text)| (format!("{DIR}/{name}"), *text));
    FILES
        .iter()
        .map(|(name, text)| (name.to_string(), *text))
        .chain(templates)
        .collect()
}

/// Creates the project in `dir`; refuses (exit 1) if any scaffold file exists.
pub fn run(dir: &Path, clock: &Clock, quiet: bool) -> Result<Exit> {
    let files = files();
    let existing: Vec<String> = files
        .iter()
        .map(|(name, _)| dir.join(name))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() {
        for path in &existing {
            eprintln!("{path}: error: already exists; gazette init never overwrites files");
        }
        eprintln!("error: nothing created");
        return Ok(Exit::BadInput);
    }
    let today = clock.now().format("%Y-%m-%d").to_string();
    for (name, text) in &files {
        // Only the scaffold has placeholders; templates are written as they are.
        let text = if name.starts_with(DIR) {
            (*text).to_string()
        } else {
            text.replace("{date}", &today)
        };
        write_atomic(&dir.join(name), text.as_bytes())
            .with_context(|| format!("cannot create {name}"))?;
    }
    if !quiet {
        outln!("created a gazette project in {}", dir.display())?;
        for (name, _) in &files {
            outln!("  {name}")?;
        }
        outln!(
            "next: edit gazette.yaml, then run `gazette check`, `gazette feeds` and `gazette preview`"
        )?;
    }
    Ok(Exit::Done)
}
