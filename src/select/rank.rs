//! Select stage: scoring the posts of an issue against a set of interests.
//!
//! Score = relevance × recency. Relevance = `base` + `tags` × tag overlap +
//! `text` × BM25 similarity (normalised to 0–1 over the posts);
//! recency halves every `half_life_days`. The BM25 index is built once per
//! issue; scoring a reader is a pass over the few posts.
//!
//! Imports config, content and its siblings in `select`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, FixedOffset};

use crate::config::{DigestSettings, Weights};
use crate::content::Post;
use crate::tag::Tag;

/// BM25's term-frequency saturation and length normalisation.
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// How much more a word counts in the title and tags, and in the summary,
/// than in the body.
const TITLE_BOOST: usize = 3;
const SUMMARY_BOOST: usize = 2;

/// Words too common to say anything about a post.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "in", "is", "it", "its",
    "of", "on", "or", "that", "the", "this", "to", "was", "what", "with", "you", "your",
];

/// The parts of one post's score, for `explain`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Score {
    /// Tag overlap with the interests, 0–1.
    pub tags: f64,
    /// Text similarity with the interests, 0–1.
    pub text: f64,
    /// 1 for a post published now, ½ after one half-life.
    pub recency: f64,
    /// (base + weighted tags + weighted text) × recency.
    pub total: f64,
}

impl Score {
    /// The parts to four decimals, as the ledger keeps them: enough to
    /// show why a post was picked, at a third of the text.
    pub fn rounded(self) -> Score {
        let round = |x: f64| (x * 1e4).round() / 1e4;
        Score {
            tags: round(self.tags),
            text: round(self.text),
            recency: round(self.recency),
            total: round(self.total),
        }
    }
}

/// The term statistics of one issue's posts.
#[derive(Debug)]
pub struct Index<'a> {
    posts: Vec<&'a Post>,
    docs: Vec<Doc>,
    /// In how many posts each word occurs.
    frequency: HashMap<String, usize>,
    average_length: f64,
    now: DateTime<FixedOffset>,
    half_life_days: f64,
    weights: Weights,
}

#[derive(Debug)]
struct Doc {
    counts: HashMap<String, u32>,
    length: usize,
    /// Every word of the title, summary and text, lower-cased, as is (no
    /// stop words or length left out): what [`Index::mentions`] looks in.
    all_words: HashSet<String>,
}

impl<'a> Index<'a> {
    /// Indexes `posts` (title and tags, summary and body, boosted in that order).
    pub fn new(posts: &[&'a Post], now: DateTime<FixedOffset>, settings: &DigestSettings) -> Self {
        let mut frequency: HashMap<String, usize> = HashMap::new();
        let docs: Vec<Doc> = posts
            .iter()
            .map(|post| {
                let mut counts: HashMap<String, u32> = HashMap::new();
                let mut length = 0;
                let tags: Vec<&str> = post.tags.iter().map(|t| t.name.as_str()).collect();
                let heading = format!("{} {}", post.title, tags.join(" "));
                for (text, boost) in [
                    (heading.as_str(), TITLE_BOOST),
                    (post.summary.as_str(), SUMMARY_BOOST),
                    (post.text.as_str(), 1),
                ] {
                    for word in words(text) {
                        *counts.entry(word).or_default() += boost as u32;
                        length += boost;
                    }
                }
                for word in counts.keys() {
                    *frequency.entry(word.clone()).or_default() += 1;
                }
                let all_words = [&post.title, &post.summary, &post.text]
                    .iter()
                    .flat_map(|text| {
                        text.to_lowercase()
                            .split(|c: char| !c.is_alphanumeric())
                            .filter(|w| !w.is_empty())
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                Doc {
                    counts,
                    length,
                    all_words,
                }
            })
            .collect();
        let total: usize = docs.iter().map(|d| d.length).sum();
        Index {
            posts: posts.to_vec(),
            average_length: (total as f64 / docs.len().max(1) as f64).max(1.0),
            docs,
            frequency,
            now,
            half_life_days: settings.half_life_days,
            weights: settings.weights,
        }
    }

    /// The indexed posts, newest first.
    pub fn posts(&self) -> &[&'a Post] {
        &self.posts
    }

    /// Whether every word of `interest` occurs in the title, summary or
    /// text of post `i` (in index order).
    pub fn mentions(&self, i: usize, interest: &Tag) -> bool {
        let words = &self.docs[i].all_words;
        interest
            .key
            .split('-')
            .filter(|w| !w.is_empty())
            .all(|w| words.contains(w))
    }

    /// Every post's score against `interests`, in index order.
    pub fn scores(&self, interests: &[Tag]) -> Vec<Score> {
        let query: Vec<String> = interests
            .iter()
            .flat_map(|t| {
                let key = t.key.replace('-', " ");
                words(&t.name).chain(words(&key)).collect::<Vec<_>>()
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Similarity is absolute: 1 when a post of average length has every
        // word of the interests once (BM25 gives such a word its idf), less
        // for fewer words, capped at 1 — so one of two words is about half.
        let ceiling: f64 = query
            .iter()
            .map(|word| self.idf(word))
            .fold(0.0, |sum, idf| sum + idf);
        self.posts
            .iter()
            .zip(&self.docs)
            .map(|(post, doc)| {
                let tags = overlap(interests, &post.tags);
                let text = if ceiling > 0.0 {
                    (self.bm25(doc, &query) / ceiling).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let recency = self.recency(post);
                let w = self.weights;
                Score {
                    tags,
                    text,
                    recency,
                    total: (w.base + w.tags * tags + w.text * text) * recency,
                }
            })
            .collect()
    }

    /// BM25's inverse document frequency of `word` (highest for a word no
    /// post has).
    fn idf(&self, word: &str) -> f64 {
        let n = self.docs.len() as f64;
        let df = self.frequency.get(word).copied().unwrap_or(0) as f64;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    fn bm25(&self, doc: &Doc, query: &[String]) -> f64 {
        query
            .iter()
            .filter_map(|word| {
                let tf = f64::from(*doc.counts.get(word)?);
                let idf = self.idf(word);
                let norm = K1 * (1.0 - B + B * doc.length as f64 / self.average_length);
                Some(idf * tf * (K1 + 1.0) / (tf + norm))
            })
            // An empty float sum is -0.0; start from +0.0.
            .fold(0.0, |sum, part| sum + part)
    }

    /// ½ per half-life of age; posts from the future count as new.
    fn recency(&self, post: &Post) -> f64 {
        let age = (self.now - post.date).num_seconds().max(0) as f64 / 86_400.0;
        0.5f64.powf(age / self.half_life_days)
    }
}

/// The overlap coefficient of two tag sets: shared keys ÷ the smaller set.
fn overlap(interests: &[Tag], tags: &[Tag]) -> f64 {
    let smaller = interests.len().min(tags.len());
    if smaller == 0 {
        return 0.0;
    }
    let shared = tags
        .iter()
        .filter(|t| interests.iter().any(|i| i.key == t.key))
        .count();
    shared as f64 / smaller as f64
}

/// Lower-cased words of two letters or more, without stop words.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::test_post;
    use crate::tag::tag_key;

    fn settings() -> DigestSettings {
        DigestSettings {
            half_life_days: 7.0,
            ..DigestSettings::default()
        }
    }

    fn interest(name: &str) -> Tag {
        Tag {
            name: name.into(),
            key: tag_key(name),
        }
    }

    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-05-08T00:00:00Z").unwrap()
    }

    #[test]
    fn a_post_with_the_interest_outranks_an_equally_recent_one_without() {
        let a = test_post("a", "2026-05-01T00:00:00Z", &["Privacy"]);
        let b = test_post("b", "2026-05-01T00:00:00Z", &["Growth"]);
        let index = Index::new(&[&a, &b], now(), &settings());
        let scores = index.scores(&[interest("privacy")]);
        assert_eq!(scores[0].tags, 1.0);
        assert_eq!(scores[1].tags, 0.0);
        assert!(scores[0].total > scores[1].total);
    }

    #[test]
    fn recency_halves_every_half_life() {
        let new = test_post("new", "2026-05-08T00:00:00Z", &[]);
        let week = test_post("week", "2026-05-01T00:00:00Z", &[]);
        let index = Index::new(&[&new, &week], now(), &settings());
        let scores = index.scores(&[]);
        assert_eq!(scores[0].recency, 1.0);
        assert!((scores[1].recency - 0.5).abs() < 1e-9);
        assert!((scores[1].total - 0.05).abs() < 1e-9);
    }

    #[test]
    fn text_similarity_finds_interests_in_the_words() {
        let mut a = test_post("a", "2026-05-01T00:00:00Z", &[]);
        a.text = "How machine learning predicts what readers want".into();
        let mut b = test_post("b", "2026-05-01T00:00:00Z", &[]);
        b.text = "Ten tips for better subject lines".into();
        let index = Index::new(&[&a, &b], now(), &settings());
        let scores = index.scores(&[interest("Machine Learning")]);
        assert!(scores[0].text > 0.5, "{:?}", scores[0]);
        assert_eq!(scores[1].text, 0.0);
        assert!(scores[1].text.is_sign_positive());
    }

    #[test]
    fn one_of_two_words_is_a_partial_match() {
        let mut a = test_post("a", "2026-05-01T00:00:00Z", &[]);
        a.text = "A machine for funnels".into();
        let mut b = test_post("b", "2026-05-01T00:00:00Z", &[]);
        b.text = "Growth hacks".into();
        let index = Index::new(&[&a, &b], now(), &settings());
        let scores = index.scores(&[interest("Machine Learning")]);
        assert!(
            scores[0].text > 0.0 && scores[0].text < 0.5,
            "{:?}",
            scores[0]
        );
    }
}
