//! Audience stage, tests only: helpers shared by the subscribers file's
//! unit tests, to read a text as a subscribers file and see what came out.
//! May import the parent module and `crate::tag`.

use std::path::Path;

use super::{Subscriber, read};
use crate::tag::Tag;

/// Reads `text` as the file `name`: the subscribers and every problem as printed.
pub(super) fn read_as(name: &str, text: impl AsRef<[u8]>) -> (Vec<Subscriber>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let mut subs = Vec::new();
    let problems = read(&path, Path::new(name), &mut |sub| subs.push(sub));
    (subs, problems.iter().map(ToString::to_string).collect())
}

pub(super) fn csv(text: impl AsRef<[u8]>) -> (Vec<Subscriber>, Vec<String>) {
    read_as("subscribers.csv", text)
}

pub(super) fn emails(subs: &[Subscriber]) -> Vec<(&str, usize)> {
    subs.iter().map(|s| (s.email.as_str(), s.line)).collect()
}

pub(super) fn tag(name: &str, key: &str) -> Tag {
    Tag {
        name: name.into(),
        key: key.into(),
    }
}
