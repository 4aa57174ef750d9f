//! Render stage: the [`Renderer`] of one issue — compiles each distinct
//! digest once and fills it per reader. Imports config, select's picks,
//! audience's Subscriber, the unsubscribe Secret, diagnostics and its
//! siblings in `render`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, FixedOffset};
use lettre::message::Mailbox;
use tera::Context;
use url::Url;

use super::cache::Cache;
use super::compiled::{Compiled, Sources};
use super::email::Email;
use super::header_text::{display_name, one_line, short};
use super::list::list_name;
use super::splice::{Escape, Marker};
use super::templates::{Templates, preheader_name, subject_name};
use super::variant_name::variant_label;
use super::view::{self, DigestView, ReaderFields};
use super::{message, mime, mjml, sanitize};
use crate::audience::subscribers::Subscriber;
use crate::config::{Config, Segment, SegmentCta, Variant};
use crate::diagnostics::Diagnostic;
use crate::select::{Issue, Pick, variant};
use crate::unsubscribe::Secret;

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
            host: config.site.host().to_string(),
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
        let html = self.html_of(&mjml, &mjml_name, &context)?;
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

    /// The HTML of `mjml`, which template `mjml_name` rendered with
    /// `context`; mrml's warnings are kept, each once.
    fn html_of(
        &self,
        mjml: &str,
        mjml_name: &str,
        context: &Context,
    ) -> Result<String, Diagnostic> {
        let traced = std::cell::OnceCell::new();
        let place = |offset| {
            traced
                .get_or_init(|| self.templates.trace(mjml_name, context, mjml))
                .as_ref()?
                .place(offset)
        };
        let (html, warnings) = mjml::compile(
            mjml,
            // Made per digest: mrml's include loader cannot be shared by threads.
            &self.templates.parser_options(),
            &self.templates.shown(mjml_name),
            place,
        )?;
        // Two threads may compile one digest at once: each warning once.
        let mut kept = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        for warning in warnings {
            if !kept.contains(&warning) {
                kept.push(warning);
            }
        }
        Ok(html)
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

fn context_of(digest: &DigestView) -> Result<Context, Diagnostic> {
    Context::from_serialize(digest).map_err(|err| {
        Diagnostic::error(
            "(templates)",
            format!("cannot pass data to templates: {err}"),
        )
    })
}
