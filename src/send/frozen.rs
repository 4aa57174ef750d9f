//! Send stage: a reader's digest as the ledger keeps it once the issue is
//! frozen (`deliveries.picks`) — written by the freeze, read back to render
//! the message. May import select (picks, reasons, scores), `tag`
//! and the ledger's delivery rows.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::ledger::Delivery;
use crate::select::{PickReason, Score};
use crate::tag::Tag;

/// What the ledger keeps of a reader's digest, in `deliveries.picks`:
/// a row of every reader, so it is written short — tags as `[name, key]`
/// and scores as `[tags, text, recency, total]` to four decimals (both are
/// read in either form, as earlier versions wrote them as objects).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct FrozenDigest {
    pub(super) name: Option<String>,
    #[serde(serialize_with = "tags_as_pairs")]
    pub(super) interests: Vec<Tag>,
    pub(super) personalize: bool,
    pub(super) attrs: BTreeMap<String, String>,
    pub(super) picks: Vec<FrozenPick>,
}

/// One post of a [`FrozenDigest`], and why the reader got it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct FrozenPick {
    pub(super) slug: String,
    pub(super) reason: PickReason,
    #[serde(serialize_with = "score_as_array")]
    pub(super) score: Score,
}

fn tags_as_pairs<S: serde::Serializer>(tags: &[Tag], out: S) -> Result<S::Ok, S::Error> {
    out.collect_seq(tags.iter().map(|tag| (&tag.name, &tag.key)))
}

fn score_as_array<S: serde::Serializer>(score: &Score, out: S) -> Result<S::Ok, S::Error> {
    let score = score.rounded();
    [score.tags, score.text, score.recency, score.total].serialize(out)
}

impl FrozenDigest {
    /// The digest frozen for `delivery`'s reader.
    pub(super) fn of(delivery: &Delivery) -> Result<FrozenDigest> {
        serde_json::from_str(&delivery.picks)
            .with_context(|| format!("cannot read the digest of {}", delivery.address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_digest_is_written_short_and_read_in_either_form() {
        let tag = Tag {
            name: "Rust".into(),
            key: "rust".into(),
        };
        let score = Score {
            tags: 1.0,
            text: 0.884_404_582_786_735_5,
            recency: 0.950_411_156_943_017_4,
            total: 1.465_726_264_003_349_3,
        };
        let frozen = FrozenDigest {
            name: Some("Ana".into()),
            interests: vec![tag.clone()],
            personalize: true,
            attrs: BTreeMap::new(),
            picks: vec![FrozenPick {
                slug: "hello".into(),
                reason: PickReason::SomethingDifferent,
                score,
            }],
        };
        let json = serde_json::to_string(&frozen).unwrap();
        assert_eq!(
            json,
            r#"{"name":"Ana","interests":[["Rust","rust"]],"personalize":true,"attrs":{},"picks":[{"slug":"hello","reason":"SomethingDifferent","score":[1.0,0.8844,0.9504,1.4657]}]}"#
        );
        let read: FrozenDigest = serde_json::from_str(&json).unwrap();
        assert_eq!(read.interests, std::slice::from_ref(&tag));
        assert_eq!(read.picks[0].score, score.rounded());
        // As earlier versions wrote it.
        let old = r#"{"name":null,"interests":[{"name":"Rust","key":"rust"}],"personalize":false,"attrs":{"role":"cto"},"picks":[{"slug":"hello","reason":{"Follows":"rust"},"score":{"tags":1.0,"text":0.5,"recency":0.25,"total":2.0}}]}"#;
        let read: FrozenDigest = serde_json::from_str(old).unwrap();
        assert_eq!(read.interests, [tag]);
        assert_eq!(read.picks[0].score.total, 2.0);
        assert_eq!(read.attrs["role"], "cto");
    }
}
