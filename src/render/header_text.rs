//! Render stage: field values made fit for a header line. Imports nothing
//! of the crate.

/// The longest subject, in characters: longer ones are cut with "…" (mail
/// clients show far less, and a header line must stay under 998 octets).
const MAX_SUBJECT: usize = 250;

/// The subject, cut to [`MAX_SUBJECT`] characters.
pub(super) fn short(subject: String) -> String {
    if subject.chars().count() <= MAX_SUBJECT {
        return subject;
    }
    cut(&subject, MAX_SUBJECT)
}

/// The longest display name in `To:`, in characters: lettre does not fold
/// a long name, and a header line must stay under 998 octets.
const MAX_DISPLAY_NAME: usize = 100;

/// The display name, cut to [`MAX_DISPLAY_NAME`] characters.
pub(super) fn display_name(name: &str) -> String {
    if name.chars().count() <= MAX_DISPLAY_NAME {
        return name.to_string();
    }
    cut(name, MAX_DISPLAY_NAME)
}

/// The first `max - 1` characters of `text` and "…".
fn cut(text: &str, max: usize) -> String {
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// A header value on one line: whitespace runs, line breaks included, become one space.
pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_display_name_is_cut() {
        assert_eq!(display_name("Ann"), "Ann");
        let long = display_name(&"é".repeat(1200));
        assert_eq!(long.chars().count(), MAX_DISPLAY_NAME);
        assert!(long.ends_with('…'));
    }
}
