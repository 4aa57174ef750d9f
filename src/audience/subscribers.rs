//! Audience stage: the subscribers file → checked [`Subscriber`]s, one at a time.
//!
//! The file is CSV with a header row (or, for `.yaml`/`.yml`, a list of maps
//! with the same keys). Strict about each row, forgiving about the file: a
//! row that cannot be used is an error on its line and is skipped, and every
//! other row is still read. Whatever is unclear fails closed: an unknown
//! status is not mailed.
//!
//! An address listed twice is one subscriber: the first row is kept, and the
//! most restrictive status of all its rows wins, even from a later row (an
//! unsubscribe appended to an export must hold). Finding that out needs the
//! whole file, yet the audience may be large, so the CSV is read twice and
//! never held: pass 1 keeps a few bytes per address, pass 2 builds each
//! subscriber, hands it over and forgets it.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use chrono_tz::Tz;
use csv::{ByteRecord, ReaderBuilder};
use saphyr_parser::{Event, Parser};
use serde_norway::Value;
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use crate::config::{MAX_YAML_NESTING, yaml_error, yaml_too_deep};
use crate::content::{Tag, position_of, tag_key};
use crate::diagnostics::Diagnostic;

/// Delivery status from the file. Ordered by how restrictive it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Active,
    Bounced,
    Unsubscribed,
    Complained,
    /// A value gazette does not know, as written: never mailed.
    Unknown(String),
}

impl Status {
    /// Whether the subscriber may be sent mail: only when active.
    pub fn mailable(&self) -> bool {
        *self == Status::Active
    }

    /// The status as the file spells it (lower case for the known ones).
    pub fn as_str(&self) -> &str {
        match self {
            Status::Active => "active",
            Status::Bounced => "bounced",
            Status::Unsubscribed => "unsubscribed",
            Status::Complained => "complained",
            Status::Unknown(text) => text,
        }
    }

    /// How restrictive the status is; of two rows for one address, the
    /// higher rank wins.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Status::Active => 0,
            Status::Unknown(_) => 1,
            Status::Bounced => 2,
            Status::Unsubscribed => 3,
            Status::Complained => 4,
        }
    }

    /// The known status of a rank above 1.
    fn of_rank(rank: u8) -> Status {
        match rank {
            0 => Status::Active,
            2 => Status::Bounced,
            3 => Status::Unsubscribed,
            _ => Status::Complained,
        }
    }

    /// The status of a trimmed `status` value (case-insensitive; empty is active).
    fn parse(text: &str) -> Status {
        match text.to_lowercase().as_str() {
            "" | "active" => Status::Active,
            "bounced" => Status::Bounced,
            "unsubscribed" => Status::Unsubscribed,
            "complained" => Status::Complained,
            _ => Status::Unknown(text.to_string()),
        }
    }
}

/// One accepted row of the subscribers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Trimmed, domain part lower-cased (user part kept as written).
    pub email: String,
    /// Trimmed; `None` when empty.
    pub name: Option<String>,
    /// The `segment` column, trimmed; `None` when empty.
    pub segment: Option<String>,
    /// From `interests` (split on `;` or `,`), deduplicated by key.
    pub interests: Vec<Tag>,
    pub status: Status,
    pub timezone: Option<Tz>,
    pub locale: Option<String>,
    /// Whether the digest may be personalized; true unless the file says otherwise.
    pub personalize: bool,
    /// Every other column, by header name; values trimmed, empty ones left out.
    pub attrs: BTreeMap<String, String>,
    /// The 1-based line where the record starts.
    pub line: usize,
}

/// Adds the custom columns of `attrs` that `columns` lacks, in order of
/// first appearance (the columns every digest of a run can use).
pub fn add_columns(columns: &mut Vec<String>, attrs: &BTreeMap<String, String>) {
    for column in attrs.keys() {
        if !columns.contains(column) {
            columns.push(column.clone());
        }
    }
}

/// Reads the subscribers file at `path` (shown in messages as `shown`),
/// calling `each` for every accepted subscriber in file order, and returns
/// every problem found (errors for rejected rows, warnings otherwise).
/// `.yaml`/`.yml` files are a YAML list of maps with the same keys; anything
/// else is CSV.
pub fn read(path: &Path, shown: &Path, each: &mut dyn FnMut(Subscriber)) -> Vec<Diagnostic> {
    if is_yaml(path) {
        read_yaml(path, shown, each)
    } else {
        read_csv(path, shown, each)
    }
}

fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// The custom columns readers of the file can have, sorted: a CSV file's
/// from its header row alone (no row is read), a YAML file's from every
/// entry. Problems are left to [`read`], which reports them.
pub fn columns(path: &Path, shown: &Path) -> Vec<String> {
    let mut columns = Vec::new();
    if is_yaml(path) {
        read(path, shown, &mut |s| add_columns(&mut columns, &s.attrs));
    } else if let Some(file) = CsvFile::open(path, shown, &mut Vec::new()) {
        columns = file
            .columns
            .into_iter()
            .filter_map(|column| match column {
                Column::Attr(name) => Some(name),
                _ => None,
            })
            .collect();
    }
    columns.sort();
    columns
}

/// What a column (or YAML key) holds, from its trimmed name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
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
    fn of(name: &str) -> Column {
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
    fn label(&self) -> &str {
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
enum Cell<'a> {
    Text(Cow<'a, str>),
    /// A YAML list (only `interests` may be one).
    List(Vec<String>),
}

/// Where a row is: its first line, or (YAML whose items could not be
/// placed) its 1-based item number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Line(usize),
    Item(usize),
}

impl Place {
    /// The line for [`Subscriber::line`] (0 when only the item is known).
    fn line(self) -> usize {
        match self {
            Place::Line(line) => line,
            Place::Item(_) => 0,
        }
    }

    /// The line or item number.
    fn number(self) -> usize {
        match self {
            Place::Line(number) | Place::Item(number) => number,
        }
    }

    /// "line N" (or "item N") for another row of the same file.
    fn same_kind(self, number: u32) -> String {
        match self {
            Place::Line(_) => format!("line {number}"),
            Place::Item(_) => format!("item {number}"),
        }
    }

    /// Puts `d` at this place: on the line, or "item N: " before the message.
    fn locate(self, d: Diagnostic) -> Diagnostic {
        match self {
            Place::Line(line) => d.at_line(line),
            Place::Item(item) => Diagnostic {
                message: format!("item {item}: {}", d.message),
                ..d
            },
        }
    }
}

/// The problems of one row; any error rejects the row.
struct RowCheck<'a> {
    shown: &'a Path,
    place: Place,
    problems: &'a mut Vec<Diagnostic>,
    rejected: bool,
}

impl<'a> RowCheck<'a> {
    fn new(shown: &'a Path, place: Place, problems: &'a mut Vec<Diagnostic>) -> RowCheck<'a> {
        RowCheck {
            shown,
            place,
            problems,
            rejected: false,
        }
    }

    fn error(&mut self, message: impl Into<String>) {
        self.rejected = true;
        let d = Diagnostic::error(self.shown, message);
        self.problems.push(self.place.locate(d));
    }

    fn warn(&mut self, message: impl Into<String>) {
        let d = Diagnostic::warning(self.shown, message);
        self.problems.push(self.place.locate(d));
    }
}

/// Checks one row's values; `None` when an error rejects it.
fn subscriber<'a>(
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
        match column {
            Column::Email => email = Some(text.to_string()),
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

/// The address trimmed and with its domain lower-cased, if it is valid.
fn normalize(email: &str) -> Option<String> {
    let (user, domain) = email.trim().rsplit_once('@')?;
    // A digest goes to a mailbox on a named domain, not an IP literal.
    if domain.starts_with('[') {
        return None;
    }
    let email = format!("{user}@{}", domain.to_lowercase());
    email.parse::<lettre::Address>().ok()?;
    Some(email)
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
fn forbidden(c: char) -> bool {
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
fn printable(text: &str) -> String {
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

/// What the first pass learns about each address.
#[derive(Debug, Clone, Copy)]
struct Seen1 {
    /// The row that is kept.
    first: u32,
    /// The first row with the most restrictive status, and that status's rank.
    status_at: u32,
    rank: u8,
}

/// Pass 1's record of every accepted address: 8 bytes of key and 12 of
/// [`Seen1`] per address, about 80 bytes with the hash table's own slack
/// (measured: 86 MB peak for a million rows).
#[derive(Debug, Default)]
struct Seen {
    addresses: HashMap<u64, Seen1>,
    /// The text of an unknown status that outranks its address's first row
    /// (an active first row, an unknown later one): the rank alone cannot
    /// say which word the file used.
    unknown: HashMap<u64, Box<str>>,
    /// Addresses that rejected rows mark as not to be mailed: the most
    /// restrictive rank and the first row that says so.
    suppressed: HashMap<u64, (u8, u32)>,
}

impl Seen {
    /// Records an accepted row of pass 1.
    fn note(&mut self, sub: &Subscriber, place: Place) {
        let key = address_key(&sub.email);
        let at = place_number(place);
        let rank = sub.status.rank();
        match self.addresses.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(Seen1 {
                    first: at,
                    status_at: at,
                    rank,
                });
            }
            Entry::Occupied(mut slot) => {
                let seen = slot.get_mut();
                if rank > seen.rank {
                    seen.rank = rank;
                    seen.status_at = at;
                    if let Status::Unknown(text) = &sub.status {
                        self.unknown.insert(key, text.as_str().into());
                    }
                }
            }
        }
    }

    /// Records what a rejected row of pass 1 still says: its addresses are
    /// not to be mailed (fail closed: a broken unsubscribe row still holds).
    fn suppress(&mut self, salvaged: &[(String, u8)], place: Place) {
        let at = place_number(place);
        for (email, rank) in salvaged {
            let entry = self
                .suppressed
                .entry(address_key(email))
                .or_insert((*rank, at));
            if *rank > entry.0 {
                *entry = (*rank, at);
            }
        }
    }

    /// An accepted row of pass 2: the subscriber to hand over (the first row
    /// of its address, with the merged status), or the warning that says
    /// this later row is a duplicate. A status taken from a rejected row is
    /// reported in `problems`.
    fn settle(
        &self,
        mut sub: Subscriber,
        place: Place,
        shown: &Path,
        problems: &mut Vec<Diagnostic>,
    ) -> Result<Subscriber, Diagnostic> {
        let key = address_key(&sub.email);
        let at = place_number(place);
        let first_row = self.addresses.get(&key).is_none_or(|seen| seen.first == at);
        if let Some(&(rank, line)) = self.suppressed.get(&key)
            && first_row
            && rank > sub.status.rank()
        {
            sub.status = Status::of_rank(rank);
            let message = format!(
                "{} is also on rejected {} as '{}', so it is not mailed",
                sub.email,
                place.same_kind(line),
                sub.status.as_str()
            );
            problems.push(place.locate(Diagnostic::warning(shown, message)));
        }
        // Missing or later only if the file changed between the passes.
        let Some(seen) = self.addresses.get(&key).filter(|seen| seen.first <= at) else {
            return Ok(sub);
        };
        if seen.first == at {
            if seen.rank > sub.status.rank() {
                sub.status = match self.unknown.get(&key) {
                    Some(text) if seen.rank == 1 => Status::Unknown(text.to_string()),
                    _ => Status::of_rank(seen.rank),
                };
            }
            return Ok(sub);
        }
        let first = place.same_kind(seen.first);
        let mut message = format!("duplicate of {first} ({}); {first} is kept", sub.email);
        if seen.status_at == at {
            message.push_str(&format!(
                " with this row's status '{}'",
                printable(sub.status.as_str())
            ));
        }
        Err(place.locate(Diagnostic::warning(shown, message)))
    }
}

/// The key under which pass 1 remembers an address: the first 8 bytes of
/// the SHA-256 of its [`comparable`] form (addresses differing only in
/// case, Unicode normalization or IDN spelling are one subscriber).
///
/// Two different addresses can share a key. The chance is about n²/2⁶⁵ for
/// n addresses (3 in a million for ten million); keeping the addresses
/// themselves to rule it out would make memory grow with their length. If
/// it happens, the failure is closed and visible: the later address is
/// reported as a duplicate of the earlier one (the warning names both
/// rows and the address) and not mailed, and the earlier one takes the more
/// restrictive status of the two. SHA-256 rather than std's hasher: its
/// fixed keys would let someone who knows them craft a sign-up address
/// that collides with another reader's, to unsubscribe them.
fn address_key(email: &str) -> u64 {
    let digest = Sha256::digest(comparable(email).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// What a rejected CSV row still says about who must not be mailed: read as
/// a row, and line by line (a missing closing quote can swallow whole rows).
fn salvage_record(record: &ByteRecord) -> Vec<(String, u8)> {
    let fields: Vec<String> = record
        .iter()
        .map(|field| String::from_utf8_lossy(field).into_owned())
        .collect();
    let text = fields.join(",");
    let mut found = salvage(fields);
    for line in text.lines() {
        found.extend(salvage(line.split(',').map(str::to_string).collect()));
    }
    found
}

/// What a rejected YAML item still says about who must not be mailed.
fn salvage_item(item: &Value) -> Vec<(String, u8)> {
    let Value::Mapping(map) = untag(item) else {
        return Vec::new();
    };
    let values = map
        .values()
        .filter_map(scalar_text)
        .map(Cow::into_owned)
        .collect();
    salvage(values)
}

/// Every valid address among `values`, with the most restrictive known
/// status among them, when that is not `active`.
fn salvage(values: Vec<String>) -> Vec<(String, u8)> {
    let values: Vec<&str> = values
        .iter()
        .map(|v| v.trim().trim_matches('"').trim())
        .collect();
    let rank = values
        .iter()
        .map(|v| Status::parse(v))
        .filter(|status| !matches!(status, Status::Unknown(_)))
        .map(|status| status.rank())
        .max()
        .unwrap_or(0);
    if rank == 0 {
        return Vec::new();
    }
    values
        .iter()
        .filter_map(|v| normalize(v))
        .map(|email| (email, rank))
        .collect()
}

/// The form in which two spellings of one address compare equal: the local
/// part in Unicode NFC and lower case, the domain in its ASCII (IDNA) form,
/// so `u@bücher.de`, `u@BU\u{308}CHER.de` and `u@xn--bcher-kva.de` are one.
pub(crate) fn comparable(email: &str) -> String {
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

/// The line of a row as pass 1 stores it (files past 4 billion lines share
/// the last number).
fn place_number(place: Place) -> u32 {
    u32::try_from(place.number()).unwrap_or(u32::MAX)
}

// --- CSV ---------------------------------------------------------------------

fn read_csv(path: &Path, shown: &Path, each: &mut dyn FnMut(Subscriber)) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    // Pass 1: what each address's rows add up to. Problems of rows are
    // reported by pass 2; a file that cannot be read to its end yields nobody.
    let Some(mut file) = CsvFile::open(path, shown, &mut problems) else {
        return problems;
    };
    let mut seen = Seen::default();
    loop {
        match file.next(shown, &mut Vec::new()) {
            Ok(Some((place, Some(sub)))) => seen.note(&sub, place),
            Ok(Some((place, None))) => seen.suppress(&file.salvaged, place),
            Ok(None) => break,
            Err(d) => {
                problems.push(d);
                return problems;
            }
        }
    }
    // Pass 2: every row again, in order, each address at its first row.
    let mut again = Vec::new();
    let Some(mut file) = CsvFile::open(path, shown, &mut again) else {
        problems.append(&mut again);
        return problems;
    };
    loop {
        let next = file.next(shown, &mut problems);
        match next {
            Ok(Some((place, Some(sub)))) => match seen.settle(sub, place, shown, &mut problems) {
                Ok(sub) => each(sub),
                Err(duplicate) => problems.push(duplicate),
            },
            Ok(Some((_, None))) => {}
            Ok(None) => break,
            Err(d) => {
                problems.push(d);
                break;
            }
        }
    }
    problems
}

/// A CSV subscribers file being read, past its header row.
struct CsvFile {
    reader: csv::Reader<Lines<File>>,
    columns: Vec<Column>,
    record: ByteRecord,
    /// What the last rejected row still says about who must not be mailed.
    salvaged: Vec<(String, u8)>,
}

impl CsvFile {
    /// Opens the file and reads its header; `None` (with the problem
    /// recorded) when it cannot be read or has no usable header.
    fn open(path: &Path, shown: &Path, problems: &mut Vec<Diagnostic>) -> Option<CsvFile> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) => {
                problems.push(Diagnostic::error(shown, format!("cannot read: {err}")));
                return None;
            }
        };
        // Flexible: rows of the wrong length are reported by `next`, in its words.
        let mut reader = ReaderBuilder::new()
            .flexible(true)
            .from_reader(Lines::new(file));
        let header = match reader.byte_headers() {
            Ok(header) => header.clone(),
            Err(err) => {
                problems.push(read_error(shown, &err));
                return None;
            }
        };
        let line = line_of(&mut reader, &header);
        let columns = header_columns(&header, line, shown, problems)?;
        Some(CsvFile {
            reader,
            columns,
            record: ByteRecord::new(),
            salvaged: Vec::new(),
        })
    }

    /// The next row that is not blank, with the subscriber it gives (`None`
    /// when rejected; its problems go to `problems`); `Ok(None)` at the end.
    fn next(
        &mut self,
        shown: &Path,
        problems: &mut Vec<Diagnostic>,
    ) -> Result<Option<(Place, Option<Subscriber>)>, Diagnostic> {
        loop {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(err) => return Err(read_error(shown, &err)),
            }
            // A row of empty fields (`,,,` from a spreadsheet) holds nobody.
            if self
                .record
                .iter()
                .all(|field| field.trim_ascii().is_empty())
            {
                continue;
            }
            let place = Place::Line(line_of(&mut self.reader, &self.record));
            self.salvaged.clear();
            let mut check = RowCheck::new(shown, place, problems);
            let breaks: usize = self
                .record
                .iter()
                .map(|field| field.trim_ascii().iter().filter(|b| **b == b'\n').count())
                .sum();
            if breaks > 0 {
                check.error(format!(
                    "a quoted value runs over {} lines (no field may hold a line break); if its closing quote is missing, the rows on those lines were not read",
                    breaks + 1
                ));
                self.salvaged = salvage_record(&self.record);
                return Ok(Some((place, None)));
            }
            if self.record.len() != self.columns.len() {
                check.error(format!(
                    "row has {} fields but the header has {}; put values that contain commas in double quotes",
                    self.record.len(),
                    self.columns.len()
                ));
                self.salvaged = salvage_record(&self.record);
                return Ok(Some((place, None)));
            }
            let mut cells = Vec::with_capacity(self.columns.len());
            for (column, field) in self.columns.iter().zip(self.record.iter()) {
                match std::str::from_utf8(field) {
                    Ok(text) => cells.push((column, Cell::Text(Cow::Borrowed(text)))),
                    Err(_) => check.error(format!(
                        "'{}' is not valid UTF-8; save the file as UTF-8",
                        column.label()
                    )),
                }
            }
            let sub = subscriber(cells, &mut check);
            if sub.is_none() {
                self.salvaged = salvage_record(&self.record);
            }
            return Ok(Some((place, sub)));
        }
    }
}

/// What each column of the header row holds; `None` after an error (no
/// `email` column, a column named twice, a name that cannot be read).
fn header_columns(
    header: &ByteRecord,
    line: usize,
    shown: &Path,
    problems: &mut Vec<Diagnostic>,
) -> Option<Vec<Column>> {
    let mut found = Vec::new();
    let mut columns = Vec::with_capacity(header.len());
    let mut names = HashSet::new();
    for (index, field) in header.iter().enumerate() {
        let number = index + 1;
        let Ok(name) = std::str::from_utf8(field) else {
            found.push(Diagnostic::error(
                shown,
                format!("the name of column {number} is not valid UTF-8; save the file as UTF-8"),
            ));
            columns.push(Column::Unnamed);
            continue;
        };
        let name = name.trim_start_matches('\u{feff}').trim();
        if let Some(c) = name.chars().find(|c| forbidden(*c)) {
            found.push(Diagnostic::error(
                shown,
                format!(
                    "the name of column {number} contains control character U+{:04X}; remove it",
                    c as u32
                ),
            ));
            columns.push(Column::Unnamed);
            continue;
        }
        if name.is_empty() {
            found.push(Diagnostic::warning(
                shown,
                format!("column {number} has no name in the header row; its values are ignored"),
            ));
        } else if !names.insert(name.to_lowercase()) {
            found.push(Diagnostic::error(
                shown,
                format!("column '{name}' appears twice in the header row; remove one"),
            ));
        }
        columns.push(Column::of(name));
    }
    if !columns.contains(&Column::Email) {
        // Most likely no header row at all: one problem says it all.
        problems.push(
            Diagnostic::error(
                shown,
                "no 'email' column in the header row; the first row must name the columns",
            )
            .at_line(line),
        );
        return None;
    }
    let failed = found.iter().any(Diagnostic::is_error);
    problems.extend(found.into_iter().map(|d| d.at_line(line)));
    (!failed).then_some(columns)
}

/// The line where `record`, just read, starts.
fn line_of(reader: &mut csv::Reader<Lines<File>>, record: &ByteRecord) -> usize {
    let byte = record.position().map_or(0, csv::Position::byte);
    let line = reader.get_mut().line_at(byte);
    usize::try_from(line).unwrap_or(usize::MAX)
}

/// The file as the CSV parser reads it, with a note of where each run of
/// line breaks ends, so that a record's first line can be told.
///
/// The parser's own [`csv::Position::line`] is the line it stood on when
/// the record began: one short after a CRLF (the LF is read with the next
/// record) and before any blank lines it skips. A record starts at the first
/// byte after its [`csv::Position::byte`] that is not a line break; this
/// keeps the byte and line of every such place from the last record asked
/// about to what the parser has read ahead (its buffer, or one long record).
struct Lines<R> {
    inner: R,
    offset: u64,
    line: u64,
    after_break: bool,
    starts: VecDeque<(u64, u64)>,
}

impl<R> Lines<R> {
    fn new(inner: R) -> Lines<R> {
        Lines {
            inner,
            offset: 0,
            line: 1,
            after_break: true,
            starts: VecDeque::new(),
        }
    }

    /// The line of the first byte at or after `byte` that is not a line
    /// break. Asked in increasing order of `byte`.
    fn line_at(&mut self, byte: u64) -> u64 {
        while let Some(&(offset, line)) = self.starts.front() {
            if offset >= byte {
                return line;
            }
            self.starts.pop_front();
        }
        self.line
    }
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            match b {
                b'\n' => {
                    self.line += 1;
                    self.after_break = true;
                }
                b'\r' => self.after_break = true,
                _ if self.after_break => {
                    self.starts.push_back((self.offset, self.line));
                    self.after_break = false;
                }
                _ => {}
            }
            self.offset += 1;
        }
        Ok(n)
    }
}

fn read_error(shown: &Path, err: &csv::Error) -> Diagnostic {
    let d = Diagnostic::error(shown, format!("cannot read: {err}"));
    match err.position() {
        Some(p) => d.at_line(usize::try_from(p.line()).unwrap_or(usize::MAX)),
        None => d,
    }
}

// --- YAML --------------------------------------------------------------------

/// A YAML list of maps, read whole (YAML is for small, hand-written lists);
/// duplicates are merged as in CSV.
fn read_yaml(path: &Path, shown: &Path, each: &mut dyn FnMut(Subscriber)) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            problems.push(Diagnostic::error(shown, format!("cannot read: {err}")));
            return problems;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let bad = err.as_bytes()[valid];
            let (line, col) = position_of(&err.as_bytes()[..valid]);
            let message = format!("not valid UTF-8 (byte 0x{bad:02X}); save the file as UTF-8");
            problems.push(Diagnostic::error(shown, message).at(line, col));
            return problems;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if let Some((line, col)) = yaml_too_deep(text) {
        let message = format!("lists or maps nested more than {MAX_YAML_NESTING} deep");
        problems.push(Diagnostic::error(shown, message).at(line, col));
        return problems;
    }
    let items = match serde_norway::from_str::<Value>(text) {
        Ok(Value::Null) => Vec::new(),
        Ok(Value::Sequence(items)) => items,
        Ok(_) => {
            let message = "the file must be a list of subscribers, each starting with '- email:'";
            problems.push(Diagnostic::error(shown, message).at_line(1));
            return problems;
        }
        Err(err) => {
            problems.push(yaml_error(&err, text, shown, 0, ""));
            return problems;
        }
    };
    let lines = item_lines(text);
    let place = |index: usize| match lines.get(index) {
        Some(&line) if lines.len() == items.len() => Place::Line(line),
        _ => Place::Item(index + 1),
    };
    let mut seen = Seen::default();
    for (index, item) in items.iter().enumerate() {
        match yaml_subscriber(item, place(index), shown, &mut Vec::new()) {
            Some(sub) => seen.note(&sub, place(index)),
            None => seen.suppress(&salvage_item(item), place(index)),
        }
    }
    for (index, item) in items.iter().enumerate() {
        if let Some(sub) = yaml_subscriber(item, place(index), shown, &mut problems) {
            match seen.settle(sub, place(index), shown, &mut problems) {
                Ok(sub) => each(sub),
                Err(duplicate) => problems.push(duplicate),
            }
        }
    }
    problems
}

/// The line where each item of the top-level list starts (serde gives no
/// positions); fewer than the items if the event parser disagrees.
fn item_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut depth = 0usize;
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else { break };
        let opens = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
        if depth == 1 && (opens || matches!(event, Event::Scalar(..) | Event::Alias(..))) {
            lines.push(span.start.line());
        }
        match event {
            _ if opens => depth += 1,
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    lines
}

/// Checks one item of the YAML list, as a CSV row with its keys as header.
fn yaml_subscriber(
    item: &Value,
    place: Place,
    shown: &Path,
    problems: &mut Vec<Diagnostic>,
) -> Option<Subscriber> {
    let mut check = RowCheck::new(shown, place, problems);
    let Value::Mapping(map) = untag(item) else {
        check.error("each subscriber must be a map of keys and values, starting with 'email:'");
        return None;
    };
    let mut columns = Vec::with_capacity(map.len());
    let mut cells = Vec::with_capacity(map.len());
    let mut names = HashSet::new();
    for (key, value) in map {
        let Some(name) = scalar_text(key) else {
            check.error(format!(
                "a key is {}; keys are names like 'email'",
                kind(key)
            ));
            continue;
        };
        let name = name.trim();
        if let Some(c) = name.chars().find(|c| forbidden(*c)) {
            check.error(format!(
                "a key contains control character U+{:04X}; remove it",
                c as u32
            ));
            continue;
        }
        if !name.is_empty() && !names.insert(name.to_lowercase()) {
            check.error(format!("key '{name}' appears twice; remove one"));
            continue;
        }
        let column = Column::of(name);
        let cell = match untag(value) {
            Value::Sequence(items) if column == Column::Interests => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match scalar_text(item) {
                        Some(text) => list.push(text.into_owned()),
                        None => check.error(format!(
                            "each of 'interests' must be text, got {}",
                            kind(item)
                        )),
                    }
                }
                Cell::List(list)
            }
            value => match scalar_text(value) {
                Some(text) => Cell::Text(text),
                None => {
                    check.error(format!(
                        "'{}' must be text, got {}",
                        printable(column.label()),
                        kind(value)
                    ));
                    continue;
                }
            },
        };
        columns.push(column);
        cells.push(cell);
    }
    subscriber(columns.iter().zip(cells), &mut check)
}

/// A scalar as text (empty for null); `None` for a list or map.
fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match untag(value) {
        Value::Null => Some(Cow::Borrowed("")),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => None,
    }
}

/// The value without its YAML tags (`!text abc` is `abc`).
fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => untag(&tagged.value),
        other => other,
    }
}

fn kind(value: &Value) -> &'static str {
    match untag(value) {
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        _ => "a value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` as the file `name`: the subscribers and every problem as printed.
    fn read_as(name: &str, text: impl AsRef<[u8]>) -> (Vec<Subscriber>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mut subs = Vec::new();
        let problems = read(&path, Path::new(name), &mut |sub| subs.push(sub));
        (subs, problems.iter().map(ToString::to_string).collect())
    }

    fn csv(text: impl AsRef<[u8]>) -> (Vec<Subscriber>, Vec<String>) {
        read_as("subscribers.csv", text)
    }

    fn emails(subs: &[Subscriber]) -> Vec<(&str, usize)> {
        subs.iter().map(|s| (s.email.as_str(), s.line)).collect()
    }

    fn tag(name: &str, key: &str) -> Tag {
        Tag {
            name: name.into(),
            key: key.into(),
        }
    }

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
    fn bom_and_crlf() {
        let (subs, problems) =
            csv("\u{feff}Email,Name\r\nana@example.com,Ana\r\nbob@example.com,Bob\r\n");
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(
            emails(&subs),
            [("ana@example.com", 2), ("bob@example.com", 3)]
        );
        assert_eq!(subs[0].name.as_deref(), Some("Ana"));
        assert_eq!(subs[1].name.as_deref(), Some("Bob"));
    }

    #[test]
    fn quoted_commas_and_doubled_quotes() {
        let (subs, problems) = csv("email,name,interests\n\
             ana@example.com,\"Lopez, Ana\",\"ai, design\"\n\
             bob@example.com,\"Bob \"\"the builder\"\"\",\n");
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(subs[0].name.as_deref(), Some("Lopez, Ana"));
        assert_eq!(
            subs[0].interests,
            [tag("ai", "ai"), tag("design", "design")]
        );
        assert_eq!(subs[1].name.as_deref(), Some("Bob \"the builder\""));
        assert_eq!(subs[1].line, 3);
    }

    #[test]
    fn embedded_newlines_keep_later_line_numbers_right() {
        // Line 2-3: a name with a newline inside (rejected); line 4-5: one
        // only at the end (trimmed away); line 6: an ordinary row.
        let (subs, problems) = csv("email,name\n\
             ana@example.com,\"Ana\nLopez\"\n\
             bob@example.com,\"Bob\n\"\n\
             cy@example.com,Cy\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:2: a quoted value runs over 2 lines (no field may hold a line break); if its closing quote is missing, the rows on those lines were not read"
            ]
        );
        assert_eq!(
            emails(&subs),
            [("bob@example.com", 4), ("cy@example.com", 6)]
        );
        assert_eq!(subs[0].name.as_deref(), Some("Bob"));
    }

    #[test]
    fn line_numbers_survive_crlf_blank_lines_and_quoted_breaks() {
        let (subs, problems) = csv("\r\n\r\nemail,name\r\n\r\n\
             ana@example.com,\"Ana\r\n\"\r\n\
             \r\n\
             bob@example.com,\"B\r\nob\"\r\n\
             cy@example.com,Cy");
        assert_eq!(
            problems,
            [
                "subscribers.csv:8: a quoted value runs over 2 lines (no field may hold a line break); if its closing quote is missing, the rows on those lines were not read"
            ]
        );
        assert_eq!(
            emails(&subs),
            [("ana@example.com", 5), ("cy@example.com", 10)]
        );
    }

    #[test]
    fn line_numbers_stay_right_past_the_read_buffer() {
        // Far more than the parser reads at once, with a long quoted record
        // spanning lines in the middle (rejected for its line breaks).
        let mut text = String::from("email,name,notes\r\n");
        let mut expected = Vec::new();
        let mut line = 2;
        let mut long_at = 0;
        for i in 0..3000 {
            if i == 1500 {
                let notes = "word ".repeat(3000);
                text.push_str(&format!("long@example.com,Long,\"{notes}\n\n{notes}\"\r\n"));
                long_at = line;
                line += 3;
            }
            if i % 7 == 0 {
                text.push_str("\r\n");
                line += 1;
            }
            text.push_str(&format!("p{i}@example.com,P {i},\r\n"));
            expected.push((format!("p{i}@example.com"), line));
            line += 1;
        }
        let (subs, problems) = csv(text);
        assert_eq!(long_at, 1717);
        assert_eq!(
            problems,
            [format!(
                "subscribers.csv:{long_at}: a quoted value runs over 3 lines (no field may hold a line break); if its closing quote is missing, the rows on those lines were not read"
            )]
        );
        let got: Vec<(String, usize)> = subs.iter().map(|s| (s.email.clone(), s.line)).collect();
        assert_eq!(got, expected);
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
    fn rows_with_the_wrong_number_of_fields_are_rejected() {
        let (subs, problems) = csv("email,name,segment\n\
             ana@example.com,Lopez, Ana,pro\n\
             bob@example.com,Bob\n\
             cy@example.com,Cy,pro\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:2: row has 4 fields but the header has 3; put values that contain commas in double quotes",
                "subscribers.csv:3: row has 2 fields but the header has 3; put values that contain commas in double quotes",
            ]
        );
        assert_eq!(emails(&subs), [("cy@example.com", 4)]);
    }

    #[test]
    fn blank_rows_are_skipped() {
        let (subs, problems) = csv("email,name\n,\n\nana@example.com,Ana\n , \n");
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(emails(&subs), [("ana@example.com", 4)]);
    }

    #[test]
    fn rows_that_are_not_utf8_are_rejected() {
        let (subs, problems) =
            csv(b"email,name\nana@example.com,Ana\nbob@example.com,B\xffb\ncy@example.com,Cy\n");
        assert_eq!(
            problems,
            ["subscribers.csv:3: 'name' is not valid UTF-8; save the file as UTF-8"]
        );
        assert_eq!(
            emails(&subs),
            [("ana@example.com", 2), ("cy@example.com", 4)]
        );
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
    fn status_ranks_go_from_active_to_complained() {
        let order = [
            Status::Active,
            Status::Unknown("paused".into()),
            Status::Bounced,
            Status::Unsubscribed,
            Status::Complained,
        ];
        let ranks: Vec<u8> = order.iter().map(Status::rank).collect();
        assert_eq!(ranks, [0, 1, 2, 3, 4]);
        for rank in [0, 2, 3, 4] {
            assert_eq!(Status::of_rank(rank).rank(), rank);
        }
    }

    #[test]
    fn a_later_duplicate_adds_only_its_more_restrictive_status() {
        let (subs, problems) = csv("email,name,status,plan\n\
             ana@example.com,Ana,active,pro\n\
             bob@example.com,Bob,,\n\
             ana@example.com,Other,unsubscribed,free\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:4: warning: duplicate of line 2 (ana@example.com); line 2 is kept with this row's status 'unsubscribed'"
            ]
        );
        assert_eq!(
            emails(&subs),
            [("ana@example.com", 2), ("bob@example.com", 3)]
        );
        let ana = &subs[0];
        assert_eq!(ana.name.as_deref(), Some("Ana"));
        assert_eq!(ana.attrs.get("plan").map(String::as_str), Some("pro"));
        assert_eq!(ana.status, Status::Unsubscribed);
        assert!(!ana.status.mailable());
        assert_eq!(subs[1].status, Status::Active);
    }

    #[test]
    fn duplicates_are_found_whatever_the_case() {
        let (subs, problems) = csv("email,name\n\
             Ana@Example.com,Ana\n\
             \x20ana@EXAMPLE.COM ,Other\n\
             ANA@example.com,Third\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
                "subscribers.csv:4: warning: duplicate of line 2 (ANA@example.com); line 2 is kept",
            ]
        );
        assert_eq!(emails(&subs), [("Ana@example.com", 2)]);
        assert_eq!(subs[0].name.as_deref(), Some("Ana"));
        assert_eq!(subs[0].status, Status::Active);
    }

    #[test]
    fn the_most_restrictive_of_many_duplicates_wins() {
        let (subs, problems) = csv("email,status\n\
             ana@example.com,active\n\
             ana@example.com,unsubscribed\n\
             ana@example.com,complained\n\
             ana@example.com,bounced\n\
             ana@example.com,complained\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
                "subscribers.csv:4: warning: duplicate of line 2 (ana@example.com); line 2 is kept with this row's status 'complained'",
                "subscribers.csv:5: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
                "subscribers.csv:6: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
            ]
        );
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].status, Status::Complained);
    }

    #[test]
    fn a_restrictive_first_row_is_not_undone_by_a_later_one() {
        let (subs, problems) = csv("email,status\n\
             ana@example.com,bounced\n\
             ana@example.com,active\n\
             ana@example.com,bounced\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
                "subscribers.csv:4: warning: duplicate of line 2 (ana@example.com); line 2 is kept",
            ]
        );
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].status, Status::Bounced);
    }

    #[test]
    fn an_unknown_status_on_a_duplicate_fails_closed() {
        let (subs, problems) = csv("email,status\n\
             ana@example.com,active\n\
             ana@example.com,Paused\n\
             bob@example.com,bounced\n\
             bob@example.com,Paused\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:3: warning: unknown status 'Paused', not mailed; use active, unsubscribed, bounced or complained",
                "subscribers.csv:3: warning: duplicate of line 2 (ana@example.com); line 2 is kept with this row's status 'Paused'",
                "subscribers.csv:5: warning: unknown status 'Paused', not mailed; use active, unsubscribed, bounced or complained",
                "subscribers.csv:5: warning: duplicate of line 4 (bob@example.com); line 4 is kept",
            ]
        );
        let statuses: Vec<_> = subs.iter().map(|s| s.status.clone()).collect();
        assert_eq!(
            statuses,
            [Status::Unknown("Paused".into()), Status::Bounced]
        );
    }

    #[test]
    fn rejected_rows_are_not_duplicates() {
        let (subs, problems) = csv("email,name,status\n\
             ana@example.com,Bad\x07,active\n\
             ana@example.com,Ana,\n\
             ana@example.com,\"Bad\nAgain\",complained\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:2: 'name' contains control character U+0007; remove it",
                "subscribers.csv:3: warning: ana@example.com is also on rejected line 4 as 'complained', so it is not mailed",
                "subscribers.csv:4: a quoted value runs over 2 lines (no field may hold a line break); if its closing quote is missing, the rows on those lines were not read",
            ]
        );
        // Not duplicates, yet a rejected row's restrictive status still holds.
        assert_eq!(emails(&subs), [("ana@example.com", 3)]);
        assert_eq!(subs[0].name.as_deref(), Some("Ana"));
        assert_eq!(subs[0].status, Status::Complained);
    }

    #[test]
    fn pass_one_keeps_a_few_bytes_per_address() {
        assert!(std::mem::size_of::<(u64, Seen1)>() <= 24);
    }

    #[test]
    fn address_keys_ignore_case_only() {
        assert_eq!(
            address_key("Ana@Example.com"),
            address_key("ana@example.com")
        );
        assert_ne!(
            address_key("ana@example.com"),
            address_key("ana@example.org")
        );
        assert_ne!(
            address_key("ana@example.com"),
            address_key("an@example.com")
        );
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
    fn a_file_without_an_email_column_is_one_error() {
        let (subs, problems) = csv("ana@example.com,Ana\nbob@example.com,Bob\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:1: no 'email' column in the header row; the first row must name the columns"
            ]
        );
        assert!(subs.is_empty());
        let (subs, problems) = csv("");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(subs.is_empty());
    }

    #[test]
    fn a_column_named_twice_is_an_error() {
        let (subs, problems) = csv("email,name,Name\nana@example.com,A,B\n");
        assert_eq!(
            problems,
            ["subscribers.csv:1: column 'Name' appears twice in the header row; remove one"]
        );
        assert!(subs.is_empty());
    }

    #[test]
    fn unnamed_columns_are_ignored_with_a_warning() {
        let (subs, problems) = csv("email,name,\nana@example.com,Ana,x\n");
        assert_eq!(
            problems,
            [
                "subscribers.csv:1: warning: column 3 has no name in the header row; its values are ignored"
            ]
        );
        assert_eq!(emails(&subs), [("ana@example.com", 2)]);
        assert!(subs[0].attrs.is_empty());
    }

    #[test]
    fn a_missing_file_is_one_error() {
        let dir = tempfile::tempdir().unwrap();
        let problems = read(
            &dir.path().join("none.csv"),
            Path::new("none.csv"),
            &mut |_| panic!("no subscriber expected"),
        );
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .starts_with("none.csv: cannot read: "),
            "{}",
            problems[0]
        );
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

    #[test]
    fn yaml_lists_read_like_csv() {
        let text = r#"# subscribers
- email: Ana@Example.COM
  name: Ana
  interests: [AI, "machine  learning", ai, "c++"]
  personalize: false
  Status: Active
  plan: pro
  seats: 3
- email: bob@example.com
  interests: design; ai
  personalize: 1
  timezone: Europe/Paris
- name: No Email
- email: ana@example.com
  status: unsubscribed
- just text
- email: cy@example.com
  name: [a, b]
- {email: di@example.com, interests: [x, {y: z}]}
"#;
        let (subs, problems) = read_as("subscribers.yaml", text);
        assert_eq!(
            problems,
            [
                "subscribers.yaml:13: no email address; fill in 'email' or remove the row",
                "subscribers.yaml:14: warning: duplicate of line 2 (ana@example.com); line 2 is kept with this row's status 'unsubscribed'",
                "subscribers.yaml:16: each subscriber must be a map of keys and values, starting with 'email:'",
                "subscribers.yaml:17: 'name' must be text, got a list",
                "subscribers.yaml:19: each of 'interests' must be text, got a map",
            ]
        );
        assert_eq!(
            emails(&subs),
            [("Ana@example.com", 2), ("bob@example.com", 9)]
        );
        let ana = &subs[0];
        assert_eq!(ana.name.as_deref(), Some("Ana"));
        assert_eq!(
            ana.interests,
            [
                tag("AI", "ai"),
                tag("machine learning", "machine-learning"),
                tag("c++", "c-plus-plus"),
            ]
        );
        assert!(!ana.personalize);
        assert_eq!(ana.status, Status::Unsubscribed);
        let attrs: Vec<_> = ana
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(attrs, [("plan", "pro"), ("seats", "3")]);
        let bob = &subs[1];
        assert_eq!(bob.interests, [tag("design", "design"), tag("ai", "ai")]);
        assert!(bob.personalize);
        assert_eq!(bob.timezone, Some(chrono_tz::Europe::Paris));
        assert_eq!(bob.status, Status::Active);
    }

    #[test]
    fn yaml_items_are_checked_like_rows() {
        let text = r#"- email: ana@example.com
  name: "Ana\u0007"
- email: bob@example.com
  Email: bob@example.org
- email: cy@example.com
  status: paused
  timezone: Nowhere
"#;
        let (subs, problems) = read_as("people.yml", text);
        assert_eq!(
            problems,
            [
                "people.yml:1: 'name' contains control character U+0007; remove it",
                "people.yml:3: key 'Email' appears twice; remove one",
                "people.yml:5: warning: unknown status 'paused', not mailed; use active, unsubscribed, bounced or complained",
                "people.yml:5: warning: unknown timezone 'Nowhere', ignored; use an IANA name such as 'Europe/Berlin' or 'UTC'",
            ]
        );
        assert_eq!(emails(&subs), [("cy@example.com", 5)]);
        assert_eq!(subs[0].status, Status::Unknown("paused".into()));
    }

    #[test]
    fn yaml_that_is_not_a_list_is_one_error() {
        let (subs, problems) = read_as("subscribers.yaml", "email: ana@example.com\n");
        assert_eq!(
            problems,
            [
                "subscribers.yaml:1: the file must be a list of subscribers, each starting with '- email:'"
            ]
        );
        assert!(subs.is_empty());
        let (subs, problems) = read_as("subscribers.yaml", "- email: \"ana@example.com\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("subscribers.yaml:1:"),
            "{problems:?}"
        );
        assert!(subs.is_empty());
        let (subs, problems) = read_as("subscribers.yaml", "# nobody yet\n");
        assert_eq!(problems, Vec::<String>::new());
        assert!(subs.is_empty());
    }

    #[test]
    fn the_extension_decides_the_format() {
        // The same YAML text read as CSV has no email column.
        let text = "- email: ana@example.com\n";
        assert_eq!(read_as("a.YML", text).0.len(), 1);
        assert_eq!(read_as("a.yaml", text).0.len(), 1);
        let (subs, problems) = read_as("a.txt", text);
        assert!(subs.is_empty());
        assert_eq!(
            problems,
            ["a.txt:1: no 'email' column in the header row; the first row must name the columns"]
        );
    }

    #[test]
    fn items_without_a_line_are_named_by_number() {
        let d = Place::Item(3).locate(Diagnostic::warning("s.yaml", "duplicate of item 1"));
        assert_eq!(
            d.to_string(),
            "s.yaml: warning: item 3: duplicate of item 1"
        );
        assert_eq!(Place::Item(3).same_kind(1), "item 1");
        assert_eq!(Place::Item(3).line(), 0);
        assert_eq!(item_lines("- a\n-\n  b: 1\n- [x]\n"), [1, 3, 4]);
    }
}
