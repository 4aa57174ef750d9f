//! Select stage: one reader's digest — the ranked picks of a segment,
//! re-ranked with the reader's interests, spread over tags, with one slot
//! for something outside those interests, and a reason for every pick.
//!
//! Imports config, content and its siblings in `select`.

use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};

use super::rank::{Index, Score};
use crate::config::{DigestSettings, Segment};
use crate::content::Post;
use crate::tag::Tag;

/// What is known about the reader a digest is for.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'r> {
    /// The reader's own interests (empty for a segment-level digest).
    pub interests: &'r [Tag],
    /// `false`: the reader turned personalization off.
    pub personalize: bool,
}

/// How a digest was ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// By the reader's interests (and the segment's).
    Personal,
    /// By the segment's interests: the reader named none.
    Segment,
    /// Newest first: the reader turned personalization off.
    NewestFirst,
    /// Pinned posts, then newest first: no interests on either side.
    ColdStart,
}

impl Mode {
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Personal => "ranked by the reader's interests",
            Mode::Segment => "ranked by the segment's interests",
            Mode::NewestFirst => "newest first (personalization off)",
            Mode::ColdStart => "pinned posts, then newest first (no interests yet)",
        }
    }
}

/// Why a post is in a reader's digest, in words the reader is shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PickReason {
    /// It has a tag the reader follows (the tag as the post spells it).
    Follows(String),
    /// It has a tag the segment is about.
    NewIn(String),
    /// Its words match an interest, though no tag does.
    Related(String),
    /// The editors pinned it for new readers.
    Pinned,
    /// The best post outside the reader's interests.
    SomethingDifferent,
    /// The newest post of the issue.
    Newest,
    /// A new post, picked by date.
    New,
}

impl PickReason {
    /// The sentence templates show.
    pub fn text(&self) -> String {
        match self {
            PickReason::Follows(tag) => format!("Because you follow #{}", tag.to_lowercase()),
            PickReason::NewIn(tag) => format!("New in {tag}"),
            PickReason::Related(topic) => format!("Related to {topic}"),
            PickReason::Pinned => "Editors' pick for new readers".into(),
            PickReason::SomethingDifferent => "Something different this week".into(),
            PickReason::Newest => "Newest post".into(),
            PickReason::New => "New this issue".into(),
        }
    }

    /// A stable name for templates to style by.
    pub fn kind(&self) -> &'static str {
        match self {
            PickReason::Follows(_) => "follows",
            PickReason::NewIn(_) => "segment",
            PickReason::Related(_) => "related",
            PickReason::Pinned => "pinned",
            PickReason::SomethingDifferent => "different",
            PickReason::Newest => "newest",
            PickReason::New => "new",
        }
    }
}

/// One post of a digest.
#[derive(Debug, Clone)]
pub struct Pick<'a> {
    pub post: &'a Post,
    pub score: Score,
    pub reason: PickReason,
}

/// The picks of `segment`'s digest for `reader`, best first, and how they
/// were ranked. Ties go to the newer post, then the smaller slug.
pub fn digest<'a>(
    index: &Index<'a>,
    segment: &Segment,
    reader: Reader<'_>,
    settings: &DigestSettings,
) -> (Mode, Vec<Pick<'a>>) {
    let mode = if !reader.personalize {
        Mode::NewestFirst
    } else if !reader.interests.is_empty() {
        Mode::Personal
    } else if !segment.interests.is_empty() {
        Mode::Segment
    } else {
        Mode::ColdStart
    };
    let interests: Vec<Tag> = match mode {
        Mode::Personal => {
            let mut all = reader.interests.to_vec();
            for tag in &segment.interests {
                if !all.iter().any(|t| t.key == tag.key) {
                    all.push(tag.clone());
                }
            }
            all
        }
        Mode::Segment => segment.interests.clone(),
        Mode::NewestFirst | Mode::ColdStart => Vec::new(),
    };
    let scores = index.scores(&interests);
    let posts = index.posts();
    let slots = segment.max_posts.min(posts.len());
    let mut order: Vec<usize> = (0..posts.len()).collect();
    let (picked, different) = match mode {
        Mode::NewestFirst => {
            order.sort_by(|&a, &b| by_date(posts[a], posts[b]));
            order.truncate(slots);
            (order, None)
        }
        Mode::ColdStart => {
            let pin = |i: usize| segment.pinned.iter().position(|s| *s == posts[i].slug);
            order.sort_by(|&a, &b| match (pin(a), pin(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => by_date(posts[a], posts[b]),
            });
            order.truncate(slots);
            (order, None)
        }
        Mode::Personal | Mode::Segment => {
            order.sort_by(|&a, &b| by_score(a, b, posts, &scores));
            spread(&order, posts, &scores, slots, &interests, settings)
        }
    };
    let newest = posts.iter().map(|p| p.date).max();
    let picks = picked
        .into_iter()
        .map(|i| {
            let post = posts[i];
            let reason = if Some(i) == different {
                PickReason::SomethingDifferent
            } else {
                reason(index, i, &scores[i], mode, reader, segment, newest)
            };
            Pick {
                post,
                score: scores[i],
                reason,
            }
        })
        .collect();
    (mode, picks)
}

/// Newer first, then by slug.
fn by_date(a: &Post, b: &Post) -> Ordering {
    b.date.cmp(&a.date).then_with(|| a.slug.cmp(&b.slug))
}

/// Higher score first, then [`by_date`].
fn by_score(a: usize, b: usize, posts: &[&Post], scores: &[Score]) -> Ordering {
    scores[b]
        .total
        .total_cmp(&scores[a].total)
        .then_with(|| by_date(posts[a], posts[b]))
}

/// Takes `slots` posts from `order` (best first) so that no tag holds more
/// than its share of the digest, keeping the last slot for the best post
/// outside `interests` when there is one. Returns post indexes, the
/// outside post last, and which one that is.
fn spread(
    order: &[usize],
    posts: &[&Post],
    scores: &[Score],
    slots: usize,
    interests: &[Tag],
    settings: &DigestSettings,
) -> (Vec<usize>, Option<usize>) {
    let outside = |i: usize| scores[i].tags == 0.0 && scores[i].text == 0.0;
    let different = (settings.something_different && slots >= 2 && !interests.is_empty())
        .then(|| order.iter().copied().find(|&i| outside(i)))
        .flatten();
    let room = slots - usize::from(different.is_some());
    let cap = ((settings.max_tag_share * slots as f64).floor() as usize).max(1);
    let mut per_tag: HashMap<&str, usize> = HashMap::new();
    let mut picked = Vec::new();
    let mut held_back = Vec::new();
    for &i in order {
        if picked.len() == room {
            break;
        }
        if Some(i) == different {
            continue;
        }
        let full = posts[i]
            .tags
            .iter()
            .any(|t| per_tag.get(t.key.as_str()).is_some_and(|n| *n >= cap));
        if full {
            held_back.push(i);
            continue;
        }
        for tag in &posts[i].tags {
            *per_tag.entry(tag.key.as_str()).or_default() += 1;
        }
        picked.push(i);
    }
    // Too few posts to spread: the best of those held back fill the rest.
    let short = room - picked.len();
    picked.extend(held_back.into_iter().take(short));
    picked.sort_by(|&a, &b| by_score(a, b, posts, scores));
    picked.extend(different);
    (picked, different)
}

fn reason(
    index: &Index<'_>,
    i: usize,
    score: &Score,
    mode: Mode,
    reader: Reader<'_>,
    segment: &Segment,
    newest: Option<DateTime<FixedOffset>>,
) -> PickReason {
    let post = index.posts()[i];
    let tag_in = |interests: &[Tag]| {
        post.tags
            .iter()
            .find(|t| interests.iter().any(|i| i.key == t.key))
            .map(|t| t.name.clone())
    };
    let by_date = || {
        if Some(post.date) == newest {
            PickReason::Newest
        } else {
            PickReason::New
        }
    };
    match mode {
        Mode::NewestFirst => by_date(),
        Mode::ColdStart if segment.pinned.contains(&post.slug) => PickReason::Pinned,
        Mode::ColdStart => by_date(),
        Mode::Personal | Mode::Segment => {
            if let Some(tag) = tag_in(reader.interests) {
                PickReason::Follows(tag)
            } else if let Some(tag) = tag_in(&segment.interests) {
                PickReason::NewIn(tag)
            } else if let Some(topic) = related(index, i, score, reader, segment) {
                PickReason::Related(topic)
            } else {
                by_date()
            }
        }
    }
}

/// The most specific interest (the most words; the reader's first) whose
/// every word the post has, when the text matched at all.
fn related(
    index: &Index<'_>,
    i: usize,
    score: &Score,
    reader: Reader<'_>,
    segment: &Segment,
) -> Option<String> {
    if score.text <= 0.0 {
        return None;
    }
    let mut best: Option<&Tag> = None;
    for tag in reader.interests.iter().chain(&segment.interests) {
        let words = tag.key.split('-').count();
        if index.mentions(i, tag) && best.is_none_or(|b| words > b.key.split('-').count()) {
            best = Some(tag);
        }
    }
    best.map(|t| t.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rule;
    use crate::content::test_post;
    use crate::tag::tag_key;

    fn settings() -> DigestSettings {
        DigestSettings {
            max_posts: 3,
            ..DigestSettings::default()
        }
    }

    fn tags(names: &[&str]) -> Vec<Tag> {
        names
            .iter()
            .map(|n| Tag {
                name: (*n).into(),
                key: tag_key(n),
            })
            .collect()
    }

    fn segment(interests: &[&str], pinned: &[&str]) -> Segment {
        Segment {
            id: "s".into(),
            name: "S".into(),
            rule: Rule::default(),
            interests: tags(interests),
            pinned: pinned.iter().map(|s| (*s).to_string()).collect(),
            max_posts: 3,
            subjects: Vec::new(),
            preheader: None,
            ctas: Vec::new(),
            template: "digest".into(),
        }
    }

    fn posts() -> Vec<Post> {
        vec![
            test_post("e-newest", "2026-05-07T00:00:00Z", &["Growth"]),
            test_post("d-privacy", "2026-05-06T00:00:00Z", &["Privacy"]),
            test_post("c-privacy", "2026-05-05T00:00:00Z", &["Privacy"]),
            test_post("b-privacy", "2026-05-04T00:00:00Z", &["Privacy"]),
            test_post("a-design", "2026-05-03T00:00:00Z", &["Design"]),
        ]
    }

    fn run(segment: &Segment, interests: &[Tag], personalize: bool) -> (Mode, Vec<String>) {
        let posts = posts();
        let refs: Vec<&Post> = posts.iter().collect();
        let now = DateTime::parse_from_rfc3339("2026-05-08T00:00:00Z").unwrap();
        let index = Index::new(&refs, now, &settings());
        let reader = Reader {
            interests,
            personalize,
        };
        let (mode, picks) = digest(&index, segment, reader, &settings());
        let shown = picks
            .iter()
            .map(|p| format!("{}: {}", p.post.slug, p.reason.text()))
            .collect();
        (mode, shown)
    }

    #[test]
    fn a_reader_gets_their_interests_spread_out_and_one_post_beyond_them() {
        let (mode, picks) = run(&segment(&[], &[]), &tags(&["privacy"]), true);
        assert_eq!(mode, Mode::Personal);
        // Three privacy posts outrank the rest, but one tag may fill at
        // most 60% of three slots (one post); the last slot is the best
        // post outside the reader's interests.
        assert_eq!(
            picks,
            [
                "d-privacy: Because you follow #privacy",
                "a-design: New this issue",
                "e-newest: Something different this week",
            ]
        );
    }

    #[test]
    fn personalization_off_gives_newest_first() {
        let (mode, picks) = run(&segment(&["design"], &[]), &tags(&["privacy"]), false);
        assert_eq!(mode, Mode::NewestFirst);
        assert_eq!(
            picks,
            [
                "e-newest: Newest post",
                "d-privacy: New this issue",
                "c-privacy: New this issue"
            ]
        );
    }

    #[test]
    fn cold_start_puts_pinned_posts_first_then_the_newest() {
        let (mode, picks) = run(&segment(&[], &["a-design"]), &[], true);
        assert_eq!(mode, Mode::ColdStart);
        assert_eq!(
            picks,
            [
                "a-design: Editors' pick for new readers",
                "e-newest: Newest post",
                "d-privacy: New this issue"
            ]
        );
    }

    #[test]
    fn a_reader_without_interests_gets_the_segment_ranking() {
        let (mode, picks) = run(&segment(&["design"], &[]), &[], true);
        assert_eq!(mode, Mode::Segment);
        assert_eq!(picks[0], "a-design: New in Design");
        assert_eq!(picks[2], "e-newest: Something different this week");
        assert_eq!(run(&segment(&["design"], &[]), &[], true).1, picks);
    }
}
