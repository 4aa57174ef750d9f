//! The command reference and man pages are generated from the clap
//! definitions, so they cannot drift from the code: this test fails when
//! a committed file differs from a fresh generation. After changing a
//! command, regenerate them with
//! `GAZETTE_UPDATE_REFERENCE=1 cargo test --test main reference`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use gazette::cli::Cli;

/// The book's command reference page.
const MARKDOWN: &str = "docs/src/reference/commands.md";
/// Where the man pages go: `gazette.1` and one `gazette-COMMAND.1` each.
const MAN_DIR: &str = "docs/man";

/// Every generated file: path in the repository and contents.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let options = clap_markdown::MarkdownOptions::new()
        .title("Command reference".to_string())
        .show_footer(false);
    let mut markdown = String::from(
        "<!-- Generated from the clap definitions in src/cli.rs by tests/reference.rs; do not edit. -->\n\n",
    );
    markdown.push_str(&clap_markdown::help_markdown_custom::<Cli>(&options));
    let command = Cli::command();
    // `--help`'s closing part is laid out in columns: fenced, it stays so.
    // (`gazette state backup` and the like included.)
    let nested = command
        .get_subcommands()
        .flat_map(|sub| sub.get_subcommands());
    for sub in command.get_subcommands().chain(nested) {
        if let Some(after) = sub.get_after_help().map(|h| h.to_string()) {
            markdown = markdown.replace(&after, &format!("```text\n{after}\n```"));
        }
    }
    let mut files = vec![(PathBuf::from(MARKDOWN), markdown.into_bytes())];
    files.push((
        Path::new(MAN_DIR).join("gazette.1"),
        man_page(command.clone()),
    ));
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap names commands with &'static str; a test may leak a few.
        let name: &'static str = format!("gazette-{}", sub.get_name()).leak();
        let page = man_page(sub.clone().name(name).display_name(name));
        files.push((Path::new(MAN_DIR).join(format!("{name}.1")), page));
    }
    files
}

fn man_page(command: clap::Command) -> Vec<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .date("")
        .render(&mut page)
        .expect("a man page renders into memory");
    page
}

#[test]
fn the_command_reference_and_man_pages_match_the_clap_definitions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("GAZETTE_UPDATE_REFERENCE").is_some();
    let mut stale = Vec::new();
    for (path, fresh) in generated() {
        let full = root.join(&path);
        if std::fs::read(&full).ok().as_deref() == Some(fresh.as_slice()) {
            continue;
        }
        if update {
            std::fs::create_dir_all(full.parent().expect("a parent folder"))
                .expect("create the folder");
            std::fs::write(&full, fresh).expect("write the generated file");
        } else {
            stale.push(path.display().to_string());
        }
    }
    // A page of a command that no longer exists is stale too.
    let fresh: Vec<PathBuf> = generated().into_iter().map(|(path, _)| path).collect();
    for entry in std::fs::read_dir(root.join(MAN_DIR)).expect("the man page folder") {
        let path = Path::new(MAN_DIR).join(entry.expect("a folder entry").file_name());
        if !fresh.contains(&path) {
            if update {
                std::fs::remove_file(root.join(&path)).expect("remove a stale page");
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "not what src/cli.rs generates now (changed, or no longer generated): {}\n\
         regenerate with GAZETTE_UPDATE_REFERENCE=1 cargo test --test main reference",
        stale.join(", ")
    );
}

#[test]
fn every_command_help_ends_with_exit_codes_environment_and_an_example() {
    let command = Cli::command();
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let help = sub
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        for part in ["Exit codes:", "Environment:", "Example:\n  gazette "] {
            assert!(
                help.contains(part),
                "`gazette {} --help` lacks '{part}'",
                sub.get_name()
            );
        }
    }
}
