//! Command `gazette feeds [--out DIR]`: RSS 2.0, Atom 1.0 and JSON Feed
//! written from the posts the feeds take.

use std::path::PathBuf;

use anyhow::Result;

use super::{Invocation, count};
use crate::content::{Head, Want};
use crate::diagnostics::Report;
use crate::exit::Exit;
use crate::feed;

/// Runs `feeds`; `out` overrides `feeds.out` of the config.
pub fn run(inv: &Invocation, out: Option<PathBuf>) -> Result<Exit> {
    let mut report = Report::default();
    let loaded = inv.load_config(&mut report).map(|config| {
        let wanted = |heads: &[&Head]| feed::wanted(&config, heads);
        let loaded = inv.load_content(&config, Want::Some(&wanted), &mut report);
        (config, loaded)
    });
    inv.print(&report, inv.verbose)?;
    let Some((config, loaded)) = loaded.filter(|_| !report.has_errors()) else {
        inv.error(format_args!(
            "{} found; no feed written",
            count(report.errors(), "problem")
        ));
        return Ok(Exit::BadInput);
    };
    let out = inv
        .root
        .join(out.unwrap_or_else(|| config.feeds.out.clone()));
    let files = feed::build(&config, &loaded.library)?;
    feed::write(&out, &files)?;
    if !inv.quiet {
        let shown = inv.shown(&out);
        if inv.verbose {
            for file in &files {
                let entries = count(file.entries, "entry");
                outln!("wrote {} ({entries})", shown.join(&file.path).display())?;
            }
        }
        outln!(
            "wrote {} to {} ({})",
            count(files.len(), "feed file"),
            shown.display(),
            count(loaded.library.published(), "post")
        )?;
    }
    Ok(Exit::Done)
}
