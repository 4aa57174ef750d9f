//! Render stage: a reader's picks → a complete [`Email`]: subject and
//! preheader (Tera), HTML (Tera → MJML → mrml), a plaintext part written
//! for reading (Tera), and the compliance headers.
//!
//! Rendering runs once per distinct digest — (segment, variant, picks) —
//! with placeholders for the reader's fields; each reader's email is that
//! compiled digest with their name, address, attributes and unsubscribe
//! link spliced in, escaped ([`splice`]). mrml never runs per reader.

pub mod message;
mod mime;
mod mjml;
mod sanitize;
pub mod splice;
pub mod templates;
mod trace;
mod view;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, FixedOffset};
use lettre::message::Mailbox;
use tera::Context;
use url::Url;

use crate::audience::subscribers::Subscriber;
use crate::config::{Config, Segment, SegmentCta, Variant};
use crate::diagnostics::Diagnostic;
use crate::select::{Issue, Pick, variant};
use crate::unsubscribe::Secret;
use splice::{Escape, Marker, Plan};
use templates::{Templates, preheader_name, subject_name};
pub use view::{DigestView, ReaderFields};

/// One reader's email, ready to be written or sent: their compiled digest
/// and the values of their fields.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: Mailbox,
    pub subject: String,
    pub preheader: String,
    /// The segment the reader is in.
    pub segment: String,
    /// The A/B variant (`default` when there is no test).
    pub variant: String,
    /// `<issue.key@host>`, key a keyed hash of the reader: the same for a
    /// re-send of the same issue, and naming no address.
    pub message_id: String,
    /// `<digest.host>` (see [`list_name`]).
    pub list_id: String,
    /// `<https://…?token=…>` and, when configured, `<mailto:…>`.
    pub list_unsubscribe: String,
    /// The reader's one-click unsubscribe page.
    pub unsubscribe_url: String,
    compiled: Arc<Compiled>,
    /// The reader's field values, in field order ([`ReaderFields`]).
    values: Vec<String>,
}

impl Email {
    fn values(&self) -> Vec<&str> {
        self.values.iter().map(String::as_str).collect()
    }

    fn source(&self, plan: impl Fn(&Sources) -> &Plan, escape: Escape) -> Option<String> {
        let sources = self.compiled.sources.as_ref()?;
        Some(plan(sources).fill(&self.values(), escape))
    }

    /// The HTML part (`None` unless the renderer keeps sources).
    pub fn html(&self) -> Option<String> {
        self.source(|s| &s.html, Escape::Html)
    }

    /// The plaintext part (`None` unless the renderer keeps sources).
    pub fn text(&self) -> Option<String> {
        self.source(|s| &s.text, Escape::Text)
    }

    /// The MJML the HTML was compiled from, filled like the HTML (`None`
    /// unless the renderer keeps sources).
    pub fn mjml(&self) -> Option<String> {
        self.source(|s| &s.mjml, Escape::Html)
    }

    /// The MIME body (both parts, encoded), appended to `out`.
    pub fn body(&self, out: &mut Vec<u8>) {
        self.compiled.body.fill(&self.values(), out);
    }

    /// About how long [`Email::body`] is, to size buffers.
    pub fn body_len(&self) -> usize {
        self.compiled.body.len()
    }

    /// The boundary between the parts of [`Email::body`].
    pub fn boundary(&self) -> &str {
        self.compiled.body.boundary()
    }
}

/// A digest rendered once, cut at the reader's fields.
#[derive(Debug)]
pub struct Compiled {
    pub subject: Plan,
    pub preheader: Plan,
    /// Both parts as the message body, encoded.
    body: mime::Body,
    /// The parts as text, kept only for `preview` (see
    /// [`Renderer::keep_sources`]): a send needs the body alone.
    sources: Option<Sources>,
    pub variant: String,
}

/// A compiled digest's parts as text, cut at the reader's fields.
#[derive(Debug)]
struct Sources {
    html: Plan,
    text: Plan,
    /// The MJML the template produced (for preview and comparison).
    mjml: Plan,
}

/// Renders every email of one issue.
pub struct Renderer<'c> {
    config: &'c Config,
    templates: Templates,
    secret: Secret,
    issue_id: String,
    issue_date: String,
    fields: ReaderFields,
    /// Post bodies, sanitized once per issue, by slug.
    bodies: HashMap<String, String>,
    /// Compiled digests by (segment, template, variants, picks); a lock,
    /// as readers are rendered on several threads.
    cache: Mutex<Cache>,
    marker: Marker,
    /// The MIME boundary of this run's messages.
    boundary: String,
    /// The encoded text of every compiled body, each piece kept once.
    pieces: mime::Pieces,
    /// Whether compiled digests keep their parts as text (for `preview`).
    keep_sources: bool,
    host: String,
    unsubscribe: Url,
    /// mrml warnings of every digest compiled so far.
    warnings: Mutex<Vec<Diagnostic>>,
}

impl<'c> Renderer<'c> {
    /// Compiles the templates and checks what rendering needs (a sender,
    /// an unsubscribe page). `attrs` are the custom columns of the
    /// subscribers file.
    pub fn new(
        config: &'c Config,
        root: &Path,
        config_shown: &Path,
        issue: &Issue,
        secret: Secret,
        attrs: Vec<String>,
    ) -> (Option<Renderer<'c>>, Vec<Diagnostic>) {
        let (templates, mut problems) = Templates::load(config, root, config_shown);
        if config.email.from.is_none() {
            problems.push(Diagnostic::error(
                config_shown,
                "email.from is required to render digests ('Name <address>')",
            ));
        }
        let Some(unsubscribe) = config.unsubscribe.url.clone() else {
            problems.push(Diagnostic::error(
                config_shown,
                "unsubscribe.url is required to render digests (an https page that takes ?token=…)",
            ));
            return (None, problems);
        };
        let Some(templates) = templates.filter(|_| !problems.iter().any(Diagnostic::is_error))
        else {
            return (None, problems);
        };
        let bodies = issue
            .posts
            .iter()
            .map(|post| (post.slug.clone(), sanitize::post_html(&post.body_html)))
            .collect();
        let renderer = Renderer {
            config,
            templates,
            secret,
            issue_id: issue.id.clone(),
            issue_date: issue
                .cutoff
                .with_timezone(&config.site.timezone)
                .format("%-d %B %Y")
                .to_string(),
            fields: ReaderFields { attrs },
            bodies,
            cache: Mutex::new(Cache::default()),
            marker: Marker::new(),
            boundary: mime::boundary(),
            pieces: mime::Pieces::default(),
            keep_sources: false,
            host: config
                .site
                .base_url
                .host_str()
                .unwrap_or("localhost")
                .to_string(),
            unsubscribe,
            warnings: Mutex::new(Vec::new()),
        };
        (Some(renderer), problems)
    }

    /// The list this issue's emails belong to.
    pub fn list(&self) -> String {
        list_name(self.config)
    }

    /// The digest of `segment` with `picks` in the given variants,
    /// compiled once and reused (a failure too: it is reported once).
    pub fn compile(
        &self,
        segment: &Segment,
        picks: &[Pick],
        subject: &Variant<String>,
        cta: Option<&Variant<SegmentCta>>,
    ) -> Result<Arc<Compiled>, Diagnostic> {
        let cta_id = cta.map_or("", |c| c.id.as_str());
        let mut key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{cta_id}",
            segment.id, segment.template, subject.id
        );
        // The reason's sentence is a reader field; its kind is not
        // (templates may branch on it).
        for pick in picks {
            key.push('\u{0}');
            key.push_str(&pick.post.slug);
            key.push('\u{1}');
            key.push_str(pick.reason.kind());
        }
        let cache = || self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(compiled) = cache().get(&key) {
            return compiled.clone();
        }
        // Compiled without the lock, so threads compile side by side; one
        // that lost the race takes the other's.
        let compiled = self.compile_new(segment, picks, subject, cta).map(Arc::new);
        let mut cache = cache();
        if let Some(first) = cache.get(&key) {
            return first.clone();
        }
        cache.insert(key, compiled.clone());
        compiled
    }

    /// Makes compiled digests keep their HTML, text and MJML, so that
    /// [`Email::html`] and the others have them (what `preview` writes).
    pub fn keep_sources(&mut self) {
        self.keep_sources = true;
    }

    fn compile_new(
        &self,
        segment: &Segment,
        picks: &[Pick],
        subject: &Variant<String>,
        cta: Option<&Variant<SegmentCta>>,
    ) -> Result<Compiled, Diagnostic> {
        let label = variant_label(segment, subject, cta);
        let parts = view::Parts {
            config: self.config,
            issue_id: &self.issue_id,
            issue_date: &self.issue_date,
            segment,
            picks,
            cta: cta.map(|v| &v.value),
            variant: &label,
            fields: &self.fields,
            bodies: &self.bodies,
            marker: &self.marker,
        };
        let mut digest = DigestView::new(&parts);
        let context = context_of(&digest)?;
        digest.subject = self
            .templates
            .render(&subject_name(&segment.id, &subject.id), &context)?
            .trim()
            .to_string();
        digest.preheader = self
            .templates
            .render(&preheader_name(&segment.id), &context)?
            .trim()
            .to_string();
        let context = context_of(&digest)?;
        let mjml_name = format!("{}.mjml.tera", segment.template);
        let mjml = self.templates.render(&mjml_name, &context)?;
        let traced = std::cell::OnceCell::new();
        let place = |offset| {
            traced
                .get_or_init(|| self.templates.trace(&mjml_name, &context, &mjml))
                .as_ref()?
                .place(offset)
        };
        let (html, warnings) = mjml::compile(
            &mjml,
            // Made per digest: mrml's include loader cannot be shared by threads.
            &self.templates.parser_options(),
            &self.templates.shown(&mjml_name),
            place,
        )?;
        // Two threads may compile one digest at once: each warning once.
        let mut kept = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        for warning in warnings {
            if !kept.contains(&warning) {
                kept.push(warning);
            }
        }
        drop(kept);
        let mut text = self
            .templates
            .render(&format!("{}.txt.tera", segment.template), &context)?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let html = self.marker.plan(&html);
        let text = self.marker.plan(&text);
        let subject_plan = self.marker.plan(&one_line(&digest.subject));
        let preheader = self.marker.plan(&one_line(&digest.preheader));
        let damaged = [
            (&subject_plan, subject_name(&segment.id, &subject.id)),
            (&preheader, preheader_name(&segment.id)),
            (&html, mjml_name),
            (&text, format!("{}.txt.tera", segment.template)),
        ]
        .into_iter()
        .find(|(plan, _)| self.marker.damaged(plan));
        if let Some((_, name)) = damaged {
            return Err(Diagnostic::error(
                self.templates.shown(&name),
                "a reader field (subscriber.*, links.*, a pick's reason) goes through a filter; reader \
                 fields are filled in per reader after rendering, so they can only be \
                 shown as they are (vary content by segment instead)",
            ));
        }
        Ok(Compiled {
            subject: subject_plan,
            preheader,
            body: mime::Body::new(&text, &html, &self.boundary, &self.pieces),
            sources: self.keep_sources.then(|| Sources {
                html,
                text,
                mjml: self.marker.plan(&mjml),
            }),
            variant: label,
        })
    }

    /// The mrml warnings of every digest compiled so far, taken.
    pub fn take_warnings(&self) -> Vec<Diagnostic> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Compiles every segment's digest in every variant, for a reader with
    /// no interests of their own: what `check` does to try the templates.
    pub fn compile_all(&self, index: &crate::select::Index) -> Vec<Diagnostic> {
        let config = self.config;
        let mut problems = Vec::new();
        for segment in &config.segments {
            let reader = crate::select::Reader {
                interests: &[],
                personalize: true,
            };
            let (_, picks) = crate::select::digest(index, segment, reader, &config.digest);
            if picks.is_empty() {
                continue;
            }
            let ctas: Vec<Option<&Variant<SegmentCta>>> = if segment.ctas.is_empty() {
                vec![None]
            } else {
                segment.ctas.iter().map(Some).collect()
            };
            for subject in &segment.subjects {
                for cta in &ctas {
                    if let Err(problem) = self.compile(segment, &picks, subject, *cta)
                        && !problems.contains(&problem)
                    {
                        problems.push(problem);
                    }
                }
            }
        }
        problems
    }

    /// `subscriber`'s email: their digest, compiled once per distinct
    /// digest, with their fields filled in.
    pub fn email(
        &self,
        segment: &Segment,
        subscriber: &Subscriber,
        picks: &[Pick],
    ) -> Result<Email, Diagnostic> {
        let subject = variant::choose(
            &segment.subjects,
            &self.issue_id,
            &subscriber.email,
            "subject",
        )
        .ok_or_else(|| {
            Diagnostic::error(
                "gazette.yaml",
                format!("segment '{}' has no subject", segment.id),
            )
        })?;
        let cta = variant::choose(&segment.ctas, &self.issue_id, &subscriber.email, "cta");
        let compiled = self.compile(segment, picks, subject, cta)?;
        self.fill(&compiled, segment, subscriber, picks)
    }

    /// The compiled digest with `subscriber`'s fields — and the reasons of
    /// their `picks` — filled in.
    pub fn fill(
        &self,
        compiled: &Arc<Compiled>,
        segment: &Segment,
        subscriber: &Subscriber,
        picks: &[Pick],
    ) -> Result<Email, Diagnostic> {
        let list = self.list();
        let token = self.secret.token(&list, &subscriber.email);
        let with_token = |url: &Url| {
            let mut url = url.clone();
            url.query_pairs_mut().append_pair("token", &token);
            url.to_string()
        };
        let unsubscribe_url = with_token(&self.unsubscribe);
        let preferences = self
            .config
            .unsubscribe
            .preferences_url
            .as_ref()
            .map(with_token)
            .unwrap_or_default();
        let name = subscriber.name.clone().unwrap_or_default();
        let greeting = subscriber
            .name
            .clone()
            .unwrap_or_else(|| self.config.email.name_fallback.clone());
        let mut values: Vec<String> = vec![
            name,
            greeting,
            subscriber.email.clone(),
            unsubscribe_url.clone(),
            preferences,
        ];
        values.extend(
            self.fields
                .attrs
                .iter()
                .map(|column| subscriber.attrs.get(column).cloned().unwrap_or_default()),
        );
        values.extend(picks.iter().map(|pick| pick.reason.text()));
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let mut list_unsubscribe = format!("<{unsubscribe_url}>");
        if let Some(mailto) = &self.config.unsubscribe.mailto {
            list_unsubscribe.push_str(&format!(", <mailto:{mailto}?subject=unsubscribe>"));
        }
        let address = subscriber.email.parse::<lettre::Address>().map_err(|err| {
            Diagnostic::error(
                "(subscribers)",
                format!("cannot address {}: {err}", subscriber.email),
            )
        })?;
        Ok(Email {
            to: Mailbox::new(subscriber.name.as_deref().map(display_name), address),
            subject: short(compiled.subject.fill(&refs, Escape::Text)),
            preheader: compiled.preheader.fill(&refs, Escape::Text),
            segment: segment.id.clone(),
            variant: compiled.variant.clone(),
            message_id: self
                .secret
                .message_id(&self.issue_id, &subscriber.email, &self.host),
            list_id: format!("<{list}>"),
            list_unsubscribe,
            unsubscribe_url,
            compiled: compiled.clone(),
            values,
        })
    }

    /// The sender of every message.
    pub fn sender(&self) -> Option<message::Sender> {
        Some(message::Sender {
            from: self.config.email.from.clone()?,
            reply_to: self.config.email.reply_to.clone(),
        })
    }

    /// The RFC 5322 bytes of `email`, dated `date`.
    pub fn eml(&self, email: &Email, date: DateTime<FixedOffset>) -> anyhow::Result<Vec<u8>> {
        let sender = self
            .sender()
            .ok_or_else(|| anyhow::anyhow!("email.from is not set"))?;
        message::write(email, &sender, date)
    }
}

/// How many compiled digests are kept: enough for every (segment,
/// variant, picks) of an ordinary issue; an issue whose readers' picks
/// vary more recompiles the oldest ones instead of growing without bound
/// (each is ~2–4 times the size of one message).
const CACHE_CAPACITY: usize = 8192;

/// Compiled digests by key, the oldest dropped first when full.
#[derive(Default)]
struct Cache {
    map: HashMap<String, Result<Arc<Compiled>, Diagnostic>>,
    order: std::collections::VecDeque<String>,
}

impl Cache {
    fn get(&self, key: &str) -> Option<&Result<Arc<Compiled>, Diagnostic>> {
        self.map.get(key)
    }

    fn insert(&mut self, key: String, compiled: Result<Arc<Compiled>, Diagnostic>) {
        if self.order.len() >= CACHE_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.map.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.map.insert(key, compiled);
    }
}

/// The list a site's digests belong to (`List-Id`, and what unsubscribe
/// tokens name): `digest.<host>`, with the site's path in front when it
/// has one (`newsletter-a.digest.example.com` for
/// `https://example.com/newsletter-a/`), so two sites on one host are two
/// lists.
pub fn list_name(config: &Config) -> String {
    let url = &config.site.base_url;
    let host = url.host_str().unwrap_or("localhost");
    let path = crate::content::slugify(url.path());
    let label: String = path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if label.trim_matches('-').is_empty() {
        format!("digest.{host}")
    } else {
        format!("{}.digest.{host}", label.trim_matches('-'))
    }
}

fn context_of(digest: &DigestView) -> Result<Context, Diagnostic> {
    Context::from_serialize(digest).map_err(|err| {
        Diagnostic::error(
            "(templates)",
            format!("cannot pass data to templates: {err}"),
        )
    })
}

/// The name of the variant `email` gets in issue `issue`: the ids of the
/// subject and CTA variants the segment tests, or `default`.
pub fn variant_of(segment: &Segment, issue: &str, email: &str) -> String {
    match variant::choose(&segment.subjects, issue, email, "subject") {
        Some(subject) => variant_label(
            segment,
            subject,
            variant::choose(&segment.ctas, issue, email, "cta"),
        ),
        None => "default".into(),
    }
}

/// The variant's name: the ids of the tests this segment runs.
fn variant_label(
    segment: &Segment,
    subject: &Variant<String>,
    cta: Option<&Variant<SegmentCta>>,
) -> String {
    let mut parts = Vec::new();
    if segment.subjects.len() > 1 {
        parts.push(subject.id.clone());
    }
    if let Some(cta) = cta.filter(|_| segment.ctas.len() > 1) {
        parts.push(cta.id.clone());
    }
    // Ids are ASCII letters, digits, '-' and '_': '.' keeps pairs apart.
    if parts.is_empty() {
        "default".into()
    } else {
        parts.join(".")
    }
}

/// The longest subject, in characters: longer ones are cut with "…" (mail
/// clients show far less, and a header line must stay under 998 octets).
const MAX_SUBJECT: usize = 250;

fn short(subject: String) -> String {
    if subject.chars().count() <= MAX_SUBJECT {
        return subject;
    }
    let mut cut: String = subject.chars().take(MAX_SUBJECT - 1).collect();
    cut.push('…');
    cut
}

/// The longest display name in `To:`, in characters: lettre does not fold
/// a long name, and a header line must stay under 998 octets.
const MAX_DISPLAY_NAME: usize = 100;

fn display_name(name: &str) -> String {
    if name.chars().count() <= MAX_DISPLAY_NAME {
        return name.to_string();
    }
    let mut cut: String = name.chars().take(MAX_DISPLAY_NAME - 1).collect();
    cut.push('…');
    cut
}

/// A header value on one line: whitespace runs, line breaks included, become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base: &str) -> Config {
        let yaml = format!("site:\n  title: T\n  base_url: {base}\n");
        Config::parse(&yaml, Path::new("gazette.yaml"))
            .0
            .expect("config")
    }

    #[test]
    fn the_cache_of_compiled_digests_keeps_the_newest_only() {
        let mut cache = Cache::default();
        for i in 0..CACHE_CAPACITY + 10 {
            cache.insert(format!("k{i}"), Err(Diagnostic::error("t", format!("{i}"))));
        }
        assert_eq!(cache.map.len(), CACHE_CAPACITY);
        assert_eq!(cache.order.len(), CACHE_CAPACITY);
        assert!(cache.get("k0").is_none() && cache.get("k9").is_none());
        assert!(cache.get("k10").is_some());
        assert!(cache.get(&format!("k{}", CACHE_CAPACITY + 9)).is_some());
    }

    #[test]
    fn a_long_display_name_is_cut() {
        assert_eq!(display_name("Ann"), "Ann");
        let long = display_name(&"é".repeat(1200));
        assert_eq!(long.chars().count(), MAX_DISPLAY_NAME);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn two_sites_on_one_host_are_two_lists() {
        assert_eq!(
            list_name(&config("https://example.com")),
            "digest.example.com"
        );
        assert_eq!(
            list_name(&config("https://example.com/newsletter-a/")),
            "newsletter-a.digest.example.com"
        );
        assert_eq!(
            list_name(&config("https://example.com/blog/Weekly_Notes")),
            "blog-weekly-notes.digest.example.com"
        );
    }
}
