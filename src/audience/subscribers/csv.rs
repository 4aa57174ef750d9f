//! Audience stage: reading a CSV subscribers file, row by row, with the
//! line each row starts on. A header row names the columns; rows that
//! cannot be read whole are rejected and what they still say about who must
//! not be mailed is salvaged. May import: `crate::diagnostics` and the
//! parent module's types.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use csv::{ByteRecord, ReaderBuilder};

use super::Subscriber;
use super::duplicates::{AddressTallies, salvage};
use super::row::{Cell, Column, RowCheck, RowPlace, forbidden, subscriber};
use crate::diagnostics::Diagnostic;
use std::borrow::Cow;

/// Reads a CSV subscribers file in two passes (see [`super::duplicates`]).
pub(super) fn read(path: &Path, shown: &Path, each: &mut dyn FnMut(Subscriber)) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    // Pass 1: what each address's rows add up to. Problems of rows are
    // reported by pass 2; a file that cannot be read to its end yields nobody.
    let Some(mut file) = CsvFile::open(path, shown, &mut problems) else {
        return problems;
    };
    let mut tallies = AddressTallies::default();
    loop {
        match file.next(shown, &mut Vec::new()) {
            Ok(Some((place, Some(sub)))) => tallies.note(&sub, place),
            Ok(Some((place, None))) => tallies.suppress(&file.salvaged, place),
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
            Ok(Some((place, Some(sub)))) => {
                match tallies.settle(sub, place, shown, &mut problems) {
                    Ok(sub) => each(sub),
                    Err(duplicate) => problems.push(duplicate),
                }
            }
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
pub(super) struct CsvFile {
    reader: csv::Reader<LineStarts<File>>,
    pub(super) columns: Vec<Column>,
    record: ByteRecord,
    /// What the last rejected row still says about who must not be mailed.
    salvaged: Vec<(String, u8)>,
}

impl CsvFile {
    /// Opens the file and reads its header; `None` (with the problem
    /// recorded) when it cannot be read or has no usable header.
    pub(super) fn open(
        path: &Path,
        shown: &Path,
        problems: &mut Vec<Diagnostic>,
    ) -> Option<CsvFile> {
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
            .from_reader(LineStarts::new(file));
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
    ) -> Result<Option<(RowPlace, Option<Subscriber>)>, Diagnostic> {
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
            let place = RowPlace::Line(line_of(&mut self.reader, &self.record));
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
fn line_of(reader: &mut csv::Reader<LineStarts<File>>, record: &ByteRecord) -> usize {
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
struct LineStarts<R> {
    inner: R,
    offset: u64,
    line: u64,
    after_break: bool,
    starts: VecDeque<(u64, u64)>,
}

impl<R> LineStarts<R> {
    fn new(inner: R) -> LineStarts<R> {
        LineStarts {
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

impl<R: Read> Read for LineStarts<R> {
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

#[cfg(test)]
mod tests {
    use crate::audience::subscribers::testing::{csv, emails, tag};

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
}
