//! Shared vocabulary: a tag and its folded key, the word config (segment
//! interests and rules), content (post tags), audience (subscriber
//! interests) and select (ranking) all match on.
//!
//! Imports no stage (nothing of the crate): it sits below every stage that
//! matches tags, so none of them imports another to borrow it.

/// A tag as written (for display) and its folded key (for matching and paths).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub name: String,
    pub key: String,
}

/// Lower-cased words joined by `-`: letters and digits of any script are
/// kept, everything else separates words.
pub fn slugify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

/// The key of a tag, used to match it and as its feed folder: its slug,
/// with `+` and a `#` after a letter spelled out, so that "C++", "C#" and
/// "C" stay three tags ("c-plus-plus", "c-sharp", "c") while "#privacy"
/// and "Privacy" are one.
pub fn tag_key(name: &str) -> String {
    let mut spelled = String::with_capacity(name.len() + 8);
    let mut after_letter = false;
    for c in name.chars() {
        match c {
            '+' => spelled.push_str(" plus "),
            '#' if after_letter => spelled.push_str(" sharp "),
            _ => spelled.push(c),
        }
        after_letter = c.is_alphanumeric();
    }
    slugify(&spelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_keeps_words_of_any_script() {
        assert_eq!(slugify("Digital Marketing"), "digital-marketing");
        assert_eq!(slugify("  AI / ML: 2025! "), "ai-ml-2025");
        assert_eq!(slugify("Ünïcödé Straße"), "ünïcödé-straße");
        assert_eq!(slugify("العربية نص"), "العربية-نص");
        assert_eq!(slugify("snake_case"), "snake_case");
        assert_eq!(slugify("!!!"), "");
    }

    #[test]
    fn tag_keys_keep_programming_languages_apart() {
        assert_eq!(tag_key("C++"), "c-plus-plus");
        assert_eq!(tag_key("C#"), "c-sharp");
        assert_eq!(tag_key("C"), "c");
        assert_eq!(tag_key("#privacy"), "privacy");
        assert_eq!(tag_key("Machine  Learning"), "machine-learning");
    }
}
