//! Ledger stage: deliveries counted by status, per issue, for summaries
//! and `gazette status`. May import the rest of `ledger`.

use std::collections::HashMap;

use anyhow::{Context, Result};
use rusqlite::Connection;

use super::DeliveryStatus;
use crate::ledger::Ledger;
use crate::ledger::issues::require_issue;

/// Deliveries of one issue by status, for summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub sending: u64,
    pub sent: u64,
    pub deferred: u64,
    pub failed: u64,
    pub unknown: u64,
    pub suppressed: u64,
}

impl DeliveryCounts {
    /// Adds `n` deliveries in `status`.
    fn add(&mut self, status: DeliveryStatus, n: u64) {
        let count = match status {
            DeliveryStatus::Pending => &mut self.pending,
            DeliveryStatus::Sending => &mut self.sending,
            DeliveryStatus::Sent => &mut self.sent,
            DeliveryStatus::Deferred => &mut self.deferred,
            DeliveryStatus::Failed => &mut self.failed,
            DeliveryStatus::Unknown => &mut self.unknown,
            DeliveryStatus::Suppressed => &mut self.suppressed,
        };
        *count += n;
    }
}

impl Ledger {
    /// Deliveries of `issue` by status.
    pub fn counts(&self, issue: &str) -> Result<DeliveryCounts> {
        let counts = || -> Result<DeliveryCounts> {
            require_issue(&self.conn, issue)?;
            let mut statement = self.conn.prepare_cached(
                "SELECT status, count(*) FROM deliveries WHERE issue_id = ?1 GROUP BY status",
            )?;
            let mut rows = statement.query([issue])?;
            let mut counts = DeliveryCounts::default();
            while let Some(row) = rows.next()? {
                let (status, n): (String, i64) = (row.get(0)?, row.get(1)?);
                let status = status.parse().with_context(|| {
                    format!("the ledger's deliveries of issue {issue} are damaged")
                })?;
                counts.add(status, u64::try_from(n)?);
            }
            Ok(counts)
        };
        counts().with_context(|| format!("cannot count the deliveries of issue {issue}"))
    }
}

/// Deliveries by issue id, then status.
pub(in crate::ledger) fn counts_by_issue(
    conn: &Connection,
) -> Result<HashMap<String, DeliveryCounts>> {
    let mut statement = conn.prepare_cached(
        "SELECT issue_id, status, count(*) FROM deliveries GROUP BY issue_id, status",
    )?;
    let mut rows = statement.query([])?;
    let mut counts: HashMap<String, DeliveryCounts> = HashMap::new();
    while let Some(row) = rows.next()? {
        let (issue, status, n): (String, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let status = status
            .parse()
            .with_context(|| format!("the ledger's deliveries of issue {issue} are damaged"))?;
        counts
            .entry(issue)
            .or_default()
            .add(status, u64::try_from(n)?);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Mark;
    use crate::ledger::deliveries::testing::{ISSUE, key, with_issue};
    use crate::ledger::fixtures::time;

    #[test]
    fn counts_are_by_status() {
        let addresses = [
            "a@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com",
        ];
        let (_root, ledger) = with_issue(&addresses);
        let at = time("2026-06-01T06:00:00Z");
        assert_eq!(
            ledger.counts(ISSUE).unwrap(),
            DeliveryCounts {
                pending: 4,
                ..DeliveryCounts::default()
            }
        );
        ledger
            .mark(ISSUE, key("a@example.com"), Mark::Sending, at)
            .unwrap();
        ledger
            .mark(ISSUE, key("a@example.com"), Mark::Sent("250 OK".into()), at)
            .unwrap();
        ledger
            .mark(ISSUE, key("b@example.com"), Mark::Sending, at)
            .unwrap();
        ledger
            .mark(ISSUE, key("c@example.com"), Mark::Suppressed, at)
            .unwrap();
        assert_eq!(
            ledger.counts(ISSUE).unwrap(),
            DeliveryCounts {
                pending: 1,
                sending: 1,
                sent: 1,
                suppressed: 1,
                ..DeliveryCounts::default()
            }
        );
        assert!(ledger.counts("2026-06-02").is_err());
    }
}
