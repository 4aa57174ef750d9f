//! Audience stage: the ledger's suppression list laid over the subscribers
//! file — an address that unsubscribed, bounced or complained stays out
//! even if the file still says `active`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;

use super::subscribers::{self, Status, Subscriber};
use crate::address::AddressKey;
use crate::diagnostics::Diagnostic;
use crate::ledger::{Ledger, SuppressionReason, read_suppression_file};

/// Every suppressed address, by key (the list is small next to the audience).
#[derive(Debug, Default)]
pub struct Suppressed {
    reasons: HashMap<AddressKey, SuppressionReason>,
}

impl Suppressed {
    /// The suppression list of the project's ledger; without a ledger
    /// (reading never creates one), the plain copy `suppressed.csv`, if
    /// any, so a dry run or a preview after a lost `.gazette/` leaves out
    /// whom a send will.
    pub fn load(root: &Path) -> Result<Suppressed> {
        let Some(ledger) = Ledger::open_existing(root)? else {
            let rows = read_suppression_file(root)?.map(|file| file.rows);
            let reasons = rows
                .into_iter()
                .flatten()
                .map(|s| (s.key, s.reason))
                .collect();
            return Ok(Suppressed { reasons });
        };
        let reasons = ledger
            .suppressions()?
            .into_iter()
            .map(|s| (s.key, s.reason))
            .collect();
        Ok(Suppressed { reasons })
    }

    /// Reads the subscribers file at `path` (named `shown` in messages),
    /// handing `visit` each reader with this list laid over it; returns the
    /// file's problems.
    pub fn read(
        &self,
        path: &Path,
        shown: &Path,
        visit: &mut dyn FnMut(Subscriber),
    ) -> Vec<Diagnostic> {
        subscribers::read(path, shown, &mut |mut subscriber| {
            self.apply(&mut subscriber);
            visit(subscriber);
        })
    }

    /// Gives `subscriber` the ledger's status when the ledger is stricter
    /// than the file.
    pub fn apply(&self, subscriber: &mut Subscriber) {
        if self.reasons.is_empty() {
            return;
        }
        let Some(reason) = self.reasons.get(&AddressKey::of(&subscriber.email)) else {
            return;
        };
        let status = match reason {
            SuppressionReason::Unsubscribed => Status::Unsubscribed,
            SuppressionReason::Bounced => Status::Bounced,
            SuppressionReason::Complained => Status::Complained,
        };
        if status.rank() > subscriber.status.rank() {
            subscriber.status = status;
        }
    }
}
