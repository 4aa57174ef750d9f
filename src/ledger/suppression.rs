//! Ledger stage: suppressions, the addresses that must never be mailed
//! again, and why.
//!
//! Rows are keyed by [`AddressKey`], so an unsubscribe by token (which
//! carries no address) and a bounce report (which does) meet on one row.
//! The first record is kept: a later bounce neither renames nor re-dates an
//! unsubscribe. Only an address learned later is filled in. May import
//! what `ledger` may.

use std::collections::HashSet;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::Ledger;
use crate::address::AddressKey;

/// Why an address must not be mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuppressionReason {
    Unsubscribed,
    Bounced,
    Complained,
}

impl SuppressionReason {
    /// The reason as the ledger stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Unsubscribed => "unsubscribed",
            SuppressionReason::Bounced => "bounced",
            SuppressionReason::Complained => "complained",
        }
    }
}

impl FromStr for SuppressionReason {
    type Err = UnknownSuppressionReason;

    /// The reason [`as_str`](SuppressionReason::as_str) wrote (exactly).
    fn from_str(text: &str) -> Result<SuppressionReason, UnknownSuppressionReason> {
        match text {
            "unsubscribed" => Ok(SuppressionReason::Unsubscribed),
            "bounced" => Ok(SuppressionReason::Bounced),
            "complained" => Ok(SuppressionReason::Complained),
            _ => Err(UnknownSuppressionReason(text.to_string())),
        }
    }
}

/// A reason gazette does not know, as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown suppression reason '{0}' (expected unsubscribed, bounced or complained)")]
pub struct UnknownSuppressionReason(pub String);

/// One address that must not be mailed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub key: AddressKey,
    /// Unknown when only a token named the reader.
    pub address: Option<String>,
    pub reason: SuppressionReason,
    /// When it was first recorded.
    pub at: DateTime<FixedOffset>,
}

const COLUMNS: &str = "address_key, address, reason, at";

impl Ledger {
    /// Records `key` as suppressed; keeps the first record (and fills in
    /// `address` if it was unknown). Returns true when the address was not
    /// suppressed before. An `address` whose key is not `key` is an error.
    pub fn suppress(
        &self,
        key: AddressKey,
        address: Option<&str>,
        reason: SuppressionReason,
        at: DateTime<FixedOffset>,
    ) -> Result<bool> {
        if address.is_some_and(|address| AddressKey::of(address) != key) {
            bail!(
                "cannot suppress {}: the address given has another key",
                key.hex()
            );
        }
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let added = suppress_in(&tx, key, address, reason, &at.to_rfc3339())?;
        tx.commit()?;
        Ok(added)
    }

    /// The suppression of `key`, if any.
    pub fn suppression(&self, key: AddressKey) -> Result<Option<Suppression>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM suppression WHERE address_key = ?1"),
                [key.hex()],
                StoredSuppression::read,
            )
            .optional()?
            .map(StoredSuppression::check)
            .transpose()
    }

    /// Whether `key` is on the suppression list now: the cheap question a
    /// send asks before each message goes.
    pub fn is_suppressed(&self, key: AddressKey) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM suppression WHERE address_key = ?1")?
            .exists([key.hex()])
            .context("cannot read the suppression list")
    }

    /// The key of every suppression, read without the rest of the row.
    pub fn suppressed_keys(&self) -> Result<HashSet<AddressKey>> {
        let mut statement = self.conn.prepare("SELECT address_key FROM suppression")?;
        statement
            .query_map([], |row| row.get::<_, String>(0))?
            .map(|hex| {
                let hex = hex?;
                AddressKey::from_hex(&hex)
                    .with_context(|| format!("the ledger's suppression of '{hex}' is damaged"))
            })
            .collect()
    }

    /// Every suppression, ordered by time, then key.
    pub fn suppressions(&self) -> Result<Vec<Suppression>> {
        let mut statement = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM suppression"))?;
        let mut all = statement
            .query_map([], StoredSuppression::read)?
            .map(|stored| stored?.check())
            .collect::<Result<Vec<_>>>()?;
        // In Rust, not SQL: RFC 3339 text with different offsets does not
        // sort by time.
        all.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.key.0.cmp(&b.key.0)));
        Ok(all)
    }
}

/// Records `key` as suppressed within the caller's transaction (see
/// [`Ledger::suppress`]); `at` is RFC 3339.
pub(super) fn suppress_in(
    conn: &Connection,
    key: AddressKey,
    address: Option<&str>,
    reason: SuppressionReason,
    at: &str,
) -> Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT INTO suppression (address_key, address, reason, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (address_key) DO NOTHING",
        )?
        .execute(params![key.hex(), address, reason.as_str(), at])?
        == 1;
    if !added && address.is_some() {
        conn.prepare_cached(
            "UPDATE suppression SET address = ?2 WHERE address_key = ?1 AND address IS NULL",
        )?
        .execute(params![key.hex(), address])?;
    }
    Ok(added)
}

/// A row as stored, before its text is checked.
struct StoredSuppression {
    key: String,
    address: Option<String>,
    reason: String,
    at: String,
}

impl StoredSuppression {
    fn read(row: &Row<'_>) -> rusqlite::Result<StoredSuppression> {
        Ok(StoredSuppression {
            key: row.get(0)?,
            address: row.get(1)?,
            reason: row.get(2)?,
            at: row.get(3)?,
        })
    }

    fn check(self) -> Result<Suppression> {
        let context = || format!("the ledger's suppression of '{}' is damaged", self.key);
        let key = AddressKey::from_hex(&self.key)
            .context("the key is not 32 hex digits")
            .with_context(context)?;
        let reason = self.reason.parse().with_context(context)?;
        let at = DateTime::parse_from_rfc3339(&self.at)
            .with_context(|| format!("'{}' is not an RFC 3339 time", self.at))
            .with_context(context)?;
        Ok(Suppression {
            key,
            address: self.address,
            reason,
            at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(rfc3339: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap()
    }

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(root.path()).unwrap();
        (root, ledger)
    }

    #[test]
    fn reasons_round_trip_through_text() {
        for reason in [
            SuppressionReason::Unsubscribed,
            SuppressionReason::Bounced,
            SuppressionReason::Complained,
        ] {
            assert_eq!(reason.as_str().parse(), Ok(reason));
        }
        assert_eq!(
            "Bounced".parse::<SuppressionReason>(),
            Err(UnknownSuppressionReason("Bounced".to_string()))
        );
    }

    #[test]
    fn a_suppression_is_found_by_its_key() {
        let (_root, ledger) = ledger();
        let key = AddressKey::of("ana@example.com");
        assert_eq!(ledger.suppression(key).unwrap(), None);
        let at = time("2026-01-02T03:04:05.123456789+01:00");
        assert!(
            ledger
                .suppress(
                    key,
                    Some("ana@example.com"),
                    SuppressionReason::Unsubscribed,
                    at
                )
                .unwrap()
        );
        let expected = Suppression {
            key,
            address: Some("ana@example.com".to_string()),
            reason: SuppressionReason::Unsubscribed,
            at,
        };
        assert_eq!(ledger.suppression(key).unwrap(), Some(expected.clone()));
        // Any spelling of the address finds it.
        assert_eq!(
            ledger
                .suppression(AddressKey::of("ANA@example.COM"))
                .unwrap(),
            Some(expected.clone())
        );
        assert_eq!(
            ledger
                .suppression(AddressKey::of("bo@example.com"))
                .unwrap(),
            None
        );
        assert_eq!(ledger.suppressions().unwrap(), vec![expected]);
    }

    #[test]
    fn the_first_record_is_kept() {
        let (_root, ledger) = ledger();
        let key = AddressKey::of("ana@example.com");
        let first = time("2026-01-02T03:04:05Z");
        assert!(
            ledger
                .suppress(
                    key,
                    Some("ana@example.com"),
                    SuppressionReason::Unsubscribed,
                    first
                )
                .unwrap()
        );
        let later = time("2026-02-01T00:00:00Z");
        assert!(
            !ledger
                .suppress(
                    key,
                    Some("Ana@Example.com"),
                    SuppressionReason::Complained,
                    later
                )
                .unwrap()
        );
        assert!(
            !ledger
                .suppress(key, None, SuppressionReason::Bounced, later)
                .unwrap()
        );
        let kept = ledger.suppression(key).unwrap().unwrap();
        assert_eq!(kept.reason, SuppressionReason::Unsubscribed);
        assert_eq!(kept.at, first);
        assert_eq!(kept.address.as_deref(), Some("ana@example.com"));
    }

    #[test]
    fn an_address_learned_later_is_filled_in() {
        let (_root, ledger) = ledger();
        let key = AddressKey::of("ana@example.com");
        let at = time("2026-01-02T03:04:05Z");
        assert!(
            ledger
                .suppress(key, None, SuppressionReason::Unsubscribed, at)
                .unwrap()
        );
        assert_eq!(ledger.suppression(key).unwrap().unwrap().address, None);
        let later = time("2026-01-03T00:00:00Z");
        assert!(
            !ledger
                .suppress(
                    key,
                    Some("ana@example.com"),
                    SuppressionReason::Bounced,
                    later
                )
                .unwrap()
        );
        let filled = ledger.suppression(key).unwrap().unwrap();
        assert_eq!(filled.address.as_deref(), Some("ana@example.com"));
        assert_eq!(
            (filled.reason, filled.at),
            (SuppressionReason::Unsubscribed, at)
        );
    }

    #[test]
    fn an_address_must_match_its_key() {
        let (_root, ledger) = ledger();
        let key = AddressKey::of("ana@example.com");
        let at = time("2026-01-02T03:04:05Z");
        let err = ledger
            .suppress(key, Some("bo@example.com"), SuppressionReason::Bounced, at)
            .unwrap_err();
        assert!(err.to_string().contains(&key.hex()), "{err}");
        assert_eq!(ledger.suppression(key).unwrap(), None);
    }

    #[test]
    fn suppressions_are_listed_by_time_then_key() {
        let (_root, ledger) = ledger();
        let a = AddressKey::of("a@example.com");
        let b = AddressKey::of("b@example.com");
        let c = AddressKey::of("c@example.com");
        // 10:00+02:00 is 08:00Z: earlier than 09:00Z although its text sorts later.
        ledger
            .suppress(
                c,
                None,
                SuppressionReason::Bounced,
                time("2026-01-01T09:00:00Z"),
            )
            .unwrap();
        ledger
            .suppress(
                b,
                None,
                SuppressionReason::Bounced,
                time("2026-01-01T10:00:00+02:00"),
            )
            .unwrap();
        ledger
            .suppress(
                a,
                None,
                SuppressionReason::Bounced,
                time("2026-01-01T08:00:00Z"),
            )
            .unwrap();
        let (first, second) = if a.0 < b.0 { (a, b) } else { (b, a) };
        let keys: Vec<AddressKey> = ledger
            .suppressions()
            .unwrap()
            .iter()
            .map(|s| s.key)
            .collect();
        assert_eq!(keys, vec![first, second, c]);
    }

    #[test]
    fn a_damaged_row_is_an_error_naming_it() {
        let (_root, ledger) = ledger();
        ledger
            .conn
            .execute(
                "INSERT INTO suppression VALUES ('00112233445566778899aabbccddeeff', NULL, 'spam', 'now')",
                [],
            )
            .unwrap();
        let message = format!("{:#}", ledger.suppressions().unwrap_err());
        assert!(
            message.contains("00112233445566778899aabbccddeeff"),
            "{message}"
        );
        assert!(message.contains("spam"), "{message}");
    }
}
