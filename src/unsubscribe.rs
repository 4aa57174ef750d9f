//! Unsubscribe stage: signed tokens that let a reader leave a list with one
//! click, naming them without their address.
//!
//! A token is `v1.` and 59 base64url characters: a 4-byte tag of the list,
//! an 8-byte nonce, the reader's 16-byte [`AddressKey`] encrypted, and the
//! first 16 bytes of an HMAC-SHA256 over all three. The encryption is a
//! keyed stream derived from the nonce, and the nonce is derived from the
//! list and the reader (deterministic, SIV-style): without the [`Secret`]
//! nobody can make a token, nor test a guessed address against one, so a
//! link that leaks (a forwarded digest) reveals nothing about its reader.
//!
//! May import `address` and `state`; never a stage.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::address::{AddressKey, comparable};
use crate::state::key_file;

/// The environment variable that holds the key, instead of the key file.
pub const SECRET_VAR: &str = "GAZETTE_SECRET";

/// The shortest key [`SECRET_VAR`] may hold, in bytes.
const MIN_SECRET_LEN: usize = 16;
/// Names the scheme, so a token is never valid as a MAC of anything else.
const DOMAIN: &[u8] = b"gazette-unsubscribe-v1";
const PREFIX: &str = "v1.";
const TAG_LEN: usize = 4;
const NONCE_LEN: usize = 8;
const KEY_LEN: usize = 16;
const MAC_LEN: usize = 16;
const PAYLOAD_LEN: usize = TAG_LEN + NONCE_LEN + KEY_LEN + MAC_LEN;
/// base64 of the payload bytes, without padding.
const ENCODED_LEN: usize = (PAYLOAD_LEN * 8).div_ceil(6);

/// The key tokens are signed with.
#[derive(Clone)]
pub struct Secret {
    /// HMAC-SHA256 already keyed; cloned for each token.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The key from `GAZETTE_SECRET` when it is set and not empty (its
    /// bytes as they are, at least 16), else from the key file
    /// `<root>/.gazette/secret` (64 hex digits), which is made with 32
    /// random bytes on first use.
    pub fn load(root: &Path) -> Result<Secret> {
        match std::env::var_os(SECRET_VAR) {
            Some(value) if !value.is_empty() => {
                let value = value
                    .to_str()
                    .with_context(|| format!("{SECRET_VAR} is not valid UTF-8"))?;
                from_env_value(value)
            }
            _ => Ok(Secret::from_bytes(&key_file::read_or_make(root)?)),
        }
    }

    /// The key to check tokens with: like [`load`](Self::load), but never
    /// makes a key file (a made-up key would only refuse every real token,
    /// and replace the key that signed them). `None` when there is no key.
    pub fn load_existing(root: &Path) -> Result<Option<Secret>> {
        match std::env::var_os(SECRET_VAR) {
            Some(value) if !value.is_empty() => {
                let value = value
                    .to_str()
                    .with_context(|| format!("{SECRET_VAR} is not valid UTF-8"))?;
                from_env_value(value).map(Some)
            }
            _ => Ok(key_file::read(root)?.map(|key| Secret::from_bytes(&key))),
        }
    }

    /// For tests and benchmarks: a key from bytes.
    pub fn from_bytes(key: &[u8]) -> Secret {
        Secret {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// The token that unsubscribes `email` from `list`.
    pub fn token(&self, list: &str, email: &str) -> String {
        let tag = list_tag(list);
        let key = AddressKey::of(email);
        let nonce = self.nonce(&tag, &key.0);
        let sealed = xor(&key.0, &self.pad(&nonce));
        let mac = self.seal_mac(&tag, &nonce, &sealed).finalize().into_bytes();
        let mut payload = Vec::with_capacity(PAYLOAD_LEN);
        payload.extend_from_slice(&tag);
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&sealed);
        payload.extend_from_slice(&mac[..MAC_LEN]);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(payload))
    }

    /// The subscriber a token names, if it is well-formed, for `list`, and
    /// signed with this key. Surrounding whitespace is ignored; the token
    /// may also be percent-encoded, or the whole link (`…?token=v1.…`).
    pub fn verify(&self, list: &str, token: &str) -> Result<AddressKey, TokenError> {
        let token = bare(token).ok_or(TokenError::Malformed)?;
        let encoded = token
            .trim()
            .strip_prefix(PREFIX)
            .filter(|encoded| encoded.len() == ENCODED_LEN)
            .ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| TokenError::Malformed)?;
        if payload.len() != PAYLOAD_LEN {
            return Err(TokenError::Malformed);
        }
        let (tag, rest) = payload.split_at(TAG_LEN);
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (sealed, mac) = rest.split_at(KEY_LEN);
        // The signature first: only a genuine token may say which list it is for.
        self.seal_mac(tag, nonce, sealed)
            .verify_truncated_left(mac)
            .map_err(|_| TokenError::BadSignature)?;
        let key = xor(sealed, &self.pad(nonce));
        if self.nonce(tag, &key) != nonce {
            return Err(TokenError::BadSignature);
        }
        if tag != list_tag(list) {
            return Err(TokenError::OtherList);
        }
        Ok(AddressKey(key))
    }

    /// The Message-ID of `email`'s message in issue `issue`:
    /// `<issue.key@host>`, the same for a re-send, naming no address.
    pub fn message_id(&self, issue: &str, email: &str, host: &str) -> String {
        format!("<{issue}.{}@{host}>", self.message_key(issue, email))
    }

    /// A stable, keyed id of `email` in issue `issue`, for Message-IDs:
    /// 20 hex digits that reveal nothing without the key.
    pub fn message_key(&self, issue: &str, email: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"gazette-message-id-v1\0");
        mac.update(issue.as_bytes());
        mac.update(b"\0");
        mac.update(comparable(email).as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..10])
    }

    /// HMAC over the token's parts, not yet finalized.
    fn seal_mac(&self, tag: &[u8], nonce: &[u8], sealed: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(tag);
        mac.update(nonce);
        mac.update(sealed);
        mac
    }

    /// The nonce of a reader's token: derived, so tokens are reproducible.
    fn nonce(&self, tag: &[u8], key: &[u8]) -> [u8; NONCE_LEN] {
        let mut mac = self.mac.clone();
        mac.update(b"gazette-unsubscribe-nonce-v1");
        mac.update(tag);
        mac.update(key);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&mac.finalize().into_bytes()[..NONCE_LEN]);
        nonce
    }

    /// The keyed stream that hides the address key under `nonce`.
    fn pad(&self, nonce: &[u8]) -> [u8; KEY_LEN] {
        let mut mac = self.mac.clone();
        mac.update(b"gazette-unsubscribe-pad-v1");
        mac.update(nonce);
        let mut pad = [0u8; KEY_LEN];
        pad.copy_from_slice(&mac.finalize().into_bytes()[..KEY_LEN]);
        pad
    }
}

/// `a` XOR `b`, byte by byte (both [`KEY_LEN`] long).
fn xor(a: &[u8], b: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a gazette unsubscribe token")]
    Malformed,
    #[error("the token is for another list")]
    OtherList,
    #[error("the token's signature does not match (another key, or it was altered)")]
    BadSignature,
}

/// The key in `GAZETTE_SECRET`: its bytes as they are (not trimmed, not
/// decoded), so every program that verifies tokens agrees on it.
fn from_env_value(value: &str) -> Result<Secret> {
    if value.len() < MIN_SECRET_LEN {
        bail!(
            "{SECRET_VAR} must be at least {MIN_SECRET_LEN} bytes long, but has {}; \
             use 32 random bytes in hex, such as the output of `openssl rand -hex 32`",
            value.len()
        );
    }
    Ok(Secret::from_bytes(value.as_bytes()))
}

/// The first 4 bytes of SHA-256 of the list name.
fn list_tag(list: &str) -> [u8; TAG_LEN] {
    let digest = Sha256::digest(list.as_bytes());
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&digest[..TAG_LEN]);
    tag
}

/// The token alone, from a token, a percent-encoded token, or a link with
/// a `token` query parameter; `None` when none can be found.
fn bare(token: &str) -> Option<Cow<'_, str>> {
    let token = token.trim();
    match token.split_once('?') {
        Some((_, query)) => {
            let query = query.split_once('#').map_or(query, |(query, _)| query);
            let (_, value) =
                url::form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "token")?;
            Some(Cow::Owned(value.into_owned()))
        }
        None if token.contains('%') => percent_encoding::percent_decode_str(token)
            .decode_utf8()
            .ok()
            .map(|text| Cow::Owned(text.into_owned())),
        None => Some(Cow::Borrowed(token)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_hides_its_reader_even_from_a_guess() {
        let secret = Secret::from_bytes(b"a key of at least sixteen bytes");
        let token = secret.token("digest.example.com", "ada@example.com");
        let payload = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).unwrap();
        let plain = AddressKey::of("ada@example.com").0;
        assert!(!payload.windows(4).any(|w| plain.windows(4).any(|p| p == w)));
        assert_eq!(
            secret.verify("digest.example.com", &token),
            Ok(AddressKey::of("ADA@example.com"))
        );
        let id = secret.message_key("2026-06-01", "ada@example.com");
        assert_eq!(id.len(), 20);
        assert!(!hex::encode(plain).contains(&id[..8]));
        assert_ne!(id, secret.message_key("2026-06-08", "ada@example.com"));
    }

    const LIST: &str = "https://example.com/";

    fn secret() -> Secret {
        Secret::from_bytes(b"a test key of thirty-two bytes!!")
    }

    #[test]
    fn a_token_names_its_subscriber() {
        let secret = secret();
        let token = secret.token(LIST, "ana@example.com");
        assert!(token.starts_with("v1."), "{token}");
        assert_eq!(token.len(), 3 + ENCODED_LEN);
        assert!(
            token[3..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        assert_eq!(
            secret.verify(LIST, &token),
            Ok(AddressKey::of("ana@example.com"))
        );
        assert_ne!(
            secret.verify(LIST, &token),
            Ok(AddressKey::of("bo@example.com"))
        );
    }

    #[test]
    fn tokens_are_stable_and_differ_by_address_and_list() {
        let secret = secret();
        let token = secret.token(LIST, "ana@example.com");
        assert_eq!(secret.token(LIST, "ana@example.com"), token);
        assert_eq!(secret.token(LIST, "  ANA@Example.COM "), token);
        assert_ne!(secret.token(LIST, "bo@example.com"), token);
        assert_ne!(secret.token("other", "ana@example.com"), token);
    }

    #[test]
    fn a_token_never_contains_the_address() {
        let secret = secret();
        for email in [
            "margarethe.schmidt@example.com",
            "verylongname@posteo.de",
            "q@example.org",
        ] {
            let token = secret.token(LIST, email).to_lowercase();
            let (local, domain) = email.split_once('@').unwrap();
            assert!(!token.contains(email), "{token}");
            assert!(local.len() < 4 || !token.contains(local), "{token}");
            assert!(!token.contains(domain), "{token}");
            let hidden = URL_SAFE_NO_PAD.encode(email).to_lowercase();
            assert!(!token.contains(&hidden[..8]), "{token}");
        }
    }

    #[test]
    fn changing_any_character_breaks_the_token() {
        let secret = secret();
        let token = secret.token(LIST, "ana@example.com");
        for (i, c) in token.char_indices() {
            for replacement in ['A', 'z', '0', '-', '_', '.'] {
                if replacement == c {
                    continue;
                }
                let mut altered = token.clone();
                altered.replace_range(i..i + 1, &replacement.to_string());
                let result = secret.verify(LIST, &altered);
                assert!(
                    matches!(
                        result,
                        Err(TokenError::BadSignature | TokenError::Malformed)
                    ),
                    "{altered}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn flipping_any_bit_of_the_payload_fails_the_signature() {
        let secret = secret();
        let token = secret.token(LIST, "ana@example.com");
        let payload = URL_SAFE_NO_PAD.decode(&token[3..]).unwrap();
        for i in 0..payload.len() {
            for bit in 0..8 {
                let mut altered = payload.clone();
                altered[i] ^= 1 << bit;
                let altered = format!("v1.{}", URL_SAFE_NO_PAD.encode(altered));
                assert_eq!(
                    secret.verify(LIST, &altered),
                    Err(TokenError::BadSignature),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn truncated_padded_or_foreign_tokens_are_malformed() {
        let secret = secret();
        let token = secret.token(LIST, "ana@example.com");
        for bad in [
            "",
            "v1.",
            "v2.",
            &token[..token.len() - 1],
            &format!("{token}A"),
            &format!("{token}="),
            &token.replacen("v1.", "v2.", 1),
            &token.replacen("v1.", "", 1),
            "https://example.com/unsubscribe?list=x",
            "v1.%zz",
            "v1.😀",
        ] {
            assert_eq!(
                secret.verify(LIST, bad),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_token_for_another_list_says_so() {
        let secret = secret();
        let token = secret.token("https://other.example/", "ana@example.com");
        assert_eq!(secret.verify(LIST, &token), Err(TokenError::OtherList));
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let token = Secret::from_bytes(b"another key, also long enough").token(LIST, "a@b.c");
        assert_eq!(secret().verify(LIST, &token), Err(TokenError::BadSignature));
        // Even for another list: a forged token cannot say which list it is for.
        assert_eq!(
            secret().verify("other", &token),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tokens_are_found_in_links_spaces_and_percent_encoding() {
        let secret = secret();
        let token = secret.token(LIST, "ana@example.com");
        let key = Ok(AddressKey::of("ana@example.com"));
        for form in [
            format!("  {token}\n"),
            token.replace('.', "%2E"),
            format!("https://example.com/unsubscribe?token={token}"),
            format!(
                "https://example.com/u?list=news&token={}#top",
                token.replace('.', "%2e")
            ),
            format!("/unsubscribe?token={token}&utm_source=x"),
            format!("  https://example.com/u?token={token}  "),
        ] {
            assert_eq!(secret.verify(LIST, &form), key, "{form}");
        }
    }

    #[test]
    fn the_debug_form_hides_the_key() {
        assert_eq!(format!("{:?}", secret()), "Secret(..)");
    }

    #[test]
    fn the_env_key_must_be_long_enough() {
        let err = from_env_value("too short").unwrap_err();
        assert!(err.to_string().contains("GAZETTE_SECRET"), "{err}");
        assert!(err.to_string().contains("at least 16 bytes"), "{err}");
        assert!(!err.to_string().contains("too short"), "{err}");
        let secret = from_env_value("sixteen bytes ok").unwrap();
        let token = secret.token(LIST, "ana@example.com");
        let same = Secret::from_bytes(b"sixteen bytes ok");
        assert!(same.verify(LIST, &token).is_ok());
    }
}
