//! Emails out: templates, MJML → HTML, the text part, headers, preview.

use mailparse::{MailHeaderMap, ParsedMail};

use crate::support::Project;

/// A fixed key, so unsubscribe tokens are the same in every run.
const SECRET: (&str, &str) = ("GAZETTE_SECRET", "the test suite's unsubscribe key");

fn preview(project: &Project) -> crate::support::Run {
    project.run_env(&["-q", "preview"], &[SECRET]).expect(0)
}

/// The `.eml` with its random MIME boundary replaced.
fn redacted(eml: &str) -> String {
    let boundary = eml
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a multipart boundary");
    eml.replace(boundary, "[boundary]")
}

fn parse(bytes: &[u8]) -> ParsedMail<'_> {
    mailparse::parse_mail(bytes).expect("the message parses")
}

#[test]
fn the_sample_project_previews_every_segment_and_variant() {
    let project = Project::sample();
    preview(&project);
    let index = project.read("preview/index.html");
    let rows: Vec<&str> = index
        .lines()
        .filter(|l| l.starts_with("<tr class=\"email\">"))
        .collect();
    // marketing: 2 subjects × 2 CTAs; leaders, data-ai, default: one each.
    assert_eq!(rows.len(), 7, "{index}");
    insta::assert_snapshot!("sample_index", index);
    let eml = project.read("preview/marketing-question.guide.eml");
    insta::assert_snapshot!("sample_marketing_eml", redacted(&eml));
    insta::assert_snapshot!(
        "sample_marketing_html",
        project.read("preview/marketing-question.guide.html")
    );
}

#[test]
fn every_message_parses_strictly_with_its_compliance_headers() {
    let project = Project::sample();
    preview(&project);
    let mut checked = 0;
    for entry in std::fs::read_dir(project.path().join("preview")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for line in bytes.split(|b| *b == b'\n') {
            assert!(
                line.len() <= 998,
                "{}: a line of {} octets",
                path.display(),
                line.len()
            );
        }
        let mail = parse(&bytes);
        let headers = &mail.headers;
        assert_eq!(headers.get_all_values("List-Unsubscribe").len(), 1);
        assert_eq!(
            headers.get_all_values("List-Unsubscribe-Post"),
            ["List-Unsubscribe=One-Click"]
        );
        let unsubscribe = headers.get_first_value("List-Unsubscribe").unwrap();
        assert!(
            unsubscribe.starts_with("<https://example.com/unsubscribe?token=v1.")
                && unsubscribe.ends_with(", <mailto:unsubscribe@example.com?subject=unsubscribe>"),
            "{unsubscribe}"
        );
        assert_eq!(mail.ctype.mimetype, "multipart/alternative");
        let kinds: Vec<&str> = mail
            .subparts
            .iter()
            .map(|p| p.ctype.mimetype.as_str())
            .collect();
        assert_eq!(kinds, ["text/plain", "text/html"]);
        // The one-click link is also in both bodies, for people.
        let link = unsubscribe
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap();
        let text = mail.subparts[0].get_body().unwrap();
        let html = mail.subparts[1].get_body().unwrap();
        assert!(text.contains(link), "{text}");
        assert!(
            html.contains(&link.replace('&', "&amp;")),
            "unsubscribe link in HTML"
        );
        assert!(
            !html.contains("fonts.googleapis.com"),
            "no third-party fonts"
        );
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn a_resend_is_the_same_message_and_tokens_name_no_address() {
    let project = Project::sample();
    preview(&project);
    let first = project.read("preview/data-ai.eml");
    preview(&project);
    let second = project.read("preview/data-ai.eml");
    let id = |eml: &str| {
        parse(eml.as_bytes())
            .headers
            .get_first_value("Message-ID")
            .unwrap()
    };
    assert_eq!(id(&first), id(&second));
    assert!(id(&first).ends_with("@example.com>"), "{}", id(&first));
    assert!(
        !first.to_lowercase().contains("token=v1.ada"),
        "address in token"
    );
    assert!(!id(&first).contains("ada"), "address in Message-ID");
}

#[test]
fn hostile_posts_and_readers_render_inert() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com\n\
             email:\n  from: \"T <t@example.com>\"\n\
             unsubscribe:\n  url: https://example.com/u\n\
             segments:\n  - id: default\n    template: full\n",
        )
        .file(
            "templates/full.mjml.tera",
            "<mjml><mj-body>{% for pick in picks %}<mj-section><mj-column>\
             <mj-text>{{ pick.title }}</mj-text><mj-text>{{ pick.body_html | safe }}</mj-text>\
             </mj-column></mj-section>{% endfor %}\
             <mj-section><mj-column><mj-text>Hi {{ subscriber.name }} \
             <a href=\"{{ links.unsubscribe }}\">unsubscribe</a></mj-text></mj-column></mj-section>\
             </mj-body></mjml>\n",
        )
        .file(
            "templates/full.txt.tera",
            "Hi {{ subscriber.name }}\n{% for pick in picks %}{{ pick.title }}\n{% endfor %}{{ links.unsubscribe }}\n",
        )
        .file(
            "content/evil.md",
            "---\ntitle: \"</mj-text><mj-raw><script>alert(1)</script></mj-raw> {{ get_env(name=\\\"HOME\\\") }}\"\n\
             date: 2024-01-01\n---\n\
             <script>alert(1)</script><img src=\"x.png\" onerror=\"steal()\">\n\n\
             [click](javascript:alert(1)) <iframe src=\"https://evil.example/\"></iframe>\n\n\
             </mj-text><mj-include path=\"/etc/passwd\"/>\n\n\
             {{ get_env(name=\"HOME\") }} {% raw %}x{% endraw %}\n",
        )
        .file(
            "subscribers.csv",
            "email,name\r\nbob@example.com,\"Bob\r\nBcc: x@evil.example\"\r\nann@example.com,\"Ann <script>\"\r\n",
        );
    let run = project.run_env(&["preview"], &[SECRET]);
    // Bob's row is rejected (a line break in his name): reported, not mailed.
    assert!(
        run.stderr
            .contains("subscribers.csv:2: a quoted value runs over 2 lines"),
        "{}",
        run.stderr
    );
    let run = run.expect(1);
    assert!(project.exists("preview/default.eml"), "{}", run.stderr);
    let eml = std::fs::read(project.path().join("preview/default.eml")).unwrap();
    let mail = parse(&eml);
    let names: Vec<String> = mail.headers.iter().map(|h| h.get_key()).collect();
    assert_eq!(
        names,
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding"
        ]
    );
    let to = mail.headers.get_first_header("To").unwrap();
    let addresses = mailparse::addrparse_header(to).unwrap();
    assert_eq!(addresses.len(), 1);
    match &addresses[0] {
        mailparse::MailAddr::Single(one) => {
            assert_eq!(one.addr, "ann@example.com");
            assert_eq!(one.display_name.as_deref(), Some("Ann <script>"));
        }
        group => panic!("a group: {group:?}"),
    }
    let html = mail.subparts[1].get_body().unwrap();
    for bad in [
        "<script",
        "onerror",
        "javascript:",
        "<iframe",
        "/etc/passwd",
        "<mj-raw",
        "<mj-include",
    ] {
        assert!(!html.contains(bad), "{bad} in the HTML:\n{html}");
    }
    // Template syntax in a post is text, shown as written.
    assert!(
        html.contains("{{ get_env(name=&quot;HOME&quot;) }}")
            || html.contains("{{ get_env(name=\"HOME\") }}"),
        "{html}"
    );
    assert!(html.contains("Hi Ann &lt;script&gt;"), "{html}");
    let text = mail.subparts[0].get_body().unwrap();
    assert!(text.starts_with("Hi Ann <script>"), "{text}");
}

#[test]
fn template_errors_name_the_file_line_and_column() {
    let project = Project::new()
        .file(
            "gazette.yaml",
            "site:\n  title: T\n  base_url: https://example.com\n\
             email:\n  from: t@example.com\n\
             unsubscribe:\n  url: https://example.com/u\n\
             segments:\n  - id: default\n    subject: \"{{ site.title | nope }}\"\n",
        )
        .file(
            "templates/digest.mjml.tera",
            "<mjml>\n<mj-body>\n  <mj-text>{% if %}</mj-text>\n</mj-body></mjml>\n",
        )
        .file(
            "content/a.md",
            "---\ntitle: A\ndate: 2024-01-01\n---\nText.\n",
        );
    let run = project.run(&["check"]).expect(1);
    insta::assert_snapshot!(run.stderr, @"
    templates/digest.mjml.tera:3:18: Found `%}` but expected one of: integer, float, string, bool, ident, `-`, `not`, `<`, `{`, `[` or `(`
    gazette.yaml: subject of segment 'default' (variant a): Unknown filter `nope` (at 1:17)
    ");
}

#[test]
fn the_link_in_an_email_unsubscribes_its_reader_and_only_them() {
    let project = Project::sample();
    preview(&project);
    let text = project.read("preview/data-ai.txt");
    let link = text
        .lines()
        .find_map(|l| l.strip_prefix("Unsubscribe: "))
        .expect("an unsubscribe line")
        .to_string();
    let token = link.split("token=").nth(1).unwrap().to_string();
    // An altered token is refused, and nothing is recorded.
    let mut altered = token.clone();
    altered.replace_range(10..11, if &token[10..11] == "A" { "B" } else { "A" });
    let run = project
        .run_env(&["unsubscribe", &altered], &[SECRET])
        .expect(1);
    assert!(
        run.stderr.contains("nobody was unsubscribed"),
        "{}",
        run.stderr
    );
    let run = project
        .run_env(&["unsubscribe", &link], &[SECRET])
        .expect(0);
    assert!(
        run.stdout
            .starts_with("unsubscribed the reader of this token"),
        "{}",
        run.stdout
    );
    let again = project
        .run_env(&["unsubscribe", &token], &[SECRET])
        .expect(0);
    assert!(
        again
            .stdout
            .ends_with("was already on the suppression list\n")
    );
    // The ledger now overrides the file, which still says active.
    let reader = project.read("subscribers.csv");
    let first = reader.lines().nth(1).unwrap();
    assert!(first.starts_with("ada@example.com") && first.contains(",active,"));
    let ada = project
        .run_env(&["-q", "explain", "ada@example.com"], &[SECRET])
        .expect(0);
    assert!(
        ada.stdout.contains("status: unsubscribed\ngets no email"),
        "{}",
        ada.stdout
    );
    let fatima = project
        .run_env(&["-q", "explain", "fatima@example.com"], &[SECRET])
        .expect(0);
    assert!(
        fatima.stdout.contains("status: active"),
        "{}",
        fatima.stdout
    );
    // By address, in any spelling.
    project
        .run_env(&["unsubscribe", "FATIMA@Example.com"], &[SECRET])
        .expect(0);
    let fatima = project
        .run_env(&["-q", "explain", "fatima@example.com"], &[SECRET])
        .expect(0);
    assert!(
        fatima.stdout.contains("status: unsubscribed"),
        "{}",
        fatima.stdout
    );
}

/// A project that renders: sender, unsubscribe page, one post, two readers.
fn renderable(extra_config: &str) -> Project {
    Project::new()
        .file(
            "gazette.yaml",
            format!(
                "site:\n  title: T\n  base_url: https://example.com\n\
                 email:\n  from: \"T <t@example.com>\"\n\
                 unsubscribe:\n  url: https://example.com/u\n{extra_config}"
            ),
        )
        .file(
            "content/a.md",
            "---\ntitle: A\ndate: 2024-01-01\n---\nText.\n",
        )
        .file(
            "subscribers.csv",
            "email,name,company\nada@example.com,Ada,ACME\nbob@example.com,,\n",
        )
}

#[test]
fn every_variant_pair_is_its_own_digest() {
    let project = renderable(
        "segments:\n  - id: default\n    subject:\n\
         \x20     - {id: x-y, text: SUBJECT-XY}\n      - {id: x, text: SUBJECT-X}\n\
         \x20   cta:\n      - {id: z, text: CTA-Z, url: /z/}\n      - {id: y-z, text: CTA-YZ, url: /yz/}\n",
    );
    preview(&project);
    for (stem, subject, cta) in [
        ("default-x-y.z", "SUBJECT-XY", "CTA-Z"),
        ("default-x-y.y-z", "SUBJECT-XY", "CTA-YZ"),
        ("default-x.z", "SUBJECT-X", "CTA-Z"),
        ("default-x.y-z", "SUBJECT-X", "CTA-YZ"),
    ] {
        let text = project.read(&format!("preview/{stem}.txt"));
        assert!(text.contains(cta), "{stem}: {text}");
        let eml = project.read(&format!("preview/{stem}.eml"));
        assert!(eml.contains(&format!("Subject: {subject}")), "{stem}");
    }
    let bad = renderable(
        "segments:\n  - id: default\n    subject:\n      - {id: ../../outside, text: S}\n",
    );
    let run = bad.run(&["check"]).expect(1);
    assert_eq!(
        run.stderr,
        "gazette.yaml:11:7: variant id '../../outside' must be 1 to 40 ASCII letters, digits, '-' or '_'\n"
    );
}

#[test]
fn check_tries_templates_with_the_readers_columns_and_refuses_filtered_fields() {
    let project = renderable("").file(
        "templates/digest.txt.tera",
        "Hi {{ subscriber.greeting_name }} of {{ subscriber.attrs.company }}\n{{ links.unsubscribe }}\n",
    );
    project.run(&["check"]).expect(0);
    preview(&project);
    assert!(
        project
            .read("preview/default.txt")
            .starts_with("Hi Ada of ACME\n")
    );
    let filtered = renderable("").file(
        "templates/digest.txt.tera",
        "Hi {{ subscriber.greeting_name | upper }}\n",
    );
    let run = filtered.run(&["check"]).expect(1);
    assert!(
        run.stderr.starts_with("templates/digest.txt.tera: a reader field (subscriber.*, links.*, a pick's reason) goes through a filter"),
        "{}",
        run.stderr
    );
    // Without a sender the templates are still tried.
    let unsent = Project::new()
        .file(
            "content/a.md",
            "---\ntitle: A\ndate: 2024-01-01\n---\nText.\n",
        )
        .file("templates/digest.txt.tera", "{{ nosuch.var }}\n");
    let run = unsent.run(&["check"]).expect(1);
    assert!(
        run.stderr
            .starts_with("templates/digest.txt.tera:1:4: Variable `nosuch` is not defined"),
        "{}",
        run.stderr
    );
}

#[test]
fn includes_are_found_in_templates_only_and_links_in_posts_must_be_web_links() {
    let project = renderable("")
        .file(
            "templates/footer.mjml",
            "<mj-section><mj-column><mj-text>FOOTER-INCLUDED</mj-text></mj-column></mj-section>",
        )
        .file(
            "templates/digest.mjml.tera",
            "<mjml><mj-body><mj-section><mj-column><mj-text>{{ picks[0].title }} \
             <a href=\"{{ links.unsubscribe }}\">u</a></mj-text></mj-column></mj-section>\
             <mj-include path=\"./footer.mjml\" /></mj-body></mjml>\n",
        );
    preview(&project);
    assert!(
        project
            .read("preview/default.html")
            .contains("FOOTER-INCLUDED")
    );
    let links = renderable("").file(
        "content/b.md",
        "---\ntitle: B\ndate: 2024-01-02\nimage: \"javascript:alert(1)\"\n\
         cta: {text: Go, url: \"data:text/html,x\"}\n---\nText.\n",
    );
    let run = links.run(&["check"]).expect(1);
    assert_eq!(
        run.stderr,
        "content/b.md:4:8: 'image' must be an http(s) URL or a path, not a javascript: URL\n\
         content/b.md:5:6: 'cta' must be an http(s) or mailto: URL or a path, not a data: URL\n"
    );
}

#[test]
fn a_token_is_never_checked_with_a_made_up_key() {
    let project = Project::sample();
    let run = project
        .run(&[
            "unsubscribe",
            "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ])
        .expect(1);
    assert!(
        run.stderr.contains("no key to check tokens with"),
        "{}",
        run.stderr
    );
    assert!(!project.exists(".gazette"), "nothing created");
}

#[test]
fn mjml_problems_name_the_template_line_they_come_from() {
    // The MJML the template produces has other line numbers: the comment,
    // the loop and the trimmed tags move everything.
    let template = "{#- a comment\n   on two lines -#}\n<mjml>\n\
                    \x20 <mj-head><mj-title>{{ site.title }}</mj-title><mj-style inline=\"inline\">.a { color: red }</mj-style></mj-head>\n\
                    \x20 <mj-body>\n\
                    \x20   {%- for pick in picks %}\n\
                    \x20   <mj-section><mj-column><mj-text>{{ pick.title }}</mj-text></mj-column></mj-section>\n\
                    \x20   {%- endfor %}\n\
                    \x20   <mj-section><mj-column>\n\
                    \x20     <mj-text>{{ subscriber.greeting_name }}</mj-text>\n\
                    \x20   </mj-column></mj-section>\n{MORE}  </mj-body>\n</mjml>\n";
    let warned = renderable("").file("templates/digest.mjml.tera", template.replace("{MORE}", ""));
    let run = warned.run(&["check"]).expect(0);
    insta::assert_snapshot!(run.stderr, @r#"templates/digest.mjml.tera:4:59: warning: MJML warning inline-style-unsupported (line 2, column 44 of the MJML it produced: <mj-head><mj-title>T</mj-title><mj-style inline="inline">.a { color: red }</mj-s)"#);
    let broken = renderable("").file(
        "templates/digest.mjml.tera",
        template.replace("{MORE}", "    <mj-include path=\"/etc/passwd\" />\n"),
    );
    let run = broken.run(&["check"]).expect(1);
    insta::assert_snapshot!(run.stderr, @r#"templates/digest.mjml.tera:12:6: invalid MJML: unable to load included template in root template (line 8, column 6 of the MJML it produced: <mj-include path="/etc/passwd" />)"#);
    // A problem in an included template is placed in that file.
    let included = renderable("")
        .file(
            "templates/digest.mjml.tera",
            template.replace("{MORE}", "    {% include \"footer.mjml.tera\" %}\n"),
        )
        .file(
            "templates/footer.mjml.tera",
            "<mj-section>\n  <mj-column><mj-include path=\"../gazette.yaml\" /></mj-column>\n</mj-section>\n",
        );
    let run = included.run(&["check"]).expect(1);
    insta::assert_snapshot!(run.stderr, @r#"templates/footer.mjml.tera:2:15: invalid MJML: unable to load included template in root template (line 9, column 15 of the MJML it produced: <mj-column><mj-include path="../gazette.yaml" /></mj-column>)"#);
}

#[test]
fn mjml_problems_after_trimmed_tags_and_raw_blocks_keep_their_line() {
    let default = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/render/default/digest.mjml.tera"),
    )
    .unwrap();
    let with = |inserted: &str| {
        let mut lines: Vec<&str> = default.lines().collect();
        lines.splice(29..29, inserted.lines());
        let project = renderable("").file("templates/digest.mjml.tera", lines.join("\n"));
        project.run(&["check"]).expect(1).stderr
    };
    // The bad line is the 31st in each: after a `-%}`, after `{%- … -%}`,
    // and after a raw block holding an unmatched `{{`.
    let trimmed =
        with("        {% if true -%}\n        <mj-text a=>a</mj-text>\n        {% endif %}");
    assert!(
        trimmed.starts_with("templates/digest.mjml.tera:31:"),
        "{trimmed}"
    );
    let both =
        with("        {%- if true -%}\n        <mj-text a=>a</mj-text>\n        {%- endif -%}");
    assert!(both.starts_with("templates/digest.mjml.tera:31:"), "{both}");
    let raw = with("        {% raw %}{{ x\n        {% endraw %}<mj-text a=>a</mj-text>");
    assert!(raw.starts_with("templates/digest.mjml.tera:31:"), "{raw}");
}
