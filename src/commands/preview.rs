//! Command `gazette preview [--out DIR] [--open]`: every segment and
//! variant rendered for a representative reader into a folder — `.html`, `.txt` and `.eml` each, and the `.mjml`
//! the HTML came from — with an `index.html` gallery, to look at before
//! anything is sent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, FixedOffset};

use super::{Invocation, count};
use crate::atomic_file::write_atomic;
use crate::audience::segments::segment_of;
use crate::audience::subscribers;
use crate::audience::subscribers::{Status, Subscriber};
use crate::audience::suppressed::Suppressed;
use crate::config::{Config, Segment};
use crate::diagnostics::{Diagnostic, Report, Severity};
use crate::exit::Exit;
use crate::render::splice::escape_html;
use crate::render::{Email, Renderer};
use crate::select::{Index, Reader, digest};
use crate::unsubscribe::Secret;

/// Runs `preview`: renders into `out` (default `preview/`), and with
/// `open` opens the gallery in a browser.
pub fn run(inv: &Invocation, out: Option<PathBuf>, open: bool) -> Result<Exit> {
    let mut report = Report::default();
    let Some((config, loaded)) = inv.load(&mut report).filter(|_| !report.has_errors()) else {
        inv.print(&report, false)?;
        return Ok(Exit::BadInput);
    };
    let now = inv.clock.now();
    let (issue, index) = inv.issue(&config, &loaded.library, None, &mut report)?;
    let mut readers = PreviewReaders::default();
    let mut attrs: Vec<String> = Vec::new();
    let path = inv.root.join(&config.audience.file);
    // A project without a subscribers file still previews, for a stand-in
    // reader of each segment.
    if path.exists() {
        let suppressed = Suppressed::load(&inv.root)?;
        report.extend(
            suppressed.read(&path, &inv.shown(&path), &mut |subscriber| {
                subscribers::add_columns(&mut attrs, &subscriber.attrs);
                readers.add(&config, subscriber);
            }),
        );
    }
    let secret = Secret::load(&inv.root)?;
    let config_shown = inv.config_shown();
    let (renderer, problems) =
        Renderer::new(&config, &inv.root, &config_shown, &issue, secret, attrs);
    report.extend(problems);
    let Some(mut renderer) = renderer else {
        inv.print(&report, false)?;
        return Ok(Exit::BadInput);
    };
    renderer.keep_sources();
    let out = inv
        .root
        .join(out.unwrap_or_else(|| PathBuf::from("preview")));
    let (entries, problems) = write(&config, &renderer, &index, &readers, &out, now)?;
    report.extend(problems);
    report.extend(renderer.take_warnings());
    inv.print(&report, false)?;
    if report.has_errors() {
        return Ok(Exit::BadInput);
    }
    let shown = inv.shown(&out);
    if issue.posts.is_empty() && !inv.quiet {
        // The issue `send` would make now: after the last one, maybe none.
        outln!(
            "nothing new since the last issue: no digest to preview (`gazette check` checks the templates)"
        )?;
    }
    if !inv.quiet {
        outln!(
            "wrote {} to {} (open {})",
            count(entries.len(), "preview"),
            shown.display(),
            shown.join("index.html").display()
        )?;
    }
    if open {
        open_in_browser(inv, &out.join("index.html"));
    }
    Ok(Exit::Done)
}

/// Opens `index` with the desktop's opener, or says how to open it.
fn open_in_browser(inv: &Invocation, index: &Path) {
    let opened = std::process::Command::new("xdg-open")
        .arg(index)
        .status()
        .or_else(|_| std::process::Command::new("open").arg(index).status());
    if !opened.is_ok_and(|status| status.success()) {
        eprintln!(
            "{} cannot open a browser here; open {} yourself",
            inv.style.label(Severity::Warning),
            index.display()
        );
    }
}

/// Per segment: how many readers it would mail, and the first of them.
#[derive(Debug, Default)]
pub struct PreviewReaders {
    pub readers: BTreeMap<String, (usize, Option<Subscriber>)>,
}

impl PreviewReaders {
    /// Counts `subscriber` into its segment, keeping the first mailable one.
    pub fn add(&mut self, config: &Config, subscriber: Subscriber) {
        if !subscriber.status.mailable() {
            return;
        }
        let segment = segment_of(&subscriber, &config.segments);
        let entry = self.readers.entry(segment.id.clone()).or_default();
        entry.0 += 1;
        entry.1.get_or_insert(subscriber);
    }
}

/// One previewed email and where its files are.
#[derive(Debug)]
pub struct Entry {
    pub segment: String,
    pub variant: String,
    pub recipients: usize,
    pub subject: String,
    pub preheader: String,
    /// File name without extension.
    pub stem: String,
}

/// Renders every segment and variant into `out`; returns what was written.
pub fn write(
    config: &Config,
    renderer: &Renderer,
    index: &Index,
    audience: &PreviewReaders,
    out: &Path,
    date: DateTime<FixedOffset>,
) -> Result<(Vec<Entry>, Vec<Diagnostic>)> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for segment in &config.segments {
        let (recipients, reader) = audience
            .readers
            .get(&segment.id)
            .map_or((0, None), |(n, s)| (*n, s.clone()));
        let reader = reader.unwrap_or_else(|| sample_reader(segment));
        let who = Reader {
            interests: &reader.interests,
            personalize: reader.personalize,
        };
        let (_, picks) = digest(index, segment, who, &config.digest);
        if picks.is_empty() {
            continue;
        }
        let ctas: Vec<Option<_>> = if segment.ctas.is_empty() {
            vec![None]
        } else {
            segment.ctas.iter().map(Some).collect()
        };
        for subject in &segment.subjects {
            for cta in &ctas {
                let compiled = match renderer.compile(segment, &picks, subject, *cta) {
                    Ok(compiled) => compiled,
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                };
                let email = match renderer.fill(&compiled, segment, &reader, &picks) {
                    Ok(email) => email,
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                };
                let stem = if email.variant == "default" {
                    segment.id.clone()
                } else {
                    format!("{}-{}", segment.id, email.variant)
                };
                write_email(renderer, &email, out, &stem, date)?;
                entries.push(Entry {
                    segment: segment.id.clone(),
                    variant: email.variant.clone(),
                    recipients,
                    subject: email.subject.clone(),
                    preheader: email.preheader.clone(),
                    stem,
                });
            }
        }
    }
    write_atomic(
        &out.join("index.html"),
        gallery(config, &entries).as_bytes(),
    )?;
    Ok((entries, problems))
}

fn write_email(
    renderer: &Renderer,
    email: &Email,
    out: &Path,
    stem: &str,
    date: DateTime<FixedOffset>,
) -> Result<()> {
    let file = |ext: &str| -> PathBuf { out.join(format!("{stem}.{ext}")) };
    let (Some(html), Some(text), Some(mjml)) = (email.html(), email.text(), email.mjml()) else {
        anyhow::bail!("the renderer kept no HTML, text or MJML to preview");
    };
    write_atomic(&file("html"), html.as_bytes())?;
    write_atomic(&file("txt"), text.as_bytes())?;
    write_atomic(&file("mjml"), mjml.as_bytes())?;
    write_atomic(&file("eml"), &renderer.eml(email, date)?)?;
    Ok(())
}

/// The reader shown for a segment nobody is in yet.
fn sample_reader(segment: &Segment) -> Subscriber {
    Subscriber {
        email: "reader@example.com".into(),
        name: Some("Sample Reader".into()),
        segment: Some(segment.id.clone()),
        interests: segment.interests.clone(),
        status: Status::Active,
        timezone: None,
        locale: None,
        personalize: true,
        attrs: BTreeMap::new(),
        line: 0,
    }
}

/// `index.html`: one row per previewed email.
fn gallery(config: &Config, entries: &[Entry]) -> String {
    let e = |text: &str| {
        let mut out = String::new();
        escape_html(text, &mut out);
        out
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Preview — {}</title>\n<style>\n\
         body {{ font: 15px/1.5 system-ui, sans-serif; margin: 2rem; color-scheme: light dark; }}\n\
         table {{ border-collapse: collapse; width: 100%; }}\n\
         th, td {{ text-align: left; padding: .5rem; border-bottom: 1px solid #8884; vertical-align: top; }}\n\
         .preheader {{ color: #888; }}\n</style>\n</head>\n<body>\n<h1>Preview — {}</h1>\n",
        e(&config.site.language),
        e(&config.site.title),
        e(&config.site.title)
    );
    if entries.is_empty() {
        html.push_str("<p>No segment has new posts: no email would be sent.</p>\n");
    } else {
        html.push_str(
            "<table>\n<thead><tr><th>Segment</th><th>Variant</th><th>Recipients</th>\
             <th>Subject and preheader</th><th>Files</th></tr></thead>\n<tbody>\n",
        );
        for entry in entries {
            let _ = writeln!(
                html,
                "<tr class=\"email\"><td>{}</td><td>{}</td><td>{}</td>\
                 <td><div class=\"subject\">{}</div><div class=\"preheader\">{}</div></td>\
                 <td><a href=\"{stem}.html\">HTML</a> · <a href=\"{stem}.txt\">text</a> · \
                 <a href=\"{stem}.eml\">.eml</a></td></tr>",
                e(&entry.segment),
                e(&entry.variant),
                entry.recipients,
                e(&entry.subject),
                e(&entry.preheader),
                stem = e(&entry.stem),
            );
        }
        html.push_str("</tbody>\n</table>\n");
    }
    html.push_str("</body>\n</html>\n");
    html
}
