//! Render stage: a digest's MIME body — `multipart/alternative`, the text
//! part then the HTML part, each quoted-printable — encoded once per
//! compiled digest. Per reader only the field values are escaped, encoded
//! and spliced in, so a message costs a few copies, not a MIME build over
//! the whole body (FINDINGS: 0.5–0.85 ms each with lettre's builder).
//!
//! Splicing works because quoted-printable allows a soft line break
//! (`=` CRLF, which decodes to nothing) at the end of any encoded line:
//! every piece is encoded on its own, starting at column 0, and ends with
//! a hard or soft line break, so pieces join without one line growing
//! past 76 characters.

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
    Encoded(String),
    /// Field `index`, escaped for its part.
    Field(usize, Escape),
}

impl Body {
    /// The body for `text` and `html` between `boundary` lines.
    pub fn new(text: &Plan, html: &Plan, boundary: &str) -> Body {
        let mut chunks = Vec::new();
        for (plan, kind, escape) in [
            (text, "text/plain", Escape::Text),
            (html, "text/html", Escape::Html),
        ] {
            chunks.push(Chunk::Encoded(format!(
                "--{boundary}\r\nContent-Type: {kind}; charset=utf-8\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            )));
            for piece in plan.pieces() {
                match piece {
                    Piece::Literal(literal) => chunks.push(Chunk::Encoded(encode(literal))),
                    Piece::Field(index) => chunks.push(Chunk::Field(index, escape)),
                }
            }
            chunks.push(Chunk::Encoded("\r\n".into()));
        }
        chunks.push(Chunk::Encoded(format!("--{boundary}--\r\n")));
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

    /// The line between the parts.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// The body with field `i` as `values[i]`, appended to `out`.
    pub fn fill(&self, values: &[&str], out: &mut Vec<u8>) {
        out.reserve(self.len + 256);
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

/// `text` quoted-printable, line breaks as CRLF, ending with a line break
/// (a soft one when the text does not end with its own), or empty.
fn encode(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let options = Options::default()
        .line_length_limit(LINE)
        .input_mode(InputMode::Text);
    let mut encoded = quoted_printable::encode_with_options(crlf.as_bytes(), options);
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
    let letters: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
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
        let body = Body::new(&text, &html, &boundary);
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
    fn a_boundary_never_occurs_in_encoded_text() {
        let boundary = boundary();
        let hostile = format!("--{boundary}\n=_gazette_");
        assert!(!encode(&hostile).contains(&boundary));
        assert!(!encode(&hostile).contains("=_"));
    }
}
