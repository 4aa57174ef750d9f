//! Commands: one file per subcommand. Each reads what it needs through the
//! stages, prints what the operator should see, and returns an [`Exit`].
//!
//! May import every stage and the shared vocabulary; nothing below imports
//! `commands`. Parsing the command line is `cli`'s job, not theirs.

/// `print!` without its panic: see [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::commands::write_out(format_args!($($arg)*))
    };
}

/// `println!` without its panic: see [`write_out`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::commands::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod check;
pub mod explain;
pub mod feeds;
pub mod init;
pub mod preview;
pub mod segments;
pub mod send;
pub mod state;
pub mod status;
pub mod unsubscribe;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, FixedOffset};
use clap::ValueEnum;

use crate::audience::subscribers::Subscriber;
use crate::audience::suppressed::Suppressed;
use crate::clock::Clock;
use crate::config::Config;
use crate::content::{self, Library, Loaded, Want};
use crate::diagnostics::{Diagnostic, Report, Severity, Style, display_path};
use crate::exit::Exit;
use crate::select;

/// How a summary is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// What every command needs to know about where and how it runs: the
/// project, the config file, how to print, and the clock.
pub struct Invocation {
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub style: Style,
    pub quiet: bool,
    pub verbose: bool,
    pub clock: Clock,
}

impl Invocation {
    /// Reads config and every post whole, collecting every problem into
    /// `report`.
    fn load(&self, report: &mut Report) -> Option<(Config, Loaded)> {
        let config = self.load_config(report)?;
        let loaded = self.load_content(&config, Want::Everything, report);
        Some((config, loaded))
    }

    /// [`Self::load`], ending the command (reported) on any error, with
    /// `--since DATE` read.
    fn load_with_since(
        &self,
        report: &mut Report,
        since: Option<&str>,
    ) -> Step<(Config, Loaded, Option<DateTime<FixedOffset>>)> {
        let Some((config, loaded)) = self.load(report).filter(|_| !report.has_errors()) else {
            self.print(report, false)?;
            return Ok(Err(Exit::BadInput));
        };
        let Ok(since) = self.since(&config, since) else {
            return Ok(Err(Exit::Usage));
        };
        Ok(Ok((config, loaded, since)))
    }

    fn load_config(&self, report: &mut Report) -> Option<Config> {
        let (config, problems) = Config::load(&self.config_path, &self.config_shown());
        report.extend(problems);
        config
    }

    fn load_content(&self, config: &Config, want: Want, report: &mut Report) -> Loaded {
        let loaded = content::load(config, &self.root, &self.clock, want);
        report.extend(loaded.diagnostics.iter().cloned());
        loaded
    }

    /// The config file as messages name it: relative to the project.
    fn config_shown(&self) -> PathBuf {
        display_path(&self.root, &self.config_path)
    }

    /// Prints `report` to stderr: errors always, warnings unless quiet,
    /// notes (skipped posts) only when `notes`.
    fn print(&self, report: &Report, notes: bool) -> Result<()> {
        let mut err = std::io::stderr().lock();
        for d in report.items() {
            let show = match d.severity {
                Severity::Error => true,
                Severity::Warning => !self.quiet,
                Severity::Note => notes && !self.quiet,
            };
            if show {
                writeln!(err, "{}", self.style.paint(d))?;
            }
        }
        Ok(())
    }

    /// Prints one error line to stderr.
    fn error(&self, message: impl std::fmt::Display) {
        eprintln!("{} {message}", self.style.label(Severity::Error));
    }

    /// `--since DATE` read in the site's timezone; `Err` (reported) when
    /// it is not a date.
    fn since(
        &self,
        config: &Config,
        text: Option<&str>,
    ) -> Result<Option<DateTime<FixedOffset>>, ()> {
        match text.map(|text| content::parse_date(text, config.site.timezone)) {
            None => Ok(None),
            Some(Ok(date)) => Ok(Some(date)),
            Some(Err(message)) => {
                self.error(format_args!("--since: {message}"));
                Err(())
            }
        }
    }

    /// The issue `send` would make now, after the issues in the ledger
    /// (read, never created), and its ranking index; its calendar warnings
    /// go to `report`.
    fn issue<'l>(
        &self,
        config: &Config,
        library: &'l Library,
        since: Option<DateTime<FixedOffset>>,
        report: &mut Report,
    ) -> Result<(select::Issue<'l>, select::Index<'l>)> {
        let window = select::Window::new(config, self.clock.now(), since);
        let history = crate::send::history(&self.root)?;
        let issue = select::plan(library, &history, window);
        let ledger = self.shown(&crate::ledger::ledger_path(&self.root));
        report.extend(issue.calendar_warnings(&ledger));
        let index = select::Index::new(&issue.posts, window.now, &config.digest);
        Ok((issue, index))
    }

    /// Reads the subscribers file, with the ledger's suppression list
    /// applied, handing each reader to `visit`; problems go to `report`.
    /// `Ok(false)` (reported) when the file does not exist.
    fn read_audience(
        &self,
        config: &Config,
        report: &mut Report,
        visit: &mut dyn FnMut(Subscriber),
    ) -> Result<bool> {
        let path = self.root.join(&config.audience.file);
        let shown = display_path(&self.root, &path);
        if !path.exists() {
            report.push(Diagnostic::error(
                shown,
                "subscribers file not found (set audience.file in gazette.yaml)",
            ));
            return Ok(false);
        }
        report.extend(Suppressed::load(&self.root)?.read(&path, &shown, visit));
        Ok(true)
    }

    /// The project-relative form of `path`, for messages.
    fn shown(&self, path: &Path) -> PathBuf {
        display_path(&self.root, path)
    }
}

/// A step of a command: `Ok(Ok(value))` to go on, `Ok(Err(exit))` when
/// the command ends there (its problems already printed), `Err` when
/// something failed that the operator cannot fix by editing input.
type Step<T> = Result<Result<T, Exit>>;

/// The exit of a command that printed `report`: bad input when it holds
/// an error.
fn exit_of(report: &Report) -> Exit {
    if report.has_errors() {
        Exit::BadInput
    } else {
        Exit::Done
    }
}

/// "1 post", "2 posts", "1 entry", "3 entries".
fn count(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

/// Writes to stdout. A reader that went away (`gazette status | head -1`)
/// is no error: the rest is dropped and the command ends as it would have
/// (`println!` panicked there). Any other failure is an error.
pub(crate) fn write_out(text: std::fmt::Arguments) -> std::io::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(text) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written,
    }
}
