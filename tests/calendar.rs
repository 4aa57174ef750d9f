//! Posts are never lost to the calendar: an issue holds the published
//! posts no earlier issue saw, whatever their dates and whatever the clock
//! said at an earlier send. Real sends to the in-process SMTP server, the
//! clock pinned per run with `GAZETTE_NOW`.

use crate::smtp::{Catcher, SECRET, catcher};
use crate::support::{Project, Run};

/// A post `slug` dated `date`, with more front matter lines in `extra`.
fn post(project: Project, slug: &str, date: &str, extra: &str) -> Project {
    project.file(
        &format!("content/{slug}.md"),
        format!("---\ntitle: Post {slug}\ndate: {date}\n{extra}---\nAbout {slug}.\n"),
    )
}

/// `gazette ARGS` with the clock at `now`.
fn at(project: &Project, now: &str, args: &[&str]) -> Run {
    project.run_env(args, &[SECRET, ("GAZETTE_NOW", now)])
}

/// `gazette send` to the catcher with the clock at `now`: the run and the
/// slugs of the issue it made or finished.
fn send_at(project: &Project, port: u16, now: &str) -> (Run, Vec<String>) {
    let url = format!("smtp://127.0.0.1:{port}");
    let run = at(project, now, &["send", "--smtp", &url, "--format", "json"]).expect(0);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON summary");
    let posts = summary["posts"].as_array().expect("posts").iter();
    let slugs = posts.map(|p| p.as_str().unwrap().to_string()).collect();
    (run, slugs)
}

/// Messages the catcher received so far.
fn received(catcher: &Catcher) -> usize {
    catcher.recipients().len()
}

#[test]
fn a_post_dated_the_day_of_a_send_but_written_after_it_goes_in_the_next_issue() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    let (_, first) = send_at(&project, port, "2026-06-01T07:00:00Z");
    assert_eq!(first.len(), 5);
    let mailed = received(&catcher);
    // Written at noon, dated that day: midnight in London, before 07:00.
    let project = post(project, "same-day", "2026-06-01", "");
    let (run, second) = send_at(&project, port, "2026-06-08T07:00:00Z");
    assert_eq!(second, ["same-day"]);
    assert!(
        run.stderr.contains(
            "content/same-day.md: warning: post 'same-day' is dated 2026-06-01T00:00:00+01:00, \
             before the last issue (cutoff 2026-06-01T08:00:00+01:00); no issue carried it, \
             so it goes in this one"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(received(&catcher), 2 * mailed);
    let (_, third) = send_at(&project, port, "2026-06-15T07:00:00Z");
    assert!(third.is_empty());
}

#[test]
fn a_back_dated_post_goes_in_the_next_issue() {
    let (_catcher, port) = catcher();
    let project = Project::sample();
    send_at(&project, port, "2026-06-01T07:00:00Z");
    let project = post(project, "back-dated", "2026-03-01", "");
    let (run, second) = send_at(&project, port, "2026-06-08T07:00:00Z");
    assert_eq!(second, ["back-dated"]);
    assert!(
        run.stderr.contains("post 'back-dated' is dated 2026-03-01"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_clock_a_year_ahead_then_back_loses_no_post_and_is_reported() {
    let (_catcher, port) = catcher();
    let project = Project::sample();
    send_at(&project, port, "2026-06-01T07:00:00Z");
    let project = post(project, "ahead", "2026-06-02", "");
    let (_, ahead) = send_at(&project, port, "2027-06-02T07:00:00Z");
    assert_eq!(ahead, ["ahead"]);
    // The clock is right again; a post written since goes out.
    let project = post(project, "back", "2026-06-05", "");
    let now = "2026-06-08T07:00:00Z";
    let warning = "the clock reads 2026-06-08T08:00:00+01:00, earlier than the last issue's \
                   cutoff 2027-06-02T08:00:00+01:00";
    // What send would do, as the read-only commands show it.
    let segments = at(&project, now, &["segments"]).expect(0);
    assert!(
        segments.stdout.contains("1 new post"),
        "{}",
        segments.stdout
    );
    assert!(segments.stderr.contains(warning), "{}", segments.stderr);
    let explain = at(&project, now, &["explain", "ada@example.com"]).expect(0);
    assert!(explain.stdout.contains("Post back"), "{}", explain.stdout);
    let (run, back) = send_at(&project, port, now);
    assert_eq!(back, ["back"]);
    assert!(
        run.stderr
            .contains(&format!(".gazette/state.db: warning: {warning}")),
        "{}",
        run.stderr
    );
    // Reported on every run while the cutoff is ahead; nothing re-sent.
    let (again, nothing) = send_at(&project, port, "2026-06-09T07:00:00Z");
    assert!(nothing.is_empty());
    assert!(
        again
            .stderr
            .contains("earlier than the last issue's cutoff")
    );
    let status = at(&project, now, &["status"]).expect(0);
    assert_eq!(status.stdout.lines().count(), 4, "{}", status.stdout);
}

#[test]
fn a_second_issue_after_a_first_that_saw_many_old_posts_takes_only_the_new() {
    let (_catcher, port) = catcher();
    let mut project = Project::sample();
    let config = project.read("gazette.yaml");
    project = project.file(
        "gazette.yaml",
        config.replace("first_issue_posts: 5", "first_issue_posts: 2"),
    );
    for n in 0..30 {
        project = post(
            project,
            &format!("old-{n:02}"),
            &format!("2024-01-{:02}", n + 1),
            "",
        );
    }
    let (_, first) = send_at(&project, port, "2026-06-01T07:00:00Z");
    assert_eq!(first.len(), 2);
    let project = post(project, "new", "2026-06-03", "");
    let (_, second) = send_at(&project, port, "2026-06-08T07:00:00Z");
    assert_eq!(second, ["new"]);
    // --since takes what no issue carried after it, seen or not: two old
    // posts and the two seed posts of 2025 the first issue passed over.
    let since = at(
        &project,
        "2026-06-08T07:00:00Z",
        &["segments", "--since", "2024-01-28"],
    )
    .expect(0);
    assert!(since.stdout.contains("4 new posts"), "{}", since.stdout);
}

#[test]
fn a_post_out_of_the_newsletter_is_in_the_feeds_and_never_mailed() {
    let (_catcher, port) = catcher();
    let project = post(
        Project::sample(),
        "feeds-only",
        "2026-05-31",
        "newsletter: false\n",
    );
    let (_, first) = send_at(&project, port, "2026-06-01T07:00:00Z");
    assert_eq!(first.len(), 5);
    assert!(!first.contains(&"feeds-only".to_string()));
    let feed = project.json_feed("public/feed.json");
    let items = feed["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["url"].as_str().unwrap().contains("feeds-only"))
    );
    let (_, second) = send_at(&project, port, "2026-06-08T07:00:00Z");
    assert!(second.is_empty());
    // A mistake in the flag is located.
    let bad = post(project, "bad-flag", "2026-06-02", "newsletter: sometimes\n");
    let check = bad.run(&["check"]).expect(1);
    assert!(
        check
            .stderr
            .contains("content/bad-flag.md:4:13: 'newsletter' must be true or false"),
        "{}",
        check.stderr
    );
}

#[test]
fn a_ledger_from_before_seen_posts_neither_re_mails_nor_floods() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    send_at(&project, port, "2026-06-01T07:00:00Z");
    let mailed = received(&catcher);
    // As the gazette before seen posts left it: schema 4, nothing seen.
    let ledger = rusqlite::Connection::open(project.path().join(".gazette/state.db")).unwrap();
    ledger
        .execute_batch(
            "DROP TABLE seen_posts;
             ALTER TABLE issues DROP COLUMN saw_posts;
             PRAGMA user_version = 4;",
        )
        .unwrap();
    drop(ledger);
    // Written after that send: one dated that day, one back-dated before
    // the newest post the issue carried (reckoned seen: the old ledger
    // cannot tell it from a post passed over then).
    let project = post(project, "same-day", "2026-06-01", "");
    let project = post(project, "back-dated", "2020-01-01", "");
    let (_, second) = send_at(&project, port, "2026-06-08T07:00:00Z");
    assert_eq!(second, ["same-day"]);
    assert_eq!(received(&catcher), 2 * mailed);
    // From then on the record is whole: a later back-dated post goes out.
    let project = post(project, "back-dated-later", "2020-01-02", "");
    let (_, third) = send_at(&project, port, "2026-06-15T07:00:00Z");
    assert_eq!(third, ["back-dated-later"]);
}

#[test]
fn a_second_issue_of_a_day_is_named_alike_by_the_dry_run_and_the_send() {
    let (_catcher, port) = catcher();
    let project = Project::sample();
    send_at(&project, port, "2026-06-01T07:00:00Z");
    let project = post(project, "afternoon", "2026-06-01T13:00:00Z", "");
    // Previews name the issue the send will make: variants are drawn by
    // issue id, so another name would show other subjects.
    let now = "2026-06-01T15:00:00Z";
    let dry = at(&project, now, &["send", "--dry-run", "--format", "json"]).expect(0);
    let summary: serde_json::Value = serde_json::from_str(&dry.stdout).expect("JSON summary");
    assert_eq!(summary["issue"], "2026-06-01-2", "{}", dry.stdout);
    let segments = at(&project, now, &["segments"]).expect(0);
    assert!(
        segments.stdout.contains("2026-06-01-2"),
        "{}",
        segments.stdout
    );
    let url = format!("smtp://127.0.0.1:{port}");
    let sent = at(&project, now, &["send", "--smtp", &url, "--format", "json"]).expect(0);
    let summary: serde_json::Value = serde_json::from_str(&sent.stdout).expect("JSON summary");
    assert_eq!(summary["issue"], "2026-06-01-2", "{}", sent.stdout);
}
