//! Render stage: the data templates see — plain, serialize-only structs.
//!
//! Their field names are a contract with template authors
//! (docs/src/reference/template-data.md). Reader fields hold sentinels that
//! [`super::splice::Plan`] fills per reader, so one compiled digest serves
//! every reader with the same picks.
//!
//! Imports config, select's picks and its siblings in `render`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use url::Url;

use super::splice::Marker;
use crate::config::{Config, Segment, SegmentCta, Utm};
use crate::select::Pick;

/// Everything a digest template can use.
#[derive(Debug, Clone, Serialize)]
pub struct DigestView {
    pub site: SiteView,
    pub issue: IssueView,
    pub segment: SegmentView,
    pub subscriber: ReaderView,
    /// Every pick, best first.
    pub picks: Vec<PickView>,
    /// The first pick (the hero of the default design).
    pub hero: Option<PickView>,
    /// The picks after the first.
    pub more: Vec<PickView>,
    /// The segment's call to action (this reader's variant).
    pub cta: Option<CtaView>,
    pub links: LinksView,
    pub footer: FooterView,
    /// The rendered subject and preheader (only in the MJML and text templates).
    pub subject: String,
    pub preheader: String,
    /// The A/B variant this digest is (`default` when there is no test).
    pub variant: String,
}

/// The site (`site.*`).
#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    pub title: String,
    pub url: String,
    pub description: String,
    pub logo: Option<String>,
    pub language: String,
}

/// The issue (`issue.*`).
#[derive(Debug, Clone, Serialize)]
pub struct IssueView {
    pub id: String,
    /// `25 November 2026`.
    pub date_display: String,
}

/// The reader's segment (`segment.*`).
#[derive(Debug, Clone, Serialize)]
pub struct SegmentView {
    pub id: String,
    pub name: String,
}

/// The reader (`subscriber.*`): placeholders, filled per reader after rendering.
/// Display them; do not branch on them (use segments for that).
#[derive(Debug, Clone, Serialize)]
pub struct ReaderView {
    /// The name, or empty.
    pub name: String,
    /// The name, or `email.name_fallback` ("there").
    pub greeting_name: String,
    pub email: String,
    /// Custom columns of the subscribers file, by header name.
    pub attrs: BTreeMap<String, String>,
}

/// One pick (`picks[i]`, `hero`, `more[i]`).
#[derive(Debug, Clone, Serialize)]
pub struct PickView {
    pub title: String,
    /// The post's address (with UTM parameters when configured).
    pub url: String,
    pub summary: String,
    pub image: Option<String>,
    pub reading_time: u32,
    /// `2025-08-29`.
    pub date: String,
    /// `29 August 2025`.
    pub date_display: String,
    pub tags: Vec<String>,
    pub authors: Vec<String>,
    /// The sentence the reader is shown ("Because you follow #privacy"):
    /// a reader field, filled per reader like the name.
    pub reason: String,
    /// A stable name for the reason (`follows`, `segment`, `related`,
    /// `pinned`, `different`, `newest`, `new`).
    pub reason_kind: String,
    /// Whether this is the "something different" pick.
    pub different: bool,
    /// The post's own call to action.
    pub cta: Option<CtaView>,
    /// The post body, sanitized (no scripts, handlers, frames, forms,
    /// `javascript:`/`data:` URLs or 1×1 images).
    pub body_html: String,
}

/// A call to action (`cta`, a pick's `cta`).
#[derive(Debug, Clone, Serialize)]
pub struct CtaView {
    pub text: String,
    pub url: Option<String>,
}

/// The reader's own links (`links.*`).
#[derive(Debug, Clone, Serialize)]
pub struct LinksView {
    /// The reader's one-click unsubscribe page (a placeholder until filled).
    pub unsubscribe: String,
    /// The reader's preferences page, when configured.
    pub preferences: Option<String>,
}

/// The footer (`footer.*`).
#[derive(Debug, Clone, Serialize)]
pub struct FooterView {
    pub postal_address: String,
    /// Why the reader gets this email.
    pub reason: String,
}

/// The subscriber fields a digest can hold, by sentinel number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderFields {
    /// Custom attribute columns, in order after the fixed fields.
    pub attrs: Vec<String>,
}

impl ReaderFields {
    pub const NAME: usize = 0;
    pub const GREETING_NAME: usize = 1;
    pub const EMAIL: usize = 2;
    pub const UNSUBSCRIBE: usize = 3;
    pub const PREFERENCES: usize = 4;
    const FIXED: usize = 5;

    /// The sentinel number of attribute `index`.
    pub fn attr(index: usize) -> usize {
        Self::FIXED + index
    }

    /// The sentinel number of the reason of pick `index`.
    pub fn reason(&self, index: usize) -> usize {
        Self::FIXED + self.attrs.len() + index
    }
}

/// What one compiled digest is made of.
pub struct Parts<'p, 'a> {
    pub config: &'p Config,
    pub issue_id: &'p str,
    pub issue_date: &'p str,
    pub segment: &'p Segment,
    pub picks: &'p [Pick<'a>],
    pub cta: Option<&'p SegmentCta>,
    pub variant: &'p str,
    pub fields: &'p ReaderFields,
    /// Each post's body, already sanitized, by slug.
    pub bodies: &'p HashMap<String, String>,
    /// This run's placeholders.
    pub marker: &'p Marker,
}

impl DigestView {
    /// The view of one digest, with placeholders for the reader's fields;
    /// `subject` and `preheader` are filled in once rendered.
    pub fn new(parts: &Parts) -> DigestView {
        let config = parts.config;
        let marker = parts.marker;
        let sentinel = |index: usize| marker.sentinel(index);
        let t = |text: &str| marker.strip(text).into_owned();
        let picks: Vec<PickView> = parts
            .picks
            .iter()
            .enumerate()
            .map(|(i, pick)| pick_view(i, pick, config.email.utm.as_ref(), parts))
            .collect();
        let preferences = config
            .unsubscribe
            .preferences_url
            .as_ref()
            .map(|_| sentinel(ReaderFields::PREFERENCES));
        DigestView {
            site: SiteView {
                title: t(&config.site.title),
                url: config.site.base_url.to_string(),
                description: t(&config.site.description),
                logo: config.email.logo.as_ref().map(Url::to_string),
                language: config.site.language.clone(),
            },
            issue: IssueView {
                id: parts.issue_id.to_string(),
                date_display: parts.issue_date.to_string(),
            },
            segment: SegmentView {
                id: parts.segment.id.clone(),
                name: t(&parts.segment.name),
            },
            subscriber: ReaderView {
                name: sentinel(ReaderFields::NAME),
                greeting_name: sentinel(ReaderFields::GREETING_NAME),
                email: sentinel(ReaderFields::EMAIL),
                attrs: parts
                    .fields
                    .attrs
                    .iter()
                    .enumerate()
                    .map(|(i, name)| (t(name), sentinel(ReaderFields::attr(i))))
                    .collect(),
            },
            hero: picks.first().cloned(),
            more: picks.iter().skip(1).cloned().collect(),
            picks,
            cta: parts.cta.map(|cta| CtaView {
                text: t(&cta.text),
                url: Some(cta.url.to_string()),
            }),
            links: LinksView {
                unsubscribe: sentinel(ReaderFields::UNSUBSCRIBE),
                preferences,
            },
            footer: FooterView {
                postal_address: t(&config.email.postal_address),
                reason: format!(
                    "You receive this email because you subscribed to {} ({}).",
                    t(&config.site.title),
                    t(&parts.segment.name)
                ),
            },
            subject: String::new(),
            preheader: String::new(),
            variant: parts.variant.to_string(),
        }
    }
}

fn pick_view(index: usize, pick: &Pick, utm: Option<&Utm>, parts: &Parts) -> PickView {
    let post = pick.post;
    let t = |text: &str| parts.marker.strip(text).into_owned();
    let mut url = post.url.clone();
    if let Some(utm) = utm {
        let campaign = utm
            .campaign
            .clone()
            .unwrap_or_else(|| format!("digest-{}", parts.issue_id));
        url.query_pairs_mut()
            .append_pair("utm_source", &utm.source)
            .append_pair("utm_medium", &utm.medium)
            .append_pair("utm_campaign", &campaign)
            .append_pair("utm_content", parts.variant);
    }
    PickView {
        title: t(&post.title),
        url: url.to_string(),
        summary: t(&post.summary),
        image: post.image.as_ref().map(Url::to_string),
        reading_time: post.reading_time,
        date: post.date.format("%Y-%m-%d").to_string(),
        date_display: post.date.format("%-d %B %Y").to_string(),
        tags: post.tags.iter().map(|tag| t(&tag.name)).collect(),
        authors: post.authors.iter().map(|a| t(&a.name)).collect(),
        reason: parts.marker.sentinel(parts.fields.reason(index)),
        reason_kind: pick.reason.kind().to_string(),
        different: pick.reason.kind() == "different",
        cta: post.cta.as_ref().map(|cta| CtaView {
            text: t(&cta.text),
            url: cta.url.as_ref().map(Url::to_string),
        }),
        body_html: t(parts.bodies.get(&post.slug).map_or("", String::as_str)),
    }
}
