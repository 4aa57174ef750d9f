//! Audience and selection: segments, one reader's digest, subscriber files.

use crate::support::Project;

#[test]
fn segments_on_the_sample_project() {
    let project = Project::sample();
    let run = project.run(&["segments"]).expect(0);
    insta::assert_snapshot!("sample_segments", run.stdout);
}

#[test]
fn explain_shows_each_kind_of_reader() {
    let project = Project::sample();
    // Interests of their own: ranked by them, with the parts of each score.
    let ada = project.run(&["explain", "ADA@example.com"]).expect(0);
    insta::assert_snapshot!("explain_personal", ada.stdout);
    // personalize: false → newest first, whatever the interests.
    let grace = project.run(&["explain", "grace@example.com"]).expect(0);
    insta::assert_snapshot!("explain_newest_first", grace.stdout);
    // No interests in a segment with none → pinned post first (cold start).
    let olu = project.run(&["explain", "olu@example.com"]).expect(0);
    insta::assert_snapshot!("explain_cold_start", olu.stdout);
    // Unsubscribed: shown, never mailed.
    let former = project.run(&["explain", "former@example.com"]).expect(0);
    assert!(
        former
            .stdout
            .ends_with("status: unsubscribed\ngets no email: only active subscribers are mailed\n"),
        "{}",
        former.stdout
    );
}

#[test]
fn explain_of_an_unknown_address_fails() {
    let project = Project::sample();
    let run = project
        .run(&["-q", "explain", "nobody@example.com"])
        .expect(1);
    assert_eq!(
        run.stderr,
        "error: no subscriber with address 'nobody@example.com' in subscribers.csv\n"
    );
}

#[test]
fn check_reports_every_bad_subscriber_row_and_keeps_the_rest() {
    let project = Project::new().file(
        "subscribers.csv",
        "\u{feff}email,name,interests,status\r\n\
         ok@example.com,\"Doe, Jane\",ai,active\r\n\
         not-an-address,Bad,,\r\n\
         quote@example.com,\"Multi\nline\",,\r\n\
         OK@EXAMPLE.COM,Again,,unsubscribed\r\n\
         odd@example.com,Odd,,paused\r\n",
    );
    let run = project.run(&["check"]).expect(1);
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn segment_config_mistakes_are_located() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com\n\
             segments:\n  - id: fans\n    interests: [ai]\n\
             \x20 - id: fans\n    match: {}\n\
             \x20 - id: roles\n    match:\n      attributes:\n        role: {equals: a, exists: true}\n\
             \x20 - id: default\n    match: {segment: x}\n    pinned: [nowhere]\n\
             \x20   cta: [{text: Go, url: \"javascript:alert(1)\"}]\n\
             digest:\n  max_tag_share: 1.5\n  half_life_days: 0\n",
        )
        .file(
            "content/a.md",
            "---\ntitle: A\ndate: 2024-01-01\n---\nText.\n",
        );
    let run = project.run(&["check"]).expect(1);
    insta::assert_snapshot!(run.stderr, @"
    gazette.yaml:5:3: segment 'fans' needs a 'match' (only 'default' catches everyone)
    gazette.yaml:7:9: segment id 'fans' is used twice
    gazette.yaml:8:12: 'match' needs at least one of: segment, interests_any, interests_all, attributes
    gazette.yaml:12:15: attribute test 'role' needs exactly one of: equals, in, exists
    gazette.yaml:14:12: the 'default' segment catches everyone else; it takes no 'match'
    gazette.yaml:16:27: CTA url 'javascript:alert(1)' must be an http(s) or mailto: URL, or a path on the site such as /demo/
    gazette.yaml:18:18: max_tag_share must be above 0 and at most 1
    gazette.yaml:19:19: half_life_days must be a number of days, at least 0.01
    ");
}

#[test]
fn a_pinned_slug_that_is_no_post_is_a_warning() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com\n\
             segments:\n  - id: default\n    pinned: [nowhere]\n",
        )
        .file(
            "content/a.md",
            "---\ntitle: A\ndate: 2024-01-01\n---\nText.\n",
        );
    let run = project.run(&["check"]).expect(0);
    assert_eq!(
        run.stderr,
        "gazette.yaml: warning: segment 'default' pins 'nowhere', which is not a published post\n"
    );
}

#[test]
fn links_that_leave_the_site_empty_subjects_and_a_missing_named_file_are_errors() {
    let project = Project::new().file(
        "gazette.yaml",
        "site:\n  title: T\n  base_url: https://example.com\n\
         audience:\n  file: subscriberz.csv\n\
         segments:\n  - id: default\n    subject: \"\"\n    cta:\n\
         \x20     - {text: Go, url: \"//evil.example/x\"}\n\
         \x20     - {text: \"\", url: \"/ok/\"}\n\
         \x20     - {text: Mail, url: \"mailto:\"}\n",
    );
    let run = project.run(&["check"]).expect(1);
    insta::assert_snapshot!(run.stderr, @"
    gazette.yaml:8:14: a subject must not be empty
    gazette.yaml:10:25: CTA url '//evil.example/x' must be an http(s) or mailto: URL, or a path on the site such as /demo/
    gazette.yaml:11:16: a call to action needs a 'text'
    gazette.yaml:12:27: CTA url 'mailto:' must be an http(s) or mailto: URL, or a path on the site such as /demo/
    ");
    let missing = Project::new().file(
        "gazette.yaml",
        "site:\n  title: T\n  base_url: https://example.com\naudience:\n  file: subscriberz.csv\n",
    );
    let run = missing.run(&["check"]).expect(1);
    assert_eq!(
        run.stderr,
        "subscriberz.csv: subscribers file not found (named by audience.file in gazette.yaml)\n"
    );
}

#[test]
fn an_opt_out_holds_even_on_a_broken_row_or_in_another_spelling() {
    let project = Project::new().file(
        "subscribers.csv",
        "email,name,status\n\
         a@x.example,Ann,active\n\
         a@x.example,\"Bad\nName\",unsubscribed\n\
         u@bücher.example,Udo,active\n\
         U@xn--bcher-kva.example,Udo,complained\n\
         b@x.example,\"Bob,active\n\
         c@x.example,Cy,bounced\n",
    );
    let run = project.run(&["segments"]).expect(1);
    insta::assert_snapshot!(run.stderr, @"
    subscribers.csv:2: warning: a@x.example is also on rejected line 3 as 'unsubscribed', so it is not mailed
    subscribers.csv:3: a quoted value runs over 2 lines (no field may hold a line break); if its closing quote is missing, the rows on those lines were not read
    subscribers.csv:6: warning: duplicate of line 5 (U@xn--bcher-kva.example); line 5 is kept with this row's status 'complained'
    subscribers.csv:7: a quoted value runs over 2 lines (no field may hold a line break); if its closing quote is missing, the rows on those lines were not read
    ");
    assert!(
        run.stdout
            .contains("default (Everyone else): 0 to mail, 2 not mailable"),
        "{}",
        run.stdout
    );
}
