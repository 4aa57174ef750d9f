//! Content stage: the loading walk — find the post files under the content
//! folder, read them as the run wants, gather the library.
//!
//! Imports: its siblings, `config`, `clock`, `diagnostics`.

use std::path::{Path, PathBuf};

use super::library::{Library, Loaded, gather};
use super::passes::{Want, read_as_wanted};
use super::reader::{PostReader, kind_of};
use super::undated::GitDates;
use crate::clock::Clock;
use crate::config::Config;
use crate::diagnostics::{Diagnostic, display_path};

/// Reads the posts under the configured content folder of `root`: every
/// one whole, or as `want` says.
pub fn load(config: &Config, root: &Path, clock: &Clock, want: Want) -> Loaded {
    let dir = root.join(&config.content.dir);
    let mut diagnostics = Vec::new();
    if !dir.is_dir() {
        let shown = display_path(root, &dir);
        diagnostics.push(Diagnostic::error(
            shown,
            "content folder not found (set content.dir in gazette.yaml)",
        ));
        return Loaded {
            library: Library::default(),
            diagnostics,
        };
    }
    let reader = PostReader {
        config,
        root,
        dir: &dir,
        now: clock.now(),
        git: GitDates::new(&dir),
    };
    let paths = post_files(root, &dir, &mut diagnostics);
    let outcomes = read_as_wanted(&reader, &paths, want);
    let library = gather(root, reader.now, &paths, outcomes, &mut diagnostics);
    Loaded {
        library,
        diagnostics,
    }
}

/// The Markdown and HTML files under `dir`, sorted by name, following
/// links and leaving out hidden files and folders; a folder that cannot be
/// read is an error in `diagnostics`.
fn post_files(root: &Path, dir: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let path = err.path().map_or(dir.to_path_buf(), Path::to_path_buf);
                diagnostics.push(Diagnostic::error(
                    display_path(root, &path),
                    format!("cannot read: {err}"),
                ));
                continue;
            }
        };
        if entry.file_type().is_file() && kind_of(entry.path()).is_some() {
            paths.push(entry.into_path());
        }
    }
    paths
}
