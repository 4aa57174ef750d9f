//! Command `gazette explain EMAIL`: one reader's digest as it would be made
//! now, with their segment, variants, and every score taken apart.

use std::fmt::Write;

use anyhow::Result;

use super::Invocation;
use crate::diagnostics::Report;
use crate::exit::Exit;

use crate::audience::segments::segment_of;
use crate::audience::subscribers::Subscriber;
use crate::config::{Config, Segment, Weights};
use crate::select::{Basis, Index, Issue, Mode, Pick, Reader, digest, variant};

/// The issue line shared by both reports.
pub(super) fn issue_line(config: &Config, issue: &Issue) -> String {
    let window = match issue.basis {
        Basis::Since(since) => format!(
            "published after {}",
            since.with_timezone(&config.site.timezone).to_rfc3339()
        ),
        Basis::First { latest } => format!("first issue: the latest {latest}"),
        Basis::Unseen | Basis::Frozen => "not in an earlier issue".to_string(),
    };
    let posts = match issue.posts.len() {
        1 => "1 new post".to_string(),
        n => format!("{n} new posts"),
    };
    format!("issue {}: {posts} ({window})", issue.id)
}

/// Runs `explain EMAIL`; `since` as `--since` gives it.
pub fn run(inv: &Invocation, email: &str, since: Option<&str>) -> Result<Exit> {
    let mut report = Report::default();
    let (config, loaded, since) = match inv.load_with_since(&mut report, since)? {
        Ok(loaded) => loaded,
        Err(exit) => return Ok(exit),
    };
    let (issue, index) = inv.issue(&config, &loaded.library, since, &mut report)?;
    let wanted = email.trim().to_lowercase();
    let mut found = None;
    let read = inv.read_audience(&config, &mut report, &mut |subscriber| {
        if found.is_none() && subscriber.email.to_lowercase() == wanted {
            found = Some(subscriber);
        }
    })?;
    inv.print(&report, false)?;
    if !read {
        return Ok(Exit::BadInput);
    }
    let Some(subscriber) = found else {
        let path = inv.shown(&inv.root.join(&config.audience.file));
        inv.error(format_args!(
            "no subscriber with address '{email}' in {}",
            path.display()
        ));
        return Ok(Exit::BadInput);
    };
    out!("{}", text(&config, &issue, &index, &subscriber))?;
    Ok(super::exit_of(&report))
}

/// `gazette explain EMAIL`: one reader's segment, variants and picks, with
/// scores and reasons.
fn text(config: &Config, issue: &Issue, index: &Index, subscriber: &Subscriber) -> String {
    let mut out = String::new();
    let segment = segment_of(subscriber, &config.segments);
    let name = subscriber.name.as_deref().unwrap_or("(no name)");
    let _ = writeln!(out, "{} — {name}", subscriber.email);
    let _ = writeln!(out, "segment: {} ({})", segment.id, segment.name);
    let interests: Vec<&str> = subscriber
        .interests
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    let _ = writeln!(
        out,
        "interests: {}",
        if interests.is_empty() {
            "none".to_string()
        } else {
            interests.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "personalization: {}",
        if subscriber.personalize { "on" } else { "off" }
    );
    let _ = writeln!(out, "status: {}", subscriber.status.as_str());
    if !subscriber.status.mailable() {
        let _ = writeln!(out, "gets no email: only active subscribers are mailed");
        return out;
    }
    write_variants(&mut out, segment, &issue.id, &subscriber.email);
    let _ = writeln!(out, "{}", issue_line(config, issue));
    let reader = Reader {
        interests: &subscriber.interests,
        personalize: subscriber.personalize,
    };
    let (mode, picks) = digest(index, segment, reader, &config.digest);
    if picks.is_empty() {
        let _ = writeln!(out, "no new posts: no email this issue");
        return out;
    }
    let _ = writeln!(out, "{}", mode.describe());
    write_picks(&mut out, &picks, mode, Some(config.digest.weights));
    out
}

fn write_variants(out: &mut String, segment: &Segment, issue: &str, email: &str) {
    if let Some(subject) = variant::choose(&segment.subjects, issue, email, "subject") {
        let _ = writeln!(out, "subject: variant {}: {}", subject.id, subject.value);
    }
    match variant::choose(&segment.ctas, issue, email, "cta") {
        Some(cta) => {
            let _ = writeln!(
                out,
                "call to action: variant {}: {} → {}",
                cta.id, cta.value.text, cta.value.url
            );
        }
        None => {
            let _ = writeln!(out, "call to action: none");
        }
    }
}

pub(super) fn write_picks(out: &mut String, picks: &[Pick], mode: Mode, parts: Option<Weights>) {
    let ranked = matches!(mode, Mode::Personal | Mode::Segment);
    for (n, pick) in picks.iter().enumerate() {
        let post = pick.post;
        let _ = writeln!(
            out,
            "  {}. {} ({}, {})",
            n + 1,
            post.title,
            post.slug,
            post.date.format("%Y-%m-%d")
        );
        let s = pick.score;
        if let Some(w) = parts.filter(|_| ranked) {
            let _ = writeln!(
                out,
                "     score {} = ({} + {} × tags {:.2} + {} × text {:.2}) × recency {}",
                number(s.total),
                w.base,
                w.tags,
                s.tags,
                w.text,
                s.text,
                number(s.recency)
            );
        } else if ranked {
            let _ = writeln!(out, "     score {}", number(s.total));
        }
        let _ = writeln!(out, "     {}", pick.reason.text());
    }
}

/// Three decimals, or three significant digits for small numbers, so that
/// old posts' scores still compare.
fn number(x: f64) -> String {
    if x == 0.0 || x >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}
