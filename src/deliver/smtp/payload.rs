//! Deliver stage, SMTP: a message as DATA sends it ([`Payload`]). Pure:
//! may import std and memchr.

use std::fmt;

/// A message as DATA sends it, in one write: every `.` that starts a line
/// doubled (RFC 5321 §4.5.2), then the line with a lone `.` that ends it —
/// the bytes lettre's `message` writes, without its byte-at-a-time copy and
/// its second write for the end. Written with `Display`
/// (`Payload(text).to_string()`, or `write!` into a buffer).
pub struct Payload<'a>(pub &'a str);

impl fmt::Display for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.starts_with('.') {
            f.write_str(".")?;
        }
        // Lines that start with a dot, found by one substring search over
        // the message rather than a search at each line end.
        let mut from = 0;
        for at in memchr::memmem::find_iter(text.as_bytes(), b"\r\n.") {
            f.write_str(&text[from..at + 2])?;
            f.write_str(".")?;
            from = at + 2;
        }
        f.write_str(&text[from..])?;
        f.write_str("\r\n.\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_doubles_each_dot_that_starts_a_line_and_ends_with_one() {
        let shown = |text: &str| Payload(text).to_string();
        assert_eq!(shown("Hi\r\n"), "Hi\r\n\r\n.\r\n");
        assert_eq!(
            shown(".a\r\n..b\r\nc.\r\n.\r\nd\n.e"),
            "..a\r\n...b\r\nc.\r\n..\r\nd\n.e\r\n.\r\n"
        );
        assert_eq!(shown(""), "\r\n.\r\n");
    }
}
