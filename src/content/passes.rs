//! Content stage: how much of each file a run reads.
//!
//! Imports: its siblings, `diagnostics`.
//!
//! A run that publishes only some posts (the new ones, the feeds'
//! newest) reads in two passes ([`Want::Some`]): every file's front matter
//! first (what selection needs: slug, date, tags, and every front-matter
//! problem), then the bodies of the posts it needs. Rendering the bodies is
//! most of the work, so a send reads the bodies of the few posts its
//! digests can hold, not of every post. `check` reads every body
//! ([`Want::Everything`]).

use std::path::PathBuf;

use rayon::prelude::*;

use super::library::{Head, newest_first};
use super::reader::{FileOutcome, PostReader};
use crate::diagnostics::Diagnostic;

/// Which posts to read whole.
pub enum Want<'a> {
    /// Every post (what `check` reads).
    Everything,
    /// Those `choose` marks, given every published post's head, newest
    /// first (ties broken by slug, as [`super::Library::posts`]).
    Some(&'a (dyn Fn(&[&Head]) -> Vec<bool> + Sync)),
}

/// How much of a file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadDepth {
    /// Front matter, body and all.
    Whole,
    /// The front matter only (every problem of it still reported).
    FrontMatter,
}

/// What each of `paths` gave (in their order) and its problems, read as
/// `want` says.
pub(super) fn read_as_wanted(
    reader: &PostReader,
    paths: &[PathBuf],
    want: Want,
) -> Vec<(FileOutcome, Vec<Diagnostic>)> {
    let Want::Some(choose) = want else {
        return read_each(reader, &paths.iter().collect::<Vec<_>>(), ReadDepth::Whole);
    };
    let mut outcomes = read_each(
        reader,
        &paths.iter().collect::<Vec<_>>(),
        ReadDepth::FrontMatter,
    );
    // The wanted posts read again, whole: their problems replace those of
    // their front matter (a superset).
    let wanted = files_to_read_whole(&outcomes, choose);
    let whole = read_each(
        reader,
        &wanted.iter().map(|i| &paths[*i]).collect::<Vec<_>>(),
        ReadDepth::Whole,
    );
    for (i, result) in wanted.into_iter().zip(whole) {
        outcomes[i] = result;
    }
    outcomes
}

/// Reads `paths` to `depth`. Posts are independent: read on every core,
/// then taken in file order.
fn read_each(
    reader: &PostReader,
    paths: &[&PathBuf],
    depth: ReadDepth,
) -> Vec<(FileOutcome, Vec<Diagnostic>)> {
    paths
        .par_iter()
        .map(|path| {
            let mut problems = Vec::new();
            let outcome = reader.read(path, depth, &mut problems);
            (outcome, problems)
        })
        .collect()
}

/// The indexes (ascending) of the files to read whole after a first pass
/// of front matter: the published posts `choose` marks, and every file
/// that failed or was skipped.
fn files_to_read_whole(
    outcomes: &[(FileOutcome, Vec<Diagnostic>)],
    choose: &(dyn Fn(&[&Head]) -> Vec<bool> + Sync),
) -> Vec<usize> {
    let mut heads: Vec<(usize, &Head)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, (outcome, _))| match outcome {
            FileOutcome::HeadOnly(head) => Some((i, head)),
            _ => None,
        })
        .collect();
    heads.sort_by(|(_, a), (_, b)| newest_first(a.date, &a.slug, b.date, &b.slug));
    let chosen = choose(&heads.iter().map(|(_, h)| *h).collect::<Vec<_>>());
    // Files that failed are read whole too, so that the problems of their
    // bodies are reported in the same run, and drafts and scheduled posts
    // (few), so that a post's problems show before the day it is published.
    let failed = outcomes
        .iter()
        .enumerate()
        .filter(|(_, (outcome, _))| {
            matches!(outcome, FileOutcome::Failed | FileOutcome::Skipped(..))
        })
        .map(|(i, _)| i);
    let mut wanted: Vec<usize> = heads
        .iter()
        .zip(chosen.iter().chain(std::iter::repeat(&false)))
        .filter(|(_, want)| **want)
        .map(|((i, _), _)| *i)
        .chain(failed)
        .collect();
    wanted.sort_unstable();
    wanted
}
