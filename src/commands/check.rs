//! Command `gazette check [--strict]`: config, content, subscribers and
//! templates validated, every problem printed as `PATH:LINE:COL: message`.

use anyhow::Result;

use super::{Invocation, count};
use crate::audience::subscribers;
use crate::config::Config;
use crate::content::Loaded;
use crate::diagnostics::{Diagnostic, Report, Severity};
use crate::exit::Exit;
use crate::render::check::{TemplateCheck, templates};

/// Runs `check`; with `strict`, warnings fail too.
pub fn run(inv: &Invocation, strict: bool) -> Result<Exit> {
    let mut report = Report::default();
    let loaded = inv.load(&mut report);
    if let Some((config, loaded)) = &loaded {
        check_project(inv, config, loaded, &mut report);
    }
    inv.print(&report, true)?;
    let failed = report.has_errors() || (strict && report.warnings() > 0);
    if !inv.quiet {
        let posts = loaded.as_ref().map_or(0, |(_, l)| l.library.posts.len());
        let skipped = report
            .items()
            .iter()
            .filter(|d| d.severity == Severity::Note)
            .count();
        outln!(
            "{} ready, {skipped} skipped: {}, {}{}",
            count(posts, "post"),
            count(report.errors(), "error"),
            count(report.warnings(), "warning"),
            if strict && report.warnings() > 0 {
                " (--strict: warnings fail)"
            } else {
                ""
            }
        )?;
    }
    Ok(if failed { Exit::BadInput } else { Exit::Done })
}

/// What a loaded project adds: the subscribers file, the templates, and
/// pinned posts that do not exist.
fn check_project(inv: &Invocation, config: &Config, loaded: &Loaded, report: &mut Report) {
    let path = inv.root.join(&config.audience.file);
    let shown = inv.shown(&path);
    // A project that only publishes feeds has no subscribers file; one
    // that names a file must have it.
    let mut attrs: Vec<String> = Vec::new();
    let audience = path.exists();
    if audience {
        report.extend(subscribers::read(&path, &shown, &mut |subscriber| {
            subscribers::add_columns(&mut attrs, &subscriber.attrs);
        }));
    } else if config.audience.named {
        report.push(Diagnostic::error(
            shown,
            "subscribers file not found (named by audience.file in gazette.yaml)",
        ));
    }
    let config_shown = inv.config_shown();
    report.extend(templates(TemplateCheck {
        config,
        root: &inv.root,
        config_shown: &config_shown,
        library: &loaded.library,
        attrs,
        audience,
        sending: config.delivery.smtp.is_some()
            || std::env::var_os("GAZETTE_SMTP_URL").is_some_and(|v| !v.is_empty()),
        now: inv.clock.now(),
    }));
    for segment in &config.segments {
        for slug in &segment.pinned {
            if !loaded.library.posts.iter().any(|p| p.slug == *slug) {
                report.push(Diagnostic::warning(
                    &config_shown,
                    format!(
                        "segment '{}' pins '{slug}', which is not a published post",
                        segment.id
                    ),
                ));
            }
        }
    }
}
