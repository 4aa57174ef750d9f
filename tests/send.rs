//! Sending: the dry run that cron users and the README start with.

use crate::support::Project;

const SECRET: (&str, &str) = ("GAZETTE_SECRET", "the test suite's unsubscribe key");

#[test]
fn a_dry_run_writes_one_message_per_mailable_reader_and_records_nothing() {
    let project = Project::sample();
    let run = project.run_env(&["send", "--dry-run"], &[SECRET]).expect(0);
    insta::assert_snapshot!(run.stdout, @"
    issue 2026-06-01: 5 posts (dry run)
    segment                  sent deferred   failed suppressed  skipped
    data-ai                     4        0        0          1        0
    default                     3        0        0          0        0
    leaders                     1        0        0          0        0
    marketing                   3        0        0          1        0
    dry run: wrote 11 messages to outbox/2026-06-01
    ");
    let dir = project.path().join("outbox/2026-06-01");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    insta::assert_debug_snapshot!(names, @r#"
    [
        "ada_at_example.com-b5fc85e5.eml",
        "eva_at_example.com-cfc3a741.eml",
        "fatima_at_example.com-21830c73.eml",
        "grace_at_example.com-b533d454.eml",
        "kenji_at_example.com-01233906.eml",
        "li.wei_at_example.com-19afa36e.eml",
        "maria_at_example.com-10ef04a5.eml",
        "noah_at_example.com-95a5ccb7.eml",
        "olu_at_example.com-c544421d.eml",
        "priya_at_example.com-6bdb7e96.eml",
        "sam_at_example.com-cd25a617.eml",
        "summary.json",
    ]
    "#);
    // Unsubscribed and bounced readers get nothing.
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("former") || n.starts_with("old-address"))
    );
    let summary: serde_json::Value =
        serde_json::from_str(&project.read("outbox/2026-06-01/summary.json")).unwrap();
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["segments"]["data-ai"]["suppressed"], 1);
    // Feeds are rewritten by send too; a dry run creates no ledger.
    assert!(project.exists("public/rss.xml"));
    assert!(!project.exists(".gazette/state.db"));
    // Again: the same files, byte for byte.
    let first = project.read("outbox/2026-06-01/ada_at_example.com-b5fc85e5.eml");
    project
        .run_env(&["-q", "send", "--dry-run"], &[SECRET])
        .expect(0);
    let second = project.read("outbox/2026-06-01/ada_at_example.com-b5fc85e5.eml");
    let without_boundary = |eml: &str| {
        let boundary = eml
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        eml.replace(&boundary, "")
    };
    assert_eq!(without_boundary(&first), without_boundary(&second));
}

#[test]
fn the_summary_is_json_for_scripts() {
    let project = Project::sample();
    let run = project
        .run_env(&["send", "--dry-run", "--format", "json"], &[SECRET])
        .expect(0);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["issue"], "2026-06-01");
    assert_eq!(summary["posts"].as_array().unwrap().len(), 5);
    let sent: u64 = summary["segments"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, 11);
}

#[test]
fn an_unsubscribe_recorded_before_the_run_holds() {
    let project = Project::sample();
    project
        .run_env(&["-q", "unsubscribe", "ada@example.com"], &[SECRET])
        .expect(0);
    project
        .run_env(&["-q", "send", "--dry-run"], &[SECRET])
        .expect(0);
    assert!(!project.exists("outbox/2026-06-01/ada_at_example.com-b5fc85e5.eml"));
}

#[test]
fn check_refuses_sending_without_an_unsubscribe_page() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com\n\
             email:\n  from: t@example.com\n\
             delivery:\n  smtp: smtp://localhost:1025\n",
        )
        .file(
            "content/a.md",
            "---\ntitle: A\ndate: 2024-01-01\n---\nText.\n",
        );
    let run = project.run(&["check"]).expect(1);
    assert_eq!(
        run.stderr,
        "gazette.yaml: sending is configured (delivery.smtp or GAZETTE_SMTP_URL), so email.from and an https unsubscribe.url are required\n"
    );
}

#[test]
fn a_new_project_can_dry_run_at_once() {
    let project = Project::empty();
    project.run(&["init", "blog"]).expect(0);
    let run = project
        .run_env(&["-C", "blog", "send", "--dry-run"], &[SECRET])
        .expect(0);
    assert!(
        run.stdout
            .contains("dry run: wrote 2 messages to outbox/2026-06-01"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_discarding_dry_run_renders_everyone_and_writes_nothing() {
    let project = Project::sample();
    let run = project
        .run_env(&["send", "--dry-run", "--discard"], &[SECRET])
        .expect(0);
    assert!(
        run.stdout
            .contains("dry run: rendered 11 messages and discarded them"),
        "{}",
        run.stdout
    );
    assert!(!project.exists("outbox"));
    project.run(&["send", "--discard"]).expect(2);
}

#[test]
fn a_send_without_a_relay_sends_nothing_writes_nothing_and_says_how_to_give_one() {
    let project = Project::sample();
    let run = project.run_env(&["send"], &[SECRET]).expect(2);
    for names in ["--smtp", "GAZETTE_SMTP_URL", "delivery.smtp", "--dry-run"] {
        assert!(run.stderr.contains(names), "{names}: {}", run.stderr);
    }
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    for written in ["outbox", "public", ".gazette/state.db"] {
        assert!(!project.exists(written), "{written} was written");
    }
}

#[test]
fn a_sharded_dry_run_writes_only_its_part() {
    let mut seen = Vec::new();
    for k in 1..=2 {
        let project = Project::sample();
        let shard = format!("{k}/2");
        project
            .run_env(&["-q", "send", "--dry-run", "--shard", &shard], &[SECRET])
            .expect(0);
        let summary: serde_json::Value =
            serde_json::from_str(&project.read("outbox/2026-06-01/summary.json")).unwrap();
        assert_eq!(summary["shard"], shard.as_str());
        for entry in std::fs::read_dir(project.path().join("outbox/2026-06-01")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".eml") {
                seen.push(name);
            }
        }
    }
    seen.sort();
    let total = seen.len();
    seen.dedup();
    assert_eq!((total, seen.len()), (11, 11), "{seen:?}");
    Project::sample()
        .run_env(&["send", "--dry-run", "--shard", "3/2"], &[SECRET])
        .expect(2);
}

#[test]
fn a_dry_run_reports_bad_rows_and_mails_the_good_ones() {
    let project = Project::sample();
    let csv = project.read("subscribers.csv");
    let project = project.file(
        "subscribers.csv",
        format!("{csv}not-an-address,X,,,active,,,,,\n"),
    );
    let lines = csv.lines().count() + 1;
    let run = project.run_env(&["send", "--dry-run"], &[SECRET]).expect(1);
    assert!(
        run.stderr.contains(&format!("subscribers.csv:{lines}: ")),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("wrote 11 messages"), "{}", run.stdout);
    // A template error stops rendering, but the rows are still checked.
    let broken = project.file("templates/digest.mjml.tera", "{% if %}");
    let run = broken.run_env(&["send", "--dry-run"], &[SECRET]).expect(1);
    assert!(
        run.stderr.contains("templates/digest.mjml.tera:1:")
            && run.stderr.contains(&format!("subscribers.csv:{lines}: ")),
        "{}",
        run.stderr
    );
}

#[test]
fn the_issue_reads_its_posts_whole_even_beyond_the_feeds() {
    // The feeds want one post; the first issue takes five, and each must
    // be read whole (selection sees only the posts read whole).
    let project = Project::sample();
    let config = project
        .read("gazette.yaml")
        .replace("limit: 20", "limit: 1")
        .replace("tags: true", "tags: false");
    let project = project.file("gazette.yaml", config);
    let run = project
        .run_env(&["send", "--dry-run", "--format", "json"], &[SECRET])
        .expect(0);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["posts"].as_array().unwrap().len(), 5, "{summary}");
    let feed = project.json_feed("public/feed.json");
    assert_eq!(feed["items"].as_array().unwrap().len(), 1);
}

#[test]
fn a_dry_run_without_a_key_creates_no_state_folder() {
    let project = Project::sample();
    let run = project.run(&["send", "--dry-run"]).expect(0);
    assert!(!project.exists(".gazette"), "a dry run created .gazette/");
    let notes: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("unsubscribe key"))
        .collect();
    assert_eq!(
        notes,
        [
            ".gazette/secret: warning: no unsubscribe key yet, so this dry run signs its links \
          with a stand-in key and they will not work; the first real send makes the key \
          (or set GAZETTE_SECRET)"
        ]
    );
    // The stand-in is fixed: a second dry run writes the same links.
    let links = |eml: &str| -> Vec<String> {
        eml.lines()
            .filter(|line| line.contains("token="))
            .map(str::to_string)
            .collect()
    };
    let name = "outbox/2026-06-01/ada_at_example.com-b5fc85e5.eml";
    let first = project.read(name);
    assert!(!links(&first).is_empty(), "no unsubscribe link in\n{first}");
    project.run(&["-q", "send", "--dry-run"]).expect(0);
    assert_eq!(links(&project.read(name)), links(&first));
    assert!(!project.exists(".gazette"));
    // With a key in the environment there is nothing to warn about.
    let keyed = project.run_env(&["send", "--dry-run"], &[SECRET]).expect(0);
    assert!(
        !keyed.stderr.contains("unsubscribe key"),
        "{}",
        keyed.stderr
    );
    assert!(!project.exists(".gazette"));
}

#[test]
fn a_dry_run_signs_with_the_key_file_the_project_already_has() {
    // The key a first real send (or `preview`) made: the links of a later
    // dry run must be signed with it, so they work.
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let project = Project::sample().file(".gazette/secret", format!("{key}\n"));
    let run = project.run(&["send", "--dry-run"]).expect(0);
    assert!(!run.stderr.contains("unsubscribe key"), "{}", run.stderr);
    let eml = project.read("outbox/2026-06-01/ada_at_example.com-b5fc85e5.eml");
    let header = eml
        .lines()
        .find(|line| line.starts_with("List-Unsubscribe:") && line.contains("token="))
        .unwrap_or_else(|| panic!("no List-Unsubscribe link in\n{eml}"));
    let token: String = header[header.find("token=").unwrap() + "token=".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let checked = project.run(&["unsubscribe", &token]);
    assert_eq!(checked.code, 0, "{token}: {}", checked.stderr);
    assert_eq!(project.read(".gazette/secret"), format!("{key}\n"));
}
