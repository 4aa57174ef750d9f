//! Ledger stage, tests only: a ledger in a temporary folder, issues and
//! deliveries to fill it with, and marks one at a time. May import what
//! `ledger` may.

use anyhow::Result;
use chrono::{DateTime, FixedOffset};

use super::{IssueRecord, Ledger, Mark, NewDelivery, Writes};
use crate::address::AddressKey;

impl Ledger {
    /// Freezes `issue` with `deliveries` and no custom columns; returns
    /// how many.
    pub(super) fn create_issue(
        &self,
        issue: &IssueRecord,
        deliveries: &mut dyn Iterator<Item = NewDelivery>,
        at: DateTime<FixedOffset>,
    ) -> Result<u64> {
        self.open_issue(issue, &[], &[])?;
        let writes = Writes {
            deliveries: deliveries.collect(),
            marks: Vec::new(),
            frozen: true,
        };
        self.write(&issue.id, &writes, at)?;
        Ok(u64::try_from(writes.deliveries.len())?)
    }

    /// Writes `marks` in one transaction; whether each went as asked.
    pub(super) fn record(
        &self,
        issue: &str,
        marks: &[(AddressKey, Mark)],
        at: DateTime<FixedOffset>,
    ) -> Result<Vec<bool>> {
        let writes = Writes {
            marks: marks.to_vec(),
            ..Writes::default()
        };
        self.write(issue, &writes, at)
    }

    /// Records one mark, which must go as asked.
    pub(super) fn mark(
        &self,
        issue: &str,
        key: AddressKey,
        mark: Mark,
        at: DateTime<FixedOffset>,
    ) -> Result<()> {
        let went = self.record(issue, &[(key, mark)], at)?;
        anyhow::ensure!(went == [true], "the mark did not go as asked");
        Ok(())
    }
}

pub(super) fn time(rfc3339: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap()
}

/// A new ledger; keep the folder alive as long as the ledger.
pub(super) fn ledger() -> (tempfile::TempDir, Ledger) {
    let root = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(root.path()).unwrap();
    (root, ledger)
}

/// Issue `id`, made at `created`.
pub(super) fn issue(id: &str, created: &str) -> IssueRecord {
    let posts = format!(r#"[{{"slug":"post-of-{id}"}}]"#);
    IssueRecord {
        id: id.to_string(),
        cutoff: time(created),
        since: None,
        content_hash: format!("hash of {posts}"),
        posts,
        created: time(created),
        completed: None,
    }
}

/// A `failed` mark after `reply`, with no bounce.
pub(super) fn failed(reply: &str) -> Mark {
    Mark::Failed {
        reply: reply.into(),
        bounced: None,
    }
}

/// A delivery to `address` in `segment`.
pub(super) fn to(address: &str, segment: &str) -> NewDelivery {
    NewDelivery {
        key: AddressKey::of(address),
        address: address.to_string(),
        segment: segment.to_string(),
        variant: "a".to_string(),
        picks: r#"[{"slug":"hello","reason":"newest"}]"#.to_string(),
        message_id: format!("<{address}.issue@example.com>"),
    }
}

/// Creates `issue` with deliveries to `addresses` (segment "all").
pub(super) fn create(ledger: &Ledger, issue: &IssueRecord, addresses: &[&str]) {
    let mut deliveries = addresses.iter().map(|address| to(address, "all"));
    let inserted = ledger
        .create_issue(issue, &mut deliveries, issue.created)
        .unwrap();
    assert_eq!(inserted, addresses.len() as u64);
}
