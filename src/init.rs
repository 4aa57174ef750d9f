//! Init: `gazette init DIR` scaffolds a project that `check` and `feeds`
//! accept at once. Existing files are never overwritten.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::Exit;
use crate::clock::Clock;
use crate::output::write_atomic;

/// The scaffold: path inside the project and contents.
const FILES: [(&str, &str); 3] = [
    ("gazette.yaml", include_str!("scaffold/gazette.yaml")),
    ("subscribers.csv", include_str!("scaffold/subscribers.csv")),
    (
        "content/hello-gazette.md",
        include_str!("scaffold/content/hello-gazette.md"),
    ),
];

/// Creates the project in `dir`; refuses (exit 1) if any scaffold file exists.
pub fn run(dir: &Path, clock: &Clock, quiet: bool) -> Result<Exit> {
    let existing: Vec<String> = FILES
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
    for (name, text) in FILES {
        let text = text.replace("{date}", &today);
        write_atomic(&dir.join(name), text.as_bytes())?;
    }
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates)
        .with_context(|| format!("cannot create {}", templates.display()))?;
    if !quiet {
        println!("created a gazette project in {}", dir.display());
        for (name, _) in FILES {
            println!("  {name}");
        }
        println!("  templates/");
        println!("next: edit gazette.yaml, then run `gazette check` and `gazette feeds`");
    }
    Ok(Exit::Done)
}
