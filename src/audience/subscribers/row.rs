//! Audience stage: one row of the subscribers file (a CSV row or a YAML
//! item) checked into a [`Subscriber`], with its problems placed on its line.
//! What the columns mean, where a row is, and which characters no value may
//! hold. May import: `crate::address`, `crate::diagnostics`, `crate::tag`,
//! and the parent module's types.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use chrono_tz::Tz;

use super::{Status, Subscriber};
use crate::address::normalize;
use crate::diagnostics::Diagnostic;
use crate::tag::{Tag, tag_key};

/// What a column (or YAML key) holds, from its trimmed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Column {
    Email,
    Name,
    Segment,
    Interests,
    Status,
    Timezone,
    Locale,
    Personalize,
    /// Any other name, as written.
    Attr(String),
    /// A column with an empty header: its values are ignored.
    Unnamed,
}

impl Column {
    pub(super) fn of(name: &str) -> Column {
        match name.to_lowercase().as_str() {
            "" => Column::Unnamed,
            "email" => Column::Email,
            "name" => Column::Name,
            "segment" => Column::Segment,
            "interests" => Column::Interests,
            "status" => Column::Status,
            "timezone" => Column::Timezone,
            "locale" => Column::Locale,
            "personalize" => Column::Personalize,
            _ => Column::Attr(name.to_string()),
        }
    }

    /// The name used in messages.
    pub(super) fn label(&self) -> &str {
        match self {
            Column::Email => "email",
            Column::Name => "name",
            Column::Segment => "segment",
            Column::Interests => "interests",
            Column::Status => "status",
            Column::Timezone => "timezone",
            Column::Locale => "locale",
            Column::Personalize => "personalize",
            Column::Attr(name) => name,
            Column::Unnamed => "",
        }
    }
}

/// One value of a row, before checking.
pub(super) enum Cell<'a> {
    Text(Cow<'a, str>),
    /// A YAML list (only `interests` may be one).
    List(Vec<String>),
}

/// Where a row is: its first line, or (YAML whose items could not be
/// placed) its 1-based item number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowPlace {
    Line(usize),
    Item(usize),
}

impl RowPlace {
    /// The line for [`Subscriber::line`] (0 when only the item is known).
    pub(super) fn line(self) -> usize {
        match self {
            RowPlace::Line(line) => line,
            RowPlace::Item(_) => 0,
        }
    }

    /// The line or item number.
    pub(super) fn number(self) -> usize {
        match self {
            RowPlace::Line(number) | RowPlace::Item(number) => number,
        }
    }

    /// "line N" (or "item N") for another row of the same file.
    pub(super) fn same_kind(self, number: u32) -> String {
        match self {
            RowPlace::Line(_) => format!("line {number}"),
            RowPlace::Item(_) => format!("item {number}"),
        }
    }

    /// Puts `d` at this place: on the line, or "item N: " before the message.
    pub(super) fn locate(self, d: Diagnostic) -> Diagnostic {
        match self {
            RowPlace::Line(line) => d.at_line(line),
            RowPlace::Item(item) => Diagnostic {
                message: format!("item {item}: {}", d.message),
                ..d
            },
        }
    }
}

/// The problems of one row; any error rejects the row.
pub(super) struct RowCheck<'a> {
    shown: &'a Path,
    place: RowPlace,
    problems: &'a mut Vec<Diagnostic>,
    rejected: bool,
}

impl<'a> RowCheck<'a> {
    pub(super) fn new(
        shown: &'a Path,
        place: RowPlace,
        problems: &'a mut Vec<Diagnostic>,
    ) -> RowCheck<'a> {
        RowCheck {
            shown,
            place,
            problems,
            rejected: false,
        }
    }

    pub(super) fn error(&mut self, message: impl Into<String>) {
        self.rejected = true;
        let d = Diagnostic::error(self.shown, message);
        self.problems.push(self.place.locate(d));
    }

    pub(super) fn warn(&mut self, message: impl Into<String>) {
        let d = Diagnostic::warning(self.shown, message);
        self.problems.push(self.place.locate(d));
    }
}

/// Checks one row's values; `None` when an error rejects it.
pub(super) fn subscriber<'a>(
    cells: impl IntoIterator<Item = (&'a Column, Cell<'a>)>,
    check: &mut RowCheck,
) -> Option<Subscriber> {
    let mut sub = Subscriber {
        email: String::new(),
        name: None,
        segment: None,
        interests: Vec::new(),
        status: Status::Active,
        timezone: None,
        locale: None,
        personalize: true,
        attrs: BTreeMap::new(),
        line: check.place.line(),
    };
    let mut email = None;
    for (column, cell) in cells {
        if *column == Column::Unnamed {
            continue;
        }
        let text = match &cell {
            Cell::Text(text) => text.trim(),
            Cell::List(items) => {
                for item in items {
                    let item = item.trim();
                    if let Some(c) = item.chars().find(|c| forbidden(*c)) {
                        check.error(control_message(column.label(), c));
                    } else {
                        add_interest(&mut sub.interests, item, check);
                    }
                }
                continue;
            }
        };
        if let Some(c) = text.chars().find(|c| forbidden(*c)) {
            check.error(control_message(column.label(), c));
            continue;
        }
        set_field(&mut sub, &mut email, column, text, check);
    }
    match email.as_deref() {
        None | Some("") => check.error("no email address; fill in 'email' or remove the row"),
        Some(email) => match normalize(email) {
            Some(email) => sub.email = email,
            None => check.error(format!(
                "'{}' is not a valid email address; correct it or remove the row",
                printable(email)
            )),
        },
    }
    (!check.rejected).then_some(sub)
}

/// Sets what `column` holds from its trimmed `text`, free of forbidden
/// characters: a field of `sub`, or the address as written in `email`
/// (checked once the whole row is read).
fn set_field(
    sub: &mut Subscriber,
    email: &mut Option<String>,
    column: &Column,
    text: &str,
    check: &mut RowCheck,
) {
    match column {
        Column::Email => *email = Some(text.to_string()),
        Column::Name => sub.name = non_empty(text),
        Column::Segment => sub.segment = non_empty(text),
        Column::Interests => {
            for name in text.split([';', ',']) {
                add_interest(&mut sub.interests, name, check);
            }
        }
        Column::Status => {
            sub.status = Status::parse(text);
            if let Status::Unknown(_) = sub.status {
                check.warn(format!(
                    "unknown status '{}', not mailed; use active, unsubscribed, bounced or complained",
                    printable(text)
                ));
            }
        }
        Column::Timezone if text.is_empty() => {}
        Column::Timezone => match text.parse::<Tz>() {
            Ok(tz) => sub.timezone = Some(tz),
            Err(_) => check.warn(format!(
                "unknown timezone '{}', ignored; use an IANA name such as 'Europe/Berlin' or 'UTC'",
                printable(text)
            )),
        },
        Column::Locale => sub.locale = non_empty(text),
        Column::Personalize => match text.to_lowercase().as_str() {
            "" | "true" | "yes" | "1" => sub.personalize = true,
            "false" | "no" | "0" => sub.personalize = false,
            _ => {
                sub.personalize = false;
                check.warn(format!(
                    "'personalize' value '{}' is not true or false, so not personalized; use true or false",
                    printable(text)
                ));
            }
        },
        Column::Attr(name) => {
            if !text.is_empty() {
                sub.attrs.insert(name.clone(), text.to_string());
            }
        }
        Column::Unnamed => {}
    }
}

/// Adds the interest `name` unless it is empty or its key is already there.
fn add_interest(interests: &mut Vec<Tag>, name: &str, check: &mut RowCheck) {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let key = tag_key(&name);
    if key.is_empty() {
        if !name.is_empty() {
            check.warn(format!(
                "interest '{}' has no letters or digits; ignored",
                printable(&name)
            ));
        }
        return;
    }
    if !interests.iter().any(|t| t.key == key) {
        interests.push(Tag { name, key });
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// Characters no field may hold: controls (CR, LF, NUL…), the Unicode line
/// and paragraph separators, and the bidirectional overrides and isolates
/// that make text display other than it reads.
pub(super) fn forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

fn control_message(label: &str, c: char) -> String {
    format!(
        "'{label}' contains control character U+{:04X}; remove it",
        c as u32
    )
}

/// A value for a message: control characters escaped, at most 80 characters.
pub(super) fn printable(text: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::subscribers::testing::{csv, emails, tag};

    #[test]
    fn reads_every_column() {
        let (subs, problems) = csv(
            "email,name,segment,interests,status,timezone,locale,personalize\n\
             \x20 Ana.Lopez@Example.COM , Ana Lopez , pro ,ai;Design,active,Europe/Madrid, es-ES ,no\n",
        );
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(
            subs,
            vec![Subscriber {
                email: "Ana.Lopez@example.com".into(),
                name: Some("Ana Lopez".into()),
                segment: Some("pro".into()),
                interests: vec![tag("ai", "ai"), tag("Design", "design")],
                status: Status::Active,
                timezone: Some(chrono_tz::Europe::Madrid),
                locale: Some("es-ES".into()),
                personalize: false,
                attrs: BTreeMap::new(),
                line: 2,
            }]
        );
    }

    #[test]
    fn empty_optional_columns_and_missing_ones_take_defaults() {
        let (subs, problems) = csv("email,name,segment,status,timezone,locale,personalize\n\
             ana@example.com, ,,,,,\n");
        assert_eq!(problems, Vec::<String>::new());
        let ana = &subs[0];
        assert_eq!(ana.name, None);
        assert_eq!(ana.segment, None);
        assert_eq!(ana.status, Status::Active);
        assert_eq!(ana.timezone, None);
        assert_eq!(ana.locale, None);
        assert!(ana.personalize);
        assert!(ana.interests.is_empty());
        let (subs, _) = csv("email\nbob@example.com\n");
        assert_eq!(subs[0].name, None);
        assert!(subs[0].personalize);
    }

    #[test]
    fn invalid_addresses_reject_their_row_only() {
        let (subs, problems) = csv("email,name\n\
             not-an-address,A\n\
             ana@example.com,Ana\n\
             bob@@example.com,B\n\
             ,Nobody\n\
             cy@example.com,Cy\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:2: 'not-an-address' is not a valid email address; correct it or remove the row",
                "subscribers.csv:4: 'bob@@example.com' is not a valid email address; correct it or remove the row",
                "subscribers.csv:5: no email address; fill in 'email' or remove the row",
            ]
        );
        assert_eq!(
            emails(&subs),
            [("ana@example.com", 3), ("cy@example.com", 6)]
        );
    }

    #[test]
    fn control_characters_reject_the_row() {
        let (subs, problems) = csv("email,name,locale,segment,interests,plan\n\
             ana@example.com,Ana,,,,\n\
             bob@example.com,Bob\x07,,,,\n\
             cy@example.com,Cy,en\x1b,,,\n\
             di@example.com,Di,,a\u{85}b,,\n\
             ed@example.com,Ed,,,ai;\tml,\n\
             fa@example.com,Fa,,,,\"pro\rplus\"\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: 'name' contains control character U+0007; remove it",
                "subscribers.csv:4: 'locale' contains control character U+001B; remove it",
                "subscribers.csv:5: 'segment' contains control character U+0085; remove it",
                "subscribers.csv:6: 'interests' contains control character U+0009; remove it",
                "subscribers.csv:7: 'plan' contains control character U+000D; remove it",
            ]
        );
        assert_eq!(emails(&subs), [("ana@example.com", 2)]);
    }

    #[test]
    fn statuses() {
        let (subs, problems) = csv("email,status\n\
             a@example.com,active\n\
             b@example.com,Bounced\n\
             c@example.com,UNSUBSCRIBED\n\
             d@example.com, complained \n\
             e@example.com,\n\
             f@example.com,Paused\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:7: warning: unknown status 'Paused', not mailed; use active, unsubscribed, bounced or complained"
            ]
        );
        let statuses: Vec<_> = subs.iter().map(|s| s.status.clone()).collect();
        assert_eq!(
            statuses,
            [
                Status::Active,
                Status::Bounced,
                Status::Unsubscribed,
                Status::Complained,
                Status::Active,
                Status::Unknown("Paused".into()),
            ]
        );
        let mailable: Vec<_> = subs.iter().map(|s| s.status.mailable()).collect();
        assert_eq!(mailable, [true, false, false, false, true, false]);
        assert_eq!(subs[5].status.as_str(), "Paused");
        assert_eq!(subs[2].status.as_str(), "unsubscribed");
    }

    #[test]
    fn interests_split_on_semicolons_and_commas() {
        let (subs, problems) = csv("email,interests\n\
             ana@example.com,\"AI; machine   learning, ai ,, C++;C#;#privacy;Privacy; !!! \"\n");
        assert_eq!(
            problems,
            ["subscribers.csv:2: warning: interest '!!!' has no letters or digits; ignored"]
        );
        assert_eq!(
            subs[0].interests,
            [
                tag("AI", "ai"),
                tag("machine learning", "machine-learning"),
                tag("C++", "c-plus-plus"),
                tag("C#", "c-sharp"),
                tag("#privacy", "privacy"),
            ]
        );
    }

    #[test]
    fn personalize_values() {
        let values = ["true", "YES", "1", "", "False", "no", "0", "maybe"];
        let mut text = String::from("email,personalize\n");
        for (i, value) in values.iter().enumerate() {
            text.push_str(&format!("p{i}@example.com,{value}\n"));
        }
        let (subs, problems) = csv(text);
        let got: Vec<bool> = subs.iter().map(|s| s.personalize).collect();
        assert_eq!(got, [true, true, true, true, false, false, false, false]);
        assert_eq!(
            problems,
            [
                "subscribers.csv:9: warning: 'personalize' value 'maybe' is not true or false, so not personalized; use true or false"
            ]
        );
    }

    #[test]
    fn unknown_timezones_are_ignored_with_a_warning() {
        let (subs, problems) = csv("email,timezone\n\
             ana@example.com,America/New_York\n\
             bob@example.com,Mars/Olympus\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: warning: unknown timezone 'Mars/Olympus', ignored; use an IANA name such as 'Europe/Berlin' or 'UTC'"
            ]
        );
        assert_eq!(subs[0].timezone, Some(chrono_tz::America::New_York));
        assert_eq!(subs[1].timezone, None);
        assert_eq!(
            emails(&subs),
            [("ana@example.com", 2), ("bob@example.com", 3)]
        );
    }

    #[test]
    fn other_columns_are_attributes() {
        let (subs, problems) = csv(" EMAIL , Plan ,company,Name\n\
             ana@example.com, pro ,,Ana\n");
        assert_eq!(problems, Vec::<String>::new());
        let attrs: Vec<_> = subs[0]
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(attrs, [("Plan", "pro")]);
        assert_eq!(subs[0].name.as_deref(), Some("Ana"));
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(100);
        let (_, problems) = csv(format!("email\n{long}\n"));
        let shown = format!("{}…", "x".repeat(80));
        assert_eq!(
            problems,
            [format!(
                "subscribers.csv:2: '{shown}' is not a valid email address; correct it or remove the row"
            )]
        );
    }
}
