//! gazette.yaml: strict keys, checked values, every problem in one run.

use crate::support::Project;

#[test]
fn every_config_problem_is_reported_with_its_place() {
    let project = Project::new().file(
        "gazette.yaml",
        "site:\n  title: Test\n  base_url: example.com\n  timezone: Europe/Berlinn\n  autor: me\n\
         content:\n  summary_length: 5\n  max_file_size: huge\n  permalink: \"{base_url}/{year}/{title}/\"\n\
         feeds:\n  limt: 5\n  content: everything\n  rss: maybe\nfeeds.tags: true\n",
    );
    let run = project.run(&["check"]).expect(1);
    insta::assert_snapshot!(run.stderr, @r#"
    gazette.yaml:3:13: base_url must be an absolute http or https URL, got 'example.com'
    gazette.yaml:4:13: unknown timezone 'Europe/Berlinn'; use an IANA name such as 'Europe/Berlin' or 'UTC'
    gazette.yaml:5:3: unknown key 'site.autor' (did you mean 'author'?)
    gazette.yaml:7:19: summary_length must be at least 20 characters
    gazette.yaml:8:18: cannot read size 'huge'; write bytes (1048576) or a number with B, KB, MB, GB, KiB, MiB or GiB
    gazette.yaml:9:14: unknown placeholder '{title}' in permalink; use {base_url}, {slug}, {year}, {month}, {day}
    gazette.yaml:11:3: unknown key 'feeds.limt' (did you mean 'limit'?)
    gazette.yaml:12:12: 'feeds.content' cannot be 'everything'; expected one of: full, summary
    gazette.yaml:13:8: invalid type: string "maybe", expected a boolean (key 'feeds.rss')
    gazette.yaml:14:1: key 'feeds.tags' holds a '.' or '['; nest it instead ('feeds:' with 'tags' indented below it)
    "#);
    assert_eq!(
        run.stdout,
        "0 posts ready, 0 skipped: 10 errors, 0 warnings\n"
    );
}

#[test]
fn yaml_syntax_errors_point_at_the_start_of_the_problem() {
    let project = Project::new().file(
        "gazette.yaml",
        "site:\n  title: \"Unclosed\n  base_url: https://example.com\n",
    );
    let run = project.run(&["feeds"]).expect(1);
    insta::assert_snapshot!(run.stderr, @r"
    gazette.yaml:2:10: unclosed quoted string
    error: 1 problem found; no feed written
    ");
    assert!(!project.exists("public"));
}

#[test]
fn tabs_and_other_yaml_mistakes_are_located() {
    let project = Project::new().file("gazette.yaml", "site:\n\ttitle: x\n");
    let run = project.run(&["check"]).expect(1);
    assert!(
        run.stderr.starts_with("gazette.yaml:2:1: "),
        "{}",
        run.stderr
    );
}

#[test]
fn alias_bombs_are_refused_quickly() {
    let mut yaml = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(",");
        yaml += &format!("{}: &{} [{refs}]\n", pair[1], pair[1]);
    }
    let project = Project::new().file("gazette.yaml", yaml);
    let run = project.run(&["check"]).expect(1);
    assert!(
        run.stderr.contains("repetition limit exceeded"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_config_that_is_not_a_map_is_an_error() {
    let project = Project::new().file("gazette.yaml", "- just\n- a list\n");
    let run = project.run(&["check"]).expect(1);
    assert!(run.stderr.starts_with("gazette.yaml"), "{}", run.stderr);
}

#[test]
fn duplicate_keys_and_deep_nesting_are_located() {
    let duplicate = Project::new().file(
        "gazette.yaml",
        "site:\n  title: T\n  base_url: https://example.com\n  title: U\n",
    );
    let run = duplicate.run(&["check"]).expect(1);
    assert_eq!(
        run.stderr,
        "gazette.yaml:4:3: site: duplicate entry with key \"title\"\n"
    );
    let deep = Project::new().file(
        "gazette.yaml",
        format!("site:\n  title: {}\n", "[".repeat(100_000)),
    );
    let run = deep.run(&["check"]).expect(1);
    assert_eq!(
        run.stderr,
        "gazette.yaml:2:138: lists or maps nested more than 128 deep\n"
    );
}

#[test]
fn audience_max_shrink_is_a_share_from_0_to_1() {
    let project = Project::new().file(
        "gazette.yaml",
        "site:\n  title: Test\n  base_url: https://example.com\naudience:\n  max_shrink: 1.5\n",
    );
    let run = project.run(&["check"]).expect(1);
    assert_eq!(
        run.stderr,
        "gazette.yaml:5:15: max_shrink must be a share from 0 to 1 (0.5: half the readers)\n"
    );
    let fine = project.file(
        "gazette.yaml",
        "site:\n  title: Test\n  base_url: https://example.com\naudience:\n  max_shrink: 0.2\n",
    );
    fine.run(&["check"]).expect(0);
}
