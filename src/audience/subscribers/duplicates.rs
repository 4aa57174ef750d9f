//! Audience stage: an address listed twice in the subscribers file is one
//! subscriber. The first row is kept, and the most restrictive status of
//! all its rows wins, even from a later row (an unsubscribe appended to an
//! export must hold) or from a row rejected for another reason (fail
//! closed). Finding that out needs the whole file, yet the audience may be
//! large, so the file is read twice and never held: pass 1 tallies a few
//! bytes per address ([`AddressTallies`]), pass 2 builds each subscriber,
//! settles it against the tallies, hands it over and forgets it. May
//! import: `crate::address`, `crate::diagnostics`, and the parent module's
//! types.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use super::row::{RowPlace, printable};
use super::{Status, Subscriber};
use crate::address::{AddressKey, normalize};
use crate::diagnostics::Diagnostic;

/// What the first pass learns about one address from its accepted rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct AddressTally {
    /// The row that is kept.
    first: u32,
    /// The first row with the most restrictive status, and that status's rank.
    status_at: u32,
    rank: u8,
}

/// Pass 1's tally of every address in the file, by [`tally_key`]: a few
/// bytes per address (a [`u64`] key and an [`AddressTally`]) so that a large
/// file is never held in memory.
#[derive(Debug, Default)]
pub(super) struct AddressTallies {
    addresses: HashMap<u64, AddressTally>,
    /// The text of an unknown status that outranks its address's first row
    /// (an active first row, an unknown later one): the rank alone cannot
    /// say which word the file used.
    unknown: HashMap<u64, Box<str>>,
    /// Addresses that rejected rows mark as not to be mailed: the most
    /// restrictive rank and the first row that says so.
    suppressed: HashMap<u64, (u8, u32)>,
}

impl AddressTallies {
    /// Records an accepted row of pass 1.
    pub(super) fn note(&mut self, sub: &Subscriber, place: RowPlace) {
        let key = tally_key(&sub.email);
        let at = place_number(place);
        let rank = sub.status.rank();
        match self.addresses.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(AddressTally {
                    first: at,
                    status_at: at,
                    rank,
                });
            }
            Entry::Occupied(mut slot) => {
                let seen = slot.get_mut();
                if rank > seen.rank {
                    seen.rank = rank;
                    seen.status_at = at;
                    if let Status::Unknown(text) = &sub.status {
                        self.unknown.insert(key, text.as_str().into());
                    }
                }
            }
        }
    }

    /// Records what a rejected row of pass 1 still says: its addresses are
    /// not to be mailed (fail closed: a broken unsubscribe row still holds).
    pub(super) fn suppress(&mut self, salvaged: &[(String, u8)], place: RowPlace) {
        let at = place_number(place);
        for (email, rank) in salvaged {
            let entry = self
                .suppressed
                .entry(tally_key(email))
                .or_insert((*rank, at));
            if *rank > entry.0 {
                *entry = (*rank, at);
            }
        }
    }

    /// An accepted row of pass 2: the subscriber to hand over (the first row
    /// of its address, with the merged status), or the warning that says
    /// this later row is a duplicate. A status taken from a rejected row is
    /// reported in `problems`.
    pub(super) fn settle(
        &self,
        mut sub: Subscriber,
        place: RowPlace,
        shown: &Path,
        problems: &mut Vec<Diagnostic>,
    ) -> Result<Subscriber, Diagnostic> {
        let key = tally_key(&sub.email);
        let at = place_number(place);
        let first_row = self.addresses.get(&key).is_none_or(|seen| seen.first == at);
        if let Some(&(rank, line)) = self.suppressed.get(&key)
            && first_row
            && rank > sub.status.rank()
        {
            sub.status = Status::of_rank(rank);
            let message = format!(
                "{} is also on rejected {} as '{}', so it is not mailed",
                sub.email,
                place.same_kind(line),
                sub.status.as_str()
            );
            problems.push(place.locate(Diagnostic::warning(shown, message)));
        }
        // Missing or later only if the file changed between the passes.
        let Some(seen) = self.addresses.get(&key).filter(|seen| seen.first <= at) else {
            return Ok(sub);
        };
        if seen.first == at {
            if seen.rank > sub.status.rank() {
                sub.status = match self.unknown.get(&key) {
                    Some(text) if seen.rank == 1 => Status::Unknown(text.to_string()),
                    _ => Status::of_rank(seen.rank),
                };
            }
            return Ok(sub);
        }
        let first = place.same_kind(seen.first);
        let mut message = format!("duplicate of {first} ({}); {first} is kept", sub.email);
        if seen.status_at == at {
            message.push_str(&format!(
                " with this row's status '{}'",
                printable(sub.status.as_str())
            ));
        }
        Err(place.locate(Diagnostic::warning(shown, message)))
    }
}

/// The number under which pass 1 remembers an address: the
/// [`AddressKey::first_u64`] of its key, so addresses differing only in case,
/// Unicode normalization or IDN spelling are one subscriber. Eight bytes,
/// not the whole key, keep the tallies of a large file small.
///
/// Two different addresses can share a number. The chance is about n²/2⁶⁵
/// for n addresses (3 in a million for ten million); keeping the addresses
/// themselves to rule it out would make memory grow with their length. If
/// it happens, the failure is closed and visible: the later address is
/// reported as a duplicate of the earlier one (the warning names both
/// rows and the address) and not mailed, and the earlier one takes the more
/// restrictive status of the two. SHA-256 (inside the key) rather than
/// std's hasher: its fixed keys would let someone who knows them craft a
/// sign-up address that collides with another reader's, to unsubscribe them.
fn tally_key(email: &str) -> u64 {
    AddressKey::of(email).first_u64()
}

/// Every valid address among `values`, with the most restrictive known
/// status among them, when that is not `active`.
pub(super) fn salvage(values: Vec<String>) -> Vec<(String, u8)> {
    let values: Vec<&str> = values
        .iter()
        .map(|v| v.trim().trim_matches('"').trim())
        .collect();
    let rank = values
        .iter()
        .map(|v| Status::parse(v))
        .filter(|status| !matches!(status, Status::Unknown(_)))
        .map(|status| status.rank())
        .max()
        .unwrap_or(0);
    if rank == 0 {
        return Vec::new();
    }
    values
        .iter()
        .filter_map(|v| normalize(v))
        .map(|email| (email, rank))
        .collect()
}

/// The line of a row as pass 1 stores it (files past 4 billion lines share
/// the last number).
fn place_number(place: RowPlace) -> u32 {
    u32::try_from(place.number()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::subscribers::testing::{csv, emails};

    #[test]
    fn a_later_duplicate_adds_only_its_more_restrictive_status() {
        let (subs, problems) = csv("email,name,status,plan\n\
             ana@example.com,Ana,active,pro\n\
             bob@example.com,Bob,,\n\
             ana@example.com,Other,unsubscribed,free\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:4: warning: duplicate of line 2 (ana@example.com); line 2 is kept with this row's status 'unsubscribed'"
            ]
        );
        assert_eq!(
            emails(&subs),
            [("ana@example.com", 2), ("bob@example.com", 3)]
        );
        let ana = &subs[0];
        assert_eq!(ana.name.as_deref(), Some("Ana"));
        assert_eq!(ana.attrs.get("plan").map(String::as_str), Some("pro"));
        assert_eq!(ana.status, Status::Unsubscribed);
        assert!(!ana.status.mailable());
        assert_eq!(subs[1].status, Status::Active);
    }

    #[test]
    fn duplicates_are_found_whatever_the_case() {
        let (subs, problems) = csv("email,name\n\
             Ana@Example.com,Ana\n\
             \x20ana@EXAMPLE.COM ,Other\n\
             ANA@example.com,Third\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
                "subscribers.csv:4: warning: duplicate of line 2 (ANA@example.com); line 2 is kept",
            ]
        );
        assert_eq!(emails(&subs), [("Ana@example.com", 2)]);
        assert_eq!(subs[0].name.as_deref(), Some("Ana"));
        assert_eq!(subs[0].status, Status::Active);
    }

    #[test]
    fn the_most_restrictive_of_many_duplicates_wins() {
        let (subs, problems) = csv("email,status\n\
             ana@example.com,active\n\
             ana@example.com,unsubscribed\n\
             ana@example.com,complained\n\
             ana@example.com,bounced\n\
             ana@example.com,complained\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
                "subscribers.csv:4: warning: duplicate of line 2 (ana@example.com); line 2 is kept with this row's status 'complained'",
                "subscribers.csv:5: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
                "subscribers.csv:6: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
            ]
        );
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].status, Status::Complained);
    }

    #[test]
    fn a_restrictive_first_row_is_not_undone_by_a_later_one() {
        let (subs, problems) = csv("email,status\n\
             ana@example.com,bounced\n\
             ana@example.com,active\n\
             ana@example.com,bounced\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
                "subscribers.csv:4: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
            ]
        );
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].status, Status::Bounced);
    }

    #[test]
    fn an_unknown_status_on_a_duplicate_fails_closed() {
        let (subs, problems) = csv("email,status\n\
             ana@example.com,active\n\
             ana@example.com,Paused\n\
             bob@example.com,bounced\n\
             bob@example.com,Paused\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: warning: unknown status 'Paused', not mailed; use active, unsubscribed, bounced or complained",
                "subscribers.csv:3: warning: duplicate of line 2 (ana@example.com); line 2 is kept with this row's status 'Paused'",
                "subscribers.csv:5: warning: unknown status 'Paused', not mailed; use active, unsubscribed, bounced or complained",
                "subscribers.csv:5: warning: duplicate of line 4 (bob@example.com); line 4 is kept",
            ]
        );
        let statuses: Vec<_> = subs.iter().map(|s| s.status.clone()).collect();
        assert_eq!(
            statuses,
            [Status::Unknown("Paused".into()), Status::Bounced]
        );
    }

    #[test]
    fn rejected_rows_are_not_duplicates() {
        let (subs, problems) = csv("email,name,status\n\
             ana@example.com,Bad\x07,active\n\
             ana@example.com,Ana,\n\
             ana@example.com,\"Bad\nAgain\",complained\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:2: 'name' contains control character U+0007; remove it",
                "subscribers.csv:3: warning: ana@example.com is also on rejected line 4 as 'complained', so it is not mailed",
                "subscribers.csv:4: a quoted value runs over 2 lines (no field may hold a line break); if its closing quote is missing, the rows on those lines were not read",
            ]
        );
        // Not duplicates, yet a rejected row's restrictive status still holds.
        assert_eq!(emails(&subs), [("ana@example.com", 3)]);
        assert_eq!(subs[0].name.as_deref(), Some("Ana"));
        assert_eq!(subs[0].status, Status::Complained);
    }

    #[test]
    fn pass_one_keeps_a_few_bytes_per_address() {
        assert!(std::mem::size_of::<(u64, AddressTally)>() <= 24);
    }

    #[test]
    fn address_keys_ignore_case_only() {
        assert_eq!(tally_key("Ana@Example.com"), tally_key("ana@example.com"));
        assert_ne!(tally_key("ana@example.com"), tally_key("ana@example.org"));
        assert_ne!(tally_key("ana@example.com"), tally_key("an@example.com"));
    }
}
