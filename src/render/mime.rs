//! Render stage: a digest's MIME body — `multipart/alternative`, the text
//! part then the HTML part, each quoted-printable — encoded once per
//! compiled digest. Per reader only the field values are escaped, encoded
//! and spliced in, so a message costs a few copies, not a MIME build over
//! the whole body with lettre's builder.
//!
//! Splicing works because quoted-printable allows a soft line break
//! (`=` CRLF, which decodes to nothing) at the end of any encoded line:
//! every piece is encoded on its own, starting at column 0, and ends with
//! a hard or soft line break, so pieces join without one line growing
//! past 76 characters.
//!
//! A personalized issue has thousands of distinct digests, which share
//! most of their text (the head, the footer, the same post's card). The
//! literal text is therefore cut where its content says — before each
//! `<div`, `<table` or conditional comment, after each blank line — and
//! each encoded piece is kept once per run ([`Pieces`]): a compiled body is
//! mostly a list of shared pieces, so memory stays flat however many
//! digests a run compiles.
//!
//! Imports only its siblings in `render`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use quoted_printable::{InputMode, Options};

use super::splice::{Escape, Piece, Plan};

/// What an encoded line may hold before its soft break `=`.
const LINE: usize = 75;

/// A compiled digest's body, ready to be filled per reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    boundary: String,
    chunks: Vec<Chunk>,
    /// The length of the encoded chunks, to size the output.
    len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// Bytes as they go on the wire: part headers, boundaries, encoded text.
    Encoded(Arc<str>),
    /// Field `index`, escaped for its part.
    Field(usize, Escape),
}

impl Body {
    /// The body for `text` and `html` between `boundary` lines, its
    /// encoded text kept in `pieces`.
    pub fn new(text: &Plan, html: &Plan, boundary: &str, pieces: &Pieces) -> Body {
        let mut chunks = Vec::new();
        for (plan, kind, escape) in [
            (text, "text/plain", Escape::Text),
            (html, "text/html", Escape::Html),
        ] {
            chunks.push(Chunk::Encoded(pieces.keep(format!(
                "--{boundary}\r\nContent-Type: {kind}; charset=utf-8\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            ))));
            for piece in plan.pieces() {
                match piece {
                    Piece::Literal(literal) => {
                        for cut in cuts(literal) {
                            chunks.push(Chunk::Encoded(pieces.encoded(cut)));
                        }
                    }
                    Piece::Field(index) => chunks.push(Chunk::Field(index, escape)),
                }
            }
            chunks.push(Chunk::Encoded(pieces.keep("\r\n".into())));
        }
        chunks.push(Chunk::Encoded(pieces.keep(format!("--{boundary}--\r\n"))));
        let len = chunks
            .iter()
            .map(|c| match c {
                Chunk::Encoded(text) => text.len(),
                Chunk::Field(..) => 0,
            })
            .sum();
        Body {
            boundary: boundary.to_string(),
            chunks,
            len,
        }
    }

    /// The length of the encoded text, without the fields.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The line between the parts.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// The body with field `i` as `values[i]`, appended to `out`.
    pub fn fill(&self, values: &[&str], out: &mut Vec<u8>) {
        out.reserve(self.len + FIELDS_ROOM);
        let mut escaped = String::new();
        for chunk in &self.chunks {
            match chunk {
                Chunk::Encoded(text) => out.extend_from_slice(text.as_bytes()),
                Chunk::Field(index, escape) => {
                    escaped.clear();
                    escape.push(values.get(*index).copied().unwrap_or(""), &mut escaped);
                    out.extend_from_slice(encode(&escaped).as_bytes());
                }
            }
        }
    }
}

/// Bytes the reader's fields add to a body, about (names, reasons, links
/// with tokens): reserved with it.
const FIELDS_ROOM: usize = 2048;

/// The encoded pieces of one run's bodies, each kept once, and each
/// literal piece encoded once.
#[derive(Debug, Default)]
pub struct Pieces {
    kept: Mutex<HashSet<Arc<str>>>,
    /// The encoding of each literal piece met so far: a digest shares most
    /// of its pieces with those compiled before it.
    encodings: Mutex<HashMap<Box<str>, Arc<str>>>,
}

impl Pieces {
    /// The one shared copy of `encoded`.
    fn keep(&self, encoded: String) -> Arc<str> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = kept.get(encoded.as_str()) {
            return found.clone();
        }
        let piece: Arc<str> = encoded.into();
        kept.insert(piece.clone());
        piece
    }

    /// The shared encoding of the literal text `raw`.
    fn encoded(&self, raw: &str) -> Arc<str> {
        let encodings = || {
            self.encodings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if let Some(found) = encodings().get(raw) {
            return found.clone();
        }
        let piece = self.keep(encode(raw));
        encodings().insert(raw.into(), piece.clone());
        piece
    }
}

/// Where a piece of literal text may start: places its content decides,
/// so the same passage is cut the same way in every digest.
const CUT_BEFORE: [&str; 3] = ["<div", "<table", "<!--[if"];

/// Longest piece, in bytes, before a cut at the next `>` or line break.
const LONGEST: usize = 2048;

/// `text` cut into pieces at content-defined places (see [`CUT_BEFORE`]).
fn cuts(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    // A cut can only fall before a `<` or after a `>` or line break: only
    // those places are looked at (found by memchr, not a byte at a time).
    let places = memchr::memchr3_iter(b'<', b'>', b'\n', bytes)
        .map(|at| if bytes[at] == b'<' { at } else { at + 1 });
    cuts_at(text, places)
}

/// `text` cut at those of `places` (ascending, repeats allowed) that the
/// rule of [`cuts`] takes.
fn cuts_at(text: &str, places: impl Iterator<Item = usize>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut last = 0;
    for i in places {
        if i <= last || i >= bytes.len() {
            continue;
        }
        last = i;
        let at_mark = bytes[i] == b'<'
            && CUT_BEFORE
                .iter()
                .any(|m| bytes[i..].starts_with(m.as_bytes()));
        let after_blank = bytes[i - 1] == b'\n' && i >= 2 && bytes[i - 2] == b'\n';
        let too_long = i - start >= LONGEST && matches!(bytes[i - 1], b'>' | b'\n');
        let cuttable = text.is_char_boundary(i) && bytes[i - 1] != b'\r';
        if (at_mark || after_blank || too_long) && i > start && cuttable {
            out.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// `text` quoted-printable, line breaks as CRLF, ending with a line break
/// (a soft one when the text does not end with its own), or empty.
fn encode(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    // Field values hold no line breaks (escaping drops control
    // characters): only literal text needs them made CRLF.
    let crlf = if text.contains(['\n', '\r']) {
        Cow::Owned(text.replace("\r\n", "\n").replace('\n', "\r\n"))
    } else {
        Cow::Borrowed(text)
    };
    // Spaces at the very end stay spaces: the soft break that follows
    // them means they do not end a line (the encoder would write `=20`).
    let body = crlf.trim_end_matches([' ', '\t']);
    let options = Options::default()
        .line_length_limit(LINE)
        .input_mode(InputMode::Text);
    let mut encoded = quoted_printable::encode_with_options(body.as_bytes(), options);
    for space in crlf[body.len()..].chars() {
        let line = encoded.len() - encoded.rfind("\r\n").map_or(0, |at| at + 2);
        if line >= LINE {
            encoded.push_str("=\r\n");
        }
        encoded.push(space);
    }
    if !encoded.ends_with("\r\n") {
        encoded.push_str("=\r\n");
    }
    encoded
}

/// A boundary that cannot occur in quoted-printable text (`=_` never does:
/// `=` is always followed by two hex digits or a line break), with random
/// letters so it stands out.
pub fn boundary() -> String {
    let mut bytes = [0u8; 12];
    // Without randomness the `=_` prefix alone keeps it unique.
    let _ = getrandom::fill(&mut bytes);
    let letters = hex::encode(bytes);
    format!("=_gazette_{letters}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::splice::Marker;

    fn decode(part: &str) -> String {
        let bytes = quoted_printable::decode(part, quoted_printable::ParseMode::Strict).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    /// The decoded parts of a filled body.
    fn parts(body: &str, boundary: &str) -> Vec<String> {
        body.split(&format!("--{boundary}"))
            .filter_map(|part| part.split_once("\r\n\r\n"))
            .map(|(_, content)| decode(content.strip_suffix("\r\n").unwrap()))
            .collect()
    }

    #[test]
    fn filled_parts_decode_to_the_filled_plans_with_short_lines() {
        let marker = Marker::new();
        let long = "é".repeat(100);
        let text = marker.plan(&format!(
            "Hi {}, \nline ending in a space \n{long}{}{}\n",
            marker.sentinel(0),
            marker.sentinel(1),
            marker.sentinel(0)
        ));
        let html = marker.plan(&format!("<p title=\"{}\">x=y</p>", marker.sentinel(0)));
        let boundary = boundary();
        let body = Body::new(&text, &html, &boundary, &Pieces::default());
        let values = ["Ann <b>&".to_string(), "z".repeat(200)];
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        body.fill(&values, &mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(out.lines().all(|l| l.len() <= 76), "{out}");
        assert!(out.split("\r\n").all(|l| !l.ends_with(' ')), "{out}");
        assert!(!out.replace("\r\n", "").contains('\n'), "bare LF: {out}");
        let decoded = parts(&out, &boundary);
        assert_eq!(
            decoded,
            [
                text.fill(&values, Escape::Text).replace('\n', "\r\n"),
                html.fill(&values, Escape::Html)
            ]
        );
        assert!(out.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn every_hostile_value_is_escaped_then_encoded_in_its_part() {
        let marker = Marker::new();
        let field = marker.sentinel(0);
        let text = marker.plan(&format!("Hi {field},\n"));
        let html = marker.plan(&format!("<p title=\"{field}\">{field}</p>"));
        let boundary = boundary();
        let body = Body::new(&text, &html, &boundary, &Pieces::default());
        for (value, escaped_html, escaped_text) in crate::render::splice::HOSTILE {
            let mut out = Vec::new();
            body.fill(&[value], &mut out);
            let out = String::from_utf8(out).unwrap();
            assert!(out.lines().all(|l| l.len() <= 76), "{out}");
            assert_eq!(
                parts(&out, &boundary),
                [
                    format!("Hi {escaped_text},\r\n"),
                    format!("<p title=\"{escaped_html}\">{escaped_html}</p>")
                ],
                "{value:?}"
            );
        }
    }

    #[test]
    fn cuts_looks_only_where_a_cut_can_fall_and_cuts_as_every_byte_would() {
        let parts = [
            "<div>",
            "</div>",
            "<table>",
            "<!--[if mso]>",
            "\n",
            "\r\n",
            "\n\n",
            ">",
            "<",
            "é",
            "text ",
            "<p>",
            "<<div",
            "\n\n<div",
        ];
        // A deterministic walk over sequences of the parts, long enough
        // to pass LONGEST.
        let mut seed = 7u64;
        for _ in 0..200 {
            let mut text = String::new();
            while text.len() < 3 * LONGEST {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(parts[(seed >> 33) as usize % parts.len()]);
            }
            assert_eq!(cuts(&text), cuts_at(&text, 0..text.len()), "{text:?}");
        }
    }

    #[test]
    fn pieces_are_cut_where_their_content_says_and_only_between_characters() {
        let html = "<p>é</p><div>a</div>é<table><tr></tr></table>\n\nnext";
        assert_eq!(
            cuts(html),
            [
                "<p>é</p>",
                "<div>a</div>é",
                "<table><tr></tr></table>\n\n",
                "next"
            ]
        );
        let long = "é>".repeat(3000);
        let pieces = cuts(&long);
        assert_eq!(pieces.concat(), long);
        assert!(
            pieces.iter().all(|p| p.len() <= LONGEST + 3),
            "{:?}",
            pieces.len()
        );
        // The same passage is cut the same way wherever it stands.
        let card = "<div class=\"card\">A post</div>";
        let in_one = cuts(&format!("<div>head</div>{card}<div>x</div>")).concat();
        assert!(cuts(&in_one).contains(&card));
    }

    #[test]
    fn a_boundary_never_occurs_in_encoded_text() {
        let boundary = boundary();
        let hostile = format!("--{boundary}\n=_gazette_");
        assert!(!encode(&hostile).contains(&boundary));
        assert!(!encode(&hostile).contains("=_"));
    }
}
