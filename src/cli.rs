//! CLI stage: the command line (clap), dispatch to the stages, and the exit code.
//!
//! Exit codes are a contract with scripts and cron (see README): 0 done,
//! 1 bad input or messages that failed for good, 2 usage error, 75 try
//! again later.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};

use crate::address::AddressKey;
use crate::audience::shard::Shard;
use crate::audience::subscribers;
use crate::audience::suppressed::Suppressed;
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::content::{self, Head, Loaded, Want};
use crate::deliver::smtp::SmtpSettings;
use crate::diagnostics::{Diagnostic, Report, Severity, Style, display_path};
use crate::ledger::{Ledger, Reason as LedgerReason};
use crate::render::Renderer;
use crate::send::lock::{Lock, LockError};
use crate::unsubscribe::Secret;
use crate::{explain, feed, init, preview, select};

/// Turns a folder of blog posts into reader feeds and personalized email digests.
#[derive(Debug, Parser)]
#[command(name = "gazette", version, propagate_version = true)]
pub struct Cli {
    /// Run as if gazette was started in DIR
    #[arg(short = 'C', value_name = "DIR", global = true)]
    directory: Option<PathBuf>,
    /// Config file, relative to the project directory [default: gazette.yaml]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Print errors only
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more: skipped posts, each file written
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    /// When to colour messages (NO_COLOR is honoured for auto)
    #[arg(long, value_name = "WHEN", global = true, default_value = "auto")]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

/// How a summary is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scaffold a project: commented gazette.yaml, content/ with an example post,
    /// templates/, subscribers.csv
    Init {
        /// Where to create the project [default: the current directory]
        dir: Option<PathBuf>,
    },
    /// Validate config and content; print every problem as PATH:LINE:COL: message
    Check {
        /// Treat warnings as errors
        #[arg(long)]
        strict: bool,
    },
    /// Write RSS 2.0, Atom 1.0 and JSON Feed files
    Feeds {
        /// Output folder [default: feeds.out from gazette.yaml, else public/]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Each segment, its subscriber count and the posts it would get now
    Segments {
        /// Cover posts published after DATE instead of since the last issue
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
    },
    /// Render every segment and variant to DIR, with DIR/index.html linking them
    Preview {
        /// Output folder [default: preview/]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Open the index in the default browser afterwards
        #[arg(long)]
        open: bool,
    },
    /// Build this issue and deliver it; without SMTP configured or with
    /// --dry-run, write .eml files to DIR (default outbox/)
    Send {
        /// Write .eml files instead of sending, and record nothing
        #[arg(long)]
        dry_run: bool,
        /// Where .eml files go [default: outbox/]
        #[arg(long, value_name = "DIR")]
        outbox: Option<PathBuf>,
        /// With --dry-run: render every message completely, then discard
        /// it (write no .eml files): to time rendering or try a big audience
        #[arg(long, requires = "dry_run", conflicts_with = "outbox")]
        discard: bool,
        /// Mail only shard K of N of the audience (split by a hash of the
        /// address): N hosts, each with its own state, share one issue
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
        /// Send through this SMTP server (smtp://host:port, smtps://host:465)
        #[arg(long, value_name = "URL", env = "GAZETTE_SMTP_URL")]
        smtp: Option<String>,
        /// Cover posts published after DATE instead of since the last issue
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// How to print the summary
        #[arg(long, value_name = "FORMAT", default_value = "text")]
        format: Format,
    },
    /// Past issues and their delivery counts
    Status {
        /// How to print them
        #[arg(long, value_name = "FORMAT", default_value = "text")]
        format: Format,
    },
    /// Add an address to the suppression list: from an unsubscribe token
    /// (or the whole link), or the address itself
    Unsubscribe {
        /// A token (v1.…), an unsubscribe link, or an email address
        target: String,
    },
    /// One subscriber's digest with scores and reasons
    Explain {
        /// The subscriber's address
        email: String,
        /// Cover posts published after DATE instead of since the last issue
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
    },
}

/// How a run ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    BadInput = 1,
    Usage = 2,
    /// A temporary failure (the relay unreachable, another send running):
    /// cron may simply try again.
    TryLater = 75,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                Exit::Usage
            } else {
                Exit::Done
            }
            .into();
        }
    };
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            Exit::BadInput.into()
        }
    }
}

/// What every command needs to know about where and how it runs.
/// How `send` was asked to run.
struct SendOptions {
    dry_run: bool,
    outbox: Option<PathBuf>,
    discard: bool,
    shard: Shard,
    smtp: Option<String>,
}

struct Session {
    root: PathBuf,
    config_path: PathBuf,
    style: Style,
    quiet: bool,
    verbose: bool,
    clock: Clock,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<Exit> {
    let root = match &cli.directory {
        Some(dir) if !dir.is_dir() && !matches!(cli.command, Command::Init { .. }) => {
            eprintln!("error: -C {}: no such directory", dir.display());
            return Ok(Exit::Usage);
        }
        Some(dir) => dir.clone(),
        None => PathBuf::from("."),
    };
    let config_path = root.join(
        cli.config
            .as_deref()
            .unwrap_or(Path::new(config::FILE_NAME)),
    );
    let session = Session {
        root,
        config_path,
        style: style(cli.color),
        quiet: cli.quiet,
        verbose: cli.verbose > 0,
        clock: Clock::from_env()?,
    };
    match cli.command {
        Command::Init { dir } => init::run(
            &session.root.join(dir.unwrap_or_default()),
            &session.clock,
            cli.quiet,
        ),
        Command::Check { strict } => session.check(strict),
        Command::Feeds { out } => session.feeds(out),
        Command::Segments { since } => session.audience(since.as_deref(), None),
        Command::Preview { out, open } => session.preview(out, open),
        Command::Unsubscribe { target } => session.unsubscribe(&target),
        Command::Status { format } => session.status(format),
        Command::Send {
            dry_run,
            outbox,
            discard,
            shard,
            smtp,
            since,
            format,
        } => session.send(
            SendOptions {
                dry_run,
                outbox: outbox.filter(|_| !discard),
                discard,
                shard: shard.unwrap_or(Shard::ALL),
                smtp,
            },
            since.as_deref(),
            format,
        ),
        Command::Explain { email, since } => session.audience(since.as_deref(), Some(&email)),
    }
}

fn style(choice: ColorChoice) -> Style {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => Style::Color,
        ColorChoice::Never => Style::Plain,
        ColorChoice::Auto if !no_color && std::io::stderr().is_terminal() => Style::Color,
        ColorChoice::Auto => Style::Plain,
    }
}

impl Session {
    /// Reads config and every post whole, collecting every problem into
    /// `report`.
    fn load(&self, report: &mut Report) -> Option<(Config, Loaded)> {
        let config = self.load_config(report)?;
        let loaded = self.load_content(&config, Want::Everything, report);
        Some((config, loaded))
    }

    fn load_config(&self, report: &mut Report) -> Option<Config> {
        let shown = display_path(&self.root, &self.config_path);
        let (config, problems) = Config::load(&self.config_path, &shown);
        report.extend(problems);
        config
    }

    fn load_content(&self, config: &Config, want: Want, report: &mut Report) -> Loaded {
        let loaded = content::load(config, &self.root, &self.clock, want);
        report.extend(loaded.diagnostics.iter().cloned());
        loaded
    }

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

    fn check(&self, strict: bool) -> Result<Exit> {
        let mut report = Report::default();
        let loaded = self.load(&mut report);
        if let Some((config, loaded)) = &loaded {
            let path = self.root.join(&config.audience.file);
            let shown = display_path(&self.root, &path);
            // A project that only publishes feeds has no subscribers file;
            // one that names a file must have it.
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
            let config_shown = display_path(&self.root, &self.config_path);
            report.extend(self.check_rendering(
                config,
                &loaded.library,
                &config_shown,
                attrs,
                audience,
            ));
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
        self.print(&report, true)?;
        let failed = report.has_errors() || (strict && report.warnings() > 0);
        if !self.quiet {
            let posts = loaded.as_ref().map_or(0, |(_, l)| l.library.posts.len());
            let skipped = report
                .items()
                .iter()
                .filter(|d| d.severity == Severity::Note)
                .count();
            println!(
                "{} ready, {skipped} skipped: {}, {}{}",
                count(posts, "post"),
                count(report.errors(), "error"),
                count(report.warnings(), "warning"),
                if strict && report.warnings() > 0 {
                    " (--strict: warnings fail)"
                } else {
                    ""
                }
            );
        }
        Ok(if failed { Exit::BadInput } else { Exit::Done })
    }

    fn feeds(&self, out: Option<PathBuf>) -> Result<Exit> {
        let mut report = Report::default();
        let loaded = self.load_config(&mut report).map(|config| {
            let wanted = |heads: &[&Head]| feed::wanted(&config, heads);
            let loaded = self.load_content(&config, Want::Some(&wanted), &mut report);
            (config, loaded)
        });
        self.print(&report, self.verbose)?;
        let Some((config, loaded)) = loaded.filter(|_| !report.has_errors()) else {
            eprintln!(
                "{} {} found; no feed written",
                self.style.label(Severity::Error),
                count(report.errors(), "problem")
            );
            return Ok(Exit::BadInput);
        };
        let out = self
            .root
            .join(out.unwrap_or_else(|| config.feeds.out.clone()));
        let files = feed::build(&config, &loaded.library)?;
        feed::write(&out, &files)?;
        if !self.quiet {
            let shown = display_path(&self.root, &out);
            if self.verbose {
                for file in &files {
                    let entries = count(file.entries, "entry");
                    println!("wrote {} ({entries})", shown.join(&file.path).display());
                }
            }
            println!(
                "wrote {} to {} ({})",
                count(files.len(), "feed file"),
                shown.display(),
                count(loaded.library.published(), "post")
            );
        }
        Ok(Exit::Done)
    }
}

impl Session {
    /// `--since DATE` read in the site's timezone; `Err` (reported) when
    /// it is not a date.
    fn since(
        &self,
        config: &Config,
        text: Option<&str>,
    ) -> Result<Option<chrono::DateTime<chrono::FixedOffset>>, ()> {
        match text.map(|text| content::parse_date(text, config.site.timezone)) {
            None => Ok(None),
            Some(Ok(date)) => Ok(Some(date)),
            Some(Err(message)) => {
                eprintln!("{} --since: {message}", self.style.label(Severity::Error));
                Err(())
            }
        }
    }

    /// `send`: feeds rewritten, then this issue to every reader.
    fn send(&self, options: SendOptions, since: Option<&str>, format: Format) -> Result<Exit> {
        let SendOptions {
            dry_run,
            outbox,
            discard,
            shard,
            smtp,
        } = options;
        let mut report = Report::default();
        let mut loaded = None;
        if let Some(config) = self.load_config(&mut report) {
            let Ok(since) = self.since(&config, since) else {
                return Ok(Exit::Usage);
            };
            // Bodies are read for the posts the issue and the feeds take.
            let history = crate::send::history(&self.root)?;
            let window = select::Window::new(&config, self.clock.now(), since);
            let wanted = |heads: &[&Head]| {
                let mut wanted = feed::wanted(&config, heads);
                let dated = heads.iter().map(|h| (h.date, h.slug.as_str()));
                for i in select::fresh(dated, &history, &window) {
                    wanted[i] = true;
                }
                wanted
            };
            let content = self.load_content(&config, Want::Some(&wanted), &mut report);
            loaded = Some((config, content, since));
        }
        let Some((config, loaded, since)) = loaded.filter(|_| !report.has_errors()) else {
            self.print(&report, false)?;
            eprintln!(
                "{} {} found; nothing sent",
                self.style.label(Severity::Error),
                count(report.errors(), "problem")
            );
            return Ok(Exit::BadInput);
        };
        // One cron line keeps feeds and digests in step.
        let feeds_out = self.root.join(&config.feeds.out);
        feed::write(&feeds_out, &feed::build(&config, &loaded.library)?)?;
        let outbox = self
            .root
            .join(outbox.unwrap_or_else(|| PathBuf::from("outbox")));
        let config_shown = display_path(&self.root, &self.config_path);
        let run = crate::send::Run {
            root: &self.root,
            config: &config,
            config_shown: &config_shown,
            library: &loaded.library,
            now: self.clock.now(),
            since,
            outbox: (!discard).then_some(outbox.as_path()),
            shard,
        };
        let relay = smtp.or_else(|| config.delivery.smtp.clone());
        let (summary, problems, exit) = match relay.filter(|_| !dry_run) {
            None => {
                let (summary, problems) = crate::send::dry_run(&run)?;
                (summary, problems, Exit::Done)
            }
            Some(url) => {
                let password = std::env::var("GAZETTE_SMTP_PASSWORD").ok();
                let settings = match SmtpSettings::parse(&url, password, config.delivery.timeout) {
                    Ok(settings) => settings,
                    Err(err) => {
                        eprintln!("{} {err:#}", self.style.label(Severity::Error));
                        return Ok(Exit::Usage);
                    }
                };
                let _lock = match Lock::acquire(&self.root) {
                    Ok(lock) => lock,
                    Err(LockError::Held(pid)) => {
                        eprintln!(
                            "{} another send is in progress (pid {pid}); try again later",
                            self.style.label(Severity::Error)
                        );
                        return Ok(Exit::TryLater);
                    }
                    Err(LockError::Io(err)) => return Err(err),
                };
                if let Err(claimed) = crate::send::shard::claim(&self.root, shard) {
                    eprintln!("{} {claimed:#}", self.style.label(Severity::Error));
                    return Ok(Exit::Usage);
                }
                let (summary, problems, ended) = crate::send::send(&run, settings, self.quiet)?;
                let failed: u64 = summary.segments.values().map(|c| c.failed).sum();
                let exit = match ended {
                    crate::send::Ended::Unreachable => Exit::TryLater,
                    crate::send::Ended::LoginRefused => {
                        eprintln!(
                            "{} the relay refused the login; check the user in the SMTP URL and GAZETTE_SMTP_PASSWORD (nothing was sent)",
                            self.style.label(Severity::Error)
                        );
                        Exit::BadInput
                    }
                    crate::send::Ended::Done if failed > 0 => Exit::BadInput,
                    crate::send::Ended::Done => Exit::Done,
                };
                (summary, problems, exit)
            }
        };
        report.extend(problems);
        self.print(&report, false)?;
        match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
            Format::Text if !self.quiet => print!("{}", summary.text()),
            Format::Text => {}
        }
        Ok(if exit == Exit::Done && report.has_errors() {
            Exit::BadInput
        } else {
            exit
        })
    }

    /// `status`: every issue with its cutoff, posts and deliveries by status.
    fn status(&self, format: Format) -> Result<Exit> {
        let Some(ledger) = Ledger::open_existing(&self.root)? else {
            match format {
                Format::Json => println!("[]"),
                Format::Text => println!("no issue sent yet (no .gazette/state.db)"),
            }
            return Ok(Exit::Done);
        };
        let issues = ledger.issues()?;
        match format {
            Format::Json => {
                let rows: Vec<serde_json::Value> = issues
                    .iter()
                    .map(|(issue, c)| {
                        let posts: Vec<serde_json::Value> =
                            serde_json::from_str(&issue.posts).unwrap_or_default();
                        serde_json::json!({
                            "issue": issue.id,
                            "cutoff": issue.cutoff.to_rfc3339(),
                            "posts": posts.len(),
                            "created": issue.created.to_rfc3339(),
                            "completed": issue.completed.map(|d| d.to_rfc3339()),
                            "deliveries": {
                                "pending": c.pending, "sending": c.sending, "sent": c.sent,
                                "deferred": c.deferred, "failed": c.failed,
                                "unknown": c.unknown, "suppressed": c.suppressed,
                            },
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            }
            Format::Text => {
                println!(
                    "{:<14} {:<26} {:>5} {:>7} {:>7} {:>8} {:>6} {:>7} {:>10}  completed",
                    "issue",
                    "cutoff",
                    "posts",
                    "sent",
                    "pending",
                    "deferred",
                    "failed",
                    "unknown",
                    "suppressed"
                );
                for (issue, c) in &issues {
                    let posts: Vec<serde_json::Value> =
                        serde_json::from_str(&issue.posts).unwrap_or_default();
                    println!(
                        "{:<14} {:<26} {:>5} {:>7} {:>7} {:>8} {:>6} {:>7} {:>10}  {}",
                        issue.id,
                        issue.cutoff.to_rfc3339(),
                        posts.len(),
                        c.sent,
                        c.pending + c.sending,
                        c.deferred,
                        c.failed,
                        c.unknown,
                        c.suppressed,
                        issue.completed.map_or("no".to_string(), |d| d.to_rfc3339())
                    );
                }
            }
        }
        Ok(Exit::Done)
    }

    /// `unsubscribe TOKEN|EMAIL`: records the reader in the ledger's
    /// suppression list, after checking the token's signature.
    fn unsubscribe(&self, target: &str) -> Result<Exit> {
        let shown = display_path(&self.root, &self.config_path);
        let (config, problems) = Config::load(&self.config_path, &shown);
        let mut report = Report::default();
        report.extend(problems);
        let Some(config) = config else {
            self.print(&report, false)?;
            return Ok(Exit::BadInput);
        };
        let target = target.trim();
        let is_token = target.starts_with("v1.") || target.contains("token=");
        let (key, address) = if is_token {
            let Some(secret) = Secret::load_existing(&self.root)? else {
                eprintln!(
                    "{} no key to check tokens with (set GAZETTE_SECRET or keep .gazette/secret); nobody was unsubscribed",
                    self.style.label(Severity::Error)
                );
                return Ok(Exit::BadInput);
            };
            match secret.verify(&crate::render::list_name(&config), target) {
                Ok(key) => (key, None),
                Err(err) => {
                    eprintln!(
                        "{} {err}; nobody was unsubscribed",
                        self.style.label(Severity::Error)
                    );
                    return Ok(Exit::BadInput);
                }
            }
        } else if target.parse::<lettre::Address>().is_ok() {
            (AddressKey::of(target), Some(target))
        } else {
            eprintln!(
                "{} '{target}' is neither an unsubscribe token nor an email address",
                self.style.label(Severity::Error)
            );
            return Ok(Exit::Usage);
        };
        let ledger = Ledger::open(&self.root)?;
        let new = ledger.suppress(key, address, LedgerReason::Unsubscribed, self.clock.now())?;
        if !self.quiet {
            let who =
                address.map_or_else(|| "the reader of this token".to_string(), str::to_string);
            if new {
                println!("unsubscribed {who}");
            } else {
                println!("{who} was already on the suppression list");
            }
        }
        Ok(Exit::Done)
    }

    /// The issue that would be made now (from `since`, else as a first
    /// issue until the ledger records issues) and its ranking index.
    fn issue<'l>(
        &self,
        config: &Config,
        library: &'l content::Library,
        since: Option<chrono::DateTime<chrono::FixedOffset>>,
    ) -> (select::Issue<'l>, select::Index<'l>) {
        let window = select::Window::new(config, self.clock.now(), since);
        let issue = select::plan(library, &select::History::default(), window);
        let index = select::Index::new(&issue.posts, window.now, &config.digest);
        (issue, index)
    }

    /// What `check` finds in the templates: each compiled, and — once the
    /// config says who sends and where readers unsubscribe — every
    /// segment's digest rendered once against this issue's posts.
    fn check_rendering(
        &self,
        config: &Config,
        library: &content::Library,
        config_shown: &Path,
        attrs: Vec<String>,
        audience: bool,
    ) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let mut config = config.clone();
        // Without a sender or an unsubscribe page nothing can be sent, but
        // the templates are still tried, with stand-ins.
        if config.email.from.is_none() || config.unsubscribe.url.is_none() {
            let sending = config.delivery.smtp.is_some()
                || std::env::var_os("GAZETTE_SMTP_URL").is_some_and(|v| !v.is_empty());
            if sending {
                problems.push(Diagnostic::error(
                    config_shown,
                    "sending is configured (delivery.smtp or GAZETTE_SMTP_URL), so email.from and an https unsubscribe.url are required",
                ));
            } else if audience {
                problems.push(Diagnostic::warning(
                    config_shown,
                    "digests cannot be rendered until email.from and unsubscribe.url are set",
                ));
            }
            config.email.from.get_or_insert_with(|| {
                "check@example.com"
                    .parse()
                    .expect("a valid stand-in address")
            });
            config.unsubscribe.url.get_or_insert_with(|| {
                url::Url::parse("https://example.com/unsubscribe").expect("a valid stand-in URL")
            });
        }
        let (issue, _) = self.issue(&config, library, None);
        // An issue with nothing new is still checked, with the latest posts.
        let mut issue = issue;
        if issue.posts.is_empty() {
            issue.posts = library
                .posts
                .iter()
                .take(config.digest.first_issue_posts)
                .collect();
        }
        let index = select::Index::new(&issue.posts, self.clock.now(), &config.digest);
        // A throwaway key: checking never creates the project's key file.
        let secret = Secret::from_bytes(b"gazette check: not a real key");
        let (renderer, found) =
            Renderer::new(&config, &self.root, config_shown, &issue, secret, attrs);
        problems.extend(found);
        if let Some(renderer) = renderer {
            problems.extend(renderer.compile_all(&index));
            let mut warnings: Vec<Diagnostic> = Vec::new();
            for warning in renderer.take_warnings() {
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
            }
            problems.extend(warnings);
        }
        problems
    }

    /// `preview`: every segment and variant rendered for a representative
    /// reader, with a gallery page.
    fn preview(&self, out: Option<PathBuf>, open: bool) -> Result<Exit> {
        let mut report = Report::default();
        let loaded = self.load(&mut report);
        let Some((config, loaded)) = loaded.filter(|_| !report.has_errors()) else {
            self.print(&report, false)?;
            return Ok(Exit::BadInput);
        };
        let now = self.clock.now();
        let (issue, index) = self.issue(&config, &loaded.library, None);
        let mut audience = preview::Audience::default();
        let mut attrs: Vec<String> = Vec::new();
        let path = self.root.join(&config.audience.file);
        if path.exists() {
            let shown = display_path(&self.root, &path);
            let suppressed = Suppressed::load(&self.root)?;
            report.extend(subscribers::read(&path, &shown, &mut |mut subscriber| {
                suppressed.apply(&mut subscriber);
                subscribers::add_columns(&mut attrs, &subscriber.attrs);
                audience.add(&config, subscriber);
            }));
        }
        let secret = Secret::load(&self.root)?;
        let config_shown = display_path(&self.root, &self.config_path);
        let (renderer, problems) =
            Renderer::new(&config, &self.root, &config_shown, &issue, secret, attrs);
        report.extend(problems);
        let Some(mut renderer) = renderer else {
            self.print(&report, false)?;
            return Ok(Exit::BadInput);
        };
        renderer.keep_sources();
        let out = self
            .root
            .join(out.unwrap_or_else(|| PathBuf::from("preview")));
        let (entries, problems) = preview::write(&config, &renderer, &index, &audience, &out, now)?;
        report.extend(problems);
        report.extend(renderer.take_warnings());
        self.print(&report, false)?;
        if report.has_errors() {
            return Ok(Exit::BadInput);
        }
        let shown = display_path(&self.root, &out);
        if !self.quiet {
            println!(
                "wrote {} to {} (open {})",
                count(entries.len(), "preview"),
                shown.display(),
                shown.join("index.html").display()
            );
        }
        if open {
            let index = out.join("index.html");
            let opened = std::process::Command::new("xdg-open")
                .arg(&index)
                .status()
                .or_else(|_| std::process::Command::new("open").arg(&index).status());
            if !opened.is_ok_and(|status| status.success()) {
                eprintln!(
                    "{} cannot open a browser here; open {} yourself",
                    self.style.label(Severity::Warning),
                    index.display()
                );
            }
        }
        Ok(Exit::Done)
    }

    /// `segments` (no `email`) and `explain EMAIL`: the issue as it would
    /// be made now, and who gets what.
    fn audience(&self, since: Option<&str>, email: Option<&str>) -> Result<Exit> {
        let mut report = Report::default();
        let loaded = self.load(&mut report);
        let Some((config, loaded)) = loaded.filter(|_| !report.has_errors()) else {
            self.print(&report, false)?;
            return Ok(Exit::BadInput);
        };
        let Ok(since) = self.since(&config, since) else {
            return Ok(Exit::Usage);
        };
        let (issue, index) = self.issue(&config, &loaded.library, since);
        let path = self.root.join(&config.audience.file);
        let shown = display_path(&self.root, &path);
        if !path.exists() {
            report.push(Diagnostic::error(
                shown,
                "subscribers file not found (set audience.file in gazette.yaml)",
            ));
            self.print(&report, false)?;
            return Ok(Exit::BadInput);
        }
        let wanted = email.map(|e| e.trim().to_lowercase());
        let mut counts = vec![explain::Counts::default(); config.segments.len()];
        let mut found = None;
        let suppressed = Suppressed::load(&self.root)?;
        let problems = subscribers::read(&path, &shown, &mut |mut subscriber| {
            suppressed.apply(&mut subscriber);
            match &wanted {
                Some(wanted) if found.is_none() && subscriber.email.to_lowercase() == *wanted => {
                    found = Some(subscriber);
                }
                Some(_) => {}
                None => explain::count(&config, &mut counts, &subscriber),
            }
        });
        report.extend(problems);
        self.print(&report, false)?;
        let text = match (email, found) {
            (None, _) => explain::segments(&config, &issue, &index, &counts),
            (Some(_), Some(subscriber)) => explain::explain(&config, &issue, &index, &subscriber),
            (Some(email), None) => {
                eprintln!(
                    "{} no subscriber with address '{email}' in {}",
                    self.style.label(Severity::Error),
                    shown.display()
                );
                return Ok(Exit::BadInput);
            }
        };
        print!("{text}");
        Ok(if report.has_errors() {
            Exit::BadInput
        } else {
            Exit::Done
        })
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
