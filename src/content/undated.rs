//! Content stage: the date of a post whose front matter states none — the
//! Jekyll file-name prefix, the file's first git commit, or its
//! modification time.
//!
//! Imports: its siblings only.

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, FixedOffset, Timelike};

use super::fields::FrontMatter;
use super::reader::PostReader;
use super::{dates, slug};

impl PostReader<'_> {
    /// A date for a post that states none: the Jekyll file-name prefix, the
    /// first git commit of the file, or its modification time (with a warning).
    pub(super) fn fallback_date(
        &self,
        path: &Path,
        relative: &Path,
        fm: &mut FrontMatter,
    ) -> Option<DateTime<FixedOffset>> {
        let tz = self.config.site.timezone;
        let prefixed = dates::jekyll_prefix(slug::stem_of(relative))
            .and_then(|(day, _)| dates::in_zone(day.and_hms_opt(0, 0, 0)?, tz))
            .filter(dates::in_range);
        if prefixed.is_some() {
            return prefixed;
        }
        if let Some(date) = self.git.first_commit(path) {
            fm.warn(
                None,
                format!(
                    "no date in front matter; using the date the file was first committed to git, {} (add `date:` to fix it)",
                    date.to_rfc3339()
                ),
            );
            return Some(date);
        }
        let modified = std::fs::metadata(path).and_then(|m| m.modified());
        match modified {
            Ok(time) => {
                let date = DateTime::<chrono::Utc>::from(time).fixed_offset();
                let date = date.with_nanosecond(0).unwrap_or(date);
                fm.warn(
                    None,
                    format!(
                        "no date in front matter; using the file's modification time, {} (add `date:` to fix it)",
                        date.to_rfc3339()
                    ),
                );
                Some(date)
            }
            Err(err) => {
                fm.error(
                    "date",
                    format!("no date in front matter, and no modification time: {err}"),
                );
                None
            }
        }
    }
}

/// First-commit dates of files, when the content folder is in a git work tree.
pub(super) struct GitDates {
    enabled: bool,
}

impl GitDates {
    pub(super) fn new(dir: &Path) -> GitDates {
        let inside = Command::new("git")
            .args(["rev-parse", "--is-inside-work-tree"])
            .current_dir(dir)
            .output()
            .is_ok_and(|out| out.status.success() && out.stdout.starts_with(b"true"));
        GitDates { enabled: inside }
    }

    /// The author date of the commit that added `path`, if any.
    fn first_commit(&self, path: &Path) -> Option<DateTime<FixedOffset>> {
        if !self.enabled {
            return None;
        }
        let dir = path.parent()?;
        let name = path.file_name()?;
        let out = Command::new("git")
            .args(["log", "--diff-filter=A", "--follow", "--format=%aI", "--"])
            .arg(name)
            .current_dir(dir)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        DateTime::parse_from_rfc3339(text.lines().last()?.trim()).ok()
    }
}
