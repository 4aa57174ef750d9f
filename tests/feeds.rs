//! Feeds out: RSS 2.0, Atom 1.0 and JSON Feed 1.1, read back by real parsers.

use std::io::BufReader;

use gazette::clock::Clock;
use gazette::config::Config;
use gazette::content::{self, Head, Want};
use gazette::feed;

use crate::support::{NOW, Project};

fn rss(project: &Project, name: &str) -> rss::Channel {
    let file = std::fs::File::open(project.path().join(name)).expect("rss file");
    rss::Channel::read_from(BufReader::new(file)).expect("RSS parses back")
}

fn atom(project: &Project, name: &str) -> atom_syndication::Feed {
    let file = std::fs::File::open(project.path().join(name)).expect("atom file");
    atom_syndication::Feed::read_from(BufReader::new(file)).expect("Atom parses back")
}

#[test]
fn sample_project_feeds_hold_all_five_posts() {
    let project = Project::sample();
    let run = project.run(&["feeds"]).expect(0);
    assert_eq!(run.stdout, "wrote 15 feed files to public (5 posts)\n");

    let channel = rss(&project, "public/rss.xml");
    assert_eq!(channel.items.len(), 5);
    let feed = atom(&project, "public/atom.xml");
    assert_eq!(feed.entries.len(), 5);
    let json = project.json_feed("public/feed.json");
    assert_eq!(json["items"].as_array().map(Vec::len), Some(5));

    for name in ["public/rss.xml", "public/atom.xml", "public/feed.json"] {
        let text = project.read(name);
        assert!(!text.contains("â€"), "{name} still holds mojibake");
        assert!(
            !text.contains("href=\"/") && !text.contains("src=\"/"),
            "{name} has a relative URL"
        );
        assert!(!text.contains("href=&quot;/"), "{name} has a relative URL");
    }
    for item in &channel.items {
        assert!(
            item.link
                .as_deref()
                .is_some_and(|l| l.starts_with("https://example.com/"))
        );
        assert!(
            item.pub_date
                .as_deref()
                .is_some_and(|d| d.ends_with("+0000") || d.ends_with("+0100"))
        );
    }
    insta::assert_snapshot!("sample_rss", project.read("public/rss.xml"));
    insta::assert_snapshot!("sample_atom", project.read("public/atom.xml"));
    insta::assert_snapshot!("sample_json", project.read("public/feed.json"));
}

#[test]
fn two_builds_are_byte_identical_and_leave_no_temporary_files() {
    let project = Project::sample();
    project.run(&["feeds", "--out", "one"]).expect(0);
    project.run(&["feeds", "--out", "two"]).expect(0);
    for name in ["rss.xml", "atom.xml", "feed.json", "tags/ai/rss.xml"] {
        assert_eq!(
            project.read(&format!("one/{name}")),
            project.read(&format!("two/{name}")),
            "{name} differs between two builds"
        );
    }
    let leftovers: Vec<_> = walk(&project.path().join("one"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".gazette-"))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn newest_first_ties_by_slug_and_the_limit_applies() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com/blog\nfeeds:\n  limit: 3\n",
        )
        .file("content/b.md", "---\ntitle: B\ndate: 2024-05-01\n---\nb\n")
        .file("content/a.md", "---\ntitle: A\ndate: 2024-05-01\n---\na\n")
        .file(
            "content/old.md",
            "---\ntitle: Old\ndate: 2020-01-01\n---\nold\n",
        )
        .file(
            "content/new.md",
            "---\ntitle: New\ndate: 2024-06-01\n---\nnew\n",
        );
    project.run(&["feeds"]).expect(0);
    let titles: Vec<String> = rss(&project, "public/rss.xml")
        .items
        .iter()
        .filter_map(|i| i.title.clone())
        .collect();
    assert_eq!(titles, ["New", "A", "B"]);
    let feed = atom(&project, "public/atom.xml");
    assert_eq!(feed.entries[1].id, "https://example.com/blog/a/");
    assert_eq!(feed.updated.to_rfc3339(), "2024-06-01T00:00:00+00:00");
    let self_link = feed
        .links
        .iter()
        .find(|l| l.rel == "self")
        .expect("self link");
    assert_eq!(self_link.href, "https://example.com/blog/atom.xml");
}

#[test]
fn summary_mode_leaves_the_body_out() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com\nfeeds:\n  content: summary\n  json: false\n",
        )
        .file("content/a.md", "---\ntitle: A\ndate: 2024-05-01\nsummary: Short.\n---\nThe long body.\n");
    project.run(&["feeds"]).expect(0);
    let channel = rss(&project, "public/rss.xml");
    assert_eq!(channel.items[0].content, None);
    assert_eq!(channel.items[0].description.as_deref(), Some("Short."));
    assert!(
        atom(&project, "public/atom.xml").entries[0]
            .content
            .is_none()
    );
    assert!(!project.exists("public/feed.json"));
}

#[test]
fn per_tag_feeds_hold_only_their_posts() {
    let project =
        Project::fixture("shapes").touch("content/no-front-matter.md", "2024-07-07T07:07:07Z");
    project.run(&["feeds"]).expect(0);
    let channel = rss(&project, "public/tags/rust/rss.xml");
    let titles: Vec<_> = channel
        .items
        .iter()
        .filter_map(|i| i.title.as_deref())
        .collect();
    assert_eq!(titles, ["TOML front matter", "RFC 2822 and updated"]);
    assert_eq!(channel.title, "Shapes — Rust");
    let self_link = &channel.atom_ext.as_ref().expect("atom:link").links[0];
    assert_eq!(self_link.href, "https://blog.example.org/tags/rust/rss.xml");
    assert!(project.exists("public/tags/digital-marketing/atom.xml"));
}

#[test]
fn plain_summaries_and_odd_tags_survive_every_reader() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com\nfeeds:\n  tags: true\n",
        )
        .file(
            "content/langs.md",
            "---\ntitle: Langs\ndate: 2024-01-01\nsummary: \"Use <script> & <b>bold</b> safely\"\ntags: [C++, C#, C, עברית, \"#Privacy\", privacy]\n---\nBody.\n",
        );
    project.run(&["feeds"]).expect(0);
    let channel = rss(&project, "public/rss.xml");
    // RSS readers show <description> as HTML: the plain text must stay text.
    assert_eq!(
        channel.items[0].description.as_deref(),
        Some("Use &lt;script&gt; &amp; &lt;b&gt;bold&lt;/b&gt; safely")
    );
    let tags: Vec<_> = channel.items[0]
        .categories
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(tags, ["C++", "C#", "C", "עברית", "#Privacy"]);
    for folder in ["c-plus-plus", "c-sharp", "c", "עברית", "privacy"] {
        assert!(
            project.exists(&format!("public/tags/{folder}/rss.xml")),
            "{folder}"
        );
    }
    let hebrew = rss(&project, "public/tags/עברית/rss.xml");
    let self_link = &hebrew.atom_ext.as_ref().expect("atom:link").links[0];
    assert_eq!(
        self_link.href,
        "https://example.com/tags/%D7%A2%D7%91%D7%A8%D7%99%D7%AA/rss.xml"
    );
}

#[test]
fn feeds_from_the_wanted_posts_are_those_from_every_post() {
    // Twelve posts over overlapping tags, a limit of 2: most bodies are
    // not needed, and every tag's feed must still be complete and named
    // as its newest post writes the tag.
    let mut project = Project::new().file(
        "gazette.yaml",
        "site:\n  title: T\n  base_url: https://example.com\nfeeds:\n  limit: 2\n  tags: true\n",
    );
    let tags = ["Rust", "rust, Web", "Email", "web", "Go", "RUST"];
    for i in 0..12 {
        project = project.file(
            &format!("content/p{i:02}.md"),
            format!(
                "---\ntitle: Post {i}\ndate: 2024-01-{:02}\ntags: {}\n---\nBody {i}.\n",
                1 + i % 7,
                tags[i % tags.len()]
            ),
        );
    }
    let (config, problems) = Config::load(
        &project.path().join("gazette.yaml"),
        std::path::Path::new("gazette.yaml"),
    );
    assert!(problems.is_empty(), "{problems:?}");
    let config = config.expect("config");
    let clock = Clock::pinned(NOW).expect("pinned clock");
    let every = content::load(&config, project.path(), &clock, Want::Everything);
    let wanted = |heads: &[&Head]| feed::wanted(&config, heads);
    let some = content::load(&config, project.path(), &clock, Want::Some(&wanted));
    assert!(some.library.posts.len() < 12, "bodies of every post read");
    assert_eq!(some.library.published(), 12);
    let files = |loaded: &content::Loaded| -> Vec<(std::path::PathBuf, Vec<u8>)> {
        feed::build(&config, &loaded.library)
            .expect("feeds")
            .into_iter()
            .map(|f| (f.path, f.bytes))
            .collect()
    };
    let (every, some) = (files(&every), files(&some));
    assert_eq!(every.len(), 15, "site feeds and four tags, three formats");
    assert!(
        every == some,
        "feeds differ when only the wanted posts are read"
    );
}
