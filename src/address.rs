//! Shared vocabulary, below every stage: an email address as gazette
//! checks, compares and names it. The checked form of an address from the
//! subscribers file, the folded form in which two spellings of one address
//! are equal, and the [`AddressKey`] that names a reader without their
//! address (in the ledger, in unsubscribe tokens, in shards). May import
//! only outside crates: audience, ledger, unsubscribe, render and
//! deliver all build on it.

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// The bytes of an [`AddressKey`].
const KEY_LEN: usize = 16;

/// 16 bytes that name a subscriber without their address: the first 16
/// bytes of SHA-256 of the address with case, Unicode normalization (NFC)
/// and IDN spelling folded, so every spelling of one address has one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(pub [u8; KEY_LEN]);

impl AddressKey {
    /// The key of `email`.
    pub fn of(email: &str) -> AddressKey {
        let digest = Sha256::digest(comparable(email).as_bytes());
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&digest[..KEY_LEN]);
        AddressKey(key)
    }

    /// 32 lower-case hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The key [`hex`](Self::hex) wrote (either case); `None` unless exactly
    /// 32 hex digits.
    pub fn from_hex(text: &str) -> Option<AddressKey> {
        let mut key = [0u8; KEY_LEN];
        hex::decode_to_slice(text, &mut key).ok()?;
        Some(AddressKey(key))
    }

    /// The key's first 8 bytes as a big-endian number: the only short form
    /// of the key. `send --shard K/N` splits the audience by it, so it must
    /// never change (hosts already split their audiences with it); the
    /// subscribers reader remembers each address by it where 16 bytes a
    /// row would cost too much memory.
    pub fn first_u64(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(first)
    }
}

/// The address trimmed and with its domain lower-cased, if it is valid.
pub fn normalize(email: &str) -> Option<String> {
    let (user, domain) = email.trim().rsplit_once('@')?;
    // A digest goes to a mailbox on a named domain, not an IP literal.
    if domain.starts_with('[') {
        return None;
    }
    let email = format!("{user}@{}", domain.to_lowercase());
    email.parse::<lettre::Address>().ok()?;
    Some(email)
}

/// The form in which two spellings of one address compare equal: the local
/// part in Unicode NFC and lower case, the domain in its ASCII (IDNA) form,
/// so `u@bücher.de`, `u@BU\u{308}CHER.de` and `u@xn--bcher-kva.de` are one.
pub fn comparable(email: &str) -> String {
    let email = email.trim();
    let (local, domain) = email.rsplit_once('@').unwrap_or((email, ""));
    let local = folded(local);
    let domain = folded(domain);
    let domain = idna::domain_to_ascii(&domain).unwrap_or(domain);
    format!("{local}@{domain}")
}

/// `text` in NFC and lower case (ASCII text, most addresses, is already
/// in NFC).
fn folded(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        text.nfc().collect::<String>().to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_address_share_a_key() {
        let key = AddressKey::of("Ana@Bücher.de");
        assert_eq!(AddressKey::of("ana@xn--bcher-kva.de"), key);
        assert_eq!(AddressKey::of(" ana@BU\u{308}CHER.de "), key);
        assert_ne!(AddressKey::of("anna@bücher.de"), key);
    }

    #[test]
    fn address_keys_round_trip_through_hex() {
        let key = AddressKey::of("ana@example.com");
        let hex = key.hex();
        assert_eq!(hex.len(), 32);
        assert_eq!(hex, hex.to_lowercase());
        assert_eq!(AddressKey::from_hex(&hex), Some(key));
        assert_eq!(AddressKey::from_hex(&hex.to_uppercase()), Some(key));
        assert_eq!(AddressKey::from_hex(&hex[1..]), None);
        assert_eq!(AddressKey::from_hex(&format!("{}g", &hex[1..])), None);
        assert_eq!(AddressKey::from_hex(&format!("+{}", &hex[1..])), None);
    }
}
