//! Content stage: text hygiene applied to a post's whole text before parsing.
//!
//! Imports: `yaml` (text positions).
//!
//! A byte-order mark and CRLF line endings are normalized away; UTF-8 text
//! that was once mis-decoded as Windows-1252 ("â€”" for "—") is repaired;
//! characters that XML 1.0 forbids are removed. Repairs and removals are
//! reported with the place of the first one, so the author can fix the file.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::yaml::position_in;

/// One kind of repair made to a text, with where it first happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// 1-based line and column (in characters) of the first occurrence.
    pub at: (usize, usize),
    pub message: String,
}

/// Normalizes `text` and returns it with the repairs made.
pub fn clean(text: &str) -> (String, Vec<Repair>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = if text.contains('\r') {
        text.replace("\r\n", "\n")
    } else {
        text.to_string()
    };
    let mut repairs = Vec::new();
    // Both are located in the text as the author's editor shows it.
    let forbidden = find_forbidden(&text);
    let text = repair_mojibake(text, &mut repairs);
    let text = match forbidden {
        Some(found) => {
            repairs.push(found);
            text.chars().filter(|c| xml_allowed(*c)).collect()
        }
        None => text,
    };
    repairs.sort_by_key(|r| r.at);
    (text, repairs)
}

/// Windows-1252 character → the byte it stands for, for bytes 0x80–0xFF.
fn cp1252_bytes() -> &'static HashMap<char, u8> {
    static MAP: OnceLock<HashMap<char, u8>> = OnceLock::new();
    MAP.get_or_init(|| {
        (0x80u8..=0xFF)
            .filter_map(|byte| {
                let bytes = [byte];
                let (decoded, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&bytes);
                decoded.chars().next().map(|c| (c, byte))
            })
            .collect()
    })
}

/// Replaces runs like "â€”" (the UTF-8 bytes of "—" read as Windows-1252)
/// with the character they encode.
fn repair_mojibake(text: String, repairs: &mut Vec<Repair>) -> String {
    // Mojibake starts with a UTF-8 lead byte (0xC2–0xF4) read as the
    // Windows-1252 character U+00C2–U+00F4, in UTF-8 `C3 82`–`C3 B4`.
    let bytes = text.as_bytes();
    let lead =
        memchr::memchr_iter(0xC3, bytes).any(|i| matches!(bytes.get(i + 1), Some(0x82..=0xB4)));
    if !lead {
        return text;
    }
    let map = cp1252_bytes();
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut first: Option<(usize, String, char)> = None;
    let mut count = 0;
    let mut i = 0;
    while i < chars.len() {
        if let Some((decoded, used)) = decode_at(&chars[i..], map) {
            if first.is_none() {
                first = Some((out.len(), chars[i..i + used].iter().collect(), decoded));
            }
            count += 1;
            out.push(decoded);
            i += used;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    if let Some((offset, seen, meant)) = first {
        let more = match count {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        repairs.push(Repair {
            at: position_in(&out, offset),
            message: format!(
                "repaired mis-decoded text: '{seen}' → '{meant}'{more} (UTF-8 read as Windows-1252)"
            ),
        });
    }
    out
}

/// If `chars` starts with a UTF-8 lead byte and its continuation bytes, all
/// shown as Windows-1252 characters, returns the real character and how
/// many characters it took.
fn decode_at(chars: &[char], map: &HashMap<char, u8>) -> Option<(char, usize)> {
    let first = chars.first()?;
    if first.is_ascii() {
        return None;
    }
    let lead = *map.get(first)?;
    let len = match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let mut bytes = vec![lead];
    for c in chars.get(1..len)? {
        let byte = *map.get(c)?;
        if !(0x80..=0xBF).contains(&byte) {
            return None;
        }
        bytes.push(byte);
    }
    let decoded = std::str::from_utf8(&bytes).ok()?.chars().next()?;
    Some((decoded, len))
}

/// XML 1.0 allows tab, newline, carriage return and everything from U+0020
/// except U+FFFE and U+FFFF (Rust strings hold no surrogates).
pub fn xml_allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// The byte offset of the first character XML forbids in `text`, found a
/// byte at a time: in UTF-8 such a character is a control byte other than
/// tab and line ends, or the bytes of U+FFFE and U+FFFF (`EF BF BE`/`BF`).
pub fn first_forbidden(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let control = |b: u8| b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r';
    // Blocks are tested without a branch per byte (so the test is
    // vectorized); only a block that holds a control byte is searched.
    let control_at = bytes
        .chunks(64)
        .enumerate()
        .find(|(_, block)| block.iter().fold(false, |any, &b| any | control(b)))
        .and_then(|(n, block)| Some(n * 64 + block.iter().position(|&b| control(b))?));
    let nonchar_at = memchr::memchr_iter(0xEF, bytes).find(|&i| {
        bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF))
    });
    match (control_at, nonchar_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Where the first character XML forbids is, and how many there are.
fn find_forbidden(text: &str) -> Option<Repair> {
    let first = first_forbidden(text)?;
    let said = forbidden_in(std::iter::once(text))?;
    Some(Repair {
        at: position_in(text, first),
        message: format!("removed {said} (not allowed in XML feeds)"),
    })
}

/// The first character XML forbids in `texts` and how many more there are
/// (`control character U+0001 and 2 more`), if any.
pub fn forbidden_in<'a>(texts: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut first = None;
    let mut count = 0usize;
    for text in texts.filter(|text| first_forbidden(text).is_some()) {
        for c in text.chars().filter(|c| !xml_allowed(*c)) {
            first.get_or_insert(c);
            count += 1;
        }
    }
    let first = first?;
    let more = match count {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    Some(format!("control character U+{:04X}{more}", first as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_scan_finds_what_the_character_rule_forbids() {
        let chars = [
            'a',
            '\t',
            '\n',
            '\r',
            '\u{0}',
            '\u{1F}',
            ' ',
            '\u{7F}',
            'é',
            '\u{FFFD}',
            '\u{FFFE}',
            '\u{FFFF}',
            '\u{EFFF}',
            '\u{FEFF}',
            '\u{10FFFF}',
            '😀',
        ];
        // Around the edges of the 64-byte blocks too.
        for pad in [0, 1, 62, 63, 64, 127, 130] {
            for a in chars {
                for b in chars {
                    let text = format!("{}{a}{}{b}", "x".repeat(pad), "y".repeat(pad % 7));
                    let by_chars = text.find(|c| !xml_allowed(c));
                    assert_eq!(first_forbidden(&text), by_chars, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn bom_and_crlf_are_normalized() {
        let (text, repairs) = clean("\u{feff}a\r\nb\r\n");
        assert_eq!(text, "a\nb\n");
        assert!(repairs.is_empty());
    }

    #[test]
    fn mojibake_is_repaired_and_located() {
        let (text, repairs) = clean("line one\nsay â€” and cafÃ© and â€œquotedâ€\u{9d}\n");
        assert_eq!(text, "line one\nsay — and café and “quoted”\n");
        assert_eq!(repairs.len(), 1);
        assert_eq!(repairs[0].at, (2, 5));
        assert_eq!(
            repairs[0].message,
            "repaired mis-decoded text: 'â€”' → '—' and 3 more (UTF-8 read as Windows-1252)"
        );
    }

    #[test]
    fn real_accents_are_left_alone() {
        for text in ["Ça va, Ærø, Ñandú, naïve — “fine”", "Â alone", "Ã"] {
            let (cleaned, repairs) = clean(text);
            assert_eq!(cleaned, text);
            assert!(repairs.is_empty(), "{text}: {repairs:?}");
        }
    }

    #[test]
    fn forbidden_characters_are_removed() {
        let (text, repairs) = clean("ok\nbad\u{1}x\u{b}y\u{FFFF}\ttab");
        assert_eq!(text, "ok\nbadxy\ttab");
        assert_eq!(repairs[0].at, (2, 4));
        assert_eq!(
            repairs[0].message,
            "removed control character U+0001 and 2 more (not allowed in XML feeds)"
        );
    }
}
