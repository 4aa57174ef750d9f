//! Config stage: the audience keys of `gazette.yaml` — where subscribers
//! are (`audience:`), how posts are picked (`digest:`) and the segments
//! (`segments:`) — in their raw serde shape and checked.
//!
//! Imports: `tag` (no stage).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use crate::tag::{Tag, tag_key};

/// `audience:` — where the subscribers are.
#[derive(Debug, Clone)]
pub struct AudienceSettings {
    /// The subscribers file (CSV, or YAML by extension), relative to the project.
    pub file: PathBuf,
    /// Whether gazette.yaml names the file (then it must exist), rather
    /// than leaving the default.
    pub named: bool,
    /// The largest share of the last issue's mailable readers the file may
    /// lose before `send` refuses to make an issue (`--allow-shrink`
    /// confirms a real shrink).
    pub max_shrink: f64,
}

/// `digest:` — how posts are chosen for every digest.
#[derive(Debug, Clone)]
pub struct DigestSettings {
    /// Posts in the very first issue (no earlier cutoff to start from).
    pub first_issue_posts: usize,
    /// Posts per digest, unless a segment says otherwise.
    pub max_posts: usize,
    /// Days after which a post's recency factor has halved.
    pub half_life_days: f64,
    pub weights: Weights,
    /// The largest share of one digest that posts of one tag may take.
    pub max_tag_share: f64,
    /// Whether one slot holds the best post outside the reader's interests.
    pub something_different: bool,
}

/// How the parts of relevance add up (docs/src/reference/picking.md, "Ranking").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Tag overlap between interests and a post's tags (0–1).
    pub tags: f64,
    /// BM25 text similarity between interests and the post (0–1).
    pub text: f64,
    /// What every post gets, so recency orders posts that match nothing.
    pub base: f64,
}

/// One audience segment with its digest settings.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Short, stable id (`marketing`); `default` catches everyone else.
    pub id: String,
    pub name: String,
    pub rule: Rule,
    /// What the segment as a whole cares about, for ranking.
    pub interests: Vec<Tag>,
    /// Slugs shown first to readers with no interests (cold start).
    pub pinned: Vec<String>,
    pub max_posts: usize,
    /// Subject line templates; more than one is an A/B test.
    pub subjects: Vec<Variant<String>>,
    /// The preheader (preview text) template; `None`: `email.preheader`.
    pub preheader: Option<String>,
    /// The segment's calls to action; more than one is an A/B test.
    pub ctas: Vec<Variant<SegmentCta>>,
    /// The digest template's name (`templates/<name>.mjml.tera`).
    pub template: String,
}

/// What a subscriber must have to belong to a segment; every condition
/// given must hold. The `default` segment has none and matches everyone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    /// The `segment` column is one of these (case-insensitive).
    pub segment: Vec<String>,
    /// At least one of these interests (tag keys).
    pub interests_any: Vec<String>,
    /// All of these interests (tag keys).
    pub interests_all: Vec<String>,
    /// Conditions on custom attributes, by column name.
    pub attributes: BTreeMap<String, AttributeTest>,
}

/// A condition on one custom attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeTest {
    Equals(String),
    In(Vec<String>),
    Exists(bool),
}

/// One option of an A/B test.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant<T> {
    /// `a`, `b`, … by position unless named.
    pub id: String,
    pub weight: u32,
    pub value: T,
}

/// A segment's call to action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCta {
    pub text: String,
    pub url: Url,
}

/// The largest ranking weight: only ratios between weights matter, and
/// bounded weights keep every score finite.
const MAX_WEIGHT: f64 = 1000.0;

/// The id of the segment that catches everyone no other segment matched.
pub const DEFAULT_SEGMENT: &str = "default";

/// The subject used when a segment names none (a Tera template).
pub const DEFAULT_SUBJECT: &str = "{{ site.title }}: {{ picks[0].title }}";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudience {
    file: Option<PathBuf>,
    max_shrink: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDigest {
    first_issue_posts: usize,
    max_posts: usize,
    half_life_days: f64,
    weights: RawWeights,
    max_tag_share: f64,
    something_different: bool,
}

impl Default for DigestSettings {
    /// The documented defaults (docs/src/reference/config.md).
    fn default() -> Self {
        DigestSettings {
            first_issue_posts: 5,
            max_posts: 5,
            half_life_days: 14.0,
            weights: Weights {
                tags: 1.0,
                text: 0.5,
                base: 0.1,
            },
            max_tag_share: 0.6,
            something_different: true,
        }
    }
}

impl Default for RawDigest {
    fn default() -> Self {
        let d = DigestSettings::default();
        RawDigest {
            first_issue_posts: d.first_issue_posts,
            max_posts: d.max_posts,
            half_life_days: d.half_life_days,
            weights: RawWeights::default(),
            max_tag_share: d.max_tag_share,
            something_different: d.something_different,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWeights {
    tags: f64,
    text: f64,
    base: f64,
}

impl Default for RawWeights {
    fn default() -> Self {
        let w = DigestSettings::default().weights;
        RawWeights {
            tags: w.tags,
            text: w.text,
            base: w.base,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    id: String,
    name: Option<String>,
    #[serde(rename = "match")]
    rule: Option<RawRule>,
    #[serde(default)]
    interests: Vec<String>,
    #[serde(default)]
    pinned: Vec<String>,
    max_posts: Option<usize>,
    subject: Option<OneOrMany<RawSubject>>,
    preheader: Option<String>,
    cta: Option<OneOrMany<RawCta>>,
    template: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRule {
    segment: Option<OneOrMany<String>>,
    interests_any: Vec<String>,
    interests_all: Vec<String>,
    attributes: BTreeMap<String, RawAttributeTest>,
}

/// `{equals: x}`, `{in: [x, y]}` or `{exists: true}`: exactly one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAttributeTest {
    equals: Option<String>,
    #[serde(rename = "in")]
    one_of: Option<Vec<String>>,
    exists: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::Many(items) => items,
            OneOrMany::One(item) => vec![item],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a subject line, or a map with 'text' and optional 'id' and 'weight'"
)]
enum RawSubject {
    Text(String),
    Full(RawSubjectVariant),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubjectVariant {
    text: String,
    id: Option<String>,
    weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCta {
    text: String,
    url: String,
    id: Option<String>,
    weight: Option<u32>,
}

/// `audience.max_shrink` unless the config says otherwise.
const DEFAULT_MAX_SHRINK: f64 = 0.5;

impl RawAudience {
    pub fn check(self, fail: &mut impl FnMut(&str, String)) -> AudienceSettings {
        let max_shrink = self.max_shrink.unwrap_or(DEFAULT_MAX_SHRINK);
        if !(0.0..=1.0).contains(&max_shrink) {
            fail(
                "audience.max_shrink",
                "max_shrink must be a share from 0 to 1 (0.5: half the readers)".into(),
            );
        }
        AudienceSettings {
            named: self.file.is_some(),
            file: self.file.unwrap_or_else(|| "subscribers.csv".into()),
            max_shrink,
        }
    }
}

impl RawDigest {
    pub fn check(self, fail: &mut impl FnMut(&str, String)) -> DigestSettings {
        if self.first_issue_posts == 0 {
            fail(
                "digest.first_issue_posts",
                "first_issue_posts must be at least 1".into(),
            );
        }
        if self.max_posts == 0 {
            fail("digest.max_posts", "max_posts must be at least 1".into());
        }
        if !(self.half_life_days.is_finite() && self.half_life_days >= 0.01) {
            fail(
                "digest.half_life_days",
                "half_life_days must be a number of days, at least 0.01".into(),
            );
        }
        let w = &self.weights;
        for (key, value) in [("tags", w.tags), ("text", w.text), ("base", w.base)] {
            if !(value.is_finite() && (0.0..=MAX_WEIGHT).contains(&value)) {
                fail(
                    &format!("digest.weights.{key}"),
                    format!("weight '{key}' must be a number from 0 to {MAX_WEIGHT}"),
                );
            }
        }
        if !(self.max_tag_share > 0.0 && self.max_tag_share <= 1.0) {
            fail(
                "digest.max_tag_share",
                "max_tag_share must be above 0 and at most 1".into(),
            );
        }
        DigestSettings {
            first_issue_posts: self.first_issue_posts,
            max_posts: self.max_posts,
            half_life_days: self.half_life_days,
            weights: Weights {
                tags: w.tags,
                text: w.text,
                base: w.base,
            },
            max_tag_share: self.max_tag_share,
            something_different: self.something_different,
        }
    }
}

/// Checks the segments and appends the implicit `default` one when the
/// config has none; `base` resolves relative CTA URLs.
pub fn check_segments(
    raw: Vec<RawSegment>,
    digest: &DigestSettings,
    base: Option<&Url>,
    fail: &mut impl FnMut(&str, String),
) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut default = None;
    for (index, raw) in raw.into_iter().enumerate() {
        let path = format!("segments[{index}]");
        let id = raw.id.trim().to_string();
        if !is_name(&id) {
            fail(
                &format!("{path}.id"),
                format!("segment id '{id}' must be ASCII letters, digits, '-' or '_'"),
            );
        }
        if segments.iter().any(|s| s.id == id) || (id == DEFAULT_SEGMENT && default.is_some()) {
            fail(
                &format!("{path}.id"),
                format!("segment id '{id}' is used twice"),
            );
        }
        let segment = check_segment(raw, id, &path, digest, base, fail);
        if segment.id == DEFAULT_SEGMENT {
            default = Some(segment);
        } else {
            segments.push(segment);
        }
    }
    segments.push(default.unwrap_or_else(|| Segment {
        id: DEFAULT_SEGMENT.into(),
        name: "Everyone else".into(),
        rule: Rule::default(),
        interests: Vec::new(),
        pinned: Vec::new(),
        max_posts: digest.max_posts,
        subjects: vec![variant(0, None, None, DEFAULT_SUBJECT.to_string())],
        preheader: None,
        ctas: Vec::new(),
        template: "digest".into(),
    }));
    segments
}

/// Whether `text` is a usable id or template name: ASCII letters, digits,
/// `-` and `_`, not empty.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// One segment at `path` (`segments[2]`) whose id, already checked, is `id`.
fn check_segment(
    raw: RawSegment,
    id: String,
    path: &str,
    digest: &DigestSettings,
    base: Option<&Url>,
    fail: &mut impl FnMut(&str, String),
) -> Segment {
    let rule = match (raw.rule, id == DEFAULT_SEGMENT) {
        (Some(_), true) => {
            fail(
                &format!("{path}.match"),
                "the 'default' segment catches everyone else; it takes no 'match'".into(),
            );
            Rule::default()
        }
        (None, false) => {
            fail(
                path,
                format!("segment '{id}' needs a 'match' (only 'default' catches everyone)"),
            );
            Rule::default()
        }
        (None, true) => Rule::default(),
        (Some(rule), false) => check_rule(rule, &format!("{path}.match"), fail),
    };
    let subjects = check_subjects(raw.subject, path, fail);
    let ctas = check_ctas(raw.cta, path, base, fail);
    let max_posts = raw.max_posts.unwrap_or(digest.max_posts);
    if max_posts == 0 {
        fail(
            &format!("{path}.max_posts"),
            "max_posts must be at least 1".into(),
        );
    }
    let template = raw.template.unwrap_or_else(|| "digest".into());
    if !is_name(&template) {
        fail(
            &format!("{path}.template"),
            format!(
                "template name '{template}' must be ASCII letters, digits, '-' or '_' (it names templates/<name>.mjml.tera)"
            ),
        );
    }
    Segment {
        name: raw.name.unwrap_or_else(|| id.clone()),
        id,
        rule,
        interests: tags(&raw.interests),
        pinned: raw.pinned.iter().map(|s| s.trim().to_string()).collect(),
        max_posts,
        subjects,
        preheader: raw.preheader,
        ctas,
        template,
    }
}

/// A segment's subject lines (`{path}.subject`), or the default one.
fn check_subjects(
    raw: Option<OneOrMany<RawSubject>>,
    path: &str,
    fail: &mut impl FnMut(&str, String),
) -> Vec<Variant<String>> {
    let subjects: Vec<Variant<String>> = match raw {
        Some(subject) => subject
            .into_vec()
            .into_iter()
            .enumerate()
            .map(|(i, s)| match s {
                RawSubject::Text(text) => variant(i, None, None, text),
                RawSubject::Full(v) => variant(i, v.id, v.weight, v.text),
            })
            .collect(),
        None => vec![variant(0, None, None, DEFAULT_SUBJECT.to_string())],
    };
    if subjects.iter().any(|v| v.value.trim().is_empty()) {
        fail(
            &format!("{path}.subject"),
            "a subject must not be empty".into(),
        );
    }
    check_variants(&subjects, &format!("{path}.subject"), fail);
    subjects
}

/// A segment's calls to action (`{path}.cta`), links resolved on `base`.
fn check_ctas(
    raw: Option<OneOrMany<RawCta>>,
    path: &str,
    base: Option<&Url>,
    fail: &mut impl FnMut(&str, String),
) -> Vec<Variant<SegmentCta>> {
    let mut ctas = Vec::new();
    for (i, cta) in raw
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if cta.text.trim().is_empty() {
            fail(
                &format!("{path}.cta[{i}].text"),
                "a call to action needs a 'text'".into(),
            );
        }
        match cta_url(cta.url.trim(), base) {
            Some(url) => {
                let value = SegmentCta {
                    text: cta.text.trim().to_string(),
                    url,
                };
                ctas.push(variant(i, cta.id, cta.weight, value));
            }
            None => fail(
                &format!("{path}.cta[{i}].url"),
                format!(
                    "CTA url '{}' must be an http(s) or mailto: URL, or a path on the site such as /demo/",
                    cta.url
                ),
            ),
        }
    }
    check_variants(&ctas, &format!("{path}.cta"), fail);
    ctas
}

/// A CTA link: an absolute http(s) URL, a `mailto:` with an address, or a
/// path resolved on the site (not `//host`, which would leave it).
fn cta_url(text: &str, base: Option<&Url>) -> Option<Url> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        Ok(url) if url.scheme() == "mailto" && url.path().contains('@') => Some(url),
        Ok(_) => None,
        Err(_) if text.is_empty() => None,
        Err(_) => {
            let base = base?;
            let url = base.join(text).ok()?;
            (url.host_str() == base.host_str()).then_some(url)
        }
    }
}

fn check_rule(raw: RawRule, path: &str, fail: &mut impl FnMut(&str, String)) -> Rule {
    let empty = raw.segment.is_none()
        && raw.interests_any.is_empty()
        && raw.interests_all.is_empty()
        && raw.attributes.is_empty();
    if empty {
        fail(
            path,
            "'match' needs at least one of: segment, interests_any, interests_all, attributes"
                .into(),
        );
    }
    let segment: Vec<String> = raw
        .segment
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .iter()
        .map(|s| s.trim().to_lowercase())
        .collect();
    if segment.iter().any(String::is_empty) {
        fail(
            &format!("{path}.segment"),
            "a segment value must not be empty".into(),
        );
    }
    Rule {
        segment,
        interests_any: keys(&raw.interests_any),
        interests_all: keys(&raw.interests_all),
        attributes: raw
            .attributes
            .into_iter()
            .filter_map(|(name, test)| {
                let test = match (test.equals, test.one_of, test.exists) {
                    (Some(v), None, None) => AttributeTest::Equals(v.trim().to_string()),
                    (None, Some(vs), None) => {
                        AttributeTest::In(vs.iter().map(|v| v.trim().to_string()).collect())
                    }
                    (None, None, Some(e)) => AttributeTest::Exists(e),
                    _ => {
                        fail(
                            &format!("{path}.attributes.{name}"),
                            format!(
                                "attribute test '{name}' needs exactly one of: equals, in, exists"
                            ),
                        );
                        return None;
                    }
                };
                Some((name.trim().to_lowercase(), test))
            })
            .collect(),
    }
}

fn variant<T>(index: usize, id: Option<String>, weight: Option<u32>, value: T) -> Variant<T> {
    let id = id.unwrap_or_else(|| {
        let letter = (b'a' + (index % 26) as u8) as char;
        if index < 26 {
            letter.to_string()
        } else {
            format!("{letter}{}", index / 26)
        }
    });
    Variant {
        id,
        weight: weight.unwrap_or(1),
        value,
    }
}

fn check_variants<T>(variants: &[Variant<T>], path: &str, fail: &mut impl FnMut(&str, String)) {
    for (i, v) in variants.iter().enumerate() {
        let named = !v.id.is_empty()
            && v.id.len() <= 40
            && v.id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !named {
            fail(
                path,
                format!(
                    "variant id '{}' must be 1 to 40 ASCII letters, digits, '-' or '_'",
                    v.id
                ),
            );
        }
        if v.weight == 0 {
            fail(
                path,
                format!("variant '{}' has weight 0; remove it instead", v.id),
            );
        }
        if variants[..i].iter().any(|w| w.id == v.id) {
            fail(path, format!("variant id '{}' is used twice", v.id));
        }
    }
}

fn tags(names: &[String]) -> Vec<Tag> {
    let mut out: Vec<Tag> = Vec::new();
    for name in names {
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        let key = tag_key(&name);
        if !key.is_empty() && !out.iter().any(|t| t.key == key) {
            out.push(Tag { name, key });
        }
    }
    out
}

fn keys(names: &[String]) -> Vec<String> {
    tags(names).into_iter().map(|t| t.key).collect()
}
