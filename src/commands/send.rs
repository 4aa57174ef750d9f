//! Command `gazette send`: the feeds rewritten, then this issue delivered
//! to every reader — through the relay, or as `.eml` files in a dry run.
//! Holds the send lock and the shard claim for a real send, and maps how
//! the send ended to the exit code cron sees.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, FixedOffset};

use super::{Format, Invocation, Step, count};
use crate::audience::shard::Shard;
use crate::config::Config;
use crate::content::{Head, Loaded, Want};
use crate::deliver::smtp::SmtpSettings;
use crate::diagnostics::{Diagnostic, Report};
use crate::exit::Exit;
use crate::send::{self as sending, Run, SendEnd, Summary};
use crate::state::lock::{Lock, LockError};
use crate::{feed, select};

/// How `send` was asked to run.
pub struct SendOptions {
    pub dry_run: bool,
    /// Where `.eml` files go; `None` with `discard`.
    pub outbox: Option<PathBuf>,
    /// Render every message, then write nothing.
    pub discard: bool,
    pub shard: Shard,
    /// The relay from the command line or `GAZETTE_SMTP_URL`.
    pub smtp: Option<String>,
    /// `--since DATE`, as typed.
    pub since: Option<String>,
    /// Send although the audience is empty or shrank past
    /// `audience.max_shrink`.
    pub allow_shrink: bool,
    /// Finish the open issue only; never make a new one.
    pub retry_only: bool,
    /// Make a new ledger's first issue although the project shows signs
    /// of earlier sends.
    pub first_issue: bool,
    pub format: Format,
}

/// Runs `send`.
pub fn run(inv: &Invocation, options: SendOptions) -> Result<Exit> {
    // From the start: a signal while loading ends the process at once
    // (exit 75), one while sending stops it gracefully.
    if !options.dry_run {
        sending::signals::listen()?;
    }
    let mut report = Report::default();
    let (config, loaded, since) = match load(inv, &options, &mut report)? {
        Ok(project) => project,
        Err(exit) => return Ok(exit),
    };
    let relay = options
        .smtp
        .clone()
        .or_else(|| config.delivery.smtp.clone());
    // A cron job that lost its relay must not look fine every week.
    if relay.is_none() && !options.dry_run {
        inv.error(
            "no relay to send through: give one with --smtp URL, GAZETTE_SMTP_URL or \
             delivery.smtp in the config, or run `gazette send --dry-run` to write the messages \
             to files; nothing was sent",
        );
        return Ok(Exit::Usage);
    }
    // One cron line keeps feeds and digests in step.
    let feeds_out = inv.root.join(&config.feeds.out);
    feed::write(&feeds_out, &feed::build(&config, &loaded.library)?)?;
    let outbox = inv.root.join(
        options
            .outbox
            .clone()
            .unwrap_or_else(|| PathBuf::from("outbox")),
    );
    let config_shown = inv.config_shown();
    let run = Run {
        root: &inv.root,
        config: &config,
        config_shown: &config_shown,
        library: &loaded.library,
        now: inv.clock.now(),
        since,
        outbox: (!options.discard).then_some(outbox.as_path()),
        shard: options.shard,
        allow_shrink: options.allow_shrink,
        retry_only: options.retry_only,
    };
    let (summary, problems, exit) = match relay.filter(|_| !options.dry_run) {
        None => {
            let (summary, problems) = sending::dry_run(&run)?;
            (summary, problems, Exit::Done)
        }
        Some(url) => match deliver(inv, &run, &url, options.first_issue)? {
            Ok(sent) => sent,
            Err(exit) => return Ok(exit),
        },
    };
    report.extend(problems);
    inv.print(&report, false)?;
    match options.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&summary)?)?,
        Format::Text if !inv.quiet => out!("{}", summary.text())?,
        Format::Text => {}
    }
    Ok(if exit == Exit::Done && report.has_errors() {
        Exit::BadInput
    } else {
        exit
    })
}

/// The config, the posts (the ones the issue and the feeds take read
/// whole, the rest by their front matter only) and `--since` read.
type SendInput = (Config, Loaded, Option<DateTime<FixedOffset>>);

/// Loads the [`SendInput`]; ends the command (reported) on a bad config,
/// bad content, or a `--since` that is not a date.
fn load(inv: &Invocation, options: &SendOptions, report: &mut Report) -> Step<SendInput> {
    let Some(config) = inv.load_config(report) else {
        return nothing_sent(inv, report);
    };
    let Ok(since) = inv.since(&config, options.since.as_deref()) else {
        return Ok(Err(Exit::Usage));
    };
    let history = sending::history(&inv.root)?;
    let window = select::Window::new(&config, inv.clock.now(), since);
    let wanted = |heads: &[&Head]| {
        let mut wanted = feed::wanted(&config, heads);
        let candidates = heads.iter().map(|h| select::Candidate::from(*h));
        for i in select::fresh(candidates, &history, &window) {
            wanted[i] = true;
        }
        wanted
    };
    let content = inv.load_content(&config, Want::Some(&wanted), report);
    if report.has_errors() {
        return nothing_sent(inv, report);
    }
    Ok(Ok((config, content, since)))
}

/// Prints the problems that stop the send.
fn nothing_sent<T>(inv: &Invocation, report: &Report) -> Step<T> {
    inv.print(report, false)?;
    inv.error(format_args!(
        "{} found; nothing sent",
        count(report.errors(), "problem")
    ));
    Ok(Err(Exit::BadInput))
}

/// A real send through the relay at `url`, under the send lock and the
/// shard claim: the summary, the problems and the exit; the command ends
/// (reported) when the send cannot start.
fn deliver(
    inv: &Invocation,
    run: &Run,
    url: &str,
    first_issue: bool,
) -> Step<(Summary, Vec<Diagnostic>, Exit)> {
    let password = std::env::var("GAZETTE_SMTP_PASSWORD").ok();
    let settings = match SmtpSettings::parse(url, password, run.config.delivery.timeout) {
        Ok(settings) => settings,
        Err(err) => {
            inv.error(format_args!("{err:#}"));
            return Ok(Err(Exit::Usage));
        }
    };
    let _lock = match Lock::acquire(&inv.root) {
        Ok(lock) => lock,
        Err(LockError::Held(pid)) => {
            inv.error(format_args!(
                "another send is in progress (pid {pid}); try again later"
            ));
            return Ok(Err(Exit::TryLater));
        }
        Err(LockError::Io(err)) => return Err(err),
    };
    if let Err(claimed) = sending::shard::claim(&inv.root, run.shard) {
        inv.error(format_args!("{claimed:#}"));
        return Ok(Err(Exit::Usage));
    }
    let checked = sending::state_guard::before_send(&inv.root, first_issue)?;
    if checked.refused {
        let mut report = Report::default();
        report.extend(checked.problems);
        return nothing_sent(inv, &report);
    }
    sending::signals::arm();
    let (summary, sent_problems, ended) = sending::send(run, settings, inv.quiet)?;
    // A run that made or touched no issue (nothing new, a refused file)
    // changed nothing the sync before it did not already write.
    if !summary.posts.is_empty() {
        sending::state_guard::after_send(&inv.root)?;
    }
    let mut problems = checked.problems;
    problems.extend(sent_problems);
    // A signal that came when nothing was left to stop still says "later".
    let ended = match (ended, sending::signals::received()) {
        (SendEnd::Done, Some(signal)) => SendEnd::Interrupted(signal),
        (ended, _) => ended,
    };
    let failed: u64 = summary.segments.values().map(|c| c.failed).sum();
    let exit = match ended {
        SendEnd::Unreachable | SendEnd::Interrupted(_) => Exit::TryLater,
        SendEnd::LoginRefused => {
            inv.error(
                "the relay refused the login; check the user in the SMTP URL and GAZETTE_SMTP_PASSWORD (nothing was sent)",
            );
            Exit::BadInput
        }
        SendEnd::AudienceRefused => Exit::BadInput,
        SendEnd::RelayProblem(stop) => {
            inv.error(sending::relay_problem_text(&stop));
            if stop.problem.permanent {
                Exit::BadInput
            } else {
                Exit::TryLater
            }
        }
        SendEnd::Done if failed > 0 => Exit::BadInput,
        SendEnd::Done => Exit::Done,
    };
    Ok(Ok((summary, problems, exit)))
}
