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
