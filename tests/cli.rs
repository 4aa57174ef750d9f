//! The command-line contract: init, exit codes, global flags.

use crate::support::Project;

#[test]
fn init_scaffolds_a_project_that_check_feeds_and_segments_accept() {
    let project = Project::empty();
    let run = project.run(&["init", "blog"]).expect(0);
    insta::assert_snapshot!(run.stdout, @"
    created a gazette project in ./blog
      gazette.yaml
      subscribers.csv
      content/hello-gazette.md
      templates/digest.mjml.tera
      templates/digest.txt.tera
    next: edit gazette.yaml, then run `gazette check`, `gazette feeds` and `gazette preview`
    ");
    assert!(project.path().join("blog/templates").is_dir());
    assert!(
        project
            .read("blog/gazette.yaml")
            .starts_with("# gazette.yaml")
    );
    let csv = project.read("blog/subscribers.csv");
    assert_eq!(csv.lines().count(), 3, "a header and two rows: {csv}");
    // The example post is dated by the (pinned) clock, so it is published now.
    assert!(
        project
            .read("blog/content/hello-gazette.md")
            .contains("date: 2026-06-01")
    );

    let check = project.run(&["-C", "blog", "check"]).expect(0);
    assert_eq!(check.stderr, "");
    assert_eq!(
        check.stdout,
        "1 post ready, 0 skipped: 0 errors, 0 warnings\n"
    );
    project.run(&["-C", "blog", "feeds"]).expect(0);
    let feed = project.json_feed("blog/public/feed.json");
    assert_eq!(feed["items"][0]["title"], "Hello, gazette");
    let preview = project
        .run_env(
            &["-C", "blog", "preview"],
            &[("GAZETTE_SECRET", "a test key of 32 bytes or so...")],
        )
        .expect(0);
    assert_eq!(
        preview.stdout,
        "wrote 2 previews to preview (open preview/index.html)\n"
    );
    assert!(
        project
            .read("blog/preview/engineering.txt")
            .starts_with("Hello Ada Lovelace,")
    );
    let segments = project.run(&["-C", "blog", "segments"]).expect(0);
    insta::assert_snapshot!(segments.stdout, @"
    issue 2026-06-01: 1 new post (first issue: the latest 5)

    engineering (Engineers): 2 to mail, 0 not mailable
      ranked by the segment's interests
      1. Hello, gazette (hello-gazette, 2026-06-01)
         score 0.098
         Newest post

    default (Everyone else): 0 to mail, 0 not mailable
      pinned posts, then newest first (no interests yet)
      1. Hello, gazette (hello-gazette, 2026-06-01)
         Editors' pick for new readers
    ");
}

#[test]
fn init_refuses_to_overwrite_and_creates_nothing() {
    let project = Project::empty().file("gazette.yaml", "mine\n");
    let run = project.run(&["init"]).expect(1);
    insta::assert_snapshot!(run.stderr, @r"
    ./gazette.yaml: error: already exists; gazette init never overwrites files
    error: nothing created
    ");
    assert_eq!(project.read("gazette.yaml"), "mine\n");
    assert!(!project.exists("content"));
    assert!(!project.exists("subscribers.csv"));
}

#[test]
fn usage_errors_exit_2() {
    let project = Project::new();
    let run = project.run(&["feeds", "--bogus"]).expect(2);
    assert!(
        run.stderr.contains("unexpected argument '--bogus'"),
        "{}",
        run.stderr
    );
    project.run(&["publish"]).expect(2);
    project.run(&[]).expect(2);
    project.run(&["--color", "sometimes", "check"]).expect(2);
    let run = project.run(&["-C", "no/such/dir", "check"]).expect(2);
    assert_eq!(run.stderr, "error: -C no/such/dir: no such directory\n");
}

#[test]
fn help_and_version_exit_0() {
    let project = Project::new();
    let help = project.run(&["--help"]).expect(0);
    for command in ["init", "check", "feeds"] {
        assert!(help.stdout.contains(command), "{}", help.stdout);
    }
    let version = project.run(&["--version"]).expect(0);
    assert_eq!(
        version.stdout,
        format!("gazette {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn dash_c_runs_as_if_started_there() {
    let project = Project::empty();
    let site = Project::new().file("content/a.md", "---\ntitle: A\ndate: 2025-01-01\n---\nHi\n");
    let site_dir = site.path().to_str().expect("UTF-8 temp path");
    project.run(&["-C", site_dir, "feeds"]).expect(0);
    assert!(site.exists("public/rss.xml"));
    assert!(!project.exists("public"));
}

#[test]
fn config_flag_picks_another_file_relative_to_the_project() {
    let project = Project::new()
        .file(
            "other.yaml",
            "site:\n  title: Other\n  base_url: https://other.example\nfeeds:\n  out: out\n",
        )
        .file("content/a.md", "---\ntitle: A\ndate: 2025-01-01\n---\nHi\n");
    project.run(&["--config", "other.yaml", "feeds"]).expect(0);
    assert_eq!(project.json_feed("out/feed.json")["title"], "Other");
    let run = project
        .run(&["--config", "missing.yaml", "check"])
        .expect(1);
    insta::assert_snapshot!(run.stderr, @"missing.yaml: no config file here; run `gazette init` to create a project, or point to one with -C DIR or --config FILE");
}

#[test]
fn quiet_hides_warnings_and_strict_fails_on_them() {
    // A post without a date gets one from its modification time, with a warning.
    let project = Project::new()
        .file("content/a.md", "# Dateless\n\nText.\n")
        .touch("content/a.md", "2025-02-03T04:05:06Z");
    let run = project.run(&["check"]).expect(0);
    assert_eq!(
        run.stderr,
        "content/a.md:1:1: warning: no date in front matter; using the file's modification time, \
         2025-02-03T04:05:06+00:00 (add `date:` to fix it)\n"
    );
    let quiet = project.run(&["-q", "check"]).expect(0);
    assert_eq!((quiet.stdout.as_str(), quiet.stderr.as_str()), ("", ""));
    let strict = project.run(&["check", "--strict"]).expect(1);
    assert_eq!(
        strict.stdout,
        "1 post ready, 0 skipped: 0 errors, 1 warning (--strict: warnings fail)\n"
    );
}

#[test]
fn colour_is_opt_in_off_a_terminal_and_never_with_no_color() {
    let project = Project::new().file("content/a.md", "# Dateless\n");
    let always = project.run(&["--color", "always", "check"]);
    assert!(
        always.stderr.contains("\u{1b}[1;33mwarning:"),
        "{:?}",
        always.stderr
    );
    let auto = project.run_env(&["check"], &[("NO_COLOR", "1")]);
    assert!(!auto.stderr.contains('\u{1b}'), "{:?}", auto.stderr);
    let never = project.run(&["--color", "never", "check"]);
    assert!(!never.stderr.contains('\u{1b}'), "{:?}", never.stderr);
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_instead_of_panicking() {
    // `gazette status | head -1`: the reader has gone when gazette writes.
    let project = Project::sample();
    for args in [&["status"][..], &["segments"], &["check"]] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_gazette"))
            .args(args)
            .current_dir(project.path())
            .env_clear()
            .env("GAZETTE_NOW", "2026-06-01T12:00:00Z")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run gazette");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
