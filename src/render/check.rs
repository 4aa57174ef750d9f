//! Render stage: what `gazette check` finds in the templates — each one
//! compiled and, once the config says who sends and where readers
//! unsubscribe, every segment's digest rendered once against this issue's
//! posts. Imports what rendering does (config, content, select, the token
//! key); prints nothing.

use std::path::Path;

use chrono::{DateTime, FixedOffset};

use crate::config::Config;
use crate::content::Library;
use crate::diagnostics::Diagnostic;
use crate::render::Renderer;
use crate::select;
use crate::unsubscribe::Secret;

/// What `check` needs to try the templates.
pub struct TemplateCheck<'a> {
    pub config: &'a Config,
    pub root: &'a Path,
    /// The config file as messages name it.
    pub config_shown: &'a Path,
    pub library: &'a Library,
    /// The subscribers file's extra columns, which templates may use.
    pub attrs: Vec<String>,
    /// Whether the project has a subscribers file (a feeds-only project
    /// is not warned that digests cannot be rendered).
    pub audience: bool,
    /// Whether sending is configured (`delivery.smtp` or the relay from
    /// the environment): then a sender and an unsubscribe page are required.
    pub sending: bool,
    pub now: DateTime<FixedOffset>,
}

/// Every problem the templates have, as located diagnostics.
pub fn templates(check: TemplateCheck) -> Vec<Diagnostic> {
    let TemplateCheck {
        config,
        root,
        config_shown,
        library,
        attrs,
        audience,
        sending,
        now,
    } = check;
    let mut problems = Vec::new();
    let mut config = config.clone();
    // Without a sender or an unsubscribe page nothing can be sent, but
    // the templates are still tried, with stand-ins.
    if config.email.from.is_none() || config.unsubscribe.url.is_none() {
        if sending {
            problems.push(Diagnostic::error(
                config_shown,
                "sending is configured (delivery.smtp or GAZETTE_SMTP_URL), so email.from and an https unsubscribe.url are required",
            ));
        } else if audience {
            problems.push(Diagnostic::warning(
                config_shown,
                "digests cannot be rendered until email.from and unsubscribe.url are set",
            ));
        }
        config.email.from.get_or_insert_with(|| {
            "check@example.com"
                .parse()
                .expect("a valid stand-in address")
        });
        config.unsubscribe.url.get_or_insert_with(|| {
            url::Url::parse("https://example.com/unsubscribe").expect("a valid stand-in URL")
        });
    }
    let window = select::Window::new(&config, now, None);
    let mut issue = select::plan(library, &select::History::default(), window);
    // An issue with nothing new is still checked, with the latest posts.
    if issue.posts.is_empty() {
        issue.posts = library
            .posts
            .iter()
            .take(config.digest.first_issue_posts)
            .collect();
    }
    let index = select::Index::new(&issue.posts, now, &config.digest);
    // A throwaway key: checking never creates the project's key file.
    let secret = Secret::from_bytes(b"gazette check: not a real key");
    let (renderer, found) = Renderer::new(&config, root, config_shown, &issue, secret, attrs);
    problems.extend(found);
    if let Some(renderer) = renderer {
        problems.extend(renderer.compile_all(&index));
        let mut warnings: Vec<Diagnostic> = Vec::new();
        for warning in renderer.take_warnings() {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
        problems.extend(warnings);
    }
    problems
}
