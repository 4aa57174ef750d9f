//! Audience stage: the subscribers file → checked [`Subscriber`]s, one at a time.
//!
//! The file is CSV with a header row (or, for `.yaml`/`.yml`, a list of maps
//! with the same keys). Strict about each row, forgiving about the file: a
//! row that cannot be used is an error on its line and is skipped, and every
//! other row is still read. Whatever is unclear fails closed: an unknown
//! status is not mailed. An address listed twice is one subscriber
//! (`duplicates` says how).
//!
//! This file holds what the rest of gazette sees (the [`Subscriber`], its
//! [`Status`], [`read`] and [`columns`]); `row` checks one row, `csv` and
//! `yaml` read the two formats. May import: `crate::address`,
//! `crate::diagnostics`, `crate::tag` and `crate::yaml`; never a stage.

mod csv;
mod duplicates;
mod row;
#[cfg(test)]
mod testing;
mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use chrono_tz::Tz;

use crate::diagnostics::Diagnostic;
use crate::tag::Tag;
use row::Column;

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
        yaml::read(path, shown, each)
    } else {
        csv::read(path, shown, each)
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
    } else if let Some(file) = csv::CsvFile::open(path, shown, &mut Vec::new()) {
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

#[cfg(test)]
mod tests {
    use super::testing::read_as;
    use super::*;

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
}
