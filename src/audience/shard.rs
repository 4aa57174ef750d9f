//! Audience stage: which readers one host mails under `send --shard K/N`.
//!
//! The audience is split by a hash of each address (the same folded form
//! that makes its ledger key), so N hosts reading the same subscribers
//! file split it with no overlap, no gap and no coordination, and a
//! reader stays on the same shard from issue to issue. May import only
//! `address`.

use std::fmt;
use std::str::FromStr;

use crate::address::AddressKey;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

impl Shard {
    /// The whole audience (`1/1`).
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether the reader with `key` belongs to this shard.
    pub fn contains(&self, key: &AddressKey) -> bool {
        key.first_u64() % self.count == self.index - 1
    }

    pub fn is_all(&self) -> bool {
        self.count == 1
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let usage = || format!("'{text}' is not a shard: write K/N, e.g. 2/4 (1 ≤ K ≤ N)");
        let (index, count) = text.split_once('/').ok_or_else(usage)?;
        let index: u64 = index.trim().parse().map_err(|_| usage())?;
        let count: u64 = count.trim().parse().map_err(|_| usage())?;
        if index == 0 || count == 0 || index > count {
            return Err(usage());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_an_audience_without_overlap_or_gap() {
        let shards: Vec<Shard> = (1..=3).map(|k| format!("{k}/3").parse().unwrap()).collect();
        let mut sizes = [0usize; 3];
        for i in 0..3000 {
            let key = AddressKey::of(&format!("reader{i}@example.com"));
            let owners: Vec<usize> = (0..3).filter(|s| shards[*s].contains(&key)).collect();
            assert_eq!(owners.len(), 1, "reader {i} is on {owners:?}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|n| (900..1100).contains(n)), "{sizes:?}");
        // Every spelling of an address is on the same shard.
        let key = |a: &str| AddressKey::of(a);
        assert!((0..3).all(|s| shards[s].contains(&key("Ann@Example.com"))
            == shards[s].contains(&key("ann@example.com"))));
        assert!(Shard::ALL.contains(&key("x@example.com")));
    }

    /// Hosts already split their audiences with `--shard`: a reader must
    /// stay on the shard it had when these numbers were taken from the code.
    #[test]
    fn readers_keep_the_shard_hosts_already_use() {
        let expected: [(&str, [u64; 4]); 12] = [
            ("ana@example.com", [2, 1, 7, 208]),
            ("Bo.Berg@Example.ORG", [2, 2, 7, 420]),
            ("reader1@example.com", [2, 3, 3, 340]),
            ("reader2@example.com", [2, 1, 6, 82]),
            ("reader3@example.net", [1, 3, 7, 329]),
            ("zoë@bücher.de", [2, 3, 7, 602]),
            ("ana@xn--bcher-kva.de", [2, 2, 6, 384]),
            ("  Ana@BU\u{308}CHER.de ", [2, 2, 6, 384]),
            ("user+tag@mail.example.co.uk", [1, 3, 4, 377]),
            ("李@例え.jp", [1, 3, 2, 291]),
            ("x@y.z", [1, 3, 1, 977]),
            ("jose.1234@corp.example", [2, 3, 6, 732]),
        ];
        for (address, shards) in expected {
            let key = AddressKey::of(address);
            let got = [2, 3, 7, 1000].map(|count| {
                (1..=count)
                    .find(|index| {
                        Shard {
                            index: *index,
                            count,
                        }
                        .contains(&key)
                    })
                    .unwrap()
            });
            assert_eq!(got, shards, "{address}");
        }
    }

    #[test]
    fn a_shard_is_k_of_n() {
        assert_eq!("2/4".parse::<Shard>().unwrap().to_string(), "2/4");
        for bad in ["0/4", "5/4", "1/0", "2", "a/b", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
