//! Posts in: every front-matter shape, text hygiene, and bad input.

use std::fmt::Write;

use gazette::clock::Clock;
use gazette::config::Config;
use gazette::content::{self, Head, Post, Want};

use crate::support::{NOW, Project};

/// Loads a project through the library, every post whole, as `check` does.
fn load(project: &Project) -> content::Loaded {
    load_wanting(project, Want::Everything)
}

fn load_wanting(project: &Project, want: Want) -> content::Loaded {
    let (config, problems) = Config::load(
        &project.path().join("gazette.yaml"),
        std::path::Path::new("gazette.yaml"),
    );
    assert!(problems.is_empty(), "{problems:?}");
    let clock = Clock::pinned(NOW).expect("pinned clock");
    content::load(&config.expect("config"), project.path(), &clock, want)
}

/// Every field of a post on its own line, for snapshots.
fn describe(post: &Post) -> String {
    let mut out = String::new();
    let tags: Vec<String> = post
        .tags
        .iter()
        .map(|t| format!("{} ({})", t.name, t.key))
        .collect();
    let authors: Vec<String> = post
        .authors
        .iter()
        .map(|a| format!("{} <{}>", a.name, a.email.as_deref().unwrap_or("")))
        .collect();
    let _ = writeln!(out, "== {} ({})", post.slug, post.source.display());
    let _ = writeln!(out, "url: {}", post.url);
    let _ = writeln!(out, "title: {}", post.title);
    let _ = writeln!(out, "date: {}", post.date.to_rfc3339());
    let _ = writeln!(out, "updated: {:?}", post.updated.map(|d| d.to_rfc3339()));
    let _ = writeln!(out, "summary: {}", post.summary);
    let _ = writeln!(out, "tags: {}", tags.join(", "));
    let _ = writeln!(out, "authors: {}", authors.join(", "));
    let _ = writeln!(out, "image: {:?}", post.image.as_ref().map(|u| u.as_str()));
    let _ = writeln!(
        out,
        "cta: {:?}",
        post.cta
            .as_ref()
            .map(|c| (&c.text, c.url.as_ref().map(|u| u.as_str())))
    );
    let _ = writeln!(
        out,
        "reading_time: {} min ({} words)",
        post.reading_time, post.words
    );
    let _ = writeln!(
        out,
        "extra: {}",
        serde_json::Value::Object(post.extra.clone())
    );
    let _ = writeln!(out, "body: {}", post.body_html);
    out
}

#[test]
fn every_front_matter_shape_becomes_one_post_model() {
    let project =
        Project::fixture("shapes").touch("content/no-front-matter.md", "2024-07-07T07:07:07Z");
    let loaded = load(&project);
    let diagnostics: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("shapes_diagnostics", diagnostics.join("\n"));
    let posts: Vec<String> = loaded.library.posts.iter().map(describe).collect();
    insta::assert_snapshot!("shapes_posts", posts.join("\n"));
}

#[test]
fn check_lists_warnings_and_skipped_posts() {
    let project =
        Project::fixture("shapes").touch("content/no-front-matter.md", "2024-07-07T07:07:07Z");
    let run = project.run(&["check"]).expect(0);
    insta::assert_snapshot!(run.stderr, @"
    content/draft.md: note: skipped: draft (draft: true)
    content/extras.md:5:8: warning: unknown front-matter key 'titel' (did you mean 'title'?); kept in extra
    content/future.md: note: skipped: scheduled for 2027-01-01T09:00:00+00:00
    content/no-front-matter.md:1:1: warning: no date in front matter; using the file's modification time, 2024-07-07T07:07:07+00:00 (add `date:` to fix it)
    content/unpublished.md: note: skipped: draft (published: false)
    ");
    assert_eq!(
        run.stdout,
        "9 posts ready, 3 skipped: 0 errors, 2 warnings\n"
    );
}

#[test]
fn bom_and_crlf_give_the_same_post_as_plain_lf() {
    let lf = "---\ntitle: \"Same\"\ndate: 2024-01-02\ntags: [a, b]\n---\n\n# Same\n\nFirst *para*.\n\n- one\n- two\n";
    let crlf = format!("\u{feff}{}", lf.replace('\n', "\r\n"));
    let one = load(&Project::new().file("content/same.md", lf));
    let two = load(&Project::new().file("content/same.md", crlf));
    assert!(two.diagnostics.is_empty(), "{:?}", two.diagnostics);
    assert_eq!(
        describe(&one.library.posts[0]),
        describe(&two.library.posts[0])
    );
}

#[test]
fn mojibake_and_control_characters_are_repaired_with_located_warnings() {
    let project = Project::new().file(
        "content/dirty.md",
        "---\ntitle: \"Caf\u{c3}\u{a9} \u{1}bell\"\ndate: 2024-01-02\n---\n\nAn em dash \u{e2}\u{20ac}\u{201d} here\u{7}.\n",
    );
    let loaded = load(&project);
    let messages: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(messages.join("\n"), @r"
    content/dirty.md:2:12: warning: repaired mis-decoded text: 'Ã©' → 'é' and 1 more (UTF-8 read as Windows-1252)
    content/dirty.md:2:15: warning: removed control character U+0001 and 1 more (not allowed in XML feeds)
    ");
    let post = &loaded.library.posts[0];
    assert_eq!(post.title, "Café bell");
    assert_eq!(post.body_html, "<p>An em dash — here.</p>");
}

#[test]
fn the_sample_project_reads_cleanly() {
    let project = Project::sample();
    let run = project.run(&["check"]).expect(0);
    insta::assert_snapshot!(run.stderr, @"
    content/future-of-digital-marketing-ai-personalization.md:60:61: warning: repaired mis-decoded text: 'â€”' → '—' (UTF-8 read as Windows-1252)
    content/rise-of-ai-in-digital-marketing.md:1:1: warning: no date in front matter; using the file's modification time, 2025-01-10T08:00:00+00:00 (add `date:` to fix it)
    ");
    let loaded = load(&project);
    let titles: Vec<(&str, String)> = loaded
        .library
        .posts
        .iter()
        .map(|p| (p.title.as_str(), p.date.to_rfc3339()))
        .collect();
    insta::assert_debug_snapshot!(titles, @r#"
    [
        (
            "AI-Driven Personalization: Revolutionizing Content Creation by 2025",
            "2025-08-29T00:00:00+01:00",
        ),
        (
            "Digital Marketing in 2025: The Rise of AI-Driven Hyper-Personalization",
            "2025-03-09T00:00:00+00:00",
        ),
        (
            "Machine Learning is Reshaping Digital Marketing: A Look Into the Future",
            "2025-03-05T00:00:00+00:00",
        ),
        (
            "The Rise of AI in Digital Marketing",
            "2025-01-10T08:00:00+00:00",
        ),
        (
            "The Future of Digital Marketing: AI and Personalization",
            "2023-12-15T00:00:00+00:00",
        ),
    ]
    "#);
}

#[test]
fn git_history_dates_posts_without_one() {
    let project = Project::new().file("content/dateless.md", "# No date\n\nText.\n");
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(project.path())
            .env("GIT_AUTHOR_DATE", "2024-09-09T09:09:09+02:00")
            .env("GIT_COMMITTER_DATE", "2024-09-09T09:09:09+02:00")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git is installed");
        assert!(status.status.success(), "git {args:?}: {status:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    let run = project.run(&["check"]).expect(0);
    assert_eq!(
        run.stderr,
        "content/dateless.md:1:1: warning: no date in front matter; using the date the file was first \
         committed to git, 2024-09-09T09:09:09+02:00 (add `date:` to fix it)\n"
    );
}

#[test]
fn broken_posts_are_all_reported_in_one_run_and_nothing_is_written() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com\ncontent:\n  max_file_size: 2 KB\n",
        )
        .file(
            "content/unclosed-quote.md",
            "---\ntitle: \"ok\"\ndate: \"2024-01-01\ntags: [a]\n---\nBody\n",
        )
        .file(
            "content/bad-toml.md",
            "+++\ntitle = \"ok\"\ndate = 2024-01-01\ntags = [\"a\",\n+++\nBody\n",
        )
        .file(
            "content/unclosed-fence.md",
            "---\ntitle: Never closed\n\nBody\n",
        )
        .file(
            "content/not-utf8.md",
            b"---\ntitle: x\n---\nCaf\xe9 au lait\n".as_slice(),
        )
        .file("content/huge.md", "x".repeat(3000))
        .file(
            "content/bad-date.md",
            "---\ntitle: Bad date\ndate: next tuesday\n---\nBody\n",
        )
        .file(
            "content/bad-slug.md",
            "---\ntitle: Bad slug\ndate: 2024-01-01\nslug: \"a b/c\"\n---\nBody\n",
        )
        .file(
            "content/no-title.md",
            "---\ndate: 2024-01-01\n---\nJust text, no heading.\n",
        )
        .file(
            "content/bad-draft.md",
            "---\ntitle: Draft?\ndate: 2024-01-01\ndraft: perhaps\n---\nBody\n",
        )
        .file("content/not-a-map.md", "---\n- a\n- list\n---\nBody\n")
        .file(
            "content/tags-map.md",
            "---\ntitle: Tags\ndate: 2024-01-01\ntags: {a: 1}\n---\nBody\n",
        )
        .file(
            "content/one.md",
            "---\ntitle: One\ndate: 2024-01-01\nslug: same\n---\nBody\n",
        )
        .file(
            "content/two.md",
            "---\ntitle: Two\ndate: 2024-01-02\nslug: same\n---\nBody\n",
        )
        .file(
            "content/far-future.md",
            "---\ntitle: Far\ndate: \"+10000-01-01\"\nupdated: 1 Jan 99999 00:00 +0000\n---\nBody\n",
        )
        .file(
            "content/many-faults.md",
            "---\nslug: \"bad slug\"\ndate: soon\nimage: \"http://[::1\"\n---\nNo heading.\n",
        );
    let run = project.run(&["feeds"]).expect(1);
    insta::assert_snapshot!(run.stderr, @"
    content/bad-date.md:3:7: cannot read 'date' value 'next tuesday' as a date; expected YYYY-MM-DD, an RFC 3339 time (2025-03-09T10:00:00+01:00), YYYY-MM-DD HH:MM:SS +ZZZZ, or RFC 2822
    content/bad-draft.md:4:8: 'draft' must be true or false, got text
    content/bad-slug.md:4:7: slug 'a b/c' contains ' '; use letters, digits, '-', '_', '.' and '~' only
    content/bad-toml.md:4:13: unclosed array, expected `]` in front matter
    content/far-future.md:3:7: 'date' value '+10000-01-01' is outside the years 1000 to 9999
    content/far-future.md:4:10: 'updated' value '1 Jan 99999 00:00 +0000' is outside the years 1000 to 9999
    content/huge.md: file is larger than content.max_file_size (2000 bytes); not read
    content/many-faults.md:1:1: no title: add `title:` to the front matter or a `# ` heading to the post
    content/many-faults.md:2:7: slug 'bad slug' contains ' '; use letters, digits, '-', '_', '.' and '~' only
    content/many-faults.md:3:7: cannot read 'date' value 'soon' as a date; expected YYYY-MM-DD, an RFC 3339 time (2025-03-09T10:00:00+01:00), YYYY-MM-DD HH:MM:SS +ZZZZ, or RFC 2822
    content/many-faults.md:4:8: 'image' is not a usable URL ('http://[::1': invalid IPv6 address)
    content/no-title.md:1:1: no title: add `title:` to the front matter or a `# ` heading to the post
    content/not-a-map.md:2:1: front matter must be a map of keys and values
    content/not-utf8.md:4:4: not valid UTF-8 (byte 0xE9); save the file as UTF-8
    content/tags-map.md:4:7: 'tags' must be a list or comma-separated text, got a map
    content/unclosed-fence.md:1:1: front matter opened with '---' is never closed (add a '---' line after it)
    content/unclosed-quote.md:3:7: unclosed quoted string in front matter
    content/two.md: slug 'same' is also used by content/one.md; give one of them a different `slug:`
    error: 18 problems found; no feed written
    ");
    assert!(!project.exists("public"), "no output after errors");
    let check = project.run(&["check"]).expect(1);
    assert_eq!(
        check.stdout,
        "2 posts ready, 0 skipped: 18 errors, 0 warnings\n"
    );
}

#[test]
fn a_missing_content_folder_is_an_error() {
    let project = Project::empty().file(
        "gazette.yaml",
        "site:\n  title: T\n  base_url: https://example.com\n",
    );
    let run = project.run(&["check"]).expect(1);
    assert_eq!(
        run.stderr,
        "content: content folder not found (set content.dir in gazette.yaml)\n"
    );
}

#[test]
fn deeply_nested_bodies_are_refused_before_parsing() {
    let project = Project::new()
        .file(
            "content/divs.html",
            format!(
                "---\ntitle: Divs\ndate: 2024-01-01\n---\n{}x",
                "<div>".repeat(100_000)
            ),
        )
        .file(
            "content/quotes.md",
            format!(
                "---\ntitle: Quotes\ndate: 2024-01-01\n---\n{}x",
                "> ".repeat(100_000)
            ),
        )
        .file(
            "content/bold.html",
            format!(
                "---\ntitle: Bold\ndate: 2024-01-01\n---\n{}{}",
                "<b>".repeat(500),
                "<p>x".repeat(20_000)
            ),
        )
        .file(
            "content/table.md",
            format!(
                "---\ntitle: Table\ndate: 2024-01-01\n---\n{}|\n{}|\n",
                "| a ".repeat(20_000),
                "|---".repeat(20_000)
            ),
        )
        .file(
            "content/lists.md",
            format!(
                "---\ntitle: Lists\ndate: 2024-01-01\n---\n{}",
                (0..600)
                    .map(|i| format!("{}- x\n", "  ".repeat(i)))
                    .collect::<String>()
            ),
        );
    let run = project.run(&["check"]).expect(1);
    insta::assert_snapshot!(run.stderr, @"
    content/bold.html: 500 formatting elements (<b>, <i>, <a>…) open at once; gazette reads at most 64 (close them)
    content/divs.html: HTML nested 100000 elements deep; gazette reads at most 512 levels
    content/lists.md: HTML nested 600 elements deep; gazette reads at most 512 levels
    content/quotes.md: quotes or lists nested 100000 deep on one line; gazette reads at most 512 levels
    content/table.md: a table row with 20001 cells; gazette reads at most 1000
    ");
}

#[test]
fn awkward_but_valid_posts_are_read_as_their_authors_meant() {
    let project = Project::new()
        .file(
            "content/escapes.md",
            "---\ntitle: \"Bell\\u0001 and \\uFFFF\"\ndate: 2024-01-02\nauthor: \"\"\n---\nText &#1;here.\n",
        )
        .file(
            "content/published-text.md",
            "---\ntitle: Not yet\ndate: 2024-01-02\npublished: \"false\"\n---\nText.\n",
        )
        .file(
            "content/heading-later.md",
            "---\ntitle: \"\"\ndate: 2024-01-03\n---\nIntro line.\n\n# The Real Title\n\nMore.\n",
        )
        .file(
            "content/more-in-code.md",
            "---\ntitle: Code\ndate: 2024-01-04\n---\n```html\n<!-- more -->\n```\n\nThe first paragraph.\n",
        )
        .file(
            "content/more-first.md",
            "---\ntitle: More first\ndate: 2024-01-05\n---\n<!-- more -->\n\nThe opening words.\n",
        )
        .file(
            "content/2023-05-06-trip/index.md",
            "---\ntitle: Trip\n---\nA bundle dated by its folder.\n",
        );
    let loaded = load(&project);
    let messages: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(messages.join("\n"), @"
    content/escapes.md:1:1: warning: removed control character U+0001 and 4 more (written as an escape; not allowed in XML feeds)
    content/published-text.md: note: skipped: draft (published: false)
    ");
    let posts: Vec<String> = loaded.library.posts.iter().map(describe).collect();
    insta::assert_snapshot!(posts.join("\n"), @r#"
    == more-first (content/more-first.md)
    url: https://example.com/more-first/
    title: More first
    date: 2024-01-05T00:00:00+00:00
    updated: None
    summary: The opening words.
    tags: 
    authors: 
    image: None
    cta: None
    reading_time: 1 min (3 words)
    extra: {}
    body: <!-- more -->
    <p>The opening words.</p>

    == more-in-code (content/more-in-code.md)
    url: https://example.com/more-in-code/
    title: Code
    date: 2024-01-04T00:00:00+00:00
    updated: None
    summary: The first paragraph.
    tags: 
    authors: 
    image: None
    cta: None
    reading_time: 1 min (6 words)
    extra: {}
    body: <pre><code class="language-html">&lt;!-- more --&gt;
    </code></pre>
    <p>The first paragraph.</p>

    == heading-later (content/heading-later.md)
    url: https://example.com/heading-later/
    title: The Real Title
    date: 2024-01-03T00:00:00+00:00
    updated: None
    summary: Intro line.
    tags: 
    authors: 
    image: None
    cta: None
    reading_time: 1 min (3 words)
    extra: {}
    body: <p>Intro line.</p>

    <p>More.</p>

    == escapes (content/escapes.md)
    url: https://example.com/escapes/
    title: Bell and
    date: 2024-01-02T00:00:00+00:00
    updated: None
    summary: Text here.
    tags: 
    authors: 
    image: None
    cta: None
    reading_time: 1 min (2 words)
    extra: {}
    body: <p>Text here.</p>

    == trip (content/2023-05-06-trip/index.md)
    url: https://example.com/trip/
    title: Trip
    date: 2023-05-06T00:00:00+00:00
    updated: None
    summary: A bundle dated by its folder.
    tags: 
    authors: 
    image: None
    cta: None
    reading_time: 1 min (6 words)
    extra: {}
    body: <p>A bundle dated by its folder.</p>
    "#);
}

#[test]
fn a_scheduled_post_cannot_take_a_published_slug() {
    let project = Project::new()
        .file(
            "content/a-now.md",
            "---\ntitle: Now\ndate: 2024-01-01\nslug: news\n---\nBody\n",
        )
        .file(
            "content/b-later.md",
            "---\ntitle: Later\ndate: 2030-01-01\nslug: news\n---\nBody\n",
        )
        .file(
            "content/c-draft.md",
            "---\ntitle: Draft\ndate: 2024-01-01\nslug: news\ndraft: true\n---\nBody\n",
        );
    let run = project.run(&["check"]).expect(1);
    insta::assert_snapshot!(run.stderr, @"
    content/b-later.md: note: skipped: scheduled for 2030-01-01T00:00:00+00:00
    content/c-draft.md: note: skipped: draft (draft: true)
    content/b-later.md: slug 'news' is also used by content/a-now.md; give one of them a different `slug:`
    ");
}

#[test]
fn a_run_that_wants_some_posts_reads_only_their_bodies_but_every_front_matter() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com\n",
        )
        .file(
            "content/new.md",
            "---\ntitle: New\ndate: 2024-03-01\n---\nNew body.\n",
        )
        .file(
            "content/old.md",
            "---\ntitle: Old\ndate: 2024-01-01\nsumary: typo\n---\n[x](http://[::1)\n",
        )
        .file(
            "content/untitled.md",
            "---\ndate: 2024-02-01\n---\nNo heading, so no title.\n",
        )
        .file(
            "content/draft.md",
            "---\ntitle: D\ndate: 2024-04-01\ndraft: true\n---\nx\n",
        )
        .file(
            "content/broken.md",
            "---\ndate: soon\n---\nNo heading either.\n",
        )
        .file(
            "content/later.md",
            "---\ndate: 2030-01-01\n---\nScheduled, and no title either.\n",
        )
        .file(
            "content/escaped.md",
            "---\ntitle: \"Old\\u0001\"\ndate: 2023-01-01\n---\nBody.\n",
        );
    let seen = std::sync::Mutex::new(Vec::new());
    let choose = |heads: &[&Head]| {
        *seen.lock().unwrap() = heads.iter().map(|h| h.slug.clone()).collect();
        heads.iter().map(|h| h.slug == "new").collect()
    };
    let loaded = load_wanting(&project, Want::Some(&choose));
    // Published posts only, newest first.
    assert_eq!(*seen.lock().unwrap(), ["new", "untitled", "old", "escaped"]);
    let slugs: Vec<&str> = loaded
        .library
        .posts
        .iter()
        .map(|p| p.slug.as_str())
        .collect();
    assert_eq!(slugs, ["new"]);
    assert_eq!(loaded.library.unread.len(), 3);
    assert_eq!(loaded.library.published(), 4);
    let shown: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    // Front-matter problems of every file (an escaped control character
    // too); body problems of the posts read whole, of a file that failed
    // anyway, and of drafts and scheduled posts (read whole to say all).
    assert_eq!(
        shown,
        [
            "content/broken.md:1:1: no title: add `title:` to the front matter or a `# ` heading to the post",
            "content/broken.md:2:7: cannot read 'date' value 'soon' as a date; expected YYYY-MM-DD, an RFC 3339 time (2025-03-09T10:00:00+01:00), YYYY-MM-DD HH:MM:SS +ZZZZ, or RFC 2822",
            "content/draft.md: note: skipped: draft (draft: true)",
            "content/escaped.md:1:1: warning: removed control character U+0001 (written as an escape; not allowed in XML feeds)",
            "content/later.md:1:1: no title: add `title:` to the front matter or a `# ` heading to the post",
            "content/old.md:4:9: warning: unknown front-matter key 'sumary' (did you mean 'summary'?); kept in extra",
        ],
    );
    // Read whole, every post says the same of its front matter…
    let whole: Vec<String> = load(&project)
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    for said in &shown {
        assert!(whole.contains(said), "{said} only in the two-pass read");
    }
    // …and the unwanted posts' bodies have problems of their own.
    let everything: Vec<String> = load(&project)
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        everything
            .iter()
            .any(|d| d.starts_with("content/untitled.md:1:1: no title")),
        "{everything:#?}"
    );
    assert!(
        everything
            .iter()
            .any(|d| d.starts_with("content/old.md:1:1: warning: cannot resolve link")),
        "{everything:#?}"
    );
}
