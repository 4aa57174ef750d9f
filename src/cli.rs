//! CLI: the command line (clap types) and dispatch to [`crate::commands`].
//! The top of the house: may import `commands` and the shared vocabulary;
//! holds no command logic.
//!
//! Every subcommand's `--help` ends with its exit codes, the environment
//! it reads and an example; `docs/src/reference/commands.md` and
//! `docs/gazette.1` are generated from these definitions.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};

use crate::audience::shard::Shard;
use crate::clock::Clock;
use crate::commands::send::SendOptions;
use crate::commands::{self, Format, Invocation};
use crate::config;
use crate::diagnostics::Style;
use crate::exit::Exit;

/// The exit codes every command shares, as `--help` shows them.
macro_rules! exit_codes {
    ($bad_input:literal) => {
        concat!(
            "Exit codes:\n  0   done\n  1   ",
            $bad_input,
            "\n  2   usage error (a bad option or value)"
        )
    };
}

/// The environment every command reads, as `--help` shows it.
macro_rules! environment {
    () => {
        "Environment:\n  NO_COLOR      no colour in messages (with --color auto)\n  GAZETTE_NOW   pin the clock to an RFC 3339 time (tests, reproducible previews)"
    };
}

/// `--help`'s closing part: exit codes, environment, example.
macro_rules! after_help {
    (bad_input: $bad_input:literal, exit: $exit:literal, env: $env:literal, example: $example:literal) => {
        concat!(
            exit_codes!($bad_input),
            $exit,
            "\n\n",
            environment!(),
            $env,
            "\n\nExample:\n",
            $example
        )
    };
}

/// Turns a folder of blog posts into reader feeds and personalized email digests.
#[derive(Debug, Parser)]
#[command(
    name = "gazette",
    version,
    propagate_version = true,
    after_help = after_help!(
        bad_input: "bad input, every problem printed as PATH:LINE:COL; send: a message failed for good",
        exit: "\n  75  try again later (send: the relay unreachable, another send running)",
        env: "\n  GAZETTE_SMTP_URL, GAZETTE_SMTP_PASSWORD, GAZETTE_SECRET: see `gazette send --help`",
        example: "  gazette check && gazette send --dry-run    # feeds in public/, messages in outbox/"
    )
)]
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
    #[command(after_help = after_help!(
        bad_input: "a file it would write already exists (nothing is created)",
        exit: "",
        env: "",
        example: "  gazette init my-newsletter && gazette -C my-newsletter check"
    ))]
    Init {
        /// Where to create the project [default: the current directory]
        dir: Option<PathBuf>,
    },
    /// Validate config and content; print every problem as PATH:LINE:COL: message
    #[command(after_help = after_help!(
        bad_input: "a problem in config, content, subscribers or templates, or with --strict a warning",
        exit: "",
        env: "\n  GAZETTE_SMTP_URL  when set, sending counts as configured, so email.from and unsubscribe.url are required",
        example: "  gazette check --strict && gazette send"
    ))]
    Check {
        /// Treat warnings as errors
        #[arg(long)]
        strict: bool,
    },
    /// Write RSS 2.0, Atom 1.0 and JSON Feed files
    #[command(after_help = after_help!(
        bad_input: "a problem in config or content (no feed is written)",
        exit: "",
        env: "",
        example: "  gazette feeds --out public/"
    ))]
    Feeds {
        /// Output folder [default: feeds.out from gazette.yaml, else public/]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Each segment, its subscriber count and the posts it would get now
    #[command(after_help = after_help!(
        bad_input: "a problem in config, content or the subscribers file",
        exit: "",
        env: "",
        example: "  gazette segments --since 2026-06-01"
    ))]
    Segments {
        /// Cover posts published after DATE that no issue carried, instead of those no issue saw
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
    },
    /// Render every segment and variant to DIR, with DIR/index.html linking them
    #[command(after_help = after_help!(
        bad_input: "a problem in config, content, subscribers or templates",
        exit: "",
        env: "\n  GAZETTE_SECRET  key that signs the unsubscribe links (else .gazette/secret)",
        example: "  gazette preview --open"
    ))]
    Preview {
        /// Output folder [default: preview/]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Open the index in the default browser afterwards
        #[arg(long)]
        open: bool,
    },
    /// Build this issue and deliver it through the relay (--smtp,
    /// GAZETTE_SMTP_URL or delivery.smtp; none is a usage error); with
    /// --dry-run, write .eml files to DIR (default outbox/) instead
    #[command(after_help = after_help!(
        bad_input: "a problem in config, content, subscribers or templates (nothing is sent);\n      a message failed for good; the relay refused the login; or a relay problem\n      (a 5xx the relay would give any reader: the run stops, nobody is suppressed)",
        exit: "\n  75  try again later: the relay unreachable (delivery.max_connection_failures\n      times in a row), a relay problem with a 4xx (MAIL FROM refused for now),\n      another send holds the lock, or a signal (SIGTERM, SIGINT, SIGHUP) stopped it",
        env: "\n  GAZETTE_SMTP_URL       the relay, as --smtp (smtp://user@host:587, smtps://host:465)\n  GAZETTE_SMTP_PASSWORD  the relay password (never in the URL)\n  GAZETTE_SECRET         key that signs the unsubscribe links (else .gazette/secret)",
        example: "  gazette send --dry-run              # .eml files in outbox/, nothing recorded\n  gazette send --smtp smtps://news@smtp.example.com:465"
    ))]
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
        #[arg(
            long,
            value_name = "URL",
            env = "GAZETTE_SMTP_URL",
            hide_env_values = true
        )]
        smtp: Option<String>,
        /// Cover posts published after DATE that no issue carried, instead of those no issue saw
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Send although the subscribers file lost more than
        /// audience.max_shrink of the last issue's readers (a file with no
        /// mailable reader is refused all the same)
        #[arg(long)]
        allow_shrink: bool,
        /// Only finish the open issue (what is due now: deferred, unknown,
        /// pending); never make a new one. For a retry job beside the
        /// issue's cron line
        #[arg(long, conflicts_with_all = ["dry_run", "first_issue", "since"])]
        retry_only: bool,
        /// Start a new ledger with a first issue although the project sent
        /// before (suppressed.csv names an issue): after .gazette/ was lost
        /// and no backup is left. With --since DATE it takes only the
        /// posts after DATE, else the latest digest.first_issue_posts
        #[arg(long)]
        first_issue: bool,
        /// How to print the summary
        #[arg(long, value_name = "FORMAT", default_value = "text")]
        format: Format,
    },
    /// Past issues and their delivery counts; with --issue, every reader
    /// of one issue not sent, with state, attempts, next try and last reply
    #[command(after_help = after_help!(
        bad_input: "the ledger cannot be read, or it has no issue ID",
        exit: "",
        env: "",
        example: "  gazette status --format json\n  gazette status --issue 2026-06-01"
    ))]
    Status {
        /// List the readers of issue ID that were not sent
        #[arg(long, value_name = "ID")]
        issue: Option<String>,
        /// How to print them
        #[arg(long, value_name = "FORMAT", default_value = "text")]
        format: Format,
    },
    /// Add an address to the suppression list: from an unsubscribe token
    /// (or the whole link), or the address itself
    #[command(after_help = after_help!(
        bad_input: "a bad config, or a token that does not verify (nobody is unsubscribed)",
        exit: "",
        env: "\n  GAZETTE_SECRET  key that checks the token (else .gazette/secret)",
        example: "  gazette unsubscribe reader@example.com"
    ))]
    Unsubscribe {
        /// A token (v1.…), an unsubscribe link, or an email address
        target: String,
    },
    /// Back up or restore the ledger (.gazette/state.db)
    #[command(after_help = after_help!(
        bad_input: "the ledger or the backup cannot be read (nothing is replaced)",
        exit: "\n  75  restore: a send holds the lock (nothing is replaced)",
        env: "",
        example: "  gazette state backup state-backup.db && gazette state restore state-backup.db"
    ))]
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// One subscriber's digest with scores and reasons
    #[command(after_help = after_help!(
        bad_input: "a problem in config, content or subscribers, or no such subscriber",
        exit: "",
        env: "",
        example: "  gazette explain reader@example.com"
    ))]
    Explain {
        /// The subscriber's address
        email: String,
        /// Cover posts published after DATE that no issue carried, instead of those no issue saw
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
    },
}

/// What `gazette state` does.
#[derive(Debug, Subcommand)]
enum StateAction {
    /// Copy the ledger to FILE, consistent even while a send runs (the
    /// signing key .gazette/secret is not in it: keep that apart)
    #[command(after_help = after_help!(
        bad_input: "no ledger, or it cannot be read or copied (FILE is left as it was)",
        exit: "",
        env: "",
        example: "  gazette state backup backups/state-$(date +%F).db"
    ))]
    Backup {
        /// Where the copy goes (replaced whole)
        file: PathBuf,
    },
    /// Replace the ledger with the backup in FILE, after checking it is a
    /// whole gazette ledger; suppressions in suppressed.csv are kept
    #[command(after_help = after_help!(
        bad_input: "FILE is not a whole gazette ledger (nothing is replaced)",
        exit: "\n  75  a send holds the lock (nothing is replaced): try again when it ends",
        env: "",
        example: "  gazette state restore backups/state-2026-06-01.db"
    ))]
    Restore {
        /// A file `gazette state backup` wrote
        file: PathBuf,
    },
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
    let inv = Invocation {
        root,
        config_path,
        style: style(cli.color),
        quiet: cli.quiet,
        verbose: cli.verbose > 0,
        clock: Clock::from_env()?,
    };
    match cli.command {
        Command::Init { dir } => commands::init::run(
            &inv.root.join(dir.unwrap_or_default()),
            &inv.clock,
            inv.quiet,
        ),
        Command::Check { strict } => commands::check::run(&inv, strict),
        Command::Feeds { out } => commands::feeds::run(&inv, out),
        Command::Segments { since } => commands::segments::run(&inv, since.as_deref()),
        Command::Preview { out, open } => commands::preview::run(&inv, out, open),
        Command::Unsubscribe { target } => commands::unsubscribe::run(&inv, &target),
        Command::Status { issue, format } => match issue {
            Some(issue) => commands::status::not_sent(&inv, &issue, format),
            None => commands::status::run(&inv, format),
        },
        Command::Send {
            dry_run,
            outbox,
            discard,
            shard,
            smtp,
            since,
            allow_shrink,
            retry_only,
            first_issue,
            format,
        } => commands::send::run(
            &inv,
            SendOptions {
                dry_run,
                outbox: outbox.filter(|_| !discard),
                discard,
                shard: shard.unwrap_or(Shard::ALL),
                smtp,
                since,
                allow_shrink,
                retry_only,
                first_issue,
                format,
            },
        ),
        Command::State { action } => match action {
            StateAction::Backup { file } => commands::state::backup(&inv, &file),
            StateAction::Restore { file } => commands::state::restore(&inv, &file),
        },
        Command::Explain { email, since } => commands::explain::run(&inv, &email, since.as_deref()),
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
